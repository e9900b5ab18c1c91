"""The quota ledger of one Strava app, shared by every data_dir and process of that app on this machine.

Strava counts requests per API application, not per athlete (https://developers.strava.com/docs/rate-limits/):
two data_dirs of one app (one per athlete) spend one quota. So the ledger lives in the per-user state
folder, `$XDG_STATE_HOME/bulkfetch/` (default `~/.local/state/bulkfetch/`, mode 0700), one pair of files
per app, named by a hash of `api_url` and `client_id` (no secret is in either):

    quota-<key>.json   the ledger's `QuotaLedger.state()`, which process owns each request in flight, the app
    quota-<key>.lock   held (flock) by the process that is changing the ledger

A process reserves each request in the file's newest state, under the lock, before sending it, and settles
it there with what the response's headers say: the processes of one app coordinate per request exactly as
the workers of one process do, and a restart finds every request its killed predecessor reserved. Reads
need no lock: the file is always replaced whole. A process that died leaves requests in flight; the next
reader finds their owner gone and abandons them (they stay counted).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bulkfetch.config import LimitsConfig
from bulkfetch.errors import LockedError, StorageError, WriteError
from bulkfetch.quota import Block, QuotaLedger, RateHeaders, Ticket, UsageView
from bulkfetch.store import TEMP_MARK, atomic_write

LOCK_TIMEOUT_S = 10.0  # a change takes microseconds: a lock held this long belongs to a stopped process
LOCK_POLL_S = 0.001
# A request is in flight for one attempt (its token refresh included): far less than this. Older ones are
# abandoned even when their process seems alive, in case its PID was reused.
STALE_IN_FLIGHT_S = 600.0


@dataclass(frozen=True)
class App:
    """A Strava API application, as Strava counts its quota."""

    api_url: str
    client_id: str

    @property
    def key(self) -> str:
        return hashlib.sha256(f"{self.api_url.rstrip('/')}\n{self.client_id}".encode()).hexdigest()[:16]


def state_folder(environ: Mapping[str, str]) -> Path:
    """`$XDG_STATE_HOME/bulkfetch`, or `~/.local/state/bulkfetch` when it is unset or not absolute (as the
    XDG Base Directory specification says to treat a relative one)."""
    xdg = environ.get("XDG_STATE_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "bulkfetch"
    home = Path(environ["HOME"]) if environ.get("HOME") else Path.home()
    return home / ".local" / "state" / "bulkfetch"


def ledger_path(folder: Path, app: App) -> Path:
    return folder / f"quota-{app.key}.json"


class SharedLedger:
    """The app's `QuotaLedger` in `folder`, with the interface the scheduler uses. Every change is made
    under the lock on the file's newest state and written before the lock is released; `blocked_until`
    and `usage_view` read the newest state without the lock. `warn` hears of a damaged file."""

    def __init__(self, folder: Path, app: App, limits: LimitsConfig, *, warn: Callable[[str], None]) -> None:
        self._app = app
        self._limits = limits
        self._warn = warn
        self._path = ledger_path(folder, app)
        self._owner = f"{os.getpid()}:{secrets.token_hex(4)}"
        self._ledger = QuotaLedger.from_config(limits)
        self._owners: dict[int, str] = {}
        self._bytes: bytes | None = None  # the file's content this process last read or wrote
        self._fd = _open_lock(folder, self._path.with_suffix(".lock"))
        try:
            with self._locked():
                _sweep_temp_files(self._path)
                self._load()
        except BaseException:
            os.close(self._fd)
            raise

    def __enter__(self) -> SharedLedger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def path(self) -> Path:
        return self._path

    # -- what the scheduler uses -----------------------------------------------------------------

    @property
    def clock_offset_s(self) -> float:
        return self._ledger.clock_offset_s

    @clock_offset_s.setter
    def clock_offset_s(self, value: float) -> None:
        self._ledger.clock_offset_s = value

    def blocked_until(self, now: float) -> Block | None:
        self._refresh(now)
        return self._ledger.blocked_until(now)

    def usage_view(self, now: float) -> UsageView:
        self._refresh(now)
        return self._ledger.usage_view(now)

    def reserve(self, now: float) -> Ticket | None:
        with self._locked():
            self._refresh(now)
            ticket = self._ledger.reserve(now)
            if ticket is not None:
                self._owners[ticket.seq] = self._owner
                self._write()
        return ticket

    def settle(self, ticket: Ticket, now: float, status: int, headers: RateHeaders) -> None:
        with self._locked():
            self._refresh(now)
            self._ledger.settle(ticket, now, status, headers)
            self._owners.pop(ticket.seq, None)
            self._write()

    def abandon(self, ticket: Ticket, now: float) -> None:
        with self._locked():
            self._refresh(now)
            self._ledger.abandon(ticket, now)
            self._owners.pop(ticket.seq, None)
            self._write()

    # -- the rest ---------------------------------------------------------------------------------

    def absorb_snapshot(self, snapshot: Any, now: float) -> None:
        """Merge a data_dir's snapshot of an older version (see `QuotaLedger.absorb_snapshot`)."""
        with self._locked():
            self._refresh(now)
            self._ledger.absorb_snapshot(snapshot, now)
            self._write()

    def close(self) -> None:
        """Abandon what this process still has in flight (a cancelled run): it stays counted, and stops
        holding other processes' probe at once rather than when this process is gone."""
        if self._fd < 0:
            return
        try:
            mine = [t for t in self._ledger.tickets_in_flight() if self._owners.get(t.seq) == self._owner]
            if mine:
                now = time.time() + self._ledger.clock_offset_s
                with self._locked():
                    self._refresh(now)
                    for ticket in mine:
                        self._ledger.abandon(ticket, now)
                        self._owners.pop(ticket.seq, None)
                    self._write()
        except (LockedError, WriteError):
            pass  # the next reader abandons them once this process has exited
        finally:
            os.close(self._fd)
            self._fd = -1

    # -- the file ---------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockedError(f"the quota ledger {self._path} stayed locked for {LOCK_TIMEOUT_S:g} s",
                                      hint="another bulkfetch process of this app is stopped (Ctrl-Z?): "
                                           "resume or end it") from None
                time.sleep(LOCK_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _load(self) -> None:
        """Take the file's state if another process changed it since this one last read or wrote it."""
        data = _read(self._path)
        if data is None or data == self._bytes:
            return  # unchanged, or removed: what this process knows still holds
        self._bytes = data
        try:
            self._ledger, self._owners = decode(data, self._limits)
        except ValueError as error:
            self._warn(f"the quota ledger {self._path} is unusable ({error}); starting from the config's "
                       "limits, each window with one probe request")
            self._ledger, self._owners = _fresh(self._limits), {}

    def _refresh(self, now: float) -> None:
        self._load()
        abandon_orphans(self._ledger, self._owners, now, mine=self._owner)

    def _write(self) -> None:
        document = {"app": {"api_url": self._app.api_url, "client_id": self._app.client_id},
                    "ledger": self._ledger.state(), "owners": {str(seq): o for seq, o in self._owners.items()}}
        data = orjson.dumps(document)
        atomic_write(self._path, data, durable=False, mode=0o600)
        self._bytes = data


def read_ledger(folder: Path, app: App, limits: LimitsConfig, now: float) -> QuotaLedger:
    """The app's ledger as its processes left it, for a display (`status`, `plan`): read without the lock
    and without writing; requests in flight of processes that are gone are abandoned. A missing or
    unusable file gives a ledger from the config's limits."""
    data = _read(ledger_path(folder, app))
    if data is None:
        return QuotaLedger.from_config(limits)
    try:
        ledger, owners = decode(data, limits)
    except ValueError:
        return _fresh(limits)
    abandon_orphans(ledger, owners, now, mine=None)
    return ledger


def decode(data: bytes, limits: LimitsConfig) -> tuple[QuotaLedger, dict[int, str]]:
    """(ledger, owner of each request in flight) from the file's bytes; ValueError when unusable."""
    try:
        document = orjson.loads(data)
        owners = {int(seq): str(owner) for seq, owner in document["owners"].items()}
        state = document["ledger"]
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
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
    if not pid.isdigit() or int(pid) <= 0:
        return False
    try:
        os.kill(int(pid), 0)
    except PermissionError:
        return True  # someone else's process with that PID: it exists
    except (OSError, OverflowError):
        return False
    return True


def _fresh(limits: LimitsConfig) -> QuotaLedger:
    """A ledger from the config's limits that knows it may have missed usage."""
    ledger = QuotaLedger.from_config(limits)
    ledger.expect_other_usage()
    return ledger


def _open_lock(folder: Path, lock_path: Path) -> int:
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StorageError(f"cannot use {folder} for the quota ledger ({exc.strerror or exc})",
                           hint="set XDG_STATE_HOME to a writable folder") from None


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(f"cannot read the quota ledger {path} ({exc.strerror or exc})",
                           hint="fix its permissions, or set XDG_STATE_HOME to a writable folder") from None


def _sweep_temp_files(path: Path) -> None:
    """Temporary files of this ledger a killed process left (only lock holders write, so any is stale)."""
    for stale in path.parent.glob(f".{path.name}{TEMP_MARK}*"):
        stale.unlink(missing_ok=True)
