"""GPX and TCX files to a Track, with the standard library's streaming XML parser.

Elements are matched by local name, whatever their namespace or prefix (GPX 1.0 and 1.1, Garmin's
TrackPointExtension v1/v2 under any prefix, TCX's ActivityExtension). The parser is fed in chunks and
each point is dropped once read, so memory stays near the size of the series. A file that breaks off
(cut, or not well-formed further on) keeps the points read before the break. Text encodings: what the
XML declaration names, and UTF-16 or UTF-32 with a byte order mark (a file saved as "Unicode" on
Windows), with whitespace before `<?xml` or not.

GPX: the points of its tracks (`trkpt`); a file without any track, those of its routes, else its
waypoints. lat/lon, `ele`, `time`, GPX 1.0's `speed`, and from extensions heart rate (`hr`), cadence
(`cad`), air temperature (`atemp`) and power (`power`, Garmin's `PowerInWatts`). No laps; its
session states the `<type>` of its first track if there is one, and the `creator`.

TCX: Trackpoint `Time`, `Position`, `AltitudeMeters`, `DistanceMeters`, `HeartRateBpm`, `Cadence`, and
from its extension `Speed`, `Watts`, `RunCadence`; Lap `StartTime`, `TotalTimeSeconds` (the device's
timer time), `DistanceMeters`, `MaximumSpeed`, `Calories`, heart rates, `Cadence`, extension `AvgSpeed`
and `AvgWatts`; the Activity's `Sport` and its `Creator`'s name.

A point without a time is skipped (Strava requires one on every point).
"""

from __future__ import annotations

import codecs
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from bulkfetch.decoding import track_of, unreadable
from bulkfetch.device_sports import gpx_sport_type, tcx_sport_type
from bulkfetch.numeric import finite_float, in_int32
from bulkfetch.track import SERIES, DeviceLap, Format, Session, Track

_CHUNK_BYTES = 64 * 1024
# A UTF-8 byte order mark and whitespace, which XML forbids before <?xml (matched, not copied away).
_LEADING = re.compile(rb"[\xef\xbb\xbf \t\r\n]*")
_WHITESPACE = " \t\r\n"
# The byte order marks of the encodings whose text is no ASCII superset, UTF-32's first: UTF-32 LE's
# begins with UTF-16 LE's.
_WIDE_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
              (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
# Local element names inside a point -> series.
_GPX_POINT = {"ele": "altitude", "speed": "speed", "hr": "heartrate", "cad": "cadence", "atemp": "temp",
              "power": "watts", "PowerInWatts": "watts"}
_TCX_POINT = {"AltitudeMeters": "altitude", "DistanceMeters": "distance", "Cadence": "cadence",
              "RunCadence": "cadence", "Speed": "speed", "Watts": "watts",
              "LatitudeDegrees": "lat", "LongitudeDegrees": "lng"}
_INT_SERIES = frozenset(name for name, kind in SERIES.items() if str(kind).startswith("int"))


def looks_like_xml(payload: bytes) -> bool:
    try:
        first = next(_document(payload, final=False), "")  # the first chunk only is read
    except UnicodeDecodeError:  # a byte order mark, then no such text
        return False
    return first[:1] in ("<", b"<")


def _document(payload: bytes, *, final: bool = True) -> Iterator[bytes | str]:
    """The document from its first `<`, _CHUNK_BYTES of `payload` at a time: bytes, which expat decodes
    as the declaration says; UTF-16 or UTF-32 with a byte order mark as text, decoded here, so that the
    whitespace before `<?xml` is skipped in those too (UnicodeDecodeError where it is not that encoding;
    with `final=False` a character cut at the end is no error)."""
    encoding = next((name for bom, name in _WIDE_BOMS if payload.startswith(bom)), None)
    if encoding is None:
        start = _content_start(payload)
        for offset in range(start, len(payload), _CHUNK_BYTES):
            yield payload[offset:offset + _CHUNK_BYTES]
        return
    decoder = codecs.getincrementaldecoder(encoding)()  # it takes the byte order mark away
    leading = True
    for offset in range(0, len(payload), _CHUNK_BYTES):
        text = decoder.decode(payload[offset:offset + _CHUNK_BYTES])
        if leading:
            text = text.lstrip(_WHITESPACE)
            leading = not text
        if text:
            yield text
    if final:  # a character cut at the end: said once all the text before it is out
        decoder.decode(b"", final=True)


def _content_start(payload: bytes) -> int:
    match = _LEADING.match(payload)
    return match.end() if match else 0


def decode_xml(payload: bytes, fallback: Format | None) -> Track:
    """A GPX or TCX file, told apart by its root element; `fallback` (what the file name says) is the
    format of an unreadable file whose root is neither."""
    parser = ET.XMLPullParser(events=("start", "end"))
    document = _Document()
    broke: str | None = None
    try:
        for chunk in _document(payload):
            parser.feed(chunk)
            if not document.take(parser):
                break
        else:
            parser.close()
            document.take(parser)
    except ET.ParseError as exc:
        line, column = exc.position
        broke = f"XML breaks at line {line:,}, column {column:,}: {_reason(exc)}"
    except (LookupError, UnicodeError) as exc:  # an encoding Python lacks, or bytes invalid in the one declared
        broke = f"XML text cannot be decoded: {' '.join(str(exc).split())[:120]}"
    if document.unknown_root is not None:
        return unreadable(fallback, f"XML root <{document.unknown_root}> is neither gpx nor TrainingCenterDatabase")
    if document.reader is None:
        return unreadable(fallback, broke or "no XML root element")
    return document.reader.track(broke)


class _Document:
    """Hands the parser's events to the reader its root element calls for."""

    def __init__(self) -> None:
        self.reader: _Reader | None = None
        self.unknown_root: str | None = None

    def take(self, parser: ET.XMLPullParser) -> bool:
        """Handle the events parsed so far; False once the root is known to be neither GPX nor TCX."""
        for event, element in parser.read_events():
            if self.reader is None:
                root = local_name(element.tag)
                if root not in _READERS:
                    self.unknown_root = root
                    return False
                self.reader = _READERS[root]()
            self.reader.handle(event, element)
        return True


def _reason(exc: ET.ParseError) -> str:
    """expat's message without the position it repeats ("unclosed token: line 3, column 4")."""
    return str(exc).split(": line ")[0]


@lru_cache(maxsize=512)  # a file has a few dozen distinct tags; caching saves about 15 % of a TCX decode
def local_name(tag: str) -> str:
    return tag.rpartition("}")[2]


@dataclass
class _Points:
    """The series of the timed points read so far, in document order."""

    epoch_s: list[float] = field(default_factory=list)
    values: dict[str, list[Any]] = field(default_factory=dict)
    untimed: int = 0

    def add(self, when: float | None, values: dict[str, Any]) -> None:
        if when is None:
            self.untimed += 1
            return
        count = len(self.epoch_s)
        self.epoch_s.append(when)
        for name, value in values.items():
            # A column is made once, padded to the points before it (setdefault would build the padding for
            # every point: quadratic in the file's length).
            if value is not None and name not in self.values:
                self.values[name] = [None] * count
        for name, column in self.values.items():
            column.append(values.get(name))

    def series(self) -> dict[str, list[Any]]:
        first = self.epoch_s[0]
        return {"time": [round(when - first) for when in self.epoch_s],
                **{name: self.values[name] for name in SERIES if name in self.values}}


class _Reader:
    format: Format

    def __init__(self) -> None:
        self.points = _Points()
        self.laps: list[tuple[float, dict[str, float | None]]] = []  # (start epoch, DeviceLap fields)
        self.sport_type: str | None = None
        self.start_utc_s: float | None = None
        self.device: str | None = None

    def handle(self, event: str, element: ET.Element) -> None:
        raise NotImplementedError

    def track(self, broke: str | None) -> Track:
        session = Session(sport_type=self.sport_type, start_utc_s=self.start_utc_s, device=self.device)
        if not self.points.epoch_s:
            seen = self.points.untimed
            problem = broke or (f"no timestamps: none of its {seen:,} points has a time" if seen else "no points")
            return unreadable(self.format, problem, session)
        first = self.points.epoch_s[0]
        laps = [DeviceLap(start_s=start - first, **fields) for start, fields in self.laps]
        stopped = f"{broke} (after {len(self.points.epoch_s):,} points)" if broke else None
        return track_of(self.format, first, self.points.series(), laps=laps, session=session, stopped=stopped)


class _GpxReader(_Reader):
    format: Format = "gpx"

    def __init__(self) -> None:
        super().__init__()
        # routes and waypoints count only in a file without track points
        self.others: dict[str, _Points] = {"rtept": _Points(), "wpt": _Points()}

    def handle(self, event: str, element: ET.Element) -> None:
        name = local_name(element.tag)
        if event == "start":
            if name == "gpx":
                self.device = element.get("creator")
            return
        if name == "trkpt":
            self.points.add(*_gpx_point(element))
        elif name in self.others:
            self.others[name].add(*_gpx_point(element))
        elif name == "trk":
            self.sport_type = self.sport_type or gpx_sport_type(_child_text(element, "type"))
        elif name != "trkseg":
            return
        element.clear()

    def track(self, broke: str | None) -> Track:
        if not self.points.epoch_s:
            self.points = next((points for points in self.others.values() if points.epoch_s), self.points)
        if self.points.epoch_s:
            self.start_utc_s = self.points.epoch_s[0]
        return super().track(broke)


class _TcxReader(_Reader):
    format: Format = "tcx"

    def handle(self, event: str, element: ET.Element) -> None:
        name = local_name(element.tag)
        if event == "start":
            if name == "Activity" and self.sport_type is None:
                self.sport_type = tcx_sport_type(element.get("Sport"))
            return
        if name == "Trackpoint":
            self.points.add(*_tcx_point(element))
            element.clear()
        elif name == "Lap":
            start = _time(element.get("StartTime"))
            if start is not None:
                self.laps.append((start, _tcx_lap(element)))
            element.clear()
        elif name == "Id" and self.start_utc_s is None:
            self.start_utc_s = _time(element.text)
        elif name == "Creator" and self.device is None:
            self.device = (_child_text(element, "Name") or "").strip() or None


_READERS: dict[str, type[_Reader]] = {"gpx": _GpxReader, "TrainingCenterDatabase": _TcxReader}


def _gpx_point(element: ET.Element) -> tuple[float | None, dict[str, Any]]:
    values: dict[str, Any] = {"lat": text_float(element.get("lat")), "lng": text_float(element.get("lon"))}
    when = None
    for child in element.iter():
        name = local_name(child.tag)
        if name == "time":
            when = _time(child.text)
        elif name in _GPX_POINT:
            values[_GPX_POINT[name]] = _number(_GPX_POINT[name], child.text)
    return when, values


def _tcx_point(element: ET.Element) -> tuple[float | None, dict[str, Any]]:
    values: dict[str, Any] = {}
    when = None
    for child in element.iter():
        name = local_name(child.tag)
        if name == "Time":
            when = _time(child.text)
        elif name == "HeartRateBpm":
            values["heartrate"] = _number("heartrate", _child_text(child, "Value"))
        elif name in _TCX_POINT:
            values[_TCX_POINT[name]] = _number(_TCX_POINT[name], child.text)
    return when, values


def _tcx_lap(element: ET.Element) -> dict[str, float | None]:
    """A Lap's own totals: its direct children and its extension's, not its trackpoints' values."""
    totals = {local_name(child.tag): child for child in element}
    extension = {local_name(child.tag): child.text for child in element.iterfind("./{*}Extensions/{*}LX/*")}

    def number(name: str) -> float | None:
        return text_float(totals[name].text) if name in totals else None

    return {
        "timer_s": number("TotalTimeSeconds"), "distance_m": number("DistanceMeters"),
        "max_speed": number("MaximumSpeed"), "calories": number("Calories"),
        "average_heartrate": text_float(_child_text(totals.get("AverageHeartRateBpm"), "Value")),
        "max_heartrate": text_float(_child_text(totals.get("MaximumHeartRateBpm"), "Value")),
        "average_cadence": number("Cadence"),
        "average_speed": text_float(extension.get("AvgSpeed")), "average_watts": text_float(extension.get("AvgWatts")),
    }


def _child_text(element: ET.Element | None, name: str) -> str | None:
    if element is None:
        return None
    return next((child.text for child in element if local_name(child.tag) == name), None)


def _number(series: str, text: str | None) -> float | int | None:
    value = text_float(text)
    if value is None or series not in _INT_SERIES:
        return value
    rounded = round(value)
    return rounded if in_int32(rounded) else None


def text_float(text: str | None) -> float | None:
    try:
        return finite_float(float(text)) if text is not None else None
    except ValueError:
        return None


def _time(text: str | None) -> float | None:
    """Epoch seconds of an ISO 8601 time ("Z", an offset, any fraction; none means UTC)."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
