"""Drives the engine's `train` generator in a superqt worker thread and re-emits its events in the
GUI thread. The UI adds no training logic: start (a new run), resume_run (a run from disk), pause,
continue_ and stop map onto the generators and their `RunControl`.

The engine yields every step (pause and stop act there, through `RunControl`); what crosses to the GUI
thread is throttled: events travel in batches (`_batched`), at most 2 a second plus one at each epoch's
end and for every other kind of event, so the GUI thread wakes, and takes the GIL from training, seldom.

A run with more than one process (`train.processes`) is trained by `perceiver-gui train` processes instead
(ui/process_runner.py); its events come back through the same signals, and pause and stop work the same.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QCoreApplication, QElapsedTimer, QEventLoop, QObject, QThread, Signal

from perceiver_gui.config import Config
from perceiver_gui.core import runs
from perceiver_gui.core.control import RunControl
from perceiver_gui.core.events import Event, Finished, RunStarted, Step
from perceiver_gui.ui import deferred
from perceiver_gui.ui.process_runner import ProcessRun
from perceiver_gui.ui.workers import start_worker

if TYPE_CHECKING:
    from superqt.utils import GeneratorWorker

# The engine (torch): imported in the worker that trains (ui/deferred.py), so the window never waits for it.
_training = deferred.module("perceiver_gui.core.training")

__all__ = ["EngineError", "TrainingRunner"]

EMIT_EVERY_S = 0.5  # Step events reach the GUI at most this often (in a batch): progress and plots move at 2 Hz


class EngineError(Exception):
    """An unexpected exception out of the engine, carried to the GUI thread as `__cause__`.

    superqt's worker treats a RuntimeError escaping the generator as "the worker was deleted" and
    drops it without a signal; torch reports out-of-memory and device failures as RuntimeError,
    so every exception is wrapped in this class to be sure it reaches `errored`.
    """


def _processes(cfg: Config | None, run_dir: Path | None) -> int:
    """How many processes train the run: its config's, or the saved config's when resuming."""
    if cfg is not None:
        return cfg.train.processes
    try:
        saved = runs.read_config(run_dir).config
    except runs.RunError:
        return 1  # resuming in this process says what is wrong
    return saved.train.processes if saved is not None else 1


def _run(cfg: Config | None, runs_root: Path | None, run_dir: Path | None, control: RunControl
         ) -> Generator[tuple[Event, ...], None, None]:
    """A new run of `cfg` in runs_root, or (cfg None) the run in `run_dir` resumed from disk, its events
    in batches."""
    try:
        if cfg is None:
            yield from _batched(_training.resume(run_dir, control=control))
        else:
            out_dir = runs.new_run_dir(cfg.name, runs_root) if runs_root is not None else None
            yield from _batched(_training.train(cfg, out_dir=out_dir, control=control))
    except Exception as exc:
        raise EngineError(str(exc)) from exc


def _batched(events: Iterable[Event]) -> Iterator[tuple[Event, ...]]:
    """The events in order, in tuples: Steps are held back until EMIT_EVERY_S has passed since the last
    batch or their epoch ends; any other event goes out at once with the Steps before it."""
    pending: list[Event] = []
    sent = -float("inf")
    per_epoch = 0
    for event in events:
        pending.append(event)
        if isinstance(event, RunStarted):
            per_epoch = event.steps_per_epoch
        now = time.perf_counter()
        if (not isinstance(event, Step) or now - sent >= EMIT_EVERY_S
                or (per_epoch and event.step % per_epoch == 0) or event.step == event.total_steps):
            yield tuple(pending)
            pending = []
            sent = now
    if pending:
        yield tuple(pending)


class TrainingRunner(QObject):
    """One training run at a time. Lives in the GUI thread, so its slots (and the signals they
    re-emit) run there even though the events come from the worker thread."""

    started = Signal()
    event = Signal(object)  # every engine event, in order
    finished = Signal(object)  # the Finished event (also sent through `event`)
    crashed = Signal(str, str)  # (sentence, traceback) for an exception out of the generator
    stopped_running = Signal()  # the worker thread is done, whatever happened
    paused_changed = Signal(bool)

    def __init__(self, runs_root: Path | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.runs_root = runs_root
        self._worker: GeneratorWorker | None = None
        self._control: RunControl | None = None

    @property
    def running(self) -> bool:
        return self._worker is not None

    @property
    def paused(self) -> bool:
        return self._control is not None and self._control.paused

    def start(self, cfg: Config) -> None:
        """Start a new run of `cfg`."""
        self._launch(cfg, None)

    def resume_run(self, run_dir: Path) -> None:
        """Continue the run in `run_dir` from disk, with its own config."""
        self._launch(None, Path(run_dir))

    def _launch(self, cfg: Config | None, run_dir: Path | None) -> None:
        if self._worker is not None:
            raise RuntimeError("A run is already in progress.")
        if _processes(cfg, run_dir) > 1:
            self._launch_processes(cfg, run_dir)
            return
        self._control = RunControl()
        self._worker = start_worker(_run, cfg, self.runs_root, run_dir, self._control, yielded=self._on_yielded,
                                    errored=self._on_errored, finished=self._on_finished)
        self.started.emit()

    def _launch_processes(self, cfg: Config | None, run_dir: Path | None) -> None:
        if run_dir is None:
            run_dir = runs.new_run_dir(cfg.name, self.runs_root)
        process = ProcessRun(cfg, run_dir, self)
        process.yielded.connect(self._on_process_event)
        process.errored.connect(self.crashed)
        process.done.connect(self._on_finished)
        process.done.connect(process.deleteLater)
        self._worker = self._control = process  # it answers pause, continue_, stop and paused like a RunControl
        process.start()
        self.started.emit()

    def pause(self) -> None:
        if self._control is not None and not self._control.paused:
            self._control.pause()
            self.paused_changed.emit(True)

    def continue_(self) -> None:
        """Let a paused run go on."""
        if self._control is not None and self._control.paused:
            self._control.continue_()
            self.paused_changed.emit(False)

    def stop(self) -> None:
        """Ask the run to stop after the current step; it saves and ends with Finished("stopped")."""
        if self._control is not None:
            was_paused = self._control.paused
            self._control.stop()
            if was_paused:
                self.paused_changed.emit(False)

    def wait(self, msecs: int = 30000) -> bool:
        """Process events until the worker is done (for quitting and tests); False on timeout."""
        timer = QElapsedTimer()
        timer.start()
        while self._worker is not None and timer.elapsed() < msecs:
            QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
            QThread.msleep(5)
        return self._worker is None

    # -- worker signals (GUI thread) ---------------------------------------------------------
    def _on_process_event(self, event: Event) -> None:
        self._on_yielded((event,))  # a process's events come one by one (process_runner reads them as printed)

    def _on_yielded(self, batch: tuple[Event, ...]) -> None:
        for event in batch:
            self.event.emit(event)
            if isinstance(event, Finished):
                self.finished.emit(event)

    def _on_errored(self, exc: BaseException) -> None:
        if isinstance(exc, EngineError) and exc.__cause__ is not None:
            exc = exc.__cause__
        sentence = str(exc).strip() or type(exc).__name__
        if not sentence.endswith((".", "!", "?")):
            sentence += "."
        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.crashed.emit(f"{type(exc).__name__}: {sentence}", detail)

    def _on_finished(self) -> None:
        self._worker = None
        self._control = None
        self.stopped_running.emit()

