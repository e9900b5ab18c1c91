"""A decoded device file (FIT, GPX or TCX from Strava's account export), in the API's units, and its
stored form: one Arrow IPC file per activity, so that compaction never decodes a device file again.

A `Track` holds what the file recorded and nothing derived: the per-record series, the device's laps
and its session totals. Derived series (velocity_smooth, grade_smooth, moving) and the splits are
computed from it by `bulkfetch.derive`. Units are the API's: seconds from the first record, degrees,
metres, beats and revolutions per minute (running cadence per leg, as the device and the API give it),
watts, degrees Celsius, metres per second.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
import pyarrow as pa
import pyarrow.ipc as ipc

from bulkfetch.store import atomic_write

FORMAT_VERSION = 1
Format = Literal["fit", "gpx", "tcx"]
# ok: every record decoded; truncated: the file ends inside a message (the records before the cut are
# kept); unreadable: nothing usable decoded (the track is empty).
Status = Literal["ok", "truncated", "unreadable"]

# The per-record series a file can carry, with their Arrow types. `time` is always present.
SERIES: dict[str, pa.DataType] = {
    "time": pa.int64(),          # whole seconds since the first record
    "lat": pa.float64(),         # degrees
    "lng": pa.float64(),
    "distance": pa.float64(),    # metres, cumulative, as the device recorded it (GPX has none)
    "altitude": pa.float64(),    # metres
    "heartrate": pa.int32(),     # beats per minute
    "cadence": pa.int32(),       # rpm; running: per leg (Strava's web page shows twice that)
    "watts": pa.int32(),
    "temp": pa.int32(),          # degrees Celsius
    "speed": pa.float64(),       # metres per second, as the device recorded it
}
_META_KEY = b"bulkfetch.track"
IPC_MAGIC = b"ARROW1"  # at both ends of an Arrow IPC file (see `opens`)


@dataclass(frozen=True)
class DeviceLap:
    """A lap as the device recorded it (FIT lap message, TCX Lap): offsets from the track's first record."""

    start_s: float
    elapsed_s: float | None = None
    timer_s: float | None = None       # the device's timer time: its moving time, auto-pause excluded
    distance_m: float | None = None
    ascent_m: float | None = None
    descent_m: float | None = None
    average_heartrate: float | None = None
    max_heartrate: float | None = None
    average_cadence: float | None = None
    average_speed: float | None = None
    max_speed: float | None = None
    average_watts: float | None = None
    calories: float | None = None


@dataclass(frozen=True)
class Session:
    """The file's own totals (FIT session message, or what a TCX/GPX states), None where it has none."""

    sport_type: str | None = None      # Strava's sport_type the device's sport maps to (Run, Ride, ...)
    start_utc_s: float | None = None   # epoch seconds
    elapsed_s: float | None = None
    timer_s: float | None = None
    distance_m: float | None = None
    ascent_m: float | None = None
    descent_m: float | None = None
    average_heartrate: float | None = None
    max_heartrate: float | None = None
    calories: float | None = None
    device: str | None = None          # manufacturer/product as the file names it


@dataclass
class Track:
    """One decoded file. `series[name]` is a list as long as `series["time"]` (None where a record lacks
    the value); a series the file never carries is absent from the dict, not a list of None."""

    format: Format | None                      # None: neither the content nor the file name says which
    start_utc_s: float | None                  # epoch seconds of the first record; None if nothing decoded
    series: dict[str, list[Any]] = field(default_factory=lambda: {"time": []})
    laps: list[DeviceLap] = field(default_factory=list)
    session: Session | None = None
    status: Status = "ok"
    problem: str | None = None                 # why truncated/unreadable, one line
    gzipped: bool = False

    @property
    def records(self) -> int:
        return len(self.series["time"])

    def has(self, name: str) -> bool:
        """True if the series exists and holds at least one value."""
        values = self.series.get(name)
        return values is not None and any(v is not None for v in values)


def to_table(track: Track) -> pa.Table:
    """The track as an Arrow table: one column per series it has, the rest in the schema's metadata."""
    columns = {name: pa.array(track.series[name], type=SERIES[name]) for name in SERIES if name in track.series}
    meta = {
        "version": FORMAT_VERSION, "format": track.format, "start_utc_s": track.start_utc_s,
        "status": track.status, "problem": track.problem, "gzipped": track.gzipped,
        "laps": [asdict(lap) for lap in track.laps],
        "session": asdict(track.session) if track.session is not None else None,
    }
    return pa.table(columns).replace_schema_metadata({_META_KEY: orjson.dumps(meta)})


def from_table(table: pa.Table) -> Track:
    meta = orjson.loads((table.schema.metadata or {})[_META_KEY])
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(f"decoded track format {meta.get('version')} is not {FORMAT_VERSION}")
    series = {name: table.column(name).to_pylist() for name in SERIES if name in table.column_names}
    return Track(format=meta["format"], start_utc_s=meta["start_utc_s"], series=series,
                 laps=[DeviceLap(**lap) for lap in meta["laps"]],
                 session=Session(**meta["session"]) if meta["session"] is not None else None,
                 status=meta["status"], problem=meta["problem"], gzipped=meta["gzipped"])


def write_track(path: Path, track: Track) -> None:
    """Store the track atomically (a reader sees the old file or the new one)."""
    sink = pa.BufferOutputStream()
    table = to_table(track)
    with ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    atomic_write(path, sink.getvalue().to_pybytes())


def read_track(path: Path) -> Track:
    """A stored track. Raises OSError if it cannot be read, ValueError if it is not one of ours."""
    try:
        with pa.memory_map(str(path)) as source:
            table = ipc.open_file(source).read_all()
    except pa.ArrowInvalid as exc:
        raise ValueError(f"{path} is not a decoded track ({exc})") from None
    return from_table(table)


def opens(path: Path) -> bool:
    """Whether a stored track is there and whole as far as its ends tell: an Arrow IPC file starts with
    the magic "ARROW1" and ends with its footer and "ARROW1" again
    (https://arrow.apache.org/docs/format/Columnar.html#ipc-file-format). Reads 12 bytes (tens of
    microseconds: thousands of tracks in a fraction of a second), so a file removed, cut short or
    overwritten is found without reading records; damage inside them only `read_track` finds."""
    try:
        with path.open("rb") as stream:
            head = stream.read(len(IPC_MAGIC))
            stream.seek(-len(IPC_MAGIC), os.SEEK_END)
            tail = stream.read(len(IPC_MAGIC))
    except OSError:  # missing, or shorter than the magic
        return False
    return head == tail == IPC_MAGIC
