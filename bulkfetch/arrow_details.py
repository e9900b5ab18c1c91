"""Detail tables from raw detail files by Arrow's JSON reader: the same tables as `schema.build_tables`.

`build_tables` needs the parsed dicts, and each of its steps (parse, pull the values out, convert them,
free the dicts) costs about as much as the parse. Here a chunk's detail files are joined into one
buffer, one object a line, which Arrow's C++ reader parses on every core straight into columns of
READ_SCHEMA; the tables are then made from those columns by vectorised compute, with no Python object
per value.

The tables must be exactly `build_tables`' (the module rules of bulkfetch.schema). Arrow's reader is
strict where those rules coerce: a value of another kind than its column's (a bool or text in a number,
a number in text, an object where a list belongs) fails the whole read. That, a file the reader cannot
take as one line or that orjson refuses where the reader would not (a BOM, invalid UTF-8, a NaN or
Infinity literal in a column), or a value the steps below cannot vouch for, sends the chunk to
`build_tables` over orjson-parsed dicts: real data is clean, so this is rare.

Two kinds of damaged file are not caught, as only a scan of every byte finds them (for the literals that
was a tenth of the parse): a NaN or Infinity literal in a field outside the tables, and nesting deeper
than orjson's 1,024 levels. orjson
refuses both (no detail: the activity keeps its summary row), the reader takes them (the detail's rows).
No detail bulkfetch stores holds them: it stores a response only once orjson has parsed it.

What the reader cannot tell apart it reads wide and the steps below check:
- int64 columns are read as float64 (Strava sends 314.0 for 314 now and then, which an int64 column
  refuses): exact while every value is below 2**53 in size, checked per column; integral values cast
  back, any fractional one converts in Python (`to_array`: half to even).
- float64 columns: `-0` (an int, so 0.0 by the rules) reads as -0.0, as `-0.0` does: a negative zero
  sends the chunk back if its file holds something like an int `-0` (looked for in columns only when a
  search of the chunk's bytes found one).
- NaN and Infinity literals (the reader takes NaN, Inf and Infinity with or without a sign, orjson refuses
  the file; a number beyond float64 both refuse) make a number column's sum non-finite: that chunk goes
  back too (a sum a column costs less than looking for the literals in the bytes).
- timestamps are read as text and parsed as `to_array` parses them (`schema.parse_times`).
- list items that are null are dropped (`build_tables` keeps only objects).

Activities without a detail file are in the activities table (their summary's values) and have no
child rows; a chunk where such an activity takes child rows from the export's device file goes to
`build_tables` (it interleaves them by activity).

The summary still wins over the detail value by value: summaries are small and the Python path builds
their columns; a summary value that is there (even one the rules turn into null) is taken.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, repeat
from operator import is_not
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from bulkfetch.processes import available_cpus
from bulkfetch.schema import (
    ACTIVITY_COLUMNS,
    API,
    BOOL,
    CHILD_KEYS,
    COLUMNS,
    F64,
    I64,
    SCHEMAS,
    STR,
    Column,
    ColumnArray,
    ExportPart,
    Path_,
    ValueCache,
    activity_columns,
    build_tables,
    child_table,
    export_parts,
    parse_times,
    to_array,
    values_at,
)

RawActivity = tuple[int, Mapping[str, Any] | None, bytes | memoryview | None]

# Above this size a float64 no longer holds every integer: an int64 column read as float64 may have lost digits.
_EXACT_INT = 2**53
# Below this many details a chunk goes to `build_tables`: the reader's path costs about 10 ms a chunk
# whatever its size (a few hundred vectorised calls), build_tables about 1 ms a detail (measured by
# chunk size, bench/arrow_details.py's store: even at 32, 1.6 x faster from 64).
MIN_DETAILS = 32
# An int `-0` (a float's is `-0.0` or `-0e0`); text that looks so (rare) costs only the fast path.
_INT_NEGATIVE_ZERO = re.compile(rb"-0(?![.eE\d])")


class _Unsure(Exception):
    """A value or file this path cannot vouch for: the chunk goes to `build_tables`."""


def parse_detail(raw: bytes | memoryview | None) -> dict[str, Any] | None:
    """A stored detail's JSON, or None where it is absent or damaged (not a JSON object)."""
    if raw is None:
        return None
    try:
        detail = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return detail if isinstance(detail, dict) else None


@dataclass(frozen=True)
class DetailRead:
    """A chunk's detail files as Arrow's reader parsed them (see `read_details`): one row of READ_SCHEMA
    each, in order, and the rows whose file holds something like an int `-0`. No table: `build_tables`
    takes the chunk."""

    table: pa.Table | None
    int_negative_zero_rows: frozenset[int] = frozenset()


def read_details(activities: Sequence[RawActivity], export: Mapping[int, ExportPart] | None = None,
                 joined: bytes | bytearray | None = None) -> DetailRead:
    """The first step of `build_detail_tables`, the costly one, apart so that the caller may drop the raw
    bytes before the tables are built (see its `reload`). `joined`: the activities' detail files one after
    the other, each followed by a newline, if the caller read them so (saves a copy)."""
    raws = [raw for _, _, raw in activities if raw is not None]
    if len(raws) < MIN_DETAILS:
        return DetailRead(None)  # not that it could not: it would be slower
    if _interleaved(activities, export):
        return DetailRead(None)
    if not raws:
        return DetailRead(READ_SCHEMA.empty_table())
    try:
        return _read(raws, b"\n".join([*raws, b""]) if joined is None else joined)
    except _Unsure:
        return DetailRead(None)


def build_detail_tables(activities: Sequence[RawActivity], export: Mapping[int, ExportPart] | None = None,
                        read: DetailRead | None = None,
                        reload: Callable[[], Sequence[RawActivity]] | None = None) -> dict[str, pa.Table]:
    """`build_tables` of `(id, summary, detail file's bytes or None)` triples, equal to it exactly. `read`:
    `read_details(activities, export)`, if taken already. Once read, the bytes serve only where the read's values
    cannot be vouched for (rare): with `reload`, which gives the triples again, `activities` may hold any
    placeholder for them but None."""
    try:
        return _read_tables(activities, export, read or read_details(activities, export))
    except _Unsure:
        raw_activities = activities if reload is None else reload()
        return build_tables([(activity_id, summary, parse_detail(raw)) for activity_id, summary, raw in raw_activities],
                            export)


# -- the reader's schema -------------------------------------------------------------------------------
def _read_type(type_: pa.DataType) -> pa.DataType:
    """What the reader parses a column of `type_` as (see the module docstring)."""
    if type_ == I64:
        return F64
    return STR if pa.types.is_timestamp(type_) else type_


def _fields(columns: Iterable[tuple[Path_, pa.DataType]]) -> list[pa.Field]:
    """Reader fields for JSON paths: an object step is a struct, an index step a list."""
    leaves: dict[str, pa.DataType] = {}
    below: dict[str, list[tuple[Path_, pa.DataType]]] = {}
    for path, type_ in columns:
        key = str(path[0])
        if len(path) == 1:
            leaves[key] = _read_type(type_)
        elif isinstance(path[1], int):
            leaves[key] = pa.list_(_read_type(type_))
        else:
            below.setdefault(key, []).append((path[1:], type_))
    return [*(pa.field(key, type_) for key, type_ in leaves.items()),
            *(pa.field(key, pa.struct(_fields(paths))) for key, paths in below.items())]


def _json_columns(columns: Iterable[Column]) -> list[Column]:
    """The columns whose values come from the JSON object itself."""
    return [c for c in columns if c.path and not c.from_activity]


READ_SCHEMA = pa.schema([
    *_fields((c.path, c.type) for c in _json_columns(ACTIVITY_COLUMNS)),
    *(pa.field(key, pa.list_(pa.struct(_fields((c.path, c.type) for c in _json_columns(COLUMNS[name])))))
      for name, key in CHILD_KEYS.items()),
])
_PARSE_OPTIONS = pj.ParseOptions(explicit_schema=READ_SCHEMA, unexpected_field_behavior="ignore")


# -- reading -------------------------------------------------------------------------------------------
def _read(raws: Sequence[bytes | memoryview], joined: bytes | bytearray) -> DetailRead:
    if b"\r" in joined or any(raw[:1] != b"{" for raw in raws) or _newline_within(joined, raws):
        # Pretty-printed (another writer), a BOM, or no object (`null`: no detail to build_tables, a row of
        # nulls to the reader): one object a line is what the reader needs.
        raise _Unsure
    _check_bytes(joined)
    # A block per core: more blocks cost each vectorised step below a call per block.
    block_bytes = max(len(joined) // available_cpus(), max(map(len, raws))) + 1
    options = pj.ReadOptions(use_threads=True, block_size=block_bytes)
    try:
        table = pj.read_json(pa.BufferReader(joined), read_options=options, parse_options=_PARSE_OPTIONS)
    except pa.ArrowException as error:  # a value of another kind than its column's, or no JSON object
        raise _Unsure from error
    if table.num_rows != len(raws):  # an empty file (the reader skips empty lines) or two objects in one
        raise _Unsure
    return DetailRead(table, _int_negative_zero_rows(joined, raws))


def _newline_within(joined: bytes | bytearray, raws: Sequence[bytes | memoryview]) -> bool:
    """Whether a file holds a newline (each looked for within its span of `joined`: a memchr each, where
    counting the chunk's newlines costs ten times more)."""
    start = 0
    for raw in raws:
        if joined.find(b"\n", start, start + len(raw)) >= 0:
            return True
        start += len(raw) + 1
    return False


def _int_negative_zero_rows(joined: bytes | bytearray, raws: Sequence[bytes | memoryview]) -> frozenset[int]:
    """The rows whose file holds something like an int `-0` (real details hold a float `-0.0` here and
    there: one search of the chunk costs less than one per such file)."""
    ends = list(accumulate(len(raw) + 1 for raw in raws))  # each row's end in `joined`, past its newline
    return frozenset(bisect_right(ends, match.start()) for match in _INT_NEGATIVE_ZERO.finditer(joined))


def _check_bytes(joined: bytes | bytearray) -> None:
    """Invalid UTF-8, which the reader takes but orjson refuses (so `parse_detail` has no detail)."""
    offsets = pa.array([0, len(joined)], type=pa.int64()).buffers()[1]
    try:  # `joined` as one string, without a copy, validated in C
        pa.Array.from_buffers(pa.large_string(), 1, [None, offsets, pa.py_buffer(joined)]).validate(full=True)
    except pa.ArrowInvalid as error:
        raise _Unsure from error


# -- columns -------------------------------------------------------------------------------------------
def _at(table: pa.Table, path: Path_) -> ColumnArray:
    """The column at a JSON path: null where any step is."""
    array = table.column(path[0])
    for step in path[1:]:
        if isinstance(step, int):
            long_enough = pc.greater(pc.list_value_length(array), step)
            array = pc.list_element(pc.if_else(long_enough, array, pa.scalar(None, array.type)), step)
        else:
            array = pc.struct_field(array, step)
    return array


def _typed(array: ColumnArray, type_: pa.DataType, read: DetailRead, rows: pa.Array | None = None) -> ColumnArray:
    """A column as read, in its table's type, as `to_array` converts the same values. `rows` holds each
    value's row in `read.table` (None: the column is the table's own)."""
    if type_ in (I64, F64):
        total = pc.sum(array).as_py()
        if total is not None and not math.isfinite(total):
            raise _Unsure  # a NaN or Infinity literal, which orjson refuses (or a sum beyond float64: rare)
    if type_ == I64:
        return _ints(array)
    if type_ == F64:
        if not read.int_negative_zero_rows:
            return array
        zeros = pc.indices_nonzero(pc.equal(array, 0.0))
        if len(zeros):
            negative = pc.filter(zeros, pc.less(pc.divide(1.0, array.take(zeros)), 0.0))
            if len(negative) and not read.int_negative_zero_rows.isdisjoint(
                    (negative if rows is None else rows.take(negative)).to_pylist()):
                raise _Unsure  # -0.0, from `-0.0` (kept) or from `-0` (0.0 by the rules)
        return array
    if pa.types.is_timestamp(type_):
        return parse_times(array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array, type_)
    return array


def _ints(array: ColumnArray) -> ColumnArray:
    """An int64 column from its values read as float64."""
    low, high = pc.min_max(array).values()
    if low.is_valid and max(-low.as_py(), high.as_py()) >= _EXACT_INT:
        raise _Unsure
    try:
        return array.cast(I64)  # a safe cast: refuses a fractional value
    except pa.ArrowInvalid:
        return to_array(array.to_pylist(), I64)


def _interleaved(activities: Sequence[RawActivity], export: Mapping[int, ExportPart] | None) -> bool:
    """Whether an activity without a detail takes child rows from the export's device file: build_tables
    interleaves those with the details' by activity."""
    parts = export_parts([activity_id for activity_id, _, _ in activities], export)
    return any(part.children for part, (_, _, raw) in zip(parts, activities) if raw is None)


def _read_tables(activities: Sequence[RawActivity], export: Mapping[int, ExportPart] | None,
                 read: DetailRead) -> dict[str, pa.Table]:
    if read.table is None or _interleaved(activities, export):
        raise _Unsure  # not read (or not to be), or device-file rows to interleave
    ids = [activity_id for activity_id, _, _ in activities]
    parts = export_parts(ids, export)
    has_detail = [raw is not None for _, _, raw in activities]
    table = read.table
    rows = iter(range(table.num_rows))
    # Each activity's row in `table` (null: no detail), to spread the detail columns over all activities.
    row_of = pa.array([next(rows) if detail else None for detail in has_detail], type=pa.int32())
    every_detail = all(has_detail)
    summaries = [s if isinstance(s, dict) else {} for _, s, _ in activities]
    summary_cache: ValueCache = {}

    def merged(column: Column) -> ColumnArray:
        from_detail = _typed(_at(table, column.path), column.type, read)
        if not every_detail:
            from_detail = from_detail.take(row_of)
        from_summary = values_at(summaries, column.path, summary_cache)
        there = list(map(is_not, from_summary, repeat(None)))
        if not any(there):
            return from_detail
        summary_array = to_array(from_summary, column.type)
        return summary_array if all(there) else pc.if_else(pa.array(there, type=BOOL), summary_array, from_detail)

    activity_arrays = activity_columns(ids, has_detail, parts, merged)
    tables = {"activities": pa.Table.from_arrays(list(activity_arrays.values()), schema=SCHEMAS["activities"])}
    with_detail = pc.indices_nonzero(row_of.is_valid())
    for name, key in CHILD_KEYS.items():
        lists = table.column(key)
        items = pc.list_flatten(lists)
        item_rows = pc.list_parent_indices(lists)  # each item's row in `table`
        if items.null_count:
            kept = pc.is_valid(items)
            items, item_rows = pc.filter(items, kept), pc.filter(item_rows, kept)
        parents = item_rows if every_detail else pc.take(with_detail, item_rows)
        fields = pa.Table.from_struct_array(items)
        tables[name] = child_table(
            name, activity_arrays, parents, pa.repeat(pa.scalar(API, STR), len(items)),
            lambda column: _typed(_at(fields, column.path), column.type, read, item_rows))  # noqa: B023
    return tables
