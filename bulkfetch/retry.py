"""Pure retry policy: what a response or failure means, and how long to back off.

The one retry loop that applies this lives in `bulkfetch.client`.
"""

from __future__ import annotations

import enum
import random
from typing import Any


class Verdict(enum.Enum):
    OK = "ok"
    RETRY = "retry"              # transient: back off and try again (5xx, dropped, timeout, bad JSON)
    REFRESH = "refresh"          # 401 invalid token: refresh the access token once, then try again
    MISSING_SCOPE = "scope"      # 401 naming a missing permission: refreshing cannot fix it
    NOT_FOUND = "not_found"      # 404: the activity is gone (or never visible to this token)
    RATE_LIMITED = "rate_limited"  # 429: the window is spent; the scheduler waits, never a blind retry
    APP_INACTIVE = "app_inactive"  # 403 Application Inactive / athlete limit: the app cannot read
    FAIL = "fail"                # anything else: this request failed, others go on


def classify(status: int, body: Any) -> Verdict:
    """Map an HTTP status (and, for 401/403, Strava's Fault body) to what the client should do."""
    if 200 <= status < 300:
        return Verdict.OK
    if status == 401:
        return Verdict.MISSING_SCOPE if missing_permission(body) else Verdict.REFRESH
    if status == 403:
        return Verdict.APP_INACTIVE if _mentions(body, "inactive", "limit of connected athletes") else Verdict.FAIL
    if status == 404:
        return Verdict.NOT_FOUND
    if status == 429:
        return Verdict.RATE_LIMITED
    if status >= 500 or status == 408:
        return Verdict.RETRY
    return Verdict.FAIL


def missing_permission(body: Any) -> str | None:
    """The permission a 401 says is missing, e.g. 'activity:read_permission', else None."""
    for error in _errors(body):
        field = str(error.get("field", ""))
        if error.get("code") == "missing" and field.endswith("_permission"):
            return field
    return None


def backoff_delay(attempt: int, *, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Seconds to wait before retry number `attempt` (1 = the first retry).

    Exponential with equal jitter: d = min(cap_s, base_s * 2**(attempt-1)); the delay is uniform in
    [d/2, d], so concurrent workers that failed together do not retry in lockstep.
    """
    ceiling = min(cap_s, base_s * 2 ** max(0, attempt - 1))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def _errors(body: Any) -> list[dict[str, Any]]:
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        return [e for e in body["errors"] if isinstance(e, dict)]
    return []


def _mentions(body: Any, *needles: str) -> bool:
    texts = [str(body.get("message", ""))] if isinstance(body, dict) else []
    texts += [f"{e.get('code', '')} {e.get('field', '')}" for e in _errors(body)]
    joined = " ".join(texts).lower()
    return any(needle in joined for needle in needles)
