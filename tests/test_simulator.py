"""The Strava simulator over real HTTP on 127.0.0.1: limits, headers, paging, payload shapes, OAuth, faults."""

from __future__ import annotations

import asyncio
import math
import os
import re
import subprocess
import sys
import time
import tomllib
import urllib.parse
import urllib.request
from datetime import UTC
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bulkfetch.simulator import RequestRecord, Simulator, SimulatorSettings, SimulatorThread
from bulkfetch.simulator.athletes import approving_athlete, has_room_for
from bulkfetch.simulator.history import History, stream_points
from bulkfetch.simulator.motion import Motion, Pause, Sensors
from bulkfetch.simulator.ratelimit import Limits, RateCounter, Usage, Windows, window_end_s, window_index
from bulkfetch.simulator.tokens import grant_scope, parse_scope
from tests.conftest import cli_env

pytestmark = pytest.mark.timeout(60)
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Usage", "X-ReadRateLimit-Limit", "X-ReadRateLimit-Usage")
CLIENT = {"client_id": "12345", "client_secret": "sim-client-secret"}


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def get(session: aiohttp.ClientSession, sim: Simulator, path: str, token: str | None = None,
              **params: Any) -> tuple[int, Any, Any]:
    """(status, parsed JSON body, headers) of one API GET with the Bearer token (a fresh one by default)."""
    headers = {"Authorization": f"Bearer {token or sim.issue_access_token()}"}
    async with session.get(sim.api_url + path, headers=headers, params=params) as response:
        body = await response.read()
        return response.status, orjson.loads(body) if body else None, response.headers


async def sleep_past_boundary(window_s: float, margin_s: float = 0.05) -> None:
    """Wait until just after the next aligned window starts, so a test's burst stays in one window."""
    await asyncio.sleep(window_end_s(time.time(), window_s) - time.time() + margin_s)


# ---------------------------------------------------------------- window math (pure)


def test_window_index_is_aligned_to_the_epoch() -> None:
    assert window_index(0, 900) == 0
    assert window_index(899.999, 900) == 0
    assert window_index(900, 900) == 1
    assert window_index(1_700_000_000, 86400) == 1_700_000_000 // 86400
    assert window_end_s(1000.5, 900) == 1800


@given(st.floats(min_value=0, max_value=4e9), st.sampled_from([1.0, 2.0, 900.0, 86400.0]))
def test_a_time_lies_inside_its_window(time_s: float, length_s: float) -> None:
    start = window_index(time_s, length_s) * length_s
    assert start <= time_s < start + length_s or math.isclose(time_s, start + length_s)


def test_counter_rejects_over_the_limit_but_still_counts() -> None:
    counter = RateCounter()
    read, overall = Limits(2, 3), Limits(10, 10)
    counter.roll(Windows(0, 0))
    verdicts = [counter.count(read, overall) for _ in range(3)]
    assert [v.exceeded for v in verdicts] == [None, None, "read rate limit"]
    assert verdicts[-1].read == Usage(3, 3)  # usage reads 3 against a limit of 2
    assert counter.roll(Windows(1, 0)) is True  # next short window: short resets, daily keeps counting
    assert counter.count(read, overall).read == Usage(1, 4)
    assert counter.count(read, overall).exceeded == "read rate limit"  # daily 5 > 3
    assert counter.roll(Windows(1, 0)) is False
    counter.roll(Windows(2, 1))
    assert counter.usage_at(Windows(2, 1))[0] == Usage(0, 0)


def test_overall_bucket_named_when_it_alone_is_exceeded() -> None:
    counter = RateCounter()
    counter.roll(Windows(0, 0))
    counter.add(5)
    assert counter.count(Limits(100, 1000), Limits(5, 1000)).exceeded == "overall rate limit"


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2)), max_size=40))
def test_usage_never_counts_another_windows_requests(steps: list[tuple[int, int]]) -> None:
    """Per short window, short usage equals the requests counted in that window (windows only advance)."""
    counter = RateCounter()
    short = 0
    counted: dict[int, int] = {}
    for advance, requests in steps:
        short += advance
        counter.roll(Windows(short, 0))
        for _ in range(requests):
            counter.count(Limits(1, 1), Limits(1, 1))
        counted[short] = counted.get(short, 0) + requests
        assert counter.read.short == counted[short]
    assert counter.read.daily == sum(counted.values())


def test_scope_granting() -> None:
    allowed = parse_scope("read,activity:read")
    assert grant_scope(parse_scope("read,activity:read_all"), allowed) == {"read", "activity:read"}
    assert grant_scope(parse_scope("read"), parse_scope("read,activity:read_all")) == {"read"}


def test_boundaries_are_the_first_seconds_reaching_each_unit_then_the_rest() -> None:
    motion = Motion(distance_m=2500.0, moving_s=1000, elapsed_s=1000, wave=0.2, waves=3, pauses=(), route=None,
                    sensors=Sensors())
    ends = motion.boundaries(1000.0)
    assert len(ends) == 3 and ends[-1] == 1000
    for k, end in enumerate(ends[:2], start=1):
        assert motion.recorded_distance(end) >= 1000 * k > motion.recorded_distance(end - 1)
    exact = Motion(distance_m=2000.0, moving_s=800, elapsed_s=800, wave=0.1, waves=1, pauses=(), route=None,
                   sensors=Sensors())
    assert len(exact.boundaries(1000.0)) == 2 and exact.boundaries(1000.0)[-1] == 800  # no empty last split
    still = Motion(distance_m=0.0, moving_s=600, elapsed_s=600, wave=0.1, waves=1, pauses=(), route=None,
                   sensors=Sensors())
    assert still.boundaries(1000.0) == [600]


@settings(max_examples=40, deadline=None)
@given(st.floats(min_value=0.5, max_value=15.0), st.integers(min_value=60, max_value=6000),
       st.lists(st.tuples(st.floats(min_value=0.05, max_value=0.95), st.integers(min_value=1, max_value=300)),
                max_size=3),
       st.floats(min_value=0.0, max_value=0.6), st.integers(min_value=1, max_value=6),
       st.sampled_from([1000.0, 1609.344]))
def test_splits_solved_from_the_motion_add_up_and_end_where_the_distance_first_reaches_them(
        speed_mps: float, moving_s: int, stops: list[tuple[float, int]], wave: float, waves: int,
        unit_m: float) -> None:
    distance_m = round(speed_mps * moving_s, 1)
    pauses = tuple(Pause(at, length) for at, length in sorted({max(1, int(f * moving_s)): n for f, n in stops}.items()))
    elapsed_s = moving_s + sum(p.length_s for p in pauses)
    motion = Motion(distance_m=distance_m, moving_s=moving_s, elapsed_s=elapsed_s, wave=wave, waves=waves,
                    pauses=pauses, route=None, sensors=Sensors())
    spans = motion.spans(motion.boundaries(unit_m))
    assert math.isclose(sum(s.distance_m for s in spans), distance_m, abs_tol=0.02)
    assert sum(s.elapsed_s for s in spans) == elapsed_s and sum(s.moving_s for s in spans) == moving_s
    for k, span in enumerate(spans[:-1], start=1):
        assert motion.recorded_distance(span.end_s) >= k * unit_m > motion.recorded_distance(span.end_s - 1)
    # Moving time is the seconds in which the recorded distance grew: what a derivation from the file counts.
    recorded = [motion.recorded_distance(t) for t in range(elapsed_s + 1)]
    for span in spans:
        assert sum(recorded[t] > recorded[t - 1] for t in range(span.start_s + 1, span.end_s + 1)) == span.moving_s


def test_history_builds_fast_and_reproducibly() -> None:
    started = time.process_time()  # CPU time: the machines running the suite are shared
    big = History.build(seed=5, count=5000, athlete_id=1, now_s=1.8e9)
    assert time.process_time() - started < 3.0  # 1.3-1.6 s alone with the pace model; CPU time grows under load
    again = History.build(seed=5, count=5000, athlete_id=1, now_s=1.8e9)
    assert [a.record for a in big.ordered()[:50]] == [a.record for a in again.ordered()[:50]]
    starts = [a.start_s for a in big.ordered()]
    assert len(set(starts)) < len(starts)  # some activities share their start second
    assert 3 * 365 * 86400 < starts[0] - starts[-1] < 5 * 365 * 86400


def test_ids_grow_with_upload_order_backdated_or_after_a_deletion() -> None:
    """Strava's ids grow with upload time and are never given again (what export_view.deleted_on_strava
    relies on): a backdated upload, and one after the newest activity was deleted, get greater ids."""
    import random

    history = History.build(seed=5, count=20, athlete_id=1, now_s=1.8e9)
    newest = max(history.activities)
    history.delete(newest)
    rng = random.Random(1)
    backdated = history.add(rng, 1.8e9, {"start_date": "2019-01-01T10:00:00Z"})
    assert backdated > newest and history.ordered()[-1].id == backdated  # the oldest by date, the newest id
    history.delete(backdated)
    assert history.add(rng, 1.8e9, {}) > backdated


# ---------------------------------------------------------------- rate limits over HTTP


def test_headers_429_counting_and_window_reset() -> None:
    async def scenario() -> None:
        settings = SimulatorSettings(activities=10, short_limit=3, daily_limit=100, overall_short_limit=50,
                                     overall_daily_limit=500, short_window_s=2)
        async with Simulator(settings) as sim, aiohttp.ClientSession() as session:
            token = sim.issue_access_token()
            await sleep_past_boundary(2)
            answers = [await get(session, sim, "/athlete", token) for _ in range(5)]
            assert [status for status, _, _ in answers] == [200, 200, 200, 429, 429]
            for index, (_, _, headers) in enumerate(answers, start=1):
                assert headers["X-RateLimit-Limit"] == "50,500"
                assert headers["X-ReadRateLimit-Limit"] == "3,100"
                assert headers["X-ReadRateLimit-Usage"] == f"{index},{index}"
                assert headers["X-RateLimit-Usage"] == f"{index},{index}"
                assert "Date" in headers
            assert answers[3][1] == {"message": "Rate Limit Exceeded", "errors": [
                {"resource": "Application", "field": "read rate limit", "code": "exceeded"}]}
            assert sim.usage() == {"read": (5, 5), "overall": (5, 5)}
            bad = await get(session, sim, "/activities/1", "not-a-token")  # 401s count too
            assert bad[0] == 429 and bad[2]["X-ReadRateLimit-Usage"] == "6,6"
            await sleep_past_boundary(2)
            status, _, headers = await get(session, sim, "/athlete", token)
            assert status == 200 and headers["X-ReadRateLimit-Usage"] == "1,7"
            api = [r for r in sim.request_log if r.path.startswith("/api/v3")]
            assert all(r.counted for r in api) and len({r.short_window for r in api}) == 2

    run(scenario())


def test_rate_limits_off_still_sends_headers() -> None:
    async def scenario() -> None:
        async with Simulator(SimulatorSettings(activities=5, short_limit=1, rate_limits=False)) as sim, \
                aiohttp.ClientSession() as session:
            answers = [await get(session, sim, "/athlete") for _ in range(3)]
            assert [a[0] for a in answers] == [200, 200, 200]
            assert answers[-1][2]["X-ReadRateLimit-Usage"].startswith("3,")
            assert int(answers[-1][2]["X-ReadRateLimit-Limit"].split(",")[0]) > 10**6

    run(scenario())


def test_other_process_usage_shows_in_headers_and_log() -> None:
    async def scenario() -> None:
        settings = SimulatorSettings(activities=5, short_limit=10, short_window_s=1, other_usage_per_window=7)
        async with Simulator(settings) as sim, aiohttp.ClientSession() as session:
            token = sim.issue_access_token()
            await sleep_past_boundary(1)
            statuses = [(await get(session, sim, "/athlete", token))[0] for _ in range(4)]
            assert statuses == [200, 200, 200, 429]  # 7 others + 3 of ours fill the 10
            others = [r for r in sim.request_log if r.others]
            assert others and all(r.counted and r.path == "(other process)" for r in others)
            sim.set_settings(other_usage_per_window=0)
            await sleep_past_boundary(1)
            _, _, headers = await get(session, sim, "/athlete", token)
            assert headers["X-ReadRateLimit-Usage"].startswith("1,")

    run(scenario())


# ---------------------------------------------------------------- paging


def test_paging_order_bounds_clamp_and_end() -> None:
    async def scenario() -> None:
        async with Simulator(SimulatorSettings(activities=260, rate_limits=False)) as sim, \
                aiohttp.ClientSession() as session:
            token = sim.issue_access_token()
            status, first, _ = await get(session, sim, "/athlete/activities", token)
            assert status == 200 and len(first) == 30  # default per_page
            _, clamped, _ = await get(session, sim, "/athlete/activities", token, per_page=500)
            assert len(clamped) == 200
            _, rest, _ = await get(session, sim, "/athlete/activities", token, per_page=200, page=2)
            _, past, _ = await get(session, sim, "/athlete/activities", token, per_page=200, page=3)
            assert past == []
            listed = clamped + rest
            assert [a["id"] for a in listed] == sim.activity_ids()
            keys = [(a["start_date"], a["id"]) for a in listed]
            assert keys == sorted(keys, reverse=True)  # newest first, ties by id descending
            assert all(a["id"] > 2**32 and a["resource_state"] == 2 for a in listed)
            pivot = listed[100]
            pivot_s = int(_epoch(pivot["start_date"]))
            _, before, _ = await get(session, sim, "/athlete/activities", token, before=pivot_s, per_page=200)
            _, after, _ = await get(session, sim, "/athlete/activities", token, after=pivot_s, per_page=200)
            assert all(_epoch(a["start_date"]) < pivot_s for a in before)
            assert all(_epoch(a["start_date"]) > pivot_s for a in after)
            assert pivot["id"] not in {a["id"] for a in before + after}  # strict on both sides
            for bad in ({"page": "x"}, {"per_page": "0"}, {"before": "yesterday"}):
                status, body, _ = await get(session, sim, "/athlete/activities", token, **bad)
                assert status == 400 and body["message"] == "Bad Request"

    run(scenario())


def _epoch(text: str) -> float:
    from datetime import datetime
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


# ---------------------------------------------------------------- payload shapes


def test_detail_shapes_and_absent_fields() -> None:
    async def scenario() -> None:
        async with Simulator(SimulatorSettings(activities=300, seed=2, rate_limits=False)) as sim, \
                aiohttp.ClientSession() as session:
            token = sim.issue_access_token()
            summaries = [sim.summary(i) for i in sim.activity_ids()]
            run_summary = next(s for s in summaries if s["sport_type"] == "Run" and not s["manual"]
                               and s["has_heartrate"] and s["distance"] > 3000)
            status, detail, _ = await get(session, sim, f"/activities/{run_summary['id']}", token)
            assert status == 200 and detail == sim.detail(run_summary["id"]) and detail["resource_state"] == 3
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", detail["start_date_local"])
            assert detail["map"]["polyline"] and "polyline" not in run_summary["map"]
            assert {k: v for k, v in detail.items() if k in run_summary and k not in ("map", "resource_state")} \
                == {k: v for k, v in run_summary.items() if k not in ("map", "resource_state")}
            metric = detail["splits_metric"]
            assert set(metric[0]) == {"distance", "elapsed_time", "elevation_difference", "moving_time", "split",
                                      "average_speed", "average_grade_adjusted_speed", "average_heartrate",
                                      "pace_zone"}
            assert [s["split"] for s in metric] == list(range(1, len(metric) + 1))
            assert math.isclose(sum(s["distance"] for s in metric), detail["distance"], abs_tol=1)
            assert abs(detail["splits_standard"][0]["distance"] - 1609.34) < 1
            assert detail["laps"] and detail["best_efforts"] and "segment_efforts" in detail
            effort = detail["best_efforts"][0]
            assert {"name", "pr_rank", "achievements", "start_index", "end_index"} <= set(effort)
            assert "average_watts" not in detail and "device_name" in detail

            no_hr = next(s for s in summaries if not s["has_heartrate"])
            assert "average_heartrate" not in no_hr and "max_heartrate" not in no_hr
            ride = next(s for s in summaries if s["sport_type"] in ("Ride", "VirtualRide") and not s["manual"])
            _, ride_detail, _ = await get(session, sim, f"/activities/{ride['id']}", token)
            assert "splits_metric" not in ride_detail and ride_detail["laps"] and "average_watts" in ride_detail
            manual = next(s for s in summaries if s["manual"])
            _, manual_detail, _ = await get(session, sim, f"/activities/{manual['id']}", token)
            assert manual_detail["upload_id"] is None and manual_detail["external_id"] is None
            assert "device_name" not in manual_detail and "polyline" not in manual_detail["map"]
            assert "splits_metric" not in manual_detail
            strength = next(s for s in summaries if s["sport_type"] == "WeightTraining")
            assert strength["distance"] == 0
            assert any(s["private"] and s["visibility"] == "only_me" for s in summaries)
            assert any(s["workout_type"] is None for s in summaries) and any(s["workout_type"] for s in summaries)
            _, laps, _ = await get(session, sim, f"/activities/{run_summary['id']}/laps", token)
            assert laps == detail["laps"] and laps[0]["lap_index"] == 1

    run(scenario())


def test_streams_shape_and_manual_empty() -> None:
    async def scenario() -> None:
        async with Simulator(SimulatorSettings(activities=200, seed=3, rate_limits=False)) as sim, \
                aiohttp.ClientSession() as session:
            token = sim.issue_access_token()
            summaries = [sim.summary(i) for i in sim.activity_ids()]
            gps_run = next(s for s in summaries if s["sport_type"] == "Run" and not s["manual"] and s["has_heartrate"])
            keys = "time,distance,latlng,altitude,heartrate,moving,watts"
            status, streams, _ = await get(session, sim, f"/activities/{gps_run['id']}/streams", token,
                                           keys=keys, key_by_type="true")
            assert status == 200 and set(streams) == {"time", "distance", "latlng", "altitude", "heartrate", "moving"}
            assert len({s["original_size"] for s in streams.values()}) == 1  # all streams the same length
            for stream in streams.values():
                assert stream["series_type"] == "distance" and stream["resolution"] == "high"
                assert len(stream["data"]) == stream["original_size"]
            time_data, distance = streams["time"]["data"], streams["distance"]["data"]
            assert time_data[0] == 0 and time_data[-1] == gps_run["elapsed_time"]
            assert distance == sorted(distance) and math.isclose(distance[-1], gps_run["distance"], abs_tol=0.2)
            assert all(p is None or len(p) == 2 for p in streams["latlng"]["data"])
            assert all(isinstance(m, bool) for m in streams["moving"]["data"])
            _, only_distance, _ = await get(session, sim, f"/activities/{gps_run['id']}/streams", token,
                                            key_by_type="true")
            assert set(only_distance) == {"distance"}
            manual = next(s for s in summaries if s["manual"])
            _, empty, _ = await get(session, sim, f"/activities/{manual['id']}/streams", token, keys=keys,
                                    key_by_type="true")
            assert empty == {}
            with_nulls = [i for i in sim.activity_ids()[:80]
                          if any(p is None for p in (await get(session, sim, f"/activities/{i}/streams", token,
                                                               keys="heartrate,altitude"))[1]
                                 .get("altitude", {"data": []})["data"])]
            assert with_nulls  # a few activities have dropouts inside their streams

    run(scenario())


# ---------------------------------------------------------------- auth, scope, 404


def test_auth_errors_and_scope() -> None:
    async def scenario() -> None:
        async with Simulator(SimulatorSettings(activities=60, seed=4)) as sim, aiohttp.ClientSession() as session:
            token = sim.issue_access_token()
            invalid = {"message": "Authorization Error",
                       "errors": [{"resource": "Athlete", "field": "access_token", "code": "invalid"}]}
            assert (await get(session, sim, "/athlete", "unknown"))[:2] == (401, invalid)
            async with session.get(sim.api_url + "/athlete", params={"access_token": token}) as response:
                assert response.status == 401 and await response.json() == invalid
                assert "X-RateLimit-Usage" in response.headers
            not_found = {"message": "Record Not Found",
                         "errors": [{"resource": "Activity", "field": "id", "code": "invalid"}]}
            for bad in ("0", "-5", "abc", "1.5", "99"):
                assert (await get(session, sim, f"/activities/{bad}", token))[:2] == (404, not_found)
            private = [i for i in sim.activity_ids() if sim.summary(i)["private"]]
            assert private and sim.activity_ids(include_private=False) != sim.activity_ids()

            sim.set_settings(scope="read,activity:read")
            public_token = sim.issue_access_token()
            _, listed, _ = await get(session, sim, "/athlete/activities", public_token, per_page=200)
            assert [a["id"] for a in listed] == sim.activity_ids(include_private=False)
            assert (await get(session, sim, f"/activities/{private[0]}", public_token))[0] == 404
            assert (await get(session, sim, f"/activities/{private[0]}", token))[0] == 200

            sim.set_settings(scope="read")
            read_only = sim.issue_access_token()
            status, body, _ = await get(session, sim, "/athlete/activities", read_only)
            assert status == 401 and body["errors"][0] == {"resource": "AccessToken",
                                                           "field": "activity:read_permission", "code": "missing"}
            assert (await get(session, sim, "/athlete", read_only))[0] == 200

    run(scenario())


def test_expired_access_token() -> None:
    async def scenario() -> None:
        async with Simulator(SimulatorSettings(activities=3, access_token_lifetime_s=0.2)) as sim, \
                aiohttp.ClientSession() as session:
            token = sim.issue_access_token()
            assert (await get(session, sim, "/athlete", token))[0] == 200
            await asyncio.sleep(0.3)
            assert (await get(session, sim, "/athlete", token))[0] == 401

    run(scenario())


def test_refresh_rotation_bad_client_and_code_grant() -> None:
    async def scenario() -> None:
        async with Simulator(SimulatorSettings(activities=3, scope="read,activity:read")) as sim, \
                aiohttp.ClientSession() as session:

            async def token_post(**fields: str) -> tuple[int, dict, Any]:
                async with session.post(sim.oauth_url + "/token", data=fields) as response:
                    return response.status, await response.json(), response.headers

            first = sim.current_refresh_token
            assert first == "sim-refresh-0"
            status, body, headers = await token_post(**CLIENT, grant_type="refresh_token", refresh_token=first)
            assert status == 200 and "X-RateLimit-Usage" not in headers
            assert set(body) == {"token_type", "access_token", "expires_at", "expires_in", "refresh_token"}
            assert body["refresh_token"] == sim.current_refresh_token != first and body["expires_in"] == 21600
            assert (await get(session, sim, "/athlete", body["access_token"]))[0] == 200
            stale = await token_post(**CLIENT, grant_type="refresh_token", refresh_token=first)
            assert stale[:2] == (400, {"message": "Bad Request", "errors": [
                {"resource": "RefreshToken", "field": "refresh_token", "code": "invalid"}]})
            wrong = await token_post(client_id="12345", client_secret="nope", grant_type="refresh_token",
                                     refresh_token=sim.current_refresh_token)
            assert wrong[0] == 400 and wrong[1]["errors"][0]["resource"] == "Application"
            sim.set_settings(token_outage=True)
            current = sim.current_refresh_token
            down = await token_post(**CLIENT, grant_type="refresh_token", refresh_token=current)
            assert down[0] == 503 and sim.current_refresh_token == current  # nothing rotated
            sim.set_settings(token_outage=False)

            params = {"client_id": "12345", "redirect_uri": "http://localhost:8123/exchange_token",
                      "response_type": "code", "scope": "read,activity:read_all", "state": "s t&8",
                      "approval_prompt": "force"}
            async with session.get(sim.oauth_url + "/authorize", params=params, allow_redirects=False) as response:
                assert response.status == 302
                location = aiohttp.client.URL(response.headers["Location"])
            assert location.host == "localhost" and location.path == "/exchange_token"
            assert location.query["state"] == "s t&8" and location.query["scope"] == "read,activity:read"
            code = location.query["code"]
            status, granted, _ = await token_post(**CLIENT, grant_type="authorization_code", code=code)
            assert status == 200 and granted["athlete"]["id"] == sim.settings.athlete_id
            assert granted["refresh_token"] == sim.current_refresh_token
            reused = await token_post(**CLIENT, grant_type="authorization_code", code=code)
            assert reused[0] == 400 and reused[1]["errors"][0]["resource"] == "AuthorizationCode"
            assert not any(r.counted for r in sim.request_log if r.path.startswith("/oauth"))

    run(scenario())


# ---------------------------------------------------------------- faults


def test_error_drop_and_truncate_faults() -> None:
    async def scenario() -> None:
        async with Simulator(SimulatorSettings(activities=5, rate_limits=False)) as sim, \
                aiohttp.ClientSession() as session:
            token = sim.issue_access_token()
            sim.set_settings(error_rate=1.0)
            statuses = {(await get_raw(session, sim, "/athlete", token))[0] for _ in range(30)}
            assert 500 in statuses and statuses <= {500, 502, 503}
            sim.set_settings(error_rate=0.0, drop_rate=1.0)
            with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)):
                await get_raw(session, sim, "/athlete", token)
            assert sim.request_log[-1].status == 0 and sim.request_log[-1].counted
            sim.set_settings(drop_rate=0.0, truncate_rate=1.0)
            status, body, headers = await get_raw(session, sim, "/athlete", token)
            assert status == 200 and int(headers["Content-Length"]) == len(body)
            with pytest.raises(orjson.JSONDecodeError):
                orjson.loads(body)
            sim.set_settings(truncate_rate=0.0, app_inactive=True)
            status, body, headers = await get_raw(session, sim, "/athlete", token)
            fault = orjson.loads(body)
            assert status == 403 and "Application Inactive" in fault["message"]
            assert fault["errors"][0]["code"] == "inactive" and "X-RateLimit-Usage" in headers

    run(scenario())


async def get_raw(session: aiohttp.ClientSession, sim: Simulator, path: str, token: str) -> tuple[int, bytes, Any]:
    async with session.get(sim.api_url + path, headers={"Authorization": f"Bearer {token}"}) as response:
        return response.status, await response.read(), response.headers


def test_latency_missing_and_mutation_knobs() -> None:
    async def scenario() -> None:
        settings = SimulatorSettings(activities=100, rate_limits=False, latency_s=0.1, missing_rate=0.3)
        async with Simulator(settings) as sim, aiohttp.ClientSession() as session:
            token = sim.issue_access_token()
            started = time.perf_counter()
            await asyncio.gather(*(get(session, sim, "/athlete", token) for _ in range(10)))
            assert 0.1 <= time.perf_counter() - started < 0.6  # slept concurrently, loop not blocked
            sim.set_settings(latency_s=0.0)
            ids = sim.activity_ids()[:40]
            first = [(await get(session, sim, f"/activities/{i}", token))[0] for i in ids]
            second = [(await get(session, sim, f"/activities/{i}/laps", token))[0] for i in ids]
            assert first == second and 404 in first and 200 in first  # stable per id

            sim.set_settings(missing_rate=0.0, mutate_rate=1.0)
            before = set(sim.activity_ids())
            _, page, _ = await get(session, sim, "/athlete/activities", token)
            after = set(sim.activity_ids())
            assert len(after - before) == 1 and len(before - after) == 1
            assert page[0]["id"] == sim.activity_ids()[0] and page[0]["id"] in after - before

    run(scenario())


def test_mutation_api() -> None:
    async def scenario() -> None:
        async with Simulator(SimulatorSettings(activities=20, rate_limits=False)) as sim, \
                aiohttp.ClientSession() as session:
            token = sim.issue_access_token()
            ids = sim.activity_ids()
            sim.edit_activity(ids[3], name='Renamed "quoted" 🥯', distance=5000.0)
            _, listed, _ = await get(session, sim, "/athlete/activities", token)
            _, detail, _ = await get(session, sim, f"/activities/{ids[3]}", token)
            assert listed[3]["name"] == detail["name"] == 'Renamed "quoted" 🥯'
            assert listed[3]["distance"] == detail["distance"] == 5000.0
            if "splits_metric" in detail:
                assert math.isclose(sum(s["distance"] for s in detail["splits_metric"]), 5000.0, abs_tol=1)
            new_id = sim.add_activity(name="Fresh one")
            assert sim.activity_ids()[0] == new_id and new_id > max(ids)
            sim.delete_activity(ids[5])
            _, listed, _ = await get(session, sim, "/athlete/activities", token)
            assert listed[0]["name"] == "Fresh one" and ids[5] not in {a["id"] for a in listed}
            assert (await get(session, sim, f"/activities/{ids[5]}", token))[0] == 404
            assert (await get(session, sim, f"/activities/{ids[5]}/streams", token, keys="time"))[0] == 404
            older = sim.add_activity(start_date="2020-01-01T10:00:00Z", private=True)
            assert sim.activity_ids()[-1] == older and older not in sim.activity_ids(include_private=False)

    run(scenario())


# ---------------------------------------------------------------- runners


def test_simulator_thread_serves_and_mutates() -> None:
    with SimulatorThread(SimulatorSettings(activities=10)) as sim:
        request = urllib.request.Request(sim.api_url + "/athlete/activities?per_page=5",
                                         headers={"Authorization": f"Bearer {sim.issue_access_token()}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert len(orjson.loads(response.read())) == 5
    assert isinstance(sim.request_log[0], RequestRecord) and sim.request_log[0].authorization.startswith("Bearer ")


def test_simulator_thread_call_runs_on_the_loop() -> None:
    runner = SimulatorThread(SimulatorSettings(activities=10))
    with runner as sim:
        new_id = runner.call(sim.add_activity)
        assert sim.activity_ids()[0] == new_id
        assert runner.call(asyncio.sleep, 0, "done") == "done"


def start_simulate(*args: str) -> tuple[subprocess.Popen, str]:
    """`bulkfetch simulate ARGS` in a subprocess, and what it announced up to its curl line."""
    process = subprocess.Popen([sys.executable, "-m", "bulkfetch", "simulate", "--port", "0", *args],
                               env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               stdin=subprocess.DEVNULL)
    lines: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any(line.startswith("curl") for line in lines):
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
    return process, "\n".join(lines)


def test_simulate_command_writes_config_and_serves(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    process, text = start_simulate("--activities", "40", "--short-window", "2", "--write-config", str(config))
    try:
        base_url = re.search(r"http://127\.0\.0\.1:\d+", text).group(0)
        token = re.search(r"access token: (\S+)", text).group(1)
        written = tomllib.loads(config.read_text())
        assert written["strava"]["api_url"] == base_url + "/api/v3"
        assert written["strava"]["refresh_token"] == "sim-refresh-0" and 'refresh_token = "sim-refresh-0"' in text
        assert written["limits"] == {"short_requests": 100, "daily_requests": 1000, "short_window_s": 2,
                                     "daily_window_s": 86400}
        assert written["storage"]["data_dir"] == "data"
        ids: list[int] = []
        for page in (1, 2, 3):
            request = urllib.request.Request(f"{base_url}/api/v3/athlete/activities?per_page=20&page={page}",
                                             headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(request, timeout=5) as response:
                ids += [a["id"] for a in orjson.loads(response.read())]
        assert len(ids) == 40 == len(set(ids))
    finally:
        process.terminate()
        process.communicate(timeout=10)


def test_simulate_keeps_fractional_windows_exact_and_takes_the_overall_limits(tmp_path: Path) -> None:
    from bulkfetch.config import load_config

    config = tmp_path / "config.toml"
    process, text = start_simulate("--activities", "3", "--short-window", "1.25", "--daily-window", "7200.5",
                                   "--overall-short-limit", "7", "--overall-daily-limit", "70",
                                   "--write-config", str(config))
    try:
        assert "1.25s" in text and "7200.5s" in text, text
        limits = load_config(config).limits  # the written config is one bulkfetch accepts, windows unchanged
        assert (limits.short_window_s, limits.daily_window_s) == (1.25, 7200.5)
        base_url = re.search(r"http://127\.0\.0\.1:\d+", text).group(0)
        token = re.search(r"access token: (\S+)", text).group(1)
        request = urllib.request.Request(f"{base_url}/api/v3/athlete/activities",
                                         headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.headers["X-RateLimit-Limit"] == "7,70"
            assert response.headers["X-ReadRateLimit-Limit"] == "100,1000"
    finally:
        process.terminate()
        process.communicate(timeout=10)


# ---------------------------------------------------------------- several athletes of one app


def test_approval_and_capacity_rules() -> None:
    athletes = Simulator(SimulatorSettings(activities=2, athletes=3, athlete_capacity=2)).athletes
    first, second, third = athletes
    assert [a.connected for a in athletes] == [True, True, False] and third.tokens.refresh_token is None
    assert has_room_for(athletes, first, 2) and not has_room_for(athletes, third, 2)
    assert has_room_for(athletes, third, 3) and has_room_for(athletes, third, None)
    assert approving_athlete(first, None, force=True) is first
    assert approving_athlete(first, second, force=False) is first  # no prompt: the signed-in one again
    assert approving_athlete(first, second, force=True) is second
    assert approving_athlete(third, second, force=False) is second  # new to the app: the prompt shows
    for bad, needle in (({"athletes": 0}, "athletes must"), ({"athletes": 2, "athlete_activities": (1, 2, 3)},
                                                               "athlete_activities has 3"),
                        ({"athlete_capacity": 0}, "athlete_capacity must")):
        with pytest.raises(ValueError, match=needle):
            Simulator(SimulatorSettings(activities=1, **bad))


async def token_post(session: aiohttp.ClientSession, sim: Simulator, **fields: str) -> tuple[int, Any]:
    async with session.post(sim.oauth_url + "/token", data={**CLIENT, **fields}) as response:
        return response.status, await response.json()


async def authorize(session: aiohttp.ClientSession, sim: Simulator, **params: str) -> tuple[int, str, str | None]:
    """(status, body, code from the redirect or None) of the authorize page."""
    query = {"client_id": "12345", "redirect_uri": "http://127.0.0.1:8765/exchange_token", "response_type": "code",
             "scope": "read,activity:read_all", "state": "s", **params}
    async with session.get(sim.oauth_url + "/authorize", params=query, allow_redirects=False) as response:
        location = response.headers.get("Location")
        code = aiohttp.client.URL(location).query.get("code") if location else None
        return response.status, await response.text(), code


def test_athletes_have_their_own_histories_ids_tokens_and_log() -> None:
    async def scenario() -> None:
        settings = SimulatorSettings(activities=40, athletes=3, athlete_activities=(40, 9, 25), rate_limits=False)
        async with Simulator(settings) as sim, aiohttp.ClientSession() as session:
            alone = Simulator(SimulatorSettings(activities=40))  # the first athlete is today's only one
            assert sim.activity_ids() == alone.activity_ids() and sim.athlete_ids[0] == alone.settings.athlete_id
            assert sim.current_refresh_token == alone.current_refresh_token
            assert len(set(sim.athlete_ids)) == 3
            tokens = {athlete_id: sim.issue_access_token(athlete_id) for athlete_id in sim.athlete_ids}
            seen: set[int] = set()
            for athlete_id, size in zip(sim.athlete_ids, (40, 9, 25)):
                status, me, _ = await get(session, sim, "/athlete", tokens[athlete_id])
                assert status == 200 and me["id"] == athlete_id
                _, listed, _ = await get(session, sim, "/athlete/activities", tokens[athlete_id], per_page=200)
                ids = [a["id"] for a in listed]
                assert ids == sim.activity_ids(athlete_id=athlete_id) and len(ids) == size
                assert {a["athlete"]["id"] for a in listed} == {athlete_id} and min(ids) > 2**32
                assert not seen & set(ids)
                seen |= set(ids)
            names = {(await get(session, sim, "/athlete", t))[1]["firstname"] for t in tokens.values()}
            assert len(names) == 3

            first, second, _ = sim.athlete_ids
            mine = sim.activity_ids(athlete_id=first)
            private = next(i for i in mine if sim.summary(i)["private"])
            public = next(i for i in mine if not sim.summary(i)["private"])
            for path in (f"/activities/{private}", f"/activities/{public}", f"/activities/{public}/laps",
                         f"/activities/{public}/streams"):
                assert (await get(session, sim, path, tokens[second]))[0] == 404, path
                assert (await get(session, sim, path, tokens[first]))[0] == 200, path

            added = sim.add_activity(athlete_id=second, name="Only hers")
            assert sim.activity_ids(athlete_id=second)[0] == added and added not in sim.activity_ids()
            sim.edit_activity(added, name="Renamed")
            _, listed, _ = await get(session, sim, "/athlete/activities", tokens[second])
            assert listed[0]["name"] == "Renamed"
            sim.delete_activity(added)
            assert added not in sim.activity_ids(athlete_id=second)

            api = [r for r in sim.request_log if r.path.startswith("/api/v3")]
            by_token = {f"Bearer {token}": athlete_id for athlete_id, token in tokens.items()}
            assert api and all(r.athlete_id == by_token[r.authorization] for r in api)

            before = {athlete_id: sim.refresh_token_of(athlete_id) for athlete_id in sim.athlete_ids}
            status, body = await token_post(session, sim, grant_type="refresh_token", refresh_token=before[second])
            assert status == 200 and sim.refresh_token_of(second) == body["refresh_token"] != before[second]
            assert (await get(session, sim, "/athlete", body["access_token"]))[1]["id"] == second
            assert sim.refresh_token_of(first) == before[first]  # the others' tokens are untouched
            assert (await token_post(session, sim, grant_type="refresh_token", refresh_token=before[second]))[0] == 400
            assert [r.athlete_id for r in sim.request_log if r.path == "/oauth/token"] == [second, None]

    run(scenario())


def test_one_quota_for_all_athletes() -> None:
    async def scenario() -> None:
        settings = SimulatorSettings(activities=3, athletes=2, short_limit=3, daily_limit=100, short_window_s=2)
        async with Simulator(settings) as sim, aiohttp.ClientSession() as session:
            first, second = (sim.issue_access_token(athlete_id) for athlete_id in sim.athlete_ids)
            await sleep_past_boundary(2)
            answers = [await get(session, sim, "/athlete", token) for token in (first, second, first, second, first)]
            assert [status for status, _, _ in answers] == [200, 200, 200, 429, 429]
            assert [headers["X-ReadRateLimit-Usage"] for _, _, headers in answers] == [f"{n},{n}" for n in range(1, 6)]
            assert answers[1][1]["id"] == sim.athlete_ids[1]  # B's answer counts A's request before it
            assert sim.usage()["read"] == (5, 5)
            rejected = [r.athlete_id for r in sim.request_log if r.status == 429]
            assert rejected == [sim.athlete_ids[1], sim.athlete_ids[0]]

    run(scenario())


def test_capacity_refuses_without_redirect_and_deauthorize_frees_the_slot() -> None:
    async def scenario() -> None:
        async with Simulator(SimulatorSettings(activities=4, athletes=3, athlete_capacity=2)) as sim, \
                aiohttp.ClientSession() as session:
            first, second, third = sim.athlete_ids
            assert sim.connected_athlete_ids() == [first, second] and sim.refresh_token_of(third) == ""
            status, page, code = await authorize(session, sim, approval_prompt="force", sim_athlete_id=str(third))
            assert (status, code) == (403, None) and "Limit of connected athletes exceeded" in page
            refused = sim.request_log[-1]
            assert refused.athlete_id == third and refused.query["approval_prompt"] == "force"
            status, _, code = await authorize(session, sim, approval_prompt="force", sim_athlete_id=str(second))
            assert status == 302 and code  # a connected athlete re-authorizes whatever the capacity

            token = sim.issue_access_token(first)
            refresh = sim.refresh_token_of(first)
            async with session.post(sim.oauth_url + "/deauthorize", data={"access_token": token}) as response:
                assert response.status == 200 and await response.json() == {"access_token": token}
            assert sim.request_log[-1].athlete_id == first and not sim.request_log[-1].counted
            assert (await get(session, sim, "/athlete", token))[0] == 401
            assert (await token_post(session, sim, grant_type="refresh_token", refresh_token=refresh))[0] == 400
            assert sim.connected_athlete_ids() == [second]
            async with session.post(sim.oauth_url + "/deauthorize", data={"access_token": token}) as response:
                assert response.status == 401  # its tokens are gone

            status, _, code = await authorize(session, sim, approval_prompt="force", sim_athlete_id=str(third))
            assert status == 302 and code
            status, granted = await token_post(session, sim, grant_type="authorization_code", code=code)
            assert status == 200 and granted["athlete"]["id"] == third
            assert granted["refresh_token"] == sim.refresh_token_of(third)
            _, listed, _ = await get(session, sim, "/athlete/activities", granted["access_token"])
            assert [a["id"] for a in listed] == sim.activity_ids(athlete_id=third)
            assert sim.connected_athlete_ids() == [second, third]
            assert (await authorize(session, sim, approval_prompt="force", sim_athlete_id=str(first)))[0] == 403

            bearer = {"Authorization": f"Bearer {granted['access_token']}"}  # as strava-ruby-client sends it
            async with session.post(sim.oauth_url + "/deauthorize", headers=bearer) as response:
                assert response.status == 200
            assert sim.connected_athlete_ids() == [second]

    run(scenario())


def test_approval_prompt_decides_who_authorizes() -> None:
    async def scenario() -> None:
        async with Simulator(SimulatorSettings(activities=2, athletes=2)) as sim, aiohttp.ClientSession() as session:
            first, second = sim.athlete_ids

            async def authorized_by(**params: str) -> int:
                _, _, code = await authorize(session, sim, **params)
                return (await token_post(session, sim, grant_type="authorization_code", code=code))[1]["athlete"]["id"]

            # Without the prompt a browser signed in as the (connected) first athlete re-authorizes it.
            assert await authorized_by(approval_prompt="auto", sim_athlete_id=str(second)) == first
            assert await authorized_by(approval_prompt="force", sim_athlete_id=str(second)) == second
            sim.sign_in(second)
            assert await authorized_by() == second
            prompts = [r.query.get("approval_prompt") for r in sim.request_log if r.path == "/oauth/authorize"]
            assert prompts == ["auto", "force", None]
            status, body, code = await authorize(session, sim, approval_prompt="force", sim_athlete_id="42")
            assert status == 400 and code is None and "sim_athlete_id" in body

    run(scenario())


def test_athlete_side_revocation_and_a_dropped_scope() -> None:
    async def scenario() -> None:
        async with Simulator(SimulatorSettings(activities=5, athletes=2)) as sim, aiohttp.ClientSession() as session:
            first, second = sim.athlete_ids
            first_token, second_token = sim.issue_access_token(first), sim.issue_access_token(second)
            refresh = sim.refresh_token_of(second)
            sim.revoke_athlete(second)
            status, body = await token_post(session, sim, grant_type="refresh_token", refresh_token=refresh)
            assert status == 400 and body["errors"][0] == {"resource": "RefreshToken", "field": "refresh_token",
                                                           "code": "invalid"}
            status, body, _ = await get(session, sim, "/athlete/activities", second_token)
            assert status == 401 and body["errors"][0]["field"] == "access_token"
            assert sim.request_log[-1].athlete_id == second  # a dead token is still known to be hers
            assert sim.connected_athlete_ids() == [first]
            assert (await get(session, sim, "/athlete/activities", first_token))[0] == 200

            sim.set_athlete_scope("read", first)
            status, body, _ = await get(session, sim, "/athlete/activities", first_token)
            assert status == 401 and body["errors"][0] == {"resource": "AccessToken",
                                                           "field": "activity:read_permission", "code": "missing"}
            assert (await get(session, sim, "/athlete", first_token))[0] == 200
            _, fresh = await token_post(session, sim, grant_type="refresh_token",
                                        refresh_token=sim.refresh_token_of(first))
            assert (await get(session, sim, "/athlete/activities", fresh["access_token"]))[0] == 401  # still missing

    run(scenario())


# "  <id> <name> (<n> activities): printf '%s\n' <token> | bulkfetch ... auth --refresh-token -"
CONNECT_LINE = re.compile(r"^\s*(\d+) .*\((\d+) activities\): "
                          r"(printf '%s\\n' (\S+) \| bulkfetch .* auth --refresh-token -)$", flags=re.M)


def test_simulate_command_serves_several_athletes(tmp_path: Path) -> None:
    config = tmp_path / "my config.toml"
    process, text = start_simulate("--activities", "4", "--athletes", "3", "--athlete-capacity", "2",
                                   "--write-config", str(config))
    try:
        base_url = re.search(r"http://127\.0\.0\.1:\d+", text).group(0)
        assert "refresh_token" not in tomllib.loads(config.read_text())["strava"]  # connects nobody by itself
        connect = CONNECT_LINE.findall(text)
        assert [token for *_, token in connect] == ["sim-refresh-0", "sim-refresh-0.26462177"], text
        assert all("bulkfetch --config '" in line and "my config.toml' auth" in line for _, _, line, _ in connect)
        assert "not connected yet" in text and "sim_athlete_id=26462178" in text
        assert "not secrets" in text and "fetch them all in one run" in text
        athlete_id, _, _, token = connect[1]
        form = urllib.parse.urlencode({**CLIENT, "grant_type": "refresh_token", "refresh_token": token}).encode()
        with urllib.request.urlopen(base_url + "/oauth/token", data=form, timeout=5) as response:
            access = orjson.loads(response.read())["access_token"]
        request = urllib.request.Request(f"{base_url}/api/v3/athlete/activities",
                                         headers={"Authorization": f"Bearer {access}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert {a["athlete"]["id"] for a in orjson.loads(response.read())} == {int(athlete_id)}
    finally:
        process.terminate()
        process.communicate(timeout=10)


def test_simulate_prints_the_commands_that_connect_every_athlete_and_they_work(tmp_path: Path) -> None:
    """The announcement's own lines, run by a shell as printed, connect the athletes; one fetch gets them all."""
    config = tmp_path / "sim.toml"
    process, text = start_simulate("--activities", "6", "--athletes", "3", "--write-config", str(config))
    try:
        connect = CONNECT_LINE.findall(text)
        assert len(connect) == 3, text
        env = cli_env(PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
        for athlete_id, _, line, _ in connect:
            result = subprocess.run(["sh", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True,
                                    timeout=60)
            assert result.returncode == 0, result.stderr
            assert f"connected athlete {athlete_id}" in result.stdout
        fetch_line = re.search(r"fetch them all in one run: (.+)$", text, flags=re.M).group(1)
        result = subprocess.run(["sh", "-c", f"{fetch_line} --no-compact"], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        status = subprocess.run(["sh", "-c", f"bulkfetch --config {config} status --json"], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=60)
        fetched = {a["athlete_id"]: a["fetched"] for a in orjson.loads(status.stdout)["athletes"]}
        assert fetched == {int(athlete_id): int(size) for athlete_id, size, _, _ in connect}
        assert sum(fetched.values()) == 18
    finally:
        process.terminate()
        process.communicate(timeout=10)


@pytest.mark.parametrize("flags", [("--athletes", "0"), ("--athletes", "101"), ("--athlete-capacity", "0")])
def test_simulate_rejects_bad_athlete_knobs_with_one_line(flags: tuple[str, ...]) -> None:
    result = subprocess.run([sys.executable, "-m", "bulkfetch", "simulate", *flags], env=cli_env(),
                            capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    assert result.returncode == 2 and flags[0] in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_a_paced_runs_heart_rate_rises_with_its_speed_and_falls_year_by_year() -> None:
    """The report's heart rate against speed (figure 4) shows a fitness trend on simulated data: a run's average
    heart rate follows its effort, and the same effort costs fewer beats each later year."""
    from bulkfetch.simulator.history import FITNESS_BPM_PER_YEAR, build_activities

    activities = build_activities(seed=4, count=600, athlete_id=1, now_s=1_780_000_000)
    runs = [a.record for a in activities if a.record["sport_type"] == "Run" and a.record.get("has_heartrate")
            and not a.record["manual"] and a.record["distance"] > 0]
    assert len(runs) > 100
    years = [int(r["start_date"][:4]) for r in runs]
    speeds = [r["distance"] / r["moving_time"] for r in runs]
    beats = [r["average_heartrate"] for r in runs]
    # Least squares of beats on speed and year: the slopes have the model's signs and about its fitness size.
    import numpy as np  # the report extra's, which dev includes

    design = np.column_stack([np.ones(len(runs)), speeds, years])
    _, per_mps, per_year = np.linalg.lstsq(design, np.array(beats), rcond=None)[0]
    assert per_mps > 5  # faster runs, harder efforts: more beats
    assert -1.5 * FITNESS_BPM_PER_YEAR < per_year < -0.5 * FITNESS_BPM_PER_YEAR


def test_only_paced_runs_are_races() -> None:
    """A run of a fixed duration (the demo's --export) or typed in by hand is no race (workout_type 1): a race
    runs a standard distance at race effort, which only the pace model does."""
    from bulkfetch.simulator.history import RACE_DISTANCES_M, build_activities

    for duration_s in (None, 1200):
        activities = build_activities(seed=4, count=400, athlete_id=1, now_s=1_780_000_000, duration_s=duration_s)
        races = [a.record for a in activities if a.record["workout_type"] == 1]
        assert bool(races) == (duration_s is None)
        assert all(r["distance"] in RACE_DISTANCES_M and not r["manual"] for r in races)


def test_streams_read_in_bulk_equal_the_motion_read_second_by_second() -> None:
    """stream_points reads distance, altitude and moving for all its seconds at once (a speed-up): the same
    values as the motion's per-second methods, with pauses, dropouts, a pace profile or the wave formula."""
    history = History.build(seed=7, count=20, athlete_id=1, now_s=1.8e9)
    checked = {"paused": 0, "dropouts": 0, "paced": 0, "wave": 0}
    for activity in history.ordered():
        motion, seconds = activity.motion(), activity.stream_seconds()
        assert seconds == [activity.stream_second(i) for i in range(activity.stream_points())]
        points = stream_points(activity, ["distance", "altitude", "moving"])
        assert points["distance"] == [round(motion.distance_at(t), 1) for t in seconds]
        assert points["altitude"] == [motion.altitude_at(t) for t in seconds]
        assert points["moving"] == [t > 0 and not motion.paused(t) for t in seconds]
        checked["paused"] += bool(motion.pause_windows)
        checked["dropouts"] += bool(motion.dropouts and motion.route is not None)
        checked["paced" if motion.pace is not None else "wave"] += motion.distance_m > 0
    assert min(checked.values()) > 0, checked
