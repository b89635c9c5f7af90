from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from perceiver_gui.ui.attention_view import (
    ALL_LATENTS_MAX,
    ALL_LATENTS_MEAN,
    SELECTED,
    TILE,
    VIEW,
    AttentionDialog,
    AttentionResult,
    distinct_latents,
)
from tests.ui.helpers import digit_images, drop_files, load_model, tiny_config


def _softmax_maps(rng, *shape) -> np.ndarray:
    """Random attention maps (…, H, W) that each sum to 1, peaked like a trained model's."""
    logits = 3 * rng.standard_normal(shape)
    flat = np.exp(logits.reshape(*shape[:-2], -1))
    return (flat / flat.sum(-1, keepdims=True)).reshape(shape).astype(np.float32)


def _result(channels: int, height: int, width: int, *, layers=2, heads=3, latents=20, seed=0) -> AttentionResult:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    maps = tuple(_softmax_maps(rng, heads, latents, height, width) for _ in range(layers))
    return AttentionResult("photo.png", (("cat", 0.7), ("dog", 0.2)), image, maps)


@pytest.fixture(scope="module")
def two_layer_model(tmp_path_factory):
    """A real trained checkpoint with two cross-attend layers of four heads each, over an 8×8 grid."""
    from perceiver_gui.core.events import Finished
    from perceiver_gui.core.training import train

    run_dir = tmp_path_factory.mktemp("runs") / "two-layer"
    events = list(train(tiny_config(**{"model.depth": 2, "model.cross_heads": 4, "train.epochs": 1}), out_dir=run_dir))
    assert isinstance(events[-1], Finished) and events[-1].status == "completed", events[-1]
    return run_dir / "model.safetensors"


def _dialog(qtbot, panel) -> AttentionDialog:
    qtbot.waitUntil(lambda: bool(_dialogs(panel)), timeout=10000)
    dialog = _dialogs(panel)[-1]
    qtbot.waitUntil(lambda: dialog.result is not None or "color:#d03030" in dialog.status.text(), timeout=30000)
    return dialog


def _dialogs(panel) -> list[AttentionDialog]:
    return [w for w in QApplication.topLevelWidgets() if isinstance(w, AttentionDialog) and w.parent() is panel]


@pytest.mark.slow  # trains a tiny two-layer model once (~2 s)
def test_attention_button_opens_a_dialog_whose_maps_follow_the_layer_and_head(panel, qtbot, two_layer_model, tmp_path):
    load_model(qtbot, panel, two_layer_model)
    drop_files(panel, digit_images(tmp_path / "images", 1))
    qtbot.waitUntil(lambda: len(panel.entries()) == 1, timeout=30000)
    entry = panel.entries()[0]
    entry.attention_button.click()
    dialog = _dialog(qtbot, panel)

    assert dialog.isVisible() and not dialog.isModal()
    label = entry.top[0][0]
    assert "digit_0_0.png" in dialog.windowTitle() and label in dialog.windowTitle()
    # Attention over the 8×8 grid the model reads (the 32×32 file is resized to the checkpoint's size).
    assert dialog.heat.shape == (8, 8) and np.isfinite(dialog.heat).all()
    assert len(dialog.result.maps) == 2 and dialog.result.maps[0].shape == (4, 8, 8, 8)  # heads, latents, H, W
    for maps in dialog.result.maps:
        assert np.allclose(maps.sum(axis=(-2, -1)), 1.0, atol=1e-4)
    assert dialog.latent_maps.shape == (8, 8, 8)
    assert np.allclose(dialog.latent_maps.sum(axis=(-2, -1)), 1.0, atol=1e-4)
    assert np.allclose(dialog.heat.sum(), 1.0, atol=1e-4)
    assert dialog.layer.isVisibleTo(dialog) and dialog.layer.maximum() == 2

    # Changing the layer, then the head, changes what is shown.
    shown = dialog.heat_view.pixmap().toImage()
    before = dialog.heat.copy()
    dialog.layer.setValue(2)
    assert not np.allclose(dialog.heat, before)
    np.testing.assert_allclose(dialog.heat, dialog.result.maps[1].mean(axis=0).mean(axis=0), rtol=1e-5)
    assert dialog.heat_view.pixmap().toImage() != shown
    before = dialog.heat.copy()
    dialog.head.setCurrentIndex(3)  # head 3 of 4
    assert not np.allclose(dialog.heat, before)
    np.testing.assert_allclose(dialog.heat, dialog.result.maps[1][2].mean(axis=0), rtol=1e-5)
    # The grid starts with the most concentrated latent.
    peaks = dialog.latent_maps.reshape(8, -1).max(axis=1)
    assert peaks[0] >= np.median(dialog.result.maps[1][2].reshape(8, -1).max(axis=1))
    # Clicking a tile puts that latent on the image.
    qtbot.mouseClick(dialog._tile_views[5][0], Qt.MouseButton.LeftButton)
    assert dialog.selected_latent() == dialog.latents[5]
    np.testing.assert_array_equal(dialog.heat, dialog.result.maps[1][2][dialog.latents[5]])

    dialog.grab().save("/tmp/attention.png")


@pytest.mark.slow
def test_an_unreadable_file_shows_its_error_in_the_dialog(panel, qtbot, two_layer_model, tmp_path):
    load_model(qtbot, panel, two_layer_model)
    [image] = digit_images(tmp_path / "images", 1)
    drop_files(panel, [image])
    qtbot.waitUntil(lambda: len(panel.entries()) == 1, timeout=30000)
    image.write_bytes(b"no longer a picture")  # the file changed after it was classified
    entry = panel.entries()[0]
    qtbot.mouseDClick(entry, Qt.MouseButton.LeftButton)
    dialog = _dialog(qtbot, panel)
    assert dialog.result is None and dialog.body.isHidden()
    assert image.name in dialog.status.text()


@pytest.mark.parametrize(("channels", "height", "width"), [(1, 8, 8), (3, 5, 12), (3, 40, 28)])
def test_the_latent_choice_decides_the_map_on_the_image(qtbot, channels, height, width):
    dialog = AttentionDialog("photo.png")
    qtbot.addWidget(dialog)
    result = _result(channels, height, width)
    dialog.show_result(result)
    dialog.show()
    maps = result.maps[0].mean(axis=0)  # layer 1, all heads: (latents, H, W)
    assert dialog.selected_latent() == ALL_LATENTS_MEAN and dialog.latent.isHidden()
    np.testing.assert_allclose(dialog.heat, maps.mean(axis=0), rtol=1e-6)
    assert "averaged over latents" in dialog.heat_caption.text()
    # The picture keeps the input's proportions, whatever its size.
    shown = dialog.image_view.pixmap()
    assert abs(shown.width() / shown.height() - width / height) < 0.05
    mean_picture = dialog.heat_view.pixmap().toImage()

    # Max over latents: at every position, the strongest single latent; not the mean.
    dialog.summary.setCurrentIndex(dialog.summary.findData(ALL_LATENTS_MAX))
    np.testing.assert_array_equal(dialog.heat, maps.max(axis=0))
    assert not np.allclose(dialog.heat, maps.mean(axis=0))
    assert "max over latents" in dialog.heat_caption.text()
    assert dialog.heat_view.pixmap().toImage() != mean_picture

    # One latent, picked with the chooser: exactly that latent's map, which sums to 1.
    dialog.summary.setCurrentIndex(dialog.summary.findData(0))
    assert dialog.latent.isVisible() and dialog.latent.maximum() == 20
    dialog.latent.setValue(7)
    assert dialog.selected_latent() == 6
    np.testing.assert_array_equal(dialog.heat, maps[6])
    assert dialog.heat.sum() == pytest.approx(1.0, abs=1e-5)
    assert "latent 7" in dialog.heat_caption.text() and "Latent 7" in dialog.legend.text()

    # ... and it follows the head: head 2's own map of latent 7.
    dialog.head.setCurrentIndex(2)
    np.testing.assert_array_equal(dialog.heat, result.maps[0][1][6])

    # Clicking a tile in the grid selects that latent and marks its tile.
    tile = dialog._tile_views[3][0]
    qtbot.mouseClick(tile, Qt.MouseButton.LeftButton)
    picked = int(dialog.latents[3])
    assert dialog.selected_latent() == picked and dialog.latent.value() == picked + 1
    np.testing.assert_array_equal(dialog.heat, result.maps[0][1][picked])
    assert tile.styleSheet() == SELECTED
    assert [t.styleSheet() == SELECTED for t, _ in dialog._tile_views].count(True) == 1

    dialog.select_latent(ALL_LATENTS_MEAN)
    assert dialog.latent.isHidden() and "averaged" in dialog.heat_caption.text()
    assert all(t.styleSheet() != SELECTED for t, _ in dialog._tile_views)
    if (channels, height, width) == (3, 5, 12):
        dialog.select_latent(picked)
        dialog.grab().save("/tmp/attention_colour.png")


def test_the_grid_shows_latents_that_look_at_different_places():
    """Four latents on the top-left corner, one on the bottom-right, one spread out: one of each kind."""
    maps = np.full((6, 4, 4), 0.01 / 15, dtype=np.float32)
    for i, peak in enumerate((0.99, 0.98, 0.97, 0.96)):
        maps[i] = (1 - peak) / 15
        maps[i, 0, 0] = peak
    maps[4] = 0.05 / 15
    maps[4, 3, 3] = 0.95
    maps[5] = 1 / 16
    picked = distinct_latents(maps, 3)
    assert list(picked) == [0, 4, 5]  # the most concentrated first, then the most unlike the ones before
    assert len(distinct_latents(maps, 10)) == 6 and len(set(distinct_latents(maps, 10))) == 6


@pytest.mark.slow
def test_a_colour_model_of_any_shape_shows_its_attention(panel, qtbot, tmp_path):
    """An RGB checkpoint reading 6×10 inputs; a 40×25 photo is resized to that grid, in colour."""
    import torch
    from PIL import Image

    from perceiver_gui.config import Config, ModelConfig
    from perceiver_gui.core.checkpoints import ModelMeta, save_model
    from perceiver_gui.core.model import build_model

    cfg = Config(name="colour", model=ModelConfig(
        num_freq_bands=2, depth=1, max_freq=4.0, input_channels=3, num_latents=12, latent_dim=16, cross_heads=2,
        latent_heads=1, cross_dim_head=8, latent_dim_head=8, num_classes=2))
    torch.manual_seed(0)
    meta = ModelMeta(config=cfg, class_names=("red", "blue"), mean=(0.5,) * 3, std=(0.25,) * 3,
                     image_size=(6, 10), channels=3)
    model = save_model(tmp_path / "colour.safetensors", build_model(cfg.model).state_dict(), meta)
    photo = tmp_path / "photo.png"
    pixels = np.random.default_rng(1).integers(0, 256, (25, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels, mode="RGB").save(photo)

    load_model(qtbot, panel, model)
    drop_files(panel, [photo])
    qtbot.waitUntil(lambda: len(panel.entries()) == 1, timeout=30000)
    panel.entries()[0].attention_button.click()
    dialog = _dialog(qtbot, panel)
    assert dialog.result.image.shape == (6, 10, 3) and dialog.result.image.std(axis=2).max() > 0  # in colour
    assert dialog.heat.shape == (6, 10) and not dialog.layer.isVisibleTo(dialog)
    qtbot.mouseClick(dialog._tile_views[0][0], Qt.MouseButton.LeftButton)
    np.testing.assert_array_equal(dialog.heat, dialog.result.maps[0].mean(axis=0)[dialog.latents[0]])


def test_the_dialog_keeps_its_size_while_choosing_what_to_show(qtbot):
    # It sizes itself to its contents; the chooser, captions and legend changing with the choice made it
    # jump by ~70 pixels under the pointer.
    dialog = AttentionDialog("photo.png")
    qtbot.addWidget(dialog)
    dialog.show_result(_result(1, 8, 8, latents=32))
    dialog.show()
    sizes = set()
    for latent in (ALL_LATENTS_MEAN, 17, ALL_LATENTS_MAX, 3, ALL_LATENTS_MEAN):
        dialog.select_latent(latent)
        qtbot.wait(20)  # the layout settles on the next event-loop turn
        sizes.add((dialog.width(), dialog.height()))
    assert len(sizes) == 1, sizes


# -- series: attention along the time axis -------------------------------------------------------
def test_a_series_attention_colours_its_plot_where_the_latents_look(qtbot):
    """All attention on the last quarter of the series: the overlay is coloured there and stays grey/white at
    the start, and the tiles are the plot too."""
    steps, latents = 40, 6
    maps = np.zeros((1, 2, latents, steps), np.float32)
    maps[..., 30:] = 1 / 10  # every latent looks at steps 30..39
    t = np.linspace(0, 4 * np.pi, steps, dtype=np.float32)
    series = np.stack([np.sin(t), np.cos(t)], axis=1)  # (L, C)
    dialog = AttentionDialog("waves.ts#3")
    qtbot.addWidget(dialog)
    dialog.show_result(AttentionResult("waves.ts#3", (("sine", 0.9),), maps=(maps[0],), series=series))
    assert dialog.heat.shape == (steps,) and "40 time steps" in dialog.status.text()
    assert "series" in dialog.input_caption.text()
    shown = dialog.heat_view.pixmap().toImage()
    top = 5  # above the plot's lines: the background
    start, end = shown.pixelColor(10, top), shown.pixelColor(shown.width() - 10, top)
    assert start.red() == start.green() == start.blue()  # no attention: the plot in grey
    assert end.red() != end.blue()  # the colour of the attention
    tile = dialog._tile_views[0][0].pixmap().toImage()
    assert tile.width() > 40 and tile.pixelColor(tile.width() - 4, 2) != tile.pixelColor(3, 2)


@pytest.mark.slow  # the session's tiny series run (a few seconds, once)
def test_a_series_dropped_on_the_classifier_shows_its_attention_over_time(panel, qtbot, series_run):
    from perceiver_gui.core.series import read_series

    load_model(qtbot, panel, series_run / "model.safetensors")
    test_file = series_run.parent.parent / "waves_TEST.ts"
    drop_files(panel, [test_file])
    found = read_series(test_file)
    qtbot.waitUntil(lambda: len(panel.entries()) == len(found.values), timeout=30000)
    entry = next(e for e in panel.entries() if e.name == "waves_TEST.ts#2")
    qtbot.mouseDClick(entry, Qt.MouseButton.LeftButton)
    dialog = _dialog(qtbot, panel)
    steps = found.values[1].shape[1]
    assert dialog.result.error == "" and "waves_TEST.ts#2" in dialog.windowTitle()
    assert dialog.result.series.shape == (steps, 2)  # the series' own steps: the padding is masked
    assert dialog.heat.shape == (steps,) and np.allclose(dialog.heat.sum(), 1.0, atol=1e-4)
    assert dialog.result.top == entry.top  # the same prediction as the entry


# -- sounds: attention along time, or over the log-mel grid -----------------------------------------
@pytest.mark.parametrize(("picture_shape", "map_shape", "what"), [
    ((4000,), (4000,), "4,000 samples"), ((32, 50), (50,), "50 frames"), ((32, 50), (32, 50), "32 mels × 50 frames")])
def test_a_sounds_attention_colours_its_picture_where_the_latents_look(qtbot, picture_shape, map_shape, what):
    """All attention on the sound's last quarter: the overlay is coloured there and grey at the start, over the
    waveform or the spectrogram as the classifier draws them; a log-mel model's map also runs along the mels."""
    rng = np.random.default_rng(0)
    picture = (rng.standard_normal(picture_shape) * (0.3 if len(picture_shape) == 1 else 20) - 40).astype(np.float32)
    maps = np.zeros((2, 5, *map_shape), np.float32)
    end = map_shape[-1]
    maps[..., 3 * end // 4:] = 1.0
    maps /= maps.sum(axis=tuple(range(2, maps.ndim)), keepdims=True)
    dialog = AttentionDialog("hum.ogg")
    qtbot.addWidget(dialog)
    dialog.show_result(AttentionResult("hum.ogg", (("low", 0.8),), maps=(maps,), sound=picture))
    assert dialog.heat.shape == map_shape and what in dialog.status.text()
    assert "sound" in dialog.input_caption.text()
    if map_shape == (4000,):  # a share of thousands of samples is small, and still said, not rounded to 0.0%
        assert "an even spread gives 0.025% each" in dialog.legend.text()
        assert dialog._tile_views[0][1].text() == "latent 1 · peak 0.1%"
    shown = dialog.heat_view.pixmap().toImage()
    for y in (5, shown.height() // 2, shown.height() - 5):  # along the whole height: every mel band at that time
        start, end_colour = shown.pixelColor(10, y), shown.pixelColor(shown.width() - 10, y)
        assert start.red() == start.green() == start.blue()  # no attention: the picture in grey
        assert end_colour.red() != end_colour.blue()  # the colour of the attention
    tile = dialog._tile_views[0][0].pixmap().toImage()  # a latent over the picture too, not a strip of colour
    assert tile.width() > 40 and tile.pixelColor(tile.width() - 4, 2) != tile.pixelColor(3, 2)


@pytest.mark.slow  # the session's tiny sound run (a few seconds, once)
def test_a_sound_dropped_on_the_classifier_shows_its_attention_over_time(panel, qtbot, sound_run):
    from perceiver_gui.core.inference import Predictor

    load_model(qtbot, panel, sound_run / "model.safetensors")
    file = sorted((sound_run.parent.parent / "sounds" / "low").iterdir())[2]
    drop_files(panel, [file])
    qtbot.waitUntil(lambda: len(panel.entries()) == 1, timeout=30000)
    (entry,) = panel.entries()
    qtbot.mouseDClick(entry, Qt.MouseButton.LeftButton)
    dialog = _dialog(qtbot, panel)
    picture = Predictor.from_checkpoint(sound_run / "model.safetensors").sound_picture(file)  # (mels, frames)
    assert dialog.result.error == "" and file.name in dialog.windowTitle()
    assert np.allclose(dialog.result.sound, picture, atol=1e-4)  # the spectrogram the entry's thumbnail shows
    assert dialog.heat.shape == (picture.shape[1],) and np.allclose(dialog.heat.sum(), 1.0, atol=1e-4)
    assert f"{picture.shape[1]} frames" in dialog.status.text()
    assert dict(dialog.result.top) == pytest.approx(dict(entry.top), abs=1e-6)  # the entry's prediction


# -- point clouds: each point coloured by its attention ---------------------------------------------
def test_a_clouds_attention_colours_each_point_by_its_weight(qtbot):
    """A rod along x, all attention on its x > 0.5 end: those points take the heat's colours, the rest stay grey,
    in the projection the classifier draws; a latent's tile colours its points the same way."""
    x = np.linspace(-1, 1, 64, dtype=np.float32)
    points = np.stack([x, np.zeros_like(x), np.zeros_like(x)], axis=1)
    maps = np.zeros((2, 5, 64), np.float32)
    maps[..., x > 0.5] = 1.0
    maps /= maps.sum(axis=-1, keepdims=True)
    dialog = AttentionDialog("rod.xyz")
    qtbot.addWidget(dialog)
    dialog.show_result(AttentionResult("rod.xyz", (("rod", 0.9),), maps=(maps,), points=points))
    assert dialog.heat.shape == (64,) and "64 points" in dialog.status.text()
    assert "cloud" in dialog.input_caption.text()
    for view, side in ((dialog.heat_view, VIEW), (dialog._tile_views[0][0], TILE)):
        shown = view.pixmap().toImage()
        inked = [(col, shown.pixelColor(col, row)) for col in range(side) for row in range(side)
                 if shown.pixelColor(col, row).rgb() != 0xFFFFFFFF]
        left = [c for col, c in inked if col < side * 0.4]
        right = [c for col, c in inked if col > side * 0.85]
        assert left and all(abs(c.red() - c.blue()) <= 2 for c in left)  # no attention: grey points
        assert right and any(c.red() - c.blue() > 40 for c in right)  # the heat's colours where it looks
    dialog.close()


@pytest.mark.slow  # the session's tiny points run (a few seconds, once)
def test_a_cloud_dropped_on_the_classifier_shows_its_attention_over_its_points(panel, qtbot, points_run):
    from perceiver_gui.core.inference import Predictor

    load_model(qtbot, panel, points_run / "model.safetensors")
    file = sorted((points_run.parent.parent / "shapes" / "cone").iterdir())[1]
    drop_files(panel, [file])
    qtbot.waitUntil(lambda: len(panel.entries()) == 1, timeout=30000)
    (entry,) = panel.entries()
    qtbot.mouseDClick(entry, Qt.MouseButton.LeftButton)
    dialog = _dialog(qtbot, panel)
    cloud = Predictor.from_checkpoint(points_run / "model.safetensors").read_cloud(file)
    assert dialog.result.error == "" and file.name in dialog.windowTitle()
    assert np.array_equal(dialog.result.points, cloud)  # the cloud the entry's thumbnail shows
    assert dialog.heat.shape == (128,) and np.allclose(dialog.heat.sum(), 1.0, atol=1e-4)
    assert "128 points" in dialog.status.text()
    assert dict(dialog.result.top) == pytest.approx(dict(entry.top), abs=1e-6)  # the entry's prediction
