"""Raw checkpoints on disk: the source of truth every later step (resume, compaction) reads.

Layout under an athlete's folder, `data_dir/athletes/<athlete_id>/` (see bulkfetch.roster; the
data_dir itself holds `fetch.lock` and `bulkfetch.log`):

    raw/list/<listing_id>/listing.json      what the listing is: full, or routine (and where it may stop)
    raw/list/<listing_id>/page-00001.json   list pages, bytes exactly as received (id: sequence-UTC start)
    raw/list/<listing_id>/complete.json     written when that listing got as far as it had to (and whether
                                            its token saw private activities)
    raw/activities/<id>.json                one DetailedActivity, bytes exactly as received
    raw/streams/<id>.json                   one StreamSet (when streams are requested); <id>.none: it has none
    quarantine/activities/<id>.json         a raw file compaction found damaged, moved aside (see `set_aside`);
    quarantine/streams/<id>.json            never read again, never deleted: the user's to look at
    state/*.json                            small state files (tombstones, fetched index, failures, ...)
    state/listings/<listing_id>.json        what the catalog reads of each of a listing's pages (a cache:
                                            see `ListingIndex`)
    auth/tokens.json                        the token store (see bulkfetch.auth), mode 0600

Every file is written to a temporary name in the same folder, then `os.replace`d: a file that exists is
complete, and a SIGKILL at any moment leaves at most a temporary file, which is ignored, and swept by
the next run that takes the data_dir lock (see bulkfetch.locks.data_dir_lock).
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from itertools import repeat
from pathlib import Path
from typing import Any, TypeVar

import orjson

from bulkfetch.errors import StorageError, WriteError
from bulkfetch.ids import MAX_ID_DIGITS, is_strava_id, parse_id
from bulkfetch.listed_summary import (
    CHANGE_FIELDS,
    KNOWN_FIELDS,
    ListedSummary,
    ListPage,
    fingerprint,
    full_summary,
    recording_fingerprint,
    start_epoch,
)
from bulkfetch.pids import alive
from bulkfetch.recording import RECORDING_FIELDS

TEMP_MARK = ".tmp-"
LISTING_COMPLETE = "complete.json"
LISTING_META = "listing.json"
PAGE_PREFIX = "page-"
# Pages a routine listing asked for to find activities that left its range (see pipeline._look_up_vanished).
LOOKUP_PREFIX = "lookup-"
FULL_LISTING = {"kind": "full"}
# Tombstone reasons: "unlisted" is a deletion (gone from a listing that covered it) and leaves the
# catalog; "not_found" is a listed activity whose detail answered 404: it stays in the catalog.
UNLISTED = "unlisted"
NOT_FOUND = "not_found"
ATHLETES_FOLDER = "athletes"  # data_dir/athletes/<id>/: one RawStore per athlete (see bulkfetch.roster)
QUARANTINE = "quarantine"  # data_dir/athletes/<id>/quarantine/: damaged raw files moved aside (see set_aside)
LISTING_INDEXES = "listings"  # state/listings/<listing_id>.json: see ListingIndex
# What a listing index's entries are made by: another version, or fields of another meaning, makes them stale.
INDEX_FORMAT = [1, list(CHANGE_FIELDS), list(RECORDING_FIELDS), list(KNOWN_FIELDS)]
# A page changed within this many seconds of its indexing is not indexed: one changed again within the
# clock's resolution would keep its mtime (the index is rebuilt from it at the next run instead).
INDEX_RACY_S = 2.0
_S = TypeVar("_S")  # what a catalog part holds per activity


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
        raise WriteError(describe_write_error(path, exc), hint=write_hint(exc)) from None


def fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable (the folder's entry list is data too)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def describe_write_error(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return f"disk full while writing {path}"
    return f"cannot write {path} ({exc.strerror or exc})"


def write_hint(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free some space and rerun: nothing written so far is lost"
    return "check the folder and rerun: nothing written so far is lost"


def _free_name(path: Path, folder: Path) -> Path:
    """Where `path` goes in `folder`: under its name or, if that is taken, `<stem>-<n><suffix>`, so that an
    earlier file set aside stays (only the athlete's compaction, under its lock, writes there)."""
    target, number = folder / path.name, 1
    while target.exists():
        number += 1
        target = folder / f"{path.stem}-{number}{path.suffix}"
    return target


def _put_back(moved: Path, path: Path) -> None:
    """Return a file moved aside by mistake to `path`, unless a newer one took its place meanwhile."""
    try:
        os.link(moved, path)
    except FileExistsError:
        pass
    moved.unlink()


def is_temp_file(path: Path) -> bool:
    return path.name.startswith(".") and TEMP_MARK in path.name


def is_orphaned_temp(path: Path) -> bool:
    """A temporary file whose writer (the PID in its name) is gone: safe to sweep. One a live process
    is writing is never touched, whoever sweeps (e.g. `auth` saving a rotated token during a fetch)."""
    if not is_temp_file(path):
        return False
    writer = path.name.rsplit(TEMP_MARK, 1)[1].split("-", 1)[0]
    return not writer.isdigit() or not alive(int(writer))


def read_json(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


@dataclass(frozen=True)
class Tombstone:
    """An activity that is gone (UNLISTED), or whose detail is (NOT_FOUND)."""

    reason: str
    at: float
    # NOT_FOUND: the fingerprint of the summary the 404 answered (None: recorded before they were).
    fingerprint: str | None = None


class Listing:
    """One pass over `GET /athlete/activities`: its raw pages, in order.

    A full listing lists the whole history; a routine one only the newest activities (its meta says
    where it may stop). Listings from before routine ones existed have no meta: they are full.
    """

    def __init__(self, folder: Path, index: Path | None = None) -> None:
        self.folder = folder
        self.listing_id = folder.name
        self.index = index  # its ListingIndex file (None: none kept, every read parses its pages)

    @property
    def meta(self) -> dict[str, Any]:
        try:
            meta = read_json(self.folder / LISTING_META)
        except FileNotFoundError:
            return dict(FULL_LISTING)
        except (OSError, orjson.JSONDecodeError):
            meta = None
        # Damaged from outside: never taken for a whole history, which would hide every older activity.
        return meta if isinstance(meta, dict) else {"kind": "unknown"}

    @property
    def is_full(self) -> bool:
        return self.meta.get("kind") == FULL_LISTING["kind"]

    def write_meta(self, meta: dict[str, Any]) -> None:
        atomic_write(self.folder / LISTING_META, orjson.dumps(meta))

    def page_paths(self) -> list[Path]:
        return sorted(p for p in self.folder.glob(f"{PAGE_PREFIX}*.json") if not is_temp_file(p))

    def write_page(self, number: int, raw: bytes) -> None:
        atomic_write(self.folder / f"{PAGE_PREFIX}{number:05d}.json", raw)

    def pages(self) -> Iterator[list[dict[str, Any]]]:
        for path in self.page_paths():
            yield read_json(path)

    def write_lookup(self, number: int, raw: bytes) -> None:
        """A page listed to find one activity at its new place: part of the catalog, not of the paging."""
        atomic_write(self.folder / f"{LOOKUP_PREFIX}{number:05d}.json", raw)

    def lookup_paths(self) -> list[Path]:
        return sorted(p for p in self.folder.glob(f"{LOOKUP_PREFIX}*.json") if not is_temp_file(p))

    def lookups(self) -> list[list[dict[str, Any]]]:
        return [read_json(path) for path in self.lookup_paths()]

    @property
    def is_complete(self) -> bool:
        return (self.folder / LISTING_COMPLETE).exists()

    def mark_complete(self, activity_count: int, *, lists_private: bool = False) -> None:
        """Record that the listing got as far as it had to; `lists_private`: whether its token had
        activity:read_all, without which Strava lists no private ("Only You") activity (False, the
        default, claims nothing: see `lists_private`)."""
        info = {"activities": activity_count, "pages": len(self.page_paths()), "finished_at": time.time(),
                "lists_private": lists_private}
        atomic_write(self.folder / LISTING_COMPLETE, orjson.dumps(info))

    @property
    def lists_private(self) -> bool:
        """Whether the completed listing's token could see private activities; False when that was not
        recorded (a listing made before bulkfetch recorded it, or a damaged record): unknown, so nothing may
        be judged deleted from its absence."""
        try:
            return read_json(self.folder / LISTING_COMPLETE).get("lists_private") is True
        except (OSError, orjson.JSONDecodeError, AttributeError):
            return False

    @property
    def finished_at(self) -> float | None:
        """When the listing completed (epoch s), None if it did not (or the record is damaged)."""
        try:
            finished = read_json(self.folder / LISTING_COMPLETE).get("finished_at")
        except (OSError, orjson.JSONDecodeError, AttributeError):
            return None
        return float(finished) if isinstance(finished, (int, float)) else None


class RawStore:
    """The folders under `data_dir` and the only code that names their files."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.list_dir = data_dir / "raw" / "list"
        self.detail_dir = data_dir / "raw" / "activities"
        self.stream_dir = data_dir / "raw" / "streams"
        self.state_dir = data_dir / "state"
        self.quarantine_dir = data_dir / QUARANTINE
        self.auth_dir = data_dir / "auth"
        self.log_path = data_dir / "bulkfetch.log"

    # -- setup -------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Create the folders and check they are writable (temporary files are swept by `locks.data_dir_lock`)."""
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

    def sweep_temp_files(self) -> int:
        removed = 0
        folders = (self.detail_dir, self.stream_dir, self.state_dir, self.state_dir / LISTING_INDEXES, self.auth_dir)
        for folder in (*folders, *self._listing_dirs()):
            # Names, not Paths: the detail and stream folders hold a file per activity, and a run that
            # finds nothing new must not spend a Path object on each (see `_names`).
            for name in _names(folder):
                if TEMP_MARK in name and is_orphaned_temp(path := folder / name):
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
        """Store (or replace) a StreamSet; an earlier "no streams" answer is superseded by it."""
        atomic_write(self.stream_path(activity_id), raw)
        self.no_streams_path(activity_id).unlink(missing_ok=True)

    def stream_ids(self) -> set[int]:
        return _ids_in(self.stream_dir)

    def set_aside(self, path: Path, identity: tuple[int, int]) -> Path | None:
        """Move a damaged raw file (a detail or stream file) into the quarantine folder, under its folder's
        name (`quarantine/activities/<id>.json`; `<id>-2.json` and so on beside an earlier one, never replaced):
        the store then no longer has it, so the next fetch fetches it again, and the file stays for the user.
        Only while it is still the version that was found damaged (`identity`: size and mtime_ns); None when
        it is not (replaced by a fetch meanwhile, or gone). Moved first, checked after: a fetch may replace it
        any moment, and a good file moved by mistake goes back (unless a newer one is there already). The
        move is durable (both folders fsynced)."""
        folder = self.quarantine_dir / path.parent.name
        ensure_dir(folder)
        target = _free_name(path, folder)
        try:
            try:
                os.rename(path, target)
            except FileNotFoundError:
                return None
            info = target.stat()
            if (info.st_size, info.st_mtime_ns) != identity:
                _put_back(target, path)
                return None
            fsync_dir(folder)
            fsync_dir(path.parent)
        except OSError as exc:
            raise WriteError(f"cannot move the damaged {path} aside into {folder} ({exc.strerror or exc})",
                             hint="check the folder and rerun: nothing written so far is lost") from None
        return target

    def raw_bytes_reach(self, limit: int) -> bool:
        """Whether the detail and stream files hold at least `limit` bytes: counted until they do (a stat
        a file; a big history reaches the usual limits within a few hundred files)."""
        total = 0
        for folder in (self.detail_dir, self.stream_dir):
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        total += entry.stat().st_size
                        if total >= limit:
                            return True
            except FileNotFoundError:
                continue
        return False

    def no_streams_path(self, activity_id: int) -> Path:
        return self.stream_dir / f"{activity_id}.none"

    def mark_no_streams(self, activity_id: int) -> None:
        """The activity has no streams (404 or an empty answer): remembered so it is not asked again."""
        atomic_write(self.no_streams_path(activity_id), b"")

    def no_stream_ids(self) -> set[int]:
        return _ids_in(self.stream_dir, suffix=".none")

    # -- listings ----------------------------------------------------------------------------------
    def _listing_dirs(self) -> list[Path]:
        return sorted(p for p in _safe_iterdir(self.list_dir) if p.is_dir())

    def listings(self) -> list[Listing]:
        """All listings on disk, oldest first (listing ids sort by their start time)."""
        return [self._listing(folder) for folder in self._listing_dirs()]

    def _listing(self, folder: Path) -> Listing:
        return Listing(folder, self.state_dir / LISTING_INDEXES / f"{folder.name}.json")

    def new_listing(self, started_at: float, meta: dict[str, Any] = FULL_LISTING) -> Listing:
        """A new listing folder, named `<sequence>-<UTC start>` so that names sort in creation order.

        An unfinished newest listing without a page (a run killed as it began) is taken over instead:
        its meta may be missing, and nothing in it is worth resuming.
        """
        empty = self.unfinished_listing()
        if empty is not None and not empty.page_paths():
            empty.write_meta(meta)
            return empty
        existing = [int(p.name.split("-", 1)[0]) for p in self._listing_dirs() if p.name.split("-", 1)[0].isdigit()]
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started_at))
        folder = self.list_dir / f"{max(existing, default=0) + 1:06d}-{stamp}"
        ensure_dir(folder)
        listing = self._listing(folder)
        listing.write_meta(meta)
        return listing

    def unfinished_listing(self) -> Listing | None:
        """The newest listing if it never completed (a killed run): the next run continues it."""
        listings = self.listings()
        return listings[-1] if listings and not listings[-1].is_complete else None

    def latest_complete_listing(self) -> Listing | None:
        complete = [listing for listing in self.listings() if listing.is_complete]
        return complete[-1] if complete else None

    def latest_full_listing(self) -> Listing | None:
        """The newest complete full listing: the base of the catalog."""
        full = [listing for listing in self.listings() if listing.is_complete and listing.is_full]
        return full[-1] if full else None

    def _catalog_listings(self) -> list[Listing]:
        """The newest complete full listing and every listing after it, oldest first."""
        listings = self.listings()
        full = [i for i, listing in enumerate(listings) if listing.is_complete and listing.is_full]
        return listings[full[-1]:] if full else listings

    def prune_listings(self) -> None:
        """Drop what the catalog does not read: listings before the newest complete full one, and
        complete routine listings whose every activity a newer listing lists again."""
        listings = self.listings()
        needed = self._catalog_listings()
        later: set[int] = set()
        for listing in reversed(needed[1:]):
            ids = set(listed_activities(listing))
            if listing.is_complete and not listing.is_full and ids <= later:
                _remove_listing(listing)
            later |= ids
        for listing in listings[: len(listings) - len(needed)]:
            _remove_listing(listing)
        # An index written for a listing as it was removed (a `status` beside a fetch) is removed with it.
        indexes = self.state_dir / LISTING_INDEXES
        for name in _names(indexes):
            if name.endswith(".json") and not (self.list_dir / name.removesuffix(".json")).is_dir():
                (indexes / name).unlink(missing_ok=True)

    def catalog(self) -> dict[int, dict[str, Any]]:
        """Every known activity summary by id: the newest complete full listing, overlaid by every newer
        (routine or unfinished) listing. Deleted ("unlisted") activities are left out."""
        summaries: dict[int, dict[str, Any]] = {}
        for items in self.catalog_parts():
            summaries.update(items)
        return summaries

    def catalog_view(self) -> dict[int, ListedSummary]:
        """The catalog as a fetch decides from it, without parsing a list page its listing's index holds:
        each summary holds what the plan reads of it, and parses its page only if asked for more (see
        bulkfetch.listed_summary). Read-only: for summaries to change or serialise, `catalog`."""
        summaries: dict[int, ListedSummary] = {}
        for items in self._catalog_listed(lambda listing: [listed_activities(listing)]):
            summaries.update(items)
        return summaries

    def catalog_parts(self) -> Iterator[dict[int, dict[str, Any]]]:
        """The catalog in parts, each part's activities by id as parsed, in the order the catalog overlays
        them (an activity in several parts is the last one's); deleted ("unlisted") activities left out. A
        part is a list page, or a whole listing while `shared_listings` keeps it parsed anyway. For a caller
        that keeps less than the parsed summaries (compaction): each page can be dropped after its turn,
        where the whole catalog of 20,000 activities is about 90 MB parsed, which the allocator keeps after."""
        def parts(listing: Listing) -> Iterable[dict[int, dict[str, Any]]]:
            if _SHARED is None:
                return _listing_pages(listing)
            return [{i: full_summary(summary) for i, summary in listed_activities(listing).items()}]
        return self._catalog_listed(parts)

    def _catalog_listed(self, parts: Callable[[Listing], Iterable[dict[int, _S]]]) -> Iterator[dict[int, _S]]:
        """The `parts` of each listing the catalog overlays, oldest first, deleted activities left out."""
        gone = {i for i, tombstone in self.tombstones().items() if tombstone.reason == UNLISTED}
        for listing in self._catalog_listings():
            for items in parts(listing):
                yield {i: s for i, s in items.items() if i not in gone} if gone else items

    def catalog_digest(self) -> str:
        """A digest of what `catalog_parts` is made from, without parsing what the listings' indexes hold:
        the bytes of every list page and lookup it overlays, in its order, and the deleted activities it
        leaves out. Equal digests mean an equal catalog (the listings' names are left out: a routine
        listing that repeats the previous one's pages, pruned after it, leaves the digest as it was);
        listings of another shape giving the same catalog give another digest, which only costs a caller
        a closer look."""
        gone = sorted(i for i, tombstone in self.tombstones().items() if tombstone.reason == UNLISTED)
        parts = [orjson.dumps(gone).decode(), *map(listing_digest, self._catalog_listings())]
        return hashlib.sha256(" ".join(parts).encode()).hexdigest()

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
        return {int(k): Tombstone(reason=v["reason"], at=v["at"], fingerprint=v.get("fingerprint"))
                for k, v in raw.items()}

    def not_found(self) -> dict[int, str | None]:
        """Listed activities whose detail answered 404: id -> fingerprint of the summary it answered."""
        return {i: t.fingerprint for i, t in self.tombstones().items() if t.reason == NOT_FOUND}

    def add_tombstones(self, activity_ids: Iterable[int], reason: str, at: float,
                       fingerprint: str | None = None) -> None:
        """Record (or replace: a 404'd activity may be deleted later, or 404 again for a new summary)."""
        current = self.read_state("tombstones", {})
        entry: dict[str, Any] = {"reason": reason, "at": at}
        if fingerprint is not None:
            entry["fingerprint"] = fingerprint
        added = {str(i): entry for i in activity_ids}
        if added:
            self.write_state("tombstones", {**current, **added})

    def lift_tombstones(self, activity_ids: Iterable[int], reasons: Iterable[str]) -> None:
        """Listed again: an "unlisted" activity is alive (e.g. made public again); a full re-list also
        lifts "not_found", so that a 404 that was transient is asked again."""
        current = self.read_state("tombstones", {})
        alive, lifted = set(activity_ids), set(reasons)
        keep = {k: v for k, v in current.items() if int(k) not in alive or v.get("reason") not in lifted}
        if len(keep) != len(current):
            self.write_state("tombstones", keep)


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


def page_items(page: Any) -> dict[int, dict[str, Any]]:
    """A list page's activities by id; items that are not activities with a valid id are dropped."""
    if not isinstance(page, list):
        return {}
    return {item["id"]: item for item in page if isinstance(item, dict) and is_strava_id(item.get("id"))}


def listed_activities(listing: Listing) -> dict[int, ListedSummary]:
    """A listing's activities by id (a later page wins; lookups come after the paging), from its index (see
    `ListingIndex`); each listing made once per version of its files while `shared_listings` is on."""
    return (_index_listing(listing) if _SHARED is None else _shared_parse(listing)).activities


def listing_digest(listing: Listing) -> str:
    """A digest of a listing's pages and lookups, bytes as stored, in the order they are overlaid (see
    RawStore.catalog_digest): of each file's digest, as its index keeps it."""
    return (_index_listing(listing) if _SHARED is None else _shared_parse(listing)).digest


@dataclass(frozen=True)
class _ParsedListing:
    activities: dict[int, ListedSummary]
    digest: str  # listing_digest


def _shared_parse(listing: Listing) -> _ParsedListing:
    assert _SHARED is not None
    identity = _pages_identity(listing.folder)
    kept = _SHARED.get(listing.folder)
    if kept is None or kept[0] != identity:
        kept = _SHARED[listing.folder] = (identity, _index_listing(listing))
    return kept[1]


class ListingIndex:
    """The cache of what the catalog reads of a listing's pages, so that a run parses only the pages that
    are new or changed since (a fetch that finds nothing new parses one: 0.2 s less at 20,000 activities).

    Saved as `state/listings/<listing_id>.json`: INDEX_FORMAT, then per page or lookup file (by name) its
    identity (inode, size, mtime_ns: pages are replaced whole, by `atomic_write`, so a new version is a
    new inode), the sha256 of its bytes, and by column what its activities' `ListedSummary` objects hold
    (their known fields as an index into the page's few distinct sets of them: most activities share one).
    An entry is used only while its file's identity is the same; an index that is missing, unreadable, of
    another format, or whose columns are not such columns, counts as empty: its pages are parsed, as before
    there were indexes. It is written atomically, and not at all where it cannot be (`status` in a
    read-only data_dir): a cache.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.saved = _read_index(path)
        self.entries: dict[str, dict[str, Any]] = {}
        self._rebuilt = False

    def summaries(self, path: Path) -> tuple[str, dict[int, ListedSummary]]:
        """The digest and the activities of the page file at `path`: from its entry if current, else parsed
        (and its entry made, unless the file changed within INDEX_RACY_S)."""
        identity = file_identity(path)
        entry = self.saved.get(path.name)
        if identity is not None and isinstance(entry, dict) and entry.get("file") == list(identity):
            page = ListPage(partial(_page_at, path))  # parsed only if one of them is asked for more
            if (summaries := _indexed_summaries(entry, page)) is not None:
                self.entries[path.name] = entry
                return entry["digest"], summaries
        raw = path.read_bytes()
        items = page_items(orjson.loads(raw))
        entry = {"file": list(identity or ()), "digest": hashlib.sha256(raw).hexdigest(), **_columns(items)}
        if identity is not None and identity[2] < time.time_ns() - INDEX_RACY_S * 1e9:
            self.entries[path.name] = entry
            self._rebuilt = True
        summaries = _indexed_summaries(entry, ListPage(partial(_page_at, path), items))
        assert summaries is not None  # made just now
        return entry["digest"], summaries

    def save(self) -> None:
        """Write the index if it changed: an entry made, or one of a file no longer there (or racy) dropped."""
        if self.path is None or not (self._rebuilt or self.entries.keys() != self.saved.keys()):
            return
        try:
            self.path.parent.mkdir(exist_ok=True)
            atomic_write(self.path, orjson.dumps({"format": INDEX_FORMAT, "pages": self.entries}))
        except (OSError, WriteError):
            pass  # a cache: the next run that can write it does


def _index_listing(listing: Listing) -> _ParsedListing:
    """A listing's activities as ListedSummary objects and its digest, by way of its ListingIndex."""
    index = ListingIndex(listing.index)
    digest = hashlib.sha256()
    activities: dict[int, ListedSummary] = {}
    for path in [*listing.page_paths(), *listing.lookup_paths()]:
        page_digest, summaries = index.summaries(path)
        digest.update(page_digest.encode())
        activities.update(summaries)
    index.save()
    return _ParsedListing(activities, digest.hexdigest())


def _columns(items: dict[int, dict[str, Any]]) -> dict[str, list[Any]]:
    """A page's index columns (see ListingIndex): what ListedSummary takes of each of `items`."""
    kinds: list[dict[str, Any]] = []
    kind = []
    numbers: dict[bytes, int] = {}  # by the values' JSON: 1 and true are equal in Python, not here
    for summary in items.values():
        known = {key: summary[key] for key in KNOWN_FIELDS if key in summary}
        number = numbers.setdefault(orjson.dumps(known), len(kinds))
        if number == len(kinds):
            kinds.append(known)
        kind.append(number)
    values = items.values()
    return {"ids": list(items), "starts": [start_epoch(s) for s in values],
            "fingerprints": [fingerprint(s) for s in values], "recordings": [recording_fingerprint(s) for s in values],
            "kinds": kinds, "kind": kind}


def _indexed_summaries(entry: dict[str, Any], page: ListPage) -> dict[int, ListedSummary] | None:
    """The ListedSummary objects of a page's index entry, or None when it is not one (damage from outside)."""
    ids, kinds, kind = entry.get("ids"), entry.get("kinds"), entry.get("kind")
    columns = [ids, entry.get("starts"), entry.get("fingerprints"), entry.get("recordings"), kind]
    if not (isinstance(ids, list) and isinstance(entry.get("digest"), str) and isinstance(kinds, list)
            and all(isinstance(c, list) and len(c) == len(ids) for c in columns)
            and all(isinstance(k, dict) for k in kinds) and all(type(i) is int for i in ids)
            and all(type(k) is int and 0 <= k < len(kinds) for k in kind)):
        return None
    return dict(zip(ids, map(ListedSummary, *columns[:4], [kinds[k] for k in kind], repeat(page))))


def _read_index(path: Path | None) -> dict[str, Any]:
    """A ListingIndex file's entries by file name; empty when there is none, or none of this format."""
    if path is None:
        return {}
    try:
        saved = read_json(path)
    except (OSError, orjson.JSONDecodeError):
        return {}
    if not isinstance(saved, dict) or saved.get("format") != INDEX_FORMAT or not isinstance(saved.get("pages"), dict):
        return {}
    return saved["pages"]


def _page_at(path: Path) -> dict[int, dict[str, Any]]:
    """A list page's activities, parsed when a ListedSummary of it is asked for more than its index holds."""
    try:
        return page_items(read_json(path))
    except (OSError, orjson.JSONDecodeError) as exc:
        raise StorageError(f"cannot read the list page {path} ({exc})",
                           hint="rerun: the next fetch lists again what it needs") from None


def _listing_pages(listing: Listing) -> Iterator[dict[int, dict[str, Any]]]:
    """A listing's pages' activities by id (`page_items`), one page at a time: the paging, then the lookups."""
    for page in listing.pages():
        yield page_items(page)
    for page in listing.lookups():
        yield page_items(page)


# The parsed listings of the `shared_listings` scope, by folder, with the identity of the files they were
# parsed from; None: off, every read parses.
_SHARED: dict[Path, tuple[frozenset[tuple[str, int, int, int]], _ParsedListing]] | None = None


@contextmanager
def shared_listings() -> Iterator[None]:
    """Within this scope (a whole `fetch`: plan, listing, details, streams, compaction), a listing whose
    files are unchanged is parsed once: a run reads the catalog five times, and a full listing of 20,000
    activities is 0.3 s of parsing each time. Kept to a scope because it keeps the parsed summaries alive:
    `compact` alone frees them as it goes."""
    global _SHARED
    outer, _SHARED = _SHARED, {} if _SHARED is None else _SHARED
    try:
        yield
    finally:
        _SHARED = outer


def _pages_identity(folder: Path) -> frozenset[tuple[str, int, int, int]]:
    """What tells one version of a listing's pages and lookups from another: each file's name, inode, size
    and mtime (files are replaced whole, by `atomic_write`: a new version is a new inode). Its meta and
    complete.json are not parsed with them: writing those keeps the parse."""
    identity = set()
    for name in _names(folder):
        if not name.startswith((PAGE_PREFIX, LOOKUP_PREFIX)):
            continue  # a temporary file starts with a dot
        if (version := file_identity(folder / name)) is not None:
            identity.add((name, *version))
    return frozenset(identity)


def file_identity(path: Path) -> tuple[int, int, int] | None:
    """What tells one version of a file from another (None: no file): inode, size and mtime; files are
    replaced whole, by `atomic_write`, so a new version is a new inode."""
    try:
        stat = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _remove_listing(listing: Listing) -> None:
    for path in _safe_iterdir(listing.folder):
        path.unlink(missing_ok=True)
    listing.folder.rmdir()
    if listing.index is not None:
        listing.index.unlink(missing_ok=True)


def _safe_iterdir(folder: Path) -> list[Path]:
    return [folder / name for name in _names(folder)]


def _names(folder: Path) -> list[str]:
    """The names in `folder` ([] if it is not one): plain strings, about 10 x cheaper than Paths for the
    20,000 files of a long history's details."""
    try:
        return os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _ids_in(folder: Path, suffix: str = ".json") -> set[int]:
    """The ids of the files `<id><suffix>` in `folder` (a temporary file's name starts with a dot: no id)."""
    ids = set()
    cut = -len(suffix)
    for name in _names(folder):
        if not name.endswith(suffix):
            continue
        stem = name[:cut]
        # The names bulkfetch writes, told without parse_id's call (20,000 of them are a fetch's 10 ms):
        # fewer digits than MAX_ID has, none a leading zero, is an id.
        if stem.isdigit() and stem.isascii() and len(stem) < MAX_ID_DIGITS and stem[0] != "0":
            ids.add(int(stem))
        elif (activity_id := parse_id(stem)) is not None:
            ids.add(activity_id)
    return ids
