"""Starting the desktop app: the QApplication, its identity and icon, and the main window."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QSettings, QThreadPool
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from perceiver_gui.config import CONFIG_SUFFIXES
from perceiver_gui.ui import _none_refcount
from perceiver_gui.ui.gui_gc import collect_in_gui_thread
from perceiver_gui.ui.main_window import MainWindow

__all__ = ["APP_NAME", "ORGANIZATION", "app_icon", "run_app"]

APP_NAME = "Perceiver GUI"
ORGANIZATION = "perceiver-gui"  # QSettings live under this name (e.g. ~/.config/perceiver-gui/Perceiver GUI.conf)
# A checkout (or editable install) has resources/ beside the package; a wheel installs the icon under the prefix.
ICON_PLACES = (
    Path(__file__).resolve().parents[2] / "resources" / "perceiver-gui.svg",
    Path(sys.prefix) / "share" / "icons" / "hicolor" / "scalable" / "apps" / "perceiver-gui.svg",
)


def app_icon() -> QIcon:
    for path in ICON_PLACES:
        if path.is_file():
            return QIcon(str(path))
    return QIcon.fromTheme("perceiver-gui")


def run_app(argv: list[str] | None = None) -> int:
    """Show the main window and run until it is closed; returns the exit status.

    A .toml or .json path among the arguments is opened in the settings form.
    """
    _none_refcount.apply()  # before the first widget: PySide6 6.12 on Python 3.11 (see the module)
    argv = list(sys.argv if argv is None else argv)
    app = QApplication.instance() or QApplication(argv)
    collect_in_gui_thread(app)  # a worker that collects a Qt wrapper would deadlock with the GUI thread
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APP_NAME)
    app.setApplicationDisplayName(APP_NAME)
    app.setDesktopFileName("perceiver-gui")  # matches resources/perceiver-gui.desktop (taskbar icon on Wayland)
    app.setWindowIcon(app_icon())

    window = MainWindow(QSettings())
    for arg in argv[1:]:
        if Path(arg).suffix.lower() in CONFIG_SUFFIXES:
            window.form.open_file(arg)
    # Logging out or Ctrl+C in a terminal quits without a close event; keep the settings anyway.
    app.aboutToQuit.connect(window.save_settings)
    window.show()
    status = app.exec()
    # Short workers still running (test images for the Mistakes tab, metrics for a comparison, a
    # prediction) end before Python tears their objects down under them.
    QThreadPool.globalInstance().waitForDone(10_000)
    return status
