"""Benchmark: device-file decoding speed, records per CPU second, on the real fixture files.

    python bench/decode.py            # each file decoded 7 times, the best time counts
    python bench/decode.py --smoke    # once each (the test suite runs this)

For every file in tests/fixtures_files: `bulkfetch.activity_files.decode_file` (bytes in, Track out),
and for the FIT files also Garmin's FIT SDK alone with its default options (what decoding costs
without the options `bulkfetch.fit_decode` picks). The import's budget (3,000 one-hour 1 Hz files,
about 11 M records, decoded and stored in 10 minutes on 2 cores) leaves decoding about 30,000
records/s per core. Exit status 1 when decode_file reaches less on edge500-ride.fit (not with --smoke,
whose single run is noise on a shared machine).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from garmin_fit_sdk import Decoder, Stream  # noqa: E402 - after the path fix, so the script runs from anywhere

from bulkfetch.activity_files import decode_file  # noqa: E402

FILES = REPO / "tests" / "fixtures_files"
TARGET_FILE = "edge500-ride.fit"
TARGET_RECORDS_PER_S = 30_000


def best_seconds(work: Callable[[], object], repeats: int) -> float:
    """The least CPU time of `repeats` runs: per core, and not inflated by other processes on the machine
    (wall time is, when they outnumber the cores)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best


def sdk_defaults(data: bytes) -> None:
    Decoder(Stream.from_byte_array(bytearray(data))).read()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="decode each file once")
    args = parser.parse_args(argv)
    repeats = 1 if args.smoke else 7
    print(f"Python {platform.python_version()} on {platform.machine()}, best of {repeats}")
    print(f"{'file':<22}{'status':>11}{'records':>9}{'decode_file rec/s':>19}{'SDK defaults rec/s':>20}")
    target_rate = 0.0
    for path in sorted(p for p in FILES.iterdir() if p.suffix not in (".md", ".csv")):
        data = path.read_bytes()
        track = decode_file(data, path.name)
        rate = track.records / best_seconds(lambda data=data, name=path.name: decode_file(data, name), repeats)
        baseline = ""
        if track.format == "fit" and not track.gzipped and track.status == "ok":
            baseline = f"{track.records / best_seconds(lambda data=data: sdk_defaults(data), repeats):,.0f}"
        print(f"{path.name:<22}{track.status:>11}{track.records:>9,}{rate:>19,.0f}{baseline:>20}")
        if path.name == TARGET_FILE:
            target_rate = rate
    verdict = "met" if target_rate >= TARGET_RECORDS_PER_S else "MISSED"
    print(f"target: {TARGET_FILE} at >= {TARGET_RECORDS_PER_S:,} records/s on one core: {verdict}")
    return 0 if args.smoke or target_rate >= TARGET_RECORDS_PER_S else 1


if __name__ == "__main__":
    sys.exit(main())
