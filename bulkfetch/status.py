"""`bulkfetch status`: what is on disk, what is left, the last seen quota and the ETA. Sends no request."""

from __future__ import annotations

import time
from typing import Any

from bulkfetch.config import Config
from bulkfetch.errors import StorageError
from bulkfetch.pipeline import (
    load_failures,
    load_fetched_index,
    load_stream_records,
    next_listing,
    not_found_until,
    restore_ledger,
)
from bulkfetch.plan import filters_from_json, filters_to_json, request_plan, streams_from_json, unavailable_details
from bulkfetch.progress import listing_text
from bulkfetch.quota import BUCKETS, KINDS, UsageView, estimate_finish
from bulkfetch.store import UNLISTED, RawStore


def collect_status(config: Config, now: float | None = None) -> dict[str, Any]:
    """A JSON-able report of the data_dir (the shape of `status --json`)."""
    now = time.time() if now is None else now
    store = RawStore(config.storage.data_dir)
    _check_folders(store)
    catalog = store.catalog()
    fetched = load_fetched_index(store)
    recorded = store.read_state("filters")
    filters, streams = filters_from_json(recorded), streams_from_json(recorded)
    listing = next_listing(store, catalog, config, now)
    not_found = not_found_until(store, listing)
    work = request_plan(catalog, fetched, load_stream_records(store), filters, listing=listing,
                        not_found=not_found, streams=frozenset(streams))
    remaining = work.total  # like `plan`: the next run's list requests count too
    failed = load_failures(store)
    athlete = store.read_state("athlete") or {}
    unfinished = store.unfinished_listing()
    latest = store.latest_complete_listing()
    ledger = restore_ledger(store, config, now)
    view = ledger.usage_view(now)
    return {
        "data_dir": str(config.storage.data_dir),
        "athlete_id": athlete.get("athlete_id"),
        "listed": len(catalog),
        "fetched": len(set(fetched) & set(catalog)),
        "pending": work.details,
        "pending_streams": work.streams,
        "failed": len(failed["details"]) + len(failed["streams"]),
        "failed_streams": len(failed["streams"]),
        "deleted": sum(1 for t in store.tombstones().values() if t.reason == UNLISTED),
        "unavailable": len(unavailable_details(catalog, fetched, store.not_found())),
        "listing": {
            "last_complete": latest.listing_id if latest else None,
            "unfinished": unfinished.listing_id if unfinished else None,
            "next": {"full": listing.full, "list_pages": listing.pages,
                     "full_relist_due": _iso(listing.full_due_at)},
        },
        "quota": _quota_json(view),
        "filters": filters_to_json(filters, streams),
        "remaining_requests": remaining,
        "eta": _iso(estimate_finish(remaining, now, view)) if remaining else None,
    }


def _check_folders(store: RawStore) -> None:
    """A file where one of the store's folders should be is said in one line (exit 2), not read as empty."""
    for folder in (store.data_dir, store.data_dir / "raw", store.list_dir, store.detail_dir, store.state_dir):
        if folder.exists() and not folder.is_dir():
            raise StorageError(f"{folder} is a file, not a folder",
                               hint="move it away or point [storage] at another folder")


def _quota_json(view: UsageView) -> dict[str, Any]:
    return {
        bucket: {
            window: {"used": usage.used, "limit": usage.limit, "resets_at": _iso(usage.resets_at)}
            for window in KINDS
            for usage in [view.get(bucket, window)]
        }
        for bucket in BUCKETS
    }


def _iso(epoch_s: float | None) -> str | None:
    return None if epoch_s is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))


def render_status(report: dict[str, Any]) -> str:
    lines = [
        f"data_dir   {report['data_dir']}  (athlete {report['athlete_id'] or 'unknown'})",
        f"listed     {report['listed']:,}",
        f"fetched    {report['fetched']:,}",
        f"pending    {_pending_text(report)}",
        f"failed     {report['failed']:,}" + (f" ({report['failed_streams']:,} of them stream sets)"
                                              if report["failed_streams"] else ""),
        f"deleted    {report['deleted']:,}",
        f"no detail  {report['unavailable']:,} (404; asked again when the summary changes or at a full re-list)",
        f"filters    {_filters_text(report['filters'])}",
    ]
    if report["listing"]["unfinished"]:
        lines.append(f"listing    {report['listing']['unfinished']} unfinished (the next fetch continues it)")
    upcoming = report["listing"]["next"]
    lines.append("listing    " + listing_text(upcoming["full"], upcoming["list_pages"], upcoming["full_relist_due"]))
    for bucket, windows in report["quota"].items():
        parts = []
        for window, usage in windows.items():
            limit = "?" if usage["limit"] is None else f"{usage['limit']:,}"
            parts.append(f"{window} {usage['used']:,}/{limit} (resets {usage['resets_at']})")
        lines.append(f"quota {bucket:<8}" + "; ".join(parts))
    if report["eta"]:
        remaining, pages = report["remaining_requests"], report["listing"]["next"]["list_pages"]
        at_least = "" if report["listing"]["next"]["full_relist_due"] else "at least "  # history not all listed
        lines.append(f"ETA        {report['eta']} for {at_least}{remaining:,} request{'' if remaining == 1 else 's'}"
                     f" at the current quota ({pages:,} of them list page{'' if pages == 1 else 's'})")
    return "\n".join(lines)


def _pending_text(report: dict[str, Any]) -> str:
    details = f"{report['pending']:,} details"
    return f"{details}, {report['pending_streams']:,} stream sets" if report["filters"]["streams"] else details


def _filters_text(filters: dict[str, Any]) -> str:
    """The last fetch's filters as its flags read: 'sport Run,TrailRun; since 2024-01-01T00:00:00Z'."""
    parts = []
    if filters["sports"] is not None:
        parts.append("sport " + ",".join(filters["sports"]))
    for name in ("since", "until"):
        if filters[name] is not None:
            parts.append(f"{name} {_iso(filters[name])}")
    if filters["streams"]:
        parts.append("streams " + ",".join(filters["streams"]))
    return "; ".join(parts) or "none: every listed activity, no streams"
