from __future__ import annotations

from perceiver_gui.config import PRESETS
from perceiver_gui.ui.data_preview import DataPreview
from perceiver_gui.ui.hyperparams import HyperparamsPanel
from tests.core.data_fixtures import make_image_folder


def test_the_data_tab_opens_a_preview_of_the_folder_with_counts_samples_and_skipped_files(qtbot, tmp_path):
    folder = make_image_folder(tmp_path / "pets", {"cats": 4, "dogs": 3})
    (folder / "cats" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    form = HyperparamsPanel(PRESETS["folder"].with_updates({"data.folder": str(folder),
                                                             "data.root": str(tmp_path / "data")}))
    qtbot.addWidget(form)
    preview = form.open_preview()
    assert isinstance(preview, DataPreview)
    qtbot.waitUntil(lambda: preview.worker is None, timeout=30000)
    assert "2 classes" in preview.header.text() and "2 validation" in preview.header.text()
    classes = [w.text() for w in preview.findChildren(type(preview.header), "previewClass")]
    assert len(classes) == 2 and "cats" in classes[0] and "dogs" in classes[1]
    assert "2 train · 1 validation · 1 test" in classes[0]
    thumbs = preview.findChildren(type(preview.header), "previewThumb")
    # All training images (4 + 3, less one of each held out for testing and one for validation).
    assert len(thumbs) == 3 and not thumbs[0].pixmap().isNull()
    assert not preview.skipped.isHidden() and "broken.jpg" in preview.skipped.text()
    preview.close()


def test_a_dataset_that_cannot_be_opened_says_why_in_the_preview(qtbot, tmp_path):
    form = HyperparamsPanel(PRESETS["folder"].with_updates({"data.folder": str(tmp_path / "missing")}))
    qtbot.addWidget(form)
    preview = form.open_preview()
    qtbot.waitUntil(lambda: preview.worker is None, timeout=30000)
    assert "Can't preview" in preview.header.text() and "does not exist" in preview.header.text()
    preview.close()


def test_a_series_file_previews_as_line_plots(qtbot, tmp_path):
    rows = "\n".join(",".join(str((i * j) % 5) for j in range(20 + i)) + f":{'ab'[i % 2]}" for i in range(12))
    (tmp_path / "s.ts").write_text(f"@classLabel true a b\n@data\n{rows}\n")
    form = HyperparamsPanel(PRESETS["sequences"].with_updates({"data.train_file": str(tmp_path / "s.ts")}))
    qtbot.addWidget(form)
    preview = form.open_preview()
    qtbot.waitUntil(lambda: preview.worker is None, timeout=30000)
    assert "2 classes" in preview.header.text(), preview.header.text()
    thumbs = preview.findChildren(type(preview.header), "previewThumb")
    assert thumbs and not thumbs[0].pixmap().isNull()
    image = thumbs[0].pixmap().toImage()
    assert len({image.pixel(x, y) for x in range(image.width()) for y in range(image.height())}) > 1
    preview.close()


def test_a_points_folder_previews_as_scatters_of_its_clouds(qtbot, tmp_path):
    from tests.core.test_points import points_folder

    folder = points_folder(tmp_path / "shapes", per_class=5)
    form = HyperparamsPanel(PRESETS["points"].with_updates({"data.folder": str(folder), "data.num_points": 256,
                                                            "data.root": str(tmp_path / "data")}))
    qtbot.addWidget(form)
    preview = form.open_preview()
    qtbot.waitUntil(lambda: preview.worker is None, timeout=30000)
    header = preview.header.text()
    assert "3 classes" in header and "point clouds" in header and "turns about the up axis" in header, header
    thumbs = preview.findChildren(type(preview.header), "previewThumb")
    assert len(thumbs) == 3 * 3  # every training cloud of each class: 5, less one for test and one for validation
    image = thumbs[0].pixmap().toImage()
    assert len({image.pixel(x, y) for x in range(image.width()) for y in range(image.height())}) > 5
    preview.close()


def test_an_audio_folder_previews_clips_per_class_as_spectrograms_or_waveforms(qtbot, tmp_path):
    from tests.core.test_audio import audio_folder

    folder = audio_folder(tmp_path / "sounds", per_class=5)
    (folder / "low" / "broken.wav").write_bytes(b"RIFF not really a wave")
    for audio_input in ("mel_frames", "waveform"):
        form = HyperparamsPanel(PRESETS["audio"].with_updates({"data.folder": str(folder), "data.audio_input": audio_input,
                                                               "data.root": str(tmp_path / "data")}))
        qtbot.addWidget(form)
        preview = form.open_preview()
        qtbot.waitUntil(lambda preview=preview: preview.worker is None, timeout=30000)
        header = preview.header.text()
        assert "3 classes" in header and "test sounds" in header and "time shifts and gains" in header, header
        thumbs = preview.findChildren(type(preview.header), "previewThumb")
        assert len(thumbs) == 3 * 3  # 5 a class, less one for testing and one for validation
        image = thumbs[0].pixmap().toImage()
        colours = {image.pixel(x, y) for x in range(image.width()) for y in range(image.height())}
        assert len(colours) > (10 if audio_input == "mel_frames" else 1)  # a heat map, or an envelope on white
        assert "broken.wav" in preview.skipped.text()
        preview.close()


def test_a_row_of_samples_fits_without_a_horizontal_scroll_bar(qtbot, tmp_path):
    # At the dialog's first size (640 px) a class's eight samples ran behind a horizontal scroll bar.
    folder = make_image_folder(tmp_path / "f", {"cats": 14, "dogs": 14})
    form = HyperparamsPanel(PRESETS["folder"].with_updates({"data.folder": str(folder),
                                                             "data.root": str(tmp_path / "data")}))
    qtbot.addWidget(form)
    preview = form.open_preview()
    qtbot.waitUntil(lambda: preview.worker is None, timeout=30000)
    preview.show()
    qtbot.waitExposed(preview)
    assert len(preview.findChildren(type(preview.header), "previewThumb")) == 16
    bar = preview.scroll.horizontalScrollBar()
    qtbot.waitUntil(lambda: preview.width() > 640, timeout=5000)
    assert bar.maximum() == 0 or not bar.isVisible()
    preview.close()
