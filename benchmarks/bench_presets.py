"""Presets: each dataset's preset trained on data in that dataset's real on-disk format, with a peer.

No downloads: the data is generated here, in the formats the app reads.
- MNIST format: four idx files (MNIST/raw) of real-looking digits, scikit-learn's 8×8 digits upsampled
  to 20×20 and placed in a 28×28 frame with a random shift of up to ±3 pixels (MNIST's digits are 20×20
  boxes centred in 28×28). Train is the first half of scikit-learn's digits, test the second half.
  The same files stand in for Fashion-MNIST (FashionMNIST/raw), so that preset runs end to end too.
- A shapes folder: 3 classes (circle, square, triangle) × 60 PNGs at 32 px, drawn with PIL at random
  sizes, positions and colours on white.
- digits: the bundled dataset itself.

The peer is scikit-learn's SVC (gamma="scale", C=10) on the same pixels and the same split, timed in the
same run. Each preset trains through the real CLI (`perceiver-gui train --preset NAME`), so the time
includes nothing the user would not wait for except the process start, reported separately.

    .venv/bin/python benchmarks/bench_presets.py [--only mnist,folder] [--threads 2] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from sklearn import datasets, svm

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
SHAPES = ("circle", "square", "triangle")


def write_idx(path: Path, array: np.ndarray) -> None:
    """An idx file of unsigned bytes (LeCun's MNIST format)."""
    header = bytes((0, 0, 8, array.ndim)) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def mnist_like(seed: int = 0, copies: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits as MNIST-style 28×28 uint8 images: (train_x, train_y, test_x, test_y); with
    `copies` > 1 the training split holds each training digit that many times, each at its own random shift
    (the test split stays one shift of each test digit)."""
    if copies > 1:
        parts = [mnist_like(seed + k) for k in range(copies)]
        return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), parts[0][2],
                parts[0][3])
    digits = datasets.load_digits()
    rng = np.random.default_rng(seed)
    images = np.zeros((len(digits.images), 28, 28), dtype=np.uint8)
    for i, small in enumerate(digits.images):
        glyph = Image.fromarray(np.rint(small * 255 / 16).astype(np.uint8), mode="L").resize((20, 20),
                                                                                              Image.BILINEAR)
        dy, dx = rng.integers(-3, 4, size=2)
        images[i, 4 + dy:24 + dy, 4 + dx:24 + dx] = np.asarray(glyph)
    half = len(images) // 2
    labels = digits.target.astype(np.uint8)
    return images[:half], labels[:half], images[half:], labels[half:]


def write_mnist(root: Path, folder: str, arrays: tuple[np.ndarray, ...]) -> Path:
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    for name, array in zip(names, arrays, strict=True):
        write_idx(raw / name, array)
    return raw


def write_shapes(folder: Path, per_class: int = 60, side: int = 32, seed: int = 0) -> Path:
    """folder/<shape>/NNN.png: a filled circle, square or triangle of random size, place and colour."""
    rng = np.random.default_rng(seed)
    for shape in SHAPES:
        (folder / shape).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            while True:  # a colour that stands out from the white paper
                colour = tuple(int(v) for v in rng.integers(0, 256, 3))
                if sum(colour) < 600:
                    break
            image = Image.new("RGB", (side, side), "white")
            draw = ImageDraw.Draw(image)
            size = int(rng.integers(side // 3, side * 3 // 4))
            x0, y0 = (int(v) for v in rng.integers(0, side - size, 2))
            if shape == "circle":
                draw.ellipse((x0, y0, x0 + size, y0 + size), fill=colour)
            elif shape == "square":
                draw.rectangle((x0, y0, x0 + size, y0 + size), fill=colour)
            else:
                draw.polygon([(x0 + size / 2, y0), (x0, y0 + size), (x0 + size, y0 + size)], fill=colour)
            image.save(folder / shape / f"{i:03d}.png")
    return folder


def svc_peer(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> tuple[float, float]:
    """(accuracy, seconds) of an RBF SVC on the raw pixels scaled to 0..1."""
    t0 = time.perf_counter()
    clf = svm.SVC(gamma="scale", C=10).fit(train_x.reshape(len(train_x), -1) / 255.0, train_y)
    acc = float((clf.predict(test_x.reshape(len(test_x), -1) / 255.0) == test_y).mean())
    return acc, time.perf_counter() - t0


def train_preset(name: str, out: Path, sets: list[str]) -> dict:
    """Train a preset through the CLI; its best and final validation accuracy, the chosen model's test
    accuracy, and the seconds spent training."""
    cli = [sys.executable, "-m", "perceiver_gui", "train", "--preset", name, "--out", str(out)]
    t0 = time.perf_counter()
    done = subprocess.run([*cli, *[a for s in sets for a in ("--set", s)]], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stdout[-2000:]}")
    records = list(map(json.loads, (out / "metrics.jsonl").read_text().splitlines()))
    epochs = [r for r in records if r.get("type") == "epoch"]
    test = [r for r in records if r.get("type") == "test"]
    return {"best_acc": max(float(r["val_acc"]) for r in epochs), "final_acc": float(epochs[-1]["val_acc"]),
            "test_acc": float(test[-1]["test_acc"]) if test else float("nan"),
            "train_s": max(float(r["elapsed_s"]) for r in epochs), "wall_s": wall, "epochs": len(epochs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="folder,mnist,digits", help="comma-separated presets (also fashion_mnist)")
    parser.add_argument("--threads", type=int, default=2, help="train.threads for every preset")
    parser.add_argument("--copies", type=int, default=1,
                        help="shifted copies of each training digit in the MNIST-format files (test: one)")
    parser.add_argument("--set", dest="updates", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    only = args.only.split(",")

    rows = []
    # best and final: validation accuracy (the best chose the model); test: that model, measured once.
    print(f"{'run':44s} {'best val':>8s} {'final val':>9s} {'test':>7s} {'train s':>8s} {'wall s':>7s}   load (1 min)",
          flush=True)

    def report(label: str, best: float, final: float, test: float, secs: float, wall: float) -> None:
        rows.append((label, best, final, test, secs, wall, os.getloadavg()[0]))
        print(f"{label:44s} {best:8.1%} {final:9.1%} {test:7.1%} {secs:8.1f} {wall:7.1f}   {os.getloadavg()[0]:.2f}",
              flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data_root = tmp / "data"
        mnist = mnist_like(copies=args.copies)
        write_mnist(data_root, "MNIST", mnist)
        write_mnist(data_root, "FashionMNIST", mnist)
        shapes = write_shapes(tmp / "shapes")
        common = [f"train.threads={args.threads}", "data.download=false", f"data.root={data_root}", *args.updates]
        if "mnist" in only or "fashion_mnist" in only:
            acc, secs = svc_peer(*mnist)
            report("SVC (peer), MNIST-format digits", acc, acc, acc, secs, secs)
        for name in only:
            extra = [f"data.folder={shapes}"] if name == "folder" else []
            r = train_preset(name, tmp / f"run-{name}", [*common, *extra])
            label = {"folder": "folder preset, 3 shapes × 60 at 32 px",
                     "mnist": "mnist preset, MNIST-format digits",
                     "fashion_mnist": "fashion_mnist preset, same files",
                     "digits": "digits preset, bundled 8×8"}.get(name, name)
            report(label, r["best_acc"], r["final_acc"], r["test_acc"], r["train_s"], r["wall_s"])

    load = os.getloadavg()
    print(f"load average (1, 5, 15 min) at the end: {' '.join(f'{v:.2f}' for v in load)}; {os.cpu_count()} cores")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_presets.json").write_text(json.dumps(
        {"rows": rows, "load_average": load, "threads": args.threads, "copies": args.copies, "updates": args.updates}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
