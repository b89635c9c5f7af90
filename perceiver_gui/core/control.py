"""Stop and pause for a running training generator, in a module without torch so a window can hold one
before the engine (and torch) has loaded."""

from __future__ import annotations

import threading

__all__ = ["RunControl"]


class RunControl:
    """Thread-safe stop, pause and continue for a running `train` or `resume` generator (the UI calls these
    from its thread). Continuing a paused run is not resuming: `training.resume` continues a run from disk."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()  # a paused run must wake up to stop

    def pause(self) -> None:
        self._running.clear()

    def continue_(self) -> None:
        """Let a paused run go on."""
        self._running.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def wait_while_paused(self, timeout: float | None = None) -> None:
        """Block while paused, or until `timeout` seconds passed."""
        self._running.wait(timeout)
