from __future__ import annotations

import math

import numpy as np
import pytest

from perceiver_gui.core.events import EpochEnd, Finished, RunStarted, Step
from perceiver_gui.ui.plots import LIVE_REDRAW_MS, PlotsPanel
from perceiver_gui.ui.plotting import ema


@pytest.fixture
def plots(qtbot):
    panel = PlotsPanel()
    qtbot.addWidget(panel)
    return panel


def _epoch(epoch, step, acc, loss=1.0, is_best=False):
    return EpochEnd(epoch=epoch, step=step, train_loss=1.0, train_acc=0.5, val_loss=loss, val_acc=acc,
                    per_class_acc=(), confusion=(), elapsed_s=1.0, is_best=is_best)


def test_steps_and_epochs_reach_the_curves_and_nan_is_left_out(plots, qtbot):
    for i in range(1, 2001):
        loss = math.nan if i == 1500 else 2.0 / math.sqrt(i)
        plots.on_event(Step(epoch=1, step=i, total_steps=2000, loss=loss, lr=1e-3 * (1 - i / 2000),
                            images_per_s=100.0, eta_s=1.0))
    plots.on_event(_epoch(1, 1000, 0.6, is_best=True))
    plots.on_event(_epoch(2, 2000, 0.8, loss=0.7, is_best=True))
    plots.on_event(_epoch(3, 3000, 0.7))
    # Redraws are throttled: the last state arrives shortly after the last event.
    qtbot.waitUntil(lambda: plots.val_acc_curve.getData()[0] is not None and len(plots.val_acc_curve.getData()[0]) == 3)
    x, y = plots.raw_curve.getOriginalDataset()
    assert len(x) == 1999 and np.all(np.isfinite(y))
    assert len(plots.lr_curve.getOriginalDataset()[0]) == 2000
    assert plots.best() == (2, 0.8)
    assert plots.best_line.value() == 2 and plots.best_line.isVisible()
    assert "1 non-finite value not shown" in plots.info.text()


def test_smoothing_control_changes_the_bold_curve(plots):
    rng = np.random.default_rng(0)
    for i, v in enumerate(rng.random(300) + 1.0, start=1):
        plots.add_step(i, float(v), 0.1)
    plots.redraw()
    smooth = plots.smooth_curve.getOriginalDataset()[1].copy()
    plots.smoothing.setValue(0)
    raw = plots.smooth_curve.getOriginalDataset()[1]
    np.testing.assert_allclose(raw, plots.raw_curve.getOriginalDataset()[1])
    assert smooth.std() < raw.std() / 2
    # Appending after a change continues the same average as recomputing from scratch.
    plots.smoothing.setValue(80)
    plots.add_step(301, 5.0, 0.1)
    plots.redraw()
    full = ema(plots.loss_raw.y, 0.8)
    np.testing.assert_allclose(plots.smooth_curve.getOriginalDataset()[1], full)


def test_log_scale_toggle(plots):
    plots.log_scale.setChecked(True)
    assert plots.loss_plot.ctrl.logYCheck.isChecked()


def test_load_metrics_records_with_nulls_and_hostile_steps(plots, tmp_path):
    from perceiver_gui.core import runs

    (tmp_path / runs.METRICS_FILE).write_text("\n".join([
        '{"type": "step", "epoch": 1, "step": 1, "loss": 2.0, "lr": 0.1}',
        '{"type": "step", "epoch": 1, "step": 2, "loss": null, "lr": 0.1}',
        '{"type": "step", "epoch": 1, "step": 1e400, "loss": 1.0, "lr": 0.1}',
        '{"type": "step", "epoch": 1, "step": "x", "loss": 1.0, "lr": 0.1}',
        '{"type": "step", "epoch": 1, "step": null, "loss": 1.0, "lr": 0.1}',
        '{"type": "epoch", "epoch": 1, "step": 2, "train_loss": 1.0, "train_acc": 0.5, "test_loss": 1.1, "test_acc": 0.4}',
        '{"type": "something-new"}',
    ]))
    plots.load_metrics(runs.read_metrics(tmp_path))
    assert len(plots.raw_curve.getOriginalDataset()[0]) == 1
    assert plots.best() == (1, 0.4)
    # An older version's run: its epochs were evaluated (and its best chosen) on test, and the plot says so.
    assert plots.held_out == "test" and "old run" in plots.acc_plot.legend.getLabel(plots.val_acc_curve).text
    assert "old run" in plots.acc_plot.titleLabel.text and "best test 40.0%" in plots.info.text()


def test_a_million_steps_are_drawn_as_their_envelope_with_every_spike(plots, qtbot):
    plots.resize(800, 500)
    plots.show()
    qtbot.waitExposed(plots)
    n = 1_000_000
    steps = np.arange(1, n + 1, dtype=float)
    loss = 1.0 + 0.1 * np.sin(steps / 5000)
    loss[123_457] = 9.0  # one diverging batch must stay visible
    loss[876_543] = 0.01
    plots.loss_raw.set(steps, loss)  # as a million add_step calls would leave them, in a fraction of the time
    plots.loss_smooth.set(steps, ema(loss, 0.9))
    plots.redraw()
    x, y = plots.raw_curve.getData()
    assert len(x) <= 4 * plots.loss_plot.getViewBox().width() + 4  # a few points per pixel column, not a million
    assert y.max() == 9.0 and y.min() == 0.01
    assert x[0] == 1 and x[-1] == n
    # Zoomed in, the steps in view are drawn one by one.
    plots.loss_plot.setXRange(500_000, 500_100, padding=0)
    x, y = plots.raw_curve.getData()
    inside = x[(x >= 500_000) & (x <= 500_100)]
    np.testing.assert_array_equal(inside, np.arange(500_000, 500_101))


def test_axes_stay_put_while_steps_arrive(plots, qtbot):
    # Rebuilding an axis is most of a redraw's cost: the ranges move in round jumps, not every step.
    plots.resize(800, 500)
    plots.show()
    qtbot.waitExposed(plots)
    plots.on_event(_run_started(400, 400))
    ranges = set()
    for i in range(1, 401):
        plots.add_step(i, 2.0 / math.sqrt(i), 1e-3 * (1 - i / 400))
        plots.redraw()
        (x0, x1), (y0, y1) = plots.loss_plot.viewRange()
        assert x1 >= i and y0 <= 2.0 / math.sqrt(i) <= y1  # everything so far is in view
        ranges.add((round(x0, 6), round(x1, 6), round(y0, 6), round(y1, 6)))
    assert len(ranges) < 50  # (one per step, 400, before)


def _run_started(steps_per_epoch, total_steps):
    return RunStarted(run_dir="r", device="cpu", device_name="CPU", parameters=1, train_size=1, test_size=1,
                      class_names=("a",), steps_per_epoch=steps_per_epoch, total_steps=total_steps, start_step=0,
                      start_epoch=0)


def test_the_epoch_axis_of_a_live_run_moves_in_round_jumps_and_stops_at_its_last_epoch(plots, qtbot):
    # A run of one-second epochs redraws at each epoch's end; an axis that grew every epoch was rebuilt each time.
    plots.resize(800, 500)
    plots.show()
    qtbot.waitExposed(plots)
    plots.on_event(_run_started(10, 300))  # 30 epochs
    ends = []
    for epoch in range(1, 31):
        plots.add_epoch(epoch, 10 * epoch, 1.0, 0.5 + epoch / 100, 0.5)
        plots.redraw()
        (x0, x1), _ = plots.acc_plot.viewRange()
        assert x1 >= epoch  # the newest epoch is in view
        ends.append(round(x1, 6))
    assert len(set(ends)) <= 14  # (30 before: one per epoch)
    assert ends[-1] < 30 * 1.08  # and not beyond the run's 30 epochs


def test_a_live_run_is_drawn_once_a_second_and_its_end_at_once(plots, qtbot):
    # The training thread waits while the window paints (PySide holds Python's lock), so a live run is drawn
    # at most once a second however often its steps arrive; its last points are drawn as it finishes.
    plots.on_event(_run_started(100, 1000))
    plots.on_event(Step(epoch=1, step=1, total_steps=1000, loss=2.0, lr=1e-3, images_per_s=1.0, eta_s=1.0))
    qtbot.waitUntil(lambda: plots.raw_curve.getOriginalDataset()[0] is not None)  # the first points at once
    drawn = []
    plots.raw_curve.sigPlotChanged.connect(lambda *_: drawn.append(len(plots.raw_curve.getOriginalDataset()[0])))
    for step in range(2, 40):
        plots.on_event(Step(epoch=1, step=step, total_steps=1000, loss=2.0 / step, lr=1e-3, images_per_s=1.0,
                            eta_s=1.0))
        qtbot.wait(25)  # ~40 batches a second, for about a second
    assert len(drawn) <= 2
    plots.on_event(Finished(status="stopped", message="", best_val_acc=math.nan, best_epoch=0, epochs_done=0,
                            run_dir="r", model_path=""))
    assert len(plots.raw_curve.getOriginalDataset()[0]) == 39  # no wait: everything is on screen
    # Afterwards (a run loaded from its file, a zoom) the plots follow at once again.
    assert LIVE_REDRAW_MS >= 500 and plots._redraw_every_ms < LIVE_REDRAW_MS


def _one_epoch_run(plots, steps=1680):
    plots.resize(900, 600)
    plots.show()
    for i in range(1, steps + 1):
        plots.add_step(i, 2.3 * math.exp(-i / 500) + 0.1, 1e-3)
    plots.add_epoch(1, steps, 0.5, 0.8, 0.7)
    plots.redraw()


def test_a_one_epoch_runs_axes_follow_its_data(plots, qtbot):
    _one_epoch_run(plots)
    qtbot.waitExposed(plots)
    (x0, x1), _ = plots.loss_plot.viewRange()
    assert 1680 <= x1 < 1680 * 1.08  # not out to 2000
    # Zooming out the accuracy plot (wheel, or a misfit auto-range) never leaves 0–100 % or goes before epoch 0.
    plots.acc_plot.getViewBox().scaleBy((30, 30))
    (ax0, ax1), (ay0, ay1) = plots.acc_plot.viewRange()
    assert ax0 >= 0 and -0.06 <= ay0 and ay1 <= 1.06


def test_legends_sit_beside_the_curves_not_over_them(plots, qtbot):
    _one_epoch_run(plots)
    qtbot.waitExposed(plots)
    for plot in (plots.loss_plot, plots.acc_plot):
        legend = plot.legend.sceneBoundingRect()
        view = plot.getViewBox().sceneBoundingRect()
        assert legend.bottom() <= view.top() + 1, (legend, view)  # above the plotting area, in the title row


@pytest.mark.slow
def test_lines_keep_their_width_at_2x_scaling(tmp_path):
    import os
    import subprocess
    import sys

    code = (
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "from perceiver_gui.ui.plots import PlotsPanel\n"
        "p = PlotsPanel(); p.show(); app.processEvents()\n"
        "print(p.devicePixelRatioF(), p.smooth_curve.opts['pen'].widthF(), p.val_acc_curve.opts['pen'].widthF(),\n"
        "      flush=True)\n"
        "import os; os._exit(0)  # the numbers are out; skip tearing pyqtgraph down in a throwaway process\n"
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "QT_SCALE_FACTOR": "2"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    ratio, smooth, acc = map(float, done.stdout.split())
    assert ratio == 2.0 and smooth >= 4.0 and acc >= 3.0  # device pixels: twice the widths at 1×


def test_the_wheel_passing_over_the_smoothing_slider_leaves_it(plots):
    from tests.ui.helpers import turn_wheel

    plots.show()
    before = plots.smoothing.value()
    turn_wheel(plots.smoothing)
    assert plots.smoothing.value() == before


def test_the_star_marks_the_epoch_the_engine_saved_when_accuracies_tie(plots):
    """Validation accuracy ties between epochs 2 and 3; the engine keeps epoch 3 (its lower loss), and the
    star must say so, not the first epoch that reached the accuracy."""
    plots.add_epoch(1, 10, 0.9, 0.80, 0.7, is_best=True)
    plots.add_epoch(2, 20, 0.5, 0.95, 0.8, is_best=True)
    plots.add_epoch(3, 30, 0.4, 0.95, 0.9, is_best=True)
    plots.add_epoch(4, 40, 0.6, 0.95, 0.9, is_best=False)
    assert plots.best() == (3, 0.95)


def _typical_epochs(epochs: int, best: int, top: float) -> list[tuple[int, float, float]]:
    """(epoch, validation accuracy, training accuracy): a rise that flattens out, validation a little above
    training (augmentation), and the best validation epoch at `best`."""
    rows = []
    for e in range(1, epochs + 1):
        val = top * (1 - 0.75 * math.exp(-(e - 1) / (epochs / 4)))
        val = top if e == best else min(val, top - 0.004)
        rows.append((e, val, val - 0.03 * top))
    return rows


def _curve_in_scene(plots, curve, step_px: float = 1.0) -> list:
    """The scene points every pixel or so along a curve's line, where its pen draws."""
    from PySide6.QtCore import QPointF

    view = plots.acc_plot.getViewBox()
    xs, ys = curve.getData()
    points = [view.mapViewToScene(QPointF(float(x), float(y))) for x, y in zip(xs, ys, strict=True)]
    along = list(points)
    for a, b in zip(points, points[1:], strict=False):
        n = max(1, int(math.hypot(b.x() - a.x(), b.y() - a.y()) / step_px))
        along += [a + (b - a) * (i / n) for i in range(1, n)]
    return along


@pytest.mark.parametrize(("epochs", "best", "top"), [(12, 10, 0.95), (12, 12, 0.97), (20, 20, 0.45), (1, 1, 0.8)])
def test_the_best_epochs_label_keeps_clear_of_the_curves(plots, qtbot, epochs, best, top):
    plots.resize(900, 600)
    plots.show()
    qtbot.waitExposed(plots)
    for epoch, val, train in _typical_epochs(epochs, best, top):
        plots.add_epoch(epoch, 100 * epoch, 1.0 / epoch, val, train, is_best=epoch == best)
    plots.redraw()
    qtbot.wait(50)  # the views fit their new data, and the label finds its place
    plots.graphics.scene().prepareForPaint()
    label = plots.best_label
    assert label.isVisible() and f"best val {top:.1%}" in label.toPlainText()
    shown = label.textItem.sceneBoundingRect()
    assert plots.acc_plot.getViewBox().sceneBoundingRect().contains(shown)  # whole, not cut at the plot's edge
    for curve in (plots.val_acc_curve, plots.train_acc_curve, plots.best_marker):
        over = [p for p in _curve_in_scene(plots, curve) if shown.adjusted(-3, -3, 3, 3).contains(p)]
        assert not over, (curve.name() if hasattr(curve, "name") else "star", shown, over[:3])


def test_the_epoch_axis_ticks_whole_epochs_only(plots, qtbot):
    """During the first epochs the accuracy plot spans a fraction of an epoch around its one point; its
    ticks read 1, not 0.6, 0.8, 1.0, 1.2, 1.4."""
    _one_epoch_run(plots, steps=50)
    qtbot.waitExposed(plots)
    axis = plots.acc_plot.getAxis("bottom")
    (x0, x1), _ = plots.acc_plot.viewRange()
    assert x1 - x0 < 2  # the view is narrower than two epochs
    ticks = [v for _, values in axis.tickValues(x0, x1, axis.width()) for v in values]
    assert ticks and all(float(v).is_integer() for v in ticks), ticks


def test_the_accuracy_axis_reads_in_percent_like_the_text_beside_it(plots, qtbot):
    _one_epoch_run(plots, steps=50)
    qtbot.waitExposed(plots)
    axis = plots.acc_plot.getAxis("left")
    assert axis.tickStrings([0.2, 0.4, 0.8], 1.0, 0.2) == ["20%", "40%", "80%"]
    assert axis.tickStrings([0.95, 0.96], 1.0, 0.01) == ["95%", "96%"]
    assert axis.tickStrings([0.955], 1.0, 0.005) == ["95.5%"]
    assert plots.loss_plot.getAxis("left").tickStrings([0.5], 1.0, 0.5) == ["0.5"]  # the loss stays a number


def test_the_summary_in_a_narrow_pane_shows_its_start_and_the_rest_on_hover(plots, qtbot):
    # The Sweep tab's trial pane is ~370 px wide: the summary beside the controls was cut at its left edge
    # mid-word ("nce)"); it now shows how it starts, then "…", and the whole of it as the tooltip.
    plots.resize(380, 400)
    plots.show()
    qtbot.waitExposed(plots)
    for i in range(1, 201):
        plots.add_step(i, 2.0 / math.sqrt(i), 1e-3)
    plots.add_epoch(1, 100, 0.9, 0.62, 0.5, is_best=True)
    plots.add_epoch(2, 200, 0.8, 0.71, 0.6, is_best=True)
    plots.test_result = (2, 0.7)
    plots.redraw()
    whole = plots.info.text()
    assert whole.startswith("loss ") and whole.endswith("(the chosen model, once)")
    shown = plots.info.shown_text()
    assert shown.startswith("loss ") and shown.endswith("…") and len(shown) < len(whole)
    assert plots.info.fontMetrics().horizontalAdvance(shown) <= plots.info.contentsRect().width()
    assert plots.info.toolTip() == whole
    assert not plots.info.grab().isNull()  # it paints
    plots.resize(1400, 400)
    qtbot.waitUntil(lambda: plots.info.shown_text() == whole)  # wide enough: all of it


def test_the_best_epochs_label_in_a_narrow_plot_is_short_and_whole(plots, qtbot):
    # In the Sweep tab's trial pane the accuracy plot is ~150 px wide: "★ best val 71.0%, epoch 2" ran off its
    # left edge; there it reads "★ 71.0%" (the summary line above names the epoch), inside the plot.
    plots.resize(420, 420)
    plots.show()
    qtbot.waitExposed(plots)
    plots.add_epoch(1, 100, 0.9, 0.62, 0.5, is_best=True)
    plots.add_epoch(2, 200, 0.8, 0.71, 0.6, is_best=True)
    plots.redraw()
    view = plots.acc_plot.getViewBox()
    qtbot.waitUntil(lambda: plots.best_label.toPlainText() == "★ 71.0%")
    label = plots.best_label.mapRectToItem(view, plots.best_label.boundingRect())
    assert view.boundingRect().contains(label)
    plots.resize(1200, 600)
    qtbot.waitUntil(lambda: plots.best_label.toPlainText() == "★ best val 71.0%, epoch 2")
