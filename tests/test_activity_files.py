"""activity_files.decode_file on real device files (tests/fixtures_files, see its SOURCES.md): what each
format yields, the SDK's fast options against its defaults, gzip by content, and cut or corrupt files."""

from __future__ import annotations

import codecs
import csv
import gzip
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from garmin_fit_sdk import FIT_EPOCH_S, Decoder, Encoder, Profile, Stream
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulkfetch import activity_files
from bulkfetch.activity_files import decode_file, decode_path
from bulkfetch.device_sports import fit_sport_type, gpx_sport_type, tcx_sport_type
from bulkfetch.sports import SPORT_TYPES
from bulkfetch.track import SERIES, Track, read_track, to_table, write_track

FILES = Path(__file__).parent / "fixtures_files"
REAL_FITS = ("fenix2-run.fit", "fenix5-run.fit", "edge500-ride.fit", "truncated.fit")
SEMICIRCLE = 180 / 2**31


def load(name: str) -> bytes:
    return (FILES / name).read_bytes()


def decode(name: str) -> Track:
    return decode_file(load(name), f"activities/{name}")


def one_line(text: str | None) -> bool:
    return bool(text) and "\n" not in text and len(text) < 200


# -- FIT -----------------------------------------------------------------------------------------------------
def test_fenix2_run_has_its_records_laps_and_session():
    track = decode("fenix2-run.fit")
    assert (track.format, track.status, track.problem, track.gzipped) == ("fit", "ok", None, False)
    assert track.records == 2809 and len(track.laps) == 4
    assert all(track.has(name) for name in ("lat", "lng", "heartrate", "cadence", "altitude", "distance"))
    assert all(len(values) == track.records for values in track.series.values())
    assert track.series["time"][0] == 0 and track.series["time"] == sorted(track.series["time"])
    assert track.session is not None and track.session.sport_type == "Run"
    assert track.session.device == "garmin fenix2"
    # the laps' distances add up to the session's (their times do not: the device leaves 3 s between laps)
    assert sum(lap.distance_m for lap in track.laps) == pytest.approx(track.session.distance_m, abs=0.05)


def test_edge500_ride_has_temperature_and_nine_laps():
    track = decode("edge500-ride.fit")
    assert (track.status, track.records, len(track.laps)) == ("ok", 10686, 9)
    assert track.has("temp") and track.has("speed") and not track.has("watts")
    assert track.session is not None and track.session.sport_type == "Ride"
    assert sum(lap.distance_m for lap in track.laps) == pytest.approx(track.session.distance_m, abs=0.1)
    # a ride with auto-pause: the time series is whole seconds from the first record, with the pauses in it
    assert track.series["time"][-1] > track.session.timer_s
    assert all(isinstance(t, int) for t in track.series["time"])


def test_fenix5_records_equal_the_sdk_csv():
    """Every value of the 21 records equals the CSV Garmin's SDK tools wrote (positions converted from
    semicircles, times from the device's Pacific time)."""
    track = decode("fenix5-run.fit")
    with (FILES / "fenix5-run.records.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert track.records == len(rows) == 21
    times = [datetime.strptime(row["timestamp"], "%a %b %d %H:%M:%S PDT %Y").replace(tzinfo=UTC)
             + timedelta(hours=7) for row in rows]
    assert track.start_utc_s == times[0].timestamp()
    assert track.series["time"] == [int((when - times[0]).total_seconds()) for when in times]
    for series, column, kind in (("heartrate", "heart_rate", int), ("cadence", "cadence", int),
                                 ("temp", "temperature", int), ("speed", "speed", float),
                                 ("distance", "distance", float), ("altitude", "altitude", float)):
        assert track.series[series] == [kind(row[column]) for row in rows], series
    assert track.series["lat"] == pytest.approx([int(row["position_lat"]) * SEMICIRCLE for row in rows], abs=1e-12)
    assert track.series["lng"] == pytest.approx([int(row["position_long"]) * SEMICIRCLE for row in rows], abs=1e-12)


def sdk_default_reading(data: bytes) -> tuple[dict[str, list], list[dict], dict]:
    """The series, laps and session as the SDK's default options give them (scaled, components expanded,
    datetimes, type names): an independent path to the values the fast options must reproduce."""
    messages, _ = Decoder(Stream.from_byte_array(bytearray(data))).read()
    records = [m for m in messages["record_mesgs"] if "timestamp" in m]
    first = records[0]["timestamp"]

    def column(name: str, scale: float = 1.0) -> list:
        return [m[name] * scale if name in m else None for m in records]

    series = {
        "time": [int((m["timestamp"] - first).total_seconds()) for m in records],
        "lat": column("position_lat", SEMICIRCLE), "lng": column("position_long", SEMICIRCLE),
        "distance": column("distance"), "altitude": column("enhanced_altitude"), "speed": column("enhanced_speed"),
        "heartrate": column("heart_rate"), "cadence": column("cadence"), "watts": column("power"),
        "temp": column("temperature"),
    }
    laps = [{"start_s": (lap["start_time"] - first).total_seconds(), "elapsed_s": lap.get("total_elapsed_time"),
             "distance_m": lap.get("total_distance"), "max_speed": lap.get("enhanced_max_speed"),
             "average_speed": lap.get("enhanced_avg_speed"), "average_heartrate": lap.get("avg_heart_rate"),
             "average_cadence": (lap["avg_cadence"] + lap.get("avg_fractional_cadence", 0)
                                 if "avg_cadence" in lap else None)}
            for lap in messages["lap_mesgs"]]
    session = messages["session_mesgs"][0]
    file_id = messages["file_id_mesgs"][0]
    return series, laps, {
        "sport_type": fit_sport_type(session["sport"], session.get("sub_sport")),
        "start_utc_s": session["start_time"].timestamp(), "timer_s": session["total_timer_time"],
        "distance_m": session["total_distance"], "ascent_m": session.get("total_ascent"),
        "device": f"{file_id['manufacturer']} {file_id['garmin_product']}",
    }


@pytest.mark.parametrize("name", REAL_FITS)
def test_fast_decode_options_keep_every_value_of_the_sdk_defaults(name):
    series, laps, session = sdk_default_reading(load(name))
    track = decode(name)
    assert track.records == len(series["time"])
    for key, values in series.items():
        if any(v is not None for v in values):
            assert track.series[key] == pytest.approx(values, abs=1e-9), key
        else:
            assert key not in track.series, key
    assert [{key: getattr(lap, key) for key in (laps[0] if laps else ())} for lap in track.laps] == laps
    assert {key: getattr(track.session, key) for key in session} == session


def test_enhanced_fields_are_read_where_a_device_writes_only_them():
    """Newer devices write enhanced_altitude/enhanced_speed and no altitude/speed (file made with the SDK's
    encoder, the one bulkfetch's simulator uses)."""
    mesg = Profile["mesg_num"]
    encoder = Encoder()
    encoder.write_mesg({"mesg_num": mesg["FILE_ID"], "type": "activity", "manufacturer": "development",
                        "product": 7, "time_created": 1_000_000_000})
    for second in range(5):
        encoder.write_mesg({"mesg_num": mesg["RECORD"], "timestamp": 1_000_000_000 + second,
                            "enhanced_altitude": 8000.4 + second, "enhanced_speed": 12.5, "power": 250 + second})
    encoder.write_mesg({"mesg_num": mesg["SESSION"], "timestamp": 1_000_000_004, "start_time": 1_000_000_000,
                        "sport": "cycling", "sub_sport": "virtual_activity", "total_elapsed_time": 4.0})
    track = decode_file(encoder.close(), "activities/1.fit")
    assert track.status == "ok" and track.start_utc_s == 1_000_000_000 + FIT_EPOCH_S
    assert track.series["altitude"] == pytest.approx([8000.4 + s for s in range(5)], abs=0.1)
    assert track.series["speed"] == [12.5] * 5 and track.series["watts"] == [250, 251, 252, 253, 254]
    assert track.session is not None and track.session.sport_type == "VirtualRide"


def test_truncated_fit_keeps_the_records_before_the_cut():
    track = decode("truncated.fit")
    assert (track.status, track.records) == ("truncated", 14)
    assert one_line(track.problem) and "14 records" in track.problem
    assert track.has("lat") and track.session is not None and track.session.sport_type == "Run"


def test_a_wrong_crc_alone_drops_nothing():
    """The CRC is not checked: a file whose data decodes keeps every record, whatever its last two bytes."""
    data = bytearray(load("fenix5-run.fit"))
    data[-2:] = bytes([data[-2] ^ 0xFF, data[-1] ^ 0xFF])
    track = decode_file(bytes(data), "activities/1.fit")
    assert (track.status, track.problem, track.series) == ("ok", None, decode("fenix5-run.fit").series)


def test_a_fit_cut_in_its_crc_or_padded_after_it_keeps_every_record():
    """Cut inside its CRC (the last two bytes): every record decoded, so it is ok, with a remark."""
    track = decode_file(load("fenix5-run.fit")[:-1], "activities/1.fit")
    assert (track.status, track.records) == ("ok", 21) and track.problem == "ends before its CRC"
    padded = decode_file(load("fenix5-run.fit") + b"\0" * 10, "activities/1.fit")
    assert (padded.status, padded.records, padded.problem) == ("ok", 21, "10 bytes after the FIT data ignored")


# -- gzip by content, not by name -----------------------------------------------------------------------------
def test_gzip_is_sniffed_by_content_not_by_name():
    plain = decode("fenix5-run.fit")
    for data, name in ((load("fenix5-run.fit.gz"), "activities/1.fit.gz"),
                       (load("fenix5-run.fit.gz"), "activities/1.fit"),   # a .fit that is gzipped
                       (gzip.compress(load("fenix5-run.fit")), "activities/1.gpx")):
        track = decode_file(data, name)
        assert track.gzipped and (track.format, track.series, track.laps, track.session) == \
            ("fit", plain.series, plain.laps, plain.session)
    not_gzipped = decode_file(load("fenix5-run.fit"), "activities/1.fit.gz")   # a .gz that is not
    assert not not_gzipped.gzipped and not_gzipped.series == plain.series


def test_concatenated_gzip_members_inflate_as_one_file():
    data = load("forerunner-run.tcx")
    track = decode_file(gzip.compress(data[:5000]) + gzip.compress(data[5000:]) + b"\0\0", "a.tcx.gz")
    assert track.status == "ok" and track.series == decode("forerunner-run.tcx").series


def test_a_gzip_bomb_is_refused_without_inflating_it_all(monkeypatch):
    monkeypatch.setattr(activity_files, "MAX_ACTIVITY_BYTES", 2**20)  # the real bound is 256 MiB
    bomb = gzip.compress(b"\0" * (3 * 2**20))
    track = decode_file(bomb, "activities/1.fit.gz")
    assert (track.status, track.records, track.gzipped) == ("unreadable", 0, True)
    assert one_line(track.problem) and track.problem.startswith("too large: ") and "1 MiB" in track.problem


def test_a_file_too_large_to_be_an_activity_is_not_read(monkeypatch, tmp_path):
    """The bound holds for the file as kept too: a decoding process never reads it into memory."""
    path = tmp_path / "1.fit"
    path.write_bytes(load("fenix5-run.fit"))
    assert decode_path(path, "activities/1.fit").status == "ok"
    monkeypatch.setattr(activity_files, "MAX_ACTIVITY_BYTES", path.stat().st_size - 1)
    track = decode_path(path, "activities/1.fit")
    assert (track.status, track.records, track.format) == ("unreadable", 0, "fit")
    assert one_line(track.problem) and track.problem.startswith("too large: ")


# -- TCX and GPX ----------------------------------------------------------------------------------------------
def test_forerunner_tcx_has_laps_heart_rate_and_distance():
    track = decode("forerunner-run.tcx")
    assert (track.format, track.status) == ("tcx", "ok")
    assert all(track.has(name) for name in ("lat", "lng", "altitude", "distance", "heartrate"))
    assert track.session is not None and track.session.sport_type == "Run"
    assert track.session.device == "Forerunner 410 Software Version 2.20"
    assert track.start_utc_s == datetime(2012, 12, 26, 21, 29, 53, tzinfo=UTC).timestamp()
    first = track.laps[0]
    assert len(track.laps) == 3 and [lap.start_s for lap in track.laps] == [0, 609, 1323]
    assert (first.timer_s, first.distance_m, first.calories) == (608.47, 1609.34399414, 94)
    assert (first.average_heartrate, first.max_heartrate, first.max_speed) == (139, 189, 4.55431461334)
    # the laps' distances add up to the distance the trackpoints reach
    reached = max(d for d in track.series["distance"] if d is not None)
    assert sum(lap.distance_m for lap in track.laps) == pytest.approx(reached, abs=5)


def test_hike_gpx_has_its_points_and_elevation():
    track = decode("hike.gpx")
    assert (track.format, track.status, track.records, track.laps) == ("gpx", "ok", 184, [])
    assert track.series["altitude"][:2] == [1614.678, 1636.776]
    assert track.series["lat"][0] == 46.434981 and track.series["lng"][0] == 13.748273
    assert not track.has("distance") and not track.has("heartrate")
    # GPSBabel wrote one placeholder time (1901) on every point, fractions and all
    assert set(track.series["time"]) == {0}
    assert track.session is not None and track.session.sport_type is None


def test_runkeeper_gpx_heart_rate_from_the_garmin_extension():
    track = decode("runkeeper-hr.gpx")
    assert (track.status, track.records) == ("ok", 1)
    assert track.series["heartrate"] == [171] and track.series["altitude"] == [3.4]
    assert track.start_utc_s == datetime(2016, 6, 17, 23, 41, 3, tzinfo=UTC).timestamp()


def test_gpx_type_names_the_sport():
    data = load("hike.gpx").replace(b"<trk>", b"<trk><name>Mojstrovka</name><type>hiking</type>", 1)
    track = decode_file(data, "activities/1.gpx")
    assert track.session is not None and track.session.sport_type == "Hike" and track.records == 184


@pytest.mark.parametrize("name", ["forerunner-run.tcx", "hike.gpx"])
@pytest.mark.parametrize("lead", [b"\n  \r\n\t", b"\xef\xbb\xbf", b"\xef\xbb\xbf\n\n   "])
def test_whitespace_or_a_bom_before_the_xml_declaration(name, lead):
    track = decode_file(lead + load(name), f"activities/{name}")
    assert track.status == "ok" and track.series == decode(name).series


@pytest.mark.parametrize("name", ["forerunner-run.tcx", "hike.gpx"])
@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le"])
@pytest.mark.parametrize("lead", ["", "\r\n  "])
def test_utf16_or_utf32_text_with_a_byte_order_mark(name, encoding, lead):
    """Saved as "Unicode" on Windows: a byte order mark, the declaration naming the encoding (or not)."""
    text = load(name).decode().lstrip()
    declared = re.sub(r'encoding="[^"]*"', f'encoding="{encoding[:6].upper()}"', text, count=1)
    bom = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE, "utf-32-le": codecs.BOM_UTF32_LE}
    for document in (declared, text):
        track = decode_file(bom[encoding] + (lead + document).encode(encoding), f"activities/{name}")
        assert (track.status, track.problem) == ("ok", None) and track.series == decode(name).series
    cut = (bom[encoding] + declared.encode(encoding))[:-4001]  # in the middle of a character, too
    track = decode_file(cut, f"activities/{name}")
    assert track.status == "truncated" and 0 < track.records < decode(name).records and one_line(track.problem)


def test_points_without_a_time_are_skipped_and_none_at_all_is_unreadable():
    data = load("hike.gpx")
    some_untimed = re.sub(rb"<time>[^<]*</time>", b"", data, count=11)  # the file's own <time> and 10 points
    assert decode_file(some_untimed, "a.gpx").records == 184 - 10
    track = decode_file(re.sub(rb"<time>[^<]*</time>", b"", data), "a.gpx")
    assert (track.status, track.records) == ("unreadable", 0)
    assert track.problem == "no timestamps: none of its 184 points has a time"


# -- unreadable input -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("data", "name", "fmt"), [
    (b"", "activities/1.fit.gz", "fit"),
    (b"\0" * 40, "activities/1.tcx", "tcx"),
    (b"hello, not an activity", "activities/1.gpx", "gpx"),
    (b"\x1f\x8b\x08\0garbage", "activities/1.fit.gz", "fit"),
    (b"<?xml version='1.0'?><kml><Document/></kml>", "activities/1.gpx", "gpx"),
    (b"<gpx><trk><trkseg></trkseg></trk></gpx>", "x", "gpx"),
    (b"\x0e\x10\xd9\x07\0\0\0\0.FIT\0\0", "activities/1.bin", "fit"),
    (b"random bytes", "activities/1.bin", None),
    (b"<?xml version='1.0' encoding='no-such-codec'?><gpx/>", "activities/1.gpx", "gpx"),
])
def test_garbage_is_unreadable_with_one_line_saying_why(data, name, fmt):
    track = decode_file(data, name)
    assert (track.status, track.records, track.format, track.start_utc_s) == ("unreadable", 0, fmt, None)
    assert one_line(track.problem), track.problem
    assert set(track.series) == {"time"}


def test_an_entity_expansion_bomb_is_refused_quickly():
    """expat's amplification limit stops the "billion laughs" before it expands (not in minutes)."""
    entities = b"".join(b'<!ENTITY e%d "%s">' % (level, b"&e%d;" % (level - 1) * 10) for level in range(1, 10))
    bomb = (b'<?xml version="1.0"?><!DOCTYPE gpx [<!ENTITY e0 "' + b"lol" * 30 + b'">' + entities + b"]>"
            b'<gpx><trk><trkseg><trkpt lat="1" lon="2"><time>2020-01-01T00:00:00Z</time><name>&e9;</name>'
            b"</trkpt></trkseg></trk></gpx>")
    track = decode_file(bomb, "activities/1.gpx")
    assert (track.status, track.records) == ("unreadable", 0) and one_line(track.problem)


def test_a_decoded_track_stores_and_reads_back(tmp_path):
    for name in ("edge500-ride.fit", "forerunner-run.tcx", "truncated.fit"):
        track = decode(name)
        write_track(tmp_path / f"{name}.arrow", track)
        assert read_track(tmp_path / f"{name}.arrow") == track


# -- sports ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("sport", "sub_sport", "expected"), [
    ("running", "generic", "Run"), ("running", "trail", "TrailRun"), ("running", "treadmill", "Run"),
    ("running", "virtual_activity", "VirtualRun"), ("cycling", "virtual_activity", "VirtualRide"),
    ("cycling", None, "Ride"), ("cycling", "mountain", "MountainBikeRide"), ("cycling", "gravel_cycling", "GravelRide"),
    ("e_biking", "generic", "EBikeRide"), ("walking", None, "Walk"), ("hiking", None, "Hike"),
    ("swimming", "lap_swimming", "Swim"), ("training", "strength_training", "WeightTraining"),
    ("rowing", None, "Rowing"), ("cross_country_skiing", None, "NordicSki"),
    ("generic", None, None), (None, None, None), ("flying", None, None),
])
def test_fit_sports_map_to_strava_sport_types(sport, sub_sport, expected):
    assert fit_sport_type(sport, sub_sport) == expected


def test_every_sport_mapping_names_a_strava_sport_type_and_a_fit_profile_value():
    fit_sports = set(Profile["types"]["sport"].values())
    fit_sub_sports = set(Profile["types"]["sub_sport"].values())
    for sport in fit_sports:
        for sub_sport in (None, *fit_sub_sports):
            assert fit_sport_type(sport, sub_sport) in (*SPORT_TYPES, None)
    from bulkfetch import device_sports
    assert {s for s, _ in device_sports._FIT_SUB_SPORTS} | set(device_sports._FIT_SPORTS) <= fit_sports
    assert {sub for _, sub in device_sports._FIT_SUB_SPORTS} <= fit_sub_sports
    assert (tcx_sport_type("Running"), tcx_sport_type("Biking"), tcx_sport_type("Other")) == ("Run", "Ride", None)
    assert [gpx_sport_type(t) for t in ("running", "VirtualRide", "trailrun", "9", "", None)] == \
        ["Run", "VirtualRide", "TrailRun", None, None, None]


# -- cut and corrupt files: never raises, never more than the whole ------------------------------------------
CUTTABLE = ("fenix5-run.fit", "fenix5-run.fit.gz", "fenix2-run.fit", "forerunner-run.tcx", "hike.gpx",
            "runkeeper-hr.gpx")
WHOLE = {name: decode(name) for name in CUTTABLE}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(CUTTABLE), fraction=st.floats(0, 1, exclude_max=True))
def test_a_file_cut_anywhere_keeps_a_prefix_of_its_records(name, fraction):
    data = load(name)
    cut = decode_file(data[:int(len(data) * fraction)], f"activities/{name}")
    whole = WHOLE[name]
    assert cut.status in ("ok", "truncated", "unreadable")
    assert cut.records <= whole.records
    assert cut.status == "unreadable" or cut.records > 0
    assert cut.problem is None or one_line(cut.problem)
    for series, values in cut.series.items():
        assert values == whole.series[series][:cut.records], series
    to_table(cut)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(("fenix5-run.fit", "truncated.fit", "forerunner-run.tcx", "runkeeper-hr.gpx")),
       changes=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=8))
def test_corrupt_bytes_never_raise_and_always_store(name, changes):
    data = bytearray(load(name))
    for where, value in changes:
        data[int(len(data) * where)] = value
    track = decode_file(bytes(data), f"activities/{name}")
    assert track.status in ("ok", "truncated", "unreadable")
    assert track.problem is None or one_line(track.problem)
    assert set(track.series) <= set(SERIES)
    to_table(track)  # every value fits its stored type
