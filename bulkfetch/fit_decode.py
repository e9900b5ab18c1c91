"""FIT activity files to a Track, with Garmin's FIT SDK (`garmin_fit_sdk.Decoder`).

The SDK's conversions are switched off for speed (on edge500-ride.fit, 10,686 records, these options
decode 2.5 to 3.5 times as many records per second as the SDK's defaults; see `bench/decode.py`):
- no CRC check: it is half the decode time, and a mismatch alone would not drop a record anyway (a file
  that is cut or broken in its structure still stops the decode, and is reported);
- no scale/offset, datetime, type-name, sub-field or component conversion: this module scales the few
  fields it keeps with the SDK's own profile, keeps timestamps as FIT seconds, and names enum values
  itself. Component expansion would only copy `altitude` to `enhanced_altitude` and `speed` to
  `enhanced_speed` (same scale and offset): a record's enhanced field is read where the device wrote
  it, else the plain one. Not covered: `compressed_speed_distance` (speed and distance packed in one
  field by some early ANT+ devices), whose records keep no speed or distance here.
- no merging of `hr` messages into records (it needs the conversions above): heart rate comes from the
  records, as most devices write it.
"""

from __future__ import annotations

import io
from typing import Any

from garmin_fit_sdk import FIT_EPOCH_S, Decoder, Profile, Stream

from bulkfetch.decoding import track_of, unreadable
from bulkfetch.device_sports import fit_sport_type
from bulkfetch.numeric import INT32_MAX, INT32_MIN, in_int32, is_finite_number
from bulkfetch.track import DeviceLap, Session, Track

_OPTIONS = {
    "apply_scale_and_offset": False, "convert_datetimes_to_dates": False, "convert_types_to_strings": False,
    "enable_crc_check": False, "expand_sub_fields": False, "expand_components": False,
    "merge_heart_rates": False,
}
_RECORD = Profile["mesg_num"]["RECORD"]
_LAP = Profile["mesg_num"]["LAP"]
_SESSION = Profile["mesg_num"]["SESSION"]
_DEGREES_PER_SEMICIRCLE = 180 / 2**31
_CRC_SIZE = 2


def _profile_scales(mesg_num: int) -> dict[str, tuple[float, float]]:
    """Field name -> (scale, offset) of a message, for the fields the SDK itself would scale."""
    return {spec["name"]: (spec["scale"][0], spec["offset"][0])
            for spec in Profile["messages"][mesg_num]["fields"].values() if len(spec["scale"]) == 1}


_SCALES = {mesg_num: _profile_scales(mesg_num) for mesg_num in (_RECORD, _LAP, _SESSION)}


def decode_fit(payload: bytes) -> Track:
    """The records, laps and session of a FIT file; never raises for bad content (the SDK returns its
    errors, and every value is checked before use)."""
    stream = Stream.from_bytes_io(io.BytesIO(payload), len(payload))
    messages, errors = Decoder(stream).read(**_OPTIONS)
    records = [m for m in messages.get("record_mesgs", ()) if _is_int(m.get("timestamp"))]
    session = _session(messages)
    stopped, note = _ending(payload, stream.position(), errors[0] if errors else None, len(records))
    if not records:
        file_type = _enum("file", _first(messages, "file_id_mesgs").get("type"))
        return unreadable("fit", stopped or f"no records (a FIT {file_type or 'unknown'} file)", session)
    first_s = records[0]["timestamp"]
    laps = [lap for lap in (_lap(m, first_s) for m in messages.get("lap_mesgs", ())) if lap is not None]
    return track_of("fit", float(first_s + FIT_EPOCH_S), _series(records), laps=laps, session=session,
                    stopped=stopped, note=note)


def _ending(payload: bytes, position: int, error: Exception | None, records: int) -> tuple[str | None, str | None]:
    """(why the decode stopped early, a remark on a complete one), from where the SDK stopped: the
    header announces the data's size, so a stop at or after its end lost no record."""
    if error is None:
        return None, None
    data_end = payload[0] + int.from_bytes(payload[4:8], "little") if len(payload) >= 8 else len(payload) + 1
    if position >= data_end:
        extra = len(payload) - data_end - _CRC_SIZE
        return None, ("ends before its CRC" if extra < 0 else f"{extra:,} bytes after the FIT data ignored")
    reason = " ".join(str(error).split())[:160] or type(error).__name__
    if len(payload) < data_end:
        return f"ends inside a message after {records:,} records (cut at byte {len(payload):,} of " \
               f"{data_end + _CRC_SIZE:,})", None
    return f"breaks at byte {position:,} after {records:,} records: {reason}", None


def _series(records: list[dict[str, Any]]) -> dict[str, list[Any]]:
    first_s = records[0]["timestamp"]
    lat = _numbers([m.get("position_lat") for m in records])
    lng = _numbers([m.get("position_long") for m in records])
    return {
        "time": [m["timestamp"] - first_s for m in records],
        "lat": [None if v is None else v * _DEGREES_PER_SEMICIRCLE for v in lat],
        "lng": [None if v is None else v * _DEGREES_PER_SEMICIRCLE for v in lng],
        "distance": _scaled(records, "distance"),
        # the enhanced fields have the scale and offset of the fields they extend
        "altitude": _scaled(records, "enhanced_altitude", "altitude"),
        "heartrate": _ints(records, "heart_rate"),
        # the device's per-leg integer cadence: the API's unit and type; fractional_cadence (a half step
        # at most) would need a float the API's cadence stream does not have
        "cadence": _ints(records, "cadence"),
        "watts": _ints(records, "power"),
        "temp": _ints(records, "temperature"),
        "speed": _scaled(records, "enhanced_speed", "speed"),
    }


def _field(records: list[dict[str, Any]], name: str, fallback: str | None) -> list[Any]:
    if fallback is None:
        return [m.get(name) for m in records]
    return [m[name] if name in m else m.get(fallback) for m in records]


def _scaled(records: list[dict[str, Any]], name: str, fallback: str | None = None) -> list[float | None]:
    values = _numbers(_field(records, name, fallback))
    scale, offset = _SCALES[_RECORD][name]
    if scale == 1 and offset == 0:
        return values
    return [None if v is None else v / scale - offset for v in values]


def _ints(records: list[dict[str, Any]], name: str) -> list[int | None]:
    """Integer values in int32 (the stored type); anything else, which only a corrupt field definition
    gives, is None."""
    values = _field(records, name, None)
    if set(map(type, values)) <= {int, type(None)}:
        present = [v for v in values if v is not None]
        if not present or (INT32_MIN <= min(present) and max(present) <= INT32_MAX):
            return values
    return [v if _is_int(v) and in_int32(v) else None for v in values]


def _numbers(values: list[Any]) -> list[Any]:
    """The values, with None for anything not a finite number (a corrupt field definition can give
    lists, strings or NaN); the common all-integer case costs one pass in C."""
    if set(map(type, values)) <= {int, type(None)}:
        return values
    return [v if is_finite_number(v) else None for v in values]


def _is_int(value: Any) -> bool:
    return type(value) is int


def _value(message: dict[str, Any], mesg_num: int, name: str, fallback: str | None = None) -> float | None:
    """One field of a lap or session, scaled; the fallback field (of the same scale) if it lacks it."""
    raw = message.get(name, message.get(fallback)) if fallback else message.get(name)
    if not is_finite_number(raw):
        return None
    scale, offset = _SCALES[mesg_num][name]
    return raw / scale - offset if scale != 1 or offset != 0 else raw


def _lap(message: dict[str, Any], first_s: int) -> DeviceLap | None:
    start = message.get("start_time")
    if not _is_int(start):
        return None
    cadence = _value(message, _LAP, "avg_cadence")
    fraction = _value(message, _LAP, "avg_fractional_cadence")
    return DeviceLap(
        start_s=float(start - first_s),
        **_totals(message, _LAP),
        # a lap's average may carry the fraction the per-record cadence cannot
        average_cadence=cadence + (fraction or 0) if cadence is not None else None,
        average_speed=_value(message, _LAP, "enhanced_avg_speed", "avg_speed"),
        max_speed=_value(message, _LAP, "enhanced_max_speed", "max_speed"),
        average_watts=_value(message, _LAP, "avg_power"),
    )


# DeviceLap/Session field -> the lap and session messages' field
_TOTALS = {"elapsed_s": "total_elapsed_time", "timer_s": "total_timer_time", "distance_m": "total_distance",
           "ascent_m": "total_ascent", "descent_m": "total_descent", "average_heartrate": "avg_heart_rate",
           "max_heartrate": "max_heart_rate", "calories": "total_calories"}


def _totals(message: dict[str, Any], mesg_num: int) -> dict[str, float | None]:
    return {field: _value(message, mesg_num, name) for field, name in _TOTALS.items()}


def _session(messages: dict[str, list[dict[str, Any]]]) -> Session | None:
    """The first session message's totals (a multisport file's later sessions are not added); the sport
    from the session, else the sport or first lap message, as a cut file may lack its session."""
    session = _first(messages, "session_mesgs")
    sport_from = next((m for m in (session, _first(messages, "sport_mesgs"), _first(messages, "lap_mesgs"))
                       if "sport" in m), {})
    sport_type = fit_sport_type(_enum("sport", sport_from.get("sport")),
                                _enum("sub_sport", sport_from.get("sub_sport")))
    device = _device(_first(messages, "file_id_mesgs"))
    if not session and sport_type is None and device is None:
        return None
    start = session.get("start_time")
    return Session(
        sport_type=sport_type,
        start_utc_s=float(start + FIT_EPOCH_S) if _is_int(start) else None,
        **_totals(session, _SESSION),
        device=device,
    )


def _device(file_id: dict[str, Any]) -> str | None:
    """"garmin fenix2": the manufacturer and product as the profile names them (the product name the
    file states, else the manufacturer's product list, else the product number)."""
    maker = _enum("manufacturer", file_id.get("manufacturer"))
    product = file_id.get("product_name") if isinstance(file_id.get("product_name"), str) else None
    number = file_id.get("product")
    if product is None and _is_int(number):
        product = _product_name(file_id.get("manufacturer"), number) or str(number)
    words = [word for word in (maker, product) if word]
    return " ".join(words) or None


def _product_name(manufacturer: Any, number: int) -> str | None:
    """The product's name from the product list the profile keeps for its manufacturer (garmin_product
    for Garmin, Dynastream and Tacx; favero_product for Favero)."""
    product_field = next(spec for spec in Profile["messages"][Profile["mesg_num"]["FILE_ID"]]["fields"].values()
                         if spec["name"] == "product")
    for sub_field in product_field["sub_fields"]:
        if any(entry["raw_value"] == manufacturer for entry in sub_field["map"]):
            return _enum(sub_field["type"], number)
    return None


def _enum(type_name: str, value: Any) -> str | None:
    if not _is_int(value):
        return None
    name = Profile["types"].get(type_name, {}).get(value)
    return name if isinstance(name, str) else None


def _first(messages: dict[str, list[dict[str, Any]]], key: str) -> dict[str, Any]:
    found = messages.get(key)
    return found[0] if found else {}
