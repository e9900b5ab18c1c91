"""`bulkfetch report`'s figures (matplotlib, Agg) and its one self-contained HTML file (issue 15).

Draws what bulkfetch.report_data computed; nothing here decides which splits count. Every image is a PNG
embedded as a base64 data URI and also written beside the HTML, so the page loads nothing from anywhere.
Importing this module needs matplotlib (the `report` extra): bulkfetch.cli imports it only for `report`.
Figures are drawn by matplotlib's Agg renderer into PNG bytes, without pyplot (no display, no global state).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np  # matplotlib's own dependency: installed with the report extra
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from bulkfetch import pace
from bulkfetch.report_data import AthleteReport, RacePrediction
from bulkfetch.store import atomic_write

FIGURE_SIZE_IN = (7.5, 4.5)
DPI = 100
# Fixed margins and legend places: matplotlib's automatic layouts and loc="best" cost more than the drawing
# itself (a layout draws the figure once more; "best" tests every point), and the report must stay quick.
MARGINS = {"left": 0.1, "right": 0.97, "bottom": 0.12, "top": 0.92}
MARGINS_WITH_RIGHT_AXIS = {**MARGINS, "right": 0.88}
PNG_OPTIONS = {"compress_level": 1}  # Pillow's; its default (6) takes longer for files barely smaller

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
        return f"{_minutes(self.pace(seconds_per_m))} /{self.name}"


def units_named(name: str) -> Units:
    return Units("mi", pace.MILE_M) if name == "mi" else Units("km", pace.KM_M)


def _minutes(seconds: float) -> str:
    minutes, rest = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{rest:02d}" if hours else f"{minutes}:{rest:02d}"


def _array(values: Iterable[float]) -> np.ndarray:
    """Scatter's points as an array: from lists matplotlib builds a masked array element by element (a
    third of the report's drawing time for a few thousand splits)."""
    return np.fromiter(values, dtype=float)


_PACE_TICKS = FuncFormatter(lambda value, _: _minutes(value))


def _pace_locator() -> MaxNLocator:
    """Ticks a whole number of 10, 20, 30 or 60 seconds apart (mm:ss labels, not 3:20, 4:10)."""
    return MaxNLocator(nbins=8, steps=[1, 2, 3, 6, 10])


def _figure(title: str, margins: dict[str, float] = MARGINS) -> tuple[Figure, Axes]:
    # A Figure of its own, not pyplot's: no global figure registry to close, no GUI backend chosen; savefig
    # draws PNG with Agg. The title at a fixed height (y given): placed automatically, matplotlib measures
    # every tick label of the axes and its twins first (a seventh of the profiled drawing), and none of
    # these figures has anything above its axes.
    figure = Figure(figsize=FIGURE_SIZE_IN)
    axes = figure.add_subplot()
    figure.subplots_adjust(**margins)
    axes.set_title(title, y=1.0)
    return figure, axes


def _grade_figure(report: AthleteReport, units: Units) -> Figure:
    data = report.grade
    figure, axes = _figure("Pace against grade")
    axes.scatter(_array(g * 100 for g, _ in data.points), _array(units.pace(p) for _, p in data.points), s=6, alpha=0.3,
                 color="tab:gray", label=f"splits ({len(data.points):,})")
    if data.bins:
        middles = [b.grade * 100 for b in data.bins]
        axes.fill_between(middles, [units.pace(b.low_pace_s) for b in data.bins],
                          [units.pace(b.high_pace_s) for b in data.bins], color="tab:blue", alpha=0.25,
                          label="quartiles per 2 % bin")
        axes.plot(middles, [units.pace(b.median_pace_s) for b in data.bins], color="tab:blue", label="median")
    if data.minetti:
        axes.plot([g * 100 for g, _ in data.minetti], [units.pace(p) for _, p in data.minetti], color="tab:red",
                  label=f"Minetti from flat pace {units.clock(data.flat_pace_s or 0)}")
    axes.set(xlabel="grade (%)", ylabel=f"pace (min/{units.name})")
    return _finish(figure, axes)


def _gap_figure(report: AthleteReport, units: Units) -> Figure:
    points = report.gap.points
    figure, axes = _figure(f"Strava's grade-adjusted pace against actual pace ({len(points):,} splits)",
                           MARGINS_WITH_RIGHT_AXIS)
    if points:
        steepest = max(abs(i) for _, _, i in points) * 100 or 1.0  # zero grade white, the scale symmetric
        shown = axes.scatter(_array(units.pace(a) for a, _, _ in points), _array(units.pace(g) for _, g, _ in points),
                             c=_array(i * 100 for _, _, i in points), cmap="coolwarm", s=8, vmin=-steepest,
                             vmax=steepest)
        figure.colorbar(shown, ax=axes, label="grade (%)", fraction=0.05, pad=0.02)
        paces = [units.pace(v) for a, g, _ in points for v in (a, g)]
        axes.plot([min(paces), max(paces)], [min(paces), max(paces)], color="black", lw=0.8, label="GAP = pace")
        axes.yaxis.set_major_formatter(_PACE_TICKS)
        axes.yaxis.set_major_locator(_pace_locator())
    else:
        axes.text(0.5, 0.5, "Strava gave no grade-adjusted speed for these splits", ha="center",
                  transform=axes.transAxes)
    axes.set(xlabel=f"actual pace (min/{units.name})", ylabel=f"Strava's grade-adjusted pace (min/{units.name})")
    return _finish(figure, axes, pace_axis="x")


def _trend_figure(report: AthleteReport, units: Units) -> Figure:
    data = report.trend
    figure, axes = _figure("Flat-equivalent pace by month, distance by week", MARGINS_WITH_RIGHT_AXIS)
    distance = axes.twinx()
    # One line per week (a single collection): bars are an artist each, and slow by the hundred.
    distance.vlines([w for w, _ in data.weeks], 0, [m / units.metres for _, m in data.weeks], color="tab:green",
                    alpha=0.4, linewidth=2)
    distance.set_ylim(bottom=0)
    distance.set_ylabel(f"weekly distance ({units.name})")
    axes.set_zorder(distance.get_zorder() + 1)
    axes.patch.set_visible(False)
    axes.plot([m for m, _, _ in data.months], [units.pace(p) for _, p, _ in data.months], marker="o",
              color="tab:blue", label="monthly median flat-equivalent pace")
    axes.set(xlabel="month", ylabel=f"flat-equivalent pace (min/{units.name})")
    return _finish(figure, axes)


def _heart_figure(report: AthleteReport, units: Units) -> Figure:
    figure, axes = _figure("Heart rate against speed on flat splits, by year")
    per_hour = 3600 / units.metres
    for year, points in report.heart.by_year.items():
        axes.scatter(_array(s * per_hour for s, _ in points), _array(h for _, h in points), s=8, alpha=0.5,
                     label=f"{year} ({len(points):,})")
    if not report.heart.by_year:
        axes.text(0.5, 0.5, "no flat split with a heart rate", ha="center", transform=axes.transAxes)
    axes.set(xlabel=f"speed ({units.name}/h)", ylabel="heart rate (bpm)")
    if report.heart.by_year:
        axes.legend(fontsize="small", loc="upper left")
    return figure


def _finish(figure: Figure, axes: Axes, pace_axis: str = "y") -> Figure:
    axis = axes.yaxis if pace_axis == "y" else axes.xaxis
    axis.set_major_formatter(_PACE_TICKS)
    axis.set_major_locator(_pace_locator())
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize="small", loc="upper left")
    return figure


FIGURES: tuple[tuple[str, Callable[[AthleteReport, Units], Figure]], ...] = (
    ("pace-grade", _grade_figure), ("gap", _gap_figure), ("trend", _trend_figure), ("heart-speed", _heart_figure))


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, pil_kwargs=PNG_OPTIONS)
    return buffer.getvalue()


def write_report(out: Path, reports: Sequence[AthleteReport], units: Units, filters: str) -> list[Path]:
    """Draw every athlete's figures, write them as PNG files beside `out` (named after it) and the HTML
    with the same images embedded (each written atomically). Returns the PNG paths."""
    sections, written = [], []
    for report in reports:
        images = []
        for name, draw in FIGURES:
            png = _png(draw(report, units))
            path = out.with_name(f"{out.stem}-{report.athlete_id}-{name}.png")
            atomic_write(path, png)
            written.append(path)
            images.append(base64.b64encode(png).decode("ascii"))
        sections.append(_section(report, units, images))
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
                      for (name, _), data in zip(FIGURES, images))
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
    interval = (f"90 % interval {_minutes(result.low_s)} – {_minutes(result.high_s)}"
                if result.low_s is not None and result.high_s is not None else
                "no interval (it needs the levels of at least two races)")
    return [
        f"{prediction.course}: predicted moving time {_minutes(result.moving_s)}, {interval}",
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
