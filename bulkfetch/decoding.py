"""The Track a decoder's reading makes: the status rule the FIT, GPX and TCX decoders share.

ok: the decoder read to the end of the data; truncated: it stopped early (a cut or corrupt file) after
at least one record, whose records are kept; unreadable: no record at all, an empty track.
"""

from __future__ import annotations

from typing import Any

from bulkfetch.track import DeviceLap, Format, Session, Track


def unreadable(fmt: Format | None, problem: str, session: Session | None = None) -> Track:
    return Track(format=fmt, start_utc_s=None, session=session, status="unreadable", problem=problem)


def track_of(fmt: Format, start_utc_s: float, series: dict[str, list[Any]], *, laps: list[DeviceLap],
             session: Session | None, stopped: str | None, note: str | None = None) -> Track:
    """The track of a reading that has records. `stopped` says why the decoder stopped before the end
    (None if it read everything); `note` is a remark on a complete reading. A series without a single
    value is left out, as `Track` asks."""
    kept = {name: values for name, values in series.items()
            if name == "time" or any(value is not None for value in values)}
    return Track(format=fmt, start_utc_s=start_utc_s, series=kept, laps=laps, session=session,
                 status="ok" if stopped is None else "truncated", problem=stopped or note)
