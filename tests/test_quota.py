"""The pure quota core: window math, headers, the ledger against a model of Strava's server, ETA."""

from __future__ import annotations

import json
import math
import time
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bulkfetch import quota
from bulkfetch.config import LimitsConfig
from bulkfetch.quota import (
    NO_HEADERS,
    QuotaLedger,
    RateHeaders,
    UsageView,
    WindowUsage,
    clock_offset,
    estimate_finish,
    next_boundary,
    parse_http_date,
    parse_rate_headers,
    window_index,
    window_start,
)

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def headers(read=None, overall=None, read_limit=None, overall_limit=None) -> RateHeaders:
    return RateHeaders(read_limit=read_limit, read_usage=read,
                       overall_limit=overall_limit, overall_usage=overall)


# -- window math -----------------------------------------------------------------------------------


@FAST
@given(t=st.floats(-1e10, 1e10, allow_nan=False),
       length=st.sampled_from([0.1, 0.7, 1.0, 2.0, 900.0, 86400.0]))
def test_window_bounds(t, length):
    start, end = window_start(t, length), next_boundary(t, length)
    assert start <= t < end
    assert start == window_index(t, length) * length
    assert end == (window_index(t, length) + 1) * length
    assert window_index(start, length) == window_index(t, length)
    assert window_index(end, length) == window_index(t, length) + 1


@FAST
@given(a=st.floats(0, 1e9), b=st.floats(0, 1e9), length=st.sampled_from([0.3, 1.0, 900.0]))
def test_window_index_monotone(a, b, length):
    lo, hi = sorted((a, b))
    assert window_index(lo, length) <= window_index(hi, length)


def test_strava_windows_are_clock_aligned():
    t = 1_700_000_000 + 7 * 60 + 3  # some 14:xx
    assert next_boundary(t, 900) % 900 == 0
    assert time.gmtime(next_boundary(t, 86400))[3:6] == (0, 0, 0)  # midnight UTC


# -- headers ---------------------------------------------------------------------------------------


def test_parse_rate_headers_case_and_spaces():
    parsed = parse_rate_headers({
        "X-Ratelimit-Limit": "200,2000", "x-ratelimit-usage": " 5 , 148 ",
        "X-READRATELIMIT-LIMIT": "100,1000", "X-ReadRateLimit-Usage": "5,148", "Content-Length": "3",
    })
    assert parsed == RateHeaders(read_limit=(100, 1000), read_usage=(5, 148),
                                 overall_limit=(200, 2000), overall_usage=(5, 148))
    assert parsed.has_usage


@pytest.mark.parametrize("value", ["", "abc", "1", "1,2,3", "-1,5", "1.5,2", "1;2", ","])
def test_parse_rate_headers_garbage_is_unknown(value):
    parsed = parse_rate_headers({"X-ReadRateLimit-Usage": value, "X-RateLimit-Usage": "1,2"})
    assert parsed.read_usage is None and parsed.overall_usage == (1, 2)


def test_missing_headers_are_unknown_not_zero():
    assert parse_rate_headers({"Content-Length": "10"}) == NO_HEADERS
    assert not NO_HEADERS.has_usage


def test_http_date_and_clock_offset():
    assert parse_http_date("Tue, 15 Nov 1994 08:12:31 GMT") == 784887151.0
    assert parse_http_date("Tue, 15 Nov 1994 08:12:31 -0000") == 784887151.0
    assert parse_http_date(None) is None and parse_http_date("yesterday") is None
    assert clock_offset(1000.0, 1000.0, 1001.0) == 0.0  # within the 2 s deadband
    assert clock_offset(1010.0, 1000.0, 1001.0) == pytest.approx(10.0)
    assert clock_offset(990.0, 1000.0, 1001.0) == pytest.approx(-10.0)


# -- ledger: single rules --------------------------------------------------------------------------


def test_in_flight_counts_as_spent_and_block_kinds():
    ledger = QuotaLedger(3, 100, short_window_s=10, daily_window_s=100, boundary_guard_s=0)
    tickets = [ledger.reserve(1.0) for _ in range(3)]
    assert all(tickets) and ledger.reserve(1.0) is None
    block = ledger.blocked_until(1.0)
    assert block.until == 10.0 and block.window == "short" and "3/3" in block.reason
    assert ledger.reserve(10.0) is None  # still in flight: the server may count them in window 1
    assert ledger.usage_view(10.0).get("read", "short").used == 3
    for ticket in tickets:
        ledger.settle(ticket, 10.5, 200, NO_HEADERS)
    assert ledger.blocked_until(10.5).until == 20.0  # settled ambiguously: they stay counted
    fresh = QuotaLedger(3, 100, short_window_s=10, daily_window_s=100, boundary_guard_s=0)
    for ticket in [fresh.reserve(1.0) for _ in range(3)]:
        fresh.settle(ticket, 2.0, 200, NO_HEADERS)
    assert fresh.reserve(10.0) is not None  # next window


def test_probe_rule_after_headers_seen():
    ledger = QuotaLedger(10, 100, short_window_s=10, daily_window_s=100, boundary_guard_s=0)
    first = ledger.reserve(0.0)
    ledger.settle(first, 0.1, 200, headers(read=(1, 1)))
    burst = [t for t in (ledger.reserve(0.2) for _ in range(5)) if t]
    assert len(burst) == 5  # informed: a burst is fine
    assert ledger.reserve(10.0) is None  # next window, 5 in flight: no probe before they settle
    ledger2 = QuotaLedger(10, 100, short_window_s=10, daily_window_s=100, boundary_guard_s=0)
    t = ledger2.reserve(0.0)
    ledger2.settle(t, 0.1, 200, headers(read=(1, 1)))
    probe = ledger2.reserve(10.0)
    assert ledger2.reserve(10.0) is None
    assert ledger2.blocked_until(10.0).window == "inflight"
    ledger2.settle(probe, 10.1, 200, headers(read=(7, 8)))  # another program spent 6
    got = [t for t in (ledger2.reserve(10.2) for _ in range(10)) if t]
    assert len(got) == 3  # 10 - 7


def test_headerless_without_history_counts_locally():
    ledger = QuotaLedger(4, 100, short_window_s=10, daily_window_s=100, boundary_guard_s=0)
    for _ in range(4):
        t = ledger.reserve(1.0)
        ledger.settle(t, 1.1, 200, NO_HEADERS)
    assert ledger.reserve(1.2) is None and ledger.blocked_until(1.2).until == 10.0


def test_429_spends_short_window_and_daily_when_headers_say_so():
    ledger = QuotaLedger(10, 100, short_window_s=10, daily_window_s=100, boundary_guard_s=0)
    t = ledger.reserve(1.0)
    ledger.settle(t, 1.1, 429, NO_HEADERS)
    assert ledger.reserve(1.2) is None
    block = ledger.blocked_until(1.2)
    assert block.until == 10.0 and "429" in block.reason
    assert ledger.reserve(10.0) is not None
    t = ledger.reserve(10.0) or ledger.in_flight
    ledger2 = QuotaLedger(10, 100, short_window_s=10, daily_window_s=100, boundary_guard_s=0)
    t = ledger2.reserve(1.0)
    ledger2.settle(t, 1.1, 429, headers(read=(5, 101)))
    assert ledger2.blocked_until(50.0).until == 100.0 and ledger2.blocked_until(50.0).window == "daily"
    assert ledger2.reserve(99.9) is None and ledger2.reserve(100.0) is not None


def test_header_limits_override_config_and_overall_becomes_binding():
    ledger = QuotaLedger(100, 1000, short_window_s=10, daily_window_s=100, boundary_guard_s=0)
    t = ledger.reserve(0.0)
    ledger.settle(t, 0.1, 200, headers(read=(1, 1), overall=(48, 48),
                                       read_limit=(100, 1000), overall_limit=(50, 500)))
    got = [t for t in (ledger.reserve(0.2) for _ in range(10)) if t]
    assert len(got) == 2
    view = ledger.usage_view(0.3)
    assert view.get("overall", "short").limit == 50 and view.get("overall", "short").used == 50


def test_carried_over_request_settled_late_is_not_forgotten():
    """The flaw in a plain max(sent, U_max + in_flight): a request reserved at the end of window 0 is
    counted by the server in window 1 after a window-1 response set U_max, then settles (ambiguous).
    Neither `sent` nor `in_flight` holds it any more; the ledger must still count it."""
    ledger = QuotaLedger(3, 100, short_window_s=10, daily_window_s=100, boundary_guard_s=0)
    ledger.settle(ledger.reserve(0.0), 0.1, 200, NO_HEADERS)  # no headers yet: no probe rule
    late = ledger.reserve(9.99)
    a = ledger.reserve(10.0)
    assert late and a
    ledger.settle(a, 10.1, 200, headers(read=(1, 2)))  # the server counted `a` first in window 1
    ledger.settle(late, 10.2, 200, headers(read=(2, 3)))  # then `late`: ambiguous, its usage ignored
    assert ledger.reserve(10.3) is not None  # the server's 3rd in window 1
    assert ledger.reserve(10.3) is None  # a 4th would be a 429


def test_headerless_response_after_a_header_is_not_forgotten():
    """`b` arrives after `a` but only `a` reports usage (5 with another program's 4): the estimate must
    include `b` even though it settled without headers."""
    ledger = QuotaLedger(7, 100, short_window_s=10, daily_window_s=100, boundary_guard_s=0)
    ledger.settle(ledger.reserve(0.0), 0.1, 200, headers(read=(1, 1)))
    ledger.settle(ledger.reserve(10.0), 10.1, 200, headers(read=(5, 6)))  # probe: others spent 4
    a, b = ledger.reserve(10.2), ledger.reserve(10.2)
    ledger.settle(a, 10.3, 200, headers(read=(6, 7)))  # server: a then b -> 7 in all
    ledger.settle(b, 10.4, 200, NO_HEADERS)
    assert ledger.reserve(10.5) is None


def test_other_program_mid_day_then_headerless_response():
    """Found by the model: another program spends at a short-window start inside the day. An early
    report of the day (usage 1) must not hide it, nor may a later headerless response be forgotten."""
    ledger = QuotaLedger(3, 6, short_window_s=1, daily_window_s=4, boundary_guard_s=0)
    ledger.settle(ledger.reserve(25.0), 25.0, 200, headers(read=(1, 1)))
    probe = ledger.reserve(27.0)  # meanwhile another program sent 3 at 26.0
    ledger.settle(probe, 27.0, 200, headers(read=(1, 5)))
    ledger.settle(ledger.reserve(27.0), 27.0, 200, NO_HEADERS)  # the server's 6th of the day
    assert ledger.reserve(27.0) is None
    assert ledger.blocked_until(27.0).window == "daily"


def test_boundary_guard_after_a_full_window():
    ledger = QuotaLedger(1, 100, short_window_s=900, daily_window_s=86400)
    assert ledger.boundary_guard_s == 3.0
    ledger.settle(ledger.reserve(10.0), 10.5, 200, NO_HEADERS)
    assert ledger.blocked_until(11.0).until == 903.0  # full: the boundary, plus the guard
    block = ledger.blocked_until(900.0)
    assert block.until == 903.0 and "clock skew" in block.reason
    assert ledger.reserve(902.9) is None and ledger.reserve(903.0) is not None
    assert ledger.reserve(1800.0) is None  # window 2 ended full as well
    roomy = QuotaLedger(5, 100, short_window_s=900, daily_window_s=86400)
    roomy.settle(roomy.reserve(10.0), 10.5, 200, NO_HEADERS)
    assert roomy.reserve(900.0) is not None  # not full: no guard


def test_abandoned_stays_counted():
    ledger = QuotaLedger(2, 100, short_window_s=10, daily_window_s=100, boundary_guard_s=0)
    a, b = ledger.reserve(0.0), ledger.reserve(0.0)
    ledger.abandon(a, 0.5)
    ledger.settle(b, 0.5, 200, NO_HEADERS)
    assert ledger.in_flight == 0 and ledger.reserve(0.6) is None


def test_clock_never_goes_back():
    ledger = QuotaLedger(1, 100, short_window_s=10, daily_window_s=100, boundary_guard_s=0)
    assert ledger.reserve(10.5) is not None
    assert ledger.reserve(9.0) is None  # still window 1, not window 0


# -- what older versions kept per data_dir (state/quota.json, version 1) ------------------------------

LIMITS = LimitsConfig(short_requests=5, daily_requests=20, short_window_s=10, daily_window_s=100)


def v1_snapshot(read_used: tuple[int, int], overall_used: tuple[int, int], *, spent: bool,
                read_u_max: tuple[int, int] | None, at: float = 1.1, lengths: tuple[float, float] = (10.0, 100.0),
                read_limits: tuple[int, int] | None = None) -> dict:
    """A snapshot in the format version 1 wrote (`state/quota.json`), taken at `at`, in the windows holding it
    (LIMITS' by default)."""
    def window(kind: int, window_spent: bool) -> dict:
        return {"index": window_index(at, lengths[kind]), "spent": window_spent, "pairs": {
            "read": {"used": read_used[kind], "u_max": read_u_max[kind] if read_u_max else None},
            "overall": {"used": overall_used[kind], "u_max": None}}}
    return {"version": 1, "taken_at": at, "short_window_s": lengths[0], "daily_window_s": lengths[1],
            "header_limits": {"read": list(read_limits or (None, None)), "overall": [None, None]},
            "headers_seen": read_u_max is not None, "clock_offset_s": 0.0,
            "windows": {"short": window(0, spent), "daily": window(1, False)}}


SPENT_BY_429 = v1_snapshot((6, 6), (1, 1), spent=True, read_u_max=(6, 6))  # a 429 reported 6,6
THREE_SENT = v1_snapshot((3, 3), (3, 3), spent=False, read_u_max=None)  # 3 requests without headers


def absorbed(snapshot, now: float, limits: LimitsConfig = LIMITS) -> QuotaLedger:
    ledger = QuotaLedger.from_config(limits, boundary_guard_s=0)
    ledger.absorb_snapshot(json.loads(json.dumps(snapshot)), now)
    return ledger


def test_absorbed_snapshot_inside_spent_window_refuses_until_boundary():
    restored = absorbed(SPENT_BY_429, 2.0)
    assert restored.reserve(2.0) is None
    assert restored.blocked_until(2.0).until == 10.0
    assert restored.reserve(10.0) is not None


def test_absorbed_partly_used_window_is_a_floor_until_a_header():
    restored = absorbed(THREE_SENT, 2.0)
    assert restored.usage_view(2.0).get("read", "short").used == 3
    probe = restored.reserve(2.0)
    assert probe is not None and restored.reserve(2.0) is None  # what the old run sent later is unknown: probe
    restored.settle(probe, 2.1, 200, headers(read=(4, 4)))
    assert len([t for t in (restored.reserve(2.2) for _ in range(5)) if t]) == 1  # 5 - 4


def test_absorbed_snapshot_adds_to_what_the_ledger_counted():
    """Migrating a data_dir into an app ledger that other data_dirs already use: both counts stand (their
    requests were different ones), so no usage is lost."""
    ledger = QuotaLedger.from_config(LIMITS, boundary_guard_s=0)
    ledger.settle(ledger.reserve(1.0), 1.05, 200, NO_HEADERS)
    ledger.absorb_snapshot(THREE_SENT, 2.0)
    assert ledger.usage_view(2.0).get("read", "short").used == 4
    assert ledger.usage_view(2.0).get("read", "daily").used == 4


def test_absorbing_ignores_stale_windows_other_lengths_and_garbage():
    stale = absorbed(SPENT_BY_429, 25.0)
    assert stale.usage_view(25.0).get("read", "short").used == 0
    assert stale.reserve(25.0) is not None
    for garbage in (None, {}, [], "x", {"version": 1, "windows": "x"}, {"version": 1, "windows": {"short": 3}},
                    {**THREE_SENT, "clock_offset_s": "soon"}):
        assert absorbed(garbage, 1.0).reserve(1.0) is not None
    other_lengths = LimitsConfig(5, 20, 20, 100)
    assert absorbed(SPENT_BY_429, 2.0, other_lengths).usage_view(2.0).get("read", "short").used == 0


# -- the shared state: saved and loaded between every operation, nothing changes -------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_state_round_trip_decides_exactly_as_the_ledger_it_came_from(data):
    """Processes of one app take turns on the ledger through `state()`/`from_state` (the shared file):
    a ledger rebuilt from JSON before every operation must reserve, block, count and report exactly as
    one that stayed in memory, though its reports are pruned (here at every state, not only once many)."""
    with mock.patch.object(quota, "REPORTS_BEFORE_PRUNING", 0):
        round_trip_against_memory(data)


def round_trip_against_memory(data) -> None:
    limits = LimitsConfig(short_requests=data.draw(st.integers(1, 6)), daily_requests=data.draw(st.integers(6, 15)),
                          short_window_s=1, daily_window_s=4)
    kept = QuotaLedger.from_config(limits)
    shared = QuotaLedger.from_config(limits)
    now = 0.0
    in_flight = []
    for _ in range(data.draw(st.integers(5, 80))):
        shared = QuotaLedger.from_state(json.loads(json.dumps(shared.state())), limits)
        op = data.draw(st.sampled_from(["reserve"] * 3 + ["settle"] * 3 + ["abandon", "advance"]))
        if op == "reserve":
            ticket = kept.reserve(now)
            assert shared.reserve(now) == ticket
            if ticket is not None:
                in_flight.append(ticket)
        elif op in ("settle", "abandon") and in_flight:
            ticket = in_flight.pop(data.draw(st.integers(0, len(in_flight) - 1)))
            if op == "abandon":
                kept.abandon(ticket, now)
                shared.abandon(ticket, now)
                continue
            usage = data.draw(st.one_of(st.none(), st.tuples(st.integers(0, 20), st.integers(0, 40))))
            status = data.draw(st.sampled_from([200, 200, 200, 429]))
            kept.settle(ticket, now, status, headers(read=usage, overall=usage))
            shared.settle(ticket, now, status, headers(read=usage, overall=usage))
        elif op == "advance":
            now += data.draw(st.sampled_from([0.1, 0.4, 1.0, 2.5]))
        assert shared.usage_view(now) == kept.usage_view(now)
        assert shared.blocked_until(now) == kept.blocked_until(now)


def test_state_keeps_only_the_reports_that_can_still_matter():
    ledger = QuotaLedger(10_000, 100_000, short_window_s=10, daily_window_s=100, boundary_guard_s=0)
    for used in range(1, 2001):
        ledger.settle(ledger.reserve(1.0), 1.0, 200, headers(read=(used, used)))
    state = ledger.state()
    assert all(len(pair["reported"]) <= 1 for window in state["windows"].values()
               for pair in window["pairs"].values())
    assert len(json.dumps(state)) < 2_000


@pytest.mark.parametrize("damage", [
    None, [], {"version": 1}, {"version": 2}, "garbage",
    {**QuotaLedger(1, 2).state(), "last_seq": "7"},
    {**QuotaLedger(1, 2).state(), "windows": {"weekly": {}}},
    {**QuotaLedger(1, 2).state(), "in_flight": [[1, 2.0]]},
])
def test_from_state_refuses_what_is_not_a_ledger(damage):
    with pytest.raises(ValueError):
        QuotaLedger.from_state(damage, LimitsConfig(1, 2, 900, 86400))


def test_from_state_refuses_other_window_lengths():
    state = QuotaLedger(5, 20, short_window_s=60, daily_window_s=86400).state()
    with pytest.raises(ValueError, match="windows of 60 s and 86400 s, but .limits. says 900 s and 86400 s"):
        QuotaLedger.from_state(state, LimitsConfig(5, 20, 900, 86400))


# -- the property: the ledger against a model of Strava's server -----------------------------------

S, D = 1.0, 4.0  # compressed window lengths; D is a whole number of S, like 15 min and a day
OPS = ["reserve"] * 4 + ["arrive"] * 3 + ["respond"] * 3 + ["advance"] * 2 + ["drop"]


class Server:
    """Strava's side: counts at arrival, per (bucket, kind, window index), 429 over the limit (still
    counted), other programs spend at the start of short windows."""

    def __init__(self, limits, others):
        self.limits = limits  # {bucket: (short, daily)}
        self.others = others  # short index -> requests another program sends at its start
        self.counts: dict[tuple[str, str, int], int] = {}
        self.applied = -1

    def count(self, key):
        return self.counts.get(key, 0)

    def touch(self, now):
        """Apply other programs' usage for every short window started up to `now`."""
        for index in range(self.applied + 1, window_index(now, S) + 1):
            n = self.others.get(index, 0)
            for bucket in ("read", "overall"):
                self._add(bucket, index * S, n)
        self.applied = max(self.applied, window_index(now, S))

    def _add(self, bucket, t, n):
        for kind, length in (("short", S), ("daily", D)):
            key = (bucket, kind, window_index(t, length))
            self.counts[key] = self.count(key) + n

    def arrive(self, now):
        self.touch(now)
        over = False
        for bucket in ("read", "overall"):
            self._add(bucket, now, 1)
            for k, (kind, length) in enumerate((("short", S), ("daily", D))):
                over |= self.count((bucket, kind, window_index(now, length))) > self.limits[bucket][k]
        usage = {bucket: tuple(self.count((bucket, kind, window_index(now, length)))
                               for kind, length in (("short", S), ("daily", D)))
                 for bucket in ("read", "overall")}
        return (429 if over else 200), usage

    def others_today(self, now):
        day = window_index(now, D)
        return sum(n for index, n in self.others.items()
                   if index <= self.applied and window_index(index * S, D) == day)


def raw_headers(usage, limits, variant):
    names = [("X-RateLimit-Limit", "X-RateLimit-Usage", "X-ReadRateLimit-Limit", "X-ReadRateLimit-Usage"),
             ("x-ratelimit-limit", "x-ratelimit-usage", "x-readratelimit-limit", "x-readratelimit-usage"),
             ("X-Ratelimit-Limit", "X-Ratelimit-Usage", "X-Readratelimit-Limit", "X-Readratelimit-Usage"),
             ][variant]
    fmt = "{},{}" if variant != 2 else "{}, {}"
    return {names[0]: fmt.format(*limits["overall"]), names[1]: fmt.format(*usage["overall"]),
            names[2]: fmt.format(*limits["read"]), names[3]: fmt.format(*usage["read"])}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_ledger_never_overspends_and_never_idles(data):
    read_short = data.draw(st.integers(1, 6), label="read_short")
    read_daily = data.draw(st.integers(read_short, 3 * read_short), label="read_daily")
    extra = data.draw(st.integers(0, 3), label="overall_extra")
    limits = {"read": (read_short, read_daily), "overall": (read_short + extra, read_daily + extra)}
    with_others = data.draw(st.booleans(), label="other_programs")
    others = data.draw(st.dictionaries(st.integers(0, 40), st.integers(0, read_short + 1)), label="others") \
        if with_others else {}
    headerless_p = data.draw(st.sampled_from([0.0, 0.3, 1.0]), label="headerless")

    server = Server(limits, others)
    ledger = QuotaLedger(read_short, read_daily, short_window_s=S, daily_window_s=D)
    now = 0.0
    step = 0
    in_transit: list = []  # (ticket, reserve_step) not yet arrived
    arrived: list = []  # (ticket, status, raw headers) awaiting the response
    informed_at: dict[int, int] = {}  # short index -> step of its first unambiguous header
    uncertain: list = []  # (ticket, settled_at): headerless, ambiguous or abandoned
    headers_seen = False
    spent_by_429: set[int] = set()  # short windows in which a 429 came back

    def slack(kind, length):
        index = window_index(now, length)
        return sum(1 for ticket, settled_at in uncertain
                   if ticket.index(kind) == index
                   or (ticket.index(kind) < index and settled_at >= index * length))

    for _ in range(data.draw(st.integers(10, 120), label="steps")):
        step += 1
        op = data.draw(st.sampled_from(OPS))
        if op == "reserve":
            in_flight_before = ledger.in_flight
            ticket = ledger.reserve(now)
            if ticket is not None:
                assert window_index(now, S) not in spent_by_429, "sent into a window spent by a 429"
                if headers_seen and window_index(now, S) not in informed_at:
                    assert in_flight_before == 0, "probe rule: one request in flight before the first header"
                in_transit.append((ticket, step))
                continue
            # liveness: refusing is fine only while requests are in flight, after a 429, or when full
            if ledger.in_flight:
                continue
            view = ledger.usage_view(now)
            if any(w.spent for w in view.windows) or "clock skew" in ledger.blocked_until(now).reason:
                continue
            server.touch(now)
            full = any(
                server.count((bucket, kind, window_index(now, length))) + slack(kind, length)
                >= limits[bucket][k]
                for bucket in ("read", "overall")
                for k, (kind, length) in enumerate((("short", S), ("daily", D))))
            assert full, f"quota idle: {view}, server {server.counts}"
        elif op == "arrive" and in_transit:
            ticket, reserved_step = in_transit.pop(data.draw(st.integers(0, len(in_transit) - 1)))
            status, usage = server.arrive(now)
            if status == 429:
                first_header = informed_at.get(window_index(now, S))
                uninformed = first_header is None or first_header > reserved_step
                assert with_others and uninformed and server.others_today(now) > 0, \
                    f"429 for a request reserved at step {reserved_step}, arrived at {now}: {server.counts}"
            has_headers = data.draw(st.floats(0, 1)) >= headerless_p if headerless_p < 1 else False
            raw = raw_headers(usage, limits, data.draw(st.integers(0, 2))) if has_headers else {}
            arrived.append((ticket, status, raw))
        elif op == "respond" and arrived:
            ticket, status, raw = arrived.pop(data.draw(st.integers(0, len(arrived) - 1)))
            parsed = parse_rate_headers(raw)
            unambiguous = ticket.short_index == window_index(now, S)
            headers_seen |= parsed.has_usage
            if status == 429:
                spent_by_429.add(window_index(now, S))
            if parsed.has_usage and unambiguous:
                informed_at.setdefault(window_index(now, S), step)
            else:
                uncertain.append((ticket, now))
            ledger.settle(ticket, now, status, parsed)
        elif op == "drop" and in_transit:
            ticket, reserved_step = in_transit.pop(data.draw(st.integers(0, len(in_transit) - 1)))
            if data.draw(st.booleans()):  # it reached the server before the connection dropped
                status, _ = server.arrive(now)
                if status == 429:
                    first_header = informed_at.get(window_index(now, S))
                    assert with_others and (first_header is None or first_header > reserved_step)
            uncertain.append((ticket, now))
            ledger.abandon(ticket, now)
        elif op == "advance":
            now += data.draw(st.sampled_from([0.05, 0.25, 0.5, 1.0, 2.0, 4.5]))
            server.touch(now)


# -- estimate_finish -------------------------------------------------------------------------------


def make_view(now, short_len, daily_len, short_limit, daily_limit, short_used, daily_used):
    def usage(kind, length, limit, used):
        return WindowUsage("read", kind, used, limit, next_boundary(now, length), length, False)
    return UsageView(now, (usage("short", short_len, short_limit, short_used),
                           usage("daily", daily_len, daily_limit, daily_used),
                           WindowUsage("overall", "short", 0, None, next_boundary(now, short_len), short_len,
                                       False),
                           WindowUsage("overall", "daily", 0, None, next_boundary(now, daily_len), daily_len,
                                       False)),
                     0)


def brute_force_finish(remaining, now, short_len, daily_len, short_limit, daily_limit, short_used,
                       daily_used):
    short_head, day_head = max(0, short_limit - short_used), max(0, daily_limit - daily_used)
    t = now
    short_index, day_index = window_index(t, short_len), window_index(t, daily_len)
    while True:
        if window_index(t, short_len) != short_index:
            short_index, short_head = window_index(t, short_len), short_limit
        if window_index(t, daily_len) != day_index:
            day_index, day_head = window_index(t, daily_len), daily_limit
        sent = min(remaining, short_head, day_head)
        remaining, short_head, day_head = remaining - sent, short_head - sent, day_head - sent
        if remaining == 0:
            return t
        t = min(next_boundary(t, short_len), next_boundary(t, daily_len))


@FAST
@given(
    remaining=st.integers(0, 80),
    now=st.integers(0, 400).map(lambda x: x / 8),
    short_len=st.integers(1, 5),
    daily_mult=st.one_of(st.integers(1, 5).map(float), st.floats(1.0, 5.0).map(lambda f: round(f, 1))),
    short_limit=st.integers(1, 6),
    daily_limit=st.integers(1, 20),
    short_used=st.integers(0, 7),
    daily_used=st.integers(0, 22),
)
@example(remaining=49, now=24.0, short_len=4, daily_mult=2.2, short_limit=3, daily_limit=6, short_used=0,
         daily_used=0)  # days of 8.8 s: day boundaries as sums of lengths drifted off the windows' own
def test_estimate_finish_matches_brute_force(remaining, now, short_len, daily_mult, short_limit, daily_limit,
                                             short_used, daily_used):
    daily_len = short_len * daily_mult
    args = (short_len, daily_len, short_limit, daily_limit, short_used, daily_used)
    expected = brute_force_finish(remaining, now, *args)
    assert estimate_finish(remaining, now, make_view(now, *args)) == pytest.approx(expected)


def test_estimate_finish_strava_scale_is_fast():
    view = make_view(1_700_000_000.0, 900, 86400, 100, 1000, 40, 500)
    started = time.perf_counter()
    finish = estimate_finish(1_000_000, 1_700_000_000.0, view)
    assert time.perf_counter() - started < 0.05
    # 500 left today, then 1000 a day: 999,500 more need 999.5 more days -> the 1000th day's 5th window
    day0 = window_start(1_700_000_000.0, 86400)
    assert finish == day0 + 1000 * 86400 + 4 * 900


def test_estimate_finish_from_ledger_and_unbounded():
    ledger = QuotaLedger(10, 100, short_window_s=10, daily_window_s=100, boundary_guard_s=0)
    assert estimate_finish(25, 0.0, ledger) == 20.0
    unbounded = make_view(0.0, 10, 100, 10, 100, 0, 0)
    unbounded = UsageView(0.0, tuple(w for w in unbounded.windows if w.bucket == "overall"), 0)
    assert estimate_finish(10**6, 5.0, unbounded) == 5.0
    assert estimate_finish(0, 5.0, ledger) == 5.0
    assert math.isfinite(estimate_finish(10**6, 0.0, ledger))
