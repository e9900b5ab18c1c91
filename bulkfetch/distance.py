"""The distance a device file's records travel, cleaned of glitches: the sanitising step of
`bulkfetch.derive`, whose rules then work on a distance that never jumps and never decreases. Pure.

- time: the first times are judged by those after them, as the first distance is (below): the track
  starts at the first of its first STEP_RECORDS times that is neither after more than half of the
  2 x STEP_RECORDS times after it nor more than TIME_GLITCH_S before them; the records before it take
  its time. Then a record whose clock steps back takes the time of the latest record before it, so no
  span (between records, of a split, of a lap) is negative, and a corrupt first time holds no record.
- distance: the device's cumulative distance where the file records one; else, for a file with
  positions only (GPX), the cumulative great-circle (haversine) distance between consecutive positions,
  on the mean earth sphere; else none.
- glitches: a record whose distance (for GPX: whose position) lies farther from the last accepted one,
  ahead or behind, than the sport could go in the time between them (at least a second;
  `max_speed_mps`: 15 m/s on foot, 100 m/s for anything else) is a jump. A jump is a glitch when the
  values come back within reach of the last accepted one within the next STEP_RECORDS records that have
  a value, or when fewer than that follow (the file ends): the jump's record and those up to the
  come-back count as having no distance (no position). A jump that lasts STEP_RECORDS records is a step
  of the device's counter (a device carried while paused, say), which the device's own totals count
  too: it is kept; a step behind is a reset of the counter (the device restarted it at 0), and the
  distance goes on from the reset by the device's counter, from where it was before. The last accepted
  value is the farthest ahead, or the step last kept.
- the first value: nothing comes before it to judge it by, so the values after it do: the track starts
  at the first of its first STEP_RECORDS values that lies within reach of more than half of the
  2 x STEP_RECORDS values after it (or of those there are, at least STEP_RECORDS); the values before it
  are glitches. Without such a value (a track too short to tell) the first value is taken as it is.
- a track whose time does not advance (a route: every point at one time) has no speed to judge by: there
  each record counts as a second, and the sport's limit is TYPICAL_STEPS times the track's median step
  between consecutive values, at least the sport's one-second reach and at most ROUTE_MAX_STEP_S times
  it.
- a distance below an earlier one is raised to it, so the distance never decreases; the great-circle
  distance runs from one position kept to the next.
- a record without a distance (none recorded, a glitch, or no position) takes the distance
  interpolated in time between the nearest records before and after it that have one (so its seconds
  move at the pace around them, rather than standing still then leaping; where they share one time,
  the distance before); before the first such record 0, after the last the last value.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import accumulate, repeat
from operator import le, mul, sub
from statistics import median
from typing import Any

from bulkfetch.track import Track

EARTH_RADIUS_M = 6_371_008.8  # the mean radius (IUGG)

# Faster than the sport can go between two records is a glitch, not movement. On foot: nobody has run
# 12.5 m/s (the fastest 20 m of Usain Bolt's 9.58 s 100 m, Berlin 2009, took 1.61 s in the IAAF's
# biomechanical analysis: 12.4 m/s). Anything else: no sport Strava records reaches 100 m/s (the
# speed-skiing record is under 71 m/s; a bicycle paced behind a car went under 83 m/s).
FOOT_SPORTS = frozenset({"Run", "TrailRun", "VirtualRun", "Walk", "Hike"})
FOOT_MAX_SPEED_MPS = 15.0
MAX_SPEED_MPS = 100.0
# A jump still there this many records later is a step of the device's counter, not a glitch: one bad
# record, or a few, is what a damaged or glitching recording gives; a step lasts.
STEP_RECORDS = 5
# A track whose time does not advance (a route: every point at one time) has no speed: a record there
# reaches TYPICAL_STEPS times the track's median step between consecutive values, at least the sport's
# one second and at most its ROUTE_MAX_STEP_S (a track of a few values, one a glitch, has no typical
# step). A route's points lie where its path bends: hike.gpx's are 10 m apart at the median and up to
# 254 m on a straight stretch; a glitch lies kilometres off.
TYPICAL_STEPS = 30
ROUTE_MAX_STEP_S = 60
# A first time this far before the times after it is a corrupt clock (a timestamp of 0, a wrong day),
# not a pause: no recording waits a day between its first record and the next ones.
TIME_GLITCH_S = 86_400

# jump(reference, record): metres from the last accepted record to a later one (negative: behind it)
Jump = Callable[[int, int], float]


def max_speed_mps(sport_type: str | None) -> float:
    return FOOT_MAX_SPEED_MPS if sport_type in FOOT_SPORTS else MAX_SPEED_MPS


def distance_series(track: Track, sport_type: str | None) -> list[float] | None:
    """The track's distance at each record by the module's rules, for `sport_type` (the sport that
    decides the speed limit); None without a distance or positions."""
    time = monotone_time(track.series["time"])
    limit = max_speed_mps(sport_type)
    if track.has("distance"):
        return _device_distance(time, track.series["distance"], limit)
    if track.has("lat") and track.has("lng"):
        return _positions_distance(time, track.series["lat"], track.series["lng"], limit)
    return None


def monotone_time(time: list[int]) -> list[int]:
    """Each record's time by the module's rule: the first times judged by those after them, then the
    latest time before a record when its clock steps back (so no span is negative)."""
    # sorting a sorted list is one comparison a record, in C: a twentieth of the running maximum's cost
    if time == sorted(time) and (not time or time[-1] - time[0] <= TIME_GLITCH_S):
        return time  # the usual file: no clock stepping back, no first time a day before the rest

    def in_line(first: int, later: int) -> bool:
        return 0 <= time[later] - time[first] <= TIME_GLITCH_S

    start = _first_kept(list(range(len(time))), in_line)
    return [time[start]] * start + list(accumulate(time[start:], max))


@dataclass(frozen=True)
class Judged:
    """What the glitch rule makes of a track's values."""

    glitches: set[int] = field(default_factory=set)  # records whose value counts as missing
    resets: set[int] = field(default_factory=set)    # steps kept behind the last accepted value


def _first_kept(present: list[int], reachable: Callable[[int, int], bool]) -> int:
    """The position in `present` of the value the track starts from, by the module's rule."""
    for k in range(min(STEP_RECORDS, len(present) - STEP_RECORDS)):
        following = present[k + 1:k + 1 + 2 * STEP_RECORDS]
        if 2 * sum(reachable(present[k], later) for later in following) > len(following):
            return k
    return 0


def _glitches(time: list[int], present: list[int], jump: Jump, limit_mps: float) -> Judged:
    """What the glitch rule makes of the records among `present` (the indices that have a value, in
    order). The reference (the last accepted record) moves to each accepted record ahead of it, and to
    a step kept."""
    judged = Judged()
    if not present:
        return judged

    def reachable(reference: int, record: int) -> bool:
        return abs(jump(reference, record)) <= limit_mps * max(time[record] - time[reference], 1)

    k = _first_kept(present, reachable)
    judged.glitches.update(present[:k])
    reference = present[k]
    k += 1
    while k < len(present):
        record = present[k]
        if reachable(reference, record):
            if jump(reference, record) > 0:
                reference = record
            k += 1
            continue
        following = present[k + 1:k + 1 + STEP_RECORDS]
        back = next((n for n, later in enumerate(following) if reachable(reference, later)), None)
        if back is None and len(following) == STEP_RECORDS:
            if jump(reference, record) < 0:
                judged.resets.add(record)
            reference = record  # a step: it lasts
            k += 1
            continue
        glitched = back if back is not None else len(following)
        judged.glitches.update(present[k:k + 1 + glitched])
        k += 1 + glitched
    return judged


def _device_distance(time: list[int], values: list[float | None], limit_mps: float) -> list[float]:
    complete = None not in values
    if complete and len(values) > 1:
        changes = list(map(sub, values[1:], values[:-1]))  # type: ignore[arg-type]  # complete
        # the usual file: never decreasing, no step beyond a second's reach, a second or more apart
        if min(changes) >= 0 and max(changes) <= limit_mps <= limit_mps * min(map(sub, time[1:], time[:-1])):
            return list(map(float, values))  # type: ignore[arg-type]
    present = list(range(len(values))) if complete else [i for i, v in enumerate(values) if v is not None]
    known = [values[i] for i in present]
    steps = list(map(abs, map(sub, known[1:], known[:-1])))  # type: ignore[arg-type]  # present

    def jump(reference: int, record: int) -> float:
        return values[record] - values[reference]  # type: ignore[operator]  # both are present

    judged = _glitches_unless_within_reach(time, present, steps, jump, limit_mps)
    kept = [i for i in present if i not in judged.glitches] if judged.glitches else present
    return _filled_in(time, kept, _never_decreasing([(i, float(values[i])) for i in kept], judged.resets))


def _never_decreasing(values: list[tuple[int, float]], resets: set[int]) -> list[float]:
    """The (record, value) pairs' values, each raised to the highest before it (from 0); from a reset
    of the counter on, the values go on from that highest one."""
    if not resets:  # the usual file, in C
        return list(accumulate((value for _, value in values), max, initial=0.0))[1:]
    out = []
    top = offset = 0.0
    for record, value in values:
        if record in resets:
            offset = top - value
        top = max(top, value + offset)
        out.append(top)
    return out


def _glitches_unless_within_reach(time: list[int], present: list[int], steps: list[float], jump: Jump,
                                  limit_mps: float) -> Judged:
    """`_glitches`, for the usual file cheaply: when every step between consecutive values is within
    reach of the time between them, no value lies out of reach of an earlier one (the triangle
    inequality), so there is none. A track whose time does not advance is judged record by record at
    its own pace (the module's rule)."""
    if not steps:
        return Judged()
    if time[-1] <= time[0]:  # the time is monotone: no record has a time of its own
        time = list(range(len(time)))
        limit_mps = min(max(limit_mps, TYPICAL_STEPS * median(steps)), limit_mps * ROUTE_MAX_STEP_S)
    times = time if len(present) == len(time) else [time[i] for i in present]
    seconds = list(map(sub, times[1:], times[:-1]))
    if max(steps) <= limit_mps * min(seconds) or all(map(le, steps, map(mul, seconds, repeat(limit_mps)))):
        return Judged()
    return _glitches(time, present, jump, limit_mps)


def _positions_distance(time: list[int], lats: list[float | None], lngs: list[float | None],
                        limit_mps: float) -> list[float]:
    """Cumulative great-circle distance over the positions kept (present, not glitches)."""
    fixed = list(range(len(lats))) if None not in lats and None not in lngs else [
        i for i, (lat, lng) in enumerate(zip(lats, lngs)) if lat is not None and lng is not None]
    steps = great_circle_steps([lats[i] for i in fixed], [lngs[i] for i in fixed])
    rejected = _glitches_unless_within_reach(
        time, fixed, steps, lambda a, b: _metres(lats[a], lngs[a], lats[b], lngs[b]), limit_mps).glitches
    if rejected:
        fixed = [i for i in fixed if i not in rejected]
        steps = great_circle_steps([lats[i] for i in fixed], [lngs[i] for i in fixed])
    return _filled_in(time, fixed, list(accumulate(steps, initial=0.0)) if fixed else [])


def _filled_in(time: list[int], known: list[int], values: list[float]) -> list[float]:
    """A value for each record from the `values` at the records `known` (ascending, non-decreasing
    values): interpolated in time between the known records around it; 0 before the first, the last
    value after the last."""
    if len(known) == len(time):
        return values
    out = [0.0] * len(time)
    for record, value in zip(known, values):
        out[record] = value
    for before, after in [(a, b) for a, b in zip(known, known[1:]) if b - a > 1]:
        low, high = out[before], out[after]
        span_s = time[after] - time[before]
        for record in range(before + 1, after):
            # a clock stepping back or standing still gives no fraction beyond 0..1
            fraction = min(max((time[record] - time[before]) / span_s, 0.0), 1.0) if span_s > 0 else 0.0
            out[record] = low + (high - low) * fraction
    if known:
        out[known[-1]:] = [values[-1]] * (len(time) - known[-1])
    return out


def great_circle_steps(lats: list[Any], lngs: list[Any]) -> list[float]:
    """Haversine metres between consecutive positions, which all exist (mean earth radius)."""
    sin, asin, sqrt = math.sin, math.asin, math.sqrt
    phi = list(map(math.radians, lats))
    lam = list(map(math.radians, lngs))
    cos_phi = list(map(math.cos, phi))
    haversines = [sin((p1 - p0) * 0.5) ** 2 + c0 * c1 * sin((l1 - l0) * 0.5) ** 2
                  for p0, p1, l0, l1, c0, c1 in zip(phi, phi[1:], lam, lam[1:], cos_phi, cos_phi[1:])]
    diameter = 2 * EARTH_RADIUS_M
    # h can exceed 1 by a rounding error between antipodal points only
    return [diameter * asin(sqrt(h if h < 1.0 else 1.0)) for h in haversines]


def _metres(lat0: Any, lng0: Any, lat1: Any, lng1: Any) -> float:
    """Haversine metres between two positions."""
    (step,) = great_circle_steps([lat0, lat1], [lng0, lng1])
    return step
