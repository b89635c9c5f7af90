"""Events the training generator yields. They cross threads, so they hold plain values only:
floats, ints, strings and tuples of them — never tensors — and are never mutated. They are built with
keywords (kw_only), so a field added or reordered can't shift the values of the others.

This module is also the one owner of their text form: `to_json` and `from_json` write and read an event as
one JSON line (`perceiver-gui train --events jsonl`), which is how the app watches a run that other
processes train."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

__all__ = [
    "CheckpointSaved",
    "DownloadProgress",
    "EpochEnd",
    "Event",
    "Finished",
    "Log",
    "RunStarted",
    "Step",
    "from_json",
    "to_json",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted:
    run_dir: str  # the run folder
    device: str  # "cpu", "cuda:0", "mps"
    device_name: str  # a name a person recognises, e.g. "NVIDIA H100 80GB HBM3" or "CPU (15 threads)"
    parameters: int  # trainable parameters of the model
    train_size: int  # images in the training split (trained on)
    test_size: int  # images in the test split (evaluated once, at the end, for the model chosen)
    class_names: tuple[str, ...]
    steps_per_epoch: int
    total_steps: int
    start_step: int  # > 0 when resuming
    start_epoch: int  # epochs already done when resuming
    val_size: int = 0  # images in the validation split, which chooses the best epoch; 0 when there is none
    kind: str = "image"  # what one sample is (a key of datasets.KINDS): the sizes above count these


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    epoch: int  # 1-based epoch this step belongs to
    step: int  # global step, 1-based, counted across epochs
    total_steps: int
    loss: float  # training loss of this batch (may be nan/inf just before the run stops)
    lr: float  # learning rate used for this step
    images_per_s: float  # recent throughput
    eta_s: float  # estimated seconds left in the run


@dataclass(frozen=True, slots=True, kw_only=True)
class EpochEnd:
    epoch: int  # 1-based
    step: int  # global step at the end of this epoch
    train_loss: float
    train_acc: float  # 0..1, on the batches seen (with augmentation)
    val_loss: float  # on the validation split; nan when the run has none
    val_acc: float  # 0..1, on the validation split (never the test split); nan when the run has none
    per_class_acc: tuple[float, ...]  # validation accuracy per class, in class order; () without validation
    confusion: tuple[tuple[int, ...], ...]  # confusion[true][predicted] counts on the validation split
    elapsed_s: float  # seconds of training so far in this run (including resumed sessions)
    is_best: bool  # the best validation accuracy so far: this epoch's model is the one saved


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointSaved:
    path: str
    epoch: int
    step: int
    reason: str  # "best", "final" or "stopped"


@dataclass(frozen=True, slots=True, kw_only=True)
class DownloadProgress:
    name: str  # what is downloading, e.g. "CIFAR-10"
    done_bytes: int
    total_bytes: int  # 0 when unknown


@dataclass(frozen=True, slots=True, kw_only=True)
class Log:
    message: str
    level: str = "info"  # "info" or "warning"


@dataclass(frozen=True, slots=True, kw_only=True)
class Finished:
    status: str  # "completed", "stopped" or "failed"
    message: str  # one sentence for the status line
    best_val_acc: float  # best validation accuracy, 0..1: the epoch saved (nan without one)
    best_epoch: int  # the epoch whose model was saved; 0 when none was chosen
    epochs_done: int
    run_dir: str
    model_path: str  # "" when no model was saved
    test_acc: float = float("nan")  # the saved model's accuracy on the test split, evaluated once at the end
    test_loss: float = float("nan")
    # The run could not start because of what it was given (settings, data, device, the run folder), not
    # because training went wrong: the CLI exits 2 for it, as for any bad input.
    bad_input: bool = False


Event = RunStarted | Step | EpochEnd | CheckpointSaved | DownloadProgress | Log | Finished


_CLASSES = {cls.__name__: cls for cls in (RunStarted, Step, EpochEnd, CheckpointSaved, DownloadProgress, Log, Finished)}


def to_json(event: Event) -> str:
    """One line of JSON: {"event": "Step", "epoch": 1, ...}. NaN and infinity are written as JSON's NaN and
    Infinity (Python's own reading of them), since a diverging loss is real."""
    return json.dumps({"event": type(event).__name__, **{f.name: getattr(event, f.name)
                                                          for f in dataclasses.fields(event)}})


def from_json(line: str) -> Event:
    """The event a `to_json` line holds; ValueError with a sentence for a line that is not one."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"Not an event line ({exc.msg}): {line[:80]!r}") from None
    if not isinstance(record, dict) or record.get("event") not in _CLASSES:
        raise ValueError(f"Not an event line (no known 'event' name): {line[:80]!r}")
    cls = _CLASSES[record.pop("event")]
    try:
        return cls(**{key: _tuples(value) for key, value in record.items()})
    except TypeError as exc:
        raise ValueError(f"A {cls.__name__} line with the wrong fields ({exc}): {line[:80]!r}") from None


def _tuples(value):
    """JSON arrays back into the tuples the events hold (nested for the confusion matrix)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
