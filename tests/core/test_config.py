import dataclasses
import json
import math
import re

import pytest

from perceiver_gui.config import PRESETS, Config, ConfigError, ModelConfig, load_config, preset, save_config


def test_seed_preset_is_the_tutorial_verbatim():
    cfg = preset("seed")
    m, t = cfg.model, cfg.train
    assert (m.input_channels, m.input_axis, m.num_freq_bands, m.max_freq, m.depth) == (3, 2, 6, 10.0, 6)
    assert (m.num_latents, m.latent_dim, m.cross_heads, m.latent_heads) == (32, 128, 1, 2)
    assert (m.cross_dim_head, m.latent_dim_head, m.num_classes) == (8, 8, 10)
    assert (m.attn_dropout, m.ff_dropout, m.weight_tie_layers) == (0.0, 0.0, False)
    assert (t.optimizer, t.lr, t.momentum, t.batch_size, t.epochs) == ("sgd", 0.001, 0.9, 4, 2)
    assert cfg.data.dataset == "cifar10"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_valid_and_round_trips(name, tmp_path):
    cfg = preset(name)
    if name in ("folder", "points"):  # the presets that need the user's folder before they can start
        assert [key for key, _ in cfg.validate()] == ["data.folder"]
        cfg = cfg.with_updates({"data.folder": str(tmp_path)})
    if name == "audio":  # and the one that needs the user's folder of sounds
        assert [key for key, _ in cfg.validate()] == ["data.folder"]
        cfg = cfg.with_updates({"data.folder": str(tmp_path)})
    if name == "sequences":  # and the one that needs the user's file of series
        assert [key for key, _ in cfg.validate()] == ["data.train_file"]
        cfg = cfg.with_updates({"data.train_file": str(tmp_path / "series.ts")})
    assert cfg.validate() == []
    for suffix in (".json", ".toml"):
        path = save_config(cfg, tmp_path / f"{name}{suffix}")
        assert load_config(path) == cfg


def test_model_config_mirrors_perceiver_pytorch_keywords():
    import inspect

    from perceiver_pytorch import Perceiver

    upstream = set(inspect.signature(Perceiver.__init__).parameters) - {"self"}
    ours = set(ModelConfig().perceiver_kwargs())
    assert ours <= upstream
    # Newer upstream extras keep their defaults in our config; the model itself accepts them.
    assert upstream - ours <= {"final_classifier_head", "attn_residual", "attn_residual_rank", "inverted_cross_attn"}


def test_unknown_key_is_rejected_by_name():
    with pytest.raises(ConfigError, match="train.learning_rate"):
        Config.from_dict({"train": {"learning_rate": 0.1}})
    with pytest.raises(ConfigError, match="'colour'"):
        Config.from_dict({"colour": "blue"})


def test_wrong_type_names_the_field():
    with pytest.raises(ConfigError, match="model.depth must be a whole number"):
        Config.from_dict({"model": {"depth": "deep"}})
    with pytest.raises(ConfigError, match="model.depth"):
        Config.from_dict({"model": {"depth": 2.5}})


def test_command_line_strings_are_coerced():
    cfg = Config().with_updates({"train.lr": "0.01", "model.weight_tie_layers": "true", "train.epochs": "3"})
    assert cfg.train.lr == 0.01 and cfg.model.weight_tie_layers is True and cfg.train.epochs == 3


def test_validation_names_the_field_and_what_to_do():
    cfg = Config().with_updates({"train.lr": -1, "model.depth": 0, "train.nesterov": True,
                                 "train.optimizer": "adam"})
    problems = dict(cfg.validate())
    assert "positive" in problems["train.lr"]
    assert "between 1 and 64" in problems["model.depth"]
    assert "SGD" in problems["train.nesterov"]
    with pytest.raises(ConfigError):
        cfg.check()


def test_folder_dataset_needs_a_folder():
    cfg = Config().with_updates({"data.dataset": "folder"})
    assert "image folder" in dict(cfg.validate())["data.folder"]


def test_bad_files_speak(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("model = [", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="Could not read"):
        load_config(tmp_path / "missing.json")
    (tmp_path / "list.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ConfigError, match="table of settings"):
        load_config(tmp_path / "list.json")


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError, match="digits"):
        preset("nope")


def test_names_and_paths_with_any_characters_survive_toml(tmp_path):
    cfg = preset("digits").with_updates({"name": 'é😀 "quoted" \\ tab\t', "data.folder": "/data/猫 🐈/"})
    assert load_config(save_config(cfg, tmp_path / "odd.toml")) == cfg


# -- bounds: every field refuses values no Perceiver user means, naming the field and its range --------
# Values just outside each range, plus the ones that broke things (depth 10000, heads 1e8, seed 1e23,
# grad_clip inf, max_freq 1e308). Booleans have no range; every other field must appear here.
OUT_OF_RANGE = {
    "name": ["x" * 250, "bad\udcffname"],
    "model.num_freq_bands": [-1, 65],
    "model.depth": [0, 10000],
    "model.max_freq": [0.0, -1.0, 1e308, math.inf, math.nan],
    "model.input_channels": [0, 100],
    "model.input_axis": [0, 4],
    "model.num_latents": [0, 10**6],
    "model.latent_dim": [0, 10**6],
    "model.cross_heads": [0, 10**8],
    "model.latent_heads": [0, 10**8],
    "model.cross_dim_head": [0, 10**5],
    "model.latent_dim_head": [0, 10**5],
    "model.num_classes": [1, 10**7],
    "model.attn_dropout": [-0.1, 1.0, math.nan],
    "model.ff_dropout": [-0.1, 1.0, math.inf],
    "model.self_per_cross_attn": [0, 1000],
    "model.implementation": ["slow"],
    "model.positions": ["mesh"],
    "data.dataset": ["imagenet"],
    "data.root": ["/data/\udcff", "/" + "d" * 5000],
    "data.folder": ["/data/\udcff", "/" + "d" * 5000],
    "data.train_file": ["/data/\udcff.ts", "/" + "d" * 5000],
    "data.test_file": ["/data/\udcff.ts", "/" + "d" * 5000],
    "data.label_column": ["\udcff", "c" * 101],
    "data.ucr_problem": ["../etc", "Gun Point", "x" * 65],
    "data.image_size": [3, 513],
    "data.val_fraction": [-0.1, 0.5, 1.0, math.nan],  # 0 is allowed: no validation split
    "data.split_seed": [-1, 2**31],
    "data.test_fraction": [0.0, 1.0, math.nan],
    "data.crop_padding": [-1, 17],
    "data.num_points": [15, 10**6],
    "data.jitter": [-0.01, 0.6, math.nan],
    "data.sample_rate": [999, 192_001],
    "data.clip_seconds": [0.0, -1.0, 61.0, math.nan, math.inf],
    "data.audio_input": ["mfcc"],
    "data.n_mels": [0, 257],
    "data.time_shift": [-0.1, 1.5, math.nan],  # 1.5 is longer than the 1 s clip
    "data.gain_db": [-1.0, 41.0, math.nan],
    "train.optimizer": ["lion"],
    "train.lr": [0.0, 11.0, math.inf, math.nan],
    "train.momentum": [-0.1, 1.0, math.nan],
    "train.weight_decay": [-0.1, 1.5, math.inf],
    "train.schedule": ["linear"],
    "train.warmup_epochs": [-1.0, 1e9, math.nan],
    "train.batch_size": [0, 10**6],
    "train.epochs": [0, 10**6],
    "train.grad_clip": [-1.0, 1e9, math.inf, math.nan],
    "train.label_smoothing": [-0.1, 1.0, math.nan],
    "train.mixup": [-0.1, 11.0, math.inf],
    "train.device": ["tpu", "cuda:x", "cuda:" + "9" * 30],
    "train.precision": ["float8"],
    "train.seed": [-1, 10**23, 2**63],
    "train.threads": [-1, 10**6],
    "train.processes": [0, -2, 10**6],
    "train.log_every": [0, 10**9],
    "train.save_every_s": [-1.0, 1e9, math.nan],
    "train.compile": ["max-autotune", "on"],
    "train.early_stop_patience": [-1, 10**5],
}
BOOLEANS = {"model.weight_tie_layers", "model.fourier_encode_data", "data.download", "data.hflip",
            "data.crop_to_content", "data.rotate", "train.nesterov", "train.tf32"}


def _all_fields() -> set[str]:
    cfg = Config()
    keys = {"name"}
    for section in ("model", "data", "train"):
        keys |= {f"{section}.{f.name}" for f in dataclasses.fields(getattr(cfg, section))}
    return keys


def test_the_bounds_table_covers_every_field():
    assert set(OUT_OF_RANGE) | BOOLEANS == _all_fields()


@pytest.mark.parametrize(("key", "value"), [(k, v) for k, vs in OUT_OF_RANGE.items() for v in vs],
                         ids=lambda x: repr(x)[:30])
def test_every_field_refuses_values_out_of_its_range(key, value):
    cfg = preset("digits").with_updates({key: value})
    problems = dict(cfg.validate())
    assert key in problems, problems
    sentence = problems[key]
    assert sentence.startswith(key) or key.split(".")[-1] in sentence, sentence
    assert sentence.endswith(".") and "\n" not in sentence
    with pytest.raises(ConfigError):
        cfg.check()


@pytest.mark.parametrize("key", [k for k in OUT_OF_RANGE if isinstance(OUT_OF_RANGE[k][-1], int | float)
                                 and not isinstance(OUT_OF_RANGE[k][-1], bool)])
def test_numeric_refusals_say_the_range(key):
    sentence = dict(preset("digits").with_updates({key: OUT_OF_RANGE[key][-1]}).validate())[key]
    assert re.search(r"\d", sentence), sentence  # a bound the user can aim for


def test_generous_values_are_accepted():
    cfg = preset("digits").with_updates({
        "model.depth": 48, "model.num_latents": 2048, "model.latent_dim": 1024, "model.cross_heads": 16,
        "model.latent_heads": 16, "model.latent_dim_head": 128, "model.max_freq": 512.0, "model.num_freq_bands": 64,
        "train.seed": 2**31 - 1, "train.grad_clip": 100.0, "train.batch_size": 4096, "name": "n" * 100,
        "data.folder": "/data/猫 🐈/",
    })
    assert cfg.validate() == []
