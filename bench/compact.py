"""Benchmark: compaction against the read+parse floor and against a DuckDB SQL script, same raw files.

    python bench/compact.py                  # 2,000 detailed activities, about 75 KB each (~150 MB)
    python bench/compact.py --activities 50  # smoke run (the test suite runs this)

It writes its own synthetic raw store into a temporary folder (see `write_synthetic_store`: activities
derived from a real Strava DetailedActivity, with varied ids, dates, sports, split values, missing fields,
int-vs-float wobble and unknown fields), warms the page cache, then times, best of --repeat runs:

1. floor: read and `orjson`-parse every raw file compaction reads (list pages and details), one process;
2. bulkfetch: `compact(..., rebuild=True)`;
3. duckdb: one SQL script that builds the same six tables from the same raw files.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bulkfetch.compact import compact  # noqa: E402 - after the path fix, so the script runs from anywhere
from bulkfetch.store import RawStore  # noqa: E402

TEMPLATE = REPO / "tests" / "fixtures_compact" / "detailed_activity_run.json"
# Keys of DetailedActivity that a list item (SummaryActivity) does not carry.
DETAIL_ONLY = (
    "description", "calories", "perceived_exertion", "prefer_perceived_exertion", "segment_efforts",
    "splits_metric", "splits_standard", "laps", "best_efforts", "gear", "photos", "stats_visibility",
    "hide_from_home", "device_name", "embed_token", "similar_activities", "available_zones",
)
SPORTS = (("Run", 0.65), ("TrailRun", 0.1), ("Ride", 0.15), ("Walk", 0.1))
PAGE_SIZE = 200


# -- synthetic raw data ----------------------------------------------------------------------------------
def synthetic_activity(rng: random.Random, template: bytes, activity_id: int,
                       start: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    """(summary, detail) shaped like the real template, with values that differ per activity.

    Wobbles on purpose, as real histories do: some ints arrive as floats and some floats as ints,
    optional fields go missing, and unknown new fields appear.
    """
    detail = orjson.loads(template)
    sport = rng.choices([s for s, _ in SPORTS], [w for _, w in SPORTS])[0]
    offset_s = rng.choice((-18000.0, -14400.0, 0.0, 3600.0, 7200.0, 19800.0))
    detail.update(
        id=activity_id, sport_type=sport, type=sport, name=f"{sport} {activity_id}",
        start_date=start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        start_date_local=(start + timedelta(seconds=offset_s)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        utc_offset=offset_s, kudos_count=rng.randint(0, 80), upload_id=activity_id + 7,
        upload_id_str=str(activity_id + 7), external_id=f"{activity_id}.fit",
        distance=round(rng.uniform(3000, 42000), 1), moving_time=rng.randint(900, 14000),
        workout_type=rng.choice((None, 0, 1, 2, 3)),
    )
    detail["elapsed_time"] = detail["moving_time"] + rng.randint(0, 400)
    detail["map"]["id"] = f"a{activity_id}"
    if rng.random() < 0.1:
        detail["elapsed_time"] = float(detail["elapsed_time"])  # int-vs-float wobble
    if rng.random() < 0.1:
        detail["distance"] = int(detail["distance"])
    if rng.random() < 0.2:
        for key in ("average_heartrate", "max_heartrate", "gear_id", "device_name"):
            detail.pop(key, None)
        detail["has_heartrate"] = False
    if rng.random() < 0.1:
        detail["brand_new_field"] = {"nested": [1, 2.5, "x"]}  # unknown to the schema: ignored
    no_hr = "average_heartrate" not in detail
    for key in ("splits_metric", "splits_standard"):
        for split in detail[key]:
            factor = rng.uniform(0.8, 1.3)
            split["moving_time"] = max(1, round(split["moving_time"] * factor))
            split["elapsed_time"] = split["moving_time"] + rng.choice((0, 0, 0, 3, 20))
            split["elevation_difference"] = round(rng.gauss(0, 8), 1)
            split["distance"] = round(split["distance"] + rng.uniform(-3, 3), 1)
            split["average_speed"] = round(split["distance"] / split["elapsed_time"], 2)
            split["average_grade_adjusted_speed"] = round(split["average_speed"] * rng.uniform(0.95, 1.1), 2)
            if rng.random() < 0.05:
                split["distance"] = round(split["distance"])  # 1000 instead of 1000.0
            if rng.random() < 0.05:
                split["moving_time"] = float(split["moving_time"])  # 314.0 instead of 314
            if no_hr:
                split.pop("average_heartrate", None)
            if rng.random() < 0.02:
                split["new_split_field"] = True
    for key in ("laps", "best_efforts", "segment_efforts"):
        for number, item in enumerate(detail[key]):
            item["id"] = activity_id * 1000 + number
            item["activity"]["id"] = activity_id
            item["start_date"] = detail["start_date"]
            item["start_date_local"] = detail["start_date_local"]
            item["elapsed_time"] = max(1, round(item["elapsed_time"] * rng.uniform(0.8, 1.2)))
    if sport in ("Ride", "Walk"):
        for key in ("splits_metric", "splits_standard", "best_efforts"):
            detail.pop(key)
        detail["trainer"] = rng.random() < 0.3
    summary = {k: v for k, v in detail.items() if k not in DETAIL_ONLY}
    summary["resource_state"] = 2
    summary["map"] = {"id": detail["map"]["id"], "summary_polyline": detail["map"]["summary_polyline"],
                      "resource_state": 2}
    return summary, detail


def write_synthetic_store(data_dir: Path, count: int, *, seed: int = 1, years: tuple[int, int] = (2015, 2024),
                          detail_share: float = 1.0) -> RawStore:
    """A raw store of `count` activities spread over `years`, newest first in complete list pages.

    About `detail_share` of them get a detail file (the rest were "filtered out"). Ids exceed 2**32.
    """
    rng = random.Random(seed)
    template = TEMPLATE.read_bytes()
    store = RawStore(data_dir)
    store.prepare()
    first = datetime(years[0], 1, 1, tzinfo=UTC).timestamp()
    last = datetime(years[1], 12, 31, 23, 0, tzinfo=UTC).timestamp()
    starts = sorted((rng.uniform(first, last) for _ in range(count)), reverse=True)
    summaries = []
    for number, start_s in enumerate(starts):
        activity_id = 10_000_000_000 + (count - number) * 7919
        summary, detail = synthetic_activity(rng, template, activity_id,
                                             datetime.fromtimestamp(int(start_s), UTC))
        summaries.append(summary)
        if rng.random() < detail_share:
            store.detail_path(activity_id).write_bytes(orjson.dumps(detail))
    listing = store.new_listing(time.time())
    for page in range(0, max(count, 1), PAGE_SIZE):
        listing.write_page(page // PAGE_SIZE + 1, orjson.dumps(summaries[page:page + PAGE_SIZE]))
    listing.mark_complete(count)
    return store


# -- the three contenders --------------------------------------------------------------------------------
def read_and_parse(store: RawStore) -> int:
    """The floor: every raw file compaction reads, read and parsed, nothing else. Returns bytes read."""
    total = 0
    paths = [p for listing in store.listings() for p in listing.page_paths()]
    paths += [store.detail_path(i) for i in sorted(store.detail_ids())]
    for path in paths:
        raw = path.read_bytes()
        total += len(raw)
        orjson.loads(raw)
    return total


def run_compact(store: RawStore, out: Path) -> None:
    compact(store, out, rebuild=True)


DUCKDB_SCRIPT = """
SET TimeZone = 'UTC';
SET threads = {threads};
CREATE TEMP TABLE summaries AS SELECT * FROM read_json('{raw}/list/*/page-*.json', format = 'array');
CREATE TEMP TABLE details AS SELECT * FROM read_json('{raw}/activities/*.json', format = 'auto',
    maximum_object_size = 67108864, union_by_name = true);
COPY (
  SELECT s.id, d.id IS NOT NULL AS has_detail, s.name, s.sport_type, s.type, s.workout_type,
         CAST(s.start_date AS TIMESTAMPTZ) AS start_date,
         CAST(replace(CAST(s.start_date_local AS VARCHAR), 'Z', '') AS TIMESTAMP) AS start_date_local,
         s.timezone, CAST(s.utc_offset AS DOUBLE) AS utc_offset, CAST(s.distance AS DOUBLE) AS distance,
         CAST(s.moving_time AS BIGINT) AS moving_time, CAST(s.elapsed_time AS BIGINT) AS elapsed_time,
         s.total_elevation_gain, s.elev_high, s.elev_low, s.average_speed, s.max_speed, s.has_heartrate,
         s.average_heartrate, s.max_heartrate, d.calories,
         s.suffer_score, d.description, d.device_name, s.gear_id, d.gear.name AS gear_name, s.trainer,
         s.commute, s.manual, s.private, s.flagged, s.visibility, s.achievement_count, s.kudos_count,
         s.comment_count, s.athlete_count, s.photo_count, s.total_photo_count, s.pr_count,
         s.start_latlng[1] AS start_lat, s.start_latlng[2] AS start_lng,
         s.end_latlng[1] AS end_lat, s.end_latlng[2] AS end_lng, s.athlete.id AS athlete_id,
         s.map.id AS map_id, s.map.summary_polyline AS map_summary_polyline, d.map.polyline AS map_polyline,
         s.external_id, s.upload_id, s.upload_id_str,
         year(CAST(s.start_date AS TIMESTAMPTZ)) AS year
  FROM summaries s LEFT JOIN details d ON d.id = s.id
) TO '{out}/activities' (FORMAT parquet, PARTITION_BY (year), OVERWRITE_OR_IGNORE);
{splits}
COPY (
  SELECT e.id, d.id AS activity_id, e.athlete.id AS athlete_id, e.name,
         CAST(e.start_date AS TIMESTAMPTZ) AS start_date, e.elapsed_time, e.moving_time,
         CAST(e.distance AS DOUBLE) AS distance, e.start_index, e.end_index, e.lap_index, e.split,
         e.total_elevation_gain, e.average_speed, e.max_speed, e.device_watts, e.average_heartrate,
         e.max_heartrate, e.pace_zone, year(CAST(d.start_date AS TIMESTAMPTZ)) AS year
  FROM details d, unnest(d.laps) AS t(e)
) TO '{out}/laps' (FORMAT parquet, PARTITION_BY (year), OVERWRITE_OR_IGNORE);
COPY (
  SELECT e.id, d.id AS activity_id, e.athlete.id AS athlete_id, e.name,
         CAST(e.start_date AS TIMESTAMPTZ) AS start_date, e.elapsed_time, e.moving_time,
         CAST(e.distance AS DOUBLE) AS distance, e.start_index, e.end_index, e.pr_rank,
         year(CAST(d.start_date AS TIMESTAMPTZ)) AS year
  FROM details d, unnest(d.best_efforts) AS t(e)
) TO '{out}/best_efforts' (FORMAT parquet, PARTITION_BY (year), OVERWRITE_OR_IGNORE);
COPY (
  SELECT e.id, d.id AS activity_id, e.athlete.id AS athlete_id, e.name,
         CAST(e.start_date AS TIMESTAMPTZ) AS start_date, e.elapsed_time, e.moving_time,
         CAST(e.distance AS DOUBLE) AS distance, e.start_index, e.end_index, e.device_watts,
         e.average_heartrate, e.max_heartrate, e.pr_rank, e.kom_rank, e.hidden, e.visibility,
         e.segment.id AS segment_id, e.segment.name AS segment_name, e.segment.distance AS segment_distance,
         e.segment.average_grade AS segment_average_grade, e.segment.climb_category AS segment_climb_category,
         e.segment.city AS segment_city, year(CAST(d.start_date AS TIMESTAMPTZ)) AS year
  FROM details d, unnest(d.segment_efforts) AS t(e)
) TO '{out}/segment_efforts' (FORMAT parquet, PARTITION_BY (year), OVERWRITE_OR_IGNORE);
"""

SPLITS_SQL = """
COPY (
  SELECT d.id AS activity_id, CAST(d.start_date AS TIMESTAMPTZ) AS start_date, d.sport_type,
         CAST(s.split AS BIGINT) AS split, CAST(s.distance AS DOUBLE) AS distance,
         CAST(s.elapsed_time AS BIGINT) AS elapsed_time, CAST(s.moving_time AS BIGINT) AS moving_time,
         s.elevation_difference, s.average_speed, s.average_grade_adjusted_speed, s.average_heartrate,
         s.pace_zone, year(CAST(d.start_date AS TIMESTAMPTZ)) AS year
  FROM details d, unnest(d.{table}) AS t(s)
) TO '{out}/{table}' (FORMAT parquet, PARTITION_BY (year), OVERWRITE_OR_IGNORE);
"""


def run_duckdb(store: RawStore, out: Path) -> None:
    import duckdb

    splits = "".join(SPLITS_SQL.format(table=t, out=out) for t in ("splits_metric", "splits_standard"))
    script = DUCKDB_SCRIPT.format(raw=store.data_dir / "raw", out=out, splits=splits,
                                  threads=os.cpu_count() or 1)
    out.mkdir(parents=True, exist_ok=True)
    with duckdb.connect() as connection:
        connection.execute(script)


def best_time(run: Callable[[], object], repeat: int, before: Callable[[], None] | None = None) -> float:
    times = []
    for _ in range(repeat):
        if before:
            before()
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--activities", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender; the best counts")
    parser.add_argument("--no-duckdb", action="store_true", help="skip the DuckDB contender")
    parser.add_argument("--keep", type=Path, help="build the raw store here and keep it (default: temp dir)")
    args = parser.parse_args(argv)

    folder = args.keep or Path(tempfile.mkdtemp(prefix="bulkfetch-bench-"))
    try:
        store = write_synthetic_store(folder / "data", args.activities)
        raw_bytes = read_and_parse(store)  # also warms the page cache
        ours_dir, duck_dir = folder / "parquet", folder / "parquet-duckdb"

        def clear(path: Path) -> Callable[[], None]:
            return lambda: shutil.rmtree(path, ignore_errors=True)

        results = [("read + orjson.loads (floor)", best_time(lambda: read_and_parse(store), args.repeat))]
        results.append(("bulkfetch compact --rebuild",
                        best_time(lambda: run_compact(store, ours_dir), args.repeat, clear(ours_dir))))
        if not args.no_duckdb:
            results.append(("DuckDB SQL script",
                            best_time(lambda: run_duckdb(store, duck_dir), args.repeat, clear(duck_dir))))

        floor, ours = results[0][1], results[1][1]
        print(f"{args.activities:,} activities, {raw_bytes / 1e6:.1f} MB raw JSON, "
              f"{os.cpu_count()} CPU(s), best of {args.repeat}")
        print(f"{'':30} {'seconds':>8} {'x floor':>8} {'x bulkfetch':>12}")
        for name, seconds in results:
            print(f"{name:30} {seconds:8.2f} {seconds / floor:8.2f} {seconds / ours:12.2f}")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
