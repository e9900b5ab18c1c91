"""The app's quota ledger file (bulkfetch.ledger_file): where it lives, the lock, several ledgers and
processes on one file, requests of dead processes, damage. Times are passed in, so nothing here waits."""

from __future__ import annotations

import fcntl
import os
import stat
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bulkfetch import ledger_file, shared_ledger
from bulkfetch.config import LimitsConfig
from bulkfetch.errors import LockedError
from bulkfetch.ledger_file import App, LedgerFile, ledger_path, state_folder
from bulkfetch.quota import RateHeaders
from bulkfetch.shared_ledger import SharedLedger, decode, read_ledger
from tests.conftest import REPO

LIMITS = LimitsConfig(short_requests=5, daily_requests=50, short_window_s=60, daily_window_s=3600)
APP = App("http://127.0.0.1:8700/api/v3", "12345")
T = 1_800_000_000.0  # the start of a short and of a daily window of LIMITS
REPORT = RateHeaders(read_usage=(1, 1), overall_usage=(1, 1))


def open_ledger(folder: Path, app: App = APP, warnings: list[str] | None = None) -> SharedLedger:
    def refuse(message: str) -> None:
        raise AssertionError(f"unexpected warning: {message}")

    return SharedLedger(folder, app, LIMITS, warn=warnings.append if warnings is not None else refuse)


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def newest(path: Path) -> tuple[int, bytes | None]:
    """(generation, JSON) of the file's newest intact slot."""
    file = LedgerFile(path, create=False)
    try:
        with file.locked(shared=True):
            return file.newest(known=-1)
    finally:
        file.close()


def stored(path: Path) -> bytes:
    payload = newest(path)[1]
    assert payload is not None
    return payload


def used(ledger, now: float = T, window: str = "short") -> int:
    return ledger.usage_view(now).get("read", window).used


def test_state_folder_is_xdg_state_home_or_the_default(state_home: Path) -> None:
    assert state_folder({"XDG_STATE_HOME": "/srv/state", "HOME": "/home/a"}) == Path("/srv/state/bulkfetch")
    for unusable in ({"XDG_STATE_HOME": "relative/state"}, {"XDG_STATE_HOME": ""}, {}):
        assert state_folder({**unusable, "HOME": "/home/a"}) == Path("/home/a/.local/state/bulkfetch")
    # conftest's autouse fixture: no test reaches the real ~/.local/state
    assert state_folder(os.environ) == state_home / "bulkfetch"


def test_one_file_per_app_named_by_a_hash(tmp_path: Path) -> None:
    other_client = App(APP.api_url, "67890")
    other_api = App("https://www.strava.com/api/v3", APP.client_id)
    paths = {ledger_path(tmp_path, app) for app in (APP, other_client, other_api)}
    assert len(paths) == 3
    assert ledger_path(tmp_path, App(APP.api_url + "/", APP.client_id)) == ledger_path(tmp_path, APP)
    assert APP.client_id not in ledger_path(tmp_path, APP).name


def test_a_reservation_is_in_the_file_before_its_request_is_sent(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    with open_ledger(folder) as first:
        ticket = first.reserve(T)
        assert ticket is not None
        seen = read_ledger(folder, APP, LIMITS, T)  # what `status` shows, and another process would find
        assert used(seen) == 1 and seen.usage_view(T).in_flight == 1
        with open_ledger(folder) as second:
            assert used(second) == 1 and second.usage_view(T).in_flight == 1
        first.settle(ticket, T + 0.1, 200, REPORT)
        assert read_ledger(folder, APP, LIMITS, T).usage_view(T).in_flight == 0
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(ledger_path(folder, APP).stat().st_mode) == 0o600


def test_two_ledgers_of_one_app_share_its_windows_and_other_apps_do_not(tmp_path: Path) -> None:
    with open_ledger(tmp_path) as first, open_ledger(tmp_path) as second:
        mine = [first.reserve(T) for _ in range(3)]
        theirs = [second.reserve(T) for _ in range(3)]
        assert all(mine) and theirs[:2] == [t for t in theirs if t] and theirs[2] is None  # 5 in all
        assert first.reserve(T) is None
        block = first.blocked_until(T)
        assert block is not None and "5/5" in block.reason
        for count, ticket in enumerate([*mine, *theirs[:2]], start=1):  # the server counted them in this order
            (first if ticket in mine else second).settle(ticket, T + 0.1, 200, RateHeaders(read_usage=(count, count)))
        assert first.reserve(T + 0.2) is None
        assert used(first, T + 0.2) == used(second, T + 0.2) == 5  # both know all, exactly
        assert first.usage_view(T + 0.2).in_flight == second.usage_view(T + 0.2).in_flight == 0
        with open_ledger(tmp_path, App(APP.api_url, "67890")) as other_app:
            assert all(other_app.reserve(T) for _ in range(5))


def test_processes_reserving_at_once_never_exceed_the_window(tmp_path: Path) -> None:
    """Four processes reserve as fast as they can in one window of 200: every reservation is made on the
    newest state under the lock, so together they get exactly 200 (a lost update would give more)."""
    code = (
        "import sys\nfrom pathlib import Path\nfrom bulkfetch.config import LimitsConfig\n"
        "from bulkfetch.ledger_file import App\nfrom bulkfetch.shared_ledger import SharedLedger\n"
        "limits = LimitsConfig(short_requests=200, daily_requests=10_000, short_window_s=60, daily_window_s=3600)\n"
        "ledger = SharedLedger(Path(sys.argv[1]), App(sys.argv[2], sys.argv[3]), limits, warn=print)\n"
        "got = 0\n"
        "for _ in range(400):\n"
        "    got += ledger.reserve(float(sys.argv[4])) is not None\n"
        "print(got)\n"
    )
    processes = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), APP.api_url, APP.client_id, str(T)],
                                  stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
                 for _ in range(4)]
    counts = [int(process.communicate(timeout=60)[0].strip()) for process in processes]
    assert sum(counts) == 200, counts
    assert used(read_ledger(tmp_path, APP, LimitsConfig(200, 10_000, 60, 3600), T)) == 200


def test_a_lock_held_too_long_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_ledger(tmp_path):
        pass  # creates the file
    lock = ledger_path(tmp_path, APP)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time\nfd = os.open(sys.argv[1], os.O_RDWR)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(30)\n", str(lock)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        monkeypatch.setattr(ledger_file, "LOCK_TIMEOUT_S", 0.2)
        with pytest.raises(LockedError, match=r"the quota ledger .*quota-\w+\.ledger stayed locked for 0\.2 s; "
                                              r"another bulkfetch process of this app is stopped"):
            open_ledger(tmp_path)
    finally:
        holder.kill()
        holder.wait(10)
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the failed open left no lock behind
    finally:
        os.close(fd)


def test_requests_of_a_killed_process_stay_counted_but_no_longer_hold_the_probe(tmp_path: Path) -> None:
    """A process learns the server sends headers, then reserves the first request of the next window (its
    probe) and dies before the answer. The next process must not wait for that answer forever."""
    code = (
        "import os, sys\nfrom pathlib import Path\nfrom bulkfetch.config import LimitsConfig\n"
        "from bulkfetch.ledger_file import App\nfrom bulkfetch.quota import RateHeaders\n"
        "from bulkfetch.shared_ledger import SharedLedger\n"
        "limits = LimitsConfig(short_requests=5, daily_requests=50, short_window_s=60, daily_window_s=3600)\n"
        "ledger = SharedLedger(Path(sys.argv[1]), App(sys.argv[2], sys.argv[3]), limits, warn=print)\n"
        "t = float(sys.argv[4])\n"
        "ledger.settle(ledger.reserve(t), t + 0.1, 200, RateHeaders(read_usage=(1, 1)))\n"
        "assert ledger.reserve(t + 60) is not None\n"
        "os._exit(0)  # killed: no answer, no close\n"
    )
    result = run_python(code, str(tmp_path), APP.api_url, APP.client_id, str(T))
    assert result.returncode == 0, result.stderr
    with open_ledger(tmp_path) as survivor:
        assert survivor.blocked_until(T + 60) is None
        assert used(survivor, T + 60) == 1 and used(survivor, T + 60, "daily") == 2
        assert survivor.usage_view(T + 60).in_flight == 0
    assert read_ledger(tmp_path, APP, LIMITS, T + 60).usage_view(T + 60).in_flight == 0


def test_a_request_in_flight_implausibly_long_is_abandoned_even_if_its_owner_lives(tmp_path: Path) -> None:
    # Its owner's PID may have been reused by another program: a ticket never blocks the app for good.
    with open_ledger(tmp_path) as first, open_ledger(tmp_path) as second:
        assert first.reserve(T) is not None
        assert read_ledger(tmp_path, APP, LIMITS, T + 1).usage_view(T + 1).in_flight == 1
        later = T + shared_ledger.STALE_IN_FLIGHT_S + 1
        assert read_ledger(tmp_path, APP, LIMITS, later).usage_view(later).in_flight == 0
        assert second.reserve(later) is not None
        assert second.usage_view(later).in_flight == 1  # its own only
        assert used(second, later, "daily") == 2


def test_close_abandons_what_the_process_still_has_in_flight(tmp_path: Path) -> None:
    with open_ledger(tmp_path) as first:
        assert first.reserve(T) is not None
    seen = read_ledger(tmp_path, APP, LIMITS, T)
    assert seen.usage_view(T).in_flight == 0 and used(seen) == 1


@pytest.mark.parametrize("damage", [
    b"{not json", b"[]", b'{"ledger": {"version": 99}, "owners": {}}', b'{"ledger": {"version": 2}, "owners": {}}',
    "truncated",
])
def test_a_damaged_file_starts_from_the_config_limits_with_a_warning(tmp_path: Path, damage) -> None:
    path = ledger_path(tmp_path, APP)
    with open_ledger(tmp_path) as ledger:
        ledger.settle(ledger.reserve(T), T, 200, REPORT)
    path.write_bytes(path.read_bytes()[:40] if damage == "truncated" else damage)
    assert used(read_ledger(tmp_path, APP, LIMITS, T)) == 0  # `status`: no traceback either
    warnings: list[str] = []
    with open_ledger(tmp_path, warnings=warnings) as ledger:
        assert len(warnings) == 1 and str(path) in warnings[0]
        assert "starting from the config's limits" in warnings[0]
        assert used(ledger) == 0
        probe = ledger.reserve(T)
        assert probe is not None and ledger.reserve(T) is None  # one probe: others may have spent
        ledger.settle(probe, T + 0.1, 200, RateHeaders(read_usage=(3, 3)))
        assert [ledger.reserve(T + 0.2) is not None for _ in range(3)] == [True, True, False]
    decode(stored(path), LIMITS)  # repaired at once
    assert len(warnings) == 1


def test_a_ledger_kept_for_other_window_lengths_is_said(tmp_path: Path) -> None:
    with SharedLedger(tmp_path, APP, LimitsConfig(5, 50, 30, 3600), warn=print) as ledger:
        assert ledger.reserve(T) is not None
    warnings: list[str] = []
    with open_ledger(tmp_path, warnings=warnings):
        pass
    assert warnings and "windows of 30 s and 3600 s, but [limits] says 60 s and 3600 s" in warnings[0]


def test_file_holds_the_app_state_and_owners_only(tmp_path: Path) -> None:
    with open_ledger(tmp_path) as ledger:
        ticket = ledger.reserve(T)
        document = orjson.loads(stored(ledger_path(tmp_path, APP)))
        assert set(document) == {"app", "ledger", "owners"}
        assert document["app"] == {"api_url": APP.api_url, "client_id": APP.client_id}
        assert document["owners"] == {str(ticket.seq): document["owners"][str(ticket.seq)]}
        assert document["owners"][str(ticket.seq)].startswith(f"{os.getpid()}:")


def write(path: Path, generation: int, payload: bytes) -> None:
    file = LedgerFile(path, create=True)
    try:
        with file.locked(shared=False):
            file.newest(known=-1)
            file.write(generation, payload)
    finally:
        file.close()


def test_a_write_torn_by_a_kill_leaves_the_state_before_it(tmp_path: Path) -> None:
    """A change is written in place into the slot without the newest state, its header last: a process
    killed in the middle of that write leaves the state before it whole."""
    path = tmp_path / "ledger"
    write(path, 1, b'{"n": 1}')
    write(path, 2, b'{"n": 2}')
    assert newest(path) == (2, b'{"n": 2}')
    size = path.stat().st_size
    header_one = slice(ledger_file.HEADER_BYTES, 2 * ledger_file.HEADER_BYTES)  # generations 1, 3, 5, ...
    region_one = int(path.read_bytes()[header_one].split()[4], 16)
    with path.open("r+b") as file:
        file.seek(region_one)
        file.write(b'{"n": 3, "ha')  # killed after part of generation 3's JSON, before its header
    assert newest(path) == (2, b'{"n": 2}')
    with path.open("r+b") as file:  # or killed while writing the header itself
        file.seek(header_one.start)
        file.write((ledger_file._HEADER % (3, region_one, 0x4000, 8, 12345))[:60])
    assert newest(path) == (2, b'{"n": 2}')
    write(path, 3, b'{"n": 3}')
    assert newest(path) == (3, b'{"n": 3}')
    assert path.stat().st_size == size  # in place: no rename, no truncation, no growth


def test_a_state_larger_than_its_slot_gets_a_larger_region(tmp_path: Path) -> None:
    path = tmp_path / "ledger"
    write(path, 1, b"1" * 100)
    write(path, 2, b"2" * 100)
    small = path.stat().st_size
    big = b"3" * (3 * ledger_file.SLOT_MIN_BYTES)
    write(path, 3, big)
    assert path.stat().st_size > small
    assert newest(path) == (3, big)
    write(path, 4, b"4")
    assert newest(path) == (4, b"4")
    write(path, 5, big)  # fits the region generation 3 had
    assert newest(path) == (5, big)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_many_requests_in_flight_fit(tmp_path: Path) -> None:
    """At the highest concurrency the state outgrows the first slot size; nothing is lost."""
    with SharedLedger(tmp_path, APP, LimitsConfig(10_000, 100_000, 60, 3600), warn=print) as ledger:
        tickets = [ledger.reserve(T) for _ in range(300)]
        assert all(tickets)
        seen = read_ledger(tmp_path, APP, LimitsConfig(10_000, 100_000, 60, 3600), T)
        assert seen.usage_view(T).in_flight == 300
        assert ledger_path(tmp_path, APP).stat().st_size > 2 * ledger_file.SLOT_MIN_BYTES
