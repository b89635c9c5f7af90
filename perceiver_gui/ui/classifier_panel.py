"""The classifier: drop images, folders or a .safetensors model; see each image with its top-k
predictions as probability bars, newest first. A series model takes series files (a line plot each), a
sound model WAV, FLAC and OGG files (its spectrogram or waveform each), mixed with anything else.

Loading a model and predicting both run in superqt workers, one prediction job at a time (later
requests queue). A file that cannot be read becomes an inline error entry, never a dialog.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from html import escape
from pathlib import Path

from PySide6.QtCore import QBuffer, QIODevice, Qt, Signal
from PySide6.QtGui import QImage, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from perceiver_gui.core.reading import IMAGE_SUFFIXES, POINT_SUFFIXES, SERIES_SUFFIXES, SOUND_SUFFIXES
from perceiver_gui.ui import deferred
from perceiver_gui.ui.workers import start_worker

__all__ = ["ClassifierPanel", "ResultEntry", "Source"]

# Loaded when first used, not at launch (ui/deferred.py): the work done in workers (torch, PIL), and the
# attention dialog (numpy, pyqtgraph).
_jobs = deferred.module("perceiver_gui.ui.jobs.classify")
_attention_view = deferred.module("perceiver_gui.ui.attention_view", plotting=True)

THUMB = 72  # thumbnail side in pixels
CHUNK = 32  # images per prediction batch handed back to the UI, so big folders appear progressively
MODEL_SUFFIX = ".safetensors"


@dataclass(frozen=True)
class Source:
    """One thing to classify: a file path, or encoded image bytes (pasted) with a display name."""

    name: str
    path: str = ""
    data: bytes = b""
    row: int = 0  # the series' row (1-based) in the series file `path`; 0 for an image


class ResultEntry(QFrame):
    """One image: thumbnail, name, and top-k bars — or the reason it could not be classified."""

    attention_requested = Signal()  # the "Attention" button, or a double-click on a classified entry

    def __init__(self, name: str, path: str, top: tuple[tuple[str, float], ...], error: str, thumb: QImage,
                 parent=None, *, data: bytes = b"", model: str = "", model_path: str = "", row: int = 0):
        super().__init__(parent)
        self.name = name
        self.path = path
        self.row = row  # a series' row in the file `path` (1-based); 0 for an image
        self.model = model  # the name of the model that gave this result (its run's name)
        self.model_path = model_path
        self.data = data  # a pasted image's bytes, so its attention can be computed later
        self.top = top
        self.error = error
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)

        self.picture = picture = QLabel()
        picture.setFixedSize(THUMB, THUMB)
        picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        if not thumb.isNull():
            picture.setPixmap(QPixmap.fromImage(thumb))
        else:
            picture.setText("?")
            picture.setStyleSheet("border: 1px dashed gray; color: gray; font-size: 24px;")

        title = QLabel(f"<b>{escape(name)}</b>")
        title.setToolTip(path or name)
        title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        right = QVBoxLayout()
        right.setSpacing(2)
        right.addWidget(title)
        if model:
            by = QLabel(f"model {escape(model)}")
            by.setObjectName("entryModel")
            by.setToolTip(model_path)
            by.setStyleSheet("color: gray;")
            right.addWidget(by)
        if error:
            message = QLabel(error)
            message.setObjectName("entryError")
            message.setWordWrap(True)
            message.setStyleSheet("color: #d03030;")
            right.addWidget(message)
        else:
            bars = QGridLayout()
            bars.setHorizontalSpacing(8)
            bars.setVerticalSpacing(1)
            for row, (label, prob) in enumerate(top):
                name_label = QLabel(label)
                name_label.setMinimumWidth(60)
                if row == 0:
                    name_label.setText(f"<b>{escape(label)}</b>")
                bar = QProgressBar()
                bar.setRange(0, 1000)
                bar.setValue(int(round(1000 * prob)) if math.isfinite(prob) else 0)
                bar.setTextVisible(False)  # beside it instead: Fusion centres it, under the filled part's edge
                bar.setMaximumHeight(16)
                bar.setToolTip(f"{label}: {prob:.2%}")
                share = QLabel(f"{prob:.1%}")
                share.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                share.setMinimumWidth(share.fontMetrics().horizontalAdvance("100.0%"))
                bars.addWidget(name_label, row, 0)
                bars.addWidget(bar, row, 1)
                bars.addWidget(share, row, 2)
            bars.setColumnStretch(1, 1)
            right.addLayout(bars)
            self.attention_button = QPushButton("Attention")
            self.attention_button.setToolTip("Show where the model looked in this image (or double-click the entry).")
            self.attention_button.clicked.connect(self.attention_requested)
            right.addWidget(self.attention_button, 0, Qt.AlignmentFlag.AlignLeft)
        right.addStretch(1)

        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(picture, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(right, 1)

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802 (Qt override)
        if not self.error and self.top:
            self.attention_requested.emit()
        super().mouseDoubleClickEvent(event)



class _GroupTitle(QLabel):
    """The heading over one model's results: results of different models never run together unmarked."""

    def __init__(self, model: str, model_path: str):
        super().__init__(f"Results of the model <b>{escape(model)}</b>")
        self.model_path = model_path
        self.setObjectName("modelGroup")
        self.setToolTip(model_path)
        self.setContentsMargins(2, 6, 2, 0)


class ClassifierPanel(QWidget):
    model_loaded = Signal(str)  # checkpoint path
    message = Signal(str)  # a sentence for the status bar

    def __init__(self, *, top_k: int = 5, max_entries: int = 300, parent: QWidget | None = None):
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.max_entries = max_entries
        self.predictor = None
        self.model_path = ""
        self.model_name = ""  # the loaded model's run name, shown with each of its results
        self._load_worker = None
        self._predict_worker = None
        self._pending: list[list[Source]] = []
        self._attention_workers: list = []
        self._attention_done = 0

        self.model_info = QLabel("No model yet: train one, or open or drop a .safetensors model file here.")
        self.model_info.setObjectName("modelInfo")
        self.model_info.setWordWrap(True)
        self.open_model_button = QPushButton("Open model…")
        self.open_model_button.setToolTip("Load a model file (.safetensors) saved by a training run.")
        self.open_model_button.clicked.connect(self.open_model_dialog)
        self.open_images_button = QPushButton("Open files…")
        self.open_images_button.setToolTip("Choose files to classify: images, sounds, series or point clouds, as the model "
                                           "reads (or drop them, or paste an image with Ctrl+V).")
        self.open_images_button.clicked.connect(self.open_images_dialog)
        self.paste_button = QPushButton("Paste")
        self.paste_button.setToolTip("Classify the image or files on the clipboard (Ctrl+V).")
        self.paste_button.clicked.connect(self.paste)
        self.clear_button = QPushButton("Clear")
        self.clear_button.setToolTip("Remove all results.")
        self.clear_button.clicked.connect(self.clear)
        self.top_k = QSpinBox()
        self.top_k.setRange(1, 20)
        self.top_k.setValue(top_k)
        self.top_k.setPrefix("top ")
        self.top_k.setToolTip("How many of the most likely classes to show for each image.")

        buttons = QHBoxLayout()
        for w in (self.open_model_button, self.open_images_button, self.paste_button, self.clear_button):
            buttons.addWidget(w)
        buttons.addStretch(1)
        buttons.addWidget(self.top_k)

        self.busy = QLabel("")
        self.busy.setObjectName("busy")
        # Its line is kept while empty: otherwise every "Classifying…" would push the results down and
        # back, a visible jump and a relayout and repaint of the whole list on each drop.
        self.busy.setMinimumHeight(self.busy.fontMetrics().height())
        self.placeholder = QLabel("Drop images, sounds, series, point clouds, folders or a .safetensors model here")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setStyleSheet("color: gray; font-size: 15px; border: 2px dashed gray; border-radius: 8px; padding: 28px;")

        self._list = QWidget()
        self._entries = QVBoxLayout(self._list)
        self._entries.setContentsMargins(0, 0, 0, 0)
        self._entries.setSpacing(4)
        self._entries.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self._list)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll = scroll

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.model_info)
        layout.addLayout(buttons)
        layout.addWidget(self.busy)
        layout.addWidget(self.placeholder)
        layout.addWidget(scroll, 1)
        self.setMinimumSize(320, 300)

        paste = QShortcut(QKeySequence(QKeySequence.StandardKey.Paste), self)
        paste.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        paste.activated.connect(self.paste)

    # -- the typed API -------------------------------------------------------------------------
    def entries(self) -> list[ResultEntry]:
        """Result entries, newest first."""
        return [w for w in self._items() if isinstance(w, ResultEntry)]

    def group_titles(self) -> list[str]:
        """The headings of the models' result groups, newest first."""
        return [w.text() for w in self._items() if isinstance(w, _GroupTitle)]

    def unload_runs(self, run_dirs: Iterable[str]) -> None:
        """Unload the model when it belongs to one of these (deleted) runs: it must not go on classifying
        from a folder that is gone."""
        if not self.model_path:
            return
        model = Path(self.model_path).resolve()
        if any(model.is_relative_to(Path(d).resolve()) for d in run_dirs):
            name = self.model_name
            self.predictor, self.model_path, self.model_name = None, "", ""
            self.model_info.setText(f"No model: the run <b>{escape(name)}</b> was deleted. Train one, or open "
                                    f"or drop a .safetensors model file here.")
            self.model_info.setToolTip("")

    @property
    def working(self) -> bool:
        return (self._load_worker is not None or self._predict_worker is not None or bool(self._pending)
                or bool(self._attention_workers))

    def load_checkpoint(self, path: str | Path) -> None:
        """Load a model file in a worker; `model_loaded` follows, or the reason appears in the panel."""
        path = str(path)
        self.busy.setText(f"Loading {Path(path).name}…")
        self._loading_path = path
        self._load_worker = start_worker(_jobs.job("load"), path, returned=self._on_loaded, errored=self._on_load_error,
                                         finished=self._on_load_finished)

    def classify(self, paths: Iterable[str | Path]) -> None:
        sources = [Source(name=Path(p).name or str(p), path=str(p)) for p in paths]
        if sources:
            self._queue(sources)

    def classify_image(self, image: QImage, name: str = "Pasted image") -> None:
        buffer = QBuffer()
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        image.save(buffer, "PNG")
        self._queue([Source(name=name, data=bytes(buffer.data()))])

    def show_attention(self, entry: ResultEntry):
        """Open a non-modal attention dialog for a classified entry; the maps are computed in a worker."""
        dialog = _attention_view.AttentionDialog(entry.name, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        source = entry.data or (_attention_view.SeriesRow(entry.path, entry.row) if entry.row else entry.path)
        self._attention_workers.append(start_worker(
            _jobs.job("compute_attention"), self.predictor, entry.name, source, self.top_k.value(), returned=dialog.show_result,
            errored=dialog.show_exception, finished=self._on_attention_finished))
        return dialog

    def clear(self) -> None:
        for widget in self._items():
            self._entries.removeWidget(widget)
            widget.deleteLater()
        self.placeholder.show()

    # -- ways in -------------------------------------------------------------------------------
    def open_model_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open model", "", "Models (*.safetensors);;All files (*)")
        if path:
            self.load_checkpoint(path)

    def open_images_dialog(self) -> None:
        """Files to classify: every kind the app reads first, then each kind alone."""
        kinds = (("Images", sorted(IMAGE_SUFFIXES)), ("Sounds", SOUND_SUFFIXES), ("Series", SERIES_SUFFIXES),
                 ("Point clouds", POINT_SUFFIXES))
        every = sorted({suffix for _, suffixes in kinds for suffix in suffixes})
        filters = [f"{name} ({' '.join(f'*{s}' for s in suffixes)})" for name, suffixes in (("Everything", every), *kinds)]
        paths, _ = QFileDialog.getOpenFileNames(self, "Open files to classify", "", ";;".join([*filters, "All files (*)"]))
        self.classify(paths)

    def paste(self) -> None:
        self.accept_mime(QApplication.clipboard().mimeData(), "clipboard")

    def dragEnterEvent(self, event) -> None:  # noqa: N802 (Qt override)
        mime = event.mimeData()
        if mime.hasUrls() or mime.hasImage():
            event.acceptProposedAction()

    def dragMoveEvent(self, event) -> None:  # noqa: N802 (Qt override)
        event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 (Qt override)
        if self.accept_mime(event.mimeData(), "drop"):
            event.acceptProposedAction()

    def accept_mime(self, mime, where: str) -> bool:
        """Files and folders (a .safetensors among them loads that model), or a bare image."""
        if mime is None:
            return False
        if mime.hasUrls():
            paths = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]
            models = [p for p in paths if p.lower().endswith(MODEL_SUFFIX)]
            if models:
                self.load_checkpoint(models[-1])
            self.classify(p for p in paths if not p.lower().endswith(MODEL_SUFFIX))
            return bool(paths)
        if mime.hasImage():
            image = QImage(mime.imageData())
            if not image.isNull():
                self.classify_image(image, "Pasted image" if where == "clipboard" else "Dropped image")
                return True
        if mime.hasText():
            paths = [line.strip() for line in mime.text().splitlines() if line.strip() and Path(line.strip()).exists()]
            self.classify(paths)
            return bool(paths)
        return False

    # -- workers (GUI-thread slots) ------------------------------------------------------------
    def _queue(self, sources: list[Source]) -> None:
        self._pending.append(sources)
        self._next()

    def _next(self) -> None:
        if self._predict_worker is not None or not self._pending:
            return
        if self.predictor is None:
            if self._load_worker is None:
                self.busy.setText("Waiting for a model: train one, or open or drop a .safetensors model file.")
            return
        sources = self._pending.pop(0)
        self.busy.setText("Classifying…")
        self._predict_worker = start_worker(_jobs.job("predict"), self.predictor, sources, self.top_k.value(),
                                            yielded=self._on_predictions, errored=self._on_predict_error,
                                            finished=self._on_predict_finished)

    def _on_predictions(self, chunk: list) -> None:
        for source, prediction, thumb in chunk:
            entry = ResultEntry(source.name, source.path, tuple(prediction.top), prediction.error, thumb,
                                data=source.data, model=self.model_name, model_path=self.model_path, row=source.row)
            entry.attention_requested.connect(self._on_attention_requested)
            self._add(entry)

    def _on_attention_requested(self) -> None:
        entry = self.sender()
        if self.predictor is not None and entry.model_path == self.model_path:
            self.show_attention(entry)
        else:  # another model's attention would not explain this result
            self.message.emit(f"{entry.name} was classified by {entry.model or 'another model'}; load that model "
                              f"again to see its attention.")

    def _on_attention_finished(self) -> None:
        # A worker still queued in the thread pool is not running yet either, so count what has ended.
        self._attention_done += 1
        if self._attention_done == len(self._attention_workers):
            self._attention_workers.clear()
            self._attention_done = 0

    def _on_predict_error(self, exc: BaseException) -> None:
        self._add(ResultEntry("Prediction failed", "", (), f"{type(exc).__name__}: {exc}", QImage()))

    def _on_predict_finished(self) -> None:
        self._predict_worker = None
        self.busy.setText("")
        self._next()

    def _items(self) -> list[QWidget]:
        items = (self._entries.itemAt(i).widget() for i in range(self._entries.count()))
        return [w for w in items if w is not None]

    def _add(self, entry: ResultEntry) -> None:
        self.placeholder.hide()
        items = self._items()
        if entry.model:  # under its model's heading, made when the model differs from the newest group's
            top = items[0] if items else None
            if not (isinstance(top, _GroupTitle) and top.model_path == entry.model_path):
                self._entries.insertWidget(0, _GroupTitle(entry.model, entry.model_path))
            self._entries.insertWidget(1, entry)
        else:
            self._entries.insertWidget(0, entry)
        for old in self.entries()[self.max_entries :]:
            self._entries.removeWidget(old)
            old.deleteLater()
        items = self._items()
        while items and isinstance(items[-1], _GroupTitle):  # a heading whose results were all dropped
            self._entries.removeWidget(items[-1])
            items.pop().deleteLater()
        self.scroll.verticalScrollBar().setValue(0)

    def _on_loaded(self, loaded: tuple) -> None:
        predictor, self.model_name, accuracy = loaded
        self.predictor = predictor
        self.model_path = self._loading_path
        meta = predictor.meta
        classes = ", ".join(meta.class_names[:6]) + (", …" if len(meta.class_names) > 6 else "")
        acc_text = f" · {escape(accuracy)}" if accuracy else ""
        self.model_info.setText(
            f"Model <b>{escape(self.model_name)}</b> · {len(meta.class_names)} classes ({escape(classes)}){acc_text}"
        )
        self.model_info.setToolTip(f"{self.model_path}\nClasses: {', '.join(meta.class_names)}")
        # model.safetensors is every run's file name: the run's (or the config's) name tells them apart.
        self.message.emit(f"Loaded the model of {self.model_name} ({Path(self.model_path).name}).")
        self.model_loaded.emit(self.model_path)

    def _on_load_error(self, exc: BaseException) -> None:
        if self.predictor is not None:
            now = f"Still using the model <b>{escape(self.model_name)}</b>."
        else:
            now = "No model is loaded."
        self.model_info.setText(f"<span style='color:#d03030'>{escape(str(exc))}</span> {now}")
        self.model_info.setToolTip(self.model_path)
        self.message.emit(str(exc))

    def _on_load_finished(self) -> None:
        self._load_worker = None
        self.busy.setText("")
        self._next()
