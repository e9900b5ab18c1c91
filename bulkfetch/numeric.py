"""What counts as a number in a decoded file or a JSON answer: the checks the decoders and derive share.

A corrupt FIT field definition can give lists, strings or NaN where a number belongs, and XML text or a
JSON value can be anything: each reader keeps a value only when it passes these checks.
"""

from __future__ import annotations

import math
from typing import Any

# The range of the int32 series (heart rate, cadence, watts, temperature, as `bulkfetch.track` stores them)
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def in_int32(value: int) -> bool:
    return INT32_MIN <= value <= INT32_MAX


def is_finite_number(value: Any) -> bool:
    """An int or a finite float; not a bool (JSON's true is no distance)."""
    return type(value) is int or (type(value) is float and math.isfinite(value))


def finite_float(value: Any) -> float | None:
    """The value as a float when it is a finite number (see `is_finite_number`), else None."""
    return float(value) if is_finite_number(value) else None
