"""The quota ledger of one Strava app, shared by every data_dir and process of that app on this machine.

Strava counts requests per API application: two data_dirs of one app (one per athlete) spend one quota.
A process reserves each request in the newest state of the app's ledger file (`bulkfetch.ledger_file`),
under its exclusive lock, before it sends the request, and settles it there with what the response's
headers say: the processes of one app coordinate per request exactly as the workers of one process do, and
a restart finds every request its killed predecessor reserved. The file holds JSON of the ledger's
`QuotaLedger.state()`, the owner (process) of each request in flight and the app; no secret. A process
that died leaves requests in flight; the next reader finds their owner gone and abandons them (they stay
counted).
"""

from __future__ import annotations

import math
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bulkfetch.config import LimitsConfig
from bulkfetch.errors import LockedError, WriteError
from bulkfetch.ledger_file import App, LedgerFile, ledger_path
from bulkfetch.pids import alive
from bulkfetch.quota import Block, QuotaLedger, RateHeaders, Ticket, UsageView

# A request is in flight for one attempt (its token refresh included): far less than this. Older ones are
# abandoned even when their process seems alive, in case its PID was reused.
STALE_IN_FLIGHT_S = 600.0
ORPHAN_CHECK_S = 1.0
DAMAGED = -1  # SharedLedger's generation after reading a file with no intact slot


class SharedLedger:
    """The app's `QuotaLedger` in `folder`, with the interface the scheduler uses. Every change is made
    on the file's newest state under the exclusive lock and written before the lock is released.
    `usage_view` shows the state as of this process's last change or read (a display); `blocked_until`
    reads the newest state (shared lock) when that one blocks, so that a request others have answered
    since is not waited for, and a block it missed is found by `reserve`. `warn` hears of a damaged file."""

    def __init__(self, folder: Path, app: App, limits: LimitsConfig, *, warn: Callable[[str], None]) -> None:
        self._app = app
        self._limits = limits
        self._warn = warn
        self._owner = f"{os.getpid()}:{secrets.token_hex(4)}"
        self._ledger = QuotaLedger.from_config(limits)
        self._owners: dict[int, str] = {}
        self._generation = 0  # of the state this process last read or wrote; DAMAGED after a bad read
        self._orphans_checked_at = -math.inf
        self._file = LedgerFile(ledger_path(folder, app), create=True)
        try:
            with self._file.locked(shared=False):
                self._load()
                if self._generation == DAMAGED:
                    self._write()  # repaired at once, so the warning is said once
        except BaseException:
            self._file.close()
            raise
        self._open = True

    def __enter__(self) -> SharedLedger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def path(self) -> Path:
        return self._file.path

    # -- what the scheduler uses -----------------------------------------------------------------

    @property
    def clock_offset_s(self) -> float:
        return self._ledger.clock_offset_s

    @clock_offset_s.setter
    def clock_offset_s(self, value: float) -> None:
        self._ledger.clock_offset_s = value

    def blocked_until(self, now: float) -> Block | None:
        if self._ledger.blocked_until(now) is None:
            return None
        with self._file.locked(shared=True):
            self._refresh(now)
        return self._ledger.blocked_until(now)

    def usage_view(self, now: float) -> UsageView:
        return self._ledger.usage_view(now)

    def reserve(self, now: float) -> Ticket | None:
        with self._file.locked(shared=False):
            self._refresh(now)
            ticket = self._ledger.reserve(now)
            if ticket is not None:
                self._owners[ticket.seq] = self._owner
                self._write()
        return ticket

    def settle(self, ticket: Ticket, now: float, status: int, headers: RateHeaders) -> None:
        with self._file.locked(shared=False):
            self._refresh(now)
            self._ledger.settle(ticket, now, status, headers)
            self._owners.pop(ticket.seq, None)
            self._write()

    def abandon(self, ticket: Ticket, now: float) -> None:
        with self._file.locked(shared=False):
            self._refresh(now)
            self._ledger.abandon(ticket, now)
            self._owners.pop(ticket.seq, None)
            self._write()

    # -- the rest ---------------------------------------------------------------------------------

    def absorb_snapshot(self, snapshot: Any, now: float) -> None:
        """Merge a data_dir's snapshot of an older version (see `QuotaLedger.absorb_snapshot`)."""
        with self._file.locked(shared=False):
            self._refresh(now)
            self._ledger.absorb_snapshot(snapshot, now)
            self._write()

    def close(self) -> None:
        """Abandon what this process still has in flight (a cancelled run): it stays counted, and stops
        holding other processes' probe at once rather than when this process is gone."""
        if not self._open:
            return
        self._open = False
        try:
            mine = [t for t in self._ledger.tickets_in_flight() if self._owners.get(t.seq) == self._owner]
            if mine:
                now = time.time() + self._ledger.clock_offset_s
                with self._file.locked(shared=False):
                    self._refresh(now)
                    for ticket in mine:
                        self._ledger.abandon(ticket, now)
                        self._owners.pop(ticket.seq, None)
                    self._write()
        except (LockedError, WriteError):
            pass  # the next reader abandons them once this process has exited
        finally:
            self._file.close()

    # -- the file ---------------------------------------------------------------------------------

    def _load(self) -> bool:
        """Take the file's state if another process changed it since this one last read or wrote it;
        whether it did."""
        try:
            generation, payload = self._file.newest(self._generation)
            if payload is None:
                return False  # unchanged, or a new file: what this process knows holds
            self._ledger, self._owners = decode(payload, self._limits)
            self._generation = generation
            return True
        except ValueError as error:
            if self._generation != DAMAGED:
                # What this process knew stays (from the config's limits, when it has just started); the
                # usage it did not see is learnt from the first response of each window.
                self._warn(f"the quota ledger {self.path} is unusable ({error}); starting from the config's "
                           "limits, each window with one probe request")
                self._ledger.expect_other_usage()
                self._generation = DAMAGED
            return False

    def _refresh(self, now: float) -> None:
        """The newest state, without requests of dead processes (looked for after each load, and every
        ORPHAN_CHECK_S: an owner can die while nothing changes)."""
        if self._load() or now - self._orphans_checked_at >= ORPHAN_CHECK_S:
            abandon_orphans(self._ledger, self._owners, now, mine=self._owner)
            self._orphans_checked_at = now

    def _write(self) -> None:
        document = {"app": {"api_url": self._app.api_url, "client_id": self._app.client_id},
                    "ledger": self._ledger.state(), "owners": self._owners}
        generation = max(self._generation, 0) + 1
        self._file.write(generation, orjson.dumps(document, option=orjson.OPT_NON_STR_KEYS))
        self._generation = generation


def read_ledger(folder: Path, app: App, limits: LimitsConfig, now: float) -> QuotaLedger:
    """The app's ledger as its processes left it, for a display (`status`, `plan`): read under the shared
    lock, nothing written; requests in flight of processes that are gone are abandoned. A missing or
    unusable file gives a ledger from the config's limits."""
    try:
        file = LedgerFile(ledger_path(folder, app), create=False)
    except FileNotFoundError:
        return QuotaLedger.from_config(limits)
    try:
        with file.locked(shared=True):
            _, payload = file.newest(known=DAMAGED)
        if payload is None:
            return QuotaLedger.from_config(limits)
        ledger, owners = decode(payload, limits)
    except ValueError:
        return _fresh(limits)
    finally:
        file.close()
    abandon_orphans(ledger, owners, now, mine=None)
    return ledger


def decode(data: bytes, limits: LimitsConfig) -> tuple[QuotaLedger, dict[int, str]]:
    """(ledger, owner of each request in flight) from a slot's JSON; ValueError when unusable."""
    try:
        document = orjson.loads(data)
        owners = {int(seq): str(owner) for seq, owner in document["owners"].items()}
        state = document["ledger"]
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError):
        raise ValueError("not a bulkfetch quota ledger") from None
    return QuotaLedger.from_state(state, limits), owners


def abandon_orphans(ledger: QuotaLedger, owners: dict[int, str], now: float, *, mine: str | None) -> None:
    """Abandon requests in flight whose process is gone (killed), or that have been in flight for longer
    than `STALE_IN_FLIGHT_S`: they stay counted, but no longer hold the probe or the in-flight waits of
    the processes still running. `mine` is this process's own owner id (alive, no need to ask)."""
    alive: dict[str, bool] = {}
    for ticket in ledger.tickets_in_flight():
        owner = owners.get(ticket.seq, "")
        if owner not in alive:
            alive[owner] = owner == mine or _process_alive(owner)
        if alive[owner] and now - ticket.sent_at <= STALE_IN_FLIGHT_S:
            continue
        ledger.abandon(ticket, now)
        owners.pop(ticket.seq, None)


def _process_alive(owner: str) -> bool:
    """Whether the process of an owner id ("<pid>:<random>") is running."""
    pid = owner.partition(":")[0]
    return pid.isdigit() and alive(int(pid))


def _fresh(limits: LimitsConfig) -> QuotaLedger:
    """A ledger from the config's limits that knows it may have missed usage."""
    ledger = QuotaLedger.from_config(limits)
    ledger.expect_other_usage()
    return ledger


