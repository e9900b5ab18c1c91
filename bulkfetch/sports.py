"""Strava's sport types: the values an activity's `sport_type` can take, which `--sport` is checked against.

The SportType enum of Strava's API reference, https://developers.strava.com/docs/reference/#api-models-SportType
(the deprecated `type` field has fewer values; `sport_type` is the one the filters compare).
"""

from __future__ import annotations

SPORT_TYPES = (
    "AlpineSki", "BackcountrySki", "Badminton", "Canoeing", "Crossfit", "EBikeRide", "Elliptical",
    "EMountainBikeRide", "Golf", "GravelRide", "Handcycle", "HighIntensityIntervalTraining", "Hike", "IceSkate",
    "InlineSkate", "Kayaking", "Kitesurf", "MountainBikeRide", "NordicSki", "Pickleball", "Pilates",
    "Racquetball", "Ride", "RockClimbing", "RollerSki", "Rowing", "Run", "Sail", "Skateboard", "Snowboard",
    "Snowshoe", "Soccer", "Squash", "StairStepper", "StandUpPaddling", "Surfing", "Swim", "TableTennis",
    "Tennis", "TrailRun", "Velomobile", "VirtualRide", "VirtualRow", "VirtualRun", "Walk", "WeightTraining",
    "Wheelchair", "Windsurf", "Workout", "Yoga",
)
