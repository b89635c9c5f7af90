"""The one training loop. `train(cfg)` starts a run and `resume(run_dir)` continues one from disk; both are
generators of events that the GUI, the CLI and the tests drive. Stopping and pausing happen between steps;
every file a run writes is atomic, and every way a run ends leaves a status and a sentence in run.json.

    for event in train(preset("digits")):
        print(event)

Reading order: the entry points, the session (lock, final status), the run (setup, then the loop over
epochs and steps), then the step, evaluation and saving as plain functions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import math
import os
import time
import traceback
from collections.abc import Generator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from perceiver_gui import __version__
from perceiver_gui.config import Config, ConfigError
from perceiver_gui.core import checkpoints, data, datasets, distributed, evaluation, runs
from perceiver_gui.core.complexity import memory_refusal
from perceiver_gui.core.control import RunControl
from perceiver_gui.core.device import (
    DeviceError,
    PrecisionChoice,
    apply_device_settings,
    choose_precision,
    configure_threads,
    describe_device,
    is_out_of_memory,
    release_memory,
    resolve_device,
    restore_generator_state,
)
from perceiver_gui.core.distributed import Dist, PeerLost
from perceiver_gui.core.events import (
    CheckpointSaved,
    EpochEnd,
    Event,
    Finished,
    Log,
    RunStarted,
    Step,
)
from perceiver_gui.core.files import remove_stale_temp_files
from perceiver_gui.core.model import build_model, to_channels_last
from perceiver_gui.core.tensorboard_log import ScalarLog

__all__ = ["RunControl", "lr_factor", "resume", "train"]

DIVERGING = 3.0  # an epoch's mean training loss this many times the run's first loss: warn


def lr_factor(step: int, total_steps: int, schedule: str, warmup_steps: int) -> float:
    """The learning-rate multiplier for a 0-based step: a pure function, so resuming needs no state.

    "cosine": linear warmup, then cosine decay to zero. "onecycle": the shape of torch's OneCycleLR
    (cosine from lr/25 up to lr over the first 25% of steps, then cosine down to lr/1e4), without its
    momentum cycling.
    """
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    if schedule == "onecycle":
        up = max(1, int(0.25 * total_steps))
        start, end = 1 / 25, 1 / 25 / 1e4
        if step < up:
            t = step / up
            return 1.0 + (start - 1.0) * 0.5 * (1 + math.cos(math.pi * t))
        t = min(1.0, (step - up) / max(1, total_steps - up - 1))
        return end + (1.0 - end) * 0.5 * (1 + math.cos(math.pi * t))
    raise ConfigError(f"Unknown learning-rate schedule '{schedule}'.")


# -- entry points --------------------------------------------------------------------------------
def train(cfg: Config, *, out_dir: str | Path | None = None, control: RunControl | None = None
          ) -> Generator[Event, None, None]:
    """Start a new run of `cfg` in `out_dir` (default: a new folder in the runs folder), yielding events.
    A problem the user can fix ends the run with Finished(status="failed") and a sentence; a start that
    fails before anything was trained leaves no folder behind."""
    problems = cfg.validate()
    if problems:
        yield _failed(problems[0][1])
        return
    if distributed.launched_rank() != 0:  # another rank of a multi-process run: rank 0 owns the folder
        yield from _session(cfg, Path(out_dir or ""), control or RunControl(), resuming=False, fresh=False)
        return
    if out_dir is None:
        run_dir = runs.new_run_dir(cfg.name)
    else:
        run_dir = Path(out_dir).expanduser()
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            yield _failed(f"Could not create the run folder {run_dir}: {exc.strerror or exc}.")
            return
    if (run_dir / runs.CONFIG_FILE).exists():
        yield _failed(f"{run_dir} already holds a run; choose a new folder, or resume that run.", run_dir)
        return
    fresh = not any(run_dir.iterdir())  # ours to remove again if the start fails
    yield from _session(cfg, run_dir, control or RunControl(), resuming=False, fresh=fresh)


def resume(run_dir: str | Path, *, control: RunControl | None = None) -> Generator[Event, None, None]:
    """Continue the run in `run_dir` from its resume.safetensors, with the config saved there."""
    run_dir = Path(run_dir).expanduser()
    # A run in its first epoch has no resume file yet: if a process trains it, its lock refuses us below.
    if not (run_dir / runs.RESUME_FILE).is_file() and not runs.lock_holder(run_dir):
        yield _failed(f"{run_dir} has nothing to resume from (no {runs.RESUME_FILE}).", run_dir)
        return
    try:
        saved = runs.read_config(run_dir)
    except runs.RunError as exc:
        yield _failed(str(exc), run_dir)
        return
    problems = saved.config.validate() if saved.config is not None else [("", saved.problem)]
    if problems:
        yield _failed(f"{run_dir} can't be resumed: {problems[0][1].rstrip('.')}.", run_dir)
        return
    yield from _session(saved.config, run_dir, control or RunControl(), resuming=True, fresh=False)


def _failed(message: str, run_dir: Path | None = None) -> Finished:
    """The end of a run that never started (nothing of it is written): what it was given can't be used."""
    return Finished(status="failed", message=message, best_val_acc=math.nan, best_epoch=0, epochs_done=0,
                    run_dir=str(run_dir or ""), model_path="", bad_input=True)


# -- the session: the lock, and a final status however the run ends --------------------------------
class _FolderGone(Exception):
    """The run folder was deleted or renamed while the run trained."""


def _session(cfg: Config, run_dir: Path, control: RunControl, *, resuming: bool, fresh: bool
             ) -> Generator[Event, None, None]:
    main = distributed.launched_rank() == 0
    try:
        lock = runs.lock_run(run_dir) if main else contextlib.nullcontext()
    except runs.RunError as exc:
        yield _failed(str(exc), run_dir)
        return
    with lock:
        run = _Run(cfg, run_dir, control, resuming=resuming, main=main)
        try:
            # Only rank 0 tells what happens; the other ranks train silently and end with their Finished.
            yield from run.run() if main else (e for e in run.run() if isinstance(e, Finished))
        except (GeneratorExit, KeyboardInterrupt) as exc:
            # The consumer dropped the generator or the user pressed Ctrl+C twice. The interruption may
            # land mid-step, so nothing is saved now: resuming continues from the last save.
            if not run.done and run.main and run.folder_intact():
                # Best effort: an error here would hide the interruption (and at interpreter exit, the
                # machinery to write may be gone); a run left "running" lists as interrupted anyway.
                with contextlib.suppress(Exception):
                    run.write_status("stopped", "The run was interrupted; " + run.how_to_resume())
            _drop_tensors(exc)
            raise
        except _FolderGone:
            yield run.finish("failed", run.gone_sentence())
        except PeerLost as exc:
            yield run.finish("failed", f"{exc} The run ended; " + run.how_to_resume())
        except OSError as exc:
            yield run.finish("failed", run.gone_sentence() if not run.folder_intact() else _os_sentence(exc, run))
        except Exception as exc:
            if not is_out_of_memory(exc):  # a surprise: leave a status, and let the caller show the details
                run.finish("failed", f"The run failed ({type(exc).__name__}: {exc}); " + run.how_to_resume())
                _drop_tensors(exc)
                raise
            yield run.finish("failed", run.out_of_memory_sentence())
        finally:
            run.dist.close()
            if fresh and not (run_dir / runs.CONFIG_FILE).exists():
                _remove_empty_run_folder(run_dir)
            run.release_memory()


def _drop_tensors(exc: BaseException) -> None:
    """Clear the locals of the frames an escaping exception carries: the caller (the GUI's error dialog, a
    test) keeps the exception, and through its traceback the run's model, data and optimizer on the device."""
    traceback.clear_frames(exc.__traceback__)


def _os_sentence(exc: OSError, run: _Run) -> str:
    what = exc.filename or run.run_dir
    fix = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space",
           errno.EACCES: f"let yourself write to {run.run_dir}", errno.EPERM: f"let yourself write to {run.run_dir}",
           errno.EROFS: f"move {run.run_dir} to a disk that can be written"}.get(exc.errno, "fix that")
    verb = "write" if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS) else "use"  # (reading data fails too)
    return f"Could not {verb} {what}: {exc.strerror or exc}, so the run stopped. To go on, {fix}; " + run.how_to_resume()


def _remove_empty_run_folder(run_dir: Path) -> None:
    """A start that failed before anything was written leaves no folder (only our lock file is there)."""
    try:
        (run_dir / runs.LOCK_FILE).unlink(missing_ok=True)
        run_dir.rmdir()
    except OSError:
        pass  # something else is in it, or it is gone: leave it


# -- the state a run saves to resume ---------------------------------------------------------------
@dataclass(kw_only=True)
class RunState:
    """Everything a run saves to resume besides the weights, optimizer and random states: created whole in
    one place, saved and restored as a unit (resume.safetensors' "progress")."""

    step: int = 0  # global steps done
    epochs_done: int = 0
    best_acc: float = math.nan  # the best validation accuracy, which chose the saved model; nan until one did
    best_epoch: int = 0  # its epoch (old runs without validation: chosen on test, before this version)
    best_loss: float = math.nan  # that epoch's validation loss: of two epochs as accurate, the lower loss wins
    elapsed: float = 0.0  # seconds of training, over all sessions
    model_path: str = ""  # the saved model, "" until one is
    in_epoch: bool = False  # an epoch's permutation is drawn and the epoch is not over
    epoch_loss_sum: float = 0.0  # the interrupted epoch's running train loss sum, correct and images
    epoch_correct: int = 0
    epoch_seen: int = 0
    start_loss: float = math.nan  # the loss of the run's first step (untrained), to tell when it diverges
    world_size: int = 1  # processes that trained it (last session): resuming with another number is not bit-exact

    def to_progress(self) -> dict[str, Any]:
        return {
            "step": self.step, "epochs_done": self.epochs_done,
            "best_acc": None if math.isnan(self.best_acc) else self.best_acc, "best_epoch": self.best_epoch,
            "best_loss": None if not math.isfinite(self.best_loss) else self.best_loss,
            "elapsed": self.elapsed, "model_path": self.model_path, "in_epoch": self.in_epoch,
            "epoch_sums": [self.epoch_loss_sum, self.epoch_correct, self.epoch_seen],
            "start_loss": None if math.isnan(self.start_loss) else self.start_loss,
            "world_size": self.world_size,
        }

    @classmethod
    def from_progress(cls, p: dict[str, Any], where: Path) -> RunState:
        """Raises CheckpointError naming the field that is missing or of the wrong type."""
        def get(key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
            value = p.get(key, default)
            if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
                raise checkpoints.CheckpointError(f"{where} is damaged: its progress field '{key}' is "
                                                  f"{value!r}; start a new run.")
            return value

        in_epoch = get("in_epoch", bool, False)
        sums = p.get("epoch_sums") if in_epoch and p.get("epoch_sums") else [0.0, 0, 0]
        if not (isinstance(sums, list | tuple) and len(sums) == 3):
            raise checkpoints.CheckpointError(f"{where} is damaged: its progress field 'epoch_sums' is {sums!r}.")
        best, start = get("best_acc", (int, float, type(None))), get("start_loss", (int, float, type(None)))
        best_loss = get("best_loss", (int, float, type(None)))  # absent in older resume files
        return cls(
            step=get("step", int), epochs_done=get("epochs_done", int),
            best_acc=math.nan if best is None else float(best), best_epoch=get("best_epoch", int, 0),
            best_loss=math.nan if best_loss is None else float(best_loss),
            elapsed=float(get("elapsed", (int, float), 0.0)), model_path=get("model_path", str, ""),
            in_epoch=in_epoch, epoch_loss_sum=float(sums[0]), epoch_correct=int(sums[1]),
            epoch_seen=int(sums[2]), start_loss=math.nan if start is None else float(start),
            world_size=get("world_size", int, 1),
        )


@dataclass(frozen=True, kw_only=True)
class _Setup:
    """What a run trains with, built whole once the data is loaded; never changes during the run."""

    cfg: Config  # with the input shape and classes the data decided
    info: data.DatasetInfo
    device: torch.device
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor  # chooses the best epoch; empty when the config asks for no validation split
    val_y: torch.Tensor
    test_x: torch.Tensor  # evaluated once, at the end, for the model chosen
    test_y: torch.Tensor
    data_on_host: bool  # the splits did not fit on the device: they stay in (pinned) host memory
    gen: torch.Generator  # the run's generator: permutations, augmentation, mixup pairs (the same on every rank)
    dist: Dist  # this process's rank among the run's processes (one process: Dist.single())
    model: torch.nn.Module  # compiled in place with train.compile, so its state_dict keeps plain names
    optimizer: torch.optim.Optimizer
    precision: PrecisionChoice
    scaler: torch.amp.GradScaler | None
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int


def _fit_to_data(cfg: Config, info: data.DatasetInfo) -> Config:
    """What the data decides is not the user's to set: channels, axes and classes come from it."""
    return dataclasses.replace(cfg, model=datasets.fit_model(cfg.model, info.input_shape))


def _build(cfg: Config, dataset: data.Dataset, device: torch.device, dist: Dist, *, data_fits: bool = True
           ) -> _Setup:
    info = dataset.info
    cfg = _fit_to_data(cfg, info)
    torch.manual_seed(cfg.train.seed)  # the model's initial weights
    (train_x, train_y, val_x, val_y, test_x, test_y), on_host = _place_data(dataset, device, data_fits)
    gen = torch.Generator(device=device)
    gen.manual_seed(cfg.train.seed)
    try:
        model = build_model(cfg.model).to(device)
    except Exception as exc:
        if is_out_of_memory(exc):
            raise _ModelTooBig(str(exc)) from None
        raise
    if dist.active:  # every rank starts from the same weights; dropout and mixup's blend then differ per rank
        torch.manual_seed(cfg.train.seed + dist.rank)
    if cfg.train.compile != "off":
        model.compile(mode=cfg.train.compile)  # in place: checkpoints keep the plain parameter names
    precision = choose_precision(device, cfg.train.precision)
    n, bs = info.train_size, cfg.train.batch_size
    steps_per_epoch = max(1, n // bs) if n >= bs else 1
    return _Setup(
        cfg=cfg, info=info, device=device, train_x=train_x, train_y=train_y, val_x=val_x, val_y=val_y,
        test_x=test_x, test_y=test_y, data_on_host=on_host, gen=gen, dist=dist, model=model,
        optimizer=_make_optimizer(cfg, model, device), precision=precision,
        scaler=torch.amp.GradScaler(device.type) if precision.grad_scaler else None,
        steps_per_epoch=steps_per_epoch, total_steps=steps_per_epoch * cfg.train.epochs,
        warmup_steps=max(1, round(cfg.train.warmup_epochs * steps_per_epoch)),
    )


class _ModelTooBig(Exception):
    """The device ran out of memory taking the model's weights."""


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    return tensor.to(device)


def _place_data(dataset: data.Dataset, device: torch.device, fits: bool) -> tuple[tuple[torch.Tensor, ...], bool]:
    """The splits on the device, and False; where they do not fit (by the memory estimate, or the
    device runs out of memory taking them), in host memory, and True. On CUDA that memory is pinned, so
    batches copy to the GPU without blocking the host."""
    splits = (dataset.train_x, dataset.train_y, dataset.val_x, dataset.val_y, dataset.test_x, dataset.test_y)
    if fits:
        try:
            return tuple(_to_device(t, device) for t in splits), False
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
        release_memory(device)  # what had been copied before the failure
    return tuple(_pinned(t, device) for t in splits), True


def _pinned(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type != "cuda":
        return tensor
    try:
        return tensor.pin_memory()
    except RuntimeError:  # the host cannot lock that much memory: pageable copies still work, only slower
        return tensor


def _batch(s: _Setup, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The images and labels at `idx` on the device. Data kept on the host is gathered into pinned memory
    (on CUDA) and copied asynchronously, so the copy overlaps the GPU's work on the previous step."""
    if not s.data_on_host:
        return x[idx], y[idx]
    pin = s.device.type == "cuda"
    out = []
    for t in (x, y):
        batch = torch.empty((len(idx), *t.shape[1:]), dtype=t.dtype, pin_memory=pin)
        out.append(torch.index_select(t, 0, idx, out=batch).to(s.device, non_blocking=pin))
    return out[0], out[1]


# -- the run -------------------------------------------------------------------------------------
class _Run:
    """One session of a run: from the device and the data, through the epochs, to its final status."""

    def __init__(self, cfg: Config, run_dir: Path, control: RunControl, *, resuming: bool, main: bool = True) -> None:
        self.cfg = cfg
        self.main = main  # rank 0 (or the only process): the one that writes the run folder
        self.dist = Dist.single()  # joined once the device is known
        self.run_dir = run_dir
        self.control = control
        self.resuming = resuming
        self.state = RunState()  # replaced by the saved one when resuming
        self.device: torch.device | None = None  # once resolved: whose memory to release at the end
        self.device_kind = "device"  # "CPU", "CUDA", ... once known, for the out-of-memory sentence
        self.training = False  # the steps have begun: running out of memory is the batch's fault
        self.saved_at = time.monotonic()  # the last save of the resume file (or the session's start)
        self.saved_step = -1  # the step of that save
        self.done = False  # Finished has been produced
        self.test: _Evaluated | None = None  # the saved model on the test split, once the run ends
        self._identity = _identity(run_dir)  # to notice the folder deleted or renamed under us

    def run(self) -> Generator[Event, None, None]:
        cfg = self.cfg
        try:
            device = distributed.device_for_rank(resolve_device(cfg.train.device))
        except DeviceError as exc:
            yield self.finish("failed", str(exc), bad_input=True)
            return
        self.device, self.device_kind = device, device.type.upper()
        if device.type == "cpu":
            configure_threads(distributed.threads_per_process(cfg.train.threads))
        tf32 = apply_device_settings(device, tf32=cfg.train.tf32)
        self.dist = Dist.from_environment(device)
        problem = self.dist.check_batch(cfg.train.batch_size)
        if problem:
            yield self.finish("failed", problem)
            return
        if cfg.train.precision == "float16" and device.type != "cuda":
            yield self.finish("failed", "float16 training needs a CUDA GPU; use bfloat16 or float32 on this device.",
                              bad_input=True)
            return

        data_cfg = cfg.data
        if not self.dist.main:  # rank 0 downloads what is missing, once; the others then read it (or say it's missing)
            self.dist.wait_for_main()
            data_cfg = dataclasses.replace(data_cfg, download=False)
        loader = data.open_dataset(data_cfg)
        try:
            while True:  # forward download progress, and let Stop end a long download
                event = next(loader)
                yield event
                if self.control.stopped:
                    loader.close()
                    yield self.finish("stopped", "Stopped while loading the data; nothing was trained.")
                    return
        except StopIteration as loaded:
            dataset = loaded.value
        except data.DatasetError as exc:
            yield self.finish("failed", str(exc), bad_input=True)
            return
        if self.dist.main:
            self.dist.wait_for_main()  # (lets the other ranks load)
        if dataset.skipped:
            yield Log(message=f"Skipped {len(dataset.skipped)} unreadable file(s): " + "; ".join(dataset.skipped[:5]),
                      level="warning")
        info = dataset.info
        if info.test_size == 0 or info.train_size == 0:
            yield self.finish("failed", f"{info.name} has no {datasets.KINDS[info.kind].plural} in its training or test split.",
                              bad_input=True)
            return
        # Before the data moves to the device and the model is built. A GPU that holds the model and its
        # batches but not the data too trains with the data in host memory.
        with_data = memory_refusal(_fit_to_data(cfg, info), info.image_size, device,
                                   dataset_samples=info.train_size + info.val_size + info.test_size,
                                   value_bytes=dataset.train_x.element_size())  # uint8 images, float32 series
        refusal = with_data if device.type == "cpu" else memory_refusal(_fit_to_data(cfg, info), info.image_size, device)
        if refusal:
            yield self.finish("failed", refusal, bad_input=True)
            return

        try:
            s = _build(cfg, dataset, device, self.dist, data_fits=with_data is None)
        except _ModelTooBig:
            yield self.finish("failed", f"The model does not fit in the {self.device_kind}'s memory; make it "
                                        f"smaller (fewer latents, a smaller latent_dim or depth) or train on the CPU.")
            return
        del dataset  # what is on the device (or pinned) is all the run needs
        self.cfg = s.cfg
        epoch_gen_state = None  # the generator's state at the start of an interrupted epoch
        exact = True
        if self.resuming:
            try:
                self.state, epoch_gen_state, dropped, exact = _restore(s, self.run_dir)
            except checkpoints.CheckpointError as exc:
                yield self.finish("failed", str(exc), bad_input=True)
                return
            if dropped:
                yield Log(message=f"Skipped damaged records of {runs.METRICS_FILE}: " + "; ".join(dropped[:3]) + ".",
                          level="warning")
        elif self.main:
            self.check_folder()
            runs.write_config(self.run_dir, s.cfg)
            runs.rewrite_metrics(self.run_dir, ())
            runs.write_run(self.run_dir, name=cfg.name, created=time.time(), app_version=__version__)
        if self.main:
            runs.write_run(self.run_dir, status="running", message="", epochs_done=self.state.epochs_done)
        resumed_from = self.state.world_size
        self.state.world_size = self.dist.world_size

        params = sum(p.numel() for p in s.model.parameters() if p.requires_grad)
        yield RunStarted(
            run_dir=str(self.run_dir), device=str(device), device_name=describe_device(device), parameters=params,
            train_size=info.train_size, test_size=info.test_size, class_names=tuple(info.class_names),
            steps_per_epoch=s.steps_per_epoch, total_steps=s.total_steps, start_step=self.state.step,
            start_epoch=self.state.epochs_done, val_size=info.val_size, kind=info.kind,
        )
        yield Log(message=f"Precision: {s.precision.reason}" + (f"; {tf32}." if tf32 else "."))
        if s.data_on_host:
            yield Log(message=f"The dataset does not fit in the {self.device_kind}'s memory, so it stays in "
                              f"{'pinned ' if device.type == 'cuda' else ''}host memory and each batch is "
                              f"copied over while the previous step runs (slower than data on the device).")
        if cfg.train.compile != "off":
            yield Log(message=f"Compiling the model (torch.compile, mode {cfg.train.compile}): the first steps "
                              f"and the first evaluation take longer.")
        if self.dist.active:
            yield Log(message=_distributed_sentence(s, device))
        if self.resuming:
            yield Log(message=f"Resumed at step {self.state.step} (epoch {self.state.epochs_done + 1})." + (
                "" if exact else f" The run was saved on another kind of device than this {self.device_kind}, so "
                                 f"its random draws (batch order, augmentation, dropout) continue from a seed taken "
                                 f"from the saved state: the run continues statistically equivalent, not bit-exact."))
            if resumed_from != self.dist.world_size:
                yield Log(level="warning", message=(
                    f"This run was trained with {resumed_from} process(es) and goes on with {self.dist.world_size}: "
                    f"it learns the same way, but is no longer bit-exact with an uninterrupted run."))
        self.training = True

        if not self.main:
            yield from self._epochs(s, _Log(None, None), epoch_gen_state)
            return
        with (runs.MetricsWriter(self.run_dir) as metrics,
              ScalarLog(self.run_dir, class_names=info.class_names,
                        resume_step=self.state.step if self.resuming else None) as scalars):
            yield from self._epochs(s, _Log(metrics, scalars), epoch_gen_state)

    def _epochs(self, s: _Setup, log: _Log, epoch_gen_state: torch.Tensor | None) -> Generator[Event, None, None]:
        t, state, control = s.cfg.train, self.state, self.control
        bs = t.batch_size
        autocast = _autocast(s)
        pace = _Pace(read_every=_read_every(s.device))
        eval_bs = max(256, bs)  # halved if the device runs out of memory evaluating
        val_digest = evaluation.test_digest(s.val_x.cpu().numpy(), s.val_y.cpu().numpy())
        if self.resuming and (changed := self._validation_changed(val_digest)):
            yield changed
        epoch_gen = s.gen.get_state()  # saved: the generator's state at the start of the current epoch
        for epoch in range(state.epochs_done + 1, t.epochs + 1):
            if self._out_of_patience():  # a resumed run that had stopped early
                break
            # The permutation is drawn from the generator's state at the epoch start, which is saved,
            # so a resumed run sees exactly the batches it would have seen.
            if epoch_gen_state is not None:
                current = s.gen.get_state()
                s.gen.set_state(epoch_gen_state)
            epoch_gen = s.gen.get_state()
            perm = torch.randperm(s.info.train_size, generator=s.gen, device=s.device)
            if s.data_on_host:
                perm = perm.cpu()  # indexes the host's copy: one wait per epoch
            if epoch_gen_state is not None:
                s.gen.set_state(current)
                epoch_gen_state = None
            state.in_epoch = True
            first = state.step - (epoch - 1) * s.steps_per_epoch
            s.model.train()
            # Resumed inside an epoch: its sums so far are the whole run's, so one rank carries them.
            loss_sum0, correct0, seen = (state.epoch_loss_sum, state.epoch_correct, state.epoch_seen) \
                if first and s.dist.main else (0.0, 0, 0)
            loss_sum = torch.full((), loss_sum0, device=s.device)
            correct = torch.full((), correct0, device=s.device, dtype=torch.long)
            for i in range(first, s.steps_per_epoch):
                stop, pause = s.dist.requests(control)  # every rank acts on the same step
                if pause:
                    if (yield from self._report(s, pace, log, epoch)):
                        return
                    stop = s.dist.wait_while_paused(control)
                    pace.clock = time.perf_counter()  # a pause is not training time
                if stop:
                    if (yield from self._report(s, pace, log, epoch)):  # what is pending is real: on the curve
                        return
                    state.epoch_loss_sum, state.epoch_correct, state.epoch_seen = \
                        _epoch_sums(s, loss_sum, correct, seen)
                    yield from self._stop(s, log, epoch_gen, eval_bs)
                    return
                lr = t.lr * lr_factor(state.step, s.total_steps, t.schedule, s.warmup_steps)
                loss, logits, target = forward(s, perm[i * bs:(i + 1) * bs], lr, autocast)
                state.step += 1
                # The whole batch's loss (averaged over the ranks, so they all see the same NaN) and images.
                pace.pending.append((state.step, lr, len(target) * s.dist.world_size, s.dist.mean(loss.detach())))
                # Reading the loss waits for the device. On the CPU that is free and happens every step,
                # before backward, so a NaN never reaches the weights; a GPU is read every few steps.
                if len(pace.pending) >= pace.read_every:
                    if (yield from self._report(s, pace, log, epoch)):
                        return
                apply_gradients(s, loss)
                with torch.no_grad():
                    loss_sum += loss.detach() * len(target)
                    correct += (logits.argmax(1) == target).sum()
                seen += len(target)
            if (yield from self._report(s, pace, log, epoch)):
                return
            if s.dist.active:
                total_loss, total_correct, total_seen = _epoch_sums(s, loss_sum, correct, seen)
                train_loss, train_acc = total_loss / max(1, total_seen), total_correct / max(1, total_seen)
            else:
                train_loss = (loss_sum / max(1, seen)).item()
                train_acc = correct.item() / max(1, seen)
            if train_loss > DIVERGING * state.start_loss and not pace.warned:
                pace.warned = True
                yield Log(level="warning", message=(
                    f"The training loss rose to {train_loss:.3g} in epoch {epoch}, more than {DIVERGING:g}× its "
                    f"start ({state.start_loss:.3g}): the run is diverging. Try a lower learning rate "
                    f"(e.g. {t.lr / 10:g}) or gradient clipping."))
            result = None
            if len(s.val_y):
                result = evaluate(s, s.val_x, s.val_y, eval_bs)
                eval_bs = result.batch_size
            yield from self._end_epoch(s, log, epoch, train_loss, train_acc, result, val_digest, epoch_gen)
            pace.clock = time.perf_counter()  # evaluation and saving are not training time
            if self._out_of_patience():
                break
        if self.saved_step != state.step:
            self._save_resume(s, epoch_gen)
        yield from self._final(s, log, eval_bs)

    def _report(self, s: _Setup, pace: _Pace, log: _Log, epoch: int) -> Generator[Event, None, bool]:
        """Read the pending losses back in one go and yield their steps; True when the loss diverged."""
        if not pace.pending:
            return False
        losses = torch.stack([loss for *_, loss in pace.pending]).tolist()  # one wait for the device
        now = time.perf_counter()
        images = sum(n for _, _, n, _ in pace.pending)
        self.state.elapsed += now - pace.clock
        pace.recent.append((now - pace.clock, images))
        pace.clock = now
        del pace.recent[:-20]
        speed = sum(n for _, n in pace.recent) / max(1e-9, sum(sec for sec, _ in pace.recent))
        t = s.cfg.train
        pending, pace.pending = pace.pending, []
        for (step, lr, _, _), loss in zip(pending, losses, strict=True):
            eta = (s.total_steps - step) * t.batch_size / speed
            event = Step(epoch=epoch, step=step, total_steps=s.total_steps, loss=loss, lr=lr, images_per_s=speed,
                         eta_s=eta)
            if not math.isfinite(loss):
                yield event
                yield self._diverged(epoch, step, loss)
                return True
            if step == 1:
                self.state.start_loss = loss
            if step % t.log_every == 0 or step == 1:
                self.check_folder()
                log.write(runs.StepRecord(epoch=epoch, step=step, loss=loss, lr=lr, images_per_s=speed,
                                          time=self.state.elapsed))
            yield event
        return False

    # -- epoch end and saving ------------------------------------------------------------------
    def _end_epoch(self, s: _Setup, log: _Log, epoch: int, train_loss: float, train_acc: float,
                   result: _Evaluated | None, val_digest: str, epoch_gen: torch.Tensor) -> Generator[Event, None, None]:
        """`result` is the epoch's validation (None without a validation split): it alone decides the best
        epoch and the model saved; the test split takes no part."""
        state = self.state
        self.check_folder()
        if result is not None and self.main:
            # Written before the epoch is announced, so a view that hears of it finds the images behind its matrix.
            evaluation.save_evaluation(self.run_dir, evaluation.Evaluation(
                epoch=epoch, step=state.step, class_names=tuple(s.info.class_names), test_digest=val_digest,
                split="validation", **result.predictions,
            ))
        state.epochs_done = epoch
        state.in_epoch = False
        is_best = result is not None and _better(result, state)
        if is_best:
            state.best_acc, state.best_epoch, state.best_loss = result.acc, epoch, result.loss
        record = EpochEnd(
            epoch=epoch, step=state.step, train_loss=train_loss, train_acc=train_acc,
            val_loss=result.loss if result else math.nan, val_acc=result.acc if result else math.nan,
            per_class_acc=result.per_class if result else (), confusion=result.confusion if result else (),
            elapsed_s=state.elapsed, is_best=is_best,
        )
        log.write(runs.EpochRecord(**{f.name: getattr(record, f.name) for f in dataclasses.fields(record)}))
        yield record
        if is_best:
            yield self._save_model(s, "best", epoch)
        # The resume file (weights, optimizer and random states: tens of MiB, fsynced) waits for
        # train.save_every_s; stop, the end and Ctrl+C always save, so only a crash loses that much.
        if epoch < s.cfg.train.epochs and self._save_due(s):
            self._save_resume(s, epoch_gen)
        if self.main:
            # A new best model has not been tested: a test result from before (a stop, then a resume) was another's.
            untested = {"test_acc": math.nan, "test_loss": math.nan} if is_best else {}
            runs.write_run(self.run_dir, epochs_done=epoch, best_acc=state.best_acc, best_epoch=state.best_epoch,
                           selected_on=self._selected_on(), train_seconds=round(state.elapsed, 3), **untested)

    def _validation_changed(self, val_digest: str) -> Log | None:
        """A warning when a resumed run's validation images are not the ones it validated on before (its image
        folder was edited): the split follows from the config and the data, so only the data can move it."""
        try:
            saved = evaluation.read_evaluation(self.run_dir)
        except evaluation.EvaluationError:
            return None  # nothing validated yet, or an older run's file: nothing to compare
        if saved.split != "validation" or saved.test_digest == val_digest:
            return None
        nouns = datasets.kind_of(self.cfg.data.dataset).plural
        return Log(level="warning", message=(
            f"The validation {nouns} of {self.cfg.data.dataset} are not the ones this run validated on before "
            f"(were {nouns} added, removed or changed?), so epochs before and after this resume are not compared "
            f"on the same {nouns}."))

    def _selected_on(self) -> str:
        return _selected_on(self.cfg)

    def _out_of_patience(self) -> bool:
        """Early stopping: the validation accuracy has not improved for `early_stop_patience` epochs."""
        patience, state = self.cfg.train.early_stop_patience, self.state
        return patience > 0 and state.best_epoch > 0 and state.epochs_done - state.best_epoch >= patience \
            and state.epochs_done < self.cfg.train.epochs

    def _test_selected(self, s: _Setup, log: _Log, eval_bs: int) -> Generator[Event, None, None]:
        """Evaluate the saved model on the test split, once, and record the result beside it: in metrics.jsonl,
        run.json and the model file's summary. Nothing chooses by it. The model's weights are replaced by the
        saved ones, so this runs only when the run ends (after its resume state is saved)."""
        path = self.run_dir / runs.MODEL_FILE
        state_dict = checkpoints.load_model(path)[0] if self.main else None
        s.dist.share_weights(s.model, state_dict)  # rank 0 has the file; the others may be on other machines
        result = evaluate(s, s.test_x, s.test_y, eval_bs)
        self.test = result
        epoch = self.selected_epoch()
        self.check_folder()
        log.write(runs.TestRecord(epoch=epoch, step=self.state.step, test_loss=result.loss, test_acc=result.acc,
                                  per_class_acc=result.per_class, confusion=result.confusion,
                                  selected_on=self._selected_on()))
        if self.main:
            checkpoints.save_model(path, state_dict, _meta(s, self.state, self.run_dir, test=result))
            runs.write_run(self.run_dir, test_acc=result.acc, test_loss=result.loss, selected_on=self._selected_on(),
                           best_epoch=epoch)
        yield Log(message=f"Test accuracy of the model chosen ({self._selected_on()}, epoch {epoch}): "
                          f"{result.acc:.1%} on {s.info.test_size:,} test {datasets.KINDS[s.info.kind].plural}.")

    def selected_epoch(self) -> int:
        """The epoch whose model is saved: the best on validation, or the last one without validation."""
        return self.state.best_epoch if self.cfg.data.val_fraction > 0 else self.state.epochs_done

    def _save_model(self, s: _Setup, reason: str, epoch: int) -> CheckpointSaved:
        self.check_folder()
        path = self.run_dir / runs.MODEL_FILE
        if self.main:
            checkpoints.save_model(path, _cpu_state(s.model), _meta(s, self.state, self.run_dir))
        self.state.model_path = str(path)
        return CheckpointSaved(path=str(path), epoch=epoch, step=self.state.step, reason=reason)

    def _save_due(self, s: _Setup) -> bool:
        """train.save_every_s has passed since the last save of the resume file. Every rank saves together
        (the save gathers their random states), so with several processes any rank's clock decides for all."""
        due = time.monotonic() - self.saved_at >= s.cfg.train.save_every_s
        if s.dist.active:
            due = bool(s.dist.sum(torch.tensor([int(due)], device=s.device)).item())  # one wait per epoch
        return due

    def _save_resume(self, s: _Setup, epoch_gen: torch.Tensor) -> None:
        self.check_folder()
        save_resume_state(s, self.state, epoch_gen, self.run_dir / runs.RESUME_FILE)  # every rank: gathers RNG
        self.saved_at, self.saved_step = time.monotonic(), self.state.step

    def _stop(self, s: _Setup, log: _Log, epoch_gen: torch.Tensor, eval_bs: int) -> Generator[Event, None, None]:
        self._save_resume(s, epoch_gen)
        if not self.state.model_path:  # nothing better saved yet: keep what there is, so Stop always leaves a model
            yield self._save_model(s, "stopped", self.state.epochs_done)
        elif self.state.best_epoch > 0 and self.cfg.data.val_fraction > 0:  # a model validation chose: test it
            yield from self._test_selected(s, log, eval_bs)
        yield self.finish("stopped", f"Stopped at step {self.state.step}{self._test_clause()}; " + self.how_to_resume())

    def _diverged(self, epoch: int, step: int, loss: float) -> Finished:
        kind = "NaN" if math.isnan(loss) else "infinite"
        kept = f" The last good model is kept at {self.state.model_path}." if self.state.model_path else ""
        return self.finish(
            "failed",
            f"The loss became {kind} at step {step} (epoch {epoch}), so the run stopped.{kept} "
            f"Try a lower learning rate (e.g. {self.cfg.train.lr / 10:g}) or gradient clipping.",
        )

    def _final(self, s: _Setup, log: _Log, eval_bs: int) -> Generator[Event, None, None]:
        state, t = self.state, self.cfg.train
        if not state.model_path or self.cfg.data.val_fraction == 0:  # without validation, the last epoch is kept
            yield self._save_model(s, "final", state.epochs_done)
        yield from self._test_selected(s, log, eval_bs)
        epochs = f"{state.epochs_done} epoch{'s' if state.epochs_done != 1 else ''}"
        if self.cfg.data.val_fraction == 0:
            chosen = f"no validation split, so the last epoch's model is kept{self._test_clause()}"
        else:
            chosen = (f"best validation accuracy {state.best_acc:.1%} (epoch {state.best_epoch})"
                      f"{self._test_clause()}")
        if state.epochs_done < t.epochs:
            yield self.finish("completed", f"Stopped early after {epochs}: validation accuracy had not improved for "
                                           f"{t.early_stop_patience} epochs; {chosen}.")
        else:
            yield self.finish("completed", f"Finished {epochs}; {chosen}.")

    def _test_clause(self) -> str:
        return f", test accuracy {self.test.acc:.1%}" if self.test is not None else ""

    # -- status --------------------------------------------------------------------------------
    def check_folder(self) -> None:
        """Raise _FolderGone when the run folder was deleted or renamed: saving would re-create half a run."""
        if self.main and not self.folder_intact():  # (the other ranks never write it)
            raise _FolderGone(str(self.run_dir))

    def folder_intact(self) -> bool:
        return _identity(self.run_dir) == self._identity

    def gone_sentence(self) -> str:
        return (f"The run folder {self.run_dir} was deleted or renamed while the run trained, so training stopped "
                f"rather than re-create it; if you moved the folder, continue the run from its new place with "
                f"`perceiver-gui train --resume NEW_FOLDER`.")

    def out_of_memory_sentence(self) -> str:
        if not self.training:
            return (f"The {self.device_kind} ran out of memory before training began; make the model smaller or "
                    f"train on the CPU.")
        bs = self.cfg.train.batch_size
        return (f"The {self.device_kind} ran out of memory at batch size {bs}; start a new run with batch size "
                f"{max(1, bs // 2)} (a resumed run keeps its batch size).")

    def release_memory(self) -> None:
        """Hand the device's cached memory back once the run's tensors are gone, however the run ended."""
        if self.device is not None:
            release_memory(self.device)

    def how_to_resume(self) -> str:
        if (self.run_dir / runs.RESUME_FILE).is_file():
            return (f"the run can be resumed from its last save with `perceiver-gui train --resume {self.run_dir}` "
                    f"(or Resume on the Runs tab).")
        return "nothing was saved to resume from, so start the run again."

    def write_status(self, status: str, message: str) -> None:
        s = self.state
        runs.write_run(self.run_dir, status=status, message=message, epochs_done=s.epochs_done,
                       best_acc=s.best_acc, best_epoch=self.selected_epoch() if self.test else s.best_epoch,
                       train_seconds=round(s.elapsed, 3))

    def finish(self, status: str, message: str, *, bad_input: bool = False) -> Finished:
        """The run's last event, its status and sentence written to run.json where the run has one."""
        self.done = True
        if self.main and self.folder_intact() and (self.run_dir / runs.CONFIG_FILE).exists():
            try:
                self.write_status(status, message)
            except OSError:
                pass  # e.g. the disk is still full: the lock is free once we exit, so it lists as interrupted
        s, test = self.state, self.test
        return Finished(status=status, message=message, best_val_acc=s.best_acc,
                        best_epoch=self.selected_epoch() if test else s.best_epoch, epochs_done=s.epochs_done,
                        run_dir=str(self.run_dir), model_path=s.model_path,
                        test_acc=test.acc if test else math.nan, test_loss=test.loss if test else math.nan,
                        bad_input=bad_input)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class _Pace:
    """Throughput and the losses not yet read back from the device, for one session."""

    def __init__(self, *, read_every: int) -> None:
        self.read_every = read_every
        self.clock = time.perf_counter()
        self.recent: list[tuple[float, int]] = []  # (seconds, images) of recent reports, for images/s
        self.pending: list[tuple[int, float, int, torch.Tensor]] = []  # (step, lr, images, loss) not yet read
        self.warned = False  # the divergence warning is given once


class _Log:
    """Writes a record to metrics.jsonl, and to TensorBoard's files when tensorboard is installed."""

    def __init__(self, metrics: runs.MetricsWriter | None, scalars: ScalarLog | None) -> None:
        self.metrics = metrics
        self.scalars = scalars

    def write(self, record: runs.StepRecord | runs.EpochRecord) -> None:
        if self.metrics is not None:  # None on the ranks other than 0
            self.scalars.write(self.metrics.append(record))


# -- the step, evaluation and saving, as plain functions -----------------------------------------
def forward(s: _Setup, idx: torch.Tensor, lr: float, autocast) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Set the learning rate and run the batch `idx` of the training split forward: (loss, logits, target),
    where target is what training accuracy counts (with mixup, the label that dominates the blend).

    `idx` is the whole (global) batch: its augmentation and mixup pairs are drawn for all of it, the same
    draws on every rank and in one process, and this rank trains on its slice."""
    cfg, t = s.cfg, s.cfg.train
    x, y = _batch(s, s.train_x, s.train_y, idx)
    if cfg.data.crop_padding or cfg.data.hflip:
        x = data.augment(x, crop_padding=cfg.data.crop_padding, hflip=cfg.data.hflip, generator=s.gen)
    x = data.augment_points(x, cfg.data, generator=s.gen)  # point clouds: rotation and jitter; x itself when off
    x = data.augment_audio(x, cfg.data, s.gen) if s.info.kind == "audio" else x
    mine = s.dist.my_slice(len(idx))
    if t.mixup > 0:
        lam, pairs = _mixup_pairs(len(y), t.mixup, s.gen, y.device)
        partner, y_mix = x[pairs][mine], y[pairs][mine]
    mask = data.padding_mask(x[mine]) if s.info.padded else None  # series shorter than the longest
    x, y = to_channels_last(data.normalize(x[mine], s.info.mean, s.info.std)), y[mine]
    for group in s.optimizer.param_groups:
        group["lr"] = lr
    target = y
    if t.mixup > 0:
        x = lam * x + (1.0 - lam) * to_channels_last(data.normalize(partner, s.info.mean, s.info.std))
        target = y if lam >= 0.5 else y_mix
    with autocast:
        logits = s.model(x, mask=mask)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=t.label_smoothing)
        if t.mixup > 0:
            mixed = F.cross_entropy(logits.float(), y_mix, label_smoothing=t.label_smoothing)
            loss = lam * loss + (1.0 - lam) * mixed
    return loss, logits, target


def apply_gradients(s: _Setup, loss: torch.Tensor) -> None:
    """Backward, clip and one optimizer step."""
    s.optimizer.zero_grad(set_to_none=True)
    if s.scaler is not None:
        s.scaler.scale(loss).backward()
        s.scaler.unscale_(s.optimizer)
    else:
        loss.backward()
    s.dist.average_gradients(s.model)  # the whole batch's gradient on every rank (the scale is linear)
    if s.cfg.train.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(s.model.parameters(), s.cfg.train.grad_clip)
    if s.scaler is not None:
        s.scaler.step(s.optimizer)
        s.scaler.update()
    else:
        s.optimizer.step()


@dataclass(frozen=True, kw_only=True)
class _Evaluated:
    loss: float
    acc: float
    per_class: tuple[float, ...]
    confusion: tuple[tuple[int, ...], ...]
    predictions: dict[str, Any]  # numpy arrays for evaluation.Evaluation
    batch_size: int  # the evaluation batch size that fit


@torch.inference_mode()
def evaluate(s: _Setup, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> _Evaluated:
    """Loss, accuracy, per-class accuracy and confusion on the images x with labels y (the validation split
    each epoch, the test split once at the end), and each image's prediction
    (the same argmax the confusion counts, and its probability). Evaluation keeps no activations, so it takes
    bigger batches than training; if the device cannot hold one, it halves them down to the training batch
    size (which fits) and reports the size that fit, for the next epoch."""
    k = len(s.info.class_names)
    while True:
        try:
            loss_sum, confusion, preds, prob_pred, prob_true = _eval_pass(s, x, y, batch_size, k)
            break
        except Exception as exc:
            if not is_out_of_memory(exc) or batch_size <= s.cfg.train.batch_size:
                raise
        batch_size = max(s.cfg.train.batch_size, batch_size // 2)
        release_memory(s.device)  # the failed pass's blocks, unreferenced once its exception is gone
    # Each rank evaluated its slice of the split: the sums add up, each image counted once.
    loss_sum, confusion = s.dist.sum(loss_sum), s.dist.sum(confusion)
    predictions = {"labels": y, "preds": s.dist.gather_rows(torch.cat(preds), len(y)),
                   "prob_pred": s.dist.gather_rows(torch.cat(prob_pred), len(y)),
                   "prob_true": s.dist.gather_rows(torch.cat(prob_true), len(y))}
    predictions = {name: t.cpu().numpy() for name, t in predictions.items()}  # one copy each, after the loop
    matrix = confusion.view(k, k).cpu()
    totals = matrix.sum(1)
    per_class = tuple(float(matrix[i, i] / totals[i]) if totals[i] > 0 else math.nan for i in range(k))
    acc = float(matrix.diag().sum() / max(1, int(totals.sum())))
    return _Evaluated(loss=(loss_sum / max(1, len(y))).item(), acc=acc, per_class=per_class,
                      confusion=tuple(tuple(r) for r in matrix.tolist()), predictions=predictions,
                      batch_size=batch_size)


def _eval_pass(s: _Setup, images: torch.Tensor, labels: torch.Tensor, eval_bs: int, k: int):
    s.model.eval()
    try:
        loss_sum = torch.zeros((), device=s.device)
        confusion = torch.zeros(k * k, device=s.device, dtype=torch.long)
        autocast = _autocast(s)
        preds, prob_pred, prob_true = [], [], []  # per batch, kept on the device until the end
        mine = s.dist.my_slice(len(labels))
        for start in range(mine.start, mine.stop, eval_bs):  # nothing here waits for the device
            x = images[start:min(start + eval_bs, mine.stop)].to(s.device, non_blocking=True)  # no-op if on it
            y = labels[start:min(start + eval_bs, mine.stop)].to(s.device, non_blocking=True)
            mask = data.padding_mask(x) if s.info.padded else None
            with autocast:
                logits = s.model(to_channels_last(data.normalize(x, s.info.mean, s.info.std)), mask=mask).float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            pred = logits.argmax(1)
            confusion.index_add_(0, y * k + pred, torch.ones_like(pred))  # bincount would wait: it sizes its output
            probs = logits.softmax(1)
            preds.append(pred)
            prob_pred.append(probs.gather(1, pred[:, None])[:, 0])
            prob_true.append(probs.gather(1, y[:, None])[:, 0])
    finally:
        s.model.train()
    return loss_sum, confusion, preds, prob_pred, prob_true


def _better(result: _Evaluated, state: RunState) -> bool:
    """Is this epoch's validation better than the best so far? Higher accuracy wins; at equal accuracy, a lower
    loss does. A small validation split often reaches the same accuracy (even 100 %) for many epochs, and the
    first of them is rarely the best model: the loss still tells them apart."""
    if math.isnan(state.best_acc):
        return True  # the first epoch
    return result.acc > state.best_acc or (result.acc == state.best_acc and result.loss < state.best_loss)


def _selected_on(cfg: Config) -> str:
    """What chooses the saved model (run.json's and the model summary's `selected_on`): the best epoch on
    validation, or, without a validation split, the last epoch."""
    return "validation" if cfg.data.val_fraction > 0 else "last epoch"


def _meta(s: _Setup, state: RunState, run_dir: Path, *, test: _Evaluated | None = None) -> checkpoints.ModelMeta:
    """The model file's metadata; its summary says which split chose the model and, once the run has ended,
    the chosen model's test accuracy."""
    info = s.info
    validated = _selected_on(s.cfg) == "validation"
    return checkpoints.ModelMeta(
        config=s.cfg,
        class_names=tuple(info.class_names),
        mean=tuple(info.mean),
        std=tuple(info.std),
        image_size=tuple(info.image_size),
        channels=info.channels,
        summary={
            "dataset": info.name,
            "best_val_acc": None if math.isnan(state.best_acc) else state.best_acc,
            "best_epoch": state.best_epoch if validated else state.epochs_done,
            "selected_on": _selected_on(s.cfg),
            "test_acc": test.acc if test else None,
            "test_loss": test.loss if test else None,
            "epochs_done": state.epochs_done,
            "steps": state.step,
            "train_seconds": round(state.elapsed, 3),
            "run": run_dir.name,
        },
        app_version=__version__,
    )


def save_resume_state(s: _Setup, state: RunState, epoch_gen: torch.Tensor, path: Path) -> None:
    """The run's RunState, weights, optimizer and random states, as one file. Every rank of a multi-process run
    calls it: each rank's global random states are gathered ("rng.cpu.rank1", ...), and rank 0 writes."""
    rng = {"rng.cpu": torch.get_rng_state(), "rng.gen": s.gen.get_state().cpu(), "rng.epoch_gen": epoch_gen.cpu()}
    if s.device.type == "cuda":
        rng["rng.cuda"] = torch.cuda.get_rng_state(s.device)
    if s.dist.active:
        for key in [k for k in ("rng.cpu", "rng.cuda") if k in rng]:
            for rank, state_r in enumerate(s.dist.gather_states(rng[key].cpu())):
                if rank:
                    rng[f"{key}.rank{rank}"] = state_r
    if not s.dist.main:
        return
    checkpoints.save_training_state(
        path,
        model_state=_cpu_state(s.model),
        optimizer_state=s.optimizer.state_dict(),
        scheduler_state={},
        scaler_state=s.scaler.state_dict() if s.scaler is not None else None,
        progress=state.to_progress(),
        rng=rng,
    )


def _restore(s: _Setup, run_dir: Path) -> tuple[RunState, torch.Tensor | None, list[str], bool]:
    """Load what `save_resume_state` saved into the setup's model, optimizer and generators; returns the
    RunState, the generator's state at the start of an interrupted epoch (None between epochs), the
    damaged metrics records that were dropped, and whether the random draws continue exactly (False for a
    run saved on another kind of device, whose generator states do not fit this one's)."""
    if s.dist.main:
        remove_stale_temp_files(run_dir)  # left by a process killed mid-write
    saved = checkpoints.load_training_state(run_dir / runs.RESUME_FILE)
    state = RunState.from_progress(saved.progress, run_dir / runs.RESUME_FILE)
    s.model.load_state_dict(saved.model_state)
    s.optimizer.load_state_dict(saved.optimizer_state)
    if s.scaler is not None and saved.scaler_state:
        s.scaler.load_state_dict(saved.scaler_state)
    mine = f".rank{s.dist.rank}" if s.dist.rank else ""  # each rank its own states (rank 0's with another N)
    torch.set_rng_state(saved.rng.get("rng.cpu" + mine, saved.rng["rng.cpu"]))
    exact = restore_generator_state(s.gen, saved.rng["rng.gen"])
    epoch_gen = None
    if state.in_epoch:  # the state to replay the interrupted epoch's permutation from, in this device's kind
        replay = torch.Generator(device=s.device)
        exact = restore_generator_state(replay, saved.rng["rng.epoch_gen"]) and exact
        epoch_gen = replay.get_state()
    if s.device.type == "cuda" and "rng.cuda" in saved.rng:
        torch.cuda.set_rng_state(saved.rng.get("rng.cuda" + mine, saved.rng["rng.cuda"]), s.device)
    if not s.dist.main:
        return state, epoch_gen, [], exact
    # Records logged after the saved state (a crash after it) would repeat: drop them, and damaged ones.
    metrics = runs.read_metrics(run_dir)
    runs.rewrite_metrics(run_dir, [r for r in metrics.records if r.step <= state.step])
    # Inside an epoch: replay its permutation; between epochs: continue from the current state.
    return state, epoch_gen, list(metrics.problems), exact


def _make_optimizer(cfg: Config, model: torch.nn.Module, device: torch.device) -> torch.optim.Optimizer:
    t = cfg.train
    params = [p for p in model.parameters() if p.requires_grad]
    # On CUDA, one kernel for all parameters; with float16's grad scaler, the fused step also reads the
    # scaler's overflow flag on the device, where the unfused one waits for it on the host.
    fused: dict[str, Any] = {"fused": True} if device.type == "cuda" else {}
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, nesterov=t.nesterov,
                               weight_decay=t.weight_decay, **fused)
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay, **fused)
    return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay, **fused)


def _mixup(x: torch.Tensor, y: torch.Tensor, alpha: float, gen: torch.Generator
           ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Blend each image with another of the batch (Zhang et al., 2018); the loss blends their labels by lam.

    lam ~ Beta(alpha, alpha) comes from torch's global CPU generator and the pairing from the run's
    generator; both states are saved for resume, so a resumed run draws the same values."""
    lam, perm = _mixup_pairs(len(y), alpha, gen, y.device)
    return lam * x + (1.0 - lam) * x[perm], y[perm], lam


def _mixup_pairs(n: int, alpha: float, gen: torch.Generator, device: torch.device) -> tuple[float, torch.Tensor]:
    """Mixup's blend weight and each image's partner in a batch of n."""
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    return lam, torch.randperm(n, generator=gen, device=device)


def _epoch_sums(s: _Setup, loss_sum: torch.Tensor, correct: torch.Tensor, seen: int) -> tuple[float, int, int]:
    """The epoch's training loss sum, correct count and images so far, over all ranks."""
    if not s.dist.active:
        return loss_sum.item(), int(correct.item()), seen
    sums = s.dist.sum(torch.stack([loss_sum.double(), correct.double(),
                                   torch.tensor(float(seen), dtype=torch.float64, device=loss_sum.device)]))
    total_loss, total_correct, total_seen = sums.tolist()
    return total_loss, int(total_correct), int(total_seen)


def _distributed_sentence(s: _Setup, device: torch.device) -> str:
    n, bs = s.dist.world_size, s.cfg.train.batch_size
    backend = "NCCL" if device.type == "cuda" else "gloo"
    return (f"Training on {n} processes ({backend}): each step's batch of {bs} is split into {n} × {bs // n}, "
            f"and the gradients are averaged over the processes.")


def _read_every(device: torch.device) -> int:
    """Steps between reads of the loss: every step on the CPU; on a GPU, reading waits for the queue to
    drain, so it happens every few steps and the GPU never idles between steps."""
    return 1 if device.type == "cpu" else 10


def _autocast(s: _Setup):
    """The run's autocast context (device.choose_precision decided its dtype for the run's device)."""
    if s.precision.dtype is None:
        return nullcontext()
    return torch.autocast(device_type=s.device.type, dtype=s.precision.dtype)


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
