"""Benchmark: unthrottled detail fetching, bulkfetch against the sequential `requests` loop of the tutorials.

    python bench/throughput.py                       # 3,000 activities, 50 ms and 0 ms server latency
    python bench/throughput.py --latency 0.05 --jitter 0.01   # answers 45-55 ms late instead of exactly 50
    python bench/throughput.py --profile             # + one more bulkfetch run under cProfile (last latency)
    python bench/throughput.py --smoke               # a few seconds (the test suite runs this)

The embedded simulator serves from a child process on 127.0.0.1 (the "network": its JSON encoding and
the latency sleep do not share our interpreter's GIL, so the numbers and the profile are the client's),
with `rate_limits=False`: nothing is rejected and the headers carry limits of 10^9. bulkfetch's config
does not bind either: read limits of 10^9 and `max_rate_per_s` 10^9 (said in the output). For each
latency, same server, same run:

1. bulkfetch: `fetch_history` into a fresh data_dir at the default concurrency (8). Details per second
   = details fetched / (last detail written - details planned): the listing is not in it.
2. baseline: what users write today from the tutorials: refresh the token, then for each id one
   `requests.get(.../activities/{id})` (no Session: a new connection each time), `r.json()`, and
   `json.dump` to a file; timed over the first `--baseline-details` ids (a sequential loop's rate is
   steady, so a sample suffices; the full history would take minutes at 50 ms).

3. aiohttp floor: `concurrency` bare aiohttp workers that GET and read the first 1,000 details, nothing
   else: what this server, loopback and event loop allow. The simulator builds every detail before it
   serves (`prepare_details`), so its one thread only sends bytes; the floor sits near 0.95 of the bound
   at 50 ms; `--jitter 0.01` (mean kept) varies the latency.

Physical bound for bulkfetch: concurrency / latency details per second (infinite at 0 ms). Exit status 1
when bulkfetch reaches less than 0.9 of it at 50 ms, or is not faster than the baseline there.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import math
import multiprocessing
import os
import platform
import pstats
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import requests

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.events import TimingEvents  # noqa: E402 - after the path fix
from bulkfetch.config import FetchConfig, with_overrides  # noqa: E402
from bulkfetch.demo import demo_config  # noqa: E402
from bulkfetch.pipeline import FetchOptions  # noqa: E402
from bulkfetch.run import fetch_history  # noqa: E402
from bulkfetch.simulator import SimulatorSettings, SimulatorThread  # noqa: E402

SEED = 11
UNBOUND = 10**9  # limits and rate no run gets near
BOUND_TARGET = 0.9
FLOOR_DETAILS = 1000  # the aiohttp floor's sample
SERVER_START_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 30.0


# -- the server, in a child process ---------------------------------------------------------------------------
def _serve(settings: SimulatorSettings, connection: Any) -> None:
    """Child process: run the simulator on its own thread; answer 'token' with the current refresh token,
    stop on 'stop' (or when the parent goes away)."""
    with SimulatorThread(settings) as simulator:
        simulator.prepare_details()  # before serving: the server's loop is not yet busy
        connection.send((simulator.base_url, simulator.api_url, simulator.oauth_url))
        while connection.poll(3600):
            message = connection.recv()
            if message == "stop":
                break
            if message == "token":
                connection.send(simulator.current_refresh_token)


class RemoteSimulator:
    """The simulator in a child process, with the attributes `bulkfetch.demo.demo_config` reads."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        context = multiprocessing.get_context("spawn")
        self._connection, child_end = context.Pipe()
        self._process = context.Process(target=_serve, args=(settings, child_end), daemon=True)
        self.base_url = self.api_url = self.oauth_url = ""

    def __enter__(self) -> RemoteSimulator:
        self._process.start()
        if not self._connection.poll(SERVER_START_TIMEOUT_S):
            self._process.kill()
            raise RuntimeError("the simulator process did not start")
        try:
            self.base_url, self.api_url, self.oauth_url = self._connection.recv()
        except EOFError:
            raise RuntimeError("the simulator process exited before it served") from None
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._connection.send("stop")
        except OSError:
            pass
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)

    @property
    def current_refresh_token(self) -> str:
        self._connection.send("token")
        if not self._connection.poll(10):
            raise RuntimeError("the simulator process did not answer")
        return self._connection.recv()


# -- bulkfetch --------------------------------------------------------------------------------------------------
def bulkfetch_config(server: RemoteSimulator, data_dir: Path) -> Any:
    """The demo's config for this server, with limits and rate that never bind."""
    return with_overrides(demo_config(server, data_dir),  # type: ignore[arg-type]  # duck-typed Simulator
                          limits={"short_requests": UNBOUND, "daily_requests": UNBOUND},
                          fetch={"max_rate_per_s": float(UNBOUND)})


def run_bulkfetch(server: RemoteSimulator, data_dir: Path, activities: int, timeout_s: float,
                  profile: cProfile.Profile | None = None) -> tuple[float, float]:
    """(details per second, seconds of the detail phase) of one fresh fetch."""
    events = TimingEvents()
    config = bulkfetch_config(server, data_dir)

    async def fetch() -> Any:
        return await asyncio.wait_for(fetch_history(config, FetchOptions(ledger_dir=data_dir), events),
                                      timeout=timeout_s)

    if profile is not None:
        profile.enable()
    try:
        summary = asyncio.run(fetch())
    finally:
        if profile is not None:
            profile.disable()
    if summary.fetched != activities or summary.failed:
        raise RuntimeError(f"bulkfetch fetched {summary.fetched} of {activities} details "
                           f"({len(summary.failed)} failed; warnings: {events.warnings})")
    elapsed_s = events.last_detail_s - events.planned_s
    return summary.fetched / elapsed_s, elapsed_s


# -- the baseline and the floor --------------------------------------------------------------------------------
def tutorial_session(server: RemoteSimulator, count: int) -> tuple[str, list[int]]:
    """(access token, the newest `count` activity ids) the way the tutorials get them: a refresh POST, then
    list pages by number."""
    token = requests.post(f"{server.oauth_url}/token", timeout=REQUEST_TIMEOUT_S, data={
        "client_id": server.settings.client_id, "client_secret": server.settings.client_secret,
        "grant_type": "refresh_token", "refresh_token": server.current_refresh_token}).json()["access_token"]
    ids: list[int] = []
    for page in range(1, 1000):  # bounded: 200,000 activities
        batch = requests.get(f"{server.api_url}/athlete/activities", timeout=REQUEST_TIMEOUT_S,
                             headers={"Authorization": f"Bearer {token}"},
                             params={"per_page": 200, "page": page}).json()
        ids += [activity["id"] for activity in batch]
        if len(ids) >= count or not batch:
            break
    return token, ids[:count]


def run_baseline(server: RemoteSimulator, token: str, ids: list[int], out_dir: Path, deadline_s: float) -> float:
    """Details per second of the tutorials' loop, timed over the details only."""
    out_dir.mkdir(parents=True, exist_ok=True)
    headers = {"Authorization": f"Bearer {token}"}
    started = time.perf_counter()
    for activity_id in ids:
        response = requests.get(f"{server.api_url}/activities/{activity_id}", headers=headers,
                                timeout=REQUEST_TIMEOUT_S)
        response.raise_for_status()
        with open(out_dir / f"{activity_id}.json", "w", encoding="utf-8") as file:
            json.dump(response.json(), file)
        if time.perf_counter() - started > deadline_s:
            raise RuntimeError(f"baseline slower than {deadline_s:g} s for {len(ids)} details")
    return len(ids) / (time.perf_counter() - started)


def run_floor(server: RemoteSimulator, token: str, ids: list[int], concurrency: int, timeout_s: float) -> float:
    """Details per second of the least a client can do at this concurrency: `concurrency` aiohttp workers
    that GET and read each body, nothing else (no quota, no parse, no write). What this server, loopback
    and aiohttp allow; bulkfetch's distance to it is ours."""

    async def fetch_all() -> float:
        queue = list(reversed(ids))
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency + 2)) as session:

            async def work() -> None:
                while queue:
                    async with session.get(f"{server.api_url}/activities/{queue.pop()}", headers=headers) as response:
                        response.raise_for_status()
                        await response.read()

            started = time.perf_counter()
            await asyncio.wait_for(asyncio.gather(*(work() for _ in range(concurrency))), timeout=timeout_s)
            return len(ids) / (time.perf_counter() - started)

    return asyncio.run(fetch_all())


# -- one latency --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    latency_s: float
    jitter_s: float
    activities: int
    concurrency: int
    bulkfetch_per_s: float
    bulkfetch_s: float
    baseline_per_s: float
    baseline_details: int
    floor_per_s: float
    floor_details: int

    @property
    def bound_per_s(self) -> float:
        return self.concurrency / self.latency_s if self.latency_s > 0 else math.inf

    @property
    def of_bound(self) -> float:
        return self.bulkfetch_per_s / self.bound_per_s

    @property
    def of_floor(self) -> float:
        return self.bulkfetch_per_s / self.floor_per_s

    @property
    def speedup(self) -> float:
        return self.bulkfetch_per_s / self.baseline_per_s

    @property
    def met(self) -> bool:
        if self.latency_s < 0.01:
            return True  # no physical bound to compare with: the profile explains the ceiling
        return self.of_bound >= BOUND_TARGET and self.speedup > 1


def server_settings(latency_s: float, activities: int, jitter_s: float = 0.0) -> SimulatorSettings:
    """No quota; each API answer waits latency_s - jitter_s / 2 + uniform(0, jitter_s): a mean of latency_s."""
    return SimulatorSettings(seed=SEED, activities=activities, rate_limits=False,
                             latency_s=max(0.0, latency_s - jitter_s / 2), latency_jitter_s=jitter_s)


def timeout_for(latency_s: float, activities: int) -> float:
    return 60 + activities * (latency_s + 0.01)


def measure(latency_s: float, jitter_s: float, activities: int, baseline_details: int, work: Path) -> Row:
    timeout_s = timeout_for(latency_s, activities)
    concurrency = FetchConfig().concurrency
    with RemoteSimulator(server_settings(latency_s, activities, jitter_s)) as server:
        per_s, elapsed_s = run_bulkfetch(server, work / "bulkfetch", activities, timeout_s)
        token, ids = tutorial_session(server, max(baseline_details, FLOOR_DETAILS))
        baseline_ids = ids[:baseline_details]
        baseline_per_s = run_baseline(server, token, baseline_ids, work / "baseline", deadline_s=timeout_s)
        floor_ids = ids[:FLOOR_DETAILS]
        floor_per_s = run_floor(server, token, floor_ids, concurrency, timeout_s)
    return Row(latency_s, jitter_s, activities, concurrency, per_s, elapsed_s, baseline_per_s, len(baseline_ids),
               floor_per_s, len(floor_ids))


def profiled_run(latency_s: float, jitter_s: float, activities: int, work: Path) -> cProfile.Profile:
    """One more bulkfetch run, under cProfile (its own rate is not reported: the profiler slows it)."""
    profile = cProfile.Profile()
    with RemoteSimulator(server_settings(latency_s, activities, jitter_s)) as server:
        run_bulkfetch(server, work / "profiled", activities, timeout_for(latency_s, activities) * 3, profile)
    return profile


# -- output ---------------------------------------------------------------------------------------------------------
def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    return (f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}")


def render(rows: list[Row]) -> str:
    headers = ("latency", "activities", "bulkfetch details/s", "baseline details/s", "speedup",
               "bound (concurrency/latency)", "of bound", "aiohttp floor details/s", "of floor", "target")
    cells = []
    for r in rows:
        bound = f"{r.bound_per_s:,.0f}/s" if math.isfinite(r.bound_per_s) else "none"
        of_bound = f"{r.of_bound:.3f}" if math.isfinite(r.bound_per_s) else "n/a"
        target = (f">= {BOUND_TARGET:g} of bound {'met' if r.met else 'MISSED'}" if r.latency_s >= 0.01
                  else "see profile")
        latency = f"{r.latency_s * 1000:g} ms" + (f" ±{r.jitter_s * 500:g}" if r.jitter_s else "")
        cells.append((latency, f"{r.activities:,}", f"{r.bulkfetch_per_s:,.1f}",
                      f"{r.baseline_per_s:,.1f} ({r.baseline_details:,})", f"{r.speedup:.1f}x", bound, of_bound,
                      f"{r.floor_per_s:,.1f} ({r.floor_details:,})", f"{r.of_floor:.3f}", target))
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]

    def line(row: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.rjust(w) for c, w in zip(row, widths)) + " |"

    separator = "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|"
    return "\n".join([line(headers), separator, *(line(c) for c in cells)])


CATEGORIES = (  # (label, substrings of "file:function"), first match wins
    ("file writes (atomic_write: open/write/fsync/replace)", ("store.py", "posix.fsync", "posix.replace",
                                                              "posix.open", "posix.write", "posix.close",
                                                              "token_hex", "pathlib")),
    ("JSON parse (orjson.loads)", ("orjson.loads",)),
    ("quota ledger (quota.py, shared_ledger.py, ledger_file.py, its flock)",
     ("quota.py", "shared_ledger.py", "ledger_file.py", "fcntl.flock")),
    ("scheduler + aiolimiter", ("scheduler.py", "aiolimiter")),
    ("HTTP client (aiohttp, yarl, multidict)", ("aiohttp", "yarl", "multidict", "http_parser")),
    ("waiting for the server (epoll)", ("poll' of 'select", "select.epoll")),
    ("event loop (asyncio)", ("asyncio",)),
    ("pipeline/client/plan/auth", ("pipeline.py", "client.py", "plan.py", "auth.py", "token_refresh.py")),
)


def profile_report(profile: cProfile.Profile, top: int = 20) -> str:
    """Own time (tottime) by category, then the top functions by own time."""
    stats = pstats.Stats(profile)
    total = sum(entry[2] for entry in stats.stats.values())  # type: ignore[attr-defined]
    by_category: dict[str, float] = {}
    functions = []
    for (filename, line, name), (_, calls, own_s, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        key = f"{filename}:{line}({name})"
        label = next((label for label, needles in CATEGORIES if any(n in key for n in needles)), "other")
        by_category[label] = by_category.get(label, 0.0) + own_s
        functions.append((own_s, calls, key))
    lines = [f"profile of the bulkfetch run: {total:.2f} s of own time in all functions"]
    for label, seconds in sorted(by_category.items(), key=lambda item: -item[1]):
        lines.append(f"  {seconds:7.3f} s  {seconds / total:6.1%}  {label}")
    lines.append(f"top {top} functions by own time:")
    for own_s, calls, key in sorted(functions, reverse=True)[:top]:
        lines.append(f"  {own_s:7.3f} s  {calls:>8,} calls  {key.replace(str(REPO) + os.sep, '')}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--activities", type=int, default=3000, help="history size (default 3,000)")
    parser.add_argument("--latency", type=float, nargs="+", default=[0.05, 0.0],
                        help="server latency in seconds, one row each (default 0.05 0)")
    parser.add_argument("--baseline-details", type=int, default=300,
                        help="details the sequential baseline fetches (default 300)")
    parser.add_argument("--jitter", type=float, default=0.0,
                        help="spread of the latency in seconds, mean kept (default 0: every answer exactly --latency)")
    parser.add_argument("--profile", action="store_true",
                        help="one more bulkfetch run under cProfile, at the last latency")
    parser.add_argument("--smoke", action="store_true", help="tiny history, a few seconds")
    args = parser.parse_args(argv)
    if args.smoke:
        args.activities, args.baseline_details = 80, 20
    return args


def run(args: argparse.Namespace) -> tuple[list[Row], cProfile.Profile | None]:
    """One row per latency (and the profile of one more run with --profile); every server is stopped."""
    rows = []
    profile: cProfile.Profile | None = None
    work = Path(tempfile.mkdtemp(prefix="bulkfetch-bench-throughput-"))
    try:
        for number, latency_s in enumerate(args.latency):
            rows.append(measure(latency_s, args.jitter, args.activities, args.baseline_details, work / str(number)))
        if args.profile:
            profile = profiled_run(args.latency[-1], args.jitter, args.activities, work / "profile")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows, profile


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"bench/throughput.py: {args.activities:,} activities, simulator without quota (rate_limits=False) in a "
          f"child process, bulkfetch read limits and max_rate_per_s {UNBOUND:.0e} (not binding), "
          f"concurrency {FetchConfig().concurrency}")
    print(f"machine: {machine()}")
    rows, profile = run(args)
    print(render(rows))
    print("speedup = bulkfetch / baseline details per second; (n) = details that reference fetched; aiohttp floor ="
          f" {FetchConfig().concurrency} aiohttp workers that only GET and read, the most this server and loop allow")
    if profile is not None:
        print(profile_report(profile))
    return 0 if all(r.met for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
