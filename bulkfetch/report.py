"""The demo's report, read back from the Parquet tables with pyarrow alone (no extra install).

It answers the question bulkfetch exists for: how does running pace change with the elevation
difference of a 1 km split?
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from bulkfetch.dataset_root import DatasetRoot, local_root
from bulkfetch.parquet_layout import PARTITION_SCHEMA

RUN_SPORTS = ("Run", "TrailRun", "VirtualRun")
# Bucket edges in metres of elevation difference per split; the outer buckets are open.
ELEVATION_EDGES = (-20, -10, -5, 0, 5, 10, 20)
FULL_SPLIT_M = (950.0, 1050.0)


@dataclass(frozen=True)
class PaceBucket:
    label: str
    splits: int
    pace_s_per_km: float | None
    from_files: int = 0  # of `splits`, those derived from an account export's device files (source "file")


def dataset(parquet_dir: Path | DatasetRoot, table: str) -> ds.Dataset:
    """One table with its hive partition columns, `athlete_id` and `year`, from a local folder or wherever
    `parquet_dir` says (an object store's dataset: bulkfetch.dataset_root)."""
    root = parquet_dir if isinstance(parquet_dir, DatasetRoot) else local_root(parquet_dir)
    partitioning = ds.partitioning(PARTITION_SCHEMA, flavor="hive")
    return ds.dataset(root.table_path(table), filesystem=root.fs, format="parquet", partitioning=partitioning)


def read_table(parquet_dir: Path, table: str) -> pa.Table:
    return dataset(parquet_dir, table).to_table()


def activities_by_sport_and_year(parquet_dir: Path) -> tuple[list[int], list[tuple[str, list[int]]]]:
    """Years, and per sport (most frequent first) its activity count in each of those years."""
    table = read_table(parquet_dir, "activities").select(["sport_type", "year"])
    counts = table.group_by(["sport_type", "year"]).aggregate([("sport_type", "count")])
    cells = {(str(s), int(y)): int(c) for s, y, c in zip(counts["sport_type"].to_pylist(),
                                                         counts["year"].to_pylist(),
                                                         counts["sport_type_count"].to_pylist())}
    years = sorted({year for _, year in cells})
    sports = sorted({sport for sport, _ in cells},
                    key=lambda sport: (-sum(cells.get((sport, y), 0) for y in years), sport))
    return years, [(sport, [cells.get((sport, year), 0) for year in years]) for sport in sports]


def rows_per_athlete(parquet_dir: Path, table: str) -> dict[int, int]:
    """How many rows of `table` each athlete has (from the `athlete_id=` folders; no data column is read)."""
    ids = dataset(parquet_dir, table).to_table(columns=["athlete_id"])
    counts = ids.group_by("athlete_id").aggregate([("athlete_id", "count")])
    return dict(zip(counts["athlete_id"].to_pylist(), counts["athlete_id_count"].to_pylist()))


def rows_by_source(parquet_dir: Path, table: str) -> dict[str, int]:
    """How many rows of `table` came from each source: "api", "file" (an export's device file) or "csv"
    (an export's activities.csv); {} while the table has no file."""
    if not (parquet_dir / table).is_dir():
        return {}
    sources = dataset(parquet_dir, table).to_table(columns=["source"])
    counts = sources.group_by("source").aggregate([("source", "count")])
    return dict(zip(counts["source"].to_pylist(), counts["source_count"].to_pylist()))


def bucket_label(index: int) -> str:
    edges = ELEVATION_EDGES
    if index == 0:
        return f"< {edges[0]:+d} m"
    if index == len(edges):
        return f">= {edges[-1]:+d} m"
    return f"{edges[index - 1]:+d} .. {edges[index]:+d} m"


def pace_by_elevation(parquet_dir: Path) -> list[PaceBucket]:
    """Average pace (total moving time / total distance) of full 1 km run splits per elevation bucket."""
    splits = read_table(parquet_dir, "splits_metric").select(
        ["sport_type", "distance", "moving_time", "elevation_difference", "source"])
    keep = pc.and_(
        pc.is_in(splits["sport_type"], value_set=pa.array(RUN_SPORTS)),
        pc.and_(pc.greater_equal(splits["distance"], FULL_SPLIT_M[0]),
                pc.less_equal(splits["distance"], FULL_SPLIT_M[1])),
    )
    splits = splits.filter(pc.and_(keep, pc.is_valid(splits["elevation_difference"])))
    sums = [[0, 0.0, 0.0, 0] for _ in range(len(ELEVATION_EDGES) + 1)]
    for elevation, distance, moving, source in zip(splits["elevation_difference"].to_pylist(),
                                                   splits["distance"].to_pylist(), splits["moving_time"].to_pylist(),
                                                   splits["source"].to_pylist()):
        index = sum(1 for edge in ELEVATION_EDGES if elevation >= edge)
        sums[index][0] += 1
        sums[index][1] += distance
        sums[index][2] += moving or 0
        sums[index][3] += source == "file"
    return [PaceBucket(bucket_label(i), int(n), (moving / distance * 1000) if distance else None, int(files))
            for i, (n, distance, moving, files) in enumerate(sums)]


def format_pace(seconds_per_km: float | None) -> str:
    if seconds_per_km is None:
        return "-"
    minutes, seconds = divmod(int(round(seconds_per_km)), 60)
    return f"{minutes}:{seconds:02d} /km"


def duckdb_example(parquet_dir: Path) -> str:
    """The same pace-vs-elevation question as a shell one-liner over these files.

    Python with `pip install duckdb` rather than `duckdb -c`: the DuckDB command-line program is a
    separate download that few people have, the Python package is one pip away.
    """
    glob = f"{parquet_dir}/splits_metric/**/*.parquet".replace("'", "''")  # quoted as an SQL string
    sql = ("SELECT round(elevation_difference / 10) * 10 AS elev_m, count(*) AS splits, "
           "round(sum(moving_time) / sum(distance) * 1000) AS pace_s_per_km "
           f"FROM read_parquet('{glob}', hive_partitioning = true) "
           "WHERE sport_type IN ('Run', 'TrailRun') AND distance BETWEEN 950 AND 1050 "
           "GROUP BY elev_m ORDER BY elev_m")
    code = f"import duckdb; duckdb.sql({sql!r}).show()"
    return 'python3 -c "' + "".join(f"\\{c}" if c in '\\"$`' else c for c in code) + '"'
