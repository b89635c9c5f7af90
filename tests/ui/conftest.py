"""Fixtures for the UI tests: a main window whose settings and runs folder live in tmp_path, and
dialogs that record instead of blocking."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSettings, QThreadPool
from PySide6.QtWidgets import QMessageBox

from perceiver_gui.ui import _none_refcount, deferred, gui_gc

_none_refcount.apply()  # as run_app does: the tests make as many Qt calls as a long session


@pytest.fixture(scope="session", autouse=True)
def _garbage_in_the_gui_thread(qapp):
    """As run_app does: cyclic garbage (Qt wrappers of earlier tests among it) is collected in this thread,
    never in a worker, where destroying a QObject deadlocked with the GUI thread (see ui/gui_gc.py)."""
    import gc

    timer = gui_gc.collect_in_gui_thread(qapp)
    yield
    timer.stop()
    gc.enable()


@pytest.fixture(autouse=True)
def _collect_after_each_test():
    yield
    # A window's engine preload (a thread importing torch) must not run on into the next test, whose own
    # torch imports would race with it (see ui/deferred.wait_for_engine).
    deferred.wait_for_engine()
    gui_gc.collect()  # between tests no event loop runs the timer


@pytest.fixture
def settings(tmp_path):
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def dialogs(monkeypatch):
    """Every QMessageBox.critical/warning/question call, as (kind, title, text); questions answer Yes."""
    shown: list[tuple[str, str, str]] = []

    def record(kind, answer=QMessageBox.StandardButton.Ok):
        def show(parent, title, text, *args, **kwargs):
            shown.append((kind, title, text))
            return answer

        return staticmethod(show)

    monkeypatch.setattr(QMessageBox, "critical", record("critical"))
    monkeypatch.setattr(QMessageBox, "warning", record("warning"))
    monkeypatch.setattr(QMessageBox, "question", record("question", QMessageBox.StandardButton.Yes))
    return shown


@pytest.fixture
def make_window(qtbot, settings, tmp_path, dialogs):
    """Build main windows (runs under tmp_path); running workers are stopped before teardown."""
    from perceiver_gui.ui.main_window import MainWindow

    windows = []

    def make(**kwargs):
        kwargs.setdefault("runs_root", tmp_path / "runs")
        window = MainWindow(kwargs.pop("settings", settings), **kwargs)
        qtbot.addWidget(window)
        windows.append(window)
        return window

    yield make
    for window in windows:
        if window.runner.running:
            window.runner.stop()
            window.runner.wait(30000)
    # Let every worker thread (training, model loading, prediction) end before the widgets go.
    QThreadPool.globalInstance().waitForDone(30000)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A finished run of the tiny digits model (trained once per session), in its own runs folder."""
    from perceiver_gui.core.events import Finished
    from perceiver_gui.core.training import train
    from tests.ui.helpers import tiny_config

    run_dir = tmp_path_factory.mktemp("runs") / "tiny-run"
    events = list(train(tiny_config(**{"train.epochs": 3}), out_dir=run_dir))
    assert isinstance(events[-1], Finished) and events[-1].status == "completed", events[-1]
    return run_dir


@pytest.fixture(scope="session")
def series_run(tmp_path_factory):
    """A finished run of a tiny time series model on variable-length two-channel .ts files (trained once per
    session); the files are in run.parent.parent."""
    from tests.core.series_fixtures import train_series_run

    return train_series_run(tmp_path_factory.mktemp("series"))


@pytest.fixture(scope="session")
def sound_run(tmp_path_factory):
    """A finished run of a tiny sound model reading mel frames (the audio preset's input) of a folder of tones and
    noise in several formats (trained once per session); the folder is run.parent.parent / "sounds"."""
    from tests.core.sound_fixtures import train_sound_run

    return train_sound_run(tmp_path_factory.mktemp("sound"), "mel_frames", per_class=10)


@pytest.fixture(scope="session")
def points_run(tmp_path_factory):
    """A finished run of a tiny point cloud model on boxes, cones and spheres in every mesh and point list format
    (trained once per session, 2 epochs: it still makes mistakes); the folder is run.parent.parent / "shapes"."""
    from perceiver_gui.core.training import train
    from tests.core.test_points import points_config, points_folder

    root = tmp_path_factory.mktemp("points")
    cfg = points_config(points_folder(root / "shapes", per_class=8), **{
        "train.epochs": 2, "train.warmup_epochs": 0, "data.val_fraction": 0.3, "data.test_fraction": 0.1})
    run_dir = root / "runs" / "points"
    done = list(train(cfg, out_dir=run_dir))[-1]
    assert done.status == "completed", done.message
    return run_dir


@pytest.fixture
def panel(qtbot):
    """A classifier panel, torn down only after its workers are done."""
    from perceiver_gui.ui.classifier_panel import ClassifierPanel

    widget = ClassifierPanel(top_k=3)
    # Waited for before pytest-qt closes and deletes the panel: a worker that ends after that has no slot
    # left to tell it so, and `working` would stay true for good (a test ending on its last result raced this).
    qtbot.addWidget(widget, before_close_func=lambda w: qtbot.waitUntil(lambda: not w.working, timeout=30000))
    return widget
