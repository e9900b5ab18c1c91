"""Raw store: atomic writes, temp-file sweeping, listings, tombstones."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from bulkfetch.errors import StorageError
from bulkfetch.listed_summary import KNOWN_FIELDS, fingerprint, recording_fingerprint, start_epoch
from bulkfetch.pids import alive
from bulkfetch.store import (
    FULL_LISTING,
    Listing,
    RawStore,
    atomic_write,
    ensure_dir,
    is_orphaned_temp,
    is_temp_file,
    shared_listings,
)


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


def test_a_damaged_file_is_set_aside_only_while_it_is_the_version_found_damaged(tmp_path: Path) -> None:
    store = RawStore(tmp_path)
    store.prepare()
    store.write_detail(5_000_000_001, b"null")
    path = store.detail_path(5_000_000_001)
    damaged = (path.stat().st_size, path.stat().st_mtime_ns)
    store.write_detail(5_000_000_001, b'{"id": 5000000001}')  # a fetch replaced it since it was read
    assert store.set_aside(path, damaged) is None
    assert path.read_bytes() == b'{"id": 5000000001}' and not list(store.quarantine_dir.rglob("*.json"))
    store.write_detail(5_000_000_001, b"[]")
    damaged = (path.stat().st_size, path.stat().st_mtime_ns)
    moved = store.set_aside(path, damaged)
    assert moved == store.quarantine_dir / "activities" / path.name and moved.read_bytes() == b"[]"
    assert not path.exists() and store.detail_ids() == set()


def test_a_zombie_writers_temp_file_is_swept(tmp_path: Path) -> None:
    # A killed import's worker stays a zombie until some process reaps it (in a container PID 1 may take its
    # time): it writes nothing any more, so its temporary file is a leftover (CI saw one kept).
    writer = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while _state(writer.pid) != "Z" and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        assert _state(writer.pid) == "Z"
        leftover = tmp_path / f".7.arrow.tmp-{writer.pid}-abcd"
        leftover.write_bytes(b"ARROW")
        assert is_orphaned_temp(leftover) and not alive(writer.pid)
        assert alive(os.getpid()) and not alive(0)
    finally:
        writer.wait()
    assert not alive(writer.pid)


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


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


# -- the listings' indexes (what a fetch reads of each list page, kept so that it parses only new pages) --
def aged(listing: Listing, seconds: float = 60.0) -> Listing:
    """Its pages and lookups as if written `seconds` ago: past INDEX_RACY_S, so that they are indexed."""
    for path in [*listing.page_paths(), *listing.lookup_paths()]:
        then = time.time() - seconds
        os.utime(path, (then, then))
    return listing


@pytest.fixture
def page_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the list pages and lookups read (every read of one goes through Path.read_bytes)."""
    reads: list[str] = []
    read_bytes = Path.read_bytes

    def counted(path: Path) -> bytes:
        if path.name.startswith(("page-", "lookup-")):
            reads.append(f"{path.parent.name}/{path.name}")
        return read_bytes(path)
    monkeypatch.setattr(Path, "read_bytes", counted)
    return reads


SUMMARIES = [{"id": 10 + n, "name": f"a{n}", "sport_type": "Run" if n % 2 else "Ride", "private": n == 3,
              "start_date": f"2024-01-{n + 1:02d}T06:00:00Z", "distance": 1000.0 * n,
              **({"manual": True} if n == 4 else {})} for n in range(9)]


def three_pages(store: RawStore) -> Listing:
    listing = store.new_listing(1_000)
    for number in range(3):
        listing.write_page(number + 1, orjson.dumps(SUMMARIES[3 * number:3 * number + 3]))
    listing.mark_complete(len(SUMMARIES))
    return aged(listing)


def same_as_parsed(store: RawStore) -> None:
    """The catalog view holds what the parsed catalog does, and its summaries decide alike."""
    view, catalog = store.catalog_view(), store.catalog()
    assert list(view) == list(catalog)
    for activity_id, summary in view.items():
        whole = catalog[activity_id]
        assert (start_epoch(summary), fingerprint(summary), recording_fingerprint(summary)) == \
            (start_epoch(whole), fingerprint(whole), recording_fingerprint(whole))
        assert [summary.get(key, "-") for key in KNOWN_FIELDS] == [whole.get(key, "-") for key in KNOWN_FIELDS]
        assert dict(summary) == whole and summary == whole


def test_the_catalog_view_parses_only_the_pages_its_index_lacks(tmp_path: Path, page_reads: list[str]) -> None:
    store = RawStore(tmp_path)
    store.prepare()
    full = three_pages(store)
    store.catalog_view()
    assert len(page_reads) == 3  # indexed as they are parsed
    page_reads.clear()
    view = store.catalog_view()
    assert page_reads == []  # all from the index
    assert view[12].get("sport_type") == "Ride" and view[13].get("private") is True and page_reads == []
    assert view[12]["name"] == "a2" and page_reads == [f"{full.listing_id}/page-00001.json"]  # more: its page
    assert view[11]["name"] == "a1" and len(page_reads) == 1  # parsed once for its summaries
    routine = store.new_listing(2_000, ROUTINE)
    routine.write_page(1, orjson.dumps([{**SUMMARIES[8], "name": "renamed"}]))
    page_reads.clear()
    assert fingerprint(store.catalog_view()[18]) == fingerprint({**SUMMARIES[8], "name": "renamed"})
    assert page_reads == [f"{routine.listing_id}/page-00001.json"]  # the new page only
    page_reads.clear()
    same_as_parsed(store)


def test_a_page_written_again_is_parsed_again(tmp_path: Path, page_reads: list[str]) -> None:
    store = RawStore(tmp_path)
    store.prepare()
    full = three_pages(store)
    store.catalog_view()
    full.write_page(2, orjson.dumps([{**s, "distance": 1.5} for s in SUMMARIES[3:6]]))  # a new inode
    page_reads.clear()
    assert fingerprint(store.catalog_view()[14]) == fingerprint({**SUMMARIES[4], "distance": 1.5})
    assert page_reads == [f"{full.listing_id}/page-00002.json"]
    same_as_parsed(store)


def test_a_page_just_written_is_not_indexed_until_it_is_older_than_the_clocks_resolution(
        tmp_path: Path, page_reads: list[str]) -> None:
    store = RawStore(tmp_path)
    store.prepare()
    listing = store.new_listing(1_000)
    listing.write_page(1, orjson.dumps(SUMMARIES))  # now: it could change again within its mtime's tick
    store.catalog_view()
    store.catalog_view()
    assert len(page_reads) == 2
    aged(listing)
    store.catalog_view()
    page_reads.clear()
    store.catalog_view()
    assert page_reads == []


@pytest.mark.parametrize("damage", [
    b"{not json", b"[]", b'{"format": [0], "pages": {}}',
    "rows of another shape", "another format", "a half-written temporary file beside it"])
def test_a_damaged_missing_or_older_index_is_rebuilt_without_error(
        tmp_path: Path, page_reads: list[str], damage: bytes | str) -> None:
    store = RawStore(tmp_path)
    store.prepare()
    full = three_pages(store)
    store.catalog_view()
    assert full.index is not None and full.index.exists()
    saved = orjson.loads(full.index.read_bytes())
    if damage == "rows of another shape":
        saved["pages"]["page-00002.json"]["kind"] = [0, 7, 0]  # past its kinds
        saved["pages"]["page-00003.json"]["ids"] = "x"
        full.index.write_bytes(orjson.dumps(saved))
    elif damage == "another format":  # an older bulkfetch's, or fingerprints of other fields
        full.index.write_bytes(orjson.dumps({**saved, "format": [*saved["format"][:-1], ["sport_type"]]}))
    elif damage == "a half-written temporary file beside it":  # a crash mid-write: the index is the old one
        (full.index.parent / f".{full.index.name}.tmp-999999999-abcd").write_bytes(b'{"format": [1, ')
        assert store.sweep_temp_files() == 1
    else:
        assert isinstance(damage, bytes)
        full.index.write_bytes(damage)
    page_reads.clear()
    store.catalog_view()
    assert len(page_reads) == {"rows of another shape": 2, "a half-written temporary file beside it": 0}.get(
        str(damage), 3)
    same_as_parsed(store)
    page_reads.clear()
    store.catalog_view()
    assert page_reads == []  # rebuilt, and saved again


def test_a_pruned_listing_takes_its_index_along(tmp_path: Path) -> None:
    store = RawStore(tmp_path)
    store.prepare()
    first = aged(listed(store, 1_000, SUMMARIES[:2]))
    store.catalog_view()
    second = aged(listed(store, 2_000, SUMMARIES[:2]))
    store.prune_listings()
    assert [listing.listing_id for listing in store.listings()] == [second.listing_id]
    assert first.index is not None and not first.index.exists()
    first.index.write_bytes(b"{}")  # written by a `status` as a fetch removed its listing
    store.catalog_view()
    store.prune_listings()
    assert not first.index.exists() and second.index is not None and second.index.exists()


def test_raw_bytes_reach_counts_details_and_streams_until_the_limit(tmp_path: Path) -> None:
    """What decides whether a rebuild starts compaction's worker ahead (cli._rebuild_wants_a_worker)."""
    store = RawStore(tmp_path)
    assert not store.raw_bytes_reach(1)  # no folders yet
    store.prepare()
    store.write_detail(1, b"x" * 600)
    store.write_streams(1, b"y" * 500)
    assert store.raw_bytes_reach(1_100) and not store.raw_bytes_reach(1_101)


def test_the_listing_index_keeps_one_and_true_apart(tmp_path: Path) -> None:
    """1 == True in Python: the index's kinds must not merge a summary's `manual: 1` with another's `true`
    (the view would then say manual where the page does not, or the other way round)."""
    store = RawStore(tmp_path)
    store.prepare()
    listing = store.new_listing(1_000)
    odd = [{**SUMMARIES[0], "manual": 1, "private": 0}, {**SUMMARIES[2], "manual": True, "private": False}]
    listing.write_page(1, orjson.dumps(odd))
    listing.mark_complete(len(odd))
    aged(listing)
    for view in (store.catalog_view(), store.catalog_view()):  # the index made, then read
        assert [(type(view[s["id"]]["manual"]), type(view[s["id"]]["private"])) for s in odd] == \
            [(int, int), (bool, bool)]
