"""Listing the history: keyset paging at any per_page, routine listings and full re-lists, 404'd details.

The pure paging (`bulkfetch.paging`) is checked against a model of Strava's list; the rest drives the
real pipeline over HTTP against the simulator. `list_history` fetches with a `--since` in the future, so
a run sends list requests only and a history of 1,000 activities stays fast.
"""

from __future__ import annotations

import collections
import json
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import orjson
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from bulkfetch.cli import main
from bulkfetch.paging import RECENT_ACTIVITIES, Boundary, Paging, full_relist_due, list_pages_needed, recent_boundary
from bulkfetch.plan import Filters, fingerprint, pending_details, start_epoch
from bulkfetch.simulator import SimulatorSettings, SimulatorThread
from bulkfetch.store import RawStore
from tests.conftest import athlete_store, cli_env
from tests.test_fetch import API, api_records, assert_matches_ground_truth, detail_gets, fetch, setup, visible_ids

NO_DETAILS = ("--since", "2100-01-01")  # accepts no activity: the run only lists
DAY_S = 86400


def list_history(config: Path, *args: str) -> int:
    return fetch(config, *NO_DETAILS, *args)


def list_requests(sim, since: int) -> int:
    return sum(1 for r in api_records(sim, since=since) if r.path == f"{API}/athlete/activities")


def truth(sim) -> list[tuple[int, int | None]]:
    """The simulator's history as (id, start) pairs."""
    return [(i, start_epoch(sim.summary(i))) for i in sim.activity_ids()]


def backdate_full_listing(store: RawStore, days: float) -> None:
    complete = store.latest_full_listing().folder / "complete.json"
    info = orjson.loads(complete.read_bytes())
    complete.write_bytes(orjson.dumps({**info, "finished_at": info["finished_at"] - days * DAY_S}))


# -- keyset paging (pure) ---------------------------------------------------------------------------------

def strava_list(history: list[tuple[int, int]], tie_order: dict[int, float], params: dict[str, int]):
    """Strava's list as documented: newest first, `before` strict, `page` of `per_page`. Activities of
    one second come in an order of Strava's own (random here, but the same for every request)."""
    order = sorted(history, key=lambda a: (-a[1], tie_order[a[0]]))
    before = params.get("before")
    matching = [a for a in order if before is None or a[1] < before]
    first = (params.get("page", 1) - 1) * params["per_page"]
    return matching[first:first + params["per_page"]]


def page_through(paging: Paging, history, tie_order, per_page: int) -> int:
    """The pipeline's loop: request the cursor, hand the page to `Paging`; returns the requests sent."""
    requests = 0
    while paging.cursor is not None:
        page = strava_list(history, tie_order, paging.cursor.params(per_page))
        requests += 1
        assert requests <= len(history) + 2, "paging does not progress"
        paging.take(dict(page), short=len(page) < per_page)
    return requests


histories = st.lists(st.integers(0, 25), max_size=70).map(lambda starts: [(i + 1, s) for i, s in enumerate(starts)])


@settings(max_examples=400, deadline=None)
@given(histories, st.integers(1, 12), st.randoms(use_true_random=False))
def test_paging_lists_every_activity_at_any_per_page_in_the_requests_plan_counts(history, per_page, rng) -> None:
    # Few distinct seconds, so whole pages often share one (the case `before` alone cannot get past).
    tie_order = {i: rng.random() for i, _ in history}
    paging = Paging(per_page)
    requests = page_through(paging, history, tie_order, per_page)
    assert paging.seen == dict(history)
    assert requests == list_pages_needed(history, per_page)


@settings(max_examples=300, deadline=None)
@given(histories, st.integers(1, 12), st.integers(1, 30), st.randoms(use_true_random=False))
def test_a_routine_pass_covers_its_boundary_in_the_requests_plan_counts(history, per_page, recent, rng) -> None:
    tie_order = {i: rng.random() for i, _ in history}
    newest = sorted(s for _, s in history)[-recent:]
    if not newest:
        return
    boundary = Boundary(newest[0], frozenset(i for i, s in history if s == newest[0]))
    paging = Paging(per_page, boundary)
    requests = page_through(paging, history, tie_order, per_page)
    assert {i for i, s in history if boundary.holds(i, s)} <= paging.seen.keys()
    assert requests == list_pages_needed(history, per_page, boundary=boundary)


@settings(max_examples=300, deadline=None)
@given(histories, st.integers(1, 12), st.integers(1, 10), st.randoms(use_true_random=False))
def test_a_killed_listing_resumes_and_lists_the_rest_in_the_requests_plan_counts(history, per_page, killed_after,
                                                                                rng) -> None:
    # Which activities of a shared second the killed listing holds depends on Strava's order of them:
    # the count is exact for the order the replay assumes (by id, the simulator's); any order lists all.
    for tie_order, exact in (({i: -i for i, _ in history}, True), ({i: rng.random() for i, _ in history}, False)):
        first = Paging(per_page)
        for _ in range(killed_after):
            if first.cursor is None:
                break
            page = strava_list(history, tie_order, first.cursor.params(per_page))
            first.take(dict(page), short=len(page) < per_page)
        if not first.seen:
            return
        resumed = Paging(per_page, seen=dict(first.seen))
        resumed.resume()
        requests = page_through(resumed, history, tie_order, per_page)
        resumed.top_up()
        requests += page_through(resumed, history, tie_order, per_page)
        assert resumed.seen == dict(history)
        if exact:
            assert requests == list_pages_needed(history, per_page, listed=first.seen)


def iso(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_routine_boundary_is_the_200th_newest_and_its_second() -> None:
    base = 1_700_000_000
    catalog = {i: {"id": i, "start_date": iso(base + i)} for i in range(1, 301)}
    catalog[99] = {"id": 99, "start_date": iso(base + 101)}  # shares the second of the 200th newest
    catalog[7] = {"id": 7, "start_date": "garbled"}
    boundary = recent_boundary(catalog)
    # 300..102 and 101 are the 200 newest; 99 shares that second (and may come first in Strava's list).
    assert boundary == Boundary(base + 101, frozenset({99, 101}))
    assert boundary.holds(99, base + 101) and not boundary.holds(100, base + 100) and not boundary.holds(7, None)
    assert recent_boundary({}) is None
    assert Boundary.from_json(boundary.to_json()) == boundary and Boundary.from_json({"start": "x"}) is None
    assert RECENT_ACTIVITIES == 200


def test_a_full_relist_is_due_when_the_last_one_is_full_relist_days_old() -> None:
    assert full_relist_due(None, 1e9, 7)
    assert not full_relist_due(1e9, 1e9 + 7 * DAY_S - 1, 7)
    assert full_relist_due(1e9, 1e9 + 7 * DAY_S, 7)
    assert full_relist_due(1e9, 1e9, 0)  # 0: every run lists the whole history


# -- per_page (over HTTP) ---------------------------------------------------------------------------------

def test_small_per_page_with_shared_start_seconds_lists_the_whole_history(tmp_path: Path) -> None:
    # per_page 1 once listed 1 activity and stopped: the cursor repeated the boundary activity, and a
    # page holding only that looked like the end. Four activities of one second fill whole pages at
    # per_page 1, 2 and 3.
    settings_ = SimulatorSettings(activities=12, seed=40, short_limit=1000, daily_limit=10000)
    thread = SimulatorThread(settings_)
    with thread as sim:
        ids = sim.activity_ids()
        shared = sim.summary(ids[4])["start_date"]
        for activity_id in (ids[2], ids[3], ids[5]):
            thread.call(partial(sim.edit_activity, activity_id, start_date=shared))
        for per_page in (1, 2, 3):
            folder = tmp_path / str(per_page)
            folder.mkdir()
            config = setup(folder, sim, fetch={"per_page": per_page})
            mark = len(sim.request_log)
            assert fetch(config) == 0
            assert set(athlete_store(folder / "data").catalog()) == visible_ids(sim)
            assert_matches_ground_truth(sim, folder / "data")
            assert list_requests(sim, mark) == list_pages_needed(truth(sim), per_page)
        assert list_pages_needed(truth(sim), 1) == 13  # one new activity a request, then the empty page


# -- routine listings and full re-lists (over HTTP) ---------------------------------------------------------

def test_a_routine_rerun_costs_one_list_request_plus_one_per_200_new(tmp_path: Path) -> None:
    settings_ = SimulatorSettings(activities=1000, seed=41, short_limit=1000, daily_limit=10000)
    thread = SimulatorThread(settings_)
    with thread as sim:
        config = setup(tmp_path, sim)  # per_page 200
        assert list_history(config) == 0
        assert list_requests(sim, 0) == list_pages_needed(truth(sim), 200) == 6  # the whole history
        for new, expected in ((0, 1), (250, 3), (1, 2)):
            for _ in range(new):
                thread.call(sim.add_activity)
            mark = len(sim.request_log)
            assert list_history(config) == 0
            # (new + 200) / 200 pages, rounded up; each page repeats its predecessor's oldest activity.
            assert list_requests(sim, mark) == expected, new
            assert set(athlete_store(tmp_path / "data").catalog()) == visible_ids(sim)


def test_a_routine_run_sees_recent_edits_and_deletions_a_full_relist_old_ones(tmp_path: Path) -> None:
    settings_ = SimulatorSettings(activities=1000, seed=42, short_limit=1000, daily_limit=10000)
    thread = SimulatorThread(settings_)
    with thread as sim:
        config = setup(tmp_path, sim)
        assert list_history(config) == 0
        ids = sim.activity_ids()
        recent_renamed, recent_deleted, old_renamed, old_deleted = ids[5], ids[150], ids[600], ids[900]
        thread.call(partial(sim.edit_activity, recent_renamed, name="Renamed recent"))
        thread.call(partial(sim.edit_activity, old_renamed, name="Renamed old"))
        thread.call(sim.delete_activity, recent_deleted)
        thread.call(sim.delete_activity, old_deleted)

        mark = len(sim.request_log)
        assert list_history(config) == 0
        assert list_requests(sim, mark) == 1
        store = athlete_store(tmp_path / "data")
        catalog = store.catalog()
        assert catalog[recent_renamed]["name"] == "Renamed recent"
        assert recent_deleted not in catalog and store.tombstones()[recent_deleted].reason == "unlisted"
        assert catalog[old_renamed]["name"] != "Renamed old" and old_deleted in catalog  # not listed again

        mark = len(sim.request_log)
        assert list_history(config, "--full-relist") == 0
        assert list_requests(sim, mark) == list_pages_needed(truth(sim), 200)
        catalog = store.catalog()
        assert catalog[old_renamed]["name"] == "Renamed old"
        assert old_deleted not in catalog and store.tombstones()[old_deleted].reason == "unlisted"
        assert set(catalog) == visible_ids(sim)
        assert len(store.listings()) == 1  # the full listing holds everything the catalog needs


def test_the_whole_history_is_listed_again_when_full_relist_days_have_passed(tmp_path: Path) -> None:
    settings_ = SimulatorSettings(activities=600, seed=43, short_limit=1000, daily_limit=10000)
    thread = SimulatorThread(settings_)
    with thread as sim:
        config = setup(tmp_path, sim, fetch={"full_relist_days": 3})
        store = athlete_store(tmp_path / "data")
        assert list_history(config) == 0
        old = sim.activity_ids()[500]
        thread.call(partial(sim.edit_activity, old, name="Renamed old"))
        backdate_full_listing(store, 2.9)
        mark = len(sim.request_log)
        assert list_history(config) == 0
        assert list_requests(sim, mark) == 1 and store.catalog()[old]["name"] != "Renamed old"

        backdate_full_listing(store, 0.2)  # now 3.1 days old
        mark = len(sim.request_log)
        assert list_history(config) == 0
        assert list_requests(sim, mark) == list_pages_needed(truth(sim), 200) == 4
        assert store.catalog()[old]["name"] == "Renamed old"
        mark = len(sim.request_log)
        assert list_history(config) == 0
        assert list_requests(sim, mark) == 1  # the new full listing is fresh


def test_a_killed_routine_listing_resumes_where_it_stopped_with_its_own_boundary(tmp_path: Path) -> None:
    settings_ = SimulatorSettings(activities=500, seed=44, short_limit=1000, daily_limit=10000)
    thread = SimulatorThread(settings_)
    with thread as sim:
        config = setup(tmp_path, sim)
        store = athlete_store(tmp_path / "data")
        assert list_history(config) == 0
        deleted = sim.activity_ids()[120]  # among the 200 newest of that run
        thread.call(sim.delete_activity, deleted)
        for _ in range(450):  # the routine listing takes 4 pages: 450 new and the 199 left of the 200
            thread.call(sim.add_activity)
        thread.call(partial(sim.set_settings, latency_s=0.3))
        process = subprocess.Popen([sys.executable, "-m", "bulkfetch", "--config", str(config), "fetch",
                                    "--no-compact", *NO_DETAILS], env=cli_env(), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
                store.unfinished_listing() and len(store.unfinished_listing().page_paths()) >= 2):
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        assert len(store.unfinished_listing().page_paths()) == 2
        thread.call(partial(sim.set_settings, latency_s=0.0))
        time.sleep(0.2)  # the killed run's last request, already on the wire, reaches the log before `mark`

        mark = len(sim.request_log)
        assert list_history(config) == 0
        # Pages 3 and 4 reach past the 200 newest of the run before the killed one (not those of the
        # listing so far), then one page at the top finds nothing newer.
        assert list_requests(sim, mark) == 3
        assert store.tombstones()[deleted].reason == "unlisted"
        assert set(store.catalog()) == visible_ids(sim)


def test_plan_spends_at_most_a_routine_listing_and_counts_the_next_fetchs_list_requests(tmp_path: Path,
                                                                                         capsys) -> None:
    settings_ = SimulatorSettings(activities=600, seed=45, short_limit=1000, daily_limit=10000)
    with SimulatorThread(settings_) as sim:
        config = setup(tmp_path, sim)
        store = athlete_store(tmp_path / "data")

        def plan() -> tuple[int, str]:
            capsys.readouterr()
            mark = len(sim.request_log)
            assert main(["--config", str(config), "plan"]) == 0
            return list_requests(sim, mark), capsys.readouterr().out

        spent, out = plan()  # the first time there is no list: the whole history
        assert spent == 4 and "listed 600 activities with 4 requests" in out
        spent, out = plan()
        assert spent == 1 and "listed 200 activities with 1 request" in out
        assert re.search(r"\(1 list page, 600 details", out) and "lists the newest activities" in out

        backdate_full_listing(store, 8)  # a full re-list is due (full_relist_days 7)
        spent, out = plan()
        assert spent == 1  # plan itself lists routinely even then
        assert re.search(r"\(4 list pages, 600 details", out) and "the whole history again" in out
        capsys.readouterr()
        assert main(["--config", str(config), "status", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["listing"]["next"]["full"] and report["listing"]["next"]["list_pages"] == 4
        assert report["remaining_requests"] == 4 + 600
        mark = len(sim.request_log)
        assert list_history(config) == 0
        assert list_requests(sim, mark) == 4  # what plan and status said

        (store.latest_full_listing().folder / "complete.json").unlink()  # as if that re-list was killed
        spent, out = plan()
        assert spent == 0 and "sent no request" in out  # finishing it is the next fetch's work


def test_a_data_dir_from_before_routine_listings_lists_routinely_and_spends_nothing_again(tmp_path: Path) -> None:
    # Listings had no listing.json (all were full) and 404 tombstones had no fingerprint.
    settings_ = SimulatorSettings(activities=150, seed=46, missing_rate=0.1, short_limit=1000, daily_limit=10000)
    with SimulatorThread(settings_) as sim:
        config = setup(tmp_path, sim)
        assert fetch(config) == 0
        store = athlete_store(tmp_path / "data")
        (store.listings()[-1].folder / "listing.json").unlink(missing_ok=True)
        tombstones = store.state_path("tombstones")
        old_style = {k: {"reason": v["reason"], "at": v["at"]}
                     for k, v in orjson.loads(tombstones.read_bytes()).items()}
        assert old_style, "the scenario produced no 404"
        tombstones.write_bytes(orjson.dumps(old_style))

        mark = len(sim.request_log)
        assert fetch(config) == 0
        assert list_requests(sim, mark) == 1 and not detail_gets(api_records(sim, since=mark))
        assert set(store.catalog()) == visible_ids(sim)


# -- 404'd details (over HTTP) ------------------------------------------------------------------------------

def has_detail_rows(parquet_dir: Path) -> dict[int, bool]:
    table = pq.read_table(parquet_dir / "activities", partitioning="hive", columns=["id", "has_detail"])
    return dict(zip(table.column("id").to_pylist(), table.column("has_detail").to_pylist()))


def test_a_404_on_a_listed_activity_is_asked_again_only_when_its_summary_changes_or_at_a_full_relist(
        tmp_path: Path, capsys) -> None:
    settings_ = SimulatorSettings(activities=30, seed=18, missing_rate=0.2, short_limit=1000, daily_limit=10000)
    thread = SimulatorThread(settings_)
    with thread as sim:
        config = setup(tmp_path, sim)
        store = athlete_store(tmp_path / "data")
        assert main(["--config", str(config), "fetch"]) == 0
        missing = {i for i, t in store.tombstones().items() if t.reason == "not_found"}
        assert missing, "the scenario produced no 404"
        # Still listed, so still known: its summary row stays, without a detail.
        assert set(store.catalog()) == visible_ids(sim)
        rows = has_detail_rows(tmp_path / "data" / "parquet")
        assert set(rows) == visible_ids(sim) and {i for i, has in rows.items() if not has} == missing

        mark = len(sim.request_log)
        assert main(["--config", str(config), "fetch"]) == 0
        assert not detail_gets(api_records(sim, since=mark)) and not [
            r for r in api_records(sim, since=mark) if r.status == 404]
        capsys.readouterr()
        assert main(["--config", str(config), "status", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["pending"] == 0 and report["unavailable"] == len(missing) and report["deleted"] == 0

        renamed = min(missing)
        thread.call(partial(sim.edit_activity, renamed, name="Renamed"))
        mark = len(sim.request_log)
        assert fetch(config) == 0
        asked = {int(r.path.rsplit("/", 1)[1]) for r in api_records(sim, since=mark) if r.path.startswith(
            f"{API}/activities/")}
        assert asked == {renamed}

        thread.call(partial(sim.set_settings, missing_rate=0.0))  # the 404s were not deletions
        config = setup(tmp_path, sim, fetch={"full_relist_days": 0})  # a full re-list is due: plans count them
        capsys.readouterr()
        assert main(["--config", str(config), "plan", "--offline"]) == 0
        assert f", {len(missing)} details;" in capsys.readouterr().out
        assert main(["--config", str(config), "status", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["pending"] == len(missing) and report["unavailable"] == len(missing)
        mark = len(sim.request_log)
        assert fetch(config, "--full-relist") == 0
        assert set(detail_gets(api_records(sim, since=mark))) == {f"{API}/activities/{i}" for i in missing}
        assert not store.not_found()
        assert_matches_ground_truth(sim, tmp_path / "data")


def test_pending_details_skip_a_404_for_the_same_summary_but_not_for_a_changed_one() -> None:
    catalog = {i: {"id": i, "start_date": iso(1_700_000_000 + i), "name": f"Run {i}"} for i in (1, 2, 3, 4)}
    not_found = {1: fingerprint(catalog[1]), 2: fingerprint({**catalog[2], "name": "before"}), 3: None}
    ids, new, changed = pending_details(catalog, {}, Filters(), not_found)
    assert ids == [4, 2] and (new, changed) == (1, 1)  # 2 changed since its 404; 3: an older version's 404


def test_prune_keeps_what_the_catalog_needs(tmp_path: Path) -> None:
    store = RawStore(tmp_path)
    store.prepare()

    def listing(items: list[int], meta: dict, complete: bool = True):
        made = store.new_listing(time.time(), meta)
        made.write_page(1, orjson.dumps([{"id": i, "name": f"{i}@{made.listing_id}"} for i in items]))
        if complete:
            made.mark_complete(len(items))
        return made

    routine = {"kind": "routine", "boundary": {"start": 0, "ids": []}}
    listing([1, 2], {"kind": "full"})
    base = listing([1, 2, 3], {"kind": "full"})
    listing([3, 4], routine)  # 3 and 4 come again in `newest`
    kept = listing([4, 5], routine)
    newest = listing([3, 4], routine)
    unfinished = listing([6], routine, complete=False)
    before = store.catalog()
    store.prune_listings()
    assert [x.listing_id for x in store.listings()] == [x.listing_id for x in (base, kept, newest, unfinished)]
    assert store.catalog() == before and set(before) == {1, 2, 3, 4, 5, 6}
    assert store.latest_full_listing().listing_id == base.listing_id


def test_listing_kinds_and_an_empty_unfinished_listing(tmp_path: Path) -> None:
    store = RawStore(tmp_path)
    store.prepare()
    legacy = store.new_listing(time.time())
    (legacy.folder / "listing.json").unlink()  # written by a version without routine listings
    assert legacy.is_full
    legacy.write_page(1, orjson.dumps([{"id": 1}]))
    legacy.mark_complete(1)
    damaged = store.new_listing(time.time(), {"kind": "routine"})
    (damaged.folder / "listing.json").write_bytes(b'{"kind": "fu')
    assert not damaged.is_full  # never taken for the whole history
    again = store.new_listing(time.time(), {"kind": "full"})  # it held no page: taken over
    assert again.folder == damaged.folder and again.is_full
    counts = collections.Counter(x.is_full for x in store.listings())
    assert counts == {True: 2}


@contextmanager
def fetched_once(tmp_path: Path, *, activities: int, seed: int):
    """A simulator with a history that one fetch (and compaction) has downloaded whole: (thread, sim, config,
    the athlete's store)."""
    thread = SimulatorThread(SimulatorSettings(activities=activities, seed=seed, short_limit=1000, daily_limit=10000))
    with thread as sim:
        config = setup(tmp_path, sim)
        assert main(["--config", str(config), "fetch"]) == 0
        yield thread, sim, config, athlete_store(tmp_path / "data")


def test_a_full_listing_that_lost_most_of_the_history_keeps_every_row_and_raw_page(tmp_path: Path, capsys) -> None:
    """The guard against a lost scope: nothing is marked deleted, and nothing is dropped either: the
    suspect listing overlays what it listed, the previous full listing stays the catalog's base."""
    with fetched_once(tmp_path, activities=32, seed=44) as (thread, sim, config, store):
        base_pages = store.latest_full_listing().page_paths()
        ids = sim.activity_ids()
        for activity_id in ids[:20]:
            thread.call(sim.delete_activity, activity_id)
        thread.call(partial(sim.edit_activity, ids[25], name="Renamed during the loss"))
        capsys.readouterr()
        assert main(["--config", str(config), "fetch", "--full-relist"]) == 0
        assert "20 of 32 activities left the list at once" in capsys.readouterr().err
        assert set(store.catalog()) == set(ids) and not store.tombstones()
        assert store.catalog()[ids[25]]["name"] == "Renamed during the loss"  # what it listed is used
        assert all(page.exists() for page in base_pages)  # the last whole listing is kept
        rows = pq.read_table(tmp_path / "data" / "parquet" / "activities").num_rows
        assert rows == 32
        assert main(["--config", str(config), "fetch"]) == 0  # a routine run after it keeps them too
        assert set(store.catalog()) == set(ids) and not store.tombstones()


def test_after_a_killed_first_listing_plan_and_status_give_lower_bounds(tmp_path: Path, capsys) -> None:
    """Only part of the history is known until a first full listing reaches its end: the counts are
    what that part needs, and say so."""
    settings_ = SimulatorSettings(activities=30, seed=45, short_limit=1000, daily_limit=10000)
    with SimulatorThread(settings_) as sim:
        config = setup(tmp_path, sim, fetch={"per_page": 10})
        store = athlete_store(tmp_path / "data")
        store.prepare()
        listing = store.new_listing(time.time())  # what a run killed after its first page leaves
        listing.write_page(1, orjson.dumps([sim.summary(i) for i in sim.activity_ids()[:10]]))
        capsys.readouterr()
        assert main(["--config", str(config), "plan", "--offline"]) == 0
        out = capsys.readouterr().out
        assert "plan: at least " in out and "has not reached the end of the history yet" in out, out
        assert "the whole history (the first full listing): at least " in out, out
        assert main(["--config", str(config), "status"]) == 0
        assert " for at least " in capsys.readouterr().out


def test_a_token_that_lost_read_all_keeps_the_private_activities(tmp_path: Path, capsys) -> None:
    """Without activity:read_all Strava lists only the non-private activities: a few missing private ones
    would pass the mass-disappearance guard, yet they are hidden, not deleted."""
    with fetched_once(tmp_path, activities=60, seed=46) as (thread, sim, config, store):
        private = {i for i, s in store.catalog().items() if s.get("private")}
        assert private and len(private) < 30, "the scenario needs a few private activities"
        thread.call(partial(sim.set_athlete_scope, "read,activity:read"))
        capsys.readouterr()
        assert main(["--config", str(config), "fetch"]) == 0
        assert "the token seems to have lost activity:read_all" in capsys.readouterr().err
        assert not store.tombstones() and private <= set(store.catalog())
        assert pq.read_table(tmp_path / "data" / "parquet" / "activities").num_rows == 60


def test_plan_full_relist_counts_what_a_forced_full_listing_spends(tmp_path: Path, capsys) -> None:
    settings_ = SimulatorSettings(activities=450, seed=47, short_limit=1000, daily_limit=10000,
                                  overall_short_limit=2000, overall_daily_limit=20000)
    with SimulatorThread(settings_) as sim:
        config = setup(tmp_path, sim)
        assert list_history(config) == 0
        capsys.readouterr()
        assert main(["--config", str(config), "plan", "--offline"]) == 0
        assert "(1 list page," in capsys.readouterr().out
        assert main(["--config", str(config), "plan", "--offline", "--full-relist"]) == 0
        pages = list_pages_needed(truth(sim), 200)
        assert f"({pages} list pages," in capsys.readouterr().out and pages > 1
        mark = len(sim.request_log)
        assert list_history(config, "--full-relist") == 0
        assert list_requests(sim, mark) == pages
