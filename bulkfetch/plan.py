"""Pure decisions of a fetch: where the list cursor goes, what changed, what to download, what is gone.

No I/O here: the pipeline feeds these functions what it read and acts on what they return.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from bulkfetch.errors import ConfigError
from bulkfetch.sports import SPORT_TYPES

# The summary fields whose change means the stored detail is stale. Kudos and comment counts change all
# the time and do not alter the activity's data, so they do not trigger a refetch.
CHANGE_FIELDS = (
    "name", "sport_type", "distance", "moving_time", "elapsed_time", "total_elevation_gain",
    "private", "gear_id", "upload_id",
)
# Tombstoning "unlisted" activities is refused when a listing lost more than this share of the history
# (and more than a handful): that is a lost scope or a wrong token, not a mass deletion.
UNLIST_GUARD_SHARE = 0.5
UNLIST_GUARD_MIN = 10


def fingerprint(activity: Mapping[str, Any]) -> str:
    """A short digest of the fields in CHANGE_FIELDS; absent and null are the same."""
    values = [activity.get(name) for name in CHANGE_FIELDS]
    return hashlib.blake2b(orjson.dumps(values), digest_size=8).hexdigest()


def start_epoch(activity: Mapping[str, Any]) -> int | None:
    """`start_date` (UTC, e.g. '2025-10-18T12:49:52Z') in epoch seconds, or None if absent/garbled."""
    value = activity.get("start_date")
    if not isinstance(value, str):
        return None
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


def next_before(page: Iterable[Mapping[str, Any]]) -> int | None:
    """The keyset cursor after a page: the oldest start second seen, plus one.

    Strava's `before` is strict and activities can share a start second, so the next page repeats the
    oldest second's activities (deduplicated by id) rather than skipping any of them.
    """
    starts = [s for s in (start_epoch(item) for item in page) if s is not None]
    return min(starts) + 1 if starts else None


@dataclass(frozen=True)
class Filters:
    """Which listed activities get detail requests. The list itself is always kept whole."""

    sports: frozenset[str] | None = None
    since: int | None = None   # epoch seconds, inclusive
    until: int | None = None   # epoch seconds, exclusive

    def accepts(self, summary: Mapping[str, Any]) -> bool:
        if self.sports is not None and summary.get("sport_type") not in self.sports:
            return False
        if self.since is None and self.until is None:
            return True
        start = start_epoch(summary)
        if start is None:
            return False
        return (self.since is None or start >= self.since) and (self.until is None or start < self.until)


def filters_to_json(filters: Filters, streams: tuple[str, ...] = ()) -> dict[str, Any]:
    """The filters and stream types of a fetch, as recorded for `status` (what it counts as pending)."""
    return {"sports": sorted(filters.sports) if filters.sports is not None else None,
            "since": filters.since, "until": filters.until, "streams": list(streams)}


def filters_from_json(value: Any) -> Filters:
    """The filters a previous fetch recorded; anything unreadable means no filters."""
    if not isinstance(value, dict):
        return Filters()
    sports = value.get("sports")
    since, until = value.get("since"), value.get("until")
    return Filters(
        sports=frozenset(str(s) for s in sports) if isinstance(sports, list) else None,
        since=since if isinstance(since, int) else None,
        until=until if isinstance(until, int) else None,
    )


def streams_from_json(value: Any) -> tuple[str, ...]:
    """The stream types a previous fetch recorded; none when it recorded none (or an older version wrote it)."""
    streams = value.get("streams") if isinstance(value, dict) else None
    return tuple(s for s in streams if isinstance(s, str)) if isinstance(streams, list) else ()


def parse_filters(sport: str | None, since: str | None, until: str | None) -> Filters:
    sports = frozenset(s.strip() for s in sport.split(",") if s.strip()) if sport else None
    for name in sorted(sports or ()):
        _check_sport(name)
    filters = Filters(sports=sports or None, since=_parse_utc("--since", since), until=_parse_utc("--until", until))
    if filters.since is not None and filters.until is not None and filters.since >= filters.until:
        # since is inclusive and until exclusive: such a range holds no activity at all
        raise ConfigError(f"--since {since} must be before --until {until}", hint="swap them or drop one")
    return filters


def _check_sport(name: str) -> None:
    """A misspelt sport would silently select nothing; Strava's values are CamelCase and case-sensitive."""
    if name in SPORT_TYPES:
        return
    same_but_case = [known for known in SPORT_TYPES if known.lower() == name.lower()]
    close = same_but_case or difflib.get_close_matches(name, SPORT_TYPES, n=1)
    suggestion = f" (did you mean {close[0]}?)" if close else ""
    raise ConfigError(f"unknown --sport value {name!r}{suggestion}; Strava's sport types: {', '.join(SPORT_TYPES)}")


def _parse_utc(flag: str, value: str | None) -> int | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{flag} {value!r} is not an ISO date or datetime",
                          hint="use e.g. 2024-01-31 or 2024-01-31T06:00 (UTC)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def pending_details(
    catalog: Mapping[int, Mapping[str, Any]],
    fetched: Mapping[int, str],
    filters: Filters,
) -> tuple[list[int], int, int]:
    """Ids that need `GET /activities/{id}`, newest first, and how many of them are new / changed.

    `fetched` maps the id of every stored detail to the fingerprint of the summary it was fetched for.
    """
    new, changed = [], []
    for activity_id, summary in catalog.items():
        if not filters.accepts(summary):
            continue
        stored = fetched.get(activity_id)
        if stored is None:
            new.append(activity_id)
        elif stored != fingerprint(summary):
            changed.append(activity_id)
    ids = sorted(new + changed, key=lambda i: (start_epoch(catalog[i]) or 0, i), reverse=True)
    return ids, len(new), len(changed)


def pending_streams(
    catalog: Mapping[int, Mapping[str, Any]],
    detailed: set[int],
    streamed: set[int],
    filters: Filters,
) -> list[int]:
    """Ids that need `GET /activities/{id}/streams`, newest first: detailed, accepted, not yet answered.

    `streamed` holds activities with stored streams and those that answered "no streams".
    """
    ids = [i for i, s in catalog.items() if i in detailed and i not in streamed and filters.accepts(s)]
    return sorted(ids, key=lambda i: (start_epoch(catalog[i]) or 0, i), reverse=True)


@dataclass(frozen=True)
class RequestPlan:
    """What a fetch will spend: list pages, detail and stream requests still to do, and what is done."""

    listed: int  # activities in the cached list (0 before the first listing)
    list_pages: int
    details: int
    streams: int
    details_done: int
    streams_done: int

    @property
    def total(self) -> int:
        return self.list_pages + self.details + self.streams


def list_pages_needed(starts: Iterable[int | None], per_page: int) -> int:
    """The list requests a fresh listing of activities starting at `starts` (epoch s) takes.

    It replays the pipeline's keyset paging: each page is the `per_page` newest activities starting
    before the cursor; the next cursor is the page's oldest start + 1 (so every page after the first
    repeats at least one activity); paging stops at a short page or a page with nothing new. A full
    last page therefore costs one more request. Activities without a start count as the oldest.
    """
    order = sorted((-1 if s is None else s for s in starts), reverse=True)
    pages, seen = 0, 0  # seen: order[:seen] were listed (ties at a boundary come back on the next page)
    first = 0  # index of the newest activity before the cursor
    while True:
        page = order[first:first + per_page]
        pages += 1
        fresh = max(0, first + len(page) - seen)
        seen = max(seen, first + len(page))
        if not fresh or len(page) < per_page:
            return pages
        oldest = page[-1]
        first = first + len(page) - 1
        while first > 0 and order[first - 1] == oldest:
            first -= 1  # the cursor is `oldest + 1`: every activity of that second is listed again


def request_plan(
    catalog: Mapping[int, Mapping[str, Any]],
    fetched: Mapping[int, str],
    streamed: set[int],
    filters: Filters,
    *,
    per_page: int,
    streams: bool,
) -> RequestPlan:
    """The requests a fetch needs given the cached list (a fresh listing lists the same history again)."""
    details, _, _ = pending_details(catalog, fetched, filters)
    pending = set(details)
    accepted = [i for i, summary in catalog.items() if filters.accepts(summary)]
    return RequestPlan(
        listed=len(catalog),
        list_pages=list_pages_needed((start_epoch(s) for s in catalog.values()), per_page),
        details=len(details),
        streams=sum(1 for i in accepted if i not in streamed or i in pending) if streams else 0,
        details_done=sum(1 for i in accepted if i in fetched and i not in pending),
        streams_done=sum(1 for i in accepted if i in streamed and i not in pending) if streams else 0,
    )


def unlisted(previous_ids: set[int], listed_ids: set[int]) -> tuple[set[int], bool]:
    """Activities that left the list, and whether tombstoning them is safe (see UNLIST_GUARD_*)."""
    gone = previous_ids - listed_ids
    suspicious = len(gone) > UNLIST_GUARD_MIN and len(gone) > UNLIST_GUARD_SHARE * len(previous_ids)
    return gone, not suspicious
