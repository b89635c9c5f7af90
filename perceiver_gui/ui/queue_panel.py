"""The Queue tab: runs waiting to be trained one after another, in order; move them up and down, remove
them, pause the queue. The queue lives in core/queue.py (its file survives a restart); this panel shows it
and says when the next entry should start.

A view with a small API: the window tells it when the runner is busy or idle (`set_busy`) and passes the
engine's events on (`on_event`, `on_crashed`); it asks the window to start an entry (`start_requested`)
through the same runner as Start. What ends a run decides what the queue does next:
- completed: the next entry starts;
- failed (or crashed): it is marked failed, and the next entry starts;
- stopped by the user (Stop, or quitting): the queue pauses, so Stop means "stop", not "skip".
A queue restored with waiting entries comes back paused: a restart never starts training by itself.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from perceiver_gui.config import Config, ConfigError, load_config
from perceiver_gui.core.events import Event, Finished, RunStarted
from perceiver_gui.core.queue import QueueEntry, RunQueue
from perceiver_gui.core.stats import seed_configs

__all__ = ["QueuePanel"]

COLUMNS = ("#", "Name", "Seed", "Epochs", "Learning rate", "State", "Run folder or message")
STATE_TEXT = {"waiting": "waiting", "running": "running…", "completed": "completed", "stopped": "stopped",
              "failed": "failed", "interrupted": "interrupted"}
FAILED = QColor(220, 60, 60)


class QueuePanel(QWidget):
    start_requested = Signal(object)  # a QueueEntry to train now (the window starts it like Start)
    message = Signal(str)  # a sentence for the status bar
    count_changed = Signal(int)  # entries waiting

    def __init__(self, queue: RunQueue, parent: QWidget | None = None):
        super().__init__(parent)
        self.queue = queue
        self._busy = False  # the runner is training (a queued run or one started by hand)
        self._current = ""  # the id of the entry the runner trains; "" for a run started by hand

        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.pause_button = QPushButton()
        self.pause_button.clicked.connect(self._toggle_paused)
        self.up_button = QPushButton("Up")
        self.up_button.setToolTip("Run the selected entry earlier")
        self.up_button.clicked.connect(lambda: self._move(-1))
        self.down_button = QPushButton("Down")
        self.down_button.setToolTip("Run the selected entry later")
        self.down_button.clicked.connect(lambda: self._move(+1))
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Take the selected entries out of the queue (their runs, if any, stay in Runs)")
        self.remove_button.clicked.connect(self._remove)
        self.clear_button = QPushButton("Clear finished")
        self.clear_button.setToolTip("Take out the entries whose run has ended; the runs stay in the Runs tab")
        self.clear_button.clicked.connect(self._clear_finished)
        # The form is fixed while a run trains; a saved settings file can be queued meanwhile.
        self.file_button = QPushButton("Add settings file…")
        self.file_button.setToolTip("Queue the settings saved in a .toml or .json file (File › Save settings…)")
        self.file_button.clicked.connect(self._add_file_dialog)
        buttons = QHBoxLayout()
        for button in (self.pause_button, self.up_button, self.down_button, self.remove_button, self.clear_button,
                       self.file_button):
            buttons.addWidget(button)
        buttons.addStretch(1)

        self.tree = QTreeWidget()
        self.tree.setColumnCount(len(COLUMNS))
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.tree.header().setStretchLastSection(True)
        self.tree.header().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.tree.itemSelectionChanged.connect(self._update_buttons)

        hint = QLabel("Add runs with “Add to queue” in the Training tab. Queued runs train one after another, "
                      "after the current run, as ordinary runs in the Runs tab. Stop pauses the queue; a failed "
                      "run is marked and the next one starts.")
        hint.setWordWrap(True)
        hint.setEnabled(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.summary)
        layout.addLayout(buttons)
        layout.addWidget(self.tree, 1)
        layout.addWidget(hint)

        problems = list(queue.problems)
        if queue.waiting() and not queue.paused:
            self._set_paused(True)
            problems.append(f"The run queue was restored with {len(queue.waiting())} waiting; press Run queue "
                            "to go on.")
        self._fill()
        if problems:
            QTimer.singleShot(0, lambda: self.message.emit(" ".join(problems)))  # once the window listens

    # -- the typed API -------------------------------------------------------------------------
    def add(self, cfg: Config, seeds: int = 1) -> list[QueueEntry]:
        """Queue `cfg`, or `seeds` runs of it with seeds seed, seed + 1, ...; they start after the current run
        (at once when nothing trains and the queue is not paused)."""
        added = self._save(lambda: self.queue.add(seed_configs(cfg, seeds)))
        if added:
            what = f"“{cfg.name}”" if seeds == 1 else f"{seeds} seeds of “{cfg.name}”"
            self.message.emit(f"Queued {what}; {len(self.queue.waiting())} waiting"
                              + (" (the queue is paused)." if self.queue.paused else "."))
        self._fill()
        self._start_next_soon()
        return added or []

    def add_file(self, path: str | Path) -> list[QueueEntry]:
        """Queue the settings in a .toml or .json file; a file that is not a valid config is one sentence."""
        try:
            cfg = load_config(path).check()
        except ConfigError as exc:
            self.message.emit(str(exc))
            return []
        return self.add(cfg)

    def set_busy(self, busy: bool) -> None:
        """The runner started (True) or finished (False) a run, queued or not; when it is free, the next
        entry starts."""
        self._busy = busy
        if not busy:
            entry = self.queue.get(self._current) if self._current else None
            if entry is not None and entry.state == "running":  # ended without a word (never seen, but not lost)
                self._save(lambda: self.queue.update(entry.id, state="failed", message="The run ended without a result."))
            self._current = ""
            self._fill()
            self._start_next_soon()

    def on_event(self, event: Event) -> None:
        if isinstance(event, RunStarted) and self._current:
            self._save(lambda: self.queue.update(self._current, run_dir=event.run_dir))
            self._fill()
        elif isinstance(event, Finished):
            entry = self.queue.get(self._current) if self._current else None
            if entry is not None:  # the entry stays current until the runner is free (see set_busy)
                self._save(lambda: self.queue.update(entry.id, state=event.status, message=event.message,
                                                     run_dir=event.run_dir or entry.run_dir))
            if event.status == "stopped" and self.queue.waiting() and not self.queue.paused:
                self._set_paused(True)
                self.message.emit("The queue is paused because the run was stopped; press Run queue to go on.")
            self._fill()

    def on_crashed(self, sentence: str) -> None:
        if self._current:
            self._save(lambda: self.queue.update(self._current, state="failed", message=sentence))
            self._fill()

    @property
    def runs_current(self) -> bool:
        """The run now training (or just ended, until the runner is free) was started by the queue."""
        return bool(self._current)

    def rows(self) -> list[tuple[str, ...]]:
        """What the list shows, row by row (for tests and the guide)."""
        return [tuple(self.tree.topLevelItem(i).text(c) for c in range(len(COLUMNS)))
                for i in range(self.tree.topLevelItemCount())]

    def set_paused(self, paused: bool) -> None:
        self._set_paused(paused)
        self._start_next_soon()

    # -- internals -----------------------------------------------------------------------------
    def _save(self, change):
        """Apply a change to the queue; a file that can't be written is one sentence, not a traceback."""
        try:
            return change()
        except OSError as exc:
            self.message.emit(f"The run queue could not be saved to {self.queue.path}: {exc.strerror or exc}.")
            return None

    def _set_paused(self, paused: bool) -> None:
        self._save(lambda: self.queue.set_paused(paused))
        self._fill()

    def _toggle_paused(self) -> None:
        self.set_paused(not self.queue.paused)

    def _start_next_soon(self) -> None:
        # After the slots of the signal that freed the runner have run (the window's, in the same event).
        QTimer.singleShot(0, self._start_next)

    def _start_next(self) -> None:
        if self._busy or self.queue.paused or self._current:
            return
        entry = self.queue.next_waiting()
        if entry is None:
            return
        self._current = entry.id
        self._save(lambda: self.queue.update(entry.id, state="running"))
        self._fill()
        self.start_requested.emit(entry)

    def _add_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Queue settings", "", "Settings (*.toml *.json);;All files (*)")
        if path:
            self.add_file(path)

    def _selected_ids(self) -> list[str]:
        return [item.data(0, Qt.ItemDataRole.UserRole) for item in self.tree.selectedItems()]

    def _move(self, by: int) -> None:
        chosen = self._selected_ids()
        if len(chosen) != 1:
            return
        self._save(lambda: self.queue.move(chosen[0], by))
        self._fill(select=chosen[0])

    def _remove(self) -> None:
        for entry_id in self._selected_ids():
            if entry_id != self._current:  # the running one ends through Stop
                self._save(lambda entry_id=entry_id: self.queue.remove(entry_id))
        self._fill()

    def _clear_finished(self) -> None:
        self._save(self.queue.clear_finished)
        self._fill()

    def _fill(self, select: str = "") -> None:
        self.tree.clear()
        for number, entry in enumerate(self.queue.entries, 1):
            cfg = entry.config
            note = entry.message or (Path(entry.run_dir).name if entry.run_dir else "")
            item = QTreeWidgetItem([str(number), cfg.name, str(cfg.train.seed), str(cfg.train.epochs),
                                    f"{cfg.train.lr:g}", STATE_TEXT[entry.state], note])
            item.setData(0, Qt.ItemDataRole.UserRole, entry.id)
            item.setToolTip(6, "\n".join(t for t in (entry.message, entry.run_dir) if t))
            if entry.state == "failed":
                item.setForeground(5, QBrush(FAILED))
            elif entry.state not in ("waiting", "running"):
                for column in range(len(COLUMNS)):
                    item.setForeground(column, self.palette().brush(self.palette().ColorGroup.Disabled,
                                                                    self.palette().ColorRole.Text))
            self.tree.addTopLevelItem(item)
            if entry.id == select:
                item.setSelected(True)
        waiting = len(self.queue.waiting())
        state = "is paused" if self.queue.paused else "runs when no run is training"
        self.summary.setText(f"{waiting} waiting · the queue {state}." if self.queue.entries else
                             "The queue is empty.")
        self.pause_button.setText("Run queue" if self.queue.paused else "Pause queue")
        self.pause_button.setToolTip("Start the waiting runs, one after another" if self.queue.paused else
                                     "Start no further runs; the one training goes on")
        self._update_buttons()
        self.count_changed.emit(waiting)

    def _update_buttons(self) -> None:
        chosen = self._selected_ids()
        self.up_button.setEnabled(len(chosen) == 1)
        self.down_button.setEnabled(len(chosen) == 1)
        self.remove_button.setEnabled(any(c != self._current for c in chosen))
        self.clear_button.setEnabled(any(e.state not in ("waiting", "running") for e in self.queue.entries))
