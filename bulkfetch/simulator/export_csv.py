"""activities.csv of a simulated account export, in English or German, as Strava writes it (2024-2025).

Pure: rows from the history's records. 94 columns, five of them twice under the same name (the first
Elapsed Time, Distance, Max Heart Rate, Relative Effort and Commute are the display values, the second ones
the stored values: the first Distance in km with the locale's decimal separator, the second in metres);
dates in UTC, "May 9, 2023, 10:09:29 AM" in English, "09.12.2022, 15:24:49" in German; the activity type
as its display name; an empty Filename for manual activities.

The German header is the real one of the 92-column exports (geo-activity-playground#348, #393) with the two
columns later exports inserted before Medien, whose German names are guessed ("Timer-Zeit", "Zyklen
insgesamt"). The German type names are those importers of German exports map (e.g. "Radfahrt",
"Gewichtstraining"); they are not from Strava itself.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal

from bulkfetch.simulator.history import Activity

Language = Literal["en", "de"]
LANGUAGES: tuple[Language, ...] = ("en", "de")

ENGLISH_HEADER = (
    "Activity ID", "Activity Date", "Activity Name", "Activity Type", "Activity Description", "Elapsed Time",
    "Distance", "Max Heart Rate", "Relative Effort", "Commute", "Activity Private Note", "Activity Gear", "Filename",
    "Athlete Weight", "Bike Weight", "Elapsed Time", "Moving Time", "Distance", "Max Speed", "Average Speed",
    "Elevation Gain", "Elevation Loss", "Elevation Low", "Elevation High", "Max Grade", "Average Grade",
    "Average Positive Grade", "Average Negative Grade", "Max Cadence", "Average Cadence", "Max Heart Rate",
    "Average Heart Rate", "Max Watts", "Average Watts", "Calories", "Max Temperature", "Average Temperature",
    "Relative Effort", "Total Work", "Number of Runs", "Uphill Time", "Downhill Time", "Other Time",
    "Perceived Exertion", "Type", "Start Time", "Weighted Average Power", "Power Count", "Prefer Perceived Exertion",
    "Perceived Relative Effort", "Commute", "Total Weight Lifted", "From Upload", "Grade Adjusted Distance",
    "Weather Observation Time", "Weather Condition", "Weather Temperature", "Apparent Temperature", "Dewpoint",
    "Humidity", "Weather Pressure", "Wind Speed", "Wind Gust", "Wind Bearing", "Precipitation Intensity",
    "Sunrise Time", "Sunset Time", "Moon Phase", "Bike", "Gear", "Precipitation Probability", "Precipitation Type",
    "Cloud Cover", "Weather Visibility", "UV Index", "Weather Ozone", "Jump Count", "Total Grit", "Average Flow",
    "Flagged", "Average Elapsed Speed", "Dirt Distance", "Newly Explored Distance", "Newly Explored Dirt Distance",
    "Activity Count", "Total Steps", "Carbon Saved", "Pool Length", "Training Load", "Intensity",
    "Average Grade Adjusted Pace", "Timer Time", "Total Cycles", "Media",
)
GERMAN_HEADER = (
    "Aktivitäts-ID", "Aktivitätsdatum", "Name der Aktivität", "Aktivitätsart", "Aktivitätsbeschreibung",
    "Verstrichene Zeit", "Distanz", "Max. Herzfrequenz", "Relative Leistung", "Pendeln",
    "Hinweis zur Privatsphäre für Aktivitäten", "Aktivitätsausrüstung", "Dateiname", "Sportlergewicht",
    "Fahrradgewicht", "Verstrichene Zeit", "Bewegungszeit", "Distanz", "Höchstgeschw.",
    "Durchschnittliche Geschwindigkeit", "Höhenzunahme", "Höhenunterschied", "Min. Höhe", "Max. Höhe",
    "Max. Steigung", "Durchschnittliche Steigung", "Durchschnittliche positive Steigung",
    "Durchschnittliche negative Steigung", "Max. Tritt-/Schrittfrequenz", "Durchschnittliche Trittfrequenz",
    "Max. Herzfrequenz", "Durchschnittliche Herzfrequenz", "Max. Watt", "Durchschnittliche Watt", "Kalorien",
    "Max. Temperatur", "Durchschnittliche Temperatur", "Relative Leistung", "Gesamtarbeit", "Anzahl Läufe",
    "Bergaufzeit", "Bergabzeit", "Andere Zeit", "Gefühlte Anstrengung", "Art", "Startzeit",
    "Gewichtete durchschnittliche Leistung", "Leistungszahl", "Gefühlte Anstrengung verwenden",
    "Gefühlte relative Leistung", "Pendeln", "Insgesamt gestemmtes Gewicht", "Von Upload",
    "Auf Steigung angepasste Distanz", "Wetterbeobachtungszeit", "Wetterlage", "Wetter: Temperatur",
    "Scheinbare Temperatur", "Taupunkt", "Luftfeuchtigkeit", "Wetter: Druck", "Windgeschwindigkeit", "Windböe",
    "Windrichtung", "Niederschlagsintensität", "Sonnenaufgangszeit", "Sonnenuntergangszeit", "Mondphase",
    "Fahrrad", "Ausrüstung", "Niederschlagswahrscheinlichkeit", "Niederschlagsart", "Wolkendecke",
    "Wetter: Sichtbarkeit", "UV-Index", "Wetter: Ozon", "Sprunganzahl", "Schwierigkeit insgesamt",
    "Durchschnittlicher Flow", "Markiert", "Durchschnittsgeschwindigkeit im Aufzeichnungszeitraum",
    "Auf Schotter zurückgelegte Distanz", "Neu getestete Distanz", "Neu getestete Schotterdistanz",
    "Aktivitätsanzahl", "Schritte insgesamt", "Eingesparte CO₂-Emissionen", "Pool-Länge", "Trainingsbelastung",
    "Intensität", "Durchschnittliches auf Steigung angepasstes Tempo", "Timer-Zeit", "Zyklen insgesamt", "Medien",
)
HEADERS: dict[Language, tuple[str, ...]] = {"en": ENGLISH_HEADER, "de": GERMAN_HEADER}
TYPE_NAMES: dict[Language, dict[str, str]] = {
    "en": {"Run": "Run", "TrailRun": "Trail Run", "Ride": "Ride", "VirtualRide": "Virtual Ride", "Swim": "Swim",
           "Walk": "Walk", "Hike": "Hike", "WeightTraining": "Weight Training"},
    "de": {"Run": "Lauf", "TrailRun": "Traillauf", "Ride": "Radfahrt", "VirtualRide": "Virtuelle Radfahrt",
           "Swim": "Schwimmen", "Walk": "Spaziergang", "Hike": "Wandern", "WeightTraining": "Gewichtstraining"},
}
ATHLETE_WEIGHT_KG = 70.0


def activities_csv(rows: Iterable[tuple[Activity, str | None]], language: Language) -> bytes:
    """The whole activities.csv: the header, then one row per (activity, its Filename or None)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADERS[language])
    for activity, filename in rows:
        writer.writerow(activity_row(activity, filename, language))
    return out.getvalue().encode()


def activity_row(activity: Activity, filename: str | None, language: Language) -> list[str]:
    """One row in the header's order; columns a simulated activity has no value for stay empty."""
    values = _values(activity, filename, language)
    seen: dict[str, int] = {}
    row = []
    for name in ENGLISH_HEADER:
        seen[name] = seen.get(name, 0) + 1
        row.append(values.get((name, seen[name]), ""))
    return row


def _values(activity: Activity, filename: str | None, language: Language) -> dict[tuple[str, int], str]:
    """Column values keyed by (English column name, 1 for its first occurrence or 2 for the second)."""
    record = activity.record
    distance_m = activity.distance_m
    km = f"{distance_m / 1000:.2f}"
    values: dict[tuple[str, int], str] = {
        ("Activity ID", 1): str(activity.id),
        ("Activity Date", 1): display_date(activity.start_s, language),
        ("Activity Name", 1): record["name"],
        ("Activity Type", 1): TYPE_NAMES[language].get(activity.sport.sport_type, activity.sport.sport_type),
        ("Activity Description", 1): record.get("description") or "",
        ("Elapsed Time", 1): str(activity.elapsed_s),
        ("Distance", 1): km.replace(".", ",") if language == "de" else km,
        ("Commute", 1): _flag(record.get("commute")),
        ("Activity Gear", 1): (record.get("gear") or {}).get("name", ""),
        ("Filename", 1): filename or "",
        ("Athlete Weight", 1): str(ATHLETE_WEIGHT_KG),
        ("Elapsed Time", 2): str(float(activity.elapsed_s)),
        ("Moving Time", 1): str(float(activity.moving_s)),
        ("Distance", 2): str(float(distance_m)),
        ("Max Speed", 1): str(float(record.get("max_speed") or 0.0)),
        ("Average Speed", 1): str(float(record.get("average_speed") or 0.0)),
        ("Elevation Gain", 1): str(float(record.get("total_elevation_gain") or 0.0)),
        ("Calories", 1): str(float(record.get("calories") or 0.0)),
        ("Commute", 2): _flag(record.get("commute")),
        ("From Upload", 1): "0.0" if activity.manual else "1.0",
        ("Average Elapsed Speed", 1): str(round(distance_m / activity.elapsed_s, 3)) if activity.elapsed_s else "",
        ("Activity Count", 1): "1.0",
    }
    if "elev_low" in record:
        values[("Elevation Low", 1)] = str(record["elev_low"])
        values[("Elevation High", 1)] = str(record["elev_high"])
    if "max_heartrate" in record:
        values[("Max Heart Rate", 1)] = str(round(record["max_heartrate"]))
        values[("Max Heart Rate", 2)] = str(float(record["max_heartrate"]))
        values[("Average Heart Rate", 1)] = str(float(record["average_heartrate"]))
    if "suffer_score" in record:
        values[("Relative Effort", 1)] = str(round(record["suffer_score"]))
        values[("Relative Effort", 2)] = str(float(record["suffer_score"]))
    if "average_cadence" in record:
        values[("Average Cadence", 1)] = str(float(record["average_cadence"]))
    if "average_watts" in record:
        values[("Average Watts", 1)] = str(float(record["average_watts"]))
        values[("Max Watts", 1)] = str(float(record["max_watts"]))
        values[("Weighted Average Power", 1)] = str(float(record["weighted_average_watts"]))
    if "average_temp" in record:
        values[("Average Temperature", 1)] = str(float(record["average_temp"]))
    return values


def _flag(value: object) -> str:
    return "true" if value else "false"


MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def display_date(epoch_s: int, language: Language) -> str:
    """The start in UTC as the export writes it: 'May 9, 2023, 10:09:29 AM' or '09.12.2022, 15:24:49'."""
    moment = datetime.fromtimestamp(epoch_s, tz=UTC)
    if language == "de":
        return moment.strftime("%d.%m.%Y, %H:%M:%S")
    hour = moment.hour % 12 or 12
    return (f"{MONTHS[moment.month - 1]} {moment.day}, {moment.year}, {hour}:{moment.minute:02d}:{moment.second:02d} "
            f"{'AM' if moment.hour < 12 else 'PM'}")
