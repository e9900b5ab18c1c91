"""Shared test helpers: run the real CLI in a subprocess, write configs, build simulator-backed configs."""

from __future__ import annotations

import importlib.util
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from bulkfetch.roster import Roster
from bulkfetch.store import RawStore

REPO = Path(__file__).resolve().parent.parent
STATE_HOME_MARK = "PYTEST_STATE_HOME"  # set beside XDG_STATE_HOME by `state_home`


@pytest.fixture(scope="session", autouse=True)
def session_state_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Fixtures wider than a test (a module's demo run) keep the apps' quota ledgers out of the real
    ~/.local/state too."""
    folder = tmp_path_factory.mktemp("state-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_STATE_HOME", str(folder))
        patch.setenv(STATE_HOME_MARK, str(folder))
        yield folder


@pytest.fixture(autouse=True)
def state_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test keeps the apps' quota ledgers in a folder of its own, never in the real
    ~/.local/state: a test's ledgers start empty, and CLI subprocesses inherit it (see `cli_env`)."""
    folder = tmp_path_factory.mktemp("state-home")
    monkeypatch.setenv("XDG_STATE_HOME", str(folder))
    monkeypatch.setenv(STATE_HOME_MARK, str(folder))
    return folder


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI subprocess: the repo importable, no Strava secrets from the caller, and
    the test's own state folder (refused without one, so that no subprocess writes to the real one)."""
    if not os.environ.get("XDG_STATE_HOME") or os.environ.get("XDG_STATE_HOME") != os.environ.get(STATE_HOME_MARK):
        raise RuntimeError("cli_env outside a test: XDG_STATE_HOME is not a test's own folder")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRAVA_", "BULKFETCH_"))}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["CI"] = "true"
    env.update(extra)
    return env


def run_in_process(capsys: pytest.CaptureFixture[str], *args: str) -> subprocess.CompletedProcess:
    """`bulkfetch ARGS` run by this process's `main`, its outcome as run_cli gives it: for commands that stop
    early (refusals), whose own interpreter's start (imports) would be most of their time."""
    from bulkfetch.cli import main

    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as stop:  # argparse's refusals exit
        code = stop.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bulkfetch", *args],
        cwd=cwd, env=cli_env(**env), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def write_config(tmp_path: Path):
    def write(text: str, name: str = "config.toml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


def simulator_config_text(sim, data_dir: Path, *, fetch: dict | None = None, limits: dict | None = None,
                          refresh_token: str | None = None) -> str:
    """A config.toml for a running simulator, with its limits and windows and fast retries."""
    settings = sim.settings
    limit_values = {
        "short_requests": settings.short_limit, "daily_requests": settings.daily_limit,
        "short_window_s": max(1, int(settings.short_window_s)), "daily_window_s": max(1, int(settings.daily_window_s)),
        **(limits or {}),
    }
    fetch_values = {"backoff_base_s": 0.02, "backoff_cap_s": 0.2, "max_rate_per_s": 1000.0,
                    "request_timeout_s": 10.0, **(fetch or {})}
    token = sim.current_refresh_token if refresh_token is None else refresh_token

    def toml_value(value) -> str:
        if isinstance(value, str):
            return f'"{value}"'
        if isinstance(value, (list, tuple)):
            return "[" + ", ".join(toml_value(v) for v in value) + "]"
        return str(value)

    lines = [
        "[strava]",
        f'api_url = "{sim.api_url}"',
        f'oauth_url = "{sim.oauth_url}"',
        f'client_id = "{settings.client_id}"',
        f'client_secret = "{settings.client_secret}"',
        f'refresh_token = "{token}"',
        "[limits]",
        *(f"{k} = {toml_value(v)}" for k, v in limit_values.items()),
        "[fetch]",
        *(f"{k} = {toml_value(v)}" for k, v in fetch_values.items()),
        "[storage]",
        f'data_dir = "{data_dir}"',
    ]
    return "\n".join(lines) + "\n"


def _start_spark():
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[1]").appName("bulkfetch-tests")
               .config("spark.ui.enabled", "false").config("spark.sql.session.timeZone", "UTC")
               .config("spark.driver.memory", "512m")
               # The tests' tables are small and their queries few: one shuffle partition (not 200 tasks per
               # join or aggregate), no adaptive re-planning, and a JVM that compiles quickly (C1 only) and
               # collects simply, since its warm-up is most of a test's time.
               .config("spark.sql.shuffle.partitions", "1").config("spark.sql.adaptive.enabled", "false")
               .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    return session


def _start_and_warm_spark():
    """_start_spark, then a first read of a hive-partitioned Parquet folder and a join and an aggregate over
    it: Spark's first query loads and compiles most of what the tests' queries run (seconds)."""
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    session = _start_spark()
    with tempfile.TemporaryDirectory(prefix="spark-warm-") as folder:
        pq.write_to_dataset(pa.table({"id": [1, 2, 3], "year": [2020, 2020, 2021]}), folder,
                            partition_cols=["year"])
        session.read.parquet(folder).createOrReplaceTempView("warm")
        session.sql("SELECT a.year, count(*) FROM warm a JOIN warm b ON a.id = b.id GROUP BY a.year").collect()
        session.catalog.dropTempView("warm")
    return session


_spark_start: Future | None = None  # the JVM starting in the background, when a collected test needs it


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start Spark's JVM now, beside the tests that come before the first one that needs it: its start
    (seconds, mostly on another core) overlaps their waits for quota windows and subprocesses."""
    global _spark_start
    if session.config.option.collectonly:
        return
    if importlib.util.find_spec("pyspark") and any("spark" in getattr(item, "fixturenames", ())
                                                   for item in session.items):
        _spark_start = ThreadPoolExecutor(1, thread_name_prefix="spark-start").submit(_start_and_warm_spark)


@pytest.fixture(scope="session")
def spark():
    """One local SparkSession for the whole test run (started at collection: see pytest_collection_finish)."""
    pytest.importorskip("pyspark", reason="pyspark is not installed (it is in the dev extra)")
    session = _spark_start.result(timeout=300) if _spark_start else _start_spark()
    yield session
    session.stop()


def athlete_store(data_dir: Path) -> RawStore:
    """The store of a data_dir's one athlete, found again at every use: a fetch keeps each athlete in
    data_dir/athletes/<id>/ (moving a one-athlete data_dir there), so a test may take it before that."""
    return _OneAthleteStore(data_dir)  # type: ignore[return-value]


class _OneAthleteStore:
    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir

    def __getattr__(self, name: str):
        athletes = [a for a in Roster(self._data_dir).athletes() if a.folder != self._data_dir]
        assert len(athletes) <= 1, f"{self._data_dir} holds {len(athletes)} athletes"
        return getattr(athletes[0].store if athletes else RawStore(self._data_dir), name)


@dataclass(frozen=True)
class S3Server:
    """moto's standalone S3 server on 127.0.0.1 (see the `s3_server` fixture)."""

    endpoint: str  # host:port, for [storage] parquet_options endpoint_override

    @property
    def options(self) -> dict[str, str]:
        return {"endpoint_override": self.endpoint, "scheme": "http", "region": "us-east-1"}

    def options_toml(self) -> str:
        return "[storage.parquet_options]\n" + "".join(f'{k} = "{v}"\n' for k, v in self.options.items())

    def filesystem(self):
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(allow_bucket_creation=True, **self.options)

    def new_bucket(self) -> str:
        """A bucket of its own for one test."""
        name = f"test-{secrets.token_hex(6)}"
        self.filesystem().create_dir(name)
        return name

    def authenticate_after(self, count: str) -> None:
        """moto's switch: refuse every key after `count` more requests ("inf": accept the test's again)."""
        import urllib.request

        request = urllib.request.Request(f"http://{self.endpoint}/moto-api/reset-auth", data=count.encode(),
                                         headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(request, timeout=5).close()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One moto S3 server for the session, on a free loopback port, with explicit test credentials and no
    instance-metadata lookups or profile files: nothing leaves 127.0.0.1. CLI subprocesses inherit the
    environment (see `cli_env`)."""
    moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed (dev extra)")
    empty = tmp_path_factory.mktemp("aws") / "none"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret",
                            "AWS_EC2_METADATA_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1",
                            "AWS_CONFIG_FILE": str(empty), "AWS_SHARED_CREDENTIALS_FILE": str(empty)}.items():
            patch.setenv(name, value)
        patch.delenv("AWS_SESSION_TOKEN", raising=False)
        patch.delenv("AWS_PROFILE", raising=False)
        server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            yield S3Server(f"127.0.0.1:{server._server.server_port}")
        finally:
            server.stop()
