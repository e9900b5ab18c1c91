"""The simulated Strava server: aiohttp routes for /api/v3 and /oauth, rate limiting, auth and faults.

Order of work for an /api/v3 request, as Strava does it: count it at arrival (before anything else, so
401/404/429 answers count too), reject it 429 if that count broke a limit, then the injected faults, then
the Application check, then the token, then the endpoint. Every answer that is sent carries the
rate-limit headers with the usage after counting it. /oauth is neither counted nor faulted.

An app has one or more athletes (`athletes`): one quota for all of them, and every API route answers for
the athlete whose access token it carries.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from yarl import URL

from bulkfetch.simulator import history
from bulkfetch.simulator.athletes import Athlete, approving_athlete, build_athletes, has_room_for
from bulkfetch.simulator.ratelimit import UNLIMITED, Limits, RateCounter, Verdict, Windows, window_index
from bulkfetch.simulator.settings import SimulatorSettings
from bulkfetch.simulator.tokens import (
    TokenBook,
    TokenError,
    can_read_activities,
    can_read_private,
    format_scope,
    parse_scope,
)

API_PREFIX = "/api/v3"
OAUTH_PREFIX = "/oauth"
MAX_PER_PAGE = 200
DEFAULT_PER_PAGE = 30
OTHER_PROCESS_PATH = "(other process)"
TOKEN_SCOPE = web.RequestKey("token_scope", frozenset)  # set by auth, read by the activity endpoints
TOKEN_ATHLETE = web.RequestKey("token_athlete", Athlete)  # set by auth: whose token it is
OAUTH_ATHLETE = web.RequestKey("oauth_athlete", int)  # set by /oauth handlers: whom the request was for
SIGN_IN_PARAM = "sim_athlete_id"  # on /oauth/authorize: the athlete who signs in at the approval prompt
DROPPED = 0  # RequestRecord.status of a request whose connection was closed without an answer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class RequestRecord:
    time: float  # time.time() at arrival
    method: str
    path: str
    query: dict[str, str]
    status: int  # DROPPED (0) when the connection was closed without an answer
    counted: bool  # counted against the quota: every /api/v3 request, 429s included; never /oauth
    short_window: int
    daily_window: int
    authorization: str | None  # the Authorization header as received
    others: bool = False  # the simulated other process's usage (other_usage_per_window)
    athlete_id: int | None = None  # whose token, code or refresh token it carried; None when unknown


class Fault(Exception):
    """An answer in Strava's Fault format: {"message": ..., "errors": [{"resource", "field", "code"}]}."""

    def __init__(self, status: int, message: str, resource: str = "", field: str = "", code: str = "") -> None:
        super().__init__(message)
        self.status = status
        errors = [{"resource": resource, "field": field, "code": code}] if resource else []
        self.body: dict[str, Any] = {"message": message, "errors": errors}


NOT_FOUND = (404, "Record Not Found", "Activity", "id", "invalid")
BAD_TOKEN = (401, "Authorization Error", "Athlete", "access_token", "invalid")
NO_ACTIVITY_SCOPE = (401, "Authorization Error", "AccessToken", "activity:read_permission", "missing")
APP_INACTIVE = (403, "Forbidden: Application Inactive", "Application", "", "inactive")
# Strava shows this in the browser and sends no redirect, so the app never hears of it.
CAPACITY_PAGE = ("<html><head><title>Limit of connected athletes exceeded</title></head><body>"
                 "<h1>Limit of connected athletes exceeded</h1><p>This app has exceeded the limit of connected "
                 "athletes. Please contact the app developer.</p></body></html>")


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _int_param(query: Any, name: str, default: int | None, minimum: int) -> int | None:
    """An integer query parameter, or a 400 Fault naming it."""
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise Fault(400, "Bad Request", "Application", name, "invalid") from None
    if value < minimum:
        raise Fault(400, "Bad Request", "Application", name, "invalid")
    return value


def bearer_token(request: web.Request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None without one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


async def oauth_fields(request: web.Request) -> dict[str, str]:
    """An /oauth request's parameters: the query string and the form body (the form wins)."""
    form = await request.post()
    return {**request.query, **{k: v for k, v in form.items() if isinstance(v, str)}}


DAY_S = 86400


class Simulator:
    """A seeded Strava on 127.0.0.1: start() it (or `async with`), point a client at api_url/oauth_url."""

    def __init__(self, settings: SimulatorSettings | None = None) -> None:
        self.settings = settings or SimulatorSettings()
        self.request_log: list[RequestRecord] = []
        self._detail_bodies: dict[int, tuple[bytes, bytes]] = {}
        # Anchored to the UTC day, so that the same seed serves the same history all day long: a
        # rerun of the demo (a new simulator) then finds nothing new, as a real rerun would.
        self.history_now_s = time.time() // DAY_S * DAY_S  # the histories end a few hours before it
        self.athletes = build_athletes(self.settings, self.history_now_s)
        self._signed_in = self.athletes[0]  # whose strava.com session the simulated browser has
        self._counter = RateCounter()
        self._fault_rng = random.Random(f"{self.settings.seed}:faults")
        self._mutation_rng = random.Random(f"{self.settings.seed}:mutations")
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self.api_url = ""
        self.oauth_url = ""

    # ------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get(f"{API_PREFIX}/athlete", self._athlete)
        app.router.add_get(f"{API_PREFIX}/athlete/activities", self._list)
        app.router.add_get(f"{API_PREFIX}/activities/{{id}}", self._detail)
        app.router.add_get(f"{API_PREFIX}/activities/{{id}}/streams", self._streams)
        app.router.add_get(f"{API_PREFIX}/activities/{{id}}/laps", self._laps)
        app.router.add_post(f"{OAUTH_PREFIX}/token", self._token)
        app.router.add_get(f"{OAUTH_PREFIX}/authorize", self._authorize)
        app.router.add_post(f"{OAUTH_PREFIX}/deauthorize", self._deauthorize)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        self.base_url = f"http://{bound_host}:{bound_port}"
        self.api_url = self.base_url + API_PREFIX
        self.oauth_url = self.base_url + OAUTH_PREFIX

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ------------------------------------------------------------ ground truth and knobs for tests

    @property
    def history(self) -> history.History:
        """The first athlete's history (the only one with one athlete)."""
        return self.athletes[0].history

    @property
    def _tokens(self) -> TokenBook:
        """The first athlete's token book, where the secrets tests look for every token issued."""
        return self.athletes[0].tokens

    @property
    def current_refresh_token(self) -> str:
        """The first athlete's valid refresh token ("" when it has none: never authorized, or revoked)."""
        return self.refresh_token_of()

    @property
    def athlete_ids(self) -> list[int]:
        return [athlete.athlete_id for athlete in self.athletes]

    def athlete(self, athlete_id: int | None = None) -> Athlete:
        """The athlete with `athlete_id` (KeyError if the app has none), the first by default."""
        if athlete_id is None:
            return self.athletes[0]
        for athlete in self.athletes:
            if athlete.athlete_id == athlete_id:
                return athlete
        raise KeyError(f"no simulated athlete {athlete_id}")

    def refresh_token_of(self, athlete_id: int | None = None) -> str:
        return self.athlete(athlete_id).tokens.refresh_token or ""

    def connected_athlete_ids(self) -> list[int]:
        """The athletes holding one of the app's capacity slots."""
        return [athlete.athlete_id for athlete in self.athletes if athlete.connected]

    def issue_access_token(self, athlete_id: int | None = None) -> str:
        """A fresh access token with the athlete's scope, as if the app had just refreshed."""
        athlete = self.athlete(athlete_id)
        return athlete.tokens.issue_access(time.time(), athlete.allowed_scope(self.settings)).token

    def revoke_athlete(self, athlete_id: int | None = None) -> None:
        """The athlete removed the app on strava.com: its tokens stop working (a refresh answers 400, an
        API request 401) and its capacity slot is free."""
        self.athlete(athlete_id).disconnect()

    def set_athlete_scope(self, scope: str, athlete_id: int | None = None) -> None:
        """The athlete now allows only `scope` (e.g. "read": re-authorized without "View data about your
        activities"): its tokens keep only that part of their scope, so activity requests answer 401
        activity:read_permission missing; later authorizations grant at most it."""
        athlete = self.athlete(athlete_id)
        athlete.scope = scope
        athlete.tokens.narrow(parse_scope(scope))

    def sign_in(self, athlete_id: int) -> None:
        """The simulated browser's strava.com session is now this athlete's (see _authorize)."""
        self._signed_in = self.athlete(athlete_id)

    def activity_ids(self, *, include_private: bool = True, athlete_id: int | None = None) -> list[int]:
        """The athlete's current history, newest first (the order of /athlete/activities)."""
        return [a.id for a in self.athlete(athlete_id).history.ordered() if include_private or not a.private]

    def detail(self, activity_id: int) -> dict:
        owner = self._owner_of_activity(activity_id).history
        return history.detail_of(owner.activities[activity_id], owner.segments)

    def summary(self, activity_id: int) -> dict:
        return history.summary_of(self._owner_of_activity(activity_id).history.activities[activity_id])

    def add_activity(self, athlete_id: int | None = None, **overrides: Any) -> int:
        return self.athlete(athlete_id).history.add(self._mutation_rng, time.time(), overrides)

    def edit_activity(self, activity_id: int, **changes: Any) -> None:
        self._owner_of_activity(activity_id).history.edit(activity_id, changes)

    def delete_activity(self, activity_id: int) -> None:
        self._owner_of_activity(activity_id).history.delete(activity_id)

    def _owner_of_activity(self, activity_id: int) -> Athlete:
        """The athlete whose history holds `activity_id` (ids are unique across athletes); KeyError if none."""
        for athlete in self.athletes:
            if activity_id in athlete.history.activities:
                return athlete
        raise KeyError(activity_id)

    def set_settings(self, **changes: Any) -> None:
        """Change knobs while serving. The athletes (how many, their histories and first tokens) are built
        once, at construction; athlete_capacity applies to the authorizations that follow."""
        self.settings = dataclasses.replace(self.settings, **changes)

    def usage(self) -> dict[str, tuple[int, int]]:
        """{"read": (short, daily), "overall": (short, daily)} in the windows current now."""
        read, overall = self._counter.usage_at(self._windows(time.time()))
        return {"read": (read.short, read.daily), "overall": (overall.short, overall.daily)}

    # ------------------------------------------------------------ request pipeline

    def _windows(self, now_s: float) -> Windows:
        return Windows.at(now_s, self.settings.short_window_s, self.settings.daily_window_s)

    def _limits(self) -> tuple[Limits, Limits]:
        settings = self.settings
        if not settings.rate_limits:
            return Limits(UNLIMITED, UNLIMITED), Limits(UNLIMITED, UNLIMITED)
        return (Limits(settings.short_limit, settings.daily_limit),
                Limits(settings.overall_short_limit, settings.overall_daily_limit))

    def _record(self, request: web.Request, now_s: float, *, counted: bool, others: bool = False,
                athlete_id: int | None = None) -> int:
        """Log a request at arrival (status filled in later) and return its place in the log."""
        self.request_log.append(RequestRecord(
            time=now_s, method=request.method, path=OTHER_PROCESS_PATH if others else request.path,
            query={} if others else dict(request.query), status=200 if others else DROPPED, counted=counted,
            short_window=window_index(now_s, self.settings.short_window_s),
            daily_window=window_index(now_s, self.settings.daily_window_s),
            authorization=None if others else request.headers.get("Authorization"), others=others,
            athlete_id=athlete_id))
        return len(self.request_log) - 1

    def _count(self, request: web.Request, now_s: float) -> Verdict:
        """Count an arriving API request; the other process spends its share first in a new short window."""
        if self._counter.roll(self._windows(now_s)) and self.settings.other_usage_per_window:
            self._counter.add(self.settings.other_usage_per_window)
            for _ in range(self.settings.other_usage_per_window):
                self._record(request, now_s, counted=True, others=True)
        return self._counter.count(*self._limits())

    def _rate_headers(self, verdict: Verdict) -> dict[str, str]:
        read_limits, overall_limits = self._limits()
        return {"X-RateLimit-Limit": overall_limits.header(), "X-RateLimit-Usage": verdict.overall.header(),
                "X-ReadRateLimit-Limit": read_limits.header(), "X-ReadRateLimit-Usage": verdict.read.header()}

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        now_s = time.time()
        if not request.path.startswith(API_PREFIX + "/"):
            place = self._record(request, now_s, counted=False)
            response = await self._answer(request, handler)
            self._finish(place, response.status, request.get(OAUTH_ATHLETE))
            return response
        verdict = self._count(request, now_s)
        owner = self._token_owner(bearer_token(request))
        place = self._record(request, now_s, counted=True, athlete_id=owner.athlete_id if owner else None)
        if verdict.exceeded is None and self._roll(self.settings.drop_rate):
            request.transport.close()  # aiohttp then has nowhere to write the answer: the client sees EOF
            return web.Response(status=500)
        response = await self._api_answer(request, handler, verdict)
        response.headers.update(self._rate_headers(verdict))
        self._finish(place, response.status)
        return response

    async def _api_answer(self, request: web.Request, handler: Handler, verdict: Verdict) -> web.StreamResponse:
        if verdict.exceeded is not None:
            return json_response(Fault(429, "Rate Limit Exceeded", "Application", verdict.exceeded,
                                       "exceeded").body, status=429)
        await asyncio.sleep(self._delay_s())
        if self._roll(self.settings.error_rate):
            status = self._fault_rng.choice((500, 500, 502, 503))
            if status == 500:
                return json_response({"message": "error"}, status=500)
            return web.Response(status=status, content_type="text/html",
                                text=f"<html><body><h1>{status}</h1>upstream unavailable</body></html>")
        if self.settings.app_inactive:
            return json_response(Fault(*APP_INACTIVE).body, status=403)
        try:
            request[TOKEN_ATHLETE], request[TOKEN_SCOPE] = self._authenticate(request)
        except Fault as fault:
            return json_response(fault.body, status=fault.status)
        response = await self._answer(request, handler)
        if response.status == 200 and isinstance(response, web.Response) and self._roll(self.settings.truncate_rate):
            body = bytes(response.body)  # type: ignore[arg-type]  # json_response bodies are bytes
            response.body = body[:max(1, len(body) // 2)]
        return response

    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The handler's answer, with unknown paths and Faults as Strava-style JSON."""
        try:
            return await handler(request)
        except Fault as fault:
            return json_response(fault.body, status=fault.status)
        except web.HTTPException as error:
            if error.status == 404:
                return json_response(Fault(*NOT_FOUND).body, status=404)
            return json_response({"message": error.reason, "errors": []}, status=error.status)

    def _finish(self, place: int, status: int, athlete_id: int | None = None) -> None:
        record = self.request_log[place]
        known = record.athlete_id if athlete_id is None else athlete_id
        self.request_log[place] = dataclasses.replace(record, status=status, athlete_id=known)

    def _roll(self, rate: float) -> bool:
        return rate > 0 and self._fault_rng.random() < rate

    def _delay_s(self) -> float:
        settings = self.settings
        delay = settings.latency_s + self._fault_rng.uniform(0, settings.latency_jitter_s)
        return delay + (settings.spike_s if self._roll(settings.spike_rate) else 0.0)

    def _authenticate(self, request: web.Request) -> tuple[Athlete, frozenset[str]]:
        """The athlete and scope of the Bearer token in the Authorization header; a token in the query
        string is refused even when valid (Strava's current API reads the header only)."""
        token = bearer_token(request)
        if "access_token" in request.query or token is None:
            raise Fault(*BAD_TOKEN)
        return self._live_access(token)

    def _live_access(self, token: str) -> tuple[Athlete, frozenset[str]]:
        """The athlete and scope of the live access token `token`, or the 401 Fault for a bad token."""
        owner = self._token_owner(token)
        access = owner.tokens.check(token, time.time()) if owner is not None else None
        if owner is None or access is None:
            raise Fault(*BAD_TOKEN)
        return owner, access.scope

    def _token_owner(self, token: str | None) -> Athlete | None:
        """The athlete an access token was issued to, live or not; None for a token never issued."""
        return next((a for a in self.athletes if token is not None and a.tokens.issued_access(token)), None)

    # ------------------------------------------------------------ /api/v3 endpoints

    async def _athlete(self, request: web.Request) -> web.Response:
        athlete = request[TOKEN_ATHLETE]
        return json_response(history.athlete_of(athlete.athlete_id, athlete.index))

    async def _list(self, request: web.Request) -> web.Response:
        scope = self._activity_scope(request)
        query = request.query
        before_s = _int_param(query, "before", None, 0)
        after_s = _int_param(query, "after", None, 0)
        page = _int_param(query, "page", 1, 1)
        per_page = _int_param(query, "per_page", DEFAULT_PER_PAGE, 1)
        assert page is not None and per_page is not None
        athlete_history = request[TOKEN_ATHLETE].history
        self._maybe_mutate(athlete_history)
        activities = athlete_history.page(include_private=can_read_private(scope), before_s=before_s,
                                       after_s=after_s, page=page, per_page=min(per_page, MAX_PER_PAGE))
        return json_response([history.summary_of(a) for a in activities])

    async def _detail(self, request: web.Request) -> web.Response:
        body = self.detail_body(self._visible_activity(request), request[TOKEN_ATHLETE].history.segments)
        return web.Response(body=body, content_type="application/json")

    def detail_body(self, activity: history.Activity, segments: list[dict]) -> bytes:
        """The DetailedActivity as served, encoded once per version of the activity: building a detail
        (splits, efforts, polyline) is the simulator's most expensive work."""
        version = orjson.dumps(history.placed(activity))
        cached = self._detail_bodies.get(activity.record["id"])
        if cached is None or cached[0] != version:
            cached = (version, orjson.dumps(history.detail_of(activity, segments)))
            self._detail_bodies[activity.record["id"]] = cached
        return cached[1]

    def prepare_details(self) -> None:
        """Build every detail ahead, so that a benchmark measures the client, not the synthetic data."""
        for athlete in self.athletes:
            for activity in athlete.history.activities.values():
                self.detail_body(activity, athlete.history.segments)

    async def _streams(self, request: web.Request) -> web.Response:
        activity = self._visible_activity(request)
        return json_response(history.streams_of(activity, request.query.get("keys")))

    async def _laps(self, request: web.Request) -> web.Response:
        return json_response(history.laps_of(self._visible_activity(request)))

    def _activity_scope(self, request: web.Request) -> frozenset[str]:
        scope = request[TOKEN_SCOPE]
        if not can_read_activities(scope):
            raise Fault(*NO_ACTIVITY_SCOPE)
        return scope

    def _visible_activity(self, request: web.Request) -> history.Activity:
        """The activity named in the path, or 404: bad ids, deleted, 'missing' and hidden private ones, and
        other athletes' (Strava's reference: "Returns the given activity that is owned by the authenticated
        athlete", https://developers.strava.com/docs/reference/#api-Activities-getActivityById)."""
        scope = self._activity_scope(request)
        text = request.match_info["id"]
        activity_id = int(text) if text.isdigit() else 0
        activity = request[TOKEN_ATHLETE].history.activities.get(activity_id)
        if activity is None or self._missing(activity_id) or (activity.private and not can_read_private(scope)):
            raise Fault(*NOT_FOUND)
        return activity

    def _missing(self, activity_id: int) -> bool:
        """Stable per id: the same ids are missing on every request (Strava's broken activities are)."""
        rate = self.settings.missing_rate
        return rate > 0 and random.Random(f"{self.settings.seed}:missing:{activity_id}").random() < rate

    def _maybe_mutate(self, athlete_history: history.History) -> None:
        """mutate_rate: while a client pages, a new newest activity may appear and a random one vanish."""
        rate = self.settings.mutate_rate
        if rate <= 0:
            return
        if self._mutation_rng.random() < rate:
            athlete_history.add(self._mutation_rng, time.time(), {})
        if self._mutation_rng.random() < rate and athlete_history.activities:
            athlete_history.delete(self._mutation_rng.choice(sorted(athlete_history.activities)))

    # ------------------------------------------------------------ /oauth

    async def _token(self, request: web.Request) -> web.Response:
        fields = await oauth_fields(request)
        now_s = time.time()
        if self.settings.token_outage:
            return json_response({"message": "error"}, status=503)
        try:
            self._check_client(fields, with_secret=True)
            grant = fields.get("grant_type")
            if grant == "refresh_token":
                token = fields.get("refresh_token", "")
                athlete = self._holder(request, lambda book: book.refresh_token == token,
                                       TokenError("RefreshToken", "refresh_token"))
                return json_response(athlete.tokens.use_refresh_token(token, now_s))
            if grant == "authorization_code":
                code = fields.get("code", "")
                athlete = self._holder(request, lambda book: code in book.codes,
                                       TokenError("AuthorizationCode", "code"))
                answer = athlete.tokens.use_code(code, now_s)
                return json_response({**answer, "athlete": history.athlete_of(athlete.athlete_id, athlete.index)})
            raise TokenError("Application", "grant_type")
        except TokenError as error:
            return json_response(Fault(400, "Bad Request", error.resource, error.field_name, "invalid").body, 400)

    def _holder(self, request: web.Request, holds: Callable[[TokenBook], bool], unknown: TokenError) -> Athlete:
        """The athlete whose token book `holds` is true for (noted for the request log), else `unknown`."""
        athlete = next((a for a in self.athletes if holds(a.tokens)), None)
        if athlete is None:
            raise unknown
        request[OAUTH_ATHLETE] = athlete.athlete_id
        return athlete

    def _check_client(self, fields: dict[str, str], *, with_secret: bool) -> None:
        """Strava names client_id in the error whether the id or the secret was wrong."""
        secret_ok = not with_secret or fields.get("client_secret") == self.settings.client_secret
        if fields.get("client_id") != self.settings.client_id or not secret_ok:
            raise TokenError("Application", "client_id")

    async def _authorize(self, request: web.Request) -> web.Response:
        """The browser step: the approving athlete (see approving_athlete; `sim_athlete_id` names who signs
        in at the prompt) approves at once and is sent back with a code and the scope granted, or, beyond
        the app's athlete capacity, gets Strava's error page and no redirect."""
        query = request.query
        try:
            self._check_client(dict(query), with_secret=False)
            if query.get("response_type") != "code":
                raise TokenError("Application", "response_type")
            if not query.get("redirect_uri"):
                raise TokenError("Application", "redirect_uri")
            chosen = self._chosen_athlete(query.get(SIGN_IN_PARAM))
        except TokenError as error:
            return json_response(Fault(400, "Bad Request", error.resource, error.field_name, "invalid").body, 400)
        athlete = approving_athlete(self._signed_in, chosen, force=query.get("approval_prompt") == "force")
        request[OAUTH_ATHLETE] = athlete.athlete_id
        if not has_room_for(self.athletes, athlete, self.settings.athlete_capacity):
            return web.Response(status=403, content_type="text/html", text=CAPACITY_PAGE)
        athlete.connected = True
        code, granted = athlete.tokens.authorize(parse_scope(query.get("scope", "")),
                                                 athlete.allowed_scope(self.settings))
        target = URL(query["redirect_uri"]).update_query(state=query.get("state", ""), code=code,
                                                          scope=format_scope(granted, query.get("scope", "")))
        return web.Response(status=302, headers={"Location": str(target)})

    def _chosen_athlete(self, text: str | None) -> Athlete | None:
        if text is None:
            return None
        try:
            return self.athlete(int(text))
        except (KeyError, ValueError):
            raise TokenError("Athlete", SIGN_IN_PARAM) from None

    async def _deauthorize(self, request: web.Request) -> web.Response:
        """POST /oauth/deauthorize with `access_token` (form, query or Bearer header, as clients send it):
        every token of that athlete for this app stops working and its capacity slot is free. Strava answers
        200 with the token it was given: {"access_token": "..."}
        (https://developers.strava.com/docs/authentication/#deauthorization)."""
        fields = await oauth_fields(request)
        token = fields.get("access_token") or bearer_token(request) or ""
        try:
            athlete, _ = self._live_access(token)
        except Fault as fault:
            return json_response(fault.body, status=fault.status)
        request[OAUTH_ATHLETE] = athlete.athlete_id
        athlete.disconnect()
        return json_response({"access_token": token})
