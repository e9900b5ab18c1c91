"""OAuth state as Strava keeps it for one athlete of the app: one valid refresh token that rotates on every
use, single-use codes, access tokens with an expiry and the scope they were granted, and deauthorization
that invalidates them all. Pure: times are passed in (Unix seconds)."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field


def parse_scope(text: str) -> frozenset[str]:
    return frozenset(parse_scope_list(text))


def format_scope(scope: frozenset[str], order: str = "") -> str:
    """`scope` as Strava echoes it: in the order of the request `order` (a CSV), then any others."""
    first = [part for part in dict.fromkeys(parse_scope_list(order)) if part in scope]
    return ",".join(first + sorted(scope - set(first)))


def parse_scope_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def grant_scope(requested: frozenset[str], allowed: frozenset[str]) -> frozenset[str]:
    """What the athlete grants: the requested scopes the settings allow. activity:read_all implies
    activity:read; asking for read_all where only read is allowed grants read (the user unticked
    "View data about your private activities")."""
    granted = set(requested & allowed)
    if "activity:read" in requested and "activity:read_all" in allowed:
        granted.add("activity:read")
    if "activity:read_all" in requested and "activity:read" in allowed:
        granted.add("activity:read")
    return frozenset(granted)


def can_read_activities(scope: frozenset[str]) -> bool:
    return bool(scope & {"activity:read", "activity:read_all"})


def can_read_private(scope: frozenset[str]) -> bool:
    return "activity:read_all" in scope


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_at: float
    scope: frozenset[str]


class TokenError(Exception):
    """An OAuth request Strava answers 400 Bad Request; `resource`/`field` name what was wrong."""

    def __init__(self, resource: str, field_name: str) -> None:
        super().__init__(f"{resource}.{field_name} invalid")
        self.resource = resource
        self.field_name = field_name


@dataclass
class TokenBook:
    refresh_token: str | None  # None: the athlete has not authorized the app, or revoked it
    refresh_scope: frozenset[str]
    lifetime_s: float
    rng: random.Random
    access: dict[str, AccessToken] = field(default_factory=dict)
    codes: dict[str, frozenset[str]] = field(default_factory=dict)
    issued: int = 0

    def _new(self, kind: str) -> str:
        self.issued += 1
        return f"sim-{kind}-{self.issued}-{self.rng.getrandbits(64):016x}"

    def issue_access(self, now_s: float, scope: frozenset[str]) -> AccessToken:
        token = AccessToken(self._new("access"), expires_at=now_s + self.lifetime_s, scope=scope)
        self.access[token.token] = token
        return token

    def check(self, token: str, now_s: float) -> AccessToken | None:
        """The live access token `token`, or None when unknown or expired."""
        found = self.access.get(token)
        return found if found is not None and found.expires_at > now_s else None

    def issued_access(self, token: str) -> bool:
        """Whether `token` was ever issued here, live or not (to know whose request a 401 answered)."""
        return token in self.access

    def revoke(self) -> None:
        """Deauthorization: every token and code of the athlete stops working at once. Access tokens stay
        known (expired) so that a later request with one is still attributed to its athlete."""
        self.refresh_token = None
        self.codes.clear()
        self.access = {key: dataclasses.replace(token, expires_at=0.0) for key, token in self.access.items()}

    def narrow(self, allowed: frozenset[str]) -> None:
        """The athlete now allows only `allowed` (re-authorized with boxes unticked): the refresh grant and
        every access token keep just that part of their scope."""
        self.refresh_scope = grant_scope(self.refresh_scope, allowed)
        self.access = {key: dataclasses.replace(token, scope=grant_scope(token.scope, allowed))
                       for key, token in self.access.items()}

    def authorize(self, requested: frozenset[str], allowed: frozenset[str]) -> tuple[str, frozenset[str]]:
        """A single-use code for the scope the athlete grants."""
        granted = grant_scope(requested, allowed)
        code = self._new("code")
        self.codes[code] = granted
        return code, granted

    def use_refresh_token(self, token: str, now_s: float) -> dict:
        """The refresh grant: a new access token, and a new refresh token that replaces `token` at once."""
        if self.refresh_token is None or token != self.refresh_token:
            raise TokenError("RefreshToken", "refresh_token")
        return self._token_response(now_s, self.refresh_scope)

    def use_code(self, code: str, now_s: float) -> dict:
        scope = self.codes.pop(code, None)
        if scope is None:
            raise TokenError("AuthorizationCode", "code")
        return self._token_response(now_s, scope)

    def _token_response(self, now_s: float, scope: frozenset[str]) -> dict:
        access = self.issue_access(now_s, scope)
        self.refresh_token = self._new("refresh")
        self.refresh_scope = scope
        return {"token_type": "Bearer", "access_token": access.token, "expires_at": int(access.expires_at),
                "expires_in": int(access.expires_at - now_s), "refresh_token": self.refresh_token}
