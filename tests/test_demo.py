"""`bulkfetch demo` end to end, and the README's DuckDB and Spark examples run against its output."""

from __future__ import annotations

import datetime
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import orjson
import pytest

from bench import demo as bench_demo
from bulkfetch import report
from bulkfetch.demo import athlete_sizes
from bulkfetch.interleaving import interleave
from bulkfetch.simulator import SimulatorSettings
from tests.conftest import REPO, athlete_store, cli_env, run_cli, run_in_process
from tests.exports import ENGLISH_94, ExportFile, csv_text, english_row, fixture, write_folder

README = (REPO / "README.md").read_text()


class DemoRun:
    """A `bulkfetch demo` started in the background, its output in files (not pipes that could fill while
    another run is awaited)."""

    def __init__(self, folder: Path, *args: str) -> None:
        self._out, self._err = folder / "stdout.txt", folder / "stderr.txt"
        with self._out.open("w") as out, self._err.open("w") as err:
            self._process = subprocess.Popen([sys.executable, "-m", "bulkfetch", "demo", *args], env=cli_env(),
                                             stdin=subprocess.DEVNULL, stdout=out, stderr=err, text=True)

    def result(self, timeout: float = 120) -> subprocess.CompletedProcess:
        try:
            code = self._process.wait(timeout)
        finally:
            self.stop()
        return subprocess.CompletedProcess(self._process.args, code, self._out.read_text(), self._err.read_text())

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait(10)


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory) -> Iterator[dict[str, tuple[Path, DemoRun]]]:
    """The plain demo and the team demo, started together: each spends most of its time waiting for its
    quota windows (its own simulator's, its ledger in its own data_dir), so their waits overlap."""
    plain, team = tmp_path_factory.mktemp("demo"), tmp_path_factory.mktemp("team-demo")
    runs = {"plain": (plain / "demo-data", DemoRun(plain, "--activities", "250", "--data-dir",
                                                   str(plain / "demo-data"))),
            "team": (team / "demo-data", DemoRun(team, "--athletes", "3", "--activities", "120", "--data-dir",
                                                 str(team / "demo-data")))}
    yield runs
    for _, run in runs.values():
        run.stop()


@pytest.fixture(scope="module")
def demo(demo_runs) -> tuple[Path, str, str]:
    """One demo run that must wait for a quota window wherever in a window it starts: 251 requests at 100
    per window need a third window, which no run of a second or so reaches without waiting."""
    data_dir, run = demo_runs["plain"]
    result = run.result()
    assert result.returncode == 0, result.stderr
    return data_dir, result.stdout, result.stderr


def readme_block(language: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)
    assert len(blocks) == 1, f"expected one {language} block in the README"
    return blocks[0]


def test_demo_fetches_compacts_waits_and_reports(demo) -> None:
    data_dir, out, err = demo
    assert "waiting" in err and "resets" in err  # at least one quota wait was shown
    assert "listed 250 activities; fetched 250 details" in out
    assert "pace by elevation difference" in out and "/km" in out
    assert "Per athlete" not in out and "quota window" not in out  # one athlete: the tables of before
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


def test_status_with_the_demos_report_config_claims_no_quota(demo, capsys) -> None:
    """The config the demo prints names its data_dir alone, not its simulated app (gone with the run): a
    fetch with it refuses, so status shows no quota limits or ETA as if they were that config's."""
    data_dir, out, _ = demo
    config = shlex.split(out.split("Figures in one HTML file (pip install 'bulkfetch[report]'):\n", 1)[1])[2]
    assert Path(config) == data_dir / "report-config.toml"
    text = run_in_process(capsys, "--config", config, "status")
    assert text.returncode == 0 and "fetched    250" in text.stdout, text.stderr
    assert re.findall(r"^(quota.*|ETA.*)$", text.stdout, flags=re.M) == [
        "quota      unknown: the config names no Strava app ([strava] client_id is not set), and a fetch with it "
        "would refuse"]
    report = orjson.loads(run_in_process(capsys, "--config", config, "status", "--json").stdout)
    assert (report["fetched"], report["quota"], report["eta"]) == (250, None, None)
    assert "client_id" in run_in_process(capsys, "--config", config, "fetch").stderr


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
    assert "athlete 42" in result.stderr and "--data-dir" in result.stderr and "Traceback" not in result.stderr
    assert (data / "state" / "athlete.json").exists() and not (data / "athletes").exists()  # nothing moved


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


# -- several athletes -----------------------------------------------------------------------------------------

TEAM_SIZES = (120, 60, 30)


@pytest.fixture(scope="module")
def team_demo(demo_runs) -> tuple[Path, str]:
    """Three athletes, 213 requests at 100 per window: the small ones finish while the big one goes on."""
    folder, run = demo_runs["team"]
    result = run.result()
    assert result.returncode == 0, result.stderr
    return folder, result.stdout


def plain_table(out: str, title_start: str) -> list[list[str]]:
    """The rows (header first) of a table the demo printed without a terminal."""
    lines = out.split(title_start, 1)[1].splitlines()[1:]
    rows = []
    for line in lines:
        if not line.strip() or not (line.startswith(("athlete", "all")) or line.split()[0].isdigit()):
            break
        rows.append(line.split())
    return rows


def test_athlete_sizes_halve_and_never_depend_on_the_count() -> None:
    assert athlete_sizes(300, 3) == (300, 150, 75)
    assert athlete_sizes(5, 5) == (5, 2, 1, 1, 1)  # every athlete has at least one activity
    assert athlete_sizes(300, 10)[:3] == athlete_sizes(300, 3)  # a rerun with other --athletes: same histories


def test_interleave_counts_each_athletes_requests_per_window() -> None:
    shares = interleave([(7, 100), (8, 100), (7, 100), (7, 103), (8, 101)])
    assert shares.first_window == 100 and shares.windows == 4
    assert shares.counts == {7: (2, 0, 0, 1), 8: (1, 1, 0, 0)}  # a window nobody used is there, empty
    assert shares.totals() == (3, 1, 0, 1)
    assert (shares.finished_in(7), shares.finished_in(8)) == (4, 2)
    assert interleave([]).windows == 0


def test_team_demo_shows_the_fair_interleaving(team_demo) -> None:
    _, out = team_demo
    header, *rows = plain_table(out, "Requests per 6-second quota window")
    assert header[0] == "athlete" and header[-2:] == ["done", "in"]
    counts = {int(row[0]): [int(n.replace(",", "")) if n != "." else 0 for n in row[1:-1]]
              for row in rows if row[0] != "all"}
    done = {int(row[0]): int(row[-1].lstrip("w")) for row in rows if row[0] != "all"}
    big, mid, small = sorted(counts)
    # Every request the quota counted: one list page and one detail per activity, each athlete its own.
    assert [sum(counts[a]) for a in (big, mid, small)] == [n + 1 for n in TEAM_SIZES]
    # The middle one may end in the big one's last window when a loaded machine slows the first window.
    assert len(counts[big]) >= 3 and done[small] < done[big] and done[mid] <= done[big]
    for window in range(len(counts[big])):  # each athlete with work left after a window had its turn in it
        busy = [a for a in counts if done[a] > window + 1]
        shared = sum(counts[a][window] for a in busy)
        # In the first window the athlete whose list page answers first may fill the free request slots
        # (the demo's concurrency, 8) before the others have a detail to ask: a lead of at most that.
        slack = 8 if window == 0 else 1
        for athlete in busy:
            assert counts[athlete][window] >= shared // len(busy) - slack, (window, counts)


def test_team_demo_reports_each_athlete_and_its_parquet(team_demo) -> None:
    data_dir, out = team_demo
    _, *rows = plain_table(out, "Per athlete")
    by_athlete = {int(row[0]): [int(n.replace(",", "")) for n in row[1:]] for row in rows}
    assert [by_athlete[a][:4] for a in sorted(by_athlete)] == [[n, n, n + 1, n] for n in TEAM_SIZES]
    assert report.rows_per_athlete(data_dir / "parquet", "activities") == dict(zip(sorted(by_athlete), TEAM_SIZES))
    splits = report.rows_per_athlete(data_dir / "parquet", "splits_metric")
    assert [by_athlete[a][4] for a in sorted(by_athlete)] == [splits[a] for a in sorted(by_athlete)]
    assert "listed 210 activities; fetched 210 details" in out


def test_team_demo_rerun_reconnects_its_athletes(team_demo) -> None:
    """The rerun's simulator is new: the token chains stored last time are ones it never issued."""
    data_dir, _ = team_demo
    result = run_cli("demo", "--athletes", "3", "--activities", "120", "--data-dir", str(data_dir), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "fetched 0 details" in result.stdout and "0 year(s) rewritten" in result.stderr
    _, *rows = plain_table(result.stdout, "Per athlete")
    assert [row[3] for row in rows] == ["1", "1", "1"]  # a list check each, no refresh refused
    # Fewer athletes than the data_dir holds: the others are left alone, not reported revoked (exit 2).
    fewer = run_cli("demo", "--activities", "120", "--data-dir", str(data_dir), timeout=120)
    assert fewer.returncode == 0, fewer.stderr
    assert "fetched 0 details" in fewer.stdout and re.search(r"; 1 request$", fewer.stdout, flags=re.M)


@pytest.mark.parametrize(("flags", "needle"), [(("--athletes", "11"), "--athletes must be from 1 to 10"),
                                               (("--athletes", "0"), "--athletes must be from 1 to 10"),
                                               (("--activities", "0"), "--activities must be at least 1")])
def test_demo_refuses_a_bad_size_in_one_line(tmp_path: Path, flags: tuple[str, ...], needle: str, capsys) -> None:
    result = run_in_process(capsys, "demo", *flags, "--data-dir", str(tmp_path / "demo-data"))
    assert result.returncode == 2 and needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "demo-data").exists()


def test_bench_demo_smoke() -> None:
    """bench/demo.py cannot rot: both trees' demos run (it stops unless each exits 0 having fetched all)."""
    has_baseline = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{bench_demo.BASELINE_REV}^{{commit}}"],
                                  capture_output=True).returncode == 0
    if not has_baseline:  # a shallow clone: the baseline's code is not there to compare with
        pytest.skip(f"this checkout lacks {bench_demo.BASELINE_REV}, the baseline bench/demo.py compares with")
    args = bench_demo.parse_args(["--smoke"])
    results = bench_demo.run(args)
    assert [r.name for r in results] == ["first run", "rerun"]
    assert all(len(r.baseline_s) == len(r.current_s) == 1 and min(r.baseline_s + r.current_s) > 0 for r in results)
    table = bench_demo.render(results, args.baseline)
    assert f"| baseline {bench_demo.BASELINE_REV} s (median) |" in table and "| first run | " in table


# -- --export: the simulated account export imported, then the fetch with every stream type -----------------

EXPORT_ACTIVITIES = 40
REQUEST_LINE = re.compile(r"^\S+ GET (/athlete/activities|/activities/\d+(?:/streams)?)[?\s]", flags=re.M)
LOG_KINDS = {"/athlete/activities": "list pages", "/activities/streams": "streams", "/activities": "details"}


@pytest.fixture(scope="module")
def export_demo(tmp_path_factory) -> tuple[Path, str, str]:
    folder = tmp_path_factory.mktemp("export-demo") / "demo-data"
    result = run_cli("demo", "--export", "--activities", str(EXPORT_ACTIVITIES), "--data-dir", str(folder),
                     timeout=180)
    assert result.returncode == 0, result.stderr
    return folder, result.stdout, result.stderr


def last_run_requests(data_dir: Path) -> dict[str, int]:
    """The API requests bulkfetch's own log recorded for its last run, by kind."""
    runs = re.split(r"^\S+ exit \d+: .*$", (data_dir / "bulkfetch.log").read_text(), flags=re.M)
    last = runs[-2]  # the text after the last run's exit line is empty
    counts = dict.fromkeys(LOG_KINDS.values(), 0)
    for path in REQUEST_LINE.findall(last):
        counts[LOG_KINDS[re.sub(r"/\d+", "", path)]] += 1
    return counts


def parquet_sources(data_dir: Path, table: str) -> dict[str, int]:
    glob = f"{data_dir}/parquet/{table}/**/*.parquet"
    return dict(duckdb.sql(f"SELECT source, count(*) FROM read_parquet('{glob}') GROUP BY source").fetchall())


def saving_table(out: str) -> dict[str, tuple[int, int]]:
    rows = plain_table_rows(out, "Requests this fetch sent", ("list", "details", "streams", "total"))
    return {row[0] if row[0] != "list" else "list pages": (int(row[-2].replace(",", "")), int(row[-1].replace(",", "")))
            for row in rows}


def plain_table_rows(out: str, title_start: str, first_cells: tuple[str, ...]) -> list[list[str]]:
    lines = out.split(title_start, 1)[1].splitlines()[2:]
    return [line.split() for line in lines[:len(first_cells)] if line.split()[0] in first_cells]


def ids_by_source(data_dir: Path, table: str) -> dict[str, set[int]]:
    key = "id" if table == "activities" else "activity_id"
    glob = f"{data_dir}/parquet/{table}/**/*.parquet"
    return {source: set(ids) for source, ids in duckdb.sql(
        f"SELECT source, list(DISTINCT {key}) FROM read_parquet('{glob}') GROUP BY source").fetchall()}


def recipe_since(out: str) -> str:
    """The --since the demo printed, checked against a year before the simulated now (today, 00:00 UTC)."""
    since = re.search(r"then fetch --since (\d{4}-\d{2}-\d{2}) --streams all\)", out)
    assert since, out
    today = datetime.datetime.now(datetime.UTC).date()
    assert since.group(1) == (today - datetime.timedelta(days=365)).isoformat()
    return since.group(1)


def test_export_demo_imports_then_fetches_the_last_year_and_its_saving_table_is_the_logs(export_demo) -> None:
    """The README's recipe: import, then details (and the streams the export lacks) for the last year only."""
    data_dir, out, err = export_demo
    sidecar = orjson.loads(next((data_dir / "simulated-export").glob("export_*.zip.sim.json")).read_bytes())
    files = len(sidecar["files"])
    assert f"importing {files} files from the export" in err and f"decoded {files} files" in err
    assert f"imported {EXPORT_ACTIVITIES} activities from the export: {files} files" in out
    since = recipe_since(out)
    glob = f"{data_dir}/parquet/activities/**/*.parquet"
    recent = {i for (i,) in duckdb.sql(f"SELECT id FROM read_parquet('{glob}') WHERE start_date >= "
                                       f"TIMESTAMPTZ '{since} 00:00:00+00'").fetchall()}
    assert 0 < len(recent) < EXPORT_ACTIVITIES / 2
    # the older activities whose file is stale (cropped on Strava since) have nothing from their file: the
    # recipe's fetch takes them too, whatever --since says
    taken = recent | set(sidecar["cropped"])
    assert f"listed {EXPORT_ACTIVITIES} activities; fetched {len(taken)} details" in out

    table = saving_table(out)
    sent = last_run_requests(data_dir)
    assert {kind: table[kind][0] for kind in sent} == sent  # the simulator counted what bulkfetch logged
    # The API alone: a detail for every activity, a stream request for every one but the manual ones. The
    # recipe: details for the last year and the cropped ones, streams for those of them the files do not
    # cover whole and current: the cut file's and the recordings cropped on Strava (manual ones: none).
    assert table["list pages"] == (1, 1) and table["details"] == (len(taken), EXPORT_ACTIVITIES)
    not_covered = {*sidecar["cropped"], int(next(a for a, m in sidecar["files"].items() if m == sidecar["corrupt"]))}
    with_streams = EXPORT_ACTIVITIES - len(sidecar["manual"])
    assert table["streams"] == (len(not_covered & taken), with_streams)
    assert table["total"] == (sum(sent.values()), 1 + EXPORT_ACTIVITIES + with_streams)

    streams = ids_by_source(data_dir, "streams")
    assert streams["api"] == (not_covered & taken) - set(sidecar["manual"])  # manual ones have no streams at all
    # The older cut file keeps its streams up to the cut; an older cropped one is stale: the API's.
    assert streams["file"] == set(map(int, sidecar["files"])) - not_covered | (
        {int(a) for a, m in sidecar["files"].items() if m == sidecar["corrupt"]} - recent)
    splits = ids_by_source(data_dir, "splits_metric")  # Strava's for the last year, the files' before it
    assert splits["api"] <= taken and splits["file"] and not splits["file"] & taken


def test_export_demo_rows_by_source_table_is_the_parquets(export_demo) -> None:
    data_dir, out, _ = export_demo
    tables = ("activities", "streams", "splits_metric", "splits_standard", "laps")
    rows = plain_table_rows(out, "Parquet rows by source", tables)
    assert [row[0] for row in rows] == list(tables)
    for table, *cells in rows:
        shown = dict(zip(("api", "file", "csv"), (int(c.replace(",", "")) for c in cells)))
        assert {k: v for k, v in shown.items() if v} == parquet_sources(data_dir, table), table
    # Every activity was listed: the API's summaries replaced the CSV's. Splits and laps are the API's for the
    # last year's activities (detailed), the files' for the older ones.
    assert parquet_sources(data_dir, "activities") == {"api": EXPORT_ACTIVITIES}
    for table in ("splits_metric", "laps", "streams"):
        assert set(parquet_sources(data_dir, table)) == {"api", "file"}, table


def test_export_demo_pace_table_says_where_its_splits_came_from(export_demo) -> None:
    data_dir, out, _ = export_demo
    header = "1 km run splits: pace by elevation difference (api: Strava's splits; file: derived from"
    rows = [line.split() for line in out.split(header, 1)[1].splitlines()[2:] if "/km" in line]
    counts = [[int(n.replace(",", "")) for n in row[-5:-2]] for row in rows]  # splits, api, file
    assert all(splits == api + file for splits, api, file in counts)
    glob = f"{data_dir}/parquet/splits_metric/**/*.parquet"
    runs = dict(duckdb.sql(f"SELECT source, count(*) FROM read_parquet('{glob}') WHERE sport_type IN ('Run', "
                           "'TrailRun') AND distance BETWEEN 950 AND 1050 GROUP BY source").fetchall())
    assert [sum(column) for column in zip(*counts)][1:] == [runs["api"], runs["file"]]


def test_export_demo_rerun_decodes_nothing_and_sends_one_request(export_demo) -> None:
    data_dir, _, _ = export_demo
    zip_path = next((data_dir / "simulated-export").glob("export_*.zip"))
    written_at = zip_path.stat().st_mtime_ns
    result = run_cli("demo", "--export", "--activities", str(EXPORT_ACTIVITIES), "--data-dir", str(data_dir),
                     timeout=120)
    assert result.returncode == 0, result.stderr
    assert "is this history's already: not written again" in result.stderr and zip_path.stat().st_mtime_ns == written_at
    assert "nothing new: this export was imported before, and no file was decoded again" in result.stderr
    assert "fetched 0 details" in result.stdout and "0 year(s) rewritten" in result.stderr
    table = saving_table(result.stdout)
    assert {kind: sent for kind, (sent, _) in table.items()} == {"list pages": 1, "details": 0, "streams": 0,
                                                                 "total": 1}
    assert last_run_requests(data_dir) == {"list pages": 1, "details": 0, "streams": 0}


def test_export_demo_with_several_athletes_imports_the_first_ones_export(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo-data"
    result = run_cli("demo", "--export", "--athletes", "2", "--activities", "12", "--data-dir", str(data_dir),
                     timeout=180)
    assert result.returncode == 0, result.stderr
    first, second = sorted(report.rows_per_athlete(data_dir / "parquet", "activities"))
    assert [p.name for p in (data_dir / "simulated-export").glob("*.zip")] == [f"export_{first}.zip"]
    glob = f"{data_dir}/parquet/streams/**/*.parquet"
    sources = dict(duckdb.sql(f"SELECT athlete_id, list(DISTINCT source) FROM read_parquet('{glob}', "
                              "hive_partitioning = true) GROUP BY athlete_id").fetchall())
    assert sorted(sources[first]) == ["api", "file"] and sources[second] == ["api"]
    assert "Per athlete" in result.stdout and "Requests this fetch sent" in result.stdout


def test_quota_saving_compares_with_the_whole_history_from_the_api_alone() -> None:
    from collections import Counter

    from bulkfetch.demo import SavingRow, from_api_alone, quota_saving

    history = [(activity_id, 2_000_000 - activity_id) for activity_id in range(300)]
    assert from_api_alone(history[:200], 200)["list pages"] == 2  # a full page: one more, empty, ends it
    sent = Counter({"list pages": 2, "details": 75, "streams": 9, "other": 1})
    rows = quota_saving(sent, from_api_alone(history, 200))
    assert rows == [SavingRow("list pages", 2, 2), SavingRow("details", 75, 300), SavingRow("streams", 9, 300),
                    SavingRow("other", 1, 1), SavingRow("total", 87, 603)]
    assert from_api_alone(history, 200, manual=20)["streams"] == 280  # manual activities: no stream request


def test_each_kind_of_demo_refuses_the_others_folder(demo, export_demo, capsys) -> None:
    """A plain demo and --export simulate different histories: mixed, every activity would be fetched again."""
    for data_dir, flags, other in ((demo[0], ("--export",), "a plain 'bulkfetch demo'"),
                                   (export_demo[0], (), "'bulkfetch demo --export'")):
        before = sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("*") if "quota" not in p.parts)
        result = run_in_process(capsys, "demo", *flags, "--activities", "250", "--data-dir", str(data_dir))
        assert result.returncode == 2 and f"holds the data of {other}" in result.stderr
        assert "--data-dir" in result.stderr and len(result.stderr.strip().splitlines()) == 1
        after = sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("*") if "quota" not in p.parts)
        assert after == before  # nothing written, not even the export's folder


def test_a_demo_refuses_the_folder_of_a_plain_import_of_its_athletes_export(tmp_path, capsys) -> None:
    athlete_id = SimulatorSettings().athlete_id  # the demo's own athlete: only the import tells the folder apart
    export = write_folder(tmp_path / "export", csv_text(ENGLISH_94, [english_row(1, "activities/1.fit")]),
                          [ExportFile("activities/1.fit", fixture("fenix5-run.fit"))], profile_id=athlete_id)
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n')
    assert run_cli("--config", str(config), "import", str(export)).returncode == 0
    for flags in (("--export",), ()):
        result = run_in_process(capsys, "demo", *flags, "--data-dir", str(tmp_path / "data"))
        assert result.returncode == 2, result.stderr
        assert "holds the data of a 'bulkfetch import', not of a demo" in result.stderr, result.stderr
