"""The confusion matrix, painted by hand: rows are the true class, columns the predicted class, with a
per-class accuracy bar beside each row; a click on a cell says which (`cell_clicked`), a tooltip names it.
"""

from __future__ import annotations

import math
from html import escape

from PySide6.QtCore import QEvent, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QMouseEvent, QPainter, QPen
from PySide6.QtWidgets import QToolTip, QWidget

from perceiver_gui.core.datasets import KINDS, Kind
from perceiver_gui.ui.widgets import mix

__all__ = ["ConfusionView"]

RIGHT = QColor(33, 102, 172)  # the diagonal: blue
WRONG = QColor(214, 96, 77)  # mistakes: orange-red (blue/orange reads for red-green colour blindness too)


def _shade(colour: QColor, amount: float, background: QColor) -> QColor:
    """A cell's colour: `colour` faded towards the background (white, or a dark palette's base); amount 0 is
    nearly the background, 1 the full colour."""
    return mix(colour, background, 0.12 + 0.88 * max(0.0, min(1.0, amount)))


def _empty(background: QColor) -> QColor:
    """A cell with no images: a shade off the background, lighter on a dark palette, darker on a light one."""
    return background.lighter(135) if background.lightnessF() < 0.5 else background.darker(104)


class ConfusionView(QWidget):
    """The matrix (rows: true class, columns: predicted class) and a per-class accuracy bar beside each row.

    Colours are scaled separately for the diagonal (blue) and the mistakes (orange), each to its own largest
    cell, so rare mistakes stay visible next to a full diagonal; a square root keeps small counts from fading."""

    cell_clicked = Signal(int, int)  # (true, predicted); (-1, -1) when the click hit no cell

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.counts: tuple[tuple[int, ...], ...] = ()
        self.split = "validation"  # the split counted, for the tooltips
        self.kind: Kind = KINDS["image"]  # what it counts (images, series …), for the tooltips
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
            share = (f" ({count / total:.1%} of the {total} {self.kind.plural} of {escape(self.class_names[t])})"
                     if total else "")
            kind = "right" if t == p else "mistake"
            return (f"true <b>{escape(self.class_names[t])}</b> → predicted <b>{escape(self.class_names[p])}</b>"
                    f" ({kind})<br>{count} {self.split} {self.kind.noun if count == 1 else self.kind.plural}{share}")
        if self.counts:
            left, top, cell, acc_x = self._geometry()
            row = math.floor((pos.y() - top) / cell)
            if pos.x() >= acc_x and 0 <= row < len(self.counts):
                total = sum(self.counts[row])
                if total:
                    return (f"<b>{escape(self.class_names[row])}</b>: {self.counts[row][row]} of {total} "
                            f"{self.split} {self.kind.plural} right ({self.counts[row][row] / total:.1%})")
        return ""
