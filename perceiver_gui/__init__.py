"""Perceiver GUI: a desktop app and engine for experimenting with the Perceiver.

Public API: `Perceiver` (a faster drop-in for `perceiver_pytorch.Perceiver`) and `__version__`.
`Perceiver` is imported lazily so that launching the app does not wait for torch.
"""

__version__ = "0.1.0"
__all__ = ["Perceiver", "__version__"]


def __getattr__(name: str):
    if name == "Perceiver":
        from perceiver_gui.core.model import Perceiver

        return Perceiver
    raise AttributeError(f"module 'perceiver_gui' has no attribute {name!r}")
