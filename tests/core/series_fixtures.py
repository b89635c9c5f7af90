"""A small trained time series run, shared by the tests of what the app does with one (export, the Mistakes
gallery, the attention view): variable-length, two-channel .ts files, so the padding mask matters."""

from __future__ import annotations

from pathlib import Path

from perceiver_gui.core.training import train
from tests.core.test_series import sequences, shapes, tiny_config, write_ts


def train_series_run(folder: Path, *, epochs: int = 2) -> Path:
    """Train a tiny model on waves_TRAIN.ts (validated on a share of it), both files written into `folder`;
    returns its run folder, folder/runs/waves (alone in its runs folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    series, labels = shapes(12, 32, channels=2, vary=True, level=1.0)
    train_file = write_ts(folder / "waves_TRAIN.ts", series, labels)
    s_test, l_test = shapes(3, 32, channels=2, vary=True, seed=5, level=1.0)
    test_file = write_ts(folder / "waves_TEST.ts", s_test, l_test)
    cfg = tiny_config(folder, sequences(train_file, test_file, val_fraction=0.25), epochs=epochs)
    run_dir = folder / "runs" / "waves"
    done = list(train(cfg, out_dir=run_dir))[-1]
    assert done.status == "completed", done.message
    return run_dir
