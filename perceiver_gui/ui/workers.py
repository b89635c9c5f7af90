"""Running a function in a worker thread, the one way the panels do it (STYLE habit 6).

`start_worker(fn, *args, returned=..., errored=..., ...)` makes a superqt worker (a generator function gets
a GeneratorWorker, whose `yielded` carries what it yields), connects the slots given, and only then starts
it, so no signal can be missed. Slots must be bound methods of objects living in the GUI thread: PySide6
would run a lambda or plain function connected to a worker's signal in the worker thread.

`fn` may be a `deferred.Job` (a function of a module not imported yet, with torch, numpy or PIL): its module
is imported in the worker. Whether it is a generator is only known once imported, so a job given a
`yielded` slot runs as one.

With an `errored` slot, every exception reaches it (superqt otherwise treats a RuntimeError as "the worker
was deleted" and drops it); without one, superqt reports it as an unhandled exception.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from perceiver_gui.ui import deferred
from perceiver_gui.ui.deferred import Job, wait_for_engine

if TYPE_CHECKING:
    from superqt.utils import WorkerBase

__all__ = ["start_worker"]

# ~0.15 s of Qt types, loaded after the window by deferred.import_plotting; a worker started before that (a
# file opened from the command line) loads it then.
_superqt = deferred.module("superqt.utils")


def _imported_in_the_worker(job: Job, generator: bool) -> Callable[..., Any]:
    """A function (a generator function with `generator`) that imports the job's module and runs it."""
    if not generator:
        return lambda *args: job.load()(*args)

    def run(*args: Any) -> Any:
        target = job.load()
        if not inspect.isgeneratorfunction(target):
            raise TypeError(f"{job.module}.{job.function} yields nothing: start it without a yielded slot.")
        return (yield from target(*args))
    return run


def _after_the_engine_preload(fn: Callable[..., Any]) -> Callable[..., Any]:
    """fn, waiting first (in the worker) for the engine preload: workers import torch, and torch's imports
    are not safe from two threads at once (ui/deferred.wait_for_engine). A generator stays a generator."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator_function(*args: Any) -> Any:
            wait_for_engine()
            return (yield from fn(*args))
        return generator_function

    @functools.wraps(fn)
    def function(*args: Any) -> Any:
        wait_for_engine()
        return fn(*args)
    return function


def start_worker(fn: Callable[..., Any] | Job, *args: Any, yielded: Callable | None = None,
                 returned: Callable | None = None, errored: Callable | None = None,
                 finished: Callable | None = None) -> WorkerBase:
    """Run fn(*args) in a thread of the global pool, its signals connected to the slots given; returns the worker."""
    if isinstance(fn, Job):
        fn = _imported_in_the_worker(fn, generator=yielded is not None)
    worker = _superqt.create_worker(_after_the_engine_preload(fn), *args, _start_thread=False,
                                    _ignore_errors=errored is not None)
    for signal, slot in (("yielded", yielded), ("returned", returned), ("errored", errored), ("finished", finished)):
        if slot is not None:
            getattr(worker, signal).connect(slot)
    worker.start()
    return worker
