"""The validation split chooses; the test split is only reported, once, for the model chosen (issue #13, 1)."""

import json
import math

import torch

from perceiver_gui.config import DataConfig
from perceiver_gui.core import checkpoints, data, evaluation, runs, training
from perceiver_gui.core.events import CheckpointSaved, EpochEnd, Finished, RunStarted, Step
from perceiver_gui.core.training import RunControl, resume, train
from tests.core.train_fixtures import tiny_digits


class _Scripted:
    """Stands in for training.evaluate: the real numbers, but the accuracy of each epoch on validation and
    of each pass on test is scripted, so validation and test disagree about which epoch is best. Records
    which split each call saw and the weights the model had then."""

    def __init__(self, val_accs, test_accs, val_losses=None):
        self.real = training.evaluate
        self.val_accs, self.test_accs = list(val_accs), list(test_accs)
        self.val_losses = list(val_losses) if val_losses else None
        self.calls = []  # ("validation" | "test", weights)

    def __call__(self, s, x, y, batch_size):
        result = self.real(s, x, y, batch_size)
        split = "test" if x.data_ptr() == s.test_x.data_ptr() else "validation"
        assert split == "test" or x.data_ptr() == s.val_x.data_ptr()
        script = self.test_accs if split == "test" else self.val_accs
        weights = {k: v.detach().clone() for k, v in s.model.state_dict().items()}
        self.calls.append((split, weights))
        n = sum(c[0] == split for c in self.calls)
        acc = script[n - 1] if n <= len(script) else script[-1]
        loss = self.val_losses[n - 1] if split == "validation" and self.val_losses else result.loss
        return training._Evaluated(loss=loss, acc=acc, per_class=result.per_class, confusion=result.confusion,
                                   predictions=result.predictions, batch_size=result.batch_size)


def test_the_saved_model_is_the_best_on_validation_and_test_is_evaluated_once_for_it(tmp_path, monkeypatch):
    # Validation says epoch 2 is best; test (had it been asked each epoch) would say epoch 1.
    scripted = _Scripted(val_accs=[0.3, 0.8, 0.5], test_accs=[0.9, 0.2, 0.1])
    monkeypatch.setattr(training, "evaluate", scripted)
    out = tmp_path / "run"
    events = list(train(tiny_digits(**{"train.epochs": 3}), out_dir=out))
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.status == "completed", finished.message

    splits = [split for split, _ in scripted.calls]
    assert splits == ["validation"] * 3 + ["test"]  # test once, after the last epoch
    epoch2 = scripted.calls[1][1]
    tested = scripted.calls[3][1]
    assert all(torch.equal(tested[k], epoch2[k]) for k in epoch2)  # test scored the chosen (epoch 2) model

    epochs = [e for e in events if isinstance(e, EpochEnd)]
    assert [e.val_acc for e in epochs] == [0.3, 0.8, 0.5] and [e.is_best for e in epochs] == [True, True, False]
    assert [e.epoch for e in events if isinstance(e, CheckpointSaved)] == [1, 2]
    saved, meta = checkpoints.load_model(out / runs.MODEL_FILE)
    assert all(torch.equal(saved[k], epoch2[k].cpu()) for k in epoch2)
    assert meta.summary["best_epoch"] == 2 and meta.summary["best_val_acc"] == 0.8
    assert meta.summary["test_acc"] == 0.9 and meta.summary["selected_on"] == "validation"

    assert (finished.best_epoch, finished.best_val_acc, finished.test_acc) == (2, 0.8, 0.9)
    assert "validation accuracy 80.0% (epoch 2)" in finished.message and "test accuracy 90.0%" in finished.message
    record = runs.read_run(out)
    assert (record.best_epoch, record.best_acc, record.selected_on, record.test_acc) == (2, 0.8, "validation", 0.9)
    metrics = runs.read_metrics(out)
    assert [(r.epoch, r.test_acc) for r in metrics.records if isinstance(r, runs.TestRecord)] == [(2, 0.9)]
    assert all(r.held_out == "validation" and math.isnan(r.test_acc) for r in metrics.epochs)
    lines = [json.loads(line) for line in (out / runs.METRICS_FILE).read_text().splitlines()]
    assert all("test_acc" not in line and "val_acc" in line for line in lines if line["type"] == "epoch")
    listed = runs.list_runs(tmp_path)[0]
    assert (listed.best_acc, listed.selected_on, listed.test_acc) == (0.8, "validation", 0.9)
    assert evaluation.read_evaluation(out).split == "validation"  # the Mistakes tab's matrix is validation's


def test_the_validation_split_is_stratified_disjoint_repeatable_and_its_own_seed(tmp_path):
    full = data.load_dataset(DataConfig(dataset="digits", val_fraction=0.0))
    ds = data.load_dataset(DataConfig(dataset="digits"))  # 0.1 by default
    assert (ds.info.train_size, ds.info.val_size, ds.info.test_size) == (808, 90, 899)
    assert torch.equal(ds.test_x, full.test_x)  # the test split is untouched
    per_class = torch.bincount(full.train_y, minlength=10)
    assert torch.bincount(ds.val_y, minlength=10).tolist() == [round(0.1 * n) for n in per_class.tolist()]
    # Train and validation partition the original training split: every image lands in exactly one.
    train_idx, val_idx = data.split_validation(full.train_y, 0.1, 10, 0)
    assert sorted(train_idx.tolist() + val_idx.tolist()) == list(range(898))
    assert torch.equal(ds.val_x, full.train_x[val_idx]) and torch.equal(ds.train_x, full.train_x[train_idx])
    again = data.load_dataset(DataConfig(dataset="digits"))
    assert torch.equal(again.val_x, ds.val_x) and torch.equal(again.val_y, ds.val_y)
    other = data.load_dataset(DataConfig(dataset="digits", split_seed=1))
    assert not torch.equal(other.val_y, ds.val_y) or not torch.equal(other.val_x, ds.val_x)
    assert torch.bincount(other.val_y, minlength=10).tolist() == torch.bincount(ds.val_y, minlength=10).tolist()


def test_runs_with_other_training_seeds_validate_on_the_same_images(tmp_path):
    digests = []
    for seed in (0, 1):
        list(train(tiny_digits(**{"train.epochs": 1, "train.seed": seed}), out_dir=tmp_path / str(seed)))
        digests.append(evaluation.read_evaluation(tmp_path / str(seed)).test_digest)
    assert digests[0] == digests[1]


def test_a_resumed_run_validates_on_the_same_split_and_reports_test_when_stopped_with_a_best_model(tmp_path):
    cfg = tiny_digits(**{"train.epochs": 3})
    control = RunControl()
    first = []
    for event in train(cfg, out_dir=tmp_path / "r", control=control):
        first.append(event)
        if isinstance(event, Step) and event.step == 30:  # mid second epoch: epoch 1 is the best so far
            control.stop()
    stopped = first[-1]
    assert stopped.status == "stopped" and stopped.best_epoch == 1 and 0 < stopped.test_acc <= 1
    assert "test accuracy" in stopped.message
    digest = evaluation.read_evaluation(tmp_path / "r").test_digest
    assert runs.read_run(tmp_path / "r").test_acc == stopped.test_acc
    second, new_best, checked = [], False, 0
    for event in resume(tmp_path / "r"):
        second.append(event)
        new_best = new_best or isinstance(event, EpochEnd) and event.is_best
        if new_best and isinstance(event, Step):  # a new model saved: the old test result is not its own
            assert math.isnan(runs.read_run(tmp_path / "r").test_acc)
            new_best, checked = False, checked + 1
    assert next(e for e in second if isinstance(e, RunStarted)).val_size == 90
    assert second[-1].status == "completed" and checked >= 1
    assert evaluation.read_evaluation(tmp_path / "r").test_digest == digest
    tests = [r for r in runs.read_metrics(tmp_path / "r").records if isinstance(r, runs.TestRecord)]
    assert len(tests) == 2 and runs.read_metrics(tmp_path / "r").test == tests[-1]  # the run's is the last one


def test_a_run_stopped_before_any_epoch_ended_reports_no_test(tmp_path):
    control = RunControl()
    events = []
    for event in train(tiny_digits(), out_dir=tmp_path / "r", control=control):
        events.append(event)
        if isinstance(event, Step) and event.step == 3:
            control.stop()
    assert events[-1].status == "stopped" and math.isnan(events[-1].test_acc)
    assert runs.read_metrics(tmp_path / "r").test is None


def test_early_stopping_ends_the_run_after_patience_epochs_without_a_better_validation(tmp_path, monkeypatch):
    scripted = _Scripted(val_accs=[0.5, 0.7, 0.6, 0.65, 0.9, 0.95], test_accs=[0.4])
    monkeypatch.setattr(training, "evaluate", scripted)
    events = list(train(tiny_digits(**{"train.epochs": 6, "train.early_stop_patience": 2}), out_dir=tmp_path / "r"))
    finished = events[-1]
    assert [e.epoch for e in events if isinstance(e, EpochEnd)] == [1, 2, 3, 4]  # 3 and 4 did not beat epoch 2
    assert finished.status == "completed" and finished.epochs_done == 4 and finished.best_epoch == 2
    assert finished.message.startswith("Stopped early after 4 epochs") and "2 epochs" in finished.message
    assert [split for split, _ in scripted.calls].count("test") == 1
    assert runs.read_run(tmp_path / "r").status == "completed"


def test_without_a_validation_split_the_last_epoch_is_kept_and_tested(tmp_path):
    events = list(train(tiny_digits(**{"data.val_fraction": 0.0}), out_dir=tmp_path / "r"))
    finished = events[-1]
    started = next(e for e in events if isinstance(e, RunStarted))
    assert (started.train_size, started.val_size) == (898, 0)
    assert all(math.isnan(e.val_acc) and not e.is_best for e in events if isinstance(e, EpochEnd))
    assert finished.status == "completed" and finished.best_epoch == 2 and 0 < finished.test_acc <= 1
    assert "no validation split" in finished.message
    _, meta = checkpoints.load_model(tmp_path / "r" / runs.MODEL_FILE)
    assert meta.summary["selected_on"] == "last epoch" and meta.summary["best_epoch"] == 2


def test_early_stopping_needs_a_validation_split():
    problems = dict(tiny_digits(**{"data.val_fraction": 0.0, "train.early_stop_patience": 3}).validate())
    assert "validation" in problems["train.early_stop_patience"]
    assert "data.val_fraction" in dict(tiny_digits(**{"data.val_fraction": 0.5}).validate())


def _old_run(folder):
    """A run folder as versions before the validation split wrote it: chosen on test, every epoch on test."""
    folder.mkdir()
    cfg = tiny_digits().to_dict()
    cfg["data"] = {k: v for k, v in cfg["data"].items() if k not in ("test_fraction", "split_seed")}
    cfg["data"]["val_fraction"] = 0.3  # then: the folder dataset's test share
    (folder / runs.CONFIG_FILE).write_text(json.dumps(cfg))
    (folder / runs.RUN_FILE).write_text(json.dumps({"name": "old", "created": 1.7e9, "status": "completed",
                                                    "epochs_done": 2, "best_acc": 0.61, "best_epoch": 2}))
    lines = [{"type": "step", "epoch": 1, "step": 1, "loss": 2.3, "lr": 0.01, "images_per_s": 100.0, "time": 0.1},
             {"type": "epoch", "epoch": 1, "step": 28, "train_loss": 2.0, "train_acc": 0.3, "test_loss": 1.9,
              "test_acc": 0.5, "per_class_acc": [0.5] * 10, "confusion": [[1] * 10] * 10, "elapsed_s": 1.0,
              "is_best": True},
             {"type": "epoch", "epoch": 2, "step": 56, "train_loss": 1.5, "train_acc": 0.5, "test_loss": 1.4,
              "test_acc": 0.61, "per_class_acc": [0.6] * 10, "confusion": [[1] * 10] * 10, "elapsed_s": 2.0,
              "is_best": True}]
    (folder / runs.METRICS_FILE).write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_an_older_versions_run_lists_and_summarises_as_chosen_on_test_and_reads_its_settings_as_they_were(tmp_path):
    _old_run(tmp_path / "old")
    listed = runs.list_runs(tmp_path)[0]
    assert (listed.best_acc, listed.selected_on, listed.damaged) == (0.61, "test", "")
    metrics = runs.read_metrics(tmp_path / "old")
    assert not metrics.problems and [r.held_out for r in metrics.epochs] == ["test", "test"]
    assert [r.held_out_acc for r in metrics.epochs] == [0.5, 0.61]
    summary = runs.summarize_metrics(metrics.records)
    assert (summary.best_acc, summary.best_epoch, summary.held_out) == (0.61, 2, "test")
    cfg = runs.read_config(tmp_path / "old").config
    assert (cfg.data.val_fraction, cfg.data.test_fraction) == (0.0, 0.3)  # no validation; its test share kept
    assert evaluation.read_confusion(tmp_path / "old").split == "test"


def test_the_cli_says_which_split_each_accuracy_is_on(tmp_path, capsys):
    import dataclasses

    from perceiver_gui.cli import main

    out = tmp_path / "run"
    assert main(["train", "--preset", "digits", "--set", "model.depth=1", "--set", "model.num_latents=8",
                 "--set", "model.latent_dim=16", "--set", "train.epochs=2", "--set", "train.batch_size=64",
                 "--set", "train.threads=1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "808 train / 90 validation / 899 test images" in printed
    assert printed.count("val loss") == 2 and "test loss" not in printed
    assert "best validation accuracy" in printed and "test accuracy" in printed.splitlines()[-2]

    assert main(["info", str(out / runs.MODEL_FILE)]) == 0
    info = capsys.readouterr().out
    record = runs.read_run(out)
    assert f"Accuracy: best validation {record.best_acc:.1%} (epoch {record.best_epoch}) · test {record.test_acc:.1%}" \
        in info
    assert main(["info", str(out)]) == 0
    assert f"accuracy: best validation {record.best_acc:.1%}" in capsys.readouterr().out

    # A model file of an older version: its one accuracy was on test, and chose the model.
    state, meta = checkpoints.load_model(out / runs.MODEL_FILE)
    old = dataclasses.replace(meta, summary={"best_acc": 0.5, "best_epoch": 3, "epochs_done": 3})
    checkpoints.save_model(tmp_path / "old.safetensors", state, old)
    assert main(["info", str(tmp_path / "old.safetensors")]) == 0
    assert "Accuracy: test 50.0% (epoch 3; selected on test, old run)" in capsys.readouterr().out


def test_a_resumed_run_whose_image_folder_changed_is_warned_that_validation_moved(tmp_path):
    from perceiver_gui.core.events import Log
    from tests.core.data_fixtures import make_image_folder

    images = make_image_folder(tmp_path / "shapes", {"cats": 12, "dogs": 10}, size=(12, 12))
    cfg = tiny_digits(**{"data.dataset": "folder", "data.folder": str(images), "data.image_size": 12,
                         "data.root": str(tmp_path / "data"), "train.epochs": 3, "train.batch_size": 4})
    control = RunControl()
    for event in train(cfg, out_dir=tmp_path / "r", control=control):
        if isinstance(event, EpochEnd):
            control.stop()
    same = [e.message for e in resume(tmp_path / "r", control=RunControl()) if isinstance(e, Log)]
    assert not any("validation images" in m for m in same)

    control = RunControl()
    for event in train(cfg, out_dir=tmp_path / "r3", control=control):
        if isinstance(event, EpochEnd):
            control.stop()
    make_image_folder(images, {"dogs": 10, "cats": 12}, size=(12, 12))  # same files, other pictures
    moved = [e.message for e in resume(tmp_path / "r3") if isinstance(e, Log) and e.level == "warning"]
    assert any("validation images of folder are not the ones this run validated on" in m for m in moved)


def test_of_two_epochs_as_accurate_on_validation_the_lower_validation_loss_wins(tmp_path, monkeypatch):
    # A small validation split saturates (the digits preset's 90 images reach 100 % by mid-run): the first
    # epoch to get there is rarely the best model, and the loss still tells them apart.
    scripted = _Scripted(val_accs=[0.5, 0.9, 0.9, 0.9], test_accs=[0.8], val_losses=[1.0, 0.8, 0.5, 0.6])
    monkeypatch.setattr(training, "evaluate", scripted)
    events = list(train(tiny_digits(**{"train.epochs": 4}), out_dir=tmp_path / "r"))
    assert [e.is_best for e in events if isinstance(e, EpochEnd)] == [True, True, True, False]
    assert events[-1].best_epoch == 3 and runs.read_run(tmp_path / "r").best_epoch == 3


def test_an_older_versions_stopped_run_resumes_on_the_images_it_trained_on(tmp_path):
    # Stopped mid-run by an older version: no validation split, and a config whose data.val_fraction was the
    # folder's test share (written here by rewriting a run stopped without validation into that format).
    control = RunControl()
    for event in train(tiny_digits(**{"data.val_fraction": 0.0, "train.epochs": 3}), out_dir=tmp_path / "r",
                       control=control):
        if isinstance(event, Step) and event.step == 40:
            control.stop()
    raw = json.loads((tmp_path / "r" / runs.CONFIG_FILE).read_text())
    for key in ("test_fraction", "split_seed"):
        del raw["data"][key]
    del raw["train"]["early_stop_patience"]
    raw["data"]["val_fraction"] = 0.2
    (tmp_path / "r" / runs.CONFIG_FILE).write_text(json.dumps(raw))
    resumed = list(resume(tmp_path / "r"))
    started = next(e for e in resumed if isinstance(e, RunStarted))
    assert (started.train_size, started.val_size, started.start_step) == (898, 0, 40)
    assert resumed[-1].status == "completed" and 0 < resumed[-1].test_acc <= 1
