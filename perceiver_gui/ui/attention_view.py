"""Where the model looks: a non-modal dialog with an image's, a series' or a sound's cross-attention maps.

The maps are computed in a superqt worker (`ui/jobs/attention.compute_attention`), which hands back plain
numpy arrays; torch is only imported there. This module (numpy, pyqtgraph) is loaded with the first dialog. The dialog shows the image as
the model saw it, the attention of one cross-attend layer and head as a heat map on the image (the mean
or the max over latents, or one latent's own map), and a grid of the most distinct latents' maps;
clicking a tile shows that latent on the image. A series is shown as its line plot, the attention along
its time axis colouring the plot's background column by column. A sound is shown as the classifier draws it
(`sound_image`: its waveform or log-mel spectrogram), coloured along time the same way; a log-mel model's map
spans the spectrogram's mel × frame grid, like an image's. A point cloud is shown as its 2-D projection
(`points_image`), each point coloured by the attention it gets.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from html import escape

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QMouseEvent, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLayout,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt.utils import signals_blocked

from perceiver_gui.ui.widgets import points_image, series_image, sound_image

__all__ = ["ALL_LATENTS_MAX", "ALL_LATENTS_MEAN", "AttentionDialog", "AttentionResult", "SeriesRow",
           "distinct_latents"]

VIEW = 224  # side of the image and heat map views, in pixels
TILE = 88  # side of each latent's map
LATENTS_SHOWN = 8
ALL_HEADS = -1
ALL_LATENTS_MEAN = -1  # the latent chooser's two summaries; a latent's own index is 0 or more
ALL_LATENTS_MAX = -2
SELECTED = "border: 3px solid palette(highlight);"
UNSELECTED = "border: 3px solid transparent;"
POINTS_GREY = 170.0  # a point the latents ignore: mid grey, so the heat's dark and bright ends both stand out


@dataclass(frozen=True, slots=True)
class AttentionResult:
    """What crosses from the worker: numpy arrays and strings only."""

    name: str
    top: tuple[tuple[str, float], ...] = ()
    image: np.ndarray | None = None  # uint8 (H, W, C), the image exactly as the model saw it
    maps: tuple[np.ndarray, ...] = ()  # per cross-attend layer, float32 (heads, latents, H, W) or (…, L) for a
    # series; each map sums to 1
    error: str = ""  # one sentence when the image or series could not be read
    series: np.ndarray | None = None  # float32 (L, C), the series as read (a series model's result, not an image)
    # A sound model's result: float32 (L,) waveform or (mels, frames) log-mel spectrogram in dB, as sound_image
    # draws it; its maps are (…, L) or (…, frames) along time, or (…, mels, frames) for a log-mel grid model.
    sound: np.ndarray | None = None
    points: np.ndarray | None = None  # float32 (P, 3), a point cloud model's cloud as read; its maps are (…, P)


@dataclass(frozen=True, slots=True)
class SeriesRow:
    """A series to look at: row `row` (1-based, as predict names it: file#row) of a series file."""

    path: str
    row: int


def distinct_latents(maps: np.ndarray, count: int = LATENTS_SHOWN) -> np.ndarray:
    """Indices of up to `count` latents (maps: latents × H × W, each summing to 1) whose maps differ most.

    Greedy farthest-first: the most concentrated latent (lowest entropy) comes first, then, again and
    again, the latent furthest from its nearest already-picked one in total variation distance (the
    share of attention that would have to move to turn one map into the other, 0..1). Distances within
    0.001 count as equal and the more concentrated latent wins. A trained model has many latents that
    look at the same place; ranking by concentration alone fills the grid with near-copies of one map.
    """
    flat = maps.reshape(maps.shape[0], -1).astype(np.float32, copy=False)  # 0.001 is all the precision it needs
    entropy = -(flat * np.log(np.clip(flat, 1e-12, None))).sum(axis=1)
    chosen = [int(np.argmin(entropy))]
    nearest = np.full(len(flat), np.inf)
    while len(chosen) < min(count, len(flat)):
        nearest = np.minimum(nearest, 0.5 * np.abs(flat - flat[chosen[-1]]).sum(axis=1))
        nearest[chosen] = -1.0
        order = np.lexsort((entropy, -np.round(nearest, 3)))  # the last key sorts first
        chosen.append(int(order[0]))
    return np.asarray(chosen, dtype=int)


def _along_plot(heat: np.ndarray, width: int) -> np.ndarray:
    """(1, width): a series' attention (L,) at each column of its line plot, which puts step i at
    x = i × (width - 1) / (L - 1) (`series_image`)."""
    steps = len(heat)
    columns = np.rint(np.arange(width) * (steps - 1) / max(1, width - 1)).astype(int)
    return heat[columns][None, :]


def _share(p: float, digits: int = 1) -> str:
    """A share of attention for people: `digits` decimals of a percent, or two significant digits below the
    last decimal's unit, which would round it to 0 or double it (a 16,000-sample clip's even spread is 0.00625 %)."""
    return f"{p:.{digits}%}" if p == 0 or p >= 10 ** -(digits + 2) else f"{p * 100:.2g}%"


def _along_sound(heat: np.ndarray, width: int, *, waveform: bool) -> np.ndarray:
    """(1, width): a sound's attention along time (L,) at each column of its `sound_image`, the mean over the
    samples or frames that column draws (a waveform's columns start at rounded, a spectrogram's at floored
    multiples of L / width)."""
    steps = len(heat)
    starts = (np.round if waveform else np.floor)(np.arange(width) * steps / width).astype(int).clip(0, steps - 1)
    counts = np.maximum(np.diff(np.append(starts, steps)), 1)  # a column sharing its step with the next reads it alone
    return (np.add.reduceat(heat, starts) / counts)[None, :]


def _on_spectrogram(heat: np.ndarray, side: int) -> np.ndarray:
    """(side, side): a log-mel model's map (mels, frames) where `sound_image` draws each cell, low mels at the
    bottom."""
    mels, frames = heat.shape
    rows = ((side - 1 - np.arange(side)) * mels // side).clip(0, mels - 1)
    cols = (np.arange(side) * frames // side).clip(0, frames - 1)
    return heat[rows[:, None], cols[None, :]]


def _rgb_array(drawn: QImage, side: int) -> np.ndarray:
    """float32 (side, side, 3): a side × side picture's pixels."""
    plot = drawn.convertToFormat(QImage.Format.Format_RGB888)
    rows = np.frombuffer(plot.constBits(), np.uint8).reshape(side, plot.bytesPerLine())
    return rows[:, :3 * side].reshape(side, side, 3).astype(np.float32)


class _Tile(QLabel):
    """One latent's map in the grid; a click shows that latent on the image."""

    clicked = Signal()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self.pixmap() is not None and not self.pixmap().isNull():
            self.clicked.emit()
        super().mousePressEvent(event)


def _lookup_table() -> np.ndarray:
    return pg.colormap.get("inferno").getLookupTable(0.0, 1.0, 256, alpha=False).astype(np.uint8)


def _to_qimage(rgb: np.ndarray, side: int) -> QImage:
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, _ = rgb.shape
    image = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()  # copy: own the pixels
    # Nearest-neighbour keeps the model's grid visible (an 8×8 digit stays 64 honest squares).
    return image.scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation)


class AttentionDialog(QDialog):
    """Non-modal; shows "Computing…" until `show_result` or `show_error` arrives from the worker."""

    def __init__(self, name: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setModal(False)
        self.setWindowTitle(f"Attention — {name}")
        self.result: AttentionResult | None = None
        self.heat: np.ndarray | None = None  # the map on the image (H, W), before display normalisation
        self.latents: np.ndarray = np.zeros(0, dtype=int)  # indices of the latents in the grid
        self.latent_maps: np.ndarray | None = None  # their maps (k, H, W), before display normalisation
        self._lut = _lookup_table()
        self._grids: dict[tuple[int, int], np.ndarray] = {}  # (layer, head) -> the grid's latents

        self.status = QLabel("Computing attention…")
        self.status.setObjectName("attentionStatus")
        self.status.setWordWrap(True)

        self.layer = QSpinBox()
        self.layer.setPrefix("cross-attend layer ")
        self.layer.setToolTip("Which cross-attention layer (the model reads the image once per layer).")
        self.head = QComboBox()
        self.head.setToolTip("Which cross-attention head, or all heads averaged.")
        self.summary = QComboBox()
        self.summary.addItem("mean over latents", ALL_LATENTS_MEAN)
        self.summary.addItem("max over latents", ALL_LATENTS_MAX)
        self.summary.addItem("one latent:", 0)
        self.summary.setToolTip(
            "What the map on the image shows: the attention averaged over all latents, the most any latent "
            "pays each position, or one latent's own map (or click a latent's tile below)."
        )
        self.latent = QSpinBox()
        self.latent.setPrefix("latent ")
        self.latent.setToolTip("Which latent's map to show on the image.")
        keep = self.latent.sizePolicy()
        keep.setRetainSizeWhenHidden(True)  # the dialog keeps its size when the latent chooser comes and goes
        self.latent.setSizePolicy(keep)
        self.latent.hide()
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(65)
        self.opacity.setFixedWidth(120)
        self.opacity.setToolTip("How strongly the heat map covers the image.")
        controls = QHBoxLayout()
        self._layer_label = QLabel("Layer")
        for w in (self._layer_label, self.layer, QLabel("Head"), self.head):
            controls.addWidget(w)
        controls.addSpacing(12)
        for w in (QLabel("Show"), self.summary, self.latent):
            controls.addWidget(w)
        controls.addStretch(1)
        self.controls = QWidget()
        self.controls.setLayout(controls)
        controls.setContentsMargins(0, 0, 0, 0)

        self.image_view = QLabel()
        self.heat_view = QLabel()
        self.heat_caption = QLabel()
        # As wide as its longest text, so the dialog does not change size with the choice.
        self.heat_caption.setMinimumWidth(max(self.heat_caption.fontMetrics().horizontalAdvance(text) for text in (
            "Attention, averaged over latents", "Attention, the max over latents", "Attention of latent 0000")))
        overlay_row = QHBoxLayout()
        overlay_row.addWidget(self.heat_caption, 1)
        overlay_row.addWidget(QLabel("Overlay"))
        overlay_row.addWidget(self.opacity)
        views = QGridLayout()
        self.input_caption = QLabel("The image as the model sees it")
        views.addWidget(self.input_caption, 0, 0)
        views.addLayout(overlay_row, 0, 1)
        for column, view in enumerate((self.image_view, self.heat_view)):
            view.setFixedSize(VIEW, VIEW)
            view.setAlignment(Qt.AlignmentFlag.AlignCenter)
            views.addWidget(view, 1, column)
        self.legend = QLabel()
        self.legend.setStyleSheet("color: gray;")
        self.legend.setWordWrap(True)
        for label in (self.status, self.legend):  # wrapped to the pictures' width, never widening the dialog
            policy = label.sizePolicy()
            policy.setHorizontalPolicy(QSizePolicy.Policy.Ignored)
            label.setSizePolicy(policy)
        self.legend.setMinimumHeight(2 * self.legend.fontMetrics().lineSpacing())  # one line or two, same height

        self.tiles_title = QLabel()
        self.tiles_title.setWordWrap(True)
        self.tiles = QGridLayout()
        self.tiles.setSpacing(4)
        self._tile_views: list[tuple[_Tile, QLabel]] = []
        for i in range(LATENTS_SHOWN):
            picture, caption = _Tile(), QLabel()
            picture.setFixedSize(TILE + 6, TILE + 6)  # room for the selection border around the map
            picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
            picture.setStyleSheet(UNSELECTED)
            picture.setCursor(Qt.CursorShape.PointingHandCursor)
            picture.setToolTip("This latent's map, scaled to its own peak. Click to show it on the image.")
            picture.clicked.connect(partial(self._tile_clicked, i))
            caption.setStyleSheet("color: gray;")
            self.tiles.addWidget(picture, 2 * (i // 4), i % 4)
            self.tiles.addWidget(caption, 2 * (i // 4) + 1, i % 4)
            self._tile_views.append((picture, caption))

        self.body = QWidget()
        body = QVBoxLayout(self.body)
        body.setContentsMargins(0, 0, 0, 0)
        body.addWidget(self.controls)
        body.addLayout(views)
        body.addWidget(self.legend)
        body.addSpacing(6)
        body.addWidget(self.tiles_title)
        body.addLayout(self.tiles)
        self.body.hide()

        layout = QVBoxLayout(self)
        # The dialog takes its contents' size: fixed-size pictures and wrapped text otherwise overlap.
        layout.setSizeConstraint(QLayout.SizeConstraint.SetFixedSize)
        layout.addWidget(self.status)
        layout.addWidget(self.body)
        layout.addStretch(1)

        self.layer.valueChanged.connect(self._redraw)
        self.head.currentIndexChanged.connect(self._redraw)
        self.summary.currentIndexChanged.connect(self._redraw)
        self.latent.valueChanged.connect(self._redraw)
        self.opacity.valueChanged.connect(self._redraw)

    # -- worker results (GUI-thread slots) -----------------------------------------------------
    def show_result(self, result: AttentionResult) -> None:
        if result.error:
            self.show_error(result.error)
            return
        self.result = result
        self._grids.clear()
        label, prob = result.top[0]
        self.setWindowTitle(f"Attention — {result.name} — {label} ({prob:.0%})")
        layers = len(result.maps)
        heads, latents, *grid = result.maps[0].shape
        if result.series is not None:
            over = f"the {grid[0]:,} time steps of the series, shown as the colour behind its plot"
        elif result.sound is not None and len(grid) == 2:
            over = f"its {grid[0]:,} mels × {grid[1]:,} frames, shown as the colour over its spectrogram"
        elif result.points is not None:
            over = f"its {grid[0]:,} points, shown as each point's colour"
        elif result.sound is not None:
            over = (f"the {grid[0]:,} samples of its waveform, shown as the colour over it" if result.sound.ndim == 1
                    else f"the {grid[0]:,} frames of its spectrogram, shown as the colour over it")
        else:
            over = f"the {grid[0]}×{grid[1]} input grid"
        self.status.setText(
            f"Predicted <b>{label}</b> ({prob:.1%}). Each of the model's {latents} latents spreads its attention "
            f"over {over} (each map sums to 1); brighter means more attention."
        )
        self.input_caption.setText("The series as the model reads it" if result.series is not None
                                   else "The sound as the model hears it" if result.sound is not None
                                   else "The cloud as the model reads it" if result.points is not None
                                   else "The image as the model sees it")
        with signals_blocked(self.layer), signals_blocked(self.head), signals_blocked(self.latent):
            self.layer.setRange(1, layers)
            self.head.clear()
            self.head.addItem("all (mean)", ALL_HEADS)
            for i in range(heads):
                self.head.addItem(f"{i + 1} of {heads}", i)
            self.latent.setRange(1, latents)
            self.latent.setSuffix(f" of {latents}")
        # One layer needs no chooser; one head needs none beyond "all".
        self.layer.setVisible(layers > 1)
        self._layer_label.setVisible(layers > 1)
        self.head.setEnabled(heads > 1)
        self.image_view.setPixmap(QPixmap.fromImage(_to_qimage(self._base(VIEW), VIEW)))
        self.body.show()
        self._redraw()
        self.adjustSize()

    def show_error(self, message: str) -> None:
        self.result = None
        self.body.hide()
        self.status.setText(f"<span style='color:#d03030'>{escape(message)}</span>")

    def show_exception(self, exc: BaseException) -> None:
        self.show_error(f"Could not compute the attention maps: {type(exc).__name__}: {exc}")

    # -- the latent choice ---------------------------------------------------------------------
    def selected_latent(self) -> int:
        """The latent shown on the image (0-based), or ALL_LATENTS_MEAN / ALL_LATENTS_MAX."""
        mode = self.summary.currentData()
        return self.latent.value() - 1 if mode == 0 else mode

    def select_latent(self, latent: int) -> None:
        """Show one latent (0-based) on the image, or ALL_LATENTS_MEAN / ALL_LATENTS_MAX."""
        with signals_blocked(self.summary), signals_blocked(self.latent):
            if latent >= 0:
                self.latent.setValue(latent + 1)
            self.summary.setCurrentIndex(self.summary.findData(min(latent, 0)))
        self._redraw()

    def _tile_clicked(self, slot: int) -> None:
        if slot < len(self.latents):
            self.select_latent(int(self.latents[slot]))

    # -- drawing -------------------------------------------------------------------------------
    def current_maps(self) -> np.ndarray:
        """(latents, H, W) of the chosen layer and head (the mean over heads for "all")."""
        maps = self.result.maps[self.layer.value() - 1]
        head = self.head.currentData()
        return maps.mean(axis=0) if head in (None, ALL_HEADS) else maps[head]

    def _redraw(self) -> None:
        self.latent.setVisible(self.summary.currentData() == 0)
        if self.result is None:
            return
        maps = self.current_maps()
        chosen = self.selected_latent()
        even = f"an even spread gives {_share(1 / maps[0].size)} each"
        if chosen == ALL_LATENTS_MEAN:
            self.heat = maps.mean(axis=0)
            self.heat_caption.setText("Attention, averaged over latents")
            legend = f"Dark → yellow: no attention → the peak, {_share(float(self.heat.max()))} ({even})."
        elif chosen == ALL_LATENTS_MAX:
            self.heat = maps.max(axis=0)
            self.heat_caption.setText("Attention, the max over latents")
            legend = (f"Each position shows the most attention any one latent pays it; dark → yellow: "
                      f"none → {_share(float(self.heat.max()))} ({even}).")
        else:
            self.heat = maps[chosen]
            self.heat_caption.setText(f"Attention of latent {chosen + 1}")
            legend = (f"Latent {chosen + 1}'s own map; dark → yellow: no attention → its peak, "
                      f"{_share(float(self.heat.max()))} ({even}).")
        overlay = self._overlay(self.heat, VIEW, self.opacity.value() / 100)
        self.heat_view.setPixmap(QPixmap.fromImage(_to_qimage(overlay, VIEW)))
        self.legend.setText(legend)

        # The grid depends only on the layer and head: the overlay slider and the latent choice reuse it.
        key = (self.layer.value(), self.head.currentData())
        if key not in self._grids:
            self._grids[key] = distinct_latents(maps)
        self.latents = self._grids[key]
        self.latent_maps = maps[self.latents]
        self.tiles_title.setText(
            f"{len(self.latents)} latents that look at different places: the most concentrated first, then each "
            f"the most unlike those before it. Click one to show it above."
        )
        for (picture, caption), index, single in zip(self._tile_views, self.latents, self.latent_maps, strict=False):
            # A series' or sound's latent over its picture (a strip of colour alone would not say where it is).
            tile = self._colour(single) if self.result.image is not None else self._overlay(single, TILE, 0.9)
            picture.setPixmap(QPixmap.fromImage(_to_qimage(tile, TILE)))
            picture.setStyleSheet(SELECTED if index == chosen else UNSELECTED)
            caption.setText(f"latent {index + 1} · peak {_share(float(single.max()), 0)}")
        for picture, caption in self._tile_views[len(self.latents):]:
            picture.clear()
            picture.setStyleSheet(UNSELECTED)
            caption.clear()

    def _overlay(self, heat: np.ndarray, side: int, opacity: float) -> np.ndarray:
        """The input in grey under the heat map, so the colours read as attention only; the colour covers it in
        proportion to the attention, so the input shows through where the latents do not look."""
        if self.result.points is not None:  # the colour is the points', not the page's
            alpha = opacity * self._scaled(heat)[:, None]
            colours = (1 - alpha) * POINTS_GREY + alpha * self._colour(heat)
            return _rgb_array(points_image(self.result.points, side, colours.clip(0, 255), on_top=heat), side)
        base = self._base(side)
        if self.result.series is not None:
            heat = _along_plot(heat, base.shape[1])
        elif self.result.sound is not None:
            heat = (_on_spectrogram(heat, side) if heat.ndim == 2
                    else _along_sound(heat, side, waveform=self.result.sound.ndim == 1))
        grey = np.repeat(base.mean(axis=2, keepdims=True), 3, axis=2)
        alpha = opacity * self._scaled(heat)[..., None]
        return ((1 - alpha) * grey + alpha * self._colour(heat)).clip(0, 255)

    def _base(self, side: int) -> np.ndarray:
        """float32 (h, w, 3): the image (at its own size), or the series' line plot or the sound's picture at
        side × side."""
        if self.result.image is not None:
            return self._rgb(self.result.image).astype(np.float32)
        if self.result.points is not None:
            drawn = points_image(self.result.points, side)
        elif self.result.series is not None:
            drawn = series_image(self.result.series, side)
        else:
            drawn = sound_image(self.result.sound, side)
        return _rgb_array(drawn, side)

    def _colour(self, heat: np.ndarray) -> np.ndarray:
        return self._lut[(self._scaled(heat) * 255).astype(np.uint8)].astype(np.float32)

    @staticmethod
    def _scaled(heat: np.ndarray) -> np.ndarray:
        """The map divided by its peak (0..1), for display only."""
        peak = float(heat.max())
        scaled = heat / peak if peak > 0 and np.isfinite(peak) else np.zeros_like(heat)
        return np.nan_to_num(scaled).clip(0, 1)

    @staticmethod
    def _rgb(image: np.ndarray) -> np.ndarray:
        return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[..., :3]


