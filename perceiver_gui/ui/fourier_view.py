"""Under the Fourier fields of the form: what the position encoding adds and looks like.

Always shown (it is only text): how many channels the encoding adds to each input, and a note when the
maximum frequency is above the input's Nyquist limit (the fastest bands alias) or far below it (positions
are told apart only coarsely). On request ("Show encoding"), a small plot of every band's sine and
cosine along one axis, as the model computes them (`core.fourier`): smooth curves, with dots at the pixels
on small inputs, which are all the model gets to see of them. A band above the limit then shows what
aliasing is: the dots skip whole wiggles of its curve.

pyqtgraph and numpy are imported when the plot is first shown, not with the form: launch does not wait.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QLabel, QToolButton, QVBoxLayout, QWidget

from perceiver_gui.core.datasets import KINDS, Kind
from perceiver_gui.core.fourier import added_channels, axis_encoding, check_frequencies
from perceiver_gui.ui import deferred

__all__ = ["FourierView"]

# The plot's library, loaded when the plot is first shown (ui/deferred.py).
pg = deferred.module("pyqtgraph", plotting=True)
_plotting = deferred.module("perceiver_gui.ui.plotting", plotting=True)

PLOT_HEIGHT = 120
SYMBOLS_UP_TO = 16  # pixels along the axis; beyond this the dots at the samples would merge into the lines
CURVE_POINTS = 241  # the curves are drawn through this many positions (or the pixels, when there are more)
NOTE_STYLES = {"aliasing": "color: #d03030;", "coarse": "color: #b07000;"}  # otherwise the muted default


def _nyquist_tip(one: str) -> str:
    """The note's tooltip, for inputs whose positions are `one`s ("pixel", a series' "step")."""
    many = one + "s"
    return (
        "Band k encodes a position x in [-1, 1] as sin(π·f·x) and cos(π·f·x), with f spaced evenly from 1 to "
        "max frequency / 2.\n"
        f"The Nyquist limit: N {many} sit 2 / (N − 1) apart, so a band turns by 2π·f / (N − 1) from one {one} to the "
        f"next.\nAbove half a cycle per {one}, f > (N − 1) / 2 (max frequency > N − 1), the {many} see the same "
        f"values as a slower band:\nit aliases and adds nothing. Far below the limit, neighbouring {many} get almost "
        "the same code."
    )


def _axis(kind: Kind) -> str:
    """The plotted axis for people: "the time axis" of a series, "one axis" of an image."""
    return f"the {kind.axis_names[0]} axis" if len(kind.axis_names) == 1 else "one axis"


@dataclass(frozen=True, slots=True)
class _Encoding:
    enabled: bool
    num_bands: int
    max_freq: float
    side: int  # pixels along the plotted axis: the shortest side, which aliases first
    input_axis: int
    kind: Kind  # what the input is: its positions' name and its axes'


class FourierView(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.encoding: _Encoding | None = None
        self.plot = None  # a pyqtgraph PlotWidget, made when the plot is first shown
        self._curves: list[tuple[object, object, object]] = []  # (sine, cosine, sine's dots at the pixels) per band
        self._coordinate = None

        self.channels = QLabel()
        self.channels.setObjectName("fourierChannels")
        self.note = QLabel()
        self.note.setObjectName("fourierNote")
        self.note.setToolTip(_nyquist_tip("pixel"))
        self.toggle = QToolButton()
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setAutoRaise(True)
        self.toggle.setToolTip("Plot the encoding's values along one axis of the image.")
        self.toggle.toggled.connect(self._toggled)
        self.caption = QLabel()
        self.caption.setObjectName("fourierCaption")
        for label in (self.channels, self.note, self.caption):
            label.setWordWrap(True)  # (which also gives the label its height-for-width size policy: keep it)
        self.caption.setStyleSheet("color: gray;")
        self.caption.hide()

        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 4)
        self._layout.setSpacing(2)
        self._layout.addWidget(self.channels)
        self._layout.addWidget(self.note)
        self._layout.addWidget(self.toggle, 0, Qt.AlignmentFlag.AlignLeft)
        self._layout.addWidget(self.caption)
        self._toggled(False)

    # -- the typed API -------------------------------------------------------------------------
    def set_encoding(self, *, enabled: bool, num_bands: int, max_freq: float, sides: tuple[int, ...],
                     input_axis: int, kind: str = "image") -> None:
        """What the form says now; the texts follow at once, the plot when it is shown. `kind` is what one
        sample is (a key of datasets.KINDS): it names the positions ("pixel", "step") and the plotted axis."""
        sample = KINDS.get(kind, KINDS["image"])
        encoding = _Encoding(enabled, num_bands, max_freq, max(1, min(sides)), input_axis, sample)
        if encoding == self.encoding:
            return
        self.encoding = encoding
        one, many = sample.position, sample.position + "s"
        self.note.setToolTip(_nyquist_tip(one))
        self.toggle.setToolTip(f"Plot the encoding's values along {_axis(sample)} of the {sample.noun}.")
        self.setEnabled(enabled)
        self.note.setVisible(enabled)
        self.toggle.setVisible(enabled)
        if not enabled:
            self.channels.setText(f"Off: no position channels are added, so the model sees the {many} as an "
                                  "unordered set.")
            self._show_plot(False)
            return
        added = added_channels(input_axis, num_bands)
        self.channels.setText(
            f"Adds {input_axis} × (2 × {num_bands} + 1) = <b>{added}</b> channels to each {one} "
            f"(per axis: {num_bands} sines, {num_bands} cosines and the coordinate)."
        )
        if sample.positions_from == "points":  # each point's own coordinates: no grid, nothing to alias on
            top = max_freq / 2
            self.note.setText(f"Each point's own x, y and z (in [-1, 1]) are encoded, not a place on a grid, so no "
                              f"band aliases; the fastest turns {top:g} times across the cloud, so points about "
                              f"{1 / top:.2g} of its radius apart get clearly different codes.")
            self.note.setStyleSheet("color: gray;")
            self._show_plot(self.toggle.isChecked())
            return
        check = check_frequencies(encoding.side, max_freq, num_bands, position=one)
        mark = "⚠ " if check.level in NOTE_STYLES else ""
        self.note.setText(mark + check.sentence)
        self.note.setStyleSheet(NOTE_STYLES.get(check.level, "color: gray;"))
        self._show_plot(self.toggle.isChecked())

    # -- the plot ------------------------------------------------------------------------------
    def _toggled(self, on: bool) -> None:
        self.toggle.setText("Hide encoding" if on else "Show encoding")
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        self._show_plot(on)

    def _show_plot(self, on: bool) -> None:
        on = on and self.encoding is not None and self.encoding.enabled
        if on and self.plot is None:
            self._make_plot()
        if self.plot is not None:
            self.plot.setVisible(on)
        self.caption.setVisible(on)
        if on:
            self._draw()

    def _make_plot(self) -> None:
        self.plot = pg.PlotWidget()
        self.plot.setObjectName("fourierPlot")
        self.plot.setFixedHeight(PLOT_HEIGHT)
        item = self.plot.getPlotItem()
        item.setMouseEnabled(x=False, y=False)  # a picture of a formula: nothing to pan or zoom
        item.setMenuEnabled(False)
        item.hideButtons()
        item.setYRange(-1.05, 1.05, padding=0)
        item.getAxis("left").setTicks([[(-1, "−1"), (0, "0"), (1, "1")]])
        item.getAxis("left").setWidth(22)
        item.showGrid(x=True, y=False, alpha=0.25)
        self._coordinate = item.plot()
        self._layout.insertWidget(self._layout.indexOf(self.caption), self.plot)
        self._apply_palette()

    def _draw(self) -> None:
        e = self.encoding
        # Smooth curves, not straight lines between a few pixels: a sine drawn through 8 samples is a
        # zigzag, and a band above the Nyquist limit would look like the slower band it aliases to.
        positions, sines, cosines = axis_encoding(max(CURVE_POINTS, e.side), e.max_freq, e.num_bands)
        pixels, pixel_sines, _ = axis_encoding(e.side, e.max_freq, e.num_bands)
        item = self.plot.getPlotItem()
        # Purple (band 1) to yellow (the fastest band), as in the attention maps' colour scale.
        shades = [k / max(1, e.num_bands - 1) for k in range(e.num_bands)]
        colours = pg.colormap.get("viridis").map(shades, mode="qcolor") if shades else []
        scale = max(1.0, self.devicePixelRatioF())  # pyqtgraph's widths are device pixels: as thick at 2× as at 1×
        while len(self._curves) < e.num_bands:
            self._curves.append((item.plot(), item.plot(), item.plot(pen=None, symbol="o", symbolSize=5,
                                                                     symbolPen=None)))
        dots = e.side <= SYMBOLS_UP_TO
        for k, (sine, cosine, samples) in enumerate(self._curves):
            if k >= e.num_bands:
                for curve in (sine, cosine, samples):
                    curve.setData([], [])
                continue
            colour = colours[k]
            sine.setData(positions, sines[k], pen=pg.mkPen(colour, width=1.5 * scale))
            cosine.setData(positions, cosines[k], pen=pg.mkPen(colour, width=1.5 * scale, style=Qt.PenStyle.DashLine))
            if dots:
                samples.setData(pixels, pixel_sines[k], symbolBrush=colour)
            else:
                samples.setData([], [])
        self._coordinate.setData(positions, positions, pen=pg.mkPen((150, 150, 150), width=scale, style=Qt.PenStyle.DotLine))
        item.setXRange(-1, 1, padding=0.02)
        many = e.kind.position + "s"
        at_pixels = f"; the dots are the sines' values at the {e.side} {many}, all the model sees" if dots else ""
        bands = {0: "no bands", 1: "band 1"}.get(e.num_bands, f"band 1 (purple) to {e.num_bands} (yellow)")
        self.caption.setText(
            f"Along {_axis(e.kind)} of {e.side} {many}, x from −1 to 1: each band's sine (solid) and cosine (dashed), "
            f"{bands}; dotted grey is the coordinate itself{at_pixels}."
        )

    # -- light and dark ------------------------------------------------------------------------
    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 (Qt override)
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange) and self.plot is not None:
            self._apply_palette()
        super().changeEvent(event)

    def _apply_palette(self) -> None:
        """The plot's background and axes follow the form's palette, so a dark desktop gets a dark plot."""
        background = self.palette().color(QPalette.ColorRole.Base)
        foreground = self.palette().color(QPalette.ColorRole.Text)
        self.plot.setBackground(background)
        _plotting.style_plot(self.plot.getPlotItem(), foreground)
