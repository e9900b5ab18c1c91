"""bulkfetch.pace: the issue-15 definitions, the COURSE parser, and race prediction on simulated histories."""

from __future__ import annotations

import dataclasses
import math
import statistics

import pytest

from bench import pace_loo
from bulkfetch import pace
from bulkfetch.simulator.history import METRIC_SPLIT_M, History, splits
from bulkfetch.simulator.pace_model import PaceModel


def test_minetti_cost_at_known_grades() -> None:
    assert pace.minetti_cost(0.0) == 3.6
    assert pace.minetti_cost(0.1) == pytest.approx(3.6 + 1.95 + 0.463 - 0.0433 - 0.00304 + 0.001554)
    assert pace.minetti_cost(-0.1) == pytest.approx(3.6 - 1.95 + 0.463 + 0.0433 - 0.00304 - 0.001554)
    assert pace.predicted_pace(0.3, 0.1) == pytest.approx(0.3 * pace.minetti_cost(0.1) / 3.6)
    # Downhill saves, then costs again: the cheapest grade lies near -20 %.
    assert pace.relative_cost(-0.2) < pace.relative_cost(-0.1) < 1 < pace.relative_cost(0.1)


def test_splits_used_are_full_moved_and_within_minetti_range() -> None:
    rows = [(949.9, 300, 0), (950.0, 300, 0), (1050.0, 300, 0), (1050.1, 300, 0), (1000, 0, 0),
            (1000, 300, 451), (1000, 300, -450), (500, 150, 0)]
    used = pace.usable_splits(7, False, rows)
    assert [(s.distance_m, s.elevation_difference_m) for s in used] == [(950.0, 0), (1050.0, 0), (1000, -450)]
    # Distance into the run counts the splits left out.
    assert used[0].into_m == 949.9 + 475.0
    miles = pace.usable_splits(7, False, [(1609.3, 480, 0), (1500, 480, 0)], unit_m=pace.MILE_M)
    assert len(miles) == 1 and miles[0].pace == pytest.approx(480 / 1609.3)


def test_flat_pace_is_the_median_of_splits_under_one_percent() -> None:
    used = pace.usable_splits(1, False, [(1000, 300, 0), (1000, 310, 9.9), (1000, 400, 10), (1000, 290, -5)])
    assert pace.flat_pace(used) == pytest.approx(0.3)
    assert pace.flat_pace(pace.usable_splits(1, False, [(1000, 400, 10)])) is None


def test_course_parser() -> None:
    marathon = pace.parse_course("42.195km+350m-350m")
    assert sum(d for d, _ in marathon) == pytest.approx(42195)
    assert sum(r for _, r in marathon if r > 0) == pytest.approx(350)
    assert sum(r for _, r in marathon if r < 0) == pytest.approx(-350)
    assert max(d for d, _ in marathon) <= 1000
    assert pace.parse_course("13.1mi+100m") == pace.parse_course("13.1mi+100m-100m")
    climb_only = pace.parse_course("10km+200m-0m")
    assert all(r > 0 for _, r in climb_only) and sum(d for d, _ in climb_only) == pytest.approx(10000)
    assert all(r == 0 for _, r in pace.parse_course("5km+0m"))
    steepest = pace.parse_course("1km+200m-250m")  # 45 %: up 444 m at 45 %, down 556 m at 45 %
    assert max(abs(r / d) for d, r in steepest) == pytest.approx(0.45)
    for bad in ("42km", "km+3m", "10km+5", "10km-5m", "0km+0m", "1km+500m", "10 km+5m", "-5km+3m",
                "10km+4000m-4000m", "1km+300m-200m"):
        with pytest.raises(ValueError, match="course") as error:
            pace.parse_course(bad)
        assert "\n" not in str(error.value)


def _uneven_run(distance_m: float) -> list[tuple[float, float, float]]:
    """1 km splits (and a short last one) of a run 3 % slower per 10 km into it, and slower at both ends
    than in its middle by up to 20 % (symmetric, so it says nothing about fatigue); splits climb 2 %, stay flat
    and drop 2 % by turns (costing half Minetti's) so the grade terms can be fitted."""
    def seconds(low_m: float, high_m: float) -> float:
        steps = 200
        width = (high_m - low_m) / steps
        return sum(width * 0.3 * (1 + 0.03 * m / 10_000) * (1 + 0.2 * math.cos(2 * math.pi * m / distance_m))
                   for m in (low_m + (k + 0.5) * width for k in range(steps)))
    edges = [*range(0, int(distance_m), 1000), distance_m]
    rises = [(b - a) * 0.02 * (index % 3 - 1) for index, (a, b) in enumerate(zip(edges, edges[1:]))]
    return [(b - a, seconds(a, b) * pace.relative_cost(rise / (b - a)) ** 0.5, rise)
            for (a, b), rise in zip(zip(edges, edges[1:]), rises)]


def test_fatigue_is_not_biased_by_leaving_out_short_last_splits() -> None:
    runs = [_uneven_run(distance_m) for distance_m in (8400.0, 12300.0, 16500.0, 20600.0)]
    fitted = pace.fit_pace([s for index, rows in enumerate(runs) for s in pace.fit_splits(index, False, rows)])
    assert fitted.fatigue_per_10km == pytest.approx(0.03, abs=0.005)
    full_only = pace.fit_pace([s for index, rows in enumerate(runs) for s in pace.usable_splits(index, False, rows)])
    assert full_only.fatigue_per_10km < 0.02  # why the fit takes the short last splits too


def test_fatigue_grows_in_proportion_to_distance_not_compounding() -> None:
    # Flat runs of 10-40 km, 10 % slower each 10 km into them in proportion: a log-linear term would fit
    # c ~ 0.085 and put the end of a long run fast.
    runs = [[(1000.0, 300 * (1 + 0.1 * (k + 0.5) / 10), 0.0) for k in range(km)] for km in (10, 20, 30, 40)]
    fitted = pace.fit_pace([s for index, rows in enumerate(runs) for s in pace.fit_splits(index, False, rows)])
    assert fitted.fatigue_per_10km == pytest.approx(0.1, abs=1e-4)
    assert fitted.terms(0.0, 40_000) == pytest.approx(math.log(1.4), abs=1e-4)


def test_a_course_beyond_the_fitted_grades_and_lengths_is_held_to_minetti_and_said() -> None:
    # Runs on +-2 % grades with a bend fitted on them: a +30 % course must not take the square to 30 %.
    runs = [_uneven_run(distance_m) for distance_m in (8400.0, 12300.0)]
    fitted = dataclasses.replace(pace.fit_pace(
        [s for index, rows in enumerate(runs) for s in pace.fit_splits(index, False, rows)]), uphill_bend=40.0)
    assert fitted.grade_range == pytest.approx((-0.02, 0.02)) and fitted.longest_m == pytest.approx(12300)
    flat = math.exp(fitted.terms(0.0, 0.0))
    steep = math.exp(fitted.terms(0.30, 0.0)) / flat
    held = math.exp(fitted.uphill_weight * math.log(pace.relative_cost(0.30)) + 40.0 * 0.02 ** 2)
    assert steep == pytest.approx(held) and steep < 2 * pace.relative_cost(0.30)  # not exp(40 x 0.09) = 36 x
    gentle = pace.predict(fitted, pace.parse_course("10km+100m"))
    assert gentle.beyond == ()
    long_and_steep = pace.predict(fitted, pace.parse_course("42.195km+3000m"))
    assert len(long_and_steep.beyond) == 2 and "longer than any run fitted (12.3 km)" in long_and_steep.beyond[0]


@pytest.mark.parametrize("model", list(pace_loo.MODELS.values()), ids=list(pace_loo.MODELS))
def test_races_are_predicted_within_three_percent_leave_one_out(model: PaceModel) -> None:
    # Leave-one-out from 100 m streams over seed 4's races (bench/pace_loo.py runs more seeds).
    checks = pace_loo.race_checks(model, seed=4)
    errors = [check.error for check in checks]
    assert len(errors) >= 10
    assert max(abs(e) for e in errors) < 0.03, errors
    # The README's interval: about as wide as the worst error (the simulated day-to-day form's spread).
    assert all(0.01 < (check.half_width or 0) < 0.03 for check in checks), checks


def test_stream_rows_cut_every_100_m_and_count_moving_time_only() -> None:
    # 10 s a reading at 2.5 m/s, climbing 1 m a reading, standing still (not moving) from 40 s to 60 s.
    time_s = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90]
    distance_m = [0.0, 25, 50, 75, 100, 100, 100, 125, 150, 160]
    altitude_m: list[float | None] = [10.0, 11, 12, 13, 14, 14, 14, None, 16, 17]
    moving = [False, True, True, True, True, False, False, True, True, True]
    rows = pace.stream_rows(time_s, distance_m, altitude_m, moving, piece_m=100)
    assert rows == [(100.0, 40.0, 4.0), pytest.approx((60.0, 30.0, 3.0))]
    # The cut between readings is interpolated, and a stream with no usable readings gives no rows.
    assert pace.stream_rows([0, 10], [0.0, 150.0], [0.0, 15.0], [False, True], piece_m=100) == [
        (100.0, pytest.approx(20 / 3), pytest.approx(10.0)), (50.0, pytest.approx(10 / 3), pytest.approx(5.0))]
    assert pace.stream_rows([0], [0.0], [1.0], [False]) == []


def test_without_races_the_fastest_training_runs_set_the_level_and_the_prediction_says_so() -> None:
    history = History.build(seed=3, count=400, athlete_id=1, now_s=1.8e9)
    training, races = [], []
    for activity in history.ordered():
        if activity.paced:
            rows = [(s["distance"], s["moving_time"], s["elevation_difference"])
                    for s in splits(activity, activity.motion(), METRIC_SPLIT_M)]
            if activity.record["workout_type"] == 1:
                races.append((activity.moving_s, [(distance, rise) for distance, _, rise in rows]))
            else:
                training.extend(pace.fit_splits(activity.id, False, rows))
    fit = pace.fit_pace(training)
    assert fit.level_basis == pace.TRAINING_BASIS
    errors = []
    for moving_s, course in races:
        predicted = pace.predict(fit, course)
        assert predicted.basis == pace.TRAINING_BASIS and predicted.low_s is None  # no race spread to give
        errors.append(predicted.moving_s / moving_s - 1)
    # The fastest training runs (workouts at 2-10 % over race effort) predict the races a little slow
    # (on 1 km splits, that hide short hills: one race comes out fast).
    assert len(errors) >= 8 and 0.01 < statistics.median(errors) < 0.08 and max(map(abs, errors)) < 0.1, errors


def test_hidden_climb_is_the_gain_the_splits_do_not_show() -> None:
    rows = [(1000, 300, 12), (1000, 300, -20), (500, 150, 3)]
    assert pace.hidden_climb(rows, 40) == pytest.approx((40 - 15) / 2500)
    assert pace.hidden_climb(rows, 10) == 0.0 and pace.hidden_climb(rows, None) == 0.0


def test_race_level_line_separates_hidden_hills_from_the_level() -> None:
    # Two flat races at level -1.2 and two whose short hills cost 5 per unit of hidden climb: the mean
    # level (-1.17) would predict the flat races 3 % slow.
    level, slope = pace.level_line([-1.2, -1.2 + 5 * 0.02, -1.2, -1.2 + 5 * 0.004], [0.0, 0.02, 0.0, 0.004])
    assert (level, slope) == (pytest.approx(-1.2), pytest.approx(5.0))
    # Hidden hills cannot make a race faster: a falling line is flattened to the mean.
    assert pace.level_line([-1.1, -1.2, -1.3], [0.0, 0.01, 0.02]) == (pytest.approx(-1.2), 0.0)
    assert pace.level_line([-1.1, -1.3], [0.0, 0.02]) == (pytest.approx(-1.2), 0.0)  # too few races
