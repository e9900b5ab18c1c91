"""Imported first by the forkserver of bulkfetch.processes.start_forkserver, never by a command: points the
server's stdout and stderr, which every worker forked from it inherits, at /dev/null.

The server outlives the command that started it by its teardown (a fifth of a second with matplotlib or
pyarrow loaded), and whoever reads the command's output (`... | tee`, a calling program) waits until every
holder of the pipe has closed it. The workers answer through their results, never by printing. Done here,
in the server's own first import, rather than around its start in the command, so that no thread of the
command ever writes to a redirected stdout.
"""

from __future__ import annotations

import os


def _detach() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            os.dup2(devnull, fd)
    finally:
        os.close(devnull)


_detach()
