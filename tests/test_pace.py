"""bulkfetch.pace: the issue-15 definitions, the COURSE parser, and race prediction on simulated histories."""

from __future__ import annotations

import pytest

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
    for bad in ("42km", "km+3m", "10km+5", "10km-5m", "0km+0m", "1km+500m", "10 km+5m", "-5km+3m"):
        with pytest.raises(ValueError, match="course") as error:
            pace.parse_course(bad)
        assert "\n" not in str(error.value)


def _race_errors(model: PaceModel) -> list[float]:
    """Leave-one-out over the simulated races: fit on every other run's splits (the DetailedActivity's
    splits_metric, as the API serves them), predict the race's moving time over its own course."""
    history = History.build(seed=3, count=400, athlete_id=1, now_s=1.8e9, pace_model=model)
    runs = {}
    for activity in history.ordered():
        if activity.paced:
            rows = [(s["distance"], s["moving_time"], s["elevation_difference"])
                    for s in splits(activity, activity.motion(), METRIC_SPLIT_M)]
            race = activity.record["workout_type"] == 1
            runs[activity.id] = (activity, rows, pace.usable_splits(activity.id, race, rows))
    errors = []
    for race_id, (activity, rows, _) in runs.items():
        # Hills much shorter than a split are averaged away by 1 km splits (see the report): left out.
        if activity.record["workout_type"] != 1 or activity.hills().period_m < 2000:
            continue
        fit = pace.fit_pace([s for other, (_, _, used) in runs.items() if other != race_id for s in used])
        predicted = pace.predict(fit, [(distance, rise) for distance, _, rise in rows])
        errors.append(predicted.moving_s / activity.moving_s - 1)
    return errors


@pytest.mark.parametrize("model", [PaceModel(), PaceModel(flat_pace_s_per_km=260, grade_exponent=2.0,
                                                          fatigue_per_10km=0.05)])
def test_races_are_predicted_within_three_percent_leave_one_out(model: PaceModel) -> None:
    errors = _race_errors(model)
    assert len(errors) >= 8
    assert max(abs(e) for e in errors) < 0.03, errors
