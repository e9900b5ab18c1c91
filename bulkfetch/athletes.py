"""`bulkfetch athletes`: whom a data_dir serves; removing an athlete; adopting another data_dir's.

* the list (reads only, so it runs beside a fetch): each athlete's id, name, listed / fetched / pending,
  last fetch and state (`ok`, `revoked`, `scope_missing`, `removed`, or `import only`);
* `remove ID`: deauthorizes the athlete at Strava (`POST <oauth_url>/deauthorize`), records the removal
  and forgets its tokens, so no run serves it again (a running fetch drops it at its next request, which
  the deauthorization makes fail); its data stays queryable, unless `--purge` deletes its raw folder and
  its Parquet partitions (under the data_dir lock);
* `adopt OTHER_DATA_DIR`: moves the athletes of another data_dir (one per athlete was the advice before a
  data_dir held many) into this one, without a request, under both data_dirs' locks.

Nothing here loses data when killed. A purge first renames what it deletes into a hidden folder (readers
see the athlete whole or not at all), and the next purge empties what a killed one left there. An adopt
first hides each athlete's folder in the other data_dir (`athletes/.adopting-<name>`), then renames it
into this one, or, across file systems, copies it to a hidden staging name here and renames that; the
next adopt of the same data_dir finishes what a killed one left hidden.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp

from bulkfetch.auth import digest
from bulkfetch.client import post_form
from bulkfetch.config import Config
from bulkfetch.errors import ApiError, AthleteRevoked, ConfigError, StorageError
from bulkfetch.ids import parse_id
from bulkfetch.parquet_layout import STAGING, athlete_folder
from bulkfetch.roster import UNBOUND, AthleteDir, Removal, Roster, import_only
from bulkfetch.schema import TABLES
from bulkfetch.status import athlete_report
from bulkfetch.store import ensure_dir, fsync_dir
from bulkfetch.token_refresh import TokenManager

ADOPTED = "adopted"  # state/adopted.json of an adopted athlete: {"from": its folder there, "at": epoch s}
ADOPTING = ".adopting-"  # an athlete folder an unfinished adopt is moving (hidden in both data_dirs)
PURGING = ".purging"  # what a purge deletes, renamed here first (in athletes/ and in parquet_dir)
UNKNOWN = "—"
HEADERS = ("name", "athlete", "listed", "fetched", "pending", "last fetch", "state", "export")
TEXT_COLUMNS = frozenset(HEADERS.index(h) for h in ("name", "last fetch", "state", "export"))  # left-aligned


# -- the list ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AthleteRow:
    """One line of `bulkfetch athletes` (its `--json` objects have these keys)."""

    athlete_id: int | None  # None: a folder whose athlete the next fetch learns
    name: str | None  # None: connected from the config's seed, whose athlete never said its name
    listed: int
    fetched: int
    pending: int
    last_fetch: str | None
    state: str  # as the table shows it: an import-only athlete's access state says nothing (it never ran)
    why: str | None
    import_only: bool  # no tokens and never listed: known from its account export alone
    export: dict[str, Any] | None  # what its import gave (status --json's `export`); None: no import


def athlete_rows(config: Config) -> list[AthleteRow]:
    roster = Roster(config.storage.data_dir)
    return [athlete_row(athlete, config, roster) for athlete in roster.athletes()]


def athlete_row(athlete: AthleteDir, config: Config, roster: Roster) -> AthleteRow:
    report = athlete_report(athlete, config)
    return AthleteRow(
        athlete_id=report["athlete_id"], name=_name_of(athlete, roster),
        listed=report["listed"], fetched=report["fetched"], pending=report["pending"],
        last_fetch=report["last_fetch"], state=report["state"],
        why=report["why"],
        import_only=report["import_only"], export=report["export"],
    )


def _name_of(athlete: AthleteDir, roster: Roster) -> str | None:
    """Its tokens keep its name; once removed, the removal record does."""
    tokens = athlete.tokens.load()
    if tokens is not None:
        return tokens.athlete_name
    removal = roster.removals().get(athlete.athlete_id) if athlete.athlete_id is not None else None
    return removal.name if removal else None


def table_cells(rows: list[AthleteRow]) -> list[tuple[str, ...]]:
    """The rows as the text table's cells, in HEADERS' order. An import-only athlete's API counts are
    UNKNOWN (`bulkfetch auth` connects it): it was never listed."""
    return [(row.name or UNKNOWN, UNKNOWN if row.athlete_id is None else str(row.athlete_id),
             *((UNKNOWN,) * 3 if row.import_only else (f"{row.listed:,}", f"{row.fetched:,}", f"{row.pending:,}")),
             row.last_fetch or "never", row.state,
             _export_cell(row.export)) for row in rows]


def _export_cell(export: dict[str, Any] | None) -> str:
    if export is None:
        return UNKNOWN
    decoded = export["files"]["ok"] + export["files"]["truncated"]
    return f"{export['activities']:,} activities, {decoded:,} files, imported {export['imported_at']}"


# -- remove --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Removed:
    athlete: AthleteDir
    name: str | None
    had_tokens: bool
    no_tokens_why: str | None  # without tokens: "removed already", "imported only" or "never connected here"
    deauthorized: bool  # False: it had no tokens, or Strava had dropped the app already
    purged: bool


def find_athlete(roster: Roster, athlete_id: int) -> AthleteDir:
    athletes = roster.athletes()
    for athlete in athletes:
        if athlete.athlete_id == athlete_id:
            return athlete
    known = ", ".join(str(a.athlete_id) for a in athletes if a.athlete_id is not None) or "none"
    raise ConfigError(f"athlete {athlete_id} is not in {roster.data_dir} (athletes: {known})",
                      hint="see 'bulkfetch athletes'")


async def remove(config: Config, athlete: AthleteDir, *, purge: bool, warn: Callable[[str], None]) -> Removed:
    """Disconnect `athlete` (the data_dir in the per-athlete layout); with `purge`, delete its data too
    (the caller holds the data_dir lock then). Strava unreachable, or no API credentials for an athlete
    with tokens: nothing changes (ApiError, ConfigError)."""
    assert athlete.athlete_id is not None
    roster = Roster(config.storage.data_dir)
    name = _name_of(athlete, roster)
    had_tokens = athlete.tokens.load() is not None
    no_tokens_why = None if had_tokens else "removed already" if athlete.athlete_id in roster.removals() else \
        "imported only" if import_only(athlete) else "never connected here"
    deauthorized = False
    if had_tokens:
        config.require_credentials()  # only a deauthorization asks Strava: one without tokens needs none
        deauthorized = await deauthorize(config, athlete, warn)
        roster.record_removal(athlete.athlete_id, Removal(time.time(), _seed_digests(roster, athlete, config), name))
        athlete.tokens.path.unlink(missing_ok=True)
    elif athlete.athlete_id not in roster.removals():  # it never held tokens here: removed all the same
        roster.record_removal(athlete.athlete_id, Removal(time.time(), (), name))
    if purge:
        purge_athlete(roster, athlete, config.storage.parquet_dir)
    return Removed(athlete, name, had_tokens, no_tokens_why, deauthorized, purge)


def removal_text(removed: Removed) -> str:
    """What `athletes remove` did: the tokens it forgot, or why the athlete had none."""
    label = removed.athlete.label + (f" ({removed.name})" if removed.name else "")
    if removed.had_tokens:
        strava = "deauthorized at Strava, " if removed.deauthorized else ""
        return f"removed {label}: {strava}tokens forgotten; no fetch serves it again"
    return f"{label} has no tokens here ({removed.no_tokens_why}): no fetch serves it"


def _seed_digests(roster: Roster, athlete: AthleteDir, config: Config) -> tuple[str, ...]:
    """The config seeds that would connect this athlete again: the one its token chain started from, and
    the config's own while it is the only connected athlete (a fetch falls back on it then)."""
    tokens = athlete.tokens.load()
    found = {tokens.seed_digest} if tokens and tokens.seed_digest else set()
    connected = [a.folder for a in roster.athletes() if a.tokens.load() is not None]
    if config.strava.refresh_token and connected == [athlete.folder]:
        found.add(digest(config.strava.refresh_token))
    return tuple(sorted(found))


async def deauthorize(config: Config, athlete: AthleteDir, warn: Callable[[str], None]) -> bool:
    """Ask Strava to drop the app's access for `athlete`, with a fresh access token if its own expired
    (https://developers.strava.com/docs/authentication/#deauthorization). False when Strava had dropped
    it already (the athlete revoked the app): the caller forgets the tokens all the same."""
    strava = replace(config.strava, refresh_token="")  # the config's seed must not stand in for this athlete
    async with aiohttp.ClientSession() as session:
        async def post(url: str, form: Mapping[str, str]) -> tuple[int, bytes]:
            return await post_form(session, strava, config.fetch, url, form, rng=random.Random())

        manager = TokenManager(athlete.tokens, strava, post, margin_s=config.fetch.refresh_margin_s)
        try:
            token = await manager.access_token()
        except AthleteRevoked:
            warn(f"{athlete.label}: Strava rejects its refresh token: it had dropped the app already")
            return False
        status, _ = await post(strava.oauth_url.rstrip("/") + "/deauthorize", {"access_token": token})
    if status in (400, 401):
        warn(f"{athlete.label}: Strava no longer accepts its access token (HTTP {status}): it had dropped the app"
             " already")
        return False
    if status != 200:
        raise ApiError(f"Strava answered HTTP {status} to the deauthorization of {athlete.label}; nothing changed",
                       hint="rerun 'bulkfetch athletes remove' later")
    return True


def purge_athlete(roster: Roster, athlete: AthleteDir, parquet_dir: Path) -> None:
    """Delete the athlete's Parquet partitions (staged ones too), then its folder (the caller holds the
    data_dir lock). Its folder goes last, so that a killed purge is found and finished by a rerun."""
    assert athlete.athlete_id is not None
    partitions = [root / table / athlete_folder(athlete.athlete_id)
                  for root in (parquet_dir, parquet_dir / STAGING) for table in TABLES]
    _discard([path for path in partitions if path.exists()], parquet_dir / PURGING)
    _discard([athlete.folder], roster.folder / PURGING)


def _discard(paths: list[Path], trash: Path) -> None:
    """Rename `paths` into `trash` (each vanishes whole for readers), then delete `trash` with what a
    killed purge left in it. `trash` is on the paths' file system: a rename never copies."""
    shutil.rmtree(trash, ignore_errors=True)
    if not paths:
        return
    ensure_dir(trash)
    for index, path in enumerate(paths):
        os.replace(path, trash / str(index))
        fsync_dir(path.parent)
    shutil.rmtree(trash)


# -- adopt ---------------------------------------------------------------------------------------------
def check_adoptable(roster: Roster, other: Roster) -> None:
    """Refuse, reading only: `other` is no folder, is this data_dir (or inside it, or around it), holds no
    athlete, or holds one that is here already. Said before any lock is taken, and again under them."""
    data_dir, other_dir = roster.data_dir, other.data_dir
    if not other_dir.is_dir():
        raise ConfigError(f"{other_dir} is not a folder", hint="name the data_dir to adopt")
    here, there = data_dir.resolve(), other_dir.resolve()
    if here == there:
        raise ConfigError(f"{other_dir} is this data_dir", hint="name another data_dir to adopt")
    if here.is_relative_to(there) or there.is_relative_to(here):
        raise ConfigError(f"{other_dir} and this data_dir ({data_dir}) are inside one another",
                          hint="name a data_dir of its own to adopt")
    incoming = [_name_here(athlete, other) for athlete in other.athletes()]
    if not incoming and not _unfinished(other) and not adopted_from(roster, other):
        raise ConfigError(f"{other_dir} holds no athlete (no raw/, state/ or athletes/<id>/ folder)",
                          hint="name a data_dir that 'bulkfetch fetch' or 'bulkfetch auth' has written")
    present = {_name_here(athlete, roster) for athlete in roster.athletes()}
    if clashes := sorted(name for name in incoming if name in present):
        raise ConfigError(f"athlete {', '.join(clashes)} is already in {data_dir}",
                          hint="remove it here first ('bulkfetch athletes remove ID --purge'), or keep both data_dirs")


def adopt(roster: Roster, other: Roster) -> list[AthleteDir]:
    """Move every athlete of `other` into `roster` (both data_dirs' locks held by the caller); refuses
    before moving anything when one of them is here already. The athletes now here, as moved."""
    check_adoptable(roster, other)
    finished = [_land(hidden, roster) for hidden in _unfinished(other)]
    roster.migrate()
    other.migrate()  # now each is in a folder of its own there, named as it will be here
    ensure_dir(roster.folder)
    moved = [_land(_hide(athlete, other), roster) for athlete in other.athletes()]
    _carry_removals(other, roster, finished + moved)
    # A killed adopt may have moved them all and been stopped before its compaction: the same command
    # finds them here and compacts them again.
    return finished + moved or adopted_from(roster, other)


def adopted_from(roster: Roster, other: Roster) -> list[AthleteDir]:
    """The athletes here that an adopt (maybe killed before it compacted) moved from `other`."""
    there = other.data_dir.resolve()
    return [athlete for athlete in roster.athletes() if athlete.folder != roster.data_dir
            and (source := _adopted_from(athlete.folder)) is not None and Path(source).resolve().is_relative_to(there)]


def _name_here(athlete: AthleteDir, roster: Roster) -> str:
    """The athlete's folder name under `athletes/`, also in a data_dir not moved to that layout yet."""
    if athlete.folder != roster.data_dir:
        return athlete.folder.name
    return UNBOUND if athlete.athlete_id is None else str(athlete.athlete_id)  # as `Roster.migrate` names it


def _unfinished(other: Roster) -> list[Path]:
    """Athlete folders a killed adopt hid in `other` before it could move them."""
    try:
        return sorted(path for path in other.folder.iterdir() if path.name.startswith(ADOPTING) and path.is_dir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _hide(athlete: AthleteDir, other: Roster) -> Path:
    """Rename the folder out of `other`'s sight (one rename, no copy), marked with where it came from."""
    hidden = other.folder / f"{ADOPTING}{athlete.folder.name}"
    os.replace(athlete.folder, hidden)
    fsync_dir(other.folder)
    store = AthleteDir(hidden, athlete.athlete_id).store
    ensure_dir(store.state_dir)  # a folder `auth` made holds tokens only
    store.write_state(ADOPTED, {"from": str(athlete.folder), "at": time.time()})
    return hidden


def _land(hidden: Path, roster: Roster) -> AthleteDir:
    """Move a hidden folder to its name here: a rename, or across file systems a copy to a hidden staging
    name renamed once whole. A target already here is this adopt's own finished copy, or a refusal."""
    name = hidden.name.removeprefix(ADOPTING)
    target = roster.folder / name
    if target.exists():
        if _adopted_from(target) is None or _adopted_from(target) != _adopted_from(hidden):
            raise StorageError(f"both {hidden} (an unfinished adopt) and {target} hold athlete {name}",
                               hint=f"keep one of the two; the adopt resumes once {hidden} is gone")
        shutil.rmtree(hidden)  # killed after its copy was renamed in: only the original was left to delete
    else:
        try:
            os.replace(hidden, target)
        except OSError as error:
            if error.errno != errno.EXDEV:
                raise StorageError(f"cannot move {hidden} to {target} ({error.strerror})",
                                   hint="check both folders' permissions, then run the adopt again") from None
            _copy_in(hidden, target)
    fsync_dir(roster.folder)
    return AthleteDir(target, parse_id(name))


def _copy_in(hidden: Path, target: Path) -> None:
    staging = target.with_name(f"{ADOPTING}{target.name}")
    shutil.rmtree(staging, ignore_errors=True)  # a killed adopt's partial copy: made again
    shutil.copytree(hidden, staging, symlinks=True)
    os.replace(staging, target)
    fsync_dir(target.parent)
    shutil.rmtree(hidden)


def _adopted_from(folder: Path) -> str | None:
    record = AthleteDir(folder, None).store.read_state(ADOPTED)
    return record.get("from") if isinstance(record, dict) else None


def _carry_removals(other: Roster, roster: Roster, adopted: list[AthleteDir]) -> None:
    """An athlete removed there stays removed here (its seeds are never bound again either)."""
    removals = other.removals()
    for athlete in adopted:
        if athlete.athlete_id in removals:
            roster.record_removal(athlete.athlete_id, removals[athlete.athlete_id])
