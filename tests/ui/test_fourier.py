"""The Fourier readout under the form's Fourier fields: channels, the Nyquist note, and the live plot."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from perceiver_gui.config import PRESETS
from perceiver_gui.core.model import fourier_features
from perceiver_gui.ui.hyperparams import HyperparamsPanel


@pytest.fixture
def form(qtbot):
    panel = HyperparamsPanel(PRESETS["digits"])  # 8×8 grey digits, 4 bands, max frequency 4
    qtbot.addWidget(panel)
    panel.resize(390, 900)
    panel.show()
    return panel


def _choose(combo, value) -> None:
    combo.setCurrentIndex(combo.findData(value))


def test_the_form_says_how_many_channels_the_encoding_adds(form):
    view = form.fourier
    assert "2 × (2 × 4 + 1) = <b>18</b>" in view.channels.text()
    form.field("model.num_freq_bands").setValue(6)
    assert "= <b>26</b>" in view.channels.text()
    assert form.config().model.num_freq_bands == 6
    assert view.note.isVisible() and "⚠" not in view.note.text()


def test_the_note_flags_a_max_frequency_above_nyquist_or_far_below(form):
    view = form.fourier
    form.field("model.max_freq").setValue(12)  # top band 6 over 8 pixels: the limit is 3.5 (max frequency 7)
    assert view.note.text().startswith("⚠") and "above the Nyquist limit of 8 pixels (7)" in view.note.text()
    assert "#d03030" in view.note.styleSheet()
    # The same setting suits 32×32 images: the note follows the dataset.
    _choose(form.field("data.dataset"), "cifar10")
    assert "⚠" not in view.note.text() and "repeats every" in view.note.text()
    # A folder of 224-pixel images makes it far too low: coarse positions only.
    _choose(form.field("data.dataset"), "folder")
    form.field("data.image_size").setValue(224)
    assert "far below the Nyquist limit of 224 pixels (223)" in view.note.text()
    assert "coarsely" in view.note.text() and "#d03030" not in view.note.styleSheet()
    form.field("data.image_size").setValue(16)
    assert "⚠" not in view.note.text()
    assert "Nyquist" in view.note.toolTip() and "(N − 1) / 2" in view.note.toolTip()


def test_switching_the_encoding_off_hides_its_readout(form):
    view = form.fourier
    view.toggle.setChecked(True)
    assert view.plot.isVisible()
    form.field("model.fourier_encode_data").setChecked(False)
    assert not view.isEnabled() and not view.plot.isVisible() and not view.note.isVisible()
    assert "no position channels" in view.channels.text()
    assert not form.field("model.num_freq_bands").isEnabled()
    form.field("model.fourier_encode_data").setChecked(True)
    assert view.isEnabled() and view.plot.isVisible() and "18" in view.channels.text()


def _shown_curves(view, dots: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """The lines drawn (or, with `dots`, the dots at the pixels) as (x, y)."""
    return [(np.asarray(c.xData), np.asarray(c.yData)) for c in view.plot.getPlotItem().listDataItems()
            if c.xData is not None and len(c.xData) and (c.opts["pen"] is None) == dots]


def _matches_the_model(curves, size: int, bands: int, max_freq: float, columns: range) -> bool:
    """Each of these model features along an axis of `size` positions is one of the curves."""
    enc = fourier_features((size, size), max_freq, bands, "cpu", torch.float64)
    along = enc.reshape(size, size, 2, 2 * bands + 1)[:, 0, 0, :].numpy()  # down the first axis
    for x, _ in curves:
        np.testing.assert_allclose(x, np.linspace(-1, 1, size))
    shown = np.stack([y for _, y in curves], axis=1)
    return all(np.abs(shown - along[:, [j]]).max(axis=0).min() < 1e-9 for j in columns)


def test_the_plot_shows_the_models_own_encoding_and_follows_the_settings(form):
    view = form.fourier
    assert view.plot is None  # nothing drawn until asked for
    view.toggle.setChecked(True)
    assert view.plot.isVisible() and view.plot.height() <= 130 and view.caption.isVisible()

    def check(side: int, bands: int, max_freq: float) -> None:
        curves = _shown_curves(view)
        assert len(curves) == 2 * bands + 1  # a sine and a cosine per band, and the coordinate
        points = len(curves[0][0])
        assert points >= 200  # smooth, not straight lines between the pixels
        # The model's own encoding, evaluated along the curves' positions.
        assert _matches_the_model(curves, points, bands, max_freq, range(2 * bands + 1))
        dots = _shown_curves(view, dots=True)
        if side <= 16:  # the sines' values at the pixels, which is what the model gets
            assert len(dots) == bands and _matches_the_model(dots, side, bands, max_freq, range(bands))
        else:
            assert dots == []

    check(8, 4, 4.0)
    form.field("model.num_freq_bands").setValue(7)
    check(8, 7, 4.0)
    form.field("model.max_freq").setValue(6.5)
    check(8, 7, 6.5)
    form.field("model.num_freq_bands").setValue(2)  # fewer bands: the extra curves go
    check(8, 2, 6.5)
    _choose(form.field("data.dataset"), "mnist")
    check(28, 2, 6.5)
    assert "28 pixels" in view.caption.text()
    form.field("model.num_freq_bands").setValue(6)
    form.field("model.max_freq").setValue(40)
    form.grab().save("/tmp/fourier_form.png")


def test_the_plots_lines_keep_their_width_on_a_2x_screen(form, monkeypatch):
    view = form.fourier
    monkeypatch.setattr(view, "devicePixelRatioF", lambda: 2.0, raising=False)  # as on a screen at 2× scaling
    view.toggle.setChecked(True)
    widths = {curve.opts["pen"].widthF() for curve, _ in _curves_with_pens(view)}
    assert widths == {2.0, 3.0}  # device pixels: twice the coordinate's 1 px and the bands' 1.5 px at 1×


def _curves_with_pens(view):
    return [(c, c.opts["pen"]) for c in view.plot.getPlotItem().listDataItems()
            if c.opts["pen"] is not None and len(c.getData()[0] if c.getData()[0] is not None else ())]


def test_building_the_form_does_not_import_pyqtgraph():
    """Launch time: the plot's library loads when the plot is first shown, not with the form."""
    code = (
        "import sys\n"
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "from perceiver_gui.ui.hyperparams import HyperparamsPanel\n"
        "form = HyperparamsPanel()\n"
        "form.field('model.max_freq').setValue(30)\n"
        "print('pyqtgraph' in sys.modules, '⚠' in form.fourier.note.text())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]


def test_a_series_readout_speaks_of_time_steps_and_plots_the_time_axis(form, tmp_path):
    rows = "\n".join(",".join(str((i * j) % 5) for j in range(50)) + f":{'ab'[i % 2]}" for i in range(6))
    (tmp_path / "s.ts").write_text(f"@classLabel true a b\n@data\n{rows}\n")
    _choose(form.field("data.dataset"), "sequences")
    form.field("data.train_file").setText(str(tmp_path / "s.ts"))
    view = form.fourier
    form.field("model.max_freq").setValue(80)  # above the limit of 50 steps (49)
    assert "1 × (2 × " in view.channels.text() and "to each time step" in view.channels.text()
    assert "Nyquist limit of 50 time steps (49)" in view.note.text() and "step" in view.note.toolTip()
    assert "time axis" in view.toggle.toolTip()
    view.toggle.setChecked(True)
    assert "Along the time axis of 50 time steps" in view.caption.text()
    for label in (view.channels, view.note, view.caption):
        assert "pixel" not in label.text() + label.toolTip(), label.text()
