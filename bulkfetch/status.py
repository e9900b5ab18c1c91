"""`bulkfetch status`: what is on disk, what is left, the last seen quota and the ETA, and where the Parquet
is. Sends no request to Strava; a remote parquet_dir's last upload is read from the store (its
_bulkfetch.json), what is left to upload from the local record alone."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bulkfetch.config import Config
from bulkfetch.derive import iso_utc
from bulkfetch.errors import BulkfetchError, StorageError
from bulkfetch.export_view import ExportView, Overview
from bulkfetch.pipeline import (
    load_failures,
    load_fetched_index,
    load_stream_records,
    next_listing,
    not_found_until,
    restore_ledger,
)
from bulkfetch.plan import (
    Filters,
    ListingPlan,
    RequestPlan,
    combined_plan,
    filters_from_json,
    filters_to_json,
    request_plan,
    streams_from_api_json,
    streams_from_json,
    unavailable_details,
)
from bulkfetch.progress import count, disagreement_texts, export_streams_text, listing_text
from bulkfetch.quota import BUCKETS, KINDS, UsageView, estimate_finish
from bulkfetch.roster import IMPORT_ONLY, REMOVED, REVOKED, SCOPE_MISSING, AthleteDir, Roster, access_of
from bulkfetch.roster import import_only as import_only_athlete
from bulkfetch.store import UNLISTED, RawStore

NOTHING_LISTED = ListingPlan(pages=0, full=False, full_due_at=None)  # an athlete no fetch lists (import only)
# No run does these athletes' work until they run `bulkfetch auth` again: it waits outside the totals and the ETA.
AWAITING_AUTH = (REVOKED, SCOPE_MISSING)
COUNTS = ("listed", "fetched", "pending", "pending_streams", "streams_done", "streams_from_export",
          "streams_for_stale_files", "failed", "failed_streams", "deleted", "unavailable")


def collect_status(config: Config, now: float | None = None) -> dict[str, Any]:
    """A JSON-able report of the data_dir (the shape of `status --json`): its totals, with each athlete's
    part in `athletes`."""
    now = time.time() if now is None else now
    data_dir = config.storage.data_dir
    _check_folder(data_dir)
    athletes = Roster(data_dir).athletes()
    parts = [_athlete_status(athlete, config, now) for athlete in athletes]
    # never fetched again (removed), or not until connected (import only) or connected again (revoked)
    plan = combined_plan([work for report, work, _ in parts if _served(report)])
    reports = [report for report, _, _ in parts]
    import_only = bool(reports) and all(report["import_only"] for report in reports)
    # No quota to show (as the text) when no athlete has tokens (no request was made, none will be until `auth`)
    # or the config names no app (no client_id: a fetch with it refuses, so no limits or ETA are its; the
    # config `bulkfetch demo` writes for the report names only its data_dir, its simulated app long gone).
    view = None if import_only or not config.strava.client_id else \
        restore_ledger([a.store for a in athletes], config, now).usage_view(now)
    remaining = plan.total  # like `plan`: the next run's list requests count too
    return {
        "data_dir": str(data_dir),
        "athlete_id": reports[0]["athlete_id"] if len(reports) == 1 else None,
        **{name: sum(report[name] for report in reports) for name in COUNTS},
        # A removed athlete's work is never done, a revoked one's not before `auth`: not pending in the totals
        # (its own entry still says it; `awaiting_auth` adds the revoked ones' up).
        **{name: sum(r[name] for r in reports if _served(r)) for name in ("pending", "pending_streams")},
        "awaiting_auth": _awaiting_auth([r for r in reports if r["awaits_auth"]]),
        "listing": {
            "last_complete": max((r["listing"]["last_complete"] for r in reports if r["listing"]["last_complete"]),
                                 default=None),
            "unfinished": next((r["listing"]["unfinished"] for r in reports if r["listing"]["unfinished"]), None),
            "next": _next_listing_json(plan.listing),
        },
        "quota": _quota_json(view) if view is not None else None,
        "filters": next((filters for _, _, filters in parts if filters is not None), filters_to_json(Filters(), ())),
        "remaining_requests": remaining,
        "eta": iso_utc(estimate_finish(remaining, now, view)) if remaining and view is not None else None,
        "import_only": import_only,
        "export": _export_totals([report["export"] for report in reports if report["export"] is not None]),
        "athletes": reports,
        "parquet": _parquet_json(config),
    }


def _parquet_json(config: Config) -> dict[str, Any]:
    """Where the Parquet is; for a remote parquet_dir also its staging folder, the last upload (the remote
    run manifest's time, part files and bytes; `remote_error` when the store cannot say) and the part files
    the next fetch or compact uploads or removes."""
    uri = config.storage.parquet_uri
    if uri is None:
        return {"location": str(config.storage.parquet_dir), "remote": False}
    from bulkfetch.object_store import open_store
    from bulkfetch.remote_sync import pending_sync, read_run_manifest

    pending = pending_sync(config.storage.parquet_dir, uri)
    try:
        manifest, error = read_run_manifest(open_store(uri, config.storage.parquet_options)), None
    except BulkfetchError as exc:
        manifest, error = None, str(exc)
    files = manifest.get("files") if manifest else None
    last = {"written_at": manifest.get("written_at"), "part_files": len(files),
            "bytes": sum(f.get("size", 0) for f in files if isinstance(f, dict))} if isinstance(files, list) else None
    return {"location": uri, "remote": True, "staging": str(config.storage.parquet_dir), "last_upload": last,
            "remote_error": error, "pending_uploads": len(pending.upload), "pending_removals": len(pending.remove)}


def athlete_report(athlete: AthleteDir, config: Config, now: float | None = None) -> dict[str, Any]:
    """One athlete's part of `status --json` (what `bulkfetch athletes` lists)."""
    return _athlete_status(athlete, config, time.time() if now is None else now)[0]


def _athlete_status(athlete: AthleteDir, config: Config, now: float) -> tuple[dict[str, Any], RequestPlan, Any]:
    store = athlete.store
    _check_folders(store)
    catalog = store.catalog_view()
    fetched = load_fetched_index(store)
    recorded = store.read_state("filters")
    filters, streams = filters_from_json(recorded), streams_from_json(recorded)
    # An athlete known from its account export alone: nothing to list or fetch until `auth` connects it.
    import_only = athlete.tokens.load() is None and import_only_athlete(athlete)  # roster's rule, as remove
    listing = NOTHING_LISTED if import_only else next_listing(store, catalog, config, now)
    export = ExportView(store.data_dir)
    covered = export.covered(catalog) if streams and not streams_from_api_json(recorded) else set()
    work = request_plan(catalog, fetched, load_stream_records(store), filters, listing=listing,
                        not_found=not_found_until(store, listing), streams=frozenset(streams), from_export=covered,
                        stale_files=export.stale_files(catalog))  # as a fetch takes them (see plan.selected)
    failed = load_failures(store)
    unfinished = store.unfinished_listing()
    latest = store.latest_complete_listing()
    access = access_of(athlete)
    overview = export.overview(catalog, store.stream_ids()) if export.exists() else None
    report = {
        "athlete_id": athlete.athlete_id or (store.read_state("athlete") or {}).get("athlete_id"),
        "state": IMPORT_ONLY if import_only else access["state"],  # no run served it: "ok" would say one did
        "why": "known from its account export alone: 'bulkfetch auth' connects it" if import_only else access["why"],
        # A run of this version records when; before it, the last complete listing tells.
        "last_fetch": iso_utc(access["at"] if isinstance(access["at"], (int, float)) else
                           latest.finished_at if latest else None),
        "listed": len(catalog),
        "fetched": len(set(fetched) & set(catalog)),
        "pending": work.details,
        "pending_streams": work.streams,
        # Without a fetch to spare, every stream set the files give comes from the export.
        "streams_from_export": overview.streams_from_files if import_only and overview else work.streams_from_export,
        "streams_done": work.streams_done,
        "streams_for_stale_files": work.streams_for_stale_files,
        "failed": len(failed["details"]) + len(failed["streams"]),
        "failed_streams": len(failed["streams"]),
        "deleted": sum(1 for t in store.tombstones().values() if t.reason == UNLISTED),
        "unavailable": len(unavailable_details(catalog, fetched, store.not_found())),
        "listing": {
            "last_complete": latest.listing_id if latest else None,
            "unfinished": unfinished.listing_id if unfinished else None,
            "next": _next_listing_json(listing),
        },
        "remaining_requests": 0 if access["state"] == REMOVED or import_only else work.total,
        "import_only": import_only,
        "awaits_auth": access["state"] in AWAITING_AUTH,
        "export": _export_json(overview) if overview is not None else None,
    }
    return report, work, filters_to_json(filters, streams, streams_from_api=streams_from_api_json(recorded)) \
        if recorded is not None else None


def _served(report: dict[str, Any]) -> bool:
    """Whether the next run does this athlete's work (status of one athlete)."""
    return report["state"] != REMOVED and not report["import_only"] and not report["awaits_auth"]


def _awaiting_auth(reports: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The work of the athletes that must run `bulkfetch auth` again before any run does it (None: none)."""
    if not reports:
        return None
    return {"athletes": [r["athlete_id"] for r in reports],
            **{name: sum(r[name] for r in reports) for name in ("pending", "pending_streams", "remaining_requests")}}


def _export_json(overview: Overview) -> dict[str, Any]:
    return {"activities": overview.activities, "files": overview.files,
            "streams_from_files": overview.streams_from_files, "imported_at": iso_utc(overview.imported_at),
            "disagree_with_csv": overview.disagree.with_csv, "stale_against_api": overview.disagree.with_api}


def _export_totals(exports: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The athletes' imports together (None: no athlete has one); imported_at the latest."""
    if not exports:
        return None
    counts = ("activities", "streams_from_files", "disagree_with_csv", "stale_against_api")
    return {**{name: sum(e[name] for e in exports) for name in counts},
            "files": {status: sum(e["files"][status] for e in exports) for status in exports[0]["files"]},
            "imported_at": max((e["imported_at"] for e in exports if e["imported_at"]), default=None)}


def _next_listing_json(listing: ListingPlan) -> dict[str, Any]:
    return {"full": listing.full, "list_pages": listing.pages, "full_relist_due": iso_utc(listing.full_due_at)}


def _check_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise StorageError(f"{folder} is a file, not a folder",
                           hint="move it away or point [storage] at another folder")


def _check_folders(store: RawStore) -> None:
    """A file where one of the store's folders should be is said in one line (exit 2), not read as empty."""
    for folder in (store.data_dir, store.data_dir / "raw", store.list_dir, store.detail_dir, store.state_dir):
        _check_folder(folder)


def _quota_json(view: UsageView) -> dict[str, Any]:
    return {
        bucket: {
            window: {"used": usage.used, "limit": usage.limit, "resets_at": iso_utc(usage.resets_at)}
            for window in KINDS
            for usage in [view.get(bucket, window)]
        }
        for bucket in BUCKETS
    }


def render_status(report: dict[str, Any]) -> str:
    head = (f"data_dir   {report['data_dir']}  ({_athletes_text(report)})\n"
            f"parquet    {parquet_text(report['parquet'])}")
    if report["import_only"]:  # no tokens, never listed: what the import gave, and how the API would add to it
        return "\n".join([head, *export_lines(report["export"]),
                          "api        not connected: 'bulkfetch auth' connects the athlete, then 'bulkfetch fetch' "
                          "adds Strava's summaries and details"])
    lines = [
        head,
        f"listed     {report['listed']:,}",
        f"fetched    {report['fetched']:,}",
        f"pending    {_pending_text(report)}",
        *([_awaiting_auth_text(report)] if report["awaiting_auth"] else []),
        *([f"{'streams':<11}" + _export_streams_text(report)] if report["streams_from_export"] else []),
        f"failed     {report['failed']:,}" + (f" ({report['failed_streams']:,} of them stream sets)"
                                              if report["failed_streams"] else ""),
        f"deleted    {report['deleted']:,}",
        f"no detail  {report['unavailable']:,} (404; asked again when the summary changes or at a full re-list)",
        f"filters    {_filters_text(report['filters'])}",
        *(export_lines(report["export"]) if report["export"] else []),
    ]
    if report["listing"]["unfinished"]:
        lines.append(f"listing    {report['listing']['unfinished']} unfinished (the next fetch continues it)")
    upcoming = report["listing"]["next"]
    lines.append("listing    " + listing_text(upcoming["full"], upcoming["list_pages"], upcoming["full_relist_due"]))
    if report["quota"] is None:
        lines.append("quota      unknown: the config names no Strava app ([strava] client_id is not set), and a "
                     "fetch with it would refuse")
    for bucket, windows in (report["quota"] or {}).items():
        parts = []
        for window, usage in windows.items():
            limit = "?" if usage["limit"] is None else f"{usage['limit']:,}"
            parts.append(f"{window} {usage['used']:,}/{limit} (resets {usage['resets_at']})")
        lines.append(f"quota {bucket:<8}" + "; ".join(parts))
    if len(report["athletes"]) > 1:
        lines.extend(_athlete_line(athlete) for athlete in report["athletes"])
    if report["eta"]:
        remaining, pages = report["remaining_requests"], report["listing"]["next"]["list_pages"]
        at_least = "" if report["listing"]["next"]["full_relist_due"] else "at least "  # history not all listed
        lines.append(f"ETA        {report['eta']} for {at_least}{remaining:,} request{'' if remaining == 1 else 's'}"
                     f" at the current quota ({pages:,} of them list page{'' if pages == 1 else 's'})")
    return "\n".join(lines)


def parquet_text(parquet: dict[str, Any]) -> str:
    """Where the Parquet is; for a remote one, its last upload and what the next run uploads or removes."""
    if not parquet["remote"]:
        return parquet["location"]
    where = f"{parquet['location']} (staged in {parquet['staging']})"
    last = parquet["last_upload"]
    if parquet["remote_error"]:
        uploaded = f"the last upload is unknown: {parquet['remote_error']}"
    elif last is None:
        uploaded = "nothing uploaded yet"
    else:
        uploaded = (f"last upload {last['written_at']}: {count(last['part_files'], 'part file')}, "
                    f"{last['bytes']:,} bytes")
    waiting = [f"{parquet['pending_uploads']:,} to upload" if parquet["pending_uploads"] else "",
               f"{parquet['pending_removals']:,} to remove" if parquet["pending_removals"] else ""]
    pending = " and ".join(part for part in waiting if part)
    return f"{where}; {uploaded}" + (f"; part files {pending} at the next fetch or compact" if pending else "")


def export_lines(export: dict[str, Any]) -> list[str]:
    """The import's lines of `status`: activities and files, and the files that disagree with Strava."""
    files = export["files"]
    lines = [f"export     {export['activities']:,} activities from activities.csv, imported {export['imported_at']}",
             f"files      {files['ok']:,} decoded, {files['truncated']:,} truncated (kept up to the cut), "
             f"{files['unreadable']:,} unreadable; {export['streams_from_files']:,} activities' streams from files"]
    return lines + [f"{'':<11}{text}" for text in disagreement_texts(export["disagree_with_csv"],
                                                                     export["stale_against_api"])]


def _athletes_text(report: dict[str, Any]) -> str:
    if len(report["athletes"]) > 1:
        return f"{len(report['athletes'])} athletes"
    return f"athlete {report['athlete_id'] or 'unknown'}"


def _athlete_line(athlete: dict[str, Any]) -> str:
    state = "" if athlete["state"] == "ok" else f"  {athlete['state'].upper()}: {athlete['why']}"
    return (f"athlete    {athlete['athlete_id'] or 'unknown'}: {athlete['listed']:,} listed, "
            f"{athlete['fetched']:,} fetched, {athlete['pending']:,} pending, last fetch "
            f"{athlete['last_fetch'] or 'never'}{state}")


def _export_streams_text(report: dict[str, Any]) -> str:
    return export_streams_text(report["streams_from_export"], report["pending_streams"], report["streams_done"],
                               for_stale_files=report["streams_for_stale_files"])


def _pending_text(report: dict[str, Any]) -> str:
    details = count(report["pending"], "detail")
    return f"{details}, {count(report['pending_streams'], 'stream set')}" if report["filters"]["streams"] else details


def _awaiting_auth_text(report: dict[str, Any]) -> str:
    waiting = report["awaiting_auth"]
    who = " and ".join(f"athlete {athlete_id or 'unknown'}" for athlete_id in waiting["athletes"])
    return (f"{'waiting':<11}{_pending_text({**report, **waiting})} of {who}, not in the totals or the ETA: no run "
            f"fetches them before {'they run' if len(waiting['athletes']) > 1 else 'the athlete runs'} "
            f"'bulkfetch auth' again")


def _filters_text(filters: dict[str, Any]) -> str:
    """The last fetch's filters as its flags read: 'sport Run,TrailRun; since 2024-01-01T00:00:00Z'."""
    parts = []
    if filters["sports"] is not None:
        parts.append("sport " + ",".join(filters["sports"]))
    for name in ("since", "until"):
        if filters[name] is not None:
            parts.append(f"{name} {iso_utc(filters[name])}")
    if filters["streams"]:
        parts.append("streams " + ",".join(filters["streams"]))
    return "; ".join(parts) or "none: every listed activity, no streams"
