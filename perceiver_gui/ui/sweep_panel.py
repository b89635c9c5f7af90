"""The Sweep tab: choose which settings to vary, run an Optuna sweep of the form's config, and watch it.

The sweep runs as a `perceiver-gui sweep` process (QProcess: never a fork, never a thread of this process),
so it is the same sweep the command line runs, its trials are spread over processes with --workers, and
closing the window or pressing Stop ends it the way Ctrl+C does (the running trial is saved and marked
interrupted; Continue replaces it). The panel reads the study from the sweep folder's journal once a
second and shows the trials, the best value so far, a parallel-coordinates plot and the parameters'
importance. Selecting a trial shows its run's curves; double-clicking opens its model in the Classifier.

Optuna (~0.4 s to import) and pyqtgraph load when the tab is first used, not at launch (ui/deferred.py).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QProcess, Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from perceiver_gui.config import OPTIMIZERS, SCHEDULES, Config, ConfigError
from perceiver_gui.core.events import EpochEnd
from perceiver_gui.core.runs import MODEL_FILE, read_metrics
from perceiver_gui.ui import deferred
from perceiver_gui.ui.workers import start_worker

if TYPE_CHECKING:
    from perceiver_gui.ui.plots import PlotsPanel
    from perceiver_gui.ui.sweep_plots import SweepPlots

__all__ = ["SEARCHABLE", "SweepPanel"]

# Loaded when the tab is first used, not at launch (ui/deferred.py): core.sweep (Optuna), the work done in a
# worker (its parameters' importance), and the plots (pyqtgraph).
_sweep = deferred.module("perceiver_gui.core.sweep")
_jobs = deferred.module("perceiver_gui.ui.jobs.sweep")
_sweep_plots_module = deferred.module("perceiver_gui.ui.sweep_plots", plotting=True)
_plots_module = deferred.module("perceiver_gui.ui.plots", plotting=True)

# The settings a sweep can vary, with a starting range or choices: (key, low, high, log, choices).
SEARCHABLE: tuple[tuple[str, float, float, bool, str], ...] = (
    ("train.lr", 1e-4, 3e-2, True, ""),
    ("train.weight_decay", 1e-4, 0.2, True, ""),
    ("train.batch_size", 0, 0, False, "16, 32, 64"),
    ("train.epochs", 0, 0, False, "10, 20, 30"),
    ("train.optimizer", 0, 0, False, ", ".join(OPTIMIZERS)),
    ("train.schedule", 0, 0, False, ", ".join(SCHEDULES)),
    ("train.warmup_epochs", 0.0, 2.0, False, ""),
    ("train.label_smoothing", 0.0, 0.2, False, ""),
    ("train.mixup", 0.0, 0.8, False, ""),
    ("train.grad_clip", 0.0, 2.0, False, ""),
    ("model.depth", 1, 4, False, ""),
    ("model.num_latents", 0, 0, False, "16, 32, 64"),
    ("model.latent_dim", 0, 0, False, "32, 64, 128"),
    ("model.cross_heads", 0, 0, False, "1, 4, 8"),
    ("model.cross_dim_head", 0, 0, False, "8, 16, 32"),
    ("model.latent_heads", 0, 0, False, "1, 2, 4"),
    ("model.latent_dim_head", 0, 0, False, "8, 16, 32"),
    ("model.num_freq_bands", 2, 8, False, ""),
    ("model.max_freq", 2.0, 16.0, True, ""),
    ("model.attn_dropout", 0.0, 0.3, False, ""),
    ("model.ff_dropout", 0.0, 0.3, False, ""),
    ("model.weight_tie_layers", 0, 0, False, "false, true"),
    ("data.crop_padding", 0, 0, False, "0, 1, 2"),
)
COL_VARY, COL_KEY, COL_LOW, COL_HIGH, COL_LOG, COL_CHOICES = range(6)
STATE_COLOURS = {"complete": "#2ca02c", "pruned": "#888888", "running": "#1f77b4", "failed": "#d03030",
                 "interrupted": "#d08030"}


class SweepPanel(QWidget):
    """Search space, sweep settings, Start / Stop / Continue, the trials and their plots."""

    message = Signal(str)  # a sentence for the status bar
    open_model_requested = Signal(str)  # a trial's model.safetensors, for the Classifier
    running_changed = Signal(bool)

    def __init__(self, base_config: Callable[[], Config], sweeps_root: Path, parent: QWidget | None = None):
        super().__init__(parent)
        self._base_config = base_config  # the form's config: what every trial starts from
        self.sweeps_root = Path(sweeps_root)
        self.folder: Path | None = None  # the sweep on show
        self._study: Any = None  # the shown sweep's optuna study and spec, read once the folder is chosen
        self._spec: Any = None
        self.rows: list = []  # core.sweep.TrialRow, as last read
        self._importance: tuple[int, dict[str, float]] = (-1, {})  # (complete trials, importances) last computed
        self._importance_worker: Any = None
        self._storage = ""
        self.process: QProcess | None = None
        self._plots: SweepPlots | None = None
        self._run_plots: PlotsPanel | None = None
        self._shown_trial = ""  # the run of the trial whose curves the Trial run tab shows

        self.space = QTableWidget(len(SEARCHABLE), 6)
        self.space.setHorizontalHeaderLabels(["Vary", "Setting", "Low", "High", "Log", "or choices"])
        self.space.verticalHeader().setVisible(False)
        self.space.setToolTip("Tick the settings to vary: a range (low, high, log scale) for numbers, or a "
                              "comma-separated list of choices, which wins over the range when given.")
        for row, (key, low, high, log, choices) in enumerate(SEARCHABLE):
            vary = QTableWidgetItem()
            vary.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled)
            vary.setCheckState(Qt.CheckState.Checked if key == "train.lr" else Qt.CheckState.Unchecked)
            self.space.setItem(row, COL_VARY, vary)
            name = QTableWidgetItem(key)
            name.setFlags(Qt.ItemFlag.ItemIsEnabled)
            self.space.setItem(row, COL_KEY, name)
            ranged = not choices
            for col, value in ((COL_LOW, low), (COL_HIGH, high)):
                item = QTableWidgetItem(f"{value:g}" if ranged else "")
                if not ranged:
                    item.setFlags(Qt.ItemFlag.NoItemFlags)
                self.space.setItem(row, col, item)
            log_item = QTableWidgetItem()
            log_item.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled if ranged
                              else Qt.ItemFlag.NoItemFlags)
            if ranged:
                log_item.setCheckState(Qt.CheckState.Checked if log else Qt.CheckState.Unchecked)
            self.space.setItem(row, COL_LOG, log_item)
            self.space.setItem(row, COL_CHOICES, QTableWidgetItem(choices))
        self.space.setWordWrap(False)
        self.space.resizeColumnsToContents()
        self.space.horizontalHeader().setSectionResizeMode(COL_CHOICES, QHeaderView.ResizeMode.Stretch)
        self.space.horizontalHeader().setMinimumSectionSize(40)

        self.sampler = QComboBox()
        self.sampler.addItems(["tpe", "random", "grid"])
        self.sampler.setToolTip("TPE models which values worked; random draws blindly; grid tries every "
                                "combination of the choices.")
        self.pruner = QComboBox()
        self.pruner.addItems(["median", "none"])
        self.pruner.setToolTip("median stops a trial whose epoch is worse than the median of earlier trials at "
                               "that epoch.")
        self.metric_choice = QComboBox()
        for metric in self._metrics():
            self.metric_choice.addItem(metric)
        self.metric_choice.setToolTip("What the sweep optimises: validation numbers (never the test split).")
        self.trials = QSpinBox()
        self.trials.setRange(1, 10000)
        self.trials.setValue(20)
        self.workers = QSpinBox()
        self.workers.setRange(1, 64)
        self.workers.setToolTip("Trials at once, each in its own process (on a CPU they share its cores; with "
                                "several GPUs each gets its own).")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.folder_edit = QLineEdit(str(self._new_folder_name()))
        self.folder_edit.setToolTip("The sweep folder: its study (journal.log) and one run folder per trial.")
        browse = QToolButton()
        browse.setText("…")
        browse.setToolTip("Open a sweep folder, to watch or continue it")
        browse.clicked.connect(self.open_dialog)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(browse)
        settings = QFormLayout()
        settings.addRow("Sampler", self.sampler)
        settings.addRow("Pruner", self.pruner)
        settings.addRow("Metric", self.metric_choice)
        settings.addRow("Trials", self.trials)
        settings.addRow("Workers", self.workers)
        settings.addRow("Seed", self.seed)
        settings.addRow("Folder", folder_row)

        self.start_button = QPushButton("Start sweep")
        self.start_button.setToolTip("Start a sweep of the form's settings, varying the ticked ones.")
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop the sweep; the running trial is saved and marked interrupted.")
        self.stop_button.clicked.connect(self.stop)
        self.continue_button = QPushButton("Continue")
        self.continue_button.setToolTip("Continue the sweep in the folder until it has its trials.")
        self.continue_button.clicked.connect(self.continue_)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.stop_button, self.continue_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        self.status = QLabel("Tick the settings to vary, then Start sweep.")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.space, 1)
        left_layout.addLayout(settings)
        left_layout.addLayout(buttons)
        left_layout.addWidget(self.status)

        self.table = QTableWidget(0, 5)
        self.table.setHorizontalHeaderLabels(["Trial", "State", "Metric", "Epoch", "Run"])  # until a sweep is shown
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.resizeColumnsToContents()  # the headers' widths, not 100 px each: "Run" stays in view beside the settings
        self.table.setToolTip("Select a trial to see its run's curves; double-click to open its model in the "
                              "Classifier.")
        self.table.itemSelectionChanged.connect(self._trial_selected)
        self.table.itemDoubleClicked.connect(lambda *_: self._open_model())
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(2000)
        self.log.setPlaceholderText("The sweep's output appears here, each trial as it starts and ends; the "
                                    "trials fill the table above.")
        self.views = QTabWidget()  # the plots are added when first needed
        self.views.addTab(self.log, "Log")

        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.table)
        right.addWidget(self.views)
        right.setSizes([260, 420])
        right.setChildrenCollapsible(False)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(right)
        # The settings table wide enough for its choices (at the default 1280-wide window, ~870 px for the tab),
        # the trials beside it with the rest; sizes are proportions until the splitter is laid out.
        space = self.space
        wanted = (sum(space.columnWidth(c) for c in range(space.columnCount()) if c != COL_CHOICES)
                  + space.sizeHintForColumn(COL_CHOICES) + space.verticalScrollBar().sizeHint().width()
                  + 2 * space.frameWidth() + 16)  # + the handle and margins
        split.setSizes([wanted, max(870 - wanted, 300)])
        split.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(split)

        self.timer = QTimer(self)
        self.timer.setInterval(1000)
        self.timer.timeout.connect(self.refresh)
        self._update_buttons()

    # -- the typed API -------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.process is not None and self.process.state() != QProcess.ProcessState.NotRunning

    @property
    def plots(self) -> SweepPlots:
        if self._plots is None:
            self._plots = _sweep_plots_module.SweepPlots()
            self.views.insertTab(0, self._plots, "Progress")
            self.views.setCurrentIndex(0)
        return self._plots

    @property
    def run_plots(self) -> PlotsPanel:
        """The selected trial's curves."""
        if self._run_plots is None:
            self._run_plots = _plots_module.PlotsPanel()
            self.views.insertTab(1, self._run_plots, "Trial run")
        return self._run_plots

    def set_vary(self, key: str, *, low: float | None = None, high: float | None = None, log: bool | None = None,
                 choices: str | None = None, vary: bool = True) -> None:
        """Set one row of the search space (what a user does in the table)."""
        row = [k for k, *_ in SEARCHABLE].index(key)
        self.space.item(row, COL_VARY).setCheckState(Qt.CheckState.Checked if vary else Qt.CheckState.Unchecked)
        if low is not None:
            self.space.item(row, COL_LOW).setText(f"{low:g}")
        if high is not None:
            self.space.item(row, COL_HIGH).setText(f"{high:g}")
        if log is not None:
            self.space.item(row, COL_LOG).setCheckState(Qt.CheckState.Checked if log else Qt.CheckState.Unchecked)
        if choices is not None:
            self.space.item(row, COL_CHOICES).setText(choices)

    def search_table(self) -> dict[str, Any]:
        """The ticked rows as a sweep file's [search] table."""
        search: dict[str, Any] = {}
        for row, (key, *_rest) in enumerate(SEARCHABLE):
            if self.space.item(row, COL_VARY).checkState() != Qt.CheckState.Checked:
                continue
            choices = self.space.item(row, COL_CHOICES).text().strip()
            if choices:
                search[key] = [_parse_value(part) for part in choices.split(",") if part.strip()]
                continue
            low, high = (_parse_value(self.space.item(row, col).text()) for col in (COL_LOW, COL_HIGH))
            search[key] = {"low": low, "high": high,
                           "log": self.space.item(row, COL_LOG).checkState() == Qt.CheckState.Checked}
        return search

    def sweep_table(self) -> dict[str, Any]:
        return {"trials": self.trials.value(), "sampler": self.sampler.currentText(),
                "pruner": self.pruner.currentText(), "metric": self.metric_choice.currentText(), "seed": self.seed.value()}

    # -- running -------------------------------------------------------------------------------
    def start(self) -> None:
        """A new sweep (or more trials of the same one) of the form's config in the folder."""
        if self.running:
            return
        try:
            base = self._base_config()
            spec = _sweep.parse_sweep({"search": self.search_table(), "sweep": self.sweep_table()},
                                     where="The sweep", base=base)
            folder = _sweep.create_sweep(spec, Path(self.folder_edit.text().strip() or self._new_folder_name()))
        except ConfigError as exc:  # SweepError is one: a sentence naming the setting
            self._say(str(exc))
            return
        self._launch(folder)

    def continue_(self) -> None:
        """Run the sweep in the folder until it has its trials (interrupted trials are replaced)."""
        if self.running:
            return
        folder = Path(self.folder_edit.text().strip()).expanduser()
        try:
            _sweep.read_sweep(folder)
        except ConfigError as exc:
            self._say(str(exc))
            return
        self._launch(folder.absolute())

    def stop(self) -> None:
        if self.running:
            self._say("Stopping: the running trial saves and is marked interrupted…")
            self.process.terminate()  # SIGTERM: the sweep stops like Ctrl+C

    def open_folder(self, folder: str | Path) -> bool:
        """Show the sweep in `folder` (to watch it, or Continue it)."""
        folder = Path(folder).expanduser().absolute()
        try:
            _sweep.read_sweep(folder)
        except ConfigError as exc:
            self._say(str(exc))
            return False
        self.folder_edit.setText(str(folder))
        self._show(folder)
        self._show_spec()
        return True

    def open_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a sweep folder", str(self.sweeps_root))
        if folder:
            self.open_folder(folder)

    def shutdown(self, wait_ms: int = 60000) -> None:
        """Stop the sweep and wait for its process (the window is closing)."""
        if self.running:
            self.process.terminate()
            if not self.process.waitForFinished(wait_ms):
                self.process.kill()
                self.process.waitForFinished(5000)

    def _launch(self, folder: Path) -> None:
        self.folder_edit.setText(str(folder))
        self._show(folder)
        self.log.clear()
        process = QProcess(self)
        process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        process.readyReadStandardOutput.connect(self._read_output)
        process.finished.connect(self._process_finished)
        process.errorOccurred.connect(self._process_error)
        self.process = process
        process.start(sys.executable, ["-m", "perceiver_gui", "sweep", "--out", str(folder),
                                       "--workers", str(self.workers.value())])
        self._say(f"Sweeping in {folder}…")
        self.timer.start()
        self._update_buttons()
        self.running_changed.emit(True)

    def _read_output(self) -> None:
        if self.process is None:
            return
        text = bytes(self.process.readAllStandardOutput().data()).decode("utf-8", "replace")
        for line in text.splitlines():
            if line.strip():
                self.log.appendPlainText(line)

    def _process_finished(self, code: int, _status: QProcess.ExitStatus) -> None:
        self._read_output()
        self.timer.stop()
        self.refresh()
        last = self.log.toPlainText().strip().splitlines()[-1:] or [""]
        if code == 0:
            self._say(last[0] or "The sweep ended.")
        else:
            self._say(last[0].removeprefix("error: ") or f"The sweep process ended with code {code}.")
        self._update_buttons()
        self.running_changed.emit(False)

    def _process_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self._say(f"The sweep could not start ({self.process.errorString()}).")
            self.timer.stop()
            self._update_buttons()
            self.running_changed.emit(False)

    # -- showing -------------------------------------------------------------------------------
    def _show(self, folder: Path) -> None:
        self.folder = folder
        self._spec, self._storage = _sweep.read_sweep(folder)
        self._study = _sweep.open_study(folder, self._spec, self._storage)
        keys = [key for key, _ in self._spec.search]
        self.table.setColumnCount(5 + len(keys))
        self.table.setHorizontalHeaderLabels(["Trial", "State", self._spec.metric, "Epoch", *keys, "Run"])
        self.rows = []
        self._importance = (-1, {})
        self.table.setRowCount(0)
        self.refresh()

    def refresh(self) -> None:
        """Read the study again and redraw the table and plots."""
        if self._study is None:
            return
        try:
            self.rows = _sweep.trial_rows(self._study, self._spec)
        except Exception as exc:  # noqa: BLE001 - the journal mid-write on a slow share: try again next second
            self._say(f"Could not read the sweep's study: {exc}")
            return
        keys = [key for key, _ in self._spec.search]
        selected = self._selected_row()
        self.table.setRowCount(len(self.rows))
        for i, r in enumerate(self.rows):
            params = dict(r.params)
            cells = [str(r.number), r.state + (" ★" if r.is_best else ""), _sweep.format_value(r.value), str(r.epoch),
                     *[_sweep.format_value(params.get(k, "")) for k in keys], r.run_dir]
            for col, text in enumerate(cells):
                item = self.table.item(i, col)
                if item is None:
                    item = QTableWidgetItem()
                    self.table.setItem(i, col, item)
                item.setText(text)
                if col == 1:
                    item.setForeground(QColor(STATE_COLOURS.get(r.state, "#888888")))
        self.table.resizeColumnsToContents()
        if selected is not None and selected < len(self.rows):
            self.table.selectRow(selected)
        if not self.running:
            self.status.setText(_sweep.progress(self._study, self._spec))
        complete = sum(r.state == "complete" for r in self.rows)
        if complete != self._importance[0] and self._importance_worker is None:
            self._compute_importance(complete)
        note = "needs two complete trials" if complete < 2 else \
            "computing…" if self._importance[0] != complete else "no differences between the trials yet"
        self.plots.show_trials(self.rows, self._spec.search, self._spec.metric, self._spec.direction,
                               self._importance[1], note)

    def _compute_importance(self, complete: int) -> None:
        """Optuna's importances in a worker: the first takes seconds (fANOVA's imports), later ones ~10 ms."""
        self._importance_worker = start_worker(
            _jobs.job("importances"), self.folder, self._spec, self._storage, complete, returned=self._importance_ready,
            errored=self._importance_error, finished=self._importance_finished)

    def _importance_ready(self, result: tuple[Path, int, dict[str, float]]) -> None:
        folder, complete, importance = result
        if folder == self.folder:
            self._importance = (complete, importance)
            self.refresh()

    def _importance_error(self, exc: Exception) -> None:
        self._say(f"Could not compute the parameters' importance: {exc}")

    def _importance_finished(self) -> None:
        self._importance_worker = None

    def _show_spec(self) -> None:
        """Put the opened sweep's search space and settings in the widgets, so Start repeats it."""
        spec = self._spec
        search = dict(spec.search)
        fmt = _sweep.format_value
        for key, *_rest in SEARCHABLE:
            space = search.get(key)
            if space is None:
                self.set_vary(key, vary=False)
            elif hasattr(space, "values"):
                self.set_vary(key, choices=", ".join(fmt(v).lower() if isinstance(v, bool) else fmt(v)
                                                     for v in space.values))
            else:
                self.set_vary(key, low=space.low, high=space.high, log=space.log, choices="")
        for combo, value in ((self.sampler, spec.sampler), (self.pruner, spec.pruner), (self.metric_choice, spec.metric)):
            combo.setCurrentText(value)
        self.trials.setValue(spec.trials)
        self.seed.setValue(spec.seed)

    def _selected_row(self) -> int | None:
        rows = self.table.selectionModel().selectedRows()
        return rows[0].row() if rows else None

    def _trial_selected(self) -> None:
        index = self._selected_row()
        if index is None or index >= len(self.rows) or not self.rows[index].run_dir:
            return
        run_dir = self.rows[index].run_dir
        self.run_plots.load_metrics(read_metrics(Path(run_dir)))
        if run_dir != self._shown_trial:  # a new pick, not the refresh keeping the selection: show its curves
            self._shown_trial = run_dir
            self.views.setCurrentWidget(self.run_plots)

    def _open_model(self) -> None:
        index = self._selected_row()
        if index is None or index >= len(self.rows):
            return
        model = Path(self.rows[index].run_dir) / MODEL_FILE
        if model.is_file():
            self.open_model_requested.emit(str(model))
        else:
            self._say(f"Trial {self.rows[index].number} has no saved model yet.")

    def _update_buttons(self) -> None:
        running = self.running
        self.start_button.setEnabled(not running)
        self.continue_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.space.setEnabled(not running)

    def _say(self, text: str) -> None:
        self.status.setText(text)
        self.message.emit(text)

    def _new_folder_name(self) -> Path:
        return self.sweeps_root / time.strftime("sweep-%Y%m%d-%H%M%S")

    @staticmethod
    def _metrics() -> list[str]:
        reported = {f.name for f in fields(EpochEnd)}
        return [m for m in ("val_acc", "val_loss", "train_acc", "train_loss") if m in reported]


def _parse_value(text: str) -> Any:
    """A value typed in a cell: a whole number, a number, true/false, or text."""
    text = text.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text
