"""schema: fixed column lists, exact values from a real DetailedActivity, and the coercion rules."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bulkfetch import schema
from bulkfetch.schema import (
    BOOL,
    DETAIL_TABLES,
    F64,
    I64,
    STR,
    TABLES,
    ExportPart,
    build_streams,
    build_tables,
    coerce,
    to_array,
)
from tests.conftest import REPO

FIXTURES = Path(__file__).parent / "fixtures_compact"


@pytest.fixture(scope="module")
def detail() -> dict:
    return orjson.loads((FIXTURES / "detailed_activity_run.json").read_bytes())


@pytest.fixture(scope="module")
def summaries() -> list[dict]:
    return orjson.loads((FIXTURES / "summary_activities.json").read_bytes())


def test_every_table_has_an_explicit_schema_without_the_partition_columns():
    assert set(schema.SCHEMAS) == set(TABLES)
    for name, table_schema in schema.SCHEMAS.items():
        # the year and the athlete are the folders only: Spark refuses a column both there and in a file
        assert "year" not in table_schema.names and "athlete_id" not in table_schema.names, name
        assert len(set(table_schema.names)) == len(table_schema.names)
        for field in table_schema:
            if field.name in ("id", "activity_id", "segment_id", "upload_id"):
                assert field.type == pa.int64(), (name, field.name)
        assert table_schema.metadata[b"bulkfetch.schema_version"] == str(schema.SCHEMA_VERSION).encode()
    assert schema.SCHEMAS["activities"].field("start_date").type == pa.timestamp("us", tz="UTC")
    assert schema.SCHEMAS["activities"].field("start_date_local").type == pa.timestamp("us")


def test_the_schema_version_key_is_spelled_once_where_the_schemas_are_made():
    # Written by schema's metadata, read by parquet_layout to tell an older file: two spellings could part.
    spelled = [path.name for path in sorted((REPO / "bulkfetch").rglob("*.py"))
               if '"bulkfetch.schema_version"' in path.read_text(encoding="utf-8")]
    assert spelled == ["schema.py"]
    assert {table.metadata[schema.SCHEMA_VERSION_KEY] for table in schema.SCHEMAS.values()} == {
        str(schema.SCHEMA_VERSION).encode()}


def test_splits_equal_the_raw_json(detail):
    tables = build_tables([(detail["id"], None, detail)])
    for name in ("splits_metric", "splits_standard"):
        rows = tables[name].to_pylist()
        assert len(rows) == len(detail[name])
        for row, raw in zip(rows, detail[name]):
            assert row["activity_id"] == 1946417534
            assert row["sport_type"] == "Run"
            assert row["start_date"] == datetime(2018, 11, 4, 14, 53, 46, tzinfo=UTC)
            for key in ("split", "distance", "elapsed_time", "moving_time", "elevation_difference",
                        "average_speed", "average_grade_adjusted_speed", "average_heartrate", "pace_zone"):
                assert row[key] == raw.get(key), (name, row["split"], key)
    assert len(tables["splits_metric"]) == 43 and len(tables["splits_standard"]) == 27


def test_child_tables_equal_the_raw_json(detail):
    tables = build_tables([(detail["id"], None, detail)])
    for name in ("laps", "best_efforts", "segment_efforts"):
        rows = tables[name].to_pylist()
        assert len(rows) == len(detail[name])
        for row, raw in zip(rows, detail[name]):
            assert row["id"] == raw["id"] and row["activity_id"] == detail["id"]
            assert row["elapsed_time"] == raw["elapsed_time"] and row["distance"] == raw["distance"]
            assert row["start_date_local"] == datetime.fromisoformat(raw["start_date_local"][:-1])
    effort = tables["segment_efforts"].to_pylist()[0]
    segment = detail["segment_efforts"][0]["segment"]
    assert (effort["segment_id"], effort["segment_name"], effort["segment_distance"],
            effort["segment_average_grade"], effort["segment_climb_category"]) == (
        segment["id"], segment["name"], segment["distance"], segment["average_grade"],
        segment["climb_category"])
    # 42195 arrives as an int in a float column: it stays 42195.0, typed float64
    marathon = tables["best_efforts"].to_pylist()[0]
    assert marathon["name"] == "Marathon" and marathon["distance"] == 42195.0


def test_activity_row_flattens_nested_values_and_keeps_local_time_local(detail):
    row = build_tables([(detail["id"], None, detail)])["activities"].to_pylist()[0]
    assert row["id"] == 1946417534 and row["has_detail"] is True
    assert row["start_date"] == datetime(2018, 11, 4, 14, 53, 46, tzinfo=UTC)
    assert row["start_date_local"] == datetime(2018, 11, 4, 9, 53, 46)  # the Z is dropped, not applied
    assert (row["start_lat"], row["start_lng"]) == tuple(detail["start_latlng"])
    assert (row["end_lat"], row["end_lng"]) == tuple(detail["end_latlng"])
    assert row["map_summary_polyline"] == detail["map"]["summary_polyline"]
    assert row["map_polyline"] == detail["map"]["polyline"]
    assert row["gear_name"] == "Adidas Supernova ST"
    assert row["calories"] == 3760.0 and row["description"].startswith("Official time")
    assert row["utc_offset"] == -18000.0 and row["workout_type"] == 1


def test_summary_only_activity_has_null_detail_columns(summaries):
    summary = summaries[0]
    tables = build_tables([(summary["id"], summary, None)])
    row = tables["activities"].to_pylist()[0]
    assert row["has_detail"] is False
    assert row["description"] is None and row["calories"] is None and row["map_polyline"] is None
    assert row["name"] == summary["name"] and row["kudos_count"] == summary["kudos_count"]
    assert row["map_summary_polyline"] == summary["map"]["summary_polyline"]
    assert all(len(tables[name]) == 0 for name in DETAIL_TABLES if name != "activities")


def test_summary_wins_over_detail_and_detail_fills_the_gaps(detail):
    summary = {"id": detail["id"], "name": "renamed", "kudos_count": 99, "start_date": detail["start_date"]}
    row = build_tables([(detail["id"], summary, detail)])["activities"].to_pylist()[0]
    assert row["name"] == "renamed" and row["kudos_count"] == 99
    assert row["description"] == detail["description"] and row["distance"] == detail["distance"]


def test_unknown_fields_and_wrong_kinds_never_break_a_run(detail):
    odd = orjson.loads(orjson.dumps(detail))
    odd["brand_new"] = {"x": [1, {"y": None}]}
    odd["start_latlng"] = []  # Strava sends [] for activities without GPS
    odd["map"] = None
    odd["athlete"] = [26462176]
    odd["splits_metric"][0]["new_field"] = "?"
    odd["splits_metric"][1] = "not an object"
    odd["splits_metric"][2]["moving_time"] = 314.0
    odd["splits_metric"][3]["moving_time"] = "314"
    odd["splits_metric"][4]["distance"] = 1000
    odd["splits_metric"][5]["distance"] = True
    odd["laps"] = None
    odd["start_date_local"] = "garbage"
    tables = build_tables([(detail["id"], None, odd)])
    row = tables["activities"].to_pylist()[0]
    assert row["start_lat"] is None and row["map_summary_polyline"] is None
    assert row["start_date_local"] is None
    splits = tables["splits_metric"].to_pylist()
    assert len(splits) == 42  # the non-object item is skipped
    assert splits[1]["moving_time"] == 314 and splits[2]["moving_time"] is None
    assert splits[3]["distance"] == 1000.0 and splits[4]["distance"] is None
    assert len(tables["laps"]) == 0


def test_child_rows_keep_their_activity_order():
    activities = [(i, {"start_date": f"202{i}-01-01T00:00:00Z", "sport_type": "Run"},
                   {"splits_metric": [{"split": s} for s in range(1, i + 1)]}) for i in (3, 1, 2)]
    splits = build_tables(activities)["splits_metric"]
    assert splits["activity_id"].to_pylist() == [3, 3, 3, 1, 2, 2]
    assert splits["split"].to_pylist() == [1, 2, 3, 1, 1, 2]
    assert [d.year for d in splits["start_date"].to_pylist()] == [2023, 2023, 2023, 2021, 2022, 2022]


def test_source_says_api_csv_or_file_and_a_detail_replaces_the_files_children(detail, summaries):
    derived = {"splits_metric": [{"split": 1, "distance": 1000.0}], "laps": [{"lap_index": 1, "distance": 1000.0}]}
    csv_row = {"id": 5, "name": "From the CSV", "sport_type": "Run", "start_date": "2019-03-01T07:00:00Z"}
    tables = build_tables(
        [(detail["id"], summaries[0], detail), (5, csv_row, None), (summaries[1]["id"], summaries[1], None)],
        export={detail["id"]: ExportPart(children=derived), 5: ExportPart(summary_from_csv=True, children=derived)})
    rows = {r["id"]: r for r in tables["activities"].to_pylist()}
    assert [rows[i]["source"] for i in (detail["id"], 5, summaries[1]["id"])] == ["api", "csv", "api"]
    assert rows[5]["has_detail"] is False and rows[5]["name"] == "From the CSV"
    for name in ("splits_metric", "laps"):  # the detail's own items, never the file's beside them
        by_source = {(r["activity_id"], r["source"]) for r in tables[name].to_pylist()}
        assert by_source == {(detail["id"], "api"), (5, "file")}, name
    assert len(tables["splits_metric"]) == len(detail["splits_metric"]) + 1
    assert [r["source"] for r in tables["splits_standard"].to_pylist()] == ["api"] * len(detail["splits_standard"])
    assert build_streams(5, None, "Run", {"time": {"data": [0, 1]}}, "file")["source"].to_pylist() == ["file"] * 2
    assert set(build_streams(5, None, "Run", {"time": {"data": [0]}})["source"].to_pylist()) == {"api"}


def test_empty_input_gives_empty_tables_with_their_schema():
    tables = build_tables([])
    for name in DETAIL_TABLES:
        assert tables[name].schema == schema.SCHEMAS[name] and len(tables[name]) == 0


@pytest.mark.parametrize(("value", "type_", "expected"), [
    (314, I64, 314), (314.0, I64, 314), (2.5, I64, 2), (3.5, I64, 4), (-2.5, I64, -2), (True, I64, None),
    ("1", I64, None), (2**63, I64, None), (math.inf, I64, None), (math.nan, I64, None),
    (1, F64, 1.0), (1.5, F64, 1.5), (False, F64, None), ("1.5", F64, None),
    (True, BOOL, True), (1, BOOL, None), ("true", BOOL, None),
    ("x", STR, "x"), (12, STR, "12"), (1.5, STR, "1.5"), (True, STR, None), ({"a": 1}, STR, None),
    (None, I64, None), ([1], F64, None),
])
def test_coercion_rules(value, type_, expected):
    assert coerce(value, type_) == expected
    assert to_array([value], type_).to_pylist() == [expected]
    for neighbour in (1.5, 1, "x", True):  # the same answer whatever is around it
        assert to_array([neighbour, value, neighbour], type_).to_pylist()[1] == expected


@pytest.mark.parametrize(("text", "utc", "local"), [
    ("2018-11-04T14:53:46Z", datetime(2018, 11, 4, 14, 53, 46, tzinfo=UTC),
     datetime(2018, 11, 4, 14, 53, 46)),
    ("2018-11-04T14:53:46+02:00", datetime(2018, 11, 4, 12, 53, 46, tzinfo=UTC),
     datetime(2018, 11, 4, 14, 53, 46)),
    ("2018-11-04T14:53:46.250Z", datetime(2018, 11, 4, 14, 53, 46, 250000, tzinfo=UTC),
     datetime(2018, 11, 4, 14, 53, 46, 250000)),
    ("2018-11-04T14:53:46", None, datetime(2018, 11, 4, 14, 53, 46)),
    ("yesterday", None, None), (1541343226, None, None), (None, None, None),
])
def test_timestamp_rules(text, utc, local):
    # Each value alone and in a column with clean neighbours gives the same answer.
    clean = "2020-01-01T00:00:00Z"
    assert to_array([text], schema.UTC_TIME).to_pylist() == [utc]
    assert to_array([clean, text, clean], schema.UTC_TIME).to_pylist()[1] == utc
    assert to_array([text], schema.LOCAL_TIME).to_pylist() == [local]
    assert to_array([clean, text, clean], schema.LOCAL_TIME).to_pylist()[1] == local


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False, width=64), st.text(max_size=5),
    st.sampled_from([0.0, 1.0, -3.0, 2.5, 1e300, 2**53 + 1, 2**63 - 1, -(2**63), math.nan, math.inf]),
    st.sampled_from([[], [1.5, 2], {}, {"a": 1}, [True]]),  # a list or object where a value belongs
)


@settings(max_examples=500, deadline=None)
@given(values=st.lists(json_scalars, max_size=12), type_=st.sampled_from([I64, F64, BOOL, STR]))
def test_a_column_equals_its_values_coerced_one_by_one(values, type_):
    """The fast whole-column path and the value-by-value rule agree, whatever the mix of neighbours."""
    expected = [coerce(v, type_) for v in values]
    got = to_array(values, type_).to_pylist()
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert (g == e or g != g and e != e) and type(g) is type(e), (values, type_)  # nan equals nan here


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(min_value=0, max_value=50)), max_size=8))
def test_child_row_count_is_the_sum_of_list_lengths(split_counts):
    activities = [(i + 1, {"start_date": "2020-01-01T00:00:00Z"},
                   None if n is None else {"splits_standard": [{"split": s + 1} for s in range(n)]})
                  for i, n in enumerate(split_counts)]
    tables = build_tables(activities)
    assert len(tables["activities"]) == len(split_counts)
    assert len(tables["splits_standard"]) == sum(n or 0 for n in split_counts)
    assert tables["activities"]["has_detail"].to_pylist() == [n is not None for n in split_counts]


def _at(item, path):
    """The value at `path` in one JSON item, walked one step at a time (None where a step is missing)."""
    for step in path:
        if type(step) is str:
            item = item.get(step) if type(item) is dict else None
        else:
            item = item[step] if type(item) is list and len(item) > step else None
    return item


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=2**40), st.sampled_from(["object", "none", "list"])),
                min_size=1, max_size=6))
def test_child_rows_equal_their_items_value_by_value_whatever_keys_they_lack(detail, shapes):
    """Rows are pulled row-wise while every item has the keys; items lacking some, or with a segment that
    is not an object, must give the same values as walking each item's path alone."""
    base = detail["segment_efforts"][0]
    items = []
    for mask, segment in shapes:
        item = {key: value for bit, (key, value) in enumerate(base.items()) if not mask >> (bit % 40) & 1}
        item["segment"] = {"object": base["segment"], "none": None, "list": [base["segment"]]}[segment]
        items.append(item)
    rows = build_tables([(1, None, {"segment_efforts": items})])["segment_efforts"].to_pylist()
    columns = [c for c in schema.COLUMNS["segment_efforts"] if not c.from_activity and c.name != "source"]
    for row, item in zip(rows, items, strict=True):
        for column in columns:
            assert row[column.name] == to_array([_at(item, column.path)], column.type).to_pylist()[0], column.name


# -- streams ---------------------------------------------------------------------------------------------
def test_stream_columns_cover_every_configurable_stream_type():
    from bulkfetch.config import STREAM_TYPES

    assert schema.STREAM_KEYS == set(STREAM_TYPES)
    names = schema.SCHEMAS["streams"].names
    assert names[:4] == ["activity_id", "seq", "start_date", "sport_type"]
    assert "lat" in names and "lng" in names and "latlng" not in names


def test_streams_are_long_form_with_nulls_kept_and_short_streams_padded():
    stream_set = {
        "time": {"data": [0, 1, 2, 5], "series_type": "distance"},
        "latlng": {"data": [[40.1, -74.2], None, [40.3, -74.4], [40.4, -74.5]]},
        "heartrate": {"data": [120, None, 122.0, 123]},  # 122.0: an int column's float is its int
        "moving": {"data": [True, False, True]},  # shorter than the rest: padded with null
        "brand_new_type": {"data": [1, 2, 3, 4, 5, 6]},  # unknown: ignored, not even for the length
    }
    rows = build_streams(7, "2024-05-01T06:00:00Z", "TrailRun", stream_set).to_pylist()
    assert [r["seq"] for r in rows] == [0, 1, 2, 3]
    assert {r["activity_id"] for r in rows} == {7} and {r["sport_type"] for r in rows} == {"TrailRun"}
    assert {r["start_date"] for r in rows} == {datetime(2024, 5, 1, 6, tzinfo=UTC)}
    assert [r["time"] for r in rows] == [0, 1, 2, 5]
    assert [(r["lat"], r["lng"]) for r in rows] == [(40.1, -74.2), (None, None), (40.3, -74.4), (40.4, -74.5)]
    assert [r["heartrate"] for r in rows] == [120, None, 122, 123]
    assert [r["moving"] for r in rows] == [True, False, True, None]
    assert all(r["watts"] is None and r["altitude"] is None for r in rows)  # types the activity lacks


def test_streams_take_the_list_shape_and_answer_nothing_for_empty_or_odd_input():
    listed = [{"type": "time", "data": [0, 1]}, {"type": "distance", "data": [0.0, 2.5]}, "junk"]
    rows = build_streams(1, None, None, listed).to_pylist()
    assert [(r["time"], r["distance"]) for r in rows] == [(0, 0.0), (1, 2.5)]
    assert rows[0]["start_date"] is None and rows[0]["sport_type"] is None
    for odd in ({}, [], None, "x", {"time": {"data": "not a list"}}, {"time": [1, 2]}):
        table = build_streams(1, None, None, odd)
        assert len(table) == 0 and table.schema == schema.SCHEMAS["streams"]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(0, 250)), max_size=30),
       st.lists(st.one_of(st.none(), st.tuples(st.floats(-90, 90), st.floats(-180, 180))), max_size=30))
def test_stream_rows_equal_the_points_one_by_one(heartrate, latlng):
    stream_set = {"heartrate": {"data": heartrate}, "latlng": {"data": [list(p) if p else p for p in latlng]}}
    rows = build_streams(3, "2020-01-01T00:00:00Z", "Run", stream_set).to_pylist()
    length = max(len(heartrate), len(latlng))
    assert [r["seq"] for r in rows] == list(range(length))
    padded_hr = heartrate + [None] * (length - len(heartrate))
    padded_ll = latlng + [None] * (length - len(latlng))
    assert [r["heartrate"] for r in rows] == padded_hr
    assert [(r["lat"], r["lng"]) for r in rows] == [p if p else (None, None) for p in padded_ll]


def test_building_tables_tries_no_import(detail, summaries, monkeypatch: pytest.MonkeyPatch):
    """Arrow's type inference (`pa.array` without a type) tries to import dateutil and pandas on every
    call, a search of sys.path each where they are not installed: columns are converted with their type."""
    import builtins
    import sys

    real_import = builtins.__import__
    tried: list[str] = []

    def recording_import(name, *args, **kwargs):
        if name not in sys.modules:
            tried.append(name)
        return real_import(name, *args, **kwargs)

    build_tables([(summaries[0]["id"], summaries[0], detail)])  # anything imported once is loaded now
    build_streams(1, "2024-05-01T06:00:00Z", "Run", {"time": {"data": [0, 1]}, "latlng": {"data": [[1.0, 2.0]]}})
    monkeypatch.setattr(builtins, "__import__", recording_import)
    build_tables([(summaries[0]["id"], summaries[0], detail)])
    build_streams(1, "2024-05-01T06:00:00Z", "Run", {"time": {"data": [0, 1]}, "latlng": {"data": [[1.0, 2.0]]}})
    assert tried == []
