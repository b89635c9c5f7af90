"""Small widgets the panels share."""

from __future__ import annotations

import math

from PySide6.QtCore import QEvent, QObject, QPointF, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPen, QPolygonF, QValidator
from PySide6.QtWidgets import QAbstractSpinBox, QComboBox, QDoubleSpinBox, QLabel, QSlider, QWidget

from perceiver_gui.ui import deferred

__all__ = ["ElidedLabel", "FloatSpinBox", "guard_wheel", "mix", "points_image", "series_image", "sound_image"]

# This module is imported with the window; numpy loads after it (ui/deferred.py), and a sound is drawn only
# once one is dropped or previewed, when the worker that read it has loaded numpy.
np = deferred.module("numpy")


def mix(colour: QColor, background: QColor, share: float) -> QColor:
    """`colour` at opacity `share` (0..1) over `background`, as one opaque colour."""
    return QColor.fromRgbF(*(share * getattr(colour, c)() + (1.0 - share) * getattr(background, c)()
                             for c in ("redF", "greenF", "blueF")))


SERIES_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")  # one per channel, repeating
# A spectrogram's colours from quiet to loud: white (the page) through blue and purple to dark red.
HEAT = ((255, 255, 255), (150, 190, 235), (31, 119, 180), (120, 60, 150), (200, 40, 40), (110, 0, 0))


def series_image(series, side: int) -> QImage:
    """A float (L, C) series as a side × side line plot on white, a line per channel; padding (NaN) is left
    out. A QImage, so a worker thread may draw it (the classifier's thumbnails)."""
    image = QImage(side, side, QImage.Format.Format_RGB32)
    image.fill(Qt.GlobalColor.white)
    values = series[(series == series).all(axis=1)]  # NaN != NaN: the padding
    if len(values):
        lo, hi = float(values.min()), float(values.max())
        span = (hi - lo) or 1.0
        step = (side - 1) / max(1, len(values) - 1)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        for channel in range(values.shape[1]):
            painter.setPen(QPen(QColor(SERIES_COLOURS[channel % len(SERIES_COLOURS)]), 1))
            painter.drawPolyline(QPolygonF([QPointF(i * step, 2 + (hi - v) / span * (side - 4))
                                            for i, v in enumerate(values[:, channel].tolist())]))
        painter.end()
    return image


POINTS_VIEW = (math.radians(35), math.radians(25))  # turn about the up (z) axis, then tilt towards the viewer
NEAR_COLOUR, FAR_COLOUR = QColor("#1f3f8f"), QColor("#a9c4ee")  # depth cue: near points dark, far ones pale


def points_image(points, side: int, colours=None, on_top=None) -> QImage:
    """A float (P, 3) cloud (x, y, z; z up) as a side × side scatter on white: an orthographic view from
    a little above and to the side, so a box shows three faces, with far points pale and drawn first, or
    each point in its own `colours` row (P, 3: RGB 0..255; the attention view's weights), drawn in the order of
    `on_top` (P,) when given, the largest last so that no nearer point hides it. A QImage, so a worker thread
    may draw it (the classifier's thumbnails)."""
    image = QImage(side, side, QImage.Format.Format_RGB32)
    image.fill(Qt.GlobalColor.white)
    kept = (points == points).all(axis=1)
    finite = points[kept]
    own = None if colours is None else [QColor(*(int(v) for v in rgb)) for rgb in colours[kept]]
    if not len(finite):
        return image
    turn, tilt = POINTS_VIEW
    x, y, z = finite[:, 0], finite[:, 1], finite[:, 2]
    across = math.cos(turn) * x - math.sin(turn) * y  # the screen's horizontal
    depth = math.sin(turn) * x + math.cos(turn) * y
    up = math.cos(tilt) * z - math.sin(tilt) * depth  # the screen's vertical
    depth = math.sin(tilt) * z + math.cos(tilt) * depth  # larger: farther away
    extent = float(max(abs(across).max(), abs(up).max())) or 1.0
    scale = (side / 2 - 3) / extent
    near, far = float(depth.min()), float(depth.max())
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    radius = max(1.0, side / 64)
    # Far to near, so near points cover far ones (by on_top first, when given).
    order = depth.argsort()[::-1].tolist()
    if on_top is not None:
        weight = on_top[kept].tolist()
        order.sort(key=weight.__getitem__)  # stable: far to near among equal weights
    for i in order:
        share = (depth[i] - near) / (far - near) if far > near else 0.0
        painter.setBrush(mix(FAR_COLOUR, NEAR_COLOUR, share) if own is None else own[i])
        painter.drawEllipse(QPointF(side / 2 + across[i] * scale, side / 2 - up[i] * scale), radius, radius)
    painter.end()
    return image


def sound_image(values, side: int) -> QImage:
    """A sound as the model reads it, side × side on white: a float (L,) waveform as its envelope (the lowest
    and highest sample under each column), or a float (n_mels, frames) log-mel spectrogram in dB as a heat map,
    low pitches at the bottom, the loudest 60 dB shown (below that is the background). A QImage, so a worker thread may draw it."""
    heat = np.array(HEAT, dtype=np.float64)
    if values.ndim == 2:
        mels, frames = values.shape
        level = ((values - (float(values.max()) - 60.0)) / 60.0).clip(0.0, 1.0)  # 0 = quiet, 1 = the loudest
        rows = ((side - 1 - np.arange(side)) * mels // side).clip(0, mels - 1)  # low pitches at the bottom
        cols = (np.arange(side) * frames // side).clip(0, frames - 1)
        position = level[rows[:, None], cols[None, :]] * (len(heat) - 1)
        below = np.floor(position).astype(int).clip(0, len(heat) - 2)
        rgb = heat[below] + (heat[below + 1] - heat[below]) * (position - below)[..., None]
        data = np.ascontiguousarray(rgb.round().astype(np.uint8)).tobytes()
        return QImage(data, side, side, 3 * side, QImage.Format.Format_RGB888).copy()  # copy: data goes away
    image = QImage(side, side, QImage.Format.Format_RGB32)
    image.fill(Qt.GlobalColor.white)
    peak = float(abs(values).max()) or 1.0
    edges = [round(i * len(values) / side) for i in range(side + 1)]
    middle = (side - 1) / 2
    points = []  # down and up each column: one polyline draws the envelope
    for x in range(side):
        chunk = values[edges[x]:max(edges[x + 1], edges[x] + 1)]
        if len(chunk):
            points += [QPointF(x, middle - float(chunk.max()) / peak * middle),
                       QPointF(x, middle - float(chunk.min()) / peak * middle)]
    painter = QPainter(image)
    painter.setPen(QPen(QColor(SERIES_COLOURS[0]), 1))
    painter.drawPolyline(QPolygonF(points))
    painter.end()
    return image


class ElidedLabel(QLabel):
    """A one-line label that, narrower than its text, shows the text's start and "…" (the whole text is its
    tooltip), where a plain label cut it at an edge mid-word ("nce)" of a plot summary in a narrow pane).
    `text()` stays the whole text."""

    def setText(self, text: str) -> None:  # noqa: N802 (Qt override)
        super().setText(text)
        self.setToolTip(text)

    def shown_text(self) -> str:
        return self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideRight, self.contentsRect().width())

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt override)
        painter = QPainter(self)
        self.style().drawItemText(painter, self.contentsRect(), int(self.alignment()), self.palette(), self.isEnabled(),
                                  self.shown_text(), self.foregroundRole())


class FloatSpinBox(QDoubleSpinBox):
    """A float spin box that shows values as written (0.003, 1e-05) instead of a fixed number of
    decimals, so a config survives the round trip through the form unchanged.

    With `log_step` the arrows multiply or divide by 2 — the natural step for learning rates and
    weight decay, which span several orders of magnitude.
    """

    def __init__(self, *, minimum: float, maximum: float, step: float = 0.1, log_step: bool = False, parent=None):
        super().__init__(parent)
        self._log_step = log_step
        self.setDecimals(12)  # QDoubleSpinBox rounds stored values to this many decimals
        self.setRange(minimum, maximum)
        self.setSingleStep(step)
        self.setKeyboardTracking(True)

    def textFromValue(self, value: float) -> str:  # noqa: N802 (Qt override)
        return f"{value:.6g}"

    def valueFromText(self, text: str) -> float:  # noqa: N802 (Qt override)
        try:
            return float(text)
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):
        stripped = text.strip()
        try:
            value = float(stripped)
        except ValueError:
            # Half-typed numbers ("1e-", "-", ".") are fine while typing.
            ok = stripped in ("", "-", "+", ".") or stripped[-1:] in ("e", "E", "-", "+", ".")
            return (QValidator.State.Intermediate if ok else QValidator.State.Invalid), text, pos
        if not math.isfinite(value):
            return QValidator.State.Invalid, text, pos
        if self.minimum() <= value <= self.maximum():
            return QValidator.State.Acceptable, text, pos
        return QValidator.State.Intermediate, text, pos

    def stepBy(self, steps: int) -> None:  # noqa: N802 (Qt override)
        if not self._log_step:
            super().stepBy(steps)
            return
        value = self.value()
        if value <= 0:
            value = max(self.minimum(), 1e-4) if steps > 0 else self.minimum()
        else:
            value = float(f"{value * 2.0**steps:.3g}")
        self.setValue(min(max(value, self.minimum()), self.maximum()))


class _WheelGuard(QObject):
    """Lets a field take wheel turns only while it has the keyboard focus. Otherwise the turn is passed
    on (ignored, so Qt hands it to the parent): scrolling the form scrolls it instead of changing
    whichever spin box or list happens to pass under the pointer."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt override)
        if event.type() == QEvent.Type.Wheel and isinstance(watched, QWidget) and not watched.hasFocus():
            event.ignore()
            return True
        return False


_GUARDED = (QAbstractSpinBox, QComboBox, QSlider)  # not scroll bars: they are there to be wheeled


def guard_wheel(root: QWidget) -> None:
    """Apply the wheel rule to every spin box, combo box and slider inside `root` (and `root` itself).

    Their focus policy becomes click-or-tab (StrongFocus): the default, WheelFocus, would hand them the
    focus on the first wheel turn and so let the turn change them after all.
    """
    guard = root.findChild(_WheelGuard) or _WheelGuard(root)
    fields = [w for w in root.findChildren(QWidget) if isinstance(w, _GUARDED)]
    if isinstance(root, _GUARDED):
        fields.append(root)
    for field in fields:
        field.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        field.removeEventFilter(guard)  # once per field, however often the panel is guarded
        field.installEventFilter(guard)
