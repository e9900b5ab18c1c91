"""Benchmark: `bulkfetch import` of an account export at issue 13's scale, against Garmin's FIT SDK.

    python bench/import.py                     # 3,000 activities of exactly one hour at 1 Hz (10.3 M records)
    python bench/import.py --activities 300    # fewer; the bound scales with the records
    python bench/import.py --regenerate        # write the cached export again
    python bench/import.py --real-files 400    # copies of two real device files instead of the simulator's
    python bench/import.py --smoke             # a few dozen short activities (the test suite runs this)

The export is the simulator's (`bulkfetch.simulator.export.write_export`, as `bulkfetch simulate --export`
writes it: mostly .fit.gz, some .fit, .gpx and .tcx, one corrupt file, cropped recordings). Writing its 10.3 M
records took 27 minutes on 2 shared cores, so it is written once and cached under $XDG_CACHE_HOME/bulkfetch-bench/
(default ~/.cache), named by its parameters and a digest of the simulator's source; an entry of an older
source is deleted when its successor is written.

The import runs as a user runs it: `bulkfetch --config C import ZIP --athlete ID` in a child process into
a fresh data_dir (a config without credentials), timed whole: decoding with its workers, keeping the
files verbatim, and the compaction it ends with. Then the same command again, which must decode nothing.
While each runs, its processes are sampled from /proc (Linux) for their CPU time and peak RSS (the
command's own, and the biggest of its workers: decoders, compaction worker, forkserver).

Baseline, in the same run (the machine is shared, so ratios mean more than seconds): decoding a sample
of the export's FIT files with the FIT SDK's default options, in this process, per CPU second: what a
plain SDK loop gets from one core. Issue 13's bound: 3,000 one-hour 1 Hz activities in 600 s on 2
cores; other sizes are held to the same records per second. Exit status 1 when the import misses it
(not with --smoke).
"""

from __future__ import annotations

import argparse
import ast
import gzip
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import orjson  # noqa: E402 - after the path fix, so the script runs from anywhere
from garmin_fit_sdk import Decoder, Stream  # noqa: E402

from bulkfetch.simulator.export import SIDECAR_SUFFIX, write_export  # noqa: E402
from bulkfetch.simulator.history import History  # noqa: E402

PACKAGE = REPO / "bulkfetch"
FILES = REPO / "tests" / "fixtures_files"
REAL_SOURCES = ("fenix2-run.fit", "edge500-ride.fit")
NOW_S = 1_767_225_600  # 2026-01-01T00:00:00Z: the same history, hence the same cache entry, whatever the day
SEED = 13
ATHLETE_ID = 26462176
BOUND_S, BOUND_ACTIVITIES, BOUND_DURATION_S = 600.0, 3000, 3600  # issue 13: 3,000 one-hour activities in 10 min
BOUND_RECORDS_PER_S = BOUND_ACTIVITIES * BOUND_DURATION_S / BOUND_S
SDK_SAMPLE_FILES = 12
SAMPLE_EVERY_S = 0.05  # /proc sampling: often enough to see the smoke run's short-lived decoding workers
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
RATE_LINE = re.compile(r"decoded ([\d,]+) files \(([\d,]+) records\) in ([\d.]+) s")


@dataclass(frozen=True)
class Scale:
    """The simulated export's parameters: they name its cache entry."""

    activities: int
    duration_s: int
    seed: int = SEED


SMOKE = Scale(activities=30, duration_s=120)


@dataclass(frozen=True)
class BenchExport:
    """An export to import, and what the benchmark needs to know about it."""

    path: Path
    athlete_id: int
    files: int
    sdk_sample: list[bytes]  # plain FIT files for the baseline
    note: str  # where it came from, for the report


# ---------------------------------------------------------------- the simulated export, cached


def simulator_digest() -> str:
    """SHA-256 (16 hex digits) of every source file the export writer runs, found by following its
    `bulkfetch` imports, and of the FIT SDK's version (its Encoder writes the files)."""
    digest = hashlib.sha256(version("garmin-fit-sdk").encode())
    for path in sorted(_source_closure(PACKAGE / "simulator" / "export.py")):
        digest.update(path.relative_to(REPO).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _source_closure(start: Path) -> set[Path]:
    seen: set[Path] = set()
    pending = [start]
    while pending:  # bounded: each file of the package is visited once
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            pending += [found for name in _imported(node) if (found := _module_file(name)) is not None]
    return seen


def _imported(node: ast.AST) -> list[str]:
    """The modules an import statement loads: `from a.b import c` loads a.b.c if that is a module, else a.b
    (only the modules whose code runs in the writer, not every package __init__ on the way)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module:
        submodules = [f"{node.module}.{alias.name}" for alias in node.names]
        return [name for name in submodules if _module_file(name) is not None] or [node.module]
    return []


def _module_file(name: str) -> Path | None:
    """The file of a module of the bulkfetch package; None for anything else."""
    if name != "bulkfetch" and not name.startswith("bulkfetch."):
        return None
    base = REPO.joinpath(*name.split("."))
    return next((path for path in (base.with_suffix(".py"), base / "__init__.py") if path.is_file()), None)


def cache_entry(cache_dir: Path, scale: Scale, digest: str) -> Path:
    return cache_dir / f"export-{scale.activities}x{scale.duration_s}s-seed{scale.seed}-{digest}.zip"


def cached_export(cache_dir: Path, scale: Scale, *, regenerate: bool, workers: int) -> BenchExport:
    """The cached export of `scale`, written first when it is missing, incomplete or `regenerate`."""
    digest = simulator_digest()
    path = cache_entry(cache_dir, scale, digest)
    sidecar = None if regenerate else _sidecar(path)
    note = f"cached {path}"
    if sidecar is None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        history = History.build(seed=scale.seed, count=scale.activities, athlete_id=ATHLETE_ID, now_s=NOW_S,
                                duration_s=scale.duration_s)
        written = write_export(path, history, language="en", workers=workers)
        _drop_stale(cache_dir, digest)
        note = f"wrote {path} in {written.seconds:.0f} s ({written.records:,} records)"
        sidecar = _sidecar(path)
        assert sidecar is not None  # write_export wrote it
    return _described(path, sidecar, note)


def _sidecar(path: Path) -> dict[str, Any] | None:
    """The entry's sidecar, which write_export writes after the zip is complete; None when it is missing
    or was cut short (a killed write): the entry is written again."""
    try:
        return orjson.loads(path.with_name(path.name + SIDECAR_SUFFIX).read_bytes()) if path.is_file() else None
    except (OSError, orjson.JSONDecodeError):
        return None


def _drop_stale(cache_dir: Path, digest: str) -> None:
    """Entries of an older simulator source: the same parameters would not write the same files."""
    for stale in cache_dir.glob("export-*.zip*"):
        if f"-{digest}.zip" not in stale.name:
            stale.unlink(missing_ok=True)


def _described(path: Path, sidecar: dict[str, Any], note: str) -> BenchExport:
    files: dict[str, str] = sidecar["files"]
    clean_fit = [member for member in files.values()
                 if member.endswith((".fit", ".fit.gz")) and member != sidecar["corrupt"]
                 and member not in sidecar["gzip_named_fit"]]
    with zipfile.ZipFile(path) as archive:
        sample = [_plain(archive.read(member)) for member in clean_fit[:SDK_SAMPLE_FILES]]
    return BenchExport(path, sidecar["athlete_id"], len(files), sample, note)


def _plain(data: bytes) -> bytes:
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


# ---------------------------------------------------------------- copies of real device files


REAL_HEADER = ("Activity ID,Activity Date,Activity Name,Activity Type,Elapsed Time,Distance,Filename,Elapsed Time,"
               "Moving Time,Distance")


def real_file_export(folder: Path, files: int) -> BenchExport:
    """An unpacked export of `files` activities, the two real files in turn, gzipped as Strava keeps most:
    real devices write more fields per record than the simulator's files."""
    (folder / "activities").mkdir(parents=True)
    sources = [(FILES / name).read_bytes() for name in REAL_SOURCES]
    payloads = [gzip.compress(data, mtime=0) for data in sources]
    rows = [REAL_HEADER]
    for activity_id in range(1, files + 1):
        name = f"activities/{activity_id}.fit.gz"
        (folder / name).write_bytes(payloads[activity_id % 2])
        rows.append(f'{activity_id},"May 9, 2023, 10:09:29 AM",Activity {activity_id},Run,3600,10.00,{name},'
                    "3600.0,3500.0,10000.0")
    (folder / "activities.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return BenchExport(folder, 42, files, sources * (SDK_SAMPLE_FILES // 2), f"{files:,} copies of {REAL_SOURCES}")


# ---------------------------------------------------------------- running the command, watching its processes


@dataclass
class Seen:
    """One process of a command's tree as /proc showed it last: its role, CPU seconds and peak RSS (VmHWM)."""

    role: str
    cpu_s: float = 0.0
    peak_kb: int = 0


@dataclass
class ProcessTree:
    """Every process of a command's tree, sampled from /proc while it runs."""

    root: int
    seen: dict[int, Seen] = field(default_factory=dict)

    def sample(self) -> None:
        tree = _descendants(self.root)
        for pid, parent in tree.items():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                status = Path(f"/proc/{pid}/status").read_text()
                if pid not in self.seen:
                    self.seen[pid] = Seen(self._role(pid, parent))
            except OSError:  # it ended between the listing and the read
                continue
            seen = self.seen[pid]
            seen.cpu_s = (int(stat[11]) + int(stat[12])) / CLOCK_TICKS  # utime, stime
            hwm = re.search(r"VmHWM:\s+(\d+) kB", status)
            seen.peak_kb = max(seen.peak_kb, int(hwm.group(1)) if hwm else 0)

    def _role(self, pid: int, parent: int) -> str:
        """'command'; 'forkserver' (the multiprocessing server the workers fork from: the import's decoding
        pool and the compaction's one worker share it, so a worker's command line cannot tell which it
        is); 'worker' (forked from it); 'resource tracker'."""
        if pid == self.root:
            return "command"
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"resource_tracker" in cmdline:
            return "resource tracker"
        if b"forkserver" in cmdline:
            return "worker" if self.seen.get(parent, Seen("")).role == "forkserver" else "forkserver"
        return cmdline.split(b"\0")[0].decode(errors="replace")

    @property
    def cpu_s(self) -> float:
        return sum(seen.cpu_s for seen in self.seen.values())

    @property
    def command_mb(self) -> float:
        return self.seen[self.root].peak_kb / 1024 if self.root in self.seen else 0.0

    @property
    def worker_mb(self) -> float:
        return max((seen.peak_kb for pid, seen in self.seen.items() if pid != self.root), default=0) / 1024

    def by_role(self) -> dict[str, tuple[int, float, float]]:
        """Per role: processes, CPU seconds, the biggest peak RSS in MB."""
        roles: dict[str, tuple[int, float, float]] = {}
        for seen in self.seen.values():
            count, cpu_s, peak_mb = roles.get(seen.role, (0, 0.0, 0.0))
            roles[seen.role] = (count + 1, cpu_s + seen.cpu_s, max(peak_mb, seen.peak_kb / 1024))
        return roles


def _descendants(root: int) -> dict[int, int]:
    """`root` and every process below it, each with its parent (read from /proc/<pid>/stat)."""
    parent_of: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                parent_of[int(entry.name)] = int(Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree = {root: parent_of.get(root, 0)}
    pending = [root]
    while pending:  # bounded: each pid is taken once, under its one parent
        pid = pending.pop()
        children = [child for child, parent in parent_of.items() if parent == pid]
        tree |= {child: pid for child in children}
        pending += children
    return tree


@dataclass(frozen=True)
class CommandRun:
    wall_s: float
    cpu_s: float  # the whole tree's, from /proc, or the waited-for total if that is more
    stdout: str
    stderr: str
    tree: ProcessTree


def run_import(config: Path, export: BenchExport) -> CommandRun:
    """`bulkfetch --config C import PATH --athlete ID`, a child process like a user's, sampled until it exits."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRAVA_", "BULKFETCH_"))}
    env |= {"PYTHONPATH": str(REPO), "CI": "true"}  # CI: plain progress lines, no live bar
    argv = [sys.executable, "-m", "bulkfetch", "--config", str(config), "import", str(export.path),
            "--athlete", str(export.athlete_id)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=REPO, env=env)
        tree = ProcessTree(child.pid)
        stop = threading.Event()
        sampler = threading.Thread(target=_sample_until, args=(tree, stop), daemon=True)
        sampler.start()
        _, status, usage = os.wait4(child.pid, 0)
        wall_s = time.perf_counter() - started
        stop.set()
        sampler.join()
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if child.returncode != 0:
        raise SystemExit(f"bulkfetch import failed ({child.returncode}): {stderr}")
    cpu_s = max(tree.cpu_s, usage.ru_utime + usage.ru_stime)
    return CommandRun(wall_s, cpu_s, stdout, stderr, tree)


def _sample_until(tree: ProcessTree, stop: threading.Event) -> None:
    while not stop.wait(SAMPLE_EVERY_S):
        tree.sample()


# ---------------------------------------------------------------- the baseline


@dataclass(frozen=True)
class SdkRate:
    files: int
    records: int
    cpu_s: float

    @property
    def records_per_s(self) -> float:
        return self.records / max(self.cpu_s, 1e-9)


def sdk_defaults(sample: list[bytes]) -> SdkRate:
    """Decode each file with the FIT SDK's default options (CRC check, scaling, type names, components),
    as a plain SDK loop would, timed by this process's CPU clock."""
    records = 0
    started = time.process_time()
    for data in sample:
        messages, _ = Decoder(Stream.from_byte_array(bytearray(data))).read()
        records += len(messages.get("record_mesgs", []))
    return SdkRate(len(sample), records, time.process_time() - started)


# ---------------------------------------------------------------- the run and its report


@dataclass(frozen=True)
class Result:
    export: BenchExport
    files: int
    records: int
    decode_s: float
    first: CommandRun
    again: CommandRun
    sdk: SdkRate
    load_before: float
    load_after: float

    @property
    def records_per_s(self) -> float:
        return self.records / self.first.wall_s

    @property
    def bound_s(self) -> float:
        return self.records / BOUND_RECORDS_PER_S

    @property
    def met(self) -> bool:
        return self.first.wall_s <= self.bound_s


def measure(export: BenchExport, work: Path) -> Result:
    config = work / "config.toml"
    config.write_text(f'[storage]\ndata_dir = "{work / "data"}"\n', encoding="utf-8")
    load_before = os.getloadavg()[0]
    sdk = sdk_defaults(export.sdk_sample)
    first = run_import(config, export)
    again = run_import(config, export)
    load_after = os.getloadavg()[0]
    rate = RATE_LINE.search(first.stderr)
    before = re.search(r"([\d,]+) imported before \(not decoded again\)", again.stdout)
    if rate is None or before is None or RATE_LINE.search(again.stderr):
        raise SystemExit(f"unexpected output:\n{first.stdout}{first.stderr}\n--- again:\n{again.stdout}{again.stderr}")
    files, records = (int(group.replace(",", "")) for group in rate.group(1, 2))
    if files != export.files or int(before.group(1).replace(",", "")) != files:
        raise SystemExit(f"{export.files:,} files in the export, {files:,} decoded, {before.group(1)} the rerun "
                         f"found imported:\n{first.stdout}{again.stdout}")
    return Result(export, files, records, float(rate.group(3)), first, again, sdk, load_before, load_after)


def render(result: Result, *, judged: bool = True) -> str:
    first, again = result.first, result.again
    verdict = ("PASS" if result.met else "FAIL") if judged else "not judged"
    per_cpu_s = result.records / max(first.cpu_s, 1e-9)
    rows = [
        "| files | records | import s (wall) | of it decoding s | files/s | records/s | CPU s | records per CPU s | "
        "SDK defaults, records per CPU s | per CPU s, x SDK | rerun s | peak RSS MB: command / biggest worker | "
        "bound s | verdict |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        f"| {result.files:,} | {result.records:,} | {first.wall_s:.1f} | {result.decode_s:.1f} | "
        f"{result.files / first.wall_s:,.1f} | {result.records_per_s:,.0f} | {first.cpu_s:.0f} | {per_cpu_s:,.0f} | "
        f"{result.sdk.records_per_s:,.0f} | {per_cpu_s / result.sdk.records_per_s:.2f} | {again.wall_s:.1f} | "
        f"{first.tree.command_mb:.0f} / {first.tree.worker_mb:.0f} | {result.bound_s:.0f} | {verdict} |",
    ]
    roles = [f"{role}: {count} x, {cpu_s:.1f} CPU s, peak {peak_mb:.0f} MB"
             for role, (count, cpu_s, peak_mb) in sorted(first.tree.by_role().items())]
    return "\n".join([
        f"export: {result.export.note}",
        f"load average (1 min) before {result.load_before:.2f}, after {result.load_after:.2f}; {os.cpu_count()} CPUs",
        f"baseline: {result.sdk.files} FIT files, {result.sdk.records:,} records, {result.sdk.cpu_s:.2f} CPU s",
        f"the import's processes: {'; '.join(roles)}",
        *rows,
    ])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--activities", type=int, default=BOUND_ACTIVITIES, help="simulated activities (3,000)")
    parser.add_argument("--regenerate", action="store_true", help="write the cached export again")
    parser.add_argument("--real-files", type=int, metavar="N",
                        help="instead: N copies of two real device files, unpacked (not cached)")
    parser.add_argument("--cache-dir", type=Path,
                        default=Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bulkfetch-bench")
    parser.add_argument("--smoke", action="store_true",
                        help=f"{SMOKE.activities} activities of {SMOKE.duration_s} s, checked, no verdict")
    args = parser.parse_args(argv)
    if args.activities < 1 or (args.real_files is not None and args.real_files < 1):
        parser.error("--activities and --real-files take a positive count")
    return args


def run(args: argparse.Namespace) -> Result:
    with tempfile.TemporaryDirectory(prefix="bulkfetch-import-bench-") as temp:
        work = Path(temp)
        if args.real_files is not None:
            export = real_file_export(work / "export", args.real_files)
        else:
            scale = SMOKE if args.smoke else Scale(args.activities, BOUND_DURATION_S)
            export = cached_export(args.cache_dir, scale, regenerate=args.regenerate, workers=1 if args.smoke else 2)
        return measure(export, work)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    print(render(result, judged=not args.smoke))
    return 0 if args.smoke or result.met else 1


if __name__ == "__main__":
    raise SystemExit(main())
