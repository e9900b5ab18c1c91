"""Secrets never leak: not in any byte a command prints, not in any file under data_dir but the token store,
not in a URL, not to another host; the token store is 0600 in a folder only its owner can read."""

from __future__ import annotations

import http.client
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from bulkfetch.simulator import SimulatorSettings, SimulatorThread
from tests.conftest import athlete_store, cli_env, run_cli, simulator_config_text

CLIENT_SECRET = "cs-7f3a9e1b2c4d5e6f-client-secret"
SEED_REFRESH = "rt-seed-0d1e2f3a4b5c6d7e"
# Every token the simulator issues looks like this (see simulator/tokens.py): any piece of one is a leak.
ISSUED = re.compile(rb"sim-(?:refresh|access|code)-\d+-[0-9a-f]{6,}")


def settings(**changes) -> SimulatorSettings:
    return SimulatorSettings(activities=30, seed=21, client_secret=CLIENT_SECRET, refresh_token=SEED_REFRESH,
                             access_token_lifetime_s=0.6, short_limit=1000, daily_limit=10000,
                             latency_s=0.005, **changes)


def known_secrets(sim, extra: set[str]) -> set[str]:
    tokens = set(sim._tokens.access) | {sim.current_refresh_token, CLIENT_SECRET, SEED_REFRESH} | extra
    return {t for t in tokens if t}


def leaks(blob: bytes, secrets: set[str]) -> list[str]:
    found = [s for s in secrets if s.encode() in blob or s[:12].encode() in blob]
    return found + [m.decode() for m in ISSUED.findall(blob)]


def files_under(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def auth_no_browser(config: Path, sim) -> subprocess.CompletedProcess:
    """`bulkfetch auth --no-browser`, playing the person: open the URL it prints, paste the redirect."""
    process = subprocess.Popen([sys.executable, "-m", "bulkfetch", "--config", str(config), "-v", "auth",
                                "--no-browser"], env=cli_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdin is not None
    printed = []
    deadline = time.monotonic() + 30
    url = ""
    while not url and time.monotonic() < deadline:
        line = process.stdout.readline()
        printed.append(line)
        if "/oauth/authorize?" in line:
            url = line.strip()
    assert url, printed
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request("GET", f"{parts.path}?{parts.query}")
    redirect = connection.getresponse().getheader("Location")
    connection.close()
    out, err = process.communicate(redirect + "\n", timeout=30)
    return subprocess.CompletedProcess(process.args, process.returncode, "".join(printed) + out, err)


def test_no_secret_in_output_files_urls_or_other_hosts(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with SimulatorThread(settings()) as sim:
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, data_dir, fetch={"per_page": 10, "refresh_margin_s": 0}))
        chain = [sim.current_refresh_token]
        outputs: list[tuple[str, subprocess.CompletedProcess]] = []

        def run(name: str, *args: str, expect: int = 0, config_path: Path = config) -> None:
            result = run_cli("--config", str(config_path), *args, cwd=tmp_path, timeout=90)
            assert result.returncode == expect, (name, result.stdout, result.stderr)
            outputs.append((name, result))
            chain.append(sim.current_refresh_token)

        run("fetch", "-v", "fetch")
        time.sleep(0.7)  # the access token expires: the next run refreshes and rotates again
        run("fetch again", "-v", "fetch")
        run("status", "status")
        run("status --json", "status", "--json")
        run("plan", "-v", "plan")
        result = auth_no_browser(config, sim)
        assert result.returncode == 0, (result.stdout, result.stderr)
        outputs.append(("auth", result))
        chain.append(sim.current_refresh_token)
        time.sleep(0.7)
        run("fetch after auth", "-v", "fetch")
        assert len(set(chain)) >= 5, "the refresh token should have rotated on every run"

        # A failing refresh: a token of the chain that has been rotated away, in a fresh data_dir.
        stale = tmp_path / "stale.toml"
        stale.write_text(simulator_config_text(sim, tmp_path / "stale-data", refresh_token=chain[1]))
        run("failing refresh", "-v", "fetch", expect=2, config_path=stale)
        assert "run 'bulkfetch auth'" in outputs[-1][1].stderr
        # And a rejected client secret (a different secret, equally unprintable).
        wrong = tmp_path / "wrong.toml"
        wrong.write_text(simulator_config_text(sim, tmp_path / "wrong-data")
                         .replace(CLIENT_SECRET, "cs-wrong-0123456789abcdef"))
        run("wrong client secret", "-v", "fetch", expect=2, config_path=wrong)
        assert "client_secret" in outputs[-1][1].stderr

        secrets = known_secrets(sim, set(chain) | {"cs-wrong-0123456789abcdef"})
        assert len(sim._tokens.access) >= 4

        for name, result in outputs:
            assert not leaks((result.stdout + result.stderr).encode(), secrets), name

        written = files_under(tmp_path / "data") | files_under(tmp_path / "stale-data") | \
            files_under(tmp_path / "wrong-data")
        token_store = athlete_store(data_dir).auth_dir / "tokens.json"
        assert token_store in written and (data_dir / "bulkfetch.log") in written
        assert any(p.suffix == ".parquet" for p in written)
        for path, blob in written.items():
            if path.name == "tokens.json" and path.parent.name == "auth":
                continue
            assert not leaks(blob, secrets), path
        assert sim.current_refresh_token.encode() in written[token_store]  # the chain is unbroken
        assert leaks(written[token_store], secrets)  # the detector does find secrets where they are

        # Modes: the store 0600, its folder not readable by anyone else.
        for store in (token_store,):
            assert stat.S_IMODE(os.stat(store).st_mode) == 0o600
            assert stat.S_IMODE(os.stat(store.parent).st_mode) & 0o077 == 0

        # On the wire: the token only in the Authorization header of API requests, never in a URL,
        # never to the OAuth endpoints; the client secret never in a query string.
        api = [r for r in sim.request_log if r.counted and not r.others]
        oauth = [r for r in sim.request_log if r.path.startswith("/oauth")]
        assert api and oauth
        assert all(r.authorization and r.authorization.startswith("Bearer ") for r in api)
        assert {r.authorization.removeprefix("Bearer ") for r in api} <= set(sim._tokens.access)
        assert all(r.authorization is None for r in oauth)
        for record in sim.request_log:
            query = "&".join(f"{k}={v}" for k, v in record.query.items()).encode()
            assert "access_token" not in record.query and not leaks(query + record.path.encode(), secrets - {
                s for s in secrets if s.startswith("sim-code-")}), record
