"""Tokens: the on-disk token store (the refresher that rotates them is `bulkfetch.token_refresh`).

Strava rotates refresh tokens: every refresh may return a new one and invalidates the old one at once.
So the new refresh token is persisted (atomically, mode 0600) *before* the new access token is used,
and refreshes are single-flight under a lock. The stored token wins over the config's seed; the seed is
tried only when nothing is stored, or when the stored token is rejected and the seed differs (the caller
passes a seed only where it can be this athlete's: see `bulkfetch.pipeline`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from bulkfetch.errors import WriteError
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
