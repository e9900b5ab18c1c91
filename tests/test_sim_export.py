"""The simulator's one motion per activity, and the account export written from it: what the API serves
over HTTP and what the export's files hold describe the same activities."""

from __future__ import annotations

import ast
import csv
import gzip
import io
import math
import re
import subprocess
import sys
import time
import urllib.request
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from garmin_fit_sdk import Decoder, Stream

from bulkfetch.simulator import Simulator, SimulatorSettings, SimulatorThread
from bulkfetch.simulator.export import SIDECAR_SUFFIX, ExportSummary, write_export, written_before
from bulkfetch.simulator.export_csv import ENGLISH_HEADER, GERMAN_HEADER
from bulkfetch.simulator.history import History, available_streams
from bulkfetch.simulator.route import EARTH_RADIUS_M
from tests.conftest import REPO, cli_env

pytestmark = pytest.mark.timeout(120)
SETTINGS = SimulatorSettings(activities=40, seed=11, duration_s=900, rate_limits=False)
GPX = "{http://www.topografix.com/GPX/1/1}"


@dataclass
class Exported:
    sim: Simulator
    summary: ExportSummary
    sidecar: dict[str, Any]
    archive: zipfile.ZipFile
    rows: list[list[str]]

    def api(self, path: str, **params: str) -> Any:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        request = urllib.request.Request(f"{self.sim.api_url}{path}?{query}",
                                         headers={"Authorization": f"Bearer {self.sim.issue_access_token()}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return orjson.loads(response.read())

    def member(self, activity_id: int) -> bytes:
        return self.archive.read(self.sidecar["files"][str(activity_id)])


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exported]:
    """One simulator, and the English export of its athlete (written from the history it serves)."""
    with SimulatorThread(SETTINGS) as sim:
        path = tmp_path_factory.mktemp("export") / "export.zip"
        summary = write_export(path, sim.history, language="en")
        with zipfile.ZipFile(path) as archive:
            rows = list(csv.reader(io.TextIOWrapper(archive.open("activities.csv"), encoding="utf-8")))
            yield Exported(sim, summary, orjson.loads(summary.sidecar.read_bytes()), archive, rows)


def fit_messages(data: bytes) -> tuple[dict[str, list[dict[str, Any]]], list[Exception]]:
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return Decoder(Stream.from_byte_array(data)).read()


def xml_track(data: bytes) -> tuple[float, float]:
    """(seconds, metres) a GPX or TCX track spans: from its first to its last point's time, along its points."""
    root = ET.fromstring(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data.lstrip())
    points = [(float(p.get("lat")), float(p.get("lon")), p.find(f"{GPX}time").text) for p in root.iter(f"{GPX}trkpt")]
    if not points:  # TCX
        ns = "{http://www.garmin.com/xmlschemas/TrainingCenterDatabase/v2}"
        points = [(float(p.find(f"{ns}Position/{ns}LatitudeDegrees").text),
                   float(p.find(f"{ns}Position/{ns}LongitudeDegrees").text), p.find(f"{ns}Time").text)
                  for p in root.iter(f"{ns}Trackpoint") if p.find(f"{ns}Position") is not None]
    seconds = [time.mktime(time.strptime(p[2], "%Y-%m-%dT%H:%M:%SZ")) for p in (points[0], points[-1])]
    return seconds[1] - seconds[0], sum(haversine_m(a[:2], b[:2]) for a, b in zip(points, points[1:]))


def haversine_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lng1, lat2, lng2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lng2 - lng1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(h))


# ---------------------------------------------------------------- one motion behind the API


def test_the_served_summary_is_the_motions(exported: Exported) -> None:
    history = exported.sim.history
    listed = {a["id"]: a for a in exported.api("/athlete/activities", per_page="200")}
    recorded = [a for a in history.activities.values() if not a.manual]
    assert len(recorded) >= 30
    for activity in recorded:
        summary, motion = listed[activity.id], activity.motion()
        assert (summary["distance"], summary["elapsed_time"]) == (motion.distance_m, motion.elapsed_s)
        assert summary["moving_time"] == motion.elapsed_s - motion.paused_between(0, motion.elapsed_s)
        assert summary["max_speed"] == round(motion.top_speed, 1)
        if motion.route is not None:
            assert summary["total_elevation_gain"] == round(motion.route.hills.gain(0, motion.distance_m), 1)
            assert summary["start_latlng"] == [round(x, 6) for x in motion.route.point(0.0)]
            assert summary["end_latlng"] == [round(x, 6) for x in motion.route.point(motion.distance_m)]
    assert any(s["moving_time"] < s["elapsed_time"] for s in listed.values() if not s["manual"])  # pauses exist


def test_api_splits_and_laps_add_up_to_the_summary(exported: Exported) -> None:
    runs = [a for a in exported.sim.history.activities.values() if a.sport.runs and not a.manual]
    assert runs
    for activity in runs:
        detail = exported.api(f"/activities/{activity.id}")
        for key in ("splits_metric", "splits_standard", "laps"):
            parts = detail[key]
            assert math.isclose(sum(p["distance"] for p in parts), detail["distance"], abs_tol=0.1 * len(parts)), key
            assert sum(p["elapsed_time"] for p in parts) == detail["elapsed_time"], key
            assert sum(p["moving_time"] for p in parts) == detail["moving_time"], key
        assert all(abs(s["distance"] - 1000) < 10 for s in detail["splits_metric"][:-1])


def test_api_streams_come_from_the_motion(exported: Exported) -> None:
    activity = next(a for a in exported.sim.history.activities.values() if a.has_gps and a.motion().pauses)
    motion = activity.motion()
    streams = exported.api(f"/activities/{activity.id}/streams", keys="time,distance,latlng,moving,velocity_smooth",
                           key_by_type="true")
    times = streams["time"]["data"]
    assert times == list(range(motion.elapsed_s + 1))  # one point a second up to an hour
    assert streams["distance"]["data"][-1] == motion.distance_m
    moving = streams["moving"]["data"]
    assert sum(moving) == motion.moving_s  # the seconds in which the distance grew
    still = [t for t, m in zip(times, moving) if t and not m]
    assert still and all(streams["velocity_smooth"]["data"][t] == 0 for t in still)
    assert all(streams["distance"]["data"][t] == streams["distance"]["data"][t - 1] for t in still)


def test_the_simulator_never_imports_the_derivation_or_the_decoder() -> None:
    """Its splits and laps must be an independent check of what bulkfetch derives from files."""
    banned = {"bulkfetch.derive", "bulkfetch.activity_files"}
    for source in (REPO / "bulkfetch" / "simulator").glob("*.py"):
        tree = ast.parse(source.read_text(encoding="utf-8"))
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module} | {
            alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert not {name for name in imported if name in banned or name.startswith(tuple(b + "." for b in banned))}, \
            source.name
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, bulkfetch.simulator, bulkfetch.simulator.export; "
                               "print(sorted(m for m in sys.modules if m.startswith('bulkfetch.')))"],
        env=cli_env(), capture_output=True, text=True, timeout=60, check=True).stdout
    assert "bulkfetch.simulator.export" in loaded and not banned & set(re.findall(r"'([\w.]+)'", loaded))


# ---------------------------------------------------------------- the export


def test_activities_csv_parses_and_names_every_file(exported: Exported) -> None:
    header, rows = exported.rows[0], exported.rows[1:]
    assert tuple(header) == ENGLISH_HEADER and len(header) == 94
    assert all(len(row) == 94 for row in rows) and len(rows) == 40
    by_id = {int(row[0]): row for row in rows}
    history = exported.sim.history
    assert set(by_id) == set(history.activities)
    members = {name for name in exported.archive.namelist() if name.startswith("activities/")}
    named = {row[12] for row in rows if row[12]}
    assert named == members  # every Filename is a member, every member is named
    for activity_id, row in by_id.items():
        activity = history.activities[activity_id]
        assert (row[12] == "") == activity.manual
        assert float(row[17]) == activity.distance_m and row[6] == f"{activity.distance_m / 1000:.2f}"
        assert int(row[5]) == activity.elapsed_s and float(row[16]) == activity.moving_s
        assert re.fullmatch(r"[A-Z][a-z]{2} \d{1,2}, \d{4}, \d{1,2}:\d\d:\d\d [AP]M", row[1])
    renamed = [row for row in rows if row[12] and row[0] not in row[12]]
    assert renamed  # some files are numbered after the upload, not the activity
    assert {"profile.csv", "bikes.csv"} <= set(exported.archive.namelist())
    assert any(name.startswith("media/") for name in exported.archive.namelist())
    profile = list(csv.reader(io.TextIOWrapper(exported.archive.open("profile.csv"), encoding="utf-8")))
    assert profile[0][0] == "Athlete ID" and int(profile[1][0]) == exported.sim.athlete_ids[0]


def test_fit_files_decode_and_match_the_api_streams_second_by_second(exported: Exported) -> None:
    sidecar = exported.sidecar
    checked = 0
    for activity in exported.sim.history.activities.values():
        member = sidecar["files"].get(str(activity.id))
        if member is None or ".fit" not in member or member == sidecar["corrupt"] or activity.cropped:
            continue
        messages, errors = fit_messages(exported.member(activity.id))
        assert not errors, member
        records = messages["record_mesgs"]
        assert len(records) == activity.elapsed_s + 1, member
        session = messages["session_mesgs"][0]
        assert session["total_elapsed_time"] == activity.elapsed_s
        assert session["total_moving_time"] == activity.moving_s
        if not activity.has_gps:
            continue
        streams = exported.api(f"/activities/{activity.id}/streams", keys="time,latlng,distance", key_by_type="true")
        for t, point, distance in zip(streams["time"]["data"], streams["latlng"]["data"],
                                      streams["distance"]["data"]):
            record = records[t]
            assert abs(record["distance"] - distance) <= 0.06
            if point is None:
                assert "position_lat" not in record  # the device had no fix at that second either
                continue
            lat, lng = (record[k] * 180 / 2**31 for k in ("position_lat", "position_long"))
            assert abs(lat - point[0]) < 2e-6 and abs(lng - point[1]) < 2e-6
        checked += 1
    assert checked >= 5


def test_gpx_tracks_measure_the_activity_distance(exported: Exported) -> None:
    measured = 0
    for activity_id, member in exported.sidecar["files"].items():
        if ".gpx" not in member:
            continue
        activity = exported.sim.history.activities[int(activity_id)]
        data = exported.member(activity.id)
        length_m = xml_track(data)[1]
        motion = activity.motion()
        expected_m = motion.recorded_distance(motion.last_s, motion.first_s)
        assert abs(length_m - expected_m) <= 0.003 * expected_m, (member, length_m, expected_m)
        measured += 1
    assert measured >= 1


def test_the_quirks_are_there(exported: Exported) -> None:
    sidecar = exported.sidecar
    corrupt = exported.archive.read(sidecar["corrupt"])
    messages, errors = fit_messages(corrupt)
    activity_id = next(int(i) for i, m in sidecar["files"].items() if m == sidecar["corrupt"])
    assert errors and 0 < len(messages.get("record_mesgs", [])) < exported.sim.history.activities[activity_id].elapsed_s
    assert sidecar["gzip_named_fit"]
    for member in sidecar["gzip_named_fit"]:
        assert member.endswith(".fit") and exported.archive.read(member)[:2] == b"\x1f\x8b"
    (padded,) = sidecar["leading_whitespace"]
    data = exported.archive.read(padded)
    assert data[:1].isspace() and data.lstrip().startswith(b"<?xml")
    with pytest.raises(ET.ParseError):
        ET.fromstring(data)  # strict parsers trip over it, as they do over real ones
    assert ET.fromstring(data.lstrip()).tag.endswith("TrainingCenterDatabase")
    for member in sidecar["files"].values():
        if member.endswith(".tcx"):
            root = ET.fromstring(exported.archive.read(member).lstrip())
            assert root.iter("{http://www.garmin.com/xmlschemas/TrainingCenterDatabase/v2}DistanceMeters")


def test_cropped_activities_files_hold_the_longer_original(exported: Exported) -> None:
    assert exported.sidecar["cropped"] == exported.summary.cropped and exported.summary.cropped
    for activity_id in exported.summary.cropped:
        served = exported.api(f"/activities/{activity_id}")
        member = exported.sidecar["files"][str(activity_id)]
        data = exported.archive.read(member)
        if ".fit" in member:
            session = fit_messages(data)[0]["session_mesgs"][0]
            file_elapsed_s, file_distance_m = session["total_elapsed_time"], session["total_distance"]
        else:
            file_elapsed_s, file_distance_m = xml_track(data)
        assert file_elapsed_s > 1.05 * served["elapsed_time"] and file_distance_m > 1.03 * served["distance"]


def test_worker_processes_write_the_same_zip(tmp_path: Path) -> None:
    history = History.build(seed=4, count=6, athlete_id=7, now_s=1.8e9, duration_s=300)
    alone = write_export(tmp_path / "one.zip", history, language="de", workers=1)
    pooled = write_export(tmp_path / "two.zip", history, language="de", workers=2)
    assert (tmp_path / "one.zip").read_bytes() == (tmp_path / "two.zip").read_bytes()
    assert alone.sidecar.read_bytes() == pooled.sidecar.read_bytes()
    assert not list(tmp_path.glob(".*partial"))


def test_written_before_knows_the_zip_of_this_history_only(tmp_path: Path) -> None:
    """`demo --export` writes the zip again only when its history changed: another day, size or seed."""
    history = History.build(seed=4, count=6, athlete_id=7, now_s=1.8e9, duration_s=300)
    path = tmp_path / "export.zip"
    assert not written_before(path, history)
    write_export(path, history)
    assert written_before(path, history) and not written_before(path, history, language="de")
    next_day = History.build(seed=4, count=6, athlete_id=7, now_s=1.8e9 + 86400, duration_s=300)
    bigger = History.build(seed=4, count=7, athlete_id=7, now_s=1.8e9, duration_s=300)
    assert not written_before(path, next_day) and not written_before(path, bigger)
    path.with_name(path.name + SIDECAR_SUFFIX).unlink()
    assert not written_before(path, history)
    path.write_bytes(b"PK not a zip")
    assert not written_before(path, history)



# ---------------------------------------------------------------- the command


def test_simulate_writes_the_export_of_the_history_it_serves(tmp_path: Path) -> None:
    path = tmp_path / "export_de.zip"
    process = subprocess.Popen([sys.executable, "-m", "bulkfetch", "simulate", "--port", "0", "--activities", "8",
                                "--seed", "3", "--export", str(path), "--export-language", "de"],
                               env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               stdin=subprocess.DEVNULL)
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not any(line.startswith("curl") for line in lines):
            line = process.stdout.readline() if process.stdout else ""
            if not line:
                break
            lines.append(line.strip())
        text = "\n".join(lines)
        assert lines[0].startswith(f"wrote athlete 26462176's export to {path}: 8 activities")
        base_url = re.search(r"http://127\.0\.0\.1:\d+", text).group(0)
        token = re.search(r"access token: (\S+)", text).group(1)
        request = urllib.request.Request(f"{base_url}/api/v3/athlete/activities?per_page=50",
                                         headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            served = {a["id"]: a for a in orjson.loads(response.read())}
        with zipfile.ZipFile(path) as archive:
            rows = list(csv.reader(io.TextIOWrapper(archive.open("activities.csv"), encoding="utf-8")))
        assert tuple(rows[0]) == GERMAN_HEADER and len(rows[0]) == 94 and all(len(r) == 94 for r in rows)
        assert {int(r[0]) for r in rows[1:]} == set(served)
        for row in rows[1:]:
            activity = served[int(row[0])]
            assert float(row[17]) == activity["distance"] and row[6] == f"{activity['distance'] / 1000:.2f}".replace(
                ".", ",")
            assert re.fullmatch(r"\d\d\.\d\d\.\d{4}, \d\d:\d\d:\d\d", row[1])
            assert time.strftime("%Y-%m-%dT%H:%M:%SZ", time.strptime(row[1], "%d.%m.%Y, %H:%M:%S")) == \
                activity["start_date"]
        assert (tmp_path / ("export_de.zip" + SIDECAR_SUFFIX)).exists()
    finally:
        process.terminate()
        process.communicate(timeout=10)


@pytest.mark.parametrize("where", ["missing/export.zip", "."])
def test_simulate_refuses_an_export_path_it_cannot_write(tmp_path: Path, where: str) -> None:
    result = subprocess.run([sys.executable, "-m", "bulkfetch", "simulate", "--port", "0", "--export",
                             str(tmp_path / where)], env=cli_env(), capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "--export" in result.stderr
    assert "Traceback" not in result.stderr and list(tmp_path.iterdir()) == []


def test_every_stream_type_the_api_serves_is_in_the_device_file(exported: Exported) -> None:
    """The API's streams are made from the uploaded file: what the file cannot hold (TCX has no temperature),
    Strava does not serve either, so a file covers every stream type its activity has."""
    by_format: dict[str, int] = {}
    for activity_id, member in exported.sidecar["files"].items():
        served = set(available_streams(exported.sim.history.activities[int(activity_id)]))
        fmt = member.split(".")[1]
        by_format[fmt] = by_format.get(fmt, 0) + 1
        if fmt == "tcx":
            assert "temp" not in served, activity_id
    assert by_format.get("tcx") and by_format.get("gpx")
