"""Pure logic of listing the history: keyset paging, where a routine listing may stop, when the whole
history is listed again, and what a listing costs.

No I/O here: the pipeline pages with `Paging` against Strava, and `list_pages_needed` replays the very
same `Paging` against a known history to count the requests a listing takes.

`GET /athlete/activities` lists newest first and takes `before` / `after` (epoch seconds, strict),
`page` and `per_page` (https://developers.strava.com/docs/reference/#api-Activities-getLoggedInAthleteActivities).
"""

from __future__ import annotations

import bisect
import heapq
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bulkfetch.plan import start_epoch

# A routine listing lists from the newest backwards until it has listed again the activities that were
# the newest this many at the previous run: late uploads, and the edits and deletions people make to
# recent activities, are seen at one request (at per_page 200) when nothing is new.
RECENT_ACTIVITIES = 200
DAY_S = 86400
_ID_SPAN = 1 << 64  # more than any id: (start + 1) * _ID_SPAN + id orders activities as (start, id) do


@dataclass(frozen=True)
class Cursor:
    """One list request: the activities starting before `before` (None: from the newest), page `page`."""

    before: int | None = None
    page: int = 1

    def params(self, per_page: int) -> dict[str, int]:
        params = {"per_page": per_page}
        if self.before is not None:
            params["before"] = self.before
        if self.page > 1:
            params["page"] = self.page
        return params


@dataclass(frozen=True)
class Boundary:
    """The oldest second of the activities a routine listing must list again, and every known activity
    of that second (`ids`): it may stop once it has listed them all, or anything older.

    All of that second, not only those among the newest: Strava orders activities of one second its own
    way, so which of them come first is unknown, but how many pages reach all of them is not.
    """

    start: int
    ids: frozenset[int]

    def holds(self, activity_id: int, start: int | None) -> bool:
        """Whether a listing that reached this boundary has listed the activity (if it still exists)."""
        return start is not None and (start > self.start or (start == self.start and activity_id in self.ids))

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start, "ids": sorted(self.ids)}

    @staticmethod
    def from_json(value: Any) -> Boundary | None:
        """A recorded boundary, or None when it is absent or unreadable (the listing then runs to the end)."""
        if not isinstance(value, dict):
            return None
        start, ids = value.get("start"), value.get("ids")
        if not isinstance(start, int) or not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            return None
        return Boundary(start, frozenset(ids))


def recent_boundary(catalog: Mapping[int, Mapping[str, Any]], newest: int = RECENT_ACTIVITIES) -> Boundary | None:
    """Where a routine listing may stop: past the `newest` known activities (all of the last one's second).
    `newest=1` is a check of the list head: what was uploaded since (1 request unless a page's worth)."""
    # Starts as ints, not (start, id) tuples: see `list_pages_needed`.
    starts = [start_epoch(a) for a in catalog.values()]
    dated = [s for s in starts if s is not None]
    if not dated:
        return None
    oldest = heapq.nlargest(newest, dated)[-1]  # not a sort of the whole history
    return Boundary(oldest, frozenset(i for i, s in zip(catalog, starts) if s == oldest))


def full_relist_due(last_full_at: float | None, now: float, every_days: int) -> bool:
    """The whole history is listed again when its last complete full listing is `every_days` old
    (and when there is none): only a full listing sees edits and deletions of older activities."""
    return last_full_at is None or now - last_full_at >= every_days * DAY_S


@dataclass
class Paging:
    """Keyset paging through the list, newest first, for one pass.

    The next cursor after a page is `before` = its oldest start second + 1: `before` is strict and
    activities can share a second, so the activities of that second come again rather than being
    skipped (they are told apart by id). When a whole page is of one second, `before` cannot move past
    it: the page number then moves within that second, to the page holding the first activity of it
    not listed yet. So every full page brings at least one new activity, at any `per_page`.

    A pass ends at a short page (the end of the history), at a page with nothing new, or, for a
    routine listing, once it has listed every activity its `boundary` holds.
    """

    per_page: int
    boundary: Boundary | None = None
    seen: dict[int, int | None] = field(default_factory=dict)  # id -> start of every activity listed
    cursor: Cursor | None = field(default_factory=Cursor)
    # Counts per start second, and the oldest second listed: kept as pages come, so that a page costs
    # its own length whatever the history's (per_page 1 over 20,000 activities stays fast).
    _per_second: Counter[int] = field(init=False, repr=False)
    _oldest: int | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._per_second = Counter(s for s in self.seen.values() if s is not None)
        self._oldest = min(self._per_second, default=None)

    def resume(self) -> None:
        """A killed listing continues below the oldest activity it listed (unless it got far enough)."""
        self.cursor = None if self._covered() or self._oldest is None else self._below(self._oldest)

    def top_up(self) -> None:
        """A resumed listing then looks at the newest activities again (some may have been added since
        it started), until a page brings nothing new."""
        self.cursor, self.boundary = Cursor(), None

    def take(self, page: Mapping[int, int | None], *, short: bool) -> int:
        """Record a page (id -> start) and move the cursor (None: the pass is over); returns how many
        of its activities were new."""
        fresh = 0
        for activity_id, start in page.items():
            fresh += activity_id not in self.seen
            self._record(activity_id, start)
        dated = [s for s in page.values() if s is not None]
        if short or not fresh or not dated or self._covered():
            self.cursor = None
        else:
            self.cursor = self._below(min(dated))
        return fresh

    def _record(self, activity_id: int, start: int | None) -> None:
        previous = self.seen.get(activity_id)
        if previous is not None:
            self._per_second[previous] -= 1  # listed again with another start (edited meanwhile)
        self.seen[activity_id] = start
        if start is not None:
            self._per_second[start] += 1
            self._oldest = start if self._oldest is None else min(self._oldest, start)

    def _covered(self) -> bool:
        boundary = self.boundary
        if boundary is None:
            return False
        return boundary.ids <= self.seen.keys() or (self._oldest is not None and self._oldest < boundary.start)

    def _below(self, oldest: int) -> Cursor:
        return Cursor(before=oldest + 1, page=self._per_second[oldest] // self.per_page + 1)


def list_pages_needed(history: Iterable[tuple[int, int | None]], per_page: int, *,
                      boundary: Boundary | None = None, listed: Mapping[int, int | None] | None = None) -> int:
    """The list requests a listing of `history` ((id, start) pairs) takes: `Paging` replayed against it.

    `listed` are the activities a killed listing already holds: it resumes, then tops up. The replayed
    list is ordered as Strava's, newest first; activities of one second by id, as the simulator orders
    them (Strava's own order of them can change the count of a listing killed inside such a second).
    Activities without a start count as the oldest.
    """
    # Each activity as one int ordered as (start, id), oldest first: ints are not tracked by the garbage
    # collector, where 20,000 (start, id) tuples made a fetch's full collection (0.05 s at 20,000 activities).
    order = sorted(((-1 if s is None else s) + 1) * _ID_SPAN + i for i, s in history)
    paging = Paging(per_page, boundary, dict(listed or {}))
    passes = 1
    if listed:
        paging.resume()
        passes = 2
    pages = 0
    for number in range(passes):
        if number:
            paging.top_up()
        while paging.cursor is not None:
            page = _serve(order, paging.cursor, per_page)
            pages += 1
            paging.take({i: s for s, i in page}, short=len(page) < per_page)
    return pages


def _serve(order: list[int], cursor: Cursor, per_page: int) -> list[tuple[int, int]]:
    """What Strava answers `cursor` with, as (start, id) newest first, for a history of `list_pages_needed`'s
    keys: the newest is the last."""
    first = 0 if cursor.before is None else len(order) - bisect.bisect_left(order, (cursor.before + 1) * _ID_SPAN)
    end = len(order) - first - (cursor.page - 1) * per_page  # past the page's newest, oldest first
    return [(key // _ID_SPAN - 1, key % _ID_SPAN) for key in reversed(order[max(0, end - per_page):max(0, end)])]
