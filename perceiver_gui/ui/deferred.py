"""What the UI loads after the window is up, and the one way it loads anything late.

numpy and pyqtgraph take about half a second to import here (pyqtgraph wraps every Qt class, which
makes PySide6 build ~600 enum types), which is half of the launch budget. The window does not need
them to be usable — the form, the classifier and the runs list are plain Qt — so it shows first and
imports them afterwards, in the GUI thread, in slices of ~20 ms between events. The longest slices
are numpy's and pyqtgraph's own module code (~0.15–0.2 s each); a click is handled between slices.

Not in a thread: PySide6 builds its Python types lazily and that is not safe to do from two threads
at once (shiboken's type map; see PYSIDE lazy-init crashes), and pyqtgraph's import does exactly that.

`import_plotting()` does all of it at once, for code that needs a plot now (a run starts, a test).

The training engine (torch, ~1–3 s of imports that hold the GIL in long stretches) is imported next, in
a background thread (`preload_engine`), so that pressing Start does not freeze the window while torch
loads: the stall happens once, while the user is still reading the form. torch has no Qt types, so a
thread is safe for it.

This module is also the one place where the UI imports anything heavy later than at launch. A UI module
names what it needs lazily once, at its top, with `module(name)`:
- reading an attribute of it imports the module then, in the thread that reads it: in the GUI thread for a
  dialog or a plot (`plotting=True` loads the plotting stack first, as above), or a core module that the
  work before has loaded;
- `.job(function)` names a function to run in a worker (`ui/workers.start_worker`): its module, with torch,
  numpy or PIL, is imported in that worker, after the engine preload, never in the GUI thread. The work of
  each panel lives in such a module under `ui/jobs/`, which imports what it needs at its top.
Light modules are imported at the top as usual; no UI module imports anything but the standard library
inside a function (tests/ui/test_lazy_boundary.py checks it).
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QEvent, QObject, QTimer

from perceiver_gui.ui import gui_gc

if TYPE_CHECKING:
    from PySide6.QtWidgets import QWidget

__all__ = ["Job", "LazyModule", "after_first_paint", "engine_ready", "import_plotting", "load_step_by_step", "module",
           "preload_engine", "wait_for_engine"]

ENGINE = "perceiver_gui.core.training"  # imports torch, the data and model code
# What a run's first steps import besides: torch.optim's first step imports torch._dynamo (~2 s holding
# the GIL, torch/_compile.py), and the optional TensorBoard writer its protobufs (core/tensorboard_log.ScalarLog).
FIRST_STEPS = ("torch._dynamo", "tensorboard.compat.proto.event_pb2", "tensorboard.compat.proto.summary_pb2",
               "tensorboard.summary.writer.record_writer")
_preloading: threading.Thread | None = None
_starting = threading.Lock()  # preload_engine may be called from the GUI thread and a worker at once

SLICE_S = 0.02  # work for at most about this long per event-loop turn (a unit may run over)


def module(name: str, *, plotting: bool = False) -> LazyModule:
    """The module `name`, imported when one of its attributes is first read (with `plotting`, after the
    plotting stack: for modules of plots and dialogs that use pyqtgraph, read in the GUI thread only)."""
    return LazyModule(name, plotting)


class LazyModule:
    """A module to import later (see `module`); `job(function)` names one of its functions for a worker."""

    __slots__ = ("_loaded", "_name", "_plotting")

    def __init__(self, name: str, plotting: bool = False):
        self._name = name
        self._plotting = plotting
        self._loaded: ModuleType | None = None

    def __getattr__(self, attribute: str) -> Any:
        if self._loaded is None:
            if self._plotting:
                import_plotting()
            self._loaded = importlib.import_module(self._name)
        return getattr(self._loaded, attribute)

    def job(self, function: str) -> Job:
        """The module's `function`, for `start_worker`: the module is imported in the worker that runs it."""
        return Job(self._name, function)

    def __repr__(self) -> str:
        return f"<module {self._name!r}, imported on first use>"


@dataclass(frozen=True, slots=True)
class Job:
    """A function of a module that is not imported yet; `load` imports it (in the worker thread)."""

    module: str
    function: str

    def load(self) -> Callable[..., Any]:
        return getattr(importlib.import_module(self.module), self.function)


def import_plotting() -> None:
    """Import everything the plots need, now (a no-op once done)."""
    for _ in _units():
        pass


def load_step_by_step(context: QObject, done: Callable[[], object]) -> None:
    """Do the imports in short slices between events, then call `done`, in the GUI thread; nothing
    more happens once `context` (the window that asked) is gone."""
    units = _units()

    def work() -> None:
        deadline = time.perf_counter() + SLICE_S
        for _ in units:
            if time.perf_counter() >= deadline:
                QTimer.singleShot(0, context, work)
                return
        done()

    QTimer.singleShot(0, context, work)


def preload_engine() -> None:
    """Start importing the training engine in a background thread (once; nothing if it is loaded). Called
    in the GUI thread once the plots are in, and by `wait_for_engine` from a worker started before that."""
    global _preloading
    with _starting:
        if _preloading is None and not all(name in sys.modules for name in (ENGINE, FIRST_STEPS[0])):
            # daemon: quitting the app does not wait for an import
            _preloading = threading.Thread(target=_import_engine, name="preload-engine", daemon=True)
            _preloading.start()


def _import_engine() -> None:
    importlib.import_module(ENGINE)
    # torch's CPU threads for what the window computes (predictions, attention, the Mistakes tab): all cores but
    # one, so that the window keeps a core; a run sets its own (train.threads) when it starts.
    importlib.import_module("perceiver_gui.core.device").configure_threads(0)
    for name in FIRST_STEPS:
        try:
            importlib.import_module(name)
        except ImportError:  # TensorBoard is an optional extra
            pass
    gui_gc.freeze_imports()


def wait_for_engine() -> None:
    """Have the engine imported by the preload thread (starting it if the window has not yet) and block
    until it is. Every worker calls this before it starts: two threads importing parts of torch at once race
    in torch's operator registry ("operator streams::fork does not exist" when a test imported torch while
    the preload imported torch._dynamo; "'prims' object has no attribute 'sum'" when the data preview's
    worker, started in the first second, imported torch before the preload began)."""
    preload_engine()
    preloading = _preloading
    if preloading is not None and preloading is not threading.current_thread():
        preloading.join()


def engine_ready() -> bool:
    """Whether the engine is imported (a run starts without loading torch first)."""
    return ENGINE in sys.modules and (_preloading is None or not _preloading.is_alive())


def after_first_paint(window: QWidget, then: Callable[[], object], fallback_ms: int = 1000) -> None:
    """Call `then` once `window` has painted for the first time (or after `fallback_ms`, for a window
    that never paints, e.g. minimised), so work queued at launch does not delay the first frame."""

    class _Watcher(QObject):
        def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt override)
            if event.type() == QEvent.Type.UpdateRequest:  # the window's backing store is being painted
                self.fire()
            return False

        def fire(self) -> None:
            if self.parent() is None:
                return
            window.removeEventFilter(self)
            self.setParent(None)  # fires once
            QTimer.singleShot(0, window, then)  # after this paint has finished

    watcher = _Watcher(window)
    window.installEventFilter(watcher)
    QTimer.singleShot(fallback_ms, watcher, watcher.fire)


def _units() -> Iterator[None]:
    """The loading, cut into units that each take a few to ~200 ms; yields after each."""
    _import("numpy")  # one block: the C extension and its BLAS (~150 ms)
    yield
    # The Qt modules pyqtgraph imports besides the three below.
    for name in ("PySide6.QtSvg", "PySide6.QtOpenGL", "PySide6.QtOpenGLWidgets", "PySide6.QtTest"):
        _import(name)
        yield
    # pyqtgraph touches every class of these three (`pyqtgraph.Qt._copy_attrs`), which makes PySide6
    # build each class and its enums on first use: ~250 ms in one go. Touch them here a few at a time.
    if "pyqtgraph" not in sys.modules:
        for module_name in ("PySide6.QtCore", "PySide6.QtGui", "PySide6.QtWidgets"):
            module = importlib.import_module(module_name)
            for attribute in dir(module):
                getattr(module, attribute)
                yield
    _import("pyqtgraph")  # the rest of it (~200 ms)
    yield
    _import("perceiver_gui.ui.plots")
    yield
    _import("superqt.utils")  # the workers' (~0.15 s of Qt types): at Start it would delay the run's first frame
    yield


def _import(name: str) -> None:
    if name in sys.modules:
        return
    with _without_cuda_bindings():
        importlib.import_module(name)


@contextlib.contextmanager
def _without_cuda_bindings() -> Iterator[None]:
    """pyqtgraph's RawImageGLWidget imports NVIDIA's `cuda.bindings` when it is installed (torch's
    CUDA wheels bring it): ~90 ms for a GL-interop widget this app never uses. pyqtgraph and torch
    both treat an ImportError as "not installed", so it is hidden while pyqtgraph loads and offered
    again afterwards; torch, imported later, loads it as usual. Left alone once torch is loading."""
    if "cuda.bindings" in sys.modules or "torch" in sys.modules:
        yield
        return
    sys.modules["cuda.bindings"] = None  # type: ignore[assignment]  # makes `import cuda.bindings` raise ImportError
    try:
        yield
    finally:
        if sys.modules.get("cuda.bindings", 0) is None:
            del sys.modules["cuda.bindings"]
