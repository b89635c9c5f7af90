"""Configuration as data: frozen dataclasses, presets, validation and JSON/TOML io.

A `Config` holds three parts: `model` (the keyword arguments of `perceiver_pytorch.Perceiver`
0.11, plus which implementation trains), `data` (which images and how they are prepared) and
`train` (the optimisation recipe). Edits go through `dataclasses.replace` or `Config.with_updates`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import textwrap
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from perceiver_gui.core.datasets import DATASETS as _REGISTRY
from perceiver_gui.core.datasets import download_note, expected_input, fit_model, mel_settings

__all__ = [
    "CONFIG_SUFFIXES",
    "Config",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "AUDIO_INPUTS",
    "DATASETS",
    "OPTIMIZERS",
    "PRECISIONS",
    "PRESETS",
    "PRESET_NOTES",
    "COMPILE_MODES",
    "SCHEDULES",
    "load_config",
    "describe_preset",
    "preset",
    "presets_text",
    "save_config",
]

CONFIG_SUFFIXES = (".toml", ".json")  # the files load_config reads and save_config writes (by suffix)
DATASETS = tuple(_REGISTRY)  # the keys of core/datasets.py's registry, which knows what each one is
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "onecycle")
PRECISIONS = ("float32", "auto", "bfloat16", "float16")
IMPLEMENTATIONS = ("fast", "reference")
POSITIONS = ("grid", "points")  # model.positions: the input grid's places, or each point's own coordinates
COMPILE_MODES = ("off", "default", "reduce-overhead")
# data.audio_input (core/audio.py): the raw samples (input_axis 1), a log-mel spectrogram read as a mel × time grid
# (input_axis 2), or its frames read over time with the mel bands as channels (input_axis 1).
AUDIO_INPUTS = ("waveform", "log_mel", "mel_frames")


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
    # Where the position features come from; comes from the dataset: "grid" (each input's place on the
    # image or series grid, as upstream) or "points" (each point's own coordinates, for point clouds).
    positions: str = "grid"

    def perceiver_kwargs(self) -> dict[str, Any]:
        """The keyword arguments for `Perceiver(...)`, without our own `implementation` and `positions` switches."""
        kwargs = dataclasses.asdict(self)
        kwargs.pop("implementation")
        kwargs.pop("positions")
        return kwargs


@dataclass(frozen=True, slots=True)
class DataConfig:
    """Which images to train on and how they are prepared."""

    dataset: str = "cifar10"  # one of DATASETS; "folder" reads `folder`
    root: str = ""  # where torchvision datasets live; "" means the app's data folder
    folder: str = ""  # an image folder with one subfolder per class (dataset "folder")
    train_file: str = ""  # a .ts, .csv or .npy file of labelled series (dataset "sequences")
    test_file: str = ""  # its test series; "" = hold out test_fraction of train_file
    label_column: str = ""  # a CSV's label column: "first", "last" or a header name; "" = "label" if named, else first
    # A UCR/UEA archive problem by name (e.g. GunPoint), used when train_file is "": its <name>_TRAIN.ts and
    # _TEST.ts in root/UCR/<name>, downloaded there first if they are not.
    ucr_problem: str = ""
    image_size: int = 32  # side in pixels that folder images are resized to
    # Validation: a share of each class of the training split, held out to choose the best epoch, stop early
    # and score sweeps, so the test split is only ever evaluated once, for the model chosen. 0 = none (the
    # last epoch is kept). Drawn with split_seed, not train.seed, so runs with other seeds validate alike.
    val_fraction: float = 0.1
    split_seed: int = 0  # seed of the validation split (the same on every run and resume of one config)
    test_fraction: float = 0.2  # share of each class of a folder dataset held out for testing
    download: bool = True  # fetch torchvision datasets that are not on disk yet
    crop_padding: int = 0  # random-crop augmentation: pad by this many pixels, crop back; 0 = off
    hflip: bool = False  # random horizontal flip augmentation (not for digits or text)
    num_points: int = 1024  # points per cloud (dataset "points_folder"): sampled on a mesh, or a list's subset
    rotate: bool = False  # point clouds: a random rotation about the up (z) axis, for shapes that stand upright
    jitter: float = 0.0  # point clouds: Gaussian noise of this σ on every coordinate (the cloud's radius is 1)
    # Audio (dataset "audio_folder", read by core/audio.py; `folder` holds one subfolder per class). Every clip
    # is resampled to sample_rate and cropped or padded to clip_seconds; the checkpoint's config keeps these,
    # so prediction prepares sounds the same way.
    sample_rate: int = 16_000  # Hz; 16 kHz holds speech and most everyday sounds (up to 8 kHz)
    clip_seconds: float = 1.0  # the first this many seconds of each file; shorter files end in silence
    audio_input: str = "mel_frames"  # one of AUDIO_INPUTS: "waveform", "log_mel" (a mel × time grid) or "mel_frames"
    n_mels: int = 40  # mel bands of the log-mel spectrogram (25 ms windows every 10 ms)
    time_shift: float = 0.0  # augmentation: shift each clip by up to this many seconds, silence filling in; 0 = off
    gain_db: float = 0.0  # augmentation: make each clip up to this many dB louder or quieter; 0 = off
    # An image folder's objects on a plain background are cut out, centred and scaled to fill the frame
    # (as MNIST's digits were), for training and prediction alike; pictures without a plain border are kept.
    crop_to_content: bool = False


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
    # One of PRECISIONS. "auto": bfloat16 autocast where the run's device computes it natively (CUDA compute
    # capability 8.0+, Apple GPUs on macOS 14+), float16 with a grad scaler on older CUDA GPUs, float32 on CPUs.
    precision: str = "float32"
    # TensorFloat-32 for float32 matmuls on CUDA (Ampere+): ~8x their speed for a 10-bit mantissa in the
    # products, which training tolerates; off = full float32. No effect on CPU, MPS or autocast runs.
    tf32: bool = True
    # torch.compile the model: "off", "default", or "reduce-overhead" (CUDA graphs on a GPU). Compiling
    # takes seconds to minutes at the start of each session and pays back over long runs.
    compile: str = "off"
    # Seconds between saves of the ~28 MiB resume file at epoch ends (always saved at stop, end and
    # Ctrl+C); a crash loses at most this much training. 0 = every epoch.
    save_every_s: float = 60.0
    seed: int = 0  # makes CPU runs repeat exactly
    threads: int = 0  # CPU threads for torch; 0 = all cores but one
    processes: int = 1  # processes training together (one per GPU, or a few on a CPU); batch_size is split over them
    log_every: int = 10  # steps between logged step events in metrics.jsonl
    early_stop_patience: int = 0  # stop after this many epochs without a better validation accuracy; 0 = off


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


# Sane ranges (low, high), inclusive unless named in _OPEN: generous for a Perceiver on images, tight enough
# that a typo (depth 10000, heads 1e8, seed 1e23, grad_clip inf) is refused here with a sentence instead of
# failing later in the allocator or in torch. NaN and infinities fall outside every range. The form's spin
# boxes (ui/hyperparams.py) use the same limits.
RANGES: dict[str, tuple[float, float]] = {
    "model.num_freq_bands": (0, 64),  # the paper uses 6 (images) to 64 (audio); 0 only without Fourier features
    "model.depth": (1, 64),  # the paper's deepest image model has 8 blocks (48 with 6 self-attention each)
    "model.max_freq": (0, 1000),  # about the image side is full detail; 512 px images need 512 at most
    "model.input_channels": (1, 64),  # set from the data (1 or 3); room for multispectral inputs
    "model.input_axis": (1, 3),  # 1-D signals, images, volumes
    "model.num_latents": (1, 4096),  # the paper uses 512 for ImageNet
    "model.latent_dim": (1, 4096),  # the paper uses 1024
    "model.cross_heads": (1, 64),  # the paper uses 1
    "model.latent_heads": (1, 64),  # the paper uses 8
    "model.cross_dim_head": (1, 1024),  # the paper's cross head is 261 wide
    "model.latent_dim_head": (1, 1024),  # the paper uses 128
    "model.num_classes": (2, 100_000),  # set from the data; ImageNet-21k has 21,841
    "model.attn_dropout": (0, 1),  # a probability; 1 would drop everything
    "model.ff_dropout": (0, 1),
    "model.self_per_cross_attn": (1, 16),  # the paper uses 6
    "data.image_size": (4, 512),  # below 4 px nothing is left to see; the attention cost grows with side²
    "data.val_fraction": (0, 0.5),  # a share of each class of the training split; 0 = no validation split
    "data.split_seed": (0, 2**31 - 1),
    "data.test_fraction": (0, 1),  # a share of each class of a folder; both splits need images
    "data.crop_padding": (0, 16),  # half of a 32 px image
    "data.num_points": (16, 65_536),  # fewer hold no shape; the cross-attention's cost grows with the points
    "data.jitter": (0, 0.5),  # σ in units of the cloud's radius; half of it blurs any shape away
    "data.sample_rate": (1000, 192_000),  # telephone speech is 8 kHz; studio audio goes to 192 kHz
    "data.clip_seconds": (0, 60),  # a minute of 16 kHz waveform is 960,000 inputs, already far past the memory
    "data.n_mels": (1, 256),  # 40–128 is usual
    "data.time_shift": (0, 60),  # at most the clip (checked below)
    "data.gain_db": (0, 40),  # ±40 dB is 100× louder or quieter; 6–12 dB is usual
    "train.lr": (0, 10),  # beyond 10 every optimizer here diverges
    "train.momentum": (0, 1),  # 1 would never forget a gradient
    "train.weight_decay": (0, 1),  # 1 pulls the weights to zero each step
    "train.warmup_epochs": (0, 10_000),  # and at most the number of epochs (checked below)
    "train.batch_size": (1, 65_536),
    "train.epochs": (1, 10_000),
    "train.grad_clip": (0, 1000),  # 0 = off; gradient norms of a working run are ~0.1–10
    "train.label_smoothing": (0, 1),  # 1 would teach the uniform distribution
    "train.mixup": (0, 10),  # Beta(alpha, alpha); 0.2–0.4 is usual, 10 already mixes nearly 50/50
    "train.seed": (0, 2**31 - 1),  # what every seeded library (and the form's spin box) accepts
    "train.threads": (0, 1024),  # 0 = automatic
    "train.processes": (1, 1024),  # one per GPU of a node; a DGX has 8
    "train.log_every": (1, 100_000),
    "train.save_every_s": (0, 86_400),  # a day; longer would leave a crash with nothing to resume from
    "train.early_stop_patience": (0, 10_000),  # epochs; 0 = off
}
# Ranges whose ends are excluded: (low excluded, high excluded).
_OPEN: dict[str, tuple[bool, bool]] = {
    "model.max_freq": (True, False), "model.attn_dropout": (False, True), "model.ff_dropout": (False, True),
    "data.clip_seconds": (True, False),
    "data.val_fraction": (False, True), "data.test_fraction": (True, True), "train.lr": (True, False),
    "train.momentum": (False, True),
    "train.label_smoothing": (False, True),
}
MAX_NAME_CHARS = 100  # the run folder's name holds it, after a 16-character time stamp; 255 bytes is the limit
MAX_PATH_CHARS = 4096  # PATH_MAX on Linux
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d{1,3})?")


def _in_range(key: str, value: float) -> bool:
    lo, hi = RANGES[key]
    lo_open, hi_open = _OPEN.get(key, (False, False))
    if not isinstance(value, int) and not math.isfinite(value):
        return False
    return (lo < value if lo_open else lo <= value) and (value < hi if hi_open else value <= hi)


def _range_sentence(key: str) -> str:
    lo, hi = RANGES[key]
    lo_open, hi_open = _OPEN.get(key, (False, False))
    low = ("positive" if lo == 0 else f"above {lo:,}") if lo_open else f"at least {lo:,}"
    high = f"below {hi:,}" if hi_open else f"at most {hi:,}"
    if not lo_open and not hi_open:
        return f"{key} must be between {lo:,} and {hi:,}."
    return f"{key} must be {low} and {high}."


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: a file name's undecodable bytes, as Python keeps them
        return False
    return True


def _problems(cfg: Config) -> list[tuple[str, str]]:
    m, d, t = cfg.model, cfg.data, cfg.train
    out: list[tuple[str, str]] = []

    def need(ok: bool, key: str, sentence: str) -> None:
        if not ok:
            out.append((key, sentence))

    need(len(cfg.name) <= MAX_NAME_CHARS, "name",
         f"name must be at most {MAX_NAME_CHARS} characters (it names the run folder); it has {len(cfg.name)}.")
    need(_utf8(cfg.name), "name", "name holds bytes that are not UTF-8 text; type the name again.")
    for key in RANGES:
        section, _, leaf = key.partition(".")
        need(_in_range(key, getattr(getattr(cfg, section), leaf)), key, _range_sentence(key))
    for key, path in (("data.root", d.root), ("data.folder", d.folder), ("data.train_file", d.train_file),
                      ("data.test_file", d.test_file)):
        need(_utf8(path), key, f"{key} has a name that is not UTF-8 text, which the run's files cannot record; "
                               "rename the folder or file with UTF-8 characters.")
        need(len(path) <= MAX_PATH_CHARS, key, f"{key} must be at most {MAX_PATH_CHARS} characters long.")
    need(_utf8(d.label_column) and len(d.label_column) <= MAX_NAME_CHARS, "data.label_column",
         f"data.label_column must be first, last or a CSV header's name (UTF-8, at most {MAX_NAME_CHARS} characters).")
    need(m.num_freq_bands >= 1 or not m.fourier_encode_data, "model.num_freq_bands",
         "model.num_freq_bands must be at least 1 while Fourier encoding is on.")
    need(m.implementation in IMPLEMENTATIONS, "model.implementation",
         f"model.implementation must be one of {', '.join(IMPLEMENTATIONS)}.")
    need(m.positions in POSITIONS, "model.positions", f"model.positions must be one of {', '.join(POSITIONS)}.")
    need(m.positions == "grid" or m.implementation == "fast", "model.implementation",
         "perceiver_pytorch's own Perceiver reads grids only; set model.implementation to fast for point clouds.")
    need(m.num_latents * m.latent_dim <= 2**26, "model.num_latents",
         f"The latent array (num_latents × latent_dim = {m.num_latents * m.latent_dim:,}) is too large to fit in "
         f"memory; make one of them smaller (at most {2**26:,} together).")

    need(d.dataset in DATASETS, "data.dataset", f"data.dataset must be one of {', '.join(DATASETS)}.")
    need(d.dataset != "folder" or bool(d.folder.strip()), "data.folder",
         "Choose an image folder (one subfolder per class) for the folder dataset.")
    need(d.dataset != "sequences" or bool(d.train_file.strip() or d.ucr_problem.strip()), "data.train_file",
         "Choose a file of labelled series (.ts, .csv or .npy) for the sequences dataset, or name a UCR/UEA problem "
         "(data.ucr_problem).")
    need(re.fullmatch(r"[A-Za-z0-9_-]{0,64}", d.ucr_problem) is not None, "data.ucr_problem",
         "data.ucr_problem must be a problem's name as the UCR/UEA archive writes it (letters, digits, - and _), "
         "e.g. GunPoint.")
    need(d.dataset != "points_folder" or bool(d.folder.strip()), "data.folder",
         "Choose a folder of point clouds (one subfolder per class of meshes or point lists) for the points_folder "
         "dataset.")
    points = _REGISTRY.get(d.dataset) is not None and _REGISTRY[d.dataset].kind == "points"
    need(not points or (d.crop_padding == 0 and not d.hflip), "data.crop_padding",
         "Random crops and flips are image augmentations; set data.crop_padding to 0 and data.hflip to false for "
         "point clouds (they have data.rotate and data.jitter).")
    need(points or (not d.rotate and d.jitter == 0), "data.rotate",
         "data.rotate and data.jitter augment point clouds only; set them to false and 0 for this dataset.")
    need(d.dataset != "sequences" or (d.crop_padding == 0 and not d.hflip), "data.crop_padding",
         "Random crops and flips are image augmentations; set data.crop_padding to 0 and data.hflip to false "
         "for time series.")
    audio = _REGISTRY[d.dataset].kind == "audio" if d.dataset in _REGISTRY else False
    need(d.dataset != "audio_folder" or bool(d.folder.strip()), "data.folder",
         "Choose a folder of sounds (one subfolder per class of WAV, FLAC or OGG files) for the audio_folder dataset.")
    need(not audio or (d.crop_padding == 0 and not d.hflip), "data.crop_padding",
         "Random crops and flips are image augmentations; set data.crop_padding to 0 and data.hflip to false for "
         "audio (data.time_shift and data.gain_db augment sounds).")
    need(d.audio_input in AUDIO_INPUTS, "data.audio_input",
         f"data.audio_input must be one of {', '.join(AUDIO_INPUTS)}.")
    need(not d.time_shift > d.clip_seconds, "data.time_shift",
         "data.time_shift must be at most data.clip_seconds (a longer shift leaves only silence).")
    need(not audio or d.audio_input == "waveform" or d.n_mels <= mel_settings(d.sample_rate, d.n_mels).bins, "data.n_mels",
         f"data.n_mels must be at most {mel_settings(d.sample_rate, d.n_mels).bins} at {d.sample_rate:,} Hz (the spectrogram's "
         f"frequency bins); lower it or raise data.sample_rate.")
    need(d.dataset == "folder" or not d.crop_to_content, "data.crop_to_content",
         "Cropping to the content is for image folders (data.dataset = \"folder\"); set data.crop_to_content "
         "to false for this dataset.")

    need(t.optimizer in OPTIMIZERS, "train.optimizer", f"train.optimizer must be one of {', '.join(OPTIMIZERS)}.")
    need(t.schedule in SCHEDULES, "train.schedule", f"train.schedule must be one of {', '.join(SCHEDULES)}.")
    need(t.precision in PRECISIONS, "train.precision", f"train.precision must be one of {', '.join(PRECISIONS)}.")
    need(not t.nesterov or (t.optimizer == "sgd" and t.momentum > 0), "train.nesterov",
         "Nesterov momentum needs the SGD optimizer with momentum above 0.")
    need(not t.warmup_epochs > t.epochs, "train.warmup_epochs",
         "train.warmup_epochs must be between 0 and the number of epochs.")
    need(_DEVICE.fullmatch(t.device) is not None, "train.device",
         "train.device must be auto, cpu, cuda (or cuda:N) or mps.")
    need(t.precision != "float16" or t.device.startswith("cuda") or t.device == "auto", "train.precision",
         "float16 training needs a CUDA GPU; use bfloat16 or float32 on this device.")
    need(isinstance(t.tf32, bool), "train.tf32", "train.tf32 must be true or false.")
    need(t.compile in COMPILE_MODES, "train.compile", f"train.compile must be one of {', '.join(COMPILE_MODES)}.")
    need(t.processes < 1 or t.batch_size % t.processes == 0, "train.batch_size",
         f"train.batch_size {t.batch_size} does not split evenly over {t.processes} processes; choose a multiple "
         f"of {t.processes}.")
    need(t.early_stop_patience == 0 or d.val_fraction > 0, "train.early_stop_patience",
         "Early stopping watches the validation split; set data.val_fraction above 0 or the patience to 0.")
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
    # (smoother than the 8×8 grid's Nyquist) generalises best. Learning rate, weight decay, mixup, label
    # smoothing and latent width are the best trial of a 20-trial TPE sweep on validation loss (benchmarks/
    # README.md, "Sweeps"; rounded to three digits): 95.3 ± 0.5 % test accuracy over 3 seeds, against
    # 93.6 ± 0.5 % for the hand-tuned recipe before it (lr 3e-3, wd 0.05, mixup 0.4, smoothing 0.1, width 64).
    "digits": Config(
        name="digits",
        model=ModelConfig(
            input_channels=1, num_freq_bands=4, max_freq=4.0, depth=1, num_latents=32, latent_dim=96,
            cross_heads=8, latent_heads=4, cross_dim_head=16, latent_dim_head=16, num_classes=10,
            weight_tie_layers=False,
        ),
        data=DataConfig(dataset="digits", image_size=8, crop_padding=0, hflip=False),
        train=TrainConfig(
            optimizer="adamw", lr=2.29e-3, weight_decay=0.0101, schedule="cosine", warmup_epochs=1, batch_size=16,
            epochs=30, label_smoothing=0.012, grad_clip=1.0, mixup=0.558,
        ),
    ),
    # MNIST: the digits recipe at 28×28, measured on MNIST-format files of scikit-learn's digits upsampled and
    # shifted by up to ±3 px (benchmarks/README.md, "Presets"; 898 training images): mixup 0.5, random crops
    # of 3 px (the data's own shifts), max_freq 7 (a quarter of the Nyquist limit: the strokes are smooth)
    # and 96-wide latents took it from 65 % (the 8×8 recipe as it was) to 89 % at 60 epochs and 92 % at 80
    # on the 899 test digits, past an RBF SVC's 88 % (64 latents: 88 %). On the real 60,000 images an epoch
    # is 67× longer (~150,000 steps in all: quick on a GPU, hours on a CPU); set train.early_stop_patience
    # to end it once validation stops gaining.
    "mnist": _recipe(
        "mnist",
        ModelConfig(num_freq_bands=6, max_freq=7.0, depth=1, num_latents=32, latent_dim=96, cross_heads=8,
                    latent_heads=4, cross_dim_head=16, latent_dim_head=16),
        DataConfig(dataset="mnist", crop_padding=3),
        TrainConfig(optimizer="adamw", lr=2.29e-3, weight_decay=0.01, schedule="cosine", warmup_epochs=1,
                    batch_size=32, epochs=80, label_smoothing=0.012, grad_clip=1.0, mixup=0.5),
    ),
    # Fashion-MNIST: the MNIST recipe plus horizontal flips (clothes are left-right symmetric); not measured
    # on its own (no download here).
    "fashion_mnist": _recipe(
        "fashion_mnist",
        ModelConfig(num_freq_bands=6, max_freq=7.0, depth=1, num_latents=32, latent_dim=96, cross_heads=8,
                    latent_heads=4, cross_dim_head=16, latent_dim_head=16),
        DataConfig(dataset="fashion_mnist", crop_padding=3, hflip=True),
        TrainConfig(optimizer="adamw", lr=2.29e-3, weight_decay=0.01, schedule="cosine", warmup_epochs=1,
                    batch_size=32, epochs=80, label_smoothing=0.012, grad_clip=1.0, mixup=0.5),
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
    # An image folder: small and quick, at the images' own size (the form sets it from the images and the
    # max frequency from it), each object cut out of its plain background (data.crop_to_content). Measured
    # on 3 shapes × 60 at 32 px of random size, place and colour (benchmarks/README.md, "Presets"): 100 % of
    # the 36 test images within 15 epochs; without the cut-out no recipe passed 67 %, because with absolute
    # Fourier positions where a shape sits has to be learnt from the images, and 144 are too few.
    "folder": _recipe(
        "folder",
        ModelConfig(num_freq_bands=6, max_freq=16.0, depth=1, num_latents=32, latent_dim=64, cross_heads=8,
                    latent_heads=4, cross_dim_head=16, latent_dim_head=16),
        DataConfig(dataset="folder", image_size=32, crop_padding=2, hflip=True, crop_to_content=True),
        TrainConfig(optimizer="adamw", lr=3e-3, weight_decay=0.05, schedule="cosine", warmup_epochs=3, batch_size=16,
                    epochs=20, grad_clip=1.0),
    ),
    # Time series from a .ts, .csv or .npy file (input_axis 1): the small folder model over time, measured
    # against 1-nearest-neighbour on generated .ts waves of length 96 (benchmarks/README.md, "Modalities"):
    # 91 % against 1-NN's 57 % in about 5 s on 2 CPU cores (88 % against 54 % at lengths 64–128, masked).
    # max_freq 16 beat 8, 32 and 48 there (90 % against 78, 75 and 78 % on one split): smooth bands suit
    # series whose phase and period vary.
    "sequences": _recipe(
        "sequences",
        ModelConfig(num_freq_bands=16, max_freq=16.0, depth=1, num_latents=32, latent_dim=64, cross_heads=8,
                    latent_heads=4, cross_dim_head=16, latent_dim_head=16),
        DataConfig(dataset="sequences", crop_padding=0, hflip=False),
        TrainConfig(optimizer="adamw", lr=3e-3, weight_decay=0.05, schedule="cosine", warmup_epochs=3, batch_size=16,
                    epochs=40, grad_clip=1.0),
    ),
    # Point clouds from a folder of meshes or point lists (input_axis 3, positions from each point's xyz),
    # measured with benchmarks/bench_modalities.py --points (five primitive shapes, 3 data seeds, README):
    # max_freq 4 gave 96.1 % against 93.3, 93.9 and 94.4 % for 2, 8 and 16 (the coordinates span [-1, 1], so
    # the top band turns twice across a cloud: the coarse shape is what tells classes apart); 512 points
    # beat 256 (90.0 %); jitter 0.01 beat none (95.0 %); 20 epochs beat 40 (93.3 %), in half the time.
    "points": _recipe(
        "points",
        ModelConfig(num_freq_bands=8, max_freq=4.0, depth=2, num_latents=32, latent_dim=64, cross_heads=4,
                    latent_heads=4, cross_dim_head=16, latent_dim_head=16),
        DataConfig(dataset="points_folder", num_points=512, rotate=True, jitter=0.01),
        TrainConfig(optimizer="adamw", lr=3e-3, weight_decay=0.05, schedule="cosine", warmup_epochs=3, batch_size=16,
                    epochs=20, grad_clip=1.0),
    ),
    # ModelNet10 (downloaded): the points recipe on its 3,991 training meshes; not measured here (no download).
    "modelnet10": _recipe(
        "modelnet10",
        ModelConfig(num_freq_bands=8, max_freq=4.0, depth=2, num_latents=32, latent_dim=64, cross_heads=4,
                    latent_heads=4, cross_dim_head=16, latent_dim_head=16),
        DataConfig(dataset="modelnet10", num_points=512, rotate=True, jitter=0.01),
        TrainConfig(optimizer="adamw", lr=3e-3, weight_decay=0.05, schedule="cosine", warmup_epochs=3, batch_size=16,
                    epochs=20, grad_clip=1.0),
    ),
    # A folder of sounds: 1 s clips at 16 kHz as 101 frames of 40 log-mel bands (the bands as channels, input_axis
    # 1), the small folder model over them, time shift and gain augmentation. Measured on spoken digits
    # (benchmarks/README.md, "Modalities"): 97.9 % test against an SVC's 85.0 % on log-mel statistics, in
    # 11-16 s on 2 CPU cores. Mel frames reached 99 % where the 2-D log-mel grid (40 × 101 inputs of one channel)
    # was still at chance after 12 epochs; max_freq 16 beat 32 and 8 (98.8 against 97.5 %), and 15 epochs did
    # as well as 20 (98.8 against 96.2 %).
    "audio": _recipe(
        "audio",
        ModelConfig(num_freq_bands=8, max_freq=16.0, depth=1, num_latents=32, latent_dim=64, cross_heads=8,
                    latent_heads=4, cross_dim_head=16, latent_dim_head=16),
        DataConfig(dataset="audio_folder", sample_rate=16_000, clip_seconds=1.0, audio_input="mel_frames", n_mels=40,
                   time_shift=0.1, gain_db=6.0),
        TrainConfig(optimizer="adamw", lr=3e-3, weight_decay=0.05, schedule="cosine", warmup_epochs=3, batch_size=16,
                    epochs=15, grad_clip=1.0),
    ),
    # Speech Commands (downloaded): the audio recipe, with batches of 64 and 8 epochs for its ~85,000 training
    # clips (the audio preset saw 290). Not measured on the real data here (the machines that tune have no
    # network); the recipe it copies was (above).
    "speech": _recipe(
        "speech",
        ModelConfig(num_freq_bands=8, max_freq=16.0, depth=1, num_latents=32, latent_dim=64, cross_heads=8,
                    latent_heads=4, cross_dim_head=16, latent_dim_head=16),
        DataConfig(dataset="speech_commands", sample_rate=16_000, clip_seconds=1.0, audio_input="mel_frames",
                   n_mels=40, time_shift=0.1, gain_db=6.0),
        TrainConfig(optimizer="adamw", lr=3e-3, weight_decay=0.05, schedule="cosine", warmup_epochs=1, batch_size=64,
                    epochs=8, grad_clip=1.0),
    ),
}

# One sentence per preset, for the form and `perceiver-gui presets`; `describe_preset` adds the download note.
PRESET_NOTES: dict[str, str] = {
    "seed": "The original tutorial's CIFAR-10 settings, verbatim: it barely learns, and is kept to reproduce it.",
    "digits": "Bundled 8×8 handwritten digits, offline: about 95 % test accuracy after about a minute of training on "
              "2 CPU cores.",
    "mnist": "MNIST handwritten digits: the digits recipe at 28×28 with random crops; best on a GPU (on 2 CPU "
             "cores an epoch of 60,000 images takes tens of minutes).",
    "fashion_mnist": "Fashion-MNIST clothing photos: the MNIST recipe plus horizontal flips.",
    "cifar10": "CIFAR-10 colour photos: a wide model with crops, flips and a cosine schedule, made for a GPU.",
    "cifar100": "CIFAR-100 colour photos: the CIFAR-10 recipe with 100 classes and more dropout, made for a GPU.",
    "folder": "Your own image folder: a small, quick model with crops and flips; the image size follows your "
              "images.",
    "sequences": "Your own time series (.ts, .csv or .npy; set data.train_file): a small, quick model over time; "
                 "series of different lengths are masked, not padded.",
    "points": "Your own 3-D shapes (meshes or point lists; set data.folder): each sampled to 512 points, turned "
              "about the up axis and jittered while training.",
    "modelnet10": "ModelNet10's 10 kinds of CAD meshes (downloaded, about 451 MB): the points recipe, 512 points a "
                  "mesh, turned and jittered; not measured on the real dataset yet.",
    "speech": "Speech Commands' 35 spoken words: the audio recipe with bigger batches and fewer epochs for "
              "its 85,000 training clips; not measured on the real dataset yet.",
    "audio": "Your own sounds (a folder with a subfolder of WAV, FLAC or OGG files per class; set data.folder): "
             "1 s clips read as log-mel frames, shifted and made louder or quieter at random; about 98 % on 400 "
             "spoken digits in about 15 s on 2 CPU cores.",
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
    from perceiver_gui.core.reading import open_regular

    path = Path(path)
    try:
        with open_regular(path) as fh:  # a FIFO or device would block or never end: refused, never opened
            text = fh.read().decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path.name} is not UTF-8 text, so it is not a config file.") from None
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
