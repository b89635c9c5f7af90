from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_long_sessions_do_not_crash_on_leaked_none_references():
    # PySide6 6.12 on Python 3.11 drops a reference to None on every void call and to True/False on
    # every emit; 100 000 of each is far past the point where the interpreter would abort.
    code = (
        "from perceiver_gui.ui import _none_refcount\n"
        "_none_refcount.apply()  # as run_app does\n"
        "from PySide6.QtCore import QObject\n"
        "o = QObject()\n"
        "for _ in range(100_000):\n"
        "    o.setObjectName('x')\n"
        "    o.objectNameChanged.emit('x')\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_importing_the_ui_leaves_the_interpreter_alone():
    # The reference-count workaround is applied where the app starts (run_app), not as a side effect.
    code = "import sys, perceiver_gui.ui.main_window\nprint(sys.getrefcount(None) < 1 << 40)\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "True", done.stderr[-2000:]


def test_run_app_is_the_entry_the_cli_calls(qapp):
    from perceiver_gui.ui.app import ICON_PLACES, app_icon, run_app

    assert callable(run_app)
    assert ICON_PLACES[0].is_file() and ICON_PLACES[0].read_text().lstrip().startswith("<svg")
    assert not app_icon().isNull()


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


_APP_SCRIPT = (
    "import sys\n"
    "from PySide6.QtCore import QTimer\n"
    "from PySide6.QtWidgets import QApplication\n"
    "from perceiver_gui.ui.app import run_app\n"
    "from perceiver_gui.ui.main_window import MainWindow\n"
    "app = QApplication(['perceiver-gui'])\n"
    "{check}"
    "QTimer.singleShot(0, check)  # the first thing the event loop does once run_app has shown the window\n"
    "sys.exit(run_app(['perceiver-gui']))\n"
)


def _launch(tmp_path, check: str) -> str:
    """Run the real app in a fresh process with `check` (code defining check(), which prints and quits)
    called from its event loop; returns what it printed."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PERCEIVER_GUI_HOME": str(tmp_path),
           "XDG_CONFIG_HOME": str(tmp_path / "config")}  # the user's settings stay untouched
    done = subprocess.run([sys.executable, "-c", _APP_SCRIPT.format(check=check)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_the_window_is_up_before_torch_is_loaded(tmp_path):
    # The launch must not wait seconds for torch: it is loaded by the first training run or model.
    printed = _launch(tmp_path, (
        "def check():\n"
        "    shown = [w for w in app.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]\n"
        "    heavy = [m for m in ('torch', 'torchvision', 'sklearn', 'numpy', 'pyqtgraph') if m in sys.modules]\n"
        "    print(len(shown), heavy, flush=True)\n"
        "    app.quit()\n"
    ))
    assert printed == "1 []"


@pytest.mark.slow
def test_the_plots_arrive_after_the_window_then_the_engine_loads_in_the_background(tmp_path):
    # pyqtgraph loads in slices once the window has painted; the Training tab then has real plots, and
    # torch's optional `cuda.bindings` (hidden while pyqtgraph loads, so its GL-interop widget does not
    # pull it in) is importable again. Then the engine loads in a background thread, with what the first
    # steps would import (torch._dynamo, for the optimizer), so pressing Start does not freeze the window.
    # What the imports made is then out of the garbage collector's sight: a full collection, which froze
    # training and the window for 0.3-0.6 s with torch loaded, is over in milliseconds.
    printed = _launch(tmp_path, (
        "import gc, time\n"
        "from perceiver_gui.ui import deferred\n"
        "seen = []\n"
        "def check():\n"
        "    window = next(w for w in app.topLevelWidgets() if isinstance(w, MainWindow))\n"
        "    if window._plots is not None and not seen:\n"
        "        hidden = 'cuda.bindings' in sys.modules and sys.modules['cuda.bindings'] is None\n"
        "        seen.append((window._plots.isVisibleTo(window.training), hidden))\n"
        "    if not seen or not deferred.engine_ready():\n"
        "        QTimer.singleShot(10, check)\n"
        "        return\n"
        "    t0 = time.perf_counter()\n"
        "    gc.collect()\n"
        "    quick = time.perf_counter() - t0 < 0.1\n"
        "    import os, torch\n"
        "    spare = torch.get_num_threads() == max(1, os.cpu_count() - 1)\n"
        "    print(*seen[0], 'torch._dynamo' in sys.modules, gc.get_freeze_count() > 100_000, quick, spare, flush=True)\n"
        "    app.quit()\n"
    ))
    # ... and torch computes the window's predictions on all cores but one, so the window keeps a core.
    assert printed == "True False True True True True"


@pytest.mark.slow
def test_main_py_with_a_config_file_opens_the_app_with_it_in_the_form(tmp_path):
    from perceiver_gui.config import PRESETS, save_config

    config = save_config(PRESETS["digits"].with_updates({"name": "from the command line", "train.lr": 0.0042}),
                         tmp_path / "my.toml")
    main_py = os.path.join(os.path.dirname(__file__), "..", "..", "main.py")
    script = (
        "import runpy, sys\n"
        "from PySide6.QtCore import QTimer\n"
        "from PySide6.QtWidgets import QApplication\n"
        "from perceiver_gui.ui.main_window import MainWindow\n"
        "app = QApplication(['perceiver-gui'])\n"
        "def check():\n"
        "    window = next(w for w in app.topLevelWidgets() if isinstance(w, MainWindow))\n"
        "    cfg = window.form.config()\n"
        "    print(cfg.name, cfg.train.lr, flush=True)\n"
        "    app.quit()\n"
        "QTimer.singleShot(0, check)\n"
        f"sys.argv = ['main.py', {str(config)!r}]\n"
        f"runpy.run_path({main_py!r}, run_name='__main__')\n"
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PERCEIVER_GUI_HOME": str(tmp_path),
           "XDG_CONFIG_HOME": str(tmp_path / "config")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "from the command line 0.0042"


def test_a_bad_config_file_on_the_command_line_is_one_sentence(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("[train\nlr = 0.1\n")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PERCEIVER_GUI_HOME": str(tmp_path),
           "XDG_CONFIG_HOME": str(tmp_path / "config")}
    done = subprocess.run([sys.executable, "-m", "perceiver_gui", str(broken)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode != 0 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert "broken.toml is not valid TOML" in line and "Traceback" not in line


def test_help_guide_names_the_tabs_the_shortcuts_and_the_readme(make_window):
    window = make_window()
    help_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Help")
    assert window.guide_action in help_menu.actions()
    dialog = window.show_guide()
    text = dialog.text.toPlainText()
    for tab in range(window.tabs.count()):
        assert window.tabs.tabText(tab) in text
    assert "Start" in text and "Ctrl+Return" in text and "Ctrl+R" in text  # from the Run menu's own actions
    assert "README" in text and "README.md" in dialog.text.toHtml()
    dialog.close()


def test_the_guide_opens_whole_without_scrolling(make_window, qtbot):
    """The guide's last lines (the README link, the mouse-wheel note) were below the dialog's edge."""
    dialog = make_window().show_guide()
    qtbot.waitExposed(dialog)
    assert dialog.text.verticalScrollBar().maximum() == 0
    assert dialog.height() <= dialog.screen().availableGeometry().height()
    dialog.close()
