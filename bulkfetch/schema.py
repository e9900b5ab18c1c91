"""Strava JSON -> Arrow: the explicit schema of every Parquet table and the pure code that fills it.

No I/O here. `build_tables` turns activities (list summary + detail, both parsed JSON) into one Arrow
table per name in TABLES, column by column: each column is pulled out of the dicts with one list
comprehension and converted by one `pa.array` call, with no per-row dicts in between. Compaction builds
the same tables from the detail files' bytes by Arrow's JSON reader where it can (bulkfetch.arrow_details,
which shares `activity_columns` and `child_table` with it), and by `build_tables` where it cannot.

The schemas are fixed here, never inferred from the data: a field Strava omits is null, a field Strava
adds is ignored (the raw JSON keeps it), and changing a column is a deliberate act that bumps
SCHEMA_VERSION, which makes the next compaction rebuild every partition by itself.

Coercion, the same for every value whatever its neighbours (see `coerce`):
- int64: ints as they are; a float with an integral value becomes that int (314.0 -> 314); a fractional
  float is rounded half to even (Python's `round`); bool, text, nan/inf or outside int64 -> null.
- float64: ints and floats as floats; bool and text -> null.
- bool: only true/false; anything else (0, 1, "true") -> null.
- string: text as it is; an int or float becomes its decimal text (JSON's form); anything else -> null.
- start_date (timestamp[us, UTC]): ISO 8601 text with a zone offset (Strava sends `Z`), converted to
  UTC; text without an offset or that does not parse -> null.
- start_date_local (naive timestamp[us]): Strava's local wall-clock time. It carries a misleading `Z`,
  so any zone marker is dropped, never applied; text that does not parse -> null.
- A missing key, a null, or a value of a wrong kind in a nested path (a list where an object belongs)
  -> null.

No table has an `athlete_id` column: the athlete's id is in the partition folders' names (see
bulkfetch.parquet_layout), which readers turn into that column.

An activity row takes each field from the list summary (the newest copy: it is re-listed on every
fetch) and, where the summary lacks it or has null, from the detail. Split, lap and effort rows come
from the detail only; their `activity_id` is the id of the activity they were stored under.

`streams` is in long form, one row per point: `build_streams` turns one StreamSet (as
`GET /activities/{id}/streams?key_by_type=true` answers it) into rows `seq` 0..n-1, one column per
stream type (latlng as `lat`, `lng`), plus the activity's `start_date` and `sport_type`. A point that
is null inside a stream stays null; a stream shorter than the longest is padded with nulls; a type the
activity lacks is a null column.

`source` says where a row came from: `activities` rows from the API ("api") or, for an activity only the
athlete's account export knows, from its activities.csv ("csv"); `streams`, `splits_metric`,
`splits_standard` and `laps` rows from the API ("api") or derived from the export's device file ("file",
see bulkfetch.file_rows). One activity's rows of one table all have the same source.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import itemgetter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

# 2: the streams table; 3: `athlete_id` left the files for the folder names (bulkfetch.parquet_layout);
# 4: the `source` column, and rows from the account export
SCHEMA_VERSION = 4
# Every table's schema metadata says its SCHEMA_VERSION under this key, so every partition file does too
# (bulkfetch.parquet_layout reads it to tell files of an older version).
SCHEMA_VERSION_KEY = b"bulkfetch.schema_version"

# Tables built from list summaries and details (`build_tables`), then the one built from streams.
DETAIL_TABLES = ("activities", "splits_metric", "splits_standard", "laps", "best_efforts", "segment_efforts")
STREAMS = "streams"
TABLES = (*DETAIL_TABLES, STREAMS)

I64 = pa.int64()
F64 = pa.float64()
BOOL = pa.bool_()
STR = pa.string()
UTC_TIME = pa.timestamp("us", tz="UTC")
LOCAL_TIME = pa.timestamp("us")

Path_ = tuple[str | int, ...]

# The values of the `source` column.
API = "api"
CSV = "csv"
FILE = "file"


@dataclass(frozen=True)
class Column:
    """One Parquet column: its name, Arrow type and where its value sits in the JSON object.

    `path` steps through objects by key and through lists by index (`("start_latlng", 0)`).
    `from_activity` columns of a child table (a split's `start_date`) come from the activity's row.
    """

    name: str
    type: pa.DataType
    path: Path_
    from_activity: bool = False


def _cols(type_: pa.DataType, *names: str) -> list[Column]:
    return [Column(name, type_, (name,)) for name in names]


def _nested(type_: pa.DataType, prefix: str, *keys: str) -> list[Column]:
    return [Column(f"{prefix}_{key}", type_, (prefix, key)) for key in keys]


ACTIVITY_COLUMNS: tuple[Column, ...] = (
    Column("id", I64, ("id",)),
    Column("has_detail", BOOL, ()),  # filled by build_tables: was a detail file there?
    Column("source", STR, ()),  # filled by build_tables: API or CSV
    *_cols(STR, "name", "sport_type", "type"),
    *_cols(I64, "workout_type"),
    Column("start_date", UTC_TIME, ("start_date",)),
    Column("start_date_local", LOCAL_TIME, ("start_date_local",)),
    *_cols(STR, "timezone"),
    *_cols(F64, "utc_offset", "distance"),
    *_cols(I64, "moving_time", "elapsed_time"),
    *_cols(F64, "total_elevation_gain", "elev_high", "elev_low", "average_speed", "max_speed"),
    *_cols(BOOL, "has_heartrate"),
    *_cols(F64, "average_heartrate", "max_heartrate", "average_cadence", "average_temp", "average_watts"),
    *_cols(I64, "weighted_average_watts", "max_watts"),
    *_cols(F64, "kilojoules"),
    *_cols(BOOL, "device_watts"),
    *_cols(F64, "calories", "suffer_score", "perceived_exertion"),
    *_cols(BOOL, "prefer_perceived_exertion", "heartrate_opt_out", "display_hide_heartrate_option"),
    *_cols(STR, "description", "device_name", "gear_id"),
    Column("gear_name", STR, ("gear", "name")),
    *_cols(BOOL, "trainer", "commute", "manual", "private", "flagged", "hide_from_home",
           "from_accepted_tag", "has_kudoed"),
    *_cols(STR, "visibility"),
    *_cols(I64, "achievement_count", "kudos_count", "comment_count", "athlete_count", "photo_count",
           "total_photo_count", "pr_count"),
    Column("start_lat", F64, ("start_latlng", 0)),
    Column("start_lng", F64, ("start_latlng", 1)),
    Column("end_lat", F64, ("end_latlng", 0)),
    Column("end_lng", F64, ("end_latlng", 1)),
    *_cols(STR, "location_city", "location_state", "location_country"),
    *_nested(STR, "map", "id", "summary_polyline", "polyline"),
    *_cols(STR, "external_id"),
    *_cols(I64, "upload_id"),
    *_cols(STR, "upload_id_str"),
)

_ACTIVITY_ID = Column("activity_id", I64, ("id",), from_activity=True)

SPLIT_COLUMNS: tuple[Column, ...] = (
    _ACTIVITY_ID,
    Column("start_date", UTC_TIME, ("start_date",), from_activity=True),
    Column("sport_type", STR, ("sport_type",), from_activity=True),
    *_cols(I64, "split"),
    *_cols(F64, "distance"),
    *_cols(I64, "elapsed_time", "moving_time"),
    *_cols(F64, "elevation_difference", "average_speed", "average_grade_adjusted_speed", "average_heartrate"),
    *_cols(I64, "pace_zone"),
    Column("source", STR, ()),  # filled by build_tables: API or FILE
)

_EFFORT_HEAD: tuple[Column, ...] = (
    Column("id", I64, ("id",)),
    _ACTIVITY_ID,
    *_cols(STR, "name"),
    Column("start_date", UTC_TIME, ("start_date",)),
    Column("start_date_local", LOCAL_TIME, ("start_date_local",)),
    *_cols(I64, "elapsed_time", "moving_time"),
    *_cols(F64, "distance"),
    *_cols(I64, "start_index", "end_index"),
)

LAP_COLUMNS: tuple[Column, ...] = (
    *_EFFORT_HEAD,
    *_cols(I64, "lap_index", "split"),
    *_cols(F64, "total_elevation_gain", "average_speed", "max_speed", "average_cadence", "average_watts"),
    *_cols(BOOL, "device_watts"),
    *_cols(F64, "average_heartrate", "max_heartrate"),
    *_cols(I64, "pace_zone"),
    Column("source", STR, ()),  # filled by build_tables: API or FILE
)

BEST_EFFORT_COLUMNS: tuple[Column, ...] = (
    *_EFFORT_HEAD,
    *_cols(I64, "pr_rank"),
)

SEGMENT_EFFORT_COLUMNS: tuple[Column, ...] = (
    *_EFFORT_HEAD,
    *_cols(F64, "average_cadence", "average_watts"),
    *_cols(BOOL, "device_watts"),
    *_cols(F64, "average_heartrate", "max_heartrate"),
    *_cols(I64, "pr_rank", "kom_rank"),
    *_cols(BOOL, "hidden"),
    *_cols(STR, "visibility"),
    Column("segment_id", I64, ("segment", "id")),
    *_nested(STR, "segment", "name", "activity_type"),
    *_nested(F64, "segment", "distance", "average_grade", "maximum_grade", "elevation_high", "elevation_low"),
    Column("segment_climb_category", I64, ("segment", "climb_category")),
    *_nested(STR, "segment", "city", "state", "country"),
    *_nested(BOOL, "segment", "private", "hazardous"),
)

# One row per point. `path` is (stream type, index inside the point) for latlng, else (stream type,).
STREAM_COLUMNS: tuple[Column, ...] = (
    Column("activity_id", I64, ()),
    Column("seq", I64, ()),
    Column("start_date", UTC_TIME, ("start_date",), from_activity=True),
    Column("sport_type", STR, ("sport_type",), from_activity=True),
    Column("time", I64, ("time",)),
    Column("distance", F64, ("distance",)),
    Column("lat", F64, ("latlng", 0)),
    Column("lng", F64, ("latlng", 1)),
    Column("altitude", F64, ("altitude",)),
    Column("velocity_smooth", F64, ("velocity_smooth",)),
    Column("grade_smooth", F64, ("grade_smooth",)),
    Column("heartrate", I64, ("heartrate",)),
    Column("cadence", I64, ("cadence",)),
    Column("watts", I64, ("watts",)),
    Column("temp", I64, ("temp",)),
    Column("moving", BOOL, ("moving",)),
    Column("source", STR, ()),  # filled by build_streams: API or FILE
)
# The stream types those columns come from (config.STREAM_TYPES names the same eleven).
STREAM_KEYS = frozenset(c.path[0] for c in STREAM_COLUMNS if c.path and not c.from_activity)

COLUMNS: dict[str, tuple[Column, ...]] = {
    "activities": ACTIVITY_COLUMNS,
    "splits_metric": SPLIT_COLUMNS,
    "splits_standard": SPLIT_COLUMNS,
    "laps": LAP_COLUMNS,
    "best_efforts": BEST_EFFORT_COLUMNS,
    "segment_efforts": SEGMENT_EFFORT_COLUMNS,
    STREAMS: STREAM_COLUMNS,
}

# The key of each child table's list inside DetailedActivity (all of them are named like the table).
CHILD_KEYS = {name: name for name in DETAIL_TABLES if name != "activities"}

_METADATA = {SCHEMA_VERSION_KEY: str(SCHEMA_VERSION).encode()}
SCHEMAS: dict[str, pa.Schema] = {
    name: pa.schema([pa.field(c.name, c.type) for c in columns], metadata=_METADATA)
    for name, columns in COLUMNS.items()
}


# -- coercion ------------------------------------------------------------------------------------------
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def coerce(value: Any, type_: pa.DataType) -> Any:
    """One JSON value as the Python value of a column of `type_` (or None), per the module's rules.

    Timestamp columns take text only here; parsing it is `to_array`'s job.
    """
    kind = type(value)
    if value is None or kind is bool and type_ != BOOL:
        return None
    if type_ == I64:
        if kind is int:
            return value if _INT64_MIN <= value <= _INT64_MAX else None
        if kind is float and math.isfinite(value):
            rounded = round(value)
            return rounded if _INT64_MIN <= rounded <= _INT64_MAX else None
        return None
    if type_ == F64:
        if kind is float:
            return value
        if kind is int:
            try:
                return float(value)
            except OverflowError:
                return None
        return None
    if type_ == BOOL:
        return value if kind is bool else None
    if type_ == STR:
        if kind is str:
            return value
        return repr(value) if kind is float else str(value) if kind is int else None
    if pa.types.is_timestamp(type_):
        return value if kind is str else None
    raise TypeError(f"no coercion rule for {type_}")


# The Python kinds `pa.array(values, type=...)` converts exactly as `coerce` does, for the number columns:
# it converts some others wrongly (3.5 -> int 3, true -> 1.0). Text, bool and timestamp (text) columns need
# no such list: Arrow refuses every kind but theirs, which `coerce` takes as it is.
_NONE = type(None)
_NUMBER_KINDS: dict[pa.DataType, frozenset[type]] = {
    I64: frozenset((int, _NONE)),
    F64: frozenset((float, int, _NONE)),
}
_ZONE_SUFFIX = r"(Z|z|[+-]\d\d(:?\d\d)?)$"


def to_array(values: Sequence[Any], type_: pa.DataType) -> pa.Array:
    """A column of `type_` from JSON values, equal to coercing each value with `coerce` (then parsing).

    Fast path: Arrow converts the list in C with the column's type given, once a number column's values
    are known to be of kinds it converts exactly (one C pass over their types). Never by Arrow's type
    inference: pyarrow tries to import optional modules (dateutil, pandas) on each inferring call, which
    costs more than the conversion where they are not installed. A column with a stray value (a float
    among ints, a bool, text in a number, a number in text, an int beyond int64 or beyond what a double
    holds exactly) goes value by value.
    """
    target = STR if pa.types.is_timestamp(type_) else type_
    array = None
    kinds = _NUMBER_KINDS.get(type_)
    if kinds is None or set(map(type, values)) <= kinds:
        try:
            array = pa.array(values, type=target)
        except (pa.ArrowException, OverflowError):  # int64 overflow; an int beyond 2**53 into float64
            pass
    if array is None:
        array = pa.array([coerce(v, type_) for v in values], type=target)
    return parse_times(array, type_) if pa.types.is_timestamp(type_) else array


def parse_times(text: pa.Array, type_: pa.DataType) -> pa.Array:
    """A timestamp column of `type_` from its text, per the module's rules (null where it does not parse)."""
    if type_.tz is None:
        text = pc.replace_substring_regex(text, pattern=_ZONE_SUFFIX, replacement="")
    return _cast_or_null(text, type_)


def _cast_or_null(array: pa.Array, type_: pa.DataType) -> pa.Array:
    """Cast text to timestamps; a value Arrow cannot parse becomes null (found by halving, so a clean
    column costs one cast and each bad value about log2(n) more)."""
    try:
        return array.cast(type_)
    except pa.ArrowException:
        if len(array) <= 1:
            return pa.nulls(len(array), type_)
        half = len(array) // 2
        return pa.concat_arrays([_cast_or_null(array[:half], type_), _cast_or_null(array[half:], type_)])


# -- extraction ----------------------------------------------------------------------------------------
_EMPTY: dict[str, Any] = {}
_GET = dict.get
# `values_at`' levels by (path, whether non-objects are replaced by empty ones)
ValueCache = dict[tuple[Path_, bool], list[Any]]


def values_at(rows: Sequence[dict[str, Any]], path: Path_, cache: ValueCache) -> list[Any]:
    """The value at `path` in each row (rows are dicts); None where any step is missing or of a wrong kind.

    `cache` keeps the top levels, so twelve `segment.*` columns look up `segment` once.
    """
    level = cache.get((path, False))
    if level is not None:
        return level
    if len(path) == 1:
        level = cache[path, False] = list(map(_GET, rows, repeat(path[0])))  # a C loop: no bytecode per row
        return level
    step = path[-1]
    if isinstance(step, int):
        return [v[step] if type(v) is list and len(v) > step else None for v in values_at(rows, path[:-1], cache)]
    return list(map(_GET, _objects(rows, path[:-1], cache), repeat(step)))


def _pull_rowwise(rows: Sequence[dict[str, Any]], paths: Sequence[Path_], cache: ValueCache) -> None:
    """Put the columns of `paths` one or two keys deep into `cache`, as `values_at` would make them, but each
    dict visited once for all its columns (one itemgetter call, then one transpose), not once per column:
    ~30 columns walking ~14,000 dicts of a chunk each, out of the CPU's cache, cost about 20% more."""
    _pull_level(rows, (), [path[0] for path in paths], cache)
    for prefix in dict.fromkeys(path[:1] for path in paths if len(path) == 2):
        _pull_level(_objects(rows, prefix, cache), prefix,
                    [path[1] for path in paths if len(path) == 2 and path[:1] == prefix], cache)


# `_pull_level` gives up after this many keys that some rows lack (each try costs a pass over the rows).
_PULL_TRIES = 3


def _pull_level(objects: Sequence[dict[str, Any]], prefix: Path_, keys: Sequence[str | int], cache: ValueCache) -> None:
    """The columns of `keys` below `prefix`, for the keys the first object has. A key another object lacks
    is left out, and left to `values_at`, as are the rest if more than _PULL_TRIES are lacking somewhere."""
    present = [key for key in dict.fromkeys(keys) if type(key) is str and objects and key in objects[0]]
    for _ in range(_PULL_TRIES):
        if len(present) < 2:  # itemgetter of one key gives no tuple; `values_at` does as well there
            return
        try:
            columns = zip(*map(itemgetter(*present), objects))
        except KeyError as lacking:
            present.remove(lacking.args[0])
            continue
        for key, column in zip(present, columns):
            cache[(*prefix, key), False] = list(column)
        return


def _objects(rows: Sequence[dict[str, Any]], path: Path_, cache: ValueCache) -> list[dict[str, Any]]:
    """The value at `path` in each row where it is an object, else an empty one (kept in `cache`): each
    key below it is then one C loop (`values_at`), not a Python loop per key."""
    objects = cache.get((path, True))
    if objects is None:
        objects = cache[path, True] = [v if type(v) is dict else _EMPTY for v in values_at(rows, path, cache)]
    return objects


ActivityInput = tuple[int, Mapping[str, Any] | None, Mapping[str, Any] | None]


@dataclass(frozen=True)
class ExportPart:
    """What one activity's rows take from the athlete's account export (see bulkfetch.file_rows)."""

    summary_from_csv: bool = False  # the summary given is the export's activities.csv row, not a list item
    # Child-table items derived from its device file, by table name (splits_metric, splits_standard,
    # laps): used only while the activity has no detail, whose own items replace them.
    children: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)


def build_tables(activities: Sequence[ActivityInput],
                 export: Mapping[int, ExportPart] | None = None) -> dict[str, pa.Table]:
    """One Arrow table per name in DETAIL_TABLES from `(id, summary, detail)` triples, in the order given.

    `summary` is the list item (None if the activity was never listed; the CSV row of an activity only
    the export knows), `detail` the DetailedActivity (None if it was not fetched). `export` holds, by id,
    what the activities take from the account export. Tables without rows are returned empty, with
    their schema.
    """
    ids = [activity_id for activity_id, _, _ in activities]
    parts = export_parts(ids, export)
    summaries = [s if isinstance(s, dict) else _EMPTY for _, s, _ in activities]
    details = [d if isinstance(d, dict) else _EMPTY for _, _, d in activities]
    has_detail = [isinstance(d, dict) for _, _, d in activities]

    summary_cache: ValueCache = {}
    detail_cache: ValueCache = {}

    def merged(column: Column) -> pa.Array:
        from_summary = values_at(summaries, column.path, summary_cache)
        from_detail = values_at(details, column.path, detail_cache)
        return to_array([s if s is not None else d for s, d in zip(from_summary, from_detail)], column.type)

    activity_arrays = activity_columns(ids, has_detail, parts, merged)
    tables = {"activities": pa.Table.from_arrays(list(activity_arrays.values()), schema=SCHEMAS["activities"])}
    for name, key in CHILD_KEYS.items():
        children: list[dict[str, Any]] = []
        cache: ValueCache = {}
        parents: list[int] = []
        sources: list[str] = []
        for index, (detail, part) in enumerate(zip(details, parts)):
            # The detail's items (even none) replace the file's: one source per activity and table.
            items, source = (detail.get(key), API) if has_detail[index] else (part.children.get(key), FILE)
            if type(items) is list and items:
                kept = [item for item in items if type(item) is dict]
                children.extend(kept)
                parents.extend([index] * len(kept))
                sources.extend([source] * len(kept))
        _pull_rowwise(children, [c.path for c in COLUMNS[name] if not c.from_activity and c.name != "source"], cache)
        tables[name] = child_table(
            name, activity_arrays, pa.array(parents, type=pa.int32()), pa.array(sources, type=STR),
            lambda column: to_array(values_at(children, column.path, cache), column.type) if children  # noqa: B023
            else pa.array([], type=column.type))
    return tables


def export_parts(ids: Sequence[int], export: Mapping[int, ExportPart] | None) -> list[ExportPart]:
    """Each activity's ExportPart, in order (an empty one where the export gives it nothing)."""
    export = export or {}
    return [export.get(activity_id) or _NO_EXPORT for activity_id in ids]


ColumnArray = pa.Array | pa.ChunkedArray


def activity_columns(ids: Sequence[int], has_detail: Sequence[bool], parts: Sequence[ExportPart],
                     merged: Callable[[Column], ColumnArray]) -> dict[str, ColumnArray]:
    """The `activities` table's arrays by column name: `merged` gives each column taken from the JSON
    (the summary's value, else the detail's); the rest are filled here."""
    arrays: dict[str, ColumnArray] = {}
    for column in ACTIVITY_COLUMNS:
        if column.name == "id":
            arrays["id"] = pa.array(ids, type=I64)
        elif column.name == "has_detail":
            arrays["has_detail"] = pa.array(has_detail, type=BOOL)
        elif column.name == "source":
            arrays["source"] = pa.array([CSV if part.summary_from_csv else API for part in parts], type=STR)
        else:
            arrays[column.name] = merged(column)
    return arrays


def child_table(name: str, activity_arrays: Mapping[str, ColumnArray], parent_index: pa.Array,
                sources: ColumnArray, item_column: Callable[[Column], ColumnArray]) -> pa.Table:
    """Child table `name` from its items' columns (`item_column`), each item's activity (`parent_index`,
    positions in `activity_arrays`) and source."""
    arrays = []
    for column in COLUMNS[name]:
        if column.from_activity:
            arrays.append(activity_arrays[column.path[0]].take(parent_index))
        elif column.name == "source":
            arrays.append(sources)
        else:
            arrays.append(item_column(column))
    return pa.Table.from_arrays(arrays, schema=SCHEMAS[name])


_NO_EXPORT = ExportPart()


def stream_series(stream_set: Any) -> dict[str, list[Any]]:
    """The `data` list of each stream type in a StreamSet, keyed by type.

    Takes both shapes Strava answers: keyed by type (`{"time": {"data": [...]}, ...}`, key_by_type=true)
    and a list of streams each naming its `type`. Anything that is not a list of points is left out.
    """
    if isinstance(stream_set, list):
        stream_set = {s.get("type"): s for s in stream_set if isinstance(s, dict)}
    if not isinstance(stream_set, dict):
        return {}
    series = {}
    for kind, stream in stream_set.items():
        data = stream.get("data") if isinstance(stream, dict) else None
        if isinstance(kind, str) and type(data) is list:
            series[kind] = data
    return series


def build_streams(activity_id: int, start_date: Any, sport_type: Any, stream_set: Any, source: str = API) -> pa.Table:
    """The `streams` rows of one activity: one per point, `seq` 0..n-1, n the longest stream's length.

    `start_date` and `sport_type` are the activity row's values (Arrow scalars or Python values);
    `source` is API for a StreamSet Strava sent, FILE for one derived from the export's device file.
    Values follow the module's coercion rules; a null point, a missing stream or a point past the end
    of a shorter stream is null.
    """
    series = stream_series(stream_set)
    length = max((len(data) for kind, data in series.items() if kind in STREAM_KEYS), default=0)
    points = {kind: _padded(data, length) for kind, data in series.items() if kind in STREAM_KEYS}
    latlng = _lat_and_lng(points["latlng"]) if "latlng" in points else None
    arrays: list[pa.Array] = []
    for column in STREAM_COLUMNS:
        if column.name == "activity_id":
            arrays.append(_repeat(activity_id, length, I64))
        elif column.name == "seq":
            arrays.append(_sequence(length))
        elif column.name == "source":
            arrays.append(_repeat(source, length, STR))
        elif column.from_activity:
            value = start_date if column.name == "start_date" else sport_type
            if isinstance(value, pa.Scalar):
                value = value.cast(column.type) if value.is_valid else None
            arrays.append(_repeat(value, length, column.type))
        elif column.path[0] not in points:
            arrays.append(pa.nulls(length, column.type))
        elif latlng is not None and len(column.path) > 1:
            arrays.append(latlng[column.path[1]])
        else:
            arrays.append(_series_array(points[column.path[0]], column.type))
    return pa.Table.from_arrays(arrays, schema=SCHEMAS[STREAMS])


def _padded(data: list[Any], length: int) -> list[Any]:
    return data if len(data) >= length else [*data, *([None] * (length - len(data)))]


_BOOL_KIND = frozenset((bool,))


def _series_array(values: list[Any], type_: pa.DataType) -> pa.Array:
    """`to_array` for a stream's thousands of values, cheaper where a stream is what Strava sends.

    Arrow converts a number column exactly, with its type given, but for a float in an int column (3.5
    -> 3) and a bool in a float column (true -> 1.0); it refuses text, objects, a bool in an int column
    and ints beyond what the type holds (then `to_array` goes value by value). So an int column is only
    summed first (a C loop of integer adds: a float makes the sum a float), about half the cost of
    `to_array`'s look at every value's kind; a float column is only looked at for bools.
    """
    if type_ == I64 and _only_ints(values) or type_ == F64 and _BOOL_KIND.isdisjoint(map(type, values)):
        try:
            return pa.array(values, type=type_)
        except (pa.ArrowException, OverflowError):
            pass
    return to_array(values, type_)


def _only_ints(values: list[Any]) -> bool:
    """Whether `values` hold no float but maybe 0.0 (which Arrow converts to 0, as `coerce` does)."""
    try:
        return type(sum(filter(None, values))) is int
    except TypeError:  # text, a list, an object: left to `to_array`
        return False


_LAT_LNG = pa.list_(F64)


def _lat_and_lng(points: list[Any]) -> tuple[pa.Array, pa.Array]:
    """The lat and lng columns of latlng's points (each [lat, lng], or null): split in C where every
    point is what Strava sends (see `_pairs`), else point by point."""
    pairs = _pairs(points)
    if pairs is None:
        return to_array(_elements(points, 0), F64), to_array(_elements(points, 1), F64)
    # Each point's first element's index in the flat values, null where the point is null (the list
    # array's own validity and offsets): two `take`s, a tenth of the cost of two `list_element`s.
    starts = pa.Array.from_buffers(pa.int32(), len(pairs), pairs.buffers()[:2], offset=pairs.offset)
    return pc.take(pairs.values, starts), pc.take(pairs.values, pc.add(starts, 1))


def _pairs(points: list[Any]) -> pa.ListArray | None:
    """latlng's points as one Arrow list column, or None unless each is null or a list of at least two
    numbers (then they go point by point). Arrow refuses a point that is no list or holds text or an
    int beyond what a double holds exactly; a bool, which it would take as 1.0 or 0.0, is looked for in
    one pass over the elements."""
    try:
        pairs = pa.array(points, type=_LAT_LNG)
    except (pa.ArrowException, OverflowError):
        return None
    shortest = pc.min(pc.list_value_length(pairs)).as_py()  # None: every point is null
    if shortest is not None and shortest < 2 \
            or not _BOOL_KIND.isdisjoint(map(type, chain.from_iterable(filter(None, points)))):
        return None
    return pairs


def _sequence(length: int) -> pa.Array:
    """0..length-1 as int64, computed in C (`pa.array(range(...))` walks a Python range: ~15x slower)."""
    return pc.subtract(pc.cumulative_sum(pa.repeat(pa.scalar(1, I64), length)), pa.scalar(1, I64))


_NO_POINT = (None, None)  # what a point that is no list gives: None as each element (latlng has two)


def _elements(points: list[Any], step: int) -> list[Any]:
    """Element `step` of each point (latlng's [lat, lng]); None where the point is no list that long.

    One light pass and one C loop (`itemgetter`) where every list is long enough; else point by point.
    """
    lists = [p if type(p) is list else _NO_POINT for p in points]
    try:
        return list(map(itemgetter(step), lists))
    except IndexError:  # a list too short
        return [p[step] if type(p) is list and len(p) > step else None for p in points]


def _repeat(value: Any, length: int, type_: pa.DataType) -> pa.Array:
    if value is None:
        return pa.nulls(length, type_)
    if isinstance(value, pa.Scalar):
        return pa.repeat(value, length)
    if pa.types.is_timestamp(type_):
        return pa.repeat(to_array([value], type_)[0], length)
    return pa.repeat(pa.scalar(coerce(value, type_), type=type_), length)


def utc_years(start_dates: Sequence[Any]) -> list[int | None]:
    """The UTC calendar year of each `start_date` value, parsed as the `start_date` column parses it."""
    return pc.year(to_array(start_dates, UTC_TIME)).to_pylist()
