"""What a model configuration costs, by arithmetic alone (no model is built, no torch needed).

FLOPs count matrix multiplications only (every Linear, and the two attention products), a
multiply-add being 2 FLOPs, in the Perceiver's own formulation (the key/value projection reads all
input channels plus Fourier features at every input position). Not counted: biases, LayerNorm,
softmax, GELU and other elementwise work, the Fourier features and the mean pool; they are a few
per cent at most. Training is counted as 3 × forward (each matmul's backward is two matmuls of the
same size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from perceiver_gui.config import ModelConfig

__all__ = ["AttentionSizes", "attention_sizes", "flops_per_sample", "parameter_count", "training_flops_per_sample"]

FF_MULT = 4  # feed-forward hidden width is 4 × latent_dim (GEGLU: the first linear is twice that)


def _context_dim(cfg: ModelConfig) -> int:
    """Features per input position: the channels plus, per axis, sin and cos per band and the coordinate."""
    fourier = cfg.input_axis * (2 * cfg.num_freq_bands + 1) if cfg.fourier_encode_data else 0
    return cfg.input_channels + fourier


def _positions(cfg: ModelConfig, input_shape: tuple[int, ...]) -> int:
    if len(input_shape) != cfg.input_axis or any(int(s) < 1 for s in input_shape):
        raise ValueError(
            f"input_shape must be {cfg.input_axis} positive sizes (one per input axis), not {tuple(input_shape)}.")
    return math.prod(int(s) for s in input_shape)


def _linear(n_in: int, n_out: int, bias: bool = True) -> int:
    return n_in * n_out + (n_out if bias else 0)


def _layer_norm(dim: int) -> int:
    return 2 * dim


def _attention_params(query_dim: int, context_dim: int, heads: int, dim_head: int) -> int:
    inner = heads * dim_head
    return _linear(query_dim, inner, False) + _linear(context_dim, 2 * inner, False) + _linear(inner, query_dim)


def _feed_forward_params(dim: int) -> int:
    return _linear(dim, dim * FF_MULT * 2) + _linear(dim * FF_MULT, dim)


def parameter_count(cfg: ModelConfig) -> int:
    """Trainable parameters of the model; tied layers (weight_tie_layers) count once."""
    d, c = cfg.latent_dim, _context_dim(cfg)
    cross = (_layer_norm(d) + _layer_norm(c) + _attention_params(d, c, cfg.cross_heads, cfg.cross_dim_head)
             + _layer_norm(d) + _feed_forward_params(d))
    latent = (_layer_norm(d) + _attention_params(d, d, cfg.latent_heads, cfg.latent_dim_head)
              + _layer_norm(d) + _feed_forward_params(d))
    block = cross + cfg.self_per_cross_attn * latent
    distinct_blocks = min(cfg.depth, 2) if cfg.weight_tie_layers else cfg.depth
    head = _layer_norm(d) + _linear(d, cfg.num_classes)
    return cfg.num_latents * d + distinct_blocks * block + head


def _attention_flops(queries: int, keys: int, query_dim: int, context_dim: int, heads: int, dim_head: int) -> int:
    inner = heads * dim_head
    projections = queries * query_dim * inner + keys * context_dim * 2 * inner + queries * inner * query_dim
    scores_and_mix = 2 * heads * queries * keys * dim_head
    return 2 * (projections + scores_and_mix)


def flops_per_sample(cfg: ModelConfig, input_shape: tuple[int, ...]) -> int:
    """Forward FLOPs for one input of spatial shape `input_shape`, e.g. (32, 32) for CIFAR-10."""
    m, n, d = _positions(cfg, input_shape), cfg.num_latents, cfg.latent_dim
    feed_forward = 2 * n * (d * d * FF_MULT * 2 + d * FF_MULT * d)
    cross = _attention_flops(n, m, d, _context_dim(cfg), cfg.cross_heads, cfg.cross_dim_head) + feed_forward
    latent = _attention_flops(n, n, d, d, cfg.latent_heads, cfg.latent_dim_head) + feed_forward
    return cfg.depth * (cross + cfg.self_per_cross_attn * latent) + 2 * d * cfg.num_classes


def training_flops_per_sample(cfg: ModelConfig, input_shape: tuple[int, ...]) -> int:
    """Forward + backward FLOPs for one input: 3 × forward."""
    return 3 * flops_per_sample(cfg, input_shape)


@dataclass(frozen=True, slots=True)
class AttentionSizes:
    """Entries of the attention matrices, per sample and head, for one input shape."""

    M: int  # input positions (pixels)
    N: int  # latents
    cross: int  # M × N: each cross-attention (latents attend to the input)
    latent: int  # N × N: each latent self-attention
    transformer: int  # M × M: what one self-attention over the raw input would need

    def note(self) -> str:
        """One line for a person: how the Perceiver's attention compares with a transformer's."""
        times = self.M / self.N  # transformer / cross
        compared = f"{times:,.0f}× more" if times >= 1 else f"{1 / times:,.0f}× fewer"
        return (f"Cross-attention scores {self.N:,} latents × {self.M:,} inputs = {self.cross:,} "
                f"({_bytes(self.cross * 4)} float32 per image and head); a transformer over the same inputs "
                f"would need {self.transformer:,} ({_bytes(self.transformer * 4)}), {compared}.")


def _bytes(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}".replace(".0 ", " ")
        n /= 1024
    raise AssertionError("unreachable")


def attention_sizes(cfg: ModelConfig, input_shape: tuple[int, ...]) -> AttentionSizes:
    m, n = _positions(cfg, input_shape), cfg.num_latents
    return AttentionSizes(M=m, N=n, cross=m * n, latent=n * n, transformer=m * m)
