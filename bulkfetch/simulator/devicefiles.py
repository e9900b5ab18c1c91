"""The device files of simulated recordings, as the account export holds them: FIT (written with Garmin's
FIT SDK Encoder, the way a watch writes it: file_id, timer events, one record a second, a lap message at
each lap's end, session, activity), GPX 1.1 (time, position, elevation, Garmin's TrackPointExtension for
heart rate and cadence) and TCX (laps holding their trackpoints, with DistanceMeters).

Pure: bytes from an activity's motion. The file is the whole recording, so a cropped activity's file is
longer than what Strava's API describes. The device never auto-pauses: through a stop it keeps logging a
record a second at the same place (its timer time is the elapsed time; the FIT lap and session messages
carry the moving time in total_moving_time).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from xml.sax.saxutils import escape, quoteattr

from garmin_fit_sdk import Encoder, Profile

from bulkfetch.simulator.history import Activity, device_laps
from bulkfetch.simulator.motion import Motion, Sample, Span

FIT_EPOCH_S = 631_065_600  # 1989-12-31T00:00:00Z, where FIT timestamps count from
SEMICIRCLES_PER_DEGREE = 2**31 / 180
MESG = Profile["mesg_num"]
# Strava sport_type -> the FIT sport and sub_sport a device writes for it.
FIT_SPORTS = {
    "Run": ("running", "generic"), "TrailRun": ("running", "trail"), "Ride": ("cycling", "road"),
    "VirtualRide": ("cycling", "virtual_activity"), "Swim": ("swimming", "lap_swimming"),
    "Walk": ("walking", "generic"), "Hike": ("hiking", "generic"), "WeightTraining": ("training", "strength_training"),
}
GPX_TYPES = {"Run": "running", "TrailRun": "trail_running", "Ride": "cycling", "VirtualRide": "virtual_ride",
             "Swim": "swimming", "Walk": "walking", "Hike": "hiking", "WeightTraining": "strength_training"}
TCX_SPORTS = {"Run": "Running", "TrailRun": "Running", "Ride": "Biking", "VirtualRide": "Biking"}  # else Other


def iso_time(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _laps(activity: Activity, motion: Motion) -> list[Span]:
    return device_laps(activity, motion, motion.first_s, motion.last_s)


def _calories(activity: Activity, span: Span) -> int:
    """The activity's calories, shared out by time."""
    return round(float(activity.record.get("calories") or 0) * span.elapsed_s / max(activity.elapsed_s, 1))


# ---------------------------------------------------------------- FIT


def fit_file(activity: Activity) -> bytes:
    """The recording as a FIT activity file."""
    motion = activity.motion()
    laps = _laps(activity, motion)
    sport, sub_sport = FIT_SPORTS.get(activity.sport.sport_type, ("generic", "generic"))
    stamp = FitClock(activity.start_s)
    first, last = motion.first_s, motion.last_s
    encoder = Encoder()
    encoder.write_mesg({"mesg_num": MESG["FILE_ID"], "type": "activity", "manufacturer": "garmin", "product": 3113,
                        "serial_number": activity.id % 4_000_000_000 + 1, "time_created": stamp(first)})
    encoder.write_mesg({"mesg_num": MESG["EVENT"], "timestamp": stamp(first), "event": "timer",
                        "event_type": "start", "event_group": 0, "timer_trigger": "manual"})
    lap_ends = {lap.end_s: index for index, lap in enumerate(laps)}
    for sample in motion.samples():
        encoder.write_mesg(_fit_record(sample, stamp(sample.t), motion.sensors.temp))
        if sample.t in lap_ends:  # a device closes each lap right after its last record
            index = lap_ends[sample.t]
            encoder.write_mesg({"mesg_num": MESG["LAP"], "message_index": index, "event": "lap", "event_type": "stop",
                                "lap_trigger": "session_end" if index == len(laps) - 1 else "distance",
                                "sport": sport, **_fit_totals(activity, motion, laps[index], stamp)})
    encoder.write_mesg({"mesg_num": MESG["EVENT"], "timestamp": stamp(last), "event": "timer",
                        "event_type": "stop_all", "event_group": 0, "timer_trigger": "manual"})
    whole = motion.span(first, last, first)
    encoder.write_mesg({"mesg_num": MESG["SESSION"], "message_index": 0, "event": "session", "event_type": "stop",
                        "trigger": "activity_end", "sport": sport, "sub_sport": sub_sport, "first_lap_index": 0,
                        "num_laps": len(laps), **_fit_totals(activity, motion, whole, stamp)})
    encoder.write_mesg({"mesg_num": MESG["ACTIVITY"], "timestamp": stamp(last), "num_sessions": 1,
                        "total_timer_time": float(whole.elapsed_s), "type": "manual", "event": "activity",
                        "event_type": "stop", "local_timestamp": stamp(last) + int(activity.record["utc_offset"])})
    return encoder.close()


@dataclass(frozen=True)
class FitClock:
    """FIT timestamps (seconds since FIT_EPOCH_S) of an activity's seconds."""

    start_s: int  # epoch seconds of Strava's start

    def __call__(self, t: int) -> int:
        return self.start_s + t - FIT_EPOCH_S


def _semicircles(position: tuple[float, float]) -> tuple[int, int]:
    return round(position[0] * SEMICIRCLES_PER_DEGREE), round(position[1] * SEMICIRCLES_PER_DEGREE)


def _fit_record(sample: Sample, timestamp: int, temp: int | None) -> dict[str, object]:
    record: dict[str, object] = {"mesg_num": MESG["RECORD"], "timestamp": timestamp}
    if sample.position is not None:
        record["position_lat"], record["position_long"] = _semicircles(sample.position)
    optional = {"distance": sample.distance_m, "altitude": sample.altitude_m, "speed": sample.speed,
                "heart_rate": sample.heartrate, "cadence": sample.cadence, "power": sample.watts, "temperature": temp}
    record.update({name: value for name, value in optional.items() if value is not None})
    return record


def _fit_totals(activity: Activity, motion: Motion, span: Span, stamp: FitClock) -> dict[str, object]:
    """The fields lap and session messages share: times, positions, distance, climb, speeds, heart rate."""
    record = activity.record
    totals: dict[str, object] = {
        "timestamp": stamp(span.end_s), "start_time": stamp(span.start_s),
        "total_elapsed_time": float(span.elapsed_s), "total_timer_time": float(span.elapsed_s),
        "total_moving_time": float(span.moving_s),
        "total_calories": _calories(activity, span),
    }
    start, end = motion.position_at(span.start_s), motion.position_at(span.end_s)
    if start is not None:
        totals["start_position_lat"], totals["start_position_long"] = _semicircles(start)
    if end is not None:
        totals["end_position_lat"], totals["end_position_long"] = _semicircles(end)
    if activity.sport.has_distance:
        totals.update(total_distance=span.distance_m, max_speed=round(span.max_speed, 3),
                      avg_speed=round(span.distance_m / span.moving_s, 3) if span.moving_s else 0.0)
    if span.gain_m is not None:
        totals["total_ascent"] = round(span.gain_m)
        totals["total_descent"] = round(span.gain_m - (span.elevation_difference_m or 0.0))
    if span.average_heartrate is not None:
        totals.update(avg_heart_rate=round(span.average_heartrate), max_heart_rate=round(record["max_heartrate"]))
    if "average_cadence" in record:
        totals["avg_cadence"] = round(record["average_cadence"])
    if "average_watts" in record:
        totals["avg_power"] = round(record["average_watts"])
    return totals


# ---------------------------------------------------------------- GPX


def gpx_file(activity: Activity) -> bytes:
    """The recording as GPX 1.1: a track point a second (none while the device had no fix)."""
    motion = activity.motion()
    temp = motion.sensors.temp
    creator = activity.record.get("device_name") or "bulkfetch simulator"
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             f'<gpx creator={quoteattr(creator)} version="1.1" xmlns="http://www.topografix.com/GPX/1/1" '
             'xmlns:gpxtpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v1">',
             f" <metadata><time>{iso_time(activity.start_s + motion.first_s)}</time></metadata>",
             f" <trk><name>{escape(activity.record['name'])}</name>"
             f"<type>{GPX_TYPES.get(activity.sport.sport_type, 'other')}</type><trkseg>"]
    for sample in motion.samples():
        if sample.position is None:
            continue
        extension = "".join(f"<gpxtpx:{tag}>{value}</gpxtpx:{tag}>" for tag, value in
                            (("atemp", temp), ("hr", sample.heartrate), ("cad", sample.cadence)) if value is not None)
        power = f"<power>{sample.watts}</power>" if sample.watts is not None else ""
        extensions = (f"<extensions>{power}<gpxtpx:TrackPointExtension>{extension}</gpxtpx:TrackPointExtension>"
                      "</extensions>") if extension or power else ""
        lines.append(f'  <trkpt lat="{sample.position[0]:.7f}" lon="{sample.position[1]:.7f}">'
                     f"<ele>{sample.altitude_m}</ele><time>{iso_time(activity.start_s + sample.t)}</time>"
                     f"{extensions}</trkpt>")
    lines.append(" </trkseg></trk>")
    lines.append("</gpx>")
    return ("\n".join(lines) + "\n").encode()


# ---------------------------------------------------------------- TCX


def tcx_file(activity: Activity) -> bytes:
    """The recording as TCX: its laps, each holding its trackpoints (DistanceMeters on every one)."""
    motion = activity.motion()
    laps = _laps(activity, motion)
    record = activity.record
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<TrainingCenterDatabase xmlns="http://www.garmin.com/xmlschemas/TrainingCenterDatabase/v2" '
             'xmlns:ns3="http://www.garmin.com/xmlschemas/ActivityExtension/v2">',
             " <Activities>",
             f'  <Activity Sport="{TCX_SPORTS.get(activity.sport.sport_type, "Other")}">',
             f"   <Id>{iso_time(activity.start_s + motion.first_s)}</Id>"]
    samples = motion.samples()
    sample = next(samples)
    for index, lap in enumerate(laps):
        lines.append(f'   <Lap StartTime="{iso_time(activity.start_s + lap.start_s)}">')
        lines.append(f"    <TotalTimeSeconds>{float(lap.elapsed_s)}</TotalTimeSeconds>"
                     f"<DistanceMeters>{lap.distance_m}</DistanceMeters>"
                     f"<MaximumSpeed>{round(lap.max_speed, 3)}</MaximumSpeed>"
                     f"<Calories>{_calories(activity, lap)}</Calories>")
        if lap.average_heartrate is not None:
            lines.append(f"    <AverageHeartRateBpm><Value>{round(lap.average_heartrate)}</Value></AverageHeartRateBpm>"
                         f"<MaximumHeartRateBpm><Value>{round(record['max_heartrate'])}</Value></MaximumHeartRateBpm>")
        trigger = "Distance" if index < len(laps) - 1 else "Manual"
        lines.append(f"    <Intensity>Active</Intensity><TriggerMethod>{trigger}</TriggerMethod>")
        lines.append("    <Track>")
        # A lap's trackpoints: those up to its end second (the first lap also holds the very first one).
        while sample is not None and sample.t <= lap.end_s:
            lines.append(_trackpoint(sample, activity.start_s + sample.t))
            sample = next(samples, None)
        lines.append("    </Track>")
        lines.append("   </Lap>")
    lines.extend(["  </Activity>", " </Activities>", "</TrainingCenterDatabase>"])
    return ("\n".join(lines) + "\n").encode()


def _trackpoint(sample: Sample, epoch_s: int) -> str:
    parts = [f"<Time>{iso_time(epoch_s)}</Time>"]
    if sample.position is not None:
        parts.append(f"<Position><LatitudeDegrees>{sample.position[0]:.7f}</LatitudeDegrees>"
                     f"<LongitudeDegrees>{sample.position[1]:.7f}</LongitudeDegrees></Position>")
    if sample.altitude_m is not None:
        parts.append(f"<AltitudeMeters>{sample.altitude_m}</AltitudeMeters>")
    if sample.distance_m is not None:
        parts.append(f"<DistanceMeters>{sample.distance_m}</DistanceMeters>")
    if sample.heartrate is not None:
        parts.append(f"<HeartRateBpm><Value>{sample.heartrate}</Value></HeartRateBpm>")
    if sample.cadence is not None:
        parts.append(f"<Cadence>{sample.cadence}</Cadence>")
    tpx = "".join(f"<ns3:{tag}>{value}</ns3:{tag}>" for tag, value in (("Speed", sample.speed), ("Watts", sample.watts))
                  if value is not None)
    if tpx:
        parts.append(f"<Extensions><ns3:TPX>{tpx}</ns3:TPX></Extensions>")
    return "     <Trackpoint>" + "".join(parts) + "</Trackpoint>"
