"""A run that other processes train: `perceiver-gui train --events jsonl` started with QProcess (never a fork of
the Qt process, never torchrun from a thread), its event lines read back into the engine's event classes.

`ProcessRun` offers what `TrainingRunner` needs from a RunControl (pause, continue_, stop, paused), so the
runner drives both kinds of run the same way:
- Stop sends SIGTERM to the launcher, which passes it to every process; rank 0 agrees the stop with the
  others at the next step and saves, as a one-process run does.
- Pause creates a file that rank 0 watches (`--pause-file`); removing it lets the run go on.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, Signal

from perceiver_gui.config import Config, save_config
from perceiver_gui.core.events import Event, Finished, Log, from_json

__all__ = ["ProcessRun", "train_command"]

STDERR_KEPT = 200  # lines of the processes' stderr kept for the details of a failure


def train_command(*args: str) -> list[str]:
    """The command line that runs `perceiver-gui train` with this Python: the same code as the app."""
    return [sys.executable, "-m", "perceiver_gui", "train", *args]


class ProcessRun(QObject):
    """One launched run, from start to the end of its launcher process. Lives in the GUI thread: QProcess
    reports its output there."""

    yielded = Signal(object)  # each event, parsed back
    errored = Signal(str, str)  # (sentence, details) when the processes ended without a Finished event
    done = Signal()  # the launcher exited, whatever happened

    def __init__(self, cfg: Config | None, run_dir: Path, parent: QObject | None = None):
        """A new run of `cfg` in the (empty) `run_dir`, or (cfg None) the run in `run_dir` resumed."""
        super().__init__(parent)
        self._scratch = Path(tempfile.mkdtemp(prefix="perceiver-gui-run-"))  # the config handed over, the pause file
        self.pause_file = self._scratch / "pause"
        args = ["--events", "jsonl", "--pause-file", str(self.pause_file)]
        if cfg is None:
            args += ["--resume", str(run_dir)]
        else:
            config_file = self._scratch / "config.json"
            save_config(cfg, config_file)
            args += ["--config", str(config_file), "--out", str(run_dir)]
        self.command = train_command(*args)
        self._stderr: list[str] = []
        self._finished_seen = False
        self._process = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")
        self._process.setProcessEnvironment(env)
        self._process.readyReadStandardOutput.connect(self._read_events)
        self._process.readyReadStandardError.connect(self._read_errors)
        self._process.finished.connect(self._on_exit)
        self._process.errorOccurred.connect(self._on_error)

    def start(self) -> None:
        self._process.start(self.command[0], self.command[1:])

    # -- what TrainingRunner asks of a RunControl ----------------------------------------------------
    @property
    def paused(self) -> bool:
        return self.pause_file.exists()

    def pause(self) -> None:
        self.pause_file.touch()

    def continue_(self) -> None:
        self.pause_file.unlink(missing_ok=True)

    def stop(self) -> None:
        """Ask every process to stop after its current step and save (SIGTERM to the launcher)."""
        self.pause_file.unlink(missing_ok=True)
        if self._process.state() != QProcess.ProcessState.NotRunning:
            self._process.terminate()

    # -- output ----------------------------------------------------------------------------------
    def _read_events(self) -> None:
        while self._process.canReadLine():
            line = bytes(self._process.readLine().data()).decode("utf-8", "replace").strip()
            if not line:
                continue
            try:
                event: Event = from_json(line)
            except ValueError:
                event = Log(message=line, level="warning")  # not ours to drop: someone printed it
            self._finished_seen |= isinstance(event, Finished)
            self.yielded.emit(event)

    def _read_errors(self) -> None:
        text = bytes(self._process.readAllStandardError().data()).decode("utf-8", "replace")
        self._stderr.extend(text.splitlines())
        del self._stderr[:-STDERR_KEPT]

    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.errored.emit(f"Could not start the training processes ({self._process.errorString()}).",
                              " ".join(self.command))
            self._cleanup()
            self.done.emit()

    def _on_exit(self, code: int, status: QProcess.ExitStatus) -> None:
        self._read_events()
        self._read_errors()
        if not self._finished_seen:
            errors = [line[len("error: "):] for line in self._stderr if line.startswith("error: ")]
            sentence = errors[-1] if errors else (
                f"The training processes ended (exit code {code}) without finishing the run.")
            self.errored.emit(sentence, "\n".join([" ".join(self.command), *self._stderr]))
        self._cleanup()
        self.done.emit()

    def _cleanup(self) -> None:
        shutil.rmtree(self._scratch, ignore_errors=True)
