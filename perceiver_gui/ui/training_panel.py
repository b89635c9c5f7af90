"""Run controls and live progress: Start / Pause / Stop / Resume, a progress bar with epoch and step,
throughput, ETA, the device, a status line and a log. The plots are handed in and shown in the middle.

A view: it emits what the user asks for (`start_requested`, ...) and shows what it is told
(`on_event`, `set_state`, `set_blocked`); the window connects it to the runner.
"""

from __future__ import annotations

import math
import time

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QFont, QKeySequence
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from perceiver_gui.core.datasets import KINDS, Kind
from perceiver_gui.core.events import (
    CheckpointSaved,
    DownloadProgress,
    EpochEnd,
    Event,
    Finished,
    Log,
    RunStarted,
    Step,
)

__all__ = ["TrainingPanel", "format_duration"]


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


QWIDGETSIZE_MAX = (1 << 24) - 1  # Qt's "no limit" for a widget's size (not exported by PySide6)
WIDEST_SPEED = "888,888"  # images (series, sounds, points) a second
WIDEST_ETA = ("888 h 88 min left", "88 min 88 s left")


def hold_width(label: QLabel, *texts: str) -> None:
    """Fix `label`'s size to fit the widest of `texts`. A label whose text changes width asks the whole window
    to lay itself out again: at every progress update that repainted the Training tab's buttons, form and plot
    controls (~5 ms holding the lock that the training thread needs), where a fixed label repaints itself."""
    metrics = label.fontMetrics()
    width = max(metrics.horizontalAdvance(text) for text in texts) + 2 * label.margin() + 4
    label.setFixedSize(width, label.sizeHint().height())


def free_width(label: QLabel) -> None:
    """Let `label` follow its text again (see hold_width)."""
    label.setMinimumSize(0, 0)
    label.setMaximumSize(QWIDGETSIZE_MAX, QWIDGETSIZE_MAX)


class TrainingPanel(QWidget):
    start_requested = Signal()
    pause_requested = Signal()
    continue_requested = Signal()
    stop_requested = Signal()
    resume_requested = Signal()  # continue the last stopped run
    queue_requested = Signal(int)  # add the form's settings to the run queue, as this many seeds

    def __init__(self, center: QWidget, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = "idle"  # idle, running, paused, stopping
        self._blocked = ""
        self._resumable = ""  # the name of the run Resume continues; "" when there is none
        self._shown_step: Step | None = None  # the newest Step, shown once the batch it came in has been handled
        self._epochs = 0
        self._kind: Kind = KINDS["image"]  # what the running run's samples are: its sizes and speed count these

        self.start_action = QAction("Start", self)
        self.start_action.setShortcuts([QKeySequence("Ctrl+Return"), QKeySequence("F5")])
        self.start_action.triggered.connect(self.start_requested)
        self.pause_action = QAction("Pause", self)
        self.pause_action.setShortcut(QKeySequence("Ctrl+P"))
        self.pause_action.triggered.connect(self._pause_clicked)
        self.stop_action = QAction("Stop", self)
        self.stop_action.setShortcuts([QKeySequence("Ctrl+."), QKeySequence("Shift+F5")])
        self.stop_action.triggered.connect(self.stop_requested)
        self.resume_action = QAction("Resume", self)
        self.resume_action.setShortcut(QKeySequence("Ctrl+R"))
        self.resume_action.triggered.connect(self.resume_requested)
        self.actions_in_order = (self.start_action, self.pause_action, self.stop_action, self.resume_action)

        buttons = QHBoxLayout()
        self.buttons: dict[str, QToolButton] = {}
        for action in self.actions_in_order:
            button = QToolButton()
            button.setDefaultAction(action)
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            button.setMinimumWidth(72)
            button.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
            buttons.addWidget(button)
            self.buttons[action.text()] = button
        bold = QFont(self.buttons["Start"].font())
        bold.setBold(True)
        self.buttons["Start"].setFont(bold)

        self.queue_action = QAction("Add to queue", self)
        self.queue_action.setShortcut(QKeySequence("Ctrl+Shift+Return"))
        self.queue_action.triggered.connect(lambda: self.queue_requested.emit(self.seeds.value()))
        self.seeds = QSpinBox()
        self.seeds.setRange(1, 100)
        self.seeds.setSuffix(" seed")
        self.seeds.valueChanged.connect(lambda k: self.seeds.setSuffix(" seed" if k == 1 else " seeds"))
        self.seeds.setToolTip("How many runs of these settings to queue, with seeds seed, seed + 1, …; the "
                              "comparison shows them as one group, mean ± standard deviation")
        queue_button = QToolButton()
        queue_button.setDefaultAction(self.queue_action)
        queue_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        buttons.addSpacing(8)
        buttons.addWidget(queue_button)
        buttons.addWidget(self.seeds)
        self.buttons["Add to queue"] = queue_button

        self.progress = QProgressBar()
        # Its text goes on a label under it: Fusion centres a bar's text over the whole bar (whatever the
        # alignment), so the filled part's edge ran into the letters.
        self.progress.setTextVisible(False)
        self.progress.setValue(0)
        self.progress.setMinimumWidth(200)
        buttons.addWidget(self.progress, 1)
        self.progress_label = QLabel("Ready")
        self.progress_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

        self.speed_label = QLabel()  # empty until a run reports a speed: a row of dashes read as a glitch
        self.speed_label.setToolTip("Training throughput, in images per second.")
        self.eta_label = QLabel()
        self.eta_label.setToolTip("Estimated time until the run finishes.")
        self.device_label = QLabel("Device: —")
        self.device_label.setToolTip("Where the model trains.")
        facts = QHBoxLayout()
        for label in (self.device_label, self.speed_label, self.eta_label):
            facts.addWidget(label)
            facts.addSpacing(16)
        facts.addStretch(1)
        facts.addWidget(self.progress_label)  # right-aligned under the bar's end

        self.status = QLabel("Choose settings on the left and press Start.")
        self.status.setObjectName("statusLine")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)
        self.log.setPlaceholderText("The run's log appears here.")
        self.log.setMinimumHeight(60)

        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(center)
        split.addWidget(self.log)
        split.setStretchFactor(0, 5)
        split.setStretchFactor(1, 1)
        split.setSizes([500, 110])
        split.setChildrenCollapsible(False)
        self.splitter = split

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(buttons)
        layout.addLayout(facts)
        layout.addWidget(self.status)
        layout.addWidget(split, 1)
        self._update_actions()

    # -- what the window tells it --------------------------------------------------------------
    def set_blocked(self, reason: str) -> None:
        """Disable Start with this reason (a config problem); "" enables it again."""
        changed = reason != self._blocked
        self._blocked = reason
        if self.state == "idle" and changed:
            self.status.setText(f"Cannot start: {reason}" if reason else "Ready to start.")
        self._update_actions()

    def set_resumable(self, run_name: str) -> None:
        """Offer Resume for the run called `run_name` (the last one stopped); "" offers nothing."""
        self._resumable = run_name
        self._update_actions()

    def set_state(self, state: str) -> None:
        self.state = state
        if state == "paused":
            self.status.setText("Paused. Continue, or Stop to save and end the run.")
        elif state == "stopping":
            self.status.setText("Stopping after this step and saving the model…")
        elif state == "running" and self.status.text().startswith("Paused"):
            self.status.setText("Training…")
        self._update_actions()

    def append_log(self, text: str, level: str = "info") -> None:
        stamp = time.strftime("%H:%M:%S")
        prefix = "⚠ " if level == "warning" else ""
        self.log.appendPlainText(f"{stamp}  {prefix}{text}")

    def on_event(self, event: Event) -> None:
        if isinstance(event, Step):
            # Steps come in batches; a progress bar repaints at once on every new value (~5 ms, holding
            # the GIL that training needs), so only the batch's last step is shown.
            if self._shown_step is None:
                QTimer.singleShot(0, self, self._show_step)
            self._shown_step = event
            return
        self._show_step()  # anything else comes after the steps before it
        if isinstance(event, RunStarted):
            self._epochs = event.total_steps // max(1, event.steps_per_epoch)
            self._kind = KINDS.get(event.kind, KINDS["image"])
            self.speed_label.setToolTip(f"Training throughput, in {self._kind.plural} per second.")
            # Sized once for the run's widest texts, so that the updates repaint only themselves.
            last = self._progress_text(self._epochs, event.total_steps, event.total_steps)
            hold_width(self.progress_label, f"Finished · {last}", f"Stopped · {last}")
            hold_width(self.speed_label, f"{WIDEST_SPEED} {self._kind.plural}/s")
            hold_width(self.eta_label, *WIDEST_ETA)
            self.progress.setRange(0, max(1, event.total_steps))
            self.progress.setValue(event.start_step)
            self.progress_label.setText(
                self._progress_text(event.start_epoch + 1, event.start_step, event.total_steps))
            self.device_label.setText(f"Device: {event.device_name}")
            self.status.setText("Training…")
            self.append_log(
                f"{'Resumed' if event.start_step else 'Started'} in {event.run_dir}: {event.parameters:,} parameters, "
                f"{event.train_size:,} training, {event.val_size:,} validation and {event.test_size:,} test "
                f"{self._kind.plural}, "
                f"{len(event.class_names)} classes, "
                f"{event.total_steps:,} steps on {event.device_name}."
            )
        elif isinstance(event, EpochEnd):
            best = " (best so far)" if event.is_best else ""
            val = (f"validation loss {event.val_loss:.4f}, validation accuracy {event.val_acc:.1%}"
                   if math.isfinite(event.val_acc) else "no validation split")
            self.append_log(
                f"Epoch {event.epoch}: train loss {event.train_loss:.4f}, train accuracy {event.train_acc:.1%}, "
                f"{val}{best}."
            )
            if self.state == "running":  # "Paused" or "Stopping…" stays until the run goes on or ends
                shown = (f"validation accuracy {event.val_acc:.1%}" if math.isfinite(event.val_acc)
                         else "no validation split")
                self.status.setText(f"Epoch {event.epoch} done: {shown}{best}.")
        elif isinstance(event, DownloadProgress):
            free_width(self.progress_label)  # before the run: a download's own texts
            mb = 1024 * 1024
            if event.total_bytes > 0:
                self.progress.setRange(0, 1000)
                self.progress.setValue(int(1000 * event.done_bytes / event.total_bytes))
                self.progress_label.setText(
                    f"Downloading {event.name}: {event.done_bytes / mb:.1f} of {event.total_bytes / mb:.1f} MB"
                )
            else:
                self.progress.setRange(0, 0)  # unknown size: a busy bar
                self.progress_label.setText(f"Downloading {event.name}: {event.done_bytes / mb:.1f} MB")
            self.status.setText(f"Downloading {event.name}…")
        elif isinstance(event, Log):
            self.append_log(event.message, event.level)
        elif isinstance(event, CheckpointSaved):
            what = {"best": "best model", "final": "final model", "stopped": "model"}
            self.append_log(f"Saved the {what.get(event.reason, event.reason)} (epoch {event.epoch}) to {event.path}.")
        elif isinstance(event, Finished):
            self.status.setText(event.message)
            # A stopped run's last speed and time left would read as if it were still going.
            self.speed_label.clear()
            self.eta_label.clear()
            self.append_log(event.message, "warning" if event.status == "failed" else "info")
            if self.progress.maximum() == 0:
                self.progress.setRange(0, 1)
            text = {"completed": "Finished", "stopped": "Stopped", "failed": "Failed"}.get(event.status, event.status)
            self.progress_label.setText(f"{text} · {self.progress_label.text()}" if event.status != "failed" else text)

    # -- internals -----------------------------------------------------------------------------
    def _show_step(self) -> None:
        event, self._shown_step = self._shown_step, None
        if event is None:
            return
        self.progress.setRange(0, max(1, event.total_steps))
        self.progress.setValue(event.step)
        self.progress_label.setText(self._progress_text(event.epoch, event.step, event.total_steps))
        if event.images_per_s > 0:
            self.speed_label.setText(f"{event.images_per_s:,.0f} {self._kind.plural}/s")
            self.eta_label.setText(f"{format_duration(event.eta_s)} left")

    def _progress_text(self, epoch: int, step: int, total: int) -> str:
        epochs = f"/{self._epochs}" if self._epochs else ""
        return f"Epoch {epoch}{epochs} · step {step:,}/{total:,} · {100 * step // max(1, total)}%"

    def _pause_clicked(self) -> None:
        if self.state == "paused":
            self.continue_requested.emit()
        else:
            self.pause_requested.emit()

    def _update_actions(self) -> None:
        idle = self.state == "idle"
        self.start_action.setEnabled(idle and not self._blocked)
        self.pause_action.setEnabled(self.state in ("running", "paused"))
        self.pause_action.setText("Continue" if self.state == "paused" else "Pause")
        self.stop_action.setEnabled(self.state in ("running", "paused"))
        self.resume_action.setEnabled(idle and bool(self._resumable))
        self.queue_action.setEnabled(not self._blocked)  # while a run trains too: it starts after that one
        self.queue_action.setToolTip(f"Cannot queue: {self._blocked}" if self._blocked else
                                     "Add these settings to the run queue (the Queue tab); they start after the "
                                     "current run (Ctrl+Shift+Enter)")
        self.start_action.setToolTip(
            f"Cannot start: {self._blocked}" if idle and self._blocked else "Start training with these settings (Ctrl+Enter)"
        )
        self.pause_action.setToolTip("Pause or continue the run between steps (Ctrl+P)")
        self.stop_action.setToolTip("Stop after the current step and save the model (Ctrl+.)")
        self.resume_action.setToolTip(f"Continue “{self._resumable}” where it was stopped (Ctrl+R)" if self._resumable
                                      else "Continue the last stopped run where it left off (Ctrl+R)")
