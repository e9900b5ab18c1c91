"""An athlete's imported account export on disk: the only code that reads and writes it (its two top
names are in bulkfetch.export_paths, for the roster).

Under the athlete's folder (`data_dir/athletes/<id>/`, see bulkfetch.roster):

    export/activities-<digest>.csv        each imported activities.csv, verbatim (digest: of its bytes)
    export/activities/<name>              the activity files, verbatim, as the export names them
    export/decoded/<activity_id>.arrow    each activity's decoded file (bulkfetch.track), so that
                                          compaction never decodes a device file again
    export/import.lock                    held by the import writing here (one at a time per athlete)
    state/export.json                     the index: the CSV versions in the order first imported, and
                                          per activity its file, that file's size and CRC-32, how it
                                          decoded, its file summary (bulkfetch.derive), and the versions
                                          of the derivation and the track format they were made by

Every file is written under a temporary name in its folder and renamed (see bulkfetch.store): a file
that exists is whole. A decoded file is valid only with its index entry, and the other way round: an
entry whose decoded file is missing is imported again, and a decoded file without an entry (written
after the last index write of an import that was killed) is adopted by the next import when the file
it was decoded from is still the export's. An entry whose track format is not today's, or whose track
went or was damaged (`track_opens`), is decoded again from the kept file (bulkfetch.importer, at each
import and before each compaction), one whose derivation version is not today's has its summary
derived again (bulkfetch.export_view): neither is ever read as it stands.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Any

from bulkfetch import derive
from bulkfetch.derive import FileSummary
from bulkfetch.errors import LockedError, WriteError
from bulkfetch.export_csv import ExportActivity, in_display_unit, parse_activities_csv
from bulkfetch.export_paths import INDEX, export_folder, has_export
from bulkfetch.locks import IMPORT, hold
from bulkfetch.store import TEMP_MARK, RawStore, atomic_write, ensure_dir, fsync_dir, is_orphaned_temp, is_temp_file
from bulkfetch.track import FORMAT_VERSION, Track, opens, read_track

INDEX_VERSION = 1
CSV_PREFIX = "activities-"


@dataclass(frozen=True)
class ImportedFile:
    """An activity's imported file: where it is kept, which bytes it was, and how it decoded."""

    activity_id: int
    file: str                   # as the export names it ("activities/123.fit.gz"), kept under export/
    size: int
    crc32: int
    format: str | None          # fit, gpx or tcx (gzip or not); None: neither content nor name says
    status: str                 # ok, truncated or unreadable (see bulkfetch.track.Status)
    problem: str | None
    records: int
    series: tuple[str, ...]     # the Track series it has values for
    summary: FileSummary | None = None  # derive.file_summary of the track, with the CSV row's sport
    derive_version: int = 0     # the derive.DERIVE_VERSION `summary` was computed by (0: none)
    track_version: int = 0      # the bulkfetch.track.FORMAT_VERSION the track was stored in (0: unknown)

    @property
    def track_current(self) -> bool:
        """Whether the decoded track is in today's format; else it is decoded again from the kept file
        (bulkfetch.importer.refresh_tracks): a reader of today's would refuse it."""
        return self.track_version == FORMAT_VERSION

    def same_source(self, file: str, size: int, crc32: int) -> bool:
        return (self.file, self.size, self.crc32) == (file, size, crc32)


def imported_file(activity_id: int, file: str, size: int, crc32: int, track: Track,
                  sport_type: str | None) -> ImportedFile:
    """The index entry of a decoded track: with its file summary (None if it has no record), derived with
    `sport_type`, the activity's sport as activities.csv says (it wins over the file's own)."""
    summary = derive.file_summary(track, sport_type) if track.records else None
    return ImportedFile(activity_id, file, size, crc32, track.format, track.status, track.problem, track.records,
                        tuple(name for name in track.series if track.has(name)), summary, derive.DERIVE_VERSION,
                        FORMAT_VERSION)


class ExportStore:
    """One athlete's imported export (see the module docstring)."""

    def __init__(self, athlete_folder: Path) -> None:
        self.athlete_folder = athlete_folder
        self.folder = export_folder(athlete_folder)
        self.decoded_dir = self.folder / "decoded"
        self._state = RawStore(athlete_folder)

    # -- reading ------------------------------------------------------------------------------------
    def exists(self) -> bool:
        return has_export(self.athlete_folder)

    def csv_versions(self) -> list[Path]:
        """The kept activities.csv files, in the order they were first imported."""
        return [self.folder / name for name in self._index()["csv"] if (self.folder / name).is_file()]

    def activities(self) -> dict[int, ExportActivity]:
        """The account's activities as the newest imported export lists them, by id, each row's empty
        values filled in from the other exports (the later imported first: a CSV in a language bulkfetch
        does not read has ids and files only).

        An export is the whole account at its date, so an activity the newest export lacks was deleted on
        Strava since an older one: it has no row (its kept file and decoded track stay). The newest is the
        export whose latest activity starts latest, not the one imported last (an old export imported
        again stays old); of two whose latest activity starts at the same time, the one imported later.
        An activity no CSV dates is dated by its file.
        """
        versions = self._versions()
        if not versions:
            return {}
        newest = self._newest(versions)
        others = [version for index, version in reversed(list(enumerate(versions))) if index != newest]
        return {activity_id: _filled(row, [other[activity_id] for other in others if activity_id in other])
                for activity_id, row in versions[newest].items()}

    def gone(self) -> set[int]:
        """The activities an older export lists and the newest lacks: deleted on Strava (see `activities`)."""
        versions = self._versions()
        if not versions:
            return set()
        return set().union(*versions) - versions[self._newest(versions)].keys()

    def _versions(self) -> list[dict[int, ExportActivity]]:
        """Each kept activities.csv's rows; a lone display Distance in the unit its files show (km or miles,
        see export_csv.in_display_unit)."""
        versions = [parse_activities_csv(path.read_bytes()).activities for path in self.csv_versions()]
        if not any(row.display_distance_m is not None for version in versions for row in version.values()):
            return versions
        files_m = {activity_id: entry.summary.distance_m for activity_id, entry in self.entries().items()
                   if entry.summary is not None and entry.summary.distance_m is not None}
        return [in_display_unit(version, files_m) for version in versions]

    def _newest(self, versions: list[dict[int, ExportActivity]]) -> int:
        """Which of `versions` is the newest export (see `activities`)."""
        starts = self._start_dates(versions)
        return max(range(len(versions)), key=lambda index: (
            max((starts.get(activity_id, "") for activity_id in versions[index]), default=""), index))

    def _start_dates(self, versions: list[dict[int, ExportActivity]]) -> dict[int, str]:
        """Each activity's start ("YYYY-MM-DDTHH:MM:SSZ", which sorts by time) as a CSV says, else as its
        file's summary says; activities neither dates are left out."""
        starts = {activity_id: row.start_date for version in versions for activity_id, row in version.items()
                  if row.start_date is not None}
        for activity_id, entry in self.entries().items():
            if activity_id not in starts and entry.summary is not None and entry.summary.start_utc_s is not None:
                starts[activity_id] = derive.iso_utc(entry.summary.start_utc_s)
        return starts

    def files(self) -> dict[int, ImportedFile]:
        """The imported files by activity id (those whose decoded track is there)."""
        return {activity_id: entry for activity_id, entry in self.entries().items()
                if self.track_path(activity_id).exists()}

    def track_path(self, activity_id: int) -> Path:
        return self.decoded_dir / f"{activity_id}.arrow"

    def track_opens(self, activity_id: int) -> bool:
        """Whether the activity's decoded track is there and whole as far as its ends tell (track.opens):
        cheap enough to ask of every track on each import and compaction."""
        return opens(self.track_path(activity_id))

    def read_track(self, activity_id: int) -> Track:
        """Raises OSError if it is not there, ValueError if the file is not a decoded track."""
        return read_track(self.track_path(activity_id))

    def file_path(self, name: str) -> Path:
        """Where the export's file `name` ("activities/...", checked safe by bulkfetch.export_csv) is kept."""
        return self.folder / name

    def decoded_ids(self) -> set[int]:
        try:
            names = os.listdir(self.decoded_dir)
        except FileNotFoundError:
            return set()
        return {int(name[:-6]) for name in names if name.endswith(".arrow") and name[:-6].isdigit()}

    # -- writing (under `lock`) ---------------------------------------------------------------------
    def lock(self) -> AbstractContextManager[None]:
        """One import per athlete at a time; a second one gets a LockedError naming the first's PID."""
        ensure_dir(self.folder)
        return hold(self.folder / "import.lock", IMPORT, busy=lambda holder: LockedError(
            f"another bulkfetch import (PID {holder.pid}) is importing into {self.folder}",
            hint="wait for it to finish: one import per athlete at a time", holder=holder.what))

    def prepare(self) -> None:
        """Create the folders; remove what killed imports left half-written."""
        for folder in (self.folder, self.folder / "activities", self.decoded_dir, self._state.state_dir):
            ensure_dir(folder)
        for folder in (self.folder, self.folder / "activities", self.decoded_dir):
            for name in os.listdir(folder):
                if is_orphaned_temp(folder / name):
                    (folder / name).unlink(missing_ok=True)

    def keep_csv(self, data: bytes) -> bool:
        """Keep this activities.csv (verbatim), after those imported before it; False if it was imported
        before (it keeps its place: which export is the newest is decided by dates, see `activities`)."""
        name = f"{CSV_PREFIX}{hashlib.blake2b(data, digest_size=8).hexdigest()}.csv"
        index = self._index()
        if name in index["csv"] and (self.folder / name).is_file():
            return False
        if not (self.folder / name).is_file():
            atomic_write(self.folder / name, data)
        if name not in index["csv"]:
            index["csv"].append(name)
            self._write_index(index)
        return True

    @contextmanager
    def new_file(self, name: str, activity_id: int) -> Iterator[IO[bytes]]:
        """A sink for activity `activity_id`'s file `name`: when the block ends without an error, the
        activity's decoded track goes (so that it is never taken for the new file's), then the file is
        renamed into place, fsynced (a reader sees the old file or the new one). When the block raises (a
        damaged zip entry fails its CRC-32 at its end), the sink is removed and the old file, its track
        and its index entry stay as they were."""
        path = self.file_path(name)
        ensure_dir(path.parent)
        temp = path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")
        try:
            with temp.open("xb") as sink:
                yield sink
                sink.flush()
                os.fsync(sink.fileno())
            self._forget_track(activity_id)
            os.replace(temp, path)
            fsync_dir(path.parent)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise WriteError(f"cannot write {path} ({exc.strerror or exc})",
                             hint="free some space or fix the folder, then rerun: what was imported is kept") from None
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def _forget_track(self, activity_id: int) -> None:
        path = self.track_path(activity_id)
        if path.exists():
            path.unlink()
            fsync_dir(path.parent)

    def move_index(self, other: ExportStore) -> None:
        """Hand this index to `other`, whose export folder this one's has just become."""
        ensure_dir(other._state.state_dir)
        os.replace(self._state.state_path(INDEX), other._state.state_path(INDEX))
        fsync_dir(other._state.state_dir)

    def save_entries(self, entries: dict[int, ImportedFile]) -> None:
        """Replace the index's file entries (atomically, with the CSV versions it lists)."""
        index = self._index()
        index["files"] = {str(activity_id): _entry_json(entry) for activity_id, entry in sorted(entries.items())}
        self._write_index(index)

    # -- the index ----------------------------------------------------------------------------------
    def entries(self) -> dict[int, ImportedFile]:
        """Every index entry, its decoded track there or not (the importer checks)."""
        entries = {}
        for key, value in self._index()["files"].items():
            entry = _entry_of(key, value)
            if entry is not None:
                entries[entry.activity_id] = entry
        return entries

    def _index(self) -> dict[str, Any]:
        """The index; damaged from outside, a fresh one that still lists the kept CSVs (oldest first)."""
        index = self._state.read_state(INDEX)
        csvs = index.get("csv") if isinstance(index, dict) and index.get("version") == INDEX_VERSION else None
        files = index.get("files") if isinstance(index, dict) and index.get("version") == INDEX_VERSION else None
        if not isinstance(csvs, list):
            kept = [path for path in self.folder.glob(f"{CSV_PREFIX}*.csv") if not is_temp_file(path)]
            csvs = [path.name for path in sorted(kept, key=lambda path: path.stat().st_mtime_ns)]
        return {"version": INDEX_VERSION,
                "csv": [name for name in csvs if isinstance(name, str) and name.startswith(CSV_PREFIX)],
                "files": files if isinstance(files, dict) else {}}

    def _write_index(self, index: dict[str, Any]) -> None:
        self._state.write_state(INDEX, index)


def _filled(row: ExportActivity, others: list[ExportActivity]) -> ExportActivity:
    """`row` with each empty value taken from the first of `others` that has one."""
    filled = {}
    for name, value in asdict(row).items():
        if value is None:
            filled[name] = next((getattr(other, name) for other in others if getattr(other, name) is not None), None)
    return replace(row, **filled)


def _entry_json(entry: ImportedFile) -> dict[str, Any]:
    data = asdict(entry)  # the summary too: a dict of numbers
    del data["activity_id"]  # the key
    data["series"] = list(entry.series)
    return data


def _entry_of(key: str, value: Any) -> ImportedFile | None:
    """An index entry, or None if it is not one (damaged from outside: that file is imported again)."""
    if not key.isdigit() or not isinstance(value, dict):
        return None
    try:
        file_format = value["format"]
        return ImportedFile(activity_id=int(key), file=str(value["file"]), size=int(value["size"]),
                            crc32=int(value["crc32"]), format=file_format if isinstance(file_format, str) else None,
                            status=str(value["status"]), problem=value.get("problem"), records=int(value["records"]),
                            series=tuple(str(name) for name in value["series"]),
                            summary=_summary_of(value.get("summary")),
                            derive_version=int(value.get("derive_version", 0)),
                            track_version=int(value.get("track_version", 0)))
    except (KeyError, TypeError, ValueError):
        return None


def _summary_of(value: Any) -> FileSummary | None:
    """A stored file summary, or None (none stored, or of another shape: computed again)."""
    try:
        return FileSummary(**value) if isinstance(value, dict) else None
    except TypeError:
        return None


__all__ = ["ExportStore", "ExportActivity", "ImportedFile", "imported_file"]
