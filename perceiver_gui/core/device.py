"""Choosing the training device and what runs on it: threads, precision, TF32, out-of-memory handling.

Everything here is a plain function that training.py calls; none of it needs a GPU to be tested (the
tests replace the capability queries and build the exceptions a GPU would raise).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch

__all__ = [
    "DeviceError", "PrecisionChoice", "apply_device_settings", "choose_precision", "configure_threads",
    "describe_device", "is_out_of_memory", "release_memory", "resolve_device", "restore_generator_state",
]

# Native bfloat16 arithmetic arrived with Ampere (compute capability 8.0). Older GPUs (V100 7.0, T4 and
# the RTX 20 series 7.5) only emulate it, which torch.cuda.is_bf16_supported() counts as support.
NATIVE_BF16_CAPABILITY = (8, 0)


class DeviceError(RuntimeError):
    """The chosen device is not available on this machine."""


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" picks CUDA, then Apple's MPS, then the CPU; anything else must exist here."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"'{name}' is not a device name; use auto, cpu, cuda, cuda:N or mps.") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("No CUDA GPU is available on this machine; choose auto or cpu as the device.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(
                f"There is no GPU {device.index}; this machine has {torch.cuda.device_count()} (cuda:0 to "
                f"cuda:{torch.cuda.device_count() - 1})."
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("Apple's MPS GPU is not available on this machine; choose auto or cpu as the device.")
    return device


def configure_threads(threads: int = 0) -> int:
    """Set torch's CPU threads; 0 means all cores but one, so a window on the same machine stays responsive."""
    if threads <= 0:
        threads = max(1, (os.cpu_count() or 2) - 1)
    torch.set_num_threads(threads)
    return threads


def describe_device(device: torch.device) -> str:
    """A name a person recognises, with memory for GPUs."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    threads = torch.get_num_threads()
    return f"CPU ({threads} thread{'s' if threads != 1 else ''})"


@dataclass(frozen=True, slots=True)
class PrecisionChoice:
    """What a run's `train.precision` means on its device."""

    dtype: torch.dtype | None  # the autocast dtype; None = plain float32, no autocast
    grad_scaler: bool  # float16 needs a GradScaler so small gradients do not underflow
    reason: str  # one sentence for the log


def choose_precision(device: torch.device, precision: str) -> PrecisionChoice:
    """The autocast dtype for `precision` ("auto", "float32", "bfloat16", "float16") on `device`.

    "auto" takes bfloat16 only where the run's own device computes it natively (CUDA compute capability
    8.0 or newer; Apple GPUs on macOS 14 or newer), float16 with a grad scaler on older CUDA GPUs, and
    float32 on CPUs, where bfloat16 autocast is usually slower than float32.
    """
    if precision == "float32":
        return PrecisionChoice(None, False, "float32")
    if precision == "bfloat16":
        return PrecisionChoice(torch.bfloat16, False, "bfloat16 autocast")
    if precision == "float16":
        return PrecisionChoice(torch.float16, device.type == "cuda", "float16 autocast with a grad scaler")
    if precision != "auto":
        raise ValueError(f"Unknown precision {precision!r}; use auto, float32, bfloat16 or float16.")
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)  # the run's GPU, not the current one
        if (major, minor) >= NATIVE_BF16_CAPABILITY:
            return PrecisionChoice(torch.bfloat16, False, f"auto: bfloat16 autocast (native on compute "
                                                          f"capability {major}.{minor})")
        return PrecisionChoice(torch.float16, True, f"auto: float16 autocast with a grad scaler (compute "
                                                    f"capability {major}.{minor} only emulates bfloat16)")
    if device.type == "mps":
        if torch.backends.mps.is_macos_or_newer(14, 0):
            return PrecisionChoice(torch.bfloat16, False, "auto: bfloat16 autocast (Apple GPU, macOS 14+)")
        return PrecisionChoice(None, False, "auto: float32 (bfloat16 on an Apple GPU needs macOS 14)")
    return PrecisionChoice(None, False, "auto: float32 (bfloat16 autocast is slower than float32 on most CPUs)")


def apply_device_settings(device: torch.device, *, tf32: bool) -> str:
    """Set what a run on `device` needs process-wide; returns a line for the log.

    On CUDA, `tf32` lets float32 matmuls and convolutions use TensorFloat-32 (Ampere and newer): about
    8x the float32 matmul throughput for a 10-bit mantissa in the products, which training tolerates;
    runs in bfloat16 or float16 autocast are not affected. These are torch's long-standing switches; torch
    raises when they are mixed with its newer `fp32_precision` settings in one process, so use only these.
    Nothing changes for CPU or MPS runs.
    """
    if device.type != "cuda":
        return ""
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    return "TF32 on for float32 matmuls" if tf32 else "TF32 off: float32 matmuls in full precision"


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA's OutOfMemoryError and for the plain RuntimeErrors that other backends raise."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    if not isinstance(exc, RuntimeError):
        return False
    text = str(exc)
    # MPS: "MPS backend out of memory (MPS allocated: ...)". cuBLAS and cuDNN report a failed workspace
    # allocation as a plain RuntimeError too.
    return ("MPS backend out of memory" in text or "CUDA out of memory" in text
            or "CUBLAS_STATUS_ALLOC_FAILED" in text or "CUDNN_STATUS_ALLOC_FAILED" in text)


def release_memory(device: torch.device) -> None:
    """Hand the caching allocator's free blocks back, so the next run (or another program) can use them."""
    if device.type == "cuda" and torch.cuda.is_initialized():
        with torch.cuda.device(device):
            torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


def restore_generator_state(generator: torch.Generator, state: torch.Tensor) -> bool:
    """Load a saved generator state; True when the draws continue exactly.

    A state only fits a generator of the same kind: CUDA's Philox state is 16 bytes (seed and offset),
    the CPU's Mersenne Twister 5,056. A run saved on one kind of device and resumed on another gets a
    generator seeded from the saved bytes instead: the same resume file always gives the same draws,
    and the run continues statistically equivalent but not bit-exact (returns False; say so in the log).
    """
    state = state.to(device="cpu", dtype=torch.uint8)
    if state.numel() == generator.get_state().numel():
        generator.set_state(state)
        return True
    digest = hashlib.blake2b(state.numpy().tobytes(), digest_size=8).digest()
    generator.manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))
    return False
