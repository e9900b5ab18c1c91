"""`bulkfetch auth`: connect a Strava account with the OAuth authorization-code flow.

bulkfetch builds the authorize URL (with a random `state`), a person approves it in a browser, Strava
redirects to a loopback listener (or the person pastes the redirected URL with --no-browser), and the
code is exchanged for tokens that are stored where `fetch` finds them.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import sys
import time
import webbrowser
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp
from aiohttp import web

from bulkfetch.auth import PostForm, Tokens, athlete_name, error_resource, parse_body
from bulkfetch.client import post_form
from bulkfetch.config import Config, StravaConfig
from bulkfetch.errors import CredentialError
from bulkfetch.ids import is_strava_id
from bulkfetch.roster import AthleteDir, Roster

AUTH_SCOPE = "read,activity:read_all"
REDIRECT_PATH = "/exchange_token"
# Beyond its athlete capacity Strava shows its error page in the browser and never redirects, so the
# command sees only a missing redirect or code: name the likely cause there.
CAPACITY_HINT = ("the likely cause is the app's athlete capacity: Strava shows 'Limit of connected athletes "
                 "exceeded' only in the browser: a new app accepts only its owner until upgraded on "
                 "strava.com/settings/api, then up to 10 athletes; else run 'bulkfetch auth' again")


@dataclass(frozen=True)
class Authorization:
    """What the redirect brought back to the loopback listener (or what a person pasted)."""

    code: str
    scope: str


def authorize_url(strava: StravaConfig, redirect_uri: str, state: str, *, force_prompt: bool) -> str:
    """`force_prompt`: Strava shows the approval page even to an athlete who already authorized the app;
    without it a browser signed in as such an athlete (the owner) is authorized again without a word."""
    query = urlencode({
        "client_id": strava.client_id, "redirect_uri": redirect_uri, "response_type": "code",
        "approval_prompt": "force" if force_prompt else "auto", "scope": AUTH_SCOPE, "state": state,
    })
    return f"{strava.oauth_url.rstrip('/')}/authorize?{query}"


def parse_redirect(query: Mapping[str, str], expected_state: str) -> Authorization:
    """Check the redirect's `state` and pull out the code and the scope the person granted."""
    if query.get("error"):
        raise CredentialError(f"Strava did not authorize bulkfetch ({query['error']})",
                              hint="run 'bulkfetch auth' again and press Authorize")
    if not secrets.compare_digest(query.get("state", ""), expected_state):
        raise CredentialError("the OAuth redirect carried a different state (not the request bulkfetch made)",
                              hint="run 'bulkfetch auth' again and use the URL it prints")
    if not query.get("code"):
        raise CredentialError("the OAuth redirect carried no code", hint=CAPACITY_HINT)
    return Authorization(code=query["code"], scope=query.get("scope", ""))


def parse_pasted_url(text: str, expected_state: str) -> Authorization:
    """`--no-browser`: the person pastes the URL the browser was redirected to."""
    query = dict(parse_qsl(urlsplit(text.strip()).query))
    if not query:
        raise CredentialError("that is not the redirected URL (it has no query string)",
                              hint="paste the whole address from the browser's address bar; if the browser "
                                   f"never left Strava, {CAPACITY_HINT}")
    return parse_redirect(query, expected_state)


class RedirectListener:
    """Listens on 127.0.0.1:`port` for the browser's redirect, from before the browser opens."""

    def __init__(self, port: int, expected_state: str) -> None:
        self._port = port
        self._state = expected_state
        self._arrived: asyncio.Future[Mapping[str, str]] | None = None
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> RedirectListener:
        self._arrived = asyncio.get_running_loop().create_future()
        app = web.Application()
        app.router.add_get(REDIRECT_PATH, self._redirected)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, "127.0.0.1", self._port).start()
        except OSError as exc:
            await self._runner.cleanup()
            raise CredentialError(f"cannot listen on 127.0.0.1:{self._port} ({exc.strerror})",
                                  hint="pass another --port (and use it in the redirect)") from None
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def _redirected(self, request: web.Request) -> web.Response:
        if self._arrived and not self._arrived.done():
            self._arrived.set_result(dict(request.query))
        return web.Response(text="bulkfetch is connected to Strava. You can close this tab.\n")

    async def wait(self, timeout_s: float) -> Authorization:
        assert self._arrived is not None
        try:
            query = await asyncio.wait_for(asyncio.shield(self._arrived), timeout_s)
        except TimeoutError:
            raise CredentialError(f"no redirect from Strava within {timeout_s:g} s", hint=CAPACITY_HINT) from None
        return parse_redirect(query, self._state)


async def exchange_code(strava: StravaConfig, post_form: PostForm, authorization: Authorization,
                        clock: Callable[[], float] = time.time) -> Tokens:
    """The authorization_code grant; returns the tokens with the granted scope, the athlete's id and name."""
    status, body = await post_form(strava.token_url, {
        "client_id": strava.client_id, "client_secret": strava.client_secret,
        "code": authorization.code, "grant_type": "authorization_code",
    })
    data = parse_body(body)
    if status != 200 or not isinstance(data, dict) or not isinstance(data.get("refresh_token"), str):
        resource = error_resource(data)
        if resource == "Application":
            raise CredentialError("Strava rejected the client_id or client_secret",
                                  hint="check [strava] client_id and client_secret (strava.com/settings/api)")
        raise CredentialError(f"Strava refused the authorization code (HTTP {status})",
                              hint="codes are single-use and expire quickly: run 'bulkfetch auth' again")
    athlete = data.get("athlete") if isinstance(data.get("athlete"), dict) else {}
    return Tokens(
        refresh_token=data["refresh_token"],
        access_token=str(data.get("access_token") or ""),
        expires_at=float(data.get("expires_at") or clock() + float(data.get("expires_in") or 0)),
        scope=authorization.scope,
        athlete_id=athlete.get("id") if is_strava_id(athlete.get("id")) else None,
        athlete_name=athlete_name(athlete),
    )


def new_state() -> str:
    return secrets.token_urlsafe(24)


async def connect_account(
    strava: StravaConfig,
    post_form: PostForm,
    *,
    port: int,
    no_browser: bool,
    announce: Callable[[str], None],
    read_line: Callable[[], str],
    timeout_s: float = 600,
    open_browser: Callable[[str], bool] | None = None,
) -> Tokens:
    """The whole flow up to the tokens; the caller checks the athlete and stores them."""
    state = new_state()
    # --no-browser serves a coach: the athlete opens the link on their own device, where a browser signed in
    # as the owner must not re-authorize the owner unasked. The browser flow opens this machine's browser
    # for whoever sits at it, so `auto` spares a returning athlete the prompt.
    url = authorize_url(strava, f"http://127.0.0.1:{port}{REDIRECT_PATH}", state, force_prompt=no_browser)
    if no_browser:
        announce(f"Open this URL in any browser and press Authorize:\n{url}")
        announce("The browser then fails to load a http://127.0.0.1 address: paste that address here:")
        try:
            pasted = await asyncio.to_thread(read_line)
        except EOFError:
            raise CredentialError("no redirected URL was pasted (standard input is closed)",
                                  hint="run 'bulkfetch auth --no-browser' in a terminal") from None
        authorization = parse_pasted_url(pasted, state)
    else:
        async with RedirectListener(port, state) as listener:
            announce(f"Open this URL in a browser and press Authorize (waiting for the redirect):\n{url}")
            (open_browser or open_graphical_browser)(url)
            authorization = await listener.wait(timeout_s)
    return await exchange_code(strava, post_form, authorization)


def open_graphical_browser(url: str) -> bool:
    """Open a browser only where a graphical one can exist; a console browser would take the terminal."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        return webbrowser.open(url)
    except webbrowser.Error:
        return False


async def store_authorized_tokens(config: Config, *, port: int, no_browser: bool,
                                  announce: Callable[[str], None], read_line: Callable[[], str]) -> AthleteDir:
    """`bulkfetch auth`: run the flow and store the tokens (0600) as the athlete who authorized: a new
    athlete of the data_dir, or new tokens for one it has."""
    async with aiohttp.ClientSession() as session:
        async def post(url: str, form: Mapping[str, str]) -> tuple[int, bytes]:
            return await post_form(session, config.strava, config.fetch, url, form, rng=random.Random())

        tokens = await connect_account(config.strava, post, port=port, no_browser=no_browser,
                                       announce=announce, read_line=read_line)
    return Roster(config.storage.data_dir).connect(tokens)
