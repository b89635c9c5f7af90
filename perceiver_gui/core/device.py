"""Choosing the training device and the CPU thread count."""

from __future__ import annotations

import os

import torch

__all__ = ["DeviceError", "configure_threads", "describe_device", "resolve_device"]


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
