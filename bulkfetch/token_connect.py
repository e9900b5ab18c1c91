"""`bulkfetch auth --refresh-token -`: connect an athlete from a refresh token another tool obtained.

Strava rotates a refresh token when it is used, so the one refresh this makes is the last use of the
other tool's copy. The rotated token is on disk (0600) before anything else happens, in a pending folder
beside the athletes' (`athletes/.pending-<digest of the given token>/`): only once one `GET /athlete` has
said whose it is does it become that athlete's tokens (a new athlete's, or newer ones of a connected one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from bulkfetch.auth import Tokens, athlete_name, digest
from bulkfetch.client import StravaClient, open_session
from bulkfetch.config import Config
from bulkfetch.errors import ApiError, ConfigError
from bulkfetch.ids import is_strava_id
from bulkfetch.pipeline import app_ledger
from bulkfetch.roster import AthleteDir, Roster
from bulkfetch.scheduler import QuotaScheduler, WaitInfo

PENDING = ".pending"  # under athletes/, + "-<digest>": a connected token whose athlete is not known yet
FROM_STDIN = "-"
FROM_ENV = "env"
ENV_NAME = "STRAVA_REFRESH_TOKEN"
ROTATION_WARNING = ("the refresh rotates this token: the other tool's copy stops working "
                    "(it must connect again or be given the new token)")


@dataclass(frozen=True)
class ConnectedAthlete:
    athlete_id: int
    name: str | None


def token_source(argument: str) -> str:
    """Where `--refresh-token` reads the token: FROM_STDIN or FROM_ENV. Anything else is refused without
    being echoed: a token in argv is readable by every user of the machine (`ps`)."""
    if argument in (FROM_STDIN, FROM_ENV):
        return argument
    raise ConfigError("never put a refresh token on the command line (every user of the machine sees it in 'ps')",
                      hint=f"pipe it: '... | bulkfetch auth --refresh-token -', or set {ENV_NAME} "
                           "and pass '--refresh-token env'")


def clean_token(text: str, source: str) -> str:
    token = text.strip()
    if not token or any(c.isspace() for c in token):
        where = f"${ENV_NAME}" if source == FROM_ENV else "standard input"
        raise ConfigError(f"no refresh token in {where} (expected one token on one line)",
                          hint="pipe exactly the refresh token, e.g. from a password manager")
    return token


async def connect_refresh_token(config: Config, refresh_token: str, *, warn: Callable[[str], None],
                                on_wait: Callable[[WaitInfo | None], None]) -> ConnectedAthlete:
    """Refresh once (persisting the rotation), ask `GET /athlete` who it is, make it that athlete's tokens."""
    roster = Roster(config.storage.data_dir)
    # One pending folder per given token: after the refresh it holds the only live copy, so a second
    # `auth` (another token) never overwrites it, and the same command run again after a stop (Ctrl-C
    # while waiting for quota) goes on with the rotated token instead of the dead one it was given.
    pending = AthleteDir(roster.folder / f"{PENDING}-{digest(refresh_token)}", None)
    if pending.tokens.load() is None:
        pending.tokens.save(Tokens(refresh_token=refresh_token))
    # No seed to fall back on: a rejected token must not connect the config's athlete instead.
    strava = replace(config.strava, refresh_token="")
    with app_ledger(config, [], None, warn) as ledger:
        scheduler = QuotaScheduler(ledger, max_rate_per_s=config.fetch.max_rate_per_s, on_wait=on_wait)
        async with open_session(1) as session:
            client = StravaClient(session, strava, config.fetch, scheduler, pending.tokens)
            await client.tokens.refresh(rejected=None)
            response = await client.get("/athlete")
    athlete = response.data if isinstance(response.data, dict) else {}
    athlete_id = athlete.get("id")
    if not is_strava_id(athlete_id):
        raise ApiError(f"GET /athlete answered no athlete id (HTTP {response.status})",
                       hint=f"rerun later; the rotated token is kept in {pending.tokens.path}")
    tokens = pending.tokens.load()
    assert tokens is not None  # saved by the refresh above
    name = athlete_name(athlete)
    pending.tokens.save(replace(tokens, athlete_id=athlete_id, seed_digest=None, athlete_name=name))
    roster.bind(pending, athlete_id)
    return ConnectedAthlete(athlete_id, name)
