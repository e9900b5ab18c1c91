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
