"""Each modality's preset on generated data in its real file format, against a simple peer in the same run.

Sequences: three classes of noisy sine, square and sawtooth waves of random phase and period (60 a class,
length 96), written as UCR/UEA .ts train and test files; the `sequences` preset against 1-nearest-neighbour
(Euclidean) on the same split, the archive's standard baseline. With --vary the series are 64–128 long (the
Perceiver masks the padding; 1-NN compares them resampled to 128, as the archive's own variable-length
problems are compared). Prints a table; results in README.md.

    PYTHONPATH=. python benchmarks/bench_modalities.py [--epochs N] [--seeds 0 1] [--vary]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from perceiver_gui.config import PRESETS
from perceiver_gui.core.events import Finished
from perceiver_gui.core.series import read_series
from perceiver_gui.core.training import train

LENGTH = 96
PER_CLASS = 60
TEST_PER_CLASS = 20


def waves(rng: np.random.Generator, n_per_class: int, vary: bool) -> tuple[list[np.ndarray], list[str]]:
    series, labels = [], []
    for k, name in enumerate(("sine", "square", "saw")):
        for _ in range(n_per_class):
            n = int(rng.integers(64, 129)) if vary else LENGTH
            t = np.arange(n) / rng.uniform(12, 24) + rng.uniform(0, 1)
            wave = (np.sin(2 * np.pi * t), np.sign(np.sin(2 * np.pi * t)), 2 * (t % 1) - 1)[k]
            series.append((wave + rng.normal(0, 0.3, n))[None])
            labels.append(name)
    return series, labels


def write_ts(path: Path, series: list[np.ndarray], labels: list[str]) -> Path:
    equal = len({s.shape[1] for s in series}) == 1
    header = ["@problemName Waves", "@timeStamps false", "@missing false", "@univariate true", "@dimensions 1",
              f"@equalLength {str(equal).lower()}", *([f"@seriesLength {series[0].shape[1]}"] if equal else []),
              "@classLabel true sine square saw", "@data"]
    rows = [",".join(f"{v:.4f}" for v in s[0]) + f":{label}" for s, label in zip(series, labels, strict=True)]
    path.write_text("\n".join(header + rows) + "\n", encoding="utf-8")
    return path


def one_nn(train_file: Path, test_file: Path) -> tuple[float, float]:
    start = time.perf_counter()
    tr, te = read_series(train_file), read_series(test_file)
    longest = max(tr.longest, te.longest)

    def resampled(v: np.ndarray) -> np.ndarray:
        return np.interp(np.linspace(0, len(v) - 1, longest), np.arange(len(v)), v)

    a, b = (np.stack([resampled(v[0]) for v in found.values]) for found in (tr, te))
    nearest = ((b[:, None, :] - a[None, :, :]) ** 2).sum(-1).argmin(1)
    acc = float(np.mean([tr.labels[i] == label for i, label in zip(nearest, te.labels, strict=True)]))
    return acc, time.perf_counter() - start


def perceiver(train_file: Path, test_file: Path, out: Path, epochs: int | None, seed: int,
              changes: dict[str, str]) -> tuple[float, float]:
    cfg = PRESETS["sequences"].with_updates(changes)
    cfg = dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, train_file=str(train_file), test_file=str(test_file)),
        train=dataclasses.replace(cfg.train, device="cpu", seed=seed, epochs=epochs or cfg.train.epochs,
                                  warmup_epochs=min(cfg.train.warmup_epochs, epochs or cfg.train.epochs)))
    start = time.perf_counter()
    done = None
    for event in train(cfg, out_dir=out):
        if isinstance(event, Finished):
            done = event
    assert done is not None and done.status == "completed", done
    return float(done.test_acc), time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--vary", action="store_true", help="series 64-128 long instead of all 96")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="change the preset, to tune it")
    args = parser.parse_args(argv)
    print(f"{'data seed':>9} {'1-NN acc':>9} {'1-NN s':>7} {'preset acc':>11} {'preset s':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            rng = np.random.default_rng(seed)
            folder = Path(tmp) / f"seed{seed}"
            folder.mkdir()
            train_file = write_ts(folder / "Waves_TRAIN.ts", *waves(rng, PER_CLASS - TEST_PER_CLASS, args.vary))
            test_file = write_ts(folder / "Waves_TEST.ts", *waves(rng, TEST_PER_CLASS, args.vary))
            nn_acc, nn_s = one_nn(train_file, test_file)
            p_acc, p_s = perceiver(train_file, test_file, folder / "run", args.epochs, seed,
                                   dict(item.split("=", 1) for item in args.set))
            print(f"{seed:>9} {nn_acc:>9.1%} {nn_s:>7.2f} {p_acc:>11.1%} {p_s:>9.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
