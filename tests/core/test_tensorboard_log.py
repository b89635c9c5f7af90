"""TensorBoard scalars as a run trains: equal to metrics.jsonl, continued after a resume, optional."""

import sys

import pytest

from perceiver_gui.core import runs
from perceiver_gui.core.control import RunControl
from perceiver_gui.core.events import Step
from perceiver_gui.core.tensorboard_log import ScalarLog
from perceiver_gui.core.training import resume, train
from tests.core.train_fixtures import finished_run, tiny_digits


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return finished_run(tmp_path_factory.mktemp("tensorboard") / "run")


def scalars(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})  # 0: keep every event, no sampling
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_training_writes_tensorboard_scalars_equal_to_the_metrics(run):
    records = [runs.metrics_json(r) for r in runs.read_metrics(run).records]
    found = scalars(run)
    steps = [r for r in records if r["type"] == "step"]
    epochs = [r for r in records if r["type"] == "epoch"]
    assert [s for s, _ in found["loss/train_step"]] == [r["step"] for r in steps]
    # TensorBoard stores scalars as float32.
    assert [v for _, v in found["loss/train_step"]] == pytest.approx([r["loss"] for r in steps], rel=1e-6)
    assert [v for _, v in found["lr"]] == pytest.approx([r["lr"] for r in steps], rel=1e-6)
    assert found["accuracy/validation"] == [(r["step"], pytest.approx(r["val_acc"], rel=1e-6)) for r in epochs]
    assert found["loss/validation"] == [(r["step"], pytest.approx(r["val_loss"], rel=1e-6)) for r in epochs]
    test = next(r for r in records if r["type"] == "test")  # one point: the chosen model, at the end
    assert found["accuracy/test"] == [(test["step"], pytest.approx(test["test_acc"], rel=1e-6))]
    assert {f"accuracy_per_class/{d}" for d in range(10)} <= set(found)


def test_tensorboard_curves_continue_after_resume_and_drop_what_a_killed_process_logged(tmp_path):
    cfg = tiny_digits(**{"train.log_every": 1})
    control = RunControl()
    for event in train(cfg, out_dir=tmp_path / "run", control=control):
        if isinstance(event, Step) and event.step == 40:  # mid second epoch
            control.stop()
    # As if a later process logged steps 41-45 and was killed before it saved anything.
    with ScalarLog(tmp_path / "run") as ghost:
        for step in range(41, 46):
            ghost.write({"type": "step", "epoch": 2, "step": step, "loss": 99.0, "lr": 0.01, "images_per_s": 1.0})
    events = list(resume(tmp_path / "run"))
    assert events[-1].status == "completed"
    curve = scalars(tmp_path / "run")["loss/train_step"]
    assert [s for s, _ in curve] == list(range(1, 51))  # every step once, in order
    assert 99.0 not in [v for _, v in curve]
    logged = [r.loss for r in runs.read_metrics(tmp_path / "run").steps]
    assert [v for _, v in curve] == pytest.approx(logged, rel=1e-6)


def test_without_tensorboard_the_scalar_log_does_nothing(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m.split(".")[0] == "tensorboard"] + ["tensorboard"]:
        monkeypatch.setitem(sys.modules, name, None)  # an install without the extra: every import of it fails
    with ScalarLog(tmp_path, class_names=("a", "b")) as log:
        assert not log.enabled
        log.write({"type": "step", "epoch": 1, "step": 1, "loss": 1.0, "lr": 0.1, "images_per_s": 5.0, "time": 0.1})
    assert list(tmp_path.iterdir()) == []
