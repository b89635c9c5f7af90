"""Small trained sound runs, shared by the tests of what the app does with one (export, the Mistakes gallery,
the attention view): a folder of low tones, high tones and noise in several formats and rates, one run per
data.audio_input."""

from __future__ import annotations

from pathlib import Path

from perceiver_gui.core.training import train
from tests.core.test_audio import audio_folder, tiny_audio


def train_sound_run(folder: Path, audio_input: str, *, epochs: int = 1, per_class: int = 6) -> Path:
    """Train a tiny model on folder/sounds (written there) read as `audio_input` at 8 kHz; returns its run
    folder, folder/runs/<audio_input>."""
    sounds = audio_folder(folder / "sounds", per_class=per_class)
    cfg = tiny_audio(sounds, folder, audio_input=audio_input, sample_rate=8000).with_updates(
        {"train.epochs": epochs, "model.num_latents": 8})
    run_dir = folder / "runs" / audio_input
    done = list(train(cfg, out_dir=run_dir))[-1]
    assert done.status == "completed", done.message
    return run_dir
