"""One simulated activity's motion, second by second: the single truth behind what the simulator serves
about it (summary, streams, laps, splits) and the device file its export holds.

Pure: no I/O, no clock, no randomness once built. Time `t` is in seconds from the start Strava shows
(0 .. elapsed_s). A recording cropped on Strava after upload began `lead_s` earlier and ended `trail_s`
later: its device file covers -lead_s .. elapsed_s + trail_s, Strava's data only 0 .. elapsed_s.

Moving time tau(t) stands still during pauses (the device keeps recording, at the same place, speed 0).
Distance along the route is a smooth increasing function of moving time,

    d(tau) = D * (x + wave * sin(2 pi k x) / (2 pi k)),   x = tau / M,

so d(0) = 0, d(M) = D, and the speed D/M * (1 + wave * cos(2 pi k x)) never reaches 0 (wave < 1); the
same formula runs on before 0 and after M for a cropped recording's lead and trail. A run follows its
athlete's pace model instead (`pace`, a piecewise-linear d(tau) from `pace_model`: slower uphill and as it
tires), with the same d(0) = 0 and d(M) = D.

What a device records: distance to 0.01 m (the FIT resolution), altitude to 0.1 m, heart rate, cadence,
watts and temperature as integers, one record a second. Splits and laps are solved from d(tau) itself
(Newton's method on the formula, then a check of the recorded values at the neighbouring seconds), never by
scanning records, under conventions that a derivation from the 1 Hz file can reproduce exactly: a
boundary is the first whole second whose recorded distance reaches it; a span's distance is the difference
of the recorded distances at its ends, its elapsed time the difference of the seconds, its moving time the
elapsed time less the seconds in which the recorded distance did not grow, its elevation difference the
difference of the recorded altitudes at its ends.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

from bulkfetch.simulator.pace_model import PaceProfile
from bulkfetch.simulator.route import Route

NEWTON_STEPS = 40
LAST_PARTIAL_M = 0.1  # a last split or lap shorter than this is not one (Strava leaves it out)


@dataclass(frozen=True)
class Pause:
    """A stop after `moving_s` seconds of moving, lasting `length_s` seconds."""

    moving_s: int
    length_s: int


def plan_pauses(rng: random.Random, moving_s: int, paused_s: int) -> tuple[Pause, ...]:
    """`paused_s` seconds of standing still, in one to three stops inside the moving time."""
    if paused_s <= 0 or moving_s < 20:
        return ()
    count = min(rng.randint(1, 3), paused_s)
    cuts = sorted(rng.sample(range(1, paused_s), count - 1)) if count > 1 else []
    lengths = [b - a for a, b in zip([0, *cuts], [*cuts, paused_s])]
    positions = sorted(rng.sample(range(moving_s // 20, moving_s - moving_s // 20), count))
    return tuple(Pause(at, length) for at, length in zip(positions, lengths))


@dataclass(frozen=True)
class Wave:
    """amplitude * sin(omega * t + phase)."""

    amplitude: float
    omega: float
    phase: float

    def at(self, t: float) -> float:
        return self.amplitude * math.sin(self.omega * t + self.phase)

    def total(self, first: int, last: int) -> float:
        """Sum over the whole seconds first..last (the closed form of a sine over an arithmetic series)."""
        count = last - first + 1
        if count <= 0:
            return 0.0
        half = self.omega / 2
        if abs(math.sin(half)) < 1e-12:
            return count * self.at(first)
        return self.amplitude * math.sin(count * half) * math.sin(self.phase + half * (first + last)) / math.sin(half)


@dataclass(frozen=True)
class Signal:
    """A sensor's reading: a mean and a few waves around it."""

    mean: float
    waves: tuple[Wave, ...]

    def at(self, t: float) -> float:
        return self.mean + sum(wave.at(t) for wave in self.waves)

    def average(self, first: int, last: int) -> float:
        """Mean of the readings at the whole seconds first..last."""
        count = last - first + 1
        return self.mean + sum(wave.total(first, last) for wave in self.waves) / count if count > 0 else self.mean


@dataclass(frozen=True)
class Sensors:
    heartrate: Signal | None = None
    cadence: Signal | None = None  # rpm; running cadence per leg, as devices and the API give it
    watts: Signal | None = None
    temp: int | None = None


@dataclass(frozen=True)
class Span:
    """The stretch between two whole seconds, summarised as Strava summarises a split or a lap."""

    start_s: int
    end_s: int
    distance_m: float
    moving_s: int
    elevation_difference_m: float | None
    gain_m: float | None
    average_heartrate: float | None
    max_speed: float

    @property
    def elapsed_s(self) -> int:
        return self.end_s - self.start_s


@dataclass(frozen=True, slots=True)
class Sample:
    """One record of the device file: what the device logged at second `t` (None: not logged)."""

    t: int
    distance_m: float | None  # from the recording's start
    position: tuple[float, float] | None
    altitude_m: float | None
    speed: float | None
    heartrate: int | None
    cadence: int | None
    watts: int | None


@dataclass(frozen=True)
class Motion:
    distance_m: float
    moving_s: int
    elapsed_s: int
    wave: float
    waves: int
    pauses: tuple[Pause, ...]
    route: Route | None  # None without GPS
    sensors: Sensors
    dropouts: frozenset[int] = frozenset()  # seconds without a fix or a heart-rate reading
    lead_s: int = 0
    trail_s: int = 0
    pace: PaceProfile | None = None  # a run's distance against moving time; None: the wave formula

    # ------------------------------------------------------------ time and distance

    @cached_property
    def pause_windows(self) -> tuple[tuple[int, int], ...]:
        """Each pause as (first, last) elapsed seconds: the device stands still from `first` to `last`."""
        windows, before = [], 0
        for pause in self.pauses:
            start = pause.moving_s + before
            windows.append((start, start + pause.length_s))
            before += pause.length_s
        return tuple(windows)

    @property
    def first_s(self) -> int:
        """The recording's first second (negative for a cropped lead)."""
        return -self.lead_s

    @property
    def last_s(self) -> int:
        return self.elapsed_s + self.trail_s

    def moving_time(self, t: float) -> float:
        """tau(t): moving seconds since Strava's start (negative in a cropped lead)."""
        tau = t
        for start, end in self.pause_windows:
            if t > start:
                tau -= min(t, end) - start
        return tau

    def paused(self, t: int) -> bool:
        """Whether the device stood still during the second that ends at `t`."""
        return any(start < t <= end for start, end in self.pause_windows)

    def _distance_of(self, tau: float) -> float:
        if self.distance_m <= 0:
            return 0.0
        if self.pace is not None:
            return self.pace.distance_at(tau)
        x = tau / self.moving_s
        k = 2 * math.pi * self.waves
        return self.distance_m * (x + self.wave * math.sin(k * x) / k)

    def _speed_of(self, tau: float) -> float:
        if self.distance_m <= 0:
            return 0.0
        if self.pace is not None:
            return self.pace.speed_at(tau)
        x = tau / self.moving_s
        return self.distance_m / self.moving_s * (1 + self.wave * math.cos(2 * math.pi * self.waves * x))

    def distance_at(self, t: float) -> float:
        """Exact metres along the route at `t`, from Strava's start."""
        return self._distance_of(self.moving_time(t))

    def distances_at(self, seconds: Sequence[int]) -> list[float]:
        """distance_at at each of `seconds`: the same numbers, without a chain of calls per reading."""
        if self.distance_m <= 0:
            return [0.0] * len(seconds)
        taus = [self.moving_time(t) for t in seconds] if self.pause_windows else seconds
        if self.pace is not None:
            return self.pace.distances_at(taus)
        return [self._distance_of(tau) for tau in taus]

    def recorded_distance(self, t: int, origin_s: int = 0) -> float:
        """The distance a device starting at `origin_s` records at `t`."""
        return round(self.distance_at(t) - self.distance_at(origin_s), 2)

    @property
    def top_speed(self) -> float:
        """The fastest the activity goes, at each crest of the speed wave (m/s)."""
        return self.pace.top_speed if self.pace is not None else self._speed_of(0.0)

    def speed_at(self, t: int) -> float:
        return 0.0 if self.paused(t) else self._speed_of(self.moving_time(t))

    def first_second_reaching(self, target_m: float, origin_s: int = 0, last_s: int | None = None) -> int:
        """The first whole second in origin_s..last_s at which the distance recorded from origin_s is at least
        `target_m` (last_s if it never is)."""
        last = self.elapsed_s if last_s is None else last_s
        tau = self._moving_time_reaching(target_m + self.distance_at(origin_s), self.moving_time(origin_s))
        # Elapsed time of that moving time: add the pauses that began before it.
        t_exact = tau + sum(pause.length_s for pause in self.pauses if pause.moving_s < tau)
        second = min(max(math.ceil(t_exact - 1e-6), origin_s), last)
        # The recorded distance is rounded: the second may move by one either way.
        for _ in range(3):
            if second > origin_s and self.recorded_distance(second - 1, origin_s) >= target_m:
                second -= 1
        for _ in range(3):
            if second < last and self.recorded_distance(second, origin_s) < target_m:
                second += 1
        return second

    def _moving_time_reaching(self, distance_m: float, guess_tau: float) -> float:
        """tau with d(tau) = distance_m, by Newton's method (d is smooth with a derivative >= D/M (1 - wave))."""
        if self.pace is not None:
            return self.pace.moving_time_at(distance_m)
        tau = guess_tau + (distance_m - self._distance_of(guess_tau)) * self.moving_s / self.distance_m
        for _ in range(NEWTON_STEPS):
            step = (self._distance_of(tau) - distance_m) / self._speed_of(tau)
            tau -= step
            if abs(step) < 1e-9:
                break
        return tau

    # ------------------------------------------------------------ what the device records at a second

    def position_at(self, t: int) -> tuple[float, float] | None:
        if self.route is None or t in self.dropouts:
            return None
        return self.route.point(self.distance_at(t))

    def altitude_at(self, t: int) -> float | None:
        if self.route is None or t in self.dropouts:
            return None
        return round(self.route.hills.altitude(self.distance_at(t)), 1)

    def altitudes_at(self, seconds: Sequence[int], distances_m: Sequence[float]) -> list[float | None]:
        """altitude_at at each of `seconds`, given distances_at(seconds)."""
        if self.route is None:
            return [None] * len(seconds)
        heights = self.route.hills.altitudes(distances_m)
        return [None if t in self.dropouts else round(height, 1) for t, height in zip(seconds, heights)]

    def moving_at(self, seconds: Sequence[int]) -> list[bool]:
        """Whether the device moved during each second that ends at one of `seconds` (never before 0)."""
        if not self.pause_windows:
            return [t > 0 for t in seconds]
        return [t > 0 and not self.paused(t) for t in seconds]

    def grade_at(self, t: int) -> float:
        """Percent, from the elevation profile's slope where the device is."""
        return 100 * self.route.hills.slope(self.distance_at(t)) if self.route is not None else 0.0

    def heartrate_at(self, t: int) -> int | None:
        signal = self.sensors.heartrate
        return None if signal is None or t in self.dropouts else round(signal.at(t))

    def cadence_at(self, t: int) -> int | None:
        signal = self.sensors.cadence
        return None if signal is None else 0 if self.paused(t) else max(0, round(signal.at(t)))

    def watts_at(self, t: int) -> int | None:
        signal = self.sensors.watts
        return None if signal is None else 0 if self.paused(t) else max(0, round(signal.at(t)))

    def samples(self) -> Iterator[Sample]:
        """The whole recording, one record a second from first_s to last_s."""
        origin_m = self.distance_at(self.first_s)
        has_distance = self.distance_m > 0
        hills = self.route.hills if self.route is not None else None
        for t in range(self.first_s, self.last_s + 1):
            distance_m = self.distance_at(t)
            fix = self.route is not None and t not in self.dropouts
            yield Sample(
                t=t,
                distance_m=round(distance_m - origin_m, 2) if has_distance else None,
                position=self.route.point(distance_m) if fix and self.route is not None else None,
                altitude_m=round(hills.altitude(distance_m), 1) if fix and hills is not None else None,
                speed=round(self.speed_at(t), 3) if has_distance else None,
                heartrate=self.heartrate_at(t), cadence=self.cadence_at(t), watts=self.watts_at(t))

    # ------------------------------------------------------------ splits and laps

    def paused_between(self, start_s: int, end_s: int) -> int:
        """Seconds in (start_s, end_s] during which the device stood still."""
        return sum(max(0, min(end, end_s) - max(start, start_s)) for start, end in self.pause_windows)

    def boundaries(self, unit_m: float, origin_s: int = 0, last_s: int | None = None) -> list[int]:
        """The seconds at which each `unit_m` piece from origin_s ends: every full unit, then the rest up to
        last_s when it is at least LAST_PARTIAL_M. Without distance: last_s alone."""
        last = self.elapsed_s if last_s is None else last_s
        total_m = self.recorded_distance(last, origin_s)
        if total_m < LAST_PARTIAL_M:
            return [last]
        ends = [self.first_second_reaching(k * unit_m, origin_s, last) for k in range(1, int(total_m // unit_m) + 1)]
        rest_m = total_m - (self.recorded_distance(ends[-1], origin_s) if ends else 0.0)
        if not ends or (ends[-1] < last and rest_m >= LAST_PARTIAL_M):
            ends.append(last)
        return ends

    def spans(self, ends: list[int], origin_s: int = 0) -> list[Span]:
        starts = [origin_s, *ends[:-1]]
        return [self.span(start, end, origin_s) for start, end in zip(starts, ends)]

    def span(self, start_s: int, end_s: int, origin_s: int = 0) -> Span:
        route = self.route
        low_m, high_m = self.distance_at(start_s), self.distance_at(end_s)
        start_alt, end_alt = (route.hills.altitude(low_m), route.hills.altitude(high_m)) if route else (None, None)
        heartrate = self.sensors.heartrate
        return Span(
            start_s=start_s, end_s=end_s,
            distance_m=round(self.recorded_distance(end_s, origin_s) - self.recorded_distance(start_s, origin_s), 2),
            moving_s=end_s - start_s - self.paused_between(start_s, end_s),
            elevation_difference_m=(round(round(end_alt, 1) - round(start_alt, 1), 1)
                                    if start_alt is not None and end_alt is not None else None),
            gain_m=route.hills.gain(low_m, high_m) if route else None,
            average_heartrate=heartrate.average(start_s + 1, end_s) if heartrate and end_s > start_s else None,
            max_speed=self._max_speed(start_s, end_s),
        )

    def _max_speed(self, start_s: int, end_s: int) -> float:
        """The fastest moment in the span: a crest of the speed wave if one lies inside, else an end."""
        low, high = self.moving_time(start_s), self.moving_time(end_s)
        if self.pace is not None:
            return self.pace.max_speed(low, high)
        period = self.moving_s / self.waves
        if math.floor(high / period) * period >= low:
            return self.top_speed
        return max(self._speed_of(low), self._speed_of(high))
