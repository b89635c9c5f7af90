"""Time series: the .ts, .csv and .npy readers, the sequences dataset, its training, masks and prediction.

Every file is written in its real on-disk format in tmp_path."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from perceiver_gui.config import PRESETS, Config, DataConfig, ModelConfig, TrainConfig
from perceiver_gui.core import data, datasets
from perceiver_gui.core.events import Finished
from perceiver_gui.core.inference import Predictor
from perceiver_gui.core.model import Perceiver
from perceiver_gui.core.series import SeriesError, read_series
from perceiver_gui.core.training import train


def write_ts(path: Path, series: list[np.ndarray], labels: list[str], *, header: str | None = None,
             classes: list[str] | None = None) -> Path:
    """A UCR/UEA .ts file: each series (C, l) a line, channels by ':', values by ',', the label last."""
    dims = series[0].shape[0]
    equal = len({s.shape[1] for s in series}) == 1
    if header is None:
        header = "\n".join([
            "# written by the tests", f"@problemName {path.stem}", "@timeStamps false", "@missing false",
            f"@univariate {'true' if dims == 1 else 'false'}", f"@dimensions {dims}",
            f"@equalLength {'true' if equal else 'false'}",
            *([f"@seriesLength {series[0].shape[1]}"] if equal else []),
            f"@classLabel true {' '.join(classes or sorted(set(labels)))}",
        ])
    rows = [":".join(",".join(f"{v:.5g}" for v in channel) for channel in s) + f":{label}"
            for s, label in zip(series, labels, strict=True)]
    path.write_text(header + "\n@data\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def shapes(n_per_class: int, length: int, *, seed: int = 0, channels: int = 1, vary: bool = False, level: float = 0.0,
           names: tuple[str, ...] = ("sine", "square", "saw")) -> tuple[list[np.ndarray], list[str]]:
    """Noisy sine, square and sawtooth waves of random phase, class k raised by k × level."""
    rng = np.random.default_rng(seed)
    series, labels = [], []
    for k, name in enumerate(names):
        for _ in range(n_per_class):
            n = int(rng.integers(length // 2, length + 1)) if vary else length
            t = np.arange(n) / 16 + rng.uniform(0, 1)
            wave = [np.sin(2 * np.pi * t), np.sign(np.sin(2 * np.pi * t)), 2 * (t % 1) - 1][k % 3]
            series.append(np.stack([wave * (c + 1) + k * level + rng.normal(0, 0.2, n) for c in range(channels)]))
            labels.append(name)
    return series, labels


# -- the readers ---------------------------------------------------------------------------------
def test_a_multivariate_variable_length_ts_file_with_string_labels_and_comments_reads(tmp_path):
    series, labels = shapes(3, 20, channels=2, vary=True)
    path = write_ts(tmp_path / "Walk_TRAIN.ts", series, labels, classes=["square", "sine", "saw"])
    found = read_series(path)
    assert found.channels == 2 and len(found.values) == 9
    assert found.labels == tuple(labels)
    assert found.declared == ("square", "sine", "saw")  # the header's order, not sorted
    assert [v.shape[1] for v in found.values] == [s.shape[1] for s in series]
    np.testing.assert_allclose(found.values[4], series[4], atol=1e-3)


def test_a_ts_file_without_optional_header_lines_reads(tmp_path):
    path = tmp_path / "bare.ts"
    path.write_text("# only the data\n@data\n1,2,3:a\n\n4,5,6:b\n# a comment between rows\n7,8,9:a\n")
    found = read_series(path)
    assert found.labels == ("a", "b", "a") and found.declared == ()
    np.testing.assert_array_equal(found.values[1], [[4, 5, 6]])


def test_csv_with_a_label_column_first_last_or_named(tmp_path):
    rows = [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    (tmp_path / "first.csv").write_text("a,0,1,2\nb,3,4,5\n")
    (tmp_path / "last.csv").write_text("0,1,2,a\n3,4,5,b\n")
    (tmp_path / "named.csv").write_text("t0,t1,label,t2\n0,1,a,2\n3,4,b,5\n")
    for name, column in (("first.csv", ""), ("last.csv", "last"), ("named.csv", "")):
        found = read_series(tmp_path / name, label_column=column)
        assert found.labels == ("a", "b"), name
        np.testing.assert_array_equal(np.concatenate(found.values)[:, :], rows)


def test_npy_pairs_with_trailing_nan_for_shorter_series(tmp_path):
    x = np.arange(2 * 3 * 5, dtype=np.float64).reshape(2, 3, 5)
    x[1, :, 3:] = np.nan
    np.save(tmp_path / "X_train.npy", x)
    np.save(tmp_path / "y_train.npy", np.array(["up", "down"]))
    found = read_series(tmp_path / "X_train.npy")
    assert found.labels == ("up", "down") and found.channels == 3
    assert [v.shape for v in found.values] == [(3, 5), (3, 3)]


@pytest.mark.parametrize(("name", "text", "words"), [
    ("ragged.csv", "a,1,2,3\nb,1,2\n", ["Line 2", "3 cells where line 1 has 4", "equally long"]),
    ("dims.ts", "@dimensions 2\n@classLabel true a b\n@data\n1,2,3:a\n", ["Line 4", "1 channel", "@dimensions says 2"]),
    ("nan.csv", "a,1,2,3\nb,1,nan,3\n", ["Value 2 of line 2", "missing value"]),
    ("missing.ts", "@data\n1,?,3:a\n", ["Value 2 of line 2", "missing value"]),
    ("label.ts", "@classLabel true a b\n@data\n1,2:a\n1,2:c\n", ["Line 4", "'c'", "@classLabel"]),
    ("empty.ts", "", ["no @data"]),
    ("empty.csv", "\n\n", ["holds no series"]),
    ("words.csv", "a,1,2,3\nb,1,two,3\n", ["line 2", "'two', not a number"]),
    ("nolabels.ts", "@classLabel false\n@data\n1,2,3\n", ["no class labels"]),
    ("stamped.ts", "@timeStamps true\n@data\n(0,1),(1,2):a\n", ["@timeStamps true"]),
    ("channels.ts", "@data\n1,2:3,4:a\n1,2:b\n", ["Line 3", "1 channel where the first series has 2"]),
])
def test_bad_files_get_one_sentence_naming_the_place(tmp_path, name, text, words):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SeriesError) as caught:
        read_series(path)
    message = str(caught.value)
    assert name in message and message.count(". ") == 0 and message.endswith(".")
    for word in words:
        assert word in message


def test_npy_without_its_labels_says_where_they_belong(tmp_path):
    np.save(tmp_path / "X_train.npy", np.zeros((2, 5)))
    with pytest.raises(SeriesError, match=r"not beside it; save them as y_train\.npy"):
        read_series(tmp_path / "X_train.npy")


def test_npy_that_would_need_pickle_is_refused(tmp_path):
    np.save(tmp_path / "X.npy", np.array([[1.0, 2.0]]))
    np.save(tmp_path / "y.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(SeriesError, match="never unpickled"):
        read_series(tmp_path / "X.npy")


# -- the dataset -----------------------------------------------------------------------------------
def sequences(train_file: Path, test_file: Path | None = None, **changes) -> DataConfig:
    return DataConfig(dataset="sequences", train_file=str(train_file), test_file=str(test_file or ""),
                      crop_padding=0, hflip=False, **changes)


def test_a_single_file_is_split_stratified_and_normalised_per_channel(tmp_path):
    series, labels = shapes(10, 32, channels=2)
    path = write_ts(tmp_path / "waves.ts", series, labels)
    ds = data.load_dataset(sequences(path, val_fraction=0.2))
    info = ds.info
    assert info.kind == "series" and info.image_size == (32,) and info.channels == 2 and not info.padded
    assert info.class_names == ("saw", "sine", "square")
    assert (info.train_size, info.val_size, info.test_size) == (18, 6, 6)
    assert torch.bincount(ds.test_y).tolist() == [2, 2, 2]
    assert ds.train_x.dtype == torch.float32 and ds.train_x.shape == (18, 2, 32)
    z = data.normalize(ds.train_x, info.mean, info.std)
    assert z.mean(dim=(0, 2)).abs().max() < 1e-5 and (z.std(dim=(0, 2)) - 1).abs().max() < 0.05
    assert datasets.fit_model(ModelConfig(), info.input_shape).input_axis == 1


def test_train_and_test_files_pad_to_the_longest_and_mark_padding(tmp_path):
    s1, l1 = shapes(4, 24, vary=True, seed=1)
    s2, l2 = shapes(2, 30, vary=True, seed=2)
    s2[0] = np.zeros((1, 30))
    ds = data.load_dataset(sequences(write_ts(tmp_path / "a_TRAIN.ts", s1, l1), write_ts(tmp_path / "a_TEST.ts", s2, l2),
                                     val_fraction=0))
    assert ds.info.name == "a" and ds.info.image_size == (30,) and ds.info.padded
    mask = data.padding_mask(ds.train_x)
    assert mask.sum(1).tolist() == [s.shape[1] for s in s1]
    assert torch.isfinite(data.normalize(ds.train_x, ds.info.mean, ds.info.std)).all()


def test_a_test_label_the_training_file_lacks_is_refused(tmp_path):
    (tmp_path / "train.csv").write_text("a,1,2\nb,2,3\na,1,2\nb,2,1\n")
    (tmp_path / "test.csv").write_text("a,1,2\nz,2,3\n")
    with pytest.raises(data.DatasetError, match=r"labels the training file lacks \(z\)"):
        data.load_dataset(sequences(tmp_path / "train.csv", tmp_path / "test.csv"))


# -- the model: one axis and a mask ----------------------------------------------------------------
def test_padding_does_not_change_the_logits_under_the_mask():
    torch.manual_seed(0)
    model = Perceiver(num_freq_bands=4, depth=1, max_freq=8.0, input_channels=2, input_axis=1, num_latents=8,
                      latent_dim=16, cross_heads=2, latent_heads=2, cross_dim_head=8, latent_dim_head=8,
                      num_classes=3).eval()
    x = torch.randn(1, 40, 2)
    mask = torch.zeros(1, 40, dtype=torch.bool)
    mask[:, :25] = True
    other = x.clone()
    other[:, 25:] = torch.randn(1, 15, 2) * 100  # whatever the padding holds
    with torch.inference_mode():
        torch.testing.assert_close(model(x, mask=mask), model(other, mask=mask))
        assert not torch.allclose(model(x), model(other))  # unmasked, the padding would count


# -- training, checkpoints and prediction -----------------------------------------------------------
TINY = ModelConfig(num_freq_bands=8, max_freq=16.0, depth=1, num_latents=16, latent_dim=32, cross_heads=4,
                   latent_heads=2, cross_dim_head=8, latent_dim_head=8)


def tiny_config(tmp_path: Path, data_cfg: DataConfig, epochs: int = 3) -> Config:
    return Config(name="series", model=TINY, data=data_cfg,
                  train=TrainConfig(optimizer="adamw", lr=3e-3, batch_size=16, epochs=epochs, device="cpu",
                                    threads=1, log_every=5))


def run(cfg: Config, out: Path) -> Finished:
    events = list(train(cfg, out_dir=out))
    done = events[-1]
    assert isinstance(done, Finished), done
    return done


@pytest.mark.slow
def test_a_ts_run_trains_to_a_sane_accuracy_and_its_model_predicts_a_ts_file(tmp_path):
    series, labels = shapes(30, 48, vary=True, level=1.0)  # easy: the classes sit at different levels
    train_file = write_ts(tmp_path / "w_TRAIN.ts", series, labels)
    s_test, l_test = shapes(6, 48, vary=True, seed=9, level=1.0)
    test_file = write_ts(tmp_path / "w_TEST.ts", s_test, l_test)
    done = run(tiny_config(tmp_path, sequences(train_file, test_file), epochs=6), tmp_path / "run")
    assert done.status == "completed", done.message
    predictor = Predictor.from_checkpoint(tmp_path / "run" / "model.safetensors")
    meta = predictor.meta
    assert meta.image_size == (48,) and meta.config.model.input_axis == 1 and meta.config.data.dataset == "sequences"
    results = predictor.predict_series_file(test_file, top_k=2)
    assert [r.path for r in results][:2] == [f"{test_file}#1", f"{test_file}#2"]
    accuracy = np.mean([r.top[0][0] == label for r, label in zip(results, l_test, strict=True)])
    assert accuracy >= 0.8, accuracy  # chance is 1/3
    # The run's own test score is the predictor's, which masks each series' padding: training did too.
    assert done.test_acc == pytest.approx(accuracy)
    image = tmp_path / "photo.png"
    Image.new("RGB", (8, 8)).save(image)
    (wrong,) = predictor.predict([image])
    assert "reads time series, not images" in wrong.error


def test_preset_is_a_sequences_recipe():
    cfg = PRESETS["sequences"]
    assert cfg.data.dataset == "sequences" and cfg.model.input_axis == 1
    assert dataclasses.replace(cfg.data, train_file="x.ts").dataset == "sequences"


@pytest.mark.slow
def test_the_cli_trains_on_npy_pairs_and_predicts_and_describes_series_files(tmp_path, capsys):
    import json

    from perceiver_gui.cli import main

    series, labels = shapes(12, 32, level=1.0)
    np.save(tmp_path / "X.npy", np.stack(series))
    np.save(tmp_path / "y.npy", np.array(labels))
    out = tmp_path / "run"
    tiny = ["--set", "model.num_latents=8", "--set", "model.latent_dim=16", "--set", "model.latent_heads=1",
            "--set", "train.epochs=1", "--set", "train.warmup_epochs=0", "--set", "train.threads=1",
            "--set", "train.device=cpu"]
    assert main(["train", "--preset", "sequences", "--set", f"data.train_file={tmp_path / 'X.npy'}", *tiny,
                 "--out", str(out)]) == 0
    model = str(out / "model.safetensors")
    (tmp_path / "new.csv").write_text("\n".join(f"{label}," + ",".join(f"{v:.3f}" for v in s[0])
                                                for s, label in zip(series[:2], labels[:2], strict=True)) + "\n")
    long_one = np.zeros((1, 40))
    write_ts(tmp_path / "new.ts", [series[0], long_one], ["sine", "saw"])
    capsys.readouterr()
    code = main(["predict", "--model", model, str(tmp_path / "new.csv"), str(tmp_path / "new.ts"), "--json"])
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1  # the series longer than the model's length is not classified
    assert [r["path"].rsplit("/", 1)[-1] for r in records] == ["new.csv#1", "new.csv#2", "new.ts#1", "new.ts#2"]
    assert all("top" in r for r in records[:3]) and "40 long" in records[3]["error"]
    assert main(["info", model]) == 0
    shown = capsys.readouterr().out
    assert "time series of 1 channel(s), up to 32 steps" in shown and "Classes (3): saw, sine, square" in shown
    assert main(["export", "--model", model, "--out", str(tmp_path / "m.onnx")]) == 0
    assert (tmp_path / "m.onnx").is_file()
    # The Mistakes tab: the run's matrix reads, and its cells hold the series behind them.
    from perceiver_gui.core import evaluation

    assert len(evaluation.read_evaluation(out).class_names) == 3
    assert evaluation.load_test_split(out, "validation").kind == "series"


@pytest.mark.slow
def test_a_variable_length_run_stopped_and_resumed_continues_exactly(tmp_path):
    from perceiver_gui.core.events import Step
    from perceiver_gui.core.training import RunControl, resume

    series, labels = shapes(10, 24, vary=True, level=1.0)
    cfg = tiny_config(tmp_path, sequences(write_ts(tmp_path / "v.ts", series, labels)), epochs=3)
    cfg = cfg.with_updates({"train.batch_size": 4, "train.log_every": 1, "train.mixup": 0.4})
    full = [e.loss for e in train(cfg, out_dir=tmp_path / "full") if isinstance(e, Step)]
    control = RunControl()
    first = []
    for event in train(cfg, out_dir=tmp_path / "split", control=control):
        first.append(event)
        if isinstance(event, Step) and event.step == 7:  # mid second epoch
            control.stop()
    assert first[-1].status == "stopped"
    second = list(resume(tmp_path / "split"))
    assert second[-1].status == "completed", second[-1].message
    assert [e.loss for e in first + second if isinstance(e, Step)] == full
