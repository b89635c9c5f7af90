"""Tiny datasets in their real on-disk formats, written by tests into a temporary folder.

Other tests import these too (training, CLI, UI): each function writes files and returns what it
wrote, so a test can compare what the app loads with what is on disk.
"""

from __future__ import annotations

import gzip
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class Written:
    folder: Path  # the dataset's own folder (e.g. root/cifar-10-batches-py)
    train_x: np.ndarray  # uint8 (N, C, H, W)
    train_y: np.ndarray  # int64 (N,)
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: tuple[str, ...]


def _images(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


def _dump(path: Path, obj: object) -> None:
    # Protocol 2, like the official files (written by Python 2); numpy arrays inside, as in CIFAR.
    path.write_bytes(pickle.dumps(obj, protocol=2))


def make_tiny_cifar10(root: str | Path, n_train: int = 50, n_test: int = 10, *, seed: int = 0) -> Written:
    """root/cifar-10-batches-py with data_batch_1..5, test_batch and batches.meta (torchvision's layout)."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    train_x, test_x = _images(rng, n_train, (3, 32, 32)), _images(rng, n_test, (3, 32, 32))
    train_y, test_y = np.arange(n_train) % 10, (np.arange(n_test) * 3) % 10
    for i, part in enumerate(np.array_split(np.arange(n_train), 5), 1):
        _dump(folder / f"data_batch_{i}", {
            "batch_label": f"training batch {i} of 5", "labels": [int(v) for v in train_y[part]],
            "data": train_x[part].reshape(len(part), 3072), "filenames": [f"img_{j}.png" for j in part],
        })
    _dump(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": [int(v) for v in test_y],
                                  "data": test_x.reshape(n_test, 3072),
                                  "filenames": [f"t_{j}.png" for j in range(n_test)]})
    _dump(folder / "batches.meta", {"label_names": list(CIFAR10_CLASSES), "num_cases_per_batch": 10000,
                                    "num_vis": 3072})
    return Written(folder, train_x, train_y.astype(np.int64), test_x, test_y.astype(np.int64), CIFAR10_CLASSES)


def make_tiny_cifar100(root: str | Path, n_train: int = 40, n_test: int = 10, *, seed: int = 0) -> Written:
    """root/cifar-100-python with train, test and meta (fine and coarse labels, as the real files)."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    names = tuple(f"class_{i:03d}" for i in range(100))
    train_x, test_x = _images(rng, n_train, (3, 32, 32)), _images(rng, n_test, (3, 32, 32))
    train_y, test_y = (np.arange(n_train) * 7) % 100, (np.arange(n_test) * 11) % 100
    for name, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        _dump(folder / name, {"filenames": [f"{name}_{j}.png" for j in range(len(x))], "batch_label": name,
                              "fine_labels": [int(v) for v in y], "coarse_labels": [int(v) // 5 for v in y],
                              "data": x.reshape(len(x), 3072)})
    _dump(folder / "meta", {"fine_label_names": list(names),
                            "coarse_label_names": [f"super_{i}" for i in range(20)]})
    return Written(folder, train_x, train_y.astype(np.int64), test_x, test_y.astype(np.int64), names)


def write_idx(path: Path, array: np.ndarray, *, gz: bool) -> Path:
    """An idx file of unsigned bytes (LeCun's MNIST format), optionally gzipped (name gets .gz)."""
    header = bytes((0, 0, 8, array.ndim)) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def make_mnist(root: str | Path, n_train: int = 30, n_test: int = 10, *, folder: str = "MNIST", gz: bool = True,
               seed: int = 0) -> Written:
    """root/MNIST/raw (or root/FashionMNIST/raw) with the four idx files torchvision reads."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    train_x, test_x = _images(rng, n_train, (28, 28)), _images(rng, n_test, (28, 28))
    train_y, test_y = np.arange(n_train) % 10, (np.arange(n_test) + 5) % 10
    write_idx(raw / "train-images-idx3-ubyte", train_x, gz=gz)
    write_idx(raw / "train-labels-idx1-ubyte", train_y, gz=gz)
    write_idx(raw / "t10k-images-idx3-ubyte", test_x, gz=gz)
    write_idx(raw / "t10k-labels-idx1-ubyte", test_y, gz=gz)
    return Written(raw, train_x[:, None], train_y.astype(np.int64), test_x[:, None], test_y.astype(np.int64),
                   tuple(str(i) for i in range(10)))


class _RunsCommand:
    """Pickles as a call to os.system: unpickling it with plain pickle.load would run `command`."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def write_hostile_pickle(path: Path, marker: Path) -> Path:
    """A CIFAR-looking batch whose unpickling would create `marker` via os.system (if it ran code)."""
    path.write_bytes(pickle.dumps({"data": _RunsCommand(f"touch {marker}"), "labels": [0]}, protocol=2))
    return path


CLASS_COLOURS = ((220, 30, 30), (30, 200, 40), (40, 60, 230), (230, 200, 20))


def make_image_folder(root: str | Path, counts: dict[str, int] | None = None, *, size: tuple[int, int] = (20, 16),
                      gray: bool = False, formats: tuple[str, ...] = ("png", "jpg")) -> Path:
    """root with one subfolder per class holding generated images, alternating `formats`.

    Class k is a solid colour (CLASS_COLOURS[k], or its gray level when `gray`) with a darker square,
    so a class is recognisable from its pixels. Returns root.
    """
    root = Path(root)
    counts = counts or {"cats": 6, "dogs": 5}
    for k, (name, n) in enumerate(counts.items()):
        class_dir = root / name
        class_dir.mkdir(parents=True, exist_ok=True)
        colour = CLASS_COLOURS[k % len(CLASS_COLOURS)]
        for i in range(n):
            img = Image.new("RGB", size, colour)
            img.paste(tuple(c // 3 for c in colour), (i % 5, i % 4, i % 5 + 5, i % 4 + 5))
            if gray:
                img = img.convert("L")
            fmt = formats[i % len(formats)]
            img.save(class_dir / f"{name}_{i:03d}.{fmt}", quality=95)  # quality only matters for JPEG
    return root
