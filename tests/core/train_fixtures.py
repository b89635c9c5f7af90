"""A tiny but real training config on the bundled digits dataset: seconds on one CPU thread."""

from perceiver_gui.config import preset
from perceiver_gui.core.events import Finished


def tiny_digits(**updates):
    cfg = preset("digits").with_updates({
        "name": "tiny",
        "model.depth": 1, "model.num_latents": 8, "model.latent_dim": 16, "model.latent_heads": 1,
        "model.latent_dim_head": 8, "model.cross_dim_head": 8, "model.num_freq_bands": 2, "model.cross_heads": 1,
        "train.mixup": 0.0,
        "train.epochs": 2, "train.batch_size": 32, "train.threads": 1,
        # The exactness tests (same seed -> same losses, stop + resume == uninterrupted) hold on the CPU;
        # on a GPU the backward of flash and memory-efficient attention is not deterministic.
        "train.device": "cpu",
        # A resume file at every epoch end, as the tests of interruptions and crashes expect; the default
        # (a save at most every minute) has its own test.
        "train.save_every_s": 0,
        # Constant, fairly high lr: a tiny Perceiver leaves chance level within a few epochs.
        "train.schedule": "constant", "train.lr": 0.01, "data.crop_padding": 0,
    })
    return cfg.with_updates(updates) if updates else cfg


def finished_run(out, **updates):
    """A finished run of tiny_digits in `out` that logged every step; returns `out`."""
    from perceiver_gui.core.training import train

    events = list(train(tiny_digits(**{"train.log_every": 1, **updates}), out_dir=out))
    assert isinstance(events[-1], Finished) and events[-1].status == "completed", events[-1]
    return out
