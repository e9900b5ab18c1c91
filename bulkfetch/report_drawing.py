"""`bulkfetch report`'s figures drawn in worker processes, whose matplotlib import overlaps the reading
(issue 15: the report within 1.5 x the demo's compaction).

Importing matplotlib takes longer than reading and fitting the demo's splits, and as long again as drawing
its four figures. So the command starts, before anything else of the report, a forkserver that imports
matplotlib (bulkfetch.report_server); by the time the runs are read and fitted, matplotlib is loaded, and
the figures are drawn by workers forked from that server, two at a time on two cores or more (drawing is
most of the rest), one at a time on one.
The workers (bulkfetch.processes.worker_pool) ignore Ctrl-C and end when this process does; they return
PNG bytes and this process writes every file.

Ctrl-C and SIGTERM wait while this process hands the figures out, waits for them and ends the pool: at most
processes.SIGNAL_POLL_S, then the pool's shutdown waits for the figures being drawn (a fraction of a second).
Python raises a Ctrl-C between any two bytecodes, inside threading's Python-level lock handling too: raised
just as the main thread had taken a future's lock, it left the lock taken; the pool's manager thread blocked
on it for ever, so stopped reading results; a worker blocked writing its PNG (~100 KB, more than a pipe
holds), the pool's feeder thread writing that worker the next figure's data (as large), and the shutdown
waited for both (seen once in ~250 Ctrl-Cs; tests/test_report_figures.py makes it happen every time). Ending
the pool without waiting would not do: the interpreter's exit joins the manager thread all the same.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from bulkfetch.errors import BulkfetchError, ConfigError
from bulkfetch.processes import (
    available_cpus,
    interrupts_deferred,
    result_of,
    shut_down,
    start_forkserver,
    wait_for,
    worker_pool,
)

if TYPE_CHECKING:  # the command starts the workers' server before it imports these (bulkfetch.launch)
    from concurrent.futures import Future, ProcessPoolExecutor

    from bulkfetch.report_data import AthleteReport
    from bulkfetch.report_html import Units

WORKERS = 2  # four figures an athlete: more workers would only wait for the cores


class FigureWorkers:
    """The pool of figure-drawing workers, for the figures of reports read meanwhile."""

    def __init__(self, pool: ProcessPoolExecutor) -> None:
        self._pool = pool

    def draw(self, reports: Sequence[AthleteReport], units: Units) -> list[list[bytes]]:
        """Each report's figures as PNG bytes, in report_html.FIGURE_NAMES order. BulkfetchError (one line)
        when a worker failed to draw one or ended; Ctrl-C or SIGTERM within processes.SIGNAL_POLL_S."""
        from bulkfetch.report_html import FIGURE_NAMES  # here: the workers' server starts before it is imported

        with interrupts_deferred():  # a submit may start a worker
            futures = [[(name, self._pool.submit(_draw_png, name, report, units)) for name in FIGURE_NAMES]
                       for report in reports]
        wait_for([future for figures in futures for _, future in figures])  # see the module docstring
        return [[_png_of(future, name, report) for name, future in figures]
                for report, figures in zip(reports, futures, strict=True)]


SERVER_MODULE = "bulkfetch.report_server"


def start_figure_server() -> None:
    """Start the workers' server, which imports matplotlib, unless it runs already (bulkfetch.launch
    starts it before the command line is even read); nothing when matplotlib is not installed."""
    if _installed("matplotlib"):
        start_forkserver([SERVER_MODULE])


@contextmanager
def figure_workers() -> Iterator[FigureWorkers]:
    """The figure workers, their server importing matplotlib from now on if it was not yet; ConfigError
    when matplotlib is not installed. The pool ends with the block: an error before any figure was asked
    for waits for no import (the server ends with this process, its import left unfinished:
    bulkfetch.report_server)."""
    if not _installed("matplotlib"):
        raise ConfigError("report needs matplotlib", hint="pip install 'bulkfetch[report]'")
    pool = worker_pool(min(WORKERS, available_cpus()), SERVER_MODULE)
    try:
        yield FigureWorkers(pool)
    finally:
        shut_down(pool)  # its locks too (see the module docstring)


def _installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it (matplotlib's import is what the workers
    are there for)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a finder may refuse a module outright
        return False


def _draw_png(name: str, report: AthleteReport, units: Units) -> bytes:
    """In a worker: the server imported bulkfetch.report_figures already (this import finds it loaded);
    the command's own process never imports matplotlib."""
    from bulkfetch.report_figures import draw_png

    return draw_png(name, report, units)


def _png_of(future: Future[bytes], name: str, report: AthleteReport) -> bytes:
    from concurrent.futures.process import BrokenProcessPool

    try:
        return result_of(future)
    except BrokenProcessPool:
        raise BulkfetchError(f"a worker drawing the report's figures ended unexpectedly (athlete "
                             f"{report.athlete_id}'s {name} figure)", hint="run the report again") from None
    except Exception as error:  # drawing failed in the worker: its error, in one line
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise BulkfetchError(f"drawing athlete {report.athlete_id}'s {name} figure failed: "
                             f"{type(error).__name__}: {first}".rstrip(": ")) from None
