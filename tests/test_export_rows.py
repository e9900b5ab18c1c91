"""Which rows the account export keeps once the API has spoken: activities deleted on Strava after the
export was made, files that disagree with the export's own CSV, truncated files. The real CLI against the
simulator, real device files, the Parquet read back with DuckDB."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from bulkfetch.cli import main
from bulkfetch.roster import Roster
from bulkfetch.simulator import SimulatorSettings, SimulatorThread
from bulkfetch.simulator.export import write_export
from tests.conftest import simulator_config_text

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


def test_a_full_listing_drops_what_strava_deleted_since_the_export_and_keeps_what_is_newer(tmp_path):
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

        # An export made after that listing holds an activity recorded since: no listing has it, it stays.
        newer_id = thread.call(partial(sim.add_activity, None))
        newer = write_export(tmp_path / "newer.zip", sim.history)
        assert cli(config, "import", str(newer.path)) == 0
    tables = ids_by_table(tmp_path / "data")
    assert tables["activities"][newer_id] == {"csv"}
    assert set(tables["activities"]) == set(sim.activity_ids())
