"""An athlete's account export as the other source of rows, and what it spares the API.

The export is read through bulkfetch.export_store (the only code that names its files) and its device
files are turned into API-shaped JSON by bulkfetch.derive, so that bulkfetch.schema builds the same rows
from both sources. The rules:

- Activities: one that the export's activities.csv has and no API listing does gets an `activities` row
  from the CSV (source "csv"): id, name, sport_type, start_date, distance, elapsed and moving time,
  elevation gain, each taken from the device file (derive.file_summary) where the CSV is empty. Once the
  API lists it, the API's summary replaces it (source "api"); one an API listing saw deleted is dropped.
- Streams, splits and laps: a file that decoded (ok, or truncated: the records before the cut) gives
  them (source "file"; splits only for derive.SPLIT_SPORTS), unless it is stale (derive.is_stale against
  Strava's summary of the activity: the API's, else the CSV's): a file older than Strava's version gives
  none. API streams replace the file's streams; a fetched detail's splits and laps replace the file's.
- Coverage: `fetch` asks no streams for an activity whose file decoded whole ("ok") and is not stale,
  whatever types it asks for. The file is the recording Strava's streams come from: a type the file
  lacks, Strava lacks too, and the types Strava derives (velocity_smooth, grade_smooth, moving) derive
  computes from the same series. A truncated file's activity gets its streams from the API.

Deciding staleness takes the file's summary, which reads its decoded track; `ExportView` keeps the
summaries it computed in the athlete's state (keyed by the decoded file's size and mtime), so that
`fetch`, `plan` and `status` read each track once, not at every run.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

from bulkfetch import derive
from bulkfetch.export_store import ExportActivity, ExportStore, ImportedFile
from bulkfetch.schema import ExportPart
from bulkfetch.store import RawStore
from bulkfetch.track import Track, read_track

# state/export_summaries.json: {"derive": digest, "files": {id: [size, mtime_ns, FileSummary]}}, the summaries
# valid for the derive.py whose digest it names: a changed rule computes them afresh.
SUMMARY_CACHE = "export_summaries"
USABLE = ("ok", "truncated")  # decoded files that give rows
SPLIT_TABLES = {"splits_metric": derive.METRIC_SPLIT_M, "splits_standard": derive.STANDARD_SPLIT_M}


@dataclass(frozen=True)
class TrackFile:
    """An activity's decoded device file as compaction takes it: where it is and its identity (size and
    mtime_ns, taken before anything reads it: a file replaced later changes the next fingerprint)."""

    path: Path
    size: int
    mtime_ns: int
    status: str


# -- pure ------------------------------------------------------------------------------------------------
def csv_summary(activity: ExportActivity, file: derive.FileSummary | None) -> dict[str, Any]:
    """An API-shaped summary (the keys of Strava's list items) of a CSV row; where the row is empty, the
    device file's value (`file`: its derive.file_summary, None if it has none); a distance from neither,
    the row's display distance."""
    from_file = _api_fields(file) if file is not None else {}
    summary: dict[str, Any] = {"id": activity.activity_id}
    for key, value in _csv_fields(activity).items():
        summary[key] = value if value is not None else from_file.get(key)
    if summary["distance"] is None:  # the row's display distance (km, 10 m) is better than none
        summary["distance"] = activity.display_distance_m
    return summary


def _csv_fields(activity: ExportActivity) -> dict[str, Any]:
    """A CSV row's values under the API's summary keys."""
    return {"name": activity.name, "sport_type": activity.sport_type, "start_date": activity.start_date,
            "distance": activity.distance_m, "elapsed_time": activity.elapsed_s, "moving_time": activity.moving_s,
            "total_elevation_gain": activity.elevation_gain_m}


def _api_fields(file: derive.FileSummary) -> dict[str, Any]:
    """A file's summary under the API's summary keys (whole seconds, as the API gives times)."""
    start = file.start_utc_s
    return {"sport_type": file.sport_type,
            "start_date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)) if start is not None else None,
            "distance": file.distance_m,
            "elapsed_time": round(file.elapsed_s) if file.elapsed_s is not None else None,
            "moving_time": round(file.moving_s) if file.moving_s is not None else None,
            "total_elevation_gain": file.elevation_gain_m}


def export_part(summary: Mapping[str, Any], track: Track | None, *, from_csv: bool) -> ExportPart:
    """What an activity's rows take from the export: its CSV summary (`from_csv`), and the splits (for
    derive.SPLIT_SPORTS) and laps of its decoded `track` unless that is stale against `summary`
    (Strava's summary of the activity)."""
    derived = derive.prepare(track) if track is not None else None
    if derived is None or derive.is_stale(derive.file_summary(derived), dict(summary)):
        return ExportPart(summary_from_csv=from_csv)
    children: dict[str, list[dict[str, Any]]] = {"laps": derive.laps(derived)}
    if summary.get("sport_type") in derive.SPLIT_SPORTS:
        children.update({table: derive.splits(derived, unit_m) for table, unit_m in SPLIT_TABLES.items()})
    return ExportPart(summary_from_csv=from_csv, children=children)


def file_stream_set(track: Track, summary: Mapping[str, Any]) -> dict[str, Any] | None:
    """The StreamSet a decoded track gives, None if it is stale against `summary`."""
    derived = derive.prepare(track)
    return None if derive.is_stale(derive.file_summary(derived), dict(summary)) else derive.stream_set(derived)


def read_track_file(track_file: TrackFile) -> Track | None:
    """The decoded track, or None if it went or was replaced by something unreadable since it was seen
    (an import running meanwhile): the activity then gets no rows from it this time."""
    try:
        return read_track(track_file.path)
    except (OSError, ValueError):
        return None


# -- one athlete's export ----------------------------------------------------------------------------------
class ExportView:
    """One athlete's imported export as compaction, fetch, plan and status read it. Reading only, except
    `save_summaries`, which keeps a cache."""

    def __init__(self, athlete_folder: Path) -> None:
        self._export = ExportStore(athlete_folder)
        self._state = RawStore(athlete_folder)
        self._files: dict[int, ImportedFile] | None = None
        self._cache: dict[str, Any] | None = None
        self._cache_changed = False

    def exists(self) -> bool:
        return self._export.exists()

    def activities(self) -> dict[int, ExportActivity]:
        return self._export.activities() if self._export.exists() else {}

    def csv_summaries(self, excluded: Collection[int]) -> dict[int, dict[str, Any]]:
        """The API-shaped summaries (`csv_summary`) of the CSV's activities, but those in `excluded`."""
        summaries = {}
        for activity_id, activity in self.activities().items():
            if activity_id not in excluded:
                gaps = None in _csv_fields(activity).values()
                summaries[activity_id] = csv_summary(activity, self.file_summary(activity_id) if gaps else None)
        return summaries

    def files(self) -> dict[int, ImportedFile]:
        """The imported files by activity id, as the index said when last read (see `reread`)."""
        if self._files is None:
            self.reread()
        assert self._files is not None
        return self._files

    def reread(self) -> None:
        """Read the import's index again: an import running meanwhile may have added files."""
        self._files = self._export.files() if self._export.exists() else {}

    def track_file(self, activity_id: int) -> TrackFile | None:
        """The activity's decoded file if it gives rows (decoded ok or truncated), else None."""
        entry = self.files().get(activity_id)
        if entry is None or entry.status not in USABLE:
            return None
        path = self._export.track_path(activity_id)
        try:
            info = path.stat()
        except FileNotFoundError:
            return None
        return TrackFile(path, info.st_size, info.st_mtime_ns, entry.status)

    def file_summary(self, activity_id: int) -> derive.FileSummary | None:
        """The summary of the activity's usable decoded file (None without one), from the cache when the
        file is the one it was computed from."""
        track_file = self.track_file(activity_id)
        if track_file is None:
            return None
        known = self._summaries()
        cached = known.get(str(activity_id))
        if isinstance(cached, list) and len(cached) == 3 and cached[:2] == [track_file.size, track_file.mtime_ns]:
            try:
                return derive.FileSummary(**cached[2])
            except TypeError:
                pass  # written by another version: computed again
        track = read_track_file(track_file)
        if track is None:
            return None
        summary = derive.file_summary(track)
        known[str(activity_id)] = [track_file.size, track_file.mtime_ns, asdict(summary)]
        self._cache_changed = True
        return summary

    def covers(self, activity_id: int, summary: Mapping[str, Any]) -> bool:
        """Whether the activity's streams come from its file instead of a request (see the module docstring)."""
        entry = self.files().get(activity_id)
        if entry is None or entry.status != "ok":
            return False
        file = self.file_summary(activity_id)
        return file is not None and not derive.is_stale(file, dict(summary))

    def covered(self, catalog: Mapping[int, Mapping[str, Any]]) -> set[int]:
        """The listed activities `covers` holds for."""
        return {i for i in self.files() if i in catalog and self.covers(i, catalog[i])}

    def save_summaries(self) -> None:
        """Keep the file summaries computed since the cache was read. The file is written whole, and what
        it holds is a function of the decoded files, so two writers at once lose at most some work."""
        if self._cache_changed and self._cache is not None:
            self._state.write_state(SUMMARY_CACHE, {"derive": _derive_digest(), "files": self._cache})
            self._cache_changed = False

    def _summaries(self) -> dict[str, Any]:
        if self._cache is None:
            saved = self._state.read_state(SUMMARY_CACHE, {})
            current = isinstance(saved, dict) and saved.get("derive") == _derive_digest() and isinstance(
                saved.get("files"), dict)
            self._cache = saved["files"] if current else {}
        return self._cache


@cache
def _derive_digest() -> str:
    """A digest of derive.py, whose rules the cached summaries follow."""
    return hashlib.blake2b(Path(derive.__file__).read_bytes(), digest_size=8).hexdigest()
