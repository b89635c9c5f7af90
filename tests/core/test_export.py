"""Getting data and models out: metrics as CSV, models as ONNX."""

import csv
import json
import math
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from perceiver_gui.core import runs
from perceiver_gui.core.export import ExportError, export_onnx, metrics_csv
from tests.core.train_fixtures import finished_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return finished_run(tmp_path_factory.mktemp("export") / "run")


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# -- CSV ------------------------------------------------------------------------------------------
def test_csv_has_a_row_for_every_step_and_epoch_with_the_logged_values(run, tmp_path):
    records = [runs.metrics_json(r) for r in runs.read_metrics(run).records]
    out = tmp_path / "metrics.csv"
    assert metrics_csv(run, out) == len(records)
    rows = read_csv(out)
    steps = [r for r in records if r["type"] == "step"]
    epochs = [r for r in records if r["type"] == "epoch"]
    tests = [r for r in records if r["type"] == "test"]
    assert len(steps) == 2 * 25 and len(epochs) == 2  # every step of two epochs, logged with log_every=1
    assert len(tests) == 1 and records[-1] == tests[0]  # the chosen model on test, once, at the end
    assert len(rows) == len(steps) + len(epochs) + 1
    assert [r["type"] for r in rows] == [r["type"] for r in records]
    for row, record in zip(rows, records, strict=True):
        for key, value in record.items():
            if key in ("type", "per_class_acc", "confusion", "selected_on"):  # numbers only reach the CSV
                continue
            if isinstance(value, bool):
                assert row[key] == str(value)
            elif isinstance(value, float) and math.isnan(value):
                assert row[key] == "nan"
            else:
                assert float(row[key]) == value, key  # full precision: equal, not approximately
    # Per-class accuracy (an epoch's on validation, the test row's on test): one column per digit, named by its
    # class; confusion matrices stay in metrics.jsonl.
    class_columns = [k for k in rows[0] if k.startswith("acc_")]
    assert class_columns == [f"acc_{d}" for d in range(10)]
    assert [float(rows[-2][c]) for c in class_columns] == pytest.approx(epochs[-1]["per_class_acc"], abs=0)
    assert [float(rows[-1][c]) for c in class_columns] == pytest.approx(tests[0]["per_class_acc"], abs=0)
    assert rows[-2]["test_acc"] == "" and rows[-1]["val_acc"] == ""  # each row holds its own split only
    assert rows[0]["acc_0"] == ""  # a step row has no accuracy
    assert "confusion" not in rows[0]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_an_exported_csv_is_readable_by_others_like_any_file_the_user_saves(run, tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        metrics_csv(run, tmp_path / "metrics.csv")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "metrics.csv").stat().st_mode) == 0o644  # not 0o600, as a temporary file is


def test_csv_of_a_missing_or_unfinished_folder_is_a_sentence(tmp_path):
    with pytest.raises(ExportError, match="There is no run folder at"):
        metrics_csv(tmp_path / "nowhere", tmp_path / "out.csv")
    (tmp_path / "notarun").mkdir()
    with pytest.raises(ExportError, match="is not a run folder"):
        metrics_csv(tmp_path / "notarun", tmp_path / "out.csv")
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / runs.CONFIG_FILE).write_text("{}")
    (fresh / runs.METRICS_FILE).write_text("")
    with pytest.raises(ExportError, match="has no metrics yet"):
        metrics_csv(fresh, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_csv_from_a_tampered_run_holds_only_numbers(tmp_path):
    """A run folder from someone else cannot plant spreadsheet formulas, and odd lines are skipped."""
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / runs.CONFIG_FILE).write_text("{}")
    (folder / runs.MODEL_FILE).write_bytes(b"not a model")  # class names fall back to numbers
    lines = [
        {"type": "step", "epoch": 1, "step": 1, "loss": "=HYPERLINK(\"http://evil\")", "lr": 0.1, "time": 1e308},
        {"type": "step", "epoch": 1, "step": 2, "loss": {"nested": 1}, "lr": [1, 2], "grad_norm": 2.5},
        {"type": "shell", "cmd": "=1+1"},
        ["not", "a", "record"],
        {"type": "epoch", "epoch": 1, "step": 2, "test_acc": float("nan"), "per_class_acc": [0.5, "=2"],
         "is_best": True},
    ]
    text = "".join(json.dumps(r) + "\n" for r in lines) + '{"type": "step", "step": 3, "loss'  # torn last line
    (folder / runs.METRICS_FILE).write_text(text)
    out = tmp_path / "odd.csv"
    assert metrics_csv(folder, out) == 3
    rows = read_csv(out)
    cells = [v for row in rows for v in row.values()]
    assert not any(v.startswith(("=", "+", "@")) for v in cells)
    assert rows[0]["loss"] == "nan" and rows[0]["time"] == "1e+308"  # a damaged number is unknown: nan
    assert rows[1]["grad_norm"] == "2.5"  # a numeric field this version does not know is kept
    assert rows[2]["test_acc"] == "" and rows[2]["is_best"] == "True"  # an older run's unknown test accuracy
    assert "acc_0" not in rows[2]  # per-class accuracies with a formula among them are skipped whole


def test_csv_to_a_place_that_cannot_be_written_is_a_sentence(run, tmp_path):
    with pytest.raises(ExportError, match="is a folder"):
        metrics_csv(run, tmp_path)
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(ExportError, match="Could not write"):
        metrics_csv(run, blocker / "metrics.csv")


# -- ONNX -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def onnx_file(run, tmp_path_factory):
    return export_onnx(run / runs.MODEL_FILE, tmp_path_factory.mktemp("onnx") / "digits.onnx")


def preprocess_from_metadata(path, props):
    """What a user of the .onnx file does, from its metadata alone: no Perceiver GUI code."""
    height, width = json.loads(props["image_size"])
    img = Image.open(path).convert(props["color_mode"]).resize((width, height), Image.Resampling.BILINEAR)
    x = np.asarray(img, dtype=np.float32).reshape(height, width, int(props["channels"])) / 255.0
    assert props["input_layout"] == "NHWC"
    return (x - np.array(json.loads(props["mean"]), np.float32)) / np.array(json.loads(props["std"]), np.float32)


@pytest.mark.slow
def test_onnx_model_gives_pytorchs_probabilities_for_the_same_images(run, onnx_file, tmp_path):
    import onnx
    import onnxruntime

    from perceiver_gui.core.inference import Predictor
    from tests.ui.helpers import digit_images

    props = {p.key: p.value for p in onnx.load(str(onnx_file)).metadata_props}
    predictor = Predictor.from_checkpoint(run / runs.MODEL_FILE)
    assert json.loads(props["class_names"]) == list(predictor.meta.class_names)
    assert "bilinear" in props["preprocessing"] and json.loads(props["config"])["name"] == "tiny"

    paths = digit_images(tmp_path, count=5)
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    batch = np.stack([preprocess_from_metadata(p, props) for p in paths])
    for x in (batch, batch[:1]):  # any batch size
        logits, probs = session.run(["logits", "probabilities"], {"image": x})
        expected = predictor.predict(paths[: len(x)], top_k=10)
        for row, pred in zip(probs, expected, strict=True):
            names = json.loads(props["class_names"])
            assert {names[i]: p for i, p in enumerate(row)} == pytest.approx(dict(pred.top), abs=1e-4)
        assert np.allclose(probs, torch.from_numpy(logits).softmax(-1).numpy(), atol=1e-6)


def test_onnx_export_of_a_file_that_is_not_a_model_is_a_sentence(tmp_path):
    from perceiver_gui.core.checkpoints import CheckpointError

    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x80\x04 a pickle")
    with pytest.raises(CheckpointError, match="pickle"):
        export_onnx(bad, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_onnx_export_without_the_extra_says_what_to_install(run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(ExportError, match=r"perceiver-gui\[onnx\]"):
        export_onnx(run / runs.MODEL_FILE, tmp_path / "out.onnx")


def test_an_exporter_failure_names_its_cause_in_one_clean_line(run, tmp_path, monkeypatch):
    # torch.onnx's errors open with a coloured heading; the cause is at the root of the chain.
    def failing_export(*args, **kwargs):
        try:
            raise AttributeError("'_OpNamespace' 'prims' object has no attribute 'sum'")
        except AttributeError as cause:
            raise RuntimeError("Failed to export the model with torch.export. \x1b[96mThis is step 1/3\x1b[0m of "
                               "exporting the model to ONNX. Next steps:\n- Modify the model code") from cause

    monkeypatch.setattr(torch.onnx, "export", failing_export)
    with pytest.raises(ExportError) as caught:
        export_onnx(run / runs.MODEL_FILE, tmp_path / "out.onnx")
    message = str(caught.value)
    assert "\x1b" not in message and "\n" not in message
    assert message.endswith("(AttributeError: '_OpNamespace' 'prims' object has no attribute 'sum').")
    assert not (tmp_path / "out.onnx").exists()


def test_csv_cells_cannot_hold_spreadsheet_formulas(run, tmp_path):
    """A tampered run folder (metric names, class names) must not plant a formula in a spreadsheet."""
    import dataclasses
    import shutil

    from perceiver_gui.core.checkpoints import load_model, save_model

    hostile = tmp_path / "hostile"
    shutil.copytree(run, hostile)
    formulas = ["=HYPERLINK(\"http://x\",\"y\")", "+cmd|' /C calc'!A0", "-2+3", "@SUM(1+1)", "\t=1", "\r=1"]
    records = (run / runs.METRICS_FILE).read_text(encoding="utf-8").splitlines()
    with open(hostile / runs.METRICS_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({**json.loads(records[-1]), **{f: 1.5 for f in formulas}}) + "\n")
    state, meta = load_model(run / runs.MODEL_FILE)
    names = tuple(formulas) + tuple(str(i) for i in range(len(meta.class_names) - len(formulas)))
    save_model(hostile / runs.MODEL_FILE, state, dataclasses.replace(meta, class_names=names))

    out = tmp_path / "m.csv"
    metrics_csv(hostile, out)
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert len(rows) == 1 + len(records) + 1  # a CR in a name does not start a row of its own
    cells = [cell for row in rows for cell in row]
    dangerous = [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_plain_number(c)]
    assert dangerous == []
    header = next(csv.reader(open(out, newline="", encoding="utf-8")))
    assert "'=HYPERLINK(\"http://x\",\"y\")" in header
    assert any(h.startswith("acc_") for h in header)


def _is_plain_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.lstrip("-").replace(".", "", 1).replace("e", "", 1).replace("-", "").isdigit()


# -- ONNX of a series model -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def series_run(tmp_path_factory):
    from tests.core.series_fixtures import train_series_run

    return train_series_run(tmp_path_factory.mktemp("series"))


@pytest.mark.slow
def test_a_series_model_exports_to_onnx_that_reads_series_with_their_mask_as_predict_does(series_run, tmp_path):
    import onnx
    import onnxruntime

    from perceiver_gui.core.inference import Predictor
    from perceiver_gui.core.series import read_series

    out = export_onnx(series_run / runs.MODEL_FILE, tmp_path / "waves.onnx")
    proto = onnx.load(str(out))
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["input_layout"] == "NLC" and 16 <= int(props["series_length"]) <= 32 and props["channels"] == "2"
    assert [i.name for i in proto.graph.input] == ["series", "mask"] and "'mask'" in props["preprocessing"]
    # What a user of the file does, from its metadata alone: normalise, pad, mask.
    test_file = series_run.parent.parent / "waves_TEST.ts"
    found = read_series(test_file)
    length = int(props["series_length"])
    mean, std = (np.array(json.loads(props[k]), np.float32) for k in ("mean", "std"))
    x = np.zeros((len(found.values), length, 2), np.float32)
    mask = np.zeros((len(found.values), length), bool)
    for i, v in enumerate(found.values):
        x[i, :v.shape[1]] = (v.T - mean) / std
        mask[i, :v.shape[1]] = True
    assert not mask.all()  # some are shorter: the mask matters
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    names = json.loads(props["class_names"])
    expected = Predictor.from_checkpoint(series_run / runs.MODEL_FILE).predict_series_file(test_file, top_k=3)
    for rows in (slice(None), slice(0, 1)):  # any batch size
        (probs,) = session.run(["probabilities"], {"series": x[rows], "mask": mask[rows]})
        for row, pred in zip(probs, expected[rows], strict=True):
            assert {names[i]: p for i, p in enumerate(row)} == pytest.approx(dict(pred.top), abs=1e-4)


# -- ONNX of a sound model ------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(("audio_input", "name", "layout"), [
    ("waveform", "waveform", "NLC"), ("mel_frames", "mel_frames", "NLC"), ("log_mel", "log_mel", "NHWC")])
def test_a_sound_model_exports_to_onnx_that_reads_what_its_metadata_says_as_predict_does(tmp_path, audio_input, name,
                                                                                        layout):
    import onnx
    import onnxruntime

    from perceiver_gui.core import audio
    from perceiver_gui.core.datasets import MelSettings
    from perceiver_gui.core.inference import Predictor
    from tests.core.sound_fixtures import train_sound_run

    run_dir = train_sound_run(tmp_path, audio_input)
    out = export_onnx(run_dir / runs.MODEL_FILE, tmp_path / "sounds.onnx")
    proto = onnx.load(str(out))
    props = {p.key: p.value for p in proto.metadata_props}
    assert [i.name for i in proto.graph.input] == [name] and props["input_layout"] == layout
    assert props["audio_input"] == audio_input and int(props["sample_rate"]) == 8000
    assert "resample" in props["preprocessing"] and f"'{name}'" in props["preprocessing"]
    # What a user of the file does, from its metadata alone: decode, resample, crop or pad, (log-mel), normalise.
    files = sorted((tmp_path / "sounds" / "low").iterdir())[:3] + sorted((tmp_path / "sounds" / "high").iterdir())[:2]
    rate, samples = int(props["sample_rate"]), int(props["clip_samples"])
    clips = torch.from_numpy(np.stack([audio.read_clip(f, sample_rate=rate, clip_seconds=samples / rate)
                                       for f in files]))
    if audio_input == "waveform":
        x = clips[:, :, None].numpy()
    else:
        assert props["window"] == "hann" and "slaney" in props["mel_filterbank"]
        settings = MelSettings(sample_rate=rate, n_fft=int(props["n_fft"]), hop=int(props["hop_length"]),
                               n_mels=int(props["n_mels"]), f_min=float(props["f_min"]), f_max=float(props["f_max"]))
        mels = audio.log_mel(clips, settings).numpy()  # (N, n_mels, frames)
        x = mels.transpose(0, 2, 1) if audio_input == "mel_frames" else mels[..., None]
    mean, std = (np.array(json.loads(props[k]), np.float32) for k in ("mean", "std"))
    x = ((x - mean) / std).astype(np.float32)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    names = json.loads(props["class_names"])
    expected = Predictor.from_checkpoint(run_dir / runs.MODEL_FILE).predict(files, top_k=3)
    for rows in (slice(None), slice(0, 1)):  # any batch size
        (probs,) = session.run(["probabilities"], {name: x[rows]})
        for row, pred in zip(probs, expected[rows], strict=True):
            assert {names[i]: p for i, p in enumerate(row)} == pytest.approx(dict(pred.top), abs=1e-4)


# -- ONNX of a point cloud model ------------------------------------------------------------------
def test_a_points_model_exports_to_onnx_that_reads_xyz_clouds_as_its_metadata_says_as_predict_does(tmp_path):
    import onnx
    import onnxruntime

    from perceiver_gui.config import Config, ModelConfig
    from perceiver_gui.core.checkpoints import ModelMeta, save_model
    from perceiver_gui.core.inference import Predictor
    from perceiver_gui.core.model import build_model
    from perceiver_gui.core.points import read_points
    from tests.core.test_points import points_config, points_folder

    folder = points_folder(tmp_path / "shapes", per_class=2)
    model = ModelConfig(input_axis=3, positions="points", depth=1, num_latents=4, latent_dim=8, num_classes=3)
    torch.manual_seed(0)
    meta = ModelMeta(config=Config(model=model, data=points_config(folder).data), class_names=("box", "cone", "sphere"),
                     mean=(0.0,) * 3, std=(1.0,) * 3, image_size=(128,), channels=3)
    save_model(tmp_path / "m.safetensors", build_model(model).state_dict(), meta)
    out = export_onnx(tmp_path / "m.safetensors", tmp_path / "points.onnx")
    proto = onnx.load(str(out))
    props = {p.key: p.value for p in proto.metadata_props}
    assert [i.name for i in proto.graph.input] == ["points"] and props["input_layout"] == "NPC"
    assert int(props["num_points"]) == 128 and props["centred"] == "true" and props["scale"] == "unit sphere"
    assert "sample" in props["preprocessing"] and "'points'" in props["preprocessing"]
    # What a user of the file does: sample num_points of each file's points, centred in the unit sphere, xyz last.
    files = sorted(folder.rglob("*.*"))[:5]
    x = np.stack([read_points(f, int(props["num_points"])) for f in files])  # (N, P, 3)
    assert np.allclose(x.mean(axis=1), 0, atol=1e-5) and np.allclose(np.linalg.norm(x, axis=2).max(axis=1), 1)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    names = json.loads(props["class_names"])
    expected = Predictor.from_checkpoint(tmp_path / "m.safetensors").predict_points(files, top_k=3)
    assert len({pred.top[0][1] for pred in expected}) > 1  # the clouds' probabilities differ: positions count
    for rows in (slice(None), slice(0, 1)):  # any batch size
        (probs,) = session.run(["probabilities"], {"points": x[rows]})
        for row, pred in zip(probs, expected[rows], strict=True):
            assert {names[i]: p for i, p in enumerate(row)} == pytest.approx(dict(pred.top), abs=1e-4)
