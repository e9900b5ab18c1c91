"""One fetch run over a data_dir's athletes: one HTTP session, one quota ledger, one lock, fair turns.

    fetch_history -> an athlete's run each (pipeline.fetch_athlete), side by side, one request at a time
                     round-robin (bulkfetch.fairness) -> every few windows, a check of each list head

An athlete whose access is revoked or lacks a permission stops alone; the others go on. During long
quota waits what was fetched is compacted by a child process (bulkfetch.idle_compaction).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import ClientSession

from bulkfetch.client import RequestFailed, StravaClient, open_session
from bulkfetch.compact import has_inputs
from bulkfetch.config import Config
from bulkfetch.errors import (
    AthleteRevoked,
    AthletesBlocked,
    ConfigError,
    CredentialError,
    QuotaStop,
    ScopeMissing,
    StorageError,
)
from bulkfetch.export_adopt import adopt_unbound, unbound_export
from bulkfetch.export_view import ExportView
from bulkfetch.fairness import FairSlots
from bulkfetch.idle_compaction import MIN_WAIT_SHARE, IdleCompactor, Target
from bulkfetch.paging import Boundary, recent_boundary
from bulkfetch.pipeline import (
    AthleteResult,
    FetchEvents,
    FetchOptions,
    FetchSummary,
    ListingChoice,
    PlannedDetails,
    app_ledger,
    choose_listing,
    current_plan,
    fetch_athlete,
    fetch_detail,
    fetch_streams,
    first_error,
    list_activities,
    plan_fetch,
    settle_stream_records,
)
from bulkfetch.plan import Filters, RequestPlan, combined_plan, start_epoch
from bulkfetch.quota import window_index
from bulkfetch.roster import OK, REVOKED, SCOPE_MISSING, AthleteDir, Roster, is_removed, record_access
from bulkfetch.scheduler import QuotaScheduler, WaitInfo
from bulkfetch.store import RawStore
from bulkfetch.token_refresh import TokenManager

# A long run lists each athlete's newest activities again this often (in short windows): an activity
# uploaded meanwhile is fetched within a window of being seen, not after days of backfill.
HEAD_CHECK_WINDOWS = 4


def require_token(config: Config) -> None:
    """Fail before any work when there is no refresh token anywhere."""
    if not config.strava.refresh_token and not any(a.tokens.load() for a in Roster(config.storage.data_dir).athletes()):
        raise CredentialError(
            "no Strava token: no athlete connected under data_dir and no [strava] refresh_token",
            hint="run 'bulkfetch auth', or set STRAVA_REFRESH_TOKEN",
        )


def chosen_athletes(roster: Roster, wanted: frozenset[int] | None, *, connected_only: bool = True) -> list[AthleteDir]:
    """The athletes a run serves: every connected one, or those `--athlete` names (each must be known)."""
    connected = [athlete for athlete in roster.athletes() if not connected_only or athlete.tokens.load() is not None]
    if wanted is None:
        return connected
    known = {athlete.athlete_id for athlete in connected}
    if unknown := sorted(wanted - known):
        listed = ", ".join(str(i) for i in sorted(i for i in known if i is not None)) or "none"
        raise ConfigError(f"--athlete {','.join(map(str, unknown))}: not connected to this data_dir "
                          f"(connected: {listed})", hint="see 'bulkfetch athletes', or connect with 'bulkfetch auth'")
    return [athlete for athlete in connected if athlete.athlete_id in wanted]


async def fetch_history(config: Config, options: FetchOptions, events: FetchEvents) -> FetchSummary:
    """One fetch run against `config`'s data_dir, every chosen athlete in turn, one request at a time
    (see `bulkfetch.fairness`), under one quota ledger (the caller holds the data_dir lock).

    An athlete whose access is revoked or lacks a scope stops alone; the others go on. The run raises
    AthletesBlocked (exit 2) for them at its end, else a QuotaStop, else returns the total.
    """
    roster = Roster(config.storage.data_dir)
    roster.migrate()
    roster.add_seed(config.strava.refresh_token)
    athletes = chosen_athletes(roster, options.athletes)
    if not athletes:  # e.g. every athlete removed, and the config's seed was one of theirs
        raise CredentialError(f"no athlete to serve: none is connected to {config.storage.data_dir}",
                              hint="connect one with 'bulkfetch auth' (see 'bulkfetch athletes')")
    results: list[AthleteResult] = []
    idle = _idle_compactor(roster, config, options, lambda: FetchSummary.total(results), events)
    with app_ledger(config, [a.store for a in athletes], options.ledger_dir, events.warn) as ledger:
        scheduler = QuotaScheduler(ledger, max_rate_per_s=config.fetch.max_rate_per_s, policy=options.policy,
                                   on_wait=lambda info: _waiting(info, events, idle, scheduler))
        async with open_session(config.fetch.concurrency) as session:
            # Fair per short window: its quota is what the athletes share (see bulkfetch.fairness).
            slots = FairSlots(config.fetch.concurrency,
                              window=lambda: window_index(scheduler.now(), config.limits.short_window_s))
            run = _Run(roster, config, options, events, scheduler, session, slots)
            run.idle = idle
            events.quota(scheduler)
            if not options.list_only:
                plans = {a.folder: plan_fetch(a.store, config, options.filters, full_relist=options.full_relist,
                                              from_export=not options.streams_from_api) for a in athletes}
                run.planned = {folder: details for folder, (_, details) in plans.items()}
                events.plan(combined_plan([plan for plan, _ in plans.values()]), scheduler)
            try:
                async with asyncio.TaskGroup() as group:
                    run.group, run.results = group, results
                    for athlete in athletes:
                        run.start(athlete)
                    if not options.list_only:
                        group.create_task(run.watch())
            except BaseExceptionGroup as group_error:
                raise first_error(group_error) from None
            finally:
                if idle is not None:
                    idle.close()  # before the run's own compaction, which would meet the child's lock
                events.quota(scheduler)
    summary = FetchSummary.total(results)
    stops = [r.stop for r in results if r.stop is not None] + ([run.stop] if run.stop else [])
    if blocked := [r for r in results if r.state != OK]:
        raise AthletesBlocked(_blocked_text(blocked, stopped=bool(stops), planning=options.list_only),
                              hint=_blocked_hint(blocked), summary=summary)
    if stops:
        raise stops[0]
    return summary


def _blocked_text(blocked: list[AthleteResult], *, stopped: bool, planning: bool) -> str:
    """The athletes that stopped the run, and what became of the others (`plan`'s run lists and fetches
    nothing, so for it the others were planned)."""
    parts = [f"{r.athlete.label} {'revoked access' if r.state == REVOKED else 'lacks a permission'} ({r.why})"
             for r in blocked]
    rest = ("the quota stopped the others' run too: rerun 'bulkfetch fetch' for the rest" if stopped
            else f"everything else was {'planned' if planning else 'fetched'}")
    return "; ".join(parts) + "; " + rest


def _blocked_hint(blocked: list[AthleteResult]) -> str:
    return ("have each of them run 'bulkfetch auth' again (ticking 'View data about your activities'),"
            " or 'bulkfetch athletes remove ID' to stop serving them")


class _Run:
    """What a run's athletes share: the roster, the HTTP session, the quota, the fair slots."""

    def __init__(self, roster: Roster, config: Config, options: FetchOptions, events: FetchEvents,
                 scheduler: QuotaScheduler, session: ClientSession, slots: FairSlots) -> None:
        self.roster = roster
        self.config = config
        self.options = options
        self.events = events
        self.scheduler = scheduler
        self.session = session
        self.slots = slots
        self.alone = len([a for a in roster.athletes() if a.tokens.load() is not None]) == 1
        self.group: asyncio.TaskGroup | None = None
        self.results: list[AthleteResult] = []
        self.serving: set[str] = set()  # athlete folders whose run is going on
        self.finished = asyncio.Event()  # set whenever no athlete's run is going on
        self.finished.set()
        self.idle: IdleCompactor | None = None
        self.token_managers: dict[Path, TokenManager] = {}
        self.stop: QuotaStop | None = None  # one the list-head checks met (the athletes' runs keep theirs)
        # What the run's plan decided about each athlete's details (by folder), for its first serve to reuse.
        self.planned: dict[Path, PlannedDetails] = {}

    def labelled(self, athlete: AthleteDir) -> FetchEvents:
        """The events, their messages naming the athlete when the data_dir serves several."""
        return self.events if self.alone else _Labelled(self.events, athlete.label)

    def start(self, athlete: AthleteDir) -> None:
        assert self.group is not None
        self.serving.add(athlete.folder.name)
        self.finished.clear()
        self.group.create_task(self.serve(athlete, self.results))

    async def watch(self) -> None:
        """Every HEAD_CHECK_WINDOWS short windows: start athletes `auth` connected meanwhile (unless the run
        is restricted to some), and check every athlete's list head, fetching what was uploaded since at
        once. Ends with the athletes' runs, or, following, never (until the run is stopped)."""
        interval = HEAD_CHECK_WINDOWS * self.config.limits.short_window_s
        while True:
            try:
                await asyncio.wait_for(self.finished.wait(), timeout=interval)
                if self._start_new_athletes():
                    continue  # connected while the others ran: served before the run ends
                if not self.options.follow:
                    return
                await self._pause(interval)  # following: the backlog is done, check again later
            except TimeoutError:
                pass
            self._start_new_athletes()
            for result in list(self.results):
                if result.state == OK and result.athlete.athlete_id is not None:
                    try:
                        await self._check_head(result)
                    except QuotaStop as stop:
                        self.stop = stop  # the athletes' own runs stop for it too
                        return

    def _start_new_athletes(self) -> bool:
        """Start the athletes `auth` connected since the run began (unless it serves only some)."""
        if self.options.athletes is not None:
            return False
        known = {r.athlete.folder.name for r in self.results} | self.serving
        new = [athlete for athlete in chosen_athletes(self.roster, None) if athlete.folder.name not in known]
        for athlete in new:
            self.events.info(f"{athlete.label} was connected: fetching it too")
            self.start(athlete)
        return bool(new)

    async def _pause(self, seconds: float) -> None:
        """Wait between the checks of a following run; what it fetched is compacted meanwhile."""
        if self.idle is not None:
            now = self.scheduler.now()
            self.idle.on_wait(WaitInfo(now + seconds, "following: the next check of new activities", "short"), now)
        try:
            await asyncio.sleep(seconds)
        finally:
            if self.idle is not None:
                self.idle.on_wait(None, self.scheduler.now())

    async def _check_head(self, result: AthleteResult) -> None:
        """List the newest activities again (1 request unless a page's worth is new) and fetch the new
        ones' details now, before the rest of the backlog; an athlete whose run ended gets their streams too.
        A check that stopped (a dropped connection) is continued by the next one."""
        athlete, summary = result.athlete, result.summary
        store = athlete.store
        unfinished = store.unfinished_listing()
        if unfinished is not None and (athlete.folder.name in self.serving or unfinished.is_full):
            return  # its own listing is going on, or a killed full one that its next run continues
        known = store.catalog_view()
        boundary = recent_boundary(known, newest=1) if unfinished is None else \
            Boundary.from_json(unfinished.meta.get("boundary"))
        if boundary is None:
            return
        events = self.labelled(athlete)
        client = self.client(athlete, events, urgent=True)
        listed = FetchSummary()
        try:
            await list_activities(client, store, self.config, ListingChoice(False, boundary, unfinished), listed,
                                  events)
            if listed.list_failure is not None:
                return  # said by the listing; the next check continues it
            catalog = store.catalog_view()
            new = sorted(catalog.keys() - known.keys(), key=lambda i: start_epoch(catalog[i]) or 0, reverse=True)
            if new:
                events.info(f"{len(new):,} new since the run began, fetched first")
                summary.new += len(new)
            for activity_id in new:
                await fetch_detail(client, store, activity_id, catalog[activity_id], {}, summary)
            if new and self.config.fetch.streams and athlete.folder.name not in self.serving:
                await fetch_streams(client, store, self.config, self.options.filters, summary, events,
                                    from_export=not self.options.streams_from_api)
        except (AthleteRevoked, ScopeMissing) as error:
            if not is_removed(athlete):  # removed meanwhile: its tokens are gone on purpose
                self._blocked(result, error)
        except RequestFailed as error:
            self.events.warn(f"{athlete.label}: checking for new activities failed ({error}); the next check"
                             " tries again")
        finally:
            summary.requests += client.requests_sent

    def _blocked(self, result: AthleteResult, error: AthleteRevoked | ScopeMissing) -> None:
        """The athlete revoked access or lacks a permission: it stops, the others go on (exit 2 at the end)."""
        result.state = REVOKED if isinstance(error, AthleteRevoked) else SCOPE_MISSING
        result.why = error.message
        self.events.warn(f"{result.athlete.label}: {error}; the other athletes go on")
        record_access(result.athlete, result.state, result.why, time.time())

    def client(self, athlete: AthleteDir, events: FetchEvents, *, urgent: bool = False) -> StravaClient:
        # The config's seed may stand in for a rejected stored token only where it can be no other athlete's.
        strava = self.config.strava if self.alone else replace(self.config.strava, refresh_token="")
        lane = self.slots.lane(athlete.folder.name, urgent=urgent)
        client = StravaClient(self.session, strava, self.config.fetch, self.scheduler, athlete.tokens,
                              on_retry=events.info, on_request=events.request, slots=lane,
                              tokens=self.token_managers.get(athlete.folder))
        # Every client of the athlete (its run, its head checks) shares one manager: one refresh chain.
        self.token_managers.setdefault(athlete.folder, client.tokens)
        return client

    async def serve(self, athlete: AthleteDir, results: list[AthleteResult]) -> None:
        """One athlete's whole run: its listing, details, streams (learning who it is first, if unknown).
        Its result joins `results` at once, so that what it fetched counts while it runs."""
        result = AthleteResult(athlete)
        results.append(result)
        events = self.labelled(athlete)
        started_as = athlete.folder.name  # `start`'s name for it, before a bind renames it
        athlete.store.prepare()
        settle_stream_records(athlete.store)
        try:
            listed = False
            if athlete.athlete_id is None:
                bound = await self._bind(athlete, result.summary)
                if bound is None:
                    return  # its listing stopped (summary.list_failure): a rerun continues it
                athlete, listed = bound
                result.athlete = athlete
                athlete.store.prepare()  # joined a folder an import made: it has no raw/ folders yet
            client = self.client(athlete, events)
            try:
                await fetch_athlete(client, athlete.store, self.config, self.options, result.summary, events,
                                     list_first=not listed, listed=partial(self._adopt_export, athlete, events),
                                     planned=self.planned.pop(athlete.folder, None))
            finally:
                result.summary.requests += client.requests_sent
        except (AthleteRevoked, ScopeMissing) as error:
            if is_removed(athlete):  # `athletes remove` ran meanwhile: the deauthorization ended its tokens
                events.info(f"{athlete.label} was removed from this data_dir: no longer served")
                return
            self._blocked(result, error)
            if athlete.athlete_id is None:  # a rejected seed is not tried again beside connected athletes
                self.roster.drop_rejected_seed(athlete)
        except (RequestFailed, StorageError) as error:  # this athlete's alone (e.g. who it is, not learned)
            result.summary.list_failure = str(error)
            events.warn(f"{error}; the other athletes go on, a rerun tries again")
        except QuotaStop as stop:
            result.stop = stop
        finally:
            self.serving.discard(started_as)
            if not self.serving:
                self.finished.set()
        if athlete.athlete_id is not None:
            record_access(athlete, result.state, result.why, time.time())

    async def _adopt_export(self, athlete: AthleteDir, events: FetchEvents) -> None:
        """The account export imported before the athlete was known (athletes/unbound/) becomes this one's
        when its activities meet the athlete's list (see bulkfetch.export_adopt); in a thread: it reads the
        export's CSVs. Said once a run: this runs once per athlete's run."""
        if unbound_export(self.roster) is None:  # the usual case: no list read for it
            return
        adoption = await asyncio.to_thread(lambda: adopt_unbound(self.roster, athlete, athlete.store.catalog().keys()))
        if adoption is not None:
            events.info(adoption.message)

    async def _bind(self, unbound: AthleteDir, summary: FetchSummary) -> tuple[AthleteDir, bool] | None:
        """Learn whose tokens an unbound folder holds and move them to that athlete's folder; True when
        the listing this needed was this run's listing of the athlete. None: the listing stopped.

        Its first list page names the athlete (no extra request); an empty history costs one `GET /athlete`.
        The listing is made before any detail is fetched, so tokens of an athlete the data_dir holds already
        join that athlete's data without fetching it again.
        """
        athlete_id = _recorded_athlete(unbound.store)
        listed = False
        if athlete_id is None:
            client = self.client(unbound, self.labelled(unbound))
            try:
                choice = choose_listing(unbound.store, unbound.store.catalog_view(), self.config, time.time(),
                                        forced=self.options.full_relist, routine_only=self.options.list_only)
                await list_activities(client, unbound.store, self.config, choice, summary, self.labelled(unbound))
                if summary.list_failure is not None:
                    return None
                listed = True
                athlete_id = _recorded_athlete(unbound.store)
                if athlete_id is None:
                    response = await client.get("/athlete")
                    athlete_id = response.data.get("id") if isinstance(response.data, dict) else None
            finally:
                summary.requests += client.requests_sent
        if not isinstance(athlete_id, int):
            raise RequestFailed(f"could not learn whose tokens {unbound.folder} holds; a rerun tries again")
        # Its listing goes with it unless the athlete has one of its own (then it joins that one's listing).
        moved = not self.roster.athlete(athlete_id).store.listings()
        bound = self.roster.bind(unbound, athlete_id)
        self.events.info(f"{unbound.folder.name} is athlete {athlete_id}: its data is in {bound.folder}")
        return bound, listed and moved


class _Labelled:
    """FetchEvents whose messages start with the athlete they are about."""

    def __init__(self, events: FetchEvents, label: str) -> None:
        self._events = events
        self._label = label

    def info(self, message: str) -> None:
        self._events.info(f"{self._label}: {message}")

    def warn(self, message: str) -> None:
        self._events.warn(f"{self._label}: {message}")

    def details_planned(self, total: int, new: int, changed: int, *, who: str = "") -> None:
        self._events.details_planned(total, new, changed, who=self._label)

    def streams_planned(self, total: int, *, from_export: int = 0, who: str = "") -> None:
        self._events.streams_planned(total, from_export=from_export, who=self._label)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._events, name)  # the counts and the display are the run's, not the athlete's


def _recorded_athlete(store: RawStore) -> int | None:
    athlete_id = (store.read_state("athlete") or {}).get("athlete_id")
    return athlete_id if isinstance(athlete_id, int) else None


def athlete_plans(config: Config, filters: Filters, wanted: frozenset[int] | None, *, full_relist: bool = False,
                  now: float | None = None, listed_only: bool = False,
                  from_export: bool = True) -> list[tuple[AthleteDir, RequestPlan]]:
    """Each athlete's plan from what is on disk (reads only, the layout may not be migrated yet, but for
    the export's file summaries: see ExportView.refresh_summaries); `listed_only`: only athletes with a
    cached list. A removed athlete has none: no run fetches for it, nor for a folder without tokens that
    was never listed (an export imported before its athlete was known, or for an athlete never
    connected). `from_export`: streams the account export covers are not counted as requests."""
    athletes = [a for a in chosen_athletes(Roster(config.storage.data_dir), wanted, connected_only=False)
                if (a.store.listings() if listed_only else _served(a)) and not is_removed(a)]
    if from_export and config.fetch.streams:
        for athlete in athletes:  # no event loop here: what is computed is kept for the fetch and status
            ExportView(athlete.store.data_dir).refresh_summaries()
    return [(a, current_plan(a.store, config, filters, full_relist=full_relist, now=now, from_export=from_export))
            for a in athletes]


def _served(athlete: AthleteDir) -> bool:
    """Whether a fetch would request anything for the athlete: it has tokens, or was listed (the config's
    refresh_token serves a one-athlete data_dir that kept none, see Roster.add_seed)."""
    return athlete.tokens.load() is not None or bool(athlete.store.listings())


# -- compaction during quota waits (see bulkfetch.idle_compaction) -------------------------------------------

def _idle_compactor(roster: Roster, config: Config, options: FetchOptions, progress: Callable[[], FetchSummary],
                    events: FetchEvents) -> IdleCompactor | None:
    if not options.compact_in_waits:
        return None
    return IdleCompactor(config.storage.parquet_dir, lambda: _compaction_targets(roster),
                         config.limits.short_window_s * MIN_WAIT_SHARE,
                         fetched=lambda: (done := progress()).fetched + done.streams, on_info=events.info)


def _compaction_targets(roster: Roster) -> list[Target]:
    return [(athlete.folder, athlete.athlete_id) for athlete in roster.athletes()
            if athlete.athlete_id is not None and has_inputs(athlete.store)]


def _waiting(info: WaitInfo | None, events: FetchEvents, idle: IdleCompactor | None,
             scheduler: QuotaScheduler) -> None:
    if idle is not None:
        idle.on_wait(info, scheduler.now())
    events.waiting(info)
