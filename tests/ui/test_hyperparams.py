from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from perceiver_gui.config import PRESETS, Config, load_config
from perceiver_gui.ui.hyperparams import HyperparamsPanel
from tests.ui.helpers import turn_wheel


@pytest.fixture
def form(qtbot):
    panel = HyperparamsPanel()
    qtbot.addWidget(panel)
    return panel


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_survives_the_round_trip_through_the_form(form, name):
    form.set_config(PRESETS[name])
    assert form.config() == PRESETS[name]
    assert form.preset_box.currentData() == name
    # The folder, points, audio and sequences presets wait for their data; every other preset can start as it is.
    waits = {"folder": "data.folder", "points": "data.folder", "sequences": "data.train_file", "audio": "data.folder"}
    assert [key for key, _ in form.problems()] == ([waits[name]] if name in waits else [])


def test_a_config_with_unusual_values_round_trips(form):
    cfg = PRESETS["cifar10"].with_updates({
        "name": "odd", "train.lr": 0.000123, "train.weight_decay": 1.5e-5, "model.max_freq": 12.5,
        "train.device": "cuda:1", "train.precision": "bfloat16", "data.dataset": "folder",
        "data.folder": "/some/where", "data.test_fraction": 0.15, "data.val_fraction": 0.2, "data.split_seed": 3,
        "train.early_stop_patience": 4, "model.attn_dropout": 0.05,
    })
    form.set_config(cfg)
    assert form.config() == cfg
    assert form.preset_box.currentData() == ""  # no preset matches: "(custom)"


def test_picking_a_preset_fills_the_form(form, qtbot):
    form.set_config(PRESETS["digits"])
    with qtbot.waitSignal(form.config_changed) as changed:
        form.preset_box.setCurrentIndex(form.preset_box.findData("cifar10"))
        form.preset_box.activated.emit(form.preset_box.currentIndex())
    assert changed.args[0] == PRESETS["cifar10"]
    assert form.field("model.num_latents").value() == 128


def test_dataset_decides_the_read_only_input_fields(form):
    form.set_config(PRESETS["digits"])
    assert "1 channel" in form.derived_label.text() and "8×8" in form.derived_label.text()
    combo = form.field("data.dataset")
    combo.setCurrentIndex(combo.findData("cifar100"))
    cfg = form.config()
    assert (cfg.model.input_channels, cfg.model.num_classes) == (3, 100)
    assert "100 classes" in form.derived_label.text()
    # Folder-only settings are greyed out for a built-in dataset.
    assert not form.field("data.folder").isEnabled()


def test_an_inconsistent_value_is_flagged_next_to_its_field(form, qtbot):
    form.set_config(PRESETS["digits"])
    with qtbot.waitSignal(form.problems_changed) as changed:
        form.field("train.optimizer").setCurrentIndex(form.field("train.optimizer").findData("adam"))
        form.field("train.nesterov").setChecked(True)
    assert [key for key, _ in changed.args[0]] == ["train.nesterov"]
    error = form._fields["train.nesterov"].error
    assert not error.isHidden() and "Nesterov" in error.text()
    assert "Training" in form.tabs.tabText(2) and "⚠" in form.tabs.tabText(2)
    form.field("train.nesterov").setChecked(False)
    assert form.problems() == [] and error.isHidden()


def test_typed_learning_rate_in_scientific_notation(form, qtbot):
    lr = form.field("train.lr")
    lr.selectAll()
    qtbot.keyClicks(lr, "3e-4")
    qtbot.keyClick(lr, Qt.Key.Key_Return)
    assert form.config().train.lr == pytest.approx(3e-4)


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_save_and_open_settings(form, tmp_path, suffix):
    cfg = PRESETS["digits"].with_updates({"name": "mine", "train.epochs": 7, "train.lr": 0.0042})
    form.set_config(cfg)
    path = tmp_path / f"mine{suffix}"
    assert form.save_file(path)
    assert load_config(path) == cfg
    form.set_config(Config())
    assert form.open_file(path)
    assert form.config() == cfg


def test_a_broken_settings_file_is_reported_and_the_form_kept(form, tmp_path, qtbot):
    form.set_config(PRESETS["digits"])
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nlr = 'fast'\n")
    with qtbot.waitSignal(form.message) as said:
        assert not form.open_file(bad)
    assert "train.lr" in said.args[0]
    assert form.config() == PRESETS["digits"]


def test_while_a_run_trains_the_settings_are_locked_but_can_be_browsed(form):
    form.set_config(PRESETS["digits"].with_updates({"train.optimizer": "adamw"}))
    form.set_editable(False)
    assert form.tabs.isEnabled()  # Model / Data / Training can still be looked at
    assert not any(field.widget.isEnabled() for field in form._fields.values())
    assert not form.preset_box.isEnabled() and not form.name_edit.isEnabled()
    assert form.fourier.isEnabled()  # the encoding plot can still be opened
    form.set_editable(True)
    assert form.field("train.lr").isEnabled()
    assert not form.field("train.momentum").isEnabled()  # still greyed: AdamW has no momentum


def _pick(form, key, value):
    combo = form.field(key)
    combo.setCurrentIndex(combo.findData(value))


def test_picking_a_dataset_on_an_untouched_preset_brings_its_recipe(form):
    form.set_config(PRESETS["digits"])
    _pick(form, "data.dataset", "mnist")
    assert form.config() == PRESETS["mnist"]
    assert form.preset_box.currentData() == "mnist"
    assert "MNIST is downloaded before the first Start" in form.preset_note.text()
    assert form.recipe_button.isHidden()


def test_picking_a_dataset_keeps_edits_and_offers_the_recipe_instead(form, qtbot):
    form.set_config(PRESETS["digits"])
    form.field("train.epochs").setValue(7)
    _pick(form, "data.dataset", "mnist")
    cfg = form.config()
    assert cfg.data.dataset == "mnist" and cfg.train.epochs == 7  # nothing overwritten unasked
    assert (cfg.model.input_channels, cfg.model.num_classes) == (1, 10)
    assert form.preset_box.currentData() == ""
    assert not form.recipe_button.isHidden() and "mnist" in form.recipe_button.text()
    with qtbot.waitSignal(form.config_changed):
        form.recipe_button.click()
    assert form.config() == PRESETS["mnist"]
    assert form.recipe_button.isHidden()


def _shapes_folder(root, side):
    from PIL import Image

    for name in ("circles", "squares"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (side, side + i), "white").save(root / name / f"{i}.png")
    return root


def test_a_folder_sets_the_image_size_from_its_images_and_max_frequency_follows(form, tmp_path, qtbot):
    form.set_config(PRESETS["digits"])
    _pick(form, "data.dataset", "folder")
    assert form.preset_box.currentData() == "folder"
    with qtbot.waitSignal(form.message) as said:
        form.field("data.folder").setText(str(_shapes_folder(tmp_path / "shapes", 48)))
    cfg = form.config()
    assert cfg.data.image_size == 48 and "48 px" in said.args[0]
    assert cfg.model.max_freq == 24  # half the Nyquist limit of 48 pixels (47)
    assert cfg.model.num_classes == 2 and "2 classes" in form.derived_label.text()
    assert form.preset_box.currentData() == "folder"  # still the preset: size and frequency follow the data
    form.field("data.image_size").setValue(16)
    assert form.config().model.max_freq == 8


def test_an_edited_max_frequency_stays_unless_it_would_alias(form):
    form.set_config(PRESETS["folder"])
    form.field("model.max_freq").setValue(10)
    form.field("data.image_size").setValue(24)
    assert form.config().model.max_freq == 10  # the user's value, still below 24 - 1
    form.field("data.image_size").setValue(8)
    assert form.config().model.max_freq == 4  # 10 would alias on 8 pixels: back to following the size


def test_scrolling_the_form_with_the_wheel_does_not_change_fields_under_the_pointer(make_window, qtbot):
    window = make_window()
    window.show()
    qtbot.waitExposed(window)
    bands, dataset, lr = (window.form.field(k) for k in ("model.num_freq_bands", "data.dataset", "train.lr"))
    before = window.form.config()
    for field in (bands, dataset, lr):
        assert not field.hasFocus()
        turn_wheel(field)
    assert window.form.config() == before
    # A field the user has clicked into (it has the focus) still takes the wheel.
    window.activateWindow()
    bands.setFocus()
    qtbot.waitUntil(bands.hasFocus, timeout=2000)
    turn_wheel(bands, 1)
    assert window.form.config().model.num_freq_bands == before.model.num_freq_bands + 1


def test_sequences_show_the_series_files_and_the_series_length(form, tmp_path):
    rows = "\n".join(",".join(str((i * j) % 5) for j in range(50 + i)) + f":{'ab'[i % 2]}" for i in range(6))
    (tmp_path / "s.ts").write_text(f"@classLabel true a b\n@data\n{rows}\n")
    form.set_config(PRESETS["digits"])
    _pick(form, "data.dataset", "sequences")
    assert form.field("data.train_file").isEnabled() and not form.field("data.folder").isEnabled()
    assert [key for key, _ in form.problems()] == ["data.train_file"]
    form.field("data.train_file").setText(str(tmp_path / "s.ts"))
    cfg = form.config()
    assert form.problems() == [] and cfg.data.train_file == str(tmp_path / "s.ts")
    assert (cfg.model.input_axis, cfg.model.input_channels, cfg.model.num_classes) == (1, 1, 2)
    assert "55 steps" in form.derived_label.text() and "2 classes" in form.derived_label.text()
    assert form.preset_box.currentData() == "sequences"  # where the series live is not part of the recipe


def test_point_clouds_show_the_point_fields_and_the_points_as_m(form, qtbot, tmp_path):
    from perceiver_gui.ui.complexity_view import ComplexityView

    for shape in ("chairs", "lamps", "tables"):
        (tmp_path / "shapes" / shape).mkdir(parents=True)
    form.set_config(PRESETS["digits"])
    assert not form.field("data.num_points").isEnabled() and not form.field("data.rotate").isEnabled()
    _pick(form, "data.dataset", "points_folder")
    assert form.preset_box.currentData() == "points"  # the untouched digits preset brought the points recipe
    for key in ("data.folder", "data.num_points", "data.rotate", "data.jitter"):
        assert form.field(key).isEnabled(), key
    assert not form.field("data.crop_padding").isEnabled() and not form.field("data.image_size").isEnabled()
    assert [key for key, _ in form.problems()] == ["data.folder"]
    form.field("data.folder").setText(str(tmp_path / "shapes"))
    form.field("data.num_points").setValue(256)
    cfg = form.config()
    assert form.problems() == [] and cfg.data.num_points == 256 and cfg.data.rotate
    assert (cfg.model.input_axis, cfg.model.input_channels, cfg.model.num_classes, cfg.model.positions) == \
        (3, 3, 3, "points")
    assert form.derived_label.text() == "x, y, z · 256 points a cloud · 3 classes (subfolders)"
    view = ComplexityView()
    qtbot.addWidget(view)
    view.set_config(cfg)
    assert "per point cloud" in view.cost.text()
    assert "M = 256 points" in view.attention.text()
    # The Fourier readout speaks of points, with no pixel grid to alias on.
    assert "channels to each point" in form.fourier.channels.text()
    assert "Nyquist" not in form.fourier.note.text() and "no band aliases" in form.fourier.note.text()


def test_a_ucr_problem_by_name_stands_in_for_the_series_file(form):
    form.set_config(PRESETS["digits"])
    assert not form.field("data.ucr_problem").isEnabled()
    _pick(form, "data.dataset", "sequences")
    assert form.field("data.ucr_problem").isEnabled()
    form.field("data.ucr_problem").setText("GunPoint")
    assert form.problems() == [] and form.config().data.ucr_problem == "GunPoint"
    form.field("data.ucr_problem").setText("../GunPoint")
    assert [key for key, _ in form.problems()] == ["data.ucr_problem"]


def test_the_tips_of_settings_every_kind_has_speak_of_the_chosen_kind(form, tmp_path):
    keys = ("train.batch_size", "train.mixup", "data.val_fraction", "data.split_seed", "model.cross_heads")
    form.set_config(PRESETS["digits"])
    assert form.field("train.batch_size").toolTip().startswith("Images per step")
    _pick(form, "data.dataset", "sequences")
    for key in keys:
        assert "image" not in form.field(key).toolTip().lower(), (key, form.field(key).toolTip())
    assert form.field("train.batch_size").toolTip().startswith("Series per step; larger is faster per series")
    assert "how many series each has" in form.preview_button.toolTip()
    _pick(form, "data.dataset", "digits")
    assert form.field("train.batch_size").toolTip().startswith("Images per step")


def test_an_audio_folder_enables_the_sound_settings_and_the_readout_gives_m(form, tmp_path):
    for label in ("cat", "dog", "owl"):
        (tmp_path / label).mkdir()
    form.set_config(PRESETS["digits"])
    assert not form.field("data.sample_rate").isEnabled()  # sound settings are greyed out for images
    _pick(form, "data.dataset", "audio_folder")
    assert form.preset_box.currentData() == "audio"  # an untouched preset brings the dataset's recipe
    assert all(form.field(key).isEnabled() for key in ("data.folder", "data.audio_input", "data.sample_rate",
                                                        "data.clip_seconds", "data.n_mels", "data.time_shift",
                                                        "data.gain_db"))
    assert not form.field("data.hflip").isEnabled() or not form.config().data.hflip
    form.field("data.folder").setText(str(tmp_path))
    cfg = form.config()
    assert form.problems() == [] and (cfg.model.input_axis, cfg.model.input_channels, cfg.model.num_classes) == (1, 40, 3)
    assert "101 frames of 40 mel bands" in form.derived_label.text() and "3 classes" in form.derived_label.text()
    _pick(form, "data.audio_input", "log_mel")
    assert form.config().model.input_axis == 2 and "40 mels × 101 frames = 4,040 inputs" in form.derived_label.text()
    _pick(form, "data.audio_input", "waveform")
    assert "16,000 samples" in form.derived_label.text() and not form.field("data.n_mels").isEnabled()
    assert form.config().model.input_axis == 1 and form.config().model.input_channels == 1


def test_speech_commands_offers_the_sound_settings_and_its_download_but_no_folder(form):
    form.set_config(PRESETS["digits"])
    _pick(form, "data.dataset", "speech_commands")
    assert form.preset_box.currentData() == "speech"
    assert form.field("data.n_mels").isEnabled() and form.field("data.download").isEnabled()
    assert not form.field("data.folder").isEnabled() and not form.field("data.test_fraction").isEnabled()
    assert "35 classes" in form.derived_label.text() and "subfolders" not in form.derived_label.text()
    assert "downloaded before the first Start" in form.preset_note.text()
    assert form.problems() == []
