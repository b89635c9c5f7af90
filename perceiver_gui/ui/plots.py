"""Live training curves: loss per step (raw and smoothed), test loss and accuracy per epoch, learning rate.

Curves are created once; new points go into growing numpy buffers and are handed to `setData` at
most ~20 times a second (`request_redraw`), once a second while a live run feeds them. Long series are clipped to the visible steps and reduced to
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
from PySide6.QtCore import QRectF, Qt, QTimer
from PySide6.QtGui import QColor, QPalette
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
from perceiver_gui.ui.plotting import (
    BLUE,
    GREEN,
    ORANGE,
    PURPLE,
    FollowsPaletteAndScale,
    RoundBounds,
    Series,
    add_plot,
    along,
    clear_spot,
    ema,
    legend_in_title_row,
    rgb_pen,
    style_plot,
)
from perceiver_gui.ui.widgets import ElidedLabel, guard_wheel, mix

__all__ = ["PlotsPanel"]

REDRAW_MS = 50  # at most ~20 redraws a second, however fast the points come
# During a live run, new points are drawn at most once a second. The training thread waits for every redraw:
# PySide holds Python's lock while Qt paints, and a redraw takes ~20 ms of this thread (digits, 1280×800). At two a
# second (a batch of steps and an epoch's end, for short epochs) that was ~4% of the run's time.
LIVE_REDRAW_MS = 1000


class PlotsPanel(FollowsPaletteAndScale, QWidget):
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
        self._best_texts = ("", "")  # its label, whole and short
        self.held_out = "validation"  # the split the epochs were evaluated on; "test" for an older run
        self.test_result: tuple[int, float] | None = None  # (epoch, accuracy) of the chosen model on test

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setMinimumSize(360, 300)
        self.loss_plot = add_plot(self.graphics, row=0, col=0, colspan=2, title="Loss")
        self.acc_plot = add_plot(self.graphics, row=1, col=0, title="Accuracy")
        self.lr_plot = add_plot(self.graphics, row=1, col=1, title="Learning rate")
        # in line with the other titles, which their legends move to the left (legend_in_title_row)
        self.lr_plot.titleLabel.setText(self.lr_plot.titleLabel.text, justify="left")
        self.graphics.ci.layout.setRowStretchFactor(0, 3)
        self.graphics.ci.layout.setRowStretchFactor(1, 2)
        for plot, xlabel in ((self.loss_plot, "step"), (self.acc_plot, "epoch"), (self.lr_plot, "step")):
            plot.setLabel("bottom", xlabel)
            plot.showGrid(x=True, y=True, alpha=0.15)
        for plot in (self.loss_plot, self.acc_plot):
            legend_in_title_row(plot)
        self.lr_plot.getAxis("left").enableAutoSIPrefix(False)
        self.acc_plot.setYRange(0, 1, padding=0.02)
        self.acc_plot.getAxis("bottom").whole_numbers = True  # epochs: a 1-epoch run's axis read 0.6 … 1.4
        self.acc_plot.getAxis("left").percent = True  # "80%" beside "best val 95.6%", not 0.8
        # Accuracy lives in 0–100 % from epoch 0 on: no zoom or auto-range shows beyond (one epoch's single
        # point once gave an axis from -12 to 16).
        self.acc_plot.setLimits(xMin=0, yMin=-0.05, yMax=1.05)

        # The raw loss is a dense band of noise: opaque (its colour mixed in _apply_palette, for the same
        # reason as the grid) and not antialiased, which would only blur the band at extra cost.
        self.raw_curve = self.loss_plot.plot(pen=rgb_pen(BLUE, 1), antialias=False, skipFiniteCheck=True,
                                             name="train (raw)")
        self.smooth_curve = self.loss_plot.plot(pen=rgb_pen(BLUE, 2.2), skipFiniteCheck=True, name="train (smoothed)")
        self.val_loss_curve = self.loss_plot.plot(
            pen=rgb_pen(ORANGE, 2), symbol="o", symbolSize=6, symbolBrush=ORANGE, symbolPen=None, name="validation"
        )
        self.val_acc_curve = self.acc_plot.plot(
            pen=rgb_pen(ORANGE, 2), symbol="o", symbolSize=6, symbolBrush=ORANGE, symbolPen=None, name="validation"
        )
        self.train_acc_curve = self.acc_plot.plot(pen=rgb_pen(BLUE, 1.5), name="train")
        self.lr_curve = self.lr_plot.plot(pen=rgb_pen(PURPLE, 1.5), skipFiniteCheck=True)
        # Long series are drawn as their envelope over the visible steps (Series.envelope), so they are
        # redrawn when the visible steps change; the series shown and the versions last handed over:
        self._long = ((self.raw_curve, self.loss_raw, self.loss_plot), (self.smooth_curve, self.loss_smooth, self.loss_plot),
                      (self.lr_curve, self.lr, self.lr_plot))
        self._short = ((self.val_loss_curve, self.val_loss), (self.val_acc_curve, self.val_acc),
                       (self.train_acc_curve, self.train_acc))
        # x in steps, steps, epochs: an accuracy axis that grew at every epoch was rebuilt at every epoch's
        # end, a third of the window's work during a run of short epochs (digits: two updates a second).
        self._bounds = (RoundBounds((self.raw_curve, self.smooth_curve, self.val_loss_curve)),
                        RoundBounds((self.lr_curve,)), RoundBounds((self.val_acc_curve, self.train_acc_curve)))
        for plot, bounds in zip((self.loss_plot, self.lr_plot, self.acc_plot), self._bounds, strict=True):
            plot.addItem(bounds)
        self._drawn: dict[int, Any] = {}  # id(item) -> what it shows (a series version, a view key, the best)
        for plot in (self.loss_plot, self.lr_plot):
            plot.getViewBox().sigXRangeChanged.connect(self._view_changed)
            plot.getViewBox().sigResized.connect(self._view_changed)  # envelopes depend on the width in pixels
        self.best_line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(GREEN, width=1.5, style=Qt.PenStyle.DashLine))
        self.best_marker = pg.ScatterPlotItem(symbol="star", size=16, brush=pg.mkBrush(GREEN), pen=None)
        for item in (self.best_line, self.best_marker):
            item.setVisible(False)
            self.acc_plot.addItem(item, ignoreBounds=True)
        # In the view's pixels, not its data: placed where no curve runs (_place_best_label), which next to
        # the star often is not (the curves arrive at it from the left).
        self.best_label = pg.TextItem(color=GREEN)
        self.best_label.setVisible(False)
        self.best_label.setParentItem(self.acc_plot.getViewBox())
        self.acc_plot.getViewBox().sigRangeChanged.connect(self._place_best_label)
        self.acc_plot.getViewBox().sigResized.connect(self._place_best_label)
        # Line widths at 1× scaling, scaled by the screen's pixel ratio when shown (scale_pens).
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
        self.info = ElidedLabel()  # the start of the summary when the pane is narrow
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
        self._redraw_every_ms = REDRAW_MS
        guard_wheel(self)  # made after the window's fields were guarded
        self._apply_palette()
        self._resmooth(self.smoothing.value())

    # -- feeding ------------------------------------------------------------------------------
    def request_redraw(self) -> None:
        """Redraw once the events queued now are handled, and at most every REDRAW_MS (LIVE_REDRAW_MS while
        a live run feeds the plots)."""
        if not self._redraw_timer.isActive():
            wait = self._redraw_every_ms - (time.perf_counter() - self._last_redraw) * 1000
            self._redraw_timer.start(max(0, int(wait)))

    def reset(self) -> None:
        for series in (self.loss_raw, self.loss_smooth, self.lr, self.val_loss, self.val_acc, self.train_acc):
            series.clear()
        self.skipped = 0
        self._ema_acc, self._ema_n = 0.0, 0
        self._best = None
        self.test_result = None
        self._set_held_out("validation")
        self._set_ends((0, 0, 0))
        self.redraw()
        # An empty plot keeps whatever range it had: put back a blank one, so the steps of a run that is
        # gone (deleted, or the previous run) do not stay on the axes, and fit the next data again.
        for plot in (self.loss_plot, self.lr_plot):
            plot.setRange(xRange=(0, 1), yRange=(0, 1), padding=0)
            plot.enableAutoRange()
        self.acc_plot.setXRange(0, 1, padding=0)
        self.acc_plot.enableAutoRange(x=True)

    def _set_ends(self, ends: tuple[int, int, int]) -> None:
        """Where the live run ends on the loss, learning-rate and accuracy plots' x axes (0: no live run)."""
        for bounds, end in zip(self._bounds, ends, strict=True):
            bounds.end = end

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
            self.add_epoch(event.epoch, event.step, event.val_loss, event.val_acc, event.train_acc, event.is_best)
        elif isinstance(event, Finished):
            self._redraw_every_ms = REDRAW_MS
            if math.isfinite(event.test_acc):
                self.test_result = (event.best_epoch, event.test_acc)
                self._set_acc_title()
            self.redraw()  # the last points, now
        elif isinstance(event, RunStarted):
            self._redraw_every_ms = LIVE_REDRAW_MS
            if event.start_step == 0:
                self.reset()
            epochs = -(-event.total_steps // event.steps_per_epoch) if event.steps_per_epoch > 0 else 0
            self._set_ends((event.total_steps, event.total_steps, epochs))

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

    def add_epoch(self, epoch: int, step: int, val_loss: float, val_acc: float, train_acc: float,
                  is_best: bool | None = None) -> None:
        """An epoch's held-out loss and accuracy (validation; test in an older version's run). `is_best` is
        the engine's own choice (it breaks a tie in accuracy by the lower loss), so the star marks the epoch
        whose model was saved; None (a record without it) falls back to the first highest accuracy."""
        if math.isfinite(val_loss):
            self.val_loss.append(step, val_loss)
        if math.isfinite(train_acc):
            self.train_acc.append(epoch, train_acc)
        if math.isfinite(val_acc):
            self.val_acc.append(epoch, val_acc)
            if is_best if is_best is not None else (self._best is None or val_acc > self._best[1]):
                self._best = (epoch, val_acc)
        self.request_redraw()

    def load_metrics(self, metrics: Metrics) -> None:
        """Show a finished (or running) run from its metrics.jsonl, as runs.read_metrics read it (damaged
        lines and fields are already skipped there); a resumed live run keeps its span."""
        ends = tuple(bounds.end for bounds in self._bounds)
        self.reset()
        if any(r.held_out == "test" for r in metrics.epochs):
            self._set_held_out("test")
        self._set_ends(ends)
        flagged = any(r.is_best for r in metrics.epochs)  # a record from before the flag was kept: the plain rule
        for r in metrics.records:
            if isinstance(r, StepRecord):
                self.add_step(r.step, r.loss, r.lr)
            elif isinstance(r, TestRecord):
                self.test_result = (r.epoch, r.test_acc) if math.isfinite(r.test_acc) else None
            else:
                self.add_epoch(r.epoch, r.step, r.held_out_loss, r.held_out_acc, r.train_acc,
                               r.is_best if flagged else None)
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
                # the short form where a narrow plot (the Sweep tab's trial pane) has no room for the whole
                self._best_texts = (f"★ best {'val' if self.held_out != 'test' else 'test'} {acc:.1%}, epoch {epoch}",
                                    f"★ {acc:.1%}")
                self.best_label.setText(self._best_texts[0])
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
        self._place_best_label()

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

    def _place_best_label(self, *_: object) -> None:
        """Put the best epoch's label beside its star if no curve runs there, else at the foot or the top of
        its dashed line, else in a corner of the plot: the first of these spots that the curves leave free."""
        view = self.acc_plot.getViewBox()
        key = (self._best, self.val_acc.version, self.train_acc.version, self._best_texts,
               tuple(map(tuple, view.viewRange())), view.width(), view.height())
        if self._best is None or self._drawn.get(id(self.best_label)) == key:
            return
        self._drawn[id(self.best_label)] = key
        t = view.childTransform()  # data -> the view's pixels

        def pixels(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
            return np.column_stack((t.m11() * xs + t.m21() * ys + t.dx(), t.m12() * xs + t.m22() * ys + t.dy()))

        bounds = view.boundingRect()
        star = pixels(np.array([float(self._best[0])]), np.array([self._best[1]]))[0]
        ring = star + 6 * np.array([(math.cos(a), math.sin(a)) for a in np.linspace(0, 2 * math.pi, 12)])
        dashed = np.column_stack((np.full(50, star[0]), np.linspace(bounds.top(), bounds.bottom(), 50)))
        obstacles = np.vstack([along(pixels(s.x, s.y)) for s in (self.val_acc, self.train_acc)]
                              + [star[None], ring, along(dashed)])
        gap, pad = 11.0, 4.0
        for text in self._best_texts:
            self.best_label.setText(text)
            size = self.best_label.textItem.boundingRect().size()
            if size.width() + 2 * pad <= bounds.width():
                break
        w, h = size.width(), size.height()
        left, right = star[0] - gap - w, star[0] + gap
        rows = (star[1] - gap - h, star[1] + gap, bounds.bottom() - pad - h, bounds.top() + pad)
        corners = ((bounds.right() - pad - w, bounds.bottom() - pad - h), (bounds.left() + pad, bounds.top() + pad),
                   (bounds.left() + pad, bounds.bottom() - pad - h), (bounds.right() - pad - w, bounds.top() + pad))
        candidates = [QRectF(x, y, w, h) for y in rows for x in (left, right)]
        candidates += [QRectF(x, y, w, h) for x, y in corners]
        self.best_label.setPos(clear_spot(candidates, obstacles, bounds, margin=4.0).topLeft())

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
    def _apply_palette(self) -> None:
        """Plot background and text follow the window's palette, so a dark desktop gets dark plots."""
        palette = self.palette() if self.parent() else QApplication.palette()
        background = palette.color(QPalette.ColorRole.Base)
        foreground = palette.color(QPalette.ColorRole.Text)
        self.graphics.setBackground(background)
        self.raw_curve.setPen(pg.mkPen(mix(QColor(*BLUE), background, 0.35), width=max(1.0, self.devicePixelRatioF())))
        for plot in (self.loss_plot, self.acc_plot, self.lr_plot):
            style_plot(plot, foreground, background=background)
