"""The main window: composition and wiring of the panels, and nothing else.

Left: the hyperparameter form with its live cost readout. Right: tabs for Training (controls,
plots, log), Classifier and Runs. The runner drives the engine; the panels only show.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence, QShowEvent
from PySide6.QtWidgets import (
    QLabel,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from perceiver_gui import __version__
from perceiver_gui.config import PRESETS, Config, ConfigError
from perceiver_gui.core.events import Finished, RunStarted
from perceiver_gui.core.queue import RunQueue, queue_file
from perceiver_gui.core.runs import RunError, default_runs_root, read_config, read_metrics
from perceiver_gui.ui import deferred
from perceiver_gui.ui.classifier_panel import ClassifierPanel
from perceiver_gui.ui.complexity_view import ComplexityView
from perceiver_gui.ui.export_actions import ExportActions
from perceiver_gui.ui.help_dialog import GuideDialog
from perceiver_gui.ui.hyperparams import HyperparamsPanel
from perceiver_gui.ui.lifecycle import RunLifecycle
from perceiver_gui.ui.mistakes_panel import MistakesPanel
from perceiver_gui.ui.node_commands import NodeCommandsDialog
from perceiver_gui.ui.queue_panel import QueuePanel
from perceiver_gui.ui.runner import TrainingRunner
from perceiver_gui.ui.runs_panel import RunsPanel, run_name
from perceiver_gui.ui.sweep_panel import SweepPanel
from perceiver_gui.ui.training_panel import TrainingPanel
from perceiver_gui.ui.widgets import guard_wheel

if TYPE_CHECKING:
    from perceiver_gui.ui.plots import PlotsPanel

__all__ = ["MainWindow"]

# The live curves (pyqtgraph), loaded after the window is shown, or at once when a run starts (ui/deferred.py).
_plots_module = deferred.module("perceiver_gui.ui.plots", plotting=True)


class MainWindow(QMainWindow):
    def __init__(self, settings: QSettings, runs_root: Path | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.settings = settings
        self.runs_root = Path(runs_root) if runs_root is not None else default_runs_root()
        self.setWindowTitle("Perceiver GUI")

        self.form = HyperparamsPanel(self._saved_config())
        self.complexity = ComplexityView()
        # The plots need pyqtgraph, which loads after the window is shown (see ui/deferred.py); until
        # then the Training tab holds an empty frame for them. `self.plots` makes them on demand.
        self._plots: PlotsPanel | None = None
        self._plots_loading = False
        self._plots_frame = QWidget()
        frame_layout = QVBoxLayout(self._plots_frame)
        frame_layout.setContentsMargins(0, 0, 0, 0)
        self._plots_placeholder = QLabel("Loading plots…")
        self._plots_placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._plots_placeholder.setEnabled(False)
        frame_layout.addWidget(self._plots_placeholder)
        self.training = TrainingPanel(self._plots_frame)
        self.classifier = ClassifierPanel()
        self.runs = RunsPanel(self.runs_root)
        self.mistakes = MistakesPanel()
        self.sweep = SweepPanel(self.form.config, self.runs_root.parent / "sweeps")
        self.runner = TrainingRunner(self.runs_root, self)
        self.lifecycle = RunLifecycle(running=lambda: self.runner.running,
                                      exporting=lambda: self.export_actions.working,
                                      confirm_quit=self._confirm_quit, parent=self)
        self.queue = QueuePanel(RunQueue(queue_file(self.runs_root)))

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(6, 6, 0, 6)
        left_layout.addWidget(self.form, 1)
        left_layout.addWidget(self.complexity)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.training, "Training")
        self.tabs.addTab(self.classifier, "Classifier")
        self.tabs.addTab(self.runs, "Runs")
        self.tabs.addTab(self.mistakes, "Mistakes")
        self.tabs.addTab(self.queue, "Queue")
        self.tabs.addTab(self.sweep, "Sweep")
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.tabs)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([390, 890])
        self.splitter.setChildrenCollapsible(False)
        self.setCentralWidget(self.splitter)
        self.setMinimumSize(960, 640)
        self._build_menus()
        guard_wheel(self)  # every field of every panel: the wheel scrolls, it changes only a focused field

        self.form.config_changed.connect(self.complexity.set_config)
        self.form.problems_changed.connect(self._problems_changed)
        self.form.message.connect(self._show_message)
        self.training.start_requested.connect(self.start)
        self.training.pause_requested.connect(self.runner.pause)
        self.training.continue_requested.connect(self.runner.continue_)
        self.training.stop_requested.connect(self.stop)
        self.training.resume_requested.connect(self.resume_last)
        self.runner.event.connect(self.lifecycle.on_event)
        self.runner.event.connect(self._on_event)
        self.runner.event.connect(self.mistakes.on_event)
        self.runner.finished.connect(self._on_finished)
        self.runner.crashed.connect(self._on_crashed)
        self.runner.stopped_running.connect(self._on_stopped_running)
        self.lifecycle.resumable_changed.connect(self._offer_resume)
        self.lifecycle.stop_requested.connect(self.stop)
        self.lifecycle.close_ready.connect(self.close)
        self.lifecycle.message.connect(self._show_message)
        self.runner.paused_changed.connect(self._on_paused)
        # The queue hears of every run (its own and those started by hand) and asks for its next one.
        self.training.queue_requested.connect(self._add_to_queue)
        self.queue.start_requested.connect(self._start_queued)
        self.queue.message.connect(self._show_message)
        self.queue.count_changed.connect(self._queue_count)
        self.lifecycle.idle.connect(lambda: self.queue.set_busy(False))  # the next queued run starts
        self.runner.started.connect(lambda: self.queue.set_busy(True))
        self.runner.event.connect(self.queue.on_event)
        self.runner.crashed.connect(self.queue.on_crashed)
        self._queue_count(len(self.queue.queue.waiting()))  # a queue restored from the last session
        self.classifier.message.connect(self._show_message)
        self.runs.message.connect(self._show_message)
        self.runs.resume_requested.connect(self.resume_run)
        self.runs.open_model_requested.connect(self._open_model)
        self.runs.selection_changed.connect(self._runs_picked)
        self.runs.runs_deleted.connect(self.classifier.unload_runs)
        self.sweep.message.connect(self._show_message)
        self.sweep.open_model_requested.connect(self._open_model)
        self.tabs.currentChanged.connect(self._tab_changed)

        self.complexity.set_config(self.form.config())
        self._problems_changed(self.form.problems())
        self._restore_layout()
        # The run stopped when the app last closed (the model comes back in _plotting_loaded).
        self.lifecycle.restore(str(self.settings.value("last_stopped_run", "") or ""))
        self.statusBar().showMessage(f"Runs are saved in {self.runs_root}.", 8000)

    @property
    def plots(self) -> PlotsPanel:
        """The live curves of the Training tab, made now if pyqtgraph has not finished loading."""
        if self._plots is None:
            self._plots = _plots_module.PlotsPanel()
            layout = self._plots_frame.layout()
            layout.removeWidget(self._plots_placeholder)
            self._plots_placeholder.deleteLater()
            layout.addWidget(self._plots)
            self._plots.show()  # now, not on the layout's queued show
        return self._plots

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 (Qt override)
        super().showEvent(event)
        if self._plots is None and not self._plots_loading:
            self._plots_loading = True
            deferred.after_first_paint(self, lambda: deferred.load_step_by_step(self, self._plotting_loaded))

    def _plotting_loaded(self) -> None:
        self.plots.setVisible(True)  # made now that pyqtgraph is in
        deferred.preload_engine()
        # The classifier's model of the last session: loading it needs torch, so not before the window.
        model = str(self.settings.value("model", "") or "")
        if model and not self.classifier.model_path and not self.classifier.working and Path(model).is_file():
            self.classifier.load_checkpoint(model)

    # -- menus ---------------------------------------------------------------------------------
    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        for text, shortcut, slot in (
            ("&Open settings…", QKeySequence.StandardKey.Open, self.form.open_dialog),
            ("&Save settings…", QKeySequence.StandardKey.Save, self.form.save_dialog),
            ("Open &model…", None, self._open_model_dialog),
        ):
            action = QAction(text, self)
            if shortcut is not None:
                action.setShortcut(shortcut)
            action.triggered.connect(slot)
            file_menu.addAction(action)
        file_menu.addSeparator()
        self.export_actions = ExportActions(
            self, run=lambda: self.lifecycle.run_to_export([r.path for r in self.runs.selected_runs()]))
        file_menu.aboutToShow.connect(self.export_actions.update_texts)  # a rename changes the run's name
        self.export_actions.message.connect(self._show_message)
        self.export_actions.finished.connect(self.lifecycle.export_finished)
        file_menu.addActions(self.export_actions.actions)
        file_menu.addSeparator()
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)
        run_menu = self.menuBar().addMenu("&Run")
        for action in self.training.actions_in_order:
            run_menu.addAction(action)
        run_menu.addAction(self.training.queue_action)
        run_menu.addSeparator()
        self.node_commands_action = QAction("Commands for several &machines…", self)
        self.node_commands_action.setStatusTip("The command to run on each machine to train these settings together")
        self.node_commands_action.triggered.connect(self.show_node_commands)
        run_menu.addAction(self.node_commands_action)
        help_menu = self.menuBar().addMenu("&Help")
        self.guide_action = QAction("&Guide", self)
        self.guide_action.setShortcut(QKeySequence.StandardKey.HelpContents)
        self.guide_action.setStatusTip("What each tab does, the keyboard shortcuts, and where to read more")
        self.guide_action.triggered.connect(self.show_guide)
        help_menu.addAction(self.guide_action)
        about = QAction("&About Perceiver GUI", self)
        about.triggered.connect(self._about)
        help_menu.addAction(about)

    def show_node_commands(self) -> None:
        NodeCommandsDialog(self.form.config(), self).open()

    # -- running -------------------------------------------------------------------------------
    def start(self) -> None:
        if self.runner.running or self.form.problems():
            return
        try:
            cfg = self.form.config()
        except ConfigError as exc:
            self._show_message(str(exc))
            return
        self._begin()
        self.runner.start(cfg)

    def _add_to_queue(self, seeds: int) -> None:
        if self.form.problems():
            return
        try:
            self.queue.add(self.form.config(), seeds)
        except ConfigError as exc:  # a seed past the largest allowed
            self._show_message(str(exc))

    def _start_queued(self, entry) -> None:
        self._begin()
        self.training.append_log(f"From the queue: “{entry.config.name}”, seed {entry.config.train.seed} "
                                 f"({len(self.queue.queue.waiting())} more waiting).")
        self.runner.start(entry.config)

    def _queue_count(self, waiting: int) -> None:
        self.tabs.setTabText(self.tabs.indexOf(self.queue), f"Queue ({waiting})" if waiting else "Queue")

    def resume_run(self, run_dir: str) -> None:
        if self.runner.running:
            return
        try:  # the form shows what is running: the run's own config, which the engine resumes with
            saved = read_config(Path(run_dir))
        except RunError:
            saved = None  # the engine reports an unreadable run folder itself
        run_config = saved.config if saved is not None else None
        if run_config is not None:
            if not self._form_holds(run_config) and not self._may_replace_form(run_dir):
                return
            self.form.set_config(run_config)
        self._begin()
        self.tabs.setCurrentWidget(self.training)
        self.runner.resume_run(Path(run_dir))

    def _form_holds(self, config: Config) -> bool:
        try:
            return self.form.config() == config
        except ConfigError:
            return False  # half-edited settings are edits too

    def _may_replace_form(self, run_dir: str) -> bool:
        """Ask before the run's settings replace the form's (unsaved) ones."""
        name = run_name(run_dir)
        answer = QMessageBox.question(
            self,
            "Replace the settings in the form?",
            f"Resuming “{name}” puts that run's settings in the form, replacing the ones there now. "
            f"To keep yours, cancel and use File › Save settings… first.\n\nResume “{name}”?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        return answer == QMessageBox.StandardButton.Yes

    def resume_last(self) -> None:
        if self.lifecycle.last_stopped_run:
            self.resume_run(self.lifecycle.last_stopped_run)

    def stop(self) -> None:
        if self.runner.running:
            self.training.set_state("stopping")
            self.runner.stop()

    def _begin(self) -> None:
        self.plots.reset()
        self.training.log.clear()
        self.training.set_state("running")
        self.lifecycle.began()
        self.form.set_editable(False)

    def _on_event(self, event) -> None:
        self.training.on_event(event)
        self.plots.on_event(event)
        if isinstance(event, RunStarted):
            self.export_actions.update_texts()
            if event.start_step:
                # A resumed run: show the curves it had so far, then append.
                self.plots.load_metrics(read_metrics(Path(event.run_dir)))
            self.runs.set_busy_run(event.run_dir)
            self.runs.refresh()

    def _on_finished(self, event: Finished) -> None:
        if event.model_path:
            self.classifier.load_checkpoint(event.model_path)
        if event.status == "failed" and not self.queue.runs_current:  # a queued failure is marked in the queue
            QMessageBox.critical(self, "Training stopped", event.message)

    def _on_crashed(self, sentence: str, detail: str) -> None:
        self.training.append_log(detail.rstrip(), "warning")
        self.training.status.setText(sentence)
        QMessageBox.critical(self, "Training failed", f"{sentence}\n\nThe run's files are kept; details are in the log.")

    def _on_stopped_running(self) -> None:
        self.training.set_state("idle")
        self.form.set_editable(True)
        self.runs.set_busy_run("")
        self.runs.refresh()
        self._problems_changed(self.form.problems())
        self.lifecycle.stopped_running()  # offers Resume, then closes if closing waited for the run

    def _on_paused(self, paused: bool) -> None:
        if self.training.state != "stopping":
            self.training.set_state("paused" if paused else "running")

    # -- other panels --------------------------------------------------------------------------
    def _problems_changed(self, problems: list) -> None:
        self.training.set_blocked(problems[0][1] if problems else "")

    def _open_model(self, path: str) -> None:
        self.classifier.load_checkpoint(path)
        self.tabs.setCurrentWidget(self.classifier)

    def _runs_picked(self) -> None:
        self.lifecycle.runs_picked()
        self.export_actions.update_texts()

    def _open_model_dialog(self) -> None:
        self.tabs.setCurrentWidget(self.classifier)
        self.classifier.open_model_dialog()

    def _tab_changed(self, index: int) -> None:
        if self.tabs.widget(index) is self.runs:
            self.runs.refresh()
        elif self.tabs.widget(index) is self.mistakes:
            picked = self.runs.selected()
            if picked is not None and self.lifecycle.mistakes_should_show(picked.path):
                self.mistakes.load_run(picked.path)

    def show_guide(self):
        menus = [a.menu() for a in self.menuBar().actions() if a.menu() is not None]
        dialog = GuideDialog([a for menu in menus for a in menu.actions()], self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog

    def _show_message(self, text: str) -> None:
        self.statusBar().showMessage(text, 10000)

    def _about(self) -> None:
        QMessageBox.about(
            self,
            "About Perceiver GUI",
            f"<b>Perceiver GUI {__version__}</b><p>Set a Perceiver's hyperparameters, watch it train, "
            f"and classify images with it.</p><p>Runs are saved in {self.runs_root}.</p>",
        )

    # -- remembering between launches ----------------------------------------------------------
    def _saved_config(self) -> Config:
        raw = self.settings.value("config", "")
        if raw:
            try:
                return Config.from_dict(json.loads(str(raw)))
            except (ValueError, ConfigError):
                pass  # settings from another version: start from the preset
        return PRESETS["digits"]

    def _restore_layout(self) -> None:
        geometry = self.settings.value("geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1280, 800)
        splitter = self.settings.value("splitter")
        if splitter is not None:
            self.splitter.restoreState(splitter)
        tab = self.settings.value("tab")
        if tab is not None:
            try:
                self.tabs.setCurrentIndex(int(tab))
            except (TypeError, ValueError):
                pass

    def _offer_resume(self, run_dir: str) -> None:
        self.training.set_resumable(run_name(run_dir) if run_dir else "")

    def save_settings(self) -> None:
        try:
            self.settings.setValue("config", json.dumps(_json_safe(self.form.config().to_dict())))
        except ConfigError:
            pass
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("splitter", self.splitter.saveState())
        self.settings.setValue("tab", self.tabs.currentIndex())
        self.settings.setValue("last_stopped_run", self.lifecycle.last_stopped_run)
        self.settings.setValue("model", self.classifier.model_path)
        self.settings.sync()

    def _confirm_quit(self) -> bool:
        answer = QMessageBox.question(
            self,
            "Quit while training?",
            "A run is training. Stop it, save the model, and quit?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        return answer == QMessageBox.StandardButton.Yes

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt override)
        if not self.lifecycle.may_close():  # it closes the window again once the run or export is done
            event.ignore()
            return
        self.sweep.shutdown()  # its running trial saves, like Ctrl+C
        self.save_settings()
        event.accept()


def _json_safe(value):
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
