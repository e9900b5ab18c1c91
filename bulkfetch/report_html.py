"""`bulkfetch report`'s text: its one self-contained HTML file and the summary it prints (issue 15).

Writes what bulkfetch.report_data computed and the PNG figures bulkfetch.report_figures drew; nothing
here decides which splits count. Every image is a PNG embedded as a base64 data URI and also written
beside the HTML, so the page loads nothing from anywhere. No matplotlib here: the command imports this
module while its workers import matplotlib.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bulkfetch import pace
from bulkfetch.report_data import AthleteReport, RacePrediction
from bulkfetch.store import atomic_write

# The figures in their order on the page; each one's PNG file is named after the HTML file, the athlete
# and this name (bulkfetch.report_figures draws each by its name).
FIGURE_NAMES = ("pace-grade", "gap", "trend", "heart-speed")

DEFINITIONS = (
    "Splits used: full splits (95–105 % of the unit: 950–1050 m for km) of the chosen sports, from Strava or "
    "derived from export files, that moved and whose grade lies within |i| ≤ 0.45 (Minetti's measured range).",
    "Pace = moving time / distance. Grade i = elevation difference / distance. Flat pace = the athlete's median "
    "pace on splits with |i| < 1 %.",
    "Minetti et al. 2002 (J Appl Physiol 93:1039), energy cost of running: C(i) = 155.4i⁵ − 30.4i⁴ − 43.3i³ + "
    "46.3i² + 19.5i + 3.6 J/kg/m; predicted pace at grade i = flat pace × C(i)/C(0). Flat-equivalent pace = "
    "pace ÷ C(i)/C(0).",
)


@dataclass(frozen=True)
class Units:
    name: str  # "km" or "mi"
    metres: float

    def pace(self, seconds_per_m: float) -> float:
        """Seconds per unit."""
        return seconds_per_m * self.metres

    def clock(self, seconds_per_m: float) -> str:
        return f"{clock_text(self.pace(seconds_per_m))} /{self.name}"


def units_named(name: str) -> Units:
    return Units("mi", pace.MILE_M) if name == "mi" else Units("km", pace.KM_M)


def clock_text(seconds: float) -> str:
    minutes, rest = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{rest:02d}" if hours else f"{minutes}:{rest:02d}"


def write_report(out: Path, reports: Sequence[AthleteReport], units: Units, filters: str,
                 pngs: Sequence[Sequence[bytes]]) -> list[Path]:
    """Write each athlete's figures (`pngs[k]`: reports[k]'s, in FIGURE_NAMES order) as PNG files beside
    `out` (named after it) and the HTML with the same images embedded (each written atomically). Returns
    the PNG paths."""
    sections, written = [], []
    for report, figures in zip(reports, pngs, strict=True):
        for name, png in zip(FIGURE_NAMES, figures, strict=True):
            path = out.with_name(f"{out.stem}-{report.athlete_id}-{name}.png")
            atomic_write(path, png)
            written.append(path)
        sections.append(_section(report, units, [base64.b64encode(png).decode("ascii") for png in figures]))
    page = _PAGE.format(filters=html.escape(filters), definitions="".join(
        f"<li>{html.escape(text)}</li>" for text in DEFINITIONS), sections="".join(sections))
    atomic_write(out, page.encode("utf-8"))
    return written


def _section(report: AthleteReport, units: Units, images: Sequence[str]) -> str:
    flat = report.grade.flat_pace_s
    facts = [
        f"{report.runs:,} runs, {report.splits:,} splits; {report.used:,} used: "
        f"{report.used - report.used_from_files:,} from Strava, {report.used_from_files:,} derived from export files",
        f"flat pace {units.clock(flat)}" if flat is not None else "no flat split (|i| < 1 %): no flat pace",
        f"figure 2: {len(report.gap.points):,} splits with Strava's grade-adjusted speed; figure 4: "
        f"{sum(len(p) for p in report.heart.by_year.values()):,} flat splits with a heart rate",
    ]
    body = "".join(f"<li>{html.escape(text)}</li>" for text in facts)
    figures = "".join(f'<figure><img alt="{name}" src="data:image/png;base64,{data}"></figure>'
                      for name, data in zip(FIGURE_NAMES, images))
    prediction = _prediction_html(report.prediction) if report.prediction else ""
    return f"<section><h2>Athlete {report.athlete_id}</h2><ul>{body}</ul>{prediction}{figures}</section>"


def prediction_lines(prediction: RacePrediction) -> list[str]:
    """The prediction, the runs it was fitted on, the model, its fit, the race level's basis and the
    interval's method, as sentences (HTML and summary), worded from what bulkfetch.pace returned."""
    sources = (f"fitted on {prediction.runs_from_streams:,} runs' streams cut every {pace.SEGMENT_M:.0f} m and "
               f"{prediction.runs_from_splits:,} runs' splits (runs without streams)")
    if prediction.fit is None or prediction.prediction is None:
        return [f"no prediction for {prediction.course}: {prediction.problem}", sources]
    fit, result = prediction.fit, prediction.prediction
    levels = "races" if result.basis == pace.RACES_BASIS else "fastest runs"
    interval = (f"90 % interval {clock_text(result.low_s)} – {clock_text(result.high_s)}"
                if result.low_s is not None and result.high_s is not None else
                "no interval (it needs the levels of at least two races)")
    return [
        f"{prediction.course}: predicted moving time {clock_text(result.moving_s)}, {interval}",
        *(f"caution: {note}; the interval does not cover that" for note in result.beyond),
        sources,
        "model (distance-weighted least squares within each run; a run's level is the one that gives its "
        "moving time): log pace = level + b_up·log C(i)/C(0) + q_up·i² uphill, b_down·log C(i)/C(0) + "
        "q_down·i² downhill + log(1 + c·distance into the run / 10 km)",
        f"fit: b_up {fit.uphill_weight:.2f}, b_down {fit.downhill_weight:.2f} (1 = Minetti's cost), q_up "
        f"{fit.uphill_bend:+.2f}, q_down {fit.downhill_bend:+.2f}, c {fit.fatigue_per_10km:+.3f} (a share of "
        f"the fresh pace per 10 km); {fit.splits:,} rows, residual sd {fit.residual_sd:.3f} in log pace",
        f"race level from {result.basis}: {len(fit.race_deviations)} {levels}"
        + (f", less h {fit.hidden_climb_weight:.2f} × the climb per metre their splits do not show"
           if fit.hidden_climb_weight else ""),
        "interval: a normal prediction interval of log time, ± 1.645 × the spread of the races' levels "
        "about the race level × √(1 + 1/races)" if result.basis == pace.RACES_BASIS else
        "interval: none without races (the fastest training runs are a cut tail: their spread would understate "
        "a race's)",
    ]


def _prediction_html(prediction: RacePrediction) -> str:
    lines = prediction_lines(prediction)
    return "<h3>Race prediction</h3><ul>" + "".join(f"<li>{html.escape(t)}</li>" for t in lines) + "</ul>"


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>bulkfetch report</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:auto}}img{{max-width:100%}}</style></head>
<body><h1>Pace against terrain</h1><p>{filters}</p><h2>Definitions</h2><ul>{definitions}</ul>{sections}
</body></html>
"""


def summary_lines(reports: Sequence[AthleteReport], units: Units, figures: int) -> list[str]:
    """The three lines `bulkfetch report` prints under the HTML file's path."""
    used = sum(r.used for r in reports)
    from_files = sum(r.used_from_files for r in reports)
    flat = (f"athlete {r.athlete_id}: flat pace {units.clock(r.grade.flat_pace_s)}" if r.grade.flat_pace_s is not None
            else f"athlete {r.athlete_id}: no flat split, no flat pace" for r in reports)
    predicted = [f"athlete {r.athlete_id}: {prediction_lines(r.prediction)[0]}" for r in reports if r.prediction]
    return [f"{len(reports)} athlete(s), {figures} figures (embedded, and as PNG files beside it); "
            f"{sum(r.runs for r in reports):,} runs, {used:,} of {sum(r.splits for r in reports):,} splits used "
            f"({used - from_files:,} from Strava, {from_files:,} derived from export files)",
            "; ".join(flat),
            "; ".join(predicted) or "no race predicted (add --predict COURSE, e.g. 42.195km+350m-350m)"]
