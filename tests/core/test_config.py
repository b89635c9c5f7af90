import json

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
    # The folder preset waits for its folder; every other preset can run as it is.
    assert [key for key, _ in cfg.validate()] == (["data.folder"] if name == "folder" else [])
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
    assert "at least 1" in problems["model.depth"]
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
