"""Benchmark: quota efficiency. How close does a real fetch finish to the best schedule the limits allow?

    python bench/quota.py                    # 300 activities; read limits 20 per 2 s and 100 per 20 s
    python bench/quota.py --activities 500 --other-usage 7
    python bench/quota.py --smoke            # a few seconds (the test suite runs this)

The real pipeline (`fetch_history`) runs in-process against the embedded simulator on 127.0.0.1, on the
same event loop, with Strava's windows compressed (900 s -> 2 s, a day -> 20 s) and a fresh data_dir.
Three cases, same run:

1. the app's quota is ours alone;
2. another process of the same app spends `--other-usage` requests at the start of every short window we
   send in (the simulator counts them when our first request of the window arrives). We see them only
   through the rate headers, so the first response of each window may be a 429 in theory; none after it.
3. as 1, compacting during the quota waits as `bulkfetch fetch` does (bulkfetch.idle_compaction): every
   wait of a fifteenth of the short window or more starts a child process, killed when the wait ends.
   Its columns say how many idle compactions finished and how many details the Parquet held when the
   fetch ended (the run's own compaction, after it, is not timed); it must finish at least one.

Optimum: the earliest time at which a perfect scheduler, starting at the same moment (the arrival of our
first request) in the same aligned windows, has sent every needed request (list pages + details) with
zero latency. Case 1 uses the library's own model (`bulkfetch.quota.estimate_finish`); case 2 uses
`optimal_finish_s` below (a brute force over windows that charges the other process in each window used;
without it, the two agree, which tests/test_bench.py checks).

Wall time runs from our first request's arrival at the server (= its send time on loopback, within a
millisecond) to the last detail written. 429s, per-window peaks and the first-request time come from the
simulator's request log. `max_rate_per_s` (a burst smoother, not a window gate) is set to 1,000/s so that it
does not stretch a compressed 2-second window; at real scale the default 20/s spends 5 s of 900.
Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow.dataset as ds

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.events import TimingEvents  # noqa: E402 - after the path fix, so the script runs from anywhere
from bulkfetch.config import with_overrides  # noqa: E402
from bulkfetch.demo import demo_config  # noqa: E402
from bulkfetch.idle_compaction import FINISHED, outcome_line  # noqa: E402
from bulkfetch.pipeline import FetchOptions  # noqa: E402
from bulkfetch.quota import QuotaLedger, estimate_finish, next_boundary, window_index  # noqa: E402
from bulkfetch.run import fetch_history  # noqa: E402
from bulkfetch.simulator import Simulator, SimulatorSettings  # noqa: E402

SEED = 7
PER_PAGE = 200  # FetchConfig's default, Strava's maximum
MAX_RATE_PER_S = 1000.0
RATIO_TARGET = 1.02
RATIO_TARGET_OTHERS = 1.05
# A smoke run lasts a few windows, so the fixed cost at its end (boundary guard 0.01 s + scheduler epsilon
# 0.05 s + one round trip) weighs more; the full run's targets are the issue's.
SMOKE_RATIO_TARGET = 1.25


@dataclass(frozen=True)
class Limits:
    """Read limits of the simulated app, in requests per window; windows in seconds (daily a multiple)."""

    short: int
    short_window_s: int
    daily: int
    daily_window_s: int


@dataclass(frozen=True)
class CaseResult:
    name: str
    activities: int
    needed: int  # list pages + details a perfect scheduler sends
    sent: int  # requests we sent (counted by the server), 429s included
    rejected: int  # 429s
    rejected_late: int  # 429s that were not the first request of their short window
    wall_s: float
    optimum_s: float
    peak_short: int  # highest usage of a short window (all of the app's requests), by the server's count
    peak_daily: int
    limits: Limits
    other_usage: int
    target: float
    idle: IdleCompactions | None = None  # case 3 only

    @property
    def ratio(self) -> float:
        return self.wall_s / self.optimum_s if self.optimum_s > 0 else math.inf

    @property
    def met(self) -> bool:
        late = self.rejected_late if self.other_usage else self.rejected
        fired = self.idle is None or self.idle.finished > 0
        return late == 0 and self.sent == self.needed + self.rejected and self.ratio <= self.target and fired


@dataclass(frozen=True)
class IdleCompactions:
    """What compacting during the waits did: compactions finished, and the details in the Parquet then."""

    finished: int
    details_in_parquet: int


@dataclass(frozen=True)
class Case:
    name: str
    other_usage: int
    target: float
    compact_in_waits: bool = False


# -- the optimum -------------------------------------------------------------------------------------------
def needed_requests(activities: int, per_page: int = PER_PAGE) -> int:
    """List pages (keyset paging stops at the first short page, so an exact multiple costs one empty
    page more) plus one detail per activity."""
    return activities // per_page + 1 + activities


def optimal_finish_s(requests: int, start_s: float, limits: Limits, other_per_window: int = 0) -> float:
    """Earliest epoch second at which a perfect zero-latency scheduler starting at `start_s` has sent
    `requests`, Strava counting in aligned windows of `limits`. It sends at `start_s`, then only at short
    window starts, as much as both windows allow. In every short window it sends in, another process first
    spends `other_per_window` (in the short and the daily window alike), as the simulator's does; so a
    window is used only when at least one of ours fits after the other process's share."""
    if requests <= 0:
        return start_s
    if not 0 <= other_per_window < min(limits.short, limits.daily):
        raise ValueError("other_per_window must leave room in both windows")
    if limits.daily_window_s % limits.short_window_s:
        raise ValueError("the daily window must be a whole number of short windows")
    remaining, t = requests, start_s
    day, day_used = None, 0
    for _ in range(requests * (limits.daily_window_s // limits.short_window_s + 1) + 1):
        if window_index(t, limits.daily_window_s) != day:
            day, day_used = window_index(t, limits.daily_window_s), 0
        room = min(limits.short, limits.daily - day_used) - other_per_window
        if room > 0:
            sent = min(remaining, room)
            remaining -= sent
            day_used += other_per_window + sent
            if remaining == 0:
                return t
        t = next_boundary(t, limits.short_window_s)
    raise AssertionError("unreachable: every day has room for at least one request")


def library_optimum_s(requests: int, start_s: float, limits: Limits) -> float:
    """`bulkfetch.quota.estimate_finish` from a fresh ledger: the library's model of a perfect scheduler."""
    ledger = QuotaLedger(limits.short, limits.daily, short_window_s=limits.short_window_s,
                         daily_window_s=limits.daily_window_s)
    return estimate_finish(requests, start_s, ledger)


# -- one measured case ---------------------------------------------------------------------------------------
async def run_case(case: Case, activities: int, limits: Limits, data_dir: Path) -> CaseResult:
    name, other_usage = case.name, case.other_usage
    settings = SimulatorSettings(
        seed=SEED, activities=activities,
        short_limit=limits.short, daily_limit=limits.daily,
        overall_short_limit=2 * limits.short, overall_daily_limit=2 * limits.daily,
        short_window_s=limits.short_window_s, daily_window_s=limits.daily_window_s,
        other_usage_per_window=other_usage,
    )
    needed = needed_requests(activities)
    events = TimingEvents()
    async with Simulator(settings) as simulator:
        config = with_overrides(demo_config(simulator, data_dir), fetch={"max_rate_per_s": MAX_RATE_PER_S})
        # Bounded: twice the optimum from now, plus slack for a slow machine.
        budget_s = 2 * (optimal_finish_s(needed, time.time(), limits, other_usage) - time.time()) + 30
        options = FetchOptions(ledger_dir=data_dir, compact_in_waits=case.compact_in_waits)
        summary = await asyncio.wait_for(fetch_history(config, options, events), timeout=budget_s)
        log = list(simulator.request_log)
    if summary.fetched != activities or summary.failed:
        raise RuntimeError(f"{name}: fetched {summary.fetched} of {activities} details ({len(summary.failed)} "
                           f"failed; warnings: {events.warnings})")
    ours = [r for r in log if r.counted and not r.others]
    start_s = ours[0].time
    first_in_window: set[int] = set()
    rejected = rejected_late = 0
    seen_windows: set[int] = set()
    for index, record in enumerate(ours):
        if record.short_window not in seen_windows:
            seen_windows.add(record.short_window)
            first_in_window.add(index)
        if record.status == 429:
            rejected += 1
            rejected_late += index not in first_in_window
    short_usage = Counter(r.short_window for r in log if r.counted)
    daily_usage = Counter(r.daily_window for r in log if r.counted)
    optimum = (library_optimum_s(needed, start_s, limits) if other_usage == 0
               else optimal_finish_s(needed, start_s, limits, other_usage))
    return CaseResult(name=name, activities=activities, needed=needed, sent=len(ours), rejected=rejected,
                      rejected_late=rejected_late, wall_s=events.last_detail_s - start_s,
                      optimum_s=optimum - start_s, peak_short=max(short_usage.values()),
                      peak_daily=max(daily_usage.values()), limits=limits, other_usage=other_usage, target=case.target,
                      idle=idle_compactions(events, config.storage.parquet_dir) if case.compact_in_waits else None)


def idle_compactions(events: TimingEvents, parquet_dir: Path) -> IdleCompactions:
    """What the idle compactions left, read before any other compaction."""
    finished = events.infos.count(outcome_line(FINISHED))
    if not (parquet_dir / "activities").is_dir():
        return IdleCompactions(finished, 0)
    table = ds.dataset(parquet_dir / "activities", format="parquet").to_table(columns=["has_detail"])
    return IdleCompactions(finished, table["has_detail"].to_pylist().count(True))


# -- output ----------------------------------------------------------------------------------------------------
def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    return (f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}")


def render(results: list[CaseResult]) -> str:
    headers = ("case", "activities", "needed", "sent", "429s", "late 429s", "peak short", "peak daily",
               "idle compactions", "details in Parquet", "wall s", "optimum s", "ratio", "target")
    rows = []
    for r in results:
        idle = (str(r.idle.finished), f"{r.idle.details_in_parquet:,}") if r.idle else ("-", "-")
        rows.append((r.name, f"{r.activities:,}", f"{r.needed:,}", f"{r.sent:,}", str(r.rejected),
                     str(r.rejected_late), f"{r.peak_short}/{r.limits.short}", f"{r.peak_daily}/{r.limits.daily}",
                     *idle, f"{r.wall_s:.2f}", f"{r.optimum_s:.2f}", f"{r.ratio:.4f}",
                     f"<= {r.target:g} {'met' if r.met else 'MISSED'}"))
    return markdown_table(headers, rows)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table, the first column left-aligned, the others right-aligned (bench/fairness.py's too)."""
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    separator = "|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|"
    return "\n".join([line(headers), separator, *(line(row) for row in rows)])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--activities", type=int, default=300, help="history size (default 300)")
    parser.add_argument("--short-limit", type=int, default=20, help="read requests per short window (20)")
    parser.add_argument("--short-window", type=int, default=2, help="short window, seconds (2)")
    parser.add_argument("--daily-limit", type=int, default=100, help="read requests per daily window (100)")
    parser.add_argument("--daily-window", type=int, default=20, help="daily window, seconds (20)")
    parser.add_argument("--other-usage", type=int, default=5,
                        help="requests another process spends per short window in case 2 (5)")
    parser.add_argument("--smoke", action="store_true", help="tiny history and 1-second windows, a few seconds")
    args = parser.parse_args(argv)
    if args.smoke:
        args.activities, args.short_limit, args.short_window, args.daily_limit, args.daily_window = 20, 10, 1, 1000, 10
        args.other_usage = 3
    return args


def run(args: argparse.Namespace) -> list[CaseResult]:
    """The three cases, each against its own simulator and a fresh data_dir (removed afterwards)."""
    limits = Limits(args.short_limit, args.short_window, args.daily_limit, args.daily_window)
    base_target = SMOKE_RATIO_TARGET if args.smoke else RATIO_TARGET
    others_target = SMOKE_RATIO_TARGET if args.smoke else RATIO_TARGET_OTHERS
    cases = [Case("alone", 0, base_target),
             Case(f"other process {args.other_usage}/window", args.other_usage, others_target),
             Case("alone, compacting in waits", 0, base_target, compact_in_waits=True)]
    results = []
    work = Path(tempfile.mkdtemp(prefix="bulkfetch-bench-quota-"))
    try:
        for number, case in enumerate(cases):
            results.append(asyncio.run(run_case(case, args.activities, limits, work / f"case-{number}")))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"bench/quota.py: {args.activities:,} activities, read limits {args.short_limit} per {args.short_window} s"
          f" and {args.daily_limit} per {args.daily_window} s, concurrency 8, max_rate_per_s {MAX_RATE_PER_S:g}")
    print(f"machine: {machine()}")
    results = run(args)
    print(render(results))
    print("ratio = wall / optimum; late 429s = 429s after the first request of their short window "
          "(target 0; cases 1 and 3 target 0 429s at all); idle compactions = those that finished during a wait "
          "(case 3 targets at least 1), details in Parquet = what they had compacted when the fetch ended")
    return 0 if all(r.met for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
