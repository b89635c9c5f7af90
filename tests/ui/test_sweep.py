"""The Sweep tab drives a real `perceiver-gui sweep` process over the form's config and shows its trials."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from tests.ui.helpers import tiny_config


def test_a_bad_search_space_is_one_sentence_and_starts_nothing(make_window, tmp_path):
    window = make_window()
    panel = window.sweep
    panel.set_vary("train.lr", low=0.1, high=0.01, log=True)
    panel.folder_edit.setText(str(tmp_path / "sweep"))
    panel.start_button.click()
    assert not panel.running
    assert "train.lr: low (0.1) must be below high (0.01)" in panel.status.text()
    assert not (tmp_path / "sweep").exists()


@pytest.mark.slow
def test_the_sweep_tab_runs_stops_and_continues_a_tiny_sweep_to_the_end(make_window, qtbot, tmp_path):
    window = make_window()
    window.form.set_config(tiny_config(**{"train.epochs": 20}))  # long enough for Stop to land inside a trial
    panel = window.sweep
    window.tabs.setCurrentWidget(panel)
    panel.set_vary("train.lr", choices="0.01, 0.03")
    panel.set_vary("model.num_latents", choices="4, 8")
    panel.trials.setValue(2)
    panel.pruner.setCurrentText("none")
    panel.folder_edit.setText(str(tmp_path / "sweep"))

    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    assert panel.running and not panel.start_button.isEnabled() and panel.stop_button.isEnabled()
    # Stop it inside its first trial: that trial saves, and is marked interrupted.
    qtbot.waitUntil(lambda: any(r.state == "running" and r.epoch >= 1 for r in panel.rows), timeout=120000)
    qtbot.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.running, timeout=60000)
    assert [r.state for r in panel.rows] == ["interrupted"]
    assert panel.start_button.isEnabled() and panel.continue_button.isEnabled()

    qtbot.mouseClick(panel.continue_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.running, timeout=180000)
    assert [r.state for r in panel.rows] == ["interrupted", "complete", "complete"], panel.log.toPlainText()
    assert panel.table.rowCount() == 3
    assert panel.table.item(1, 1).text().startswith("complete")
    assert "Done: 2 of 2 trials finished" in panel.status.text()
    xs, best = panel.plots.best_points
    assert list(xs) == [1, 2] and best[1] == max(r.value for r in panel.rows[1:])
    assert panel.plots.lines == 2
    # Importance is computed in a worker (its first call imports for seconds) and drawn when it arrives.
    qtbot.waitUntil(lambda: set(panel.plots.importance) == {"train.lr", "model.num_latents"}, timeout=60000)

    # Selecting a trial shows its run's curves; double-clicking opens its model in the Classifier.
    panel.table.selectRow(2)
    assert len(panel.run_plots.val_acc.x) == 20
    panel._open_model()
    qtbot.waitUntil(lambda: window.classifier.model_path.endswith("0002/model.safetensors"), timeout=30000)
    assert window.tabs.currentWidget() is window.classifier


def test_the_ticked_rows_are_the_search_space_and_an_opened_sweep_fills_them_back(make_window, tmp_path):
    from perceiver_gui.core import sweep

    window = make_window()
    panel = window.sweep
    panel.set_vary("train.lr", low=0.001, high=0.01, log=True)
    panel.set_vary("model.depth", low=1, high=3, log=False)
    panel.set_vary("train.optimizer", choices="adam, adamw")
    assert panel.search_table() == {"train.lr": {"low": 0.001, "high": 0.01, "log": True},
                                    "train.optimizer": ["adam", "adamw"],
                                    "model.depth": {"low": 1, "high": 3, "log": False}}
    spec = sweep.parse_sweep({"search": panel.search_table(), "sweep": panel.sweep_table()}, base=window.form.config())
    assert dict(spec.search)["model.depth"].integer
    folder = sweep.create_sweep(spec, tmp_path / "s")

    other = make_window().sweep
    assert other.open_folder(folder)
    assert other.search_table() == panel.search_table()
    assert other.table.rowCount() == 0 and "0 of 20 trials finished" in other.status.text()


def test_the_sweep_plots_lines_keep_their_width_on_a_2x_screen(qtbot, monkeypatch):
    from perceiver_gui.core.sweep import Range, TrialRow
    from perceiver_gui.ui import deferred

    deferred.import_plotting()
    from perceiver_gui.ui.sweep_plots import SweepPlots

    plots = SweepPlots()
    qtbot.addWidget(plots)
    monkeypatch.setattr(plots, "devicePixelRatioF", lambda: 2.0, raising=False)  # as on a screen at 2× scaling
    rows = [TrialRow(number=i, state="complete", value=0.5 + 0.1 * i, epoch=2, params=(("train.lr", 10.0 ** -i),),
                     run_dir=f"t{i}", is_best=i == 2) for i in range(1, 3)]
    plots.show_trials(rows, (("train.lr", Range(1e-3, 1e-1, log=True)),), "val_acc", "maximize", {})
    assert plots.best_curve.opts["pen"].widthF() == 4.0  # device pixels: twice the 2 px at 1×
    trials = sorted(item.opts["pen"].widthF() for item in plots.parallel_plot.listDataItems()
                    if len(set(item.xData)) > 1)  # not the vertical axis lines
    assert trials == [2.4, 4.0]  # the best trial's line stays the thicker one


def test_the_choices_column_is_readable_in_a_1280_wide_window(qtbot, tmp_path):
    """At the default window size the settings table shows its choices ('constant, cosine, onecycle'),
    not a 40-pixel sliver behind a horizontal scroll bar."""
    from perceiver_gui.config import PRESETS
    from perceiver_gui.ui.sweep_panel import COL_CHOICES, SweepPanel

    panel = SweepPanel(lambda: PRESETS["digits"], tmp_path / "sweeps")
    qtbot.addWidget(panel)
    panel.resize(870, 740)  # the tab's size in a 1280 × 800 window
    panel.show()
    qtbot.waitExposed(panel)
    space = panel.space
    assert space.columnWidth(COL_CHOICES) >= space.sizeHintForColumn(COL_CHOICES) - 2
    assert not space.horizontalScrollBar().isVisible()
    assert panel.table.width() >= 280  # the trials keep room beside it, all their columns in view
    trials = panel.table.horizontalHeader()
    assert trials.sectionViewportPosition(trials.count() - 1) + trials.sectionSize(trials.count() - 1) \
        <= panel.table.viewport().width()
    assert "each trial" in panel.log.placeholderText()  # the empty log says what will come, not a blank box


def _shown_sweep_plots(qtbot, rows, search):
    from perceiver_gui.ui import deferred

    deferred.import_plotting()
    from perceiver_gui.ui.sweep_plots import SweepPlots

    plots = SweepPlots()
    qtbot.addWidget(plots)
    plots.resize(360, 420)  # the Progress tab's size in a 1280 × 800 window
    plots.show()
    qtbot.waitExposed(plots)
    plots.show_trials(rows, search, "val_acc", "maximize", {})
    qtbot.wait(50)
    return plots


def test_the_trials_plot_shows_each_axis_end_whole_and_clear_of_its_axis(qtbot):
    """The walk at 1280 × 800 showed the top ends ("0.01", "0.256") cut in half by the plot's edge, and each
    axis line running through its end labels ("0|1")."""
    import pyqtgraph as pg

    from perceiver_gui.core.sweep import Range, TrialRow

    rows = [TrialRow(number=i, state="complete", value=v, epoch=1, params=(("train.lr", lr),), run_dir=f"t{i}",
                     is_best=i == 1) for i, (v, lr) in enumerate(((0.1, 0.0035), (0.2556, 0.0052)))]
    plots = _shown_sweep_plots(qtbot, rows, (("train.lr", Range(1e-3, 1e-2, log=True)),))
    view = plots.parallel_plot.getViewBox()
    labels = [item for item in plots.parallel_plot.items if isinstance(item, pg.TextItem)]
    assert sorted(label.toPlainText() for label in labels) == ["0.001", "0.01", "0.1", "0.256"]
    shown = view.sceneBoundingRect()
    axes = [item for item in plots.parallel_plot.items if isinstance(item, pg.InfiniteLine)
            or isinstance(item, pg.PlotDataItem) and len(set(item.xData)) == 1]  # the vertical axis lines
    assert len(axes) == 2
    for label in labels:
        box = label.sceneBoundingRect()
        assert shown.contains(box), (label.toPlainText(), box, shown)
        assert not any(axis.sceneBoundingRect().intersects(box) for axis in axes), label.toPlainText()


def test_the_best_so_far_plot_numbers_trials_as_whole_numbers(qtbot):
    from perceiver_gui.core.sweep import Range, TrialRow

    rows = [TrialRow(number=i, state="complete", value=0.1 * (i + 1), epoch=1, params=(("train.lr", 1e-3),),
                     run_dir=f"t{i}", is_best=i == 2) for i in range(3)]
    plots = _shown_sweep_plots(qtbot, rows, (("train.lr", Range(1e-4, 1e-2, log=True)),))
    axis = plots.best_plot.getAxis("bottom")
    low, high = plots.best_plot.viewRange()[0]
    ticks = [v for _spacing, values in axis.tickValues(low, high, axis.width()) for v in values]
    assert ticks and all(float(v).is_integer() for v in ticks), ticks  # trial 0.5 does not exist


def test_selecting_a_trial_shows_its_run(qtbot, tmp_path, trained_run):
    """The walk: clicking a finished trial added a "Trial run" tab behind the Progress plots, so nothing a
    user could see changed. A new pick shows its curves; the table's refresh each second (which keeps the
    selection) does not pull the user back from another tab."""
    from PySide6.QtWidgets import QTableWidgetItem

    from perceiver_gui.config import PRESETS
    from perceiver_gui.core.sweep import TrialRow
    from perceiver_gui.ui import deferred
    from perceiver_gui.ui.sweep_panel import SweepPanel

    deferred.import_plotting()
    panel = SweepPanel(lambda: PRESETS["digits"], tmp_path / "sweeps")
    qtbot.addWidget(panel)
    panel.rows = [TrialRow(number=i, state="complete", value=0.5, epoch=1, params=(), run_dir=str(trained_run),
                           is_best=i == 0) for i in range(2)]
    panel.table.setRowCount(2)
    for i in range(2):
        panel.table.setItem(i, 0, QTableWidgetItem(str(i)))
    progress = panel.plots  # the Progress tab, shown as while a sweep runs
    assert panel.views.currentWidget() is progress
    panel.table.selectRow(1)
    assert panel.views.currentWidget() is panel.run_plots and len(panel.run_plots.val_acc.x) > 0
    panel.views.setCurrentWidget(panel.plots)  # the user goes back to the progress
    panel._trial_selected()  # what a refresh that re-selects the same trial amounts to
    assert panel.views.currentWidget() is panel.plots
