"""Checkpoints: safetensors for tensors, JSON for everything else, written atomically, never pickled.

Two kinds of file, both one safetensors file whose header metadata holds our JSON under the key
`perceiver_gui`:

* a model (`model.safetensors`): the state_dict under its own names, plus a `ModelMeta` (config,
  class names, normalisation, input size, training summary) so the file alone is enough to predict;
* a training state (`resume.safetensors`): model, optimizer, scheduler, grad scaler and progress
  (step, epoch, RNG states, ...) as one tree; tensors live in the safetensors body and the tree
  refers to them by key.

Every reader checks the file before any parser sees it — the header length against the file size,
the data offsets against the file size, our metadata and its format version — and turns whatever is
wrong into one `CheckpointError` sentence. Nothing from a file is ever executed: there is no pickle
here, only `json` and the safetensors reader.
"""

from __future__ import annotations

import io
import json
import math
import numbers
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save

from perceiver_gui import __version__
from perceiver_gui.config import Config, ConfigError
from perceiver_gui.core.files import atomic_write_bytes
from perceiver_gui.core.reading import open_regular

__all__ = [
    "FORMAT",
    "CheckpointError",
    "ModelMeta",
    "TrainingState",
    "check_state_dict",
    "load_model",
    "load_training_state",
    "read_meta",
    "save_model",
    "save_training_state",
]

FORMAT = "perceiver-gui/1"
_FORMAT_PREFIX = "perceiver-gui/"
_FORMAT_VERSION = 1
_META_KEY = "perceiver_gui"  # the one safetensors metadata entry that holds our JSON
_MAX_HEADER = 100 * 1024 * 1024  # the safetensors library's own limit; a larger claim is garbage
_KIND_MODEL = "model"
_KIND_TRAINING = "training_state"
_TRAINING_PARTS = ("model", "optimizer", "scheduler", "scaler", "progress", "rng")


def accuracy_text(summary: Mapping[str, Any]) -> str:
    """The accuracies of a model file's training summary, each with its split: "best validation 95.6%
    (epoch 12) · test 94.9%". Files of older versions hold best_acc, a test accuracy they were chosen on."""
    from perceiver_gui.core.runs import SELECTED_ON_TEST, describe_accuracy

    def number(key: str) -> float:
        value = summary.get(key)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan

    epoch = summary.get("best_epoch")
    epoch = epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else 0
    if "selected_on" not in summary and "best_acc" in summary:  # an older version's model file
        return describe_accuracy(best_acc=number("best_acc"), best_epoch=epoch, selected_on=SELECTED_ON_TEST,
                                 test_acc=math.nan)
    selected_on = summary.get("selected_on")
    return describe_accuracy(best_acc=number("best_val_acc"), best_epoch=epoch,
                             selected_on=selected_on if isinstance(selected_on, str) else "",
                             test_acc=number("test_acc"))


class CheckpointError(Exception):
    """A file that cannot be used as a checkpoint; the message is one sentence naming it."""


# -- model files -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelMeta:
    """Everything besides the weights that prediction needs, stored inside every model file."""

    config: Config  # the whole experiment; config.model rebuilds the network
    class_names: tuple[str, ...]  # label of each output, in logit order
    mean: tuple[float, ...]  # per-channel normalisation, as in training: 0..1 units for images, a series' own
    std: tuple[float, ...]
    image_size: tuple[int, ...]  # (H, W) that images are resized to; (L,) that series are padded to (input_axis 1);
    # (P,) the points sampled from each mesh or point list (a points model), which read_points centres in the
    # unit sphere, the normalisation its mean 0 and std 1 then leave as it is
    channels: int  # 1 (grey) or 3 (RGB); a series' channels
    # best_val_acc, best_epoch, selected_on, test_acc, test_loss, epochs_done, ... (see `accuracy_text`)
    summary: dict[str, Any] = field(default_factory=dict)
    app_version: str = __version__  # the Perceiver GUI that wrote the file
    format: str = FORMAT

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "kind": _KIND_MODEL,
            "app_version": self.app_version,
            "config": self.config.to_dict(),
            "class_names": list(self.class_names),
            "mean": list(self.mean),
            "std": list(self.std),
            "image_size": list(self.image_size),
            "channels": self.channels,
            # NaN is not JSON; a summary of a diverged run says "no value" instead.
            "summary": _finite_or_none(dict(self.summary)),
        }


def save_model(path: str | Path, state_dict: Mapping[str, torch.Tensor], meta: ModelMeta) -> Path:
    """Write weights and meta to one safetensors file, atomically; returns the path."""
    raw = meta.to_json()
    try:
        _meta_from_json(raw, "the model being saved")  # the file must be one our reader accepts
    except CheckpointError as exc:
        raise ValueError(str(exc)) from None
    tensors, aliases = _pack(state_dict)
    raw["aliases"] = aliases
    # "format": "pt" is the Hugging Face convention, so other safetensors tools recognise the file.
    data = _st_save(tensors, metadata={"format": "pt", _META_KEY: json.dumps(raw, allow_nan=False)})
    return atomic_write_bytes(path, data)


def read_meta(path: str | Path) -> ModelMeta:
    """The meta of a model file, reading only its header (fast, whatever the model's size)."""
    path = Path(path)
    with _open(path) as fh:
        raw, _ = _read_header(fh, _size(fh), str(path))
    _expect_kind(raw, _KIND_MODEL, str(path))
    return _meta_from_json(raw, str(path))


def load_model(path: str | Path) -> tuple[dict[str, torch.Tensor], ModelMeta]:
    """The state_dict (CPU tensors) and meta of a model file."""
    path = Path(path)
    where = str(path)
    data = _read_all(path)
    raw, names = _read_header(io.BytesIO(data), len(data), where)
    _expect_kind(raw, _KIND_MODEL, where)
    meta = _meta_from_json(raw, where)
    tensors = _load_tensors(data, names, where)
    aliases = raw.get("aliases", {})
    if not isinstance(aliases, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v in tensors and k not in tensors for k, v in aliases.items()
    ):
        raise CheckpointError(f"{where} is damaged: its list of shared weights does not match its tensors.")
    for name, target in aliases.items():
        tensors[name] = tensors[target]  # tied weights come back as one tensor under both names
    return tensors, meta


def check_state_dict(state_dict: Mapping[str, torch.Tensor], model: torch.nn.Module) -> None:
    """Raise CheckpointError (one sentence) unless `state_dict` has exactly the model's names and shapes."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [
        f"'{k}' is {_shape(state_dict[k])} where the model has {_shape(expected[k])}"
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{_count(len(missing), 'weight')} missing (such as '{missing[0]}')")
    if unexpected:
        problems.append(f"{_count(len(unexpected), 'unknown weight')} (such as '{unexpected[0]}')")
    if wrong:
        problems.append(f"{_count(len(wrong), 'weight')} of the wrong shape ({wrong[0]})")
    if problems:
        raise CheckpointError(
            "The weights do not fit the model described by the checkpoint's config: " + "; ".join(problems) + "."
        )


# -- training state --------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainingState:
    """What `load_training_state` returns: each part ready for the matching `load_state_dict`."""

    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]  # {"state": {int: {...}}, "param_groups": [...]}, as the optimizer made it
    scheduler_state: dict[str, Any]
    scaler_state: dict[str, Any] | None
    progress: dict[str, Any]  # step, epoch, best_acc, elapsed, ... as saved
    rng: dict[str, Any]  # random states as saved, e.g. {"rng.cpu": uint8 tensor, "rng.cuda": ...}
    app_version: str


def save_training_state(
    path: str | Path,
    *,
    model_state: Mapping[str, torch.Tensor],
    optimizer_state: Mapping[str, Any],
    scheduler_state: Mapping[str, Any],
    scaler_state: Mapping[str, Any] | None,
    progress: Mapping[str, Any],
    rng: Mapping[str, Any] | None = None,
) -> Path:
    """Everything resume needs in one safetensors file, atomically; returns the path.

    `rng` holds random states (torch.get_rng_state(), Generator.get_state(), CUDA states: uint8
    tensors). Each part may hold tensors, numbers (NaN and infinities included), strings, None, and lists,
    tuples and dicts of them (dict keys: str, int, ...); they come back with the same types.
    """
    enc = _TreeEncoder()
    raw = {
        "format": FORMAT,
        "kind": _KIND_TRAINING,
        "app_version": __version__,
        "model": enc.encode(dict(model_state), ("model",)),
        "optimizer": enc.encode(dict(optimizer_state), ("optim",)),
        "scheduler": enc.encode(dict(scheduler_state), ("sched",)),
        "scaler": None if scaler_state is None else enc.encode(dict(scaler_state), ("scaler",)),
        "progress": enc.encode(dict(progress), ("progress",)),
        "rng": enc.encode(dict(rng or {}), ()),  # keys such as "rng.cpu" name their tensors as they are
    }
    data = _st_save(enc.tensors, metadata={"format": "pt", _META_KEY: json.dumps(raw, allow_nan=False)})
    return atomic_write_bytes(path, data)


def load_training_state(path: str | Path) -> TrainingState:
    """Read a file written by `save_training_state`."""
    path = Path(path)
    where = str(path)
    data = _read_all(path)
    raw, names = _read_header(io.BytesIO(data), len(data), where)
    _expect_kind(raw, _KIND_TRAINING, where)
    tensors = _load_tensors(data, names, where)
    try:
        parts = {key: _decode(raw[key], tensors) for key in _TRAINING_PARTS}
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{where} is damaged: its training state is incomplete or malformed.") from None
    optimizer = parts["optimizer"]
    if not (
        all(isinstance(parts[k], dict) for k in ("model", "optimizer", "scheduler", "progress", "rng"))
        and isinstance(parts["scaler"], dict | None)
        and all(isinstance(v, torch.Tensor) for v in parts["model"].values())
        and isinstance(optimizer.get("state"), dict)
        and isinstance(optimizer.get("param_groups"), list)
    ):
        raise CheckpointError(f"{where} is damaged: its training state is incomplete or malformed.")
    return TrainingState(
        model_state=parts["model"],
        optimizer_state=optimizer,
        scheduler_state=parts["scheduler"],
        scaler_state=parts["scaler"],
        progress=parts["progress"],
        rng=parts["rng"],
        app_version=str(raw.get("app_version", "")),
    )


# -- reading, defensively --------------------------------------------------------------------
def _open(path: Path) -> BinaryIO:
    where = str(path)
    if path.is_dir():
        hint = " inside it" if (path / "model.safetensors").is_file() else ""
        raise CheckpointError(f"{where} is a folder, not a checkpoint file; choose the model.safetensors file{hint}.")
    try:
        return open_regular(path)  # a FIFO or device would block or never end: refused, never opened
    except FileNotFoundError:
        raise CheckpointError(f"There is no checkpoint file at {where}.") from None
    except OSError as exc:
        raise CheckpointError(f"Could not open {where}: {exc.strerror or exc}.") from None


def _size(fh: BinaryIO) -> int:
    fh.seek(0, io.SEEK_END)
    size = fh.tell()
    fh.seek(0)
    return size


def _read_all(path: Path) -> bytes:
    with _open(path) as fh:
        try:
            return fh.read()
        except OSError as exc:
            raise CheckpointError(f"Could not read {path}: {exc.strerror or exc}.") from None


def _read_header(fh: BinaryIO, size: int, where: str) -> tuple[dict[str, Any], list[str]]:
    """Check the safetensors framing against the file size and return (our JSON, tensor names).

    Only the 8-byte length and the header are read, and only after the length has been checked,
    so a hostile length can neither make us allocate gigabytes nor read past the file.
    """
    if size == 0:
        raise CheckpointError(f"{where} is empty (0 bytes); it was probably cut off while being written or copied.")
    head = fh.read(8)
    length = int.from_bytes(head, "little")
    # A real header's length can begin with the same bytes as a pickle, so other formats are only
    # named when the file does not frame a safetensors header.
    if not (len(head) == 8 and 2 <= length <= _MAX_HEADER and fh.read(1) == b"{"):
        _refuse_foreign(head, fh, where)
    fh.seek(8)
    if size < 8:
        raise CheckpointError(f"{where} is not a Perceiver GUI checkpoint: at {size} bytes it is too short to be one.")
    if length > size - 8 or length < 2 or length > _MAX_HEADER:
        start = fh.read(2)
        if start == b'{"' and 2 <= length <= _MAX_HEADER:
            raise CheckpointError(
                f"{where} is cut short ({size} bytes, its header alone needs {length + 8}); "
                "it was probably interrupted while being copied or downloaded."
            )
        raise CheckpointError(f"{where} is not a Perceiver GUI checkpoint (it is not a safetensors file).")
    try:
        header = json.loads(fh.read(length).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        header = None
    if not isinstance(header, dict):
        raise CheckpointError(f"{where} is not a Perceiver GUI checkpoint (its header is not a safetensors header).")
    names = [k for k in header if k != "__metadata__"]
    end = 0
    for name in names:
        entry = header[name]
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in offsets)
            and offsets[0] <= offsets[1]
        ):
            raise CheckpointError(f"{where} is damaged: the header entry for tensor '{name}' is malformed.")
        end = max(end, offsets[1])
    if size < 8 + length + end:
        raise CheckpointError(
            f"{where} is cut short ({size} of {8 + length + end} bytes); "
            "it was probably interrupted while being copied or downloaded."
        )
    if size > 8 + length + end:
        raise CheckpointError(f"{where} is damaged: it has {size - 8 - length - end} unexpected bytes after its data.")
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or _META_KEY not in meta:
        raise CheckpointError(
            f"{where} is a safetensors file but not a Perceiver GUI checkpoint (it has no perceiver_gui "
            "metadata); it was probably saved by another program."
        )
    try:
        raw = json.loads(meta[_META_KEY])
    except (TypeError, ValueError, RecursionError):
        raw = None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{where} is damaged: its Perceiver GUI metadata is not valid JSON.")
    fmt = raw.get("format")
    version = fmt[len(_FORMAT_PREFIX):] if isinstance(fmt, str) and fmt.startswith(_FORMAT_PREFIX) else ""
    if not version.isdigit():
        raise CheckpointError(f"{where} is damaged: its metadata names no Perceiver GUI format ({fmt!r}).")
    if int(version) > _FORMAT_VERSION:
        raise CheckpointError(
            f"{where} was saved by a newer Perceiver GUI (format {fmt}, this is version {__version__}, "
            f"which reads {FORMAT}); update Perceiver GUI to open it."
        )
    return raw, names


def _refuse_foreign(head: bytes, fh: BinaryIO, where: str) -> None:
    """Name the formats people most often pick by mistake, from their first bytes."""
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:  # pickle PROTO opcode
        raise CheckpointError(
            f"{where} is a Python pickle; Perceiver GUI never loads pickles because they can run code, "
            "so export the weights to safetensors or train the model here."
        )
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        fh.seek(0)
        try:
            names = zipfile.ZipFile(fh).namelist()  # reads the zip directory only, runs nothing
        except (zipfile.BadZipFile, OSError, ValueError):
            names = []
        if any(n.endswith("data.pkl") for n in names):
            raise CheckpointError(
                f"{where} is a PyTorch zip checkpoint (.pt/.pth), which holds a pickle that can run code; "
                "export it to safetensors with safetensors.torch.save_file, or open a model trained here."
            )
        raise CheckpointError(f"{where} is a zip archive, not a Perceiver GUI checkpoint (a .safetensors file).")
    for magic, kind in ((b"\x89HDF", "an HDF5 (Keras) file"), (b"\x93NUMPY", "a NumPy array file"),
                        (b"GGUF", "a GGUF model file")):
        if head.startswith(magic):
            raise CheckpointError(f"{where} is {kind}, not a Perceiver GUI checkpoint (a .safetensors file).")


def _expect_kind(raw: dict[str, Any], kind: str, where: str) -> None:
    found = raw.get("kind")
    if found == kind:
        return
    if found == _KIND_TRAINING:
        raise CheckpointError(
            f"{where} is a training-resume file, not a model; use the model.safetensors file next to it."
        )
    if found == _KIND_MODEL:
        raise CheckpointError(f"{where} is a model file, not a training-resume file; resume from the run's folder.")
    raise CheckpointError(f"{where} is damaged: its metadata does not say what kind of checkpoint it is.")


def _load_tensors(data: bytes, names: list[str], where: str) -> dict[str, torch.Tensor]:
    try:
        tensors = _st_load(data)
    except Exception as exc:  # the Rust reader's SafetensorError and friends; the message says what
        raise CheckpointError(f"{where} is damaged: its tensors cannot be read ({_clause(exc)}).") from None
    if sorted(tensors) != sorted(names):
        raise CheckpointError(f"{where} is damaged: its tensors do not match its header.")
    return tensors


def _meta_from_json(raw: dict[str, Any], where: str) -> ModelMeta:
    try:
        config = Config.from_dict(raw.get("config"))
    except ConfigError as exc:
        raise CheckpointError(
            f"{where} holds a config this version of Perceiver GUI cannot read ({_clause(exc)})."
        ) from None
    model_problems = [sentence for key, sentence in config.validate() if key.startswith("model.")]
    if model_problems:
        raise CheckpointError(f"{where} describes a model that cannot be built ({_clause(model_problems[0])}).")

    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{where} is damaged: its metadata has {what}.")

    names, mean, std = raw.get("class_names"), raw.get("mean"), raw.get("std")
    size, channels, summary = raw.get("image_size"), raw.get("channels"), raw.get("summary", {})
    if not isinstance(channels, int) or isinstance(channels, bool) or channels != config.model.input_channels:
        raise bad("a channel count that does not match its model")
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)
            and len(names) == config.model.num_classes):
        raise bad("class names that do not match its model's outputs")
    for values in (mean, std):
        if not (isinstance(values, list) and len(values) == channels
                and all(_is_number(v) and math.isfinite(v) for v in values)):
            raise bad("normalisation values that do not match its channels")
    if not all(v > 0 for v in std):
        raise bad("a standard deviation that is not positive")
    points = config.model.positions == "points"
    if config.model.input_axis not in (1, 2) and not points:
        raise bad("a model that takes neither images nor series (input_axis is not 2 or 1)")
    # A cloud is one axis of points whatever input_axis its coordinates span: its size is (num_points,).
    if not (isinstance(size, list) and len(size) == (1 if points else config.model.input_axis)
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size)):
        raise bad("an invalid image size or series length")
    if not isinstance(summary, dict):
        raise bad("an invalid training summary")
    return ModelMeta(
        config=config,
        class_names=tuple(names),
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        image_size=tuple(size),
        channels=channels,
        summary=summary,
        app_version=str(raw.get("app_version", "")),
        format=raw["format"],
    )


# -- tensors in, tensors out -----------------------------------------------------------------
def _identity(t: torch.Tensor) -> tuple | None:
    """Equal for two names of one tensor (tied weights); None where sharing cannot be told apart."""
    if t.numel() == 0:
        return None
    return (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)


def _to_storable(t: torch.Tensor, storages: set) -> torch.Tensor:
    """A CPU tensor safetensors accepts: contiguous and sharing memory with no other stored tensor."""
    key = (t.device, t.untyped_storage().data_ptr()) if t.numel() else None
    t = t.detach()
    shared = key is not None and key in storages
    if key is not None:
        storages.add(key)
    t = t.to("cpu").contiguous()
    return t.clone() if shared else t


def _pack(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Unique tensors to store, and {other name: stored name} for names of the same tensor."""
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    storages: set = set()
    for name, t in state_dict.items():
        if not isinstance(name, str) or not isinstance(t, torch.Tensor):
            raise TypeError(f"A state_dict maps names to tensors; got {name!r}: {type(t).__name__}.")
        ident = _identity(t)
        if ident is not None and ident in seen:
            aliases[name] = seen[ident]
            continue
        if ident is not None:
            seen[ident] = name
        tensors[name] = _to_storable(t, storages)
    return tensors, aliases


class _TreeEncoder:
    """Plain JSON for a tree of dicts/lists/tuples/scalars; tensors go to `self.tensors` by key.

    Tags keep what JSON would lose: {"$tensor": key}, {"$tuple": [...]}, {"$dict": [[k, v], ...]}
    (dicts whose keys are not all strings, e.g. an optimizer's int parameter indices) and
    {"$float": "nan" | "inf" | "-inf"}.
    """

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self._seen: dict[tuple, str] = {}
        self._storages: set = set()

    def encode(self, value: Any, path: tuple[str, ...]) -> Any:
        if isinstance(value, torch.Tensor):
            ident = _identity(value)
            if ident is not None and ident in self._seen:
                return {"$tensor": self._seen[ident]}  # tied weights stay one tensor
            key = ".".join(path)
            while key in self.tensors:
                key += "~"
            self.tensors[key] = _to_storable(value, self._storages)
            if ident is not None:
                self._seen[ident] = key
            return {"$tensor": key}
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, numbers.Integral):
            return int(value)
        if isinstance(value, numbers.Real):
            value = float(value)
            return value if math.isfinite(value) else {"$float": repr(value)}
        if isinstance(value, tuple):
            return {"$tuple": [self.encode(v, (*path, str(i))) for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [self.encode(v, (*path, str(i))) for i, v in enumerate(value)]
        if isinstance(value, Mapping):
            if all(isinstance(k, str) and not k.startswith("$") for k in value):
                return {k: self.encode(v, (*path, k)) for k, v in value.items()}
            return {"$dict": [[self.encode(k, (*path, "key")), self.encode(v, (*path, str(k)))]
                              for k, v in value.items()]}
        raise TypeError(f"Cannot store a {type(value).__name__} at {'.'.join(path)} in a training state.")


def _decode(value: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (tag, inner), = value.items()
        if tag == "$tensor":
            return tensors[inner]
        if tag == "$tuple":
            return tuple(_decode(v, tensors) for v in inner)
        if tag == "$dict":
            return {_hashable(_decode(k, tensors)): _decode(v, tensors) for k, v in inner}
        if tag == "$float":
            if inner not in ("nan", "inf", "-inf"):
                raise ValueError(inner)
            return float(inner)
    if any(k.startswith("$") for k in value):
        raise ValueError("unknown tag")
    return {k: _decode(v, tensors) for k, v in value.items()}


def _hashable(key: Any) -> Any:
    hash(key)  # a TypeError here means a damaged file, reported by the caller
    return key


# -- small words -----------------------------------------------------------------------------
def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(v) for v in value]
    return value


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _shape(t: Any) -> str:
    return "(" + ", ".join(str(d) for d in tuple(t.shape)) + ")"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _clause(message: Any) -> str:
    """The first sentence of a message, as a clause that fits inside another sentence's parentheses."""
    return str(message).strip().split(". ", 1)[0].splitlines()[0].rstrip(".") if str(message).strip() else "no reason given"
