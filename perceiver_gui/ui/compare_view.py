"""Several runs side by side: their test accuracy and loss curves overlaid, one colour per run, and a
table of their settings with the ones that differ highlighted, under their best accuracy.

Runs that differ only by their seed (core/stats.py) are drawn as one group when "Group seeds" is on: the
mean curve with a band of ± one sample standard deviation, at the epochs at least two of them reached, and
one column in the table with the mean ± std of their final and best accuracy and loss.

Shown by the runs panel when more than one run is selected. The curves are a snapshot of each run's
metrics.jsonl (Refresh in the runs panel reads them again); a run's parsed metrics are kept while its
file is unchanged, so adding a run to the selection does not read the others again.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QIcon, QPainter, QPalette, QPen, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSizePolicy,
    QSlider,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from perceiver_gui.core import runs, stats
from perceiver_gui.core.runs import RunInfo
from perceiver_gui.ui.plotting import FollowsPaletteAndScale, ema, style_plot
from perceiver_gui.ui.workers import start_worker

__all__ = ["CompareView", "run_style"]

# Paul Tol's "bright" qualitative scheme: told apart with the common colour-vision deficiencies and
# readable on light and dark backgrounds (Okabe-Ito's yellow and black are not, on one or the other).
PALETTE = ((68, 119, 170), (238, 102, 119), (34, 136, 51), (204, 187, 68), (102, 204, 238), (170, 51, 119),
           (187, 187, 187))
# Past seven runs the colours come round again with a different dash, so a dozen runs stay distinct.
DASHES = (Qt.PenStyle.SolidLine, Qt.PenStyle.DashLine, Qt.PenStyle.DotLine)
DIFFERS = QColor(240, 180, 0, 90)  # amber wash over the rows whose values differ
READ_NOW_BYTES = 2_000_000  # metrics files up to this much in all (~15k records, ~0.1 s) are read without a worker
# The best epoch is chosen on validation; test is the chosen model's, measured once. Runs of older versions
# chose on test: their row says so.
SUMMARY_ROWS = ("Best validation accuracy", "Best epoch", "Test accuracy (chosen model)", "Epochs done")
# A seed group's rows: {} is the held-out split ("validation"; "test" for older runs, which chose on it).
GROUP_ROWS = ("Runs", "Final {} accuracy", "Best {} accuracy", "Final {} loss", "Best {} loss",
              "Test accuracy (chosen model)")
GROUP_KEYS = (None, "final_acc", "best_acc", "final_loss", "best_loss", "test_acc")  # stats.seed_summary's
BAND_ALPHA = 60  # of 255: the ± std band under a group's mean curve


def run_style(index: int) -> tuple[QColor, Qt.PenStyle]:
    """The colour and line style of the index-th run in a comparison."""
    return QColor(*PALETTE[index % len(PALETTE)]), DASHES[(index // len(PALETTE)) % len(DASHES)]


@dataclass(frozen=True, slots=True)
class _Curves:
    """One run's metrics as arrays (non-finite values already left out)."""

    steps: np.ndarray  # logged train steps
    loss: np.ndarray  # train loss at those steps
    ends: np.ndarray  # global step at the end of each epoch (epoch records, in order)
    epochs: np.ndarray  # those epochs' numbers
    val_loss: np.ndarray  # held out each epoch (validation; test in an older run); nan where an epoch had none
    val_acc: np.ndarray
    summary: runs.MetricsSummary
    curve: stats.RunCurve  # per epoch, for a seed group's mean and band
    skipped: int  # non-finite values left out


def _read_curves(run_dir: Path) -> _Curves:
    metrics = runs.read_metrics(run_dir)  # damaged lines and fields are skipped there
    steps = [r for r in metrics.steps if math.isfinite(r.loss)]
    epochs = metrics.epochs
    val_loss = [r.held_out_loss for r in epochs]
    val_acc = [r.held_out_acc for r in epochs]
    skipped = len(metrics.steps) - len(steps) + sum(r.held_out != "" and not math.isfinite(v)
                                                    for r in epochs for v in (r.held_out_loss, r.held_out_acc))
    return _Curves(np.array([r.step for r in steps], dtype=float), np.array([r.loss for r in steps]),
                   np.array([r.step for r in epochs], dtype=float), np.array([r.epoch for r in epochs], dtype=float),
                   np.array(val_loss), np.array(val_acc), runs.summarize_metrics(metrics.records),
                   stats.run_curve(metrics.records), skipped)


def _empty() -> _Curves:
    none = np.empty(0)
    return _Curves(none, none, none, none, none, none, runs.summarize_metrics(()), stats.run_curve(()), 0)


_EMPTY = _empty()
_LOADING = _empty()  # told apart from _EMPTY by identity


def _file_key(path: Path) -> tuple[int, int]:
    """What tells whether a metrics file changed since it was read: (mtime, size); (0, 0) when missing."""
    try:
        st = os.stat(path)
    except OSError:
        return (0, 0)
    return (st.st_mtime_ns, st.st_size)


def _read_all(generation: int, wanted: list[tuple[str, tuple[int, int]]]):
    """In a worker: read these runs' metrics (plain arrays cross back to the GUI thread)."""
    return generation, [(path, key, _read_curves(Path(path))) for path, key in wanted]


def _epochs_at(steps: np.ndarray, ends: np.ndarray, epochs: np.ndarray) -> np.ndarray:
    """Fractional epochs of train steps, from the steps at which epochs ended (the last epoch's length
    carries on past its end, for an epoch still running). Runs with different batch sizes line up."""
    order = np.argsort(ends, kind="stable")
    xs = np.concatenate(([0.0], ends[order]))
    ys = np.concatenate(([0.0], epochs[order]))
    x = np.interp(steps, xs, ys)
    last = max(xs[-1] - xs[-2], 1.0)
    after = steps > xs[-1]
    x[after] = ys[-1] + (steps[after] - xs[-1]) / last
    return x


def _format(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if value == "":
        return "(empty)"
    return str(value)


def _labels(infos: Sequence[RunInfo]) -> list[str]:
    """What names each run in the legend and the table: its name, and for runs that share a name (every run
    of a preset is called after it) when it was started, as precisely as it takes to tell them apart."""
    import time

    labels = [info.name for info in infos]
    for fmt in ("%H:%M", "%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"):
        if len(set(labels)) == len(labels):
            return labels
        labels = [f"{info.name} · {time.strftime(fmt, time.localtime(info.created))}" if labels.count(label) > 1
                  else label for info, label in zip(infos, labels, strict=True)]
    # Started in the same second: the folder names differ.
    return [f"{label} · {Path(info.path).name}" if labels.count(label) > 1 else label
            for info, label in zip(infos, labels, strict=True)]


def _elide(name: str, limit: int = 32) -> str:
    # The legend takes its width from the plots; the table's column headers carry the whole name.
    return name if len(name) <= limit else name[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class _GroupItems:
    """What draws one seed group: mean curves, and the bands between their lower and upper edges."""

    members: tuple[int, ...]  # indices of its runs in the comparison
    acc: pg.PlotDataItem
    acc_edges: tuple[pg.PlotCurveItem, pg.PlotCurveItem]
    loss: pg.PlotDataItem
    loss_edges: tuple[pg.PlotCurveItem, pg.PlotCurveItem]
    fills: tuple[pg.FillBetweenItem, pg.FillBetweenItem]


def _band_xy(band: stats.Band, d: _Curves, by_epoch: bool) -> tuple[np.ndarray, ...]:
    """x, mean, mean - std and mean + std of a band; x in epochs, or the steps at which a member's epochs
    ended (the runs of a group share their batch size, so their epochs end at the same steps)."""
    epochs = np.array(band.epochs, dtype=float)
    x = epochs if by_epoch or not d.ends.size else np.interp(epochs, d.epochs, d.ends)
    mean, std = np.array(band.mean), np.array(band.std)
    return x, mean, mean - std, mean + std


def _group_label(name: str, configs: Sequence[dict[str, Any] | None]) -> str:
    """"digits · 3 seeds"; "runs" where some share a seed too (repeats of one run)."""
    seeds = _seeds_text(configs).split(", ")
    return f"{name} · {len(configs)} {'seeds' if len(set(seeds)) == len(seeds) else 'runs'}"


def _seeds_text(configs: Sequence[dict[str, Any] | None]) -> str:
    seeds = [c.get("train", {}).get("seed") if isinstance(c, dict) and isinstance(c.get("train"), dict) else None
             for c in configs]
    return ", ".join(_format(v) for v in seeds)


def _swatch(color: QColor, style: Qt.PenStyle) -> QIcon:
    """A short line in a run's colour and dash, for the table's column headers."""
    pixmap = QPixmap(22, 10)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    pen = QPen(color, 3, style)
    painter.setPen(pen)
    painter.drawLine(1, 5, 21, 5)
    painter.end()
    return QIcon(pixmap)


class CompareView(FollowsPaletteAndScale, QWidget):
    """Overlaid curves and a settings table for several runs (`set_runs`)."""

    loaded = Signal()  # every shown run's metrics are read and drawn

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._runs: list[RunInfo] = []
        self._data: list[_Curves] = []  # _LOADING for a run whose metrics are being read
        self._errors: list[str] = []
        self._generation = 0  # counts set_runs calls, so a late worker result for other runs is only cached
        self._configs: list[dict[str, Any] | None] = []
        self._saved_epochs: list[int] = []  # per run, the epoch whose model was saved (run.json), 0 if not known
        self._cache: dict[str, tuple[tuple[int, int], _Curves]] = {}
        self._settings_rows: list[runs.CompareRow] = []
        self._acc_curves: list[pg.PlotDataItem] = []
        self._loss_curves: list[pg.PlotDataItem] = []
        self._widths: list[tuple[pg.PlotDataItem, float]] = []  # each curve's line width at 1× (scale_pens)
        self._test_loss_curves: list[pg.PlotDataItem] = []
        self._units: list[list[int]] = []  # what is drawn as one: a seed group (its runs' indices), or a run alone
        self._groups: list[_GroupItems] = []
        self._summary_rows = len(SUMMARY_ROWS)  # rows above the settings in the table

        self.x_axis = QComboBox()
        self.x_axis.addItems(["epoch", "step"])
        self.x_axis.setToolTip("Epochs line up runs with different batch sizes; steps show the updates made.")
        self.x_axis.currentIndexChanged.connect(self._draw)
        self.smoothing = QSlider(Qt.Orientation.Horizontal)
        self.smoothing.setRange(0, 99)
        self.smoothing.setValue(90)
        self.smoothing.setMaximumWidth(140)
        self.smoothing.setToolTip("How strongly the train loss curves are smoothed (0 = raw values).")
        self.smoothing.valueChanged.connect(self._draw)
        self.log_scale = QCheckBox("Log-scale loss")
        self.log_scale.toggled.connect(lambda on: self.loss_plot.setLogMode(y=on))
        self.log_scale.toggled.connect(self._draw)  # the bands' edges are drawn in the axis' own units
        self.group_seeds = QCheckBox("Group seeds")
        self.group_seeds.setChecked(True)
        self.group_seeds.setToolTip("Draw runs whose settings differ only by seed as one: their mean and a band of "
                                    "± one sample standard deviation (n − 1), at the epochs at least two of them "
                                    "reached; the table shows their mean ± std.")
        self.group_seeds.toggled.connect(self._regroup)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        controls = QHBoxLayout()
        controls.addWidget(QLabel("x axis"))
        controls.addWidget(self.x_axis)
        controls.addSpacing(12)
        controls.addWidget(QLabel("Smoothing"))
        controls.addWidget(self.smoothing)
        controls.addSpacing(12)
        controls.addWidget(self.log_scale)
        controls.addSpacing(12)
        controls.addWidget(self.group_seeds)
        controls.addStretch(1)

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setMinimumSize(360, 220)
        self.acc_plot = self.graphics.addPlot(row=0, col=0)
        self.loss_plot = self.graphics.addPlot(row=0, col=1)
        self.acc_plot.setTitle("Validation accuracy", size="10pt")
        self.loss_plot.setTitle("Loss: lines train (smoothed), dots validation", size="10pt")
        for plot in (self.acc_plot, self.loss_plot):
            plot.showGrid(x=True, y=True, alpha=0.15)
        self.acc_plot.setYRange(0, 1, padding=0.02)
        self.acc_plot.getAxis("left").setLabel("")
        # The legend gets its own column, beside the plots, so it never hides a curve however many runs.
        self.legend = pg.LegendItem(labelTextSize="8pt", verSpacing=-6, frame=False)
        self.legend.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)  # its own size, top right
        self.graphics.addItem(self.legend, row=0, col=2)
        self.graphics.ci.layout.setAlignment(self.legend, Qt.AlignmentFlag.AlignTop)
        self.graphics.ci.layout.setColumnStretchFactor(0, 1)
        self.graphics.ci.layout.setColumnStretchFactor(1, 1)

        self.only_differences = QCheckBox("Show only differences")
        self.only_differences.setChecked(True)
        self.only_differences.setToolTip("Hide the settings that all selected runs share.")
        self.only_differences.toggled.connect(self._filter_rows)
        self.table_note = QLabel()
        self.table_note.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.table = QTableWidget()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setMaximumSectionSize(220)  # a long run name is elided; its tooltip has it all
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 6)
        self.table.setWordWrap(False)

        upper = QWidget()
        upper_layout = QVBoxLayout(upper)
        upper_layout.setContentsMargins(0, 0, 0, 0)
        upper_layout.addLayout(controls)
        upper_layout.addWidget(self.note)
        upper_layout.addWidget(self.graphics, 1)
        lower = QWidget()
        lower_layout = QVBoxLayout(lower)
        lower_layout.setContentsMargins(0, 0, 0, 0)
        table_controls = QHBoxLayout()
        table_controls.addWidget(self.only_differences)
        table_controls.addSpacing(12)
        table_controls.addWidget(self.table_note, 1)
        lower_layout.addLayout(table_controls)
        lower_layout.addWidget(self.table, 1)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(upper)
        split.addWidget(lower)
        split.setChildrenCollapsible(False)
        split.setSizes([600, 400])  # scaled to the height there is: plots 3/5, table 2/5
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(split)
        self._apply_palette()

    # -- the typed API -------------------------------------------------------------------------
    def set_runs(self, infos: Sequence[RunInfo]) -> None:
        """Compare these runs (in this order, which gives their colours). Settings show at once; metrics
        files too when they are small, larger ones are read in a worker and drawn when read (`loaded`)."""
        self._runs = list(infos)
        self._generation += 1
        self._configs, self._errors = [], []
        self._saved_epochs = [runs.read_run(Path(info.path)).best_epoch for info in self._runs]
        for info in self._runs:
            try:
                self._configs.append(runs.read_config(Path(info.path)).raw)
            except runs.RunError as exc:
                self._configs.append(None)
                self._errors.append(f"“{info.name}” — {exc}")
        stale = []
        for info in self._runs:
            key = _file_key(Path(info.path) / runs.METRICS_FILE)
            cached = self._cache.get(info.path)
            if cached is None or cached[0] != key:
                stale.append((info.path, key))
        if sum(key[1] for _, key in stale) <= READ_NOW_BYTES:
            for path, key in stale:
                self._cache[path] = (key, _read_curves(Path(path)))
        else:
            self._read_in_worker(stale)
        self._regroup()

    def _regroup(self) -> None:
        self._units = (stats.group_runs(self._configs) if self.group_seeds.isChecked()
                       else [[i] for i in range(len(self._runs))])
        self._rebuild_curves()
        self._show()

    @property
    def loading(self) -> bool:
        """Metrics are being read for the runs shown."""
        return any(d is _LOADING for d in self._data)

    def legend_names(self) -> list[str]:
        return [html.unescape(label.text) for _, label in self.legend.items]

    def differing_settings(self) -> list[str]:
        """The dotted settings whose values differ between the runs (the highlighted rows)."""
        return [row.key for row in self._settings_rows if row.differs]

    def groups(self) -> list[list[int]]:
        """The seed groups drawn as one (indices of their runs, two or more each)."""
        return [unit for unit in self._units if len(unit) > 1]

    # -- curves --------------------------------------------------------------------------------
    def _read_in_worker(self, wanted: list[tuple[str, tuple[int, int]]]) -> None:
        start_worker(_read_all, self._generation, wanted, returned=self._on_read, errored=self._on_read_error)

    def _on_read(self, result: tuple[int, list[tuple[str, tuple[int, int], _Curves]]]) -> None:
        generation, read = result
        for path, key, curves in read:
            self._cache[path] = (key, curves)
        if generation == self._generation:  # still the runs asked for
            self._show()

    def _on_read_error(self, exc: Exception) -> None:
        for info in self._runs:
            self._cache.setdefault(info.path, ((0, 0), _EMPTY))  # drawn as empty rather than waiting forever
        self._errors.append(f"Could not read the runs' metrics: {exc}")
        self._show()

    def _show(self) -> None:
        """Draw the curves, table and notes for the runs set, with what has been read so far."""
        self._data = [self._cache.get(info.path, (None, _LOADING))[1] for info in self._runs]
        self._draw()
        self._fill_table()
        notes = list(self._errors)
        loading = [f"“{info.name}”" for info, d in zip(self._runs, self._data, strict=True) if d is _LOADING]
        if loading:
            notes.append(f"Reading the metrics of {', '.join(loading)}…")
        waiting = [f"“{info.name}”" for info, d in zip(self._runs, self._data, strict=True)
                   if d is not _LOADING and not d.epochs.size]
        if waiting:
            notes.append(f"{', '.join(waiting)} {'has' if len(waiting) == 1 else 'have'} no finished epoch yet.")
        if self.groups():
            notes.append("Bands: ± one sample standard deviation (n − 1) over a group's seeds, with its mean, at the "
                         "epochs at least two of its runs reached.")
            for unit in self.groups():
                reached = max((len(self._data[i].curve.epochs) for i in unit), default=0)
                band = self._group_band(unit, "acc")
                if band.epochs and reached > band.epochs[-1]:
                    notes.append(f"“{self._runs[unit[0]].name}”: epochs after {band.epochs[-1]} were reached by only "
                                 "one run, so its mean stops there.")
        skipped = sum(d.skipped for d in self._data)
        if skipped:
            notes.append(f"{skipped} non-finite value{'s' if skipped != 1 else ''} (NaN or infinite) not shown.")
        self.note.setText(" ".join(notes))
        self.note.setVisible(bool(notes))
        if not loading:
            self.loaded.emit()

    def _rebuild_curves(self) -> None:
        for plot, curves in ((self.acc_plot, self._acc_curves), (self.loss_plot, self._loss_curves),
                             (self.loss_plot, self._test_loss_curves)):
            for curve in curves:
                plot.removeItem(curve)
            curves.clear()
        for group in self._groups:
            for item in (group.acc, *group.acc_edges, group.fills[0]):
                self.acc_plot.removeItem(item)
            for item in (group.loss, *group.loss_edges, group.fills[1]):
                self.loss_plot.removeItem(item)
        self._groups.clear()
        self._widths.clear()
        self.legend.clear()
        unit_of = {i: u for u, unit in enumerate(self._units) for i in unit}
        labels = _labels(self._runs)
        for i, label in enumerate(labels):
            color, dash = run_style(unit_of.get(i, i))
            grouped = len(self._units[unit_of[i]]) > 1 if i in unit_of else False
            acc = self.acc_plot.plot(pen=pg.mkPen(color, width=2, style=dash), symbol="o", symbolSize=5,
                                     symbolBrush=color, symbolPen=None)
            # A group's train losses stay one line per run, thinner: their spread is the band's cause.
            loss = self.loss_plot.plot(pen=pg.mkPen(color, width=1.0 if grouped else 1.8, style=dash))
            loss.setDownsampling(auto=True, method="peak")  # long runs: one min/max pair per pixel column
            loss.setClipToView(True)
            test = self.loss_plot.plot(pen=None, symbol="o", symbolSize=6, symbolBrush=color, symbolPen=None)
            self._acc_curves.append(acc)
            self._loss_curves.append(loss)
            self._widths += [(acc, 2.0), (loss, 1.0 if grouped else 1.8)]
            self._test_loss_curves.append(test)
            if not grouped:
                self.legend.addItem(acc, html.escape(_elide(label)))
        for u, unit in enumerate(self._units):
            if len(unit) > 1:
                group = self._make_group(unit, *run_style(u))
                self._groups.append(group)
                label = _group_label(self._runs[unit[0]].name, [self._configs[i] for i in unit])
                self.legend.addItem(group.acc, html.escape(_elide(label)))
        self._apply_pens()
        self._apply_palette()

    def _make_group(self, unit: list[int], color: QColor, dash: Qt.PenStyle) -> _GroupItems:
        fill = QColor(color)
        fill.setAlpha(BAND_ALPHA)
        acc = self.acc_plot.plot(pen=pg.mkPen(color, width=2.5, style=dash), symbol="o", symbolSize=5,
                                 symbolBrush=color, symbolPen=None)
        loss = self.loss_plot.plot(pen=pg.mkPen(color, width=2.5, style=Qt.PenStyle.DashLine), symbol="o",
                                   symbolSize=6, symbolBrush=color, symbolPen=None)
        self._widths += [(acc, 2.5), (loss, 2.5)]
        edges = []
        for plot in (self.acc_plot, self.loss_plot):
            # Curve items, not data items: a data item without a pen keeps no path for the fill to follow.
            pair = (pg.PlotCurveItem(pen=pg.mkPen(None)), pg.PlotCurveItem(pen=pg.mkPen(None)))
            for edge in pair:
                plot.addItem(edge)
            edges.append(pair)
        fills = tuple(pg.FillBetweenItem(lo, hi, brush=fill) for lo, hi in edges)
        self.acc_plot.addItem(fills[0])
        self.loss_plot.addItem(fills[1])
        return _GroupItems(tuple(unit), acc, edges[0], loss, edges[1], fills)

    def _group_band(self, unit: Sequence[int], metric: str) -> stats.Band:
        curves = [self._data[i].curve for i in unit]
        return stats.band([list(zip(c.epochs, getattr(c, metric), strict=True)) for c in curves])

    def _draw(self) -> None:
        by_epoch = self.x_axis.currentText() == "epoch"
        weight = self.smoothing.value() / 100.0
        for acc, loss, test, d in zip(self._acc_curves, self._loss_curves, self._test_loss_curves, self._data,
                                      strict=True):
            x_end = d.epochs if by_epoch else d.ends
            ok = np.isfinite(d.val_acc)
            acc.setData(x_end[ok], d.val_acc[ok])
            ok = np.isfinite(d.val_loss)
            test.setData(x_end[ok], d.val_loss[ok])
            if by_epoch and not d.ends.size:
                loss.setData([], [])  # no epoch has ended: where its steps fall in epochs is not known yet
            else:
                x = _epochs_at(d.steps, d.ends, d.epochs) if by_epoch else d.steps
                loss.setData(x, ema(d.loss, weight))
        for group in self._groups:
            for i in group.members:  # drawn as the group's mean and band
                self._acc_curves[i].setData([], [])
                self._test_loss_curves[i].setData([], [])
            first = self._data[group.members[0]]
            for metric, mean, (lo, hi) in (("acc", group.acc, group.acc_edges), ("loss", group.loss, group.loss_edges)):
                x, y, low, high = _band_xy(self._group_band(group.members, metric), first, by_epoch)
                if metric == "loss" and self.log_scale.isChecked():  # curve items are not told of log mode
                    low, high = (np.log10(np.clip(v, 1e-12, None)) for v in (low, high))
                mean.setData(x, y)
                lo.setData(x, low)
                hi.setData(x, high)
        for plot in (self.acc_plot, self.loss_plot):
            plot.setLabel("bottom", "epoch" if by_epoch else "step")
        old = any(d.summary.held_out == "test" for d in self._data)  # an older version's run: its epochs were tested
        self.acc_plot.setTitle("Validation accuracy" + (" (old runs: test)" if old else ""), size="10pt")
        self.loss_plot.enableAutoRange()
        self.acc_plot.enableAutoRange(axis="x")

    # -- table ---------------------------------------------------------------------------------
    def _fill_table(self) -> None:
        if self.groups():
            self._fill_group_table()
            return
        self._summary_rows = len(SUMMARY_ROWS)
        self._settings_rows = runs.compare_configs(self._configs)
        table = self.table
        table.clear()
        table.setColumnCount(1 + len(self._runs))
        table.setRowCount(len(SUMMARY_ROWS) + len(self._settings_rows))
        table.setHorizontalHeaderItem(0, QTableWidgetItem("Setting"))
        for i, (info, config, label) in enumerate(zip(self._runs, self._configs, _labels(self._runs), strict=True)):
            header = QTableWidgetItem(_swatch(*run_style(i)), label if config is not None else f"{label} ⚠")
            header.setToolTip(f"{info.name}\n{info.path}" if config is not None
                              else f"{info.name}\nIts settings could not be read.")
            table.setHorizontalHeaderItem(1 + i, header)
        bold = QFont(table.font())
        bold.setBold(True)

        summaries = [d.summary for d in self._data]
        # Only validation scores compete: an older run's best was chosen on test, which flatters it.
        best = max((s.best_acc for s in summaries if math.isfinite(s.best_acc) and s.held_out == "validation"),
                   default=math.nan)
        for row, label in enumerate(SUMMARY_ROWS):
            name = QTableWidgetItem(label)
            name.setFont(bold)
            table.setItem(row, 0, name)
            for i, (config, s) in enumerate(zip(self._configs, summaries, strict=True)):
                if self._data[i] is _LOADING:
                    text = "…"
                elif row == 0:
                    text = f"{s.best_acc:.2%}" if math.isfinite(s.best_acc) else "—"
                    if s.held_out == "test":
                        text += " (test: selected on test, old run)"
                elif row == 1:  # the engine's choice (a tie in accuracy goes to the lower loss), else the file's first best
                    epoch = self._saved_epochs[i] or s.best_epoch
                    text = str(epoch) if epoch else "—"
                elif row == 2:
                    text = f"{s.test_acc:.2%}" if math.isfinite(s.test_acc) else "—"
                else:
                    train = config.get("train") if config else None
                    planned = train.get("epochs") if isinstance(train, dict) else None
                    text = f"{s.epochs_done} / {planned}" if isinstance(planned, int) else str(s.epochs_done)
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if row == 0 and s.best_acc == best:
                    item.setFont(bold)  # the winner stands out
                    item.setToolTip("The best of the selected runs.")
                table.setItem(row, 1 + i, item)

        self._fill_settings(self._configs)

    def _fill_settings(self, configs: Sequence[dict[str, Any] | None]) -> None:
        """The settings rows under the summary rows, one column per config (per run, or per seed group)."""
        table = self.table
        bold = QFont(table.font())
        bold.setBold(True)
        wash = QBrush(DIFFERS)
        for r, setting in enumerate(self._settings_rows):
            row = self._summary_rows + r
            name = QTableWidgetItem(setting.key)
            table.setItem(row, 0, name)
            items = [name]
            for i, value in enumerate(setting.values):
                item = QTableWidgetItem(_format(value))
                if value is None:
                    item.setToolTip("Its settings could not be read." if configs[i] is None
                                    else "This run has no such setting (made by another version of the app).")
                table.setItem(row, 1 + i, item)
                items.append(item)
            if setting.differs:
                name.setFont(bold)
                for item in items:
                    item.setBackground(wash)
        self._filter_rows()

    def _fill_group_table(self) -> None:
        """One column per seed group (or run alone): the mean ± sample std of their final and best accuracy
        and loss, with n, over the settings they share (the seeds listed)."""
        units = self._units
        configs = [[self._configs[i] for i in unit] for unit in units]
        shared = [cs[0] for cs in configs]
        rows = runs.compare_configs(shared)
        for r, row in enumerate(rows):
            if row.key in stats.GROUP_IGNORES:  # what a group's runs may differ in: listed
                values = tuple(None if cs[0] is None else _seeds_text(cs) if row.key == "train.seed" else
                               ", ".join(dict.fromkeys(_format(c.get("name")) for c in cs)) for cs in configs)
                known = {v for v in values if v is not None}  # an unreadable config is unknown, not different
                rows[r] = runs.CompareRow(key=row.key, values=values, differs=len(known) > 1)
        self._settings_rows = rows
        curves = [[self._data[i].curve for i in unit] for unit in units]
        splits = {c.split for cs in curves for c in cs if c.split}
        split = splits.pop() if len(splits) == 1 else "held-out"
        self._summary_rows = len(GROUP_ROWS) + 1
        table = self.table
        table.clear()
        table.setColumnCount(1 + len(units))
        table.setRowCount(self._summary_rows + len(rows))
        table.setHorizontalHeaderItem(0, QTableWidgetItem("Setting"))
        bold = QFont(table.font())
        bold.setBold(True)
        labels = _labels(self._runs)
        for u, unit in enumerate(units):
            first = self._runs[unit[0]]
            text = _group_label(first.name, configs[u]) if len(unit) > 1 else labels[unit[0]]
            unreadable = shared[u] is None
            header = QTableWidgetItem(_swatch(*run_style(u)), f"{text} ⚠" if unreadable else text)
            header.setToolTip(f"{first.name}\nIts settings could not be read." if unreadable else
                              "\n".join(self._runs[i].path for i in unit))
            table.setHorizontalHeaderItem(1 + u, header)
        for row, label in enumerate((*GROUP_ROWS, "Epochs done")):
            name = QTableWidgetItem(label.format(split))
            name.setFont(bold)
            table.setItem(row, 0, name)
            for u, (unit, cs) in enumerate(zip(units, curves, strict=True)):
                if any(self._data[i] is _LOADING for i in unit):
                    item = QTableWidgetItem("…")
                elif row == 0:
                    item = QTableWidgetItem(str(len(unit)))
                elif row == len(GROUP_ROWS):
                    done = sorted({len(c.epochs) for c in cs})
                    item = QTableWidgetItem(str(done[0]) if len(done) == 1 else f"{done[0]}–{done[-1]}")
                else:
                    key = GROUP_KEYS[row]
                    value = stats.seed_summary(cs)[key]
                    fmt = "{:.2%}" if key.endswith("acc") else "{:.4f}"
                    own = {c.split for c in cs if c.split}
                    text = value.text(fmt) if value.n > 1 else fmt.format(value.mean) if value.n else "—"
                    if split == "held-out" and own and key != "test_acc":
                        text += f" ({', '.join(sorted(own))})"
                    item = QTableWidgetItem(text)
                    if value.n > 1:
                        item.setToolTip(f"Mean ± sample standard deviation (n − 1) over {value.n} runs.")
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                table.setItem(row, 1 + u, item)
        self._fill_settings(shared)

    def _filter_rows(self) -> None:
        only = self.only_differences.isChecked()
        for r, setting in enumerate(self._settings_rows):
            self.table.setRowHidden(self._summary_rows + r, only and not setting.differs)
        self.table.resizeColumnsToContents()  # fits the rows now shown (a hidden row is not measured)
        differ = len(self.differing_settings())
        readable = sum(c is not None for c in self._configs)
        if readable < 2:
            text = ""
        elif differ == 0:
            text = f"The {readable} runs have the same settings."
        else:
            text = f"{differ} of {len(self._settings_rows)} settings differ (highlighted)."
        if self.groups():
            text = f"Seed groups: mean ± sample standard deviation (n − 1). {text}"
        self.table_note.setText(text)

    # -- light and dark ------------------------------------------------------------------------
    def _apply_palette(self) -> None:
        """Plot background and text follow the window's palette, like the training plots."""
        palette = self.palette() if self.parent() else QApplication.palette()
        background = palette.color(QPalette.ColorRole.Base)
        foreground = palette.color(QPalette.ColorRole.Text)
        self.graphics.setBackground(background)
        style_plot(self.acc_plot, foreground, legend=self.legend)
        style_plot(self.loss_plot, foreground)
