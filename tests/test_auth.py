"""Tokens and the OAuth flow against the simulator: rotation, single-flight refresh, seed rules, `auth`."""

from __future__ import annotations

import asyncio
import os
import random
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import aiohttp
import orjson
import pytest

from bulkfetch.auth import TokenManager, Tokens, TokenStore, digest
from bulkfetch.client import post_form
from bulkfetch.config import FetchConfig, StravaConfig
from bulkfetch.errors import CredentialError
from bulkfetch.oauth import parse_pasted_url, parse_redirect
from bulkfetch.simulator import Simulator, SimulatorSettings
from tests.conftest import cli_env, simulator_config_text


def strava_config(sim: Simulator, refresh_token: str = "") -> StravaConfig:
    return StravaConfig(api_url=sim.api_url, oauth_url=sim.oauth_url, client_id=sim.settings.client_id,
                        client_secret=sim.settings.client_secret, refresh_token=refresh_token)


def manager(sim: Simulator, session: aiohttp.ClientSession, store: TokenStore, seed: str = "") -> TokenManager:
    strava = strava_config(sim, seed)

    async def post(url, form):
        return await post_form(session, strava, FetchConfig(), url, form, rng=random.Random(1))

    return TokenManager(store, strava, post, margin_s=0)


def test_rotation_is_persisted_before_use_and_refresh_is_single_flight(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Simulator(SimulatorSettings(activities=3)) as sim, aiohttp.ClientSession() as session:
            store = TokenStore(tmp_path / "auth" / "tokens.json")
            tokens = manager(sim, session, store, seed=sim.current_refresh_token)
            first = await tokens.access_token()
            saved = store.load()
            assert saved is not None and saved.access_token == first
            assert saved.refresh_token == sim.current_refresh_token  # the rotated one, on disk
            assert saved.seed_digest == digest(sim.settings.refresh_token)
            assert oct(os.stat(store.path).st_mode & 0o777) == "0o600"
            assert oct(os.stat(store.path.parent).st_mode & 0o777) == "0o700"
            token_posts = lambda: sum(1 for r in sim.request_log if r.path == "/oauth/token")  # noqa: E731
            before = token_posts()
            results = await asyncio.gather(*(tokens.refresh(rejected=first) for _ in range(8)))
            assert len(set(results)) == 1 and results[0] != first
            assert token_posts() == before + 1  # eight callers, one refresh
            assert store.load().refresh_token == sim.current_refresh_token

    asyncio.run(scenario())


def test_stored_token_wins_and_a_rejected_one_falls_back_to_a_different_seed(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Simulator(SimulatorSettings(activities=3)) as sim, aiohttp.ClientSession() as session:
            store = TokenStore(tmp_path / "tokens.json")
            seed = sim.current_refresh_token
            store.save(Tokens(refresh_token="stale-and-rejected"))
            tokens = manager(sim, session, store, seed=seed)
            await tokens.access_token()
            assert store.load().refresh_token == sim.current_refresh_token != seed

            # The seed is now rotated away; with a stored chain it is never needed again.
            chain = store.load()
            again = manager(sim, session, store, seed=seed)
            await again.refresh(rejected=chain.access_token)  # as after a 401
            assert store.load().refresh_token == sim.current_refresh_token != chain.refresh_token

            store.save(Tokens(refresh_token="rejected"))
            with pytest.raises(CredentialError, match="run 'bulkfetch auth'"):
                await manager(sim, session, store, seed="").refresh(rejected=None)

    asyncio.run(scenario())


def test_bad_client_secret_is_named(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Simulator(SimulatorSettings(activities=3)) as sim, aiohttp.ClientSession() as session:
            strava = StravaConfig(api_url=sim.api_url, oauth_url=sim.oauth_url, client_id=sim.settings.client_id,
                                  client_secret="wrong", refresh_token=sim.current_refresh_token)

            async def post(url, form):
                return await post_form(session, strava, FetchConfig(), url, form, rng=random.Random(1))

            with pytest.raises(CredentialError, match="client_id or client_secret"):
                await TokenManager(TokenStore(tmp_path / "t.json"), strava, post).refresh(rejected=None)

    asyncio.run(scenario())


def test_redirect_state_is_checked() -> None:
    assert parse_redirect({"code": "c", "state": "s", "scope": "read"}, "s").code == "c"
    with pytest.raises(CredentialError, match="different state"):
        parse_redirect({"code": "c", "state": "evil"}, "s")
    with pytest.raises(CredentialError, match="did not authorize"):
        parse_redirect({"error": "access_denied", "state": "s"}, "s")
    assert parse_pasted_url("http://127.0.0.1:8765/exchange_token?state=s&code=k&scope=read", "s").scope == "read"


def _auth_process(config: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bulkfetch", "--config", str(config), "auth", *extra],
                            env=cli_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _read_url(process: subprocess.Popen) -> str:
    for _ in range(10):
        line = process.stdout.readline()
        match = re.search(r"(http://\S+/oauth/authorize\?\S+)", line)
        if match:
            return match.group(1)
    raise AssertionError("auth printed no authorize URL")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("scope", ["read,activity:read_all", "read,activity:read"])
def test_auth_command_end_to_end_with_a_test_playing_the_browser(tmp_path: Path, scope: str) -> None:
    from bulkfetch.simulator import SimulatorThread

    with SimulatorThread(SimulatorSettings(activities=3, scope=scope)) as sim:
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, tmp_path / "data", refresh_token=""))
        process = _auth_process(config, "--port", str(_free_port()))
        try:
            url = _read_url(process)
            assert "scope=read%2Cactivity%3Aread_all" in url and "state=" in url
            with urllib.request.urlopen(url, timeout=10) as response:  # follows the redirect to the listener
                assert b"connected" in response.read()
            out, err = process.communicate(timeout=20)
        finally:
            process.kill()
        assert process.returncode == 0, err
        stored = orjson.loads((tmp_path / "data" / "auth" / "tokens.json").read_bytes())
        assert stored["athlete_id"] == sim.settings.athlete_id
        assert stored["scope"] == scope
        assert ("activity:read_all was not granted" in err) == (scope == "read,activity:read")
        assert stored["refresh_token"] not in out + err and stored["access_token"] not in out + err


def test_auth_no_browser_takes_the_pasted_url(tmp_path: Path) -> None:
    from bulkfetch.simulator import SimulatorThread

    with SimulatorThread(SimulatorSettings(activities=3)) as sim:
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, tmp_path / "data", refresh_token=""))
        process = _auth_process(config, "--no-browser")
        try:
            url = _read_url(process)
            request = urllib.request.Request(url)
            opener = urllib.request.build_opener(_NoRedirect)
            try:
                opener.open(request, timeout=10)
                raise AssertionError("the authorize page did not redirect")
            except urllib.error.HTTPError as redirect:
                location = redirect.headers["Location"]
            out, err = process.communicate(location + "\n", timeout=20)
        finally:
            process.kill()
        assert process.returncode == 0, err
        assert "connected athlete" in out


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
