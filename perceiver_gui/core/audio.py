"""Audio files: the one reader of the sounds the "audio_folder" dataset, prediction and the classifier take.

`read_clip(path, sample_rate, clip_seconds)` decodes a WAV, FLAC or OGG file with soundfile (libsndfile:
every PCM width, float, and Vorbis), mixes its channels to mono, resamples it to `sample_rate` and crops
(the first clip_seconds) or pads (silence after the end) it to exactly `clip_samples(...)` values, float32
in -1..1. Each refusal is one `AudioError` sentence naming the file: unreadable, empty, silent, or holding
NaN or infinite values (float files can).

`model_input(waves, ...)` turns (N, L) clips into what the model reads: the waveform (N, 1, L), the paper's
raw-audio setting; a log-mel spectrogram (N, 1, n_mels, frames), a grid like a gray image; or its frames
(N, n_mels, frames), a series whose channels are the mel bands. The spectrogram is computed with torch
(torch.stft and a mel filterbank built here, no torchaudio). Training, prediction and the preview all go through it, with
the settings the checkpoint's config records (data.sample_rate, clip_seconds, audio_input, n_mels); the
window and hop follow from the sample rate (`datasets.mel_settings`, which the form sizes the input with).

Resampling uses scipy.signal.resample_poly (scipy comes with scikit-learn): a polyphase filter with an
anti-aliasing low-pass, exact for the rational ratios audio rates are (44.1k -> 16k is 160/441), and fast.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile
import torch
from scipy.signal import resample_poly

from perceiver_gui.core.datasets import MelSettings, clip_samples, mel_settings
from perceiver_gui.core.reading import SOUND_SUFFIXES

__all__ = [
    "SILENCE_DB",
    "SUFFIXES",
    "AudioError",
    "audio_files",
    "log_mel",
    "mel_filterbank",
    "model_input",
    "read_clip",
]

SUFFIXES = SOUND_SUFFIXES

SILENT_PEAK = 1e-5  # -100 dBFS: below a 16-bit file's smallest step, so nothing audible is called silent
SILENCE_DB = -100.0  # the log-mel value of silence (the floor of 10·log10(power + 1e-10))


class AudioError(ValueError):
    """A sound file that cannot be used; the message is one sentence naming the file and what to do."""


def audio_files(folder: Path) -> list[Path]:
    """The sound files anywhere under `folder`, sorted, by images.image_files' rule (a known suffix, not a
    folder, nothing hidden on the way down). Raises OSError when the folder cannot be read."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and not p.is_dir()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def read_clip(path: str | Path, *, sample_rate: int, clip_seconds: float) -> np.ndarray:
    """float32 (clip_samples,) mono at `sample_rate`: the file's first clip_seconds, silence after its end."""
    path = Path(path).expanduser()
    if not path.is_file():  # also False for FIFOs and devices, which would block soundfile
        raise AudioError(f"The sound file {path} does not exist or is not a regular file; choose a .wav, .flac "
                         f"or .ogg file.")
    try:
        # A file far longer than the clip is read only as far as needed (plus the resampler's margin).
        with soundfile.SoundFile(str(path)) as fh:
            rate = fh.samplerate
            wanted = math.ceil(clip_seconds * rate) + 64
            data = fh.read(frames=wanted, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(f"{path.name} is not a readable WAV, FLAC or OGG file ({_reason(exc)}); convert it to "
                         f"16-bit WAV, or remove it.") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path.name} holds no sound (it is zero samples long); record it again or remove it.")
    if not np.isfinite(data).all():
        raise AudioError(f"{path.name} holds NaN or infinite values; export it again from your editor, or "
                         f"remove it.")
    mono = data.mean(axis=1)
    if float(np.abs(mono).max()) < SILENT_PEAK:
        raise AudioError(f"{path.name} is silent (its loudest sample is below -100 dBFS); record it again or "
                         f"remove it.")
    if rate != sample_rate:
        ratio = Fraction(sample_rate, rate).limit_denominator(1000)
        mono = resample_poly(mono, ratio.numerator, ratio.denominator).astype(np.float32)
    out = np.zeros(clip_samples(sample_rate, clip_seconds), dtype=np.float32)
    n = min(len(out), len(mono))
    out[:n] = mono[:n]
    return out


def _reason(exc: Exception) -> str:
    text = str(exc).split(":")[-1].strip().rstrip(".") or type(exc).__name__
    return text[0].lower() + text[1:] if text else text


def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int, f_min: float = 0.0,
                   f_max: float | None = None) -> torch.Tensor:
    """float32 (n_mels, n_fft // 2 + 1): triangles equally spaced on the HTK mel scale, each summing to the
    band's share (Slaney's area normalisation), so a louder band is louder whatever its width."""
    f_max = sample_rate / 2 if f_max is None else f_max

    def to_mel(f: torch.Tensor) -> torch.Tensor:
        return 2595.0 * torch.log10(1.0 + f / 700.0)

    def to_hz(m: torch.Tensor) -> torch.Tensor:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    edges = to_hz(torch.linspace(float(to_mel(torch.tensor(f_min))), float(to_mel(torch.tensor(f_max))), n_mels + 2,
                                 dtype=torch.float64))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs - lower) / (centre - lower)
    falling = (upper - freqs) / (upper - centre)
    bank = torch.clamp(torch.minimum(rising, falling), min=0.0)
    bank = bank * (2.0 / (upper - lower))  # Slaney: each triangle's area is the same
    return bank.to(torch.float32)


def log_mel(waves: torch.Tensor, settings: MelSettings) -> torch.Tensor:
    """float32 (N, n_mels, frames) in dB (10·log10 of power, floor SILENCE_DB) of float (N, L) clips,
    on their device."""
    window = torch.hann_window(settings.n_fft, device=waves.device)
    spec = torch.stft(waves.float(), settings.n_fft, hop_length=settings.hop, window=window, center=True,
                      pad_mode="constant", return_complex=True)  # zero padding: silence stays silence
    power = spec.real.square() + spec.imag.square()  # (N, n_fft // 2 + 1, frames)
    bank = mel_filterbank(settings.n_fft, settings.n_mels, settings.sample_rate, settings.f_min,
                          settings.f_max).to(waves.device)
    mel = torch.einsum("mf,nft->nmt", bank, power)
    return 10.0 * torch.log10(mel + 10 ** (SILENCE_DB / 10))


def model_input(waves: torch.Tensor, *, sample_rate: int, audio_input: str, n_mels: int,
                batch: int = 256) -> torch.Tensor:
    """float32 clips (N, L) -> the model's input: (N, 1, L) waveforms, (N, 1, n_mels, frames) log-mel grids or
    (N, n_mels, frames) mel frames."""
    if audio_input == "waveform":
        return waves.float()[:, None].contiguous()
    settings = mel_settings(sample_rate, n_mels)
    parts = [log_mel(waves[i:i + batch], settings) for i in range(0, len(waves), batch)]  # bounded memory
    mels = torch.cat(parts) if parts else torch.zeros((0, n_mels, 1))
    return (mels if audio_input == "mel_frames" else mels[:, None]).contiguous()
