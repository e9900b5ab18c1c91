"""The fetch pipeline: list the history with a keyset cursor, then fetch details concurrently.

    lister --(catalog)--> pending_details (pure) --> bounded queue --> N detail workers (TaskGroup)

Every response is checkpointed as raw JSON before it counts as done, so a killed run resumes where it
stopped, and a rerun fetches only new and changed activities.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bulkfetch.auth import TokenStore, scope_lacks_read_all
from bulkfetch.client import RequestFailed, StravaClient, open_session
from bulkfetch.config import Config, environment
from bulkfetch.errors import BulkfetchError, CredentialError, Interrupted, QuotaStop
from bulkfetch.ledger_file import App, state_folder
from bulkfetch.plan import (
    Filters,
    RequestPlan,
    filters_to_json,
    fingerprint,
    next_before,
    pending_details,
    pending_streams,
    request_plan,
    unlisted,
)
from bulkfetch.quota import QuotaLedger
from bulkfetch.scheduler import QuotaScheduler, WaitInfo, WaitPolicy
from bulkfetch.shared_ledger import SharedLedger, read_ledger
from bulkfetch.store import Listing, RawStore, is_activity_id, read_json

FETCHED_INDEX_SAVE_EVERY = 50
LEGACY_QUOTA_STATE = "quota"  # state/quota.json: the data_dir's own quota snapshot, before ledgers were per app


class FetchEvents(Protocol):
    """What the pipeline tells the user; `bulkfetch.progress` renders it (rich on a TTY, lines otherwise)."""

    def info(self, message: str) -> None: ...
    def plan(self, plan: RequestPlan, scheduler: QuotaScheduler) -> None: ...
    def warn(self, message: str) -> None: ...
    def list_page(self, page: int, new_items: int, total: int) -> None: ...
    def details_planned(self, total: int, new: int, changed: int) -> None: ...
    def streams_planned(self, total: int) -> None: ...
    def detail_done(self, activity_id: int, outcome: str) -> None: ...
    def waiting(self, info: WaitInfo | None) -> None: ...
    def quota(self, scheduler: QuotaScheduler) -> None: ...


@dataclass(frozen=True)
class FetchOptions:
    filters: Filters = Filters()
    policy: WaitPolicy = WaitPolicy()
    list_only: bool = False  # `bulkfetch plan`: refresh the list, fetch nothing else
    ledger_dir: Path | None = None  # the app's quota ledger; None: the per-user state folder


@dataclass
class FetchSummary:
    listed: int = 0
    new: int = 0
    changed: int = 0
    fetched: int = 0
    not_found: int = 0
    streams: int = 0
    unlisted: int = 0
    requests: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    list_failure: str | None = None


def token_store(config: Config) -> TokenStore:
    return TokenStore(RawStore(config.storage.data_dir).auth_dir / "tokens.json")


def require_token(config: Config) -> None:
    """Fail before any work when there is no refresh token anywhere."""
    if token_store(config).load() is None and not config.strava.refresh_token:
        raise CredentialError(
            "no Strava token: none stored under data_dir and no [strava] refresh_token",
            hint="run 'bulkfetch auth', or set STRAVA_REFRESH_TOKEN",
        )


async def fetch_history(config: Config, options: FetchOptions, events: FetchEvents) -> FetchSummary:
    """One fetch run against `config`'s data_dir (the caller holds the data_dir lock)."""
    store = RawStore(config.storage.data_dir)
    store.prepare()
    with app_ledger(config, store, options.ledger_dir, events.warn) as ledger:
        return await _fetch_with(ledger, store, config, options, events)


async def _fetch_with(ledger: SharedLedger, store: RawStore, config: Config, options: FetchOptions,
                      events: FetchEvents) -> FetchSummary:
    """The run itself, with the app's quota ledger open."""
    tokens = token_store(config)
    scheduler = QuotaScheduler(ledger, max_rate_per_s=config.fetch.max_rate_per_s, policy=options.policy,
                               on_wait=events.waiting)
    summary = FetchSummary()
    async with open_session(config.fetch.concurrency) as session:
        client = StravaClient(session, config.strava, config.fetch, scheduler, tokens, on_retry=events.info)
        if scope_lacks_read_all(client.tokens.tokens):
            events.warn("the token lacks activity:read_all: private ('Only You') activities will be missing;"
                        " run 'bulkfetch auth' to grant it")
        if not options.list_only:
            store.write_state("filters", filters_to_json(options.filters))  # what `status` counts as pending
            events.plan(current_plan(store, config, options.filters), scheduler)
        try:
            await _list(client, store, config, summary, events)
            if options.list_only:
                return summary
            await _fetch_details(client, store, config, options.filters, summary, events, scheduler)
            if config.fetch.streams:
                await _fetch_streams(client, store, config, options.filters, summary, events, scheduler)
        finally:
            summary.requests = client.requests_sent
            events.quota(scheduler)
    return summary


def current_plan(store: RawStore, config: Config, filters: Filters) -> RequestPlan:
    """The requests a fetch with `filters` needs, from what is on disk (the cached list)."""
    return request_plan(store.catalog(), load_fetched_index(store), store.stream_ids() | store.no_stream_ids(),
                        filters, per_page=config.fetch.per_page, streams=bool(config.fetch.streams))


def app_of(config: Config) -> App:
    return App(config.strava.api_url, config.strava.client_id)


@contextmanager
def app_ledger(config: Config, store: RawStore, folder: Path | None,
               warn: Callable[[str], None]) -> Iterator[SharedLedger]:
    """The quota ledger of `config`'s app, shared with its other data_dirs and processes. The snapshot
    this data_dir kept before ledgers were per app is merged into it once (then removed): a restart never
    sends into a window a killed run of an older version filled, and spends nothing to learn it."""
    with SharedLedger(folder or state_folder(environment()), app_of(config), config.limits, warn=warn) as ledger:
        legacy = store.read_state(LEGACY_QUOTA_STATE)
        if legacy is not None:
            ledger.absorb_snapshot(legacy, time.time() + ledger.clock_offset_s)
            store.state_path(LEGACY_QUOTA_STATE).unlink(missing_ok=True)
        yield ledger


def restore_ledger(store: RawStore, config: Config, now: float) -> QuotaLedger:
    """The app's ledger as its processes left it (plus this data_dir's snapshot of an older version, not
    merged yet), for `status` and `plan`: reads only, sends and writes nothing."""
    ledger = read_ledger(state_folder(environment()), app_of(config), config.limits, now)
    legacy = store.read_state(LEGACY_QUOTA_STATE)
    if legacy is not None:
        ledger.absorb_snapshot(legacy, now)
    return ledger


# -- listing --------------------------------------------------------------------------------------------

async def _list(client: StravaClient, store: RawStore, config: Config, summary: FetchSummary,
                events: FetchEvents) -> None:
    listing = store.unfinished_listing()
    resumed = listing is not None
    listing = listing or store.new_listing(time.time())
    previous = store.latest_complete_listing()
    seen: dict[int, dict[str, Any]] = {}
    for page in listing.pages():
        seen.update(_valid_items(page))
    page_number = len(listing.page_paths())
    if resumed:
        events.info(f"resuming the listing {listing.listing_id} after {len(seen):,} activities")
    # A resumed listing continues from its cursor to the end, then looks again at the newest activities.
    starts = [next_before(seen.values()), None] if resumed else [None]
    try:
        for before in starts:
            page_number = await _page_through(client, store, listing, before, page_number, seen, config, events)
    except RequestFailed as error:
        summary.list_failure = str(error)
        events.warn(f"listing stopped: {error}; a rerun continues it")
        summary.listed = len(seen)
        return
    summary.listed = len(seen)
    if previous is not None:
        previous_ids = {i for page in previous.pages() for i in _valid_items(page)}
        gone, safe = unlisted(previous_ids, set(seen))
        if gone and safe:
            store.add_tombstones(gone, "unlisted", time.time())
            summary.unlisted = len(gone)
        elif gone:
            events.warn(f"{len(gone):,} of {len(previous_ids):,} activities left the list at once;"
                        " not marking them deleted (lost scope or another account's token?)")
    # Listed again after its tombstone: made visible again, or its 404 was not a deletion. Its detail is
    # fetched again (a real deletion then tombstones it again, one request later).
    store.lift_tombstones(seen)
    listing.mark_complete(len(seen))
    store.prune_listings()


async def _page_through(client: StravaClient, store: RawStore, listing: Listing, before: int | None,
                        page_number: int, seen: dict[int, dict[str, Any]], config: Config,
                        events: FetchEvents) -> int:
    """Keyset paging from `before` until a short page or a page with nothing new; returns the page count."""
    per_page = config.fetch.per_page
    while True:
        params: dict[str, int] = {"per_page": per_page}
        if before is not None:
            params["before"] = before
        response = await client.get("/athlete/activities", params)
        if not isinstance(response.data, list):
            raise RequestFailed("GET /athlete/activities did not return a list")
        items = _valid_items(response.data)
        if len(items) != len(response.data):
            events.warn(f"skipped {len(response.data) - len(items)} list item(s) without a valid activity id")
        _check_athlete(store, client, items.values())
        page_number += 1
        listing.write_page(page_number, response.body)
        fresh = [i for i in items if i not in seen]
        seen.update(items)
        events.list_page(page_number, len(fresh), len(seen))
        before = next_before(items.values())
        if not fresh or len(response.data) < per_page or before is None:
            return page_number


def _valid_items(page: Any) -> dict[int, dict[str, Any]]:
    """A page's activities by id; items that are not activities with a positive integer id are dropped."""
    if not isinstance(page, list):
        return {}
    return {item["id"]: item for item in page if isinstance(item, dict) and is_activity_id(item.get("id"))}


def _check_athlete(store: RawStore, client: StravaClient, items: Any) -> None:
    """A data_dir belongs to one athlete: refuse a token for another one before writing anything."""
    ids = {item["athlete"]["id"] for item in items
           if isinstance(item.get("athlete"), dict) and isinstance(item["athlete"].get("id"), int)}
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
                         summary: FetchSummary, events: FetchEvents, scheduler: QuotaScheduler) -> None:
    catalog = store.catalog()
    fetched = load_fetched_index(store)
    pending, summary.new, summary.changed = pending_details(catalog, fetched, filters)
    events.details_planned(len(pending), summary.new, summary.changed)
    saver = _IndexSaver(store, fetched)

    async def fetch_one(activity_id: int) -> str:
        outcome = await _fetch_detail(client, store, activity_id, catalog[activity_id], fetched, summary)
        saver.changed()
        return outcome

    try:
        await _run_workers(pending, config.fetch.concurrency, fetch_one, events, scheduler)
    finally:
        saver.save()
        store.write_state("failed", {str(k): v for k, v in summary.failed.items()})


async def _fetch_streams(client: StravaClient, store: RawStore, config: Config, filters: Filters,
                         summary: FetchSummary, events: FetchEvents, scheduler: QuotaScheduler) -> None:
    """After all details: one streams request per activity that has none yet (newest first)."""
    keys = ",".join(config.fetch.streams)
    pending = pending_streams(store.catalog(), store.detail_ids(), store.stream_ids() | store.no_stream_ids(),
                              filters)
    events.streams_planned(len(pending))

    async def fetch_one(activity_id: int) -> str:
        return await _fetch_stream_set(client, store, activity_id, keys, summary)

    await _run_workers(pending, config.fetch.concurrency, fetch_one, events, scheduler)


async def _run_workers(ids: list[int], concurrency: int, job: Callable[[int], Awaitable[str]],
                       events: FetchEvents, scheduler: QuotaScheduler) -> None:
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
            events.detail_done(activity_id, outcome)
            events.quota(scheduler)

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(produce())
            for _ in range(workers):
                group.create_task(work())
    except BaseExceptionGroup as group_error:
        raise _first_error(group_error) from None
    if stops:
        raise stops[0]


async def _fetch_detail(client: StravaClient, store: RawStore, activity_id: int, activity: Mapping[str, Any],
                        fetched: dict[int, str], summary: FetchSummary) -> str:
    try:
        response = await client.get(f"/activities/{activity_id}")
    except RequestFailed as error:
        summary.failed[activity_id] = str(error)
        return "failed"
    if response.not_found:
        store.add_tombstones([activity_id], "not_found", time.time())
        summary.not_found += 1
        return "not_found"
    data = response.data
    if not isinstance(data, dict) or data.get("id") != activity_id:
        summary.failed[activity_id] = f"GET /activities/{activity_id} returned something else than that activity"
        return "failed"
    if activity_id in fetched:
        store.forget_streams(activity_id)  # the activity changed: its streams may have too
    # The durable write (fsync) runs off the event loop; a cancelled await still lets it finish.
    await asyncio.to_thread(store.write_detail, activity_id, response.body)
    fetched[activity_id] = fingerprint(activity)
    summary.fetched += 1
    summary.failed.pop(activity_id, None)
    return "fetched"


async def _fetch_stream_set(client: StravaClient, store: RawStore, activity_id: int, keys: str,
                            summary: FetchSummary) -> str:
    """Streams always with explicit keys (without them Strava returns only distance)."""
    try:
        response = await client.get(f"/activities/{activity_id}/streams", {"keys": keys, "key_by_type": "true"})
    except RequestFailed as error:
        summary.failed[activity_id] = str(error)
        return "failed"
    if response.not_found or response.data == {} or response.data == []:
        store.mark_no_streams(activity_id)  # manual activities and the like: never asked again
        return "no_streams"
    if not isinstance(response.data, dict):
        summary.failed[activity_id] = f"GET /activities/{activity_id}/streams did not return a stream set"
        return "failed"
    await asyncio.to_thread(store.write_streams, activity_id, response.body)
    summary.streams += 1
    return "streams"


class _IndexSaver:
    """Saves the fetched-details index every few completions, and once more at the end."""

    def __init__(self, store: RawStore, fetched: dict[int, str]) -> None:
        self._store = store
        self._fetched = fetched
        self._unsaved = 0

    def changed(self) -> None:
        self._unsaved += 1
        if self._unsaved >= FETCHED_INDEX_SAVE_EVERY:
            self.save()

    def save(self) -> None:
        self._store.write_state("fetched", {str(k): v for k, v in self._fetched.items()})
        self._unsaved = 0


def load_fetched_index(store: RawStore) -> dict[int, str]:
    """id -> fingerprint of the summary each stored detail was fetched for.

    The index is a cache: details written after its last save (a killed run) get their fingerprint
    from the detail file itself, whose CHANGE_FIELDS match the summary's.
    """
    saved = store.read_state("fetched", {})
    on_disk = store.detail_ids()
    index = {int(k): v for k, v in saved.items() if int(k) in on_disk} if isinstance(saved, dict) else {}
    for activity_id in on_disk - index.keys():
        try:
            index[activity_id] = fingerprint(read_json(store.detail_path(activity_id)))
        except (OSError, ValueError):
            continue  # unreadable: treated as not fetched, so it is fetched again
    return index


def _first_error(group_error: BaseExceptionGroup) -> BaseException:
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

