"""Running a function in a worker thread, the one way the panels do it (STYLE habit 6).

`start_worker(fn, *args, returned=..., errored=..., ...)` makes a superqt worker (a generator function gets
a GeneratorWorker, whose `yielded` carries what it yields), connects the slots given, and only then starts
it, so no signal can be missed. Slots must be bound methods of objects living in the GUI thread: PySide6
would run a lambda or plain function connected to a worker's signal in the worker thread.

With an `errored` slot, every exception reaches it (superqt otherwise treats a RuntimeError as "the worker
was deleted" and drops it); without one, superqt reports it as an unhandled exception.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from superqt.utils import WorkerBase

__all__ = ["start_worker"]


def _after_the_engine_preload(fn: Callable[..., Any]) -> Callable[..., Any]:
    """fn, waiting first (in the worker) for the engine preload: workers import torch, and torch's imports
    are not safe from two threads at once (ui/deferred.wait_for_engine). A generator stays a generator."""
    from perceiver_gui.ui.deferred import wait_for_engine

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator(*args: Any) -> Any:
            wait_for_engine()
            return (yield from fn(*args))
        return generator

    @functools.wraps(fn)
    def function(*args: Any) -> Any:
        wait_for_engine()
        return fn(*args)
    return function


def start_worker(fn: Callable[..., Any], *args: Any, yielded: Callable | None = None, returned: Callable | None = None,
                 errored: Callable | None = None, finished: Callable | None = None) -> WorkerBase:
    """Run fn(*args) in a thread of the global pool, its signals connected to the slots given; returns the worker."""
    # superqt (~0.15 s of Qt types) is loaded after the window by ui/deferred.py; a worker started before
    # that (a file opened from the command line) loads it here.
    from superqt.utils import create_worker

    worker = create_worker(_after_the_engine_preload(fn), *args, _start_thread=False,
                           _ignore_errors=errored is not None)
    for signal, slot in (("yielded", yielded), ("returned", returned), ("errored", errored), ("finished", finished)):
        if slot is not None:
            getattr(worker, signal).connect(slot)
    worker.start()
    return worker
