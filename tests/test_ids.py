"""Athlete and activity ids from outside: one rule (bulkfetch.ids), a positive int64, wherever an id enters
(command-line arguments, profile.csv, another data_dir's folders). An id beyond int64 once broke every
later compaction of the data_dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkfetch.export_csv import parse_profile_csv
from bulkfetch.ids import MAX_ID, parse_id
from tests import test_import
from tests.conftest import run_cli
from tests.exports import ENGLISH_94, PROFILE_HEADER, ExportFile, csv_text, english_row, fixture, write_zip
from tests.test_athletes_cmd import connected

config = test_import.config  # the fixture: a config without API credentials (import needs none)


@pytest.mark.parametrize(("text", "expected"), [
    ("26462177", 26462177), (" 26462177 ", 26462177), (str(MAX_ID), MAX_ID),
    (str(MAX_ID + 1), None), ("18446744073709551616", None), ("9" * 5000, None),  # int() refuses 4,301 digits
    ("0", None), ("-5", None), ("+5", None), ("5.0", None), ("1e3", None), ("", None), ("0012", None),
    ("²", None), ("١٢", None),  # str.isdigit() takes both; int() refuses the first, reads the second as 12
])
def test_an_id_is_a_positive_int64_in_ascii_digits(text: str, expected: int | None) -> None:
    assert parse_id(text) == expected


def test_profile_csv_with_no_valid_id_records_none() -> None:
    for value in ("18446744073709551616", "²", "9" * 5000):
        assert parse_profile_csv(f"{PROFILE_HEADER}\n{value},a@example.com,Ann,,,,,,,\n".encode()) is None


@pytest.mark.parametrize("args", [
    ["import", "EXPORT", "--athlete", "18446744073709551616"],
    ["import", "EXPORT", "--athlete", "9223372036854775808"],
    ["fetch", "--athlete", "5,9223372036854775808"],
    ["plan", "--offline", "--athlete", "²"],
    ["athletes", "remove", "9223372036854775808"],
])
def test_an_athlete_id_beyond_int64_is_refused_in_one_line_and_nothing_is_written(tmp_path: Path, config: Path,
                                                                                  args: list[str]) -> None:
    export = write_zip(tmp_path / "export.zip", csv_text(ENGLISH_94, [english_row(1, "activities/1.fit")]),
                       [ExportFile("activities/1.fit", fixture("fenix5-run.fit"))])
    result = run_cli("--config", str(config), *[str(export) if arg == "EXPORT" else arg for arg in args])
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"from 1 to {MAX_ID}" in result.stderr
    assert not (tmp_path / "data").exists()


def test_an_export_whose_profile_holds_no_valid_id_imports_without_one(tmp_path: Path, config: Path) -> None:
    path = tmp_path / "export.zip"
    write_zip(path, csv_text(ENGLISH_94, [english_row(1, "activities/1.fit")]),
              [ExportFile("activities/1.fit", fixture("fenix5-run.fit"))],
              extra={"profile.csv": f"{PROFILE_HEADER}\n²,a@example.com,Ann,,,,,,,\n".encode()})
    result = run_cli("--config", str(config), "import", str(path))
    assert result.returncode == 0, result.stderr
    assert "does not say whose it is" in result.stderr
    assert (tmp_path / "data" / "athletes" / "unbound" / "export").is_dir()


def test_adopt_takes_no_folder_whose_name_is_no_valid_id(tmp_path: Path) -> None:
    data, other = tmp_path / "data", tmp_path / "other"
    connected(data, 5)
    bogus = other / "athletes" / str(MAX_ID + 1)
    (bogus / "raw" / "activities").mkdir(parents=True)
    (bogus / "raw" / "activities" / "1.json").write_text('{"id": 1}')
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\ndata_dir = "{data}"\n')
    result = run_cli("--config", str(config), "athletes", "adopt", str(other))
    assert result.returncode == 2 and "holds no athlete" in result.stderr, result.stderr
    assert (bogus / "raw" / "activities" / "1.json").is_file() and not (data / "athletes" / bogus.name).exists()
