"""Ways to run the simulator: on its own loop in a thread (synchronous tests, CLI subprocess tests) and
in the foreground for `bulkfetch simulate`."""

from __future__ import annotations

import asyncio
import shlex
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from bulkfetch.simulator.app import SIGN_IN_PARAM, Simulator
from bulkfetch.simulator.export import ExportRequest, write_export
from bulkfetch.simulator.history import athlete_of
from bulkfetch.simulator.settings import SimulatorSettings

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


class SimulatorThread:
    """`with SimulatorThread(settings) as sim:` a running Simulator served from a daemon thread."""

    def __init__(self, settings: SimulatorSettings | None = None) -> None:
        self.simulator = Simulator(settings)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="strava-simulator", daemon=True)
        self._started: Future[None] = Future()
        self._stop: asyncio.Event | None = None

    def __enter__(self) -> Simulator:
        self._thread.start()
        self._started.result(timeout=START_TIMEOUT_S)  # re-raises a failed start here
        return self.simulator

    def __exit__(self, *exc_info: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=STOP_TIMEOUT_S)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(*args)` (a plain function or a coroutine function) on the simulator's loop and return its
        result, so mutations never race a request being served."""

        async def invoke() -> Any:
            result = fn(*args)
            return await result if asyncio.iscoroutine(result) else result

        return asyncio.run_coroutine_threadsafe(invoke(), self._loop).result(timeout=STOP_TIMEOUT_S)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self.simulator.start()
        except BaseException as error:
            self._started.set_exception(error)
            return
        self._started.set_result(None)
        try:
            await self._stop.wait()
        finally:
            await self.simulator.stop()


def config_toml(simulator: Simulator, data_dir: str = "data") -> str:
    """A complete config.toml for this simulator: its URLs, fake credentials, limits and windows."""
    settings = simulator.settings
    return "\n".join([
        strava_section(simulator),
        "",
        "[limits]",
        f"short_requests = {settings.short_limit}",
        f"daily_requests = {settings.daily_limit}",
        f"short_window_s = {seconds_text(settings.short_window_s)}",
        f"daily_window_s = {seconds_text(settings.daily_window_s)}",
        "",
        "[storage]",
        f'data_dir = "{data_dir}"',
        "",
    ])


def seconds_text(seconds: float) -> str:
    """A window length exactly as TOML reads it back: '900', or '1.25' (repr round-trips every float)."""
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))


def strava_section(simulator: Simulator) -> str:
    """The [strava] section; the simulator's credentials are fakes, so printing them is harmless. With
    several athletes it has no refresh_token: a seed would connect the first athlete behind the user's
    back, and its printed `auth` line would then fail on a token already rotated (see `connect_lines`)."""
    settings = simulator.settings
    seed = [f'refresh_token = "{simulator.current_refresh_token}"'] if len(simulator.athletes) == 1 else []
    return "\n".join([
        "[strava]",
        f'api_url = "{simulator.api_url}"',
        f'oauth_url = "{simulator.oauth_url}"',
        f'client_id = "{settings.client_id}"',
        f'client_secret = "{settings.client_secret}"',
        *seed,
    ])


def connect_lines(simulator: Simulator, config: Path | None) -> list[str]:
    """With several athletes: the command that connects each one (the config connects nobody), then the
    fetch. The refresh token goes in on stdin, as a real one must (never in argv, which `ps` shows);
    printf is a shell builtin, so not even it puts the token in a process's arguments."""
    if len(simulator.athletes) == 1:
        return []
    command = "bulkfetch" + (f" --config {shlex.quote(str(config))}" if config is not None else "")
    capacity = simulator.settings.athlete_capacity
    lines = [f"{len(simulator.athletes)} athletes share the app's quota"
             + (f"; it accepts {capacity} connected" if capacity is not None else "")
             + ". The config connects none of them; connect each with its line (the simulator's refresh tokens"
             " are made up, not secrets):"]
    for athlete in simulator.athletes:
        about = athlete_of(athlete.athlete_id, athlete.index)
        token = simulator.refresh_token_of(athlete.athlete_id)
        how = (f"printf '%s\\n' {shlex.quote(token)} | {command} auth --refresh-token -" if token
               else f"not connected yet: {command} auth --no-browser, then open its link with "
                    f"&{SIGN_IN_PARAM}={athlete.athlete_id} added")
        lines.append(f"  {athlete.athlete_id} {about['firstname']} {about['lastname']} "
                     f"({len(athlete.history.activities)} activities): {how}")
    lines.append(f"Or in the browser: {command} auth --no-browser, then open its link with &{SIGN_IN_PARAM}=<id> "
                 "added (the simulated browser is signed in as the first athlete).")
    lines.append(f"Then fetch them all in one run: {command} fetch")
    return lines


async def serve_forever(settings: SimulatorSettings, *, host: str, port: int, write_config: Path | None,
                        announce: Callable[[str], None], export: ExportRequest | None = None) -> None:
    """Serve until cancelled (Ctrl-C), after announcing how to point bulkfetch and curl at it. With `export`,
    first write the first athlete's account export: the history it then serves."""
    simulator = Simulator(settings)
    await simulator.start(host, port)  # a port in use fails before the export's minutes of work
    try:
        if export is not None:
            # On the loop, blocking it: nothing is served before the announcement anyway, and Ctrl-C then
            # stops the export where it is (its partial file removed).
            summary = write_export(export.path, simulator.history, language=export.language, workers=export.workers)
            announce(summary.line())
        if write_config is not None:
            write_config.write_text(config_toml(simulator), encoding="utf-8")
        access_token = simulator.issue_access_token()
        athletes = f"{settings.athletes} athletes, " if settings.athletes > 1 else ""
        settings_line = (f"{athletes}{settings.activities} activities, seed {settings.seed}, read limits "
                         f"{settings.short_limit}/{seconds_text(settings.short_window_s)}s and {settings.daily_limit}/"
                         f"{seconds_text(settings.daily_window_s)}s, overall limits {settings.overall_short_limit} "
                         f"and {settings.overall_daily_limit}")
        lines = [
            f"Strava simulator listening on {simulator.base_url} ({settings_line})",
            "",
            "Paste into config.toml:",
            strava_section(simulator),
            "",
            *([f"wrote {write_config}"] if write_config is not None else []),
            *connect_lines(simulator, write_config),
            f"access token: {access_token}",
            f'curl -H "Authorization: Bearer {access_token}" "{simulator.api_url}/athlete/activities?per_page=5"',
            "Ctrl-C stops it.",
        ]
        announce("\n".join(lines))
        await asyncio.Event().wait()
    finally:
        await simulator.stop()
