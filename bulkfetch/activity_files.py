"""An activity file of Strava's account export (FIT, GPX or TCX, each maybe gzipped) to a `Track`.

What the bytes are decides, not the name: gzip by its magic bytes (the export has `.fit` files that are
gzipped), then FIT by the ".FIT" signature of its header and GPX/TCX by their XML root element. The
name only says what an unrecognisable file was meant to be. Bad content never raises: a file cut or
broken part-way keeps the records before the break (status "truncated"); one with nothing usable is
"unreadable", an empty track; either way `problem` says why in one line. Work and memory are bounded:
a file of more than `MAX_ACTIVITY_BYTES`, as kept or inflated, is not read further ("unreadable", its
problem "too large: ..."), so a decoding process holds at most about twice that, and the decoders
read forward only.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bulkfetch.decoding import unreadable
from bulkfetch.fit_decode import decode_fit
from bulkfetch.track import Format, Track
from bulkfetch.xml_decode import decode_xml, looks_like_xml

GZIP_MAGIC = b"\x1f\x8b"
# A day-long 1 Hz TCX is about 60 MB; more than this, as kept or inflated, is not an activity (or is a
# zip bomb). It bounds a decoding process's memory: the import runs up to eight at once.
MAX_ACTIVITY_BYTES = 256 * 2**20
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_CHUNK_BYTES = 64 * 1024
_NAME_FORMATS: dict[str, Format] = {".fit": "fit", ".gpx": "gpx", ".tcx": "tcx"}


def decode_file(data: bytes, name: str) -> Track:
    """The track in `data`, an activity file named `name` (e.g. "activities/9700428229.fit.gz")."""
    gzipped = data[:2] == GZIP_MAGIC
    inflated = _gunzip(data) if gzipped else _Inflated(data, None)
    track = _decode(inflated.payload, name)
    track.gzipped = gzipped
    if inflated.problem is not None and track.status != "truncated":
        # a cut or corrupt gzip stream is the cause, whatever the bytes it gave decode to
        track.status = "truncated" if track.records else "unreadable"
        track.problem = inflated.problem
    return track


def decode_path(path: Path, name: str) -> Track:
    """The track in the file at `path`, the export's file `name`; one of more than MAX_ACTIVITY_BYTES is not
    read. Raises OSError if the file cannot be read."""
    size = path.stat().st_size
    if size > MAX_ACTIVITY_BYTES:
        return unreadable(format_from_name(name), f"too large: {size / 2**20:,.0f} MiB, more than an activity "
                                                  f"file's {MAX_ACTIVITY_BYTES // 2**20} MiB")
    return decode_file(path.read_bytes(), name)


def format_from_name(name: str) -> Format | None:
    """The format a file name says: its last suffix, or the one before `.gz`."""
    lowered = name.lower().removesuffix(".gz")
    return next((fmt for suffix, fmt in _NAME_FORMATS.items() if lowered.endswith(suffix)), None)


def _decode(payload: bytes, name: str) -> Track:
    if payload[8:12] == b".FIT":
        return decode_fit(payload)
    if looks_like_xml(payload):
        return decode_xml(payload, format_from_name(name))
    if not payload:
        return unreadable(format_from_name(name), "empty file")
    return unreadable(format_from_name(name), f"not a FIT, GPX or TCX file (it starts {payload[:8].hex(' ')})")


@dataclass(frozen=True)
class _Inflated:
    payload: bytes
    problem: str | None         # why the gzip data ended early or was refused, one line


def _gunzip(data: bytes) -> _Inflated:
    """The inflated bytes of a gzip file: measured first, holding nothing, so that one inflating past
    MAX_ACTIVITY_BYTES (a zip bomb) is refused at the cost of a buffer, not of the bound; then kept."""
    size, _ = _inflate(data, keep=None)
    if size > MAX_ACTIVITY_BYTES:
        return _Inflated(b"", f"too large: inflates to more than an activity file's {MAX_ACTIVITY_BYTES // 2**20} MiB")
    pieces: list[bytes] = []
    _, problem = _inflate(data, keep=pieces.append)
    return _Inflated(b"".join(pieces), problem)


def _inflate(data: bytes, keep: Callable[[bytes], None] | None) -> tuple[int, str | None]:
    """Inflate `data`'s gzip members in steps of at most _CHUNK_BYTES in and out, handing each piece to
    `keep` (None: measure only, and stop once past MAX_ACTIVITY_BYTES). The size inflated, and why the
    data ended early (None: it did not), so that a stream that is cut or corrupt keeps what inflated
    before the break. Members after the first are inflated as gzip(1) does; bytes after the last member
    that are not another one (padding) are ignored. Every step takes input or gives output: bounded."""
    size = 0
    inflater = zlib.decompressobj(_GZIP_WBITS)
    view = memoryview(data)
    position = 0  # of the input not yet handed to the inflater
    pending: bytes | memoryview = b""  # handed, not yet taken (its output did not fit the step)
    while pending or position < len(data):
        if not pending:
            pending = view[position:position + _CHUNK_BYTES]
            position += len(pending)
        try:
            piece = inflater.decompress(pending, _CHUNK_BYTES)
        except zlib.error as exc:
            return size, f"corrupt gzip data after {size:,} bytes inflated ({exc})"
        pending = inflater.unconsumed_tail
        size += len(piece)
        if keep is not None:
            keep(piece)
        elif size > MAX_ACTIVITY_BYTES:
            return size, None
        if inflater.eof:
            position -= len(inflater.unused_data)  # what was handed past the member's end (pending too)
            if data[position:position + 2] != GZIP_MAGIC:
                return size, None
            inflater, pending = zlib.decompressobj(_GZIP_WBITS), b""
    return size, f"gzip data ends early, after {size:,} bytes inflated"
