"""The simulated athlete's account export ("Download your data"): a zip as Strava sends it, from the same
history the simulator serves, so the API's data and the export's files describe the same activities.

What it holds, with the quirks of real exports: activities.csv (English or German, see export_csv), a
device file under activities/ for every activity that is not a manual entry (mostly .fit.gz, some .fit,
.gpx, .tcx, .gpx.gz and .tcx.gz), file numbers that differ from the activity id for some rows (the upload's
id: the CSV's Filename is the only link), one or two .fit files that are really gzipped, a TCX with
whitespace before its `<?xml`, exactly one corrupt file (a FIT cut short in the middle of a record), the
recordings the athlete cropped on Strava afterwards (their files are the longer originals), and what an
importer ignores: profile.csv (it records the athlete's id), a few other CSVs and a media/ photo.

What a test needs to know and the zip must not say (which files are corrupt, which activities were
cropped) goes into a sidecar beside it, `<zip>.sim.json`.

The zip is streamed member by member (zipfile; never the whole archive in memory) to a hidden name in the
same folder and renamed when complete. The device files are the costly part (Garmin's FIT SDK Encoder
writes about 13,000 records a second here): `workers` > 1 encodes them in that many processes.
"""

from __future__ import annotations

import gzip
import os
import random
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Literal

import orjson

from bulkfetch.simulator.devicefiles import fit_file, gpx_file, tcx_file
from bulkfetch.simulator.export_csv import Language, activities_csv
from bulkfetch.simulator.history import Activity, History, athlete_of

Format = Literal["fit", "gpx", "tcx"]
# How a file differs from a clean device file: gzipped yet named .fit, whitespace before `<?xml`, cut short.
Quirk = Literal["gzip_named_fit", "leading_whitespace", "truncated"]
SIDECAR_SUFFIX = ".sim.json"
GPX_SHARE, TCX_SHARE, PLAIN_FIT_SHARE = 0.12, 0.12, 0.08
GZIPPED_XML_SHARE = 0.3  # of the GPX and TCX files
UPLOAD_NUMBERED_SHARE = 0.25  # files named after the upload's id, not the activity's
TRUNCATE_AT = 0.6  # the corrupt file keeps this share of its bytes
LEADING_WHITESPACE = b"\n          "
PHOTO = bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffd9")  # a minimal JPEG, for media/


@dataclass(frozen=True)
class ExportRequest:
    """`bulkfetch simulate --export`: where to write the first athlete's export, and how."""

    path: Path
    language: Language = "en"
    workers: int = 1


@dataclass(frozen=True)
class ExportedFile:
    """One device file of the export: whose, its member name, its format and how it was written."""

    activity_id: int
    member: str  # "activities/<number>.<ext>[.gz]", the CSV's Filename
    format: Format
    gzipped: bool
    quirk: Quirk | None = None


@dataclass
class ExportSummary:
    """What was written: counts for the user, and the facts a test or benchmark checks the import against."""

    path: Path
    sidecar: Path
    athlete_id: int
    language: Language
    activities: int
    files: list[ExportedFile]
    records: int  # device records (seconds of recording) in all the files
    cropped: list[int] = field(default_factory=list)
    manual: list[int] = field(default_factory=list)
    seconds: float = 0.0

    def by_format(self) -> Counter[str]:
        return Counter(f.member.split("/", 1)[1].split(".", 1)[1] for f in self.files)

    @property
    def corrupt(self) -> ExportedFile | None:
        return next((f for f in self.files if f.quirk == "truncated"), None)

    def line(self) -> str:
        formats = ", ".join(f"{count} {ext}" for ext, count in sorted(self.by_format().items()))
        return (f"wrote athlete {self.athlete_id}'s export to {self.path}: {self.activities} activities "
                f"({len(self.manual)} manual), {len(self.files)} files ({formats}), {self.records:,} records, "
                f"in {self.seconds:.1f} s; what the files hold beyond the API's view is listed in {self.sidecar}")


# ---------------------------------------------------------------- which file each activity gets (pure)


def plan_files(history: History) -> list[ExportedFile]:
    """The device file of every recorded activity, oldest first, with the export's quirks placed on a few;
    the same history always gets the same plan."""
    rng = random.Random(f"{history.seed}:export")
    recorded = sorted((a for a in history.activities.values() if not a.manual), key=lambda a: a.id)
    taken: set[int] = set()
    files = {}
    for activity in recorded:
        number = _file_number(rng, activity, taken)
        files[activity.id] = _planned(activity.id, number, *_format(rng, activity))
    _place_quirks(rng, recorded, files)
    return [files[a.id] for a in recorded]


def _file_number(rng: random.Random, activity: Activity, taken: set[int]) -> int:
    upload_id = activity.record.get("upload_id")
    number = upload_id if upload_id and rng.random() < UPLOAD_NUMBERED_SHARE else activity.id
    if number in taken:
        number = activity.id
    taken.add(number)
    return number


def _format(rng: random.Random, activity: Activity) -> tuple[Format, bool]:
    """GPX and TCX only for GPS recordings (a track without positions is not a GPX), TCX only without a
    temperature sensor: TCX has no temperature, and the API's streams are what the file holds."""
    draw = rng.random()
    if activity.has_gps and draw < GPX_SHARE + TCX_SHARE:
        fmt: Format = "gpx" if draw < GPX_SHARE or not _fits_tcx(activity) else "tcx"
        return fmt, rng.random() < GZIPPED_XML_SHARE
    return "fit", draw >= GPX_SHARE + TCX_SHARE + PLAIN_FIT_SHARE


def _fits_tcx(activity: Activity) -> bool:
    return activity.has_gps and "average_temp" not in activity.record


def _planned(activity_id: int, number: int, fmt: Format, gzipped: bool, quirk: Quirk | None = None) -> ExportedFile:
    gz_suffix = ".gz" if gzipped and quirk != "gzip_named_fit" else ""
    return ExportedFile(activity_id, f"activities/{number}.{fmt}{gz_suffix}", fmt, gzipped, quirk)


def _place_quirks(rng: random.Random, recorded: list[Activity], files: dict[int, ExportedFile]) -> None:
    """At least one GPX and one TCX (a plain TCX with whitespace before `<?xml`), one corrupt FIT, and one
    or two gzipped FIT files named .fit, on activities that were not cropped, when the history has them (a
    GPX and a TCX are made only among four or more GPS recordings, so a tiny export keeps its FIT files)."""
    plain = [a for a in recorded if not a.cropped]
    rng.shuffle(plain)
    gps = [a for a in plain if a.has_gps]
    spares = [a for a in reversed(gps) if _fits_tcx(a)] if len(gps) >= 4 else []
    for spare, fmt in zip(spares, ("gpx", "tcx")):
        if not any(files[a.id].format == fmt for a in gps):
            files[spare.id] = _renamed(files[spare.id], fmt, gzipped=False)
    tcx = next((a for a in gps if files[a.id].format == "tcx"), None)
    if tcx is not None:
        files[tcx.id] = _renamed(files[tcx.id], "tcx", gzipped=False, quirk="leading_whitespace")
    fit = [a for a in plain if files[a.id].format == "fit"]
    if fit:
        files[fit[0].id] = _renamed(files[fit[0].id], "fit", gzipped=files[fit[0].id].gzipped, quirk="truncated")
    for activity in fit[1:1 + rng.randint(1, 2)]:
        files[activity.id] = _renamed(files[activity.id], "fit", gzipped=True, quirk="gzip_named_fit")


def _renamed(file: ExportedFile, fmt: Format, *, gzipped: bool, quirk: Quirk | None = None) -> ExportedFile:
    number = int(file.member.split("/", 1)[1].split(".", 1)[0])
    return _planned(file.activity_id, number, fmt, gzipped, quirk)


# ---------------------------------------------------------------- bytes of one file


def device_file_bytes(activity: Activity, file: ExportedFile) -> bytes:
    """The member's bytes: the recording in its format, then gzip and the file's quirk."""
    data = {"fit": fit_file, "gpx": gpx_file, "tcx": tcx_file}[file.format](activity)
    if file.quirk == "truncated":
        data = data[:int(len(data) * TRUNCATE_AT)]
    if file.quirk == "leading_whitespace":
        data = LEADING_WHITESPACE + data
    return gzip.compress(data, compresslevel=6, mtime=0) if file.gzipped else data


def _device_file_job(job: tuple[Activity, ExportedFile]) -> bytes:
    return device_file_bytes(*job)


def _in_order(jobs: list[tuple[Activity, ExportedFile]], workers: int) -> Iterator[bytes]:
    """Each job's bytes in job order; with workers > 1 from a process pool, at most 2 * workers in flight."""
    if workers <= 1:
        yield from map(_device_file_job, jobs)
        return
    # spawn, not fork: the caller may run threads (a simulator's), which a forked child would inherit locked.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        pending: list[Future[bytes]] = []
        for job in jobs:
            pending.append(pool.submit(_device_file_job, job))
            if len(pending) >= 2 * workers:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()


# ---------------------------------------------------------------- the zip


def write_export(path: Path, history: History, *, language: Language = "en", workers: int = 1,
                 athlete_index: int = 0) -> ExportSummary:
    """Write `history`'s account export to `path` (replaced whole when complete) and its sidecar."""
    started = time.perf_counter()
    activities = sorted(history.activities.values(), key=lambda a: a.id)
    files = plan_files(history)
    stamp = _zip_time(activities)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
            _add(archive, "activities.csv", _activities_csv(activities, files, language), stamp)
            for name, data in _other_members(history, athlete_index):
                _add(archive, name, data, stamp)
            jobs = [(history.activities[f.activity_id], f) for f in files]
            for file, data in zip(files, _in_order(jobs, workers)):
                _add(archive, file.member, data, stamp, stored=file.gzipped)
        with open(partial, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(partial, path)
    except OSError as error:  # named after the zip asked for, not its hidden partial name
        raise OSError(error.errno, error.strerror, str(path)) from error
    finally:
        partial.unlink(missing_ok=True)
    summary = ExportSummary(
        path=path, sidecar=path.with_name(path.name + SIDECAR_SUFFIX), athlete_id=history.athlete_id,
        language=language, activities=len(activities), files=files,
        records=sum(_recorded_seconds(history.activities[f.activity_id]) for f in files),
        cropped=sorted(a.id for a in activities if a.cropped), manual=sorted(a.id for a in activities if a.manual))
    summary.sidecar.write_bytes(orjson.dumps(_sidecar(summary), option=orjson.OPT_INDENT_2))
    summary.seconds = time.perf_counter() - started
    return summary


def written_before(path: Path, history: History, *, language: Language = "en") -> bool:
    """Whether `path` holds `history`'s export already, as `write_export` writes it: its activities.csv is
    byte for byte the one this history gets (every id, start, total and file name) and its sidecar is there.
    The device files are made from those same activities alone, so they are the same too; a history of
    another day (the simulator's is anchored to the UTC day), size or seed has another activities.csv."""
    try:
        with zipfile.ZipFile(path) as archive:
            kept = archive.read("activities.csv")
    except (OSError, zipfile.BadZipFile, KeyError):
        return False
    activities = sorted(history.activities.values(), key=lambda a: a.id)
    return kept == _activities_csv(activities, plan_files(history), language) and \
        path.with_name(path.name + SIDECAR_SUFFIX).is_file()


def _activities_csv(activities: list[Activity], files: list[ExportedFile], language: Language) -> bytes:
    member_of = {f.activity_id: f.member for f in files}
    return activities_csv(((a, member_of.get(a.id)) for a in activities), language)


def _add(archive: zipfile.ZipFile, name: str, data: bytes, stamp: tuple[int, int, int, int, int, int], *,
         stored: bool = False) -> None:
    """One member, streamed; gzipped files are stored as they are (deflating them again gains nothing)."""
    info = zipfile.ZipInfo(name, date_time=stamp)
    info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with archive.open(info, "w", force_zip64=len(data) > 2**31) as member:
        member.write(data)


def _zip_time(activities: list[Activity]) -> tuple[int, int, int, int, int, int]:
    """The members' time: the day after the newest activity (a fixed time keeps the zip reproducible)."""
    newest_s = max((a.start_s for a in activities), default=0) + 86400
    moment = datetime.fromtimestamp(max(newest_s, 315532800), tz=UTC)  # zip dates start in 1980
    return moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second


def _recorded_seconds(activity: Activity) -> int:
    lead_s, trail_s = activity.crop_s()
    return activity.elapsed_s + lead_s + trail_s + 1


def _other_members(history: History, athlete_index: int) -> list[tuple[str, bytes]]:
    """What an export holds besides activities: the profile (with the athlete's id), gear, comments, a photo."""
    athlete = athlete_of(history.athlete_id, athlete_index)
    profile = ("Athlete ID,Email Address,First Name,Last Name,Sex,Description,Weight,City,State,Country\n"
               f"{athlete['id']},sim{athlete['id']}@example.com,{athlete['firstname']},{athlete['lastname']},"
               f"{athlete['sex']},,{athlete['weight']},{athlete['city']},{athlete['state']},\"{athlete['country']}\"\n")
    return [
        ("profile.csv", profile.encode()),
        ("bikes.csv", b"Bike Name,Bike Brand,Bike Model,Bike Default Sport Types\nRide gear,Simulated,Road,Ride\n"),
        ("shoes.csv", b"Shoe Name,Shoe Brand,Shoe Model,Shoe Default Sport Types\nRun gear,Simulated,Trainer,Run\n"),
        ("comments.csv", b"Comment Date,Comment,Activity ID\n"),
        ("media/3f2a9c1e-0b7d-4c55-9e1a-6d2f8b4c0a11.jpg", PHOTO),
    ]


def _sidecar(summary: ExportSummary) -> dict[str, object]:
    corrupt = summary.corrupt
    return {
        "athlete_id": summary.athlete_id, "language": summary.language, "activities": summary.activities,
        "records": summary.records,
        "files": {str(f.activity_id): f.member for f in summary.files},
        "manual": summary.manual,
        "cropped": summary.cropped,
        "corrupt": corrupt.member if corrupt else None,
        "gzip_named_fit": [f.member for f in summary.files if f.quirk == "gzip_named_fit"],
        "leading_whitespace": [f.member for f in summary.files if f.quirk == "leading_whitespace"],
    }
