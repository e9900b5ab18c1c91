"""A seeded synthetic Strava athlete: the activity list, and DetailedActivity, laps and streams on demand.

Pure: no I/O, no clock (the caller passes `now_s`), no global randomness. Building the list draws every
activity's summary fields from one `random.Random(seed)`; the bulky parts (splits, laps, efforts, streams,
the full polyline) are derived when asked from a per-activity seed, so 5,000 activities build in a fraction
of a second and the same activity always looks the same. Field names, types and nesting copy the real
responses in /work/shared/strava/fixtures/real; fields that Strava leaves out (heart rate without a sensor,
watts on runs, device name on manual entries) are left out here too rather than set to null.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

JSON = dict[str, Any]

FIRST_ACTIVITY_ID = 10_000_000_000  # above 2**32, like real ids (16181809559)
HISTORY_YEARS = 4
METRIC_SPLIT_M = 1000.0
STANDARD_SPLIT_M = 1609.34
MAX_STREAM_POINTS = 3600  # one point a second, thinned for long activities (keeps tests fast)
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


@dataclass(frozen=True)
class Route:
    """A wobbly loop whose length is the activity's distance, and a rolling elevation profile along it.
    `fraction` is the share of the distance covered, 0..1."""

    center: tuple[float, float]
    radius_m: float
    phase: float
    base_altitude_m: float
    hill_m: float
    hills: int

    def point(self, fraction: float) -> tuple[float, float]:
        angle = 2 * math.pi * fraction + self.phase
        wobble = 1 + 0.15 * math.sin(5 * angle)
        lat = self.center[0] + self.radius_m * wobble * math.sin(angle) / 111_320
        lng = self.center[1] + self.radius_m * wobble * math.cos(angle) / (111_320 * math.cos(math.radians(lat)))
        return round(lat, 6), round(lng, 6)

    def altitude(self, fraction: float) -> float:
        return round(self.base_altitude_m + self.hill_m * math.sin(2 * math.pi * self.hills * fraction), 1)


@dataclass
class Activity:
    """One activity of the history: its list entry plus detail-only scalars (`record`), and the seed its
    lazily generated parts are drawn from."""

    id: int
    start_s: int
    seed: int
    sport: Sport
    zone: Zone
    record: JSON

    def rng(self, purpose: str) -> random.Random:
        return random.Random(f"{self.seed}:{self.id}:{purpose}")

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

    def route(self) -> Route:
        rng = self.rng("route")
        home = self.zone.home
        center = (home[0] + rng.uniform(-0.03, 0.03), home[1] + rng.uniform(-0.03, 0.03))
        return Route(center=center, radius_m=max(self.distance_m, 50.0) / (2 * math.pi * 1.05),
                     phase=rng.uniform(0, 2 * math.pi), base_altitude_m=self.zone.base_altitude_m + rng.uniform(0, 40),
                     hill_m=rng.uniform(2, 25), hills=rng.randint(1, 4))

    def stream_points(self) -> int:
        """original_size of every stream: one point a second, thinned to at most MAX_STREAM_POINTS."""
        return max(2, min(self.elapsed_s, MAX_STREAM_POINTS))

    def index_at(self, fraction: float) -> int:
        return round(min(max(fraction, 0.0), 1.0) * (self.stream_points() - 1))


# ---------------------------------------------------------------- list entries


def make_activity(rng: random.Random, *, activity_id: int, start_s: int, athlete_id: int, seed: int,
                  sport: Sport | None = None, manual: bool | None = None, private: bool | None = None) -> Activity:
    """Draw one activity's summary fields (and the detail-only scalars) from `rng`."""
    sport = sport or rng.choices(SPORTS, weights=[s.weight for s in SPORTS])[0]
    manual = rng.random() < MANUAL_SHARE if manual is None else manual
    private = rng.random() < PRIVATE_SHARE if private is None else private
    zone = rng.choices(ZONES, weights=ZONE_WEIGHTS)[0]
    start = utc_of(start_s)
    offset_s = utc_offset_s(zone, start)
    moving_s = rng.randint(*sport.duration_s)
    elapsed_s = moving_s if manual else moving_s + rng.choice((0, 0, rng.randint(5, 600)))
    speed = rng.uniform(*sport.speed_mps)
    distance = round(speed * moving_s, 1) if sport.has_distance else 0.0
    has_heartrate = not manual and rng.random() < 0.8
    name = "Ørsted Lauf" if sport.sport_type == "Run" and zone.home[0] > 50 and rng.random() < 0.5 \
        else rng.choice(sport.names)
    record: JSON = {
        "athlete": {"id": athlete_id, "resource_state": 1},
        "name": name,
        "distance": distance,
        "moving_time": moving_s,
        "elapsed_time": elapsed_s,
        "total_elevation_gain": round(rng.uniform(0, 15) * distance / 1000, 1) if sport.gps else 0,
        "type": sport.type,
        "sport_type": sport.sport_type,
        "workout_type": _workout_type(rng, sport),
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
        "max_speed": round(speed * rng.uniform(1.3, 2.2), 1) if sport.has_distance else 0.0,
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
        record["average_heartrate"] = round(rng.uniform(120, 165), 1)
        record["max_heartrate"] = float(round(record["average_heartrate"] + rng.uniform(10, 30)))
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
    activity = Activity(id=activity_id, start_s=start_s, seed=seed, sport=sport, zone=zone, record=record)
    if activity.has_gps:
        _place_on_map(activity)
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


def _place_on_map(activity: Activity) -> None:
    """start/end latlng, elev_high/low and a coarse summary_polyline from the activity's route."""
    route = activity.route()
    record = activity.record
    record["start_latlng"] = list(route.point(0.0))
    record["end_latlng"] = list(route.point(1.0))
    record["map"]["summary_polyline"] = encode_polyline([route.point(i / 24) for i in range(25)])
    record["elev_high"] = round(route.base_altitude_m + route.hill_m, 1)
    record["elev_low"] = round(route.base_altitude_m - route.hill_m, 1)


def build_activities(*, seed: int, count: int, athlete_id: int, now_s: float,
                     first_id: int = FIRST_ACTIVITY_ID) -> list[Activity]:
    """`count` activities over about HISTORY_YEARS years, newest a few hours before `now_s`, ids rising
    from `first_id` with start time (with gaps), a few pairs starting in the same second."""
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
                                        seed=seed))
    return activities


def summary_of(activity: Activity) -> JSON:
    """SummaryActivity as listed: resource_state 2, no detail-only keys, map without polyline."""
    listed = {key: value for key, value in activity.record.items() if key not in DETAIL_ONLY}
    return {"resource_state": 2, **listed}


# ---------------------------------------------------------------- detail


def detail_of(activity: Activity, segments: list[JSON]) -> JSON:
    """DetailedActivity: resource_state 3, map with polyline, and the parts this kind of activity has."""
    detailed: JSON = {"resource_state": 3, **activity.record}
    detailed["map"] = {**activity.record["map"], "resource_state": 3}
    if activity.has_gps:
        route = activity.route()
        detailed["map"]["polyline"] = encode_polyline([route.point(i / 199) for i in range(200)])
    if activity.manual:
        return detailed
    if activity.sport.segments and activity.has_gps:
        detailed["segment_efforts"] = segment_efforts(activity, segments)
    if activity.sport.runs:
        detailed["splits_metric"] = splits(activity, METRIC_SPLIT_M)
        detailed["splits_standard"] = splits(activity, STANDARD_SPLIT_M)
    detailed["laps"] = laps_of(activity)
    if activity.sport.runs:
        detailed["best_efforts"] = best_efforts(activity)
    return detailed


def split_distances(total_m: float, unit_m: float) -> list[float]:
    """Full `unit_m` pieces and a partial last one; they sum to `total_m` (within rounding)."""
    if total_m <= 0:
        return []
    full = int(total_m // unit_m)
    pieces = [unit_m] * full
    rest = round(total_m - full * unit_m, 1)
    if rest >= 0.1:
        pieces.append(rest)
    return pieces


def _pace_zone(speed_mps: float, average_mps: float) -> int:
    return max(1, min(5, 2 + round((speed_mps / average_mps - 1) * 20))) if average_mps else 1


def splits(activity: Activity, unit_m: float) -> list[JSON]:
    """splits_metric (unit 1000 m) or splits_standard (1609.34 m): moving times add up to the activity's,
    elevation follows the route, heart rate only with a sensor."""
    rng = activity.rng(f"splits{unit_m}")
    distances = split_distances(activity.distance_m, unit_m)
    route = activity.route()
    ends = [sum(distances[:i + 1]) / activity.distance_m for i in range(len(distances))]
    rises = [route.altitude(end) - route.altitude(end - d / activity.distance_m) for end, d in zip(ends, distances)]
    paces = [rng.uniform(0.95, 1.05) * grade_cost(rise / distance) for rise, distance in zip(rises, distances)]
    weight = sum(d * p for d, p in zip(distances, paces)) or 1.0
    pause_s = activity.elapsed_s - activity.moving_s
    out = []
    for index, (distance, pace, rise) in enumerate(zip(distances, paces, rises), start=1):
        moving_s = max(1, round(activity.moving_s * distance * pace / weight))
        elapsed_s = moving_s + (pause_s if index == len(distances) else 0)
        speed = distance / moving_s
        item: JSON = {"distance": round(distance, 1), "elapsed_time": elapsed_s,
                      "elevation_difference": round(rise, 1), "moving_time": moving_s, "split": index,
                      "average_speed": round(speed, 2),
                      "average_grade_adjusted_speed": round(speed * (1 + 3 * rise / distance), 2)}
        if activity.has_heartrate:
            item["average_heartrate"] = activity.record["average_heartrate"] + rng.uniform(-8, 8)
        item["pace_zone"] = _pace_zone(speed, activity.record["average_speed"])
        out.append(item)
    return out


def grade_cost(grade: float) -> float:
    """Relative time per metre on a grade (rise/run): uphill costs about 3.3 % per 1 % of grade, gentle
    downhill saves, steep downhill (beyond about -9 %) brakes again, like measured running costs."""
    if grade >= 0:
        return 1 + 3.3 * grade
    return max(0.8, 1 + 1.8 * grade + 10 * grade * grade)


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


def laps_of(activity: Activity) -> list[JSON]:
    """Runs: one lap or auto-laps per km; swims: 100 m laps; everything else one lap. Manual: none."""
    if activity.manual:
        return []
    rng = activity.rng("laps")
    if activity.sport.sport_type == "Swim":
        pieces = split_distances(activity.distance_m, 100.0)
    elif activity.sport.runs and rng.random() < 0.5:
        pieces = split_distances(activity.distance_m, METRIC_SPLIT_M)
    else:
        pieces = [activity.distance_m]  # one lap, also for activities without distance
    total = activity.distance_m
    out = []
    covered = 0.0
    for index, piece in enumerate(pieces, start=1):
        start_f, end_f = (covered / total, (covered + piece) / total) if total else (0.0, 1.0)
        elapsed_s = max(1, round(activity.elapsed_s * (end_f - start_f)))
        lap = _effort_base(activity, rng.randint(10**10, 10**11), f"Lap {index}", start_f, end_f, elapsed_s)
        lap["moving_time"] = max(1, round(activity.moving_s * (end_f - start_f)))
        lap["distance"] = round(piece, 2)
        lap.update(average_speed=round(piece / lap["moving_time"], 2), max_speed=activity.record["max_speed"],
                   lap_index=index, split=index,
                   total_elevation_gain=round(activity.record["total_elevation_gain"] * (end_f - start_f), 1))
        if "average_cadence" in activity.record:
            lap["average_cadence"] = activity.record["average_cadence"]
        lap["device_watts"] = bool(activity.record.get("device_watts", False))
        if activity.has_heartrate:
            lap["average_heartrate"] = round(activity.record["average_heartrate"] + rng.uniform(-5, 5), 1)
            lap["max_heartrate"] = activity.record["max_heartrate"]
        if activity.sport.runs:
            lap["pace_zone"] = _pace_zone(lap["average_speed"], activity.record["average_speed"])
        out.append(lap)
        covered += piece
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
    """The streams `kinds` of the activity, all of the same length, index i at the same moment. Every
    series comes from its own seeded generator, so asking for fewer types does not change the others."""
    count = activity.stream_points()
    route = activity.route()
    record = activity.record
    steps = range(count)
    time = [round(i * activity.elapsed_s / (count - 1)) for i in steps]
    # Distance grows a little unevenly (derivative 1 + 0.3 cos > 0 keeps it increasing).
    fractions = [x + 0.3 * math.sin(6 * math.pi * x) / (6 * math.pi) for x in (i / (count - 1) for i in steps)]
    distance = [round(f * activity.distance_m, 1) for f in fractions]

    def noise(kind: str, low: float, high: float) -> list[float]:
        rng = activity.rng(f"stream:{kind}")
        return [rng.uniform(low, high) for _ in steps]

    def velocity() -> list[float]:
        return [0.0] + [round((distance[i] - distance[i - 1]) / max(time[i] - time[i - 1], 1), 3)
                        for i in range(1, count)]

    def grade() -> list[float]:
        altitude = [route.altitude(f) for f in fractions]
        return [0.0] + [round(100 * (altitude[i] - altitude[i - 1]) / max(distance[i] - distance[i - 1], 0.1), 1)
                        for i in range(1, count)]

    average_hr = record.get("average_heartrate", 140.0)
    makers = {
        "time": lambda: time,
        "distance": lambda: distance,
        "velocity_smooth": velocity,
        "altitude": lambda: [route.altitude(f) for f in fractions],
        "grade_smooth": grade,
        "latlng": lambda: [list(route.point(f)) for f in fractions],
        "heartrate": lambda: [round(average_hr + 12 * math.sin(i / 300) + n)
                              for i, n in zip(steps, noise("heartrate", -3, 3))],
        "cadence": lambda: [round(record.get("average_cadence", 0) + n) for n in noise("cadence", -4, 4)],
        "watts": lambda: [round(record.get("average_watts", 0) * n) for n in noise("watts", 0.5, 1.5)],
        "temp": lambda: [record.get("average_temp", 0)] * count,
        "moving": lambda: [n > 0.02 for n in noise("moving", 0, 1)],
    }
    streams: dict[str, list[Any]] = {kind: makers[kind]() for kind in kinds}
    gaps = activity.rng("stream:gaps")
    if gaps.random() < 0.15:  # a few dropouts inside the series, as in real recordings
        positions = gaps.sample(range(1, count), k=min(3, count - 1))
        for kind in set(kinds) & {"latlng", "altitude", "heartrate"}:
            for index in positions:
                streams[kind][index] = None
    return streams


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
    _order: list[Activity] | None = field(default=None, repr=False)

    @staticmethod
    def build(*, seed: int, count: int, athlete_id: int, now_s: float,
              first_id: int = FIRST_ACTIVITY_ID) -> History:
        activities = build_activities(seed=seed, count=count, athlete_id=athlete_id, now_s=now_s, first_id=first_id)
        return History(seed=seed, athlete_id=athlete_id, activities={a.id: a for a in activities},
                       segments=make_segments(seed), first_id=first_id)

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
        """A new activity, by default the newest: it starts after every other one and before `now_s`."""
        newest = self.ordered()[0] if self.activities else None
        start_s = int(now_s) - 3600 if newest is None else max(int(now_s) - 3600, newest.start_s + 60)
        activity_id = max(self.activities, default=self.first_id) + rng.randint(1_000, 5_000_000)
        sport = next((s for s in SPORTS if s.sport_type == overrides.get("sport_type")), None)
        activity = make_activity(rng, activity_id=activity_id, start_s=start_s, athlete_id=self.athlete_id,
                                 seed=self.seed, sport=sport, manual=overrides.get("manual"),
                                 private=overrides.get("private"))
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
        if "private" in changes and "visibility" not in changes:
            record["visibility"] = "only_me" if changes["private"] else "everyone"
        self._order = None

    def delete(self, activity_id: int) -> None:
        del self.activities[activity_id]
        self._order = None
