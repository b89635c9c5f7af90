"""Training through the window: the real engine on the bundled digits, driven by the UI's worker."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from perceiver_gui.core import checkpoints
from perceiver_gui.core.events import EpochEnd, Finished, Log, RunStarted, Step
from tests.ui.helpers import tiny_config

pytestmark = pytest.mark.slow


def _finish(qtbot, window, timeout=60000):
    with qtbot.waitSignal(window.runner.stopped_running, timeout=timeout):
        pass


def test_an_invalid_value_disables_start_with_its_reason(make_window):
    window = make_window()
    window.form.set_config(tiny_config())
    assert window.training.start_action.isEnabled()
    dataset = window.form.field("data.dataset")
    dataset.setCurrentIndex(dataset.findData("folder"))  # a folder dataset without a folder
    assert not window.training.start_action.isEnabled()
    assert "Choose an image folder" in window.training.start_action.toolTip()
    assert "Choose an image folder" in window.training.status.text()
    window.form.field("data.folder").setText("/somewhere")
    assert window.training.start_action.isEnabled()


def test_a_short_run_updates_the_plots_and_saves_a_model(make_window, qtbot, tmp_path):
    window = make_window()
    window.form.set_config(tiny_config())
    finished = []
    window.runner.finished.connect(finished.append)
    window.training.start_action.trigger()
    assert window.training.state == "running" and not window.training.start_action.isEnabled()
    assert not window.form.field("train.lr").isEnabled()  # settings are fixed while training
    _finish(qtbot, window)

    (event,) = finished
    assert event.status == "completed", event.message
    assert Path(event.model_path).is_file() and Path(event.run_dir).parent == tmp_path / "runs"
    assert checkpoints.read_meta(event.model_path).class_names[:2] == ("0", "1")
    steps = 2 * 12  # 808 training images (898 less 90 for validation) in batches of 64, twice
    assert len(window.plots.raw_curve.getOriginalDataset()[0]) == steps
    assert len(window.plots.val_acc_curve.getOriginalDataset()[0]) == 2
    assert window.plots.best() is not None
    # Every accuracy says its split: validation per epoch, test once for the model chosen.
    assert "validation accuracy" in window.training.log.toPlainText()
    assert "test accuracy" in window.training.status.text() and "validation accuracy" in window.training.status.text()
    assert f"test {event.test_acc:.1%}" in window.plots.acc_plot.titleLabel.text
    assert window.training.progress.value() == steps
    assert "Finished 2 epochs" in window.training.status.text()
    assert "Epoch 2" in window.training.log.toPlainText()
    assert window.training.start_action.isEnabled() and window.form.field("train.lr").isEnabled()
    # The classifier picks up the model just trained, and the runs list shows the run.
    qtbot.waitUntil(lambda: window.classifier.predictor is not None, timeout=30000)
    assert window.classifier.model_path == event.model_path
    assert "tiny" in window.runs.run_names()


def test_stop_mid_run_leaves_a_loadable_model_and_can_resume(make_window, qtbot):
    window = make_window()
    window.form.set_config(tiny_config(**{"train.epochs": 300, "train.batch_size": 8}))
    finished = []
    window.runner.finished.connect(finished.append)
    window.training.start_action.trigger()
    qtbot.waitUntil(lambda: window.plots.loss_raw.n >= 5, timeout=60000)
    window.training.stop_action.trigger()
    assert window.training.state == "stopping"
    _finish(qtbot, window)

    (event,) = finished
    assert event.status == "stopped"
    state, meta = checkpoints.load_model(event.model_path)
    assert state and meta.config.name == "tiny"
    assert window.training.resume_action.isEnabled()

    # Resume continues the same run, and the form shows that run's config again; stop it right away.
    window.form.set_config(tiny_config(**{"name": "something else"}))
    window.training.resume_action.trigger()
    assert window.form.config().name == "tiny" and window.form.config().train.epochs == 300
    qtbot.waitUntil(lambda: window.training.progress.value() > 0 and window.plots.loss_raw.n > 5, timeout=60000)
    window.runner.stop()
    _finish(qtbot, window)
    assert finished[-1].run_dir == event.run_dir and finished[-1].status == "stopped"
    qtbot.waitUntil(lambda: not window.classifier.working, timeout=30000)


def test_pause_and_continue(make_window, qtbot):
    window = make_window()
    window.form.set_config(tiny_config(**{"train.epochs": 300, "train.batch_size": 8}))
    window.training.start_action.trigger()
    qtbot.waitUntil(lambda: window.plots.loss_raw.n >= 2, timeout=60000)
    window.training.pause_action.trigger()
    assert window.training.state == "paused" and window.training.pause_action.text() == "Continue"
    qtbot.wait(300)
    seen = window.plots.loss_raw.n
    qtbot.wait(300)
    assert window.plots.loss_raw.n <= seen + 1  # at most the step that was in flight
    window.training.pause_action.trigger()
    qtbot.waitUntil(lambda: window.plots.loss_raw.n > seen + 2, timeout=30000)
    window.training.stop_action.trigger()
    _finish(qtbot, window)


def test_an_exception_in_the_worker_shows_a_dialog_and_the_window_survives(make_window, qtbot, dialogs, monkeypatch):
    from perceiver_gui.core import training

    def broken(cfg, **kwargs):
        yield Log(message="about to fail")
        raise RuntimeError("CUDA out of memory while allocating 12 GiB")

    monkeypatch.setattr(training, "train", broken)
    window = make_window()
    window.form.set_config(tiny_config())
    window.training.start_action.trigger()
    _finish(qtbot, window)
    assert [d[0] for d in dialogs] == ["critical"]
    assert "CUDA out of memory while allocating 12 GiB" in dialogs[0][2]
    # The window is back to idle and usable: Start is enabled again and the settings can be edited.
    assert window.training.state == "idle" and window.training.start_action.isEnabled()
    assert window.form.field("train.lr").isEnabled()
    assert "about to fail" in window.training.log.toPlainText()


def test_a_failed_run_shows_the_engines_sentence(make_window, qtbot, dialogs, tmp_path):
    window = make_window()
    window.form.set_config(tiny_config(**{"data.dataset": "folder", "data.folder": str(tmp_path / "missing")}))
    finished = []
    window.runner.finished.connect(finished.append)
    window.training.start_action.trigger()
    _finish(qtbot, window)
    assert finished[0].status == "failed"
    assert dialogs == [("critical", "Training stopped", finished[0].message)]
    assert "does not exist" in finished[0].message


def test_closing_during_training_asks_then_stops_and_saves(make_window, qtbot, dialogs):
    window = make_window()
    window.show()
    window.form.set_config(tiny_config(**{"train.epochs": 300, "train.batch_size": 8}))
    finished: list[Finished] = []
    window.runner.finished.connect(finished.append)
    window.training.start_action.trigger()
    qtbot.waitUntil(lambda: window.plots.loss_raw.n >= 3, timeout=60000)
    window.close()
    assert dialogs[0][0] == "question"
    assert window.isVisible()  # still saving
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=60000)
    assert finished[0].status == "stopped" and Path(finished[0].model_path).is_file()


def test_settings_and_layout_are_remembered(make_window, settings):
    first = make_window()
    cfg = tiny_config(**{"name": "remember me", "train.lr": 0.0123})
    first.form.set_config(cfg)
    first.tabs.setCurrentIndex(2)
    first.close()
    second = make_window(settings=settings)
    assert second.form.config() == cfg
    assert second.tabs.currentIndex() == 2


def test_pause_pressed_before_the_engine_has_loaded_holds_the_run(make_window, qtbot):
    window = make_window()
    window.form.set_config(tiny_config(**{"train.epochs": 300, "train.batch_size": 8}))
    window.training.start_action.trigger()
    window.training.pause_action.trigger()  # torch and the dataset are still loading in the worker
    assert window.training.state == "paused"
    qtbot.wait(1500)
    assert window.plots.loss_raw.n == 0
    window.training.stop_action.trigger()
    _finish(qtbot, window)
    assert window.training.state == "idle"


def _panel(qtbot):
    from PySide6.QtWidgets import QWidget

    from perceiver_gui.ui.training_panel import TrainingPanel

    panel = TrainingPanel(QWidget())
    qtbot.addWidget(panel)
    return panel


def _epoch_end(epoch: int = 1) -> EpochEnd:
    return EpochEnd(epoch=epoch, step=10 * epoch, train_loss=1.0, train_acc=0.5, val_loss=1.1, val_acc=0.4,
                    per_class_acc=(0.4,), confusion=((1,),), elapsed_s=3.0, is_best=True)


def test_paused_stays_on_screen_when_an_epoch_ends_meanwhile(qtbot):
    panel = _panel(qtbot)
    panel.set_state("running")
    panel.set_state("paused")
    panel.on_event(_epoch_end())  # the epoch that was ending when Pause was pressed
    assert panel.status.text().startswith("Paused")
    assert "Epoch 1" in panel.log.toPlainText()  # the epoch's numbers are still logged


def test_speed_and_eta_leave_the_screen_when_the_run_ends(qtbot):
    panel = _panel(qtbot)
    panel.set_state("running")
    panel.on_event(Step(epoch=1, step=5, total_steps=100, loss=1.0, lr=0.01, images_per_s=812.0, eta_s=40.0))
    qtbot.waitUntil(lambda: "812" in panel.speed_label.text() and "40 s" in panel.eta_label.text())
    panel.on_event(Finished(status="stopped", message="Stopped after 5 steps.", best_val_acc=math.nan, best_epoch=0,
                            epochs_done=0, run_dir="r", model_path=""))
    panel.set_state("idle")
    assert "images/s" not in panel.speed_label.text() and "left" not in panel.eta_label.text()


def test_a_run_wakes_the_window_a_few_times_a_second_not_at_every_step(make_window, qtbot, monkeypatch):
    """Every step reaches the plots, but the redraws and progress updates that compete with training for
    the GIL come a few times a second (and at each epoch's end), not once or twice per step."""
    import time

    from PySide6.QtWidgets import QProgressBar

    from perceiver_gui.ui.plots import PlotsPanel

    redraws, progress = [], []
    original_redraw, original_set = PlotsPanel.redraw, QProgressBar.setValue
    monkeypatch.setattr(PlotsPanel, "redraw", lambda self: (redraws.append(1), original_redraw(self))[1])
    monkeypatch.setattr(QProgressBar, "setValue", lambda self, v: (progress.append(v), original_set(self, v))[1])
    window = make_window()
    window.form.set_config(tiny_config(**{"train.epochs": 3, "train.batch_size": 8}))
    steps = []
    window.runner.event.connect(lambda e: steps.append(e) if isinstance(e, Step) else None)
    assert window.plots is not None  # made before the clock starts
    redraws.clear()
    t0 = time.perf_counter()
    window.training.start_action.trigger()
    _finish(qtbot, window)
    seconds = time.perf_counter() - t0

    assert len(steps) == 3 * 101 == len(window.plots.raw_curve.getOriginalDataset()[0])  # 808 training images / 8, thrice
    allowed = 3 * seconds + 2 * 3 + 4  # 2 a second, each epoch's end, start and finish
    assert len(redraws) <= allowed, f"{len(redraws)} plot redraws in {seconds:.1f} s"
    assert len(progress) <= allowed, f"{len(progress)} progress updates in {seconds:.1f} s"
    assert window.training.progress.value() == 3 * 101


def test_after_a_restart_the_stopped_run_can_be_resumed_and_the_classifier_reopens_its_model(
        make_window, qtbot, settings):
    first = make_window()
    first.form.set_config(tiny_config(**{"name": "overnight", "train.epochs": 300, "train.batch_size": 8}))
    finished = []
    first.runner.finished.connect(finished.append)
    first.training.start_action.trigger()
    qtbot.waitUntil(lambda: first.plots.loss_raw.n >= 5, timeout=60000)
    first.training.stop_action.trigger()
    _finish(qtbot, first)
    qtbot.waitUntil(lambda: first.classifier.model_path == finished[0].model_path, timeout=30000)
    first.close()  # the app quits

    second = make_window(settings=settings)
    second.show()
    qtbot.waitExposed(second)
    assert second.training.resume_action.isEnabled()
    assert "overnight" in second.training.resume_action.toolTip()
    # The model comes back once the app has loaded what it loads after the window (plots, then torch).
    qtbot.waitUntil(lambda: second.classifier.model_path == finished[0].model_path, timeout=60000)
    assert "overnight" in second.classifier.model_info.text()

    started = []
    second.runner.event.connect(lambda e: started.append(e) if hasattr(e, "start_step") else None)
    second.training.resume_action.trigger()
    qtbot.waitUntil(lambda: bool(started), timeout=60000)
    second.runner.stop()
    _finish(qtbot, second)
    assert started[0].run_dir == finished[0].run_dir and started[0].start_step > 0
    qtbot.waitUntil(lambda: not second.classifier.working, timeout=30000)


def test_no_row_of_dashes_beside_the_device_before_or_after_a_run(qtbot):
    """Before a run the line read "Device: —   —   —"; speed and time left show only while they mean something."""
    panel = _panel(qtbot)
    assert panel.speed_label.text() == "" and panel.eta_label.text() == ""
    panel.set_state("running")
    panel.on_event(Step(epoch=1, step=5, total_steps=100, loss=1.0, lr=0.01, images_per_s=812.0, eta_s=40.0))
    qtbot.waitUntil(lambda: "812" in panel.speed_label.text())
    panel.on_event(Finished(status="completed", message="Finished 1 epoch.", best_val_acc=0.9, best_epoch=1,
                            epochs_done=1, run_dir="r", model_path=""))
    assert panel.speed_label.text() == "" and panel.eta_label.text() == ""


def test_the_progress_text_stays_clear_of_the_bar_s_filled_part(qtbot):
    """Fusion centres a bar's text over the whole bar, whatever its alignment, so the filled part's edge ran
    into the letters ("Stopped · Epoch 4/30 …" touched it). The text now sits under the bar, on the panel."""
    from PySide6.QtCore import QPoint, QRect

    panel = _panel(qtbot)
    panel.resize(900, 300)
    panel.show()
    panel.set_state("running")
    panel.on_event(RunStarted(run_dir="r", device="cpu", device_name="CPU", parameters=10, train_size=800,
                              test_size=2, class_names=("a", "b"), steps_per_epoch=50, total_steps=1500,
                              start_step=0, start_epoch=0, val_size=2))
    panel.on_event(Step(epoch=4, step=184, total_steps=1500, loss=1.0, lr=0.01, images_per_s=812.0, eta_s=40.0))
    qtbot.waitUntil(lambda: panel.progress.value() == 184)
    assert not panel.progress.isTextVisible()
    assert panel.progress_label.text() == "Epoch 4/30 · step 184/1,500 · 12%"

    def on_panel(widget):
        return QRect(widget.mapTo(panel, QPoint(0, 0)), widget.size())

    assert panel.progress_label.isVisible()
    assert not on_panel(panel.progress_label).intersects(on_panel(panel.progress))
    panel.on_event(Finished(status="stopped", message="Stopped.", best_val_acc=math.nan, best_epoch=0,
                            epochs_done=3, run_dir="r", model_path=""))
    assert panel.progress_label.text() == "Stopped · Epoch 4/30 · step 184/1,500 · 12%"



def test_a_progress_update_repaints_the_progress_row_only(make_window, qtbot):
    """The training thread waits while the window paints. A speed or progress text of a new width made the
    window lay itself out again, repainting the buttons and everything beside them at every update (twice a
    second); the texts now fit in a size held for the run, so only they repaint. Each text still shows whole."""
    from PySide6.QtCore import QEvent, QObject
    from PySide6.QtWidgets import QApplication, QToolButton

    window = make_window()
    window.resize(1280, 800)
    window.show()
    qtbot.waitExposed(window)
    qtbot.waitUntil(lambda: window._plots is not None)  # the plots, loaded after the first paint, are in place
    panel = window.training
    panel.set_state("running")
    panel.on_event(RunStarted(run_dir="r", device="cpu", device_name="CPU", parameters=10, train_size=800,
                              test_size=2, class_names=("a", "b"), steps_per_epoch=50, total_steps=1500,
                              start_step=0, start_epoch=0, val_size=2))
    qtbot.wait(500)  # the plots' own layout settles
    painted = []

    class Painted(QObject):
        def eventFilter(self, obj, event):  # noqa: N802 (Qt override)
            if event.type() == QEvent.Type.Paint and isinstance(obj, QToolButton) and obj.window() is window:
                painted.append(obj.text())
            return False

    spy = Painted()
    QApplication.instance().installEventFilter(spy)
    try:
        for i, (speed, eta) in enumerate(((9.0, 5.0), (812.0, 4000.0), (123456.0, 35.0), (1.5, 600.0)), start=1):
            panel.on_event(Step(epoch=i, step=50 * i - 7, total_steps=1500, loss=1.0, lr=0.01, images_per_s=speed,
                                eta_s=eta))
            qtbot.waitUntil(lambda i=i: panel.progress.value() == 50 * i - 7)
            qtbot.wait(30)
            for label in (panel.progress_label, panel.speed_label, panel.eta_label):
                assert label.fontMetrics().horizontalAdvance(label.text()) <= label.contentsRect().width(), label.text()
    finally:
        QApplication.instance().removeEventFilter(spy)
    assert painted == []
