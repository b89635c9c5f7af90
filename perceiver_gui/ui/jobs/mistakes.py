"""The Mistakes tab's work in its workers: a run's saved confusion matrix, a cell's validation images (the
dataset read once and kept while its split stays the same), and the run's model's attention on one of them.
Each answers with a `Loaded` (or an AttentionResult), never with an exception it could put in a sentence."""

from __future__ import annotations

from pathlib import Path

from perceiver_gui.core import runs
from perceiver_gui.core.evaluation import (
    Confusion,
    EvaluationError,
    TestSplit,
    cell_images,
    load_test_split,
    read_confusion,
    read_evaluation,
)
from perceiver_gui.ui.jobs.attention import compute_attention
from perceiver_gui.ui.jobs.classify import load_predictor
from perceiver_gui.ui.mistakes_panel import MAX_THUMBNAILS, Loaded

__all__ = ["attention", "read_cell", "read_run"]


def read_run(token: int, run_dir: str) -> Loaded:
    try:
        return Loaded(token, confusion=read_confusion(run_dir))
    except EvaluationError as exc:
        return Loaded(token, error=str(exc))
    except Exception as exc:  # noqa: BLE001 (a worker must always answer, with a sentence)
        return Loaded(token, error=f"Could not read the run's saved predictions: {type(exc).__name__}: {exc}.")


def read_cell(token: int, run_dir: str, true: int, pred: int, split: TestSplit | None) -> Loaded:
    try:
        ev = read_evaluation(run_dir)
        if split is None or split.digest != ev.test_digest:  # another dataset, or not loaded yet
            split = load_test_split(run_dir, ev.split)
        cell = cell_images(ev, split, true, pred, limit=MAX_THUMBNAILS)
        confusion = Confusion(run_dir, ev.epoch, ev.class_names, ev.confusion(), has_images=True, split=ev.split,
                              kind=split.kind)
        return Loaded(token, confusion=confusion, cell=cell, split=split)
    except EvaluationError as exc:
        return Loaded(token, split=split, error=str(exc))
    except Exception as exc:  # noqa: BLE001 (a worker must always answer, with a sentence)
        return Loaded(token, split=split, error=f"Could not load the images: {type(exc).__name__}: {exc}.")


def attention(run_dir: str, name: str, source):
    """In a worker: the run's saved model's attention on one image (PNG bytes at the size the model reads) or
    one series (its values)."""
    predictor, _ = load_predictor(str(Path(run_dir) / runs.MODEL_FILE))
    return compute_attention(predictor, name, source)
