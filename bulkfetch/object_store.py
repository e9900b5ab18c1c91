"""A remote parquet_dir (s3://, gs://, hdfs://) through pyarrow.fs: publish whole files, remove, list.

Readers never see a partial object. pyarrow's S3 output stream completes a multipart upload on close even
after an error (apache/arrow#40502): a process stopped mid-write would leave a truncated object at the final
key. So `publish` uploads to a hidden temporary key beside the target, then copies it onto the target on the
server (one request: the target is the old object or the new one), then deletes the temporary. A run killed
between the steps leaves only a temporary, which `sweep_temporaries` removes on the next run. (S3 copies up
to 5 GB in one request; a partition file is far smaller: see bulkfetch.compact's row group sizes.)

Keys are relative to the dataset root (`<table>/athlete_id=<id>/year=YYYY/part-0.parquet`). Credentials are
never passed here: pyarrow reads them from each store's standard places (environment, profile files, instance
metadata). Error messages name the store's URI (which holds none: the config refuses credentials in it).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow.fs as pafs

from bulkfetch.errors import StorageError, StoreUnreachable, WriteError

# Marks a temporary upload; the leading dot of its name hides it from pyarrow, Spark and `*.parquet` globs.
UPLOAD_MARK = ".upload-"


@dataclass(frozen=True)
class Timeouts:
    """How long a store's client waits: a dead endpoint is said within seconds, not after the SDK's minutes
    of retries."""

    connect_s: float
    request_s: float  # S3: without a byte from the store (curl's low-speed limit), per attempt
    attempts: int
    gcs_retry_limit: timedelta  # GCS's client takes no timeouts, only how long it retries


# Uploads of part files: a slow store gets time to answer.
TRANSFERS = Timeouts(connect_s=5.0, request_s=60.0, attempts=3, gcs_retry_limit=timedelta(seconds=10))
# The access check at a run's start sends a few tiny requests that any live store answers at once: an endpoint
# that accepts connections and never answers is said after 2 x 10 s, not the transfers' 3 x 60 s.
ACCESS_CHECK = Timeouts(connect_s=5.0, request_s=10.0, attempts=2, gcs_retry_limit=timedelta(seconds=10))
# A temporary this old is a stopped run's: an upload in progress (another host's, or an access probe) is younger.
TEMPORARY_MAX_AGE = timedelta(hours=1)
_OWNER = re.compile(r"[0-9a-f]{1,32}")  # a staging folder's id, as bulkfetch.remote_sync makes it
# Words in the stores' error messages (pyarrow passes the AWS SDK's error names through) and what they mean.
_UNREACHABLE = ("NETWORK_CONNECTION", "Could not connect", "Couldn't connect", "Timeout was reached",
                "timed out", "Connection refused", "Could not resolve host", "SERVICE_UNAVAILABLE",
                "HTTP status 503")
_NO_BUCKET = ("NO_SUCH_BUCKET", "NoSuchBucket")
_DENIED = ("ACCESS_DENIED", "AccessDenied", "HTTP status 403", "INVALID_ACCESS_KEY_ID", "InvalidAccessKeyId",
           "SIGNATURE_DOES_NOT_MATCH", "SignatureDoesNotMatch", "Unable to locate credentials", "No credentials")
# S3 answers a request signed for another region with a redirect (301) or a malformed-authorization error;
# pyarrow adds "Looks like the configured region is 'A' while the bucket is located in 'B'." when S3 says B.
_WRONG_REGION = ("HTTP status 301", "PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraint",
                 "Looks like the configured region is")
# The bucket's region, where the error names it: pyarrow's "...located in 'B'", S3's "...is wrong; expecting 'B'".
_BUCKET_REGION = re.compile(r"(?:the bucket is located in|is wrong; expecting) '([a-z0-9-]+)'")


@dataclass(frozen=True)
class ObjectStore:
    """A dataset root in an object store: `fs` and the root path inside it (`bucket/prefix` for S3)."""

    uri: str
    fs: pafs.FileSystem
    root: str
    options: tuple[tuple[str, str], ...] = ()  # the config's parquet_options: another client (s3_multipart, the check)

    def path(self, key: str) -> str:
        return f"{self.root}/{key}" if key else self.root


def open_store(uri: str, options: Sequence[tuple[str, str]] = (), timeouts: Timeouts = TRANSFERS) -> ObjectStore:
    """The store a `scheme://bucket/prefix` URI names, with the config's pyarrow.fs `options`
    (endpoint_override, region, scheme) and `timeouts` (HDFS's client takes none). Nothing is sent yet: see
    `check_access`. Raises StorageError (exit 2) when pyarrow cannot make this store's client here (HDFS
    without Hadoop's libraries)."""
    scheme, rest = uri.split("://", 1)
    settings = dict(options)
    if scheme == "s3":
        fs: pafs.FileSystem = pafs.S3FileSystem(
            connect_timeout=timeouts.connect_s, request_timeout=timeouts.request_s,
            retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=timeouts.attempts), **settings)
        return ObjectStore(uri, fs, rest.strip("/"), tuple(options))
    if scheme == "gs":
        gcs = {key: value for key, value in settings.items() if key != "region"}  # GCS picks no region per call
        fs = pafs.GcsFileSystem(retry_time_limit=timeouts.gcs_retry_limit, **gcs)
        return ObjectStore(uri, fs, rest.strip("/"), tuple(options))
    try:
        fs, root = pafs.FileSystem.from_uri(uri)  # hdfs://: host and port are in the URI
    except OSError as exc:  # pyarrow loads libjvm and libhdfs only now
        raise StorageError(f"{uri}: HDFS needs Hadoop's libraries (libjvm, libhdfs): {str(exc).splitlines()[0]}",
                           hint="install Java and Hadoop and set JAVA_HOME, HADOOP_HOME and CLASSPATH (see "
                                "pyarrow's HDFS documentation), or use another parquet_dir") from None
    return ObjectStore(uri, fs, root.rstrip("/"))


def check_access(store: ObjectStore) -> None:
    """Send one listing of the dataset root (its bucket must exist; bulkfetch never creates one) and one
    small write and delete, so a missing bucket, refused credentials or a dead endpoint are said when a
    run starts, not after hours of fetching. Its own client waits ACCESS_CHECK's shorter timeouts (read
    when called: a test lowers them). Raises StorageError (exit 2) or StoreUnreachable (exit 75)."""
    checked = open_store(store.uri, store.options, ACCESS_CHECK)
    try:
        check_bucket(checked)
        probe = checked.path(f".access-probe{UPLOAD_MARK}{os.getpid()}-{secrets.token_hex(4)}")
        with checked.fs.open_output_stream(probe) as stream:
            stream.write(b"")
        checked.fs.delete_file(probe)
    except OSError as exc:
        raise store_error(store, "cannot use", exc) from None


def check_bucket(store: ObjectStore) -> None:
    """StorageError (exit 2) when the store's bucket does not exist: a reader would otherwise find no table
    in it and send the user to fetch. OSError when the store cannot say."""
    bucket = store.root.split("/", 1)[0]
    if store.fs.get_file_info(bucket).type == pafs.FileType.NotFound:
        raise StorageError(f"{store.uri}: the bucket {bucket} does not exist",
                           hint="create it (bulkfetch never creates buckets) or fix [storage] parquet_dir")


def store_error(store: ObjectStore, doing: str, exc: OSError) -> StorageError | StoreUnreachable | WriteError:
    """The one-line error for a store's failure: unreachable (exit 75, a rerun finishes), the wrong region
    (named when the error says it), refused credentials or a missing bucket (exit 2, each with its fix),
    else a failed write (exit 1)."""
    text = str(exc)
    if any(word in text for word in _UNREACHABLE):
        return StoreUnreachable(f"{store.uri}: {doing} the object store: it did not answer",
                                hint="check the network and [storage] parquet_options endpoint_override, then "
                                     "rerun (the local Parquet is kept and uploaded then)")
    if any(word in text for word in _WRONG_REGION):  # before access denied: S3 may refuse such a request too
        found = _BUCKET_REGION.search(text)
        return StorageError(f"{store.uri}: {doing} the object store: the bucket is in another region"
                            f"{f' ({found[1]})' if found else ''}",
                            hint=f"set [storage] parquet_options region = \"{found[1] if found else 'REGION'}\" "
                                 "(the bucket's region)")
    if any(word in text for word in _DENIED):
        return StorageError(f"{store.uri}: {doing} the object store: access denied",
                            hint="check the credentials in the store's standard places (environment, profile "
                                 "files) and that they may read, write and delete under this prefix")
    if any(word in text for word in _NO_BUCKET):
        return StorageError(f"{store.uri}: {doing} the object store: the bucket does not exist",
                            hint="create it (bulkfetch never creates buckets) or fix [storage] parquet_dir")
    return WriteError(f"{store.uri}: {doing} the object store ({text.splitlines()[0] if text else 'no detail'})",
                      hint="rerun; the local Parquet is kept and uploaded then")


def publish(store: ObjectStore, local: Path, key: str, owner: str) -> None:
    """Put the local file at `key` so that readers see the old object or the new one, never part of one:
    upload to a temporary key (named after `owner`, the staging folder's id), copy it onto `key` on the
    server, delete the temporary."""
    assert _OWNER.fullmatch(owner), owner
    folder, _, name = key.rpartition("/")
    temp = store.path(f"{folder}/.{name}{UPLOAD_MARK}{owner}-{os.getpid()}-{secrets.token_hex(4)}".lstrip("/"))
    try:
        pafs.copy_files(str(local), temp, destination_filesystem=store.fs)
        store.fs.copy_file(temp, store.path(key))
    except OSError as exc:
        _delete_quietly(store, temp)
        raise store_error(store, f"cannot upload {key} to", exc) from None
    except BaseException:
        _delete_quietly(store, temp)  # Ctrl-C/SIGTERM: the next run's sweep removes it if this cannot
        raise
    _delete_quietly(store, temp)


def remove(store: ObjectStore, key: str) -> None:
    try:
        store.fs.delete_file(store.path(key))
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise store_error(store, f"cannot remove {key} from", exc) from None


@dataclass(frozen=True)
class RemoteObject:
    size: int
    mtime: datetime | None  # when the store last wrote it, None if the store does not say


def list_objects(store: ObjectStore) -> dict[str, RemoteObject]:
    """Every object under the dataset root by key (relative to the root)."""
    selector = pafs.FileSelector(store.root, recursive=True, allow_not_found=True)
    try:
        infos = store.fs.get_file_info(selector)
    except OSError as exc:
        raise store_error(store, "cannot list", exc) from None
    prefix = store.root + "/"
    return {info.path.removeprefix(prefix): RemoteObject(info.size or 0, info.mtime)
            for info in infos if info.type == pafs.FileType.File}


def list_files(store: ObjectStore) -> dict[str, int]:
    """Every object under the dataset root: its key (relative to the root) and size in bytes."""
    return {key: found.size for key, found in list_objects(store).items()}


def is_temporary(key: str) -> bool:
    return key.rpartition("/")[2].startswith(".") and UPLOAD_MARK in key


def is_stale_temporary(key: str, made: datetime | None, now: datetime, owner: str) -> bool:
    """Pure: whether `key` is a temporary only a stopped run can have left: made by the staging folder
    `owner` (whose uploads the caller's staging lock excludes), or older than TEMPORARY_MAX_AGE. Another's
    younger one may be an upload in progress on another host sharing the prefix, or its access probe."""
    if not is_temporary(key):
        return False
    return f"{UPLOAD_MARK}{owner}-" in key or (made is not None and now - made > TEMPORARY_MAX_AGE)


def sweep_temporaries(store: ObjectStore, objects: Mapping[str, RemoteObject], now: datetime,
                      owner: str) -> list[str]:
    """Delete the stale temporaries among `objects` (see `is_stale_temporary`); returns them."""
    stale = sorted(key for key, found in objects.items() if is_stale_temporary(key, found.mtime, now, owner))
    for key in stale:
        remove(store, key)
    return stale


def _delete_quietly(store: ObjectStore, path: str) -> None:
    try:
        store.fs.delete_file(path)
    except OSError:
        pass  # already gone, or the store is away: the next run's sweep removes it
