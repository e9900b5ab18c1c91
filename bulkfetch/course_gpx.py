"""A race course from a GPX file, as bulkfetch.pace.predict takes it: (distance m, elevation difference m)
every pace.SEGMENT_M along the course. Pure: the file's text in, no I/O.

A course file usually comes from a route planner, without times, which is why this is not
xml_decode.decode_xml (a recorded activity: it skips points without a time). The points are the file's
track points (`trkpt`), or its route points (`rtept`) in a file without a track, matched by local name
(GPX 1.0 and 1.1); distance is the great-circle distance between consecutive points (as for a recorded
GPX, distance.great_circle_steps) and points without an elevation count for the distance only.
The standard library's expat refuses entity expansion bombs, so a hostile file fails as bad XML.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from bulkfetch.distance import great_circle_steps
from bulkfetch.pace import SEGMENT_M, cut_every
from bulkfetch.xml_decode import local_name, text_float

POINT_NAMES = ("trkpt", "rtept")


def course_from_gpx(text: str, name: str = "GPX file") -> list[tuple[float, float]]:
    """The course of a GPX document `text` (`name` says which file in errors): ValueError, one line, for
    anything that is not a GPX course with at least two points with elevations."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ValueError(f"{name} is not XML ({exc})") from None
    if local_name(root.tag) != "gpx":
        raise ValueError(f"{name} is not a GPX file (its root is <{local_name(root.tag)}>)")
    points = next((found for found in (_points(root, kind) for kind in POINT_NAMES) if found), [])
    steps = great_circle_steps([lat for lat, _, _ in points], [lon for _, lon, _ in points])
    readings, done_m = [], 0.0
    for (_, _, elevation), step_m in zip(points, [0.0, *steps]):
        done_m += step_m
        if elevation is not None and (not readings or done_m > readings[-1][0]):
            readings.append((done_m, 0.0, elevation))
    course = [(distance_m, rise_m) for distance_m, _, rise_m in cut_every(readings, SEGMENT_M)]
    if not course:
        raise ValueError(f"{name} has fewer than two track or route points with an elevation (<ele>)")
    return course


def _points(root: ET.Element, kind: str) -> list[tuple[float, float, float | None]]:
    """(lat, lon, elevation or None) of every `kind` element with a position, in document order."""
    out = []
    for element in root.iter():
        if local_name(element.tag) != kind:
            continue
        lat, lon = text_float(element.get("lat")), text_float(element.get("lon"))
        if lat is None or lon is None:
            continue
        elevation = next((text_float(child.text) for child in element if local_name(child.tag) == "ele"), None)
        out.append((lat, lon, elevation))
    return out
