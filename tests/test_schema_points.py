"""schema.build_streams' lat and lng from latlng points of any shape: each point's own elements, by the
coercion rules, whatever its neighbours (a point too short, or no list, anywhere in the stream)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bulkfetch.schema import F64, build_streams, coerce

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
