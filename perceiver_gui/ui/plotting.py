"""The plotting toolkit the app's plots share (live curves, run comparison, sweeps, Fourier features):
growing series buffers and their on-screen envelope, TensorBoard's smoothing, the colours, pens, axes with
opaque grid lines under the curves, auto-range to round numbers, and styling that follows the palette.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QRectF
from PySide6.QtGui import QColor, QPen

from perceiver_gui.ui.widgets import mix

__all__ = ["BLUE", "GREEN", "ORANGE", "PURPLE", "Axis", "FollowsPaletteAndScale", "RoundBounds", "Series", "add_plot", "along", "clear_spot",
           "ema", "legend_in_title_row", "rgb_pen", "round_up", "scale_pens", "style_plot", "widen"]

pg.setConfigOptions(antialias=True)  # smooth curves; must be set before any plot is made

BLUE = (31, 119, 180)
ORANGE = (255, 127, 14)
GREEN = (44, 160, 44)
PURPLE = (148, 103, 189)


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


def rgb_pen(rgb: tuple[int, int, int], width: float = 1.5, alpha: int = 255) -> Any:
    return pg.mkPen(QColor(*rgb, alpha), width=width)


class Axis(pg.AxisItem):
    """An axis whose grid lines are opaque, pre-mixed with the plot background, and lie under the curves.

    Qt's raster engine blends a translucent line about eight times slower than it draws an opaque one:
    pyqtgraph's translucent grid alone took ~30 ms a frame for the six axes, the whole budget of a
    30 frames/s redraw. On the plain background the mixed colour looks exactly the same.
    """

    def __init__(self, orientation: str, **kwargs: Any):
        super().__init__(orientation, **kwargs)
        self.background = QColor("white")
        self._pens: dict[tuple[int, int], QPen] = {}
        self.whole_numbers = False  # ticks only at integers (an epoch axis: "epoch 0.6" means nothing)
        self.percent = False  # fractions labelled as percentages, as every accuracy in the app's text is

    def tickStrings(self, values, scale, spacing):  # noqa: N802 (pyqtgraph override)
        if not self.percent:
            return super().tickStrings(values, scale, spacing)
        decimals = max(0, -math.floor(math.log10(spacing * 100))) if spacing > 0 else 0
        return [f"{v * 100:.{decimals}f}%" for v in values]

    def tickSpacing(self, minVal, maxVal, size):  # noqa: N802, N803 (pyqtgraph override)
        levels = super().tickSpacing(minVal, maxVal, size)
        if not self.whole_numbers:
            return levels
        whole = [(spacing, offset) for spacing, offset in levels if spacing >= 1]
        return whole or [(1.0, 0.0)]

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




def round_up(value: float) -> float:
    """The next of 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 × 10^k above `value` (itself when not positive):
    the curve fills at least three quarters of the width, and the axis changes ten times per decade.

    Strictly above: a curve that reaches the bound would add pyqtgraph's pixel padding and move the range.
    """
    if not value > 0:
        return value
    decade = 10.0 ** math.floor(math.log10(value))
    return next((m * decade for m in (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0) if m * decade > value), 10 * decade)


def widen(lo: float, hi: float) -> tuple[float, float]:
    """[lo, hi] widened to the multiples of a round step (about a quarter of the span) just outside it."""
    span = hi - lo
    if not span > 0:
        return lo, hi
    step = 10.0 ** math.floor(math.log10(span / 4))
    step *= next(m for m in (1, 2, 5, 10) if m * step >= span / 8)
    return (math.ceil(lo / step) - 1) * step, (math.floor(hi / step) + 1) * step


class RoundBounds(pg.GraphicsObject):
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
            return lo, (max(hi, min(round_up(hi), self.steps)) if self.steps else hi)
        return widen(lo, hi)


def add_plot(graphics: pg.GraphicsLayoutWidget, **kwargs: Any) -> pg.PlotItem:
    plot = graphics.addPlot(axisItems={"left": Axis("left"), "bottom": Axis("bottom")}, **kwargs)
    for name in ("left", "bottom"):
        plot.getAxis(name).setZValue(-200)  # under the ViewBox (z -100): the grid goes behind the curves
    return plot


def legend_in_title_row(plot: pg.PlotItem, columns: int = 3) -> pg.LegendItem:
    """Give `plot` a legend in its title row, right-aligned beside the title (moved to the left), never over
    a curve: inside the plot legends hid the start of a run's loss, or a 1-epoch run's accuracy point."""
    plot.titleLabel.setText(plot.titleLabel.text, justify="left")
    plot.legend = pg.LegendItem(offset=None, labelTextSize="8pt", colCount=columns, frame=False)
    plot.legend.layout.setContentsMargins(0, 0, 0, 0)
    plot.legend.setParentItem(plot)
    plot.legend.anchor(itemPos=(1, 0), parentPos=(1, 0), offset=(-6, 0))
    return plot.legend


def scale_pens(widths: Iterable[tuple[Any, float]], ratio: float) -> None:
    """Set each item's (a curve's or a line's) pen to its width at 1× scaling times the screen's pixel ratio.

    pyqtgraph's pens are cosmetic, their width in device pixels: at 2× they would be half as thick on screen
    (one physical pixel for a 1-pixel line)."""
    scale = max(1.0, ratio)
    for item, width in widths:
        pen = QPen(item.opts["pen"] if isinstance(item, pg.PlotDataItem) else item.pen)
        if pen.widthF() != width * scale:
            pen.setWidthF(width * scale)
            item.setPen(pen)


class FollowsPaletteAndScale:
    """Mixed into a QWidget of plots (before QWidget): it restyles for a new palette (light or dark) with the
    widget's `_apply_palette`, and keeps the lines in `_widths` ((item, width at 1×) pairs) as thick on screen
    at any scale (scale_pens), once shown (the screen, and so its pixel ratio, is known then) and when the
    window moves to a screen of another scale."""

    _widths: Iterable[tuple[Any, float]]

    def _apply_palette(self) -> None:
        raise NotImplementedError

    def _apply_pens(self) -> None:
        scale_pens(self._widths, self.devicePixelRatioF())

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 (Qt override)
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            self._apply_palette()
        super().changeEvent(event)

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.DevicePixelRatioChange:  # QWidget does not pass this one to changeEvent
            self._apply_pens()
        return super().event(event)

    def showEvent(self, event) -> None:  # noqa: N802 (Qt override)
        self._apply_pens()
        super().showEvent(event)


def along(points: np.ndarray, step: float = 2.0) -> np.ndarray:
    """Points at most `step` apart along the line through `points` (n × 2, in pixels), the corners included:
    where a curve's pen draws, for telling whether something would sit on it."""
    if len(points) < 2:
        return points
    seg = np.diff(points, axis=0)
    counts = np.maximum(1, np.ceil(np.hypot(seg[:, 0], seg[:, 1]) / step)).astype(int)
    which = np.repeat(np.arange(len(seg)), counts)
    t = (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)) / counts[which]
    return np.vstack((points[which] + seg[which] * t[:, None], points[-1:]))


def clear_spot(candidates: Sequence[QRectF], obstacles: np.ndarray, bounds: QRectF, margin: float) -> QRectF:
    """The first of `candidates` (rectangles in pixels, in order of preference) that lies within `bounds` with
    no obstacle point (n × 2) within `margin` of it; where every one is taken, the one with the fewest."""
    inside = [r for r in candidates if bounds.contains(r)] or list(candidates[:1])

    def covered(r: QRectF) -> int:
        x, y = obstacles[:, 0], obstacles[:, 1]
        return int(np.count_nonzero((x >= r.left() - margin) & (x <= r.right() + margin)
                                    & (y >= r.top() - margin) & (y <= r.bottom() + margin)))

    return min(inside, key=covered)  # the first of the least covered: preference order breaks ties


def style_plot(plot: pg.PlotItem, foreground: QColor, *, background: QColor | None = None,
               legend: pg.LegendItem | None = None) -> None:
    """Axes, title and legend (the plot's own, or `legend`) in the palette's text colour, so a dark desktop
    gets dark plots; `background` goes to our `Axis` grid lines."""
    for name in ("left", "bottom"):
        axis = plot.getAxis(name)
        if background is not None and isinstance(axis, Axis):
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
