"""The code stays lint-clean (ruff, with the rules and reasoned ignores in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_ruff_finds_nothing() -> None:
    ruff = Path(sys.executable).with_name("ruff")  # installed by the dev extra into this venv
    result = subprocess.run([ruff, "check", "bulkfetch", "tests", "bench", "--output-format", "concise"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_comments_cite_sources_a_reader_of_the_repository_can_open() -> None:
    # The notes file the code once cited is not in the repository; a citation must be a public page.
    missing_notes = "FACTS" + ".md"
    citing = [str(path.relative_to(REPO)) for folder in ("bulkfetch", "tests", "bench")
              for path in sorted((REPO / folder).rglob("*.py")) if missing_notes in path.read_text(encoding="utf-8")]
    assert not citing, f"cite the source itself (e.g. Strava's page), not {missing_notes}: {citing}"
