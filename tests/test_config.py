"""Config parsing: precedence, paths, and every bad-input case gets one clear line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkfetch.config import STREAM_TYPES, load_config, parse_config, resolve_config_path
from bulkfetch.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def test_repo_example_config_loads_with_documented_defaults() -> None:
    config = load_config(REPO / "config.toml")
    assert config.strava.api_url == "https://www.strava.com/api/v3"
    assert config.strava.token_url == "https://www.strava.com/oauth/token"
    assert (config.limits.short_requests, config.limits.daily_requests) == (100, 1000)
    assert (config.limits.short_window_s, config.limits.daily_window_s) == (900, 86400)
    assert config.fetch.concurrency == 8 and config.fetch.per_page == 200
    assert config.storage.data_dir == REPO / "data"
    assert config.storage.parquet_dir == REPO / "data" / "parquet"


def test_every_key_of_the_example_is_commented() -> None:
    lines = (REPO / "config.toml").read_text().splitlines()
    for number, line in enumerate(lines):
        if "=" in line and not line.lstrip().startswith("#"):
            key = line.split("=")[0].strip()
            commented_above = number > 0 and lines[number - 1].lstrip().startswith("#")
            assert "#" in line or commented_above, f"config.toml key {key} has no comment"


def test_relative_paths_resolve_against_the_config_folder(write_config) -> None:
    path = write_config('[storage]\ndata_dir = "store"\n')
    config = load_config(path)
    assert config.storage.data_dir == path.parent / "store"
    assert config.storage.parquet_dir == path.parent / "store" / "parquet"


def test_precedence_defaults_file_env_flags(write_config) -> None:
    path = write_config('[strava]\nclient_id = "from-file"\nclient_secret = "s"\n[fetch]\nconcurrency = 3\n')
    env = {"STRAVA_CLIENT_ID": "from-env"}
    config = load_config(path, environ=env, overrides={"fetch": {"concurrency": 5}})
    assert config.strava.client_id == "from-env"
    assert config.strava.client_secret == "s"
    assert config.fetch.concurrency == 5
    assert load_config(path).fetch.concurrency == 3


def test_integer_client_id_is_accepted_as_text() -> None:
    assert parse_config({"strava": {"client_id": 12345}}).strava.client_id == "12345"


def test_config_path_flag_then_env_then_default() -> None:
    assert resolve_config_path("a.toml", {"BULKFETCH_CONFIG": "b.toml"}) == Path("a.toml")
    assert resolve_config_path(None, {"BULKFETCH_CONFIG": "b.toml"}) == Path("b.toml")
    assert resolve_config_path(None, {}) == Path("config.toml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[limits]\nshort_requets = 5\n', "unknown key [limits] short_requets (did you mean short_requests?)"),
        ('[limit]\nshort_requests = 5\n', "unknown section [limit] (did you mean limits?)"),
        ('[limits]\nshort_requests = "abc"\n', "[limits] short_requests must be an integer (got 'abc')"),
        ('[limits]\nshort_requests = 0\n', "[limits] short_requests must be at least 1"),
        ('[fetch]\nper_page = 500\n', "[fetch] per_page must be at most 200"),
        ('[fetch]\nconcurrency = true\n', "[fetch] concurrency must be an integer"),
        ('[strava]\napi_url = "ftp://x"\n', "[strava] api_url must start with http:// or https://"),
        ('[fetch]\nstreams = ["time", "pulse"]\n', "unknown stream type 'pulse'"),
        ('[limits]\nshort_window_s = 900\ndaily_window_s = 60\n', "daily_window_s must be at least short_window_s"),
        ('limits = 3\n', "unknown section [limits]"),
        ('[strava]\nclient_id = 1\n[strava]\n', "invalid TOML"),
        ('[strava\n', "invalid TOML"),
    ],
)
def test_bad_input_is_one_clear_line(write_config, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write_config(text))
    message = str(info.value)
    assert expected in message or (expected == "unknown section [limits]" and "must be a table" in message)
    assert "\n" not in message


def test_invalid_toml_names_the_line(write_config) -> None:
    with pytest.raises(ConfigError, match=r"line 3"):
        load_config(write_config('[strava]\nclient_id = "a"\nclient_secret = = "b"\n'))


def test_wrong_type_of_a_secret_does_not_echo_it(write_config) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write_config('[strava]\nclient_secret = 123456789\n'))
    assert "123456789" not in str(info.value)
    assert "client_secret must be a string" in str(info.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_missing_credentials_named() -> None:
    config = parse_config({"strava": {"client_id": "1"}})
    with pytest.raises(ConfigError, match=r"\[strava\] client_secret not set"):
        config.require_credentials()


def test_streams_all_and_csv() -> None:
    assert parse_config({"fetch": {"streams": ["all"]}}).fetch.streams == STREAM_TYPES
    assert parse_config({}, overrides={"fetch": {"streams": "time,heartrate"}}).fetch.streams == ("time", "heartrate")


# -- [storage] a remote parquet_dir ---------------------------------------------------------------------
def test_remote_parquet_dir_keeps_its_uri_and_stages_locally(write_config) -> None:
    path = write_config('[storage]\ndata_dir = "store"\nparquet_dir = "s3://bucket/tables/"\n'
                        '[storage.parquet_options]\nendpoint_override = "127.0.0.1:9000"\nscheme = "http"\n')
    storage = load_config(path).storage
    assert storage.parquet_uri == "s3://bucket/tables"  # not the path "s3:/bucket/tables"
    assert storage.parquet_target == "s3://bucket/tables"
    assert storage.parquet_dir == path.parent / "store" / "parquet-staging"
    assert dict(storage.parquet_options) == {"endpoint_override": "127.0.0.1:9000", "scheme": "http"}
    for uri in ("gs://bucket", "hdfs://namenode:8020/data"):
        assert parse_config({"storage": {"parquet_dir": uri}}).storage.parquet_uri == uri
    assert parse_config({}).storage.parquet_uri is None


@pytest.mark.parametrize(("storage", "message"), [
    ({"parquet_dir": "s3://AKIDSECRET:wJalrSECRET@bucket/p"}, "[storage] parquet_dir must not contain credentials"),
    ({"parquet_dir": "s3://bucket/p?secret_key=wJalrSECRET"}, "[storage] parquet_dir must not contain options"),
    ({"parquet_dir": "ftp://bucket"}, "[storage] parquet_dir: ftp:// is not supported"),
    ({"parquet_dir": "s3://"}, "[storage] parquet_dir names no bucket"),
    ({"parquet_dir": "s3://b/strava/../x"}, "[storage] parquet_dir: the prefix has an empty, '.' or '..' part"),
    ({"parquet_dir": "s3://b//strava"}, "[storage] parquet_dir: the prefix has an empty, '.' or '..' part"),
    ({"parquet_dir": "s3://b", "parquet_options": {"secret_key": "wJalrSECRET"}},
     "[storage] parquet_options: secret_key is a credential"),
    ({"parquet_dir": "s3://b", "parquet_options": {"access_key": "AKIDSECRET"}},
     "[storage] parquet_options: access_key is a credential"),
    ({"parquet_dir": "s3://b", "parquet_options": {"regon": "eu-west-1"}},
     "[storage] parquet_options: unknown key regon (did you mean region?)"),
    ({"parquet_dir": "s3://b", "parquet_options": {"scheme": "ftp"}}, "scheme must be http or https"),
    ({"parquet_dir": "s3://b", "parquet_options": "region=x"}, "[storage] parquet_options must be a table"),
    ({"parquet_options": {"region": "eu-west-1"}}, "parquet_options apply to a remote parquet_dir only"),
    ({"parquet_dir": "hdfs://nn:8020/x", "parquet_options": {"region": "x"}}, "do not apply to hdfs://"),
    ({"parquet_uri": "s3://b"}, "unknown key [storage] parquet_uri"),
])
def test_bad_remote_storage_is_one_line_without_the_secret(storage: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"storage": storage})
    text = str(caught.value)
    assert message in text and "\n" not in text
    assert "SECRET" not in text


def test_credentials_in_the_uri_exit_2_on_one_line(write_config) -> None:
    from tests.conftest import run_cli

    path = write_config('[storage]\nparquet_dir = "s3://AKIDSECRET:wJalrSECRET@bucket/p"\n')
    result = run_cli("--config", str(path), "status")
    assert result.returncode == 2
    assert "must not contain credentials" in result.stderr and "SECRET" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
