"""`bulkfetch demo` end to end, and the README's DuckDB and Spark examples run against its output."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import orjson
import pytest

from bulkfetch import report
from tests.conftest import REPO, athlete_store, run_cli

README = (REPO / "README.md").read_text()


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, str, str]:
    """One demo run that must wait for a quota window wherever in a window it starts: 251 requests at 100
    per window need a third window, which no run of a second or so reaches without waiting."""
    folder = tmp_path_factory.mktemp("demo")
    result = run_cli("demo", "--activities", "250", "--data-dir", str(folder / "demo-data"), timeout=120)
    assert result.returncode == 0, result.stderr
    return folder / "demo-data", result.stdout, result.stderr


def readme_block(language: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)
    assert len(blocks) == 1, f"expected one {language} block in the README"
    return blocks[0]


def test_demo_fetches_compacts_waits_and_reports(demo) -> None:
    data_dir, out, err = demo
    assert "waiting" in err and "resets" in err  # at least one quota wait was shown
    assert "listed 250 activities; fetched 250 details" in out
    assert "pace by elevation difference" in out and "/km" in out
    for table in ("activities", "splits_metric", "splits_standard", "laps", "best_efforts", "segment_efforts"):
        assert list((data_dir / "parquet" / table).glob("athlete_id=*/year=*/part-0.parquet")), table
    years, by_sport = report.activities_by_sport_and_year(data_dir / "parquet")
    assert sum(sum(counts) for _, counts in by_sport) == 250 and years == sorted(years)


def test_demo_query_hint_runs_as_printed(demo) -> None:
    """The hint needs only what `pip install duckdb` gives (no DuckDB command-line program)."""
    data_dir, out, _ = demo
    hint = out.split("Query them with DuckDB (pip install duckdb):\n", 1)[1].splitlines()[0].strip()
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    result = subprocess.run(["sh", "-c", hint], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PATH": path})
    assert result.returncode == 0, result.stderr
    assert "pace_s_per_km" in result.stdout and "elev_m" in result.stdout
    assert len(re.findall(r"^│\s+-?\d+\.0 │", result.stdout, flags=re.M)) >= 3  # one row per elevation bucket


def test_demo_rerun_is_incremental(demo) -> None:
    data_dir, _, _ = demo
    result = run_cli("demo", "--activities", "250", "--data-dir", str(data_dir), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "fetched 0 details" in result.stdout
    assert "0 year(s) rewritten" in result.stderr


def test_demo_refuses_a_real_runs_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "state").mkdir(parents=True)
    (athlete_store(data).state_dir / "athlete.json").write_text('{"athlete_id": 42}')
    result = run_cli("demo", "--activities", "5", "--data-dir", str(data), timeout=60)
    assert result.returncode == 2
    assert "athlete 42" in result.stderr and "Traceback" not in result.stderr


def _duckdb_rows(data_dir: Path) -> list[tuple]:
    sql = readme_block("sql").replace("data/parquet", str(data_dir / "parquet"))
    result = duckdb.sql(sql)
    assert dict(zip(result.columns, map(str, result.types)))["athlete_id"] == "BIGINT"
    return [(a, float(e), int(n), float(p)) for a, e, n, p in result.fetchall()]


def test_readme_duckdb_example_answers_on_demo_output(demo) -> None:
    data_dir, _, _ = demo
    rows = _duckdb_rows(data_dir)
    athlete_id = orjson.loads((athlete_store(data_dir).state_dir / "athlete.json").read_bytes())["athlete_id"]
    assert {a for a, _, _, _ in rows} == {athlete_id}  # from the folder names, as int64
    assert len(rows) >= 3
    assert sum(n for _, _, n, _ in rows) > 100
    flat = [p for _, e, _, p in rows if e == 0]
    steep = [p for _, e, _, p in rows if e >= 20]
    assert flat and steep and steep[0] > flat[0]  # uphill splits are slower


def test_readme_spark_example_gives_the_same_answer(demo, spark) -> None:
    data_dir, _, _ = demo
    code = readme_block("python").replace('"data/parquet', f'"{data_dir}/parquet').replace("pace.show()", "")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the README's own example
    assert dict(namespace["pace"].dtypes)["athlete_id"] == "bigint"
    rows = [(r["athlete_id"], float(r["elevation_m"]), int(r["splits"]), float(r["pace_s_per_km"]))
            for r in namespace["pace"].collect()]
    assert rows == _duckdb_rows(data_dir)
