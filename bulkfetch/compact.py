"""Compaction: one athlete's raw JSON (a RawStore) -> hive-partitioned Parquet, one file per table and year.

Layout (see bulkfetch.parquet_layout): `parquet_dir/<table>/athlete_id=<id>/year=YYYY/part-0.parquet`,
`<id>` being the athlete the caller names (the store's own: a store holds one athlete) and `year` the
UTC year of the activity's `start_date` (the summary's; the detail's if the summary has none; 0 if
neither parses). Both live in the folder names only, never inside the files (Spark refuses a column
that is in both). A compaction touches its athlete's folders only, so athletes compact independently.

The athlete's account export, when imported, is the other source (see bulkfetch.export_view and
bulkfetch.file_rows): activities only its activities.csv knows get rows from it, in the year of their
start, and a decoded device file gives its activity's streams, splits and laps wherever the API's are
not there.

Incremental, per table group: the detail tables (activities and what a detail holds) and the streams
table of a year are built from different inputs, so each group gets its own fingerprint (see
`details_fingerprint`, `streams_fingerprint`); the store's `state/compact.json` keeps the fingerprints
each year's partitions were written from, and a group whose fingerprint and files are unchanged is
skipped: a kudos count that changed rewrites a year's activities, not its streams. A new SCHEMA_VERSION,
another parquet_dir or athlete id, or `rebuild=True` rewrite every year; a new derive.DERIVE_VERSION or
track format rewrites the table groups that have rows from device files. Before any of that, one cheap
check (see `inputs_identity`: the digest of the catalog's list pages and the identities of the folders the raw files are
renamed into) tells a run whose inputs did not change at all since the last whole compaction: it looks
at no activity's files and writes nothing.

A table whose folder still holds the one-athlete layout of schema versions before 3, or files of an older
schema version, is written aside and swapped in once every year is written (see bulkfetch.parquet_layout):
readers never see both.

Atomic: a partition file is written to a hidden temporary name in its folder, fsynced and
`os.replace`d, so readers see the old file or the new one. The manifest entry for a year is written
after that year's files, so a crash leaves that year unrecorded and the next run rewrites it.

Bounded memory: a year is read in chunks of CHUNK_ACTIVITIES details, turned into Arrow at once (by
Arrow's JSON reader, see bulkfetch.arrow_details), and written as row groups once ROW_GROUP_BYTES of
Arrow data are buffered; no step holds a year's raw JSON, and a chunk's raw bytes go once the reader has
them. (Reading the next chunk in a thread while this one builds the tables of the chunk before was slower
and took more CPU: the reader uses every core already.)
Streams (about 1 MB of JSON per hour of activity) go one file at a time: parsed, turned into Arrow,
dropped, so the most this holds is one parsed stream file plus STREAM_ROW_GROUP_BYTES of Arrow data (and,
while the worker builds some of them, at most STREAMS_AHEAD activities' stream tables).

Streams are written sorted by (activity_id, seq), declared as the file's sorting columns, so row group
statistics let readers skip straight to one activity. Their encodings suit the columns: delta for the
ever-growing integers (activity_id, seq, time); byte-stream-split for the near-unique floats (distance,
lat, lng: zstd then finds their shared exponent bytes; a dictionary would be tried and dropped);
dictionary where values repeat (sport_type, sensor integers, one-decimal altitude and grade, velocity).
On the bench's streams that is about a fifth smaller, and faster, than pyarrow's defaults.

Parallel: when at least two years need writing and they hold at least PARALLEL_MIN_BYTES of raw JSON
(see `bench/compact.py`), this process and one forkserver worker (PARALLEL_WORKERS = 2 in all) share
the years; below that, starting a worker costs more than it saves. A single year to write with at least
PARALLEL_MIN_BYTES of streams shares its stream files instead: the worker parses some and sends back their
Arrow tables, this process builds the others and writes them all, in the same order as alone. Stopped
early (Ctrl-C, SIGTERM, an error), `compact` stops the worker and waits for it: nothing is written after
it has returned.
"""

from __future__ import annotations

import gc
import hashlib
import multiprocessing
import os
import secrets
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import AbstractContextManager, closing, contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from bulkfetch import derive
from bulkfetch.arrow_details import DetailRead, RawActivity, build_detail_tables, parse_detail, read_details
from bulkfetch.errors import LockedError, WriteError
from bulkfetch.export_view import ExportView, TrackFile, read_track_file
from bulkfetch.file_rows import export_part, file_stream_set
from bulkfetch.locks import Holder, hold
from bulkfetch.parquet_layout import AthleteLayout, publish, staged_tables, year_of_folder
from bulkfetch.processes import WORKER_MIN_BYTES, interrupts_deferred, result_of, shut_down, wait_for, worker_pool
from bulkfetch.recording import RECORDING_FIELDS
from bulkfetch.schema import (
    API,
    DETAIL_TABLES,
    FILE,
    SCHEMA_VERSION,
    SCHEMAS,
    STREAMS,
    TABLES,
    ExportPart,
    build_streams,
    utc_years,
)
from bulkfetch.store import (
    TEMP_MARK,
    RawStore,
    describe_write_error,
    ensure_dir,
    file_identity,
    fsync_dir,
    is_orphaned_temp,
    write_hint,
)
from bulkfetch.track import FORMAT_VERSION as TRACK_FORMAT

MANIFEST = "compact"  # state/compact.json
INPUTS = "inputs"  # the manifest's inputs_identity of the last whole compaction
# Inputs changed this recently (seconds) are not recorded as unchanged: see inputs_identity.
RACY_S = 2.0
# The tables of a year that are written together, from the same inputs (see the module docstring).
GROUPS: dict[str, tuple[str, ...]] = {"details": DETAIL_TABLES, "streams": (STREAMS,)}
# What stream rows copy from their activity's row.
FROM_ACTIVITY = ("start_date", "sport_type")
START = FROM_ACTIVITY.index("start_date")  # an entry's start, as its `copied` holds it: its year and order
UNKNOWN_YEAR = 0
CHUNK_ACTIVITIES = 256
# Six detail tables buffer at once: at most about 50 MB in all (at 64 MB each, a year of 2,000 activities
# peaked 44 MB higher; see bench/compact.py's memory case).
ROW_GROUP_BYTES = 8 << 20
# Streams: about 300,000 points a row group (a few MB of Parquet), so the buffer stays small and readers
# that look for one activity skip the rest by row group statistics.
STREAM_ROW_GROUP_BYTES = 32 << 20
# A row group also ends at this many buffered tables: a stream table comes per activity, and each holds
# memory beyond its counted buffers (a year of 2,000 activities of 20-200 points held 70 MB for 21 MB of
# Arrow data, 15 MB at 200 activities: the peak grew with the history). Long streams end by bytes first.
ROW_GROUP_MAX_TABLES = 256
PARALLEL_WORKERS = 2
PARALLEL_MIN_BYTES = WORKER_MIN_BYTES  # raw JSON to rewrite below which no worker is started
COMPRESSION = "zstd"
# The detail tables' columns whose values repeat (categories, counts, ranks, split numbers and 1 km or 1 mile
# split values, a segment ridden again): dictionary-encoded. The others (ids, times, measurements,
# polylines) are near-unique: a dictionary is built for them, then dropped as it outgrows its page, and
# trying it cost a fifth of the detail tables' write time, for no gain in size (bench/compact.py's 2,000
# details: 0.18 s against 0.23 CPU s to write, 2.09 MB against 2.44).
DICTIONARY_COLUMNS: dict[str, list[str]] = {
    "activities": ["source", "sport_type", "type", "workout_type", "timezone", "utc_offset", "device_name", "gear_id",
                   "gear_name", "visibility", "location_city", "location_state", "location_country",
                   "achievement_count", "kudos_count", "comment_count", "athlete_count", "photo_count",
                   "total_photo_count", "pr_count"],
    **dict.fromkeys(("splits_metric", "splits_standard"), [
        "sport_type", "split", "distance", "elapsed_time", "moving_time", "elevation_difference", "average_speed",
        "average_grade_adjusted_speed", "pace_zone", "source"]),
    "laps": ["name", "lap_index", "split", "pace_zone", "source"],
    "best_efforts": ["name", "moving_time", "start_index", "end_index", "pr_rank"],
    "segment_efforts": ["name", "moving_time", "start_index", "end_index", "max_heartrate", "pr_rank", "kom_rank",
                        "visibility", "segment_id", "segment_name", "segment_activity_type", "segment_climb_category",
                        "segment_city", "segment_state", "segment_country"],
}
# Parquet options per table beyond COMPRESSION (see the module docstring for the streams choices).
WRITE_OPTIONS: dict[str, dict[str, Any]] = {
    **{table: {"use_dictionary": columns} for table, columns in DICTIONARY_COLUMNS.items()},
    STREAMS: {
        "use_dictionary": ["start_date", "sport_type", "source", "heartrate", "cadence", "watts", "temp", "moving",
                           "altitude", "velocity_smooth", "grade_smooth"],
        "column_encoding": {"activity_id": "DELTA_BINARY_PACKED", "seq": "DELTA_BINARY_PACKED",
                            "time": "DELTA_BINARY_PACKED", "distance": "BYTE_STREAM_SPLIT",
                            "lat": "BYTE_STREAM_SPLIT", "lng": "BYTE_STREAM_SPLIT"},
        "write_statistics": True,
        "sorting_columns": [pq.SortingColumn(0), pq.SortingColumn(1)],  # activity_id, seq
    },
}
_INTACT = "check the folder and rerun: the previous Parquet files are intact"


@dataclass(frozen=True)
class SetAside:
    """A raw file that holds no detail or StreamSet (damaged from outside: bulkfetch writes whole files of
    parsed answers), moved aside once its year was written without it (see RawStore.set_aside)."""

    raw: Path  # where it was: the next fetch fetches it again
    moved_to: Path
    group: str  # the table group it was read for (a key of GROUPS)


@dataclass(frozen=True)
class CompactResult:
    written: dict[str, list[int]]  # table -> years whose partition file was rewritten or removed
    skipped_years: list[int]  # years whose inputs did not change
    rows: dict[str, int]  # rows written per table in this call
    set_aside: list[SetAside] = field(default_factory=list)  # damaged raw files moved aside by this call


@dataclass(frozen=True, slots=True)
class Entry:
    """One activity of a partition: its list summary and, if fetched, its detail and streams files'
    identities (size and mtime_ns, taken before anything reads them); from the account export, its
    decoded device file if that gives rows, and whether the summary is the export's CSV row (no API
    listing has the activity).

    Every year's entries live for the whole run, so each holds little: its summary's place in the run's
    SpilledSummaries (the JSON, 31 MB at 20,000 activities, is read back for the year being fingerprinted
    or written: `summary_json`), the values stream rows copy, and whether it has a detail and a streams
    file, whose paths the store derives from the id (the store is one object all entries share).
    """

    activity_id: int
    store: RawStore
    summary_at: int  # offset and size of its summary in the SpilledSummaries
    summary_size: int
    copied: tuple[Any, ...]  # the summary's FROM_ACTIVITY values
    has_detail: bool = False
    detail_size: int = 0
    detail_mtime_ns: int = 0
    has_streams: bool = False
    stream_size: int = 0
    stream_mtime_ns: int = 0
    track: TrackFile | None = None
    from_csv: bool = False
    stale_file: bool = False  # its whole device file is older than Strava's version: no rows (file_rows)
    summary_json: bytes = b""  # the summary as JSON with sorted keys, once loaded (SpilledSummaries.loaded)

    @property
    def summary(self) -> dict[str, Any]:
        if not self.summary_json:  # a caller's mistake, not the data's: say so rather than orjson's parse error
            raise RuntimeError(f"activity {self.activity_id}'s summary was not loaded (SpilledSummaries.loaded)")
        return orjson.loads(self.summary_json)

    @property
    def detail_path(self) -> Path | None:
        return self.store.detail_path(self.activity_id) if self.has_detail else None

    @property
    def stream_path(self) -> Path | None:
        return self.store.stream_path(self.activity_id) if self.has_streams else None

    @property
    def children_file(self) -> TrackFile | None:
        """Its device file while that may give its splits and laps: it has no detail."""
        return None if self.has_detail else self.track

    @property
    def streams_file(self) -> TrackFile | None:
        """Its device file while that may give its streams: it has no API streams."""
        return None if self.has_streams else self.track

    def raw_file(self, group: str) -> tuple[Path, tuple[int, int]]:
        """Its raw file of a table group (its detail, or its streams) and the size and mtime_ns it had when the
        run began."""
        if group == "details":
            return self.store.detail_path(self.activity_id), (self.detail_size, self.detail_mtime_ns)
        return self.store.stream_path(self.activity_id), (self.stream_size, self.stream_mtime_ns)

    def raw_bytes(self, group: str) -> int:
        """What writing its rows of a table group reads: its raw JSON, or its device file in its stead."""
        if group == "details":
            return self.detail_size + (self.children_file.size if self.children_file else 0)
        return self.stream_size + (self.streams_file.size if self.streams_file else 0)


@dataclass(frozen=True)
class YearJob:
    year: int
    layout: AthleteLayout
    entries: list[Entry]
    groups: tuple[str, ...] = tuple(GROUPS)  # the table groups to rewrite: those whose inputs changed

    @property
    def tables(self) -> list[str]:
        return [table for group in self.groups for table in GROUPS[group]]

    @property
    def raw_bytes(self) -> int:
        """The raw JSON and decoded device files this job reads."""
        return sum(map(self.group_bytes, self.groups))

    def group_bytes(self, group: str) -> int:
        """What writing one table group reads (0 if the job leaves that group alone)."""
        return sum(entry.raw_bytes(group) for entry in self.entries) if group in self.groups else 0

    def loaded(self, summaries: SpilledSummaries) -> YearJob:
        """The job with its entries' summaries, to be written here or in the worker."""
        return replace(self, entries=summaries.loaded(self.entries))

    @property
    def detail_chunks(self) -> list[list[Entry]]:
        """Its entries as the chunks its detail tables are built from, if it rewrites them."""
        if "details" not in self.groups:
            return []
        return [self.entries[start:start + CHUNK_ACTIVITIES] for start in range(0, len(self.entries), CHUNK_ACTIVITIES)]


@dataclass
class YearOutcome:
    year: int
    rows: dict[str, int] = field(default_factory=dict)
    changed_tables: list[str] = field(default_factory=list)  # written, or removed because now empty
    # By table group, the activities whose raw file was there but held no detail (or StreamSet): written as
    # if it were not there.
    damaged: dict[str, list[int]] = field(default_factory=lambda: {group: [] for group in GROUPS})


def compact(store: RawStore, parquet_dir: Path, athlete_id: int, *, rebuild: bool = False,
            on_progress: Callable[[int, int], None] | None = None, parallel: bool = True,
            on_wait: Callable[[Holder], None] | None = None, move_damaged: bool = True) -> CompactResult:
    """Bring athlete `athlete_id`'s partitions in `parquet_dir` up to date with the raw JSON in `store`
    (that athlete's); rewrite only the table groups of the years whose inputs changed.

    `on_progress(done_years, total_years)` is called with 0 first and after each year written.
    `parallel=False` writes every year in this process, never with a worker (see `_run_jobs`).
    A detail or stream file found damaged as its year is written (no JSON object in it) counts as not there;
    once its year is written it is moved aside (`CompactResult.set_aside`), so that the next fetch fetches it
    again, and the fingerprint of its table group is not recorded: the next run writes that group again, from
    what is there then. `move_damaged=False` (a compaction no one hears, in a fetch's quota waits) leaves the
    files in place: the next compaction finds them again.
    Raises WriteError if a file cannot be written (the previous partitions stay intact) and
    LockedError if another compaction of the same store is running, unless `on_wait` is given: it is told
    who runs it, and this one waits for it.
    """
    ensure_dir(store.state_dir)
    ensure_dir(parquet_dir)
    with _compact_lock(store.state_dir, on_wait), closing(SpilledSummaries(store.state_dir)) as summaries:
        layout = AthleteLayout(parquet_dir, athlete_id, staged_tables(parquet_dir, athlete_id, TABLES, SCHEMA_VERSION))
        _sweep_temp_files(layout)
        manifest = _load_manifest(store, parquet_dir, athlete_id, rebuild=rebuild)
        recorded = manifest["years"]
        export = ExportView(store.data_dir)
        # The digest before the catalog it stands for is read: a listing written in between makes the
        # recorded identity differ from the next run's, which then looks closer.
        inputs = inputs_identity(store, export, store.catalog_digest(), time.time())
        if inputs is not None and manifest.get(INPUTS) == inputs and _as_recorded(layout, recorded):
            # Nothing it reads changed since the last whole compaction: no year is looked at again.
            if on_progress:
                on_progress(0, 0)
            return CompactResult(written={table: [] for table in TABLES},
                                 skipped_years=sorted(int(year) for year in recorded), rows={t: 0 for t in TABLES})
        manifest.pop(INPUTS, None)  # recorded again once every year is written
        by_year = partition_entries(store, summaries, export=export)
        fingerprints = {year: year_fingerprints(entries, summaries) for year, entries in by_year.items()}

        stale = {year: tuple(group for group in GROUPS if not _is_current(
                     recorded.get(str(year)), group, fingerprints[year][group], layout, year))
                 for year in by_year}
        todo = [year for year in sorted(by_year) if stale[year]]
        skipped = [year for year in sorted(by_year) if year not in todo]
        written: dict[str, set[int]] = {table: set() for table in TABLES}
        rows = {table: 0 for table in TABLES}
        moved: list[SetAside] = []

        for year in sorted(_years_on_disk(layout) | {int(y) for y in recorded}):
            if year not in by_year:  # every activity of that year is gone: its partitions go too
                for table in _remove_year(layout, year):
                    written[table].add(year)
                recorded.pop(str(year), None)
        store.write_state(MANIFEST, manifest)

        if on_progress:
            on_progress(0, len(todo))
        jobs = [YearJob(year, layout, by_year[year], stale[year]) for year in todo]
        # Closed at once if this stops early: the worker stops.
        with closing(_run_jobs(jobs, summaries, parallel=parallel)) as outcomes:
            for done, outcome in enumerate(outcomes, start=1):
                for table in outcome.changed_tables:
                    written[table].add(outcome.year)
                for table, count in outcome.rows.items():
                    rows[table] += count
                if move_damaged:
                    moved += _set_aside(store, by_year[outcome.year], outcome.damaged)
                # A group left alone was current, so its fingerprint is today's too; a table's file exists
                # exactly when it has rows (one without rows is removed).
                recorded[str(outcome.year)] = {
                    "fingerprints": {group: fingerprint for group, fingerprint in fingerprints[outcome.year].items()
                                     if not outcome.damaged[group]},
                    "tables": [t for t in TABLES if layout.partition_path(t, outcome.year).exists()],
                }
                store.write_state(MANIFEST, manifest)
                if on_progress:
                    on_progress(done, len(todo))
        publish(layout, TABLES)  # every year is written: staged tables replace the legacy or older ones
        if inputs is not None:
            manifest[INPUTS] = inputs
            store.write_state(MANIFEST, manifest)

    return CompactResult(written={t: sorted(y) for t, y in written.items()}, skipped_years=skipped, rows=rows,
                         set_aside=moved)


def _set_aside(store: RawStore, entries: Sequence[Entry], damaged: Mapping[str, Sequence[int]]) -> list[SetAside]:
    """Move a written year's damaged raw files aside, each while it is still the version the run began with
    (one a fetch replaced meanwhile stays: the next run reads it)."""
    if not any(damaged.values()):
        return []
    by_id = {entry.activity_id: entry for entry in entries}
    moved = []
    for group, ids in damaged.items():
        for activity_id in ids:
            path, identity = by_id[activity_id].raw_file(group)
            if (target := store.set_aside(path, identity)) is not None:
                moved.append(SetAside(path, target, group))
    return moved


# -- inputs --------------------------------------------------------------------------------------------
def has_inputs(store: RawStore) -> bool:
    """Whether the athlete has anything to compact: an API listing, or an imported account export."""
    return bool(store.listings()) or ExportView(store.data_dir).exists()


def partition_entries(store: RawStore, summaries: SpilledSummaries, *,
                      export: ExportView | None = None) -> dict[int, list[Entry]]:
    """The catalog's activities, and those only the account export's CSV has, by partition year, each
    year ordered by (start_date, id), their summaries in `summaries`. `export`: the store's, when the
    caller has it.

    An activity's detail, streams and decoded device file count if their files are there; their size and
    mtime_ns are taken now, before anything reads them, so a file replaced later changes the next run's
    fingerprint.
    """
    catalog = _kept_catalog(store, summaries)
    export = ExportView(store.data_dir) if export is None else export
    export.refresh_summaries()  # after a new derive rule: the CSV rows' gaps and fetch's coverage need them
    stale_files = _stale_files(export, catalog, summaries)  # the verdict fetch and plan take (see file_rows)
    from_csv = export.csv_summaries(catalog.keys() | export.gone(catalog)) if export.exists() else {}
    kept = {**{i: _kept(summary, summaries) for i, summary in from_csv.items()}, **catalog}
    del from_csv
    detail_ids = store.detail_ids()
    stream_ids = store.stream_ids()
    ids = sorted(kept)
    years = utc_years([kept[i].copied[START] for i in ids])
    by_year: dict[int, list[Entry]] = {}
    for activity_id, year in zip(ids, years):
        listed = activity_id in catalog
        summary = kept[activity_id]
        path, size, mtime_ns = _identity(store.detail_path(activity_id) if listed and activity_id in detail_ids
                                         else None)
        streams = _identity(store.stream_path(activity_id) if listed and activity_id in stream_ids else None)
        if year is None:
            year = _detail_year(path)
        by_year.setdefault(year, []).append(Entry(
            activity_id, store, summary.at, summary.size, summary.copied, path is not None, size, mtime_ns,
            streams[0] is not None, *streams[1:], track=export.track_file(activity_id), from_csv=not listed,
            stale_file=activity_id in stale_files))
    for entries in by_year.values():
        entries.sort(key=lambda e: (str(e.copied[START] or ""), e.activity_id))
    return by_year


class SpilledSummaries:
    """The summaries of a run's entries, as JSON with sorted keys (what the fingerprints digest), one after
    the other in an unnamed temporary file in `folder` (gone with the process, however it ends): each entry
    knows its summary's place, and a year's summaries are read back (from the page cache) for its
    fingerprints and again while it is written. Held in memory they were 31 MB at 20,000 activities for the
    whole run: a third of the growth of a full rebuild's peak RSS from 2,000 activities."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        try:
            self._file = tempfile.TemporaryFile(dir=folder)
        except OSError as exc:
            raise self._error(exc) from None
        self._size = 0

    def add(self, summary: dict[str, Any]) -> tuple[int, int]:
        """Spill a summary; its offset and size."""
        json = orjson.dumps(summary, option=orjson.OPT_SORT_KEYS)
        try:
            self._file.write(json)
        except OSError as exc:
            raise self._error(exc) from None
        self._size += len(json)
        return self._size - len(json), len(json)

    def read(self, at: int, size: int) -> bytes:
        try:
            self._file.flush()
        except OSError as exc:
            raise self._error(exc) from None
        return os.pread(self._file.fileno(), size, at)

    def json_of(self, entry: Entry) -> bytes:
        return self.read(entry.summary_at, entry.summary_size)

    def loaded(self, entries: Iterable[Entry]) -> list[Entry]:
        """The entries with their `summary_json`, to be written (the fingerprints read `json_of` instead:
        copying an entry costs more than reading its summary)."""
        return [replace(e, summary_json=self.json_of(e)) for e in entries]

    def close(self) -> None:
        try:
            self._file.close()
        except OSError:  # the last summaries' flush (a full disk): nobody reads them again, the file is gone
            pass

    def _error(self, exc: OSError) -> WriteError:
        """The one-line error of a state folder that cannot take the summaries (a full disk, say)."""
        return WriteError(describe_write_error(self._folder, exc), hint=write_hint(exc))


@dataclass(frozen=True, slots=True)
class _KeptSummary:
    """What an Entry keeps of a summary (see Entry)."""

    at: int  # its offset and size in the SpilledSummaries
    size: int
    copied: tuple[Any, ...]  # its FROM_ACTIVITY values


def _kept(summary: dict[str, Any], summaries: SpilledSummaries) -> _KeptSummary:
    return _KeptSummary(*summaries.add(summary), tuple(summary.get(key) for key in FROM_ACTIVITY))


def _kept_catalog(store: RawStore, summaries: SpilledSummaries) -> dict[int, _KeptSummary]:
    """The store's catalog as kept summaries, made a list page at a time (store.catalog_parts): the parsed
    pages are never all held at once (at 20,000 activities they are about 90 MB, which the allocator kept
    after; the peak RSS of a full rebuild then grew 1.55 x from 2,000 activities to 20,000). An activity in
    several parts is spilled once a part: the last one's is kept."""
    kept: dict[int, _KeptSummary] = {}
    for items in store.catalog_parts():
        for activity_id, summary in items.items():
            kept[activity_id] = _kept(summary, summaries)
    return kept


def _stale_files(export: ExportView, catalog: Mapping[int, _KeptSummary], summaries: SpilledSummaries) -> set[int]:
    """ExportView.stale_files over the listed activities that have a file: only their summaries are read
    back and parsed again."""
    if not export.exists():
        return set()
    return export.stale_files({i: orjson.loads(summaries.read(catalog[i].at, catalog[i].size))
                               for i in export.files().keys() & catalog.keys()})


def inputs_identity(store: RawStore, export: ExportView, catalog_digest: str, now: float) -> str | None:
    """A digest of everything `partition_entries` reads, cheap to take: the catalog's (store.catalog_digest:
    a routine listing that lists nothing new changes nothing), the identity of each folder the raw files and the
    export's decoded tracks and CSVs are in, of the export's index, the tombstones and the newest complete
    full listing (what tells an export's activity deleted), and the versions the rows are made by.

    A folder's mtime is enough for its files: every raw, track and CSV write is a new file renamed into
    its folder (atomic_write), never an edit in place, so a new, replaced or removed file changes its
    folder's mtime. None when any of them changed within RACY_S of `now` (epoch s): one changed again
    within the clock's resolution would keep the same mtime, so that state is not recorded; the next run
    then checks every activity again.
    """
    listing = store.latest_full_listing()
    paths = [store.detail_dir, store.stream_dir, *export.folders(), store.state_path("tombstones"),
             *([listing.folder] if listing is not None else [])]
    stats = [export.index_identity(), *map(file_identity, paths)]
    if any(stat is not None and stat[2] >= (now - RACY_S) * 1e9 for stat in stats):
        return None
    digest = _digest()
    digest.update(f"derive {derive.DERIVE_VERSION} track {TRACK_FORMAT}\n".encode())
    digest.update(orjson.dumps([*map(os.fspath, paths), *stats]))
    digest.update(catalog_digest.encode())
    return digest.hexdigest()


def _identity(path: Path | None) -> tuple[Path | None, int, int]:
    """(path, size, mtime_ns) of a raw file, or (None, 0, 0) if there is none (or it just went)."""
    if path is None:
        return None, 0, 0
    try:
        info = path.stat()
    except FileNotFoundError:
        return None, 0, 0
    return path, info.st_size, info.st_mtime_ns


def _detail_year(path: Path | None) -> int:
    detail = _read_detail(path)
    year = utc_years([detail.get("start_date")])[0] if detail else None
    return UNKNOWN_YEAR if year is None else year


def year_fingerprints(entries: Sequence[Entry], summaries: SpilledSummaries) -> dict[str, str]:
    """The fingerprint of each table group of a year (keys of GROUPS), the entries' summaries in `summaries`."""
    return {"details": details_fingerprint(entries, summaries), "streams": streams_fingerprint(entries, summaries)}


def details_fingerprint(entries: Sequence[Entry], summaries: SpilledSummaries) -> str:
    """A digest of everything a year's detail tables are built from.

    It covers SCHEMA_VERSION, the ids in order, each summary's full content (kudos included: they are
    columns) and each detail file's size and mtime_ns (replaced whole, never edited).
    """
    digest = _digest()
    for entry in entries:
        # The device file counts only while it gives the splits and laps (no detail yet).
        track = _track_identity(entry.children_file, entry.stale_file)
        digest.update(f"{entry.activity_id} {entry.has_detail} {entry.detail_size} "
                      f"{entry.detail_mtime_ns} {entry.from_csv}{track}\n".encode())
        digest.update(summaries.json_of(entry))
        digest.update(b"\n")
    return digest.hexdigest()


def streams_fingerprint(entries: Sequence[Entry], summaries: SpilledSummaries) -> str:
    """A digest of everything a year's streams partition is built from, and nothing else.

    It covers SCHEMA_VERSION and, for each activity of the year with a streams file, its id, the file's
    size and mtime_ns (replaced whole, never edited) and the FROM_ACTIVITY values its rows copy (the
    summary's; where the summary has none they come from the detail, so its file's identity stands in).
    An activity whose streams may come from its device file instead has that file's identity, and the
    summary's RECORDING_FIELDS, against which the file is found stale or not (see file_rows), and that
    verdict. "No streams" markers are
    not in it: they add no rows.
    """
    digest = _digest()
    for entry in entries:
        if not entry.has_streams and entry.streams_file is None:
            continue
        copied = list(entry.copied)
        detail = f" {entry.detail_size} {entry.detail_mtime_ns}" if None in copied else ""
        if entry.has_streams:
            source = f"{entry.stream_size} {entry.stream_mtime_ns}"
        else:
            source = _track_identity(entry.streams_file, entry.stale_file)
            summary = orjson.loads(summaries.json_of(entry))
            copied += [summary.get(key) for key in RECORDING_FIELDS]
        digest.update(f"{entry.activity_id} {source}{detail}\n".encode())
        digest.update(orjson.dumps(copied))
        digest.update(b"\n")
    return digest.hexdigest()


def _track_identity(track: TrackFile | None, stale: bool) -> str:
    """A device file's part of a fingerprint: the decoded file's identity, whether it is stale (see
    file_rows), and the versions of the track format and of derive's rules its rows are made by (a new
    rule rewrites the years with file rows)."""
    if track is None:
        return ""
    return (f" file {track.size} {track.mtime_ns} {track.status} stale {stale} derive {derive.DERIVE_VERSION}"
            f" track {TRACK_FORMAT}")


def _digest() -> hashlib.blake2b:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"schema {SCHEMA_VERSION}\n".encode())
    return digest


def _read_detail(path: Path | None) -> dict[str, Any] | None:
    """A stored detail, or None if it is gone or damaged (written atomically, so damage came from
    outside): the activity then keeps its summary row with has_detail false, and the run goes on."""
    return parse_detail(_detail_bytes(path))


def _detail_bytes(path: Path | None) -> bytes | None:
    """A stored detail's bytes, or None if it is gone."""
    if path is None:
        return None
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _copied_from_activity(entry: Entry) -> list[Any]:
    """The FROM_ACTIVITY values of the activity's row: the summary's, else the detail's (as
    `build_tables` merges them); the detail is read only when the summary lacks one."""
    values = list(entry.copied)
    if None in values:
        detail = _read_detail(entry.detail_path) or {}
        values = [detail.get(key) if value is None else value for key, value in zip(FROM_ACTIVITY, values)]
    return values


def _export_part(entry: Entry) -> ExportPart:
    """What the entry's rows take from the export; its device file is read only while it may give them."""
    track = read_track_file(entry.children_file) if entry.children_file is not None else None
    return export_part(entry.summary, track, from_csv=entry.from_csv, stale=entry.stale_file)


def _stream_set(entry: Entry) -> tuple[Any, str]:
    """The activity's StreamSet and its source: the API's if stored (_DAMAGED if its file holds none), else
    its device file's (None if it has neither, or its file is stale against the summary)."""
    if entry.stream_path is not None:
        return _read_streams(entry.stream_path), API
    track = read_track_file(entry.streams_file) if entry.streams_file is not None else None
    return (file_stream_set(track, entry.summary, stale=entry.stale_file) if track is not None else None), FILE


# A stream file that holds no StreamSet (see `_read_streams`).
_DAMAGED = object()


def _read_streams(path: Path | None) -> Any:
    """A stored StreamSet, None if it is gone, or _DAMAGED if its file holds no StreamSet (no JSON, or JSON
    of neither of Strava's two shapes: damage from outside, as bulkfetch stores only parsed answers). No
    stream rows either way."""
    if path is None:
        return None
    try:
        stream_set = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except orjson.JSONDecodeError:
        return _DAMAGED
    return stream_set if isinstance(stream_set, (dict, list)) else _DAMAGED


# -- manifest ------------------------------------------------------------------------------------------
def _load_manifest(store: RawStore, parquet_dir: Path, athlete_id: int, *, rebuild: bool) -> dict[str, Any]:
    """The recorded fingerprints, or a fresh manifest (everything gets rewritten) when they cannot be
    trusted: `rebuild`, another schema version, parquet_dir or athlete, or a damaged file."""
    fresh = {"schema_version": SCHEMA_VERSION, "parquet_dir": str(parquet_dir.resolve()),
             "athlete_id": athlete_id, "years": {}}
    keys = ("schema_version", "parquet_dir", "athlete_id")
    manifest = store.read_state(MANIFEST, None)
    if (rebuild or not isinstance(manifest, dict) or not isinstance(manifest.get("years"), dict)
            or {k: manifest.get(k) for k in keys} != {k: fresh[k] for k in keys}):
        # Keep the years so that partitions of years no longer in the catalog are still cleaned up.
        old_years = manifest.get("years") if isinstance(manifest, dict) else None
        fresh["years"] = {y: {} for y in old_years if str(y).lstrip("-").isdigit()} if isinstance(
            old_years, dict) else {}
        return fresh
    return manifest


def _as_recorded(layout: AthleteLayout, recorded: dict[str, Any]) -> bool:
    """Whether the partitions are as the manifest's years say: each recorded year has exactly its recorded
    tables' files, no other year has any, and nothing is staged (a file removed by hand is written again)."""
    if layout.staged or not _years_on_disk(layout) <= {int(year) for year in recorded}:
        return False
    return all(isinstance(record, dict) and isinstance(record.get("fingerprints"), dict)
               and (fingerprint := record["fingerprints"].get(group)) is not None
               and _is_current(record, group, fingerprint, layout, int(year))
               for year, record in recorded.items() for group in GROUPS)


def _is_current(record: Any, group: str, fingerprint: str, layout: AthleteLayout, year: int) -> bool:
    if not isinstance(record, dict) or not isinstance(record.get("fingerprints"), dict) \
            or record["fingerprints"].get(group) != fingerprint:
        return False
    tables = record.get("tables")
    if not isinstance(tables, list):
        return False
    return all(layout.partition_path(table, year).exists() == (table in tables) for table in GROUPS[group])


# -- layout --------------------------------------------------------------------------------------------
def _years_on_disk(layout: AthleteLayout) -> set[int]:
    years = set()
    for table in TABLES:
        folder = layout.athlete_dir(table)
        if folder.is_dir():
            years.update(year for year in map(year_of_folder, (c.name for c in folder.iterdir())) if year is not None)
    return years


def _remove_year(layout: AthleteLayout, year: int) -> list[str]:
    removed = []
    for table in TABLES:
        path = layout.partition_path(table, year)
        if path.exists():
            _unlink(path)
            removed.append(table)
        _remove_empty_dir(path.parent)
    return removed


def _sweep_temp_files(layout: AthleteLayout) -> None:
    for table in TABLES:
        for path in layout.athlete_dir(table).glob(f"year=*/.*{TEMP_MARK}*"):
            if is_orphaned_temp(path):
                path.unlink(missing_ok=True)


def _compact_lock(state_dir: Path, on_wait: Callable[[Holder], None] | None) -> AbstractContextManager[None]:
    """One compaction per store at a time (a second one would sweep the first one's temporary files)."""
    return hold(state_dir / "compact.lock", "compact", wait=on_wait, busy=lambda holder: LockedError(
        f"another compaction (PID {holder.pid}) is writing Parquet from {state_dir.parent}",
        hint="wait for it to finish", holder=holder.what))


# -- running -------------------------------------------------------------------------------------------
def _run_jobs(jobs: list[YearJob], summaries: SpilledSummaries, *, parallel: bool) -> Iterator[YearOutcome]:
    """Outcomes as years finish: all in this process, or, when it pays and `parallel`, shared with one
    worker process.

    Years are shared whole: this process keeps working while the worker starts (its start-up is hidden:
    no year goes to it before), and takes the next biggest year whenever it is free; the worker always has
    two years queued behind its current one. A single year with at least PARALLEL_MIN_BYTES of streams
    shares its stream files instead: the worker builds some activities' stream tables, this process the
    others and writes them all (see `_stream_tables`). Closed early (Ctrl-C, SIGTERM, an error), it stops
    the worker and waits until it has exited. A job's summaries are read back as it starts (or goes to the
    worker).
    """
    if parallel and len(jobs) == 1 and jobs[0].group_bytes("streams") >= PARALLEL_MIN_BYTES:
        with _worker() as worker:
            yield write_year(jobs[0].loaded(summaries), worker)
        return
    raw_bytes = sum(job.raw_bytes for job in jobs)
    if not parallel or len(jobs) < 2 or raw_bytes < PARALLEL_MIN_BYTES:
        for job in jobs:
            yield write_year(job.loaded(summaries))
        return
    queue = sorted(jobs, key=lambda job: -job.raw_bytes)
    with _worker() as worker:
        in_worker: list[Future[YearOutcome]] = []  # the worker's years left unfinished: its pool's end cancels
        while queue or in_worker:
            # Not before the worker has started: the first submit waits for the forkserver's imports.
            while queue and len(in_worker) < 3 and worker.ready:
                job = queue.pop().loaded(summaries)  # the smallest first to the worker
                with interrupts_deferred():
                    in_worker.append(worker.pool.submit(write_year, job))
            done = wait_for(in_worker, timeout=0)
            for future in [f for f in in_worker if f in done]:
                in_worker.remove(future)
                yield result_of(future)
            if queue:
                yield write_year(queue.pop(0).loaded(summaries))
            elif in_worker:
                wait_for(in_worker, first=True)


class _Worker:
    """The pool of the worker process (PARALLEL_WORKERS - 1 of them), started at once in the background.

    A pool starts its worker in its first `submit`, which returns once the worker has forked from the
    forkserver, itself started then and importing this module first: about half a second that this
    process would wait. A thread makes that first call instead, and `ready` says when it has returned.
    """

    def __init__(self, pool: ProcessPoolExecutor) -> None:
        self.pool = pool
        self._starting = threading.Thread(target=self._start, name="worker-start", daemon=True)
        self._starting.start()

    def _start(self) -> None:
        try:
            self.pool.submit(int)  # no work: the call starts the worker
        except Exception:  # noqa: BLE001 - no worker to be had (it broke, a fork failed): the next submit
            pass  # says so in the caller, which builds the streams itself (see _stream_tables)

    @property
    def ready(self) -> bool:
        return not self._starting.is_alive()

    def join(self) -> None:
        self._starting.join()


@contextmanager
def _worker() -> Iterator[_Worker]:
    """The worker, stopped on the way out and waited for.

    The worker drops its year at its next check (a chunk or a stream file away) and the pool's exit
    waits for it: no partition is committed after this returns.
    """
    stop = multiprocessing.get_context("forkserver").Event()
    pool = worker_pool(PARALLEL_WORKERS - 1, __name__, _start_worker, (stop,))
    try:
        worker = _Worker(pool)
        try:
            yield worker
        finally:
            stop.set()
            worker.join()  # the pool's end then waits for a worker that has started
    finally:
        shut_down(pool)  # its years or stream files not begun are cancelled


class _Stopped(Exception):
    """A worker's year was dropped because the parent process stopped."""


# A worker process's stop signal from its parent (see `_run_jobs`); None in the parent, which stops by
# KeyboardInterrupt instead.
_stop_event: Event | None = None


def _start_worker(stop: Event) -> None:
    """A worker leaves stopping to its parent, which sets `stop` (see bulkfetch.processes.worker_pool). A
    parent killed outright sets nothing: the worker then ends by itself (`processes.exit_with_parent`)."""
    global _stop_event
    _stop_event = stop


def _check_stop() -> None:
    if _stop_event is not None and _stop_event.is_set():
        raise _Stopped


def write_year(job: YearJob, helper: _Worker | None = None) -> YearOutcome:
    """Write the job's tables' partitions of one year from its raw JSON; remove a table's file if it
    has no rows now. All of them are written aside first, then each replaces its old file. `helper`, the
    worker, builds some of the year's stream tables."""
    with _gc_paused():
        return _write_year(job, helper)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic GC while a year is parsed: parsed JSON holds no cycles, and collections that walk
    hundreds of thousands of fresh dicts again and again cost more than the parse itself."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _write_year(job: YearJob, helper: _Worker | None) -> YearOutcome:
    outcome = YearOutcome(job.year)
    writers = {table: _PartitionWriter(job.layout.partition_path(table, job.year), table)
               for table in job.tables}
    try:
        for entries in job.detail_chunks:
            _check_stop()
            chunk = _read_chunk(entries)
            tables = chunk.tables()
            outcome.damaged["details"] += chunk.damaged(tables)
            for table, data in tables.items():
                if data.num_rows:
                    writers[table].add(data)
            del chunk, tables  # its Arrow data go before the next chunk is read
        streamed = [e for e in job.entries if e.has_streams or e.streams_file is not None] \
            if "streams" in job.groups else []
        with closing(_stream_tables(sorted(streamed, key=lambda e: e.activity_id), helper)) as stream_tables:
            for data in stream_tables:
                if isinstance(data, DamagedStreams):
                    outcome.damaged["streams"].append(data.activity_id)
                elif data is not None and data.num_rows:
                    writers[STREAMS].add(data)
        for writer in writers.values():
            writer.close()
        _check_stop()  # the last check: a worker commits all of a year's tables, or none
        for table, writer in writers.items():
            outcome.rows[table] = writer.rows
            if writer.commit():
                outcome.changed_tables.append(table)
        _sync_swapped(writers.values())
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    return outcome


@dataclass(frozen=True)
class _ChunkRead:
    entries: Sequence[Entry]
    activities: list[RawActivity]  # (id, summary, detail file's bytes, or _DROPPED once read, or None)
    export: dict[int, ExportPart]
    read: DetailRead

    def tables(self) -> dict[str, pa.Table]:
        """The chunk's detail tables (its files read again only if the reader's values need build_tables)."""
        reload = partial(_raw_activities, self.entries) if self.read.table is not None else None
        return build_detail_tables(self.activities, self.export, self.read, reload)

    def damaged(self, tables: Mapping[str, pa.Table]) -> list[int]:
        """The activities whose detail file was read but gave no detail: built from their summary alone (the
        reader's path takes no such chunk: a file it cannot take sends the chunk to build_tables)."""
        has_detail = tables["activities"].column("has_detail").to_pylist()
        return [activity_id for (activity_id, _, raw), detail in zip(self.activities, has_detail)
                if raw is not None and not detail]


# A detail file's bytes once Arrow's reader has them: dropped before the tables are built (20-30 MB a chunk
# less at the peak; build_detail_tables reads them again if it must).
_DROPPED = b""


def _read_chunk(entries: Sequence[Entry]) -> _ChunkRead:
    joined, raws = _read_detail_files(entries)
    activities = [(e.activity_id, e.summary, raw) for e, raw in zip(entries, raws)]
    export = {e.activity_id: _export_part(e) for e in entries if e.from_csv or e.children_file}
    read = read_details(activities, export, joined)
    if read.table is not None:
        activities = [(i, summary, None if raw is None else _DROPPED) for i, summary, raw in activities]
    return _ChunkRead(entries, activities, export, read)


def _raw_activities(entries: Sequence[Entry]) -> list[RawActivity]:
    return [(e.activity_id, e.summary, _detail_bytes(e.detail_path)) for e in entries]


def _read_detail_files(entries: Sequence[Entry]) -> tuple[bytearray, list[memoryview | None]]:
    """The entries' detail files in one buffer, one after the other, each followed by a newline (as Arrow's
    reader takes them: no copy to join them, half the memory), and each file as a view of it (None: gone)."""
    joined = bytearray()
    spans: list[tuple[int, int] | None] = []
    for entry in entries:
        raw = _detail_bytes(entry.detail_path)
        if raw is None:
            spans.append(None)
            continue
        start = len(joined)
        joined += raw
        spans.append((start, len(joined)))
        joined += b"\n"
    view = memoryview(joined)
    return joined, [None if span is None else view[span[0]:span[1]] for span in spans]


# With a helper, at most this many activities' stream tables are built ahead of the one written next: the
# worker's two, and those this process built while it waited for them (about 1 MB of Arrow data an hour
# of 1 Hz streams each: tens of MB for long activities).
STREAMS_AHEAD = 8
_WORKER_STREAMS = 2  # the worker's stream files in flight: one built, one queued behind it


def _stream_tables(entries: Sequence[Entry], helper: _Worker | None) -> Iterator[pa.Table | DamagedStreams | None]:
    """Each entry's stream table (None: it has none; DamagedStreams: its file holds none), in the order given.

    Built here one at a time; with `helper`, once it is ready, its worker always has _WORKER_STREAMS of
    the next files, and this process builds the next ones itself while it waits for them, at most
    STREAMS_AHEAD ahead of the one it yields next: it never waits while there is a file it may build,
    and both processes keep busy. The worker's tables come back as Arrow buffers (pickled), cheap next to
    building them.
    """
    if helper is None:
        for entry in entries:
            yield _stream_table(entry)
        return
    # Built or being built, in order, with its entry: a worker that breaks (killed, out of memory) leaves
    # its files to this process, as a year without a worker.
    ahead: deque[tuple[Entry, Future[pa.Table | DamagedStreams | None] | pa.Table | DamagedStreams | None]] = deque()
    # Those the worker has not finished go with its pool's end (`_worker`).
    taken = 0  # entries[:taken] are yielded or in `ahead`
    broken = False
    while taken < len(entries) or ahead:
        building = _building(item for _, item in ahead)  # once a pass: each asks the futures' locks
        while not broken and helper.ready and taken < len(entries) and len(ahead) < STREAMS_AHEAD \
                and len(building) < _WORKER_STREAMS:
            try:
                with interrupts_deferred():
                    future = helper.pool.submit(_stream_table, entries[taken])
            except (BrokenProcessPool, RuntimeError):
                broken = True
                break
            ahead.append((entries[taken], future))
            building.add(future)
            taken += 1
        entry, head = ahead[0] if ahead else (None, None)
        if ahead and not (isinstance(head, Future) and head in building):
            ahead.popleft()
            if isinstance(head, Future):
                try:
                    head = result_of(head)
                except BrokenProcessPool:
                    broken = True
                    head = _stream_table(entry)
            yield head
        elif taken < len(entries) and len(ahead) < STREAMS_AHEAD:
            ahead.append((entries[taken], _stream_table(entries[taken])))
            taken += 1
        elif isinstance(head, Future):
            wait_for([head])


def _building(ahead: Iterable[Any]) -> set[Future[Any]]:
    """The futures among `ahead` the worker has not finished."""
    futures = {item for item in ahead if isinstance(item, Future)}
    return futures - wait_for(futures, timeout=0) if futures else futures


@dataclass(frozen=True)
class DamagedStreams:
    """What `_stream_table` gives for a stream file that holds no StreamSet: no rows (a class, not a marker
    object: it comes back from the worker pickled)."""

    activity_id: int


def _stream_table(entry: Entry) -> pa.Table | DamagedStreams | None:
    """The activity's stream table, or None if it has no StreamSet (see `_stream_set`). In a worker,
    with cyclic GC paused as in `write_year`, and not begun once the parent stops."""
    _check_stop()
    with _gc_paused():
        stream_set, source = _stream_set(entry)
        if stream_set is _DAMAGED:
            return DamagedStreams(entry.activity_id)
        if stream_set is None:
            return None
        return build_streams(entry.activity_id, *_copied_from_activity(entry), stream_set, source)


class _PartitionWriter:
    """One partition file, written to a temporary name as row groups and swapped in by `commit`."""

    def __init__(self, target: Path, table: str) -> None:
        self.target = target
        self.schema = SCHEMAS[table]
        self.options = WRITE_OPTIONS.get(table, {})
        self.row_group_bytes = STREAM_ROW_GROUP_BYTES if table == STREAMS else ROW_GROUP_BYTES
        self.temp = target.with_name(f".{target.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")
        self.rows = 0
        self._buffer: list[pa.Table] = []
        self._buffered_bytes = 0
        self._writer: pq.ParquetWriter | None = None

    def add(self, data: pa.Table) -> None:
        self._buffer.append(data)
        # Not `nbytes`: it walks every column's slices, ~50x slower, and a stream table comes per activity.
        self._buffered_bytes += data.get_total_buffer_size()
        self.rows += data.num_rows
        if self._buffered_bytes >= self.row_group_bytes or len(self._buffer) >= ROW_GROUP_MAX_TABLES:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        try:
            if self._writer is None:
                ensure_dir(self.target.parent)
                self._writer = pq.ParquetWriter(self.temp, self.schema, compression=COMPRESSION, **self.options)
            data = pa.concat_tables(self._buffer)
            self._writer.write_table(data, row_group_size=data.num_rows)
        except OSError as exc:
            raise WriteError(f"cannot write {self.target} ({exc})",
                             hint=_INTACT) from None
        self._buffer, self._buffered_bytes = [], 0

    def close(self) -> None:
        """Finish the temporary file and make it durable; nothing is visible to readers yet."""
        self._flush()
        if self._writer is None:
            return
        try:
            self._writer.close()
            fd = os.open(self.temp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise WriteError(f"cannot write {self.target} ({exc})",
                             hint=_INTACT) from None

    def commit(self) -> bool:
        """Swap the new file in (or remove the old one if the table has no rows); True if anything changed.
        The swap is durable once `_sync_swapped` has fsynced its folder."""
        try:
            if self._writer is not None:
                os.replace(self.temp, self.target)
                return True
            if self.target.exists():
                _unlink(self.target)
                _remove_empty_dir(self.target.parent)
                return True
            return False
        except OSError as exc:
            raise WriteError(f"cannot replace {self.target} ({exc})",
                             hint="check the folder and rerun: rerunning rewrites this year") from None

    @property
    def swapped(self) -> bool:
        """Whether `commit` put a new file in place (a folder entry to make durable)."""
        return self._writer is not None

    def abort(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 - already failing; the temporary file goes either way
                pass
        self.temp.unlink(missing_ok=True)


def _sync_swapped(writers: Iterable[_PartitionWriter]) -> None:
    """Make a year's swaps durable: each new file's folder fsynced, after every table's rename. Renames
    first, then the fsyncs: on a journaling file system (ext4) the first fsync commits every rename in one
    journal transaction and the others find nothing left to commit (one per table, each between two
    renames, cost a commit each: about 1 ms apiece, 60 for the bench's 10 years)."""
    for writer in writers:
        if writer.swapped:
            try:
                fsync_dir(writer.target.parent)
            except OSError as exc:
                raise WriteError(f"cannot replace {writer.target} ({exc})",
                                 hint="check the folder and rerun: rerunning rewrites this year") from None


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise WriteError(f"cannot remove {path} ({exc.strerror})",
                         hint="check the folder and rerun") from None


def _remove_empty_dir(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty, or already gone
