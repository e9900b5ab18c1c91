"""Benchmark: how well `bulkfetch report --predict` predicts races, leave-one-out on the simulator.

    python bench/pace_loo.py                  # seeds 3 4 5 7 8 9, both simulated pace models
    python bench/pace_loo.py --seeds 4        # what tests/test_pace.py checks (within 3 %)

For each seed, a 400-activity simulated history per pace model (MODELS: the simulator's terrain cost is
not Minetti's, and the two differ in flat pace, grade exponent and fatigue). Each race (workout_type 1) is
left out in turn: bulkfetch.pace fits every other run's streams (time, distance, altitude, moving, as the
API serves them) cut every 100 m, then predicts the race over its own course as those rows give it (as a
GPX of the course would). It prints per seed and model: races, worst and mean error of the predicted
moving time, and the 90 % interval's half-width (smallest and largest, as a share of the prediction).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bulkfetch import pace  # noqa: E402 (after the path: the bench runs as a plain script)
from bulkfetch.simulator.history import History, stream_points  # noqa: E402
from bulkfetch.simulator.pace_model import PaceModel  # noqa: E402

MODELS = {"model 1": PaceModel(),
          "model 2": PaceModel(flat_pace_s_per_km=260, grade_exponent=2.0, fatigue_per_10km=0.05)}
SEEDS = (3, 4, 5, 7, 8, 9)
HISTORY_SIZE = 400


@dataclass(frozen=True)
class RaceCheck:
    error: float  # predicted moving time / the race's - 1
    half_width: float | None  # the 90 % interval's high end / the prediction - 1; None without one


def race_checks(model: PaceModel, seed: int) -> list[RaceCheck]:
    """Leave-one-out over the races of one simulated history (the module's docstring)."""
    history = History.build(seed=seed, count=HISTORY_SIZE, athlete_id=1, now_s=1.8e9, pace_model=model)
    runs = {}
    for activity in history.ordered():
        if activity.paced:
            streams = stream_points(activity, ["time", "distance", "altitude", "moving"])
            rows = pace.stream_rows(streams["time"], streams["distance"], streams["altitude"], streams["moving"])
            race = activity.record["workout_type"] == 1
            runs[activity.id] = (activity, rows, pace.fit_splits(activity.id, race, rows, unit_m=pace.SEGMENT_M))
    checks = []
    for race_id, (activity, rows, _) in runs.items():
        if activity.record["workout_type"] == 1:
            fit = pace.fit_pace([s for other, (_, _, used) in runs.items() if other != race_id for s in used])
            predicted = pace.predict(fit, [(distance, rise) for distance, _, rise in rows])
            checks.append(RaceCheck(predicted.moving_s / activity.moving_s - 1,
                                    None if predicted.high_s is None else predicted.high_s / predicted.moving_s - 1))
    return checks


def render(seed: int, name: str, checks: list[RaceCheck]) -> str:
    errors = [c.error for c in checks]
    widths = [c.half_width for c in checks if c.half_width is not None]
    interval = f"interval ±{min(widths):.1%}..{max(widths):.1%}" if widths else "no interval"
    return (f"seed {seed} {name}: {len(checks)} races, worst {max(map(abs, errors)):.2%}, "
            f"mean {statistics.fmean(errors):+.2%}, {interval}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="simulated histories")
    args = parser.parse_args(argv)
    for seed in args.seeds:
        for name, model in MODELS.items():
            print(render(seed, name, race_checks(model, seed)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
