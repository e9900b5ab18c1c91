"""Reading an account export: activities.csv in its real headers and languages, profile.csv, and the zip
or folder around them (unsafe member names refused, a re-zipped folder found)."""

from __future__ import annotations

import csv
import io
import os
import zipfile
import zlib
from pathlib import Path

import pytest

from bulkfetch.errors import ExportError
from bulkfetch.export_archive import MemberError, copy_member, member_crc32, open_export, read_small
from bulkfetch.export_csv import (
    ENGLISH,
    GERMAN,
    KM_M,
    LEGACY,
    MILE_M,
    CsvError,
    ExportActivity,
    display_unit_m,
    parse_activities_csv,
    parse_date,
    parse_number,
    parse_profile_csv,
    sport_type_of,
)
from bulkfetch.sports import SPORT_TYPES
from tests.exports import (
    ENGLISH_94,
    ENGLISH_101,
    ENGLISH_2019,
    GERMAN_92,
    LOWERCASE_2018,
    PROFILE_HEADER,
    ExportFile,
    csv_text,
    english_row,
    fixture,
    write_folder,
    write_zip,
)


# -- activities.csv ------------------------------------------------------------------------------------
@pytest.mark.parametrize("header", [ENGLISH_94, ENGLISH_101], ids=["94 columns", "101 columns"])
def test_english_rows_take_the_typed_second_of_each_duplicated_column(header: list[str]) -> None:
    # A real row's shape: the file number differs from the activity id, the first Distance is in km.
    row = english_row(9041865559, "activities/9700428229.fit.gz", sport="Virtual Ride", distance_m=33220.0,
                      elapsed_s=4000)
    row["Elapsed Time"] = "9999"  # the first of the pair must not be the one taken
    parsed = parse_activities_csv(csv_text(header, [row]))
    assert parsed.language == ENGLISH and parsed.bad_rows == 0
    assert parsed.activities == {9041865559: ExportActivity(
        activity_id=9041865559, start_date="2023-05-09T10:09:29Z", name="Morning Run", sport_type="VirtualRide",
        distance_m=33220.0, elapsed_s=4000, moving_s=3940, elevation_gain_m=42.0,
        file="activities/9700428229.fit.gz")}


def test_german_header_dates_decimal_commas_and_display_names() -> None:
    row = {"Aktivitäts-ID": "8228026758", "Aktivitätsdatum": "09.12.2022, 15:24:49", "Name der Aktivität": "Abendfahrt",
           "Aktivitätsart": "Radfahrt", "Verstrichene Zeit": "1800", "Distanz": "9,44", "Verstrichene Zeit#2": "1800.0",
           "Bewegungszeit": "1700.0", "Distanz#2": "9440.5", "Höhenzunahme": "12,5",
           "Dateiname": "activities/8228026758.gpx"}
    manual = {"Aktivitäts-ID": "8228026759", "Aktivitätsdatum": "10.12.2022, 07:00:00", "Aktivitätsart": "Lauf"}
    parsed = parse_activities_csv(csv_text(GERMAN_92, [row, manual]))
    assert parsed.language == GERMAN
    assert parsed.activities[8228026758] == ExportActivity(
        8228026758, "2022-12-09T15:24:49Z", "Abendfahrt", "Ride", 9440.5, 1800, 1700, 12.5, "activities/8228026758.gpx")
    assert parsed.activities[8228026759].file is None and parsed.activities[8228026759].sport_type == "Run"


def test_the_2019_header_has_one_distance_in_km_which_stands_in_for_a_missing_one() -> None:
    # The real row (hugovk/strava-tools#1): the same ride was 3681.0 in the lowercase header before.
    line = '1836776031,"Sep 12, 2018, 3:02:23 PM",Evening Ride,Ride,,783,3.68,true,Merida,activities/1836776031.gpx\n'
    manual = '1836776032,"Sep 13, 2018, 3:02:23 PM",Manual,Run,,1800,"5,01",false,,\n'  # a decimal comma
    parsed = parse_activities_csv((",".join(ENGLISH_2019) + "\n" + line + manual).encode())
    assert parsed.language == ENGLISH
    assert parsed.activities[1836776031] == ExportActivity(
        1836776031, "2018-09-12T15:02:23Z", "Evening Ride", "Ride", None, 783, None, None, "activities/1836776031.gpx",
        display_distance_m=3680.0)
    assert parsed.activities[1836776032].display_distance_m == 5010.0
    # A header with the typed pair needs no stand-in.
    assert parse_activities_csv(csv_text(ENGLISH_94, [english_row(5, None)])).activities[5].display_distance_m is None


def test_a_lone_display_distance_is_in_miles_when_the_files_say_so() -> None:
    # (display value, the file's metres): files agree with their rows, but one cropped on Strava and a short one.
    miles = [(6.21, 9994.0), (26.1, 42003.5), (3.11, 2400.0), (0.3, 480.0)]
    assert display_unit_m(miles) == MILE_M
    assert display_unit_m([(value * MILE_M / KM_M, metres) for value, metres in miles]) == KM_M
    # No evidence (manual activities only, or files too short to tell): km, as before.
    assert display_unit_m([]) == display_unit_m([(0.5, 804.0)]) == KM_M


def test_the_lowercase_header_before_mid_2019_is_in_metres() -> None:
    line = "1836776031,2018-09-12 15:02:23,Evening Ride,Ride,,783,3681.0,true,Merida,activities/1836776031.gpx\n"
    parsed = parse_activities_csv((",".join(LOWERCASE_2018) + "\n" + line).encode())
    assert parsed.language == LEGACY
    assert parsed.activities[1836776031].distance_m == 3681.0
    assert parsed.activities[1836776031].start_date == "2018-09-12T15:02:23Z"


def test_another_language_keeps_the_ids_and_finds_the_file_column_by_its_values() -> None:
    # Not a real header (none in another language was at hand): what matters is that no name is known.
    header = ["Identifiant", "Date", "Nom", "Type", "Temps écoulé", "Distance", "Fichier", "Poids"]
    text = ("\ufeff" + ",".join(header) + "\n"
            '11,"9 mai 2023, 10:09:29",Course,Course à pied,3600,"10,0",activities/12.fit.gz,60\n'
            '13,"10 mai 2023, 10:09:29",Muscu,Musculation,1800,0,,60\n').encode()
    parsed = parse_activities_csv(text)
    assert parsed.language is None and parsed.header[0] == "Identifiant"
    assert parsed.activities == {
        11: ExportActivity(11, None, None, None, None, None, None, None, "activities/12.fit.gz"),
        13: ExportActivity(13, None, None, None, None, None, None, None, None)}


@pytest.mark.parametrize(("delimiter", "encoding"), [(";", "utf-8-sig"), (";", "cp1252"), ("\t", "utf-16")],
                         ids=["CSV UTF-8", "CSV", "Unicode text"])
def test_a_copy_a_spreadsheet_saved_with_other_separators_reads_the_same(delimiter: str, encoding: str) -> None:
    """Excel in a German locale saves "CSV UTF-8" and "CSV" (in Windows-1252) with semicolons (its decimal
    separator is the comma), "Unicode text" in UTF-16 with tabs; names and numbers keep their commas."""
    row = {"Aktivitäts-ID": "8228026758", "Aktivitätsdatum": "09.12.2022, 15:24:49", "Aktivitätsart": "Radfahrt",
           "Name der Aktivität": "Fahrt; mit, Trennzeichen", "Distanz": "9,44", "Distanz#2": "9440,5",
           "Verstrichene Zeit#2": "1800", "Dateiname": "activities/8228026758.gpx"}
    comma = parse_activities_csv(csv_text(GERMAN_92, [row]))
    text = io.StringIO()
    csv.writer(text, delimiter=delimiter, lineterminator="\r\n").writerows(
        csv.reader(io.StringIO(csv_text(GERMAN_92, [row]).decode())))
    resaved = parse_activities_csv(text.getvalue().encode(encoding, errors="replace"))  # Excel too: "CO?"
    assert (resaved.activities, resaved.language) == (comma.activities, GERMAN)
    assert resaved.activities[8228026758].distance_m == 9440.5
    assert resaved.activities[8228026758].name == "Fahrt; mit, Trennzeichen"


def test_a_message_quotes_at_most_the_start_of_the_first_column() -> None:
    parsed = parse_activities_csv(("Identifiant" * 20 + ",Fichier\n11,activities/11.fit\n").encode())
    assert parsed.language is None and parsed.first_column == "Identifiant" * 3 + "Identi…"
    assert parse_activities_csv(b"Identifiant,Fichier\n11,activities/11.fit\n").first_column == "Identifiant"


def test_rows_without_a_valid_id_are_counted_and_skipped() -> None:
    rows = [english_row(5, None), english_row(6, None), {"Activity ID": "x"}, {"Activity ID": "-3"}]
    rows[1]["Activity ID"] = "0"
    parsed = parse_activities_csv(csv_text(ENGLISH_94, rows))
    assert set(parsed.activities) == {5} and parsed.bad_rows == 3 and parsed.duplicate_rows == 0


def test_rows_repeating_an_activity_id_are_counted_and_the_last_is_kept() -> None:
    rows = [english_row(5, None, name="first"), english_row(6, None), english_row(5, None, name="second"),
            english_row(5, None, name="third")]
    parsed = parse_activities_csv(csv_text(ENGLISH_94, rows))
    assert parsed.duplicate_rows == 2 and parsed.activities[5].name == "third" and len(parsed.activities) == 2


@pytest.mark.parametrize(("name", "why"), [
    ("../../etc/passwd", "climbs out"), ("/etc/passwd", "is absolute"), ("activities/../../x.fit", "climbs out"),
    ("media/x.fit", "outside activities/"), ("activities\\..\\..\\x.fit", "climbs out"),
    ("activities/", "outside activities/"), ("C:/activities/x.fit", "is absolute"),
    ("activities/a\x00b.fit", "holds a control character"), ("activities/a\nb.fit", "holds a control character")])
def test_a_file_name_outside_activities_or_unsafe_is_refused(name: str, why: str) -> None:
    with pytest.raises(CsvError, match=why):
        parse_activities_csv(csv_text(ENGLISH_94, [english_row(5, name)]))


def test_not_csv_text_is_refused_in_one_line() -> None:
    with pytest.raises(CsvError, match="is not UTF-16 text"):
        parse_activities_csv(b"\xff\xfeActivity ID")  # a byte order mark, then an odd number of bytes
    with pytest.raises(CsvError, match="is not UTF-8 or Windows-1252 text"):
        parse_activities_csv(b"Activity ID\n\x81\x8d\n")  # neither: cp1252 leaves these undefined
    with pytest.raises(CsvError, match="empty"):
        parse_activities_csv(b"")


@pytest.mark.parametrize(("text", "expected"), [
    ("May 9, 2023, 10:09:29 AM", "2023-05-09T10:09:29Z"),
    ("Sep 12, 2018, 12:02:23 AM", "2018-09-12T00:02:23Z"),
    ("Sep 12, 2018, 12:02:23 PM", "2018-09-12T12:02:23Z"),
    ("09.12.2022, 15:24:49", "2022-12-09T15:24:49Z"),
    ("2018-09-12 15:02:23", "2018-09-12T15:02:23Z"),
    ("31.02.2022, 15:24:49", None),
    ("Foo 9, 2023, 10:09:29 AM", None),
    ("May 9, 2023, 13:09:29 PM", None),
    ("", None),
])
def test_dates_in_each_format_the_export_used(text: str, expected: str | None) -> None:
    assert parse_date(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("9,44", 9.44), ("5000.0", 5000.0), ("1,234.5", 1234.5), ("1.234,5", 1234.5), ("42", 42.0),
    ("", None), ("nan", None), ("inf", None), ("abc", None),
])
def test_numbers_with_either_decimal_separator(text: str, expected: float | None) -> None:
    assert parse_number(text) == expected


def test_every_sport_type_and_its_display_name_map_to_it() -> None:
    for sport in SPORT_TYPES:
        spaced = "".join(f" {c}" if c.isupper() and i else c for i, c in enumerate(sport))  # "Virtual Ride"
        assert sport_type_of(sport) == sport and sport_type_of(spaced) == sport, sport
    assert [sport_type_of(name) for name in ("E-Bike Ride", "Stair-Stepper", "Rock Climb", "Canoe", "HIIT",
                                             "Radfahrt", "Lauf", "Virtuelle Radfahrt", "Wanderung", "Quidditch")] == \
        ["EBikeRide", "StairStepper", "RockClimbing", "Canoeing", "HighIntensityIntervalTraining",
         "Ride", "Run", "VirtualRide", "Hike", None]


def test_profile_csv_gives_the_athlete_id_in_its_first_column() -> None:
    assert parse_profile_csv(f"{PROFILE_HEADER}\n1234567,a@example.com,Ann,Example,F,,60,,,\n".encode()) == 1234567
    assert parse_profile_csv(f"{PROFILE_HEADER}\n".encode()) is None
    assert parse_profile_csv(b"Athlete ID\nnot-a-number\n") is None
    assert parse_profile_csv(b"Athlete ID\n0\n") is None
    assert parse_profile_csv(f"Athlete ID\n{2**63}\n".encode()) is None  # no int64 athlete_id partition


# -- the zip or folder ---------------------------------------------------------------------------------
def _csv() -> bytes:
    return csv_text(ENGLISH_94, [english_row(7, "activities/7.fit")])


@pytest.mark.parametrize("bad", ["../evil.txt", "/etc/evil", "media/../../evil", "C:/evil", "media/a\x07b.jpg"])
def test_a_zip_with_a_member_outside_it_is_refused(tmp_path: Path, bad: str) -> None:
    path = write_zip(tmp_path / "export.zip", _csv(), [], extra={bad: b"x"})
    with pytest.raises(ExportError, match="unsafe") as refused, open_export(path):
        pass
    assert repr(bad) in str(refused.value) and "\n" not in str(refused.value)


def test_members_are_read_by_name_streamed_with_the_zip_crc(tmp_path: Path) -> None:
    data = fixture("fenix2-run.fit")
    path = write_zip(tmp_path / "export.zip", _csv(), [ExportFile("activities/7.fit", data)],
                     extra={"media/photo.jpg": b"jpeg", "bikes.csv": b"Bike Name\n"})
    with open_export(path) as export:
        member = export.member("activities/7.fit")
        assert member is not None and member.size == len(data)
        sink = io.BytesIO()
        assert copy_member(export, "activities/7.fit", sink) == (len(data), member_crc32(export, member))
        assert sink.getvalue() == data
        assert read_small(export, "activities.csv") == _csv() and read_small(export, "profile.csv") is None
        assert export.member("activities/8.fit") is None


def test_a_re_zipped_folder_is_found_one_level_down(tmp_path: Path) -> None:
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("export_12345/activities.csv", _csv())
        archive.writestr("export_12345/activities/7.fit", b"fit")
    with open_export(path) as export:
        assert read_small(export, "activities.csv") == _csv()
        assert export.member("activities/7.fit") is not None


def test_a_folder_export_follows_its_links_to_files_and_names_what_is_no_file(tmp_path: Path) -> None:
    (tmp_path / "elsewhere.fit").write_bytes(b"linked")
    folder = write_folder(tmp_path / "export", _csv(), [ExportFile("activities/7.fit", b"fit")])
    os.symlink(tmp_path / "elsewhere.fit", folder / "activities" / "8.fit")  # out of the export: followed
    os.symlink("9.fit", folder / "activities" / "9.fit")  # a loop
    os.symlink(tmp_path, folder / "activities" / "10.fit")  # a folder
    os.mkfifo(folder / "activities" / "11.fit")  # opened, it would block the import
    os.symlink(tmp_path / "gone.fit", folder / "activities" / "12.fit")  # to nothing
    with open_export(tmp_path) as export:  # the folder holding the unpacked export works too
        member = export.member("activities/7.fit")
        assert member is not None and member.crc32 is None and member_crc32(export, member) == zlib.crc32(b"fit")
        linked = export.member("activities/8.fit")
        assert linked is not None and linked.size == 6 and member_crc32(export, linked) == zlib.crc32(b"linked")
        for name, why in (("9.fit", "a loop of symbolic links"), ("10.fit", "a folder, not a file"),
                          ("11.fit", "not a regular file"), ("x" * 256 + ".fit", "a name of 260 bytes")):
            with pytest.raises(MemberError, match=why):
                export.member(f"activities/{name}")
        assert export.member("activities/12.fit") is None and export.member("activities/13.fit") is None


def test_a_zip_member_whose_name_is_too_long_to_keep_is_that_members_error(tmp_path: Path) -> None:
    long_name = "activities/" + "é" * 110 + ".fit"  # 224 bytes in UTF-8: with the temporary name's additions
    # (bulkfetch.store) more than the 255 a file system takes
    path = write_zip(tmp_path / "export.zip", _csv(), [ExportFile(long_name, b"fit")])
    with open_export(path) as export:
        with pytest.raises(MemberError, match="a name of 224 bytes, too long to keep: at most 223"):
            export.member(long_name)
        assert read_small(export, "activities.csv") == _csv()


@pytest.mark.parametrize("make", ["missing", "text file", "zip without activities.csv", "empty folder",
                                  "a link loop", "activities.csv a link loop"])
def test_what_is_not_an_export_is_refused_in_one_line(tmp_path: Path, make: str) -> None:
    path = tmp_path / "export"
    if make == "a link loop":
        os.symlink(path, path)
    elif make == "activities.csv a link loop":
        path.mkdir()
        os.symlink(path / "activities.csv", path / "activities.csv")
    elif make == "text file":
        path.write_text("hello")
    elif make == "zip without activities.csv":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("profile.csv", "Athlete ID\n1\n")
    elif make == "empty folder":
        path.mkdir()
    with pytest.raises(ExportError) as refused, open_export(path):
        pass
    assert str(path) in str(refused.value) and "\n" not in str(refused.value)
    assert ("link to nothing (or a loop)" in str(refused.value)) == ("loop" in make)

