"""The simulated Strava server: aiohttp routes for /api/v3 and /oauth, rate limiting, auth and faults.

Order of work for an /api/v3 request, as Strava does it: count it at arrival (before anything else, so
401/404/429 answers count too), reject it 429 if that count broke a limit, then the injected faults, then
the Application check, then the token, then the endpoint. Every answer that is sent carries the
rate-limit headers with the usage after counting it. /oauth is neither counted nor faulted.
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


DAY_S = 86400


class Simulator:
    """A seeded Strava on 127.0.0.1: start() it (or `async with`), point a client at api_url/oauth_url."""

    def __init__(self, settings: SimulatorSettings | None = None) -> None:
        self.settings = settings or SimulatorSettings()
        self.request_log: list[RequestRecord] = []
        self._detail_bodies: dict[int, tuple[bytes, bytes]] = {}
        # Anchored to the UTC day, so that the same seed serves the same history all day long: a
        # rerun of the demo (a new simulator) then finds nothing new, as a real rerun would.
        today_s = time.time() // DAY_S * DAY_S
        self.history = history.History.build(seed=self.settings.seed, count=self.settings.activities,
                                             athlete_id=self.settings.athlete_id, now_s=today_s)
        self._tokens = TokenBook(refresh_token=self.settings.refresh_token,
                                 refresh_scope=parse_scope(self.settings.scope),
                                 lifetime_s=self.settings.access_token_lifetime_s,
                                 rng=random.Random(f"{self.settings.seed}:tokens"))
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
    def current_refresh_token(self) -> str:
        return self._tokens.refresh_token

    def issue_access_token(self) -> str:
        """A fresh access token with the settings' scope, as if the app had just refreshed."""
        return self._tokens.issue_access(time.time(), parse_scope(self.settings.scope)).token

    def activity_ids(self, *, include_private: bool = True) -> list[int]:
        """The current history, newest first (the order of /athlete/activities)."""
        return [a.id for a in self.history.ordered() if include_private or not a.private]

    def detail(self, activity_id: int) -> dict:
        return history.detail_of(self.history.activities[activity_id], self.history.segments)

    def summary(self, activity_id: int) -> dict:
        return history.summary_of(self.history.activities[activity_id])

    def add_activity(self, **overrides: Any) -> int:
        return self.history.add(self._mutation_rng, time.time(), overrides)

    def edit_activity(self, activity_id: int, **changes: Any) -> None:
        self.history.edit(activity_id, changes)

    def delete_activity(self, activity_id: int) -> None:
        self.history.delete(activity_id)

    def set_settings(self, **changes: Any) -> None:
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

    def _record(self, request: web.Request, now_s: float, *, counted: bool, others: bool = False) -> int:
        """Log a request at arrival (status filled in later) and return its place in the log."""
        self.request_log.append(RequestRecord(
            time=now_s, method=request.method, path=OTHER_PROCESS_PATH if others else request.path,
            query={} if others else dict(request.query), status=200 if others else DROPPED, counted=counted,
            short_window=window_index(now_s, self.settings.short_window_s),
            daily_window=window_index(now_s, self.settings.daily_window_s),
            authorization=None if others else request.headers.get("Authorization"), others=others))
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
            self._finish(place, response.status)
            return response
        verdict = self._count(request, now_s)
        place = self._record(request, now_s, counted=True)
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
            request[TOKEN_SCOPE] = self._authenticate(request)
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

    def _finish(self, place: int, status: int) -> None:
        self.request_log[place] = dataclasses.replace(self.request_log[place], status=status)

    def _roll(self, rate: float) -> bool:
        return rate > 0 and self._fault_rng.random() < rate

    def _delay_s(self) -> float:
        settings = self.settings
        delay = settings.latency_s + self._fault_rng.uniform(0, settings.latency_jitter_s)
        return delay + (settings.spike_s if self._roll(settings.spike_rate) else 0.0)

    def _authenticate(self, request: web.Request) -> frozenset[str]:
        """The scope of the Bearer token in the Authorization header; a token in the query string is
        refused even when valid (Strava's current API reads the header only)."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if "access_token" in request.query or scheme.lower() != "bearer":
            raise Fault(*BAD_TOKEN)
        access = self._tokens.check(token.strip(), time.time())
        if access is None:
            raise Fault(*BAD_TOKEN)
        return access.scope

    # ------------------------------------------------------------ /api/v3 endpoints

    async def _athlete(self, request: web.Request) -> web.Response:
        return json_response(history.athlete_of(self.settings.athlete_id))

    async def _list(self, request: web.Request) -> web.Response:
        scope = self._activity_scope(request)
        query = request.query
        before_s = _int_param(query, "before", None, 0)
        after_s = _int_param(query, "after", None, 0)
        page = _int_param(query, "page", 1, 1)
        per_page = _int_param(query, "per_page", DEFAULT_PER_PAGE, 1)
        assert page is not None and per_page is not None
        self._maybe_mutate()
        activities = self.history.page(include_private=can_read_private(scope), before_s=before_s,
                                       after_s=after_s, page=page, per_page=min(per_page, MAX_PER_PAGE))
        return json_response([history.summary_of(a) for a in activities])

    async def _detail(self, request: web.Request) -> web.Response:
        body = self.detail_body(self._visible_activity(request))
        return web.Response(body=body, content_type="application/json")

    def detail_body(self, activity: history.Activity) -> bytes:
        """The DetailedActivity as served, encoded once per version of the activity: building a detail
        (splits, efforts, polyline) is the simulator's most expensive work."""
        version = orjson.dumps(activity.record)
        cached = self._detail_bodies.get(activity.record["id"])
        if cached is None or cached[0] != version:
            cached = (version, orjson.dumps(history.detail_of(activity, self.history.segments)))
            self._detail_bodies[activity.record["id"]] = cached
        return cached[1]

    def prepare_details(self) -> None:
        """Build every detail ahead, so that a benchmark measures the client, not the synthetic data."""
        for activity in self.history.activities.values():
            self.detail_body(activity)

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
        """The activity named in the path, or 404: bad ids, deleted, 'missing' and hidden private ones."""
        scope = self._activity_scope(request)
        text = request.match_info["id"]
        activity_id = int(text) if text.isdigit() else 0
        activity = self.history.activities.get(activity_id)
        if activity is None or self._missing(activity_id) or (activity.private and not can_read_private(scope)):
            raise Fault(*NOT_FOUND)
        return activity

    def _missing(self, activity_id: int) -> bool:
        """Stable per id: the same ids are missing on every request (Strava's broken activities are)."""
        rate = self.settings.missing_rate
        return rate > 0 and random.Random(f"{self.settings.seed}:missing:{activity_id}").random() < rate

    def _maybe_mutate(self) -> None:
        """mutate_rate: while a client pages, a new newest activity may appear and a random one vanish."""
        rate = self.settings.mutate_rate
        if rate <= 0:
            return
        if self._mutation_rng.random() < rate:
            self.history.add(self._mutation_rng, time.time(), {})
        if self._mutation_rng.random() < rate and self.history.activities:
            self.history.delete(self._mutation_rng.choice(sorted(self.history.activities)))

    # ------------------------------------------------------------ /oauth

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        fields = {**request.query, **{k: v for k, v in form.items() if isinstance(v, str)}}
        now_s = time.time()
        try:
            self._check_client(fields, with_secret=True)
            grant = fields.get("grant_type")
            if grant == "refresh_token":
                return json_response(self._tokens.use_refresh_token(fields.get("refresh_token", ""), now_s))
            if grant == "authorization_code":
                answer = self._tokens.use_code(fields.get("code", ""), now_s)
                return json_response({**answer, "athlete": history.athlete_of(self.settings.athlete_id)})
            raise TokenError("Application", "grant_type")
        except TokenError as error:
            return json_response(Fault(400, "Bad Request", error.resource, error.field_name, "invalid").body, 400)

    def _check_client(self, fields: dict[str, str], *, with_secret: bool) -> None:
        """Strava names client_id in the error whether the id or the secret was wrong."""
        secret_ok = not with_secret or fields.get("client_secret") == self.settings.client_secret
        if fields.get("client_id") != self.settings.client_id or not secret_ok:
            raise TokenError("Application", "client_id")

    async def _authorize(self, request: web.Request) -> web.Response:
        """The browser step: the athlete approves at once and is sent back with a code and the scope granted."""
        query = request.query
        try:
            self._check_client(dict(query), with_secret=False)
            if query.get("response_type") != "code":
                raise TokenError("Application", "response_type")
            if not query.get("redirect_uri"):
                raise TokenError("Application", "redirect_uri")
        except TokenError as error:
            return json_response(Fault(400, "Bad Request", error.resource, error.field_name, "invalid").body, 400)
        code, granted = self._tokens.authorize(parse_scope(query.get("scope", "")), parse_scope(self.settings.scope))
        target = URL(query["redirect_uri"]).update_query(state=query.get("state", ""), code=code,
                                                          scope=format_scope(granted, query.get("scope", "")))
        return web.Response(status=302, headers={"Location": str(target)})
