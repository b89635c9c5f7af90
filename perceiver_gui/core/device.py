"""Choosing the training device and the CPU thread count."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys
import threading
from collections.abc import Iterator

import torch

__all__ = ["DeviceError", "configure_threads", "describe_device", "keep_freed_memory", "resolve_device"]


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


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_GLIBC_DEFAULT = 128 * 1024  # both thresholds' documented defaults
_KEEP = 1 << 30  # 1 GiB: tensors below this come from the heap, and up to this much free memory stays
_keep_lock = threading.Lock()
_keep_users = 0


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.malloc_trim.argtypes = (ctypes.c_size_t,)
        libc.gnu_get_libc_version  # noqa: B018 (musl has mallopt as a no-op but not this)
    except (OSError, AttributeError):
        return None
    return libc


@contextlib.contextmanager
def keep_freed_memory() -> Iterator[None]:
    """While training, keep the memory of freed tensors in the process, then hand it back.

    torch allocates CPU tensors with malloc, and glibc serves big ones (above 128 KiB to 32 MiB,
    adapting) with fresh mmap pages and returns them to the OS on free: every step then page-faults
    and zeroes its activations again, thousands of faults per step for the seed model (about a fifth
    of its CPU time here; see benchmarks/README.md). Raising both thresholds for the run makes freed
    blocks get reused instead; at the end both go back to 128 KiB (fixed, where glibc would adapt)
    and `malloc_trim` returns what is free, so the app does not keep the peak between runs.
    A no-op off glibc Linux."""
    global _keep_users
    libc = _glibc()
    if libc is None:
        yield
        return
    with _keep_lock:
        _keep_users += 1
        if _keep_users == 1:
            libc.mallopt(_M_MMAP_THRESHOLD, _KEEP)
            libc.mallopt(_M_TRIM_THRESHOLD, _KEEP)
    try:
        yield
    finally:
        with _keep_lock:
            _keep_users -= 1
            if _keep_users == 0:
                libc.mallopt(_M_TRIM_THRESHOLD, _GLIBC_DEFAULT)
                libc.mallopt(_M_MMAP_THRESHOLD, _GLIBC_DEFAULT)
                libc.malloc_trim(0)
