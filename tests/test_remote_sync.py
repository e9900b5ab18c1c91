"""remote_sync's pure rules: what a run uploads and removes, and the run manifest's content."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson

from bulkfetch import remote_sync
from bulkfetch.object_store import ObjectStore, list_files, open_store, publish
from bulkfetch.remote_sync import RUN_MANIFEST, LocalPart, plan_sync, read_run_manifest, run_manifest, sync

A = "activities/athlete_id=1/year=2023/part-0.parquet"
B = "activities/athlete_id=1/year=2024/part-0.parquet"
C = "activities/athlete_id=2/year=2024/part-0.parquet"


def test_only_changed_or_missing_parts_are_uploaded() -> None:
    local = {A: LocalPart(10, 100), B: LocalPart(20, 200)}
    recorded = {A: {"size": 10, "mtime_ns": 100, "blake2b": "aa"}, B: {"size": 20, "mtime_ns": 199, "blake2b": "bb"}}
    current = {**recorded, B: {"size": 20, "mtime_ns": 200, "blake2b": "bb"}}
    assert plan_sync(local, recorded, {A: 10, B: 20}).upload == [B]  # B was rewritten locally
    assert plan_sync(local, current, {A: 10, B: 20}).upload == []
    assert plan_sync(local, current, {B: 20}).upload == [A]  # gone remotely
    assert plan_sync(local, current, {A: 3, B: 20}).upload == [A]
    assert plan_sync(local, {**current, A: {"size": 10, "mtime_ns": 100}}, {A: 10, B: 20}).upload == [A]  # no digest
    assert plan_sync(local, {}, {}).upload == [A, B]


def test_uploaded_part_files_no_longer_staged_are_removed_and_nothing_else() -> None:
    remote = {A: 10, B: 20, C: 30, "_bulkfetch.json": 5, "notes/readme.txt": 3}
    recorded = {A: {"size": 10, "mtime_ns": 1, "blake2b": "aa"}, B: {"size": 20, "mtime_ns": 2, "blake2b": "bb"}}
    plan = plan_sync({A: LocalPart(10, 1)}, recorded, remote)
    assert plan.remove == [B] and plan.upload == []  # C: never uploaded from here


def test_run_manifest_lists_every_part_with_its_size_and_digest() -> None:
    recorded = {B: {"size": 20, "mtime_ns": 2, "blake2b": "bb"}, A: {"size": 10, "mtime_ns": 1, "blake2b": "aa"}}
    manifest = orjson.loads(run_manifest(recorded, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)))
    assert manifest == {"written_at": "2026-01-02T03:04:05+00:00",
                        "files": [{"path": A, "size": 10, "blake2b": "aa"}, {"path": B, "size": 20, "blake2b": "bb"}]}


def test_staged_parts_are_the_datasets_part_files_only(tmp_path) -> None:
    from bulkfetch.remote_sync import staged_parts

    for relative in (A, f".migrating/{A}", "activities/year=2020/part-0.parquet",
                     "activities/athlete_id=1/year=2023/.part-0.parquet.tmp-1-ab", ".uploads.json"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"1234")
    parts = staged_parts(tmp_path)
    assert list(parts) == [A] and parts[A].size == 4


def test_a_sync_removes_only_what_it_uploaded(s3_server, tmp_path: Path) -> None:
    """Another data_dir sharing the prefix (or this one rebuilt on a new machine) keeps its partitions."""
    store = open_store(f"s3://{s3_server.new_bucket()}/tables", tuple(s3_server.options.items()))
    theirs = "activities/athlete_id=2/year=2020/part-0.parquet"
    (tmp_path / "theirs.parquet").write_bytes(b"another data_dir's")
    publish(store, tmp_path / "theirs.parquet", theirs, "fedcba9876543210")
    staging = tmp_path / "staging"
    for key in (A, B):
        (staging / key).parent.mkdir(parents=True, exist_ok=True)
        (staging / key).write_bytes(b"ours")
    assert sync(store, staging).removed == []
    assert set(list_files(store)) == {theirs, A, B, RUN_MANIFEST}
    (staging / B).unlink()  # a removed year
    assert sync(store, staging).removed == [B]
    assert set(list_files(store)) == {theirs, A, RUN_MANIFEST}


def test_the_manifest_is_published_before_removals_and_only_when_something_changed(s3_server, tmp_path: Path,
                                                                                    monkeypatch) -> None:
    store = open_store(f"s3://{s3_server.new_bucket()}/tables", tuple(s3_server.options.items()))
    staging = tmp_path / "staging"
    for key in (A, B):
        (staging / key).parent.mkdir(parents=True, exist_ok=True)
        (staging / key).write_bytes(b"ours")
    first = datetime(2026, 1, 2, tzinfo=UTC)
    sync(store, staging, now=lambda: first)
    manifest = read_run_manifest(store)
    assert manifest is not None and manifest["written_at"] == first.isoformat()
    assert [(f["path"], f["size"], len(f["blake2b"])) for f in manifest["files"]] == [(A, 4, 32), (B, 4, 32)]
    nothing = sync(store, staging, now=lambda: datetime(2026, 1, 3, tzinfo=UTC))
    assert nothing.uploaded == nothing.removed == [] and read_run_manifest(store) == manifest  # not rewritten
    (staging / B).unlink()
    removals: list[str] = []
    real_remove = remote_sync.remove

    def remove_seeing_the_manifest(store_: ObjectStore, key: str) -> None:
        removals.append(key)
        manifest_then = read_run_manifest(store_)
        assert manifest_then is not None and [f["path"] for f in manifest_then["files"]] == [A]
        real_remove(store_, key)

    monkeypatch.setattr(remote_sync, "remove", remove_seeing_the_manifest)  # the real removal, watched
    sync(store, staging, now=lambda: datetime(2026, 1, 4, tzinfo=UTC))
    monkeypatch.undo()
    assert removals == [B] and set(list_files(store)) == {A, RUN_MANIFEST}
    store.fs.delete_file(store.path(RUN_MANIFEST))  # lost from outside: the next run puts it back
    sync(store, staging)
    assert read_run_manifest(store) is not None
