"""`bulkfetch report`'s reading: each athlete's runs from the Parquet splits, activities and streams
(pyarrow), as bulkfetch.report_data's plain dataclasses (issue 15)."""

from __future__ import annotations

# pyarrow imports zoneinfo at its first time zone and turns any failure of that import, a Ctrl-C's included,
# into "the zoneinfo module must be installed": a Ctrl-C then read as a damaged file. Loaded here, before.
import zoneinfo  # noqa: F401
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from bulkfetch import pace
from bulkfetch.dataset_root import DatasetRoot
from bulkfetch.errors import ConfigError, StorageError
from bulkfetch.report import dataset
from bulkfetch.report_data import Run, SplitRow

DEFAULT_SPORTS = frozenset({"Run", "TrailRun"})
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
    if query.athletes is not None:
        _check_athletes(parquet_dir, splits, query.athletes)
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


def _check_athletes(parquet_dir: DatasetRoot, splits: ds.Dataset, wanted: frozenset[int]) -> None:
    """ConfigError (one line) naming the athletes the dataset holds when `wanted` asks for one it does not
    (rather than "no splits", which reads as a filter that left nothing). An athlete is in the dataset with
    an activity or a split, whatever its sports: one with activities but no run is told "no splits"."""
    tables = [splits, *([dataset(parquet_dir, "activities")] if parquet_dir.has_table("activities") else [])]
    present = {key for table in tables for fragment in table.get_fragments()  # the athlete_id= folders alone
               if (key := ds.get_partition_keys(fragment.partition_expression).get("athlete_id")) is not None}
    if missing := sorted(wanted - present):
        who = f"athlete {missing[0]} is" if len(missing) == 1 else f"athletes {', '.join(map(str, missing))} are"
        raise ConfigError(f"--athlete: {who} not in the dataset {parquet_dir} (athletes in it: "
                          f"{', '.join(map(str, sorted(present))) or 'none'})")


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


