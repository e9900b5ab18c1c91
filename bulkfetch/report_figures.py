"""`bulkfetch report`'s figures: matplotlib's Agg renderer draws each into PNG bytes (issue 15).

Draws what bulkfetch.report_data computed; nothing here decides which splits count. Importing this
module imports matplotlib (the `report` extra), which takes longer than the rest of the report: the
command's worker processes import it (bulkfetch.report_drawing), never the command itself. Figures are
drawn without pyplot (no display, no global state).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable

import numpy as np  # matplotlib's own dependency: installed with the report extra
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from bulkfetch.report_data import AthleteReport
from bulkfetch.report_html import FIGURE_NAMES, Units, clock_text

FIGURE_SIZE_IN = (7.5, 4.5)
DPI = 100
# Fixed margins and legend places: matplotlib's automatic layouts and loc="best" cost more than the drawing
# itself (a layout draws the figure once more; "best" tests every point), and the report must stay quick.
MARGINS = {"left": 0.1, "right": 0.97, "bottom": 0.12, "top": 0.92}
MARGINS_WITH_RIGHT_AXIS = {**MARGINS, "right": 0.88}
PNG_OPTIONS = {"compress_level": 1}  # Pillow's; its default (6) takes longer for files barely smaller

def _array(values: Iterable[float]) -> np.ndarray:
    """Scatter's points as an array: from lists matplotlib builds a masked array element by element (a
    third of the report's drawing time for a few thousand splits)."""
    return np.fromiter(values, dtype=float)


_PACE_TICKS = FuncFormatter(lambda value, _: clock_text(value))


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
    axes.set(xlabel=f"actual pace (min/{units.name})", ylabel=f"Strava's grade-adjusted pace (min/{units.name})")
    if not points:  # no scale to show: paces of 0:00 and 0:01 on an empty square would mean nothing
        axes.text(0.5, 0.5, "Strava gave no grade-adjusted speed for these splits", ha="center",
                  transform=axes.transAxes)
        axes.set(xticks=[], yticks=[])
        return figure
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


_DRAWN: dict[str, Callable[[AthleteReport, Units], Figure]] = dict(zip(
    FIGURE_NAMES, (_grade_figure, _gap_figure, _trend_figure, _heart_figure), strict=True))


def draw_png(name: str, report: AthleteReport, units: Units) -> bytes:
    """The figure named `name` (one of report_html.FIGURE_NAMES) of `report`, as PNG bytes."""
    return _png(_DRAWN[name](report, units))


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, pil_kwargs=PNG_OPTIONS)
    return buffer.getvalue()


