"""Past runs from the runs folder: name, date, dataset, best accuracy and status; the selected run's
curves below; resume, rename, delete (after asking) or open its model in the classifier. Select several
runs (Ctrl- or Shift-click) to compare them: their curves overlaid and their settings side by side."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QItemSelectionModel, QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from perceiver_gui.core import runs
from perceiver_gui.core.complexity import parameter_count
from perceiver_gui.core.runs import RunInfo
from perceiver_gui.ui import deferred
from perceiver_gui.ui.complexity_view import si
from perceiver_gui.ui.training_panel import format_duration

if TYPE_CHECKING:
    from perceiver_gui.ui.compare_view import CompareView
    from perceiver_gui.ui.plots import PlotsPanel

__all__ = ["RunsPanel", "run_name"]

# The curves (pyqtgraph), loaded when first shown, not at launch (ui/deferred.py).
_plots_module = deferred.module("perceiver_gui.ui.plots", plotting=True)
_compare_module = deferred.module("perceiver_gui.ui.compare_view", plotting=True)

HINT = "Select a run to see its curves; Ctrl- or Shift-click several to compare them."
MAX_COMPARED = 12  # runs overlaid at once: beyond this the colours and dashes can no longer be told apart
# Validation: the best epoch's accuracy on the validation split, which chose the saved model. Test: that
# model on the test split, measured once when the run ended. Runs of older versions chose on test.
# Short headers where the values are short, so Notes stays in view at 1280 × 800 (their tooltips say them whole).
COLUMNS = ("Name", "Date", "Dataset", "Validation", "Test", "Status", "Duration", "Params", "LR", "Notes")
VAL_COLUMN, TEST_COLUMN, STATUS_COLUMN, DURATION_COLUMN = 3, 4, 5, 6
PARAMS_COLUMN, LR_COLUMN, NOTES_COLUMN = 7, 8, 9
NOTES_SHOWN = 40  # characters of a run's notes shown in the list; the tooltip and the details hold them all
OLD_RUN_TIP = ("Trained by an older version, which chose its best epoch by this test accuracy, so it flatters the "
               "model; newer runs choose on a validation split and measure test once.")
PATH_ROLE = Qt.ItemDataRole.UserRole
SORT_ROLE = Qt.ItemDataRole.UserRole + 1


def run_name(run_dir: str | Path, fallback: str = "") -> str:
    """A run's name as this tab shows it (run.json, a few hundred bytes), else `fallback`, else its folder's.
    The other tabs name runs with it too, so a renamed run is called the same everywhere."""
    return runs.read_run(Path(run_dir)).name or fallback or Path(run_dir).name


def _size_and_lr(run_dir: str) -> tuple[int, float]:
    """The model's parameter count and the peak learning rate from the run's settings; 0 for what an
    unreadable or older settings file does not tell."""
    try:
        config = runs.read_config(Path(run_dir)).config
    except runs.RunError:
        return 0, 0.0
    if config is None:
        return 0, 0.0
    return parameter_count(config.model), float(config.train.lr)


def _notes(run_dir: str) -> str:
    return runs.read_run(Path(run_dir)).notes


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    if not lines:
        return ""
    return lines[0] if len(lines) == 1 and len(lines[0]) <= NOTES_SHOWN else lines[0][:NOTES_SHOWN].rstrip() + "…"


class _Item(QTreeWidgetItem):
    def __lt__(self, other: QTreeWidgetItem) -> bool:
        # Dates and accuracies sort by value, not by their text.
        column = self.treeWidget().sortColumn() if self.treeWidget() else 0
        a, b = self.data(column, SORT_ROLE), other.data(column, SORT_ROLE)
        if a is not None and b is not None:
            return a < b
        return super().__lt__(other)


class RunsPanel(QWidget):
    resume_requested = Signal(str)  # run folder
    open_model_requested = Signal(str)  # model file
    message = Signal(str)
    selection_changed = Signal()  # other runs are selected (not when a refresh keeps the same ones)
    runs_deleted = Signal(list)  # the folders just deleted (list[str]), so their model can be unloaded

    def __init__(self, runs_root: Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.runs_root = Path(runs_root)
        self._infos: dict[str, RunInfo] = {}
        self._selection: tuple[str, ...] = ()  # the selected runs' folders, as last announced
        self._busy_run = ""  # the run training right now: not resumable, renamable or deletable here

        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(COLUMNS)
        self.tree.setRootIsDecorated(False)
        self.tree.setAlternatingRowColors(True)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.tree.setSortingEnabled(True)
        self.tree.sortByColumn(1, Qt.SortOrder.DescendingOrder)
        header = self.tree.header()
        for column in range(len(COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(NOTES_COLUMN, QHeaderView.ResizeMode.Stretch)  # the rest of the width
        self.tree.headerItem().setToolTip(VAL_COLUMN, "The best epoch's accuracy on the validation split, which "
                                                      "chose the saved model.")
        self.tree.headerItem().setToolTip(TEST_COLUMN, "The saved model's accuracy on the test split, measured once "
                                                       "when the run ended.")
        self.tree.headerItem().setToolTip(PARAMS_COLUMN, "Trainable parameters of the model.")
        self.tree.headerItem().setToolTip(LR_COLUMN, "Learning rate (the peak, with a schedule).")
        self.tree.itemSelectionChanged.connect(self._selected)
        self.tree.itemDoubleClicked.connect(lambda *_: self.open_model())

        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip(f"Read the runs folder again ({self.runs_root}).")
        self.refresh_button.clicked.connect(self.refresh)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue the selected stopped run where it left off.")
        self.resume_button.clicked.connect(self.resume)
        self.rename_button = QPushButton("Rename…")
        self.rename_button.setToolTip("Change the name the app shows for the selected run (its folder keeps its name).")
        self.rename_button.clicked.connect(self.rename)
        self.notes_button = QPushButton("Notes…")
        self.notes_button.setToolTip("Write down what the selected run tried and what came of it (kept in its run.json).")
        self.notes_button.clicked.connect(self.edit_notes)
        self.delete_button = QPushButton("Delete…")
        self.delete_button.setToolTip("Delete the selected runs' folders, after asking.")
        self.delete_button.clicked.connect(self.delete)
        self.open_button = QPushButton("Open in classifier")
        self.open_button.setToolTip("Load the selected run's model in the classifier.")
        self.open_button.clicked.connect(self.open_model)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter runs…")
        self.filter.setClearButtonEnabled(True)
        self.filter.setToolTip("Show only the runs whose name, dataset or status contains these words.")
        self.filter.setMaximumWidth(220)
        self.filter.textChanged.connect(self._apply_filter)
        buttons = QHBoxLayout()
        for b in (self.refresh_button, self.resume_button, self.rename_button, self.notes_button, self.delete_button,
                  self.open_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.filter)

        self.detail = QLabel(HINT)
        self.detail.setWordWrap(True)
        self.detail.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)  # alone when no run is shown
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._plots: PlotsPanel | None = None
        self._compare: CompareView | None = None

        lower = QWidget()
        lower_layout = QVBoxLayout(lower)
        lower_layout.setContentsMargins(0, 0, 0, 0)
        lower_layout.addWidget(self.detail)
        self._lower_layout = lower_layout
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.tree)
        split.addWidget(lower)
        split.setSizes([200, 400])
        split.setChildrenCollapsible(False)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(buttons)
        layout.addWidget(split, 1)
        self.refresh()

    # -- the typed API -------------------------------------------------------------------------
    @property
    def plots(self) -> PlotsPanel:
        """The selected run's curves. Made when first needed (the tab is shown, a run selected): a plots
        panel takes ~0.1 s to build, which the launch should not spend on a tab nobody has opened."""
        if self._plots is None:
            self._plots = _plots_module.PlotsPanel()
            self._plots.setVisible(len(self.selected_runs()) == 1)  # empty axes say nothing: the hint does
            self._lower_layout.addWidget(self._plots, 1)
        return self._plots

    @property
    def compare(self) -> CompareView:
        """The view of several selected runs, made (and its module imported) the first time two are."""
        if self._compare is None:
            self._compare = _compare_module.CompareView()
            self._compare.setVisible(False)
            self._lower_layout.addWidget(self._compare, 1)
        return self._compare

    def showEvent(self, event) -> None:  # noqa: N802 (Qt override)
        if self._compare is None or not self._compare.isVisible():
            _ = self.plots  # made on first show
        super().showEvent(event)

    def set_busy_run(self, path: str) -> None:
        self._busy_run = str(path)
        self._update_buttons()

    def run_names(self) -> list[str]:
        """The names of the runs listed (those the filter hides included)."""
        return [self.tree.topLevelItem(i).text(0) for i in range(self.tree.topLevelItemCount())]

    def shown_run_names(self) -> list[str]:
        return [item.text(0) for i in range(self.tree.topLevelItemCount()) if not (item := self.tree.topLevelItem(i)).isHidden()]

    def selected(self) -> RunInfo | None:
        """The selected run, when exactly one is (the actions on one run use it)."""
        chosen = self.selected_runs()
        return chosen[0] if len(chosen) == 1 else None

    def selected_runs(self) -> list[RunInfo]:
        """Every selected run, in the order the list shows them."""
        items = sorted(self.tree.selectedItems(), key=self.tree.indexOfTopLevelItem)
        return [self._infos[path] for item in items if (path := item.data(0, PATH_ROLE)) in self._infos]

    def select_runs(self, paths: Sequence[str]) -> int:
        """Select these runs (and no others), as Ctrl-clicks would; returns how many were found."""
        wanted = {str(p) for p in paths}
        found = 0
        self.tree.blockSignals(True)  # one update for the whole selection, not one per run
        try:
            self.tree.clearSelection()
            for i in range(self.tree.topLevelItemCount()):
                item = self.tree.topLevelItem(i)
                if item.data(0, PATH_ROLE) in wanted:
                    if not found:
                        self.tree.setCurrentItem(item, 0, QItemSelectionModel.SelectionFlag.NoUpdate)
                    item.setSelected(True)
                    found += 1
        finally:
            self.tree.blockSignals(False)
        self._selected()
        return found

    def refresh(self) -> None:
        keep = [info.path for info in self.selected_runs()]
        infos = runs.list_runs(self.runs_root)
        self._infos = {info.path: info for info in infos}
        self.tree.setSortingEnabled(False)
        with QSignalBlocker(self.tree):  # the selection is put back below
            self.tree.clear()
        for info in infos:
            val, test = _accuracy_texts(info)
            status = _status_text(info)
            if info.epochs:
                status += f" ({info.epochs_done}/{info.epochs} epochs)"
            if info.damaged:
                status += " · damaged"
            item = _Item([info.name, time.strftime("%Y-%m-%d %H:%M", time.localtime(info.created)), info.dataset, val,
                          test, status])
            item.setData(0, PATH_ROLE, info.path)
            item.setData(1, SORT_ROLE, info.created)
            old = info.selected_on == runs.SELECTED_ON_TEST
            item.setData(VAL_COLUMN, SORT_ROLE, info.best_acc if math.isfinite(info.best_acc) and not old else -1.0)
            test_acc = info.best_acc if old else info.test_acc
            item.setData(TEST_COLUMN, SORT_ROLE, test_acc if math.isfinite(test_acc) else -1.0)
            item.setToolTip(0, info.path)
            if old:
                item.setToolTip(TEST_COLUMN, OLD_RUN_TIP)
            elif info.selected_on == "last epoch":
                item.setToolTip(VAL_COLUMN, "No validation split: the last epoch's model was kept.")
            item.setToolTip(STATUS_COLUMN, "\n".join(filter(None, (
                f"Being trained by {info.holder}." if info.holder else "", info.message or info.status,
                f"Damaged: {info.damaged}." if info.damaged else ""))))
            params, lr = _size_and_lr(info.path)
            item.setText(PARAMS_COLUMN, si(params) if params else "—")
            item.setData(PARAMS_COLUMN, SORT_ROLE, params)
            item.setToolTip(PARAMS_COLUMN, f"{params:,} trainable parameters" if params else "")
            item.setText(LR_COLUMN, f"{lr:g}" if lr else "—")
            item.setData(LR_COLUMN, SORT_ROLE, lr)
            record = runs.read_run(Path(info.path))
            seconds = record.train_seconds
            item.setText(DURATION_COLUMN, format_duration(seconds) if math.isfinite(seconds) else "—")
            item.setData(DURATION_COLUMN, SORT_ROLE, seconds if math.isfinite(seconds) else -1.0)
            item.setToolTip(DURATION_COLUMN, "Time spent on training steps (evaluation and saving not counted)")
            notes = record.notes
            item.setText(NOTES_COLUMN, _first_line(notes))
            item.setToolTip(NOTES_COLUMN, notes)
            self.tree.addTopLevelItem(item)
        self.tree.setSortingEnabled(True)
        self._apply_filter(self.filter.text())
        self.select_runs(keep)  # shows the kept runs, or the hint that fits the list (empty or not)
        self._update_buttons()

    # -- actions -------------------------------------------------------------------------------
    def resume(self) -> None:
        info = self.selected()
        if info is not None:
            self.resume_requested.emit(info.path)

    def rename(self) -> None:
        info = self.selected()
        if info is None:
            return
        name, ok = QInputDialog.getText(
            self, f"Rename the run “{info.name}”",
            f"New name for the run “{info.name}”, as the app shows it (its folder {Path(info.path).name} keeps its name):",
            text=info.name)
        if not ok:
            return
        try:
            runs.rename_run(Path(info.path), name)
        except runs.RunError as exc:
            self.message.emit(str(exc))
            return
        self.refresh()

    def edit_notes(self) -> None:
        info = self.selected()
        if info is None or info.path == self._busy_run:  # the engine writes a running run's run.json
            return
        text, ok = QInputDialog.getMultiLineText(self, f"Notes on the run “{info.name}”",
                                                 "What this run tried, and what came of it:", _notes(info.path))
        if not ok:
            return
        if not (Path(info.path) / runs.RUN_FILE).is_file():
            self.message.emit(f"{info.path} is not a run folder any more; the notes were not saved.")
            return
        try:
            runs.write_run(Path(info.path), notes=text.strip())
        except OSError as exc:
            self.message.emit(f"Could not save the notes in {info.path}: {exc.strerror or exc}.")
            return
        self.refresh()

    def delete(self) -> None:
        chosen = self.selected_runs()
        if not chosen or any(info.path == self._busy_run for info in chosen):
            return
        if len(chosen) == 1:
            title = "Delete run"
            text = f"Delete the run “{chosen[0].name}” and all its files (model, metrics, resume state)?\n\n{chosen[0].path}"
        else:
            title = f"Delete {len(chosen)} runs"
            text = (f"Delete these {len(chosen)} runs and all their files (models, metrics, resume states)?\n\n"
                    + "\n".join(f"• {info.name}" for info in chosen))
        answer = QMessageBox.question(
            self,
            title,
            text,
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        if answer != QMessageBox.StandardButton.Yes:
            return
        failed = []
        for info in chosen:
            try:
                runs.delete_run(Path(info.path))
            except (runs.RunError, OSError) as exc:
                failed.append(f"Could not delete {info.name}: {exc}")
        deleted = len(chosen) - len(failed)
        gone = [info.path for info in chosen if not Path(info.path).exists()]
        if gone:
            self.runs_deleted.emit(gone)
        if failed:
            self.message.emit(" ".join(failed))
        elif deleted == 1:
            self.message.emit(f"Deleted the run {chosen[0].name}.")
        else:
            self.message.emit(f"Deleted {deleted} runs.")
        self.refresh()

    def open_model(self) -> None:
        info = self.selected()
        if info is not None and (Path(info.path) / runs.MODEL_FILE).is_file():
            self.open_model_requested.emit(str(Path(info.path) / runs.MODEL_FILE))

    # -- internals -----------------------------------------------------------------------------
    def _apply_filter(self, text: str) -> None:
        words = text.lower().split()
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            haystack = " ".join([*(item.text(c) for c in (0, 2, STATUS_COLUMN)), item.toolTip(NOTES_COLUMN)]).lower()
            hidden = not all(w in haystack for w in words)
            item.setHidden(hidden)
            if hidden:
                item.setSelected(False)  # an action never hits a run the user cannot see
    def _selected(self) -> None:
        chosen = self.selected_runs()
        self._update_buttons()
        if (paths := tuple(info.path for info in chosen)) != self._selection:
            self._selection = paths
            self.selection_changed.emit()
        if len(chosen) >= 2:
            self._show_comparison(chosen)
            return
        if self._compare is not None and self._compare.isVisible():
            self._compare.setVisible(False)
            self.plots.setVisible(True)
        if not chosen:
            if self._plots is not None:
                self._plots.reset()  # the curves shown belonged to none of the runs now selected (or deleted)
                self._plots.setVisible(False)
            self.detail.setText(HINT if self._infos else
                                f"No runs yet in {self.runs_root}. Press Start on the Training tab to make one.")
            self.detail.setToolTip("")
            return
        info = chosen[0]
        metrics = runs.read_metrics(Path(info.path))
        self.plots.load_metrics(metrics)
        self.plots.setVisible(True)
        notes = [info.message or _status_text(info)]
        if info.holder:
            notes.append(f"being trained by {info.holder}")
        if info.damaged or metrics.problems:
            notes.append("damaged: " + "; ".join(filter(None, (info.damaged, *metrics.problems[:3]))))
        own = _notes(info.path)
        self.detail.setText(f"<b>{escape(info.name)}</b> · " + escape(" · ".join(notes))
                            + (f"<br><i>{escape(own)}</i>".replace("\n", "<br>") if own else ""))
        self.detail.setToolTip(info.path)

    def _show_comparison(self, chosen: list[RunInfo]) -> None:
        shown = chosen[:MAX_COMPARED]
        if self._plots is not None:
            self._plots.setVisible(False)
        self.compare.set_runs(shown)
        self.compare.setVisible(True)
        text = f"<b>Comparing {len(shown)} runs</b> · Ctrl-click a run to add or remove it"
        if len(chosen) > len(shown):
            text = (f"<b>Comparing the first {len(shown)} of {len(chosen)} selected runs</b> · "
                    f"more would be too many to tell apart")
        self.detail.setText(text)
        self.detail.setToolTip("")

    def _update_buttons(self) -> None:
        chosen = self.selected_runs()
        info = chosen[0] if len(chosen) == 1 else None  # resume, rename and open act on one run
        path = Path(info.path) if info else None
        free = info is not None and info.path != self._busy_run
        self.resume_button.setEnabled(
            free and info.status not in ("completed", "running") and (path / runs.RESUME_FILE).is_file()
            and not self._busy_run
        )
        self.rename_button.setEnabled(free)
        self.notes_button.setEnabled(free)
        self.delete_button.setEnabled(bool(chosen) and all(i.path != self._busy_run for i in chosen))
        self.open_button.setEnabled(info is not None and (path / runs.MODEL_FILE).is_file())


def _accuracy_texts(info: RunInfo) -> tuple[str, str]:
    """The Validation and Test cells of a run: the best validation accuracy and the chosen model's test
    accuracy; an older version's run has only a test accuracy, chosen on, and says so."""
    if info.selected_on == runs.SELECTED_ON_TEST:
        return "— (old run)", (f"{info.best_acc:.1%} · selected on test (old run)" if math.isfinite(info.best_acc)
                               else "—")
    val = f"{info.best_acc:.1%}" if math.isfinite(info.best_acc) else "—"
    if info.selected_on == "last epoch":
        val = "none (last epoch kept)"
    return val, f"{info.test_acc:.1%}" if math.isfinite(info.test_acc) else "—"


def _status_text(info: RunInfo) -> str:
    """"running" only while a process holds the run's lock; a "running" run that no process holds was
    interrupted (killed, or the machine went down) and continues from its last save."""
    if info.status == "interrupted":
        return "interrupted (resumable)" if (Path(info.path) / runs.RESUME_FILE).is_file() else "interrupted"
    return info.status
