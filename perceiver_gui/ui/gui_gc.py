"""Python's cyclic garbage is collected in the GUI thread only.

Python collects cycles in whichever thread happens to allocate when a threshold is crossed. When that is a
worker (training, ONNX export, predictions) and the garbage holds a Qt wrapper, the QObject is destroyed
in the worker: its destructor takes the object's Qt mutex and then waits for the GIL, while the GUI thread,
holding the GIL, waits for that mutex — a deadlock, seen here twice in the ONNX export test (py-spy --native:
the export thread in QObject::~QObject → Shiboken::GilState::acquire, the GUI thread in
QObject::~QObject → QBasicMutex::lockInternal). pyqtgraph documents the same hazard and answers it the same
way (pyqtgraph.util.garbage_collector); this is its idea in a few lines, so that the app does not import
pyqtgraph before its first paint (ui/deferred.py).

A full collection visits every tracked object: once torch, numpy, Qt and pyqtgraph are imported that is
~290,000 objects and 0.3–0.6 s on this 2-core machine, all of it holding the GIL, so training and the
window both stop. The objects the imports made live as long as the app, so once the engine is loaded they
are moved out of the collector's sight (`freeze_imports`, gc.freeze: "useful … to avoid costly full
collections"); a full pass then visits only what the app made since.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

__all__ = ["collect", "collect_in_gui_thread", "freeze_imports"]

INTERVAL_MS = 500  # often enough that garbage never piles up; a pass with nothing to do costs microseconds


def collect_in_gui_thread(parent: QObject) -> QTimer:
    """Turn off automatic collection and collect on a timer owned by `parent` (a GUI-thread object, e.g.
    the QApplication), with the same generation thresholds the automatic collector uses."""
    thresholds = gc.get_threshold()
    gc.disable()
    timer = QTimer(parent)
    timer.setInterval(INTERVAL_MS)
    timer.timeout.connect(lambda: collect(thresholds))
    timer.start()
    return timer


def freeze_imports() -> None:
    """Leave everything alive now out of later collections (the imported modules and the window); called
    once the engine is imported. It collects nothing, so it is safe in any thread."""
    gc.freeze()


def collect(thresholds: tuple[int, ...] = (700, 10, 10)) -> None:
    """One pass as the automatic collector would make it: the youngest generation, and the older ones when
    their counts are due. Call it in the GUI thread."""
    counts = gc.get_count()
    if counts[0] > thresholds[0]:
        generation = 2 if counts[2] > thresholds[2] else 1 if counts[1] > thresholds[1] else 0
        gc.collect(generation)
