"""What a run's guards cost: the lock a training process holds, the check that its folder is still there,
and the status written to run.json at each epoch — against the epoch they guard.

Each guard is timed alone (median of rounds of many calls, in a temporary run folder on the same disk as
the runs), then counted per epoch of the `digits` preset (56 steps, a step record every 10, 4 saves), and
set against a measured epoch of that preset in the same process (the peer).

    .venv/bin/python benchmarks/bench_guards.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "bench_guards.json"


def per_call(fn, calls: int, rounds: int) -> float:
    """Median over rounds of the mean seconds per call."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def epoch_seconds(rounds: int) -> tuple[float, int, int]:
    """Median seconds of one digits-preset epoch (the second of two: the first warms up), its steps and
    logged step records."""
    from perceiver_gui.config import preset
    from perceiver_gui.core.events import EpochEnd
    from perceiver_gui.core.training import train

    cfg = preset("digits").with_updates({"train.epochs": 2})
    times, steps = [], 0
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            ends = []
            for event in train(cfg, out_dir=Path(tmp) / "run"):
                if isinstance(event, EpochEnd):
                    ends.append((time.perf_counter(), event.step))
            times.append(ends[1][0] - ends[0][0])
            steps = ends[1][1] - ends[0][1]
    return statistics.median(times), steps, steps // cfg.train.log_every


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    from perceiver_gui.core import runs, training

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        (run / runs.CONFIG_FILE).write_text("{}")
        runs.write_run(run, name="bench", created=time.time(), status="running", epochs_done=3, best_acc=0.5)

        def lock_and_release():
            runs.lock_run(run).release()

        guards = {
            "lock taken and released (once per run)": per_call(lock_and_release, 200, args.rounds),
            "lock probed by the Runs list (per running run listed)": per_call(lambda: runs.lock_holder(run), 500,
                                                                               args.rounds),
            "folder identity check (per logged step and save)": per_call(lambda: training._identity(run), 2000,
                                                                         args.rounds),
            "run.json read, typed": per_call(lambda: runs.read_run(run), 500, args.rounds),
            "run.json status write (read + atomic write + fsync)": per_call(
                lambda: runs.write_run(run, epochs_done=3, best_acc=0.5, best_epoch=2), 50, args.rounds),
        }
    epoch_s, steps, logged = epoch_seconds(max(1, args.rounds // 2))
    saves = 4  # evaluation, best model, resume state, and the folder check before the status write
    per_epoch = (guards["folder identity check (per logged step and save)"] * (logged + saves)
                 + guards["run.json status write (read + atomic write + fsync)"])
    for name, seconds in guards.items():
        print(f"{name:58s} {seconds * 1e6:9.1f} µs")
    print(f"{'digits preset epoch (' + str(steps) + ' steps)':58s} {epoch_s * 1e3:9.1f} ms")
    print(f"{'guards per epoch (' + str(logged + saves) + ' checks + 1 status write)':58s} {per_epoch * 1e6:9.1f} µs"
          f"  = {per_epoch / epoch_s:.3%} of the epoch")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "guards_s": guards,
                                   "epoch_s": epoch_s, "guards_per_epoch_s": per_epoch}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
