"""Benchmark: compaction against the read+parse floor and against a DuckDB SQL script, same raw files.

    python bench/compact.py                  # 2,000 detailed activities, about 75 KB each (~150 MB)
    python bench/compact.py --activities 50 --no-memory   # smoke run (the test suite runs this)
    python bench/compact.py --streams-activities 3000     # the streams case at full size (~2.5 GB raw)

It writes its own synthetic raw store into a temporary folder (see `write_synthetic_store`: activities
derived from a real Strava DetailedActivity, with varied ids, dates, sports, split values, missing fields,
int-vs-float wobble and unknown fields), warms the page cache, then times the details case's contenders
below, wall and CPU time (this process's and its waited-for children's), interleaved: --repeat repeats,
each warming the page cache and then running every contender once, in an order rotated by one each
repeat. Each ratio to a floor is the median over the repeats of the run's ratio to the floor of the same
repeat (a shared machine's slow minute slows both), printed with its range and beside the best-of figures
(best over the floor's best), which one contender's quiet minute can decide:

1. floor: read and `orjson`-parse every raw file compaction reads (list pages and details), one process;
2. bulkfetch: `compact(..., rebuild=True)` in this process, as the CLI runs it (with its worker when it
   pays: the worker's CPU is not counted there) and in one process;
3. the floor as a whole process (interpreter start and `import orjson` included), and `bulkfetch compact
   --rebuild` as a whole process (interpreter start, imports, its worker: all counted);
4. duckdb: one SQL script that builds the same six tables from the same raw files (in the first
   --duckdb-repeat repeats only: at about 35 x the floor, its runs would take most of the case's time).

Then the streams case: --streams-activities activities in one year (the worst case: a year is what one
partition file is written from), each with a detail and a StreamSet of all eleven types (30 min to 6 h at
one point a second, about 75 bytes of JSON a point), compacted once in a child process whose peak RSS
(VmHWM) is reported next to its RSS before compaction and the raw size, and whose floor (reading and
parsing every raw file it read, streams, details and list pages) is measured after, in the same process;
then once more as the CLI runs it, with its worker building some of the year's stream tables (that
process's time against its own floor; the worker's CPU is not counted).

Then the memory case: a full rebuild (details and streams) at --activities and at ten times as many,
each in a child process, real-size details and short streams (20-200 points, so that 20,000 run in
minutes): the peak RSS must not grow with the history.

Then the no-op case (--noop-activities, and ten times as many): the simulator (a thread of this process)
serves a history that a first `bulkfetch fetch` downloads and compacts whole (details, no streams); then
`bulkfetch fetch` finding nothing new runs in a child process, timed around the CLI's `main` after its
imports (interpreter start excluded; the list page is served by the simulator, outside the child): its CPU
time must not grow with the history.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
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
ATHLETE_ID = 26462176  # the template's athlete: the synthetic stores' default
SPORTS = (("Run", 0.65), ("TrailRun", 0.1), ("Ride", 0.15), ("Walk", 0.1))
PAGE_SIZE = 200


# -- synthetic raw data ----------------------------------------------------------------------------------
def synthetic_activity(rng: random.Random, template: bytes, activity_id: int, start: datetime,
                       athlete_id: int = ATHLETE_ID) -> tuple[dict[str, Any], dict[str, Any]]:
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
    detail["athlete"]["id"] = athlete_id
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
            item["athlete"]["id"] = athlete_id
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


def synthetic_streams(rng: random.Random, points: int) -> dict[str, Any]:
    """A StreamSet of all eleven types keyed by type (as `key_by_type=true` answers), `points` long.

    Like real recordings: integers where Strava sends integers, rounded floats elsewhere, and a few
    dropouts (null points) in latlng, altitude and heartrate.
    """
    time_s, distance_m, lat, lng, altitude = 0, 0.0, 40.0 + rng.random(), -74.0 + rng.random(), 30.0
    series: dict[str, list[Any]] = {kind: [] for kind in (
        "time", "distance", "latlng", "altitude", "velocity_smooth", "grade_smooth", "heartrate", "cadence",
        "watts", "temp", "moving")}
    for index in range(points):
        step_s = 1 if rng.random() < 0.97 else rng.randint(2, 9)
        speed = max(0.0, 3.0 + math.sin(index / 200) + rng.uniform(-0.3, 0.3))
        climb = math.sin(index / 150) * 0.4
        time_s += step_s if index else 0
        distance_m += speed * step_s if index else 0.0
        lat += speed * 6e-6
        lng += speed * 4e-6
        altitude += climb
        series["time"].append(time_s)
        series["distance"].append(round(distance_m, 1))
        series["latlng"].append([round(lat, 6), round(lng, 6)])
        series["altitude"].append(round(altitude, 1))
        series["velocity_smooth"].append(round(speed, 3))
        series["grade_smooth"].append(round(100 * climb / max(speed, 0.1), 1))
        series["heartrate"].append(round(140 + 15 * math.sin(index / 300) + rng.uniform(-3, 3)))
        series["cadence"].append(rng.randint(84, 92))
        series["watts"].append(rng.randint(180, 320))
        series["temp"].append(21 if index < points // 2 else 22)
        series["moving"].append(speed > 2.2)
    for index in rng.sample(range(1, points), k=min(3, points - 1)):
        for kind in ("latlng", "altitude", "heartrate"):
            series[kind][index] = None
    return {kind: {"data": data, "series_type": "distance", "original_size": points, "resolution": "high"}
            for kind, data in series.items()}


def write_synthetic_store(data_dir: Path, count: int, *, seed: int = 1, years: tuple[int, int] = (2015, 2024),
                          detail_share: float = 1.0, stream_share: float = 0.0,
                          stream_points: tuple[int, int] = (20, 200), stream_templates: int = 0,
                          athlete_id: int = ATHLETE_ID) -> RawStore:
    """A raw store of `count` activities of `athlete_id` spread over `years`, newest first in complete
    list pages, with the athlete recorded as a fetch records it.

    About `detail_share` of them get a detail file (the rest were "filtered out"), and about
    `stream_share` of those a streams file of `stream_points` (low, high) points. With
    `stream_templates` > 0, streams are drawn from that many pre-serialized sets (fast for gigabytes);
    else each is generated apart. Ids exceed 2**32.
    """
    rng = random.Random(seed)
    template = TEMPLATE.read_bytes()
    store = RawStore(data_dir)
    store.prepare()
    first = datetime(years[0], 1, 1, tzinfo=UTC).timestamp()
    last = datetime(years[1], 12, 31, 23, 0, tzinfo=UTC).timestamp()
    starts = sorted((rng.uniform(first, last) for _ in range(count)), reverse=True)
    stream_rng = random.Random(seed + 1)  # streams do not shift the other values of a given seed
    pool = [orjson.dumps(synthetic_streams(stream_rng, stream_rng.randint(*stream_points)))
            for _ in range(stream_templates)]
    summaries = []
    for number, start_s in enumerate(starts):
        activity_id = 10_000_000_000 + (count - number) * 7919
        summary, detail = synthetic_activity(rng, template, activity_id,
                                             datetime.fromtimestamp(int(start_s), UTC), athlete_id)
        summaries.append(summary)
        if rng.random() < detail_share:
            store.detail_path(activity_id).write_bytes(orjson.dumps(detail))
            if stream_share and stream_rng.random() < stream_share:
                raw = stream_rng.choice(pool) if pool else orjson.dumps(
                    synthetic_streams(stream_rng, stream_rng.randint(*stream_points)))
                store.stream_path(activity_id).write_bytes(raw)
    listing = store.new_listing(time.time())
    for page in range(0, max(count, 1), PAGE_SIZE):
        listing.write_page(page // PAGE_SIZE + 1, orjson.dumps(summaries[page:page + PAGE_SIZE]))
    listing.mark_complete(count)
    store.write_state("athlete", {"athlete_id": athlete_id})
    return store


# -- the three contenders --------------------------------------------------------------------------------
def raw_paths(store: RawStore) -> list[Path]:
    """Every raw file a details compaction reads: the list pages and the details."""
    paths = [p for listing in store.listings() for p in listing.page_paths()]
    return paths + [store.detail_path(i) for i in sorted(store.detail_ids())]


def read_and_parse(store: RawStore) -> int:
    """The floor: every raw file compaction reads, read and parsed, nothing else. Returns bytes read."""
    total = 0
    for path in raw_paths(store):
        raw = path.read_bytes()
        total += len(raw)
        orjson.loads(raw)
    return total


def run_compact(store: RawStore, out: Path, *, parallel: bool = True) -> None:
    compact(store, out, ATHLETE_ID, rebuild=True, parallel=parallel)


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
) TO '{out}/activities' (FORMAT parquet, PARTITION_BY (athlete_id, year), OVERWRITE_OR_IGNORE);
{splits}
COPY (
  SELECT e.id, d.id AS activity_id, e.athlete.id AS athlete_id, e.name,
         CAST(e.start_date AS TIMESTAMPTZ) AS start_date, e.elapsed_time, e.moving_time,
         CAST(e.distance AS DOUBLE) AS distance, e.start_index, e.end_index, e.lap_index, e.split,
         e.total_elevation_gain, e.average_speed, e.max_speed, e.device_watts, e.average_heartrate,
         e.max_heartrate, e.pace_zone, year(CAST(d.start_date AS TIMESTAMPTZ)) AS year
  FROM details d, unnest(d.laps) AS t(e)
) TO '{out}/laps' (FORMAT parquet, PARTITION_BY (athlete_id, year), OVERWRITE_OR_IGNORE);
COPY (
  SELECT e.id, d.id AS activity_id, e.athlete.id AS athlete_id, e.name,
         CAST(e.start_date AS TIMESTAMPTZ) AS start_date, e.elapsed_time, e.moving_time,
         CAST(e.distance AS DOUBLE) AS distance, e.start_index, e.end_index, e.pr_rank,
         year(CAST(d.start_date AS TIMESTAMPTZ)) AS year
  FROM details d, unnest(d.best_efforts) AS t(e)
) TO '{out}/best_efforts' (FORMAT parquet, PARTITION_BY (athlete_id, year), OVERWRITE_OR_IGNORE);
COPY (
  SELECT e.id, d.id AS activity_id, e.athlete.id AS athlete_id, e.name,
         CAST(e.start_date AS TIMESTAMPTZ) AS start_date, e.elapsed_time, e.moving_time,
         CAST(e.distance AS DOUBLE) AS distance, e.start_index, e.end_index, e.device_watts,
         e.average_heartrate, e.max_heartrate, e.pr_rank, e.kom_rank, e.hidden, e.visibility,
         e.segment.id AS segment_id, e.segment.name AS segment_name, e.segment.distance AS segment_distance,
         e.segment.average_grade AS segment_average_grade, e.segment.climb_category AS segment_climb_category,
         e.segment.city AS segment_city, year(CAST(d.start_date AS TIMESTAMPTZ)) AS year
  FROM details d, unnest(d.segment_efforts) AS t(e)
) TO '{out}/segment_efforts' (FORMAT parquet, PARTITION_BY (athlete_id, year), OVERWRITE_OR_IGNORE);
"""

SPLITS_SQL = """
COPY (
  SELECT d.id AS activity_id, d.athlete.id AS athlete_id, CAST(d.start_date AS TIMESTAMPTZ) AS start_date,
         d.sport_type,
         CAST(s.split AS BIGINT) AS split, CAST(s.distance AS DOUBLE) AS distance,
         CAST(s.elapsed_time AS BIGINT) AS elapsed_time, CAST(s.moving_time AS BIGINT) AS moving_time,
         s.elevation_difference, s.average_speed, s.average_grade_adjusted_speed, s.average_heartrate,
         s.pace_zone, year(CAST(d.start_date AS TIMESTAMPTZ)) AS year
  FROM details d, unnest(d.{table}) AS t(s)
) TO '{out}/{table}' (FORMAT parquet, PARTITION_BY (athlete_id, year), OVERWRITE_OR_IGNORE);
"""


def run_duckdb(store: RawStore, out: Path) -> None:
    import duckdb

    splits = "".join(SPLITS_SQL.format(table=t, out=out) for t in ("splits_metric", "splits_standard"))
    script = DUCKDB_SCRIPT.format(raw=store.data_dir / "raw", out=out, splits=splits,
                                  threads=os.cpu_count() or 1)
    out.mkdir(parents=True, exist_ok=True)
    with duckdb.connect() as connection:
        connection.execute(script)


def measure_streams(count: int, folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Build a store of `count` activities with hour-long-ish streams and compact it in a child process,
    in one process and then with its worker; each run's time, RSS before and at peak (MB), the raw and
    Parquet sizes (MB) and the rows."""
    # All in one year: the worst case, since a year is the unit a partition file is written from.
    data_dir = write_child_store(folder / "streams", count, stream_points=(1800, 21600), years=(2024, 2024))
    return (compact_in_child(data_dir, folder / "streams" / "parquet"),
            compact_in_child(data_dir, folder / "streams" / "parquet-with-worker", with_worker=True))


def measure_memory(counts: tuple[int, int], folder: Path) -> None:
    """Peak RSS of a full rebuild (details and streams) at a small and a large history, each in its own
    child process. Details are real-size; streams short (20-200 points), so the large case runs in
    minutes: what must not grow with the history is what compaction holds besides one year's chunk."""
    peaks = []
    for count in counts:
        data_dir = write_child_store(folder / f"memory-{count}", count, stream_points=(20, 200), years=(2015, 2024))
        r = compact_in_child(data_dir, folder / f"memory-{count}" / "parquet")
        peaks.append(r["peak_rss_mb"])
        print(f"memory: {count:,} activities (real-size details, streams of 20-200 points: "
              f"{r['raw_mb']:,.1f} MB of stream JSON), full rebuild in {r['seconds']:.2f} s: "
              f"peak RSS {r['peak_rss_mb']:,.0f} MB (before compaction {r['rss_before_mb']:,.0f} MB), one process")
        shutil.rmtree(folder / f"memory-{count}", ignore_errors=True)
    print(f"memory: peak at {counts[1]:,} = {peaks[1] / peaks[0]:.2f} x the peak at {counts[0]:,}")


def write_child_store(folder: Path, count: int, *, stream_points: tuple[int, int], years: tuple[int, int]) -> Path:
    """A store of `count` activities in `folder`, each with a detail and streams; its data_dir."""
    data_dir = folder / "data"
    write_synthetic_store(data_dir, count, seed=5, years=years, stream_share=1.0, stream_points=stream_points,
                          stream_templates=min(count, 24))
    return data_dir


def compact_in_child(data_dir: Path, out: Path, *, with_worker: bool = False) -> dict[str, Any]:
    """The store in `data_dir` compacted into `out` in a child process (see `child_compact`); its report,
    with the raw streams' size and the Parquet streams' size (MB)."""
    store = RawStore(data_dir)
    raw_mb = sum(p.stat().st_size for p in store.stream_dir.iterdir()) / 1e6
    for path in store.stream_dir.iterdir():  # warm the page cache, as for the other cases
        path.read_bytes()
    report = child_run([sys.executable, __file__, "--child-compact", str(data_dir), str(out),
                        *(["--child-with-worker"] if with_worker else [])])
    report["raw_mb"] = raw_mb
    report["parquet_mb"] = sum(p.stat().st_size for p in (out / "streams").rglob("*.parquet")) / 1e6
    return report


def child_compact(data_dir: Path, out: Path, with_worker: bool) -> None:
    """In a fresh process: compact once and print one JSON line of time, CPU, RSS (MB) and stream rows,
    then the floor: every raw file the compaction read, read and parsed in the same process."""
    import bulkfetch.compact as compact_module

    if not with_worker:
        # One process, so that its ru_maxrss is the whole peak (a worker would fork from the forkserver,
        # out of reach of RUSAGE_CHILDREN); with the worker, each of the two processes peaks like this one.
        compact_module.PARALLEL_MIN_BYTES = 1 << 62
    store = RawStore(data_dir)
    before_mb = _memory_mb("VmRSS")
    _reset_peak()
    started, cpu_started = time.perf_counter(), time.process_time()
    result = compact(store, out, ATHLETE_ID, rebuild=True)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    peak_mb = _memory_mb("VmHWM")
    started, cpu_started = time.perf_counter(), time.process_time()
    read_and_parse(store)
    for path in store.stream_dir.iterdir():
        orjson.loads(path.read_bytes())
    floor_s, floor_cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    print(json.dumps({"seconds": seconds, "cpu_s": cpu, "rss_before_mb": before_mb, "peak_rss_mb": peak_mb,
                      "rows": result.rows["streams"], "floor_s": floor_s, "floor_cpu_s": floor_cpu_s}))


def _memory_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process from /proc, in MB; ru_maxrss where there is no /proc.

    Not ru_maxrss on Linux: it survives exec, so a child would report its parent's peak (DuckDB's).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> None:
    """Start VmHWM afresh from the current RSS (Linux: `5` to clear_refs), so the peak is compaction's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def measure_noop_fetch(counts: tuple[int, int], folder: Path, repeat: int) -> None:
    """CPU of a fetch that finds nothing new, at a small and a large history (see the module docstring)."""
    # Here, not at the top: the other cases' child processes would carry the simulator's imports in their RSS.
    from bulkfetch.simulator import SimulatorSettings, SimulatorThread

    cpus = []
    for count in counts:
        with SimulatorThread(SimulatorSettings(activities=count, seed=9, rate_limits=False)) as sim:
            config = folder / f"noop-{count}" / "config.toml"
            config.parent.mkdir(parents=True)
            config.write_text(simulator_config(sim, config.parent / "data"))
            # The apps' quota ledgers in the case's folder, not in the user's ~/.local/state.
            env = {**os.environ, "XDG_STATE_HOME": str(config.parent / "state")}
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "bulkfetch", "--config", str(config), "fetch"],
                           cwd=REPO, env=env, capture_output=True, check=True)
            first_s = time.perf_counter() - started
            runs = [child_run([sys.executable, __file__, "--child-fetch", str(config)], env)
                    for _ in range(repeat)]
        cpu_s, wall_s = min(r["cpu_s"] for r in runs), min(r["seconds"] for r in runs)
        cpus.append(cpu_s)
        print(f"no-op fetch: {count:,} activities (fetched and compacted in {first_s:.0f} s first), a fetch finding "
              f"nothing new: {cpu_s:.3f} CPU s, {wall_s:.3f} s wall in the CLI's main, best of {repeat}")
        shutil.rmtree(config.parent, ignore_errors=True)
    ratio = cpus[1] / cpus[0]
    print(f"no-op fetch: CPU at {counts[1]:,} = {ratio:.2f} x at {counts[0]:,} (target <= 3 x: "
          f"{'PASS' if ratio <= 3 else 'FAIL'})")


def simulator_config(sim: Any, data_dir: Path) -> str:
    """A config.toml for `sim` (a bulkfetch.simulator.Simulator: its first refresh token; limits it never
    reaches) writing into data_dir."""
    settings = sim.settings
    return (f'[strava]\napi_url = "{sim.api_url}"\noauth_url = "{sim.oauth_url}"\n'
            f'client_id = "{settings.client_id}"\nclient_secret = "{settings.client_secret}"\n'
            f'refresh_token = "{sim.current_refresh_token}"\n'
            "[limits]\nshort_requests = 1000000\ndaily_requests = 10000000\n"
            "[fetch]\nmax_rate_per_s = 100000.0\nconcurrency = 16\n"
            f'[storage]\ndata_dir = "{data_dir}"\n')


def child_run(command: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a child of this script and return the JSON report on its last line."""
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def child_fetch(config: Path) -> None:
    """In a fresh process: import what a fetch imports, then time `bulkfetch fetch` in it and print one
    JSON line of wall and CPU seconds."""
    import contextlib
    import io

    import bulkfetch.compact  # noqa: F401 - imported before the clock starts: a constant, not the work
    import bulkfetch.run  # noqa: F401
    from bulkfetch.cli import main as cli_main

    started, cpu_started = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):
        code = cli_main(["--config", str(config), "fetch"])
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    if code != 0:
        raise SystemExit(f"the no-op fetch exited {code}")
    print(json.dumps({"seconds": seconds, "cpu_s": cpu}))


@dataclass(frozen=True)
class Timing:
    wall_s: float
    cpu_s: float  # this process's and its waited-for children's (a child `bulkfetch` and what it waited for)


@dataclass(frozen=True)
class Contender:
    """One thing the details case times; `before` runs untimed before each run (clearing its output)."""
    name: str
    run: Callable[[], object]
    before: Callable[[], None] | None = None
    repeat: int | None = None  # in the first this many repeats only (None: in every repeat)


@dataclass(frozen=True)
class Ratio:
    """A contender against a floor, over the repeats both ran in: the headline is the median of the
    per-repeat ratios (each run against the floor of the same repeat, so that a slow sitting slows both);
    `best_*` is the older figure, best of the runs over the floor's best."""
    wall: float
    wall_low: float
    wall_high: float
    cpu: float
    best_wall: float
    best_cpu: float

    @classmethod
    def of(cls, runs: list[Timing], floor: list[Timing]) -> Ratio:
        pairs = list(zip(runs, floor, strict=False))  # a contender in fewer repeats: its first ones
        walls = [run.wall_s / base.wall_s for run, base in pairs]
        best, best_floor = best_of(runs), best_of([base for _, base in pairs])
        return cls(statistics.median(walls), min(walls), max(walls),
                   statistics.median(run.cpu_s / base.cpu_s for run, base in pairs),
                   best.wall_s / best_floor.wall_s, best.cpu_s / best_floor.cpu_s)


def cpu_s() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_once(contender: Contender) -> Timing:
    if contender.before:
        contender.before()
    started, cpu_started = time.perf_counter(), cpu_s()
    contender.run()
    return Timing(time.perf_counter() - started, cpu_s() - cpu_started)


def best_of(runs: list[Timing]) -> Timing:
    """The best wall time and the best CPU time (not necessarily of the same run)."""
    return Timing(min(r.wall_s for r in runs), min(r.cpu_s for r in runs))


def interleaved(contenders: list[Contender], repeat: int, warm: Callable[[], None]) -> dict[str, list[Timing]]:
    """Each contender's runs, in repeat order. Each repeat warms the page cache (untimed), then runs every
    contender once, the order rotated by one each repeat: a machine that slows down for a while slows the
    contenders of those repeats alike, and none always runs first after the warm-up or after another's
    writes."""
    runs: dict[str, list[Timing]] = {c.name: [] for c in contenders}
    for number in range(repeat):
        warm()
        active = [c for c in contenders if c.repeat is None or number < c.repeat]
        shift = number % len(active)
        for contender in active[shift:] + active[:shift]:
            runs[contender.name].append(time_once(contender))
    return runs


def floor_as_process(paths: list[Path]) -> None:
    """The floor as a whole process: interpreter start, `import orjson`, then `read_and_parse`'s reads."""
    code = ("import sys, orjson\nfrom pathlib import Path\n"
            "for line in sys.stdin: orjson.loads(Path(line.rstrip('\\n')).read_bytes())\n")
    subprocess.run([sys.executable, "-c", code], input="".join(f"{p}\n" for p in paths), text=True, check=True)


def compact_as_process(config: Path) -> None:
    """`bulkfetch compact --rebuild` as a user runs it: a fresh interpreter, its imports, its worker; its
    modules compiled once, as an installed package's are (where PYTHONDONTWRITEBYTECODE is set, every
    run would compile bulkfetch again, about 0.15 s, while the floor's orjson is compiled already)."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-m", "bulkfetch", "--config", str(config), "compact", "--rebuild"],
                   cwd=REPO, env=env, capture_output=True, check=True)


def measure_details(store: RawStore, folder: Path, args: argparse.Namespace) -> None:
    """The details case: the floor and compaction, in-process and as whole processes, interleaved (see
    `interleaved`); each ratio the median of the per-repeat ratios, with the best-of figures beside it."""
    ours_dir, duck_dir = folder / "parquet", folder / "parquet-duckdb"
    config = folder / "config.toml"
    config.write_text(f'[storage]\ndata_dir = "{folder / "data"}"\nparquet_dir = "{ours_dir}"\n')
    paths = raw_paths(store)

    def clear(path: Path) -> Callable[[], None]:
        return lambda: shutil.rmtree(path, ignore_errors=True)

    def warm() -> None:  # the raw files back in the page cache, should another's writes have pushed them out
        for path in paths:
            path.read_bytes()

    floor = Contender("read + orjson.loads (floor)", lambda: read_and_parse(store))
    ours = Contender("bulkfetch compact --rebuild", lambda: run_compact(store, ours_dir), clear(ours_dir))
    process_floor = Contender("floor as a process", lambda: floor_as_process(paths))
    process = Contender("compact --rebuild as a process", lambda: compact_as_process(config), clear(ours_dir))
    one_process = Contender("  the same in one process", lambda: run_compact(store, ours_dir, parallel=False),
                            clear(ours_dir))
    contenders = [floor, ours, one_process, process_floor, process]
    duckdb_note = ""
    if not args.no_duckdb:
        duckdb_repeat = min(args.duckdb_repeat, args.repeat)
        contenders.append(Contender("DuckDB SQL script", lambda: run_duckdb(store, duck_dir), clear(duck_dir),
                                    duckdb_repeat))
        duckdb_note = f" (DuckDB in the first {duckdb_repeat})"
    load_before = os.getloadavg()[0]
    runs = interleaved(contenders, args.repeat, warm)
    raw_bytes = sum(path.stat().st_size for path in paths)
    print(f"{args.activities:,} activities, {raw_bytes / 1e6:.1f} MB raw JSON, {os.cpu_count()} CPU(s), load average "
          f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after; repeats: {args.repeat}, each running every "
          f"contender once in rotating order{duckdb_note}, the page cache warmed before each")
    print("x floor: the median over the repeats of each run against the floor of the same repeat (min-max); "
          "best: the best of the repeats against the floor's best")
    print(f"{'':32} {f'best of {args.repeat}':^15} {'median':>7}  {'x floor (median per repeat)':^27} "
          f"{'best x floor':^15}")
    print(f"{'':32} {'wall s':>7} {'CPU s':>7} {'wall s':>7}  {'wall (min-max)':>19} {'CPU':>7} {'wall':>7} {'CPU':>7}")
    for contender in contenders:
        best, ratio = best_of(runs[contender.name]), Ratio.of(runs[contender.name], runs[floor.name])
        spread = f"{ratio.wall:.2f} ({ratio.wall_low:.2f}-{ratio.wall_high:.2f})"
        print(f"{contender.name:32} {best.wall_s:7.2f} {best.cpu_s:7.2f} "
              f"{statistics.median(r.wall_s for r in runs[contender.name]):7.2f}  {spread:>19} {ratio.cpu:7.2f} "
              f"{ratio.best_wall:7.2f} {ratio.best_cpu:7.2f}")
    print(target_line("in-process, with its worker", Ratio.of(runs[ours.name], runs[floor.name]), "the floor", 2.0,
                      "CPU; the worker's is not counted"))
    print(target_line("as a whole process", Ratio.of(runs[process.name], runs[process_floor.name]),
                      "the floor as a process", 2.5, "CPU; a worker's is not counted: the forkserver's child"))


def target_line(label: str, ratio: Ratio, floor: str, target: float, cpu_note: str) -> str:
    """One of issue 14's details targets, judged on the median of the per-repeat ratios."""
    verdict = "PASS" if ratio.wall <= target else "FAIL"
    return (f"{label}: {ratio.wall:.2f} x {floor} (wall, the median per-repeat ratio; {ratio.wall_low:.2f}-"
            f"{ratio.wall_high:.2f} across the repeats), {ratio.cpu:.2f} x ({cpu_note}); best of the repeats: "
            f"{ratio.best_wall:.2f} x, {ratio.best_cpu:.2f} x (CPU); target <= {target:g} x: {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--activities", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=9,
                        help="repeats of the details case, each running every contender once (interleaved), and "
                             "runs of the no-op fetch")
    parser.add_argument("--duckdb-repeat", type=int, default=3,
                        help="the DuckDB contender in the first this many repeats only (~35 x the floor: its runs "
                             "take minutes)")
    parser.add_argument("--no-duckdb", action="store_true", help="skip the DuckDB contender")
    parser.add_argument("--keep", type=Path, help="build the raw store here and keep it (default: temp dir)")
    parser.add_argument("--streams-activities", type=int, default=200,
                        help="activities with streams in the streams case (0 skips it; 3000 is ~2.5 GB raw)")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the memory case (a full rebuild at --activities and at 10 x as many)")
    parser.add_argument("--noop-activities", type=int, default=2000,
                        help="history of the no-op fetch case, run at this and 10 x as many (0 skips it)")
    parser.add_argument("--child-compact", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-with-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-fetch", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_compact:
        child_compact(*args.child_compact, args.child_with_worker)
        return 0
    if args.child_fetch:
        child_fetch(args.child_fetch)
        return 0

    folder = args.keep or Path(tempfile.mkdtemp(prefix="bulkfetch-bench-"))
    try:
        # Where `bulkfetch` keeps an athlete of a data_dir, so that the CLI finds it too.
        store = write_synthetic_store(folder / "data" / "athletes" / str(ATHLETE_ID), args.activities)
        read_and_parse(store)  # warms the page cache
        measure_details(store, folder, args)
        if args.streams_activities > 0:
            r, w = measure_streams(args.streams_activities, folder)
            print(f"streams: {args.streams_activities:,} activities, {r['raw_mb']:,.1f} MB raw JSON -> "
                  f"{r['rows']:,} rows, {r['parquet_mb']:,.1f} MB Parquet in {r['seconds']:.2f} s; "
                  f"peak RSS {r['peak_rss_mb']:,.0f} MB (before compaction {r['rss_before_mb']:,.0f} MB), "
                  "one process")
            print(f"streams: {r['cpu_s']:.2f} CPU s; floor (read + orjson.loads of every raw file it reads, "
                  f"same process) {r['floor_s']:.2f} s, {r['floor_cpu_s']:.2f} CPU s: "
                  f"{r['seconds'] / r['floor_s']:.2f} x (wall), {r['cpu_s'] / r['floor_cpu_s']:.2f} x (CPU)")
            print(f"streams with its worker (as the CLI runs): {w['seconds']:.2f} s, {w['cpu_s']:.2f} CPU s (this "
                  f"process), floor {w['floor_s']:.2f} s: {w['seconds'] / w['floor_s']:.2f} x (wall); peak RSS "
                  f"{w['peak_rss_mb']:,.0f} MB (this process)")
        if not args.no_memory:
            measure_memory((args.activities, 10 * args.activities), folder)
        if args.noop_activities > 0:
            measure_noop_fetch((args.noop_activities, 10 * args.noop_activities), folder, args.repeat)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
