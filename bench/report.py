"""Benchmark: `bulkfetch report` against the compaction of the same demo data (issue 15: under 1.5x).

    python bench/report.py                   # the demo's default history (300 activities)
    python bench/report.py --activities 60   # a smaller history
    python bench/report.py --smoke           # 30 activities, once each (the test suite runs it)

It runs `bulkfetch demo` once into a temporary folder, then times as whole processes (interpreter start
and imports counted for both; bulkfetch's modules compiled once, as an installed package's are: this
sandbox sets PYTHONDONTWRITEBYTECODE, which would compile the report's many modules on every run), each
repeat running both commands, wall and CPU seconds (CPU time is what a machine shared with other jobs
distorts least; on Linux every process of a command's tree counts: its forkserver and the workers forked
from it end a moment after it, and the process that times the commands adopts and reaps them). The
headline ratio is the median over the repeats of the report's time against the compaction's of the same
repeat (a busy minute slows both of a repeat alike); the best of each is printed beside it:
`bulkfetch compact --rebuild` (every partition written again from raw) and `bulkfetch report` as the demo prints it
(reading the splits, fitting the model for its --predict course, the four figures, the HTML and the PNG
files), both with the config the demo prints. Two floors are timed in each repeat too: a Python that
imports matplotlib and saves one empty plot (below any report drawn with matplotlib), and one that imports
matplotlib and draws the report's four figures, from data read and fitted beforehand, in two processes
(below this report: it reads and fits meanwhile, and draws the same figures with two workers).
"""

from __future__ import annotations

import argparse
import ctypes
import multiprocessing
import os
import pickle
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bulkfetch.demo import REPORT_CONFIG_NAME, REPORT_COURSE  # noqa: E402 - after the path fix, so the script runs from anywhere

GOAL_RATIO = 1.5
# Less than any report with matplotlib can take: an interpreter that imports matplotlib (the collector
# paused, as the report's figure server does) and saves one empty plot, where the report draws four.
FLOOR_CODE = ("import gc, sys; gc.disable(); from matplotlib.figure import Figure; "
              "figure = Figure(figsize=(7.5, 4.5)); figure.add_subplot(); "
              "figure.savefig(sys.argv[1], format='png', dpi=100)")
# Less than the report can take with the four figures it draws: an interpreter that imports matplotlib and
# draws them from data read and fitted beforehand (a pickle: no pyarrow, no reading), two at a time in two
# processes (the report's two workers), the collector paused throughout.
FIGURES_FLOOR_CODE = """import gc, os, pickle, sys
gc.disable()
from bulkfetch.report_figures import draw_png
from bulkfetch.report_html import FIGURE_NAMES
with open(sys.argv[1], "rb") as file:
    report, units = pickle.load(file)
child = os.fork()
for name in FIGURE_NAMES[(child == 0)::2]:
    with open(os.path.join(sys.argv[2], name + ".png"), "wb") as png:
        png.write(draw_png(name, report, units))
if child == 0:
    os._exit(0)
if os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) != 0:
    sys.exit("the second process failed to draw its figures")
"""
SMOKE_ACTIVITIES = 30
PR_SET_CHILD_SUBREAPER = 36  # Linux's prctl option
REAP_S = 30  # how long a command's leftover processes may take to end


@dataclass(frozen=True)
class Timing:
    wall_s: float
    cpu_s: float  # user + system of the command's whole tree (where whole_tree), else of it and its children
    whole_tree: bool


_adopting = False  # in the timing process: whether it adopts the commands' orphans


def _adopt_orphans() -> None:
    """In the timing process: become the parent of its descendants' orphans (Linux), so that their CPU
    time counts once reaped: a forkserver is its command's child, its workers the server's, and they
    end just after the command. Its own process, so that reaping every child takes no one else's."""
    global _adopting
    try:
        _adopting = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except AttributeError:  # no prctl (macOS): their CPU time goes uncounted
        _adopting = False


def _reap_all() -> None:
    """Wait for every process left of the command (up to REAP_S: they end when they see it gone)."""
    deadline = time.monotonic() + REAP_S
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"a process the command started still runs {REAP_S} s after it ended")
            time.sleep(0.01)


def _timed(*args: str) -> Timing:
    """In the timing process: `bulkfetch ARGS` as a whole process, its leftovers reaped."""
    return _timed_python("-m", "bulkfetch", *args)


def _timed_python(*args: str) -> Timing:
    """In the timing process: `python ARGS` as a whole process, its leftovers reaped."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, capture_output=True, env=env)
    wall_s = time.perf_counter() - start
    _reap_all()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Timing(wall_s, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, _adopting)


def _best(timings: list[Timing]) -> Timing:
    return Timing(min(t.wall_s for t in timings), min(t.cpu_s for t in timings), all(t.whole_tree for t in timings))


@dataclass(frozen=True)
class Runs:
    """Each repeat's timings of the contenders: the compaction, the report and the two floors."""
    compact: list[Timing]
    report: list[Timing]
    floor: list[Timing]
    figures_floor: list[Timing]


def measure(activities: int, repeat: int) -> Runs:
    """Each repeat's compaction, report and floor timings over the demo's data."""
    timer = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_adopt_orphans)
    with tempfile.TemporaryDirectory() as folder, timer:
        data_dir = Path(folder) / "demo-data"
        timer.submit(_timed, "-q", "demo", "--activities", str(activities), "--data-dir", str(data_dir)).result()
        config = ["--config", str(data_dir / REPORT_CONFIG_NAME)]
        figures = _pickled_report(data_dir)
        runs = Runs([], [], [], [])
        for _ in range(repeat):
            runs.compact.append(timer.submit(_timed, *config, "compact", "--rebuild").result())
            runs.report.append(timer.submit(_timed, *config, "report", "--out", str(data_dir / "report.html"),
                                            "--predict", REPORT_COURSE).result())
            runs.floor.append(timer.submit(_timed_python, "-c", FLOOR_CODE, str(data_dir / "floor.png")).result())
            runs.figures_floor.append(timer.submit(_timed_python, "-c", FIGURES_FLOOR_CODE, str(figures),
                                                   str(data_dir)).result())
    return runs


def _pickled_report(data_dir: Path) -> Path:
    """The demo athlete's report data as `bulkfetch report --predict REPORT_COURSE` computes it, pickled
    for FIGURES_FLOOR_CODE."""
    from bulkfetch import pace, report_data, report_html, report_read
    from bulkfetch.dataset_root import local_root

    units = report_html.units_named("km")
    runs = report_read.read_runs(local_root(data_dir / "parquet"), report_read.ReportQuery(unit_m=units.metres))
    (athlete_id, athlete_runs), = runs.items()
    report = report_data.athlete_report(athlete_id, athlete_runs, units.metres,
                                        (REPORT_COURSE, pace.parse_course(REPORT_COURSE)))
    path = data_dir / "figures.pickle"
    path.write_bytes(pickle.dumps((report, units)))
    return path


def median_ratio(runs: list[Timing], bases: list[Timing], seconds: Callable[[Timing], float]) -> float:
    """The median over the repeats of each run's seconds against its repeat's base."""
    return statistics.median(seconds(run) / seconds(base) for run, base in zip(runs, bases, strict=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--activities", type=int, default=300, help="the demo's history (default 300)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each, interleaved (default 5)")
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE_ACTIVITIES} activities, each command once")
    args = parser.parse_args(argv)
    if args.smoke:
        args.activities, args.repeat = SMOKE_ACTIVITIES, 1
    runs = measure(args.activities, args.repeat)
    compact, report, floor = _best(runs.compact), _best(runs.report), _best(runs.floor)
    wall = median_ratio(runs.report, runs.compact, lambda t: t.wall_s)
    cpu = median_ratio(runs.report, runs.compact, lambda t: t.cpu_s)
    floor_wall = median_ratio(runs.floor, runs.compact, lambda t: t.wall_s)
    figures_floor = _best(runs.figures_floor)
    figures_floor_wall = median_ratio(runs.figures_floor, runs.compact, lambda t: t.wall_s)
    print(f"demo of {args.activities} activities, {args.repeat} repeats (goal: report under {GOAL_RATIO}x); "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"  wall: compact --rebuild {compact.wall_s:.2f} s, report {report.wall_s:.2f} s (best of each): "
          f"{report.wall_s / compact.wall_s:.2f}x; median per repeat {wall:.2f}x")
    print(f"  CPU:  compact --rebuild {compact.cpu_s:.2f} s, report {report.cpu_s:.2f} s (best of each): "
          f"{report.cpu_s / compact.cpu_s:.2f}x; median per repeat {cpu:.2f}x"
          + ("" if report.whole_tree and compact.whole_tree else " (without their forkservers' workers: not Linux)"))
    print(f"  floor: a Python importing matplotlib and saving one empty plot {floor.wall_s:.2f} s (best): "
          f"{floor.wall_s / compact.wall_s:.2f}x the compaction; median per repeat {floor_wall:.2f}x")
    print(f"  floor: a Python importing matplotlib and drawing the report's four figures in two processes "
          f"{figures_floor.wall_s:.2f} s (best): {figures_floor.wall_s / compact.wall_s:.2f}x the compaction; "
          f"median per repeat {figures_floor_wall:.2f}x")
    print(f"report under {GOAL_RATIO}x the compaction (wall, median per repeat): "
          f"{'PASS' if wall < GOAL_RATIO else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
