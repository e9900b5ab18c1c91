"""The athletes of a data_dir: a folder each, and the move there from the one-athlete layout.

    data_dir/athletes/<athlete_id>/raw, state, auth   one athlete's RawStore (see bulkfetch.store)
    data_dir/athletes/unbound/                          an older data_dir that never learned its athlete
    data_dir/athletes/seed-<digest>/auth/               the config's refresh_token seed, not used yet
    data_dir/athletes/removed.json                      athletes `bulkfetch athletes remove` disconnected
    data_dir/fetch.lock, data_dir/bulkfetch.log         the data_dir's lock and log

A folder without an athlete id ("unbound") holds tokens whose athlete the next fetch learns with one
`GET /athlete`, then `bind` renames it. Before this layout a data_dir held one athlete at its top
(`raw/`, `state/`, `auth/`): `migrate` moves those folders into the athlete's, one rename each, under
the data_dir lock. A kill between renames leaves a marker naming the destination, so the next run
finishes the move; nothing is copied, nothing is requested.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import orjson

from bulkfetch.auth import Tokens, TokenStore, digest
from bulkfetch.errors import StorageError
from bulkfetch.export_paths import has_export
from bulkfetch.ids import is_strava_id, parse_id
from bulkfetch.store import ATHLETES_FOLDER, RawStore, atomic_write, ensure_dir, fsync_dir, read_json

UNBOUND = "unbound"
SEED_PREFIX = "seed-"
LEGACY_FOLDERS = ("raw", "auth", "state")  # a data_dir's top-level folders before this layout
MIGRATING = ".migrating"  # the destination of an unfinished move, under athletes/
TOKENS = "tokens.json"
REMOVALS = "removed.json"  # under athletes/: {"<athlete id>": {"at": epoch s, "seed_digests": [...], "name": ...}}


@dataclass(frozen=True)
class Removal:
    """An athlete `bulkfetch athletes remove` disconnected. Kept beside the folders, so that it outlives
    a purged folder: `seed_digests` are the config seeds that led to its tokens, never bound again."""

    at: float
    seed_digests: tuple[str, ...] = ()
    name: str | None = None  # the name its tokens had, still shown by `bulkfetch athletes`


@dataclass(frozen=True)
class AthleteDir:
    """One athlete's folder; `athlete_id` is None until its athlete is known (see `Roster.bind`)."""

    folder: Path
    athlete_id: int | None

    @property
    def store(self) -> RawStore:
        return RawStore(self.folder)

    @property
    def tokens(self) -> TokenStore:
        return TokenStore(self.folder / "auth" / TOKENS)

    @property
    def label(self) -> str:
        if self.athlete_id is not None:
            return f"athlete {self.athlete_id}"
        if self.folder.name.startswith(SEED_PREFIX):
            return "the config's refresh_token"
        return f"the account in {self.folder.name}"


class Roster:
    """The athlete folders under `data_dir`. Reading never writes; `migrate` and `bind` need the lock."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.folder = data_dir / ATHLETES_FOLDER

    # -- reading -------------------------------------------------------------------------------------
    def athletes(self) -> list[AthleteDir]:
        """Every athlete folder, by id, the unbound ones last. A data_dir not migrated yet shows its one
        athlete at its top, so that read-only commands (`status`) need not move anything."""
        if self.needs_migration() and any((self.data_dir / name).is_dir() for name in LEGACY_FOLDERS):
            return [AthleteDir(self.data_dir, _legacy_athlete_id(self.data_dir))]
        found = []
        for path in _subfolders(self.folder):
            if (athlete_id := parse_id(path.name)) is not None:
                found.append(AthleteDir(path, athlete_id))
            elif path.name == UNBOUND or path.name.startswith(SEED_PREFIX):
                found.append(AthleteDir(path, None))
        return sorted(found, key=lambda a: (a.athlete_id is None, a.athlete_id or 0, a.folder.name))

    def athlete(self, athlete_id: int) -> AthleteDir:
        return AthleteDir(self.folder / str(athlete_id), athlete_id)

    def removals(self) -> dict[int, Removal]:
        return read_removals(self.folder)

    def needs_migration(self) -> bool:
        for name in LEGACY_FOLDERS:  # a stray file there is said, not silently left beside the athletes
            if (self.data_dir / name).exists() and not (self.data_dir / name).is_dir():
                raise StorageError(f"{self.data_dir / name} is a file, not a folder",
                                   hint="move it away or point [storage] at another folder")
        return (self.folder / MIGRATING).exists() or any((self.data_dir / name).is_dir() for name in LEGACY_FOLDERS)

    # -- changing (the caller holds the data_dir lock) -----------------------------------------------
    def migrate(self) -> AthleteDir | None:
        """Move a one-athlete data_dir's folders into its athlete's folder (resumably); the athlete
        moved, or None when there was nothing to move."""
        if not self.needs_migration():
            return None
        ensure_dir(self.folder)
        marker = self.folder / MIGRATING
        if marker.exists():
            name = marker.read_text(encoding="utf-8").strip()
        else:
            athlete_id = _legacy_athlete_id(self.data_dir)
            name = UNBOUND if athlete_id is None else str(athlete_id)
            atomic_write(marker, name.encode())
        target = self.folder / name
        ensure_dir(target)
        for folder_name in LEGACY_FOLDERS:
            source, destination = self.data_dir / folder_name, target / folder_name
            if not source.is_dir():
                continue
            if destination.exists():
                raise StorageError(f"both {source} and {destination} exist: the move to the per-athlete layout"
                                   " cannot tell which to keep",
                                   hint=f"move one of them aside, then rerun (the other stays in {target})")
            os.replace(source, destination)
        fsync_dir(self.data_dir)
        fsync_dir(target)
        marker.unlink()
        return AthleteDir(target, parse_id(name))

    def add_seed(self, seed: str) -> AthleteDir | None:
        """The config's refresh_token, when no athlete is connected yet: a folder of its own, bound at the
        next fetch. Once an athlete is connected the stored chain wins; the seed is only that athlete's
        fallback, in a data_dir of one athlete (see `bulkfetch.token_refresh.TokenManager`)."""
        athletes = self.athletes()
        if not seed or any(athlete.tokens.load() is not None for athlete in athletes):
            return None
        seed_digest = digest(seed)
        removals = self.removals()
        if any(seed_digest in removal.seed_digests for removal in removals.values()):
            return None  # a removed athlete's seed: the config still names it, the athlete stays removed
        # A one-athlete data_dir that kept no tokens ran on this seed: the seed is its athlete's (a fetch
        # refuses it, before writing anything, if its list names another athlete). Not an export imported
        # before its athlete was known and never listed: whose it is, is learned from the lists (see
        # bulkfetch.export_adopt), not from whichever token comes first.
        alone = len(athletes) == 1 and athletes[0].athlete_id not in removals and not import_only(athletes[0])
        unbound = athletes[0] if alone else AthleteDir(self.folder / f"{SEED_PREFIX}{seed_digest}", None)
        unbound.tokens.save(Tokens(refresh_token=seed, seed_digest=seed_digest))
        return unbound

    def connect(self, tokens: Tokens) -> AthleteDir:
        """Store an authorized athlete's tokens (a new athlete, or new tokens for a connected one)."""
        athlete = self.athlete(tokens.athlete_id) if tokens.athlete_id is not None else \
            AthleteDir(self.folder / UNBOUND, None)
        athlete.tokens.save(tokens)
        forget_access(athlete)  # re-authorized: not revoked any more
        return athlete

    def record_removal(self, athlete_id: int, removal: Removal) -> None:
        removals = {**self.removals(), athlete_id: removal}
        ensure_dir(self.folder)
        atomic_write(self.folder / REMOVALS, orjson.dumps(
            {str(i): {"at": r.at, "seed_digests": list(r.seed_digests), "name": r.name}
             for i, r in sorted(removals.items())}))

    def drop_rejected_seed(self, unbound: AthleteDir) -> None:
        """A seed Strava rejects (an old token, rotated long ago) goes, unless its folder holds data: it is
        made again, and tried once more, only while no athlete is connected (see `add_seed`)."""
        if unbound.folder.name.startswith(SEED_PREFIX) and not _holds_data(unbound):
            shutil.rmtree(unbound.folder, ignore_errors=True)

    def bind(self, unbound: AthleteDir, athlete_id: int) -> AthleteDir:
        """`unbound`'s athlete is `athlete_id`: rename its folder, or, when that athlete has a folder
        already, give it `unbound`'s newer tokens (a re-connection) and drop `unbound` if it holds no data."""
        bound = self.athlete(athlete_id)
        if not bound.folder.exists():
            os.replace(unbound.folder, bound.folder)
            fsync_dir(self.folder)
            return bound
        if _holds_data(unbound):
            raise StorageError(f"{unbound.folder} and {bound.folder} both hold athlete {athlete_id}'s data",
                               hint=f"remove the older of the two (the newer tokens are in {unbound.folder})")
        if unbound.store.listings() and not bound.store.listings():  # e.g. known from an import alone
            _move_listings(unbound, bound)  # the listing that named the athlete is theirs: not made again
        tokens = unbound.tokens.load()
        if tokens is not None:
            bound.tokens.save(replace(tokens, athlete_id=athlete_id))
            forget_access(bound)  # connected again: not revoked any more
        shutil.rmtree(unbound.folder)
        return bound


def read_removals(athletes_folder: Path) -> dict[int, Removal]:
    try:
        data = read_json(athletes_folder / REMOVALS)
    except (OSError, ValueError):  # none yet (or damaged from outside: nobody is removed then)
        return {}
    if not isinstance(data, dict):
        return {}
    found = {}
    for key, value in data.items():
        athlete_id = parse_id(key)
        if athlete_id is not None and isinstance(value, dict) and isinstance(value.get("at"), (int, float)):
            digests = value.get("seed_digests") if isinstance(value.get("seed_digests"), list) else []
            name = value.get("name") if isinstance(value.get("name"), str) else None
            found[athlete_id] = Removal(float(value["at"]), tuple(d for d in digests if isinstance(d, str)), name)
    return found


def is_removed(athlete: AthleteDir) -> bool:
    """Removed, and not connected again since (`auth` stores new tokens; the record may stay)."""
    in_roster = athlete.folder.parent.name == ATHLETES_FOLDER  # else a one-athlete data_dir's top
    return in_roster and athlete.athlete_id in read_removals(athlete.folder.parent) and athlete.tokens.load() is None


def _legacy_athlete_id(data_dir: Path) -> int | None:
    """The athlete a one-athlete data_dir recorded (its first list page), else its tokens' (after `auth`)."""
    for path, key in ((data_dir / "state" / "athlete.json", "athlete_id"), (data_dir / "auth" / TOKENS, "athlete_id")):
        try:
            value = read_json(path).get(key)
        except (OSError, ValueError, AttributeError):
            continue
        if is_strava_id(value):
            return value
    return None


def _move_listings(source: AthleteDir, target: AthleteDir) -> None:
    """Give `target`, which has no listing, `source`'s listings (their folder, renamed whole)."""
    shutil.rmtree(target.store.list_dir, ignore_errors=True)  # no listing in it: at most a temporary file
    target.store.list_dir.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source.store.list_dir, target.store.list_dir)
    fsync_dir(target.store.list_dir.parent)


def _holds_data(athlete: AthleteDir) -> bool:
    """Details are what costs requests, and an imported export is the athlete's own; a listing is cheap to
    make again."""
    return bool(athlete.store.detail_ids()) or has_export(athlete.folder)


def import_only(athlete: AthleteDir) -> bool:
    """Whether the athlete is known from an imported account export alone (never listed here)."""
    return has_export(athlete.folder) and not athlete.store.listings()


def _subfolders(folder: Path) -> list[Path]:
    try:
        return [path for path in folder.iterdir() if path.is_dir() and not path.name.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        return []


# -- what the last run could do for an athlete -----------------------------------------------------------
OK = "ok"
REVOKED = "revoked"  # the refresh token (or a fresh access token) is rejected: access was revoked
SCOPE_MISSING = "scope_missing"  # the token lacks activity:read: re-authorize with the box ticked
REMOVED = "removed"  # `bulkfetch athletes remove` forgot its tokens: no run serves it, its data is kept
IMPORT_ONLY = "import only"  # `bulkfetch athletes`: known from its export alone, no run serves it until `auth`
ACCESS_STATE = "access"  # state/access.json: {"state": ..., "why": ..., "at": epoch s} of the last run


def record_access(athlete: AthleteDir, state: str, why: str | None, at: float) -> None:
    athlete.store.write_state(ACCESS_STATE, {"state": state, "why": why, "at": at})


def access_of(athlete: AthleteDir) -> dict[str, object]:
    """The athlete's state after its last run ({"state": "ok", ...} when it never ran), or REMOVED (with
    the time of its last run) once `bulkfetch athletes remove` has forgotten its tokens."""
    saved = athlete.store.read_state(ACCESS_STATE)
    if not (isinstance(saved, dict) and saved.get("state") in (OK, REVOKED, SCOPE_MISSING)):
        saved = {"state": OK, "why": None, "at": None}
    if is_removed(athlete):
        return {**saved, "state": REMOVED, "why": "removed with 'bulkfetch athletes remove'"}
    return saved


def forget_access(athlete: AthleteDir) -> None:
    athlete.store.state_path(ACCESS_STATE).unlink(missing_ok=True)
