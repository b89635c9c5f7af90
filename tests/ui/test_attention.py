from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from perceiver_gui.ui.attention_view import AttentionDialog
from tests.ui.helpers import digit_images, drop_files, load_model, tiny_config

pytestmark = pytest.mark.slow  # trains a tiny two-layer model once (~2 s)


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
    # The latents in the grid are the most concentrated ones, most concentrated first.
    peaks = dialog.latent_maps.reshape(8, -1).max(axis=1)
    assert peaks[0] >= np.median(dialog.result.maps[1][2].reshape(8, -1).max(axis=1))

    dialog.grab().save("/tmp/attention.png")


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
