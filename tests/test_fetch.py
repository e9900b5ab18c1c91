"""The fetch pipeline end to end: real HTTP against the simulator on 127.0.0.1, compressed windows."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path

import orjson
import pytest

from bulkfetch.cli import main
from bulkfetch.simulator import Simulator, SimulatorSettings, SimulatorThread
from bulkfetch.store import RawStore
from tests.conftest import athlete_store, cli_env, simulator_config_text

API = "/api/v3"


def fetch(config: Path, *args: str) -> int:
    return main(["--config", str(config), "fetch", "--no-compact", *args])


def setup(tmp_path: Path, sim, **kwargs) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(simulator_config_text(sim, tmp_path / "data", **kwargs))
    return path


def api_records(sim, *, since: int = 0):
    return [r for r in sim.request_log[since:] if r.counted and not r.others]


def detail_gets(records) -> collections.Counter:
    return collections.Counter(r.path for r in records if r.path.startswith(f"{API}/activities/") and r.status == 200)


def visible_ids(sim) -> set[int]:
    return set(sim.activity_ids(include_private=True))


def assert_matches_ground_truth(sim, data_dir: Path, *, not_refetched: tuple[str, ...] = ()) -> None:
    """Raw files equal the simulator's truth; `not_refetched` fields may be stale by design (kudos)."""
    store = athlete_store(data_dir)
    ids = visible_ids(sim)
    assert set(store.catalog()) == ids
    assert store.detail_ids() - set(store.tombstones()) == ids  # a deleted activity keeps its raw file
    for activity_id in ids:
        stored = orjson.loads(store.detail_path(activity_id).read_bytes())
        truth = sim.detail(activity_id)
        for name in not_refetched:
            stored.pop(name, None)
            truth.pop(name, None)
        assert stored == truth


def test_full_download_equals_ground_truth_with_zero_429s(tmp_path: Path) -> None:
    settings = SimulatorSettings(activities=120, seed=3, short_limit=40, daily_limit=1000, short_window_s=1)
    with SimulatorThread(settings) as sim:
        config = setup(tmp_path, sim, fetch={"per_page": 50})
        assert fetch(config) == 0
        assert_matches_ground_truth(sim, tmp_path / "data")
        records = api_records(sim)
        assert not [r for r in records if r.status == 429]
        list_pages = [r for r in records if r.path == f"{API}/athlete/activities"]
        assert len(list_pages) == 3  # 50 + 50 + 20: a short page ends the listing
        assert all(r.authorization and r.authorization.startswith("Bearer ") for r in records)
        assert not any("access_token" in r.query for r in records)


def test_tight_windows_are_filled_exactly_and_never_overspent(tmp_path: Path) -> None:
    settings = SimulatorSettings(activities=60, seed=4, short_limit=8, daily_limit=1000, short_window_s=1)
    with SimulatorThread(settings) as sim:
        config = setup(tmp_path, sim, fetch={"per_page": 200, "concurrency": 4})
        assert fetch(config) == 0
        records = api_records(sim)
        assert not [r for r in records if r.status == 429]
        per_window = collections.Counter(r.short_window for r in records)
        windows = sorted(per_window)
        # Every window from the first to the one before the last was used to the limit: no idle quota.
        assert windows == list(range(windows[0], windows[-1] + 1))
        assert all(per_window[w] == 8 for w in windows[1:-1]), per_window
        assert max(per_window.values()) <= 8


def test_other_program_sharing_the_quota_causes_no_429(tmp_path: Path) -> None:
    settings = SimulatorSettings(activities=40, seed=5, short_limit=10, daily_limit=1000, short_window_s=1,
                                 other_usage_per_window=4)
    with SimulatorThread(settings) as sim:
        config = setup(tmp_path, sim)
        assert fetch(config) == 0
        assert not [r for r in api_records(sim) if r.status == 429]
        assert_matches_ground_truth(sim, tmp_path / "data")


def test_faults_mix_completes_after_reruns(tmp_path: Path) -> None:
    settings = SimulatorSettings(activities=60, seed=6, error_rate=0.1, drop_rate=0.05, truncate_rate=0.05,
                                 latency_s=0.002, latency_jitter_s=0.004, short_limit=1000, daily_limit=10000)
    with SimulatorThread(settings) as sim:
        config = setup(tmp_path, sim, fetch={"max_attempts": 6})
        codes = [fetch(config) for _ in range(3)]
        assert codes[-1] == 0 or codes.count(0) >= 1
        sim.set_settings(error_rate=0.0, drop_rate=0.0, truncate_rate=0.0)
        assert fetch(config) == 0
        assert_matches_ground_truth(sim, tmp_path / "data")


def test_rerun_is_incremental_with_exact_request_counts(tmp_path: Path) -> None:
    settings = SimulatorSettings(activities=90, seed=7, short_limit=1000, daily_limit=10000)
    thread = SimulatorThread(settings)
    with thread as sim:
        config = setup(tmp_path, sim, fetch={"per_page": 40})
        assert fetch(config) == 0
        mark = len(sim.request_log)
        assert fetch(config) == 0
        records = api_records(sim, since=mark)
        assert len(records) == 3 and all(r.path == f"{API}/athlete/activities" for r in records)

        ids = sim.activity_ids()
        thread.call(partial(sim.edit_activity, ids[5], name="Renamed ✨"))
        thread.call(partial(sim.edit_activity, ids[40], distance=12345.6))
        added = [thread.call(sim.add_activity) for _ in range(3)]
        thread.call(sim.delete_activity, ids[60])
        thread.call(partial(sim.edit_activity, ids[10], kudos_count=999))  # not a change of the activity's data
        mark = len(sim.request_log)
        assert fetch(config) == 0
        records = api_records(sim, since=mark)
        details = sorted(int(r.path.rsplit("/", 1)[1]) for r in records if r.path.startswith(f"{API}/activities/"))
        # The deleted one left the listing: one look at its detail (404) tells it was deleted, not moved.
        assert details == sorted([ids[5], ids[40], ids[60], *added])
        assert len([r for r in records if r.path == f"{API}/athlete/activities"]) == 3  # 92 activities / 40
        store = athlete_store(tmp_path / "data")
        assert ids[60] in store.tombstones()
        assert_matches_ground_truth(sim, tmp_path / "data", not_refetched=("kudos_count",))


def test_list_changing_while_paging_loses_and_repeats_nothing(tmp_path: Path) -> None:
    settings = SimulatorSettings(activities=150, seed=8, mutate_rate=0.6, short_limit=1000, daily_limit=10000)
    with SimulatorThread(settings) as sim:
        before = visible_ids(sim)
        config = setup(tmp_path, sim, fetch={"per_page": 20})
        assert fetch(config) == 0
        store = athlete_store(tmp_path / "data")
        listed = [item["id"] for page in store.listings()[-1].pages() for item in page]
        survivors = before & visible_ids(sim)
        assert survivors <= set(listed)  # nothing that existed throughout was skipped
        sim.set_settings(mutate_rate=0.0)
        assert fetch(config) == 0
        assert_matches_ground_truth(sim, tmp_path / "data")


def test_no_wait_stops_with_75_and_a_restart_does_not_send_into_the_spent_window(tmp_path: Path) -> None:
    settings = SimulatorSettings(activities=30, seed=9, short_limit=10, daily_limit=15, short_window_s=1,
                                 daily_window_s=30)
    with SimulatorThread(settings) as sim:
        config = setup(tmp_path, sim)
        assert fetch(config, "--no-wait") == 75
        spent = len(api_records(sim))
        assert fetch(config, "--no-wait") == 75
        # Whatever windows the two runs used, no 429 and the daily limit was never passed.
        records = api_records(sim)
        assert not [r for r in records if r.status == 429]
        per_day = collections.Counter(r.daily_window for r in records)
        assert max(per_day.values()) <= 15
        assert spent >= 10


def test_max_wait_waits_for_short_windows_then_stops_at_the_daily_one(tmp_path: Path, capsys) -> None:
    settings = SimulatorSettings(activities=30, seed=10, short_limit=5, daily_limit=12, short_window_s=1,
                                 daily_window_s=3600)
    with SimulatorThread(settings) as sim:
        config = setup(tmp_path, sim)
        assert fetch(config, "--max-wait", "3") == 75
        err = capsys.readouterr().err
        assert "resets" in err and "UTC" in err
        records = api_records(sim)
        assert len(records) == 12 and not [r for r in records if r.status == 429]


def test_status_json_reports_progress(tmp_path: Path, capsys) -> None:
    settings = SimulatorSettings(activities=25, seed=11, short_limit=1000, daily_limit=10000)
    with SimulatorThread(settings) as sim:
        config = setup(tmp_path, sim, fetch={"per_page": 10})
        assert fetch(config, "--sport", "Ride") == 0
        capsys.readouterr()
        assert main(["--config", str(config), "status", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        rides = sum(1 for i in sim.activity_ids() if sim.summary(i)["sport_type"] == "Ride")
        assert report["listed"] == 25
        assert report["fetched"] == rides
        assert report["filters"]["sports"] == ["Ride"]
        assert report["pending"] == 0  # pending for the filters fetch used
        # The next routine listing's requests still count: back to the 200 newest, here all 25, 10 a page.
        assert report["remaining_requests"] == report["listing"]["next"]["list_pages"] == 3
        assert report["eta"] is not None
        assert report["quota"]["read"]["short"]["used"] >= 1
        (athlete_store(tmp_path / "data").state_dir / "filters.json").unlink()  # no recorded filters: all are pending
        assert main(["--config", str(config), "status", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["pending"] == 25 - rides and report["eta"] is not None


def test_athlete_mismatch_and_credential_errors_exit_2(tmp_path: Path, capsys) -> None:
    with SimulatorThread(SimulatorSettings(activities=5, seed=12)) as sim:
        config = setup(tmp_path, sim)
        assert fetch(config) == 0
        (athlete_store(tmp_path / "data").state_dir / "athlete.json").write_text('{"athlete_id": 1}')
        capsys.readouterr()
        assert fetch(config) == 2
        err = capsys.readouterr().err
        assert "athlete 1" in err and f"athlete {sim.settings.athlete_id}" in err

    with SimulatorThread(SimulatorSettings(activities=5, seed=12, app_inactive=True)) as sim:
        (tmp_path / "b").mkdir()
        config = setup(tmp_path / "b", sim)
        assert fetch(config) == 2
        assert "subscription" in capsys.readouterr().err

    with SimulatorThread(SimulatorSettings(activities=5, seed=12, scope="read")) as sim:
        (tmp_path / "c").mkdir()
        config = setup(tmp_path / "c", sim)
        assert fetch(config) == 2
        assert "activity:read_permission" in capsys.readouterr().err

    with SimulatorThread(SimulatorSettings(activities=5, seed=12)) as sim:
        (tmp_path / "d").mkdir()
        config = setup(tmp_path / "d", sim, refresh_token="not-a-valid-token")
        assert fetch(config) == 2
        err = capsys.readouterr().err
        assert "run 'bulkfetch auth'" in err and "not-a-valid-token" not in err


def _spawn_fetch(config: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bulkfetch", "--config", str(config), "fetch", "--no-compact"],
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_mid_run_then_rerun_completes_without_refetching_and_keeps_the_token_chain(tmp_path: Path) -> None:
    settings = SimulatorSettings(activities=80, seed=13, latency_s=0.02, access_token_lifetime_s=1.0,
                                 short_limit=1000, daily_limit=10000)
    with SimulatorThread(settings) as sim:
        config = setup(tmp_path, sim, fetch={"concurrency": 4, "refresh_margin_s": 0})
        store = athlete_store(tmp_path / "data")
        for _ in range(2):
            target = len(store.detail_ids()) + 10 if store.detail_dir.exists() else 10
            process = _spawn_fetch(config)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and (
                    not store.detail_dir.exists() or len(store.detail_ids()) < target):
                time.sleep(0.02)
            kill_outside_token_exchange(sim, process, lambda: stored_refresh_token(store),
                                        wait_s=max(0.0, deadline - time.monotonic()))
        done_at_kill = store.detail_ids()
        mark = len(sim.request_log)
        result = subprocess.run([sys.executable, "-m", "bulkfetch", "--config", str(config), "fetch",
                                 "--no-compact"], env=cli_env(), capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        refetched = {int(p.rsplit("/", 1)[1]) for p in detail_gets(api_records(sim, since=mark))}
        assert not refetched & done_at_kill
        assert_matches_ground_truth(sim, tmp_path / "data")
        stored = json.loads((athlete_store(tmp_path / "data").auth_dir / "tokens.json").read_text())
        assert stored["refresh_token"] == sim.current_refresh_token
        assert oct(os.stat(athlete_store(tmp_path / "data").auth_dir / "tokens.json").st_mode & 0o777) == "0o600"


def kill_outside_token_exchange(sim: Simulator, process: subprocess.Popen, stored_token: Callable[[], str | None],
                                wait_s: float = 2.0) -> None:
    """SIGKILL `process`, but not between Strava answering a refresh and the client storing the new token:
    Strava invalidates the old token as it answers, so a kill there breaks the chain whatever a client does.
    Meanwhile the token endpoint is down (503, nothing rotates), so no refresh starts; a client that never
    stores the token it was given still fails (this waits at most wait_s for the stored token, then kills)."""
    sim.set_settings(token_outage=True)
    try:
        # A round trip through the simulator's loop: a refresh it was answering as the outage began (the check
        # and the rotation run without a pause) has rotated by the time this is answered.
        with contextlib.suppress(urllib.error.HTTPError):
            urllib.request.urlopen(urllib.request.Request(sim.oauth_url + "/token", data=b""), timeout=10)
        deadline = time.monotonic() + wait_s
        while stored_token() != sim.current_refresh_token and time.monotonic() < deadline:
            time.sleep(0.001)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        sim.set_settings(token_outage=False)


def stored_refresh_token(store: RawStore) -> str | None:
    try:
        return json.loads((store.auth_dir / "tokens.json").read_text())["refresh_token"]
    except (OSError, ValueError, KeyError):
        return None


def test_second_fetch_on_the_same_data_dir_exits_2_naming_the_first(tmp_path: Path) -> None:
    settings = SimulatorSettings(activities=200, seed=14, latency_s=0.05, short_limit=1000, daily_limit=10000)
    with SimulatorThread(settings) as sim:
        config = setup(tmp_path, sim, fetch={"concurrency": 1})
        first = _spawn_fetch(config)
        try:
            deadline = time.monotonic() + 20
            while not (tmp_path / "data" / "fetch.lock").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)
            second = subprocess.run([sys.executable, "-m", "bulkfetch", "--config", str(config), "fetch"],
                                    env=cli_env(), capture_output=True, text=True, timeout=30)
            assert second.returncode == 2
            assert f"PID {first.pid}" in second.stderr
            assert "Traceback" not in second.stderr
        finally:
            first.send_signal(signal.SIGTERM)
            assert first.wait(20) == 130


def test_a_429_spends_the_window_and_is_never_retried_into_it(tmp_path: Path) -> None:
    # Another program spends each whole short window at its start, so our first request of every window
    # is refused. Rejected requests still count: the run must wait for the next window, never retry into
    # a spent one. After a few windows the other program stops and the run completes.
    settings = SimulatorSettings(activities=12, seed=15, short_limit=6, daily_limit=10000, short_window_s=1,
                                 other_usage_per_window=6)
    thread = SimulatorThread(settings)
    with thread as sim:
        config = setup(tmp_path, sim)
        calm_down = threading.Timer(3.0, thread.call, args=(partial(sim.set_settings, other_usage_per_window=0),))
        calm_down.start()
        try:
            assert fetch(config) == 0
        finally:
            calm_down.cancel()
        records = api_records(sim)
        by_window: dict[int, list] = collections.defaultdict(list)
        for record in sorted(records, key=lambda r: r.time):
            by_window[record.short_window].append(record.status)
        assert any(429 in statuses for statuses in by_window.values()), "the scenario provoked no 429"
        for window, statuses in by_window.items():
            if 429 in statuses:
                assert statuses == [429], (window, statuses)  # the probe was refused; nothing followed it
        assert_matches_ground_truth(sim, tmp_path / "data")


def test_the_log_file_tells_what_happened(tmp_path: Path) -> None:
    with SimulatorThread(SimulatorSettings(activities=8, seed=16)) as sim:
        config = setup(tmp_path, sim)
        assert fetch(config) == 0
        log = (tmp_path / "data" / "bulkfetch.log").read_text()
        assert "details to fetch: 8" in log and "listed 8 activities" in log
        assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ", log, flags=re.M)


def test_dropped_connections_cause_no_hidden_resend(tmp_path: Path, capsys) -> None:
    # aiohttp resends a GET once by itself when a reused connection drops; Strava would count both
    # while the quota ledger saw one. Every request the server counts must be one the client sent.
    settings = SimulatorSettings(activities=60, seed=17, drop_rate=0.3, short_limit=1000, daily_limit=10000)
    with SimulatorThread(settings) as sim:
        config = setup(tmp_path, sim, fetch={"max_attempts": 8})
        fetch(config)
        sent = int(re.search(r"; ([\d,]+) requests", capsys.readouterr().out).group(1).replace(",", ""))
        dropped = [r for r in api_records(sim) if r.status == 0]
        assert dropped, "the scenario dropped no connection"
        assert len(api_records(sim)) == sent


def test_a_run_killed_right_after_filling_a_window_is_not_followed_by_a_429(tmp_path: Path) -> None:
    # The quota snapshot is throttled while windows have room; close to full every request is written,
    # so the restarted run knows its killed predecessor filled the window and waits instead of probing.
    settings = SimulatorSettings(activities=40, seed=19, short_limit=10, daily_limit=10000, short_window_s=4,
                                 latency_s=0.05)
    with SimulatorThread(settings) as sim:
        config = setup(tmp_path, sim, limits={"short_window_s": 4})
        while time.time() % 4 > 0.3:  # start at the beginning of a window: it fills well before its end
            time.sleep(0.02)
        process = _spawn_fetch(config)
        window = int(time.time() // 4)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and sum(
                1 for r in api_records(sim) if r.short_window == window) < settings.short_limit:
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        assert fetch(config, "--no-wait") == 75
        assert int(time.time() // 4) == window, "the machine was too slow to restart inside the window"
        assert not [r for r in api_records(sim) if r.status == 429]


def test_a_corrected_start_time_moves_every_table_of_the_activity(tmp_path: Path) -> None:
    """Users fix wrong device clocks: the detail is fetched again, and laps, best and segment efforts
    follow the activity and its splits into the new year, with the new start times."""
    import pyarrow.dataset as ds

    settings = SimulatorSettings(activities=30, seed=12, short_limit=1000, daily_limit=10000)
    thread = SimulatorThread(settings)
    with thread as sim:
        config = setup(tmp_path, sim)
        assert main(["--config", str(config), "fetch"]) == 0
        moved = next(i for i in sim.activity_ids()
                     if all(sim.detail(i).get(key) for key in ("laps", "best_efforts", "segment_efforts")))
        old_start = sim.summary(moved)["start_date"]
        new_start = f"{int(old_start[:4]) - 3}{old_start[4:]}"
        thread.call(partial(sim.edit_activity, moved, start_date=new_start))
        mark = len(sim.request_log)
        assert main(["--config", str(config), "fetch"]) == 0
        assert detail_gets(api_records(sim, since=mark)) == {f"{API}/activities/{moved}": 1}
        detail = sim.detail(moved)

    for table, key, children in (("activities", "id", None), ("splits_metric", "activity_id", "splits_metric"),
                                 ("laps", "activity_id", "laps"), ("best_efforts", "activity_id", "best_efforts"),
                                 ("segment_efforts", "activity_id", "segment_efforts")):
        rows = ds.dataset(tmp_path / "data" / "parquet" / table, format="parquet", partitioning="hive").to_table(
            filter=ds.field(key) == moved).to_pylist()
        assert rows and {row["year"] for row in rows} == {int(new_start[:4])}, table
        if children in ("laps", "best_efforts", "segment_efforts"):
            expected = sorted(item["start_date"] for item in detail[children])
            assert sorted(row["start_date"].strftime("%Y-%m-%dT%H:%M:%SZ") for row in rows) == expected, table


def test_an_activity_moved_back_past_the_newest_ones_is_followed_not_deleted(tmp_path: Path) -> None:
    """A routine listing covers only the newest activities: one whose clock was fixed to years earlier
    leaves that range without being deleted. It keeps its rows, in its new year, before any full re-list."""
    import pyarrow.dataset as ds

    settings = SimulatorSettings(activities=260, seed=13, short_limit=1000, daily_limit=10000,
                                 overall_short_limit=2000, overall_daily_limit=20000)
    thread = SimulatorThread(settings)
    with thread as sim:
        config = setup(tmp_path, sim)
        assert main(["--config", str(config), "fetch"]) == 0
        ids = sim.activity_ids()
        moved = next(i for i in ids[:20] if sim.detail(i).get("splits_metric") and sim.detail(i).get("laps"))
        deleted = next(i for i in ids[:20] if i != moved)
        oldest_start = min(sim.summary(i)["start_date"] for i in ids)
        new_start = f"{int(oldest_start[:4]) - 1}{oldest_start[4:]}"
        thread.call(partial(sim.edit_activity, moved, start_date=new_start))
        thread.call(sim.delete_activity, deleted)
        mark = len(sim.request_log)
        assert main(["--config", str(config), "fetch"]) == 0
        records = api_records(sim, since=mark)
        # One routine list page, a look at each activity that left it (the moved one's detail is kept:
        # it is its new detail), and a page at the moved one's new place.
        assert [r.path for r in records].count(f"{API}/athlete/activities") == 2
        assert [r.path for r in records].count(f"{API}/activities/{moved}") == 1
        assert [r.path for r in records].count(f"{API}/activities/{deleted}") == 1
        store = athlete_store(tmp_path / "data")
        assert store.catalog()[moved]["start_date"] == new_start and moved not in store.tombstones()
        assert deleted not in store.catalog() and store.tombstones()[deleted].reason == "unlisted"

        mark = len(sim.request_log)
        assert main(["--config", str(config), "fetch"]) == 0
        assert len(api_records(sim, since=mark)) == 1  # settled: nothing to look up again

    for table, key in (("activities", "id"), ("laps", "activity_id"), ("splits_metric", "activity_id")):
        rows = ds.dataset(tmp_path / "data" / "parquet" / table, format="parquet", partitioning="hive").to_table(
            filter=ds.field(key) == moved).to_pylist()
        assert rows and {row["year"] for row in rows} == {int(new_start[:4])}, table


def test_a_moved_activity_is_found_among_many_that_share_its_new_start_second(tmp_path: Path) -> None:
    settings = SimulatorSettings(activities=230, seed=14, short_limit=1000, daily_limit=10000,
                                 overall_short_limit=2000, overall_daily_limit=20000)
    thread = SimulatorThread(settings)
    with thread as sim:
        config = setup(tmp_path, sim, fetch={"per_page": 10})
        ids = sim.activity_ids()
        crowded = "2019-06-01T06:00:00Z"
        # More activities in one old start second than a page holds, listed (by id, descending) before the
        # one that moves there later.
        for activity_id in ids[20:35]:
            thread.call(partial(sim.edit_activity, activity_id, start_date=crowded))
        assert fetch(config) == 0
        moved = ids[40]
        thread.call(partial(sim.edit_activity, moved, start_date=crowded))
        mark = len(sim.request_log)
        assert fetch(config) == 0
        assert any(r.query.get("page") == "2" for r in api_records(sim, since=mark))  # paged within the second
        store = athlete_store(tmp_path / "data")
        assert store.catalog()[moved]["start_date"] == crowded and moved not in store.tombstones()
        mark = len(sim.request_log)
        assert fetch(config) == 0
        assert {r.path for r in api_records(sim, since=mark)} == {f"{API}/athlete/activities"}  # settled


# Installed in every Python process of a CLI run (its compaction worker too) by PYTHONPATH: each file
# opened is appended, one path a line, to the file named by OPENED_LOG.
RECORD_OPENS = """\
import os, sys
_log = os.environ["OPENED_LOG"]
def _record(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)) and os.fsdecode(args[0]) != _log:
        with open(_log, "a") as out:
            out.write(os.fsdecode(args[0]) + "\\n")
sys.addaudithook(_record)
"""


def test_a_fetch_that_finds_nothing_new_opens_no_detail_or_stream_file(tmp_path: Path) -> None:
    """The no-op run (listing, plan, compaction) must not grow with the history: it reads list pages and
    state, never a raw detail or StreamSet it already has."""
    settings = SimulatorSettings(activities=25, seed=48, short_limit=1000, daily_limit=10000)
    with SimulatorThread(settings) as sim:
        config = setup(tmp_path, sim)
        command = ["--config", str(config), "fetch", "--streams", "all"]
        assert main(command) == 0  # everything fetched and compacted
        store = athlete_store(tmp_path / "data")
        assert store.detail_ids() and store.stream_ids()
        hooks = tmp_path / "hooks"
        hooks.mkdir()
        (hooks / "sitecustomize.py").write_text(RECORD_OPENS)
        opened_log = tmp_path / "opened.txt"
        mark = len(sim.request_log)
        done = subprocess.run([sys.executable, "-m", "bulkfetch", *command], env=cli_env(
            PYTHONPATH=f"{hooks}{os.pathsep}{cli_env()['PYTHONPATH']}", OPENED_LOG=str(opened_log)),
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr
        assert {r.path for r in api_records(sim, since=mark)} == {f"{API}/athlete/activities"}  # nothing new
    opened = opened_log.read_text().splitlines()
    pages = [path for path in opened
             if f"{os.sep}raw{os.sep}list{os.sep}" in path and Path(path).name.startswith("page-")]
    assert pages  # the hook does see raw reads
    # The catalog is parsed once in the run (plan, listing, details, streams and compaction share it).
    assert [page for page, count in collections.Counter(pages).items() if count > 1] == []
    # The fetched index is read once: the details stage reuses what the plan read (nothing changed).
    assert opened.count(str(store.state_path("fetched"))) == 1
    raw = [path for path in opened if str(store.detail_dir) in path or str(store.stream_dir) in path]
    assert raw == []


def test_a_fetch_that_finds_nothing_new_parses_only_the_list_pages_it_lists(tmp_path: Path, monkeypatch) -> None:
    """Each listing's index (state/listings/) holds what the run reads of its pages: the run parses only the
    pages its own listing writes, not the history's (5 pages here, 100 at 20,000 activities)."""
    settings = SimulatorSettings(activities=24, seed=49, short_limit=1000, daily_limit=10000)
    with SimulatorThread(settings) as sim:
        config = setup(tmp_path, sim, fetch={"per_page": 5})
        command = ["--config", str(config), "fetch", "--streams", "all"]
        assert main(command) == 0  # everything fetched and compacted
        store = athlete_store(tmp_path / "data")
        # Files count as written long enough ago to be indexed at once (see store.INDEX_RACY_S), and for
        # compaction to trust its check that nothing changed (compact.RACY_S).
        monkeypatch.setattr("bulkfetch.store.INDEX_RACY_S", 0.0)
        monkeypatch.setattr("bulkfetch.compact.RACY_S", 0.0)
        assert main(command) == 0  # indexes the full listing's pages
        full = store.latest_full_listing()
        assert full is not None and full.index is not None and full.index.exists()
        reads: list[Path] = []
        read_bytes = Path.read_bytes
        monkeypatch.setattr(Path, "read_bytes", lambda path: reads.append(path) or read_bytes(path))
        mark = len(sim.request_log)
        before = {listing.listing_id for listing in store.listings()}
        assert main(command) == 0
        assert {r.path for r in api_records(sim, since=mark)} == {f"{API}/athlete/activities"}  # nothing new
    pages = [path for path in reads if path.name.startswith("page-")]
    assert len(full.page_paths()) >= 5 and pages  # a routine listing lists the 24 again: 5 pages or more
    assert {path.parent.name for path in pages} == {listing.listing_id for listing in store.listings()} - before
    assert [path for path in reads if path.parent in (store.detail_dir, store.stream_dir)] == []


def parquet_rows(parquet_dir: Path) -> dict[str, list[dict]]:
    """Every table's rows, in a stable order (hive partition columns included)."""
    import pyarrow.dataset as ds

    rows = {}
    for folder in sorted(parquet_dir.iterdir()):
        table = ds.dataset(folder, format="parquet", partitioning="hive").to_table().to_pylist()
        rows[folder.name] = sorted(table, key=lambda row: orjson.dumps(row, option=orjson.OPT_SORT_KEYS))
    return rows


def without_activity(rows: dict[str, list[dict]], activity_id: int) -> dict[str, list[dict]]:
    return {table: [row for row in table_rows if activity_id not in (row.get("id"), row.get("activity_id"))]
            for table, table_rows in rows.items()}


DAMAGE = {"null": lambda raw: b"null", "truncated": lambda raw: raw[: len(raw) // 2],
          "not an object": lambda raw: b"[1, 2]", "empty": lambda raw: b""}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_detail_is_named_set_aside_and_fetched_again(tmp_path: Path, capsys, monkeypatch,
                                                                damage: str) -> None:
    """A detail file damaged from outside (a full disk, a hand edit) is not silently compacted as its summary
    and kept as fetched: compaction says so in one line, compacts everything else, moves the file aside; the
    next fetch asks for that detail alone, and the Parquet has it in full again."""
    monkeypatch.setattr("bulkfetch.arrow_details.MIN_DETAILS", 1)  # Arrow's reader meets the file first
    settings = SimulatorSettings(activities=30, seed=50, short_limit=1000, daily_limit=10000)
    with SimulatorThread(settings) as sim:
        config = setup(tmp_path, sim)
        assert main(["--config", str(config), "fetch"]) == 0
        store = athlete_store(tmp_path / "data")
        parquet_dir = tmp_path / "data" / "parquet"
        whole = parquet_rows(parquet_dir)
        activity_id = sorted(store.detail_ids())[7]
        path = store.detail_path(activity_id)
        damaged = DAMAGE[damage](path.read_bytes())
        path.write_bytes(damaged)

        capsys.readouterr()
        assert main(["--config", str(config), "compact"]) == 0
        err = capsys.readouterr().err
        named = [line for line in err.splitlines() if "damaged raw file" in line]
        assert len(named) == 1 and "Traceback" not in err, err
        assert str(path) in named[0] and "the next fetch fetches it again" in named[0], named
        moved_to = store.data_dir / "quarantine" / "activities" / path.name
        assert not path.exists() and moved_to.read_bytes() == damaged
        after = parquet_rows(parquet_dir)
        assert without_activity(after, activity_id) == without_activity(whole, activity_id)  # the others intact
        row = next(r for r in after["activities"] if r["id"] == activity_id)
        assert row["has_detail"] is False
        assert not [r for r in after["splits_metric"] if r["activity_id"] == activity_id]

        mark = len(sim.request_log)
        assert main(["--config", str(config), "fetch"]) == 0
        assert detail_gets(api_records(sim, since=mark)) == {f"{API}/activities/{activity_id}": 1}
        assert "damaged raw file" not in capsys.readouterr().err
        assert parquet_rows(parquet_dir) == whole  # its detail in full again
        assert moved_to.read_bytes() == damaged  # kept for the user


def test_a_damaged_stream_file_is_named_set_aside_and_fetched_again(tmp_path: Path, capsys) -> None:
    settings = SimulatorSettings(activities=12, seed=51, short_limit=1000, daily_limit=10000)
    with SimulatorThread(settings) as sim:
        config = setup(tmp_path, sim)
        command = ["--config", str(config), "fetch", "--streams", "all"]
        assert main(command) == 0
        store = athlete_store(tmp_path / "data")
        parquet_dir = tmp_path / "data" / "parquet"
        whole = parquet_rows(parquet_dir)
        activity_id = sorted(store.stream_ids())[2]
        path = store.stream_path(activity_id)
        damaged = path.read_bytes()[:100]
        path.write_bytes(damaged)

        capsys.readouterr()
        assert main(["--config", str(config), "compact"]) == 0
        err = capsys.readouterr().err
        named = [line for line in err.splitlines() if "damaged raw file" in line]
        assert len(named) == 1 and str(path) in named[0] and "--streams" in named[0], err
        assert (store.data_dir / "quarantine" / "streams" / path.name).read_bytes() == damaged
        assert not path.exists()
        after = parquet_rows(parquet_dir)
        assert not [r for r in after["streams"] if r["activity_id"] == activity_id]
        others = [r for r in whole["streams"] if r["activity_id"] != activity_id]
        assert [r for r in after["streams"] if r["activity_id"] != activity_id] == others

        mark = len(sim.request_log)
        assert main(command) == 0
        asked = [r.path for r in api_records(sim, since=mark) if r.path.startswith(f"{API}/activities/")]
        assert asked == [f"{API}/activities/{activity_id}/streams"]
        assert parquet_rows(parquet_dir) == whole
