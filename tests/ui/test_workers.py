"""The one way the panels run work in a thread: after the engine preload, never beside it."""

from __future__ import annotations

import threading
import time

from PySide6.QtCore import QObject, Signal

from perceiver_gui.ui import deferred
from perceiver_gui.ui.workers import start_worker


class _Sink(QObject):
    got = Signal(object)

    def keep(self, value) -> None:  # a bound slot, so it runs in the GUI thread
        self.got.emit(value)


def _slow_preload(monkeypatch, seconds: float) -> threading.Event:
    done = threading.Event()

    def importing() -> None:
        time.sleep(seconds)
        done.set()

    thread = threading.Thread(target=importing, daemon=True)
    monkeypatch.setattr(deferred, "_preloading", thread)
    thread.start()
    return done


def test_a_worker_waits_for_the_engine_preload_before_it_runs(qtbot, monkeypatch):
    # Two threads importing torch at once race in its operator registry; a worker started while the
    # window still preloads the engine (a run started, or a model dropped, in the first seconds) waits.
    done = _slow_preload(monkeypatch, 0.4)
    sink = _Sink()
    with qtbot.waitSignal(sink.got, timeout=5000) as got:
        start_worker(done.is_set, returned=sink.keep)
    assert got.args == [True]


def test_a_generator_worker_waits_too_and_still_yields(qtbot, monkeypatch):
    done = _slow_preload(monkeypatch, 0.4)
    sink = _Sink()

    def steps():
        yield done.is_set()
        yield "second"

    seen = []
    sink.got.connect(seen.append)
    worker = start_worker(steps, yielded=sink.keep)
    qtbot.waitUntil(lambda: len(seen) == 2, timeout=5000)
    assert seen == [True, "second"]
    qtbot.waitUntil(lambda: not worker.is_running, timeout=5000)
