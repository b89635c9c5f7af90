"""The run lifecycle on its own: what Resume offers, what the Mistakes tab reads, and closing only when idle."""

from __future__ import annotations

import pytest

from perceiver_gui.core.control import RunControl
from perceiver_gui.core.events import Finished, RunStarted, Step
from perceiver_gui.ui.lifecycle import RunLifecycle


class App:
    """What the lifecycle asks of the window: is a run training, is an export writing, does the user agree."""

    def __init__(self, qtbot, *, agree: bool = True):
        self.running = False
        self.exporting = False
        self.agree = agree
        self.asked = 0
        self.lifecycle = RunLifecycle(running=lambda: self.running, exporting=lambda: self.exporting,
                                      confirm_quit=self._confirm)
        self.signals: list[tuple[str, str]] = []
        for name in ("resumable_changed", "stop_requested", "close_ready", "idle", "message"):
            getattr(self.lifecycle, name).connect(lambda *args, name=name: self.signals.append((name, *args)))

    def _confirm(self) -> bool:
        self.asked += 1
        return self.agree

    def said(self, name: str) -> list[tuple]:
        return [s[1:] for s in self.signals if s[0] == name]


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """A run stopped by the user after a few steps, as its folder is left on disk (resumable)."""
    from perceiver_gui.core.training import train
    from tests.ui.helpers import tiny_config

    control = RunControl()
    run_dir = tmp_path_factory.mktemp("runs") / "stopped"
    for event in train(tiny_config(**{"train.epochs": 50}), out_dir=run_dir, control=control):
        if isinstance(event, Step) and event.step >= 3:
            control.stop()
    assert isinstance(event, Finished) and event.status == "stopped", event
    return run_dir


def _started(run_dir: str) -> RunStarted:
    return RunStarted(run_dir=run_dir, device="cpu", device_name="CPU", parameters=1, train_size=1, test_size=1,
                      class_names=("a",), steps_per_epoch=10, total_steps=10, start_step=0, start_epoch=0)


def _finished(status: str, run_dir: str = "runs/r") -> Finished:
    return Finished(status=status, message="", best_val_acc=0.5, best_epoch=1, epochs_done=1, run_dir=run_dir,
                    model_path="")


def test_closing_while_training_asks_stops_the_run_waits_and_then_closes(qtbot):
    app = App(qtbot)
    app.running = True
    assert not app.lifecycle.may_close()
    assert app.asked == 1 and app.said("stop_requested") == [()]
    assert not app.lifecycle.may_close()  # closed again while the run saves: no second question, no second stop
    assert app.asked == 1 and app.said("stop_requested") == [()] and app.said("close_ready") == []
    app.running = False
    app.lifecycle.on_event(_finished("stopped"))
    app.lifecycle.stopped_running()
    assert app.said("close_ready") == [()] and app.said("idle") == []  # no queued run starts as the app quits
    assert app.lifecycle.may_close()


def test_declining_to_quit_keeps_training_and_the_window(qtbot):
    app = App(qtbot, agree=False)
    app.running = True
    assert not app.lifecycle.may_close()
    assert app.asked == 1 and app.said("stop_requested") == []
    app.running = False
    app.lifecycle.stopped_running()  # the run ends later on its own
    assert app.said("close_ready") == [] and app.said("idle") == [()]


def test_closing_during_an_export_waits_for_its_file(qtbot):
    app = App(qtbot)
    app.exporting = True
    assert not app.lifecycle.may_close()
    assert app.said("message") == [("Closing once the export is written…",)] and app.asked == 0
    app.exporting = False
    app.lifecycle.export_finished()
    assert app.said("close_ready") == [()] and app.lifecycle.may_close()


def test_an_export_that_ends_without_a_close_asked_keeps_the_window(qtbot):
    app = App(qtbot)
    app.lifecycle.export_finished()
    assert app.said("close_ready") == []


def test_a_stopped_run_is_offered_for_resuming_and_one_that_completed_is_not(qtbot):
    app = App(qtbot)
    app.lifecycle.began()
    app.lifecycle.on_event(_started("runs/a"))
    app.lifecycle.on_event(_finished("stopped", "runs/a"))
    app.lifecycle.stopped_running()
    assert app.said("resumable_changed") == [("",), ("runs/a",)]  # hidden while it trained, offered once done
    app.lifecycle.began()
    app.lifecycle.on_event(_finished("completed", "runs/a"))  # resumed, and ran to its end
    app.lifecycle.stopped_running()
    assert app.lifecycle.last_stopped_run == "" and app.said("resumable_changed")[-1] == ("",)


def test_after_a_restart_the_last_stopped_run_is_resumable_while_it_still_can_be(qtbot, stopped_run, trained_run,
                                                                                   tmp_path):
    before = App(qtbot)
    before.lifecycle.on_event(_finished("stopped", str(stopped_run)))
    saved = before.lifecycle.last_stopped_run  # what the window writes to its settings when it closes

    after = App(qtbot)
    after.lifecycle.restore(saved)
    assert after.lifecycle.last_stopped_run == str(stopped_run)
    assert after.said("resumable_changed") == [(str(stopped_run),)]
    for gone in (str(trained_run), str(tmp_path / "deleted"), ""):  # completed since, deleted, or none saved
        app = App(qtbot)
        app.lifecycle.restore(gone)
        assert app.lifecycle.last_stopped_run == "" and app.said("resumable_changed") == [("",)], gone


def test_the_mistakes_tab_reads_each_pick_once_and_never_while_training(qtbot):
    app = App(qtbot)
    assert app.lifecycle.mistakes_should_show("runs/a")
    assert not app.lifecycle.mistakes_should_show("runs/a")  # opened again: a run trained since stays on show
    app.lifecycle.runs_picked()  # picked (again) in the Runs tab
    assert app.lifecycle.mistakes_should_show("runs/a")
    app.lifecycle.runs_picked()
    app.running = True
    assert not app.lifecycle.mistakes_should_show("runs/b")  # the live run is on show
    app.running = False
    assert app.lifecycle.mistakes_should_show("runs/b")


def test_exports_act_on_the_one_run_picked_else_the_run_trained_last(qtbot):
    app = App(qtbot)
    assert app.lifecycle.run_to_export([]) == ""
    app.lifecycle.on_event(_started("runs/live"))
    assert app.lifecycle.run_to_export([]) == "runs/live"
    assert app.lifecycle.run_to_export(["runs/a"]) == "runs/a"
    assert app.lifecycle.run_to_export(["runs/a", "runs/b"]) == ""  # not silently another run than those in view
