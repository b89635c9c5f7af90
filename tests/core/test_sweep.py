"""Sweeps: a sweep.toml read to one sentence per mistake, trials that are ordinary run folders, pruning,
a sweep killed mid-trial and continued, and two processes sharing one journal."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from perceiver_gui.cli import main
from perceiver_gui.config import save_config
from perceiver_gui.core import runs, sweep
from tests.core.train_fixtures import tiny_digits

METRIC = "val_acc"


def write_sweep(tmp_path, search: str, settings: str = "", *, epochs: int = 2, threads: int = 1,
                name: str = "sweep.toml", **updates):
    """A sweep file over the tiny digits config (saved beside it as base.toml)."""
    save_config(tiny_digits(**{"train.epochs": epochs, "train.threads": threads, **updates}), tmp_path / "base.toml")
    path = tmp_path / name
    path.write_text(f'base_config = "base.toml"\n\n[search]\n{search}\n\n[sweep]\nmetric = "{METRIC}"\n{settings}\n',
                    encoding="utf-8")
    return path


def states(folder):
    spec, storage = sweep.read_sweep(folder)
    return sweep.trial_rows(sweep.open_study(folder, spec, storage), spec)


def cli(*argv):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "perceiver_gui", "sweep", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


# -- the sweep file ------------------------------------------------------------------------------
GOOD_SEARCH = 'train.lr = {low = 1e-4, high = 1e-1, log = true}\nmodel.num_latents = [4, 8]'


def test_a_good_sweep_file_resolves_base_set_search_and_settings(tmp_path):
    path = write_sweep(tmp_path, GOOD_SEARCH, 'trials = 7\nsampler = "random"\npruner = "none"\nseed = 5')
    path.write_text(path.read_text() + '\n[set]\ntrain.weight_decay = 0.01\n"model.depth" = 2\n')
    spec = sweep.load_sweep(path)
    assert spec.base.train.weight_decay == 0.01 and spec.base.model.depth == 2
    assert spec.base.model.latent_dim == 16  # from base.toml
    assert dict(spec.search) == {"train.lr": sweep.Range(1e-4, 1e-1, True),
                                 "model.num_latents": sweep.Choices((4, 8))}
    assert (spec.trials, spec.sampler, spec.pruner, spec.metric, spec.direction, spec.seed) == \
        (7, "random", "none", METRIC, "maximize", 5)


def test_an_int_field_range_draws_whole_numbers_and_loss_minimises(tmp_path):
    spec = sweep.parse_sweep({"base": "digits", "search": {"model": {"depth": {"low": 1, "high": 3}}},
                              "sweep": {"metric": "val_loss"}})
    assert spec.search == (("model.depth", sweep.Range(1, 3, False, integer=True)),)
    assert spec.direction == "minimize"


BAD = [
    ('bogus = 1\n[search]\ntrain.lr = [0.1]', "unknown key 'bogus'"),
    ('base = "digits"\n[search]\ntrain.lrr = [0.1]', "unknown field 'train.lrr'"),
    ('base = "digits"\n[search]\ntrain.lr = {low = 0.1, high = 0.01}', "low (0.1) must be below high (0.01)"),
    ('base = "digits"\n[search]\ntrain.lr = {low = 0.0, high = 0.1, log = true}', "log-scale range needs low above 0"),
    ('base = "digits"\n[search]\ntrain.lr = {low = 0.001, high = 20.0}', "the high 20.0 is out of range"),
    ('base = "digits"\n[search]\ntrain.optimizer = {low = 1, high = 2}', "takes a list of choices, not a range"),
    ('base = "digits"\n[search]\nmodel.depth = {low = 1, high = 2.5}', "whole number, so high must be one too"),
    ('base = "digits"\n[search]\ntrain.lr = {low = 0.001, high = 0.1, step = 2}', "unknown key 'step'"),
    ('base = "digits"\n[search]\ntrain.lr = [0.1]\n[sweep]\ntrials = "ten"', "trials must be a whole number"),
    ('base = "digits"\n[search]\ntrain.lr = [0.1]\n[sweep]\nmetric = "test_acc"', "never a sweep's objective"),
    ('base = "digits"\n[search]\ntrain.lr = [0.1]\n[sweep]\nbudget = 3', "unknown key 'budget' in [sweep]"),
    ('base = "digits"\n[search]\ntrain.lr = {low = 0.001, high = 0.1}\n[sweep]\nsampler = "grid"\nmetric = "train_loss"',
     "grid sampler needs a list of choices"),
    ('base = "nope"\n[search]\ntrain.lr = [0.1]', "no preset 'nope'"),
    ('base = "digits"\n[set]\ntrain.lr = 0.1\n[search]\ntrain.lr = [0.1]', "both fixed in [set] and searched"),
    ('base = "digits"\n[set]\ntrain.batch_size = 0\n[search]\ntrain.lr = [0.1]', "train.batch_size must be between"),
    ('base = "digits"', "[search] is empty"),
    ('base = "digits"\n[search]\ntrain.lr = [0.1', "not valid TOML"),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_a_bad_sweep_file_is_refused_with_one_sentence_and_exit_2(tmp_path, capsys, text, expected):
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    assert main(["sweep", "--config", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert expected in err, err
    assert not (tmp_path / "out").exists()


def test_status_of_a_folder_that_is_no_sweep_says_how_to_start_one(tmp_path, capsys):
    assert main(["sweep", "--status", str(tmp_path)]) == 2
    assert "is not a sweep folder" in capsys.readouterr().err


def test_a_folder_holding_another_sweep_is_not_continued_with_a_different_one(tmp_path):
    first = sweep.load_sweep(write_sweep(tmp_path, GOOD_SEARCH))
    folder = sweep.create_sweep(first, tmp_path / "out")
    other = sweep.load_sweep(write_sweep(tmp_path, "train.lr = [0.01, 0.02]", name="other.toml"))
    with pytest.raises(sweep.SweepError, match="holds a different sweep"):
        sweep.create_sweep(other, folder)
    assert sweep.create_sweep(first, folder, trials=9) == folder  # more trials of the same sweep: fine
    assert sweep.read_sweep(folder)[0].trials == 9


def test_a_grid_sweep_finishes_at_the_size_of_its_grid(tmp_path):
    spec = sweep.parse_sweep({"base": "digits", "search": {"train.lr": [0.01, 0.02], "model.depth": [1, 2, 3]},
                              "sweep": {"sampler": "grid", "trials": 50}})
    assert sweep.target_trials(spec) == 6


def test_cpu_workers_split_the_cores_between_them(tmp_path):
    spec = sweep.load_sweep(write_sweep(tmp_path, GOOD_SEARCH))
    spec = dataclasses.replace(spec, base=spec.base.with_updates({"train.threads": 8, "train.device": "cpu"}))
    assert sweep.worker_plan(spec, 1) == [{}]
    assert sweep.worker_plan(spec, 3) == [{"train.threads": 2}] * 3


def test_gpu_workers_get_a_gpu_each(tmp_path, monkeypatch):
    spec = sweep.load_sweep(write_sweep(tmp_path, GOOD_SEARCH))
    spec = dataclasses.replace(spec, base=spec.base.with_updates({"train.device": "auto"}))
    monkeypatch.setattr(sweep, "_gpu_count", lambda: 2)
    assert sweep.worker_plan(spec, 3) == [{"train.device": "cuda:0"}, {"train.device": "cuda:1"},
                                          {"train.device": "cuda:0"}]


# -- running trials ------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_four_trial_sweep_prunes_and_every_trial_is_a_readable_run(tmp_path, capsys):
    # A learning rate of 1e-6 stays at chance while 0.01 leaves it in the first epoch (at batch size 16), so
    # once a good trial has finished the median pruner stops the bad ones after their first epoch.
    path = write_sweep(tmp_path, "train.lr = [0.01, 0.000001]", 'trials = 4\nsampler = "random"\nseed = 1',
                       **{"train.batch_size": 16})
    assert main(["sweep", "--config", str(path), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    rows = states(tmp_path / "out")
    assert [r.number for r in rows] == [0, 1, 2, 3]
    assert {r.state for r in rows} == {"complete", "pruned"}, out
    for r in rows:
        record = runs.read_run(r.run_dir)
        metrics = runs.read_metrics(r.run_dir)
        assert not record.problems and metrics.epochs
        assert r.epoch == len(metrics.epochs)
        config = runs.read_config(r.run_dir).config
        assert config.train.lr == dict(r.params)["train.lr"]
        if r.state == "pruned":
            assert record.status == "stopped" and len(metrics.epochs) == 1
            assert config.train.lr == 0.000001
        else:
            assert record.status == "completed" and len(metrics.epochs) == 2
            assert r.value == pytest.approx(max(getattr(e, METRIC) for e in metrics.epochs))
    best = max((r for r in rows if r.state == "complete"), key=lambda r: r.value)
    assert best.is_best and sum(r.is_best for r in rows) == 1
    assert "Done: 4 of 4 trials finished" in out

    # --status: a line per trial, and the best one with its run folder.
    assert main(["sweep", "--status", str(tmp_path / "out")]) == 0
    status = capsys.readouterr().out
    assert status.count("pruned") == sum(r.state == "pruned" for r in rows)
    assert f"Best: trial {best.number}, {METRIC}" in status and best.run_dir in status

    # Running it again has nothing left to do: no new trial.
    assert main(["sweep", "--out", str(tmp_path / "out")]) == 0
    assert len(states(tmp_path / "out")) == 4


@pytest.mark.slow
def test_a_sweep_killed_mid_trial_continues_without_losing_or_repeating_trials(tmp_path):
    path = write_sweep(tmp_path, GOOD_SEARCH, 'trials = 3\npruner = "none"', epochs=3)
    folder = tmp_path / "out"
    proc = cli("--config", str(path), "--out", str(folder))
    try:
        lines = []
        for line in proc.stdout:  # kill it inside trial 1, once that run has trained a little
            lines.append(line)
            if line.startswith("trial 1: epoch 1/"):
                break
        else:
            raise AssertionError("".join(lines))
        killed = folder / sweep.TRIALS_DIR / "0001"
        deadline = time.monotonic() + 30
        while not (killed / runs.RESUME_FILE).is_file() and time.monotonic() < deadline:
            time.sleep(0.02)  # its first epoch's save is under way
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert [r.state for r in states(folder)] == ["complete", "interrupted"]  # its run's lock is free

    assert main(["sweep", "--out", str(folder)]) == 0
    rows = states(folder)
    assert [(r.number, r.state) for r in rows] == [(0, "complete"), (1, "interrupted"), (2, "complete"),
                                                   (3, "complete")]
    assert len({r.run_dir for r in rows}) == 4
    # The killed trial's run folder stays as it was: readable, listed as interrupted, resumable.
    assert runs.read_run(killed).status == "running" and not runs.lock_holder(killed)
    assert len(runs.read_metrics(killed).epochs) >= 1
    assert (killed / runs.RESUME_FILE).is_file()


@pytest.mark.slow
def test_two_sweep_processes_share_one_journal_without_losing_or_repeating_trials(tmp_path):
    path = write_sweep(tmp_path, GOOD_SEARCH, 'trials = 5\npruner = "none"', epochs=1)
    folder = sweep.create_sweep(sweep.load_sweep(path), tmp_path / "out")
    procs = [cli("--out", str(folder)) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    rows = states(folder)
    assert [r.number for r in rows] == list(range(len(rows)))
    assert [r.state for r in rows] == ["complete"] * 5, outputs
    assert len({r.run_dir for r in rows}) == 5
    assert all(runs.read_run(r.run_dir).status == "completed" for r in rows)
    started = [line for out in outputs for line in out.splitlines() if ": train.lr=" in line]
    assert len(started) == 5 and all(o.count(": train.lr=") >= 1 for o in outputs)  # both did work
    journal = folder / sweep.JOURNAL_FILE
    assert all(json.loads(line) for line in journal.read_text().splitlines())


@pytest.mark.slow
def test_workers_run_trials_in_their_own_processes_with_a_share_of_the_cores(tmp_path):
    path = write_sweep(tmp_path, GOOD_SEARCH, 'trials = 2\npruner = "none"', epochs=1, threads=2)
    # Through main.py, which the spawned workers import again (they must not run the command a second time).
    main_py = Path(__file__).resolve().parents[2] / "main.py"
    done = subprocess.run([sys.executable, str(main_py), "sweep", "--config", str(path), "--out", str(tmp_path / "out"),
                           "--workers", "2"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = states(tmp_path / "out")
    assert [r.state for r in rows] == ["complete", "complete"]
    trainers = set()
    for r in rows:
        assert runs.read_config(r.run_dir).config.train.threads == 1  # two workers share base.toml's 2 threads
        trainers.add((Path(r.run_dir) / runs.LOCK_FILE).read_text().split()[0])  # the pid that held the lock
    assert len(trainers) == 2
    assert "Done: 2 of 2 trials finished" in done.stdout and done.stdout.count("[worker ") >= 4


def test_the_study_is_a_journal_in_the_sweep_folder(tmp_path):
    folder = sweep.create_sweep(sweep.load_sweep(write_sweep(tmp_path, GOOD_SEARCH)), tmp_path / "out")
    study = sweep.open_study(folder)
    assert isinstance(study._storage, optuna.storages.JournalStorage)
    assert (folder / sweep.JOURNAL_FILE).exists()


def test_storage_url_is_remembered_for_continuing_and_status(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'study.db'}"  # any RDB URL Optuna takes; PostgreSQL/MySQL need a server
    folder = sweep.create_sweep(sweep.load_sweep(write_sweep(tmp_path, GOOD_SEARCH)), tmp_path / "out", storage=url)
    assert isinstance(sweep.open_study(folder)._storage, optuna.storages.RDBStorage | optuna.storages._CachedStorage)
    assert not (folder / sweep.JOURNAL_FILE).exists()
    assert main(["sweep", "--status", str(folder)]) == 0
    assert "No trial has completed yet." in capsys.readouterr().out
