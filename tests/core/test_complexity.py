"""Complexity arithmetic against real models: parameter counts and FlopCounterMode."""

from __future__ import annotations

import dataclasses

import perceiver_pytorch
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from perceiver_gui.config import ModelConfig, preset
from perceiver_gui.core.complexity import (
    attention_sizes,
    flops_per_sample,
    parameter_count,
    training_flops_per_sample,
)
from perceiver_gui.core.model import Perceiver

SMALL = ModelConfig(num_freq_bands=3, depth=3, max_freq=6.0, num_latents=8, latent_dim=32, cross_heads=1,
                    latent_heads=2, cross_dim_head=8, latent_dim_head=8, num_classes=7)
CONFIGS = {
    "small": (SMALL, (6, 5)),
    "tied": (dataclasses.replace(SMALL, weight_tie_layers=True, depth=4), (6, 5)),
    "tied, depth 1": (dataclasses.replace(SMALL, weight_tie_layers=True, depth=1), (6, 5)),
    "1d, no fourier, 2 self per cross": (dataclasses.replace(SMALL, input_axis=1, input_channels=4,
                                                             fourier_encode_data=False, self_per_cross_attn=2), (9,)),
    "3d, many heads": (dataclasses.replace(SMALL, input_axis=3, input_channels=2, cross_heads=3, latent_heads=4,
                                           cross_dim_head=16, latent_dim_head=4), (3, 4, 2)),
    "digits preset": (preset("digits").model, (8, 8)),
}


def unique_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # parameters() yields a tied weight once


@pytest.mark.parametrize("name", CONFIGS)
def test_parameter_count_matches_the_real_models(name):
    cfg, _ = CONFIGS[name]
    assert parameter_count(cfg) == unique_parameters(perceiver_pytorch.Perceiver(**cfg.perceiver_kwargs()))
    assert parameter_count(cfg) == unique_parameters(Perceiver(**cfg.perceiver_kwargs()))


def test_seed_parameter_count():
    assert parameter_count(preset("seed").model) == 2_451_014


def counted_flops(model: torch.nn.Module, cfg: ModelConfig, shape: tuple[int, ...], *, backward: bool) -> float:
    batch = 2
    x = torch.randn(batch, *shape, cfg.input_channels)
    with FlopCounterMode(display=False) as counter:
        out = model(x)
        if backward:
            out.sum().backward()
    return counter.get_total_flops() / batch


@pytest.mark.parametrize("name", CONFIGS)
def test_flops_match_flop_counter_on_perceiver_pytorch(name):
    cfg, shape = CONFIGS[name]
    reference = perceiver_pytorch.Perceiver(**cfg.perceiver_kwargs())
    forward = counted_flops(reference, cfg, shape, backward=False)
    assert flops_per_sample(cfg, shape) == pytest.approx(forward, rel=0.01)
    training = counted_flops(reference, cfg, shape, backward=True)
    assert training_flops_per_sample(cfg, shape) == pytest.approx(training, rel=0.01)


def test_our_model_does_no_more_matmul_work_than_the_formula():
    cfg, shape = preset("seed").model, (32, 32)
    ours = counted_flops(Perceiver(**cfg.perceiver_kwargs()), cfg, shape, backward=False)
    # Ours skips the per-sample projection of the Fourier features, so it counts a little less.
    assert 0.9 * flops_per_sample(cfg, shape) < ours <= flops_per_sample(cfg, shape)


def test_seed_attention_sizes_and_note():
    sizes = attention_sizes(preset("seed").model, (32, 32))
    assert (sizes.M, sizes.N, sizes.cross, sizes.latent, sizes.transformer) == (1024, 32, 32_768, 1024, 1_048_576)
    note = sizes.note()
    assert "\n" not in note
    assert "32,768" in note and "1,048,576" in note and "32×" in note


def test_input_shape_must_match_the_input_axes():
    with pytest.raises(ValueError, match="2 positive sizes"):
        flops_per_sample(preset("seed").model, (32,))
    with pytest.raises(ValueError):
        attention_sizes(preset("seed").model, (32, 0))


# -- memory --------------------------------------------------------------------------------------
CPU = torch.device("cpu")
HUGE = {"model.depth": 8, "model.latent_dim": 4096, "model.latent_heads": 16, "model.latent_dim_head": 1024,
        "model.self_per_cross_attn": 6}  # about 24 G parameters, every field within its range


def test_memory_counts_weights_gradients_and_optimizer_state():
    from perceiver_gui.core.complexity import memory_needed

    cfg = preset("digits")
    p = parameter_count(cfg.model)
    assert memory_needed(cfg, (8, 8)).weights == p * 4 * 4  # AdamW: weights, gradients, two moments
    sgd = cfg.with_updates({"train.optimizer": "sgd", "train.momentum": 0.9, "train.weight_decay": 0})
    assert memory_needed(sgd, (8, 8)).weights == p * 4 * 3
    plain = sgd.with_updates({"train.momentum": 0})
    assert memory_needed(plain, (8, 8)).weights == p * 4 * 2


def test_activations_grow_with_the_batch_the_input_and_the_depth():
    from perceiver_gui.core.complexity import memory_needed

    cfg = preset("cifar10")
    one = memory_needed(cfg, (32, 32), batch_size=1).activations
    assert memory_needed(cfg, (32, 32), batch_size=256).activations == pytest.approx(256 * one, rel=1e-6)
    assert memory_needed(cfg, (64, 64), batch_size=1).activations > 1.3 * one
    assert memory_needed(cfg.with_updates({"model.depth": 8}), (32, 32), batch_size=1).activations > 1.8 * one
    assert memory_needed(cfg, (32, 32), batch_size=1, half_precision=True).activations < 0.6 * one
    assert memory_needed(cfg, (32, 32), dataset_samples=60_000).data == 60_000 * 3 * 32 * 32


@pytest.mark.parametrize(("name", "side", "batch"), [("digits", 8, 64), ("cifar10", 32, 8), ("seed", 32, 8)])
def test_the_activation_estimate_covers_what_autograd_keeps(name, side, batch):
    """The tensors autograd saves for backward, measured exactly, are below the estimate and not far below it
    (the estimate also covers the transient buffers of backward; see the calibration in complexity.py)."""
    from perceiver_gui.core.complexity import memory_needed
    from perceiver_gui.core.model import build_model

    cfg = preset(name)
    model = build_model(cfg.model)
    x = torch.rand(batch, side, side, cfg.model.input_channels)
    saved: dict[int, int] = {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x).sum()
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept = sum(n for ptr, n in saved.items() if ptr not in weights)
    estimate = memory_needed(cfg, (side, side), batch_size=batch).activations
    assert kept <= estimate <= 2 * kept, (kept, estimate)


def test_a_model_too_big_for_the_machine_is_refused_with_what_to_lower():
    from perceiver_gui.core.complexity import memory_refusal

    cfg = preset("digits").with_updates(HUGE)
    assert parameter_count(cfg.model) > 20e9
    sentence = memory_refusal(cfg, (8, 8), CPU, available=16 * 10**9)
    assert sentence.startswith("This model needs about ") and "GB at batch 16; this machine has 16.0 GB" in sentence
    assert "model.depth" in sentence and "G parameters" in sentence
    big_batch = preset("cifar10").with_updates({"train.batch_size": 65536})
    sentence = memory_refusal(big_batch, (32, 32), CPU, available=16 * 10**9)
    assert "batch 65,536" in sentence and "train.batch_size" in sentence
    assert memory_refusal(preset("digits"), (8, 8), CPU, available=1 * 10**9) is None
    assert memory_refusal(preset("cifar10"), (32, 32), torch.device("cuda"), available=16 * 10**9) is None


def test_this_machine_reports_its_memory():
    from perceiver_gui.core.complexity import device_memory

    assert device_memory(CPU) > 10**8


def test_training_refuses_a_huge_model_before_allocating_it(tmp_path):
    import time

    from perceiver_gui.core.events import Finished
    from perceiver_gui.core.training import train
    from tests.core.train_fixtures import tiny_digits

    start = time.monotonic()
    events = list(train(tiny_digits(**HUGE), out_dir=tmp_path / "run"))  # 24 G parameters would take 400 GB
    assert time.monotonic() - start < 30
    assert isinstance(events[-1], Finished) and events[-1].status == "failed"
    assert "This model needs about" in events[-1].message
    assert not (tmp_path / "run" / "model.safetensors").exists()
