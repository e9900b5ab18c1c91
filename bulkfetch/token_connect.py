"""`bulkfetch auth --refresh-token -`: connect an athlete from a refresh token another tool obtained.

Strava rotates a refresh token when it is used, so the one refresh this makes is the last use of the
other tool's copy. The rotated token is on disk (0600) before anything else happens, in a pending store
beside the data_dir's own: only once one `GET /athlete` has said whose it is does it replace the tokens
of the athlete the data_dir holds (a token of another athlete must not overwrite them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from bulkfetch.auth import Tokens, TokenStore
from bulkfetch.client import StravaClient, open_session
from bulkfetch.config import Config
from bulkfetch.errors import ApiError, ConfigError
from bulkfetch.oauth import bind_athlete
from bulkfetch.pipeline import app_ledger, token_store
from bulkfetch.scheduler import QuotaScheduler, WaitInfo
from bulkfetch.store import RawStore

FROM_STDIN = "-"
FROM_ENV = "env"
ENV_NAME = "STRAVA_REFRESH_TOKEN"
ROTATION_WARNING = ("the refresh rotates this token: the other tool's copy stops working "
                    "(it must connect again or be given the new token)")


@dataclass(frozen=True)
class ConnectedAthlete:
    athlete_id: int
    name: str


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


def athlete_name(athlete: dict[str, Any]) -> str:
    parts = (athlete.get("firstname"), athlete.get("lastname"))
    return " ".join(p.strip() for p in parts if isinstance(p, str) and p.strip()) or "no name"


async def connect_refresh_token(config: Config, refresh_token: str, *, warn: Callable[[str], None],
                                on_wait: Callable[[WaitInfo | None], None]) -> ConnectedAthlete:
    """Refresh once (persisting the rotation), ask `GET /athlete` who it is, bind the data_dir to it."""
    store = RawStore(config.storage.data_dir)
    store.prepare()
    pending = TokenStore(store.auth_dir / "tokens.pending.json")
    pending.save(Tokens(refresh_token=refresh_token))
    # No seed to fall back on: a rejected token must not connect the config's athlete instead.
    strava = replace(config.strava, refresh_token="")
    with app_ledger(config, store, None, warn) as ledger:
        scheduler = QuotaScheduler(ledger, max_rate_per_s=config.fetch.max_rate_per_s, on_wait=on_wait)
        async with open_session(1) as session:
            client = StravaClient(session, strava, config.fetch, scheduler, pending)
            await client.tokens.refresh(rejected=None)
            response = await client.get("/athlete")
    athlete = response.data if isinstance(response.data, dict) else {}
    athlete_id = athlete.get("id")
    if not isinstance(athlete_id, int):
        raise ApiError(f"GET /athlete answered no athlete id (HTTP {response.status})",
                       hint=f"rerun later; the rotated token is kept in {pending.path}")
    bind_athlete(store, athlete_id,
                 hint=f"use another [storage] data_dir for another athlete (the rotated token is kept in "
                      f"{pending.path}: pipe its refresh_token into 'auth --refresh-token -' there)")
    tokens = pending.load()
    assert tokens is not None  # saved by the refresh above
    token_store(config).save(replace(tokens, athlete_id=athlete_id, seed_digest=None))
    pending.path.unlink()
    return ConnectedAthlete(athlete_id, athlete_name(athlete))

