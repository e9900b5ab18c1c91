"""Where one athlete's Parquet partitions live, and the move away from the one-athlete layout.

Layout: `parquet_dir/<table>/athlete_id=<id>/year=YYYY/part-0.parquet`. Hive partitioning gives readers
`athlete_id` and `year` as columns from the folder names, so neither is inside the files (Spark refuses a
column that is in both), and a query on one athlete reads that athlete's folders only.

Before schema version 3 a parquet_dir held one athlete: `parquet_dir/<table>/year=YYYY/part-0.parquet`
(the "legacy" folders). A table folder that holds both kinds breaks DuckDB and Spark, so the first
compaction after the upgrade writes such a table aside, under `parquet_dir/.migrating/<table>/
athlete_id=<id>/` (readers of `<table>/` never look there, and go on reading the legacy files whole),
and `publish` then swaps it in (in one atomic step where the system can) and removes the legacy folders. Every step
can be killed: the staged years are recorded in the manifest as they are written, so the next run
resumes the staging; and `publish` is idempotent (see `staged_tables` for how a run tells the states
apart).

A new schema version (a new column) rewrites every partition; DuckDB refuses a glob whose files differ in
their columns. So an athlete's table whose files are of an older schema version is staged the same way
and swapped in whole: readers see its old files or its new ones, never some of each.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bulkfetch.errors import WriteError
from bulkfetch.schema import SCHEMA_VERSION_KEY
from bulkfetch.store import fsync_dir, is_orphaned_temp

PART_FILE = "part-0.parquet"
STAGING = ".migrating"  # a leading dot: pyarrow and Spark skip it, and no `<table>/**` glob reaches it
YEAR_PREFIX = "year="
# The partition columns' types for readers that take them (pyarrow, DuckDB's hive_types): inferred,
# an athlete id becomes int32, or text when one id in the folder is beyond int32.
PARTITION_SCHEMA = pa.schema([("athlete_id", pa.int64()), ("year", pa.int32())])


def athlete_folder(athlete_id: int) -> str:
    return f"athlete_id={athlete_id}"


def partition_path(root: Path, table: str, athlete_id: int, year: int) -> Path:
    return root / table / athlete_folder(athlete_id) / f"{YEAR_PREFIX}{year}" / PART_FILE


def year_of_folder(name: str) -> int | None:
    """The year a `year=YYYY` folder name stands for, or None for any other name."""
    value = name.removeprefix(YEAR_PREFIX)
    return int(value) if name.startswith(YEAR_PREFIX) and value.lstrip("-").isdigit() else None


@dataclass(frozen=True)
class AthleteLayout:
    """One athlete's partitions in one parquet_dir; `staged` tables are written aside until `publish`."""

    parquet_dir: Path
    athlete_id: int
    staged: frozenset[str] = frozenset()

    def root(self, table: str) -> Path:
        return self.parquet_dir / STAGING if table in self.staged else self.parquet_dir

    def athlete_dir(self, table: str) -> Path:
        return self.root(table) / table / athlete_folder(self.athlete_id)

    def partition_path(self, table: str, year: int) -> Path:
        return partition_path(self.root(table), table, self.athlete_id, year)


def staged_tables(parquet_dir: Path, athlete_id: int, tables: Iterable[str], schema_version: int) -> frozenset[str]:
    """The tables to write aside: those already being staged; those whose folder still holds legacy
    partitions while this athlete's folder is not there yet; and those whose athlete folder holds files
    of another schema version than `schema_version`. A table whose athlete folder sits beside legacy ones
    was swapped in by a run killed before it removed them: `publish` finishes that. A staged folder
    without a file of `schema_version` is the older table a killed `publish` swapped aside (or a staging
    that had written nothing yet): it is removed here."""
    staging = AthleteLayout(parquet_dir, athlete_id, frozenset(tables))
    final = AthleteLayout(parquet_dir, athlete_id)
    version = str(schema_version).encode()
    chosen = set()
    for table in tables:
        aside, live = staging.athlete_dir(table), final.athlete_dir(table)
        if aside.is_dir() and version not in _versions(aside):
            _remove_athlete_folder(aside)
        if aside.is_dir() or (legacy_folders(parquet_dir, table) and not live.is_dir()) or \
                _versions(live) - {version}:
            chosen.add(table)
    return frozenset(chosen)


def _versions(athlete_dir: Path) -> set[bytes]:
    """The schema versions of an athlete folder's partition files (b"" for a file without one)."""
    found = set()
    for path in athlete_dir.glob(f"{YEAR_PREFIX}*/{PART_FILE}"):
        try:
            metadata = pq.read_schema(path).metadata or {}
        except (OSError, pa.ArrowException):
            continue  # not readable as Parquet: not ours to judge, rewritten with its year
        found.add(metadata.get(SCHEMA_VERSION_KEY, b""))
    return found


def legacy_folders(parquet_dir: Path, table: str) -> list[Path]:
    folder = parquet_dir / table
    if not folder.is_dir():
        return []
    return sorted(child for child in folder.iterdir() if year_of_folder(child.name) is not None)


def publish(layout: AthleteLayout, tables: Iterable[str]) -> None:
    """Swap each staged table in, then remove that table's legacy folders.

    Where the system can (Linux), the staged table folder and the live one trade places in one atomic
    step: a reader sees the legacy table or the new one, never both; the legacy one, now aside under
    `.migrating/`, is removed after. Elsewhere the athlete folder is renamed in and the legacy folders
    removed right after: a reader may see both kinds for the time of a few unlinks. Killed anywhere, the
    next run's `publish` finishes (it removes legacy folders both in the table and aside).
    """
    final = AthleteLayout(layout.parquet_dir, layout.athlete_id)
    for table in tables:
        source, target = layout.athlete_dir(table), final.athlete_dir(table)
        if table in layout.staged and source.exists() and _swap_whole_table(layout, table):
            fsync_dir(layout.parquet_dir)
            fsync_dir(layout.parquet_dir / STAGING)
        elif table in layout.staged and source.exists() and target.exists():  # an older schema's table
            _replace_athlete_folder(source, target)
        elif table in layout.staged and source.exists():  # a table with no rows for this athlete stages nothing
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.rename(source, target)  # fails, rather than merging, if the target is already there
                fsync_dir(target.parent)
            except OSError as exc:
                hint = (f"remove {target} (the staged copy replaces it) and rerun 'bulkfetch compact'"
                        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST) else "check the folders and rerun")
                raise WriteError(f"cannot move {source} to {target} ({exc.strerror})", hint=hint) from None
        for folder in legacy_folders(layout.parquet_dir, table) + legacy_folders(layout.parquet_dir / STAGING, table):
            _remove_legacy(folder)
    _remove_empty_folders(layout.parquet_dir / STAGING)


def _replace_athlete_folder(staged: Path, live: Path) -> None:
    """Put the staged athlete folder in place of the live one (of an older schema version), then remove the
    older one. Where the system can, the two trade places in one atomic step; elsewhere the older files go
    first, so a reader may meet fewer years for a moment, never both versions."""
    if exchange(staged, live):
        fsync_dir(live.parent)
        fsync_dir(staged.parent)
        _remove_athlete_folder(staged)  # the older table, now aside; a killed run's is removed by the next
        return
    _remove_athlete_folder(live)
    os.rename(staged, live)
    fsync_dir(live.parent)


def _remove_athlete_folder(folder: Path) -> None:
    """An athlete folder of a table: each year's partition file and dead writers' temporary files, then the
    year folders and the folder itself (anything else in them is left alone)."""
    for year in folder.glob(f"{YEAR_PREFIX}*"):
        if year.is_dir():
            _remove_legacy(year)
    try:
        folder.rmdir()
    except OSError:
        pass  # something else is in it, left alone as any file bulkfetch did not write


def _swap_whole_table(layout: AthleteLayout, table: str) -> bool:
    """Trade the staged table folder (this athlete's folder only) and the live one (legacy folders only)
    in one step; False, touching nothing, when either holds anything else or the system cannot."""
    staged, live = layout.parquet_dir / STAGING / table, layout.parquet_dir / table
    if not live.is_dir() or [p.name for p in staged.iterdir()] != [athlete_folder(layout.athlete_id)]:
        return False
    if any(year_of_folder(p.name) is None for p in live.iterdir()):
        return False  # another athlete's partitions (or a stranger's file) would vanish for a moment
    return exchange(staged, live)


RENAME_EXCHANGE = 2  # renameat2's flag: swap two existing paths atomically (Linux 3.15+)
AT_FDCWD = -100
_renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)


def exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one atomic step; False where the system or file system cannot."""
    if _renameat2 is None:
        return False
    if _renameat2(AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise WriteError(f"cannot swap {first} and {second} ({os.strerror(code)})", hint="check the folders and rerun")


def _remove_legacy(folder: Path) -> None:
    """A year folder (legacy, or of an older table): its partition file and dead writers' temporary files,
    then the folder."""
    for path in folder.iterdir():
        if path.name == PART_FILE or is_orphaned_temp(path):
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise WriteError(f"cannot remove {path} ({exc.strerror})",
                                 hint="check the folder and rerun 'bulkfetch compact'") from None
    try:
        folder.rmdir()
    except OSError:
        pass  # something else is in it: left alone, as any file bulkfetch did not write


def _remove_empty_folders(folder: Path) -> None:
    """`folder` and the folders under it that are empty, deepest first (another athlete's staging stays)."""
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir():
            try:
                path.rmdir()
            except OSError:
                pass  # not empty
    try:
        folder.rmdir()
    except OSError:
        pass
