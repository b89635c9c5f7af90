from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_long_sessions_do_not_crash_on_leaked_none_references():
    # PySide6 6.12 on Python 3.11 drops a reference to None on every void call and to True/False on
    # every emit; 100 000 of each is far past the point where the interpreter would abort.
    code = (
        "import perceiver_gui.ui\n"
        "from PySide6.QtCore import QObject\n"
        "o = QObject()\n"
        "for _ in range(100_000):\n"
        "    o.setObjectName('x')\n"
        "    o.objectNameChanged.emit('x')\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_run_app_is_the_entry_the_cli_calls():
    from perceiver_gui.ui.app import ICON, run_app

    assert callable(run_app)
    assert ICON.is_file() and ICON.read_text().lstrip().startswith("<svg")


@pytest.mark.slow
def test_core_stays_free_of_qt():
    code = (
        "import sys\n"
        "import perceiver_gui.core.training, perceiver_gui.core.inference, perceiver_gui.core.runs\n"
        "import perceiver_gui.core.complexity, perceiver_gui.config\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'superqt', 'qtpy')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
