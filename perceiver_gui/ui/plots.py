"""Live training curves: loss per step (raw and smoothed), test loss and accuracy per epoch, learning rate.

Curves are created once; new points go into growing numpy buffers and are handed to `setData` at
most ~20 times a second (`request_redraw`). Long series are clipped to the visible steps and reduced to
their minimum and maximum per pixel column before pyqtgraph sees them (`Series.envelope`), so a
redraw of a million-step run costs a few milliseconds and looks the same as drawing every point.
Non-finite values (a diverging loss) are counted and left out.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QRectF, Qt, QTimer
from PySide6.QtGui import QColor, QPalette, QPen
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from perceiver_gui.core.events import EpochEnd, Event, Finished, RunStarted, Step
from perceiver_gui.core.runs import Metrics, StepRecord, TestRecord
from perceiver_gui.ui.widgets import guard_wheel, mix

__all__ = ["PlotsPanel", "Series", "ema", "style_plot"]

pg.setConfigOptions(antialias=True)  # smooth curves; must be set before any plot is made

BLUE = (31, 119, 180)
ORANGE = (255, 127, 14)
GREEN = (44, 160, 44)
PURPLE = (148, 103, 189)


REDRAW_MS = 50  # at most ~20 redraws a second, however fast the points come
FULL_DETAIL = 10_000  # series up to this many visible points are drawn point by point


class Series:
    """x/y float64 buffers that double their capacity as points are appended. x never decreases."""

    def __init__(self, capacity: int = 1024):
        self._x = np.empty(capacity)
        self._y = np.empty(capacity)
        self.n = 0
        self.version = 0  # changes with every edit, so a redraw can skip series that did not change

    def append(self, x: float, y: float) -> None:
        if self.n == len(self._x):
            self._x = np.resize(self._x, 2 * self.n)
            self._y = np.resize(self._y, 2 * self.n)
        self._x[self.n] = x
        self._y[self.n] = y
        self.n += 1
        self.version += 1

    def set(self, x: np.ndarray, y: np.ndarray) -> None:
        n = len(x)
        if n > len(self._x):
            self._x = np.empty(2 * n)
            self._y = np.empty(2 * n)
        self._x[:n] = x
        self._y[:n] = y
        self.n = n
        self.version += 1

    def clear(self) -> None:
        self.n = 0
        self.version += 1

    def envelope(self, x0: float, x1: float, columns: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """The points to draw for the x range [x0, x1] on `columns` pixel columns.

        Up to FULL_DETAIL visible points (or two per column) come back as they are. More are cut into
        one bucket per column, each drawn as its minimum and maximum (what pyqtgraph calls peak
        downsampling), which on screen is indistinguishable from every point. One point beyond each
        edge is kept so the line runs to the border, and the series' first and last points too, so
        auto-range still sees the whole run after a zoom. The flag says whether buckets were made.
        """
        n = self.n
        if n == 0:
            return self.x, self.y, False
        x, y = self.x, self.y
        lo = max(0, int(np.searchsorted(x, x0, side="left")) - 1)
        hi = min(n, int(np.searchsorted(x, x1, side="right")) + 1)
        count = hi - lo
        reduced = count > max(FULL_DETAIL, 2 * columns)
        if not reduced:
            xs, ys = x[lo:hi], y[lo:hi]
        else:
            per = -(-count // max(1, columns))  # points per bucket, rounded up
            whole = (count // per) * per
            yb = y[lo : lo + whole].reshape(-1, per)
            xs = np.repeat(x[lo : lo + whole : per], 2)
            ys = np.empty(len(xs))
            ys[0::2] = yb.min(axis=1)
            ys[1::2] = yb.max(axis=1)
            if whole < count:  # the last, partial bucket as it is
                xs = np.concatenate((xs, x[lo + whole : hi]))
                ys = np.concatenate((ys, y[lo + whole : hi]))
        if lo > 0:
            xs, ys = np.concatenate(([x[0]], xs)), np.concatenate(([y[0]], ys))
        if hi < n:
            xs, ys = np.concatenate((xs, [x[n - 1]])), np.concatenate((ys, [y[n - 1]]))
        return xs, ys, reduced

    @property
    def x(self) -> np.ndarray:
        return self._x[: self.n]

    @property
    def y(self) -> np.ndarray:
        return self._y[: self.n]


def ema(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's debiased exponential moving average (weight 0 = raw, 0.99 = very smooth).

    Vectorised (a million points in under 0.1 s instead of ~2 s, so the smoothing slider stays live):
    the values are cut into blocks so long that weight**block < 1e-20, within a block the recurrence
    acc[k] = weight*acc[k-1] + (1-weight)*v[k] is a scaled cumulative sum, and each block starts from
    the previous block's last value — anything older is below float64 resolution.
    """
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n == 0 or weight <= 0:
        return values.copy()
    block = max(1, min(n, int(46.0 / -math.log(weight))))  # weight**-block <= 1e20: no overflow
    blocks = -(-n // block)
    padded = np.zeros(blocks * block)
    padded[:n] = values
    k = np.arange(block)
    grow = weight ** -k.astype(np.float64)
    shrink = weight**k
    v = padded.reshape(blocks, block)
    acc = (1.0 - weight) * shrink * np.cumsum(v * grow, axis=1)
    carry = np.concatenate(([0.0], acc[:-1, -1]))  # each block's start value, from the block before
    acc += carry[:, None] * (weight * shrink)[None, :]
    acc = acc.reshape(-1)[:n]
    return acc / (1.0 - weight ** np.arange(1, n + 1, dtype=np.float64))


def _pen(rgb: tuple[int, int, int], width: float = 1.5, alpha: int = 255) -> Any:
    return pg.mkPen(QColor(*rgb, alpha), width=width)


class _Axis(pg.AxisItem):
    """An axis whose grid lines are opaque, pre-mixed with the plot background, and lie under the curves.

    Qt's raster engine blends a translucent line about eight times slower than it draws an opaque one:
    pyqtgraph's translucent grid alone took ~30 ms a frame for the six axes, the whole budget of a
    30 frames/s redraw. On the plain background the mixed colour looks exactly the same.
    """

    def __init__(self, orientation: str, **kwargs: Any):
        super().__init__(orientation, **kwargs)
        self.background = QColor("white")
        self._pens: dict[tuple[int, int], QPen] = {}

    def set_background(self, color: QColor) -> None:
        self.background = QColor(color)
        self._pens.clear()
        self.picture = None
        self.update()

    def generateDrawSpecs(self, p):  # noqa: N802 (pyqtgraph override)
        specs = super().generateDrawSpecs(p)
        if specs is None:
            return None
        axis, ticks, texts = specs
        return axis, [(self._opaque(pen), p1, p2) for pen, p1, p2 in ticks], texts

    def _opaque(self, pen: QPen) -> QPen:
        color = pen.color()
        if color.alpha() == 255:
            return pen
        key = (color.rgba(), pen.width())
        if key not in self._pens:
            mixed = QPen(pen)
            mixed.setColor(mix(color, self.background, color.alphaF()))
            self._pens[key] = mixed
        return self._pens[key]




def _round_up(value: float) -> float:
    """The next of 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 × 10^k above `value` (itself when not positive):
    the curve fills at least three quarters of the width, and the axis changes ten times per decade.

    Strictly above: a curve that reaches the bound would add pyqtgraph's pixel padding and move the range.
    """
    if not value > 0:
        return value
    decade = 10.0 ** math.floor(math.log10(value))
    return next((m * decade for m in (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0) if m * decade > value), 10 * decade)


def _widen(lo: float, hi: float) -> tuple[float, float]:
    """[lo, hi] widened to the multiples of a round step (about a quarter of the span) just outside it."""
    span = hi - lo
    if not span > 0:
        return lo, hi
    step = 10.0 ** math.floor(math.log10(span / 4))
    step *= next(m for m in (1, 2, 5, 10) if m * step >= span / 8)
    return (math.ceil(lo / step) - 1) * step, (math.floor(hi / step) + 1) * step


class _RoundBounds(pg.GraphicsObject):
    """Invisible. Auto-range fits its curves' bounds widened to round numbers, so during a live run the
    axes change a few times per decade of steps rather than at every redraw: each change makes pyqtgraph
    rebuild the axis (ticks, grid and labels), which was most of the cost of a live update. The steps
    never run past the live run's last step (`steps`), and a run shown from its file ends where its data
    ends (1,680 steps once showed an axis to 2,000).
    """

    def __init__(self, curves: tuple[pg.PlotDataItem, ...]):
        super().__init__()
        self.curves = curves
        self.steps = 0  # the live run's last step, 0 when none is live
        self.setFlag(self.GraphicsItemFlag.ItemHasNoContents)

    def boundingRect(self) -> QRectF:  # noqa: N802 (Qt override)
        return QRectF()

    def paint(self, *args: Any) -> None:
        pass

    def dataBounds(self, ax: int, frac: float = 1.0, orthoRange: Any = None) -> tuple[float, float] | None:  # noqa: N802, N803
        bounds = [c.dataBounds(ax, frac, orthoRange) for c in self.curves if c.isVisible()]
        bounds = [b for b in bounds if b is not None and b[0] is not None and math.isfinite(b[0]) and math.isfinite(b[1])]
        if not bounds:
            return None
        lo, hi = min(b[0] for b in bounds), max(b[1] for b in bounds)
        if ax == 0:
            return lo, (max(hi, min(_round_up(hi), self.steps)) if self.steps else hi)
        return _widen(lo, hi)


def _plot(graphics: pg.GraphicsLayoutWidget, **kwargs: Any) -> pg.PlotItem:
    plot = graphics.addPlot(axisItems={"left": _Axis("left"), "bottom": _Axis("bottom")}, **kwargs)
    for name in ("left", "bottom"):
        plot.getAxis(name).setZValue(-200)  # under the ViewBox (z -100): the grid goes behind the curves
    return plot


class PlotsPanel(QWidget):
    """Three plots fed by training events (`on_event`) or by a run's metrics.jsonl (`load_metrics`)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.loss_raw = Series()
        self.loss_smooth = Series()
        self.lr = Series()
        # The held-out split evaluated each epoch: validation (test only in runs of older versions).
        self.val_loss = Series()  # x = global step at the end of the epoch, to share the loss plot's axis
        self.val_acc = Series()  # x = epoch
        self.train_acc = Series()
        self.skipped = 0  # non-finite values left out
        self._ema_acc = 0.0
        self._ema_n = 0
        self._best: tuple[int, float] | None = None  # (epoch, accuracy)
        self.held_out = "validation"  # the split the epochs were evaluated on; "test" for an older run
        self.test_result: tuple[int, float] | None = None  # (epoch, accuracy) of the chosen model on test

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setMinimumSize(360, 300)
        self.loss_plot = _plot(self.graphics, row=0, col=0, colspan=2, title="Loss")
        self.acc_plot = _plot(self.graphics, row=1, col=0, title="Accuracy")
        self.lr_plot = _plot(self.graphics, row=1, col=1, title="Learning rate")
        for plot in (self.loss_plot, self.acc_plot, self.lr_plot):
            plot.titleLabel.setText(plot.titleLabel.text, justify="left")  # the legend takes the right of the row
        self.graphics.ci.layout.setRowStretchFactor(0, 3)
        self.graphics.ci.layout.setRowStretchFactor(1, 2)
        for plot, xlabel in ((self.loss_plot, "step"), (self.acc_plot, "epoch"), (self.lr_plot, "step")):
            plot.setLabel("bottom", xlabel)
            plot.showGrid(x=True, y=True, alpha=0.15)
        # Legends in the title row, beside the title, never over a curve (inside the plot they hid the
        # start of a run's loss, or a 1-epoch run's accuracy point).
        for plot in (self.loss_plot, self.acc_plot):
            plot.legend = pg.LegendItem(offset=None, labelTextSize="8pt", colCount=3, frame=False)
            plot.legend.layout.setContentsMargins(0, 0, 0, 0)
            plot.legend.setParentItem(plot)
            plot.legend.anchor(itemPos=(1, 0), parentPos=(1, 0), offset=(-6, 0))
        self.lr_plot.getAxis("left").enableAutoSIPrefix(False)
        self.acc_plot.setYRange(0, 1, padding=0.02)
        # Accuracy lives in 0–100 % from epoch 0 on: no zoom or auto-range shows beyond (one epoch's single
        # point once gave an axis from -12 to 16).
        self.acc_plot.setLimits(xMin=0, yMin=-0.05, yMax=1.05)

        # The raw loss is a dense band of noise: opaque (its colour mixed in _apply_palette, for the same
        # reason as the grid) and not antialiased, which would only blur the band at extra cost.
        self.raw_curve = self.loss_plot.plot(pen=_pen(BLUE, 1), antialias=False, skipFiniteCheck=True,
                                             name="train (raw)")
        self.smooth_curve = self.loss_plot.plot(pen=_pen(BLUE, 2.2), skipFiniteCheck=True, name="train (smoothed)")
        self.val_loss_curve = self.loss_plot.plot(
            pen=_pen(ORANGE, 2), symbol="o", symbolSize=6, symbolBrush=ORANGE, symbolPen=None, name="validation"
        )
        self.val_acc_curve = self.acc_plot.plot(
            pen=_pen(ORANGE, 2), symbol="o", symbolSize=6, symbolBrush=ORANGE, symbolPen=None, name="validation"
        )
        self.train_acc_curve = self.acc_plot.plot(pen=_pen(BLUE, 1.5), name="train")
        self.lr_curve = self.lr_plot.plot(pen=_pen(PURPLE, 1.5), skipFiniteCheck=True)
        # Long series are drawn as their envelope over the visible steps (Series.envelope), so they are
        # redrawn when the visible steps change; the series shown and the versions last handed over:
        self._long = ((self.raw_curve, self.loss_raw, self.loss_plot), (self.smooth_curve, self.loss_smooth, self.loss_plot),
                      (self.lr_curve, self.lr, self.lr_plot))
        self._short = ((self.val_loss_curve, self.val_loss), (self.val_acc_curve, self.val_acc),
                       (self.train_acc_curve, self.train_acc))
        self._bounds = (_RoundBounds((self.raw_curve, self.smooth_curve, self.val_loss_curve)),
                        _RoundBounds((self.lr_curve,)))
        self.loss_plot.addItem(self._bounds[0])
        self.lr_plot.addItem(self._bounds[1])
        self._drawn: dict[int, Any] = {}  # id(item) -> what it shows (a series version, a view key, the best)
        for plot in (self.loss_plot, self.lr_plot):
            plot.getViewBox().sigXRangeChanged.connect(self._view_changed)
            plot.getViewBox().sigResized.connect(self._view_changed)  # envelopes depend on the width in pixels
        self.best_line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(GREEN, width=1.5, style=Qt.PenStyle.DashLine))
        self.best_marker = pg.ScatterPlotItem(symbol="star", size=16, brush=pg.mkBrush(GREEN), pen=None)
        # Anchored at its right end, so the label of a best epoch at the right edge stays inside the plot.
        self.best_label = pg.TextItem(anchor=(1.0, 1.0), color=GREEN)
        for item in (self.best_line, self.best_marker, self.best_label):
            item.setVisible(False)
            self.acc_plot.addItem(item, ignoreBounds=True)
        # Line widths at 1× scaling. pyqtgraph's pens are cosmetic, their width in device pixels: at 2×
        # they would be half as thick on screen, so they are scaled by the screen's pixel ratio.
        self._widths = ((self.raw_curve, 1.0), (self.smooth_curve, 2.2), (self.val_loss_curve, 2.0),
                        (self.val_acc_curve, 2.0), (self.train_acc_curve, 1.5), (self.lr_curve, 1.5),
                        (self.best_line, 1.5))

        self.smoothing = QSlider(Qt.Orientation.Horizontal)
        self.smoothing.setRange(0, 99)
        self.smoothing.setValue(90)
        self.smoothing.setMaximumWidth(160)
        self.smoothing.setToolTip("How strongly the bold loss curve is smoothed (0 = raw values).")
        self.smoothing.valueChanged.connect(self._resmooth)
        self.smoothing_value = QLabel()
        self.smoothing_value.setMinimumWidth(30)
        self.log_scale = QCheckBox("Log-scale loss")
        self.log_scale.setToolTip("Show the loss on a logarithmic axis, where late small improvements stay visible.")
        self.log_scale.toggled.connect(self._set_log)
        self.info = QLabel()
        self.info.setObjectName("plotInfo")
        self.info.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        # Never widens the window: at small sizes the summary is cut, the plots are not.
        self.info.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

        controls = QHBoxLayout()
        controls.addWidget(QLabel("Smoothing"))
        controls.addWidget(self.smoothing)
        controls.addWidget(self.smoothing_value)
        controls.addSpacing(12)
        controls.addWidget(self.log_scale)
        controls.addSpacing(12)
        controls.addWidget(self.info, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(controls)
        layout.addWidget(self.graphics, 1)

        # One redraw for a burst of points (the runner hands over steps in batches), at most every
        # REDRAW_MS; a throttle with a leading edge would draw each batch twice.
        self._redraw_timer = QTimer(self)
        self._redraw_timer.setSingleShot(True)
        self._redraw_timer.timeout.connect(self.redraw)
        self._last_redraw = -math.inf
        guard_wheel(self)  # made after the window's fields were guarded
        self._apply_palette()
        self._resmooth(self.smoothing.value())

    # -- feeding ------------------------------------------------------------------------------
    def request_redraw(self) -> None:
        """Redraw once the events queued now are handled, and at most every REDRAW_MS."""
        if not self._redraw_timer.isActive():
            wait = REDRAW_MS - (time.perf_counter() - self._last_redraw) * 1000
            self._redraw_timer.start(max(0, int(wait)))

    def reset(self) -> None:
        for series in (self.loss_raw, self.loss_smooth, self.lr, self.val_loss, self.val_acc, self.train_acc):
            series.clear()
        self.skipped = 0
        self._ema_acc, self._ema_n = 0.0, 0
        self._best = None
        self.test_result = None
        self._set_held_out("validation")
        for bounds in self._bounds:
            bounds.steps = 0
        self.redraw()
        # An empty plot keeps whatever range it had: put back a blank one, so the steps of a run that is
        # gone (deleted, or the previous run) do not stay on the axes, and fit the next data again.
        for plot in (self.loss_plot, self.lr_plot):
            plot.setRange(xRange=(0, 1), yRange=(0, 1), padding=0)
            plot.enableAutoRange()
        self.acc_plot.setXRange(0, 1, padding=0)
        self.acc_plot.enableAutoRange(x=True)

    def _set_held_out(self, split: str) -> None:
        """Name the held-out curves after their split: validation, or test in an older version's run (which
        also chose its best epoch on test, and says so)."""
        self.held_out = split
        name = "validation" if split != "test" else "test (old run: chose on it)"
        for plot, curve in ((self.loss_plot, self.val_loss_curve), (self.acc_plot, self.val_acc_curve)):
            label = plot.legend.getLabel(curve) if plot.legend is not None else None
            if label is not None:
                label.setText(name)
        self._set_acc_title()

    def _set_acc_title(self) -> None:
        # The legend beside it names the curves (train, validation); the title adds the chosen model's test
        # accuracy, measured once when the run ended (the star marks its epoch). Kept short: the legend shares
        # the row, and a longer title ran under it.
        title = "Accuracy" if self.held_out != "test" else "Accuracy (old run)"
        if self.test_result is not None:
            _, acc = self.test_result
            title += f" · test {acc:.1%}"
        self.acc_plot.setTitle(title)
        self._apply_palette()

    def on_event(self, event: Event) -> None:
        if isinstance(event, Step):
            self.add_step(event.step, event.loss, event.lr)
        elif isinstance(event, EpochEnd):
            self.add_epoch(event.epoch, event.step, event.val_loss, event.val_acc, event.train_acc)
        elif isinstance(event, Finished) and math.isfinite(event.test_acc):
            self.test_result = (event.best_epoch, event.test_acc)
            self._set_acc_title()
        elif isinstance(event, RunStarted):
            if event.start_step == 0:
                self.reset()
            for bounds in self._bounds:
                bounds.steps = event.total_steps

    def add_step(self, step: int, loss: float, lr: float) -> None:
        if math.isfinite(lr):
            self.lr.append(step, lr)
        if not math.isfinite(loss):
            self.skipped += 1
        else:
            self.loss_raw.append(step, loss)
            weight = self._weight()
            self._ema_acc = self._ema_acc * weight + (1.0 - weight) * loss
            self._ema_n += 1
            self.loss_smooth.append(step, self._ema_acc / (1.0 - weight**self._ema_n) if weight > 0 else loss)
        self.request_redraw()

    def add_epoch(self, epoch: int, step: int, val_loss: float, val_acc: float, train_acc: float) -> None:
        """An epoch's held-out loss and accuracy (validation; test in an older version's run)."""
        if math.isfinite(val_loss):
            self.val_loss.append(step, val_loss)
        if math.isfinite(train_acc):
            self.train_acc.append(epoch, train_acc)
        if math.isfinite(val_acc):
            self.val_acc.append(epoch, val_acc)
            if self._best is None or val_acc > self._best[1]:
                self._best = (epoch, val_acc)
        self.request_redraw()

    def load_metrics(self, metrics: Metrics) -> None:
        """Show a finished (or running) run from its metrics.jsonl, as runs.read_metrics read it (damaged
        lines and fields are already skipped there); a resumed live run keeps its span."""
        steps = self._bounds[0].steps
        self.reset()
        if any(r.held_out == "test" for r in metrics.epochs):
            self._set_held_out("test")
        for bounds in self._bounds:
            bounds.steps = steps
        for r in metrics.records:
            if isinstance(r, StepRecord):
                self.add_step(r.step, r.loss, r.lr)
            elif isinstance(r, TestRecord):
                self.test_result = (r.epoch, r.test_acc) if math.isfinite(r.test_acc) else None
            else:
                self.add_epoch(r.epoch, r.step, r.held_out_loss, r.held_out_acc, r.train_acc)
        self._set_acc_title()
        self.redraw()

    # -- drawing -------------------------------------------------------------------------------
    def redraw(self) -> None:
        self._redraw_timer.stop()
        self._last_redraw = time.perf_counter()
        self._draw_long()
        for curve, series in self._short:
            if self._drawn.get(id(curve)) != series.version:
                self._drawn[id(curve)] = series.version
                curve.setData(series.x, series.y)
        if self._drawn.get(id(self.best_marker)) != self._best:
            self._drawn[id(self.best_marker)] = self._best
            if self._best is not None:
                epoch, acc = self._best
                self.best_line.setValue(epoch)
                self.best_marker.setData([epoch], [acc])
                self.best_label.setText(f"best {'val' if self.held_out != 'test' else 'test'} {acc:.1%} ")
                # Above the star while there is room; below it near the top, where it would be clipped.
                self.best_label.setAnchor((1.0, 0.0) if acc > 0.6 else (1.0, 1.0))
                self.best_label.setPos(epoch, acc)
            for item in (self.best_line, self.best_marker, self.best_label):
                item.setVisible(self._best is not None)
        parts = []
        if self.loss_raw.n:
            parts.append(f"loss {self.loss_smooth.y[-1]:.4g}")
        if self._best is not None:
            parts.append(f"best {self.held_out if self.held_out == 'test' else 'validation'} "
                         f"{self._best[1]:.1%} at epoch {self._best[0]}")
        if self.test_result is not None:
            parts.append(f"test {self.test_result[1]:.1%} (the chosen model, once)")
        if self.skipped:
            parts.append(f"{self.skipped} non-finite value{'s' if self.skipped != 1 else ''} not shown")
        self.info.setText(" · ".join(parts))
        # pyqtgraph fits the ranges to new data just before painting, and the axes it changes then ask
        # for a second paint; fitting now lets one paint show everything (half the drawing per update).
        self.graphics.scene().prepareForPaint()

    def _draw_long(self) -> None:
        """Hand each long curve its envelope for the steps in view, when the series or the view changed."""
        for curve, series, plot in self._long:
            view = plot.getViewBox()
            if view.autoRangeEnabled()[0]:
                x0, x1 = -math.inf, math.inf  # the view is about to fit the whole series
            else:
                x0, x1 = view.viewRange()[0]
                if curve.opts["logMode"][0]:
                    x0, x1 = 10.0**x0, 10.0**x1
            columns = max(1, int(view.width() * self.devicePixelRatioF()))
            key = (series.version, x0, x1, columns)
            if self._drawn.get(id(curve)) == key:
                continue
            self._drawn[id(curve)] = key  # before setData: its auto-range comes back through _view_changed
            xs, ys, reduced = series.envelope(x0, x1, columns)
            # An envelope has one vertical stroke per pixel column, where antialiasing shows nothing but
            # costs (~10 ms a frame for the thick smoothed curve); opaque unantialiased thick pens let
            # pyqtgraph draw plain line segments.
            curve.setData(xs, ys, antialias=curve is not self.raw_curve and not reduced)

    def _view_changed(self, *_: object) -> None:
        self._draw_long()

    def best(self) -> tuple[int, float] | None:
        return self._best

    def _weight(self) -> float:
        return self.smoothing.value() / 100.0

    def _resmooth(self, value: int) -> None:
        self.smoothing_value.setText(f"{value / 100:.2f}")
        weight = self._weight()
        smoothed = ema(self.loss_raw.y, weight)
        self.loss_smooth.set(self.loss_raw.x, smoothed)
        self._ema_n = self.loss_raw.n
        self._ema_acc = float(smoothed[-1] * (1.0 - weight**self._ema_n)) if self._ema_n and weight > 0 else 0.0
        self.redraw()

    def _set_log(self, on: bool) -> None:
        self.loss_plot.setLogMode(y=on)

    # -- light and dark ------------------------------------------------------------------------
    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 (Qt override)
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            self._apply_palette()
        elif event.type() == QEvent.Type.DevicePixelRatioChange:  # moved to a screen of another scale
            self._apply_pens()
        super().changeEvent(event)

    def showEvent(self, event) -> None:  # noqa: N802 (Qt override)
        self._apply_pens()  # the screen, and so its pixel ratio, is known once shown
        super().showEvent(event)

    def _apply_pens(self) -> None:
        scale = max(1.0, self.devicePixelRatioF())
        for item, width in self._widths:
            pen = QPen(item.opts["pen"] if isinstance(item, pg.PlotDataItem) else item.pen)
            if pen.widthF() != width * scale:
                pen.setWidthF(width * scale)
                item.setPen(pen)

    def _apply_palette(self) -> None:
        """Plot background and text follow the window's palette, so a dark desktop gets dark plots."""
        palette = self.palette() if self.parent() else QApplication.palette()
        background = palette.color(QPalette.ColorRole.Base)
        foreground = palette.color(QPalette.ColorRole.Text)
        self.graphics.setBackground(background)
        self.raw_curve.setPen(pg.mkPen(mix(QColor(*BLUE), background, 0.35), width=max(1.0, self.devicePixelRatioF())))
        for plot in (self.loss_plot, self.acc_plot, self.lr_plot):
            style_plot(plot, foreground, background=background)


def style_plot(plot: pg.PlotItem, foreground: QColor, *, background: QColor | None = None,
               legend: pg.LegendItem | None = None) -> None:
    """Axes, title and legend (the plot's own, or `legend`) in the palette's text colour, so a dark desktop
    gets dark plots; `background` goes to our `_Axis` grid lines."""
    for name in ("left", "bottom"):
        axis = plot.getAxis(name)
        if background is not None and isinstance(axis, _Axis):
            axis.set_background(background)
        axis.setPen(pg.mkPen(foreground))
        axis.setTextPen(pg.mkPen(foreground))
    if plot.titleLabel.text:
        plot.titleLabel.setText(plot.titleLabel.text, color=foreground.name())
    legend = legend if legend is not None else plot.legend
    if legend is not None:
        legend.setLabelTextColor(foreground)
        for _, label in legend.items:
            label.setText(label.text, color=foreground.name())  # re-render with the new colour
