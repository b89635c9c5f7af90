"""The Perceiver (Jaegle et al. 2021): a drop-in, faster `perceiver_pytorch.Perceiver` 0.11.

Same keyword arguments, same parameter names and shapes (checkpoints load strictly both ways) and,
for the same weights, the same logits. It is faster because it does less, not because it does
something else:

- attention runs through `F.scaled_dot_product_attention` (one fused kernel, no score tensor kept
  for backward);
- the Fourier position features depend only on the input's shape, so they are built once and cached;
- the input is never concatenated with the position features. The cross-attention's context
  LayerNorm and key/value projection are linear, so they split into a data part (C channels per
  position) and a position part that is the same for every sample, computed once per forward. The
  context's LayerNorm statistics are the same in every layer, so they are computed once too;
- the latent array is broadcast over the batch, never repeated, so the first layer normalises and
  projects it once for the whole batch.

Input is channels-last, `(batch, *axes, channels)`, like upstream; `to_channels_last` converts
torchvision's `(batch, channels, *axes)`.

Point clouds (`positions="points"`) are an unordered set, with no grid to take positions from: the input
is `(batch, points, channels)` whose first `input_axis` channels are each point's coordinates in [-1, 1]
(x, y, z for input_axis 3), and the position features are the Fourier features of those coordinates,
computed per sample in every forward. Any model also takes explicit per-sample coordinates,
`forward(data (B, M, C), positions=(B, M, input_axis))`, e.g. to encode a grid or a subset of one.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from perceiver_gui.config import POSITIONS

__all__ = ["Perceiver", "build_model", "fourier_encode", "to_channels_last"]

LN_EPS = 1e-5  # nn.LayerNorm's default, which every upstream norm uses
MAX_CACHED_SHAPES = 8  # Fourier features kept per model (input shape × device × dtype)
SPLIT_FEED_FORWARD_ON = ("cpu",)  # device types whose feed-forward applies its first linear in halves


# -- helpers ----------------------------------------------------------------------------------
def to_channels_last(x: Tensor) -> Tensor:
    """(B, C, *axes) -> (B, *axes, C): torchvision's layout to the Perceiver's."""
    assert x.dim() >= 3, f"expected (batch, channels, *axes), got shape {tuple(x.shape)}"
    return x.movedim(1, -1)


def fourier_encode(coords: Tensor, max_freq: float, num_bands: int) -> Tensor:
    """Coordinates (..., A) in [-1, 1] -> their features (..., A * (2 * num_bands + 1)), op for op as upstream.

    Per axis: sin of each band, cos of each band, then the raw coordinate.
    """
    pos = coords.unsqueeze(-1)  # (..., A, 1)
    scales = torch.linspace(1.0, max_freq / 2, num_bands, device=coords.device, dtype=coords.dtype)
    scaled = pos * scales * math.pi  # (..., A, bands)
    return torch.cat([scaled.sin(), scaled.cos(), pos], dim=-1).flatten(-2)  # (..., A * (2 * bands + 1))


def fourier_features(axes: tuple[int, ...], max_freq: float, num_bands: int, device, dtype) -> Tensor:
    """Position features (M, len(axes) * (2 * num_bands + 1)) of the grid of shape `axes`."""
    axis_pos = [torch.linspace(-1.0, 1.0, steps=size, device=device, dtype=dtype) for size in axes]
    grid = torch.stack(torch.meshgrid(*axis_pos, indexing="ij"), dim=-1)  # (*axes, A)
    return fourier_encode(grid, max_freq, num_bands).reshape(math.prod(axes), -1)


@dataclass(frozen=True, slots=True)
class Positions:
    """The Fourier position features of one input shape and what the context's LayerNorm needs of them."""

    padded: Tensor  # (M, C + P): C zero columns, then the P features
    select: Tensor  # (C + P, C + 1): [I_C, 0; 0, 1_P]
    count: int  # P
    mean: Tensor  # (M, 1) of the P features
    sum_squares: Tensor  # (M, 1): their squared deviations from that mean, summed


@dataclass(frozen=True, slots=True)
class Context:
    """What every cross-attention needs from one batch, computed once per forward.

    The context is x = [data, pos] (C + P features per position), never built. Its LayerNorm
    without affine is (x - mu) * rstd; `z` holds the data part, plus -mu * rstd as one more
    channel so the position part's mean correction rides along in the same matmul.
    """

    z: Tensor  # (B, M, C + 1) with positions, (B, M, C) without
    rstd: Tensor | None  # (B, M, 1), only with position features
    pos: Tensor | None  # (M, C + P): the position features after C zero columns, the same for every sample
    select: Tensor | None  # (C + P, C + 1): [I_C, 0; 0, 1_P], sums a weight's position columns
    mask_bias: Tensor | None  # (B, 1, 1, M) additive, 0 or -max, for SDPA
    mask: Tensor | None  # (B, M) bool, for the explicit path

    def project(self, norm: nn.LayerNorm, linear: nn.Linear) -> Tensor:
        """linear(norm(x)) for the whole batch, (B, M, out), without building x.

        Whole parameters only, never slices of them: each slice of a weight costs a zero-filled
        full-size gradient in backward, and under autocast a cast of its own.
        """
        # The folding works on weights, not on the batch: in float32 under autocast too, where it would
        # otherwise cast the same weight three times per layer (and round the folded weight to 8 bits).
        with torch.autocast(self.z.device.type, enabled=False):
            weight = linear.weight * norm.weight  # the norm's scale folded into the projection
            bias = linear.weight @ norm.bias
            if self.pos is not None:
                w_z = weight @ self.select  # (out, C + 1): the data columns, and the sum of the position columns
                per_position = self.pos @ weight.T  # (M, out): computed once, not per sample
        if self.pos is None:
            return F.linear(self.z, weight, bias)
        # A batched matmul rather than F.linear: its weight gradient (a reduction over B * M rows)
        # is about twice as fast as one very tall and thin matmul.
        kv = torch.baddbmm(bias, self.z, w_z.T.expand(self.z.shape[0], -1, -1))
        return kv.addcmul_(self.rstd, per_position)


def attend(q: Tensor, k: Tensor, v: Tensor, *, scale: float, ctx: Context | None = None, dropout: float = 0.0,
           inverted: bool = False, with_weights: bool = False) -> tuple[Tensor, Tensor | None]:
    """Attention over (B, heads, tokens, dim_head) tensors; q may have batch 1 (shared latents).

    The fused kernel serves the normal path; the attention weights, or upstream's inverted
    (slot-style) attention, need the softmax written out.
    """
    mask_bias = ctx.mask_bias if ctx is not None else None
    if not (inverted or with_weights):
        q = q.expand(k.shape[0], -1, -1, -1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask_bias, dropout_p=dropout, scale=scale)
        return out, None
    sim = (q @ k.transpose(-1, -2)) * scale  # (B, heads, N, M)
    mask = ctx.mask[:, None, None, :] if ctx is not None and ctx.mask is not None else None
    if mask is not None:
        sim = sim.masked_fill(~mask, -torch.finfo(sim.dtype).max)
    if inverted:  # each input position distributes itself over the latents
        weights = sim.softmax(dim=-2)
        if mask is not None:
            weights = weights.masked_fill(~mask, 0.0)
        weights = F.normalize(weights, p=1, dim=-1, eps=1e-8)
    else:
        weights = sim.softmax(dim=-1)
    return F.dropout(weights, dropout, training=dropout > 0) @ v, weights


def split_heads(t: Tensor, heads: int) -> Tensor:
    """(B, n, heads * d) -> (B, heads, n, d)"""
    return t.unflatten(-1, (heads, -1)).transpose(1, 2)


def merge_heads(t: Tensor) -> Tensor:
    """(B, heads, n, d) -> (B, n, heads * d)"""
    return t.transpose(1, 2).flatten(2)


# -- blocks (module names and nesting exactly as upstream, so state_dict keys match) -----------
class PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module, context_dim: int | None = None):
        super().__init__()
        self.fn = fn
        self.norm = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(context_dim) if context_dim is not None else None

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(self.norm(x))


class _GEGLUFunction(torch.autograd.Function):
    """x * gelu(gates) for h = [x, gates], whose backward writes both halves' gradients into one tensor.

    Autograd's own backward computes the two halves apart and then concatenates them, a copy of the
    whole (tokens, 2 * hidden) gradient per feed-forward layer. The arithmetic is autograd's, op for op.
    """

    @staticmethod
    def forward(ctx, h: Tensor) -> Tensor:
        x, gates = h.chunk(2, dim=-1)
        gelu = F.gelu(gates)
        ctx.save_for_backward(h, gelu)
        return x * gelu

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        h, gelu = ctx.saved_tensors
        x, gates = h.chunk(2, dim=-1)
        grad_h = torch.empty_like(h)
        grad_x, grad_gates = grad_h.chunk(2, dim=-1)
        torch.mul(grad, gelu, out=grad_x)
        torch.ops.aten.gelu_backward.grad_input(grad * x, gates, grad_input=grad_gates)
        return grad_h


class GEGLU(nn.Module):
    def forward(self, h: Tensor) -> Tensor:
        if torch.is_grad_enabled() and h.requires_grad:
            return _GEGLUFunction.apply(h)
        x, gates = h.chunk(2, dim=-1)  # inference and export: plain operations
        return x * F.gelu(gates)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim * mult * 2), GEGLU(), nn.Linear(dim * mult, dim), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        project, geglu, out, dropout = self.net
        if x.device.type in SPLIT_FEED_FORWARD_ON:
            # The first linear as its two halves, so that GEGLU reads contiguous tensors: 8 % faster per
            # seed-model step on a CPU. A GPU is bound by kernel launches and autocast casts instead,
            # which a sliced weight doubles, so it takes the whole weight.
            half = project.out_features // 2
            x_half = F.linear(x, project.weight[:half], project.bias[:half])
            gates = F.linear(x, project.weight[half:], project.bias[half:])
            return dropout(out(x_half * F.gelu(gates)))
        return dropout(out(geglu(project(x))))


class Attention(nn.Module):
    """Multi-head attention; self-attention when called with one tensor (cross-attention is in the block)."""

    def __init__(self, query_dim: int, context_dim: int | None = None, heads: int = 8, dim_head: int = 64,
                 dropout: float = 0.0):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.scale = heads, dim_head**-0.5
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_kv = nn.Linear(context_dim or query_dim, inner * 2, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.to_out = nn.Linear(inner, query_dim)

    def forward(self, x: Tensor) -> Tensor:  # (B, N, D) -> (B, N, D)
        # One matmul for q, k and v: they all read the same x.
        qkv = F.linear(x, torch.cat([self.to_q.weight, self.to_kv.weight]))
        q, k, v = (split_heads(t, self.heads) for t in qkv.chunk(3, dim=-1))
        out, _ = attend(q, k, v, scale=self.scale, dropout=self.dropout.p if self.training else 0.0)
        return self.to_out(merge_heads(out))


class PerceiverBlock(nn.Module):
    """Cross-attention to the input (+ feed-forward), then `self_per_cross_attn` latent self-attentions."""

    def __init__(self, *, dim: int, context_dim: int, cross_heads: int, latent_heads: int, cross_dim_head: int,
                 latent_dim_head: int, self_per_cross_attn: int, attn_dropout: float, ff_dropout: float):
        super().__init__()
        cross = Attention(dim, context_dim, heads=cross_heads, dim_head=cross_dim_head, dropout=attn_dropout)
        self.cross_attn = PreNorm(dim, cross, context_dim=context_dim)
        self.cross_ff = PreNorm(dim, FeedForward(dim, dropout=ff_dropout))
        self.self_attns = nn.ModuleList(
            nn.ModuleList([
                PreNorm(dim, Attention(dim, heads=latent_heads, dim_head=latent_dim_head, dropout=attn_dropout)),
                PreNorm(dim, FeedForward(dim, dropout=ff_dropout)),
            ])
            for _ in range(self_per_cross_attn)
        )

    def forward(self, x: Tensor, ctx: Context, *, inverted: bool = False,
                with_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """x (B or 1, N, D) latents -> (B, N, D), and the cross-attention weights when asked."""
        attn = self.cross_attn.fn
        q = split_heads(attn.to_q(self.cross_attn.norm(x)), attn.heads)  # (1 or B, h, N, d)
        k, v = (split_heads(t, attn.heads) for t in ctx.project(self.cross_attn.norm_context, attn.to_kv).chunk(2, -1))
        out, weights = attend(q, k, v, scale=attn.scale, ctx=ctx, dropout=attn.dropout.p if self.training else 0.0,
                              inverted=inverted, with_weights=with_weights)
        x = attn.to_out(merge_heads(out)) + x  # broadcast latents become per-sample here
        x = self.cross_ff(x) + x
        for self_attn, self_ff in self.self_attns:
            x = self_attn(x) + x
            x = self_ff(x) + x
        return x, weights


class EnformerAttentionResidual(nn.Module):
    """Upstream's optional attention over all earlier block outputs (`attn_residual=True`)."""

    def __init__(self, dim: int, *, rank: int = 64):
        super().__init__()
        self.to_attn_logits = nn.Sequential(nn.RMSNorm(dim), nn.Linear(dim, rank, bias=False),
                                            nn.Linear(rank, dim, bias=False))

    def forward(self, block_outputs: list[Tensor] | Tensor) -> Tensor:
        past = torch.stack(list(block_outputs), dim=2)  # (B, N, layers, D)
        weights = self.to_attn_logits(past).softmax(dim=-2)
        return (past * weights).sum(dim=2)


class MeanOverLatents(nn.Module):
    def forward(self, x: Tensor) -> Tensor:  # (B, N, D) -> (B, D)
        return x.mean(dim=1)


# -- the model ----------------------------------------------------------------------------------
class Perceiver(nn.Module):
    """depth × (cross-attention to the input -> self_per_cross_attn × latent self-attention) -> classifier."""

    def __init__(
        self,
        *,
        num_freq_bands: int,
        depth: int,
        max_freq: float,
        input_channels: int = 3,
        input_axis: int = 2,
        num_latents: int = 512,
        latent_dim: int = 512,
        cross_heads: int = 1,
        latent_heads: int = 8,
        cross_dim_head: int = 64,
        latent_dim_head: int = 64,
        num_classes: int = 1000,
        attn_dropout: float = 0.0,
        ff_dropout: float = 0.0,
        weight_tie_layers: bool = False,
        fourier_encode_data: bool = True,
        self_per_cross_attn: int = 1,
        final_classifier_head: bool = True,
        inverted_cross_attn: bool | tuple[bool, ...] = False,
        attn_residual: bool = False,
        attn_residual_rank: int = 64,
        cross_dim: int | None = None,
        positions: str = "grid",
    ):
        super().__init__()
        if positions not in POSITIONS:
            raise ValueError(f"positions must be one of {', '.join(POSITIONS)}, not {positions!r}")
        if cross_dim is not None:
            warnings.warn(
                "cross_dim is ignored: perceiver-pytorch removed this unused argument in 0.1.20; the "
                "cross-attention width is cross_heads × cross_dim_head.", UserWarning, stacklevel=2)
        if isinstance(inverted_cross_attn, bool):
            inverted_cross_attn = (inverted_cross_attn,) * depth
        assert len(inverted_cross_attn) == depth, f"inverted_cross_attn tuple must have length of depth ({depth})"
        self.input_axis, self.input_channels = input_axis, input_channels
        self.positions = positions
        if positions == "points":
            assert input_channels >= input_axis, "a point's first input_axis channels are its coordinates"
        self.max_freq, self.num_freq_bands = max_freq, num_freq_bands
        self.fourier_encode_data = fourier_encode_data
        self.inverted_cross_attn = tuple(inverted_cross_attn)
        self.has_attn_residual = attn_residual
        self._positions: dict[tuple, Positions] = {}  # not a buffer: no state_dict entry

        fourier_channels = input_axis * (num_freq_bands * 2 + 1) if fourier_encode_data else 0
        self.latents = nn.Parameter(torch.randn(num_latents, latent_dim))

        def new_block() -> PerceiverBlock:
            return PerceiverBlock(
                dim=latent_dim, context_dim=input_channels + fourier_channels, cross_heads=cross_heads,
                latent_heads=latent_heads, cross_dim_head=cross_dim_head, latent_dim_head=latent_dim_head,
                self_per_cross_attn=self_per_cross_attn, attn_dropout=attn_dropout, ff_dropout=ff_dropout)

        def new_residual() -> EnformerAttentionResidual | None:
            return EnformerAttentionResidual(latent_dim, rank=attn_residual_rank) if attn_residual else None

        # Weight tying as upstream: layer 0 is its own, layers 1.. are one shared module. The shared
        # module then appears under every index in state_dict (layers.1.*, layers.2.*, ...).
        self.layers, self.attn_residuals = nn.ModuleList(), nn.ModuleList()
        tied = None
        for i in range(depth):
            if i > 0 and weight_tie_layers:
                tied = tied or (new_block(), new_residual())
                block, residual = tied
            else:
                block, residual = new_block(), new_residual()
            self.layers.append(block)
            self.attn_residuals.append(residual)

        self.to_logits = nn.Sequential(
            MeanOverLatents(), nn.LayerNorm(latent_dim), nn.Linear(latent_dim, num_classes)
        ) if final_classifier_head else nn.Identity()

    # -- the input side -----------------------------------------------------------------------
    def _position_stats(self, axes: tuple[int, ...], device, dtype) -> Positions:
        """The position side of the context for one input shape, cached."""
        key = (axes, device, dtype)
        if key not in self._positions:
            if len(self._positions) >= MAX_CACHED_SHAPES:
                self._positions.clear()
            # Plain tensors even under inference_mode, so a later training forward can use them.
            with torch.inference_mode(False), torch.no_grad():
                pos = fourier_features(axes, self.max_freq, self.num_freq_bands, device, dtype)
                c, (m, p) = self.input_channels, pos.shape
                mean = pos.mean(-1, keepdim=True)
                select = torch.zeros(c + p, c + 1, device=device, dtype=dtype)
                select[:c, :c] = torch.eye(c, device=device, dtype=dtype)
                select[c:, c] = 1.0
                self._positions[key] = Positions(
                    padded=torch.cat([pos.new_zeros(m, c), pos], dim=1), select=select, count=p, mean=mean,
                    sum_squares=(pos - mean).square().sum(-1, keepdim=True))
        return self._positions[key]

    def _context(self, data: Tensor, mask: Tensor | None, positions: Tensor | None = None) -> Context:
        if positions is None and self.positions == "points":
            assert data.dim() == 3, f"points come as (batch, points, channels), got shape {tuple(data.shape)}"
            positions = data[..., :self.input_axis]
        if positions is not None:
            return self._point_context(data, mask, positions)
        b, *axes, c = data.shape
        assert len(axes) == self.input_axis, "input data must have the right number of axis"
        assert c == self.input_channels, f"input data must have {self.input_channels} channels (last axis), got {c}"
        data = data.reshape(b, -1, c)  # (B, M, C)
        mask_bias = None
        if mask is not None:
            mask = mask.reshape(b, -1)
            mask_bias = torch.zeros(mask.shape, dtype=data.dtype, device=data.device)
            mask_bias = mask_bias.masked_fill(~mask, -torch.finfo(data.dtype).max)[:, None, None, :]
        if not self.fourier_encode_data:
            return Context(F.layer_norm(data, (c,), eps=LN_EPS), None, None, None, mask_bias, mask)
        # LayerNorm statistics of [data, pos] from the data's C channels and the cached position stats;
        # the variance is a sum of squared deviations from each part's mean, which needs no cancellation.
        pos = self._position_stats(tuple(axes), data.device, data.dtype)
        p, n = pos.count, pos.count + c
        mu = (data.sum(-1, keepdim=True) + p * pos.mean) / n  # (B, M, 1)
        centred = data - mu
        var = (centred.square().sum(-1, keepdim=True) + pos.sum_squares + p * (pos.mean - mu).square()) / n
        rstd = torch.rsqrt(var + LN_EPS)
        z = torch.cat([centred * rstd, -mu * rstd], dim=-1)
        if torch.is_autocast_enabled(z.device.type):  # cast once here, not in each layer's projection
            z = z.to(torch.get_autocast_dtype(z.device.type))
        return Context(z, rstd, pos.padded, pos.select, mask_bias, mask)

    def _point_context(self, data: Tensor, mask: Tensor | None, positions: Tensor) -> Context:
        """The context of inputs (B, M, C) whose positions (B, M, input_axis) differ per sample: nothing is
        shared across the batch, so [data, features] is built and normalised whole."""
        b, m, c = data.shape
        assert c == self.input_channels, f"input data must have {self.input_channels} channels (last axis), got {c}"
        assert positions.shape == (b, m, self.input_axis), (
            f"positions must be (batch, {m}, {self.input_axis}) for data {tuple(data.shape)}, got {tuple(positions.shape)}")
        mask_bias = None
        if mask is not None:
            mask_bias = torch.zeros(mask.shape, dtype=data.dtype, device=data.device)
            mask_bias = mask_bias.masked_fill(~mask, -torch.finfo(data.dtype).max)[:, None, None, :]
        if self.fourier_encode_data:
            data = torch.cat([data, fourier_encode(positions.to(data.dtype), self.max_freq, self.num_freq_bands)], -1)
        return Context(F.layer_norm(data, (data.shape[-1],), eps=LN_EPS), None, None, None, mask_bias, mask)

    # -- forward ------------------------------------------------------------------------------
    def _run(self, data: Tensor, mask: Tensor | None, positions: Tensor | None, block_outputs, keep_hiddens: bool,
             with_weights: bool) -> tuple[Tensor, list[Tensor] | None, tuple[Tensor, ...]]:
        ctx = self._context(data, mask, positions)
        x = self.latents[None]  # (1, N, D), broadcast over the batch
        hiddens = None
        if keep_hiddens:
            first = x.expand(data.shape[0], -1, -1)
            hiddens = [block_outputs] if torch.is_tensor(block_outputs) else list(
                block_outputs if block_outputs is not None else [first])
        all_weights = []
        for i, (block, residual) in enumerate(zip(self.layers, self.attn_residuals, strict=True)):
            x, weights = block(x, ctx, inverted=self.inverted_cross_attn[i], with_weights=with_weights)
            all_weights.append(weights)
            if hiddens is not None:
                hiddens.append(x)
            if residual is not None:
                x = residual(hiddens)
        return x, hiddens, tuple(all_weights)

    def forward(self, data: Tensor, mask: Tensor | None = None, return_embeddings: bool = False,
                block_outputs: list[Tensor] | Tensor | None = None, return_hiddens: bool = False, *,
                positions: Tensor | None = None):
        """data (B, *axes, C) -> logits (B, num_classes); mask (B, *axes) bool, True = attend.

        With per-sample positions (B, M, input_axis) in [-1, 1], data is (B, M, C) and mask (B, M); a
        "points" model takes them from the data's first input_axis channels when none are given."""
        keep = return_hiddens or self.has_attn_residual or block_outputs is not None
        x, hiddens, _ = self._run(data, mask, positions, block_outputs, keep, with_weights=False)
        out = x if return_embeddings else self.to_logits(x)
        return (out, hiddens) if return_hiddens else out

    def forward_with_attention(self, data: Tensor, mask: Tensor | None = None, *,
                               positions: Tensor | None = None) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Logits and, per cross-attend layer, its attention weights (B, cross_heads, num_latents, M)."""
        x, _, weights = self._run(data, mask, positions, None, self.has_attn_residual, with_weights=True)
        return self.to_logits(x), weights


def build_model(cfg) -> nn.Module:
    """A fresh model for a ModelConfig: ours ("fast") or perceiver_pytorch's own ("reference")."""
    if cfg.implementation == "reference":
        if cfg.positions != "grid":
            raise ValueError("perceiver_pytorch's own Perceiver reads grids only; use model.implementation 'fast' "
                             "for point clouds.")
        from perceiver_pytorch import Perceiver as Reference

        return Reference(**cfg.perceiver_kwargs())
    if cfg.implementation != "fast":
        raise ValueError(f"Unknown model implementation {cfg.implementation!r}; use 'fast' or 'reference'.")
    return Perceiver(**cfg.perceiver_kwargs(), positions=cfg.positions)
