"""TensorBoard scalars as a run trains: event files in the run folder, fed the same records as metrics.jsonl.

TensorBoard is an optional extra (`pip install 'perceiver-gui[tensorboard]'`): without it `ScalarLog`
does nothing (its imports happen inside).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["ScalarLog"]

_TB_FLUSH_SECS = 5.0


class ScalarLog:
    """TensorBoard event files in the run folder, fed the same records as metrics.jsonl.

    Does nothing when the tensorboard package is not installed. Each record becomes one event, written
    in the caller's thread into a buffered file, flushed at each epoch and every few seconds: ~30 µs a
    step record, where torch's SummaryWriter (an event per value, handed to a writer thread) took ~0.9 ms.
    A resumed run (`resume_step`) marks its restart, so TensorBoard drops what an earlier process logged
    after that step, as resume trims metrics.jsonl. Use as a context manager, or call `close`.
    """

    def __init__(self, run_dir: str | Path, *, class_names: Sequence[str] = (), resume_step: int | None = None):
        self.class_names = tuple(class_names)
        self._records = None
        try:
            from tensorboard.compat.proto.event_pb2 import Event, SessionLog
            from tensorboard.compat.proto.summary_pb2 import Summary
            from tensorboard.summary.writer.record_writer import RecordWriter
        except ImportError:  # the optional extra is not installed
            return
        self._event, self._summary = Event, Summary
        # TensorBoard reads files whose names hold "tfevents", in name order: nanoseconds put a resumed
        # run's file after the earlier ones.
        path = Path(run_dir) / f"events.out.tfevents.{time.time_ns()}.perceiver-gui"
        self._records = RecordWriter(open(path, "wb"))  # closed in close()
        self._flushed = time.monotonic()
        self._write(Event(wall_time=time.time(), file_version="brain.Event:2"))
        if resume_step is not None:  # what torch's SummaryWriter(purge_step=...) writes
            self._write(Event(wall_time=time.time(), step=resume_step + 1,
                              session_log=SessionLog(status=SessionLog.START)))

    @property
    def enabled(self) -> bool:
        return self._records is not None

    def write(self, record: dict[str, Any]) -> None:
        """One metrics.jsonl record: a step's loss, lr and speed, or an epoch's losses and accuracies."""
        if self._records is None:
            return
        kind = record.get("type")
        if kind == "step":
            scalars = {"loss/train_step": record["loss"], "lr": record["lr"], "speed/images_per_s": record["images_per_s"]}
        elif kind == "test":  # the chosen model, once at the end
            scalars = {"loss/test": record["test_loss"], "accuracy/test": record["test_acc"]}
        else:
            scalars = {"loss/train": record["train_loss"], "loss/validation": record["val_loss"],
                       "accuracy/train": record["train_acc"], "accuracy/validation": record["val_acc"]}
            for i, acc in enumerate(record.get("per_class_acc") or ()):
                name = self.class_names[i] if i < len(self.class_names) else str(i)
                scalars[f"accuracy_per_class/{name}"] = acc
        values = [self._summary.Value(tag=tag, simple_value=value) for tag, value in scalars.items()]
        self._write(self._event(wall_time=time.time(), step=int(record["step"]), summary=self._summary(value=values)))
        # A live TensorBoard sees each epoch at once, and long epochs' steps every few seconds.
        if record.get("type") == "epoch" or time.monotonic() - self._flushed > _TB_FLUSH_SECS:
            self._records.flush()
            self._flushed = time.monotonic()

    def _write(self, event) -> None:
        self._records.write(event.SerializeToString())

    def close(self) -> None:
        if self._records is not None:
            self._records.close()
            self._records = None

    def __enter__(self) -> ScalarLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
