"""The command line as users script it: exit codes, one-line errors, --help for every command."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from bulkfetch.cli import build_parser
from tests.conftest import REPO, run_cli
from tests.exports import ENGLISH_94, ExportFile, csv_text, english_row, fixture, write_folder

COMMANDS = ("fetch", "compact", "status", "plan", "auth", "athletes", "demo", "simulate")


def assert_one_clean_line(stderr: str) -> None:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("bulkfetch: ")


def test_version_and_help_for_every_command() -> None:
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("bulkfetch ")
    for command in COMMANDS:
        result = run_cli(command, "--help")
        assert result.returncode == 0, (command, result.stderr)
        assert f"usage: bulkfetch {command}" in result.stdout


@pytest.mark.parametrize("args", [("--version",), ("--help",), ("fetch", "--help"), ("simulate", "--help"),
                                  ("athletes", "remove", "--help")])
def test_version_and_help_import_no_heavy_library(args: tuple[str, ...]) -> None:
    """They answer at once: pyarrow, aiohttp and rich are imported only by the commands that use them."""
    import subprocess
    import sys

    from tests.conftest import cli_env

    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "bulkfetch", *args], env=cli_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert "bulkfetch.cli" in imported
    heavy = sorted(name for name in imported if name.split(".")[0] in ("pyarrow", "aiohttp", "rich"))
    assert not heavy, heavy


def test_compact_without_an_export_imports_neither_the_fetch_nor_the_importer(tmp_path: Path) -> None:
    """`compact` is a whole process after every import and by hand: its start-up is part of its time, so it
    loads neither the fetch's quota scheduler (aiolimiter), quota or token refresher (asyncio) nor the
    importer's decoders when no athlete has an export, nor, without a terminal, rich's live display. (ssl is
    not among them: pyarrow.fs imports it.)"""
    import subprocess
    import sys

    from bench.compact import ATHLETE_ID, write_synthetic_store
    from tests.conftest import cli_env

    write_synthetic_store(tmp_path / "data" / "athletes" / str(ATHLETE_ID), 3)
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\nparquet_dir = "{tmp_path / "parquet"}"\n')
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "bulkfetch", "--config", str(config),
                             "compact"], env=cli_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "parquet" / "activities").is_dir()
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert "bulkfetch.compact" in imported
    assert not {"aiolimiter", "bulkfetch.importer", "bulkfetch.fit_decode", "bulkfetch.scheduler", "bulkfetch.quota",
                "bulkfetch.token_refresh", "asyncio", "rich.console", "rich.progress"} & imported


def test_unknown_command_and_bad_flag_exit_2() -> None:
    for args in (("frobnicate",), ("fetch", "--no-such-flag"), ()):
        result = run_cli(*args)
        assert result.returncode == 2
        assert_one_clean_line(result.stderr)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (None, "config file not found"),
        ("[strava\n", "invalid TOML"),
        ("[limits]\nshort_requets = 1\n", "unknown key [limits] short_requets"),
        ("[limits]\nshort_requests = -1\n", "short_requests must be at least 1"),
        ('[strava]\nclient_id = "1"\n', "client_secret not set"),
    ],
)
def test_config_problems_exit_2_with_one_line(tmp_path: Path, text: str | None, needle: str) -> None:
    config = tmp_path / "config.toml"
    if text is not None:
        config.write_text(text)
    result = run_cli("--config", str(config), "fetch")
    assert result.returncode == 2
    assert needle in result.stderr
    assert_one_clean_line(result.stderr)


def test_a_missing_config_file_is_said_with_what_to_create_and_that_file_serves(tmp_path: Path) -> None:
    """The hint does not send a pip user to the repository's config.toml, which they do not have."""
    (tmp_path / "exports").mkdir()
    export = write_folder(tmp_path / "exports" / "export", csv_text(ENGLISH_94, [english_row(1, "activities/1.gpx")]),
                          [ExportFile("activities/1.gpx", fixture("hike.gpx"))])
    missing = run_cli("import", str(export), cwd=tmp_path)
    assert missing.returncode == 2 and "repository" not in missing.stderr
    assert "create it: an empty file serves 'import'" in missing.stderr
    assert "client_id and client_secret" in missing.stderr
    assert_one_clean_line(missing.stderr)
    (tmp_path / "config.toml").touch()
    created = run_cli("import", str(export), "--athlete", "5", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert (tmp_path / "data" / "athletes" / "5" / "export").is_dir()
    fetch = run_cli("fetch", cwd=tmp_path)
    assert fetch.returncode == 2 and "client_id and [strava] client_secret not set" in fetch.stderr


def test_config_from_environment_variable_and_secret_from_environment_is_not_echoed(tmp_path: Path) -> None:
    config = tmp_path / "elsewhere.toml"
    config.write_text('[storage]\ndata_dir = "d"\n')
    result = run_cli("fetch", cwd=tmp_path, BULKFETCH_CONFIG=str(config), STRAVA_CLIENT_SECRET="s3cr3t-value")
    assert result.returncode == 2
    assert "client_id not set" in result.stderr
    assert "s3cr3t-value" not in result.stderr + result.stdout


def test_missing_token_is_a_credential_error(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[strava]\nclient_id = "1"\nclient_secret = "x"\n[storage]\ndata_dir = "d"\n')
    result = run_cli("--config", str(config), "fetch")
    assert result.returncode == 2
    assert "run 'bulkfetch auth'" in result.stderr
    assert_one_clean_line(result.stderr)


def test_file_where_data_dir_should_be_exits_2(tmp_path: Path) -> None:
    (tmp_path / "d").write_text("a file")
    config = tmp_path / "config.toml"
    config.write_text('[strava]\nclient_id = "1"\nclient_secret = "x"\nrefresh_token = "r"\n'
                      '[storage]\ndata_dir = "d"\n')
    result = run_cli("--config", str(config), "fetch")
    assert result.returncode == 2
    assert "is a file, not a folder" in result.stderr
    assert_one_clean_line(result.stderr)


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (("--since", "2025-01-01", "--until", "2024-01-01"), "must be before --until"),
        (("--sport", "Jogging"), "unknown --sport value 'Jogging'"),
    ],
)
@pytest.mark.parametrize("command", ["fetch", "plan"])
def test_bad_filters_exit_2_with_one_line_before_anything_else(tmp_path: Path, command: str, flags: tuple[str, ...],
                                                               needle: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[storage]\ndata_dir = "d"\n')  # no credentials: the filters are judged first
    result = run_cli("--config", str(config), command, *flags)
    assert result.returncode == 2
    assert needle in result.stderr
    assert_one_clean_line(result.stderr)


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "soon"])
def test_max_wait_must_be_a_finite_number_of_seconds(tmp_path: Path, value: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[storage]\ndata_dir = "d"\n')
    result = run_cli("--config", str(config), "fetch", f"--max-wait={value}")
    assert result.returncode == 2
    assert "--max-wait" in result.stderr and ">= 0" in result.stderr
    assert_one_clean_line(result.stderr)


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (("--short-window", "0"), "--short-window"),
        (("--daily-window", "-5"), "--daily-window"),
        (("--short-window", "nan"), "--short-window"),
        (("--short-limit", "0"), "--short-limit"),
        (("--daily-limit", "-1"), "--daily-limit"),
        (("--overall-short-limit", "0"), "--overall-short-limit"),
        (("--overall-daily-limit", "1.5"), "--overall-daily-limit"),
        (("--latency", "-0.1"), "--latency"),
        (("--activities", "-3"), "--activities"),
        (("--port", "70000"), "--port"),
        (("--short-window", "600", "--daily-window", "60"), "--daily-window"),
    ],
)
def test_simulate_rejects_bad_knobs_with_one_line(flags: tuple[str, ...], needle: str) -> None:
    result = run_cli("simulate", *flags, timeout=20)
    assert result.returncode == 2, result.stdout
    assert needle in result.stderr
    assert_one_clean_line(result.stderr)


def test_simulate_on_a_port_in_use_is_one_line() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("simulate", "--port", str(port), "--activities", "3", timeout=20)
    assert result.returncode == 2
    assert f"127.0.0.1:{port}" in result.stderr and "in use" in result.stderr and "--port" in result.stderr
    assert_one_clean_line(result.stderr)


def test_status_of_an_empty_data_dir(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[storage]\ndata_dir = "d"\n')
    result = run_cli("--config", str(config), "status")
    assert result.returncode == 0, result.stderr
    assert re.search(r"listed\s+0", result.stdout)


def test_every_command_and_option_the_readme_shows_exists() -> None:
    text = (REPO / "README.md").read_text()
    fenced = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
    inline = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    readme = "\n".join(fenced + inline)
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices  # noqa: SLF001
    global_options = {s for a in parser._actions for s in a.option_strings}  # noqa: SLF001
    shown = re.findall(r"\bbulkfetch((?: --?[a-z-]+(?: [^\s`-][^\s`]*)?)*) ([a-z]+)((?: --?[a-z-]+(?: [^\s`-]\S*)?)*)",
                       readme)
    assert shown, "the README shows no bulkfetch command"
    for before, command, options in shown:
        assert command in subparsers, f"README shows unknown command {command!r}"
        sub_options = {s for a in subparsers[command]._actions for s in a.option_strings}  # noqa: SLF001
        for option in re.findall(r"(?<!\S)--?[a-z-]+", before):
            assert option in global_options, f"README shows unknown global option {option}"
        for option in re.findall(r"(?<!\S)--?[a-z-]+", options):
            assert option in sub_options, f"README shows unknown option {option} of {command}"
    ours = "\n".join(line for line in readme.splitlines() if not re.search(r"bench/|pytest|pip |venv", line))
    known = global_options | {s for p in _parsers_below(parser) for a in p._actions for s in a.option_strings}  # noqa: SLF001
    for option in set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", ours)):
        assert option in known, f"README mentions unknown option {option}"


def _parsers_below(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every command's parser, and its actions' (`athletes remove`)."""
    found = []
    for action in parser._actions:  # noqa: SLF001
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for child in action.choices.values():
                found += [child, *_parsers_below(child)]
    return found


def test_simulate_listens_on_the_port_asked_for() -> None:
    import socket
    import subprocess
    import sys

    from tests.conftest import cli_env

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "bulkfetch", "simulate", "--port", str(port), "--activities", "3"]
    process = subprocess.Popen(command, env=cli_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert f"listening on http://127.0.0.1:{port} " in process.stdout.readline()
    finally:
        process.terminate()
        process.wait(10)
