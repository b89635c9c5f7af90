"""What the app says and counts follows the kind of sample a dataset holds (datasets.KINDS), not images
only: the memory a series run needs, and the words of its messages."""

from __future__ import annotations

import numpy as np
import pytest

from perceiver_gui.core import complexity, datasets
from perceiver_gui.core.complexity import memory_needed
from perceiver_gui.core.events import Finished, Log, RunStarted
from perceiver_gui.core.training import train
from tests.core.test_series import sequences, shapes, tiny_config, write_ts


def test_each_kind_names_one_and_many():
    assert datasets.KINDS["image"].plural == "images" and datasets.KINDS["series"].plural == "series"
    assert datasets.kind_of("sequences").noun == "series" and datasets.kind_of("digits").noun == "image"


def test_float32_series_count_four_bytes_a_value_and_uint8_images_one(tmp_path):
    cfg = tiny_config(tmp_path, sequences("x.ts")).with_updates({"model.input_axis": 1, "model.input_channels": 1})
    assert memory_needed(cfg, (500,), dataset_samples=1000, value_bytes=4).data == 1000 * 1 * 500 * 4
    assert memory_needed(cfg, (500,), dataset_samples=1000).data == 1000 * 1 * 500


def test_a_series_dataset_too_big_for_memory_is_refused_counting_its_float32_values(tmp_path, monkeypatch):
    """The machine holds the model and the series as if they were bytes, not as the float32 they are."""
    series, labels = shapes(100, 1000, level=1.0)  # 300 series of 1,000 steps: 0.3 M values, 1.2 MB as float32
    cfg = tiny_config(tmp_path, sequences(write_ts(tmp_path / "long.ts", series, labels), val_fraction=0.2))
    fitted = cfg.with_updates({"model.input_axis": 1, "model.input_channels": 1, "model.num_classes": 3})
    as_bytes = memory_needed(fitted, (1000,), dataset_samples=300).total
    monkeypatch.setattr(complexity, "device_memory", lambda device: as_bytes + 300 * 1000)  # 1 byte a value fits
    done = list(train(cfg, out_dir=tmp_path / "run"))[-1]
    assert isinstance(done, Finished) and done.status == "failed"
    assert done.message.startswith("This model needs about ") and "this machine has" in done.message
    assert "the length of the series" in done.message and "image_size" not in done.message


@pytest.mark.slow
def test_a_series_run_speaks_of_series_not_images(tmp_path, capsys):
    from perceiver_gui.cli import _print_run

    series, labels = shapes(8, 24, level=1.0)
    cfg = tiny_config(tmp_path, sequences(write_ts(tmp_path / "w.ts", series, labels), val_fraction=0.25), epochs=1)
    events = list(train(cfg, out_dir=tmp_path / "run"))
    started = next(e for e in events if isinstance(e, RunStarted))
    assert started.kind == "series"
    said = " ".join(e.message for e in events if isinstance(e, Log | Finished))
    assert "test series" in said and "image" not in said, said
    assert _print_run(iter(events)) == 0
    printed = capsys.readouterr()
    assert "12 train / 6 validation / 6 test series" in printed.out and "image" not in printed.out + printed.err
    assert np.isfinite(events[-1].test_acc)


@pytest.mark.slow
def test_info_on_a_series_runs_evaluation_file_counts_series(tmp_path, capsys):
    from perceiver_gui.cli import main
    from tests.core.series_fixtures import train_series_run

    run_dir = train_series_run(tmp_path, epochs=1)
    capsys.readouterr()
    assert main(["info", str(run_dir / "evaluation.safetensors")]) == 0
    shown = capsys.readouterr().out
    assert " series, 3 classes" in shown and "image" not in shown, shown
