"""Many athletes under one app: one run serves them all, fairly, under one quota ledger; an athlete that
revoked access or lacks a permission stops alone; `--athlete` restricts a run; an older one-athlete
data_dir moves to the per-athlete layout without a request. Real CLI, real HTTP, the simulator."""

from __future__ import annotations

import asyncio
import collections
import json
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest

from bulkfetch.cli import main
from bulkfetch.fairness import FairSlots, next_lane
from bulkfetch.roster import MIGRATING, Roster
from bulkfetch.simulator import SimulatorSettings, SimulatorThread
from bulkfetch.store import RawStore
from tests.conftest import cli_env, simulator_config_text

API = "/api/v3"


def connect(config: Path, token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRAVA_REFRESH_TOKEN", token)
    try:
        assert main(["--config", str(config), "-q", "auth", "--refresh-token", "env"]) == 0
    finally:
        monkeypatch.delenv("STRAVA_REFRESH_TOKEN")


def team(tmp_path: Path, sim, monkeypatch: pytest.MonkeyPatch, **config) -> Path:
    """A data_dir with every simulated athlete connected (as a coach would: `auth --refresh-token`)."""
    path = tmp_path / "config.toml"
    path.write_text(simulator_config_text(sim, tmp_path / "data", refresh_token="", **config))
    for athlete in sim.athletes:
        connect(path, sim.refresh_token_of(athlete.athlete_id), monkeypatch)
    return path


def fetch(config: Path, *args: str) -> int:
    return main(["--config", str(config), "fetch", "--no-compact", *args])


def athlete_dir(tmp_path: Path, athlete_id: int) -> RawStore:
    return RawStore(tmp_path / "data" / "athletes" / str(athlete_id))


def api_records(sim, since: int = 0):
    return [r for r in sim.request_log[since:] if r.counted and not r.others]


def status(config: Path, capsys: pytest.CaptureFixture) -> dict:
    capsys.readouterr()
    assert main(["--config", str(config), "status", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


# -- the fair order (pure) ------------------------------------------------------------------------------

def test_next_lane_goes_round_robin_over_the_lanes_with_work() -> None:
    order = ["a", "b", "c"]
    assert next_lane(order, None, {"b", "c"}) == "b"
    assert next_lane(order, "b", {"a", "b", "c"}) == "c"
    assert next_lane(order, "c", {"a", "b", "c"}) == "a"
    assert next_lane(order, "a", {"a"}) == "a"  # alone with work: every slot is its
    assert next_lane(order, "a", set()) is None


def test_fair_slots_hand_out_one_request_at_a_time_in_turn() -> None:
    slots = FairSlots(1)
    served: list[str] = []

    async def requests(lane_key: str, count: int) -> None:
        lane = slots.lane(lane_key)
        for _ in range(count):
            async with lane:
                served.append(lane_key)
                await asyncio.sleep(0)

    async def all_of_them() -> None:
        await asyncio.gather(requests("big", 9), requests("small", 2), requests("mid", 4))

    asyncio.run(all_of_them())
    assert served[:6] == ["big", "small", "mid", "big", "small", "mid"]
    assert served.count("big") == 9 and slots.granted == {"big": 9, "small": 2, "mid": 4}


# -- one run, many athletes -----------------------------------------------------------------------------

def test_athletes_share_the_quota_fairly_and_the_smallest_is_done_first(tmp_path, monkeypatch) -> None:
    settings = SimulatorSettings(athletes=3, athlete_activities=(90, 30, 6), seed=51, short_limit=30,
                                 daily_limit=10_000, short_window_s=1)
    with SimulatorThread(settings) as sim:
        config = team(tmp_path, sim, monkeypatch, fetch={"per_page": 50, "concurrency": 2})
        mark = len(sim.request_log)
        assert fetch(config) == 0
        records = api_records(sim, mark)
        assert not [r for r in records if r.status == 429]
        for athlete in sim.athletes:
            store = athlete_dir(tmp_path, athlete.athlete_id)
            assert store.detail_ids() == set(sim.activity_ids(athlete_id=athlete.athlete_id))
        # Each window: every athlete with work left gets its share (round-robin, one request at a time).
        windows: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
        for record in records:
            windows[record.short_window][record.athlete_id] += 1
        last_of = {a.athlete_id: max(i for i, r in enumerate(records) if r.athlete_id == a.athlete_id
                                     and r.path.startswith(f"{API}/activities/")) for a in sim.athletes}
        for window, counts in windows.items():
            # Busy: details left after the window (a check for new uploads every few windows is not work
            # left). One that finishes within it takes what it needs, less.
            busy = [a for a in last_of if any(r.short_window > window and r.athlete_id == a
                                              and r.path.startswith(f"{API}/activities/") for r in records)]
            shared = sum(counts[a] for a in busy)
            for athlete_id in busy:
                assert counts[athlete_id] >= shared // len(busy) - 1, (window, counts)
        assert len(windows) >= 4  # several windows, the quota waited for
        small = sim.athletes[2].athlete_id
        assert last_of[small] < 3 * 8, "the smallest athlete waited behind the others' backfill"


def test_a_revoked_athlete_stops_alone_and_the_run_exits_2_naming_it(tmp_path, monkeypatch, capsys) -> None:
    settings = SimulatorSettings(athletes=3, athlete_activities=(12, 8, 5), seed=52, short_limit=1000,
                                 daily_limit=10_000)
    thread = SimulatorThread(settings)
    with thread as sim:
        config = team(tmp_path, sim, monkeypatch)
        revoked, scopeless, fine = (a.athlete_id for a in sim.athletes)
        thread.call(partial(sim.revoke_athlete, revoked))
        thread.call(partial(sim.set_athlete_scope, "read", scopeless))
        capsys.readouterr()
        assert fetch(config) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert f"athlete {revoked} revoked access" in err[-1] and f"athlete {scopeless} lacks a permission" in err[-1]
        assert "bulkfetch auth" in err[-1] and "Traceback" not in "\n".join(err)
        assert athlete_dir(tmp_path, fine).detail_ids() == set(sim.activity_ids(athlete_id=fine))
        report = status(config, capsys)
        states = {a["athlete_id"]: a["state"] for a in report["athletes"]}
        assert states == {revoked: "revoked", scopeless: "scope_missing", fine: "ok"}
        assert report["fetched"] == sum(a["fetched"] for a in report["athletes"]) == 5

        mark = len(sim.request_log)
        assert fetch(config, "--athlete", str(fine)) == 0  # the others are not asked at all
        assert {r.athlete_id for r in api_records(sim, mark)} == {fine}
        capsys.readouterr()
        assert main(["--config", str(config), "plan"]) == 2  # plan fetches nothing: it says what it did
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert "; everything else was planned;" in line and "fetched" not in line, line


def test_athlete_flag_names_an_unknown_athlete_in_one_line(tmp_path, monkeypatch, capsys) -> None:
    with SimulatorThread(SimulatorSettings(athletes=2, activities=3, seed=53)) as sim:
        config = team(tmp_path, sim, monkeypatch)
        mark = len(sim.request_log)
        capsys.readouterr()
        assert fetch(config, "--athlete", "12345") == 2
        err = capsys.readouterr().err
        assert "12345" in err and "not connected" in err and len(err.strip().splitlines()) == 1
        assert not api_records(sim, mark)  # refused before any request


# -- an older data_dir ------------------------------------------------------------------------------------

def test_a_one_athlete_data_dir_moves_to_its_athletes_folder_without_a_request(tmp_path, capsys) -> None:
    with SimulatorThread(SimulatorSettings(activities=20, seed=54, short_limit=1000, daily_limit=10_000)) as sim:
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, tmp_path / "data"))
        assert fetch(config) == 0
        data = tmp_path / "data"
        athlete = sim.settings.athlete_id
        # What the version before this layout left: one athlete's raw/, state/ and auth/ at the top.
        for name in ("raw", "state", "auth"):
            shutil.move(data / "athletes" / str(athlete) / name, data / name)
        shutil.rmtree(data / "athletes")
        before = status(config, capsys)
        assert before["fetched"] == 20 and before["athlete_id"] == athlete  # read in place: nothing moved
        assert (data / "raw").is_dir()

        mark = len(sim.request_log)
        assert main(["--config", str(config), "compact"]) == 0
        assert not api_records(sim, mark)
        assert not (data / "raw").exists() and athlete_dir(tmp_path, athlete).detail_ids() == set(sim.activity_ids())
        assert fetch(config) == 0
        assert [r.path for r in api_records(sim, mark)] == [f"{API}/athlete/activities"]  # a routine list check


def test_a_killed_move_is_finished_by_the_next_run(tmp_path) -> None:
    data = tmp_path / "data"
    for name in ("raw/activities", "state", "auth"):
        (data / name).mkdir(parents=True)
    (data / "state" / "athlete.json").write_text('{"athlete_id": 77}')
    (data / "raw" / "activities" / "5.json").write_text('{"id": 5}')
    roster = Roster(data)
    # Killed after the marker and the first rename.
    (roster.folder / "77").mkdir(parents=True)
    (roster.folder / MIGRATING).write_text("77")
    shutil.move(data / "raw", roster.folder / "77" / "raw")
    assert roster.needs_migration()
    moved = roster.migrate()
    assert moved is not None and moved.athlete_id == 77
    assert not roster.needs_migration() and [a.athlete_id for a in roster.athletes()] == [77]
    assert moved.store.detail_ids() == {5} and (moved.folder / "state" / "athlete.json").exists()
    # Killed after the last rename, before the marker went: readers see the athlete where it is now.
    (roster.folder / MIGRATING).write_text("77")
    assert [a.folder for a in roster.athletes()] == [moved.folder] and roster.needs_migration()
    assert roster.migrate() is not None and not roster.needs_migration()


def spawn_fetch(config: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bulkfetch", "--config", str(config), "fetch", "--no-compact",
                             *args], env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def wait_until(condition, timeout_s: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def detail_index(records, activity_id: int) -> int:
    return next(i for i, r in enumerate(records) if r.path == f"{API}/activities/{activity_id}")


def test_an_activity_uploaded_mid_run_is_fetched_within_a_window_of_the_next_head_check(tmp_path, monkeypatch):
    settings = SimulatorSettings(athletes=2, athlete_activities=(50, 25), seed=55, short_limit=10,
                                 daily_limit=10_000, short_window_s=1)
    thread = SimulatorThread(settings)
    with thread as sim:
        config = team(tmp_path, sim, monkeypatch)
        mark = len(sim.request_log)
        process = spawn_fetch(config)
        wait_until(lambda: len(sim.request_log) - mark >= 20, what="the backfill to be under way")
        first = sim.athletes[0].athlete_id
        new = thread.call(partial(sim.add_activity, first))
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
    records = api_records(sim, mark)
    assert not [r for r in records if r.status == 429]
    fetched_at = detail_index(records, new)
    seen_at = max(i for i, r in enumerate(records[:fetched_at]) if r.path == f"{API}/athlete/activities")
    assert records[fetched_at].short_window - records[seen_at].short_window <= 1  # within a window of being seen
    backlog_after = [r for r in records[fetched_at:] if r.path.startswith(f"{API}/activities/")]
    assert backlog_after, "the new activity waited for the whole backfill"
    assert new in athlete_dir(tmp_path, first).detail_ids() and "new since the run began" in stderr
    assert f"athlete {first}: details to fetch: 50 " in stderr  # several athletes: each line says whose


def test_an_athlete_connected_during_a_run_is_fetched_by_that_run(tmp_path, monkeypatch):
    settings = SimulatorSettings(athletes=2, athlete_activities=(60, 5), seed=56, short_limit=10,
                                 daily_limit=10_000, short_window_s=1)
    with SimulatorThread(settings) as sim:
        first, second = (a.athlete_id for a in sim.athletes)
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, tmp_path / "data", refresh_token=""))
        connect(config, sim.refresh_token_of(first), monkeypatch)
        process = spawn_fetch(config)
        wait_until(lambda: len(sim.request_log) >= 10, what="the run to be under way")
        connect(config, sim.refresh_token_of(second), monkeypatch)  # `auth` beside a running fetch
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
        assert athlete_dir(tmp_path, second).detail_ids() == set(sim.activity_ids(athlete_id=second))
        assert f"athlete {second} was connected" in stderr


def test_follow_fetches_what_appears_after_the_backlog_until_sigterm(tmp_path):
    settings = SimulatorSettings(activities=8, seed=57, short_limit=100, daily_limit=10_000, short_window_s=1)
    thread = SimulatorThread(settings)
    with thread as sim:
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, tmp_path / "data"))
        process = spawn_fetch(config, "--follow")
        try:
            store = lambda: Roster(tmp_path / "data").athletes()  # noqa: E731 - found once the run binds it
            wait_until(lambda: any(len(a.store.detail_ids()) == 8 for a in store()), what="the backlog")
            new = thread.call(sim.add_activity)
            wait_until(lambda: new in store()[0].store.detail_ids(), timeout_s=20, what="the new activity")
            assert process.poll() is None  # still following
        finally:
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=30)
        assert process.returncode == 130, stderr
        assert not [r for r in api_records(sim) if r.status == 429] and "Traceback" not in stderr


def test_exit_2_for_a_revoked_athlete_wins_over_75_for_the_quota(tmp_path, monkeypatch, capsys):
    settings = SimulatorSettings(athletes=2, athlete_activities=(30, 5), seed=58, short_limit=10,
                                 daily_limit=10_000, short_window_s=60)
    thread = SimulatorThread(settings)
    with thread as sim:
        config = team(tmp_path, sim, monkeypatch)
        thread.call(partial(sim.revoke_athlete, sim.athletes[1].athlete_id))
        capsys.readouterr()
        assert fetch(config, "--no-wait") == 2  # the quota stopped the run too (75), but a revoked athlete needs you
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert f"athlete {sim.athletes[1].athlete_id} revoked access" in err
        assert "the quota stopped the others' run too" in err and "everything else was fetched" not in err


def test_a_data_dir_that_never_recorded_its_athlete_is_named_by_its_next_list_page(tmp_path, capsys):
    with SimulatorThread(SimulatorSettings(activities=12, seed=59, short_limit=1000, daily_limit=10_000)) as sim:
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, tmp_path / "data"))
        assert fetch(config) == 0
        data, athlete = tmp_path / "data", sim.settings.athlete_id
        for name in ("raw", "state", "auth"):  # an old layout without state/athlete.json or the id in the tokens
            shutil.move(data / "athletes" / str(athlete) / name, data / name)
        shutil.rmtree(data / "athletes")
        (data / "state" / "athlete.json").unlink()
        tokens = json.loads((data / "auth" / "tokens.json").read_text())
        (data / "auth" / "tokens.json").write_text(json.dumps({**tokens, "athlete_id": None}))
        mark = len(sim.request_log)
        assert fetch(config) == 0
        assert [r.path for r in api_records(sim, mark)] == [f"{API}/athlete/activities"]  # no detail again
        assert [a.athlete_id for a in Roster(data).athletes()] == [athlete]
        assert athlete_dir(tmp_path, athlete).detail_ids() == set(sim.activity_ids())


def test_plan_and_status_show_each_athlete_and_the_total(tmp_path, monkeypatch, capsys):
    settings = SimulatorSettings(athletes=2, athlete_activities=(9, 4), seed=60, short_limit=1000, daily_limit=10_000)
    with SimulatorThread(settings) as sim:
        config = team(tmp_path, sim, monkeypatch)
        first, second = (a.athlete_id for a in sim.athletes)
        assert fetch(config, "--athlete", str(second)) == 0
        capsys.readouterr()
        mark = len(sim.request_log)
        assert main(["--config", str(config), "plan", "--offline"]) == 0
        out = capsys.readouterr().out
        assert f"athlete {second}: 1 request (1 list, 0 details, 0 streams)" in out  # the next routine check
        assert f"athlete {first}: " in out and not api_records(sim, mark)
        assert main(["--config", str(config), "status"]) == 0
        out = capsys.readouterr().out
        assert "(2 athletes)" in out
        assert f"athlete    {second}: 4 listed, 4 fetched, 0 pending" in out
        assert f"athlete    {first}: 0 listed, 0 fetched, 0 pending, last fetch never" in out


def test_a_revoked_athlete_whose_access_token_expired_does_not_stall_the_others(tmp_path, monkeypatch):
    """Its refresh is rejected after it took a quota ticket: the ticket must leave the app's ledger."""
    settings = SimulatorSettings(athletes=2, athlete_activities=(5, 30), seed=61, short_limit=10,
                                 daily_limit=10_000, short_window_s=1)
    thread = SimulatorThread(settings)
    with thread as sim:
        config = team(tmp_path, sim, monkeypatch, fetch={"concurrency": 1})
        revoked, fine = (a.athlete_id for a in sim.athletes)
        thread.call(partial(sim.revoke_athlete, revoked))
        tokens = Roster(tmp_path / "data").athlete(revoked).tokens
        tokens.save(replace(tokens.load(), expires_at=0.0))  # expired: refreshed first, which Strava rejects
        result = subprocess.run([sys.executable, "-m", "bulkfetch", "--config", str(config), "fetch",
                                 "--no-compact"], env=cli_env(), capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, result.stderr
        assert athlete_dir(tmp_path, fine).detail_ids() == set(sim.activity_ids(athlete_id=fine))


def test_head_checks_and_the_athletes_run_share_one_token_chain(tmp_path, monkeypatch):
    """Access tokens expiring during a long run: the list-head check and the run refresh one chain (two
    would rotate the refresh token under each other, and the athlete would look revoked)."""
    settings = SimulatorSettings(athletes=2, athlete_activities=(60, 20), seed=62, short_limit=10,
                                 daily_limit=10_000, short_window_s=1, access_token_lifetime_s=2.0)
    with SimulatorThread(settings) as sim:
        config = team(tmp_path, sim, monkeypatch, fetch={"refresh_margin_s": 1})
        result = subprocess.run([sys.executable, "-m", "bulkfetch", "--config", str(config), "fetch",
                                 "--no-compact"], env=cli_env(), capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        for athlete in sim.athletes:
            assert athlete_dir(tmp_path, athlete.athlete_id).detail_ids() == \
                set(sim.activity_ids(athlete_id=athlete.athlete_id))


def test_a_rejected_config_seed_is_not_tried_again_once_an_athlete_is_connected(tmp_path, monkeypatch, capsys):
    with SimulatorThread(SimulatorSettings(activities=4, seed=63, short_limit=1000, daily_limit=10_000)) as sim:
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, tmp_path / "data", refresh_token="rotated-long-ago"))
        capsys.readouterr()
        assert fetch(config) == 2
        assert "the config's refresh_token revoked access" in capsys.readouterr().err
        connect(config, sim.refresh_token_of(sim.settings.athlete_id), monkeypatch)
        assert fetch(config) == 0  # the stale seed stays in the config: it is not tried again
        assert [a.athlete_id for a in Roster(tmp_path / "data").athletes()] == [sim.settings.athlete_id]


def test_a_revoked_athletes_pending_work_waits_outside_the_totals_and_the_eta(tmp_path, monkeypatch, capsys):
    """No run does a revoked athlete's work before it runs `auth` again: status says it waits, and neither the
    totals nor the ETA count it (hands-on: 'pending 38 details' and an ETA for requests no run would make)."""
    settings = SimulatorSettings(athletes=2, athlete_activities=(9, 4), seed=61, short_limit=1000, daily_limit=10_000)
    thread = SimulatorThread(settings)
    with thread as sim:
        config = team(tmp_path, sim, monkeypatch)
        revoked, fine = (a.athlete_id for a in sim.athletes)
        assert main(["--config", str(config), "plan"]) == 0  # both listed, nothing fetched
        thread.call(partial(sim.revoke_athlete, revoked))
        assert fetch(config) == 2
        report = status(config, capsys)
        by_id = {a["athlete_id"]: a for a in report["athletes"]}
        assert by_id[revoked]["state"] == "revoked" and by_id[revoked]["awaits_auth"]
        assert by_id[revoked]["pending"] == 9 and not by_id[fine]["awaits_auth"]
        assert report["pending"] == report["pending_streams"] == 0
        assert report["remaining_requests"] == by_id[fine]["remaining_requests"] == 1  # its next routine list check
        assert report["awaiting_auth"] == {"athletes": [revoked], "pending": 9, "pending_streams": 0,
                                           "remaining_requests": by_id[revoked]["remaining_requests"]}
        assert main(["--config", str(config), "status"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert "pending    0 details" in lines
        assert f"waiting    9 details of athlete {revoked}, not in the totals or the ETA: no run fetches them " \
               "before the athlete runs 'bulkfetch auth' again" in lines
        assert [line for line in lines if line.startswith("ETA ")][0].split(" for ")[1].startswith("1 request ")
