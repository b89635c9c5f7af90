"""The UI loads heavy modules late in one way only (ui/deferred.py): a module names what it needs once, at
its top, with `deferred.module(...)`, and runs worker functions with `.job(...)`. These tests read the
source, so they fail on the line that breaks the rule, before any launch gets slower."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import perceiver_gui

PACKAGE = Path(perceiver_gui.__file__).parent
UI = PACKAGE / "ui"


def _ui_files() -> list[Path]:
    return sorted(UI.rglob("*.py"))


def _local_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of every import inside a function, nested ones included."""
    found = []
    for function in ast.walk(tree):
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            for node in ast.walk(function):
                if isinstance(node, ast.Import):
                    found += [(node.lineno, alias.name) for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    found.append((node.lineno, "." * node.level + (node.module or "")))
    return sorted(set(found))


def _allowed_locally(module: str) -> bool:
    """Only the standard library may be imported inside a function: a module of this project, Qt or a
    third-party package is either light (then it belongs at the top) or heavy (then it goes through
    deferred.module)."""
    return not module.startswith(".") and module.split(".")[0] in sys.stdlib_module_names


def _lazy_modules(tree: ast.Module) -> dict[str, str]:
    """{name: module} of the top-level `name = deferred.module("module", ...)` of a UI module."""
    found = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Attribute)
                and node.value.func.attr == "module" and isinstance(node.value.func.value, ast.Name)
                and node.value.func.value.id == "deferred"):
            found[node.targets[0].id] = node.value.args[0].value
    return found


def _top_level_names(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def test_no_ui_module_imports_anything_but_the_standard_library_inside_a_function():
    offending = []
    for path in _ui_files():
        for line, module in _local_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if not _allowed_locally(module):
                offending.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module} inside a function")
    assert offending == [], ("Import light modules at the top; name heavy ones once at the top with "
                             "deferred.module(...) (see ui/deferred.py):\n" + "\n".join(offending))


@pytest.mark.parametrize("source, allowed", [
    ("def f():\n    import numpy as np\n", False),
    ("class A:\n    def f(self):\n        from perceiver_gui.core.inference import Predictor\n", False),
    ("def f():\n    def g():\n        from PySide6.QtGui import QColor\n", False),
    ("def f():\n    from . import plots\n", False),
    ("def f():\n    import time\n", True),
    ("import numpy\nif 0:\n    from torch import nn\n", True),  # not in a function: the launch test's business
])
def test_the_rule_sees_what_it_should(source, allowed):
    imports = _local_imports(ast.parse(source))
    assert all(_allowed_locally(module) for _, module in imports) is allowed


def test_every_deferred_job_names_a_function_of_its_module():
    # A misspelt job would only fail in a worker, when a user first drops a file or picks a run.
    checked, wrong = 0, []
    for path in _ui_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        lazy = _lazy_modules(tree)
        for name, module in lazy.items():
            if module.startswith("perceiver_gui.") and not (PACKAGE.parent / (module.replace(".", "/") + ".py")).is_file():
                wrong.append(f"{path.name}: {name} names {module}, which does not exist")
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "job"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id in lazy):
                module = lazy[node.func.value.id]
                function = node.args[0].value
                checked += 1
                if function not in _top_level_names(PACKAGE.parent / (module.replace(".", "/") + ".py")):
                    wrong.append(f"{path.name}:{node.lineno} runs {module}.{function}, which is not defined there")
    assert checked >= 9 and wrong == []  # the nine jobs of today, and any added later
