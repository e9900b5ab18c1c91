"""Pure decisions of a fetch: change detection, filters, the unlisted guard, retry policy (paging: test_listing)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulkfetch.errors import ConfigError
from bulkfetch.plan import (
    Filters,
    ListingPlan,
    StreamRecord,
    fingerprint,
    legacy_stream_types,
    parse_filters,
    pending_details,
    pending_streams,
    recording_fingerprint,
    request_plan,
    start_epoch,
    stream_keys,
    streams_stale,
    unlisted,
)
from bulkfetch.retry import Verdict, backoff_delay, classify, missing_permission


def summary(activity_id: int, start: str, **fields) -> dict:
    return {"id": activity_id, "start_date": start, "name": "Run", "sport_type": "Run", "distance": 1000.0,
            **fields}


def test_start_epoch_reads_utc_and_tolerates_garbage() -> None:
    assert start_epoch({"start_date": "1970-01-01T00:01:00Z"}) == 60
    assert start_epoch({"start_date": "yesterday"}) is None
    assert start_epoch({}) is None


def test_fingerprint_ignores_kudos_but_sees_edits() -> None:
    base = summary(1, "2024-01-01T00:00:00Z", kudos_count=1)
    assert fingerprint(base) == fingerprint({**base, "kudos_count": 99})
    assert fingerprint(base) != fingerprint({**base, "name": "Renamed"})
    assert fingerprint(base) == fingerprint({**base, "gear_id": None})  # absent == null
    assert fingerprint(base) != fingerprint({**base, "start_date": "2023-01-01T00:00:00Z"})  # a fixed clock


def test_streams_go_stale_only_when_a_type_is_missing_or_the_recording_changed() -> None:
    base = summary(1, "2024-01-01T00:00:00Z", distance=5000.0, moving_time=1500, upload_id=7)
    record = StreamRecord(frozenset({"time", "heartrate"}), recording_fingerprint(base))
    wanted = frozenset({"time"})
    assert not streams_stale(record, wanted, base)
    for metadata in ({"name": "Renamed"}, {"gear_id": "g1"}, {"private": True}, {"kudos_count": 5}):
        assert not streams_stale(record, wanted, {**base, **metadata}), metadata
    for recording in ({"distance": 4000.0}, {"moving_time": 1}, {"elapsed_time": 9}, {"upload_id": 8},
                      {"start_date": "2024-01-02T00:00:00Z"}):
        assert streams_stale(record, wanted, {**base, **recording}), recording
    assert streams_stale(record, frozenset({"time", "watts"}), base)
    assert streams_stale(None, wanted, base)
    assert stream_keys(record, frozenset({"watts", "time"}), ("watts", "time", "heartrate", "cadence")) == [
        "watts", "time", "heartrate"]  # one request keeps every type the stored file had
    assert StreamRecord.from_json(record.to_json()) == record
    assert StreamRecord.from_json({"types": "time"}) is None and StreamRecord.from_json([]) is None


def test_a_legacy_stream_file_counts_as_asked_for_what_it_holds_and_what_the_activity_lacks() -> None:
    every = ("time", "distance", "latlng", "altitude", "velocity_smooth", "heartrate", "cadence", "watts", "temp",
             "moving", "grade_smooth")
    run = {"start_latlng": [1.0, 2.0], "elev_high": 30.0, "has_heartrate": True, "average_cadence": 80.0,
           "distance": 5000.0}
    assert legacy_stream_types({"time", "heartrate"}, run, every) == {"time", "heartrate", "watts", "temp"}
    treadmill = {"has_heartrate": False, "distance": 0.0}
    assert legacy_stream_types({"time"}, treadmill, every) == set(every) - {"moving"}
    assert legacy_stream_types((), {"manual": True}, every) == set(every)


def test_pending_is_new_plus_changed_newest_first_and_filtered() -> None:
    catalog = {
        1: summary(1, "2024-01-01T00:00:00Z"),
        2: summary(2, "2024-02-01T00:00:00Z"),
        3: summary(3, "2024-03-01T00:00:00Z", sport_type="Ride"),
        4: summary(4, "2024-04-01T00:00:00Z"),
    }
    fetched = {1: fingerprint(catalog[1]), 2: "stale"}
    ids, new, changed = pending_details(catalog, fetched, Filters())
    assert ids == [4, 3, 2] and (new, changed) == (2, 1)
    ids, _, _ = pending_details(catalog, fetched, parse_filters("Run", "2024-02-01", None))
    assert ids == [4, 2]
    ids, _, _ = pending_details(catalog, {}, parse_filters(None, None, "2024-02-01T00:00:00"))
    assert ids == [1]  # until is exclusive


def test_streams_the_export_gives_are_neither_pending_nor_requested_and_fetched_ones_stay_done() -> None:
    catalog = {i: summary(i, f"2024-0{i}-01T00:00:00Z") for i in range(1, 7)}
    fetched = {i: fingerprint(s) for i, s in catalog.items()}
    wanted = frozenset({"time", "heartrate"})
    records = {1: StreamRecord(wanted, recording_fingerprint(catalog[1]))}  # fetched from the API before
    from_export = {1, 2, 3}  # 1 has current API streams: those count as done, not as the export's
    assert pending_streams(catalog, set(catalog), records, wanted, Filters(), from_export) == [6, 5, 4]
    plan = request_plan(catalog, fetched, records, parse_filters(None, None, "2024-06-01"),
                        listing=ListingPlan(1, False, 0.0), not_found={}, streams=wanted, from_export=from_export)
    assert (plan.streams, plan.streams_from_export, plan.streams_done) == (2, 2, 1)  # 4, 5 | 2, 3 | 1
    assert plan.total == 1 + 2
    without_streams = request_plan(catalog, fetched, records, Filters(), listing=ListingPlan(1, False, 0.0),
                                   not_found={}, streams=frozenset(), from_export=from_export)
    assert (without_streams.streams, without_streams.streams_from_export) == (0, 0)


def test_bad_date_filter_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="--since 'last week' is not an ISO date"):
        parse_filters(None, "last week", None)


@pytest.mark.parametrize(("since", "until"), [("2025-01-01", "2024-01-01"), ("2024-06-01T12:00", "2024-06-01T12:00")])
def test_since_not_before_until_is_a_config_error(since: str, until: str) -> None:
    with pytest.raises(ConfigError, match="--since .* must be before --until"):
        parse_filters(None, since, until)


def test_unknown_sport_is_a_config_error_listing_stravas_sport_types() -> None:
    with pytest.raises(ConfigError, match=r"unknown --sport value 'Running'.*\bRun\b.*TrailRun") as caught:
        parse_filters("Run,Running", None, None)
    assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="did you mean TrailRun"):
        parse_filters("trailrun", None, None)
    assert parse_filters("Run, TrailRun,MountainBikeRide", None, None).sports == {"Run", "TrailRun", "MountainBikeRide"}


@given(st.sets(st.integers(1, 1000), max_size=200), st.sets(st.integers(1, 1000), max_size=200))
def test_unlisted_guard_refuses_mass_disappearance(previous: set[int], listed: set[int]) -> None:
    gone, safe = unlisted(previous, listed)
    assert gone == previous - listed
    if len(gone) > 10 and len(gone) > len(previous) / 2:
        assert not safe
    else:
        assert safe


@pytest.mark.parametrize(
    ("status", "body", "verdict"),
    [
        (200, None, Verdict.OK),
        (401, {"errors": [{"resource": "Athlete", "field": "access_token", "code": "invalid"}]}, Verdict.REFRESH),
        (401, {"errors": [{"resource": "AccessToken", "field": "activity:read_permission", "code": "missing"}]},
         Verdict.MISSING_SCOPE),
        (403, {"message": "Forbidden", "errors": [{"resource": "Application", "field": "", "code": "inactive"}]},
         Verdict.APP_INACTIVE),
        (403, {"message": "Limit of connected athletes exceeded"}, Verdict.APP_INACTIVE),
        (404, None, Verdict.NOT_FOUND),
        (429, None, Verdict.RATE_LIMITED),
        (500, {"message": "error"}, Verdict.RETRY),
        (503, None, Verdict.RETRY),
        (400, None, Verdict.FAIL),
    ],
)
def test_classify(status: int, body, verdict: Verdict) -> None:
    assert classify(status, body) is verdict


def test_missing_permission_names_the_field() -> None:
    body = {"errors": [{"resource": "AccessToken", "field": "activity:read_permission", "code": "missing"}]}
    assert missing_permission(body) == "activity:read_permission"
    assert missing_permission({"errors": "nope"}) is None


@given(st.integers(1, 30), st.floats(0.01, 10), st.floats(0.01, 600), st.integers(0, 2**32))
def test_backoff_is_bounded_and_jittered(attempt: int, base: float, cap: float, seed: int) -> None:
    delay = backoff_delay(attempt, base_s=base, cap_s=cap, rng=random.Random(seed))
    ceiling = min(cap, base * 2 ** (attempt - 1))
    assert ceiling / 2 <= delay <= ceiling
