"""derive: the API's streams, splits and laps from a device file's records, by the rules its docstring states.

Synthetic tracks have answers known by hand; hypothesis checks what must hold for any track; the derived
JSON goes through schema's builders to show it is the API's shape.
"""

from __future__ import annotations

import functools
import math
from itertools import accumulate, pairwise
from operator import mul
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulkfetch import derive
from bulkfetch.activity_files import decode_file
from bulkfetch.derive import FileSummary, file_summary, is_stale, laps, prepare, splits, stream_set
from bulkfetch.distance import TIME_GLITCH_S
from bulkfetch.schema import build_streams, build_tables
from bulkfetch.track import DeviceLap, Session, Track

START = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def make_track(time: list[int], *, sport: str | None = "Run", laps_: list[DeviceLap] | None = None,
               session: Session | None = None, fmt: str = "fit", **series: list[Any]) -> Track:
    return Track(format=fmt, start_utc_s=START, series={"time": time, **series}, laps=laps_ or [],
                 session=session if session is not None else Session(sport_type=sport))


def steady(seconds: int, speed: float, **extra: Any) -> Track:
    """A 1 Hz run at a constant speed, altitude rising 1 m per 100 m, heart rate 150."""
    time = list(range(seconds + 1))
    distance = [speed * t for t in time]
    return make_track(time, distance=distance, altitude=[100 + d / 100 for d in distance],
                      heartrate=[150] * len(time), **extra)


# -- splits ----------------------------------------------------------------------------------------------

def test_constant_pace_gives_exact_metric_splits():
    track = steady(1040, 2.5)  # 2,600 m, 400 s per km
    track.series["heartrate"] = [100 if t <= 400 else 200 for t in track.series["time"]]
    items = splits(track, 1000)
    assert [(s["split"], s["distance"], s["elapsed_time"], s["moving_time"]) for s in items] == [
        (1, 1000.0, 400, 400), (2, 1000.0, 400, 400), (3, 600.0, 240, 240)]
    assert [s["elevation_difference"] for s in items] == [10.0, 10.0, 6.0]
    assert {s["average_speed"] for s in items} == {2.5}
    # the record at 400 s ends split 1 (its heart rate is split 1's), split 2 has those after it
    assert [s["average_heartrate"] for s in items] == [100.0, 200.0, 200.0]
    assert {s["pace_zone"] for s in items} == {s["average_grade_adjusted_speed"] for s in items} == {None}


def test_a_split_ends_at_the_first_record_reaching_its_distance():
    items = splits(steady(1040, 2.5), derive.STANDARD_SPLIT_M)
    # 1,609.344 m is first reached at 644 s (1,610 m); the rest, 990 m in 396 s, is the partial split
    assert [(s["distance"], s["elapsed_time"]) for s in items] == [(1610.0, 644), (990.0, 396)]


def test_a_pause_standing_still_or_auto_paused_is_elapsed_but_not_moving():
    # 200 s running, 60 s standing (records go on), 300 s running, a 120 s auto-pause (no records), 100 s
    # running: 2.5 m/s whenever running
    time = [*range(0, 561), *range(681, 782)]
    running = {*range(1, 201), *range(261, 561), *range(682, 782)}
    distance = list(accumulate(2.5 if t in running else 0.0 for t in time))
    track = make_track(time, distance=distance)
    items = splits(track, 1000)
    # 1,000 m after 400 s of running: at 460 s, 60 s of it standing; then 500 m more, the pause in between
    assert [(s["distance"], s["elapsed_time"], s["moving_time"]) for s in items] == [
        (1000.0, 460, 400), (500.0, 321, 200)]
    assert items[0]["average_speed"] == 2.5
    summary = file_summary(track)
    assert summary.moving_s == 600 and summary.elapsed_s == 781
    moving = stream_set(track)["moving"]["data"]
    assert [moving[0], moving[100], moving[230], moving[561], moving[562]] == [False, True, False, False, True]


def test_a_gap_moved_through_counts_as_moving():
    # a tunnel: no records for 30 s, but 75 m further on: as fast as before, so moving
    time = [*range(0, 101), *range(131, 201)]
    distance = [2.5 * t for t in time]
    summary = file_summary(make_track(time, distance=distance))
    assert summary.moving_s == summary.elapsed_s == 200


def test_cycling_moves_only_above_its_own_threshold():
    # 0.5 m/s: moving for a runner's threshold (0.3), standing for a rider's (1.0)
    time = list(range(101))
    distance = [0.5 * t for t in time]
    assert file_summary(make_track(time, distance=distance, sport="Walk")).moving_s == 100
    assert file_summary(make_track(time, distance=distance, sport="Ride")).moving_s == 0


def test_the_callers_sport_wins_over_the_files():
    # a ride as Strava's app writes its GPX (<type>1</type>: no sport the file states): 300 s at 8 m/s,
    # then 300 s creeping at 0.5 m/s, which is standing for a rider
    points = "".join(f'<trkpt lat="{45 + (8 * min(t, 300) + 0.5 * max(t - 300, 0)) / 111_195:.7f}" lon="7.0">'
                     f"<time>2024-05-01T10:{t // 60:02d}:{t % 60:02d}Z</time></trkpt>" for t in range(600))
    gpx = ('<?xml version="1.0"?><gpx version="1.1" creator="StravaGPX" xmlns="http://www.topografix.com/GPX/1/1">'
           f"<trk><type>1</type><trkseg>{points}</trkseg></trk></gpx>").encode()
    track = decode_file(gpx, "activities/1.gpx")
    assert track.session.sport_type is None
    assert file_summary(track).moving_s == 599  # the file alone: the walking threshold
    ride = file_summary(track, "Ride")
    assert (ride.sport_type, ride.moving_s) == ("Ride", 300)
    derived = prepare(track, "Ride")
    (lap,) = laps(derived)
    assert lap["moving_time"] == 300 and file_summary(derived) == ride
    # and over the file's own sport
    assert file_summary(make_track(list(range(101)), distance=[0.5 * t for t in range(101)], sport="Walk"),
                        "Ride").moving_s == 0


def test_positions_only_gives_the_great_circle_distance_within_half_a_percent():
    # 45 deg N: 0.05 deg north, then 0.05 deg east, 1 Hz steps of about 2.8 m / 2 m. WGS84 lengths
    # (meridian arc and parallel arc at 45 deg), computed apart from the spherical formula under test:
    north_m = 0.05 * (111_132.954 - 559.822 * math.cos(math.radians(90)) + 1.175 * math.cos(math.radians(180)))
    east_m = 0.05 * (111_412.84 * math.cos(math.radians(45)) - 93.5 * math.cos(math.radians(135)))
    lats = [45 + 0.05 * i / 2000 for i in range(2001)] + [45.05] * 2000
    lngs = [7.0] * 2001 + [7 + 0.05 * i / 2000 for i in range(1, 2001)]
    track = make_track(list(range(len(lats))), lat=lats, lng=lngs, fmt="gpx")
    total = stream_set(track)["distance"]["data"][-1]
    assert total == pytest.approx(north_m + east_m, rel=0.005)
    items = splits(track, 1000)
    assert len(items) == math.ceil(total / 1000)
    assert sum(s["distance"] for s in items) == pytest.approx(total, abs=0.05 * len(items))


def test_positions_missing_are_measured_past_and_interpolated_in_time():
    lats = [None, 45.0, None, None, 45.001, 45.002, None]  # a fix every 10 s, 111 m apart
    track = make_track(list(range(0, 70, 10)), lat=lats, lng=[7.0] * 7, fmt="gpx")
    gapless = make_track([0, 10, 20], lat=[45.0, 45.001, 45.002], lng=[7.0] * 3, fmt="gpx")
    step = stream_set(gapless)["distance"]["data"][1]
    assert step == pytest.approx(111.195, abs=0.01)  # 0.001 deg of a meridian on the mean sphere
    # 0 before the first fix; the records between two fixes at the pace between them; the last value after
    assert stream_set(track)["distance"]["data"] == pytest.approx(
        [0.0, 0.0, step / 3, 2 * step / 3, step, 2 * step, 2 * step])


def test_gaps_are_interpolated_and_the_distance_never_decreases():
    time = list(range(8))
    distance = [None, 0.0, 3.0, None, 9.0, 8.5, 15.0, None]     # 8.5: a glitch backwards
    altitude = [None, 10.0, None, 11.0, 11.0, None, 12.0, 12.0]
    heartrate = [None, 140, 150, None, None, 160, None, 170]
    lat = [None, 45.0, 45.00003, None, 45.00008, 45.0001, 45.00013, 45.00013]
    lng = [7.0] * 8
    track = make_track(time, distance=distance, altitude=altitude, heartrate=heartrate, lat=lat, lng=lng)
    streams = stream_set(track)
    assert streams["distance"]["data"] == [0.0, 0.0, 3.0, 6.0, 9.0, 9.0, 15.0, 15.0]
    assert streams["altitude"]["data"] == altitude  # as the device recorded it
    assert streams["latlng"]["data"][0] is None and streams["latlng"]["data"][1] == [45.0, 7.0]
    (only,) = splits(track, 1000)
    assert (only["distance"], only["elapsed_time"], only["elevation_difference"]) == (15.0, 7, 2.0)
    assert only["average_heartrate"] == 155.0  # the mean of the values present


def test_a_record_past_several_boundaries_ends_one_split_and_none_is_empty():
    # 1 m/s for 900 s, then no record for 600 s (the device lost its fix, or paused while carried) and
    # 2,300 m on: that record is past the 1 km and 2 km boundaries; the next boundary is 3 km
    time = [*range(0, 901), *range(1500, 1800)]
    distance = [float(t) for t in range(0, 901)] + [2300.0 + t for t in range(0, 300)]
    items = splits(make_track(time, distance=distance), 1000)
    assert [(s["split"], s["distance"], s["elapsed_time"], s["moving_time"]) for s in items] == [
        (1, 2300.0, 1500, 1500), (2, 299.0, 299, 299)]
    # a boundary less than 0.1 m past a split's end is passed too: no split of a few centimetres
    time = list(range(0, 500, 100))
    close = splits(make_track(time, distance=[0.0, 999.97, 1000.0, 1500.0, 2000.5]), 500)
    assert [s["distance"] for s in close] == [1000.0, 500.0, 500.5]


def test_a_time_stepping_back_takes_the_time_before_it():
    # a corrupt timestamp at the record ending the second kilometre (2.8 m/s: 1 km in 357.1 s): it
    # made that split -358 s long; the record takes the time before it (not moving: no second of its
    # own), and the next record's interval the two seconds up to it
    track = make_track(list(range(1001)), distance=[2.8 * t for t in range(1001)])
    track.series["time"][715] = 0
    derived = prepare(track)
    assert [(s["elapsed_time"], s["moving_time"]) for s in splits(derived, 1000)] == [
        (358, 358), (356, 356), (286, 286)]
    assert stream_set(derived)["time"]["data"][714:717] == [714, 714, 716]
    assert derived.moving[714:717] == [True, False, True]
    assert file_summary(derived).moving_s == 1000


def test_a_corrupt_first_time_holds_no_record():
    # time [1000, 0, 1, ...]: the running maximum held every record at 1000 s, so the first kilometre
    # took no time at all; the first time is a glitch and takes the time of the record after it
    track = make_track([1000, *range(1500)], distance=[0.0, *(2.5 * t for t in range(1500))])
    assert [s["elapsed_time"] for s in splits(track, 1000)] == [400, 400, 400, 299]
    assert file_summary(track).moving_s == 1499


@st.composite
def first_time_glitched(draw) -> tuple[Track, int]:
    """A moving recording (1 to 6 m/s, so every record ends a split or lies within one) with gaps in time,
    whose first time may be corrupt: after every time of the ten records after it, or more than a day
    before them; and the time the track spans from the record it starts at."""
    steps = draw(st.lists(st.integers(1, 5) | st.integers(30, 600), min_size=2 * 6, max_size=300))
    time = list(accumulate(steps, initial=0))
    speeds = draw(st.lists(st.floats(1, 6), min_size=len(steps), max_size=len(steps)))
    distance = list(accumulate(map(mul, speeds, steps), initial=0.0))
    corrupt = draw(st.none() | st.integers(time[11], time[11] + 10 ** 6)
                   | st.integers(-10 ** 9, -TIME_GLITCH_S - 1))
    if corrupt is None:
        return make_track(time, distance=distance), time[-1] - time[0]
    return make_track([corrupt, *time[1:]], distance=distance), time[-1] - time[1]


@settings(max_examples=200, deadline=None)
@given(case=first_time_glitched(), unit=st.sampled_from([1000.0, 50.0]))
def test_split_elapsed_times_add_up_to_the_tracks_span_whatever_its_first_time(case, unit):
    track, span_s = case
    derived = prepare(track)
    assert sum(s["elapsed_time"] for s in splits(derived, unit)) == span_s
    assert file_summary(derived).moving_s == span_s  # every interval moves


def test_a_track_shorter_than_one_split_is_one_partial_split():
    (only,) = splits(steady(100, 3.0), 1000)
    assert (only["split"], only["distance"], only["elapsed_time"], only["moving_time"]) == (1, 300.0, 100, 100)


def test_a_remainder_under_a_tenth_of_a_metre_is_no_split():
    track = steady(400, 2.5)
    for name, value in (("time", 401), ("distance", 1000.05), ("altitude", 110.0), ("heartrate", 150)):
        track.series[name].append(value)  # 5 cm after the first kilometre: no second split
    assert [s["distance"] for s in splits(track, 1000)] == [1000.0]


@pytest.mark.parametrize("distance", [None, [0.0] * 61])
def test_without_distance_there_are_no_splits_and_no_moving(distance):
    # a treadmill run without a foot pod, or weights: time and heart rate only (or a distance stuck at 0)
    series = {"heartrate": [120] * 61} | ({"distance": distance} if distance else {})
    track = make_track(list(range(61)), sport="WeightTraining",
                       session=Session(sport_type="WeightTraining", timer_s=55.0), **series)
    assert splits(track, 1000) == [] and splits(track, derive.STANDARD_SPLIT_M) == []
    streams = stream_set(track)
    assert set(streams) == {"time", "heartrate"} | ({"distance"} if distance else set())
    summary = file_summary(track)
    assert summary.moving_s == 55.0 and summary.elapsed_s == 60.0
    (lap,) = laps(track)
    assert (lap["elapsed_time"], lap["moving_time"], lap["start_index"], lap["end_index"]) == (60, 60, 0, 60)
    assert lap["distance"] == 0.0 and lap["average_heartrate"] == 120.0  # as the API's lap of weights


def test_an_empty_track_derives_nothing():
    track = Track(format="fit", start_utc_s=None, status="unreadable")
    assert stream_set(track) == {} and splits(track, 1000) == [] and laps(track) == []
    summary = file_summary(track)
    assert summary == FileSummary(None, None, None, None, None, None)


@st.composite
def tracks(draw) -> Track:
    """A recording with stops, gaps in time (30 to 600 s), a clock stepping back, missing values and
    glitches (values far ahead or behind, near or impossible; the first value too), perhaps a step of
    the device's counter ahead or back, and device laps, whose stated elapsed times may be shorter than
    the records they span."""
    steps = draw(st.lists(st.integers(0, 5) | st.integers(30, 600) | st.integers(-600, -1), min_size=1,
                          max_size=400))
    time = list(accumulate(steps, initial=0))
    moves = draw(st.lists(st.floats(0, 15) | st.just(0.0), min_size=len(steps), max_size=len(steps)))
    distance = list(accumulate(moves, initial=0.0))
    count = len(time)
    step_at = draw(st.integers(1, count - 1)) if count > 1 and draw(st.booleans()) else count
    step_m = draw(st.floats(-1e5, 1e5))
    distance = [d + (step_m if i >= step_at else 0.0) for i, d in enumerate(distance)]
    recorded: list[float | None] = list(distance)
    for i in draw(st.sets(st.integers(1, count - 1), max_size=count // 4)) if count > 1 else ():
        recorded[i] = None
    for i, value in (draw(st.dictionaries(st.integers(0, count - 1), st.sampled_from([0.0, -50.0, 1e9])
                                          | st.floats(0, 1e7), max_size=count // 10 + 1))).items():
        recorded[i] = value
    starts = sorted({0.0} | draw(st.sets(st.floats(0, max(time)), max_size=4)))
    laps_ = [DeviceLap(start_s=start, elapsed_s=draw(st.none() | st.floats(0, end - start)))
             for start, end in zip(starts, [*starts[1:], float(max(time))])]
    altitude = [100 + 5 * math.sin(i / 7) for i in range(count)]
    sport = draw(st.sampled_from(["Run", "Ride", "Walk", None]))
    return make_track(time, distance=recorded, altitude=altitude, sport=sport, laps_=laps_)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(track=tracks(), unit=st.sampled_from([1000.0, derive.STANDARD_SPLIT_M, 50.0]),
       sport=st.sampled_from([None, "Run", "Ride"]))
def test_splits_and_laps_hold_for_any_glitched_track(track, unit, sport):
    derived = prepare(track, sport)
    items = splits(derived, unit)
    streams = stream_set(derived)
    summary = file_summary(derived)
    assert summary.moving_s <= summary.elapsed_s
    lap_items = laps(derived)
    assert all(0 <= lap["moving_time"] <= lap["elapsed_time"] for lap in lap_items)
    assert [lap["lap_index"] for lap in lap_items] == list(range(1, len(track.laps) + 1))
    if "distance" not in streams or not derived.moves:
        assert items == []
        return
    distance = streams["distance"]["data"]
    assert all(b >= a for a, b in zip(distance, distance[1:]))
    assert len(streams["moving"]["data"]) == len(distance)
    total = distance[-1] - distance[0]
    assert [s["split"] for s in items] == list(range(1, len(items) + 1))
    assert all(s["distance"] > 0 for s in items)  # no empty split, the last included
    assert all(0 <= s["moving_time"] <= s["elapsed_time"] for s in items)
    assert all(b >= a for a, b in pairwise(streams["time"]["data"]))
    assert (1 if total >= derive.MIN_SPLIT_M else 0) <= len(items) <= int(total // unit) + 1
    # splits follow each other: together they cover the track (less a last remainder under 0.1 m) ...
    assert sum(s["distance"] for s in items) == pytest.approx(total, abs=0.05 * len(items) + derive.MIN_SPLIT_M)
    # (the track may start after its first record's time: a first time out of line is a glitch)
    assert sum(s["elapsed_time"] for s in items) <= max(track.series["time"]) - min(track.series["time"])
    assert sum(s["moving_time"] for s in items) <= summary.moving_s
    # ... and every split but the last ends at or past a boundary of its own
    covered = list(accumulate(s["distance"] for s in items))
    assert all(metres >= k * unit - 0.05 * k for k, metres in enumerate(covered[:-1], start=1))


# -- derived streams -------------------------------------------------------------------------------------

def test_velocity_and_grade_follow_their_windows():
    track = steady(300, 2.5)
    streams = stream_set(track)
    assert streams["velocity_smooth"]["data"] == [pytest.approx(2.5)] * 301
    assert streams["grade_smooth"]["data"] == [pytest.approx(1.0)] * 301
    # standing still for a while: no grade (the distance change is under 5 m), no speed in the middle
    time = list(range(41))
    distance = [min(t, 10) * 2.0 + max(0, t - 30) * 2.0 for t in time]
    streams = stream_set(make_track(time, distance=distance, altitude=[50.0] * 41))
    assert streams["grade_smooth"]["data"][20] is None and streams["grade_smooth"]["data"][5] == 0.0
    assert streams["velocity_smooth"]["data"][20] == 0.0 and streams["velocity_smooth"]["data"][10] == 1.0


def test_stream_set_builds_the_streams_table():
    track = steady(30, 3.0)
    track.series["lat"] = [45.0 + t * 1e-5 for t in range(31)]
    track.series["lng"] = [7.0] * 31
    table = build_streams(42, "2023-11-14T22:13:20Z", "Run", stream_set(track))
    rows = table.to_pylist()
    assert len(rows) == 31 and rows[10]["distance"] == 30.0 and rows[10]["lat"] == pytest.approx(45.0001)
    assert rows[10]["velocity_smooth"] == pytest.approx(3.0) and rows[10]["moving"] is True
    assert rows[10]["grade_smooth"] == pytest.approx(1.0) and rows[10]["heartrate"] == 150
    assert rows[10]["cadence"] is None  # the file has none


# -- laps ------------------------------------------------------------------------------------------------

def test_device_laps_keep_the_device_values_and_find_their_records():
    track = steady(1040, 2.5, laps_=[
        DeviceLap(start_s=0.0, elapsed_s=400.0, timer_s=398.0, distance_m=1000.4, ascent_m=9.0,
                  average_heartrate=151.0, max_heartrate=160.0, max_speed=3.1),
        DeviceLap(start_s=400.0, elapsed_s=640.3, distance_m=1599.6),
    ])
    first, second = laps(track)
    assert (first["lap_index"], first["split"], first["name"]) == (1, 1, "Lap 1")
    # the moving time is the moving rule's, not the device's timer (which counts standing still)
    assert (first["elapsed_time"], first["moving_time"], first["distance"]) == (400, 400, 1000.4)
    assert (first["start_index"], first["end_index"]) == (0, 400)
    assert (first["total_elevation_gain"], first["average_heartrate"], first["max_heartrate"]) == (9.0, 151.0, 160.0)
    assert first["max_speed"] == 3.1 and first["average_speed"] == pytest.approx(1000.4 / 400, abs=0.001)
    assert first["start_date"] == "2023-11-14T22:13:20Z" and second["start_date"] == "2023-11-14T22:20:00Z"
    # what the device left out comes from the records
    assert (second["start_index"], second["end_index"], second["moving_time"]) == (400, 1040, 640)
    assert second["average_heartrate"] == 150.0 and second["max_speed"] == pytest.approx(2.5)
    assert second["total_elevation_gain"] == pytest.approx(16.0, abs=0.1)
    assert (first["id"], first["start_date_local"], first["device_watts"]) == (None, None, False)


def test_a_lap_ends_at_its_elapsed_time_or_at_the_next_start():
    time = list(range(0, 100))
    distance = [3.0 * t for t in time]
    # lap 1 ends at 30 s (a record sits there); then 5 s not in any lap; lap 2 gives no elapsed time
    device = [DeviceLap(start_s=0.0, elapsed_s=29.7), DeviceLap(start_s=35.0), DeviceLap(start_s=60.0)]
    bounds = [(lap["start_index"], lap["end_index"]) for lap in laps(make_track(time, distance=distance,
                                                                                 laps_=device))]
    assert bounds == [(0, 30), (30, 60), (60, 99)]


def test_a_file_without_laps_is_one_lap():
    track = steady(600, 2.5, fmt="gpx")
    (lap,) = laps(track)
    assert (lap["start_index"], lap["end_index"], lap["elapsed_time"], lap["moving_time"]) == (0, 600, 600, 600)
    assert lap["distance"] == 1500.0 and lap["average_heartrate"] == 150.0
    assert lap["total_elevation_gain"] == pytest.approx(15.0)


def test_derived_details_build_the_split_and_lap_tables():
    track = steady(1040, 2.5, laps_=[DeviceLap(start_s=0.0, elapsed_s=520.0), DeviceLap(start_s=520.0)])
    detail = {"id": 7, "sport_type": "Run", "start_date": "2023-11-14T22:13:20Z",
              "splits_metric": splits(track, 1000), "splits_standard": splits(track, derive.STANDARD_SPLIT_M),
              "laps": laps(track)}
    tables = build_tables([(7, None, detail)])
    assert tables["splits_metric"].column("moving_time").to_pylist() == [400, 400, 240]
    assert tables["splits_standard"].column("distance").to_pylist() == [1610.0, 990.0]
    assert tables["laps"].column("elapsed_time").to_pylist() == [520, 520]
    assert tables["laps"].column("start_date").to_pylist()[1].isoformat() == "2023-11-14T22:22:00+00:00"


# -- totals and staleness --------------------------------------------------------------------------------

def test_file_summary_takes_the_session_where_it_states_a_value():
    session = Session(sport_type="Run", start_utc_s=START - 1, elapsed_s=1041.5, timer_s=1000.0,
                      distance_m=2601.2, ascent_m=25.0)
    stated = file_summary(steady(1040, 2.5, session=session))
    assert stated == FileSummary(START - 1, "Run", 2601.2, 1041.5, 1040.0, 25.0)
    computed = file_summary(steady(1040, 2.5))
    assert computed == FileSummary(START, "Run", 2600.0, 1040.0, 1040.0, pytest.approx(26.0))


def test_the_records_distance_is_the_summarys_when_the_session_disagrees():
    # a step of 2 km in the counter that the session does not count: the splits come from the records,
    # so the summary says what they say, and the API's 2,600 m finds it stale
    session = Session(sport_type="Run", distance_m=2600.0)
    track = steady(1040, 2.5, session=session)
    track.series["distance"] = [d + (2000.0 if t >= 500 else 0.0) for t, d in enumerate(track.series["distance"])]
    summary = file_summary(track)
    assert summary.distance_m == 4600.0
    assert is_stale(summary, {"elapsed_time": 1040, "distance": 2600.0})
    assert file_summary(steady(1040, 2.5, session=session)).distance_m == 2600.0  # agreeing: the session's


@pytest.mark.parametrize(("altitude", "gain"), [
    ([100.0, 100.8, 100.0, 100.8, 100.1, 100.9] * 5, 0.0),                       # wiggles under 1 m
    ([100 + i * 0.2 + (0.4 if i % 2 else 0.0) for i in range(51)], 10.2),        # a noisy 10 m climb
    ([100.0, 105.0, 103.0, 108.0, 90.0, 91.5], 11.5),                            # 5 + 5 + 1.5
])
def test_elevation_gain_ignores_wiggles_under_a_metre(altitude, gain):
    assert derive.elevation_gain(altitude) == pytest.approx(gain)


@pytest.mark.parametrize(("api", "stale"), [
    ({"elapsed_time": 3600, "distance": 10_000.0}, False),
    ({"elapsed_time": 3629, "distance": 10_250.0}, False),   # 29 s, 2.5 %: Strava measuring a bit differently
    ({"elapsed_time": 3569, "distance": 10_000.0}, True),    # cropped by 31 s
    ({"elapsed_time": 3600, "distance": 9_500.0}, True),     # distance corrected by 5 %
    ({"elapsed_time": 3600, "distance": 1_040.0}, False),    # a short one: 40 m is within the 50 m floor
    ({"elapsed_time": None, "distance": "10000"}, False),    # nothing comparable
    ({}, False),
])
def test_is_stale_beyond_half_a_minute_or_three_percent(api, stale):
    short = api.get("distance") == 1_040.0
    summary = FileSummary(START, "Run", 1_000.0 if short else 10_000.0, 3600.0, 3500.0, 50.0)
    assert is_stale(summary, api) is stale


def test_prepare_serves_every_derivation_once():
    track = steady(1040, 2.5)
    derived = prepare(track)
    assert splits(derived, 1000) == splits(track, 1000)
    assert stream_set(derived) == stream_set(track) and laps(derived) == laps(track)
    assert file_summary(derived) == file_summary(track)


# -- real device files -----------------------------------------------------------------------------------

FILES = Path(__file__).parent / "fixtures_files"


@functools.cache  # the tests only read the track
def decoded(name: str) -> Track:
    return decode_file((FILES / name).read_bytes(), name)


@pytest.mark.parametrize("name", ["fenix2-run.fit", "edge500-ride.fit", "forerunner-run.tcx"])
def test_real_laps_keep_the_device_values_and_span_its_records(name):
    track = decoded(name)
    derived = prepare(track)
    items = laps(derived)
    assert len(items) == len(track.laps) > 1
    assert items[0]["start_index"] == 0 and items[-1]["end_index"] == track.records - 1
    for item, device in zip(items, track.laps):
        assert item["distance"] == round(device.distance_m, 2)
        # the moving rule against the device's timer (auto-paused on the Edge 500)
        assert item["moving_time"] == pytest.approx(device.timer_s, rel=0.01, abs=2)
        # the records a lap spans cover the device's lap within about a second of riding (15 m, 2 s):
        # the device closes a lap between two records
        start, end = item["start_index"], item["end_index"]
        assert derived.distance[end] - derived.distance[start] == pytest.approx(device.distance_m, abs=15)
        stated_s = device.elapsed_s if device.elapsed_s is not None else device.timer_s  # TCX: no pauses
        assert derived.time[end] - derived.time[start] == pytest.approx(stated_s, abs=2)


@pytest.mark.parametrize("name", ["fenix2-run.fit", "edge500-ride.fit"])
def test_real_laps_add_up_to_the_session(name):
    track = decoded(name)
    items = laps(track)
    session = track.session
    assert sum(lap["distance"] for lap in items) == pytest.approx(session.distance_m, abs=0.05)
    # each lap's seconds are rounded, and the Fenix leaves a second between laps
    assert sum(lap["elapsed_time"] for lap in items) == pytest.approx(session.elapsed_s, abs=len(items))
    # a lap's moving time is at most its elapsed time, which the device states a second short of the
    # records the lap spans on the Fenix: the laps may then add up to a second each less than the file
    moving = file_summary(track).moving_s
    assert moving - len(items) <= sum(lap["moving_time"] for lap in items) <= moving
    assert all(lap["moving_time"] <= lap["elapsed_time"] for lap in items)


@pytest.mark.parametrize("name", ["fenix2-run.fit", "edge500-ride.fit", "forerunner-run.tcx", "hike.gpx"])
def test_real_metric_splits_add_up_to_the_file_summary(name):
    derived = prepare(decoded(name))
    summary = file_summary(derived)
    items = splits(derived, 1000)
    assert len(items) == math.ceil(summary.distance_m / 1000)
    assert sum(s["distance"] for s in items) == pytest.approx(summary.distance_m, rel=0.001)
    assert sum(s["elapsed_time"] for s in items) == pytest.approx(summary.elapsed_s, abs=2)
    assert sum(s["moving_time"] for s in items) == summary.moving_s


@pytest.mark.parametrize("name", ["fenix2-run.fit", "edge500-ride.fit"])
def test_the_moving_rule_agrees_with_the_devices_timer(name):
    # the Edge 500 paused its timer at stops (2,050 s of 12,691); the Fenix 2 ran on without a stop
    track = decoded(name)
    assert file_summary(track).moving_s == pytest.approx(track.session.timer_s, rel=0.01)


def test_a_gpx_track_measures_as_another_implementation_does():
    # 2,695.8 m: the 2D length tkrajina/gpxgo's README reports for this file (its gpxinfo example)
    track = decoded("hike.gpx")
    assert stream_set(track)["distance"]["data"][-1] == pytest.approx(2695.8, rel=0.005)
    (lap,) = laps(track)
    assert (lap["start_index"], lap["end_index"]) == (0, track.records - 1)


@pytest.mark.parametrize("name", ["truncated.fit", "runkeeper-hr.gpx", "fenix5-run.fit.gz"])
def test_short_and_cut_files_derive_without_fault(name):
    track = decoded(name)
    streams = stream_set(track)
    assert {len(stream["data"]) for stream in streams.values()} == {track.records}
    summary = file_summary(track)
    # the Fenix 5's session: 56.887 s, its records 57 s apart: moving time stays within the elapsed
    assert summary.moving_s <= summary.elapsed_s
    items = splits(track, 1000)
    assert len(items) == (1 if summary.distance_m >= 1 else 0)
    assert [lap["lap_index"] for lap in laps(track)] == [1]
