"""Getting data and models out: a run's metrics as CSV, and a trained model as ONNX with everything
needed to feed it stored inside (TensorBoard scalars, written as a run trains, are core/tensorboard_log.py's).

    metrics_csv("runs/20250101-120000-digits", "digits.csv")
    export_onnx("runs/20250101-120000-digits/model.safetensors", "digits.onnx")

ONNX is an optional extra (`pip install 'perceiver-gui[onnx]'`): without it `export_onnx` says what to
install (its imports happen inside).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import numbers
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from perceiver_gui.core import runs
from perceiver_gui.core.datasets import DATASETS, KINDS, clip_samples, mel_settings
from perceiver_gui.core.files import atomic_write_bytes, atomic_write_text

__all__ = ["ExportError", "export_onnx", "metrics_csv"]

# CSV columns in this order (as metrics.jsonl names them); other numeric fields follow, then per-class accuracy.
_CSV_COLUMNS = ("type", "epoch", "step", "time", "loss", "lr", "images_per_s", "train_loss", "train_acc",
                "val_loss", "val_acc", "test_loss", "test_acc", "is_best", "elapsed_s")
_ONNX_INSTALL = "pip install 'perceiver-gui[onnx]'"


class ExportError(Exception):
    """An export that cannot be done as asked; the message is one sentence a user can act on."""


# -- metrics as CSV ----------------------------------------------------------------------------
def metrics_csv(run_dir: str | Path, out: str | Path) -> int:
    """Write every step and epoch record of a run's metrics.jsonl to `out` as CSV; returns the row count.

    One row per record, in the file's order, values at full precision. Per-class accuracy (validation for an
    epoch, test for the final "test" row, test in an older version's epochs) gets a column per class
    (`acc_<class>`); confusion matrices are not tabular and stay in metrics.jsonl.
    Values are numbers only (besides the record type), and every cell that a spreadsheet would read as
    a formula (text starting with = + - @, a tab or a carriage return: a tampered run folder's metric or
    class names) is prefixed with ', as OWASP recommends; plain numbers such as -0.5 stay numbers.
    """
    run_dir, out = Path(run_dir), Path(out)
    if not run_dir.is_dir():
        raise ExportError(f"There is no run folder at {run_dir}.")
    if not (run_dir / runs.CONFIG_FILE).is_file():
        raise ExportError(f"{run_dir} is not a run folder (it has no {runs.CONFIG_FILE}).")
    records = [runs.metrics_json(r) for r in runs.read_metrics(run_dir).records]  # damaged lines are skipped
    if not records:
        raise ExportError(f"{run_dir} has no metrics yet: its {runs.METRICS_FILE} holds no step or epoch; "
                          "export it once the run has logged a step.")
    extra = []  # numeric fields a newer version logs, so nothing in the file is left behind
    for record in records:
        extra.extend(k for k, v in record.items()
                     if k not in _CSV_COLUMNS and k not in extra and _is_number(v) and isinstance(k, str))
    n_classes = max((len(r["per_class_acc"]) for r in records if isinstance(r.get("per_class_acc"), list)), default=0)
    class_columns = [f"acc_{name}" for name in _class_names(run_dir, n_classes)]

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow([_no_formula(c) for c in (*_CSV_COLUMNS, *extra, *class_columns)])
    for record in records:
        row = [record["type"]] + [_cell(record.get(k)) for k in (*_CSV_COLUMNS[1:], *extra)]
        per_class = record.get("per_class_acc")
        per_class = per_class if isinstance(per_class, list) else []
        row += [_cell(per_class[i]) if i < len(per_class) else "" for i in range(n_classes)]
        writer.writerow([_no_formula(c) for c in row])
    _write(out, lambda: atomic_write_text(out, text.getvalue()))
    return len(records)


def _class_names(run_dir: Path, count: int) -> list[str]:
    """The class names from the run's model file when it has them for `count` classes; else 0, 1, 2, ..."""
    if count and (run_dir / runs.MODEL_FILE).is_file():
        from perceiver_gui.core.checkpoints import CheckpointError, read_meta

        try:
            names = list(read_meta(run_dir / runs.MODEL_FILE).class_names)
        except CheckpointError:
            names = []
        if len(names) == count and len(set(names)) == count:
            return names
    return [str(i) for i in range(count)]


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real)


def _cell(value: Any) -> Any:
    """A number as Python writes it (repr: it reads back exactly; nan and inf as such); anything else empty."""
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return repr(float(value))
    return ""


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?")


def _no_formula(cell: Any) -> Any:
    """A cell a spreadsheet cannot run: text that would start a formula gets a leading ' (OWASP).

    A carriage return becomes a line feed: the csv module quotes only the line terminator's characters
    ("\n" here), and an unquoted CR would start a new row whose first cell could be a formula."""
    if not isinstance(cell, str):
        return cell
    if cell.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(cell):
        cell = "'" + cell
    return cell.replace("\r", "\n")


def _write(out: Path, write) -> None:
    if out.is_dir():
        raise ExportError(f"{out} is a folder; choose a file name to export to.")
    try:
        write()
    except OSError as exc:
        raise ExportError(f"Could not write {out}: {exc.strerror or exc}.") from None


# -- ONNX --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _OnnxInput:
    """What an ONNX file of one kind of model is fed: its inputs (examples at batch 2, in the order the
    model takes them), and the metadata that says how to prepare them."""

    examples: dict[str, torch.Tensor]  # input name -> an example, batch first
    metadata: dict[str, str]  # the kind's own metadata_props (see `onnx_metadata`)


def export_onnx(model_path: str | Path, out: str | Path) -> Path:
    """Write a model file as ONNX; returns `out`. An image model reads `image` float32 (batch, height,
    width, channels), normalised; a series model `series` float32 (batch, length, channels), normalised,
    with `mask` bool (batch, length), True where a series holds a value (a shorter series is padded with
    anything, masked False); a sound model `waveform` or `mel_frames` (batch, length, channels) or `log_mel`
    (batch, mels, frames, 1), as data.audio_input says, normalised; a point cloud model `points` (batch, points,
    3), each cloud centred in the unit sphere (the graph computes the points' Fourier positions). Outputs `logits` and `probabilities` (batch, classes).

    The batch size is free. The class names and the exact preprocessing are stored as metadata_props
    (see `onnx_metadata`). When onnxruntime is installed the file is run once and checked against
    PyTorch before it is written, so a silently wrong export never reaches the disk.
    """
    out = Path(out)
    try:
        import onnx  # noqa: F401 - needed by the exporter; checked here for a clear message
        import onnxscript  # noqa: F401
    except ImportError:
        raise ExportError(f"ONNX export needs the onnx and onnxscript packages; install them with {_ONNX_INSTALL}.") from None
    from perceiver_gui.core.inference import Predictor

    predictor = Predictor.from_checkpoint(model_path)  # CheckpointError: one sentence naming the file
    meta = predictor.meta
    spec = DATASETS.get(meta.config.data.dataset)
    kind = spec.kind if spec is not None else "image"
    if kind not in _ONNX_INPUTS:
        *others, last = (KINDS[k].noun for k in _ONNX_INPUTS)
        raise ExportError(f"{model_path} reads {KINDS[kind].plural}, and ONNX export covers {', '.join(others)} and "
                          f"{last} models so far; use the model with perceiver-gui predict.")
    inputs = _ONNX_INPUTS[kind](meta)
    model = _WithProbabilities(predictor.model).eval()
    batch = torch.export.Dim("batch")
    try:
        with _quiet_onnxscript(), warnings.catch_warnings():
            # Several inputs share the batch axis; the exporter notes that it names it once.
            warnings.filterwarnings("ignore", message=r"\W*The axis name: batch will not be used")
            program = torch.onnx.export(
                model, tuple(inputs.examples.values()), dynamo=True, input_names=list(inputs.examples),
                output_names=["logits", "probabilities"], dynamic_shapes=tuple({0: batch} for _ in inputs.examples),
                verbose=False,
            )
    except Exception as exc:  # the exporter's own errors are long reports: name the cause at their root
        raise ExportError(f"{model_path} could not be exported to ONNX ({_root_cause(exc)}).") from exc
    proto = program.model_proto
    metadata = onnx_metadata(meta, inputs.metadata)
    proto.doc_string = metadata["preprocessing"]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    data = proto.SerializeToString()
    _check_with_onnxruntime(data, model, inputs.examples, str(model_path))
    _write(out, lambda: atomic_write_bytes(out, data))
    return out


def _image_input(meta) -> _OnnxInput:
    height, width = meta.image_size
    mode = "L (grayscale)" if meta.channels == 1 else "RGB"
    return _OnnxInput(
        examples={"image": torch.zeros(2, height, width, meta.channels)},  # batch 2: the exporter can't fix it at 1
        metadata={
            "image_size": json.dumps([height, width]),
            "color_mode": "L" if meta.channels == 1 else "RGB",
            "pixel_scale": "1/255",
            "input_layout": "NHWC",
            "resize": "bilinear",
            "preprocessing": (
                f"Convert the image to {mode}, transparent pixels composited onto white; resize to {width}x{height} "
                f"(width x height) with bilinear filtering; scale pixel values to 0..1 (divide by 255); subtract "
                f"mean and divide by std per channel; feed float32 in layout (batch, height, width, channels) as "
                f"input 'image'."
            ),
        })


def _series_input(meta) -> _OnnxInput:
    (length,) = meta.image_size
    return _OnnxInput(
        examples={"series": torch.zeros(2, length, meta.channels), "mask": torch.ones(2, length, dtype=torch.bool)},
        metadata={
            "series_length": str(length),
            "input_layout": "NLC",
            "preprocessing": (
                f"Subtract mean and divide by std per channel (the raw values, no scaling); feed float32 in layout "
                f"(batch, length, channels) as input 'series', each series from the start and padded to length "
                f"{length} (the padding's values do not matter), and bool (batch, length) as input 'mask': true "
                f"where the series holds a value, false on its padding. A series longer than {length} can't be read."
            ),
        })


def _sound_input(meta) -> _OnnxInput:
    """A sound model's input, named after what it is: 'waveform' and 'mel_frames' (batch, length, channels) like a
    series (no mask: every clip is as long), 'log_mel' (batch, mels, frames, 1) like a gray image."""
    d = meta.config.data
    rate, samples = d.sample_rate, clip_samples(d.sample_rate, d.clip_seconds)
    clip = (f"Decode the sound file, average its channels to mono, resample it to {rate} Hz (a polyphase filter, "
            f"as scipy.signal.resample_poly) and keep its first {samples} samples, padding a shorter one with "
            f"zeros (silence) after its end; ")
    metadata = {"audio_input": d.audio_input, "sample_rate": str(rate), "clip_samples": str(samples)}
    if d.audio_input == "waveform":
        (length,) = meta.image_size
        return _OnnxInput(examples={"waveform": torch.zeros(2, length, 1)}, metadata={
            **metadata, "input_layout": "NLC",
            "preprocessing": clip + (f"subtract mean and divide by std (samples in -1..1); feed float32 in layout "
                                     f"(batch, {length}, 1) as input 'waveform'."),
        })
    mel = mel_settings(rate, d.n_mels)
    metadata |= {"n_mels": str(mel.n_mels), "n_fft": str(mel.n_fft), "hop_length": str(mel.hop), "window": "hann",
                 "f_min": repr(mel.f_min), "f_max": repr(mel.f_max), "mel_filterbank": "htk mel scale, slaney norm"}
    spectrogram = (f"take its power spectrogram (|STFT|^2: n_fft {mel.n_fft}, hop {mel.hop}, a periodic Hann window "
                   f"of n_fft, centred frames with zero padding: torch.stft(center=True, pad_mode='constant') or "
                   f"librosa.stft(center=True, pad_mode='constant')), multiply by {mel.n_mels} mel filters "
                   f"(librosa.filters.mel(sr={rate}, n_fft={mel.n_fft}, n_mels={mel.n_mels}, fmin={mel.f_min:g}, "
                   f"fmax={mel.f_max:g}, htk=True, norm='slaney')) and take 10·log10(mel power + 1e-10); ")
    if d.audio_input == "mel_frames":
        (frames,) = meta.image_size
        return _OnnxInput(examples={"mel_frames": torch.zeros(2, frames, meta.channels)}, metadata={
            **metadata, "input_layout": "NLC",
            "preprocessing": clip + spectrogram + (
                f"subtract mean and divide by std per mel band (the lowest first); feed float32 in layout "
                f"(batch, {frames} frames, {mel.n_mels} mels) as input 'mel_frames'."),
        })
    mels, frames = meta.image_size
    return _OnnxInput(examples={"log_mel": torch.zeros(2, mels, frames, 1)}, metadata={
        **metadata, "input_layout": "NHWC",
        "preprocessing": clip + spectrogram + (
            f"subtract mean and divide by std; feed float32 in layout (batch, {mels} mels (the lowest first), "
            f"{frames} frames, 1) as input 'log_mel'."),
    })


def _points_input(meta) -> _OnnxInput:
    """A point cloud model's input 'points' (batch, points, 3): x y z, which are also its positions (the graph
    computes each point's Fourier features from them, as the model does)."""
    (num_points,) = meta.image_size
    return _OnnxInput(examples={"points": torch.zeros(2, num_points, 3)}, metadata={
        "num_points": str(num_points), "centred": "true", "scale": "unit sphere", "input_layout": "NPC",
        "preprocessing": (
            f"Read the cloud's points: a mesh (.ply, .off, .obj, .stl) sampled at {num_points} points on its surface, "
            f"uniformly by area (trimesh.sample.sample_surface); a point list (.xyz, .txt, .npy; x y z first) "
            f"subsampled at random to {num_points} points, or one with fewer padded by repeating some of its points. "
            f"Centre them on their mean and divide by the largest distance from it, so the cloud fills the unit "
            f"sphere (coordinates in -1..1, in the file's axes); mean 0 and std 1 leave them as they are. Feed "
            f"float32 in layout (batch, {num_points} points, 3: x y z) as input 'points'; the points' order does "
            f"not matter."),
    })


# What each kind of model reads as ONNX (datasets.KINDS' keys); a kind not here is refused with a sentence.
_ONNX_INPUTS = {"image": _image_input, "series": _series_input, "audio": _sound_input, "points": _points_input}


def _root_cause(exc: BaseException) -> str:
    """One line for an exporter's error: its innermost cause's first line, without terminal colour codes.
    Its own first line is a heading ("Failed to export the model with torch.export. This is step 1/3 ...")."""
    root = exc
    while root.__cause__ is not None and root.__cause__ is not root:
        root = root.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(root)).strip()
    first = text.splitlines()[0].rstrip(".:") if text else ""
    return f"{type(root).__name__}: {first}" if first else type(root).__name__


class _WithProbabilities(torch.nn.Module):
    """The model with softmax probabilities as a second output (what most users of the file want to read)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, data: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(data, mask=mask)
        return logits, logits.softmax(dim=-1)


def onnx_metadata(meta, kind_metadata: dict[str, str]) -> dict[str, str]:
    """metadata_props for a model's ONNX file: strings, JSON where the value is structured; `kind_metadata`
    says how its kind of input is prepared (its "preprocessing" sentence ends with the outputs here)."""
    return {
        "class_names": json.dumps(list(meta.class_names)),
        "channels": str(meta.channels),
        "mean": json.dumps(list(meta.mean)),
        "std": json.dumps(list(meta.std)),
        **kind_metadata,
        "preprocessing": kind_metadata["preprocessing"] + (
            " Outputs: 'logits' and 'probabilities' (softmax), (batch, classes) in class_names order."),
        "perceiver_gui_version": meta.app_version,
        "config": json.dumps(meta.config.to_dict()),
        "summary": json.dumps(meta.summary, allow_nan=False, default=str),
    }


@contextlib.contextmanager
def _quiet_onnxscript() -> Iterator[None]:
    # Its optimiser logs notes such as "Skipping constant folding ..." as warnings; they are not the user's to act on.
    logger = logging.getLogger("onnxscript")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _check_with_onnxruntime(data: bytes, model, examples: dict[str, torch.Tensor], where: str) -> None:
    try:
        import onnxruntime
    except ImportError:
        return
    import numpy as np

    # Another batch size than the export's, to prove it is free; a mask leaves each row a different length.
    generator = torch.Generator().manual_seed(0)
    feed = {}
    for name, example in examples.items():
        shape = (3, *example.shape[1:])
        if example.dtype == torch.bool:
            kept = torch.tensor([shape[1], max(1, shape[1] // 2), 1])
            feed[name] = torch.arange(shape[1])[None, :] < kept[:, None]
        else:
            feed[name] = torch.randn(shape, generator=generator)
    with torch.no_grad():
        expected = model(*feed.values())[1].numpy()
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(["probabilities"], {name: x.numpy() for name, x in feed.items()})[0]
    if got.shape != expected.shape or not np.allclose(got, expected, atol=1e-4):
        worst = float(np.abs(got - expected).max()) if got.shape == expected.shape else math.inf
        raise ExportError(f"The ONNX export of {where} does not reproduce PyTorch's probabilities (they differ by "
                          f"up to {worst:.2g}), so it was not written; please report this with the model.")
