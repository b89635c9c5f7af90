"""Shared pieces of the UI tests: a tiny config that trains in a second, and real image files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from perceiver_gui.config import PRESETS, Config


def tiny_config(**updates) -> Config:
    """The digits preset shrunk to a model that trains an epoch in a fraction of a second on one core."""
    base = {
        "name": "tiny", "train.epochs": 2, "train.batch_size": 64, "train.threads": 1, "train.log_every": 1,
        "model.depth": 1, "model.num_latents": 8, "model.latent_dim": 16, "model.latent_heads": 1,
        "model.cross_dim_head": 8, "model.latent_dim_head": 8, "model.cross_heads": 1, "train.mixup": 0.0,
    }
    base.update(updates)
    return PRESETS["digits"].with_updates(base)


def digit_images(folder: Path, count: int = 2) -> list[Path]:
    """Real PNG files of scikit-learn digits, upscaled the way a person would save them."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        pixels = (digits.images[i] * (255 / 16)).astype(np.uint8)
        path = folder / f"digit_{digits.target[i]}_{i}.png"
        Image.fromarray(pixels, mode="L").resize((32, 32), Image.Resampling.NEAREST).save(path)
        paths.append(path)
    return paths


def drop_files(widget, paths):
    """Hand `widget` the drop event a file manager sends for these files."""
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDropEvent

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    widget.dropEvent(event)
    return event


def load_model(qtbot, widget, model):
    """Load a checkpoint into a classifier panel and wait until it is ready."""
    with qtbot.waitSignal(widget.model_loaded, timeout=30000):
        widget.load_checkpoint(model)


def turn_wheel(widget, notches: int = 3) -> None:
    """Send `widget` the wheel turn a mouse over its middle sends (notches of 15°, up)."""
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    centre = QPointF(widget.width() / 2, widget.height() / 2)
    event = QWheelEvent(centre, QPointF(widget.mapToGlobal(centre.toPoint())), QPoint(0, 0), QPoint(0, 120 * notches),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)
