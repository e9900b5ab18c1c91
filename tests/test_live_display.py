"""The terminal's display (bulkfetch.live_display, through bulkfetch.progress.Reporter): rich's bars on a
terminal, never under CI or without one, and rich's tables for results."""

from __future__ import annotations

import io
import sys

import pytest

from bulkfetch.progress import Reporter


class Terminal(io.StringIO):
    """What rich writes to a terminal, kept."""

    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_the_bars_of_details_streams_and_compaction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    terminal = Terminal()
    with Reporter(stream=terminal) as reporter:
        reporter.details_planned(3, new=2, changed=1)
        for activity_id in (1, 2, 3):
            reporter.detail_done(activity_id, "fetched")
        reporter.compact_progress(0, 2)
        reporter.compact_progress(2, 2)
    shown = terminal.getvalue()
    assert "details" in shown and "3/3" in shown and "compact" in shown and "2/2" in shown
    assert "\x1b[" in shown  # drawn by rich (cursor moves, colours), not plain lines


def test_without_a_terminal_or_under_ci_no_bar_is_drawn(monkeypatch: pytest.MonkeyPatch) -> None:
    for ci, terminal in (("", io.StringIO()), ("true", Terminal())):
        monkeypatch.setenv("CI", ci)
        with Reporter(stream=terminal) as reporter:
            reporter.details_planned(1, new=1, changed=0)
            reporter.detail_done(1, "fetched")
        assert "\x1b[" not in terminal.getvalue()
        assert "details 1/1" in terminal.getvalue()


def test_a_result_table_on_a_terminal_is_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    Reporter(stream=io.StringIO()).table("athletes", ("id", "activities"), [("1", "12"), ("22", "3")])
    shown = terminal.getvalue()
    assert "athletes" in shown and "activities" in shown and "22" in shown
    assert "┃" in shown or "│" in shown  # rich's box, not the plain two-space columns
