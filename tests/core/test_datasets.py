"""The dataset registry, the one function that fits the model to the data, and the presets it feeds."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from PIL import Image

from perceiver_gui.config import DATASETS, PRESET_NOTES, PRESETS, DataConfig, ModelConfig, describe_preset, preset
from perceiver_gui.core import data
from perceiver_gui.core import datasets as registry
from perceiver_gui.core.fourier import nyquist_limit
from perceiver_gui.core.model import build_model
from tests.core.data_fixtures import make_image_folder, make_mnist, make_tiny_cifar100


def test_every_dataset_is_registered_once_with_a_loader_and_a_preset_that_trains_on_it():
    assert tuple(registry.DATASETS) == DATASETS
    assert set(data._LOADERS) == set(DATASETS)
    for key, spec in registry.DATASETS.items():
        assert spec.key == key and spec.label and spec.description.endswith(".")
        # points_folder's is "points", audio_folder's "audio"
        assert spec.preset in PRESETS and PRESETS[spec.preset].data.dataset == key
        assert spec.kind in registry.KINDS


def test_the_registry_knows_which_datasets_download_and_how_much():
    downloads = {key for key, spec in registry.DATASETS.items() if spec.downloads}
    assert downloads == {"cifar10", "cifar100", "mnist", "fashion_mnist", "speech_commands", "modelnet10"}
    assert 100 < registry.DATASETS["cifar10"].download_mb < 200
    assert "download" in registry.download_note("mnist") and "MB" in registry.download_note("mnist")
    assert registry.download_note("digits") == registry.download_note("folder") == ""


@pytest.mark.parametrize("dataset", ["digits", "mnist", "cifar100"])
def test_the_registered_shape_is_what_the_loader_gives(dataset, tmp_path):
    if dataset == "mnist":
        make_mnist(tmp_path)
    elif dataset == "cifar100":
        make_tiny_cifar100(tmp_path)
    cfg = DataConfig(dataset=dataset, root=str(tmp_path), download=False, val_fraction=0.0)  # tiny: 40 for 100 classes
    expected = registry.expected_input(cfg)
    loaded = data.load_dataset(cfg).info.input_shape
    assert (loaded.kind, loaded.sides, loaded.channels) == (expected.kind, expected.sides, expected.channels)
    assert expected.classes == registry.DATASETS[dataset].classes == len(data.load_dataset(cfg).info.class_names)


def test_a_folder_s_shape_is_counted_from_its_subfolders_before_it_is_decoded(tmp_path):
    folder = make_image_folder(tmp_path / "pets", {"cats": 3, "dogs": 3, "fish": 2})
    shape = registry.expected_input(DataConfig(dataset="folder", folder=str(folder), image_size=24))
    assert (shape.sides, shape.channels, shape.classes) == ((24, 24), None, 3)
    assert registry.expected_input(DataConfig(dataset="folder", folder=str(tmp_path / "nowhere"))).classes is None


def test_fit_model_takes_channels_axes_and_classes_from_the_data_and_nothing_else():
    model = ModelConfig(input_channels=3, input_axis=2, num_classes=10, depth=3)
    fitted = registry.fit_model(model, registry.InputShape(kind="image", sides=(28, 28), channels=1, classes=7))
    assert (fitted.input_channels, fitted.input_axis, fitted.num_classes, fitted.depth) == (1, 2, 7, 3)
    unknown = registry.fit_model(model, registry.InputShape(kind="image", sides=(32, 32), channels=None, classes=None))
    assert unknown == model


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_validates_and_builds_a_model_that_reads_its_data(name, tmp_path):
    cfg = preset(name)
    if name == "folder":
        cfg = cfg.with_updates({"data.folder": str(make_image_folder(tmp_path / "f"))})
    if name == "points":
        for shape in ("cubes", "balls"):
            (tmp_path / "p" / shape).mkdir(parents=True)
        cfg = cfg.with_updates({"data.folder": str(tmp_path / "p")})
    if name == "sequences":
        rows = "\n".join(",".join(str((i * j) % 7) for j in range(64)) + f":{'ab'[i % 2]}" for i in range(6))
        (tmp_path / "s.ts").write_text(f"@classLabel true a b\n@data\n{rows}\n")
        cfg = cfg.with_updates({"data.train_file": str(tmp_path / "s.ts")})
    if name == "audio":
        for label in ("a", "b"):
            (tmp_path / "sounds" / label).mkdir(parents=True)
        cfg = cfg.with_updates({"data.folder": str(tmp_path / "sounds")})  # classes are its subfolders
    assert cfg.validate() == []
    shape = registry.expected_input(cfg.data)
    model = build_model(registry.fit_model(cfg.model, shape)).eval()
    channels = shape.channels or 3
    with torch.no_grad():
        logits = model(torch.zeros(1, *shape.sides, channels))  # channels last, as the model reads it
    assert logits.shape == (1, shape.classes)
    # Fourier bands that alias add nothing: every preset keeps max_freq within Nyquist (N - 1).
    assert cfg.model.max_freq / 2 <= nyquist_limit(min(shape.sides))


def test_every_preset_says_what_it_is_and_whether_it_downloads():
    for name in PRESETS:
        assert PRESET_NOTES[name].endswith(".")
        downloads = registry.DATASETS[PRESETS[name].data.dataset].downloads
        assert ("downloaded before the first Start" in describe_preset(name)) == downloads


def _folder_of(tmp_path, sizes):
    for i, (w, h) in enumerate(sizes):
        cls = tmp_path / ("a" if i % 2 else "b")
        cls.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (w, h), "white").save(cls / f"{i}.png")
    return tmp_path


def test_a_folder_s_image_size_follows_its_images(tmp_path):
    folder = _folder_of(tmp_path / "mid", [(48, 40), (40, 48), (50, 41), (60, 39), (100, 40)])
    assert registry.folder_image_size(folder) == 40  # the median shorter side
    big = _folder_of(tmp_path / "big", [(1024, 768)] * 4)
    assert registry.folder_image_size(big) == registry.FOLDER_SIZE_CAP
    tiny = _folder_of(tmp_path / "tiny", [(3, 3)] * 4)
    assert registry.folder_image_size(tiny) == registry.FOLDER_SIZE_MIN


def test_a_folder_with_no_readable_image_has_no_size(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"not a png")
    assert registry.folder_image_size(tmp_path) is None
    assert registry.folder_image_size(tmp_path / "missing") is None


@pytest.mark.parametrize("side", [8, 16, 28, 32, 64])
def test_max_frequency_follows_the_image_size_below_nyquist(side):
    freq = registry.max_freq_for(side)
    assert 1 <= freq <= side - 1  # the top band, freq / 2, stays within (N - 1) / 2
    assert registry.max_freq_for(2 * side) > freq


@pytest.mark.slow
def test_cli_train_without_a_preset_trains_the_bundled_digits(tmp_path):
    out = subprocess.run([sys.executable, "-m", "perceiver_gui", "train", "--help"], capture_output=True, text=True)
    assert "default: digits" in out.stdout
    for name in PRESETS:
        assert f"  {name} " in out.stdout  # each preset is listed with its sentence
    done = subprocess.run(
        [sys.executable, "-m", "perceiver_gui", "train", "--out", str(tmp_path / "run"), "--set", "train.epochs=1",
         "--set", "train.threads=1"], capture_output=True, text=True, timeout=120,
        env={**os.environ, "PERCEIVER_GUI_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert '"dataset": "digits"' in (tmp_path / "run" / "config.json").read_text()


def test_the_preview_counts_each_class_shows_augmented_samples_and_names_skipped_files(tmp_path):
    folder = make_image_folder(tmp_path / "pets", {"cats": 6, "dogs": 5}, size=(20, 16))
    (folder / "dogs" / "broken.png").write_bytes(b"not a png")
    cfg = DataConfig(dataset="folder", folder=str(folder), root=str(tmp_path / "data"), image_size=16,
                     crop_padding=4, hflip=True)
    events = data.preview_dataset(cfg, per_class=3)
    while True:
        try:
            next(events)
        except StopIteration as done:
            preview = done.value
            break
    assert preview.class_names == ("cats", "dogs")
    assert [a + b + c for a, b, c in zip(preview.train_counts, preview.val_counts, preview.test_counts, strict=True)] \
        == [6, 5]
    assert preview.val_counts == (1, 1)  # a tenth of each class's training images, at least one
    assert [s.shape for s in preview.samples] == [(3, 16, 16, 3), (3, 16, 16, 3)]
    assert any("broken.png" in s for s in preview.skipped)
    plain = data.load_dataset(cfg).train_x.permute(0, 2, 3, 1).numpy()
    shown = preview.samples[0]
    # Augmentation is applied: at least one sample is not any training image as stored.
    assert any(not any((img == p).all() for p in plain) for img in shown)
