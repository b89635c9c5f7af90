"""Mistakes: the confusion matrix of the latest epoch on the validation split, per-class accuracy, and the
validation images behind a cell (runs of older versions evaluated each epoch on test: theirs say test).

The matrix comes from each EpochEnd of a live run, or from a run folder's saved predictions (`load_run`).
Clicking a cell loads that cell's images in a superqt worker (the dataset is read there, once, and kept
while its split stays the same) and shows them as thumbnails (a series' line plot, a sound's spectrogram or
waveform, a point cloud's projection), most confident prediction first, each with
the probability the model gave its prediction and the true class. Double-clicking a thumbnail enlarges it
(`enlarge`), with a way to the run's model's attention on it. Nothing here imports torch or numpy at
launch: the worker brings them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QBuffer, QIODevice, QSize, Qt, Signal
from PySide6.QtGui import QFontMetrics, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QRadioButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from perceiver_gui.core.datasets import KINDS, Kind
from perceiver_gui.core.events import EpochEnd, RunStarted
from perceiver_gui.core.runs import read_run
from perceiver_gui.ui import deferred
from perceiver_gui.ui.confusion_matrix import ConfusionView
from perceiver_gui.ui.runs_panel import run_name
from perceiver_gui.ui.widgets import points_image, series_image, sound_image
from perceiver_gui.ui.workers import start_worker

if TYPE_CHECKING:
    from perceiver_gui.core.evaluation import CellImages, Confusion, TestSplit

__all__ = ["Loaded", "MistakesPanel"]

# Loaded when first used, not at launch (ui/deferred.py): the work done in workers (torch, numpy), the
# evaluation's records (numpy; loaded by then, with the run's epochs or a worker's answer), and the attention
# dialog (numpy, pyqtgraph).
_jobs = deferred.module("perceiver_gui.ui.jobs.mistakes")
_evaluation = deferred.module("perceiver_gui.core.evaluation")
_attention_view = deferred.module("perceiver_gui.ui.attention_view", plotting=True)

ENLARGED = 320  # side of a double-clicked image, in pixels
MAX_THUMBNAILS = 300  # a cell of a large split can hold thousands; the most confident ones come first


def _pct(p: float) -> str:
    """A probability for a caption: never rounds a near-miss up to 100% or a sliver down to 0%."""
    if not math.isfinite(p):
        return "?"
    if 0 < p < 0.01:
        return "<1%"
    return f"{math.floor(p * 100 + 1e-9)}%"


@dataclass(frozen=True, slots=True)
class Loaded:
    """What a worker (ui/jobs/mistakes.py) hands back: a matrix, a cell's images, or the sentence saying why not."""

    token: int
    confusion: Confusion | None = None
    cell: CellImages | None = None
    split: TestSplit | None = None
    error: str = ""


class MistakesPanel(QWidget):
    """The confusion matrix of the latest epoch (live, or of a run picked with `load_run`) and a cell's images."""

    matrix_shown = Signal()  # a new matrix is on screen
    cell_shown = Signal()  # the gallery shows a cell (or says why it can't)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.confusion: Confusion | None = None  # what the matrix shows
        self.cell: CellImages | None = None  # what the gallery shows
        self.live_run = ""  # the run folder the training runner is driving, "" when none
        self._live_names: tuple[str, ...] = ()
        self._live_kind = "image"  # what the live run's samples are (a key of datasets.KINDS)
        self._live_best = 0  # the live run's best validation epoch so far (the model it saved); 0 before one
        self._split: TestSplit | None = None  # the last split's images loaded, reused while its digest matches
        self._run_token = 0  # a newer request wins over the answers of older ones
        self._cell_token = 0
        self._workers: list = []
        self._workers_done = 0

        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.counts_button = QRadioButton("Counts")
        self.share_button = QRadioButton("% of true class")
        self.counts_button.setToolTip("Each cell: how many validation images of the row's class got the column's "
                                      "label.")
        self.share_button.setToolTip("Each cell as a share of its row: the rows sum to 100%.")
        self.counts_button.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.counts_button)
        group.addButton(self.share_button)
        self.view = ConfusionView()
        self.view.set_placeholder("The confusion matrix appears after the first epoch of a run. "
                                  "Or pick a run in the Runs tab to see its latest one.")
        self.legend = QLabel(_legend("images", "validation"))
        self.legend.setWordWrap(True)
        self.legend.setStyleSheet("color: gray;")

        self.gallery_title = QLabel(f"Click a cell of the matrix to see its {self._word()} {self._kind().plural}.")
        self.gallery_title.setWordWrap(True)
        self.gallery_title.setTextFormat(Qt.TextFormat.RichText)
        self.gallery = QListWidget()
        self.gallery.setViewMode(QListView.ViewMode.IconMode)
        self.gallery.setMovement(QListView.Movement.Static)
        self.gallery.setResizeMode(QListView.ResizeMode.Adjust)
        self.gallery.setUniformItemSizes(True)
        self.gallery.setWordWrap(True)
        self.gallery.setSpacing(2)
        self.gallery.setSelectionMode(QListWidget.SelectionMode.NoSelection)
        self.gallery.itemDoubleClicked.connect(lambda item: self.enlarge(self.gallery.row(item)))

        top = QHBoxLayout()
        top.addWidget(self.summary, 1)
        top.addWidget(self.counts_button)
        top.addWidget(self.share_button)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addLayout(top)
        left_layout.addWidget(self.view, 1)
        left_layout.addWidget(self.legend)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.gallery_title)
        right_layout.addWidget(self.gallery, 1)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setSizes([640, 420])
        layout = QVBoxLayout(self)
        layout.addWidget(self.splitter)

        self.share_button.toggled.connect(self.view.set_normalised)
        self.view.cell_clicked.connect(self.show_cell)

    @property
    def working(self) -> bool:
        return bool(self._workers)

    # -- what to show --------------------------------------------------------------------------
    def on_event(self, event) -> None:
        """Follow a live run: a new run clears the view, each finished epoch shows its matrix."""
        if isinstance(event, RunStarted):
            self.live_run, self._live_names, self._live_kind = event.run_dir, tuple(event.class_names), event.kind
            self._live_best = 0  # a resumed run's earlier best is in its run.json
            if event.start_epoch:  # resumed: its latest saved epoch until the next one ends
                self.load_run(event.run_dir)
            else:
                self._show(None)
                self.view.set_placeholder("The confusion matrix appears when the first epoch ends.")
        elif isinstance(event, EpochEnd) and self.live_run:
            if event.is_best:
                self._live_best = event.epoch
            shown = self.confusion.run_dir if self.confusion is not None else ""
            if shown not in ("", self.live_run):
                return  # the user is looking at another run; the live one is a click away in the Runs tab
            if not event.confusion:
                self.view.set_placeholder("This run has no validation split (data.val_fraction is 0), so its epochs "
                                          "have no confusion matrix.")
                return
            self._show(_evaluation.Confusion(self.live_run, event.epoch, self._live_names, event.confusion, has_images=True,
                                 kind=self._live_kind))

    def load_run(self, run_dir: str) -> None:
        """Show the latest confusion matrix of a run folder (read in a worker)."""
        self._run_token += 1
        self._cell_token += 1
        self.summary.setText(f"Reading {escape(run_name(run_dir))}…")
        self._start(_jobs.job("read_run"), self._run_token, str(run_dir), returned=self._on_run_read)

    def show_cell(self, true: int, pred: int) -> None:
        """Show the validation images of a cell in the gallery (loaded in a worker), or say why there are none."""
        c = self.confusion
        self._cell_token += 1  # whatever was loading for another cell is no longer wanted
        if c is None:
            return self._say("Nothing to show yet: train a model, or pick a run in the Runs tab.")
        if not (0 <= true < len(c.counts) and 0 <= pred < len(c.counts)):
            self.view.selected = None
            self.view.update()
            return self._say(f"Click a cell of the matrix to see its {self._word()} {self._kind().plural}.")
        self.view.selected = (true, pred)
        self.view.update()
        what = self._cell_title(true, pred)
        if c.counts[true][pred] == 0:
            verb = "was predicted as" if true != pred else "was recognised as"
            return self._say(f"{what}: no {self._word()} {self._kind().noun} of <b>{escape(c.class_names[true])}</b> {verb} "
                             f"<b>{escape(c.class_names[pred])}</b> in epoch {c.epoch}.")
        if not c.has_images:
            return self._say(f"{what}: {escape(c.note)}")
        self.gallery_title.setText(f"{what}: loading {c.counts[true][pred]} {self._word()} {self._kind().plural}…")
        self._start(_jobs.job("read_cell"), self._cell_token, c.run_dir, true, pred, self._split, returned=self._on_cell_read)

    def enlarge(self, row: int) -> QDialog | None:
        """A window with the gallery's image `row` large, what the model said of it, and a button to see
        where the run's model looked."""
        cell, confusion = self.cell, self.confusion
        if cell is None or confusion is None or not 0 <= row < len(cell.indices):
            return None
        dialog = QDialog(self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        index, names = cell.indices[row], cell.class_names
        dialog.setWindowTitle(f"{self._word().capitalize()} {self._kind().noun} #{index} — {run_name(confusion.run_dir)}")
        picture = QLabel()
        picture.setObjectName("enlarged")
        picture.setPixmap(_thumbnail(cell.images[row], cell.kind, ENLARGED))
        picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        caption = QLabel(f"Predicted <b>{escape(names[cell.pred])}</b> ({cell.prob_pred[row]:.1%}) · true class "
                         f"<b>{escape(names[cell.true])}</b> ({cell.prob_true[row]:.1%}) · epoch {cell.epoch}")
        caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        if cell.files:  # where to find it, to fix its label or move it to its true class's folder
            caption.setText(caption.text() + f"<br>{escape(cell.files[row])}")
            caption.setWordWrap(True)
        look = QPushButton("Where the model looked…")
        look.setToolTip("The attention of this run's saved model (the epoch it kept, which may differ from the "
                        f"matrix's) on this {self._kind().noun}")
        look.clicked.connect(lambda: self.show_attention(row))
        layout = QVBoxLayout(dialog)
        layout.addWidget(picture, 1)
        layout.addWidget(caption)
        layout.addWidget(look, 0, Qt.AlignmentFlag.AlignRight)
        dialog.show()
        return dialog

    def show_attention(self, row: int):
        """The attention dialog for the gallery's image `row`, computed by the run's saved model in a worker."""
        cell, confusion = self.cell, self.confusion
        if cell is None or confusion is None or not 0 <= row < len(cell.indices):
            return None
        name = f"{self._word()} {self._kind().noun} #{cell.indices[row]}"
        dialog = _attention_view.AttentionDialog(name, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        # An image goes as the PNG the predictor reads; a series as its values (C, L), NaN after its end.
        source = _png(cell.images[row]) if cell.kind == "image" else cell.images[row]
        self._start(_jobs.job("attention"), confusion.run_dir, name, source, returned=dialog.show_result,
                    errored=dialog.show_exception)
        return dialog

    # -- worker answers (GUI-thread slots) -----------------------------------------------------
    def _on_run_read(self, loaded: Loaded) -> None:
        if loaded.token != self._run_token:
            return
        if loaded.error:
            self._show(None)
            self.view.set_placeholder(loaded.error)
            self.summary.setText(f"<span style='color:#d03030'>{escape(loaded.error)}</span>")
            return
        self._show(loaded.confusion)

    def _on_cell_read(self, loaded: Loaded) -> None:
        if loaded.split is not None:
            self._split = loaded.split
        if loaded.token != self._cell_token:
            return
        if loaded.error:
            return self._say(f"<span style='color:#d03030'>{escape(loaded.error)}</span>")
        c = loaded.confusion
        if self.confusion is None or (c.epoch, c.run_dir) != (self.confusion.epoch, self.confusion.run_dir):
            self._show(c, keep_cell=True)  # the saved predictions are newer: show the matrix they make
        self._fill_gallery(loaded.cell)

    def _start(self, fn, *args, returned, errored=None) -> None:
        self._workers.append(start_worker(fn, *args, returned=returned, errored=errored,
                                          finished=self._on_worker_finished))

    def _on_worker_finished(self) -> None:
        # A worker still queued in the thread pool has not finished either, so count what has ended.
        self._workers_done += 1
        if self._workers_done == len(self._workers):
            self._workers.clear()
            self._workers_done = 0

    # -- drawing -------------------------------------------------------------------------------
    def _show(self, confusion: Confusion | None, *, keep_cell: bool = False) -> None:
        previous, self.confusion = self.confusion, confusion
        if confusion is not None and confusion == previous:
            # The same run and epoch again (the tab was reopened, the run picked in Runs): keep the chosen
            # cell as it is, and put the summary back in place of "Reading…".
            self.summary.setText(self._summary(confusion))
            return
        if confusion is None:
            self.view.set_matrix((), ())
            self.summary.setText("")
            self._say(f"Click a cell of the matrix to see its {self._word()} {self._kind().plural}.")
            self.matrix_shown.emit()
            return
        self.view.split, self.view.kind = confusion.split, self._kind()
        nouns = self._kind().plural
        self.counts_button.setToolTip(f"Each cell: how many {confusion.split} {nouns} of the row's class got the "
                                      f"column's label.")
        self.legend.setText(_legend(nouns, confusion.split))
        self.view.set_matrix(confusion.counts, confusion.class_names)
        self.summary.setText(self._summary(confusion))
        self.summary.setToolTip(confusion.run_dir)  # runs of a preset share its name; the folder tells them apart
        same_run = previous is not None and previous.run_dir == confusion.run_dir
        if not same_run:
            self.view.selected = None
            self._say(f"Click a cell of the matrix to see its {self._word()} {self._kind().plural}.")
        elif self.view.selected is not None and not keep_cell:
            self.show_cell(*self.view.selected)  # a new epoch: the selected cell follows it
        self.matrix_shown.emit()

    def _summary(self, c: Confusion) -> str:
        k = len(c.counts)
        total = sum(map(sum, c.counts))
        right = sum(c.counts[i][i] for i in range(k))
        split = ("validation split" if c.split == "validation"
                 else "test split: an older version's run, which chose its best epoch on it")
        text = (f"<b>{escape(run_name(c.run_dir))}</b> · {self._epochs(c)} · {right} of {total} {self._word()} {self._kind().plural} "
                f"right ({right / max(1, total):.1%}) · {split}")
        mistakes = [(c.counts[t][p], t, p) for t in range(k) for p in range(k) if t != p and c.counts[t][p]]
        if mistakes:
            n, t, p = max(mistakes)
            text += (f" · most frequent mistake: <b>{escape(c.class_names[t])}</b> taken for "
                     f"<b>{escape(c.class_names[p])}</b> ({n}×)")
        return text

    def _epochs(self, c: Confusion) -> str:
        """The matrix's epoch (the latest) and, when it differs, the epoch of the run's saved model (its best)."""
        if c.run_dir == self.live_run and self._live_best:
            saved = self._live_best  # run.json learns of a new best only after the epoch is announced
        else:
            saved = read_run(Path(c.run_dir)).best_epoch
        if saved == c.epoch:
            return f"epoch {c.epoch} (the saved model's)"
        if not saved:
            return f"epoch {c.epoch}"
        return (f"matrix of epoch {c.epoch}, the latest; the saved model is from epoch {saved}, its best on "
                f"{c.split}")

    def _kind(self) -> Kind:
        """What the matrix counts: images, series …"""
        kind = self.confusion.kind if self.confusion is not None else self._live_kind
        return KINDS.get(kind, KINDS["image"])

    def _word(self) -> str:
        """The split the matrix counts, as a word: "validation" (or "test" for an older version's run)."""
        return self.confusion.split if self.confusion is not None else "validation"

    def _cell_title(self, true: int, pred: int) -> str:
        names = self.confusion.class_names
        return f"<b>true {escape(names[true])} → predicted {escape(names[pred])}</b>"

    def _say(self, text: str) -> None:
        self.cell = None
        self.gallery.clear()
        self.gallery_title.setText(text)
        self.cell_shown.emit()

    def _fill_gallery(self, cell: CellImages) -> None:
        self.cell = cell
        self.gallery.clear()
        names = cell.class_names
        side = 64 if cell.kind == "image" and max(cell.images.shape[1:3]) <= 64 else 96
        self.gallery.setIconSize(QSize(side, side))
        fm = QFontMetrics(self.gallery.font())
        width = max(side, fm.horizontalAdvance("pred " + max(names, key=len)[:12] + " 100%")) + 12
        if cell.files:  # room for a file's name (up to twice the picture), so a series' #row stays in sight
            width = max(width, min(2 * side, max(fm.horizontalAdvance(Path(f).name) for f in cell.files)) + 12)
        lines = 2 + bool(cell.files)  # a folder's images also name their file, a series its file#row
        self.gallery.setGridSize(QSize(width, side + lines * fm.height() + 10))
        pred, true = names[cell.pred], names[cell.true]
        files = cell.files or ("",) * len(cell.indices)
        for image, index, p_pred, p_true, file in zip(cell.images, cell.indices, cell.prob_pred, cell.prob_true,
                                                      files, strict=True):
            if cell.true == cell.pred:
                caption = f"{pred} · {_pct(p_pred)}"
            else:
                caption = f"pred {pred} {_pct(p_pred)}\ntrue {true} {_pct(p_true)}"
            if file:
                caption += "\n" + fm.elidedText(Path(file).name, Qt.TextElideMode.ElideMiddle, width - 8)
            item = QListWidgetItem(QIcon(_thumbnail(image, cell.kind, side)), caption)
            item.setToolTip(f"{self._word().capitalize()} {self._kind().noun} #{index}: predicted {pred} ({p_pred:.1%}); true class {true} "
                            f"({p_true:.1%})." + (f"\n{file}" if file else ""))
            self.gallery.addItem(item)
        shown = len(cell.indices)
        more = f" (the {shown} most confident of {cell.total})" if shown < cell.total else ""
        noun = KINDS[cell.kind].noun if cell.total == 1 else KINDS[cell.kind].plural
        self.gallery_title.setText(
            f"{self._cell_title(cell.true, cell.pred)} · {cell.total} {self._word()} {noun}{more} · epoch {cell.epoch}"
            "<br><span style='color:gray'>Most confident first; each shows how sure the model was of its "
            "prediction and of the true class. Double-click one to enlarge it.</span>"
        )
        self.cell_shown.emit()


def _legend(nouns: str, split: str) -> str:
    """The matrix's legend, counting `nouns` ("images", "series") of `split`."""
    return ("Rows: the true class · columns: what the model said. <span style='color:#2166ac'>■</span> right "
            "(the diagonal), <span style='color:#d6604d'>■</span> mistakes; the stronger the colour, the more "
            f"{nouns}, each colour scaled to its own largest cell. Click a cell to see its {split} {nouns}.")


def _png(image) -> bytes:
    """A uint8 (H, W, C) image as PNG bytes, the form the predictor reads dropped images in."""
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    _qimage(image).save(buffer, "PNG")
    return bytes(buffer.data())


def _qimage(image) -> QImage:
    if not image.flags.c_contiguous:  # QImage reads the rows one after the other
        image = image.copy(order="C")
    h, w, c = image.shape
    fmt = QImage.Format.Format_Grayscale8 if c == 1 else QImage.Format.Format_RGB888
    return QImage(image.data, w, h, c * w, fmt).copy()  # copy: own the pixels


def _thumbnail(sample, kind: str, side: int) -> QPixmap:
    """A side × side picture of one sample of the split: the image itself, a series' line plot, a sound's
    spectrogram or waveform, or a point cloud's 2-D projection, as the classifier draws it."""
    if kind == "series":
        return QPixmap.fromImage(series_image(sample.T, side))  # (C, L) as the split holds it; the plot reads (L, C)
    if kind == "audio":  # the model's input: a waveform (1, L) or log-mel grid (1, mels, frames), or mel frames
        return QPixmap.fromImage(sound_image(sample[0] if sample.shape[0] == 1 else sample, side))
    if kind == "points":
        return QPixmap.fromImage(points_image(sample.T, side))  # (3, P) as the split holds it; the view reads (P, 3)
    return _pixmap(sample, side)


def _pixmap(image, side: int) -> QPixmap:
    """A thumbnail of a uint8 (H, W, C) image; small images are enlarged with visible pixels."""
    h, w = image.shape[:2]
    qimage = _qimage(image)
    mode = Qt.TransformationMode.FastTransformation if max(h, w) <= side else Qt.TransformationMode.SmoothTransformation
    return QPixmap.fromImage(qimage.scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio, mode))
