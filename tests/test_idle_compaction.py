"""Compaction during long quota waits: Parquet while the fetch runs, the next window on time, a killed
child harmless (every file whole, the next compaction finishes), and no child outliving its fetch."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from bench.compact import ATHLETE_ID, write_synthetic_store
from bulkfetch.cli import main
from bulkfetch.compact import compact
from bulkfetch.idle_compaction import IdleCompactor
from bulkfetch.pids import alive
from bulkfetch.scheduler import WaitInfo
from bulkfetch.schema import TABLES
from bulkfetch.simulator import SimulatorSettings, SimulatorThread
from bulkfetch.store import RawStore
from tests.test_fetch import api_records, setup
from tests.test_lifecycle import descendants, spawn, wait_until

WINDOW_S = 2
# The scheduler sends a window's first request BOUNDARY_EPSILON_S (0.05 s) after its boundary; this leaves
# room for a busy machine, and is far below what a compaction holding the event loop would cost.
ON_TIME_S = 0.3
STARTED = "compacting what was fetched so far"
FINISHED = "idle compaction finished"
STOPPED = "idle compaction stopped"


def dataset_rows(parquet_dir: Path) -> dict[str, list[tuple]]:
    """Every table's rows as DuckDB reads the hive-partitioned dataset, in a canonical order."""
    with duckdb.connect() as db:
        return {table: db.sql(f"SELECT * FROM read_parquet('{parquet_dir}/{table}/**/*.parquet', "
                              "hive_partitioning = true) ORDER BY ALL").fetchall()
                for table in TABLES if (parquet_dir / table).is_dir()}


def partition_files(parquet_dir: Path) -> list[Path]:
    return sorted(parquet_dir.rglob("*.parquet"))


def first_time(fetch: subprocess.Popen, condition: Callable[[], bool], timeout_s: float = 60) -> float | None:
    """Poll `condition` while `fetch` runs: when it first held (time.time()), or None."""
    deadline = time.monotonic() + timeout_s
    while fetch.poll() is None and time.monotonic() < deadline:
        if condition():
            return time.time()
        time.sleep(0.005)
    return None


# -- end to end ---------------------------------------------------------------------------------------------
def test_parquet_appears_during_a_quota_wait_and_the_next_window_starts_on_time(tmp_path: Path) -> None:
    settings = SimulatorSettings(activities=70, seed=12, short_limit=25, daily_limit=10_000, short_window_s=WINDOW_S)
    parquet_dir = tmp_path / "data" / "parquet"
    with SimulatorThread(settings) as sim:
        config = setup(tmp_path, sim)
        fetch = spawn(config, "fetch")
        appeared = first_time(fetch, lambda: bool(list(parquet_dir.glob("activities/*/*/part-0.parquet"))))
        _, err = fetch.communicate(timeout=60)
        records = api_records(sim)
    assert fetch.returncode == 0, err
    assert not [r for r in records if r.status == 429]
    assert appeared is not None, "no Parquet while the fetch ran"
    before = [r for r in records if r.time < appeared]
    after = [r for r in records if r.time > appeared]
    assert before and after, "the Parquet came with the run's own compaction, not during a wait"
    assert after[0].short_window > before[-1].short_window  # it came between two windows: in the wait
    starts = {}
    for record in records:
        starts.setdefault(record.short_window, record.time)
    windows = sorted(starts)
    assert len(windows) >= 3
    for window in windows[1:]:  # each window after a wait opens with its first request, on time
        assert starts[window] - window * WINDOW_S < ON_TIME_S, (window, starts[window] - window * WINDOW_S)
    assert STARTED in err and FINISHED in err
    # Only the reporter's lines: the child wrote nothing to the terminal.
    assert all(re.match(r"\d\d:\d\d:\d\d ", line) for line in err.splitlines()), err

    # The run's own compaction finished what the idle ones began: the same as a rebuild from raw.
    compacted = dataset_rows(parquet_dir)
    files = partition_files(parquet_dir)
    assert len(compacted["activities"]) == 70
    assert main(["--config", str(config), "-q", "compact", "--rebuild"]) == 0
    assert partition_files(parquet_dir) == files
    assert dataset_rows(parquet_dir) == compacted


def test_no_compact_compacts_in_no_wait_either(tmp_path: Path) -> None:
    settings = SimulatorSettings(activities=30, seed=13, short_limit=20, daily_limit=10_000, short_window_s=1)
    with SimulatorThread(settings) as sim:
        config = setup(tmp_path, sim)
        assert main(["--config", str(config), "-q", "fetch", "--no-compact"]) == 0
        windows = {r.short_window for r in api_records(sim)}
    assert len(windows) >= 2  # it waited
    assert not (tmp_path / "data" / "parquet").exists()


def test_a_killed_fetch_leaves_no_compaction_running(tmp_path: Path) -> None:
    settings = SimulatorSettings(activities=120, seed=14, short_limit=40, daily_limit=10_000, short_window_s=WINDOW_S)
    with SimulatorThread(settings) as sim:
        fetch = spawn(setup(tmp_path, sim), "fetch")
        children: set[int] = set()  # the fetch's forkserver forks them: two generations below it

        def compacting() -> bool:
            children.update(pid for pid, parent in descendants(fetch.pid).items() if parent != fetch.pid)
            return bool(children)

        seen = first_time(fetch, compacting)
        fetch.kill()  # SIGKILL: nothing of the fetch runs after it
        fetch.communicate(timeout=30)
    assert seen is not None, "no idle compaction ran"
    wait_until(lambda: not any(map(alive, children)), timeout_s=5, what="the idle compaction to end")


# -- the child, killed at any point ---------------------------------------------------------------------
async def idle_compaction(store: RawStore, parquet_dir: Path, *, abandon_when: Callable[[], bool]) -> list[str]:
    """One idle compaction through the compactor's own calls: a long wait starts it, and it ends (is
    abandoned) once `abandon_when()` holds, or when the child is over. What the compactor said."""
    said: list[str] = []
    compactor = IdleCompactor(parquet_dir, lambda: [(store.data_dir, ATHLETE_ID)], 1.0, fetched=lambda: 1,
                              on_info=said.append)
    now = time.time()
    compactor.on_wait(WaitInfo(now + 600, "test", "short"), now)
    deadline = time.monotonic() + 60
    while len(said) < 2 and not abandon_when() and time.monotonic() < deadline:
        await asyncio.sleep(0.002)
    compactor.on_wait(None, time.time())
    compactor.close()
    return said


def once_recorded(store: RawStore, parquet_dir: Path, years: int) -> Callable[[], bool]:
    """Whether the compaction into `parquet_dir` has finished `years` years (its manifest's entries)."""

    def recorded() -> bool:
        manifest = store.read_state("compact") or {}
        if manifest.get("parquet_dir") != str(parquet_dir.resolve()):
            return years == 0
        return sum(bool(entry.get("fingerprints")) for entry in manifest["years"].values()) >= years

    return recorded


def test_a_child_killed_at_any_point_leaves_whole_files_and_the_next_compaction_finishes(tmp_path: Path) -> None:
    store = write_synthetic_store(tmp_path / "data", 40, seed=5, years=(2017, 2022), stream_share=0.5,
                                  stream_points=(100, 1000))
    compact(store, tmp_path / "straight", ATHLETE_ID)
    expected = dataset_rows(tmp_path / "straight")
    said = asyncio.run(idle_compaction(store, tmp_path / "whole", abandon_when=lambda: False))
    assert FINISHED in said[-1]
    assert dataset_rows(tmp_path / "whole") == expected

    for years in (0, 1, 4):  # killed once it has finished that many of the 6 years
        parquet_dir = tmp_path / f"killed-after-{years}"  # another parquet_dir: compacted from nothing
        said = asyncio.run(idle_compaction(store, parquet_dir, abandon_when=once_recorded(store, parquet_dir, years)))
        assert STOPPED in said[-1], years
        for path in partition_files(parquet_dir):
            pq.read_table(path)  # whole: a half-written file would not read
        result = compact(store, parquet_dir, ATHLETE_ID)
        assert dataset_rows(parquet_dir) == expected, years
        assert len(result.skipped_years) >= years and result.written["activities"], years  # it went on


# -- when it starts ---------------------------------------------------------------------------------------------
async def wait_for(said: list[str], count: int) -> None:
    deadline = time.monotonic() + 60
    while len(said) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


def test_it_starts_on_a_long_wait_with_something_new_or_unfinished(tmp_path: Path) -> None:
    store = write_synthetic_store(tmp_path / "data", 30, seed=6, years=(2019, 2021))
    fetched = [1]
    said: list[str] = []

    async def scenario() -> None:
        compactor = IdleCompactor(tmp_path / "parquet", lambda: [(store.data_dir, ATHLETE_ID)], 60.0,
                                  fetched=lambda: fetched[0], on_info=said.append)
        now = time.time()
        compactor.on_wait(WaitInfo(now + 59, "short", "short"), now)  # too short
        compactor.on_wait(None, now)
        assert said == []
        compactor.on_wait(WaitInfo(now + 120, "full", "short"), now)
        compactor.on_wait(WaitInfo(now + 900, "a changed wait", "short"), now)  # the same run goes on
        await wait_for(said, 2)
        assert STARTED in said[0] and FINISHED in said[1] and len(said) == 2
        compactor.on_wait(None, now)
        compactor.on_wait(WaitInfo(now + 120, "full", "short"), now)  # nothing new since: nothing to do
        compactor.on_wait(None, now)
        assert len(said) == 2
        fetched[0] += 1
        compactor.on_wait(WaitInfo(now + 120, "full", "short"), now)
        compactor.on_wait(None, now)  # at once: abandoned
        await wait_for(said, 4)
        assert STARTED in said[2] and STOPPED in said[3]
        compactor.on_wait(WaitInfo(now + 120, "full", "short"), now)  # nothing new, but unfinished
        await wait_for(said, 6)
        assert STARTED in said[4] and FINISHED in said[5]
        compactor.close()

    asyncio.run(scenario())
    assert dataset_rows(tmp_path / "parquet")["activities"]
