"""A seeded synthetic Strava athlete: the activity list, and DetailedActivity, laps and streams on demand.

Pure: no I/O, no clock (the caller passes `now_s`), no global randomness. Building the list draws every
activity's summary fields from one `random.Random(seed)`; the bulky parts (splits, laps, efforts, streams,
the full polyline) are derived when asked from a per-activity seed, so 5,000 activities build in a fraction
of a second and the same activity always looks the same. Every recorded activity has one underlying
per-second motion (`Activity.motion`, see `motion`): its summary's distance, times, speed and elevation,
its streams, splits and laps, and the device file of the account export all come from it. Field names, types
and nesting copy the real responses in /work/shared/strava/fixtures/real; fields that Strava leaves out
(heart rate without a sensor, watts on runs, device name on manual entries) are left out here too rather
than set to null.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bulkfetch.simulator.motion import Motion, Sensors, Signal, Span, Wave, plan_pauses
from bulkfetch.simulator.pace_model import DEFAULT_PACE_MODEL, PaceModel, grade_cost, pace_profile, run_seconds
from bulkfetch.simulator.route import Hills, Route, build_route

JSON = dict[str, Any]

FIRST_ACTIVITY_ID = 10_000_000_000  # above 2**32, like real ids (16181809559)
HISTORY_YEARS = 4
METRIC_SPLIT_M = 1000.0
STANDARD_SPLIT_M = 1609.344  # the international mile
MAX_STREAM_POINTS = 3601  # one point a second, thinned for activities over an hour (keeps tests fast)
STREAM_TYPES = ("time", "distance", "latlng", "altitude", "velocity_smooth", "heartrate", "cadence", "watts",
                "temp", "moving", "grade_smooth")
# Keys that /athlete/activities leaves out and /activities/{id} adds.
DETAIL_ONLY = frozenset({
    "description", "calories", "perceived_exertion", "prefer_perceived_exertion", "hide_from_home",
    "device_name", "embed_token", "gear", "photos", "stats_visibility", "available_zones",
    "splits_metric", "splits_standard", "laps", "best_efforts", "segment_efforts",
})
BEST_EFFORTS_M = (("400m", 400), ("1/2 mile", 805), ("1K", 1000), ("1 mile", 1609), ("2 mile", 3219),
                  ("5K", 5000), ("10K", 10000), ("15K", 15000), ("10 mile", 16090), ("20K", 20000),
                  ("Half-Marathon", 21097), ("30K", 30000), ("Marathon", 42195))


@dataclass(frozen=True)
class Sport:
    """How one kind of activity looks: its share of the history and the ranges its numbers come from."""

    sport_type: str
    type: str
    weight: float
    speed_mps: tuple[float, float]
    duration_s: tuple[int, int]
    names: tuple[str, ...]
    gps: bool = True
    has_distance: bool = True
    runs: bool = False          # splits, best efforts, pace zones
    segments: str | None = None  # activity_type of the segments it crosses
    cadence: bool = False
    power: bool = False
    trainer: bool = False
    gear: str | None = None


SPORTS = (
    Sport("Run", "Run", 0.46, (2.6, 3.6), (1500, 6000), (
        "Morning Run", "Lunch Run", 'Run "easy" 🥯', "Bagel Run 🥯", "Tempo 8×400m", "Long Run — 30K",
        "Run with Artyom", "Ørsted Lauf", "Recovery jog 🐢", "Évening Run", "Intervals 'n' hills"),
          runs=True, segments="Run", cadence=True, gear="g19999385"),
    Sport("TrailRun", "Run", 0.07, (2.0, 3.0), (2400, 9000), ("Trail 🌲 d'été", "Mt. Tam loop ⛰️", "Muddy trails"),
          runs=True, segments="Run", cadence=True, gear="g3423618"),
    Sport("Ride", "Ride", 0.11, (6.0, 9.0), (2400, 14000), ("Morning Ride", "Café ride ☕", "Century-ish 🚴"),
          segments="Ride", cadence=True, power=True, gear="b7654321"),
    Sport("VirtualRide", "VirtualRide", 0.06, (7.0, 10.0), (1800, 5400), ("Zwift - Watopia", "Zwift - London"),
          segments="Ride", cadence=True, power=True, trainer=True, gear="b7654322"),
    Sport("Swim", "Swim", 0.06, (0.7, 1.1), (1200, 3600), ("Pool swim 🏊", "Masters swim"), gps=False),
    Sport("Walk", "Walk", 0.06, (1.2, 1.6), (1200, 5400), ("Evening Walk", "Walk with the dog 🐕")),
    Sport("Hike", "Hike", 0.04, (0.9, 1.4), (3600, 18000), ("Hike up Bear Mountain", "Sentier «du lac»")),
    Sport("WeightTraining", "WeightTraining", 0.05, (0.0, 0.0), (1800, 4200),
          ("Séance de muscu 💪", "Gym: legs", "Core & mobility"), gps=False, has_distance=False),
)
MANUAL_SHARE = 0.05
PRIVATE_SHARE = 0.07
SHARED_START_SHARE = 0.02  # activities that start in the same second as their predecessor
CROPPED_SHARE = 0.02  # recorded activities the athlete cropped on Strava after upload (at least one)
MOTION_FIELDS = frozenset({"max_speed", "total_elevation_gain", "start_latlng", "end_latlng", "elev_high",
                           "elev_low"})  # summary fields a recording's motion sets
GAPS_SHARE = 0.15  # recordings with a few seconds lacking a GPS fix and a heart-rate reading
RACE_SHARE = 0.4  # runs marked workout_type 1 that are races (the rest become default runs)
RACE_DISTANCES_M = (5000.0, 10000.0, 21097.5, 42195.0)
RACE_WEIGHTS = (0.45, 0.3, 0.17, 0.08)
# Effort (pace against race pace) of training runs by workout_type: default, long run, workout.
TRAINING_EFFORT = {None: (1.15, 1.3), 0: (1.15, 1.3), 2: (1.15, 1.25), 3: (1.02, 1.1)}
# A paced run's average heart rate: higher the harder its effort, lower at the same effort each later year (the
# athlete gets fitter), so that the report's heart rate against speed shows the cloud moving year by year.
RACE_HEART_RATE = 168.0  # bpm at race effort in FITNESS_BASE_YEAR
HEART_RATE_PER_EFFORT = 110.0  # bpm less per unit of effort above race effort: about 140 at 1.25
FITNESS_BPM_PER_YEAR = 4.0
FITNESS_BASE_YEAR = 2022
HEART_RATE_NOISE = 3.0  # bpm either way, from one run to the next
HEART_RATE_RANGE = (100.0, 190.0)
RUN_HEART_RATE_MARGIN = (6.0, 10.0)  # bpm from a paced run's average to its maximum


@dataclass(frozen=True)
class Zone:
    label: str
    standard_offset_s: int
    dst: tuple[tuple[int, int], tuple[int, int]] | None  # (month, day) from, to; approximate within a week
    home: tuple[float, float]
    base_altitude_m: float


ZONES = (
    Zone("(GMT-05:00) America/New_York", -18000, ((3, 10), (11, 3)), (40.7812, -73.9665), 30.0),
    Zone("(GMT+01:00) Europe/Copenhagen", 3600, ((3, 28), (10, 28)), (55.6761, 12.5683), 10.0),
    Zone("(GMT+09:00) Asia/Tokyo", 32400, None, (35.6852, 139.7528), 40.0),
)
ZONE_WEIGHTS = (0.8, 0.12, 0.08)


def utc_offset_s(zone: Zone, utc: datetime) -> int:
    """The zone's offset from UTC at `utc`, one hour more inside its (approximate) summer-time dates."""
    if zone.dst is None:
        return zone.standard_offset_s
    start, end = zone.dst
    return zone.standard_offset_s + (3600 if start <= (utc.month, utc.day) < end else 0)


def iso_z(moment: datetime) -> str:
    """Strava's date format: seconds, and a `Z` even on local wall times (start_date_local)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_of(epoch_s: int) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=UTC)


def parse_iso_z(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())


def encode_polyline(points: list[tuple[float, float]]) -> str:
    """Google's encoded polyline (precision 5), the format of map.summary_polyline and map.polyline."""
    out: list[str] = []
    prev_lat = prev_lng = 0
    for lat, lng in points:
        ilat, ilng = round(lat * 1e5), round(lng * 1e5)
        for delta in (ilat - prev_lat, ilng - prev_lng):
            value = ~(delta << 1) if delta < 0 else delta << 1
            while value >= 0x20:
                out.append(chr((0x20 | (value & 0x1F)) + 63))
                value >>= 5
            out.append(chr(value + 63))
        prev_lat, prev_lng = ilat, ilng
    return "".join(out)


@dataclass
class Activity:
    """One activity of the history: its list entry plus detail-only scalars (`record`), and the seed its
    lazily generated parts are drawn from. `cropped`: the athlete cut its start or end on Strava after
    upload, so the device file holds a longer recording than the API describes."""

    id: int
    start_s: int
    seed: int
    sport: Sport
    zone: Zone
    record: JSON
    cropped: bool = False
    pace_model: PaceModel = DEFAULT_PACE_MODEL

    def rng(self, purpose: str) -> random.Random:
        return activity_rng(self.seed, self.id, purpose)

    @property
    def manual(self) -> bool:
        return bool(self.record.get("manual"))

    @property
    def private(self) -> bool:
        return bool(self.record.get("private"))

    @property
    def has_gps(self) -> bool:
        return self.sport.gps and not self.manual

    @property
    def has_heartrate(self) -> bool:
        return bool(self.record.get("has_heartrate"))

    @property
    def distance_m(self) -> float:
        return float(self.record.get("distance") or 0.0)

    @property
    def elapsed_s(self) -> int:
        return int(self.record.get("elapsed_time") or 0)

    @property
    def moving_s(self) -> int:
        return int(self.record.get("moving_time") or 0)

    def motion(self, *, routed: bool = True) -> Motion:
        """The recording behind this activity, second by second (its summary's numbers exactly). Without
        `routed`, no route (the costly part) even with GPS: for what needs only the times and distances."""
        rng = self.rng("motion")
        wave, waves = rng.uniform(0.05, 0.3), rng.randint(1, 6)
        moving_s = max(self.moving_s, 1)
        lead_s, trail_s = self.crop_s()
        motion = Motion(distance_m=self.distance_m if self.sport.has_distance else 0.0, moving_s=moving_s,
                        elapsed_s=max(self.elapsed_s, moving_s), wave=wave, waves=waves,
                        pauses=plan_pauses(rng, moving_s, self.elapsed_s - moving_s), route=None,
                        sensors=self.sensors(rng), dropouts=self.dropouts(rng), lead_s=lead_s, trail_s=trail_s)
        if self.paced:
            seconds = run_seconds(self.pace_model, self.hills().slope, self.distance_m, wave, waves)
            motion = replace(motion, pace=pace_profile(seconds, self.distance_m, moving_s))
        if not (routed and self.has_gps):
            return motion
        return replace(motion, route=self.route(motion.distance_at(motion.first_s), motion.distance_at(motion.last_s)))

    @property
    def paced(self) -> bool:
        """Whether the athlete's pace model drives the recording: runs with GPS (the hills) and distance."""
        return self.sport.runs and self.has_gps and self.distance_m > 0

    def crop_s(self) -> tuple[int, int]:
        """Seconds the device recorded before and after what Strava keeps (0, 0 unless cropped): a trail of
        6-25 % (the watch left running on the way home), sometimes a lead too."""
        if not self.cropped:
            return 0, 0
        rng = self.rng("crop")
        trail_s = max(60, round(self.elapsed_s * rng.uniform(0.06, 0.25)))
        return rng.choice((0, max(30, round(self.elapsed_s * rng.uniform(0.02, 0.08))))), trail_s

    def route(self, start_m: float, end_m: float) -> Route:
        """Where the activity goes, from arc length `start_m` to `end_m` (0 .. distance without a crop).
        Long rides have longer straights (country roads)."""
        rng, origin, hills = self._route_start()
        return build_route(rng, origin=origin, start_m=start_m, end_m=end_m, hills=hills,
                           roam_m=min(max(self.distance_m / 6, 400.0), 4000.0),
                           stretch=min(max(self.distance_m / 8000, 1.0), 6.0))

    def hills(self) -> Hills:
        return self._route_start()[2]

    def _route_start(self) -> tuple[random.Random, tuple[float, float], Hills]:
        """The route's generator, its first point, and its rolling elevation profile: 1-4 hills of 2-25 m
        over the activity's distance (drawn first, so the profile costs no legs)."""
        rng = self.rng("route")
        origin, hills = route_start(rng, self.zone, self.distance_m)
        return rng, origin, hills

    def sensors(self, rng: random.Random) -> Sensors:
        """Heart rate swinging between about the summary's average and maximum, cadence and power around
        their averages, a steady temperature; only the sensors the summary says the activity had."""
        record = self.record
        heartrate = cadence = watts = None
        if self.has_heartrate:
            mean = float(record["average_heartrate"])
            swing = max(float(record["max_heartrate"]) - mean - 3, 2.0)
            heartrate = Signal(mean, (Wave(swing, 2 * math.pi / rng.uniform(600, 1800), rng.uniform(0, 2 * math.pi)),
                                      Wave(2.5, rng.uniform(0.5, 1.3), rng.uniform(0, 2 * math.pi))))
        if "average_cadence" in record:
            cadence = Signal(float(record["average_cadence"]),
                             (Wave(3.0, rng.uniform(0.2, 0.6), rng.uniform(0, 2 * math.pi)),))
        if "average_watts" in record:
            mean = float(record["average_watts"])
            watts = Signal(mean, (Wave(0.3 * mean, rng.uniform(0.05, 0.2), rng.uniform(0, 2 * math.pi)),
                                  Wave(0.15 * mean, rng.uniform(0.7, 1.4), rng.uniform(0, 2 * math.pi))))
        return Sensors(heartrate=heartrate, cadence=cadence, watts=watts, temp=record.get("average_temp"))

    def dropouts(self, rng: random.Random) -> frozenset[int]:
        """A few seconds without a GPS fix or a heart-rate reading, in some recordings; always at seconds the
        streams show, so the API's streams and the device file lack the same readings."""
        if rng.random() >= GAPS_SHARE:
            return frozenset()
        count = self.stream_points()
        return frozenset(self.stream_second(i) for i in rng.sample(range(1, count), k=min(3, count - 1)))

    def stream_seconds(self) -> list[int]:
        """The seconds the streams show: every second, thinned evenly to MAX_STREAM_POINTS for long ones."""
        count, elapsed_s = self.stream_points(), self.elapsed_s
        return [_stream_second(i, elapsed_s, count) for i in range(count)]

    def stream_second(self, index: int) -> int:
        return _stream_second(index, self.elapsed_s, self.stream_points())

    def stream_points(self) -> int:
        """original_size of every stream."""
        return max(2, min(self.elapsed_s + 1, MAX_STREAM_POINTS))

    def index_at(self, fraction: float) -> int:
        return round(min(max(fraction, 0.0), 1.0) * (self.stream_points() - 1))


def _stream_second(index: int, elapsed_s: int, points: int) -> int:
    """The second a stream's `index`-th point shows, of `points` spread evenly over `elapsed_s`."""
    return round(index * elapsed_s / (points - 1))


def activity_rng(seed: int, activity_id: int, purpose: str) -> random.Random:
    """The generator of one lazily drawn part of an activity."""
    return random.Random(f"{seed}:{activity_id}:{purpose}")


def route_start(rng: random.Random, zone: Zone, distance_m: float) -> tuple[tuple[float, float], Hills]:
    """A route's first point near the zone's home, and its profile: 1-4 hills of 2-25 m over `distance_m`."""
    home = zone.home
    origin = (home[0] + rng.uniform(-0.03, 0.03), home[1] + rng.uniform(-0.03, 0.03))
    height_m = rng.uniform(2, 25)
    hills = Hills(base_m=zone.base_altitude_m + height_m + rng.uniform(0, 40), height_m=height_m,
                  period_m=max(distance_m, 50.0) / rng.randint(1, 4), phase=rng.uniform(0, 2 * math.pi))
    return origin, hills


@dataclass(frozen=True)
class PacedRun:
    workout_type: int | None
    distance_m: float
    moving_s: int
    effort: float  # pace against race pace on the day (1: race effort in normal form)


def paced_run(model: PaceModel, rng: random.Random, zone: Zone, workout_type: int | None, distance_m: float,
              hills_rng: random.Random) -> PacedRun:
    """A recorded run as the athlete's pace model runs it: some runs marked as races (workout_type 1) are
    races over a standard distance at race effort, the others keep their distance at a training effort
    (the rest of those marked 1 become default runs); the moving time follows from the model, the course's
    hills and the day's form."""
    if workout_type == 1 and rng.random() < RACE_SHARE:
        distance_m, effort = rng.choices(RACE_DISTANCES_M, weights=RACE_WEIGHTS)[0], 1.0
    else:
        workout_type = 0 if workout_type == 1 else workout_type
        effort = rng.uniform(*TRAINING_EFFORT[workout_type])
    effort *= math.exp(rng.gauss(0.0, model.day_sd))
    _, hills = route_start(hills_rng, zone, distance_m)
    seconds = sum(run_seconds(model, hills.slope, distance_m, 0.0, 1))
    return PacedRun(workout_type, distance_m, max(1, round(effort * seconds)), effort)


def run_heart_rate(effort: float, start: datetime, rng: random.Random) -> tuple[float, float]:
    """A paced run's average heart rate (see RACE_HEART_RATE) and its maximum's margin above it: a few beats,
    so that its splits' heart rates stay near the run's (the recording's slow swing follows from the margin)."""
    fitter = FITNESS_BPM_PER_YEAR * (start.year - FITNESS_BASE_YEAR)
    bpm = RACE_HEART_RATE - HEART_RATE_PER_EFFORT * (effort - 1) - fitter + rng.uniform(-1, 1) * HEART_RATE_NOISE
    return min(max(bpm, HEART_RATE_RANGE[0]), HEART_RATE_RANGE[1]), rng.uniform(*RUN_HEART_RATE_MARGIN)


# ---------------------------------------------------------------- list entries


def make_activity(rng: random.Random, *, activity_id: int, start_s: int, athlete_id: int, seed: int,
                  sport: Sport | None = None, manual: bool | None = None, private: bool | None = None,
                  duration_s: int | None = None, pace_model: PaceModel = DEFAULT_PACE_MODEL) -> Activity:
    """Draw one activity's summary fields (and the detail-only scalars) from `rng`. `duration_s` fixes the
    elapsed time (its pauses come out of it) instead of drawing it from the sport's range; otherwise a
    recorded run's distance and moving time come from the athlete's `pace_model` (see `paced_run`)."""
    sport = sport or rng.choices(SPORTS, weights=[s.weight for s in SPORTS])[0]
    manual = rng.random() < MANUAL_SHARE if manual is None else manual
    private = rng.random() < PRIVATE_SHARE if private is None else private
    zone = rng.choices(ZONES, weights=ZONE_WEIGHTS)[0]
    start = utc_of(start_s)
    offset_s = utc_offset_s(zone, start)
    if duration_s is None:
        moving_s = rng.randint(*sport.duration_s)
        elapsed_s = moving_s if manual else moving_s + rng.choice((0, 0, rng.randint(5, 600)))
    else:
        elapsed_s = duration_s
        moving_s = duration_s if manual else duration_s - min(rng.choice((0, 0, rng.randint(5, 600))), duration_s // 2)
    speed = rng.uniform(*sport.speed_mps)
    distance = round(speed * moving_s, 1) if sport.has_distance else 0.0
    workout_type = _workout_type(rng, sport)
    run = None
    if sport.runs and sport.gps and not manual and duration_s is None:
        run = paced_run(pace_model, activity_rng(seed, activity_id, "pace"), zone, workout_type, distance,
                        activity_rng(seed, activity_id, "route"))
        elapsed_s += run.moving_s - moving_s
        workout_type, distance, moving_s = run.workout_type, run.distance_m, run.moving_s
    elif workout_type == 1:  # a race runs a standard distance at race effort: only a paced run is one
        workout_type = 0
    has_heartrate = not manual and rng.random() < 0.8
    name = "Ørsted Lauf" if sport.sport_type == "Run" and zone.home[0] > 50 and rng.random() < 0.5 \
        else rng.choice(sport.names)
    record: JSON = {
        "athlete": {"id": athlete_id, "resource_state": 1},
        "name": name,
        "distance": distance,
        "moving_time": moving_s,
        "elapsed_time": elapsed_s,
        # A recording's gain and top speed come from its motion (see _apply_motion); a manual entry's are typed in.
        "total_elevation_gain": round(rng.uniform(0, 15) * distance / 1000, 1) if sport.gps and manual else 0,
        "type": sport.type,
        "sport_type": sport.sport_type,
        "workout_type": workout_type,
        "id": activity_id,
        "start_date": iso_z(start),
        "start_date_local": iso_z(start + timedelta(seconds=offset_s)),
        "timezone": zone.label,
        "utc_offset": float(offset_s),
        "location_city": None,
        "location_state": None,
        "location_country": None,
        "achievement_count": 0 if manual else rng.randint(0, 12),
        "kudos_count": rng.randint(0, 30),
        "comment_count": rng.choice((0, 0, 0, 1, 2)),
        "athlete_count": 1 if manual else rng.choice((1, 1, 1, 2, 3)),
        "photo_count": 0,
        "map": {"id": f"a{activity_id}", "summary_polyline": "", "resource_state": 2},
        "trainer": sport.trainer,
        "commute": sport.sport_type == "Ride" and rng.random() < 0.2,
        "manual": manual,
        "private": private,
        "visibility": "only_me" if private else rng.choice(("everyone", "everyone", "followers_only")),
        "flagged": False,
        "gear_id": sport.gear,
        "start_latlng": [],
        "end_latlng": [],
        "average_speed": round(distance / moving_s, 3) if moving_s else 0.0,
        "max_speed": round(speed * rng.uniform(1.3, 2.2), 1) if sport.has_distance and manual else 0.0,
    }
    if sport.cadence and not manual:
        record["average_cadence"] = round(rng.uniform(76, 92), 1)
    if not manual and rng.random() < 0.3:
        record["average_temp"] = rng.randint(-5, 32)
    if sport.power and not manual:
        watts = rng.uniform(140, 260)
        record.update(average_watts=round(watts, 1), kilojoules=round(watts * moving_s / 1000, 1),
                      device_watts=sport.trainer, max_watts=round(watts * rng.uniform(2, 4)),
                      weighted_average_watts=round(watts * rng.uniform(1.02, 1.12)))
    record["has_heartrate"] = has_heartrate
    if has_heartrate:
        # Drawn for every activity, so that the draws after these stay its seed's.
        average, above = rng.uniform(120, 165), rng.uniform(10, 30)
        if run is not None:
            average, above = run_heart_rate(run.effort, start, activity_rng(seed, activity_id, "heart"))
        record["average_heartrate"] = round(average, 1)
        record["max_heartrate"] = float(round(record["average_heartrate"] + above))
    record["heartrate_opt_out"] = False
    record["display_hide_heartrate_option"] = has_heartrate
    upload_id = None if manual else rng.randint(10**10, 2 * 10**10)
    record.update(
        upload_id=upload_id,
        external_id=None if manual else f"garmin_ping_{rng.randint(10**11, 10**12)}",
        from_accepted_tag=False,
        pr_count=0 if manual else rng.choice((0, 0, 0, 1, 2)),
        total_photo_count=rng.choice((0, 0, 0, 1, 4)),
        has_kudoed=False,
    )
    if upload_id is not None:
        record["upload_id_str"] = str(upload_id)
    if has_heartrate:
        record["suffer_score"] = float(rng.randint(5, 300))
    record.update(_detail_scalars(rng, record, sport, manual))
    activity = Activity(id=activity_id, start_s=start_s, seed=seed, sport=sport, zone=zone, record=record,
                        pace_model=pace_model)
    if not manual:
        _apply_motion(activity)
    return activity


def _workout_type(rng: random.Random, sport: Sport) -> int | None:
    """Runs: null or 0 default / 1 race / 2 long run / 3 workout; rides: null or 10-12; others null."""
    if sport.runs:
        return rng.choice((None, None, 0, 0, 1, 2, 3))
    if sport.type == "Ride":
        return rng.choice((None, 10, 12))
    return None


def _detail_scalars(rng: random.Random, record: JSON, sport: Sport, manual: bool) -> JSON:
    scalars: JSON = {
        "description": rng.choice((None, None, "Felt good 👍", 'Coach said "keep it easy"', "Ørestad → Amager")),
        "calories": round(rng.uniform(5, 12) * record["moving_time"] / 60, 1),
        "perceived_exertion": None,
        "prefer_perceived_exertion": None,
        "hide_from_home": False,
        "embed_token": f"{rng.getrandbits(160):040x}",
        "photos": {"primary": None, "count": 0},
        "stats_visibility": [{"type": "heart_rate", "visibility": "everyone"},
                             {"type": "pace", "visibility": "everyone"}],
        "available_zones": ["heartrate", "pace"] if record["has_heartrate"] else [],
    }
    if not manual:
        scalars["device_name"] = rng.choice(("Garmin Forerunner 265", "Apple Watch Ultra", "Zwift"
                                             if sport.trainer else "COROS PACE 3"))
    if sport.gear:
        scalars["gear"] = {"id": sport.gear, "primary": True, "name": f"{sport.sport_type} gear",
                           "nickname": "", "resource_state": 2, "retired": False,
                           "distance": round(rng.uniform(1e5, 2e6), 1), "converted_distance": 0.0}
    return scalars


def _apply_motion(activity: Activity) -> None:
    """The summary fields a recording determines, from its motion: the top speed and, with GPS, the elevation
    gain and range. Its start and end points and summary_polyline need the route's legs: `placed` draws them
    when the activity is first shown (building 5,000 routes up front would make a history slow to build)."""
    motion = activity.motion(routed=False)
    record = activity.record
    record["max_speed"] = round(motion.top_speed, 1)
    if not activity.has_gps:
        return
    hills = activity.hills()
    record["total_elevation_gain"] = round(hills.gain(0.0, motion.distance_m), 1)
    low_m, high_m = hills.extremes(0.0, motion.distance_m)
    record["elev_high"] = round(high_m, 1)
    record["elev_low"] = round(low_m, 1)
    record["start_latlng"], record["end_latlng"] = [], []
    record["map"]["summary_polyline"] = ""


def placed(activity: Activity) -> JSON:
    """The activity's record with its start and end points and summary_polyline drawn from its route."""
    record = activity.record
    if activity.has_gps and not record["start_latlng"]:
        motion = activity.motion()
        assert motion.route is not None
        distance_m = motion.distance_m
        record["start_latlng"] = latlng(motion.route.point(0.0))
        record["end_latlng"] = latlng(motion.route.point(distance_m))
        record["map"]["summary_polyline"] = encode_polyline([motion.route.point(distance_m * i / 24)
                                                             for i in range(25)])
    return record


def latlng(point: tuple[float, float]) -> list[float]:
    """A position as the API writes it: [lat, lng], 6 decimals."""
    return [round(point[0], 6), round(point[1], 6)]


def build_activities(*, seed: int, count: int, athlete_id: int, now_s: float, first_id: int = FIRST_ACTIVITY_ID,
                     duration_s: int | None = None, pace_model: PaceModel = DEFAULT_PACE_MODEL) -> list[Activity]:
    """`count` activities over about HISTORY_YEARS years, newest a few hours before `now_s`, ids rising
    from `first_id` with start time (with gaps), a few pairs starting in the same second, and a few recorded
    ones cropped after upload. With `duration_s` every activity lasts exactly that long."""
    rng = random.Random(seed)
    span_s = HISTORY_YEARS * 365 * 86400
    mean_gap_s = span_s / max(count, 1)
    starts: list[int] = []
    start_s = int(now_s) - rng.randint(2 * 3600, 30 * 3600)
    for _ in range(count):
        starts.append(start_s)
        if rng.random() >= SHARED_START_SHARE:
            start_s -= max(1, int(mean_gap_s * rng.uniform(0.2, 1.8)))
    activities = []
    activity_id = first_id
    for start_s in reversed(starts):  # oldest first, so ids grow with time
        activity_id += rng.randint(1_000, 20_000_000)
        activities.append(make_activity(rng, activity_id=activity_id, start_s=start_s, athlete_id=athlete_id,
                                        seed=seed, duration_s=duration_s, pace_model=pace_model))
    recorded = [a for a in activities if a.has_gps]
    for activity in random.Random(f"{seed}:cropped").sample(recorded, k=min(len(recorded), max(1, round(
            CROPPED_SHARE * len(recorded))))):
        activity.cropped = True
    return activities


def summary_of(activity: Activity) -> JSON:
    """SummaryActivity as listed: resource_state 2, no detail-only keys, map without polyline."""
    listed = {key: value for key, value in placed(activity).items() if key not in DETAIL_ONLY}
    return {"resource_state": 2, **listed}


# ---------------------------------------------------------------- detail


def detail_of(activity: Activity, segments: list[JSON]) -> JSON:
    """DetailedActivity: resource_state 3, map with polyline, and the parts this kind of activity has."""
    record = placed(activity)
    detailed: JSON = {"resource_state": 3, **record}
    detailed["map"] = {**record["map"], "resource_state": 3}
    if activity.manual:
        return detailed
    motion = activity.motion()
    if motion.route is not None:
        detailed["map"]["polyline"] = encode_polyline([motion.route.point(motion.distance_m * i / 199)
                                                       for i in range(200)])
    if activity.sport.segments and activity.has_gps:
        detailed["segment_efforts"] = segment_efforts(activity, segments)
    if activity.sport.runs:
        detailed["splits_metric"] = splits(activity, motion, METRIC_SPLIT_M)
        detailed["splits_standard"] = splits(activity, motion, STANDARD_SPLIT_M)
    detailed["laps"] = laps_of(activity, motion)
    if activity.sport.runs:
        detailed["best_efforts"] = best_efforts(activity)
    return detailed


def _pace_zone(speed_mps: float, average_mps: float) -> int:
    return max(1, min(5, 2 + round((speed_mps / average_mps - 1) * 20))) if average_mps else 1


def splits(activity: Activity, motion: Motion, unit_m: float) -> list[JSON]:
    """splits_metric (unit 1000 m) or splits_standard (a mile), solved from the activity's motion (the
    conventions are in `motion`'s docstring): they add up to the activity's distance, elapsed and moving
    time; heart rate only with a sensor."""
    out = []
    for index, span in enumerate(motion.spans(motion.boundaries(unit_m)), start=1):
        speed = span.distance_m / span.moving_s if span.moving_s else 0.0
        rise = span.elevation_difference_m or 0.0
        item: JSON = {"distance": round(span.distance_m, 1), "elapsed_time": span.elapsed_s,
                      "elevation_difference": rise, "moving_time": span.moving_s, "split": index,
                      "average_speed": round(speed, 2),
                      "average_grade_adjusted_speed": round(speed * grade_cost(rise / span.distance_m), 2)}
        if span.average_heartrate is not None:
            item["average_heartrate"] = round(span.average_heartrate, 2)
        item["pace_zone"] = _pace_zone(speed, activity.record["average_speed"])
        out.append(item)
    return out


def _effort_base(activity: Activity, effort_id: int, name: str, start_fraction: float, end_fraction: float,
                 elapsed_s: int) -> JSON:
    """Fields shared by laps, best efforts and segment efforts."""
    offset_s = round(start_fraction * activity.elapsed_s)
    start = utc_of(activity.start_s + offset_s)
    local = start + timedelta(seconds=activity.record["utc_offset"])
    return {
        "id": effort_id, "resource_state": 2, "name": name,
        "activity": {"id": activity.id, "visibility": activity.record["visibility"], "resource_state": 1},
        "athlete": {"id": activity.record["athlete"]["id"], "resource_state": 1},
        "elapsed_time": elapsed_s, "moving_time": elapsed_s,
        "start_date": iso_z(start), "start_date_local": iso_z(local),
        "distance": round((end_fraction - start_fraction) * activity.distance_m, 1),
        "start_index": activity.index_at(start_fraction), "end_index": activity.index_at(end_fraction),
    }


def lap_unit_m(activity: Activity) -> float | None:
    """How the device splits the recording into laps: swims every 100 m, half the runs every km (auto
    lap), everything else one lap (None)."""
    if activity.sport.sport_type == "Swim":
        return 100.0
    if activity.sport.runs and activity.rng("laps").random() < 0.5:
        return METRIC_SPLIT_M
    return None


def device_laps(activity: Activity, motion: Motion, origin_s: int, last_s: int) -> list[Span]:
    """The laps a device recording from origin_s to last_s holds (see lap_unit_m)."""
    unit_m = lap_unit_m(activity)
    ends = motion.boundaries(unit_m, origin_s, last_s) if unit_m else [last_s]
    return motion.spans(ends, origin_s)


def laps_of(activity: Activity, motion: Motion | None = None) -> list[JSON]:
    """The device's laps over what Strava keeps of the recording. Manual: none."""
    if activity.manual:
        return []
    motion = motion or activity.motion()
    ids = activity.rng("lap_ids")
    out = []
    elapsed_s = max(activity.elapsed_s, 1)
    for index, span in enumerate(device_laps(activity, motion, 0, motion.elapsed_s), start=1):
        lap = _effort_base(activity, ids.randint(10**10, 10**11), f"Lap {index}", span.start_s / elapsed_s,
                           span.end_s / elapsed_s, span.elapsed_s)
        lap["moving_time"] = span.moving_s
        lap["distance"] = round(span.distance_m, 2)
        lap.update(average_speed=round(span.distance_m / span.moving_s, 2) if span.moving_s else 0.0,
                   max_speed=round(span.max_speed, 2), lap_index=index, split=index,
                   total_elevation_gain=round(span.gain_m or 0.0, 1))
        if "average_cadence" in activity.record:
            lap["average_cadence"] = activity.record["average_cadence"]
        lap["device_watts"] = bool(activity.record.get("device_watts", False))
        if span.average_heartrate is not None:
            lap["average_heartrate"] = round(span.average_heartrate, 1)
            lap["max_heartrate"] = activity.record["max_heartrate"]
        if activity.sport.runs:
            lap["pace_zone"] = _pace_zone(lap["average_speed"], activity.record["average_speed"])
        out.append(lap)
    return out


def best_efforts(activity: Activity) -> list[JSON]:
    """The standard distances the run covers, in no particular order (Strava's isn't by distance)."""
    rng = activity.rng("best_efforts")
    efforts = []
    for name, distance in BEST_EFFORTS_M:
        if distance > activity.distance_m:
            continue
        start_f = rng.uniform(0, 1 - distance / activity.distance_m)
        end_f = start_f + distance / activity.distance_m
        elapsed_s = max(1, round(distance / activity.record["average_speed"] * rng.uniform(0.93, 1.0)))
        effort = _effort_base(activity, rng.randint(10**10, 10**11), name, start_f, end_f, elapsed_s)
        effort["distance"] = distance
        pr_rank = rng.choice((None, None, None, 1, 2, 3))
        effort["pr_rank"] = pr_rank
        effort["achievements"] = [] if pr_rank is None else [{"type_id": 3, "type": "pr", "rank": pr_rank}]
        efforts.append(effort)
    rng.shuffle(efforts)
    return efforts


def make_segments(seed: int, count: int = 40) -> list[JSON]:
    """The athlete's local segments (summary segments as nested in segment efforts)."""
    rng = random.Random(f"{seed}:segments")
    segments = []
    for index in range(count):
        zone = ZONES[index % len(ZONES)]
        activity_type = "Ride" if index % 4 == 0 else "Run"
        distance = round(rng.uniform(300, 8000), 1)
        grade = round(rng.uniform(-3, 8), 1)
        low = round(zone.base_altitude_m + rng.uniform(0, 30), 1)
        start = (round(zone.home[0] + rng.uniform(-0.03, 0.03), 6), round(zone.home[1] + rng.uniform(-0.03, 0.03), 6))
        segments.append({
            "id": 8_000_000 + index * 7919, "resource_state": 2,
            "name": rng.choice(("Hill repeat", "Ørsted sprint", 'The "wall"', "Bridge climb 🌉", "Park loop")),
            "activity_type": activity_type, "distance": distance, "average_grade": grade,
            "maximum_grade": round(abs(grade) * 1.8 + 1, 1),
            "elevation_high": round(low + distance * max(grade, 0.5) / 100, 1),
            "elevation_low": low, "start_latlng": list(start),
            "end_latlng": [round(start[0] + distance / 111_320 / 2, 6), start[1]],
            "elevation_profile": None, "elevation_profiles": None,
            "climb_category": 0 if grade < 3 else min(5, int(grade // 2)),
            "city": None, "state": None, "country": None, "private": False, "hazardous": False, "starred": False,
            "zone": zone.label,
        })
    return segments


def segment_efforts(activity: Activity, segments: list[JSON]) -> list[JSON]:
    """0-5 efforts on segments of the activity's zone and kind that fit inside it."""
    rng = activity.rng("segment_efforts")
    fitting = [s for s in segments if s["zone"] == activity.zone.label and s["activity_type"] == activity.sport.segments
               and s["distance"] < activity.distance_m]
    chosen = rng.sample(fitting, k=min(len(fitting), rng.randint(0, 5)))
    efforts = []
    for segment in chosen:
        share = segment["distance"] / activity.distance_m
        start_f = rng.uniform(0, 1 - share)
        elapsed_s = max(1, round(segment["distance"] / activity.record["average_speed"]))
        effort = _effort_base(activity, rng.randint(10**10, 10**11), segment["name"], start_f, start_f + share,
                              elapsed_s)
        effort["distance"] = segment["distance"]
        effort["device_watts"] = bool(activity.record.get("device_watts", False))
        if activity.has_heartrate:
            effort["average_heartrate"] = round(activity.record["average_heartrate"] + rng.uniform(-5, 10), 1)
            effort["max_heartrate"] = activity.record["max_heartrate"]
        effort["segment"] = {key: value for key, value in segment.items() if key != "zone"}
        effort["pr_rank"] = rng.choice((None, None, 1, 2, 3))
        effort["achievements"] = []
        effort["hidden"] = False
        efforts.append(effort)
    return efforts


# ---------------------------------------------------------------- streams


def available_streams(activity: Activity) -> tuple[str, ...]:
    """Stream types the activity has: none for manual entries; GPS types only with GPS; sensors if present."""
    if activity.manual:
        return ()
    record = activity.record
    present = {
        "time": True, "moving": True,
        "distance": activity.sport.has_distance, "velocity_smooth": activity.sport.has_distance,
        "latlng": activity.has_gps, "altitude": activity.has_gps, "grade_smooth": activity.has_gps,
        "heartrate": activity.has_heartrate, "cadence": "average_cadence" in record,
        "watts": "average_watts" in record, "temp": "average_temp" in record,
    }
    return tuple(kind for kind in STREAM_TYPES if present[kind])


def requested_streams(keys: str | None) -> set[str]:
    """The types a `keys` CSV asks for, plus distance (Strava always sends the base series); no known type
    at all gives only distance, as Strava does."""
    asked = {key.strip() for key in (keys or "").split(",")} & set(STREAM_TYPES)
    return asked | {"distance"}


def streams_of(activity: Activity, keys: str | None) -> JSON:
    """StreamSet keyed by type (key_by_type=true) for the requested types the activity has: `{}` if none."""
    kinds = [kind for kind in available_streams(activity) if kind in requested_streams(keys)]
    if not kinds:
        return {}
    points = stream_points(activity, kinds)
    series_type = "distance" if activity.sport.has_distance else "time"
    return {kind: {"data": points[kind], "series_type": series_type, "original_size": len(points[kind]),
                   "resolution": "high"} for kind in kinds}


def stream_points(activity: Activity, kinds: list[str]) -> dict[str, list[Any]]:
    """The streams `kinds` of the activity, all of the same length, index i at the same second, read off its
    motion; a few dropouts (None) where the device lacked a fix or a heart-rate reading."""
    motion = activity.motion()
    seconds = activity.stream_seconds()
    along = functools.cache(lambda: motion.distances_at(seconds))  # distance and altitude both read it
    makers = {
        "time": lambda: seconds,
        "distance": lambda: [round(distance_m, 1) for distance_m in along()],
        "velocity_smooth": lambda: [round(motion.speed_at(t), 3) for t in seconds],
        "altitude": lambda: motion.altitudes_at(seconds, along()),
        "grade_smooth": lambda: [round(motion.grade_at(t), 1) for t in seconds],
        "latlng": lambda: [None if point is None else latlng(point) for point in map(motion.position_at, seconds)],
        "heartrate": lambda: [motion.heartrate_at(t) for t in seconds],
        "cadence": lambda: [motion.cadence_at(t) for t in seconds],
        "watts": lambda: [motion.watts_at(t) for t in seconds],
        "temp": lambda: [motion.sensors.temp] * len(seconds),
        "moving": lambda: motion.moving_at(seconds),
    }
    return {kind: makers[kind]() for kind in kinds}


# ---------------------------------------------------------------- the athlete

# Non-ASCII and quotes on purpose, like the activity names: they reach tables and terminal output.
ATHLETE_NAMES = (("Søren", "O'Brien"), ("Ingrid", "Nuñez"), ("Kenji", "Møller-Sato"), ("Aïcha", "D'Souza"),
                 ("Zoë", "Łukasiewicz"))


def athlete_of(athlete_id: int, index: int = 0) -> JSON:
    """Summary athlete, as /athlete answers without profile:read_all and as the code grant embeds it;
    `index` is the athlete's place among the simulated app's athletes (it picks the name)."""
    firstname, lastname = ATHLETE_NAMES[index % len(ATHLETE_NAMES)]
    return {
        "id": athlete_id, "username": "sim_athlete" + (str(index + 1) if index else ""), "resource_state": 2,
        "firstname": firstname, "lastname": lastname, "bio": "", "city": "New York", "state": "NY",
        "country": "United States", "sex": "M", "premium": True, "summit": True, "created_at": "2017-11-28T19:05:35Z",
        "updated_at": "2025-10-19T01:44:15Z", "badge_type_id": 1, "weight": 70.0,
        "profile_medium": "avatar/athlete/medium.png", "profile": "avatar/athlete/large.png",
        "friend": None, "follower": None,
    }


@dataclass
class History:
    """The athlete's current activities, with the mutations tests and the mutate_rate knob apply."""

    seed: int
    athlete_id: int
    activities: dict[int, Activity]
    segments: list[JSON]
    first_id: int = FIRST_ACTIVITY_ID  # the athlete's ids start above it (each athlete has its own range)
    # The greatest id ever given: Strava's ids grow with upload time and are never given again, so an
    # upload after the newest activity was deleted still gets a greater id than it had.
    greatest_id: int = 0
    pace_model: PaceModel = DEFAULT_PACE_MODEL
    _order: list[Activity] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.greatest_id = max(self.greatest_id, self.first_id, *self.activities)

    @staticmethod
    def build(*, seed: int, count: int, athlete_id: int, now_s: float, first_id: int = FIRST_ACTIVITY_ID,
              duration_s: int | None = None, pace_model: PaceModel = DEFAULT_PACE_MODEL) -> History:
        activities = build_activities(seed=seed, count=count, athlete_id=athlete_id, now_s=now_s, first_id=first_id,
                                      duration_s=duration_s, pace_model=pace_model)
        return History(seed=seed, athlete_id=athlete_id, activities={a.id: a for a in activities},
                       segments=make_segments(seed), first_id=first_id, pace_model=pace_model)

    def ordered(self) -> list[Activity]:
        """Newest first by start time, ties by id descending (stable)."""
        if self._order is None:
            self._order = sorted(self.activities.values(), key=lambda a: (a.start_s, a.id), reverse=True)
        return self._order

    def page(self, *, include_private: bool, before_s: int | None, after_s: int | None, page: int,
             per_page: int) -> list[Activity]:
        """One page of the list; `before_s`/`after_s` are strict bounds on the start time."""
        matching = [a for a in self.ordered()
                    if (include_private or not a.private)
                    and (before_s is None or a.start_s < before_s) and (after_s is None or a.start_s > after_s)]
        first = (page - 1) * per_page
        return matching[first:first + per_page]

    def add(self, rng: random.Random, now_s: float, overrides: JSON) -> int:
        """A new activity, by default the newest: it starts after every other one and before `now_s`. Its id
        is greater than any given before, whatever its start (`overrides` may backdate it): upload order."""
        newest = self.ordered()[0] if self.activities else None
        start_s = int(now_s) - 3600 if newest is None else max(int(now_s) - 3600, newest.start_s + 60)
        activity_id = self.greatest_id + rng.randint(1_000, 5_000_000)
        self.greatest_id = activity_id
        sport = next((s for s in SPORTS if s.sport_type == overrides.get("sport_type")), None)
        activity = make_activity(rng, activity_id=activity_id, start_s=start_s, athlete_id=self.athlete_id,
                                 seed=self.seed, sport=sport, manual=overrides.get("manual"),
                                 private=overrides.get("private"), pace_model=self.pace_model)
        self.activities[activity_id] = activity
        self.edit(activity_id, {k: v for k, v in overrides.items() if k not in ("sport_type", "manual")})
        return activity_id

    def edit(self, activity_id: int, changes: JSON) -> None:
        """Change fields of an activity; start_date moves it (local time follows), distance/moving_time
        update average_speed unless it is given too, private sets visibility."""
        activity = self.activities[activity_id]
        record = activity.record
        record.update(changes)
        if "start_date" in changes:
            activity.start_s = parse_iso_z(changes["start_date"])
            offset_s = utc_offset_s(activity.zone, utc_of(activity.start_s))
            record["start_date_local"] = iso_z(utc_of(activity.start_s) + timedelta(seconds=offset_s))
            record["utc_offset"] = float(offset_s)
        if ("distance" in changes or "moving_time" in changes) and "average_speed" not in changes:
            record["average_speed"] = round(activity.distance_m / activity.moving_s, 3) if activity.moving_s else 0.0
        if {"distance", "moving_time", "elapsed_time"} & set(changes) and not activity.manual:
            _apply_motion(activity)  # the recording changed: so did its top speed, route and elevation
            record.update({key: changes[key] for key in changes.keys() & MOTION_FIELDS})
        if "private" in changes and "visibility" not in changes:
            record["visibility"] = "only_me" if changes["private"] else "everyone"
        self._order = None

    def delete(self, activity_id: int) -> None:
        del self.activities[activity_id]
        self._order = None
