"""How fast the simulated athlete runs: a pace model (flat pace, grade, fatigue, day form) and the per-run
profile it gives, moving time as a function of distance along the route.

Pure: no I/O, no clock; randomness comes in as numbers. The model: at `s` metres into a run on grade `i`
(rise/run), at effort `e` (1 at race effort, more on easy days),

    pace(s) = flat_pace * e * grade_cost(i(s)) ** grade_exponent * (1 + fatigue_per_10km * s / 10 km)
              * (1 + swing * cos(2 pi k s / D))

seconds per metre. The last factor is the run's own unevenness (k whole swings over its distance D, so it
averages out over the run). The simulator's terrain cost `grade_cost` is deliberately not Minetti's
(bulkfetch.pace fits Minetti's): the predictor must recover race times from a law it does not know.

A profile integrates the pace over PIECES equal pieces of the run (midpoint rule): moving time is linear
in distance within a piece, so distance is a piecewise-linear, strictly increasing function of moving
time that inverts exactly (no Newton steps) and keeps each piece's speed constant. Beyond the run's ends
(a cropped recording's lead and trail) the first and last pieces' speeds go on.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass

PIECES = 64  # pieces per run: a few per hill and per swing, and cheap enough for 5,000-activity histories
FATIGUE_UNIT_M = 10_000.0


def grade_cost(grade: float) -> float:
    """Relative time per metre on a grade (rise/run): uphill costs about 3.3 % per 1 % of grade, gentle
    downhill saves, steep downhill (beyond about -9 %) brakes again, like measured running costs."""
    if grade >= 0:
        return 1 + 3.3 * grade
    return max(0.8, 1 + 1.8 * grade + 10 * grade * grade)


@dataclass(frozen=True)
class PaceModel:
    """The simulated runner. `flat_pace_s_per_km`: race effort, fresh, on the flat. `grade_exponent`
    scales the terrain cost (0: hills cost nothing). `fatigue_per_10km`: how much slower each 10 km into a
    run makes the pace. `day_sd`: the spread (log) of the form from one day to the next."""

    flat_pace_s_per_km: float = 300.0
    grade_exponent: float = 1.0
    fatigue_per_10km: float = 0.02
    day_sd: float = 0.01

    def relative_pace(self, grade: float, into_m: float) -> float:
        """Pace against the fresh flat pace at `into_m` metres into the run on `grade`."""
        fatigue = 1 + self.fatigue_per_10km * max(into_m, 0.0) / FATIGUE_UNIT_M
        return grade_cost(grade) ** self.grade_exponent * fatigue


DEFAULT_PACE_MODEL = PaceModel()


@dataclass(frozen=True)
class PaceProfile:
    """Moving time at each knot of distance (knots_m[0] = 0, knots_s[0] = 0, the last are the run's
    distance and moving time); linear in between."""

    knots_m: tuple[float, ...]
    knots_s: tuple[float, ...]
    speeds: tuple[float, ...]  # m/s in each piece

    def _piece_of_time(self, tau: float) -> int:
        return min(max(bisect_right(self.knots_s, tau) - 1, 0), len(self.speeds) - 1)

    def distance_at(self, tau: float) -> float:
        """Metres covered after `tau` moving seconds."""
        piece = self._piece_of_time(tau)
        return self.knots_m[piece] + (tau - self.knots_s[piece]) * self.speeds[piece]

    def distances_at(self, taus: Iterable[float]) -> list[float]:
        """distance_at at each of `taus`, the same numbers without a chain of calls per reading (streams of
        a long history are millions of readings)."""
        knots_m, knots_s, speeds, last = self.knots_m, self.knots_s, self.speeds, len(self.speeds) - 1
        out = []
        for tau in taus:
            piece = min(max(bisect_right(knots_s, tau) - 1, 0), last)
            out.append(knots_m[piece] + (tau - knots_s[piece]) * speeds[piece])
        return out

    def speed_at(self, tau: float) -> float:
        return self.speeds[self._piece_of_time(tau)]

    def moving_time_at(self, distance_m: float) -> float:
        """Moving seconds to cover `distance_m` (the inverse of distance_at)."""
        piece = min(max(bisect_right(self.knots_m, distance_m) - 1, 0), len(self.speeds) - 1)
        return self.knots_s[piece] + (distance_m - self.knots_m[piece]) / self.speeds[piece]

    @property
    def top_speed(self) -> float:
        return max(self.speeds)

    def max_speed(self, low_tau: float, high_tau: float) -> float:
        """The fastest piece between two moving times."""
        return max(self.speeds[self._piece_of_time(low_tau):self._piece_of_time(high_tau) + 1])


def run_seconds(model: PaceModel, slope: Callable[[float], float], distance_m: float, swing: float,
                swings: int) -> list[float]:
    """Moving seconds of each piece at the model's fresh flat pace and effort 1 (`slope`: grade at a
    distance)."""
    piece_m = distance_m / PIECES
    pace_s_per_m = model.flat_pace_s_per_km / 1000
    out = []
    for index in range(PIECES):
        mid_m = (index + 0.5) * piece_m
        unevenness = 1 + swing * math.cos(2 * math.pi * swings * mid_m / distance_m)
        out.append(piece_m * pace_s_per_m * model.relative_pace(slope(mid_m), mid_m) * unevenness)
    return out


def pace_profile(piece_seconds: list[float], distance_m: float, moving_s: float) -> PaceProfile:
    """The profile of a run of `distance_m` in `moving_s`, shaped by `piece_seconds` (scaled to add up)."""
    scale = moving_s / sum(piece_seconds)
    piece_m = distance_m / len(piece_seconds)
    knots_s = [0.0]
    for seconds in piece_seconds:
        knots_s.append(knots_s[-1] + seconds * scale)
    knots_s[-1] = float(moving_s)
    knots_m = tuple(index * piece_m for index in range(len(piece_seconds))) + (distance_m,)
    speeds = tuple((b_m - a_m) / (b_s - a_s) for a_m, b_m, a_s, b_s in zip(knots_m, knots_m[1:], knots_s, knots_s[1:]))
    return PaceProfile(knots_m=knots_m, knots_s=tuple(knots_s), speeds=speeds)
