"""Prediction: a checkpoint in, top-k labels with probabilities out.

Images go through exactly the training pipeline: `images.open_image` -> `images.to_uint8_tensor`
(the checkpoint's size and channels) -> `data.normalize` (its mean and std) -> `model.to_channels_last`.
A file that cannot be read becomes a `Prediction` with an error sentence; the others in the same
batch are still classified.

Series (a model of input_axis 1) go through the training pipeline too: `series.read_series` ->
`series.pad` to the model's length (NaN after each series' end) -> `data.padding_mask` and
`data.normalize`. One file holds many series, so `predict_series_file` gives one Prediction each.

Point clouds (a model of positions "points") too: `points.read_points` samples each mesh or point list to
the model's number of points with training's seed and centres it in the unit sphere, then
`data.normalize` (mean 0, std 1: the coordinates as they are). `predict_points` gives one Prediction a file.
Sounds (a model of the audio_folder dataset) go through the training pipeline as well, with the sample
rate, clip length and input (waveform or log-mel) the checkpoint's config records: `audio.read_clip` ->
`audio.model_input` -> `data.normalize`. `predict` takes them like images, one Prediction per file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from perceiver_gui.core import audio
from perceiver_gui.core.checkpoints import CheckpointError, ModelMeta, check_state_dict, load_model
from perceiver_gui.core.data import normalize, padding_mask
from perceiver_gui.core.datasets import KINDS, kind_of
from perceiver_gui.core.device import resolve_device
from perceiver_gui.core.images import ImageError, crop_to_content, image_files, open_image, to_uint8_tensor
from perceiver_gui.core.model import build_model, to_channels_last
from perceiver_gui.core.points import PointsError, read_points
from perceiver_gui.core.series import SeriesError, SeriesSet, pad, read_series

__all__ = ["AttentionMaps", "Prediction", "Predictor", "Source"]

Source = str | Path | bytes | Image.Image  # what `predict` accepts for one image


@dataclass(frozen=True, slots=True)
class Prediction:
    path: str  # the file as given; a PIL image's own filename, or "" for images and bytes in memory
    top: tuple[tuple[str, float], ...] = ()  # (label, probability), most probable first
    error: str = ""  # one sentence when the image could not be read ("" when classified)


@dataclass(frozen=True, slots=True)
class AttentionMaps:
    """Where the latents look: one map per cross-attention layer over the model's input grid."""

    prediction: Prediction
    image: torch.Tensor  # uint8 (C, H, W): the image exactly as the model saw it, for overlays; a series' float (C, l);
    # a cloud's float (P, 3)
    maps: tuple[torch.Tensor, ...]  # per cross-attend layer, float (cross_heads, num_latents, H, W) or (…, l); sums to 1


class Predictor:
    """A model loaded from a checkpoint, in eval mode, with the preprocessing it was trained with."""

    def __init__(self, model: torch.nn.Module, meta: ModelMeta, device: torch.device) -> None:
        self.model = model.to(device).eval()
        self.meta = meta
        self.device = device

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> Predictor:
        """Load a model file; CheckpointError (one sentence) for anything that is not a usable checkpoint."""
        state, meta = load_model(path)
        # Both implementations share one state_dict, so ours (faster, with attention maps) serves any checkpoint.
        cfg = dataclasses.replace(meta.config.model, implementation="fast")
        # A config is only data, but a hostile one (depth 10**6, heads 10**9 wide) could make building the
        # model hang or exhaust memory. Every layer has weights in the file, and a skeleton on the "meta"
        # device allocates nothing, so the real model is built only once the file's tensors match it.
        if cfg.depth * cfg.self_per_cross_attn > len(state):
            raise CheckpointError(f"{path} describes a model with {cfg.depth} layers but holds only "
                                  f"{len(state)} weights, so it is damaged.")
        with torch.device("meta"):
            check_state_dict(state, build_model(cfg))
        model = build_model(cfg)
        model.load_state_dict(state)
        return cls(model, meta, device if isinstance(device, torch.device) else resolve_device(device))

    def predict(self, sources: Iterable[Source], top_k: int = 5, batch_size: int = 64) -> list[Prediction]:
        """One Prediction per source, in order; unreadable images give an error entry instead of raising."""
        k = self._top_k(top_k)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        sources = list(sources)
        out: list[Prediction] = []
        for start in range(0, len(sources), batch_size):
            batch = sources[start : start + batch_size]
            out.extend(self._predict_sounds(batch, k) if self.takes_audio else self._predict_batch(batch, k))
        return out

    def predict_folder(self, folder: str | Path, top_k: int = 5,
                       batch_size: int = 64) -> Generator[list[Prediction], None, None]:
        """Every image file (a sound model: sound file) under `folder` (recursively, sorted), one list of
        predictions per batch."""
        files = audio.audio_files(Path(folder)) if self.takes_audio and Path(folder).is_dir() else image_files(Path(folder))
        for start in range(0, len(files), batch_size):
            yield self.predict(files[start : start + batch_size], top_k=top_k, batch_size=batch_size)

    def attention(self, source: Source, top_k: int = 5) -> AttentionMaps:
        """The prediction for one image with its cross-attention maps; ImageError if it cannot be read."""
        x = self._prepare(source)
        height, width = self.meta.image_size
        with torch.inference_mode():
            logits, weights = self.model.forward_with_attention(self._model_input(x[None]))
        maps = tuple(w[0].float().cpu().reshape(w.shape[1], w.shape[2], height, width) for w in weights)
        top = self._top(logits, self._top_k(top_k))[0]
        return AttentionMaps(Prediction(_name(source), top), x, maps)

    def series_attention(self, values: np.ndarray, name: str, top_k: int = 5) -> AttentionMaps:
        """The prediction for one series (float (C, l), its own length, as read) with its cross-attention
        maps over its l steps (the padding after it is masked, so it gets none); SeriesError if it does not fit
        the model."""
        (length,) = self.meta.image_size
        channels, steps = values.shape
        if channels != self.meta.channels or not 0 < steps <= length:
            raise SeriesError(f"{name} is {channels} channel(s) × {steps} steps and the model reads "
                              f"{self.meta.channels} channel(s) × at most {length}; give it a series like the ones "
                              f"it was trained on.")
        x = torch.from_numpy(pad([np.asarray(values, dtype=np.float32)], length)).to(self.device)
        with torch.inference_mode():
            logits, weights = self.model.forward_with_attention(
                to_channels_last(normalize(x, self.meta.mean, self.meta.std)), mask=padding_mask(x))
        maps = tuple(w[0, :, :, :steps].float().cpu() for w in weights)  # (heads, latents, l)
        top = self._top(logits, self._top_k(top_k))[0]
        return AttentionMaps(Prediction(name, top), x[0, :, :steps].cpu(), maps)

    def sound_attention(self, source: str | Path | np.ndarray, name: str, top_k: int = 5) -> AttentionMaps:
        """The prediction for one sound with its cross-attention maps along the samples or frames the model reads
        (cross_heads, num_latents, L), or over its log-mel grid (…, mels, frames). `source` is a sound file, or a
        clip of a run's split as the dataset holds it (the model's input before normalising). The AttentionMaps'
        image is what `sound_picture` gives. AudioError (one sentence) when it cannot be used."""
        if isinstance(source, np.ndarray):
            x = torch.from_numpy(np.asarray(source, dtype=np.float32))
        else:
            x = self._sound_input([self._read_clip(source)])[0]
        shape = (self.meta.channels, *self.meta.image_size)
        if tuple(x.shape) != shape:
            raise audio.AudioError(f"{name} is {'×'.join(map(str, x.shape))} values and the model reads "
                                   f"{'×'.join(map(str, shape))}; give it the sound file itself.")
        with torch.inference_mode():
            logits, weights = self.model.forward_with_attention(self._model_input(x[None]))
        maps = tuple(w[0].float().cpu().reshape(w.shape[1], w.shape[2], *self.meta.image_size) for w in weights)
        top = self._top(logits, self._top_k(top_k))[0]
        picture = x if self.meta.config.data.audio_input == "mel_frames" else x[0]  # (L,) or (mels, frames)
        return AttentionMaps(Prediction(name, top), picture, maps)

    def points_attention(self, source: str | Path | np.ndarray, name: str, top_k: int = 5) -> AttentionMaps:
        """The prediction for one point cloud with its cross-attention maps over its points (cross_heads,
        num_latents, P). `source` is a mesh or point file, or a cloud of a run's split as the dataset holds it,
        float (3, P). The AttentionMaps' image is the cloud, float (P, 3). PointsError (one sentence) when it
        cannot be used."""
        if isinstance(source, np.ndarray):
            x = torch.from_numpy(np.asarray(source, dtype=np.float32))
        else:
            x = torch.from_numpy(self.read_cloud(source)).T  # (3, P), as trained
        shape = (self.meta.channels, *self.meta.image_size)
        if tuple(x.shape) != shape:
            raise PointsError(f"{name} is {'×'.join(map(str, x.shape))} values and the model reads "
                              f"{'×'.join(map(str, shape))}; give it the mesh or point file itself.")
        with torch.inference_mode():
            logits, weights = self.model.forward_with_attention(self._model_input(x[None]))
        maps = tuple(w[0].float().cpu() for w in weights)  # (heads, latents, P)
        top = self._top(logits, self._top_k(top_k))[0]
        return AttentionMaps(Prediction(name, top), x.T.contiguous(), maps)

    @property
    def takes_series(self) -> bool:
        return self.meta.config.model.input_axis == 1 and not self.takes_audio

    @property
    def takes_audio(self) -> bool:
        return kind_of(self.meta.config.data.dataset) is KINDS["audio"]

    def read_sound(self, path: str | Path):
        """float32 (samples,): the sound file as the model hears it (mono, resampled, cropped or padded to the
        clip); AudioError (one sentence) when it cannot be used."""
        d = self.meta.config.data
        return audio.read_clip(path, sample_rate=d.sample_rate, clip_seconds=d.clip_seconds)

    def sound_picture(self, path: str | Path):
        """What the model reads of a sound file, to show: its float (samples,) waveform for a waveform model, else
        its (n_mels, frames) log-mel spectrogram in dB; AudioError when it cannot be used."""
        d = self.meta.config.data
        clip = torch.from_numpy(self.read_sound(path))
        if d.audio_input == "waveform":
            return clip.numpy()
        return audio.model_input(clip[None], sample_rate=d.sample_rate, audio_input="mel_frames",
                                 n_mels=d.n_mels)[0].numpy()

    def predict_series_file(self, path: str | Path, top_k: int = 5, batch_size: int = 64) -> list[Prediction]:
        """One Prediction per series of a .ts, .csv or .npy file (its labels, if any, are ignored), named
        `path#row`. A series longer than the model's gets an error entry; SeriesError (one sentence) for a
        file that cannot be read or whose channels are not the model's."""
        found = read_series(path, label_column=self.meta.config.data.label_column, labelled=False)
        return self.predict_series(found, str(path), top_k=top_k, batch_size=batch_size)

    def predict_series(self, found: SeriesSet, name: str, top_k: int = 5, batch_size: int = 64) -> list[Prediction]:
        """`predict_series_file` for series already read from the file `name`."""
        k = self._top_k(top_k)
        if found.channels != self.meta.channels:
            raise SeriesError(f"The series of {Path(name).name} have {found.channels} channel(s) and the model "
                              f"takes {self.meta.channels}; give it series like the ones it was trained on.")
        (length,) = self.meta.image_size
        fits = [i for i, v in enumerate(found.values) if v.shape[1] <= length]
        tops: dict[int, tuple[tuple[str, float], ...]] = {}
        for start in range(0, len(fits), batch_size):
            rows = fits[start:start + batch_size]
            x = torch.from_numpy(pad([found.values[i] for i in rows], length)).to(self.device)
            with torch.inference_mode():
                logits = self.model(to_channels_last(normalize(x, self.meta.mean, self.meta.std)),
                                    mask=padding_mask(x))
            tops.update(zip(rows, self._top(logits, k), strict=True))
        return [Prediction(f"{name}#{i + 1}", tops[i]) if i in tops else
                Prediction(f"{name}#{i + 1}", error=f"The series is {v.shape[1]} long and the model reads at most "
                                                    f"{length}; shorten it.")
                for i, v in enumerate(found.values)]

    @property
    def takes_points(self) -> bool:
        return self.meta.config.model.positions == "points"

    def read_cloud(self, path: str | Path) -> np.ndarray:
        """float32 (P, 3): the file's points as this model reads them (its number of points, training's seed,
        centred in the unit sphere); PointsError (one sentence) for a file that cannot be read."""
        (num_points,) = self.meta.image_size
        return read_points(path, num_points)

    def predict_points(self, paths: Iterable[str | Path], top_k: int = 5, batch_size: int = 64) -> list[Prediction]:
        """One Prediction per mesh or point file, in order; a file that cannot be read gets its sentence."""
        paths = list(paths)
        clouds: dict[int, np.ndarray] = {}
        errors: dict[int, str] = {}
        for i, path in enumerate(paths):
            try:
                clouds[i] = self.read_cloud(path)
            except PointsError as exc:
                errors[i] = str(exc)
        read = self.predict_clouds([str(paths[i]) for i in clouds], list(clouds.values()), top_k, batch_size)
        tops = dict(zip(clouds, read, strict=True))
        return [tops[i] if i in tops else Prediction(str(p), error=errors[i]) for i, p in enumerate(paths)]

    def predict_clouds(self, names: Sequence[str], clouds: Sequence[np.ndarray], top_k: int = 5,
                       batch_size: int = 64) -> list[Prediction]:
        """One Prediction per cloud from `read_cloud`, named as given."""
        k = self._top_k(top_k)
        out: list[Prediction] = []
        for start in range(0, len(clouds), batch_size):
            x = torch.from_numpy(np.stack(clouds[start:start + batch_size])).transpose(1, 2)  # (B, 3, P), as trained
            with torch.inference_mode():
                tops = self._top(self.model(self._model_input(x)), k)
            out.extend(Prediction(name, top) for name, top in zip(names[start:start + batch_size], tops, strict=True))
        return out

    # -- internals ------------------------------------------------------------------------------
    def _top_k(self, top_k: int) -> int:
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, not {top_k}")
        return min(top_k, len(self.meta.class_names))

    def _prepare(self, source: Source) -> torch.Tensor:
        if self.takes_audio:
            raise ImageError(_name(source) or "the image", "this model reads sounds, not images; give it a .wav, "
                             ".flac or .ogg file")
        if self.takes_series:
            raise ImageError(_name(source) or "the image", "this model reads time series, not images; give it a "
                             ".ts, .csv or .npy file of series")
        if self.takes_points:
            raise ImageError(_name(source) or "the image", "this model reads point clouds, not images; give it a "
                             "mesh (.ply, .off, .obj, .stl) or a point list (.xyz, .txt, .npy)")
        img = open_image(source, channels=self.meta.channels)
        if self.meta.config.data.crop_to_content:  # as the folder was read for training
            img = crop_to_content(img)
        return to_uint8_tensor(img, self.meta.image_size)

    def _model_input(self, x: torch.Tensor) -> torch.Tensor:
        x = normalize(x.to(self.device), self.meta.mean, self.meta.std)
        return to_channels_last(x)

    def _top(self, logits: torch.Tensor, k: int) -> list[tuple[tuple[str, float], ...]]:
        probs, indices = logits.float().softmax(dim=-1).topk(k, dim=-1)  # sorted, most probable first
        names = self.meta.class_names
        return [tuple((names[i], p) for i, p in zip(row_i, row_p, strict=True))
                for row_i, row_p in zip(indices.tolist(), probs.tolist(), strict=True)]

    def _read_clip(self, source: Source) -> torch.Tensor:
        """float32 (samples,) of a sound file; AudioError for anything else, or a file that cannot be used."""
        if not isinstance(source, str | Path) or Path(source).suffix.lower() not in audio.SUFFIXES:
            raise audio.AudioError(f"{Path(_name(source)).name or 'This image'} is not a sound file: this model "
                                   f"reads sounds; give it a .wav, .flac or .ogg file.")
        return torch.from_numpy(self.read_sound(source))

    def _sound_input(self, clips: Sequence[torch.Tensor]) -> torch.Tensor:
        """The model's input (N, C, …) before normalising, of clips from `_read_clip`."""
        d = self.meta.config.data
        return audio.model_input(torch.stack(clips), sample_rate=d.sample_rate, audio_input=d.audio_input,
                                 n_mels=d.n_mels)

    def _predict_sounds(self, sources: Sequence[Source], k: int) -> list[Prediction]:
        clips: list[torch.Tensor] = []
        errors: list[str] = []
        for source in sources:
            try:
                clips.append(self._read_clip(source))
                errors.append("")
            except audio.AudioError as exc:
                errors.append(str(exc))
        tops = iter(())
        if clips:
            with torch.inference_mode():
                tops = iter(self._top(self.model(self._model_input(self._sound_input(clips))), k))
        return [Prediction(_name(s), (), e) if e else Prediction(_name(s), next(tops))
                for s, e in zip(sources, errors, strict=True)]

    def _predict_batch(self, sources: Sequence[Source], k: int) -> list[Prediction]:
        tensors: list[torch.Tensor] = []
        errors: list[str] = []
        for source in sources:
            try:
                tensors.append(self._prepare(source))
                errors.append("")
            except ImageError as exc:
                errors.append(str(exc))
        tops = iter(())
        if tensors:
            with torch.inference_mode():
                tops = iter(self._top(self.model(self._model_input(torch.stack(tensors))), k))
        return [Prediction(_name(s), (), e) if e else Prediction(_name(s), next(tops))
                for s, e in zip(sources, errors, strict=True)]


def _name(source: Source) -> str:
    if isinstance(source, str | Path):
        return str(source)
    if isinstance(source, Image.Image):
        return getattr(source, "filename", "") or ""
    return ""
