"""The command line: parses arguments, builds the config, runs one command, and maps errors to exit codes.

This is the only module that prints to the user or exits. Every command handler is a few lines that
call into the library; library code raises `BulkfetchError`s carrying their exit code. The handlers
import what needs pyarrow, aiohttp or rich themselves, so `--version` and `--help` answer at once.
"""

from __future__ import annotations

import argparse
import gc
import getpass
import math
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from bulkfetch import __version__
from bulkfetch.config import Config, environment, load_config, resolve_config_path
from bulkfetch.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    AthletesBlocked,
    BulkfetchError,
    ConfigError,
    Interrupted,
    LockedError,
    StorageError,
    StoreUnreachable,
    WorkLeft,
    WriteError,
)
from bulkfetch.ids import MAX_ID, parse_id
from bulkfetch.locks import Holder, data_dir_lock, import_lock, staging_lock
from bulkfetch.plan import STREAMS_FROM_API, STREAMS_FROM_AUTO, parse_filters
from bulkfetch.store import RawStore, ensure_dir, shared_listings

if TYPE_CHECKING:
    from bulkfetch.compact import CompactResult, SetAside
    from bulkfetch.dataset_root import DatasetRoot
    from bulkfetch.demo import DemoRun
    from bulkfetch.importer import ImportSummary
    from bulkfetch.object_store import ObjectStore
    from bulkfetch.pipeline import FetchSummary
    from bulkfetch.progress import Reporter
    from bulkfetch.roster import AthleteDir

T = TypeVar("T")
N = TypeVar("N", int, float)
# A run's compaction goes over the athletes whose export an import changed meanwhile (refused its athlete's
# compaction lock while the run held it) at most this often in all: each pass is short, imports rarely overlap.
COMPACTION_PASSES = 3

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit 2 like every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"bulkfetch: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="bulkfetch",
        description="Download a whole Strava history under Strava's quotas into raw JSON and Parquet.",
    )
    parser.add_argument("--version", action="version", version=f"bulkfetch {__version__}")
    parser.add_argument("--config", metavar="PATH",
                        help="config file (default ./config.toml, or $BULKFETCH_CONFIG)")
    parser.add_argument("-v", "--verbose", action="store_true", help="more detail, e.g. every request")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    fetch = commands.add_parser("fetch", help="download new and changed activities, then compact")
    _add_fetch_arguments(fetch)
    fetch.set_defaults(handler=_cmd_fetch)

    compact = commands.add_parser("compact", help="turn the raw JSON into partitioned Parquet")
    compact.add_argument("--rebuild", action="store_true", help="rewrite every partition from raw")
    compact.set_defaults(handler=_cmd_compact)

    status = commands.add_parser("status", help="what is downloaded, pending, failed; quota; ETA")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=_cmd_status)

    plan = commands.add_parser("plan", help="how many requests the job needs and when it will finish")
    _add_filter_arguments(plan)
    plan.add_argument("--offline", action="store_true", help="use the cached list; send no request")
    _add_athlete_argument(plan)
    plan.add_argument("--full-relist", action="store_true",
                      help="count what 'fetch --full-relist' would spend (plan itself still lists only the newest)")
    plan.set_defaults(handler=_cmd_plan)

    auth = commands.add_parser("auth", help="connect a Strava account (OAuth in a browser, or a refresh token)")
    auth.add_argument("--port", type=int, default=8765, help="loopback port for the redirect (default 8765)")
    how = auth.add_mutually_exclusive_group()
    how.add_argument("--no-browser", action="store_true",
                     help="print the URL for the athlete to open on any device (it always asks them to approve); "
                          "paste the address their browser landed on back")
    how.add_argument("--refresh-token", metavar="SOURCE",
                     help="connect from a refresh token another tool obtained, read from standard input ('-') or "
                          "from $STRAVA_REFRESH_TOKEN ('env'), never from the command line; it rotates that token")
    auth.set_defaults(handler=_cmd_auth)

    importing = commands.add_parser("import", help="import the athlete's Strava account export (its zip or folder): "
                                                   "every activity and its device file, without a request")
    importing.add_argument("path", metavar="PATH", type=Path, help="the export's zip, or the folder it unpacked to")
    importing.add_argument("--athlete", metavar="ID", type=_athlete_id,
                           help="whose export it is (needed when several athletes are connected and the export "
                                "does not say)")
    importing.set_defaults(handler=_cmd_import)

    athletes = commands.add_parser("athletes", help="list the connected athletes; remove one; adopt another data_dir")
    athletes.add_argument("--json", action="store_true", help="machine-readable list")
    actions = athletes.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    remove = actions.add_parser("remove", help="deauthorize an athlete at Strava and stop fetching it; "
                                               "its data stays queryable")
    remove.add_argument("athlete_id", metavar="ID", type=_athlete_id)
    remove.add_argument("--purge", action="store_true",
                        help="also delete its raw data and its Parquet partitions (needs the data_dir lock)")
    adopt = actions.add_parser("adopt", help="move the athletes of another data_dir into this one (no request), "
                                             "then compact them into this parquet_dir")
    adopt.add_argument("other", metavar="OTHER_DATA_DIR", type=Path)
    athletes.set_defaults(handler=_cmd_athletes)

    report = commands.add_parser("report", help="pace against terrain as figures in one HTML file (needs the "
                                                "report extra: pip install 'bulkfetch[report]')")
    report.add_argument("--out", metavar="PATH", type=Path, default=Path("report.html"),
                        help="the HTML file to write; the PNG figures go beside it (default report.html)")
    report.add_argument("--sport", metavar="TYPES", help="only these sport_type values (default Run,TrailRun)")
    report.add_argument("--since", metavar="DATE", help="only activities starting at or after (UTC)")
    report.add_argument("--until", metavar="DATE", help="only activities starting before (UTC)")
    _add_athlete_argument(report)
    report.add_argument("--units", choices=("km", "mi"), default="km", help="1 km splits (default) or mile splits")
    report.add_argument("--predict", metavar="COURSE",
                        help="predict a race over COURSE: a GPX file of the course (course.gpx), or "
                             "DISTANCE+CLIMB[-DESCENT], e.g. 42.195km+350m-350m")
    report.set_defaults(handler=_cmd_report)

    demo = commands.add_parser("demo", help="run the whole pipeline against the embedded simulator")
    demo.add_argument("--activities", type=int, default=300,
                      help="size of the synthetic history (of the first athlete; each next one has half as many)")
    demo.add_argument("--athletes", type=int, default=1,
                      help="athletes of the simulated app, sharing its quota fairly in one run (1 to 10, default 1)")
    demo.add_argument("--data-dir",
                      help="where the demo writes (default ./demo-data, with --export ./demo-export-data)")
    demo.add_argument("--export", action="store_true",
                      help="first write the simulated athlete's account export and import it, then fetch with every "
                           "stream type, and show the requests the export saved (with --athletes: the first athlete's "
                           "export); every activity then lasts 20 minutes")
    demo.set_defaults(handler=_cmd_demo)

    simulate = commands.add_parser("simulate", help="run the Strava simulator in the foreground")
    simulate.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    simulate.add_argument("--port", type=_bounded(int, low=0, high=65535), default=0,
                          help="port (default: a free one)")
    simulate.add_argument("--activities", type=_bounded(int, low=0), default=300,
                          help="size of the synthetic history (of each athlete)")
    simulate.add_argument("--athletes", type=_bounded(int, low=1, high=100), default=1,
                          help="athletes of the simulated app, sharing its quota (default 1)")
    simulate.add_argument("--athlete-capacity", type=_bounded(int, low=1), default=None,
                          help="connected athletes the app accepts (Strava: 1 single-player, 10 upgraded; "
                               "default no limit)")
    simulate.add_argument("--seed", type=int, default=1, help="seed of the synthetic history and faults")
    simulate.add_argument("--short-limit", type=_bounded(int, low=1), default=100,
                          help="read requests per short window")
    simulate.add_argument("--daily-limit", type=_bounded(int, low=1), default=1000,
                          help="read requests per daily window")
    simulate.add_argument("--overall-short-limit", type=_bounded(int, low=1), default=200,
                          help="requests of any kind per short window (Strava's overall bucket)")
    simulate.add_argument("--overall-daily-limit", type=_bounded(int, low=1), default=2000,
                          help="requests of any kind per daily window (Strava's overall bucket)")
    simulate.add_argument("--short-window", type=_bounded(float, low=0.0, strict=True), default=900,
                          help="short window length, seconds")
    simulate.add_argument("--daily-window", type=_bounded(float, low=0.0, strict=True), default=86400,
                          help="daily window length, seconds")
    simulate.add_argument("--latency", type=_bounded(float, low=0.0), default=0.0,
                          help="server latency per request, seconds")
    simulate.add_argument("--write-config", metavar="PATH", help="write a config.toml for this simulator")
    simulate.add_argument("--export", metavar="PATH",
                          help="first write the (first) athlete's account export zip to PATH: activities.csv and a "
                               "device file per recorded activity, of the history it then serves")
    simulate.add_argument("--export-language", choices=("en", "de"), default="en",
                          help="language of the export's activities.csv (default en)")
    simulate.set_defaults(handler=_cmd_simulate)
    return parser


def _add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sport", metavar="TYPES", help="only these sport_type values, e.g. Run,TrailRun")
    parser.add_argument("--since", metavar="DATE", help="only activities starting at or after (UTC)")
    parser.add_argument("--until", metavar="DATE", help="only activities starting before (UTC)")
    parser.add_argument("--streams", metavar="TYPES", help="stream types to download, e.g. time,heartrate or all")
    parser.add_argument("--streams-from", choices=(STREAMS_FROM_AUTO, STREAMS_FROM_API), default=STREAMS_FROM_AUTO,
                        help="auto (default): take the streams an imported account export covers from it, request "
                             "the rest; api: request every activity's streams")


def _add_fetch_arguments(parser: argparse.ArgumentParser) -> None:
    _add_filter_arguments(parser)
    parser.add_argument("--no-wait", action="store_true", help="stop (exit 75) instead of waiting for quota")
    parser.add_argument("--max-wait", type=_bounded(float, low=0.0), metavar="SECONDS",
                        help="wait for quota only while the wait is at most SECONDS, else stop (exit 75)")
    parser.add_argument("--concurrency", type=int, help="detail requests in flight (default 8)")
    parser.add_argument("--full-relist", action="store_true",
                        help="list the whole history again now (else only every [fetch] full_relist_days)")
    parser.add_argument("--no-compact", action="store_true",
                        help="skip compaction (during long quota waits and at the end)")
    _add_athlete_argument(parser)
    parser.add_argument("--follow", action="store_true",
                        help="after the backlog keep running: check for new activities every few quota windows "
                             "and fetch them, until stopped (Ctrl-C or SIGTERM, exit 130)")


def _add_athlete_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--athlete", metavar="IDS", type=_athlete_ids,
                        help="only these connected athletes, e.g. 123,456 (default: every one)")


def _athlete_ids(text: str) -> frozenset[int]:
    ids = [parse_id(part) for part in text.split(",")]
    if None in ids:
        raise argparse.ArgumentTypeError(f"must be athlete ids separated by commas, e.g. 123,456, each a whole "
                                         f"number from 1 to {MAX_ID} (got {text!r})")
    return frozenset(athlete_id for athlete_id in ids if athlete_id is not None)


def _athlete_id(text: str) -> int:
    athlete_id = parse_id(text)
    if athlete_id is None:
        raise argparse.ArgumentTypeError(f"must be an athlete id, a whole number from 1 to {MAX_ID} (got {text!r})")
    return athlete_id


def _bounded(kind: Callable[[str], N], *, low: N, high: N | None = None,
             strict: bool = False) -> Callable[[str], N]:
    """An argparse type for a finite number within bounds (argparse's own float takes nan, inf and -1)."""
    noun = "a whole number" if kind is int else "a finite number"
    wanted = f"{noun} from {low:g} to {high:g}" if high is not None else f"{noun} {'>' if strict else '>='} {low:g}"

    def parse(text: str) -> N:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value < low or (strict and value == low) or \
                (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {wanted} (got {text!r})")
        return value

    return parse


def _config(args: argparse.Namespace, overrides: dict[str, dict[str, Any]] | None = None) -> Config:
    return load_config(resolve_config_path(args.config, environment()), environ=environment(),
                       overrides=overrides)


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, with SIGTERM treated like Ctrl-C: cancel, let checkpoints finish, exit 130."""
    import asyncio  # here, not at the top: --version and --help load no asyncio

    async def guarded() -> T:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        previous = signal.getsignal(signal.SIGTERM)
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await coroutine
        except asyncio.CancelledError:
            raise Interrupted("stopped; everything fetched so far is saved, rerun to continue") from None
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
            signal.signal(signal.SIGTERM, previous)  # asyncio leaves the default (die with 143) behind

    try:
        return asyncio.run(guarded())
    except KeyboardInterrupt:
        raise Interrupted("interrupted; everything fetched so far is saved, rerun to continue") from None


def _reporter(args: argparse.Namespace, config: Config | None = None) -> Reporter:
    from bulkfetch.progress import Reporter

    log_path = RawStore(config.storage.data_dir).log_path if config else None
    return Reporter(quiet=args.quiet, verbose=args.verbose, log_path=log_path)


def _cmd_fetch(args: argparse.Namespace) -> int:
    from bulkfetch.pipeline import FetchOptions
    from bulkfetch.roster import Roster
    from bulkfetch.run import chosen_athletes, fetch_history, require_token
    from bulkfetch.scheduler import WaitPolicy

    config = _config(args, {"fetch": {"concurrency": args.concurrency, "streams": args.streams}})
    options = FetchOptions(
        filters=parse_filters(args.sport, args.since, args.until),
        policy=WaitPolicy(no_wait=args.no_wait, max_wait_s=args.max_wait),
        full_relist=args.full_relist,
        athletes=args.athlete,
        compact_in_waits=not args.no_compact,
        follow=args.follow,
        streams_from_api=args.streams_from == STREAMS_FROM_API,
    )
    config.require_credentials()
    require_token(config)
    chosen_athletes(Roster(config.storage.data_dir), args.athlete)  # an unknown --athlete: said before any work
    _fetch_then_compact(args, config.storage.data_dir, config.storage.parquet_dir,
                        lambda reporter: fetch_history(config, options, reporter), compact_after=not args.no_compact,
                        remote=None if args.no_compact else _remote_store(config))
    return EXIT_OK


def _fetch_then_compact(args: argparse.Namespace, data_dir: Path, parquet_dir: Path,
                        fetch: Callable[[Reporter], Coroutine[Any, Any, FetchSummary]],
                        *, compact_after: bool, report: bool = True,
                        prepare: Callable[[Reporter], None] | None = None,
                        remote: ObjectStore | None = None) -> FetchSummary:
    """Hold the data_dir lock, `prepare` (the demo: its athletes, its export), fetch, and compact what is
    there even when the fetch stopped for quota or was interrupted (a second Ctrl-C or SIGTERM stops that
    compaction at once). With `report`, say the summary and raise WorkLeft for what failed: inside, so that
    the log's last line is the outcome."""
    from bulkfetch.progress import Reporter

    ensure_dir(data_dir)
    if compact_after:
        ensure_dir(parquet_dir)  # an unusable parquet_dir is said now, not after hours of fetching
    # What the lock file names: a run refused meanwhile says whether this one compacts when it ends.
    holder = f"{args.command} --no-compact" if args.command == "fetch" and not compact_after else args.command
    # One parse of each listing for the whole run (see shared_listings), compaction included. The log
    # first: a run refused the lock says so there too.
    with Reporter(quiet=args.quiet, verbose=args.verbose, log_path=RawStore(data_dir).log_path) as reporter, \
            data_dir_lock(data_dir, holder), _sigterm_as_ctrl_c(), shared_listings():
        if prepare is not None:
            prepare(reporter)
        # plan runs this too, to list the history: its log must not say it fetched
        reporter.info(f"plan (lists only, fetches nothing) in {data_dir}" if args.command == "plan" else
                      f"fetch into {data_dir}")
        try:
            summary = _run(fetch(reporter))
        except AthletesBlocked as blocked:  # the others' work is done: compacted and reported as usual
            with _summary_after(reporter, blocked.summary if report else None):
                if compact_after:
                    _compact(data_dir, parquet_dir, reporter, rebuild=False, remote=remote)
            raise
        except (WorkLeft, Interrupted):
            if compact_after:
                _compact(data_dir, parquet_dir, reporter, rebuild=False, remote=remote)
            raise
        with _summary_after(reporter, summary if report else None):
            if compact_after:
                _compact(data_dir, parquet_dir, reporter, rebuild=False, remote=remote)
        if report:
            _finish_fetch(summary)
    return summary


@contextmanager
def _summary_after(reporter: Reporter, summary: FetchSummary | None) -> Iterator[None]:
    """Say the fetch's `summary` (if any) after the block, even when the block (the compaction and its
    upload) fails, e.g. the store went away (exit 75): the user sees what was fetched, then the error."""
    try:
        yield
    finally:
        if summary is not None:
            reporter.result(_summary_line(summary))


@contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """Outside the event loop (see `_run`), SIGTERM raises KeyboardInterrupt as Ctrl-C does, so that the
    work in progress stops cleanly (compaction stops its worker) and the exit code is 130, not 143."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _summary_line(summary: FetchSummary) -> str:
    from bulkfetch.progress import stream_requests_text

    streams = stream_requests_text(summary.streams, summary.no_streams, len(summary.failed_streams),
                                   summary.streams_from_export, summary.manual) + "; " if summary.streams_asked else ""
    failed = len(summary.failed) + len(summary.failed_streams)
    failed_streams = f" ({len(summary.failed_streams):,} of them stream sets)" if summary.failed_streams else ""
    requests = f"{summary.requests:,} request{'' if summary.requests == 1 else 's'}"
    return (f"listed {summary.listed:,} activities; fetched {summary.fetched:,} details "
            f"({summary.new:,} new, {summary.changed:,} changed); {streams}{summary.not_found:,} without a "
            f"detail (404), {summary.unlisted:,} deleted (left the list); {failed:,} failed{failed_streams}; "
            f"{requests}")


def _finish_fetch(summary: FetchSummary) -> None:
    if summary.failed or summary.failed_streams or summary.list_failure:
        raise WorkLeft(_work_left(summary), hint="rerun 'bulkfetch fetch' to retry them")


def _work_left(summary: FetchSummary) -> str:
    """Why a run left work: the listing, or the failed details and stream sets with the first reason."""
    if summary.list_failure:
        return f"the listing did not finish ({summary.list_failure})"
    parts = []
    for failures, what in ((summary.failed, "detail(s)"), (summary.failed_streams, "stream set(s)")):
        if failures:
            first_id, first_reason = next(iter(failures.items()))
            parts.append(f"{len(failures):,} {what} failed after their retries "
                         f"(first: activity {first_id}: {first_reason})")
    return "; ".join(parts)


def _compact(data_dir: Path, parquet_dir: Path, reporter: Reporter, *, rebuild: bool,
             remote: ObjectStore | None = None) -> None:
    """Compact every athlete of the data_dir (the caller holds its lock: the layout is migrated first); with
    a `remote` parquet_dir, `parquet_dir` is the local staging folder and the changed files are uploaded."""
    from bulkfetch.compact import compact, has_inputs
    from bulkfetch.export_view import ExportView
    from bulkfetch.roster import Roster

    roster = Roster(data_dir)
    roster.migrate()
    athletes = [a for a in roster.athletes() if a.athlete_id is not None and has_inputs(a.store)]
    if not athletes:  # no list page or export yet: nothing to compact either
        reporter.info(f"nothing to compact into {parquet_dir} yet: no activity has been listed or imported")
        return
    tally = _CompactionTally()
    read: dict[Path, tuple[int, int, int] | None] = {}  # each athlete's export index as its compaction read it
    try:
        with _compacting_into(parquet_dir, remote, reporter):
            for _ in range(COMPACTION_PASSES):
                for athlete in athletes:
                    assert athlete.athlete_id is not None
                    if athlete.folder not in read:  # once: an import ending meanwhile leaves its tracks current
                        _refresh_tracks(athlete.folder, reporter)
                    # After refresh_tracks: its own writes to the index are no import that ended meanwhile.
                    read[athlete.folder] = ExportView(athlete.folder).index_identity()
                    tally.add(athlete.athlete_id, compact(
                        athlete.store, parquet_dir, athlete.athlete_id, rebuild=rebuild,
                        on_progress=reporter.compact_progress,
                        on_wait=_waiting_for_compaction(athlete.label, reporter)))
                # An import that ended while this run compacted its athlete was refused that athlete's
                # compaction lock: its athlete is compacted again (any athlete whose index changed, to be sure).
                athletes = [a for a in roster.athletes() if a.athlete_id is not None and has_inputs(a.store)
                            and ExportView(a.folder).index_identity() != read.get(a.folder)]
                if not athletes:
                    break
                reporter.info(f"an import ended during the compaction: compacting {len(athletes)} athlete(s) "
                              "again")
    except KeyboardInterrupt:
        raise Interrupted("compaction stopped; the raw data is saved and every Parquet file is whole "
                          "(old or new), rerun 'bulkfetch compact' to finish it") from None
    finally:  # however it ended: the files are moved
        tally.warn_set_aside(reporter)
    who = f" ({len(read)} athletes)" if len(read) > 1 else ""
    staged = f", staged for {remote.uri}" if remote is not None else ""
    reporter.info(tally.line(f"compacted into {parquet_dir}{who}{staged}", read))
    if remote is not None:  # last, so that the run's last line says where the tables are now
        try:
            _upload(remote, parquet_dir, reporter)
        except KeyboardInterrupt:
            raise Interrupted(f"upload stopped; every object in {remote.uri} is whole (old or new), rerun "
                              "'bulkfetch compact' to finish it") from None


def _compacting_into(parquet_dir: Path, remote: ObjectStore | None,
                     reporter: Reporter) -> AbstractContextManager[None]:
    """A remote parquet_dir's staging folder held shared for a compaction into it, so that no sync uploads
    it half-way (see bulkfetch.locks.staging_lock); released before that compaction's own sync takes it."""
    if remote is None:
        return nullcontext()
    ensure_dir(parquet_dir)
    return staging_lock(parquet_dir, "compaction", exclusive=False, on_wait=lambda holder: reporter.info(
        f"waiting for the upload that PID {holder.pid} runs"))


def _waiting_for_compaction(label: str, reporter: Reporter) -> Callable[[Holder], None]:
    """What a run's compaction says when an import is compacting the same athlete (it waits for it)."""
    return lambda holder: reporter.info(f"waiting for the compaction of {label} that PID {holder.pid} "
                                        "runs (an import's) to finish")


def _refresh_tracks(athlete_folder: Path, reporter: Reporter) -> None:
    """Decode again the imported files whose tracks are gone, damaged or stored by an older bulkfetch.
    The importer (and its file decoders: about a seventh of a `bulkfetch compact` with nothing to rewrite)
    loads only for an athlete that has an imported export: for the others there is nothing to decode."""
    from bulkfetch.export_view import ExportView

    if ExportView(athlete_folder).exists():
        from bulkfetch.importer import refresh_tracks

        refresh_tracks(athlete_folder, reporter)


def _remote_store(config: Config) -> ObjectStore | None:
    """A remote parquet_dir's store, its access checked now rather than after hours of fetching; None for a
    local parquet_dir."""
    if config.storage.parquet_uri is None:
        return None
    from bulkfetch.object_store import check_access, open_store

    store = open_store(config.storage.parquet_uri, config.storage.parquet_options)
    check_access(store)
    return store


@contextmanager
def _dataset_root(config: Config) -> Iterator[DatasetRoot]:
    """Where `report` reads the Parquet: a remote parquet_dir from the store itself (a
    user on another machine has no staging copy), its failures said as one line each; else the folder."""
    from bulkfetch.dataset_root import DatasetRoot, local_root

    if config.storage.parquet_uri is None:
        yield local_root(config.storage.parquet_dir)
        return
    from bulkfetch.object_store import check_bucket, open_store, store_error

    store = open_store(config.storage.parquet_uri, config.storage.parquet_options)
    try:
        try:
            yield DatasetRoot(store.fs, store.root, store.uri)
        except ConfigError:  # nothing to report on: in a bucket that is not there, say that instead
            check_bucket(store)  # asked only then: a reader's role may not be allowed to ask
            raise
    except OSError as exc:
        raise store_error(store, "cannot read", exc) from None


def _upload(remote: ObjectStore, staging: Path, reporter: Reporter) -> None:
    from bulkfetch.remote_sync import sync

    result = sync(remote, staging, on_upload=lambda key: reporter.debug(f"uploading {key}"),
                  on_wait=lambda holder: reporter.info(f"waiting for the {holder.what} that PID {holder.pid} runs"))
    if result.cleanup.skipped:
        reporter.debug(f"unfinished multipart uploads under {remote.uri} not looked for: {result.cleanup.skipped}; "
                       "the bucket's lifecycle rule cleans them")
    stopped = len(result.swept) + len(result.cleanup.aborted)
    swept = f"; {stopped} unfinished upload(s) of a stopped run cleaned up" if stopped else ""
    reporter.info(f"uploaded {len(result.uploaded)} part file(s) to {remote.uri}, removed "
                  f"{len(result.removed)}{swept}")


@dataclass
class _CompactionTally:
    """A compaction's (athlete, year)s: a pass after an import compacts some athletes again, and each year is
    counted once, rewritten if any pass rewrote it."""

    rewritten: set[tuple[int, int]] = field(default_factory=set)
    unchanged: set[tuple[int, int]] = field(default_factory=set)
    set_aside: list[SetAside] = field(default_factory=list)

    def add(self, athlete_id: int, result: CompactResult) -> None:
        self.rewritten |= {(athlete_id, year) for years in result.written.values() for year in years}
        self.unchanged |= {(athlete_id, year) for year in result.skipped_years}
        self.set_aside += result.set_aside

    def warn_set_aside(self, reporter: Reporter) -> None:
        """One line for the damaged raw files the compaction moved aside, if any: how many, the first, where
        they went and what happens next."""
        if not self.set_aside:
            return
        count, first = len(self.set_aside), self.set_aside[0]
        them = "it" if count == 1 else "them"
        streams = " (stream sets: a fetch with --streams)" if any(s.group == "streams" for s in self.set_aside) else ""
        reporter.warn(f"{count:,} damaged raw file{'' if count == 1 else 's'} (no JSON object; first: {first.raw}) "
                      f"compacted as if missing and moved aside to {first.moved_to.parent.parent}; the next fetch "
                      f"fetches {them} again{streams}")

    def line(self, what: str, folders: Iterable[Path]) -> str:
        """The compaction's last line: `what`, the years, and the disagreeing files of the athletes'
        exports (`folders`: their folders), as `status` counts them."""
        from bulkfetch.export_view import Disagreements, ExportView
        from bulkfetch.progress import disagreement_texts

        disagree = sum((ExportView(folder).current_disagreements() for folder in folders), Disagreements())
        notes = "".join(f"; {text}" for text in disagreement_texts(disagree.with_csv, disagree.with_api))
        return (f"{what}: {len(self.rewritten)} year(s) rewritten, {len(self.unchanged - self.rewritten)} "
                f"unchanged{notes}")



def _cmd_compact(args: argparse.Namespace) -> int:
    config = _config(args)
    data_dir = config.storage.data_dir
    ensure_dir(data_dir)
    ensure_dir(config.storage.parquet_dir)  # an unusable one is said even while there is nothing to compact
    remote = _remote_store(config)
    if args.rebuild and _rebuild_wants_a_worker(data_dir):
        # Every year is rewritten: compaction's worker is wanted, and its forkserver imports pyarrow (0.4 CPU
        # s) beside this process's own imports and reads instead of after them, when the first year is
        # handed to the worker. Named, not imported here; harmless if the lock is refused.
        from bulkfetch.processes import start_forkserver

        start_forkserver(["bulkfetch.compact"])
    # The lock: a running fetch's temporary files are not swept, and its own compaction is not raced; a
    # rebuild rewrites every partition, so no import's compaction may run beside it either.
    with _reporter(args, config) as reporter, _sigterm_as_ctrl_c(), \
            data_dir_lock(data_dir, "compact --rebuild" if args.rebuild else "compact", alone=args.rebuild):
        _compact(data_dir, config.storage.parquet_dir, reporter, rebuild=args.rebuild, remote=remote)
    return EXIT_OK


def _rebuild_wants_a_worker(data_dir: Path) -> bool:
    """Whether an athlete's raw files are enough for compaction to start its worker (about: the exports'
    device files are not counted), so that a small history's rebuild starts no forkserver for nothing."""
    from bulkfetch.processes import WORKER_MIN_BYTES
    from bulkfetch.roster import Roster

    return any(athlete.store.raw_bytes_reach(WORKER_MIN_BYTES) for athlete in Roster(data_dir).athletes())


def _cmd_status(args: argparse.Namespace) -> int:
    from bulkfetch.status import collect_status, render_status

    config = _config(args)
    report = collect_status(config)
    if args.json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        print(render_status(report))
    return EXIT_OK


def _cmd_plan(args: argparse.Namespace) -> int:
    from bulkfetch.pipeline import FetchOptions, restore_ledger
    from bulkfetch.plan import combined_plan
    from bulkfetch.progress import count, export_streams_text, listed_text, listing_text, plan_text, utc_day_clock
    from bulkfetch.run import athlete_plans, fetch_history, require_token

    config = _config(args, {"fetch": {"streams": args.streams}})
    filters = parse_filters(args.sport, args.since, args.until)
    data_dir = config.storage.data_dir
    if args.offline:
        if not athlete_plans(config, filters, args.athlete, listed_only=True, from_export=False):
            raise ConfigError(f"no cached list under {data_dir}", hint="run 'bulkfetch plan' without --offline")
    else:
        config.require_credentials()
        require_token(config)
        options = FetchOptions(filters=filters, list_only=True, athletes=args.athlete)
        listed = _fetch_then_compact(args, data_dir, config.storage.parquet_dir,
                                     lambda reporter: fetch_history(config, options, reporter),
                                     compact_after=False, report=False)
        print(listed_text(listed.listed, listed.requests))
    now = time.time()
    plans = athlete_plans(config, filters, args.athlete, full_relist=args.full_relist, now=now,
                          from_export=args.streams_from != STREAMS_FROM_API)
    view = restore_ledger([athlete.store for athlete, _ in plans], config, now).usage_view(now)
    plan = combined_plan([p for _, p in plans])
    if len(plans) > 1:
        for athlete, part in plans:
            print(f"{athlete.label}: {count(part.total, 'request')} ({part.list_pages:,} list, {part.details:,} "
                  f"details, {part.streams:,} streams)")
    print(plan_text(plan, view))
    if plan.streams_from_export:
        print("streams: " + export_streams_text(plan.streams_from_export, plan.streams, plan.streams_done,
                                                for_stale_files=plan.streams_for_stale_files))
    due = plan.listing.full_due_at
    print("listing: " + listing_text(plan.listing.full, plan.list_pages, None if due is None else utc_day_clock(due)))
    return EXIT_OK


def _cmd_auth(args: argparse.Namespace) -> int:
    from bulkfetch.auth import scope_lacks_activities, scope_lacks_read_all
    from bulkfetch.oauth import store_authorized_tokens

    if args.refresh_token is not None:
        return _auth_from_refresh_token(args)
    config = _config(args)
    config.require_credentials()
    _migrate_layout(config.storage.data_dir, "auth")
    athlete = _run(store_authorized_tokens(config, port=args.port, no_browser=args.no_browser,
                                           announce=lambda line: print(line, flush=True), read_line=input))
    print(f"connected {athlete.label}; tokens stored in {athlete.tokens.path} (mode 0600)")
    if scope_lacks_activities(athlete.tokens.load()):
        print("bulkfetch: warning: no activity permission was granted: no activity can be fetched (the next fetch "
              "marks the athlete scope_missing); run 'bulkfetch auth' again and tick 'View data about your "
              "activities'", file=sys.stderr)
    elif scope_lacks_read_all(athlete.tokens.load()):
        print("bulkfetch: warning: activity:read_all was not granted: private ('Only You') activities "
              "will be missing; run 'bulkfetch auth' again and tick the private-activities box", file=sys.stderr)
    return EXIT_OK


def _auth_from_refresh_token(args: argparse.Namespace) -> int:
    from bulkfetch import token_connect as connect

    source = connect.token_source(args.refresh_token)  # first: a token in argv is refused before anything else
    config = _config(args)
    config.require_credentials()
    if source == connect.FROM_ENV:
        text = environment().get(connect.ENV_NAME, "")
    elif sys.stdin.isatty():
        text = getpass.getpass("refresh token (not shown): ")
    else:
        text = sys.stdin.readline()
    token = connect.clean_token(text, source)
    _migrate_layout(config.storage.data_dir, "auth")
    with _reporter(args) as reporter:
        reporter.warn(connect.ROTATION_WARNING)
        athlete = _run(connect.connect_refresh_token(config, token, warn=reporter.warn, on_wait=reporter.waiting))
    print(f"connected athlete {athlete.athlete_id} ({athlete.name or 'no name'})")
    return EXIT_OK


def _cmd_import(args: argparse.Namespace) -> int:
    """No credentials needed. The import takes the data_dir's import lock (bulkfetch.locks): it runs beside
    a fetch, a plan and other imports, not beside a run that needs the data_dir alone; the compaction
    after it takes its athlete's compaction lock only, or leaves the work to the run compacting it."""
    from bulkfetch.importer import check_export

    config = _config(args)
    data_dir = config.storage.data_dir
    check_export(data_dir, args.path, args.athlete)  # bad input: said before the data_dir or its log is made
    ensure_dir(data_dir)
    with _reporter(args, config) as reporter, import_lock(data_dir), _sigterm_as_ctrl_c():  # a refusal is logged
        _migrate_layout(data_dir, "import")
        summary = _import_reported(data_dir, args.path, args.athlete, reporter, rerun="bulkfetch import")
        # The store is checked after the import: an unreachable one does not stop the import itself.
        _compact_imported(summary.athlete, config.storage.parquet_dir, reporter, remote=_remote_store(config))
    return EXIT_OK


def _import_reported(data_dir: Path, path: Path, athlete: int | None, reporter: Reporter, *,
                     rerun: str) -> ImportSummary:
    """Import an export with its progress bar, then say what it did: every failed file in the log, the
    decoding rate (or that nothing was decoded), and the summary line. `rerun` continues it when stopped."""
    from bulkfetch.importer import failures_text, import_export, rate_text, summary_line

    try:
        summary = import_export(data_dir, path, athlete, reporter)
    except KeyboardInterrupt:
        raise Interrupted(f"import interrupted; what was imported is kept, rerun '{rerun}' to continue") from None
    for line in failures_text(summary):
        reporter.debug(line)
    if summary.imported:
        reporter.info(rate_text(summary))
    elif not summary.new_csv and not summary.errors:
        reporter.info("nothing new: this export was imported before, and no file was decoded again")
    reporter.result(summary_line(summary))
    return summary


def _compact_imported(athlete: AthleteDir, parquet_dir: Path, reporter: Reporter, *,
                      remote: ObjectStore | None = None) -> None:
    """The imported athlete's Parquet, as 'bulkfetch compact' makes it, beside any run, unless a run's
    compaction of that athlete is under way (it takes the import in before it ends); with a `remote`
    parquet_dir, uploaded (see `_compact`)."""
    from bulkfetch.compact import compact

    if athlete.athlete_id is None:
        reporter.info("not compacted: the export's athlete is not known yet")
        return
    ensure_dir(parquet_dir)
    tally = _CompactionTally()
    try:  # its athlete's compaction lock alone: a fetch started meanwhile is not refused (see bulkfetch.locks)
        with _compacting_into(parquet_dir, remote, reporter):
            tally.add(athlete.athlete_id, compact(athlete.store, parquet_dir, athlete.athlete_id,
                                                  on_progress=reporter.compact_progress))
        if remote is not None:
            _upload(remote, parquet_dir, reporter)
    except LockedError as busy:  # a run's compaction (fetch, demo, compact) of this athlete: it re-reads the index
        reporter.info(f"not compacted now: {busy.message}; that run compacts this import before it ends")
        return
    except KeyboardInterrupt:
        raise Interrupted("compaction stopped; the import is kept and every Parquet file is whole "
                          "(old or new), rerun 'bulkfetch compact' to finish it") from None
    reporter.info(tally.line(f"compacted {athlete.label} into {parquet_dir}", [athlete.folder]))
    tally.warn_set_aside(reporter)


def _migrate_layout(data_dir: Path, command: str) -> None:
    """A one-athlete data_dir moves to the per-athlete layout before an athlete is added beside it. A
    running fetch (holding the lock) has moved it already, and `auth` may run beside a fetch."""
    from bulkfetch.roster import Roster

    roster = Roster(data_dir)
    if roster.needs_migration():
        with data_dir_lock(data_dir, command):
            roster.migrate()


def _cmd_athletes(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.action is not None and args.json:
        raise ConfigError(f"--json lists the athletes; it does not go with '{args.action}'",
                          hint="run 'bulkfetch athletes --json' on its own")
    if args.action == "remove":
        return _remove_athlete(args, config)
    if args.action == "adopt":
        return _adopt_data_dir(args, config)
    return _list_athletes(args, config)


def _list_athletes(args: argparse.Namespace, config: Config) -> int:
    from dataclasses import asdict

    from bulkfetch.athletes import HEADERS, TEXT_COLUMNS, athlete_rows, table_cells
    from bulkfetch.progress import Reporter

    rows = athlete_rows(config)
    data_dir = config.storage.data_dir
    if args.json:
        print(orjson.dumps([asdict(row) for row in rows], option=orjson.OPT_INDENT_2).decode())
    elif not rows:
        print(f"no athlete in {data_dir}: connect one with 'bulkfetch auth'")
    else:
        Reporter(quiet=args.quiet).table(f"athletes in {data_dir}", HEADERS, table_cells(rows), left=TEXT_COLUMNS)
    return EXIT_OK


def _remove_athlete(args: argparse.Namespace, config: Config) -> int:
    """Plain remove takes no lock (it works while a fetch runs); --purge deletes files a run or an import
    may be using: it needs the data_dir alone."""
    from bulkfetch import athletes
    from bulkfetch.roster import Roster

    data_dir = config.storage.data_dir
    athletes.find_athlete(Roster(data_dir), args.athlete_id)  # an unknown id: said before anything else
    remote = _remote_store(config) if args.purge else None  # checked before anything is deleted
    with _reporter(args, config) as reporter, \
            data_dir_lock(data_dir, "athletes remove --purge", alone=True) if args.purge else nullcontext():
        if args.purge:
            Roster(data_dir).migrate()
        else:
            _migrate_layout(data_dir, "athletes remove")
        athlete = athletes.find_athlete(Roster(data_dir), args.athlete_id)
        removed = _run(athletes.remove(config, athlete, purge=args.purge, warn=reporter.warn))
        reporter.result(athletes.removal_text(removed))
        if removed.purged and remote is not None:
            _upload_purged(remote, config.storage.parquet_dir, reporter)
        if removed.purged:
            reporter.result(f"deleted its raw data ({athlete.folder}) and its Parquet partitions "
                            f"({config.storage.parquet_target}/<table>/athlete_id={args.athlete_id}/)")
        else:
            reporter.result(f"its data stays in {athlete.folder} and {config.storage.parquet_target} "
                            f"('bulkfetch athletes remove {args.athlete_id} --purge' deletes it)")
    return EXIT_OK


def _upload_purged(remote: ObjectStore, staging: Path, reporter: Reporter) -> None:
    """Remove a purged athlete's partitions from the store (its staged ones are gone). When that fails the
    purge itself is done, and a rerun of it finds no such athlete: `bulkfetch compact` finishes the work."""
    try:
        _upload(remote, staging, reporter)
    except StorageError as failed:  # credentials or configuration: its fix first
        raise StorageError(failed.message, hint=f"{failed.hint}; the athlete is purged here: then run "
                                                 "'bulkfetch compact' to remove its partitions there") from None
    except (StoreUnreachable, WriteError) as failed:
        raise type(failed)(failed.message, hint="the athlete is purged here: once the store answers, "
                                                 "'bulkfetch compact' removes its partitions there") from None


def _adopt_data_dir(args: argparse.Namespace, config: Config) -> int:
    from bulkfetch import athletes
    from bulkfetch.roster import Roster

    data_dir, parquet_dir, other = config.storage.data_dir, config.storage.parquet_dir, args.other
    athletes.check_adoptable(Roster(data_dir), Roster(other))  # refused before either lock is taken
    ensure_dir(data_dir)
    ensure_dir(parquet_dir)
    remote = _remote_store(config)
    # Alone in both: athlete folders move from one to the other under any import's feet.
    with _reporter(args, config) as reporter, data_dir_lock(data_dir, "athletes adopt", alone=True), \
            data_dir_lock(other, "athletes adopt", alone=True), _sigterm_as_ctrl_c():
        roster = Roster(data_dir)
        for athlete in athletes.adopt(roster, Roster(other)):
            row = athletes.athlete_row(athlete, config, roster)
            reporter.result(f"adopted {athlete.label} ({row.name or 'name unknown'}) from {other}: "
                            f"{row.listed:,} listed, {row.fetched:,} fetched, {row.pending:,} pending")
        _compact(data_dir, parquet_dir, reporter, rebuild=False, remote=remote)
        reporter.result(f"their Parquet is in {config.storage.parquet_target} now ({other}'s own Parquet files "
                        "were left as they are)")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from bulkfetch import report
    from bulkfetch.demo import DEMO_DATA_DIR, DEMO_EXPORT_DATA_DIR, REPORT_COURSE, DemoRun, check_demo_size
    from bulkfetch.progress import Reporter

    check_demo_size(args.activities, args.athletes)
    data_dir = Path(args.data_dir or (DEMO_EXPORT_DATA_DIR if args.export else DEMO_DATA_DIR)).resolve()
    parquet_dir = data_dir / "parquet"
    demo = DemoRun(data_dir, args.activities, args.athletes, export=args.export)
    summary = _fetch_then_compact(args, data_dir, parquet_dir, demo.fetch, compact_after=True,
                                  prepare=lambda reporter: _prepare_demo(demo, reporter))
    show = Reporter(quiet=args.quiet)
    if args.athletes > 1:
        _show_demo_athletes(show, demo, summary, parquet_dir)
    if args.export:
        _show_demo_export(show, demo, parquet_dir)
    years, by_sport = report.activities_by_sport_and_year(parquet_dir)
    show.table("Activities by sport and year", ("sport", *map(str, years), "total"),
               [(sport, *(f"{n:,}" for n in counts), f"{sum(counts):,}") for sport, counts in by_sport])
    buckets = report.pace_by_elevation(parquet_dir)
    if args.export:  # where the splits came from: the API's (the last year) or derived from the export's files
        show.table("1 km run splits: pace by elevation difference (api: Strava's splits; file: derived from the "
                   "export's device files)", ("elevation", "splits", "api", "file", "average pace"),
                   [(b.label, f"{b.splits:,}", f"{b.splits - b.from_files:,}", f"{b.from_files:,}",
                     report.format_pace(b.pace_s_per_km)) for b in buckets])
    else:
        show.table("1 km run splits: pace by elevation difference", ("elevation", "splits", "average pace"),
                   [(b.label, f"{b.splits:,}", report.format_pace(b.pace_s_per_km)) for b in buckets])
    show.result(f"Parquet tables: {parquet_dir}/<table>/athlete_id=<id>/year=YYYY/part-0.parquet")
    show.result(f"Query them with DuckDB (pip install duckdb):\n  {report.duckdb_example(parquet_dir)}")
    show.result(f"Figures in one HTML file (pip install 'bulkfetch[report]'):\n  bulkfetch --config "
                f"{shlex.quote(str(demo.report_config()))} report --out {shlex.quote(str(data_dir / 'report.html'))} "
                f"--predict {REPORT_COURSE}")
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from bulkfetch import report_drawing

    # The workers' server starts first: its import of matplotlib is the report's longest step, and the rest
    # (checking the arguments, importing pyarrow, reading, fitting) overlaps it (report_drawing).
    with report_drawing.figure_workers() as workers:
        from bulkfetch import report_html

        course = _report_course(args.predict)
        out = args.out.resolve()
        if not out.parent.is_dir():
            raise ConfigError(f"--out {args.out}: the folder {out.parent} does not exist")
        filters = parse_filters(args.sport, args.since, args.until)
        units = report_html.units_named(args.units)
        from bulkfetch import report_data, report_read  # pyarrow: once the arguments are right

        query = report_read.ReportQuery(sports=filters.sports or report_read.DEFAULT_SPORTS, since_s=filters.since,
                                        until_s=filters.until, athletes=args.athlete, unit_m=units.metres)
        with _dataset_root(_config(args)) as parquet_dir:
            runs_by_athlete = report_read.read_runs(parquet_dir, query)
        reports = [report_data.athlete_report(athlete_id, runs, units.metres, course)
                   for athlete_id, runs in sorted(runs_by_athlete.items())]
        pngs = workers.draw(reports, units)
    shown = f"{', '.join(sorted(query.sports))} splits of {parquet_dir}, per {units.name}"
    figures = report_html.write_report(out, reports, units, shown, pngs)
    print(out)
    print("\n".join(report_html.summary_lines(reports, units, len(figures))))
    return EXIT_OK


def _report_course(predict: str | None) -> tuple[str, Sequence[tuple[float, float]]] | None:
    """--predict's course, named as given: a GPX file's or DISTANCE+CLIMB; ConfigError (one line) when it is
    neither."""
    from bulkfetch import pace

    if predict is None:
        return None
    try:
        if Path(predict).is_file() and not predict.lower().endswith(".gpx"):
            raise ValueError(f"{predict} is not a .gpx file: a course is a GPX file or DISTANCE+CLIMB")
        return predict, _gpx_course(Path(predict)) if predict.lower().endswith(".gpx") else pace.parse_course(predict)
    except ValueError as error:
        raise ConfigError(f"--predict: {error}") from None


MAX_COURSE_BYTES = 64 << 20  # a course's GPX file larger than this is no course (a whole recorded history, say)


def _gpx_course(path: Path) -> list[tuple[float, float]]:
    """The course in the GPX file at `path` (bulkfetch.course_gpx); ValueError, one line, when it cannot be used."""
    from bulkfetch.course_gpx import course_from_gpx

    try:
        if path.stat().st_size > MAX_COURSE_BYTES:
            raise ValueError(f"{path} is larger than {MAX_COURSE_BYTES >> 20} MiB: not a course")
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise ValueError(f"cannot read {path} ({error.strerror})") from None
    return course_from_gpx(text, str(path))


def _prepare_demo(demo: DemoRun, reporter: Reporter) -> None:
    """Connect the demo's athletes; with --export write the first one's export and import it, as
    `bulkfetch simulate --export` and `bulkfetch import` do (the fetch after it compacts it too)."""
    demo.connect()
    if not demo.export:
        return
    if demo.export_written():
        reporter.info(f"the account export in {demo.export_path} is this history's already: not written again")
    else:
        others = "; the other athletes have none: the fetch's --since leaves their older activities the list's " \
                 "summary alone" if demo.athletes > 1 else ""
        reporter.info(f"writing athlete {demo.export_athlete}'s account export, of the history the simulator "
                      f"serves{others}")
        try:
            written = demo.write_export(workers=os.cpu_count() or 1)
        except KeyboardInterrupt:
            raise Interrupted("stopped while writing the simulated export (nothing of it is kept); rerun "
                              "'bulkfetch demo --export'") from None
        reporter.info(written.line())
    _import_reported(demo.data_dir, demo.export_path, demo.export_athlete, reporter, rerun="bulkfetch demo --export")


def _show_demo_export(show: Reporter, demo: DemoRun, parquet_dir: Path) -> None:
    """What the imported export saved this fetch, and where each table's rows came from."""
    from bulkfetch import report

    show.table(f"Requests this fetch sent for athlete {demo.export_athlete} (its export imported, then fetch --since "
               f"{demo.since} --streams all), and fetching its whole history from the API alone (fetch --streams "
               "all, no export: a detail per activity, a stream set per one not manual)",
               ("requests", "sent", "API alone"),
               [(row.kind, f"{row.sent:,}", f"{row.without_export:,}") for row in demo.saving()])
    sources = ("api", "file", "csv")
    tables = ("activities", "streams", "splits_metric", "splits_standard", "laps")
    counts = {table: report.rows_by_source(parquet_dir, table) for table in tables}
    show.table("Parquet rows by source (api: Strava's API; file: the export's device files; csv: its "
               "activities.csv)", ("table", *sources),
               [(table, *(f"{counts[table].get(source, 0):,}" for source in sources)) for table in tables])


def _show_demo_athletes(show: Reporter, demo: DemoRun, summary: FetchSummary, parquet_dir: Path) -> None:
    """Several athletes: how their requests shared each quota window, and what each one got."""
    from bulkfetch import report
    from bulkfetch.demo import DEMO_SHORT_LIMIT, DEMO_SHORT_WINDOW_S

    shares = demo.requests
    windows = tuple(f"w{i + 1}" for i in range(shares.windows))
    show.table(f"Requests per {DEMO_SHORT_WINDOW_S}-second quota window of {DEMO_SHORT_LIMIT} (w1: the run's first), "
               "shared in turn by the athletes with work left",
               ("athlete", *windows, "done in"),
               [*((str(athlete), *(f"{n:,}" if n else "." for n in row), f"w{shares.finished_in(athlete)}")
                  for athlete, row in shares.counts.items()),
                ("all", *(f"{n:,}" for n in shares.totals()), "")])
    activities = report.rows_per_athlete(parquet_dir, "activities")
    splits = report.rows_per_athlete(parquet_dir, "splits_metric")
    show.table("Per athlete", ("athlete", "listed", "details fetched", "requests", "Parquet activities",
                               "Parquet 1 km splits"),
               [(str(part.athlete.athlete_id), f"{part.summary.listed:,}", f"{part.summary.fetched:,}",
                 f"{part.summary.requests:,}", f"{activities.get(part.athlete.athlete_id, 0):,}",
                 f"{splits.get(part.athlete.athlete_id, 0):,}")
                for part in sorted(summary.athletes, key=lambda p: p.athlete.athlete_id or 0)])


def _cmd_simulate(args: argparse.Namespace) -> int:
    import asyncio

    from bulkfetch.simulator import SimulatorSettings, serve_forever
    from bulkfetch.simulator.export import ExportRequest

    if args.daily_window < args.short_window:  # the config it writes would be refused
        raise ConfigError(f"--daily-window {args.daily_window:g} must be at least --short-window {args.short_window:g}")
    export = (ExportRequest(_export_path(args.export), language=args.export_language, workers=os.cpu_count() or 1)
              if args.export else None)
    settings = SimulatorSettings(
        seed=args.seed, activities=args.activities, athletes=args.athletes, athlete_capacity=args.athlete_capacity,
        short_limit=args.short_limit, daily_limit=args.daily_limit,
        overall_short_limit=args.overall_short_limit, overall_daily_limit=args.overall_daily_limit,
        short_window_s=args.short_window, daily_window_s=args.daily_window,
        latency_s=args.latency,
    )
    write_config = Path(args.write_config) if args.write_config else None
    try:
        asyncio.run(serve_forever(settings, host=args.host, port=args.port, write_config=write_config,
                                  announce=lambda text: print(text, flush=True), export=export))
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a foreground simulator is meant to stop
    except OSError as error:
        if error.filename:
            raise ConfigError(f"cannot write {error.filename} ({error.strerror})",
                              hint="pass another --write-config or --export path") from None
        raise ConfigError(f"cannot listen on {args.host}:{args.port} ({_os_reason(error)})",
                          hint="pass another --host or --port (without --port a free one is taken)") from None
    return EXIT_OK


def _export_path(text: str) -> Path:
    """--export's zip path, refused before the simulator starts when it cannot be written."""
    path = Path(text)
    if path.is_dir():
        raise ConfigError(f"--export {text} is a folder", hint="name the zip to write in it, e.g. "
                                                              f"{path / 'export.zip'}")
    if not path.parent.is_dir():
        raise ConfigError(f"--export {text}: the folder {path.parent} does not exist",
                          hint="create it or pass a path in an existing folder")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise ConfigError(f"--export {text}: the folder {path.parent} is not writable",
                          hint="pass a path in a folder you can write to")
    return path


def _os_reason(error: OSError) -> str:
    """'Address already in use', not aiohttp's sentence that repeats the address."""
    return os.strerror(error.errno) if error.errno and error.errno > 0 else str(error.strerror or error)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command `argv` says (None: this process's command line, which ends when this returns)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except BulkfetchError as error:
        print(f"bulkfetch: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("bulkfetch: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `bulkfetch status | head -1`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's exit flush fails no more
        return EXIT_OK
    finally:
        if argv is None:
            # The process ends next: its exit would walk every object left (pyarrow's and numpy's modules
            # included) for cycles, to free memory the exit frees anyway (after a compaction: 0.27-0.50 s
            # at load 10, 0.10-0.15 s frozen). Files are closed by then (`with` blocks): nothing to flush.
            gc.freeze()


__all__ = ["main", "build_parser"]
