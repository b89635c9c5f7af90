from __future__ import annotations

import math

import numpy as np
import pytest

from perceiver_gui.core.events import EpochEnd, Step
from perceiver_gui.ui.plots import PlotsPanel, ema


@pytest.fixture
def plots(qtbot):
    panel = PlotsPanel()
    qtbot.addWidget(panel)
    return panel


def _epoch(epoch, step, acc, loss=1.0):
    return EpochEnd(epoch, step, 1.0, 0.5, loss, acc, (), (), 1.0, False)


def test_steps_and_epochs_reach_the_curves_and_nan_is_left_out(plots, qtbot):
    for i in range(1, 2001):
        loss = math.nan if i == 1500 else 2.0 / math.sqrt(i)
        plots.on_event(Step(1, i, 2000, loss, 1e-3 * (1 - i / 2000), 100.0, 1.0))
    plots.on_event(_epoch(1, 1000, 0.6))
    plots.on_event(_epoch(2, 2000, 0.8, loss=0.7))
    plots.on_event(_epoch(3, 3000, 0.7))
    # Redraws are throttled: the last state arrives shortly after the last event.
    qtbot.waitUntil(lambda: plots.test_acc_curve.getData()[0] is not None and len(plots.test_acc_curve.getData()[0]) == 3)
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


def test_load_metrics_records_with_nulls(plots):
    plots.load_metrics([
        {"type": "step", "epoch": 1, "step": 1, "loss": 2.0, "lr": 0.1},
        {"type": "step", "epoch": 1, "step": 2, "loss": None, "lr": 0.1},
        {"type": "epoch", "epoch": 1, "step": 2, "train_loss": 1.0, "train_acc": 0.5, "test_loss": 1.1, "test_acc": 0.4},
        {"type": "something-new"},
    ])
    assert len(plots.raw_curve.getOriginalDataset()[0]) == 1
    assert plots.best() == (1, 0.4)
