"""The desktop app. Qt (PySide6, pyqtgraph, superqt) is imported only under this package."""

from perceiver_gui.ui import _none_refcount

_none_refcount.apply()
