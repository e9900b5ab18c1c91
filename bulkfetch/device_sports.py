"""The sport a device file states, as Strava's `sport_type` (one of `bulkfetch.sports.SPORT_TYPES`).

A FIT file states `sport` and `sub_sport` (the names of the FIT profile's `sport` and `sub_sport` types,
as Garmin's FIT SDK spells them); a TCX file its Activity `Sport` attribute (Running, Biking, Other);
a GPX file at most a free-text `<type>`. None means the file does not say (or says something Strava has
no sport type for): the caller keeps the sport it has from elsewhere (activities.csv, the API).
"""

from __future__ import annotations

from bulkfetch.sports import SPORT_TYPES

# A (sport, sub_sport) pair that names a sport type of its own; looked up before the sport alone.
_FIT_SUB_SPORTS: dict[tuple[str, str], str] = {
    ("running", "trail"): "TrailRun",
    ("running", "virtual_activity"): "VirtualRun",
    ("cycling", "virtual_activity"): "VirtualRide",
    ("cycling", "mountain"): "MountainBikeRide",
    ("cycling", "downhill"): "MountainBikeRide",
    ("cycling", "gravel_cycling"): "GravelRide",
    ("cycling", "e_bike_mountain"): "EMountainBikeRide",
    ("cycling", "e_bike_fitness"): "EBikeRide",
    ("cycling", "hand_cycling"): "Handcycle",
    ("e_biking", "e_bike_mountain"): "EMountainBikeRide",
    ("training", "strength_training"): "WeightTraining",
    ("training", "yoga"): "Yoga",
    ("training", "pilates"): "Pilates",
    ("training", "hiit"): "HighIntensityIntervalTraining",
    ("fitness_equipment", "elliptical"): "Elliptical",
    ("fitness_equipment", "stair_climbing"): "StairStepper",
    ("fitness_equipment", "indoor_rowing"): "Rowing",
    ("fitness_equipment", "indoor_cycling"): "Ride",
    ("fitness_equipment", "treadmill"): "Run",
    ("fitness_equipment", "strength_training"): "WeightTraining",
    ("rowing", "virtual_activity"): "VirtualRow",
    ("alpine_skiing", "backcountry"): "BackcountrySki",
    ("racket", "pickleball"): "Pickleball",
    ("racket", "squash"): "Squash",
    ("racket", "badminton"): "Badminton",
    ("racket", "racquetball"): "Racquetball",
    ("racket", "table_tennis"): "TableTennis",
}
_FIT_SPORTS: dict[str, str] = {
    "running": "Run",
    "cycling": "Ride",
    "e_biking": "EBikeRide",
    "walking": "Walk",
    "hiking": "Hike",
    "mountaineering": "Hike",
    "swimming": "Swim",
    "training": "Workout",
    "fitness_equipment": "Workout",
    "hiit": "HighIntensityIntervalTraining",
    "rowing": "Rowing",
    "cross_country_skiing": "NordicSki",
    "alpine_skiing": "AlpineSki",
    "snowboarding": "Snowboard",
    "snowshoeing": "Snowshoe",
    "ice_skating": "IceSkate",
    "inline_skating": "InlineSkate",
    "paddling": "Canoeing",
    "kayaking": "Kayaking",
    "stand_up_paddleboarding": "StandUpPaddling",
    "surfing": "Surfing",
    "windsurfing": "Windsurf",
    "kitesurfing": "Kitesurf",
    "sailing": "Sail",
    "rock_climbing": "RockClimbing",
    "golf": "Golf",
    "soccer": "Soccer",
    "tennis": "Tennis",
    "wheelchair_push_walk": "Wheelchair",
    "wheelchair_push_run": "Wheelchair",
}
_TCX_SPORTS = {"running": "Run", "biking": "Ride"}  # the schema's third value, Other, says nothing
_BY_LOWER_NAME = {name.lower(): name for name in SPORT_TYPES}


def fit_sport_type(sport: str | None, sub_sport: str | None) -> str | None:
    """Strava's sport type for a FIT sport/sub_sport pair (names as in the FIT profile)."""
    if sport is None:
        return None
    if sub_sport is not None and (sport, sub_sport) in _FIT_SUB_SPORTS:
        return _FIT_SUB_SPORTS[sport, sub_sport]
    return _FIT_SPORTS.get(sport)


def tcx_sport_type(sport: str | None) -> str | None:
    """Strava's sport type for a TCX Activity's Sport attribute."""
    return _TCX_SPORTS.get(sport.strip().lower()) if sport else None


def gpx_sport_type(text: str | None) -> str | None:
    """Strava's sport type for a GPX `<type>`: a sport type's own name in any case ("run", "VirtualRide"),
    or a FIT sport name ("running", "cycling") as Garmin's GPX export writes it. Other values (Strava's
    numeric codes among them) say nothing we can rely on."""
    if not text:
        return None
    key = text.strip().lower()
    return _BY_LOWER_NAME.get(key) or _FIT_SPORTS.get(key) or _TCX_SPORTS.get(key)
