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

from bulkfetch.auth import Tokens, TokenStore, digest
from bulkfetch.client import post_form
from bulkfetch.config import FetchConfig, StravaConfig
from bulkfetch.errors import CredentialError
from bulkfetch.oauth import parse_pasted_url, parse_redirect
from bulkfetch.simulator import Simulator, SimulatorSettings
from bulkfetch.token_refresh import TokenManager
from tests.conftest import athlete_store, cli_env, simulator_config_text


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


@pytest.mark.parametrize("scope", ["read,activity:read_all", "read,activity:read", "read"])
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
        stored = orjson.loads((athlete_store(tmp_path / "data").auth_dir / "tokens.json").read_bytes())
        assert stored["athlete_id"] == sim.settings.athlete_id
        assert stored["scope"] == scope
        assert ("activity:read_all was not granted" in err) == (scope == "read,activity:read")
        assert ("no activity permission was granted" in err) == (scope == "read")  # nothing can be fetched
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


def _authorize_without_following(url: str) -> tuple[int, str | None]:
    """Play the athlete's browser on the authorize page: (status, the redirect's Location or None)."""
    try:
        urllib.request.build_opener(_NoRedirect).open(url, timeout=10)
    except urllib.error.HTTPError as answer:
        return answer.code, answer.headers.get("Location")
    raise AssertionError("the authorize page neither redirected nor refused")


def _auth_no_browser_as(sim, config: Path, athlete_id: int) -> tuple[subprocess.Popen, str, str | None]:
    """`auth --no-browser`, with the link opened by `athlete_id` in a browser still signed in as the owner."""
    process = _auth_process(config, "--no-browser")
    url = _read_url(process)
    status, location = _authorize_without_following(f"{url}&sim_athlete_id={athlete_id}")
    return process, url, location


def test_no_browser_forces_the_prompt_so_the_coach_connects_the_athlete_not_the_owner(tmp_path: Path) -> None:
    from bulkfetch.simulator import SimulatorThread

    with SimulatorThread(SimulatorSettings(activities=3, athletes=2)) as sim:
        owner, athlete = (a.athlete_id for a in sim.athletes)
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, tmp_path / "data", refresh_token=""))
        process, url, location = _auth_no_browser_as(sim, config, athlete)
        try:
            assert "approval_prompt=force" in url and location is not None
            out, err = process.communicate(location + "\n", timeout=20)
        finally:
            process.kill()
        assert process.returncode == 0, err
        assert [r.query.get("approval_prompt") for r in sim.request_log if r.path == "/oauth/authorize"] == ["force"]
        stored = orjson.loads((athlete_store(tmp_path / "data").auth_dir / "tokens.json").read_bytes())
        assert stored["athlete_id"] == athlete != owner and f"connected athlete {athlete}" in out


def test_beyond_the_athlete_capacity_the_pasted_address_has_no_code_and_the_error_says_why(tmp_path: Path) -> None:
    from bulkfetch.simulator import SimulatorThread

    with SimulatorThread(SimulatorSettings(activities=3, athletes=2, athlete_capacity=1)) as sim:
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, tmp_path / "data", refresh_token=""))
        process, url, location = _auth_no_browser_as(sim, config, sim.athletes[1].athlete_id)
        try:
            assert location is None  # Strava's error page, no redirect: the athlete sends the address they see
            out, err = process.communicate(url + "\n", timeout=20)
        finally:
            process.kill()
        assert process.returncode == 2
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert "Limit of connected athletes exceeded" in err and "strava.com/settings/api" in err
        assert not (athlete_store(tmp_path / "data").auth_dir / "tokens.json").exists()


def test_the_browser_flow_times_out_with_the_capacity_explanation(tmp_path: Path) -> None:
    from bulkfetch.oauth import connect_account
    from bulkfetch.simulator import SimulatorThread

    with SimulatorThread(SimulatorSettings(activities=3, athletes=2, athlete_capacity=1)) as sim:
        sim.sign_in(sim.athletes[1].athlete_id)  # this machine's browser: an athlete new to the app
        opened: list[int] = []

        def browser(url: str) -> bool:  # the newcomer approves; Strava answers with its error page
            assert "approval_prompt=auto" in url
            opened.append(_authorize_without_following(url)[0])
            return True

        async def scenario() -> None:
            async with aiohttp.ClientSession() as session:
                async def post(url, form):
                    return await post_form(session, strava_config(sim), FetchConfig(), url, form,
                                           rng=random.Random(1))

                with pytest.raises(CredentialError, match="within 0.3 s.*Limit of connected athletes exceeded"):
                    await connect_account(strava_config(sim), post, port=_free_port(), no_browser=False,
                                          announce=lambda line: None, read_line=input, timeout_s=0.3,
                                          open_browser=browser)

        asyncio.run(scenario())
        assert opened == [403]


def _auth_refresh_token(config: Path, source: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bulkfetch", "--config", str(config), "auth", "--refresh-token",
                           source], env=cli_env(**env), input=stdin, capture_output=True, text=True, timeout=60)


def test_refresh_token_from_stdin_connects_that_athlete_once_and_never_shows_the_token(tmp_path: Path) -> None:
    from bulkfetch.simulator import SimulatorThread
    from bulkfetch.simulator.history import athlete_of
    from tests.conftest import run_cli

    with SimulatorThread(SimulatorSettings(activities=3, athletes=2)) as sim:
        other = sim.athletes[1]
        given = sim.refresh_token_of(other.athlete_id)
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, tmp_path / "data", refresh_token=""))
        result = _auth_refresh_token(config, "-", given + "\n")
        assert result.returncode == 0, result.stderr
        profile = athlete_of(other.athlete_id, other.index)
        assert result.stdout == f"connected athlete {other.athlete_id} ({profile['firstname']} {profile['lastname']})\n"
        assert "rotates" in result.stderr and len(result.stderr.strip().splitlines()) == 1
        stored_path = tmp_path / "data" / "athletes" / str(other.athlete_id) / "auth" / "tokens.json"
        stored = orjson.loads(stored_path.read_bytes())
        assert stored["athlete_id"] == other.athlete_id and oct(os.stat(stored_path).st_mode & 0o777) == "0o600"
        assert stored["refresh_token"] == sim.refresh_token_of(other.athlete_id) != given  # rotated, kept
        assert not list((tmp_path / "data" / "athletes").glob(".pending*"))
        sent = [(r.method, r.path) for r in sim.request_log]
        assert sent == [("POST", "/oauth/token"), ("GET", "/api/v3/athlete")]
        for secret in (given, stored["refresh_token"], stored["access_token"]):
            assert secret not in result.stdout + result.stderr

        fetched = run_cli("--config", str(config), "fetch", "--no-compact", cwd=tmp_path)
        assert fetched.returncode == 0, fetched.stderr  # the stored chain serves the fetch: that athlete's list
        listed = {r.athlete_id for r in sim.request_log if r.path == "/api/v3/athlete/activities"}
        assert listed == {other.athlete_id}


def test_a_refresh_token_of_another_athlete_adds_that_athlete_and_leaves_the_first_alone(tmp_path: Path) -> None:
    from bulkfetch.simulator import SimulatorThread
    from tests.conftest import run_cli

    with SimulatorThread(SimulatorSettings(activities=3, athletes=2)) as sim:
        first, second = sim.athletes
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, tmp_path / "data", refresh_token=""))
        assert _auth_refresh_token(config, "env", STRAVA_REFRESH_TOKEN=sim.refresh_token_of(first.athlete_id)) \
            .returncode == 0
        athletes = tmp_path / "data" / "athletes"
        held = (athletes / str(first.athlete_id) / "auth" / "tokens.json").read_bytes()
        result = _auth_refresh_token(config, "-", sim.refresh_token_of(second.athlete_id))
        assert result.returncode == 0, result.stderr
        assert f"connected athlete {second.athlete_id}" in result.stdout
        assert (athletes / str(first.athlete_id) / "auth" / "tokens.json").read_bytes() == held
        assert orjson.loads((athletes / str(second.athlete_id) / "auth" / "tokens.json").read_bytes())[
            "refresh_token"] == sim.refresh_token_of(second.athlete_id)

        rejected = _auth_refresh_token(config, "-", "rt-not-a-token\n")
        assert rejected.returncode == 2 and "rejected the refresh token" in rejected.stderr
        assert (athletes / str(first.athlete_id) / "auth" / "tokens.json").read_bytes() == held
        assert sorted(p.name for p in athletes.iterdir() if not p.name.startswith(".")) == \
            sorted([str(first.athlete_id), str(second.athlete_id)])

        fetched = run_cli("--config", str(config), "fetch", "--no-compact", cwd=tmp_path)
        assert fetched.returncode == 0, fetched.stderr  # one run serves both
        listed = {r.athlete_id for r in sim.request_log if r.path == "/api/v3/athlete/activities"}
        assert listed == {first.athlete_id, second.athlete_id}


@pytest.mark.parametrize(("source", "stdin", "wanted"), [
    ("rt-0123456789abcdef", "", "pipe it"),
    ("-", "\n", "no refresh token in standard input"),
    ("env", "", "no refresh token in $STRAVA_REFRESH_TOKEN"),
])
def test_refresh_token_refuses_argv_and_empty_input_in_one_line(tmp_path: Path, source: str, stdin: str,
                                                                 wanted: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[strava]\nclient_id = "1"\nclient_secret = "s"\n[storage]\ndata_dir = "d"\n')
    result = _auth_refresh_token(config, source, stdin)
    assert result.returncode == 2 and wanted in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "rt-0123" not in result.stderr + result.stdout
    assert not (tmp_path / "d").exists()


def test_the_config_seed_is_bound_to_the_athlete_it_turns_out_to_be(tmp_path: Path) -> None:
    from bulkfetch.simulator import SimulatorThread
    from tests.conftest import run_cli

    with SimulatorThread(SimulatorSettings(activities=3, athletes=2)) as sim:
        second = sim.athletes[1].athlete_id
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, tmp_path / "data", refresh_token=sim.refresh_token_of(second)))
        result = run_cli("--config", str(config), "fetch", "--no-compact", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        store = athlete_store(tmp_path / "data")
        assert store.data_dir.name == str(second)  # the athlete's own folder
        assert orjson.loads((store.auth_dir / "tokens.json").read_bytes())["athlete_id"] == second
        assert orjson.loads((store.state_dir / "athlete.json").read_bytes()) == {"athlete_id": second}
