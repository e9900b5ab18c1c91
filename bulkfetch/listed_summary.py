"""A listed activity's summary as the catalog gives it: what a fetch decides from at hand, the rest of it read
from its list page the first time something asks; and what is derived from any summary, its start time and its
fingerprints (pure, no I/O of its own: below bulkfetch.plan and bulkfetch.store, which compaction uses).

A fetch that finds nothing new decides from a few values of every summary (its start, its fingerprints, its
sport, whether it is private or manual), and reads nothing else of any: a `ListedSummary` holds those values,
kept per list page by bulkfetch.store, so that such a run parses no list page it parsed before. Anything else
asked of it (another field, its length, `dict(summary)`) parses its page then, once for the page's summaries.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from bulkfetch.recording import RECORDING_FIELDS

# The summary fields whose change means the stored detail is stale. Kudos and comment counts change all
# the time and do not alter the activity's data, so they do not trigger a refetch. start_date is one:
# users fix wrong device clocks, and the detail's laps and efforts carry their own start times.
CHANGE_FIELDS = (
    "name", "sport_type", "start_date", "distance", "moving_time", "elapsed_time", "total_elevation_gain",
    "private", "gear_id", "upload_id",
)

# The summary fields a `ListedSummary` answers without its page (absent and present-but-null told apart).
KNOWN_FIELDS = ("sport_type", "private", "manual")


class ListPage:
    """One list page's activities by id, parsed by `load` when first needed, then kept."""

    __slots__ = ("_load", "_items")

    def __init__(self, load: Callable[[], dict[int, dict[str, Any]]],
                 items: dict[int, dict[str, Any]] | None = None) -> None:
        self._load = load
        self._items = items

    def items(self) -> dict[int, dict[str, Any]]:
        if self._items is None:
            self._items = self._load()
        return self._items


@dataclass(slots=True, eq=False, repr=False)
class ListedSummary(Mapping[str, Any]):
    """An activity's summary as its list page holds it, read-only. `start` (start_date in epoch s),
    `fingerprint` and `recording` (`fingerprint` and `recording_fingerprint` of the summary) are what the
    plan's functions take from it instead of reading it; `known`: its KNOWN_FIELDS that are present (shared
    by the summaries that agree in them: never changed)."""

    activity_id: int
    start: int | None
    fingerprint: str
    recording: str
    _known: dict[str, Any]
    _page: ListPage

    def full(self) -> dict[str, Any]:
        """The whole summary, as parsed from its page (a KeyError if the page no longer holds it: pages
        are written once, so only a change from outside does that)."""
        return self._page.items()[self.activity_id]

    def get(self, key: str, default: Any = None) -> Any:
        if key in KNOWN_FIELDS:
            return self._known.get(key, default)
        return self.full().get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self._known[key] if key in KNOWN_FIELDS else self.full()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._known if key in KNOWN_FIELDS else key in self.full()

    def __iter__(self) -> Iterator[str]:
        return iter(self.full())

    def __len__(self) -> int:
        return len(self.full())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ListedSummary):
            if self is other:
                return True
            if (self.fingerprint, self.recording, self._known) != (other.fingerprint, other.recording, other._known):
                return False  # told apart without parsing either page
            return self.full() == other.full()
        return self.full() == other

    __hash__ = None  # type: ignore[assignment]  # a mapping, like a dict

    def __repr__(self) -> str:
        return f"ListedSummary({self.activity_id})"


def full_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    """A summary as a plain dict (what orjson serialises): a ListedSummary's page's parsed one."""
    if isinstance(summary, ListedSummary):
        return summary.full()
    return summary if isinstance(summary, dict) else dict(summary)


def fingerprint(activity: Mapping[str, Any], fields: Sequence[str] = CHANGE_FIELDS) -> str:
    """A short digest of `fields` (by default CHANGE_FIELDS); absent and null are the same."""
    if fields is CHANGE_FIELDS and type(activity) is ListedSummary:
        return activity.fingerprint  # taken when its page was parsed
    values = [activity.get(name) for name in fields]
    return hashlib.blake2b(orjson.dumps(values), digest_size=8).hexdigest()


def recording_fingerprint(activity: Mapping[str, Any]) -> str:
    if type(activity) is ListedSummary:
        return activity.recording
    return fingerprint(activity, RECORDING_FIELDS)


def start_epoch(activity: Mapping[str, Any]) -> int | None:
    """`start_date` (UTC, e.g. '2025-10-18T12:49:52Z') in epoch seconds, or None if absent/garbled."""
    if type(activity) is ListedSummary:
        return activity.start
    value = activity.get("start_date")
    return _epoch(value) if isinstance(value, str) else None


# A fetch reads every listed start several times (its plan's and its own choice of listing, the plan's
# page count, settling the listing): remembered by text, parsing is a fifth of what it was. Bounded, so
# that a long-lived process keeps at most this many (a few MB).
START_CACHE_SIZE = 1 << 17


@functools.lru_cache(maxsize=START_CACHE_SIZE)
def _epoch(start_date: str) -> int | None:
    try:
        return int(datetime.fromisoformat(start_date.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None
