"""Chaos: `fetch` as a real process against a faulty simulator, SIGKILLed at random moments, then let finish.

Faults on: 5xx, dropped connections, truncated JSON, latency spikes, detail 404s, access tokens that expire
within seconds (so refresh tokens rotate all along), another process spending part of every window, and
activities appearing and vanishing while the list is paged. Afterwards the Parquet must equal that of a
clean run against the same final history, and nothing may have been fetched twice, overspent or lost.

Seeded: the seed is printed; `BULKFETCH_CHAOS_SEED=<seed> pytest tests/test_chaos.py` replays the same
faults and kill moments (the simulator draws every fault from the seed; timing still varies a little).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pyarrow.parquet as pq

from bulkfetch.cli import main
from bulkfetch.schema import TABLES
from bulkfetch.simulator import SimulatorSettings, SimulatorThread
from tests.conftest import athlete_store, cli_env, simulator_config_text
from tests.test_fetch import api_records, detail_gets, kill_outside_token_exchange

KILLS = 4
FAULTS = dict(error_rate=0.06, drop_rate=0.03, truncate_rate=0.03, latency_s=0.002, latency_jitter_s=0.008,
              spike_rate=0.03, spike_s=0.4, other_usage_per_window=5, mutate_rate=0.3)
NO_FAULTS = {name: 0 for name in FAULTS}


def chaos_seed() -> int:
    seed = int(os.environ.get("BULKFETCH_CHAOS_SEED") or random.SystemRandom().randrange(1, 10**6))
    print(f"chaos seed {seed} (replay: BULKFETCH_CHAOS_SEED={seed} pytest tests/test_chaos.py)")
    return seed


def spawn_fetch(config: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bulkfetch", "--config", str(config), "fetch"],
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stored_refresh_token(data_dir: Path, seed_token: str) -> str:
    try:
        return json.loads((athlete_store(data_dir).auth_dir / "tokens.json").read_bytes())["refresh_token"]
    except FileNotFoundError:
        return seed_token


def parquet_rows(parquet_dir: Path, table: str) -> list[bytes]:
    """A table's rows (any order, partition column included) as canonical JSON, sorted."""
    folder = parquet_dir / table
    if not folder.exists():
        return []
    rows = pq.read_table(folder, partitioning="hive").to_pylist()
    return sorted(orjson.dumps(row, option=orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME,
                               default=str) for row in rows)


def restart_windows(sim, starts: list[int]) -> set[int]:
    """Short windows in which requests of more than one run arrived."""
    runs_by_window: dict[int, set[int]] = {}
    for place, record in enumerate(sim.request_log):
        if record.counted and not record.others:
            runs_by_window.setdefault(record.short_window, set()).add(sum(1 for s in starts if s <= place))
    return {window for window, runs in runs_by_window.items() if len(runs) > 1}


def window_report(sim, starts: list[int]) -> str:
    """Per short window with a 429: which run sent what (ours by status, the other process's count)."""
    lines = []
    bad = sorted({r.short_window for r in sim.request_log if r.status == 429})
    for window in bad:
        lines.append(f"short window {window}:")
        for place, r in enumerate(sim.request_log):
            if r.short_window == window and r.counted:
                run = sum(1 for s in starts if s <= place)
                lines.append(f"  run {run} t={r.time % 100:.3f} {r.path} {r.status}{' (other)' if r.others else ''}")
    return "\n".join(lines)


def test_sigkill_chaos_then_finish_equals_a_clean_run(tmp_path: Path) -> None:
    seed = chaos_seed()
    rng = random.Random(seed)
    settings = SimulatorSettings(activities=100, seed=seed, short_limit=40, daily_limit=100_000, short_window_s=2,
                                 missing_rate=0.05, access_token_lifetime_s=1.5, **FAULTS)
    with SimulatorThread(settings) as sim:
        data_dir = tmp_path / "chaos"
        config = tmp_path / "chaos.toml"
        seed_token = sim.current_refresh_token
        config.write_text(simulator_config_text(sim, data_dir, fetch={
            "per_page": 20, "concurrency": 4, "refresh_margin_s": 0, "max_attempts": 4, "request_timeout_s": 3}))
        store = athlete_store(data_dir)
        refetched: dict[int, set[int]] = {}
        outcomes: list[int] = []
        progress: list[int] = []  # details on disk after each run

        starts: list[int] = []  # request_log position at each run's start

        def run(kill_after_s: float | None) -> None:
            on_disk = store.detail_ids()
            mark = len(sim.request_log)
            starts.append(mark)
            process = spawn_fetch(config)
            if kill_after_s is None:
                out, err = process.communicate(timeout=60)
                assert process.returncode in (0, 75), err
                outcomes.append(process.returncode)
            else:
                try:
                    process.wait(kill_after_s)
                except subprocess.TimeoutExpired:
                    kill_outside_token_exchange(sim, process, lambda: stored_refresh_token(data_dir, seed_token))
                out, err = process.communicate(timeout=30)
                assert process.returncode in (0, 75, -signal.SIGKILL), err
                outcomes.append(process.returncode)
            assert "Traceback" not in err, err
            progress.append(len(store.detail_ids()) if store.detail_dir.exists() else 0)
            got = {int(p.rsplit("/", 1)[1]) for p in detail_gets(api_records(sim, since=mark))}
            refetched[len(outcomes)] = got & on_disk

        for _ in range(KILLS):
            run(kill_after_s=rng.uniform(0.5, 2.5))
        sim.set_settings(mutate_rate=0.0)  # the history stops changing; every other fault stays on
        for _ in range(8):
            run(kill_after_s=None)
            if outcomes[-1] == 0:
                break
        # The listing that run finished may have been stitched from killed runs' pages while activities
        # vanished: a deletion during a listing is seen by the next listing (as 'unlisted'). So one more
        # rerun, as a person would do the next day; it must find nothing new to fetch.
        run(kill_after_s=None)
        print(f"chaos exit codes {outcomes}, details on disk after each run {progress}")
        assert outcomes[-2:] == [0, 0], outcomes
        assert progress[-1] == progress[-2]
        assert outcomes.count(-signal.SIGKILL) >= 2, f"too few runs were killed to test anything: {outcomes}"

        # No completed detail was fetched again by a later run (no edits happen, so none changed).
        assert not any(refetched.values()), refetched
        # No 429 caused by a restart: no window that two runs shared saw a 429 (a restarted run must know
        # what its killed predecessor spent). A 429 inside one run's window is the quota ledger's (the other
        # process spends first in each window); it is printed, and test_fetch asserts that case on its own.
        shared = restart_windows(sim, starts)
        assert not [r for r in sim.request_log if r.status == 429 and r.short_window in shared], \
            window_report(sim, starts)
        if any(r.status == 429 for r in sim.request_log):
            print("429 within a single run's window:\n" + window_report(sim, starts))
        # The refresh-token chain held: never rejected (503: the token endpoint's outage each kill is made
        # under, see kill_outside_token_exchange), and the store holds the live token.
        assert not [r for r in sim.request_log if r.path.startswith("/oauth") and r.status not in (200, 503)]
        assert stored_refresh_token(data_dir, seed_token) == sim.current_refresh_token
        # Every raw file parses, nothing temporary is left.
        assert not [p for p in data_dir.rglob("*") if ".tmp-" in p.name]
        for path in data_dir.rglob("*.json"):
            orjson.loads(path.read_bytes())

        # A clean run against the same, now final, history (missing_rate stays: those 404s are the history).
        sim.set_settings(**NO_FAULTS)
        clean_dir = tmp_path / "clean"
        clean_config = tmp_path / "clean.toml"
        clean_config.write_text(simulator_config_text(sim, clean_dir, fetch={"per_page": 50}))
        assert main(["--config", str(clean_config), "-q", "fetch"]) == 0

    assert set(athlete_store(clean_dir).catalog()) == set(store.catalog())
    for table in TABLES:
        chaos_rows, clean_rows = parquet_rows(data_dir / "parquet", table), parquet_rows(clean_dir / "parquet", table)
        assert chaos_rows == clean_rows, table
    activities = pq.read_table(data_dir / "parquet" / "activities", partitioning="hive").column("id").to_pylist()
    assert len(activities) == len(set(activities)) == len(store.catalog())
