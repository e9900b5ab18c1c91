"""Malformed and hostile answers from the network: a small fake API (a route table on real HTTP, 127.0.0.1)
serves what Strava never should; `fetch` must not crash, write outside its folders, or follow a redirect
with the token. Each bad answer is skipped (with a message) or retried."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
from aiohttp import web

from bulkfetch.cli import main
from tests.conftest import athlete_store

ATHLETE = {"id": 7, "resource_state": 1}


def summary(activity_id: Any, day: int = 1, **fields: Any) -> dict[str, Any]:
    return {"id": activity_id, "athlete": ATHLETE, "name": f"Run {activity_id}", "sport_type": "Run",
            "type": "Run", "distance": 5000.0, "moving_time": 1500, "elapsed_time": 1600,
            "start_date": f"2024-03-{day:02d}T07:00:00Z", **fields}


def detail(activity_id: int, **fields: Any) -> dict[str, Any]:
    return {**summary(activity_id), "resource_state": 3, "calories": 400.0, "laps": [], "splits_metric": [],
            **fields}


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    authorization: str | None


@dataclass
class FakeApi:
    """Routes: `pages` answers the list (by `before` cursor: None first), `details` and `streams` by id."""

    pages: Callable[[web.Request], web.StreamResponse]
    details: dict[int, Callable[[web.Request], web.StreamResponse]] = field(default_factory=dict)
    streams: dict[int, Callable[[web.Request], web.StreamResponse]] = field(default_factory=dict)
    token: Callable[[web.Request], web.StreamResponse] | None = None
    seen: list[Seen] = field(default_factory=list)


def json_answer(data: Any, status: int = 200) -> Callable[[web.Request], web.Response]:
    return lambda request: web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def raw_answer(body: bytes, status: int = 200, content_type: str = "application/json"):
    return lambda request: web.Response(body=body, status=status, content_type=content_type)


class Server:
    """One aiohttp app on 127.0.0.1 in a thread; `seen` logs every request with its Authorization header."""

    def __init__(self, api: FakeApi | None) -> None:
        self.api = api
        self.seen: list[Seen] = []
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> Server:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(Seen(request.path, dict(request.query), request.headers.get("Authorization")))
        if self.api is None:
            return web.Response(text="stolen")
        if request.path == "/oauth/token" and self.api.token is not None:
            return self.api.token(request)
        if request.path == "/oauth/token":
            return json_answer({"access_token": "hostile-access", "refresh_token": "hostile-refresh-2",
                                "expires_at": int(time.time()) + 3600})(request)
        if request.path == "/api/v3/athlete/activities":
            return await _maybe_async(self.api.pages(request))
        tail = request.path.removeprefix("/api/v3/activities/")
        if tail.isdigit() and int(tail) in self.api.details:
            return await _maybe_async(self.api.details[int(tail)](request))
        activity, _, kind = tail.partition("/")
        if kind == "streams" and activity.isdigit() and int(activity) in self.api.streams:
            return await _maybe_async(self.api.streams[int(activity)](request))
        return json_answer({"message": "Record Not Found", "errors": []}, 404)(request)


async def _maybe_async(answer: Any) -> web.StreamResponse:
    return await answer if asyncio.iscoroutine(answer) else answer


def one_page(items: list[Any]) -> Callable[[web.Request], web.Response]:
    """The whole history in the first page; later pages (with `before`) are empty."""
    return lambda request: json_answer(items if "before" not in request.query else [])(request)


def run_fetch(tmp_path: Path, server: Server, capsys, *args: str, fetch: str = "") -> tuple[int, str, str]:
    config = tmp_path / "config.toml"
    config.write_text(f"""[strava]
api_url = "{server.url}/api/v3"
oauth_url = "{server.url}/oauth"
client_id = "1"
client_secret = "hostile-client-secret"
refresh_token = "hostile-refresh-1"
[fetch]
backoff_base_s = 0.01
backoff_cap_s = 0.05
max_attempts = 3
request_timeout_s = 5
{fetch}
[storage]
data_dir = "{tmp_path / 'data'}"
""")
    capsys.readouterr()
    code = main(["--config", str(config), "-v", "fetch", *args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def files_outside_the_store(tmp_path: Path) -> list[Path]:
    data = tmp_path / "data"
    return [p for p in tmp_path.rglob("*") if p.is_file() and data not in p.parents and p.name != "config.toml"]


def test_ids_that_are_not_positive_integers_are_skipped_and_never_name_a_file(tmp_path: Path, capsys) -> None:
    bad = ["123", -5, 0, 1.5, True, "../../escaped", None, "1/../../x", [1], {"id": 1}, 1e30,
           2**63, 2**64 - 1]  # valid JSON integers, but no int64 (the Parquet id) holds them
    items = [summary(11, 3), *[summary(b) for b in bad], {}, 7, "x", None, summary(12, 2)]
    page = orjson.dumps(items).replace(b"1e30", b"123456789012345678901234567890")  # beyond 64 bits
    api = FakeApi(pages=lambda request: raw_answer(page if "before" not in request.query else b"[]")(request),
                  details={11: json_answer(detail(11)), 12: json_answer(detail(12)),
                           2**63: json_answer(detail(2**63))})
    with Server(api) as server:
        code, out, err = run_fetch(tmp_path, server, capsys)
    assert code == 0, err
    assert f"skipped {len(items) - 2} list item(s) without a valid activity id" in err
    store = athlete_store(tmp_path / "data")
    assert store.detail_ids() == {11, 12} and set(store.catalog()) == {11, 12}
    assert sorted(p.name for p in store.detail_dir.iterdir()) == ["11.json", "12.json"]
    asked = {s.path for s in server.seen if s.path.startswith("/api/v3/activities/")}
    assert asked == {"/api/v3/activities/11", "/api/v3/activities/12"}
    assert not files_outside_the_store(tmp_path)
    assert sorted(pq.read_table(tmp_path / "data" / "parquet" / "activities").column("id").to_pylist()) == [11, 12]


@pytest.mark.parametrize("page, reason", [
    (json_answer({"message": "not a list"}), "did not return a list"),
    (json_answer("a string"), "did not return a list"),
    (raw_answer(b"<html>maintenance</html>", content_type="text/html"), "malformed JSON"),
    (raw_answer(b'[{"id": 1, "name": "tru'), "malformed JSON"),
])
def test_a_page_that_is_not_a_list_stops_the_listing_with_exit_75_and_a_message(tmp_path: Path, capsys,
                                                                                 page, reason) -> None:
    with Server(FakeApi(pages=page)) as server:
        code, out, err = run_fetch(tmp_path, server, capsys)
    assert code == 75, err
    assert reason in err and "listing" in err
    assert not athlete_store(tmp_path / "data").detail_ids() and not files_outside_the_store(tmp_path)
    if reason == "malformed JSON":  # retried (a transient fault) before giving up
        assert len([s for s in server.seen if s.path == "/api/v3/athlete/activities"]) == 3


def test_fields_of_the_wrong_type_are_stored_raw_and_become_nulls(tmp_path: Path, capsys) -> None:
    odd_summary = summary(21, 5, distance="far", moving_time=[1], name={"x": 1}, sport_type=["Run"],
                          athlete="me", start_latlng="nope", private="yes", kudos_count=1e308)
    odd_detail = {**detail(21), "distance": "far", "calories": "lots", "laps": [1, "a", None, {"lap_index": "x"}],
                  "splits_metric": "oops", "segment_efforts": {"a": 1}, "best_efforts": [{"elapsed_time": "x"}],
                  "map": 5, "start_date": 12345, "gear": [], "device_name": {"n": 1}}
    items = [odd_summary, summary(22, 4, start_date=12345), summary(23, 3, start_date="yesterday")]
    api = FakeApi(pages=one_page(items), details={21: json_answer(odd_detail), 22: json_answer(detail(22)),
                                                  23: json_answer(detail(23, start_date="yesterday"))})
    with Server(api) as server:
        code, out, err = run_fetch(tmp_path, server, capsys)
    assert code == 0, err
    store = athlete_store(tmp_path / "data")
    assert orjson.loads(store.detail_path(21).read_bytes()) == odd_detail  # raw bytes kept as received
    table = pq.read_table(tmp_path / "data" / "parquet" / "activities")
    rows = {row["id"]: row for row in table.to_pylist()}
    assert set(rows) == {21, 22, 23}
    assert rows[21]["distance"] is None


@dataclass
class HugeBody:
    """A 200 that announces a body larger than any activity could be."""

    size: int = 300 * 1024 * 1024

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = self.size
        await response.prepare(request)
        try:
            await response.write(b"[" + b" " * 65536)
        except (ConnectionError, RuntimeError):
            pass
        return response


def test_a_failed_stream_set_is_reported_and_kept_as_a_stream_failure(tmp_path: Path, capsys) -> None:
    items = [summary(41, 2), summary(42, 1)]
    time_stream = {"time": {"data": [0, 1], "series_type": "time", "original_size": 2, "resolution": "high"}}
    api = FakeApi(pages=one_page(items), details={41: json_answer(detail(41)), 42: json_answer(detail(42))},
                  streams={41: raw_answer(b"<html>oops</html>", content_type="text/html"),
                           42: json_answer(time_stream)})
    with Server(api) as server:
        code, out, err = run_fetch(tmp_path, server, capsys, "--streams", "time")
    assert code == 75, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("bulkfetch: 1 stream set(s) failed") and "activity 41" in last, last
    assert "; 1 failed (1 of them stream sets); " in out  # the summary line counts them too
    assert "; 2 stream requests (1 set, 1 failed); " in out  # and among the stream requests
    assert "detail" not in last
    store = athlete_store(tmp_path / "data")
    assert store.detail_ids() == {41, 42} and store.stream_ids() == {42}
    failed = store.read_state("failed")
    assert failed["details"] == {} and set(failed["streams"]) == {"41"}
    assert main(["--config", str(tmp_path / "config.toml"), "status", "--json"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert report["failed"] == 1 and report["failed_streams"] == 1


def test_huge_bodies_redirects_and_impostor_details_fail_that_activity_only(tmp_path: Path, capsys) -> None:
    with Server(None) as elsewhere:
        ids = [31, 32, 33, 34, 35, 36, 37]
        items = [summary(i, 20 - n) for n, i in enumerate(ids)]
        api = FakeApi(pages=one_page(items), details={
            31: json_answer(detail(31)),
            32: HugeBody(),
            33: lambda request: web.Response(status=302, headers={"Location": f"{elsewhere.url}/steal"}),
            34: lambda request: web.Response(status=307, headers={"Location": f"{elsewhere.url}/steal"}),
            35: json_answer(detail(36)),  # another activity than the one asked for
            36: json_answer([detail(36)]),  # not an object
            37: raw_answer(b"<html>oops</html>", content_type="text/html"),
        })
        with Server(api) as server:
            code, out, err = run_fetch(tmp_path, server, capsys)
    assert code == 75, err
    assert not elsewhere.seen  # the redirect was not followed, with or without the token
    store = athlete_store(tmp_path / "data")
    assert store.detail_ids() == {31}
    failed = store.read_state("failed")["details"]
    assert set(failed) == {"32", "33", "34", "35", "36", "37"}
    assert "too large" in failed["32"]
    assert "redirect" in failed["33"] and "redirect" in failed["34"]
    assert "malformed JSON" in failed["37"]
    last = err.strip().splitlines()[-1]  # the one error line says why, for the first failure at least
    assert last.startswith("bulkfetch: 6 detail(s) failed") and "(first: activity 3" in last
    assert any(reason in last for reason in failed.values()), last
    assert len([s for s in server.seen if s.path == "/api/v3/activities/37"]) == 3  # retried, then skipped
    assert len([s for s in server.seen if s.path == "/api/v3/activities/33"]) == 1  # never retried blindly
    assert all(s.authorization == "Bearer hostile-access" for s in server.seen if s.path.startswith("/api/"))
    assert not files_outside_the_store(tmp_path)


def test_a_redirect_from_the_token_endpoint_is_not_followed_with_the_client_secret(tmp_path: Path, capsys) -> None:
    with Server(None) as elsewhere:
        api = FakeApi(pages=one_page([]), token=lambda request: web.Response(
            status=307, headers={"Location": f"{elsewhere.url}/oauth/token"}))
        with Server(api) as server:
            code, out, err = run_fetch(tmp_path, server, capsys)
    assert code == 1, err
    assert err.strip().splitlines()[-1].startswith("bulkfetch: token refresh failed: HTTP 307")
    assert not elsewhere.seen
    assert not [s for s in server.seen if s.path.startswith("/api/")]  # no API request without a token
