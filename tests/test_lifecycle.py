"""How runs start and end as processes: the data_dir lock and who sweeps, signals during compaction and
after an interrupted fetch, child processes, and the log's last line. Real CLI processes throughout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import bulkfetch
from bench.compact import write_synthetic_store
from bulkfetch.cli import main
from bulkfetch.compact import MANIFEST, SpilledSummaries, partition_entries
from bulkfetch.pids import alive
from bulkfetch.simulator import SimulatorSettings, SimulatorThread
from bulkfetch.store import RawStore
from tests.conftest import athlete_store, cli_env, run_cli, simulator_config_text
from tests.test_compact import add_listing


def spawn(config: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bulkfetch", "--config", str(config), *args],
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def wait_until(condition: Callable[[], bool], timeout_s: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def descendants(pid: int) -> dict[int, int]:
    """Every live process below `pid` (children, their children, ...) and its parent, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found: dict[int, int] = {}
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - set(found)
        found.update({child: parents[child] for child in frontier})
    return found


def error_line(stderr: str) -> str:
    """The one line a run that failed ends its stderr with, without the 'bulkfetch: ' prefix."""
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("bulkfetch: "), stderr
    return last.removeprefix("bulkfetch: ")


def log_lines(data_dir: Path) -> list[str]:
    return (data_dir / "bulkfetch.log").read_text().splitlines()


def snapshot(parquet_dir: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(parquet_dir)): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in parquet_dir.rglob("*") if p.is_file()}


def tables(parquet_dir: Path) -> dict[str, object]:
    return {str(p.relative_to(parquet_dir)): pq.read_table(p) for p in parquet_dir.rglob("*.parquet")}


def big_store(data_dir: Path, years: tuple[int, int]) -> RawStore:
    """Activities with hour-long streams: over PARALLEL_MIN_BYTES (a worker process is used: it takes whole
    years if `years` are two, a year's stream files otherwise) and a few seconds of compaction, written
    in a fraction of a second."""
    return write_synthetic_store(data_dir, 100, seed=21, years=years, stream_share=1.0,
                                 stream_points=(3000, 3000), stream_templates=2)


# The worker takes whole years, or builds some of one year's stream tables.
SHARES = pytest.mark.parametrize("years", [(2020, 2021), (2020, 2020)], ids=["years", "one-year"])


def wait_for_the_worker(process: subprocess.Popen) -> dict[int, int]:
    """Until `process` has a compaction worker (a grandchild, forked by the forkserver); its family then."""
    family: dict[int, int] = {}

    def worker_started() -> bool:
        family.update(descendants(process.pid))
        return any(parent != process.pid for parent in family.values()) or process.poll() is not None

    wait_until(worker_started, what="the compaction worker")
    return family


def one_at_a_time(tmp_path: Path, sim) -> Path:
    """A config for `sim` that fetches one request at a time (a run slow enough to act on while it runs)."""
    config = tmp_path / "config.toml"
    config.write_text(simulator_config_text(sim, tmp_path / "data", fetch={"concurrency": 1}))
    return config


def storage_config(tmp_path: Path, data_dir: Path) -> Path:
    path = tmp_path / "storage.toml"
    path.write_text(f'[storage]\ndata_dir = "{data_dir}"\n')
    return path


# -- item 2: only the holder of the data_dir lock sweeps -------------------------------------------------
def test_compact_refuses_while_a_fetch_runs_and_nobody_sweeps_its_temporary_files(tmp_path: Path) -> None:
    settings = SimulatorSettings(activities=200, seed=31, latency_s=0.05, short_limit=1000, daily_limit=10000)
    with SimulatorThread(settings) as sim:
        config = one_at_a_time(tmp_path, sim)
        store = athlete_store(tmp_path / "data")
        fetch = spawn(config, "fetch", "--no-compact")
        try:
            wait_until(lambda: store.detail_dir.is_dir() and len(store.detail_ids()) >= 2, what="the fetch")
            # Writes in progress of the running fetch: a rotated token, a detail, a state file.
            in_progress = [store.auth_dir / f".tokens.json.tmp-{fetch.pid}-abcd",
                           store.detail_dir / f".9000000001.json.tmp-{fetch.pid}-abcd",
                           store.state_dir / f".quota.json.tmp-{fetch.pid}-abcd"]
            for path in in_progress:
                path.write_bytes(b'{"half": ')

            compact = run_cli("--config", str(config), "compact", timeout=30)
            assert compact.returncode == 2, compact.stderr
            assert f"another bulkfetch fetch --no-compact (PID {fetch.pid})" in compact.stderr
            assert len(compact.stderr.strip().splitlines()) == 1
            assert "Traceback" not in compact.stderr

            status = run_cli("--config", str(config), "status", timeout=30)
            assert status.returncode == 0, status.stderr
            assert "listed" in status.stdout
            assert all(path.exists() for path in in_progress)
        finally:
            fetch.send_signal(signal.SIGTERM)
            assert fetch.wait(30) == 130
        # The fetch has ended: its leftovers are a killed run's now, and the next holder of the lock sweeps.
        assert run_cli("--config", str(config), "compact", timeout=60).returncode == 0
        assert not any(path.exists() for path in in_progress)


# -- item 9: SIGTERM during compaction --------------------------------------------------------------------
@SHARES
def test_sigterm_during_compaction_exits_130_after_its_worker_and_leaves_whole_files(tmp_path: Path,
                                                                                    years: tuple[int, int]) -> None:
    data_dir = tmp_path / "data"
    big_store(data_dir, years)
    store = athlete_store(data_dir)  # the compaction below moves it to its athlete's folder
    config = storage_config(tmp_path, data_dir)
    parquet_dir = data_dir / "parquet"
    assert run_cli("--config", str(config), "compact", timeout=120).returncode == 0
    old = tables(parquet_dir)
    # Every table changes: the sport type is a column of each.
    add_listing(store, [{**s, "sport_type": "Kayaking"} for s in store.catalog().values()])

    process = spawn(config, "compact", "--rebuild")
    family = wait_for_the_worker(process)
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    workers = [pid for pid, parent in family.items() if parent != process.pid]  # forked by the forkserver
    assert workers and not any(alive(pid) for pid in workers), "a worker outlived the command"
    assert error_line(stderr).startswith("compaction stopped") and "Traceback" not in stderr
    assert log_lines(data_dir)[-1].endswith("exit 130: " + error_line(stderr))
    # The forkserver and the resource tracker end as soon as they see this process gone.
    wait_until(lambda: not any(alive(pid) for pid in family), timeout_s=5, what="the children to exit")

    after_exit = snapshot(parquet_dir)
    time.sleep(1.0)
    assert snapshot(parquet_dir) == after_exit  # nothing is committed after the command has exited
    assert not [name for name in after_exit if Path(name).name.startswith(".")]  # no temporary file left
    interrupted = tables(parquet_dir)

    assert run_cli("--config", str(config), "compact", timeout=120).returncode == 0
    new = tables(parquet_dir)
    assert set(interrupted) == set(old) == set(new)
    for name, table in interrupted.items():
        assert table.equals(old[name]) or table.equals(new[name]), name
    assert any(not new[name].equals(old[name]) for name in new)


@SHARES
def test_a_killed_compaction_leaves_no_process_behind(tmp_path: Path, years: tuple[int, int]) -> None:
    """SIGKILL cannot be caught: the worker and its helpers notice the command is gone and end by
    themselves (left running, they would hold its stdout open: `bulkfetch compact | tee log` would hang)."""
    data_dir = tmp_path / "data"
    big_store(data_dir, years)
    process = spawn(storage_config(tmp_path, data_dir), "compact", "--rebuild")
    family = wait_for_the_worker(process)
    family.update(descendants(process.pid))
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)  # returns only once no process holds the pipes
    wait_until(lambda: not any(alive(pid) for pid in family), timeout_s=10, what="the children to exit")


# -- item 12: an interrupted fetch compacts what it fetched ------------------------------------------------
def test_an_interrupted_fetch_compacts_what_it_fetched_then_exits_130(tmp_path: Path) -> None:
    settings = SimulatorSettings(activities=150, seed=32, latency_s=0.03, short_limit=1000, daily_limit=10000)
    with SimulatorThread(settings) as sim:
        config = one_at_a_time(tmp_path, sim)
        store = athlete_store(tmp_path / "data")
        fetch = spawn(config, "fetch")
        wait_until(lambda: store.detail_dir.is_dir() and len(store.detail_ids()) >= 10, what="10 details")
        fetch.send_signal(signal.SIGTERM)
        _, stderr = fetch.communicate(timeout=60)
    assert fetch.returncode == 130, stderr
    assert "Traceback" not in stderr
    fetched = store.detail_ids()
    assert 10 <= len(fetched) < 150
    rows = pq.ParquetDataset(tmp_path / "data" / "parquet" / "activities").read().to_pylist()
    assert {r["id"] for r in rows if r["has_detail"]} == fetched
    assert log_lines(tmp_path / "data")[-1].endswith("exit 130: " + error_line(stderr))


def test_a_second_signal_stops_the_compaction_of_an_interrupted_fetch_at_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    big_store(data_dir, (2020, 2021))  # what earlier runs fetched: a few seconds of compaction
    settings = SimulatorSettings(activities=50, seed=33, latency_s=0.2, short_limit=1000, daily_limit=10000)
    with SimulatorThread(settings) as sim:
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, data_dir, fetch={"concurrency": 1}))
        fetch = spawn(config, "fetch")
        wait_until(lambda: len(sim.request_log) >= 1, what="the first request")
        fetch.send_signal(signal.SIGINT)
        wait_until(lambda: any("compacting" in line for line in log_lines(data_dir)) or fetch.poll() is not None,
                   what="the compaction")
        family = descendants(fetch.pid)
        fetch.send_signal(signal.SIGINT)
        stopped_at = time.monotonic()
        _, stderr = fetch.communicate(timeout=30)
        took_s = time.monotonic() - stopped_at
    assert fetch.returncode == 130, stderr
    assert "compaction stopped" in stderr and "Traceback" not in stderr
    assert took_s < 3, took_s
    store = athlete_store(data_dir)
    recorded = store.read_state(MANIFEST, {}).get("years", {})
    with closing(SpilledSummaries(store.state_dir)) as summaries:
        years = {str(year) for year in partition_entries(store, summaries)}
    assert not years <= set(recorded), "the compaction ran to its end: the second signal did nothing"
    parquet_dir = data_dir / "parquet"
    assert not [p for p in parquet_dir.rglob("*") if p.name.startswith(".")]
    tables(parquet_dir)  # every file that is there is whole
    wait_until(lambda: not any(alive(pid) for pid in family), timeout_s=5, what="the children to exit")
    assert log_lines(data_dir)[-1].endswith("exit 130: " + error_line(stderr))
    assert run_cli("--config", str(config), "compact", timeout=120).returncode == 0


# -- item 10: the log's last line is the outcome (exit 130: see the tests above) ---------------------------
def test_every_run_ends_its_log_with_its_outcome_and_exit_code(tmp_path: Path) -> None:
    settings = SimulatorSettings(activities=30, seed=34, short_limit=1000, daily_limit=10000)
    with SimulatorThread(settings) as sim:
        data_dir = tmp_path / "data"
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, data_dir))
        for command in ("fetch", "plan", "compact"):
            assert main(["--config", str(config), command]) == 0
            assert log_lines(data_dir)[-1].endswith(" exit 0: done"), command

        revoked_dir = tmp_path / "revoked"
        revoked = tmp_path / "revoked.toml"
        revoked.write_text(simulator_config_text(sim, revoked_dir, refresh_token="revoked-long-ago"))
        result = run_cli("--config", str(revoked), "fetch", timeout=60)
        assert result.returncode == 2, result.stderr
        assert log_lines(revoked_dir)[-1].endswith(" exit 2: " + error_line(result.stderr))
        assert "revoked-long-ago" not in (revoked_dir / "bulkfetch.log").read_text()

    settings = SimulatorSettings(activities=30, seed=35, short_limit=12, daily_limit=10000, short_window_s=600)
    with SimulatorThread(settings) as sim:
        data_dir = tmp_path / "quota"
        config = tmp_path / "quota.toml"
        config.write_text(simulator_config_text(sim, data_dir))
        result = run_cli("--config", str(config), "fetch", "--no-wait", timeout=60)
        assert result.returncode == 75, result.stderr
        assert log_lines(data_dir)[-1].endswith(" exit 75: " + error_line(result.stderr))


# -- the worker processes run this copy of bulkfetch -------------------------------------------------------
def test_a_worker_started_from_a_folder_holding_another_bulkfetch_imports_this_one(tmp_path: Path) -> None:
    """Python 3.11's forkserver imports its preload from the working directory first: run from a folder
    holding another `bulkfetch` (a checkout), the workers would run that one, not this process's."""
    decoy = tmp_path / "checkout"
    (decoy / "bulkfetch").mkdir(parents=True)
    (decoy / "bulkfetch" / "__init__.py").write_text("")
    (decoy / "bulkfetch" / "processes.py").write_text("raise SystemExit('the decoy bulkfetch was imported')\n")
    script = tmp_path / "scripts" / "pool.py"  # a script's folder, not the working directory, leads its path
    script.parent.mkdir()
    script.write_text(
        "from bulkfetch.processes import worker_pool\n"
        "if __name__ == '__main__':\n"
        "    with worker_pool(1, 'bulkfetch.processes') as pool:\n"
        "        print(pool.submit(eval, '__import__(\"bulkfetch\").__file__').result(timeout=60))\n")
    env = {name: value for name, value in cli_env().items() if name != "PYTHONSAFEPATH"}  # this copy: on PYTHONPATH
    done = subprocess.run([sys.executable, str(script)], cwd=decoy, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == bulkfetch.__file__


def test_the_forkserver_imports_its_preload_in_the_background_for_the_workers(tmp_path: Path) -> None:
    """`start_forkserver` returns while the server imports (pyarrow, for compaction: this process works
    meanwhile), and the workers fork from the server with the module imported: they do not import it again."""
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "slow_preload.py").write_text("import os, time\ntime.sleep(3)\nIMPORTED_BY = os.getpid()\n")
    script = tmp_path / "pool.py"
    script.write_text(
        "import os, time\n"
        "from bulkfetch.processes import start_forkserver, worker_pool\n"
        "if __name__ == '__main__':\n"
        "    started = time.monotonic()\n"
        "    start_forkserver(['slow_preload'])\n"
        "    returned_s = time.monotonic() - started\n"
        "    with worker_pool(1, 'slow_preload') as pool:\n"
        "        importer, worker = pool.submit(eval, '(__import__(\"slow_preload\").IMPORTED_BY, "
        "__import__(\"os\").getpid())').result(timeout=60)\n"
        "    print(returned_s, time.monotonic() - started, importer != worker)\n")
    env = cli_env(PYTHONPATH=f"{modules}{os.pathsep}{cli_env()['PYTHONPATH']}")
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    returned_s, served_s, preloaded = done.stdout.split()
    assert float(returned_s) < 2 and float(served_s) >= 3  # the 3-s import ran after it had returned
    assert preloaded == "True"  # imported by the server, before the worker forked from it


def test_the_forkserver_puts_a_checkout_first_on_its_path_but_not_an_installed_copy(tmp_path: Path) -> None:
    """An installed copy's folder (site-packages) put first would come before the standard library in the
    workers; a checkout's must come first (it may not be on the path at all)."""
    from bulkfetch.processes import forkserver_environment

    checkout, site_packages = tmp_path / "checkout", tmp_path / "site-packages"
    assert forkserver_environment(checkout, [site_packages], "/x") == {
        "PYTHONSAFEPATH": "1", "PYTHONPATH": os.pathsep.join([str(checkout), "/x"])}
    assert forkserver_environment(site_packages, [site_packages], "/x") == {"PYTHONSAFEPATH": "1"}
