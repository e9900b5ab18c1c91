"""An athlete's account export as the other source of rows: what compaction takes from a decoded device
file. Pure: the caller reads the track (bulkfetch.export_view) and writes the rows (bulkfetch.compact).

The device files are turned into API-shaped JSON by bulkfetch.derive, so that bulkfetch.schema builds
the same rows from both sources. The rules:

- Activities: one only the export's activities.csv has gets an `activities` row from the CSV (source
  "csv", see export_view.csv_summary). Once the API lists it, the API's summary replaces it (source
  "api"); one an API listing saw deleted, or a complete full listing should have had (an id below its
  greatest) and did not (export_view.deleted_on_strava), is dropped with its streams, splits and laps.
- Streams, splits and laps: a file that decoded (ok, or truncated: the records before the cut) gives
  them (source "file"; splits only for derive.SPLIT_SPORTS), unless it is `stale`: a whole file older
  than Strava's version gives none. The verdict is the export index's (ExportView.stale_files), the one
  `fetch` and `plan` take to choose the streams they request, so that a file they counted on is never
  dropped here. A truncated file is partial, not stale: its rows stay (the import reported it
  truncated). Against the CSV's summary alone (no API listing has the activity) a file is never
  dropped: the CSV is the export's own account of the same upload, and a file that disagrees with it is
  kept and counted (see bulkfetch.export_view.ExportView.disagreements). API streams replace the file's
  streams; a fetched detail's splits and laps replace the file's. The derivation takes the summary's
  sport, which wins over the file's own (see derive.prepare).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bulkfetch import derive
from bulkfetch.schema import ExportPart
from bulkfetch.track import Track

SPLIT_TABLES = {"splits_metric": derive.METRIC_SPLIT_M, "splits_standard": derive.STANDARD_SPLIT_M}


def export_part(summary: Mapping[str, Any], track: Track | None, *, from_csv: bool, stale: bool) -> ExportPart:
    """What an activity's rows take from the export: its CSV summary (`from_csv`), and the splits (for
    derive.SPLIT_SPORTS) and laps of its decoded `track` unless that is `stale`."""
    if track is None or stale:
        return ExportPart(summary_from_csv=from_csv)
    derived = _derived(track, summary)
    children: dict[str, list[dict[str, Any]]] = {"laps": derive.laps(derived)}
    if summary.get("sport_type") in derive.SPLIT_SPORTS:
        children.update({table: derive.splits(derived, unit_m) for table, unit_m in SPLIT_TABLES.items()})
    return ExportPart(summary_from_csv=from_csv, children=children)


def file_stream_set(track: Track, summary: Mapping[str, Any], *, stale: bool) -> dict[str, Any] | None:
    """The StreamSet a decoded track gives, None if it is `stale`."""
    return None if stale else derive.stream_set(_derived(track, summary))


def _derived(track: Track, summary: Mapping[str, Any]) -> derive.Derived:
    """The track's derivation with the summary's sport."""
    sport = summary.get("sport_type")
    return derive.prepare(track, sport if isinstance(sport, str) else None)
