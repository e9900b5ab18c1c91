"""Tokens: the on-disk token store and the access-token refresher.

Strava rotates refresh tokens: every refresh may return a new one and invalidates the old one at once.
So the new refresh token is persisted (atomically, mode 0600) *before* the new access token is used,
and refreshes are single-flight under a lock. The stored token wins over the config's seed; the seed is
tried only when nothing is stored, or when the stored token is rejected and the seed differs (the caller
passes a seed only where it can be this athlete's: see `bulkfetch.pipeline`).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from bulkfetch.config import StravaConfig
from bulkfetch.errors import ApiError, AthleteRevoked, CredentialError, WriteError
from bulkfetch.store import atomic_write, ensure_dir

READ_ALL_SCOPE = "activity:read_all"
TOKEN_RESERVE_BYTES = 64 * 1024  # room for many token files (each well under 1 KB)
# (status, body bytes) of a form POST; the client's retry loop stands behind it.
PostForm = Callable[[str, Mapping[str, str]], Awaitable[tuple[int, bytes]]]


@dataclass(frozen=True)
class Tokens:
    refresh_token: str
    access_token: str = ""
    expires_at: float = 0.0
    scope: str | None = None       # known after `bulkfetch auth`; a refresh does not report it
    athlete_id: int | None = None
    seed_digest: str | None = None  # which config seed this chain started from (a digest, never the seed)
    athlete_name: str | None = None  # "first last" as Strava said when connected; None from a config seed

    def __repr__(self) -> str:  # never show a token, not even in a traceback
        return f"Tokens(expires_at={self.expires_at}, scope={self.scope!r}, athlete_id={self.athlete_id})"


def athlete_name(athlete: Mapping[str, Any]) -> str | None:
    """'First Last' of a Strava athlete object (`GET /athlete`, or the one the code grant embeds)."""
    parts = (athlete.get("firstname"), athlete.get("lastname"))
    return " ".join(p.strip() for p in parts if isinstance(p, str) and p.strip()) or None


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


class TokenStore:
    """`<data_dir>/auth/tokens.json`, mode 0600 in a 0700 folder, always replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Tokens | None:
        try:
            data = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (orjson.JSONDecodeError, OSError):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("refresh_token"), str):
            return None
        known = {k: v for k, v in data.items() if k in Tokens.__dataclass_fields__}
        return Tokens(**known)

    def save(self, tokens: Tokens) -> None:
        """Replace the stored tokens. A rotated refresh token exists nowhere else (Strava has already
        dropped the old one), so on a full disk the spare file kept beside the store gives way for it."""
        ensure_dir(self.path.parent, mode=0o700)
        self.path.parent.chmod(0o700)
        data = orjson.dumps(asdict(tokens))
        try:
            atomic_write(self.path, data, mode=0o600)
        except WriteError:
            if not self._reserve.exists():
                raise
            self._reserve.unlink()
            atomic_write(self.path, data, mode=0o600)
        self._keep_reserve()

    @property
    def _reserve(self) -> Path:
        return self.path.with_name(".space-reserve")

    def _keep_reserve(self) -> None:
        """Best effort: a disk that is full now simply gets its reserve back on a later save."""
        if self._reserve.exists():
            return
        try:
            self._reserve.write_bytes(bytes(TOKEN_RESERVE_BYTES))
        except OSError:
            self._reserve.unlink(missing_ok=True)


class TokenManager:
    """Hands out a valid access token; refreshes ahead of expiry and once after a 401."""

    def __init__(
        self,
        store: TokenStore,
        strava: StravaConfig,
        post_form: PostForm,
        *,
        margin_s: float = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._strava = strava
        self._post_form = post_form
        self._margin_s = margin_s
        self._clock = clock
        self._lock = asyncio.Lock()
        self._tokens = store.load()

    @property
    def tokens(self) -> Tokens | None:
        return self._tokens

    async def access_token(self) -> str:
        tokens = self._tokens
        if tokens and tokens.access_token and tokens.expires_at - self._margin_s > self._clock():
            return tokens.access_token
        return await self.refresh(rejected=tokens.access_token if tokens else None)

    async def refresh(self, rejected: str | None) -> str:
        """Refresh unless another task already replaced the `rejected` access token (single flight)."""
        async with self._lock:
            stored = self._store.load()
            if stored is not None and (self._tokens is None or stored.refresh_token != self._tokens.refresh_token):
                self._tokens = stored  # rotated or reconnected by another process (`auth` beside a fetch)
            tokens = self._tokens
            if (tokens and tokens.access_token and tokens.access_token != rejected
                    and tokens.expires_at - self._margin_s > self._clock()):
                return tokens.access_token
            for candidate in self._candidates():
                # Shielded: once the POST is out Strava rotates the token; a cancellation must not drop
                # the answer that holds the new one before it is saved.
                refreshed = await asyncio.shield(self._exchange(candidate))
                if refreshed is not None:
                    self._tokens = refreshed
                    return refreshed.access_token
            raise AthleteRevoked("Strava rejected the refresh token",
                                  hint="run 'bulkfetch auth' to connect the account again")

    def record_athlete(self, athlete_id: int) -> None:
        if self._tokens and self._tokens.athlete_id != athlete_id:
            self._tokens = replace(self._tokens, athlete_id=athlete_id)
            self._store.save(self._tokens)

    def _candidates(self) -> list[Tokens]:
        """The stored chain first; then the config seed, if it is a different token."""
        seed = self._strava.refresh_token
        stored = self._tokens
        candidates = [stored] if stored else []
        if seed and (stored is None or stored.refresh_token != seed):
            candidates.append(Tokens(refresh_token=seed, seed_digest=digest(seed)))
        return candidates

    async def _exchange(self, tokens: Tokens) -> Tokens | None:
        """One refresh_token grant; the rotated token is on disk before this returns. None: rejected."""
        status, body = await self._post_form(self._strava.token_url, {
            "client_id": self._strava.client_id,
            "client_secret": self._strava.client_secret,
            "grant_type": "refresh_token",
            "refresh_token": tokens.refresh_token,
        })
        data = parse_body(body)
        if status == 200 and isinstance(data, dict) and isinstance(data.get("access_token"), str):
            new = replace(
                tokens,
                refresh_token=str(data.get("refresh_token") or tokens.refresh_token),
                access_token=data["access_token"],
                expires_at=float(data.get("expires_at") or self._clock() + float(data.get("expires_in") or 0)),
            )
            self._store.save(new)
            return new
        if status == 400 and error_resource(data) == "Application":
            raise CredentialError("Strava rejected the client_id or client_secret",
                                  hint="check [strava] client_id and client_secret (strava.com/settings/api)")
        if status in (400, 401):
            return None
        raise ApiError(f"token refresh failed: HTTP {status} from {self._strava.token_url}",
                       hint="rerun later; if it persists, run 'bulkfetch auth'")


def parse_body(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def error_resource(data: Any) -> str | None:
    if isinstance(data, dict) and isinstance(data.get("errors"), list) and data["errors"]:
        first = data["errors"][0]
        return first.get("resource") if isinstance(first, dict) else None
    return None


def scope_lacks_activities(tokens: Tokens | None) -> bool:
    """True when the granted scope is known and lacks every activity permission: nothing can be fetched."""
    return bool(tokens and tokens.scope is not None
                and not {"activity:read", READ_ALL_SCOPE} & set(tokens.scope.split(",")))


def scope_lacks_read_all(tokens: Tokens | None) -> bool:
    """True when the granted scope is known and lacks activity:read_all (private activities missing)."""
    return bool(tokens and tokens.scope is not None and READ_ALL_SCOPE not in tokens.scope.split(","))
