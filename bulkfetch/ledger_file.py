"""The file of one Strava app's quota ledger: where it lives, its lock, and its two slots of JSON.

Strava counts requests per API application, not per athlete (https://developers.strava.com/docs/rate-limits/),
so the ledger is kept per app, shared by every data_dir and process of it on this machine
(`bulkfetch.shared_ledger`), in the per-user state folder `$XDG_STATE_HOME/bulkfetch/` (default
`~/.local/state/bulkfetch/`, mode 0700): one file per app, `quota-<key>.ledger` (mode 0600), `<key>` a hash
of `api_url` and `client_id`. A process changes it under an exclusive flock of the file and reads it under
a shared one.

Layout. A change is written at every request, twice, and a process killed in the middle of one must not
lose the state. Replacing a file by a rename costs 0.1 to 1 ms on ext4 (a rename over a file forces its
block allocation), and every system call on the event loop's thread lets the threads that write
checkpoints take the interpreter. So the file is never replaced, and it is memory-mapped: it starts with
two header lines of HEADER_BYTES, each describing a slot (generation, region, length, CRC-32 of its JSON),
and a change is written in place into the slot that does not hold the newest generation, its JSON first,
then its header. A write torn by a kill fails its CRC, and the other slot still holds the state before
it. A state that outgrows its slot's region gets a new region, twice its size, at the end of the file.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import mmap
import os
import re
import time
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bulkfetch.errors import LockedError, StorageError, WriteError

# flock(2) called without releasing the interpreter lock (PyDLL). With LOCK_NB it never waits, while
# fcntl.flock releases the interpreter around the call and the threads writing checkpoints took it for
# ~50 us each time: four calls per request were a fifth of the event loop's time at 0 ms latency.
_flock = ctypes.PyDLL(None, use_errno=True).flock
_flock.argtypes = (ctypes.c_int, ctypes.c_int)
_flock.restype = ctypes.c_int
LOCK_TIMEOUT_S = 10.0  # a change takes microseconds: a lock held this long belongs to a stopped process
LOCK_POLL_S = 0.0002
HEADER_BYTES = 128
SLOT_MIN_BYTES = 16 * 1024  # a state is about 2 KB at the default concurrency
_HEADER = b"bulkfetch-quota-ledger generation %016x at %010x capacity %010x length %010x crc32 %08x"
_HEADER_PATTERN = re.compile(rb"bulkfetch-quota-ledger generation ([0-9a-f]{16}) at ([0-9a-f]{10}) "
                             rb"capacity ([0-9a-f]{10}) length ([0-9a-f]{10}) crc32 ([0-9a-f]{8}) *\n")


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
    return folder / f"quota-{app.key}.ledger"


class Damaged(ValueError):
    """The ledger file has no intact slot."""


@dataclass(frozen=True)
class _Slot:
    generation: int
    offset: int
    capacity: int
    length: int
    crc: int

    @property
    def end(self) -> int:
        return self.offset + self.capacity


class LedgerFile:
    """One app's ledger file, open and memory-mapped: its flock and its two slots (see the module
    docstring). Reading and writing the map are no system calls, so they neither cost one nor let other
    threads take the interpreter in the middle of a request; only the lock is."""

    def __init__(self, path: Path, *, create: bool) -> None:
        """Open `path` (to change it, creating it and its folder, when `create`). Raises StorageError, or
        FileNotFoundError when there is none to read."""
        self.path = path
        self._writable = create
        if create:
            try:
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise StorageError(f"cannot use {path.parent} for the quota ledger ({exc.strerror or exc})",
                                   hint="set XDG_STATE_HOME to a writable folder") from None
        else:
            try:
                self._fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                raise
            except OSError as exc:
                raise _unreadable(path, exc) from None
        self._map: mmap.mmap | None = None
        self._slots: list[_Slot | None] = [None, None]  # as the last `newest` read them
        self._headers = b""  # ... and the bytes they came from
        self._newest = 0  # the generation of the newest intact slot under those headers

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
        os.close(self._fd)

    @contextmanager
    def locked(self, *, shared: bool) -> Iterator[None]:
        """Hold the file's flock (shared to read, exclusive to change), waiting at most LOCK_TIMEOUT_S."""
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while not _try_flock(self._fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX):
            if time.monotonic() >= deadline:
                raise LockedError(f"the quota ledger {self.path} stayed locked for {LOCK_TIMEOUT_S:g} s",
                                  hint="another bulkfetch process of this app is stopped (Ctrl-Z?): "
                                       "resume or end it")
            time.sleep(LOCK_POLL_S)
        try:
            yield
        finally:
            _try_flock(self._fd, fcntl.LOCK_UN)

    def newest(self, known: int) -> tuple[int, bytes | None]:
        """(generation, JSON) of the newest intact slot, under the lock; the JSON is None when that
        generation is `known` (the caller has it already), or when the file is new (generation 0).
        Raises Damaged."""
        view = self._view(2 * HEADER_BYTES)
        if view is None:
            if self._size() == 0:
                return 0, None
            raise Damaged("too short")
        headers = view[:2 * HEADER_BYTES]
        if headers == self._headers and self._newest == known:
            return known, None  # nothing written since this process read or wrote `known`
        if headers != self._headers:
            self._slots = [_parse_header(headers[i * HEADER_BYTES:(i + 1) * HEADER_BYTES]) for i in (0, 1)]
            self._headers = headers
        for slot in sorted((s for s in self._slots if s is not None), key=lambda s: -s.generation):
            if slot.generation == known:
                self._newest = known
                return known, None
            view = self._view(slot.offset + slot.length)
            payload = view[slot.offset:slot.offset + slot.length] if view is not None else b""
            if view is not None and zlib.crc32(payload) == slot.crc:
                self._newest = slot.generation
                return slot.generation, payload
        raise Damaged("no intact copy in it")

    def write(self, generation: int, payload: bytes) -> None:
        """Write `payload` as `generation` into slot generation % 2, in place, under the exclusive lock and
        after `newest` (which read where the slots are)."""
        index = generation % 2
        mine, other = self._slots[index], self._slots[1 - index]
        if mine is not None and len(payload) <= mine.capacity and _apart(mine, other):
            offset, capacity = mine.offset, mine.capacity
        else:
            offset = max((s.end for s in self._slots if s is not None), default=2 * HEADER_BYTES)
            capacity = max(SLOT_MIN_BYTES, 2 * len(payload))
        slot = _Slot(generation, offset, capacity, len(payload), zlib.crc32(payload))
        header = (_HEADER % (generation, offset, capacity, len(payload), slot.crc)).ljust(HEADER_BYTES - 1) + b"\n"
        view = self._view(slot.end) or self._grow(slot.end)
        view[offset:offset + len(payload)] = payload
        view[index * HEADER_BYTES:(index + 1) * HEADER_BYTES] = header  # last: the slot counts once whole
        self._slots[index] = slot
        self._headers = view[:2 * HEADER_BYTES]
        self._newest = generation

    def _size(self) -> int:
        try:
            return os.fstat(self._fd).st_size
        except OSError as exc:
            raise _unreadable(self.path, exc) from None

    def _view(self, end: int) -> mmap.mmap | None:
        """The file mapped at least up to `end`, or None when the file is shorter."""
        if self._map is None or len(self._map) < end:
            size = self._size()
            if size < end:
                return None
            self._remap(size)
        return self._map

    def _grow(self, end: int) -> mmap.mmap:
        """The file grown to `end`, its blocks allocated now: a full disk is an error here rather than a
        SIGBUS when the map is written."""
        try:
            os.posix_fallocate(self._fd, 0, end)
        except OSError as exc:
            raise WriteError(f"cannot write the quota ledger {self.path} ({exc.strerror or exc})",
                             hint="free some space and rerun: nothing written so far is lost") from None
        self._remap(end)
        assert self._map is not None
        return self._map

    def _remap(self, size: int) -> None:
        if self._map is not None:
            self._map.close()
        try:
            self._map = mmap.mmap(self._fd, size, access=mmap.ACCESS_WRITE if self._writable else mmap.ACCESS_READ)
        except OSError as exc:
            raise _unreadable(self.path, exc) from None


def _try_flock(fd: int, operation: int) -> bool:
    """flock(fd, operation | LOCK_NB): True when done, False when another process holds the lock."""
    if _flock(fd, operation | fcntl.LOCK_NB) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EWOULDBLOCK, errno.EINTR):
        return False
    raise OSError(code, os.strerror(code))


def _parse_header(header: bytes) -> _Slot | None:
    """The slot a header line describes, or None when it describes none (empty, torn or garbage)."""
    match = _HEADER_PATTERN.fullmatch(header)
    if match is None:
        return None
    slot = _Slot(*(int(group, 16) for group in match.groups()))
    if slot.generation == 0 or slot.offset < 2 * HEADER_BYTES or slot.length > slot.capacity:
        return None
    return slot


def _apart(slot: _Slot, other: _Slot | None) -> bool:
    """Whether `slot`'s region leaves `other`'s alone (only damage from outside makes them overlap)."""
    return other is None or slot.end <= other.offset or other.end <= slot.offset


def _unreadable(path: Path, exc: OSError) -> StorageError:
    return StorageError(f"cannot read the quota ledger {path} ({exc.strerror or exc})",
                        hint="fix its permissions, or set XDG_STATE_HOME to a writable folder")
