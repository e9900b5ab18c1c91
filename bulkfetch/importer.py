"""`bulkfetch import PATH`: an athlete's Strava account export into their folder, without a request.

    open the export (bulkfetch.export_archive) -> read activities.csv and profile.csv (bulkfetch.export_csv)
    -> choose the athlete -> keep the CSV -> per activity file: copy it verbatim, decode it in a worker
    process (bulkfetch.activity_files), store the Track -> the index (bulkfetch.export_store)

Whose export it is: the athlete whose list (or earlier import) holds its activities, which `--athlete ID`
and profile.csv must agree with (`--athlete` overrules profile.csv there); else `--athlete ID`, else the
id its profile.csv records, else the one connected athlete; with none of these it waits in
`athletes/unbound/` until a later import knows (see `choose_athlete`).

Idempotent and resumable: a file imported before (same name, size and CRC-32, decoded track there) is
not decoded again, and a track a killed import wrote after its last index write is adopted. Files are
decoded in parallel: one worker process per CPU this process may use (its affinity, a container's
limit, not the host's count), at most MAX_WORKERS, with a bounded number of files in flight so that
memory stays flat. A corrupt or truncated file is imported as far as it decodes and reported, never
stops the import.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bulkfetch.activity_files import decode_path
from bulkfetch.errors import BulkfetchError, ExportError, LockedError
from bulkfetch.export_adopt import adopt_unbound
from bulkfetch.export_archive import (
    ACTIVITIES_CSV,
    PROFILE_CSV,
    Export,
    MemberError,
    copy_member,
    file_crc32,
    member_crc32,
    open_export,
    read_small,
)
from bulkfetch.export_csv import ActivitiesCsv, CsvError, parse_activities_csv, parse_profile_csv
from bulkfetch.export_store import ExportStore, ImportedFile, imported_file
from bulkfetch.processes import available_cpus, interrupts_deferred, result_of, shut_down, wait_for, worker_pool
from bulkfetch.roster import UNBOUND, AthleteDir, Roster
from bulkfetch.track import write_track

INDEX_EVERY_S = 2.0  # a killed import loses at most this much of its index (its tracks are adopted)
IN_FLIGHT_PER_WORKER = 2  # files copied and waiting per worker: enough to keep it busy, memory flat
# Decoding processes at most: each may hold about twice activity_files.MAX_ACTIVITY_BYTES for a pathological
# file, and past a few cores the copying from the export, in this process, is the bottleneck anyway.
MAX_WORKERS = 8
PARALLEL_MIN_FILES = 4  # below this, starting worker processes costs more than it saves
SHOWN_FAILURES = 3  # failed files named in the summary line; the log names them all


class ImportEvents(Protocol):
    """What an import tells (bulkfetch.progress.Reporter shows it)."""

    def info(self, message: str) -> None: ...

    def import_progress(self, done: int, total: int, records: int) -> None: ...


@dataclass
class ImportSummary:
    athlete: AthleteDir
    activities: int = 0  # rows of activities.csv
    manual: int = 0  # rows without a file
    imported: list[ImportedFile] = field(default_factory=list)  # decoded by this import
    replaced: int = 0  # of those, files that replace another file of the same activity
    # Of those, the kept files decoded again (their decoded form or the CSV's sport changed): named in the summary.
    redecoded: list[ImportedFile] = field(default_factory=list)
    unchanged: int = 0  # imported before: not decoded again
    adopted: int = 0  # decoded by a killed import: taken over without decoding again
    missing: list[str] = field(default_factory=list)  # named by activities.csv, not in the export
    errors: list[tuple[str, str]] = field(default_factory=list)  # (file, why) not read or decoded: tried again
    bad: list[tuple[str, str]] = field(default_factory=list)  # (file, why) can never be read (a link loop)
    # This export's files that did not decode whole, as the index holds them: decoded by this import or by
    # an earlier one (a killed import's rerun decodes nothing of what it did), so the summary describes the
    # export as imported, not this run.
    failed: list[ImportedFile] = field(default_factory=list)
    new_csv: bool = True  # False: this activities.csv was imported before
    gone: int = 0  # activities an older export lists and the newest lacks (deleted on Strava)
    bad_rows: int = 0  # rows of activities.csv without a valid activity id: skipped
    duplicate_rows: int = 0  # rows repeating an activity id: the last is kept
    undated: int = 0  # activities whose start neither their row nor their file gives: in year 0
    seconds: float = 0.0  # decoding (copies included)

    @property
    def records(self) -> int:
        return sum(entry.records for entry in self.imported)


@dataclass(frozen=True)
class Job:
    activity_id: int
    file: str
    sport_type: str | None  # activities.csv's: the file summary is derived with it
    replaces: bool = False  # another file (or another version of it) of this activity was imported before
    kept: tuple[int, int] | None = None  # (size, CRC-32) of the kept file, decoded as it is; None: copy it first


def import_export(data_dir: Path, path: Path, wanted: int | None, events: ImportEvents) -> ImportSummary:
    """Import the export at `path` (zip or folder) for athlete `wanted` (None: see `choose_athlete`).

    Raises ExportError (exit 2) before writing anything if the export is missing, unsafe, not an export,
    or another athlete's; LockedError if an import of the same athlete runs. Interrupted (KeyboardInterrupt)
    it keeps what it imported: the index is written on the way out.
    """
    with open_export(path) as export:
        csv_data, listing, recorded = _read_csvs(export)
        roster = Roster(data_dir)
        ids = set(listing.activities)
        athlete = choose_athlete(roster, ids, wanted=wanted, recorded=recorded)
        if listing.language is None:
            events.info(f"activities.csv is in a language bulkfetch does not read (its first column is "
                        f"{listing.first_column!r}): took the activity ids and file names from it; start times, "
                        "sports and totals come from the files")
        if athlete.athlete_id is None:
            events.info("the export does not say whose it is and no athlete is connected: it is kept in "
                        f"{athlete.folder} until an import knows (rerun with --athlete ID, or after 'bulkfetch "
                        "auth'): what was imported then moves over, nothing is decoded again")
        else:
            adoption = adopt_unbound(roster, athlete, ids)
            if adoption is not None:
                events.info(adoption.message)
        store = ExportStore(athlete.folder)
        events.info(f"import {path} for {athlete.label} into {store.folder}")
        with store.lock():
            store.prepare()
            summary = ImportSummary(athlete, activities=len(listing.activities), bad_rows=listing.bad_rows,
                                    duplicate_rows=listing.duplicate_rows)
            summary.new_csv = store.keep_csv(csv_data)
            jobs = _plan(export, listing, store, summary)
            _decode(export, store, jobs, summary, events)
            summary.failed = failed_files(store, listing)
            summary.undated = undated(store, listing.activities.keys())
            summary.gone = len(store.gone())  # after decoding: an activity no CSV dates is dated by its file
    return summary


def check_export(data_dir: Path, path: Path, wanted: int | None) -> None:
    """Raise ExportError for an export `import_export` would refuse, reading only (the export's CSVs, the
    data_dir's athletes), so that bad input is said before the data_dir or its log is made. It costs a
    second reading of activities.csv: milliseconds."""
    with open_export(path) as export:
        _, listing, recorded = _read_csvs(export)
        choose_athlete(Roster(data_dir), set(listing.activities), wanted=wanted, recorded=recorded)


def _read_csvs(export: Export) -> tuple[bytes, ActivitiesCsv, int | None]:
    """activities.csv (its bytes and its rows) and the athlete id profile.csv records, if it does."""
    csv_data = read_small(export, ACTIVITIES_CSV)
    assert csv_data is not None  # open_export found it
    profile = read_small(export, PROFILE_CSV)
    return csv_data, _parse_activities(export, csv_data), parse_profile_csv(profile) if profile is not None else None


def _parse_activities(export: Export, data: bytes) -> ActivitiesCsv:
    try:
        return parse_activities_csv(data)
    except CsvError as exc:
        raise ExportError(f"{export.source}: {exc}", hint="pass the export exactly as Strava made it") from None


# -- whose export -------------------------------------------------------------------------------------
def choose_athlete(roster: Roster, ids: set[int], *, wanted: int | None, recorded: int | None) -> AthleteDir:
    """The athlete an export of activities `ids` is imported for:

    the athlete whose list or earlier import holds these activities, if one does: Strava lists an athlete's
    own activities only, so the export is theirs. `wanted` naming another is refused; so is `recorded`
    naming another without `wanted` (a profile.csv edited or mixed up), the hint offering `--athlete` of
    the holder, which then overrules profile.csv. Several such athletes: refused, as no one athlete's
    export holds them all. Else `wanted` (--athlete), which must agree with `recorded` (profile.csv's
    athlete id) if that is known; else `recorded`; else the one connected athlete; several connected:
    refused (exit 2, naming them); none: `athletes/unbound/`. Every refusal's hint names a choice that is
    then taken.
    """
    holders = {athlete: held for athlete, held in _holders(roster, ids).items() if athlete.athlete_id is not None}
    if len(holders) > 1:
        raise ExportError(f"the export's activities are {' and '.join(_held(*item) for item in holders.items())}",
                          hint="an export holds one athlete's activities: import each athlete's own export")
    if holders:
        holder, held = next(iter(holders.items()))
        claimed = wanted if wanted is not None else recorded
        if claimed is not None and claimed != holder.athlete_id:
            said = "" if wanted is not None else " (its profile.csv says so)"
            raise ExportError(f"the export is not athlete {claimed}'s{said}: its activities are {_held(holder, held)}",
                              hint=f"if it is athlete {holder.athlete_id}'s, import it with --athlete "
                                   f"{holder.athlete_id}")
        return holder
    if wanted is not None and recorded is not None and wanted != recorded:
        raise ExportError(f"the export is athlete {recorded}'s (its profile.csv says so), not athlete {wanted}'s",
                          hint=f"pass --athlete {recorded}, or leave --athlete out")
    target = wanted if wanted is not None else recorded
    if target is not None:
        return roster.athlete(target)
    connected = [athlete for athlete in roster.athletes() if athlete.tokens.load() is not None]
    if len(connected) > 1:
        listed = ", ".join(athlete.label for athlete in connected)
        raise ExportError(f"the export does not say whose it is, and {len(connected)} athletes are connected "
                          f"to this data_dir ({listed})", hint="pass --athlete ID")
    if not connected:
        return AthleteDir(roster.folder / UNBOUND, None)
    if connected[0].athlete_id is None:  # connected, its id not learned yet: its next fetch binds it
        return connected[0]
    return roster.athlete(connected[0].athlete_id)


def _held(athlete: AthleteDir, held: tuple[int, str]) -> str:
    count, where = held
    return f"in {athlete.label}'s list ({count:,})" if where == "list" else \
        f"imported for {athlete.label} already ({count:,})"


def _holders(roster: Roster, ids: set[int]) -> dict[AthleteDir, tuple[int, str]]:
    """The athletes whose list ("list") or imported export ("export") holds some of `ids`: how many."""
    found: dict[AthleteDir, tuple[int, str]] = {}
    for athlete in roster.athletes():
        listed = len(ids & athlete.store.catalog_view().keys()) if athlete.store.listings() else 0
        if listed:
            found[athlete] = (listed, "list")
            continue
        store = ExportStore(athlete.folder)
        imported = len(ids & store.activities().keys()) if store.exists() else 0
        if imported:
            found[athlete] = (imported, "export")
    return found


# -- what to decode -----------------------------------------------------------------------------------
def _plan(export: Export, listing: ActivitiesCsv, store: ExportStore, summary: ImportSummary) -> list[Job]:
    """The activities whose file needs decoding; counts the others into `summary` (unchanged, adopted,
    missing, manual). What an older export imported and this one lacks stays (see ExportStore.activities
    for what its activities.csv rows become)."""
    entries = store.entries()
    decoded = store.decoded_ids()
    jobs: list[Job] = []
    for activity_id, activity in sorted(listing.activities.items()):
        if activity.file is None:
            summary.manual += 1
            continue
        try:
            member = export.member(activity.file)
        except MemberError as exc:  # a name too long, a link loop, a folder under a file's name
            (summary.bad if exc.lasting else summary.errors).append((activity.file, exc.reason))
            continue
        if member is None:
            summary.missing.append(activity.file)
            continue
        entry = entries.get(activity_id)
        if entry is None and activity_id not in decoded:  # new: its CRC-32 comes with the copy
            jobs.append(Job(activity_id, activity.file, activity.sport_type))
            continue
        try:
            crc32 = member_crc32(export, member)  # a folder's file is read for it; a zip says it
        except MemberError as exc:
            summary.errors.append((activity.file, exc.reason))
            continue
        same = entry is not None and entry.same_source(activity.file, member.size, crc32)
        if same:
            assert entry is not None
            if _usable(store, entry) and _summed_as(entry, activity.sport_type):
                summary.unchanged += 1
            else:  # its track is outdated, gone or damaged, or the sport changed
                jobs.append(_again(store, entry, activity.sport_type))
            continue
        adopted = _adoptable(store, activity_id, activity.file, member.size, crc32, activity.sport_type) \
            if entry is None else None
        if adopted is not None:
            entries[activity_id] = adopted
            summary.adopted += 1
            continue
        jobs.append(Job(activity_id, activity.file, activity.sport_type, replaces=entry is not None and not same))
    if summary.adopted:
        store.save_entries(entries)
    older, _ = _redecode(store, [entry for activity_id, entry in entries.items()
                                 if activity_id not in listing.activities and not _usable(store, entry)])
    return jobs + older  # a file not kept whole waits for an import of an export that has it


def _usable(store: ExportStore, entry: ImportedFile) -> bool:
    """Whether the entry's decoded track can be read as it stands: in today's format, there, and whole
    as far as its ends tell (a file removed or damaged since: compaction would find no rows in it)."""
    return entry.track_current and store.track_opens(entry.activity_id)


def _summed_as(entry: ImportedFile, sport_type: str | None) -> bool:
    """Whether the entry's file summary was derived for the activity's sport as activities.csv now says
    (the athlete changed it on Strava: the thresholds and the splits follow the sport)."""
    return sport_type is None or entry.summary is None or entry.summary.sport_type == sport_type


def _again(store: ExportStore, entry: ImportedFile, sport_type: str | None) -> Job:
    """The job that decodes an imported file again: from the kept file, unless that is not whole."""
    try:
        whole = store.file_path(entry.file).stat().st_size == entry.size
    except OSError:
        whole = False
    return Job(entry.activity_id, entry.file, sport_type, kept=(entry.size, entry.crc32) if whole else None)


def failed_files(store: ExportStore, listing: ActivitiesCsv) -> list[ImportedFile]:
    """The index entries of the files `listing` names that did not decode whole (truncated, unreadable),
    in the order of their activity ids."""
    entries = store.files()
    return [entries[activity_id] for activity_id, activity in sorted(listing.activities.items())
            if activity_id in entries and entries[activity_id].file == activity.file
            and entries[activity_id].status != "ok"]


def undated(store: ExportStore, ids: Iterable[int]) -> int:
    """How many of `ids` have no start time: none their (merged) CSV rows give, no file with records (an
    activity the newest export lacks has no row at all: see ExportStore.activities)."""
    rows, entries = store.activities(), store.entries()
    return sum(1 for activity_id in ids if activity_id in rows and rows[activity_id].start_date is None
               and (activity_id not in entries or entries[activity_id].records == 0))


def _adoptable(store: ExportStore, activity_id: int, file: str, size: int, crc32: int,
               sport_type: str | None) -> ImportedFile | None:
    """The entry for a track a killed import decoded from exactly this file, or None. Sound because a
    file is only replaced after its activity's track is removed (see ExportStore.new_file)."""
    kept = store.file_path(file)
    try:
        if kept.stat().st_size != size or file_crc32(kept) != crc32:
            return None
        track = store.read_track(activity_id)  # ValueError in another format: decoded again
    except (OSError, ValueError):
        return None
    return imported_file(activity_id, file, size, crc32, track, sport_type)


def _redecode(store: ExportStore, unusable: list[ImportedFile]) -> tuple[list[Job], list[ImportedFile]]:
    """The jobs that decode the kept files of `unusable` entries again, and the entries whose kept file
    is not whole (their activity has no rows from a file until an export that has it is imported)."""
    if not unusable:
        return [], []
    sports = {activity_id: row.sport_type for activity_id, row in store.activities().items()}
    jobs = [_again(store, entry, sports.get(entry.activity_id)) for entry in unusable]
    lost = [entry for entry, job in zip(unusable, jobs, strict=True) if job.kept is None]
    return [job for job in jobs if job.kept is not None], lost


def refresh_tracks(athlete_folder: Path, events: ImportEvents) -> int:
    """Before a compaction, which would find no rows in them: decode again, from the kept files, the
    imported files whose decoded track is in another format than today's bulkfetch reads
    (bulkfetch.track.FORMAT_VERSION), or went or was damaged since (`_usable`); say so in one line, and
    in one line which could not be (their kept file is not whole either). How many were decoded; 0 as
    well when an import of the athlete runs (it does them)."""
    store = ExportStore(athlete_folder)
    if not store.exists():
        return 0
    with ExitStack() as held:
        try:
            held.enter_context(store.lock())
        except LockedError:
            return 0
        unusable = [entry for entry in store.entries().values() if not _usable(store, entry)]
        jobs, lost = _redecode(store, unusable)
        if lost:
            events.info(f"{_tracks_named(store, lost)}: {'its' if len(lost) == 1 else 'their'} kept file is not "
                        f"whole either, so {'the activity has' if len(lost) == 1 else 'those activities have'} no "
                        "streams, splits or laps from a file: run 'bulkfetch import' again with an export that has "
                        f"{'it' if len(lost) == 1 else 'them'}")
        if not jobs:
            return 0
        again = {job.activity_id for job in jobs}
        damaged = [entry for entry in unusable if entry.activity_id in again and entry.track_current]
        why = [f"{_tracks_named(store, damaged)} {'is' if len(damaged) == 1 else 'are'} gone or damaged"] \
            if damaged else []
        if outdated := len(jobs) - len(damaged):
            why.append(f"{outdated:,} stored by an older bulkfetch")
        events.info(f"decoding {len(jobs):,} imported file{'s' if len(jobs) != 1 else ''} again from the kept "
                    f"files in {store.folder}: {'; '.join(why)}")
        summary = ImportSummary(AthleteDir(athlete_folder, None))
        _decode(None, store, jobs, summary, events)
        return len(summary.imported)


def _tracks_named(store: ExportStore, entries: list[ImportedFile]) -> str:
    """'activity 123's decoded track (.../decoded/123.arrow, from activities/9.fit.gz)', the first few."""
    named = "; ".join(f"activity {entry.activity_id}'s decoded track ({store.track_path(entry.activity_id)}, "
                      f"from {entry.file})" for entry in entries[:SHOWN_FAILURES])
    return named + (f" and {len(entries) - SHOWN_FAILURES:,} more" if len(entries) > SHOWN_FAILURES else "")


# -- decoding -----------------------------------------------------------------------------------------
def decode_to_track(activity_id: int, file: str, kept: Path, size: int, crc32: int, target: Path,
                    sport_type: str | None) -> ImportedFile:
    """Decode a kept file and store its Track (in a worker process): the index entry for it, with its
    file summary derived here, once, for the activity's `sport_type` (activities.csv's)."""
    track = decode_path(kept, file)
    write_track(target, track)
    return imported_file(activity_id, file, size, crc32, track, sport_type)


def _decode(export: Export | None, store: ExportStore, jobs: list[Job], summary: ImportSummary,
            events: ImportEvents) -> None:
    """Copy each job's file from `export` (a job with a `kept` file: decoded as it is, `export` may be
    None) and decode it, in parallel when it pays; the index is written every INDEX_EVERY_S and on the
    way out, interrupted or not."""
    entries = store.entries()
    started = saved_at = time.monotonic()
    workers = decoding_workers()
    in_flight: dict[Future[ImportedFile], Job] = {}
    finished = 0
    events.import_progress(0, len(jobs), 0)

    def settle(done: Iterable[Future[ImportedFile]]) -> None:
        nonlocal finished, saved_at
        for future in done:
            job = in_flight.pop(future)
            finished += 1
            try:
                entry = result_of(future)
            except BrokenProcessPool:
                raise
            except Exception as exc:  # a decoder bug stops this file only: said, and tried again next time
                summary.errors.append((job.file, f"the decoder failed ({type(exc).__name__}: {exc})"))
                continue
            entries[job.activity_id] = entry
            summary.imported.append(entry)
            summary.replaced += job.replaces
            if job.kept is not None:
                summary.redecoded.append(entry)
        events.import_progress(finished, len(jobs), summary.records)
        if time.monotonic() - saved_at >= INDEX_EVERY_S:
            store.save_entries(entries)
            saved_at = time.monotonic()

    pool = worker_pool(workers, __name__) if len(jobs) >= PARALLEL_MIN_FILES and workers > 1 else _InProcess()
    try:
        for job in jobs:
            if len(in_flight) >= workers * IN_FLIGHT_PER_WORKER:
                settle(wait_for(in_flight, first=True))
            try:
                size, crc32 = job.kept or _copy(export, store, job)
            except MemberError as exc:  # a damaged zip entry: this file only
                summary.errors.append((job.file, exc.reason))
                finished += 1
                continue
            with interrupts_deferred():
                in_flight[pool.submit(decode_to_track, job.activity_id, job.file, store.file_path(job.file), size,
                                      crc32, store.track_path(job.activity_id), job.sport_type)] = job
        while in_flight:
            settle(wait_for(in_flight, first=True))
    except BrokenProcessPool:
        raise BulkfetchError("a decoding process died; what was imported is kept",
                             hint="rerun 'bulkfetch import' to continue") from None
    finally:
        shut_down(pool)  # a file being decoded finishes: its track is whole and recorded below
        # The pool has ended: no other thread takes these futures' locks now.
        if finished_late := [future for future in in_flight if future.done() and not future.cancelled()]:
            with suppress(BrokenProcessPool):
                settle(finished_late)
        store.save_entries(entries)
        summary.seconds = time.monotonic() - started


def decoding_workers() -> int:
    """Worker processes for decoding: one per CPU this process may use, at most MAX_WORKERS."""
    return min(available_cpus(), MAX_WORKERS)


def _copy(export: Export | None, store: ExportStore, job: Job) -> tuple[int, int]:
    """Copy the job's file verbatim into the store (its size and CRC-32); the activity's old track goes
    only once the copy is whole (see ExportStore.new_file)."""
    assert export is not None, "only a job with its file kept is decoded without the export"
    with store.new_file(job.file, job.activity_id) as sink:
        return copy_member(export, job.file, sink)


class _InProcess(Executor):
    """A pool, decoding in this process (a few files do not pay for starting workers)."""

    def submit(self, function: Callable[..., ImportedFile], *args: Any) -> Future[ImportedFile]:
        future: Future[ImportedFile] = Future()
        try:
            future.set_result(function(*args))
        except Exception as exc:
            future.set_exception(exc)
        return future


# -- the summary --------------------------------------------------------------------------------------
def summary_line(summary: ImportSummary) -> str:
    """'imported 312 activities from the export: 290 files (250 fit, 25 gpx, 15 tcx), 1 truncated
    (activities/123.fit.gz: ...), 21 manual without a file; 12 imported before (not decoded again)'; a
    failed file an earlier import decoded is named too: '1 truncated (as imported before: ...)'."""
    imported = summary.imported
    parts = []
    if imported:
        formats = Counter(entry.format or "of unknown format" for entry in imported)
        by_format = ", ".join(f"{count:,} {name}" for name, count in formats.most_common())
        parts.append(f"{len(imported):,} file{'s' if len(imported) != 1 else ''} ({by_format})")
    else:
        parts.append("no new file")
    decoded_now = {entry.activity_id for entry in imported}
    for status in ("truncated", "unreadable"):
        failed = [entry for entry in summary.failed if entry.status == status]
        named = [f"{entry.file}: {entry.problem}" for entry in failed]
        named += [f"{file}: {why}" for file, why in summary.bad] if status == "unreadable" else []
        if named:
            before = sum(1 for entry in failed if entry.activity_id not in decoded_now)
            parts.append(f"{len(named):,} {status} ({_as_before(before, len(named))}{_named(named)})")
    if summary.errors:
        parts.append(f"{len(summary.errors):,} not imported, tried again next time "
                     f"({_named(f'{file}: {why}' for file, why in summary.errors)})")
    if summary.missing:
        parts.append(f"{len(summary.missing):,} named in activities.csv but missing from the export "
                     f"({_named(summary.missing)})")
    if summary.manual:
        parts.append(f"{summary.manual:,} manual without a file")
    if summary.undated:
        parts.append(f"{summary.undated:,} without a start time (in year=0)")
    if summary.duplicate_rows:
        parts.append(f"{summary.duplicate_rows:,} duplicate row{'s' if summary.duplicate_rows != 1 else ''} "
                     "(the last kept)")
    if summary.bad_rows:
        parts.append(f"{summary.bad_rows:,} row{'s' if summary.bad_rows != 1 else ''} without a valid activity id "
                     "(skipped)")
    before = summary.unchanged + summary.adopted
    tail = f"; {before:,} imported before (not decoded again)" if before else ""
    replaced = f"; {summary.replaced:,} replaced a file imported before" if summary.replaced else ""
    if again := sorted(summary.redecoded, key=lambda entry: entry.activity_id):
        replaced += (f"; {len(again):,} decoded again from the kept file{'s' if len(again) != 1 else ''} (the decoded "
                     "form was gone, damaged or stored by an older bulkfetch, or the activity's sport changed): "
                     f"{_tracks_named(ExportStore(summary.athlete.folder), again)}")
    activities = f"{summary.activities:,} activit{'y' if summary.activities == 1 else 'ies'}"
    gone = (f"; {summary.gone:,} activit{'y' if summary.gone == 1 else 'ies'} of an earlier export not in the newest "
            "(deleted on Strava: no row from the export)" if summary.gone else "")
    # Parquet is per athlete (athlete=ID/): an export nobody is known to own waits unbound, and says so here too.
    unknown = ("; no Parquet until the athlete is known: rerun with --athlete ID or after 'bulkfetch auth'"
               if summary.athlete.athlete_id is None else "")
    return f"imported {activities} from the export: {', '.join(parts)}{replaced}{tail}{gone}{unknown}"


def _as_before(before: int, count: int) -> str:
    """How many of `count` failed files an earlier import decoded (this one did not decode them again)."""
    if not before:
        return ""
    return "as imported before: " if before == count else f"{before:,} as imported before; "


def _named(items: Iterable[str]) -> str:
    shown = list(items)
    more = f"; {len(shown) - SHOWN_FAILURES:,} more in the log" if len(shown) > SHOWN_FAILURES else ""
    return "; ".join(shown[:SHOWN_FAILURES]) + more


def failures_text(summary: ImportSummary) -> list[str]:
    """Every file that did not import whole, one line each (for the log); a file an earlier import decoded
    is not logged again (the summary line names it)."""
    decoded_now = {entry.activity_id for entry in summary.imported}
    lines = [f"{entry.file}: {entry.status}: {entry.problem}" for entry in summary.failed
             if entry.activity_id in decoded_now]
    lines += [f"{file}: unreadable: {why}" for file, why in summary.bad]
    lines += [f"{file}: not imported: {why}" for file, why in summary.errors]
    lines += [f"{file}: named in activities.csv, missing from the export" for file in summary.missing]
    return lines


def rate_text(summary: ImportSummary) -> str:
    """'decoded 290 files (1,043,211 records) in 12.3 s: 23.6 files/s, 84,800 records/s'."""
    files = len(summary.imported)
    seconds = max(summary.seconds, 1e-9)
    return (f"decoded {files:,} files ({summary.records:,} records) in {summary.seconds:.1f} s: "
            f"{files / seconds:,.1f} files/s, {summary.records / seconds:,.0f} records/s")


__all__ = ["ImportSummary", "choose_athlete", "import_export", "summary_line"]
