"""Abort the unfinished multipart uploads a stopped run left under an S3 dataset root (issue 16).

A run killed mid-upload leaves, besides its temporary object (see bulkfetch.object_store.sweep_temporaries),
the parts of the multipart upload pyarrow had begun: invisible to listings, yet stored and billed. pyarrow
can neither list nor abort them, so this uses boto3 (the `s3` extra). Without boto3 nothing is done here:
the bucket's lifecycle rule that aborts incomplete multipart uploads cleans them (see the README).

Only uploads to bulkfetch's stale temporary keys under the dataset root are aborted (see
bulkfetch.object_store.is_stale_temporary): this staging folder's (the caller holds its staging lock alone, so
none of them is under way) or older than an hour; an upload of anything else is someone else's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bulkfetch.object_store import TRANSFERS, ObjectStore, is_stale_temporary

MAX_LISTINGS = 1000  # pages of up to 1,000 uploads each: far more than stopped runs leave


@dataclass(frozen=True)
class Cleanup:
    aborted: list[str]  # keys (relative to the dataset root) whose unfinished uploads were aborted
    skipped: str | None = None  # why nothing was looked at: the lifecycle rule is what cleans them then


def abort_unfinished_uploads(store: ObjectStore, now: datetime, owner: str) -> Cleanup:
    """Abort the unfinished multipart uploads to bulkfetch's stale temporary keys under the store's dataset
    root (`owner`: the staging folder's id).
    Never raises for the store's refusals: a policy without the right to list them leaves them to the
    lifecycle rule, as a missing boto3 does (`skipped` says which)."""
    if not store.uri.startswith("s3://"):
        return Cleanup([], skipped="only S3 is cleaned")
    try:
        import boto3
        import botocore.config
        import botocore.exceptions
    except ImportError:
        return Cleanup([], skipped="boto3 is not installed (pip install 'bulkfetch[s3]')")
    bucket, _, prefix = store.root.partition("/")
    client = boto3.client("s3", **_client_options(dict(store.options)), config=botocore.config.Config(
        connect_timeout=TRANSFERS.connect_s, read_timeout=TRANSFERS.request_s,
        retries={"max_attempts": TRANSFERS.attempts, "mode": "standard"}))
    aborted: list[str] = []
    try:
        for upload in _unfinished(client, bucket, f"{prefix}/" if prefix else ""):
            key = upload["Key"].removeprefix(f"{prefix}/" if prefix else "")
            if is_stale_temporary(key, upload.get("Initiated"), now, owner):
                client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                aborted.append(key)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        return Cleanup(aborted, skipped=f"the store refused ({str(exc).splitlines()[0]})")
    return Cleanup(aborted)


def _client_options(options: dict[str, str]) -> dict[str, str]:
    """boto3's names for the config's parquet_options (pyarrow's): endpoint_override and scheme make one
    endpoint URL. Credentials are not among them: boto3 reads the same standard places pyarrow does."""
    client: dict[str, str] = {}
    if "region" in options:
        client["region_name"] = options["region"]
    if "endpoint_override" in options:
        client["endpoint_url"] = f"{options.get('scheme', 'https')}://{options['endpoint_override']}"
    return client


def _unfinished(client: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    """Every unfinished multipart upload under `prefix`, over at most MAX_LISTINGS pages."""
    uploads: list[dict[str, Any]] = []
    markers: dict[str, str] = {}
    for _ in range(MAX_LISTINGS):
        page = client.list_multipart_uploads(Bucket=bucket, Prefix=prefix, **markers)
        uploads.extend(page.get("Uploads", []))
        if not page.get("IsTruncated"):
            break
        markers = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}
    return uploads
