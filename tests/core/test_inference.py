"""The predictor: real image files in, top-k out, with the training preprocessing and per-file errors."""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from perceiver_gui.config import Config, ModelConfig
from perceiver_gui.core.checkpoints import CheckpointError, ModelMeta, save_model
from perceiver_gui.core.images import ImageError, image_files
from perceiver_gui.core.inference import Prediction, Predictor
from perceiver_gui.core.model import build_model

CLASSES = ("cat", "dog", "emu", "fox")
MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def tiny_model_config(**changes) -> ModelConfig:
    return dataclasses.replace(
        ModelConfig(num_freq_bands=2, depth=2, max_freq=4.0, input_channels=3, num_latents=6, latent_dim=16,
                    cross_heads=2, latent_heads=2, cross_dim_head=8, latent_dim_head=8, num_classes=len(CLASSES)),
        **changes)


def make_checkpoint(path: Path, *, size=(8, 6), seed=0, channels=3, **model_changes) -> Path:
    cfg = Config(name="tiny", model=tiny_model_config(input_channels=channels, **model_changes))
    torch.manual_seed(seed)
    model = build_model(cfg.model)
    meta = ModelMeta(config=cfg, class_names=CLASSES, mean=MEAN[:channels], std=STD[:channels], image_size=size,
                     channels=channels, summary={"best_acc": 0.5})
    return save_model(path, model.state_dict(), meta)


@pytest.fixture(scope="module")
def predictor(tmp_path_factory) -> Predictor:
    return Predictor.from_checkpoint(make_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.safetensors"))


def picture(seed: int, size=(20, 14), mode="RGB") -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels).convert(mode)


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    (folder / "sub" / "deeper").mkdir(parents=True)
    (folder / ".hidden").mkdir()
    picture(1).save(folder / "a.png")
    picture(2).save(folder / "b.JPG", quality=95)
    picture(3, mode="RGBA").save(folder / "sub" / "c.png")
    picture(4, mode="L").save(folder / "sub" / "deeper" / "d.bmp")
    (folder / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not really a png")
    (folder / "notes.txt").write_text("not an image")
    picture(5).save(folder / ".hidden" / "e.png")
    picture(6).save(folder / "._f.png")
    return folder


def expected_probs(predictor: Predictor, img: Image.Image) -> torch.Tensor:
    """The preprocessing written out independently: resize, scale to 0..1, normalise, channels last."""
    h, w = predictor.meta.image_size
    x = torch.from_numpy(np.array(img.convert("RGB").resize((w, h), Image.Resampling.BILINEAR))).float() / 255
    x = (x - torch.tensor(MEAN)) / torch.tensor(STD)  # (H, W, C): already the Perceiver's layout
    with torch.no_grad():
        return predictor.model(x[None]).softmax(-1)[0]


def check_top(pred: Prediction, k: int) -> None:
    assert pred.error == "" and len(pred.top) == k
    probs = [p for _, p in pred.top]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert len({label for label, _ in pred.top}) == k and all(label in CLASSES for label, _ in pred.top)


def assert_same(a: Prediction, b: Prediction) -> None:
    assert [label for label, _ in a.top] == [label for label, _ in b.top]
    assert [p for _, p in a.top] == pytest.approx([p for _, p in b.top], abs=1e-6)


def test_predicts_image_files_with_the_training_preprocessing(predictor: Predictor, image_dir: Path):
    a, b = image_dir / "a.png", image_dir / "b.JPG"
    preds = predictor.predict([a, str(b)], top_k=2)
    assert [p.path for p in preds] == [str(a), str(b)]
    for pred, path in zip(preds, (a, b), strict=True):
        check_top(pred, 2)
        probs = expected_probs(predictor, Image.open(path))
        assert [label for label, _ in pred.top] == [CLASSES[i] for i in probs.argsort(descending=True)[:2]]
        assert [p for _, p in pred.top] == pytest.approx(probs.sort(descending=True).values[:2].tolist(), abs=1e-5)


def test_a_corrupt_file_gets_an_error_and_the_others_are_classified(predictor: Predictor, image_dir: Path):
    sources = [image_dir / "a.png", image_dir / "sub" / "broken.png", image_dir / "notes.txt",
               image_dir / "missing.png", image_dir / "sub" / "c.png"]
    preds = predictor.predict(sources, top_k=3)
    assert [bool(p.error) for p in preds] == [False, True, True, True, False]
    for pred in preds[1:4]:
        assert pred.top == () and pred.error.startswith("Can't read ") and pred.path in pred.error
    assert "does not exist" in preds[3].error
    check_top(preds[0], 3)
    check_top(preds[4], 3)


def test_pil_images_and_bytes_give_the_same_answer_as_the_file(predictor: Predictor, image_dir: Path):
    path = image_dir / "a.png"
    from_file, from_pil, from_bytes = predictor.predict([path, Image.open(path).copy(), path.read_bytes()])
    assert from_pil.path == "" and from_bytes.path == ""
    for other in (from_pil, from_bytes):
        check_top(other, len(from_file.top))
        assert_same(other, from_file)


def test_batching_does_not_change_the_answers(predictor: Predictor, image_dir: Path):
    files = image_files(image_dir)
    together = predictor.predict(files, top_k=4)
    one_by_one = predictor.predict(files, top_k=4, batch_size=1)
    assert [p.path for p in together] == [p.path for p in one_by_one]
    for a, b in zip(together, one_by_one, strict=True):
        assert a.error == b.error
        assert_same(a, b)


def test_top_k_is_capped_at_the_number_of_classes(predictor: Predictor):
    pred, = predictor.predict([picture(7)], top_k=50)
    check_top(pred, len(CLASSES))
    assert sum(p for _, p in pred.top) == pytest.approx(1.0)
    assert len(predictor.predict([picture(7)], top_k=1)[0].top) == 1
    with pytest.raises(ValueError):
        predictor.predict([picture(7)], top_k=0)


def test_folder_expands_recursively_to_sorted_image_files(predictor: Predictor, image_dir: Path):
    assert image_files(image_dir) == [image_dir / "a.png", image_dir / "b.JPG", image_dir / "sub" / "broken.png",
                                      image_dir / "sub" / "c.png", image_dir / "sub" / "deeper" / "d.bmp"]
    batches = predictor.predict_folder(image_dir, top_k=2, batch_size=2)
    assert isinstance(batches, types.GeneratorType)  # a caller can show progress between batches
    batches = list(batches)
    assert [len(b) for b in batches] == [2, 2, 1]
    flat = [p for b in batches for p in b]
    assert [Path(p.path).name for p in flat] == ["a.png", "b.JPG", "broken.png", "c.png", "d.bmp"]
    assert [bool(p.error) for p in flat] == [False, False, True, False, False]
    with pytest.raises(NotADirectoryError):
        image_files(image_dir / "a.png")


def test_grey_model_takes_colour_images_and_tied_weights_load(tmp_path: Path):
    path = make_checkpoint(tmp_path / "grey.safetensors", channels=1, depth=3, weight_tie_layers=True)
    predictor = Predictor.from_checkpoint(path)
    assert predictor.meta.channels == 1
    for pred in predictor.predict([picture(8), picture(9, mode="RGBA"), picture(10, mode="L")], top_k=2):
        check_top(pred, 2)


def test_a_reference_checkpoint_predicts_like_the_reference_model(tmp_path: Path):
    cfg = Config(name="ref", model=tiny_model_config(implementation="reference"))
    torch.manual_seed(3)
    reference = build_model(cfg.model).eval()
    meta = ModelMeta(config=cfg, class_names=CLASSES, mean=MEAN, std=STD, image_size=(8, 6), channels=3)
    predictor = Predictor.from_checkpoint(save_model(tmp_path / "ref.safetensors", reference.state_dict(), meta))
    img = picture(11)
    pred, = predictor.predict([img], top_k=4)
    with torch.no_grad():
        probs = expected_probs(predictor, img)
        h, w = meta.image_size
        x = torch.from_numpy(np.array(img.resize((w, h), Image.Resampling.BILINEAR))).float() / 255
        ref_probs = reference(((x - torch.tensor(MEAN)) / torch.tensor(STD))[None]).softmax(-1)[0]
    assert torch.allclose(probs, ref_probs, atol=1e-5)
    assert dict(pred.top) == pytest.approx({c: float(p) for c, p in zip(CLASSES, ref_probs, strict=True)}, abs=1e-5)


def test_weights_that_do_not_fit_their_config_are_refused(tmp_path: Path):
    cfg = Config(name="tiny", model=tiny_model_config())
    other = build_model(tiny_model_config(latent_dim=32))
    meta = ModelMeta(config=cfg, class_names=CLASSES, mean=MEAN, std=STD, image_size=(8, 6), channels=3)
    path = save_model(tmp_path / "m.safetensors", other.state_dict(), meta)
    with pytest.raises(CheckpointError, match="do not fit the model"):
        Predictor.from_checkpoint(path)


@pytest.mark.parametrize("changes", [{"depth": 10**6}, {"cross_dim_head": 10**9}, {"latent_dim": 10**7}])
def test_a_config_too_big_for_its_weights_is_refused_before_building_it(tmp_path: Path, changes, monkeypatch):
    cfg = Config(name="tiny", model=tiny_model_config(**changes))
    small = build_model(tiny_model_config())
    meta = ModelMeta(config=cfg, class_names=CLASSES, mean=MEAN, std=STD, image_size=(8, 6), channels=3)
    with monkeypatch.context() as hostile:  # save_model refuses such a config; a hostile file is written anyway
        hostile.setattr(Config, "validate", lambda self: [])
        path = save_model(tmp_path / "m.safetensors", small.state_dict(), meta)
    with pytest.raises(CheckpointError, match="damaged|do not fit the model|cannot be built"):
        Predictor.from_checkpoint(path)  # quickly, and without allocating the model it describes


def test_not_a_checkpoint_is_refused(tmp_path: Path):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="PyTorch zip checkpoint"):
        Predictor.from_checkpoint(path)


def test_attention_maps_cover_the_input_grid(predictor: Predictor, image_dir: Path):
    maps = predictor.attention(image_dir / "a.png", top_k=3)
    cfg = predictor.meta.config.model
    assert_same(maps.prediction, predictor.predict([image_dir / "a.png"], top_k=3)[0])
    assert maps.image.dtype == torch.uint8 and tuple(maps.image.shape) == (3, 8, 6)
    assert len(maps.maps) == cfg.depth
    for layer in maps.maps:
        assert tuple(layer.shape) == (cfg.cross_heads, cfg.num_latents, 8, 6)
        assert torch.allclose(layer.sum(dim=(-2, -1)), torch.ones(cfg.cross_heads, cfg.num_latents), atol=1e-5)
    with pytest.raises(ImageError):
        predictor.attention(b"garbage")


def test_a_model_trained_on_cropped_objects_crops_what_it_classifies_too(tmp_path):
    # data.crop_to_content: the predictor cuts the object out as the folder was read for training, so a
    # small square in a corner and a big one in the middle get the same answer; a model without it does not.
    from PIL import ImageDraw

    from perceiver_gui.config import DataConfig

    def square(box) -> Image.Image:
        img = Image.new("RGB", (40, 40), "white")
        ImageDraw.Draw(img).rectangle(box, fill=(200, 40, 40))
        return img

    small, big = square((1, 1, 10, 10)), square((6, 6, 33, 33))
    answers = {}
    for crop in (True, False):
        path = make_checkpoint(tmp_path / f"{crop}.safetensors", size=(16, 16))
        meta = Predictor.from_checkpoint(path).meta
        cfg = dataclasses.replace(meta.config, data=DataConfig(dataset="folder", folder="shapes", crop_to_content=crop))
        torch.manual_seed(0)
        save_model(path, build_model(cfg.model).state_dict(), dataclasses.replace(meta, config=cfg))
        answers[crop] = Predictor.from_checkpoint(path).predict([small, big], top_k=4)
    def gap(pair: list[Prediction]) -> float:
        first, second = (dict(p.top) for p in pair)
        return max(abs(first[label] - second[label]) for label in CLASSES)

    assert gap(answers[True]) < 0.2 * gap(answers[False])
