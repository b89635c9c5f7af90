"""The Sweep tab's work in a worker: Optuna's importance of each varied setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from perceiver_gui.core import sweep

__all__ = ["importances"]


def importances(folder: Path, spec: Any, storage: str, complete: int) -> tuple[Path, int, dict[str, float]]:
    """With its own study object (the GUI thread's is never shared)."""
    return folder, complete, sweep.importances(sweep.open_study(folder, spec, storage))
