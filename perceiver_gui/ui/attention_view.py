"""Where the model looks: a non-modal dialog with an image's cross-attention maps.

The maps are computed in a superqt worker (`compute_attention`), which hands back plain numpy arrays;
torch is only imported there, so opening the window never waits for it. The dialog shows the image as
the model saw it, the attention of one cross-attend layer and head averaged over latents as a heat map
on the image, and the maps of the latents whose attention is most concentrated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLayout,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

__all__ = ["AttentionDialog", "AttentionResult", "compute_attention", "concentrated_latents"]

VIEW = 224  # side of the image and heat map views, in pixels
TILE = 88  # side of each latent's map
LATENTS_SHOWN = 8
ALL_HEADS = -1


@dataclass(frozen=True, slots=True)
class AttentionResult:
    """What crosses from the worker: numpy arrays and strings only."""

    name: str
    top: tuple[tuple[str, float], ...] = ()
    image: np.ndarray | None = None  # uint8 (H, W, C), the image exactly as the model saw it
    maps: tuple[np.ndarray, ...] = ()  # per cross-attend layer, float32 (heads, latents, H, W); each map sums to 1
    error: str = ""  # one sentence when the image could not be read


def compute_attention(predictor, name: str, source, top_k: int = 5) -> AttentionResult:
    """Run in a worker: the prediction and attention maps for one image (a path or encoded bytes)."""
    from perceiver_gui.core.images import ImageError

    try:
        result = predictor.attention(source, top_k=top_k)
    except ImageError as exc:
        return AttentionResult(name, error=str(exc))
    image = result.image.permute(1, 2, 0).contiguous().numpy()
    maps = tuple(m.float().numpy().astype(np.float32, copy=True) for m in result.maps)
    return AttentionResult(name, tuple(result.prediction.top), image, maps)


def concentrated_latents(maps: np.ndarray, count: int = LATENTS_SHOWN) -> np.ndarray:
    """Indices of the `count` latents (maps: latents × H × W) with the lowest attention entropy."""
    flat = maps.reshape(maps.shape[0], -1).astype(np.float64)
    entropy = -(flat * np.log(np.clip(flat, 1e-12, None))).sum(axis=1)
    return np.argsort(entropy, kind="stable")[:count]


def _lookup_table() -> np.ndarray:
    import pyqtgraph as pg  # with the dialog, not at launch

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
        self.heat: np.ndarray | None = None  # the shown mean map (H, W), before display normalisation
        self.latents: np.ndarray = np.zeros(0, dtype=int)  # indices of the latents in the grid
        self.latent_maps: np.ndarray | None = None  # their maps (k, H, W), before display normalisation
        self._lut = _lookup_table()

        self.status = QLabel("Computing attention…")
        self.status.setObjectName("attentionStatus")
        self.status.setWordWrap(True)

        self.layer = QSpinBox()
        self.layer.setPrefix("cross-attend layer ")
        self.layer.setToolTip("Which cross-attention layer (the model reads the image once per layer).")
        self.head = QComboBox()
        self.head.setToolTip("Which cross-attention head, or all heads averaged.")
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(65)
        self.opacity.setFixedWidth(120)
        self.opacity.setToolTip("How strongly the heat map covers the image.")
        controls = QHBoxLayout()
        self._layer_label = QLabel("Layer")
        for w in (self._layer_label, self.layer, QLabel("Head"), self.head):
            controls.addWidget(w)
        controls.addSpacing(16)
        controls.addWidget(QLabel("Overlay"))
        controls.addWidget(self.opacity)
        controls.addStretch(1)
        self.controls = QWidget()
        self.controls.setLayout(controls)
        controls.setContentsMargins(0, 0, 0, 0)

        self.image_view = QLabel()
        self.heat_view = QLabel()
        views = QGridLayout()
        for column, (view, caption) in enumerate(((self.image_view, "The image as the model sees it"),
                                                   (self.heat_view, "Attention, averaged over latents"))):
            view.setFixedSize(VIEW, VIEW)
            view.setAlignment(Qt.AlignmentFlag.AlignCenter)
            views.addWidget(QLabel(caption), 0, column)
            views.addWidget(view, 1, column)
        self.legend = QLabel()
        self.legend.setStyleSheet("color: gray;")

        self.tiles_title = QLabel()
        self.tiles = QGridLayout()
        self.tiles.setSpacing(6)
        self._tile_views: list[tuple[QLabel, QLabel]] = []
        for i in range(LATENTS_SHOWN):
            picture, caption = QLabel(), QLabel()
            picture.setFixedSize(TILE, TILE)
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
        self.opacity.valueChanged.connect(self._redraw)

    # -- worker results (GUI-thread slots) -----------------------------------------------------
    def show_result(self, result: AttentionResult) -> None:
        if result.error:
            self.show_error(result.error)
            return
        self.result = result
        label, prob = result.top[0]
        self.setWindowTitle(f"Attention — {result.name} — {label} ({prob:.0%})")
        layers = len(result.maps)
        heads, latents, h, w = result.maps[0].shape
        self.status.setText(
            f"Predicted <b>{label}</b> ({prob:.1%}). Each of the model's {latents} latents spreads its attention "
            f"over the {h}×{w} input grid (each map sums to 1); brighter means more attention."
        )
        from superqt.utils import signals_blocked

        with signals_blocked(self.layer), signals_blocked(self.head):
            self.layer.setRange(1, layers)
            self.head.clear()
            self.head.addItem("all (mean)", ALL_HEADS)
            for i in range(heads):
                self.head.addItem(f"{i + 1} of {heads}", i)
        # One layer needs no chooser; one head needs none beyond "all".
        self.layer.setVisible(layers > 1)
        self._layer_label.setVisible(layers > 1)
        self.head.setEnabled(heads > 1)
        self.image_view.setPixmap(QPixmap.fromImage(_to_qimage(self._rgb(result.image), VIEW)))
        self.body.show()
        self._redraw()
        self.adjustSize()

    def show_error(self, message: str) -> None:
        self.result = None
        self.body.hide()
        self.status.setText(f"<span style='color:#d03030'>{_escape(message)}</span>")

    def show_exception(self, exc: BaseException) -> None:
        self.show_error(f"Could not compute the attention maps: {type(exc).__name__}: {exc}")

    # -- drawing -------------------------------------------------------------------------------
    def current_maps(self) -> np.ndarray:
        """(latents, H, W) of the chosen layer and head (the mean over heads for "all")."""
        maps = self.result.maps[self.layer.value() - 1]
        head = self.head.currentData()
        return maps.mean(axis=0) if head in (None, ALL_HEADS) else maps[head]

    def _redraw(self) -> None:
        if self.result is None:
            return
        maps = self.current_maps()
        self.heat = maps.mean(axis=0)
        base = self._rgb(self.result.image).astype(np.float32)
        # The image in grey under the heat map, so the colours read as attention only.
        grey = np.repeat(base.mean(axis=2, keepdims=True), 3, axis=2)
        # The colour covers the image in proportion to the attention, so the image shows through where
        # the latents do not look.
        alpha = self.opacity.value() / 100 * self._scaled(self.heat)[..., None]
        overlay = (1 - alpha) * grey + alpha * self._colour(self.heat)
        self.heat_view.setPixmap(QPixmap.fromImage(_to_qimage(overlay.clip(0, 255), VIEW)))
        self.legend.setText(
            f"Dark → yellow: no attention → the peak, {float(self.heat.max()):.1%} "
            f"(an even spread gives {1 / self.heat.size:.1%} each)."
        )

        self.latents = concentrated_latents(maps)
        self.latent_maps = maps[self.latents]
        self.tiles_title.setText(f"The {len(self.latents)} latents with the most concentrated attention "
                                 f"(each scaled to its own peak)")
        for (picture, caption), index, single in zip(self._tile_views, self.latents, self.latent_maps, strict=False):
            picture.setPixmap(QPixmap.fromImage(_to_qimage(self._colour(single), TILE)))
            caption.setText(f"latent {index + 1} · peak {float(single.max()):.0%}")
        for picture, caption in self._tile_views[len(self.latents):]:
            picture.clear()
            caption.clear()

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


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
