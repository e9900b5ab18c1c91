"""Strava's request counting, as pure code: clock-aligned windows, two buckets, rejected requests still count.

Rules (Strava's https://developers.strava.com/docs/rate-limits/): a window of length L seconds has index
floor(t / L) for a Unix time t, so 15-minute windows start at :00/:15/:30/:45 and daily ones at midnight
UTC. Every API request adds 1 to the short and the daily counter of both the overall and the read bucket
at its arrival, *before* it is judged; if any counter then exceeds its limit the request is answered 429,
but the count stays (usage can read 101/100).
Times are Unix seconds; nothing here reads the clock.

The window math is written again here, apart from `bulkfetch.quota`, on purpose: the simulator is the
reference the client's ledger is tested against, so it must not share the client's code (or its bugs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# With limits switched off the headers still go out, with limits no client will ever reach.
UNLIMITED = 10**9


def window_index(time_s: float, length_s: float) -> int:
    """The index of the window of `length_s` seconds that holds Unix time `time_s`: floor(time_s / length_s)."""
    return math.floor(time_s / length_s)


def window_start_s(time_s: float, length_s: float) -> float:
    """Unix time at which the window holding `time_s` began."""
    return window_index(time_s, length_s) * length_s


def window_end_s(time_s: float, length_s: float) -> float:
    """Unix time at which the window holding `time_s` ends (the next one begins)."""
    return (window_index(time_s, length_s) + 1) * length_s


@dataclass(frozen=True)
class Limits:
    """Short-window and daily-window limits of one bucket, in requests."""

    short: int
    daily: int

    def header(self) -> str:
        return f"{self.short},{self.daily}"


@dataclass(frozen=True)
class Usage:
    """Requests counted in the current short and daily windows of one bucket."""

    short: int = 0
    daily: int = 0

    def plus(self, requests: int) -> Usage:
        return Usage(self.short + requests, self.daily + requests)

    def exceeds(self, limits: Limits) -> bool:
        return self.short > limits.short or self.daily > limits.daily

    def header(self) -> str:
        return f"{self.short},{self.daily}"


@dataclass(frozen=True)
class Windows:
    """The short and daily window indexes that a usage belongs to."""

    short: int
    daily: int

    @staticmethod
    def at(time_s: float, short_window_s: float, daily_window_s: float) -> Windows:
        return Windows(window_index(time_s, short_window_s), window_index(time_s, daily_window_s))


def carry_over(usage: Usage, was: Windows | None, now: Windows) -> Usage:
    """Usage as seen in windows `now` when it was counted in windows `was`: a counter whose window has
    passed starts again from 0; the other keeps its count."""
    if was is None:
        return Usage()
    return Usage(short=usage.short if was.short == now.short else 0,
                 daily=usage.daily if was.daily == now.daily else 0)


@dataclass(frozen=True)
class Verdict:
    """The outcome of counting one request: usage after counting it and which limit, if any, it broke."""

    read: Usage
    overall: Usage
    exceeded: str | None  # the Fault's `field`: "read rate limit" / "overall rate limit", or None


@dataclass
class RateCounter:
    """The server's counters. Mutable, but every method takes the time and the limits as arguments."""

    read: Usage = Usage()
    overall: Usage = Usage()
    windows: Windows | None = None

    def roll(self, now: Windows) -> bool:
        """Move to windows `now`; True when this starts a short window not seen before."""
        new_short = self.windows is None or self.windows.short != now.short
        self.read = carry_over(self.read, self.windows, now)
        self.overall = carry_over(self.overall, self.windows, now)
        self.windows = now
        return new_short

    def add(self, requests: int) -> None:
        """Requests counted in both buckets without being judged (another process's traffic)."""
        self.read = self.read.plus(requests)
        self.overall = self.overall.plus(requests)

    def count(self, read_limits: Limits, overall_limits: Limits) -> Verdict:
        """Count one arriving read request in the current windows, then judge it against the limits."""
        self.add(1)
        exceeded = None
        if self.read.exceeds(read_limits):
            exceeded = "read rate limit"
        elif self.overall.exceeds(overall_limits):
            exceeded = "overall rate limit"
        return Verdict(read=self.read, overall=self.overall, exceeded=exceeded)

    def usage_at(self, now: Windows) -> tuple[Usage, Usage]:
        """(read, overall) usage as it would read in windows `now`, without moving the counter."""
        return carry_over(self.read, self.windows, now), carry_over(self.overall, self.windows, now)
