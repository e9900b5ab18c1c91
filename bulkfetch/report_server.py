"""What the forkserver of `bulkfetch report`'s figure workers imports (bulkfetch.report_drawing), never a
command: matplotlib, loaded and readied for the workers forked from that server (issue 15).

- The server ends once the command is gone, even halfway through matplotlib's import (a second and more on
  a busy machine): the forkserver notices the command's end only after its preload, and a report that
  refused early (no dataset, a filter that leaves no split) would leave it importing behind.
- Python's garbage collector waits during the import: matplotlib's and numpy's objects all live on, and
  the hundred and more collections their allocations set off would find nothing (a tenth of the import).
  They are frozen then, as gc.freeze's documentation advises a process that forks: the workers'
  collections never walk them.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from bulkfetch.processes import PARENT_CHECK_S


@contextmanager
def _ended_with_command() -> Iterator[None]:
    """End this process at once when the command that started it ends during the block. The watch stops
    with the block: the server forks its workers afterwards, from a process of one thread."""
    command = os.getppid()
    done = threading.Event()

    def watch() -> None:
        while not done.wait(PARENT_CHECK_S):
            if os.getppid() != command:  # reparented: the command has ended
                os._exit(0)

    watcher = threading.Thread(target=watch, name="command-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


def _import_figures() -> None:
    gc.disable()
    try:
        import bulkfetch.report_figures  # noqa: F401 - the workers' module, loaded once for all of them
    finally:
        gc.freeze()
        gc.enable()


with _ended_with_command():
    _import_figures()
