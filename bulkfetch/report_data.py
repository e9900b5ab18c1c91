"""What `bulkfetch report` shows, computed from the runs bulkfetch.report_read reads (issue 15). Pure.

Each figure's data is a plain dataclass built by a function of the athlete's runs, so its counts can be
checked without drawing anything (bulkfetch.report_figures draws them, in worker processes: this module
imports neither pyarrow nor matplotlib, so that they unpickle it quickly). Which splits are used, grade,
pace, flat pace and Minetti's cost are bulkfetch.pace's definitions: this module only groups them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from bulkfetch import pace

GRADE_BIN = 0.02  # width of figure 1's bins of grade
MIN_BIN_SPLITS = 5  # a bin's median and quartiles from fewer splits say little: not drawn
CURVE_POINTS = 61


@dataclass(frozen=True)
class SplitRow:
    split: int
    start: datetime  # the activity's start, UTC
    distance_m: float
    moving_s: float
    rise_m: float | None  # elevation difference
    gap_speed: float | None  # Strava's average_grade_adjusted_speed, m/s (absent from file-derived splits)
    heartrate: float | None
    from_file: bool


@dataclass(frozen=True)
class Run:
    activity_id: int
    race: bool  # workout_type 1
    total_gain_m: float | None
    splits: tuple[SplitRow, ...]  # in order
    # Its streams cut every pace.SEGMENT_M (pace.stream_rows), () where the Parquet has none: the fit
    # prefers them, since a 1 km split averages away hills of a few hundred metres that cost time.
    stream_rows: tuple[tuple[float, float, float], ...] = ()

    def fit_rows(self) -> list[tuple[float, float, float]]:
        """(distance m, moving s, elevation difference m) in order for bulkfetch.pace; a split without an
        elevation difference gets NaN, which pace leaves out (its grade fails |i| <= 0.45) while still
        counting its distance into the run."""
        return [(s.distance_m, s.moving_s, math.nan if s.rise_m is None else s.rise_m) for s in self.splits]

    @property
    def known_gain_m(self) -> float | None:
        """The total gain to compare with the splits' rises; None when a split's rise is unknown."""
        return None if any(s.rise_m is None for s in self.splits) else self.total_gain_m


@dataclass(frozen=True)
class UsedSplit:
    """A split the issue's definitions use, with what the figures need besides its pace and grade."""

    row: SplitRow
    split: pace.Split

    @property
    def pace_s(self) -> float:
        """Seconds per metre."""
        return self.split.pace

    @property
    def grade(self) -> float:
        return self.split.grade


def used_splits(runs: Iterable[Run], unit_m: float) -> list[UsedSplit]:
    """The full, moved splits within Minetti's range (pace.usable_splits, one split at a time: the
    figures need no distance into the run)."""
    out = []
    for run in runs:
        for row in run.splits:
            if row.rise_m is None:
                continue
            for split in pace.usable_splits(run.activity_id, run.race, [(row.distance_m, row.moving_s, row.rise_m)],
                                            unit_m):
                out.append(UsedSplit(row, split))
    return out


@dataclass(frozen=True)
class GradeBin:
    grade: float  # the bin's middle
    splits: int
    median_pace_s: float  # seconds per metre
    low_pace_s: float  # first quartile
    high_pace_s: float  # third quartile


@dataclass(frozen=True)
class GradeFigure:
    """Figure 1: pace against grade, every used split, the binned median and spread, Minetti's prediction."""

    points: tuple[tuple[float, float], ...]  # (grade, pace s/m)
    bins: tuple[GradeBin, ...]
    flat_pace_s: float | None  # s/m; None without a split under 1 %
    minetti: tuple[tuple[float, float], ...]  # (grade, predicted pace s/m); () without a flat pace


def grade_figure(used: Sequence[UsedSplit]) -> GradeFigure:
    points = tuple((u.grade, u.pace_s) for u in used)
    by_bin: dict[int, list[float]] = {}
    for grade, pace_s in points:
        by_bin.setdefault(math.floor(grade / GRADE_BIN), []).append(pace_s)
    bins = []
    for index in sorted(by_bin):
        paces = by_bin[index]
        if len(paces) >= MIN_BIN_SPLITS:
            low, median, high = statistics.quantiles(paces, n=4)
            bins.append(GradeBin((index + 0.5) * GRADE_BIN, len(paces), median, low, high))
    flat = pace.flat_pace(u.split for u in used)
    curve: tuple[tuple[float, float], ...] = ()
    if flat is not None:
        low_grade, high_grade = min(g for g, _ in points), max(g for g, _ in points)
        step = (high_grade - low_grade) / (CURVE_POINTS - 1)
        curve = tuple((g, pace.predicted_pace(flat, g))
                      for g in (low_grade + k * step for k in range(CURVE_POINTS)))
    return GradeFigure(points, tuple(bins), flat, curve)


@dataclass(frozen=True)
class GapFigure:
    """Figure 2: Strava's grade-adjusted pace against the actual pace, on the splits Strava gave it for."""

    points: tuple[tuple[float, float, float], ...]  # (actual pace s/m, Strava's GAP s/m, grade)


def gap_figure(used: Sequence[UsedSplit]) -> GapFigure:
    return GapFigure(tuple((u.pace_s, 1 / u.row.gap_speed, u.grade) for u in used
                           if u.row.gap_speed is not None and u.row.gap_speed > 0))


@dataclass(frozen=True)
class TrendFigure:
    """Figure 3: monthly median flat-equivalent pace (pace / (C(i)/C(0))) and weekly distance."""

    months: tuple[tuple[date, float, int], ...]  # (first day, median flat-equivalent pace s/m, splits)
    weeks: tuple[tuple[date, float], ...]  # (Monday, metres over every split of the runs, used or not)


def trend_figure(runs: Sequence[Run], used: Sequence[UsedSplit]) -> TrendFigure:
    by_month: dict[date, list[float]] = {}
    for u in used:
        month = u.row.start.date().replace(day=1)
        by_month.setdefault(month, []).append(u.pace_s / pace.relative_cost(u.grade))
    by_week: dict[date, float] = {}
    for run in runs:
        for row in run.splits:
            day = row.start.date()
            monday = day - timedelta(days=day.weekday())
            by_week[monday] = by_week.get(monday, 0.0) + row.distance_m
    return TrendFigure(tuple((m, statistics.median(v), len(v)) for m, v in sorted(by_month.items())),
                       tuple(sorted(by_week.items())))


@dataclass(frozen=True)
class HeartFigure:
    """Figure 4: heart rate against speed on flat splits (|i| < 1 %), by year."""

    by_year: dict[int, tuple[tuple[float, float], ...]]  # year -> (speed m/s, heart rate bpm)


def heart_figure(used: Sequence[UsedSplit]) -> HeartFigure:
    by_year: dict[int, list[tuple[float, float]]] = {}
    for u in used:
        if abs(u.grade) < pace.FLAT_GRADE and u.row.heartrate:
            by_year.setdefault(u.row.start.year, []).append((1 / u.pace_s, u.row.heartrate))
    return HeartFigure({year: tuple(points) for year, points in sorted(by_year.items())})


@dataclass(frozen=True)
class RacePrediction:
    course: str
    fit: pace.PaceFit | None
    prediction: pace.Prediction | None
    problem: str | None  # why there is no prediction
    runs_from_streams: int = 0  # runs fitted on their streams' 100 m rows
    runs_from_splits: int = 0  # runs without streams, fitted on their splits


def race_prediction(runs: Sequence[Run], course_text: str, course: Sequence[tuple[float, float]],
                    unit_m: float) -> RacePrediction:
    """The athlete's pace model (bulkfetch.pace.fit_pace) fitted on every run, on its streams' 100 m rows
    where it has them (they hide no climb), else on its splits, and its time over `course`."""
    rows = [fit_splits_of(run, unit_m) for run in runs]
    from_streams = sum(bool(run.stream_rows) for run in runs)
    counts = {"runs_from_streams": from_streams, "runs_from_splits": len(runs) - from_streams}
    try:
        fit = pace.fit_pace([split for part in rows for split in part])
        return RacePrediction(course_text, fit, pace.predict(fit, course), None, **counts)
    except pace.NotEnoughData as error:
        return RacePrediction(course_text, None, None, str(error), **counts)


def fit_splits_of(run: Run, unit_m: float) -> list[pace.Split]:
    """What the fit takes of one run: its stream rows (pieces of pace.SEGMENT_M), else its splits."""
    if run.stream_rows:
        return pace.fit_splits(run.activity_id, run.race, run.stream_rows, pace.SEGMENT_M)
    return pace.fit_splits(run.activity_id, run.race, run.fit_rows(), unit_m, run.known_gain_m)


@dataclass(frozen=True)
class AthleteReport:
    athlete_id: int
    runs: int
    splits: int  # every split of the runs
    used: int
    used_from_files: int  # of `used`, derived from an export's device files; the rest are Strava's
    grade: GradeFigure
    gap: GapFigure
    trend: TrendFigure
    heart: HeartFigure
    prediction: RacePrediction | None


def athlete_report(athlete_id: int, runs: Sequence[Run], unit_m: float,
                   course: tuple[str, Sequence[tuple[float, float]]] | None = None) -> AthleteReport:
    used = used_splits(runs, unit_m)
    return AthleteReport(
        athlete_id=athlete_id, runs=len(runs), splits=sum(len(run.splits) for run in runs), used=len(used),
        used_from_files=sum(u.row.from_file for u in used),
        grade=grade_figure(used), gap=gap_figure(used), trend=trend_figure(runs, used), heart=heart_figure(used),
        prediction=race_prediction(runs, course[0], course[1], unit_m) if course else None)
