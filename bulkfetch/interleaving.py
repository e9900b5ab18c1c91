"""How one run's requests interleaved: per athlete, the requests in each short quota window. Pure.

`bulkfetch demo --athletes N` shows it from its simulator's request log. A fair run gives every athlete
with work left about the same share of each window, so a small history is done in the first windows
instead of waiting behind a big one's backfill.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Interleaving:
    """Requests per athlete in each short window from the run's first to its last (empty ones too)."""

    first_window: int  # the window index (time // window length) of the run's first request
    counts: dict[int, tuple[int, ...]]  # athlete id -> its requests in windows first_window, first_window + 1, ...

    @property
    def windows(self) -> int:
        return max((len(row) for row in self.counts.values()), default=0)

    def totals(self) -> tuple[int, ...]:
        """All athletes' requests in each window."""
        return tuple(sum(row[i] for row in self.counts.values()) for i in range(self.windows))

    def finished_in(self, athlete_id: int) -> int:
        """The window (1 for the run's first) in which the athlete's last request went out."""
        row = self.counts[athlete_id]
        return max(i for i, n in enumerate(row) if n) + 1


def interleave(requests: Iterable[tuple[int, int]]) -> Interleaving:
    """From (athlete id, short-window index) of each request the quota counted, in any order."""
    tally = Counter(requests)
    if not tally:
        return Interleaving(first_window=0, counts={})
    first = min(window for _, window in tally)
    span = max(window for _, window in tally) - first + 1
    athletes = sorted({athlete for athlete, _ in tally})
    return Interleaving(first_window=first, counts={
        athlete: tuple(tally[(athlete, first + offset)] for offset in range(span)) for athlete in athletes})
