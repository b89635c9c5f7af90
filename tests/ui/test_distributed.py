"""A run with two processes, launched from the window: `perceiver-gui train` processes on the CPU (gloo), their
event lines plotted as a one-process run's events are; Pause holds every process and Stop saves."""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

import pytest

from perceiver_gui.core import runs
from perceiver_gui.core.events import Log
from tests.ui.helpers import tiny_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def one_thread_per_process(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


def _finish(qtbot, window, timeout=120000):
    with qtbot.waitSignal(window.runner.stopped_running, timeout=timeout):
        pass


@pytest.mark.slow
def test_a_two_process_run_is_launched_and_plotted_to_the_end(make_window, qtbot, tmp_path):
    window = make_window()
    window.form.set_config(tiny_config(**{"train.processes": 2, "train.epochs": 1}))
    assert window.form.config().train.processes == 2
    finished, logs = [], []
    window.runner.finished.connect(finished.append)
    window.runner.event.connect(lambda e: logs.append(e.message) if isinstance(e, Log) else None)
    window.training.start_action.trigger()
    assert window.training.state == "running"
    _finish(qtbot, window)

    (event,) = finished
    assert event.status == "completed", event.message
    assert Path(event.run_dir).parent == tmp_path / "runs" and Path(event.model_path).is_file()
    steps = 12  # 808 training images in global batches of 64 (2 × 32)
    assert len(window.plots.raw_curve.getOriginalDataset()[0]) == steps
    assert len(window.plots.val_acc_curve.getOriginalDataset()[0]) == 1
    assert window.training.progress.value() == steps
    assert "Finished 1 epoch" in window.training.status.text()
    assert any("Training on 2 processes" in m for m in logs)
    assert runs.read_run(Path(event.run_dir)).status == "completed"
    assert window.training.start_action.isEnabled()


@pytest.mark.slow
def test_pause_holds_every_process_and_stop_saves_the_run(make_window, qtbot):
    window = make_window()
    window.form.set_config(tiny_config(**{"train.processes": 2, "train.epochs": 200, "train.batch_size": 8}))
    finished = []
    window.runner.finished.connect(finished.append)
    window.training.start_action.trigger()
    qtbot.waitUntil(lambda: window.plots.loss_raw.n >= 5, timeout=120000)
    window.runner.pause()
    assert window.runner.paused
    qtbot.wait(1500)  # rank 0 sees the pause file within 0.2 s and the step after
    held = window.plots.loss_raw.n
    qtbot.wait(1500)
    assert window.plots.loss_raw.n == held  # no step while paused
    window.runner.continue_()
    qtbot.waitUntil(lambda: window.plots.loss_raw.n > held, timeout=30000)
    started = time.monotonic()
    window.training.stop_action.trigger()
    _finish(qtbot, window)

    (event,) = finished
    assert event.status == "stopped", event.message
    assert time.monotonic() - started < 30
    run_dir = Path(event.run_dir)
    assert (run_dir / runs.RESUME_FILE).is_file() and Path(event.model_path).is_file()
    assert runs.read_run(run_dir).status == "stopped"
    assert window.training.resume_action.isEnabled()


def test_the_run_menu_shows_the_command_for_each_machine(make_window, qtbot):
    from perceiver_gui.cli import build_parser
    from perceiver_gui.ui.node_commands import NodeCommandsDialog

    window = make_window()
    window.form.set_config(tiny_config(**{"train.processes": 4}))
    window.node_commands_action.trigger()
    dialog = window.findChild(NodeCommandsDialog)
    assert dialog is not None and dialog.isVisible()
    dialog.machines.setValue(3)
    dialog.endpoint.setText("10.0.0.1:29500")
    text = dialog.text.toPlainText()
    assert text.count("# machine ") == 3
    for rank, command in enumerate(dialog.commands()):
        assert command in text
        args = build_parser().parse_args(shlex.split(command)[1:])  # what each machine's command means
        assert (args.nnodes, args.node_rank, args.nproc_per_node, args.rdzv_endpoint) == (3, rank, 4, "10.0.0.1:29500")
        assert str(args.config) == "tiny.toml"
    dialog.close()
