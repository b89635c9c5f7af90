"""Training step of our Perceiver vs perceiver-pytorch's, in one process; results in benchmarks/README.md.

    .venv/bin/python benchmarks/bench_model.py [--rounds 9] [--steps 3] [--batch 128] [--threads N]
    .venv/bin/python benchmarks/bench_model.py --ops     # aten ops per training step instead of time

A step is forward, cross-entropy, backward and an SGD step (the seed recipe: lr 0.001, momentum
0.9) on the seed model (CIFAR-10 shape, 32×32×3, float32, CPU). Both models start from the same
weights. Each round times `--steps` steps of each model and one large float32 matmul, in an order
that alternates between rounds, so that load from other processes hits all three alike; the
reported numbers are medians over rounds. Achieved GFLOP/s uses the model's nominal training FLOPs
(perceiver_gui.core.complexity.training_flops_per_sample: matmuls only, 3 × forward).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from perceiver_gui.config import preset
from perceiver_gui.core.complexity import training_flops_per_sample
from perceiver_gui.core.model import Perceiver

RESULTS = Path(__file__).resolve().parent / "results" / "bench_model.json"
MATMUL_SIZE = 2048  # square float32 matmul used as the machine's attainable throughput


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


def make_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    opt = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def timed(fn, repeats: int, clock=time.perf_counter) -> float:
    """Seconds per call."""
    start = clock()
    for _ in range(repeats):
        fn()
    return (clock() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=3, help="steps per model per round")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 keeps torch's default")
    parser.add_argument("--ops", action="store_true",
                        help="count the aten operations (views excluded) of one forward + backward of each model, "
                             "float32 and bf16 autocast, ours as a CPU and as a GPU runs it; on a GPU each is "
                             "about one kernel launch")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time with this process's CPU time instead of the wall clock: steadier on a busy "
                             "machine, but only meaningful with --threads 1 (idle OpenMP threads spin)")
    args = parser.parse_args()
    count_ops() if args.ops else run(args)


def count_ops() -> None:
    import collections

    from perceiver_pytorch import Perceiver as Reference
    from torch.utils._python_dispatch import TorchDispatchMode

    from perceiver_gui.core import model as model_module

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops: collections.Counter[str] = collections.Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if not func.is_view:
                self.ops[func.__name__.split(".")[0]] += 1
            return func(*args, **(kwargs or {}))

    cfg = preset("seed").model
    x, y = torch.randn(4, 32, 32, cfg.input_channels), torch.randint(0, cfg.num_classes, (4,))
    print(f"{'aten ops per forward + backward, seed model':46}{'float32':>9}{'bf16':>9}{'casts':>7}")
    for name, build, split_on in (("perceiver-pytorch", Reference, ("cpu",)), ("ours, CPU path", Perceiver, ("cpu",)),
                                  ("ours, GPU path", Perceiver, ())):
        model_module.SPLIT_FEED_FORWARD_ON = split_on
        model = build(**cfg.perceiver_kwargs())
        model(x).sum().backward()  # caches filled, as in every later step
        counts = []
        for dtype in (None, torch.bfloat16):
            model.zero_grad(set_to_none=True)
            with Count() as counted:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
                    loss = F.cross_entropy(model(x).float(), y)
                loss.backward()
            counts.append(counted.ops)
        print(f"{name:46}{sum(counts[0].values()):9}{sum(counts[1].values()):9}{counts[1]['_to_copy']:7}")
    model_module.SPLIT_FEED_FORWARD_ON = ("cpu",)


def run(args: argparse.Namespace) -> None:
    clock = time.process_time if args.cpu_time else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)

    from perceiver_pytorch import Perceiver as Reference

    cfg = preset("seed").model
    image = (32, 32)
    torch.manual_seed(0)
    reference = Reference(**cfg.perceiver_kwargs())
    ours = Perceiver(**cfg.perceiver_kwargs())
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(args.batch, *image, cfg.input_channels)
    y = torch.randint(0, cfg.num_classes, (args.batch,))
    steps = {"ours": make_step(ours, x, y), "perceiver-pytorch": make_step(reference, x, y)}
    a, b = torch.randn(MATMUL_SIZE, MATMUL_SIZE), torch.randn(MATMUL_SIZE, MATMUL_SIZE)
    jobs = {**steps, "matmul": lambda: a @ b}

    for job in jobs.values():  # warm up allocators and kernels
        job()
        job()
    times: dict[str, list[float]] = {name: [] for name in jobs}
    names = list(jobs)
    for r in range(args.rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            times[name].append(timed(jobs[name], args.steps if name in steps else 5, clock))

    ratios = [t_ref / t_ours for t_ref, t_ours in zip(times["perceiver-pytorch"], times["ours"], strict=True)]
    step_flops = training_flops_per_sample(cfg, image) * args.batch
    matmul_gflops = 2 * MATMUL_SIZE**3 / statistics.median(times["matmul"]) / 1e9
    rows = {}
    for name in steps:
        t = statistics.median(times[name])
        gflops = step_flops / t / 1e9
        rows[name] = {"step_s": t, "gflops": gflops, "matmul_share": gflops / matmul_gflops,
                      "step_s_all": times[name]}
    result = {
        "machine": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "clock": "cpu" if args.cpu_time else "wall", "batch": args.batch, "rounds": args.rounds, "steps_per_round": args.steps,
        "training_gflop_per_step": step_flops / 1e9, "matmul_gflops": matmul_gflops,
        "matmul_s_all": times["matmul"], "speedup_median": statistics.median(ratios),
        "speedup_min": min(ratios), "speedup_max": max(ratios), "models": rows,
    }

    print(f"{result['machine']}, {result['threads']} threads, torch {torch.__version__}, batch {args.batch}, "
          f"{args.rounds} rounds × {args.steps} steps, {result['clock']} clock; "
          f"{step_flops / 1e9:.1f} GFLOP per training step")
    print(f"{'':20}{'step (s)':>10}{'GFLOP/s':>10}{'of matmul':>11}")
    for name, row in rows.items():
        print(f"{name:20}{row['step_s']:10.3f}{row['gflops']:10.1f}{row['matmul_share']:10.0%}")
    print(f"{f'matmul {MATMUL_SIZE}²':20}{'':10}{matmul_gflops:10.1f}{1:10.0%}")
    print(f"speed-up: median {result['speedup_median']:.2f}× (rounds range {min(ratios):.2f}–{max(ratios):.2f}×)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
