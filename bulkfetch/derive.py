"""What the Strava API would give for an activity, derived from its device file (a `bulkfetch.track.Track`),
in the API's JSON shapes, so that `schema.build_tables` and `schema.build_streams` make rows of it: a
StreamSet, the 1 km / 1 mile splits, the laps; and the file's totals (`file_summary`), to tell whether
Strava's version of the activity is newer than the file (`is_stale`). Pure: no I/O, no clock.

Strava does not publish its smoothing or thresholds; these rules are ours, simple and stated:

- the sport: the one the caller passes (activities.csv's or the API's: a GPX file's `<type>` is often a
  number, and a device's sport can be wrong) wins over the one the file states.
- time and distance: `bulkfetch.distance`'s: the first times judged by those after them (a corrupt
  first time takes the time of the record the track starts at); a time stepping back takes the time
  before it; the device's cumulative distance, or the great-circle distance between positions (GPX); glitches (a jump
  faster than the sport can go that does not last) rejected, the first values judged by those after
  them; a reset of the device's counter continued from the distance before it; never decreasing. What
  needs distance (velocity_smooth, grade_smooth, moving, splits) exists only when the distance grows:
  not for a treadmill run without a foot pod, nor weights.
- moving: a record is moving when the speed over the interval since the record before it exceeds
  1.0 m/s for cycling sports (CYCLING_SPORTS), 0.3 m/s for any other; the first record, and one with
  the timestamp of the record before it, is not moving. Moving time is the sum of the moving records'
  intervals, so standing still and a device's auto-pause (a gap between records) do not count, and a
  gap the athlete moved through (a tunnel) does. GPS jitter faster than the threshold while standing
  still counts as moving. A span's moving time (a split's, a lap's, the whole file's) is at most its
  elapsed time: a device closes a lap between two records, so the elapsed time it states can be a
  second shorter than the records the lap spans.
- velocity_smooth[i]: the distance change over the time change between records i-2 and i+2 (the first
  or last record where those fall outside the track); 0 where they share a timestamp.
- grade_smooth[i]: 100 x the altitude change over the distance change between records i-5 and i+5 (the
  same at the ends); null where that distance change is under 5 m (standing still).
- splits of `unit_m` (1000 m: splits_metric, 1609.344 m: splits_standard): a split ends at the first
  record whose distance from the first record reaches its boundary, a multiple of unit_m: the first
  split's is unit_m, each next one's the first multiple more than 0.1 m past the record that ended the
  split before. So a record past several boundaries (after a gap in the recording, or a step of the
  device's counter) ends one split, longer than unit_m, and no split is empty: splits number fewer than
  the whole units then. The last, partial split (to the last record) is kept when it covers at least
  0.1 m. A split runs from the record that ended the one before it (the first record for split 1) to
  the record that ends it: its distance, elapsed time and elevation difference are the differences
  between those two records, its moving time the moving seconds between them, its average speed
  distance / moving time (null when that is 0), its average heart rate the mean over its records (those
  after its start record, up to and including its end record). pace_zone and
  average_grade_adjusted_speed are null (Strava's zones and grade model are not in the file). Distances
  and elevations are rounded to 0.1 m and speeds to 0.01 m/s, as Strava does.
- laps: the device's laps (FIT lap messages, TCX laps), each ending at its last record at or before its
  end (start + elapsed time, to the second; the next lap's start when the file gives no elapsed time);
  the last lap ends at the last record; laps share their boundary record, like splits. The values the
  device states win (elapsed time, distance, ascent, speeds, heart rate, cadence, power); what it leaves
  out is computed over the lap's records as for splits. The moving time is the moving rule's, as for
  splits (a device's timer time counts standing still unless auto-pause was on); without a growing
  distance the device's timer time, else the elapsed time. A file without laps (GPX) gives one lap for
  the whole track, as Strava does.
- the file's totals (`file_summary`): what its session states (start, distance, elapsed time, ascent),
  else computed from the records; the distance is the records' when the session's disagrees with it as
  much as `is_stale` calls stale (the splits and laps come from the records, and `is_stale` must judge
  them). moving_s by the moving rule when the distance grows, else the device's timer time, else the
  elapsed time.
- elevation gain, where the file does not state it: each climb from a low point to a high point counts
  once the altitude has risen more than 1 m above the low point, and ends when it falls more than 1 m
  below the high point, so wiggles under 1 m add nothing.

DERIVE_VERSION numbers these rules: whatever stores derived data (the import's index, the Parquet
fingerprints) stores it too, and derives again when it differs.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate, pairwise
from operator import mul, sub
from typing import Any

from bulkfetch.distance import distance_series, monotone_time
from bulkfetch.numeric import finite_float
from bulkfetch.track import DeviceLap, Track

# Bumped whenever a rule changes what this module derives from the same track. 2: the caller's sport,
# glitches rejected, no empty split, moving time at most elapsed time, the records' distance in the
# summary when the session's disagrees. 3: a track whose time does not advance judged by its own steps,
# the first values judged by those after them, a counter's reset continued, time never stepping back.
# 4: the first times judged by those after them (a corrupt first time held every record at it).
DERIVE_VERSION = 4

METRIC_SPLIT_M = 1000.0
STANDARD_SPLIT_M = 1609.344

# The API reference describes splits_metric/splits_standard as "for runs"
# (https://developers.strava.com/docs/reference/#api-models-DetailedActivity), and a fetched detail's splits
# replace the file's: deriving them for other sports would give rows that the detail then takes away.
SPLIT_SPORTS = frozenset({"Run", "TrailRun", "VirtualRun"})
CYCLING_SPORTS = frozenset({"Ride", "VirtualRide", "EBikeRide", "GravelRide", "MountainBikeRide",
                            "EMountainBikeRide", "Velomobile", "Handcycle"})

# Nobody rides slower than 3.6 km/h and stays upright; a steep hike still covers more than 0.3 m/s.
CYCLING_MOVING_MPS = 1.0
MOVING_MPS = 0.3
VELOCITY_HALF_WINDOW = 2     # records either side
GRADE_HALF_WINDOW = 5        # records either side
GRADE_MIN_DISTANCE_M = 5.0   # below this the altitude's resolution (0.2 m in FIT) is noise, not grade
MIN_SPLIT_M = 0.1  # no split (nor the last, partial one) is shorter: Strava leaves such a remainder out
GAIN_HYSTERESIS_M = 1.0

# is_stale: Strava's elapsed time is the file's span (within a second or two: a session may start a
# second before its first record), so half a minute apart is an edit: a crop removes at least that.
# Strava may measure distance a little differently from the device (it recomputes GPS distance for some
# uploads), so distance counts only beyond 3 % (and 50 m).
STALE_ELAPSED_S = 30.0
STALE_DISTANCE_FRACTION = 0.03
STALE_DISTANCE_FLOOR_M = 50.0


@dataclass(frozen=True)
class Derived:
    """The per-record series every derivation shares, computed once per track by `prepare`."""

    track: Track
    sport_type: str | None            # the caller's, else the file's
    time: list[int]                   # never decreasing (`bulkfetch.distance`'s rule)
    distance: list[float] | None      # the distance stream (see the module's rule); None without one
    moves: bool                       # the distance grows: moving, speeds, grades and splits exist
    moving: list[bool] | None         # per record, when `moves`
    moving_s: list[int] | None        # cumulative moving seconds at each record, when `moves`
    altitude: list[float] | None      # gaps take the value before (the first value at the start), for
                                      # differences; None without altitude


@dataclass(frozen=True)
class FileSummary:
    """The activity as the file records it, by the module's rule for the file's totals (a device's timer
    time counts standing still unless auto-pause was on: moving_s is the moving rule's where it can be).
    sport_type is the sport the derivation used (the caller's, else the file's)."""

    start_utc_s: float | None
    sport_type: str | None
    distance_m: float | None
    elapsed_s: float | None
    moving_s: float | None
    elevation_gain_m: float | None


def prepare(track: Track, sport_type: str | None = None) -> Derived:
    """The shared series of `track`; pass the result to the functions below to derive them only once.
    `sport_type`: the activity's sport as activities.csv or the API give it, which wins over the file's."""
    sport = sport_type or (track.session.sport_type if track.session is not None else None)
    time = monotone_time(track.series["time"])
    distance = distance_series(track, sport)
    moves = distance is not None and len(distance) > 1 and distance[-1] > distance[0]
    moving = moving_s = None
    if moves:
        threshold = CYCLING_MOVING_MPS if sport in CYCLING_SPORTS else MOVING_MPS
        dd = list(map(sub, distance[1:], distance[:-1]))
        dt = list(map(sub, time[1:], time[:-1]))
        # a repeated timestamp (dt 0; or a clock stepping back) is not moving: it has no seconds to add
        flags = [b > 0 and a > threshold * b for a, b in zip(dd, dt)]
        moving = [False, *flags]
        moving_s = list(accumulate(map(mul, flags, dt), initial=0))
    altitude = _filled(track.series["altitude"]) if track.has("altitude") else None
    return Derived(track, sport, time, distance, moves, moving, moving_s, altitude)


def stream_set(source: Track | Derived) -> dict[str, dict[str, list[Any]]]:
    """A StreamSet keyed by type (as `GET /activities/{id}/streams?key_by_type=true` answers) with the
    types the file has or gives: time, distance, latlng, altitude, heartrate, cadence, watts, temp, and
    velocity_smooth, grade_smooth, moving where the distance grows."""
    derived = _derived(source)
    track = derived.track
    if not derived.time:
        return {}
    streams: dict[str, list[Any]] = {"time": derived.time}
    if derived.distance is not None:
        streams["distance"] = derived.distance
    if track.has("lat") and track.has("lng"):
        lats, lngs = track.series["lat"], track.series["lng"]
        streams["latlng"] = (list(map(list, zip(lats, lngs))) if None not in lats and None not in lngs else
                             [[lat, lng] if lat is not None and lng is not None else None
                              for lat, lng in zip(lats, lngs)])
    for name in ("altitude", "heartrate", "cadence", "watts", "temp"):
        if track.has(name):
            streams[name] = track.series[name]
    if derived.moves:
        streams["velocity_smooth"] = _velocity(derived)
        streams["moving"] = derived.moving
        if derived.altitude is not None:
            streams["grade_smooth"] = _grade(derived)
    return {name: {"data": data} for name, data in streams.items()}


def splits(source: Track | Derived, unit_m: float) -> list[dict[str, Any]]:
    """splits_metric (unit_m 1000) or splits_standard (1609.344) items; [] without a growing distance."""
    derived = _derived(source)
    if not derived.moves:
        return []
    distance = derived.distance
    assert distance is not None and derived.moving_s is not None
    bounds = _split_bounds(distance, unit_m)
    heartrate = derived.track.series["heartrate"] if derived.track.has("heartrate") else None
    items = []
    for number, (start, end) in enumerate(pairwise(bounds), start=1):
        metres = distance[end] - distance[start]
        elapsed_s = derived.time[end] - derived.time[start]
        moving_s = _at_most(derived.moving_s[end] - derived.moving_s[start], elapsed_s)
        items.append({
            "split": number,
            "distance": round(metres, 1),
            "elapsed_time": int(elapsed_s),
            "moving_time": int(moving_s),
            "elevation_difference": (round(derived.altitude[end] - derived.altitude[start], 1)
                                     if derived.altitude is not None else None),
            "average_speed": round(metres / moving_s, 2) if moving_s > 0 else None,
            "average_heartrate": _mean(heartrate, start, end),
            "average_grade_adjusted_speed": None,
            "pace_zone": None,
        })
    return items


def laps(source: Track | Derived) -> list[dict[str, Any]]:
    """API Lap items from the device's laps, or one lap of the whole track when the file has none."""
    derived = _derived(source)
    track = derived.track
    device_laps = track.laps or ([DeviceLap(start_s=0.0)] if derived.time else [])
    bounds = _lap_bounds(derived.time, device_laps)
    velocity = _velocity(derived) if derived.moves and any(lap.max_speed is None for lap in device_laps) else None
    return [_lap(derived, velocity, number, lap, start, end)
            for number, (lap, (start, end)) in enumerate(zip(device_laps, bounds), start=1)]


def file_summary(source: Track | Derived, sport_type: str | None = None) -> FileSummary:
    """The file's totals by the module's rule; `sport_type` as for `prepare` (a Derived keeps its own)."""
    derived = _derived(source, sport_type)
    track = derived.track
    session = track.session
    time = derived.time

    def stated(name: str) -> float | None:
        return getattr(session, name) if session is not None else None

    elapsed = stated("elapsed_s")
    if elapsed is None and time:
        elapsed = float(time[-1] - time[0])
    distance = stated("distance_m")
    if derived.distance is not None:
        recorded = derived.distance[-1] - derived.distance[0]
        if distance is None or (derived.moves and not _distances_agree(distance, recorded)):
            distance = recorded
    if derived.moves:
        assert derived.moving_s is not None
        moving: float | None = float(derived.moving_s[-1])
    else:
        moving = stated("timer_s")
        moving = moving if moving is not None else elapsed
    moving = _at_most(moving, elapsed)
    gain = stated("ascent_m")
    if gain is None and derived.altitude is not None:
        gain = elevation_gain(derived.altitude)
    start = stated("start_utc_s")
    return FileSummary(start_utc_s=start if start is not None else track.start_utc_s, sport_type=derived.sport_type,
                       distance_m=distance, elapsed_s=elapsed, moving_s=moving, elevation_gain_m=gain)


def is_stale(summary: FileSummary, api_summary: dict[str, Any]) -> bool:
    """True when Strava's summary of the activity (a SummaryActivity or DetailedActivity) disagrees with
    the file: elapsed time more than STALE_ELAPSED_S apart, or distance more than STALE_DISTANCE_FRACTION
    of the larger (and more than STALE_DISTANCE_FLOOR_M) apart. The activity was then cropped or corrected
    on Strava after the upload, and the file's derived rows describe an older version. A value missing
    on either side is not compared."""
    api_elapsed = finite_float(api_summary.get("elapsed_time"))
    if api_elapsed is not None and summary.elapsed_s is not None:
        if abs(api_elapsed - summary.elapsed_s) > STALE_ELAPSED_S:
            return True
    api_distance = finite_float(api_summary.get("distance"))
    return api_distance is not None and summary.distance_m is not None and not _distances_agree(
        api_distance, summary.distance_m)


def _distances_agree(a_m: float, b_m: float) -> bool:
    """Within STALE_DISTANCE_FRACTION of the larger, or STALE_DISTANCE_FLOOR_M."""
    return abs(a_m - b_m) <= max(STALE_DISTANCE_FLOOR_M, STALE_DISTANCE_FRACTION * max(a_m, b_m))


def elevation_gain(altitude: list[float]) -> float:
    """The sum of climbs of an altitude series without gaps, by the module's rule (1 m hysteresis)."""
    if not altitude:
        return 0.0
    gain = 0.0
    ref = altitude[0]   # climbing: the high point so far; else the low point since the last climb
    climbing = False
    for value in altitude:
        if climbing:
            if value > ref:
                gain += value - ref
                ref = value
            elif ref - value > GAIN_HYSTERESIS_M:
                climbing, ref = False, value
        elif value < ref:
            ref = value
        elif value - ref > GAIN_HYSTERESIS_M:
            gain += value - ref
            climbing, ref = True, value
    return gain


# -- the pieces ------------------------------------------------------------------------------------------

def _derived(source: Track | Derived, sport_type: str | None = None) -> Derived:
    return source if isinstance(source, Derived) else prepare(source, sport_type)


def _at_most(moving_s: float | None, elapsed_s: float | None) -> float | None:
    """A span's moving time, no more than its elapsed time (None: not known)."""
    return moving_s if moving_s is None or elapsed_s is None or moving_s <= elapsed_s else max(elapsed_s, 0)


def _split_bounds(distance: list[float], unit_m: float) -> list[int]:
    """The records at which the splits of `unit_m` start and end (the first record, then each split's
    end), by the module's rule."""
    start_m = distance[0]
    bounds = [0]
    k = 1
    while start_m + k * unit_m <= distance[-1]:
        end = bisect_left(distance, start_m + k * unit_m, lo=bounds[-1])
        bounds.append(end)
        # the next boundary: the first multiple of unit_m more than MIN_SPLIT_M past this record
        k = max(k + 1, math.floor((distance[end] + MIN_SPLIT_M - start_m) / unit_m) + 1)
    last = len(distance) - 1
    if bounds[-1] < last and distance[-1] - distance[bounds[-1]] >= MIN_SPLIT_M:
        bounds.append(last)
    return bounds


def _filled(values: list[float | None]) -> list[float]:
    """Gaps take the value before them; those before the first value take the first value."""
    first = next(v for v in values if v is not None)
    if None not in values:
        return list(map(float, values))
    out = []
    last = float(first)
    for value in values:
        if value is not None:
            last = float(value)
        out.append(last)
    return out


def _shifted(values: list[Any], by: int) -> list[Any]:
    """values[i + by] for each i, clamped to the first and last value at the ends."""
    if by >= 0:
        return values[by:] + [values[-1]] * min(by, len(values))
    return [values[0]] * min(-by, len(values)) + values[:by]


def _velocity(derived: Derived) -> list[float]:
    distance, time = derived.distance, derived.time
    assert distance is not None
    k = VELOCITY_HALF_WINDOW
    return [(d1 - d0) / (t1 - t0) if t1 != t0 else 0.0
            for d1, d0, t1, t0 in zip(_shifted(distance, k), _shifted(distance, -k),
                                      _shifted(time, k), _shifted(time, -k))]


def _grade(derived: Derived) -> list[float | None]:
    distance, altitude = derived.distance, derived.altitude
    assert distance is not None and altitude is not None
    k = GRADE_HALF_WINDOW
    return [100.0 * (a1 - a0) / (d1 - d0) if d1 - d0 >= GRADE_MIN_DISTANCE_M else None
            for d1, d0, a1, a0 in zip(_shifted(distance, k), _shifted(distance, -k),
                                      _shifted(altitude, k), _shifted(altitude, -k))]


# _mean or _maximum of a series over the records of a split or lap from record `start` to record `end`:
# start + 1 .. end (a record closes the second before it, so `start` belongs to the span before)
Aggregate = Callable[[list[Any] | None, int, int], float | None]


def _mean(values: list[Any] | None, start: int, end: int) -> float | None:
    present = [v for v in values[start + 1:end + 1] if v is not None] if values is not None else []
    return round(sum(present) / len(present), 1) if present else None


def _maximum(values: list[Any] | None, start: int, end: int) -> float | None:
    present = [v for v in values[start + 1:end + 1] if v is not None] if values is not None else []
    return max(present) if present else None


def _lap_bounds(time: list[int], device_laps: list[DeviceLap]) -> list[tuple[int | None, int | None]]:
    """(start record, end record) of each lap, by the module's rule; (None, None) without records."""
    if not time:
        return [(None, None)] * len(device_laps)
    last = len(time) - 1
    bounds = []
    start = 0
    for lap, following in zip(device_laps, [*device_laps[1:], None]):
        if following is None:
            end = last
        else:
            end_s = following.start_s
            if lap.elapsed_s is not None:
                end_s = min(end_s, lap.start_s + lap.elapsed_s)
            end = min(last, max(start, bisect_right(time, math.floor(end_s + 0.5)) - 1))
        bounds.append((start, end))
        start = end
    return bounds


# A lap's fields computed from its records when the device states none: (field, series, aggregate)
_LAP_AGGREGATES: tuple[tuple[str, str, Aggregate], ...] = (
    ("average_heartrate", "heartrate", _mean), ("max_heartrate", "heartrate", _maximum),
    ("average_cadence", "cadence", _mean), ("average_watts", "watts", _mean),
    ("max_speed", "velocity_smooth", _maximum),
)


def _lap(derived: Derived, velocity: list[float] | None, number: int, lap: DeviceLap, start: int | None,
         end: int | None) -> dict[str, Any]:
    """One API Lap: the device's values, and what it leaves out from records start..end (None, None:
    the file has no records, so the device's values alone)."""
    track = derived.track
    elapsed, moving, distance, gain = lap.elapsed_s, lap.timer_s, lap.distance_m, lap.ascent_m
    aggregated: dict[str, float | None] = {}
    if start is not None and end is not None:
        if elapsed is None:
            elapsed = derived.time[end] - derived.time[start]
        if derived.moving_s is not None:
            moving = derived.moving_s[end] - derived.moving_s[start]
        if distance is None and derived.distance is not None:
            distance = derived.distance[end] - derived.distance[start]
        if gain is None and derived.altitude is not None:
            gain = elevation_gain(derived.altitude[start:end + 1])
        for key, name, aggregate in _LAP_AGGREGATES:
            values = velocity if name == "velocity_smooth" else track.series.get(name) if track.has(name) else None
            aggregated[key] = aggregate(values, start, end)
    # nothing tells standing from moving (no distance): Strava counts it all
    moving = _at_most(moving, elapsed) if moving is not None else elapsed
    if distance is None and derived.distance is None:
        distance = 0.0  # a file without distance (weights): the API's laps say 0
    stated = {"average_heartrate": lap.average_heartrate, "max_heartrate": lap.max_heartrate,
              "average_cadence": lap.average_cadence, "average_watts": lap.average_watts, "max_speed": lap.max_speed}
    average_speed = lap.average_speed
    if average_speed is None and distance is not None and moving:
        average_speed = distance / moving
    start_utc = track.start_utc_s + lap.start_s if track.start_utc_s is not None else None
    return {
        "id": None,
        "name": f"Lap {number}",
        "lap_index": number,
        "split": number,
        "start_date": _iso_utc(start_utc),
        "start_date_local": None,  # the file has no time zone
        "elapsed_time": round(elapsed) if elapsed is not None else None,
        "moving_time": round(moving) if moving is not None else None,
        "distance": round(distance, 2) if distance is not None else None,
        "start_index": start,
        "end_index": end,
        "total_elevation_gain": round(gain, 1) if gain is not None else None,
        "average_speed": round(average_speed, 3) if average_speed is not None else None,
        **{key: value if value is not None else aggregated.get(key) for key, value in stated.items()},
        "device_watts": track.has("watts"),
        "pace_zone": None,
    }


def _iso_utc(epoch_s: float | None) -> str | None:
    if epoch_s is None:
        return None
    return datetime.fromtimestamp(math.floor(epoch_s), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
