from __future__ import annotations

import shutil

import pytest
from PySide6.QtWidgets import QInputDialog

from perceiver_gui.ui.runs_panel import RunsPanel


@pytest.fixture
def run(trained_run, tmp_path):
    """The session's trained run, alone in a runs folder of this test's own (other tests add runs beside
    the session's)."""
    copy = tmp_path / "runs" / trained_run.name
    shutil.copytree(trained_run, copy)
    return copy


@pytest.fixture
def panel(qtbot, run):
    widget = RunsPanel(run.parent)
    qtbot.addWidget(widget)
    return widget


@pytest.mark.slow  # uses the session's tiny trained model (~5 s to make once)
def test_the_runs_list_shows_a_finished_run_and_its_curves(panel, run):
    assert panel.run_names() == ["tiny"]
    item = panel.tree.topLevelItem(0)
    assert item.text(2) == "digits" and item.text(3).endswith("%") and item.text(4).endswith("%")
    assert item.text(5).startswith("completed")
    from perceiver_gui.config import load_config
    from perceiver_gui.core.complexity import parameter_count

    config = load_config(run / "config.json")
    assert item.toolTip(7) == f"{parameter_count(config.model):,} trainable parameters"
    assert item.text(8) == f"{config.train.lr:g}"
    assert panel.select_runs([str(run)])
    assert len(panel.plots.val_acc_curve.getOriginalDataset()[0]) == 3
    assert panel.plots.loss_raw.n > 0
    assert panel.open_button.isEnabled() and not panel.resume_button.isEnabled()  # completed: nothing to resume


@pytest.mark.slow  # uses the session's tiny trained model (~5 s to make once)
def test_open_in_classifier_asks_for_the_runs_model(panel, qtbot, run):
    panel.select_runs([str(run)])
    with qtbot.waitSignal(panel.open_model_requested) as asked:
        panel.open_button.click()
    assert asked.args == [str(run / "model.safetensors")]


@pytest.mark.slow  # uses the session's tiny trained model (~5 s to make once)
def test_rename_then_delete_with_confirmation(panel, run, dialogs, monkeypatch):
    panel.select_runs([str(run)])
    monkeypatch.setattr(QInputDialog, "getText", staticmethod(lambda *a, **k: ("digits, first try", True)))
    panel.rename_button.click()
    assert panel.run_names() == ["digits, first try"]
    panel.select_runs([str(run)])
    panel.delete_button.click()
    assert dialogs[-1][0] == "question" and "digits, first try" in dialogs[-1][2]
    assert panel.run_names() == [] and not run.exists()


def test_the_window_opens_and_lists_hostile_run_folders_next_to_good_ones(make_window, tmp_path, qtbot):
    from perceiver_gui.core import runs
    from tests.core.test_runs import hostile_runs

    root = tmp_path / "runs"
    root.mkdir()
    good = hostile_runs(root)
    interrupted = runs.new_run_dir("interrupted", root)
    (interrupted / runs.CONFIG_FILE).write_text('{"data": {"dataset": "digits"}, "train": {"epochs": 3}}')
    (interrupted / runs.RESUME_FILE).write_bytes(b"")  # what the Resume button looks for
    runs.write_run(interrupted, name="interrupted", status="running")  # its process died: no lock held
    window = make_window(runs_root=root)
    window.show()
    panel = window.runs
    panel.refresh()
    listed = panel.run_names()
    assert len(listed) == len(list(root.iterdir())) and "good" in listed and "hostile-metrics" in listed
    items = [panel.tree.topLevelItem(i) for i in range(panel.tree.topLevelItemCount())]
    rows = {item.text(0): item for item in items}
    assert rows["good"].text(5) == "completed (3/3 epochs)"
    assert rows["bad-created"].text(5).endswith("damaged") and "'yesterday'" in rows["bad-created"].toolTip(5)
    assert rows["interrupted"].text(5).startswith("interrupted (resumable)")
    assert panel.select_runs([str(interrupted)]) and panel.resume_button.isEnabled()
    for info in runs.list_runs(root):  # each one's curves, settings and comparison with the good run
        assert panel.select_runs([info.path])
        assert panel.select_runs([str(good), info.path]) == (1 if info.path == str(good) else 2)
    assert panel.select_runs([str(root / next(p.name for p in root.iterdir() if p.name.endswith("hostile-metrics")))])
    # Step 1's loss is drawn; steps 2 and 3 have unknown losses (not drawn, counted); damaged lines are skipped.
    assert panel.plots.loss_raw.n == 1 and "non-finite" in panel.plots.info.text()


@pytest.mark.slow  # the worker imports torch (~5 s)
def test_a_run_another_process_trains_is_shown_live_and_resuming_it_is_refused(make_window, qtbot, dialogs, tmp_path):
    from perceiver_gui.core import runs
    from tests.core.test_runs import hold_lock
    from tests.ui.helpers import tiny_config

    root = tmp_path / "runs"
    folder = runs.new_run_dir("cli run", root)
    runs.write_config(folder, tiny_config())
    (folder / runs.RESUME_FILE).write_bytes(b"")
    runs.write_run(folder, name="cli run", status="running")
    proc = hold_lock(folder)  # as `perceiver-gui train` does while it trains
    try:
        window = make_window(runs_root=root)
        window.runs.refresh()
        item = window.runs.tree.topLevelItem(0)
        assert item.text(5).startswith("running") and f"process {proc.pid}" in item.toolTip(5)
        assert window.runs.select_runs([str(folder)]) and not window.runs.resume_button.isEnabled()
        with qtbot.waitSignal(window.runner.stopped_running, timeout=30000):
            window.resume_run(str(folder))  # as Resume on the Training tab would
    finally:
        proc.kill()
        proc.wait()
    assert dialogs and dialogs[-1][0] == "critical" and f"process {proc.pid}" in dialogs[-1][2]
    assert runs.read_run(folder).status == "running"  # the other process's run is left alone


def test_the_hint_follows_the_list_when_runs_appear(qtbot, run, tmp_path):
    empty_root = tmp_path / "empty-runs"
    empty_root.mkdir()
    panel = RunsPanel(empty_root)
    qtbot.addWidget(panel)
    assert "No runs yet" in panel.detail.text()
    shutil.copytree(run, empty_root / run.name)
    panel.refresh()
    assert panel.run_names() == ["tiny"] and "No runs yet" not in panel.detail.text()


def test_deleting_the_shown_run_clears_its_details_curves_and_ranges(panel, run, dialogs):
    panel.select_runs([str(run)])
    assert "tiny" in panel.detail.text() and panel.plots.loss_raw.n > 0
    loaded_x = panel.plots.loss_plot.viewRange()[0]
    with_deleted = []
    panel.runs_deleted.connect(with_deleted.append)
    panel.delete_button.click()
    assert with_deleted == [[str(run)]]
    assert "tiny" not in panel.detail.text()
    assert panel.plots.loss_raw.n == 0 and panel.plots.val_acc.n == 0
    assert panel.plots.loss_plot.viewRange()[0] != loaded_x  # not the deleted run's steps any more


def test_resume_asks_before_replacing_unsaved_form_edits(make_window, run, monkeypatch, dialogs):
    from PySide6.QtWidgets import QMessageBox

    from perceiver_gui.config import load_config

    window = make_window(runs_root=run.parent)
    started = []
    monkeypatch.setattr(window.runner, "resume_run", lambda run_dir: started.append(run_dir))
    monkeypatch.setattr(window, "_begin", lambda: None)
    edited = load_config(run / "config.json").with_updates({"train.lr": 0.0777, "name": "my next idea"})
    window.form.set_config(edited)
    asked = []

    def cancel(parent, title, text, *args):
        asked.append(text)
        return QMessageBox.StandardButton.Cancel

    monkeypatch.setattr(QMessageBox, "question", staticmethod(cancel))
    window.resume_run(str(run))
    assert len(asked) == 1 and "tiny" in asked[0]
    assert window.form.config() == edited and started == []  # nothing replaced, nothing started

    # With the run's own settings in the form there is nothing to lose: no question.
    window.form.set_config(load_config(run / "config.json"))
    window.resume_run(str(run))
    assert len(asked) == 1 and started == [run]


def test_rename_says_which_run_it_renames(panel, run, monkeypatch):
    asked = []

    def answer(parent, title, label, **kwargs):
        asked.append((title, label))
        return "", False

    monkeypatch.setattr(QInputDialog, "getText", staticmethod(answer))
    panel.select_runs([str(run)])
    panel.rename_button.click()
    ((title, label),) = asked
    assert "tiny" in title and "tiny" in label and run.name in label  # the run's name and its folder


def test_the_filter_box_shows_only_matching_runs(panel, run):
    from perceiver_gui.core.runs import rename_run

    shutil.copytree(run, run.parent / "other")
    rename_run(run.parent / "other", "cifar attempt")
    panel.refresh()
    panel.select_runs([str(run)])
    panel.filter.setText("cifar")
    assert panel.shown_run_names() == ["cifar attempt"] and sorted(panel.run_names()) == ["cifar attempt", "tiny"]
    assert panel.selected() is None  # the hidden run is no longer the one actions act on
    panel.filter.setText("")
    assert sorted(panel.shown_run_names()) == ["cifar attempt", "tiny"]


def test_notes_are_kept_with_the_run_shown_and_searched(panel, run, monkeypatch, qtbot):
    from perceiver_gui.core.runs import read_run

    panel.select_runs([str(run)])
    monkeypatch.setattr(QInputDialog, "getMultiLineText",
                        staticmethod(lambda *a, **k: ("Tried 8 latents instead of 32.\nAccuracy dropped 4 points.", True)))
    panel.notes_button.click()
    assert read_run(run).notes == "Tried 8 latents instead of 32.\nAccuracy dropped 4 points."
    item = panel.tree.topLevelItem(0)
    assert item.text(9).startswith("Tried 8 latents") and item.text(9).endswith("…")  # one line in the list
    panel.select_runs([str(run)])
    assert "Accuracy dropped 4 points." in panel.detail.text()
    panel.filter.setText("latents")
    assert panel.shown_run_names() == ["tiny"]
    # A fresh panel (the app restarted) reads them back.
    again = RunsPanel(run.parent)
    qtbot.addWidget(again)
    assert again.tree.topLevelItem(0).toolTip(9).endswith("Accuracy dropped 4 points.")


@pytest.mark.slow  # uses the session's tiny trained model (~5 s to make once)
def test_the_duration_column_shows_how_long_each_run_trained(panel, run):
    import json

    from perceiver_gui.core import checkpoints
    from perceiver_gui.ui.training_panel import format_duration

    column = [panel.tree.headerItem().text(c) for c in range(panel.tree.columnCount())].index("Duration")
    seconds = json.loads((run / "run.json").read_text())["train_seconds"]
    assert seconds == pytest.approx(checkpoints.read_meta(run / "model.safetensors").summary["train_seconds"], abs=0.01)
    assert seconds > 0 and panel.tree.topLevelItem(0).text(column) == format_duration(seconds)


def test_no_empty_axes_until_a_run_is_selected(panel, run):
    """With no run selected the tab shows its hint, not three empty plots with made-up 0–1 axes."""
    panel.show()
    assert panel.tree.selectedItems() == []
    assert not panel.plots.isVisibleTo(panel) and "Select a run" in panel.detail.text()
    panel.select_runs([str(run)])
    assert panel.plots.isVisibleTo(panel) and panel.plots.loss_raw.n > 0
    panel.tree.clearSelection()
    assert not panel.plots.isVisibleTo(panel)


def test_the_notes_column_is_in_view_at_1280_by_800(panel):
    """Every column fits the tab of a 1280 × 800 window; Notes was pushed past the edge behind a scroll bar."""
    from perceiver_gui.ui.runs_panel import LR_COLUMN, NOTES_COLUMN, PARAMS_COLUMN

    panel.resize(870, 600)  # the Runs tab's size in a 1280 × 800 window
    panel.show()
    header = panel.tree.header()
    assert header.sectionViewportPosition(NOTES_COLUMN) + 80 <= panel.tree.viewport().width()
    assert "parameters" in panel.tree.headerItem().toolTip(PARAMS_COLUMN)
    assert "Learning rate" in panel.tree.headerItem().toolTip(LR_COLUMN)
