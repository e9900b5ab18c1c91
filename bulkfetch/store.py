"""Raw checkpoints on disk: the source of truth every later step (resume, compaction) reads.

Layout under `data_dir`:

    raw/list/<listing_id>/page-00001.json   list pages, bytes exactly as received (id: sequence-UTC start)
    raw/list/<listing_id>/complete.json     written when that listing reached the end of the history
    raw/activities/<id>.json                one DetailedActivity, bytes exactly as received
    raw/streams/<id>.json                   one StreamSet (when streams are requested)
    state/*.json                            small state files (tombstones, fetched index, failures, ...)
    auth/tokens.json                        the token store (see bulkfetch.auth), mode 0600
    bulkfetch.log                           plain log lines of every run, no secrets

Every file is written to a temporary name in the same folder, then `os.replace`d: a file that exists is
complete, and a SIGKILL at any moment leaves at most a temporary file, which is ignored and swept.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bulkfetch.errors import LockedError, StorageError, WriteError

TEMP_MARK = ".tmp-"
LISTING_COMPLETE = "complete.json"
PAGE_PREFIX = "page-"


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a part.

    The file and its folder are fsynced: the write survives power loss, not only a killed process.
    A failed write (disk full, I/O error) removes its temporary file and raises WriteError.
    """
    temp = path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise WriteError(_describe_write_error(path, exc), hint=_write_hint(exc)) from None


def fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable (the folder's entry list is data too)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _describe_write_error(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return f"disk full while writing {path}"
    return f"cannot write {path} ({exc.strerror or exc})"


def _write_hint(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free some space and rerun: nothing written so far is lost"
    return "check the folder and rerun: nothing written so far is lost"


def is_temp_file(path: Path) -> bool:
    return path.name.startswith(".") and TEMP_MARK in path.name


def read_json(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


@dataclass(frozen=True)
class Tombstone:
    """An activity that is gone: 404 on its detail, or no longer in a complete listing."""

    reason: str  # "not_found" or "unlisted"
    at: float


class Listing:
    """One pass over `GET /athlete/activities`: its raw pages, in order."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.listing_id = folder.name

    def page_paths(self) -> list[Path]:
        return sorted(p for p in self.folder.glob(f"{PAGE_PREFIX}*.json") if not is_temp_file(p))

    def write_page(self, number: int, raw: bytes) -> None:
        atomic_write(self.folder / f"{PAGE_PREFIX}{number:05d}.json", raw)

    def pages(self) -> Iterator[list[dict[str, Any]]]:
        for path in self.page_paths():
            yield read_json(path)

    @property
    def is_complete(self) -> bool:
        return (self.folder / LISTING_COMPLETE).exists()

    def mark_complete(self, activity_count: int) -> None:
        info = {"activities": activity_count, "pages": len(self.page_paths()), "finished_at": time.time()}
        atomic_write(self.folder / LISTING_COMPLETE, orjson.dumps(info))


class RawStore:
    """The folders under `data_dir` and the only code that names their files."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.list_dir = data_dir / "raw" / "list"
        self.detail_dir = data_dir / "raw" / "activities"
        self.stream_dir = data_dir / "raw" / "streams"
        self.state_dir = data_dir / "state"
        self.auth_dir = data_dir / "auth"
        self.log_path = data_dir / "bulkfetch.log"

    # -- setup -------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Create the folders, check they are writable, and sweep temporary files a crash left."""
        for folder in (self.list_dir, self.detail_dir, self.stream_dir, self.state_dir):
            ensure_dir(folder)
        ensure_dir(self.auth_dir, mode=0o700)
        probe = self.state_dir / f".probe{TEMP_MARK}{os.getpid()}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StorageError(f"{self.state_dir} is not writable ({exc.strerror})",
                               hint="fix its permissions or set [storage] data_dir") from None
        self.sweep_temp_files()

    def sweep_temp_files(self) -> int:
        removed = 0
        for folder in (self.detail_dir, self.stream_dir, self.state_dir, self.auth_dir, *self._listing_dirs()):
            for path in _safe_iterdir(folder):
                if is_temp_file(path):
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed

    # -- details -----------------------------------------------------------------------------------
    def detail_path(self, activity_id: int) -> Path:
        return self.detail_dir / f"{activity_id}.json"

    def write_detail(self, activity_id: int, raw: bytes) -> None:
        atomic_write(self.detail_path(activity_id), raw)

    def detail_ids(self) -> set[int]:
        return _ids_in(self.detail_dir)

    def stream_path(self, activity_id: int) -> Path:
        return self.stream_dir / f"{activity_id}.json"

    def write_streams(self, activity_id: int, raw: bytes) -> None:
        atomic_write(self.stream_path(activity_id), raw)

    def stream_ids(self) -> set[int]:
        return _ids_in(self.stream_dir)

    def no_streams_path(self, activity_id: int) -> Path:
        return self.stream_dir / f"{activity_id}.none"

    def mark_no_streams(self, activity_id: int) -> None:
        """The activity has no streams (404 or an empty answer): remembered so it is never asked again."""
        atomic_write(self.no_streams_path(activity_id), b"")

    def no_stream_ids(self) -> set[int]:
        return _ids_in(self.stream_dir, suffix=".none")

    def forget_streams(self, activity_id: int) -> None:
        self.stream_path(activity_id).unlink(missing_ok=True)
        self.no_streams_path(activity_id).unlink(missing_ok=True)

    # -- listings ----------------------------------------------------------------------------------
    def _listing_dirs(self) -> list[Path]:
        return sorted(p for p in _safe_iterdir(self.list_dir) if p.is_dir())

    def listings(self) -> list[Listing]:
        """All listings on disk, oldest first (listing ids sort by their start time)."""
        return [Listing(folder) for folder in self._listing_dirs()]

    def new_listing(self, started_at: float) -> Listing:
        """A new listing folder, named `<sequence>-<UTC start>` so that names sort in creation order."""
        existing = [int(p.name.split("-", 1)[0]) for p in self._listing_dirs() if p.name.split("-", 1)[0].isdigit()]
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started_at))
        folder = self.list_dir / f"{max(existing, default=0) + 1:06d}-{stamp}"
        ensure_dir(folder)
        return Listing(folder)

    def unfinished_listing(self) -> Listing | None:
        """The newest listing if it never completed (a killed run): the next run continues it."""
        listings = self.listings()
        return listings[-1] if listings and not listings[-1].is_complete else None

    def latest_complete_listing(self) -> Listing | None:
        complete = [listing for listing in self.listings() if listing.is_complete]
        return complete[-1] if complete else None

    def prune_listings(self) -> None:
        """Keep the newest complete listing and anything newer; older ones are superseded."""
        listings = self.listings()
        complete = [i for i, listing in enumerate(listings) if listing.is_complete]
        if not complete:
            return
        for listing in listings[: complete[-1]]:
            for path in _safe_iterdir(listing.folder):
                path.unlink(missing_ok=True)
            listing.folder.rmdir()

    def catalog(self) -> dict[int, dict[str, Any]]:
        """Every known activity summary by id: the newest complete listing, overlaid by a newer partial one.

        Tombstoned activities are left out.
        """
        summaries: dict[int, dict[str, Any]] = {}
        listings = self.listings()
        complete = [i for i, listing in enumerate(listings) if listing.is_complete]
        start = complete[-1] if complete else 0
        for listing in listings[start:]:
            for page in listing.pages():
                for item in page:
                    if isinstance(item, dict) and is_activity_id(item.get("id")):
                        summaries[item["id"]] = item
        gone = self.tombstones()
        return {activity_id: s for activity_id, s in summaries.items() if activity_id not in gone}

    # -- state files -------------------------------------------------------------------------------
    def state_path(self, name: str) -> Path:
        return self.state_dir / f"{name}.json"

    def read_state(self, name: str, default: Any = None) -> Any:
        try:
            return read_json(self.state_path(name))
        except (FileNotFoundError, NotADirectoryError):
            return default
        except orjson.JSONDecodeError:
            # Written atomically, so this is damage from outside: start that state afresh.
            return default

    def write_state(self, name: str, value: Any) -> None:
        atomic_write(self.state_path(name), orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))

    def tombstones(self) -> dict[int, Tombstone]:
        raw = self.read_state("tombstones", {})
        return {int(k): Tombstone(reason=v["reason"], at=v["at"]) for k, v in raw.items()}

    def add_tombstones(self, activity_ids: Iterable[int], reason: str, at: float) -> None:
        current = self.read_state("tombstones", {})
        added = {str(i): {"reason": reason, "at": at} for i in activity_ids if str(i) not in current}
        if added:
            self.write_state("tombstones", {**current, **added})

    def lift_tombstones(self, activity_ids: Iterable[int]) -> None:
        """An activity listed again (e.g. made public again, or a 404 that was transient) is alive."""
        current = self.read_state("tombstones", {})
        alive = set(activity_ids)
        keep = {k: v for k, v in current.items() if int(k) not in alive}
        if len(keep) != len(current):
            self.write_state("tombstones", keep)


@contextmanager
def exclusive_lock(data_dir: Path) -> Iterator[None]:
    """Hold `<data_dir>/fetch.lock` for one run; a second run gets a LockedError naming the first's PID.

    An flock dies with its process, so a lock file left by a killed run is simply taken over.
    """
    path = data_dir / "fetch.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:  # a read-only file system, or no permission
        raise StorageError(f"{data_dir} is not writable ({exc.strerror})",
                           hint="fix its permissions or set [storage] data_dir") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise LockedError(f"another bulkfetch fetch (PID {holder}) is using {data_dir}",
                              hint="wait for it to finish or stop it; two runs would spend the quota twice") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError as exc:  # the disk is full: say so, as every other write does
            raise WriteError(_describe_write_error(path, exc), hint=_write_hint(exc)) from None
        yield
    finally:
        os.close(fd)


def ensure_dir(folder: Path, mode: int = 0o755) -> None:
    """Create `folder` (and parents), or raise a one-line StorageError saying why it cannot be used."""
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=mode)
    except FileExistsError:
        raise StorageError(f"{folder} is a file, not a folder",
                           hint="move it away or point [storage] at another folder") from None
    except NotADirectoryError:
        raise StorageError(f"{folder}: a file stands where a folder should be",
                           hint="move it away or point [storage] at another folder") from None
    except PermissionError:
        raise StorageError(f"cannot create {folder}: permission denied",
                           hint="fix its permissions or point [storage] at another folder") from None
    except OSError as exc:
        raise StorageError(f"cannot create {folder} ({exc.strerror})") from None
    if not folder.is_dir():
        raise StorageError(f"{folder} is a file, not a folder",
                           hint="move it away or point [storage] at another folder")


def _safe_iterdir(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _ids_in(folder: Path, suffix: str = ".json") -> set[int]:
    ids = set()
    for path in _safe_iterdir(folder):
        if path.suffix == suffix and not is_temp_file(path) and path.stem.isdigit():
            ids.add(int(path.stem))
    return ids


MAX_ACTIVITY_ID = 2**63 - 1  # the Parquet id columns are int64


def is_activity_id(value: Any) -> bool:
    """Strava ids are positive integers (beyond 2^32, within int64); anything else cannot name a file
    safely or be a Parquet id (JSON allows integers up to 2^64 - 1, which int64 cannot hold)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ACTIVITY_ID
