"""Strava's ids as bulkfetch takes them in: positive integers within int64.

Activity and athlete ids name files and folders (`raw/activities/<id>.json`, `athletes/<id>/`) and fill
the Parquet id columns, which are int64; Strava's ids are beyond 2^32 already. An id that comes from
outside (an API answer, a command-line argument, a cell of the export's CSVs, a folder name in a
data_dir) passes here first, so that nothing later meets one it cannot store: JSON and Python integers
go beyond int64, and `str.isdigit` takes digits that `int` refuses ("²").
"""

from __future__ import annotations

MAX_ID = 2**63 - 1  # the Parquet id columns are int64
MAX_ID_DIGITS = len(str(MAX_ID))  # longer text is no id (and `int` refuses 4,301 digits and more)


def is_strava_id(value: object) -> bool:
    """An integer (not a bool) from 1 to MAX_ID."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ID


def parse_id(text: str) -> int | None:
    """The id that `text` writes in ASCII decimal digits, as Strava writes it ("12345"; spaces around it
    allowed); None for anything else: empty, a sign or a point, a leading zero (folder "0012" must not
    stand for athlete 12, whose folder is "12"), other scripts' digits, 0, beyond MAX_ID."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > MAX_ID_DIGITS or text.startswith("0"):
        return None
    value = int(text)
    return value if is_strava_id(value) else None
