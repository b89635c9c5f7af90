import json
import math

import pytest

from perceiver_gui.core import runs


def _fake_run(root, name, dataset="digits"):
    folder = runs.new_run_dir(name, root)
    (folder / runs.CONFIG_FILE).write_text(json.dumps({"data": {"dataset": dataset}, "train": {"epochs": 3}}))
    runs.write_run(folder, name=name, created=1000.0 + len(name), status="completed", best_acc=0.5, epochs_done=3)
    return folder


def test_list_rename_delete(tmp_path):
    a = _fake_run(tmp_path, "a")
    b = _fake_run(tmp_path, "bb", dataset="cifar10")
    (tmp_path / "not-a-run").mkdir()
    listed = runs.list_runs(tmp_path)
    assert [r.name for r in listed] == ["bb", "a"]  # newest first
    assert listed[0].dataset == "cifar10" and listed[0].best_acc == 0.5 and listed[0].epochs == 3
    runs.rename_run(a, "better name")
    assert {r.name for r in runs.list_runs(tmp_path)} == {"better name", "bb"}
    with pytest.raises(runs.RunError):
        runs.rename_run(a, "  ")
    runs.delete_run(b)
    assert [r.name for r in runs.list_runs(tmp_path)] == ["better name"]
    with pytest.raises(runs.RunError, match="not a run folder"):
        runs.delete_run(tmp_path / "not-a-run")
    assert (tmp_path / "not-a-run").exists()


def test_new_run_dirs_never_collide(tmp_path):
    assert runs.new_run_dir("x", tmp_path) != runs.new_run_dir("x", tmp_path)


def test_torn_metrics_line_is_skipped(tmp_path):
    (tmp_path / runs.METRICS_FILE).write_text('{"type": "step", "epoch": 1, "step": 1, "loss": 2.0}\n{"type": "st')
    metrics = runs.read_metrics(tmp_path)
    assert [(r.kind, r.step, r.loss) for r in metrics.records] == [("step", 1, 2.0)]
    assert metrics.problems == ("metrics.jsonl line 2 is not valid JSON (cut off?); it was skipped",)


def test_unknown_accuracy_is_nan(tmp_path):
    folder = _fake_run(tmp_path, "x")
    runs.write_run(folder, best_acc=math.nan)
    assert math.isnan(runs.list_runs(tmp_path)[0].best_acc)


def test_compare_configs_marks_exactly_the_settings_that_differ():
    from perceiver_gui.config import Config

    a = Config().with_updates({"train.lr": 0.01, "train.seed": 1}).to_dict()
    b = Config().with_updates({"train.lr": 0.003, "train.seed": 1}).to_dict()
    c = Config().with_updates({"train.lr": 0.01, "train.seed": 2}).to_dict()
    rows = runs.compare_configs([a, b, c])
    assert [r.key for r in rows][:3] == ["name", "model.num_freq_bands", "model.depth"]  # the config's own order
    assert len(rows) == len(runs.flatten_config(a))
    assert {r.key for r in rows if r.differs} == {"train.lr", "train.seed"}
    lr = next(r for r in rows if r.key == "train.lr")
    assert lr.values == (0.01, 0.003, 0.01)


def test_identical_configs_differ_nowhere_and_nans_count_as_equal():
    config = {"model": {"depth": 2, "max_freq": math.nan}, "train": {"lr": 0.1}}
    rows = runs.compare_configs([config, json.loads(json.dumps(config))])
    assert [r.differs for r in rows] == [False, False, False]
    # An older run wrote 10 where this version writes 10.0: the same setting.
    assert not runs.compare_configs([{"model": {"max_freq": 10}}, {"model": {"max_freq": 10.0}}])[0].differs


def test_an_unreadable_config_is_unknown_not_different_and_a_missing_setting_is_different():
    rows = runs.compare_configs([{"train": {"lr": 0.1}}, None, {"train": {"lr": 0.1, "mixup": 0.4}}])
    by_key = {r.key: r for r in rows}
    assert by_key["train.lr"].values == (0.1, None, 0.1) and not by_key["train.lr"].differs
    assert by_key["train.mixup"].values == (None, None, 0.4) and by_key["train.mixup"].differs
    assert runs.compare_configs([None, None]) == []


def test_read_config_says_what_is_wrong(tmp_path):
    with pytest.raises(runs.RunError, match="can't be read: config.json is missing"):
        runs.read_config(tmp_path)
    (tmp_path / runs.CONFIG_FILE).write_text("{not json")
    with pytest.raises(runs.RunError, match="damaged"):
        runs.read_config(tmp_path)
    (tmp_path / runs.CONFIG_FILE).write_text('{"train": {"lr": 0.1}}')
    assert runs.read_config(tmp_path).raw == {"train": {"lr": 0.1}}


def test_summary_skips_missing_and_nan_accuracies_and_keeps_the_first_best_epoch(tmp_path):
    records = [
        {"type": "step", "epoch": 1, "step": 1, "loss": 2.0},
        {"type": "epoch", "epoch": 1, "step": 1, "test_acc": None},  # JSON null: the accuracy was NaN
        {"type": "epoch", "epoch": 2, "step": 2, "test_acc": 0.8},
        {"type": "epoch", "epoch": 3, "step": 3, "test_acc": 0.8},
        {"type": "epoch", "epoch": 4, "step": 4, "test_acc": 0.7},
        {"type": "epoch", "epoch": "five", "step": 5},  # damaged: skipped
    ]
    (tmp_path / runs.METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = runs.summarize_metrics(runs.read_metrics(tmp_path).records)
    assert (summary.best_acc, summary.best_epoch, summary.epochs_done) == (0.8, 2, 4)
    empty = runs.summarize_metrics([])
    assert math.isnan(empty.best_acc) and empty.best_epoch == 0 and empty.epochs_done == 0
