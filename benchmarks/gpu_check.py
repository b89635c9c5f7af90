"""The GPU check of issue #12: one device call that measures what the GPU path does, as JSON under --out.

    PYTHONPATH=.:/tmp/site python3 benchmarks/gpu_check.py --out "$OUT"     # the device call, ~8 min
    .venv/bin/python benchmarks/gpu_check.py --cpu-smoke                      # tiny sizes, < 60 s, no GPU

Sections, in order of priority; each is written to the JSON as soon as it ends, one that fails records
its error and the next one runs, and a section that would start after --budget-s is skipped with a note:

- env: the GPU, its compute capability and memory, torch, cuDNN, what precision "auto" picks there;
- attention: which SDPA backends (cuDNN, flash, memory-efficient, math) run the seed model's three
  attention shapes (the first cross-attention, whose shared latent query is expanded with stride 0; a
  later cross-attention; the latent self-attention) in bf16 and fp32, forward and backward, their error
  against a float64 reference and their time;
- host_syncs: warnings of torch.cuda.set_sync_debug_mode("warn") per training step, for the bare model
  step and for the engine (`train()`), whose throttled loss read is one sync per 10 steps;
- kernels: GPU kernel launches, aten calls and autocast casts per bare training step (torch.profiler);
- epochs_engine, epochs_eager, epochs_compiled: the CIFAR-10-shaped epoch (50,000 images) of the seed model at
  each --batch, through the engine (`EpochEnd.elapsed_s` of epoch 2, and the wall time of its epoch end:
  evaluation and saving) and as a bare step loop, eager and `torch.compile`d, with peak memory and the
  memory left after each;
- epochs_engine_host_data: the engine with the training images forced off the GPU (pinned host memory,
  asynchronous batch copies), as when a dataset does not fit;
- epochs_engine_compiled, epochs_engine_reduce_overhead (last: each is a compilation): the engine with
  `train.compile` at the second --compile-batch;
- seed_loop: the seed tutorial's loop (batch 4, DataLoader) on the same GPU, the peer of the epochs;
- precision: the bare step in fp16 + grad scaler, bf16, and fp32 with and without TF32: time and the
  loss after the same steps from the same weights;
- determinism: the engine twice with one seed, and stopped + resumed against uninterrupted;
- oom: a forced out-of-memory error, its message, whether device.is_out_of_memory knows it, and the
  memory after device.release_memory;
- cross_device_resume: a run stopped on the GPU and resumed on the CPU (through the engine).

The data is synthetic CIFAR-10 in the real on-disk format (the machine has no network); speed does not
depend on the pixels.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import math
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from perceiver_gui.config import Config, preset  # noqa: E402
from perceiver_gui.core import data, training  # noqa: E402
from perceiver_gui.core.control import RunControl  # noqa: E402
from perceiver_gui.core.device import (  # noqa: E402
    apply_device_settings,
    choose_precision,
    is_out_of_memory,
    release_memory,
)
from perceiver_gui.core.events import EpochEnd, Finished, Log, RunStarted, Step  # noqa: E402
from perceiver_gui.core.model import build_model, to_channels_last  # noqa: E402
from perceiver_gui.core.training import resume as resume_run  # noqa: E402
from perceiver_gui.core.training import train  # noqa: E402
from tests.core.data_fixtures import make_tiny_cifar10  # noqa: E402

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


@dataclasses.dataclass
class Check:
    device: torch.device
    smoke: bool
    root: Path  # synthetic CIFAR-10 here
    work: Path  # run folders
    train_images: int
    test_images: int
    batches: tuple[int, ...]
    compile_batches: tuple[int, ...]
    deadline: float  # time.perf_counter() after which no section starts

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)


# -- helpers ------------------------------------------------------------------------------------------
def engine_config(check: Check, name: str, batch: int, **updates) -> Config:
    """The cifar10 preset's recipe with the seed model, on the synthetic folder."""
    seed, c10 = preset("seed"), preset("cifar10")
    cfg = dataclasses.replace(c10, name=name, model=seed.model,
                              data=dataclasses.replace(c10.data, root=str(check.root), download=False))
    return cfg.with_updates({"train.batch_size": batch, "train.epochs": 2, "train.warmup_epochs": 0.5,
                             "train.device": str(check.device), "train.log_every": 50, **updates})


def run_engine(cfg: Config | None, out: Path, *, resume: bool = False, control: RunControl | None = None,
               on_step: Callable[[Step], None] | None = None) -> dict:
    """Drive the training generator; what a benchmark needs of its events."""
    row: dict = {"losses": [], "epochs": {}, "logs": []}
    events = resume_run(out, control=control) if resume else train(cfg, out_dir=out, control=control)
    started = time.perf_counter()
    for event in events:
        if isinstance(event, RunStarted):
            row.update(device=event.device_name, steps_per_epoch=event.steps_per_epoch,
                       start_s=time.perf_counter() - started, start_step=event.start_step)
        elif isinstance(event, Step):
            row["losses"].append(event.loss)
            if on_step is not None:
                on_step(event)
        elif isinstance(event, EpochEnd):
            # wall_s - elapsed_s grows by each epoch end's evaluation and saving
            row["epochs"][event.epoch] = {"elapsed_s": event.elapsed_s, "val_acc": event.val_acc,
                                          "train_loss": event.train_loss, "wall_s": time.perf_counter() - started}
        elif isinstance(event, Log):
            row["logs"].append(event.message)
        elif isinstance(event, Finished):
            row.update(status=event.status, message=event.message, best_acc=event.best_val_acc,
                       test_acc=event.test_acc)
    return row


def memory(check: Check) -> dict:
    if not check.cuda:
        return {}
    free, total = torch.cuda.mem_get_info(check.device)
    return {"peak_allocated_mib": torch.cuda.max_memory_allocated(check.device) / 2**20,
            "allocated_mib": torch.cuda.memory_allocated(check.device) / 2**20,
            "free_mib": free / 2**20, "total_mib": total / 2**20}


def reset_peak(check: Check) -> None:
    if check.cuda:
        torch.cuda.reset_peak_memory_stats(check.device)


def bare_step(check: Check, batch: int, *, dtype: torch.dtype | None = None, scaler: bool = False,
              compiled: bool = False, seed: int = 0):
    """The engine's step without the engine: uint8 batch on the device -> augment -> normalise -> model ->
    loss -> backward -> fused AdamW (foreach off the GPU). Returns step() -> loss tensor."""
    torch.manual_seed(seed)
    model = build_model(preset("seed").model).to(check.device)
    forward = torch.compile(model) if compiled else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05, **({"fused": True} if check.cuda else {}))
    grad_scaler = torch.amp.GradScaler("cuda") if scaler else None
    gen = torch.Generator(device=check.device).manual_seed(seed)
    images = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8, device=check.device, generator=gen)
    labels = torch.randint(0, 10, (batch,), device=check.device, generator=gen)
    autocast = (torch.autocast(check.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext())

    def step() -> torch.Tensor:
        x = data.augment(images, crop_padding=4, hflip=True, generator=gen)
        x = to_channels_last(data.normalize(x, CIFAR_MEAN, CIFAR_STD))
        with autocast:
            loss = F.cross_entropy(forward(x).float(), labels, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        if grad_scaler is not None:
            grad_scaler.scale(loss).backward()
            grad_scaler.step(opt)
            grad_scaler.update()
        else:
            loss.backward()
            opt.step()
        return loss.detach()

    return step


def time_steps(check: Check, step, steps: int, warmup: int = 3) -> tuple[float, float]:
    """(seconds per step, last loss) after `warmup` untimed steps."""
    for _ in range(warmup):
        step()
    check.sync()
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    check.sync()
    return (time.perf_counter() - start) / steps, float(loss)


# -- sections -----------------------------------------------------------------------------------------
def env(check: Check) -> dict:
    row = {"torch": torch.__version__, "device": str(check.device),
           "auto_precision": choose_precision(check.device, "auto").reason}
    if check.cuda:
        props = torch.cuda.get_device_properties(check.device)
        row.update(name=props.name, capability=list(torch.cuda.get_device_capability(check.device)),
                   memory_gib=props.total_memory / 2**30, cudnn=torch.backends.cudnn.version(),
                   bf16_supported=torch.cuda.is_bf16_supported())
    return row


def attention(check: Check) -> dict:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    m = preset("seed").model
    b = 8 if check.smoke else 256
    positions = 32 * 32
    cross = (m.cross_heads, m.num_latents, m.cross_dim_head)
    shapes = {  # name -> (q shape, kv shape, q shared over the batch)
        "first cross-attention (shared latents, stride-0 query)": ((1, *cross), (b, m.cross_heads, positions, m.cross_dim_head), True),
        "later cross-attention": ((b, *cross), (b, m.cross_heads, positions, m.cross_dim_head), False),
        "latent self-attention": ((b, m.latent_heads, m.num_latents, m.latent_dim_head),
                                  (b, m.latent_heads, m.num_latents, m.latent_dim_head), False),
    }
    backends = {"default": None, "cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
                "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
    result: dict = {}
    gen = torch.Generator().manual_seed(0)
    for name, (q_shape, kv_shape, shared) in shapes.items():
        q64 = torch.randn(q_shape, generator=gen, dtype=torch.float64)
        k64, v64 = (torch.randn(kv_shape, generator=gen, dtype=torch.float64) for _ in range(2))
        grad64 = torch.randn(kv_shape[0], q_shape[1], q_shape[2], kv_shape[3], generator=gen, dtype=torch.float64)
        with sdpa_kernel(SDPBackend.MATH):
            reference = _attend(q64, k64, v64, grad64, shared)
        rows = {}
        for dtype in (torch.bfloat16, torch.float32):
            for backend, kind in backends.items():
                key = f"{backend}/{str(dtype).removeprefix('torch.')}"
                args = [t.to(check.device, dtype) for t in (q64, k64, v64, grad64)]
                try:
                    with sdpa_kernel(kind) if kind is not None else contextlib.nullcontext():
                        got = _attend(*args, shared)
                        check.sync()
                        start = time.perf_counter()
                        for _ in range(3 if check.smoke else 20):
                            _attend(*args, shared)
                        check.sync()
                    errors = [(g.double().cpu() - r).abs().max().item() for g, r in zip(got, reference, strict=True)]
                    rows[key] = {"runs": True, "fwd_bwd_ms": (time.perf_counter() - start) / (3 if check.smoke else 20) * 1e3,
                                 "max_abs_error": dict(zip(("out", "dq", "dk", "dv"), errors, strict=True))}
                except RuntimeError as exc:
                    rows[key] = {"runs": False, "why": str(exc).splitlines()[0][:300]}
        result[name] = {"q": list(q_shape), "kv": list(kv_shape), "backends": rows}
    return result


def _attend(q, k, v, grad, shared: bool) -> tuple[torch.Tensor, ...]:
    """Forward and backward of SDPA as the model calls it; (out, dq, dk, dv)."""
    q, k, v = (t.detach().requires_grad_() for t in (q, k, v))
    qe = q.expand(k.shape[0], -1, -1, -1) if shared else q  # stride 0 over the batch, as the model
    out = F.scaled_dot_product_attention(qe, k, v, scale=q.shape[-1] ** -0.5)
    out.backward(grad)
    return out, q.grad, k.grad, v.grad


def host_syncs(check: Check) -> dict:
    if not check.cuda:
        return {"skipped": "torch.cuda.set_sync_debug_mode needs CUDA"}
    result: dict = {}
    precision = choose_precision(check.device, "auto")
    step = bare_step(check, 256, dtype=precision.dtype, scaler=precision.grad_scaler)
    time_steps(check, step, 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(10):
                step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    result["bare_step"] = {"steps": 10, "syncs_per_step": len(caught) / 10, "where": _where(caught)}

    counted: list[int] = []
    cfg = engine_config(check, "gpu-check-syncs", 512, **{"train.epochs": 1})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            row = run_engine(cfg, check.work / "syncs", on_step=lambda e: counted.append(len(caught)))
        finally:
            torch.cuda.set_sync_debug_mode("default")
    # From the 11th step to the last of epoch 1: start-up and the epoch end are left out.
    steps = len(counted) - 11
    in_steps = counted[-1] - counted[10] if steps > 0 else 0
    result["engine"] = {"steps": steps, "syncs_per_step": in_steps / max(1, steps), "status": row.get("status"),
                        "syncs_whole_run": len(caught), "where": _where(caught)}
    return result


def kernels(check: Check) -> dict:
    """Kernel launches (GPU) and aten calls (nested ones and views included) per bare training step at
    batch 256, from torch.profiler."""
    precision = choose_precision(check.device, "auto")
    step = bare_step(check, 16 if check.smoke else 256, dtype=precision.dtype, scaler=precision.grad_scaler)
    time_steps(check, step, 2)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if check.cuda:
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    steps = 2 if check.smoke else 5
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        check.sync()
    events = prof.events()
    on_gpu = [e for e in events if str(e.device_type).endswith("CUDA")]
    return {"steps": steps, "gpu_kernels_per_step": len(on_gpu) / steps,
            "aten_calls_per_step": sum(e.name.startswith("aten::") for e in events) / steps,
            "to_copy_calls_per_step": sum(e.name == "aten::_to_copy" for e in events) / steps,  # casts, copies
            "commonest_kernels": _commonest(e.name for e in on_gpu)}


def _commonest(names) -> list[str]:
    counts: dict[str, int] = {}
    for name in names:
        counts[name[:80]] = counts.get(name[:80], 0) + 1
    return [f"{name} ×{n}" for name, n in sorted(counts.items(), key=lambda kv: -kv[1])[:8]]


def _where(caught: list[warnings.WarningMessage]) -> list[str]:
    """The five commonest places that waited for the device."""
    counts: dict[str, int] = {}
    for w in caught:
        place = f"{Path(w.filename).name}:{w.lineno}"
        counts[place] = counts.get(place, 0) + 1
    return [f"{place} ×{n}" for place, n in sorted(counts.items(), key=lambda kv: -kv[1])[:5]]


def epochs_engine(check: Check, *, compile_mode: str = "off", data_on_host: bool = False) -> dict:
    """The CIFAR-10 epoch through `train()` at every batch (with `train.compile`: at the compile batches).
    `data_on_host`: the training images "do not fit" on the GPU (a forced out-of-memory error when they
    move), so the engine keeps them in pinned host memory and copies each batch asynchronously."""
    rows = []
    batches = check.batches if compile_mode == "off" else check.compile_batches[1:2]  # one compilation
    via = "engine" + ("" if compile_mode == "off" else f", compile {compile_mode}") + (", data on host" if data_on_host else "")
    real_to_device = training._to_device

    def too_big(tensor, device):
        if tensor.ndim == 4 and len(tensor) > check.test_images:  # the training images, the biggest split
            raise torch.OutOfMemoryError("gpu_check: the training images do not fit (forced)")
        return real_to_device(tensor, device)

    for batch in batches:
        if time.perf_counter() > check.deadline:
            rows.append({"batch": batch, "via": via, "skipped": "out of time"})
            continue
        reset_peak(check)
        cfg = engine_config(check, f"gpu-check-{batch}", batch, **{"train.compile": compile_mode})
        training._to_device = too_big if data_on_host else real_to_device
        try:
            row = run_engine(cfg, check.work / f"epoch-{batch}-{compile_mode}-{data_on_host}")
        finally:
            training._to_device = real_to_device
        epochs = row["epochs"]
        epoch_s = epochs[2]["elapsed_s"] - epochs[1]["elapsed_s"] if 2 in epochs else math.nan
        epoch_end_s = (epochs[2]["wall_s"] - epochs[1]["wall_s"]) - epoch_s if 2 in epochs else math.nan
        steps = row.get("steps_per_epoch", 0)
        rows.append({"batch": batch, "via": via, "status": row.get("status"), "message": row.get("message"),
                     "epoch_s": epoch_s, "epoch_50k_s": epoch_s * 50_000 / max(1, steps * batch),
                     "epoch_end_s": epoch_end_s, "start_s": row.get("start_s"),
                     "val_acc": epochs.get(2, {}).get("val_acc"), "logs": row["logs"][:4], **memory(check)})
        release_memory(check.device)
    return {"rows": rows}


def epochs_bare(check: Check, *, compiled: bool) -> dict:
    """The bare step loop's CIFAR-10 epoch (from up to 50 timed steps), eager or `torch.compile`d."""
    precision = choose_precision(check.device, "auto")
    rows = []
    for batch in check.compile_batches if compiled else check.batches:
        if time.perf_counter() > check.deadline:
            rows.append({"batch": batch, "skipped": "out of time"})
            continue
        reset_peak(check)
        start = time.perf_counter()
        step = bare_step(check, batch, dtype=precision.dtype, scaler=precision.grad_scaler, compiled=compiled)
        step()  # compiles
        check.sync()
        first_step_s = time.perf_counter() - start
        seconds, loss = time_steps(check, step, 3 if check.smoke else max(3, min(50, 50_000 // batch)))
        rows.append({"batch": batch, "first_step_s": first_step_s, "step_ms": seconds * 1e3,
                     "epoch_50k_s": seconds * 50_000 / batch, "loss": loss, **memory(check)})
        del step
        release_memory(check.device)
    return {"rows": rows}


def seed_loop_section(check: Check) -> dict:
    from bench_engine import seed_loop

    images = 200 if check.smoke else 4000
    speed = seed_loop(check.root, images, check.device)
    return {"images": images, "images_per_s": speed, "epoch_50k_s": 50_000 / speed}


def precision(check: Check) -> dict:
    if not check.cuda:
        variants = {"bf16": (torch.bfloat16, False, True), "fp32": (None, False, True)}
    else:
        variants = {"fp16+scaler": (torch.float16, True, True), "bf16": (torch.bfloat16, False, True),
                    "fp32+tf32": (None, False, True), "fp32": (None, False, False)}
    batch, steps = (16, 3) if check.smoke else (1024, 60)
    rows = {}
    for name, (dtype, scaler, tf32) in variants.items():
        apply_device_settings(check.device, tf32=tf32)
        seconds, loss = time_steps(check, bare_step(check, batch, dtype=dtype, scaler=scaler), steps, warmup=0)
        rows[name] = {"step_ms": seconds * 1e3, "loss_after": loss, "steps": steps, "batch": batch}
    apply_device_settings(check.device, tf32=True)
    return rows


def determinism(check: Check) -> dict:
    n = "gpu-check-determinism"
    cfg = engine_config(check, n, 32 if check.smoke else 256, **{"train.epochs": 2})
    a = run_engine(cfg, check.work / "det-a")
    b = run_engine(cfg, check.work / "det-b")
    control = RunControl()
    stop_at = max(2, a.get("steps_per_epoch", 4) + a.get("steps_per_epoch", 4) // 2)  # mid second epoch

    def stop(event: Step) -> None:
        if event.step == stop_at:
            control.stop()

    first = run_engine(cfg, check.work / "det-split", control=control, on_step=stop)
    second = run_engine(None, check.work / "det-split", resume=True)
    resumed = first["losses"] + second["losses"]
    return {
        "same_seed_bit_equal": a["losses"] == b["losses"],
        "same_seed_max_loss_diff": _max_diff(a["losses"], b["losses"]),
        "stop_status": first.get("status"), "resume_status": second.get("status"), "stopped_at_step": stop_at,
        "resume_bit_equal": resumed == a["losses"], "resume_max_loss_diff": _max_diff(resumed, a["losses"]),
        "test_acc": [a.get("test_acc"), b.get("test_acc"), second.get("test_acc")],
    }


def _max_diff(x: list[float], y: list[float]) -> float | str:
    if len(x) != len(y):
        return f"different lengths {len(x)} and {len(y)}"
    return max((abs(p - q) for p, q in zip(x, y, strict=True)), default=0.0)


def oom(check: Check) -> dict:
    if not check.cuda:
        return {"skipped": "a forced out-of-memory error needs a GPU (on the CPU it would exhaust the host)"}
    free, _ = torch.cuda.mem_get_info(check.device)
    try:
        torch.empty(int(free * 1.5), dtype=torch.uint8, device=check.device)
        caught = None
    except Exception as exc:  # noqa: BLE001 - what it is, is the measurement
        caught = exc
    release_memory(check.device)
    if caught is None:
        return {"raised": False}
    return {"raised": True, "type": type(caught).__name__, "message": str(caught)[:600],
            "is_out_of_memory": is_out_of_memory(caught), **memory(check)}


def cross_device_resume(check: Check) -> dict:
    if not check.cuda:
        return {"skipped": "needs a GPU to save on"}
    cfg = engine_config(check, "gpu-check-cross", 256, **{"train.epochs": 2, "train.device": "auto"})
    control, later = RunControl(), RunControl()
    first = run_engine(cfg, check.work / "cross", control=control,
                       on_step=lambda e: control.stop() if e.step == 5 else None)
    # "auto" resolves to the CPU once CUDA is hidden: the same run folder, resumed on another machine,
    # for a few steps (a CIFAR-10 epoch on the CPU takes many minutes).
    real = torch.cuda.is_available
    torch.cuda.is_available = lambda: False
    try:
        second = run_engine(None, check.work / "cross", resume=True, control=later,
                            on_step=lambda e: later.stop() if e.step >= 8 else None)
    except Exception as exc:  # noqa: BLE001 - a crash here is the finding
        second = {"status": "crashed", "message": f"{type(exc).__name__}: {exc}"[:600]}
    finally:
        torch.cuda.is_available = real
    return {"saved_on": first.get("device"), "stop_status": first.get("status"), "resumed_on": second.get("device"),
            "resume_status": second.get("status"), "resume_message": second.get("message"),
            "resume_log": [line for line in second.get("logs", []) if "Resumed" in line],
            "steps_after_resume": len(second.get("losses", []))}


SECTIONS = {  # the cheap ones first, so that a slow compilation cannot cost them
    "env": env, "attention": attention, "host_syncs": host_syncs, "kernels": kernels, "oom": oom,
    "cross_device_resume": cross_device_resume, "precision": precision, "determinism": determinism,
    "seed_loop": seed_loop_section, "epochs_engine": epochs_engine,
    "epochs_engine_host_data": functools.partial(epochs_engine, data_on_host=True),
    "epochs_eager": functools.partial(epochs_bare, compiled=False),
    "epochs_compiled": functools.partial(epochs_bare, compiled=True),
    "epochs_engine_compiled": functools.partial(epochs_engine, compile_mode="default"),
    "epochs_engine_reduce_overhead": functools.partial(epochs_engine, compile_mode="reduce-overhead"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write gpu_check.json here (the device's $OUT)")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU: checks the script, < 60 s")
    parser.add_argument("--batch", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--compile-batch", type=int, nargs="+", default=[256, 1024, 2048],
                        help="batches also timed with torch.compile (each is a compilation)")
    parser.add_argument("--budget-s", type=float, default=400, help="no section starts after this many seconds")
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), help="run only these sections")
    args = parser.parse_args()
    if args.cpu_smoke:
        device = torch.device("cpu")
        torch.set_num_threads(2)
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        print("No CUDA GPU here; use --cpu-smoke to check the script on the CPU.", file=sys.stderr)
        return 2
    started = time.perf_counter()
    result: dict = {"sections": {}}
    out = args.out or HERE / "results"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        check = Check(
            device=device, smoke=args.cpu_smoke, root=Path(tmp) / "data", work=Path(tmp) / "runs",
            train_images=128 if args.cpu_smoke else 50_000, test_images=64 if args.cpu_smoke else 10_000,
            batches=(32,) if args.cpu_smoke else tuple(args.batch),
            compile_batches=() if args.cpu_smoke else tuple(args.compile_batch),
            deadline=started + (60 if args.cpu_smoke else args.budget_s),
        )
        t = time.perf_counter()
        make_tiny_cifar10(check.root, n_train=check.train_images, n_test=check.test_images)
        result["make_data_s"] = time.perf_counter() - t
        for name, section in SECTIONS.items():
            if args.only and name not in args.only:
                continue
            if args.cpu_smoke and name in ("seed_loop", "epochs_compiled", "epochs_engine_compiled",
                                           "epochs_engine_reduce_overhead"):
                result["sections"][name] = {"skipped": "GPU only: the peer loop's DataLoader and torch.compile "
                                                       "take minutes on a small CPU"}
                continue
            if time.perf_counter() > check.deadline:
                result["sections"][name] = {"skipped": f"not started: past --budget-s {args.budget_s}"}
                continue
            t = time.perf_counter()
            try:
                row = section(check)
            except Exception as exc:  # noqa: BLE001 - one broken section must not lose the others
                row = {"error": f"{type(exc).__name__}: {exc}"[:600], "traceback": traceback.format_exc()[-2000:]}
            row["section_s"] = time.perf_counter() - t
            result["sections"][name] = row
            print(f"{name}: {json.dumps(row)[:400]}", flush=True)
            release_memory(device)
            (out / "gpu_check.json").write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    result["total_s"] = time.perf_counter() - started
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"total {result['total_s']:.0f} s; wrote {out / 'gpu_check.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
