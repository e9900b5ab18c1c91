"""Compaction while a fetch waits for quota, so that the Parquet is useful long before a backfill ends.

When a quota wait of at least `min_wait_s` starts (`MIN_WAIT_SHARE` of the short window: 60 s of Strava's
15 minutes) and something was fetched since the last idle compaction began, `IdleCompactor` compacts every
target (an athlete's raw store) into the dataset in a child process. When the wait ends the child is
killed, and the event loop does not wait for it: compaction replaces each Parquet file atomically and is
incremental (see bulkfetch.compact), so a killed one leaves every file whole, old or new, and the next
compaction, in the next long wait or at the end of the run, goes on from the years it recorded. `close()`
stops the child and waits for it (bounded), so that the run's own compaction never meets its lock.

The event loop never waits: one thread per idle compaction starts the child (the first start of the
forkserver takes a fraction of a second while it imports pyarrow), watches it, kills it when told, and
hands its outcome to the loop's thread, which alone calls `on_info`.

The child writes one year at a time, with no worker process of its own: a worker would outlive a killed
child by up to processes.PARENT_CHECK_S and could commit a partition after the next compaction wrote it (and
the fetch keeps a core). It ends itself when the fetch is gone (SIGKILL included), ignores Ctrl-C (it
reaches the whole process group; the fetch decides), and never writes to the terminal.
"""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import threading
from collections.abc import Callable
from multiprocessing.connection import wait
from pathlib import Path
from typing import TYPE_CHECKING

from bulkfetch.errors import LockedError
from bulkfetch.processes import start_forkserver
from bulkfetch.store import RawStore

if TYPE_CHECKING:
    from bulkfetch.scheduler import WaitInfo

Target = tuple[Path, int]  # an athlete's RawStore root folder, and the athlete's id
MIN_WAIT_SHARE = 1 / 15  # of the short window: the shortest quota wait that starts an idle compaction
# Imported by the child (and preloaded by the forkserver), not here: pyarrow would slow down every command
# that imports the pipeline, `status` included.
COMPACT_MODULE = "bulkfetch.compact"
STOP_TIMEOUT_S = 10.0  # longest wait for a stopped child (`close`); a killed one is gone in milliseconds
# Outcomes of a run (`_Run.outcome`), besides "failed (why)"
FINISHED, ABANDONED = "finished", "abandoned"


class IdleCompactor:
    """Compacts `targets()` into `parquet_dir` during quota waits of at least `min_wait_s`, when
    `fetched()` (a count that grows with what was fetched) grew since the last idle compaction began, or
    that one was abandoned. Its calls come from the event loop's thread; `on_info` says what it does."""

    def __init__(self, parquet_dir: Path, targets: Callable[[], list[Target]], min_wait_s: float, *,
                 fetched: Callable[[], int], on_info: Callable[[str], None]) -> None:
        self._parquet_dir = parquet_dir
        self._targets = targets
        self._min_wait_s = min_wait_s
        self._fetched = fetched
        self._on_info = on_info
        self._compacted = 0  # `fetched()` when the last idle compaction began
        self._unfinished = False  # the last one was abandoned before it finished
        self._run: _Run | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outcomes: queue.SimpleQueue[str] = queue.SimpleQueue()  # from the runs' threads, to `on_info`

    def on_wait(self, info: WaitInfo | None, now: float) -> None:
        """A quota wait started (`now` on the clock of `info.until`), changed, or ended (None)."""
        if info is None:
            self._abandon()
        elif self._run is None or not self._run.busy:
            self._start_if_due(info.until - now)

    def close(self) -> None:
        """Stop the child, if any, and wait (bounded) until it is gone."""
        run = self._run
        if run is not None:
            run.abandon()
            run.join(STOP_TIMEOUT_S)
        self._say_outcomes()

    def _start_if_due(self, wait_s: float) -> None:
        fetched = self._fetched()
        if wait_s < self._min_wait_s or not (fetched > self._compacted or self._unfinished):
            return
        targets = self._targets()
        if not targets:  # nothing listed yet: no athlete to compact
            return
        self._compacted, self._unfinished = fetched, False
        self._loop = asyncio.get_running_loop()
        self._run = _Run(self._parquet_dir, targets, previous=self._run, report=self._report)
        self._on_info(f"quota wait of {wait_s:,.1f} s: compacting what was fetched so far into "
                      f"{self._parquet_dir} meanwhile")

    def _abandon(self) -> None:
        run = self._run
        if run is not None and run.busy:
            run.abandon()
            # The next long wait goes on with it (had it just finished, that one finds every year current).
            self._unfinished = True

    def _report(self, outcome: str) -> None:
        """Called by a run's thread: `outcome` is said on the loop's thread (or by `close`)."""
        self._outcomes.put(outcome)
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._say_outcomes)
        except RuntimeError:  # the loop is closed: `close` says it
            pass

    def _say_outcomes(self) -> None:
        while not self._outcomes.empty():
            self._on_info(outcome_line(self._outcomes.get()))


def outcome_line(outcome: str) -> str:
    if outcome == FINISHED:
        return "idle compaction finished: the Parquet holds what was fetched before the wait"
    if outcome == ABANDONED:
        return "idle compaction stopped; the next long wait or the compaction at the end of the run goes on with it"
    return f"idle compaction {outcome}; the compaction at the end of the run tries again and says why"


class _Run:
    """One idle compaction: its child process, and the thread that starts, watches and stops it."""

    def __init__(self, parquet_dir: Path, targets: list[Target], *, previous: _Run | None,
                 report: Callable[[str], None]) -> None:
        self.outcome: str | None = None  # set by the thread once the child is gone (or never started)
        self._abandoned = threading.Event()
        # Written by `abandon`, so that the thread's wait for the child ends at once; closed by `join`.
        self._wake_read, self._wake_write = os.pipe()
        self._thread = threading.Thread(target=self._supervise, args=(parquet_dir, targets, previous, report),
                                        name="idle-compaction", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """Started, and neither abandoned nor over."""
        return self.outcome is None and not self._abandoned.is_set()

    def abandon(self) -> None:
        """Kill the child (at once, from the thread); never blocks."""
        if not self._abandoned.is_set():
            self._abandoned.set()
            os.write(self._wake_write, b"!")  # one byte into an empty pipe: never blocks

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)
        if not self._thread.is_alive() and self._wake_write >= 0:
            os.close(self._wake_read)
            os.close(self._wake_write)
            self._wake_read = self._wake_write = -1

    def _supervise(self, parquet_dir: Path, targets: list[Target], previous: _Run | None,
                   report: Callable[[str], None]) -> None:
        if previous is not None:  # a killed child holds its store's compaction lock until it is gone
            previous.join(STOP_TIMEOUT_S)
        try:
            self.outcome = self._run_child(parquet_dir, targets)
        except Exception as error:  # noqa: BLE001 - no child to be had (a process limit, memory): the fetch
            self.outcome = f"failed to start ({error})"  # goes on, and its thread says so, not a traceback
        report(self.outcome)

    def _run_child(self, parquet_dir: Path, targets: list[Target]) -> str:
        if self._abandoned.is_set():
            return ABANDONED
        # forkserver: the child forks from a clean server process, never from the fetch and its threads.
        context = start_forkserver([COMPACT_MODULE, __name__])  # its output: /dev/null (bulkfetch.server_output)
        child = context.Process(target=compact_targets, args=(parquet_dir, targets, os.getpid()),
                                name="bulkfetch-idle-compaction", daemon=True)
        child.start()
        wait([child.sentinel, self._wake_read])
        if child.exitcode is None and self._abandoned.is_set():
            child.kill()
        child.join(STOP_TIMEOUT_S)
        code = child.exitcode
        if code is not None:
            child.close()
        if code == 0:
            return FINISHED
        return ABANDONED if self._abandoned.is_set() else f"failed (exit status {code})"


def compact_targets(parquet_dir: Path, targets: list[Target], parent_pid: int) -> None:
    """The child: compact each target, one year at a time (see the module docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from bulkfetch.compact import compact  # see COMPACT_MODULE
    from bulkfetch.processes import exit_with_parent

    exit_with_parent(parent_pid)
    for root, athlete_id in targets:
        try:
            # Damaged raw files stay: no one would hear of them moved here; the run's own compaction does it.
            compact(RawStore(root), parquet_dir, athlete_id, parallel=False, move_damaged=False)
        except LockedError:  # an import is compacting this athlete: the run's own compaction waits for it
            continue
