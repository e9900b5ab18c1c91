"""The only module that sends HTTP, and the only retry loop.

Every API request waits for the quota scheduler, carries the access token in the Authorization header
(never in the URL, never to another host, never across a redirect), and is retried here for transient
failures with exponential backoff and jitter. A 429 is not retried blindly: the scheduler has marked
the window spent, so the next attempt waits for its reset (rejected requests still count).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import orjson

from bulkfetch.auth import TokenStore
from bulkfetch.config import FetchConfig, StravaConfig
from bulkfetch.errors import ApiError, AppInactive, AthleteRevoked, ScopeMissing
from bulkfetch.fairness import FairSlots, Lane
from bulkfetch.quota import UsageView
from bulkfetch.retry import Verdict, backoff_delay, classify, missing_permission
from bulkfetch.scheduler import QuotaScheduler
from bulkfetch.token_refresh import TokenManager

MAX_BODY_BYTES = 256 * 1024 * 1024  # a detail is ~100 KB and streams a few MB; more is hostile
USER_AGENT = "bulkfetch (+https://github.com/bulkfetch)"


def open_session(concurrency: int) -> aiohttp.ClientSession:
    """The HTTP session for API requests: a connection per worker, and no hidden retries.

    aiohttp silently resends an idempotent request once when a reused connection drops. Strava counts
    both, the quota ledger would see one: every request must go through the retry loop here instead.
    `_retry_connection` is the switch aiohttp's own test client uses; there is no public one.
    """
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency + 2))
    session._retry_connection = False  # noqa: SLF001 - see the docstring
    return session


class RequestFailed(ApiError):
    """One request failed for this run (after its retries); the run goes on without it."""


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: bytes          # exactly as received
    data: Any            # parsed JSON (None for a 404)

    @property
    def not_found(self) -> bool:
        return self.status == 404


@dataclass(frozen=True)
class RequestDone:
    """One HTTP exchange as the verbose log shows it: what was asked and how it ended, never a header or a
    body, so never a token or a secret."""

    method: str
    path: str  # path and query as sent, without the host
    status: int | None  # None: no response (`failure` says why)
    failure: str | None
    quota: UsageView | None  # the ledger right after it; None for OAuth requests, which Strava does not count


@dataclass(frozen=True)
class _Attempt:
    status: int | None
    body: bytes
    headers: Mapping[str, str]
    failure: str | None  # set when no usable response arrived


class StravaClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        strava: StravaConfig,
        fetch: FetchConfig,
        scheduler: QuotaScheduler,
        token_store: TokenStore,
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_retry: Callable[[str], None] | None = None,
        on_request: Callable[[RequestDone], None] | None = None,
        slots: Lane | None = None,
        tokens: TokenManager | None = None,
    ) -> None:
        self._session = session
        self._strava = strava
        self._fetch = fetch
        self._scheduler = scheduler
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._on_retry = on_retry or (lambda message: None)
        self._on_request = on_request or (lambda done: None)
        self._api_origin = _origin(strava.api_url)
        # `concurrency` is requests in flight: callers may outnumber it (to write while others fetch).
        # Several athletes' clients share their slots (`bulkfetch.fairness`): one app, one concurrency.
        self._slots = slots or FairSlots(fetch.concurrency).lane("requests")
        # One manager per athlete and run (`tokens`): two would rotate the refresh token under each other.
        self.tokens = tokens or TokenManager(token_store, strava, self.post_form, margin_s=fetch.refresh_margin_s)
        self.requests_sent = 0

    async def get(self, path: str, params: Mapping[str, str | int] | None = None) -> ApiResponse:
        """GET `api_url + path`; returns 2xx and 404 responses, raises for everything else."""
        url = self._strava.api_url.rstrip("/") + path
        refreshed = False
        attempt = 0
        while True:
            async with self._slots:
                ticket = await self._scheduler.acquire()
                try:
                    token = await self.tokens.access_token()
                    sent_at = time.time()
                    result = await self._send_get(url, params=params, token=token)
                except BaseException:  # a rejected refresh, a cancellation: the ticket must leave flight,
                    self._scheduler.abandon(ticket)  # or the app's ledger waits for its answer forever
                    raise
                recv_at = time.time()
                self.requests_sent += 1
                if result.status is None:
                    self._scheduler.abandon(ticket)
                else:
                    self._scheduler.settle(ticket, result.status, result.headers,
                                           sent_at_local=sent_at, recv_at_local=recv_at)
                self._on_request(RequestDone("GET", _path_and_query(path, params), result.status, result.failure,
                                             self._scheduler.view()))
            verdict, data, failure = self._judge(result)
            if verdict is Verdict.OK:
                return ApiResponse(result.status or 200, result.body, data)
            if verdict is Verdict.NOT_FOUND:
                return ApiResponse(404, result.body, None)
            if verdict is Verdict.RATE_LIMITED:
                self._on_retry(f"429 from Strava on {path}: another program may share this app's quota;"
                               " waiting for the window to reset")
                continue
            if verdict is Verdict.REFRESH and not refreshed:
                refreshed = True
                await self.tokens.refresh(rejected=token)
                continue
            self._raise_if_fatal(verdict, data, path)
            attempt += 1
            if verdict is not Verdict.RETRY or attempt >= self._fetch.max_attempts:
                raise RequestFailed(f"GET {path} failed after {attempt} attempt(s): {failure}")
            delay = backoff_delay(attempt, base_s=self._fetch.backoff_base_s,
                                  cap_s=self._fetch.backoff_cap_s, rng=self._rng)
            self._on_retry(f"GET {path}: {failure}; retry {attempt} in {delay:.1f} s")
            with self._slots.resting():  # other athletes need not wait for a page that is not on the way
                await self._sleep(delay)

    def one_at_a_time(self) -> AbstractContextManager[None]:
        """Around requests that each wait for the one before (list pages): see `bulkfetch.fairness`."""
        return self._slots.one_at_a_time()

    async def post_form(self, url: str, form: Mapping[str, str]) -> tuple[int, bytes]:
        """POST a form to the OAuth host (no token, not counted against the quota), retrying 5xx/drops."""
        status, body = await post_form(self._session, self._strava, self._fetch, url, form, rng=self._rng,
                                       sleep=self._sleep)
        self._on_request(RequestDone("POST", urlsplit(url).path, status, None, None))  # the form holds secrets
        return status, body

    async def _send_get(self, url: str, *, params: Mapping[str, Any] | None, token: str) -> _Attempt:
        if _origin(url) != self._api_origin:
            raise ApiError(f"refusing to send the access token to {_origin(url)}: not the configured api_url")
        return await _send(self._session, "GET", url, params=params, timeout_s=self._fetch.request_timeout_s,
                           headers={"Authorization": f"Bearer {token}"})


    def _judge(self, result: _Attempt) -> tuple[Verdict, Any, str]:
        """What to do with one attempt; malformed JSON in a 2xx counts as a transient failure."""
        if result.status is None:
            return Verdict.RETRY, None, result.failure or "no response"
        if result.failure:
            return Verdict.FAIL, None, result.failure
        if 300 <= result.status < 400:
            return Verdict.FAIL, None, f"HTTP {result.status} redirect (not followed: the token stays here)"
        try:
            data = orjson.loads(result.body) if result.body else None
        except orjson.JSONDecodeError:
            data = None
            if 200 <= result.status < 300:
                return Verdict.RETRY, None, "malformed JSON in the response"
        verdict = classify(result.status, data)
        return verdict, data, f"HTTP {result.status}"

    def _raise_if_fatal(self, verdict: Verdict, data: Any, path: str) -> None:
        if verdict is Verdict.MISSING_SCOPE:
            raise ScopeMissing(
                f"the Strava token lacks a permission ({missing_permission(data)}) needed for {path}",
                hint="run 'bulkfetch auth' and allow 'View data about your activities'",
            )
        if verdict is Verdict.REFRESH:
            raise AthleteRevoked("Strava rejected a freshly refreshed access token",
                                  hint="run 'bulkfetch auth' to connect the account again")
        if verdict is Verdict.APP_INACTIVE:
            message = data.get("message", "Forbidden") if isinstance(data, dict) else "Forbidden"
            raise AppInactive(
                f"Strava answered 403 ({message}): the API application is inactive or over its athlete limit",
                hint="Strava now requires the app owner's active subscription; check strava.com/settings/api",
            )


async def post_form(session: aiohttp.ClientSession, strava: StravaConfig, fetch: FetchConfig, url: str,
                    form: Mapping[str, str], *, rng: random.Random,
                    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> tuple[int, bytes]:
    """POST a form to the configured OAuth host; 5xx and dropped connections are retried with backoff."""
    if _origin(url) != _origin(strava.oauth_url):
        raise ApiError(f"refusing to send credentials to {_origin(url)}: not the configured oauth_url")
    attempt = 0
    while True:
        result = await _send(session, "POST", url, data=dict(form), timeout_s=fetch.request_timeout_s)
        if result.status is not None and result.status < 500:
            return result.status, result.body
        attempt += 1
        if attempt >= fetch.max_attempts:
            raise ApiError(f"POST {urlsplit(url).path} failed after {attempt} attempts: "
                           f"{result.failure or f'HTTP {result.status}'}", hint="rerun later")
        await sleep(backoff_delay(attempt, base_s=fetch.backoff_base_s, cap_s=fetch.backoff_cap_s, rng=rng))


async def _send(session: aiohttp.ClientSession, method: str, url: str, *, timeout_s: float,
                params: Mapping[str, Any] | None = None, data: Mapping[str, str] | None = None,
                headers: Mapping[str, str] | None = None) -> _Attempt:
    """One HTTP exchange, never following a redirect; a failure without a response is returned, not raised."""
    all_headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})}
    try:
        async with session.request(method, url, params=params, data=data, headers=all_headers,
                                   allow_redirects=False,
                                   timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
            if response.content_length is not None and response.content_length > MAX_BODY_BYTES:
                return _Attempt(response.status, b"", response.headers,
                                f"response of {response.content_length} bytes is too large")
            chunks, size = [], 0
            async for chunk in response.content.iter_chunked(1 << 16):
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    return _Attempt(response.status, b"", response.headers, "response body is too large")
                chunks.append(chunk)
            return _Attempt(response.status, b"".join(chunks), response.headers, None)
    except TimeoutError:
        return _Attempt(None, b"", {}, f"timed out after {timeout_s:g} s")
    except aiohttp.ClientError as exc:
        return _Attempt(None, b"", {}, f"connection problem ({type(exc).__name__})")


def _path_and_query(path: str, params: Mapping[str, str | int] | None) -> str:
    return f"{path}?{urlencode(params, safe=',')}" if params else path


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()
