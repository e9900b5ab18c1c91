"""What a person sees during long work; with `bulkfetch.live_display` (the terminal's), the only modules
that import rich.

On a terminal: live progress bars (list pages, details, compaction), the quota in both windows and,
during a quota wait, a countdown with the reset time and an ETA. Elsewhere (CI, cron, a pipe): plain
timestamped lines. Every line also goes to the run's log file when one is given, so a person can read
what happened overnight. Nothing here ever sees a secret.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Collection
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING

from rich.cells import cell_len

from bulkfetch.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, BulkfetchError
from bulkfetch.paging import RECENT_ACTIVITIES
from bulkfetch.plan import RequestPlan

# Imported where used: bulkfetch.live_display (rich's live display, ~40 ms) only on a terminal, and
# bulkfetch.quota (~15 ms) only by what shows the quota, so that `compact` in CI or a pipe loads neither.
if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from bulkfetch.client import RequestDone
    from bulkfetch.quota import UsageView
    from bulkfetch.scheduler import QuotaScheduler, WaitInfo  # annotations only: compact needs no asyncio

PLAIN_DETAIL_EVERY_S = 10.0


def interactive(stream: IO[str]) -> bool:
    """Rich live display only on a real terminal, and never under CI."""
    return stream.isatty() and not os.environ.get("CI")


def utc_clock(epoch_s: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(epoch_s))


def utc_day_clock(epoch_s: float) -> str:
    return time.strftime("%a %d %b %H:%M UTC", time.gmtime(epoch_s))


def count(n: int, noun: str) -> str:
    """'1 request', '2,412 requests'."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def human_duration(seconds: float) -> str:
    """'45 s', '11 min', '3 h 05 min', '1 day 18 h'."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s" if seconds < 600 else f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    days = seconds // 86400
    return f"{days} day{'s' if days > 1 else ''} {seconds % 86400 // 3600} h"


class Reporter:
    """Renders pipeline events (implements `bulkfetch.pipeline.FetchEvents`) and compaction progress."""

    def __init__(self, *, quiet: bool = False, verbose: bool = False, log_path: Path | None = None,
                 stream: IO[str] | None = None) -> None:
        self._stream = stream or sys.stderr
        self._quiet = quiet
        self._verbose = verbose
        self._live = interactive(self._stream) and not quiet
        self._log_path = log_path
        self._log: IO[str] | None = None
        if log_path:
            try:
                self._log = log_path.open("a", encoding="utf-8")
            except OSError as exc:
                self._log_failed(exc)
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        # Per phase ("details", "streams"), summed over the athletes of a run (they run side by side).
        self._planned = {"details": 0, "streams": 0}
        self._done = {"details": 0, "streams": 0}
        self._outcomes: dict[str, dict[str, int]] = {"details": {}, "streams": {}}
        self._last_plain_s = 0.0
        self._scheduler: QuotaScheduler | None = None
        self._waiting: WaitInfo | None = None
        self._import_started_s = 0.0

    # -- lifecycle -------------------------------------------------------------------------------------
    def __enter__(self) -> Reporter:
        if self._live:
            from bulkfetch.live_display import live_progress

            self._progress = live_progress(self._stream, self.live_note)
            self._progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        """Close the run; the log's last line says how it ended (the error line is printed later)."""
        if self._progress:
            self._progress.stop()
        self._to_log(outcome_line(error))
        self._close_log()

    # -- plain messages ------------------------------------------------------------------------------------
    def info(self, message: str) -> None:
        self._line(message, level="info")

    def warn(self, message: str) -> None:
        self._line(f"warning: {message}", level="warn")

    def debug(self, message: str) -> None:
        if self._verbose:
            self._line(message, level="info")
        else:
            self._to_log(message)

    def table(self, title: str, headers: tuple[str, ...], rows: list[tuple[str, ...]], *,
              left: Collection[int] = (0,)) -> None:
        """A small result table (stdout): rich on a terminal, aligned plain text elsewhere; the `left`
        columns (indexes: text) left-aligned, the others (numbers) right-aligned."""
        if interactive(sys.stdout):
            from bulkfetch.live_display import print_table

            print_table(title, headers, rows, left)
            return
        # Widths in terminal cells, not characters: a name in CJK takes two cells a character.
        widths = [max(cell_len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
        print(title)
        for row in [headers, *rows]:
            print("  ".join(_padded(cell, width, left=index in left)
                            for index, (cell, width) in enumerate(zip(row, widths))))
        sys.stdout.flush()

    def result(self, message: str) -> None:
        """A final result line: always shown (stdout), even with --quiet."""
        print(message, file=sys.stdout, flush=True)
        self._to_log(message)

    def plan(self, plan: RequestPlan, scheduler: QuotaScheduler) -> None:
        self._scheduler = scheduler
        self.info(plan_text(plan, scheduler.view()))

    # -- listing and details ---------------------------------------------------------------------------------
    def list_page(self, page: int, new_items: int, total: int) -> None:
        if self._progress:
            task = self._task("list", "list pages", total=None)
            self._progress.update(task, completed=page, note=f"{total:,} activities")
        # +N: activities this listing had not listed yet (not "new": they may be known from earlier runs)
        self.debug(f"list page {page}: +{new_items:,}, {total:,} activities listed")

    def details_planned(self, total: int, new: int, changed: int, *, who: str = "") -> None:
        self.info(f"{who}{': ' if who else ''}details to fetch: {total:,} ({new:,} new, {changed:,} changed)")
        self._planned_more("details", total)

    def streams_planned(self, total: int, *, from_export: int = 0, who: str = "") -> None:
        """Streams come after an athlete's details (another athlete's may still be going on): a bar of their own."""
        saved = f" ({from_export:,} more from the account export)" if from_export else ""
        self.info(f"{who}{': ' if who else ''}streams to fetch: {total:,}{saved}")
        self._planned_more("streams", total)

    def detail_done(self, activity_id: int, outcome: str) -> None:
        if outcome == "failed":
            self.debug(f"activity {activity_id}: failed (retried next run)")
        elif outcome == "not_found":
            self.debug(f"activity {activity_id}: no detail (404); asked again when its summary changes")
        self._one_done("details", outcome)

    def stream_done(self, activity_id: int, outcome: str) -> None:
        if outcome == "failed":
            self.debug(f"activity {activity_id}: stream set failed (retried next run)")
        self._one_done("streams", outcome)

    def _planned_more(self, phase: str, total: int) -> None:
        self._planned[phase] += total
        if self._progress and total:
            self._progress.update(self._task(phase, phase, total=None), total=self._planned[phase])

    def _one_done(self, phase: str, outcome: str) -> None:
        self._done[phase] += 1
        outcomes = self._outcomes[phase]
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        done, planned = self._done[phase], self._planned[phase]
        if self._progress:
            self._progress.update(self._task(phase, phase, total=planned), completed=done, live=True)
        elif time.monotonic() - self._last_plain_s >= PLAIN_DETAIL_EVERY_S or done == planned:
            self._last_plain_s = time.monotonic()
            self.info(f"{phase} {done:,}/{planned:,} ({self._outcome_text(phase)}) {self._quota_note()}")

    def quota(self, scheduler: QuotaScheduler) -> None:
        self._scheduler = scheduler

    def request(self, done: RequestDone) -> None:
        """Every request with its status and the quota after it: in the log, and on the terminal with -v."""
        outcome = str(done.status) if done.status is not None else f"no response ({done.failure})"
        quota = f"; {quota_text(done.quota)}" if done.quota is not None else ""
        self.debug(f"{done.method} {done.path} -> {outcome}{quota}")

    def waiting(self, info: WaitInfo | None) -> None:
        self._waiting = info
        if info is None:
            return
        remaining = sum(max(0, self._planned[phase] - self._done[phase]) for phase in self._planned)
        wait_s = info.until - self._now()
        message = f"waiting {human_duration(wait_s)} for the {info.window} window: {info.reason}"
        if remaining and self._scheduler is not None:
            from bulkfetch.quota import estimate_finish

            finish = estimate_finish(remaining, self._now(), self._scheduler.view())
            message += f"; {remaining:,} requests left, ETA {utc_day_clock(finish)}"
        self.info(message)

    # -- compaction ------------------------------------------------------------------------------------------
    def compact_progress(self, done: int, total: int) -> None:
        if done == 0 and total:
            self.info(f"compacting {count(total, 'year')} into Parquet")
        if self._progress:  # without a terminal, the compaction's summary line says what it wrote
            self._progress.update(self._task("compact", "compact", total=total), completed=done, note="")

    # -- import ----------------------------------------------------------------------------------------------
    def import_progress(self, done: int, total: int, records: int) -> None:
        """Files of an export imported so far, with files/s and an ETA: a bar on a terminal, a line every
        PLAIN_DETAIL_EVERY_S (and at the end) elsewhere. `done` 0 starts the clock."""
        now = time.monotonic()
        if done == 0:
            self._import_started_s = now
            if total:
                self.info(f"importing {count(total, 'file')} from the export")
        elapsed = now - self._import_started_s
        rate = done / elapsed if done and elapsed > 0 else 0.0
        eta = f", ETA {human_duration((total - done) / rate)}" if rate and done < total else ""
        note = f"{rate:,.1f} files/s, {records:,} records{eta}"
        if self._progress:
            if total:
                self._progress.update(self._task("import", "import files", total=total), completed=done, note=note)
        elif done and (now - self._last_plain_s >= PLAIN_DETAIL_EVERY_S or done == total):
            self._last_plain_s = now
            self.info(f"import {done:,}/{total:,} files ({note})")

    # -- helpers ---------------------------------------------------------------------------------------------
    def _now(self) -> float:
        return self._scheduler.now() if self._scheduler else time.time()

    def _task(self, key: str, description: str, total: int | None) -> TaskID:
        assert self._progress is not None
        if key not in self._tasks:
            self._tasks[key] = self._progress.add_task(description, total=total, note="")
        return self._tasks[key]

    def _outcome_text(self, phase: str) -> str:
        return ", ".join(f"{count:,} {name.replace('_', ' ')}"
                         for name, count in sorted(self._outcomes[phase].items()))

    def _quota_note(self) -> str:
        if self._scheduler is None:
            return ""
        return quota_text(self._scheduler.view())

    def live_note(self) -> str:
        """Quota now, or the countdown of a quota wait: rendered at every refresh of the live display."""
        if self._waiting is not None:
            left = max(0.0, self._waiting.until - self._now())
            return f"waiting {human_duration(left)}, resets {utc_clock(self._waiting.until)}"
        return self._quota_note()

    def _line(self, message: str, *, level: str) -> None:
        self._to_log(message)
        if self._quiet and level != "warn":
            return
        if self._progress:
            self._progress.console.print(message, markup=False)
        else:
            stamp = time.strftime("%H:%M:%S", time.gmtime())
            print(f"{stamp} {message}", file=self._stream, flush=True)

    def _to_log(self, message: str) -> None:
        if self._log:
            try:
                self._log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {message}\n")
                self._log.flush()
            except OSError as exc:
                self._close_log()
                self._log_failed(exc)

    def _close_log(self) -> None:
        log, self._log = self._log, None
        if log:
            try:
                log.close()
            except OSError:
                pass  # its last line could not be flushed: _to_log has said so already

    def _log_failed(self, exc: OSError) -> None:
        """The log is a convenience: a full disk or a read-only folder must not stop the run (a data
        write that fails the same way stops it, with its own error). Said once, on the terminal."""
        print(f"bulkfetch: warning: cannot write the log {self._log_path} ({exc.strerror or exc});"
              " going on without it", file=self._stream, flush=True)


def _padded(cell: str, width: int, *, left: bool) -> str:
    """`cell` padded with spaces to `width` terminal cells, on the right if `left`, else on the left."""
    padding = " " * (width - cell_len(cell))
    return cell + padding if left else padding + cell


def outcome_line(error: BaseException | None) -> str:
    """How a run ended, with the exit code the command line gives it: 'exit 75: the daily window ...'."""
    if error is None:
        return f"exit {EXIT_OK}: done"
    if isinstance(error, BulkfetchError):
        return f"exit {error.exit_code}: {error}"
    if isinstance(error, KeyboardInterrupt):
        return f"exit {EXIT_INTERRUPTED}: interrupted"
    return f"exit {EXIT_FAILURE}: stopped by an unexpected {type(error).__name__} (a bug: please report it)"


def plan_text(plan: RequestPlan, view: UsageView) -> str:
    """'2,412 requests: today 640 left in the daily window, then 1,000 a day — done about Sat 14:00 UTC'."""
    if plan.listed == 0:
        return ("plan: first run: listing the history first (1 request per 200 activities), "
                "then 1 request per activity; 'bulkfetch plan' shows the full count once the list is read")
    parts = [count(plan.list_pages, "list page"), count(plan.details, "detail")]
    if plan.streams or plan.streams_done or plan.streams_from_export:
        parts.append(count(plan.streams, "stream set"))
    at_least = "" if plan.listing.history_known else "at least "
    head = (f"plan: {at_least}{count(plan.total, 'request')} ({', '.join(parts)}; "
            f"{count(plan.details_done, 'detail')} already done)")
    if at_least:
        head += "; the first listing has not reached the end of the history yet: more follow"
    daily = view.get("read", "daily")
    if daily.limit is None:
        return head
    from bulkfetch.quota import estimate_finish

    finish = estimate_finish(plan.total, view.now, view)
    left_today = max(0, daily.limit - daily.used)
    when = "now" if finish <= view.now + 60 else f"about {utc_day_clock(finish)}"
    return (f"{head}: {left_today:,} left in the current daily window, then {daily.limit:,} a day"
            f" — done {when}")


def stream_requests_text(sets: int, without: int, failed: int, from_export: int, manual: int = 0) -> str:
    """'6 stream requests (5 sets, 1 without streams), 4 manual activities without streams (no request), 64
    stream sets from the account export': every stream request a fetch sent, once each, by what it got (a
    set, "no streams", a failure), the manual activities that need none, then the sets the account export
    gives instead of a request; '0 stream requests' when there was none of these."""
    requests = sets + without + failed
    got = [count(sets, "set")]
    if without:
        got.append(f"{without:,} without streams")
    if failed:
        got.append(f"{failed:,} failed")
    parts = [count(requests, "stream request") + (f" ({', '.join(got)})" if requests else "")]
    if manual:
        parts.append(f"{manual:,} manual {'activity' if manual == 1 else 'activities'} without streams (no request)")
    if from_export:
        parts.append(f"{count(from_export, 'stream set')} from the account export")
    return ", ".join(parts)


def disagreement_texts(with_csv: int, with_api: int) -> list[str]:
    """What `status` and a compaction's last line say of the export's files that disagree (see
    export_view.Disagreements): '1 file disagrees with activities.csv (...): kept', '2 files older than
    Strava's version (...): not used'; each only when there are any."""
    texts = [f"{count(with_csv, 'file')} disagree{'s' if with_csv == 1 else ''} with activities.csv "
             "(elapsed time or distance): kept"] if with_csv else []
    if with_api:
        texts.append(f"{count(with_api, 'file')} older than Strava's version (cropped or corrected since the "
                     "upload): not used")
    return texts


def export_streams_text(from_export: int, requests: int, done: int, *, for_stale_files: int = 0) -> str:
    """'2,950 of 3,000 from the export, 50 requests (2 for files older than Strava's version)': the stream
    sets a fetch wants, and what the account export spares (`done`: fetched from the API before;
    `for_stale_files`: of the requests, those whose export file is stale)."""
    before = f" ({done:,} fetched before)" if done else ""
    stale = (f" ({for_stale_files:,} for file{'s' if for_stale_files != 1 else ''} older than Strava's version)"
             if for_stale_files else "")
    return (f"{from_export:,} of {from_export + requests + done:,} from the export, {count(requests, 'request')}"
            f"{stale}{before}")


def listing_text(full: bool, pages: int, full_relist_due: str | None) -> str:
    """Which listing the next fetch makes, and the rule that decides it (`plan` and `status` say it)."""
    cost = count(pages, "request")
    if full_relist_due is None:  # how far the history reaches is not known yet
        which, cost = "the whole history (the first full listing)", f"at least {cost}"
    elif full:
        which = "the whole history again (a full re-list)"
    else:
        which = f"the newest activities (a full re-list is due {full_relist_due})"
    return (f"the next fetch lists {which}: {cost}. Routine runs list back to the"
            f" {RECENT_ACTIVITIES} newest activities of the run before (new, edited or deleted recent ones);"
            " the whole history, which shows edits and deletions of older ones, is listed again every"
            " [fetch] full_relist_days days or with 'fetch --full-relist'")


def listed_text(listed: int, requests: int) -> str:
    """What an online `plan` spent: it lists what a routine run lists, the whole history only at first."""
    if not requests:
        return "plan: sent no request; the list on disk is as the last fetch left it"
    return (f"plan: listed {listed:,} activities with {count(requests, 'request')}"
            " (the newest ones; the whole history only when none was listed yet)")


def quota_text(view: UsageView) -> str:
    """'quota 37/100 short, 412/1,000 daily' (the read bucket) from a usage view; unknown limits show ?."""
    from bulkfetch.quota import KINDS

    parts = []
    for window in KINDS:
        usage = view.get("read", window)
        limit = "?" if usage.limit is None else f"{usage.limit:,}"
        parts.append(f"{usage.used:,}/{limit} {window}")
    return "quota " + ", ".join(parts)
