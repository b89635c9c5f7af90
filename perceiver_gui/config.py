"""Configuration as data: frozen dataclasses, presets, validation and JSON/TOML io.

A `Config` holds three parts: `model` (the keyword arguments of `perceiver_pytorch.Perceiver`
0.11, plus which implementation trains), `data` (which images and how they are prepared) and
`train` (the optimisation recipe). Edits go through `dataclasses.replace` or `Config.with_updates`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import textwrap
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from perceiver_gui.core.datasets import DATASETS as _REGISTRY
from perceiver_gui.core.datasets import download_note, expected_input, fit_model

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "DATASETS",
    "OPTIMIZERS",
    "PRECISIONS",
    "PRESETS",
    "PRESET_NOTES",
    "SCHEDULES",
    "load_config",
    "describe_preset",
    "preset",
    "presets_text",
    "save_config",
]

DATASETS = tuple(_REGISTRY)  # the keys of core/datasets.py's registry, which knows what each one is
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "onecycle")
PRECISIONS = ("float32", "auto", "bfloat16", "float16")
IMPLEMENTATIONS = ("fast", "reference")


class ConfigError(ValueError):
    """A configuration value a user has to change; the message names the field and says how."""


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Keyword arguments of `perceiver_pytorch.Perceiver` 0.11, with the tutorial's values."""

    num_freq_bands: int = 6  # Fourier bands per input axis for the position encoding
    depth: int = 6  # number of cross-attend + latent self-attend blocks
    max_freq: float = 10.0  # highest Fourier frequency (Nyquist for a grid of this size)
    input_channels: int = 3  # channels per input position; comes from the dataset
    input_axis: int = 2  # 2 for images (height, width); comes from the dataset
    num_latents: int = 32  # N, the size of the latent array
    latent_dim: int = 128  # D, width of each latent
    cross_heads: int = 1  # heads of the cross-attention (latents attend to the input)
    latent_heads: int = 2  # heads of the latent self-attention
    cross_dim_head: int = 8  # width of each cross-attention head
    latent_dim_head: int = 8  # width of each latent self-attention head
    num_classes: int = 10  # size of the classifier output; comes from the dataset
    attn_dropout: float = 0.0  # dropout on attention outputs
    ff_dropout: float = 0.0  # dropout inside the feed-forward blocks
    weight_tie_layers: bool = False  # share weights between all blocks after the first
    fourier_encode_data: bool = True  # append Fourier position features to every input
    self_per_cross_attn: int = 1  # latent self-attention layers after each cross-attention
    implementation: str = "fast"  # "fast" (ours) or "reference" (perceiver_pytorch itself)

    def perceiver_kwargs(self) -> dict[str, Any]:
        """The keyword arguments for `Perceiver(...)`, without our own `implementation` switch."""
        kwargs = dataclasses.asdict(self)
        kwargs.pop("implementation")
        return kwargs


@dataclass(frozen=True, slots=True)
class DataConfig:
    """Which images to train on and how they are prepared."""

    dataset: str = "cifar10"  # one of DATASETS; "folder" reads `folder`
    root: str = ""  # where torchvision datasets live; "" means the app's data folder
    folder: str = ""  # an image folder with one subfolder per class (dataset "folder")
    image_size: int = 32  # side in pixels that folder images are resized to
    val_fraction: float = 0.2  # share of a folder dataset held out for testing, per class
    download: bool = True  # fetch torchvision datasets that are not on disk yet
    crop_padding: int = 0  # random-crop augmentation: pad by this many pixels, crop back; 0 = off
    hflip: bool = False  # random horizontal flip augmentation (not for digits or text)


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """The optimisation recipe."""

    optimizer: str = "sgd"  # one of OPTIMIZERS
    lr: float = 0.001  # peak learning rate
    momentum: float = 0.9  # SGD momentum (Adam's beta1 is left at 0.9)
    nesterov: bool = False  # Nesterov momentum for SGD
    weight_decay: float = 0.0  # decoupled for AdamW, L2 for SGD and Adam
    schedule: str = "constant"  # one of SCHEDULES; "cosine" is linear warmup then cosine decay
    warmup_epochs: float = 0.0  # warmup length for "cosine"
    batch_size: int = 4  # images per step
    epochs: int = 2  # passes over the training set
    grad_clip: float = 0.0  # clip the gradient norm to this value; 0 = off
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    mixup: float = 0.0  # mixup's Beta(alpha, alpha) parameter: blend image pairs and their labels; 0 = off
    device: str = "auto"  # "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:1", "mps"
    precision: str = "float32"  # one of PRECISIONS; "auto" = bfloat16 autocast on CUDA, float32 elsewhere
    seed: int = 0  # makes CPU runs repeat exactly
    threads: int = 0  # CPU threads for torch; 0 = all cores but one
    log_every: int = 10  # steps between logged step events in metrics.jsonl


@dataclass(frozen=True, slots=True)
class Config:
    """A whole experiment: model, data and training."""

    name: str = "experiment"  # shown in the runs list and used for the run folder name
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    # -- conversion -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Config:
        """Build a config from plain data; unknown keys and wrong types raise ConfigError."""
        if not isinstance(raw, dict):
            raise ConfigError("A config must be a table of settings, not " + type(raw).__name__ + ".")
        _reject_unknown(raw, cls, "")
        name = raw.get("name", "experiment")
        if not isinstance(name, str):
            raise ConfigError("name must be text.")
        parts = {}
        for part_name, part_cls in (("model", ModelConfig), ("data", DataConfig), ("train", TrainConfig)):
            part = raw.get(part_name, {})
            if not isinstance(part, dict):
                raise ConfigError(f"[{part_name}] must be a table of settings.")
            _reject_unknown(part, part_cls, part_name + ".")
            parts[part_name] = part_cls(**{k: _coerce(part_cls, k, v, part_name) for k, v in part.items()})
        return cls(name=name, **parts)

    def with_updates(self, updates: dict[str, Any]) -> Config:
        """Apply dotted-key updates, e.g. {"train.lr": 0.01}; values are coerced like `from_dict`."""
        raw = self.to_dict()
        for key, value in updates.items():
            section, _, leaf = key.partition(".")
            if not leaf:
                if section != "name":
                    raise ConfigError(f"Unknown setting '{key}'. Use section.name, e.g. train.lr.")
                raw["name"] = value
                continue
            if section not in ("model", "data", "train") or "." in leaf:
                raise ConfigError(f"Unknown setting '{key}'. Sections are model, data and train.")
            raw[section][leaf] = value
        return Config.from_dict(raw)

    def validate(self) -> list[tuple[str, str]]:
        """Every problem as (dotted field, sentence); an empty list means the config can run."""
        return _problems(self)

    def check(self) -> Config:
        """Raise ConfigError with the first problem, or return self."""
        problems = self.validate()
        if problems:
            raise ConfigError(problems[0][1])
        return self


def _reject_unknown(raw: dict[str, Any], cls: type, prefix: str) -> None:
    known = {f.name for f in fields(cls)}
    for key in raw:
        if key not in known:
            raise ConfigError(
                f"Unknown setting '{prefix}{key}'. Known settings here: {', '.join(sorted(known))}."
            )


def _coerce(cls: type, key: str, value: Any, section: str) -> Any:
    """Accept the natural spellings of a value (ints for floats, "3" from the command line)."""
    kind = {f.name: f.type for f in fields(cls)}[key]
    where = f"{section}.{key}"
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
                return value.lower() in ("true", "yes", "on", "1")
            raise ValueError
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind == "str":
            if not isinstance(value, str):
                raise ValueError
            return value
    except (TypeError, ValueError):
        pass
    raise ConfigError(f"{where} must be {'a whole number' if kind == 'int' else 'a ' + kind}, not {value!r}.")


def _problems(cfg: Config) -> list[tuple[str, str]]:
    m, d, t = cfg.model, cfg.data, cfg.train
    out: list[tuple[str, str]] = []

    def need(ok: bool, key: str, sentence: str) -> None:
        if not ok:
            out.append((key, sentence))

    for key in ("depth", "num_latents", "latent_dim", "cross_heads", "latent_heads", "cross_dim_head",
                "latent_dim_head", "input_channels", "input_axis", "self_per_cross_attn"):
        need(getattr(m, key) >= 1, f"model.{key}", f"model.{key} must be at least 1.")
    need(m.num_classes >= 2, "model.num_classes", "model.num_classes must be at least 2.")
    need(m.num_freq_bands >= 1 or not m.fourier_encode_data, "model.num_freq_bands",
         "model.num_freq_bands must be at least 1 while Fourier encoding is on.")
    need(m.max_freq > 0 and math.isfinite(m.max_freq), "model.max_freq", "model.max_freq must be a positive number.")
    for key in ("attn_dropout", "ff_dropout"):
        need(0.0 <= getattr(m, key) < 1.0, f"model.{key}", f"model.{key} must be between 0 and 1 (exclusive).")
    need(m.implementation in IMPLEMENTATIONS, "model.implementation",
         f"model.implementation must be one of {', '.join(IMPLEMENTATIONS)}.")
    need(m.num_latents * m.latent_dim <= 2**26, "model.num_latents",
         "The latent array (num_latents × latent_dim) is too large to fit in memory; make one of them smaller.")

    need(d.dataset in DATASETS, "data.dataset", f"data.dataset must be one of {', '.join(DATASETS)}.")
    need(d.dataset != "folder" or bool(d.folder.strip()), "data.folder",
         "Choose an image folder (one subfolder per class) for the folder dataset.")
    need(4 <= d.image_size <= 512, "data.image_size", "data.image_size must be between 4 and 512 pixels.")
    need(0.0 < d.val_fraction < 1.0, "data.val_fraction", "data.val_fraction must be between 0 and 1 (exclusive).")
    need(0 <= d.crop_padding <= 16, "data.crop_padding", "data.crop_padding must be between 0 and 16 pixels.")

    need(t.optimizer in OPTIMIZERS, "train.optimizer", f"train.optimizer must be one of {', '.join(OPTIMIZERS)}.")
    need(t.schedule in SCHEDULES, "train.schedule", f"train.schedule must be one of {', '.join(SCHEDULES)}.")
    need(t.precision in PRECISIONS, "train.precision", f"train.precision must be one of {', '.join(PRECISIONS)}.")
    need(0.0 < t.lr <= 10.0 and math.isfinite(t.lr), "train.lr", "train.lr must be a positive number no larger than 10.")
    need(0.0 <= t.momentum < 1.0, "train.momentum", "train.momentum must be between 0 and 1 (exclusive).")
    need(not t.nesterov or (t.optimizer == "sgd" and t.momentum > 0), "train.nesterov",
         "Nesterov momentum needs the SGD optimizer with momentum above 0.")
    need(0.0 <= t.weight_decay <= 1.0, "train.weight_decay", "train.weight_decay must be between 0 and 1.")
    need(t.warmup_epochs >= 0 and t.warmup_epochs <= t.epochs, "train.warmup_epochs",
         "train.warmup_epochs must be between 0 and the number of epochs.")
    need(1 <= t.batch_size <= 65536, "train.batch_size", "train.batch_size must be between 1 and 65536.")
    need(1 <= t.epochs <= 10000, "train.epochs", "train.epochs must be between 1 and 10000.")
    need(t.grad_clip >= 0, "train.grad_clip", "train.grad_clip must be 0 (off) or positive.")
    need(0.0 <= t.label_smoothing < 1.0, "train.label_smoothing", "train.label_smoothing must be between 0 and 1.")
    need(0.0 <= t.mixup <= 10.0, "train.mixup", "train.mixup must be 0 (off) or a Beta parameter up to 10 (0.2–0.4 is usual).")
    need(t.device == "auto" or t.device in ("cpu", "mps") or t.device.startswith("cuda"), "train.device",
         "train.device must be auto, cpu, cuda (or cuda:N) or mps.")
    need(t.precision != "float16" or t.device.startswith("cuda") or t.device == "auto", "train.precision",
         "float16 training needs a CUDA GPU; use bfloat16 or float32 on this device.")
    need(t.threads >= 0, "train.threads", "train.threads must be 0 (automatic) or a positive number.")
    need(t.log_every >= 1, "train.log_every", "train.log_every must be at least 1.")
    need(t.seed >= 0, "train.seed", "train.seed must be 0 or a positive whole number.")
    return out


# -- presets ---------------------------------------------------------------------------------
def _recipe(name: str, model: ModelConfig, data: DataConfig, train: TrainConfig) -> Config:
    """A preset whose input channels, axes and classes come from its dataset, as training sets them."""
    return Config(name=name, model=fit_model(model, expected_input(data)), data=data, train=train)


# One per dataset, named after it, each tuned by measurement (benchmarks/README.md, "Presets"), plus the
# tutorial. Every one is a plain Config; the form offers a dataset's preset when the dataset is picked.
PRESETS: dict[str, Config] = {
    # The tutorial, verbatim: it barely learns, and is kept so its result can be reproduced.
    "seed": Config(
        name="seed",
        model=ModelConfig(),
        data=DataConfig(dataset="cifar10"),
        train=TrainConfig(optimizer="sgd", lr=0.001, momentum=0.9, batch_size=4, epochs=2),
    ),
    # Bundled, offline: scikit-learn's 8×8 digits. Tuned by measurement (benchmarks/README.md, "Digits"):
    # one cross-attend block with 8 heads learns fastest per second; mixup is the regulariser that pays
    # within a minute (random crops and affine jitter slow learning more than they help); max_freq 4
    # (smoother than the 8×8 grid's Nyquist) generalises best.
    "digits": Config(
        name="digits",
        model=ModelConfig(
            input_channels=1, num_freq_bands=4, max_freq=4.0, depth=1, num_latents=32, latent_dim=64,
            cross_heads=8, latent_heads=4, cross_dim_head=16, latent_dim_head=16, num_classes=10,
            weight_tie_layers=False,
        ),
        data=DataConfig(dataset="digits", image_size=8, crop_padding=0, hflip=False),
        train=TrainConfig(
            optimizer="adamw", lr=3e-3, weight_decay=0.05, schedule="cosine", warmup_epochs=1, batch_size=16,
            epochs=30, label_smoothing=0.1, grad_clip=1.0, mixup=0.4,
        ),
    ),
    # MNIST: the digits recipe at 28×28 (max_freq half of Nyquist), with 2-pixel random crops because
    # MNIST's digits sit at varying places; measured on MNIST-format files of upsampled, shifted digits
    # (benchmarks/README.md, "Presets").
    "mnist": _recipe(
        "mnist",
        ModelConfig(num_freq_bands=6, max_freq=14.0, depth=1, num_latents=32, latent_dim=64, cross_heads=8,
                    latent_heads=4, cross_dim_head=16, latent_dim_head=16),
        DataConfig(dataset="mnist", crop_padding=2),
        TrainConfig(optimizer="adamw", lr=3e-3, weight_decay=0.05, schedule="cosine", warmup_epochs=1, batch_size=32,
                    epochs=15, label_smoothing=0.1, grad_clip=1.0),
    ),
    # Fashion-MNIST: the MNIST recipe plus horizontal flips (clothes are left-right symmetric).
    "fashion_mnist": _recipe(
        "fashion_mnist",
        ModelConfig(num_freq_bands=6, max_freq=14.0, depth=1, num_latents=32, latent_dim=64, cross_heads=8,
                    latent_heads=4, cross_dim_head=16, latent_dim_head=16),
        DataConfig(dataset="fashion_mnist", crop_padding=2, hflip=True),
        TrainConfig(optimizer="adamw", lr=3e-3, weight_decay=0.05, schedule="cosine", warmup_epochs=1, batch_size=32,
                    epochs=15, label_smoothing=0.1, grad_clip=1.0),
    ),
    # A strong CIFAR-10 recipe: wider latents, AdamW with warmup + cosine, crop + flip.
    "cifar10": Config(
        name="cifar10",
        model=ModelConfig(
            num_freq_bands=8, max_freq=16.0, depth=4, num_latents=128, latent_dim=256, cross_heads=1,
            latent_heads=8, cross_dim_head=64, latent_dim_head=32, ff_dropout=0.1, weight_tie_layers=True,
        ),
        data=DataConfig(dataset="cifar10", crop_padding=4, hflip=True),
        train=TrainConfig(
            optimizer="adamw", lr=1e-3, weight_decay=0.05, schedule="cosine", warmup_epochs=2,
            batch_size=256, epochs=60, label_smoothing=0.1, grad_clip=1.0, precision="auto",
        ),
    ),
    # CIFAR-100: the CIFAR-10 recipe with 100 outputs and more dropout, as 500 images a class overfit sooner.
    "cifar100": _recipe(
        "cifar100",
        ModelConfig(num_freq_bands=8, max_freq=16.0, depth=4, num_latents=128, latent_dim=256, cross_heads=1,
                    latent_heads=8, cross_dim_head=64, latent_dim_head=32, ff_dropout=0.2, weight_tie_layers=True),
        DataConfig(dataset="cifar100", crop_padding=4, hflip=True),
        TrainConfig(optimizer="adamw", lr=1e-3, weight_decay=0.05, schedule="cosine", warmup_epochs=2,
                    batch_size=256, epochs=60, label_smoothing=0.1, grad_clip=1.0, precision="auto"),
    ),
    # An image folder: small and quick, at 32 px (the form sets the size from the images and the max
    # frequency from the size). Measured on 3 shapes × 60 at 32 px it reaches about 64 %, short of the
    # 95 % target: no recipe tried generalised from 144 images (benchmarks/README.md, "Presets").
    "folder": _recipe(
        "folder",
        ModelConfig(num_freq_bands=6, max_freq=16.0, depth=1, num_latents=32, latent_dim=64, cross_heads=8,
                    latent_heads=4, cross_dim_head=16, latent_dim_head=16),
        DataConfig(dataset="folder", image_size=32, crop_padding=2, hflip=True),
        TrainConfig(optimizer="adamw", lr=3e-3, weight_decay=0.05, schedule="cosine", warmup_epochs=3, batch_size=16,
                    epochs=60, grad_clip=1.0),
    ),
}

# One sentence per preset, for the form and `perceiver-gui presets`; `describe_preset` adds the download note.
PRESET_NOTES: dict[str, str] = {
    "seed": "The original tutorial's CIFAR-10 settings, verbatim: it barely learns, and is kept to reproduce it.",
    "digits": "Bundled 8×8 handwritten digits, offline: about 96 % after under a minute of training on 2 CPU cores.",
    "mnist": "MNIST handwritten digits: the digits recipe at 28×28 with random crops; best on a GPU (on 2 CPU "
             "cores an epoch of 60,000 images takes tens of minutes).",
    "fashion_mnist": "Fashion-MNIST clothing photos: the MNIST recipe plus horizontal flips.",
    "cifar10": "CIFAR-10 colour photos: a wide model with crops, flips and a cosine schedule, made for a GPU.",
    "cifar100": "CIFAR-100 colour photos: the CIFAR-10 recipe with 100 classes and more dropout, made for a GPU.",
    "folder": "Your own image folder: a small, quick model with crops and flips; the image size follows your "
              "images.",
}


def describe_preset(name: str) -> str:
    """The preset's sentence, and what must be downloaded before its first Start."""
    note = PRESET_NOTES.get(name, "")
    download = download_note(PRESETS[name].data.dataset) if name in PRESETS else ""
    return " ".join(part for part in (note, download) if part)


def presets_text(width: int = 100) -> str:
    """Every preset with its sentence and download note, for `perceiver-gui train --help`."""
    lines = ["presets:"]
    for name in PRESETS:
        lines += textwrap.wrap(describe_preset(name), width, initial_indent=f"  {name:15s}", subsequent_indent=" " * 17,
                               break_on_hyphens=False)
    return "\n".join(lines)


def preset(name: str) -> Config:
    """A preset by name; an unknown name lists the ones there are."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"There is no preset '{name}'. Presets: {', '.join(PRESETS)}.") from None


# -- files -----------------------------------------------------------------------------------
def load_config(path: str | Path) -> Config:
    """Read a config from a .json or .toml file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Could not read the config file {path}: {exc.strerror or exc}.") from None
    try:
        raw = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path.name} is not valid {path.suffix.lstrip('.').upper() or 'JSON'}: {exc}.") from None
    return Config.from_dict(raw)


def save_config(cfg: Config, path: str | Path) -> Path:
    """Write a config as .toml or .json (by the file's suffix), atomically."""
    from perceiver_gui.core.files import atomic_write_text

    path = Path(path)
    text = to_toml(cfg) if path.suffix.lower() == ".toml" else json.dumps(cfg.to_dict(), indent=2) + "\n"
    atomic_write_text(path, text)
    return path


def to_toml(cfg: Config) -> str:
    """TOML text for a config: flat tables of scalars, so a tiny writer is enough."""
    lines = [f"name = {_toml_value(cfg.name)}"]
    for section in ("model", "data", "train"):
        lines.append(f"\n[{section}]")
        for key, value in dataclasses.asdict(getattr(cfg, section)).items():
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf"))
    if isinstance(value, int):
        return str(value)
    # A JSON string is a TOML basic string, as long as characters beyond the BMP stay literal
    # (JSON would escape them as surrogate pairs, which TOML rejects).
    return json.dumps(value, ensure_ascii=False)
