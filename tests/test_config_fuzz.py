"""Config fuzzing: generated TOML documents through the real loader and, for a sample, the real CLI.

Every document either loads or fails with a ConfigError (exit 2) whose one line names the section and key
that is wrong, never a traceback and never a secret.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulkfetch.cli import main
from bulkfetch.config import SECTIONS, Config, load_config
from bulkfetch.errors import ConfigError
from tests.conftest import run_cli

SECRET = "fuzz-secret-Ω-do-not-print"
KNOWN = {section: [f.name for f in fields(cls)] for section, cls in SECTIONS.items()}

# -- a tiny TOML writer (the standard library only reads TOML) --------------------------------------


def toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes, but no surrogate pairs (TOML wants raw non-BMP characters)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_string(key)


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def to_toml(document: dict) -> str:
    lines = []
    for name, body in document.items():
        if isinstance(body, dict):
            lines.append(f"[{toml_key(name)}]")
            lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in body.items()]
        else:
            lines.insert(0, f"{toml_key(name)} = {toml_value(body)}")  # top-level values before any table
    return "\n".join(lines) + "\n"


# -- strategies ---------------------------------------------------------------------------------------

odd_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12,
) | st.sampled_from(["", " ", "ﬁ", "données", "𝔡𝔞𝔱𝔞", "e\u0301", "‮evil", "~", "..", "/dev/null/x", "a\tb"])
scalars = st.one_of(
    st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1), st.integers(-5, 300),
    st.floats(allow_nan=True, allow_infinity=True), odd_text,
    st.sampled_from(["http://127.0.0.1:9/api", "https://x", "ftp://x", "time,heartrate", "all", "bogus"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(odd_text, inner, max_size=2), max_leaves=4)


@st.composite
def sections(draw, name: str):
    known = KNOWN.get(name, [])
    keys = draw(st.lists(st.sampled_from(known) if known else odd_text, max_size=len(known) or 2, unique=True))
    body = {key: draw(values) for key in keys}
    if draw(st.integers(0, 9)) == 0:  # a typo or an unknown key now and then
        body[draw(odd_text | st.sampled_from(["short_request", "data-dir", "clientid"]))] = draw(values)
    return body


@st.composite
def documents(draw):
    names = draw(st.lists(st.sampled_from([*SECTIONS, "strava", "limits", "extra", "Strava", "ﬁetch"]),
                          max_size=5, unique=True))
    document = {name: draw(sections(name)) for name in names}
    if draw(st.integers(0, 12)) == 0:
        document[draw(st.sampled_from([*SECTIONS, "top"]))] = draw(scalars)  # a section that is not a table
    return document


def names_the_problem(message: str, document: dict) -> bool:
    """The one line names a section or key of the document (or says which file could not be parsed)."""
    if "\n" in message:
        return False
    def shown(name: str) -> str:
        return name if name.isprintable() else repr(name)

    mentioned = {f"[{shown(name)}]" for name in document} | {
        f"[{name}] {shown(key)}" for name, body in document.items() if isinstance(body, dict) for key in body}
    return any(m in message for m in mentioned)


def check_loaded(config: Config) -> None:
    """A loaded config holds values of the declared types within their bounds."""
    assert 1 <= config.fetch.per_page <= 200 and 1 <= config.fetch.concurrency <= 256
    for value in (config.fetch.max_rate_per_s, config.fetch.backoff_base_s, config.fetch.request_timeout_s,
                  config.limits.short_window_s, config.limits.daily_window_s):
        assert isinstance(value, float) and math.isfinite(value)
    assert config.limits.short_window_s > 0
    for value in (config.limits.short_requests, config.limits.daily_requests, config.fetch.max_attempts):
        assert isinstance(value, int) and not isinstance(value, bool) and value >= 1
    assert config.limits.daily_window_s >= config.limits.short_window_s
    assert isinstance(config.strava.client_id, str) and config.strava.api_url.startswith(("http://", "https://"))
    assert config.storage.data_dir.is_absolute() and config.storage.parquet_dir.is_absolute()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(document=documents())
def test_every_generated_config_loads_or_names_the_key(tmp_path: Path, document: dict) -> None:
    path = tmp_path / "config.toml"
    path.write_text(to_toml(document), encoding="utf-8")
    try:
        config = load_config(path, environ={"STRAVA_CLIENT_SECRET": SECRET})
    except ConfigError as error:
        assert error.exit_code == 2
        assert names_the_problem(str(error), document), str(error)
        assert SECRET not in str(error)
        return
    check_loaded(config)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=documents())
def test_generated_configs_through_the_cli_exit_0_or_2_with_one_line(tmp_path: Path, document: dict,
                                                                     capsys: pytest.CaptureFixture) -> None:
    """`status` reads the config and the data_dir and sends nothing: it must never raise past main()."""
    document.setdefault("storage", {})
    if isinstance(document["storage"], dict):
        document["storage"].setdefault("data_dir", str(tmp_path / "data"))
    path = tmp_path / "config.toml"
    path.write_text(to_toml(document), encoding="utf-8")
    capsys.readouterr()
    code = main(["--config", str(path), "status"])
    err = capsys.readouterr().err
    assert code in (0, 2), err
    if code == 2:
        assert err.startswith("bulkfetch: ") and err.count("\n") == 1, err


@pytest.mark.parametrize("text, key", [
    ('[storage]\ndata_dir = "x\\u0000y"\n', "[storage] data_dir"),
    ('[storage]\nparquet_dir = "/proc/\\u0000"\n', "[storage] parquet_dir"),
    ('[fetch]\nconcurrency = 99999999999999999\n', "[fetch] concurrency"),
    ('[limits]\nshort_window_s = 9223372036854775807\n', "[limits] daily_window_s"),
    ('[fetch]\nstreams = {time = 1}\n', "[fetch] streams"),
    ('[fetch]\nmax_rate_per_s = -inf\n', "[fetch] max_rate_per_s"),
    ('[fetch]\nbackoff_cap_s = nan\n', "[fetch] backoff_cap_s"),
    ('strava = "x"\n', "[strava]"),
    ('[strava]\nclient_secret = 5\n', "[strava] client_secret"),
    ('[strava]\nrefresh_token = ["fuzz-secret-Ω-do-not-print"]\n', "[strava] refresh_token"),
    ('[strava]\napi_url = "file:///etc/passwd"\n', "[strava] api_url"),
    ('["ﬁetch"]\nper_page = 1\n', "[ﬁetch]"),
    ('[fetch]\n"a\\nb\\u001b[31m" = 1\n', "[fetch] 'a\\nb\\x1b[31m'"),
    ('["x\\ny"]\na = 1\n', "['x\\ny']"),
])
def test_odd_values_exit_2_with_one_line_naming_the_key(tmp_path: Path, text: str, key: str,
                                                       capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    assert main(["--config", str(path), "status"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bulkfetch: ") and err.count("\n") == 1, err
    assert key in err and SECRET not in err


def test_a_real_process_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    """The same through `python -m bulkfetch` (stderr encoding, exit status of the real process)."""
    path = tmp_path / "config.toml"
    path.write_text('[storage]\ndata_dir = "x\\u0000y"\n[fetch]\n"a\\nb" = 1\n', encoding="utf-8")
    result = run_cli("--config", str(path), "fetch", cwd=tmp_path, timeout=60)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("bulkfetch: ") and result.stderr.count("\n") == 1, result.stderr
    assert "[storage] data_dir" in result.stderr and "Traceback" not in result.stderr
