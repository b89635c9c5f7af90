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
