"""Past runs from the runs folder: name, date, dataset, best accuracy and status; the selected run's
curves below; resume, rename, delete (after asking) or open its model in the classifier. Select several
runs (Ctrl- or Shift-click) to compare them: their curves overlaid and their settings side by side."""

from __future__ import annotations

import html
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QItemSelectionModel, QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from perceiver_gui.core import runs
from perceiver_gui.core.runs import RunInfo

if TYPE_CHECKING:
    from perceiver_gui.ui.compare_view import CompareView
    from perceiver_gui.ui.plots import PlotsPanel  # imported when first shown: pyqtgraph loads after launch

__all__ = ["RunsPanel"]

HINT = "Select a run to see its curves; Ctrl- or Shift-click several to compare them."
MAX_COMPARED = 12  # runs overlaid at once: beyond this the colours and dashes can no longer be told apart
# Validation: the best epoch's accuracy on the validation split, which chose the saved model. Test: that
# model on the test split, measured once when the run ended. Runs of older versions chose on test.
COLUMNS = ("Name", "Date", "Dataset", "Validation", "Test", "Status")
VAL_COLUMN, TEST_COLUMN, STATUS_COLUMN = 3, 4, 5
OLD_RUN_TIP = ("Trained by an older version, which chose its best epoch by this test accuracy, so it flatters the "
               "model; newer runs choose on a validation split and measure test once.")
PATH_ROLE = Qt.ItemDataRole.UserRole
SORT_ROLE = Qt.ItemDataRole.UserRole + 1


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
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, len(COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.itemSelectionChanged.connect(self._selected)
        self.tree.itemDoubleClicked.connect(lambda *_: self.open_model())

        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip(f"Read the runs folder again ({self.runs_root}).")
        self.refresh_button.clicked.connect(self.refresh)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue the selected stopped run where it left off.")
        self.resume_button.clicked.connect(self.resume)
        self.rename_button = QPushButton("Rename…")
        self.rename_button.setToolTip("Change the name shown for the selected run.")
        self.rename_button.clicked.connect(self.rename)
        self.delete_button = QPushButton("Delete…")
        self.delete_button.setToolTip("Delete the selected runs' folders, after asking.")
        self.delete_button.clicked.connect(self.delete)
        self.open_button = QPushButton("Open in classifier")
        self.open_button.setToolTip("Load the selected run's model in the classifier.")
        self.open_button.clicked.connect(self.open_model)
        buttons = QHBoxLayout()
        for b in (self.refresh_button, self.resume_button, self.rename_button, self.delete_button, self.open_button):
            buttons.addWidget(b)
        buttons.addStretch(1)

        self.detail = QLabel(HINT)
        self.detail.setWordWrap(True)
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
            from perceiver_gui.ui.plots import PlotsPanel

            self._plots = PlotsPanel()
            self._lower_layout.addWidget(self._plots, 1)
        return self._plots

    @property
    def compare(self) -> CompareView:
        """The view of several selected runs, made (and its module imported) the first time two are."""
        if self._compare is None:
            from perceiver_gui.ui.compare_view import CompareView

            self._compare = CompareView()
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
        return [self.tree.topLevelItem(i).text(0) for i in range(self.tree.topLevelItemCount())]

    def selected(self) -> RunInfo | None:
        """The selected run, when exactly one is (the actions on one run use it)."""
        chosen = self.selected_runs()
        return chosen[0] if len(chosen) == 1 else None

    def selected_runs(self) -> list[RunInfo]:
        """Every selected run, in the order the list shows them."""
        items = sorted(self.tree.selectedItems(), key=self.tree.indexOfTopLevelItem)
        return [self._infos[path] for item in items if (path := item.data(0, PATH_ROLE)) in self._infos]

    def select(self, path: str) -> bool:
        """Select this run alone."""
        return self.select_runs([path]) == 1

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
            self.tree.addTopLevelItem(item)
        self.tree.setSortingEnabled(True)
        self.select_runs(keep)
        if not infos:
            self.detail.setText(f"No runs yet in {self.runs_root}. Press Start on the Training tab to make one.")
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
        name, ok = QInputDialog.getText(self, "Rename run", "New name:", text=info.name)
        if not ok:
            return
        try:
            runs.rename_run(Path(info.path), name)
        except runs.RunError as exc:
            self.message.emit(str(exc))
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
        if failed:
            self.message.emit(" ".join(failed))
        elif deleted == 1:
            self.message.emit(f"Deleted the run {chosen[0].name}.")
        else:
            self.message.emit(f"Deleted {deleted} runs.")
        if self._plots is not None:
            self._plots.reset()
        self.refresh()

    def open_model(self) -> None:
        info = self.selected()
        if info is not None and (Path(info.path) / runs.MODEL_FILE).is_file():
            self.open_model_requested.emit(str(Path(info.path) / runs.MODEL_FILE))

    # -- internals -----------------------------------------------------------------------------
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
                self.plots.reset()  # the curves shown belonged to none of the runs now selected
                self.detail.setText(HINT)
                self.detail.setToolTip("")
        if not chosen:
            return
        info = chosen[0]
        metrics = runs.read_metrics(Path(info.path))
        self.plots.load_metrics(metrics)
        notes = [info.message or _status_text(info)]
        if info.holder:
            notes.append(f"being trained by {info.holder}")
        if info.damaged or metrics.problems:
            notes.append("damaged: " + "; ".join(filter(None, (info.damaged, *metrics.problems[:3]))))
        self.detail.setText(f"<b>{html.escape(info.name)}</b> · " + html.escape(" · ".join(notes)))
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
