"""What the window says of a run follows the kind of sample its dataset holds (datasets.KINDS): a series run's
log, speed, preview and cost readout speak of series, not images."""

from __future__ import annotations

import dataclasses

import pytest

from perceiver_gui.config import PRESETS
from perceiver_gui.core.events import RunStarted, Step


def _series_file(tmp_path):
    rows = "\n".join(",".join(str((i * j) % 5) for j in range(40)) + f":{'ab'[i % 2]}" for i in range(12))
    path = tmp_path / "s.ts"
    path.write_text(f"@classLabel true a b\n@data\n{rows}\n")
    return path


def test_the_training_panel_counts_a_series_run_in_series(qtbot):
    from PySide6.QtWidgets import QWidget

    from perceiver_gui.ui.training_panel import TrainingPanel

    panel = TrainingPanel(QWidget())
    qtbot.addWidget(panel)
    panel.set_state("running")
    panel.on_event(RunStarted(run_dir="r", device="cpu", device_name="CPU", parameters=10, train_size=8, test_size=2,
                              class_names=("a", "b"), steps_per_epoch=1, total_steps=2, start_step=0, start_epoch=0,
                              val_size=2, kind="series"))
    panel.on_event(Step(epoch=1, step=1, total_steps=2, loss=1.0, lr=0.01, images_per_s=812.0, eta_s=40.0))
    qtbot.waitUntil(lambda: "812" in panel.speed_label.text())
    assert "2 validation and 2 test series" in panel.log.toPlainText()
    assert panel.speed_label.text() == "812 series/s" and "image" not in panel.speed_label.toolTip()


def test_the_cost_readout_of_a_series_config_is_per_series(qtbot, tmp_path):
    from perceiver_gui.ui.complexity_view import ComplexityView

    view = ComplexityView()
    qtbot.addWidget(view)
    view.set_config(PRESETS["sequences"].with_updates({"data.train_file": str(_series_file(tmp_path)),
                                                       "model.input_axis": 1, "model.input_channels": 1,
                                                       "model.num_classes": 2}))
    assert "FLOPs</b> per series" in view.cost.text() and "M×N = 40×" in view.attention.text()
    assert "(M = 40 time steps)" in view.attention.text()
    assert "per series and head" in view.note.text() and "image" not in view.note.text()
    view.set_config(PRESETS["digits"])
    assert "(M = 8×8 pixels)" in view.attention.text() and "per image" in view.cost.text()


def test_the_preview_of_a_series_file_counts_series(qtbot, tmp_path):
    from perceiver_gui.ui.hyperparams import HyperparamsPanel

    form = HyperparamsPanel(PRESETS["sequences"].with_updates({"data.train_file": str(_series_file(tmp_path))}))
    qtbot.addWidget(form)
    preview = form.open_preview()
    qtbot.waitUntil(lambda: preview.worker is None, timeout=30000)
    assert "test series" in preview.header.text() and "image" not in preview.header.text(), preview.header.text()
    preview.close()


@pytest.mark.parametrize(("audio_input", "m"), [("mel_frames", "(M = 101 frames)"), ("waveform", "(M = 16,000 samples)"),
                                                ("log_mel", "(M = 40 mels × 101 frames)")])
def test_the_cost_readout_of_a_sound_config_says_what_m_is(qtbot, tmp_path, audio_input, m):
    from perceiver_gui.core.datasets import expected_input, fit_model
    from perceiver_gui.ui.complexity_view import ComplexityView

    for label in ("a", "b"):
        (tmp_path / label).mkdir()
    cfg = PRESETS["audio"].with_updates({"data.folder": str(tmp_path), "data.audio_input": audio_input})
    cfg = cfg.with_updates({f"model.{k}": v for k, v in dataclasses.asdict(
        fit_model(cfg.model, expected_input(cfg.data))).items() if k in ("input_axis", "input_channels", "num_classes")})
    view = ComplexityView()
    qtbot.addWidget(view)
    view.set_config(cfg)
    assert m in view.attention.text() and "per sound" in view.cost.text(), view.attention.text()
