"""Pure parsing of the account export's `activities.csv` and `profile.csv` into normalized rows.

`activities.csv` has one row per activity, in the account's language, with columns Strava adds over the
years (10 in 2019; 87, 92, 94, 99, 101 later) and five English names that appear twice (`Distance`,
`Elapsed Time`, ...): the first of a pair is for display (`Distance` in km or miles with the locale's
decimal comma), the second is typed (metres, seconds). So columns are found by name, and of a pair the
second is taken. Known headers: English, German, and the lowercase one of exports before mid-2019
(`id,date,...,filename`, distance in metres). Dates are UTC in one of three formats:
"May 9, 2023, 10:09:29 AM", "09.12.2022, 15:24:49", "2018-09-12 15:02:23".

A header in another language keeps what is language-independent: the activity id (always the first
column) and the file name (the column whose values are `activities/...`); dates, sports and totals then
come from the files themselves. The number in a file's name is not always the activity id: a file
belongs to the row that names it, nothing else. A copy re-saved by a spreadsheet may separate its cells
with semicolons or tabs instead of commas (the header tells which), and in Windows-1252 or UTF-16.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import re
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from bulkfetch.export_archive import unsafe_path
from bulkfetch.ids import parse_id
from bulkfetch.sports import SPORT_TYPES

ACTIVITY_FILES = "activities/"  # the folder of the export that holds the device files
ENGLISH, GERMAN, LEGACY = "English", "German", "English (before mid-2019)"
# A Filename column in an unknown language: at least this share of its non-empty values name a file.
FILE_COLUMN_SHARE = 0.5
# Strava separates with commas. A spreadsheet that re-saves the file in a locale whose decimal separator
# is the comma separates with semicolons (Excel's "CSV" in German), its "Unicode text" with tabs.
DELIMITERS = (",", ";", "\t")
SHOWN_NAME_CHARS = 40  # of a header name quoted in a message
KM_M, MILE_M = 1000.0, 1609.344  # the display units of a lone Distance column, in metres (the international mile)
# A file shorter than this says little about the display unit: the display value is rounded to 0.01.
MIN_EVIDENCE_M = 1000.0


@dataclass(frozen=True)
class ExportActivity:
    """One row of activities.csv, normalized: metres, seconds, Strava's sport_type; None where the row
    has no (readable) value."""

    activity_id: int
    start_date: str | None          # UTC, "YYYY-MM-DDTHH:MM:SSZ"
    name: str | None
    sport_type: str | None          # one of bulkfetch.sports.SPORT_TYPES
    distance_m: float | None
    elapsed_s: int | None
    moving_s: int | None
    elevation_gain_m: float | None
    file: str | None                # as the export names it, e.g. "activities/9700428229.fit.gz"; None: manual
    # The one Distance of a header without the typed pair (2019-2022) is for display, in the account's
    # unit (km or miles, rounded to 0.01), read here as km; `in_display_unit` corrects it when the files
    # show miles. It stands in only where neither a typed distance nor the file gives one (a manual activity).
    display_distance_m: float | None = None


@dataclass(frozen=True)
class Layout:
    """The header names of one language's activities.csv (None: that language's header has no such column)."""

    language: str
    activity_id: str
    date: str
    name: str
    sport: str
    elapsed: str
    moving: str | None
    distance: str
    elevation_gain: str | None
    file: str
    lone_distance_in_m: bool = False  # a Distance that is not paired is in metres (else in km or miles)


LAYOUTS = (
    Layout(ENGLISH, "Activity ID", "Activity Date", "Activity Name", "Activity Type", "Elapsed Time",
           "Moving Time", "Distance", "Elevation Gain", "Filename"),
    Layout(GERMAN, "Aktivitäts-ID", "Aktivitätsdatum", "Name der Aktivität", "Aktivitätsart", "Verstrichene Zeit",
           "Bewegungszeit", "Distanz", "Höhenzunahme", "Dateiname"),
    Layout(LEGACY, "id", "date", "name", "type", "elapsed_time", None, "distance", None, "filename",
           lone_distance_in_m=True),
)


@dataclass(frozen=True)
class ActivitiesCsv:
    activities: dict[int, ExportActivity]
    language: str | None    # a LAYOUTS language; None: unknown (ids and files only)
    header: tuple[str, ...]
    bad_rows: int           # rows without a valid activity id (skipped)
    duplicate_rows: int     # rows of an activity id an earlier row had (the last row is kept)

    @property
    def first_column(self) -> str:
        """The header's first name as a message quotes it: cut to SHOWN_NAME_CHARS, whatever the file holds."""
        name = self.header[0] if self.header else ""
        return name if len(name) <= SHOWN_NAME_CHARS else name[:SHOWN_NAME_CHARS - 1] + "…"


RowReader = Callable[[list[str]], ExportActivity | None]  # None: the row has no valid activity id


class CsvError(ValueError):
    """activities.csv cannot be read at all (not CSV text, no header, a file name outside activities/)."""


def parse_activities_csv(data: bytes) -> ActivitiesCsv:
    """The rows of an activities.csv, by activity id (a later row of the same id wins)."""
    rows = _rows(data)
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise CsvError("activities.csv is empty")
    header = tuple(cell.strip() for cell in rows[0])
    body = [row for row in rows[1:] if any(cell.strip() for cell in row)]
    layout = _layout_of(header)
    columns = _positions(header)
    if layout is None:
        file_column = _file_column(body)
        read = _unknown_language_reader(file_column)
    else:
        read = _reader(layout, columns)
    activities: dict[int, ExportActivity] = {}
    bad_rows = duplicate_rows = 0
    for row in body:
        activity = read(row)
        if activity is None:
            bad_rows += 1
            continue
        duplicate_rows += activity.activity_id in activities
        activities[activity.activity_id] = activity
    return ActivitiesCsv(activities, layout.language if layout else None, header, bad_rows, duplicate_rows)


def parse_profile_csv(data: bytes) -> int | None:
    """The athlete id profile.csv records: its first column ("Athlete ID" in English exports) of its one
    data row, whatever the header's language. None if it holds none."""
    try:
        rows = _rows(data)
    except CsvError:
        return None
    if len(rows) < 2 or not rows[1]:
        return None
    return parse_id(rows[1][0])


def _rows(data: bytes) -> list[list[str]]:
    text = _text(data)
    try:
        return list(csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text)))
    except csv.Error as exc:
        raise CsvError(f"activities.csv is not CSV ({exc})") from None


def _text(data: bytes) -> str:
    """The CSV's text: UTF-8 as Strava writes it (a copy Excel saved as "CSV UTF-8" starts with a byte
    order mark); UTF-16 with its byte order mark, Excel's "Unicode text"; else Windows-1252, the code page
    Excel's plain "CSV" is saved in on a Western European Windows (the German umlauts of its header)."""
    wide = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    encodings = {"utf-16": "UTF-16"} if wide else {"utf-8-sig": "UTF-8", "cp1252": "Windows-1252"}
    for codec in encodings:
        try:
            return data.decode(codec)
        except UnicodeDecodeError as exc:
            failure = exc
    raise CsvError(f"activities.csv is not {' or '.join(encodings.values())} text ({failure.reason} at byte "
                   f"{failure.start})")


def _delimiter(text: str) -> str:
    """Of DELIMITERS, the one that splits the header into the most columns (no header name holds any of
    them); the comma when none splits it."""
    header = next(io.StringIO(text, newline=""), "")
    return max(DELIMITERS, key=lambda delimiter: len(next(csv.reader([header], delimiter=delimiter), [])))


def _layout_of(header: tuple[str, ...]) -> Layout | None:
    """The layout whose id column the header has, the one with the most of its columns if several do."""
    names = set(header)
    known = [layout for layout in LAYOUTS if layout.activity_id in names]
    if not known:
        return None
    return max(known, key=lambda layout: sum(name in names for name in _names(layout)))


def _names(layout: Layout) -> list[str]:
    return [name for name in (layout.activity_id, layout.date, layout.name, layout.sport, layout.elapsed,
                              layout.moving, layout.distance, layout.elevation_gain, layout.file) if name]


def _positions(header: tuple[str, ...]) -> dict[str, list[int]]:
    positions: dict[str, list[int]] = {}
    for index, name in enumerate(header):
        positions.setdefault(name, []).append(index)
    return positions


def _reader(layout: Layout, columns: dict[str, list[int]]) -> RowReader:
    def typed(row: list[str], name: str | None) -> str:
        """The column's value; of a pair, the second (typed) one."""
        if name is None or name not in columns:
            return ""
        index = columns[name][-1]
        return row[index].strip() if index < len(row) else ""

    paired_distance = len(columns.get(layout.distance, ())) > 1

    def read(row: list[str]) -> ExportActivity | None:
        activity_id = parse_id(typed(row, layout.activity_id))
        if activity_id is None:
            return None
        distance = parse_number(typed(row, layout.distance))
        display_m = None
        if not paired_distance and not layout.lone_distance_in_m:
            # The display one alone, read as km (see `in_display_unit` for miles): a ride's 3681.0 m became
            # 3.68 in mid-2019 (hugovk/strava-tools#1). Rounded to a tenth of a metre: 3.68 * 1000 is
            # 3680.0000000000005.
            display_m = None if distance is None else round(distance * 1000, 1)
            distance = None
        return ExportActivity(
            activity_id=activity_id,
            start_date=parse_date(typed(row, layout.date)),
            name=typed(row, layout.name) or None,
            sport_type=sport_type_of(typed(row, layout.sport)),
            distance_m=distance,
            elapsed_s=_seconds(typed(row, layout.elapsed)),
            moving_s=_seconds(typed(row, layout.moving)),
            elevation_gain_m=parse_number(typed(row, layout.elevation_gain)),
            file=file_reference(typed(row, layout.file)),
            display_distance_m=display_m,
        )

    return read


def display_unit_m(pairs: list[tuple[float, float]]) -> float:
    """Metres per unit of a lone display Distance column, from (display value, the activity's file
    distance in metres) pairs: MILE_M when the median of file metres per display unit is nearer a mile
    than a km (on a log scale: above their geometric mean, about 1,269 m), else KM_M. Files shorter than
    MIN_EVIDENCE_M are left out; without any (manual activities only) the unit is km. The median: a file
    cropped on Strava or cut short disagrees with its row, most files do not."""
    ratios = [file_m / value for value, file_m in pairs if value > 0 and file_m >= MIN_EVIDENCE_M]
    if not ratios:
        return KM_M
    return MILE_M if statistics.median(ratios) > math.sqrt(KM_M * MILE_M) else KM_M


def in_display_unit(rows: Mapping[int, ExportActivity], files_m: Mapping[int, float]) -> dict[int, ExportActivity]:
    """`rows` (one activities.csv) with their display distances in metres of the unit `display_unit_m`
    finds against the distances of the activities' files (`files_m`, by activity id)."""
    pairs = [(row.display_distance_m / KM_M, files_m[activity_id]) for activity_id, row in rows.items()
             if row.display_distance_m is not None and activity_id in files_m]
    unit_m = display_unit_m(pairs)
    if unit_m == KM_M:
        return dict(rows)
    return {activity_id: row if row.display_distance_m is None else
            replace(row, display_distance_m=round(row.display_distance_m / KM_M * unit_m, 1))
            for activity_id, row in rows.items()}


def _unknown_language_reader(file_column: int | None) -> RowReader:
    def read(row: list[str]) -> ExportActivity | None:
        activity_id = parse_id(row[0].strip() if row else "")
        if activity_id is None:
            return None
        file = row[file_column].strip() if file_column is not None and file_column < len(row) else ""
        return ExportActivity(activity_id, None, None, None, None, None, None, None, file_reference(file))

    return read


def _file_column(rows: list[list[str]]) -> int | None:
    """The column whose non-empty values are mostly `activities/...` (manual activities leave it empty)."""
    width = max((len(row) for row in rows), default=0)
    best, best_hits = None, 0
    for index in range(1, width):
        values = [row[index].strip() for row in rows if index < len(row) and row[index].strip()]
        hits = sum(value.startswith(ACTIVITY_FILES) for value in values)
        if hits > best_hits and hits >= FILE_COLUMN_SHARE * len(values):
            best, best_hits = index, hits
    return best


def file_reference(value: str) -> str | None:
    """A Filename cell as a path inside the export, or None when empty (a manual activity).

    Raises CsvError for a name that is unsafe (export_archive.unsafe_path: the import writes the file under
    that name, so a hostile CSV must not name a place outside the athlete's folder) or not a file of
    `activities/` as one plain path (no empty or `.` part).
    """
    if not value:
        return None
    if why := unsafe_path(value):
        raise CsvError(f"activities.csv names an unsafe file: {value!r} {why}")
    parts = value.replace("\\", "/").split("/")
    if parts[0] != ACTIVITY_FILES.rstrip("/") or len(parts) < 2 or any(part in ("", ".") for part in parts):
        raise CsvError(f"activities.csv names a file outside activities/: {value!r}")
    return "/".join(parts)


def parse_number(text: str) -> float | None:
    """'5000.0', '9,44' (a decimal comma), '1,234.5' or '1.234,5' (grouped): the last separator is the
    decimal one. None for an empty or non-finite value."""
    text = text.strip().replace(" ", "").replace("\u00a0", "")
    if not text:
        return None
    last = max(text.rfind(","), text.rfind("."))
    if last >= 0:
        text = text[:last].replace(",", "").replace(".", "") + "." + text[last + 1:]
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _seconds(text: str) -> int | None:
    value = parse_number(text)
    return None if value is None or value < 0 else int(round(value))


_MONTHS = {name: number for number, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
_ENGLISH_DATE = re.compile(r"([A-Za-z]{3})[a-z]*\.? (\d{1,2}), (\d{4}),? (\d{1,2}):(\d{2}):(\d{2}) ?([AaPp][Mm])")
_GERMAN_DATE = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4}),? (\d{1,2}):(\d{2}):(\d{2})")
_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})Z?")


def parse_date(text: str) -> str | None:
    """A UTC start time in any of the export's formats as "YYYY-MM-DDTHH:MM:SSZ"; None if not one."""
    text = text.strip()
    try:
        if match := _ENGLISH_DATE.fullmatch(text):
            month_name, day, year, hour, minute, second, half = match.groups()
            month = _MONTHS.get(month_name.lower())
            if month is None or not 1 <= int(hour) <= 12:
                return None
            hour_24 = int(hour) % 12 + (12 if half.lower() == "pm" else 0)
            moment = datetime(int(year), month, int(day), hour_24, int(minute), int(second))
        elif match := _GERMAN_DATE.fullmatch(text):
            day, month_text, year, hour, minute, second = match.groups()
            moment = datetime(int(year), int(month_text), int(day), int(hour), int(minute), int(second))
        elif match := _ISO_DATE.fullmatch(text):
            moment = datetime(*(int(part) for part in match.groups()))
        else:
            return None
    except ValueError:  # 31.02., 25:00
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


_COMPACT_SPORTS = {sport.lower(): sport for sport in SPORT_TYPES}
# Display names that are not a sport type with its spaces and hyphens removed ("Virtual Ride" and
# "E-Bike Ride" are): Strava's English ones, and the German ones of its German pages. A name not
# here leaves sport_type to the file's own sport.
_DISPLAY_NAMES = {
    "canoe": "Canoeing", "rockclimb": "RockClimbing", "hiit": "HighIntensityIntervalTraining",
    "surf": "Surfing", "football(soccer)": "Soccer", "kayak": "Kayaking", "stairstepper": "StairStepper",
    "radfahrt": "Ride", "lauf": "Run", "schwimmen": "Swim", "spaziergang": "Walk", "gehen": "Walk",
    "wanderung": "Hike", "wandern": "Hike", "virtuelleradfahrt": "VirtualRide", "virtuellerlauf": "VirtualRun",
    "krafttraining": "WeightTraining", "gewichtstraining": "WeightTraining", "training": "Workout",
    "alpinski": "AlpineSki", "skitour": "BackcountrySki", "langlauf": "NordicSki", "ebikefahrt": "EBikeRide",
    "mountainbikefahrt": "MountainBikeRide", "emountainbikefahrt": "EMountainBikeRide",
    "gravelfahrt": "GravelRide", "traillauf": "TrailRun", "rudern": "Rowing", "kajakfahren": "Kayaking",
    "kanufahren": "Canoeing", "eislaufen": "IceSkate", "inlineskaten": "InlineSkate",
    "schneeschuhwandern": "Snowshoe", "snowboarden": "Snowboard", "klettern": "RockClimbing",
    "ellipsentrainer": "Elliptical", "segeln": "Sail", "surfen": "Surfing", "windsurfen": "Windsurf",
    "kitesurfen": "Kitesurf", "rollski": "RollerSki", "handbike": "Handcycle", "rollstuhl": "Wheelchair",
    "fußball": "Soccer", "skateboarden": "Skateboard", "virtuellesrudern": "VirtualRow",
}


def sport_type_of(display_name: str) -> str | None:
    """Strava's sport_type for an Activity Type cell ("Virtual Ride" -> VirtualRide, "Radfahrt" -> Ride)."""
    compact = re.sub(r"[\s\-_]", "", display_name).lower()
    return _COMPACT_SPORTS.get(compact) or _DISPLAY_NAMES.get(compact)
