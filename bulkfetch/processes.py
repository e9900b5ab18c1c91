"""Worker processes and signals: the plumbing compaction and the import share (no pyarrow, no I/O of data).

- `worker_pool`: a forkserver process pool whose workers ignore Ctrl-C (it reaches the terminal's whole
  process group: the parent decides) and end themselves when the parent is gone, killed outright
  (SIGKILL) included, so that no worker outlives the command holding its stdout (`... | tee` would
  never end) or writes after the next run began.
- `start_forkserver`: the forkserver those pools fork from, started ahead of need: it imports its preload
  (pyarrow: a third of a second and more) while this process does other work, where a pool's first worker
  would wait for it. It imports this copy of bulkfetch, whatever the working directory holds.
- `interrupts_deferred`: Ctrl-C and SIGTERM wait for the end of a block (around `submit`).
- `wait_for`, `result_of`, `shut_down`: a pool's futures waited for, read and its pool ended with Ctrl-C and
  SIGTERM deferred (a waiting one within SIGNAL_POLL_S): see `interrupts_deferred`.
- `exit_with_parent`: the parent watch itself, for a child started another way; `ended_with_parent` for a
  block only.
- `available_cpus`: the CPUs this process may run on (its affinity, which containers set), not the host's.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
import signal
import site
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from bulkfetch.pids import alive

if TYPE_CHECKING:  # imported where a pool is made: `report` starts its server before it (bulkfetch.launch)
    from concurrent.futures import Executor, Future, ProcessPoolExecutor

T = TypeVar("T")
PARENT_CHECK_S = 0.25  # how often a worker checks that the process it works for is alive
# Below this much raw JSON to work through, starting a worker process costs more than it saves.
WORKER_MIN_BYTES = 16 << 20
SIGNAL_POLL_S = 0.05  # how soon a Ctrl-C ends a wait for futures (see `wait_for`)
# The folder holding this copy of the bulkfetch package: what the forkserver imports it from.
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
_environment_lock = threading.Lock()  # os.environ is the process's: one change at a time


def available_cpus() -> int:
    """The CPUs this process may use: its affinity mask (a container's or `taskset`'s), where the system
    has one, else the machine's count (`os.cpu_count()` counts the host's, whatever the limits)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # no sched_getaffinity (macOS)
        return os.cpu_count() or 1


def worker_pool(workers: int, preload: str, initializer: Callable[..., None] | None = None,
                initargs: tuple[Any, ...] = ()) -> ProcessPoolExecutor:
    """A pool of `workers` processes forked from a forkserver that has imported `preload` (the module whose
    functions they run). Each worker ignores Ctrl-C and ends when this process is gone (see the module
    docstring), then runs `initializer(*initargs)`."""
    from concurrent.futures import ProcessPoolExecutor

    # forkserver: workers fork from a clean server process, never from a caller that may hold threads.
    return ProcessPoolExecutor(max_workers=workers, mp_context=start_forkserver([preload]),
                               initializer=_start_worker, initargs=(os.getpid(), initializer, initargs))


def start_forkserver(preload: Sequence[str]) -> ForkServerContext:
    """This process's forkserver, started now unless it runs: it imports the modules `preload` names in the
    background (a pool's workers fork from it once it has; a running one keeps the preload it started with).

    Python 3.11's forkserver ignores this process's sys.path: it is `python -c`, whose first path entry is
    the working directory, so a folder holding another `bulkfetch` (a checkout, a bench script's caller)
    would give workers another copy than this process runs (their pickled arguments then fail, a
    BrokenProcessPool). It starts without the working directory (PYTHONSAFEPATH), with a checkout's folder
    first on its PYTHONPATH (see forkserver_environment). Its stdout and stderr point at /dev/null
    (bulkfetch.server_output).
    """
    context = multiprocessing.get_context("forkserver")
    # The server's output first; the pool's worker loop, which every worker runs, loaded once before the forks.
    context.set_forkserver_preload(["bulkfetch.server_output", "concurrent.futures.process", *preload])
    with _environment(**forkserver_environment(PACKAGE_ROOT, _installed_folders(), os.environ.get("PYTHONPATH"))):
        multiprocessing.forkserver.ensure_running()  # starts it and returns: the server imports on its own
    return context


def forkserver_environment(package_root: Path, installed: Iterable[Path], pythonpath: str | None) -> dict[str, str]:
    """The forkserver's environment: never the working directory on its path (PYTHONSAFEPATH), and a copy
    of bulkfetch outside the installed packages' folders (a checkout) first on it. An installed copy is
    found there anyway; put first, its folder would come before the standard library, where a package
    named like a standard module (an old backport) would replace it in the workers."""
    environment = {"PYTHONSAFEPATH": "1"}
    if package_root not in set(installed):
        environment["PYTHONPATH"] = os.pathsep.join([str(package_root), *filter(None, [pythonpath])])
    return environment


def _installed_folders() -> list[Path]:
    folders = [*site.getsitepackages(), site.getusersitepackages()]
    return [Path(folder).resolve() for folder in folders]


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    """os.environ with `values` for the block (what a process started in it inherits), then as it was."""
    with _environment_lock:
        previous = {name: os.environ.get(name) for name in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for name, value in previous.items():
                if value is None:
                    del os.environ[name]
                else:
                    os.environ[name] = value


def _start_worker(parent_pid: int, initializer: Callable[..., None] | None, initargs: tuple[Any, ...]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent(parent_pid)
    if initializer is not None:
        initializer(*initargs)


@contextmanager
def interrupts_deferred() -> Iterator[Sequence[int]]:
    """Ctrl-C and SIGTERM wait for the end of the block, then take effect as usual. The block is given
    the signals that came meanwhile (empty until one does), so that one that waits can stop waiting.

    Around `submit`, which starts a worker: stopped half-way, the pool would forget a worker that is
    still starting, and that worker would fail with a traceback instead of being stopped and waited for.
    Around a pool's futures and its shutdown (see `wait_for`): Python raises a Ctrl-C between any two
    bytecodes, threading's Python-level lock handling included, where it can leave a future's lock (or its
    waiter's) held, and the pool's manager thread then blocks on it for ever (see bulkfetch.report_drawing).
    Python runs signal handlers in the main thread only, so elsewhere there is nothing to defer.
    """
    pending: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, lambda signum, frame: pending.append(signum)) for signum in signals}
    try:
        yield pending
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if pending:
            signal.raise_signal(pending[0])


def wait_for(futures: Iterable[Future[Any]], *, first: bool = False,
             timeout: float | None = None) -> set[Future[Any]]:
    """The futures done once all are (`first`: once one is), or `timeout` seconds have passed (0: those done
    now), with Ctrl-C and SIGTERM deferred (see `interrupts_deferred`): one that comes ends the wait within
    SIGNAL_POLL_S and is raised then. Use it, `result_of` and `shut_down` for every wait on a pool's futures
    in the main thread: a Ctrl-C raised inside their locks hangs the command."""
    from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, wait

    if timeout == 0:  # asked once a pass by loops that feed a worker: as cheap as asking can be
        with interrupts_deferred():
            return {future for future in futures if future.done()}
    return_when = FIRST_COMPLETED if first else ALL_COMPLETED
    deadline = None if timeout is None else time.monotonic() + timeout
    done: set[Future[Any]] = set()
    waiting = set(futures)
    with interrupts_deferred() as signals:
        while waiting and not (signals or first and done):
            left = SIGNAL_POLL_S if deadline is None else min(SIGNAL_POLL_S, max(0.0, deadline - time.monotonic()))
            finished, waiting = wait(waiting, timeout=left, return_when=return_when)
            done |= finished
            if deadline is not None and time.monotonic() >= deadline:
                break
    return done


def result_of(future: Future[T]) -> T:
    """A done future's result (or its error raised), Ctrl-C and SIGTERM deferred (see `wait_for`)."""
    with interrupts_deferred():
        return future.result()


def shut_down(pool: Executor) -> None:
    """End `pool`: its futures not started are cancelled, the running ones waited for (each pool's user
    stops its own work first), with Ctrl-C and SIGTERM deferred until it has (see `wait_for`)."""
    with interrupts_deferred():
        pool.shutdown(wait=True, cancel_futures=True)


def exit_with_parent(parent_pid: int) -> None:
    """End this process at once when `parent_pid` is gone, killed outright included (see `_exit_with`)."""
    threading.Thread(target=_exit_with, args=(parent_pid, threading.Event()), name="parent-watch",
                     daemon=True).start()


@contextmanager
def ended_with_parent(parent_pid: int) -> Iterator[None]:
    """`exit_with_parent` for the block only: its watch has stopped when the block ends, so that a process
    that forks afterwards (a forkserver after its preload) forks with one thread."""
    done = threading.Event()
    watcher = threading.Thread(target=_exit_with, args=(parent_pid, done), name="parent-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


def _exit_with(parent_pid: int, done: threading.Event) -> None:
    """End this process at once when the process it works for is gone, unless `done` is set first: what a
    worker was writing is a temporary file, swept by the next run."""
    while alive(parent_pid):
        if done.wait(PARENT_CHECK_S):
            return
    os._exit(1)


__all__ = ["available_cpus", "ended_with_parent", "exit_with_parent", "interrupts_deferred", "result_of", "shut_down",
           "start_forkserver", "wait_for", "worker_pool"]
