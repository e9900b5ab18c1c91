"""Pure quota core: Strava's aligned rate-limit windows, its rate headers, and the ledger that decides
what may be sent. No I/O, no asyncio; every time is a parameter in epoch seconds (float) on the
*server's* clock (see `clock_offset`). The only place that waits is `bulkfetch.scheduler`.

Strava's rules (https://developers.strava.com/docs/rate-limits/), as this module models them:

* Two buckets per application, "read" (default 100 per 15 min / 1,000 per day) and "overall"
  (200 / 2,000); every GET counts in both.
* Windows are fixed and aligned: index = floor(t / length_s); 15-minute windows start at
  :00/:15/:30/:45, the daily one at midnight UTC. Lengths are parameters (tests use 1-2 s).
* The server counts a request when it arrives; a request that takes a window over its limit is
  answered 429 and *still counts*. So a 429 means "this window is spent": never retry into it.
* Responses usually carry `X-RateLimit-*` (overall) and `X-ReadRateLimit-*` (read) headers, each
  "short,daily", usage after counting the request. Missing headers mean UNKNOWN, never zero. Other
  programs of the same app spend quota we only see through these headers.

How the ledger estimates a window's usage (per bucket and window kind, at the ledger's time `now`):

    estimate = max(sent + carried + floor,  U_max + unsure)

* `sent`: our tickets reserved in this window; `carried`: tickets that were still in flight when the
  window began (sent at the very end of the previous window, the server may count them in this one);
  `floor`: usage absorbed from an older version's snapshot, until the first unambiguous header of the
  window.
* `U_max`: the highest usage any unambiguous response X* reported in this window (server usage is
  monotone within a window, so X* is the last of our reporting requests to arrive).
* `unsure`: our tickets the server may have counted after X* arrived: those in flight when X* was
  reserved plus those reserved after it, minus X* itself and minus every ticket whose own unambiguous
  report is in (such a report is < U_max, so that request arrived before X*). Tickets still in flight
  are always in `unsure`, so this is at least the design's `U_max + in_flight`.

  Deviation from the plain `max(sent, U_max + in_flight)`: that rule forgets a request once it
  settles without headers (or ambiguously) after having arrived later than X*, e.g. a request carried
  over from the previous window that the server counted in this one, or a headerless response (the
  streams endpoint sends none) while another program's usage is in U_max; `sent` alone does not cover
  other programs, so the next request could be a 429. `unsure` keeps such requests counted, and only
  those: with every response headered and unambiguous the estimate is exact when nothing is in flight.
  Other programs that spend after X* are invisible until the next header (the probe rule below).

A response is *unambiguous* for a window when its request was reserved and answered in that same
window index (by the ledger's clock); an ambiguous response's usage is ignored, except that a 429 is
always obeyed. The ledger's clock is made monotone (`now` never goes back), so a clock-offset
correction cannot move it into an earlier window.

Assumption: an abandoned request (connection dropped, timeout) has either already been counted by the
server or never will be; it stays counted in `sent`.

"Our" requests are those of every process of the app on this machine: they share one ledger, each
change made on its newest `state()` (`bulkfetch.shared_ledger` keeps it in a file under a lock), so the
tickets, their seqs and X* are the app's, exactly as for the workers of one process.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

BUCKETS = ("read", "overall")
KINDS = ("short", "daily")
LEGACY_SNAPSHOT_VERSION = 1  # `state/quota.json`, kept per data_dir by versions before the per-app ledger
STATE_VERSION = 2
REPORTS_BEFORE_PRUNING = 64  # per window and bucket, in a state: more, and those no one can consult go
CLOCK_SKEW_DEADBAND_S = 2.0
# Our clock may be up to ~2.5 s off the server's (deadband + Date truncation): after a window that ended
# full, wait this long past the boundary, or the server may still count the request in the full window.
BOUNDARY_GUARD_MAX_S = 3.0

_HEADER_NAMES = {
    "x-ratelimit-limit": ("overall", "limit"),
    "x-ratelimit-usage": ("overall", "usage"),
    "x-readratelimit-limit": ("read", "limit"),
    "x-readratelimit-usage": ("read", "usage"),
}


# --------------------------------------------------------------------------------------------------
# Window math


def window_index(t: float, length_s: float) -> int:
    """The aligned window holding epoch second `t`: floor(t / length_s), exact at the boundaries."""
    index = math.floor(t / length_s)
    # t / length_s can round across an integer; make window_start <= t < next_boundary hold exactly.
    if index * length_s > t:
        index -= 1
    elif (index + 1) * length_s <= t:
        index += 1
    return index


def window_start(t: float, length_s: float) -> float:
    """Epoch second at which the window holding `t` began (aligned to multiples of `length_s`)."""
    return window_index(t, length_s) * length_s


def next_boundary(t: float, length_s: float) -> float:
    """Epoch second at which the window holding `t` ends and the next one begins (always > t)."""
    return (window_index(t, length_s) + 1) * length_s


# --------------------------------------------------------------------------------------------------
# Headers


@dataclass(frozen=True)
class RateHeaders:
    """Strava's rate headers of one response: each field is `(short, daily)`, or None when the header
    was missing or garbled (None means UNKNOWN, never zero). Usage includes the request itself."""

    read_limit: tuple[int, int] | None = None
    read_usage: tuple[int, int] | None = None
    overall_limit: tuple[int, int] | None = None
    overall_usage: tuple[int, int] | None = None

    def limit(self, bucket: str) -> tuple[int, int] | None:
        return self.read_limit if bucket == "read" else self.overall_limit

    def usage(self, bucket: str) -> tuple[int, int] | None:
        return self.read_usage if bucket == "read" else self.overall_usage

    @property
    def has_usage(self) -> bool:
        return self.read_usage is not None or self.overall_usage is not None


NO_HEADERS = RateHeaders()


def _parse_pair(value: str) -> tuple[int, int] | None:
    parts = value.split(",")
    if len(parts) != 2:
        return None
    try:
        short, daily = (int(part.strip()) for part in parts)
    except ValueError:
        return None
    if short < 0 or daily < 0:
        return None
    return short, daily


def parse_rate_headers(headers: Mapping[str, str]) -> RateHeaders:
    """Read the four rate headers, matching names case-insensitively and tolerating spaces
    ("100, 1000"); a missing or garbled header gives None for that pair."""
    found: dict[str, tuple[int, int] | None] = {}
    for name, value in headers.items():
        key = _HEADER_NAMES.get(str(name).strip().lower())
        if key is not None and isinstance(value, str):
            found[f"{key[0]}_{key[1]}"] = _parse_pair(value)
    return RateHeaders(**found)


def parse_http_date(value: str | None) -> float | None:
    """An HTTP `Date` header ("Tue, 15 Nov 1994 08:12:31 GMT") as epoch seconds, or None."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:  # "-0000" means UTC with unknown origin
        return float(parsed.replace(tzinfo=datetime.UTC).timestamp())
    return float(parsed.timestamp())


def clock_offset(server_date_s: float, sent_local_s: float, recv_local_s: float) -> float:
    """Estimated server-minus-local clock offset in seconds from one response.

    The `Date` header is truncated to whole seconds, so the server's time at the request's midpoint is
    estimated as `server_date_s + 0.5`; offset = that - (sent_local_s + recv_local_s) / 2. Offsets of
    at most 2.0 s give 0.0: only a skew beyond the header's own noise is corrected.
    """
    offset = (server_date_s + 0.5) - (sent_local_s + recv_local_s) / 2
    return 0.0 if abs(offset) <= CLOCK_SKEW_DEADBAND_S else offset


# --------------------------------------------------------------------------------------------------
# Ledger


@dataclass(frozen=True)
class Ticket:
    """One reserved request. `sent_at` is ledger (server-clock) epoch seconds; the indices are the
    short and daily windows it was reserved in."""

    seq: int
    sent_at: float
    short_index: int
    daily_index: int

    def index(self, kind: str) -> int:
        return self.short_index if kind == "short" else self.daily_index


@dataclass(frozen=True)
class Block:
    """Why `reserve` would refuse now. `until` is the server-clock epoch second at which time alone
    can lift the block (a window boundary plus the boundary guard), or None when only in-flight
    requests block (a settle may free headroom). `window` is "short", "daily" or "inflight"."""

    until: float | None
    reason: str
    window: str


@dataclass(frozen=True)
class WindowUsage:
    """One (bucket, window) for display: `used` is the ledger's estimate (requests), `limit` None when
    unknown, `resets_at` the next boundary (server-clock epoch s), `spent` set by a 429."""

    bucket: str
    window: str
    used: int
    limit: int | None
    resets_at: float
    length_s: float
    spent: bool

    @property
    def headroom(self) -> float:
        if self.spent:
            return 0
        return math.inf if self.limit is None else max(0, self.limit - self.used)


@dataclass(frozen=True)
class UsageView:
    """The four (bucket, window) pairs at server-clock time `now`, plus requests in flight."""

    now: float
    windows: tuple[WindowUsage, ...]
    in_flight: int

    def get(self, bucket: str, window: str) -> WindowUsage:
        return next(w for w in self.windows if w.bucket == bucket and w.window == window)


@dataclass
class _Pair:
    u_max: int | None = None  # highest unambiguous usage reported in this window
    x_seq: int = 0  # the ticket X* that reported u_max
    x_inflight: frozenset[int] = frozenset()  # tickets in flight when X* was reserved
    reported: set[int] = field(default_factory=set)  # tickets with an unambiguous report here
    reported_after: int = 0  # how many of `reported` were reserved after X*
    floor: int = 0  # restored usage, until the first unambiguous header


@dataclass
class _Window:
    index: int
    sent: int = 0
    carried: int = 0
    informed: bool = False  # an unambiguous usage header arrived in this window
    spent: bool = False  # a 429 said so
    guard_until: float = -math.inf  # the previous window ended full: wait out clock skew until then
    pairs: dict[str, _Pair] = field(default_factory=lambda: {bucket: _Pair() for bucket in BUCKETS})


def _utc(t: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(t)) + " UTC"


class QuotaLedger:
    """The single source of truth for what may be sent.

    Rules (times are server-clock epoch seconds, counts are requests):

    * `reserve(now)` gives a Ticket only if every known (bucket, window) limit keeps headroom >= 1;
      the request then counts as spent in every window at once (in-flight requests count as spent).
    * Probe rule: once the server is known to send headers (or after `restore`), while the current
      short or daily window has had no unambiguous usage header, at most one request is in flight: the
      first response of a window reveals what other programs already spent there.
    * A 429 spends the window: the daily one (until the next daily boundary) when its headers show
      daily usage >= the daily limit and it is unambiguous for the day, else the current short one.
      Nothing is sent into a spent window.
    * Boundary guard: after a window that ended full (or spent), nothing is sent during the first
      `boundary_guard_s` seconds of the next one (default min(3 s, short_window_s / 100)): our clock
      may be a second or two off the server's, and a request the server still counts in the full
      window is a 429 that spends the new window too. Costs 0.3 % of a 15-minute window.
    * Limits: the read limits come from the config, the overall ones are unknown (not binding); limits
      in headers override either.
    """

    def __init__(
        self,
        short_requests: int,
        daily_requests: int,
        *,
        short_window_s: float = 900.0,
        daily_window_s: float = 86400.0,
        boundary_guard_s: float | None = None,
    ) -> None:
        self.short_window_s = float(short_window_s)
        self.daily_window_s = float(daily_window_s)
        self.boundary_guard_s = (min(BOUNDARY_GUARD_MAX_S, self.short_window_s / 100)
                                 if boundary_guard_s is None else float(boundary_guard_s))
        self._config_limits: dict[str, list[int | None]] = {
            "read": [short_requests, daily_requests], "overall": [None, None]}
        self._header_limits: dict[str, list[int | None]] = {bucket: [None, None] for bucket in BUCKETS}
        self._in_flight: dict[int, Ticket] = {}
        self._inflight_at_reserve: dict[int, frozenset[int]] = {}
        self._windows: dict[str, _Window] = {}
        self._last_seq = 0
        self._last_now = -math.inf
        self._probe_mode = False  # headers seen, or usage this ledger did not see may exist
        self.clock_offset_s = 0.0  # kept here only so that it is saved with the state

    @classmethod
    def from_config(cls, limits: Any, *, boundary_guard_s: float | None = None) -> QuotaLedger:
        """A fresh ledger from a `LimitsConfig`."""
        return cls(limits.short_requests, limits.daily_requests, short_window_s=limits.short_window_s,
                   daily_window_s=limits.daily_window_s, boundary_guard_s=boundary_guard_s)

    # -- time ------------------------------------------------------------------------------------

    def _length(self, kind: str) -> float:
        return self.short_window_s if kind == "short" else self.daily_window_s

    def _advance(self, now: float) -> float:
        """Make the clock monotone and roll windows forward; returns the ledger's now."""
        now = max(now, self._last_now)
        self._last_now = now
        for kind in KINDS:
            index = window_index(now, self._length(kind))
            current = self._windows.get(kind)
            if current is None or index > current.index:
                fresh = _Window(index, carried=len(self._in_flight))
                if current is not None and current.index == index - 1 and self._was_full(kind):
                    fresh.guard_until = index * self._length(kind) + self.boundary_guard_s
                self._windows[kind] = fresh
        return now

    # -- estimates -------------------------------------------------------------------------------

    def limit(self, bucket: str, kind: str) -> int | None:
        """The binding limit (headers win over config), or None when unknown."""
        k = KINDS.index(kind)
        header = self._header_limits[bucket][k]
        return header if header is not None else self._config_limits[bucket][k]

    def _estimate(self, kind: str, bucket: str, *, settled: bool = False) -> int:
        """The usage estimate (module docstring); `settled=True`: as if every request in flight came
        back with an unambiguous report (the best a settle can do)."""
        window = self._windows[kind]
        pair = window.pairs[bucket]
        estimate = window.sent + window.carried + pair.floor
        if pair.u_max is not None:
            unsure = sum(1 for seq in pair.x_inflight if seq not in pair.reported)
            unsure += self._last_seq - pair.x_seq - pair.reported_after
            if settled:
                unsure -= len(self._in_flight)
            estimate = max(estimate, pair.u_max + unsure)
        return estimate

    def _was_full(self, kind: str) -> bool:
        """Whether the current window of `kind` is spent or has no headroom for any bucket."""
        if self._windows[kind].spent:
            return True
        return any(limit is not None and self._estimate(kind, bucket) >= limit
                   for bucket in BUCKETS for limit in [self.limit(bucket, kind)])

    def _probe_pending(self) -> bool:
        return self._probe_mode and not all(self._windows[kind].informed for kind in KINDS)

    def _block(self) -> Block | None:
        time_blocks: list[Block] = []
        inflight_reason: str | None = None
        for kind in KINDS:
            window = self._windows[kind]
            # a window that is full now is full at its end, so the next one starts with the guard
            until = (window.index + 1) * self._length(kind) + self.boundary_guard_s
            if window.spent:
                time_blocks.append(Block(until, f"{kind} window spent (Strava answered 429), resets "
                                                f"{_utc(until)}", kind))
                continue
            for bucket in BUCKETS:
                limit = self.limit(bucket, kind)
                if limit is None:
                    continue
                estimate = self._estimate(kind, bucket)
                if estimate + 1 <= limit:
                    continue
                if self._in_flight and self._estimate(kind, bucket, settled=True) + 1 <= limit:
                    inflight_reason = (f"{bucket} {kind} window full ({estimate}/{limit}) until "
                                       f"{len(self._in_flight)} requests in flight are answered")
                    continue
                time_blocks.append(Block(until, f"{bucket} {kind} window full ({min(estimate, limit)}"
                                                f"/{limit}), resets {_utc(until)}", kind))
            if self._last_now < window.guard_until:
                reason = (f"previous {kind} window ended full; waiting {self.boundary_guard_s:g} s past "
                          "its boundary for clock skew")
                time_blocks.append(Block(window.guard_until, reason, kind))
        if time_blocks:
            return max(time_blocks, key=lambda block: block.until or 0.0)
        if inflight_reason is not None:
            return Block(None, inflight_reason, "inflight")
        if self._probe_pending() and self._in_flight:
            return Block(None, "waiting for the first response of the window (probe)", "inflight")
        return None

    # -- public API ------------------------------------------------------------------------------

    def blocked_until(self, now: float) -> Block | None:
        """None when `reserve(now)` would succeed, else why not (see `Block`). When several windows
        block, `until` is the latest of their boundaries: the first time it can succeed."""
        self._advance(now)
        return self._block()

    def reserve(self, now: float) -> Ticket | None:
        """Reserve one request at `now`, or None if sending it could overspend any window."""
        now = self._advance(now)
        if self._block() is not None:
            return None
        self._last_seq += 1
        ticket = Ticket(self._last_seq, now, self._windows["short"].index, self._windows["daily"].index)
        self._inflight_at_reserve[ticket.seq] = frozenset(self._in_flight)
        self._in_flight[ticket.seq] = ticket
        for kind in KINDS:
            self._windows[kind].sent += 1
        return ticket

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def settle(self, ticket: Ticket, now: float, status: int, headers: RateHeaders) -> None:
        """A response arrived at `now`: the ticket leaves flight; its limits and (if unambiguous) usage
        are folded in; a 429 spends a window (see the class docstring)."""
        now = self._advance(now)
        known = self._in_flight.pop(ticket.seq, None) is not None
        inflight_at_reserve = self._inflight_at_reserve.pop(ticket.seq, frozenset())
        for bucket in BUCKETS:
            limits = headers.limit(bucket)
            if limits is not None:
                self._header_limits[bucket] = [max(1, limits[0]), max(1, limits[1])]
        if headers.has_usage or any(headers.limit(b) for b in BUCKETS):
            self._probe_mode = True
        for kind in KINDS:
            window = self._windows[kind]
            if not known or ticket.index(kind) != window.index:
                # ambiguous: the server may have counted it in either window; or abandoned before (its
                # owner looked dead), which forgot what was in flight at its reservation: its report
                # cannot be placed
                continue
            k = KINDS.index(kind)
            for bucket in BUCKETS:
                usage = headers.usage(bucket)
                if usage is None:
                    continue
                pair = window.pairs[bucket]
                used = usage[k]
                pair.reported.add(ticket.seq)
                if pair.u_max is None or used > pair.u_max:  # the new X*
                    pair.u_max, pair.x_seq, pair.x_inflight = used, ticket.seq, inflight_at_reserve
                    # Every reported seq is <= _last_seq: walk the few seqs after X, not every report.
                    pair.reported_after = sum(1 for seq in range(ticket.seq + 1, self._last_seq + 1)
                                              if seq in pair.reported)
                elif ticket.seq > pair.x_seq:
                    pair.reported_after += 1
                pair.floor = 0
                window.informed = True
        if status == 429:
            daily_exhausted = False
            for bucket in BUCKETS:
                usage, daily_limit = headers.usage(bucket), self.limit(bucket, "daily")
                if usage is not None and daily_limit is not None and usage[1] >= daily_limit:
                    daily_exhausted = True
            if daily_exhausted and ticket.daily_index == self._windows["daily"].index:
                self._windows["daily"].spent = True
            else:
                self._windows["short"].spent = True

    def abandon(self, ticket: Ticket, now: float) -> None:
        """The request failed without a response: it stays counted (the server may have counted it)
        but is no longer in flight."""
        self._advance(now)
        self._in_flight.pop(ticket.seq, None)
        self._inflight_at_reserve.pop(ticket.seq, None)

    def usage_view(self, now: float) -> UsageView:
        """Per bucket and window: the used estimate, the limit (None if unknown), the reset time."""
        now = self._advance(now)
        windows = []
        for bucket in BUCKETS:
            for kind in KINDS:
                window, limit = self._windows[kind], self.limit(bucket, kind)
                used = self._estimate(kind, bucket)
                if window.spent and limit is not None:
                    used = max(used, limit)
                windows.append(WindowUsage(bucket, kind, used, limit, (window.index + 1) * self._length(kind),
                                           self._length(kind), window.spent))
        return UsageView(now, tuple(windows), len(self._in_flight))

    # -- sharing, and what older versions kept ----------------------------------------------------

    def tickets_in_flight(self) -> tuple[Ticket, ...]:
        return tuple(self._in_flight.values())

    def expect_other_usage(self) -> None:
        """Usage this ledger did not see may exist (a lost record, or one an older version kept): from now
        on the first request of each window is a probe that learns it from the headers."""
        self._probe_mode = True

    def state(self) -> dict[str, Any]:
        """Everything needed to go on with this ledger, JSON-able: `from_state` (in another process of the
        same app, say) gives a ledger that decides exactly as this one would. Once they are many, reports
        that no later settle or estimate can look up are dropped first (here too), so the state stays small
        however many requests a day holds."""
        for window in self._windows.values():
            for pair in window.pairs.values():
                if len(pair.reported) > REPORTS_BEFORE_PRUNING:
                    oldest = self._oldest_consulted_seq()
                    pair.reported = {seq for seq in pair.reported if seq >= oldest}
        return {
            "version": STATE_VERSION,
            "short_window_s": self.short_window_s,
            "daily_window_s": self.daily_window_s,
            "header_limits": {bucket: list(limits) for bucket, limits in self._header_limits.items()},
            "probe_mode": self._probe_mode,
            "clock_offset_s": self.clock_offset_s,
            "last_seq": self._last_seq,
            "last_now": self._last_now if math.isfinite(self._last_now) else None,
            "in_flight": [[t.seq, t.sent_at, t.short_index, t.daily_index, list(self._inflight_at_reserve[t.seq])]
                          for t in self._in_flight.values()],
            "windows": {kind: _window_state(window) for kind, window in self._windows.items()},
        }

    def _oldest_consulted_seq(self) -> int:
        """The lowest seq whose report can still be looked up: a settle looks at the reports after its own
        ticket (one in flight) and at those in flight when it was reserved; an estimate at those in flight
        when X* was reserved."""
        oldest = min(self._in_flight, default=self._last_seq + 1)
        for before in self._inflight_at_reserve.values():
            if before:
                oldest = min(oldest, min(before))
        for window in self._windows.values():
            for pair in window.pairs.values():
                if pair.x_inflight:
                    oldest = min(oldest, min(pair.x_inflight))
        return oldest

    @classmethod
    def from_state(cls, state: Any, limits: Any, *, boundary_guard_s: float | None = None) -> QuotaLedger:
        """The ledger `state()` described, with this process's config limits (header limits still win).
        Raises ValueError when `state` is not one: damaged, of another version, or kept for other window
        lengths (by a process of the same app with another [limits] config)."""
        ledger = cls.from_config(limits, boundary_guard_s=boundary_guard_s)
        if not isinstance(state, Mapping) or state.get("version") != STATE_VERSION:
            raise ValueError(f"not a version {STATE_VERSION} ledger")
        try:
            lengths = (_number(state["short_window_s"]), _number(state["daily_window_s"]))
            if lengths != (ledger.short_window_s, ledger.daily_window_s):
                raise ValueError(f"kept for windows of {lengths[0]:g} s and {lengths[1]:g} s, but [limits] says "
                                 f"{ledger.short_window_s:g} s and {ledger.daily_window_s:g} s")
            ledger._header_limits = {bucket: [None if v is None else _int(v) for v in state["header_limits"][bucket]]
                                     for bucket in BUCKETS}
            ledger._probe_mode = _bool(state["probe_mode"])
            ledger.clock_offset_s = _number(state["clock_offset_s"])
            ledger._last_seq = _int(state["last_seq"])
            ledger._last_now = -math.inf if state["last_now"] is None else _number(state["last_now"])
            for seq, sent_at, short_index, daily_index, before in state["in_flight"]:
                ticket = Ticket(_int(seq), _number(sent_at), _int(short_index), _int(daily_index))
                ledger._in_flight[ticket.seq] = ticket
                ledger._inflight_at_reserve[ticket.seq] = frozenset(map(_int, before))
            ledger._windows = {_kind(kind): _window_from_state(saved) for kind, saved in state["windows"].items()}
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"malformed ({type(error).__name__}: {error})") from None
        return ledger

    def absorb_snapshot(self, snapshot: Any, now: float) -> None:
        """Fold in what an older version kept per data_dir (`state/quota.json`, version 1), so that no usage
        it recorded is lost: its used estimate of each window still current at `now` is added as a floor
        (until the window's first unambiguous header), its 429 marks are kept, and its header limits fill
        those unknown here. Stale windows, other window lengths and malformed snapshots add nothing. The
        run that wrote it may have sent more afterwards, so each window starts with a probe from now on."""
        self.expect_other_usage()
        self._advance(now)
        try:
            legacy = _legacy_snapshot(snapshot, self.short_window_s, self.daily_window_s)
        except (AttributeError, TypeError, ValueError):
            return
        if legacy is None:
            return
        for bucket, limits in legacy.header_limits.items():
            self._header_limits[bucket] = [mine if mine is not None else theirs
                                           for mine, theirs in zip(self._header_limits[bucket], limits, strict=True)]
        if self.clock_offset_s == 0.0:
            self.clock_offset_s = legacy.clock_offset_s
        for kind, saved in legacy.windows.items():
            window = self._windows[kind]
            if saved.index != window.index:
                continue  # stale
            window.spent = window.spent or saved.spent
            for bucket, used in saved.used.items():
                window.pairs[bucket].floor += used


@dataclass(frozen=True)
class _LegacyWindow:
    index: int
    spent: bool
    used: dict[str, int]  # by bucket


@dataclass(frozen=True)
class _LegacySnapshot:
    header_limits: dict[str, list[int | None]]
    clock_offset_s: float
    windows: dict[str, _LegacyWindow]


def _legacy_snapshot(snapshot: Any, short_window_s: float, daily_window_s: float) -> _LegacySnapshot | None:
    """A version 1 snapshot, or None when it is none or was kept for other window lengths."""
    if not isinstance(snapshot, Mapping) or snapshot.get("version") != LEGACY_SNAPSHOT_VERSION:
        return None
    if (snapshot.get("short_window_s"), snapshot.get("daily_window_s")) != (short_window_s, daily_window_s):
        return None
    offset = float(snapshot.get("clock_offset_s") or 0.0)
    header_limits = {}
    for bucket in BUCKETS:
        pair = (snapshot.get("header_limits") or {}).get(bucket)
        if isinstance(pair, list) and len(pair) == 2:
            header_limits[bucket] = [v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None
                                     for v in pair]
    windows = {}
    for kind, saved in (snapshot.get("windows") or {}).items():
        if kind not in KINDS:
            continue
        used = {}
        for bucket in BUCKETS:
            value = ((saved.get("pairs") or {}).get(bucket) or {}).get("used")
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                used[bucket] = value
        windows[kind] = _LegacyWindow(_int(saved.get("index")), bool(saved.get("spent")), used)
    return _LegacySnapshot(header_limits, offset if math.isfinite(offset) else 0.0, windows)


def _window_state(window: _Window) -> dict[str, Any]:
    return {
        "index": window.index, "sent": window.sent, "carried": window.carried, "informed": window.informed,
        "spent": window.spent, "guard_until": window.guard_until if math.isfinite(window.guard_until) else None,
        "pairs": {bucket: {"u_max": pair.u_max, "x_seq": pair.x_seq, "x_inflight": list(pair.x_inflight),
                           "reported": list(pair.reported),
                           "reported_after": pair.reported_after, "floor": pair.floor}
                  for bucket, pair in window.pairs.items()},
    }


def _window_from_state(saved: Mapping[str, Any]) -> _Window:
    guard_until = saved["guard_until"]
    return _Window(
        index=_int(saved["index"]), sent=_int(saved["sent"]), carried=_int(saved["carried"]),
        informed=_bool(saved["informed"]), spent=_bool(saved["spent"]),
        guard_until=-math.inf if guard_until is None else _number(guard_until),
        pairs={bucket: _pair_from_state(saved["pairs"][bucket]) for bucket in BUCKETS},
    )


def _pair_from_state(saved: Mapping[str, Any]) -> _Pair:
    u_max = saved["u_max"]
    return _Pair(u_max=None if u_max is None else _int(u_max), x_seq=_int(saved["x_seq"]),
                 x_inflight=frozenset(map(_int, saved["x_inflight"])), reported=set(map(_int, saved["reported"])),
                 reported_after=_int(saved["reported_after"]), floor=_int(saved["floor"]))


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{value!r} is not an integer")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{value!r} is not a finite number")
    return float(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{value!r} is not a boolean")
    return value


def _kind(value: Any) -> str:
    if value not in KINDS:
        raise TypeError(f"{value!r} is not a window kind")
    return str(value)


# --------------------------------------------------------------------------------------------------
# ETA


def estimate_finish(remaining_requests: int, now: float, ledger_or_view: QuotaLedger | UsageView) -> float:
    """Earliest epoch second (server clock) at which a perfect scheduler has sent `remaining_requests`
    starting at `now`: it sends the current short window's headroom at once, then each following
    short window's full capacity at the window's start, never beyond the daily headroom (then full
    days). Request latency is ignored. Capacities are the minimum over buckets with a known limit;
    with no known limit at all the answer is `now`. O(days) in general, O(1) per run of full days
    when daily windows are whole multiples of short windows, so a million requests is instant."""
    view = ledger_or_view.usage_view(now) if isinstance(ledger_or_view, QuotaLedger) else ledger_or_view
    remaining = max(0, int(remaining_requests))
    if remaining == 0:
        return now

    def capacity(kind: str) -> tuple[float, float, float]:
        windows = [w for w in view.windows if w.window == kind]
        headroom = min((w.headroom for w in windows), default=math.inf)
        full = min((float(w.limit) for w in windows if w.limit is not None), default=math.inf)
        return headroom, full, windows[0].length_s if windows else math.inf

    short_head, short_cap, short_len = capacity("short")
    day_head, day_cap, day_len = capacity("daily")
    if math.isinf(short_cap) and math.isinf(day_cap):
        return now
    if short_cap <= 0 or day_cap <= 0:
        return math.inf  # a limit of zero: never
    t = now
    day_end = next_boundary(t, day_len) if math.isfinite(day_cap) else math.inf
    aligned = math.isfinite(day_len) and math.isfinite(short_len) and (
        abs(day_len / short_len - round(day_len / short_len)) < 1e-9)
    while True:
        # At t: send what the current short window and the day allow.
        sent = min(remaining, short_head, day_head)
        remaining -= sent
        if remaining == 0:
            return t
        short_head -= sent
        day_head -= sent
        # Full short windows that start before the day ends.
        first = next_boundary(t, short_len)
        if first < day_end:
            count = math.inf if math.isinf(day_end) else _starts_before(first, day_end, short_len)
            want = min(remaining, day_head)
            needed = 1 if math.isinf(short_cap) else math.ceil(want / short_cap)
            if needed <= count:
                last_start = first + (needed - 1) * short_len
                remaining -= want
                day_head -= want
                if remaining == 0:
                    return last_start
                # the day ran out inside window `needed`; that window may continue past day_end
                last_used = want - (needed - 1) * short_cap
                short_head_at_end = short_cap - last_used if needed == count else short_cap
            else:
                remaining -= count * short_cap
                short_head_at_end = 0.0
        else:
            short_head_at_end = short_head  # the current short window outlasts the day
        if math.isinf(day_end):  # pragma: no cover - unbounded days finish above
            return math.inf
        # Next day. Boundaries are multiples of the length, never sums of lengths (which drift).
        t = day_end
        day_end = next_boundary(t, day_len)
        day_head = day_cap
        if aligned:
            short_head = short_cap
            per_day = min(day_cap, short_cap * round(day_len / short_len))
            skip = (remaining - 1) // per_day if per_day > 0 else 0
            if skip > 0:
                remaining -= skip * per_day
                t = (window_index(t, day_len) + skip) * day_len
                day_end = next_boundary(t, day_len)
        elif window_index(t, short_len) * short_len == t:
            short_head = short_cap
        else:
            short_head = short_head_at_end


def _starts_before(first: float, end: float, length_s: float) -> int:
    """How many aligned windows start in [first, end), `first` being a boundary."""
    last = window_index(end, length_s)
    if last * length_s == end:
        last -= 1
    return max(0, last - window_index(first, length_s) + 1)
