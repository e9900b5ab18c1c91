"""One Strava app, one quota: every data_dir and process of the app on this machine shares its ledger.

Real fetches over HTTP against the simulator on 127.0.0.1, with compressed windows. Each data_dir holds a
live access token of the simulator's athlete, so that several data_dirs (and processes) use one athlete
without rotating each other's refresh token away; the quota is the app's either way.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import time
from pathlib import Path

from bulkfetch.auth import Tokens, TokenStore
from bulkfetch.cli import main
from bulkfetch.ledger_file import App, ledger_path, state_folder
from bulkfetch.simulator import SimulatorSettings, SimulatorThread
from tests.conftest import athlete_store, cli_env, run_cli, simulator_config_text
from tests.test_fetch import api_records
from tests.test_ledger_file import newest
from tests.test_quota import v1_snapshot

WINDOW_S = 2


def data_dir_config(tmp_path: Path, thread: SimulatorThread, name: str, **config: dict) -> Path:
    """A config for the simulator's app with its own data_dir, which holds a live access token."""
    sim = thread.simulator
    data_dir = tmp_path / name
    access = thread.call(sim.issue_access_token)
    TokenStore(athlete_store(data_dir).auth_dir / "tokens.json").save(
        Tokens(refresh_token="unused-seed", access_token=access, expires_at=time.time() + 3600))
    path = tmp_path / f"{name}.toml"
    path.write_text(simulator_config_text(sim, data_dir, refresh_token="unused-seed", **config))
    return path


def fetch(config: Path, *args: str) -> int:
    return main(["--config", str(config), "-q", "fetch", "--no-compact", *args])


def data_dir_of(config: Path) -> Path:
    return config.with_suffix("")


def at_window_start(length_s: float, *, within_s: float = 0.3) -> int:
    """Sleep until a window has just begun (so that what follows fits in it); its index."""
    deadline = time.monotonic() + length_s + 1
    while time.time() % length_s > within_s and time.monotonic() < deadline:
        time.sleep(0.01)
    return int(time.time() // length_s)


def test_a_second_data_dir_waits_for_the_window_the_first_one_spent(tmp_path: Path, state_home: Path) -> None:
    settings = SimulatorSettings(activities=12, seed=31, short_limit=8, daily_limit=10_000, short_window_s=WINDOW_S)
    thread = SimulatorThread(settings)
    with thread as sim:
        first = data_dir_config(tmp_path, thread, "athlete-a")
        second = data_dir_config(tmp_path, thread, "athlete-b")
        window = at_window_start(WINDOW_S)
        assert fetch(first, "--no-wait") == 75  # spent: 1 list page + 7 details
        assert [r.short_window for r in api_records(sim)] == [window] * 8
        mark = len(sim.request_log)
        assert int(time.time() // WINDOW_S) == window, "the machine was too slow to start inside the window"
        assert fetch(second) == 0
        assert not [r for r in api_records(sim) if r.status == 429]
        assert min(r.short_window for r in api_records(sim, since=mark)) > window  # it waited instead
        assert athlete_store(data_dir_of(second)).detail_ids() == set(sim.activity_ids())
    folder = state_folder({"XDG_STATE_HOME": str(state_home)})
    assert [p.name for p in folder.iterdir()] == [ledger_path(folder, App(sim.api_url, settings.client_id)).name]
    blob = b"".join(p.read_bytes() for p in folder.iterdir())
    assert settings.client_secret.encode() not in blob
    assert b"sim-access" not in blob and b"sim-refresh" not in blob and b"unused-seed" not in blob


def test_two_processes_of_the_app_fetching_at_once_get_no_429(tmp_path: Path, state_home: Path) -> None:
    settings = SimulatorSettings(activities=12, seed=32, short_limit=8, daily_limit=10_000, short_window_s=WINDOW_S)
    thread = SimulatorThread(settings)
    with thread as sim:
        configs = [data_dir_config(tmp_path, thread, name) for name in ("athlete-a", "athlete-b")]
        processes = [subprocess.Popen([sys.executable, "-m", "bulkfetch", "--config", str(config), "fetch",
                                       "--no-compact"], env=cli_env(), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True) for config in configs]
        errors = [process.communicate(timeout=90)[1] for process in processes]
        assert [process.returncode for process in processes] == [0, 0], errors
        assert not any("Traceback" in err for err in errors), errors
        records = api_records(sim)
        assert not [r for r in records if r.status == 429]
        assert max(collections.Counter(r.short_window for r in records).values()) <= settings.short_limit
        assert len(records) == 2 * (1 + settings.activities)
        for config in configs:
            assert athlete_store(data_dir_of(config)).detail_ids() == set(sim.activity_ids())
        app = App(sim.api_url, settings.client_id)
    assert ledger_path(state_home / "bulkfetch", app).exists()  # the subprocesses used the test's folder
    assert not ledger_path(state_folder({"HOME": str(Path.home())}), app).exists()


def test_an_older_versions_snapshot_is_merged_into_the_app_ledger_once(tmp_path: Path, capsys) -> None:
    """A data_dir's state/quota.json (kept by versions before the per-app ledger) filled the current
    window: the upgraded fetch must know it without spending a request, and so must the app's other
    data_dirs; the file is merged once, then removed."""
    window_s = 30
    settings = SimulatorSettings(activities=12, seed=33, short_limit=8, daily_limit=10_000, short_window_s=window_s)
    thread = SimulatorThread(settings)
    with thread as sim:
        first = data_dir_config(tmp_path, thread, "athlete-a")
        second = data_dir_config(tmp_path, thread, "athlete-b")
        at_window_start(window_s, within_s=window_s - 5)  # not at a window's very end
        snapshot = v1_snapshot((8, 8), (8, 8), spent=False, read_u_max=(8, 8), at=time.time(),
                               lengths=(window_s, 86400), read_limits=(8, 10_000))
        legacy = athlete_store(data_dir_of(first)).state_dir / "quota.json"
        legacy.parent.mkdir(parents=True)
        legacy.write_text(json.dumps(snapshot))
        assert fetch(first, "--no-wait") == 75
        assert not legacy.exists()
        assert fetch(second, "--no-wait") == 75
        assert api_records(sim) == []
        capsys.readouterr()
        assert main(["--config", str(second), "status", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["quota"]["read"]["short"]["used"] == 8


def test_an_unusable_state_folder_is_one_line_and_exit_2(tmp_path: Path) -> None:
    settings = SimulatorSettings(activities=3, seed=34)
    thread = SimulatorThread(settings)
    with thread as sim:
        config = data_dir_config(tmp_path, thread, "athlete-a")
        # /proc/sys refuses new folders even to root, which CI runs as.
        result = run_cli("--config", str(config), "fetch", XDG_STATE_HOME="/proc/sys/bulkfetch-state")
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        error = result.stderr.splitlines()[-1]  # after the log's "fetch into ..." line
        assert error.startswith("bulkfetch: cannot use /proc/sys/bulkfetch-state/bulkfetch for the quota ledger")
        assert error.endswith("set XDG_STATE_HOME to a writable folder")
        assert api_records(sim) == []


def test_a_damaged_app_ledger_is_a_warning_and_the_fetch_goes_on(tmp_path: Path, state_home: Path,
                                                                  capsys) -> None:
    settings = SimulatorSettings(activities=5, seed=35, short_limit=1000, daily_limit=10_000)
    thread = SimulatorThread(settings)
    with thread as sim:
        config = data_dir_config(tmp_path, thread, "athlete-a")
        path = ledger_path(state_home / "bulkfetch", App(sim.api_url, settings.client_id))
        path.parent.mkdir(parents=True)
        path.write_bytes(b'{"app": {}, "ledger": {"version": 2, "windows": [')
        assert main(["--config", str(config), "fetch", "--no-compact"]) == 0
        err = capsys.readouterr().err
        assert f"warning: the quota ledger {path} is unusable" in err and "Traceback" not in err
        assert athlete_store(data_dir_of(config)).detail_ids() == set(sim.activity_ids())
        assert newest(path)[0] > 0  # repaired
