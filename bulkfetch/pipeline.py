"""One athlete's fetch pipeline: list the history with a keyset cursor, then fetch details concurrently.

    lister --(catalog)--> pending_details (pure) --> bounded queue --> N detail workers (TaskGroup)

(`bulkfetch.run` runs it for every athlete of a data_dir at once, under one quota.)

Every response is checkpointed as raw JSON before it counts as done, so a killed run resumes where it
stopped, and a rerun fetches only new and changed activities. A routine run lists only the newest
activities; the whole history is listed again when `[fetch] full_relist_days` have passed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bulkfetch.auth import scope_lacks_read_all
from bulkfetch.client import ApiResponse, RequestDone, RequestFailed, StravaClient
from bulkfetch.config import STREAM_TYPES, Config, environment
from bulkfetch.errors import (
    BulkfetchError,
    CredentialError,
    Interrupted,
    QuotaStop,
)
from bulkfetch.export_view import ExportView
from bulkfetch.ids import is_strava_id
from bulkfetch.ledger_file import App, state_folder
from bulkfetch.listed_summary import CHANGE_FIELDS
from bulkfetch.paging import DAY_S, Boundary, Paging, full_relist_due, list_pages_needed, recent_boundary
from bulkfetch.plan import (
    Filters,
    ListingPlan,
    RequestPlan,
    StreamRecord,
    details_read,
    filters_to_json,
    fingerprint,
    is_manual,
    legacy_stream_types,
    pending_details,
    pending_streams,
    private_hidden,
    recording_fingerprint,
    request_plan,
    start_epoch,
    stream_keys,
    unlisted,
)
from bulkfetch.quota import QuotaLedger
from bulkfetch.roster import OK, AthleteDir
from bulkfetch.scheduler import QuotaScheduler, WaitInfo, WaitPolicy
from bulkfetch.shared_ledger import SharedLedger, read_ledger
from bulkfetch.store import (
    FULL_LISTING,
    NOT_FOUND,
    UNLISTED,
    Listing,
    RawStore,
    file_identity,
    page_items,
    read_json,
)

INDEX_SAVE_EVERY = 50  # completions between saves of the fetched and streams indexes
# State files (under data_dir/state/) this module keeps.
FETCHED = "fetched"
STREAM_RECORDS = "streams"
FAILED = "failed"
STREAMS_SPARED = "streams_spared"  # the activities whose streams the account export gave (see _SparedStreams)
# A full listing that lost most of the history at once: kept as an overlay of what it did list, never the
# base of the catalog (which would drop every activity it missed) until a full listing looks whole again.
SUSPECT_LISTING = {"kind": "suspect"}
MAX_LOOKUP_PAGES = 20  # list pages one look-up of a moved activity may take (ties in one start second)
# An import may run beside a fetch: the fetch reads the export's index again this often (see _ImportWatch).
EXPORT_REREAD_S = 1.0
LEGACY_QUOTA_STATE = "quota"  # state/quota.json: the data_dir's own quota snapshot, before ledgers were per app


class FetchEvents(Protocol):
    """What the pipeline tells the user; `bulkfetch.progress` renders it (rich on a TTY, lines otherwise)."""

    def info(self, message: str) -> None: ...
    def plan(self, plan: RequestPlan, scheduler: QuotaScheduler) -> None: ...
    def warn(self, message: str) -> None: ...
    def list_page(self, page: int, new_items: int, total: int) -> None: ...
    # `who`: the athlete they are about, when a run serves several (else empty)
    def details_planned(self, total: int, new: int, changed: int, *, who: str = "") -> None: ...
    def streams_planned(self, total: int, *, from_export: int = 0, who: str = "") -> None: ...
    def detail_done(self, activity_id: int, outcome: str) -> None: ...
    def stream_done(self, activity_id: int, outcome: str) -> None: ...
    def request(self, done: RequestDone) -> None: ...
    def waiting(self, info: WaitInfo | None) -> None: ...
    def quota(self, scheduler: QuotaScheduler) -> None: ...


@dataclass(frozen=True)
class FetchOptions:
    filters: Filters = Filters()
    policy: WaitPolicy = WaitPolicy()
    list_only: bool = False  # `bulkfetch plan`: refresh the list (never a due full re-list), fetch nothing else
    full_relist: bool = False  # `fetch --full-relist`: list the whole history whether or not it is due
    ledger_dir: Path | None = None  # the app's quota ledger; None: the per-user state folder
    athletes: frozenset[int] | None = None  # `--athlete`: only these; None: every connected athlete
    compact_in_waits: bool = False  # compact into [storage] parquet_dir during long quota waits
    follow: bool = False  # `fetch --follow`: after the backlog, keep checking the list heads until stopped
    streams_from_api: bool = False  # `--streams-from api`: request streams the account export covers too


@dataclass
class FetchSummary:
    listed: int = 0
    new: int = 0
    changed: int = 0
    fetched: int = 0
    not_found: int = 0
    streams: int = 0  # stream sets stored
    no_streams: int = 0  # stream requests answered "no streams": a request, but no set
    manual: int = 0  # manual activities recorded as without streams, without a request (see plan.is_manual)
    # The activities whose stream sets the account export gives instead of a request (all of them, a
    # state, not only those this run decided so): a set, as the run's checks of the list head decide the
    # streams again and would count an activity once a check.
    exported: set[int] = field(default_factory=set)
    streams_asked: bool = False  # the run fetched streams (--streams): its summary line says how they went
    unlisted: int = 0
    requests: int = 0
    failed: dict[int, str] = field(default_factory=dict)  # details that failed, with why
    failed_streams: dict[int, str] = field(default_factory=dict)
    list_failure: str | None = None
    athletes: list[AthleteResult] = field(default_factory=list)  # a run's total: each athlete's part

    @property
    def streams_from_export(self) -> int:
        return len(self.exported)

    @classmethod
    def total(cls, results: list[AthleteResult]) -> FetchSummary:
        parts = [result.summary for result in results]
        total = cls(athletes=results)
        for name in ("listed", "new", "changed", "fetched", "not_found", "streams", "no_streams", "manual",
                     "unlisted", "requests"):
            setattr(total, name, sum(getattr(part, name) for part in parts))
        for part in parts:
            total.exported |= part.exported
            total.failed.update(part.failed)
            total.failed_streams.update(part.failed_streams)
        total.list_failure = next((part.list_failure for part in parts if part.list_failure), None)
        total.streams_asked = any(part.streams_asked for part in parts)
        return total


@dataclass
class AthleteResult:
    """One athlete's part of a run, and the state it left the athlete in (see `bulkfetch.roster`)."""

    athlete: AthleteDir
    summary: FetchSummary = field(default_factory=FetchSummary)
    state: str = OK
    why: str | None = None
    stop: QuotaStop | None = None


async def fetch_athlete(client: StravaClient, store: RawStore, config: Config, options: FetchOptions,
                         summary: FetchSummary, events: FetchEvents, *, list_first: bool = True,
                         listed: Callable[[], Awaitable[None]] | None = None,
                         planned: PlannedDetails | None = None) -> None:
    """One athlete: its list check (unless this run listed it already), then `listed` (what needs the
    athlete's list: an account export imported before the athlete was known is adopted there, before
    the streams are chosen), then its details (new ones first, then backfill newest first; `planned`: what
    the run's plan decided for them), then its streams."""
    if scope_lacks_read_all(client.tokens.tokens):
        events.warn("the token lacks activity:read_all: private ('Only You') activities will be missing;"
                    " run 'bulkfetch auth' to grant it")
    if not options.list_only:
        # what `status` counts as pending
        store.write_state("filters", filters_to_json(options.filters, config.fetch.streams,
                                                     streams_from_api=options.streams_from_api))
    if list_first:
        choice = choose_listing(store, store.catalog_view(), config, time.time(), forced=options.full_relist,
                                routine_only=options.list_only)
        if options.list_only and choice.full and choice.unfinished is not None:
            events.info(f"the full listing {choice.unfinished.listing_id} is unfinished: the next fetch"
                        " continues it (plan lists no more than a routine run)")
            return
        await list_activities(client, store, config, choice, summary, events)
    if listed is not None:
        await listed()
    if options.list_only:
        return
    view = ExportView(store.data_dir)  # the details' and the streams' (the index read once while unchanged)
    await _fetch_details(client, store, config, options.filters, summary, events, planned, view)
    if config.fetch.streams:
        await fetch_streams(client, store, config, options.filters, summary, events,
                            from_export=not options.streams_from_api, view=view)


def current_plan(store: RawStore, config: Config, filters: Filters, *, full_relist: bool = False,
                 now: float | None = None, from_export: bool = True) -> RequestPlan:
    """The requests a fetch with `filters` needs, from what is on disk (the cached list); `from_export`:
    the streams the athlete's account export covers are not requested (see bulkfetch.export_view: from
    its index alone, so this reads no device file). Sends nothing."""
    return plan_fetch(store, config, filters, full_relist=full_relist, now=now, from_export=from_export)[0]


@dataclass(frozen=True)
class DetailsInputs:
    """What `pending_details` decides from. A fetch decides twice, for its plan and after its listing,
    which mostly finds nothing new: inputs that decide alike give the same answer without a fingerprint
    per listed activity (see `decides_as`)."""

    catalog: Mapping[int, Mapping[str, Any]]
    fetched: Mapping[int, str]
    filters: Filters
    not_found: Mapping[int, str | None]
    stale_files: Collection[int]

    def decides_as(self, other: DetailsInputs) -> bool:
        """Whether `pending_details` answers both alike: equal but for the summaries, which need only be equal
        in what it reads of them (`details_read`). Not whole: a summary of the plan's catalog may be of a
        routine listing the listing pruned since, whose page is gone (the catalog keeps its summaries'
        objects, so most compare by identity)."""
        if (self.fetched, self.filters, self.not_found, self.stale_files) != \
                (other.fetched, other.filters, other.not_found, other.stale_files):
            return False
        theirs = other.catalog
        return self.catalog.keys() == theirs.keys() and all(
            summary is theirs[i] or details_read(summary) == details_read(theirs[i])
            for i, summary in self.catalog.items())


@dataclass(frozen=True)
class PendingDetails:
    """`pending_details`' answer for `inputs`."""

    inputs: DetailsInputs
    ids: list[int]
    new: int
    changed: int


def decide_details(inputs: DetailsInputs, earlier: PendingDetails | None = None) -> PendingDetails:
    """`pending_details` for `inputs`, or `earlier` when it was decided from equal ones."""
    if earlier is not None and earlier.inputs.decides_as(inputs):
        return earlier
    ids, new, changed = pending_details(inputs.catalog, inputs.fetched, inputs.filters, inputs.not_found,
                                        inputs.stale_files)
    return PendingDetails(inputs, ids, new, changed)


@dataclass(frozen=True)
class PlannedDetails:
    """What a fetch's plan read and decided about details, for its details stage to reuse what is still
    current (see read_fetched_index, decide_details)."""

    fetched: FetchedIndex
    pending: PendingDetails


def plan_fetch(store: RawStore, config: Config, filters: Filters, *, full_relist: bool = False,
               now: float | None = None, from_export: bool = True) -> tuple[RequestPlan, PlannedDetails]:
    """`current_plan`, and what it decided about details on the way."""
    catalog = store.catalog_view()
    listing = next_listing(store, catalog, config, time.time() if now is None else now, forced=full_relist)
    covered, stale_files = ExportView(store.data_dir).judged_files(catalog)
    fetched = read_fetched_index(store)
    details = decide_details(DetailsInputs(catalog, fetched.index, filters, not_found_until(store, listing),
                                           stale_files))
    plan = request_plan(catalog, fetched.index, load_stream_records(store), filters, listing=listing,
                        not_found=details.inputs.not_found, streams=frozenset(config.fetch.streams),
                        from_export=covered if from_export and config.fetch.streams else set(),
                        stale_files=stale_files, details=details.ids)
    return plan, PlannedDetails(fetched, details)


def app_of(config: Config) -> App:
    return App(config.strava.api_url, config.strava.client_id)


@contextmanager
def app_ledger(config: Config, stores: list[RawStore], folder: Path | None,
               warn: Callable[[str], None]) -> Iterator[SharedLedger]:
    """The quota ledger of `config`'s app, shared with its other data_dirs and processes. The snapshot
    an athlete's store kept before ledgers were per app is merged into it once (then removed): a restart never
    sends into a window a killed run of an older version filled, and spends nothing to learn it."""
    with SharedLedger(folder or state_folder(environment()), app_of(config), config.limits, warn=warn) as ledger:
        for store in stores:
            legacy = store.read_state(LEGACY_QUOTA_STATE)
            if legacy is not None:
                ledger.absorb_snapshot(legacy, time.time() + ledger.clock_offset_s)
                store.state_path(LEGACY_QUOTA_STATE).unlink(missing_ok=True)
        yield ledger


def not_found_until(store: RawStore, listing: ListingPlan) -> dict[int, str | None]:
    """The 404'd details the next fetch leaves alone: none when it lists the whole history (a full re-list
    asks every one of them again), so that plans count those requests."""
    return {} if listing.full else store.not_found()


def restore_ledger(stores: list[RawStore], config: Config, now: float) -> QuotaLedger:
    """The app's ledger as its processes left it (plus this data_dir's snapshot of an older version, not
    merged yet), for `status` and `plan`: reads only, sends and writes nothing."""
    ledger = read_ledger(state_folder(environment()), app_of(config), config.limits, now)
    for store in stores:
        legacy = store.read_state(LEGACY_QUOTA_STATE)
        if legacy is not None:
            ledger.absorb_snapshot(legacy, now)
    return ledger


# -- listing --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ListingChoice:
    """The listing a run makes: a killed one continued (`unfinished`), or a new full or routine one."""

    full: bool
    boundary: Boundary | None  # where a routine listing may stop
    unfinished: Listing | None = None


def choose_listing(store: RawStore, catalog: Mapping[int, Mapping[str, Any]], config: Config, now: float, *,
                   forced: bool = False, routine_only: bool = False) -> ListingChoice:
    """Full when there is no full listing yet, when forced, or when one is due (unless `routine_only`:
    `plan` spends at most a routine listing). A killed listing is continued, unless it is a routine one
    and a full one is wanted."""
    base = store.latest_full_listing()
    full = base is None or forced or (
        not routine_only and full_relist_due(base.finished_at, now, config.fetch.full_relist_days))
    unfinished = store.unfinished_listing()
    if unfinished is not None and unfinished.page_paths() and (unfinished.is_full or not full):
        boundary = None if unfinished.is_full else Boundary.from_json(unfinished.meta.get("boundary"))
        return ListingChoice(unfinished.is_full, boundary, unfinished)
    boundary = None if full else recent_boundary(catalog)
    return ListingChoice(boundary is None, boundary)


def next_listing(store: RawStore, catalog: Mapping[int, Mapping[str, Any]], config: Config, now: float, *,
                 forced: bool = False) -> ListingPlan:
    """What the next fetch's listing costs: `Paging` replayed against the history as it is known."""
    choice = choose_listing(store, catalog, config, now, forced=forced)
    history = ((i, start_epoch(s)) for i, s in catalog.items())  # each pair freed as it is read: see list_pages_needed
    listed = _listed_starts(choice.unfinished) if choice.unfinished else None
    pages = list_pages_needed(history, config.fetch.per_page, boundary=choice.boundary, listed=listed)
    return ListingPlan(pages=pages, full=choice.full, full_due_at=_full_relist_due_at(store, config))


def _full_relist_due_at(store: RawStore, config: Config) -> float | None:
    base = store.latest_full_listing()
    last_full = base.finished_at if base else None
    return None if last_full is None else last_full + config.fetch.full_relist_days * DAY_S


async def list_activities(client: StravaClient, store: RawStore, config: Config, choice: ListingChoice,
                summary: FetchSummary, events: FetchEvents) -> None:
    listing = choice.unfinished or store.new_listing(time.time(), _listing_meta(choice))
    paging = Paging(config.fetch.per_page, choice.boundary, _listed_starts(listing))
    resumed = bool(paging.seen)
    if resumed:
        events.info(f"resuming the listing {listing.listing_id} after {len(paging.seen):,} activities")
        paging.resume()
    try:
        with client.one_at_a_time():
            await _page_through(client, store, listing, paging, events)
            if resumed:
                paging.top_up()
                await _page_through(client, store, listing, paging, events)
    except RequestFailed as error:
        summary.list_failure = str(error)
        events.warn(f"listing stopped: {error}; a rerun continues it")
        return
    finally:
        summary.listed = len(paging.seen)
    await _settle_listing(client, store, listing, choice, paging, summary, events)
    events.info(_listing_note(store, config, choice.full, summary.listed))


def _listing_meta(choice: ListingChoice) -> dict[str, Any]:
    if choice.boundary is None:
        return dict(FULL_LISTING)
    return {"kind": "routine", "boundary": choice.boundary.to_json()}


def _listed_starts(listing: Listing) -> dict[int, int | None]:
    return {i: start_epoch(s) for page in listing.pages() for i, s in page_items(page).items()}


async def _page_through(client: StravaClient, store: RawStore, listing: Listing, paging: Paging,
                        events: FetchEvents) -> None:
    """One pass of keyset paging (see `Paging`), each page checkpointed before it counts."""
    per_page = paging.per_page
    while paging.cursor is not None:
        response = await client.get("/athlete/activities", paging.cursor.params(per_page))
        if not isinstance(response.data, list):
            raise RequestFailed("GET /athlete/activities did not return a list")
        items = page_items(response.data)
        if len(items) != len(response.data):
            events.warn(f"skipped {len(response.data) - len(items)} list item(s) without a valid activity id")
        _check_athlete(store, client, items.values())
        page_number = len(listing.page_paths()) + 1
        listing.write_page(page_number, response.body)
        fresh = paging.take({i: start_epoch(s) for i, s in items.items()}, short=len(response.data) < per_page)
        events.list_page(page_number, fresh, len(paging.seen))


async def _settle_listing(client: StravaClient, store: RawStore, listing: Listing, choice: ListingChoice,
                          paging: Paging, summary: FetchSummary, events: FetchEvents) -> None:
    """A listing got as far as it had to: what left the range it covered is deleted, what came back is
    alive, and the listing becomes part of the catalog."""
    listed = set(paging.seen)
    catalog = store.catalog_view()  # the known activities, this listing included
    covered = choice.boundary
    previous = {i for i, s in catalog.items() if covered is None or covered.holds(i, start_epoch(s))}
    gone, safe = unlisted(previous, listed)
    hidden = private_hidden(catalog, previous, listed)
    # What a listing without private activities lacks is no sign of a deletion (export_view.ExportView.gone).
    lists_private = not scope_lacks_read_all(client.tokens.tokens) and not hidden & gone
    if hidden & gone:
        events.warn(f"{len(hidden & gone):,} private activities are missing from the list, and it holds no private"
                    " one: the token seems to have lost activity:read_all; they are kept, not marked deleted"
                    " (run 'bulkfetch auth' and tick the private-activities box)")
        gone -= hidden
    if gone and safe:
        if covered is not None:  # a routine listing: what left its range may only have moved back in time
            gone = await _look_up_vanished(client, store, listing, gone, paging.per_page, events)
        store.add_tombstones(gone, UNLISTED, time.time())
        summary.unlisted = len(gone)
    elif gone:
        events.warn(f"{len(gone):,} of {len(previous):,} activities left the list at once;"
                    " not marking them deleted (lost scope or another account's token?)")
        if choice.full:  # not a whole history: the previous full listing stays the catalog's base
            listing.write_meta(SUSPECT_LISTING)
    # Listed again after "unlisted": made visible again. A full re-list also asks 404'd details again
    # (a 404 that was transient, or made visible again); a routine one only when their summary changed.
    store.lift_tombstones(listed, (UNLISTED, NOT_FOUND) if choice.full else (UNLISTED,))
    listing.mark_complete(len(listed), lists_private=lists_private)
    store.prune_listings()


async def _look_up_vanished(client: StravaClient, store: RawStore, listing: Listing, gone: set[int],
                            per_page: int, events: FetchEvents) -> set[int]:
    """Which of the activities that left a routine listing's range are deleted.

    An activity whose start time was corrected to an older one (a wrong device clock) leaves the range
    too, without being deleted: its detail tells (404: deleted) and where it went, and the list page
    holding it there records its new summary in this listing, so it keeps its rows until a full
    re-list. The detail is kept: it is the activity's current one. One that cannot be looked up now
    stays as it is and is looked up again by the next run.
    """
    deleted: set[int] = set()
    moved: dict[int, str] = {}  # id -> fingerprint of the summary listed at its new place
    for activity_id in sorted(gone):
        try:
            detail = await client.get(f"/activities/{activity_id}")
            if detail.not_found:
                deleted.add(activity_id)
                continue
            start = start_epoch(detail.data) if isinstance(detail.data, dict) else None
            if start is None or detail.data.get("id") != activity_id:
                continue
            page = await _page_holding(client, activity_id, start, per_page)
        except RequestFailed as error:
            events.warn(f"activity {activity_id} left the newest activities; looking it up failed ({error})")
            continue
        if page is None:
            events.warn(f"activity {activity_id} left the newest activities but is not listed at its new start"
                        " time; the next full re-list looks again")
            continue
        listing.write_lookup(len(listing.lookups()) + 1, page.body)
        await asyncio.to_thread(store.write_detail, activity_id, detail.body)
        moved[activity_id] = fingerprint(page_items(page.data)[activity_id])
        events.info(f"activity {activity_id} moved to {detail.data.get('start_date')}: listed at its new place")
    if moved:  # their details are current: indexed once for all (a kill before costs one request each)
        store.write_state(FETCHED, _fetched_to_json({**load_fetched_index(store), **moved}))
    return deleted


async def _page_holding(client: StravaClient, activity_id: int, start: int, per_page: int) -> ApiResponse | None:
    """The list page that holds the activity starting at `start`: the newest before `start + 1`, and, when
    more than a page's worth share that second, the next pages by number (bounded: MAX_LOOKUP_PAGES)."""
    for number in range(1, MAX_LOOKUP_PAGES + 1):
        params = {"per_page": per_page, "before": start + 1, **({"page": number} if number > 1 else {})}
        response = await client.get("/athlete/activities", params)
        items = page_items(response.data) if isinstance(response.data, list) else {}
        if activity_id in items:
            return response
        starts = [start_epoch(s) for s in items.values()]
        if len(items) < per_page or any(s is None or s < start for s in starts):
            return None  # past its second: it is not listed there
    return None


def _listing_note(store: RawStore, config: Config, full: bool, listed: int) -> str:
    """What the listing was, and when the whole history is listed again (the rule, for the log)."""
    due_at = _full_relist_due_at(store, config)
    due = "" if due_at is None else time.strftime(" from %Y-%m-%d %H:%M UTC", time.gmtime(due_at))
    which = "full listing: the whole history" if full else "routine listing: the newest activities"
    return (f"{which} ({listed:,} listed); the whole history is listed again{due} ([fetch] full_relist_days"
            f" = {config.fetch.full_relist_days}) or with 'fetch --full-relist'")


def _check_athlete(store: RawStore, client: StravaClient, items: Any) -> None:
    """A data_dir belongs to one athlete: refuse a token for another one before writing anything."""
    ids = {item["athlete"]["id"] for item in items
           if isinstance(item.get("athlete"), dict) and is_strava_id(item["athlete"].get("id"))}
    if not ids:
        return
    athlete_id = min(ids)
    recorded = (store.read_state("athlete") or {}).get("athlete_id")
    if recorded is None:
        store.write_state("athlete", {"athlete_id": athlete_id})
        client.tokens.record_athlete(athlete_id)
    elif recorded != athlete_id or len(ids) > 1:
        raise CredentialError(
            f"{store.data_dir} holds athlete {recorded}, but the token is for athlete {athlete_id}",
            hint="use another [storage] data_dir for another athlete, or run 'bulkfetch auth' for the right one",
        )


# -- details ----------------------------------------------------------------------------------------------

async def _fetch_details(client: StravaClient, store: RawStore, config: Config, filters: Filters,
                         summary: FetchSummary, events: FetchEvents, planned: PlannedDetails | None,
                         export: ExportView) -> None:
    """The details `pending_details` names, reusing what the run's plan (`planned`) read and decided when
    what it came from is unchanged; `export`: the athlete's export as this fetch reads it."""
    catalog = store.catalog_view()
    index = read_fetched_index(store, planned.fetched if planned else None)
    fetched = dict(index.index)  # updated as details come: the plan's stays what it read
    await asyncio.to_thread(export.refresh_summaries)  # they read tracks
    decided = decide_details(DetailsInputs(catalog, index.index, filters, store.not_found(),
                                           export.stale_files(catalog)), planned.pending if planned else None)
    pending, summary.new, summary.changed = decided.ids, decided.new, decided.changed
    events.details_planned(len(pending), summary.new, summary.changed)
    # Saved at the end only if it changes: 20,000 fingerprints written again for nothing were 10 ms.
    saver = _IndexSaver(store, FETCHED, lambda: _fetched_to_json(fetched), unsaved=0 if index.current else 1)

    async def fetch_one(activity_id: int) -> str:
        outcome = await fetch_detail(client, store, activity_id, catalog[activity_id], fetched, summary)
        saver.changed()
        return outcome

    with _saved_at_the_end(saver, store, "details", summary.failed):
        await _run_workers(pending, config.fetch.concurrency, fetch_one, events.detail_done)


async def fetch_streams(client: StravaClient, store: RawStore, config: Config, filters: Filters,
                         summary: FetchSummary, events: FetchEvents, *, from_export: bool = True,
                         view: ExportView | None = None) -> None:
    """After all details: one streams request per activity whose stored streams are stale (newest first),
    unless it is manual (recorded as without streams, no request) or (`from_export`) the athlete's account
    export gives them (see bulkfetch.export_view; `view`: as the details stage read it, read again if its
    index changed since). The export's file summaries that are not current are computed first, in a thread
    (they read tracks).

    A stale file is replaced by the new answer, never deleted first: see `streams_stale` for when it is.
    """
    wanted = frozenset(config.fetch.streams)
    order = (*config.fetch.streams, *(kind for kind in STREAM_TYPES if kind not in wanted))
    catalog = store.catalog_view()
    records = load_stream_records(store)
    view = ExportView(store.data_dir) if view is None else view
    if view.index_changed():
        await asyncio.to_thread(view.reread)
    await asyncio.to_thread(view.refresh_summaries)
    due = pending_streams(catalog, store.detail_ids(), records, wanted, filters, stale_files=view.stale_files(catalog))
    manual = [i for i in due if is_manual(catalog[i])]
    if manual:
        await asyncio.to_thread(_record_manual, store, manual, catalog, records)
    summary.manual += len(manual)
    stale = [i for i in due if not is_manual(catalog[i])]
    export = view if from_export else None
    covered = {i for i in stale if export.covers(i, catalog[i])} if export is not None else set()
    pending = [i for i in stale if i not in covered]
    spared = _SparedStreams(store, covered)
    events.streams_planned(len(pending), from_export=len(spared.new - summary.exported))  # what this call spares
    summary.exported |= spared.covered
    summary.streams_asked = True
    saver = _IndexSaver(store, STREAM_RECORDS, lambda: {str(k): v.to_json() for k, v in records.items()})
    imported = _ImportWatch(export)

    async def fetch_one(activity_id: int) -> str:
        if await imported.covers(activity_id, catalog[activity_id]):
            spared.add(activity_id)
            summary.exported.add(activity_id)
            return "from_export"
        asked = stream_keys(records.get(activity_id), wanted, order)
        outcome = await _fetch_stream_set(client, store, activity_id, asked, summary)
        if outcome != "failed":
            records[activity_id] = StreamRecord(frozenset(asked), recording_fingerprint(catalog[activity_id]))
            saver.changed()
        return outcome

    with _saved_at_the_end(saver, store, "streams", summary.failed_streams), spared.saved():
        await _run_workers(pending, config.fetch.concurrency, fetch_one, events.stream_done)


def _record_manual(store: RawStore, manual: list[int], catalog: Mapping[int, Mapping[str, Any]],
                   records: dict[int, StreamRecord]) -> None:
    """Remember manual activities as without streams, as a request's "no streams" answer would (every type
    asked: none is ever missing), so that later runs, `plan` and `status` count them done (saved with the
    records at the end of the phase)."""
    stored = store.stream_ids()
    for activity_id in manual:
        if activity_id not in stored:  # streams stored for an earlier recording are raw data: kept
            store.mark_no_streams(activity_id)
        records[activity_id] = StreamRecord(frozenset(STREAM_TYPES), recording_fingerprint(catalog[activity_id]))


class _SparedStreams:
    """The activities whose stream sets the account export gives, as the runs decided them: a run tells
    only those an earlier run did not decide so already (its progress line), so that a repeat run with
    nothing to do does not say it spared them again (its summary line counts them all, as a state). Kept
    in state/streams_spared.json, replaced by each run's decision (an activity the export stops covering
    and covers again is new again)."""

    def __init__(self, store: RawStore, covered: set[int]) -> None:
        self._store = store
        before = store.read_state(STREAMS_SPARED, [])
        decided = {i for i in before if is_strava_id(i)} if isinstance(before, list) else set()
        self.covered = set(covered)
        self.new = covered - decided
        self._written = decided
        self._save()  # now, not only at the end: a run killed while fetching has decided these

    def add(self, activity_id: int) -> None:
        """One an import running beside the fetch covered meanwhile (always new: it was to be requested)."""
        self.covered.add(activity_id)

    @contextmanager
    def saved(self) -> Iterator[None]:
        try:
            yield
        finally:
            self._save()

    def _save(self) -> None:
        """Write the decision if it differs from what is on disk: a run with nothing new writes nothing."""
        if self.covered != self._written:
            self._store.write_state(STREAMS_SPARED, sorted(self.covered))
            self._written = set(self.covered)


class _ImportWatch:
    """The streams an import running beside the fetch covered meanwhile: before a stream request, if
    EXPORT_REREAD_S have passed since the last look, the export's index is looked at (one stat), and read
    again in a thread if it changed (with the summaries its new entries lack: they read tracks). So every
    quota wait is followed by a fresh look, and a fast run looks at most once a second."""

    def __init__(self, export: ExportView | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._export = export
        self._clock = clock
        self._looked_at = clock()

    async def covers(self, activity_id: int, summary: Mapping[str, Any]) -> bool:
        if self._export is None:
            return False
        if self._clock() - self._looked_at >= EXPORT_REREAD_S:
            if self._export.index_changed():
                await asyncio.to_thread(self._reread, self._export)
            self._looked_at = self._clock()
        return self._export.covers(activity_id, summary)

    @staticmethod
    def _reread(export: ExportView) -> None:
        export.reread()
        export.refresh_summaries()


async def _run_workers(ids: list[int], concurrency: int, job: Callable[[int], Awaitable[str]],
                       on_done: Callable[[int, str], None]) -> None:
    """Workers take ids in order from a bounded queue; the client lets `concurrency` requests be in
    flight, and twice as many workers keep them busy while others write their checkpoints.

    When the quota stops the run (--no-wait, --max-wait), the requests already in flight finish and are
    saved before the stop is raised: Strava counts them either way. Any other error stops all at once.
    """
    if not ids:
        return
    queue: asyncio.Queue[int | None] = asyncio.Queue(maxsize=concurrency)
    workers = min(2 * concurrency, len(ids))
    stops: list[QuotaStop] = []

    async def produce() -> None:
        for activity_id in ids:
            if stops:
                break
            await queue.put(activity_id)
        for _ in range(workers):
            await queue.put(None)

    async def work() -> None:
        while (activity_id := await queue.get()) is not None:
            if stops:
                continue  # drain, so that the producer never waits on a full queue
            try:
                outcome = await job(activity_id)
            except QuotaStop as stop:
                stops.append(stop)
                continue
            on_done(activity_id, outcome)

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(produce())
            for _ in range(workers):
                group.create_task(work())
    except BaseExceptionGroup as group_error:
        raise first_error(group_error) from None
    if stops:
        raise stops[0]


async def fetch_detail(client: StravaClient, store: RawStore, activity_id: int, activity: Mapping[str, Any],
                        fetched: dict[int, str], summary: FetchSummary) -> str:
    try:
        response = await client.get(f"/activities/{activity_id}")
    except RequestFailed as error:
        summary.failed[activity_id] = str(error)
        return "failed"
    if response.not_found:
        store.add_tombstones([activity_id], NOT_FOUND, time.time(), fingerprint(activity))
        summary.not_found += 1
        return "not_found"
    data = response.data
    if not isinstance(data, dict) or data.get("id") != activity_id:
        summary.failed[activity_id] = f"GET /activities/{activity_id} returned something else than that activity"
        return "failed"
    # The durable write (fsync) runs off the event loop; a cancelled await still lets it finish.
    await asyncio.to_thread(store.write_detail, activity_id, response.body)
    fetched[activity_id] = fingerprint(activity)
    summary.fetched += 1
    summary.failed.pop(activity_id, None)
    return "fetched"


async def _fetch_stream_set(client: StravaClient, store: RawStore, activity_id: int, keys: list[str],
                            summary: FetchSummary) -> str:
    """Streams always with explicit keys (without them Strava returns only distance)."""
    try:
        response = await client.get(f"/activities/{activity_id}/streams",
                                    {"keys": ",".join(keys), "key_by_type": "true"})
    except RequestFailed as error:
        summary.failed_streams[activity_id] = str(error)
        return "failed"
    if response.not_found or response.data == {} or response.data == []:
        # Manual activities and the like. Streams stored for an earlier recording are raw data: kept.
        if activity_id not in store.stream_ids():
            store.mark_no_streams(activity_id)
        summary.no_streams += 1
        summary.failed_streams.pop(activity_id, None)
        return "no_streams"
    if not isinstance(response.data, dict):
        summary.failed_streams[activity_id] = f"GET /activities/{activity_id}/streams did not return a stream set"
        return "failed"
    await asyncio.to_thread(store.write_streams, activity_id, response.body)
    summary.streams += 1
    summary.failed_streams.pop(activity_id, None)
    return "streams"


class _IndexSaver:
    """Saves an index (a state file) every few completions, and once more at the end."""

    def __init__(self, store: RawStore, name: str, to_json: Callable[[], Any], *, unsaved: int = 1) -> None:
        """`unsaved`: 0 when the saved index is what `to_json` gives now (nothing to save at the end yet)."""
        self._store = store
        self._name = name
        self._to_json = to_json
        self._unsaved = unsaved

    def changed(self) -> None:
        self._unsaved += 1
        if self._unsaved >= INDEX_SAVE_EVERY:
            self.save()

    def save(self) -> None:
        self._store.write_state(self._name, self._to_json())
        self._unsaved = 0

    def save_if_changed(self) -> None:
        if self._unsaved:
            self.save()


@contextmanager
def _saved_at_the_end(saver: _IndexSaver, store: RawStore, kind: str, failures: Mapping[int, str]) -> Iterator[None]:
    """Whatever stops a phase (done, quota, Ctrl-C), its index and its failures are saved.

    state/failed.json is {"details": {id: why}, "streams": {id: why}}; each part is the last run's of that phase.
    """
    try:
        yield
    finally:
        saver.save_if_changed()
        saved = load_failures(store)
        saved[kind] = dict(failures)
        store.write_state(FAILED, {part: {str(k): v for k, v in ids.items()} for part, ids in saved.items()})


def load_failures(store: RawStore) -> dict[str, dict[int, str]]:
    """The failures the last runs recorded, by kind ("details", "streams")."""
    raw = store.read_state(FAILED, {})
    if not isinstance(raw, dict):
        return {"details": {}, "streams": {}}
    if not {"details", "streams"} & raw.keys():  # before stream failures were kept: details only
        raw = {"details": raw}
    return {kind: {int(k): str(v) for k, v in part.items() if str(k).isdigit()}
            if isinstance(part := raw.get(kind), dict) else {} for kind in ("details", "streams")}


def _fetched_to_json(fetched: Mapping[int, str]) -> dict[str, Any]:
    return {"fields": list(CHANGE_FIELDS), "fingerprints": {str(k): v for k, v in fetched.items()}}


@dataclass(frozen=True)
class FetchedIndex:
    """`load_fetched_index`'s answer, with the store's state folder and the version of the saved index it
    was read from (see store.file_identity)."""

    state_dir: Path
    saved: tuple[int, int, int] | None
    index: dict[int, str]
    current: bool = False  # whether the saved index is `index` (nothing added from detail files, or dropped)


def read_fetched_index(store: RawStore, earlier: FetchedIndex | None = None) -> FetchedIndex:
    """The fetched index, or `earlier` while the saved index is the version it was read from: before its
    details stage a fetch writes a detail only for a moved activity (see _moved), and saves the index with
    it, so the details stage reuses what its plan read (20,000 ids are 0.1 s each time)."""
    saved = file_identity(store.state_path(FETCHED))
    if earlier is not None and (earlier.state_dir, earlier.saved) == (store.state_dir, saved):
        return earlier
    return FetchedIndex(store.state_dir, saved, *_load_fetched_index(store))


def load_fetched_index(store: RawStore) -> dict[int, str]:
    """id -> fingerprint of the summary each stored detail was fetched for (see `_load_fetched_index`)."""
    return _load_fetched_index(store)[0]


def _load_fetched_index(store: RawStore) -> tuple[dict[int, str], bool]:
    """id -> fingerprint of the summary each stored detail was fetched for, and whether that is the saved
    index as it is (False: it had to be completed, or something dropped from it).

    The index is a cache: details written after its last save (a killed run), and every detail when the
    index was saved for other CHANGE_FIELDS (an older version), get their fingerprint from the detail file
    itself, whose CHANGE_FIELDS match the summary's. That reads files; it never sends a request.
    """
    saved = store.read_state(FETCHED, {})
    fingerprints = saved.get("fingerprints") if isinstance(saved, dict) else None
    if not isinstance(fingerprints, dict) or saved.get("fields") != list(CHANGE_FIELDS):
        fingerprints = {}
    on_disk = store.detail_ids()
    index = {i: v for k, v in fingerprints.items() if k.isdigit() and (i := int(k)) in on_disk}  # keys: JSON's, str
    current = len(index) == len(fingerprints) == len(on_disk)
    for activity_id in on_disk - index.keys():
        try:
            index[activity_id] = fingerprint(read_json(store.detail_path(activity_id)))
        except (OSError, ValueError):
            continue  # unreadable: treated as not fetched, so it is fetched again
    return index, current


def load_stream_records(store: RawStore) -> dict[int, StreamRecord]:
    """id -> what each stored streams answer (file or "no streams" marker) was asked for.

    Answers stored without a record (before records existed, or by a killed run) get one from
    `legacy_stream_types` and the detail; a "no streams" marker without one is taken as final, as it was.
    """
    saved = store.read_state(STREAM_RECORDS, {})
    files, markers = store.stream_ids(), store.no_stream_ids()
    records = {int(k): record for k, v in (saved.items() if isinstance(saved, dict) else ())
               if str(k).isdigit() and (record := StreamRecord.from_json(v)) is not None
               and int(k) in files | markers}
    for activity_id in (files | markers) - records.keys():
        detail = _read_object(store.detail_path(activity_id))
        if detail is None:
            continue  # no detail to tell the recording: asked again once the detail is there
        present = () if activity_id not in files else (_read_object(store.stream_path(activity_id)) or {})
        types = frozenset(STREAM_TYPES) if activity_id not in files else \
            legacy_stream_types(present, detail, STREAM_TYPES)
        records[activity_id] = StreamRecord(types, recording_fingerprint(detail))
    return records


def settle_stream_records(store: RawStore) -> None:
    """Save the records `load_stream_records` infers for answers stored without one, once (the caller
    holds the data_dir lock): later runs, `plan` and `status` then open no stream file to know them."""
    saved = store.read_state(STREAM_RECORDS, {})
    records = load_stream_records(store)
    known = {int(k) for k in saved if str(k).isdigit()} if isinstance(saved, dict) else set()
    if records.keys() - known:
        store.write_state(STREAM_RECORDS, {str(k): v.to_json() for k, v in records.items()})


def _read_object(path: Path) -> dict[str, Any] | None:
    try:
        value = read_json(path)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def first_error(group_error: BaseExceptionGroup) -> BaseException:
    """The error to report from a TaskGroup: a user-facing one if any, else the first."""
    flat: list[BaseException] = []

    def walk(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                walk(inner)
        else:
            flat.append(error)

    walk(group_error)
    for error in flat:
        if isinstance(error, BulkfetchError):
            return error
    for error in flat:
        if isinstance(error, (KeyboardInterrupt, asyncio.CancelledError)):
            return Interrupted("interrupted; everything fetched so far is saved")
    return flat[0]

