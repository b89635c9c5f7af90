"""Mistakes: the confusion matrix of the latest epoch on the validation split, per-class accuracy, and the
validation images behind a cell (runs of older versions evaluated each epoch on test: theirs say test).

The matrix comes from each EpochEnd of a live run, or from a run folder's saved predictions (`load_run`).
Clicking a cell loads that cell's images in a superqt worker (the dataset is read there, once, and kept
while its split stays the same) and shows them as thumbnails, most confident prediction first, each with
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

from PySide6.QtCore import QEvent, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFontMetrics, QIcon, QImage, QMouseEvent, QPainter, QPen, QPixmap
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
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from perceiver_gui.core.datasets import KINDS, Kind
from perceiver_gui.core.events import EpochEnd, RunStarted
from perceiver_gui.ui.runs_panel import run_name
from perceiver_gui.ui.widgets import mix, series_image
from perceiver_gui.ui.workers import start_worker

if TYPE_CHECKING:
    from perceiver_gui.core.evaluation import CellImages, Confusion, TestSplit

__all__ = ["ConfusionView", "MistakesPanel"]

ENLARGED = 320  # side of a double-clicked image, in pixels
MAX_THUMBNAILS = 300  # a cell of a large split can hold thousands; the most confident ones come first
RIGHT = QColor(33, 102, 172)  # the diagonal: blue
WRONG = QColor(214, 96, 77)  # mistakes: orange-red (blue/orange reads for red-green colour blindness too)


def _shade(colour: QColor, amount: float, background: QColor) -> QColor:
    """A cell's colour: `colour` faded towards the background (white, or a dark palette's base); amount 0 is
    nearly the background, 1 the full colour."""
    return mix(colour, background, 0.12 + 0.88 * max(0.0, min(1.0, amount)))


def _empty(background: QColor) -> QColor:
    """A cell with no images: a shade off the background, lighter on a dark palette, darker on a light one."""
    return background.lighter(135) if background.lightnessF() < 0.5 else background.darker(104)


def _pct(p: float) -> str:
    """A probability for a caption: never rounds a near-miss up to 100% or a sliver down to 0%."""
    if not math.isfinite(p):
        return "?"
    if 0 < p < 0.01:
        return "<1%"
    return f"{math.floor(p * 100 + 1e-9)}%"



class ConfusionView(QWidget):
    """The matrix (rows: true class, columns: predicted class) and a per-class accuracy bar beside each row.

    Colours are scaled separately for the diagonal (blue) and the mistakes (orange), each to its own largest
    cell, so rare mistakes stay visible next to a full diagonal; a square root keeps small counts from fading."""

    cell_clicked = Signal(int, int)  # (true, predicted); (-1, -1) when the click hit no cell

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.counts: tuple[tuple[int, ...], ...] = ()
        self.split = "validation"  # the split counted, for the tooltips
        self.class_names: tuple[str, ...] = ()
        self.normalised = False
        self.selected: tuple[int, int] | None = None
        self.placeholder = ""
        self._hover: tuple[int, int] | None = None
        self.setMouseTracking(True)
        self.setMinimumSize(320, 280)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt override)
        return QSize(640, 560)

    # -- API -----------------------------------------------------------------------------------
    def set_matrix(self, counts: tuple[tuple[int, ...], ...], class_names: tuple[str, ...]) -> None:
        self.counts, self.class_names = counts, class_names
        if self.selected is not None and max(self.selected) >= len(counts):
            self.selected = None
        self.update()

    def set_normalised(self, normalised: bool) -> None:
        self.normalised = normalised
        self.update()

    def set_placeholder(self, text: str) -> None:
        self.placeholder = text
        self.update()

    def value(self, true: int, pred: int) -> float:
        """What the cell shows: its count, or its share of the true class's images."""
        count = self.counts[true][pred]
        if not self.normalised:
            return float(count)
        total = sum(self.counts[true])
        return count / total if total else 0.0

    def text(self, true: int, pred: int) -> str:
        """The number printed in a cell ("" for an empty one)."""
        if not self.counts[true][pred]:
            return ""
        if not self.normalised:
            return str(self.counts[true][pred])
        share = self.value(true, pred)
        return "<1%" if share < 0.005 else f"{share:.0%}"

    def cell_rect(self, true: int, pred: int) -> QRectF:
        left, top, cell, _ = self._geometry()
        return QRectF(left + pred * cell, top + true * cell, cell, cell)

    def cell_at(self, pos: QPointF) -> tuple[int, int] | None:
        if not self.counts:
            return None
        left, top, cell, _ = self._geometry()
        k = len(self.counts)
        col, row = math.floor((pos.x() - left) / cell), math.floor((pos.y() - top) / cell)
        return (row, col) if 0 <= row < k and 0 <= col < k else None

    # -- layout --------------------------------------------------------------------------------
    def _label_width(self) -> int:
        fm = self.fontMetrics()
        return min(140, max((fm.horizontalAdvance(n) for n in self.class_names), default=0) + 8)

    def _geometry(self) -> tuple[float, float, float, float]:
        """(left, top, cell side, x of the accuracy column)."""
        fm = self.fontMetrics()
        title = fm.height() + 6
        labels = self._label_width()
        accuracy = 70 + fm.horizontalAdvance("100%") + 12
        k = max(1, len(self.counts))
        cell = max(1.0, min((self.width() - title - labels - accuracy - 8) / k,
                            (self.height() - title - labels - 8) / k))
        left, top = title + labels, title + labels
        return left, top, cell, left + k * cell + 12

    # -- painting ------------------------------------------------------------------------------
    def paintEvent(self, event) -> None:  # noqa: N802 (Qt override)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        if not self.counts:
            painter.setPen(self.palette().placeholderText().color())
            painter.drawText(self.rect().adjusted(20, 20, -20, -20),
                             Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.placeholder)
            return
        fm = self.fontMetrics()
        k = len(self.counts)
        left, top, cell, acc_x = self._geometry()
        values = [[self.value(t, p) for p in range(k)] for t in range(k)]
        right_max = max((values[i][i] for i in range(k)), default=0) or 1
        wrong_max = max((values[t][p] for t in range(k) for p in range(k) if t != p), default=0) or 1
        widest = max(fm.horizontalAdvance(self.text(t, p)) for t in range(k) for p in range(k))
        show_text = cell >= max(fm.height() + 2, widest + 4)
        grid = cell >= 6
        text_colour = self.palette().text().color()
        background = self.palette().base().color()
        empty = _empty(background)

        for t in range(k):
            for p in range(k):
                rect = QRectF(left + p * cell, top + t * cell, cell, cell)
                v = values[t][p]
                if self.counts[t][p] == 0:
                    colour = empty
                elif t == p:
                    colour = _shade(RIGHT, math.sqrt(v / right_max), background)
                else:
                    colour = _shade(WRONG, math.sqrt(v / wrong_max), background)
                painter.fillRect(rect, colour)
                if show_text and self.counts[t][p]:
                    painter.setPen(Qt.GlobalColor.white if colour.lightnessF() < 0.55 else Qt.GlobalColor.black)
                    painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, self.text(t, p))
        if grid:
            painter.setPen(QPen(background, 1))
            for i in range(k + 1):
                painter.drawLine(QPointF(left + i * cell, top), QPointF(left + i * cell, top + k * cell))
                painter.drawLine(QPointF(left, top + i * cell), QPointF(left + k * cell, top + i * cell))
        # The diagonal gets an outline of its own, so "right" reads at a glance even where a cell is pale.
        painter.setPen(QPen(RIGHT.darker(130), 1))
        for i in range(k):
            painter.drawRect(QRectF(left + i * cell, top + i * cell, cell, cell).adjusted(0.5, 0.5, -0.5, -0.5))
        for where, pen in ((self._hover, QPen(self.palette().mid().color(), 1)), (self.selected, QPen(text_colour, 3))):
            if where is not None and max(where) < k:
                painter.setPen(pen)
                painter.drawRect(self.cell_rect(*where).adjusted(1, 1, -1, -1))

        # Class names: every one when they fit, else every n-th (the tooltip names every cell).
        painter.setPen(text_colour)
        step = max(1, math.ceil((fm.height() - 1) / cell))
        labels = self._label_width()
        for i in range(0, k, step):
            name = fm.elidedText(self.class_names[i], Qt.TextElideMode.ElideRight, labels - 8)
            centre = top + (i + 0.5) * cell
            painter.drawText(QRectF(left - labels, centre - fm.height() / 2, labels - 6, fm.height()),
                             Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, name)
            painter.save()
            painter.translate(left + (i + 0.5) * cell, top - 6)
            painter.rotate(-90)
            painter.drawText(QRectF(0, -fm.height() / 2, labels - 6, fm.height()),
                             Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, name)
            painter.restore()
        bold = painter.font()
        bold.setBold(True)
        painter.setFont(bold)
        painter.drawText(QRectF(left, 0, k * cell, fm.height() + 4), Qt.AlignmentFlag.AlignCenter, "predicted class")
        painter.save()
        painter.translate(0, top + k * cell / 2)
        painter.rotate(-90)
        painter.drawText(QRectF(-k * cell / 2, 0, k * cell, fm.height() + 4), Qt.AlignmentFlag.AlignCenter,
                         "true class")
        painter.restore()
        painter.drawText(QRectF(acc_x, top - fm.height() - 6, 200, fm.height()), Qt.AlignmentFlag.AlignLeft,
                         "val. accuracy" if self.split == "validation" else "test accuracy")
        painter.setFont(self.font())

        # Per-class accuracy: a bar beside each row, with its percentage when the rows are tall enough.
        bar_w = 70
        for t in range(k):
            total = sum(self.counts[t])
            acc = self.counts[t][t] / total if total else math.nan
            y = top + t * cell
            inset = min(2.0, cell * 0.15)
            back = QRectF(acc_x, y + inset, bar_w, max(1.0, cell - 2 * inset))
            painter.fillRect(back, empty)
            if math.isfinite(acc):
                painter.fillRect(QRectF(back.x(), back.y(), bar_w * acc, back.height()), _shade(RIGHT, acc, background))
            if cell >= fm.height() - 1 and t % step == 0:
                painter.setPen(text_colour)
                painter.drawText(QRectF(acc_x + bar_w + 4, y, 60, cell), Qt.AlignmentFlag.AlignVCenter,
                                 f"{acc:.0%}" if math.isfinite(acc) else "—")

    # -- mouse ---------------------------------------------------------------------------------
    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt override)
        hover = self.cell_at(event.position())
        if hover != self._hover:
            self._hover = hover
            self.update()

    def leaveEvent(self, event) -> None:  # noqa: N802 (Qt override)
        self._hover = None
        self.update()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt override)
        if event.button() != Qt.MouseButton.LeftButton:
            return
        where = self.cell_at(event.position())
        self.cell_clicked.emit(*(where if where is not None else (-1, -1)))

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip:
            QToolTip.showText(event.globalPos(), self.tooltip(event.pos()), self)
            return True
        return super().event(event)

    def tooltip(self, pos) -> str:
        where = self.cell_at(QPointF(pos))
        if where is not None:
            t, p = where
            count, total = self.counts[t][p], sum(self.counts[t])
            share = f" ({count / total:.1%} of the {total} images of {escape(self.class_names[t])})" if total else ""
            kind = "right" if t == p else "mistake"
            return (f"true <b>{escape(self.class_names[t])}</b> → predicted <b>{escape(self.class_names[p])}</b>"
                    f" ({kind})<br>{count} {self.split} image{'s' if count != 1 else ''}{share}")
        if self.counts:
            left, top, cell, acc_x = self._geometry()
            row = math.floor((pos.y() - top) / cell)
            if pos.x() >= acc_x and 0 <= row < len(self.counts):
                total = sum(self.counts[row])
                if total:
                    return (f"<b>{escape(self.class_names[row])}</b>: {self.counts[row][row]} of {total} "
                            f"{self.split} images right ({self.counts[row][row] / total:.1%})")
        return ""


@dataclass(frozen=True, slots=True)
class _Loaded:
    """What a worker hands back: a matrix, a cell's images, or the sentence saying why not."""

    token: int
    confusion: Confusion | None = None
    cell: CellImages | None = None
    split: TestSplit | None = None
    error: str = ""


def _read_run(token: int, run_dir: str) -> _Loaded:
    from perceiver_gui.core.evaluation import EvaluationError, read_confusion

    try:
        return _Loaded(token, confusion=read_confusion(run_dir))
    except EvaluationError as exc:
        return _Loaded(token, error=str(exc))
    except Exception as exc:  # noqa: BLE001 (a worker must always answer, with a sentence)
        return _Loaded(token, error=f"Could not read the run's saved predictions: {type(exc).__name__}: {exc}.")


def _read_cell(token: int, run_dir: str, true: int, pred: int, split: TestSplit | None) -> _Loaded:
    from perceiver_gui.core.evaluation import Confusion, EvaluationError, cell_images, load_test_split, read_evaluation

    try:
        ev = read_evaluation(run_dir)
        if split is None or split.digest != ev.test_digest:  # another dataset, or not loaded yet
            split = load_test_split(run_dir, ev.split)
        cell = cell_images(ev, split, true, pred, limit=MAX_THUMBNAILS)
        confusion = Confusion(run_dir, ev.epoch, ev.class_names, ev.confusion(), has_images=True, split=ev.split,
                              kind=split.kind)
        return _Loaded(token, confusion=confusion, cell=cell, split=split)
    except EvaluationError as exc:
        return _Loaded(token, split=split, error=str(exc))
    except Exception as exc:  # noqa: BLE001 (a worker must always answer, with a sentence)
        return _Loaded(token, split=split, error=f"Could not load the images: {type(exc).__name__}: {exc}.")


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
        self.counts_button.setToolTip("Each cell: how many validation images of the row's class got the column's label.")
        self.share_button.setToolTip("Each cell as a share of its row: the rows sum to 100%.")
        self.counts_button.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.counts_button)
        group.addButton(self.share_button)
        self.view = ConfusionView()
        self.view.set_placeholder("The confusion matrix appears after the first epoch of a run. "
                                  "Or pick a run in the Runs tab to see its latest one.")
        self.legend = QLabel(
            "Rows: the true class · columns: what the model said. <span style='color:#2166ac'>■</span> right "
            "(the diagonal), <span style='color:#d6604d'>■</span> mistakes; the stronger the colour, the more "
            "images, each colour scaled to its own largest cell. Click a cell to see its validation images."
        )
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
            if event.start_epoch:  # resumed: its latest saved epoch until the next one ends
                self.load_run(event.run_dir)
            else:
                self._show(None)
                self.view.set_placeholder("The confusion matrix appears when the first epoch ends.")
        elif isinstance(event, EpochEnd) and self.live_run:
            shown = self.confusion.run_dir if self.confusion is not None else ""
            if shown not in ("", self.live_run):
                return  # the user is looking at another run; the live one is a click away in the Runs tab
            if not event.confusion:
                self.view.set_placeholder("This run has no validation split (data.val_fraction is 0), so its epochs "
                                          "have no confusion matrix.")
                return
            from perceiver_gui.core.evaluation import Confusion

            self._show(Confusion(self.live_run, event.epoch, self._live_names, event.confusion, has_images=True,
                                 kind=self._live_kind))

    def load_run(self, run_dir: str) -> None:
        """Show the latest confusion matrix of a run folder (read in a worker)."""
        self._run_token += 1
        self._cell_token += 1
        self.summary.setText(f"Reading {escape(run_name(run_dir))}…")
        self._start(_read_run, self._run_token, str(run_dir), returned=self._on_run_read)

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
        self._start(_read_cell, self._cell_token, c.run_dir, true, pred, self._split, returned=self._on_cell_read)

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
        from perceiver_gui.ui.attention_view import AttentionDialog

        cell, confusion = self.cell, self.confusion
        if cell is None or confusion is None or not 0 <= row < len(cell.indices):
            return None
        name = f"{self._word()} {self._kind().noun} #{cell.indices[row]}"
        dialog = AttentionDialog(name, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        # An image goes as the PNG the predictor reads; a series as its values (C, L), NaN after its end.
        source = _png(cell.images[row]) if cell.kind == "image" else cell.images[row]
        self._start(_attention, confusion.run_dir, name, source, returned=dialog.show_result,
                    errored=dialog.show_exception)
        return dialog

    # -- worker answers (GUI-thread slots) -----------------------------------------------------
    def _on_run_read(self, loaded: _Loaded) -> None:
        if loaded.token != self._run_token:
            return
        if loaded.error:
            self._show(None)
            self.view.set_placeholder(loaded.error)
            self.summary.setText(f"<span style='color:#d03030'>{escape(loaded.error)}</span>")
            return
        self._show(loaded.confusion)

    def _on_cell_read(self, loaded: _Loaded) -> None:
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
        self.view.split = confusion.split
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
        text = (f"<b>{escape(run_name(c.run_dir))}</b> · epoch {c.epoch} · {right} of {total} {self._word()} {self._kind().plural} "
                f"right ({right / max(1, total):.1%}) · {split}")
        mistakes = [(c.counts[t][p], t, p) for t in range(k) for p in range(k) if t != p and c.counts[t][p]]
        if mistakes:
            n, t, p = max(mistakes)
            text += (f" · most frequent mistake: <b>{escape(c.class_names[t])}</b> taken for "
                     f"<b>{escape(c.class_names[p])}</b> ({n}×)")
        return text

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


def _attention(run_dir: str, name: str, source):
    """In a worker: the run's saved model's attention on one image (PNG bytes at the size the model reads) or
    one series (its values)."""
    from perceiver_gui.core import runs
    from perceiver_gui.ui.attention_view import compute_attention
    from perceiver_gui.ui.classifier_panel import load_predictor

    predictor, _ = load_predictor(str(Path(run_dir) / runs.MODEL_FILE))
    return compute_attention(predictor, name, source)


def _png(image) -> bytes:
    """A uint8 (H, W, C) image as PNG bytes, the form the predictor reads dropped images in."""
    from PySide6.QtCore import QBuffer, QIODevice

    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    _qimage(image).save(buffer, "PNG")
    return bytes(buffer.data())


def _qimage(image) -> QImage:
    import numpy as np

    image = np.ascontiguousarray(image)
    h, w, c = image.shape
    fmt = QImage.Format.Format_Grayscale8 if c == 1 else QImage.Format.Format_RGB888
    return QImage(image.data, w, h, c * w, fmt).copy()  # copy: own the pixels


def _thumbnail(sample, kind: str, side: int) -> QPixmap:
    """A side × side picture of one sample of the split: the image itself, or a series' line plot."""
    if kind == "series":
        return QPixmap.fromImage(series_image(sample.T, side))  # (C, L) as the split holds it; the plot reads (L, C)
    return _pixmap(sample, side)


def _pixmap(image, side: int) -> QPixmap:
    """A thumbnail of a uint8 (H, W, C) image; small images are enlarged with visible pixels."""
    h, w = image.shape[:2]
    qimage = _qimage(image)
    mode = Qt.TransformationMode.FastTransformation if max(h, w) <= side else Qt.TransformationMode.SmoothTransformation
    return QPixmap.fromImage(qimage.scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio, mode))
