"""`bulkfetch import` on exports as users hand them over after living with them: links in an unpacked
folder, names no file system takes, activities.csv re-saved by a spreadsheet, old headers, repeated rows,
a download cut short. Real CLI, real device files; exit 0 with what failed named, or exit 2 in one line
with nothing written."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pytest

from bulkfetch.export_store import ExportStore
from tests import test_import
from tests.conftest import run_cli
from tests.exports import ENGLISH_94, GERMAN_92, ExportFile, csv_text, english_row, fixture, write_folder, write_zip

config = test_import.config  # the fixture: a config without API credentials (import needs none)

ATHLETE = 27182818


def _import(config: Path, path: Path, *args: str) -> str:
    """The summary line of an import that must succeed."""
    result = run_cli("--config", str(config), "import", str(path), "--athlete", str(ATHLETE), *args)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return result.stdout.strip().splitlines()[-1]


def _store(config: Path) -> ExportStore:
    return ExportStore(config.parent / "data" / "athletes" / str(ATHLETE))


def test_links_in_a_folder_export_are_followed_to_files_and_the_rest_is_named(tmp_path: Path, config: Path) -> None:
    """activities/ moved to another disk and linked back, activities.csv a link too: the files are there."""
    moved = tmp_path / "other-disk" / "activities"
    moved.mkdir(parents=True)
    (moved / "1.fit").write_bytes(fixture("fenix5-run.fit"))
    (moved / "2.gpx").write_bytes(fixture("hike.gpx"))
    os.symlink("3.fit", moved / "3.fit")  # a loop
    os.symlink(tmp_path, moved / "4.fit")  # a folder
    rows = [english_row(1, "activities/1.fit"), english_row(2, "activities/2.gpx"),
            english_row(3, "activities/3.fit"), english_row(4, "activities/4.fit")]
    (tmp_path / "kept.csv").write_bytes(csv_text(ENGLISH_94, rows))
    folder = tmp_path / "export"
    folder.mkdir()
    os.symlink(moved, folder / "activities")
    os.symlink(tmp_path / "kept.csv", folder / "activities.csv")
    line = _import(config, folder)
    assert line.startswith("imported 4 activities from the export: 2 files (1 "), line
    # The loop never resolves: a bad file, not one tried again; the folder may become a file.
    assert "1 unreadable (activities/3.fit: cannot be read (a loop of symbolic links, it never reaches a file))" \
        in line, line
    assert "1 not imported, tried again next time (activities/4.fit: cannot be read (a folder, not a file))" \
        in line, line
    store = _store(config)
    assert sorted(store.files()) == [1, 2] and {e.status for e in store.files().values()} == {"ok"}
    assert store.file_path("activities/1.fit").read_bytes() == fixture("fenix5-run.fit")
    assert not store.file_path("activities/1.fit").is_symlink()  # the bytes are kept, not the link


@pytest.mark.parametrize("packed", ["zip", "folder"])
def test_a_file_name_too_long_to_keep_is_reported_and_the_rest_imports(
        tmp_path: Path, config: Path, packed: str) -> None:
    long_name = "activities/" + "x" * 300 + ".fit"
    longest_kept = "activities/" + "y" * 219 + ".fit"  # 223 bytes: kept, under its temporary name first
    rows = [english_row(1, longest_kept), english_row(2, long_name)]
    files = [ExportFile(longest_kept, fixture("fenix5-run.fit"))]
    if packed == "zip":  # a zip holds such a name; a folder cannot, its CSV names it all the same
        path = write_zip(tmp_path / "export.zip", csv_text(ENGLISH_94, rows), [*files, ExportFile(long_name, b"x")])
    else:
        path = write_folder(tmp_path / "export", csv_text(ENGLISH_94, rows), files)
    line = _import(config, path)
    assert line.startswith("imported 2 activities from the export: 1 file (1 fit), 1 not imported"), line
    assert "x.fit: cannot be read (a name of 304 bytes, too long to keep: at most 223)" in line, line
    assert sorted(_store(config).files()) == [1]
    assert _store(config).file_path(longest_kept).read_bytes() == fixture("fenix5-run.fit")


def test_an_activities_csv_resaved_with_semicolons_imports(tmp_path: Path, config: Path) -> None:
    """Opened and saved again in Excel with a German locale: semicolons, and it read 0 activities before."""
    row = {"Aktivitäts-ID": "8228026758", "Aktivitätsdatum": "09.12.2022, 15:24:49", "Aktivitätsart": "Radfahrt",
           "Distanz": "9,44", "Distanz#2": "9440,5", "Verstrichene Zeit#2": "4000",
           "Dateiname": "activities/8228026758.fit"}
    resaved = io.StringIO()
    csv.writer(resaved, delimiter=";", lineterminator="\r\n").writerows(
        csv.reader(io.StringIO(csv_text(GERMAN_92, [row]).decode())))
    folder = write_folder(tmp_path / "export", b"\xef\xbb\xbf" + resaved.getvalue().encode(),
                          [ExportFile("activities/8228026758.fit", fixture("edge500-ride.fit"))])
    result = run_cli("--config", str(config), "import", str(folder), "--athlete", str(ATHLETE))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("imported 1 activity from the export: 1 file (1 fit)")
    assert "language" not in result.stderr
    activity = _store(config).activities()[8228026758]
    assert (activity.start_date, activity.sport_type, activity.distance_m) == ("2022-12-09T15:24:49Z", "Ride", 9440.5)


def test_the_line_about_another_language_quotes_only_the_start_of_its_first_column(tmp_path: Path,
                                                                                   config: Path) -> None:
    header = "Identifiant de l'activité " * 10 + ",Fichier\n"
    folder = write_folder(tmp_path / "export", (header + "11,activities/11.fit\n").encode(),
                          [ExportFile("activities/11.fit", fixture("fenix5-run.fit"))])
    result = run_cli("--config", str(config), "import", str(folder), "--athlete", str(ATHLETE))
    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stderr.splitlines() if "language" in line]
    assert "(its first column is \"Identifiant de l'activité Identifiant d…\")" in line, line
    assert sorted(_store(config).files()) == [11]


def _parquet_activities(config: Path) -> dict[int, dict]:
    import pyarrow.dataset as ds

    table = ds.dataset(config.parent / "data" / "parquet" / "activities", format="parquet",
                       partitioning="hive").to_table(columns=["id", "distance", "start_date", "year"])
    return {row["id"]: row for row in table.to_pylist()}


def test_the_2019_csvs_one_distance_in_km_is_used_where_no_file_gives_one(tmp_path: Path, config: Path) -> None:
    """The 10-column header's Distance is km for display (3681.0 m became 3.68): a manual activity gets it,
    an activity with a file gets the file's own."""
    header = ("Activity ID,Activity Date,Activity Name,Activity Type,Activity Description,Elapsed Time,Distance,"
              "Commute,Activity Gear,Filename\n")
    rows = ('1,"Apr 9, 2012, 9:22:26 PM",With file,Run,,57,0.20,false,,activities/1.fit\n'
            '2,"Sep 12, 2018, 3:02:23 PM",Manual,Ride,,783,3.68,true,Merida,\n')
    folder = write_folder(tmp_path / "export", (header + rows).encode(),
                          [ExportFile("activities/1.fit", fixture("fenix5-run.fit"))])
    line = _import(config, folder)
    assert line.startswith("imported 2 activities from the export: 1 file (1 fit), 1 manual without a file"), line
    activities = _parquet_activities(config)
    assert activities[2]["distance"] == 3680.0
    assert activities[1]["distance"] is not None and abs(activities[1]["distance"] - 200.0) > 0.01  # the file's


def test_repeated_rows_and_rows_without_a_start_are_counted_in_the_summary(tmp_path: Path, config: Path) -> None:
    rows = [english_row(1, "activities/1.fit", name="first"), english_row(1, "activities/1.fit", name="again"),
            english_row(2, None, date="Feb 30, 2020, 10:00:00 AM"),  # no such day, no file: no start at all
            english_row(3, "activities/3.fit", date="31.02.2020"),  # its file's start stands in
            {"Activity ID": "not-an-id"}]
    folder = write_folder(tmp_path / "export", csv_text(ENGLISH_94, rows),
                          [ExportFile("activities/1.fit", fixture("fenix5-run.fit")),
                           ExportFile("activities/3.fit", fixture("fenix2-run.fit"))])
    line = _import(config, folder)
    assert line.endswith("1 manual without a file, 1 without a start time (in year=0), 1 duplicate row (the last "
                         "kept), 1 row without a valid activity id (skipped)"), line
    assert _store(config).activities()[1].name == "again"
    activities = _parquet_activities(config)
    assert activities[2]["year"] == 0 and activities[2]["start_date"] is None
    assert activities[3]["year"] == 2015 and activities[1]["year"] == 2023


@pytest.mark.parametrize("case", ["cut short", "empty .zip", "missing", "unsafe member", "CSV not text",
                                  "another athlete's profile"])
def test_bad_input_is_one_line_and_creates_no_data_dir(tmp_path: Path, config: Path, case: str) -> None:
    csv_data = csv_text(ENGLISH_94, [english_row(1, "activities/1.fit")])
    files = [ExportFile("activities/1.fit", fixture("fenix2-run.fit"))]
    if case == "CSV not text":
        csv_data = b"\x81\x8d" + csv_data  # undefined in Windows-1252, invalid in UTF-8
    path = write_zip(tmp_path / "export_1.zip", csv_data, files,
                     profile_id=ATHLETE + 1 if case == "another athlete's profile" else None,
                     extra={"../evil.txt": b"x"} if case == "unsafe member" else None)
    if case == "cut short":  # a download stopped part-way
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif case == "empty .zip":
        path.write_bytes(b"")
    elif case == "missing":
        path.unlink()
    result = run_cli("--config", str(config), "import", str(path), "--athlete", str(ATHLETE))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert {"cut short": "looks cut short or damaged: it starts as a zip but its end (the zip's table of contents) "
                         "is missing", "empty .zip": "looks damaged: it is named .zip but is none (it is empty)",
            "missing": "does not exist", "unsafe member": "is unsafe",
            "CSV not text": "is not UTF-8 or Windows-1252 text",
            "another athlete's profile": f"the export is athlete {ATHLETE + 1}'s"}[case] in result.stderr
    if case in ("cut short", "empty .zip"):
        assert "download the export again" in result.stderr
    assert not (config.parent / "data").exists()
