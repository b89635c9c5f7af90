"""What the model got right and wrong on the validation split: the saved predictions behind the confusion matrix.

At the end of every epoch the training loop writes `evaluation.safetensors` into the run folder (atomically,
safetensors only): for each image of the split it evaluated (validation; test in runs of older versions,
which evaluated test every epoch), in split order, its true class, the predicted class, and the softmax
probabilities of both. The confusion matrix of that epoch is exactly what these predictions count, so a click
on a cell can list the images behind it. The images themselves are not copied into the run: they are loaded
again from the run's dataset, and a digest of the split saved with the predictions makes sure they are the
very images that were evaluated (an image folder edited since then is refused, not guessed).

This module imports numpy only; torch comes in with `load_test_split`, which reads the dataset.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perceiver_gui.core.datasets import KINDS, kind_of
from perceiver_gui.core.files import atomic_write_bytes

__all__ = [
    "EVALUATION_FILE",
    "CellImages",
    "Confusion",
    "Evaluation",
    "EvaluationError",
    "TestSplit",
    "cell_images",
    "load_test_split",
    "read_confusion",
    "read_evaluation",
    "run_kind",
    "save_evaluation",
    "test_digest",
]

EVALUATION_FILE = "evaluation.safetensors"
FORMAT = "perceiver-gui-evaluation/1"
_META_KEY = "perceiver_gui"
_MAX_BYTES = 1 << 30  # 16 bytes per test image: a larger file is not one of ours
_ARRAYS = {"labels": np.int32, "preds": np.int32, "prob_pred": np.float32, "prob_true": np.float32}


class EvaluationError(Exception):
    """Saved predictions or test images that cannot be shown; the message is one sentence for a person."""


def _frozen(array: np.ndarray, dtype) -> np.ndarray:
    array = np.ascontiguousarray(array, dtype=dtype)
    array.setflags(write=False)  # shared between threads: nobody may change it
    return array


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The predictions of one epoch on the test split, one entry per test image in test-split order."""

    epoch: int  # 1-based epoch these predictions were made after
    step: int  # global step at that point
    class_names: tuple[str, ...]
    labels: np.ndarray  # int32 (N,): the true class
    preds: np.ndarray  # int32 (N,): the predicted class (the argmax the confusion matrix counts)
    prob_pred: np.ndarray  # float32 (N,): softmax probability of the predicted class
    prob_true: np.ndarray  # float32 (N,): softmax probability of the true class
    test_digest: str  # `test_digest` of the split the predictions belong to
    split: str = "test"  # which: "validation" (this version) or "test" (a file of an older version)

    def confusion(self) -> tuple[tuple[int, ...], ...]:
        """counts[true][predicted], as in the epoch's EpochEnd event."""
        k = len(self.class_names)
        flat = np.bincount(self.labels.astype(np.int64) * k + self.preds, minlength=k * k)
        return tuple(tuple(int(v) for v in row) for row in flat.reshape(k, k))

    def cell(self, true: int, pred: int) -> np.ndarray:
        """Positions in the test split of the images of class `true` predicted as `pred`, most confident first."""
        where = np.flatnonzero((self.labels == true) & (self.preds == pred))
        return where[np.argsort(-self.prob_pred[where], kind="stable")]


@dataclass(frozen=True, slots=True)
class Confusion:
    """A confusion matrix to show: from a live EpochEnd, from the saved predictions, or from metrics.jsonl."""

    run_dir: str
    epoch: int
    class_names: tuple[str, ...]
    counts: tuple[tuple[int, ...], ...]  # counts[true][predicted] on `split`
    has_images: bool  # the predictions behind each cell are saved, so a cell can show its images
    note: str = ""  # why cells cannot show images, when they cannot
    split: str = "validation"  # the split counted: "validation", or "test" for an older version's run
    kind: str = "image"  # what one sample is (a key of datasets.KINDS)

    @property
    def per_class_acc(self) -> tuple[float, ...]:
        return tuple(row[i] / sum(row) if sum(row) else math.nan for i, row in enumerate(self.counts))


@dataclass(frozen=True, slots=True)
class TestSplit:
    """The held-out samples of a run's dataset (its validation or test split), as the training loop evaluated them."""

    images: np.ndarray  # read-only: uint8 (N, H, W, C) images, or float32 (N, C, L) series (NaN after each one's end)
    labels: np.ndarray  # int64 (N,)
    digest: str
    dataset: str  # its name for people, e.g. "Digits"
    split: str = "test"  # "validation" or "test"
    files: tuple[str, ...] = ()  # each sample's file (a series' file#row); () for the datasets of a download
    kind: str = "image"  # what one sample is (a key of datasets.KINDS)


@dataclass(frozen=True, slots=True)
class CellImages:
    """The samples of one cell of the confusion matrix, most confident prediction first."""

    true: int
    pred: int
    epoch: int
    class_names: tuple[str, ...]
    total: int  # test images in the cell; `images` may hold fewer (a limit was asked for)
    indices: tuple[int, ...]  # their positions in the test split
    images: np.ndarray  # read-only, as TestSplit.images holds them: uint8 (n, H, W, C) or float32 (n, C, L)
    prob_pred: tuple[float, ...]  # probability the model gave its prediction
    prob_true: tuple[float, ...]  # probability it gave the true class
    files: tuple[str, ...] = ()  # their files (a series' file#row); () for the datasets of a download
    kind: str = "image"  # what one sample is (a key of datasets.KINDS)


# -- writing (the training loop) -------------------------------------------------------------
def test_digest(images: np.ndarray, labels: np.ndarray) -> str:
    """sha256 of a test split's images (uint8, N×C×H×W as the dataset holds them) and labels."""
    h = hashlib.sha256()
    h.update(json.dumps([list(images.shape), str(images.dtype)]).encode())
    h.update(np.ascontiguousarray(images).tobytes())
    h.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())
    return h.hexdigest()


def save_evaluation(run_dir: str | Path, evaluation: Evaluation) -> Path:
    """Write the predictions to the run folder's evaluation.safetensors, atomically; returns the path."""
    from safetensors.numpy import save

    meta = {"format": FORMAT, "epoch": evaluation.epoch, "step": evaluation.step,
            "class_names": list(evaluation.class_names), "test_digest": evaluation.test_digest,
            "split": evaluation.split}
    arrays = {name: np.ascontiguousarray(getattr(evaluation, name), dtype=dtype) for name, dtype in _ARRAYS.items()}
    data = save(arrays, metadata={"format": "np", _META_KEY: json.dumps(meta)})
    return atomic_write_bytes(Path(run_dir) / EVALUATION_FILE, data)


# -- reading ---------------------------------------------------------------------------------
def read_evaluation(run_dir: str | Path) -> Evaluation:
    """The latest epoch's saved predictions of a run; EvaluationError with a sentence when they can't be used."""
    path = Path(run_dir) / EVALUATION_FILE
    damaged = f"{path} is damaged, so the images behind the matrix can't be shown; the next finished epoch rewrites it."
    try:
        size = path.stat().st_size
        if size > _MAX_BYTES:
            raise EvaluationError(damaged)
        data = path.read_bytes()
    except FileNotFoundError:
        raise EvaluationError(
            f"{Path(run_dir).name} has no saved test predictions (it has no finished epoch yet, or it was trained "
            "by an older version), so its cells can't show their images."
        ) from None
    except OSError as exc:
        raise EvaluationError(f"Could not read {path}: {exc.strerror or exc}.") from None
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        arrays = load(data)  # the safetensors parser checks the framing, dtypes and offsets against the bytes
        length = int.from_bytes(data[:8], "little")
        meta = json.loads(json.loads(data[8:8 + length])["__metadata__"][_META_KEY])
    except (SafetensorError, ValueError, KeyError, TypeError, RecursionError):
        raise EvaluationError(damaged) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise EvaluationError(f"{path} was written by another version of Perceiver GUI; the next finished epoch "
                              "rewrites it.")
    names, epoch, step, digest = (meta.get(k) for k in ("class_names", "epoch", "step", "test_digest"))
    split = meta.get("split", "test")  # files of older versions held test predictions
    if not (
        split in ("validation", "test") and
        isinstance(names, list) and names and all(isinstance(n, str) for n in names)
        and isinstance(epoch, int) and epoch >= 1 and isinstance(step, int) and isinstance(digest, str)
        and set(arrays) == set(_ARRAYS)
        and all(a.ndim == 1 and a.dtype == _ARRAYS[n] and len(a) == len(arrays["labels"]) for n, a in arrays.items())
    ):
        raise EvaluationError(damaged)
    k = len(names)
    for name in ("labels", "preds"):
        if len(arrays[name]) and not (0 <= arrays[name].min() and arrays[name].max() < k):
            raise EvaluationError(damaged)
    return Evaluation(
        epoch=epoch, step=step, class_names=tuple(names), test_digest=digest, split=split,
        **{name: _frozen(array, _ARRAYS[name]) for name, array in arrays.items()},
    )


def read_confusion(run_dir: str | Path) -> Confusion:
    """The latest confusion matrix of a run: from its saved predictions, else from the last epoch logged in
    metrics.jsonl (then cells can't show images, and `note` says why)."""
    run_dir = Path(run_dir)
    kind = run_kind(run_dir)
    try:
        ev = read_evaluation(run_dir)
        return Confusion(str(run_dir), ev.epoch, ev.class_names, ev.confusion(), has_images=True, split=ev.split,
                         kind=kind)
    except EvaluationError as exc:
        note = str(exc)
    from perceiver_gui.core.runs import read_metrics

    epochs = [r for r in read_metrics(run_dir).epochs if r.confusion]  # damaged records are skipped there
    if not epochs:
        raise EvaluationError(f"{run_dir.name} has no finished epoch yet, so there is no confusion matrix to show.")
    last = epochs[-1]
    return Confusion(str(run_dir), last.epoch, _class_names(run_dir, len(last.confusion)), last.confusion,
                     has_images=False, note=note, split=last.held_out or "validation", kind=kind)


def run_kind(run_dir: str | Path) -> str:
    """What one sample of the run's dataset is (a key of datasets.KINDS); an image when its config can't be read."""
    from perceiver_gui.core import runs
    from perceiver_gui.core.datasets import DATASETS

    try:
        cfg = runs.read_config(Path(run_dir)).config
    except runs.RunError:
        return "image"
    spec = DATASETS.get(cfg.data.dataset) if cfg is not None else None
    return spec.kind if spec is not None else "image"


def load_test_split(run_dir: str | Path, split: str = "test") -> TestSplit:
    """The run's validation or test split (`split`), loaded the way the training loop loaded it (never
    downloading)."""
    import dataclasses

    from perceiver_gui.core import data, runs

    try:
        saved = runs.read_config(Path(run_dir))
    except runs.RunError as exc:
        raise EvaluationError(f"Could not read the run's settings, so its test images can't be found: {exc}") from None
    if saved.config is None:
        raise EvaluationError(f"Could not read the run's settings, so its test images can't be found: "
                              f"{saved.problem}.")
    cfg = saved.config
    try:
        dataset = data.load_dataset(dataclasses.replace(cfg.data, download=False))
    except data.DatasetError as exc:
        raise EvaluationError(f"The {split} {kind_of(cfg.data.dataset).plural} can't be loaded: {exc}") from None
    x, y = (dataset.val_x, dataset.val_y) if split == "validation" else (dataset.test_x, dataset.test_y)
    x, y = x.numpy(), y.numpy()
    kind = dataset.info.kind
    # Images as pictures are (H, W, C); every other kind stays as the dataset holds it: a series (C, L).
    samples = _frozen(x.transpose(0, 2, 3, 1), np.uint8) if kind == "image" else _frozen(x, x.dtype)
    return TestSplit(images=samples, labels=_frozen(y, np.int64), digest=test_digest(x, y),
                     dataset=dataset.info.name, split=split, kind=kind,
                     files=dataset.val_files if split == "validation" else dataset.test_files)


def cell_images(evaluation: Evaluation, split: TestSplit, true: int, pred: int, limit: int | None = None
                ) -> CellImages:
    """The test images that are of class `true` and were predicted as `pred`, most confident first."""
    if split.digest != evaluation.test_digest:
        nouns = KINDS[split.kind].plural
        where = "its folder" if split.kind == "image" else "its files"
        raise EvaluationError(
            f"The {split.dataset} {split.split} {nouns} are not the ones this run was evaluated on (were {nouns} added "
            f"to, removed from or changed in {where} since?), so its cells can't show their {nouns}."
        )
    k = len(evaluation.class_names)
    if not (0 <= true < k and 0 <= pred < k):
        raise EvaluationError(f"There is no cell ({true}, {pred}) in a matrix of {k} classes.")
    where = evaluation.cell(true, pred)
    shown = where if limit is None else where[:limit]
    return CellImages(
        true=true, pred=pred, epoch=evaluation.epoch, class_names=evaluation.class_names, total=len(where),
        indices=tuple(int(i) for i in shown), images=_frozen(split.images[shown], split.images.dtype), kind=split.kind,
        prob_pred=tuple(float(p) for p in evaluation.prob_pred[shown]),
        prob_true=tuple(float(p) for p in evaluation.prob_true[shown]),
        files=tuple(split.files[i] for i in shown.tolist()) if split.files else (),
    )


def _class_names(run_dir: Path, k: int) -> tuple[str, ...]:
    """The class names stored in the run's model file, else the class numbers."""
    from perceiver_gui.core import checkpoints, runs

    try:
        names = checkpoints.read_meta(run_dir / runs.MODEL_FILE).class_names
    except checkpoints.CheckpointError:
        names = ()
    return tuple(names) if len(names) == k else tuple(str(i) for i in range(k))
