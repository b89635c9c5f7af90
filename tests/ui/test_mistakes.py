"""The Mistakes tab: the confusion matrix of the latest epoch on validation, and the images behind a cell."""

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from perceiver_gui.core.events import EpochEnd, RunStarted
from perceiver_gui.core.training import train
from tests.ui.helpers import tiny_config

VAL_SIZE = 90  # the digits validation split (a tenth of 898)


@pytest.fixture
def mistakes(qtbot):
    from perceiver_gui.ui.mistakes_panel import MistakesPanel

    widget = MistakesPanel()
    widget.resize(1100, 700)
    # Workers end before pytest-qt deletes the panel (see the classifier's `panel` fixture).
    qtbot.addWidget(widget, before_close_func=lambda w: qtbot.waitUntil(lambda: not w.working, timeout=30000))
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def _load(qtbot, panel, run_dir):
    with qtbot.waitSignal(panel.matrix_shown, timeout=30000):
        panel.load_run(str(run_dir))


def _click(qtbot, panel, true, pred):
    with qtbot.waitSignal(panel.cell_shown, timeout=60000):
        qtbot.mouseClick(panel.view, Qt.MouseButton.LeftButton, pos=panel.view.cell_rect(true, pred).center().toPoint())
    qtbot.waitUntil(lambda: not panel.working, timeout=60000)


def _largest_mistake(counts):
    k = len(counts)
    return max((counts[t][p], t, p) for t in range(k) for p in range(k) if t != p)


def test_a_finished_run_shows_its_last_epoch_with_every_test_image_counted(qtbot, mistakes, trained_run):
    _load(qtbot, mistakes, trained_run)
    view = mistakes.view
    assert len(view.counts) == 10 and view.class_names == tuple(str(i) for i in range(10))
    assert sum(map(sum, view.counts)) == VAL_SIZE
    right = sum(view.counts[i][i] for i in range(10))
    assert "epoch 3" in mistakes.summary.text() and f"{right} of {VAL_SIZE} validation images right" in mistakes.summary.text()
    assert "validation split" in mistakes.summary.text()
    # Named as in the Runs tab (the name in run.json), not by its folder, which the tooltip gives.
    assert mistakes.summary.text().startswith("<b>tiny</b>") and mistakes.summary.toolTip() == str(trained_run)

    # Counts, then each row as a share of its true class: the rows add up to 100%.
    assert [view.text(0, p) for p in range(10)] == [str(c) if c else "" for c in view.counts[0]]
    mistakes.share_button.click()
    assert view.normalised
    row = view.counts[0]
    assert [view.text(0, p) for p in range(10)] == [
        ("<1%" if c / sum(row) < 0.005 else f"{c / sum(row):.0%}") if c else "" for c in row
    ]
    mistakes.counts_button.click()
    assert view.text(0, 0) == (str(row[0]) if row[0] else "")


def test_clicking_a_cell_shows_its_test_images_with_their_probabilities(qtbot, mistakes, trained_run):
    _load(qtbot, mistakes, trained_run)
    count, t, p = _largest_mistake(mistakes.view.counts)
    _click(qtbot, mistakes, t, p)
    assert mistakes.view.selected == (t, p)
    assert mistakes.gallery.count() == count
    assert f"{count} validation image" in mistakes.gallery_title.text()
    caption = mistakes.gallery.item(0).text()
    assert caption.startswith(f"pred {p} ") and f"\ntrue {t} " in caption and caption.endswith("%")
    assert not mistakes.gallery.item(0).icon().isNull()

    # A cell on the diagonal: the images the model got right.
    _click(qtbot, mistakes, p, p)
    assert mistakes.gallery.count() == mistakes.view.counts[p][p]


def test_an_empty_cell_or_a_click_beside_the_matrix_says_so(qtbot, mistakes, trained_run):
    _load(qtbot, mistakes, trained_run)
    counts = mistakes.view.counts
    t, p = next((t, p) for t in range(10) for p in range(10) if counts[t][p] == 0)
    _click(qtbot, mistakes, t, p)
    assert mistakes.gallery.count() == 0
    assert f"no validation image of <b>{t}</b>" in mistakes.gallery_title.text()
    with qtbot.waitSignal(mistakes.cell_shown):
        qtbot.mouseClick(mistakes.view, Qt.MouseButton.LeftButton, pos=QPoint(3, mistakes.view.height() - 3))
    assert mistakes.view.selected is None and mistakes.gallery.count() == 0
    assert "Click a cell of the matrix" in mistakes.gallery_title.text()


def test_a_run_without_saved_predictions_shows_a_sentence_not_a_crash(qtbot, mistakes, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with qtbot.waitSignal(mistakes.matrix_shown, timeout=30000):
        mistakes.load_run(str(tmp_path))
    assert mistakes.confusion is None
    assert "no finished epoch yet" in mistakes.summary.text()


def test_the_matrix_follows_a_live_run_epoch_by_epoch_and_the_chosen_cell_with_it(qtbot, mistakes, tmp_path):
    chosen = None
    for event in train(tiny_config(**{"train.epochs": 3}), out_dir=tmp_path / "live"):
        if isinstance(event, EpochEnd) and chosen is not None:
            with qtbot.waitSignal(mistakes.cell_shown, timeout=60000):  # the chosen cell reloads for the new epoch
                mistakes.on_event(event)
            qtbot.waitUntil(lambda: not mistakes.working, timeout=60000)
            assert mistakes.view.selected == chosen
            assert mistakes.gallery.count() == event.confusion[chosen[0]][chosen[1]]
            assert mistakes.cell is None or mistakes.cell.epoch == event.epoch
        else:
            mistakes.on_event(event)
        if isinstance(event, RunStarted):
            assert mistakes.confusion is None
        if isinstance(event, EpochEnd):
            assert mistakes.confusion.epoch == event.epoch
            assert mistakes.view.counts == event.confusion and sum(map(sum, mistakes.view.counts)) == VAL_SIZE
            assert f"epoch {event.epoch}" in mistakes.summary.text()
            if chosen is None:
                count, *chosen = _largest_mistake(event.confusion)
                chosen = tuple(chosen)
                _click(qtbot, mistakes, *chosen)
                assert mistakes.cell.epoch == 1 and mistakes.gallery.count() == count


def test_the_mistakes_tab_follows_training_and_shows_the_run_picked_in_the_runs_tab(qtbot, make_window, trained_run):
    window = make_window(runs_root=trained_run.parent)
    window.runs.refresh()
    assert window.runs.select_runs([str(trained_run)])
    window.tabs.setCurrentWidget(window.mistakes)
    qtbot.waitUntil(lambda: window.mistakes.confusion is not None, timeout=30000)
    assert window.mistakes.confusion.run_dir == str(trained_run) and window.mistakes.confusion.epoch == 3

    window.form.set_config(tiny_config())
    with qtbot.waitSignal(window.runner.stopped_running, timeout=120000):
        window.start()
    shown = window.mistakes.confusion
    assert shown.run_dir != str(trained_run) and shown.epoch == 2
    assert sum(map(sum, shown.counts)) == VAL_SIZE

    # Looking at another tab and back keeps the run just trained on show, though the Runs tab still
    # has the older run selected; picking a run there again shows that run.
    window.tabs.setCurrentWidget(window.training)
    window.tabs.setCurrentWidget(window.mistakes)
    qtbot.wait(200)
    qtbot.waitUntil(lambda: not window.mistakes.working, timeout=30000)
    assert window.mistakes.confusion.run_dir == shown.run_dir
    window.tabs.setCurrentWidget(window.runs)
    assert window.runs.select_runs([shown.run_dir]) and window.runs.select_runs([str(trained_run)])
    window.tabs.setCurrentWidget(window.mistakes)
    qtbot.waitUntil(lambda: window.mistakes.confusion.run_dir == str(trained_run), timeout=30000)


def test_picking_the_run_already_on_show_brings_its_summary_back(qtbot, mistakes, trained_run):
    # The run trained last is on show; picking it in the Runs tab reads it again: "Reading <run>…" must
    # give way to its summary although the matrix is the same.
    _load(qtbot, mistakes, trained_run)
    shown = mistakes.summary.text()
    mistakes.load_run(str(trained_run))
    qtbot.waitUntil(lambda: not mistakes.working, timeout=30000)
    assert "Reading" not in mistakes.summary.text() and mistakes.summary.text() == shown


def test_double_clicking_a_thumbnail_enlarges_it_and_offers_where_the_model_looked(qtbot, mistakes, trained_run):
    _load(qtbot, mistakes, trained_run)
    count, t, p = _largest_mistake(mistakes.view.counts)
    _click(qtbot, mistakes, t, p)
    item = mistakes.gallery.item(0)
    rect = mistakes.gallery.visualItemRect(item)
    from PySide6.QtWidgets import QDialog, QPushButton

    qtbot.mouseClick(mistakes.gallery.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())  # as a user's
    qtbot.mouseDClick(mistakes.gallery.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())  # double-click
    (dialog,) = mistakes.findChildren(QDialog)
    picture = dialog.findChild(type(mistakes.summary), "enlarged")
    assert picture.pixmap().width() >= 300  # 8-pixel digits, shown large
    assert f"true class <b>{t}</b>" in " ".join(w.text() for w in dialog.findChildren(type(mistakes.summary)))
    (look,) = dialog.findChildren(QPushButton)
    attention = []
    mistakes.show_attention = (lambda original: lambda row: attention.append(original(row)) or attention[-1])(
        mistakes.show_attention)
    look.click()
    (view,) = attention
    qtbot.waitUntil(lambda: view.result is not None, timeout=60000)
    assert not view.result.error and view.result.maps and view.result.image.shape[:2] == (8, 8)
    assert f"image #{mistakes.cell.indices[0]}" in view.windowTitle()


@pytest.mark.slow  # trains a tiny model on a folder (a few seconds)
def test_a_folder_datasets_images_name_their_files_so_mislabelled_ones_can_be_found(qtbot, mistakes, tmp_path):
    from pathlib import Path

    from PIL import Image

    from perceiver_gui.core.events import Finished

    folder = tmp_path / "shapes"
    for name, colour in (("dark", 30), ("light", 220)):
        (folder / name).mkdir(parents=True)
        for i in range(12):
            Image.new("L", (8, 8), colour + i).save(folder / name / f"{name}-{i}.png")
    cfg = tiny_config(**{"data.dataset": "folder", "data.folder": str(folder), "train.epochs": 1,
                         "train.batch_size": 4, "model.input_channels": 1, "model.num_classes": 2})
    events = list(train(cfg, out_dir=tmp_path / "run"))
    assert isinstance(events[-1], Finished) and events[-1].status == "completed", events[-1]
    _load(qtbot, mistakes, tmp_path / "run")
    counts = mistakes.view.counts
    t, p = max(((t, p) for t in range(2) for p in range(2)), key=lambda c: counts[c[0]][c[1]])
    _click(qtbot, mistakes, t, p)
    item = mistakes.gallery.item(0)
    shown = Path(mistakes.cell.files[0])
    assert shown.is_file() and shown.parent.name == mistakes.cell.class_names[t]  # its true class's folder
    assert str(shown) in item.toolTip() and shown.name in item.text()


@pytest.mark.slow  # the session's tiny series run (a few seconds, once)
def test_a_series_runs_cells_show_each_series_as_a_line_plot_named_by_its_file_and_row(qtbot, mistakes, series_run):
    _load(qtbot, mistakes, series_run)
    assert "validation series right" in mistakes.summary.text()
    assert "image" not in mistakes.legend.text() + mistakes.counts_button.toolTip()
    cell_tip = mistakes.view.tooltip(mistakes.view.cell_rect(0, 0).center())
    assert "validation series" in cell_tip and "image" not in cell_tip, cell_tip
    counts = mistakes.view.counts
    t, p = max(((t, p) for t in range(3) for p in range(3)), key=lambda c: counts[c[0]][c[1]])
    _click(qtbot, mistakes, t, p)
    title = mistakes.gallery_title.text()
    assert mistakes.gallery.count() == counts[t][p] and "validation series" in title and "image" not in title
    item = mistakes.gallery.item(0)
    file, row = mistakes.cell.files[0].rsplit("#", 1)
    assert file.endswith("waves_TRAIN.ts") and int(row) >= 1  # validation is carved from the training file
    assert f"waves_TRAIN.ts#{row}" in item.text() and "Validation series #" in item.toolTip()
    icon = item.icon().pixmap(96, 96).toImage()
    colours = {icon.pixel(x, y) for x in range(icon.width()) for y in range(icon.height())}
    assert len(colours) > 2  # white, and the lines of its two channels
    # The plot is the series itself: the file's row, as read.
    from perceiver_gui.core.series import read_series

    series = read_series(file).values[int(row) - 1]
    shown = mistakes.cell.images[0]
    assert shown.shape[0] == 2 and (shown[:, :series.shape[1]] == series).all()
    dialog = mistakes.enlarge(0)
    picture = dialog.findChild(type(mistakes.summary), "enlarged")
    assert picture.pixmap().width() >= 300 and "Validation series #" in dialog.windowTitle()
    dialog.close()


@pytest.mark.slow
def test_a_series_in_a_cell_shows_where_the_runs_model_looked_over_time(qtbot, mistakes, series_run):
    _load(qtbot, mistakes, series_run)
    counts = mistakes.view.counts
    t, p = max(((t, p) for t in range(3) for p in range(3)), key=lambda c: counts[c[0]][c[1]])
    _click(qtbot, mistakes, t, p)
    view = mistakes.show_attention(0)
    qtbot.waitUntil(lambda: view.result is not None, timeout=60000)
    series = mistakes.cell.images[0]
    steps = int((~np.isnan(series).all(axis=0)).sum())
    assert not view.result.error and view.result.series.shape == (steps, 2) and view.heat.shape == (steps,)
    assert f"validation series #{mistakes.cell.indices[0]}" in view.windowTitle()
    view.close()


def test_a_live_series_runs_matrix_counts_series(qtbot, mistakes):
    mistakes.on_event(RunStarted(run_dir="r", device="cpu", device_name="CPU", parameters=10, train_size=8,
                                 test_size=2, class_names=("a", "b"), steps_per_epoch=1, total_steps=2, start_step=0,
                                 start_epoch=0, val_size=4, kind="series"))
    assert "validation series" in mistakes.gallery_title.text()
    mistakes.on_event(EpochEnd(epoch=1, step=1, train_loss=1.0, train_acc=0.5, val_loss=1.0, val_acc=0.75,
                               per_class_acc=(1.0, 0.5), confusion=((2, 0), (1, 1)), elapsed_s=1.0, is_best=True))
    assert "3 of 4 validation series right" in mistakes.summary.text()
    assert "2 validation series" in mistakes.view.tooltip(mistakes.view.cell_rect(0, 0).center())


@pytest.mark.slow  # the session's tiny sound run (a few seconds, once)
def test_a_sound_runs_cells_show_each_clips_spectrogram_named_by_its_file(qtbot, mistakes, sound_run):
    from pathlib import Path

    from PySide6.QtWidgets import QLabel

    from perceiver_gui.core.inference import Predictor
    from perceiver_gui.ui.widgets import sound_image

    _load(qtbot, mistakes, sound_run)
    assert "validation sounds right" in mistakes.summary.text()
    counts = mistakes.view.counts
    t, p = max(((t, p) for t in range(3) for p in range(3)), key=lambda c: counts[c[0]][c[1]])
    _click(qtbot, mistakes, t, p)
    title = mistakes.gallery_title.text()
    assert mistakes.gallery.count() == counts[t][p] and "validation sound" in title and "image" not in title
    item, file = mistakes.gallery.item(0), Path(mistakes.cell.files[0])
    assert file.parent.name == mistakes.cell.class_names[t] and file.suffix in (".wav", ".flac", ".ogg")
    assert file.name in item.text() and "Validation sound #" in item.toolTip() and str(file) in item.toolTip()
    # The thumbnail is that file's log-mel spectrogram as the model hears it, drawn as the classifier draws it.
    picture = Predictor.from_checkpoint(sound_run / "model.safetensors").sound_picture(file)
    assert np.allclose(mistakes.cell.images[0], picture, atol=1e-4)
    icon = item.icon().pixmap(96, 96).toImage()
    assert icon == sound_image(picture, 96).convertToFormat(icon.format())
    dialog = mistakes.enlarge(0)
    enlarged = dialog.findChild(QLabel, "enlarged").pixmap()
    assert enlarged.width() >= 300 and "Validation sound #" in dialog.windowTitle()
    colours = {enlarged.toImage().pixel(x, y) for x in range(0, 300, 3) for y in range(0, 300, 3)}
    assert len(colours) > 10  # a heat map, not a blank or a broken picture
    dialog.close()


@pytest.mark.slow
def test_a_sound_in_a_cell_shows_where_the_runs_model_looked_over_time(qtbot, mistakes, sound_run):
    _load(qtbot, mistakes, sound_run)
    counts = mistakes.view.counts
    t, p = max(((t, p) for t in range(3) for p in range(3)), key=lambda c: counts[c[0]][c[1]])
    _click(qtbot, mistakes, t, p)
    view = mistakes.show_attention(0)
    qtbot.waitUntil(lambda: view.result is not None or "d03030" in view.status.text(), timeout=60000)
    mels, frames = mistakes.cell.images[0].shape  # mel frames: the bands are the channels
    assert view.result is not None, view.status.text()
    assert view.result.sound.shape == (mels, frames) and view.heat.shape == (frames,)
    assert f"validation sound #{mistakes.cell.indices[0]}" in view.windowTitle()
    view.close()


@pytest.mark.slow  # the session's tiny points run (a few seconds, once)
def test_a_points_runs_cells_show_each_clouds_projection_named_by_its_file(qtbot, mistakes, points_run):
    from pathlib import Path

    from PySide6.QtWidgets import QLabel

    from perceiver_gui.core.inference import Predictor
    from perceiver_gui.ui.widgets import points_image

    _load(qtbot, mistakes, points_run)
    assert "validation point clouds right" in mistakes.summary.text()
    counts = mistakes.view.counts
    t, p = max(((t, p) for t in range(3) for p in range(3)), key=lambda c: counts[c[0]][c[1]])
    _click(qtbot, mistakes, t, p)
    title = mistakes.gallery_title.text()
    assert mistakes.gallery.count() == counts[t][p] and "validation point cloud" in title and "image" not in title
    item, file = mistakes.gallery.item(0), Path(mistakes.cell.files[0])
    assert file.parent.name == mistakes.cell.class_names[t] and file.suffix in (".ply", ".off", ".obj", ".xyz")
    assert file.name in item.text() and "Validation point cloud #" in item.toolTip() and str(file) in item.toolTip()
    # The thumbnail is that file's cloud as the model reads it, drawn as the classifier draws it.
    cloud = Predictor.from_checkpoint(points_run / "model.safetensors").read_cloud(file)
    assert np.array_equal(mistakes.cell.images[0].T, cloud)
    icon = item.icon().pixmap(96, 96).toImage()
    assert icon == points_image(cloud, 96).convertToFormat(icon.format())
    dialog = mistakes.enlarge(0)
    enlarged = dialog.findChild(QLabel, "enlarged").pixmap()
    assert enlarged.width() >= 300 and "Validation point cloud #" in dialog.windowTitle()
    image = enlarged.toImage()
    inked = sum(image.pixel(x, y) != 0xFFFFFFFF for x in range(0, 300, 3) for y in range(0, 300, 3))
    assert inked > 100  # a scatter of the cloud, not a blank or a broken picture
    dialog.close()


@pytest.mark.slow
def test_a_cloud_in_a_cell_shows_where_the_runs_model_looked_over_its_points(qtbot, mistakes, points_run):
    _load(qtbot, mistakes, points_run)
    counts = mistakes.view.counts
    t, p = max(((t, p) for t in range(3) for p in range(3)), key=lambda c: counts[c[0]][c[1]])
    _click(qtbot, mistakes, t, p)
    view = mistakes.show_attention(0)
    qtbot.waitUntil(lambda: view.result is not None or "d03030" in view.status.text(), timeout=60000)
    assert view.result is not None, view.status.text()
    assert np.array_equal(view.result.points, mistakes.cell.images[0].T) and view.heat.shape == (128,)
    assert f"validation point cloud #{mistakes.cell.indices[0]}" in view.windowTitle()
    view.close()


def _epoch(epoch, *, is_best):
    return EpochEnd(epoch=epoch, step=epoch, train_loss=1.0, train_acc=0.5, val_loss=1.0, val_acc=0.75,
                    per_class_acc=(1.0, 0.5), confusion=((2, 0), (1, 1)), elapsed_s=1.0, is_best=is_best)


def test_a_live_matrix_names_the_earlier_epoch_the_saved_model_is_from(qtbot, mistakes):
    """The matrix follows the latest epoch, but the model saved (and classified with) is the best on
    validation: when that was an earlier epoch, the header says which one each is."""
    mistakes.on_event(RunStarted(run_dir="r", device="cpu", device_name="CPU", parameters=10, train_size=8,
                                 test_size=2, class_names=("a", "b"), steps_per_epoch=1, total_steps=3, start_step=0,
                                 start_epoch=0, val_size=4))
    mistakes.on_event(_epoch(1, is_best=True))
    assert "epoch 1 (the saved model's)" in mistakes.summary.text()
    mistakes.on_event(_epoch(2, is_best=False))
    summary = mistakes.summary.text()
    assert "matrix of epoch 2, the latest" in summary and "the saved model is from epoch 1" in summary, summary


def test_a_picked_runs_matrix_names_the_earlier_epoch_the_saved_model_is_from(qtbot, mistakes, trained_run,
                                                                              tmp_path):
    import shutil

    from perceiver_gui.core import runs

    run_dir = tmp_path / "best-early"
    shutil.copytree(trained_run, run_dir)
    runs.write_run(run_dir, best_epoch=1)  # its validation accuracy peaked at epoch 1 of 3
    _load(qtbot, mistakes, run_dir)
    summary = mistakes.summary.text()
    assert "matrix of epoch 3, the latest" in summary and "the saved model is from epoch 1" in summary, summary
