"""Small Strava account exports for tests: real activities.csv headers, real device files.

The headers are copied from real exports as people posted them: English, 94 columns (2024-2025; also
geo-activity-playground's importer); German, 92 columns (geo-activity-playground#112); English, 10 columns
(2019) and the lowercase one before it (hugovk/strava-tools#1). Rows are written by column name, so a
test says which value goes under which name and the helper puts it wherever that header has the column
(the second of a duplicated name with `Name#2`).
"""

from __future__ import annotations

import csv
import gzip
import io
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

FILES = Path(__file__).resolve().parent / "fixtures_files"

ENGLISH_94 = (
    "Activity ID,Activity Date,Activity Name,Activity Type,Activity Description,Elapsed Time,Distance,"
    "Max Heart Rate,Relative Effort,Commute,Activity Private Note,Activity Gear,Filename,Athlete Weight,"
    "Bike Weight,Elapsed Time,Moving Time,Distance,Max Speed,Average Speed,Elevation Gain,Elevation Loss,"
    "Elevation Low,Elevation High,Max Grade,Average Grade,Average Positive Grade,Average Negative Grade,"
    "Max Cadence,Average Cadence,Max Heart Rate,Average Heart Rate,Max Watts,Average Watts,Calories,"
    "Max Temperature,Average Temperature,Relative Effort,Total Work,Number of Runs,Uphill Time,Downhill Time,"
    "Other Time,Perceived Exertion,Type,Start Time,Weighted Average Power,Power Count,Prefer Perceived Exertion,"
    "Perceived Relative Effort,Commute,Total Weight Lifted,From Upload,Grade Adjusted Distance,"
    "Weather Observation Time,Weather Condition,Weather Temperature,Apparent Temperature,Dewpoint,Humidity,"
    "Weather Pressure,Wind Speed,Wind Gust,Wind Bearing,Precipitation Intensity,Sunrise Time,Sunset Time,"
    "Moon Phase,Bike,Gear,Precipitation Probability,Precipitation Type,Cloud Cover,Weather Visibility,UV Index,"
    "Weather Ozone,Jump Count,Total Grit,Average Flow,Flagged,Average Elapsed Speed,Dirt Distance,"
    "Newly Explored Distance,Newly Explored Dirt Distance,Activity Count,Total Steps,Carbon Saved,Pool Length,"
    "Training Load,Intensity,Average Grade Adjusted Pace,Timer Time,Total Cycles,Media"
).split(",")
# Later exports append columns before Media (the 99- and 101-column headers of 2025-2026).
ENGLISH_101 = [*ENGLISH_94[:-1], "Recovery", "With Pet", "Competition", "Long Run", "For a Cause", "With Kid",
               "Downhill Distance", "Media"]
GERMAN_92 = (
    "Aktivitäts-ID,Aktivitätsdatum,Name der Aktivität,Aktivitätsart,Aktivitätsbeschreibung,Verstrichene Zeit,"
    "Distanz,Max. Herzfrequenz,Relative Leistung,Pendeln,Hinweis zur Privatsphäre für Aktivitäten,"
    "Aktivitätsausrüstung,Dateiname,Sportlergewicht,Fahrradgewicht,Verstrichene Zeit,Bewegungszeit,Distanz,"
    "Höchstgeschw.,Durchschnittliche Geschwindigkeit,Höhenzunahme,Höhenunterschied,Min. Höhe,Max. Höhe,"
    "Max. Steigung,Durchschnittliche Steigung,Durchschnittliche positive Steigung,"
    "Durchschnittliche negative Steigung,Max. Tritt-/Schrittfrequenz,Durchschnittliche Trittfrequenz,"
    "Max. Herzfrequenz,Durchschnittliche Herzfrequenz,Max. Watt,Durchschnittliche Watt,Kalorien,"
    "Max. Temperatur,Durchschnittliche Temperatur,Relative Leistung,Gesamtarbeit,Anzahl Läufe,Bergaufzeit,"
    "Bergabzeit,Andere Zeit,Gefühlte Anstrengung,Art,Startzeit,Gewichtete durchschnittliche Leistung,"
    "Leistungszahl,Gefühlte Anstrengung verwenden,Gefühlte relative Leistung,Pendeln,"
    "Insgesamt gestemmtes Gewicht,Von Upload,Auf Steigung angepasste Distanz,Wetterbeobachtungszeit,Wetterlage,"
    "Wetter: Temperatur,Scheinbare Temperatur,Taupunkt,Luftfeuchtigkeit,Wetter: Druck,Windgeschwindigkeit,"
    "Windböe,Windrichtung,Niederschlagsintensität,Sonnenaufgangszeit,Sonnenuntergangszeit,Mondphase,Fahrrad,"
    "Ausrüstung,Niederschlagswahrscheinlichkeit,Niederschlagsart,Wolkendecke,Wetter: Sichtbarkeit,UV-Index,"
    "Wetter: Ozon,Sprunganzahl,Schwierigkeit insgesamt,Durchschnittlicher Flow,Markiert,"
    "Durchschnittsgeschwindigkeit im Aufzeichnungszeitraum,Auf Schotter zurückgelegte Distanz,"
    "Neu getestete Distanz,Neu getestete Schotterdistanz,Aktivitätsanzahl,Schritte insgesamt,"
    "Eingesparte CO₂-Emissionen,Pool-Länge,Trainingsbelastung,Intensität,"
    "Durchschnittliches auf Steigung angepasstes Tempo,Medien"
).split(",")
ENGLISH_2019 = ("Activity ID,Activity Date,Activity Name,Activity Type,Activity Description,Elapsed Time,Distance,"
                "Commute,Activity Gear,Filename").split(",")
LOWERCASE_2018 = "id,date,name,type,description,elapsed_time,distance,commute,gear,filename".split(",")
PROFILE_HEADER = "Athlete ID,Email Address,First Name,Last Name,Sex,Description,Weight,City,State,Country"


def csv_text(header: Sequence[str], rows: Sequence[Mapping[str, str]]) -> bytes:
    """An activities.csv: each row's values go under their names ("Distance#2": the second Distance)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        seen: dict[str, int] = {}
        cells = []
        for name in header:
            seen[name] = seen.get(name, 0) + 1
            key = name if seen[name] == 1 else f"{name}#{seen[name]}"
            cells.append(row.get(key, ""))
        writer.writerow(cells)
    return out.getvalue().encode()


def english_row(activity_id: int, file: str | None, *, date: str = "May 9, 2023, 10:09:29 AM",
                sport: str = "Run", distance_m: float = 10000.0, elapsed_s: int = 3600,
                name: str = "Morning Run") -> dict[str, str]:
    return {"Activity ID": str(activity_id), "Activity Date": date, "Activity Name": name, "Activity Type": sport,
            "Elapsed Time": str(elapsed_s), "Elapsed Time#2": f"{elapsed_s}.0", "Moving Time": f"{elapsed_s - 60}.0",
            "Distance": f"{distance_m / 1000:.2f}", "Distance#2": f"{distance_m:.1f}", "Elevation Gain": "42.0",
            "Filename": file or ""}


@dataclass(frozen=True)
class ExportFile:
    name: str      # as the CSV names it, "activities/..."
    data: bytes


def fixture(name: str, *, gzipped: bool = False) -> bytes:
    data = (FILES / name).read_bytes()
    return gzip.compress(data, mtime=0) if gzipped else data


def write_zip(path: Path, csv_data: bytes, files: Sequence[ExportFile], *, profile_id: int | None = None,
              extra: Mapping[str, bytes] | None = None) -> Path:
    """An export zip as Strava makes it: activities.csv, profile.csv, activities/, plus `extra` members
    (media/, other CSVs)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("activities.csv", csv_data)
        if profile_id is not None:
            archive.writestr("profile.csv", f"{PROFILE_HEADER}\n{profile_id},a@example.com,Ann,Example,F,,60,,,\n")
        for file in files:
            archive.writestr(file.name, file.data)
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return path


def write_folder(path: Path, csv_data: bytes, files: Sequence[ExportFile], *, profile_id: int | None = None) -> Path:
    """The same export, unpacked."""
    (path / "activities").mkdir(parents=True)
    (path / "activities.csv").write_bytes(csv_data)
    if profile_id is not None:
        (path / "profile.csv").write_text(f"{PROFILE_HEADER}\n{profile_id},a@example.com,Ann,Example,F,,60,,,\n")
    for file in files:
        (path / file.name).write_bytes(file.data)
    return path
