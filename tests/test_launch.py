"""`bulkfetch report` (the console script, or `python -m bulkfetch`) starts its figure server before the
command line's own imports (issue 15: the report's longest step, importing matplotlib, then overlaps them);
no other command starts it."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bulkfetch.cli import build_parser
from bulkfetch.launch import VALUE_OPTIONS, command_of
from tests.conftest import REPO, cli_env


@pytest.mark.parametrize(("argv", "command"), [
    (["report", "--out", "r.html"], "report"),
    (["--config", "report", "status"], "status"),  # a config file named "report"
    (["--conf", "report", "status"], "status"),  # argparse takes an abbreviation
    (["-q", "--config", "c.toml", "-v", "report"], "report"),
    (["--", "report"], "report"),
    (["--version"], None),
    ([], None),
    (["--config"], None),
])
def test_the_command_is_the_first_word_not_an_option_or_its_value(argv: list[str], command: str | None) -> None:
    assert command_of(argv) == command


def test_the_options_taking_a_value_are_the_parsers() -> None:
    taking_value = {option for action in build_parser()._actions
                    if action.option_strings and action.nargs != 0
                    and not isinstance(action, (argparse._VersionAction, argparse._HelpAction))
                    for option in action.option_strings}
    assert taking_value == VALUE_OPTIONS


# In the command's process: when bulkfetch.cli is about to be imported, note whether a forkserver runs, and
# whether the start imported the process pool (its modules cost the early start 10-20 ms; the server loads them).
SITE = """import os, sys
class Note:
    def find_spec(self, name, path=None, target=None):
        if name == "bulkfetch.cli" and sys.argv[0] != "-c":
            import multiprocessing.forkserver
            started = multiprocessing.forkserver._forkserver._forkserver_pid is not None
            with open(os.environ["EARLY_START_NOTE"], "a") as note:
                note.write(f"{started} {'concurrent.futures' in sys.modules}\\n")
sys.meta_path.insert(0, Note())
"""


CONSOLE_SCRIPT = Path(sys.executable).with_name("bulkfetch")  # where pip installed the `bulkfetch` command


@pytest.mark.parametrize("entry", ["python -m", "console script"])
@pytest.mark.parametrize(("args", "started"), [
    (["report", "--out", "{tmp}/r.html"], True),
    (["status"], False),
    (["report", "--help"], False),
])
def test_report_starts_its_server_before_the_command_line_is_imported(tmp_path: Path, write_config, entry: str,
                                                                        args: list[str], started: bool) -> None:
    if entry == "console script" and "bulkfetch.launch" not in _text_or_empty(CONSOLE_SCRIPT):
        pytest.skip("no `bulkfetch` beside this Python installed from this pyproject (reinstall: pip install -e .)")
    command = [sys.executable, "-m", "bulkfetch"] if entry == "python -m" else [str(CONSOLE_SCRIPT)]
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SITE)
    config = write_config(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n')
    note = tmp_path / "note"
    env = cli_env(EARLY_START_NOTE=str(note), PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), str(REPO)]))
    result = subprocess.run([*command, "--config", str(config), *(a.format(tmp=tmp_path) for a in args)], env=env,
                            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert "Traceback" not in result.stderr, result.stderr
    assert note.read_text() == f"{started} False\n"


def _text_or_empty(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def test_ctrl_c_while_the_command_starts_is_one_line_and_130(tmp_path: Path) -> None:
    """Ctrl-C as bulkfetch.cli is imported (the report's server is already importing matplotlib then)."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(
        "import sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'bulkfetch.cli':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupt())\n")
    env = cli_env(PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), str(REPO)]))
    result = subprocess.run([sys.executable, "-m", "bulkfetch", "report"], env=env, capture_output=True, text=True,
                            timeout=60, stdin=subprocess.DEVNULL)
    assert (result.returncode, result.stdout, result.stderr) == (130, "", "bulkfetch: interrupted\n")
