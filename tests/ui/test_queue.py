"""The run queue in the window: it survives a restart, runs its entries one after another through the same
runner as Start, pauses on Stop and moves on past a failed run."""

from __future__ import annotations

from pathlib import Path

import pytest

from perceiver_gui.config import PRESETS
from perceiver_gui.core import runs
from perceiver_gui.core.events import RunStarted
from perceiver_gui.core.queue import RunQueue, queue_file
from tests.ui.helpers import tiny_config


def _states(window) -> list[str]:
    return [e.state for e in window.queue.queue.entries]


def test_the_queue_survives_a_restart_of_the_app(make_window, qtbot, tmp_path):
    window = make_window()
    window.queue.set_paused(True)
    window.form.set_config(tiny_config(name="first"))
    window.training.queue_action.trigger()
    window.form.set_config(tiny_config(name="second", **{"train.seed": 4}))
    window.training.seeds.setValue(2)
    window.training.queue_action.trigger()
    assert [r[1:3] for r in window.queue.rows()] == [("first", "0"), ("second", "4"), ("second", "5")]
    assert window.tabs.tabText(window.tabs.indexOf(window.queue)) == "Queue (3)"
    window.queue.tree.topLevelItem(2).setSelected(True)
    window.queue.up_button.click()  # reordered before the restart
    window.close()

    again = make_window()
    assert [r[1:3] for r in again.queue.rows()] == [("first", "0"), ("second", "5"), ("second", "4")]
    assert again.queue.queue.entries[0].config == tiny_config(name="first")
    assert again.queue.queue.paused and not again.runner.running
    assert again.queue.pause_button.text() == "Run queue"
    assert again.tabs.tabText(again.tabs.indexOf(again.queue)) == "Queue (3)"


def test_a_restored_queue_never_starts_training_by_itself(make_window, qtbot, tmp_path):
    queue = RunQueue(queue_file(tmp_path / "runs"))
    queue.add([tiny_config()])
    assert not queue.paused
    window = make_window()
    messages = []
    window.queue.message.connect(messages.append)
    qtbot.waitUntil(lambda: bool(messages))
    assert "restored with 1 waiting; press Run queue" in messages[0]
    assert window.queue.queue.paused and not window.runner.running and _states(window) == ["waiting"]


def test_a_damaged_queue_entry_is_named_in_the_status_bar(make_window, qtbot, tmp_path):
    path = queue_file(tmp_path / "runs")
    path.parent.mkdir(parents=True)
    path.write_text('{"paused": true, "entries": [{"id": "a", "config": {"train": {"lr": "x"}}}]}')
    window = make_window()
    qtbot.waitUntil(lambda: "entry 1: its settings can't be used" in window.statusBar().currentMessage())
    assert window.queue.rows() == []


@pytest.mark.slow
def test_the_queue_runs_two_seeds_one_after_another(make_window, qtbot, tmp_path):
    window = make_window()
    window.form.set_config(tiny_config(**{"train.epochs": 1}))
    window.training.seeds.setValue(2)
    window.training.queue_action.trigger()  # nothing trains and the queue runs: the first starts at once
    qtbot.waitUntil(lambda: window.runner.running, timeout=5000)
    qtbot.waitUntil(lambda: _states(window) == ["completed", "completed"], timeout=120000)
    qtbot.waitUntil(lambda: not window.runner.running, timeout=30000)
    folders = [Path(e.run_dir) for e in window.queue.queue.entries]
    assert [f.parent for f in folders] == [tmp_path / "runs"] * 2 and folders[0] != folders[1]
    assert [runs.read_config(f).raw["train"]["seed"] for f in folders] == [0, 1]
    assert [runs.read_run(f).status for f in folders] == ["completed", "completed"]
    assert window.training.state == "idle" and window.training.start_action.isEnabled()
    assert window.queue.rows()[0][5] == "completed"


@pytest.mark.slow
def test_stop_pauses_the_queue_and_a_failed_run_moves_on(make_window, qtbot, tmp_path, dialogs):
    window = make_window()
    window.queue.set_paused(True)
    broken = PRESETS["digits"].with_updates({"name": "broken", "data.dataset": "folder",
                                             "data.folder": str(tmp_path / "no-such-folder")})
    window.queue.add(broken)
    window.queue.add(tiny_config(**{"train.epochs": 1}), seeds=2)
    started = []
    window.runner.event.connect(lambda e: started.append(e) if isinstance(e, RunStarted) else None)

    window.queue.pause_button.click()  # Run queue
    qtbot.waitUntil(lambda: _states(window)[:2] == ["failed", "running"] and bool(started), timeout=60000)
    assert not [d for d in dialogs if d[0] == "critical"]  # a queued failure is marked, not a dialog
    assert "no-such-folder" in window.queue.queue.entries[0].message
    window.training.stop_action.trigger()
    qtbot.waitUntil(lambda: not window.runner.running, timeout=60000)
    assert _states(window) == ["failed", "stopped", "waiting"]
    assert window.queue.queue.paused and window.queue.pause_button.text() == "Run queue"
    qtbot.wait(100)
    assert not window.runner.running  # paused: the third waits

    window.queue.pause_button.click()
    qtbot.waitUntil(lambda: _states(window) == ["failed", "stopped", "completed"], timeout=60000)
    qtbot.waitUntil(lambda: not window.runner.running, timeout=30000)
    stopped, completed = (Path(e.run_dir) for e in window.queue.queue.entries[1:])
    assert runs.read_run(stopped).status == "stopped" and runs.read_run(completed).status == "completed"
    assert runs.read_config(completed).raw["train"]["seed"] == 1
    window.queue.clear_button.click()
    assert window.queue.rows() == []


def test_a_saved_settings_file_can_be_queued_and_a_bad_one_is_one_sentence(make_window, tmp_path):
    from perceiver_gui.config import to_toml

    window = make_window()
    window.queue.set_paused(True)
    messages = []
    window.queue.message.connect(messages.append)
    path = tmp_path / "wide.toml"
    path.write_text(to_toml(tiny_config(name="wide", **{"model.latent_dim": 32})))
    (entry,) = window.queue.add_file(path)
    assert entry.config.model.latent_dim == 32 and window.queue.rows()[0][1] == "wide"
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nlr = 'fast'\n")
    assert window.queue.add_file(bad) == []
    assert "train.lr" in messages[-1] and len(window.queue.rows()) == 1


@pytest.mark.slow
def test_a_run_queued_while_one_trains_starts_after_it(make_window, qtbot, tmp_path):
    window = make_window()
    window.form.set_config(tiny_config(name="by hand", **{"train.epochs": 1}))
    finished = []
    window.runner.finished.connect(finished.append)
    window.training.start_action.trigger()
    assert window.runner.running
    window.training.queue_action.trigger()  # the same settings, queued while they train
    assert _states(window) == ["waiting"]  # not started: a run is training
    qtbot.waitUntil(lambda: len(finished) == 2, timeout=120000)
    qtbot.waitUntil(lambda: not window.runner.running, timeout=30000)
    assert [f.status for f in finished] == ["completed", "completed"]
    assert _states(window) == ["completed"] and window.queue.queue.entries[0].run_dir == finished[1].run_dir
    assert finished[0].run_dir != finished[1].run_dir
