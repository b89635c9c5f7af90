"""Seeds: groups of runs that differ only by seed, and their mean ± sample std, checked against numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from perceiver_gui.config import preset
from perceiver_gui.core import runs
from perceiver_gui.core.events import Finished
from perceiver_gui.core.runs import EpochRecord
from perceiver_gui.core.stats import band, group_runs, mean_std, run_curve, seed_configs, seed_summary
from perceiver_gui.core.training import train
from tests.core.train_fixtures import tiny_digits


def test_mean_std_is_numpys_mean_and_sample_std():
    values = [0.91, 0.935, 0.9, 0.948]
    got = mean_std(values)
    assert got.n == 4
    assert got.mean == pytest.approx(np.mean(values), abs=1e-12)
    assert got.std == pytest.approx(np.std(values, ddof=1), abs=1e-12)
    assert got.text() == f"{np.mean(values):.2%} ± {np.std(values, ddof=1):.2%} (n=4)"


def test_mean_std_leaves_out_a_diverged_run_and_has_no_std_for_one_value():
    got = mean_std([0.5, math.nan, 0.7, math.inf])
    assert (got.n, got.mean) == (2, pytest.approx(0.6))
    one = mean_std([0.5])
    assert one.n == 1 and math.isnan(one.std) and one.text() == "50.00% (n=1)"
    assert mean_std([]).text() == "—"


def test_band_aligns_by_epoch_and_covers_only_epochs_two_runs_reached():
    a = [(1, 0.5), (2, 0.6), (3, 0.7)]
    b = [(1, 0.4), (2, 0.8)]
    c = [(2, math.nan), (1, 0.45), (2, 0.65)]  # a NaN at epoch 2 is left out, its other value counts
    got = band([a, b, c])
    assert got.epochs == (1, 2)  # epoch 3: only run a reached it
    assert got.n == (3, 3)
    for i, values in enumerate(([0.5, 0.4, 0.45], [0.6, 0.8, 0.65])):
        assert got.mean[i] == pytest.approx(np.mean(values))
        assert got.std[i] == pytest.approx(np.std(values, ddof=1))


def test_seed_configs_count_up_from_the_forms_seed():
    cfg = preset("digits").with_updates({"train.seed": 7})
    seeds = seed_configs(cfg, 3)
    assert [c.train.seed for c in seeds] == [7, 8, 9]
    assert all(c.with_updates({"train.seed": 7}) == cfg for c in seeds)  # nothing else changes
    with pytest.raises(ValueError):
        seed_configs(cfg, 0)


def test_runs_that_differ_only_by_seed_or_name_are_one_group():
    base = preset("digits").to_dict()
    other_seed = preset("digits").with_updates({"train.seed": 3, "name": "again"}).to_dict()
    other_lr = preset("digits").with_updates({"train.lr": 0.5}).to_dict()
    older = {**base, "train": {**base["train"], "epochs": float(base["train"]["epochs"])}}  # 10.0 from an older writer
    missing = {k: v for k, v in base.items() if k != "data"}  # another version's settings: not alike
    assert group_runs([base, other_lr, other_seed, None, older, None, missing]) == [[0, 2, 4], [1], [3], [5], [6]]


def test_run_curve_takes_a_resumed_epoch_once_and_the_best_and_final_values():
    records = [EpochRecord(epoch=1, step=10, val_acc=0.5, val_loss=1.0),
               EpochRecord(epoch=2, step=20, val_acc=0.9, val_loss=0.4),
               runs.TestRecord(epoch=2, step=20, test_acc=0.85),  # stopped after epoch 2, then resumed
               EpochRecord(epoch=2, step=20, val_acc=0.8, val_loss=0.6),  # resumed: epoch 2 again
               EpochRecord(epoch=3, step=30, val_acc=0.7, val_loss=0.5),
               runs.TestRecord(epoch=2, step=30, test_acc=0.82)]
    curve = run_curve(records)
    assert curve.epochs == (1, 2, 3) and curve.acc == (0.5, 0.8, 0.7) and curve.split == "validation"
    assert (curve.final_acc, curve.best_acc, curve.final_loss, curve.best_loss) == (0.7, 0.8, 0.5, 0.5)
    assert curve.test_acc == 0.82  # the run's last test result


def test_an_older_runs_curve_is_on_test_and_says_so():
    curve = run_curve([EpochRecord(epoch=1, step=10, test_acc=0.5, test_loss=1.0)])
    assert curve.split == "test" and curve.acc == (0.5,) and math.isnan(curve.test_acc)
    assert run_curve([]).split == ""


@pytest.mark.slow
def test_two_seeds_of_a_tiny_run_give_numpys_mean_and_std(tmp_path):
    dirs = []
    for i, cfg in enumerate(seed_configs(tiny_digits(**{"train.epochs": 1, "train.batch_size": 16}), 2)):
        *_, last = train(cfg, out_dir=tmp_path / f"seed-{i}")
        assert isinstance(last, Finished) and last.status == "completed", last.message
        dirs.append(tmp_path / f"seed-{i}")
    configs = [runs.read_config(d).raw for d in dirs]
    assert group_runs(configs) == [[0, 1]] and [c["train"]["seed"] for c in configs] == [0, 1]
    curves = [run_curve(runs.read_metrics(d).records) for d in dirs]
    accs = [c.final_acc for c in curves]
    assert curves[0].final_loss != curves[1].final_loss  # the seeds made different runs
    summary = seed_summary(curves)
    assert summary["final_acc"].n == 2
    assert summary["final_acc"].mean == pytest.approx(np.mean(accs))
    assert summary["final_acc"].std == pytest.approx(np.std(accs, ddof=1))
    losses = [c.final_loss for c in curves]
    assert summary["best_loss"].mean == pytest.approx(np.mean(losses))  # one epoch: best is final
    assert all(c.split == "validation" for c in curves)
    tests = [runs.read_run(d).test_acc for d in dirs]  # the chosen models' test accuracy, as run.json has it
    assert summary["test_acc"].mean == pytest.approx(np.mean(tests))
    assert summary["test_acc"].std == pytest.approx(np.std(tests, ddof=1))


@pytest.mark.slow
def test_cli_seeds_trains_k_runs_of_one_group_and_prints_their_mean_and_std(tmp_path, capsys):
    from perceiver_gui.cli import main

    tiny = ["--set", "model.depth=1", "--set", "model.num_latents=8", "--set", "model.latent_dim=16",
            "--set", "model.latent_heads=1", "--set", "train.epochs=1", "--set", "train.batch_size=64",
            "--set", "train.threads=1", "--set", "train.seed=5"]
    assert main(["train", *tiny, "--seeds", "2", "--out", str(tmp_path / "series")]) == 0
    out = capsys.readouterr().out
    dirs = [tmp_path / "series" / "seed-5", tmp_path / "series" / "seed-6"]
    assert [runs.read_config(d).raw["train"]["seed"] for d in dirs] == [5, 6]
    assert [runs.read_run(d).status for d in dirs] == ["completed", "completed"]
    accs = [run_curve(runs.read_metrics(d).records).final_acc for d in dirs]
    expected = f"{np.mean(accs):.2%} ± {np.std(accs, ddof=1):.2%} (n=2)"
    assert "Over 2 seed(s), mean ± sample std (n-1), on the validation split:" in out
    assert f"final accuracy  {expected}" in out
    tests = [runs.read_run(d).test_acc for d in dirs]
    assert f"test accuracy of the chosen model  {np.mean(tests):.2%} ± {np.std(tests, ddof=1):.2%} (n=2)" in out


def test_cli_seeds_refuses_a_count_below_one_and_resume(tmp_path, capsys):
    from perceiver_gui.cli import main

    assert main(["train", "--seeds", "0"]) == 2
    assert "--seeds needs a count of at least 1" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path), "--seeds", "2"]) == 2
    assert "drop --seeds" in capsys.readouterr().err


def test_cli_seeds_ends_the_series_when_a_run_cannot_start(tmp_path, capsys):
    from perceiver_gui.cli import main

    code = main(["train", "--set", "data.dataset=folder", "--set", f"data.folder={tmp_path / 'none'}",
                 "--seeds", "3", "--out", str(tmp_path / "series")])
    out = capsys.readouterr().out
    assert code == 2
    assert "== Seed 0 (1 of 3) ==" in out and "Seed 1" not in out  # the other seeds would fail alike
