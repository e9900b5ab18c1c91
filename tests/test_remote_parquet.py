"""A remote parquet_dir end to end: `fetch` against the simulator with `s3://` to moto's S3 server on
127.0.0.1 gives the dataset a local parquet_dir gets; reruns upload only what changed."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from functools import partial
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest

from bulkfetch import object_store
from bulkfetch.cli import main
from bulkfetch.parquet_layout import PARTITION_SCHEMA
from bulkfetch.remote_sync import STAGING_ID
from bulkfetch.schema import TABLES
from bulkfetch.simulator import SimulatorSettings, SimulatorThread
from tests.conftest import REPO, S3Server, cli_env, run_cli, simulator_config_text

ACCESS_CHECK_REQUESTS = 7  # what bulkfetch.object_store.check_access sends (moto counts them; measured)

SORT_KEYS = ("athlete_id", "year")


def _config(tmp_path: Path, sim, name: str, storage: str = "") -> Path:
    text = simulator_config_text(sim, tmp_path / name / "data", fetch={"streams": ["time", "distance"]})
    path = tmp_path / name / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + storage)
    return path


def _table(filesystem: pafs.FileSystem, root: str, table: str):
    """A table read back as a reader would (hive partitions), rows in a fixed order."""
    data = ds.dataset(f"{root}/{table}", filesystem=filesystem, format="parquet",
                      partitioning=ds.partitioning(PARTITION_SCHEMA, flavor="hive")).to_table()
    keys = [name for name in ("id", "activity_id", "split", "lap_index", "seq") if name in data.column_names]
    return data.sort_by([(name, "ascending") for name in [*SORT_KEYS, *keys]])


def _remote_keys(s3, root: str) -> dict[str, int]:
    infos = s3.get_file_info(pafs.FileSelector(root, recursive=True))
    return {i.path.removeprefix(root + "/"): i.size for i in infos if i.type == pafs.FileType.File}


def _uploaded(capsys) -> int:
    line = next(line for line in capsys.readouterr().err.splitlines() if "part file(s) to s3://" in line)
    return int(line.split("uploaded ")[1].split(" ")[0])


def test_fetch_to_s3_equals_a_local_run_and_reruns_upload_only_what_changed(tmp_path: Path, s3_server,
                                                                           capsys) -> None:
    bucket = s3_server.new_bucket()
    root = f"{bucket}/strava"
    s3 = s3_server.filesystem()
    settings = SimulatorSettings(activities=40, seed=16, short_limit=1000, daily_limit=10000)
    thread = SimulatorThread(settings)
    with thread as sim:
        local = _config(tmp_path, sim, "local")
        assert main(["--config", str(local), "fetch"]) == 0
        # Written after the local run: the simulator rotates the refresh token that run used.
        remote = _config(tmp_path, sim, "remote", f'parquet_dir = "s3://{root}"\n' + s3_server.options_toml())
        assert main(["--config", str(remote), "fetch"]) == 0
        first = _uploaded(capsys)

        local_dir = tmp_path / "local" / "data" / "parquet"
        keys = _remote_keys(s3, root)
        parts = {k: v for k, v in keys.items() if k.endswith("part-0.parquet")}
        local_parts = {p.relative_to(local_dir).as_posix(): p.stat().st_size
                       for p in local_dir.glob("*/*/*/part-0.parquet")}
        assert set(parts) == set(local_parts) and first == len(parts) > 4
        assert set(keys) == set(parts) | {"_bulkfetch.json"}  # no temporary is left behind
        for table in TABLES:
            if (local_dir / table).is_dir():
                assert _table(s3, root, table).equals(_table(pafs.LocalFileSystem(), str(local_dir), table)), table
        with s3.open_input_file(f"{root}/_bulkfetch.json") as stream:
            manifest = orjson.loads(stream.read())
        assert {f["path"]: f["size"] for f in manifest["files"]} == parts
        # The README's way to read one consistent snapshot (its code, word for word but for the store and
        # the root): exactly the files the run manifest lists.
        readme = re.findall(r"```py\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
        assert len(readme) == 1
        code = readme[0].replace('fs.S3FileSystem(region="eu-west-1")', "store")
        code = code.replace('"my-bucket/strava"', repr(root))
        namespace: dict[str, object] = {"store": s3}
        exec(code, namespace)
        snapshot = namespace["splits"].to_table()  # type: ignore[attr-defined]
        assert snapshot.num_rows == _table(s3, root, "splits_metric").num_rows > 0
        assert snapshot.schema.field("athlete_id").type == pa.int64()

        # Nothing changed: nothing is uploaded, even after a rebuild (new files, the same bytes). One activity
        # renamed: its year's detail tables only.
        assert main(["--config", str(remote), "fetch"]) == 0
        assert _uploaded(capsys) == 0
        assert main(["--config", str(remote), "compact", "--rebuild"]) == 0
        assert _uploaded(capsys) == 0
        thread.call(partial(sim.edit_activity, sim.activity_ids()[0], name="Renamed"))
        assert main(["--config", str(remote), "fetch"]) == 0
        changed = _uploaded(capsys)
        assert 1 <= changed < len(parts) // 2

        # An object deleted from outside is noticed and uploaded again.
        missing = sorted(parts)[0]
        s3.delete_file(f"{root}/{missing}")
        assert main(["--config", str(remote), "fetch"]) == 0
        assert _uploaded(capsys) == 1
        assert missing in _remote_keys(s3, root)


def test_fetch_says_a_missing_bucket_before_any_request(tmp_path: Path, s3_server, capsys) -> None:
    with SimulatorThread(SimulatorSettings(activities=3, seed=1)) as sim:
        config = _config(tmp_path, sim, "r", 'parquet_dir = "s3://no-such-bucket/x"\n' + s3_server.options_toml())
        assert main(["--config", str(config), "fetch"]) == 2
        assert not [r for r in sim.request_log if r.counted]
    err = capsys.readouterr().err
    assert "the bucket no-such-bucket does not exist" in err and "testing-secret" not in err


@pytest.mark.parametrize("command", [["compact"], ["report"]])
def test_a_missing_bucket_is_said_by_every_command_that_reads_the_store(tmp_path: Path, s3_server, command: list[str],
                                                                       capsys) -> None:
    """report too (hands-on: it said "no splits_metric table ... run 'bulkfetch fetch'")."""
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\nparquet_dir = "s3://no-such-bucket/x"\n'
                      + s3_server.options_toml())
    out = ["--out", str(tmp_path / "report.html")] if command == ["report"] else []
    assert main(["--config", str(config), *command, *out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the bucket no-such-bucket does not exist" in err, err
    assert "create it (bulkfetch never creates buckets)" in err


@pytest.mark.parametrize("command", [["fetch"], ["compact"], ["report"]])
def test_an_unreachable_store_exits_75(tmp_path: Path, command: list[str], capsys) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with SimulatorThread(SimulatorSettings(activities=3, seed=1)) as sim:
        config = _config(tmp_path, sim, "r", 'parquet_dir = "s3://bucket/x"\n[storage.parquet_options]\n'
                                             f'endpoint_override = "127.0.0.1:{port}"\nscheme = "http"\n'
                                             'region = "us-east-1"\n')
        out = ["--out", str(tmp_path / "report.html")] if command == ["report"] else []
        assert main(["--config", str(config), *command, *out]) == 75
    assert "did not answer" in capsys.readouterr().err


def test_a_store_lost_during_the_fetch_exits_75_after_the_fetchs_summary(tmp_path: Path, s3_server) -> None:
    """The store answers the start-of-run check, then goes away while the fetch runs: the upload at the
    end fails (exit 75), and the user still sees what was fetched, before the one-line error."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)  # this test's own: it stops it
    server.start()
    store = S3Server(f"127.0.0.1:{server._server.server_port}")
    store.filesystem().create_dir("lost")
    with SimulatorThread(SimulatorSettings(activities=8, seed=1, latency_s=0.1)) as sim:
        config = _config(tmp_path, sim, "r", 'parquet_dir = "s3://lost/x"\n' + store.options_toml())
        process = subprocess.Popen([sys.executable, "-m", "bulkfetch", "--config", str(config), "fetch"],
                                   env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 30
        while not [r for r in sim.request_log if r.counted] and time.monotonic() < deadline:
            time.sleep(0.02)  # the access check is behind it once Strava is asked
        server.stop()
        output = process.communicate(timeout=60)[0]
    assert process.returncode == 75, output
    lines = output.splitlines()
    summary = next(i for i, line in enumerate(lines) if line.startswith("listed 8 activities; fetched 8"))
    error = next(i for i, line in enumerate(lines) if "did not answer" in line)
    assert summary < error == len(lines) - 1, output  # the one-line error ends the output


def _fetched_to_s3(tmp_path: Path, s3_server) -> tuple[Path, str]:
    """A fetch of a small history into a new bucket: its config and the dataset root in the bucket."""
    root = f"{s3_server.new_bucket()}/strava"
    with SimulatorThread(SimulatorSettings(activities=12, seed=16, short_limit=1000, daily_limit=10000)) as sim:
        config = _config(tmp_path, sim, "remote", f'parquet_dir = "s3://{root}"\n' + s3_server.options_toml())
        assert main(["--config", str(config), "fetch"]) == 0
    return config, root


def _assert_every_object_whole(s3, root: str) -> None:
    """Each part file a reader can list is a whole Parquet file (a partial upload has no footer)."""
    import pyarrow.parquet as pq

    from bulkfetch.object_store import is_temporary

    for key in _remote_keys(s3, root):
        if key.endswith("part-0.parquet") and not is_temporary(key):
            with s3.open_input_file(f"{root}/{key}") as stream:
                assert pq.ParquetFile(stream).metadata.num_rows > 0, key


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_a_run_stopped_mid_upload_leaves_whole_objects_and_the_rerun_finishes(tmp_path: Path, s3_server,
                                                                            signum: int) -> None:
    config, root = _fetched_to_s3(tmp_path, s3_server)
    s3 = s3_server.filesystem()
    # Without the record of uploads every part file is uploaded again (a rebuild alone would upload none:
    # its files have the same bytes).
    (tmp_path / "remote" / "data" / "parquet-staging" / ".uploads.json").unlink()
    process = subprocess.Popen([sys.executable, "-m", "bulkfetch", "-v", "--config", str(config), "compact",
                                "--rebuild"], env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    uploads_seen = 0
    assert process.stderr is not None
    for line in process.stderr:
        uploads_seen += "uploading " in line
        if uploads_seen == 3:
            process.send_signal(signum)
            break
    rest = process.communicate(timeout=30)[1]
    assert uploads_seen == 3
    assert process.returncode == (-signal.SIGKILL if signum == signal.SIGKILL else 130), rest
    _assert_every_object_whole(s3, root)
    if signum == signal.SIGTERM:  # stopped cleanly: its temporary is gone already
        assert not [key for key in _remote_keys(s3, root) if "/." in key or key.startswith(".")]

    result = run_cli("--config", str(config), "compact")
    assert result.returncode == 0, result.stderr
    keys = _remote_keys(s3, root)
    staging = tmp_path / "remote" / "data" / "parquet-staging"
    staged = {p.relative_to(staging).as_posix(): p.stat().st_size for p in staging.glob("*/*/*/part-0.parquet")}
    assert keys == {**staged, "_bulkfetch.json": keys["_bulkfetch.json"]}  # temporaries swept, every part current
    _assert_every_object_whole(s3, root)


def test_import_uploads_the_imported_athletes_parquet(tmp_path: Path, s3_server) -> None:
    from tests.exports import ENGLISH_94, csv_text, english_row, write_zip

    root = f"{s3_server.new_bucket()}/strava"
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\ndata_dir = "data"\nparquet_dir = "s3://{root}"\n' + s3_server.options_toml())
    rows = [english_row(1, None, sport="WeightTraining"), english_row(2, None, date="May 9, 2024, 10:09:29 AM")]
    export = write_zip(tmp_path / "export.zip", csv_text(ENGLISH_94, rows), [], profile_id=55)
    result = run_cli("--config", str(config), "import", str(export))
    assert result.returncode == 0, result.stderr
    keys = _remote_keys(s3_server.filesystem(), root)
    assert {"activities/athlete_id=55/year=2023/part-0.parquet",
            "activities/athlete_id=55/year=2024/part-0.parquet", "_bulkfetch.json"} <= set(keys)


@contextmanager
def _team_fetched_to_s3(tmp_path: Path, s3_server, monkeypatch) -> Iterator[tuple[Path, list[int], str]]:
    """Two athletes fetched into a new bucket: the config, their ids and the dataset root, while the
    simulator runs."""
    from tests.test_athletes import team

    root = f"{s3_server.new_bucket()}/strava"
    settings = SimulatorSettings(athletes=2, athlete_activities=(3, 3), seed=65, short_limit=1000,
                                 daily_limit=10_000)
    with SimulatorThread(settings) as sim:
        config = team(tmp_path, sim, monkeypatch)
        with config.open("a") as file:
            file.write(f'parquet_dir = "s3://{root}"\n' + s3_server.options_toml())
        assert main(["--config", str(config), "fetch"]) == 0
        yield config, list(sim.athlete_ids), root


def _athletes_in_bucket(s3_server, root: str) -> set[str]:
    return {key.split("/")[1] for key in _remote_keys(s3_server.filesystem(), root) if key.endswith("part-0.parquet")}


def test_purging_an_athlete_removes_its_partitions_from_the_bucket(tmp_path: Path, s3_server, monkeypatch) -> None:
    with _team_fetched_to_s3(tmp_path, s3_server, monkeypatch) as (config, (kept, purged), root):
        assert _athletes_in_bucket(s3_server, root) == {f"athlete_id={kept}", f"athlete_id={purged}"}
        assert main(["--config", str(config), "athletes", "remove", str(purged), "--purge"]) == 0
        assert _athletes_in_bucket(s3_server, root) == {f"athlete_id={kept}"}
        with s3_server.filesystem().open_input_file(f"{root}/_bulkfetch.json") as stream:
            listed = {f["path"].split("/")[1] for f in orjson.loads(stream.read())["files"]}
        assert listed == {f"athlete_id={kept}"}


def test_report_reads_the_remote_dataset_from_a_config_without_the_staging_copy(tmp_path: Path, s3_server,
                                                                              capsys) -> None:
    """A user on another machine: only the bucket and its options in the config, no data_dir at all; the
    report is the one the staging copy (the same files) gives."""
    _, root = _fetched_to_s3(tmp_path, s3_server)
    staging = tmp_path / "remote" / "data" / "parquet-staging"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    remote = elsewhere / "config.toml"
    remote.write_text(f'[storage]\ndata_dir = "data"\nparquet_dir = "s3://{root}"\n' + s3_server.options_toml())
    local = elsewhere / "local.toml"
    local.write_text(f'[storage]\ndata_dir = "data"\nparquet_dir = "{staging}"\n')
    capsys.readouterr()
    reports = []
    for config in (remote, local):
        assert main(["--config", str(config), "report", "--out", str(elsewhere / f"{config.stem}.html")]) == 0
        reports.append(capsys.readouterr().out.splitlines()[1:])  # after the HTML file's path
    assert reports[0] == reports[1] and any("splits" in line for line in reports[0]), reports
    assert not (elsewhere / "data").exists()


def test_status_says_where_the_parquet_is_its_last_upload_and_what_waits(tmp_path: Path, s3_server,
                                                                       capsys) -> None:
    config, root = _fetched_to_s3(tmp_path, s3_server)
    parts = {k: v for k, v in _remote_keys(s3_server.filesystem(), root).items() if k.endswith("part-0.parquet")}
    capsys.readouterr()
    assert main(["--config", str(config), "status", "--json"]) == 0
    parquet = orjson.loads(capsys.readouterr().out)["parquet"]
    assert parquet["location"] == f"s3://{root}" and parquet["remote_error"] is None
    assert parquet["last_upload"]["part_files"] == len(parts) > 4
    assert parquet["last_upload"]["bytes"] == sum(parts.values())
    assert (parquet["pending_uploads"], parquet["pending_removals"]) == (0, 0)

    staged = sorted((tmp_path / "remote" / "data" / "parquet-staging").glob("*/*/*/part-0.parquet"))
    staged[0].write_bytes(staged[0].read_bytes())  # rewritten since its upload: the next run uploads it
    staged[1].unlink()  # a partition gone: the next run removes it from the bucket
    assert main(["--config", str(config), "status"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("parquet "))
    assert line.startswith(f"parquet    s3://{root} (staged in ") and f"{len(parts)} part files, " in line
    assert line.endswith("; part files 1 to upload and 1 to remove at the next fetch or compact"), line


def test_the_next_run_aborts_a_stopped_runs_unfinished_multipart_uploads_only(tmp_path: Path, s3_server,
                                                                            capsys) -> None:
    """What SIGKILL mid-upload leaves besides the temporary object: a multipart upload never completed
    (invisible parts, stored and billed). The next run aborts it; anyone else's upload stays."""
    import boto3

    config, root = _fetched_to_s3(tmp_path, s3_server)
    bucket, prefix = root.split("/", 1)
    client = boto3.client("s3", endpoint_url=f"http://{s3_server.endpoint}", region_name="us-east-1")
    owner = next(tmp_path.rglob(STAGING_ID)).read_text()  # this staging folder's, so stale at once
    stopped = f"{prefix}/activities/athlete_id=1/year=2024/.part-0.parquet.upload-{owner}-999-abcd"
    others = f"{prefix}/notes/big-file.bin"
    for key in (stopped, others):
        upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        client.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"x" * 1024)
    capsys.readouterr()
    assert main(["--config", str(config), "compact"]) == 0
    assert "1 unfinished upload(s) of a stopped run cleaned up" in capsys.readouterr().err
    left = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [upload["Key"] for upload in left] == [others]


def test_hdfs_without_hadoops_libraries_is_one_line(tmp_path: Path) -> None:
    with SimulatorThread(SimulatorSettings(activities=1, seed=1)) as sim:
        config = _config(tmp_path, sim, "r", 'parquet_dir = "hdfs://127.0.0.1:9/x"\n')
        run = subprocess.run([sys.executable, "-m", "bulkfetch", "--config", str(config), "compact"],
                             capture_output=True, text=True, env=cli_env(), timeout=60)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "HDFS needs Hadoop's libraries (libjvm, libhdfs)" in run.stderr


def test_an_unreachable_gcs_endpoint_exits_75_within_seconds(tmp_path: Path, monkeypatch, capsys) -> None:
    """GCS's client retries each request until its retry limit (by default for minutes): the check passes its
    own, lowered here from 10 s to 1 s so that the test takes seconds, not minutes."""
    import socket

    monkeypatch.setattr(object_store, "ACCESS_CHECK",
                        replace(object_store.ACCESS_CHECK, gcs_retry_limit=timedelta(seconds=1)))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # The metadata server GCS asks for credentials is pointed at the closed port too: nothing leaves loopback.
    monkeypatch.setenv("GCE_METADATA_HOST", f"127.0.0.1:{port}")
    monkeypatch.setenv("GCE_METADATA_ROOT", f"127.0.0.1:{port}")
    with SimulatorThread(SimulatorSettings(activities=1, seed=1)) as sim:
        config = _config(tmp_path, sim, "r", 'parquet_dir = "gs://bucket/x"\n[storage.parquet_options]\n'
                                             f'endpoint_override = "127.0.0.1:{port}"\nscheme = "http"\n')
        started = time.monotonic()
        assert main(["--config", str(config), "compact"]) == 75
    assert time.monotonic() - started < 8  # 1 s of retries; the transfers' 10 s would fail it, minutes surely
    err = capsys.readouterr().err
    assert "did not answer" in err and "Traceback" not in err, err


def test_a_purge_whose_removal_the_store_refuses_says_compact_finishes_it(tmp_path: Path, s3_server,
                                                                         monkeypatch, capsys) -> None:
    """The purge is done locally when the store refuses the removal; a rerun of it finds no such athlete."""
    with _team_fetched_to_s3(tmp_path, s3_server, monkeypatch) as (config, (kept, purged), root):
        capsys.readouterr()
        # The access check passes; the sync's listing, after it, is refused.
        s3_server.authenticate_after(str(ACCESS_CHECK_REQUESTS))
        try:
            assert main(["--config", str(config), "athletes", "remove", str(purged), "--purge"]) == 2
        finally:
            s3_server.authenticate_after("inf")
        err = capsys.readouterr().err
        assert "access denied" in err and "then run 'bulkfetch compact' to remove its partitions there" in err
        assert main(["--config", str(config), "compact"]) == 0
        assert _athletes_in_bucket(s3_server, root) == {f"athlete_id={kept}"}
