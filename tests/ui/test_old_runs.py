"""A run of an older version (its epochs evaluated, and its best chosen, on the test split) still lists, plots and
compares beside a new one, and every view says it was selected on test."""

from __future__ import annotations

import shutil

import pytest

from perceiver_gui.core import runs
from perceiver_gui.ui.runs_panel import STATUS_COLUMN, TEST_COLUMN, VAL_COLUMN, RunsPanel
from tests.core.test_validation import _old_run

pytestmark = pytest.mark.slow  # uses the session's tiny trained run (~5 s to make once)


@pytest.fixture
def panel(qtbot, tmp_path, trained_run):
    root = tmp_path / "runs"
    root.mkdir()
    shutil.copytree(trained_run, root / "new")
    _old_run(root / "old")
    widget = RunsPanel(root)
    qtbot.addWidget(widget)
    widget.resize(1000, 800)
    widget.show()
    return widget


def _row(panel, name):
    return next(panel.tree.topLevelItem(i) for i in range(panel.tree.topLevelItemCount())
                if panel.tree.topLevelItem(i).text(0) == name)


def test_the_runs_list_labels_an_old_run_selected_on_test_and_a_new_one_by_split(panel):
    old, new = _row(panel, "old"), _row(panel, "tiny")
    assert old.text(VAL_COLUMN) == "— (old run)"
    assert old.text(TEST_COLUMN) == "61.0% · selected on test (old run)"
    assert "chose its best epoch by this test accuracy" in old.toolTip(TEST_COLUMN)
    assert old.text(STATUS_COLUMN).startswith("completed")
    assert new.text(VAL_COLUMN).endswith("%") and new.text(TEST_COLUMN).endswith("%")
    assert "old run" not in new.text(TEST_COLUMN)
    assert "measured once" in panel.tree.headerItem().toolTip(TEST_COLUMN)


def test_an_old_run_plots_with_its_curves_named_test(panel):
    assert panel.select_runs([str(panel.runs_root / "old")])
    plots = panel.plots
    assert len(plots.val_acc_curve.getOriginalDataset()[0]) == 2 and plots.best() == (2, 0.61)
    assert "old run" in plots.acc_plot.legend.getLabel(plots.val_acc_curve).text
    assert panel.select_runs([str(panel.runs_root / "new")])
    assert plots.acc_plot.legend.getLabel(plots.val_acc_curve).text == "validation"
    record = runs.read_run(panel.runs_root / "new")
    assert f"test {record.test_acc:.1%}" in plots.acc_plot.titleLabel.text


def test_an_old_run_compares_beside_a_new_one_and_does_not_win_on_its_test_score(panel, qtbot):
    panel.select_runs([str(panel.runs_root / "old"), str(panel.runs_root / "new")])
    view = panel.compare
    qtbot.waitUntil(lambda: not view.loading, timeout=10000)
    columns = {view.table.horizontalHeaderItem(c).text(): c for c in range(1, view.table.columnCount())}
    old, new = columns["old"], columns["tiny"]
    assert view.table.item(0, old).text() == "61.00% (test: selected on test, old run)"
    assert view.acc_plot.titleLabel.text == "Validation accuracy (old runs: test)"
    assert view.table.item(0, new).text().endswith("%") and view.table.item(2, new).text().endswith("%")
    assert view.table.item(2, old).text() == "—"  # it never measured test apart from choosing on it
    assert not view.table.item(0, old).font().bold()  # a test score chosen on is not a fair winner
    drawn = [c for c in view.acc_plot.listDataItems() if len(c.getData()[0])]
    assert len(drawn) == 2
