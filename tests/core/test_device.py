"""The training device helpers: keeping freed memory for the length of a run."""

from __future__ import annotations

import os
import resource
import sys

import pytest
import torch

from perceiver_gui.core.device import _glibc, keep_freed_memory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or _glibc() is None, reason="needs glibc")

MIB = (3, 8, 30, 64)  # a step's activations: tensors of these sizes, alive together, then freed


def _step() -> None:
    tensors = [torch.ones(mib * 2**18) for mib in MIB]  # float32: 2**18 per MiB
    del tensors


def _faults_per_step(steps: int = 2, windows: int = 4) -> float:
    """The fewest page faults per step over a few windows of steps, after the heap has settled.
    Without keep_freed_memory no window goes below 16,384 (the 64 MiB block comes from mmap)."""
    for _ in range(8):
        _step()
    fewest = float("inf")
    for _ in range(windows):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(steps):
            _step()
        fewest = min(fewest, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / steps)
    return fewest


def _resident_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_a_run_reuses_freed_memory_and_hands_it_back_at_the_end():
    pages = sum(MIB) * 2**20 // 4096
    with keep_freed_memory():
        faults = _faults_per_step()
        kept = _resident_mib()
    assert faults < pages / 20  # without it, the 64 MiB block alone faults 16,384 pages every step
    assert kept - _resident_mib() > sum(MIB) / 2  # the freed blocks go back to the OS after the run


def test_nested_runs_keep_the_setting_until_the_last_one_ends():
    pages = sum(MIB) * 2**20 // 4096
    with keep_freed_memory():
        with keep_freed_memory():
            pass
        assert _faults_per_step() < pages / 20
