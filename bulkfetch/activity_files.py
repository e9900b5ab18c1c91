"""An activity file of Strava's account export (FIT, GPX or TCX, each maybe gzipped) to a `Track`.

What the bytes are decides, not the name: gzip by its magic bytes (the export has `.fit` files that are
gzipped), then FIT by the ".FIT" signature of its header and GPX/TCX by their XML root element. The
name only says what an unrecognisable file was meant to be. Bad content never raises: a file cut or
broken part-way keeps the records before the break (status "truncated"); one with nothing usable is
"unreadable", an empty track; either way `problem` says why in one line. Work is bounded by the input:
the gzip layer inflates at most `MAX_INFLATED_BYTES`, and the decoders read forward only.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from bulkfetch.decoding import unreadable
from bulkfetch.fit_decode import decode_fit
from bulkfetch.track import Format, Track
from bulkfetch.xml_decode import decode_xml, looks_like_xml

GZIP_MAGIC = b"\x1f\x8b"
# A day-long 1 Hz TCX is about 60 MB; more than this is not an activity (or is a zip bomb).
MAX_INFLATED_BYTES = 512 * 2**20
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
    """The inflated bytes of a gzip file, fed in chunks so that a stream that is cut or corrupt keeps
    what inflated before the break. Members after the first are inflated as gzip(1) does; bytes after
    the last member that are not another one (padding) are ignored."""
    pieces: list[bytes] = []
    size = 0
    inflater = zlib.decompressobj(_GZIP_WBITS)
    view = memoryview(data)
    position = 0
    while position < len(data):
        chunk = view[position:position + _CHUNK_BYTES]
        position += len(chunk)
        try:
            piece = inflater.decompress(chunk)
        except zlib.error as exc:
            return _Inflated(b"".join(pieces), f"corrupt gzip data after {size:,} bytes inflated ({exc})")
        pieces.append(piece)
        size += len(piece)
        if size > MAX_INFLATED_BYTES:
            return _Inflated(b"", f"inflates to more than {MAX_INFLATED_BYTES // 2**20} MiB: not an activity file")
        if inflater.eof:
            position -= len(inflater.unused_data)
            if data[position:position + 2] != GZIP_MAGIC:
                return _Inflated(b"".join(pieces), None)
            inflater = zlib.decompressobj(_GZIP_WBITS)
    return _Inflated(b"".join(pieces), f"gzip data ends early, after {size:,} bytes inflated")
