"""Point cloud files (core/points.py): meshes and point lists in their real formats, and one sentence per bad file."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from perceiver_gui.core.points import PointsError, point_files, read_points


def _box(tmp_path, name: str, **export) -> str:
    mesh = trimesh.creation.box(extents=(4.0, 2.0, 1.0))
    mesh.apply_translation((10.0, -5.0, 3.0))  # far off the origin and not unit-sized: normalising must fix both
    path = tmp_path / name
    mesh.export(path, **export)
    return path


@pytest.mark.parametrize(("name", "export"), [
    ("box.ply", {}), ("box_ascii.ply", {"encoding": "ascii"}), ("box.off", {}), ("box.obj", {}), ("box.stl", {}),
])
def test_each_mesh_format_is_sampled_on_its_surface_and_normalised(tmp_path, name, export):
    path = _box(tmp_path, name, **export)
    if name == "box_ascii.ply":
        assert path.read_bytes().startswith(b"ply\nformat ascii")
    if name == "box.ply":
        assert b"binary_little_endian" in path.read_bytes()[:200]
    points = read_points(path, 500)
    assert points.shape == (500, 3) and points.dtype == np.float32
    assert np.allclose(points.mean(0), 0.0, atol=1e-5)
    assert np.isclose(np.linalg.norm(points, axis=1).max(), 1.0)
    # On the surface of a 4 × 2 × 1 box: every point has one coordinate at the box's half-extent (after
    # scaling by the farthest point), so the cloud is the box's skin and not its inside.
    raw = (points - points.min(0)) / (points.max(0) - points.min(0))  # each axis 0..1
    on_a_face = (np.isclose(raw, 0.0, atol=1e-4) | np.isclose(raw, 1.0, atol=1e-4)).any(axis=1)
    assert on_a_face.all()


def test_the_same_file_gives_the_same_points_every_time(tmp_path):
    path = _box(tmp_path, "box.off")
    assert np.array_equal(read_points(path, 256), read_points(path, 256))
    assert not np.array_equal(read_points(path, 256), read_points(path, 256, seed=1))


def test_point_lists_are_subsampled_or_padded_to_num_points(tmp_path):
    rng = np.random.default_rng(0)
    cloud = rng.normal(size=(300, 3)) * 50.0 + 7.0
    xyz = tmp_path / "scan.xyz"
    xyz.write_text("# x y z nx ny nz\n" + "\n".join(" ".join(f"{v:.6f}" for v in (*p, 0, 0, 1)) for p in cloud))
    many = read_points(xyz, 100)
    assert many.shape == (100, 3)
    assert np.isclose(np.linalg.norm(many, axis=1).max(), 1.0)
    few = read_points(xyz, 1000)
    assert few.shape == (1000, 3)
    assert len(np.unique(few, axis=0)) == 300  # every point kept, some repeated: no invented points
    csv = tmp_path / "scan.txt"
    csv.write_text("\n".join(",".join(f"{v:.6f}" for v in p) for p in cloud))
    assert np.allclose(read_points(csv, 1000), few, atol=1e-5)  # commas read as spaces, same points
    npy = tmp_path / "scan.npy"
    np.save(npy, cloud.astype(np.float32))
    assert read_points(npy, 300).shape == (300, 3)


def test_a_ply_of_vertices_alone_is_read_as_a_point_cloud(tmp_path):
    path = tmp_path / "scan.ply"
    trimesh.PointCloud(np.random.default_rng(1).normal(size=(50, 3))).export(path)
    assert read_points(path, 64).shape == (64, 3)


@pytest.mark.parametrize(("name", "content", "words"), [
    ("flat.off", "OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n", "is a mesh with no faces"),
    ("flat.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\n", "is a mesh with no faces"),
    ("empty.xyz", "# nothing\n\n", "holds no points"),
    ("ragged.xyz", "0 0 0\n1 2 3\n4 5\n", "Line 3 of ragged.xyz has 2 values and the lines before it 3"),
    ("nan.xyz", "0 0 0\n1 nan 3\n4 5 6\n", "NaN or infinite value in point 2"),
    ("nan.obj", "v 0 0 nan\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "has vertices that are NaN or infinite"),
    ("words.txt", "0 0 0\nup down left\n", "Line 2 of words.txt holds something other than numbers"),
    ("broken.ply", "this is no ply at all", "broken.ply can't be read as a mesh"),
    ("broken.off", "OFF\n3 1\n0 0\n", "broken.off can't be read as a mesh"),
    ("dot.xyz", "1 1 1\n1 1 1\n", "are at one place"),
])
def test_bad_files_get_one_sentence_naming_them(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(PointsError) as caught:
        read_points(path, 32)
    message = str(caught.value)
    assert words in message
    assert name in message and message.count(". ") == 0 and "\n" not in message


def test_an_npy_that_is_not_a_point_list_and_a_folder_are_refused(tmp_path):
    flat = tmp_path / "flat.npy"
    np.save(flat, np.zeros(10))
    with pytest.raises(PointsError, match=r"flat\.npy holds an array of shape \(10,\)"):
        read_points(flat, 8)
    (tmp_path / "folder.xyz").mkdir()
    with pytest.raises(PointsError, match=r"^folder\.xyz is a folder, not a mesh or point file\.$"):
        read_points(tmp_path / "folder.xyz", 8)
    os.mkfifo(tmp_path / "pipe.ply")  # a named pipe would block a reader forever: refused by its kind
    with pytest.raises(PointsError, match=r"^pipe\.ply can't be read: it is a named pipe \(FIFO\), not a regular"):
        read_points(tmp_path / "pipe.ply", 8)
    with pytest.raises(PointsError, match="not a mesh or point file"):
        read_points(tmp_path / "photo.png", 8)


def test_point_files_lists_every_supported_file_and_skips_hidden_ones(tmp_path):
    for name in ("a/x.ply", "a/y.XYZ", "b/c/z.npy", "a/.hidden.off", ".git/w.obj", "a/notes.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    assert [p.relative_to(tmp_path).as_posix() for p in point_files(tmp_path)] == ["a/x.ply", "a/y.XYZ", "b/c/z.npy"]


# -- the points_folder dataset, augmentation, training and prediction ------------------------------
SHAPES = {"box": lambda: trimesh.creation.box(extents=(1.0, 0.6, 0.3)),
          "cone": lambda: trimesh.creation.cone(radius=0.5, height=1.2),
          "sphere": lambda: trimesh.creation.icosphere(subdivisions=2)}
FORMATS = ("a.ply", "b.off", "c.obj", "d.xyz", "e.ply")  # e.ply in binary, a.ply in ASCII


def points_folder(root, per_class: int = 5, seed: int = 0):
    """root/<shape>/<n><suffix>: each shape scaled, turned about z and moved at random, in every format."""
    rng = np.random.default_rng(seed)
    for name, make in SHAPES.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            mesh = make()
            mesh.apply_scale(rng.uniform(0.5, 3.0))
            mesh.apply_transform(trimesh.transformations.rotation_matrix(rng.uniform(0, 2 * np.pi), (0, 0, 1)))
            mesh.apply_translation(rng.normal(size=3))
            fmt = FORMATS[i % len(FORMATS)]
            path = root / name / f"{i}{fmt}"
            if fmt.endswith(".xyz"):
                cloud = mesh.sample(700, seed=i)
                path.write_text("\n".join(f"{x:.5f} {y:.5f} {z:.5f}" for x, y, z in cloud))
            else:
                mesh.export(path, **({"encoding": "ascii"} if fmt == "a.ply" else {}))
    return root


def points_config(folder, **updates):
    from perceiver_gui.config import preset

    cfg = preset("points").with_updates({
        "data.folder": str(folder), "data.root": str(Path(folder).parent / "data"),  # the cache, not the user's
        "data.num_points": 128, "data.val_fraction": 0.0, "data.test_fraction": 0.2,
        "model.depth": 1, "model.num_latents": 16, "model.latent_dim": 32, "model.latent_heads": 2,
        "train.batch_size": 8, "train.epochs": 8, "train.threads": 1, "train.device": "cpu", "train.log_every": 5,
    })
    return cfg.with_updates(updates) if updates else cfg


def test_a_points_folder_loads_every_format_as_centred_clouds_and_skips_a_broken_file(tmp_path):
    from perceiver_gui.core.data import load_dataset, normalize

    folder = points_folder(tmp_path / "shapes")
    (folder / "box" / "broken.off").write_text("OFF\n3 1\n0 0\n")
    dataset = load_dataset(points_config(folder).data)
    info = dataset.info
    assert info.kind == "points" and info.class_names == ("box", "cone", "sphere")
    assert info.image_size == (128,) and info.channels == 3 and info.train_size + info.test_size == 15
    assert dataset.train_x.shape == (info.train_size, 3, 128) and dataset.train_x.dtype == torch.float32
    radii = dataset.train_x.norm(dim=1).amax(1)
    torch.testing.assert_close(radii, torch.ones_like(radii))
    assert len(dataset.skipped) == 1
    assert dataset.skipped[0].startswith("box/broken.off: broken.off can't be read as a mesh")
    # Normalisation keeps the coordinates: they are the model's positions.
    assert torch.equal(normalize(dataset.test_x, info.mean, info.std), dataset.test_x)
    assert all(path.startswith(str(folder)) for path in dataset.test_files) and len(dataset.test_files) == 3


def test_rotation_turns_clouds_about_the_up_axis_and_jitter_moves_points_by_sigma():
    from perceiver_gui.config import DataConfig
    from perceiver_gui.core.data import augment_points

    x = torch.randn(64, 3, 200)
    off = DataConfig(dataset="points_folder")
    assert augment_points(x, off, generator=torch.Generator().manual_seed(0)) is x
    turned = augment_points(x, DataConfig(dataset="points_folder", rotate=True), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(turned[:, 2], x[:, 2])  # up stays up
    torch.testing.assert_close(turned[:, :2].norm(dim=1), x[:, :2].norm(dim=1))  # distances from the axis kept
    assert (turned[:, :2] - x[:, :2]).abs().amax() > 0.5  # and they did turn
    again = augment_points(x, DataConfig(dataset="points_folder", rotate=True), generator=torch.Generator().manual_seed(0))
    assert torch.equal(turned, again)  # seeded: a resumed run draws the same
    noisy = augment_points(x, DataConfig(dataset="points_folder", jitter=0.02), generator=torch.Generator().manual_seed(0))
    assert float((noisy - x).std()) == pytest.approx(0.02, rel=0.05)


def test_point_augmentation_and_image_augmentation_are_refused_on_the_wrong_data():
    from perceiver_gui.config import preset

    problems = dict(preset("digits").with_updates({"data.rotate": True}).validate())
    assert "augment point clouds only" in problems["data.rotate"]
    problems = dict(points_config("/somewhere").with_updates({"data.hflip": True}).validate())
    assert "image augmentations" in problems["data.crop_padding"]
    problems = dict(points_config("").validate())
    assert "Choose a folder of point clouds" in problems["data.folder"]


@pytest.mark.slow
def test_a_points_run_learns_shapes_and_its_model_predicts_mesh_and_point_files(tmp_path):
    from PIL import Image

    from perceiver_gui.core.events import Finished
    from perceiver_gui.core.inference import Predictor
    from perceiver_gui.core.training import train

    folder = points_folder(tmp_path / "shapes", per_class=10)
    events = list(train(points_config(folder, **{"data.rotate": True, "data.jitter": 0.01}),
                        out_dir=tmp_path / "run"))
    done = events[-1]
    assert isinstance(done, Finished) and done.status == "completed", done.message
    assert done.test_acc >= 0.8, done.test_acc  # chance is 1/3
    predictor = Predictor.from_checkpoint(tmp_path / "run" / "model.safetensors")
    assert predictor.takes_points and predictor.meta.image_size == (128,)
    assert predictor.meta.config.model.input_axis == 3 and predictor.meta.config.data.num_points == 128
    # The model file alone reproduces training's preprocessing: a test file reads as the very cloud it trained on.
    from perceiver_gui.core.data import load_dataset

    dataset = load_dataset(predictor.meta.config.data)
    for path, cloud in zip(dataset.test_files, dataset.test_x, strict=True):
        assert np.array_equal(predictor.read_cloud(path), cloud.T.numpy())
    fresh = points_folder(tmp_path / "new", per_class=2, seed=7)
    files = sorted(fresh.rglob("*.*"))
    results = predictor.predict_points([*files, tmp_path / "missing.ply"], top_k=2)
    correct = [r.top[0][0] == path.parent.name for r, path in zip(results, files, strict=False)]
    assert np.mean(correct) >= 0.8, [(r.path, r.top) for r in results]
    assert results[-1].error == "missing.ply does not exist; check its name and folder."
    image = tmp_path / "photo.png"
    Image.new("RGB", (8, 8)).save(image)
    (wrong,) = predictor.predict([image])
    assert "reads point clouds, not images" in wrong.error


@pytest.mark.slow
def test_the_cli_trains_the_points_preset_and_predicts_and_describes_point_files(tmp_path, capsys):
    import json

    from perceiver_gui.cli import main

    folder = points_folder(tmp_path / "shapes", per_class=5)
    out = tmp_path / "run"
    tiny = ["--set", "model.depth=1", "--set", "model.num_latents=8", "--set", "model.latent_dim=16",
            "--set", "data.num_points=64", "--set", "train.epochs=1", "--set", "train.warmup_epochs=0",
            "--set", "train.threads=1", "--set", "train.device=cpu", "--set", "data.val_fraction=0"]
    assert main(["train", "--preset", "points", "--set", f"data.folder={folder}", "--set",
                 f"data.root={tmp_path / 'data'}", *tiny, "--out", str(out)]) == 0
    model = str(out / "model.safetensors")
    (tmp_path / "bad.off").write_text("OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n")
    (tmp_path / "empty").mkdir()
    capsys.readouterr()
    code = main(["predict", "--model", model, str(folder / "cone"), str(tmp_path / "bad.off"),
                 str(tmp_path / "empty"), "--json"])
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1
    assert [r["path"].rsplit("/", 1)[-1] for r in records] == ["0a.ply", "1b.off", "2c.obj", "3d.xyz", "4e.ply",
                                                                "bad.off", "empty"]
    assert all(len(r["top"]) == 3 for r in records[:5])
    assert "is a mesh with no faces" in records[5]["error"] and "holds no mesh or point files" in records[6]["error"]
    assert main(["info", model]) == 0
    shown = capsys.readouterr().out
    assert "Input: point clouds of 64 points (x, y, z)" in shown and "turned about the up (z) axis" in shown
    assert "Classes (3): box, cone, sphere" in shown


@pytest.mark.slow
def test_a_points_run_stopped_and_resumed_gives_the_losses_of_an_uninterrupted_one(tmp_path):
    from perceiver_gui.core.events import Step
    from perceiver_gui.core.training import RunControl, resume, train

    folder = points_folder(tmp_path / "shapes", per_class=4)
    cfg = points_config(folder, **{"train.epochs": 3, "train.warmup_epochs": 0, "train.batch_size": 4,
                                   "train.log_every": 1, "data.num_points": 32, "model.latent_dim": 16,
                                   "data.rotate": True, "data.jitter": 0.02, "train.save_every_s": 0})
    full = [e.loss for e in train(cfg, out_dir=tmp_path / "full") if isinstance(e, Step)]
    control = RunControl()
    first = []
    for event in train(cfg, out_dir=tmp_path / "split", control=control):
        first.append(event)
        if isinstance(event, Step) and event.step == 3:  # mid second epoch
            control.stop()
    assert first[-1].status == "stopped"
    second = list(resume(tmp_path / "split"))
    assert second[-1].status == "completed", second[-1].message
    assert [e.loss for e in first + second if isinstance(e, Step)] == full


def test_modelnet_s_train_and_test_folders_are_its_splits_and_clouds_are_read_once(tmp_path):
    from perceiver_gui.core.data import open_dataset

    root = tmp_path / "ModelNet"
    for split, per_class in (("train", 4), ("test", 2)):
        points_folder(tmp_path / split, per_class=per_class, seed=len(split))
        for shape in SHAPES:
            (root / shape).mkdir(parents=True, exist_ok=True)
            (tmp_path / split / shape).rename(root / shape / split)
    cfg = points_config(root).data

    def load(data):
        events = open_dataset(data)
        logs = []
        while True:
            try:
                logs.append(next(events).message)
            except StopIteration as done:
                return done.value, logs

    dataset, logs = load(cfg)
    assert dataset.info.test_size == 3 * 2 and dataset.info.train_size == 3 * 4
    assert all("/test/" in path for path in dataset.test_files)
    assert any(message.startswith("Reading 18 point clouds") for message in logs)
    again, logs = load(cfg)
    assert any(message.startswith("Using the point clouds of") for message in logs), logs
    assert torch.equal(again.test_x, dataset.test_x) and again.test_files == dataset.test_files
    _, logs = load(dataclasses.replace(cfg, num_points=64))  # other points: read again
    assert any(message.startswith("Reading 18 point clouds") for message in logs)


def test_a_points_model_file_holds_its_number_of_points_and_a_damaged_one_is_named(tmp_path):
    from perceiver_gui.config import Config, ModelConfig
    from perceiver_gui.core.checkpoints import ModelMeta, load_model, save_model
    from perceiver_gui.core.model import build_model

    model = ModelConfig(input_axis=3, positions="points", depth=1, num_latents=4, latent_dim=8, num_classes=3)
    cfg = Config(model=model, data=points_config(tmp_path).data)
    state = build_model(model).state_dict()

    def meta(size):
        return ModelMeta(config=cfg, class_names=("a", "b", "c"), mean=(0.0,) * 3, std=(1.0,) * 3, image_size=size,
                         channels=3)

    save_model(tmp_path / "m.safetensors", state, meta((128,)))
    assert load_model(tmp_path / "m.safetensors")[1].image_size == (128,)
    with pytest.raises(ValueError, match="an invalid image size or series length"):
        save_model(tmp_path / "bad.safetensors", state, meta((128, 3)))
    assert not (tmp_path / "bad.safetensors").exists()  # refused before anything is written


def test_modelnet_s_off_files_with_the_counts_on_the_off_line_are_read(tmp_path):
    # Many of ModelNet's .off files start "OFF8 12 0", with no line break after OFF.
    box = trimesh.creation.box()
    lines = [f"OFF{len(box.vertices)} {len(box.faces)} 0"]
    lines += [" ".join(f"{v:g}" for v in vertex) for vertex in box.vertices]
    lines += ["3 " + " ".join(str(i) for i in face) for face in box.faces]
    (tmp_path / "chair_0001.off").write_text("\n".join(lines) + "\n")
    points = read_points(tmp_path / "chair_0001.off", 64)
    extent = points.max(0) - points.min(0)
    assert points.shape == (64, 3) and np.allclose(extent, extent.mean(), rtol=0.1)  # the cube, read whole


def test_a_clouds_attention_is_a_map_over_its_points_from_a_file_or_from_the_split(tmp_path):
    from perceiver_gui.config import Config, ModelConfig
    from perceiver_gui.core.checkpoints import ModelMeta, save_model
    from perceiver_gui.core.inference import Predictor
    from perceiver_gui.core.model import build_model

    folder = points_folder(tmp_path / "shapes", per_class=1)
    model = ModelConfig(input_axis=3, positions="points", depth=2, cross_heads=2, num_latents=6, latent_dim=8,
                        num_classes=3)
    torch.manual_seed(0)
    meta = ModelMeta(config=Config(model=model, data=points_config(folder).data), class_names=("box", "cone", "sphere"),
                     mean=(0.0,) * 3, std=(1.0,) * 3, image_size=(128,), channels=3)
    save_model(tmp_path / "m.safetensors", build_model(model).state_dict(), meta)
    predictor = Predictor.from_checkpoint(tmp_path / "m.safetensors")
    file = folder / "cone" / "0a.ply"
    result = predictor.points_attention(file, file.name, top_k=2)
    (predicted,) = predictor.predict_points([file], top_k=2)
    assert result.prediction.path == file.name and dict(result.prediction.top) == pytest.approx(dict(predicted.top))
    assert np.array_equal(result.image.numpy(), predictor.read_cloud(file))  # (P, 3): the cloud the model read
    for weights in result.maps:  # one weight per point, per head and latent
        assert tuple(weights.shape) == (2, 6, 128)
        assert torch.allclose(weights.sum(dim=-1), torch.ones(()), atol=1e-4)
    # A cloud of the split ((3, P), as the dataset holds it) gives the same, as the Mistakes tab asks.
    again = predictor.points_attention(predictor.read_cloud(file).T, "validation point cloud #3")
    assert again.prediction.top[0] == result.prediction.top[0]
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(again.maps, result.maps, strict=True))
    with pytest.raises(PointsError, match=r"^photo\.png is not a mesh or point file"):
        predictor.points_attention(tmp_path / "photo.png", "photo.png")
    with pytest.raises(PointsError, match=r"is 3×64 values and the model reads 3×128"):
        predictor.points_attention(np.zeros((3, 64), np.float32), "a cloud")


def test_modelnet10_is_downloaded_once_checked_by_what_it_holds_and_read_with_its_split(tmp_path, monkeypatch):
    # No checksum is published for ModelNet10.zip, so the zip must hold ModelNet10/<class>/train|test/*.off;
    # the rest (macOS forks, a member aiming outside the data folder) is never written. Nothing touches the
    # network: the answer is a zip written here.
    import io
    import zipfile

    from perceiver_gui.config import DataConfig
    from perceiver_gui.core import data
    from tests.core.test_ucr import _events, _serve

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for k, shape in enumerate(("bed", "chair")):
            for split, n in (("train", 4), ("test", 2)):
                for i in range(n):
                    mesh = trimesh.creation.box(extents=(1.0 + k, 1.0, 0.5 + 0.1 * i)) if k else \
                        trimesh.creation.icosphere(subdivisions=1, radius=1.0 + 0.1 * i)
                    archive.writestr(f"ModelNet10/{shape}/{split}/{shape}_{i:04d}.off",
                                     trimesh.exchange.off.export_off(mesh))
        archive.writestr("__MACOSX/ModelNet10/bed/._bed_0001.off", b"resource fork")
        archive.writestr("ModelNet10/../../evil.off", b"OFF\n0 0 0\n")
        archive.writestr("ModelNet10/README.txt", b"notes")
    monkeypatch.delenv("PERCEIVER_GUI_OFFLINE", raising=False)  # the suite's guard; urlopen is faked below
    asked = _serve(monkeypatch, {data._MODELNET_URL + "ModelNet10.zip": buffer.getvalue()})
    root = tmp_path / "data"
    cfg = DataConfig(dataset="modelnet10", root=str(root), num_points=64)
    events, dataset = _events(cfg)
    assert asked == [data._MODELNET_URL + "ModelNet10.zip"]
    assert dataset.info.name == "ModelNet10" and dataset.info.class_names == ("bed", "chair")
    assert dataset.info.test_size == 4 and all("/test/" in path for path in dataset.test_files)
    assert any(type(e).__name__ == "DownloadProgress" for e in events)
    assert not (tmp_path / "evil.off").exists() and not (root / "__MACOSX").exists()
    assert sorted(p.name for p in (root / "ModelNet10").iterdir()) == ["bed", "chair"]
    _, again = _events(cfg)  # extracted once: no second download
    assert asked == [data._MODELNET_URL + "ModelNet10.zip"] and torch.equal(again.test_x, dataset.test_x)


def test_a_zip_that_is_not_modelnet10_is_refused_in_one_sentence(tmp_path, monkeypatch):
    import io
    import zipfile

    from perceiver_gui.config import DataConfig
    from perceiver_gui.core import data
    from perceiver_gui.core.data import DatasetError, load_dataset
    from tests.core.test_ucr import _serve

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("something/else.txt", b"not meshes")
    monkeypatch.delenv("PERCEIVER_GUI_OFFLINE", raising=False)
    _serve(monkeypatch, {data._MODELNET_URL + "ModelNet10.zip": buffer.getvalue()})
    with pytest.raises(DatasetError, match=r"holds no ModelNet10/<class>/train or test meshes; delete it") as err:
        load_dataset(DataConfig(dataset="modelnet10", root=str(tmp_path), num_points=64))
    assert "\n" not in str(err.value)
