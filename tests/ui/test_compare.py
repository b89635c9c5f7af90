"""Comparing runs: select several in the runs list and see their curves overlaid and their settings
side by side."""

from __future__ import annotations

import json
import shutil

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QInputDialog

from perceiver_gui.ui.runs_panel import RunsPanel

pytestmark = pytest.mark.slow  # trains two tiny one-epoch runs (~5 s, once per module)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two finished one-epoch runs that differ only in learning rate and seed."""
    from perceiver_gui.core.events import Finished
    from perceiver_gui.core.training import train
    from tests.ui.helpers import tiny_config

    root = tmp_path_factory.mktemp("runs")
    for folder, lr, seed in (("a", 3e-3, 0), ("b", 1e-2, 1)):
        config = tiny_config(**{"train.epochs": 1, "train.lr": lr, "train.seed": seed})
        events = list(train(config, out_dir=root / folder))
        assert isinstance(events[-1], Finished) and events[-1].status == "completed", events[-1]
        _rename(root / folder, f"lr {lr:g}")
    return root


def _rename(folder, name):
    from perceiver_gui.core import runs

    runs.write_run(folder, name=name)


@pytest.fixture
def root(two_runs, tmp_path):
    """A copy of the two runs that a test may change or delete."""
    copy = tmp_path / "runs"
    shutil.copytree(two_runs, copy)
    return copy


@pytest.fixture
def panel(qtbot, root):
    widget = RunsPanel(root)
    qtbot.addWidget(widget)
    widget.resize(900, 800)
    widget.show()
    return widget


def _click(qtbot, panel, row, modifier=Qt.KeyboardModifier.NoModifier):
    item = panel.tree.topLevelItem(row)
    rect = panel.tree.visualItemRect(item)
    qtbot.mouseClick(panel.tree.viewport(), Qt.MouseButton.LeftButton, modifier, rect.center())


def _highlighted(view):
    from perceiver_gui.ui.compare_view import DIFFERS

    table = view.table
    return [table.item(r, 0).text() for r in range(table.rowCount())
            if table.item(r, 0).background().color() == DIFFERS]


def _shown(view):
    table = view.table
    return [table.item(r, 0).text() for r in range(table.rowCount()) if not table.isRowHidden(r)]


def test_ctrl_click_two_runs_overlays_their_curves_with_their_names_in_the_legend(qtbot, panel):
    from perceiver_gui.ui.compare_view import CompareView

    _click(qtbot, panel, 0)
    assert panel.plots.isVisible() and panel.findChild(CompareView) is None  # one run: as before
    _click(qtbot, panel, 1, Qt.KeyboardModifier.ControlModifier)
    view = panel.compare
    assert view.isVisible() and not panel.plots.isVisible()
    names = [info.name for info in panel.selected_runs()]
    assert sorted(names) == ["lr 0.003", "lr 0.01"]
    assert view.legend_names() == names
    drawn = [curve for curve in view.acc_plot.listDataItems() if len(curve.getData()[0])]
    assert len(drawn) == 2  # one validation-accuracy point per run (one epoch each)
    assert len({curve.opts["pen"].color().name() for curve in drawn}) == 2  # each run its own colour
    assert len([c for c in view.loss_plot.listDataItems() if len(c.getData()[0]) > 1]) == 2  # train losses
    assert "Comparing 2 runs" in panel.detail.text()


def test_compared_runs_lines_keep_their_width_on_a_2x_screen(panel, monkeypatch):
    view = panel.compare
    monkeypatch.setattr(view, "devicePixelRatioF", lambda: 2.0, raising=False)  # as on a screen at 2× scaling
    panel.select_runs([str(panel.runs_root / "a"), str(panel.runs_root / "b")])
    widths = sorted(c.opts["pen"].widthF() for c in view.acc_plot.listDataItems() if c.opts["pen"] is not None)
    assert widths and all(w >= 4.0 for w in widths), widths  # device pixels: twice the 2 px at 1×
    loss = [c.opts["pen"].widthF() for c in view.loss_plot.listDataItems() if c.opts["pen"] is not None]
    assert loss and min(loss) >= 3.6, loss


def test_the_table_highlights_exactly_the_settings_that_differ(panel):
    panel.select_runs([str(panel.runs_root / "a"), str(panel.runs_root / "b")])
    view = panel.compare
    assert sorted(_highlighted(view)) == ["train.lr", "train.seed"]
    headers = [view.table.horizontalHeaderItem(c).text() for c in range(view.table.columnCount())]
    assert headers[1:] == [info.name for info in panel.selected_runs()]
    lr_row = next(r for r in range(view.table.rowCount()) if view.table.item(r, 0).text() == "train.lr")
    assert {view.table.item(lr_row, c).text() for c in (1, 2)} == {"0.003", "0.01"}
    best = [view.table.item(0, c).text() for c in (1, 2)]
    assert view.table.item(0, 0).text() == "Best validation accuracy" and all(b.endswith("%") for b in best)
    assert view.table.item(2, 0).text() == "Test accuracy (chosen model)"
    assert all(view.table.item(2, c).text().endswith("%") for c in (1, 2))
    assert [view.table.item(3, c).text() for c in (1, 2)] == ["1 / 1", "1 / 1"]  # epochs done / planned


def test_only_differences_hides_the_settings_all_runs_share(panel):
    panel.select_runs([str(panel.runs_root / "a"), str(panel.runs_root / "b")])
    view = panel.compare
    assert view.only_differences.isChecked()  # on by default
    summary = ["Best validation accuracy", "Best epoch", "Test accuracy (chosen model)", "Epochs done"]
    assert _shown(view) == summary + ["train.lr", "train.seed"]
    assert "2 of" in view.table_note.text()
    view.only_differences.setChecked(False)
    shown = _shown(view)
    assert "model.depth" in shown and "data.dataset" in shown and len(shown) > 30
    assert sorted(_highlighted(view)) == ["train.lr", "train.seed"]  # the equal rows come back unmarked


def test_actions_on_one_run_disable_while_several_are_selected_and_delete_asks_once_for_all(
    qtbot, panel, root, dialogs
):
    panel.select_runs([str(root / "a")])
    assert panel.rename_button.isEnabled() and panel.open_button.isEnabled()
    assert panel.selected().path == str(root / "a")
    panel.select_runs([str(root / "a"), str(root / "b")])
    assert panel.selected() is None and len(panel.selected_runs()) == 2
    assert not panel.resume_button.isEnabled()
    assert not panel.rename_button.isEnabled()
    assert not panel.open_button.isEnabled()
    assert panel.delete_button.isEnabled()
    with qtbot.waitSignal(panel.message) as said:
        panel.delete_button.click()
    assert [d[0] for d in dialogs] == ["question"] and "lr 0.003" in dialogs[0][2] and "lr 0.01" in dialogs[0][2]
    assert said.args == ["Deleted 2 runs."]
    assert panel.run_names() == [] and not (root / "a").exists() and not (root / "b").exists()
    assert not panel.compare.isVisible() and not panel.plots.isVisible() and "No runs yet" in panel.detail.text()


def test_back_to_one_run_shows_its_own_curves_again(panel, root):
    panel.select_runs([str(root / "a"), str(root / "b")])
    panel.select_runs([str(root / "b")])
    assert not panel.compare.isVisible() and panel.plots.isVisible()
    assert len(panel.plots.val_acc_curve.getOriginalDataset()[0]) == 1
    assert "lr 0.01" in panel.detail.text()


def test_a_damaged_run_and_one_without_metrics_are_named_not_fatal(panel, root, monkeypatch):
    (root / "a" / "config.json").write_text("{ not json")
    shutil.copytree(root / "b", root / "c")
    (root / "c" / "metrics.jsonl").unlink()
    _rename(root / "c", "just started")
    # NaN losses are written as null: they are left out and counted.
    with open(root / "b" / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"type": "step", "epoch": 1, "step": 10_000, "loss": None, "lr": 0.01}) + "\n")
    panel.refresh()
    assert panel.select_runs([str(root / d) for d in ("a", "b", "c")]) == 3
    view = panel.compare
    note = view.note.text()
    assert "lr 0.003" in note and "damaged" in note
    assert "“just started” has no finished epoch yet" in note
    assert "1 non-finite value" in note
    headers = [view.table.horizontalHeaderItem(c).text() for c in range(view.table.columnCount())]
    assert any(h.startswith("lr 0.003") and "⚠" in h for h in headers)
    # The unreadable settings are unknown, not different: b and c share theirs.
    assert _highlighted(view) == []
    assert view.legend_names() == ["lr 0.003", "lr 0.01 · 2 runs"]  # c, a copy of b, is one group with it
    view.group_seeds.setChecked(False)
    assert view.legend_names() == [info.name for info in panel.selected_runs()]


def test_the_x_axis_switches_between_epochs_and_steps(panel, root):
    panel.select_runs([str(root / "a"), str(root / "b")])
    view = panel.compare
    first = next(c for c in view.acc_plot.listDataItems() if len(c.getData()[0]))
    assert list(first.getData()[0]) == [1.0]
    view.x_axis.setCurrentText("step")
    assert first.getData()[0][0] > 1  # the step at which the epoch ended
    assert view.acc_plot.getAxis("bottom").labelText == "step"


def test_rename_is_still_one_run_at_a_time(panel, root, monkeypatch):
    monkeypatch.setattr(QInputDialog, "getText", staticmethod(lambda *a, **k: ("renamed", True)))
    panel.select_runs([str(root / "a")])
    panel.rename_button.click()
    assert sorted(panel.run_names()) == ["lr 0.01", "renamed"]
    assert panel.selected().name == "renamed"  # the selection survives the refresh


def test_long_metrics_are_read_in_the_background_and_drawn_when_read(qtbot, panel, root, monkeypatch):
    from perceiver_gui.ui import compare_view

    monkeypatch.setattr(compare_view, "READ_NOW_BYTES", 0)  # as if both runs had long histories
    view = panel.compare
    with qtbot.waitSignal(view.loaded, timeout=30000):
        panel.select_runs([str(root / "a"), str(root / "b")])
        assert view.note.text().startswith("Reading the metrics of")  # the window is not frozen meanwhile
        assert view.table.item(0, 1).text() == "…" and sorted(view.differing_settings()) == ["train.lr", "train.seed"]
    assert not view.loading and view.table.item(0, 1).text().endswith("%")
    assert len([c for c in view.acc_plot.listDataItems() if len(c.getData()[0])]) == 2


def test_runs_that_share_a_name_are_told_apart_in_the_legend_and_the_table(panel, root):
    # Every run of a preset is named after it: comparing two "digits" runs must not show "digits" twice.
    for folder in ("a", "b"):
        _rename(root / folder, "digits")
    panel.refresh()
    panel.select_runs([str(root / "a"), str(root / "b")])
    view = panel.compare
    legend = view.legend_names()
    headers = [view.table.horizontalHeaderItem(c).text() for c in (1, 2)]
    assert len(set(legend)) == 2 and all(name.startswith("digits · ") for name in legend), legend
    assert headers == legend


def test_the_accuracy_title_mentions_old_runs_only_when_one_is_compared(panel):
    panel.select_runs([str(panel.runs_root / "a"), str(panel.runs_root / "b")])
    assert panel.compare.acc_plot.titleLabel.text == "Validation accuracy"  # two runs of this version


def test_the_best_epoch_is_the_one_whose_model_was_saved_when_accuracies_tie(panel, root):
    """Two epochs at the same validation accuracy: the engine keeps the one with the lower loss, and the table
    says that epoch, as the Runs list and the run's own plot do (it said the first one)."""
    import json

    from perceiver_gui.core import runs

    metrics = root / "a" / runs.METRICS_FILE
    lines = metrics.read_text().splitlines()
    first = json.loads(next(line for line in lines if '"type": "epoch"' in line))
    later = {**first, "epoch": 2, "step": first["step"] * 2, "val_loss": first["val_loss"] / 2, "is_best": True}
    metrics.write_text("\n".join([*lines, json.dumps(later)]) + "\n")
    runs.write_run(root / "a", best_epoch=2)
    panel.select_runs([str(root / "a"), str(root / "b")])
    view = panel.compare
    column = next(c for c in range(1, view.table.columnCount()) if view.table.horizontalHeaderItem(c).text() == "lr 0.003")
    assert view.table.item(0, 0).text() == "Best validation accuracy" and view.table.item(1, 0).text() == "Best epoch"
    assert view.table.item(1, column).text() == "2"
