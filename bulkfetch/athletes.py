"""`bulkfetch athletes`: who a data_dir serves, and removing or adopting one.

* the list: each athlete's id, name, listed / fetched / pending, last fetch and state (reads only);
* `remove ID`: deauthorizes the athlete at Strava (`POST /oauth/deauthorize`), forgets its tokens, so no
  run fetches for it again; its data stays queryable, unless `--purge` deletes its raw data and Parquet;
* `adopt OTHER_DATA_DIR`: moves the athletes of another data_dir (one per athlete was the advice before
  a data_dir held many) into this one: renames when both are on one file system, else a copy that becomes
  visible only when whole. No request is sent; the caller compacts the adopted athletes afterwards.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bulkfetch.auth import TokenManager
from bulkfetch.client import post_form
from bulkfetch.config import Config
from bulkfetch.errors import ConfigError, CredentialError, StorageError
from bulkfetch.parquet_layout import athlete_folder
from bulkfetch.roster import MIGRATING, AthleteDir, Roster
from bulkfetch.schema import TABLES
from bulkfetch.status import collect_status
from bulkfetch.store import fsync_dir

REMOVED = "removed"  # a state beside bulkfetch.roster's: no tokens any more, the data kept


@dataclass(frozen=True)
class Removal:
    athlete_id: int
    deauthorized: bool  # False: Strava had already dropped the app (revoked), or could not be reached
    purged: bool


def athlete_rows(config: Config) -> list[dict[str, Any]]:
    """The `athletes --json` list: `status`'s per-athlete part, with each athlete's name."""
    roster = Roster(config.storage.data_dir)
    folders = {a.athlete_id: a for a in roster.athletes()}
    rows = []
    for report in collect_status(config)["athletes"]:
        athlete = folders.get(report["athlete_id"])
        tokens = athlete.tokens.load() if athlete else None
        rows.append({
            "athlete_id": report["athlete_id"],
            "name": tokens.athlete_name if tokens else None,
            **{key: report[key] for key in ("listed", "fetched", "pending", "last_fetch")},
            "state": report["state"] if tokens else REMOVED,
            "why": report["why"] if tokens else None,
        })
    return rows


def find_athlete(roster: Roster, athlete_id: int) -> AthleteDir:
    for athlete in roster.athletes():
        if athlete.athlete_id == athlete_id:
            return athlete
    known = ", ".join(str(a.athlete_id) for a in roster.athletes() if a.athlete_id is not None) or "none"
    raise ConfigError(f"athlete {athlete_id} is not in {roster.data_dir} (athletes: {known})",
                      hint="see 'bulkfetch athletes'")


async def deauthorize(config: Config, athlete: AthleteDir, warn: Callable[[str], None]) -> bool:
    """Ask Strava to drop the app's access for `athlete` (a fresh access token first, if needed). False
    when Strava had dropped it already (revoked) or cannot be reached: the tokens are forgotten anyway."""
    async with aiohttp.ClientSession() as session:
        async def post(url: str, form: dict[str, str]) -> tuple[int, bytes]:
            return await post_form(session, config.strava, config.fetch, url, form, rng=random.Random())

        manager = TokenManager(athlete.tokens, config.strava, post, margin_s=config.fetch.refresh_margin_s)
        try:
            token = await manager.access_token()
        except CredentialError as error:
            warn(f"{athlete.label}: {error.message}: Strava has dropped the app already")
            return False
        status, _ = await post(config.strava.oauth_url.rstrip("/") + "/deauthorize", {"access_token": token})
    if status != 200:
        warn(f"{athlete.label}: Strava answered HTTP {status} to the deauthorization; the tokens are forgotten"
             " anyway (revoke the app on strava.com/settings/apps to be sure)")
    return status == 200


def forget_tokens(athlete: AthleteDir) -> None:
    athlete.tokens.path.unlink(missing_ok=True)


def purge(athlete: AthleteDir, parquet_dir: Path) -> None:
    """Delete the athlete's raw data and Parquet partitions (the caller holds the data_dir lock)."""
    assert athlete.athlete_id is not None
    for table in TABLES:
        shutil.rmtree(parquet_dir / table / athlete_folder(athlete.athlete_id), ignore_errors=True)
    shutil.rmtree(athlete.folder)


def adopt(roster: Roster, other: Roster) -> list[AthleteDir]:
    """Move every athlete of `other` (migrated to the per-athlete layout first) into `roster`; both
    data_dirs' locks are held by the caller. Refuses before moving anything when one is here already."""
    if other.data_dir.resolve() == roster.data_dir.resolve():
        raise ConfigError(f"{other.data_dir} is this data_dir", hint="name the other data_dir to adopt")
    other.migrate()
    incoming = other.athletes()
    if not incoming:
        raise ConfigError(f"{other.data_dir} holds no athlete", hint="name a data_dir a fetch has written")
    present = {a.folder.name for a in roster.athletes()}
    if clashes := sorted(a.folder.name for a in incoming if a.folder.name in present):
        raise ConfigError(f"{', '.join(clashes)} already in {roster.data_dir}",
                          hint="remove it here first ('bulkfetch athletes remove ID --purge'), or keep both data_dirs")
    roster.migrate()
    roster.folder.mkdir(parents=True, exist_ok=True)
    return [_move_athlete(athlete, roster) for athlete in incoming]


def _move_athlete(athlete: AthleteDir, roster: Roster) -> AthleteDir:
    target = roster.folder / athlete.folder.name
    try:
        os.replace(athlete.folder, target)
    except OSError as error:
        if error.errno != 18:  # EXDEV: another file system, copied below
            raise StorageError(f"cannot move {athlete.folder} to {target} ({error.strerror})",
                               hint="check both folders' permissions") from None
        staging = roster.folder / f"{MIGRATING}-{athlete.folder.name}"
        shutil.rmtree(staging, ignore_errors=True)  # a copy a killed adopt left: made again
        shutil.copytree(athlete.folder, staging, symlinks=True)
        os.replace(staging, target)
        shutil.rmtree(athlete.folder)
    fsync_dir(roster.folder)
    return AthleteDir(target, athlete.athlete_id)
