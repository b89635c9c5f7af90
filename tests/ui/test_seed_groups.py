"""Seed groups in the comparison: runs alike but for the seed are drawn as their mean with a ± sample std
band, and the table shows their mean ± std with n. Run folders are written in their real on-disk format."""

from __future__ import annotations

import numpy as np
import pytest

from perceiver_gui.core import runs
from perceiver_gui.core.runs import EpochRecord
from tests.ui.helpers import tiny_config

# Per run: its name, seed, learning rate, (validation accuracy, validation loss) per epoch and the chosen
# model's test accuracy. The third seed ran one epoch more than the others.
RUNS = (("base", 0, 0.01, [(0.50, 1.6), (0.70, 1.0)], 0.69),
        ("base", 1, 0.01, [(0.56, 1.4), (0.78, 0.8)], 0.75),
        ("base", 2, 0.01, [(0.47, 1.7), (0.74, 0.9), (0.81, 0.7)], 0.80),
        ("other", 0, 0.02, [(0.60, 1.2), (0.65, 1.1)], 0.62))


@pytest.fixture
def view(qtbot, tmp_path):
    from perceiver_gui.ui.compare_view import CompareView

    for n, (name, seed, lr, epochs, test) in enumerate(RUNS):
        folder = tmp_path / f"run{n}"
        folder.mkdir()
        runs.write_config(folder, tiny_config(name=name, **{"train.seed": seed, "train.lr": lr}))
        runs.rewrite_metrics(folder, [*(EpochRecord(epoch=e, step=14 * e, val_acc=a, val_loss=v)
                                        for e, (a, v) in enumerate(epochs, 1)),
                                      runs.TestRecord(epoch=len(epochs), step=14 * len(epochs), test_acc=test)])
        runs.write_run(folder, name=name, created=1e9 + n, status="completed", epochs_done=len(epochs))
    widget = CompareView()
    qtbot.addWidget(widget)
    widget.set_runs(sorted(runs.list_runs(tmp_path), key=lambda r: r.created))
    return widget


def _points(curve) -> int:
    x, _ = curve.getData()
    return 0 if x is None else len(x)


def _row(view, label):
    table = view.table
    row = next(r for r in range(table.rowCount()) if table.item(r, 0).text() == label)
    return [table.item(row, c).text() for c in range(1, table.columnCount())]


def test_runs_that_differ_by_seed_are_one_mean_curve_with_a_sample_std_band(view):
    assert view.groups() == [[0, 1, 2]]
    assert view.legend_names() == ["other", "base · 3 seeds"]
    (group,) = view._groups
    x, mean = group.acc.getData()
    accs = np.array([[0.50, 0.70], [0.56, 0.78], [0.47, 0.74]])  # epoch 3: one run only, no mean there
    assert list(x) == [1.0, 2.0]
    np.testing.assert_allclose(mean, accs.mean(axis=0))
    low, high = group.acc_edges[0].getData()[1], group.acc_edges[1].getData()[1]
    np.testing.assert_allclose(high - mean, accs.std(axis=0, ddof=1))
    np.testing.assert_allclose(mean - low, accs.std(axis=0, ddof=1))
    assert group.fills[0] in view.acc_plot.items
    # The band is drawn: its area spans the epochs and the ± std around the mean.
    area = group.fills[0].path().boundingRect()
    assert (area.left(), area.right()) == (1.0, 2.0)
    assert area.top() == pytest.approx(low.min()) and area.bottom() == pytest.approx(high.max())
    assert "epochs after 2 were reached by only one run" in view.note.text()
    assert "sample standard deviation (n − 1)" in view.note.text()
    # The group's own runs are drawn only through it; the run alone keeps its curve.
    assert [_points(view._acc_curves[i]) for i in range(4)] == [0, 0, 0, 2]


def test_the_table_shows_mean_and_std_of_final_and_best_metrics_with_n(view):
    headers = [view.table.horizontalHeaderItem(c).text() for c in range(1, view.table.columnCount())]
    assert headers == ["base · 3 seeds", "other"]
    final = np.array([0.70, 0.78, 0.81])  # each run's last epoch
    best_loss = np.array([1.0, 0.8, 0.7])
    assert _row(view, "Runs") == ["3", "1"]
    tests = np.array([0.69, 0.75, 0.80])
    assert _row(view, "Final validation accuracy") == [
        f"{final.mean():.2%} ± {final.std(ddof=1):.2%} (n=3)", "65.00%"]
    assert _row(view, "Best validation accuracy")[0] == f"{final.mean():.2%} ± {final.std(ddof=1):.2%} (n=3)"
    assert _row(view, "Best validation loss")[0] == f"{best_loss.mean():.4f} ± {best_loss.std(ddof=1):.4f} (n=3)"
    assert _row(view, "Test accuracy (chosen model)") == [
        f"{tests.mean():.2%} ± {tests.std(ddof=1):.2%} (n=3)", "62.00%"]
    assert _row(view, "Epochs done") == ["2–3", "2"]
    assert _row(view, "train.seed") == ["0, 1, 2", "0"]
    lr = next(r for r in range(view.table.rowCount()) if view.table.item(r, 0).text() == "train.lr")
    assert not view.table.isRowHidden(lr)
    assert view.table_note.text().startswith("Seed groups: mean ± sample standard deviation (n − 1).")


def test_group_seeds_off_shows_every_run_again(view):
    view.group_seeds.setChecked(False)
    assert view.groups() == []
    assert len(view.legend_names()) == 4 and view._groups == []
    assert view.table.columnCount() == 5
    assert [_points(view._acc_curves[i]) for i in range(4)] == [2, 2, 3, 2]
    view.group_seeds.setChecked(True)
    assert view.legend_names() == ["other", "base · 3 seeds"]


def test_by_step_the_band_sits_at_the_steps_the_epochs_ended(view):
    view.x_axis.setCurrentText("step")
    x, _ = view._groups[0].acc.getData()
    assert list(x) == [14.0, 28.0]


def test_an_older_run_beside_new_ones_says_its_split(qtbot, tmp_path):
    from perceiver_gui.ui.compare_view import CompareView

    for n, (seed, record) in enumerate(((0, EpochRecord(epoch=1, step=14, val_acc=0.5, val_loss=1.0)),
                                        (1, EpochRecord(epoch=1, step=14, val_acc=0.6, val_loss=0.9)),
                                        (5, EpochRecord(epoch=1, step=14, test_acc=0.7, test_loss=0.8)))):
        folder = tmp_path / f"run{n}"
        folder.mkdir()
        runs.write_config(folder, tiny_config(**{"train.seed": seed, "train.lr": 0.01 if n < 2 else 0.02}))
        runs.rewrite_metrics(folder, [record])
        runs.write_run(folder, created=1e9 + n)
    view = CompareView()
    qtbot.addWidget(view)
    view.set_runs(sorted(runs.list_runs(tmp_path), key=lambda r: r.created))
    assert _row(view, "Final held-out accuracy") == ["55.00% ± 7.07% (n=2) (validation)", "70.00% (test)"]


def test_on_a_log_scale_the_loss_band_follows_the_axis(view):
    (group,) = view._groups
    view.log_scale.setChecked(True)
    _, high = group.loss_edges[1].getData()
    losses = np.array([[1.6, 1.0], [1.4, 0.8], [1.7, 0.9]])
    np.testing.assert_allclose(high, np.log10(losses.mean(axis=0) + losses.std(axis=0, ddof=1)))
