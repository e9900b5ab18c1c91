"""The exception tree. Library code raises these; only `bulkfetch.cli` prints them and exits.

Every error carries the process exit code the CLI contract assigns to it and a one-line message that
names the problem and, where there is one, the fix.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_WORK_LEFT = 75
EXIT_INTERRUPTED = 130


class BulkfetchError(Exception):
    """Base class: `str(error)` is the one line shown to the user."""

    exit_code: int = EXIT_FAILURE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message}; {hint}" if hint else message)


class ConfigError(BulkfetchError):
    """The config file, the environment or a flag is wrong (exit 2)."""

    exit_code = EXIT_USAGE


class CredentialError(BulkfetchError):
    """Credentials are missing, rejected, lack a scope, or belong to another athlete (exit 2)."""

    exit_code = EXIT_USAGE


class AthleteRevoked(CredentialError):
    """One athlete's tokens are rejected (access revoked): that athlete stops, the others go on."""


class ScopeMissing(CredentialError):
    """One athlete's token lacks a permission the run needs: re-authorizing with it ticked fixes it."""


class AppInactive(CredentialError):
    """The API application itself cannot read (403 Application Inactive): every athlete stops."""


class AthletesBlocked(CredentialError):
    """The run did what it could, but some athletes could not be served (revoked, missing scope).
    `summary` is the run's (a `bulkfetch.pipeline.FetchSummary`): the caller still reports it."""

    def __init__(self, message: str, *, hint: str | None = None, summary: object = None) -> None:
        super().__init__(message, hint=hint)
        self.summary = summary


class LockedError(BulkfetchError):
    """Another bulkfetch process holds a lock this one needs (exit 2). `holder`: what that process is
    ("fetch", "plan", "import", ...), when its lock file says."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, hint: str | None = None, holder: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.holder = holder


class StorageError(BulkfetchError):
    """A folder cannot be used as configured: not writable, or a file stands where a folder should (exit 2)."""

    exit_code = EXIT_USAGE


class ExportError(BulkfetchError):
    """An account export that cannot be imported as given: missing, not an export, unsafe, or another
    athlete's (exit 2); nothing was written."""

    exit_code = EXIT_USAGE


class WriteError(BulkfetchError):
    """A write failed mid-run (disk full, I/O error); nothing partial was left (exit 1)."""

    exit_code = EXIT_FAILURE


class ApiError(BulkfetchError):
    """Strava answered something the run cannot continue from (exit 1)."""

    exit_code = EXIT_FAILURE


class WorkLeft(BulkfetchError):
    """The run stopped cleanly with work that a later rerun will do (exit 75)."""

    exit_code = EXIT_WORK_LEFT


class StoreUnreachable(WorkLeft):
    """The object store a remote parquet_dir names did not answer: a rerun finishes the upload (exit 75)."""


class QuotaStop(WorkLeft):
    """A quota window is spent and the caller chose not to wait for it (`--no-wait`, `--max-wait`)."""

    def __init__(self, message: str, *, reset_at: float, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reset_at = reset_at


class Interrupted(BulkfetchError):
    """Ctrl-C or SIGTERM: stopped cleanly with everything checkpointed (exit 130)."""

    exit_code = EXIT_INTERRUPTED
