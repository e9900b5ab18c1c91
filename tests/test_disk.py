"""Disk and file system: a full disk mid-run, folders that cannot be written, files where folders should be,
and temporary files a crash left behind. Small file systems are real tmpfs mounts (the tests run as root,
as CI does); without root they are skipped, except the not-writable cases, which then use chmod."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import duckdb
import orjson
import pyarrow.parquet as pq
import pytest

from bulkfetch.cli import main
from bulkfetch.simulator import SimulatorSettings, SimulatorThread
from tests.conftest import athlete_store, run_cli, simulator_config_text
from tests.test_fetch import api_records, assert_matches_ground_truth, detail_gets

OFFLINE_STRAVA = """[strava]
api_url = "http://127.0.0.1:9/api/v3"
oauth_url = "http://127.0.0.1:9/oauth"
client_id = "1"
client_secret = "s"
refresh_token = "r"
"""


@contextlib.contextmanager
def tmpfs(folder: Path, size: str, *, read_only: bool = False) -> Iterator[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def grow(folder: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(folder)], check=True, capture_output=True)


def fill(folder: Path) -> None:
    """Take every free block of the file system holding `folder`."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp-" in p.name]


def assert_nothing_partial(data_dir: Path) -> None:
    """No temporary file left, every JSON file parses, every Parquet file opens."""
    assert not temp_files(data_dir)
    for path in data_dir.rglob("*.json"):
        orjson.loads(path.read_bytes())
    for path in data_dir.rglob("*.parquet"):
        pq.read_table(path)


def parquet_rows(pattern: str) -> int:
    with duckdb.connect() as db:
        return db.execute(f"select count(*) from '{pattern}'").fetchone()[0]


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("bulkfetch: ") and "warning" not in line]
    assert len(errors) == 1, stderr
    return errors[0]


def test_disk_full_mid_run_exits_1_leaves_nothing_partial_and_the_next_run_recovers(tmp_path: Path) -> None:
    settings = SimulatorSettings(activities=60, seed=31, short_limit=1000, daily_limit=10000)
    with tmpfs(tmp_path / "small", "400k") as small, SimulatorThread(settings) as sim:
        data_dir = small / "data"
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, data_dir))
        first = run_cli("--config", str(config), "fetch", cwd=tmp_path)
        assert first.returncode == 1, (first.stdout, first.stderr)
        line = one_error_line(first.stderr)
        assert line.startswith("bulkfetch: disk full while writing ") and "free some space and rerun" in line
        assert_nothing_partial(data_dir)
        done = athlete_store(data_dir).detail_ids()
        assert 0 < len(done) < 60

        again = run_cli("--config", str(config), "fetch", cwd=tmp_path)  # space not freed yet: same answer
        assert again.returncode == 1 and "disk full" in one_error_line(again.stderr)
        assert_nothing_partial(data_dir)

        grow(small, "32m")
        mark = len(sim.request_log)
        last = run_cli("--config", str(config), "fetch", cwd=tmp_path)
        assert last.returncode == 0, last.stderr
        assert_nothing_partial(data_dir)
        assert_matches_ground_truth(sim, data_dir)
        refetched = {int(p.rsplit("/", 1)[1]) for p in detail_gets(api_records(sim, since=mark))}
        assert not refetched & (done - set(athlete_store(data_dir).tombstones()))
        assert parquet_rows(f"{data_dir}/parquet/activities/*/*/*.parquet") == 60


def test_a_run_on_a_disk_that_is_already_full_exits_1_with_one_line(tmp_path: Path) -> None:
    """Even the lock file and the log cannot be written: the log is skipped with a warning, the first data
    write fails with the one-line error."""
    with tmpfs(tmp_path / "small", "200k") as small:
        data_dir = small / "data"
        data_dir.mkdir()
        (data_dir / "bulkfetch.log").write_bytes(b"x" * 4095 + b"\n")  # its next line needs a new block
        (data_dir / "fetch.lock").write_bytes(b"1")
        fill(small)
        config = tmp_path / "config.toml"
        config.write_text(OFFLINE_STRAVA + f'[storage]\ndata_dir = "{data_dir}"\n')
        result = run_cli("--config", str(config), "fetch", cwd=tmp_path)
        assert result.returncode == 1, result.stderr
        assert "disk full" in one_error_line(result.stderr)
        assert "cannot write the log" in result.stderr
        assert_nothing_partial(data_dir)
        (data_dir / "fetch.lock").unlink()  # now even the lock file's PID cannot be written
        result = run_cli("--config", str(config), "fetch", cwd=tmp_path)
        assert result.returncode == 1 and "disk full" in one_error_line(result.stderr)


def test_parquet_dir_full_exits_1_keeps_no_partial_file_and_compact_recovers(tmp_path: Path) -> None:
    settings = SimulatorSettings(activities=40, seed=32, short_limit=1000, daily_limit=10000)
    with tmpfs(tmp_path / "pq", "48k") as parquet_dir, SimulatorThread(settings) as sim:
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, tmp_path / "data")
                          + f'parquet_dir = "{parquet_dir}"\n')
        result = run_cli("--config", str(config), "fetch", cwd=tmp_path)
        assert result.returncode == 1, result.stderr
        line = one_error_line(result.stderr)
        assert "cannot write" in line or "disk full" in line
        assert not temp_files(parquet_dir)
        for path in parquet_dir.rglob("*.parquet"):
            pq.read_table(path)
        grow(parquet_dir, "16m")
        assert run_cli("--config", str(config), "compact", cwd=tmp_path).returncode == 0
        assert parquet_rows(f"{parquet_dir}/activities/*/*/*.parquet") == 40


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "ro"
    if os.geteuid() == 0:
        with tmpfs(folder, "1m", read_only=True):
            yield folder
    else:
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)


def run_main(capsys: pytest.CaptureFixture, config: Path, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["--config", str(config), *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("where", ["data_dir itself", "inside data_dir", "parquet_dir"])
def test_a_folder_that_cannot_be_written_is_one_line_and_exit_2(tmp_path: Path, read_only_dir: Path, where: str,
                                                                capsys: pytest.CaptureFixture) -> None:
    storage = {
        "data_dir itself": f'data_dir = "{read_only_dir}"',
        "inside data_dir": f'data_dir = "{read_only_dir / "data"}"',
        "parquet_dir": f'data_dir = "{tmp_path / "data"}"\nparquet_dir = "{read_only_dir / "parquet"}"',
    }[where]
    config = tmp_path / "config.toml"
    config.write_text(OFFLINE_STRAVA + "[storage]\n" + storage + "\n")
    command = ["compact"] if where == "parquet_dir" else ["fetch"]
    code, err = run_main(capsys, config, *command)
    assert code == 2, err
    line = one_error_line(err)
    assert str(read_only_dir) in line and ("not writable" in line or "cannot create" in line), line


@pytest.mark.parametrize("file_at", ["data", "data/raw", "data/state", "data/auth", "data/parquet"])
def test_a_file_where_a_folder_should_be_is_one_line_and_exit_2(tmp_path: Path, file_at: str,
                                                                capsys: pytest.CaptureFixture) -> None:
    (tmp_path / file_at).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / file_at).write_text("not a folder")
    config = tmp_path / "config.toml"
    config.write_text(OFFLINE_STRAVA + f'[storage]\ndata_dir = "{tmp_path / "data"}"\n')
    for command in (["fetch"], ["compact"]):
        code, err = run_main(capsys, config, *command)
        assert code == 2, (command, err)
        assert str(tmp_path / file_at) in one_error_line(err), err
    code, err = run_main(capsys, config, "status")
    if file_at == "data/parquet":
        assert code == 0, err  # status does not read it
    else:
        assert code == 2 and str(tmp_path / file_at) in one_error_line(err), err


def test_leftover_temp_files_are_never_read_as_data_and_are_swept(tmp_path: Path, capsys) -> None:
    settings = SimulatorSettings(activities=12, seed=33, short_limit=1000, daily_limit=10000)
    with SimulatorThread(settings) as sim:
        data_dir = tmp_path / "data"
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, data_dir, fetch={"per_page": 5}))
        assert main(["--config", str(config), "fetch"]) == 0
        store = athlete_store(data_dir)
        some_id = sorted(store.detail_ids())[0]
        fake_id = 999_999_999
        fake = orjson.dumps([{**sim.summary(some_id), "id": fake_id}])
        year_2001 = data_dir / "parquet" / "activities" / f"athlete_id={sim.settings.athlete_id}" / "year=2001"
        listing = store.listings()[-1].folder
        planted = [
            listing / f".page-00099.json.tmp-999999999-{'a' * 8}",  # valid JSON naming an activity that is not there
            store.detail_dir / f".{fake_id}.json.tmp-999999999-{'b' * 8}",
            store.detail_dir / f".{some_id}.json.tmp-999999999-{'c' * 8}",  # half a detail
            store.state_dir / f".fetched.json.tmp-999999999-{'d' * 8}",
            store.auth_dir / f".tokens.json.tmp-999999999-{'e' * 8}",
            year_2001 / f".part-0.parquet.tmp-999999999-{'f' * 8}",
        ]
        for path in planted:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(fake if "page" in path.name or str(fake_id) in path.name else b'{"id": 1, "na')
        capsys.readouterr()
        assert main(["--config", str(config), "status", "--json"]) == 0
        report = orjson.loads(capsys.readouterr().out)
        assert report["listed"] == 12 and report["fetched"] == 12 and report["pending"] == 0
        assert parquet_rows(f"{data_dir}/parquet/activities/*/*/*.parquet") == 12

        mark = len(sim.request_log)
        assert main(["--config", str(config), "fetch"]) == 0
        assert not temp_files(data_dir)
        assert fake_id not in store.catalog() and fake_id not in store.detail_ids()
        assert not detail_gets(api_records(sim, since=mark))  # nothing was taken for a new or changed activity
        assert_matches_ground_truth(sim, data_dir)
        assert not year_2001.exists() or not any(year_2001.iterdir())


def test_a_rotated_token_is_saved_even_when_the_disk_is_full(tmp_path: Path) -> None:
    # Strava drops the old refresh token the moment it answers: the new one must reach the disk.
    from bulkfetch.auth import Tokens, TokenStore
    from bulkfetch.errors import WriteError

    with tmpfs(tmp_path / "small", "256k") as small:
        store = TokenStore(athlete_store(small).auth_dir / "tokens.json")
        store.save(Tokens(refresh_token="first"))
        fill(small)
        store.save(Tokens(refresh_token="rotated"))  # the spare file gives way
        assert store.load().refresh_token == "rotated"
        with pytest.raises(WriteError, match="disk full"):
            store.save(Tokens(refresh_token="again", access_token="x" * 200_000))
        assert store.load().refresh_token == "rotated"


def test_a_data_dir_full_at_compaction_exits_1_in_one_line_and_keeps_the_parquet(tmp_path: Path) -> None:
    """The data_dir's disk fills after the fetch: `compact --rebuild` cannot spill the summaries it holds
    for the run into state/ (bulkfetch.compact.SpilledSummaries), says so in one line and leaves every
    Parquet file (on another disk) as it was."""
    settings = SimulatorSettings(activities=40, seed=33, short_limit=1000, daily_limit=10000)
    with tmpfs(tmp_path / "small", "2m") as small, SimulatorThread(settings) as sim:
        data_dir, parquet_dir = small / "data", tmp_path / "parquet"
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, data_dir) + f'parquet_dir = "{parquet_dir}"\n')
        assert run_cli("--config", str(config), "fetch", cwd=tmp_path).returncode == 0
        before = {path: path.read_bytes() for path in parquet_dir.rglob("*.parquet")}
        (small / "reserve").write_bytes(b"\0" * 16384)
        fill(small)
        (small / "reserve").unlink()  # room for the lock and the log's line, not for the summaries (~60 KB)
        result = run_cli("--config", str(config), "compact", "--rebuild", cwd=tmp_path)
        assert result.returncode == 1, result.stderr
        assert f"disk full while writing {athlete_store(data_dir).state_dir}" in one_error_line(result.stderr)
        assert {path: path.read_bytes() for path in parquet_dir.rglob("*.parquet")} == before
        (small / "filler").unlink()
        assert run_cli("--config", str(config), "compact", "--rebuild", cwd=tmp_path).returncode == 0
        assert parquet_rows(f"{parquet_dir}/activities/*/*/*.parquet") == 40
