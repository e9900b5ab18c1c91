"""Benchmark: `bulkfetch report` against the compaction of the same demo data (issue 15: under 1.5x).

    python bench/report.py                   # the demo's default history (300 activities)
    python bench/report.py --activities 60   # smoke run

It runs `bulkfetch demo` once into a temporary folder, then times as whole processes (interpreter start
and imports counted for both), interleaved so that a busy machine slows both alike, best of --repeat:
`bulkfetch compact --rebuild` (every partition written again from raw) and `bulkfetch report` (reading
the splits, the four figures, the HTML and the PNG files), both with the config the demo prints.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bulkfetch.demo import REPORT_CONFIG_NAME

GOAL_RATIO = 1.5


def _seconds(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bulkfetch", *args], check=True, capture_output=True)
    return time.perf_counter() - start


def measure(activities: int, repeat: int) -> tuple[float, float]:
    """Best wall seconds of (compaction, report) over the demo's data."""
    with tempfile.TemporaryDirectory() as folder:
        data_dir = Path(folder) / "demo-data"
        subprocess.run([sys.executable, "-m", "bulkfetch", "-q", "demo", "--activities", str(activities),
                        "--data-dir", str(data_dir)], check=True, capture_output=True)
        config = ["--config", str(data_dir / REPORT_CONFIG_NAME)]
        compact, report = [], []
        for _ in range(repeat):
            compact.append(_seconds(*config, "compact", "--rebuild"))
            report.append(_seconds(*config, "report", "--out", str(data_dir / "report.html")))
    return min(compact), min(report)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--activities", type=int, default=300, help="the demo's history (default 300)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, the best kept (default 3)")
    args = parser.parse_args()
    compact_s, report_s = measure(args.activities, args.repeat)
    print(f"demo of {args.activities} activities: compact --rebuild {compact_s:.2f} s, report {report_s:.2f} s: "
          f"{report_s / compact_s:.2f}x (goal under {GOAL_RATIO}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
