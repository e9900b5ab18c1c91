"""schema.build_streams' lat and lng from latlng points of any shape: each point's own elements, by the
coercion rules, whatever its neighbours (a point too short, or no list, anywhere in the stream)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bulkfetch.schema import F64, STREAM_COLUMNS, build_streams, coerce

numbers = st.one_of(st.floats(-90, 90), st.integers(-180, 180), st.none(), st.booleans(), st.text(max_size=2))
points = st.one_of(st.lists(numbers, max_size=3), st.none(), st.sampled_from([5, 2.5, "ab", "", {"0": 1}, True]))


def element(point: Any, step: int) -> Any:
    return coerce(point[step], F64) if type(point) is list and len(point) > step else None


@settings(max_examples=200, deadline=None)
@given(st.lists(points, min_size=1, max_size=20), st.booleans())
def test_lat_and_lng_are_each_points_elements(latlng, lists_only):
    if lists_only:  # every point a list (Strava's usual stream)
        latlng = [p if type(p) is list else [] for p in latlng]
    rows = build_streams(3, "2020-01-01T00:00:00Z", "Run", {"latlng": {"data": latlng}}).to_pylist()
    assert [(r["lat"], r["lng"]) for r in rows] == [(element(p, 0), element(p, 1)) for p in latlng]


scalars = st.one_of(st.integers(-2**64, 2**64), st.floats(allow_nan=True, allow_infinity=True), st.none(),
                    st.booleans(), st.text(max_size=2), st.sampled_from([0.0, -0.0, 3.0, 2**53 + 1, [1], {}]))


@settings(max_examples=300, deadline=None)
@given(st.lists(scalars, min_size=1, max_size=20), st.sampled_from(["time", "heartrate", "distance", "altitude"]))
def test_number_streams_are_each_values_coercion(values, kind):
    """The fast paths (an int stream summed, a float stream looked at for bools only) give what coercing
    each value gives, whatever else the stream holds."""
    column = next(c for c in STREAM_COLUMNS if c.name == kind)
    got = [r[kind] for r in build_streams(3, "2020-01-01T00:00:00Z", "Run", {kind: {"data": values}}).to_pylist()]
    expected = [coerce(v, column.type) for v in values]
    assert len(got) == len(expected) and all(a == b or a != a and b != b for a, b in zip(got, expected))  # nan: nan
