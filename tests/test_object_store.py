"""bulkfetch.object_store against moto's S3 server on 127.0.0.1: whole-object publishing, listing, removing,
sweeping a killed run's temporaries, and the access check's errors."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from bulkfetch import object_store
from bulkfetch.errors import EXIT_USAGE, EXIT_WORK_LEFT, BulkfetchError
from bulkfetch.object_store import (
    ACCESS_CHECK,
    TRANSFERS,
    UPLOAD_MARK,
    ObjectStore,
    Timeouts,
    check_access,
    is_stale_temporary,
    is_temporary,
    list_files,
    list_objects,
    open_store,
    publish,
    remove,
    store_error,
    sweep_temporaries,
)

KEY = "activities/athlete_id=7/year=2024/part-0.parquet"
OWNER = "0123456789abcdef"


def _store(s3_server, bucket: str):
    return open_store(f"s3://{bucket}/tables", tuple(s3_server.options.items()))


def _published(s3_server, tmp_path: Path, content: bytes) -> ObjectStore:
    """A store of a new bucket holding `content` at KEY."""
    store = _store(s3_server, s3_server.new_bucket())
    local = tmp_path / "part-0.parquet"
    local.write_bytes(content)
    publish(store, local, KEY, OWNER)
    return store


def test_publish_replaces_the_object_and_leaves_no_temporary(s3_server, tmp_path: Path) -> None:
    store = _published(s3_server, tmp_path, b"old" * 100)
    (tmp_path / "new.parquet").write_bytes(b"new content")
    publish(store, tmp_path / "new.parquet", KEY, OWNER)
    with store.fs.open_input_file(store.path(KEY)) as stream:
        assert stream.read() == b"new content"
    assert list_files(store) == {KEY: len(b"new content")}


class _CopyFails(pafs.FileSystemHandler):
    """moto's S3 through pyarrow, but the server-side copy fails: an upload that fails half-way, after its
    temporary is written."""

    def __init__(self, s3: pafs.FileSystem) -> None:
        self.s3 = s3

    def copy_file(self, src: str, dest: str) -> None:
        raise OSError("AWS Error INTERNAL_FAILURE (HTTP status 500) during CopyObject operation: copy failed")

    def get_type_name(self) -> str:
        return "s3-copy-fails"

    def get_file_info(self, paths):
        return self.s3.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.s3.get_file_info(selector)

    def open_output_stream(self, path, metadata):
        return self.s3.open_output_stream(path, metadata=metadata)

    def delete_file(self, path: str) -> None:
        self.s3.delete_file(path)

    def normalize_path(self, path: str) -> str:
        return path

    def _unused(self, *args):
        raise NotImplementedError

    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = move = _unused
    open_append_stream = open_input_file = open_input_stream = _unused


def test_a_failed_upload_keeps_the_old_object_whole_and_no_temporary(s3_server, tmp_path: Path) -> None:
    store = _published(s3_server, tmp_path, b"old object")
    failing = ObjectStore(store.uri, pafs.PyFileSystem(_CopyFails(store.fs)), store.root)
    (tmp_path / "new.parquet").write_bytes(b"new object, longer")
    with pytest.raises(BulkfetchError) as caught:
        publish(failing, tmp_path / "new.parquet", KEY, OWNER)  # the temporary is uploaded, its copy fails
    assert "cannot upload" in str(caught.value)
    assert list_files(store) == {KEY: len(b"old object")}


def test_sweep_removes_a_killed_runs_temporaries_only(s3_server, tmp_path: Path) -> None:
    store = _published(s3_server, tmp_path, b"data")
    stale = f"activities/athlete_id=7/year=2024/.part-0.parquet{UPLOAD_MARK}{OWNER}-123-abcd"
    in_flight = f"activities/athlete_id=7/year=2024/.part-0.parquet{UPLOAD_MARK}fedcba9876543210-9-abcd"
    for key in (stale, in_flight):
        with store.fs.open_output_stream(store.path(key)) as stream:
            stream.write(b"da")  # what a run killed mid-upload leaves; another host's upload under way
    assert is_temporary(stale) and not is_temporary(KEY)
    assert sweep_temporaries(store, list_objects(store), datetime.now(UTC), OWNER) == [stale]
    assert list_files(store) == {KEY: 4, in_flight: 2}
    remove(store, in_flight)
    remove(store, KEY)
    remove(store, KEY)  # already gone: nothing to say
    assert list_files(store) == {}


def test_another_staging_folders_temporary_is_swept_only_once_an_hour_old() -> None:
    theirs = f"a/.part-0.parquet{UPLOAD_MARK}fedcba9876543210-9-abcd"
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert not is_stale_temporary(theirs, now - timedelta(minutes=59), now, OWNER)
    assert not is_stale_temporary(theirs, None, now, OWNER)
    assert is_stale_temporary(theirs, now - timedelta(minutes=61), now, OWNER)
    assert is_stale_temporary(theirs.replace("fedcba9876543210", OWNER), now, now, OWNER)
    assert not is_stale_temporary(KEY, now - timedelta(days=9), now, OWNER)


def test_access_check_passes_and_leaves_nothing(s3_server) -> None:
    store = _store(s3_server, s3_server.new_bucket())
    check_access(store)
    bucket = pafs.FileSelector(store.root.split("/")[0], recursive=True)
    assert [info.path for info in store.fs.get_file_info(bucket) if info.type == pafs.FileType.File] == []


def test_missing_bucket_is_a_configuration_error(s3_server) -> None:
    with pytest.raises(BulkfetchError) as caught:
        check_access(_store(s3_server, "no-such-bucket-here"))
    assert caught.value.exit_code == EXIT_USAGE
    assert "the bucket no-such-bucket-here does not exist" in str(caught.value) and "\n" not in str(caught.value)


def test_unreachable_endpoint_is_work_left(s3_server) -> None:
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = open_store("s3://bucket/p", (("endpoint_override", f"127.0.0.1:{port}"), ("region", "us-east-1"),
                                         ("scheme", "http")))
    with pytest.raises(BulkfetchError) as caught:
        check_access(store)
    assert caught.value.exit_code == EXIT_WORK_LEFT
    assert "did not answer" in str(caught.value) and "testing-secret" not in str(caught.value)


def test_an_endpoint_that_never_answers_fails_the_check_within_its_own_timeouts(s3_server, monkeypatch) -> None:
    """The check waits ACCESS_CHECK's timeouts, not the transfers' (3 x 60 s) the store was opened with. The
    default bound is asserted; the request sent waits 1 s here, so that the test takes seconds."""
    assert ACCESS_CHECK.request_s * ACCESS_CHECK.attempts <= 20 < TRANSFERS.request_s * TRANSFERS.attempts
    monkeypatch.setattr(object_store, "ACCESS_CHECK", Timeouts(connect_s=1.0, request_s=1.0, attempts=2,
                                                               gcs_retry_limit=timedelta(seconds=1)))
    with socket.socket() as sock:  # the kernel accepts connections to a listening socket; nobody answers
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        store = open_store("s3://bucket/p", (("endpoint_override", f"127.0.0.1:{sock.getsockname()[1]}"),
                                             ("region", "us-east-1"), ("scheme", "http")))
        started = time.monotonic()
        with pytest.raises(BulkfetchError) as caught:
            check_access(store)
        waited = time.monotonic() - started
    assert caught.value.exit_code == EXIT_WORK_LEFT and "did not answer" in str(caught.value)
    assert 1.0 <= waited < 15.0, waited  # 2 attempts of 1 s (and the SDK's backoff between them)


def test_refused_credentials_are_a_configuration_error(s3_server) -> None:
    store = _store(s3_server, s3_server.new_bucket())
    s3_server.authenticate_after("0")  # from now on moto knows no key: the test's credentials are refused
    try:
        with pytest.raises(BulkfetchError) as caught:
            check_access(store)
    finally:
        s3_server.authenticate_after("inf")
    assert caught.value.exit_code == EXIT_USAGE
    assert "access denied" in str(caught.value) and "testing-secret" not in str(caught.value)


# What pyarrow raises for a bucket in another region (moto serves every region): pyarrow's own test of it
# (test_s3fs_wrong_region), S3's redirect as the AWS SDK passes it through, and S3's answer to a request
# signed for another region, in pyarrow's "AWS Error ... during ... operation: " frame.
WRONG_REGION_TEXTS = {
    "When getting information for bucket 'voltrondata-labs-datasets': AWS Error UNKNOWN (HTTP status 301) during "
    "HeadBucket operation: No response body. Looks like the configured region is 'eu-north-1' while the bucket is "
    "located in 'us-east-2'.": "us-east-2",
    "When getting information for key 'uber' in bucket 'coiled-data': AWS Error UNKNOWN (HTTP status 301) during "
    "HeadObject operation: No response body. Looks like the configured region is 'us-east-1' while the bucket is "
    "located in 'us-east-2'.": "us-east-2",
    "AWS Error UNKNOWN (HTTP status 301) during CreateMultipartUpload operation: Unable to parse ExceptionName: "
    "PermanentRedirect Message: The bucket you are attempting to access must be addressed using the specified "
    "endpoint. Please send all future requests to this endpoint.": None,
    "When listing objects under key 'tables' in bucket 'b': AWS Error UNKNOWN (HTTP status 400) during "
    "ListObjectsV2 operation: Unable to parse ExceptionName: AuthorizationHeaderMalformed Message: The "
    "authorization header is malformed; the region 'us-east-1' is wrong; expecting 'eu-west-1'": "eu-west-1",
}


@pytest.mark.parametrize("text", WRONG_REGION_TEXTS)
def test_a_bucket_in_another_region_is_a_configuration_error_naming_its_region(text: str) -> None:
    store = open_store("s3://b/tables")
    error = store_error(store, "cannot use", OSError(text))
    region = WRONG_REGION_TEXTS[text]
    assert error.exit_code == EXIT_USAGE
    assert str(error).startswith("s3://b/tables: cannot use the object store: the bucket is in another region")
    assert f'region = "{region or "REGION"}"' in error.hint and "\n" not in str(error) + error.hint
