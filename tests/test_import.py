"""`bulkfetch import`: the real command on small exports built from real device files and real
activities.csv headers (see tests/exports.py). No API access is needed, and none is configured."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import zipfile
import zlib
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.ipc as ipc
import pytest

from bulkfetch import derive, importer
from bulkfetch.activity_files import decode_file
from bulkfetch.auth import Tokens
from bulkfetch.errors import LockedError
from bulkfetch.export_store import ExportStore
from bulkfetch.locks import data_dir_lock, hold, import_lock
from bulkfetch.roster import Roster
from bulkfetch.store import TEMP_MARK, RawStore
from bulkfetch.track import FORMAT_VERSION
from tests.conftest import cli_env, run_cli
from tests.ctrl_c import run_ctrl_c_in_a_futures_lock, session
from tests.exports import (
    ENGLISH_94,
    ENGLISH_2019,
    GERMAN_92,
    ExportFile,
    csv_text,
    english_row,
    fixture,
    write_folder,
    write_zip,
)

ATHLETE = 31415926


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config without any Strava credentials: import needs none."""
    path = tmp_path / "config.toml"
    path.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n', encoding="utf-8")
    return path


def _data(config: Path) -> Path:
    return config.parent / "data"


def _store(config: Path, athlete_id: int | None = ATHLETE) -> ExportStore:
    name = str(athlete_id) if athlete_id is not None else "unbound"
    return ExportStore(_data(config) / "athletes" / name)


def _real_export(tmp_path: Path, *, name: str = "export.zip") -> tuple[Path, dict[int, bytes]]:
    """Seven activities as real exports have them: FIT (plain and gzipped under a name that differs from
    the id), TCX with whitespace before its XML declaration, two GPX, a truncated FIT, a file that is no
    activity file at all, and a manual activity; media and other CSVs beside them."""
    files = {
        101: ExportFile("activities/101.fit", fixture("fenix2-run.fit")),
        102: ExportFile("activities/99102.fit.gz", fixture("edge500-ride.fit", gzipped=True)),
        103: ExportFile("activities/103.tcx", b"\n  " + fixture("forerunner-run.tcx")),
        104: ExportFile("activities/104.gpx", fixture("hike.gpx")),
        105: ExportFile("activities/105.gpx", fixture("runkeeper-hr.gpx")),
        106: ExportFile("activities/106.fit", fixture("truncated.fit")),
        107: ExportFile("activities/107.fit", b"this is not an activity file"),
    }
    rows = [english_row(i, file.name) for i, file in files.items()] + [english_row(108, None, sport="Weight Training")]
    path = write_zip(tmp_path / name, csv_text(ENGLISH_94, rows), list(files.values()), profile_id=ATHLETE,
                     extra={"media/photo.jpg": b"\xff\xd8jpeg", "bikes.csv": b"Bike Name\nOld\n"})
    return path, {i: file.data for i, file in files.items()}


def test_an_export_imports_with_its_files_kept_verbatim_and_decoded(tmp_path: Path, config: Path) -> None:
    path, files = _real_export(tmp_path)
    result = run_cli("--config", str(config), "import", str(path))
    assert result.returncode == 0, result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("imported 8 activities from the export: 7 files (4 fit, 2 gpx, 1 tcx)"), summary
    assert "1 truncated (activities/106.fit: " in summary and "1 unreadable (activities/107.fit: " in summary
    assert summary.endswith("1 manual without a file"), summary
    store = _store(config)
    imported = store.files()
    assert sorted(imported) == sorted(files)
    for activity_id, data in files.items():
        assert store.file_path(imported[activity_id].file).read_bytes() == data  # verbatim, gzip kept
    assert {i: entry.status for i, entry in imported.items()} == {
        101: "ok", 102: "ok", 103: "ok", 104: "ok", 105: "ok", 106: "truncated", 107: "unreadable"}
    assert imported[102].file == "activities/99102.fit.gz" and imported[102].format == "fit"
    assert store.read_track(106).records == imported[106].records > 0  # the records before the cut
    assert store.read_track(101).records == imported[101].records > 2000 and "heartrate" in imported[101].series
    assert store.read_track(107).records == 0
    # Only activities.csv and the activity files are kept: no media, no other CSV.
    kept = sorted(str(p.relative_to(store.folder)) for p in store.folder.rglob("*") if p.is_file())
    assert not any(name.startswith("media") or name == "bikes.csv" for name in kept), kept
    assert [p.name for p in store.csv_versions()] == [n for n in kept if n.endswith(".csv")]
    assert store.activities()[108].file is None and store.activities()[108].sport_type == "WeightTraining"
    log = (_data(config) / "bulkfetch.log").read_text()
    assert summary in log and "activities/106.fit: truncated: " in log and "files/s" in log


def test_a_second_import_decodes_nothing_and_a_newer_export_adds_and_replaces(tmp_path: Path, config: Path) -> None:
    path, _ = _real_export(tmp_path)
    assert run_cli("--config", str(config), "import", str(path)).returncode == 0
    store = _store(config)
    stamps = {i: store.track_path(i).stat().st_mtime_ns for i in store.files()}

    again = run_cli("--config", str(config), "import", str(path))
    assert again.returncode == 0, again.stderr
    assert "nothing new" in again.stderr
    assert again.stdout.strip().endswith("7 imported before (not decoded again)")
    # Its failed files, once and plainly: in the summary line, not logged again as if decoded now.
    assert again.stdout.count("activities/106.fit") == 1 and "1 truncated (as imported before: activities/106.fit: " \
        in again.stdout, again.stdout
    log = (_data(config) / "bulkfetch.log").read_text()
    assert log.count("activities/106.fit: truncated: ") == 1
    assert "partition(s)" not in log  # each compaction's last line says what it wrote, nothing before it
    assert {i: store.track_path(i).stat().st_mtime_ns for i in store.files()} == stamps

    # A newer export: one new activity, and activity 104's file replaced by another recording.
    rows = [english_row(i, f.name) for i, f in _export_files_of(path).items()] + [
        english_row(108, None), english_row(109, "activities/109.fit")]
    newer_files = {**_export_files_of(path), 104: ExportFile("activities/104.gpx", fixture("runkeeper-hr.gpx")),
                   109: ExportFile("activities/109.fit", fixture("fenix5-run.fit"))}
    newer = write_zip(tmp_path / "newer.zip", csv_text(ENGLISH_94, rows), list(newer_files.values()),
                      profile_id=ATHLETE)
    result = run_cli("--config", str(config), "import", str(newer))
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip().splitlines()[-1]
    assert "2 files (2 " in line or "2 files (1 " in line, line
    assert "1 replaced a file imported before" in line and "6 imported before" in line, line
    after = store.files()
    assert sorted(after) == [*range(101, 108), 109]
    assert after[104].records == store.read_track(104).records == store.read_track(105).records
    assert {i: store.track_path(i).stat().st_mtime_ns for i in after if i not in (104, 109)} == \
        {i: stamp for i, stamp in stamps.items() if i != 104}
    assert len(store.csv_versions()) == 2


def _export_files_of(path: Path) -> dict[int, ExportFile]:
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.startswith("activities/")]
        by_id = {101: "101.fit", 102: "99102.fit.gz", 103: "103.tcx", 104: "104.gpx", 105: "105.gpx",
                 106: "106.fit", 107: "107.fit"}
        return {i: ExportFile(f"activities/{name}", archive.read(f"activities/{name}"))
                for i, name in by_id.items() if f"activities/{name}" in names}


def test_a_german_export_in_a_folder(tmp_path: Path, config: Path) -> None:
    row = {"Aktivitäts-ID": "8228026758", "Aktivitätsdatum": "09.12.2022, 15:24:49", "Name der Aktivität": "Abendfahrt",
           "Aktivitätsart": "Radfahrt", "Verstrichene Zeit": "4000", "Distanz": "9,44", "Verstrichene Zeit#2": "4000.0",
           "Distanz#2": "9440.0", "Dateiname": "activities/8228026758.fit"}
    folder = write_folder(tmp_path / "export", csv_text(GERMAN_92, [row]),
                          [ExportFile("activities/8228026758.fit", fixture("edge500-ride.fit"))], profile_id=ATHLETE)
    result = run_cli("--config", str(config), "import", str(folder))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("imported 1 activity from the export: 1 file (1 fit)")
    store = _store(config)
    activity = store.activities()[8228026758]
    assert (activity.start_date, activity.sport_type, activity.distance_m) == ("2022-12-09T15:24:49Z", "Ride", 9440.0)
    assert store.files()[8228026758].status == "ok"


def test_an_unsafe_zip_is_refused_and_nothing_is_written(tmp_path: Path, config: Path) -> None:
    path = write_zip(tmp_path / "export.zip", csv_text(ENGLISH_94, [english_row(1, "activities/1.fit")]),
                     [ExportFile("activities/1.fit", fixture("fenix5-run.fit"))], profile_id=ATHLETE,
                     extra={"../../outside.txt": b"x"})
    result = run_cli("--config", str(config), "import", str(path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "'../../outside.txt'" in result.stderr
    assert not (_data(config) / "athletes").exists()
    assert not (tmp_path.parent / "outside.txt").exists()


@pytest.mark.parametrize("name", ["activities/a\x00b.fit", "activities/a\x1bb.fit", "../../outside.fit"])
def test_an_unsafe_file_name_in_activities_csv_is_exit_2_in_one_line(tmp_path: Path, config: Path, name: str) -> None:
    folder = write_folder(tmp_path / "export", csv_text(ENGLISH_94, [english_row(1, name)]), [])
    result = run_cli("--config", str(config), "import", str(folder), "--athlete", "5")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "activities.csv names an unsafe file" in result.stderr and "Traceback" not in result.stderr
    assert not (_data(config) / "athletes").exists()


@pytest.mark.parametrize("what", ["missing", "not an export"])
def test_a_path_that_is_no_export_is_exit_2_in_one_line(tmp_path: Path, config: Path, what: str) -> None:
    path = tmp_path / "nothing.zip"
    if what == "not an export":
        path.write_text("a,b\n")
    result = run_cli("--config", str(config), "import", str(path))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and str(path) in result.stderr


def _connect(config: Path, athlete_id: int) -> None:
    Roster(_data(config)).connect(Tokens(refresh_token=f"token-{athlete_id}", athlete_id=athlete_id))


def _export_without_profile(tmp_path: Path, ids: range) -> Path:
    rows = [english_row(i, f"activities/{i}.fit") for i in ids]
    return write_zip(tmp_path / "anonymous.zip", csv_text(ENGLISH_94, rows),
                     [ExportFile(f"activities/{i}.fit", fixture("fenix5-run.fit")) for i in ids])


def test_with_several_athletes_connected_the_export_names_its_athlete_or_is_refused(tmp_path: Path,
                                                                                    config: Path) -> None:
    _connect(config, 11)
    _connect(config, 12)
    path = _export_without_profile(tmp_path, range(1, 3))
    refused = run_cli("--config", str(config), "import", str(path))
    assert refused.returncode == 2 and "athlete 11" in refused.stderr and "athlete 12" in refused.stderr
    assert "--athlete" in refused.stderr and refused.stderr.count("\n") == 1
    chosen = run_cli("--config", str(config), "import", str(path), "--athlete", "12")
    assert chosen.returncode == 0, chosen.stderr
    assert sorted(_store(config, 12).files()) == [1, 2] and not _store(config, 11).exists()


def test_an_export_whose_activities_another_athlete_lists_is_refused(tmp_path: Path, config: Path) -> None:
    _connect(config, 11)
    _connect(config, 12)
    listing = RawStore(_data(config) / "athletes" / "12").new_listing(time.time())
    listing.write_page(1, b'[{"id": 1, "start_date": "2023-05-09T10:09:29Z"}, {"id": 2}]')
    listing.mark_complete(2)
    path = _export_without_profile(tmp_path, range(1, 3))
    refused = run_cli("--config", str(config), "import", str(path), "--athlete", "11")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "not athlete 11's" in refused.stderr and "athlete 12's list" in refused.stderr
    assert not _store(config, 11).exists()
    # Without --athlete, the list tells whose it is.
    found = run_cli("--config", str(config), "import", str(path))
    assert found.returncode == 0, found.stderr
    assert sorted(_store(config, 12).files()) == [1, 2]


def _list(config: Path, athlete_id: int, ids: range) -> None:
    """A complete list of `ids` in athlete `athlete_id`'s raw store, as a fetch leaves it."""
    listing = RawStore(_data(config) / "athletes" / str(athlete_id)).new_listing(time.time())
    listing.write_page(1, orjson.dumps([{"id": i, "start_date": "2023-05-09T10:09:29Z"} for i in ids]))
    listing.mark_complete(len(ids))


def _export_of(tmp_path: Path, ids: range, profile_id: int) -> Path:
    rows = [english_row(i, f"activities/{i}.fit") for i in ids]
    return write_zip(tmp_path / f"as-{profile_id}.zip", csv_text(ENGLISH_94, rows),
                     [ExportFile(f"activities/{i}.fit", fixture("fenix5-run.fit")) for i in ids], profile_id=profile_id)


@pytest.mark.parametrize("held", ["list", "export"])
def test_a_profile_naming_another_athlete_than_the_activities_holder_leads_to_one_choice(
        tmp_path: Path, config: Path, held: str) -> None:
    """profile.csv says athlete 77, athlete 12's list (or earlier import) holds the activities: the refusal's
    hint is a command that is then taken, not one refused in turn by pointing back (hands-on)."""
    if held == "list":
        _list(config, 12, range(1, 3))
    else:
        assert run_cli("--config", str(config), "import", str(_export_of(tmp_path, range(1, 3), 12))).returncode == 0
    path = _export_of(tmp_path, range(1, 3), 77)
    refused = run_cli("--config", str(config), "import", str(path))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "not athlete 77's (its profile.csv says so)" in refused.stderr
    assert refused.stderr.rstrip().endswith("import it with --athlete 12")
    taken = run_cli("--config", str(config), "import", str(path), "--athlete", "12")
    assert taken.returncode == 0, taken.stderr
    assert sorted(_store(config, 12).files()) == [1, 2] and not _store(config, 77).exists()
    other = run_cli("--config", str(config), "import", str(path), "--athlete", "13")
    assert other.returncode == 2 and other.stderr.rstrip().endswith("import it with --athlete 12"), other.stderr


def test_activities_two_athletes_hold_are_refused_without_offering_either(tmp_path: Path, config: Path) -> None:
    _list(config, 11, range(1, 2))
    _list(config, 12, range(2, 3))
    path = _export_of(tmp_path, range(1, 3), 12)
    for flags in ([], ["--athlete", "11"], ["--athlete", "12"]):
        refused = run_cli("--config", str(config), "import", str(path), *flags)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
        assert "athlete 11's list" in refused.stderr and "athlete 12's list" in refused.stderr
        assert "import each athlete's own export" in refused.stderr


def test_an_export_of_unknown_athlete_waits_unbound_and_moves_once_known(tmp_path: Path, config: Path) -> None:
    path = _export_without_profile(tmp_path, range(1, 3))
    first = run_cli("--config", str(config), "import", str(path))
    assert first.returncode == 0, first.stderr
    assert "does not say whose it is" in first.stderr and "not compacted" in first.stderr
    assert first.stdout.strip().endswith("; no Parquet until the athlete is known: rerun with --athlete ID or after "
                                         "'bulkfetch auth'"), first.stdout  # the summary, the line a user reads
    assert sorted(_store(config, None).files()) == [1, 2]
    stamps = {i: _store(config, None).track_path(i).stat().st_mtime_ns for i in (1, 2)}
    known = run_cli("--config", str(config), "import", str(path), "--athlete", "77")
    assert known.returncode == 0, known.stderr
    assert known.stdout.strip().endswith("2 imported before (not decoded again)")
    assert {i: _store(config, 77).track_path(i).stat().st_mtime_ns for i in (1, 2)} == stamps
    assert not (_data(config) / "athletes" / "unbound").exists()


def test_an_unbound_export_that_cannot_move_is_said_and_left_alone(tmp_path: Path, config: Path) -> None:
    anonymous = _export_without_profile(tmp_path, range(1, 3))
    assert run_cli("--config", str(config), "import", str(anonymous)).returncode == 0
    own = write_zip(tmp_path / "own.zip", csv_text(ENGLISH_94, [english_row(3, "activities/3.gpx")]),
                    [ExportFile("activities/3.gpx", fixture("hike.gpx"))], profile_id=77)
    assert run_cli("--config", str(config), "import", str(own)).returncode == 0
    result = run_cli("--config", str(config), "import", str(anonymous), "--athlete", "77")
    assert result.returncode == 0, result.stderr
    assert "holds an export imported before its athlete was known" in result.stderr
    assert "athlete 77 has an imported export already, so it stays where it is" in result.stderr
    assert sorted(_store(config, None).files()) == [1, 2] and sorted(_store(config, 77).files()) == [1, 2, 3]


def test_the_profile_and_the_flag_must_agree(tmp_path: Path, config: Path) -> None:
    path, _ = _real_export(tmp_path)
    result = run_cli("--config", str(config), "import", str(path), "--athlete", "5")
    assert result.returncode == 2 and f"athlete {ATHLETE}'s" in result.stderr and result.stderr.count("\n") == 1


def test_two_imports_of_one_athlete_do_not_interleave_and_a_run_compacting_it_takes_the_import_in(
        tmp_path: Path, config: Path) -> None:
    path, _ = _real_export(tmp_path)
    store = _store(config)
    with store.lock():
        busy = run_cli("--config", str(config), "import", str(path))
    assert busy.returncode == 2 and f"(PID {os.getpid()})" in busy.stderr
    # A run's compaction of this athlete under way (its lock, as bulkfetch.compact takes it): it re-reads the
    # index when it is done, so the import leaves the Parquet to it.
    compacting = _data(config) / "athletes" / str(ATHLETE) / "state"
    compacting.mkdir(parents=True)
    with hold(compacting / "compact.lock", "compact", busy=lambda holder: LockedError("in use")):
        beside = run_cli("--config", str(config), "import", str(path))
    assert beside.returncode == 0, beside.stderr
    assert f"not compacted now: another compaction (PID {os.getpid()})" in beside.stderr
    assert "that run compacts this import before it ends" in beside.stderr
    assert len(store.files()) == 7 and not list((_data(config) / "parquet").glob("*/athlete_id=*"))


@pytest.mark.parametrize("holder", ["fetch", "fetch --no-compact", "plan", "compact"])
def test_beside_any_run_the_import_compacts_its_athlete(tmp_path: Path, config: Path, holder: str) -> None:
    path, _ = _real_export(tmp_path)
    _data(config).mkdir()
    with data_dir_lock(_data(config), holder):
        beside = run_cli("--config", str(config), "import", str(path))
    assert beside.returncode == 0, beside.stderr
    assert "not compacted" not in beside.stderr and f"compacted athlete {ATHLETE} into" in beside.stderr
    assert list((_data(config) / "parquet" / "activities").glob(f"athlete_id={ATHLETE}/year=*/*.parquet"))


def test_a_refused_run_says_so_in_the_log_too(tmp_path: Path, config: Path) -> None:
    _data(config).mkdir()
    with data_dir_lock(_data(config), "fetch"):
        refused = run_cli("--config", str(config), "compact")
    assert refused.returncode == 2
    last = (_data(config) / "bulkfetch.log").read_text().splitlines()[-1]
    assert f"exit 2: another bulkfetch fetch (PID {os.getpid()}) is using {_data(config)};" in last, last


@pytest.mark.parametrize("alone", ["athletes remove --purge", "athletes adopt", "compact --rebuild"])
def test_no_import_runs_beside_a_run_that_needs_the_data_dir_alone(tmp_path: Path, config: Path, alone: str) -> None:
    path, _ = _real_export(tmp_path)
    _data(config).mkdir()
    with data_dir_lock(_data(config), alone, alone=True):
        refused = run_cli("--config", str(config), "import", str(path))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert f"another bulkfetch {alone} (PID {os.getpid()})" in refused.stderr
    assert not (_data(config) / "athletes").exists()  # nothing written for an athlete it may be deleting


def test_a_rebuild_waits_for_the_imports_a_plain_compact_does_not(tmp_path: Path, config: Path) -> None:
    _data(config).mkdir()
    with import_lock(_data(config)):
        rebuild = run_cli("--config", str(config), "compact", "--rebuild")
        plain = run_cli("--config", str(config), "compact")
    assert rebuild.returncode == 2 and f"another bulkfetch import (PID {os.getpid()})" in rebuild.stderr
    assert "'compact --rebuild' needs the data_dir to itself" in rebuild.stderr
    assert plain.returncode == 0, plain.stderr


def _many_copies(tmp_path: Path, count: int) -> Path:
    data = fixture("fenix2-run.fit")
    rows = [english_row(i, f"activities/{i}.fit") for i in range(1, count + 1)]
    return write_zip(tmp_path / "many.zip", csv_text(ENGLISH_94, rows),
                     [ExportFile(f"activities/{i}.fit", data) for i in range(1, count + 1)], profile_id=ATHLETE)


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "Ctrl-C"])
def test_a_stopped_import_resumes_and_imports_each_file_exactly_once(tmp_path: Path, config: Path, stop: int) -> None:
    count = 40  # a loaded machine may deliver the signal late: the import must still be running by then
    path = _many_copies(tmp_path, count)
    store = _store(config)
    child = subprocess.Popen([sys.executable, "-m", "bulkfetch", "--config", str(config), "import", str(path)],
                             env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    deadline = time.monotonic() + 60
    while len(store.decoded_ids()) < 3 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    if stop == signal.SIGINT:
        os.killpg(child.pid, stop)  # Ctrl-C reaches the terminal's group: the command and its workers
    else:
        os.kill(child.pid, stop)  # the command only: its workers and its forkserver must end by themselves
    try:
        _, stderr = child.communicate(timeout=60)  # a worker left holding its stdout: this times out
        assert child.returncode == (-signal.SIGKILL if stop == signal.SIGKILL else 130), stderr
        if stop == signal.SIGINT:
            assert "rerun 'bulkfetch import' to continue" in stderr and "Traceback" not in stderr
        deadline = time.monotonic() + 10
        while session(child.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not session(child.pid), "a worker outlived the import"
    finally:
        for pid in session(child.pid):
            os.kill(pid, signal.SIGKILL)
    done = {i: store.track_path(i).stat().st_mtime_ns for i in store.decoded_ids()}
    assert 0 < len(done) < count, "the import was not stopped half-way: raise the count"

    rerun = run_cli("--config", str(config), "import", str(path))
    assert rerun.returncode == 0, rerun.stderr
    line = rerun.stdout.strip().splitlines()[-1]
    decoded_now = int(line.split(": ", 1)[1].split(" file")[0])
    before = int(line.rsplit("; ", 1)[1].split(" imported before")[0])
    assert decoded_now + before == count and before >= len(done), line
    assert sorted(store.files()) == list(range(1, count + 1))
    assert {i: store.track_path(i).stat().st_mtime_ns for i in done} == done  # never decoded twice
    left = [p for p in _data(config).rglob("*") if TEMP_MARK in p.name]
    assert not left, left


def test_ctrl_c_inside_a_futures_lock_does_not_hang_the_import(tmp_path: Path, config: Path) -> None:
    """The Ctrl-C comes just as the import took a lock of the decodings it waits for (see tests/ctrl_c.py),
    where it hung the import: 130 in one line, no process left, and the rerun imports the rest, each track
    as an import left alone writes it."""
    count = 12
    path = _many_copies(tmp_path, count)
    code, out, err = run_ctrl_c_in_a_futures_lock(["--config", str(config), "import", str(path)], tmp_path / "site")
    assert code is not None, "the import hung after Ctrl-C"
    assert code == 130 and "Traceback" not in err, (code, out, err)
    said = "bulkfetch: import interrupted; what was imported is kept, rerun 'bulkfetch import' to continue"
    assert err.splitlines()[-1] == said and err.count("bulkfetch:") == 1, err  # after its progress line
    assert 0 < len(_store(config).decoded_ids()) < count, "not stopped half-way"

    assert run_cli("--config", str(config), "import", str(path)).returncode == 0
    alone = tmp_path / "alone.toml"
    alone.write_text(f'[storage]\ndata_dir = "{tmp_path / "alone"}"\n', encoding="utf-8")
    assert run_cli("--config", str(alone), "import", str(path)).returncode == 0
    tracks = [ExportStore(data / "athletes" / str(ATHLETE)) for data in (_data(config), tmp_path / "alone")]
    assert sorted(tracks[0].files()) == list(range(1, count + 1)) == sorted(tracks[1].decoded_ids())
    for i in range(1, count + 1):
        assert ipc.open_file(tracks[0].track_path(i)).read_all() == ipc.open_file(tracks[1].track_path(i)).read_all()


def test_a_rerun_after_a_killed_import_names_the_truncated_file_the_killed_one_decoded(
        tmp_path: Path, config: Path) -> None:
    """The summary describes the export as imported: the truncated file decoded before the kill (its entry
    in the index, or its track adopted) is named, though this run did not decode it."""
    count = 8
    data = {i: fixture("truncated.fit" if i == 1 else "fenix2-run.fit") for i in range(1, count + 1)}
    rows = [english_row(i, f"activities/{i}.fit") for i in data]
    path = write_zip(tmp_path / "export.zip", csv_text(ENGLISH_94, rows),
                     [ExportFile(f"activities/{i}.fit", data[i]) for i in data], profile_id=ATHLETE)
    store = _store(config)
    child = subprocess.Popen([sys.executable, "-m", "bulkfetch", "--config", str(config), "import", str(path)],
                             env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    deadline = time.monotonic() + 60
    while 1 not in store.decoded_ids() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)  # jobs go in activity id order: the truncated file is decoded first
    os.killpg(child.pid, signal.SIGKILL)
    child.wait(timeout=60)
    assert 1 in store.decoded_ids() and len(store.decoded_ids()) < count, "not stopped half-way: raise the count"
    rerun = run_cli("--config", str(config), "import", str(path))
    assert rerun.returncode == 0, rerun.stderr
    line = rerun.stdout.strip().splitlines()[-1]
    assert "1 truncated (as imported before: activities/1.fit: " in line, line
    assert sorted(store.files()) == list(range(1, count + 1))


def test_a_zip64_export_with_a_large_member_imports_under_a_memory_cap(tmp_path: Path, config: Path) -> None:
    """The archive is bigger than the memory the import may use: reading it whole, or the big member,
    would fail; streaming one member at a time does not. Enough files for the worker processes to decode
    them (under the same cap: they inherit it), one a gzip bomb that would inflate past the cap."""
    large = 512 << 20
    path = tmp_path / "big.zip"
    files = {1: "1.fit", 2: "2.gpx", 3: "3.fit.gz", 4: "4.tcx", 5: "5.fit.gz"}
    rows = [english_row(i, f"activities/{name}") for i, name in files.items()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("activities.csv", csv_text(ENGLISH_94, rows))
        with archive.open("activities/1.fit", "w", force_zip64=True) as member:
            member.write(fixture("fenix2-run.fit"))
        archive.writestr("activities/2.gpx", fixture("hike.gpx"))
        archive.writestr("activities/3.fit.gz", fixture("fenix5-run.fit", gzipped=True))
        archive.writestr("activities/4.tcx", fixture("forerunner-run.tcx"))
        # gzip: 384 MiB of zeros in well under 1 MiB; run-length matching finds it ~3x faster than level 9's search
        bomb = zlib.compressobj(9, zlib.DEFLATED, 31, 9, zlib.Z_RLE)
        zeros = bytes(1 << 20)
        archive.writestr("activities/5.fit.gz", b"".join([*(bomb.compress(zeros) for _ in range(384)), bomb.flush()]))
        with archive.open(zipfile.ZipInfo("media/video.mp4"), "w", force_zip64=True) as member:
            chunk = os.urandom(1 << 20)
            for _ in range(large >> 20):
                member.write(chunk)
    assert path.stat().st_size > large and len(files) >= importer.PARALLEL_MIN_FILES
    # The cap: what the command has mapped once its modules are loaded, plus half the archive.
    capped = (
        "import resource, sys\n"
        "import bulkfetch.cli, bulkfetch.importer, bulkfetch.compact\n"
        "mapped = int(next(l for l in open('/proc/self/status') if l.startswith('VmSize')).split()[1]) * 1024\n"
        f"resource.setrlimit(resource.RLIMIT_AS, (mapped + {large // 2}, resource.RLIM_INFINITY))\n"
        f"sys.exit(bulkfetch.cli.main(['--config', {str(config)!r}, 'import', {str(path)!r}, '--athlete', '5']))\n"
    )
    result = subprocess.run([sys.executable, "-c", capped], env=cli_env(MALLOC_ARENA_MAX="2"), capture_output=True,
                            text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("imported 5 activities from the export: 5 files"), line
    assert "1 unreadable (activities/5.fit.gz: too large: inflates to more than" in line, line
    kept = sum(p.stat().st_size for p in (_data(config)).rglob("*") if p.is_file())
    assert kept < large // 8  # the media member was not copied
    imported = _store(config, 5).files()
    assert {i: e.status for i, e in imported.items()} == {1: "ok", 2: "ok", 3: "ok", 4: "ok", 5: "unreadable"}


def _damaged_zip(path: Path, files: dict[int, ExportFile], damaged: str) -> Path:
    """An export (stored, not deflated) whose member `damaged` has one byte flipped: its CRC-32 fails."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("activities.csv", csv_text(ENGLISH_94, [english_row(i, f.name) for i, f in files.items()]))
        for file in files.values():
            archive.writestr(file.name, file.data)
        archive.writestr("profile.csv", f"Athlete ID\n{ATHLETE}\n")
        info = archive.getinfo(damaged)
    raw = bytearray(path.read_bytes())
    raw[info.header_offset + 30 + len(info.filename) + 100] ^= 0xFF  # a byte of the stored file
    path.write_bytes(bytes(raw))
    return path


def test_a_damaged_zip_member_is_reported_and_the_others_import(tmp_path: Path, config: Path) -> None:
    path = _damaged_zip(tmp_path / "export.zip", {1: ExportFile("activities/1.fit", fixture("fenix5-run.fit")),
                                                  2: ExportFile("activities/2.gpx", fixture("hike.gpx"))},
                        "activities/1.fit")
    result = run_cli("--config", str(config), "import", str(path))
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip().splitlines()[-1]
    assert "1 file (1 gpx)" in line and "1 not imported, tried again next time (activities/1.fit: cannot be read (" \
        in line and "CRC" in line, line
    assert sorted(_store(config).files()) == [2]
    assert not _store(config).file_path("activities/1.fit").exists()


def test_a_newer_export_with_a_damaged_member_keeps_the_old_import_whole(tmp_path: Path, config: Path) -> None:
    first = {1: ExportFile("activities/1.fit", fixture("fenix5-run.fit")),
             2: ExportFile("activities/2.gpx", fixture("hike.gpx"))}
    assert run_cli("--config", str(config), "import", str(write_zip(
        tmp_path / "first.zip", csv_text(ENGLISH_94, [english_row(i, f.name) for i, f in first.items()]),
        list(first.values()), profile_id=ATHLETE))).returncode == 0
    store = _store(config)
    before = store.files()
    records = store.read_track(1).records
    # The newer export has another recording of activity 1, and that member is damaged.
    newer = _damaged_zip(tmp_path / "newer.zip", {**first, 1: ExportFile("activities/1.fit",
                                                                         fixture("fenix2-run.fit"))},
                         "activities/1.fit")
    for _ in range(2):  # and again: the same damaged export changes nothing either
        result = run_cli("--config", str(config), "import", str(newer))
        assert result.returncode == 0, result.stderr
        line = result.stdout.strip().splitlines()[-1]
        assert "1 not imported, tried again next time (activities/1.fit: cannot be read (" in line, line
        assert store.files() == before
        assert store.read_track(1).records == records
        assert store.file_path("activities/1.fit").read_bytes() == fixture("fenix5-run.fit")


def test_a_damaged_index_costs_no_decoding(tmp_path: Path, config: Path) -> None:
    path, files = _real_export(tmp_path)
    assert run_cli("--config", str(config), "import", str(path)).returncode == 0
    store = _store(config)
    stamps = {i: store.track_path(i).stat().st_mtime_ns for i in files}
    (_data(config) / "athletes" / str(ATHLETE) / "state" / "export.json").write_text("{not json")
    assert len(store.csv_versions()) == 1 and store.activities()[108].sport_type == "WeightTraining"
    again = run_cli("--config", str(config), "import", str(path))
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().endswith("7 imported before (not decoded again)")
    assert {i: store.track_path(i).stat().st_mtime_ns for i in files} == stamps
    assert {i: e.status for i, e in store.files().items()} == {i: "ok" for i in range(101, 106)} | {
        106: "truncated", 107: "unreadable"}


def test_a_newer_export_in_another_language_adds_without_erasing(tmp_path: Path, config: Path) -> None:
    first = write_zip(tmp_path / "first.zip", csv_text(ENGLISH_94, [english_row(1, "activities/1.fit", name="Old")]),
                      [ExportFile("activities/1.fit", fixture("fenix5-run.fit"))], profile_id=ATHLETE)
    assert run_cli("--config", str(config), "import", str(first)).returncode == 0
    header = "Identifiant,Date,Nom,Fichier\n"
    rows = '1,"9 mai 2023",Vieux,activities/1.fit\n2,"10 mai 2023",Neuf,activities/2.gpx\n'
    newer = write_zip(tmp_path / "newer.zip", (header + rows).encode(),
                      [ExportFile("activities/1.fit", fixture("fenix5-run.fit")),
                       ExportFile("activities/2.gpx", fixture("hike.gpx"))], profile_id=ATHLETE)
    result = run_cli("--config", str(config), "import", str(newer))
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stderr.splitlines() if "language" in line][0].count("'Identifiant'") == 1
    activities = _store(config).activities()
    assert (activities[1].name, activities[1].start_date) == ("Old", "2023-05-09T10:09:29Z")
    assert activities[2].file == "activities/2.gpx" and activities[2].name is None
    assert sorted(_store(config).files()) == [1, 2]


@pytest.mark.parametrize("language", ["en", "de"])
def test_the_simulators_export_imports_whole(tmp_path: Path, config: Path, language: str) -> None:
    """The simulator's export has every quirk at once (renumbered files, gzipped .fit, whitespace before
    <?xml, one cut FIT, manual activities); its sidecar says where, and the history what the CSV says."""
    from bulkfetch.simulator.export import write_export
    from bulkfetch.simulator.history import History

    history = History.build(seed=5, count=14, athlete_id=4242, now_s=1.8e9, duration_s=300)
    exported = write_export(tmp_path / "export.zip", history, language=language)
    result = run_cli("--config", str(config), "import", str(exported.path))
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip().splitlines()[-1]
    corrupt = exported.corrupt
    assert corrupt is not None and f"1 truncated ({corrupt.member}: " in line, line
    assert line.endswith(f"{len(exported.manual)} manual without a file"), line
    store = _store(config, 4242)  # profile.csv's athlete
    files = store.files()
    assert {i: entry.file for i, entry in files.items()} == {f.activity_id: f.member for f in exported.files}
    assert {i for i, entry in files.items() if entry.status != "ok"} == {corrupt.activity_id}
    for activity in history.activities.values():
        row = store.activities()[activity.id]
        start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(activity.start_s))
        assert (row.sport_type, row.start_date, row.elapsed_s) == (activity.sport.sport_type, start,
                                                                   activity.elapsed_s), activity.id
        assert row.distance_m == activity.distance_m and (row.file is None) == activity.manual


def test_the_roster_loads_no_pyarrow_and_the_import_no_compaction() -> None:
    """Every command asks the roster whether an athlete imported an export: that costs no pyarrow. The
    import's workers load the decoders, not compaction (nor, through it, the schema and the planner)."""
    probe = ("import sys\n"
             "import bulkfetch.roster\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pyarrow')[:1])\n"
             "import bulkfetch.importer\n"
             "print(sorted(m for m in sys.modules if m in ('bulkfetch.compact', 'bulkfetch.plan',\n"
             "                                          'bulkfetch.schema')))\n")
    result = subprocess.run([sys.executable, "-c", probe], env=cli_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[]", "[]"]


def test_decoding_takes_the_cpus_the_import_may_use_at_most_eight(monkeypatch: pytest.MonkeyPatch) -> None:
    """A container limits a process's CPUs by its affinity, not by what os.cpu_count() says of the host."""
    probe = ("import os\n"
             "from bulkfetch.importer import decoding_workers\n"
             "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
             "print(decoding_workers())\n")
    result = subprocess.run([sys.executable, "-c", probe], env=cli_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1"]
    monkeypatch.setattr(importer, "available_cpus", lambda: 64)  # a 64-core host
    assert importer.decoding_workers() == importer.MAX_WORKERS == 8


# -- what the index keeps, and when a file is decoded again ------------------------------------------------
def _agreeing_row(activity_id: int, fixture_name: str, file: str, *, sport: str, date: str | None = None) -> dict:
    """activities.csv's row for a fixture whose distance and elapsed time agree with the file (a file whose
    totals disagree with Strava's is stale and gives no rows)."""
    summary = derive.file_summary(decode_file(fixture(fixture_name), fixture_name))
    assert summary.distance_m is not None and summary.elapsed_s is not None and summary.start_utc_s is not None
    moment = datetime.fromtimestamp(summary.start_utc_s, tz=UTC)
    return english_row(activity_id, file, sport=sport, distance_m=summary.distance_m,
                       elapsed_s=round(summary.elapsed_s), date=date or moment.strftime("%b ") +
                       f"{moment.day}, {moment.year}, " + moment.strftime("%I:%M:%S %p").lstrip("0"))


def _two_activities(tmp_path: Path, name: str, *, run_sport: str = "Run") -> Path:
    files = [ExportFile("activities/1.gpx", fixture("hike.gpx")),
             ExportFile("activities/2.fit", fixture("fenix5-run.fit"))]
    rows = [_agreeing_row(1, "hike.gpx", "activities/1.gpx", sport="Ride"),
            _agreeing_row(2, "fenix5-run.fit", "activities/2.fit", sport=run_sport)]
    return write_zip(tmp_path / name, csv_text(ENGLISH_94, rows), files, profile_id=ATHLETE)


def test_the_index_keeps_each_files_summary_derived_with_the_csvs_sport(tmp_path: Path, config: Path) -> None:
    """The import's worker derives each file's summary once, for the sport activities.csv gives (a GPX
    ride's file says no sport a threshold could follow); fetch, plan and status read it from the index."""
    assert run_cli("--config", str(config), "import", str(_two_activities(tmp_path, "first.zip"))).returncode == 0
    store = _store(config)
    entries = store.files()
    for activity_id, sport in ((1, "Ride"), (2, "Run")):
        entry = entries[activity_id]
        assert entry.summary == derive.file_summary(store.read_track(activity_id), sport)
        assert entry.summary is not None and entry.summary.sport_type == sport
        assert (entry.derive_version, entry.track_version) == (derive.DERIVE_VERSION, FORMAT_VERSION)
    stamp = store.track_path(1).stat().st_mtime_ns
    # The athlete made activity 2 a walk on Strava: its summary follows, from the kept file.
    result = run_cli("--config", str(config), "import", str(_two_activities(tmp_path, "newer.zip", run_sport="Walk")))
    assert result.returncode == 0, result.stderr
    assert "1 decoded again from the kept file (" in result.stdout, result.stdout
    after = store.files()
    assert after[2].summary == derive.file_summary(store.read_track(2), "Walk") and after[2].summary is not None
    assert after[2].summary.sport_type == "Walk" and after[1] == entries[1]
    assert store.track_path(1).stat().st_mtime_ns == stamp


def _store_as_an_older_bulkfetch(store: ExportStore, activity_id: int) -> None:
    """The activity's decoded track and index entry as a bulkfetch with another track format left them."""
    path = store.track_path(activity_id)
    with pa.memory_map(str(path)) as source:
        table = ipc.open_file(source).read_all()
    (key, meta), = table.schema.metadata.items()
    older = {**orjson.loads(meta), "version": FORMAT_VERSION - 1}
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table.replace_schema_metadata({key: orjson.dumps(older)}))
    path.write_bytes(sink.getvalue().to_pybytes())
    index_path = store.athlete_folder / "state" / "export.json"
    index = orjson.loads(index_path.read_bytes())
    index["files"][str(activity_id)]["track_version"] = FORMAT_VERSION - 1
    index_path.write_bytes(orjson.dumps(index))


def _parquet_ids(config: Path, table: str, key: str) -> set[int]:
    return set(ds.dataset(_data(config) / "parquet" / table, partitioning="hive").to_table(columns=[key])
               .column(key).to_pylist())


def test_tracks_stored_in_another_format_are_decoded_again_from_the_kept_files(tmp_path: Path, config: Path) -> None:
    path = _two_activities(tmp_path, "export.zip")
    assert run_cli("--config", str(config), "import", str(path)).returncode == 0
    assert _parquet_ids(config, "streams", "activity_id") == {1, 2}
    store = _store(config)
    for activity_id in (1, 2):
        _store_as_an_older_bulkfetch(store, activity_id)
    # A compaction decodes them again before it reads them: their rows stay.
    compacted = run_cli("--config", str(config), "compact", "--rebuild")
    assert compacted.returncode == 0, compacted.stderr
    assert "decoding 2 imported files again from the kept files" in compacted.stderr
    assert {i: (e.track_version, store.read_track(i).records == e.records) for i, e in store.files().items()} == \
        {1: (FORMAT_VERSION, True), 2: (FORMAT_VERSION, True)}
    assert _parquet_ids(config, "streams", "activity_id") == {1, 2}
    # So does the next import, from the kept file (not copied again), and says so.
    _store_as_an_older_bulkfetch(store, 2)
    kept = store.file_path("activities/2.fit").stat().st_mtime_ns
    again = run_cli("--config", str(config), "import", str(path))
    assert again.returncode == 0, again.stderr
    line = again.stdout.strip().splitlines()[-1]
    assert "1 file (1 fit)" in line and "1 decoded again from the kept file" in line and "1 imported before" in line
    assert store.files()[2].track_version == FORMAT_VERSION and store.read_track(2).records == store.files()[2].records
    assert store.file_path("activities/2.fit").stat().st_mtime_ns == kept


def test_a_gone_or_damaged_decoded_track_is_decoded_again_from_the_kept_file(tmp_path: Path, config: Path) -> None:
    """A decoded track removed or cut short (a disk full, a hand in the folder): compaction and the next
    import decode it again from the kept file, and say so; its rows never silently go."""
    path = _two_activities(tmp_path, "export.zip")
    imported = run_cli("--config", str(config), "import", str(path))
    assert imported.returncode == 0
    # its compaction's line is `compact`'s: the years, and the files that disagree (none here)
    assert re.search(rf"compacted athlete {ATHLETE} into \S+: [12] year\(s\) rewritten, 0 unchanged$",
                     imported.stderr.strip()), imported.stderr
    store = _store(config)
    records = {i: e.records for i, e in store.files().items()}
    kept = {i: store.file_path(e.file).stat().st_mtime_ns for i, e in store.files().items()}
    store.track_path(1).unlink()
    data = store.track_path(2).read_bytes()
    store.track_path(2).write_bytes(data[: len(data) // 2])
    compacted = run_cli("--config", str(config), "compact")
    assert compacted.returncode == 0, compacted.stderr
    assert "decoding 2 imported files again from the kept files" in compacted.stderr, compacted.stderr
    # the index the decoding rewrote is no import that ended meanwhile: one compaction, not two
    assert "an import ended during the compaction" not in compacted.stderr, compacted.stderr
    assert "activity 1's decoded track (" in compacted.stderr and "activity 2's decoded track (" in compacted.stderr
    assert {i: store.read_track(i).records for i in (1, 2)} == records
    assert _parquet_ids(config, "streams", "activity_id") == {1, 2}
    # The next import too (it said "nothing new"), from the kept files: not copied from the export again; it
    # names them as compaction does.
    store.track_path(1).unlink()
    store.track_path(2).write_bytes(b"not a track")
    again = run_cli("--config", str(config), "import", str(path))
    assert again.returncode == 0, again.stderr
    assert "nothing new" not in again.stderr and "2 decoded again from the kept files" in again.stdout, again.stdout
    assert all(f"activity {i}'s decoded track ({store.track_path(i)}, from" in again.stdout for i in (1, 2))
    assert {i: store.read_track(i).records for i in (1, 2)} == records
    assert {i: store.file_path(e.file).stat().st_mtime_ns for i, e in store.files().items()} == kept
    # The kept file gone as well: compaction says which activity lost its rows and what brings them back.
    store.track_path(1).unlink()
    store.file_path("activities/1.gpx").unlink()
    compacted = run_cli("--config", str(config), "compact")
    assert compacted.returncode == 0, compacted.stderr
    assert "activity 1's decoded track (" in compacted.stderr and "its kept file is not whole either" in \
        compacted.stderr and "run 'bulkfetch import' again" in compacted.stderr, compacted.stderr
    assert run_cli("--config", str(config), "import", str(path)).returncode == 0  # copied from the export again
    assert store.read_track(1).records == records[1]
    assert _parquet_ids(config, "streams", "activity_id") == {1, 2}


def test_a_lone_display_distance_in_miles_gives_a_manual_activity_its_distance_in_metres(
        tmp_path: Path, config: Path) -> None:
    """The 2019-2022 header's one Distance is in the account's unit: the activities with files show it
    is miles (their rows say a mile where the file says 1,609 m), so the manual one is read in miles."""
    fixtures = {1: "fenix5-run.fit", 2: "hike.gpx"}
    rows = []
    for activity_id, name in fixtures.items():
        summary = derive.file_summary(decode_file(fixture(name), name))
        assert summary.distance_m is not None and summary.elapsed_s is not None
        rows.append({"Activity ID": str(activity_id), "Activity Date": "May 9, 2023, 10:09:29 AM",
                     "Activity Type": "Run", "Elapsed Time": str(round(summary.elapsed_s)),
                     "Distance": f"{summary.distance_m / 1609.344:.2f}", "Filename": f"activities/{name}"})
    rows.append({"Activity ID": "3", "Activity Date": "May 10, 2023, 7:00:00 AM", "Activity Type": "Run",
                 "Elapsed Time": "1800", "Distance": "3.10"})
    path = write_zip(tmp_path / "miles.zip", csv_text(ENGLISH_2019, rows),
                     [ExportFile(f"activities/{name}", fixture(name)) for name in fixtures.values()],
                     profile_id=ATHLETE)
    result = run_cli("--config", str(config), "import", str(path))
    assert result.returncode == 0, result.stderr
    table = ds.dataset(_data(config) / "parquet" / "activities", partitioning="hive").to_table(
        columns=["id", "distance", "source"])
    distances = dict(zip(table.column("id").to_pylist(), table.column("distance").to_pylist(), strict=True))
    assert distances[3] == pytest.approx(3.10 * 1609.344, abs=0.1), distances


def test_an_activity_the_newest_export_lacks_was_deleted_and_loses_its_csv_row(tmp_path: Path, config: Path) -> None:
    """An export is the whole account at its date; the newest is the one whose activities reach furthest,
    whatever order they were imported in."""
    files = {1: ExportFile("activities/1.fit", fixture("fenix5-run.fit")),
             2: ExportFile("activities/2.gpx", fixture("hike.gpx"))}
    older = write_zip(tmp_path / "older.zip", csv_text(ENGLISH_94, [
        english_row(1, files[1].name, date="May 9, 2023, 10:09:29 AM"), english_row(2, files[2].name),
        english_row(3, None, date="May 10, 2023, 7:00:00 AM", name="Manual")]),
        list(files.values()), profile_id=ATHLETE)
    newer = write_zip(tmp_path / "newer.zip", csv_text(ENGLISH_94, [
        english_row(1, files[1].name, name="Renamed"), english_row(3, None, date="May 10, 2023, 7:00:00 AM", name=""),
        english_row(4, None, date="June 1, 2023, 6:00:00 PM", name="New")]), [files[1]], profile_id=ATHLETE)
    assert run_cli("--config", str(config), "import", str(older)).returncode == 0
    assert _parquet_ids(config, "activities", "id") == {1, 2, 3}
    store = _store(config)
    for order, path in enumerate((newer, older)):  # the older one imported again stays older
        result = run_cli("--config", str(config), "import", str(path))
        assert result.returncode == 0, result.stderr
        line = result.stdout.strip().splitlines()[-1]
        assert line.endswith("; 1 activity of an earlier export not in the newest (deleted on Strava: no row from "
                             "the export)"), (order, line)
        assert sorted(store.activities()) == [1, 3, 4] and store.gone() == {2}
        assert store.activities()[1].name == "Renamed" and store.activities()[3].name == "Manual"
        assert _parquet_ids(config, "activities", "id") == {1, 3, 4}
        status = run_cli("--config", str(config), "status", "--json")
        export = orjson.loads(status.stdout)["export"]  # what Parquet has: the deleted activity's file not counted
        assert (export["activities"], export["files"]["ok"], export["streams_from_files"]) == (3, 1, 1), export
    assert sorted(store.files()) == [1, 2]  # the deleted activity's file stays, verbatim


def test_the_summary_line_leaves_out_the_parts_that_count_nothing(tmp_path: Path) -> None:
    summary = importer.ImportSummary(Roster(tmp_path).athlete(ATHLETE), activities=2, unchanged=2)
    assert importer.summary_line(summary) == ("imported 2 activities from the export: no new file; 2 imported before "
                                              "(not decoded again)")
