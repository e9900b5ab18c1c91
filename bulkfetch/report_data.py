"""What `bulkfetch report` shows, computed from the Parquet splits and streams (issue 15). Pure apart from
read_runs and read_stream_rows.

Each figure's data is a plain dataclass built by a function of the athlete's runs, so its counts can be
checked without drawing anything (bulkfetch.report_html draws them). Which splits are used, grade, pace,
flat pace and Minetti's cost are bulkfetch.pace's definitions: this module only groups them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from bulkfetch import pace
from bulkfetch.dataset_root import DatasetRoot
from bulkfetch.errors import ConfigError, StorageError
from bulkfetch.report import dataset

DEFAULT_SPORTS = frozenset({"Run", "TrailRun"})
GRADE_BIN = 0.02  # width of figure 1's bins of grade
MIN_BIN_SPLITS = 5  # a bin's median and quartiles from fewer splits say little: not drawn
CURVE_POINTS = 61
SPLIT_COLUMNS = ["athlete_id", "activity_id", "split", "start_date", "distance", "moving_time",
                 "elevation_difference", "average_grade_adjusted_speed", "average_heartrate", "source"]
# The prediction's fit reads only these of the streams (pace.stream_rows); seq orders a run's readings.
STREAM_COLUMNS = ["activity_id", "seq", "time", "distance", "altitude", "moving"]
SOURCE_FILE = "file"  # a split derived from an account export's device file (bulkfetch.schema)


@dataclass(frozen=True)
class ReportQuery:
    sports: frozenset[str] = DEFAULT_SPORTS
    since_s: int | None = None  # epoch seconds, inclusive
    until_s: int | None = None  # exclusive
    athletes: frozenset[int] | None = None  # None: every athlete in the dataset
    unit_m: float = pace.KM_M  # pace.MILE_M: the mile splits (splits_standard)

    @property
    def table(self) -> str:
        return "splits_standard" if self.unit_m == pace.MILE_M else "splits_metric"


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


def read_runs(parquet_dir: DatasetRoot, query: ReportQuery) -> dict[int, list[Run]]:
    """Each athlete's runs of the query's sports and dates, from the splits table and the activities'
    workout_type and total_elevation_gain (and the streams, where there are). ConfigError (one line) when
    there is nothing to report on, StorageError when a Parquet file is damaged."""
    try:
        return _read_runs(parquet_dir, query)
    except pa.ArrowInvalid as exc:  # an emptied or cut file: compaction writes them whole again from raw
        raise StorageError(f"a Parquet file in {parquet_dir} cannot be read ({str(exc).splitlines()[0]})",
                           hint="run 'bulkfetch compact --rebuild' to write the tables again") from None


def _read_runs(parquet_dir: DatasetRoot, query: ReportQuery) -> dict[int, list[Run]]:
    splits = dataset(parquet_dir, query.table) if parquet_dir.has_table(query.table) else None
    if splits is None or not splits.files:  # a folder without a file has no columns to filter on either
        raise ConfigError(f"no {query.table} table in {parquet_dir}", hint="run 'bulkfetch fetch' (or import an "
                                                                             "export) first")
    table = splits.to_table(columns=SPLIT_COLUMNS, filter=_condition(query))
    if table.num_rows == 0:
        raise ConfigError(f"no {', '.join(sorted(query.sports))} splits in {parquet_dir} for these filters",
                          hint="check --sport, --since, --until and --athlete")
    activities = _activity_facts(parquet_dir, set(table["activity_id"].to_pylist()))
    grouped: dict[tuple[int, int], list[dict]] = {}
    for row in table.sort_by([("athlete_id", "ascending"), ("activity_id", "ascending"),
                              ("split", "ascending")]).to_pylist():
        grouped.setdefault((row["athlete_id"], row["activity_id"]), []).append(row)
    streams = read_stream_rows(parquet_dir, _condition(query), {activity_id for _, activity_id in grouped})
    runs: dict[int, list[Run]] = {}
    for (athlete_id, activity_id), rows in grouped.items():
        race, gain_m = activities.get(activity_id, (False, None))
        runs.setdefault(athlete_id, []).append(Run(activity_id, race, gain_m, tuple(map(_split_row, rows)),
                                                   tuple(streams.get(activity_id, ()))))
    return runs


def _condition(query: ReportQuery) -> ds.Expression:
    """The query's sports, dates and athletes as a filter on a table that has those columns."""
    condition = ds.field("sport_type").isin(sorted(query.sports))
    if query.since_s is not None:
        condition &= ds.field("start_date") >= datetime.fromtimestamp(query.since_s, UTC)
    if query.until_s is not None:
        condition &= ds.field("start_date") < datetime.fromtimestamp(query.until_s, UTC)
    if query.athletes is not None:
        condition &= ds.field("athlete_id").isin(sorted(query.athletes))
    return condition


def read_stream_rows(parquet_dir: DatasetRoot, condition: ds.Expression,
                     activity_ids: set[int]) -> dict[int, list[tuple[float, float, float]]]:
    """Each of `activity_ids`' streams as pace.stream_rows cuts them, from the streams table's needed
    columns and matching rows only; {} without a streams table. Readings without a time or a moving flag
    are left out (streams fetched without `moving` give a run no rows: its splits serve instead)."""
    if not activity_ids or not parquet_dir.has_table("streams"):
        return {}
    streams = dataset(parquet_dir, "streams")
    if not streams.files:
        return {}
    condition &= ds.field("activity_id").isin(sorted(activity_ids))
    condition &= ds.field("time").is_valid() & ds.field("moving").is_valid()
    table = streams.to_table(columns=STREAM_COLUMNS, filter=condition).sort_by(
        [("activity_id", "ascending"), ("seq", "ascending")])
    # Run by run: Python objects for one run's readings at a time (a history's streams hold millions).
    runs = pc.run_end_encode(table["activity_id"].combine_chunks())
    out: dict[int, list[tuple[float, float, float]]] = {}
    low = 0
    for activity_id, high in zip(runs.values.to_pylist(), runs.run_ends.to_pylist()):
        run = table.slice(low, high - low)
        rows = pace.stream_rows(*(run[name].to_pylist() for name in ("time", "distance", "altitude", "moving")))
        if rows:
            out[activity_id] = rows
        low = high
    return out


def _activity_facts(parquet_dir: DatasetRoot, activity_ids: set[int]) -> dict[int, tuple[bool, float | None]]:
    """Per activity: is it a race (workout_type 1), and its total_elevation_gain."""
    if not parquet_dir.has_table("activities"):
        return {}
    table = dataset(parquet_dir, "activities").to_table(
        columns=["id", "workout_type", "total_elevation_gain"], filter=ds.field("id").isin(sorted(activity_ids)))
    return {row["id"]: (row["workout_type"] == 1, row["total_elevation_gain"]) for row in table.to_pylist()}


def _split_row(row: dict) -> SplitRow:
    return SplitRow(split=row["split"], start=row["start_date"], distance_m=row["distance"] or 0.0,
                    moving_s=row["moving_time"] or 0, rise_m=row["elevation_difference"],
                    gap_speed=row["average_grade_adjusted_speed"], heartrate=row["average_heartrate"],
                    from_file=row["source"] == SOURCE_FILE)


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
