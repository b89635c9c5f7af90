"""Guard against a PySide6 bug that would crash the app within seconds on Python 3.11.

PySide6 6.12.0 returns None from void methods (setText, setPen, drawLine, ...) and True/False from
`Signal.emit()` without taking a reference to them. On Python 3.12+ these objects are immortal and
nothing happens; on 3.11 each call lowers their reference count by one, and after ~20 000 calls (a
few seconds of live plotting) the interpreter aborts with "Fatal Python error: none_dealloc" (or
bool_dealloc). When the leak is detected, None, True and False get reference counts so large that
no session can use them up — which is what 3.12 does for every interpreter.

Applied where a Qt process of ours starts — `ui.app.run_app`, the UI tests' conftest, benchmarks/bench_ui.py —
and not on import, so that importing a UI module changes nothing behind anyone's back.

Remove this module (and its three calls) when the project requires Python >= 3.12, or a PySide6 release that
fixes the leak (then exclude 6.12.0 on 3.11 in the dependency's markers instead): `leaks()` returning False on
3.11 with the pinned PySide6 says the fix has landed.
"""

from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QObject, Signal

_HEADROOM = 1 << 52  # ~4.5e15 leaked references: centuries of redraws at any rate
_SINGLETONS = (None, True, False)


def leaks() -> bool:
    """True when a void Qt call or a signal emission lowers a singleton's reference count."""
    class Probe(QObject):
        ping = Signal()

    probe = Probe()
    probe.ping.connect(probe.deleteLater)
    probe.ping.disconnect(probe.deleteLater)
    before = [sys.getrefcount(s) for s in _SINGLETONS]
    for _ in range(16):
        probe.setObjectName("probe")
        probe.ping.emit()
    after = [sys.getrefcount(s) for s in _SINGLETONS]
    return any(a < b - 8 for a, b in zip(after, before, strict=True))


def apply() -> bool:
    """Give None, True and False enough references to outlive the leak; returns whether it was needed."""
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython" or not leaks():
        return False
    for singleton in _SINGLETONS:
        # ob_refcnt is the first field of every CPython object before 3.12.
        ctypes.c_ssize_t.from_address(id(singleton)).value += _HEADROOM
    return True
