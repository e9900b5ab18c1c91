"""The account export meets the API: activities from its CSV, streams, splits and laps from its real device
files (each row saying its `source`), fetch asking no streams the export covers, plan's saving line, and
the schema upgrade of an existing data_dir. The real CLI against the simulator, real compaction, the
Parquet read back with DuckDB."""

from __future__ import annotations

import asyncio
import io
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, partial
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

import bulkfetch.compact as compact_module
import bulkfetch.parquet_layout as layout_module
import bulkfetch.pipeline as pipeline
import bulkfetch.run as run_module
from bulkfetch import derive, export_view
from bulkfetch.activity_files import decode_file
from bulkfetch.cli import main
from bulkfetch.export_store import ExportStore
from bulkfetch.parquet_layout import STAGING
from bulkfetch.pipeline import EXPORT_REREAD_S
from bulkfetch.roster import Roster
from bulkfetch.schema import SCHEMA_VERSION, TABLES
from bulkfetch.simulator import SimulatorSettings, SimulatorThread
from bulkfetch.simulator.export import write_export
from bulkfetch.track import read_track
from tests.conftest import REPO, cli_env, simulator_config_text
from tests.exports import ENGLISH_94, FILES, ExportFile, csv_text, english_row, fixture, write_folder
from tests.test_athletes import connect
from tests.test_streams import spent, stream_gets

duckdb = pytest.importorskip("duckdb")

CSV_ONLY_ID = 9041865559  # an activity of the export that no API listing has (its file is 9700428229.fit)


@dataclass(frozen=True)
class Archived:
    """A simulated activity and the real device file the export holds for it."""

    activity_id: int
    fixture: str
    role: str  # covered (ok, agrees with Strava), stale (Strava's version was cropped), truncated

    @property
    def name(self) -> str:
        return f"activities/{self.activity_id}.{self.fixture.split('.', 1)[1]}"


ROLES = (("fenix5-run.fit.gz", "covered"), ("forerunner-run.tcx", "covered"), ("edge500-ride.fit", "covered"),
         ("hike.gpx", "stale"), ("truncated.fit", "truncated"))


@dataclass
class Scenario:
    sim: object
    thread: SimulatorThread
    config: Path
    data_dir: Path
    athlete_id: int
    archived: list[Archived]
    without_file: set[int]  # simulated activities the CSV has, without a file (manual entries, say)

    def ids(self, *roles: str) -> set[int]:
        return {a.activity_id for a in self.archived if a.role in roles}

    def ids_of_sport(self, sport_type: str) -> set[int]:
        return {a.activity_id for a in self.archived if self.sim.summary(a.activity_id)["sport_type"] == sport_type}

    @property
    def folder(self) -> Path:
        return Roster(self.data_dir).athlete(self.athlete_id).folder

    def rows(self, table: str, activity_id: int | None = None) -> list[dict]:
        return rows(self.data_dir, table, activity_id)

    def sources(self, table: str) -> dict[int, set[str]]:
        return sources(self.data_dir, table)


def rows(data_dir: Path, table: str, activity_id: int | None = None, columns: str = "*") -> list[dict]:
    """A table's rows (one activity's: `activity_id`), as DuckDB reads the hive-partitioned Parquet."""
    parquet = data_dir / "parquet" / table
    where = f" WHERE {'id' if table == 'activities' else 'activity_id'} = {activity_id:d}" if activity_id else ""
    with duckdb.connect() as db:
        cursor = db.execute(f"SELECT {columns} FROM read_parquet('{parquet}/**/*.parquet', hive_partitioning = true)"
                            f"{where}")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def sources(data_dir: Path, table: str) -> dict[int, set[str]]:
    """Each activity's `source` values in a table (one activity, one source)."""
    key = "id" if table == "activities" else "activity_id"
    found: dict[int, set[str]] = {}
    for row in rows(data_dir, table, columns=f"DISTINCT {key}, source"):  # not a row a stream point
        found.setdefault(row[key], set()).add(row["source"])
    return found


def cli(config: Path, *args: str) -> int:
    return main(["--config", str(config), *args])


@cache
def file_summary(fixture: str) -> derive.FileSummary:
    """The fixture file's summary by today's rules for the sport the tests give it: its own, else Run (the
    sport matters: see derive.prepare). Decoded once: the large ones take a second."""
    track = decode_file((FILES / fixture).read_bytes(), fixture)
    return derive.file_summary(track, derive.file_summary(track).sport_type or "Run")


def csv_date(epoch_s: float) -> str:
    """activities.csv's English date ("May 9, 2023, 10:09:29 AM"), UTC."""
    moment = datetime.fromtimestamp(epoch_s, tz=UTC)
    return moment.strftime("%b ") + f"{moment.day}, {moment.year}, " + moment.strftime("%I:%M:%S %p").lstrip("0")


def start_of(sim, activity_id: int) -> float:
    return datetime.fromisoformat(sim.summary(activity_id)["start_date"].replace("Z", "+00:00")).timestamp()


# One history for the tests that start from the imported export (SCENARIO): the same ids get the same files.
SCENARIO = SimulatorSettings(activities=12, seed=32, short_limit=1000, daily_limit=10000)


def archive_plan(sim) -> tuple[list[Archived], list[int]]:
    """Which simulated activities get the ROLES' files, and the two whose CSV rows have no file."""
    with_gps = [i for i in sim.activity_ids() if not sim.summary(i)["manual"] and sim.summary(i)["map"]]
    archived = [Archived(i, fixture, role) for i, (fixture, role) in zip(with_gps, ROLES)]
    without_file = [i for i in sim.activity_ids() if i not in {a.activity_id for a in archived}][:2]
    return archived, without_file


@pytest.fixture(scope="module")
def imported_data(tmp_path_factory) -> Path:
    """SCENARIO's data_dir just after its athlete's export was imported (`scenario`): decoded once for the
    tests that start from it, each of which takes a copy."""
    folder = tmp_path_factory.mktemp("imported")
    thread = SimulatorThread(SCENARIO)
    with thread as sim:
        case, export = unpacked_export(folder, thread, sim, *archive_plan(sim), csv_only=True)
        assert cli(case.config, "import", str(export), "--athlete", str(case.athlete_id)) == 0
        assert sim.request_log == []  # nothing was asked of the API
    return case.data_dir


def scenario(tmp_path: Path, thread: SimulatorThread, sim, imported_data: Path) -> Scenario:
    """An athlete whose export holds five real device files for five of its simulated activities (Strava's
    summaries made to agree with the files, but the stale one's), one more activity only the export knows,
    and CSV rows without a file for two simulated activities; imported before any API request (a copy of
    `imported_data`: `sim` must run SCENARIO)."""
    assert sim.settings.seed == SCENARIO.seed and sim.settings.activities == SCENARIO.activities
    archived, without_file = archive_plan(sim)
    agree_with_files(thread, sim, archived)
    shutil.copytree(imported_data, tmp_path / "data")  # copy2: the files' mtimes, which fingerprints hold, too
    config = tmp_path / "config.toml"
    config.write_text(simulator_config_text(sim, tmp_path / "data", fetch={"per_page": 50}))
    return Scenario(sim, thread, config, tmp_path / "data", sim.athlete().athlete_id, archived, set(without_file))


def agree_with_files(thread: SimulatorThread, sim, archived: list[Archived]) -> dict[int, dict]:
    """Edit the simulated activities to agree with their files (but the stale one: cropped on Strava after
    the upload); the changes by id."""
    edits = {}
    for item in archived:
        summary = file_summary(item.fixture)
        distance, elapsed = summary.distance_m or 0.0, round(summary.elapsed_s or 0)
        changes = {"sport_type": summary.sport_type, "distance": distance, "elapsed_time": elapsed,
                   "moving_time": round(summary.moving_s or 0)}
        if item.role == "stale":
            changes.update(distance=round(distance * 0.6, 1), elapsed_time=elapsed + 900, moving_time=elapsed + 900)
        thread.call(partial(sim.edit_activity, item.activity_id, **changes))
        edits[item.activity_id] = changes
    return edits


def unpacked_export(tmp_path: Path, thread: SimulatorThread, sim, archived: list[Archived], without_file: list[int],
                    *, csv_only: bool) -> tuple[Scenario, Path]:
    """The athlete's export folder (not imported yet), its simulated activities edited to agree with the
    files (`agree_with_files`), and a config for the simulator."""
    athlete_id = sim.athlete().athlete_id
    rows = []
    for item, changes in zip(archived, agree_with_files(thread, sim, archived).values()):
        summary = file_summary(item.fixture)
        row = english_row(item.activity_id, item.name, sport=changes["sport_type"],
                          distance_m=summary.distance_m or 0.0, elapsed_s=round(summary.elapsed_s or 0),
                          date=csv_date(start_of(sim, item.activity_id)))
        rows.append({**row, "Moving Time": f"{changes['moving_time']}.0"})
    rows += [english_row(i, None, name=sim.summary(i)["name"], date=csv_date(start_of(sim, i))) for i in without_file]
    files = [ExportFile(a.name, fixture(a.fixture)) for a in archived]
    if csv_only:
        row = english_row(CSV_ONLY_ID, "activities/9700428229.fit", date="May 9, 2023, 10:09:29 AM",
                          name="Only in the export", elapsed_s=round(file_summary("fenix2-run.fit").elapsed_s or 0))
        rows.append({**row, "Distance": "", "Distance#2": ""})  # the file's distance fills it
        files.append(ExportFile("activities/9700428229.fit", fixture("fenix2-run.fit")))
    export = write_folder(tmp_path / "export", csv_text(ENGLISH_94, rows), files)
    config = tmp_path / "config.toml"
    config.write_text(simulator_config_text(sim, tmp_path / "data", fetch={"per_page": 50}))
    return Scenario(sim, thread, config, tmp_path / "data", athlete_id, archived, set(without_file)), export


# -- without any API access ------------------------------------------------------------------------------
def test_an_export_alone_gives_activities_from_its_csv_and_streams_splits_laps_from_its_files(tmp_path,
                                                                                            imported_data):
    thread = SimulatorThread(SCENARIO)
    with thread as sim:
        case = scenario(tmp_path, thread, sim, imported_data)  # the import compacted what it imported

    activities = {row["id"]: row for row in case.rows("activities")}
    csv_ids = case.ids("covered", "stale", "truncated") | case.without_file | {CSV_ONLY_ID}
    assert set(activities) == csv_ids
    assert {row["source"] for row in activities.values()} == {"csv"}
    assert not any(row["has_detail"] for row in activities.values())
    for item in case.archived:
        row = activities[item.activity_id]
        assert row["distance"] == pytest.approx(file_summary(item.fixture).distance_m, abs=0.1)
        assert row["start_date"].year == row["year"] == datetime.fromtimestamp(start_of(sim, item.activity_id)).year
    only = activities[CSV_ONLY_ID]  # its CSV row has no distance: the file's is taken
    assert only["name"] == "Only in the export" and only["sport_type"] == "Run"
    assert only["distance"] == pytest.approx(file_summary("fenix2-run.fit").distance_m)
    assert (only["start_date"].year, only["year"]) == (2023, 2023)  # the CSV's date wins over the file's (2015)

    with_files = csv_ids - case.without_file
    assert case.sources("streams") == {i: {"file"} for i in with_files}
    assert case.sources("laps") == {i: {"file"} for i in with_files}
    runs = with_files - case.ids_of_sport("Ride")  # Strava's details carry splits for runs, not rides
    for table in ("splits_metric", "splits_standard"):
        assert set(case.sources(table)) <= runs and case.ids("covered") - case.ids_of_sport("Ride") <= set(
            case.sources(table)), table
    fenix2 = case.rows("splits_metric", CSV_ONLY_ID)
    assert [r["split"] for r in fenix2] == list(range(1, 11))  # 9.0 km: nine whole kilometres and the rest
    distances = [r["distance"] for r in case.rows("streams", CSV_ONLY_ID)]
    assert len(distances) == 2809  # one stream row per record of the file
    assert sum(r["distance"] for r in fenix2) == pytest.approx(max(distances) - min(distances), abs=0.5)


def test_a_new_derive_rule_reaches_the_parquet_already_written(tmp_path, monkeypatch):
    ride = file_summary("edge500-ride.fit")
    row = english_row(1, "activities/1.fit", sport="Ride", distance_m=ride.distance_m or 0.0,
                      elapsed_s=round(ride.elapsed_s or 0))
    export = write_folder(tmp_path / "export", csv_text(ENGLISH_94, [row]),
                          [ExportFile("activities/1.fit", fixture("edge500-ride.fit"))], profile_id=5)
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n')
    assert cli(config, "import", str(export)) == 0
    assert not (tmp_path / "data" / "parquet" / "splits_metric").exists()  # a ride: no splits by today's rule

    # A new rule (rides' splits too), numbered as derive's docstring asks: the years it changes are rewritten.
    monkeypatch.setattr(derive, "SPLIT_SPORTS", derive.SPLIT_SPORTS | {"Ride"})
    monkeypatch.setattr(derive, "DERIVE_VERSION", derive.DERIVE_VERSION + 1)
    assert cli(config, "compact") == 0
    splits = rows(tmp_path / "data", "splits_metric")
    assert {r["source"] for r in splits} == {"file"} and len(splits) == math.ceil((ride.distance_m or 0) / 1000)
    written = {p: p.stat().st_mtime_ns for p in (tmp_path / "data" / "parquet").rglob("*.parquet")}
    assert cli(config, "compact") == 0  # and once only
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "data" / "parquet").rglob("*.parquet")} == written


# -- with the API ------------------------------------------------------------------------------------------
PLAN_SAVING = re.compile(r"^streams: ([\d,]+) of ([\d,]+) from the export, ([\d,]+) requests?", re.MULTILINE)


def test_fetch_replaces_the_csv_rows_and_asks_no_streams_the_export_covers(tmp_path, capsys, monkeypatch,
                                                                           imported_data):
    thread = SimulatorThread(SCENARIO)
    with thread as sim:
        case = scenario(tmp_path, thread, sim, imported_data)
        listed = set(sim.activity_ids())
        covered = case.ids("covered")
        capsys.readouterr()
        assert cli(case.config, "plan", "--streams", "all") == 0
        saving = PLAN_SAVING.search(capsys.readouterr().out)
        assert saving and tuple(int(g.replace(",", "")) for g in saving.groups()) == (
            len(covered), len(listed), len(listed) - len(covered))

        mark = len(sim.request_log)
        assert cli(case.config, "fetch", "--streams", "all") == 0
        asked = stream_gets(sim, mark)
        # the stale file's and the truncated file's activities get their streams from the API, as the rest
        assert sorted(asked) == sorted(listed - covered) and len(asked) == len(set(asked))
        assert spent(sim, mark)["detail"] == len(listed)  # every detail, as without an export

        capsys.readouterr()
        reads = []
        monkeypatch.setattr(export_view, "read_track", lambda path: reads.append(path) or read_track(path))
        assert cli(case.config, "status", "--json") == 0
        report = orjson.loads(capsys.readouterr().out)
        assert (report["pending_streams"], report["streams_from_export"]) == (0, len(covered))
        assert reads == []  # the index holds the files' summaries: no track is read
        mark = len(sim.request_log)
        assert cli(case.config, "fetch", "--streams", "all") == 0  # a rerun asks nothing the export covers either
        assert stream_gets(sim, mark) == []

    # one row each; the CSV-only activity (2023) is older than the full listing's newest and not in it:
    # deleted on Strava since the export, so it has no rows (tests/test_export_rows.py)
    activities = case.sources("activities")
    assert activities == {i: {"api"} for i in listed}
    streams = case.sources("streams")
    assert streams == {**{i: {"api"} for i in listed - covered - set(manual(sim, listed))},
                       **{i: {"file"} for i in covered}}
    for table in ("splits_metric", "laps"):  # every listed activity's detail replaced its file's
        assert case.sources(table) == {i: {"api"} for i in case.sources(table) if i in listed}, table
    # the file's streams are the recording, in the API's units: fenix5 starts at 0 s, its distance grows
    rows = sorted(case.rows("streams", case.archived[0].activity_id), key=lambda r: r["seq"])
    assert rows[0]["time"] == 0 and rows[-1]["distance"] == pytest.approx(157.56, abs=0.5)


def test_coverage_comes_from_the_index_and_a_new_rules_summaries_are_derived_off_the_event_loop(
        tmp_path, capsys, monkeypatch, imported_data):
    derived: list[bool] = []  # each derivation: whether it ran on an event loop
    prepare = derive.prepare
    monkeypatch.setattr(derive, "prepare", lambda *args: derived.append(on_event_loop()) or prepare(*args))
    reads: list[Path] = []
    monkeypatch.setattr(export_view, "read_track", lambda path: reads.append(path) or read_track(path))
    thread = SimulatorThread(SCENARIO)
    with thread as sim:
        case = scenario(tmp_path, thread, sim, imported_data)
        listed, covered = set(sim.activity_ids()), case.ids("covered")
        capsys.readouterr()
        assert cli(case.config, "plan", "--streams", "all") == 0  # the import's index holds the summaries
        assert PLAN_SAVING.search(capsys.readouterr().out).group(1) == str(len(covered))
        assert (derived, reads) == ([], [])

        # A new derive rule: every file's summary is computed again, once, and never on the fetch's loop.
        monkeypatch.setattr(derive, "DERIVE_VERSION", derive.DERIVE_VERSION + 1)
        monkeypatch.setattr(pipeline, "EXPORT_REREAD_S", 0.0)  # a look at the index before every request
        files = ExportStore.files
        monkeypatch.setattr(ExportStore, "files", lambda store: index_reads.append(1) or files(store))
        index_reads: list[int] = []
        assert cli(case.config, "fetch", "--streams", "all", "--no-compact") == 0
        assert sorted(stream_gets(sim)) == sorted(listed - covered)  # the export still spares its streams
        assert len(reads) == len(case.archived) + 1 and derived and not any(derived)  # + the CSV-only one
        # read for the plan, for the details (their stale files), after keeping the new summaries, for the
        # streams; a look is one stat
        assert len(index_reads) == 4 < len(stream_gets(sim))
        reads.clear()
        derived.clear()
        capsys.readouterr()
        assert cli(case.config, "status", "--json") == 0  # the index alone
        assert orjson.loads(capsys.readouterr().out)["streams_from_export"] == len(covered)
        assert (derived, reads) == ([], [])


def on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def manual(sim, ids: set[int]) -> list[int]:
    """Activities without streams at Strava (entered by hand)."""
    return [i for i in ids if sim.summary(i)["manual"]]


def test_streams_from_api_asks_every_activity_and_the_apis_streams_replace_the_files(tmp_path, capsys,
                                                                                     imported_data):
    thread = SimulatorThread(SCENARIO)
    with thread as sim:
        case = scenario(tmp_path, thread, sim, imported_data)
        listed = set(sim.activity_ids())
        capsys.readouterr()
        assert cli(case.config, "plan", "--streams", "all", "--streams-from", "api") == 0
        out = capsys.readouterr().out
        assert not PLAN_SAVING.search(out) and f", {len(listed)} stream sets;" in out
        assert cli(case.config, "fetch", "--streams", "all", "--streams-from", "api") == 0
        assert sorted(stream_gets(sim)) == sorted(listed)
        recorded = orjson.loads((case.folder / "state" / "filters.json").read_bytes())
        assert recorded["streams_from"] == "api"  # status counts pending streams as that fetch did
    streams = case.sources("streams")
    assert streams == {i: {"api"} for i in streams}  # one source per activity: the API's
    assert case.ids("covered") <= set(streams)


def test_an_import_rewrites_only_the_years_and_tables_its_files_change(tmp_path, capsys):
    thread = SimulatorThread(SimulatorSettings(activities=16, seed=35, short_limit=1000, daily_limit=10000))
    with thread as sim:
        by_year: dict[int, list[int]] = {}
        for i in sim.activity_ids():
            if not sim.summary(i)["manual"] and sim.summary(i)["map"]:
                by_year.setdefault(datetime.fromtimestamp(start_of(sim, i), tz=UTC).year, []).append(i)
        year, ids = max(by_year.items(), key=lambda item: len(item[1]))
        archived = [Archived(i, name, "covered") for i, name in zip(ids, ("fenix5-run.fit.gz", "forerunner-run.tcx"))]
        case, export = unpacked_export(tmp_path, thread, sim, archived, [], csv_only=False)
        assert cli(case.config, "fetch") == 0  # every detail, no streams: the API's rows of every year
        parquet = case.data_dir / "parquet"
        before = {p: p.stat().st_mtime_ns for p in parquet.rglob("*.parquet")}

        assert cli(case.config, "import", str(export), "--athlete", str(case.athlete_id)) == 0
        after = {p: p.stat().st_mtime_ns for p in parquet.rglob("*.parquet")}
        changed = {p.relative_to(parquet) for p in after if after[p] != before.get(p)}
        # the details' splits and laps stay the API's: only the new file streams' partition is written
        assert changed == {Path(f"streams/athlete_id={case.athlete_id}/year={year}/part-0.parquet")}
        assert case.sources("streams") == {a.activity_id: {"file"} for a in archived}

        capsys.readouterr()
        assert cli(case.config, "import", str(export), "--athlete", str(case.athlete_id)) == 0  # nothing new
        assert {p: p.stat().st_mtime_ns for p in parquet.rglob("*.parquet")} == after
        assert sim.request_log and all(r.path.endswith("/athlete/activities") or "/streams" not in r.path
                                       for r in sim.request_log)


def test_a_fetch_skips_the_streams_an_import_running_beside_it_covered(tmp_path):
    thread = SimulatorThread(SimulatorSettings(activities=10, seed=36, latency_s=0.1, short_limit=1000,
                                               daily_limit=10000))
    with thread as sim:
        oldest = [i for i in reversed(sim.activity_ids()) if not sim.summary(i)["manual"] and sim.summary(i)["map"]]
        archived = [Archived(i, name, "covered") for i, name in
                    zip(oldest, ("fenix5-run.fit.gz", "forerunner-run.tcx", "hike.gpx"))]
        case, export = unpacked_export(tmp_path, thread, sim, archived, [], csv_only=False)
        fetch = subprocess.Popen([sys.executable, "-m", "bulkfetch", "--config", str(case.config), "fetch",
                                  "--streams", "all", "--concurrency", "1"], env=cli_env(), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while not stream_gets(sim) and fetch.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            # Streams go newest first: the oldest activities' are still to come. The fetch is held while the
            # import runs (and a little longer than its reread interval), then goes on.
            os.kill(fetch.pid, signal.SIGSTOP)
            stopped_at = time.monotonic()
            assert cli(case.config, "import", str(export), "--athlete", str(case.athlete_id)) == 0
            time.sleep(max(0.0, EXPORT_REREAD_S + 0.1 - (time.monotonic() - stopped_at)))
            os.kill(fetch.pid, signal.SIGCONT)
            stdout, stderr = fetch.communicate(timeout=60)
        finally:
            fetch.kill()
        assert fetch.returncode == 0, stderr
        asked = set(stream_gets(sim))
        assert asked == set(sim.activity_ids()) - case.ids("covered")
        assert "3 stream sets from the account export;" in stdout  # its summary line
    # the fetch's own compaction at its end took in what the import added meanwhile
    assert {i: s for i, s in case.sources("streams").items() if i in case.ids("covered")} == {
        i: {"file"} for i in case.ids("covered")}


def test_the_simulators_export_spares_every_stream_request_but_the_cropped_the_corrupt_and_the_manual(tmp_path,
                                                                                                   capsys):
    settings = SimulatorSettings(activities=10, seed=37, duration_s=120, short_limit=1000, daily_limit=10000)
    with SimulatorThread(settings) as sim:
        written = write_export(tmp_path / "export.zip", sim.history)
        assert written.cropped and written.corrupt and written.manual  # the seed gives one of each
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, tmp_path / "data"))
        assert cli(config, "import", str(written.path)) == 0  # its profile.csv names the athlete
        assert sim.request_log == []
        listed = set(sim.activity_ids())
        corrupt = written.corrupt.activity_id
        # what Strava's streams come from, and agrees with Strava's summary
        covered = listed - set(written.cropped) - set(written.manual) - {corrupt}
        capsys.readouterr()
        assert cli(config, "plan", "--streams", "all") == 0
        saving = PLAN_SAVING.search(capsys.readouterr().out)
        assert saving and saving.group(1, 2) == (str(len(covered)), str(len(listed)))
        assert cli(config, "fetch", "--streams", "all") == 0
        assert sorted(stream_gets(sim)) == sorted(listed - covered)

    assert sources(tmp_path / "data", "streams") == {
        **{i: {"file"} for i in covered}, **{i: {"api"} for i in set(written.cropped) | {corrupt}}}  # manual: none
    assert sources(tmp_path / "data", "activities") == {i: {"api"} for i in listed}


def test_the_recipes_since_still_fetches_an_older_stale_files_streams_and_detail(tmp_path, capsys):
    """The README's recipe (import, then `fetch --since` a recent date): an older activity whose file is
    stale loses its file rows, so it is fetched whatever --since says (detail and streams), and plan counts
    it; the older covered ones get nothing from the API."""
    settings = SimulatorSettings(activities=10, seed=37, duration_s=120, short_limit=1000, daily_limit=10000)
    with SimulatorThread(settings) as sim:
        written = write_export(tmp_path / "export.zip", sim.history)
        [cropped] = written.cropped
        newer = {i for i, a in sim.history.activities.items() if a.start_s > sim.history.activities[cropped].start_s}
        assert newer and cropped in sim.activity_ids()  # so --since below leaves the cropped one out
        since = datetime.fromtimestamp(sim.history.activities[cropped].start_s + 1, UTC).isoformat()
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, tmp_path / "data"))
        assert cli(config, "import", str(written.path)) == 0
        capsys.readouterr()
        assert cli(config, "plan", "--since", since, "--streams", "all") == 0
        out = capsys.readouterr().out
        wanted = newer - set(written.manual) - {written.corrupt.activity_id}  # the newer ones the export covers
        assert f"from the export, {len(newer - wanted) + 1} request" in out and \
            "(1 for file older than Strava's version)" in out, out
        mark = len(sim.request_log)
        assert cli(config, "fetch", "--since", since, "--streams", "all") == 0
        assert cropped in stream_gets(sim, mark) and set(stream_gets(sim, mark)) == newer - wanted | {cropped}
        assert spent(sim, mark)["detail"] == len(newer) + 1
    # its streams, splits and laps are the API's: nothing of its stale file
    for table in ("streams", "splits_metric", "laps"):
        assert sources(tmp_path / "data", table).get(cropped) == {"api"}, table


def test_status_counts_an_older_stale_files_requests_as_the_next_fetch_sends_them(tmp_path, capsys):
    """A fetch --since before the import, then the import: status's pending work is what the next fetch
    sends, the older stale file's detail and streams included (it is fetched whatever --since says)."""
    settings = SimulatorSettings(activities=10, seed=37, duration_s=120, short_limit=1000, daily_limit=10000)
    with SimulatorThread(settings) as sim:
        written = write_export(tmp_path / "export.zip", sim.history)
        [cropped] = written.cropped
        since = datetime.fromtimestamp(sim.history.activities[cropped].start_s + 1, UTC).isoformat()
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, tmp_path / "data"))
        assert cli(config, "fetch", "--since", since, "--streams", "all") == 0
        assert cli(config, "import", str(written.path)) == 0
        capsys.readouterr()
        assert cli(config, "status") == 0
        status = capsys.readouterr().out
        assert re.search(r"pending\s+1 detail, 1 stream set\n", status), status
        mark = len(sim.request_log)
        assert cli(config, "fetch", "--since", since, "--streams", "all") == 0
        assert stream_gets(sim, mark) == [cropped] and spent(sim, mark)["detail"] == 1


def test_the_runs_summary_counts_each_activity_the_export_spared_once_whatever_the_list_checks(tmp_path, monkeypatch,
                                                                                                 capsys):
    # Athlete A (with an export) finishes first; a check of its list head during B's backfill finds a new
    # upload and decides A's streams again: the activities the export spares are the same ones.
    monkeypatch.setattr(run_module, "HEAD_CHECK_WINDOWS", 1)  # a check every second, not every 4
    settings = SimulatorSettings(athletes=2, athlete_activities=(3, 16), seed=38, duration_s=120, short_limit=10,
                                 daily_limit=10_000, short_window_s=1)
    thread = SimulatorThread(settings)
    with thread as sim:
        first = sim.athletes[0].athlete_id
        written = write_export(tmp_path / "export.zip", sim.athletes[0].history)
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, tmp_path / "data", refresh_token=""))
        for athlete in sim.athletes:
            connect(config, sim.refresh_token_of(athlete.athlete_id), monkeypatch)
        assert cli(config, "import", str(written.path), "--athlete", str(first)) == 0
        listed = set(sim.activity_ids(athlete_id=first))
        covered = listed - set(written.cropped) - set(written.manual) - {written.corrupt.activity_id}
        assert covered and listed - covered

        def upload_once_a_finished() -> None:  # its streams asked: A's own run is over
            deadline = time.monotonic() + 30
            while not listed - covered <= set(stream_gets(sim)) and time.monotonic() < deadline:
                time.sleep(0.02)
            uploaded.append(thread.call(partial(sim.add_activity, first)))

        uploaded: list[int] = []
        uploader = threading.Thread(target=upload_once_a_finished)
        uploader.start()
        capsys.readouterr()
        try:
            assert cli(config, "fetch", "--no-compact", "--streams", "all") == 0
        finally:
            uploader.join()
    out, err = capsys.readouterr()
    assert "new since the run began" in err and uploaded[0] in stream_gets(sim)  # a check decided A's streams again
    sets = f"{len(covered)} stream set{'' if len(covered) == 1 else 's'}"
    assert f"{sets} from the account export;" in out  # the run's summary line
    assert err.count("more from the account export)") == 1  # the check's own plan line spares nothing new


# -- the upgrade -----------------------------------------------------------------------------------------
UPGRADE_FROM = "4e9953f"  # main before the export: Parquet schema 3, no `source` column


def previous_version(tmp_path: Path) -> Path:
    """The previous version's bulkfetch/ package, from git (no checkout is touched)."""
    found = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{UPGRADE_FROM}^{{commit}}"],
                           capture_output=True)
    if found.returncode != 0:
        pytest.skip(f"this checkout lacks {UPGRADE_FROM}, the version before the schema change")
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", UPGRADE_FROM, "bulkfetch"],
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tmp_path / "previous", filter="data")
    return tmp_path / "previous"


def test_the_first_compaction_after_the_upgrade_rebuilds_every_table_aside_without_a_request(tmp_path, monkeypatch):
    previous = previous_version(tmp_path)
    with SimulatorThread(SimulatorSettings(activities=8, seed=34, short_limit=1000, daily_limit=10000)) as sim:
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, tmp_path / "data", fetch={"streams": ["time", "heartrate"]}))
        old = subprocess.run([sys.executable, "-m", "bulkfetch", "--config", str(config), "fetch"],
                             env={**cli_env(), "PYTHONPATH": str(previous)}, cwd=previous, capture_output=True,
                             text=True, timeout=120)
        assert old.returncode == 0, old.stderr
        parquet = tmp_path / "data" / "parquet"
        made = {path: pq.read_table(path) for path in parquet.rglob("*.parquet")}
        assert made and all(b"bulkfetch.schema_version" in t.schema.metadata and "source" not in t.column_names
                            for t in made.values())
        mark = len(sim.request_log)

        # Stopped after the first year: the new files wait aside, every table reads as before.
        monkeypatch.setattr(compact_module, "write_year", stop_at(2, compact_module.write_year))
        assert cli(config, "compact") == 130
        monkeypatch.undo()
        assert list((parquet / STAGING).rglob("*.parquet"))
        assert {path: pq.read_table(path) for path in parquet.rglob("*.parquet") if STAGING not in path.parts} == made
        assert all("source" not in r for r in rows(tmp_path / "data", "activities"))

        # Stopped while swapping in: the first table is whole and new, the others whole and old.
        monkeypatch.setattr(layout_module, "_remove_athlete_folder", stop_at(1, layout_module._remove_athlete_folder))
        assert cli(config, "compact") == 130
        monkeypatch.undo()
        assert all(r["source"] == "api" for r in rows(tmp_path / "data", TABLES[0]))
        assert all("source" not in r for r in rows(tmp_path / "data", TABLES[1]))

        assert cli(config, "compact") == 0
        assert len(sim.request_log) == mark  # rebuilt from the raw JSON alone
        assert not (parquet / STAGING).exists()
        rebuilt = {path: pq.read_table(path) for path in parquet.rglob("*.parquet")}
        assert set(rebuilt) == set(made)  # the same partitions, each rewritten in the new schema
        for path, table in rebuilt.items():
            assert table.schema.metadata[b"bulkfetch.schema_version"] == str(SCHEMA_VERSION).encode()
            if path.parts[-4] in ("best_efforts", "segment_efforts"):  # the API's alone: no source column
                assert table.to_pylist() == made[path].to_pylist(), path
                continue
            assert set(table.column("source").to_pylist()) == {"api"}, path
            assert table.drop_columns(["source"]).to_pylist() == made[path].to_pylist(), path

        assert cli(config, "fetch") == 0  # and the next fetch spends only its routine list check
        assert spent(sim, mark) == {"list": 1}


def stop_at(call: int, real):
    """`real`, but Ctrl-C at its `call`-th call."""
    calls = []

    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    return wrapped
