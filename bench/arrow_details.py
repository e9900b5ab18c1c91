"""Benchmark: the detail tables of a store's chunks by `schema.build_tables` over orjson-parsed details
against `arrow_details.build_detail_tables` (Arrow's JSON reader), tables only, nothing written.

    python bench/arrow_details.py                  # 2,000 real-size details (bench/compact.py's store)
    python bench/arrow_details.py --smoke          # 50 details, one round (the test suite runs it)

Both build from the same bytes (read once, before timing) chunk by chunk as compaction does, the two
alternating --rounds times; wall and CPU time (Arrow's reader threads included), best and spread, and the
ratio of the bests. The tables are checked equal first.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.compact import write_synthetic_store  # noqa: E402 - after the path fix, so it runs from anywhere
from bulkfetch.arrow_details import RawActivity, build_detail_tables, parse_detail  # noqa: E402
from bulkfetch.compact import CHUNK_ACTIVITIES, SpilledSummaries, partition_entries  # noqa: E402
from bulkfetch.schema import build_tables  # noqa: E402


def chunks_of(data_dir: Path, count: int) -> list[list[RawActivity]]:
    """The store's activities as compaction chunks them (by year, CHUNK_ACTIVITIES at most), with bytes."""
    store = write_synthetic_store(data_dir, count)
    chunks = []
    with closing(SpilledSummaries(store.state_dir)) as summaries:
        for entries in partition_entries(store, summaries).values():
            entries = summaries.loaded(entries)
            for start in range(0, len(entries), CHUNK_ACTIVITIES):
                chunks.append([(e.activity_id, e.summary, e.detail_path.read_bytes() if e.detail_path else None)
                               for e in entries[start:start + CHUNK_ACTIVITIES]])
    return chunks


def by_python(chunks: list[list[RawActivity]]) -> None:
    for chunk in chunks:
        build_tables([(activity_id, summary, parse_detail(raw)) for activity_id, summary, raw in chunk])


def by_reader(chunks: list[list[RawActivity]]) -> None:
    for chunk in chunks:
        build_detail_tables(chunk)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--activities", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="50 details, one round")
    args = parser.parse_args()
    count, rounds = (50, 1) if args.smoke else (args.activities, args.rounds)
    with tempfile.TemporaryDirectory() as folder:
        chunks = chunks_of(Path(folder), count)
    for chunk in chunks:
        python = build_tables([(activity_id, summary, parse_detail(raw)) for activity_id, summary, raw in chunk])
        reader = build_detail_tables(chunk)
        assert all(python[name].equals(reader[name]) for name in python), "the tables differ"
    wall: dict[str, list[float]] = {"build_tables": [], "arrow_details": []}
    cpu: dict[str, list[float]] = {"build_tables": [], "arrow_details": []}
    gc.disable()  # as compaction builds them (compact._gc_paused)
    for _ in range(rounds):
        for name, run in (("build_tables", by_python), ("arrow_details", by_reader)):
            start, start_cpu = time.perf_counter(), time.process_time()
            run(chunks)
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    print(f"{sum(map(len, chunks)):,} activities in {len(chunks)} chunks, {rounds} round(s), alternating")
    for name in wall:
        print(f"{name:14} wall best {min(wall[name]):.3f} s ({min(wall[name]):.3f}-{max(wall[name]):.3f}), "
              f"CPU best {min(cpu[name]):.3f} s ({min(cpu[name]):.3f}-{max(cpu[name]):.3f})")
    print(f"build_tables / arrow_details, bests: wall {min(wall['build_tables']) / min(wall['arrow_details']):.2f} x, "
          f"CPU {min(cpu['build_tables']) / min(cpu['arrow_details']):.2f} x")


if __name__ == "__main__":
    main()
