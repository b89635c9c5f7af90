"""The dataset preview: class counts, sample images per class as training sees them, skipped files.

Opened from the form's Data tab before training, so a user sees that the folder holds what they think
(right classes, balanced, readable, the augmentation sensible) before spending minutes on a run. The
data is opened in a worker, exactly as training opens it (same loader, same cache, same augmentation).
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QLabel,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from perceiver_gui.config import DataConfig
from perceiver_gui.core.datasets import KINDS, kind_of
from perceiver_gui.ui import deferred
from perceiver_gui.ui.widgets import points_image, series_image, sound_image
from perceiver_gui.ui.workers import start_worker

__all__ = ["DataPreview"]

# The data stack (torch): imported in the preview's worker (ui/deferred.py), so the window never waits for it.
_data = deferred.module("perceiver_gui.core.data")

THUMB = 56  # thumbnail side in logical pixels; small images are scaled up without smoothing
PER_CLASS = 8  # sample images shown per class


class DataPreview(QDialog):
    """A non-modal dialog previewing the dataset `data` names."""

    def __init__(self, data: DataConfig, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Dataset preview")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.resize(640, 520)
        self.data = data
        self.header = QLabel("Opening the dataset…")
        self.header.setObjectName("previewHeader")
        self.header.setWordWrap(True)
        self.grid = QGridLayout()
        self.grid.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        page = QWidget()
        page.setLayout(self.grid)
        self.scroll = scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(page)
        self.skipped = QLabel()
        self.skipped.setObjectName("previewSkipped")
        self.skipped.setWordWrap(True)
        self.skipped.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.skipped.hide()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.header)
        layout.addWidget(scroll, 1)
        layout.addWidget(self.skipped)
        layout.addWidget(buttons)
        self.worker = None

    def load(self) -> None:
        """Open the data in a worker; the preview or the reason it failed appears when it is done."""
        self.worker = start_worker(_collect, self.data, yielded=self._progress, returned=self.show_preview,
                                   errored=self._failed, finished=self._done)

    def show_preview(self, preview) -> None:
        """Fill the dialog from a `core.data.Preview`."""
        total_train, total_test = sum(preview.train_counts), sum(preview.test_counts)
        val_counts = preview.val_counts or (0,) * len(preview.class_names)
        augmented = [a for a, on in (("random crops", self.data.crop_padding > 0), ("flips", self.data.hflip),
                                     ("time shifts", self.data.time_shift > 0), ("gains", self.data.gain_db > 0),
                                     ("turns about the up axis", self.data.rotate),
                                     (f"jitter σ {self.data.jitter:g}", self.data.jitter > 0)) if on]
        points = kind_of(self.data.dataset) is KINDS["points"]
        self.header.setText(
            f"<b>{html.escape(preview.name)}</b>: {len(preview.class_names)} classes · {total_train:,} training, "
            f"{sum(val_counts):,} validation and {total_test:,} test {kind_of(self.data.dataset).plural}"
            ". Samples are shown as training sees them"
            + (f" (with {' and '.join(augmented)})." if augmented else " (no augmentation).")
        )
        for row, (name, n_train, n_val, n_test, pixels) in enumerate(zip(
                preview.class_names, preview.train_counts, val_counts, preview.test_counts, preview.samples,
                strict=True)):
            label = QLabel(f"<b>{html.escape(name)}</b><br>{n_train:,} train · {n_val:,} validation · {n_test:,} test")
            label.setObjectName("previewClass")
            self.grid.addWidget(label, row, 0)
            for col, image in enumerate(pixels, 1):
                thumb = QLabel()
                thumb.setObjectName("previewThumb")
                if kind_of(self.data.dataset) is KINDS["audio"]:
                    thumb.setPixmap(QPixmap.fromImage(sound_image(image, THUMB)))
                elif points:
                    thumb.setPixmap(QPixmap.fromImage(points_image(image, THUMB)))
                else:
                    thumb.setPixmap(_pixmap(image) if image.ndim == 3 else QPixmap.fromImage(series_image(image, THUMB)))
                self.grid.addWidget(thumb, row, col)
        QTimer.singleShot(0, self, self._fit_width)  # once the new thumbnails are laid out
        if preview.skipped:
            shown = "<br>".join(html.escape(s) for s in preview.skipped[:20])
            more = f"<br>… and {len(preview.skipped) - 20} more" if len(preview.skipped) > 20 else ""
            self.skipped.setText(f"<b>Skipped {len(preview.skipped)} unreadable file(s):</b><br>{shown}{more}")
            self.skipped.show()

    def _fit_width(self) -> None:
        """Widen the dialog so a class's row of samples fits without a horizontal scroll bar (at 640 px about
        six and a half of eight showed), within the screen."""
        page = self.scroll.widget()
        page.adjustSize()
        frame = self.scroll.frameWidth() * 2 + self.scroll.verticalScrollBar().sizeHint().width()
        margins = self.layout().contentsMargins()
        wanted = page.sizeHint().width() + frame + margins.left() + margins.right()
        screen = self.screen().availableGeometry().width() if self.screen() is not None else wanted
        if wanted > self.width():
            self.resize(min(wanted, screen), self.height())

    def _progress(self, event) -> None:
        message = getattr(event, "message", None)  # a Log; download progress has done/total bytes
        if message is None and getattr(event, "total_bytes", 0):
            message = f"Downloading {event.name}: {event.done_bytes / event.total_bytes:.0%}"
        if message:
            self.header.setText(html.escape(message) + "…")

    def _failed(self, exc: BaseException) -> None:
        self.header.setText(f"Can't preview the data: {html.escape(str(exc))}")

    def _done(self) -> None:
        self.worker = None

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        if self.worker is not None:
            self.worker.quit()  # the loader stops at its next event; nothing is left running
        super().closeEvent(event)


def _pixmap(image) -> QPixmap:
    """A uint8 (H, W, C) array as a THUMB-sized pixmap, pixels kept sharp."""
    h, w, c = image.shape
    data = image.tobytes()
    fmt = QImage.Format.Format_Grayscale8 if c == 1 else QImage.Format.Format_RGB888
    qimage = QImage(data, w, h, w * c, fmt).copy()  # copy: the QImage must not outlive `data`
    return QPixmap.fromImage(qimage).scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                                            Qt.TransformationMode.FastTransformation)


def _collect(data: DataConfig):
    """In the worker: the dataset's events while it opens, then its Preview. A generator, so closing the dialog
    stops the loading at its next event."""
    return (yield from _data.preview_dataset(data, per_class=PER_CLASS))
