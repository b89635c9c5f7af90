"""The desktop app. Qt (PySide6, pyqtgraph, superqt) is imported only under this package."""
