"""Where a simulated activity goes: a route parametrised by arc length, and its elevation profile.

Pure: no I/O, no clock. The route is a chain of straight legs joined by circular turns, laid out in a
local plane (metres east and north of its origin) and wrapped onto the sphere, so that the length of any
stretch of it is its arc-length difference: positions sampled once a second along it measure, with the
haversine formula, the distance the activity reports (within the chords cut across turns and the plane's
curvature, both well under 0.1 % here). The route turns back towards its origin once it has roamed
`roam_m` away, so even a long ride stays within a few kilometres of home.

Arc length `s` is measured in metres from the activity's start as Strava shows it; a recording that began
earlier (an activity cropped on Strava after upload) starts at a negative `s`.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass

EARTH_RADIUS_M = 6_371_000.0
STRAIGHT_M = (250.0, 1500.0)
TURN_RADIUS_M = (25.0, 80.0)
TURN_ANGLE = (math.pi / 6, 5 * math.pi / 6)


@dataclass(frozen=True)
class Leg:
    """One piece of the route: straight (`turn` 0) or an arc of `radius_m` turning right (+1) or left (-1).
    `heading` is in radians clockwise from north, at the leg's start."""

    start_m: float
    x_m: float
    y_m: float
    heading: float
    turn: int = 0
    radius_m: float = 0.0

    def xy(self, along_m: float) -> tuple[float, float]:
        """The point `along_m` metres into the leg, in the route's plane (east, north)."""
        if self.turn == 0:
            return self.x_m + along_m * math.sin(self.heading), self.y_m + along_m * math.cos(self.heading)
        heading = self.heading + self.turn * along_m / self.radius_m
        # d/ds of this point is (sin heading, cos heading): the arc is walked at unit speed.
        return (self.x_m + self.turn * self.radius_m * (math.cos(self.heading) - math.cos(heading)),
                self.y_m + self.turn * self.radius_m * (math.sin(heading) - math.sin(self.heading)))


@dataclass(frozen=True)
class Hills:
    """Altitude as a function of arc length: base + height * sin(2 pi s / period + phase)."""

    base_m: float
    height_m: float
    period_m: float
    phase: float

    def altitude(self, s_m: float) -> float:
        return self.base_m + self.height_m * math.sin(2 * math.pi * s_m / self.period_m + self.phase)

    def altitudes(self, distances_m: Iterable[float]) -> list[float]:
        """altitude at each of `distances_m` (the same numbers, for streams' millions of readings)."""
        two_pi, base_m, height_m, period_m, phase = 2 * math.pi, self.base_m, self.height_m, self.period_m, self.phase
        return [base_m + height_m * math.sin(two_pi * s_m / period_m + phase) for s_m in distances_m]

    def slope(self, s_m: float) -> float:
        """Rise per metre of route (the grade as a fraction)."""
        omega = 2 * math.pi / self.period_m
        return self.height_m * omega * math.cos(omega * s_m + self.phase)

    def turning_points(self, low_m: float, high_m: float) -> list[float]:
        """The crests and troughs strictly between `low_m` and `high_m`, in order."""
        omega = 2 * math.pi / self.period_m
        # Extremes where omega*s + phase = pi/2 + m*pi.
        first = math.floor((omega * low_m + self.phase - math.pi / 2) / math.pi) + 1
        last = math.ceil((omega * high_m + self.phase - math.pi / 2) / math.pi) - 1
        points = ((math.pi / 2 + m * math.pi - self.phase) / omega for m in range(first, last + 1))
        return [s for s in points if low_m < s < high_m]

    def gain(self, low_m: float, high_m: float) -> float:
        """Total ascent from `low_m` to `high_m` (metres climbed, descents not subtracted)."""
        stops = [low_m, *self.turning_points(low_m, high_m), high_m]
        heights = [self.altitude(s) for s in stops]
        return sum(max(0.0, b - a) for a, b in zip(heights, heights[1:]))

    def extremes(self, low_m: float, high_m: float) -> tuple[float, float]:
        """Lowest and highest altitude between `low_m` and `high_m`."""
        heights = [self.altitude(s) for s in (low_m, *self.turning_points(low_m, high_m), high_m)]
        return min(heights), max(heights)


@dataclass(frozen=True)
class Route:
    """Legs covering arc lengths from `legs[0].start_m` to `end_m`, wrapped onto the sphere at `origin`."""

    origin: tuple[float, float]  # latitude, longitude in degrees of the route's first point
    legs: tuple[Leg, ...]
    starts_m: tuple[float, ...]  # each leg's start_m, for bisection
    end_m: float
    hills: Hills

    def leg_at(self, s_m: float) -> Leg:
        index = bisect_right(self.starts_m, s_m) - 1
        return self.legs[max(index, 0)]

    def point(self, s_m: float) -> tuple[float, float]:
        """(latitude, longitude) in degrees at arc length `s_m`."""
        leg = self.leg_at(s_m)
        x_m, y_m = leg.xy(s_m - leg.start_m)
        lat = self.origin[0] + math.degrees(y_m / EARTH_RADIUS_M)
        # East-west metres at the point's own latitude, so an east-west step keeps its length.
        lng = self.origin[1] + math.degrees(x_m / (EARTH_RADIUS_M * math.cos(math.radians(lat))))
        return lat, lng


def build_route(rng: random.Random, *, origin: tuple[float, float], start_m: float, end_m: float,
                roam_m: float, hills: Hills, stretch: float = 1.0) -> Route:
    """Straight legs (STRAIGHT_M times `stretch`) and turns from `start_m` to at least `end_m` metres; past
    `roam_m` from the origin every turn bends back towards it."""
    legs: list[Leg] = []
    s_m, x_m, y_m, heading = start_m, 0.0, 0.0, rng.uniform(0, 2 * math.pi)
    # Every straight-and-turn pair is longer than this, which bounds the loop.
    shortest_pair_m = STRAIGHT_M[0] * stretch + TURN_RADIUS_M[0] * TURN_ANGLE[0]
    for index in range(2 * math.ceil((end_m - start_m) / shortest_pair_m) + 2):
        if s_m > end_m and legs:
            break
        if index % 2 == 0:
            leg = Leg(s_m, x_m, y_m, heading)
            length_m = rng.uniform(*STRAIGHT_M) * stretch
        else:
            radius_m, angle = rng.uniform(*TURN_RADIUS_M), rng.uniform(*TURN_ANGLE)
            leg = Leg(s_m, x_m, y_m, heading, _turn_side(rng, x_m, y_m, heading, roam_m), radius_m)
            length_m = radius_m * angle
            heading += leg.turn * angle
        legs.append(leg)
        x_m, y_m = leg.xy(length_m)
        s_m += length_m
    return Route(origin=origin, legs=tuple(legs), starts_m=tuple(leg.start_m for leg in legs), end_m=end_m,
                 hills=hills)


def _turn_side(rng: random.Random, x_m: float, y_m: float, heading: float, roam_m: float) -> int:
    """+1 (right) or -1 (left): at random near home, towards the origin beyond `roam_m`."""
    if math.hypot(x_m, y_m) <= roam_m:
        return rng.choice((-1, 1))
    # The cross product of the heading (sin h, cos h) and the way home (-x, -y): positive when home lies
    # to the left.
    cross = math.sin(heading) * -y_m - math.cos(heading) * -x_m
    return -1 if cross > 0 else 1

