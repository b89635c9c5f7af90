"""Device choices that only matter on a GPU, tested on the CPU: the capability queries are replaced and
the exceptions a GPU raises are built by hand."""

import contextlib

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from perceiver_gui.core.data import normalize
from perceiver_gui.core.device import (
    apply_device_settings,
    choose_precision,
    is_out_of_memory,
    release_memory,
    restore_generator_state,
)


@pytest.fixture
def capabilities(monkeypatch):
    """GPU index -> compute capability; is_bf16_supported() says yes, as it does for emulation on a T4."""
    table: dict[int, tuple[int, int]] = {}
    asked: list[torch.device] = []

    def get_device_capability(device=None):
        asked.append(device)
        return table[device.index or 0]

    monkeypatch.setattr(torch.cuda, "get_device_capability", get_device_capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    return table, asked


@pytest.mark.parametrize("capability", [(8, 0), (8, 6), (8, 9), (9, 0), (10, 0)])
def test_auto_uses_bfloat16_on_gpus_that_compute_it_natively(capabilities, capability):
    capabilities[0][0] = capability
    choice = choose_precision(torch.device("cuda"), "auto")
    assert choice.dtype is torch.bfloat16 and not choice.grad_scaler


@pytest.mark.parametrize("capability", [(7, 0), (7, 5), (6, 1)])  # V100, T4 / RTX 20xx, GTX 10xx
def test_auto_uses_float16_with_a_scaler_where_bfloat16_is_only_emulated(capabilities, capability):
    capabilities[0][0] = capability
    choice = choose_precision(torch.device("cuda"), "auto")
    assert choice.dtype is torch.float16 and choice.grad_scaler
    assert "emulates" in choice.reason


def test_auto_asks_about_the_runs_gpu_not_the_current_one(capabilities):
    table, asked = capabilities
    table[0], table[1] = (9, 0), (7, 5)  # the current GPU is an H100, the run's a T4
    choice = choose_precision(torch.device("cuda:1"), "auto")
    assert choice.dtype is torch.float16 and choice.grad_scaler
    assert asked == [torch.device("cuda:1")]


def test_auto_is_float32_on_the_cpu_and_depends_on_macos_on_apple_gpus(monkeypatch):
    assert choose_precision(torch.device("cpu"), "auto").dtype is None
    monkeypatch.setattr(torch.backends.mps, "is_macos_or_newer", lambda major, minor: (major, minor) <= (13, 0))
    assert choose_precision(torch.device("mps"), "auto").dtype is None
    monkeypatch.setattr(torch.backends.mps, "is_macos_or_newer", lambda major, minor: True)
    assert choose_precision(torch.device("mps"), "auto").dtype is torch.bfloat16


def test_an_explicit_precision_is_taken_as_asked(capabilities):
    capabilities[0][0] = (7, 5)
    cuda = torch.device("cuda")
    assert choose_precision(cuda, "float32").dtype is None
    assert choose_precision(cuda, "bfloat16").dtype is torch.bfloat16
    fp16 = choose_precision(cuda, "float16")
    assert fp16.dtype is torch.float16 and fp16.grad_scaler
    assert choose_precision(torch.device("cpu"), "bfloat16").dtype is torch.bfloat16
    with pytest.raises(ValueError, match="float32"):
        choose_precision(cuda, "half")


@pytest.fixture
def tf32_switches():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_tf32_follows_the_setting_on_cuda_and_is_left_alone_elsewhere(tf32_switches):
    torch.backends.cuda.matmul.allow_tf32 = False
    assert apply_device_settings(torch.device("cpu"), tf32=True) == ""
    assert torch.backends.cuda.matmul.allow_tf32 is False
    assert "TF32 on" in apply_device_settings(torch.device("cuda"), tf32=True)
    assert torch.backends.cuda.matmul.allow_tf32 is True and torch.backends.cudnn.allow_tf32 is True
    assert "TF32 off" in apply_device_settings(torch.device("cuda"), tf32=False)
    assert torch.backends.cuda.matmul.allow_tf32 is False and torch.backends.cudnn.allow_tf32 is False


MPS_OOM = ("MPS backend out of memory (MPS allocated: 17.92 GB, other allocations: 1.23 GB, max allowed: 18.13 GB). "
           "Tried to allocate 256.00 MB on private pool. Use PYTORCH_MPS_HIGH_WATERMARK_RATIO=0.0 to disable upper "
           "limit for memory allocations (may cause system failure).")


@pytest.mark.parametrize("exc", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 15.77 GiB"),
    RuntimeError(MPS_OOM),
    RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
])
def test_out_of_memory_is_recognised_on_every_backend(exc):
    assert is_out_of_memory(exc)


@pytest.mark.parametrize("exc", [
    RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x3 and 5x6)"),
    ValueError("MPS backend out of memory"),  # not what torch raises
    KeyboardInterrupt(),
])
def test_other_errors_are_not_taken_for_out_of_memory(exc):
    assert not is_out_of_memory(exc)


def test_release_memory_empties_the_runs_allocator(monkeypatch):
    emptied: list[str] = []
    monkeypatch.setattr(torch.mps, "empty_cache", lambda: emptied.append("mps"))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append("cuda"))
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    entered: list[torch.device] = []

    @contextlib.contextmanager
    def on_device(device):
        entered.append(device)
        yield

    monkeypatch.setattr(torch.cuda, "device", on_device)
    release_memory(torch.device("cpu"))
    assert emptied == []
    release_memory(torch.device("mps"))
    release_memory(torch.device("cuda:1"))
    assert emptied == ["mps", "cuda"] and entered == [torch.device("cuda:1")]


def test_a_cuda_generator_state_resumes_on_the_cpu_reproducibly():
    cuda_state = torch.tensor([7, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0], dtype=torch.uint8)  # seed, offset
    gen = torch.Generator()
    with pytest.raises(RuntimeError):
        gen.set_state(cuda_state)  # what a plain restore does
    assert restore_generator_state(gen, cuda_state) is False
    first = torch.randperm(100, generator=gen)
    again = torch.Generator()
    restore_generator_state(again, cuda_state)
    assert torch.equal(torch.randperm(100, generator=again), first)  # the same file gives the same run
    other = torch.Generator()
    restore_generator_state(other, cuda_state.flip(0))
    assert not torch.equal(torch.randperm(100, generator=other), first)


def test_a_state_of_the_same_kind_continues_exactly():
    gen = torch.Generator().manual_seed(3)
    torch.rand(5, generator=gen)
    saved = gen.get_state()
    expected = torch.rand(5, generator=gen)
    fresh = torch.Generator()
    assert restore_generator_state(fresh, saved) is True
    assert torch.equal(torch.rand(5, generator=fresh), expected)


class RecordOps(TorchDispatchMode):
    """The aten operations run inside the block; building a tensor from Python numbers shows as lift_fresh."""

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func.__name__)
        return func(*args, **(kwargs or {}))


def test_normalize_sends_a_datasets_mean_and_std_to_the_device_once():
    """On a GPU each tensor built from Python numbers is a blocking copy; a step must not wait for two."""
    x = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    mean, std = (0.49139968, 0.48215827, 0.44653124), (0.24703233, 0.24348505, 0.26158768)
    first = normalize(x, mean, std)
    with RecordOps() as later:
        again = normalize(x, list(mean), std)  # a list from a JSON file is the same dataset
    assert later.ops == ["_to_copy.default", "sub_.Tensor", "mul_.Tensor"]  # the conversion and one fused pass
    assert torch.equal(again, first)
    expected = (x.float() - torch.tensor(mean).reshape(1, 3, 1, 1) * 255) / (torch.tensor(std).reshape(1, 3, 1, 1) * 255)
    assert torch.allclose(first, expected, atol=1e-5)


def test_the_exactness_fixture_trains_on_the_cpu_even_where_a_gpu_is_found(monkeypatch, tmp_path):
    """Bit-exact seeds and resumes hold on the CPU only; a developer's GPU must not change what they test."""
    from perceiver_gui.core.events import RunStarted
    from perceiver_gui.core.training import train
    from tests.core.train_fixtures import tiny_digits

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # "auto" would now pick CUDA
    events = train(tiny_digits(), out_dir=tmp_path / "run")
    started = next(e for e in events if isinstance(e, RunStarted))
    events.close()
    assert started.device == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_a_run_trains_stops_and_resumes(tmp_path):
    """What holds on a GPU: the run completes with finite losses and a stopped run resumes to the end.
    Not bit-exactness: the backward of flash and memory-efficient attention is not deterministic."""
    from perceiver_gui.core.control import RunControl
    from perceiver_gui.core.events import Finished, RunStarted, Step
    from perceiver_gui.core.training import train
    from tests.core.train_fixtures import tiny_digits

    cfg = tiny_digits(**{"train.device": "cuda", "train.precision": "auto"})
    full = list(train(cfg, out_dir=tmp_path / "full"))
    assert next(e for e in full if isinstance(e, RunStarted)).device.startswith("cuda")
    assert full[-1].status == "completed"
    assert all(torch.isfinite(torch.tensor(e.loss)) for e in full if isinstance(e, Step))
    control = RunControl()
    for event in train(cfg, out_dir=tmp_path / "split", control=control):
        if isinstance(event, Step) and event.step == 40:
            control.stop()
    resumed = list(train(resume=tmp_path / "split"))
    assert isinstance(resumed[-1], Finished) and resumed[-1].status == "completed"
    assert resumed[-1].epochs_done == cfg.train.epochs
