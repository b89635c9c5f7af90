"""Hyperparameter sweeps with Optuna's ask-and-tell interface: the training generator stays in charge.

One trial is one ordinary run folder (trials/0007 in the sweep folder), trained by `training.train`. After
each epoch the trial reports its validation metric; when the pruner says so, the run is stopped through its
RunControl (saved and resumable like any stopped run); at the end the trial is told complete, pruned or
failed. The study lives in a journal file in the sweep folder (Optuna's JournalStorage: appends under a file
lock, safe for several processes and machines on a shared folder), or in an RDB given by URL.

A sweep folder holds sweep.json (the resolved sweep: base config, search space, settings, storage),
journal.log (the study) and trials/ (one run folder per trial). Every `sweep` process, on this machine or
another, runs the same worker loop against the study: Optuna's own distributed model, no scheduler of ours.

    spec = load_sweep("sweep.toml")
    folder = create_sweep(spec, "sweeps/lr")
    for event in run_worker(folder):
        print(event)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import socket
import sys
import time
import tomllib
from collections.abc import Generator, Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import optuna

from perceiver_gui.config import Config, ConfigError, DataConfig, ModelConfig, TrainConfig, load_config, preset
from perceiver_gui.core import runs
from perceiver_gui.core.control import RunControl
from perceiver_gui.core.events import EpochEnd, Finished
from perceiver_gui.core.files import atomic_write_json

__all__ = [
    "DIRECTIONS",
    "METRICS",
    "PRUNERS",
    "SAMPLERS",
    "Choices",
    "Range",
    "SweepEnded",
    "SweepError",
    "SweepSpec",
    "TrialEnded",
    "TrialEpoch",
    "TrialRow",
    "TrialStarted",
    "create_sweep",
    "format_value",
    "importances",
    "load_sweep",
    "open_study",
    "parse_sweep",
    "progress",
    "read_sweep",
    "run_sweep",
    "run_worker",
    "trial_rows",
]

SPEC_FILE = "sweep.json"
JOURNAL_FILE = "journal.log"
TRIALS_DIR = "trials"
STUDY_NAME = "perceiver-sweep"
# What a trial may optimise: validation, or training numbers; never the test split, which stays unseen.
METRICS = {"val_acc": "maximize", "val_loss": "minimize", "train_acc": "maximize", "train_loss": "minimize"}
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "none")
DIRECTIONS = ("maximize", "minimize")
# A RUNNING trial whose run folder has no lock yet is someone's trial starting up: give it this long.
STARTING_GRACE_S = 120.0
_TOP_KEYS = ("base", "base_config", "set", "search", "sweep")
_SWEEP_KEYS = ("trials", "sampler", "pruner", "metric", "direction", "seed")
_SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


class SweepError(ConfigError):
    """A sweep file or folder a user has to fix; the message is one sentence naming the file and field."""


# -- the sweep file ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Range:
    """A number drawn between low and high (inclusive), on a log scale when `log`; whole for int fields."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True, slots=True)
class Choices:
    """One of a list of values."""

    values: tuple[Any, ...]

    def to_json(self) -> list[Any]:
        return list(self.values)


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepSpec:
    """A sweep, resolved: the config every trial starts from and what varies."""

    base: Config  # the base with [set] applied
    search: tuple[tuple[str, Range | Choices], ...]  # dotted field -> what it takes, in the file's order
    trials: int = 20  # trials to finish (complete, pruned or failed; interrupted ones are replaced)
    sampler: str = "tpe"  # one of SAMPLERS
    pruner: str = "median"  # one of PRUNERS
    metric: str = "val_acc"  # one of METRICS
    direction: str = "maximize"  # one of DIRECTIONS
    seed: int = 0  # the sampler's seed

    def to_json(self) -> dict[str, Any]:
        return {
            "base": self.base.to_dict(),
            "search": {key: space.to_json() for key, space in self.search},
            "sweep": {"trials": self.trials, "sampler": self.sampler, "pruner": self.pruner, "metric": self.metric,
                      "direction": self.direction, "seed": self.seed},
        }

    def trial_config(self, params: dict[str, Any], name: str) -> Config:
        return self.base.with_updates({**params, "name": name})


def load_sweep(path: str | Path) -> SweepSpec:
    """Read a sweep.toml; every problem raises SweepError with one sentence naming the file and key."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SweepError(f"Could not read the sweep file {path}: {exc.strerror or exc}.") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SweepError(f"{path.name} is not valid TOML: {exc}.") from None
    return parse_sweep(raw, where=path.name, folder=path.parent)


def parse_sweep(raw: dict[str, Any], *, where: str = "sweep.toml", folder: Path = Path("."),
                base: Config | None = None) -> SweepSpec:
    """A SweepSpec from the tables of a sweep file (relative base_config paths are read from `folder`;
    a `base` given here replaces the file's base and base_config)."""
    def fail(sentence: str) -> SweepError:
        return SweepError(f"{where}: {sentence}")

    for key in raw:
        if key not in _TOP_KEYS:
            raise fail(f"unknown key '{key}'; a sweep file has base or base_config, [set], [search] and [sweep].")
    base = base or _base(raw, fail, folder)
    fixed = _dotted(_table(raw, "set", fail), "set", fail)
    try:
        base = base.with_updates(fixed).check()
    except ConfigError as exc:
        raise fail(f"[set] {_lower_first(str(exc))}") from None
    search = []
    for key, value in _dotted(_table(raw, "search", fail), "search", fail).items():
        if key in fixed:
            raise fail(f"{key} is both fixed in [set] and searched in [search]; keep it in one of them.")
        search.append((key, _space(base, key, value, fail)))
    if not search:
        raise fail("[search] is empty; name at least one setting to vary, e.g. train.lr = {low = 1e-4, high = 1e-2, "
                   "log = true}.")
    settings = _table(raw, "sweep", fail)
    for key in settings:
        if key not in _SWEEP_KEYS:
            raise fail(f"unknown key '{key}' in [sweep]; it takes {', '.join(_SWEEP_KEYS)}.")
    trials = _whole(settings.get("trials", 20), "trials", 1, fail)
    seed = _whole(settings.get("seed", 0), "seed", 0, fail)
    sampler = _one_of(settings.get("sampler", "tpe"), "sampler", SAMPLERS, fail)
    pruner = _one_of(settings.get("pruner", "median"), "pruner", PRUNERS, fail)
    metric = _one_of(settings.get("metric", "val_acc"), "metric", tuple(METRICS), fail)
    if metric not in {f.name for f in fields(EpochEnd)}:
        raise fail(f"this version's training does not report {metric}; choose metric = \"train_loss\" or update "
                   "the app.")
    if metric.startswith("val_") and getattr(base.data, "val_fraction", None) == 0 and \
            "data.val_fraction" not in dict(search):
        raise fail(f"metric {metric} needs a validation split, and the base has data.val_fraction = 0; set it "
                   "above 0 in [set] (0.1 is usual).")
    direction = _one_of(settings.get("direction", METRICS[metric]), "direction", DIRECTIONS, fail)
    if sampler == "grid":
        ranges = [key for key, space in search if isinstance(space, Range)]
        if ranges:
            raise fail(f"the grid sampler needs a list of choices for every [search] key, and {ranges[0]} is a "
                       "range; list its values, or use sampler = \"tpe\".")
    return SweepSpec(base=base, search=tuple(search), trials=trials, sampler=sampler, pruner=pruner, metric=metric,
                     direction=direction, seed=seed)


def _base(raw: dict[str, Any], fail, folder: Path) -> Config:
    if "base" in raw and "base_config" in raw:
        raise fail("give either base (a preset) or base_config (a config file), not both.")
    if "base_config" in raw:
        value = raw["base_config"]
        if not isinstance(value, str):
            raise fail(f"base_config must be the path of a config file, not {value!r}.")
        try:
            return load_config(folder / Path(value).expanduser())
        except ConfigError as exc:
            raise fail(f"base_config: {_lower_first(str(exc))}") from None
    value = raw.get("base")
    if value is None:
        raise fail('say which config the trials start from, e.g. base = "digits" or base_config = "my.toml".')
    if not isinstance(value, str):
        raise fail(f"base must be the name of a preset, not {value!r}.")
    try:
        return preset(value)
    except ConfigError as exc:
        raise fail(_lower_first(str(exc))) from None


def _table(raw: dict[str, Any], name: str, fail) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise fail(f"{name} must be a table ([{name}]), not {value!r}.")
    return value


def _dotted(table: dict[str, Any], name: str, fail) -> dict[str, Any]:
    """TOML reads `train.lr = 1` as {"train": {"lr": 1}} and `"train.lr" = 1` as {"train.lr": 1}: take both."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if "." not in key and key in _SECTIONS and isinstance(value, dict):
            for leaf, inner in value.items():
                flat[f"{key}.{leaf}"] = inner
        else:
            flat[key] = value
    for key in flat:
        if key == "name" and name == "set":
            continue  # the trials' name (each gets -trial-N)
        section, _, leaf = key.partition(".")
        known = {f.name for f in fields(_SECTIONS[section])} if section in _SECTIONS else set()
        if leaf not in known:
            hint = f"; {section} has {', '.join(sorted(known))}" if known else \
                "; fields are named section.field, e.g. train.lr, with sections model, data and train"
            raise fail(f"[{name}] names an unknown field '{key}'{hint}.")
    return flat


def _space(base: Config, key: str, value: Any, fail) -> Range | Choices:
    section, _, leaf = key.partition(".")
    kind = {f.name: f.type for f in fields(_SECTIONS[section])}[leaf]
    if isinstance(value, list):
        if not value:
            raise fail(f"[search] {key} has an empty list of choices; give at least one value.")
        for choice in value:
            if isinstance(choice, dict | list) or (kind != "str" and isinstance(choice, str)):
                raise fail(f"[search] {key}: the choice {choice!r} is not a {_kind_name(kind)}.")
            _check_value(base, key, choice, "choice", fail)
        coerced = tuple(getattr(getattr(base.with_updates({key: v}), section), leaf) for v in value)
        if len(set(coerced)) != len(coerced):
            raise fail(f"[search] {key} lists a value twice; list each choice once.")
        return Choices(coerced)
    if not isinstance(value, dict):
        raise fail(f"[search] {key} must be a range {{low = …, high = …, log = true|false}} or a list of choices, "
                   f"not {value!r}.")
    for part in value:
        if part not in ("low", "high", "log"):
            raise fail(f"[search] {key} has an unknown key '{part}'; a range takes low, high and log.")
    if kind not in ("int", "float"):
        raise fail(f"[search] {key} is a {_kind_name(kind)} setting, so it takes a list of choices, not a range.")
    for part in ("low", "high"):
        bound = value.get(part)
        if bound is None:
            raise fail(f"[search] {key} needs both low and high.")
        if isinstance(bound, bool) or not isinstance(bound, int | float) or not math.isfinite(bound):
            raise fail(f"[search] {key}: {part} must be a number, not {bound!r}.")
        if kind == "int" and not float(bound).is_integer():
            raise fail(f"[search] {key} is a whole number, so {part} must be one too (not {bound!r}).")
    log = value.get("log", False)
    if not isinstance(log, bool):
        raise fail(f"[search] {key}: log must be true or false, not {log!r}.")
    low, high = value["low"], value["high"]
    if not low < high:
        raise fail(f"[search] {key}: low ({low!r}) must be below high ({high!r}).")
    if log and low <= 0:
        raise fail(f"[search] {key}: a log-scale range needs low above 0 (got {low!r}).")
    for part, bound in (("low", low), ("high", high)):
        _check_value(base, key, bound, part, fail)
    if kind == "int":
        return Range(int(low), int(high), log, integer=True)
    return Range(float(low), float(high), log)


def _check_value(base: Config, key: str, value: Any, what: str, fail) -> None:
    """A bound or a choice must itself make a config that can run."""
    try:
        cfg = base.with_updates({key: value})
    except ConfigError as exc:
        raise fail(f"[search] {key}: the {what} {value!r} is not usable ({_lower_first(str(exc)).rstrip('.')}).") \
            from None
    for field, sentence in cfg.validate():
        if field == key:
            raise fail(f"[search] {key}: the {what} {value!r} is out of range ({_lower_first(sentence).rstrip('.')}).")


def _whole(value: Any, key: str, low: int, fail) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise fail(f"[sweep] {key} must be a whole number of at least {low}, not {value!r}.")
    return value


def _one_of(value: Any, key: str, allowed: tuple[str, ...], fail) -> str:
    if value not in allowed:
        note = " (the test split is never a sweep's objective)" if key == "metric" and str(value).startswith("test") \
            else ""
        raise fail(f"[sweep] {key} must be one of {', '.join(allowed)}, not {value!r}{note}.")
    return value


def _kind_name(kind: str) -> str:
    return {"int": "whole number", "float": "number", "bool": "true/false", "str": "text"}.get(kind, kind)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


# -- the sweep folder -------------------------------------------------------------------------------
def create_sweep(spec: SweepSpec, out_dir: str | Path, *, storage: str | None = None,
                 trials: int | None = None) -> Path:
    """Make `out_dir` a sweep folder for `spec`, or continue the one there: the same sweep (a different
    trial count is taken as the new target); a different one is refused with a sentence."""
    out = Path(out_dir).expanduser().absolute()
    if trials is not None:
        if trials < 1:
            raise SweepError("--trials must be at least 1.")
        spec = dataclasses.replace(spec, trials=trials)
    record = {**spec.to_json(), "storage": storage or "", "version": 1}
    if (out / SPEC_FILE).exists():
        saved = _read_spec_json(out)
        if _without_trials(saved) != _without_trials(json.loads(json.dumps(record))):
            raise SweepError(f"{out} holds a different sweep (its base, search space, settings or storage differ); "
                             f"continue it without --config, or choose a new --out folder.")
    else:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SweepError(f"Could not create the sweep folder {out}: {exc.strerror or exc}.") from None
        # Another machine may be creating the same sweep this moment: its files are no reason to refuse.
        ours = (SPEC_FILE, JOURNAL_FILE, JOURNAL_FILE + ".lock", TRIALS_DIR)
        if any(p.name not in ours and not p.name.startswith(".") for p in out.iterdir()):
            raise SweepError(f"{out} already holds other files; choose an empty or new folder for a sweep.")
    atomic_write_json(out / SPEC_FILE, record)
    return out


def _without_trials(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "sweep": {k: v for k, v in record.get("sweep", {}).items() if k != "trials"}}


def _read_spec_json(folder: Path) -> dict[str, Any]:
    path = folder / SPEC_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SweepError(f"{folder} is not a sweep folder (it has no {SPEC_FILE}); start one with "
                         f"`perceiver-gui sweep --config sweep.toml --out {folder}`.") from None
    except (OSError, ValueError) as exc:
        raise SweepError(f"{path} can't be read ({exc}); start the sweep in a new folder.") from None
    if not isinstance(raw, dict):
        raise SweepError(f"{path} is damaged (not a table); start the sweep in a new folder.")
    return raw


def read_sweep(folder: str | Path) -> tuple[SweepSpec, str]:
    """The spec saved in a sweep folder and its storage URL ("" for the journal in the folder)."""
    folder = Path(folder).expanduser().absolute()
    raw = _read_spec_json(folder)
    try:
        spec = parse_sweep({"search": raw.get("search") or {}, "sweep": raw.get("sweep") or {}},
                           where=str(folder / SPEC_FILE), base=Config.from_dict(raw.get("base")))
    except (ConfigError, TypeError, AttributeError) as exc:
        raise SweepError(f"{folder / SPEC_FILE} is damaged ({exc}); start the sweep in a new folder.") from None
    storage = raw.get("storage") or ""
    return spec, storage if isinstance(storage, str) else ""


def open_study(folder: str | Path, spec: SweepSpec | None = None, storage: str | None = None, *,
               worker: int = 0) -> optuna.Study:
    """The sweep's study (created on first use), with this worker's sampler and the pruner."""
    folder = Path(folder).expanduser().absolute()
    if spec is None or storage is None:
        saved_spec, saved_storage = read_sweep(folder)
        spec = spec or saved_spec
        storage = saved_storage if storage is None else storage
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own lines say what happened
    if storage:
        backend: Any = storage
    else:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        backend = JournalStorage(JournalFileBackend(str(folder / JOURNAL_FILE)))
    try:
        study = optuna.create_study(storage=backend, study_name=STUDY_NAME, direction=spec.direction,
                                    load_if_exists=True)
    except Exception as exc:  # a database that can't be reached, a driver that is missing
        raise SweepError(f"Could not open the sweep's study in {storage or folder / JOURNAL_FILE}: {exc}") from None
    done = len(study.get_trials(deepcopy=False))
    # Each worker (and each restart) draws from its own stream, so two never propose the same random trial.
    seed = spec.seed * 1_000_003 + worker * 10_007 + done
    study.sampler = _sampler(spec, seed)
    study.pruner = _pruner(spec)
    return study


def _sampler(spec: SweepSpec, seed: int) -> optuna.samplers.BaseSampler:
    if spec.sampler == "grid":
        return optuna.samplers.GridSampler({key: list(space.values) for key, space in spec.search}, seed=seed)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # A quarter of the trials (2 to 10) explore at random before TPE models what worked. The constant liar
    # counts running trials as bad ones, so parallel workers don't all propose the same promising point.
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, spec.trials // 4)),
                                      constant_liar=True)


def _pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    if spec.pruner == "none":
        return optuna.pruners.NopPruner()
    # Prune a trial whose epoch is worse than the median of earlier trials at that epoch, once a few (1 to 5)
    # trials have finished to compare with.
    return optuna.pruners.MedianPruner(n_startup_trials=min(5, max(1, spec.trials // 4)), n_warmup_steps=0)


def target_trials(spec: SweepSpec) -> int:
    """How many trials the sweep finishes: `trials`, or the grid's size when that is smaller."""
    if spec.sampler == "grid":
        return min(spec.trials, math.prod(len(space.values) for _, space in spec.search))
    return spec.trials


# -- what the worker loop yields -----------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class TrialStarted:
    number: int
    params: tuple[tuple[str, Any], ...]  # (dotted field, value)
    run_dir: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TrialEpoch:
    number: int
    epoch: int
    epochs: int
    value: float  # the sweep's metric at this epoch


@dataclass(frozen=True, slots=True, kw_only=True)
class TrialEnded:
    number: int
    state: str  # "complete", "pruned" or "failed"
    value: float  # the trial's value (nan unless complete or pruned)
    message: str  # the run's last sentence
    run_dir: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepEnded:
    message: str


SweepEvent = TrialStarted | TrialEpoch | TrialEnded | SweepEnded


# -- the worker loop ------------------------------------------------------------------------------
def run_worker(folder: str | Path, *, control: RunControl | None = None, worker: int = 0,
               overrides: dict[str, Any] | None = None, storage: str | None = None
               ) -> Generator[SweepEvent, None, None]:
    """Run trials of the sweep in `folder` one after another until it has its trials or `control` stops it.
    Any number of these loops (processes, machines) can share one study. `overrides` set where this worker
    trains (train.threads, train.device) without changing what the sweep compares."""
    folder = Path(folder).expanduser().absolute()
    spec, saved_storage = read_sweep(folder)
    storage = saved_storage if storage is None else storage
    control = control or RunControl()
    study = open_study(folder, spec, storage, worker=worker)
    target = target_trials(spec)
    while not control.stopped:
        fail_stale_trials(study)
        if _taken(study.get_trials(deepcopy=False)) >= target:
            break
        trial = study.ask()
        # Another worker may have asked at the same moment: the trials numbered before ours decide.
        ahead = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number]
        if _taken(ahead) >= target:
            trial.set_user_attr("surplus", True)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            break
        yield from _run_trial(study, trial, spec, folder, control, overrides or {})
    trials = study.get_trials(deepcopy=False)
    yield SweepEnded(message=_progress_sentence(spec, trials, stopped=control.stopped))


def _run_trial(study: optuna.Study, trial: optuna.Trial, spec: SweepSpec, folder: Path, control: RunControl,
               overrides: dict[str, Any]) -> Generator[SweepEvent, None, None]:
    from perceiver_gui.core.training import train

    run_dir = folder / TRIALS_DIR / f"{trial.number:04d}"
    trial.set_user_attr("run_dir", str(run_dir))
    trial.set_user_attr("host", socket.gethostname())
    params = {key: _suggest(trial, key, space) for key, space in spec.search}
    yield TrialStarted(number=trial.number, params=tuple(params.items()), run_dir=str(run_dir))
    try:
        cfg = spec.trial_config({**params, **overrides}, f"{spec.base.name}-trial-{trial.number}")
    except ConfigError as exc:  # e.g. a value a setting can't take: this trial fails, the sweep goes on
        trial.set_user_attr("message", str(exc))
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        yield TrialEnded(number=trial.number, state="failed", value=math.nan, message=str(exc), run_dir="")
        return
    trial_control = RunControl()  # this trial's run: stopped by the pruner, or with the whole sweep
    pruned = False
    told = False
    best = math.nan
    finished: Finished | None = None
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    events = train(cfg, out_dir=run_dir, control=trial_control)
    try:
        for event in events:
            if control.stopped:
                trial_control.stop()
            if isinstance(event, EpochEnd):
                value = float(getattr(event, spec.metric))
                if math.isfinite(value):
                    trial.report(value, event.epoch)
                    best = value if math.isnan(best) else (max if spec.direction == "maximize" else min)(best, value)
                yield TrialEpoch(number=trial.number, epoch=event.epoch, epochs=cfg.train.epochs, value=value)
                if not control.stopped and trial.should_prune():
                    pruned = True
                    trial_control.stop()
            elif isinstance(event, Finished):
                finished = event
                break  # told while the run still holds its lock, so no one takes the trial for a dead one
        state, value, message = _tell(study, trial, spec, finished, pruned=pruned, best=best)
        told = True
        for _ in events:  # the run's last words: its lock released, its folder tidied
            pass
        yield TrialEnded(number=trial.number, state=state, value=value, message=message, run_dir=str(run_dir))
    finally:
        events.close()
        if not told:  # an exception, or the consumer dropped us mid-trial
            try:
                trial.set_user_attr("interrupted", True)
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            except Exception:  # noqa: BLE001 - the study is unreachable; the next start marks it failed
                pass


def _tell(study: optuna.Study, trial: optuna.Trial, spec: SweepSpec, finished: Finished | None, *, pruned: bool,
          best: float) -> tuple[str, float, str]:
    """Tell the study how the trial's run ended: (state, value, message)."""
    message = finished.message if finished else "The run ended without a final status."
    if pruned and finished is not None and finished.status == "stopped":
        state, value, outcome = "pruned", best, {"state": optuna.trial.TrialState.PRUNED}
    elif finished is not None and finished.status == "completed" and math.isfinite(best):
        state, value, outcome = "complete", best, {"values": best}
    else:
        state, value, outcome = "failed", math.nan, {"state": optuna.trial.TrialState.FAIL}
        if finished is not None and finished.status == "completed":  # but no finite metric
            message = f"The run reported no {spec.metric} (it was not a number at any epoch); " + message
        if finished is not None and finished.status == "stopped":
            trial.set_user_attr("interrupted", True)  # the sweep was stopped: a new trial takes its place
    trial.set_user_attr("message", message)
    study.tell(trial, **outcome)
    return state, value, message


def _suggest(trial: optuna.Trial, key: str, space: Range | Choices) -> Any:
    if isinstance(space, Choices):
        return trial.suggest_categorical(key, list(space.values))
    if space.integer:
        return trial.suggest_int(key, int(space.low), int(space.high), log=space.log)
    return trial.suggest_float(key, space.low, space.high, log=space.log)


def _taken(trials: Iterable[optuna.trial.FrozenTrial]) -> int:
    """Trials that count toward the target: finished ones and running ones. Interrupted and surplus trials
    are failed but don't count, so a continued sweep replaces them."""
    return sum(1 for t in trials if not (_interrupted(t) or t.user_attrs.get("surplus")))


def _interrupted(t: optuna.trial.FrozenTrial) -> bool:
    """A failed trial whose run did not end by itself: stopped with the sweep, or its process gone (a
    trial that ends by itself always leaves its run's last sentence in `message`)."""
    return t.state == optuna.trial.TrialState.FAIL and not t.user_attrs.get("surplus") and \
        (bool(t.user_attrs.get("interrupted")) or "message" not in t.user_attrs)


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """Mark failed the RUNNING trials whose process is gone (killed, or its machine rebooted): their run
    folder's lock is free. Their folders stay as they are, readable and resumable. Returns their numbers."""
    failed = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if not _gone(t):
            continue
        try:
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)  # no `message`: interrupted
            failed.append(t.number)
        except (ValueError, RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            pass  # another worker marked it first
    return failed


def _gone(t: optuna.trial.FrozenTrial) -> bool:
    """A RUNNING trial whose process is gone: its run folder's lock is free (a run takes it as it starts;
    one a few seconds old may not have yet). Another machine's trial whose folder this one cannot see is
    left alone."""
    now = time.time()
    started = t.datetime_start.timestamp() if t.datetime_start else now
    run_dir = t.user_attrs.get("run_dir")
    if isinstance(run_dir, str) and Path(run_dir).is_dir():
        locked_once = (Path(run_dir) / runs.LOCK_FILE).exists()
        return not runs.lock_holder(Path(run_dir)) and (locked_once or now - started > STARTING_GRACE_S)
    return now - started > STARTING_GRACE_S and t.user_attrs.get("host", socket.gethostname()) == \
        socket.gethostname()


# -- several workers in this process's machine ------------------------------------------------------
def worker_plan(spec: SweepSpec, workers: int) -> list[dict[str, Any]]:
    """The overrides of each of `workers` local workers: its own GPU when there are GPUs, else a share of
    the CPU cores."""
    if workers <= 1:
        return [{}]
    device = spec.base.train.device
    gpus = _gpu_count() if device in ("auto", "cuda") else 0
    if gpus:
        return [{"train.device": f"cuda:{i % gpus}"} for i in range(workers)]
    cores = spec.base.train.threads or os.cpu_count() or 1
    return [{"train.threads": max(1, cores // workers)} for _ in range(workers)]


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def run_sweep(folder: str | Path, *, workers: int = 1, control: RunControl | None = None,
              storage: str | None = None) -> Generator[SweepEvent, None, None]:
    """Run the sweep with `workers` trials at once: one worker loop here, or each in its own process
    (spawned, never forked). With several processes, their events are printed by them and this generator
    yields only the end."""
    folder = Path(folder).expanduser().absolute()
    spec, _ = read_sweep(folder)
    plan = worker_plan(spec, workers)
    if len(plan) == 1:
        yield from run_worker(folder, control=control, overrides=plan[0], storage=storage)
        return
    import multiprocessing

    control = control or RunControl()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=worker_main, args=(str(folder), i, plan[i], storage), daemon=False)
             for i in range(len(plan))]
    for p in procs:
        p.start()
    try:
        while any(p.is_alive() for p in procs):
            if control.stopped:
                for p in procs:
                    if p.is_alive() and p.pid:
                        os.kill(p.pid, signal.SIGTERM)  # each stops its trial at the next step
                for p in procs:
                    p.join()
                break
            for p in procs:
                p.join(timeout=0.2)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join()
    study = open_study(folder, spec, storage)
    yield SweepEnded(message=_progress_sentence(spec, study.get_trials(deepcopy=False), stopped=control.stopped))


def worker_main(folder: str, worker: int, overrides: dict[str, Any], storage: str | None) -> None:
    """A spawned worker process: runs the worker loop, prints a line per trial, stops on SIGINT/SIGTERM."""
    control = RunControl()
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), lambda *_: control.stop())
    for event in run_worker(folder, control=control, worker=worker, overrides=overrides, storage=storage):
        line = describe(event)
        if line and not isinstance(event, SweepEnded):
            print(f"[worker {worker}] {line}", flush=True)
    sys.stdout.flush()


def describe(event: SweepEvent) -> str:
    """One line for a terminal."""
    if isinstance(event, TrialStarted):
        params = ", ".join(f"{k}={format_value(v)}" for k, v in event.params)
        return f"trial {event.number}: {params}  ({event.run_dir})"
    if isinstance(event, TrialEpoch):
        return f"trial {event.number}: epoch {event.epoch}/{event.epochs}  {format_value(event.value)}"
    if isinstance(event, TrialEnded):
        value = f" {format_value(event.value)}" if math.isfinite(event.value) else ""
        return f"trial {event.number} {event.state}{value}: {event.message}"
    return event.message


def progress(study: optuna.Study, spec: SweepSpec) -> str:
    """Where a sweep stands, in a sentence: trials finished of the target, and the best so far."""
    return _progress_sentence(spec, study.get_trials(deepcopy=False), stopped=False)


def _progress_sentence(spec: SweepSpec, trials: list[optuna.trial.FrozenTrial], *, stopped: bool) -> str:
    target = target_trials(spec)
    counted = [t for t in trials if _taken([t]) and t.state != optuna.trial.TrialState.RUNNING]
    running = sum(t.state == optuna.trial.TrialState.RUNNING for t in trials)
    head = "Stopped" if stopped else ("Done" if len(counted) >= target else
                                      f"{running} running" if running else "Not finished")
    best = _best(spec, trials)
    tail = f"; best trial {best.number}: {spec.metric} {format_value(best.value)}" if best is not None else ""
    return f"{head}: {len(counted)} of {target} trials finished{tail}."


def _best(spec: SweepSpec, trials: list[optuna.trial.FrozenTrial]) -> optuna.trial.FrozenTrial | None:
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
    if not complete:
        return None
    pick = max if spec.direction == "maximize" else min
    return pick(complete, key=lambda t: t.value)


def format_value(value: Any) -> str:
    """A parameter's or metric's value for a person: floats to 4 significant digits, a non-finite one as –."""
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else "–"
    return str(value)


# -- reading a study: the status table, the GUI ----------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class TrialRow:
    """One trial as a person reads it."""

    number: int
    state: str  # running, complete, pruned, failed, interrupted
    value: float  # the trial's value; for a running one, its last epoch's; nan when none
    epoch: int  # the last epoch reported
    params: tuple[tuple[str, Any], ...]
    run_dir: str
    is_best: bool


def trial_rows(study: optuna.Study, spec: SweepSpec) -> list[TrialRow]:
    """Every trial but the surplus ones (asked by two workers at once and never run), in order."""
    trials = study.get_trials(deepcopy=False)
    best = _best(spec, trials)
    rows = []
    for t in trials:
        if t.user_attrs.get("surplus"):
            continue
        state = {"COMPLETE": "complete", "PRUNED": "pruned", "RUNNING": "running", "WAITING": "waiting"}.get(
            t.state.name, "failed")
        if _interrupted(t) or (state == "running" and _gone(t)):  # (its sweep, continued, marks it so)
            state = "interrupted"
        last_epoch = max(t.intermediate_values, default=0)
        value = t.value if t.value is not None else t.intermediate_values.get(last_epoch, math.nan)
        if state == "pruned":  # the best epoch, as for a complete trial
            reported = [v for v in t.intermediate_values.values() if math.isfinite(v)]
            value = (max if spec.direction == "maximize" else min)(reported) if reported else math.nan
        rows.append(TrialRow(number=t.number, state=state, value=float(value), epoch=last_epoch,
                             params=tuple((key, t.params[key]) for key, _ in spec.search if key in t.params),
                             run_dir=str(t.user_attrs.get("run_dir", "")),
                             is_best=best is not None and t.number == best.number))
    return rows


def importances(study: optuna.Study) -> dict[str, float]:
    """Optuna's parameter importances (fANOVA), or {} while there are too few complete trials."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}
    try:
        return dict(optuna.importance.get_param_importances(study))
    except (ValueError, RuntimeError, ZeroDivisionError):
        return {}  # e.g. every complete trial has the same value
