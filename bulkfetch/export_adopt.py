"""An account export imported before its athlete was known becomes that athlete's once a command knows.

`bulkfetch import` of an export that names no athlete, with no athlete connected, keeps it in
`athletes/unbound/` (a folder without tokens; see bulkfetch.importer.choose_athlete). A later import
that knows the athlete, or a fetch (or plan) that has listed the athlete, moves it into the athlete's
folder when the export's activities meet the athlete's: the export folder and its index are renamed,
nothing is decoded again. An athlete that has an imported export already keeps it, and the unbound one
stays where it is (two exports are not merged by a rename): the caller says so.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection
from dataclasses import dataclass

from bulkfetch.errors import LockedError
from bulkfetch.export_store import ExportStore
from bulkfetch.roster import UNBOUND, AthleteDir, Roster


@dataclass(frozen=True)
class Adoption:
    """What `adopt_unbound` did: `moved` the export into the athlete's folder, or left it (`message` says
    why: the athlete has an export already, or an import is writing into it)."""

    moved: bool
    message: str


def unbound_export(roster: Roster) -> ExportStore | None:
    """The export waiting in `athletes/unbound/` for its athlete (a folder without tokens: one with tokens
    is an account whose athlete the next fetch learns, export and all, see bulkfetch.roster), if any."""
    unbound = AthleteDir(roster.folder / UNBOUND, None)
    store = ExportStore(unbound.folder)
    return store if store.exists() and unbound.tokens.load() is None else None


def adopt_unbound(roster: Roster, athlete: AthleteDir, ids: Collection[int]) -> Adoption | None:
    """Move the tokenless `athletes/unbound/` export into `athlete`'s folder if some of its activities are
    among `ids` (the athlete's listed or exported activities); None when there is no such export.

    The caller holds the data_dir lock or the import lock of `athlete`'s export; the unbound export's own
    import lock is taken for the move, so that an import writing into it is never moved under it."""
    source, target = unbound_export(roster), ExportStore(athlete.folder)
    if athlete.athlete_id is None or source is None or source.activities().keys().isdisjoint(ids):
        return None
    unbound = AthleteDir(source.athlete_folder, None)
    if target.folder.exists():
        return Adoption(False, f"{source.folder} holds an export imported before its athlete was known, with "
                               f"activities of this one; {athlete.label} has an imported export already, so it "
                               f"stays where it is (delete {unbound.folder} if it is {athlete.label}'s)")
    try:
        with source.lock():
            target.athlete_folder.mkdir(parents=True, exist_ok=True)
            os.replace(source.folder, target.folder)
            source.move_index(target)
    except LockedError:
        return Adoption(False, f"an import is writing into {source.folder}: it becomes {athlete.label}'s "
                               "at the next fetch or import once that import is done")
    if not any(path.is_file() for path in unbound.folder.rglob("*")):
        shutil.rmtree(unbound.folder, ignore_errors=True)
    return Adoption(True, f"the export imported into {unbound.folder} before is {athlete.label}'s: moved to "
                          f"{athlete.folder}")


__all__ = ["Adoption", "adopt_unbound", "unbound_export"]
