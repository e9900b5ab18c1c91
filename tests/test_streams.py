"""Streams end to end: the real CLI against the simulator, raw StreamSets, resume, "no streams", the
`streams` Parquet table read back with DuckDB, and `plan` predicting exactly what `fetch` then spends."""

from __future__ import annotations

import collections
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from functools import partial
from pathlib import Path

import orjson
import pytest

from bulkfetch.cli import main
from bulkfetch.config import STREAM_TYPES
from bulkfetch.simulator import SimulatorSettings, SimulatorThread
from bulkfetch.simulator.history import streams_of
from tests.conftest import athlete_store, cli_env, simulator_config_text

API = "/api/v3"
ALL_KEYS = ",".join(STREAM_TYPES)


def setup(tmp_path: Path, sim, **kwargs) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(simulator_config_text(sim, tmp_path / "data", **kwargs))
    return path


def run(config: Path, command: str, *args: str) -> int:
    return main(["--config", str(config), command, *args])


def spent(sim, since: int = 0) -> collections.Counter:
    """API requests by kind (list, detail, streams) since position `since` of the request log."""
    kinds: collections.Counter = collections.Counter()
    for record in sim.request_log[since:]:
        if not record.counted or record.others:
            continue
        if record.path == f"{API}/athlete/activities":
            kinds["list"] += 1
        elif record.path.endswith("/streams"):
            kinds["streams"] += 1
        elif record.path.startswith(f"{API}/activities/"):
            kinds["detail"] += 1
    return kinds


def stream_gets(sim, since: int = 0) -> list[int]:
    return [int(r.path.split("/")[-2]) for r in sim.request_log[since:]
            if r.counted and not r.others and r.path.endswith("/streams")]


def truth(sim, activity_id: int, keys: str = ALL_KEYS) -> dict:
    return streams_of(sim.history.activities[activity_id], keys)


PLAN_LINE = re.compile(r"plan: ([\d,]+) requests? \(([\d,]+) list pages?, ([\d,]+) details?"
                       r"(?:, ([\d,]+) stream sets?)?; ([\d,]+) details? already done\)")


def parse_plan(text: str) -> dict[str, int]:
    match = PLAN_LINE.search(text)
    assert match, text
    total, pages, details, streams, done = (int((g or "0").replace(",", "")) for g in match.groups())
    return {"total": total, "list": pages, "detail": details, "streams": streams, "details_done": done}


# -- download, "no streams", read-back --------------------------------------------------------------------
def test_streams_all_download_as_received_and_duckdb_reads_back_whole_activities(tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    settings = SimulatorSettings(activities=24, seed=21, short_limit=1000, daily_limit=10000)
    thread = SimulatorThread(settings)
    with thread as sim:
        manual = thread.call(partial(sim.add_activity, manual=True))
        config = setup(tmp_path, sim, fetch={"per_page": 10})
        assert run(config, "fetch", "--streams", "all") == 0
        store = athlete_store(tmp_path / "data")
        ids = set(sim.activity_ids())
        assert store.stream_ids() | store.no_stream_ids() == ids
        assert manual in store.no_stream_ids() and not store.stream_ids() & store.no_stream_ids()
        for record in sim.request_log:
            if record.path.endswith("/streams"):
                assert record.query == {"keys": ALL_KEYS, "key_by_type": "true"}  # always explicit keys
        for activity_id in store.stream_ids():  # bytes as received: parse to exactly the server's answer
            assert orjson.loads(store.stream_path(activity_id).read_bytes()) == truth(sim, activity_id)
        streams_after_details = [r.path.endswith("/streams") for r in sim.request_log if "/activities/" in r.path]
        assert streams_after_details == sorted(streams_after_details)  # every detail before any streams

        mark = len(sim.request_log)
        assert run(config, "fetch", "--streams", "all") == 0  # nothing asked again, manual included
        assert spent(sim, mark) == {"list": 3}

    with_nulls = [i for i in sorted(store.stream_ids())
                  if None in orjson.loads(store.stream_path(i).read_bytes()).get("heartrate", {}).get("data", [])]
    assert with_nulls, "the seed should give an activity with dropouts"
    parquet = tmp_path / "data" / "parquet" / "streams"
    with duckdb.connect() as db:
        db.execute(f"CREATE VIEW streams AS SELECT * FROM read_parquet('{parquet}/**/*.parquet', "
                   "hive_partitioning = true)")
        assert db.execute("SELECT count(DISTINCT activity_id) FROM streams").fetchone()[0] == len(store.stream_ids())
        assert db.execute("SELECT count(*) FROM streams WHERE activity_id = ?", [manual]).fetchone()[0] == 0
        for activity_id in (with_nulls[0], max(store.stream_ids())):
            raw = orjson.loads(store.stream_path(activity_id).read_bytes())
            summary = store.catalog()[activity_id]
            cursor = db.execute("SELECT * FROM streams WHERE activity_id = ? ORDER BY seq", [activity_id])
            names = [d[0] for d in cursor.description]
            rows = [dict(zip(names, row)) for row in cursor.fetchall()]
            length = len(raw["time"]["data"])
            assert [r["seq"] for r in rows] == list(range(length))
            start = datetime.fromisoformat(summary["start_date"].replace("Z", "+00:00"))
            for seq, row in enumerate(rows):
                assert row["start_date"] == start and row["sport_type"] == summary["sport_type"]
                assert row["year"] == start.year
                for kind in STREAM_TYPES:
                    value = raw[kind]["data"][seq] if kind in raw else None
                    if kind == "latlng":
                        assert (row["lat"], row["lng"]) == (tuple(value) if value else (None, None)), seq
                    else:
                        assert row[kind] == value, (activity_id, seq, kind)


def test_config_key_streams_and_a_404_recorded_as_no_streams_never_asked_again(tmp_path: Path) -> None:
    settings = SimulatorSettings(activities=30, seed=22, short_limit=1000, daily_limit=10000)
    thread = SimulatorThread(settings)
    with thread as sim:
        config = setup(tmp_path, sim)
        assert run(config, "fetch", "--no-compact") == 0  # streams off by default: details only
        assert spent(sim)["streams"] == 0
        store = athlete_store(tmp_path / "data")
        assert not store.stream_ids() and not store.no_stream_ids()

        sim.set_settings(missing_rate=0.3)  # from now on some activities answer 404 on their streams
        config = setup(tmp_path, sim, fetch={"streams": ["time", "heartrate"]})
        mark = len(sim.request_log)
        assert run(config, "fetch", "--no-compact") == 0
        asked = stream_gets(sim, mark)
        recorded = [i for i in sim.activity_ids() if not sim.summary(i).get("manual")]  # manual: none asked
        assert sorted(asked) == sorted(recorded) and spent(sim, mark)["detail"] == 0
        not_found = {int(r.path.split("/")[-2]) for r in sim.request_log[mark:] if r.status == 404}
        assert not_found and not_found <= store.no_stream_ids()
        assert not store.tombstones()  # a 404 on streams is not a deleted activity
        for activity_id in store.stream_ids():
            raw = orjson.loads(store.stream_path(activity_id).read_bytes())
            assert raw == truth(sim, activity_id, "time,heartrate")
            assert set(raw) <= {"time", "heartrate", "distance"}  # Strava adds distance, the base series

        sim.set_settings(missing_rate=0.0)
        mark = len(sim.request_log)
        assert run(config, "fetch", "--no-compact") == 0
        assert stream_gets(sim, mark) == []  # recorded answers, "no streams" included, are final


# -- resume -------------------------------------------------------------------------------------------------
def wait_until_the_log_settles(sim, quiet_s: float = 0.3, timeout_s: float = 5.0) -> None:
    """Until the simulator's request log has not grown for `quiet_s` (bounded by `timeout_s`)."""
    deadline = time.monotonic() + timeout_s
    seen, since = len(sim.request_log), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
        time.sleep(0.02)
        if len(sim.request_log) != seen:
            seen, since = len(sim.request_log), time.monotonic()


def test_sigkill_and_no_wait_stops_resume_without_asking_any_stream_twice(tmp_path: Path) -> None:
    # Enough activities that the killed run, however late the kill lands, leaves more streams than one
    # window's requests, and windows long enough that a loaded machine still fills one: otherwise the
    # --no-wait rerun finishes without a wait (exit 0; seen on a loaded 2-core CI machine).
    settings = SimulatorSettings(activities=60, seed=23, latency_s=0.02, short_limit=15, short_window_s=2,
                                 daily_limit=10000)
    with SimulatorThread(settings) as sim:
        config = setup(tmp_path, sim, fetch={"concurrency": 2, "streams": ["time", "latlng", "heartrate"]})
        store = athlete_store(tmp_path / "data")
        process = subprocess.Popen([sys.executable, "-m", "bulkfetch", "--config", str(config), "fetch",
                                    "--no-compact"], env=cli_env(), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not store.stream_dir.exists() or len(store.stream_ids()) < 5):
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        kept = store.stream_ids() | store.no_stream_ids()
        assert 5 <= len(kept) < 60 - settings.short_limit
        wait_until_the_log_settles(sim)  # a request the killed run sent may reach the simulator later
        # Past the window the killed run may have filled: a rerun starting in it would stop before any request.
        time.sleep(settings.short_window_s * 1.1)

        mark = len(sim.request_log)
        assert run(config, "fetch", "--no-compact", "--no-wait") == 75  # stops at the spent 1-s window
        first_pass = stream_gets(sim, mark)
        assert first_pass and not set(first_pass) & kept

        mark = len(sim.request_log)
        assert run(config, "fetch", "--no-compact") == 0
        second_pass = stream_gets(sim, mark)
        assert not set(second_pass) & (kept | set(first_pass))
        every = stream_gets(sim)
        # At most what the killed run had taken and not saved repeats: its 2 requests in flight and as many
        # answers being written (twice `concurrency` workers, see pipeline._run_workers).
        assert len(every) - len(set(every)) <= 2 * 2
        assert store.stream_ids() | store.no_stream_ids() == set(sim.activity_ids())
        for activity_id in store.stream_ids():
            raw = orjson.loads(store.stream_path(activity_id).read_bytes())
            assert raw == truth(sim, activity_id, "time,latlng,heartrate")
        assert not [r for r in sim.request_log if r.status == 429]


# -- plan -------------------------------------------------------------------------------------------------------
def test_plan_online_then_offline_predicts_exactly_what_fetch_spends(tmp_path: Path, capsys) -> None:
    settings = SimulatorSettings(activities=25, seed=24, short_limit=1000, daily_limit=10000,
                                 overall_short_limit=2000, overall_daily_limit=20000)
    thread = SimulatorThread(settings)
    with thread as sim:
        thread.call(partial(sim.add_activity, manual=True))  # manual: no stream request, planned or sent
        config = setup(tmp_path, sim, fetch={"per_page": 10})
        starts = sorted(sim.summary(i)["start_date"] for i in sim.activity_ids())
        since = starts[len(starts) // 3][:10]
        runs = [("--sport", "Run", "--since", since, "--streams", "all"),  # first run: filtered
                ("--streams", "time,heartrate"),  # then the rest, details and streams
                ("--streams", "all"),  # then the types those lack, one request each
                ("--streams", "all")]  # then nothing but the list
        plans = []
        for filters in runs:
            capsys.readouterr()
            mark = len(sim.request_log)
            assert run(config, "plan", *filters) == 0
            online = parse_plan(capsys.readouterr().out)
            assert spent(sim, mark) == {"list": online["list"]}  # plan spends list requests only
            mark = len(sim.request_log)
            assert run(config, "plan", "--offline", *filters) == 0
            offline = parse_plan(capsys.readouterr().out)
            assert len(sim.request_log) == mark and offline == online  # offline: no request at all
            assert run(config, "fetch", "--no-compact", *filters) == 0
            assert parse_plan(capsys.readouterr().err) == online  # fetch prints the same plan first
            assert spent(sim, mark) == {k: v for k, v in (("list", online["list"]), ("detail", online["detail"]),
                                                              ("streams", online["streams"])) if v}, filters
            assert online["total"] == online["list"] + online["detail"] + online["streams"]
            plans.append(online)
        assert plans[2]["detail"] == 0 and plans[2]["streams"] == plans[1]["streams"] > 0
        assert online["detail"] == online["streams"] == 0


# -- what a change of the activity does to its streams ------------------------------------------------------
def _stream_rows(data_dir: Path, activity_id: int) -> int:
    import pyarrow.dataset as ds

    table = ds.dataset(data_dir / "parquet" / "streams", format="parquet", partitioning="hive").to_table(
        filter=ds.field("activity_id") == activity_id, columns=["seq"])
    return table.num_rows


def test_a_rename_keeps_the_streams_and_only_a_changed_recording_replaces_them(tmp_path: Path) -> None:
    settings = SimulatorSettings(activities=12, seed=25, short_limit=1000, daily_limit=10000)
    thread = SimulatorThread(settings)
    with thread as sim:
        config = setup(tmp_path, sim)
        assert run(config, "fetch", "--streams", "all") == 0
        store = athlete_store(tmp_path / "data")
        renamed, recut = sorted(store.stream_ids())[:2]
        kept = store.stream_path(renamed).read_bytes()
        rows = _stream_rows(tmp_path / "data", renamed)
        assert rows > 0

        thread.call(partial(sim.edit_activity, renamed, name="Renamed", gear_id="g42", private=True))
        mark = len(sim.request_log)
        assert run(config, "fetch") == 0  # a plain fetch: no streams asked for
        assert spent(sim, mark) == {"list": 1, "detail": 1}
        assert store.stream_path(renamed).read_bytes() == kept  # raw data survives the new name
        assert _stream_rows(tmp_path / "data", renamed) == rows

        mark = len(sim.request_log)
        assert run(config, "fetch", "--streams", "all") == 0
        assert stream_gets(sim, mark) == []  # a new name is not a new recording

        thread.call(partial(sim.edit_activity, recut, distance=4321.0, moving_time=1500))
        mark = len(sim.request_log)
        assert run(config, "fetch", "--streams", "all") == 0
        assert spent(sim, mark) == {"list": 1, "detail": 1, "streams": 1} and stream_gets(sim, mark) == [recut]
        assert orjson.loads(store.stream_path(recut).read_bytes()) == truth(sim, recut)  # replaced, not lost
        assert _stream_rows(tmp_path / "data", recut) == len(truth(sim, recut)["time"]["data"])


def test_asking_for_more_stream_types_fetches_what_is_missing_once(tmp_path: Path) -> None:
    settings = SimulatorSettings(activities=10, seed=26, short_limit=1000, daily_limit=10000)
    thread = SimulatorThread(settings)
    with thread as sim:
        config = setup(tmp_path, sim)
        assert run(config, "fetch", "--no-compact", "--streams", "time,heartrate") == 0
        store = athlete_store(tmp_path / "data")
        streamed = store.stream_ids()
        assert streamed

        mark = len(sim.request_log)
        assert run(config, "fetch", "--streams", "all") == 0
        assert sorted(stream_gets(sim, mark)) == sorted(store.stream_ids() | store.no_stream_ids())
        for record in sim.request_log[mark:]:
            if record.path.endswith("/streams"):
                assert record.query == {"keys": ALL_KEYS, "key_by_type": "true"}  # one request, every type
        for activity_id in store.stream_ids():
            assert orjson.loads(store.stream_path(activity_id).read_bytes()) == truth(sim, activity_id)

        mark = len(sim.request_log)
        assert run(config, "fetch", "--no-compact", "--streams", "time") == 0  # fewer types: nothing to do
        assert run(config, "fetch", "--no-compact", "--streams", "all") == 0
        assert stream_gets(sim, mark) == []

        # Adding types to a narrower stored file asks for both sets, so the one file keeps every type.
        assert run(config, "fetch", "--no-compact") == 0
        thread.call(partial(sim.edit_activity, min(streamed), elapsed_time=4000))
        mark = len(sim.request_log)
        assert run(config, "fetch", "--no-compact", "--streams", "heartrate") == 0
        assert [r.query["keys"] for r in sim.request_log[mark:] if r.path.endswith("/streams")] == [
            "heartrate," + ",".join(k for k in STREAM_TYPES if k != "heartrate")]


def test_a_data_dir_from_before_stream_records_spends_no_request(tmp_path: Path) -> None:
    """An older version kept no stream records and fingerprinted fewer fields: nothing is fetched again."""
    from bulkfetch.plan import fingerprint

    settings = SimulatorSettings(activities=15, seed=27, short_limit=1000, daily_limit=10000)
    thread = SimulatorThread(settings)
    with thread as sim:
        manual = thread.call(partial(sim.add_activity, manual=True))
        config = setup(tmp_path, sim)
        assert run(config, "fetch", "--no-compact", "--streams", "all") == 0
        store = athlete_store(tmp_path / "data")
        old_fields = ("name", "sport_type", "distance", "moving_time", "elapsed_time", "total_elevation_gain",
                      "private", "gear_id", "upload_id")
        store.state_path("streams").unlink()
        store.write_state("fetched", {str(i): fingerprint(s, old_fields) for i, s in store.catalog().items()})
        assert manual in store.no_stream_ids()

        mark = len(sim.request_log)
        assert run(config, "fetch", "--no-compact") == 0  # without streams, it still records what they hold
        saved = store.read_state("streams")
        assert {int(k) for k in saved} == store.stream_ids() | store.no_stream_ids()
        assert run(config, "fetch", "--no-compact", "--streams", "all") == 0
        assert spent(sim, mark) == {"list": 2}
        assert run(config, "fetch", "--no-compact", "--streams", "all") == 0
        assert spent(sim, mark) == {"list": 3}


# -- what a person sees --------------------------------------------------------------------------------------

def test_progress_lines_name_streams_as_streams(tmp_path: Path, capsys) -> None:
    with SimulatorThread(SimulatorSettings(activities=4, seed=46, short_limit=1000, daily_limit=10000)) as sim:
        config = setup(tmp_path, sim)
        assert run(config, "fetch", "--no-compact", "--streams", "time") == 0
        err = capsys.readouterr().err
        assert re.search(r"^\S+ details 4/4 \(4 fetched\)", err, flags=re.M), err
        assert re.search(r"^\S+ streams 4/4 \([^)]*\bstreams?\b[^)]*\)", err, flags=re.M), err
        assert not re.search(r"^\S+ details \d+/\d+ \([^)]*streams", err, flags=re.M), err


def test_manual_activities_get_no_stream_request_and_the_summary_line_still_accounts_for_them(
        tmp_path: Path, capsys) -> None:
    # Manual activities have no streams: no request is planned or sent, and the line counts them apart.
    thread = SimulatorThread(SimulatorSettings(activities=4, seed=46, short_limit=1000, daily_limit=10000))
    with thread as sim:
        manual = {thread.call(partial(sim.add_activity, manual=True)) for _ in range(2)}
        config = setup(tmp_path, sim)
        assert run(config, "plan", "--streams", "time") == 0
        assert parse_plan(capsys.readouterr().out)["streams"] == 4
        assert run(config, "fetch", "--no-compact", "--streams", "time") == 0
        store = athlete_store(tmp_path / "data")
        sent, sets = stream_gets(sim), len(store.stream_ids())
        assert not manual & set(sent) and len(sent) == sets == 4
        assert manual <= store.no_stream_ids()  # remembered as without streams, as an answer would be
        out = capsys.readouterr().out
        assert "; 4 stream requests (4 sets), 2 manual activities without streams (no request); " in out, out
        mark = len(sim.request_log)
        assert run(config, "fetch", "--no-compact", "--streams", "all") == 0  # the other types: not for them
        assert not manual & set(stream_gets(sim, mark)) and spent(sim, mark) == {"list": 1, "streams": 4}


def test_status_counts_pending_streams_and_shows_the_last_fetchs_filters(tmp_path: Path, capsys) -> None:
    # The short window holds the list page, every detail and 3 stream sets; --no-wait stops there.
    settings = SimulatorSettings(activities=10, seed=47, short_limit=1 + 10 + 3, daily_limit=10000,
                                 short_window_s=3600)
    with SimulatorThread(settings) as sim:
        config = setup(tmp_path, sim)
        assert run(config, "fetch", "--no-compact", "--no-wait", "--until", "2100-01-01",
                   "--streams", "time,heartrate") == 75
        store = athlete_store(tmp_path / "data")
        left = len(store.catalog()) - len(store.stream_ids() | store.no_stream_ids())
        assert left == 7
        capsys.readouterr()
        assert run(config, "status", "--json") == 0
        report = orjson.loads(capsys.readouterr().out)
        assert (report["pending"], report["pending_streams"]) == (0, left)
        assert report["filters"]["streams"] == ["time", "heartrate"]
        assert report["remaining_requests"] >= left and report["eta"] is not None
        assert run(config, "status") == 0
        text = capsys.readouterr().out
        assert re.search(rf"^pending\s+0 details, {left} stream sets$", text, flags=re.M), text
        assert re.search(r"^filters\s+until 2100-01-01T00:00:00Z; streams time,heartrate$", text, flags=re.M), text
        assert re.search(r"^quota overall short ", text, flags=re.M) and re.search(r"^quota read\s+short ", text,
                                                                                     flags=re.M), text
