"""Benchmark: how close splits and laps derived from device files come to the API's, and how fast.

    python bench/derived_splits.py                   # 120 simulated activities, each as FIT, TCX and GPX
    python bench/derived_splits.py --smoke           # 8 activities of 10 minutes (the test suite runs it)

1. Simulator: for each recorded activity of a simulated history, its device file in each format
   (`bulkfetch.simulator.devicefiles`) is decoded (`activity_files.decode_file`) and derived
   (`bulkfetch.derive`); its splits and laps are compared with the DetailedActivity the simulator's API
   serves, whose splits and laps are solved analytically from the same per-second motion
   (`bulkfetch.simulator.motion`, which never imports `bulkfetch.derive`). But the simulator states its
   splits by derive's own convention (a boundary is the first whole second whose recorded distance
   reaches it), so that comparison shows the pipeline (writing, decoding, deriving) loses nothing, not
   how close that convention comes to the truth. Hence also:
1b. The truth: each full split of the derived splits against the split the simulated athlete really
   ran, which crosses its boundary at a fractional second (found by bisection on the motion's analytic
   distance, with no record and no rounding) and is exactly 1 km or 1 mile long: the error of the end
   second, of the elapsed and moving time, of the distance. Activities cropped on Strava
   after upload must be found stale (`derive.is_stale`) and are left out of the errors, as the import
   leaves them out of the tables. Relative errors are over full splits (a last split of a few metres
   would turn one second into a percentage of nothing); the partial ones count in the absolute errors.
   Moving times of laps without distance (weights) are not compared: the file cannot tell standing
   from moving, and derive gives the elapsed time.
2. Real files: the laps derived from tests/fixtures_files against the devices' own lap and session
   messages (the records a lap spans against the lap's distance and elapsed time, the moving rule
   against the device's timer, the laps' sum against the session).
3. Speed: records per CPU second of `prepare`, `stream_set` and both `splits` (and with `laps` and
   `file_summary`, all the import's compaction asks), pure Python on one core.

Targets (issue 13): elapsed time exact to the second, distance within 0.5 %, elevation difference within
1 m, moving time within 2 %, for files with a device distance (FIT, TCX). GPX has no distance: its
splits are measured with the great-circle distance between positions and reported against the same
targets. Exit status 1 when a FIT or TCX target is missed or a cropped activity is not found stale.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bulkfetch import derive  # noqa: E402 - after the path fix, so the script runs from anywhere
from bulkfetch.activity_files import decode_file  # noqa: E402
from bulkfetch.simulator.devicefiles import fit_file, gpx_file, tcx_file  # noqa: E402
from bulkfetch.simulator.history import Activity, History, detail_of  # noqa: E402
from bulkfetch.simulator.motion import Motion  # noqa: E402
from bulkfetch.track import Track  # noqa: E402

FILES = REPO / "tests" / "fixtures_files"
WRITERS: dict[str, Callable[[Activity], bytes]] = {"fit": fit_file, "tcx": tcx_file, "gpx": gpx_file}
DEVICE_DISTANCE = ("fit", "tcx")
NOW_S = 1_767_225_600  # 2026-01-01T00:00:00Z: the same history whatever the day it runs
ATHLETE_ID = 26462176
SPLIT_KEYS = {"splits_metric": derive.METRIC_SPLIT_M, "splits_standard": derive.STANDARD_SPLIT_M}
REAL_FILES = ("fenix2-run.fit", "edge500-ride.fit", "forerunner-run.tcx")
BISECTION_STEPS = 60  # halving a day-long activity's span 60 times leaves far under a microsecond


@dataclass(frozen=True)
class Target:
    field: str
    limit: float
    unit: str


TARGETS = (Target("elapsed_s", 0.0, "s"), Target("distance_pct", 0.5, "%"), Target("elevation_m", 1.0, "m"),
           Target("moving_pct", 2.0, "%"))


@dataclass
class Errors:
    """Absolute differences, derived against the API's, per field of splits (or laps) of one format."""

    items: int = 0
    count_mismatches: int = 0   # activities whose derived list is longer or shorter than the API's
    worst: dict[str, float] = field(default_factory=dict)
    exact_elapsed: int = 0

    def add(self, name: str, value: float) -> None:
        self.worst[name] = max(self.worst.get(name, 0.0), value)

    def compare(self, derived: list[dict[str, Any]], api: list[dict[str, Any]], full_m: float | None) -> None:
        """Pair the items in order; `full_m`: a split's unit (relative errors over full splits), or None
        for laps (relative errors over every lap)."""
        self.count_mismatches += len(derived) != len(api)
        for mine, theirs in zip(derived, api):
            self.items += 1
            elapsed = abs(mine["elapsed_time"] - theirs["elapsed_time"])
            self.exact_elapsed += elapsed == 0
            self.add("elapsed_s", elapsed)
            self.add("distance_m", abs(mine["distance"] - theirs["distance"]))
            if theirs["distance"] > 0:  # without distance (weights) a file cannot tell standing from moving
                self.add("moving_s", abs(mine["moving_time"] - theirs["moving_time"]))
            if "elevation_difference" in theirs and mine.get("elevation_difference") is not None:
                self.add("elevation_m", abs(mine["elevation_difference"] - theirs["elevation_difference"]))
            if theirs.get("average_heartrate") is not None and mine.get("average_heartrate") is not None:
                self.add("heartrate_bpm", abs(mine["average_heartrate"] - theirs["average_heartrate"]))
            if theirs["distance"] > 0 and theirs["moving_time"] > 0 and (full_m is None or
                                                                      theirs["distance"] >= full_m - 0.05):
                self.add("distance_pct", 100 * abs(mine["distance"] / theirs["distance"] - 1))
                self.add("moving_pct", 100 * abs(mine["moving_time"] / theirs["moving_time"] - 1))

    def misses(self) -> list[str]:
        return [f"{t.field} {self.worst.get(t.field, 0.0):.3g} {t.unit} > {t.limit:g} {t.unit}"
                for t in TARGETS if self.worst.get(t.field, 0.0) > t.limit]


def crossing_s(motion: Motion, target_m: float) -> float:
    """The fractional second at which the simulated athlete's distance (from Strava's start) reaches
    `target_m`: bisection on the motion's analytic distance, which never decreases."""
    low, high = 0.0, float(motion.elapsed_s)
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        if motion.distance_at(middle) >= target_m:
            high = middle
        else:
            low = middle
    return high


@dataclass
class TrueErrors:
    """Derived full splits against the splits the simulated athlete really ran (see the module's 1b)."""

    splits: int = 0
    late_s_total: float = 0.0   # the sum of (derived end second - true crossing), for the mean
    worst: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        self.worst[name] = max(self.worst.get(name, 0.0), value)

    def compare(self, derived: list[dict[str, Any]], motion: Motion, unit_m: float) -> None:
        end_s = 0
        true_start_s = 0.0
        for k, item in enumerate(derived, start=1):
            end_s += item["elapsed_time"]  # splits follow each other from the first record, at 0
            if k * unit_m > motion.distance_m:
                break  # the partial split: it ends where the file ends, as the activity does
            true_end_s = crossing_s(motion, k * unit_m)
            true_moving_s = motion.moving_time(true_end_s) - motion.moving_time(true_start_s)
            self.splits += 1
            self.late_s_total += end_s - true_end_s
            self.add("end_s", abs(end_s - true_end_s))
            self.add("elapsed_s", abs(item["elapsed_time"] - (true_end_s - true_start_s)))
            self.add("moving_s", abs(item["moving_time"] - true_moving_s))
            self.add("moving_pct", 100 * abs(item["moving_time"] / true_moving_s - 1))
            self.add("distance_m", abs(item["distance"] - unit_m))
            self.add("distance_pct", 100 * abs(item["distance"] / unit_m - 1))
            true_start_s = true_end_s


@dataclass
class SimulatorResult:
    splits: dict[str, Errors] = field(default_factory=lambda: {fmt: Errors() for fmt in WRITERS})
    truth: dict[str, TrueErrors] = field(default_factory=lambda: {fmt: TrueErrors() for fmt in WRITERS})
    laps: dict[str, Errors] = field(default_factory=lambda: {fmt: Errors() for fmt in DEVICE_DISTANCE})
    activities: int = 0
    cropped_files: int = 0     # files of activities cropped on Strava after upload
    cropped_found: int = 0     # ... that derive.is_stale found stale
    false_stale: int = 0
    tracks: list[Track] = field(default_factory=list)


def simulated(count: int, seed: int, duration_s: int | None) -> SimulatorResult:
    history = History.build(seed=seed, count=count, athlete_id=ATHLETE_ID, now_s=NOW_S, duration_s=duration_s)
    result = SimulatorResult()
    for activity in sorted(history.activities.values(), key=lambda a: a.id):
        if activity.manual:
            continue
        detail = detail_of(activity, history.segments)
        motion = activity.motion(routed=False)
        result.activities += 1
        for fmt, write in WRITERS.items():
            if fmt != "fit" and not activity.has_gps:
                continue  # a recording without positions is a FIT file only
            track = decode_file(write(activity), f"{activity.id}.{fmt}")
            result.tracks.append(track)
            prepared = derive.prepare(track, activity.sport.sport_type)  # as the import: the CSV's sport
            stale = derive.is_stale(derive.file_summary(prepared), detail)
            if activity.cropped:
                result.cropped_files += 1
                result.cropped_found += stale
                continue
            result.false_stale += stale
            for key, unit_m in SPLIT_KEYS.items():
                if key in detail:
                    derived = derive.splits(prepared, unit_m)
                    result.splits[fmt].compare(derived, detail[key], unit_m)
                    result.truth[fmt].compare(derived, motion, unit_m)
            if fmt in result.laps:
                result.laps[fmt].compare(derive.laps(prepared), detail["laps"], None)
    return result


@dataclass(frozen=True)
class RealLaps:
    name: str
    laps: int
    distance_m: float      # worst |distance over the lap's records - the device's lap distance|
    elapsed_s: float       # worst |time over the lap's records - the device's lap time|
    moving_pct: float      # worst |moving rule - device timer| / timer, per lap
    sum_distance_m: float | None  # |sum of the laps' distances - the session's| (None: no session distance)


def real_laps(name: str) -> RealLaps:
    track = decode_file((FILES / name).read_bytes(), name)
    prepared = derive.prepare(track)
    assert prepared.distance is not None
    laps = derive.laps(prepared)
    distance = elapsed = moving = 0.0
    for lap, device in zip(laps, track.laps):
        start, end = lap["start_index"], lap["end_index"]
        stated_s = device.elapsed_s if device.elapsed_s is not None else device.timer_s
        distance = max(distance, abs(prepared.distance[end] - prepared.distance[start] - (device.distance_m or 0)))
        elapsed = max(elapsed, abs(prepared.time[end] - prepared.time[start] - (stated_s or 0)))
        if device.timer_s:
            moving = max(moving, 100 * abs(lap["moving_time"] / device.timer_s - 1))
    session_m = track.session.distance_m if track.session is not None else None
    summed = abs(sum(lap["distance"] for lap in laps) - session_m) if session_m is not None else None
    return RealLaps(name, len(laps), distance, elapsed, moving, summed)


def records_per_s(tracks: list[Track], everything: bool) -> float:
    """Records per CPU second of the derivations, best of three passes over the tracks (CPU time, not
    wall time: the machine may be shared)."""
    records = sum(track.records for track in tracks)
    best = math.inf
    for _ in range(3):
        started = time.process_time()
        for track in tracks:
            prepared = derive.prepare(track)
            derive.stream_set(prepared)
            derive.splits(prepared, derive.METRIC_SPLIT_M)
            derive.splits(prepared, derive.STANDARD_SPLIT_M)
            if everything:
                derive.laps(prepared)
                derive.file_summary(prepared)
        best = min(best, time.process_time() - started)
    return records / best if best > 0 else math.inf


def render(result: SimulatorResult) -> str:
    lines = [f"{'':<12}{'items':>7}{'count diff':>11}{'elapsed':>9}{'exact':>7}{'distance':>10}{'distance':>10}"
             f"{'elevation':>10}{'moving':>8}{'moving':>8}{'avg HR':>8}",
             f"{'':<12}{'':>7}{'':>11}{'max s':>9}{'%':>7}{'max m':>10}{'max %':>10}{'max m':>10}"
             f"{'max s':>8}{'max %':>8}{'max':>8}"]
    for kind, table in (("splits", result.splits), ("laps", result.laps)):
        for fmt, errors in table.items():
            worst = errors.worst
            exact = 100 * errors.exact_elapsed / errors.items if errors.items else math.nan
            lines.append(
                f"{kind + ' ' + fmt:<12}{errors.items:>7}{errors.count_mismatches:>11}"
                f"{worst.get('elapsed_s', 0):>9.0f}{exact:>7.1f}{worst.get('distance_m', 0):>10.2f}"
                f"{worst.get('distance_pct', 0):>10.3f}{worst.get('elevation_m', 0):>10.2f}"
                f"{worst.get('moving_s', 0):>8.0f}{worst.get('moving_pct', 0):>8.2f}"
                f"{worst.get('heartrate_bpm', 0):>8.2f}")
    return "\n".join(lines)


def render_truth(result: SimulatorResult) -> str:
    lines = [f"{'':<12}{'splits':>7}{'end s':>8}{'end s':>8}{'elapsed':>9}{'distance':>10}{'distance':>10}"
             f"{'moving':>8}{'moving':>8}",
             f"{'':<12}{'':>7}{'mean':>8}{'max':>8}{'max s':>9}{'max m':>10}{'max %':>10}{'max s':>8}{'max %':>8}"]
    for fmt, errors in result.truth.items():
        worst = errors.worst
        mean = errors.late_s_total / errors.splits if errors.splits else math.nan
        lines.append(f"{'truth ' + fmt:<12}{errors.splits:>7}{mean:>8.2f}{worst.get('end_s', 0):>8.2f}"
                     f"{worst.get('elapsed_s', 0):>9.2f}{worst.get('distance_m', 0):>10.2f}"
                     f"{worst.get('distance_pct', 0):>10.3f}{worst.get('moving_s', 0):>8.2f}"
                     f"{worst.get('moving_pct', 0):>8.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--activities", type=int, default=120, help="simulated activities (default 120)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--duration", type=int, help="seconds every activity lasts (default: as simulated)")
    parser.add_argument("--smoke", action="store_true", help="8 activities of 10 minutes")
    args = parser.parse_args(argv)
    count, duration_s = (8, 600) if args.smoke else (args.activities, args.duration)
    print(f"Python {platform.python_version()} on {platform.machine()}; {count} simulated activities, seed {args.seed}"
          + (f", {duration_s} s each" if duration_s else ""))
    started = time.perf_counter()
    result = simulated(count, args.seed, duration_s)
    print(f"{result.activities} recorded activities in {time.perf_counter() - started:.1f} s; cropped on Strava: "
          f"{result.cropped_found} of {result.cropped_files} files found stale; uncropped files found stale: "
          f"{result.false_stale}")
    print(render(result))
    failures = [f"{kind} {fmt}: {miss}" for kind, table in (("splits", result.splits), ("laps", result.laps))
                for fmt, errors in table.items() if fmt in DEVICE_DISTANCE for miss in errors.misses()]
    if result.cropped_found < result.cropped_files:
        failures.append("a cropped activity's file was not found stale")
    print(f"targets: elapsed exact, distance <= 0.5 %, elevation <= 1 m, moving <= 2 % (FIT, TCX): "
          f"{'met' if not failures else 'MISSED: ' + '; '.join(failures)}")
    gpx = result.splits["gpx"].misses()
    print(f"GPX (great-circle distance, no device distance): {'within them' if not gpx else ', '.join(gpx)}")
    print("\nfull splits against the true crossings (fractional seconds; the end second is derived - true):")
    print(render_truth(result))

    print(f"\n{'real file':<22}{'laps':>6}{'distance max m':>16}{'elapsed max s':>15}{'moving vs timer %':>19}"
          f"{'laps sum - session m':>22}")
    for row in map(real_laps, REAL_FILES):
        summed = f"{row.sum_distance_m:.2f}" if row.sum_distance_m is not None else "-"
        print(f"{row.name:<22}{row.laps:>6}{row.distance_m:>16.2f}{row.elapsed_s:>15.1f}{row.moving_pct:>19.2f}"
              f"{summed:>22}")

    fast = records_per_s(result.tracks, everything=False)
    full = records_per_s(result.tracks, everything=True)
    records = sum(track.records for track in result.tracks)
    print(f"\nspeed over {records:,} records, per CPU second: prepare + stream_set + both splits {fast:,.0f} "
          f"records/s; with laps and file_summary {full:,.0f} records/s (target 300,000)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
