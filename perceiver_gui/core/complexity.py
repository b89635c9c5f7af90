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
import os
from dataclasses import dataclass

from perceiver_gui.config import Config, ModelConfig
from perceiver_gui.core.datasets import kind_of

__all__ = ["AttentionSizes", "MemoryNeed", "attention_sizes", "device_memory", "flops_per_sample", "memory_needed",
           "memory_refusal", "parameter_count", "training_flops_per_sample"]

FF_MULT = 4  # feed-forward hidden width is 4 × latent_dim (GEGLU: the first linear is twice that)


def _context_dim(cfg: ModelConfig) -> int:
    """Features per input position: the channels plus, per axis, sin and cos per band and the coordinate."""
    fourier = cfg.input_axis * (2 * cfg.num_freq_bands + 1) if cfg.fourier_encode_data else 0
    return cfg.input_channels + fourier


def _positions(cfg: ModelConfig, input_shape: tuple[int, ...]) -> int:
    """M, the input positions: the grid's cells, or a cloud's points (input_shape (P,) whatever input_axis)."""
    axes = 1 if cfg.positions == "points" else cfg.input_axis
    if len(input_shape) != axes or any(int(s) < 1 for s in input_shape):
        raise ValueError(f"input_shape must be {axes} positive sizes (one per input axis), not {tuple(input_shape)}.")
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

    def note(self, noun: str = "image") -> str:
        """One line for a person: how the Perceiver's attention compares with a transformer's (per `noun`,
        what one sample is: datasets.KINDS' noun)."""
        times = self.M / self.N  # transformer / cross
        compared = f"{times:,.0f}× more" if times >= 1 else f"{1 / times:,.0f}× fewer"
        return (f"Cross-attention scores {self.N:,} latents × {self.M:,} inputs = {self.cross:,} "
                f"({_bytes(self.cross * 4)} float32 per {noun} and head); a transformer over the same inputs "
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


# -- memory ------------------------------------------------------------------------------------
# Optimizer state per parameter, in values: AdamW and Adam keep two moments, SGD one momentum buffer.
_OPTIMIZER_STATE = {"adam": 2, "adamw": 2, "sgd": 1}
# Calibration: the counted activations against the measured peak of training on CPU (torch 2.14.1, one
# thread, AdamW; the rise of ru_maxrss over two steps after a warm-up step of batch 1, which covers the
# activations, gradients and optimizer state; AMD EPYC, 2 cores, 2026-12-01):
#   digits preset, batch 256:   measured 148 MB, estimated 144 MB
#   digits preset, batch 1024:  measured 566 MB, estimated 569 MB
#   cifar10 preset, batch 64:   measured 2,109 MB, estimated 1,975 MB
#   cifar10 preset, batch 128:  measured 3,963 MB, estimated 3,889 MB
#   seed preset (SGD), batch 32: measured 179 MB, estimated 201 MB
# so the count is within 11 % either way; the factor rounds it up by 10 % to err on the side of refusing
# late rather than early. The tensors autograd itself saves (saved_tensors_hooks, exact) are 71–80 % of the
# estimate for the same three presets; the rest of the peak is backward's transient buffers. (CUDA's fused attention keeps less, so a GPU estimate is on the high side.)
ACTIVATION_FACTOR = 1.1
GB = 1e9


@dataclass(frozen=True, slots=True)
class MemoryNeed:
    """Bytes one training run holds at its peak, by part."""

    weights: int  # parameters, gradients and optimizer state, float32
    activations: int  # what the forward pass keeps for backward, at the batch size
    data: int  # the decoded dataset (uint8 images, float32 series), which lives on the training device too

    @property
    def total(self) -> int:
        return self.weights + self.activations + self.data


def _activation_values(cfg: ModelConfig, input_shape: tuple[int, ...]) -> int:
    """Values the forward pass keeps for backward, per sample (upper end: attention scores included)."""
    m, n, d, c = _positions(cfg, input_shape), cfg.num_latents, cfg.latent_dim, _context_dim(cfg)
    ic, il = cfg.cross_heads * cfg.cross_dim_head, cfg.latent_heads * cfg.latent_dim_head
    # LayerNorm in, Linear to 8d (GEGLU), its two halves' product and GELU, Linear out: 18 values per latent
    feed_forward = n * d * (1 + 2 * FF_MULT + FF_MULT + FF_MULT + 1)
    cross = (m * 2 * ic  # keys and values of every input position
             + n * (d + 2 * ic + d)  # normed latents, queries, attention output, projection
             + cfg.cross_heads * n * m  # the attention weights
             + feed_forward)
    latent = n * (d + 3 * il + il + d) + cfg.latent_heads * n * n + feed_forward
    return m * c + cfg.depth * (cross + cfg.self_per_cross_attn * latent) + n * d


def memory_needed(cfg: Config, input_shape: tuple[int, ...], *, batch_size: int | None = None,
                  dataset_samples: int = 0, value_bytes: int = 1, half_precision: bool = False) -> MemoryNeed:
    """An estimate of a training run's peak memory: parameters + gradients + optimizer state (float32),
    the activations kept for backward at the batch size, and the dataset: `dataset_samples` samples of
    `value_bytes` per value (1 for uint8 images, 4 for float32 series).

    Activations are counted per layer from the shapes (`_activation_values`, scaled by
    ACTIVATION_FACTOR), 4 bytes each, or 2 with `half_precision` (bfloat16/float16 autocast).
    """
    batch = cfg.train.batch_size if batch_size is None else batch_size
    params = parameter_count(cfg.model)
    state = _OPTIMIZER_STATE.get(cfg.train.optimizer, 2)
    if cfg.train.optimizer == "sgd" and cfg.train.momentum == 0:
        state = 0
    per_value = 2 if half_precision else 4
    activations = math.ceil(_activation_values(cfg.model, input_shape) * ACTIVATION_FACTOR) * per_value * batch
    data = dataset_samples * cfg.model.input_channels * math.prod(int(s) for s in input_shape) * value_bytes
    return MemoryNeed(weights=params * (2 + state) * 4, activations=activations, data=data)


def device_memory(device) -> int | None:
    """Bytes a training run may use on `device` (a torch.device): free memory on CUDA, the recommended
    maximum on MPS, total RAM on CPU; None where it can't be known. The one function here that asks torch."""
    import torch

    try:
        if device.type == "cuda":
            return torch.cuda.mem_get_info(device)[0]
        if device.type == "mps":
            return int(torch.mps.recommended_max_memory())
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError, RuntimeError):  # no sysconf (Windows), or a driver error
        return None


def memory_refusal(cfg: Config, input_shape: tuple[int, ...], device, *, dataset_samples: int = 0,
                   value_bytes: int = 1, available: int | None = None) -> str | None:
    """None when the run fits; else one sentence: what it needs, what the device has, and what to lower.

    `available` defaults to `device_memory(device)`; nothing is refused when that is unknown."""
    half = cfg.train.precision in ("bfloat16", "float16") or (cfg.train.precision == "auto" and device.type == "cuda")
    need = memory_needed(cfg, input_shape, dataset_samples=dataset_samples, value_bytes=value_bytes,
                         half_precision=half)
    if available is None:
        available = device_memory(device)
    if available is None or need.total <= available:
        return None
    where = {"cuda": "this GPU has", "mps": "this Mac's GPU may use"}.get(device.type, "this machine has")
    if need.weights >= need.activations:
        what = (f"Its {parameter_count(cfg.model) / 1e9:,.2f} G parameters with their gradients and optimizer "
                f"state take {need.weights / GB:,.1f} GB alone: lower model.depth, model.latent_dim or the head "
                "counts and widths.")
    else:
        # Images are resized to data.image_size; a series' length is its file's.
        size = "data.image_size" if kind_of(cfg.data.dataset).noun == "image" else "the length of the series"
        if available > need.weights + need.data:
            fits = max(1, int(cfg.train.batch_size * (available - need.weights - need.data) / need.activations))
            what = f"Lower train.batch_size (about {fits:,} would fit), or model.num_latents, model.depth or {size}."
        else:
            what = f"Lower model.num_latents, model.depth or {size}."
    return (f"This model needs about {need.total / GB:,.1f} GB at batch {cfg.train.batch_size:,}; {where} "
            f"{available / GB:,.1f} GB. {what}")
