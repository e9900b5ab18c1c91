"""Prototype timing: every year's detail chunks through `schema.build_tables` (orjson) against
`arrow_details.build_detail_tables` (Arrow's JSON reader), tables only, no writing; alternating rounds.

    python bench/arrow_details.py [DATA_DIR] [--rounds 5]

DATA_DIR is a store the bench wrote (default: /work/benchstore/data); it is only read.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bulkfetch.arrow_details import build_detail_tables, parse_detail  # noqa: E402
from bulkfetch.compact import CHUNK_ACTIVITIES, partition_entries  # noqa: E402
from bulkfetch.schema import build_tables  # noqa: E402
from bulkfetch.store import RawStore  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir", nargs="?", default="/work/benchstore/data")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    roots = list(Path(args.data_dir, "athletes").iterdir())
    by_year = partition_entries(RawStore(roots[0]))
    chunks = [entries[i:i + CHUNK_ACTIVITIES] for entries in by_year.values()
              for i in range(0, len(entries), CHUNK_ACTIVITIES)]
    print(f"{len(by_year)} years: {sum(map(len, chunks))} activities, {len(chunks)} chunks")

    def old() -> None:
        for chunk in chunks:
            build_tables([(e.activity_id, e.summary, parse_detail(e.detail_path.read_bytes())) for e in chunk])

    def new() -> None:
        for chunk in chunks:
            build_detail_tables([(e.activity_id, e.summary, e.detail_path.read_bytes()) for e in chunk])

    for chunk in chunks:  # equal before timed
        a = build_tables([(e.activity_id, e.summary, parse_detail(e.detail_path.read_bytes())) for e in chunk])
        b = build_detail_tables([(e.activity_id, e.summary, e.detail_path.read_bytes()) for e in chunk])
        for name in a:
            assert a[name].equals(b[name]), name
    times: dict[str, list[float]] = {"old": [], "new": []}
    cpu: dict[str, list[float]] = {"old": [], "new": []}
    gc.disable()  # as compaction runs them (compact._gc_paused)
    for _ in range(args.rounds):
        for name, run in (("old", old), ("new", new)):
            start, start_cpu = time.perf_counter(), time.process_time()
            run()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    for name in times:
        print(f"{name}: wall best {min(times[name]):.3f} s (spread {min(times[name]):.3f}-{max(times[name]):.3f}), "
              f"CPU best {min(cpu[name]):.3f} s (spread {min(cpu[name]):.3f}-{max(cpu[name]):.3f})")
    print(f"old/new, best of each: wall {min(times['old']) / min(times['new']):.2f} x, "
          f"CPU {min(cpu['old']) / min(cpu['new']):.2f} x")


if __name__ == "__main__":
    main()
