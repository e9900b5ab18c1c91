"""Which of an activity's summary fields describe its recording (pure; no I/O, no imports of bulkfetch).

The fetch's decisions (bulkfetch.plan: when stored streams are stale) and compaction's fingerprints
(bulkfetch.compact: when a device file's streams must be judged stale again) both follow it, and neither
reaches into the other for it.
"""

# The summary fields whose change means the recording itself may have changed (a new upload, a corrected
# clock, a cropped or trimmed file), so the stored streams are stale. A new name, gear or privacy is not one.
RECORDING_FIELDS = ("start_date", "distance", "moving_time", "elapsed_time", "upload_id")
