"""Fair shares of one app's requests among its athletes: least served first, one request at a time.

Every request holds one of `concurrency` slots from before it asks the quota for a ticket until its
response is read. A freed slot goes to the athlete, among those with a request waiting, that was served
least in the current quota window; ties go round-robin, to the first after the one served last in the
athletes' fixed order. While all of them wait, that is plain round-robin: each athlete with work gets
every k-th request (k athletes with work), and an athlete with little work never waits behind another's
backfill (max-min fairness). Counting per window matters because the window's quota, not the slots, is
what runs out: an athlete that could not ask for a while (its list pages go one at a time, each waiting
for the one before) catches up within the window instead of finding the quota spent by the others; the
count starts again at each window, so one that was away long never starves the rest. And a slot is not
handed to an athlete AHEAD_LIMIT requests ahead of one paging through its list (its next page is asked
when this one is back and written): the quota waits for it instead of being spent meanwhile. Within
one athlete, its requests go in the order they asked, an urgent one (a check for new uploads during a long
backfill) first.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType

# How far (in requests this window) an athlete may run ahead of one whose only request is on the way:
# two keeps the one-page-at-a-time lister within floor(W/k) - 1 of a window's W requests.
AHEAD_LIMIT = 2


def next_lane(order: Sequence[Hashable], last: Hashable | None, waiting: set[Hashable],
              served: Mapping[Hashable, int] | None = None) -> Hashable | None:
    """The lane to serve next: of those with a request `waiting`, the least `served` (none given: all
    equal), ties to the first in `order` after `last` (cyclically)."""
    start = order.index(last) + 1 if last in order else 0
    turn = [lane for step in range(len(order)) if (lane := order[(start + step) % len(order)]) in waiting]
    counts = served or {}
    return min(turn, key=lambda lane: counts.get(lane, 0), default=None)  # min keeps the first of equals


def ahead_of_one_on_the_way(key: Hashable, on_the_way: set[Hashable], served: Mapping[Hashable, int]) -> bool:
    """Whether `key` was served AHEAD_LIMIT or more requests more in this window than a lane `on_the_way`:
    one paging through its list, a page at a time, each asked when the one before is back (and written).
    Without this hold the others spend the window's quota while its page is on the way."""
    return any(served.get(key, 0) - served.get(other, 0) >= AHEAD_LIMIT for other in on_the_way if other != key)


class FairSlots:
    """`concurrency` request slots, handed out least-served-first over lanes (athletes) with waiters.

    `window()` names the current quota window (e.g. the short window's index): the served counts restart
    when it changes. Without it every lane counts as equally served: plain round-robin."""

    def __init__(self, concurrency: int, window: Callable[[], int] | None = None) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._free = concurrency
        self._order: list[Hashable] = []
        self._waiters: dict[Hashable, deque[asyncio.Future[None]]] = {}
        self._last: Hashable | None = None
        self._window = window
        self._current: int | None = None
        self._served: Counter[Hashable] = Counter()  # slots granted in the current window
        self._held: Counter[Hashable] = Counter()  # slots held now
        self._sequential: Counter[Hashable] = Counter()  # lanes paging one request after the other
        self.granted: dict[Hashable, int] = {}  # slots each lane got in all

    def lane(self, key: Hashable, *, urgent: bool = False) -> Lane:
        """`key`'s way to a slot; an `urgent` lane's requests go before the same key's other waiting ones
        (never before another key's turn)."""
        if key not in self._waiters:
            self._order.append(key)
            self._waiters[key] = deque()
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

    def _grant(self, key: Hashable) -> None:
        self._roll()
        self._free -= 1
        self._last = key
        self._served[key] += 1
        self._held[key] += 1
        self.granted[key] += 1

    def _roll(self) -> None:
        """A new window: what each lane holds counts as served in it, for a request waiting for quota at
        the boundary (or in flight across it) is sent in the new window."""
        if self._window is None:
            return
        window = self._window()
        if window != self._current:
            self._current = window
            self._served = +self._held

    def _pace(self, key: Hashable, change: int) -> None:
        self._sequential[key] += change
        self._hand_out()  # a lane that stops paging frees the slots held back for it

    def _hand_out(self) -> None:
        while self._free > 0:
            for queue in self._waiters.values():
                while queue and queue[0].done():  # cancelled, its task not resumed yet: it takes no slot
                    queue.popleft()
            self._roll()
            waiting = {k for k, queue in self._waiters.items() if queue}
            key = next_lane(self._order, self._last, waiting, self._served if self._window is not None else None)
            on_the_way = {k for k, n in self._sequential.items() if n > 0 and k not in waiting}
            if key is None or self._window is not None and ahead_of_one_on_the_way(key, on_the_way, self._served):
                return  # the slot waits for the athlete whose page is on the way: it asks again or stops paging
            self._grant(key)
            self._waiters[key].popleft().set_result(None)


class Lane:
    """One athlete's way to a slot: `async with lane:` around a request; `with lane.one_at_a_time():`
    around requests that each wait for the one before (paging), `with lane.resting():` around a pause
    within them (a retry's backoff), when the others need not wait."""

    def __init__(self, slots: FairSlots, key: Hashable, urgent: bool) -> None:
        self._slots = slots
        self.key = key
        self.urgent = urgent

    async def __aenter__(self) -> None:
        await self._slots._acquire(self.key, self.urgent)  # noqa: SLF001 - Lane is FairSlots' own handle

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        self._slots._release(self.key)  # noqa: SLF001

    @contextmanager
    def one_at_a_time(self) -> Iterator[None]:
        self._slots._pace(self.key, +1)  # noqa: SLF001
        try:
            yield
        finally:
            self._slots._pace(self.key, -1)  # noqa: SLF001

    @contextmanager
    def resting(self) -> Iterator[None]:
        paced = max(0, self._slots._sequential[self.key])  # noqa: SLF001
        self._slots._pace(self.key, -paced)  # noqa: SLF001
        try:
            yield
        finally:
            self._slots._pace(self.key, paced)  # noqa: SLF001
