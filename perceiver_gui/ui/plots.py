"""Live training curves: loss per step (raw and smoothed), test loss and accuracy per epoch, learning rate.

Curves are created once; new points go into growing numpy buffers and are handed to `setData` at
most ~20 times a second (`qthrottled`), with peak downsampling and clip-to-view so runs of a
million steps stay smooth. Non-finite values (a diverging loss) are counted and left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt
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
from superqt.utils import qthrottled

from perceiver_gui.core.events import EpochEnd, Event, RunStarted, Step

__all__ = ["PlotsPanel", "Series", "ema"]

BLUE = (31, 119, 180)
ORANGE = (255, 127, 14)
GREEN = (44, 160, 44)
PURPLE = (148, 103, 189)


class Series:
    """x/y float64 buffers that double their capacity as points are appended."""

    def __init__(self, capacity: int = 1024):
        self._x = np.empty(capacity)
        self._y = np.empty(capacity)
        self.n = 0

    def append(self, x: float, y: float) -> None:
        if self.n == len(self._x):
            self._x = np.resize(self._x, 2 * self.n)
            self._y = np.resize(self._y, 2 * self.n)
        self._x[self.n] = x
        self._y[self.n] = y
        self.n += 1

    def clear(self) -> None:
        self.n = 0

    @property
    def x(self) -> np.ndarray:
        return self._x[: self.n]

    @property
    def y(self) -> np.ndarray:
        return self._y[: self.n]


def ema(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's debiased exponential moving average (weight 0 = raw, 0.99 = very smooth)."""
    out = np.empty_like(values)
    acc = 0.0
    for i, v in enumerate(values):
        acc = acc * weight + (1.0 - weight) * v
        out[i] = acc / (1.0 - weight ** (i + 1)) if weight > 0 else v
    return out


def _pen(rgb: tuple[int, int, int], width: float = 1.5, alpha: int = 255) -> Any:
    return pg.mkPen(QColor(*rgb, alpha), width=width)


class PlotsPanel(QWidget):
    """Three plots fed by training events (`on_event`) or by a run's metrics.jsonl (`load_metrics`)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.loss_raw = Series()
        self.loss_smooth = Series()
        self.lr = Series()
        self.test_loss = Series()  # x = global step at the end of the epoch, to share the loss plot's axis
        self.test_acc = Series()  # x = epoch
        self.train_acc = Series()
        self.skipped = 0  # non-finite values left out
        self._ema_acc = 0.0
        self._ema_n = 0
        self._best: tuple[int, float] | None = None  # (epoch, accuracy)

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setMinimumSize(360, 300)
        self.loss_plot = self.graphics.addPlot(row=0, col=0, colspan=2, title="Loss")
        self.acc_plot = self.graphics.addPlot(row=1, col=0, title="Accuracy")
        self.lr_plot = self.graphics.addPlot(row=1, col=1, title="Learning rate")
        self.graphics.ci.layout.setRowStretchFactor(0, 3)
        self.graphics.ci.layout.setRowStretchFactor(1, 2)
        for plot, xlabel in ((self.loss_plot, "step"), (self.acc_plot, "epoch"), (self.lr_plot, "step")):
            plot.setLabel("bottom", xlabel)
            plot.showGrid(x=True, y=True, alpha=0.15)
            plot.setDownsampling(auto=True, mode="peak")
            plot.setClipToView(True)
        # Legends where the curves are not: the loss falls (top right is free), accuracy rises (top left is free).
        self.loss_plot.addLegend(offset=(-10, 10), labelTextSize="8pt")
        self.acc_plot.addLegend(offset=(10, 10), labelTextSize="8pt")
        self.lr_plot.getAxis("left").enableAutoSIPrefix(False)
        self.acc_plot.setYRange(0, 1, padding=0.02)

        self.raw_curve = self.loss_plot.plot(pen=_pen(BLUE, 1, 90), name="train (raw)")
        self.smooth_curve = self.loss_plot.plot(pen=_pen(BLUE, 2.2), name="train (smoothed)")
        self.test_loss_curve = self.loss_plot.plot(
            pen=_pen(ORANGE, 2), symbol="o", symbolSize=6, symbolBrush=ORANGE, symbolPen=None, name="test"
        )
        self.test_acc_curve = self.acc_plot.plot(
            pen=_pen(ORANGE, 2), symbol="o", symbolSize=6, symbolBrush=ORANGE, symbolPen=None, name="test"
        )
        self.train_acc_curve = self.acc_plot.plot(pen=_pen(BLUE, 1.5), name="train")
        self.lr_curve = self.lr_plot.plot(pen=_pen(PURPLE, 1.5))
        self.best_line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(GREEN, width=1.5, style=Qt.PenStyle.DashLine))
        self.best_marker = pg.ScatterPlotItem(symbol="star", size=16, brush=pg.mkBrush(GREEN), pen=None)
        # Anchored at its right end, so the label of a best epoch at the right edge stays inside the plot.
        self.best_label = pg.TextItem(anchor=(1.0, 1.0), color=GREEN)
        for item in (self.best_line, self.best_marker, self.best_label):
            item.setVisible(False)
            self.acc_plot.addItem(item, ignoreBounds=True)

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

        # At most ~20 redraws a second however fast the events come; the trailing call draws the last state.
        self.request_redraw = qthrottled(self.redraw, timeout=50, parent=self)
        self._apply_palette()
        self._resmooth(self.smoothing.value())

    # -- feeding ------------------------------------------------------------------------------
    def reset(self) -> None:
        for series in (self.loss_raw, self.loss_smooth, self.lr, self.test_loss, self.test_acc, self.train_acc):
            series.clear()
        self.skipped = 0
        self._ema_acc, self._ema_n = 0.0, 0
        self._best = None
        self.redraw()

    def on_event(self, event: Event) -> None:
        if isinstance(event, Step):
            self.add_step(event.step, event.loss, event.lr)
        elif isinstance(event, EpochEnd):
            self.add_epoch(event.epoch, event.step, event.test_loss, event.test_acc, event.train_acc)
        elif isinstance(event, RunStarted) and event.start_step == 0:
            self.reset()

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

    def add_epoch(self, epoch: int, step: int, test_loss: float, test_acc: float, train_acc: float) -> None:
        if math.isfinite(test_loss):
            self.test_loss.append(step, test_loss)
        else:
            self.skipped += 1
        if math.isfinite(train_acc):
            self.train_acc.append(epoch, train_acc)
        if math.isfinite(test_acc):
            self.test_acc.append(epoch, test_acc)
            if self._best is None or test_acc > self._best[1]:
                self._best = (epoch, test_acc)
        self.request_redraw()

    def load_metrics(self, records: Iterable[dict[str, Any]]) -> None:
        """Show a finished (or running) run from its metrics.jsonl records."""
        self.reset()
        for r in records:
            kind = r.get("type")
            try:
                if kind == "step":
                    self.add_step(int(r["step"]), _num(r.get("loss")), _num(r.get("lr")))
                elif kind == "epoch":
                    self.add_epoch(int(r["epoch"]), int(r.get("step", 0)), _num(r.get("test_loss")),
                                   _num(r.get("test_acc")), _num(r.get("train_acc")))
            except (KeyError, TypeError, ValueError):
                continue  # a record from another version of the app: show the rest
        self.redraw()

    # -- drawing -------------------------------------------------------------------------------
    def redraw(self) -> None:
        self.raw_curve.setData(self.loss_raw.x, self.loss_raw.y)
        self.smooth_curve.setData(self.loss_smooth.x, self.loss_smooth.y)
        self.test_loss_curve.setData(self.test_loss.x, self.test_loss.y)
        self.test_acc_curve.setData(self.test_acc.x, self.test_acc.y)
        self.train_acc_curve.setData(self.train_acc.x, self.train_acc.y)
        self.lr_curve.setData(self.lr.x, self.lr.y)
        if self._best is not None:
            epoch, acc = self._best
            self.best_line.setValue(epoch)
            self.best_marker.setData([epoch], [acc])
            self.best_label.setText(f"best {acc:.1%} ")
            self.best_label.setPos(epoch, acc)
        for item in (self.best_line, self.best_marker, self.best_label):
            item.setVisible(self._best is not None)
        parts = []
        if self.loss_raw.n:
            parts.append(f"loss {self.loss_smooth.y[-1]:.4g}")
        if self._best is not None:
            parts.append(f"best {self._best[1]:.1%} at epoch {self._best[0]}")
        if self.skipped:
            parts.append(f"{self.skipped} non-finite value{'s' if self.skipped != 1 else ''} not shown")
        self.info.setText(" · ".join(parts))

    def best(self) -> tuple[int, float] | None:
        return self._best

    def _weight(self) -> float:
        return self.smoothing.value() / 100.0

    def _resmooth(self, value: int) -> None:
        self.smoothing_value.setText(f"{value / 100:.2f}")
        weight = self._weight()
        self.loss_smooth.clear()
        smoothed = ema(self.loss_raw.y, weight)
        for x, y in zip(self.loss_raw.x, smoothed, strict=True):
            self.loss_smooth.append(x, y)
        self._ema_n = self.loss_raw.n
        self._ema_acc = float(smoothed[-1] * (1.0 - weight**self._ema_n)) if self._ema_n and weight > 0 else 0.0
        self.redraw()

    def _set_log(self, on: bool) -> None:
        self.loss_plot.setLogMode(y=on)

    # -- light and dark ------------------------------------------------------------------------
    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 (Qt override)
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            self._apply_palette()
        super().changeEvent(event)

    def _apply_palette(self) -> None:
        """Plot background and text follow the window's palette, so a dark desktop gets dark plots."""
        palette = self.palette() if self.parent() else QApplication.palette()
        background = palette.color(QPalette.ColorRole.Base)
        foreground = palette.color(QPalette.ColorRole.Text)
        self.graphics.setBackground(background)
        for plot in (self.loss_plot, self.acc_plot, self.lr_plot):
            for name in ("left", "bottom"):
                axis = plot.getAxis(name)
                axis.setPen(pg.mkPen(foreground))
                axis.setTextPen(pg.mkPen(foreground))
            plot.titleLabel.setText(plot.titleLabel.text, color=foreground.name())
            if plot.legend is not None:
                plot.legend.setLabelTextColor(foreground)
                for _, label in plot.legend.items:
                    label.setText(label.text, color=foreground.name())  # re-render with the new colour


def _num(value: Any) -> float:
    # JSON has no NaN: the engine writes null for a non-finite value.
    return float(value) if isinstance(value, int | float) else math.nan
