"""Benchmark: does plain `bulkfetch demo` take as long as it did before many athletes (issue 12)?

    python bench/demo.py                       # 300 activities, 3 rounds, against 71ed48c
    python bench/demo.py --rounds 5 --baseline <rev>
    python bench/demo.py --smoke               # 20 activities, 1 round, unaligned: a few seconds

Each round runs `python -m bulkfetch demo` as a user would (a child process, no terminal) from this tree
and from the baseline's (`git archive` of its bulkfetch/ into a temporary folder), each into a fresh
--data-dir ("first run") and then once more into the same one ("rerun": a list check, nothing new).
Wall time is the child's, from start to exit: startup, the fetch, compaction and the report tables.

The demo is quota-bound (100 requests per 6-second window), so a run's time depends on where in a
window it starts. Every run therefore starts just after a window boundary: the two trees then wait for
the same windows, and what differs is their own cost. The order of the trees alternates from round to
round, so that a drift of the machine's load weighs on both; the table shows the medians. Exit status 1
when the current tree's median exceeds the target ratio of the baseline's.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.quota import machine  # noqa: E402 - after the path fix, so the script runs from anywhere
from bulkfetch.demo import DEMO_SHORT_WINDOW_S  # noqa: E402

# The last commit before issue 12 ("many athletes") changed the fetch: the demo of "today" in the issue.
BASELINE_REV = "71ed48c"
RATIO_TARGET = 1.1
# A smoke run is a second or two of startup, unaligned: it guards against a gross slowdown only.
SMOKE_RATIO_TARGET = 3.0
START_AFTER_BOUNDARY_S = 0.05
RUN_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Tree:
    name: str
    path: Path  # the folder that holds bulkfetch/


@dataclass(frozen=True)
class CaseResult:
    name: str
    baseline_s: list[float]
    current_s: list[float]
    target: float

    @property
    def ratio(self) -> float:
        return statistics.median(self.current_s) / statistics.median(self.baseline_s)

    @property
    def met(self) -> bool:
        return self.ratio <= self.target


def export_baseline(rev: str, folder: Path) -> Tree:
    """The baseline's bulkfetch/ package, from git (no checkout of the working tree is touched)."""
    try:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev, "bulkfetch"],
                                 capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        raise SystemExit(f"bench/demo.py: cannot export {rev}'s bulkfetch/ with git ({error}); "
                         "run it from a git checkout, or pass --baseline") from None
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return Tree(f"baseline {rev}", folder)


def start_after_boundary() -> None:
    """Sleep until just after the next short-window boundary of the demo (windows are aligned to the epoch)."""
    now = time.time()
    time.sleep(DEMO_SHORT_WINDOW_S - now % DEMO_SHORT_WINDOW_S + START_AFTER_BOUNDARY_S)


def run_demo(tree: Tree, activities: int, data_dir: Path, state_home: Path, expected: str, *, align: bool) -> float:
    """Seconds one `bulkfetch demo` child took; it must exit 0 having fetched what `expected` says."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRAVA_", "BULKFETCH_"))}
    env.update(PYTHONPATH=str(tree.path), CI="true", XDG_STATE_HOME=str(state_home))
    if align:
        start_after_boundary()
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "bulkfetch", "demo", "--activities", str(activities),
                             "--data-dir", str(data_dir)], cwd=data_dir.parent, env=env, capture_output=True,
                            text=True, timeout=RUN_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    if result.returncode != 0 or expected not in result.stdout:
        raise SystemExit(f"bench/demo.py: the demo of {tree.name} failed (exit {result.returncode}, "
                         f"expected {expected!r}):\n{result.stderr[-2000:]}")
    return elapsed


def run(args: argparse.Namespace) -> list[CaseResult]:
    work = Path(tempfile.mkdtemp(prefix="bulkfetch-bench-demo-"))
    times: dict[tuple[str, str], list[float]] = {}
    try:
        trees = [export_baseline(args.baseline, work / "baseline"), Tree("current", REPO)]
        for number in range(args.rounds):
            for tree in trees if number % 2 == 0 else trees[::-1]:
                data_dir = work / f"round-{number}-{tree.name.split()[0]}" / "demo-data"
                data_dir.parent.mkdir(parents=True)
                for case, expected in (("first run", f"fetched {args.activities:,} details"),
                                       ("rerun", "fetched 0 details")):
                    seconds = run_demo(tree, args.activities, data_dir, work / "state", expected,
                                       align=not args.smoke)
                    times.setdefault((case, tree.name), []).append(seconds)
                    print(f"  round {number + 1}, {tree.name}, {case}: {seconds:.2f} s", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    baseline, current = (tree.name for tree in trees)
    return [CaseResult(case, times[(case, baseline)], times[(case, current)], args.target)
            for case in ("first run", "rerun")]


def render(results: list[CaseResult], baseline: str) -> str:
    rows = [("case", f"baseline {baseline} s (median)", "current s (median)", "runs each", "ratio", "target"),
            ("---", "---:", "---:", "---:", "---:", "---")]
    for r in results:
        rows.append((r.name, f"{statistics.median(r.baseline_s):.2f}", f"{statistics.median(r.current_s):.2f}",
                     str(len(r.current_s)), f"{r.ratio:.3f}", f"<= {r.target:g} {'met' if r.met else 'MISSED'}"))
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--activities", type=int, default=300, help="the demo's --activities (default 300)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each tree and case (default 3)")
    parser.add_argument("--baseline", default=BASELINE_REV, help=f"git revision to compare with ({BASELINE_REV})")
    parser.add_argument("--target", type=float, default=RATIO_TARGET, help=f"ratio to meet ({RATIO_TARGET:g})")
    parser.add_argument("--smoke", action="store_true",
                        help="20 activities, one round, no wait for a window boundary: a few seconds (its ratio "
                             "is startup noise, not a measurement)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.activities, args.rounds, args.target = 20, 1, SMOKE_RATIO_TARGET
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = (f"each run starts {START_AFTER_BOUNDARY_S:g} s into a {DEMO_SHORT_WINDOW_S}-second quota window"
             if not args.smoke else "runs start anywhere in a quota window")
    print(f"bench/demo.py: bulkfetch demo --activities {args.activities}, {args.rounds} round(s), "
          f"against {args.baseline}; {start}")
    print(f"machine: {machine()}")
    results = run(args)
    print(render(results, args.baseline))
    return 0 if all(r.met for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
