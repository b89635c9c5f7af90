"""The app's run lifecycle: which run is training, which stopped run Resume continues (across restarts too),
which run the Mistakes tab shows, and closing the window only once nothing is left half done.

The window asks and shows; this object keeps the state and decides. Closing while a run trains asks the
user (`confirm_quit`), asks the run to stop (`stop_requested`) and waits: once the run has saved,
`close_ready` says to close again. Closing during an export waits for its file the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from perceiver_gui.core import runs
from perceiver_gui.core.events import Event, Finished, RunStarted

__all__ = ["RunLifecycle"]


class RunLifecycle(QObject):
    """Run state and close-when-idle for one window. `running` and `exporting` say whether the training run
    and an export are in progress; `confirm_quit` asks the user whether to stop a training run and quit."""

    resumable_changed = Signal(str)  # the stopped run Resume would continue; "" when none (or while a run trains)
    stop_requested = Signal()  # closing: stop the training run (it saves first)
    close_ready = Signal()  # what closing waited for is done: close again
    idle = Signal()  # a run ended and the window stays open: the next queued run may start
    message = Signal(str)  # a sentence for the status bar

    def __init__(self, *, running: Callable[[], bool], exporting: Callable[[], bool],
                 confirm_quit: Callable[[], bool], parent: QObject | None = None):
        super().__init__(parent)
        self._running, self._exporting, self._confirm_quit = running, exporting, confirm_quit
        self.current_run = ""  # the run trained last in this session (its folder)
        self.last_stopped_run = ""  # a stopped run that can be resumed; "" when none
        self._mistakes_pick = ""  # the run of the Runs tab last shown in the Mistakes tab
        self._close_when_stopped = False
        self._close_after_export = False

    # -- runs ----------------------------------------------------------------------------------
    def restore(self, last_stopped_run: str) -> None:
        """The run stopped when the app last closed stays resumable, if it still can be resumed."""
        stopped = Path(last_stopped_run)
        if last_stopped_run and (stopped / runs.RESUME_FILE).is_file() and runs.read_run(stopped).status == "stopped":
            self.last_stopped_run = str(stopped)
        self.resumable_changed.emit(self.last_stopped_run)

    def began(self) -> None:
        """A run is starting: nothing is offered for resuming while it trains."""
        self.resumable_changed.emit("")

    def on_event(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.current_run = event.run_dir
        elif isinstance(event, Finished):
            self.last_stopped_run = event.run_dir if event.status == "stopped" else ""

    def stopped_running(self) -> None:
        """The run's worker is done: offer what can be resumed, then close if closing waited for it."""
        self.resumable_changed.emit(self.last_stopped_run)
        if self._close_when_stopped:
            self.close_ready.emit()
        else:
            self.idle.emit()

    def run_to_export(self, selected: Sequence[str]) -> str:
        """The run picked in the Runs tab, else the one trained last; none while several are picked (not
        silently another run than the ones in view)."""
        return selected[0] if len(selected) == 1 else "" if selected else self.current_run

    def runs_picked(self) -> None:
        """The Runs tab's pick changed: the Mistakes tab shows it when it is next opened."""
        self._mistakes_pick = ""

    def mistakes_should_show(self, picked: str) -> bool:
        """Whether the Mistakes tab, opened now, reads `picked` (the Runs tab's pick): once per pick, so a run
        trained since then stays on show; never while a run trains."""
        if self._running() or not picked or picked == self._mistakes_pick:
            return False
        self._mistakes_pick = picked
        return True

    # -- closing -------------------------------------------------------------------------------
    def may_close(self) -> bool:
        """Whether the window may close now. If not, closing goes on once what it waits for is done
        (`close_ready`), or not at all when the user chose to keep training."""
        if self._exporting():
            # Quitting now would tear the export down halfway: no file, and a traceback in the terminal.
            self._close_after_export = True
            self.message.emit("Closing once the export is written…")
            return False
        if self._running():
            if not self._close_when_stopped:
                if not self._confirm_quit():
                    return False
                self._close_when_stopped = True
                self.stop_requested.emit()
            # Closes once the run has saved (stopped_running); the window stays responsive meanwhile.
            return False
        return True

    def export_finished(self) -> None:
        if self._close_after_export:
            self.close_ready.emit()
