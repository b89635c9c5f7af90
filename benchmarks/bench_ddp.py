"""Data-parallel training on this machine's CPU: throughput of the seed model with 1 and 2 processes, and an
estimate of multi-GPU scaling for the cifar10 preset's model from its all-reduce volume and its compute.

Each measurement is a fresh `perceiver-gui train --events jsonl` (through torchrun's launcher for 2
processes, gloo) on synthetic CIFAR-10 in the real on-disk format; the throughput is the images of the epoch
over its training seconds (the loop's own clock: no start-up, no evaluation). Rounds alternate the
settings, and the table shows the median.

    .venv/bin/python benchmarks/bench_ddp.py [--images 512] [--rounds 2] [--batch 4 32]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from perceiver_gui.config import preset  # noqa: E402
from perceiver_gui.core.complexity import parameter_count, training_flops_per_sample  # noqa: E402
from perceiver_gui.core.events import EpochEnd, Finished, from_json  # noqa: E402
from tests.core.data_fixtures import make_tiny_cifar10  # noqa: E402  (writes the real CIFAR format)

SETTINGS = (  # (label, processes, threads per process)
    ("1 process × 1 thread", 1, 1),
    ("1 process × 2 threads", 1, 2),
    ("2 processes × 1 thread", 2, 1),
)


def throughput(data: Path, out: Path, *, processes: int, threads: int, batch: int) -> float:
    """Training images/s of one epoch of the seed model."""
    command = [sys.executable, "-m", "perceiver_gui", "train", "--events", "jsonl", "--preset", "seed",
               "--out", str(out), "--nproc-per-node", str(processes), "--set", f"data.root={data}",
               "--set", "data.download=false", "--set", "train.epochs=1", "--set", f"train.batch_size={batch}",
               "--set", f"train.threads={threads}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT.parent)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    events = [from_json(line) for line in done.stdout.splitlines() if line.strip()]
    if not events or not isinstance(events[-1], Finished) or events[-1].status != "completed":
        raise SystemExit(f"the run failed: {done.stderr.strip()[-500:]}")
    epoch = next(e for e in events if isinstance(e, EpochEnd))
    steps = epoch.step
    return steps * batch / epoch.elapsed_s


def scaling_estimate() -> None:
    """All-reduce bytes per step against the step's compute, for the cifar10 preset on H100s."""
    cfg = preset("cifar10")
    params = parameter_count(cfg.model)
    batch = cfg.train.batch_size
    flops = training_flops_per_sample(cfg.model, (32, 32)) * batch
    # H100 SXM: 989 TFLOP/s dense bf16; a small model reaches a fraction of it. Both ends of the range are shown.
    print(f"\ncifar10 preset: {params:,} parameters, {flops / 1e9:,.1f} GFLOP per step of {batch} images "
          f"(complexity.training_flops_per_sample)")
    print("| GPUs | all-reduce per GPU per step | NVLink 4 (~400 GB/s bus) | PCIe 5 (~40 GB/s bus) | "
          "step on an H100 at 20% / 40% of 989 TFLOP/s | efficiency NVLink | efficiency PCIe |")
    print("|---|---|---|---|---|---|---|")
    for n in (2, 4, 8):
        volume = params * 4 * 2 * (n - 1) / n  # float32 gradients, ring all-reduce
        nvlink, pcie = volume / 400e9 + 30e-6, volume / 40e9 + 30e-6  # + a launch latency
        per_gpu = flops / n  # the global batch is split
        slow, fast = per_gpu / (0.2 * 989e12), per_gpu / (0.4 * 989e12)
        # Our all-reduce runs after the backward pass (not overlapped), so efficiency = compute / (compute + comm).
        eff = [(t / (t + c)) for c in (nvlink, pcie) for t in (fast, slow)]
        print(f"| {n} | {volume / 1e6:.2f} MB | {nvlink * 1e6:.0f} µs | {pcie * 1e6:.0f} µs | "
              f"{fast * 1e3:.2f}–{slow * 1e3:.2f} ms | {eff[0]:.0%}–{eff[1]:.0%} | {eff[2]:.0%}–{eff[3]:.0%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, nargs="+", default=[4, 32])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        make_tiny_cifar10(data, n_train=args.images, n_test=32)
        results: dict[tuple[str, int], list[float]] = {}
        load = [os.getloadavg()[0]]
        for r in range(args.rounds):
            for batch in args.batch:
                order = SETTINGS if r % 2 == 0 else SETTINGS[::-1]
                for label, processes, threads in order:
                    out = Path(tmp) / f"run-{r}-{batch}-{processes}-{threads}"
                    speed = throughput(data, out, processes=processes, threads=threads, batch=batch)
                    results.setdefault((label, batch), []).append(speed)
                    load.append(os.getloadavg()[0])
        print(f"seed model, {args.images} synthetic CIFAR-10 images, {os.cpu_count()} CPU(s), median of "
              f"{args.rounds} rounds; load average during the runs {min(load):.1f}–{max(load):.1f}")
        print("| setting | " + " | ".join(f"batch {b} (img/s)" for b in args.batch) + " |")
        print("|---|" + "---|" * len(args.batch))
        for label, _, _ in SETTINGS:
            cells = [f"{statistics.median(results[(label, b)]):,.0f}" for b in args.batch]
            print(f"| {label} | " + " | ".join(cells) + " |")
    scaling_estimate()


if __name__ == "__main__":
    main()
