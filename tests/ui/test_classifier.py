from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QLabel

from tests.ui.helpers import digit_images, drop_files, load_model

pytestmark = pytest.mark.slow  # uses the session's tiny trained model (~5 s to make once)


def test_dropping_images_shows_predictions_newest_first_and_a_corrupt_file_inline(panel, qtbot, trained_run, tmp_path):
    said = []
    panel.message.connect(said.append)
    load_model(qtbot, panel, trained_run / "model.safetensors")
    assert "tiny" in panel.model_info.text() and "10 classes" in panel.model_info.text()
    # every run's file is model.safetensors: the status bar names the run
    assert any("tiny" in line and "model.safetensors" in line for line in said), said
    good = digit_images(tmp_path / "images", 2)
    corrupt = tmp_path / "images" / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really a picture")
    event = drop_files(panel, [*good, corrupt])
    assert event.isAccepted()
    qtbot.waitUntil(lambda: len(panel.entries()) == 3, timeout=30000)

    newest, *older = panel.entries()
    assert Path(newest.path).name == "broken.png" and newest.error and "broken.png" in newest.error
    for entry in older:
        assert entry.error == "" and len(entry.top) == 3
        labels = [label for label, _ in entry.top]
        assert set(labels) <= {str(d) for d in range(10)}
        probs = [p for _, p in entry.top]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
    assert panel.placeholder.isHidden()


def test_dropping_a_folder_classifies_its_images(panel, qtbot, trained_run, tmp_path):
    load_model(qtbot, panel, trained_run / "model.safetensors")
    digit_images(tmp_path / "digits" / "sub", 3)
    drop_files(panel, [tmp_path / "digits"])
    qtbot.waitUntil(lambda: len(panel.entries()) == 3, timeout=30000)
    assert all(not e.error for e in panel.entries())


def test_dropping_a_model_file_loads_it_and_images_wait_for_it(panel, qtbot, trained_run, tmp_path):
    images = digit_images(tmp_path / "images", 1)
    drop_files(panel, images)  # no model yet: the image waits
    assert "Waiting for a model" in panel.busy.text()
    with qtbot.waitSignal(panel.model_loaded, timeout=30000):
        drop_files(panel, [trained_run / "model.safetensors"])
    qtbot.waitUntil(lambda: len(panel.entries()) == 1, timeout=30000)
    assert panel.entries()[0].top


def test_a_file_that_is_not_a_model_is_reported_in_the_panel(panel, qtbot, tmp_path):
    bogus = tmp_path / "weights.safetensors"
    bogus.write_bytes(b"definitely not safetensors")
    drop_files(panel, [bogus])
    qtbot.waitUntil(lambda: not panel.working, timeout=30000)
    assert panel.predictor is None
    assert "weights.safetensors" in panel.model_info.text()


def test_a_pasted_image_is_classified(panel, qtbot, trained_run):
    load_model(qtbot, panel, trained_run / "model.safetensors")
    image = QImage(16, 16, QImage.Format.Format_Grayscale8)
    image.fill(0)
    panel.classify_image(image)
    qtbot.waitUntil(lambda: len(panel.entries()) == 1, timeout=30000)
    entry = panel.entries()[0]
    assert entry.error == "" and len(entry.top) == 3


def test_the_open_dialog_offers_exactly_the_files_the_classifier_reads(panel, monkeypatch):
    import re

    from PySide6.QtWidgets import QFileDialog

    from perceiver_gui.core.images import IMAGE_SUFFIXES

    offered = []
    monkeypatch.setattr(QFileDialog, "getOpenFileNames",
                        staticmethod(lambda parent, title, folder, filter_: (offered.append(filter_), ([], ""))[1]))
    panel.open_images_dialog()
    (images,) = re.findall(r"Images \(([^)]*)\)", offered[0])
    assert {p.removeprefix("*") for p in images.split()} == IMAGE_SUFFIXES
    from perceiver_gui.core import audio, points, series

    (every,) = re.findall(r"^Everything \(([^)]*)\)", offered[0])
    assert {p.removeprefix("*") for p in every.split()} == IMAGE_SUFFIXES | {*audio.SUFFIXES, *series.SUFFIXES,
                                                                               *points.SUFFIXES}


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="needs FIFOs")
def test_a_dropped_fifo_is_refused_in_its_entry_not_waited_on(panel, qtbot, trained_run, tmp_path):
    import os

    load_model(qtbot, panel, trained_run / "model.safetensors")
    good = digit_images(tmp_path / "images", 1)
    os.mkfifo(tmp_path / "images" / "pipe.png")
    drop_files(panel, [tmp_path / "images" / "pipe.png", *good])
    qtbot.waitUntil(lambda: len(panel.entries()) == 2, timeout=30000)  # a FIFO opened would wait forever
    by_name = {Path(e.path).name: e for e in panel.entries()}
    assert "not a regular file" in by_name["pipe.png"].error
    assert by_name[good[0].name].top


def _named_copy(trained_run, folder: Path, name: str) -> Path:
    import shutil

    from perceiver_gui.core.runs import rename_run

    shutil.copytree(trained_run, folder)
    rename_run(folder, name)
    return folder / "model.safetensors"


def test_a_failed_load_says_the_previous_model_is_still_in_use(panel, qtbot, trained_run, tmp_path):
    load_model(qtbot, panel, _named_copy(trained_run, tmp_path / "a", "first model"))
    bogus = tmp_path / "weights.safetensors"
    bogus.write_bytes(b"definitely not safetensors")
    drop_files(panel, [bogus])
    qtbot.waitUntil(lambda: not panel.working, timeout=30000)
    info = panel.model_info.text()
    assert "weights.safetensors" in info and "still" in info.lower() and "first model" in info
    drop_files(panel, digit_images(tmp_path / "images", 1))
    qtbot.waitUntil(lambda: len(panel.entries()) == 1, timeout=30000)
    assert panel.entries()[0].model == "first model"


def test_results_name_their_model_and_another_model_starts_a_new_group(panel, qtbot, trained_run, tmp_path):
    images = digit_images(tmp_path / "images", 2)
    load_model(qtbot, panel, _named_copy(trained_run, tmp_path / "a", "first model"))
    panel.classify(images[:1])
    qtbot.waitUntil(lambda: len(panel.entries()) == 1, timeout=30000)
    load_model(qtbot, panel, _named_copy(trained_run, tmp_path / "b", "second model"))
    panel.classify(images[1:])
    qtbot.waitUntil(lambda: len(panel.entries()) == 2, timeout=30000)
    newest, oldest = panel.entries()
    assert (newest.model, oldest.model) == ("second model", "first model")
    assert "second model" in newest.findChild(QLabel, "entryModel").text()
    # Each model's results sit under a heading that names it, newest model first.
    assert [("second model" in t, "first model" in t) for t in panel.group_titles()] == [(True, False), (False, True)]
    panel.clear()
    assert panel.group_titles() == [] and panel.entries() == []


def test_deleting_the_loaded_run_in_the_runs_tab_unloads_it(make_window, qtbot, trained_run, dialogs):
    window = make_window()
    run = window.runs_root / "tiny-run"
    model = _named_copy(trained_run, run, "doomed")
    window.runs.refresh()
    assert window.runs.select_runs([str(run)])
    with qtbot.waitSignal(window.classifier.model_loaded, timeout=30000):
        window.runs.open_button.click()
    window.runs.select_runs([str(run)])
    window.runs.delete_button.click()
    assert not model.exists()
    assert window.classifier.predictor is None and window.classifier.model_path == ""
    assert "doomed" in window.classifier.model_info.text() and "deleted" in window.classifier.model_info.text()


def test_a_huge_image_gets_a_real_thumbnail(panel, qtbot, trained_run, tmp_path):
    from PIL import Image

    big = tmp_path / "poster.png"
    Image.new("RGB", (9000, 9000), (200, 30, 30)).save(big)  # past Qt's 256 MB allocation limit for a decode
    load_model(qtbot, panel, trained_run / "model.safetensors")
    panel.classify([big])
    qtbot.waitUntil(lambda: len(panel.entries()) == 1, timeout=60000)
    entry = panel.entries()[0]
    assert entry.error == "" and entry.top
    pixmap = entry.picture.pixmap()
    assert not pixmap.isNull() and max(pixmap.width(), pixmap.height()) == 72
    assert pixmap.toImage().pixelColor(36, 36).red() > 150  # the picture itself, not the "?" placeholder


def test_a_series_file_dropped_on_a_series_model_gives_a_result_with_a_line_plot_per_series(panel, qtbot, tmp_path):
    from perceiver_gui.core.training import train
    from tests.core.test_series import sequences, shapes, tiny_config, write_ts

    series, labels = shapes(8, 24, vary=True, level=1.0)
    train_file = write_ts(tmp_path / "w.ts", series, labels)
    events = list(train(tiny_config(tmp_path, sequences(train_file), epochs=1), out_dir=tmp_path / "run"))
    assert events[-1].status == "completed", events[-1].message
    load_model(qtbot, panel, tmp_path / "run" / "model.safetensors")
    new = write_ts(tmp_path / "new.ts", series[:2], labels[:2])
    image = digit_images(tmp_path / "images", 1)[0]
    drop_files(panel, [new, image])
    qtbot.waitUntil(lambda: len(panel.entries()) == 3, timeout=30000)
    by_name = {entry.name: entry for entry in panel.entries()}
    assert set(by_name) == {"new.ts#1", "new.ts#2", image.name}
    assert len(by_name["new.ts#1"].top) == 3 and not by_name["new.ts#1"].error
    assert "reads time series" in by_name[image.name].error
    thumb = by_name["new.ts#2"].picture.pixmap().toImage()
    assert len({thumb.pixel(x, y) for x in range(thumb.width()) for y in range(thumb.height())}) > 1


@pytest.mark.slow
def test_meshes_and_point_files_dropped_on_a_points_model_give_a_result_each_with_a_scatter(panel, qtbot, tmp_path):
    from perceiver_gui.core.training import train
    from tests.core.test_points import points_config, points_folder

    folder = points_folder(tmp_path / "shapes", per_class=5)
    cfg = points_config(folder, **{"train.epochs": 1, "train.warmup_epochs": 0, "model.latent_dim": 16,
                                   "data.num_points": 64})
    events = list(train(cfg, out_dir=tmp_path / "run"))
    assert events[-1].status == "completed", events[-1].message
    load_model(qtbot, panel, tmp_path / "run" / "model.safetensors")
    new = points_folder(tmp_path / "new", per_class=2, seed=3)
    mesh, cloud = new / "cone" / "0a.ply", new / "sphere" / "1b.off"
    flat = tmp_path / "flat.obj"
    flat.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    image = digit_images(tmp_path / "images", 1)[0]
    drop_files(panel, [mesh, image, cloud, flat, new / "box"])  # a folder: its mesh and point files
    qtbot.waitUntil(lambda: len(panel.entries()) == 6, timeout=30000)
    by_name = {entry.name: entry for entry in panel.entries()}
    assert sorted(entry.name for entry in panel.entries()) == sorted(["0a.ply", "1b.off", "flat.obj", image.name,
                                                                      "0a.ply", "1b.off"])
    for entry in panel.entries():
        if entry.name.endswith((".ply", ".off")):
            assert len(entry.top) == 3 and not entry.error
            thumb = entry.picture.pixmap().toImage()  # a scatter of the cloud: blue dots on white
            colours = {thumb.pixel(x, y) for x in range(thumb.width()) for y in range(thumb.height())}
            assert len(colours) > 5
    assert "is a mesh with no faces" in by_name["flat.obj"].error
    assert "reads point clouds, not images" in by_name[image.name].error


def test_sounds_dropped_on_a_sound_model_with_an_image_give_a_spectrogram_each(panel, qtbot, tmp_path):
    import numpy as np
    import soundfile

    from perceiver_gui.core.training import train
    from tests.core.test_audio import audio_folder, tiny_audio, tone

    folder = audio_folder(tmp_path / "sounds", per_class=4)
    cfg = tiny_audio(folder, tmp_path, audio_input="mel_frames").with_updates({"train.epochs": 1})
    events = list(train(cfg, out_dir=tmp_path / "run"))
    assert events[-1].status == "completed", events[-1].message
    load_model(qtbot, panel, tmp_path / "run" / "model.safetensors")
    new = tmp_path / "new"
    new.mkdir()
    soundfile.write(new / "beep.flac", tone(3000, 0.4, 44_100), 44_100)
    soundfile.write(new / "hum.ogg", np.stack([tone(250, 0.5, 22_050)] * 2, axis=1), 22_050)
    soundfile.write(new / "quiet.wav", np.zeros(8000, dtype=np.float32), 16_000)
    image = digit_images(tmp_path / "images", 1)[0]
    drop_files(panel, [new / "beep.flac", image, new / "hum.ogg", new / "quiet.wav"])
    qtbot.waitUntil(lambda: len(panel.entries()) == 4, timeout=30000)
    by_name = {Path(entry.path).name: entry for entry in panel.entries()}
    for name in ("beep.flac", "hum.ogg"):
        assert len(by_name[name].top) == 3 and not by_name[name].error
        thumb = by_name[name].picture.pixmap().toImage()  # a heat map: many colours, not the "?" placeholder
        assert len({thumb.pixel(x, y) for x in range(0, thumb.width(), 2) for y in range(0, thumb.height(), 2)}) > 10
    assert "reads sounds" in by_name[image.name].error
    assert "is silent" in by_name["quiet.wav"].error


def test_each_probability_sits_beside_its_bar_clear_of_the_filled_part(qtbot):
    """Fusion centres a bar's text over the whole bar, so at ~50% the filled part's edge cut through "48.0%"."""
    from PySide6.QtCore import QPoint, QRect
    from PySide6.QtWidgets import QProgressBar

    from perceiver_gui.ui.classifier_panel import ResultEntry

    entry = ResultEntry("cat.png", "/x/cat.png", (("cat", 0.48), ("dog", 0.3)), "", QImage())
    qtbot.addWidget(entry)
    entry.resize(500, 160)
    entry.show()
    qtbot.waitExposed(entry)
    bars = entry.findChildren(QProgressBar)
    assert [bar.value() for bar in bars] == [480, 300] and not any(bar.isTextVisible() for bar in bars)

    def on_entry(widget):
        return QRect(widget.mapTo(entry, QPoint(0, 0)), widget.size())

    for bar, text in zip(bars, ("48.0%", "30.0%"), strict=True):
        (label,) = [w for w in entry.findChildren(QLabel) if w.text() == text]
        assert label.isVisible() and not on_entry(label).intersects(on_entry(bar))
        assert abs(on_entry(label).center().y() - on_entry(bar).center().y()) <= 2  # on the bar's row
