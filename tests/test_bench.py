"""Benchmarks cannot rot: a smoke run of each (seconds), the optimum's model, the scripts run standalone."""

from __future__ import annotations

import importlib
import math
import re
import subprocess
import sys

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import compact as bench_compact
from bench import decode as bench_decode
from bench import derived_splits as bench_derived_splits
from bench import fairness as bench_fairness
from bench import quota as bench_quota
from bench import report as bench_report
from bench import throughput as bench_throughput
from bulkfetch.simulator import RequestRecord
from tests.conftest import REPO, cli_env

bench_import = importlib.import_module("bench.import")  # `import` is a keyword: no `from bench import import`


# -- the optimum ------------------------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(requests=st.integers(0, 600), start=st.floats(0, 400, allow_nan=False),
       short=st.integers(1, 30), short_s=st.integers(1, 5), per_day=st.integers(1, 12), daily=st.integers(1, 200))
def test_optimum_without_others_is_the_library_model(requests, start, short, short_s, per_day, daily):
    limits = bench_quota.Limits(short, short_s, daily, short_s * per_day)
    assert bench_quota.optimal_finish_s(requests, start, limits) == bench_quota.library_optimum_s(requests, start,
                                                                                                   limits)


def test_optimum_charges_the_other_process_in_each_window_used():
    limits = bench_quota.Limits(short=20, short_window_s=2, daily=100, daily_window_s=20)
    # From a day's start: 5 windows of 15 fill the day (5 * (15 + 5) = 100), so 75 a day.
    assert bench_quota.optimal_finish_s(75, 0.0, limits, 5) == 8.0
    assert bench_quota.optimal_finish_s(76, 0.0, limits, 5) == 20.0
    assert bench_quota.optimal_finish_s(76, 0.0, limits) == 6.0
    with pytest.raises(ValueError):
        bench_quota.optimal_finish_s(1, 0.0, limits, 20)


def test_needed_requests_counts_the_last_short_or_empty_page():
    assert bench_quota.needed_requests(300) == 2 + 300
    assert bench_quota.needed_requests(400) == 3 + 400
    assert bench_quota.needed_requests(20) == 1 + 20


# -- the fairness conditions, from a request log -----------------------------------------------------------------
def record(window: int, athlete_id: int, path: str = "/api/v3/activities/1", status: int = 200) -> RequestRecord:
    return RequestRecord(time=float(window), method="GET", path=path, query={}, status=status, counted=True,
                         short_window=window, daily_window=0, authorization=None, athlete_id=athlete_id)


def test_worst_share_counts_the_athletes_with_work_left_after_the_window():
    log = ([record(10, 1)] * 5 + [record(10, 2)] * 2 + [record(10, 3)] * 3  # 3 finishes in window 10
           + [record(11, 1)] * 4 + [record(11, 2)] * 4 + [record(12, 1)])
    worst = bench_fairness.worst_share(log)
    # window 10: athletes 1 and 2 have work left, 7 requests between them: floor(7/2) - 1 = 2, athlete 2 got 2
    assert worst is not None and (worst.window, worst.athlete_id, worst.got, worst.floor) == (0, 2, 2, 2)
    assert worst.margin == 0 and worst.counts == {1: 5, 2: 2, 3: 3}
    # window 11 has one athlete with work left (2 finished in it): nothing to share, never the worst
    waiting = log + [record(11, 4), record(13, 4)]  # athlete 4 has work from window 10 on and sent nothing then
    worst = bench_fairness.worst_share(waiting)
    assert worst is not None and (worst.window, worst.athlete_id, worst.got, worst.floor) == (0, 4, 0, 1)
    assert worst.margin == -1
    assert bench_fairness.worst_share([record(10, 1), record(11, 1)]) is None
    # a check for new uploads windows later (a list request) is not work left: athlete 3 is done in window 10
    head_check = log + [record(14, 3, path="/api/v3/athlete/activities")]
    assert bench_fairness.worst_share(head_check) == bench_fairness.worst_share(log)


def test_windows_until_done_counts_from_the_first_requests_window():
    detail = bench_fairness.DETAIL_PATH.format
    log = [record(10, 1), record(10, 1, detail(7)), record(11, 2), record(12, 1, detail(8)),
           record(13, 1, detail(9), status=429), record(14, 1, detail(9))]
    assert bench_fairness.windows_until_done(log, [7]) == 1
    assert bench_fairness.windows_until_done(log, [8, 7]) == 3
    assert bench_fairness.windows_until_done(log, [9]) == 5  # the 429 did not do it
    assert bench_fairness.windows_until_done(log, [7, 99]) == 6  # never answered: later than the run
    assert bench_fairness.newest_window_limit(100) == 3 and bench_fairness.newest_window_limit(20) == 9


def test_fairness_bench_refuses_sizes_not_biggest_first(capsys):
    with pytest.raises(SystemExit):
        bench_fairness.parse_args(["--athletes", "30,200,1000"])
    assert "biggest first" in capsys.readouterr().err


# -- the compaction bench's timing method ------------------------------------------------------------------------
def test_compact_bench_interleaves_the_contenders_in_rotating_order():
    log: list[str] = []
    contenders = [bench_compact.Contender(name, lambda name=name: log.append(name)) for name in "abc"]
    contenders.append(bench_compact.Contender("d", lambda: log.append("d"), lambda: log.append("clear d"), repeat=1))
    runs = bench_compact.interleaved(contenders, 3, lambda: log.append("warm"))
    assert log == ["warm", "a", "b", "c", "clear d", "d", "warm", "b", "c", "a", "warm", "c", "a", "b"]
    assert [len(runs[name]) for name in "abcd"] == [3, 3, 3, 1]


def test_compact_bench_ratio_is_the_median_of_per_repeat_ratios():
    timing = bench_compact.Timing
    floor = [timing(1.0, 1.0), timing(3.0, 1.0), timing(2.0, 5.0)]
    runs = [timing(2.0, 2.0), timing(3.0, 1.0), timing(10.0, 10.0)]  # 2 x, 1 x, 5 x the floor of the same repeat
    ratio = bench_compact.Ratio.of(runs, floor)
    assert (ratio.wall, ratio.wall_low, ratio.wall_high, ratio.cpu) == (2.0, 1.0, 5.0, 2.0)
    assert (ratio.best_wall, ratio.best_cpu) == (2.0, 1.0)  # best over best: not the same figure
    # a contender in the first repeats only is compared with the floor of those repeats
    first = bench_compact.Ratio.of([timing(3.0, 3.0), timing(6.0, 3.0)], floor)
    assert (first.wall, first.best_wall) == (2.5, 3.0)  # 3 x and 2 x; the best 3 s over those floors' best 1 s


# -- smoke runs -------------------------------------------------------------------------------------------------
def test_quota_smoke():
    results = bench_quota.run(bench_quota.parse_args(["--smoke"]))
    table = bench_quota.render(results)
    assert "| case" in table and "| alone" in table and "| other process 3/window" in table
    idle = {result.name: result.idle for result in results}
    assert "| alone, compacting in waits" in table and "idle compactions" in table
    assert idle["alone"] is None and idle["other process 3/window"] is None
    compacted = idle["alone, compacting in waits"]
    assert compacted is not None and compacted.finished >= 1
    assert 0 < compacted.details_in_parquet <= 20  # compacted during the waits, before the run ended
    for result in results:
        assert result.met, table
        assert result.rejected_late == 0
        assert result.sent == result.needed + result.rejected
        assert result.peak_short <= result.limits.short
        assert 0 < result.optimum_s and math.isfinite(result.ratio)
        # never earlier than a perfect scheduler (a millisecond of slack: arrival vs send time)
        assert result.wall_s >= result.optimum_s - 0.001


def test_fairness_smoke():
    verdict = bench_fairness.run(bench_fairness.parse_args(["--smoke"]))
    table = bench_fairness.render(verdict)
    assert "| baseline: one athlete after another" in table and "| fair: one run for all" in table, table
    assert verdict.met, table
    fair, baseline = verdict.fair, verdict.baseline
    assert fair.sent == baseline.sent == verdict.bench.needed and fair.rejected == baseline.rejected == 0
    assert fair.worst_share is not None and fair.worst_share.margin >= 0
    # the measure tells the two apart: one after another, the athletes waiting their turn get nothing
    assert baseline.worst_share is not None and baseline.worst_share.margin < 0 and baseline.worst_share.got == 0
    assert fair.newest_windows == 1 < baseline.newest_windows
    assert fair.windows == baseline.windows and 0 < verdict.ratio <= verdict.ratio_target


def test_throughput_smoke():
    rows, profile = bench_throughput.run(bench_throughput.parse_args(["--smoke", "--profile"]))
    assert [row.latency_s for row in rows] == [0.05, 0.0]
    slow = rows[0]
    assert slow.bulkfetch_per_s > slow.baseline_per_s
    assert 0 < slow.of_bound < 1.2 and math.isfinite(slow.of_floor)
    assert all(math.isfinite(row.speedup) and row.floor_per_s > 0 for row in rows)
    table = bench_throughput.render(rows)
    assert "bulkfetch details/s" in table and "50 ms" in table and "0 ms" in table
    assert profile is not None and "file writes" in bench_throughput.profile_report(profile)


def test_decode_smoke(capsys):
    assert bench_decode.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    rows = {fields[0]: fields[1:] for fields in map(str.split, out.splitlines()) if fields}
    assert rows["edge500-ride.fit"][:2] == ["ok", "10,686"] and rows["truncated.fit"][:2] == ["truncated", "14"]
    assert "target: edge500-ride.fit" in out


def test_derived_splits_smoke(capsys):
    assert bench_derived_splits.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    assert "(FIT, TCX): met" in out
    found, cropped = map(int, re.search(r"(\d+) of (\d+) files found stale", out).groups())
    assert found == cropped > 0 and "uncropped files found stale: 0" in out
    rows = {fields[0] + " " + fields[1]: fields[2:] for fields in map(str.split, out.splitlines()) if len(fields) > 8}
    assert int(rows["splits fit"][0]) > 0 and int(rows["laps fit"][0]) > 0
    # against the true crossings: a split ends at the first 1 Hz record past its boundary, within a second
    count, mean_late_s, max_late_s = rows["truth fit"][:3]
    assert int(count) > 0 and 0 < float(mean_late_s) <= float(max_late_s) <= 1.0
    assert "edge500-ride.fit" in out and "records/s" in out


def test_report_smoke(capsys):
    assert bench_report.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"demo of {bench_report.SMOKE_ACTIVITIES} activities, 1 repeats")
    compact_wall_s = 0.0
    for kind in ("wall", "CPU"):
        compact_s, report_s, ratio, median = map(float, re.search(
            rf"{kind}: +compact --rebuild ([\d.]+) s, report ([\d.]+) s \(best of each\): ([\d.]+)x; "
            rf"median per repeat ([\d.]+)x", out).groups())
        # The ratio of the unrounded times: the printed ones are rounded to 10 ms. One repeat: its median is it.
        assert compact_s > 0 and report_s > 0 and ratio == pytest.approx(report_s / compact_s, rel=0.05) == median
        compact_wall_s = compact_wall_s or compact_s
    floor_s, floor_ratio = map(float, re.search(
        r"floor: a Python importing matplotlib and saving one empty plot ([\d.]+) s \(best\): ([\d.]+)x", out).groups())
    assert floor_s > 0 and floor_ratio == pytest.approx(floor_s / compact_wall_s, rel=0.05)
    figures_s, figures_ratio = map(float, re.search(
        r"floor: a Python importing matplotlib and drawing the report's four figures in two processes ([\d.]+) s "
        r"\(best\): ([\d.]+)x", out).groups())
    assert figures_s > 0 and figures_ratio == pytest.approx(figures_s / compact_wall_s, rel=0.05)
    assert re.search(r"^report under 1.5x the compaction \(wall, median per repeat\): (PASS|FAIL)$", out, re.M)


def test_report_median_ratio_pairs_each_repeat() -> None:
    def timing(wall_s: float) -> bench_report.Timing:
        return bench_report.Timing(wall_s, wall_s, True)

    reports, compacts = [timing(2.0), timing(9.0), timing(1.0)], [timing(1.0), timing(3.0), timing(1.0)]
    # Per repeat 2.0, 3.0 and 1.0: the median is 2.0 (the best of each, 1.0 / 1.0, would say 1.0).
    assert bench_report.median_ratio(reports, compacts, lambda t: t.wall_s) == 2.0


def test_import_smoke(tmp_path):
    stale = bench_import.cache_entry(tmp_path, bench_import.SMOKE, "0" * 16)
    stale.write_bytes(b"an export of an older simulator source")
    result = bench_import.run(bench_import.parse_args(["--smoke", "--cache-dir", str(tmp_path)]))
    export = result.export
    assert export.note.startswith("wrote") and export.path.parent == tmp_path and not stale.exists()
    sidecar = orjson.loads(export.path.with_name(export.path.name + ".sim.json").read_bytes())
    # every file decoded once, the corrupt one partly: fewer records than the export wrote, not many fewer
    assert result.files == export.files == len(sidecar["files"]) > 20
    assert 0.9 * sidecar["records"] < result.records < sidecar["records"]
    assert 0 < result.decode_s < result.first.wall_s and result.sdk.records > 0
    tree = result.first.tree  # the command, its forkserver and decoding workers, seen in /proc
    roles = tree.by_role()
    assert roles["command"][0] == 1 and roles["forkserver"][0] == 1
    count, cpu_s, peak_mb = roles["worker"]
    assert count >= 1 and cpu_s > 0 and 0 < peak_mb <= tree.worker_mb
    assert tree.command_mb > 0 and result.first.cpu_s >= tree.cpu_s > cpu_s
    table = bench_import.render(result)
    assert "| files | records | import s (wall)" in table and f"| {result.files:,} | {result.records:,} |" in table
    # the second time the export comes from the cache, unchanged
    written = export.path.stat().st_mtime_ns
    cached = bench_import.cached_export(tmp_path, bench_import.SMOKE, regenerate=False, workers=1)
    assert cached.note.startswith("cached") and export.path.stat().st_mtime_ns == written
    assert (cached.files, cached.athlete_id) == (export.files, export.athlete_id)


def test_import_cache_key_follows_the_simulators_imports():
    sources = {path.relative_to(REPO).as_posix() for path in
               bench_import._source_closure(REPO / "bulkfetch" / "simulator" / "export.py")}
    assert {"bulkfetch/simulator/devicefiles.py", "bulkfetch/simulator/motion.py",
            "bulkfetch/simulator/export_csv.py"} <= sources
    assert "bulkfetch/derive.py" not in sources and "bulkfetch/simulator/app.py" not in sources


@pytest.mark.parametrize("script", ["quota.py", "throughput.py", "fairness.py", "decode.py", "derived_splits.py",
                                    "import.py", "report.py", "arrow_details.py"])
def test_scripts_run_standalone(script):
    """From a fresh clone: `python bench/<script>` finds the package without an install or PYTHONPATH."""
    env = {k: v for k, v in cli_env().items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, str(REPO / "bench" / script), "--help"], cwd=REPO / "bench", env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--smoke" in result.stdout

