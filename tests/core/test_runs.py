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
    (tmp_path / runs.METRICS_FILE).write_text('{"type": "step", "step": 1}\n{"type": "st')
    assert runs.read_metrics(tmp_path) == [{"type": "step", "step": 1}]


def test_unknown_accuracy_is_nan(tmp_path):
    folder = _fake_run(tmp_path, "x")
    runs.write_run(folder, best_acc=math.nan)
    assert math.isnan(runs.list_runs(tmp_path)[0].best_acc)
