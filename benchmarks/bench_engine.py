"""The whole engine against the seed tutorial's loop, on the same CIFAR-format data.

The peer is the tutorial verbatim (minus its `cross_dim=128`, which perceiver-pytorch rejects): a
torchvision CIFAR10 dataset with per-image ToTensor + Normalize, a DataLoader (batch 4, shuffled, 2
workers), perceiver-pytorch's Perceiver and SGD. The data is synthetic CIFAR-10 in the real on-disk
format (this machine cannot download CIFAR-10), so torchvision's md5 check is switched off for the peer;
the engine never md5-checks local copies. Ours runs `train()` on the same folder.

Every measurement runs in a fresh process, so none inherits another's threads, allocator state or caches.

    .venv/bin/python benchmarks/bench_engine.py [--images 2000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from perceiver_gui.config import preset  # noqa: E402
from perceiver_gui.core.events import Finished, Step  # noqa: E402
from perceiver_gui.core.training import RunControl, train  # noqa: E402
from tests.core.data_fixtures import make_tiny_cifar10  # noqa: E402  (writes the real CIFAR format)


def seed_loop(root: Path, images: int, device: torch.device) -> float:
    """images/s of the tutorial's loop over `images` training images (after one warm-up batch)."""
    import torchvision
    import torchvision.transforms as transforms
    from perceiver_pytorch import Perceiver

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])

    # Synthetic files cannot match the official md5 sums, so the peer's md5 check is switched off.
    with mock.patch("torchvision.datasets.cifar.check_integrity", return_value=True):
        trainset = torchvision.datasets.CIFAR10(root=str(root), train=True, download=False, transform=transform)
    loader = torch.utils.data.DataLoader(trainset, batch_size=4, shuffle=True, num_workers=2)
    net = Perceiver(**preset("seed").model.perceiver_kwargs()).to(device)
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    seen, start = 0, None
    for inputs, labels in loader:
        inputs, labels = inputs.to(device).permute(0, 2, 3, 1), labels.to(device)
        optimizer.zero_grad()
        loss = criterion(net(inputs), labels)
        loss.backward()
        optimizer.step()
        loss.item()
        if start is None:
            start = time.perf_counter()
            continue
        seen += len(labels)
        if seen >= images:
            break
    return seen / (time.perf_counter() - start)


def engine(root: Path, images: int, updates: dict) -> float:
    """images/s that `train()` reports over `images` training images (its own steady-state meter)."""
    cfg = preset("seed").with_updates({"data.root": str(root), "data.download": False, "train.epochs": 1, **updates})
    control = RunControl()
    speeds, seen = [], 0
    with tempfile.TemporaryDirectory() as out:
        for event in train(cfg, out_dir=Path(out) / "run", control=control):
            if isinstance(event, Step):
                seen += cfg.train.batch_size
                if event.step > 1:
                    speeds.append((time.perf_counter(), seen))
                if seen >= images:
                    control.stop()
            elif isinstance(event, Finished) and event.status == "failed":
                raise RuntimeError(event.message)
    (t0, n0), (t1, n1) = speeds[0], speeds[-1]
    return (n1 - n0) / (t1 - t0)


VARIANTS = {
    "seed": "seed loop (peer: torchvision + DataLoader, batch 4)",
    "engine": "engine, seed preset (batch 4)",
    "engine128": "engine, seed model, batch 128",
}


def child(variant: str, root: Path, images: int) -> float:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    threads = torch.get_num_threads()
    if variant == "seed":
        return seed_loop(root, images, device)
    if variant == "engine":
        return engine(root, images, {"train.threads": threads})
    return engine(root, images * 4, {"train.threads": threads, "train.batch_size": 128})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=2000, help="training images timed per measurement")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", choices=tuple(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(child(args.child, args.root, args.images), flush=True)
        return 0
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    threads = torch.get_num_threads()
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_tiny_cifar10(root, n_train=max(args.images + 500, 5000), n_test=500)
        for _ in range(args.rounds):  # alternating rounds, median per variant
            for key, name in VARIANTS.items():
                done = subprocess.run([sys.executable, __file__, "--child", key, "--root", str(root),
                                       "--images", str(args.images)], capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    raise RuntimeError(f"{name} failed: {done.stderr[-2000:]}")
                rows.setdefault(name, []).append(float(done.stdout.split()[-1]))
    peer = statistics.median(rows[next(iter(rows))])
    device_name = torch.cuda.get_device_name() if device.type == "cuda" else (platform.processor() or "CPU")
    result = {"device": f"{device_name}, {os.cpu_count()} cores, {threads} torch threads", "rows": {}}
    print(f"{'variant':52s} {'img/s':>9s} {'s/epoch (50k)':>14s} {'vs seed':>8s}")
    for name, values in rows.items():
        speed = statistics.median(values)
        result["rows"][name] = {"images_per_s": speed, "seconds_per_50k_epoch": 50000 / speed, "ratio": speed / peer,
                                "rounds": values}
        print(f"{name:52s} {speed:9.1f} {50000 / speed:14.0f} {speed / peer:7.2f}x")
    (ROOT / "results").mkdir(exist_ok=True)
    (ROOT / "results" / "bench_engine.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
