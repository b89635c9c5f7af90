"""Our Perceiver against perceiver_pytorch.Perceiver itself: same parameters, same logits, same gradients."""

from __future__ import annotations

import collections
import warnings

import perceiver_pytorch
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from perceiver_gui.config import ModelConfig, preset
from perceiver_gui.core import model as model_module
from perceiver_gui.core.model import Perceiver, build_model, to_channels_last

SMALL = dict(num_freq_bands=3, depth=2, max_freq=6.0, num_latents=6, latent_dim=16, cross_heads=1, latent_heads=2,
             cross_dim_head=8, latent_dim_head=8, num_classes=5)
CONFIGS = {
    "images": dict(SMALL, input_axis=2, input_channels=3),
    "1d, 5 channels, tied, 2 cross heads": dict(SMALL, input_axis=1, input_channels=5, depth=3,
                                                weight_tie_layers=True, cross_heads=2, cross_dim_head=4),
    "3d, no fourier, 3 self per cross": dict(SMALL, input_axis=3, input_channels=2, fourier_encode_data=False,
                                             self_per_cross_attn=3),
    "grey, many heads, tied, 2 self per cross": dict(SMALL, input_channels=1, depth=4, latent_heads=4,
                                                     latent_dim_head=4, cross_heads=3, cross_dim_head=16,
                                                     weight_tie_layers=True, self_per_cross_attn=2),
    "3d, 4 channels, wide heads": dict(SMALL, input_axis=3, input_channels=4, num_freq_bands=2, latent_heads=1,
                                       latent_dim_head=32, cross_dim_head=32, num_latents=3),
    "no classifier head": dict(SMALL, final_classifier_head=False),
    "inverted cross-attention, attention residual": dict(SMALL, depth=3, inverted_cross_attn=(True, False, True),
                                                         attn_residual=True, attn_residual_rank=4),
}
SHAPES = {1: (11,), 2: (5, 7), 3: (3, 4, 5)}


def pair(kwargs: dict) -> tuple[torch.nn.Module, Perceiver]:
    """Upstream's model with weights away from their init, and ours loaded from its state_dict."""
    torch.manual_seed(0)
    reference = perceiver_pytorch.Perceiver(**kwargs)
    with torch.no_grad():  # LayerNorms start at 1 and 0, which would hide a misplaced scale or shift
        for p in reference.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    ours = Perceiver(**kwargs)
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference.eval(), ours.eval()


def inputs(kwargs: dict, batch: int = 3, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *SHAPES[kwargs.get("input_axis", 2)], kwargs.get("input_channels", 3), generator=g)


@pytest.mark.parametrize("name", CONFIGS)
def test_same_parameter_names_and_shapes_load_strictly_both_ways(name):
    kwargs = CONFIGS[name]
    reference, ours = pair(kwargs)
    ref_sd, our_sd = reference.state_dict(), ours.state_dict()
    assert [(k, v.shape) for k, v in our_sd.items()] == [(k, v.shape) for k, v in ref_sd.items()]
    fresh = perceiver_pytorch.Perceiver(**kwargs)
    fresh.load_state_dict(our_sd, strict=True)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters())


@pytest.mark.parametrize("name", CONFIGS)
def test_same_logits_as_perceiver_pytorch(name):
    kwargs = CONFIGS[name]
    reference, ours = pair(kwargs)
    x = inputs(kwargs)
    with torch.no_grad():
        expected, got = reference(x), ours(x)
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
        # Another input size: the cached position features must follow the shape.
        other = x[:, 1:] if x.dim() > 3 else x[:, :-3]
        torch.testing.assert_close(ours(other), reference(other), atol=1e-5, rtol=0)
        torch.testing.assert_close(ours(x, return_embeddings=True), reference(x, return_embeddings=True),
                                   atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["images", "1d, 5 channels, tied, 2 cross heads", "3d, no fourier, 3 self per cross",
                                  "inverted cross-attention, attention residual"])
def test_same_logits_with_a_mask(name):
    kwargs = CONFIGS[name]
    reference, ours = pair(kwargs)
    x = inputs(kwargs, batch=4)
    mask = torch.rand(x.shape[:-1], generator=torch.Generator().manual_seed(2)) > 0.4
    mask[1] = False  # a sample with nothing to attend to: upstream attends uniformly
    mask[2] = True
    with torch.no_grad():
        torch.testing.assert_close(ours(x, mask=mask), reference(x, mask=mask), atol=1e-5, rtol=0)


def assert_same_gradients(reference, ours, x, target):
    """One training step's gradients of both models, parameter by parameter (the names are shared)."""
    for model in (reference, ours):
        model.train()
        torch.nn.functional.cross_entropy(model(x), target).backward()
    ref_grads = dict(reference.named_parameters())
    for key, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[key].grad, atol=1e-5, rtol=1e-4, msg=key)


@pytest.mark.parametrize("name", ["images", "grey, many heads, tied, 2 self per cross",
                                  "inverted cross-attention, attention residual"])
def test_same_gradients_as_perceiver_pytorch(name):
    kwargs = CONFIGS[name]
    reference, ours = pair(kwargs)
    x, target = inputs(kwargs), torch.tensor([0, 3, 4])
    assert_same_gradients(reference, ours, x, target)


def test_same_initial_weights_for_the_same_seed():
    kwargs = CONFIGS["grey, many heads, tied, 2 self per cross"]
    torch.manual_seed(5)
    reference = perceiver_pytorch.Perceiver(**kwargs)
    torch.manual_seed(5)
    ours = Perceiver(**kwargs)
    for (key, a), b in zip(reference.state_dict().items(), ours.state_dict().values(), strict=True):
        assert torch.equal(a, b), key


def test_tied_layers_share_weights_like_upstream():
    ours = Perceiver(**dict(SMALL, depth=4, weight_tie_layers=True))
    assert ours.layers[0] is not ours.layers[1]
    assert ours.layers[1] is ours.layers[2] is ours.layers[3]
    sd = ours.state_dict()  # the shared block is listed under every index, as upstream lists it
    assert torch.equal(sd["layers.1.cross_ff.fn.net.0.weight"], sd["layers.3.cross_ff.fn.net.0.weight"])


def test_seed_tutorial_call_runs_and_warns_once_about_cross_dim():
    tutorial = dict(input_channels=3, input_axis=2, num_freq_bands=6, max_freq=10.0, depth=6, num_latents=32,
                    latent_dim=128, cross_dim=128, cross_heads=1, latent_heads=2, cross_dim_head=8,
                    latent_dim_head=8, num_classes=10, attn_dropout=0.0, ff_dropout=0.0,
                    weight_tie_layers=False, fourier_encode_data=True, self_per_cross_attn=1)
    with pytest.raises(TypeError):  # why we accept it: upstream no longer does
        perceiver_pytorch.Perceiver(**tutorial)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = Perceiver(**tutorial)
    assert len(caught) == 1 and "cross_dim" in str(caught[0].message)
    assert sum(p.numel() for p in model.parameters()) == 2_451_014
    with torch.no_grad():
        assert model(torch.randn(2, 32, 32, 3)).shape == (2, 10)


def test_seed_preset_has_the_tutorials_parameter_count():
    model = build_model(preset("seed").model)
    assert sum(p.numel() for p in model.parameters()) == 2_451_014


def test_forward_with_attention_returns_each_cross_attention_map_and_the_same_logits():
    kwargs = dict(SMALL, depth=3, cross_heads=2, weight_tie_layers=True)
    _, ours = pair(kwargs)
    x = inputs(kwargs, batch=2)
    with torch.no_grad():
        logits, maps = ours.forward_with_attention(x)
        torch.testing.assert_close(logits, ours(x), atol=1e-5, rtol=0)
    assert len(maps) == 3
    for m in maps:
        assert m.shape == (2, 2, 6, 5 * 7)  # (batch, cross_heads, num_latents, M)
        torch.testing.assert_close(m.sum(-1), torch.ones(2, 2, 6))  # each latent's weights over the input
    assert not torch.allclose(maps[0], maps[1])  # a map per layer, not one map repeated


def test_to_channels_last_moves_channels_to_the_end():
    x = torch.arange(2 * 3 * 4 * 5.0).reshape(2, 3, 4, 5)  # (B, C, H, W)
    y = to_channels_last(x)
    assert y.shape == (2, 4, 5, 3)
    assert torch.equal(y[1, 2, 3], x[1, :, 2, 3])


def test_build_model_picks_the_implementation_and_checkpoints_are_interchangeable():
    cfg = ModelConfig(depth=2, num_latents=4, latent_dim=16, num_classes=3)
    fast = build_model(cfg)
    reference = build_model(ModelConfig(**{**cfg.perceiver_kwargs(), "implementation": "reference"}))
    assert type(fast) is Perceiver
    assert type(reference) is perceiver_pytorch.Perceiver
    reference.load_state_dict(fast.state_dict(), strict=True)
    x = torch.randn(2, 32, 32, 3)
    with torch.no_grad():
        torch.testing.assert_close(fast.eval()(x), reference.eval()(x), atol=1e-5, rtol=0)


def test_training_works_after_a_forward_under_inference_mode():
    model = Perceiver(**SMALL)
    x = torch.randn(2, 5, 7, 3)
    with torch.inference_mode():
        model(x)
    model(x).sum().backward()  # the cached position features must not be inference tensors
    assert model.latents.grad is not None


def test_wrong_input_shape_is_refused():
    model = Perceiver(**SMALL)
    with pytest.raises(AssertionError, match="axis"):
        model(torch.randn(2, 5, 3))
    with pytest.raises(AssertionError, match="channels"):
        model(torch.randn(2, 5, 7, 4))


def test_dropout_trains_and_eval_is_deterministic():
    model = Perceiver(**dict(SMALL, attn_dropout=0.5, ff_dropout=0.5))
    x = torch.randn(2, 5, 7, 3)
    model.train()
    model(x).sum().backward()
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


class CountOps(TorchDispatchMode):
    """The aten operations that do work (views excluded): on a GPU, roughly one kernel launch each."""

    def __init__(self):
        super().__init__()
        self.ops: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view:
            self.ops[func.__name__.split(".")[0]] += 1
        return func(*args, **(kwargs or {}))


@pytest.fixture
def gpu_feed_forward(monkeypatch):
    """The feed-forward as a GPU runs it (the whole first linear), here on the CPU."""
    monkeypatch.setattr(model_module, "SPLIT_FEED_FORWARD_ON", ())


@pytest.mark.parametrize("name", ["images", "grey, many heads, tied, 2 self per cross"])
def test_the_gpu_feed_forward_gives_the_same_logits_and_gradients(name, gpu_feed_forward):
    kwargs = CONFIGS[name]
    reference, ours = pair(kwargs)
    x, target = inputs(kwargs), torch.tensor([0, 3, 4])
    torch.testing.assert_close(ours(x), reference(x), atol=1e-5, rtol=1e-4)
    assert_same_gradients(reference, ours, x, target)


def test_a_bfloat16_training_step_on_a_gpu_uses_whole_weights_and_few_kernels(gpu_feed_forward):
    """A sliced weight costs a zero-filled gradient and an autocast cast of its own every step; on a GPU
    the seed model's step is bound by kernel launches, so their number is what sets its speed."""
    model = build_model(preset("seed").model)
    model(torch.randn(2, 32, 32, 3)).sum().backward()  # position features cached, as in every later step
    model.zero_grad(set_to_none=True)
    with CountOps() as counted:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 32, 32, 3)).float(), torch.arange(4))
        loss.backward()
    assert counted.ops["slice_backward"] == 0, counted.ops.most_common(8)
    # 837 ops here (1,086 when the feed-forward and context weights were sliced, and the context
    # projections folded and cast their weights under autocast, every forward).
    assert sum(counted.ops.values()) <= 850, counted.ops.most_common(8)
    with torch.no_grad():  # the bfloat16 step computes what the float32 one does
        x = torch.randn(4, 32, 32, 3)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x).float()
        torch.testing.assert_close(low, model(x), atol=0.05, rtol=0.05)


# -- per-sample positions (point clouds) ---------------------------------------------------------
POINTS = dict(SMALL, input_axis=3, input_channels=3, num_classes=4)


def grid_coordinates(axes: tuple[int, ...]) -> torch.Tensor:
    """(M, len(axes)) the coordinates of a grid in [-1, 1], in the grid path's order."""
    return torch.stack(torch.meshgrid(*(torch.linspace(-1, 1, n) for n in axes), indexing="ij"), -1).reshape(-1, len(axes))


@pytest.mark.parametrize("name", ["images", "3d, no fourier, 3 self per cross"])
def test_per_sample_positions_at_the_grid_give_the_grid_logits(name):
    """The per-sample path computes the same thing as the grid path: handed a grid's coordinates as each
    sample's positions, it gives the grid's logits (and perceiver-pytorch's, which the grid path matches)."""
    kwargs = CONFIGS[name]
    reference, ours = pair(kwargs)
    x = inputs(kwargs)
    axes = x.shape[1:-1]
    positions = grid_coordinates(axes).expand(len(x), -1, -1)
    with torch.no_grad():
        per_sample = ours(x.reshape(len(x), -1, x.shape[-1]), positions=positions)
        torch.testing.assert_close(per_sample, reference(x), rtol=1e-5, atol=1e-5)


def test_a_point_cloud_model_reads_each_points_own_coordinates_and_ignores_their_order():
    torch.manual_seed(0)
    model = Perceiver(**POINTS, positions="points").eval()
    clouds = torch.rand(2, 50, 3) * 2 - 1  # (B, P, xyz)
    order = torch.randperm(50)
    with torch.no_grad():
        logits = model(clouds)
        torch.testing.assert_close(model(clouds[:, order]), logits, rtol=1e-5, atol=1e-5)  # a set, not a sequence
        # The positions are the data's own coordinates, computed per sample: explicit ones give the same.
        torch.testing.assert_close(model(clouds, positions=clouds), logits)
        # Another cloud is another input: nothing is cached from the first batch's positions.
        assert not torch.allclose(model(clouds.flip(0)), logits)
        assert not model._positions


def test_a_point_cloud_model_trains_and_gives_its_attention_over_points():
    torch.manual_seed(0)
    model = Perceiver(**POINTS, positions="points")
    clouds, labels = torch.rand(8, 32, 3) * 2 - 1, torch.randint(0, 4, (8,))
    loss = torch.nn.functional.cross_entropy(model(clouds), labels)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    with torch.no_grad():
        logits, weights = model.eval().forward_with_attention(clouds)
    assert weights[0].shape == (8, 1, POINTS["num_latents"], 32)
    torch.testing.assert_close(weights[0].sum(-1), torch.ones(8, 1, POINTS["num_latents"]))


def test_points_come_as_batch_points_channels_and_the_reference_refuses_them():
    model = Perceiver(**POINTS, positions="points")
    with pytest.raises(AssertionError, match=r"points come as \(batch, points, channels\)"):
        model(torch.rand(2, 4, 4, 4, 3))
    with pytest.raises(ValueError, match="reads grids only"):
        build_model(ModelConfig(input_axis=3, positions="points", implementation="reference"))
    assert isinstance(build_model(ModelConfig(input_axis=3, positions="points")), Perceiver)
