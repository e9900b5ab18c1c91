"""Bring a remote parquet_dir up to date with the local staging folder compaction writes (issue 16).

Compaction writes every partition locally, as for a local parquet_dir (see bulkfetch.compact); this module
then makes the remote dataset match it:

- a part file whose local identity (size, mtime_ns) differs from the one recorded at its last upload is
  read: unless its digest is the recorded one (a rebuild writes the same bytes), it is published again, as
  is one whose remote object is missing or of another size (deleted or damaged from outside)
  (see bulkfetch.object_store.publish: readers see the old object or the new one);
- a part file this staging folder uploaded (recorded in UPLOADS) and no longer has (a removed year, a purged
  athlete) is removed; a remote file it never uploaded is left alone (another data_dir sharing the prefix,
  or a data_dir rebuilt on a new machine, wrote it);
- temporaries a stopped run left (older than an hour: see bulkfetch.object_store.stale_temporaries) are
  removed first, and its unfinished multipart uploads aborted (see bulkfetch.s3_multipart);
- after the uploads and before the removals (a reader of it is never sent to a removed file),
  `_bulkfetch.json` at the dataset root (the run's time and every current part file with its size and
  blake2b digest) is replaced the same way, so a reader that wants one consistent snapshot across
  partitions reads exactly those files; a reader that finds a file replaced since (another size or digest:
  part files keep their keys) reads the manifest again. A run that uploads and removes nothing leaves it
  as it is, unless it is missing or a stopped run's uploads are not in it yet.

The record of uploads (UPLOADS in the staging folder: key -> size, mtime_ns, blake2b digest, and whether
the remote manifest is current) is local, beside the files it describes, and written after each upload and
removal, so a run stopped midway uploads only what is left. It names the store's URI: another store starts
afresh.

A sync holds the staging folder's lock exclusively (bulkfetch.locks.staging_lock; it waits): no compaction
writes into the folder meanwhile (each holds it shared), and no other sync runs (an import's compaction
uploads beside a fetch's), so the temporaries it finds with this folder's id are a stopped run's.
"""

from __future__ import annotations

import hashlib
import secrets
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bulkfetch.locks import Holder, staging_lock
from bulkfetch.object_store import ObjectStore, list_objects, publish, remove, store_error, sweep_temporaries
from bulkfetch.parquet_layout import PART_FILE
from bulkfetch.s3_multipart import Cleanup, abort_unfinished_uploads
from bulkfetch.store import atomic_write, read_json

UPLOADS = ".uploads.json"  # in the staging folder; the leading dot keeps it out of `*/*/*/part-0.parquet`
RUN_MANIFEST = "_bulkfetch.json"
MANIFEST_CURRENT = "manifest_current"  # in UPLOADS: whether the remote run manifest lists what was uploaded
STAGING_ID = ".upload-id"  # in the staging folder: names its temporaries, so that its sync knows its own


@dataclass(frozen=True)
class LocalPart:
    """A staged part file's identity: what says it changed since its upload without reading it."""

    size: int
    mtime_ns: int


@dataclass(frozen=True)
class SyncPlan:
    upload: list[str]  # keys to publish: changed locally, or missing or different remotely
    remove: list[str]  # remote part files the staging folder no longer has


@dataclass(frozen=True)
class SyncResult:
    uploaded: list[str]
    removed: list[str]
    swept: list[str]  # a killed run's temporaries
    cleanup: Cleanup  # a killed run's unfinished multipart uploads


def staged_parts(staging: Path) -> dict[str, LocalPart]:
    """Every part file under the staging folder by key (`<table>/athlete_id=<id>/year=YYYY/part-0.parquet`).
    The pattern's depth leaves out what is not part of the dataset yet: tables written aside for a swap
    (`.migrating/<table>/athlete_id=<id>/year=YYYY/`, one level deeper) and temporaries (other names)."""
    parts = {}
    for path in staging.glob(f"*/*/*/{PART_FILE}"):
        stat = path.stat()
        parts[path.relative_to(staging).as_posix()] = LocalPart(stat.st_size, stat.st_mtime_ns)
    return parts


def plan_sync(local: Mapping[str, LocalPart], recorded: Mapping[str, Mapping[str, Any]],
              remote: Mapping[str, int]) -> SyncPlan:
    """Pure: which keys to upload and which remote part files to remove.

    A key is uploaded when its local (size, mtime_ns) is not what was recorded at its last upload, or when
    the remote object is missing or not of the recorded size. A key is removed when this staging folder
    uploaded it (it is recorded) and no longer stages it: the partition is gone. Anything else remote is left
    alone: another data_dir sharing the prefix, or this one rebuilt on a new machine, wrote it.
    """
    upload = sorted(key for key, part in local.items()
                    if _recorded_part(recorded.get(key)) != part or remote.get(key) != part.size)
    gone = sorted(key for key in recorded if key not in local)
    return SyncPlan(upload=upload, remove=gone)


def sync(store: ObjectStore, staging: Path, *, now: Callable[[], datetime] = lambda: datetime.now(UTC),
         on_upload: Callable[[str], None] | None = None,
         on_wait: Callable[[Holder], None] = lambda holder: None) -> SyncResult:
    """Make the remote dataset match the staged one (see the module docstring), after any other process's
    compaction into `staging` or sync of it (`on_wait` is told who runs it). Raises the store's errors
    (bulkfetch.object_store.store_error); what was uploaded before stays recorded."""
    with staging_lock(staging, "upload", exclusive=True, on_wait=on_wait):
        return _sync(store, staging, now(), on_upload)


def _sync(store: ObjectStore, staging: Path, written_at: datetime,
          on_upload: Callable[[str], None] | None) -> SyncResult:
    objects = list_objects(store)
    remote = {key: found.size for key, found in objects.items()}
    owner = _staging_id(staging)
    swept = sweep_temporaries(store, objects, written_at, owner)
    cleanup = abort_unfinished_uploads(store, written_at, owner)
    local = staged_parts(staging)
    uploads = _load_uploads(staging / UPLOADS, store.uri)
    recorded: dict[str, Any] = uploads["files"]
    plan = plan_sync(local, recorded, remote)
    if plan.remove:
        uploads[MANIFEST_CURRENT] = False  # saved with the first change: a stopped run's rerun publishes it
    uploaded = []
    for key in plan.upload:
        path = staging / key
        digest = _digest(path)
        part = local[key]
        # Rewritten with the same bytes (a rebuild, an upgrade's migration) and whole remotely: not sent again.
        if (recorded.get(key) or {}).get("blake2b") != digest or remote.get(key) != part.size:
            uploads[MANIFEST_CURRENT] = False
            if on_upload:
                on_upload(key)
            publish(store, path, key, owner)
            uploaded.append(key)
        recorded[key] = {"size": part.size, "mtime_ns": part.mtime_ns, "blake2b": digest}
        _save_uploads(staging / UPLOADS, uploads)
    if not (uploads.get(MANIFEST_CURRENT) is True and RUN_MANIFEST in remote):
        # Before the removals: a reader of the new manifest is never sent to a removed file.
        current = {key: recorded[key] for key in local}
        _publish_run_manifest(store, current, written_at, owner)
        uploads[MANIFEST_CURRENT] = True
        _save_uploads(staging / UPLOADS, uploads)
    for key in plan.remove:
        remove(store, key)
        del recorded[key]
        _save_uploads(staging / UPLOADS, uploads)
    return SyncResult(uploaded=uploaded, removed=plan.remove, swept=swept, cleanup=cleanup)


def pending_sync(staging: Path, uri: str) -> SyncPlan:
    """What the next sync to `uri` will upload and remove, judged from the local record alone (no request):
    staged part files changed since their upload or never uploaded, and uploaded ones no longer staged."""
    recorded: dict[str, Any] = _load_uploads(staging / UPLOADS, uri)["files"]
    uploaded = {key: part.size for key, record in recorded.items() if (part := _recorded_part(record)) is not None}
    return plan_sync(staged_parts(staging), recorded, uploaded)


def read_run_manifest(store: ObjectStore) -> dict[str, Any] | None:
    """The remote `_bulkfetch.json` (the last sync's time and part files); None when no sync wrote a readable
    one yet. Raises the store's errors (bulkfetch.object_store.store_error)."""
    try:
        with store.fs.open_input_file(store.path(RUN_MANIFEST)) as stream:
            manifest = orjson.loads(stream.read())
    except FileNotFoundError:
        return None
    except orjson.JSONDecodeError:
        return None  # damaged from outside: the next sync replaces it
    except OSError as exc:
        raise store_error(store, "cannot read", exc) from None
    return manifest if isinstance(manifest, dict) else None


def run_manifest(current: Mapping[str, Mapping[str, Any]], written_at: datetime) -> bytes:
    """Pure: `_bulkfetch.json`'s bytes: the run's time (UTC, ISO 8601) and every part file with its size
    and blake2b digest (16 bytes, hex), from its upload's record: a reader holding this manifest checks
    what it read against them, since the next run replaces part files at the same keys."""
    files = [{"path": key, "size": current[key]["size"], "blake2b": current[key]["blake2b"]}
             for key in sorted(current)]
    return orjson.dumps({"written_at": written_at.isoformat(timespec="seconds"), "files": files},
                        option=orjson.OPT_INDENT_2)


def _publish_run_manifest(store: ObjectStore, current: Mapping[str, Mapping[str, Any]], written_at: datetime,
                          owner: str) -> None:
    with tempfile.TemporaryDirectory(prefix="bulkfetch-manifest-") as folder:
        path = Path(folder) / RUN_MANIFEST
        path.write_bytes(run_manifest(current, written_at))
        publish(store, path, RUN_MANIFEST, owner)


def _recorded_part(record: Mapping[str, Any] | None) -> LocalPart | None:
    if not isinstance(record, Mapping):
        return None
    size, mtime_ns = record.get("size"), record.get("mtime_ns")
    if not (isinstance(size, int) and isinstance(mtime_ns, int) and isinstance(record.get("blake2b"), str)):
        return None  # uploaded again: the run manifest needs its digest
    return LocalPart(size, mtime_ns)


def _load_uploads(path: Path, uri: str) -> dict[str, Any]:
    """The record of uploads to `uri`; a fresh one (everything is uploaded) for another store or a damaged file."""
    try:
        uploads = read_json(path)
    except (OSError, orjson.JSONDecodeError):
        uploads = None
    if isinstance(uploads, dict) and uploads.get("uri") == uri and isinstance(uploads.get("files"), dict):
        return uploads
    return {"uri": uri, "files": {}}


def _save_uploads(path: Path, uploads: dict[str, Any]) -> None:
    atomic_write(path, orjson.dumps(uploads))


def _staging_id(staging: Path) -> str:
    """The staging folder's id (made on first use): its temporaries carry it (see
    bulkfetch.object_store.is_stale_temporary)."""
    try:
        found = (staging / STAGING_ID).read_text().strip()
    except (FileNotFoundError, UnicodeDecodeError):
        found = ""
    if len(found) == 16 and all(c in "0123456789abcdef" for c in found):
        return found
    made = secrets.token_hex(8)
    atomic_write(staging / STAGING_ID, made.encode())
    return made


def _digest(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
