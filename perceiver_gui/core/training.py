"""The one training loop. `train(cfg)` is a generator of events; the GUI, the CLI and the tests
all drive it. Stopping, pausing and resuming happen between steps; every file it writes is atomic.

    for event in train(preset("digits")):
        print(event)
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Generator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from perceiver_gui import __version__
from perceiver_gui.config import Config, ConfigError
from perceiver_gui.core import checkpoints, data, evaluation, runs
from perceiver_gui.core.complexity import memory_refusal
from perceiver_gui.core.control import RunControl
from perceiver_gui.core.device import DeviceError, configure_threads, describe_device, resolve_device
from perceiver_gui.core.events import (
    CheckpointSaved,
    EpochEnd,
    Event,
    Finished,
    Log,
    RunStarted,
    Step,
)
from perceiver_gui.core.export import ScalarLog
from perceiver_gui.core.files import append_jsonl, atomic_write_json, atomic_write_text, remove_stale_temp_files
from perceiver_gui.core.model import build_model, to_channels_last

__all__ = ["RunControl", "lr_factor", "train"]


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


def train(
    cfg: Config | None = None,
    *,
    out_dir: str | Path | None = None,
    resume: str | Path | None = None,
    control: RunControl | None = None,
) -> Generator[Event, None, None]:
    """Train, yielding events. A problem the user can fix ends the run with Finished(status="failed")
    and a sentence; the run folder's files stay loadable whatever happens.

    `resume` continues the run in that folder with the config saved there (`cfg` is then ignored);
    otherwise `cfg` is required and `out_dir` (default: a new folder in the runs folder) is created."""
    control = control or RunControl()
    if resume is not None:
        run_dir = Path(resume)
        try:
            cfg = _read_run_config(run_dir)
        except ConfigError as exc:
            yield Finished("failed", str(exc), math.nan, 0, 0, str(run_dir), "")
            return
    else:
        if cfg is None:
            raise TypeError("train() needs a config unless it resumes a run folder")
        problems = cfg.validate()
        if problems:
            yield Finished("failed", problems[0][1], math.nan, 0, 0, "", "")
            return
        run_dir = Path(out_dir) if out_dir is not None else runs.new_run_dir(cfg.name)
        run_dir.mkdir(parents=True, exist_ok=True)
        if (run_dir / runs.CONFIG_FILE).exists():
            yield Finished(
                "failed", f"{run_dir} already holds a run; choose a new folder, or resume that run.",
                math.nan, 0, 0, str(run_dir), "",
            )
            return
    yield from _Run(cfg, run_dir, control, resuming=resume is not None).run()


def _read_run_config(run_dir: Path) -> Config:
    if not (run_dir / runs.RESUME_FILE).is_file():
        raise ConfigError(f"{run_dir} has nothing to resume from (no {runs.RESUME_FILE}).")
    try:
        raw = json.loads((run_dir / runs.CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Could not read {run_dir / runs.CONFIG_FILE}: {exc}.") from None
    return Config.from_dict(raw)


class _Run:
    """The state of one run. Split into methods so the loop in `run` reads top to bottom."""

    def __init__(self, cfg: Config, run_dir: Path, control: RunControl, *, resuming: bool) -> None:
        self.cfg = cfg
        self.run_dir = run_dir
        self.control = control
        self.resuming = resuming
        self.best_acc = math.nan
        self.best_epoch = 0
        self.epochs_done = 0
        self.step = 0
        self.elapsed = 0.0
        self.model_path = ""
        self.in_epoch = False  # an epoch's permutation has been drawn and the epoch is not over
        self.done = False  # Finished has been produced
        self.epoch_sums = (0.0, 0, 0)  # (loss sum, correct, images) of the epoch so far, restored on resume
        self.test_digest = ""  # evaluation.test_digest of the test split, taken at the first evaluation
        self.eval_batch_size = max(256, cfg.train.batch_size)  # halved if the device runs out of memory

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> Generator[Event, None, None]:
        cfg = self.cfg
        try:
            self.device = resolve_device(cfg.train.device)
        except DeviceError as exc:
            yield self._finish("failed", str(exc))
            return
        if self.device.type == "cpu":
            configure_threads(cfg.train.threads)
        if cfg.train.precision == "float16" and self.device.type != "cuda":
            yield self._finish("failed", "float16 training needs a CUDA GPU; use bfloat16 or float32 on this device.")
            return

        loader = data.open_dataset(cfg.data)
        try:
            while True:  # forward download progress, and let Stop end a long download
                event = next(loader)
                yield event
                if self.control.stopped:
                    loader.close()
                    yield self._finish("stopped", "Stopped while loading the data; nothing was trained.")
                    return
        except StopIteration as loaded:
            dataset = loaded.value
        except data.DatasetError as exc:
            yield self._finish("failed", str(exc))
            return
        if dataset.skipped:
            yield Log(f"Skipped {len(dataset.skipped)} unreadable file(s): " + "; ".join(dataset.skipped[:5]), "warning")
        info = dataset.info
        if info.test_size == 0 or info.train_size == 0:
            yield self._finish("failed", f"{info.name} has no images in its training or test split.")
            return
        # What the data decides is not the user's to set: channels, axes and classes come from it.
        self.cfg = cfg = dataclasses.replace(
            cfg,
            model=dataclasses.replace(
                cfg.model, input_channels=info.channels, input_axis=2, num_classes=len(info.class_names)
            ),
        )
        self.info = info
        refusal = memory_refusal(cfg, info.image_size, self.device, dataset_images=info.train_size + info.test_size)
        if refusal:  # before the data moves to the device and the model is built
            yield self._finish("failed", refusal)
            return

        torch.manual_seed(cfg.train.seed)
        dev = self.device
        self.train_x, self.train_y = dataset.train_x.to(dev), dataset.train_y.to(dev)
        self.test_x, self.test_y = dataset.test_x.to(dev), dataset.test_y.to(dev)
        self.gen = torch.Generator(device=dev)
        self.gen.manual_seed(cfg.train.seed)
        self.model = build_model(cfg.model).to(dev)
        self.optimizer = _make_optimizer(cfg, self.model, dev)
        self.scaler = torch.amp.GradScaler("cuda") if cfg.train.precision == "float16" else None

        n = info.train_size
        bs = cfg.train.batch_size
        self.steps_per_epoch = max(1, n // bs) if n >= bs else 1
        self.total_steps = self.steps_per_epoch * cfg.train.epochs
        self.warmup_steps = max(1, round(cfg.train.warmup_epochs * self.steps_per_epoch))

        epoch_gen_state = None
        if self.resuming:
            try:
                epoch_gen_state = self._restore()
            except checkpoints.CheckpointError as exc:
                yield self._finish("failed", str(exc))
                return
        else:
            atomic_write_json(self.run_dir / runs.CONFIG_FILE, cfg.to_dict())
            atomic_write_text(self.run_dir / runs.METRICS_FILE, "")
            runs.write_run(self.run_dir, name=cfg.name, created=time.time(), app_version=__version__)
        runs.write_run(self.run_dir, status="running", message="", epochs_done=self.epochs_done)

        params = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        yield RunStarted(
            run_dir=str(self.run_dir), device=str(dev), device_name=describe_device(dev), parameters=params,
            train_size=info.train_size, test_size=info.test_size, class_names=tuple(info.class_names),
            steps_per_epoch=self.steps_per_epoch, total_steps=self.total_steps, start_step=self.step,
            start_epoch=self.epochs_done,
        )
        if self.resuming:
            yield Log(f"Resumed at step {self.step} (epoch {self.epochs_done + 1}).")

        with (open(self.run_dir / runs.METRICS_FILE, "a", encoding="utf-8") as self.metrics,
              ScalarLog(self.run_dir, class_names=info.class_names,
                        resume_step=self.step if self.resuming else None) as self.scalars):
            try:
                yield from self._epochs(epoch_gen_state)
            except torch.OutOfMemoryError:
                smaller = max(1, bs // 2)
                yield self._finish(
                    "failed",
                    f"The {dev.type.upper()} ran out of memory at batch size {bs}; start a new run with batch "
                    f"size {smaller} (a resumed run keeps its batch size).",
                )
            except (GeneratorExit, KeyboardInterrupt):
                # The consumer dropped the generator or the user pressed Ctrl+C twice. The interruption may
                # land mid-step, so nothing is saved now: resuming continues from the last finished epoch.
                if not self.done:
                    self._write_status("stopped", "The run was interrupted; resuming continues from its last "
                                                  "finished epoch.")
                raise
        if dev.type == "cuda":
            del self.train_x, self.test_x, self.model, self.optimizer
            torch.cuda.empty_cache()

    def _epochs(self, epoch_gen_state: torch.Tensor | None) -> Generator[Event, None, None]:
        cfg, t = self.cfg, self.cfg.train
        bs = t.batch_size
        autocast = _autocast(self.device, t.precision)
        self.clock = time.perf_counter()
        self.recent: list[tuple[float, int]] = []  # (seconds, images) of recent reports, for images/s
        self.pending: list[tuple[int, float, int, torch.Tensor]] = []  # (step, lr, images, loss) not yet read
        self.read_every = _read_every(self.device)
        for epoch in range(self.epochs_done + 1, t.epochs + 1):
            # The permutation is drawn from the generator's state at the epoch start, which is saved,
            # so a resumed run sees exactly the batches it would have seen.
            if epoch_gen_state is not None:
                current = self.gen.get_state()
                self.gen.set_state(epoch_gen_state)
            self.epoch_gen_state = self.gen.get_state()
            perm = torch.randperm(self.info.train_size, generator=self.gen, device=self.device)
            if epoch_gen_state is not None:
                self.gen.set_state(current)
                epoch_gen_state = None
            self.in_epoch = True
            first = self.step - (epoch - 1) * self.steps_per_epoch
            self.model.train()
            loss_sum0, correct0, seen = self.epoch_sums if first else (0.0, 0, 0)
            loss_sum = torch.full((), loss_sum0, device=self.device)
            correct = torch.full((), correct0, device=self.device, dtype=torch.long)
            self.epoch_tensors, self.epoch_seen = (loss_sum, correct), seen
            for i in range(first, self.steps_per_epoch):
                if self.control.paused:
                    if (yield from self._report(epoch)):
                        return
                    self.control.wait_while_paused()
                    self.clock = time.perf_counter()  # a pause is not training time
                if self.control.stopped:
                    if (yield from self._report(epoch)):  # what is still pending is real and goes on the curve
                        return
                    yield from self._stop()
                    return
                idx = perm[i * bs:(i + 1) * bs]
                x = self.train_x[idx]
                y = self.train_y[idx]
                if cfg.data.crop_padding or cfg.data.hflip:
                    x = data.augment(x, crop_padding=cfg.data.crop_padding, hflip=cfg.data.hflip, generator=self.gen)
                x = to_channels_last(data.normalize(x, self.info.mean, self.info.std))
                lr = t.lr * lr_factor(self.step, self.total_steps, t.schedule, self.warmup_steps)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                target = y  # what training accuracy counts: with mixup, the label that dominates the blend
                if t.mixup > 0:
                    x, y_mix, lam = _mixup(x, y, t.mixup, self.gen)
                    target = y if lam >= 0.5 else y_mix
                with autocast:
                    logits = self.model(x)
                    loss = F.cross_entropy(logits.float(), y, label_smoothing=t.label_smoothing)
                    if t.mixup > 0:
                        mixed = F.cross_entropy(logits.float(), y_mix, label_smoothing=t.label_smoothing)
                        loss = lam * loss + (1.0 - lam) * mixed
                self.step += 1
                self.pending.append((self.step, lr, len(y), loss.detach()))
                # Reading the loss waits for the device. On the CPU that is free and happens every step,
                # before backward, so a NaN never reaches the weights; a GPU is read every few steps.
                if len(self.pending) >= self.read_every:
                    if (yield from self._report(epoch)):
                        return
                self.optimizer.zero_grad(set_to_none=True)
                if self.scaler is not None:
                    self.scaler.scale(loss).backward()
                    self.scaler.unscale_(self.optimizer)
                else:
                    loss.backward()
                if t.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
                if self.scaler is not None:
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    self.optimizer.step()
                with torch.no_grad():
                    loss_sum += loss.detach() * len(y)
                    correct += (logits.argmax(1) == target).sum()
                seen += len(y)
                self.epoch_seen = seen
            if (yield from self._report(epoch)):
                return
            train_loss = (loss_sum / max(1, seen)).item()
            train_acc = correct.item() / max(1, seen)
            yield from self._end_epoch(epoch, train_loss, train_acc)
            self.clock = time.perf_counter()  # evaluation and saving are not training time
        self._save_resume()
        yield from self._final()

    def _report(self, epoch: int) -> Generator[Event, None, bool]:
        """Read the pending losses back in one go and yield their steps; True when the loss diverged."""
        if not self.pending:
            return False
        losses = torch.stack([loss for *_, loss in self.pending]).tolist()  # one wait for the device
        now = time.perf_counter()
        images = sum(n for _, _, n, _ in self.pending)
        self.elapsed += now - self.clock
        self.recent.append((now - self.clock, images))
        self.clock = now
        del self.recent[:-20]
        speed = sum(n for _, n in self.recent) / max(1e-9, sum(s for s, _ in self.recent))
        log_every = self.cfg.train.log_every
        pending, self.pending = self.pending, []
        for (step, lr, _, _), loss in zip(pending, losses, strict=True):
            eta = (self.total_steps - step) * self.cfg.train.batch_size / speed
            if not math.isfinite(loss):
                yield Step(epoch, step, self.total_steps, loss, lr, speed, eta)
                yield from self._diverged(epoch, step, loss)
                return True
            if step % log_every == 0 or step == 1:
                self._log({"type": "step", "epoch": epoch, "step": step, "loss": loss, "lr": lr,
                           "images_per_s": speed, "time": self.elapsed})
            yield Step(epoch, step, self.total_steps, loss, lr, speed, eta)
        return False

    def _log(self, record: dict[str, Any]) -> None:
        """One record into metrics.jsonl, and into TensorBoard's files when tensorboard is installed."""
        append_jsonl(self.metrics, record)
        self.scalars.write(record)

    # -- epoch end, evaluation, saving -----------------------------------------------------------
    def _end_epoch(self, epoch: int, train_loss: float, train_acc: float) -> Generator[Event, None, None]:
        test_loss, test_acc, per_class, confusion, predictions = self._evaluate()
        # Written before the epoch is announced, so a view that hears of it finds the images behind its matrix.
        evaluation.save_evaluation(self.run_dir, evaluation.Evaluation(
            epoch=epoch, step=self.step, class_names=tuple(self.info.class_names), test_digest=self.test_digest,
            **predictions,
        ))
        self.epochs_done = epoch
        self.in_epoch = False
        is_best = not (test_acc <= self.best_acc)  # true for the first epoch (best is nan)
        if is_best:
            self.best_acc, self.best_epoch = test_acc, epoch
        record = EpochEnd(
            epoch=epoch, step=self.step, train_loss=train_loss, train_acc=train_acc, test_loss=test_loss,
            test_acc=test_acc, per_class_acc=per_class, confusion=confusion, elapsed_s=self.elapsed,
            is_best=is_best,
        )
        self._log({"type": "epoch", **dataclasses.asdict(record)})
        yield record
        if is_best:
            yield self._save_model("best", epoch)
        self._save_resume()
        runs.write_run(self.run_dir, epochs_done=epoch, best_acc=self.best_acc, best_epoch=self.best_epoch)

    @torch.inference_mode()
    def _evaluate(self) -> tuple[float, float, tuple[float, ...], tuple[tuple[int, ...], ...], dict[str, Any]]:
        """Loss, accuracy, per-class accuracy and confusion on the test split, and each test image's prediction
        (as numpy arrays for evaluation.Evaluation: the same argmax the confusion counts, and its probability)."""
        if not self.test_digest:
            self.test_digest = evaluation.test_digest(self.test_x.cpu().numpy(), self.test_y.cpu().numpy())
        k = len(self.info.class_names)
        # Evaluation keeps no activations, so it takes bigger batches than training; if the GPU cannot
        # hold one, it halves them down to the training batch size (which fits) and keeps that size.
        while True:
            try:
                loss_sum, confusion, preds, prob_pred, prob_true = self._eval_pass(self.eval_batch_size, k)
                break
            except torch.OutOfMemoryError:
                if self.eval_batch_size <= self.cfg.train.batch_size:
                    raise
                self.eval_batch_size = max(self.cfg.train.batch_size, self.eval_batch_size // 2)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
        predictions = {"labels": self.test_y, "preds": torch.cat(preds), "prob_pred": torch.cat(prob_pred),
                       "prob_true": torch.cat(prob_true)}
        predictions = {name: t.cpu().numpy() for name, t in predictions.items()}  # one copy each, after the loop
        matrix = confusion.view(k, k).cpu()
        totals = matrix.sum(1)
        per_class = tuple(
            float(matrix[i, i] / totals[i]) if totals[i] > 0 else math.nan for i in range(k)
        )
        acc = float(matrix.diag().sum() / max(1, int(totals.sum())))
        confusion_rows = tuple(tuple(r) for r in matrix.tolist())
        return (loss_sum / self.info.test_size).item(), acc, per_class, confusion_rows, predictions

    def _eval_pass(self, eval_bs: int, k: int):
        self.model.eval()
        try:
            loss_sum = torch.zeros((), device=self.device)
            confusion = torch.zeros(k * k, device=self.device, dtype=torch.long)
            autocast = _autocast(self.device, self.cfg.train.precision)
            preds, prob_pred, prob_true = [], [], []  # per batch, kept on the device until the end
            for start in range(0, self.info.test_size, eval_bs):
                x = self.test_x[start:start + eval_bs]
                y = self.test_y[start:start + eval_bs]
                with autocast:
                    logits = self.model(to_channels_last(data.normalize(x, self.info.mean, self.info.std))).float()
                loss_sum += F.cross_entropy(logits, y, reduction="sum")
                pred = logits.argmax(1)
                confusion += torch.bincount(y * k + pred, minlength=k * k)
                probs = logits.softmax(1)
                preds.append(pred)
                prob_pred.append(probs.gather(1, pred[:, None])[:, 0])
                prob_true.append(probs.gather(1, y[:, None])[:, 0])
        finally:
            self.model.train()
        return loss_sum, confusion, preds, prob_pred, prob_true

    def _meta(self) -> checkpoints.ModelMeta:
        info = self.info
        return checkpoints.ModelMeta(
            config=self.cfg,
            class_names=tuple(info.class_names),
            mean=tuple(info.mean),
            std=tuple(info.std),
            image_size=tuple(info.image_size),
            channels=info.channels,
            summary={
                "dataset": info.name,
                "best_acc": None if math.isnan(self.best_acc) else self.best_acc,
                "best_epoch": self.best_epoch,
                "epochs_done": self.epochs_done,
                "steps": self.step,
                "train_seconds": round(self.elapsed, 3),
                "run": self.run_dir.name,
            },
            app_version=__version__,
        )

    def _save_model(self, reason: str, epoch: int) -> CheckpointSaved:
        path = self.run_dir / runs.MODEL_FILE
        checkpoints.save_model(path, _cpu_state(self.model), self._meta())
        self.model_path = str(path)
        return CheckpointSaved(str(path), epoch, self.step, reason)

    def _save_resume(self) -> None:
        progress = {
            "step": self.step,
            "epochs_done": self.epochs_done,
            "best_acc": None if math.isnan(self.best_acc) else self.best_acc,
            "best_epoch": self.best_epoch,
            "elapsed": self.elapsed,
            "model_path": self.model_path,
            "in_epoch": self.in_epoch,
        }
        if self.in_epoch:  # the running train loss and accuracy of the interrupted epoch
            loss_sum, correct = self.epoch_tensors
            progress["epoch_sums"] = [loss_sum.item(), int(correct.item()), self.epoch_seen]
        extra = {"rng.cpu": torch.get_rng_state(), "rng.gen": self.gen.get_state().cpu(),
                 "rng.epoch_gen": self.epoch_gen_state.cpu() if hasattr(self, "epoch_gen_state") else
                 self.gen.get_state().cpu()}
        if self.device.type == "cuda":
            extra["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        checkpoints.save_training_state(
            self.run_dir / runs.RESUME_FILE,
            model_state=_cpu_state(self.model),
            optimizer_state=self.optimizer.state_dict(),
            scheduler_state={},
            scaler_state=self.scaler.state_dict() if self.scaler is not None else None,
            progress=progress,
            rng=extra,
        )

    def _restore(self) -> torch.Tensor | None:
        remove_stale_temp_files(self.run_dir)  # left by a process killed mid-write
        state = checkpoints.load_training_state(self.run_dir / runs.RESUME_FILE)
        self.model.load_state_dict(state.model_state)
        self.optimizer.load_state_dict(state.optimizer_state)
        if self.scaler is not None and state.scaler_state:
            self.scaler.load_state_dict(state.scaler_state)
        p = state.progress
        self.step = int(p["step"])
        self.epochs_done = int(p["epochs_done"])
        self.best_acc = math.nan if p.get("best_acc") is None else float(p["best_acc"])
        self.best_epoch = int(p.get("best_epoch") or 0)
        self.elapsed = float(p.get("elapsed") or 0.0)
        self.model_path = str(p.get("model_path") or "")
        torch.set_rng_state(state.rng["rng.cpu"])
        self.gen.set_state(state.rng["rng.gen"])  # generator states are CPU byte tensors on every device
        if self.device.type == "cuda" and "rng.cuda" in state.rng:
            torch.cuda.set_rng_state(state.rng["rng.cuda"], self.device)
        # Records logged after the saved state (a crash after it) would repeat: drop them.
        kept = [r for r in runs.read_metrics(self.run_dir) if int(r.get("step", 0)) <= self.step]
        atomic_write_text(
            self.run_dir / runs.METRICS_FILE, "".join(json.dumps(r) + "\n" for r in kept)
        )
        if p.get("in_epoch") and p.get("epoch_sums"):
            loss_sum, correct, seen = p["epoch_sums"]
            self.epoch_sums = (float(loss_sum), int(correct), int(seen))
        # Inside an epoch: replay its permutation; between epochs: continue from the current state.
        return state.rng["rng.epoch_gen"] if p.get("in_epoch") else None

    def _stop(self) -> Generator[Event, None, None]:
        self._save_resume()
        if not self.model_path:  # nothing better saved yet: keep what there is, so Stop always leaves a model
            yield self._save_model("stopped", self.epochs_done)
        yield self._finish("stopped", f"Stopped at step {self.step}; the run can be resumed.")

    def _diverged(self, epoch: int, step: int, loss: float) -> Generator[Event, None, None]:
        kind = "NaN" if math.isnan(loss) else "infinite"
        kept = f" The last good model is kept at {self.model_path}." if self.model_path else ""
        yield self._finish(
            "failed",
            f"The loss became {kind} at step {step} (epoch {epoch}), so the run stopped.{kept} "
            f"Try a lower learning rate (e.g. {self.cfg.train.lr / 10:g}) or gradient clipping.",
        )

    def _final(self) -> Generator[Event, None, None]:
        if not self.model_path:
            yield self._save_model("final", self.epochs_done)
        acc = "n/a" if math.isnan(self.best_acc) else f"{self.best_acc:.1%}"
        yield self._finish("completed", f"Finished {self.epochs_done} epochs; best test accuracy {acc} "
                                        f"(epoch {self.best_epoch}).")

    def _write_status(self, status: str, message: str) -> None:
        runs.write_run(self.run_dir, status=status, message=message, epochs_done=self.epochs_done,
                       best_acc=self.best_acc, best_epoch=self.best_epoch)

    def _finish(self, status: str, message: str) -> Finished:
        self.done = True
        if (self.run_dir / runs.CONFIG_FILE).exists():
            self._write_status(status, message)
        return Finished(status, message, self.best_acc, self.best_epoch, self.epochs_done, str(self.run_dir),
                        self.model_path)


def _make_optimizer(cfg: Config, model: torch.nn.Module, device: torch.device) -> torch.optim.Optimizer:
    t = cfg.train
    params = [p for p in model.parameters() if p.requires_grad]
    fused: dict[str, Any] = {"fused": True} if device.type == "cuda" else {}
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, nesterov=t.nesterov,
                               weight_decay=t.weight_decay)
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay, **fused)
    return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay, **fused)


def _mixup(x: torch.Tensor, y: torch.Tensor, alpha: float, gen: torch.Generator
           ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Blend each image with another of the batch (Zhang et al., 2018); the loss blends their labels by lam.

    lam ~ Beta(alpha, alpha) comes from torch's global CPU generator and the pairing from the run's
    generator; both states are saved for resume, so a resumed run draws the same values."""
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(len(y), generator=gen, device=y.device)
    return lam * x + (1.0 - lam) * x[perm], y[perm], lam


def _read_every(device: torch.device) -> int:
    """Steps between reads of the loss: every step on the CPU; on a GPU, reading waits for the queue to
    drain, so it happens every few steps and the GPU never idles between steps."""
    return 1 if device.type == "cpu" else 10


def _autocast(device: torch.device, precision: str):
    if precision == "auto":  # bfloat16 pays on GPUs; on most CPUs it is slower than float32
        precision = "bfloat16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "float32"
    if precision == "float32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bfloat16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
