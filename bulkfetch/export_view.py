"""An athlete's imported account export as compaction, fetch, plan and status read it, from the import's
index (bulkfetch.export_store): the activities its CSV has, the decoded files it holds, and which
activities' streams those files give instead of a request.

- Activities: one that the export's activities.csv has and no API listing does gets an `activities` row
  from the CSV (source "csv", see `csv_summary`): id, name, sport_type, start_date, distance, elapsed and
  moving time, elevation gain, each taken from the device file's summary where the CSV is empty. One that a
  complete full listing should have had and did not (`deleted_on_strava`) was deleted on Strava: it gets
  no rows at all (its files stay in the export folder: raw is never deleted).
- Coverage: `fetch` asks no streams for an activity whose file decoded whole ("ok") and is not stale
  (derive.is_stale of the file's summary against Strava's summary of the activity), whatever types it
  asks for. The file is the recording Strava's streams come from: a type the file lacks, Strava lacks
  too, and the types Strava derives (velocity_smooth, grade_smooth, moving) derive computes from the same
  series. A truncated file's activity gets its streams from the API.

A file's summary (derive.file_summary, with the CSV row's sport) is in its index entry, computed by the
import's worker that decoded it, so deciding coverage reads one JSON file and no track. An entry whose
summary is missing, or was computed by another derive.DERIVE_VERSION or from another track format, is
not current: `refresh_summaries` computes it again from the decoded track and keeps it in the index. It
reads tracks, so it runs where that costs nothing to others: in compaction, in `plan`, and in a thread
beside the fetch's event loop (see bulkfetch.pipeline). `status` reads the index only: until then an
activity whose summary is not current counts as not covered.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bulkfetch import derive
from bulkfetch.errors import LockedError
from bulkfetch.export_paths import INDEX
from bulkfetch.export_store import ExportActivity, ExportStore, ImportedFile, imported_file
from bulkfetch.store import UNLISTED, RawStore, listed_activities
from bulkfetch.track import Track, read_track

USABLE = ("ok", "truncated")  # decoded files that give rows


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


def deleted_on_strava(activities: Collection[int], listed: Collection[int], greatest_listed: int | None) -> set[int]:
    """The CSV's activities (`activities`: their ids) that a complete full listing whose greatest id is
    `greatest_listed` should have had and no listing has (`listed`): deleted on Strava since the export was
    made. Strava's activity ids grow with upload time, so an id below the listing's greatest was uploaded
    before that listing was made; one above it was uploaded since (the export is newer than the listing,
    whatever date the activity has: a backdated upload) and stays. None (no complete full listing, or one
    that could not see private activities) deletes nothing."""
    if greatest_listed is None:
        return set()
    return {activity_id for activity_id in activities if activity_id < greatest_listed and activity_id not in listed}


@dataclass(frozen=True)
class Disagreements:
    """Whole decoded files whose summary disagrees (derive.is_stale) with Strava's summary of their activity."""

    with_csv: int = 0  # with the export's activities.csv (no listing has the activity): their rows are kept
    with_api: int = 0  # with the API's summary (cropped or corrected on Strava since): their rows are not used

    def __add__(self, other: Disagreements) -> Disagreements:
        return Disagreements(self.with_csv + other.with_csv, self.with_api + other.with_api)


def disagreement_note(disagree: Disagreements) -> str:
    """The compaction summary's tail: "; N file(s) ..." for each kind there is, "" when none disagree."""
    def files(count: int) -> str:
        return f"{count:,} file{'s' if count != 1 else ''}"
    notes = ([f"{files(disagree.with_csv)} disagree{'s' if disagree.with_csv == 1 else ''} with activities.csv: kept"]
             if disagree.with_csv else [])
    notes += [f"{files(disagree.with_api)} older than Strava's version: not used"] if disagree.with_api else []
    return "".join(f"; {note}" for note in notes)


def disagreements(files: Mapping[int, derive.FileSummary], catalog: Mapping[int, Mapping[str, Any]],
                  from_csv: Mapping[int, Mapping[str, Any]]) -> Disagreements:
    """How many of the whole files' summaries (`files`) are stale against the API's summaries (`catalog`),
    and against the CSV's (`from_csv`: the activities no listing has) for the others."""
    def stale(summaries: Mapping[int, Mapping[str, Any]]) -> int:
        return sum(1 for i, file in files.items() if i in summaries and derive.is_stale(file, dict(summaries[i])))
    return Disagreements(with_csv=stale({i: s for i, s in from_csv.items() if i not in catalog}),
                         with_api=stale(catalog))


@dataclass(frozen=True)
class Overview:
    """What an athlete's import gave, as `status` and `athletes` show it (from the index: no track read)."""

    activities: int  # in the newest activities.csv, but those deleted on Strava since
    files: dict[str, int]  # decoded files by status: ok, truncated, unreadable
    streams_from_files: int  # activities whose stream rows come from their file (no API streams, not stale)
    imported_at: float | None  # when the newest activities.csv was first imported (epoch s)
    disagree: Disagreements


def is_current(entry: ImportedFile) -> bool:
    """Whether the entry's file summary was made by today's rules from today's track format."""
    return entry.derive_version == derive.DERIVE_VERSION and entry.track_current


def current_summary(entry: ImportedFile) -> derive.FileSummary | None:
    """The entry's file summary if it is current (None: not current, or the file has none)."""
    return entry.summary if is_current(entry) else None


def read_track_file(track_file: TrackFile) -> Track | None:
    """The decoded track, or None if it went or was replaced by something unreadable since it was seen
    (an import running meanwhile): the activity then gets no rows from it this time."""
    try:
        return read_track(track_file.path)
    except (OSError, ValueError):
        return None


# -- one athlete's export ----------------------------------------------------------------------------------
class ExportView:
    """One athlete's imported export (see the module docstring). Reading only, but `refresh_summaries`."""

    def __init__(self, athlete_folder: Path) -> None:
        self._export = ExportStore(athlete_folder)
        self._store = RawStore(athlete_folder)
        self._index_path = self._store.state_path(INDEX)
        self._files: dict[int, ImportedFile] | None = None
        self._read_as: tuple[int, int, int] | None = None  # the index's `index_identity` when last read

    def exists(self) -> bool:
        return self._export.exists()

    def activities(self) -> dict[int, ExportActivity]:
        return self._export.activities() if self._export.exists() else {}

    def gone(self, catalog: Mapping[int, Any]) -> set[int]:
        """The activities deleted on Strava: those a listing saw go (UNLISTED tombstones), and the CSV's
        that the newest complete full listing should have had (`deleted_on_strava`). None of the CSV's
        when that listing could not see private activities (store.Listing.lists_private: no
        activity:read_all): Strava then lists no private ("Only You") activity, which the export has."""
        deleted = {i for i, tombstone in self._store.tombstones().items() if tombstone.reason == UNLISTED}
        listing = self._store.latest_full_listing()
        if listing is None or not listing.lists_private:
            return deleted
        greatest = max(listed_activities(listing), default=None)  # parsed once in a run: see shared_listings
        return deleted | deleted_on_strava(self.activities().keys(), catalog.keys() | deleted, greatest)

    def csv_summaries(self, excluded: Collection[int]) -> dict[int, dict[str, Any]]:
        """The API-shaped summaries (`csv_summary`) of the CSV's activities, but those in `excluded`."""
        return {activity_id: csv_summary(activity, self.file_summary(activity_id))
                for activity_id, activity in self.activities().items() if activity_id not in excluded}

    def disagreements(self, catalog: Mapping[int, Mapping[str, Any]], gone: Collection[int]) -> Disagreements:
        """`disagreements` of the whole files with current summaries (the index's: no track is read), for
        the activities but the `gone` ones."""
        whole = {i: summary for i, entry in self.files().items() if entry.status == "ok" and i not in gone
                 and (summary := current_summary(entry)) is not None}
        return disagreements(whole, catalog, self.csv_summaries(catalog.keys() | set(gone)))

    def current_disagreements(self) -> Disagreements:
        """`disagreements` against the athlete's listings as they are now (reads its catalog and the index)."""
        if not self.exists():
            return Disagreements()
        catalog = self._store.catalog()
        return self.disagreements(catalog, self.gone(catalog))

    def overview(self, catalog: Mapping[int, Mapping[str, Any]], api_streams: Collection[int]) -> Overview:
        """The `Overview` of the import, against the API's summaries (`catalog`) and the activities with
        API streams (`api_streams`), whose streams replace the files'."""
        gone = self.gone(catalog)
        activities = self.activities().keys() - gone
        # As Parquet has them: the file of an activity an older export has and the newest lacks (deleted on
        # Strava, ExportStore.gone) stays on disk, verbatim, and gives no rows unless a listing has it.
        files = {i: entry for i, entry in self.files().items() if i not in gone and (i in activities or i in catalog)}
        disagree = self.disagreements(catalog, gone)
        stale = self.stale_files(catalog)
        statuses = [entry.status for entry in files.values()]
        kept = self._export.csv_versions() if self.exists() else []
        return Overview(
            activities=len(activities),
            files={status: statuses.count(status) for status in ("ok", "truncated", "unreadable")},
            streams_from_files=sum(1 for i, entry in files.items() if entry.status in USABLE
                                   and i not in api_streams and i not in stale),
            imported_at=max((path.stat().st_mtime for path in kept), default=None),
            disagree=disagree)

    def files(self) -> dict[int, ImportedFile]:
        """The imported files by activity id, as the index said when last read (see `reread`)."""
        if self._files is None:
            self.reread()
        assert self._files is not None
        return self._files

    def reread(self) -> None:
        """Read the import's index again: an import running meanwhile may have added files."""
        self._read_as = self.index_identity()
        self._files = self._export.files() if self._export.exists() else {}

    def index_changed(self) -> bool:
        """Whether the index was written since it was last read (one stat)."""
        return self.index_identity() != self._read_as

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
        """The current summary (`current_summary`) of the activity's usable decoded file; None without one."""
        entry = self.files().get(activity_id)
        return current_summary(entry) if entry is not None and entry.status in USABLE else None

    def covers(self, activity_id: int, summary: Mapping[str, Any]) -> bool:
        """Whether the activity's streams come from its file instead of a request (see the module docstring)."""
        entry = self.files().get(activity_id)
        file = current_summary(entry) if entry is not None and entry.status == "ok" else None
        return file is not None and not derive.is_stale(file, dict(summary))

    def stale_files(self, catalog: Mapping[int, Mapping[str, Any]]) -> set[int]:
        """The listed activities whose whole file is stale against Strava's summary (`catalog`): their file
        rows are dropped, so a fetch takes them whatever its filters (plan.selected). From the index alone:
        a file whose summary is not current counts as not stale until `refresh_summaries`."""
        return {i for i, entry in self.files().items() if entry.status == "ok" and i in catalog
                and (summary := current_summary(entry)) is not None and derive.is_stale(summary, dict(catalog[i]))}

    def covered(self, catalog: Mapping[int, Mapping[str, Any]]) -> set[int]:
        """The listed activities `covers` holds for."""
        return {i for i in self.files() if i in catalog and self.covers(i, catalog[i])}

    def refresh_summaries(self) -> int:
        """Compute the summaries of the usable files whose summary is not current, from their decoded tracks
        (with the CSV row's sport, as the import does), and keep them in the index unless an import is
        writing it (then they are computed again next time). Reads tracks: never on an event loop.
        Returns how many it computed."""
        outdated = [entry for entry in self.files().values() if entry.status in USABLE and not is_current(entry)]
        if not outdated:
            return 0
        sports = {activity_id: activity.sport_type for activity_id, activity in self.activities().items()}
        fresh = {}
        for entry in outdated:
            track_file = self.track_file(entry.activity_id)
            track = read_track_file(track_file) if track_file is not None else None
            if track is not None:  # else gone, or of another format: decoded again (importer.refresh_tracks)
                fresh[entry.activity_id] = imported_file(entry.activity_id, entry.file, entry.size, entry.crc32,
                                                         track, sports.get(entry.activity_id))
        self._files = {**self.files(), **fresh}
        self._keep(fresh)
        return len(fresh)

    def _keep(self, fresh: Mapping[int, ImportedFile]) -> None:
        """Write the recomputed entries into the index, under the import's lock, each only if the index
        still describes the same file (an import may have replaced it since it was read)."""
        if not fresh:
            return
        try:
            with self._export.lock():
                entries = self._export.entries()
                kept = {i: entry for i, entry in fresh.items() if i in entries
                        and entries[i].same_source(entry.file, entry.size, entry.crc32)}
                if kept:
                    self._export.save_entries({**entries, **kept})
                    self.reread()  # what was just written (an import may have written before): no later look
        except LockedError:
            pass  # an import is writing the index: it keeps its own entries, these are computed next time

    def index_identity(self) -> tuple[int, int, int] | None:
        """Which version of the index is on disk (each write replaces it whole: a new inode), None without one."""
        try:
            info = self._index_path.stat()
        except FileNotFoundError:
            return None
        return info.st_ino, info.st_size, info.st_mtime_ns
