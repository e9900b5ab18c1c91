"""Pure decisions of a fetch: what changed, what to download, what is gone (paging: `bulkfetch.paging`).

No I/O here: the pipeline feeds these functions what it read and acts on what they return.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bulkfetch.errors import ConfigError
from bulkfetch.listed_summary import fingerprint, recording_fingerprint, start_epoch
from bulkfetch.sports import SPORT_TYPES

# Tombstoning "unlisted" activities is refused when a listing lost more than this share of the history
# (and more than a handful): that is a lost scope or a wrong token, not a mass deletion.
UNLIST_GUARD_SHARE = 0.5
UNLIST_GUARD_MIN = 10


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


NO_FILTERS = Filters()  # every listed activity gets its detail (and streams)


# `--streams-from`: AUTO takes the streams the account export covers from it, API requests them all.
STREAMS_FROM_AUTO = "auto"
STREAMS_FROM_API = "api"


def filters_to_json(filters: Filters, streams: tuple[str, ...] = (), *,
                    streams_from_api: bool = False) -> dict[str, Any]:
    """The filters and stream types of a fetch, as recorded for `status` (what it counts as pending)."""
    return {"sports": sorted(filters.sports) if filters.sports is not None else None,
            "since": filters.since, "until": filters.until, "streams": list(streams),
            "streams_from": STREAMS_FROM_API if streams_from_api else STREAMS_FROM_AUTO}


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


def streams_from_api_json(value: Any) -> bool:
    """Whether a previous fetch recorded `--streams-from api` (never, for an older version's record)."""
    return isinstance(value, dict) and value.get("streams_from") == STREAMS_FROM_API


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


def selected(activity_id: int, summary: Mapping[str, Any], filters: Filters, stale_files: Collection[int]) -> bool:
    """Whether a fetch takes the activity: the filters accept it, or it is among `stale_files`, whose
    account export file is older than Strava's version (bulkfetch.export_view): its file rows are dropped,
    so whatever the filters say the API is its only source of streams, splits and laps (they are few)."""
    return activity_id in stale_files or filters.accepts(summary)


def selected_ids(catalog: Mapping[int, Mapping[str, Any]], filters: Filters, stale_files: Collection[int]) -> list[int]:
    """The ids of `catalog` that are `selected`, in its order: all of them without filters (then no call per
    activity, which a fetch that finds nothing new makes twice per listed activity)."""
    if filters == NO_FILTERS:
        return list(catalog)
    return [i for i, summary in catalog.items() if selected(i, summary, filters, stale_files)]


def pending_details(
    catalog: Mapping[int, Mapping[str, Any]],
    fetched: Mapping[int, str],
    filters: Filters,
    not_found: Mapping[int, str | None] | None = None,
    stale_files: Collection[int] = frozenset(),
) -> tuple[list[int], int, int]:
    """Ids that need `GET /activities/{id}`, newest first, and how many of them are new / changed.

    `fetched` maps the id of every stored detail to the fingerprint of the summary it was fetched for;
    `not_found` those whose detail answered 404 to the fingerprint of the summary it answered for
    (see `detail_unavailable`); `stale_files`: see `selected`.
    """
    new, changed = [], []
    not_found = not_found or {}
    everything = filters == NO_FILTERS  # every activity selected: not asked one by one
    for activity_id, summary in catalog.items():
        if not (everything or selected(activity_id, summary, filters, stale_files)) or \
                (activity_id in not_found and detail_unavailable(activity_id, summary, not_found)):
            continue
        stored = fetched.get(activity_id)
        if stored is None and activity_id not in not_found:
            new.append(activity_id)
        elif stored != fingerprint(summary):  # changed since fetched, or since its detail answered 404
            changed.append(activity_id)
    ids = sorted(new + changed, key=lambda i: (start_epoch(catalog[i]) or 0, i), reverse=True)
    return ids, len(new), len(changed)


def details_read(summary: Mapping[str, Any]) -> tuple[int | None, str, Any]:
    """What `pending_details` reads of a summary (through `selected`, `detail_unavailable` and `fingerprint`):
    summaries equal in these get the same decision."""
    return start_epoch(summary), fingerprint(summary), summary.get("sport_type")


@dataclass(frozen=True)
class StreamRecord:
    """What a stored stream answer (a StreamSet file, or "no streams") was asked for: the stream types
    requested, and the recording_fingerprint of the activity at the time."""

    types: frozenset[str]
    recording: str

    def to_json(self) -> dict[str, Any]:
        return {"types": sorted(self.types), "recording": self.recording}

    @staticmethod
    def from_json(value: Any) -> StreamRecord | None:
        if not isinstance(value, dict) or not isinstance(value.get("types"), list):
            return None
        recording = value.get("recording")
        return StreamRecord(frozenset(str(t) for t in value["types"]), recording) if isinstance(recording, str) \
            else None


def is_manual(summary: Mapping[str, Any]) -> bool:
    """A manual activity (its summary says `manual: true`): nothing was recorded, so Strava has no streams
    for it, and no stream request is sent (it would be answered "no streams")."""
    return summary.get("manual") is True


def streams_stale(record: StreamRecord | None, wanted: frozenset[str], summary: Mapping[str, Any]) -> bool:
    """Whether an activity needs a streams request: nothing stored yet, a wanted type never asked for, or
    the recording changed since (see RECORDING_FIELDS)."""
    return record is None or not wanted <= record.types or record.recording != recording_fingerprint(summary)


def stream_keys(record: StreamRecord | None, wanted: frozenset[str], order: Sequence[str]) -> list[str]:
    """The types to ask for: the wanted ones plus every type the stored answer was asked for, so that the
    one answer that replaces the stored file keeps every type (in `order`, the config's type order)."""
    asked = wanted | (record.types if record else frozenset())
    return [kind for kind in order if kind in asked]


def legacy_stream_types(present: Iterable[str], detail: Mapping[str, Any], every: Sequence[str]) -> frozenset[str]:
    """The types a stream file without a record (written before records existed, or by a run killed before
    it saved them) was most likely asked for: the types it holds, plus those the detail says the activity
    cannot have (Strava leaves out types an activity lacks). A wrong guess costs one request, once."""
    if is_manual(detail):
        return frozenset(every)
    lacking = set()
    if not detail.get("start_latlng"):
        lacking.add("latlng")
    if detail.get("elev_high") is None:  # Strava gives the elevation range when there is an altitude series
        lacking.update(("altitude", "grade_smooth"))
    if detail.get("has_heartrate") is False:
        lacking.add("heartrate")
    for kind, field in (("cadence", "average_cadence"), ("watts", "average_watts"), ("temp", "average_temp")):
        if detail.get(field) is None:
            lacking.add(kind)
    if not detail.get("distance"):
        lacking.update(("distance", "velocity_smooth"))
    return frozenset(present) | (lacking & set(every))


def detail_unavailable(activity_id: int, summary: Mapping[str, Any], not_found: Mapping[int, str | None]) -> bool:
    """The detail answered 404 while the activity is listed as `summary` is: asked again only when the
    summary changes (or at a full re-list, which clears `not_found`), not at every run. A 404 recorded
    without a fingerprint (by an older bulkfetch) counts as one for the current summary."""
    return activity_id in not_found and not_found[activity_id] in (None, fingerprint(summary))


def unavailable_details(
    catalog: Mapping[int, Mapping[str, Any]],
    fetched: Mapping[int, str],
    not_found: Mapping[int, str | None],
) -> list[int]:
    """Listed activities without a current detail because it answered 404 (what `pending_details` skips)."""
    return [i for i, s in catalog.items() if fetched.get(i) != fingerprint(s) and detail_unavailable(i, s, not_found)]


def pending_streams(
    catalog: Mapping[int, Mapping[str, Any]],
    detailed: set[int],
    records: Mapping[int, StreamRecord],
    wanted: frozenset[str],
    filters: Filters,
    from_export: Collection[int] = frozenset(),
    stale_files: Collection[int] = frozenset(),
) -> list[int]:
    """Ids whose stored stream answer is due, newest first: detailed, `selected` (`stale_files`: see
    there), stale by `streams_stale` (`records` holds the stored answers, "no streams" included), and not
    among `from_export`, the activities whose streams the account export gives (see
    bulkfetch.export_view). Each needs `GET /activities/{id}/streams`, but the `is_manual` ones: their
    answer, "no streams", is known without a request."""
    ids = [i for i, s in catalog.items() if i in detailed and i not in from_export
           and selected(i, s, filters, stale_files) and streams_stale(records.get(i), wanted, s)]
    return sorted(ids, key=lambda i: (start_epoch(catalog[i]) or 0, i), reverse=True)


@dataclass(frozen=True)
class ListingPlan:
    """The list requests the next fetch makes, and whether it re-lists the whole history."""

    pages: int
    full: bool
    full_due_at: float | None  # when routine runs become a full re-list again (None: no full listing yet)

    @property
    def history_known(self) -> bool:
        """False until a full listing reached the end of the history (a first one may have been killed):
        until then every count is only what the part listed so far needs, a lower bound."""
        return self.full_due_at is not None


@dataclass(frozen=True)
class RequestPlan:
    """What a fetch will spend: list pages, detail and stream requests still to do, and what is done."""

    listed: int  # activities in the cached list (0 before the first listing)
    listing: ListingPlan
    details: int
    streams: int
    details_done: int
    streams_done: int
    streams_from_export: int = 0  # stream sets the account export gives instead of a request
    streams_for_stale_files: int = 0  # of `streams`: for activities whose export file is stale (see `selected`)

    @property
    def list_pages(self) -> int:
        return self.listing.pages

    @property
    def total(self) -> int:
        return self.list_pages + self.details + self.streams


def combined_plan(plans: list[RequestPlan]) -> RequestPlan:
    """Several athletes' plans as one: their requests add up; a full re-list is due when any is."""
    dues = [p.listing.full_due_at for p in plans]
    listing = ListingPlan(pages=sum(p.list_pages for p in plans), full=any(p.listing.full for p in plans),
                          full_due_at=None if not plans or None in dues else min(d for d in dues if d is not None))
    return RequestPlan(listed=sum(p.listed for p in plans), listing=listing, details=sum(p.details for p in plans),
                       streams=sum(p.streams for p in plans), details_done=sum(p.details_done for p in plans),
                       streams_done=sum(p.streams_done for p in plans),
                       streams_from_export=sum(p.streams_from_export for p in plans),
                       streams_for_stale_files=sum(p.streams_for_stale_files for p in plans))


def request_plan(
    catalog: Mapping[int, Mapping[str, Any]],
    fetched: Mapping[int, str],
    records: Mapping[int, StreamRecord],
    filters: Filters,
    *,
    listing: ListingPlan,
    not_found: Mapping[int, str | None],
    streams: frozenset[str],
    from_export: Collection[int] = frozenset(),
    stale_files: Collection[int] = frozenset(),
    details: Sequence[int] | None = None,
) -> RequestPlan:
    """The requests a fetch needs given the cached list (the listing finds the same history again).

    A stream request is counted for every `selected` activity (`stale_files`: see there) that has or will
    get a detail, is not manual (`is_manual`) and whose stored streams are stale (`streams_stale`), unless
    it is among `from_export` (then it counts in `streams_from_export`). `details`: `pending_details`' ids
    for these, when known.
    """
    if details is None:
        details, _, _ = pending_details(catalog, fetched, filters, not_found, stale_files)
    pending = set(details)
    accepted = selected_ids(catalog, filters, stale_files)
    # Streams are asked for activities with a detail: none for those whose detail answers 404.
    detailed = [i for i in accepted if i in fetched or i in pending]
    stale = {i for i in detailed if not is_manual(catalog[i]) and streams_stale(records.get(i), streams, catalog[i])
             } if streams else set()
    exported = {i for i in stale if i in from_export}
    return RequestPlan(
        listed=len(catalog),
        listing=listing,
        details=len(details),
        streams=len(stale) - len(exported),
        details_done=sum(1 for i in accepted if i in fetched and i not in pending),
        streams_done=sum(1 for i in accepted if i in records and i not in stale) if streams else 0,
        streams_from_export=len(exported),
        streams_for_stale_files=len((stale - exported) & set(stale_files)),
    )


def private_hidden(catalog: Mapping[int, Mapping[str, Any]], previous: set[int], listed: set[int]) -> set[int]:
    """The private activities of `previous` when the listing shows no private activity at all although it
    covered some: the token lost activity:read_all (Strava then lists and shows only the others), which
    says nothing about whether they still exist."""
    private = {i for i in previous if catalog.get(i, {}).get("private") is True}
    if not private or any(catalog.get(i, {}).get("private") is True for i in listed):
        return set()
    return private


def unlisted(previous_ids: set[int], listed_ids: set[int]) -> tuple[set[int], bool]:
    """Activities that left the list, and whether tombstoning them is safe (see UNLIST_GUARD_*)."""
    gone = previous_ids - listed_ids
    suspicious = len(gone) > UNLIST_GUARD_MIN and len(gone) > UNLIST_GUARD_SHARE * len(previous_ids)
    return gone, not suspicious
