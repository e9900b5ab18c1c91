"""`bulkfetch athletes`: the list (names, counts, states), `remove` (deauthorized, never fetched again, data
kept or purged, the lock), and `adopt` of another data_dir (no request, its Parquet made here, refusals,
a killed adopt finished). Real CLI, real HTTP against the simulator, real files."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from bulkfetch.athletes import ADOPTING, HEADERS, AthleteRow, table_cells
from bulkfetch.auth import Tokens
from bulkfetch.cli import main
from bulkfetch.parquet_layout import PARTITION_SCHEMA
from bulkfetch.roster import Roster
from bulkfetch.schema import TABLES
from bulkfetch.simulator import SimulatorSettings, SimulatorThread
from tests.conftest import run_cli, simulator_config_text
from tests.test_athletes import athlete_dir, connect, status, team
from tests.test_auth import _auth_no_browser_as
from tests.test_lifecycle import error_line, spawn, wait_until

API = "/api/v3"


def athletes_json(config: Path, capsys: pytest.CaptureFixture) -> dict[int | None, dict]:
    capsys.readouterr()
    assert main(["--config", str(config), "athletes", "--json"]) == 0
    return {row["athlete_id"]: row for row in json.loads(capsys.readouterr().out)}


def athletes_cmd(config: Path, *args: str) -> int:
    return main(["--config", str(config), "athletes", *args])


def parquet_rows(parquet_dir: Path, table: str = "activities") -> dict[int, int]:
    """Rows per athlete_id, read as DuckDB or Spark would: the whole hive-partitioned table."""
    dataset = ds.dataset(parquet_dir / table, format="parquet", partitioning=ds.partitioning(
        PARTITION_SCHEMA, flavor="hive"))
    counts: dict[int, int] = {}
    for athlete_id in dataset.to_table(columns=["athlete_id"]).column("athlete_id").to_pylist():
        counts[athlete_id] = counts.get(athlete_id, 0) + 1
    return counts


def records_of(sim, athlete_id: int, since: int = 0) -> list:
    """Every request for `athlete_id` (API and OAuth) since `since`."""
    return [r for r in sim.request_log[since:] if r.athlete_id == athlete_id]


# -- the list -------------------------------------------------------------------------------------------

def test_table_cells_show_unknown_names_and_ids_as_a_dash() -> None:
    rows = [AthleteRow(7, "Zoë Ł", 1200, 1100, 100, "2025-01-02T03:04:05Z", "ok", None, False, None),
            AthleteRow(None, None, 0, 0, 0, None, "ok", None, False, None)]
    assert table_cells(rows) == [("Zoë Ł", "7", "1,200", "1,100", "100", "2025-01-02T03:04:05Z", "ok", "—"),
                                 ("—", "—", "0", "0", "0", "never", "ok", "—")]
    assert len(HEADERS) == len(table_cells(rows)[0])


def test_athletes_lists_names_counts_last_fetch_and_states(tmp_path, monkeypatch, capsys) -> None:
    settings = SimulatorSettings(athletes=3, athlete_activities=(6, 4, 3), seed=61, short_limit=1000,
                                 daily_limit=10_000)
    thread = SimulatorThread(settings)
    with thread as sim:
        seeded, coded, piped = sim.athlete_ids
        config = tmp_path / "config.toml"  # the first athlete from the config's seed: its name is never said
        config.write_text(simulator_config_text(sim, tmp_path / "data", refresh_token=sim.refresh_token_of(seeded)))
        assert main(["--config", str(config), "fetch", "--no-compact"]) == 0
        process, _, location = _auth_no_browser_as(sim, config, coded)  # the OAuth code flow
        try:
            out, err = process.communicate(location + "\n", timeout=20)
        finally:
            process.kill()
        assert process.returncode == 0, err
        connect(config, sim.refresh_token_of(piped), monkeypatch)  # auth --refresh-token: GET /athlete
        thread.call(lambda: sim.revoke_athlete(piped))
        assert main(["--config", str(config), "fetch", "--no-compact"]) == 2

        rows = athletes_json(config, capsys)
        assert list(rows) == [seeded, coded, piped]
        assert {i: r["name"] for i, r in rows.items()} == {seeded: None, coded: "Ingrid Nuñez",
                                                           piped: "Kenji Møller-Sato"}
        assert {i: (r["listed"], r["fetched"], r["pending"]) for i, r in rows.items()} == \
            {seeded: (6, 6, 0), coded: (4, 4, 0), piped: (0, 0, 0)}
        assert {i: r["state"] for i, r in rows.items()} == {seeded: "ok", coded: "ok", piped: "revoked"}
        assert rows[seeded]["last_fetch"] and rows[piped]["last_fetch"]
        assert set(rows[seeded]) == {"athlete_id", "name", "listed", "fetched", "pending", "last_fetch", "state", "why",
                                     "import_only", "export"}

        capsys.readouterr()
        assert athletes_cmd(config) == 0  # no terminal here: plain aligned lines
        lines = capsys.readouterr().out.splitlines()
        assert lines[0] == f"athletes in {tmp_path / 'data'}"
        header, *table = lines[1:]
        assert header.split() == ["name", "athlete", "listed", "fetched", "pending", "last", "fetch", "state", "export"]
        assert len(table) == 3 and all(len(line) == len(header) for line in table)
        assert table[0].startswith("—") and table[0].split()[-2:] == ["ok", "—"] and str(seeded) in table[0]
        assert table[2].startswith("Kenji Møller-Sato") and table[2].split()[-2:] == ["revoked", "—"]


def test_athletes_of_an_empty_data_dir(tmp_path, capsys) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n')
    assert athletes_cmd(config, "--json") == 0
    assert json.loads(capsys.readouterr().out) == []
    assert athletes_cmd(config) == 0
    assert "no athlete in" in capsys.readouterr().out


# -- remove ---------------------------------------------------------------------------------------------

def test_remove_deauthorizes_forgets_the_tokens_and_no_fetch_asks_for_it_again(tmp_path, monkeypatch, capsys) -> None:
    settings = SimulatorSettings(athletes=2, athlete_activities=(5, 3), seed=62, short_limit=1000, daily_limit=10_000)
    with SimulatorThread(settings) as sim:
        config = team(tmp_path, sim, monkeypatch)
        kept, removed = sim.athlete_ids
        assert main(["--config", str(config), "fetch"]) == 0  # with compaction: both in the Parquet
        mark = len(sim.request_log)
        capsys.readouterr()
        assert athletes_cmd(config, "remove", str(removed)) == 0
        out = capsys.readouterr().out
        assert f"removed athlete {removed} (Ingrid Nuñez): deauthorized at Strava" in out and "--purge" in out
        assert sim.connected_athlete_ids() == [kept]
        assert [r.path for r in records_of(sim, removed, mark)] == ["/oauth/deauthorize"]
        assert not athlete_dir(tmp_path, removed).auth_dir.joinpath("tokens.json").exists()
        rows = athletes_json(config, capsys)
        assert rows[removed]["state"] == "removed" and rows[removed]["name"] == "Ingrid Nuñez"
        assert rows[removed]["fetched"] == 3 and rows[kept]["state"] == "ok"

        sim.add_activity(athlete_id=removed)
        mark = len(sim.request_log)
        assert main(["--config", str(config), "fetch"]) == 0
        assert not records_of(sim, removed, mark) and records_of(sim, kept, mark)
        assert athlete_dir(tmp_path, removed).detail_ids() == set(sim.activity_ids(athlete_id=removed)[1:])
        assert parquet_rows(tmp_path / "data" / "parquet") == {kept: 5, removed: 3}  # still queryable

        mark = len(sim.request_log)
        capsys.readouterr()
        assert athletes_cmd(config, "remove", str(removed)) == 0  # again: nothing to do, nothing asked
        assert "removed already" in capsys.readouterr().out and sim.request_log[mark:] == []
        assert athletes_cmd(config, "remove", "999") == 2  # not one of them: one line, nothing asked
        assert "athlete 999 is not in" in capsys.readouterr().err


def test_a_removed_athletes_config_seed_does_not_connect_it_again(tmp_path, capsys) -> None:
    with SimulatorThread(SimulatorSettings(activities=4, seed=63, short_limit=1000, daily_limit=10_000)) as sim:
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, tmp_path / "data"))  # a one-athlete data_dir, seeded
        assert main(["--config", str(config), "fetch", "--no-compact"]) == 0
        assert athletes_cmd(config, "remove", str(sim.settings.athlete_id)) == 0
        mark = len(sim.request_log)
        capsys.readouterr()
        assert main(["--config", str(config), "fetch", "--no-compact"]) == 2  # nobody to serve: said, not "done"
        assert "no athlete to serve" in capsys.readouterr().err
        assert sim.request_log[mark:] == []  # the config still names the seed: it is not tried
        assert athletes_json(config, capsys)[sim.settings.athlete_id]["state"] == "removed"
        report = status(config, capsys)  # nothing is left to fetch: no run would fetch it
        assert report["athletes"][0]["state"] == "removed" and report["remaining_requests"] == 0
        assert report["eta"] is None


def test_an_athlete_that_revoked_the_app_is_removed_with_a_warning(tmp_path, monkeypatch, capsys) -> None:
    settings = SimulatorSettings(athletes=2, activities=2, seed=64, short_limit=1000, daily_limit=10_000)
    thread = SimulatorThread(settings)
    with thread as sim:
        config = team(tmp_path, sim, monkeypatch)
        gone = sim.athlete_ids[1]
        assert main(["--config", str(config), "fetch", "--no-compact"]) == 0
        thread.call(lambda: sim.revoke_athlete(gone))
        tokens = Roster(tmp_path / "data").athlete(gone).tokens
        tokens.save(replace(tokens.load(), expires_at=0.0))  # expired: refreshed first, which Strava rejects
        capsys.readouterr()
        assert athletes_cmd(config, "remove", str(gone)) == 0
        captured = capsys.readouterr()
        assert "dropped the app already" in captured.err and "Traceback" not in captured.err
        assert f"removed athlete {gone}" in captured.out and "deauthorized" not in captured.out
        assert athletes_json(config, capsys)[gone]["state"] == "removed"


def test_purge_is_refused_during_a_fetch_plain_remove_is_not(tmp_path, monkeypatch, capsys) -> None:
    settings = SimulatorSettings(athletes=3, athlete_activities=(4, 4, 4), seed=65, short_limit=1000,
                                 daily_limit=10_000)
    with SimulatorThread(settings) as sim:
        config = team(tmp_path, sim, monkeypatch, fetch={"concurrency": 1})
        first, during, purged = sim.athlete_ids
        assert main(["--config", str(config), "fetch"]) == 0
        parquet = tmp_path / "data" / "parquet"
        assert parquet_rows(parquet) == {first: 4, during: 4, purged: 4}

        for athlete_id in sim.athlete_ids:  # work for a fetch that runs a few seconds
            for _ in range(6):
                sim.add_activity(athlete_id=athlete_id)
        sim.set_settings(latency_s=0.15)
        mark = len(sim.request_log)
        fetch = spawn(config, "fetch")
        try:
            wait_until(lambda: any(r.status == 200 and r.path.startswith(f"{API}/activities/")
                                   for r in sim.request_log[mark:]), what="the fetch's first details")
            assert athletes_cmd(config, "remove", str(during)) == 0  # no lock needed
            deauthorized_at = max(i for i, r in enumerate(sim.request_log) if r.path == "/oauth/deauthorize")
            capsys.readouterr()
            assert athletes_cmd(config, "remove", str(purged), "--purge") == 2
            refused = capsys.readouterr().err
            assert f"PID {fetch.pid}" in error_line(refused) and len(refused.strip().splitlines()) == 1
            assert athlete_dir(tmp_path, purged).detail_ids() and purged in sim.connected_athlete_ids()
            out, err = fetch.communicate(timeout=60)
        finally:
            fetch.kill()
        assert fetch.returncode == 0, err  # the removed athlete is dropped, not reported as revoked
        assert f"athlete {during} was removed" in err
        assert not [r for r in records_of(sim, during, deauthorized_at + 1) if r.status == 200]
        for athlete_id in (first, purged):
            assert athlete_dir(tmp_path, athlete_id).detail_ids() == set(sim.activity_ids(athlete_id=athlete_id))

        sim.set_settings(latency_s=0.0)
        assert athletes_cmd(config, "remove", str(purged), "--purge") == 0
        assert purged not in sim.connected_athlete_ids()
    assert not athlete_dir(tmp_path, purged).data_dir.exists()
    for table in TABLES:
        assert not (parquet / table / f"athlete_id={purged}").exists()
    rows = parquet_rows(parquet)
    assert set(rows) == {first, during} and rows[first] == 10  # the others' partitions intact
    assert not (parquet / ".purging").exists() and not (tmp_path / "data" / "athletes" / ".purging").exists()
    assert sorted(Roster(tmp_path / "data").removals()) == [during, purged]


# -- adopt ----------------------------------------------------------------------------------------------

def old_layout_data_dir(tmp_path: Path, sim, athlete_id: int) -> Path:
    """A one-athlete data_dir made by a real fetch, then put back in the layout before many athletes."""
    config = tmp_path / "old.toml"
    data = tmp_path / "old"
    config.write_text(simulator_config_text(sim, data, refresh_token=sim.refresh_token_of(athlete_id)))
    assert main(["--config", str(config), "fetch"]) == 0
    for name in ("raw", "state", "auth"):
        shutil.move(data / "athletes" / str(athlete_id) / name, data / name)
    shutil.rmtree(data / "athletes")
    return data


def test_adopt_moves_an_old_data_dir_in_without_a_request_and_compacts_it(tmp_path, monkeypatch, capsys) -> None:
    settings = SimulatorSettings(athletes=2, athlete_activities=(5, 7), seed=66, short_limit=1000, daily_limit=10_000)
    with SimulatorThread(settings) as sim:
        here, there = sim.athlete_ids
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, tmp_path / "data", refresh_token=""))
        connect(config, sim.refresh_token_of(here), monkeypatch)
        assert main(["--config", str(config), "fetch"]) == 0
        other = old_layout_data_dir(tmp_path, sim, there)

        mark = len(sim.request_log)
        capsys.readouterr()
        assert athletes_cmd(config, "adopt", str(other)) == 0
        out = capsys.readouterr().out
        assert sim.request_log[mark:] == []  # no request at all
        assert f"adopted athlete {there} (name unknown) from {other}: 7 listed, 7 fetched, 0 pending" in out
        assert not (other / "raw").exists() and not any((other / "athletes").iterdir())
        assert athlete_dir(tmp_path, there).detail_ids() == set(sim.activity_ids(athlete_id=there))
        assert parquet_rows(tmp_path / "data" / "parquet") == {here: 5, there: 7}
        assert set(athletes_json(config, capsys)) == {here, there}

        mark = len(sim.request_log)
        assert main(["--config", str(config), "fetch", "--no-compact"]) == 0  # its tokens came along
        assert [r.path for r in records_of(sim, there, mark)] == [f"{API}/athlete/activities"]

        # Killed after the move, before its compaction: the same command finishes (compacts) it.
        for table in (tmp_path / "data" / "parquet").iterdir():
            shutil.rmtree(table / f"athlete_id={there}", ignore_errors=True)
        capsys.readouterr()
        assert athletes_cmd(config, "adopt", str(other)) == 0
        assert f"adopted athlete {there}" in capsys.readouterr().out
        assert parquet_rows(tmp_path / "data" / "parquet") == {here: 5, there: 7}


def connected(data_dir: Path, athlete_id: int) -> None:
    """An athlete folder as `auth` leaves it (tokens only), without a request."""
    Roster(data_dir).connect(Tokens(refresh_token=f"token-{athlete_id}", athlete_id=athlete_id))


@pytest.mark.parametrize("case", ["already here", "already here, old layout", "this data_dir", "inside it",
                                  "not a folder", "empty"])
def test_adopt_refusals_are_one_line_and_change_nothing(tmp_path, case) -> None:
    data, other = tmp_path / "data", tmp_path / "other"
    if case.endswith("old layout"):  # this data_dir still in the layout before many athletes
        (data / "state").mkdir(parents=True)
        (data / "state" / "athlete.json").write_text('{"athlete_id": 5}')
    else:
        connected(data, 5)
    connected(other, 5 if case.startswith("already here") else 6)
    target = {"this data_dir": data, "inside it": data / "athletes" / "5", "not a folder": tmp_path / "nowhere",
              "empty": tmp_path / "empty"}.get(case, other)
    (tmp_path / "empty").mkdir()
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\ndata_dir = "{data}"\n')
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = run_cli("--config", str(config), "athletes", "adopt", str(target))
    assert result.returncode == 2
    line = error_line(result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1
    assert {"already here": "athlete 5 is already in", "already here, old layout": "athlete 5 is already in",
            "this data_dir": "is this data_dir",
            "inside it": "inside one another", "not a folder": "is not a folder",
            "empty": "holds no athlete"}[case] in line
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_killed_adopt_is_finished_by_the_next_one(tmp_path) -> None:
    data, other = tmp_path / "data", tmp_path / "other"
    connected(data, 5)
    for athlete_id in (6, 7):
        connected(other, athlete_id)
        (other / "athletes" / str(athlete_id) / "raw" / "activities").mkdir(parents=True)
        (other / "athletes" / str(athlete_id) / "raw" / "activities" / f"{athlete_id}0.json").write_text("{}")
    # Killed after hiding athlete 6 there (the first step), before its move here.
    os.replace(other / "athletes" / "6", other / "athletes" / f"{ADOPTING}6")
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\ndata_dir = "{data}"\n')
    result = run_cli("--config", str(config), "athletes", "adopt", str(other))
    assert result.returncode == 0, result.stderr
    assert [a.athlete_id for a in Roster(data).athletes()] == [5, 6, 7]
    assert Roster(data).athlete(6).store.detail_ids() == {60} and Roster(data).athlete(7).store.detail_ids() == {70}
    assert not any((other / "athletes").iterdir())


@pytest.mark.skipif(not Path("/dev/shm").is_dir() or os.stat("/dev/shm").st_dev == os.stat(Path.cwd()).st_dev,
                    reason="needs a second file system (/dev/shm)")
def test_adopt_across_file_systems_copies_then_removes_the_original(tmp_path) -> None:
    other = Path("/dev/shm") / f"bulkfetch-adopt-{os.getpid()}-{time.monotonic_ns()}"
    try:
        connected(other, 8)
        (other / "athletes" / "8" / "raw" / "activities").mkdir(parents=True)
        (other / "athletes" / "8" / "raw" / "activities" / "80.json").write_text("{}")
        data = tmp_path / "data"
        config = tmp_path / "config.toml"
        config.write_text(f'[storage]\ndata_dir = "{data}"\n')
        result = run_cli("--config", str(config), "athletes", "adopt", str(other))
        assert result.returncode == 0, result.stderr
        adopted = Roster(data).athlete(8)
        assert adopted.store.detail_ids() == {80} and adopted.tokens.load().refresh_token == "token-8"
        assert oct(adopted.tokens.path.stat().st_mode & 0o777) == "0o600"
        assert not any((other / "athletes").iterdir()) and not list((data / "athletes").glob(".*"))
    finally:
        shutil.rmtree(other, ignore_errors=True)


@pytest.mark.parametrize("purge", [False, True], ids=["remove", "purge"])
def test_an_athlete_without_tokens_is_removed_without_api_credentials(tmp_path, purge) -> None:
    """An import-only data_dir (no API app at all) asks Strava nothing: no client_id or secret needed.
    With tokens, the deauthorization needs them: refused in one line, nothing changed."""
    from tests.exports import ENGLISH_94, ExportFile, csv_text, english_row, fixture, write_zip

    data = tmp_path / "data"
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\ndata_dir = "{data}"\n')
    export = write_zip(tmp_path / "export.zip", csv_text(ENGLISH_94, [english_row(1, "activities/1.fit")]),
                       [ExportFile("activities/1.fit", fixture("fenix5-run.fit"))])
    assert run_cli("--config", str(config), "import", str(export), "--athlete", "41").returncode == 0
    connected(data, 42)
    assert parquet_rows(data / "parquet") == {41: 1}

    refused = run_cli("--config", str(config), "athletes", "remove", "42", *(["--purge"] if purge else []))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "client_id" in refused.stderr
    assert Roster(data).athlete(42).tokens.load() is not None

    removed = run_cli("--config", str(config), "athletes", "remove", "41", *(["--purge"] if purge else []))
    assert removed.returncode == 0, removed.stderr
    assert "athlete 41 has no tokens here (imported only): no fetch serves it" in removed.stdout, removed.stdout
    assert (data / "athletes" / "41").exists() != purge
    assert parquet_rows(data / "parquet") == ({} if purge else {41: 1})
