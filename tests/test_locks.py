"""Locks between bulkfetch processes (bulkfetch.locks): who is refused beside whom, and what the refusal
says. flock locks belong to an open file, so two holders in one process conflict as two processes do."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bulkfetch.errors import LockedError
from bulkfetch.locks import Holder, data_dir_lock, import_lock, staging_lock


def test_the_run_lock_names_its_holder_and_dies_with_it(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys, time; from pathlib import Path; from bulkfetch.locks import data_dir_lock\n"
            f"with data_dir_lock(Path({str(tmp_path)!r}), 'fetch --no-compact'):\n"
            "    print('locked', flush=True); time.sleep(30)"
        )],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError, match=f"another bulkfetch fetch --no-compact \\(PID {holder.pid}\\)") as busy:
            with data_dir_lock(tmp_path, "plan"):
                pass
        assert busy.value.holder == "fetch --no-compact" and "compacts when it ends" not in str(busy.value)
    finally:
        holder.kill()
        holder.wait(10)
    with data_dir_lock(tmp_path, "compact"):  # a lock left by a dead process is taken over
        assert (tmp_path / "fetch.lock").read_text() == f"{os.getpid()} compact\n"


def test_only_a_compacting_fetch_is_said_to_compact_when_it_ends(tmp_path: Path) -> None:
    for holder, compacts in (("fetch", True), ("demo", True), ("fetch --no-compact", False), ("plan", False),
                             ("auth", False)):
        with data_dir_lock(tmp_path, holder), pytest.raises(LockedError) as busy, data_dir_lock(tmp_path, "compact"):
            pass
        assert busy.value.holder == holder
        assert ("the fetch compacts when it ends" in str(busy.value) or
                "the demo compacts when it ends" in str(busy.value)) == compacts, str(busy.value)


def test_imports_run_together_and_beside_a_run_but_not_beside_one_that_needs_the_data_dir_alone(
        tmp_path: Path) -> None:
    with import_lock(tmp_path), import_lock(tmp_path), data_dir_lock(tmp_path, "fetch"):
        pass  # two imports and a fetch at once
    for alone in ("athletes remove --purge", "athletes adopt", "compact --rebuild"):
        with import_lock(tmp_path), pytest.raises(LockedError) as refused, data_dir_lock(tmp_path, alone, alone=True):
            pass
        assert str(refused.value).startswith(f"another bulkfetch import (PID {os.getpid()}) is using {tmp_path}")
        assert f"'{alone}' needs the data_dir to itself" in str(refused.value)
        with data_dir_lock(tmp_path, alone, alone=True), pytest.raises(LockedError) as refused, import_lock(tmp_path):
            pass
        assert refused.value.holder == alone and "needs the data_dir to itself" in str(refused.value)
    # The refused run leaves nothing held: the data_dir is free again.
    with data_dir_lock(tmp_path, "compact --rebuild", alone=True):
        pass


def test_a_refusal_names_a_shared_holder_still_running_not_the_last_to_come(tmp_path: Path) -> None:
    # Hands-on: a second import of an athlete being imported takes the imports' lock beside the first, is
    # refused by the athlete's own lock and ends; `compact --rebuild` then named it (dead), not the first.
    with import_lock(tmp_path):
        subprocess.run([sys.executable, "-c", (
            "from pathlib import Path; from bulkfetch.locks import import_lock\n"
            f"with import_lock(Path({str(tmp_path)!r})):\n    pass")],
            check=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
        assert len((tmp_path / "imports.lock").read_text().splitlines()) == 2
        with pytest.raises(LockedError) as refused, data_dir_lock(tmp_path, "compact --rebuild", alone=True):
            pass
        assert str(refused.value).startswith(f"another bulkfetch import (PID {os.getpid()}) is using {tmp_path}")
    with data_dir_lock(tmp_path, "compact --rebuild", alone=True):  # an exclusive holder starts it afresh
        assert (tmp_path / "imports.lock").read_text() == f"{os.getpid()} compact --rebuild\n"


def test_imports_starting_at_the_same_moment_never_refuse_each_other(tmp_path: Path) -> None:
    # Review: a shared holder that took the lock exclusively for a moment (to start its file afresh) had an
    # import arriving that moment refused, as if it needed the data_dir to itself.
    code = ("import sys; from pathlib import Path; from bulkfetch.errors import LockedError\n"
            "from bulkfetch.locks import import_lock\n"
            "refused = 0\n"
            "for _ in range(400):\n"
            "    try:\n"
            f"        with import_lock(Path({str(tmp_path)!r})):\n"
            "            pass\n"
            "    except LockedError:\n"
            "        refused += 1\n"
            "print(refused)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    imports = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
               for _ in range(3)]
    assert [int(process.communicate(timeout=60)[0]) for process in imports] == [0, 0, 0]
    assert all(process.returncode == 0 for process in imports)


def test_a_lock_file_written_by_someone_else_names_no_nonsense(tmp_path: Path) -> None:
    (tmp_path / "fetch.lock").write_bytes(b"12x \x1b[31mred")
    fd = os.open(tmp_path / "fetch.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(LockedError, match=r"another bulkfetch run \(PID unknown\)"):
            with data_dir_lock(tmp_path, "fetch"):
                pass
    finally:
        os.close(fd)


def _exclusive_after(tmp_path: Path, waits: list[Holder], events: list[str]) -> threading.Thread:
    """A sync's exclusive hold of the staging folder, taken in a thread (another open file: flock tells
    it from this thread's hold as it tells processes apart)."""
    def upload() -> None:
        with staging_lock(tmp_path, "upload", exclusive=True, on_wait=waits.append):
            events.append("uploading")
    return threading.Thread(target=upload)


def test_compactions_share_the_staging_folder_and_a_sync_waits_for_them_all(tmp_path: Path) -> None:
    waits: list[Holder] = []
    events: list[str] = []
    with staging_lock(tmp_path, "compaction", exclusive=False, on_wait=waits.append), \
            staging_lock(tmp_path, "compaction", exclusive=False, on_wait=waits.append):
        assert waits == []  # two compactions (a fetch's, an import's) side by side
        sync = _exclusive_after(tmp_path, waits, events)
        sync.start()
        sync.join(0.5)
        assert sync.is_alive() and events == [] and waits == [Holder(str(os.getpid()), "compaction")]
        events.append("compacted")
    sync.join(5)
    assert events == ["compacted", "uploading"]


def test_a_compaction_waits_for_the_sync_under_way(tmp_path: Path) -> None:
    waits: list[Holder] = []
    events: list[str] = []
    with staging_lock(tmp_path, "upload", exclusive=True, on_wait=waits.append):
        def compaction() -> None:
            with staging_lock(tmp_path, "compaction", exclusive=False, on_wait=waits.append):
                events.append("compacting")
        other = threading.Thread(target=compaction)
        other.start()
        other.join(0.5)
        assert other.is_alive() and waits == [Holder(str(os.getpid()), "upload")]
        events.append("uploaded")
    other.join(5)
    assert events == ["uploaded", "compacting"]
