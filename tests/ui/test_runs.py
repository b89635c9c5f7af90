from __future__ import annotations

import shutil

import pytest
from PySide6.QtWidgets import QInputDialog

from perceiver_gui.ui.runs_panel import RunsPanel

pytestmark = pytest.mark.slow  # uses the session's tiny trained model (~5 s to make once)


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


def test_the_runs_list_shows_a_finished_run_and_its_curves(panel, run):
    assert panel.run_names() == ["tiny"]
    item = panel.tree.topLevelItem(0)
    assert item.text(2) == "digits" and item.text(3).endswith("%") and item.text(4).startswith("completed")
    from perceiver_gui.config import load_config
    from perceiver_gui.core.complexity import parameter_count

    config = load_config(run / "config.json")
    assert item.toolTip(5) == f"{parameter_count(config.model):,} trainable parameters"
    assert item.text(6) == f"{config.train.lr:g}"
    assert panel.select(str(run))
    assert len(panel.plots.test_acc_curve.getOriginalDataset()[0]) == 3
    assert panel.plots.loss_raw.n > 0
    assert panel.open_button.isEnabled() and not panel.resume_button.isEnabled()  # completed: nothing to resume


def test_open_in_classifier_asks_for_the_runs_model(panel, qtbot, run):
    panel.select(str(run))
    with qtbot.waitSignal(panel.open_model_requested) as asked:
        panel.open_button.click()
    assert asked.args == [str(run / "model.safetensors")]


def test_rename_then_delete_with_confirmation(panel, run, dialogs, monkeypatch):
    panel.select(str(run))
    monkeypatch.setattr(QInputDialog, "getText", staticmethod(lambda *a, **k: ("digits, first try", True)))
    panel.rename_button.click()
    assert panel.run_names() == ["digits, first try"]
    panel.select(str(run))
    panel.delete_button.click()
    assert dialogs[-1][0] == "question" and "digits, first try" in dialogs[-1][2]
    assert panel.run_names() == [] and not run.exists()


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
    panel.select(str(run))
    assert "tiny" in panel.detail.text() and panel.plots.loss_raw.n > 0
    loaded_x = panel.plots.loss_plot.viewRange()[0]
    with_deleted = []
    panel.runs_deleted.connect(with_deleted.append)
    panel.delete_button.click()
    assert with_deleted == [[str(run)]]
    assert "tiny" not in panel.detail.text()
    assert panel.plots.loss_raw.n == 0 and panel.plots.test_acc.n == 0
    assert panel.plots.loss_plot.viewRange()[0] != loaded_x  # not the deleted run's steps any more


def test_resume_asks_before_replacing_unsaved_form_edits(make_window, run, monkeypatch, dialogs):
    from PySide6.QtWidgets import QMessageBox

    from perceiver_gui.config import load_config

    window = make_window(runs_root=run.parent)
    started = []
    monkeypatch.setattr(window.runner, "start", lambda cfg, resume=None: started.append(resume))
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
    panel.select(str(run))
    panel.rename_button.click()
    ((title, label),) = asked
    assert "tiny" in title and "tiny" in label and run.name in label  # the run's name and its folder


def test_the_filter_box_shows_only_matching_runs(panel, run):
    from perceiver_gui.core.runs import rename_run

    shutil.copytree(run, run.parent / "other")
    rename_run(run.parent / "other", "cifar attempt")
    panel.refresh()
    panel.select(str(run))
    panel.filter.setText("cifar")
    assert panel.shown_run_names() == ["cifar attempt"] and sorted(panel.run_names()) == ["cifar attempt", "tiny"]
    assert panel.selected() is None  # the hidden run is no longer the one actions act on
    panel.filter.setText("")
    assert sorted(panel.shown_run_names()) == ["cifar attempt", "tiny"]


def test_notes_are_kept_with_the_run_shown_and_searched(panel, run, monkeypatch, qtbot):
    from perceiver_gui.core.runs import read_run

    panel.select(str(run))
    monkeypatch.setattr(QInputDialog, "getMultiLineText",
                        staticmethod(lambda *a, **k: ("Tried 8 latents instead of 32.\nAccuracy dropped 4 points.", True)))
    panel.notes_button.click()
    assert read_run(run)["notes"] == "Tried 8 latents instead of 32.\nAccuracy dropped 4 points."
    item = panel.tree.topLevelItem(0)
    assert item.text(7).startswith("Tried 8 latents") and item.text(7).endswith("…")  # one line in the list
    panel.select(str(run))
    assert "Accuracy dropped 4 points." in panel.detail.text()
    panel.filter.setText("latents")
    assert panel.shown_run_names() == ["tiny"]
    # A fresh panel (the app restarted) reads them back.
    again = RunsPanel(run.parent)
    qtbot.addWidget(again)
    assert again.tree.topLevelItem(0).toolTip(7).endswith("Accuracy dropped 4 points.")
