"""compact: values equal raw, DuckDB and Spark answer the pace question, incremental, atomic, bench smoke."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import tracemalloc
from contextlib import closing
from datetime import datetime
from pathlib import Path

import orjson
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import bulkfetch.compact as compact_module
from bench.compact import ATHLETE_ID, write_synthetic_store
from bulkfetch import arrow_details
from bulkfetch.compact import (
    INPUTS,
    MANIFEST,
    RACY_S,
    SetAside,
    SpilledSummaries,
    compact,
    partition_entries,
    year_fingerprints,
)
from bulkfetch.errors import WriteError
from bulkfetch.parquet_layout import PARTITION_SCHEMA, partition_path
from bulkfetch.schema import DETAIL_TABLES, TABLES
from bulkfetch.store import UNLISTED, RawStore
from tests.conftest import cli_env, run_cli
from tests.ctrl_c import run_ctrl_c_in_a_futures_lock

REPO = Path(__file__).resolve().parent.parent
YEARS = (2019, 2021)
COUNT = 60
ATHLETE = f"athlete_id={ATHLETE_ID}"
OTHER_ID = 7_000_000_001  # beyond int32: the README's cast to int64 matters
OTHER_YEARS = (2021, 2022)
PARTITIONING = ds.partitioning(PARTITION_SCHEMA, flavor="hive")  # inferred, OTHER_ID would make it text


def read(parquet_dir: Path, table: str, athlete_id: int = ATHLETE_ID) -> list[dict]:
    """One athlete's rows of a table, read as hive partitions filtered by `athlete_id` (which is dropped)."""
    dataset = ds.dataset(parquet_dir / table, format="parquet", partitioning=PARTITIONING)
    rows = dataset.to_table(filter=ds.field("athlete_id") == athlete_id).to_pylist()
    assert {row.pop("athlete_id") for row in rows} <= {athlete_id}
    return rows


def snapshot(parquet_dir: Path) -> dict[str, int]:
    """Every partition file and its mtime_ns: what a run touched."""
    return {str(p.relative_to(parquet_dir)): p.stat().st_mtime_ns for p in parquet_dir.rglob("*.parquet")}


def add_listing(store: RawStore, summaries: list[dict]) -> None:
    """A new complete listing (what the next fetch would write), newest first."""
    listing = store.new_listing(time.time())  # named by a sequence number first: no need to wait for a new second
    ordered = sorted(summaries, key=lambda s: s["start_date"], reverse=True)
    for page in range(0, len(ordered), 200):
        listing.write_page(page // 200 + 1, orjson.dumps(ordered[page:page + 200]))
    listing.mark_complete(len(ordered))


@pytest.fixture(scope="module")
def two_athletes(tmp_path_factory) -> tuple[RawStore, RawStore, Path]:
    """Two athletes' stores compacted into one parquet_dir: ATHLETE_ID's COUNT synthetic activities
    (some without detail, one deleted) and OTHER_ID's smaller history, which shares a year with it."""
    data = tmp_path_factory.mktemp("built")
    store = write_synthetic_store(data / "data", COUNT, seed=7, years=YEARS, detail_share=0.85, stream_share=0.7)
    deleted = sorted(store.catalog())[5]
    store.add_tombstones([deleted], "unlisted", time.time())
    other = write_synthetic_store(data / "other", 12, seed=9, years=OTHER_YEARS, detail_share=0.9,
                                  stream_share=0.5, athlete_id=OTHER_ID)
    parquet_dir = data / "parquet"
    with pytest.MonkeyPatch.context() as patch:
        # The equality tests below check the detail tables Arrow's reader builds: compaction leaves chunks
        # this small (under arrow_details.MIN_DETAILS) to build_tables, which test_schema checks.
        patch.setattr(arrow_details, "MIN_DETAILS", 1)
        compact(store, parquet_dir, ATHLETE_ID)
        compact(other, parquet_dir, OTHER_ID)
    return store, other, parquet_dir


@pytest.fixture(scope="module")
def built(two_athletes) -> tuple[RawStore, Path]:
    store, _, parquet_dir = two_athletes
    return store, parquet_dir


@pytest.fixture
def fresh(tmp_path) -> tuple[RawStore, Path]:
    store = write_synthetic_store(tmp_path / "data", 30, seed=3, years=YEARS, detail_share=0.9, stream_share=0.7)
    return store, tmp_path / "parquet"


# -- values ----------------------------------------------------------------------------------------------
def test_layout_is_one_file_per_athlete_table_and_year_without_those_columns(two_athletes):
    store, other, parquet_dir = two_athletes
    for athlete_id, athlete_store, span in ((ATHLETE_ID, store, YEARS), (OTHER_ID, other, OTHER_YEARS)):
        years = {datetime.fromisoformat(s["start_date"].replace("Z", "+00:00")).year
                 for s in athlete_store.catalog().values()}
        assert years == set(range(span[0], span[1] + 1))
        for table in TABLES:
            assert sorted(p.name for p in (parquet_dir / table).iterdir()) == [f"athlete_id={ATHLETE_ID}",
                                                                              f"athlete_id={OTHER_ID}"]
            folders = sorted(p.name for p in (parquet_dir / table / f"athlete_id={athlete_id}").iterdir())
            assert folders == [f"year={y}" for y in sorted(years)], table
            for year in years:
                files = list(partition_path(parquet_dir, table, athlete_id, year).parent.iterdir())
                assert [f.name for f in files] == ["part-0.parquet"]
                names = pq.read_schema(files[0]).names
                assert "year" not in names and "athlete_id" not in names  # Spark refuses a column in both
    assert not (parquet_dir / ".migrating").exists()


def test_each_athletes_rows_are_its_own_raw_json(two_athletes):
    store, other, parquet_dir = two_athletes
    for athlete_id, athlete_store in ((ATHLETE_ID, store), (OTHER_ID, other)):
        rows = read(parquet_dir, "activities", athlete_id)
        assert sorted(r["id"] for r in rows) == sorted(athlete_store.catalog())
        assert {r["name"] for r in rows} == {s["name"] for s in athlete_store.catalog().values()}
        efforts = {r["id"] for r in read(parquet_dir, "segment_efforts", athlete_id)}
        assert efforts == {e["id"] for i in athlete_store.detail_ids() & set(athlete_store.catalog())
                           for e in orjson.loads(athlete_store.detail_path(i).read_bytes())["segment_efforts"]}


def test_compacting_one_athlete_leaves_the_others_files_alone(tmp_path):
    store = write_synthetic_store(tmp_path / "a", 12, seed=3, years=YEARS, stream_share=0.5)
    other = write_synthetic_store(tmp_path / "b", 8, seed=4, years=YEARS, athlete_id=OTHER_ID)
    parquet_dir = tmp_path / "parquet"
    compact(store, parquet_dir, ATHLETE_ID)
    mine = snapshot(parquet_dir)
    assert compact(other, parquet_dir, OTHER_ID).written["activities"] == list(range(YEARS[0], YEARS[1] + 1))
    assert {p: t for p, t in snapshot(parquet_dir).items() if p.split("/")[1] == ATHLETE} == mine
    # Incremental per (athlete, year): a change in one of OTHER_ID's years rewrites that partition only.
    summaries = list(other.catalog().values())
    changed = next(s for s in summaries if s["start_date"].startswith("2020"))
    changed["kudos_count"] = 999
    add_listing(other, summaries)
    before = snapshot(parquet_dir)
    assert compact(other, parquet_dir, OTHER_ID).written["activities"] == [2020]
    after = snapshot(parquet_dir)
    assert {p for p in after if after[p] != before[p]} == {
        f"{t}/athlete_id={OTHER_ID}/year=2020/part-0.parquet" for t in TABLES if t != "streams"}
    assert compact(store, parquet_dir, ATHLETE_ID).written == {t: [] for t in TABLES}


def test_activities_are_the_catalog_with_has_detail(built):
    store, parquet_dir = built
    catalog = store.catalog()
    rows = {r["id"]: r for r in read(parquet_dir, "activities")}
    assert set(rows) == set(catalog)  # one row each, the tombstoned one left out
    assert len(rows) == COUNT - 1
    details = store.detail_ids()
    assert 0 < len(details & set(catalog)) < len(catalog)
    for activity_id, summary in catalog.items():
        row = rows[activity_id]
        start = datetime.fromisoformat(summary["start_date"].replace("Z", "+00:00"))
        assert row["year"] == start.year and row["start_date"] == start
        assert row["start_date_local"] == datetime.fromisoformat(summary["start_date_local"][:-1])
        assert row["has_detail"] == (activity_id in details)
        assert row["name"] == summary["name"] and row["kudos_count"] == summary["kudos_count"]
        assert row["distance"] == float(summary["distance"])
        assert row["elapsed_time"] == int(summary["elapsed_time"])
        if activity_id in details:
            detail = orjson.loads(store.detail_path(activity_id).read_bytes())
            assert row["description"] == detail["description"]
            assert row["map_polyline"] == detail["map"]["polyline"]
        else:
            assert row["description"] is None and row["calories"] is None


def test_split_rows_and_values_equal_the_raw_json_per_activity(built):
    store, parquet_dir = built
    catalog = store.catalog()
    for table in ("splits_metric", "splits_standard"):
        by_activity: dict[int, list[dict]] = {}
        for row in read(parquet_dir, table):
            by_activity.setdefault(row["activity_id"], []).append(row)
        checked = 0
        for activity_id in store.detail_ids() & set(catalog):
            detail = orjson.loads(store.detail_path(activity_id).read_bytes())
            raw = detail.get(table, [])
            rows = sorted(by_activity.get(activity_id, []), key=lambda r: r["split"])
            assert len(rows) == len(raw), (table, activity_id)
            for row, split in zip(rows, raw):
                assert row["sport_type"] == catalog[activity_id]["sport_type"]
                assert row["split"] == split["split"]
                assert row["distance"] == float(split["distance"])
                assert type(row["moving_time"]) is int and row["moving_time"] == split["moving_time"]
                assert row["elapsed_time"] == split["elapsed_time"]
                assert row["elevation_difference"] == split["elevation_difference"]
                assert row["average_speed"] == split["average_speed"]
                assert row["average_grade_adjusted_speed"] == split["average_grade_adjusted_speed"]
                assert row["average_heartrate"] == split.get("average_heartrate")
                assert row["pace_zone"] == split["pace_zone"]
            checked += len(rows)
        assert checked > 500
        assert set(by_activity) <= store.detail_ids() & set(catalog)


def test_laps_and_efforts_equal_the_raw_json(built):
    store, parquet_dir = built
    live = store.detail_ids() & set(store.catalog())
    for table in ("laps", "best_efforts", "segment_efforts"):
        rows = {r["id"]: r for r in read(parquet_dir, table)}
        expected = {}
        for activity_id in live:
            for item in orjson.loads(store.detail_path(activity_id).read_bytes()).get(table, []):
                expected[item["id"]] = (activity_id, item)
        assert set(rows) == set(expected), table
        for effort_id, (activity_id, item) in expected.items():
            row = rows[effort_id]
            assert row["activity_id"] == activity_id and row["elapsed_time"] == item["elapsed_time"]
            assert row["distance"] == float(item["distance"]) and row["name"] == item["name"]
            if table == "segment_efforts":
                assert row["segment_id"] == item["segment"]["id"]
                assert row["segment_average_grade"] == item["segment"]["average_grade"]


# -- engines ---------------------------------------------------------------------------------------------
PACE_SQL = """
SELECT CAST(floor(s.elevation_difference / 5) * 5 AS INT) AS elevation_bucket_m,
       count(*) AS splits, sum(s.moving_time) AS moving_time_s, round(sum(s.distance), 1) AS distance_m
FROM splits_metric s JOIN activities a ON a.id = s.activity_id AND a.athlete_id = s.athlete_id AND a.year = s.year
WHERE a.sport_type IN ('Run', 'TrailRun') AND s.distance BETWEEN 950 AND 1050 AND s.athlete_id = {athlete_id}
GROUP BY 1 ORDER BY 1
"""


def expected_pace(store: RawStore) -> list[tuple]:
    """The pace-vs-elevation answer computed from the raw JSON in plain Python."""
    import math

    catalog = store.catalog()
    buckets: dict[int, list] = {}
    for activity_id in store.detail_ids() & set(catalog):
        if catalog[activity_id]["sport_type"] not in ("Run", "TrailRun"):
            continue
        for split in orjson.loads(store.detail_path(activity_id).read_bytes()).get("splits_metric", []):
            if 950 <= split["distance"] <= 1050:
                key = int(math.floor(split["elevation_difference"] / 5) * 5)
                bucket = buckets.setdefault(key, [0, 0, 0.0])
                bucket[0] += 1
                bucket[1] += split["moving_time"]
                bucket[2] += split["distance"]
    return [(k, n, int(t), round(d, 1)) for k, (n, t, d) in sorted(buckets.items())]


def test_detail_tables_are_dictionary_encoded_only_where_values_repeat(built):
    """Near-unique columns skip the dictionary (trying one costs a fifth of the write); the chosen ones keep it."""
    _, parquet_dir = built
    for table, chosen in compact_module.DICTIONARY_COLUMNS.items():
        path = partition_path(parquet_dir, table, ATHLETE_ID, YEARS[0])
        metadata = pq.ParquetFile(path).metadata
        columns = [metadata.row_group(0).column(i) for i in range(metadata.num_columns)]
        assert set(chosen) <= {column.path_in_schema for column in columns}, table
        encoded = {column.path_in_schema for column in columns if column.dictionary_page_offset is not None}
        assert encoded == set(chosen), table


def test_duckdb_reads_every_table_and_answers_the_pace_question_per_athlete(two_athletes, tmp_path):
    duckdb = pytest.importorskip("duckdb")
    store, other, parquet_dir = two_athletes
    with duckdb.connect() as db:
        for table in TABLES:
            db.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{parquet_dir}/{table}/**/*.parquet', "
                       "hive_partitioning = true, hive_types = {'athlete_id': BIGINT})")
            counts = dict(db.execute(f"SELECT athlete_id, count(*) FROM {table} GROUP BY 1").fetchall())
            assert set(counts) == {ATHLETE_ID, OTHER_ID}, table
        assert db.execute("SELECT typeof(id), typeof(athlete_id), typeof(start_date), typeof(start_date_local) "
                          "FROM activities LIMIT 1").fetchone() == ("BIGINT", "BIGINT", "TIMESTAMP WITH TIME ZONE",
                                                                    "TIMESTAMP")
        for athlete_id, athlete_store in ((ATHLETE_ID, store), (OTHER_ID, other)):
            rows = [(int(b), int(n), int(t), float(d))
                    for b, n, t, d in db.execute(PACE_SQL.format(athlete_id=athlete_id)).fetchall()]
            assert rows == expected_pace(athlete_store)
            assert sum(n for _, n, _, _ in rows) > (300 if athlete_id == ATHLETE_ID else 10)


def test_a_filter_on_athlete_id_reads_only_that_athletes_folders(two_athletes, tmp_path):
    """Pruned by the folder names: the other athlete's files, made unreadable here, are never opened."""
    duckdb = pytest.importorskip("duckdb")
    _, _, built_dir = two_athletes
    parquet_dir = tmp_path / "parquet"
    shutil.copytree(built_dir, parquet_dir)
    for path in parquet_dir.glob(f"splits_metric/athlete_id={OTHER_ID}/*/part-0.parquet"):
        path.write_bytes(b"not parquet")
    glob = f"{parquet_dir}/splits_metric/**/*.parquet"
    with duckdb.connect() as db:
        count = db.execute(f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = true) "
                           f"WHERE athlete_id = {ATHLETE_ID}").fetchone()[0]
        assert count == len(read(built_dir, "splits_metric"))
        with pytest.raises(duckdb.Error):
            db.execute(f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = true)").fetchone()
    dataset = ds.dataset(parquet_dir / "splits_metric", format="parquet", partitioning=PARTITIONING)
    assert dataset.count_rows(filter=ds.field("athlete_id") == ATHLETE_ID) == count


def test_spark_reads_every_table_and_gets_the_same_answer(two_athletes, spark):
    from pyspark.sql import functions as F

    store, other, parquet_dir = two_athletes
    for table in TABLES:
        frame = spark.read.parquet(str(parquet_dir / table))
        assert {"year", "athlete_id"} <= set(frame.columns) and frame.count() > 0
        frame.withColumn("athlete_id", F.col("athlete_id").cast("long")).createOrReplaceTempView(table)
    types = dict(spark.table("activities").dtypes)
    assert types["id"] == "bigint" and types["start_date"] == "timestamp" and types["year"] == "int"
    assert types["athlete_id"] == "bigint"
    for athlete_id, athlete_store in ((ATHLETE_ID, store), (OTHER_ID, other)):
        rows = [(int(r[0]), int(r[1]), int(r[2]), float(r[3]))
                for r in spark.sql(PACE_SQL.format(athlete_id=athlete_id)).collect()]
        assert rows == expected_pace(athlete_store)
    plan = spark.table("splits_metric").where(f"athlete_id = {ATHLETE_ID}")._jdf.queryExecution() \
        .executedPlan().toString()
    assert "athlete_id" in plan.split("PartitionFilters: [", 1)[1].split("]", 1)[0]  # pruned by folder


def expected_stream_rows(raw: dict, activity_id: int, summary: dict) -> list[dict]:
    """The rows a StreamSet should become, from the raw JSON alone (point i of every type is row i)."""
    series = {kind: stream["data"] for kind, stream in raw.items()}
    rows = []
    for seq in range(max(len(data) for data in series.values())):
        point = {kind: data[seq] if seq < len(data) else None for kind, data in series.items()}
        latlng = point.pop("latlng", None)
        rows.append({"activity_id": activity_id, "seq": seq, "sport_type": summary["sport_type"], "source": "api",
                     "start_date": datetime.fromisoformat(summary["start_date"].replace("Z", "+00:00")),
                     "lat": latlng[0] if latlng else None, "lng": latlng[1] if latlng else None, **point})
    return rows


def test_stream_rows_equal_the_raw_json_sorted_by_activity_and_seq(built):
    store, parquet_dir = built
    catalog = store.catalog()
    with_streams = store.stream_ids() & store.detail_ids() & set(catalog)
    assert len(with_streams) > 10
    for year_dir in sorted((parquet_dir / "streams" / ATHLETE).iterdir()):
        path = year_dir / "part-0.parquet"
        meta = pq.ParquetFile(path).metadata
        assert [(c.column_index, c.descending) for c in meta.row_group(0).sorting_columns] == [(0, False), (1, False)]
        keys = [(r["activity_id"], r["seq"]) for r in pq.read_table(path, columns=["activity_id", "seq"]).to_pylist()]
        assert keys == sorted(keys) and len(set(keys)) == len(keys)
    rows = read(parquet_dir, "streams")
    by_activity: dict[int, list[dict]] = {}
    for row in rows:
        year = row.pop("year")
        assert year == row["start_date"].year
        by_activity.setdefault(row["activity_id"], []).append(row)
    assert set(by_activity) == with_streams  # the tombstoned activity's streams are left out too
    for activity_id in with_streams:
        raw = orjson.loads(store.stream_path(activity_id).read_bytes())
        assert by_activity[activity_id] == expected_stream_rows(raw, activity_id, catalog[activity_id])
    assert any(r["heartrate"] is None for r in rows) and any(r["lat"] is None for r in rows)  # nulls kept


def test_a_new_or_changed_stream_file_rewrites_only_its_year_and_a_damaged_one_is_skipped(fresh):
    store, parquet_dir = fresh
    compact(store, parquet_dir, ATHLETE_ID)
    catalog = store.catalog()
    without = sorted(store.detail_ids() - store.stream_ids(), key=lambda i: catalog[i]["start_date"])
    assert len(without) >= 2
    activity_id = without[0]
    year = int(catalog[activity_id]["start_date"][:4])
    raw = {"time": {"data": [0, 1, 2]}, "heartrate": {"data": [100, None, 102]}}
    store.write_streams(activity_id, orjson.dumps(raw))
    result = compact(store, parquet_dir, ATHLETE_ID)
    assert result.written["streams"] == [year] and result.written["activities"] == []  # only what changed
    assert result.skipped_years == [y for y in range(YEARS[0], YEARS[1] + 1) if y != year]
    mine = [r for r in read(parquet_dir, "streams") if r["activity_id"] == activity_id]
    assert [r["heartrate"] for r in mine] == [100, None, 102]

    store.write_streams(activity_id, orjson.dumps({"time": {"data": [0, 1]}}))  # refetched after an edit
    assert compact(store, parquet_dir, ATHLETE_ID).written["streams"] == [year]
    assert len([r for r in read(parquet_dir, "streams") if r["activity_id"] == activity_id]) == 2

    store.mark_no_streams(without[1])  # a "no streams" marker adds no rows: nothing to rewrite
    assert compact(store, parquet_dir, ATHLETE_ID).written == {t: [] for t in TABLES}

    store.stream_path(activity_id).write_bytes(b'{"time": {"data": [0, 1')  # damaged from outside
    result = compact(store, parquet_dir, ATHLETE_ID)
    assert not [r for r in read(parquet_dir, "streams") if r["activity_id"] == activity_id]
    assert activity_id in {r["id"] for r in read(parquet_dir, "activities")}
    assert [(aside.raw, aside.group) for aside in result.set_aside] == [(store.stream_path(activity_id), "streams")]
    assert activity_id not in store.stream_ids()


def test_stream_row_groups_end_at_a_count_of_activities_and_the_rows_stay_the_same(fresh, monkeypatch):
    """Each activity's stream table holds memory beyond its counted bytes, so a row group also ends at
    ROW_GROUP_MAX_TABLES of them: short streams of a long year must not all be buffered at once."""
    store, parquet_dir = fresh
    compact(store, parquet_dir, ATHLETE_ID, parallel=False)
    monkeypatch.setattr(compact_module, "ROW_GROUP_MAX_TABLES", 2)
    capped = parquet_dir.parent / "capped"
    compact(store, capped, ATHLETE_ID, parallel=False)
    for year_dir in sorted((capped / "streams" / ATHLETE).iterdir()):
        file = pq.ParquetFile(year_dir / "part-0.parquet")
        groups = [file.read_row_group(i, columns=["activity_id"]).column(0).to_pylist()
                  for i in range(file.metadata.num_row_groups)]
        assert all(len(set(ids)) <= 2 for ids in groups)
        activities = {i for ids in groups for i in ids}
        assert file.metadata.num_row_groups == (len(activities) + 1) // 2
    assert any(pq.ParquetFile(p).metadata.num_row_groups > 1 for p in (capped / "streams").rglob("*.parquet"))
    assert read(capped, "streams") == read(parquet_dir, "streams")


# -- incremental, idempotent, atomic -------------------------------------------------------------------
def test_rerun_rewrites_nothing_and_duplicates_nothing(fresh):
    store, parquet_dir = fresh
    first = compact(store, parquet_dir, ATHLETE_ID)
    assert first.skipped_years == [] and first.rows["activities"] == 30
    before, rows_before = snapshot(parquet_dir), {t: len(read(parquet_dir, t)) for t in TABLES}
    again = compact(store, parquet_dir, ATHLETE_ID)
    assert again.written == {t: [] for t in TABLES} and again.rows == {t: 0 for t in TABLES}
    assert again.skipped_years == sorted(first.written["activities"])
    assert snapshot(parquet_dir) == before
    assert {t: len(read(parquet_dir, t)) for t in TABLES} == rows_before


def test_new_activities_rewrite_only_their_year(fresh):
    store, parquet_dir = fresh
    compact(store, parquet_dir, ATHLETE_ID)
    before = snapshot(parquet_dir)
    summaries = list(store.catalog().values())
    template = orjson.loads(store.detail_path(next(iter(store.detail_ids()))).read_bytes())
    for n in range(5):
        new_id = 90_000_000_000 + n
        detail = {**template, "id": new_id, "start_date": f"2020-06-0{n + 1}T10:00:00Z",
                  "start_date_local": f"2020-06-0{n + 1}T12:00:00Z"}
        store.write_detail(new_id, orjson.dumps(detail))
        summaries.append({k: v for k, v in detail.items() if k not in ("splits_metric", "segment_efforts")})
    add_listing(store, summaries)
    progress: list[tuple[int, int]] = []
    result = compact(store, parquet_dir, ATHLETE_ID, on_progress=lambda done, total: progress.append((done, total)))
    assert result.written["activities"] == [2020] and result.written["splits_metric"] == [2020]
    assert result.skipped_years == [2019, 2021]
    assert progress == [(0, 1), (1, 1)]
    after = snapshot(parquet_dir)
    changed = {path for path in after if after[path] != before.get(path)}
    assert changed == {f"{t}/{ATHLETE}/year=2020/part-0.parquet" for t in TABLES if t != "streams"}  # none has streams
    assert len(read(parquet_dir, "activities")) == 35


def test_tombstones_leave_activities_out_and_empty_years_go(fresh):
    store, parquet_dir = fresh
    compact(store, parquet_dir, ATHLETE_ID)
    catalog = store.catalog()
    in_2021 = [i for i, s in catalog.items() if s["start_date"].startswith("2021")]
    one_2019 = next(i for i, s in catalog.items() if s["start_date"].startswith("2019"))
    store.add_tombstones([*in_2021, one_2019], "unlisted", time.time())
    result = compact(store, parquet_dir, ATHLETE_ID)
    assert 2021 in result.written["activities"] and 2019 in result.written["activities"]
    assert not (parquet_dir / "activities" / ATHLETE / "year=2021").exists()
    ids = {r["id"] for r in read(parquet_dir, "activities")}
    assert ids == set(catalog) - set(in_2021) - {one_2019}
    assert one_2019 not in {r["activity_id"] for r in read(parquet_dir, "splits_metric")}


def test_changed_detail_or_summary_rewrites_its_year(fresh):
    store, parquet_dir = fresh
    compact(store, parquet_dir, ATHLETE_ID)
    activity_id = min(i for i in store.detail_ids() if store.catalog()[i]["start_date"].startswith("2021"))
    detail = orjson.loads(store.detail_path(activity_id).read_bytes())
    detail["description"] = "edited"
    store.write_detail(activity_id, orjson.dumps(detail))
    assert compact(store, parquet_dir, ATHLETE_ID).written["activities"] == [2021]
    row = next(r for r in read(parquet_dir, "activities") if r["id"] == activity_id)
    assert row["description"] == "edited"
    summaries = list(store.catalog().values())
    next(s for s in summaries if s["id"] == activity_id)["kudos_count"] = 1234
    add_listing(store, summaries)
    assert compact(store, parquet_dir, ATHLETE_ID).written["activities"] == [2021]
    assert next(r for r in read(parquet_dir, "activities") if r["id"] == activity_id)["kudos_count"] == 1234


def small_store(folder: Path) -> RawStore:
    """Three listed activities over two years, two with a detail and one with streams; files' mtimes fixed."""
    store = RawStore(folder)
    store.prepare()
    add_listing(store, [
        {"id": 1001, "start_date": "2020-05-01T07:00:00Z", "sport_type": "Run", "kudos_count": 3, "name": "a"},
        {"id": 1002, "start_date": "2020-06-01T07:00:00Z", "sport_type": "Ride", "kudos_count": 0},
        {"id": 1003, "start_date": "2021-01-01T07:00:00Z", "sport_type": "Walk", "name": "c"}])
    store.write_detail(1001, orjson.dumps({"id": 1001, "description": "d"}))
    store.write_detail(1003, orjson.dumps({"id": 1003}))
    store.write_streams(1002, orjson.dumps({"time": {"data": [0, 1]}}))
    for path in [*store.detail_dir.iterdir(), *store.stream_dir.iterdir()]:
        os.utime(path, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    return store


def test_fingerprints_are_those_the_manifests_of_earlier_releases_recorded(tmp_path, monkeypatch):
    """Summaries spilled to a file, paths derived from ids: the fingerprints must stay what data dirs hold,
    or every year would be rewritten once after an upgrade. Values computed by the code before (ca0c711)."""
    monkeypatch.setattr(compact_module, "SCHEMA_VERSION", 4)  # a new schema version rewrites all anyway
    store = small_store(tmp_path / "data")
    with closing(SpilledSummaries(store.state_dir)) as summaries:
        fingerprints = {year: year_fingerprints(entries, summaries)
                        for year, entries in partition_entries(store, summaries).items()}
    assert fingerprints == {
        2020: {"details": "9ac4c094463ae3a38e52b57b77f19d72", "streams": "023f0feabe8786e6f4220d4dc6195540"},
        2021: {"details": "26d3ec54ac517ab5b25d78f284a96b25", "streams": "45de2b8cd3fc461bb0d50cd29f7aba03"}}


def test_the_entries_a_run_keeps_hold_neither_summaries_nor_paths(tmp_path):
    """Every year's entries live for the whole run: each holds a few numbers, not its summary's JSON (1.6 KB
    here) or its files' paths, which the peak RSS at 20,000 activities grew by (bench/compact.py's memory case)."""
    store = write_synthetic_store(tmp_path / "data", 300, seed=3, years=YEARS, stream_share=1.0)
    with closing(SpilledSummaries(store.state_dir)) as summaries:
        tracemalloc.start()
        try:
            entries = partition_entries(store, summaries)
            held, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert sum(map(len, entries.values())) == 300
        assert held / 300 < 800, held / 300  # about 600 bytes now; 2,300 when entries held them
        assert all(not e.summary_json for year in entries.values() for e in year)


def file_identity(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_ino, info.st_mtime_ns


def streamed_activity(store: RawStore, year: int) -> int:
    catalog = store.catalog()
    return min(i for i in store.stream_ids() & store.detail_ids() if catalog[i]["start_date"].startswith(str(year)))


def test_a_kudos_or_detail_change_leaves_the_streams_partition_alone(fresh):
    store, parquet_dir = fresh
    compact(store, parquet_dir, ATHLETE_ID)
    activity_id = streamed_activity(store, 2020)
    streams_file, activities_file = (partition_path(parquet_dir, t, ATHLETE_ID, 2020)
                                     for t in ("streams", "activities"))
    streams_before, activities_before = file_identity(streams_file), file_identity(activities_file)

    summaries = list(store.catalog().values())
    next(s for s in summaries if s["id"] == activity_id)["kudos_count"] = 4321
    add_listing(store, summaries)
    result = compact(store, parquet_dir, ATHLETE_ID)
    assert result.written == {**{t: [2020] for t in TABLES}, "streams": []}
    assert file_identity(streams_file) == streams_before
    assert file_identity(activities_file) != activities_before
    assert next(r for r in read(parquet_dir, "activities") if r["id"] == activity_id)["kudos_count"] == 4321

    detail = orjson.loads(store.detail_path(activity_id).read_bytes())
    detail["description"] = "edited"
    store.write_detail(activity_id, orjson.dumps(detail))
    assert compact(store, parquet_dir, ATHLETE_ID).written["streams"] == []
    assert file_identity(streams_file) == streams_before
    assert compact(store, parquet_dir, ATHLETE_ID).written == {t: [] for t in TABLES}


def test_a_changed_stream_file_rewrites_only_the_streams_partition(fresh):
    store, parquet_dir = fresh
    compact(store, parquet_dir, ATHLETE_ID)
    activity_id = streamed_activity(store, 2021)
    before = snapshot(parquet_dir)
    store.write_streams(activity_id, orjson.dumps({"time": {"data": [0, 1, 2]}, "heartrate": {"data": [90, 91, 92]}}))
    result = compact(store, parquet_dir, ATHLETE_ID)
    assert result.written == {**{t: [] for t in TABLES}, "streams": [2021]}
    after = snapshot(parquet_dir)
    assert {p for p in after if after[p] != before.get(p)} == {f"streams/{ATHLETE}/year=2021/part-0.parquet"}
    rows = [r for r in read(parquet_dir, "streams") if r["activity_id"] == activity_id]
    assert [(r["seq"], r["heartrate"]) for r in rows] == [(0, 90), (1, 91), (2, 92)]


def test_what_stream_rows_copy_from_the_activity_rewrites_them(fresh):
    store, parquet_dir = fresh
    compact(store, parquet_dir, ATHLETE_ID)
    activity_id = streamed_activity(store, 2019)
    summaries = list(store.catalog().values())
    next(s for s in summaries if s["id"] == activity_id)["sport_type"] = "Kayaking"
    add_listing(store, summaries)
    result = compact(store, parquet_dir, ATHLETE_ID)
    assert result.written == {t: [2019] for t in TABLES}
    assert {r["sport_type"] for r in read(parquet_dir, "streams") if r["activity_id"] == activity_id} == {"Kayaking"}

    # An activity without streams leaving the year changes no stream row.
    without_streams = [i for i, s in store.catalog().items()
                       if s["start_date"].startswith("2019") and i not in store.stream_ids()]
    store.add_tombstones(without_streams[:2], UNLISTED, time.time())
    result = compact(store, parquet_dir, ATHLETE_ID)
    assert result.written == {**{t: [2019] for t in TABLES}, "streams": []}


def test_rebuild_schema_change_and_lost_files_rewrite(fresh, monkeypatch):
    store, parquet_dir = fresh
    first = compact(store, parquet_dir, ATHLETE_ID)
    years = first.written["activities"]
    assert compact(store, parquet_dir, ATHLETE_ID, rebuild=True).written["activities"] == years
    partition_path(parquet_dir, "laps", ATHLETE_ID, 2020).unlink()
    assert compact(store, parquet_dir, ATHLETE_ID).written["laps"] == [2020]
    monkeypatch.setattr(compact_module, "SCHEMA_VERSION", compact_module.SCHEMA_VERSION + 1)
    result = compact(store, parquet_dir, ATHLETE_ID)
    assert result.written["activities"] == years and result.skipped_years == []


def test_a_crash_mid_compaction_keeps_the_old_partitions_and_the_next_run_heals(fresh, monkeypatch):
    store, parquet_dir = fresh
    compact(store, parquet_dir, ATHLETE_ID)
    before = snapshot(parquet_dir)
    old_rows = read(parquet_dir, "activities")
    # Change every year, then fail while writing the second year's files.
    summaries = [{**s, "name": s["name"] + " (renamed)"} for s in store.catalog().values()]
    add_listing(store, summaries)
    real_commit = compact_module._PartitionWriter.commit
    commits = []

    def failing_commit(self):
        if len(commits) == len(TABLES) + 2:
            raise WriteError("disk full while writing (simulated)")
        commits.append(self.target)
        return real_commit(self)

    monkeypatch.setattr(compact_module._PartitionWriter, "commit", failing_commit)
    with pytest.raises(WriteError):
        compact(store, parquet_dir, ATHLETE_ID)
    monkeypatch.undo()
    after_crash = snapshot(parquet_dir)
    assert set(after_crash) == set(before)  # no partition lost, no temporary file visible as .parquet
    assert sum(after_crash[p] != before[p] for p in before) == len(TABLES) + 2
    assert len(read(parquet_dir, "activities")) == len(old_rows)  # every file readable, nothing doubled
    assert not [p for p in parquet_dir.rglob("*") if p.name.startswith(".")]

    # A killed process can leave a temporary file; the next run sweeps it and heals every year.
    (parquet_dir / "laps" / ATHLETE / "year=2019" / ".part-0.parquet.tmp-999999999-dead").write_bytes(b"half")
    result = compact(store, parquet_dir, ATHLETE_ID)
    # 2019 was finished and recorded before the crash; 2020 crashed half-written, so it is redone.
    assert result.skipped_years == [2019] and result.written["activities"] == [2020, 2021]
    assert not [p for p in parquet_dir.rglob("*") if p.name.startswith(".")]
    assert all(r["name"].endswith("(renamed)") for r in read(parquet_dir, "activities"))
    assert compact(store, parquet_dir, ATHLETE_ID).written == {t: [] for t in TABLES}


def test_parallel_output_equals_sequential_output(tmp_path, monkeypatch):
    store = write_synthetic_store(tmp_path / "data", 40, seed=11, years=(2016, 2020), stream_share=0.5)
    compact(store, tmp_path / "sequential", ATHLETE_ID)
    monkeypatch.setattr(compact_module, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(compact_module, "CHUNK_ACTIVITIES", 3)  # several row groups per file too
    written_here: list[int] = []
    write = compact_module._write_year  # the worker has its own: this one counts the years written here
    monkeypatch.setattr(compact_module, "_write_year",
                        lambda job, *rest: written_here.append(job.year) or write(job, *rest))
    # Until its worker has started, this process writes every year itself: here it waits for it at once.
    monkeypatch.setattr(compact_module._Worker, "ready", property(lambda worker: worker.join() or True))
    result = compact(store, tmp_path / "parallel", ATHLETE_ID)
    assert result.rows["activities"] == 40 and len(written_here) < len(result.written["activities"])
    for table in TABLES:
        assert read(tmp_path / "parallel", table) == read(tmp_path / "sequential", table), table


# Years (or a year's stream files) shared with the worker, however small, and given to it once it is ready:
# with two years it takes both.
SHARED_WORK = ["import bulkfetch.compact as compact", "compact.PARALLEL_MIN_BYTES = 0",
               "compact._Worker.ready = property(lambda worker: worker.join() or True)"]


@pytest.mark.parametrize("years", [(2019, 2020), (2019, 2019)], ids=["years", "streams"])
def test_ctrl_c_inside_a_futures_lock_does_not_hang_the_compaction(tmp_path, years):
    """The Ctrl-C comes just as the compaction took a lock of the worker's years (or stream tables) it
    waits for (see tests/ctrl_c.py), where it hung the command: 130 in one line, no process left, and the
    rerun writes what compacting alone writes."""
    data = tmp_path / "data"
    store = write_synthetic_store(data / "athletes" / str(ATHLETE_ID), 40, seed=11, years=years, stream_share=0.8)
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\ndata_dir = "{data}"\n', encoding="utf-8")
    code, out, err = run_ctrl_c_in_a_futures_lock(["--config", str(config), "compact"], tmp_path / "site",
                                                  SHARED_WORK)
    assert code is not None, "the compaction hung after Ctrl-C"
    assert code == 130 and "Traceback" not in err and err.count("bulkfetch:") == 1, (code, out, err)

    assert run_cli("--config", str(config), "compact").returncode == 0
    compact(store, tmp_path / "alone", ATHLETE_ID, parallel=False)
    for table in TABLES:
        assert read(data / "parquet", table) == read(tmp_path / "alone", table), table


def test_each_detail_file_is_read_once_however_its_chunk_is_built(tmp_path, monkeypatch):
    """A small chunk goes to build_tables over the bytes it read (no reload); a big one to the reader."""
    reads: list[Path] = []
    detail_bytes = compact_module._detail_bytes
    monkeypatch.setattr(compact_module, "_detail_bytes", lambda path: reads.append(path) or detail_bytes(path))
    for count in (12, 80):
        store = write_synthetic_store(tmp_path / f"data{count}", count, seed=16, years=(2021, 2021))
        reads.clear()
        compact(store, tmp_path / f"parquet{count}", ATHLETE_ID)
        assert sorted(reads) == sorted(store.detail_path(i) for i in store.detail_ids()), count


def test_a_value_the_reader_cannot_vouch_for_reads_the_chunks_files_again(tmp_path, monkeypatch):
    """A chunk drops its files' bytes once Arrow's reader has them; a value found unsure only later (an int
    beyond float64's exact range) sends the chunk to build_tables over the files read again."""
    monkeypatch.setattr(arrow_details, "MIN_DETAILS", 1)
    store = write_synthetic_store(tmp_path / "data", 12, seed=15, years=(2021, 2021))
    activity_id = sorted(store.detail_ids())[3]
    detail = orjson.loads(store.detail_path(activity_id).read_bytes())
    detail["laps"][0]["id"] = 2**60 + 1
    store.detail_path(activity_id).write_bytes(orjson.dumps(detail))
    fallbacks = []
    build_tables = arrow_details.build_tables
    monkeypatch.setattr(arrow_details, "build_tables", lambda *args: fallbacks.append(args) or build_tables(*args))
    compact(store, tmp_path / "parquet", ATHLETE_ID)
    assert len(fallbacks) == 1
    assert 2**60 + 1 in [r["id"] for r in read(tmp_path / "parquet", "laps") if r["activity_id"] == activity_id]
    monkeypatch.setattr(arrow_details, "MIN_DETAILS", 10**9)  # build_tables from the start
    compact(store, tmp_path / "python", ATHLETE_ID)
    for table in DETAIL_TABLES:
        assert read(tmp_path / "parquet", table) == read(tmp_path / "python", table), table


def test_one_years_streams_shared_with_the_worker_equal_sequential_output(tmp_path, monkeypatch):
    """A single year's stream files are split between this process and the worker: the file is the same."""
    store = write_synthetic_store(tmp_path / "data", 30, seed=12, years=(2019, 2019), stream_share=0.8,
                                  stream_points=(200, 2000))
    compact(store, tmp_path / "sequential", ATHLETE_ID, parallel=False)
    built_here: list[int] = []
    build = compact_module.build_streams  # the worker has its own: this one counts what this process built
    monkeypatch.setattr(compact_module, "build_streams", lambda *args: built_here.append(args[0]) or build(*args))
    monkeypatch.setattr(compact_module, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(compact_module, "STREAMS_AHEAD", 3)  # the window full at times: waits for the worker
    # Until its worker has started, this process builds every table itself: here it waits for it at once.
    monkeypatch.setattr(compact_module._Worker, "ready", property(lambda worker: worker.join() or True))
    result = compact(store, tmp_path / "parallel", ATHLETE_ID)
    assert result.rows["streams"] > 0 and len(built_here) < len(store.stream_ids())  # the worker built the others
    for table in TABLES:
        assert read(tmp_path / "parallel", table) == read(tmp_path / "sequential", table), table


def test_a_damaged_stream_file_the_worker_meets_is_set_aside(tmp_path, monkeypatch):
    """A year's stream files shared with the worker: one that holds no StreamSet comes back as such."""
    store = write_synthetic_store(tmp_path / "data", 30, seed=12, years=(2019, 2019), stream_share=0.8,
                                  stream_points=(200, 2000))
    damaged = sorted(store.stream_ids())
    for activity_id in damaged:
        store.stream_path(activity_id).write_bytes(b"null")
    monkeypatch.setattr(compact_module, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(compact_module._Worker, "ready", property(lambda worker: worker.join() or True))
    result = compact(store, tmp_path / "parquet", ATHLETE_ID)
    assert sorted(aside.raw for aside in result.set_aside) == sorted(map(store.stream_path, damaged))
    assert result.rows["streams"] == 0 and not store.stream_ids()


def test_empty_store_and_missing_details(tmp_path):
    store = RawStore(tmp_path / "data")
    store.prepare()
    result = compact(store, tmp_path / "parquet", ATHLETE_ID)
    assert result.written == {t: [] for t in TABLES} and result.skipped_years == []
    store = write_synthetic_store(tmp_path / "data2", 10, seed=5, years=(2022, 2022), detail_share=0.0)
    result = compact(store, tmp_path / "parquet2", ATHLETE_ID)
    assert result.written["activities"] == [2022] and result.written["splits_metric"] == []
    assert not (tmp_path / "parquet2" / "splits_metric").exists() or not any(
        (tmp_path / "parquet2" / "splits_metric").rglob("*.parquet"))
    assert all(not r["has_detail"] for r in read(tmp_path / "parquet2", "activities"))


def test_a_damaged_detail_keeps_its_summary_row_and_is_set_aside(fresh):
    store, parquet_dir = fresh
    activity_id = next(iter(store.detail_ids()))
    path = store.detail_path(activity_id)
    year = int(store.catalog()[activity_id]["start_date"][:4])
    path.write_bytes(b"{not json")
    result = compact(store, parquet_dir, ATHLETE_ID)
    row = next(r for r in read(parquet_dir, "activities") if r["id"] == activity_id)
    assert row["has_detail"] is False and row["name"] == store.catalog()[activity_id]["name"]
    moved_to = store.quarantine_dir / "activities" / path.name
    assert result.set_aside == [SetAside(path, moved_to, "details")]
    assert moved_to.read_bytes() == b"{not json" and activity_id not in store.detail_ids()
    # Its year's detail tables were written from a file no longer there: the next run writes them again.
    assert "details" not in store.read_state(MANIFEST)["years"][str(year)]["fingerprints"]
    again = compact(store, parquet_dir, ATHLETE_ID)
    assert again.written["activities"] == [year] and again.written["streams"] == [] and again.set_aside == []
    assert compact(store, parquet_dir, ATHLETE_ID).written == {t: [] for t in TABLES}
    path.write_bytes(b"null")  # damaged again: set aside beside the first, which stays
    assert compact(store, parquet_dir, ATHLETE_ID).set_aside == [
        SetAside(path, moved_to.with_name(f"{activity_id}-2.json"), "details")]
    assert moved_to.read_bytes() == b"{not json"


def test_a_compaction_that_does_not_move_damaged_files_leaves_their_year_to_the_next(fresh):
    """Idle compaction (in a fetch's quota waits) says nothing: it leaves a damaged file where it is and its
    year unrecorded, so that the run's own compaction finds it again, moves it and says so."""
    store, parquet_dir = fresh
    activity_id = next(iter(store.detail_ids()))
    store.detail_path(activity_id).write_bytes(b"null")
    assert compact(store, parquet_dir, ATHLETE_ID, move_damaged=False).set_aside == []
    assert activity_id in store.detail_ids()
    result = compact(store, parquet_dir, ATHLETE_ID)
    assert [aside.raw for aside in result.set_aside] == [store.detail_path(activity_id)]


def age(store: RawStore) -> None:
    """Set every folder of the athlete's store a minute back, as if nothing were written in it since: the
    compaction then records its inputs' identity (one changed within compact.RACY_S is not). Its files
    keep their mtimes: the activities' fingerprints stay."""
    past = time.time() - 60
    for path in [store.data_dir, *store.data_dir.rglob("*")]:
        if path.is_dir():
            os.utime(path, (past, past))


def settle(store: RawStore) -> None:
    """Set the folders written within compact.RACY_S ten seconds back: their mtimes still differ from the
    recorded ones (the write changed them), but are old enough for the cheap check to compare them."""
    now = time.time()
    for path in [store.data_dir, *store.data_dir.rglob("*")]:
        if path.is_dir() and path.stat().st_mtime > now - 2 * RACY_S:
            past = path.stat().st_mtime - 10
            os.utime(path, (past, past))


def test_unchanged_inputs_skip_the_check_of_each_activity_and_a_rewritten_file_is_still_seen(fresh):
    store, parquet_dir = fresh
    years = compact(store, parquet_dir, ATHLETE_ID).written["activities"]
    assert store.read_state(MANIFEST).get(INPUTS) is None  # just written: too recent to record
    age(store)
    assert compact(store, parquet_dir, ATHLETE_ID).skipped_years == years  # every activity checked
    assert store.read_state(MANIFEST)[INPUTS] is not None
    activity_id = min(i for i in store.detail_ids() if store.catalog()[i]["start_date"].startswith("2021"))
    path = store.detail_path(activity_id)
    # A new mtime on a file, its folder untouched, is what no bulkfetch write makes (each renames a new
    # file in): the whole check would rewrite its year, the cheap one does not look at it.
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1))
    assert compact(store, parquet_dir, ATHLETE_ID).written["activities"] == []
    # The detail rewritten as bulkfetch writes (renamed in), with the same size: its year is rewritten.
    detail = orjson.loads(path.read_bytes())
    before = path.stat().st_size
    renamed = detail["device_name"].swapcase()  # a column from the detail
    assert renamed != detail["device_name"]
    detail["device_name"] = renamed
    store.write_detail(activity_id, orjson.dumps(detail))
    assert path.stat().st_size == before
    settle(store)  # else the folder, changed just now, is too recent to compare: every activity is checked
    assert compact(store, parquet_dir, ATHLETE_ID).written["activities"] == [2021]
    assert next(r for r in read(parquet_dir, "activities") if r["id"] == activity_id)["device_name"] == renamed
    age(store)
    compact(store, parquet_dir, ATHLETE_ID)
    path.unlink()  # a removed file
    settle(store)
    assert compact(store, parquet_dir, ATHLETE_ID).written["activities"] == [2021]
    age(store)
    compact(store, parquet_dir, ATHLETE_ID)
    assert compact(store, parquet_dir, ATHLETE_ID, rebuild=True).written["activities"] == years
    age(store)
    compact(store, parquet_dir, ATHLETE_ID)
    partition_path(parquet_dir, "laps", ATHLETE_ID, 2020).unlink()  # a partition removed by hand
    assert compact(store, parquet_dir, ATHLETE_ID).written["laps"] == [2020]


# -- layering --------------------------------------------------------------------------------------------
def test_compaction_loads_none_of_the_fetchs_modules():
    # The fetch runs compaction at its end, so compaction sits below it: reaching up (once for a constant of
    # plan's) pulls the fetch's decisions into every compaction and its worker processes.
    code = "import sys, bulkfetch.compact; print(' '.join(sorted(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env=cli_env(), check=True).stdout.split()
    assert "bulkfetch.compact" in loaded
    assert not {"bulkfetch.plan", "bulkfetch.pipeline", "bulkfetch.run", "bulkfetch.client"} & set(loaded)


# -- bench -----------------------------------------------------------------------------------------------
def test_bench_smoke():
    command = [sys.executable, str(REPO / "bench" / "compact.py"), "--activities", "50", "--repeat", "1",
               "--streams-activities", "240", "--no-memory", "--noop-activities", "10"]
    done = subprocess.run(command,
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "50 activities" in out
    for name in ("read + orjson.loads (floor)", "bulkfetch compact --rebuild", "the same in one process",
                 "floor as a process", "compact --rebuild as a process", "DuckDB SQL script"):
        assert name in out
    assert "repeats: 1, each running every contender once in rotating order" in out, out
    assert re.search(r"in-process, with its worker: [\d.]+ x the floor \(wall, the median per-repeat ratio; "
                     r".*target <= 2 x: (PASS|FAIL)", out), out
    assert re.search(r"as a whole process: [\d.]+ x the floor as a process \(wall, the median per-repeat ratio; "
                     r".*target <= 2.5 x: (PASS|FAIL)", out), out
    assert re.search(r"no-op fetch: 100 activities .* a fetch finding nothing new: [\d.]+ CPU s", out), out
    assert re.search(r"no-op fetch: CPU at 100 = [\d.]+ x at 10 \(target <= 3 x: (PASS|FAIL)\)", out), out
    assert re.search(r"streams: [\d.]+ CPU s; floor .* [\d.]+ x \(wall\), [\d.]+ x \(CPU\)", out), out
    assert re.search(r"streams with its worker \(as the CLI runs\): [\d.]+ s, .* [\d.]+ x \(wall\)", out), out
    streams = re.search(r"streams: 240 activities, ([\d,.]+) MB raw JSON -> ([\d,]+) rows.*peak RSS ([\d,]+) MB "
                        r"\(before compaction ([\d,]+) MB\)", out)
    assert streams, out
    raw_mb, rows, peak_mb, before_mb = (float(g.replace(",", "")) for g in streams.groups())
    assert raw_mb > 150 and rows > 2_000_000
    # Bounded: one parsed stream file and the row-group buffers, never a year's streams (all 240 are in one
    # year). Measured: +95 MB for 27 MB raw, +150 MB for 204 MB, +295 MB for 2.6 GB (with 3,000 details).
    assert peak_mb - before_mb < min(0.9 * raw_mb, 300), out


def test_a_broken_worker_leaves_its_stream_files_to_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker killed mid-year (out of memory, say) no longer fails the year: what it was building, and
    the rest, is built here, in the same order."""
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from bulkfetch import compact as compact_module

    monkeypatch.setattr(compact_module, "_stream_table", lambda entry: f"table {entry}")
    submitted: list[int] = []

    class Pool:
        def submit(self, function, entry):  # the worker answers two files, then is gone
            submitted.append(entry)
            future: Future = Future()
            if len(submitted) <= 2:
                future.set_result(function(entry))
            else:
                future.set_exception(BrokenProcessPool("killed"))
            return future

    class Helper:
        ready = True
        pool = Pool()

    tables = list(compact_module._stream_tables(list(range(12)), Helper()))
    assert tables == [f"table {i}" for i in range(12)]
    assert len(submitted) < 12  # it stopped asking the broken worker
