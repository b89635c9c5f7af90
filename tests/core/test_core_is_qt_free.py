import subprocess
import sys


def test_core_and_cli_import_no_qt():
    code = (
        "import sys, importlib, pkgutil, perceiver_gui.core as core, perceiver_gui.cli, perceiver_gui.config\n"
        "for m in pkgutil.iter_modules(core.__path__): importlib.import_module('perceiver_gui.core.' + m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('PySide6', 'pyqtgraph', 'superqt', 'qtpy'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"Qt modules loaded by the core: {out.stdout}"


def test_launching_imports_no_torch_before_the_window():
    code = "import sys, perceiver_gui, perceiver_gui.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
