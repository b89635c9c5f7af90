"""What an epoch end writes, and what it costs: the evaluation file, the best model, run.json and the resume
file (weights, optimizer state and random states, fsynced), for the digits preset and the seed model on a
CIFAR-10-shaped dataset (1,000 training images of which 100 validate; synthetic, in the real on-disk
format, so no network).

Each write is timed alone in a temporary run folder on the same disk as the runs (median of --rounds), and
an epoch end is their sum: before `train.save_every_s` every epoch wrote all four; now the resume file is
written at most every save_every_s seconds (and always at stop, at the end and on Ctrl+C), so an epoch end
that is not due writes the other three. Then the digits preset through `train()` with save_every_s 0 (every
epoch, as before) and 60 (the default): the wall time of its epoch ends less their training time.

    .venv/bin/python benchmarks/bench_epoch_end.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from perceiver_gui.config import preset  # noqa: E402
from perceiver_gui.core import data, evaluation, runs, training  # noqa: E402
from tests.core.data_fixtures import make_tiny_cifar10  # noqa: E402


def median_seconds(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name: str, cfg, rounds: int, work: Path) -> dict[str, float]:
    loader = data.open_dataset(cfg.data)
    try:
        while True:
            next(loader)
    except StopIteration as done:
        dataset = done.value
    s = training._build(cfg, dataset, training.resolve_device("cpu"), training.Dist.single())
    run_dir = work / name
    run_dir.mkdir()
    state = training.RunState(step=100, epochs_done=1, best_acc=0.5, best_epoch=1)
    ev = training.evaluate(s, s.val_x, s.val_y, max(256, cfg.train.batch_size))  # each epoch's validation
    digest = evaluation.test_digest(s.val_x.numpy(), s.val_y.numpy())
    epoch_gen = s.gen.get_state()
    costs = {
        "evaluation file": lambda: evaluation.save_evaluation(run_dir, evaluation.Evaluation(
            epoch=1, step=100, class_names=tuple(s.info.class_names), test_digest=digest, split="validation",
            **ev.predictions)),
        "best model": lambda: training.checkpoints.save_model(run_dir / runs.MODEL_FILE, training._cpu_state(s.model),
                                                              training._meta(s, state, run_dir)),
        "run.json": lambda: runs.write_run(run_dir, epochs_done=1, best_acc=0.5, best_epoch=1),
        "resume file": lambda: training.save_resume_state(s, state, epoch_gen, run_dir / runs.RESUME_FILE),
    }
    batch = torch.arange(cfg.train.batch_size)
    training.apply_gradients(s, training.forward(s, batch, 0.001, contextlib.nullcontext())[0])  # optimizer state
    out = {what: median_seconds(fn, rounds) for what, fn in costs.items()}
    out["resume file MiB"] = (run_dir / runs.RESUME_FILE).stat().st_size / 2**20
    return out


def engine_epoch_ends(cfg, save_every_s: float, work: Path) -> list[float]:
    """Seconds of each epoch end through `train()`: the wall time between EpochEnd events less the training
    time (`EpochEnd.elapsed_s`) in between, so evaluation, the writes, and the events."""
    from perceiver_gui.core.events import EpochEnd

    cfg = cfg.with_updates({"train.save_every_s": save_every_s})
    ends = []
    work.mkdir(exist_ok=True)
    for event in training.train(cfg, out_dir=work / f"engine-{save_every_s:g}"):
        if isinstance(event, EpochEnd):
            ends.append((time.perf_counter(), event.elapsed_s))
    return [(b[0] - a[0]) - (b[1] - a[1]) for a, b in zip(ends, ends[1:], strict=False)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_tiny_cifar10(work / "cifar", n_train=1000, n_test=100)
        configs = {
            "digits": preset("digits").with_updates({"train.device": "cpu"}),
            "seed": preset("seed").with_updates({"train.device": "cpu", "data.root": str(work / "cifar"),
                                                 "data.download": False}),
        }
        print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
              f"load {os.getloadavg()[0]:.1f}")
        for name, cfg in configs.items():
            costs = measure(name, cfg, args.rounds, work)
            before = sum(v for k, v in costs.items() if k != "resume file MiB")
            after = before - costs["resume file"]
            parts = ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in costs.items() if k != "resume file MiB")
            print(f"{name}: {parts}; resume file {costs['resume file MiB']:.1f} MiB")
            print(f"  epoch end, every save: {before * 1000:.1f} ms; not due: {after * 1000:.1f} ms "
                  f"({before / after:.1f}x less)")
        digits = configs["digits"].with_updates({"train.epochs": 5, "train.threads": 2})
        ends: dict[float, list[float]] = {0.0: [], 60.0: []}
        for r in range(args.rounds):  # alternating, so a change in the machine's load hits both alike
            for every in (0.0, 60.0) if r % 2 == 0 else (60.0, 0.0):
                ends[every] += engine_epoch_ends(digits, every, work / f"round-{r}")
        for every, costs in ends.items():
            print(f"digits through train(), save_every_s={every:g}: epoch end {statistics.median(costs) * 1000:.0f} ms "
                  f"(median of {len(costs)}, {args.rounds} alternating rounds; evaluation included)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
