"""Fair shares of one app's requests among its athletes: round-robin, one request at a time.

Every request holds one of `concurrency` slots from before it asks the quota for a ticket until its
response is read. A freed slot goes to the athlete after the one served last, in the athletes' fixed
order, that has a request waiting: each athlete with work gets every k-th request (k athletes with
work), and an athlete with little work never waits behind another's backfill (max-min fairness). An
athlete holds at most its share of the slots (concurrency / athletes with requests waiting or in
flight), so one whose list page came back first cannot fill every slot while the others' are on the way.
Within one athlete, its requests go in the order they asked, an urgent one (a check for new uploads
during a long backfill) first.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Hashable, Sequence
from types import TracebackType


def next_lane(order: Sequence[Hashable], last: Hashable | None, waiting: set[Hashable]) -> Hashable | None:
    """The lane to serve next: the first in `order` after `last` (cyclically) with a request waiting."""
    if not waiting:
        return None
    start = order.index(last) + 1 if last in order else 0
    for step in range(len(order)):
        lane = order[(start + step) % len(order)]
        if lane in waiting:
            return lane
    return None


def fair_share(capacity: int, active: int) -> int:
    """Slots one lane may hold while `active` lanes wait or have requests in flight (at least one)."""
    return max(1, math.ceil(capacity / max(1, active)))


class FairSlots:
    """`concurrency` request slots, handed out round-robin over lanes (athletes) with waiters; no lane
    holds more than its fair share of them while other lanes have requests waiting or in flight."""

    def __init__(self, concurrency: int) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._capacity = concurrency
        self._free = concurrency
        self._order: list[Hashable] = []
        self._waiters: dict[Hashable, deque[asyncio.Future[None]]] = {}
        self._held: dict[Hashable, int] = {}
        self._last: Hashable | None = None
        self.granted: dict[Hashable, int] = {}  # slots each lane got: the fairness bench reads it

    def lane(self, key: Hashable, *, urgent: bool = False) -> Lane:
        """`key`'s way to a slot; an `urgent` lane's requests go before the same key's other waiting ones
        (never before another key's turn)."""
        if key not in self._waiters:
            self._order.append(key)
            self._waiters[key] = deque()
            self._held[key] = 0
            self.granted[key] = 0
        return Lane(self, key, urgent)

    async def _acquire(self, key: Hashable, urgent: bool) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if urgent:
            self._waiters[key].appendleft(future)
        else:
            self._waiters[key].append(future)
        self._hand_out()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release(key)  # granted in the same instant it was cancelled: give the slot back
            elif future in self._waiters[key]:
                self._waiters[key].remove(future)
            raise

    def _release(self, key: Hashable) -> None:
        self._free += 1
        self._held[key] -= 1
        self._hand_out()

    def _hand_out(self) -> None:
        while self._free > 0:
            for queue in self._waiters.values():
                while queue and queue[0].done():  # cancelled, its task not resumed yet: it takes no slot
                    queue.popleft()
            waiting = {k for k, queue in self._waiters.items() if queue}
            active = waiting | {k for k, held in self._held.items() if held}
            share = fair_share(self._capacity, len(active))
            key = next_lane(self._order, self._last, {k for k in waiting if self._held[k] < share})
            if key is None:
                return  # the lanes that wait hold their share: the next slot freed goes round again
            self._free -= 1
            self._held[key] += 1
            self._last = key
            self.granted[key] += 1
            self._waiters[key].popleft().set_result(None)


class Lane:
    """One athlete's way to a slot: `async with lane:` around a request."""

    def __init__(self, slots: FairSlots, key: Hashable, urgent: bool) -> None:
        self._slots = slots
        self.key = key
        self.urgent = urgent

    async def __aenter__(self) -> None:
        await self._slots._acquire(self.key, self.urgent)  # noqa: SLF001 - Lane is FairSlots' own handle

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        self._slots._release(self.key)  # noqa: SLF001
