"""Raw store: atomic writes, temp-file sweeping, listings, tombstones."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from bulkfetch.errors import StorageError
from bulkfetch.store import FULL_LISTING, Listing, RawStore, atomic_write, ensure_dir, is_temp_file, shared_listings


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    atomic_write(target, b"1")
    atomic_write(target, b"22")
    assert target.read_bytes() == b"22"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_temp_files_are_ignored_and_swept(tmp_path: Path) -> None:
    store = RawStore(tmp_path)
    store.prepare()
    store.write_detail(5_000_000_001, b'{"id": 5000000001}')
    leftover = store.detail_dir / ".6000000000.json.tmp-999999999-abcd"
    leftover.write_bytes(b'{"id": 6')
    assert is_temp_file(leftover)
    assert store.detail_ids() == {5_000_000_001}
    in_progress = store.auth_dir / f".tokens.json.tmp-{os.getpid()}-abcd"  # a live writer's: never swept
    in_progress.write_bytes(b"{")
    assert store.sweep_temp_files() == 1
    assert not leftover.exists() and in_progress.exists()


def test_catalog_overlays_partial_listing_and_drops_tombstones(tmp_path: Path) -> None:
    store = RawStore(tmp_path)
    store.prepare()
    listed(store, 1_000, [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])
    new = store.new_listing(2_000)
    new.write_page(1, orjson.dumps([{"id": 1, "name": "a2"}, {"id": "x"}, {"id": -3}]))
    assert store.unfinished_listing() is not None
    store.add_tombstones([2], "unlisted", 5.0)
    assert store.catalog() == {1: {"id": 1, "name": "a2"}}
    new.mark_complete(1)
    store.prune_listings()
    assert [listing.listing_id for listing in store.listings()] == [new.listing_id]


def test_the_catalog_digest_follows_the_catalog_not_the_listings_names(tmp_path: Path) -> None:
    store = RawStore(tmp_path)
    store.prepare()
    full = listed(store, 1_000, [{"id": 3, "name": "c"}, {"id": 2, "name": "b"}])
    listed(store, 2_000, [{"id": 3, "name": "c"}], ROUTINE)
    before = store.catalog_digest()
    with shared_listings():  # taken as the pages are parsed: the same digest
        store.catalog()
        assert store.catalog_digest() == before
    again = listed(store, 3_000, [{"id": 3, "name": "c"}], ROUTINE)  # the next run's, listing the same again
    store.prune_listings()
    assert [listing.listing_id for listing in store.listings()] == [full.listing_id, again.listing_id]
    assert store.catalog_digest() == before
    again.write_lookup(1, orjson.dumps([{"id": 2, "name": "b2"}]))  # an activity's summary changed
    changed = store.catalog_digest()
    assert changed != before
    store.add_tombstones([3], "unlisted", 5.0)
    assert store.catalog_digest() != changed


ROUTINE = {"kind": "routine"}


def listed(store: RawStore, started_at: float, page: list[dict[str, Any]], meta: dict[str, Any] = FULL_LISTING
           ) -> Listing:
    """A complete listing of one page."""
    listing = store.new_listing(started_at, meta)
    listing.write_page(1, orjson.dumps(page))
    listing.mark_complete(len(page))
    return listing


def test_file_where_a_folder_should_be_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a folder")
    with pytest.raises(StorageError, match="is a file, not a folder"):
        ensure_dir(tmp_path / "data")
    with pytest.raises(StorageError, match="a file stands where a folder should be"):
        RawStore(tmp_path / "data" / "inner").prepare()


def test_unwritable_folder_is_a_storage_error() -> None:
    # /proc/sys refuses new folders even to root, which CI runs as.
    with pytest.raises(StorageError, match="cannot create /proc/sys/bulkfetch-data"):
        RawStore(Path("/proc/sys/bulkfetch-data")).prepare()
