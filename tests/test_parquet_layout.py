"""The per-athlete Parquet layout: an existing one-athlete parquet_dir migrates in place, killed or not."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from bench.compact import ATHLETE_ID, write_synthetic_store
from bulkfetch.compact import MANIFEST, compact
from bulkfetch.parquet_layout import PARTITION_SCHEMA, STAGING, year_of_folder
from bulkfetch.schema import TABLES
from bulkfetch.store import RawStore
from tests.conftest import athlete_store, cli_env, run_cli

YEARS = (2018, 2021)
# Schema version 2 had `athlete_id` in the files, right after these columns.
LEGACY_ATHLETE_AFTER = {"activities": "location_country", "laps": "activity_id", "best_efforts": "activity_id",
                        "segment_efforts": "activity_id"}


def write_legacy(store: RawStore, parquet_dir: Path, scratch: Path) -> None:
    """What schema version 2 left: `<table>/year=YYYY/part-0.parquet` with `athlete_id` inside four tables'
    files, schema_version 2 in their metadata, and a manifest of that version for this parquet_dir."""
    compact(store, scratch, ATHLETE_ID)
    for path in scratch.rglob("part-0.parquet"):
        table, year_folder = path.parts[-4], path.parts[-2]
        data = pq.read_table(path)
        if table in LEGACY_ATHLETE_AFTER:
            at = data.schema.get_field_index(LEGACY_ATHLETE_AFTER[table]) + 1
            data = data.add_column(at, pa.field("athlete_id", pa.int64()),
                                   pa.array([ATHLETE_ID] * data.num_rows, pa.int64()))
        target = parquet_dir / table / year_folder / "part-0.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(data.replace_schema_metadata({b"bulkfetch.schema_version": b"2"}), target, compression="zstd")
    manifest = store.read_state(MANIFEST)
    del manifest["athlete_id"]
    store.write_state(MANIFEST, {**manifest, "schema_version": 2, "parquet_dir": str(parquet_dir.resolve())})


def folders(parquet_dir: Path, table: str) -> set[str]:
    """The kinds of folder a table's folder holds: "legacy" (year=), "athlete" (athlete_id=)."""
    return {"legacy" if year_of_folder(p.name) is not None else "athlete" if p.name.startswith("athlete_id=")
            else p.name for p in (parquet_dir / table).iterdir()}


def rows(parquet_dir: Path, table: str, partitioning: ds.Partitioning | str) -> list[bytes]:
    data = ds.dataset(parquet_dir / table, format="parquet", partitioning=partitioning).to_table()
    return sorted(orjson.dumps(r, default=str, option=orjson.OPT_SORT_KEYS) for r in data.to_pylist())


def new_rows(parquet_dir: Path, table: str) -> list[bytes]:
    return rows(parquet_dir, table, ds.partitioning(PARTITION_SCHEMA, flavor="hive"))


@pytest.fixture
def legacy(tmp_path) -> tuple[RawStore, Path, Path]:
    """A store, its parquet_dir in the legacy layout, and the same store compacted afresh (the reference)."""
    store = write_synthetic_store(tmp_path / "data", 24, seed=2, years=YEARS, stream_share=0.5)
    parquet_dir = tmp_path / "data" / "parquet"
    write_legacy(store, parquet_dir, tmp_path / "reference")
    return store, parquet_dir, tmp_path / "reference"


def assert_migrated(store: RawStore, parquet_dir: Path, reference: Path) -> None:
    for table in TABLES:
        assert folders(parquet_dir, table) == {"athlete"}, table
        assert new_rows(parquet_dir, table) == new_rows(reference, table), table
    assert not (parquet_dir / STAGING).exists()
    assert compact(store, parquet_dir, ATHLETE_ID).written == {t: [] for t in TABLES}


def test_a_legacy_parquet_dir_migrates_in_place_and_keeps_its_rows(legacy):
    store, parquet_dir, reference = legacy
    before = {t: rows(parquet_dir, t, "hive") for t in TABLES}
    assert any(b"athlete_id" in row for row in before["activities"])
    result = compact(store, parquet_dir, ATHLETE_ID)
    assert result.written["activities"] == list(range(YEARS[0], YEARS[1] + 1))
    assert_migrated(store, parquet_dir, reference)
    with duckdb.connect() as db:  # the same rows as before, athlete_id now from the path, as int64
        sql = (f"SELECT * FROM read_parquet('{parquet_dir}/laps/**/*.parquet', hive_partitioning = true, "
               "hive_types = {'athlete_id': BIGINT})")
        assert db.execute(f"SELECT DISTINCT typeof(athlete_id), athlete_id FROM ({sql})").fetchall() == [
            ("BIGINT", ATHLETE_ID)]
        assert db.execute(f"SELECT count(*) FROM ({sql})").fetchone()[0] == len(before["laps"])


KILLER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import bulkfetch.compact as compact_module
    import bulkfetch.parquet_layout as layout_module
    from bulkfetch.store import RawStore

    moment, data_dir, parquet_dir, athlete_id = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    calls = []

    def kill_on(name, module, at_call):
        real = getattr(module, name)

        def wrapped(*args, **kwargs):
            calls.append(name)
            if calls.count(name) == at_call:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)

        setattr(module, name, wrapped)

    if moment == "staging":  # as the second year starts: the first is written aside and recorded
        kill_on("write_year", compact_module, 2)
    else:  # between swapping the first table in and removing its legacy folders
        kill_on("_remove_legacy", layout_module, 1)
    compact_module.compact(RawStore(data_dir), parquet_dir, athlete_id)
""")


@pytest.mark.parametrize("moment", ["staging", "publishing"])
def test_sigkill_mid_migration_leaves_readable_tables_and_the_next_run_finishes(legacy, moment):
    store, parquet_dir, reference = legacy
    before = {t: rows(parquet_dir, t, "hive") for t in TABLES}
    killed = subprocess.run([sys.executable, "-c", KILLER, moment, str(store.data_dir), str(parquet_dir),
                             str(ATHLETE_ID)], env=cli_env(), capture_output=True, text=True, timeout=60)
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    staged = list((parquet_dir / STAGING).rglob("part-0.parquet"))
    if moment == "staging":
        assert staged  # the first year was written aside, where readers of <table>/ do not look
        for table in TABLES:  # every table is still the legacy one, whole
            assert folders(parquet_dir, table) == {"legacy"}, table
            assert rows(parquet_dir, table, "hive") == before[table], table
    else:
        first, *rest = TABLES
        # Killed while removing the first table's legacy folders: they were swapped aside with the new
        # table in one step, so no reader ever sees both kinds (DuckDB refuses them, pyarrow counts twice).
        assert folders(parquet_dir, first) == {"athlete"}
        assert list((parquet_dir / STAGING / first).glob("year=*"))  # the legacy table, aside
        assert rows(parquet_dir, first, "hive") == before[first]
        for table in rest:
            assert folders(parquet_dir, table) == {"legacy"}, table

    result = compact(store, parquet_dir, ATHLETE_ID)
    if moment == "staging":  # resumed: the year written aside before the kill is not written again
        assert result.skipped_years == [YEARS[0]]
    else:
        assert result.written == {t: [] for t in TABLES}
    assert_migrated(store, parquet_dir, reference)


def test_cli_compact_migrates_a_legacy_data_dir_and_says_nothing_to_do_before_the_first_listing(
        legacy, tmp_path, write_config):
    store, parquet_dir, reference = legacy
    config = write_config(f'[storage]\ndata_dir = "{store.data_dir}"\n')
    result = run_cli("--config", str(config), "compact", timeout=60)
    assert result.returncode == 0, result.stderr
    assert not (store.data_dir / "raw").exists()  # the raw data moved to its athlete's folder too
    assert_migrated(athlete_store(store.data_dir), parquet_dir, reference)

    empty = write_config(f'[storage]\ndata_dir = "{tmp_path / "empty"}"\n', name="empty.toml")
    result = run_cli("--config", str(empty), "compact", timeout=60)
    assert result.returncode == 0, result.stderr
    assert "nothing to compact" in result.stderr and "Traceback" not in result.stderr
    assert not list((tmp_path / "empty").rglob("*.parquet"))
