"""The predictions saved behind the confusion matrix, and the test images a cell of it shows."""

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import save

from perceiver_gui.core import checkpoints, data, evaluation, runs
from perceiver_gui.core.evaluation import EVALUATION_FILE, EvaluationError
from perceiver_gui.core.events import EpochEnd, Step
from perceiver_gui.core.model import build_model, to_channels_last
from perceiver_gui.core.training import RunControl, resume, train
from tests.core.data_fixtures import make_image_folder
from tests.core.train_fixtures import tiny_digits


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished 3-epoch tiny digits run, and the EpochEnd events it yielded with the predictions saved then."""
    out = tmp_path_factory.mktemp("mistakes") / "run"
    seen = []
    for event in train(tiny_digits(**{"train.epochs": 3}), out_dir=out):
        if isinstance(event, EpochEnd):  # the file is written before the event: read it as a view would
            seen.append((event, evaluation.read_evaluation(out)))
    return out, seen


def test_the_saved_predictions_make_exactly_the_confusion_matrix_of_each_epoch(run):
    out, seen = run
    assert [e.epoch for e, _ in seen] == [1, 2, 3]
    for event, ev in seen:
        assert ev.epoch == event.epoch and ev.step == event.step
        assert ev.confusion() == event.confusion
        assert evaluation.Confusion(str(out), ev.epoch, ev.class_names, ev.confusion(), True).per_class_acc == \
            pytest.approx(event.per_class_acc)
        assert ev.split == "validation"
        assert ev.class_names == tuple(str(i) for i in range(10)) and len(ev.labels) == 90  # the validation split
        # The predicted class holds the largest probability; a right answer's two probabilities are one.
        assert np.all((ev.prob_pred >= ev.prob_true - 1e-6) & (ev.prob_pred <= 1 + 1e-6) & (ev.prob_true >= 0))
        right = ev.labels == ev.preds
        assert np.array_equal(ev.prob_pred[right], ev.prob_true[right])
        assert np.all(ev.prob_pred >= 1 / 10 - 1e-6)
    assert evaluation.read_confusion(out).counts == seen[-1][0].confusion


def test_a_cell_shows_the_validation_images_of_its_true_class_that_the_model_gave_its_predicted_class(run):
    out, seen = run
    ev = seen[-1][1]
    split = evaluation.load_test_split(out, ev.split)
    counts = ev.confusion()
    total, t, p = max((counts[t][p], t, p) for t in range(10) for p in range(10) if t != p)
    assert total > 0
    cell = evaluation.cell_images(ev, split, t, p)
    assert cell.total == len(cell.indices) == len(cell.images) == total
    assert list(cell.prob_pred) == sorted(cell.prob_pred, reverse=True)  # most confident first

    # The very pixels of the validation split the engine evaluated, of class t...
    dataset = data.load_dataset(tiny_digits().data)
    expected = dataset.val_x[list(cell.indices)].permute(0, 2, 3, 1).numpy()
    assert np.array_equal(cell.images, expected)
    assert set(dataset.val_y[list(cell.indices)].tolist()) == {t}
    # ...that the model (the weights at the end of the last epoch) does call p, with the probability shown.
    cfg = runs.read_config(out).config
    model = build_model(cfg.model)
    model.load_state_dict(checkpoints.load_training_state(out / runs.RESUME_FILE).model_state)
    model.eval()
    with torch.no_grad():
        x = data.normalize(dataset.val_x[list(cell.indices)], dataset.info.mean, dataset.info.std)
        probs = model(to_channels_last(x)).softmax(1)
    assert probs.argmax(1).tolist() == [p] * total
    assert probs[:, p].tolist() == pytest.approx(cell.prob_pred, abs=1e-5)
    assert probs[:, t].tolist() == pytest.approx(cell.prob_true, abs=1e-5)

    limited = evaluation.cell_images(ev, split, t, p, limit=2)
    assert (limited.total, limited.indices) == (total, cell.indices[:2])
    empty = [(t, p) for t in range(10) for p in range(10) if counts[t][p] == 0][0]
    assert evaluation.cell_images(ev, split, *empty).total == 0


def test_resuming_writes_the_same_predictions_as_an_uninterrupted_run(tmp_path):
    cfg = tiny_digits(**{"data.crop_padding": 1})
    list(train(cfg, out_dir=tmp_path / "full"))
    control = RunControl()
    for event in train(cfg, out_dir=tmp_path / "split", control=control):
        if isinstance(event, Step) and event.step == 40:  # mid second epoch, after epoch 1 was evaluated
            control.stop()
    assert evaluation.read_evaluation(tmp_path / "split").epoch == 1
    assert list(resume(tmp_path / "split"))[-1].status == "completed"
    a, b = (evaluation.read_evaluation(tmp_path / name) for name in ("full", "split"))
    assert (a.epoch, a.step, a.test_digest) == (b.epoch, b.step, b.test_digest) == (2, 50, a.test_digest)
    for name in ("labels", "preds", "prob_pred", "prob_true"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


def test_an_image_folder_changed_after_training_is_refused_not_mislabelled(tmp_path):
    images = make_image_folder(tmp_path / "shapes", {"cats": 12, "dogs": 10}, size=(12, 12))
    cfg = tiny_digits(**{"data.dataset": "folder", "data.folder": str(images), "data.image_size": 12,
                         "data.root": str(tmp_path / "data"), "train.epochs": 1, "train.batch_size": 4})
    list(train(cfg, out_dir=tmp_path / "run"))
    ev = evaluation.read_evaluation(tmp_path / "run")
    assert ev.class_names == ("cats", "dogs")
    first = evaluation.cell_images(ev, evaluation.load_test_split(tmp_path / "run", ev.split), ev.labels[0],
                                   ev.preds[0])
    assert 0 in first.indices

    make_image_folder(images, {"dogs": 10, "cats": 12}, size=(12, 12))  # same files, other pictures
    with pytest.raises(EvaluationError, match="validation images are not the ones this run was evaluated on"):
        evaluation.cell_images(ev, evaluation.load_test_split(tmp_path / "run", ev.split), 0, 0)


def _write(run_dir, arrays, meta):
    (run_dir / EVALUATION_FILE).write_bytes(save(arrays, metadata={"perceiver_gui": json.dumps(meta)}))


def _good(k=3, n=4):
    arrays = {"labels": np.arange(n, dtype=np.int32) % k, "preds": np.zeros(n, np.int32),
              "prob_pred": np.full(n, 0.5, np.float32), "prob_true": np.full(n, 0.25, np.float32)}
    meta = {"format": evaluation.FORMAT, "epoch": 1, "step": 5, "class_names": [str(i) for i in range(k)],
            "test_digest": "x"}
    return arrays, meta


@pytest.mark.parametrize("damage", [
    "empty", "text", "pickle", "truncated", "no metadata", "out of range", "wrong dtype", "missing array",
    "ragged", "bad class names",
])
def test_a_damaged_or_hostile_predictions_file_gives_a_sentence(tmp_path, damage):
    arrays, meta = _good()
    path = tmp_path / EVALUATION_FILE
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "text":
        path.write_text("hello, not a safetensors file\n")
    elif damage == "pickle":
        import pickle

        path.write_bytes(pickle.dumps({"labels": [1, 2]}))
    elif damage == "truncated":
        _write(tmp_path, arrays, meta)
        path.write_bytes(path.read_bytes()[:-7])
    elif damage == "no metadata":
        path.write_bytes(save(arrays))
    else:
        if damage == "out of range":
            arrays["preds"][1] = 3
        elif damage == "wrong dtype":
            arrays["labels"] = arrays["labels"].astype(np.float32)
        elif damage == "missing array":
            del arrays["prob_true"]
        elif damage == "ragged":
            arrays["prob_true"] = np.zeros(3, np.float32)
        elif damage == "bad class names":
            meta["class_names"] = "abc"
        _write(tmp_path, arrays, meta)
    with pytest.raises(EvaluationError, match=r"is damaged.*next finished epoch rewrites it\.$"):
        evaluation.read_evaluation(tmp_path)


def test_missing_predictions_and_other_versions_are_explained(tmp_path):
    with pytest.raises(EvaluationError, match="has no saved test predictions"):
        evaluation.read_evaluation(tmp_path)
    arrays, meta = _good()
    _write(tmp_path, arrays, {**meta, "format": "perceiver-gui-evaluation/99"})
    with pytest.raises(EvaluationError, match="another version of Perceiver GUI"):
        evaluation.read_evaluation(tmp_path)
    with pytest.raises(EvaluationError, match="no finished epoch yet, so there is no confusion matrix"):
        evaluation.read_confusion(tmp_path)
    with pytest.raises(EvaluationError, match="Could not read the run's settings"):
        evaluation.load_test_split(tmp_path)


def test_a_run_from_before_saved_predictions_still_shows_its_matrix_from_the_metrics(run, tmp_path):
    out, seen = run
    old = tmp_path / "old-run"
    old.mkdir()
    for name in (runs.CONFIG_FILE, runs.METRICS_FILE, runs.MODEL_FILE):
        (old / name).write_bytes((out / name).read_bytes())
    confusion = evaluation.read_confusion(old)
    assert confusion.counts == seen[-1][0].confusion and confusion.epoch == 3
    assert confusion.class_names == tuple(str(i) for i in range(10))
    assert not confusion.has_images and "has no saved test predictions" in confusion.note


@pytest.mark.slow
def test_a_series_runs_cells_hold_their_series_and_file_rows(tmp_path):
    import numpy as np

    from perceiver_gui.core.evaluation import cell_images, load_test_split, read_confusion, read_evaluation
    from tests.core.series_fixtures import train_series_run

    run_dir = train_series_run(tmp_path)
    assert read_confusion(run_dir).kind == "series"
    ev = read_evaluation(run_dir)
    split = load_test_split(run_dir, ev.split)
    assert split.kind == "series" and split.images.dtype == np.float32 and split.images.shape[1] == 2
    assert len(split.files) == len(split.labels) and all("waves_TRAIN.ts#" in f for f in split.files)
    t, p = max(((t, p) for t in range(3) for p in range(3)), key=lambda c: len(ev.cell(*c)))
    cell = cell_images(ev, split, t, p)
    assert cell.kind == "series" and len(cell.images) == len(cell.files) == cell.total > 0
