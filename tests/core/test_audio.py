"""Audio: decoding WAV/FLAC/OGG with soundfile, the log-mel spectrogram, the audio_folder dataset, its
augmentation, training, and prediction on sound files.

Every file is written in its real on-disk format in tmp_path with soundfile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from perceiver_gui.config import PRESETS, Config, DataConfig, ModelConfig, TrainConfig
from perceiver_gui.core import audio, data, datasets
from perceiver_gui.core.events import Finished
from perceiver_gui.core.inference import Predictor
from perceiver_gui.core.training import train

RATE = 16_000


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(round(seconds * rate)) / rate)).astype(np.float32)


def peak_hz(clip: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(clip * np.hanning(len(clip))))
    return float(np.fft.rfftfreq(len(clip), 1 / rate)[spectrum.argmax()])


@pytest.mark.parametrize(("suffix", "subtype", "rate"), [
    (".wav", "PCM_U8", 8_000), (".wav", "PCM_16", 16_000), (".wav", "PCM_24", 44_100), (".wav", "FLOAT", 48_000),
    (".flac", "PCM_16", 22_050), (".flac", "PCM_24", 11_025), (".ogg", "VORBIS", 32_000),
])
def test_every_format_and_rate_decodes_to_the_same_pitch_at_the_configured_rate(tmp_path, suffix, subtype, rate):
    path = tmp_path / f"a440{suffix}"
    soundfile.write(path, tone(440, 1.5, rate), rate, subtype=subtype)
    clip = audio.read_clip(path, sample_rate=RATE, clip_seconds=1.0)
    assert clip.shape == (RATE,) and clip.dtype == np.float32
    assert abs(peak_hz(clip, RATE) - 440) < 3  # resampled, not played faster or slower
    assert 0.4 < np.abs(clip).max() < 0.6  # the level survives decoding and resampling


def test_stereo_is_mixed_to_mono_and_a_short_file_ends_in_silence(tmp_path):
    left = tone(440, 0.5, RATE, 0.8)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, np.zeros_like(left)], axis=1), RATE, subtype="PCM_16")
    clip = audio.read_clip(path, sample_rate=RATE, clip_seconds=1.0)
    assert np.abs(clip[:8000]).max() == pytest.approx(0.4, abs=0.01)  # the mean of the two channels
    assert not clip[8000:].any()  # padded with silence to the clip's length


def test_a_long_file_is_cropped_to_its_first_clip(tmp_path):
    path = tmp_path / "long.flac"
    soundfile.write(path, np.concatenate([tone(300, 1.0, RATE), tone(3000, 4.0, RATE)]), RATE)
    clip = audio.read_clip(path, sample_rate=RATE, clip_seconds=0.5)
    assert clip.shape == (8000,) and abs(peak_hz(clip, RATE) - 300) < 5


def _bad_files(folder: Path) -> dict[str, str]:
    """Each bad file, and the words its sentence must hold."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "garbage.wav").write_bytes(b"RIFF\x00\x00\x00\x00not a wave at all")
    soundfile.write(folder / "empty.wav", np.zeros(0, dtype=np.float32), RATE)
    soundfile.write(folder / "silent.flac", np.zeros(RATE, dtype=np.float32), RATE)
    nan = tone(440, 0.2, RATE)
    nan[100] = np.nan
    soundfile.write(folder / "nan.wav", nan, RATE, subtype="FLOAT")
    return {"garbage.wav": "not a readable WAV, FLAC or OGG file", "empty.wav": "zero samples long",
            "silent.flac": "is silent", "nan.wav": "NaN or infinite values"}


def test_bad_files_get_one_sentence_each_naming_the_file(tmp_path):
    for name, words in _bad_files(tmp_path).items():
        with pytest.raises(audio.AudioError) as caught:
            audio.read_clip(tmp_path / name, sample_rate=RATE, clip_seconds=1.0)
        sentence = str(caught.value)
        assert words in sentence and name in sentence and sentence.count(". ") == 0 and sentence.endswith(".")


def test_the_log_mel_of_a_tone_is_loudest_in_its_band_and_silence_is_the_floor():
    settings = datasets.mel_settings(RATE, 40)
    clips = torch.from_numpy(np.stack([tone(500, 1.0, RATE), tone(4000, 1.0, RATE), np.zeros(RATE, np.float32)]))
    x = audio.model_input(clips, sample_rate=RATE, audio_input="log_mel", n_mels=40)
    assert tuple(x.shape[2:]) == datasets.audio_sides(RATE, 1.0, "log_mel", 40) == (40, 101)
    low, high = (int(x[i, 0, :, 50].argmax()) for i in (0, 1))
    assert low < high  # a higher pitch, a higher mel band
    bank = audio.mel_filterbank(settings.n_fft, 40, RATE)
    centre = np.fft.rfftfreq(settings.n_fft, 1 / RATE)[bank[low].argmax()]
    assert 400 < centre < 650
    assert torch.all(x[2] == audio.SILENCE_DB)


def audio_folder(root: Path, per_class: int = 12, seed: int = 0) -> Path:
    """Three classes of sounds anyone can tell apart: low tones, high tones and noise bursts, with random
    pitch, onset and level, in several formats, rates and channel counts."""
    rng = np.random.default_rng(seed)
    for name in ("high", "low", "noise"):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rate = (RATE, 22_050, 8_000)[i % 3]
            length = round(rng.uniform(0.3, 0.6) * rate)
            if name == "noise":
                sound = rng.standard_normal(length).astype(np.float32) * 0.3
            else:
                sound = tone(rng.uniform(200, 400) if name == "low" else rng.uniform(2000, 3500), length / rate, rate)
            onset = np.zeros(round(rng.uniform(0, 0.3) * rate), dtype=np.float32)
            sound = np.concatenate([onset, sound]) * rng.uniform(0.2, 1.0)
            if i % 4 == 1:
                sound = np.stack([sound, sound * 0.5], axis=1)  # stereo
            suffix, subtype = ((".wav", "PCM_16"), (".flac", "PCM_24"), (".wav", "FLOAT"), (".ogg", "VORBIS"))[i % 4]
            soundfile.write(root / name / f"{i}{suffix}", sound, rate, subtype=subtype)
    return root


@pytest.mark.parametrize(("audio_input", "axes", "sides", "channels"), [
    ("waveform", 1, (8000,), 1), ("log_mel", 2, (32, 51), 1), ("mel_frames", 1, (51,), 32)])
def test_the_dataset_splits_a_folder_and_its_shape_sets_the_models_axes(tmp_path, audio_input, axes, sides, channels):
    folder = audio_folder(tmp_path / "sounds")
    _bad_files(folder / "noise")  # skipped with their reasons; the rest still trains
    cfg = DataConfig(dataset="audio_folder", folder=str(folder), clip_seconds=0.5, audio_input=audio_input, n_mels=32,
                     root=str(tmp_path / "data"))
    dataset = data.load_dataset(cfg)
    info = dataset.info
    assert info.kind == "audio" and info.image_size == sides and info.channels == channels
    assert info.class_names == ("high", "low", "noise")
    assert (info.train_size, info.val_size, info.test_size) == (27, 3, 6)  # 36 sounds: 20 % test, 10 % validation
    assert sorted(s.split(": ")[0] for s in dataset.skipped) == ["noise/empty.wav", "noise/garbage.wav",
                                                                 "noise/nan.wav", "noise/silent.flac"]
    assert all(f.endswith((".wav", ".flac", ".ogg")) for f in dataset.test_files)
    shape = datasets.expected_input(cfg)
    assert shape == info.input_shape  # the form knows the shape before the files are decoded
    fitted = datasets.fit_model(ModelConfig(), shape)
    assert (fitted.input_axis, fitted.input_channels) == (axes, channels)
    assert len(info.mean) == channels  # mel frames are normalised band by band


def test_a_folder_without_usable_sounds_in_a_class_says_which(tmp_path):
    folder = audio_folder(tmp_path / "sounds", per_class=3)
    for f in (folder / "low").iterdir():
        f.unlink()
    _bad_files(folder / "low")
    with pytest.raises(data.DatasetError, match="None of the sounds in the class folder 'low'"):
        data.load_dataset(DataConfig(dataset="audio_folder", folder=str(folder)))


@pytest.mark.parametrize("audio_input", ["waveform", "log_mel", "mel_frames"])
def test_time_shift_and_gain_move_and_scale_clips_repeatably(audio_input):
    cfg = DataConfig(dataset="audio_folder", clip_seconds=0.25, audio_input=audio_input, time_shift=0.1, gain_db=12)
    clips = torch.from_numpy(np.stack([tone(1000, 0.25, RATE)] * 64))
    x = audio.model_input(clips, sample_rate=RATE, audio_input=audio_input, n_mels=cfg.n_mels)
    assert data.augment_audio(x, DataConfig(), torch.Generator()) is x  # off: untouched, nothing drawn
    a = data.augment_audio(x, cfg, torch.Generator().manual_seed(1))
    b = data.augment_audio(x, cfg, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == x.shape
    if audio_input == "waveform":
        levels = a.abs().amax(dim=(1, 2)) / x.abs().amax(dim=(1, 2))
        assert levels.min() < 10 ** (-6 / 20) and levels.max() > 10 ** (6 / 20)  # up to ±12 dB
        assert levels.max() <= 10 ** (12 / 20) + 1e-4
        silent = (a[:, 0] == 0).sum(1)  # the shifted-in silence, up to 0.1 s
        assert silent.max() > 0.05 * RATE and silent.max() <= 0.1 * RATE
    else:
        a, x = (t[:, 0] if t.ndim == 4 else t for t in (a, x))  # (B, n_mels, frames) either way
        middle = a[:, :, 12].amax(1) - x[:, :, 12].amax(1)  # a steady tone's band: a gain adds its dB
        assert middle.min() < -6 and middle.max() > 6 and middle.abs().max() <= 12 + 1e-3
        assert (a[:, :, 0] == audio.SILENCE_DB).all(1).any()  # silence shifted in at an edge


def tiny_audio(folder: Path, tmp_path: Path, **data_updates) -> Config:
    return Config(
        name="tiny-audio",
        model=ModelConfig(depth=1, num_latents=16, latent_dim=32, latent_heads=2, cross_heads=2, cross_dim_head=16,
                          latent_dim_head=16, num_freq_bands=6, max_freq=16.0),
        data=DataConfig(dataset="audio_folder", folder=str(folder), clip_seconds=0.6, n_mels=32, time_shift=0.05,
                        gain_db=6.0, root=str(tmp_path / "data"), **{"audio_input": "log_mel", **data_updates}),
        train=TrainConfig(optimizer="adamw", lr=3e-3, batch_size=8, epochs=20, threads=1, device="cpu",
                          save_every_s=0),
    )


@pytest.mark.slow
def test_a_log_mel_run_learns_and_its_model_predicts_sound_files_at_other_rates(tmp_path):
    folder = audio_folder(tmp_path / "sounds", per_class=16)
    events = list(train(tiny_audio(folder, tmp_path), out_dir=tmp_path / "run"))
    done = events[-1]
    assert isinstance(done, Finished) and done.status == "completed", done
    assert done.test_acc >= 0.8, done.test_acc  # chance is 1/3

    predictor = Predictor.from_checkpoint(tmp_path / "run" / "model.safetensors")
    recorded = predictor.meta.config.data  # the checkpoint carries the preprocessing
    assert (recorded.sample_rate, recorded.clip_seconds, recorded.audio_input, recorded.n_mels) == \
        (RATE, 0.6, "log_mel", 32)
    assert predictor.meta.image_size == (32, 61) and predictor.meta.config.model.input_axis == 2
    new = tmp_path / "new"
    new.mkdir()
    soundfile.write(new / "deep.flac", tone(300, 0.5, 44_100), 44_100, subtype="PCM_24")
    soundfile.write(new / "shrill.wav", np.stack([tone(3000, 0.5, 48_000)] * 2, axis=1), 48_000, subtype="PCM_16")
    Image.new("RGB", (8, 8)).save(new / "photo.png")
    soundfile.write(new / "hush.wav", np.zeros(RATE, dtype=np.float32), RATE)
    deep, shrill, photo, silent = predictor.predict([new / "deep.flac", new / "shrill.wav", new / "photo.png",
                                                     new / "hush.wav"])
    assert deep.top[0][0] == "low" and shrill.top[0][0] == "high"
    assert "this model reads sounds" in photo.error and "is silent" in silent.error


@pytest.mark.slow
def test_a_waveform_run_stopped_and_resumed_continues_exactly(tmp_path):
    """The augmentation draws from the run's generator: a resumed run sees the very same batches."""
    from perceiver_gui.core.events import Step
    from perceiver_gui.core.training import RunControl, resume

    folder = audio_folder(tmp_path / "sounds", per_class=6)
    cfg = tiny_audio(folder, tmp_path, audio_input="waveform", sample_rate=4000)
    cfg = cfg.with_updates({"train.epochs": 3, "train.batch_size": 4, "model.num_latents": 8, "train.log_every": 1})
    full = [e.loss for e in train(cfg, out_dir=tmp_path / "full") if isinstance(e, Step)]
    control = RunControl()
    first = []
    for event in train(cfg, out_dir=tmp_path / "split", control=control):
        first.append(event)
        if isinstance(event, Step) and event.step == 5:  # mid second epoch
            control.stop()
    assert first[-1].status == "stopped"
    second = list(resume(tmp_path / "split"))
    assert second[-1].status == "completed", second[-1].message
    assert [e.loss for e in first + second if isinstance(e, Step)] == full


def test_the_audio_preset_reads_mel_frames_of_a_folder():
    cfg = PRESETS["audio"]
    assert cfg.data.dataset == "audio_folder" and cfg.data.audio_input == "mel_frames"
    assert cfg.model.input_axis == 1 and cfg.model.input_channels == cfg.data.n_mels
    assert (cfg.data.crop_padding, cfg.data.hflip) == (0, False) and cfg.data.time_shift > 0 and cfg.data.gain_db > 0


@pytest.mark.parametrize(("audio_input", "m"), [("waveform", 16_000), ("log_mel", 40 * 101), ("mel_frames", 101)])
def test_the_complexity_readouts_m_is_samples_mels_times_frames_or_frames(audio_input, m):
    from perceiver_gui.core.complexity import attention_sizes

    cfg = PRESETS["audio"].with_updates({"data.audio_input": audio_input})
    shape = datasets.expected_input(cfg.data)
    assert attention_sizes(datasets.fit_model(cfg.model, shape), shape.sides).M == m


@pytest.mark.slow
def test_the_cli_trains_the_audio_preset_and_predicts_and_describes_sound_files(tmp_path, capsys):
    import json

    from perceiver_gui.cli import main

    folder = audio_folder(tmp_path / "sounds", per_class=6)
    out = tmp_path / "run"
    tiny = ["--set", "model.num_latents=8", "--set", "model.latent_dim=16", "--set", "model.latent_heads=1",
            "--set", "train.epochs=1", "--set", "train.warmup_epochs=0", "--set", "train.threads=1",
            "--set", "train.device=cpu", "--set", f"data.root={tmp_path / 'data'}"]
    assert main(["train", "--preset", "audio", "--set", f"data.folder={folder}", *tiny, "--out", str(out)]) == 0
    model = str(out / "model.safetensors")
    new = tmp_path / "new"
    new.mkdir()
    soundfile.write(new / "a.wav", tone(300, 0.5, 8_000), 8_000, subtype="PCM_U8")
    soundfile.write(new / "b.flac", tone(3000, 0.5, 48_000), 48_000)
    (new / "c.ogg").write_bytes(b"OggS but not really")
    Image.new("RGB", (8, 8)).save(new / "d.png")
    capsys.readouterr()
    assert main(["predict", "--model", model, str(new), "--json"]) == 1  # the broken .ogg is not classified
    records = {Path(r["path"]).name: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert set(records) == {"a.wav", "b.flac", "c.ogg"}  # a folder gives its sound files
    assert len(records["a.wav"]["top"]) == 3 and {t["label"] for t in records["b.flac"]["top"]} == {"high", "low", "noise"}
    assert "c.ogg is not a readable WAV, FLAC or OGG file" in records["c.ogg"]["error"]
    assert main(["predict", "--model", model, str(new / "d.png")]) == 1
    assert "this model reads sounds" in capsys.readouterr().out
    assert main(["info", model]) == 0
    shown = capsys.readouterr().out
    assert "sounds as 1 s mono clips at 16,000 Hz, as 101 frames of 40 log-mel bands" in shown, shown
    assert "Classes (3): high, low, noise" in shown


# -- Speech Commands (never downloaded here: the tests write its layout, and its archive's form) ----------------
def speech_commands_layout(root: Path) -> Path:
    """The extracted v0.02 layout: a folder per word, _background_noise_, and the official split's lists."""
    folder = root / data.SPEECH_FOLDER
    for word, freq in (("yes", 300), ("no", 1200), ("up", 3000)):
        (folder / word).mkdir(parents=True)
        for i in range(4):
            soundfile.write(folder / word / f"{i:08x}_nohash_0.wav", tone(freq + 50 * i, 1.0, RATE), RATE,
                            subtype="PCM_16")
    (folder / "_background_noise_").mkdir()
    soundfile.write(folder / "_background_noise_" / "white_noise.wav", np.ones(RATE, np.float32) * 0.1, RATE)
    (folder / "testing_list.txt").write_text("yes/00000000_nohash_0.wav\nno/00000001_nohash_0.wav\n"
                                             "up/00000002_nohash_0.wav\n")
    (folder / "validation_list.txt").write_text("yes/00000003_nohash_0.wav\n")
    return folder


def test_speech_commands_on_disk_reads_its_words_and_tests_on_its_official_list(tmp_path):
    speech_commands_layout(tmp_path)
    dataset = data.load_dataset(DataConfig(dataset="speech_commands", root=str(tmp_path), val_fraction=0))
    assert dataset.info.class_names == ("no", "up", "yes")  # the background noise is not a word
    assert sorted(Path(f).name for f in dataset.test_files) == ["00000000_nohash_0.wav", "00000001_nohash_0.wav",
                                                                "00000002_nohash_0.wav"]
    assert (dataset.info.train_size, dataset.info.image_size, dataset.info.channels) == (9, (101,), 40)
    assert datasets.expected_input(DataConfig(dataset="speech_commands")).classes == 35  # the real one's words


def test_speech_commands_missing_offline_or_damaged_says_what_to_do(tmp_path):
    cfg = DataConfig(dataset="speech_commands", root=str(tmp_path), download=False)
    with pytest.raises(data.DatasetError, match="Put speech_commands_v0.02.tar.gz .*there"):
        data.load_dataset(cfg)
    with pytest.raises(data.DatasetError, match="work offline"):  # the tests never download
        data.load_dataset(DataConfig(dataset="speech_commands", root=str(tmp_path)))
    (tmp_path / "speech_commands_v0.02.tar.gz").write_bytes(b"not the archive")
    with pytest.raises(data.DatasetError, match="not the official Speech Commands v0.02 archive"):
        data.load_dataset(cfg)


def test_a_flat_archive_extracts_whole_into_its_folder_and_may_not_escape_it(tmp_path):
    import io
    import tarfile

    def archive(path: Path, members: dict[str, bytes]) -> Path:
        with tarfile.open(path, "w:gz") as tar:
            top = tarfile.TarInfo("./")
            top.type = tarfile.DIRTYPE
            tar.addfile(top)
            for name, body in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
        return path

    good = archive(tmp_path / "good.tar.gz", {"./yes/a.wav": b"RIFF", "./testing_list.txt": b"yes/a.wav\n"})
    data._extract_tar(good, "SpeechCommands", tmp_path, flat=True)
    assert (tmp_path / "SpeechCommands" / "yes" / "a.wav").read_bytes() == b"RIFF"
    assert (tmp_path / "SpeechCommands" / "testing_list.txt").is_file()
    evil = archive(tmp_path / "evil.tar.gz", {"./yes/b.wav": b"RIFF", "../escaped.txt": b"x"})
    with pytest.raises(data.DatasetError, match="unexpected path '../escaped.txt'"):
        data._extract_tar(evil, "Other", tmp_path, flat=True)
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "Other").exists()


@pytest.mark.slow  # trains a tiny model (a few seconds)
@pytest.mark.parametrize("audio_input", ["waveform", "log_mel", "mel_frames"])
def test_a_sounds_attention_spreads_over_the_times_the_model_reads_from_a_file_or_the_split(tmp_path, audio_input):
    from tests.core.sound_fixtures import train_sound_run

    run_dir = train_sound_run(tmp_path, audio_input)
    predictor = Predictor.from_checkpoint(run_dir / "model.safetensors")
    file = sorted((tmp_path / "sounds" / "high").iterdir())[1]
    result = predictor.sound_attention(file, file.name, top_k=2)
    (predicted,) = predictor.predict([file], top_k=2)
    assert result.prediction.path == file.name and dict(result.prediction.top) == pytest.approx(dict(predicted.top))
    # The picture is what the classifier draws: the waveform, or the log-mel spectrogram (mels, frames).
    assert np.array_equal(result.image.numpy(), predictor.sound_picture(file))
    sides = predictor.meta.image_size  # (samples,), (mels, frames) or (frames,)
    cfg = predictor.meta.config.model
    for weights in result.maps:
        assert tuple(weights.shape) == (cfg.cross_heads, cfg.num_latents, *sides)
        assert torch.allclose(weights.sum(dim=tuple(range(2, weights.ndim))), torch.ones(()), atol=1e-4)
    # A clip of the split (the model's input as the dataset holds it) gives the same, as the Mistakes tab asks.
    d = predictor.meta.config.data
    held = audio.model_input(torch.from_numpy(predictor.read_sound(file))[None], sample_rate=d.sample_rate,
                             audio_input=d.audio_input, n_mels=d.n_mels)[0].numpy()
    again = predictor.sound_attention(held, "validation sound #3")
    assert again.prediction.top[0] == result.prediction.top[0]
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(again.maps, result.maps, strict=True))
    with pytest.raises(audio.AudioError, match="not a sound file"):
        predictor.sound_attention(tmp_path / "photo.png", "photo.png")
