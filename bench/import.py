"""Benchmark: `bulkfetch import` of an export folder of copies of real device files.

    python bench/import.py               # 400 files: fenix2 runs (2,809 records) and edge500 rides (10,686)
    python bench/import.py --files 3000  # a big history's count of files
    python bench/import.py --smoke       # 6 files (the test suite runs this)

The export is an unpacked folder with an English activities.csv and every file gzipped, as Strava stores
most of them (`activities/<id>.fit.gz`). The import runs as a user runs it, a child process with its
workers, into a fresh data_dir; then the same import again (it must decode nothing). Reported: files/s
and records/s of the decoding (the import's own log line), the wall time of each run, and the peak RSS
of the command and of its biggest worker (memory must not grow with the number of files).

Issue 13's bound, 3,000 one-hour 1 Hz activities (about 11 M records) in 10 minutes on 2 cores, is
18,300 records/s; the last column says whether this run's rate meets it.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FILES = REPO / "tests" / "fixtures_files"
SOURCES = ("fenix2-run.fit", "edge500-ride.fit")
BOUND_RECORDS_PER_S = 11_000_000 / 600
HEADER = ("Activity ID,Activity Date,Activity Name,Activity Type,Elapsed Time,Distance,Filename,Elapsed Time,"
          "Moving Time,Distance")


def write_export(folder: Path, files: int) -> None:
    """`files` activities, the two real files in turn, gzipped as the export keeps them."""
    (folder / "activities").mkdir(parents=True)
    payloads = [gzip.compress((FILES / name).read_bytes(), mtime=0) for name in SOURCES]
    rows = [HEADER]
    for activity_id in range(1, files + 1):
        name = f"activities/{activity_id}.fit.gz"
        (folder / name).write_bytes(payloads[activity_id % 2])
        rows.append(f'{activity_id},"May 9, 2023, 10:09:29 AM",Activity {activity_id},Run,3600,10.00,{name},'
                    "3600.0,3500.0,10000.0")
    (folder / "activities.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (folder / "profile.csv").write_text("Athlete ID,Email Address\n42,bench@example.com\n", encoding="utf-8")


def run_import(config: Path, export: Path) -> tuple[float, str, str]:
    started = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(REPO), "CI": "true"}  # CI: plain progress lines, no live bar
    result = subprocess.run([sys.executable, "-m", "bulkfetch", "--config", str(config), "import", str(export)],
                            capture_output=True, text=True, cwd=REPO, env=env)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"bulkfetch import failed ({result.returncode}): {result.stderr}")
    return seconds, result.stdout.strip().splitlines()[-1], result.stderr


def peak_rss_mb() -> float:
    """The biggest resident set of any process this one waited for, workers included (Linux: KB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--smoke", action="store_true", help="6 files, checked, no table")
    args = parser.parse_args(argv)
    files = 6 if args.smoke else args.files
    with tempfile.TemporaryDirectory(prefix="bulkfetch-import-bench-") as temp:
        root = Path(temp)
        write_export(root / "export", files)
        config = root / "config.toml"
        config.write_text(f'[storage]\ndata_dir = "{root / "data"}"\n', encoding="utf-8")
        first_s, summary, log = run_import(config, root / "export")
        peak = peak_rss_mb()
        again_s, again, _ = run_import(config, root / "export")
    rate = re.search(r"decoded ([\d,]+) files \(([\d,]+) records\) in [\d.]+ s: ([\d,.]+) files/s, ([\d,]+) records/s",
                     log)
    if rate is None or f"{files:,} imported before" not in again:
        raise SystemExit(f"unexpected output: {summary!r} / {again!r}\n{log}")
    records_per_s = float(rate.group(4).replace(",", ""))
    if args.smoke:
        print(f"smoke: {summary}; {rate.group(0)}; again: {again}")
        return 0
    print("| files | records | import s | files/s | records/s | rerun s | peak RSS MB (largest process) | "
          "bound 18,300 records/s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    print(f"| {files:,} | {rate.group(2)} | {first_s:.1f} | {rate.group(3)} | {rate.group(4)} | {again_s:.1f} | "
          f"{peak:.0f} | {'met' if records_per_s >= BOUND_RECORDS_PER_S else 'not met'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
