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

from bulkfetch.processes import ended_with_parent


def _import_figures() -> None:
    gc.disable()
    try:
        import bulkfetch.report_figures  # noqa: F401 - the workers' module, loaded once for all of them
    finally:
        gc.freeze()
        gc.enable()


with ended_with_parent(os.getppid()):  # the command: the server ends with it, even halfway through the import
    _import_figures()
