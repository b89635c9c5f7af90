"""The File menu's exports: a run's metrics as CSV, and a model as ONNX, each in a worker (ONNX takes
seconds; a long run's CSV too: 100,000 logged steps take ~2 s). One export at a time.

Both act on the same run, which the window names through `run()`: the run selected in the Runs tab, else
the one trained last ("" when there is none, and then ONNX asks for a model file). The menu texts and
the save dialogs name that run (`update_texts` when it may have changed). Success is a status-bar
sentence (`message`), failure a dialog with the sentence the core gave.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from perceiver_gui.core.runs import MODEL_FILE
from perceiver_gui.ui import deferred
from perceiver_gui.ui.runs_panel import run_name as _run_name
from perceiver_gui.ui.workers import start_worker

__all__ = ["ExportActions"]

# torch and ONNX: imported in the export's worker (ui/deferred.py); read in the GUI thread only once a worker has.
_export = deferred.module("perceiver_gui.core.export")
_checkpoints = deferred.module("perceiver_gui.core.checkpoints")


class ExportActions(QObject):
    message = Signal(str)  # a sentence for the status bar
    finished = Signal()  # an export ended (written or not)

    def __init__(self, parent: QWidget, *, run: Callable[[], str]):
        super().__init__(parent)
        self._parent = parent
        self._run = run
        self._worker = None
        self._done: Callable[[object], str] = str  # the status sentence for the running export's result
        self.metrics_action = QAction(parent)
        self.metrics_action.setStatusTip("Every logged step and epoch of the run selected in the Runs tab "
                                         "(or the last one trained), for a spreadsheet or pandas")
        self.metrics_action.triggered.connect(self.export_metrics)
        self.onnx_action = QAction(parent)
        self.onnx_action.setStatusTip("The model of the run selected in the Runs tab (or the last one trained; "
                                      "without one, a model file you choose) as ONNX, with its classes and "
                                      "preprocessing in the file")
        self.onnx_action.triggered.connect(self.export_onnx)
        self.actions = (self.metrics_action, self.onnx_action)
        self.update_texts()

    @property
    def working(self) -> bool:
        return self._worker is not None

    def update_texts(self) -> None:
        """Name the run the exports act on in the menu."""
        run = self._run()
        if run:
            name = _run_name(run)
            self.metrics_action.setText(f"Export the metrics of “{name}” as &CSV…")
            self.onnx_action.setText(f"Export the model of “{name}” as O&NNX…")
        else:
            self.metrics_action.setText("Export run metrics as &CSV…")
            self.onnx_action.setText("Export a model as O&NNX…")

    def export_metrics(self) -> None:
        if self._worker is not None:
            return
        run = self._run()
        if not run:
            self.message.emit("Select one run in the Runs tab (or train one) to export its metrics.")
            return
        path = self._save_name(f"Export the metrics of “{_run_name(run)}” as CSV", Path(run).name + ".csv",
                               "CSV files (*.csv)")
        if not path:
            return
        self._start(_export.job("metrics_csv"), run, path, busy=f"Exporting the metrics of “{_run_name(run)}”…",
                    done=lambda rows: f"Exported {rows:,} rows of metrics to {path}.")

    def export_onnx(self) -> None:
        if self._worker is not None:
            return
        run = self._run()
        if run:
            model = str(Path(run) / MODEL_FILE)
            if not Path(model).is_file():
                self.message.emit(f"The run “{_run_name(run)}” has no saved model yet: it is written when "
                                  f"the first epoch ends.")
                return
            title = f"Export the model of “{_run_name(run)}” as ONNX"
            busy = f"Exporting the model of “{_run_name(run)}” as ONNX…"  # named as in the menu
        else:
            model, _ = QFileDialog.getOpenFileName(self._parent, "Choose a model to export as ONNX", "",
                                                   "Models (*.safetensors);;All files (*)")
            if not model:
                return
            title = f"Export {Path(model).name} as ONNX"
            busy = f"Exporting {Path(model).name} as ONNX…"
        name = Path(model).parent.name if Path(model).name == MODEL_FILE else Path(model).stem
        path = self._save_name(title, (name or "model") + ".onnx", "ONNX models (*.onnx)")
        if not path:
            return
        self._start(_export.job("export_onnx"), model, path, busy=busy,
                    done=lambda out: f"Exported the model as ONNX to {out}.")

    def _start(self, fn: deferred.Job, *args: str, busy: str, done: Callable[[object], str]) -> None:
        self._done = done
        for action in self.actions:
            action.setEnabled(False)
        self.message.emit(busy)
        self._worker = start_worker(fn, *args, returned=self._on_exported, errored=self._on_error,
                                    finished=self._on_finished)

    def _save_name(self, title: str, suggested: str, filter_: str) -> str:
        path, _ = QFileDialog.getSaveFileName(self._parent, title, str(Path.home() / suggested), filter_)
        suffix = Path(suggested).suffix
        if path and not path.lower().endswith(suffix):  # the dialog adds no suffix on some platforms
            path += suffix
        return path

    def _on_exported(self, result: object) -> None:
        self.message.emit(self._done(result))

    def _on_error(self, exc: BaseException) -> None:
        text = str(exc) if isinstance(exc, _export.ExportError | _checkpoints.CheckpointError) else f"The export failed: {exc}"
        QMessageBox.warning(self._parent, "Export failed", text)

    def _on_finished(self) -> None:
        self._worker = None
        for action in self.actions:
            action.setEnabled(True)
        self.finished.emit()
