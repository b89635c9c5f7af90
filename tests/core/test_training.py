import gc
import math
import os
import signal
import subprocess
import sys
import threading
import time
import weakref

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from perceiver_gui.core import checkpoints, runs, training
from perceiver_gui.core.device import PrecisionChoice
from perceiver_gui.core.events import CheckpointSaved, EpochEnd, Finished, Log, RunStarted, Step
from perceiver_gui.core.training import RunControl, lr_factor, resume, train
from tests.core.train_fixtures import tiny_digits


def run_all(events):
    return list(events)


def test_a_short_run_learns_and_leaves_a_complete_run_folder(tmp_path):
    out = tmp_path / "run"
    events = run_all(train(tiny_digits(**{"train.epochs": 3}), out_dir=out))
    started = next(e for e in events if isinstance(e, RunStarted))
    # Digits: 898 training images, of which a stratified tenth (90) validate; 899 test.
    assert (started.train_size, started.val_size, started.test_size) == (808, 90, 899)
    assert started.class_names == tuple(str(i) for i in range(10))
    steps = [e for e in events if isinstance(e, Step)]
    assert len(steps) == started.total_steps == 3 * 25
    assert all(math.isfinite(s.loss) and s.images_per_s > 0 for s in steps)
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    assert [e.epoch for e in epochs] == [1, 2, 3]
    assert epochs[-1].val_acc > 0.2  # well above chance (10%) after 3 tiny epochs
    assert len(epochs[-1].confusion) == 10 and sum(map(sum, epochs[-1].confusion)) == 90  # on validation
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.status == "completed"
    assert finished.best_val_acc == max(e.val_acc for e in epochs)
    assert 0.2 < finished.test_acc <= 1 and "test accuracy" in finished.message
    assert any(isinstance(e, CheckpointSaved) for e in events)
    for name in (runs.CONFIG_FILE, runs.METRICS_FILE, runs.MODEL_FILE, runs.RESUME_FILE, runs.RUN_FILE):
        assert (out / name).is_file(), name
    state, meta = checkpoints.load_model(out / runs.MODEL_FILE)
    assert meta.class_names == started.class_names and meta.channels == 1 and tuple(meta.image_size) == (8, 8)
    assert [r.epoch for r in runs.read_metrics(out).epochs] == [1, 2, 3]
    assert runs.list_runs(tmp_path)[0].status == "completed"


def test_the_same_seed_repeats_exactly_on_cpu(tmp_path):
    cfg = tiny_digits(**{"train.epochs": 1, "data.crop_padding": 1})
    a = [e.loss for e in train(cfg, out_dir=tmp_path / "a") if isinstance(e, Step)]
    b = [e.loss for e in train(cfg, out_dir=tmp_path / "b") if isinstance(e, Step)]
    assert a == b


def test_stop_then_resume_continues_exactly_like_an_uninterrupted_run(tmp_path):
    cfg = tiny_digits(**{"data.crop_padding": 1, "model.ff_dropout": 0.1, "train.mixup": 0.4})
    full = [e for e in train(cfg, out_dir=tmp_path / "full")]
    full_losses = [e.loss for e in full if isinstance(e, Step)]

    control = RunControl()
    first = []
    for event in train(cfg, out_dir=tmp_path / "split", control=control):
        first.append(event)
        if isinstance(event, Step) and event.step == 40:  # mid second epoch
            control.stop()
    assert first[-1].status == "stopped"
    checkpoints.load_model(tmp_path / "split" / runs.MODEL_FILE)  # Stop always leaves a loadable model
    second = list(resume(tmp_path / "split"))
    assert second[-1].status == "completed"
    resumed_losses = [e.loss for e in first + second if isinstance(e, Step)]
    assert resumed_losses == full_losses
    # The interrupted epoch's train loss and accuracy count its steps from before the stop too.
    epochs_full = [(e.train_loss, e.train_acc, e.val_acc) for e in full if isinstance(e, EpochEnd)]
    epochs_split = [(e.train_loss, e.train_acc, e.val_acc) for e in first + second if isinstance(e, EpochEnd)]
    assert epochs_split == epochs_full
    a, _ = checkpoints.load_model(tmp_path / "full" / runs.MODEL_FILE)
    b, _ = checkpoints.load_model(tmp_path / "split" / runs.MODEL_FILE)
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps_logged = [r.step for r in runs.read_metrics(tmp_path / "split").steps]
    assert steps_logged == sorted(set(steps_logged))  # the curve continues without repeats


def test_pause_blocks_between_steps_until_continued(tmp_path):
    control = RunControl()
    gen = train(tiny_digits(**{"train.epochs": 1}), out_dir=tmp_path / "r", control=control)
    while not isinstance(next(gen), Step):
        pass
    control.pause()
    got = []
    worker = threading.Thread(target=lambda: got.append(next(gen)))
    worker.start()
    worker.join(0.5)
    assert worker.is_alive() and not got  # paused: no step happens
    control.continue_()
    worker.join(10)
    assert isinstance(got[0], Step) and got[0].step == 2
    control.stop()
    assert list(gen)[-1].status == "stopped"


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_model(tmp_path, monkeypatch):
    real_build = training.build_model

    def build_poisoned(cfg):
        model = real_build(cfg)
        calls = {"n": 0}

        def hook(module, args, output):
            calls["n"] += module.training
            return output * float("nan") if calls["n"] > 40 else output  # mid second epoch

        model.register_forward_hook(hook)
        return model

    monkeypatch.setattr(training, "build_model", build_poisoned)
    events = list(train(tiny_digits(), out_dir=tmp_path / "r"))
    finished = events[-1]
    assert finished.status == "failed" and "NaN" in finished.message and "learning rate" in finished.message
    assert finished.model_path and "kept" in finished.message
    state, _ = checkpoints.load_model(finished.model_path)
    assert all(torch.isfinite(t).all() for t in state.values())
    assert runs.list_runs(tmp_path)[0].status == "failed"


def test_an_invalid_config_fails_before_anything_runs(tmp_path):
    events = list(train(tiny_digits(**{"train.lr": -1.0}), out_dir=tmp_path / "r"))
    assert len(events) == 1 and events[0].status == "failed" and "train.lr" in events[0].message
    assert not (tmp_path / "r").exists()


def test_resume_needs_a_resumable_folder(tmp_path):
    events = list(resume(tmp_path))
    assert events[-1].status == "failed" and "nothing to resume" in events[-1].message


def test_an_unavailable_device_is_a_sentence(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    events = list(train(tiny_digits(**{"train.device": "cuda"}), out_dir=tmp_path / "r"))
    assert events[-1].status == "failed" and "No CUDA GPU" in events[-1].message


@pytest.mark.parametrize("schedule", ["constant", "cosine", "onecycle"])
def test_schedules_start_low_or_flat_peak_at_one_and_end_low(schedule):
    total, warm = 100, 10
    f = [lr_factor(s, total, schedule, warm) for s in range(total)]
    assert max(f) == pytest.approx(1.0, abs=0.02)
    if schedule != "constant":
        assert f[0] < 0.2 and f[-1] < 0.05


@pytest.mark.slow
def test_a_run_killed_at_any_moment_leaves_loadable_files_and_resumes(tmp_path):
    out = tmp_path / "run"
    code = (
        "import sys; from perceiver_gui.core.training import train; from tests.core.train_fixtures import tiny_digits\n"
        f"for e in train(tiny_digits(**{{'train.epochs': 50}}), out_dir={str(out)!r}):\n"
        "    print(type(e).__name__, flush=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    epochs = 0
    for line in proc.stdout:
        epochs += line.startswith("EpochEnd")
        if epochs >= 2:
            time.sleep(0.05)  # land somewhere inside the next save or step
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    checkpoints.load_model(out / runs.MODEL_FILE)
    checkpoints.load_training_state(out / runs.RESUME_FILE)
    control = RunControl()
    for event in resume(out, control=control):
        if isinstance(event, RunStarted):
            assert not list(out.glob(".*.tmp"))  # a killed writer's leftovers are swept on resume
            # Epoch 2's state is saved just after its EpochEnd; under load the kill may land before that.
            assert event.start_epoch >= 1
        if isinstance(event, Step):
            control.stop()
    assert runs.read_run(out).status == "stopped"


def test_bfloat16_autocast_trains_on_cpu(tmp_path):
    events = list(train(tiny_digits(**{"train.epochs": 1, "train.precision": "bfloat16"}), out_dir=tmp_path / "r"))
    assert events[-1].status == "completed"
    assert all(math.isfinite(e.loss) for e in events if isinstance(e, Step))


def test_out_of_memory_suggests_a_smaller_batch(tmp_path, monkeypatch):
    real_build = training.build_model

    def build_hungry(cfg):
        model = real_build(cfg)

        def hook(module, args):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

        model.register_forward_pre_hook(hook)
        return model

    monkeypatch.setattr(training, "build_model", build_hungry)
    finished = list(train(tiny_digits(), out_dir=tmp_path / "r"))[-1]
    assert finished.status == "failed"
    assert "ran out of memory at batch size 32" in finished.message and "new run with batch size 16" in finished.message


def test_evaluation_falls_back_to_smaller_batches_when_memory_runs_out(tmp_path, monkeypatch):
    # A GPU that only just fits training can run out of memory on evaluation's bigger batches: the
    # run then evaluates in smaller ones and gets the same numbers, instead of failing.
    cfg = tiny_digits(**{"train.epochs": 1})
    plain = [e for e in train(cfg, out_dir=tmp_path / "a") if isinstance(e, EpochEnd)]

    def plain_finished_test(run_dir):
        return runs.read_run(run_dir).test_acc

    real_build = training.build_model
    batches = []

    def build_tight(cfg):
        model = real_build(cfg)

        def hook(module, args):
            if not module.training:
                batches.append(len(args[0]))
                if len(args[0]) > 64:
                    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

        model.register_forward_pre_hook(hook)
        return model

    monkeypatch.setattr(training, "build_model", build_tight)
    events = list(train(cfg, out_dir=tmp_path / "b"))
    assert events[-1].status == "completed", events[-1].message
    tight = [e for e in events if isinstance(e, EpochEnd)]
    assert (tight[0].val_acc, tight[0].confusion) == (plain[0].val_acc, plain[0].confusion)
    assert abs(tight[0].val_loss - plain[0].val_loss) < 1e-6
    assert events[-1].test_acc == plain_finished_test(tmp_path / "a")  # the final test pass fell back alike
    # The 90 validation images in one batch of 256, then of 128, ran out; 64 held, for the test pass too.
    assert batches[:3] == [90, 90, 64] and max(batches[2:]) == 64


def test_reading_losses_in_batches_as_on_a_gpu_changes_nothing_but_when(tmp_path, monkeypatch):
    cfg = tiny_digits(**{"train.epochs": 1})
    every_step = [(e.step, e.loss) for e in train(cfg, out_dir=tmp_path / "a") if isinstance(e, Step)]
    monkeypatch.setattr(training, "_read_every", lambda device: 5)
    batched = [(e.step, e.loss) for e in train(cfg, out_dir=tmp_path / "b") if isinstance(e, Step)]
    assert batched == every_step and len(batched) == 25  # every step reported once, in order, same losses


def test_trains_on_a_cifar10_copy_on_disk_without_network(tmp_path):
    from tests.core.data_fixtures import CIFAR10_CLASSES, make_tiny_cifar10

    make_tiny_cifar10(tmp_path / "data", n_train=40, n_test=10)
    cfg = tiny_digits(**{"data.dataset": "cifar10", "data.root": str(tmp_path / "data"), "data.hflip": True,
                         "data.crop_padding": 4, "train.epochs": 1, "train.batch_size": 8,
                         "train.precision": "auto"})
    events = list(train(cfg, out_dir=tmp_path / "run"))
    started = next(e for e in events if isinstance(e, RunStarted))
    assert started.class_names == tuple(CIFAR10_CLASSES) and (started.train_size, started.val_size, started.test_size) == (30, 10, 10)
    assert events[-1].status == "completed"
    _, meta = checkpoints.load_model(tmp_path / "run" / runs.MODEL_FILE)
    assert meta.channels == 3 and tuple(meta.image_size) == (32, 32) and meta.config.model.input_channels == 3


def test_cifar10_that_cannot_be_downloaded_says_where_to_put_it(tmp_path):
    cfg = tiny_digits(**{"data.dataset": "cifar10", "data.root": str(tmp_path / "data")})
    finished = list(train(cfg, out_dir=tmp_path / "run"))[-1]
    assert finished.status == "failed"
    assert str(tmp_path / "data") in finished.message and "digits" in finished.message.lower()


def test_mixup_blends_images_and_labels_and_still_learns(tmp_path):
    torch.manual_seed(0)
    x = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 2, 2)
    y = torch.tensor([0, 1, 2, 3])
    mixed, y_mix, lam = training._mixup(x, y, 0.4, torch.Generator().manual_seed(0))
    assert 0.0 <= lam <= 1.0 and sorted(y_mix.tolist()) == [0, 1, 2, 3]
    assert torch.allclose(mixed, lam * x + (1 - lam) * x[y_mix])  # labels follow their images
    events = list(train(tiny_digits(**{"train.epochs": 3, "train.mixup": 0.4}), out_dir=tmp_path / "r"))
    assert events[-1].status == "completed" and events[-1].best_val_acc > 0.2


def test_dropping_the_generator_after_finished_keeps_the_status(tmp_path):
    gen = train(tiny_digits(**{"train.epochs": 1}), out_dir=tmp_path / "r")
    for event in gen:
        if isinstance(event, Finished):
            break
    gen.close()
    assert runs.read_run(tmp_path / "r").status == "completed"


def test_dropping_the_generator_mid_run_marks_it_stopped_and_it_resumes_from_the_last_epoch(tmp_path):
    gen = train(tiny_digits(**{"train.epochs": 3}), out_dir=tmp_path / "r")
    for event in gen:
        if isinstance(event, Step) and event.step == 40:  # mid second epoch
            break
    gen.close()
    assert runs.read_run(tmp_path / "r").status == "stopped"
    started = next(e for e in resume(tmp_path / "r") if isinstance(e, RunStarted))
    assert started.start_step == 25 and started.start_epoch == 1  # the end of the first epoch


def test_stop_while_the_data_loads_trains_nothing(tmp_path, monkeypatch):
    from perceiver_gui.core import data
    from perceiver_gui.core.events import DownloadProgress

    def slow_download(cfg):
        for done in range(10):
            yield DownloadProgress(name="CIFAR-10", done_bytes=done, total_bytes=10)
        raise AssertionError("the loader should have been closed")

    monkeypatch.setattr(data, "open_dataset", slow_download)
    control = RunControl()
    events = []
    for event in train(tiny_digits(), out_dir=tmp_path / "r", control=control):
        events.append(event)
        control.stop()
    assert events[-1].status == "stopped" and "nothing was trained" in events[-1].message
    assert not (tmp_path / "r" / runs.MODEL_FILE).exists()


# -- the lock, and a final status however a run ends -------------------------------------------------
def test_a_second_trainer_of_a_run_is_refused_naming_the_process(tmp_path):
    from tests.core.test_runs import hold_lock

    gen = train(tiny_digits(**{"train.epochs": 1}), out_dir=tmp_path / "r")
    while not isinstance(next(gen), Step):
        pass
    refused = list(resume(tmp_path / "r"))  # the GUI resuming a run this process trains
    assert len(refused) == 1 and refused[0].status == "failed"
    assert f"process {os.getpid()}" in refused[0].message and "being trained" in refused[0].message
    assert list(gen)[-1].status == "completed"  # the first trainer was not disturbed
    assert runs.read_run(tmp_path / "r").status == "completed"
    proc = hold_lock(tmp_path / "r")  # another process trains it (as a CLI would)
    try:
        refused = list(resume(tmp_path / "r"))
    finally:
        proc.kill()
        proc.wait()
    assert refused[-1].status == "failed" and f"process {proc.pid}" in refused[-1].message
    assert runs.read_run(tmp_path / "r").status == "completed"  # not ours to mark failed


@pytest.mark.parametrize("code, advice", [("ENOSPC", "free some space"), ("EACCES", "let yourself write to")])
def test_disk_full_while_saving_fails_the_run_with_the_file_named_and_it_resumes(tmp_path, monkeypatch, code, advice):
    import errno

    from perceiver_gui.core import files

    real_replace = os.replace
    calls = {"n": 0}

    def replace_or_disk_full(src, dst):
        if str(dst).endswith(runs.RESUME_FILE):
            calls["n"] += 1
            if calls["n"] == 2:  # the second epoch's save
                raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))
        return real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", replace_or_disk_full)
    out = tmp_path / "r"
    finished = list(train(tiny_digits(**{"train.epochs": 3}), out_dir=out))[-1]
    assert finished.status == "failed"
    assert str(out / runs.RESUME_FILE) in finished.message and os.strerror(getattr(errno, code)) in finished.message
    assert advice in finished.message
    assert f"perceiver-gui train --resume {out}" in finished.message
    record = runs.read_run(out)
    assert record.status == "failed" and record.message == finished.message
    assert not list(out.glob(".*.tmp"))  # the half-written temporary file is gone
    monkeypatch.setattr(files.os, "replace", real_replace)
    events = list(resume(out))
    assert next(e for e in events if isinstance(e, RunStarted)).start_epoch == 1  # the last save that worked
    assert events[-1].status == "completed" and runs.read_run(out).status == "completed"


def test_an_unexpected_error_leaves_a_failed_status_with_a_sentence_and_reaches_the_caller(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the evaluation broke")

    monkeypatch.setattr(training, "evaluate", broken)
    with pytest.raises(RuntimeError, match="the evaluation broke"):
        list(train(tiny_digits(), out_dir=tmp_path / "r"))
    record = runs.read_run(tmp_path / "r")
    assert record.status == "failed" and "RuntimeError: the evaluation broke" in record.message
    assert "start the run again" in record.message  # nothing was saved yet to resume from
    assert runs.lock_holder(tmp_path / "r") == ""


@pytest.mark.parametrize("how", ["deleted", "renamed"])
def test_a_run_folder_that_vanishes_mid_run_stops_the_run_and_is_not_re_created(tmp_path, how):
    import shutil

    out = tmp_path / "r"
    events = []
    for event in train(tiny_digits(**{"train.epochs": 3}), out_dir=out):
        events.append(event)
        if isinstance(event, Step) and event.step == 40:
            shutil.rmtree(out) if how == "deleted" else out.rename(tmp_path / "moved")
    finished = events[-1]
    assert finished.status == "failed" and "deleted or renamed" in finished.message
    assert "--resume" in finished.message
    assert not out.exists()
    assert not any(isinstance(e, EpochEnd) and e.epoch >= 2 for e in events)  # nothing trained into the void
    if how == "renamed":  # the moved folder is a whole run that continues from its new place
        assert list(resume(tmp_path / "moved"))[-1].status == "completed"


def test_a_start_that_fails_before_training_leaves_no_run_folder(tmp_path, monkeypatch):
    cfg = tiny_digits(**{"data.dataset": "cifar10", "data.root": str(tmp_path / "data")})
    assert list(train(cfg, out_dir=tmp_path / "r"))[-1].status == "failed"
    assert not (tmp_path / "r").exists()
    monkeypatch.setenv("PERCEIVER_GUI_HOME", str(tmp_path / "home"))
    assert list(train(cfg))[-1].status == "failed"
    assert list((tmp_path / "home" / "runs").iterdir()) == []


def test_one_epoch_is_one_epoch(tmp_path):
    finished = list(train(tiny_digits(**{"train.epochs": 1}), out_dir=tmp_path / "r"))[-1]
    assert finished.message.startswith("Finished 1 epoch;")


def test_a_loss_that_climbs_far_above_its_start_is_warned_about(tmp_path):
    from perceiver_gui.core.events import Log

    events = list(train(tiny_digits(**{"train.epochs": 1, "train.lr": 10.0}), out_dir=tmp_path / "r"))
    warnings = [e.message for e in events if isinstance(e, Log) and e.level == "warning"]
    assert any("diverging" in w and "lower learning rate" in w for w in warnings), warnings


def test_a_resume_gets_through_hostile_metrics_and_refuses_a_damaged_config_with_a_sentence(tmp_path):
    from perceiver_gui.core.events import Log

    out = tmp_path / "r"
    control = RunControl()
    for event in train(tiny_digits(), out_dir=out, control=control):
        if isinstance(event, Step) and event.step == 40:
            control.stop()
    with open(out / runs.METRICS_FILE, "a") as fh:
        fh.write('{"type": "step", "epoch": 2, "step": 1e400, "loss": 1.0}\n{"type": "step", "epoch": 2, "step": "x"}\n'
                 '{"type": "epoch", "epoch": null, "step": null}\n{"type": "ep')
    events = list(resume(out))
    assert events[-1].status == "completed"
    warned = [e.message for e in events if isinstance(e, Log) and e.level == "warning"]
    assert any("Skipped damaged records of metrics.jsonl" in w and "step is Infinity" in w for w in warned)
    steps = [r.step for r in runs.read_metrics(out).steps]
    assert steps == sorted(set(steps)) and runs.read_metrics(out).problems == ()  # rewritten clean
    config = (out / runs.CONFIG_FILE).read_text()
    (out / runs.CONFIG_FILE).write_text(config.replace('"dataset": "digits"', '"dataset": 7'))
    refused = list(resume(out))
    assert len(refused) == 1 and refused[0].status == "failed"
    assert "can't be resumed" in refused[0].message and "config.json" in refused[0].message


# -- issue #12: devices, precision, out of memory, cleanup, syncs, saving, compile ----------------------
def _stopped_at(cfg, out, step):
    control = RunControl()
    for event in train(cfg, out_dir=out, control=control):
        if isinstance(event, Step) and event.step == step:
            control.stop()
    return out


def test_a_run_saved_on_a_gpu_resumes_on_the_cpu_and_says_it_is_not_bit_exact(tmp_path):
    # A CUDA generator's state is 16 bytes (seed and offset), the CPU's 5,056: write what a GPU run saves.
    out = _stopped_at(tiny_digits(**{"data.crop_padding": 1}), tmp_path / "r", 40)  # mid second epoch
    path = out / runs.RESUME_FILE
    saved = checkpoints.load_training_state(path)
    cuda_like = {"rng.gen": torch.arange(16, dtype=torch.uint8), "rng.epoch_gen": torch.arange(16, 32, dtype=torch.uint8)}
    checkpoints.save_training_state(
        path, model_state=saved.model_state, optimizer_state=saved.optimizer_state, scheduler_state={},
        scaler_state=saved.scaler_state, progress=saved.progress, rng={**saved.rng, **cuda_like})
    events = list(resume(out))
    assert events[-1].status == "completed", events[-1].message
    assert any(isinstance(e, Log) and "not bit-exact" in e.message for e in events)
    again = _stopped_at(tiny_digits(**{"data.crop_padding": 1}), tmp_path / "r2", 40)
    assert not any(isinstance(e, Log) and "bit-exact" in e.message for e in resume(again))  # same kind: exact


def test_precision_is_chosen_for_the_runs_device_and_tf32_applied_at_the_start(tmp_path, monkeypatch):
    asked, applied, autocast_seen = [], [], []
    monkeypatch.setattr(training, "choose_precision", lambda device, precision: asked.append(
        (device.type, precision)) or PrecisionChoice(torch.bfloat16, True, "bfloat16 because the test says so"))
    monkeypatch.setattr(training, "apply_device_settings", lambda device, *, tf32: applied.append(tf32) or "")
    real_build = training.build_model

    def build_watched(cfg):
        model = real_build(cfg)
        model.register_forward_pre_hook(lambda m, args: autocast_seen.append(torch.get_autocast_dtype("cpu")
                                                                            if torch.is_autocast_enabled("cpu") else None))
        return model

    monkeypatch.setattr(training, "build_model", build_watched)
    events = list(train(tiny_digits(**{"train.epochs": 1, "train.precision": "auto", "train.tf32": False}),
                        out_dir=tmp_path / "r"))
    assert events[-1].status == "completed", events[-1].message
    assert asked == [("cpu", "auto")] and applied == [False]
    assert set(autocast_seen) == {torch.bfloat16}  # training and evaluation
    assert any(isinstance(e, Log) and "because the test says so" in e.message for e in events)
    assert checkpoints.load_training_state(tmp_path / "r" / runs.RESUME_FILE).scaler_state  # the grad scaler ran


@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
    RuntimeError("MPS backend out of memory (MPS allocated: 17.00 GB, other allocations: 1.00 GB, max allowed: "
                 "18.13 GB). Tried to allocate 256 MB on private pool."),
])
def test_running_out_of_memory_in_a_step_is_a_sentence_on_every_backend(tmp_path, monkeypatch, error):
    def out_of_memory(*args, **kwargs):
        raise error

    monkeypatch.setattr(training, "apply_gradients", out_of_memory)
    finished = list(train(tiny_digits(), out_dir=tmp_path / "r"))[-1]
    assert finished.status == "failed" and "ran out of memory at batch size 32" in finished.message
    assert runs.read_run(tmp_path / "r").status == "failed"


def test_a_model_that_does_not_fit_on_the_device_is_a_sentence(tmp_path, monkeypatch):
    real_to = torch.nn.Module.to

    def to(module, *args, **kwargs):
        if module.__class__.__name__ == "Perceiver":
            raise RuntimeError("MPS backend out of memory (MPS allocated: 17.00 GB). Tried to allocate 9 GB.")
        return real_to(module, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", to)
    finished = list(train(tiny_digits(), out_dir=tmp_path / "r"))[-1]
    assert finished.status == "failed" and "model" in finished.message and "memory" in finished.message
    assert "batch size" not in finished.message  # the batch is not what failed


def _numbers(events):
    return [(e.step, e.loss) if isinstance(e, Step) else (e.train_loss, e.val_loss, e.val_acc, e.confusion)
            for e in events if isinstance(e, Step | EpochEnd)]


def test_a_dataset_too_big_for_the_device_stays_in_host_memory_and_trains_the_same(tmp_path, monkeypatch):
    cfg = tiny_digits(**{"train.epochs": 1})
    plain = _numbers(train(cfg, out_dir=tmp_path / "a"))
    real = training._to_device

    def full(tensor, device):
        if tensor.dtype == torch.uint8 and len(tensor) > 500:  # the training images
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 40.00 GiB")
        return real(tensor, device)

    monkeypatch.setattr(training, "_to_device", full)
    events = list(train(cfg, out_dir=tmp_path / "b"))
    assert events[-1].status == "completed", events[-1].message
    assert any(isinstance(e, Log) and "host memory" in e.message for e in events)
    assert _numbers(events) == plain  # same batches, same numbers


def test_a_failed_run_releases_the_devices_memory_and_holds_no_tensors(tmp_path, monkeypatch):
    models, released = [], []
    real_build = training.build_model
    monkeypatch.setattr(training, "build_model", lambda cfg: models.append(real_build(cfg)) or models[-1])

    def release(device):
        gc.collect()
        released.append((device.type, [ref() is None for ref in refs]))

    refs = []
    monkeypatch.setattr(training, "release_memory", release)

    def broken(*args, **kwargs):
        refs.append(weakref.ref(models.pop()))
        raise RuntimeError("the evaluation broke")

    real_evaluate = training.evaluate
    monkeypatch.setattr(training, "evaluate", broken)
    with pytest.raises(RuntimeError, match="the evaluation broke"):  # the caller keeps the exception
        list(train(tiny_digits(), out_dir=tmp_path / "r"))
    assert released == [("cpu", [True])]  # released once, after the model (and its tensors) was gone
    monkeypatch.setattr(training, "evaluate", real_evaluate)
    list(train(tiny_digits(**{"train.epochs": 1}), out_dir=tmp_path / "ok"))  # and after a normal end
    assert len(released) == 2


class _SyncingOps(TorchDispatchMode):
    """Counts the ops that make a CUDA host wait for the device: `.item()`, `float()`, `bool()` of a tensor
    (_local_scalar_dense), and ops whose output size depends on the data. Seen on the CPU as well."""

    SYNCING = ("aten._local_scalar_dense", "aten.bincount", "aten.nonzero", "aten.masked_select", "aten.unique",
               "aten._unique")

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func).startswith(self.SYNCING):
            self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


def test_a_training_step_makes_the_host_wait_for_nothing(tmp_path, monkeypatch):
    # torch.cuda.set_sync_debug_mode needs CUDA; these are the ops behind every host sync, counted on the CPU.
    # (Mixup draws its blend weight on the CPU on purpose, and AdamW reads its CPU step counter; on a GPU
    # the optimizers are fused. So: SGD, no mixup.)
    mode = _SyncingOps()
    steps = []
    for name in ("forward", "apply_gradients"):
        real = getattr(training, name)

        def watched(*args, _real=real, **kwargs):
            with mode:
                return _real(*args, **kwargs)

        monkeypatch.setattr(training, name, watched)
    monkeypatch.setattr(training, "_read_every", lambda device: 10)
    cfg = tiny_digits(**{"train.epochs": 1, "train.optimizer": "sgd", "train.grad_clip": 1.0, "data.crop_padding": 1,
                         "data.hflip": True, "train.label_smoothing": 0.1})
    steps = [e for e in train(cfg, out_dir=tmp_path / "r") if isinstance(e, Step)]
    assert len(steps) == 25 and mode.seen == []


def test_evaluation_waits_for_the_device_only_after_the_pass(tmp_path, monkeypatch):
    mode = _SyncingOps()
    real = training._eval_pass

    def watched(*args, **kwargs):
        with mode:
            return real(*args, **kwargs)

    monkeypatch.setattr(training, "_eval_pass", watched)
    events = list(train(tiny_digits(**{"train.epochs": 1}), out_dir=tmp_path / "r"))
    assert events[-1].status == "completed" and mode.seen == []  # validation each epoch, test at the end: no waits


def test_resume_state_is_saved_at_most_every_save_every_s_and_always_at_the_end_and_stop(tmp_path, monkeypatch):
    saves = []
    real = training.save_resume_state
    monkeypatch.setattr(training, "save_resume_state", lambda s, state, *a: saves.append(state.step) or real(s, state, *a))
    list(train(tiny_digits(**{"train.epochs": 3, "train.save_every_s": 0}), out_dir=tmp_path / "every"))
    assert saves == [25, 50, 75]  # each epoch, the last one once
    saves.clear()
    cfg = tiny_digits(**{"train.epochs": 3, "train.save_every_s": 3600})
    list(train(cfg, out_dir=tmp_path / "throttled"))
    assert saves == [75]  # the end
    saves.clear()
    out = _stopped_at(cfg, tmp_path / "stopped", 40)
    assert saves == [40]  # the stop
    assert list(resume(out))[-1].status == "completed"


@pytest.mark.slow
def test_a_compiled_model_trains_saves_plain_names_and_resumes(tmp_path):
    cfg = tiny_digits(**{"train.compile": "default"})
    out = _stopped_at(cfg, tmp_path / "r", 40)
    assert runs.read_run(out).status == "stopped"
    state, _ = checkpoints.load_model(out / runs.MODEL_FILE)
    assert not any("_orig_mod" in name for name in state)
    events = list(resume(out))
    assert events[-1].status == "completed", events[-1].message
    state, meta = checkpoints.load_model(out / runs.MODEL_FILE)
    training.build_model(meta.config.model).load_state_dict(state)  # loads into a plain model, strictly
    assert events[-1].best_val_acc > 0.2
