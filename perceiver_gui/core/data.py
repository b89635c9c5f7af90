"""Datasets as uint8 tensors in memory, and batched normalise / augment on the training device.

`open_dataset(cfg)` is a generator: it yields DownloadProgress and Log events while it fetches and
decodes, and returns a `Dataset`, so the training loop writes `dataset = yield from open_dataset(cfg)`.
`load_dataset(cfg)` does the same without the events.

Where the data comes from (all under the data root: cfg.root, else `default_data_root()`):
- cifar10 / cifar100: torchvision's "python" layout (cifar-10-batches-py/, cifar-100-python/). The batch
  files are pickles; we read them with a restricted unpickler that can build numpy arrays and nothing
  else, so a hostile file cannot run code. Local copies are not md5-checked (so a tiny copy written by
  a test works, and a torchvision download is reused as is), but they are parsed safely and their
  shapes and labels validated; archives we download, or that a user drops in, are md5-checked against
  torchvision's sums before they are extracted.
- mnist / fashion_mnist: torchvision's raw idx files (MNIST/raw, FashionMNIST/raw), gzipped or not.
- digits: scikit-learn's bundled 8x8 digits, offline. Train is the first half, test the second half in
  the given order (898 / 899): the split of scikit-learn's "Recognizing hand-written digits" example.
- folder: one subfolder per class (see `_load_folder`).
- sequences: time series from data.train_file (and data.test_file, else a split of the train file), in
  the formats core/series.py reads. They are float32 (N, C, L) rather than uint8, with NaN after the end
  of each shorter series: `padding_mask` turns that into the model's input mask, and `normalize` into
  zeros the model never attends to.
- points_folder: one subfolder per class of meshes or point lists (see `_load_points_folder`), read by
  core/points.py into float32 (N, 3, num_points) clouds, each centred in the unit sphere. Their mean and
  std are 0 and 1, so `normalize` leaves them as they are: the coordinates are the model's positions,
  and a per-axis standardisation would squash a flat shape's thin axis into noise. `augment_points`
  rotates them about the up axis and jitters them.
- audio_folder: one subfolder per class of WAV, FLAC or OGG files (see `_load_audio`), decoded by
  core/audio.py into equal clips, float32 (N, 1, L) waveforms, (N, 1, n_mels, frames) log-mel grids or
  (N, n_mels, frames) mel frames (normalised per band); `augment_audio` shifts and scales them.

Every dataset then gives a share of its training split (cfg.val_fraction of each class, drawn with
cfg.split_seed) to a validation split: training chooses its best epoch and stops early on it, and the test
split is evaluated once, for the model chosen. The split depends only on the config and the data, so a
resumed run and every run of a sweep validate on the very same images.

Mean and std are computed per channel from the training split (exactly, from a histogram of the uint8
values), in 0..1 units; for the full CIFAR-10 this gives the well-known (0.4914, 0.4822, 0.4465).
Tests and `PERCEIVER_GUI_OFFLINE=1` never touch the network: a download fails at once with the same
sentence a missing network gives.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.client
import importlib.util
import json
import os
import pickle
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from perceiver_gui.config import DataConfig
from perceiver_gui.core import audio
from perceiver_gui.core.datasets import DATASETS, InputShape, class_folders, default_data_root, mel_settings, ucr_files
from perceiver_gui.core.events import DownloadProgress, Log
from perceiver_gui.core.files import atomic_write_bytes
from perceiver_gui.core.images import (
    CONTENT_MARGIN,
    CONTENT_THRESHOLD,
    PLAIN_BORDER,
    ImageError,
    crop_to_content,
    image_files,
    open_image,
    to_uint8_tensor,
)
from perceiver_gui.core.points import PointsError, point_files, read_points
from perceiver_gui.core.series import SeriesError, class_order, pad, read_series

__all__ = [
    "Dataset",
    "DatasetError",
    "DatasetInfo",
    "augment",
    "augment_audio",
    "augment_points",
    "default_data_root",
    "load_dataset",
    "normalize",
    "open_dataset",
    "padding_mask",
    "preview_dataset",
    "Preview",
    "split_validation",
]

OFFLINE_ENV = "PERCEIVER_GUI_OFFLINE"  # set to 1 to forbid every network access (the tests do)
CACHE_FORMAT = "perceiver-gui-folder-cache-1"  # bump when the cached tensor's meaning changes
FOLDER_SPLIT_SEED = 0  # fixed, so a folder's test split is the same on every run, whatever its split_seed

DatasetEvent = DownloadProgress | Log


class DatasetError(Exception):
    """A dataset that cannot be used as asked; the message is one sentence saying what to do."""


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    name: str  # for people: "CIFAR-10", "Digits", or the image folder's name
    class_names: tuple[str, ...]
    channels: int  # 1 or 3 for images; a series' channels
    image_size: tuple[int, ...]  # one length per axis: (H, W) for images, (L,) for series (the longest)
    train_size: int  # images trained on (the validation split not counted)
    test_size: int
    mean: tuple[float, ...]  # per channel, 0..1 units, of the training split
    std: tuple[float, ...]
    val_size: int = 0  # images in the validation split; 0 when the config asks for none
    kind: str = "image"  # one of datasets.KINDS
    padded: bool = False  # some series are shorter than image_size: the model gets `padding_mask`

    @property
    def input_shape(self) -> InputShape:
        """What the model is fed; `datasets.fit_model(cfg.model, info.input_shape)` sets it up for it."""
        return InputShape(kind=self.kind, sides=self.image_size, channels=self.channels, classes=len(self.class_names))


_NO_IMAGES = torch.zeros((0, 1, 1, 1), dtype=torch.uint8)
_NO_LABELS = torch.zeros((0,), dtype=torch.int64)


@dataclass(frozen=True)
class Dataset:
    info: DatasetInfo
    train_x: torch.Tensor  # uint8 (N, C, H, W) images, or float32 (N, C, L) series (NaN after each one's end)
    train_y: torch.Tensor  # int64 (N,)
    test_x: torch.Tensor
    test_y: torch.Tensor
    skipped: tuple[str, ...] = ()  # unreadable files of a folder dataset, as "name: reason"
    val_x: torch.Tensor = _NO_IMAGES  # carved from the training split (see `split_validation`)
    val_y: torch.Tensor = _NO_LABELS
    # The file of each validation and test sample, for folder datasets (so a mislabelled file can be found), and
    # the file#row of each series.
    val_files: tuple[str, ...] = ()
    test_files: tuple[str, ...] = ()


def open_dataset(cfg: DataConfig) -> Generator[DatasetEvent, None, Dataset]:
    """Load the dataset `cfg` names, downloading it first if allowed; yields events, returns the Dataset."""
    loader = _LOADERS.get(cfg.dataset)
    if loader is None:
        raise DatasetError(f"There is no dataset '{cfg.dataset}'. Datasets: {', '.join(_LOADERS)}.")
    root = Path(cfg.root).expanduser() if cfg.root.strip() else default_data_root()
    name, class_names, train, test, skipped, *sources = yield from loader(cfg, root)
    (train_x, train_y), (test_x, test_y) = train, test
    train_files, test_files = sources[0] if sources else ((), ())  # a folder's files, image by image
    train_idx, val_idx = split_validation(train_y, cfg.val_fraction, len(class_names), cfg.split_seed)
    if cfg.val_fraction > 0 and len(val_idx) == 0:
        raise DatasetError(f"{name} has too few training images to hold any out for validation; add images, or set "
                           f"the validation share (data.val_fraction) to 0.")
    val_files: tuple[str, ...] = ()
    if len(val_idx):
        (train_x, train_y), (val_x, val_y) = ((train_x[i].contiguous(), train_y[i].contiguous())
                                              for i in (train_idx, val_idx))
        val_files = tuple(train_files[i] for i in val_idx.tolist()) if train_files else ()
    else:
        val_x, val_y = train_x[:0], train_y[:0]
    kind = DATASETS[cfg.dataset].kind if cfg.dataset in DATASETS else "image"
    series = train_x.is_floating_point()  # series and sounds, in their own units (images are uint8)
    if kind == "points":  # already centred in the unit sphere, cloud by cloud: the coordinates stay as they are
        mean, std = (0.0,) * int(train_x.shape[1]), (1.0,) * int(train_x.shape[1])
    else:
        mean, std = _series_mean_std(train_x) if series else _mean_std(train_x)
    padded = series and any(bool(x[:, 0, -1].isnan().any()) for x in (train_x, val_x, test_x))
    info = DatasetInfo(
        name=name, class_names=tuple(class_names), channels=int(train_x.shape[1]),
        image_size=tuple(int(side) for side in train_x.shape[2:]), train_size=len(train_x),
        test_size=len(test_x), mean=mean, std=std, val_size=len(val_x),
        kind=kind, padded=padded,
    )
    return Dataset(info, train_x, train_y, test_x, test_y, tuple(skipped), val_x=val_x, val_y=val_y,
                   val_files=val_files, test_files=tuple(test_files))


def load_dataset(cfg: DataConfig) -> Dataset:
    """`open_dataset` without the events."""
    events = open_dataset(cfg)
    while True:
        try:
            next(events)
        except StopIteration as done:
            return done.value


@dataclass(frozen=True, slots=True)
class Preview:
    """What a dataset holds, to look at before training: counts, and samples as training sees them."""

    name: str
    class_names: tuple[str, ...]
    train_counts: tuple[int, ...]  # images per class in the training split
    test_counts: tuple[int, ...]
    samples: tuple[np.ndarray, ...]  # per class, uint8 (n, H, W, C) read-only, augmented as in training;
    # float32 (n, L, C) for series, (n, P, 3) xyz for point clouds
    skipped: tuple[str, ...]  # unreadable files, as "name: reason"
    val_counts: tuple[int, ...] = ()  # images per class in the validation split (carved from training)


def preview_dataset(cfg: DataConfig, *, per_class: int = 8, seed: int = 0) -> Generator[DatasetEvent, None, Preview]:
    """Open the dataset like training does (events while it loads), and return its `Preview`: up to
    `per_class` random training images of each class with cfg's crop and flip applied."""
    dataset = yield from open_dataset(cfg)
    info = dataset.info
    generator = torch.Generator().manual_seed(seed)
    samples = []
    for label in range(len(info.class_names)):
        members = torch.nonzero(dataset.train_y == label).flatten()
        chosen = members[torch.randperm(len(members), generator=generator)[:per_class]]
        x = dataset.train_x[chosen]
        if info.kind == "image":
            x = augment(x, crop_padding=cfg.crop_padding, hflip=cfg.hflip, generator=generator)
        x = augment_points(x, cfg, generator=generator)
        if info.kind == "audio":  # waveforms (n, L) and log-mels (n, n_mels, frames), as sound_image draws them
            x = augment_audio(x, cfg, generator)
            pixels = (x if cfg.audio_input == "mel_frames" else x[:, 0]).contiguous().numpy()
        else:
            pixels = x.movedim(1, -1).contiguous().numpy()
        pixels.setflags(write=False)  # it crosses to the UI thread: nobody changes it on the way
        samples.append(pixels)
    k = len(info.class_names)
    return Preview(
        name=info.name, class_names=info.class_names,
        train_counts=tuple(torch.bincount(dataset.train_y, minlength=k).tolist()),
        test_counts=tuple(torch.bincount(dataset.test_y, minlength=k).tolist()),
        samples=tuple(samples), skipped=dataset.skipped,
        val_counts=tuple(torch.bincount(dataset.val_y, minlength=k).tolist()),
    )


# -- batched preprocessing -------------------------------------------------------------------
def normalize(x: torch.Tensor, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 ((x / 255) - mean) / std per channel, on x's device.
    Series, float32 (B, C, L) in their own units: (x - mean) / std, and 0 where they are padded (NaN)."""
    if x.is_floating_point():
        return _normalize_series(x, mean, std)
    if torch.is_tensor(mean) or torch.is_tensor(std):
        shift, scale = _shift_and_scale(torch.as_tensor(mean, dtype=torch.float32, device=x.device),
                                        torch.as_tensor(std, dtype=torch.float32, device=x.device))
    else:  # the usual case: a dataset's constants, sent to the device once, not twice per step
        shift, scale = _cached_shift_and_scale(tuple(map(float, mean)), tuple(map(float, std)), x.device)
    if x.ndim != 4 or shift.shape[1] != x.shape[1] or scale.shape[1] != x.shape[1]:
        raise ValueError(f"normalize needs (B, C, H, W) with one mean and std per channel; got {tuple(x.shape)}, "
                         f"{shift.shape[1]} means and {scale.shape[1]} stds")
    # One fused pass: (x - 255 mean) * 1 / (255 std).
    return x.to(torch.float32).sub_(shift).mul_(scale)


def _normalize_series(x: torch.Tensor, mean, std) -> torch.Tensor:
    mean = torch.as_tensor(mean, dtype=torch.float32, device=x.device)
    std = torch.as_tensor(std, dtype=torch.float32, device=x.device)
    if x.ndim not in (3, 4) or len(mean) != x.shape[1] or len(std) != x.shape[1]:
        raise ValueError(f"normalize needs series (B, C, L) or spectrograms (B, C, F, T) with one mean and std per "
                         f"channel; got {tuple(x.shape)}, {len(mean)} means and {len(std)} stds")
    per_channel = (-1,) + (1,) * (x.ndim - 2)
    return ((x - mean.view(per_channel)) / std.view(per_channel)).nan_to_num_(0.0)


def padding_mask(x: torch.Tensor) -> torch.Tensor:
    """bool (B, L), True where series (B, C, L) hold a value, False where they are padded (NaN): the model's
    input mask, so that it never attends to the padding."""
    return ~x[:, 0].isnan()


def _shift_and_scale(mean: torch.Tensor, std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return (mean * 255.0).reshape(1, -1, 1, 1), (1.0 / (std * 255.0)).reshape(1, -1, 1, 1)


@functools.lru_cache(maxsize=16)
def _cached_shift_and_scale(mean: tuple[float, ...], std: tuple[float, ...],
                            device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # Building a tensor from Python numbers on a GPU is a blocking host-to-device copy. Plain tensors
    # even under inference_mode, so that a later training step can use them.
    with torch.inference_mode(False), torch.no_grad():
        return _shift_and_scale(torch.tensor(mean, dtype=torch.float32, device=device),
                                torch.tensor(std, dtype=torch.float32, device=device))


def augment(x: torch.Tensor, *, crop_padding: int, hflip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop (shift by up to crop_padding pixels, the border pixels extended into the gap) and
    per-sample horizontal flip of a uint8 (B, C, H, W) batch, vectorised, on x's device; `generator`
    makes it repeat.

    The gap repeats the edge rather than filling it with black: on a light background (drawings,
    scans, product photos) black bars would look like objects, and the model would learn them.
    Draws happen in a fixed order (row offsets, column offsets, flips), so the same seed and settings
    give the same batch every time. Returns x itself when both are off.
    """
    if crop_padding < 0:
        raise ValueError(f"crop_padding must be 0 or more, not {crop_padding}")
    if crop_padding == 0 and not hflip:
        return x
    b, c, h, w = x.shape
    draw_device = generator.device

    def randint(high: int) -> torch.Tensor:
        return torch.randint(0, high, (b,), generator=generator, device=draw_device).to(x.device)

    p = crop_padding
    dy = randint(2 * p + 1) if p else torch.full((b,), p, dtype=torch.long, device=x.device)
    dx = randint(2 * p + 1) if p else torch.full((b,), p, dtype=torch.long, device=x.device)
    flip = randint(2).bool() if hflip else torch.zeros(b, dtype=torch.bool, device=x.device)
    # Source row and column of every output pixel, clamped to the image: that is edge padding.
    rows = (dy[:, None] - p + torch.arange(h, device=x.device)).clamp_(0, h - 1)  # (B, H)
    ar_w = torch.arange(w, device=x.device)
    cols = (dx[:, None] - p + torch.where(flip[:, None], w - 1 - ar_w, ar_w)).clamp_(0, w - 1)  # (B, W)
    # One gather over the flattened images: a (B, H*W) index shared by the channels. This is 2-3x
    # faster than indexing with four broadcast index tensors.
    index = (rows[:, :, None] * w + cols[:, None, :]).reshape(b, 1, h * w).expand(b, c, h * w)
    return x.reshape(b, c, -1).gather(2, index).reshape(b, c, h, w)


def augment_points(x: torch.Tensor, cfg: DataConfig, *, generator: torch.Generator) -> torch.Tensor:
    """Clouds float32 (B, 3, P) turned by a random angle about the up (z) axis (cfg.rotate), then moved by
    Gaussian noise of σ cfg.jitter on every coordinate, vectorised on x's device; x itself when both are off.

    Only about z: a shape that stands upright (a chair, a lamp) keeps standing, as the data shows it, while
    the direction it faces, which says nothing of its class, varies. Draws are in a fixed order (angles,
    then noise), so the same seed gives the same batch."""
    if not cfg.rotate and cfg.jitter == 0:
        return x
    b = x.shape[0]
    draw_device = generator.device
    if cfg.rotate:
        angle = torch.rand(b, generator=generator, device=draw_device).to(x.device) * (2 * torch.pi)
        cos, sin = angle.cos(), angle.sin()
        px, py = x[:, 0], x[:, 1]
        x = torch.stack([cos[:, None] * px - sin[:, None] * py, sin[:, None] * px + cos[:, None] * py, x[:, 2]], 1)
    if cfg.jitter > 0:
        noise = torch.randn(x.shape, generator=generator, device=draw_device).to(x.device)
        x = x + noise * cfg.jitter
    return x


def augment_audio(x: torch.Tensor, data: DataConfig, generator: torch.Generator) -> torch.Tensor:
    """Random time shift (up to data.time_shift seconds either way, silence filling in) and gain (up to
    data.gain_db either way) of a float batch of waveforms (B, 1, L), log-mels (B, 1, n_mels, frames) or mel
    frames (B, n_mels, frames), on x's device; `generator` makes it repeat. Returns x itself when both are
    off (and draws nothing).

    On a log-mel a gain is an added number of dB and a shift moves whole frames, so the clips stay what
    the same change to the waveform would give (up to the edges of frames)."""
    if data.time_shift <= 0 and data.gain_db <= 0:
        return x
    b, length, spectrogram = x.shape[0], x.shape[-1], data.audio_input != "waveform"
    per_second = data.sample_rate / mel_settings(data.sample_rate, data.n_mels).hop if spectrogram else data.sample_rate
    reach = min(length - 1, int(data.time_shift * per_second))
    draw_device = generator.device
    shift = (torch.randint(-reach, reach + 1, (b,), generator=generator, device=draw_device).to(x.device)
             if reach > 0 else torch.zeros(b, dtype=torch.long, device=x.device))
    gain = (torch.rand((b,), generator=generator, device=draw_device).to(x.device) * 2 - 1) * data.gain_db
    # Source index of every output step; outside the clip is silence.
    source = torch.arange(length, device=x.device) - shift[:, None]  # (B, L)
    inside = (source >= 0) & (source < length)
    view, per_clip = (b,) + (1,) * (x.ndim - 2) + (length,), (b,) + (1,) * (x.ndim - 1)
    moved = x.gather(-1, source.clamp(0, length - 1).view(view).expand_as(x))
    if spectrogram:
        return torch.where(inside.view(view), moved + gain.view(per_clip), audio.SILENCE_DB).clamp_(min=audio.SILENCE_DB)
    return torch.where(inside.view(view), moved * (10.0 ** (gain / 20.0)).view(per_clip), 0.0)


def _series_mean_std(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of float series over their values (padding left out)."""
    means, stds = [], []
    for ch in range(x.shape[1]):
        values = x[:, ch].double()
        values = values[~values.isnan()]
        mean = float(values.mean())
        means.append(mean)
        # A constant channel has no spread; a unit std keeps normalize finite.
        std = float((values - mean).square().mean().sqrt())
        stds.append(std if std > 1e-12 else 1.0)
    return tuple(means), tuple(stds)


def _mean_std(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and std of uint8 images (0..1 units), from a 256-bin histogram per channel."""
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for ch in range(x.shape[1]):
        counts = torch.zeros(256, dtype=torch.float64)
        for start in range(0, len(x), 4096):  # chunks keep the int32 copy small for CIFAR-sized data
            counts += torch.bincount(x[start:start + 4096, ch].reshape(-1).to(torch.int32), minlength=256).double()
        total = counts.sum()
        mean = float((counts * levels).sum() / total)
        var = float((counts * (levels - mean) ** 2).sum() / total)
        means.append(mean)
        # A constant channel has no spread; one grey level keeps normalize finite.
        stds.append(max(var**0.5, 1.0 / 255.0))
    return tuple(means), tuple(stds)


# -- downloads -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Remote:
    name: str  # human name for messages and progress
    folder: Path  # where the files (or the extracted folder) go
    files: tuple[tuple[str, str], ...]  # (file name, md5) to fetch; md5 "": none published (the caller checks the file)
    mirrors: tuple[str, ...]  # base URLs, tried in order
    also: str = ""  # another form of the files that works too, for the message


def _missing(remote: _Remote, reason: str) -> DatasetError:
    names = [f for f, _ in remote.files]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    listed += f" ({remote.also})" if remote.also else ""
    return DatasetError(
        f"{remote.name} is not in {remote.folder} and can't be downloaded ({reason}). "
        f"Put {listed} there, or choose the bundled Digits dataset."
    )


def _fetch(remote: _Remote, cfg: DataConfig) -> Generator[DatasetEvent, None, None]:
    """Download every file of `remote` that is not there yet, md5-checked, with progress events."""
    todo = [(f, md5) for f, md5 in remote.files if not (remote.folder / f).is_file()]
    if not todo:
        return
    try:
        remote.folder.mkdir(parents=True, exist_ok=True)  # so the folder the message names is there to drop into
    except OSError as exc:
        raise DatasetError(f"Can't create the data folder {remote.folder}: {exc.strerror or exc}.") from None
    if not cfg.download:
        raise _missing(remote, "downloading is switched off")
    if os.environ.get(OFFLINE_ENV, "").strip() not in ("", "0"):
        raise _missing(remote, "the app is set to work offline")
    for file_name, md5 in todo:
        reason = "no network"
        for mirror in remote.mirrors:
            yield Log(message=f"Downloading {file_name} from {mirror}")
            try:
                yield from _download(mirror + file_name, remote.folder / file_name, md5, remote.name)
                break
            except _Unreachable as exc:
                yield Log(message=f"Could not download {mirror + file_name}: {exc}", level="warning")
                reason = str(exc) if exc.answered else reason
        else:
            raise _missing(remote, reason)


class _Unreachable(Exception):
    """The server could not be reached or answered with an error; another mirror may work."""

    def __init__(self, message: str, *, answered: bool = False) -> None:
        super().__init__(message)
        self.answered = answered  # the server was reached and refused (404 …): the message says more than "no network"


def _download(url: str, dest: Path, md5: str, name: str) -> Generator[DownloadProgress, None, None]:
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.md5(usedforsecurity=False)
    try:
        out = open(part, "wb")
    except OSError as exc:
        raise DatasetError(f"Can't write {part}: {exc.strerror or exc}.") from None
    try:
        with out, _connect(url) as response:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            yield DownloadProgress(name=name, done_bytes=0, total_bytes=total)
            while chunk := _read_chunk(response):
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise DatasetError(f"Can't write {part}: {exc.strerror or exc}.") from None
                digest.update(chunk)
                done += len(chunk)
                yield DownloadProgress(name=name, done_bytes=done, total_bytes=total)
        if md5 and digest.hexdigest() != md5:
            raise DatasetError(
                f"The downloaded {dest.name} is damaged (its checksum does not match); try again, or put a copy "
                f"downloaded by hand in {dest.parent}."
            )
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)  # a broken or abandoned download (the generator closed) leaves nothing


def _connect(url: str):
    try:
        return urllib.request.urlopen(url, timeout=30)
    except urllib.error.HTTPError as exc:
        raise _Unreachable(f"the server answered {exc.code} {exc.reason}", answered=True) from None
    except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, refused or reset connections
        raise _Unreachable(str(getattr(exc, "reason", exc))) from None


def _read_chunk(response) -> bytes:
    try:
        return response.read(1 << 20)
    except (OSError, http.client.HTTPException) as exc:
        raise _Unreachable(f"the connection broke off ({exc})") from None


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _extract_tar(archive: Path, member_root: str, dest: Path, *, flat: bool = False) -> None:
    """Extract the folder `member_root` of a .tar.gz into `dest`/member_root, all or nothing; with `flat`, an
    archive whose files lie at its top (Speech Commands') is extracted whole into `dest`/member_root.

    Only regular files and folders inside `member_root` are written; absolute paths, "..", links and
    devices are refused, so an archive cannot write outside the data folder.
    """
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
    base = tmp / member_root if flat else tmp
    try:
        base.mkdir(exist_ok=True)
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                parts = Path(member.name).parts
                if flat and not parts and member.isdir():
                    continue  # the archive's own top folder, "./"
                if member.name.startswith(("/", "\\")) or ".." in parts or not parts or (
                        not flat and parts[0] != member_root):
                    raise DatasetError(f"{archive.name} contains the unexpected path {member.name!r}; it is not "
                                       f"the official archive, so delete it.")
                if member.isdir():
                    (base / member.name).mkdir(parents=True, exist_ok=True)
                elif member.isfile():
                    target = base / member.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                else:
                    raise DatasetError(f"{archive.name} contains a link or special file ({member.name!r}); it is "
                                       f"not the official archive, so delete it.")
        final = dest / member_root
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp / member_root, final)
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"{archive} could not be extracted ({exc}); delete it so it can be downloaded again."
                           ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- CIFAR -----------------------------------------------------------------------------------
def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Python-3 pickles of bytes at protocol 2 call _codecs.encode(text, "latin1"); allow only that codec.
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError("only latin1 text may be encoded")
    return text.encode("latin1")


# The callables a CIFAR batch needs: numpy's array and scalar reconstructors (found from numpy itself,
# so numpy 1's "numpy.core" and numpy 2's "numpy._core" names both resolve), numpy.dtype and ndarray.
_RECONSTRUCT = np.array(0).__reduce__()[0]
_FROMBUFFER = np.array([0]).__reduce_ex__(5)[0]
_SCALAR = np.int64(0).__reduce__()[0]
_ALLOWED_GLOBALS = {
    **{(mod, "_reconstruct"): _RECONSTRUCT for mod in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(mod, "scalar"): _SCALAR for mod in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(mod, "_frombuffer"): _FROMBUFFER for mod in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches only: any global outside _ALLOWED_GLOBALS (os.system, eval, subprocess,
    any class) is refused before it is looked up, so a hostile file cannot run code."""

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}") from None


def _read_cifar_pickle(path: Path) -> dict[str, object]:
    try:
        with open(path, "rb") as fh:
            entry = _CifarUnpickler(fh, encoding="latin1").load()
    except OSError as exc:
        raise DatasetError(f"Can't read {path}: {exc.strerror or exc}.") from None
    except Exception as exc:  # a damaged or hostile pickle can raise almost anything; none of it runs code
        raise DatasetError(f"{path} is not a valid CIFAR batch ({exc}); delete it so it can be downloaded "
                           f"again.") from None
    if not isinstance(entry, dict):
        raise DatasetError(f"{path} is not a valid CIFAR batch (it holds no table); delete it so it can be "
                           f"downloaded again.")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def _cifar_batches(paths: list[Path], label_key: str, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for path in paths:
        entry = _read_cifar_pickle(path)
        data, targets = entry.get("data"), entry.get(label_key)
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise DatasetError(f"{path} is not a valid CIFAR batch (its 'data' is not N×3072 bytes); delete it "
                               f"so it can be downloaded again.")
        try:
            targets = np.asarray(targets, dtype=np.int64).reshape(-1)
        except (TypeError, ValueError):
            targets = np.empty(0, dtype=np.int64)
        if len(targets) != len(data) or (len(targets) and (targets.min() < 0 or targets.max() >= num_classes)):
            raise DatasetError(f"{path} is not a valid CIFAR batch (its labels do not match its images); delete "
                               f"it so it can be downloaded again.")
        images.append(data.reshape(-1, 3, 32, 32))  # rows are 1024 red, 1024 green, 1024 blue values
        labels.append(targets)
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


@dataclass(frozen=True, slots=True)
class _CifarSpec:
    name: str
    folder: str
    archive: str
    archive_md5: str
    train: tuple[str, ...]
    test: str
    meta: str
    meta_key: str
    label_key: str
    num_classes: int


_CIFAR = {  # file names and md5 sums as in torchvision.datasets.CIFAR10 / CIFAR100
    "cifar10": _CifarSpec("CIFAR-10", "cifar-10-batches-py", "cifar-10-python.tar.gz",
                          "c58f30108f718f92721af3b95e74349a", tuple(f"data_batch_{i}" for i in range(1, 6)),
                          "test_batch", "batches.meta", "label_names", "labels", 10),
    "cifar100": _CifarSpec("CIFAR-100", "cifar-100-python", "cifar-100-python.tar.gz",
                           "eb9058c3a382ffc7106e4002c42a8d85", ("train",), "test", "meta", "fine_label_names",
                           "fine_labels", 100),
}
_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/"


def _load_cifar(cfg: DataConfig, root: Path):
    spec = _CIFAR[cfg.dataset]
    folder = root / spec.folder
    needed = [*spec.train, spec.test, spec.meta]
    if not all((folder / f).is_file() for f in needed):
        remote = _Remote(spec.name, root, ((spec.archive, spec.archive_md5),), (_CIFAR_URL,),
                         also=f"or the {spec.folder} folder extracted from it")
        archive = root / spec.archive
        yield from _fetch(remote, cfg)
        if _md5(archive) != spec.archive_md5:  # a copy dropped in by hand must be the official one too
            raise DatasetError(f"{archive} is damaged or not the official {spec.name} archive (its checksum does "
                               f"not match); delete it and download it again.")
        yield Log(message=f"Extracting {archive.name}")
        _extract_tar(archive, spec.folder, root)
        missing = [f for f in needed if not (folder / f).is_file()]
        if missing:
            raise DatasetError(f"{archive} does not contain {missing[0]}; delete it and download it again.")
    meta = _read_cifar_pickle(folder / spec.meta)
    names = meta.get(spec.meta_key)
    if not isinstance(names, list) or len(names) != spec.num_classes or not all(isinstance(n, str) for n in names):
        raise DatasetError(f"{folder / spec.meta} does not list the {spec.num_classes} class names; delete it so "
                           f"it can be downloaded again.")
    yield Log(message=f"Reading {spec.name} from {folder}")
    train = _cifar_batches([folder / f for f in spec.train], spec.label_key, spec.num_classes)
    test = _cifar_batches([folder / spec.test], spec.label_key, spec.num_classes)
    return spec.name, names, train, test, ()


# -- MNIST and Fashion-MNIST -----------------------------------------------------------------
_IDX = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_MNIST = {  # folder, human name, mirrors, md5 of the .gz files, class names (torchvision's)
    "mnist": ("MNIST", "MNIST", ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
              ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
               "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"),
              tuple(str(i) for i in range(10))),
    "fashion_mnist": ("FashionMNIST", "Fashion-MNIST", ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
                      ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
                       "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"),
                      ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                       "Ankle boot")),
}


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An unsigned-byte idx file (LeCun's MNIST format), gzipped or not, as a numpy array."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise DatasetError(f"Can't read {path} ({exc}); delete it so it can be downloaded again.") from None
    header = 4 + 4 * ndim
    if len(raw) < header or raw[:4] != bytes((0, 0, 8, ndim)):
        raise DatasetError(f"{path} is not an idx file of {ndim}-d bytes; delete it so it can be downloaded again.")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if len(raw) - header != int(np.prod(shape)):
        raise DatasetError(f"{path} is truncated or damaged (its size does not match its header); delete it so it "
                           f"can be downloaded again.")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _load_mnist(cfg: DataConfig, root: Path):
    folder_name, name, mirrors, md5s, class_names = _MNIST[cfg.dataset]
    raw = root / folder_name / "raw"
    paths, missing = [], []
    for base, md5 in zip(_IDX, md5s, strict=True):
        plain, packed = raw / base, raw / (base + ".gz")
        paths.append(plain if plain.is_file() else packed)  # torchvision leaves both; the plain one reads faster
        if not plain.is_file() and not packed.is_file():
            missing.append((base + ".gz", md5))
    if missing:
        yield from _fetch(_Remote(name, raw, tuple(missing), mirrors), cfg)
    yield Log(message=f"Reading {name} from {raw}")
    train_x, train_y, test_x, test_y = (_read_idx(p, 3 if "images" in p.name else 1) for p in paths)
    for x, y, images in ((train_x, train_y, paths[0]), (test_x, test_y, paths[2])):
        if len(x) != len(y) or (len(y) and y.max() >= 10):
            raise DatasetError(f"The labels of {images} do not match its images; delete the files in {raw} so they "
                               f"can be downloaded again.")
    as_tensors = [torch.from_numpy(a.copy()) for a in (train_x, train_y, test_x, test_y)]
    train = (as_tensors[0][:, None], as_tensors[1].long())
    test = (as_tensors[2][:, None], as_tensors[3].long())
    return name, class_names, train, test, ()


# -- digits ----------------------------------------------------------------------------------
def _load_digits(cfg: DataConfig, root: Path):
    yield Log(message="Loading the bundled 8×8 digits (scikit-learn)")
    images, labels = _digits_arrays()
    # 0..16 grey levels to 0..255, so the images look and save like any other 8-bit picture.
    x = torch.from_numpy(np.rint(images * (255.0 / 16.0)).astype(np.uint8)).reshape(-1, 1, 8, 8)
    y = torch.from_numpy(labels.astype(np.int64))
    n_train = len(x) - (len(x) + 1) // 2  # train_test_split(test_size=0.5, shuffle=False): 898 / 899
    train = (x[:n_train].contiguous(), y[:n_train].contiguous())
    test = (x[n_train:].contiguous(), y[n_train:].contiguous())
    return "Digits", [str(i) for i in range(10)], train, test, ()


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (1797, 64) grey levels 0..16 and labels, exactly as load_digits gives them.

    Importing scikit-learn takes seconds, so we read the CSV it ships (what load_digits reads) and fall
    back to load_digits itself should a release move that file.
    """
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    if spec is None:
        raise DatasetError("The Digits dataset comes with scikit-learn; install it with: pip install scikit-learn.")
    csv = Path(next(iter(spec.submodule_search_locations or [""]))) / "datasets" / "data" / "digits.csv.gz"
    try:
        with gzip.open(csv, "rt") as fh:
            table = np.loadtxt(fh, delimiter=",")
        if table.shape == (1797, 65):
            return table[:, :-1], table[:, -1].astype(np.int64)
    except (OSError, ValueError):
        pass
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.data, bunch.target


# -- image folder ----------------------------------------------------------------------------
def _load_folder(cfg: DataConfig, root: Path):
    """One subfolder per class (files in deeper folders count for their class); every common format.

    Images are decoded by images.open_image and resized to cfg.image_size square. Channels are 1 when
    every readable image is grayscale (equal red, green and blue everywhere after decoding: L, 1, 16-bit
    and float files, and colour files that hold gray pictures), else 3. Unreadable files are skipped and
    reported; a class without images is an error. The decoded tensor is cached as safetensors under the
    data root and rebuilt when the list of files, their sizes or times, or the image size change.
    The test split takes round(test_fraction × n) images of each class (at least one, and at least
    one left for training when the class has two or more), chosen with a fixed seed.
    """
    folder = Path(cfg.folder).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"The image folder {folder} does not exist; choose a folder with one subfolder per class.")
    try:
        classes = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    except OSError as exc:
        raise DatasetError(f"Can't read the image folder {folder}: {exc.strerror or exc}.") from None
    _require_text_names(classes, folder)
    if len(classes) < 2:
        raise DatasetError(f"The image folder {folder} needs at least two subfolders, one per class, with images "
                           f"in them.")
    files: list[list[Path]] = []
    for class_dir in classes:
        try:
            # Not is_file(): a FIFO or device named like an image is refused by open_image and listed as skipped.
            found = image_files(class_dir)
        except OSError as exc:
            raise DatasetError(f"Can't read the class folder '{class_dir.name}' in {folder}: "
                               f"{exc.strerror or exc}.") from None
        if not found:
            raise DatasetError(f"The class folder '{class_dir.name}' in {folder} has no images; add some or remove "
                               f"the folder.")
        files.append(found)
    class_names = [d.name for d in classes]
    side = cfg.image_size
    crop = cfg.crop_to_content
    fingerprint = _fingerprint(folder, files, side, crop)
    cache = root / "folder-cache" / (f"{_slug(folder.name)}-{_short_hash(str(folder.resolve()))}-{side}px"
                                     f"{'-content' if crop else ''}.safetensors")

    cached = _read_cache(cache, fingerprint)
    if cached is not None:
        x, y, skipped = cached
        yield Log(message=f"Using the decoded images of {folder} cached in {cache.parent}")
    else:
        total = sum(len(f) for f in files)
        yield Log(message=f"Decoding {total} images from {folder} at {side}×{side}")
        x, y, skipped = yield from _decode_folder(folder, files, side, crop)
        try:
            _write_cache(cache, x, y, skipped, fingerprint, class_names)
        except OSError as exc:
            yield Log(message=f"Could not cache the decoded images in {cache.parent} ({exc.strerror or exc}); they will be "
                      f"decoded again next time.", level="warning")
    if skipped:
        shown = ", ".join(s.split(": ")[0] for s in skipped[:5]) + (f" and {len(skipped) - 5} more"
                                                                     if len(skipped) > 5 else "")
        yield Log(message=f"Skipped {len(skipped)} unreadable file{'s' if len(skipped) != 1 else ''} in {folder}: {shown}.",
                  level="warning")
    counts = torch.bincount(y, minlength=len(classes))
    for class_index, count in enumerate(counts.tolist()):
        if count == 0:
            raise DatasetError(f"None of the images in the class folder '{class_names[class_index]}' in {folder} "
                               f"could be read; add readable images or remove the folder.")
    train_idx, test_idx = _stratified_split(y, cfg.test_fraction, len(classes), FOLDER_SPLIT_SEED)
    if len(test_idx) == 0:
        raise DatasetError(f"The image folder {folder} has too few images to hold any out for testing; add images.")
    lonely = [class_names[i] for i, n in enumerate(counts.tolist()) if n == 1]
    if lonely:
        yield Log(message=f"Classes with a single image are used for training only: {', '.join(lonely)}.", level="warning")
    train, test = _take(x, y, train_idx), _take(x, y, test_idx)
    # The decoded images are the listed files less the skipped ones, in order; () if that cannot be matched.
    unread = {entry.split(": ", 1)[0] for entry in skipped}
    kept = [str(p) for class_files in files for p in class_files if p.relative_to(folder).as_posix() not in unread]
    sources = ((tuple(kept[i] for i in train_idx.tolist()), tuple(kept[i] for i in test_idx.tolist()))
               if len(kept) == len(x) else ((), ()))
    return folder.name, class_names, train, test, skipped, sources


def _require_text_names(classes: list[Path], folder: Path) -> None:
    """A class's name is saved in the model and shown everywhere: each class folder's name must be text."""
    for class_dir in classes:
        try:
            class_dir.name.encode("utf-8")
        except UnicodeEncodeError:
            raise DatasetError(f"The class folder {os.fsencode(class_dir.name)!r} in {folder} has a name that is not "
                               "valid UTF-8; rename it (class names are saved with the model).") from None


def _decode_folder(folder: Path, files: list[list[Path]], side: int, crop: bool):
    jobs = [(path, label) for label, class_files in enumerate(files) for path in class_files]
    images: list[torch.Tensor] = []
    labels: list[int] = []
    skipped: list[str] = []
    report_every = max(500, len(jobs) // 10)

    def decode(path: Path) -> torch.Tensor | ImageError:
        try:
            image = open_image(path, channels=3)
            return to_uint8_tensor(crop_to_content(image) if crop else image, (side, side))
        except ImageError as exc:
            return exc

    # Pillow decodes and resizes without the GIL, so threads use every core for large folders.
    pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
    try:
        for done, ((path, label), result) in enumerate(zip(jobs, pool.map(decode, [p for p, _ in jobs]), strict=True), 1):
            if isinstance(result, ImageError):
                skipped.append(f"{path.relative_to(folder).as_posix()}: {result.reason}")
            else:
                images.append(result)
                labels.append(label)
            if done % report_every == 0:
                yield Log(message=f"Decoded {done} of {len(jobs)} images")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # a closed generator stops the queued work too
    x = torch.stack(images) if images else torch.zeros((0, 3, side, side), dtype=torch.uint8)
    if len(x) and bool((x[:, 0] == x[:, 1]).all() and (x[:, 1] == x[:, 2]).all()):
        # Every image is gray (R = G = B). Pillow's "L" conversion of such a pixel is that same value, so
        # the first channel is exactly what open_image(channels=1) gives the predictor later.
        x = x[:, :1].contiguous()
    return x, torch.tensor(labels, dtype=torch.int64), skipped


# -- time series -------------------------------------------------------------------------------
# The archive's zip of each problem (as aeon fetches them). It publishes no checksums, so none is invented:
# a download is opened and must hold <name>_TRAIN.ts and <name>_TEST.ts, which the series reader then checks.
UCR_URL = "https://timeseriesclassification.com/aeon-toolkit/"
UCR_MAX_BYTES = 4 << 30  # a .ts larger than this in a zip is not one of the archive's (its largest are ~1 GB)


def _ucr_problem(cfg: DataConfig, root: Path) -> Generator[DatasetEvent, None, DataConfig]:
    """cfg with train_file and test_file set to the UCR/UEA problem's .ts files in root/UCR/<name>, downloading
    and extracting <name>.zip first when they are not there."""
    name = cfg.ucr_problem.strip()
    train, test = ucr_files(root, name)
    folder, wanted = train.parent, (train.name, test.name)
    if not (train.is_file() and test.is_file()):
        archive = folder / f"{name}.zip"
        yield from _fetch(_Remote(f"{name} (UCR/UEA)", folder, ((archive.name, ""),), (UCR_URL,),
                                  also=f"or {wanted[0]} and {wanted[1]}"), cfg)
        try:
            _extract_ucr(archive, wanted, folder)
        finally:
            archive.unlink(missing_ok=True)  # extracted, or not what was wanted: either way not needed again
    return dataclasses.replace(cfg, train_file=str(train), test_file=str(test))


def _extract_ucr(archive: Path, wanted: tuple[str, str], folder: Path) -> None:
    """Write the members of the zip `archive` named `wanted` (at any depth) into `folder`, each atomically."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            found = {Path(info.filename).name: info for info in zipped.infolist()
                     if Path(info.filename).name in wanted and not info.is_dir()}
            if len(found) < len(wanted):
                raise DatasetError(f"{archive.name} holds no {wanted[0]} and {wanted[1]}; the archive may offer this "
                                   f"problem in another format only. Put both files in {folder} by hand.")
            for member, info in found.items():  # all checked before any is written
                if info.file_size > UCR_MAX_BYTES:
                    raise DatasetError(f"{member} in {archive.name} claims {info.file_size:,} bytes, too many for a "
                                       f"series file; put the problem's files in {folder} by hand.")
            for member, info in found.items():
                with zipped.open(info) as source:  # reads at most file_size bytes, and checks their CRC
                    atomic_write_bytes(folder / member, source.read())
    except (zipfile.BadZipFile, EOFError):
        raise DatasetError(f"The downloaded {archive.name} is not a zip archive (is the problem's name spelled as the "
                           f"archive spells it?); put its {wanted[0]} and {wanted[1]} in {folder} by hand.") from None
    except OSError as exc:
        raise DatasetError(f"Can't extract {archive.name} into {folder}: {exc.strerror or exc}.") from None


def _load_sequences(cfg: DataConfig, root: Path):
    """Series from cfg.train_file (or the UCR/UEA problem cfg.ucr_problem), and cfg.test_file or else
    round(test_fraction × n) of each class of the train file (seeded like a folder's split). The classes are
    the train file's (a .ts header's @classLabel order, else sorted); a test label it lacks is refused. Every
    series is padded with NaN to the longest of both files."""
    if not cfg.train_file.strip() and cfg.ucr_problem.strip():
        cfg = yield from _ucr_problem(cfg, root)
    if not cfg.train_file.strip():
        raise DatasetError("Choose a training file of series (.ts, .csv or .npy) for the sequences dataset "
                           "(data.train_file), or name a UCR/UEA problem (data.ucr_problem).")
    train_path = Path(cfg.train_file).expanduser()
    yield Log(message=f"Reading series from {train_path}")
    try:
        train = read_series(train_path, label_column=cfg.label_column)
        test = read_series(Path(cfg.test_file).expanduser(), label_column=cfg.label_column) \
            if cfg.test_file.strip() else None
    except SeriesError as exc:
        raise DatasetError(str(exc)) from None
    class_names = list(train.declared) or class_order(train.labels)
    if len(class_names) < 2:
        raise DatasetError(f"{train_path.name} holds one class only ({class_names[0]}); a classifier needs series "
                           f"of two classes or more.")
    index = {name: i for i, name in enumerate(class_names)}
    if test is not None:
        if test.channels != train.channels:
            raise DatasetError(f"The test file's series have {test.channels} channels and the training file's "
                               f"{train.channels}; both files need the same channels.")
        unknown = sorted(set(test.labels) - set(index))
        if unknown:
            raise DatasetError(f"The test file {Path(cfg.test_file).name} has labels the training file lacks "
                               f"({', '.join(unknown[:5])}); train on every class you test.")
    length = max(train.longest, test.longest if test is not None else 0)
    x = torch.from_numpy(pad(train.values, length))
    y = torch.tensor([index[label] for label in train.labels], dtype=torch.int64)
    rows = [f"{train_path}#{i + 1}" for i in range(len(x))]  # each series' file and row, as predict names them
    if test is not None:
        test_xy = (torch.from_numpy(pad(test.values, length)),
                   torch.tensor([index[label] for label in test.labels], dtype=torch.int64))
        train_xy = (x, y)
        test_path = Path(cfg.test_file).expanduser()
        names = (rows, [f"{test_path}#{i + 1}" for i in range(len(test_xy[0]))])
    else:
        train_idx, test_idx = _stratified_split(y, cfg.test_fraction, len(class_names), FOLDER_SPLIT_SEED)
        if len(test_idx) == 0:
            raise DatasetError(f"{train_path.name} has too few series to hold any out for testing; add series or "
                               f"give a test file (data.test_file).")
        train_xy, test_xy = _take(x, y, train_idx), _take(x, y, test_idx)
        names = ([rows[i] for i in train_idx.tolist()], [rows[i] for i in test_idx.tolist()])
    name = train_path.stem.removesuffix("_TRAIN").removesuffix("_train") or train_path.name
    return name, class_names, train_xy, test_xy, (), names


# -- point clouds ------------------------------------------------------------------------------
def _load_points_folder(cfg: DataConfig, root: Path):
    """One subfolder per class of meshes and point lists (files in deeper folders count for their class),
    each read by points.read_points to cfg.num_points points (seeded per file, so every run and `predict`
    get the same points). Unreadable files are skipped and reported; a class without readable files is an
    error. When every class folder has train/ and test/ subfolders (ModelNet's layout), test/ is the test
    split, so results compare with the published ones; otherwise the test split is held out as a folder's
    (round(test_fraction × n) per class, fixed seed). Reading meshes is slow (ModelNet10: minutes), so the
    clouds are cached as safetensors under the data root, rebuilt when the files or num_points change."""
    folder = Path(cfg.folder).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"The point cloud folder {folder} does not exist; choose a folder with one subfolder "
                           f"per class of meshes or point files.")
    try:
        classes = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
        files = [point_files(d) for d in classes]
    except OSError as exc:
        raise DatasetError(f"Can't read the point cloud folder {folder}: {exc.strerror or exc}.") from None
    if len(classes) < 2:
        raise DatasetError(f"The point cloud folder {folder} needs at least two subfolders, one per class, with "
                           f"meshes or point files in them.")
    for class_dir, found in zip(classes, files, strict=True):
        if not found:
            raise DatasetError(f"The class folder '{class_dir.name}' in {folder} has no meshes or point files "
                               f"(.ply, .off, .obj, .stl, .xyz, .txt, .npy); add some or remove the folder.")
    class_names = [d.name for d in classes]
    fingerprint = _fingerprint(folder, files, cfg.num_points, crop=False)
    cache = root / "points-cache" / f"{_slug(folder.name)}-{_short_hash(str(folder.resolve()))}-{cfg.num_points}.safetensors"
    cached = _read_cache(cache, fingerprint, dtype=torch.float32, ndim=3)
    if cached is not None:
        x, y, skipped = cached
        yield Log(message=f"Using the point clouds of {folder} cached in {cache.parent}")
    else:
        x, y, skipped = yield from _read_point_files(folder, files, cfg.num_points)
        try:
            _write_cache(cache, x, y, skipped, fingerprint, class_names)
        except OSError as exc:
            yield Log(message=f"Could not cache the point clouds in {cache.parent} ({exc.strerror or exc}); they "
                              f"will be read again next time.", level="warning")
    if skipped:
        yield Log(message=f"Skipped {len(skipped)} unreadable file{'s' if len(skipped) != 1 else ''} in {folder}: "
                          f"{skipped[0]}" + (f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""),
                  level="warning")
    counts = torch.bincount(y, minlength=len(classes)).tolist()
    for class_dir, count in zip(classes, counts, strict=True):
        if count == 0:
            raise DatasetError(f"None of the files in the class folder '{class_dir.name}' in {folder} could be "
                               f"read; add readable meshes or point files or remove the folder.")
    # The read clouds are the listed files less the skipped ones, in order.
    unread = {entry.split(": ", 1)[0] for entry in skipped}
    kept = [(p, d) for d, class_files in zip(classes, files, strict=True) for p in class_files
            if p.relative_to(folder).as_posix() not in unread]
    if all((d / "train").is_dir() and (d / "test").is_dir() for d in classes):
        in_test = torch.tensor([p.relative_to(d).parts[0] == "test" for p, d in kept], dtype=torch.bool)
        train_idx, test_idx = torch.nonzero(~in_test).flatten(), torch.nonzero(in_test).flatten()
        yield Log(message=f"Testing on the {len(test_idx)} clouds in the classes' test folders, training on the rest")
    else:
        train_idx, test_idx = _stratified_split(y, cfg.test_fraction, len(classes), FOLDER_SPLIT_SEED)
    if len(test_idx) == 0:
        raise DatasetError(f"The point cloud folder {folder} has too few files to hold any out for testing; add "
                           f"files.")
    train, test = _take(x, y, train_idx), _take(x, y, test_idx)
    sources = (tuple(str(kept[i][0]) for i in train_idx.tolist()), tuple(str(kept[i][0]) for i in test_idx.tolist()))
    return folder.name, class_names, train, test, skipped, sources


def _read_point_files(folder: Path, files: list[list[Path]], num_points: int):
    """float32 (N, 3, num_points) clouds, channels first as images are, their labels, and the skipped files."""
    total = sum(len(f) for f in files)
    yield Log(message=f"Reading {total} point clouds from {folder} at {num_points} points each")
    clouds, labels, skipped = [], [], []
    done = 0
    for label, class_files in enumerate(files):
        for path in class_files:
            try:
                clouds.append(read_points(path, num_points))
                labels.append(label)
            except PointsError as exc:
                skipped.append(f"{path.relative_to(folder).as_posix()}: {exc}")
            done += 1
            if done % 200 == 0:
                yield Log(message=f"Read {done} of {total} point clouds")
    x = torch.from_numpy(np.stack(clouds)).transpose(1, 2).contiguous() if clouds else \
        torch.zeros((0, 3, num_points), dtype=torch.float32)
    return x, torch.tensor(labels, dtype=torch.int64), skipped


# -- audio -------------------------------------------------------------------------------------
SOUND_CHUNK = 1024  # clips turned into the model's input at a time: bounded memory for big folders


def _decode_sounds(jobs: list[tuple[Path, int]], folder: Path, class_names: list[str], cfg: DataConfig):
    """Decode (path, label) jobs into the model's input x, labels y, the files kept and the skipped ones (as
    "name: reason"), with progress events; a class left without a usable sound is an error."""
    yield Log(message=f"Decoding {len(jobs):,} sounds from {folder} as {cfg.clip_seconds:g} s clips at "
                      f"{cfg.sample_rate:,} Hz" + ("" if cfg.audio_input == "waveform" else
                                                   f", as {cfg.n_mels}-band log-mel spectrograms"))

    def decode(path: Path) -> np.ndarray | audio.AudioError:
        try:
            return audio.read_clip(path, sample_rate=cfg.sample_rate, clip_seconds=cfg.clip_seconds)
        except audio.AudioError as exc:
            return exc

    parts: list[torch.Tensor] = []
    clips: list[np.ndarray] = []
    labels: list[int] = []
    kept: list[str] = []
    skipped: list[str] = []

    def convert() -> None:
        parts.append(audio.model_input(torch.from_numpy(np.stack(clips)), sample_rate=cfg.sample_rate,
                                       audio_input=cfg.audio_input, n_mels=cfg.n_mels))
        clips.clear()

    report_every = max(500, len(jobs) // 10)
    # libsndfile and the resampler run without the GIL, so threads use every core.
    pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
    try:
        for done, ((path, label), result) in enumerate(zip(jobs, pool.map(decode, [p for p, _ in jobs]),
                                                           strict=True), 1):
            if isinstance(result, audio.AudioError):
                skipped.append(f"{path.relative_to(folder).as_posix()}: {result}")
            else:
                clips.append(result)
                labels.append(label)
                kept.append(str(path))
                if len(clips) == SOUND_CHUNK:
                    convert()
            if done % report_every == 0:
                yield Log(message=f"Decoded {done:,} of {len(jobs):,} sounds")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # a closed generator stops the queued work too
    if clips:
        convert()
    if skipped:
        shown = ", ".join(s.split(": ")[0] for s in skipped[:5]) + (f" and {len(skipped) - 5} more"
                                                                     if len(skipped) > 5 else "")
        yield Log(message=f"Skipped {len(skipped)} unusable sound file{'s' if len(skipped) != 1 else ''} in {folder}: "
                          f"{shown}.", level="warning")
    y = torch.tensor(labels, dtype=torch.int64)
    for class_index, count in enumerate(torch.bincount(y, minlength=len(class_names)).tolist()):
        if count == 0:
            raise DatasetError(f"None of the sounds in the class folder '{class_names[class_index]}' in {folder} "
                               f"could be used; add readable, non-silent files or remove the folder.")
    return torch.cat(parts), y, kept, skipped


def _load_audio(cfg: DataConfig, root: Path):
    """One subfolder of cfg.folder per class of WAV, FLAC or OGG files (files in deeper folders count for their
    class), each decoded by core/audio.py into a clip of cfg.clip_seconds at cfg.sample_rate and turned into
    cfg.audio_input. Unreadable, empty, silent and NaN files are skipped and reported with their reason; a class
    left without sounds is an error. The test split is a folder's (round(test_fraction × n) a class, fixed seed)."""
    folder = Path(cfg.folder).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"The audio folder {folder} does not exist; choose a folder with one subfolder per class "
                           f"of WAV, FLAC or OGG files.")
    classes = class_folders(folder)
    _require_text_names(classes, folder)
    if len(classes) < 2:
        raise DatasetError(f"The audio folder {folder} needs at least two subfolders, one per class, with WAV, FLAC "
                           f"or OGG files in them.")
    jobs: list[tuple[Path, int]] = []
    for label, class_dir in enumerate(classes):
        try:
            found = audio.audio_files(class_dir)
        except OSError as exc:
            raise DatasetError(f"Can't read the class folder '{class_dir.name}' in {folder}: "
                               f"{exc.strerror or exc}.") from None
        if not found:
            raise DatasetError(f"The class folder '{class_dir.name}' in {folder} has no WAV, FLAC or OGG files; add "
                               f"some or remove the folder.")
        jobs += [(path, label) for path in found]
    class_names = [d.name for d in classes]
    x, y, kept, skipped = yield from _decode_sounds(jobs, folder, class_names, cfg)
    train_idx, test_idx = _stratified_split(y, cfg.test_fraction, len(classes), FOLDER_SPLIT_SEED)
    if len(test_idx) == 0:
        raise DatasetError(f"The audio folder {folder} has too few sounds to hold any out for testing; add sounds.")
    train, test = _take(x, y, train_idx), _take(x, y, test_idx)
    sources = (tuple(kept[i] for i in train_idx.tolist()), tuple(kept[i] for i in test_idx.tolist()))
    return folder.name, class_names, train, test, skipped, sources


# Google's Speech Commands v0.02: the URL and md5 of torchaudio.datasets.SPEECHCOMMANDS (_CHECKSUMS).
_SPEECH_ARCHIVE = "speech_commands_v0.02.tar.gz"
_SPEECH_MD5 = "6b74f3901214cb2c2934e98196829835"
_SPEECH_URL = "https://storage.googleapis.com/download.tensorflow.org/data/"
SPEECH_FOLDER = "SpeechCommands"  # under the data root: one folder per word, testing_list.txt, validation_list.txt


def _load_speech_commands(cfg: DataConfig, root: Path):
    """Speech Commands v0.02 (downloaded, md5-checked and extracted into the data root on the first use): one
    folder per word of 16 kHz WAV files. The test split is the dataset's own testing_list.txt, so results compare
    with published ones; everything else trains (validation is carved from it as for every dataset). The
    _background_noise_ folder holds long noise recordings, not words, and is left out."""
    folder = root / SPEECH_FOLDER
    if not (folder / "testing_list.txt").is_file():
        archive = root / _SPEECH_ARCHIVE
        yield from _fetch(_Remote("Speech Commands", root, ((_SPEECH_ARCHIVE, _SPEECH_MD5),), (_SPEECH_URL,),
                                  also=f"or the {SPEECH_FOLDER} folder extracted from it"), cfg)
        if _md5(archive) != _SPEECH_MD5:  # a copy dropped in by hand must be the official one too
            raise DatasetError(f"{archive} is damaged or not the official Speech Commands v0.02 archive (its checksum "
                               f"does not match); delete it and download it again.")
        yield Log(message=f"Extracting {archive.name} into {folder}")
        _extract_tar(archive, SPEECH_FOLDER, root, flat=True)
        if not (folder / "testing_list.txt").is_file():
            raise DatasetError(f"{archive} does not contain testing_list.txt; delete it and download it again.")
    classes = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(("_", ".")))
    if len(classes) < 2:
        raise DatasetError(f"{folder} holds no word folders; delete it so Speech Commands can be extracted again.")
    testing = {line.strip() for line in (folder / "testing_list.txt").read_text(encoding="utf-8").splitlines()}
    jobs = [(path, label) for label, d in enumerate(classes) for path in sorted(d.glob("*.wav"))]
    class_names = [d.name for d in classes]
    x, y, kept, skipped = yield from _decode_sounds(jobs, folder, class_names, cfg)
    in_test = torch.tensor([Path(k).relative_to(folder).as_posix() in testing for k in kept], dtype=torch.bool)
    train_idx, test_idx = (~in_test).nonzero().flatten(), in_test.nonzero().flatten()
    if len(test_idx) == 0 or len(train_idx) == 0:
        raise DatasetError(f"testing_list.txt in {folder} names none of its files (or all of them); delete the folder "
                           f"so Speech Commands can be extracted again.")
    train, test = _take(x, y, train_idx), _take(x, y, test_idx)
    sources = (tuple(kept[i] for i in train_idx.tolist()), tuple(kept[i] for i in test_idx.tolist()))
    return "Speech Commands", class_names, train, test, skipped, sources


# Princeton's ModelNet10 (3D ShapeNets): no checksum is published for the zip, so it is checked by what it
# holds instead: ModelNet10/<class>/train|test/*.off for at least two classes, nothing else written.
_MODELNET_ARCHIVE = "ModelNet10.zip"
_MODELNET_URL = "http://3dvision.princeton.edu/projects/2014/3DShapeNets/"
MODELNET_FOLDER = "ModelNet10"
MODELNET_MAX_BYTES = 64 << 20  # per mesh: ModelNet10's largest .off is a few MB


def _load_modelnet10(cfg: DataConfig, root: Path):
    """ModelNet10 (downloaded and extracted into the data root on the first use), read as a points folder
    with ModelNet's own train/test split (`_load_points_folder`)."""
    folder = root / MODELNET_FOLDER
    if not _modelnet_ready(folder):
        archive = root / _MODELNET_ARCHIVE
        yield from _fetch(_Remote("ModelNet10", root, ((_MODELNET_ARCHIVE, ""),), (_MODELNET_URL,),
                                  also=f"or the {MODELNET_FOLDER} folder extracted from it"), cfg)
        yield Log(message=f"Extracting {archive.name} into {folder}")
        _extract_modelnet(archive, root)
        if not _modelnet_ready(folder):
            raise DatasetError(f"{archive} holds no ModelNet10/<class>/train and test folders of .off meshes; delete "
                               f"it and download it again.")
    name, class_names, train, test, skipped, sources = yield from _load_points_folder(
        dataclasses.replace(cfg, folder=str(folder)), root)
    return "ModelNet10", class_names, train, test, skipped, sources


def _modelnet_ready(folder: Path) -> bool:
    """At least two class folders, each with train/ and test/ (what extraction leaves)."""
    try:
        classes = [d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")]
    except OSError:
        return False
    return len(classes) >= 2 and all((d / "train").is_dir() and (d / "test").is_dir() for d in classes)


def _extract_modelnet(archive: Path, root: Path) -> None:
    """Write the zip's ModelNet10/<class>/(train|test)/<name>.off members under root, each atomically; every
    other member (macOS resource forks, notes) is skipped, and a member that would land anywhere else (an
    absolute path, "..") is never written. All are checked before any is written."""
    wanted = []
    try:
        with zipfile.ZipFile(archive) as zipped:
            for info in zipped.infolist():
                parts = info.filename.split("/")
                if info.is_dir() or len(parts) != 4 or parts[0] != MODELNET_FOLDER or parts[2] not in ("train", "test"):
                    continue
                if any(p in ("", ".", "..") or p.startswith(".") or "\\" in p for p in parts) \
                        or not parts[3].lower().endswith(".off"):
                    continue
                if info.file_size > MODELNET_MAX_BYTES:
                    raise DatasetError(f"{info.filename} in {archive.name} claims {info.file_size:,} bytes, too many "
                                       f"for a ModelNet mesh; delete the archive and download it again.")
                wanted.append(info)
            if not wanted:
                raise DatasetError(f"{archive.name} holds no ModelNet10/<class>/train or test meshes; delete it and "
                                   f"download it again.")
            for info in wanted:
                dest = root.joinpath(*info.filename.split("/"))
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zipped.open(info) as source:  # reads at most file_size bytes, and checks their CRC
                    atomic_write_bytes(dest, source.read())
    except (zipfile.BadZipFile, EOFError):
        raise DatasetError(f"{archive} is not a zip archive; delete it and download it again.") from None
    except OSError as exc:
        raise DatasetError(f"Can't extract {archive.name} into {root}: {exc.strerror or exc}.") from None


def split_validation(y: torch.Tensor, fraction: float, num_classes: int, seed: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, validation) of a training split with labels y: `fraction` of each class goes to
    validation (none when fraction is 0), drawn with `seed` alone, so the same data and config always give
    the same split, on every device, run and resume."""
    if fraction <= 0:
        return torch.arange(len(y)), torch.zeros(0, dtype=torch.long)
    return _stratified_split(y, fraction, num_classes, seed)


def _take(x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The samples at `idx` of (x, y), each contiguous in memory: one split of a dataset read whole."""
    return x[idx].contiguous(), y[idx].contiguous()


def _stratified_split(y: torch.Tensor, fraction: float, num_classes: int, seed: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """round(fraction × n) of each class (at least one, and at least one left when the class has two or more)
    are held out; both index lists come back sorted, so the images keep their order."""
    generator = torch.Generator().manual_seed(seed)
    train, test = [], []
    for label in range(num_classes):
        members = torch.nonzero(y == label).flatten()
        n = len(members)
        n_test = 0 if n < 2 else min(max(round(fraction * n), 1), n - 1)
        order = members[torch.randperm(n, generator=generator)]
        test.append(order[:n_test])
        train.append(order[n_test:])
    return torch.sort(torch.cat(train)).values, torch.sort(torch.cat(test)).values


def _fingerprint(folder: Path, files: list[list[Path]], side: int, crop: bool) -> str:
    listing = []
    for class_files in files:
        for path in class_files:
            try:
                st = path.stat()
                listing.append((path.relative_to(folder).as_posix(), st.st_size, st.st_mtime_ns))
            except OSError:
                listing.append((path.relative_to(folder).as_posix(), -1, -1))
    # The cropping rule's constants too: a cache cut by another rule is decoded again.
    cropping = [CONTENT_THRESHOLD, PLAIN_BORDER, CONTENT_MARGIN] if crop else False
    text = json.dumps([CACHE_FORMAT, side, cropping, listing], separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _read_cache(path: Path, fingerprint: str, *, dtype: torch.dtype = torch.uint8, ndim: int = 4
                ) -> tuple[torch.Tensor, torch.Tensor, list[str]] | None:
    """The cached (x, y, skipped) when the cache file exists and matches; None (rebuild) otherwise."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            if meta.get("format") != CACHE_FORMAT or meta.get("fingerprint") != fingerprint:
                return None
            x, y = fh.get_tensor("x"), fh.get_tensor("y")
            skipped = json.loads(meta.get("skipped", "[]"))
    except (SafetensorError, OSError, ValueError, KeyError):
        return None  # a damaged cache is only a slower start
    if x.dtype != dtype or x.ndim != ndim or y.dtype != torch.int64 or len(x) != len(y):
        return None
    return x, y, [str(s) for s in skipped]


def _write_cache(path: Path, x: torch.Tensor, y: torch.Tensor, skipped: list[str], fingerprint: str,
                 class_names: list[str]) -> None:
    from safetensors.torch import save

    meta = {"format": CACHE_FORMAT, "fingerprint": fingerprint, "skipped": json.dumps(skipped),
            "class_names": json.dumps(class_names)}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, save({"x": x.contiguous(), "y": y.contiguous()}, metadata=meta))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text)[:40] or "folder"


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


_LOADERS: dict[str, Callable[[DataConfig, Path], Generator]] = {
    "cifar10": _load_cifar,
    "cifar100": _load_cifar,
    "mnist": _load_mnist,
    "fashion_mnist": _load_mnist,
    "digits": _load_digits,
    "folder": _load_folder,
    "sequences": _load_sequences,
    "points_folder": _load_points_folder,
    "audio_folder": _load_audio,
    "speech_commands": _load_speech_commands,
    "modelnet10": _load_modelnet10,
}

