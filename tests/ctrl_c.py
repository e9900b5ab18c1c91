"""A Ctrl-C at the worst point for a command waiting for its worker processes: just after its main thread
took a lock of the futures it waits for (threading.Condition.__enter__ returning under Future.result or
concurrent.futures.wait), where Python would raise it with the lock held and the pool's manager thread would
block on that lock for ever (see bulkfetch.processes.wait_for). A sitecustomize sends it, once, in the
command only (not its forkserver, whose command line is `python -c`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tests.conftest import REPO, cli_env

CTRL_C_IN_A_FUTURES_LOCK = """import os, signal, sys, threading
FUTURES = os.path.join("concurrent", "futures", "_base.py")
def waiting_for_futures(frame):
    while frame is not None:
        if frame.f_code.co_filename.endswith(FUTURES) and frame.f_code.co_name in ("result", "wait"):
            return True
        frame = frame.f_back
    return False
def at_return(frame, event, arg):
    if event == "return":
        sys.settrace(None)
        signal.raise_signal(signal.SIGINT)
def trace(frame, event, arg):
    if frame.f_code is threading.Condition.__enter__.__code__ and waiting_for_futures(frame.f_back):
        return at_return
    return None
if sys.argv[0] != "-c":
"""

STOPPED_END_S = 20  # a stopped command ends within a second or two; a hung one never does


def futures_lock_site(folder: Path, setup: Sequence[str] = ()) -> str:
    """A sitecustomize in `folder` (made here) that runs the `setup` lines, then sends the Ctrl-C (both in
    the command only): the PYTHONPATH that loads it, with this repository after it."""
    folder.mkdir(parents=True)
    lines = [*setup, "sys.settrace(trace)"]
    (folder / "sitecustomize.py").write_text(CTRL_C_IN_A_FUTURES_LOCK + "".join(f"    {line}\n" for line in lines))
    return os.pathsep.join([str(folder), str(REPO)])


def run_ctrl_c_in_a_futures_lock(args: Sequence[str], site: Path,
                                 setup: Sequence[str] = ()) -> tuple[int | None, str, str]:
    """`bulkfetch ARGS` in a session of its own, given that Ctrl-C (see `futures_lock_site`): its exit
    code (None when it did not end within STOPPED_END_S: hung, then killed), stdout and stderr, once no
    process of its session is left (asserted)."""
    command = subprocess.Popen([sys.executable, "-m", "bulkfetch", *args],
                               env=cli_env(PYTHONPATH=futures_lock_site(site, setup)), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    code, out, err = ended(command)
    deadline = time.monotonic() + 10
    while (left := session(command.pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "a process outlived the command"
    return code, out, err


def ended(command: subprocess.Popen[str]) -> tuple[int | None, str, str]:
    """A command of a session of its own once it ended: its exit code, stdout and stderr; code None when it
    did not end within STOPPED_END_S (hung: then its process group is killed)."""
    try:
        out, err = command.communicate(timeout=STOPPED_END_S)
    except subprocess.TimeoutExpired:
        os.killpg(command.pid, signal.SIGKILL)
        return None, *command.communicate()
    return command.returncode, out, err


def session(session_id: int) -> list[int]:
    """The live processes of a session (a command's own: it was started in a new one)."""
    members = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state, ppid, pgrp, session, ...
        if fields[3] == str(session_id) and fields[0] != "Z":
            members.append(int(entry.name))
    return members
