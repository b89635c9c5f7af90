"""What the app knows about each dataset before opening it, and the model's input shape from the data.

`DATASETS` is the registry: per dataset its label, what one sample is (its kind), channels, size,
classes, whether and how much it downloads, its preset, and a one-line description. The form, the
complexity readout, the presets' notes and `config.DATASETS` all read it; `data.py` holds the loaders.
Adding a dataset is one entry here and its loader in data.py; adding a kind of sample (a time series,
audio, a point cloud) is one entry in `KINDS`, which says how many axes the model's Fourier position
encoding spans.

`fit_model(model, shape)` is the one place where channels, axes and classes go from the data into the
model's config: training applies it to the decoded dataset (`DatasetInfo.input_shape`), and the form to
`expected_input(data)`, what the data will be before it is opened.

This module imports nothing heavy (the form imports it at launch), and nothing of perceiver_gui at
run time, so config.py can take its dataset names from here.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from perceiver_gui.config import DataConfig, ModelConfig

__all__ = [
    "DATASETS",
    "KINDS",
    "DatasetSpec",
    "InputShape",
    "Kind",
    "MelSettings",
    "audio_sides",
    "class_folders",
    "default_data_root",
    "clip_samples",
    "download_note",
    "expected_input",
    "fit_model",
    "folder_image_size",
    "input_positions",
    "kind_of",
    "max_freq_for",
    "ucr_files",
    "mel_settings",
]

FOLDER_SIZE_SAMPLE = 64  # image files read (headers only) to size a folder: enough for a steady median
FOLDER_SIZE_CAP = 64  # pixels a side at most: attention cost grows with the pixel count (64² = 4096 inputs)
FOLDER_SIZE_MIN = 8  # pixels a side at least: smaller images hold no shapes to learn


@dataclass(frozen=True, slots=True)
class Kind:
    """What one sample is."""

    noun: str  # for people: "image"
    axes: int  # the model's input_axis: how many axes the Fourier position encoding spans
    axis_names: tuple[str, ...]  # for people, one per axis
    irregular_plural: str = ""  # for people, where the plural is not noun + "s" ("series")
    position: str = "pixel"  # one input position along an axis, for people: "pixel", "time step"
    positions_from: str = "grid"  # the model's positions: "grid" (the input's places) or "points" (their own xyz)

    @property
    def plural(self) -> str:
        return self.irregular_plural or self.noun + "s"


KINDS: dict[str, Kind] = {
    "image": Kind("image", 2, ("height", "width")),
    "series": Kind("series", 1, ("time",), irregular_plural="series", position="time step"),
    # The raw waveform or mel frames; a log-mel grid (data.audio_input) reads over (mel, time): expected_input's
    # sides say which, and fit_model takes the axes from them.
    "audio": Kind("sound", 1, ("time",), position="time step"),
    # An unordered set of points: the Fourier features span x, y and z of each point's own coordinates.
    "points": Kind("point cloud", 3, ("x", "y", "z"), position="point", positions_from="points"),
}


def kind_of(dataset: str) -> Kind:
    """What one sample of `dataset` is; an image for a name the registry lacks (validation names it)."""
    spec = DATASETS.get(dataset)
    return KINDS[spec.kind if spec is not None else "image"]


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    key: str  # the value of data.dataset
    label: str  # for people, in the form's list
    description: str  # one sentence: what it holds
    preset: str  # the recipe tuned for it (config.PRESETS)
    kind: str = "image"  # one of KINDS
    channels: int | None = None  # values per position; None: decided by the files (a folder: 1 if all gray, else 3)
    size: tuple[int, ...] | None = None  # one length per axis; None: data.image_size
    classes: int | None = None  # None: decided by the files (a folder's subfolders)
    download_mb: float = 0.0  # size of the download before the first Start; 0: nothing to download
    files: str = ""  # what the download leaves in the data folder, for people

    @property
    def downloads(self) -> bool:
        return self.download_mb > 0


DATASETS: dict[str, DatasetSpec] = {spec.key: spec for spec in (
    DatasetSpec("cifar10", "CIFAR-10", "60,000 colour photos of 10 things (planes, cars, birds, cats …), 32×32.",
                "cifar10", channels=3, size=(32, 32), classes=10, download_mb=170.5,
                files="cifar-10-python.tar.gz"),
    DatasetSpec("cifar100", "CIFAR-100", "60,000 colour photos of 100 things, 32×32; harder than CIFAR-10.",
                "cifar100", channels=3, size=(32, 32), classes=100, download_mb=169.0,
                files="cifar-100-python.tar.gz"),
    DatasetSpec("mnist", "MNIST", "70,000 handwritten digits 0–9, gray, 28×28.",
                "mnist", channels=1, size=(28, 28), classes=10, download_mb=11.6, files="MNIST/raw"),
    DatasetSpec("fashion_mnist", "Fashion-MNIST", "70,000 photos of 10 kinds of clothing, gray, 28×28.",
                "fashion_mnist", channels=1, size=(28, 28), classes=10, download_mb=30.9,
                files="FashionMNIST/raw"),
    DatasetSpec("digits", "Digits (bundled, offline)",
                "1,797 handwritten digits 0–9, gray, 8×8, bundled with scikit-learn: no download.",
                "digits", channels=1, size=(8, 8), classes=10),
    DatasetSpec("folder", "Image folder…", "Your own images: one subfolder per class, any common format.",
                "folder"),
    DatasetSpec("sequences", "Time series…",
                "Your own series: a .ts (UCR/UEA), .csv or .npy file of labelled series, one or more channels.",
                "sequences", kind="series"),
    DatasetSpec("audio_folder", "Audio folder…",
                "Your own sounds: one subfolder per class of WAV, FLAC or OGG files, read as clips of equal length.",
                "audio", kind="audio", channels=1),
    DatasetSpec("points_folder", "Point clouds…",
                "Your own 3-D shapes: one subfolder per class of meshes (.ply, .off, .obj, .stl) or point lists "
                "(.xyz, .txt, .npy).", "points", kind="points", channels=3),
    DatasetSpec("speech_commands", "Speech Commands",
                "105,829 one-second recordings of 35 spoken words (yes, no, up, down, the digits …) by 2,618 "
                "speakers, 16 kHz (Google, v0.02).",
                "speech", kind="audio", channels=1, classes=35, download_mb=2300.0,
                files="SpeechCommands"),
    DatasetSpec("modelnet10", "ModelNet10",
                "4,899 CAD meshes of 10 kinds of furniture and objects (bed, chair, desk, sofa, toilet …), with "
                "its published split of 3,991 to train and 908 to test (Princeton, 3D ShapeNets).",
                "modelnet10", kind="points", channels=3, classes=10, download_mb=451.0, files="ModelNet10"),
)}


@dataclass(frozen=True, slots=True)
class InputShape:
    """What the model is fed, as far as it is known: None where only the files can tell."""

    kind: str  # one of KINDS
    sides: tuple[int, ...]  # one length per axis, e.g. (H, W)
    channels: int | None
    classes: int | None


def fit_model(model: ModelConfig, shape: InputShape) -> ModelConfig:
    """The model config with its input channels, axes and classes taken from the data.

    These are the data's to decide, not the user's; a None in `shape` (not known before the files are
    read) leaves the model's value as it is. The axes are the data's sides: a kind's own for images and
    series, and for audio one (the waveform) or two (a log-mel spectrogram's mel and time)."""
    return dataclasses.replace(
        model,
        # A grid has one axis per side; a cloud's points are one axis, and its coordinates span the kind's axes.
        input_axis=KINDS[shape.kind].axes if KINDS[shape.kind].positions_from == "points" else len(shape.sides),
        positions=KINDS[shape.kind].positions_from,
        input_channels=shape.channels if shape.channels is not None else model.input_channels,
        num_classes=shape.classes if shape.classes is not None else model.num_classes,
    )


def expected_input(data: DataConfig) -> InputShape:
    """The input shape `data` will give, known before opening it (a folder's classes are counted).
    An unknown dataset (a typo in a file, which validation names) is an image of data.image_size."""
    spec = DATASETS.get(data.dataset, DatasetSpec(data.dataset, data.dataset, "", ""))
    axes = KINDS[spec.kind].axes
    sides = spec.size if spec.size is not None else (data.image_size,) * axes
    classes, channels = spec.classes, spec.channels
    if data.dataset in ("folder", "points_folder"):
        found = class_folders(data.folder)
        classes = len(found) if found else None
    if spec.kind == "points":
        sides = (data.num_points,)  # M: the points of a cloud, one axis of the input whatever input_axis
    if spec.kind == "series":
        sides, channels, classes = _series_shape(data)
    if spec.kind == "audio" and classes is None:  # a folder of sounds: its subfolders
        found = class_folders(data.folder)
        classes = len(found) if found else None
    if spec.kind == "audio":
        sides = _audio_sides(data)
        channels = min(max(int(data.n_mels), 1), 256) if data.audio_input == "mel_frames" else 1
    return InputShape(kind=spec.kind, sides=sides, channels=channels, classes=classes)


def default_data_root() -> Path:
    """$PERCEIVER_GUI_HOME/data when that is set, else the per-user data folder of the app."""
    home = os.environ.get("PERCEIVER_GUI_HOME", "").strip()
    if home:
        return Path(home).expanduser() / "data"
    import platformdirs

    return Path(platformdirs.user_data_dir("perceiver-gui", appauthor=False)) / "data"


def ucr_files(root: Path, name: str) -> tuple[Path, Path]:
    """Where the UCR/UEA problem `name`'s training and test .ts files live (or are downloaded to) under the
    data root `root`."""
    folder = root / "UCR" / name
    return folder / f"{name}_TRAIN.ts", folder / f"{name}_TEST.ts"


def _series_shape(data: DataConfig) -> tuple[tuple[int, ...], int | None, int | None]:
    """(length,), channels and classes of the series files (a named UCR/UEA problem's once it is downloaded),
    read once; (1,), None, None when unreadable."""
    if not data.train_file.strip() and data.ucr_problem.strip():
        root = Path(data.root).expanduser() if data.root.strip() else default_data_root()
        train, test = ucr_files(root, data.ucr_problem.strip())
        data = dataclasses.replace(data, train_file=str(train), test_file=str(test))
    def stamp(path: str) -> tuple[str, int, int] | None:
        if not path.strip():
            return None
        try:
            st = Path(path).expanduser().stat()
        except (OSError, ValueError):
            return None
        return path, st.st_mtime_ns, st.st_size

    train, test = stamp(data.train_file), stamp(data.test_file) if data.test_file.strip() else None
    if train is None or (data.test_file.strip() and test is None):
        return (1,), None, None
    return _series_files_shape(train, test, data.label_column)


@functools.lru_cache(maxsize=8)
def _series_files_shape(train_stamp: tuple[str, int, int], test_stamp: tuple[str, int, int] | None,
                        label_column: str) -> tuple[tuple[int, ...], int | None, int | None]:
    """The form asks at every edit: a file is read again only when its time or size changed."""
    # numpy and the readers load on the first series pick, not when the form opens at launch.
    from perceiver_gui.core.series import SeriesError, class_order, read_series

    try:
        train = read_series(train_stamp[0], label_column=label_column)
        test = read_series(test_stamp[0], label_column=label_column) if test_stamp else None
    except (SeriesError, OSError):
        return (1,), None, None
    length = max(train.longest, test.longest if test is not None else 0)
    return (length,), train.channels, len(train.declared or class_order(train.labels or ()))


# -- audio clips -----------------------------------------------------------------------------
MEL_WINDOW_SECONDS = 0.025  # the usual speech analysis window: 25 ms ...
MEL_HOP_SECONDS = 0.010  # ... every 10 ms


@dataclass(frozen=True, slots=True)
class MelSettings:
    """How core/audio.py computes a log-mel spectrogram, all derived from the sample rate and n_mels."""

    sample_rate: int
    n_fft: int  # the window, rounded up to a power of two
    hop: int  # samples between frames
    n_mels: int
    f_min: float
    f_max: float  # Nyquist

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1


def mel_settings(sample_rate: int, n_mels: int) -> MelSettings:
    n_fft = 1 << max(4, math.ceil(math.log2(MEL_WINDOW_SECONDS * max(1, sample_rate))))
    return MelSettings(sample_rate=sample_rate, n_fft=n_fft, hop=max(1, round(MEL_HOP_SECONDS * sample_rate)),
                       n_mels=n_mels, f_min=0.0, f_max=sample_rate / 2)


def clip_samples(sample_rate: int, clip_seconds: float) -> int:
    return max(1, round(sample_rate * clip_seconds))


def audio_sides(sample_rate: int, clip_seconds: float, audio_input: str, n_mels: int) -> tuple[int, ...]:
    """The model's input sides: (samples,) for the waveform, (n_mels, frames) for the log-mel grid, (frames,) for
    mel frames (whose channels are the n_mels bands)."""
    samples = clip_samples(sample_rate, clip_seconds)
    if audio_input == "waveform":
        return (samples,)
    frames = 1 + samples // mel_settings(sample_rate, n_mels).hop  # torch.stft(center=True)'s frames
    return (frames,) if audio_input == "mel_frames" else (n_mels, frames)


def input_positions(data: DataConfig, shape: InputShape) -> str:
    """M, the inputs the latents attend to, for people: "32×32 pixels", "40 time steps", and for sounds
    "16,000 samples", "40 mels × 101 frames" or "101 frames" (of n_mels bands each), as data.audio_input says."""
    if shape.kind == "audio":
        if data.audio_input == "waveform":
            return f"{shape.sides[0]:,} samples"
        if data.audio_input == "log_mel" and len(shape.sides) == 2:
            return f"{shape.sides[0]:,} mels × {shape.sides[1]:,} frames"
        return f"{shape.sides[0]:,} frames"
    return f"{'×'.join(f'{side:,}' for side in shape.sides)} {KINDS[shape.kind].position}s"


def _audio_sides(data: DataConfig) -> tuple[int, ...]:
    """`audio_sides` of a config; values outside their ranges (which validation names) are clamped, so the
    form still shows a size while the user types."""
    rate = min(max(int(data.sample_rate), 1000), 192_000)
    seconds = min(max(data.clip_seconds, 0.01), 60.0) if math.isfinite(data.clip_seconds) else 1.0
    return audio_sides(rate, seconds, data.audio_input, min(max(int(data.n_mels), 1), 256))


def download_note(dataset: str) -> str:
    """A sentence saying what must be downloaded before Start, or "" for a dataset on hand."""
    spec = DATASETS.get(dataset)
    if spec is None or not spec.downloads:
        return ""
    return (f"{spec.label} is downloaded before the first Start (about {spec.download_mb:.0f} MB), or read from "
            f"{spec.files} in the data folder if it is there.")


def max_freq_for(side: int) -> float:
    """The presets' max frequency for an axis of `side` pixels: about half the Nyquist limit (side - 1,
    see core/fourier.py), so the top band turns a quarter cycle per pixel. The measured digits (4 at
    8 px) and cifar10 (16 at 32 px) presets sit on this rule; above side - 1 the bands alias."""
    return max(1.0, round((side - 1) / 2))


# -- image folders ---------------------------------------------------------------------------
def class_folders(folder: str | Path) -> list[Path]:
    """The class subfolders of an image folder, sorted (hidden ones skipped); [] when it cannot be read."""
    if not str(folder).strip():
        return []
    try:
        return sorted(p for p in Path(folder).expanduser().iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def folder_image_size(folder: str | Path) -> int | None:
    """The side that an image folder's images are best resized to: the median of the shorter side of
    up to FOLDER_SIZE_SAMPLE of its images (spread over the classes), rounded to a multiple of 4 and
    kept within FOLDER_SIZE_MIN..FOLDER_SIZE_CAP. None when no image in it can be read.

    Only the image headers are read, so this takes milliseconds even for big photos."""
    # Pillow and the suffix list load on the first folder pick, not when the form opens at launch.
    from PIL import Image

    from perceiver_gui.core.images import image_files

    classes = class_folders(folder)
    per_class = max(1, FOLDER_SIZE_SAMPLE // max(1, len(classes)))
    sides: list[int] = []
    for class_dir in classes:
        taken = 0
        try:
            candidates = image_files(class_dir)
        except OSError:
            continue
        for path in candidates:
            if taken >= per_class:
                break
            if not path.is_file():
                continue  # False for FIFOs and devices, so nothing here blocks on open
            try:
                with Image.open(path) as image:
                    sides.append(min(image.size))
                taken += 1
            except (OSError, ValueError, Image.DecompressionBombError):
                continue
    if not sides:
        return None
    side = int(round(statistics.median(sides) / 4) * 4)
    return min(FOLDER_SIZE_CAP, max(FOLDER_SIZE_MIN, side))
