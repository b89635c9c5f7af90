"""The Sweep tab's plots: the best value so far per trial, a parallel-coordinates plot of the trials, and
Optuna's parameter importances. Drawn with pyqtgraph like the rest of the app; fed whole lists of
`core.sweep.TrialRow` (a sweep has tens of trials, so each refresh redraws everything)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QVBoxLayout, QWidget

from perceiver_gui.ui.plotting import BLUE, GREEN, ORANGE, FollowsPaletteAndScale, style_plot

__all__ = ["SweepPlots"]

GREY = (150, 150, 150)


class SweepPlots(FollowsPaletteAndScale, QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setMinimumSize(360, 280)
        self.best_plot = self.graphics.addPlot(row=0, col=0, title="Best so far")
        self.importance_plot = self.graphics.addPlot(row=0, col=1, title="Importance")
        self.parallel_plot = self.graphics.addPlot(row=1, col=0, colspan=2, title="Trials")
        self.graphics.ci.layout.setRowStretchFactor(0, 2)
        self.graphics.ci.layout.setRowStretchFactor(1, 3)
        self.best_plot.setLabel("bottom", "trial")
        self.best_plot.showGrid(x=True, y=True, alpha=0.15)
        self.best_plot.getAxis("left").enableAutoSIPrefix(False)
        self.values = pg.ScatterPlotItem(size=7, pen=None, brush=pg.mkBrush(*BLUE, 160))
        self.pruned = pg.ScatterPlotItem(size=8, pen=pg.mkPen(GREY, width=1.5), brush=None, symbol="x")
        self.best_curve = self.best_plot.plot(pen=pg.mkPen(GREEN, width=2))
        self.best_plot.addItem(self.values)
        self.best_plot.addItem(self.pruned)
        self.importance_plot.hideAxis("bottom")
        self.importance_plot.setMouseEnabled(x=False, y=False)
        self.parallel_plot.setMouseEnabled(x=False, y=False)
        self.parallel_plot.hideAxis("left")
        self.parallel_plot.setYRange(-0.08, 1.08, padding=0)
        self.parallel_plot.getViewBox().sigResized.connect(self._fit_end_labels)
        self._parallel_items: list[Any] = []
        self._end_labels: list[pg.TextItem] = []  # each axis's low and high end, outside its line
        # Each line's width at 1×, scaled by the screen's pixel ratio (scale_pens): the best-so-far curve, then
        # the parallel-coordinates plot's axes and trials, made anew at each redraw.
        self._widths: list[tuple[Any, float]] = [(self.best_curve, 2.0)]
        self._importance_items: list[Any] = []
        self.best_points: tuple[np.ndarray, np.ndarray] = (np.zeros(0), np.zeros(0))  # what the curve shows
        self.lines = 0  # trials drawn in the parallel-coordinates plot
        self.importance: dict[str, float] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics)
        self._apply_palette()

    def show_trials(self, rows: list, search: tuple, metric: str, direction: str, importance: dict[str, float],
                    note: str = "") -> None:
        """Redraw from the trials (core.sweep.TrialRow), the search space and the importances (or, without
        them, a `note` saying why)."""
        self.best_plot.setLabel("left", metric)
        self._draw_best(rows, direction)
        self._draw_parallel(rows, search, metric, direction)
        self._draw_importance(importance, note)

    def _draw_best(self, rows: list, direction: str) -> None:
        done = [r for r in rows if r.state == "complete" and math.isfinite(r.value)]
        pruned = [r for r in rows if r.state == "pruned" and math.isfinite(r.value)]
        self.values.setData([r.number for r in done], [r.value for r in done])
        self.pruned.setData([r.number for r in pruned], [r.value for r in pruned])
        xs = np.array([r.number for r in done], dtype=float)
        values = np.array([r.value for r in done], dtype=float)
        best = (np.maximum if direction == "maximize" else np.minimum).accumulate(values) if len(values) else values
        self.best_points = (xs, best)
        self.best_curve.setData(xs, best)
        # Trials are whole numbers: with few of them, tick every trial rather than at 0.5 steps.
        few = len(rows) <= 10
        self.best_plot.getAxis("bottom").setTickSpacing(*((1, 1) if few else ()))

    def _draw_parallel(self, rows: list, search: tuple, metric: str, direction: str) -> None:
        plot = self.parallel_plot
        for item in self._parallel_items:
            plot.removeItem(item)
        self._parallel_items = []
        del self._widths[1:]
        self._end_labels = []
        axes = [key.partition(".")[2] for key, _ in search] + [metric]  # "lr": the table names the section
        plot.getAxis("bottom").setTicks([list(enumerate(axes))])
        plot.setXRange(-0.3, len(axes) - 0.7, padding=0)
        shown = [r for r in rows if r.state in ("complete", "pruned") and math.isfinite(r.value)]
        values = [r.value for r in shown]
        lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
        ends = [_ends(space) for _key, space in search] + [(f"{lo:.3g}", f"{hi:.3g}")]
        for i, (low_text, high_text) in enumerate(ends):
            # The axis runs from 0 to 1 only; its ends are written below and above it, where no line crosses them.
            self._add(pg.PlotDataItem([i, i], [0, 1], pen=pg.mkPen(GREY, width=1)), width=1.0)
            for text, y, anchor in ((low_text, 0.0, (0.5, 0.0)), (high_text, 1.0, (0.5, 1.0))):
                label = pg.TextItem(text, color=self._foreground, anchor=anchor)
                label.setPos(i, y)
                self._add(label)
                self._end_labels.append(label)
        self._fit_end_labels()
        for r in sorted(shown, key=lambda r: r.value * (1 if direction == "maximize" else -1)):  # best on top
            params = dict(r.params)
            ys = [_position(space, params.get(key)) for key, space in search]
            ys.append(0.5 if hi == lo else (r.value - lo) / (hi - lo))
            goodness = ys[-1] if direction == "maximize" else 1 - ys[-1]
            colour = GREY if r.state == "pruned" else _blend(ORANGE, BLUE, goodness)
            width = 2.0 if r.is_best else 1.2
            self._add(pg.PlotDataItem(list(range(len(ys))), ys, pen=pg.mkPen(colour, width=width)), width=width)
        self.lines = len(shown)
        self._apply_pens()

    def _fit_end_labels(self) -> None:
        """Leave room above and below the axes for their end labels, whatever the plot's height in pixels."""
        height = self.parallel_plot.getViewBox().height()
        text = max((label.boundingRect().height() for label in self._end_labels), default=0.0)
        room = text / max(height - 2 * text, 1.0)  # a label's height in units of the axes' 0..1
        self.parallel_plot.setYRange(-room, 1 + room, padding=0)

    def _draw_importance(self, importance: dict[str, float], note: str) -> None:
        plot = self.importance_plot
        for item in self._importance_items:
            plot.removeItem(item)
        self._importance_items = []
        self.importance = dict(importance)
        names = list(importance)[::-1]  # most important on top
        plot.getAxis("left").setTicks([[(i, n.partition(".")[2]) for i, n in enumerate(names)]])
        if not names:
            text = pg.TextItem(note, color=self._foreground, anchor=(0.5, 0.5))
            text.setPos(0.5, 0.5)
            plot.addItem(text)
            self._importance_items.append(text)
            plot.setRange(xRange=(0, 1), yRange=(0, 1))
            return
        bars = pg.BarGraphItem(x0=0, y=list(range(len(names))), height=0.6,
                               width=[importance[n] for n in names], brush=pg.mkBrush(*BLUE))
        plot.addItem(bars)
        self._importance_items.append(bars)
        plot.setRange(xRange=(0, 1), yRange=(-0.6, len(names) - 0.4))

    def _add(self, item: Any, width: float | None = None) -> None:
        self.parallel_plot.addItem(item)
        self._parallel_items.append(item)
        if width is not None:
            self._widths.append((item, width))

    def _apply_palette(self) -> None:
        palette = self.palette()
        background = palette.color(QPalette.ColorRole.Base)
        self._foreground = palette.color(QPalette.ColorRole.Text)
        self.graphics.setBackground(background)
        for plot in (self.best_plot, self.importance_plot, self.parallel_plot):
            style_plot(plot, self._foreground, background=background)


def _ends(space: Any) -> tuple[str, str]:
    if hasattr(space, "values"):
        return str(space.values[0]), str(space.values[-1])
    return f"{space.low:.3g}", f"{space.high:.3g}"


def _position(space: Any, value: Any) -> float:
    """Where a value sits on its axis, 0..1: by index for choices, on the range (log scale if log)."""
    if value is None:
        return math.nan
    if hasattr(space, "values"):
        n = len(space.values)
        return 0.5 if n == 1 else space.values.index(value) / (n - 1)
    low, high, v = float(space.low), float(space.high), float(value)
    if space.log:
        low, high, v = math.log(low), math.log(high), math.log(v)
    return (v - low) / (high - low)


def _blend(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    t = min(1.0, max(0.0, t))
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]
