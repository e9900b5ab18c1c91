"""`bulkfetch import` on exports as users hand them over after living with them: links in an unpacked
folder, names no file system takes, activities.csv re-saved by a spreadsheet, old headers, repeated rows,
a download cut short. Real CLI, real device files; exit 0 with what failed named, or exit 2 in one line
with nothing written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bulkfetch.export_store import ExportStore
from tests.conftest import run_cli
from tests.exports import ENGLISH_94, ExportFile, csv_text, english_row, fixture, write_folder, write_zip

ATHLETE = 27182818


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n', encoding="utf-8")
    return path


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
    assert "2 not imported" in line and "activities/3.fit: cannot be read (Too many levels of symbolic links)" \
        in line and "activities/4.fit: cannot be read (a folder, not a file)" in line, line
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
