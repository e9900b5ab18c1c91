"""The access-token refresher: hands out a valid access token, refreshing it under an asyncio lock.

Apart from `bulkfetch.auth` (the tokens on disk) because the roster reads those in every command, and
asyncio (with ssl, some 25 ms to import) is wanted only by the commands that talk to Strava.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace

from bulkfetch.auth import PostForm, Tokens, TokenStore, digest, error_resource, parse_body
from bulkfetch.config import StravaConfig
from bulkfetch.errors import ApiError, AthleteRevoked, CredentialError


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
