"""The only place that waits for quota.

`QuotaScheduler.acquire()` returns a reserved `Ticket` once the `QuotaLedger` allows one more
request; the caller sends it and then calls `settle` (a response came back) or `abandon` (no
response). Two kinds of wait:

* in-flight waits: the ledger is full only because of requests in flight (or it is probing the first
  response of a window); wait until a settle/abandon wakes us, re-checking every `INFLIGHT_RECHECK_S`.
  `WaitPolicy` does not apply: these waits last one round trip.
* time waits: a window is full or spent (429); sleep until its boundary (+ `BOUNDARY_EPSILON_S`),
  waking early on a settle. `WaitPolicy` applies: `no_wait` raises `QuotaStop` at once, `max_wait_s`
  raises when the wait would be longer. `on_wait(WaitInfo)` is called when such a wait starts and
  `on_wait(None)` when it ends, for the display.

After the ledger allows a request, an aiolimiter leaky bucket smooths the send rate. The limiter is
acquired *before* the ledger reserves, with no await in between, so no ticket is held while sleeping
in the limiter, and concurrent acquirers can never together exceed the ledger. The limiter is not a
window gate (a leaky bucket of 10/s lets 13 requests into one aligned second); the ledger is.

The ledger is a `QuotaLedger`, or the app's ledger shared with its other processes
(`bulkfetch.shared_ledger.SharedLedger`, which saves every reservation before its request is sent).

Times: `clock()` is local epoch seconds; `now()` is the server-clock estimate `clock() + offset`,
where the offset comes from the responses' `Date` headers (see `quota.clock_offset`). All ledger
times, `WaitInfo.until` and `QuotaStop.reset_at` are server-clock epoch seconds.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from aiolimiter import AsyncLimiter

from bulkfetch.errors import QuotaStop
from bulkfetch.quota import (
    Block,
    RateHeaders,
    Ticket,
    UsageView,
    clock_offset,
    parse_http_date,
    parse_rate_headers,
)

BOUNDARY_EPSILON_S = 0.05  # sleep this far past a boundary, so the server has surely rolled over
INFLIGHT_RECHECK_S = 1.0  # longest wait for a settle before re-checking the ledger
OFFSET_SAMPLES = 9  # the clock offset is the median of this many recent responses


class Ledger(Protocol):
    """What the scheduler needs of a ledger (see `bulkfetch.quota.QuotaLedger` for the rules)."""

    clock_offset_s: float

    def blocked_until(self, now: float) -> Block | None: ...
    def reserve(self, now: float) -> Ticket | None: ...
    def settle(self, ticket: Ticket, now: float, status: int, headers: RateHeaders) -> None: ...
    def abandon(self, ticket: Ticket, now: float) -> None: ...
    def usage_view(self, now: float) -> UsageView: ...


@dataclass(frozen=True)
class WaitPolicy:
    no_wait: bool = False  # never sleep for quota: raise QuotaStop at the first spent window
    max_wait_s: float | None = None  # sleep only while the wait is at most this; longer -> QuotaStop


@dataclass(frozen=True)
class WaitInfo:
    """What the display shows during a time wait: until when (server-clock epoch s), why, which
    window ("short" or "daily")."""

    until: float
    reason: str
    window: str


def _utc(t: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(t)) + " UTC"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if str(key).lower() == name:
            return value
    return None


class QuotaScheduler:
    """Hands out tickets from a `QuotaLedger`, waiting for quota as `policy` allows."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        max_rate_per_s: float,
        policy: WaitPolicy = WaitPolicy(),
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_wait: Callable[[WaitInfo | None], None] | None = None,
    ) -> None:
        if not max_rate_per_s > 0:
            raise ValueError("max_rate_per_s must be positive")
        self.ledger = ledger
        self.policy = policy
        self._clock = clock
        self._sleep = sleep
        self._on_wait = on_wait
        # AsyncLimiter refuses an acquisition larger than max_rate, so express slow rates as 1 per period.
        self._limiter = (AsyncLimiter(max_rate_per_s, 1.0) if max_rate_per_s >= 1
                         else AsyncLimiter(1, 1.0 / max_rate_per_s))
        self._offset_samples: deque[float] = deque(maxlen=OFFSET_SAMPLES)
        self._offset_s = ledger.clock_offset_s
        self._changed: asyncio.Event | None = None
        self._waiting: WaitInfo | None = None

    # -- clock -----------------------------------------------------------------------------------

    def now(self) -> float:
        """Server-clock estimate, epoch seconds: clock() + the offset learned from `Date` headers."""
        return self._clock() + self._offset_s

    @property
    def clock_offset_s(self) -> float:
        return self._offset_s

    def view(self) -> UsageView:
        return self.ledger.usage_view(self.now())

    # -- acquiring -------------------------------------------------------------------------------

    async def acquire(self) -> Ticket:
        """Wait until the ledger allows one more request, then pass the rate limiter and reserve it.
        Raises QuotaStop when a time wait is not allowed by the policy."""
        try:
            while True:
                now = self.now()
                block = self.ledger.blocked_until(now)
                if block is None:
                    await self._limiter.acquire()
                    ticket = self.ledger.reserve(self.now())  # no await since the limiter
                    if ticket is None:
                        continue  # another acquirer took the last headroom while we were smoothed
                    self._end_wait()
                    return ticket
                if block.until is None:
                    await self._wait_for_change(INFLIGHT_RECHECK_S)
                    continue
                wait_s = max(0.0, block.until - now)
                self._check_policy(block, wait_s)
                self._start_wait(WaitInfo(block.until, block.reason, block.window))
                await self._wait_for_change(wait_s + BOUNDARY_EPSILON_S)
        except BaseException:
            self._end_wait()
            raise

    def _check_policy(self, block: Block, wait_s: float) -> None:
        assert block.until is not None
        if self.policy.no_wait:
            hint = f"rerun after {_utc(block.until)}, or without --no-wait"
        elif self.policy.max_wait_s is not None and wait_s > self.policy.max_wait_s:
            hint = f"rerun after {_utc(block.until)}, or with --max-wait {math.ceil(wait_s)}"
        else:
            return
        raise QuotaStop(f"quota spent: {block.reason}", reset_at=block.until, hint=hint)

    def _start_wait(self, info: WaitInfo) -> None:
        if info != self._waiting:
            self._waiting = info
            if self._on_wait is not None:
                self._on_wait(info)

    def _end_wait(self) -> None:
        if self._waiting is not None:
            self._waiting = None
            if self._on_wait is not None:
                self._on_wait(None)

    def _event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def _wait_for_change(self, timeout_s: float) -> None:
        """Sleep up to `timeout_s` (via the injected sleep), returning early on a settle/abandon."""
        changed = asyncio.ensure_future(self._event().wait())
        slept = asyncio.ensure_future(self._sleep(max(0.0, timeout_s)))
        try:
            await asyncio.wait({changed, slept}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (changed, slept):
                task.cancel()
            await asyncio.gather(changed, slept, return_exceptions=True)

    # -- responses -------------------------------------------------------------------------------

    def settle(self, ticket: Ticket, status: int, headers: Mapping[str, str], *,
               sent_at_local: float, recv_at_local: float) -> None:
        """A response came back: learn the clock offset from `Date`, fold the rate headers into the
        ledger, and wake waiters. `sent_at_local`/`recv_at_local` are `clock()` readings."""
        server_date = parse_http_date(_header(headers, "date"))
        if server_date is not None:
            self._offset_samples.append(clock_offset(server_date, sent_at_local, recv_at_local))
            self._offset_s = statistics.median(self._offset_samples)
            self.ledger.clock_offset_s = self._offset_s
        self.ledger.settle(ticket, self.now(), status, parse_rate_headers(headers))
        self._wake()

    def abandon(self, ticket: Ticket) -> None:
        """The request got no response (dropped, timed out): it stays counted, leaves flight."""
        self.ledger.abandon(ticket, self.now())
        self._wake()
