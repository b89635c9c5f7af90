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


def test_summary_breaks_an_accuracy_tie_by_the_lower_loss_as_training_saves(tmp_path):
    # A small validation split reaches the same accuracy at several epochs; the saved model is the one with
    # the lower validation loss, and every view that reads the summary (Runs, comparison) says that epoch.
    records = [
        {"type": "epoch", "epoch": 1, "step": 1, "val_acc": 0.9, "val_loss": 0.5},
        {"type": "epoch", "epoch": 2, "step": 2, "val_acc": 0.95, "val_loss": 0.4},
        {"type": "epoch", "epoch": 3, "step": 3, "val_acc": 0.95, "val_loss": 0.3},
        {"type": "epoch", "epoch": 4, "step": 4, "val_acc": 0.95, "val_loss": 0.35},
    ]
    (tmp_path / runs.METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = runs.summarize_metrics(runs.read_metrics(tmp_path).records)
    assert (summary.best_acc, summary.best_epoch) == (0.95, 3)


# -- hostile run folders ---------------------------------------------------------------------------
HOSTILE_RUN_FIELDS = [
    ("created", "yesterday"), ("epochs_done", "ten"), ("best_acc", 1e400), ("created", 1e400),
    ("best_epoch", -3), ("status", ["running"]), ("name", 42),
]


def hostile_runs(root):
    """Good runs, and beside them one run per damaged field, one with a config whose `data` is text, one
    whose run.json and config.json are not JSON, and one whose metrics.jsonl is hostile."""
    good = _fake_run(root, "good")
    for key, value in HOSTILE_RUN_FIELDS:
        folder = _fake_run(root, f"bad-{key}")
        raw = json.loads((folder / runs.RUN_FILE).read_text())
        raw[key] = value
        (folder / runs.RUN_FILE).write_text(json.dumps(raw))  # 1e400 is written as Infinity
    text_data = _fake_run(root, "text-data")
    (text_data / runs.CONFIG_FILE).write_text('{"data": "digits", "train": {"epochs": "ten"}}')
    not_json = _fake_run(root, "not-json")
    (not_json / runs.CONFIG_FILE).write_text("{")
    (not_json / runs.RUN_FILE).write_bytes(b"\xff\xfe not json")
    (root / "huge").mkdir()
    (root / "huge" / runs.CONFIG_FILE).write_text('{"train": {"epochs": 1e400}}')
    (root / "huge" / runs.RUN_FILE).write_text('{"created": 1' + "0" * 400 + ', "epochs_done": 1e400}')
    metrics = _fake_run(root, "hostile-metrics")
    (metrics / runs.METRICS_FILE).write_text(HOSTILE_METRICS)
    return good


HOSTILE_METRICS = "\n".join([
    '{"type": "step", "epoch": 1, "step": 1, "loss": 2.3, "lr": 0.01}',
    '{"type": "step", "epoch": 1, "step": 1e400, "loss": 2.2}',
    '{"type": "step", "epoch": 1, "step": "x", "loss": 2.2}',
    '{"type": "step", "epoch": 1, "step": null, "loss": 2.2}',
    '{"type": "step", "epoch": 1, "step": 2, "loss": "low", "lr": 0.01}',
    '{"type": "step", "epoch": 1, "step": 3, "loss": NaN, "lr": 0.01}',
    '{"type": "epoch", "epoch": 1, "step": 3, "test_acc": "great", "confusion": [[1, 0], [0, "x"]]}',
    '{"type": "epoch", "epoch": 2, "step": 6, "test_acc": 0.75, "test_loss": 0.5, "confusion": [[3, 1], [0, 4]],'
    ' "per_class_acc": [0.75, 1.0]}',
    '[1, 2]',
    '{"type": ["step"], "step": 9}',
    '{"type": "epoch", "epoch": 3, "st',
]) + "\n"


def test_a_damaged_run_is_listed_with_the_reason_and_never_stops_the_listing(tmp_path):
    hostile_runs(tmp_path)
    listed = {r.name: r for r in runs.list_runs(tmp_path)}
    assert listed["good"].status == "completed" and listed["good"].damaged == ""
    assert listed["good"].epochs == 3 and listed["good"].best_acc == 0.5
    for key, _ in HOSTILE_RUN_FIELDS:
        info = next(r for r in listed.values() if r.path.endswith(f"bad-{key}"))
        assert key in info.damaged and "skipped" in info.damaged, info.damaged
    assert "'yesterday'" in listed["bad-created"].damaged
    assert math.isnan(listed["bad-best_acc"].best_acc) and listed["bad-epochs_done"].epochs_done == 0
    text_data = listed["text-data"]
    assert text_data.dataset == "?" and text_data.epochs == 0 and "config.json" in text_data.damaged
    not_json = next(r for r in listed.values() if r.path.endswith("not-json"))
    assert "run.json is damaged" in not_json.damaged and "config.json" in not_json.damaged
    huge = next(r for r in listed.values() if r.path.endswith("huge"))
    assert huge.epochs == 0 and huge.epochs_done == 0 and math.isfinite(huge.created)


def test_a_damaged_run_json_is_healed_by_the_next_write(tmp_path):
    folder = _fake_run(tmp_path, "x")
    (folder / runs.RUN_FILE).write_text('{"name": "x", "created": "yesterday", "epochs_done": "ten"}')
    runs.rename_run(folder, "y")
    record = runs.read_run(folder)
    assert record.name == "y" and record.problems == () and record.epochs_done == 0


def test_hostile_metrics_lines_and_fields_are_named_and_skipped(tmp_path):
    (tmp_path / runs.METRICS_FILE).write_text(HOSTILE_METRICS)
    metrics = runs.read_metrics(tmp_path)
    assert [(r.kind, r.step) for r in metrics.records] == [("step", 1), ("step", 2), ("step", 3), ("epoch", 3),
                                                            ("epoch", 6)]
    assert math.isnan(metrics.steps[1].loss) and metrics.steps[1].lr == 0.01  # the damaged field only is skipped
    assert math.isnan(metrics.steps[2].loss)  # a NaN loss is data (a diverging run), not damage
    text = "\n".join(metrics.problems)
    for expected in ("line 2: step is Infinity", "line 3: step is 'x'", "line 4: step is null",
                     "line 5: loss is 'low'", "line 7: test_acc is 'great'", "line 7: confusion",
                     "line 9 is not a record", "line 11 is not valid JSON"):
        assert expected in text, expected
    assert metrics.epochs[0].confusion == () and metrics.epochs[1].confusion == ((3, 1), (0, 4))
    summary = runs.summarize_metrics(metrics.records)
    assert (summary.best_acc, summary.best_epoch, summary.epochs_done) == (0.75, 2, 2)


def test_csv_export_and_the_confusion_reader_get_through_hostile_metrics(tmp_path):
    from perceiver_gui.core import evaluation
    from perceiver_gui.core.export import metrics_csv

    folder = _fake_run(tmp_path, "hostile")
    (folder / runs.METRICS_FILE).write_text(HOSTILE_METRICS)
    assert metrics_csv(folder, tmp_path / "out.csv") == 5
    confusion = evaluation.read_confusion(folder)
    assert confusion.epoch == 2 and confusion.counts == ((3, 1), (0, 4))


def test_perceiver_gui_home_with_a_tilde_is_expanded(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PERCEIVER_GUI_HOME", "~/x")
    assert runs.default_runs_root() == tmp_path / "x" / "runs"


def test_run_files_and_saved_configs_get_the_users_umask(tmp_path):
    import os

    from perceiver_gui.config import Config, save_config

    old = os.umask(0o027)
    try:
        folder = _fake_run(tmp_path, "x")
        save_config(Config(), tmp_path / "saved.toml")
    finally:
        os.umask(old)
    assert (folder / runs.RUN_FILE).stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "saved.toml").stat().st_mode & 0o777 == 0o640


# -- the lock ------------------------------------------------------------------------------------
LOCK_HOLDER = ("import sys, time; from perceiver_gui.core import runs\n"
               "lock = runs.lock_run(sys.argv[1]); print('locked', flush=True); time.sleep(60)\n")


def hold_lock(run_dir):
    """A process that holds the run's lock until killed, as a trainer does."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_run_locked_by_another_process_is_live_and_refuses_a_second_lock(tmp_path):
    import socket

    folder = _fake_run(tmp_path, "x")
    runs.write_run(folder, status="running")
    assert runs.list_runs(tmp_path)[0].status == "interrupted"  # "running", but no process holds it
    proc = hold_lock(folder)
    try:
        info = runs.list_runs(tmp_path)[0]
        assert info.status == "running" and info.holder == f"process {proc.pid} on {socket.gethostname()}"
        with pytest.raises(runs.RunLockedError, match=f"process {proc.pid}"):
            runs.lock_run(folder, wait_s=0.1)
        with pytest.raises(runs.RunError, match="stop that run before deleting"):
            runs.delete_run(folder)
    finally:
        proc.kill()
        proc.wait()
    assert runs.list_runs(tmp_path)[0].status == "interrupted"  # the OS released the dead process's lock
    with runs.lock_run(folder):
        assert runs.lock_holder(folder).startswith("process ")  # held by us: another look sees it
    assert runs.lock_holder(folder) == ""
