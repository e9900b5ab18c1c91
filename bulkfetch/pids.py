"""Whether a process runs, by its PID: what tells a lock's, a quota ticket's, a temporary file's or a
worker's parent's owner gone.

A process that ended stays a zombie until its parent reaps it, and that may take a while: the parent may
wait for the zombie's own children first, and an orphan's reaper (a container's PID 1 often is no init)
may be slow or never reap. A zombie runs no code and writes nothing, so it counts as gone.
"""

from __future__ import annotations

import os
from pathlib import Path

_PROC = Path("/proc")


def alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (where /proc tells: Linux; elsewhere it exists)."""
    if pid <= 0:
        return False
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except FileNotFoundError:
        if (_PROC / "self").exists():  # Linux: no such process
            return False
        return _exists(pid)  # no /proc (macOS)
    except OSError:
        return _exists(pid)
    return stat[stat.rindex(")") + 2] != "Z"  # the state follows the command name, which may hold spaces


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True  # another user's
    except (OSError, OverflowError):
        return False
    return True
