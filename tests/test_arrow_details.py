"""arrow_details: Arrow's JSON reader builds exactly `build_tables`' tables, fast where data is clean."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulkfetch import arrow_details
from bulkfetch.arrow_details import build_detail_tables, parse_detail
from bulkfetch.schema import (
    ACTIVITY_COLUMNS,
    BOOL,
    CHILD_KEYS,
    COLUMNS,
    DETAIL_TABLES,
    STR,
    Column,
    ExportPart,
    build_tables,
)

FIXTURES = Path(__file__).parent / "fixtures_compact"
DETAIL = orjson.loads((FIXTURES / "detailed_activity_run.json").read_bytes())
SUMMARY = orjson.loads((FIXTURES / "summary_activities.json").read_bytes())[0]


def python_path(activities, export=None) -> dict[str, pa.Table]:
    return build_tables([(i, s, parse_detail(raw)) for i, s, raw in activities], export)


def read_as_compaction_does(activities, export=None) -> dict[str, pa.Table]:
    """The detail files in one buffer, each followed by a newline, and each a view of it (compact's reads)."""
    joined, spans = bytearray(), []
    for _, _, raw in activities:
        spans.append(None if raw is None else (len(joined), len(joined) + len(raw)))
        if raw is not None:
            joined += raw + b"\n"
    views = [(i, s, None if span is None else memoryview(joined)[span[0]:span[1]])
             for (i, s, _), span in zip(activities, spans)]
    return build_detail_tables(views, export, arrow_details.read_details(views, export, joined))


def assert_same(activities, export=None) -> None:
    slow = python_path(activities, export)
    for fast in build_detail_tables(activities, export), read_as_compaction_does(activities, export):
        assert list(fast) == list(DETAIL_TABLES) == list(slow)
        for name in DETAIL_TABLES:
            assert fast[name].schema == slow[name].schema, name
            assert fast[name].equals(slow[name]), name
            # repr tells -0.0 from 0.0, which `equals` does not
            assert repr(fast[name].to_pylist()) == repr(slow[name].to_pylist()), name


@pytest.fixture(autouse=True)
def any_chunk_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader for chunks of any size, so small ones test it (compaction leaves small ones to build_tables)."""
    monkeypatch.setattr(arrow_details, "MIN_DETAILS", 0)


@pytest.fixture
def fast_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path must not fall back: the Python path fails the test."""
    def refuse(*_: Any) -> None:
        raise AssertionError("fell back to build_tables")
    monkeypatch.setattr(arrow_details, "build_tables", refuse)


def variant(activity_id: int, **changes: Any) -> dict[str, Any]:
    detail = json.loads(json.dumps(DETAIL))
    detail["id"] = activity_id
    detail.update(changes)
    return detail


def test_clean_details_take_the_reader_and_equal_build_tables(fast_only):
    activities = [(i, None, orjson.dumps(variant(i, name=f"run {i}"))) for i in range(1, 4)]
    fast = build_detail_tables(activities)
    slow = python_path(activities)
    for name in DETAIL_TABLES:
        assert fast[name].equals(slow[name]) and fast[name].num_rows == slow[name].num_rows, name
    assert fast["splits_metric"].num_rows == 3 * len(DETAIL["splits_metric"])


def test_what_real_histories_wobble_with_stays_on_the_reader(fast_only):
    """Ints sent as floats (314.0) and a fractional one, -0.0, null list items, a null segment, missing and
    null keys, short latlng lists, no detail at all: all checked vectorised, none falls back."""
    wobbly = variant(2, elapsed_time=314.0, moving_time=2.5, elev_low=-0.0, start_latlng=[], end_latlng=[1.5],
                     gear=None, map={"id": "m"}, laps=None, description=None)
    wobbly.pop("kudos_count")
    wobbly["splits_metric"] = [None, {"split": 1.0, "distance": 1000}, None]
    efforts = [dict(e) for e in DETAIL["segment_efforts"][:3]]
    efforts[0]["segment"] = None
    efforts[1]["kom_rank"] = 7.5
    wobbly["segment_efforts"] = efforts
    summary = {**SUMMARY, "id": 2, "name": None, "kudos_count": "many", "start_date": "not a date"}
    assert_same([(1, SUMMARY, None), (2, summary, orjson.dumps(wobbly)), (3, None, orjson.dumps(variant(3)))],
                {1: ExportPart(summary_from_csv=True)})


@pytest.mark.parametrize("raw", [
    orjson.dumps(variant(1, distance=True)),  # a bool in a number: the reader refuses it
    orjson.dumps(variant(1, name=12)),  # a number in text ("12" by the rules)
    orjson.dumps(variant(1, upload_id=2**60)),  # beyond what float64 holds exactly
    orjson.dumps(variant(1, distance=-0)).replace(b'"distance":0', b'"distance":-0'),  # 0.0 by the rules
    json.dumps(variant(1), indent=1).encode(),  # pretty-printed: newlines
    json.dumps(variant(1, distance=float("nan"))).encode(),  # NaN: orjson refuses the file
    json.dumps(variant(1, elapsed_time=-float("inf"))).encode(),  # in an int column
    json.dumps(variant(1, laps=[{"distance": float("nan")}])).encode(),  # in a child table's
    orjson.dumps(variant(1, distance=1.5)).replace(b'"distance":1.5', b'"distance":Inf'),  # the reader's spellings
    orjson.dumps(variant(1, laps=[{"distance": 1.5}])).replace(b'"distance":1.5', b'"distance":-NaN'),
    orjson.dumps(variant(1)).replace(b"Run", b"R\xffn", 1),  # invalid UTF-8: refused too
    b"\xef\xbb\xbf" + orjson.dumps(variant(1)),  # a BOM: refused too
    b"", b"[]", b"null", b"{", orjson.dumps(variant(1)) + b"{}",  # damaged (`null`: no detail, not a row of nulls)
    orjson.dumps(variant(1, splits_metric={"split": 1})),  # an object where a list belongs
])
def test_what_the_reader_cannot_vouch_for_goes_to_build_tables(raw):
    assert_same([(1, SUMMARY, raw), (2, None, orjson.dumps(variant(2)))])


def test_a_nan_outside_the_tables_is_the_one_damage_the_reader_takes():
    """The documented difference (checking costs a tenth of the parse; no stored detail holds one)."""
    raw = json.dumps(variant(1, similar_activities={"average_speed": float("nan")})).encode()
    assert parse_detail(raw) is None
    assert build_detail_tables([(1, None, raw)])["activities"]["has_detail"].to_pylist() == [True]


def test_small_chunks_go_to_build_tables(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(arrow_details, "MIN_DETAILS", 3)
    calls = []
    monkeypatch.setattr(arrow_details, "build_tables", lambda *args: calls.append(args) or build_tables(*args))
    small = [(i, None, orjson.dumps(variant(i))) for i in range(1, 3)]
    build_detail_tables(small)
    assert len(calls) == 1
    build_detail_tables([*small, (3, None, orjson.dumps(variant(3)))])
    assert len(calls) == 1


def test_device_file_rows_go_to_build_tables():
    export = {1: ExportPart(children={"laps": [{"lap_index": 1, "distance": 5.0}]})}
    assert_same([(1, SUMMARY, None), (2, None, orjson.dumps(variant(2)))], export)
    assert build_detail_tables([(1, SUMMARY, None)], export)["laps"]["source"].to_pylist() == ["file"]


def test_no_activities_and_no_details_give_the_schemas():
    assert_same([])
    assert_same([(1, SUMMARY, None), (2, None, None)])


# -- hostile values: both paths agree on whatever a field holds ---------------------------------------
hostile = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**64), 2**64), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -0.0, 314.0, 2.5, -3.5, 2**53, 2**53 + 1.0, 1e300, "", "12", "2020-02-30T00:00:00Z",
                     "2021-06-01T10:00:00+02:00", "NaN", [], [1.5], [None, 2], {}, {"id": 3}]),
    st.text(max_size=4),
)
numbers = st.one_of(st.integers(-(2**62), 2**62), st.floats(allow_nan=False, allow_infinity=False),
                    st.sampled_from([0, -0.0, 314.0, 2.5, -3.5, 2**53 - 1, 2**53, 2**53 + 1.0, 1e300, None]))
texts = st.one_of(st.none(), st.text(max_size=4), st.sampled_from(
    ["2020-02-30T00:00:00Z", "2021-06-01T10:00:00+02:00", "2021-06-01T10:00:00", "2021-06-01T10:00:00.5z", "Inf"]))


def same_kind(type_: pa.DataType) -> st.SearchStrategy[Any]:
    """Values the reader takes in a column of `type_` (so they test the fast path's own conversions)."""
    if type_ == BOOL:
        return st.one_of(st.none(), st.booleans())
    return texts if type_ == STR or pa.types.is_timestamp(type_) else numbers


def odd(columns: list[Column]) -> st.SearchStrategy[tuple[str, Any]]:
    """A key of `columns` and a value for it: mostly of its kind, else anything."""
    def value_for(column: Column) -> st.SearchStrategy[tuple[str, Any]]:
        if len(column.path) == 1:
            kind = same_kind(column.type)
        elif isinstance(column.path[1], int):
            kind = st.lists(st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)), max_size=3)
        else:
            kind = st.fixed_dictionaries({}, optional={str(column.path[1]): same_kind(column.type)})
        return st.tuples(st.just(str(column.path[0])), st.one_of(kind, kind, kind, hostile))
    return st.sampled_from(columns).flatmap(value_for)


activity_columns = [c for c in ACTIVITY_COLUMNS if c.path]
item_columns = {key: [c for c in COLUMNS[name] if c.path and not c.from_activity] for name, key in CHILD_KEYS.items()}


@st.composite
def details(draw: st.DrawFn, activity_id: int) -> bytes | None:
    if draw(st.integers(0, 9)) == 0:
        return None
    detail = variant(activity_id)
    for key, value in draw(st.lists(odd(activity_columns), max_size=3)):
        detail[key] = value
    for _ in range(draw(st.integers(0, 3))):
        list_key = draw(st.sampled_from(sorted(item_columns)))
        items = detail.get(list_key)
        items = items if isinstance(items, list) and items else [{}]
        index = draw(st.integers(0, len(items) - 1))
        if draw(st.booleans()):
            item = items[index] if isinstance(items[index], dict) else {}
            key, value = draw(odd(item_columns[list_key]))
            items[index] = {**item, key: value}
        else:
            items[index] = draw(st.sampled_from([None, {}, {"segment": None}, {"segment": {"id": 2.0}}]))
        detail[list_key] = items
    return json.dumps(detail, separators=(",", ":"), ensure_ascii=False).encode()  # ints beyond 64 bits too


@st.composite
def chunks(draw: st.DrawFn) -> list[tuple[int, dict | None, bytes | None]]:
    activities = []
    for activity_id in range(1, draw(st.integers(1, 4)) + 1):
        summary = draw(st.sampled_from([None, SUMMARY, {"id": activity_id}]))
        if summary is not None and draw(st.booleans()):
            key, value = draw(odd(activity_columns))
            summary = {**summary, key: value}
        activities.append((activity_id, summary, draw(details(activity_id))))
    return activities


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(chunks())
def test_both_paths_agree_on_hostile_values(activities):
    assert_same(activities)
