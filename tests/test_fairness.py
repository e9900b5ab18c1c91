"""The fair request slots (bulkfetch.fairness): least served in the quota window first, ties round-robin.
Pure and asyncio-only: the whole pipeline's shares are measured by bench/fairness.py (tests/test_bench.py)."""

from __future__ import annotations

import asyncio

from bulkfetch.fairness import AHEAD_LIMIT, FairSlots, Lane, next_lane


def test_next_lane_serves_the_least_served_first_and_ties_in_turn() -> None:
    order = ["a", "b", "c"]
    assert next_lane(order, "a", {"a", "b", "c"}, {"a": 5, "b": 3, "c": 3}) == "b"
    assert next_lane(order, "b", {"a", "b", "c"}, {"a": 5, "b": 4, "c": 3}) == "c"
    assert next_lane(order, "c", {"a", "b", "c"}, {"a": 4, "b": 4, "c": 4}) == "a"  # all equal: round-robin
    assert next_lane(order, "b", {"a", "c"}, {"c": 2}) == "a"  # never served in the window counts as 0
    assert next_lane(order, "a", {"a"}, {"a": 9, "b": 0}) == "a"  # alone waiting: every slot is its
    assert next_lane(order, "a", set(), {"b": 0}) is None


async def _requests(lane: Lane, count: int, served: list[str]) -> None:
    """`count` requests in two workers, as an athlete has several requests waiting at once (one worker
    could not ask again before the other lane's waiter took the slot it freed)."""

    async def worker(share: int) -> None:
        for _ in range(share):
            async with lane:
                served.append(str(lane.key))
                await asyncio.sleep(0)

    await asyncio.gather(worker(count - count // 2), worker(count // 2))


def test_a_lane_that_could_not_ask_catches_up_within_the_window_only() -> None:
    window = [0]
    slots = FairSlots(1, window=lambda: window[0])
    big, late = slots.lane("big"), slots.lane("late")
    served: list[str] = []

    async def run() -> list[list[str]]:
        phases = []
        for tasks in ([(big, 4)], [(big, 6), (late, 6)], None, [(big, 3), (late, 3)]):
            if tasks is None:
                window[0] = 1  # a new quota window
                continue
            served.clear()
            await asyncio.gather(*(_requests(lane, count, served) for lane, count in tasks))
            phases.append(list(served))
        return phases

    alone, catching_up, next_window = asyncio.run(run())
    assert alone == ["big"] * 4
    # 'late' asks only now: it goes first until it has had as many of this window's slots as 'big'.
    assert catching_up == ["big"] + ["late"] * 5 + ["big", "late"] + ["big"] * 4
    # A new window: counts start again, so 'late' takes turns, no catch-up on the last window's count.
    assert next_window == ["big", "late"] * 3
    assert slots.granted == {"big": 13, "late": 9}


def test_slots_held_when_the_window_turns_count_in_the_new_window() -> None:
    """Requests holding a slot at the boundary wait for its quota: they are sent in the new window."""
    window = [0]
    slots = FairSlots(3, window=lambda: window[0])
    a, b = slots.lane("a"), slots.lane("b")
    order: list[str] = []

    async def hold(lane: Lane, gate: asyncio.Event) -> None:
        async with lane:
            order.append(str(lane.key))
            await gate.wait()

    async def run() -> None:
        gates = [asyncio.Event() for _ in range(6)]
        held = [asyncio.create_task(hold(a, gate)) for gate in gates[:3]]  # 'a' holds every slot
        await asyncio.sleep(0)
        window[0] = 1
        queued = [asyncio.create_task(hold(lane, gate)) for lane, gate in zip((b, b, a), gates[3:])]
        await asyncio.sleep(0)
        for gate in gates:
            gate.set()
            for _ in range(3):
                await asyncio.sleep(0)
        await asyncio.gather(*held, *queued)

    asyncio.run(run())
    # In window 1 'a' counts as served twice (its two requests still holding a slot), so 'b' gets both
    # freed slots before 'a' gets another; counting from zero would have alternated b, a, b.
    assert order == ["a", "a", "a", "b", "b", "a"]


def test_without_a_window_the_slots_go_round_robin() -> None:
    slots = FairSlots(1)
    served: list[str] = []

    async def run() -> None:
        await _requests(slots.lane("big"), 4, served)
        served.clear()
        await asyncio.gather(_requests(slots.lane("big"), 4, served), _requests(slots.lane("late"), 4, served))

    asyncio.run(run())
    assert served == ["big", "late"] * 4  # no catch-up: nothing counts the earlier slots


def test_a_lane_paging_one_request_at_a_time_is_not_outrun_between_its_pages() -> None:
    """While 'lister' writes a page before asking for the next, 'fast' may run at most AHEAD_LIMIT
    requests ahead in the window; it goes on once the lister asks again, rests, or stops paging."""
    slots = FairSlots(4, window=lambda: 0)
    lister, fast = slots.lane("lister"), slots.lane("fast")
    served: list[str] = []

    async def run() -> list[list[str]]:
        phases = []
        with lister.one_at_a_time():
            async with lister:
                served.append("lister")
            busy = asyncio.create_task(_requests(fast, 8, served))  # 'lister' writes its page meanwhile
            for _ in range(10):
                await asyncio.sleep(0)
            phases.append(list(served))
            async with lister:  # the next page
                served.append("lister")
            for _ in range(10):
                await asyncio.sleep(0)
            phases.append(list(served))
            with lister.resting():  # a retry's backoff: nothing is on the way
                for _ in range(10):
                    await asyncio.sleep(0)
            phases.append(list(served))
        await busy
        phases.append(list(served))
        return phases

    between_pages, next_page, resting, done = asyncio.run(run())
    assert between_pages == ["lister"] + ["fast"] * (1 + AHEAD_LIMIT)  # 1 + the limit ahead, then held
    assert next_page == between_pages + ["lister"] + ["fast"]  # one more page: one more for 'fast'
    assert resting.count("fast") == 8 and done.count("fast") == 8  # resting: 'fast' runs freely
