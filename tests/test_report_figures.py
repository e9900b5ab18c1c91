"""`bulkfetch report` (issue 15): each figure's data from hand-made runs, and the real path simulator ->
fetch -> compact (the demo) -> report, its counts checked against DuckDB over the same Parquet; the
prediction fitted on streams where the Parquet has them, its run counts checked with pyarrow."""

from __future__ import annotations

import base64
import html
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from bulkfetch import pace
from bulkfetch.cli import main
from bulkfetch.dataset_root import local_root
from bulkfetch.report import dataset
from bulkfetch.report_data import Run, SplitRow, athlete_report, gap_figure, grade_figure, used_splits
from bulkfetch.report_read import read_stream_rows
from bulkfetch.simulator import SimulatorSettings, SimulatorThread
from tests.conftest import REPO, cli_env, run_cli, run_in_process, simulator_config_text
from tests.ctrl_c import ended, futures_lock_site

JAN = datetime(2024, 1, 1, 7, tzinfo=UTC)  # a Monday
FEB = datetime(2024, 2, 7, 7, tzinfo=UTC)
NEXT_YEAR = datetime(2025, 3, 3, 7, tzinfo=UTC)


def row(index: int, rise_m: float | None, *, start: datetime = JAN, distance_m: float = 1000.0, moving_s: float = 300,
        gap: float | None = 3.5, heartrate: float | None = 150.0, from_file: bool = False) -> SplitRow:
    return SplitRow(index, start, distance_m, moving_s, rise_m, gap, heartrate, from_file)


def test_used_splits_follow_the_issue_definitions() -> None:
    run = Run(1, False, None, (row(1, 0), row(2, 5), row(3, None), row(4, 460), row(5, 0, distance_m=940),
                               row(6, 0, moving_s=0), row(7, -3, from_file=True)))
    used = used_splits([run], pace.KM_M)
    assert [u.row.split for u in used] == [1, 2, 7]
    report = athlete_report(9, [run], pace.KM_M)
    assert (report.runs, report.splits, report.used, report.used_from_files) == (1, 7, 3, 1)


def test_grade_figure_bins_and_minetti_curve() -> None:
    rows = [row(i, 0, moving_s=290 + i) for i in range(7)] + [row(10 + i, 50, moving_s=400) for i in range(3)]
    figure = grade_figure(used_splits([Run(1, False, None, tuple(rows))], pace.KM_M))
    assert len(figure.points) == 10
    # The 5 % bin has 3 splits, too few to draw; the flat one has 7: their median is the flat pace.
    assert [(round(b.grade, 3), b.splits) for b in figure.bins] == [(0.01, 7)]
    assert figure.flat_pace_s == pytest.approx(0.293) == figure.bins[0].median_pace_s
    assert figure.bins[0].low_pace_s < figure.bins[0].median_pace_s < figure.bins[0].high_pace_s
    assert figure.minetti[0] == (0.0, pytest.approx(0.293))
    assert figure.minetti[-1] == (pytest.approx(0.05), pytest.approx(0.293 * pace.relative_cost(0.05)))


def test_gap_figure_only_where_strava_gave_it() -> None:
    rows = (row(1, 10, gap=4.0), row(2, 0, gap=None, from_file=True), row(3, -10, gap=0.0))
    figure = gap_figure(used_splits([Run(1, False, None, rows)], pace.KM_M))
    assert figure.points == ((0.3, 0.25, 0.01),)


def test_a_gap_figure_without_points_shows_no_pace_scale() -> None:
    # Hands-on: with no grade-adjusted speed from Strava, the empty figure's axes read 0:00 to 0:01.
    from bulkfetch.report_figures import _DRAWN
    from bulkfetch.report_html import units_named

    report = athlete_report(1, [Run(1, False, None, (row(1, 10, gap=None), row(2, 0, gap=None)))], pace.KM_M)
    assert report.gap.points == ()
    axes = _DRAWN["gap"](report, units_named("km")).axes[0]
    assert list(axes.get_xticks()) == [] and list(axes.get_yticks()) == []
    assert [text.get_text() for text in axes.texts] == ["Strava gave no grade-adjusted speed for these splits"]


def test_trend_and_heart_figures() -> None:
    runs = [Run(1, False, None, (row(1, 0), row(2, 20, moving_s=330), row(3, 0, distance_m=400, moving_s=120))),
            Run(2, False, None, (row(1, 0, start=FEB, moving_s=280, heartrate=None), row(2, 0, start=FEB))),
            Run(3, False, None, (row(1, 5, start=NEXT_YEAR), row(2, 0, start=NEXT_YEAR, moving_s=250)))]
    report = athlete_report(9, runs, pace.KM_M)
    months = {m.isoformat(): (p, n) for m, p, n in report.trend.months}
    assert months.keys() == {"2024-01-01", "2024-02-01", "2025-03-01"}
    assert months["2024-01-01"] == (pytest.approx(statistics_median([0.3, 0.33 / pace.relative_cost(0.02)])), 2)
    # Weekly distance counts every split, the short last one too.
    assert [(w.isoformat(), m) for w, m in report.trend.weeks] == [
        ("2024-01-01", 2400.0), ("2024-02-05", 2000.0), ("2025-03-03", 2000.0)]
    # Flat splits (|i| < 1 %, 0.5 % too) with a heart rate: not the 2 % climb, not the one without a heart rate.
    assert {year: len(points) for year, points in report.heart.by_year.items()} == {2024: 2, 2025: 2}
    assert report.heart.by_year[2025][1] == (pytest.approx(4.0), 150.0)


def statistics_median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory) -> tuple[Path, Path, str]:
    """A two-athlete demo (simulator, fetch with splits, compaction) and the report it prints the command of."""
    folder = tmp_path_factory.mktemp("report")
    demo = run_cli("demo", "--activities", "60", "--athletes", "2", "--data-dir", str(folder / "demo-data"))
    assert demo.returncode == 0, demo.stderr
    command = demo.stdout.split("Figures in one HTML file (pip install 'bulkfetch[report]'):\n", 1)[1].split()
    assert command[:2] == ["bulkfetch", "--config"] and command[3:5] == ["report", "--out"]
    result = run_cli(*command[1:6], "--predict", "10km+80m")
    assert result.returncode == 0, result.stderr
    return folder / "demo-data", Path(command[5]), result.stdout


def _duckdb_counts(parquet_dir: Path) -> dict[int, tuple[int, int, int]]:
    """Per athlete: used 1 km splits, those with Strava's grade-adjusted speed, flat ones with a heart rate."""
    glob = f"{parquet_dir}/splits_metric/**/*.parquet"
    return {athlete: (used, gap, heart) for athlete, used, gap, heart in duckdb.sql(f"""
        SELECT athlete_id, count(*), count(*) FILTER (average_grade_adjusted_speed > 0),
               count(*) FILTER (abs(elevation_difference / distance) < 0.01 AND average_heartrate > 0)
        FROM read_parquet('{glob}', hive_partitioning = true)
        WHERE sport_type IN ('Run', 'TrailRun') AND distance BETWEEN 950 AND 1050 AND moving_time > 0
          AND abs(elevation_difference / distance) <= 0.45
        GROUP BY athlete_id""").fetchall()}


def test_report_over_the_real_path_matches_duckdb(demo_report) -> None:
    data_dir, html_path, out = demo_report
    assert out.splitlines()[0] == str(html_path) and len(out.splitlines()) == 4
    page = html_path.read_text()
    counts = _duckdb_counts(data_dir / "parquet")
    assert len(counts) == 2
    sections = re.findall(r"<section><h2>Athlete (\d+)</h2>(.*?)</section>", page, flags=re.S)
    assert {int(athlete) for athlete, _ in sections} == set(counts)
    for athlete, section in sections:
        used, gap, heart = counts[int(athlete)]
        assert used > 50 and gap > 0 and heart > 0
        assert f"{used:,} used: {used:,} from Strava, 0 derived from export files" in section
        assert f"figure 2: {gap:,} splits with Strava" in section and f"figure 4: {heart:,} flat splits" in section
        images = re.findall(r'<img alt="[\w-]+" src="data:image/png;base64,([A-Za-z0-9+/=]+)">', section)
        assert len(images) == 4
        for name, image in zip(("pace-grade", "gap", "trend", "heart-speed"), images):
            beside = html_path.with_name(f"{html_path.stem}-{athlete}-{name}.png").read_bytes()
            assert base64.b64decode(image) == beside and beside.startswith(b"\x89PNG")
        assert "10km+80m: predicted moving time" in section or "no prediction for 10km+80m" in section


def test_report_html_loads_nothing_remote(demo_report) -> None:
    page = demo_report[1].read_text()
    for remote in ("http://", "https://", "<script", "<link", "<iframe", "url("):
        assert remote not in page.lower()
    assert re.findall(r'src="([^"]{0,21})', page) == ["data:image/png;base64"] * 8


def _one_line_exit_2(result) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    return result.stderr


def _refused(capsys, *args: str) -> str:
    """The one line `bulkfetch ARGS` exits 2 with, run in this process: the report's start imports matplotlib
    (a second or more) before it refuses; the demo_report fixture runs it as a process."""
    return _one_line_exit_2(run_in_process(capsys, *args))


def test_report_refuses_an_empty_or_missing_dataset(tmp_path: Path, write_config, capsys) -> None:
    config = write_config(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n')
    assert "no splits_metric table" in _refused(capsys, "--config", str(config), "report")
    (tmp_path / "data" / "parquet" / "splits_metric" / "athlete_id=1").mkdir(parents=True)
    assert "no splits_metric table" in _refused(capsys, "--config", str(config), "report")
    damaged = tmp_path / "data" / "parquet" / "splits_metric" / "athlete_id=1" / "year=2024" / "part-0.parquet"
    damaged.parent.mkdir()
    damaged.write_bytes(b"")  # a file emptied by a full disk or a bad copy
    line = _refused(capsys, "--config", str(config), "report")
    assert "cannot be read" in line and "compact --rebuild" in line


def test_report_refuses_filters_that_leave_no_split(demo_report, capsys) -> None:
    config = ["--config", str(demo_report[0] / "report-config.toml"), "report", "--out", str(demo_report[1])]
    assert "no Swim splits" in _refused(capsys, *config, "--sport", "Swim")
    assert "no Run, TrailRun splits" in _refused(capsys, *config, "--since", "2100-01-01")


def test_report_names_the_datasets_athletes_for_one_it_does_not_hold(demo_report, capsys) -> None:
    config = ["--config", str(demo_report[0] / "report-config.toml"), "report", "--out", str(demo_report[1])]
    athletes = ", ".join(map(str, sorted(_duckdb_counts(demo_report[0] / "parquet"))))
    line = _refused(capsys, *config, "--athlete", "999")
    assert line == (f"bulkfetch: --athlete: athlete 999 is not in the dataset {demo_report[0] / 'parquet'} "
                    f"(athletes in it: {athletes})\n")
    first = athletes.split(", ")[0]
    assert "athletes 5, 999 are not in the dataset" in _refused(capsys, *config, "--athlete", f"999,{first},5")


def test_report_refuses_bad_units_and_courses(demo_report, tmp_path: Path, capsys) -> None:
    data_dir = demo_report[0]
    config = ["--config", str(data_dir / "report-config.toml"), "report", "--out", str(tmp_path / "r.html")]
    assert "--units" in _refused(capsys, *config, "--units", "furlong")
    assert "--predict" in _refused(capsys, *config, "--predict", "a marathon")
    assert "--sport" in _refused(capsys, *config, "--sport", "Rn")
    assert not list(tmp_path.iterdir())


def test_report_without_matplotlib_says_how_to_install_it(tmp_path: Path, demo_report) -> None:
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "class Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'matplotlib':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Hide())\n")
    result = run_cli("--config", str(demo_report[0] / "report-config.toml"), "report",
                     PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO)]))
    assert "pip install 'bulkfetch[report]'" in _one_line_exit_2(result)


PROCESS_END_S = 20  # a worker notices its parent gone within a second; the server ends after its import


def _marked(marker: str) -> dict[Path, str]:
    """The /proc folders and command lines of the processes whose environment holds `marker`: the
    command's, and every process it started (zombies have no environment left)."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "environ").read_bytes():
                found[entry] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # ended meanwhile, or another user's
            continue
    return found


def _importing_matplotlib(marker: str) -> bool:
    """Whether the command's forkserver is in its import (numpy's libraries mapped: matplotlib's first)."""
    for entry, line in _marked(marker).items():
        try:
            if "forkserver" in line and b"numpy" in (entry / "maps").read_bytes():
                return True
        except OSError:
            continue
    return False


def _none_left(marker: str, within_s: float = PROCESS_END_S) -> list[str]:
    """[] once every marked process ended (within `within_s`), else those still there."""
    deadline = time.monotonic() + within_s
    while (left := list(_marked(marker).values())) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


needs_proc = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")


@needs_proc
def test_report_leaves_no_process_behind(demo_report, tmp_path: Path) -> None:
    config = ["--config", str(demo_report[0] / "report-config.toml"), "report", "--out", str(tmp_path / "r.html")]
    marker = f"report-{uuid.uuid4()}"
    assert run_cli(*config, REPORT_TEST_MARK=marker).returncode == 0
    assert _none_left(marker) == []
    # Refused by the command itself once its workers' server was importing matplotlib: that ends too.
    assert "no Swim splits" in _one_line_exit_2(run_cli(*config, "--sport", "Swim", REPORT_TEST_MARK=marker))
    assert _none_left(marker) == []


@needs_proc
def test_a_report_refused_early_ends_its_server_with_it(tmp_path: Path, write_config) -> None:
    """No dataset: the command refuses while its workers' server still imports matplotlib (here that import
    takes a minute). The server ends with the command rather than finish an import nobody waits for."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(
        "import sys, time\n"
        "class Slow:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'matplotlib' and sys.argv[0] == '-c':  # in the forkserver, not in the command\n"
        "            time.sleep(60)\n"
        "sys.meta_path.insert(0, Slow())\n")
    config = write_config(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n')
    marker = f"report-{uuid.uuid4()}"
    result = run_cli("--config", str(config), "report", REPORT_TEST_MARK=marker,
                     PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), str(REPO)]))
    assert "no splits_metric table" in _one_line_exit_2(result)
    assert _none_left(marker, within_s=10) == []


@needs_proc
def test_a_drawing_error_is_one_line_and_exit_1(demo_report, tmp_path: Path) -> None:
    # A matplotlibrc asking for LaTeX, which is not on the PATH: every figure fails in its worker.
    (tmp_path / "matplotlibrc").write_text("text.usetex: True\n")
    (tmp_path / "bin").mkdir()
    marker = f"report-{uuid.uuid4()}"
    result = run_cli("--config", str(demo_report[0] / "report-config.toml"), "report", "--out",
                     str(tmp_path / "r.html"), MATPLOTLIBRC=str(tmp_path / "matplotlibrc"), PATH=str(tmp_path / "bin"),
                     REPORT_TEST_MARK=marker)
    assert result.returncode == 1 and result.stdout == "", result.stderr
    assert re.fullmatch(r"bulkfetch: drawing athlete \d+'s pace-grade figure failed: RuntimeError: .*latex.*\n",
                        result.stderr), result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "matplotlibrc"]
    assert _none_left(marker) == []


def _stopped_report(data_dir: Path, out: Path, signum: int | None, when: Callable[[str], bool] = bool,
                    offset_s: float = 0.0, **env: str) -> tuple[int | None, str, str]:
    """`bulkfetch report` as a process of its own session, sent `signum` `offset_s` after `when(marker)` holds
    (Ctrl-C to the whole process group, as a terminal sends it; SIGTERM to the command alone; None: nothing,
    the command stops itself): its exit code (None when it did not end within tests.ctrl_c.STOPPED_END_S: hung), stdout
    and stderr, once none of its processes is left."""
    marker = f"report-{uuid.uuid4()}"
    command = subprocess.Popen(
        [sys.executable, "-m", "bulkfetch", "--config", str(data_dir / "report-config.toml"), "report",
         "--out", str(out)], env=cli_env(REPORT_TEST_MARK=marker, **env), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not when(marker) and time.monotonic() < deadline:
            assert command.poll() is None, command.communicate()
            time.sleep(0.01)
        time.sleep(offset_s)
        if signum == signal.SIGINT:
            os.killpg(command.pid, signum)
        elif signum is not None:
            command.send_signal(signum)
        code, out_text, err_text = ended(command)
    finally:
        command.kill()
    assert _none_left(marker) == []
    return code, out_text, err_text


def _interrupted(code: int | None, out: str, err: str) -> None:
    """Ended by a Ctrl-C: 130 with one line, or ended by the SIGINT itself after that line (a shell reports
    that as 130 too): Python does so when the Ctrl-C reached it where it could not hand it over (rarely, as
    the command starts)."""
    assert code is not None, "the report hung after Ctrl-C"
    assert code in (130, -signal.SIGINT) and (out, err) == ("", "bulkfetch: interrupted\n"), (code, out, err)


@needs_proc
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_report_stopped_while_its_workers_start_leaves_nothing(demo_report, tmp_path: Path, signum: int) -> None:
    """Ctrl-C or SIGTERM while the workers' server imports matplotlib: the command ends at once, in one
    line or none, and so do the processes it started (the server's output goes nowhere: an interrupted
    import prints nothing)."""
    code, out, err = _stopped_report(demo_report[0], tmp_path / "r.html", signum, _importing_matplotlib)
    if signum == signal.SIGINT:
        _interrupted(code, out, err)
    else:
        assert code == -signal.SIGTERM and "Traceback" not in err, err
    assert not list(tmp_path.iterdir())


def _drawing(marker: str) -> bool:
    """Whether the command's figure workers run (forked from its forkserver, whose command line they keep)."""
    return sum("forkserver" in line for line in _marked(marker).values()) >= 1 + WORKERS_SEEN


WORKERS_SEEN = 1  # the first worker forked: the figures are being drawn (report_drawing starts them at the first)


@needs_proc
@pytest.mark.parametrize("offset_s", [0.0, 0.05, 0.2])
def test_ctrl_c_while_the_figures_are_drawn_ends_the_report(demo_report, tmp_path: Path, offset_s: float) -> None:
    """Ctrl-C at several points of the drawing (PNGs of ~100 KB coming back while the next figures' data,
    as large, go out): 130 in one line within seconds, nothing written, no process left."""
    code, out, err = _stopped_report(demo_report[0], tmp_path / "r.html", signal.SIGINT, _drawing, offset_s)
    _interrupted(code, out, err)
    assert not list(tmp_path.iterdir())


@needs_proc
def test_ctrl_c_inside_a_futures_lock_does_not_hang_the_report(demo_report, tmp_path: Path) -> None:
    """The hang seen once in ~250 Ctrl-Cs: raised with a future's lock held, the Ctrl-C left the lock taken;
    the pool's manager thread blocked on it for ever, so stopped reading the workers' PNGs; a worker blocked
    writing one, the pool's feeder thread writing it the next figure's data, and the shutdown waited for all.
    Here the Ctrl-C comes at that very point every time."""
    out = tmp_path / "out" / "r.html"
    out.parent.mkdir()
    code, stdout, stderr = _stopped_report(demo_report[0], out, None, PYTHONPATH=futures_lock_site(tmp_path / "site"))
    _interrupted(code, stdout, stderr)
    assert not list(out.parent.iterdir())


GPX = """<?xml version="1.0"?>
<gpx version="1.1" creator="planner" xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>
{points}</trkseg></trk></gpx>"""


def test_report_predicts_over_a_gpx_course_or_refuses_it_in_one_line(demo_report, tmp_path: Path,
                                                                      capsys) -> None:
    points = "".join(f'<trkpt lat="{45 + 0.009 * k:.3f}" lon="7.0"><ele>{100 + 5 * k}</ele></trkpt>'
                     for k in range(11))
    (tmp_path / "hill.gpx").write_text(GPX.format(points=points))
    config = ["--config", str(demo_report[0] / "report-config.toml"), "report", "--out", str(tmp_path / "r.html")]
    result = run_in_process(capsys, *config, "--predict", str(tmp_path / "hill.gpx"))
    assert result.returncode == 0, result.stderr
    assert "hill.gpx: predicted moving time" in result.stdout.splitlines()[3]
    (tmp_path / "bad.gpx").write_text("<gpx>")
    assert "is not XML" in _refused(capsys, *config, "--predict", str(tmp_path / "bad.gpx"))
    assert "cannot read" in _refused(capsys, *config, "--predict", str(tmp_path / "none.gpx"))
    (tmp_path / "run.tcx").write_text("<TrainingCenterDatabase/>")
    assert "is not a .gpx file" in _refused(capsys, *config, "--predict", str(tmp_path / "run.tcx"))


def _run_ids(parquet_dir: Path, table: str) -> set[int]:
    """The Run and TrailRun activity ids that `table` has rows of, counted by pyarrow alone."""
    ids = dataset(parquet_dir, table).to_table(columns=["activity_id"],
                                               filter=pc.field("sport_type").isin(["Run", "TrailRun"]))
    return set(pc.unique(ids["activity_id"]).to_pylist())


def test_prediction_fits_on_streams_where_the_parquet_has_them(tmp_path: Path, capsys) -> None:
    since = (datetime.now(UTC) - timedelta(days=300)).date().isoformat()
    with SimulatorThread(SimulatorSettings(activities=80, seed=5, short_limit=1000, daily_limit=10000)) as sim:
        config = tmp_path / "config.toml"
        config.write_text(simulator_config_text(sim, tmp_path / "data"))
        assert main(["--config", str(config), "-q", "fetch", "--no-compact"]) == 0
        # The last 300 days' streams only: the older runs have their splits alone.
        assert main(["--config", str(config), "-q", "fetch", "--streams", "time,distance,altitude,moving",
                     "--since", since]) == 0
    parquet_dir = tmp_path / "data" / "parquet"
    runs = _run_ids(parquet_dir, "splits_metric")
    streamed = _run_ids(parquet_dir, "streams") & runs
    assert 0 < len(streamed) < len(runs)
    points = "".join(f'<trkpt lat="{45 + 0.009 * k:.3f}" lon="7.0"><ele>{100 + 5 * k}</ele></trkpt>'
                     for k in range(11))
    (tmp_path / "hill.gpx").write_text(GPX.format(points=points))
    for course in ("10km+50m", str(tmp_path / "hill.gpx")):
        result = run_in_process(capsys, "--config", str(config), "report", "--out", str(tmp_path / "r.html"),
                                "--predict", course)
        assert result.returncode == 0, result.stderr
        assert re.search(r": predicted moving time \d+:\d\d, 90 % interval", result.stdout.splitlines()[3])
        page = html.unescape((tmp_path / "r.html").read_text())
        assert (f"fitted on {len(streamed)} runs' streams cut every 100 m and {len(runs) - len(streamed)} runs' "
                "splits") in page
        assert f"race level from {pace.RACES_BASIS}" in page and "q_down" in page


def test_stream_rows_come_from_the_chosen_runs_with_time_and_moving_only(tmp_path: Path) -> None:
    # Run 1: 250 m in 100 s, all moving; run 2 the same without its moving flags (fetched without `moving`);
    # run 3 a ride the filter leaves out.
    readings = [(activity, sport, seq, float(seq), 25.0 * seq, 10.0 + seq, None if activity == 2 else True)
                for activity, sport in ((1, "Run"), (2, "Run"), (3, "Ride")) for seq in range(11)]
    columns = ["activity_id", "sport_type", "seq", "time", "distance", "altitude", "moving"]
    table = pa.table({name: [r[i] for r in readings] for i, name in enumerate(columns)})
    table = table.append_column("start_date", pa.array([JAN] * len(readings), pa.timestamp("us", tz="UTC")))
    table = table.append_column("athlete_id", pa.array([9] * len(readings), pa.int64()))
    table = table.append_column("year", pa.array([2024] * len(readings), pa.int32()))
    pq.write_to_dataset(table, tmp_path / "streams", partitioning=["athlete_id", "year"],
                        partitioning_flavor="hive")
    condition = pc.field("sport_type").isin(["Run"])
    rows = read_stream_rows(local_root(tmp_path), condition, {1, 2, 3})
    assert rows == {1: [(100.0, 4.0, 4.0), (100.0, 4.0, 4.0), (50.0, 2.0, 2.0)]}
    assert read_stream_rows(local_root(tmp_path), condition, {2}) == {}
    assert read_stream_rows(local_root(tmp_path / "no-parquet"), condition, {1}) == {}
