"""rich on a terminal: the live progress bars and the result tables `bulkfetch.progress` shows there.

Apart from `bulkfetch.progress` because rich's console and progress modules take some 40 ms to import,
which a command without a terminal (CI, cron, a pipe: plain lines) never needs.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import IO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text


def live_progress(stream: IO[str], live_note: Callable[[], str]) -> Progress:
    """The bars of a run on `stream` (not started), with `live_note` on the tasks that ask for it."""
    console = Console(file=stream, highlight=False, soft_wrap=True)
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"), _LiveNoteColumn(live_note), TimeElapsedColumn(),
        console=console, transient=False, refresh_per_second=4,
    )


def print_table(title: str, headers: tuple[str, ...], rows: list[tuple[str, ...]], left: Collection[int]) -> None:
    """A rich table on stdout; the `left` columns left-aligned, the others right-aligned."""
    table = Table(title=title)
    for index, header in enumerate(headers):
        table.add_column(header, justify="left" if index in left else "right")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


class _LiveNoteColumn(ProgressColumn):
    """The details bar's quota or wait countdown, recomputed at each refresh (4 times a second)."""

    def __init__(self, live_note: Callable[[], str]) -> None:
        super().__init__()
        self._live_note = live_note

    def render(self, task: Task) -> Text:
        return Text(self._live_note() if task.fields.get("live") else "")
