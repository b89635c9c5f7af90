"""The GPU rows of the performance issue: one CIFAR-10 epoch (50,000 images) of the seed model through the
engine, against the seed tutorial's loop on the same GPU and the same data.

Meant for one call on the device machine (see "GPU" in benchmarks/README.md for the exact command):

    PYTHONPATH=.:/tmp/site python3 benchmarks/bench_gpu.py --out "$OUT"

The data is synthetic CIFAR-10 in the real on-disk format (the machine has no network); speed does not
depend on the pixels. The engine trains the seed *model* with the `cifar10` preset's recipe (AdamW,
warmup + cosine, crop + flip, bf16 autocast on CUDA) at each `--batch`, two epochs; the second epoch's
training time is the difference of the two `EpochEnd.elapsed_s` (the loop's own clock, which stops for
evaluation and saving), its evaluation apart. (Timing `Step` events would overstate the speed: on a GPU
the loop reads the loss every 10 steps and then yields 10 steps at once, so the first and last stamps of
an epoch leave out up to 9 steps' work at either end.) The peer is
`bench_engine.seed_loop`: torchvision's CIFAR10 + ToTensor/Normalize + DataLoader (batch 4, 2 workers),
perceiver-pytorch and SGD, as the tutorial, on the same device, over `--seed-images` images.
Runs on a CPU too, with small sizes, as a smoke check:

    .venv/bin/python benchmarks/bench_gpu.py --train 1000 --test 200 --batch 64 --seed-images 100
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_engine import seed_loop  # noqa: E402

from perceiver_gui.config import preset  # noqa: E402
from perceiver_gui.core.events import EpochEnd, Finished, RunStarted, Step  # noqa: E402
from perceiver_gui.core.training import train  # noqa: E402
from tests.core.data_fixtures import make_tiny_cifar10  # noqa: E402


def engine_epoch(root: Path, out: Path, batch: int, precision: str) -> dict:
    seed, c10 = preset("seed"), preset("cifar10")
    cfg = dataclasses.replace(c10, name=f"gpu-bench-{batch}", model=seed.model,
                              data=dataclasses.replace(c10.data, root=str(root), download=False))
    cfg = cfg.with_updates({"train.batch_size": batch, "train.epochs": 2, "train.precision": precision,
                            "train.warmup_epochs": 0.5})
    last_step = 0.0  # wall time of the last Step of epoch 2
    elapsed: dict[int, float] = {}  # epoch -> EpochEnd.elapsed_s
    started = time.perf_counter()
    row: dict = {"batch": batch}
    for event in train(cfg, out_dir=out / f"run-{batch}"):
        now = time.perf_counter()
        if isinstance(event, RunStarted):
            row["device"] = event.device_name
            row["steps_per_epoch"] = event.steps_per_epoch
            row["start_s"] = now - started  # data to the device, model, optimizer
        elif isinstance(event, Step) and event.epoch == 2:
            last_step = now
        elif isinstance(event, EpochEnd):
            row[f"epoch{event.epoch}_val_acc"] = event.val_acc
            elapsed[event.epoch] = event.elapsed_s
            if event.epoch == 2:
                row["eval_s"] = now - last_step  # evaluation and its file
        elif isinstance(event, Finished):
            row["status"] = event.status
            if event.status != "completed":
                row["message"] = event.message
    if 1 in elapsed and 2 in elapsed:
        row["epoch_train_s"] = elapsed[2] - elapsed[1]
        row["images_per_s"] = row["steps_per_epoch"] * batch / row["epoch_train_s"]
    if torch.cuda.is_available():
        row["cuda_allocated_after_run_mib"] = torch.cuda.memory_allocated() / 2**20
        row["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=50_000)
    parser.add_argument("--test", type=int, default=10_000)
    parser.add_argument("--batch", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--precision", default="auto", help="the engine's train.precision (auto: bf16 on CUDA)")
    parser.add_argument("--seed-images", type=int, default=4000, help="images timed for the seed loop")
    parser.add_argument("--out", type=Path, help="also write the JSON here (the device's $OUT)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    result: dict = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "CPU",
                    "torch": torch.__version__, "train_images": args.train, "engine": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        t = time.perf_counter()
        make_tiny_cifar10(root, n_train=args.train, n_test=args.test)
        result["make_data_s"] = time.perf_counter() - t
        for batch in args.batch:
            row = engine_epoch(root, Path(tmp), batch, args.precision)
            result["engine"].append(row)
            print(json.dumps(row), flush=True)
        speed = seed_loop(root, args.seed_images, device)
        result["seed_loop"] = {"images_per_s": speed, "epoch_s": args.train / speed}
    print(f"\n{result['device']}, torch {result['torch']}, {args.train} training images")
    print(f"{'':34}{'epoch (s)':>10}{'img/s':>10}{'eval (s)':>10}{'vs seed':>9}")
    seed_epoch = result["seed_loop"]["epoch_s"]
    print(f"{'seed loop (batch 4, DataLoader)':34}{seed_epoch:10.1f}{speed:10.0f}{'':>10}{1:8.1f}x")
    for row in result["engine"]:
        if "epoch_train_s" in row:
            scaled = row["epoch_train_s"] * args.train / (row["steps_per_epoch"] * row["batch"])
            print(f"{'engine, batch ' + str(row['batch']):34}{scaled:10.2f}{row['images_per_s']:10.0f}"
                  f"{row['eval_s']:10.2f}{seed_epoch / scaled:8.1f}x")
        else:
            print(f"engine, batch {row['batch']}: {row.get('status')} {row.get('message', '')}")
    text = json.dumps(result, indent=2) + "\n"
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "bench_gpu.json").write_text(text, encoding="utf-8")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_gpu.json").write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
