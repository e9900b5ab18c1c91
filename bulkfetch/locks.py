"""Locks between bulkfetch processes: flock(2) on a file, shared or exclusive, never waiting unless asked.

A lock file names its holders, a line "<PID> <what>" each, `what` being the command ("fetch", "fetch
--no-compact", "plan", "import", ...), so that the one refused can say who is in the way and what that
one will do. An exclusive holder's file names it alone; a shared lock's holders add their line, and a
refusal names the last of them still running, not the last to come (it may have been refused by another
lock since, or ended: an import of an athlete already being imported). A shared holder never takes the
lock exclusively to start the file afresh: another arriving that moment would be refused. The file grows
by a line per shared holder until an exclusive one takes it. An flock dies with its process: a lock file
left by a killed run is simply taken over.

The locks (every one taken without waiting; a conflict is a LockedError, exit 2):

    data_dir/fetch.lock        a run's (`data_dir_lock`): fetch, plan, compact, demo, auth's move to the
                               per-athlete layout, athletes remove --purge, athletes adopt. One at a time
                               (an import's compaction takes only its athlete's compact.lock).
    data_dir/imports.lock      the imports' (`import_lock`): shared by every import, so that imports run
                               beside each other and beside a fetch, plan or status; exclusive for the
                               runs that need the data_dir to themselves (`data_dir_lock(alone=True)`:
                               athletes remove --purge and adopt move or delete athlete folders,
                               compact --rebuild rewrites every partition an import's compaction may be
                               writing).
    athletes/<id>/export/import.lock   one import per athlete (bulkfetch.export_store)
    athletes/<id>/state/compact.lock   one compaction per athlete (bulkfetch.compact): a run's compaction
                               waits for an import's; an import's leaves the work to a run's

and one that waits (`staging_lock`), for a remote parquet_dir's local staging folder:

    <staging>/.staging.lock    shared by each compaction writing into the staging folder (a fetch's, an
                               import's, compact's), exclusive by the sync uploading it (bulkfetch.
                               remote_sync): a sync never sees a compaction half-way (a run manifest mixing
                               years, a table folder missing mid-swap that it would then remove remotely).
                               Each waits for the other; no process holds it shared while it waits to hold
                               it exclusive (an flock per open file: it would wait for itself).
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bulkfetch.errors import BulkfetchError, LockedError, StorageError, WriteError
from bulkfetch.pids import alive
from bulkfetch.store import ATHLETES_FOLDER, RawStore, describe_write_error, write_hint

RUN_LOCK = "fetch.lock"
IMPORTS_LOCK = "imports.lock"
STAGING_LOCK = ".staging.lock"  # the leading dot keeps it out of the dataset's files
IMPORT = "import"
COMPACTING_FETCHES = ("fetch", "demo")  # the runs that compact every athlete when they end (no --no-compact)
_WHAT = re.compile(r"[a-z][a-z0-9 -]{0,60}")  # a holder's name as this module writes it
HOLDERS_READ = 64 * 1024  # of a lock file's end: its last holders' lines


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as its file says (of a shared lock's holders, the last named that still runs)."""

    pid: str   # "unknown" if the file does not say
    what: str  # the command: "fetch", "plan", "import", ...; "run" if the file does not say


@contextmanager
def hold(path: Path, what: str, *, busy: Callable[[Holder], BulkfetchError], shared: bool = False,
         wait: Callable[[Holder], None] | None = None) -> Iterator[None]:
    """Hold `path` (created if need be) exclusively, or `shared` with other shared holders, for the block;
    raise `busy(holder)` at once if another process holds it in a mode that excludes this one, or, given
    `wait`, tell `wait(holder)` and wait for it (no longer than that process lives: its flock dies with it;
    Ctrl-C still interrupts). Raises StorageError if the lock file cannot be created, WriteError if its
    holder cannot be written."""
    try:  # appending: shared holders add their line at the end, however many write at once
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError as exc:  # a read-only file system, or no permission
        raise StorageError(f"{path.parent} is not writable ({exc.strerror})",
                           hint="fix its permissions or set [storage] data_dir") from None
    line = f"{os.getpid()} {what}\n".encode()
    try:
        try:
            _take(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX, busy, wait)
            if not shared:
                os.ftruncate(fd, 0)
            os.write(fd, line)
        except OSError as exc:  # the disk is full: say so, as every other write does
            raise WriteError(describe_write_error(path, exc), hint=write_hint(exc)) from None
        yield
    finally:
        os.close(fd)


def _take(fd: int, mode: int, busy: Callable[[Holder], BulkfetchError], wait: Callable[[Holder], None] | None) -> None:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(_last_lines(fd))
        if wait is None:
            raise busy(holder) from None
        wait(holder)
        fcntl.flock(fd, mode)


def _last_lines(fd: int) -> bytes:
    """The lines at the end of a lock file (HOLDERS_READ bytes at most, a line cut at their start left out)."""
    start = max(0, os.fstat(fd).st_size - HOLDERS_READ)
    recorded = os.pread(fd, HOLDERS_READ, start)
    return recorded.partition(b"\n")[2] if start else recorded


def _holder(recorded: bytes) -> Holder:
    """The holder a lock file names that still runs, the last such (any named, when none seems to run)."""
    holders = [_parsed(line) for line in recorded.decode(errors="replace").splitlines() if line.strip()]
    running = (holder for holder in reversed(holders) if holder.pid.isdigit() and alive(int(holder.pid)))
    return next(running, holders[-1] if holders else Holder("unknown", "run"))


def _parsed(line: str) -> Holder:
    pid, _, what = line.strip().partition(" ")
    return Holder(pid if pid.isdigit() else "unknown", what if _WHAT.fullmatch(what) else "run")


@contextmanager
def data_dir_lock(data_dir: Path, what: str = "run", *, alone: bool = False) -> Iterator[None]:
    """Hold the data_dir for one run (`what`: the command, as a refused run names it); with `alone`, also
    keep every import out (see the module docstring). A second run gets a LockedError naming this one.

    The holder sweeps the temporary files killed runs left, and only the holder may: another process's
    temporary file can be a write in progress (a rotated token exists nowhere else until it is renamed).
    """
    with ExitStack() as held:
        held.enter_context(hold(data_dir / RUN_LOCK, what, busy=lambda holder: _in_use(
            data_dir, holder, "one run at a time may use a data_dir")))
        if alone:
            held.enter_context(hold(data_dir / IMPORTS_LOCK, what, busy=lambda holder: _in_use(
                data_dir, holder, f"'{what}' needs the data_dir to itself, no import beside it")))
        for root in (data_dir, *_folders(data_dir / ATHLETES_FOLDER)):
            if root.is_dir():
                RawStore(root).sweep_temp_files()
        yield


@contextmanager
def import_lock(data_dir: Path) -> Iterator[None]:
    """An import's hold on the data_dir: beside other imports and any run but those that need the data_dir
    alone (see the module docstring)."""
    with hold(data_dir / IMPORTS_LOCK, IMPORT, shared=True, busy=lambda holder: _in_use(
            data_dir, holder, "it needs the data_dir to itself, no import beside it")):
        yield


@contextmanager
def staging_lock(staging: Path, what: str, *, exclusive: bool,
                 on_wait: Callable[[Holder], None]) -> Iterator[None]:
    """Hold a remote parquet_dir's staging folder: shared to compact into it, `exclusive` to upload it,
    waiting for the other kind (`on_wait` is told who is in the way): see the module docstring."""
    with hold(staging / STAGING_LOCK, what, shared=not exclusive, wait=on_wait,
              busy=lambda holder: LockedError(f"PID {holder.pid} holds {staging}")):  # unused: it waits
        yield


def _in_use(data_dir: Path, holder: Holder, why: str) -> LockedError:
    also = "; the fetch compacts when it ends" if holder.what in COMPACTING_FETCHES else ""
    return LockedError(f"another bulkfetch {holder.what} (PID {holder.pid}) is using {data_dir}",
                       hint=f"wait for it to finish or stop it: {why}{also}", holder=holder.what)


def _folders(folder: Path) -> list[Path]:
    try:
        return [path for path in folder.iterdir() if path.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return []


__all__ = ["Holder", "data_dir_lock", "hold", "import_lock", "staging_lock"]
