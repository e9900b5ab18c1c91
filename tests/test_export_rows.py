"""Which rows the account export keeps once the API has spoken: activities deleted on Strava after the
export was made, files that disagree with the export's own CSV, truncated files. The real CLI against the
simulator, real device files, the Parquet read back with DuckDB."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import orjson
import pytest

from bulkfetch.cli import main
from bulkfetch.roster import Roster
from bulkfetch.simulator import SimulatorSettings, SimulatorThread
from bulkfetch.simulator.export import write_export
from tests.conftest import simulator_config_text
from tests.exports import ENGLISH_94, ExportFile, csv_text, english_row, fixture, write_folder
from tests.test_export_merge import file_summary
from tests.test_secrets import auth_no_browser

duckdb = pytest.importorskip("duckdb")

ROW_TABLES = ("activities", "streams", "splits_metric", "splits_standard", "laps")


def cli(config: Path, *args: str) -> int:
    return main(["--config", str(config), *args])


def ids_by_table(data_dir: Path) -> dict[str, dict[int, set[str]]]:
    """Each row table's activities and their `source` values, as DuckDB reads the Parquet."""
    found: dict[str, dict[int, set[str]]] = {}
    for table in ROW_TABLES:
        key = "id" if table == "activities" else "activity_id"
        parquet = data_dir / "parquet" / table
        with duckdb.connect() as db:
            pairs = db.execute(f"SELECT DISTINCT {key}, source FROM read_parquet('{parquet}/**/*.parquet', "
                               "hive_partitioning = true)").fetchall()
        for activity_id, source in pairs:
            found.setdefault(table, {}).setdefault(activity_id, set()).add(source)
    return found


def status_json(config: Path, capsys) -> dict:
    capsys.readouterr()
    assert cli(config, "status", "--json") == 0
    return orjson.loads(capsys.readouterr().out)


def test_a_full_listing_drops_what_strava_deleted_since_the_export_and_keeps_what_is_newer(tmp_path, capsys):
    settings = SimulatorSettings(activities=8, seed=37, duration_s=120, short_limit=1000, daily_limit=10000)
    thread = SimulatorThread(settings)
    with thread as sim:
        written = write_export(tmp_path / "export.zip", sim.history)
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, tmp_path / "data"))
        assert cli(config, "import", str(written.path)) == 0
        runs = [f.activity_id for f in written.files if f.quirk is None
                and sim.summary(f.activity_id)["sport_type"] == "Run"]
        gone = runs[0]  # a run with a whole file: it has rows in every table
        assert all(gone in ids for ids in ids_by_table(tmp_path / "data").values())
        thread.call(sim.delete_activity, gone)  # deleted on Strava before any listing saw it

        assert cli(config, "fetch") == 0  # the first listing is a full one
        tables = ids_by_table(tmp_path / "data")
        assert [table for table, ids in tables.items() if gone in ids] == []
        assert set(tables["activities"]) == set(sim.activity_ids())
        folder = Roster(tmp_path / "data").athlete(written.athlete_id).folder
        member = next(f.member for f in written.files if f.activity_id == gone)
        assert (folder / "export" / member).is_file()  # the raw copy stays: raw is never deleted
        # A file longer than Strava's cropped version is stale against the API's summary: its streams are
        # not used (none were fetched either), and status says how many.
        assert written.cropped and not set(written.cropped) & set(tables["streams"])
        export = status_json(config, capsys)["export"]
        assert export["stale_against_api"] == len(written.cropped) and export["disagree_with_csv"] == 0

        # An export made after that listing holds activities uploaded since: no listing has them, they stay,
        # the one recorded since and an old run uploaded late (dated before the listing's newest activity).
        newer_id = thread.call(partial(sim.add_activity, None))
        backdated = thread.call(partial(sim.add_activity, None, sport_type="Run", manual=False,
                                        start_date=min(sim.summary(i)["start_date"] for i in sim.activity_ids())))
        newer = write_export(tmp_path / "newer.zip", sim.history)
        assert cli(config, "import", str(newer.path)) == 0
    tables = ids_by_table(tmp_path / "data")
    assert tables["activities"][newer_id] == {"csv"}
    assert set(tables["activities"]) == set(sim.activity_ids())
    assert {table: ids.get(backdated) for table, ids in tables.items()} == {
        "activities": {"csv"}, "streams": {"file"}, "splits_metric": {"file"}, "splits_standard": {"file"},
        "laps": {"file"}}


def test_a_listing_made_without_read_all_judges_no_csv_activity_deleted(tmp_path, capsys):
    """Without activity:read_all Strava lists no private activity, which the export has: the listing says
    nothing of the CSV's activities, even one deleted since (it is kept until a listing that sees all)."""
    settings = SimulatorSettings(activities=12, seed=39, duration_s=120, short_limit=1000, daily_limit=10000,
                                 scope="read,activity:read")
    thread = SimulatorThread(settings)
    with thread as sim:
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, tmp_path / "data", refresh_token=""))
        assert auth_no_browser(config, sim).returncode == 0  # the token's scope is known: no read_all
        written = write_export(tmp_path / "export.zip", sim.history)
        assert cli(config, "import", str(written.path)) == 0
        private = {i for i in sim.activity_ids() if sim.summary(i).get("private")}
        deleted = min(set(sim.activity_ids()) - private)  # older than what the listing holds
        assert private and min(private) < max(set(sim.activity_ids()) - private), "a private one listed among others"
        thread.call(sim.delete_activity, deleted)
        assert cli(config, "fetch") == 0
        kept = ids_by_table(tmp_path / "data")["activities"]
        assert {i: kept.get(i) for i in (*private, deleted)} == dict.fromkeys((*private, deleted), {"csv"})
        # Connected again with read_all: that listing still saw no private activity (recorded with it).
        thread.call(partial(sim.set_athlete_scope, "read,activity:read_all"))
        assert auth_no_browser(config, sim).returncode == 0
        assert cli(config, "compact", "--rebuild") == 0
    kept = ids_by_table(tmp_path / "data")["activities"]
    assert {i: kept.get(i) for i in (*private, deleted)} == dict.fromkeys((*private, deleted), {"csv"})


PROFILE_ID = 5
TRUNCATED, DISAGREEING = 1001, 1002


def disagreeing_export(tmp_path: Path) -> Path:
    """An export whose activities.csv gives Strava's elapsed time: the truncated file's activity ran 30 min
    past its cut, and the whole ride's file is 10 min shorter than Strava's account of it."""
    cut, ride = file_summary("truncated.fit"), file_summary("edge500-ride.fit")
    rows = [english_row(TRUNCATED, "activities/1001.fit", sport=cut.sport_type or "Run",
                        distance_m=cut.distance_m or 0.0, elapsed_s=round(cut.elapsed_s or 0) + 1800),
            english_row(DISAGREEING, "activities/1002.fit", sport="Ride", distance_m=ride.distance_m or 0.0,
                        elapsed_s=round(ride.elapsed_s or 0) + 600, date="May 10, 2023, 10:09:29 AM")]
    files = [ExportFile("activities/1001.fit", fixture("truncated.fit")),
             ExportFile("activities/1002.fit", fixture("edge500-ride.fit"))]
    return write_folder(tmp_path / "export", csv_text(ENGLISH_94, rows), files, profile_id=PROFILE_ID)


def test_without_the_api_truncated_and_disagreeing_files_keep_their_rows_and_status_counts_them(tmp_path, capsys):
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n')
    assert cli(config, "import", str(disagreeing_export(tmp_path))) == 0
    tables = ids_by_table(tmp_path / "data")
    for table in ("streams", "laps"):  # partial (truncated) or disagreeing with the CSV: kept
        assert tables[table] == {TRUNCATED: {"file"}, DISAGREEING: {"file"}}, table
    export = status_json(config, capsys)["export"]
    assert (export["disagree_with_csv"], export["stale_against_api"]) == (1, 0)  # the truncated one is not counted
    assert cli(config, "status") == 0
    assert "1 file disagrees with activities.csv (elapsed time or distance): kept" in capsys.readouterr().out


def test_status_and_athletes_show_what_the_import_gave_an_athlete_without_tokens(tmp_path, capsys):
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n')
    assert cli(config, "import", str(disagreeing_export(tmp_path))) == 0
    capsys.readouterr()
    assert cli(config, "status") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["data_dir", "parquet", "export", "files", "1", "api"]  # no quota
    assert lines[2].startswith("export     2 activities from activities.csv, imported 20")
    assert lines[3] == "files      1 decoded, 1 truncated (kept up to the cut), 0 unreadable; " \
                       "2 activities' streams from files"
    assert "not connected: 'bulkfetch auth'" in lines[5]
    report = status_json(config, capsys)
    assert (report["import_only"], report["remaining_requests"], report["eta"]) == (True, 0, None)
    athlete = report["athletes"][0]  # the JSON says what the text does: nothing to list, no quota, streams from files
    assert athlete["state"] == "import only" and "'bulkfetch auth' connects it" in athlete["why"]  # not "ok"
    nothing = {"full": False, "list_pages": 0, "full_relist_due": None}
    assert (report["listing"]["next"], athlete["listing"]["next"], report["quota"]) == (nothing, nothing, None)
    for part in (report, athlete):
        assert part["streams_from_export"] == part["export"]["streams_from_files"] == 2, part

    assert cli(config, "athletes") == 0
    row = capsys.readouterr().out.splitlines()[-1].split()
    assert row[1:6] == [str(PROFILE_ID), "—", "—", "—", "never"] and "import only" in " ".join(row)
    assert "2 activities, 2 files, imported" in " ".join(row)
    assert cli(config, "athletes", "--json") == 0
    listed = orjson.loads(capsys.readouterr().out)
    assert listed[0]["import_only"] and listed[0]["export"]["files"] == {"ok": 1, "truncated": 1, "unreadable": 0}
    assert listed[0]["state"] == "import only"  # the state the table shows, not "ok": nothing is fetched for it


def test_status_and_the_compaction_line_say_each_kind_of_disagreement_there_is_in_one_wording() -> None:
    from bulkfetch.export_view import Disagreements
    from bulkfetch.progress import disagreement_texts

    assert disagreement_texts(0, 0) == []
    both = Disagreements(1, 0) + Disagreements(0, 2)
    assert disagreement_texts(both.with_csv, both.with_api) == [
        "1 file disagrees with activities.csv (elapsed time or distance): kept",
        "2 files older than Strava's version (cropped or corrected since the upload): not used"]
    assert disagreement_texts(2, 1)[0].startswith("2 files disagree with") and \
        disagreement_texts(2, 1)[1].startswith("1 file older")
