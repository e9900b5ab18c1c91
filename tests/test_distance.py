"""distance: the glitch rule and the filling of missing values, on synthetic tracks whose answers are
known by hand, a property (a glitch is the same as a missing value), and the real files (no glitch)."""

from __future__ import annotations

from itertools import accumulate
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulkfetch import derive
from bulkfetch.activity_files import decode_file
from bulkfetch.distance import (
    FOOT_MAX_SPEED_MPS,
    MAX_SPEED_MPS,
    STEP_RECORDS,
    TIME_GLITCH_S,
    distance_series,
    max_speed_mps,
    monotone_time,
)
from bulkfetch.track import Session, Track

FILES = Path(__file__).parent / "fixtures_files"


def track_of(distance: list[Any] | None = None, *, sport: str | None = "Run", time: list[int] | None = None,
             **series: list[Any]) -> Track:
    length = len(distance if distance is not None else series["lat"])
    return Track(format="fit", start_utc_s=0.0, series={"time": time or list(range(length)),
                                                        **({"distance": distance} if distance else {}), **series},
                 session=Session(sport_type=sport))


def run(seconds: int, speed: float = 2.8) -> list[float]:
    return [round(speed * t, 2) for t in range(seconds + 1)]


def test_a_spike_is_a_glitch_its_record_between_its_neighbours():
    # the review's case: one corrupt value, 500 km, in a 5 km run
    recorded = run(1800)
    recorded[900] = 500_000.0
    track = track_of(recorded)
    assert distance_series(track, "Run") == pytest.approx(run(1800))
    derived = derive.prepare(track)
    assert [s["distance"] for s in derive.splits(derived, 1000)] == [1002.4, 999.6, 999.6, 999.6, 999.6, 39.2]
    assert derive.file_summary(derived).moving_s == 1800


@pytest.mark.parametrize("value", [0.0, -3.0, 250_000.0, None])
def test_a_value_far_behind_or_ahead_or_missing_gives_the_same_distance(value):
    recorded = run(100)
    recorded[40] = value
    assert distance_series(track_of(recorded), "Run") == pytest.approx(run(100))


@pytest.mark.parametrize("length", [1, STEP_RECORDS - 1])
def test_a_jump_that_comes_back_within_the_step_records_is_a_glitch(length):
    recorded = run(100)
    recorded[50:50 + length] = [9_999.0] * length
    assert distance_series(track_of(recorded), "Run") == pytest.approx(run(100))


def test_a_jump_that_lasts_is_a_step_of_the_counter_and_is_kept():
    # a device carried 2 km while paused: its counter goes on from there (and its session counts it)
    recorded = [d + (2000.0 if t >= 50 else 0.0) for t, d in enumerate(run(100))]
    distance = distance_series(track_of(recorded), "Run")
    assert distance == recorded
    derived = derive.prepare(track_of(recorded))
    # the record past the boundaries at 1,000 and 2,000 m ends one split (2,140 m); the next boundary,
    # 3,000 m, lies past the end (2,280 m): the rest is the partial split
    assert [s["distance"] for s in derive.splits(derived, 1000)] == [2140.0, 140.0]


def test_a_jump_at_the_end_of_the_file_is_a_glitch():
    # a cut file's last records: nothing follows to confirm a step
    recorded = run(100)
    recorded[-2:] = [123_456.0, 123_459.0]
    distance = distance_series(track_of(recorded), "Run")
    assert distance == pytest.approx(run(98) + [run(98)[-1]] * 2)


def test_the_limit_is_the_sports():
    # 40 m ahead for one second: a glitch for a runner; within a rider's reach (a plateau, as a value
    # behind an earlier one always gives)
    recorded = run(100)
    recorded[30] += 40.0
    assert max_speed_mps("Run") == FOOT_MAX_SPEED_MPS < 42.8 < max_speed_mps("Ride") == max_speed_mps(None)
    assert max_speed_mps(None) == MAX_SPEED_MPS
    assert distance_series(track_of(recorded), "Run")[29:32] == pytest.approx([81.2, 84.0, 86.8])
    assert distance_series(track_of(recorded), "Ride")[29:32] == [81.2, 124.0, 124.0]


def test_a_gap_in_time_is_reach_enough():
    # a tunnel: 10 minutes without a record, 3 km further on: 5 m/s, no glitch
    time = [*range(0, 100), *range(700, 800)]
    recorded = [2.8 * t if t < 100 else 3277.2 + 2.8 * (t - 700) for t in time]
    assert distance_series(track_of(recorded, time=time), "Run") == recorded


def test_a_position_far_off_is_left_out_of_the_great_circle_distance():
    lats = [45.0 + 0.00002 * t for t in range(301)]  # about 2.2 m a second
    clean = distance_series(track_of(lat=lats, lng=[7.0] * 301), "Hike")
    glitched = lats.copy()
    glitched[150] = 46.0  # 100 km north for one second
    distance = distance_series(track_of(lat=glitched, lng=[7.0] * 301), "Hike")
    assert distance[-1] == pytest.approx(clean[-1]) and distance == pytest.approx(clean)


@pytest.mark.parametrize("spikes", [1, STEP_RECORDS - 1])
def test_first_values_out_of_reach_of_those_after_them_are_glitches(spikes):
    # nothing before them to judge them by: the values after them do (they flattened the whole run)
    recorded = run(100)
    recorded[:spikes] = [5_000.0] * spikes
    # as missing values: 0 before the first value kept
    assert distance_series(track_of(recorded), "Run") == pytest.approx([0.0] * spikes + run(100)[spikes:])


def test_a_first_value_within_reach_of_most_after_it_stays():
    recorded = run(100)
    recorded[1] = 5_000.0  # the second value is the odd one out, not the first
    assert distance_series(track_of(recorded), "Run") == pytest.approx(run(100))


# -- time -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("first", "kept"), [
    (1000, 0),                     # ahead of every time after it: the track starts at the second record
    (-TIME_GLITCH_S - 1, 0),       # a day before them: a corrupt clock, not a pause
    (STEP_RECORDS - 1, STEP_RECORDS - 1),  # ahead of fewer than half of the ten after it: kept, they wait
    # a pause of up to a day between the first record and the ten after it is the recording's
    (2 * STEP_RECORDS - TIME_GLITCH_S, 2 * STEP_RECORDS - TIME_GLITCH_S),
])
def test_a_first_time_out_of_line_with_those_after_it_is_a_glitch(first, kept):
    # [1000, 0, 1, 2, ...] held every record at 1000 s until the clock passed it: no elapsed time at all
    after = list(range(100))
    assert monotone_time([first, *after]) == [kept, *(max(t, kept) for t in after)]


def test_the_first_times_are_judged_by_those_after_them_not_only_the_first():
    assert monotone_time([500, 400, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]) == [0, 0, *range(12)]


def test_a_counter_reset_goes_on_from_the_distance_before_it():
    # the device restarts its counter at 0 after 1,400 m: the run goes on from 1,400 m, not flat until
    # the counter passes 1,400 m again
    recorded = [2.8 * t if t <= 500 else 2.8 * (t - 501) for t in range(1001)]
    distance = distance_series(track_of(recorded), "Run")
    assert distance[500:503] == pytest.approx([1400.0, 1400.0, 1402.8])
    assert distance[-1] == pytest.approx(1400.0 + 2.8 * 499)


def test_a_track_whose_time_does_not_advance_judges_by_its_own_steps():
    # every point at one second (a route, as hike.gpx is): 100 m apart is no speed at all, and a
    # position 100 km off is still a glitch
    lats = [45.0 + 0.0009 * i for i in range(20)]
    clean = distance_series(track_of(lat=lats, lng=[7.0] * 20, time=[0] * 20), "Hike")
    assert clean[-1] == pytest.approx(19 * 100.07, rel=0.001)
    lats[10] = 46.0
    glitched = distance_series(track_of(lat=lats, lng=[7.0] * 20, time=[0] * 20), "Hike")
    # without time to interpolate in, the glitch's record takes the distance before it
    assert glitched == pytest.approx([*clean[:10], clean[9], *clean[11:]])
    recorded = run(30)
    recorded[15] = 1e9
    clean = run(30)
    assert distance_series(track_of(recorded, time=[7] * 31), "Run") == pytest.approx(
        [*clean[:15], clean[14], *clean[16:]])


@pytest.mark.parametrize("name", ["fenix2-run.fit", "edge500-ride.fit", "forerunner-run.tcx", "hike.gpx"])
@pytest.mark.parametrize("sport", ["Run", None])
def test_real_files_keep_their_whole_distance(name, sport):
    # the Fenix 2's GPS settles in its first seconds (30, 13, 14, 21 m a second: a glitch by the rule);
    # its counter's total stays, only those seconds take the pace around them
    track = decode_file((FILES / name).read_bytes(), name)
    distance = distance_series(track, sport)
    if track.has("distance"):
        assert distance[-1] == max(d for d in track.series["distance"] if d is not None)
    else:
        assert distance[-1] == pytest.approx(2695.8, rel=0.005)  # as in test_derive: gpxgo's figure


# -- a glitch is the same as a missing value --------------------------------------------------------------

@st.composite
def spiked(draw) -> tuple[Track, Track]:
    """A track with spikes out of any reach (1e9 m ahead or behind, more than 100 m/s over the whole
    track; the first value too), each with STEP_RECORDS clean records after it, and the same track with
    None there."""
    steps = draw(st.lists(st.integers(0, 5) | st.integers(30, 600), min_size=2, max_size=300))
    # or a route's: every point at one time
    time = list(accumulate(steps, initial=0)) if draw(st.booleans()) else [0] * (len(steps) + 1)
    sport = draw(st.sampled_from(["Run", "Ride", None]))
    top = max_speed_mps(sport)
    moves = draw(st.lists(st.floats(0, top), min_size=len(steps), max_size=len(steps)))
    clean: list[float | None] = list(accumulate(moves, initial=0.0))
    holes = draw(st.sets(st.integers(1, len(time) - 1), max_size=len(time) // 4))
    clean = [None if i in holes else d for i, d in enumerate(clean)]
    places = sorted(draw(st.sets(st.integers(0, len(time) - 1), max_size=8)))
    spikes = [i for i, after in zip(places, [*places[1:], len(time) + STEP_RECORDS])
              if after - i > STEP_RECORDS and clean[i] is not None
              and (i > 0 or sum(d is not None for d in clean) > STEP_RECORDS + 1)]
    recorded = clean.copy()
    for i in spikes:
        recorded[i] = draw(st.sampled_from([1e9, -1e9]))
    missing = [None if i in spikes else d for i, d in enumerate(clean)]
    return track_of(recorded, sport=sport, time=time), track_of(missing, sport=sport, time=time)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pair=spiked())
def test_a_spike_derives_as_a_missing_value(pair):
    glitched, missing = pair
    sport = glitched.session.sport_type
    assert distance_series(glitched, sport) == pytest.approx(distance_series(missing, sport))
    assert derive.splits(glitched, 1000) == derive.splits(missing, 1000)
