"""Where an athlete's imported account export lives in its folder: the names only.

Apart from bulkfetch.export_store (which reads and writes what is there, and loads pyarrow for the
decoded tracks), so that code asking only whether an athlete has imported an export (bulkfetch.roster,
for every command) loads nothing more than the store.
"""

from __future__ import annotations

from pathlib import Path

from bulkfetch.store import RawStore

EXPORT_FOLDER = "export"  # athletes/<id>/export/: the kept CSVs and files, the decoded tracks
INDEX = "export"  # athletes/<id>/state/export.json: the import's index (a RawStore state name)


def export_folder(athlete_folder: Path) -> Path:
    return athlete_folder / EXPORT_FOLDER


def has_export(athlete_folder: Path) -> bool:
    """Whether an export was imported for the athlete of `athlete_folder` (its index is written first)."""
    return RawStore(athlete_folder).state_path(INDEX).exists()
