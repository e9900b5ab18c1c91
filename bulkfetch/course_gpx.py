"""A race course from a GPX file, for `bulkfetch report --predict course.gpx` (issue 15).

A course file from a route planner has positions and elevations but usually no times, which the export
decoder (bulkfetch.xml_decode) requires of a recording: so a course is read here, its track points (or
else its route points) in order. It becomes pieces of at most pace.PIECE_M, each (distance m, elevation
difference m), what bulkfetch.pace.predict walks; a GPX course shows its whole climb (no hidden climb).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from bulkfetch import pace
from bulkfetch.distance import great_circle_steps

MAX_COURSE_BYTES = 64 * 1024 * 1024  # a marathon's course at a point a metre is ~6 MB


class CourseError(ValueError):
    """A GPX course that cannot be read, with one line saying why."""


def read_course(path: Path) -> list[tuple[float, float]]:
    """The course of the GPX file at `path` as pieces; CourseError (one line) when it cannot be used."""
    try:
        if path.stat().st_size > MAX_COURSE_BYTES:
            raise CourseError(f"{path} is larger than {MAX_COURSE_BYTES >> 20} MiB: not a course")
        points = course_points(path.read_bytes())
    except OSError as error:
        raise CourseError(f"cannot read {path} ({error.strerror})") from None
    except ET.ParseError as error:
        raise CourseError(f"{path} is not GPX ({error})") from None
    if len(points) < 2:
        raise CourseError(f"{path} has fewer than two track or route points with a position and an elevation")
    steps = great_circle_steps([lat for lat, _, _ in points], [lng for _, lng, _ in points])
    return pieces(steps, [ele for _, _, ele in points])


def course_points(payload: bytes) -> list[tuple[float, float, float]]:
    """(lat, lon, ele) of the track points, or of the route points without any; points lacking one are
    left out. ET.ParseError for what is not XML."""
    found: dict[str, list[tuple[float, float, float]]] = {"trkpt": [], "rtept": []}
    for element in ET.fromstring(payload).iter():
        kind = element.tag.rsplit("}", 1)[-1]
        if kind in found:
            ele = next((child.text for child in element if child.tag.rsplit("}", 1)[-1] == "ele"), None)
            try:
                found[kind].append((float(element.get("lat", "")), float(element.get("lon", "")), float(ele or "")))
            except ValueError:
                continue
    return found["trkpt"] or found["rtept"]


def pieces(steps_m: Sequence[float], elevations_m: Sequence[float],
           piece_m: float = pace.PIECE_M) -> list[tuple[float, float]]:
    """Cut a path (distance of each step between consecutive points, the points' elevations) into pieces
    of `piece_m` (the last one shorter), each (distance m, elevation difference m), the elevation at a cut
    interpolated along its step."""
    out: list[tuple[float, float]] = []
    done_m, start_m, start_ele = 0.0, 0.0, elevations_m[0]
    for step_m, low, high in zip(steps_m, elevations_m, elevations_m[1:]):
        while step_m > 0 and done_m + step_m >= start_m + piece_m:
            cut_ele = low + (high - low) * (start_m + piece_m - done_m) / step_m
            out.append((piece_m, cut_ele - start_ele))
            start_m, start_ele = start_m + piece_m, cut_ele
        done_m += step_m
    if done_m - start_m > 1e-9:
        out.append((done_m - start_m, elevations_m[-1] - start_ele))
    return out
