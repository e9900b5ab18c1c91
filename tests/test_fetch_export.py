"""A fetch and an account export imported around it: an export imported before its athlete was known
joins the athlete the fetch lists, an import that ends during the fetch's compaction is compacted by
it, and a repeat fetch's summary says what the export covers as a state. The real CLI against the
simulator, real compaction, the Parquet read back with DuckDB."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import bulkfetch.compact as compact_module
from bulkfetch.simulator import SimulatorSettings, SimulatorThread
from bulkfetch.simulator.export import ExportSummary, write_export
from tests.conftest import run_cli, simulator_config_text
from tests.exports import ENGLISH_94, ExportFile, csv_text, english_row, fixture, write_zip
from tests.test_athletes import connect
from tests.test_export_merge import PLAN_SAVING, cli, sources
from tests.test_streams import spent, stream_gets

# seed 37: the simulator's export has one cropped, one corrupt and one manual activity among ten
SETTINGS = SimulatorSettings(activities=10, seed=37, duration_s=120, short_limit=1000, daily_limit=10000)


def without_profile(written: ExportSummary, path: Path) -> Path:
    """The export as one whose profile.csv is missing (it alone names the athlete)."""
    with zipfile.ZipFile(written.path) as source, zipfile.ZipFile(path, "w") as target:
        for member in source.infolist():
            if member.filename != "profile.csv":
                target.writestr(member, source.read(member))
    return path


def covered_by(written: ExportSummary, listed: set[int]) -> set[int]:
    """The activities whose streams the export's files give (see test_export_merge)."""
    return listed - set(written.cropped) - set(written.manual) - {written.corrupt.activity_id}


def test_an_export_imported_before_its_athlete_was_known_joins_the_athlete_the_fetch_lists(tmp_path, capsys,
                                                                                         monkeypatch):
    with SimulatorThread(SETTINGS) as sim:
        written = write_export(tmp_path / "export.zip", sim.history)
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, tmp_path / "data", refresh_token=""))
        unbound = tmp_path / "data" / "athletes" / "unbound"
        assert cli(config, "import", str(without_profile(written, tmp_path / "anonymous.zip"))) == 0
        assert (unbound / "export").is_dir()
        connect(config, sim.refresh_token_of(), monkeypatch)
        listed = set(sim.activity_ids())
        covered = covered_by(written, listed)
        capsys.readouterr()
        assert cli(config, "plan", "--streams", "all") == 0
        out, err = capsys.readouterr()
        saving = PLAN_SAVING.search(out)
        assert saving and saving.group(1, 2) == (str(len(covered)), str(len(listed)))
        assert "unbound" not in out  # no plan line of its own: nothing is requested for it
        assert f"is athlete {sim.history.athlete_id}'s: moved to" in err
        assert not unbound.exists()
        assert cli(config, "fetch", "--streams", "all") == 0
        assert sorted(stream_gets(sim)) == sorted(listed - covered)
        assert f"{len(covered)} stream sets from the account export;" in capsys.readouterr().out  # its summary line
        # A repeat run decides nothing: the export's share is not said again, as if this run had spared it.
        assert cli(config, "fetch", "--streams", "all") == 0
        out, err = capsys.readouterr()
        assert "account export" not in out + err and "stream request" not in out
    assert {i: s for i, s in sources(tmp_path / "data", "streams").items() if i in covered} == {
        i: {"file"} for i in covered}


def test_a_fetch_adopts_the_unbound_export_without_a_plan_first_and_never_on_another_athletes_list(
        tmp_path, capsys, monkeypatch):
    settings = SimulatorSettings(athletes=2, athlete_activities=(10, 4), seed=37, duration_s=120, short_limit=1000,
                                 daily_limit=10000)
    with SimulatorThread(settings) as sim:
        owner, other = (athlete.athlete_id for athlete in sim.athletes)
        written = write_export(tmp_path / "export.zip", sim.athletes[0].history)
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, tmp_path / "data", refresh_token=""))
        assert cli(config, "import", str(without_profile(written, tmp_path / "anonymous.zip"))) == 0
        for athlete_id in (other, owner):
            connect(config, sim.refresh_token_of(athlete_id), monkeypatch)
        listed = set(sim.activity_ids(athlete_id=owner))
        capsys.readouterr()
        assert cli(config, "fetch", "--no-compact", "--streams", "all") == 0
        err = capsys.readouterr().err
    assert sorted(set(stream_gets(sim)) & listed) == sorted(listed - covered_by(written, listed))
    assert err.count("moved to") == 1 and f"{tmp_path / 'data' / 'athletes' / str(owner)}" in err
    assert not (tmp_path / "data" / "athletes" / str(other) / "export").exists()



def test_an_import_that_ends_while_the_fetch_compacts_is_compacted_by_that_fetch(tmp_path, monkeypatch, capsys):
    with SimulatorThread(SETTINGS) as sim:
        written = write_export(tmp_path / "export.zip", sim.history)
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, tmp_path / "data"))
        real_compact = compact_module.compact
        imports: list[subprocess.CompletedProcess[str]] = []

        def then_an_import(*args, **kwargs):
            """The import ends just after this compaction read the athlete's index, while the fetch holds the
            data_dir: it is refused the compaction."""
            result = real_compact(*args, **kwargs)
            if not imports:
                imports.append(run_cli("--config", str(config), "import", str(written.path)))
            return result

        monkeypatch.setattr(compact_module, "compact", then_an_import)
        capsys.readouterr()
        assert cli(config, "fetch") == 0
        listed = set(sim.activity_ids())
    assert imports[0].returncode == 0 and "the fetch compacts when it ends" in imports[0].stderr
    # The fetch asked no streams: the truncated (corrupt) file's streams stay too, up to its cut.
    from_files = covered_by(written, listed) | {written.corrupt.activity_id}
    assert sources(tmp_path / "data", "streams") == dict.fromkeys(from_files, {"file"})
    # Each year once, though the second pass found some unchanged; and the cropped files, as status says them.
    err = capsys.readouterr().err
    assert "compacting 1 athlete(s) again" in err
    years = {p.name for p in (tmp_path / "data" / "parquet").glob("*/athlete_id=*/year=*")}
    line = next(line for line in err.splitlines() if "compacted into" in line)
    assert line.endswith(f": {len(years)} year(s) rewritten, 0 unchanged; {len(written.cropped)} file older than "
                         "Strava's version: not used"), line


def test_plan_counts_no_request_for_an_export_waiting_for_its_athlete(tmp_path, capsys, monkeypatch):
    with SimulatorThread(SimulatorSettings(activities=3, seed=37, short_limit=1000, daily_limit=10000)) as sim:
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, tmp_path / "data", refresh_token=""))
        stranger = write_zip(tmp_path / "stranger.zip", csv_text(ENGLISH_94, [english_row(1, "activities/1.gpx")]),
                             [ExportFile("activities/1.gpx", fixture("hike.gpx"))])
        assert cli(config, "import", str(stranger)) == 0
        connect(config, sim.refresh_token_of(), monkeypatch)
        capsys.readouterr()
        assert cli(config, "plan") == 0
        out = capsys.readouterr().out
    assert "unbound" not in out and "(1 list page, 3 details" in out  # the connected athlete's alone
    log = (tmp_path / "data" / "bulkfetch.log").read_text()
    assert "plan (lists only, fetches nothing) in" in log and "fetch into" not in log  # plan fetched nothing
    assert (tmp_path / "data" / "athletes" / "unbound" / "export").is_dir()  # none of its activities are theirs


def test_the_listing_that_names_an_import_only_athlete_is_theirs_not_made_again(tmp_path, capsys):
    """The export imported first (profile.csv names the athlete), then the config's token: the listing
    that learns whose the token is becomes the athlete's, and the run does not list again."""
    with SimulatorThread(SETTINGS) as sim:
        written = write_export(tmp_path / "export.zip", sim.history)
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, tmp_path / "data"))
        assert cli(config, "import", str(written.path)) == 0
        mark = len(sim.request_log)
        assert cli(config, "plan") == 0
        assert spent(sim, mark)["list"] == 1  # was 2: the seed's listing was dropped and made again
        mark = len(sim.request_log)
        assert cli(config, "fetch", "--streams", "all") == 0
        assert spent(sim, mark)["list"] == 1 and spent(sim, mark)["detail"] == len(sim.activity_ids())
    assert sources(tmp_path / "data", "activities") == {i: {"api"} for i in sim.activity_ids()}
