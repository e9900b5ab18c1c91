"""bulkfetch.course_gpx: a race course from a GPX file (tests/fixtures_files/hike.gpx, see its SOURCES.md),
cut every 100 m for bulkfetch.pace.predict."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from bulkfetch import pace
from bulkfetch.course_gpx import course_from_gpx

FILES = Path(__file__).parent / "fixtures_files"
ROUTE = """<?xml version="1.0"?>
<gpx version="1.1" creator="planner" xmlns="http://www.topografix.com/GPX/1/1"><rte>
<rtept lat="46.0" lon="13.0"><ele>10</ele></rtept>
<rtept lat="46.001" lon="13.0"><ele>20</ele></rtept>
<rtept lat="46.0015" lon="13.0"/>
<rtept lat="46.002" lon="13.0"><ele>15</ele></rtept>
</rte></gpx>"""


def _metres(lat0: float, lat1: float) -> float:
    """Along a meridian: the arc on the mean earth sphere."""
    return math.radians(abs(lat1 - lat0)) * 6_371_008.8


def test_a_recorded_track_is_cut_every_100_m_and_keeps_its_distance_and_climb() -> None:
    text = (FILES / "hike.gpx").read_text()
    points = [(float(lat), float(lon)) for lat, lon in re.findall(r'<trkpt lat="([^"]+)" lon="([^"]+)"', text)]
    elevations = [float(e) for e in re.findall(r"<ele>([^<]+)</ele>", text)]
    course = course_from_gpx(text)
    assert all(d == pytest.approx(pace.SEGMENT_M) for d, _ in course[:-1]) and 0 < course[-1][0] <= pace.SEGMENT_M
    # Distance: great circles between consecutive points (an equirectangular step is close enough here).
    expected_m = sum(6_371_008.8 * math.hypot(math.radians(b[0] - a[0]),
                                              math.radians(b[1] - a[1]) * math.cos(math.radians(a[0])))
                     for a, b in zip(points, points[1:]))
    assert sum(d for d, _ in course) == pytest.approx(expected_m, rel=1e-4)
    assert sum(r for _, r in course) == pytest.approx(elevations[-1] - elevations[0])


def test_a_route_without_times_and_a_point_without_elevation() -> None:
    course = course_from_gpx(ROUTE)
    step_m = _metres(46.0, 46.001)  # ~111 m
    assert [d for d, _ in course] == [pytest.approx(100.0), pytest.approx(100.0), pytest.approx(2 * step_m - 200)]
    # Elevation interpolated along the distance between the points that have one (the third has none).
    assert course[0][1] == pytest.approx(10 * 100 / step_m)
    assert sum(r for _, r in course) == pytest.approx(5.0)


@pytest.mark.parametrize(("text", "reason"), [
    ("not xml <", "is not XML"),
    ("<tcx/>", "is not a GPX file"),
    ('<gpx><trk><trkseg><trkpt lat="1" lon="2"/><trkpt lat="1.1" lon="2"/></trkseg></trk></gpx>', "elevation"),
    ('<gpx><trk><trkseg><trkpt lat="x" lon="2"><ele>3</ele></trkpt></trkseg></trk></gpx>', "fewer than two"),
])
def test_what_is_not_a_course_fails_in_one_line(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as error:
        course_from_gpx(text, "course.gpx")
    assert "\n" not in str(error.value) and "course.gpx" in str(error.value)
