"""Digits: the `digits` preset against scikit-learn's SVC, measured in the same run.

Trains through the real CLI (`perceiver-gui train --preset digits`), then classifies the held-out half
saved as PNG files through `perceiver-gui predict --json`, exactly as a user would. The peer is the SVC of
scikit-learn's "Recognizing hand-written digits" example (gamma=0.001, same split), 96.9%.

    .venv/bin/python benchmarks/bench_digits.py [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn import datasets, svm

from perceiver_gui.core import runs

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--set", dest="updates", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    digits = datasets.load_digits()
    n = len(digits.images)
    half = n // 2
    t0 = time.perf_counter()
    clf = svm.SVC(gamma=0.001).fit(digits.data[:half], digits.target[:half])
    svc_acc = float((clf.predict(digits.data[half:]) == digits.target[half:]).mean())
    svc_s = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images = tmp / "test-images"
        images.mkdir()
        for i in range(half, n):
            pixels = np.round(digits.images[i] * 255 / 16).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(images / f"{i:04d}-{digits.target[i]}.png")
        cli = [sys.executable, "-m", "perceiver_gui"]
        sets = [a for u in args.updates for a in ("--set", u)]
        t0 = time.perf_counter()
        subprocess.run([*cli, "train", "--preset", "digits", *sets, "--out", str(tmp / "run")], check=True,
                       stdout=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
        run = runs.read_run(tmp / "run")
        epochs = runs.read_metrics(tmp / "run").epochs
        trained_s = max(r.elapsed_s for r in epochs)
        final_acc = epochs[-1].val_acc  # the last epoch on validation; model.safetensors holds the best on it
        out = subprocess.run([*cli, "predict", "--model", str(tmp / "run" / "model.safetensors"), str(images),
                              "--json", "--top-k", "1"], stdout=subprocess.PIPE, text=True)
        rows = [json.loads(line) for line in out.stdout.splitlines()]
        right = sum(r["top"][0]["label"] == Path(r["path"]).stem.split("-")[1] for r in rows if "top" in r)
        ours = right / (n - half)

    result = {
        "machine": f"{_cpu_name()}, {os.cpu_count()} cores", "load_average": os.getloadavg(),
        "svc_acc": svc_acc, "svc_seconds": svc_s,
        "digits_acc_via_predict": ours, "digits_best_val_acc_in_training": run.best_acc,
        "digits_test_acc_in_training": run.test_acc, "digits_final_epoch_val_acc": final_acc,
        "train_seconds": trained_s, "train_wall_seconds_with_startup_and_eval": wall, "updates": args.updates,
    }
    print(f"{'measure':40s} {'value':>10s}")
    print(f"{'SVC accuracy (peer)':40s} {svc_acc:10.2%}")
    print(f"{'digits preset test accuracy via predict':40s} {ours:10.2%}")
    print(f"{'digits preset validation acc, last epoch':40s} {final_acc:10.2%}")
    print(f"{'training time (s, epochs only)':40s} {trained_s:10.1f}")
    print(f"{'train command wall time (s)':40s} {wall:10.1f}")
    print(f"{'load average (1, 5, 15 min) at the end':40s} {' '.join(f'{v:.1f}' for v in os.getloadavg()):>10s}")
    print(f"{'target: >= 97%, <= 60 s':40s} {'MET' if ours >= 0.97 and trained_s <= 60 else 'NOT MET':>10s}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_digits.json").write_text(json.dumps(result, indent=2))
    return 0


def _cpu_name() -> str:
    """lscpu's model name on Linux (platform.processor() is empty there), else what platform knows."""
    try:
        out = subprocess.run(["lscpu"], stdout=subprocess.PIPE, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or platform.machine()


if __name__ == "__main__":
    raise SystemExit(main())
