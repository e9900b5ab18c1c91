"""QuotaScheduler with a fake clock: its sleep advances time, so no test really waits."""

from __future__ import annotations

import asyncio
import email.utils
from collections import Counter

import pytest

from bulkfetch.errors import EXIT_WORK_LEFT, QuotaStop
from bulkfetch.quota import QuotaLedger, window_index
from bulkfetch.scheduler import QuotaScheduler, WaitInfo, WaitPolicy

FAST_RATE = 1e6  # aiolimiter runs on the loop's real clock: keep it out of the way


class FakeClock:
    """`clock()` returns fake epoch seconds; `sleep(s)` lets other tasks run, then moves time to at
    least start + s (concurrent sleepers do not add up)."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = t
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        target = self.t + seconds
        self.sleeps.append(seconds)
        for _ in range(5):
            await asyncio.sleep(0)
        self.t = max(self.t, target)


def make(short=2, daily=100, *, policy=WaitPolicy(), t=0.0, guard_s=0.0, **kwargs):
    clock = FakeClock(t)
    waits: list[WaitInfo | None] = []
    ledger = QuotaLedger(short, daily, short_window_s=10, daily_window_s=100, boundary_guard_s=guard_s)
    scheduler = QuotaScheduler(ledger, max_rate_per_s=FAST_RATE, policy=policy, clock=clock,
                               sleep=clock.sleep, on_wait=waits.append, **kwargs)
    return scheduler, clock, waits


def done(scheduler, ticket, clock, status=200, headers=None):
    scheduler.settle(ticket, status, headers or {}, sent_at_local=clock.t, recv_at_local=clock.t)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=5))


def test_waits_until_the_boundary_and_reports_it():
    async def main():
        scheduler, clock, waits = make(short=2, t=1.0)
        for _ in range(2):
            done(scheduler, await scheduler.acquire(), clock)
        ticket = await scheduler.acquire()
        assert clock.t >= 10.0 and ticket.short_index == 1
        assert waits[0] == WaitInfo(10.0, waits[0].reason, "short") and "2/2" in waits[0].reason
        assert waits[-1] is None and len(waits) == 2
    run(main())


def test_wait_includes_the_boundary_guard():
    async def main():
        scheduler, clock, waits = make(short=1, t=1.0, guard_s=0.5)
        done(scheduler, await scheduler.acquire(), clock)
        ticket = await scheduler.acquire()
        assert clock.t >= 10.5 and ticket.short_index == 1
        assert [info.until if info else None for info in waits] == [10.5, None]
    run(main())


def test_concurrent_acquirers_never_exceed_a_window():
    async def main():
        scheduler, clock, waits = make(short=3, daily=8)
        sent = Counter()

        async def worker():
            ticket = await scheduler.acquire()
            sent[("short", window_index(clock.t, 10))] += 1  # the server counts it on arrival, now
            sent[("daily", window_index(clock.t, 100))] += 1
            await clock.sleep(0.2)  # latency
            done(scheduler, ticket, clock)

        async with asyncio.TaskGroup() as group:
            for _ in range(8):
                group.create_task(worker())
        assert max(n for (kind, _), n in sent.items() if kind == "short") <= 3
        assert sent[("daily", 0)] == 8
        assert clock.t >= 20.0  # needed three short windows
        assert any(info is not None for info in waits) and waits[-1] is None
    run(main())


def test_concurrent_acquirers_with_headers_and_another_program():
    """The server's usage headers reveal 2 requests of another program in each window."""
    async def main():
        scheduler, clock, _ = make(short=5, daily=100)
        counts = Counter()
        seen_windows = set()
        rejected = 0

        async def worker():
            nonlocal rejected
            ticket = await scheduler.acquire()
            index = window_index(clock.t, 10)
            if index not in seen_windows:
                seen_windows.add(index)
                counts[index] += 2
            counts[index] += 1
            status = 429 if counts[index] > 5 else 200
            rejected += status == 429
            usage = f"{counts[index]},{sum(counts.values())}"
            await clock.sleep(0.1)
            done(scheduler, ticket, clock, status,
                 {"X-ReadRateLimit-Usage": usage, "X-ReadRateLimit-Limit": "5,100"})

        first = await scheduler.acquire()  # window 0 before any header: counted locally (limit 5)
        counts[0] += 3
        seen_windows.add(0)
        done(scheduler, first, clock, 200, {"X-ReadRateLimit-Usage": "3,3", "X-ReadRateLimit-Limit": "5,100"})
        async with asyncio.TaskGroup() as group:
            for _ in range(12):
                group.create_task(worker())
        assert rejected == 0
        assert max(counts.values()) <= 5
    run(main())


def test_no_wait_raises_quota_stop_with_reset_time():
    async def main():
        scheduler, clock, waits = make(short=1, policy=WaitPolicy(no_wait=True), t=3.0)
        done(scheduler, await scheduler.acquire(), clock)
        with pytest.raises(QuotaStop) as caught:
            await scheduler.acquire()
        assert caught.value.reset_at == 10.0 and caught.value.exit_code == EXIT_WORK_LEFT
        assert "quota spent" in str(caught.value) and "--no-wait" in str(caught.value)
        assert clock.t == 3.0 and clock.sleeps == []
    run(main())


@pytest.mark.parametrize("max_wait_s, raises", [(5.0, True), (7.0, False)])
def test_max_wait(max_wait_s, raises):
    async def main():
        scheduler, clock, _ = make(short=1, policy=WaitPolicy(max_wait_s=max_wait_s), t=3.5)
        done(scheduler, await scheduler.acquire(), clock)
        if raises:
            with pytest.raises(QuotaStop) as caught:
                await scheduler.acquire()
            assert caught.value.reset_at == 10.0 and "--max-wait 7" in str(caught.value)
        else:
            assert (await scheduler.acquire()).short_index == 1
    run(main())


def test_daily_429_stops_until_midnight():
    async def main():
        scheduler, clock, _ = make(short=5, daily=100, policy=WaitPolicy(max_wait_s=60), t=12.0)
        ticket = await scheduler.acquire()
        done(scheduler, ticket, clock, 429,
             {"x-readratelimit-usage": "1,100", "x-readratelimit-limit": "5,100"})
        with pytest.raises(QuotaStop) as caught:
            await scheduler.acquire()
        assert caught.value.reset_at == 100.0
    run(main())


def test_inflight_wait_ignores_policy_and_wakes_on_settle():
    async def main():
        scheduler, clock, waits = make(short=5, policy=WaitPolicy(no_wait=True))
        done(scheduler, await scheduler.acquire(), clock, 200, {"X-ReadRateLimit-Usage": "1,1"})
        clock.t = 10.0
        probe = await scheduler.acquire()  # first request of window 1: the probe
        second = asyncio.ensure_future(scheduler.acquire())
        for _ in range(3):
            await asyncio.sleep(0)
        assert not second.done()  # waiting for the probe's response, not raising
        done(scheduler, probe, clock, 200, {"X-ReadRateLimit-Usage": "1,2"})
        assert (await second).short_index == 1
        assert waits == []  # in-flight waits are not shown
    run(main())


def test_clock_offset_from_date_header():
    async def main():
        scheduler, clock, _ = make(t=1000.0)
        ticket = await scheduler.acquire()
        date = email.utils.formatdate(1100.0, usegmt=True)
        scheduler.settle(ticket, 200, {"Date": date}, sent_at_local=1000.0, recv_at_local=1001.0)
        assert scheduler.now() == pytest.approx(1100.0)  # offset (1100 + 0.5) - 1000.5 = 100
        assert scheduler.ledger.clock_offset_s == pytest.approx(100.0)
        small = make(t=1000.0)[0]
        t = await small.acquire()
        small.settle(t, 200, {"date": email.utils.formatdate(1001.0, usegmt=True)},
                     sent_at_local=1000.0, recv_at_local=1000.2)
        assert small.now() == 1000.0  # within the deadband: no correction
    run(main())


def test_slow_rate_is_accepted():
    async def main():
        ledger = QuotaLedger(5, 100, short_window_s=10, daily_window_s=100)
        scheduler = QuotaScheduler(ledger, max_rate_per_s=0.5)
        assert (await scheduler.acquire()).seq == 1
    run(main())
