"""Configuration: frozen dataclasses and a pure parser.

Precedence, lowest first: defaults < config file < environment < command-line flags. The refresh token
is special (see `bulkfetch.auth`): the newest token stored under `data_dir` wins over any of these.
Relative paths are resolved against the config file's folder, so a config works from any cwd.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from bulkfetch.errors import ConfigError

DEFAULT_CONFIG_NAME = "config.toml"
CONFIG_ENV = "BULKFETCH_CONFIG"
STREAM_TYPES = (
    "time", "distance", "latlng", "altitude", "heartrate", "cadence", "watts",
    "velocity_smooth", "grade_smooth", "moving", "temp",
)
SECRET_KEYS = frozenset({"client_secret", "refresh_token"})
# Object stores pyarrow.fs reaches by URI; their credentials come only from each store's standard places.
REMOTE_SCHEMES = ("s3", "gs", "hdfs")
PARQUET_OPTION_KEYS = ("endpoint_override", "region", "scheme")
# pyarrow.fs options that carry credentials: refused by name, so a secret never sits in the config file.
CREDENTIAL_OPTION_KEYS = frozenset({
    "access_key", "secret_key", "session_token", "role_arn", "session_name", "external_id",
    "access_token", "credential_token_expiration", "kerb_ticket", "user", "password", "token",
})
# Where compaction writes partitions before publishing them to a remote parquet_dir (under data_dir; not
# under state/, which a one-athlete data_dir's move to the per-athlete layout carries away).
REMOTE_STAGING = Path("parquet-staging")
# Fields the parser fills in, never read from the file (parquet_uri comes from parquet_dir).
DERIVED_KEYS = frozenset({"parquet_uri"})
_URI_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class StravaConfig:
    api_url: str = "https://www.strava.com/api/v3"
    oauth_url: str = "https://www.strava.com/oauth"
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    refresh_token: str = field(default="", repr=False)

    @property
    def token_url(self) -> str:
        return self.oauth_url.rstrip("/") + "/token"


@dataclass(frozen=True)
class LimitsConfig:
    """Strava's read limits; the server's headers override them once seen."""

    short_requests: int = 100
    daily_requests: int = 1000
    # Strava's are 15 minutes and a day; a simulator's may be fractional seconds.
    short_window_s: float = 900.0
    daily_window_s: float = 86400.0


@dataclass(frozen=True)
class FetchConfig:
    concurrency: int = 8
    per_page: int = 200
    # Smooths bursts at a window's start; the window ledger, not this rate, decides what may be sent.
    max_rate_per_s: float = 20.0
    max_attempts: int = 5
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 60.0
    request_timeout_s: float = 60.0
    # Refresh the access token this long before Strava says it expires.
    refresh_margin_s: int = 300
    streams: tuple[str, ...] = ()
    # Routine runs list only the newest activities; the whole history (which shows edits and deletions
    # of older ones) is listed again when the last full listing is this many days old.
    full_relist_days: int = 7


@dataclass(frozen=True)
class StorageConfig:
    """Where data lives. With a remote `parquet_uri` (s3://, gs://, hdfs://) compaction still writes each
    partition to the local `parquet_dir` (the staging folder `<data_dir>/parquet-staging/`) and publishes the
    changed files there; `parquet_options` are pyarrow.fs options for that store."""

    data_dir: Path = Path("data")
    parquet_dir: Path = Path("data/parquet")
    parquet_uri: str | None = None
    parquet_options: tuple[tuple[str, str], ...] = ()

    @property
    def parquet_target(self) -> str:
        """Where readers find the Parquet: the remote URI, else the local folder."""
        return self.parquet_uri or str(self.parquet_dir)


@dataclass(frozen=True)
class Config:
    strava: StravaConfig = StravaConfig()
    limits: LimitsConfig = LimitsConfig()
    fetch: FetchConfig = FetchConfig()
    storage: StorageConfig = StorageConfig()
    source: Path | None = None

    def require_credentials(self) -> None:
        """Raise a ConfigError naming every missing credential a command that talks to Strava needs."""
        missing = [name for name in ("client_id", "client_secret") if not getattr(self.strava, name)]
        if missing:
            names = " and ".join(f"[strava] {name}" for name in missing)
            env = " / ".join(f"STRAVA_{name.upper()}" for name in missing)
            raise ConfigError(
                f"{self.source_name}: {names} not set",
                hint=f"set it in the config file or the environment ({env})",
            )

    @property
    def source_name(self) -> str:
        return str(self.source) if self.source else "config"


SECTIONS: dict[str, type] = {
    "strava": StravaConfig,
    "limits": LimitsConfig,
    "fetch": FetchConfig,
    "storage": StorageConfig,
}
ENV_KEYS = {
    "STRAVA_CLIENT_ID": ("strava", "client_id"),
    "STRAVA_CLIENT_SECRET": ("strava", "client_secret"),
    "STRAVA_REFRESH_TOKEN": ("strava", "refresh_token"),
}
# Lower bounds for numbers; every number must also be finite and of the right kind.
MINIMUMS: dict[str, float] = {
    "short_requests": 1, "daily_requests": 1, "short_window_s": 0.001, "daily_window_s": 0.001,
    "concurrency": 1, "per_page": 1, "max_rate_per_s": 0.001, "max_attempts": 1,
    "backoff_base_s": 0, "backoff_cap_s": 0, "request_timeout_s": 0.001, "refresh_margin_s": 0,
    "full_relist_days": 0,
}
MAXIMUMS: dict[str, float] = {"per_page": 200, "concurrency": 256}


def resolve_config_path(flag: str | None, environ: Mapping[str, str]) -> Path:
    """`--config`, else $BULKFETCH_CONFIG, else ./config.toml."""
    if flag:
        return Path(flag)
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    return Path(DEFAULT_CONFIG_NAME)


def load_config(
    path: Path,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Read `path`, then apply the environment and the flags' `overrides` ({section: {key: value}})."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found",
            # A pip user has no copy of the repository's commented config.toml: say what the file needs.
            hint="pass --config PATH, or create it: an empty file serves 'import' (data_dir is data/ beside it); "
                 "'fetch' needs [strava] client_id and client_secret (every key: the README's Configuration)",
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a config file", hint="pass --config PATH") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text", hint="save the config file as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}", hint="fix the line it names") from None
    return parse_config(document, source=path, environ=environ or {}, overrides=overrides or {})


def parse_config(
    document: Mapping[str, Any],
    *,
    source: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Pure: a parsed TOML document (+ environment + flags) to a validated Config."""
    where = str(source) if source else "config"
    merged: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for section_name, section in document.items():
        if section_name not in SECTIONS:
            raise ConfigError(f"{where}: unknown section [{_shown_name(section_name)}]"
                              f"{_suggest(section_name, SECTIONS)}")
        if not isinstance(section, Mapping):
            raise ConfigError(f"{where}: [{section_name}] must be a table, not a single value")
        known = {f.name for f in fields(SECTIONS[section_name])} - DERIVED_KEYS
        for key, value in section.items():
            if key not in known:
                raise ConfigError(
                    f"{where}: unknown key [{section_name}] {_shown_name(key)}{_suggest(key, known)}",
                    hint="typos are not ignored; see the commented config.toml",
                )
            merged[section_name][key] = _check_value(where, section_name, key, value)
    for env_name, (section_name, key) in ENV_KEYS.items():
        if (environ or {}).get(env_name):
            merged[section_name][key] = (environ or {})[env_name]
    for section_name, values in (overrides or {}).items():
        for key, value in values.items():
            if value is not None:
                merged[section_name][key] = _check_value("command line", section_name, key, value)

    base_dir = source.resolve().parent if source else Path.cwd()
    storage = merged["storage"]
    data_dir = _resolve(base_dir, storage.get("data_dir", StorageConfig.data_dir))
    parquet_uri = storage.get("parquet_dir") if isinstance(storage.get("parquet_dir"), str) else None
    if parquet_uri is not None:
        parquet_dir = data_dir / REMOTE_STAGING
    else:
        parquet_dir = (
            _resolve(base_dir, storage["parquet_dir"]) if "parquet_dir" in storage else data_dir / "parquet"
        )
    parquet_options = storage.get("parquet_options", ())
    if parquet_options and parquet_uri is None:
        raise ConfigError(f"{where}: [storage] parquet_options apply to a remote parquet_dir only "
                          f"({', '.join(s + '://' for s in REMOTE_SCHEMES)})", hint="remove them")
    if parquet_options and parquet_uri is not None and parquet_uri.startswith("hdfs://"):
        raise ConfigError(f"{where}: [storage] parquet_options do not apply to hdfs://",
                          hint="name the namenode's host and port in the URI (hdfs://HOST:PORT/PATH)")
    config = Config(
        strava=StravaConfig(**merged["strava"]),
        limits=LimitsConfig(**merged["limits"]),
        fetch=FetchConfig(**merged["fetch"]),
        storage=StorageConfig(data_dir=data_dir, parquet_dir=parquet_dir, parquet_uri=parquet_uri,
                              parquet_options=parquet_options),
        source=source,
    )
    if config.limits.daily_window_s < config.limits.short_window_s:
        raise ConfigError(f"{where}: [limits] daily_window_s must be at least short_window_s")
    return config


def with_overrides(config: Config, **sections: Mapping[str, Any]) -> Config:
    """A copy of `config` with some keys replaced (already validated values, e.g. from the demo)."""
    changes = {name: replace(getattr(config, name), **values) for name, values in sections.items()}
    return replace(config, **changes)


def _check_value(where: str, section: str, key: str, value: Any) -> Any:
    """Validate one value against the field's type; the message never echoes a secret."""
    default = next(f for f in fields(SECTIONS[section]) if f.name == key).default
    label = f"{where}: [{section}] {key}"
    shown = "a value" if key in SECRET_KEYS else repr(value)
    if key == "client_id" and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if key == "streams":
        return _check_streams(label, value)
    if key == "parquet_options":
        return _check_parquet_options(label, value)
    if key == "parquet_dir" and isinstance(value, str) and _URI_SCHEME.match(value):
        return _check_parquet_uri(label, value)
    if isinstance(default, bool) or isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{label} must be a string (got {_kind(value)})")
        if key.endswith("_url") and not value.startswith(("http://", "https://")):
            raise ConfigError(f"{label} must start with http:// or https:// (got {shown})")
        return value
    if isinstance(default, Path):
        if not isinstance(value, (str, Path)) or not str(value):
            raise ConfigError(f"{label} must be a non-empty path string (got {_kind(value)})")
        if "\x00" in str(value):  # no file system takes it; os calls would raise ValueError later
            raise ConfigError(f"{label} must not contain a NUL character (\\u0000)")
        return Path(value)
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{label} must be an integer (got {shown})")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise ConfigError(f"{label} must be a number (got {shown})")
        value = float(value)
    low, high = MINIMUMS.get(key), MAXIMUMS.get(key)
    if low is not None and value < low:
        raise ConfigError(f"{label} must be at least {low:g} (got {shown})")
    if high is not None and value > high:
        raise ConfigError(f"{label} must be at most {high:g} (got {shown})")
    if value in (float("inf"), float("-inf")):
        raise ConfigError(f"{label} must be finite")
    return value


def _check_streams(label: str, value: Any) -> tuple[str, ...]:
    items = [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(item, str) for item in items):
        raise ConfigError(f"{label} must be a list of stream types (got {_kind(value)})")
    if list(items) == ["all"]:
        return STREAM_TYPES
    unknown = [item for item in items if item not in STREAM_TYPES]
    if unknown:
        raise ConfigError(f"{label}: unknown stream type {unknown[0]!r}; known: {', '.join(STREAM_TYPES)}, or all")
    return tuple(dict.fromkeys(items))


def _check_parquet_uri(label: str, uri: str) -> str:
    """A remote parquet_dir as `scheme://bucket/prefix` (kept as text: a Path would turn `s3://b` into
    `s3:/b`). Credentials and options inside the URI are refused without echoing it: it may hold a secret."""
    scheme = _URI_SCHEME.match(uri).group(1).lower()  # type: ignore[union-attr]  # the caller matched it
    if scheme not in REMOTE_SCHEMES:
        raise ConfigError(f"{label}: {scheme}:// is not supported",
                          hint=f"use a local path or {', '.join(s + '://' for s in REMOTE_SCHEMES)}")
    rest = uri[len(scheme) + 3:]
    authority = rest.split("/", 1)[0]
    if "@" in authority:
        raise ConfigError(f"{label} must not contain credentials",
                          hint="remove them from the URI; they come from the store's standard places "
                               "(environment, profile files, instance metadata)")
    if "?" in rest or "#" in rest:
        raise ConfigError(f"{label} must not contain options (?...)",
                          hint="put endpoint_override, region or scheme in [storage] parquet_options")
    if not authority:
        raise ConfigError(f"{label} names no bucket (got {scheme}://)", hint=f"write {scheme}://BUCKET/PREFIX")
    # Object keys are names, not paths: `..` or `//` would be kept as is by some calls and resolved by
    # others (an upload then lands beside the dataset and its copy fails).
    if any(part in ("", ".", "..") for part in rest.rstrip("/").split("/")[1:]):
        raise ConfigError(f"{label}: the prefix has an empty, '.' or '..' part",
                          hint=f"write {scheme}://BUCKET/PREFIX with plain names between the slashes")
    return f"{scheme}://{rest.rstrip('/')}"


def _check_parquet_options(label: str, value: Any) -> tuple[tuple[str, str], ...]:
    """[storage] parquet_options: a table of exactly PARQUET_OPTION_KEYS, each a string; credential keys
    are refused (they come from the store's standard places), their values never shown."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{label} must be a table (got {_kind(value)})")
    options = []
    for key, option in value.items():
        if key in CREDENTIAL_OPTION_KEYS:
            raise ConfigError(f"{label}: {key} is a credential and is not read from the config",
                              hint="remove it; set the store's standard environment variables or profile instead")
        if key not in PARQUET_OPTION_KEYS:
            raise ConfigError(f"{label}: unknown key {_shown_name(key)}{_suggest(key, PARQUET_OPTION_KEYS)}",
                              hint=f"known: {', '.join(PARQUET_OPTION_KEYS)}")
        if not isinstance(option, str) or not option:
            raise ConfigError(f"{label}: {key} must be a non-empty string (got {_kind(option)})")
        if key == "scheme" and option not in ("http", "https"):
            raise ConfigError(f"{label}: scheme must be http or https (got {option!r})")
        options.append((key, option))
    return tuple(sorted(options))


def _resolve(base_dir: Path, value: Path | str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base_dir / path


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)


def _shown_name(name: str) -> str:
    """A name from the file as it can be shown on one line: control characters (a newline, a terminal
    escape) are shown escaped, so the error stays one line and cannot restyle the terminal."""
    return name if name.isprintable() else repr(name)


def _suggest(name: str, known: Any) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def environment() -> Mapping[str, str]:
    """The process environment (a seam so tests can pass their own mapping)."""
    return os.environ
