"""Benchmark: fairness. Do athletes of very different sizes share one app's quota fairly, at no cost in time?

    python bench/fairness.py                      # athletes of 1,000, 200 and 30 activities; 100 reads per 2 s
    python bench/fairness.py --athletes 2000,100,10 --short-limit 60
    python bench/fairness.py --smoke              # a few seconds (the test suite runs this)

Issue 12 ("Fetching many athletes"). The real pipeline (`fetch_history`) runs in-process against the embedded
simulator on 127.0.0.1, on the same event loop, with Strava's short window compressed (900 s -> 2 s) and the
daily limit out of the way (bench/quota.py measures the schedule under both windows). The three athletes are
connected as `bulkfetch auth` connects them, by storing their tokens. Two cases, each against its own
simulator and a fresh data_dir:

1. baseline, one athlete after another: three `fetch_history` runs (`--athlete` each), biggest first, under
   the same app ledger, so each run spends what the one before left of its window;
2. fair: one `fetch_history` for all three (round-robin request slots, `bulkfetch.fairness`).

Both start right after a window boundary (of the daily window too when it binds), so that neither gets a
shorter first window. Wall time runs from the first request's arrival at the server to the last detail
written. Pass conditions, from the simulator's request log of the fair run:

1. shares: in every short window, the k athletes with work left after it (requests in a later window: one
   that finishes inside a window takes only what it needs) each get at least floor(W'/k) - 1 of the W'
   requests those k sent in it. The worst margin over all windows is reported (>= 0 passes); the
   baseline's, for contrast, is far below (athletes waiting their turn get nothing);
2. the smallest athlete's newest min(50, n) details are all done within ceil(150/W) + 1 short windows of
   the run's first request (W: the short limit);
3. wall time <= 1.02 x the baseline's (fairness must not waste quota);

and no 429 in either case. Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.events import TimingEvents  # noqa: E402 - after the path fix, so the script runs from anywhere
from bench.quota import (  # noqa: E402
    MAX_RATE_PER_S,
    Limits,
    machine,
    markdown_table,
    needed_requests,
    optimal_finish_s,
)
from bulkfetch.auth import Tokens  # noqa: E402
from bulkfetch.config import Config, with_overrides  # noqa: E402
from bulkfetch.demo import demo_config  # noqa: E402
from bulkfetch.pipeline import FetchOptions, FetchSummary  # noqa: E402
from bulkfetch.quota import next_boundary  # noqa: E402
from bulkfetch.roster import Roster  # noqa: E402
from bulkfetch.run import fetch_history  # noqa: E402
from bulkfetch.simulator import RequestRecord, Simulator, SimulatorSettings  # noqa: E402

SEED = 12
DETAIL_PATH = "/api/v3/activities/{}"
ACTIVITY_PATH = "/api/v3/activities/"  # details and streams: the work a backlog is made of
NEWEST = 50  # the smallest athlete's newest activities that must be done early (issue 12)
NEWEST_BUDGET = 150  # ... within ceil(NEWEST_BUDGET / W) + 1 windows: 50 each for three athletes
RATIO_TARGET = 1.02
# A smoke run lasts a few windows, so a few milliseconds at its end weigh more (as in bench/quota.py).
SMOKE_RATIO_TARGET = 1.25


@dataclass(frozen=True)
class Bench:
    """What both cases run: the athletes' history sizes, biggest first, and the app's limits."""

    sizes: tuple[int, ...]
    limits: Limits

    @property
    def needed(self) -> int:
        return sum(needed_requests(size) for size in self.sizes)


@dataclass(frozen=True)
class WindowShare:
    """One short window's worst-served athlete among those with work left after it."""

    window: int  # counted from the run's first window
    athlete_id: int
    got: int
    floor: int  # floor(W'/k) - 1
    counts: dict[int, int]  # every athlete's requests in the window

    @property
    def margin(self) -> int:
        return self.got - self.floor


@dataclass(frozen=True)
class CaseResult:
    name: str
    sent: int  # requests the server counted, 429s included
    rejected: int  # 429s
    windows: int  # short windows from the first request to the last
    wall_s: float
    worst_share: WindowShare | None  # None: no window had two athletes with work left
    newest: int  # how many of the smallest athlete's newest activities condition 2 covers
    newest_windows: int  # windows until they were all done, the first request's window counted


@dataclass(frozen=True)
class Verdict:
    """The pass conditions, measured against their targets."""

    bench: Bench
    baseline: CaseResult
    fair: CaseResult
    ratio_target: float

    @property
    def ratio(self) -> float:
        return self.fair.wall_s / self.baseline.wall_s if self.baseline.wall_s > 0 else math.inf

    @property
    def newest_window_limit(self) -> int:
        return newest_window_limit(self.bench.limits.short)

    @property
    def shares_met(self) -> bool:
        return self.fair.worst_share is None or self.fair.worst_share.margin >= 0

    @property
    def newest_met(self) -> bool:
        return self.fair.newest_windows <= self.newest_window_limit

    @property
    def ratio_met(self) -> bool:
        return self.ratio <= self.ratio_target

    @property
    def no_429s(self) -> bool:
        return self.fair.rejected == 0 and self.baseline.rejected == 0

    @property
    def met(self) -> bool:
        return self.shares_met and self.newest_met and self.ratio_met and self.no_429s


# -- the conditions, from a request log (pure) ----------------------------------------------------------------
def newest_window_limit(short_limit: int) -> int:
    return math.ceil(NEWEST_BUDGET / short_limit) + 1


def worst_share(records: Sequence[RequestRecord]) -> WindowShare | None:
    """The lowest margin over the run's windows of an athlete with work left against floor(W'/k) - 1,
    where k athletes have detail or stream requests in a later window and sent W' requests in this one
    (the list-head checks a long run makes every few windows are not work left). An athlete
    with work left may have sent nothing in the window (it waited its turn): it counts with 0."""
    counts: dict[int, Counter[int]] = defaultdict(Counter)
    last_window: dict[int, int] = {}
    for record in records:
        if record.athlete_id is not None:
            counts[record.short_window][record.athlete_id] += 1
            if ACTIVITY_PATH in record.path:  # a check for new uploads every few windows is not work left
                last_window[record.athlete_id] = max(last_window.get(record.athlete_id, record.short_window),
                                                     record.short_window)
    first = min(counts, default=0)
    worst: WindowShare | None = None
    for window in sorted(counts):
        busy = sorted(a for a, last in last_window.items() if last > window)
        if len(busy) < 2:
            continue  # alone with work, an athlete takes what it asks for: nothing to share
        floor = sum(counts[window][a] for a in busy) // len(busy) - 1
        athlete_id = min(busy, key=lambda a: counts[window][a])
        share = WindowShare(window - first, athlete_id, counts[window][athlete_id], floor, dict(counts[window]))
        if worst is None or share.margin < worst.margin:
            worst = share
    return worst


def windows_until_done(records: Sequence[RequestRecord], activity_ids: Sequence[int]) -> int:
    """Short windows from the first request's to the one in which the last of `activity_ids`' details
    was answered 200, both counted; a detail never answered counts as every window of the run and one more."""
    if not records:
        return 0
    first = min(r.short_window for r in records)
    last = max(r.short_window for r in records)
    done = {r.path: r.short_window for r in records if r.status == 200}
    windows = [done.get(DETAIL_PATH.format(i), last + 1) for i in activity_ids]
    return max(windows, default=first) - first + 1


def case_result(name: str, log: Sequence[RequestRecord], start_s: float, end_s: float,
                newest_ids: Sequence[int]) -> CaseResult:
    """One case's figures from the simulator's log of our requests (the app's others excluded)."""
    ours = [r for r in log if r.counted and not r.others]
    windows = {r.short_window for r in ours}
    return CaseResult(name=name, sent=len(ours), rejected=sum(r.status == 429 for r in ours),
                      windows=max(windows) - min(windows) + 1 if windows else 0, wall_s=end_s - start_s,
                      worst_share=worst_share(ours), newest=len(newest_ids),
                      newest_windows=windows_until_done(ours, newest_ids))


# -- the two cases ------------------------------------------------------------------------------------------
def simulator_settings(bench: Bench) -> SimulatorSettings:
    limits = bench.limits
    return SimulatorSettings(
        seed=SEED, athletes=len(bench.sizes), athlete_activities=bench.sizes,
        short_limit=limits.short, daily_limit=limits.daily,
        overall_short_limit=2 * limits.short, overall_daily_limit=2 * limits.daily,
        short_window_s=limits.short_window_s, daily_window_s=limits.daily_window_s,
    )


def connected_config(simulator: Simulator, data_dir: Path) -> Config:
    """A data_dir with every simulated athlete connected, as `bulkfetch auth` leaves it, and no seed
    token in the config (it would stand for none of them)."""
    roster = Roster(data_dir)
    for athlete_id in simulator.athlete_ids:
        roster.connect(Tokens(refresh_token=simulator.refresh_token_of(athlete_id), athlete_id=athlete_id))
    return with_overrides(demo_config(simulator, data_dir), strava={"refresh_token": ""},
                          fetch={"max_rate_per_s": MAX_RATE_PER_S})


async def start_of_a_window(bench: Bench) -> None:
    """Sleep to a short window's start (the daily window's when the run needs more than a day's
    quota), so that both cases get the same first window."""
    limits = bench.limits
    length = limits.daily_window_s if bench.needed > limits.daily else limits.short_window_s
    now = time.time()
    await asyncio.sleep(next_boundary(now, length) - now)


async def run_case(bench: Bench, data_dir: Path, *, fair: bool) -> CaseResult:
    events = TimingEvents()
    async with Simulator(simulator_settings(bench)) as simulator:
        config = connected_config(simulator, data_dir)
        ids = simulator.athlete_ids  # biggest first: the order of bench.sizes
        runs = [None] if fair else [frozenset({athlete_id}) for athlete_id in ids]
        await start_of_a_window(bench)
        # Bounded: twice the optimum from now, plus slack for a slow machine.
        deadline = time.time() + 2 * (optimal_finish_s(bench.needed, time.time(), bench.limits) - time.time()) + 30
        summaries: list[FetchSummary] = []
        for athletes in runs:
            options = FetchOptions(ledger_dir=data_dir / "quota", athletes=athletes)
            summaries.append(await asyncio.wait_for(fetch_history(config, options, events),
                                                    timeout=deadline - time.time()))
        log = list(simulator.request_log)
        newest = simulator.activity_ids(athlete_id=ids[-1])[:NEWEST]
    fetched, failed = sum(s.fetched for s in summaries), sum(len(s.failed) for s in summaries)
    if fetched != sum(bench.sizes) or failed:
        raise RuntimeError(f"fetched {fetched} of {sum(bench.sizes)} details ({failed} failed; "
                           f"warnings: {events.warnings})")
    start_s = min(r.time for r in log if r.counted and not r.others)
    name = "fair: one run for all" if fair else "baseline: one athlete after another"
    return case_result(name, log, start_s, events.last_detail_s, newest)


def run(args: argparse.Namespace) -> Verdict:
    """The baseline, then the fair run, each against its own simulator and a fresh data_dir (removed afterwards)."""
    bench = Bench(tuple(args.athletes), Limits(args.short_limit, args.short_window, args.daily_limit,
                                               args.daily_window))
    work = Path(tempfile.mkdtemp(prefix="bulkfetch-bench-fairness-"))
    try:
        baseline = asyncio.run(run_case(bench, work / "baseline", fair=False))
        fair = asyncio.run(run_case(bench, work / "fair", fair=True))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Verdict(bench, baseline, fair, SMOKE_RATIO_TARGET if args.smoke else RATIO_TARGET)


# -- output ----------------------------------------------------------------------------------------------------
LEGEND = ("worst share margin: the lowest, over the short windows, of an athlete's requests minus floor(W'/k) - 1,"
          " among the k athletes with work left after the window, who sent W' requests in it; windows are counted"
          " from the run's first request's (window 0)")


def share_text(share: WindowShare | None, names: dict[int, str]) -> str:
    if share is None:
        return "-"
    counts = " ".join(f"{names.get(a, a)} {n}" for a, n in sorted(share.counts.items()))
    return (f"{share.margin:+d} (window {share.window}: {names.get(share.athlete_id, share.athlete_id)} got"
            f" {share.got}, floor {share.floor}; {counts})")


def render(verdict: Verdict) -> str:
    """The cases side by side, then each condition against its target."""
    bench, fair, baseline = verdict.bench, verdict.fair, verdict.baseline
    names = athlete_names(bench)
    newest = f"smallest's newest {fair.newest} done in (windows)"
    rows = [(c.name, f"{c.sent:,}", str(c.rejected), str(c.windows), share_text(c.worst_share, names),
             str(c.newest_windows), f"{c.wall_s:.2f}") for c in (baseline, fair)]
    cases = markdown_table(("case", "sent", "429s", "windows", "worst share margin", newest, "wall s"), rows)

    def verdict_cell(met: bool) -> str:
        return "met" if met else "MISSED"

    margin = fair.worst_share.margin if fair.worst_share else 0
    conditions = markdown_table(("condition (fair run)", "measured", "target", "result"), [
        ("1. worst share margin, floor(W'/k) - 1", f"{margin:+d}", ">= +0", verdict_cell(verdict.shares_met)),
        (f"2. smallest's newest {fair.newest} done within", f"{fair.newest_windows} windows",
         f"<= {verdict.newest_window_limit}", verdict_cell(verdict.newest_met)),
        ("3. wall time / baseline", f"{verdict.ratio:.4f}", f"<= {verdict.ratio_target:g}",
         verdict_cell(verdict.ratio_met)),
        ("429s (both cases)", str(fair.rejected + baseline.rejected), "0", verdict_cell(verdict.no_429s)),
    ])
    return f"{cases}\n\n{conditions}"


def athlete_names(bench: Bench) -> dict[int, str]:
    """Athlete ids as the table names them: by size, biggest first (the simulator numbers them in that order)."""
    first = simulator_settings(bench).athlete_id
    return {first + index: f"{size:,}-activity" for index, size in enumerate(bench.sizes)}


def sizes(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 1000,200,30 (got {text!r})") from None
    if len(values) < 2 or min(values) < 1 or values != sorted(values, reverse=True):
        raise argparse.ArgumentTypeError(f"expected two or more sizes >= 1, biggest first (got {text!r})")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--athletes", type=sizes, default=[1000, 200, 30],
                        help="history sizes, biggest first (default 1000,200,30)")
    parser.add_argument("--short-limit", type=int, default=100, help="read requests per short window (100)")
    parser.add_argument("--short-window", type=int, default=2, help="short window, seconds (2)")
    parser.add_argument("--daily-limit", type=int, default=100_000,
                        help="read requests per daily window (100,000: out of the way)")
    parser.add_argument("--daily-window", type=int, default=200, help="daily window, seconds (200)")
    parser.add_argument("--smoke", action="store_true", help="tiny histories and 1-second windows, a few seconds")
    args = parser.parse_args(argv)
    if args.smoke:
        args.athletes, args.short_limit, args.short_window, args.daily_window = [36, 12, 3], 20, 1, 100
    return args


def heading(args: argparse.Namespace) -> str:
    return (f"bench/fairness.py: athletes of {', '.join(f'{n:,}' for n in args.athletes)} activities, read limits "
            f"{args.short_limit} per {args.short_window} s and {args.daily_limit:,} per {args.daily_window} s, "
            f"concurrency 8, max_rate_per_s {MAX_RATE_PER_S:g}\nmachine: {machine()}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(heading(args))  # before the run: it takes a minute
    verdict = run(args)
    print(f"{render(verdict)}\n{LEGEND}")
    return 0 if verdict.met else 1


if __name__ == "__main__":
    sys.exit(main())
