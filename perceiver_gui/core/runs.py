"""Run folders: the one owner of their files. Where runs live, their status (run.json), their settings
(config.json), their metrics (metrics.jsonl), the lock a training process holds, and the list of past runs.

A run folder holds config.json (the full config), run.json (name, status, summary), metrics.jsonl (every
logged step and epoch, appended as it goes), model.safetensors (the best or final model),
resume.safetensors (everything needed to continue) and .lock (held by the process training it).

Each file has typed, frozen records here with one reader and one writer. Readers are tolerant: a field of
the wrong type or out of range is named in `problems` and skipped, so one damaged run never stops the app,
the listing, the comparison, the export or a resume.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from perceiver_gui.config import Config, ConfigError
from perceiver_gui.core.files import atomic_write_json, atomic_write_text

__all__ = [
    "CONFIG_FILE",
    "LOCK_FILE",
    "METRICS_FILE",
    "MODEL_FILE",
    "RESUME_FILE",
    "RUN_FILE",
    "SELECTED_ON_TEST",
    "CompareRow",
    "EpochRecord",
    "Metrics",
    "MetricsSummary",
    "MetricsWriter",
    "RunConfig",
    "RunError",
    "RunInfo",
    "RunLock",
    "RunLockedError",
    "RunRecord",
    "StepRecord",
    "TestRecord",
    "app_home",
    "compare_configs",
    "default_runs_root",
    "delete_run",
    "describe_accuracy",
    "flatten_config",
    "list_runs",
    "lock_holder",
    "lock_run",
    "metrics_json",
    "new_run_dir",
    "read_config",
    "read_metrics",
    "read_run",
    "rename_run",
    "rewrite_metrics",
    "summarize_metrics",
    "write_config",
    "write_run",
]

CONFIG_FILE = "config.json"
RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
MODEL_FILE = "model.safetensors"
RESUME_FILE = "resume.safetensors"
LOCK_FILE = ".lock"

STATUSES = ("running", "completed", "stopped", "failed")
_MAX_INT = 2**53  # larger "counts" are damage: they don't survive a float, and no run gets near them
_MAX_PROBLEMS = 20  # named per file; the rest are counted


class RunError(RuntimeError):
    """A run folder that cannot be used as asked."""


class RunLockedError(RunError):
    """Another process is training this run."""


def app_home() -> Path:
    """The app's data folder; PERCEIVER_GUI_HOME overrides it (tests and portable installs), `~` expanded."""
    override = os.environ.get("PERCEIVER_GUI_HOME")
    if override:
        return Path(override).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("perceiver-gui", appauthor=False))


def default_runs_root() -> Path:
    return app_home() / "runs"


def new_run_dir(name: str, root: Path | None = None) -> Path:
    """A fresh folder named by time and the config name; never reuses an existing one."""
    root = Path(root) if root is not None else default_runs_root()
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "run"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        path = root / (f"{stamp}-{slug}" if i == 0 else f"{stamp}-{slug}-{i}")
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
    raise RunError(f"Could not create a new run folder in {root}.")


# -- field checks shared by the readers ------------------------------------------------------------
class _Bad(ValueError):
    """A field's value that is not what its record says; the message names what it should be."""


def _int(value: Any, low: int = 0) -> int:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)  # 3.0 from an older writer
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= _MAX_INT:
        raise _Bad(f"a whole number from {low} to {_MAX_INT}")
    return value


def _float(value: Any) -> float:
    """A number; null and a non-finite value (a loss that diverged) are nan/inf as stored."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad("a number")
    try:
        return float(value)
    except OverflowError:  # an integer too large for a float
        raise _Bad("a number") from None


def _time(value: Any) -> float:
    value = _float(value)
    if not (math.isnan(value) or 0.0 <= value < 1e11):  # null: unknown; else seconds since 1970, before 5000
        raise _Bad("a time in seconds since 1970")
    return value


def _fraction(value: Any) -> float:
    value = _float(value)
    if not (math.isnan(value) or 0.0 <= value <= 1.0):
        raise _Bad("a fraction from 0 to 1")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _Bad("text")
    return value


def _status(value: Any) -> str:
    if value not in (*STATUSES, ""):  # "": not known (written when an unknown status was skipped)
        raise _Bad("one of " + ", ".join(STATUSES))
    return value


def _show(value: Any) -> str:
    text = json.dumps(value, allow_nan=True) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _parse_fields(raw: Mapping[str, Any], parsers: Mapping[str, Callable[[Any], Any]], where: str
                  ) -> tuple[dict[str, Any], list[str]]:
    """The fields of `raw` that `parsers` knows and that parse; a sentence for each that does not."""
    values, problems = {}, []
    for key, parse in parsers.items():
        if key not in raw:
            continue
        try:
            values[key] = parse(raw[key])
        except _Bad as bad:
            problems.append(f"{where}: {key} is {_show(raw[key])}, not {bad}; it was skipped")
    return values, problems


def _read_json(path: Path) -> tuple[Any, str]:
    """The JSON in `path` and "" , or None and why not."""
    try:
        return json.loads(path.read_text(encoding="utf-8")), ""
    except FileNotFoundError:
        return None, f"{path.name} is missing"
    except OSError as exc:
        return None, f"{path.name} could not be read ({exc.strerror or exc})"
    except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested beyond reason
        return None, f"{path.name} is damaged (not valid JSON)"


# -- run.json ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """run.json: what the Runs tab shows about a run. `problems` says what was damaged and skipped."""

    name: str = ""  # "" until named: the folder's name is shown
    created: float = math.nan  # seconds since the epoch; nan when unknown
    updated: float = math.nan
    status: str = ""  # running, completed, stopped or failed; "" when unknown
    message: str = ""  # the sentence the run ended with
    epochs_done: int = 0
    best_acc: float = math.nan  # 0..1: the accuracy that chose the saved model, on `selected_on`; nan until one
    best_epoch: int = 0  # the epoch whose model is saved
    # Which split chose the saved model: "validation", "last epoch" (no validation split), or "test" for a run
    # of an older version, which chose on the test split (read from a run.json without this field).
    selected_on: str = ""
    test_acc: float = math.nan  # the saved model on the test split, evaluated once when the run ended
    test_loss: float = math.nan
    app_version: str = ""
    notes: str = ""  # the user's own words about the run (Runs tab › Notes…)
    train_seconds: float = math.nan  # seconds of training steps (no evaluation), all sessions; nan until an epoch ends
    problems: tuple[str, ...] = ()  # read, never written

    def to_json(self) -> dict[str, Any]:
        record = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "problems"}
        # JSON has no NaN; an unknown number is stored as null.
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}


_RUN_FIELDS: dict[str, Callable[[Any], Any]] = {
    "name": _text, "created": _time, "updated": _time, "status": _status, "message": _text,
    "epochs_done": _int, "best_acc": _fraction, "best_epoch": _int, "app_version": _text, "notes": _text,
    "selected_on": _text, "test_acc": _fraction, "test_loss": _float, "train_seconds": _float,
}
SELECTED_ON_TEST = "test"  # what older versions chose the saved model by (see RunRecord.selected_on)


def read_run(run_dir: Path) -> RunRecord:
    """run.json, its damaged fields skipped and named in `problems`; a missing or unreadable file gives
    the defaults and says so."""
    raw, problem = _read_json(Path(run_dir) / RUN_FILE)
    if problem:
        return RunRecord(problems=(problem,))
    if not isinstance(raw, dict):
        return RunRecord(problems=(f"{RUN_FILE} is damaged (not a table of fields)",))
    values, problems = _parse_fields(raw, _RUN_FIELDS, RUN_FILE)
    if "selected_on" not in raw and raw.get("best_acc") is not None:  # an older version's run: chosen on test
        values["selected_on"] = SELECTED_ON_TEST
    return RunRecord(**values, problems=tuple(problems))


def write_run(run_dir: Path, **fields: Any) -> RunRecord:
    """Update run.json with these fields (atomically). Damaged fields read from the old file are dropped."""
    record = dataclasses.replace(read_run(run_dir), **fields, updated=time.time(), problems=())
    atomic_write_json(Path(run_dir) / RUN_FILE, record.to_json())
    return record


def describe_accuracy(*, best_acc: float, best_epoch: int, selected_on: str, test_acc: float) -> str:
    """What a run's (or model's) accuracies are and which split each is on, for people: "best validation
    95.6% (epoch 12) · test 94.9%"; an older version's run says its accuracy is test, and was chosen on."""
    def pct(value: Any) -> str:
        return f"{value:.1%}" if isinstance(value, int | float) and math.isfinite(value) else "—"

    if selected_on == SELECTED_ON_TEST:
        return f"test {pct(best_acc)} (epoch {best_epoch}; selected on test, old run)"
    parts = []
    if selected_on == "last epoch":
        parts.append(f"no validation split (the last epoch, {best_epoch}, kept)")
    elif isinstance(best_acc, int | float) and math.isfinite(best_acc):
        parts.append(f"best validation {pct(best_acc)} (epoch {best_epoch})")
    if isinstance(test_acc, int | float) and math.isfinite(test_acc):
        parts.append(f"test {pct(test_acc)}")
    return " · ".join(parts)


# -- config.json ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RunConfig:
    """config.json: the settings as stored, and as a validated Config when this version can read them
    (an older or newer run may hold settings this version lacks; it still lists and compares)."""

    raw: dict[str, Any]
    config: Config | None
    problem: str  # why `config` is None; "" when it is not

    def get(self, section: str, key: str) -> Any:
        """raw[section][key], or None where the file does not have it in that shape."""
        part = self.raw.get(section)
        return part.get(key) if isinstance(part, dict) else None


def read_config(run_dir: Path) -> RunConfig:
    """A run's config.json. Raises RunError when it cannot be read at all."""
    path = Path(run_dir) / CONFIG_FILE
    raw, problem = _read_json(path)
    if problem:
        raise RunError(f"The settings of this run can't be read: {problem} ({path}).")
    if not isinstance(raw, dict):
        raise RunError(f"The settings file of this run is damaged ({path} does not hold a table of settings).")
    try:
        return RunConfig(raw, Config.from_dict(_from_older_version(raw)), "")
    except (ConfigError, TypeError, ValueError, OverflowError) as exc:
        return RunConfig(raw, None, f"{CONFIG_FILE}: {exc}".rstrip("."))


def _from_older_version(raw: dict[str, Any]) -> dict[str, Any]:
    """Settings saved before the validation split: their data.val_fraction was the folder's test share, and
    they had no validation. Read as such, an old run resumes on exactly the images it trained on."""
    data = raw.get("data")
    if not isinstance(data, dict) or "val_fraction" not in data or "test_fraction" in data:
        return raw
    return {**raw, "data": {**data, "test_fraction": data["val_fraction"], "val_fraction": 0.0}}


def write_config(run_dir: Path, cfg: Config) -> None:
    atomic_write_json(Path(run_dir) / CONFIG_FILE, cfg.to_dict())


# -- metrics.jsonl -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class StepRecord:
    """A logged training step."""

    kind: ClassVar[str] = "step"
    epoch: int  # 1-based
    step: int  # global, 1-based
    loss: float = math.nan  # may be nan/inf (a diverging run); nan where the line's was damaged
    lr: float = math.nan
    images_per_s: float = math.nan
    time: float = math.nan  # seconds of training so far
    extra: tuple[tuple[str, float], ...] = ()  # numeric fields this version does not know (a newer writer's)


@dataclass(frozen=True, slots=True, kw_only=True)
class EpochRecord:
    """A finished epoch: the fields of events.EpochEnd."""

    kind: ClassVar[str] = "epoch"
    epoch: int
    step: int  # global step at its end
    train_loss: float = math.nan
    train_acc: float = math.nan
    val_loss: float = math.nan  # on the validation split, which chooses the best epoch
    val_acc: float = math.nan
    per_class_acc: tuple[float, ...] = ()  # on the split of `held_out`
    confusion: tuple[tuple[int, ...], ...] = ()
    elapsed_s: float = math.nan
    is_best: bool = False
    test_loss: float = math.nan  # only in runs of older versions, which evaluated (and chose on) test each epoch
    test_acc: float = math.nan
    extra: tuple[tuple[str, float], ...] = ()

    @property
    def held_out(self) -> str:
        """The split this epoch was evaluated on: "validation", "test" (an older version's run) or ""."""
        if not (math.isnan(self.val_acc) and math.isnan(self.val_loss)):
            return "validation"
        return "test" if not (math.isnan(self.test_acc) and math.isnan(self.test_loss)) else ""

    @property
    def held_out_loss(self) -> float:
        return self.test_loss if self.held_out == "test" else self.val_loss

    @property
    def held_out_acc(self) -> float:
        return self.test_acc if self.held_out == "test" else self.val_acc


@dataclass(frozen=True, slots=True, kw_only=True)
class TestRecord:
    """The saved model on the test split, evaluated once when the run ended (a resumed run that ends again
    adds another: the last one is the run's)."""

    kind: ClassVar[str] = "test"
    epoch: int  # the epoch whose model was saved and evaluated
    step: int  # global step when the run ended
    test_loss: float = math.nan
    test_acc: float = math.nan
    per_class_acc: tuple[float, ...] = ()
    confusion: tuple[tuple[int, ...], ...] = ()
    selected_on: str = ""  # what chose the model: "validation" or "last epoch"
    extra: tuple[tuple[str, float], ...] = ()


MetricsRecord = StepRecord | EpochRecord | TestRecord
_LEGACY = ("test_loss", "test_acc")  # epoch fields only older runs have: not written when unknown


def _floats(value: Any) -> tuple[float, ...]:
    if not isinstance(value, list):
        raise _Bad("a list of numbers")
    return tuple(_float(v) for v in value)


def _matrix(value: Any) -> tuple[tuple[int, ...], ...]:
    if not isinstance(value, list) or not all(isinstance(row, list) and len(row) == len(value) for row in value):
        raise _Bad("a square table of counts")
    return tuple(tuple(_int(v) for v in row) for row in value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad("true or false")
    return value


_KEYS = ("epoch", "step")  # without these a record can't be placed on a curve: the line is skipped
_METRIC_FIELDS: dict[type, dict[str, Callable[[Any], Any]]] = {
    StepRecord: {"loss": _float, "lr": _float, "images_per_s": _float, "time": _float},
    EpochRecord: {"train_loss": _float, "train_acc": _fraction, "val_loss": _float, "val_acc": _fraction,
                  "per_class_acc": _floats, "confusion": _matrix, "elapsed_s": _float, "is_best": _flag,
                  "test_loss": _float, "test_acc": _fraction},
    TestRecord: {"test_loss": _float, "test_acc": _fraction, "per_class_acc": _floats, "confusion": _matrix,
                 "selected_on": _text},
}
_TYPES = {"step": StepRecord, "epoch": EpochRecord, "test": TestRecord}


def metrics_json(record: MetricsRecord) -> dict[str, Any]:
    """A record as its metrics.jsonl line holds it (NaN and infinities as JSON's NaN/Infinity)."""
    out: dict[str, Any] = {"type": record.kind}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if f.name == "extra":
            out.update(value)
        elif isinstance(record, EpochRecord) and f.name in _LEGACY and math.isnan(value):
            continue
        else:
            out[f.name] = [list(v) for v in value] if f.name == "confusion" else (
                list(value) if isinstance(value, tuple) else value)
    return out


def _parse_metric(raw: Any, where: str) -> tuple[MetricsRecord | None, list[str]]:
    if not isinstance(raw, dict):
        return None, [f"{where} is not a record; it was skipped"]
    kind = raw.get("type")
    cls = _TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        return None, []  # a kind of record this version does not draw: not damage
    try:
        keys = {"epoch": _int(raw.get("epoch"), low=0), "step": _int(raw.get("step"), low=0)}
    except _Bad:
        bad = next(k for k in _KEYS if not _ok(_int, raw.get(k)))
        return None, [f"{where}: {bad} is {_show(raw.get(bad))}, not a whole number; the line was skipped"]
    values, problems = _parse_fields(raw, _METRIC_FIELDS[cls], where)
    known = {"type", *_KEYS, *_METRIC_FIELDS[cls]}
    extra = tuple((k, float(v)) for k, v in raw.items()
                  if k not in known and isinstance(v, int | float) and not isinstance(v, bool) and _ok(_float, v))
    return cls(**keys, **values, extra=extra), problems


def _ok(parse: Callable[[Any], Any], value: Any) -> bool:
    try:
        parse(value)
        return True
    except _Bad:
        return False


@dataclass(frozen=True, slots=True)
class Metrics:
    """metrics.jsonl: its records in the file's order, and a sentence for each damaged line or field."""

    records: tuple[MetricsRecord, ...]
    problems: tuple[str, ...]

    @property
    def steps(self) -> list[StepRecord]:
        return [r for r in self.records if isinstance(r, StepRecord)]

    @property
    def epochs(self) -> list[EpochRecord]:
        return [r for r in self.records if isinstance(r, EpochRecord)]

    @property
    def test(self) -> TestRecord | None:
        """The run's test result: the last one, as a resumed run that ended again adds one."""
        return next((r for r in reversed(self.records) if isinstance(r, TestRecord)), None)


def read_metrics(run_dir: Path) -> Metrics:
    """Every step and epoch record of metrics.jsonl. A damaged line (a torn last line of a killed process,
    a step of "x", null or 1e400) or field is named in `problems` and skipped; the rest is read."""
    path = Path(run_dir) / METRICS_FILE
    records: list[MetricsRecord] = []
    problems: list[str] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                where = f"{METRICS_FILE} line {number}"
                try:
                    raw = json.loads(line)
                except (ValueError, RecursionError):
                    problems.append(f"{where} is not valid JSON (cut off?); it was skipped")
                    continue
                record, found = _parse_metric(raw, where)
                problems += found
                if record is not None:
                    records.append(record)
    except FileNotFoundError:
        pass
    except OSError as exc:
        problems.append(f"{METRICS_FILE} could not be read ({exc.strerror or exc})")
    if len(problems) > _MAX_PROBLEMS:
        problems[_MAX_PROBLEMS:] = [f"and {len(problems) - _MAX_PROBLEMS} more damaged lines or fields"]
    return Metrics(tuple(records), tuple(problems))


def rewrite_metrics(run_dir: Path, records: Iterable[MetricsRecord]) -> None:
    """Replace metrics.jsonl with these records, atomically (a resume drops what came after its state)."""
    text = "".join(json.dumps(metrics_json(r), allow_nan=True) + "\n" for r in records)
    atomic_write_text(Path(run_dir) / METRICS_FILE, text)


class MetricsWriter:
    """Appends records to a run's metrics.jsonl, a line at a time, flushed, so a crash loses at most one."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        # "r+" and a seek, not "a": open never creates the file, so a vanished run folder is not re-made.
        self._fh = open(self.path, "r+", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self._fh.seek(0, os.SEEK_END)

    def append(self, record: MetricsRecord) -> dict[str, Any]:
        line = metrics_json(record)
        try:
            self._fh.write(json.dumps(line, allow_nan=True) + "\n")
            self._fh.flush()
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(self.path)) from exc
        return line

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class CompareRow:
    """One setting across several runs."""

    key: str  # dotted, e.g. "model.depth"
    values: tuple[Any, ...]  # one per run; None where a run has no such setting or its config was unreadable
    differs: bool  # the runs whose config was read do not all have the same value


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"model": {"depth": 6}} -> {"model.depth": 6}, in the config's own order."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def compare_configs(configs: Sequence[Mapping[str, Any] | None]) -> list[CompareRow]:
    """The settings of several runs side by side, one row per dotted setting, in the order the configs
    list them. A config that could not be read (None) shows None everywhere and takes no part in what
    differs: an unknown value is not a difference. A setting only some runs have (an older app version)
    differs."""
    flats = [flatten_config(c) if c is not None else None for c in configs]
    keys = list(dict.fromkeys(k for flat in flats if flat is not None for k in flat))
    missing = object()
    rows = []
    for key in keys:
        known = [flat.get(key, missing) for flat in flats if flat is not None]
        differs = any(not _same(known[0], v) for v in known[1:])
        values = tuple(flat.get(key) if flat is not None else None for flat in flats)
        rows.append(CompareRow(key=key, values=values, differs=differs))
    return rows


def _same(a: Any, b: Any) -> bool:
    # 10 and 10.0 are the same setting (JSON from an older version); two NaNs are too.
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


@dataclass(frozen=True, slots=True)
class MetricsSummary:
    best_acc: float  # the highest finite held-out accuracy of an epoch; nan until an epoch has one
    best_epoch: int  # the first epoch that reached it; 0 until then
    epochs_done: int  # epochs with a logged result
    held_out: str = ""  # the split of best_acc: "validation", or "test" for an older version's run
    test_acc: float = math.nan  # the run's test result (its chosen model, evaluated once at the end)


def summarize_metrics(records: Iterable[MetricsRecord]) -> MetricsSummary:
    """Best held-out accuracy (validation; test in an older version's run), its epoch, the epochs done and
    the final test accuracy, from metrics.jsonl records (non-finite accuracies are skipped). The best epoch
    is the one training saved: the highest accuracy, and at equal accuracy the lower loss (training._better)."""
    best_acc, best_loss, best_epoch, epochs, held_out, test_acc = math.nan, math.nan, 0, set(), "", math.nan
    for r in records:
        if isinstance(r, TestRecord):
            test_acc = r.test_acc
        if not isinstance(r, EpochRecord):
            continue
        epochs.add(r.epoch)
        acc, loss = r.held_out_acc, r.held_out_loss
        if not math.isfinite(acc):
            continue
        if math.isnan(best_acc) or acc > best_acc or (acc == best_acc and loss < best_loss):
            best_acc, best_loss, best_epoch, held_out = acc, loss, r.epoch, r.held_out
    return MetricsSummary(best_acc=best_acc, best_epoch=best_epoch, epochs_done=len(epochs), held_out=held_out,
                          test_acc=test_acc)


# -- the lock a training process holds -------------------------------------------------------------
class RunLock:
    """An OS lock on a run folder's .lock file, held while a process trains the run. The OS releases it
    when the process ends however it ends (SIGKILL included), so a dead trainer needs no cleanup."""

    def __init__(self, run_dir: Path, fd: int) -> None:
        self.run_dir = Path(run_dir)
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the last descriptor drops the lock

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


if os.name == "nt":
    import msvcrt

    _WIN_LOCK_OFFSET = 1 << 30  # lock a byte far past the holder text, which stays readable to others

    def _try_lock(fd: int, shared: bool) -> bool:
        os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock_probe(fd: int) -> None:
        os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _try_lock(fd: int, shared: bool) -> bool:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock_probe(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def lock_run(run_dir: Path, *, wait_s: float = 1.0) -> RunLock:
    """Take the run's lock for this process, or raise RunLockedError naming the process that holds it.
    Waits up to `wait_s` for a listing's brief look at the lock to end."""
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise RunError(f"Could not lock the run folder {run_dir}: {exc.strerror or exc} ({path}).") from None
    deadline = time.monotonic() + wait_s
    while not _try_lock(fd, shared=False):
        if time.monotonic() >= deadline:
            os.close(fd)
            holder = _holder_text(path) or "another process"
            raise RunLockedError(f"{run_dir} is being trained by {holder}; stop that run first, or wait for it "
                                 f"to end (only one process can train a run at a time).")
        time.sleep(0.02)
    try:  # who holds it, for the sentence another trainer gets
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
    except OSError:
        pass  # the lock holds without its note
    return RunLock(run_dir, fd)


def lock_holder(run_dir: Path) -> str:
    """Who trains this run now ("process 123 on host"), or "" when no process holds its lock."""
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY if os.name != "nt" else os.O_RDWR)
    except OSError:
        return ""  # no lock file: never trained by this version, or not now
    try:
        if _try_lock(fd, shared=True):
            _unlock_probe(fd)
            return ""
        return _holder_text(path) or "another process"
    finally:
        os.close(fd)


def _holder_text(path: Path) -> str:
    try:
        pid, _, host = path.read_text(encoding="utf-8", errors="replace")[:300].strip().partition(" ")
    except OSError:
        return ""
    if not pid.isdigit():
        return ""
    return f"process {pid} on {host}" if host else f"process {pid}"


# -- the listing ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class RunInfo:
    name: str
    path: str
    created: float  # seconds since the epoch
    dataset: str
    status: str  # running (held by a live process), interrupted ("running" but no process holds it),
    #              completed, stopped, failed, or "unknown"
    best_acc: float  # the accuracy that chose the saved model, on `selected_on`; nan until one did
    epochs_done: int
    epochs: int
    message: str
    selected_on: str = ""  # "validation", "last epoch", or "test" (an older version's run)
    test_acc: float = math.nan  # the saved model on the test split, once the run ended
    holder: str = ""  # the process training it, when running
    damaged: str = ""  # what of the run's files was damaged and skipped; "" when nothing


def list_runs(root: Path | None = None) -> list[RunInfo]:
    """Past runs under root, newest first. Folders without a config are not runs and are ignored. A run
    whose files are damaged is listed with what is readable and the reason in `damaged`."""
    root = Path(root) if root is not None else default_runs_root()
    try:
        folders = [p for p in root.iterdir() if (p / CONFIG_FILE).is_file()]
    except OSError:
        return []
    runs = []
    for folder in folders:
        try:
            runs.append(_run_info(folder))
        except OSError:
            continue  # deleted or made unreadable while we looked
    runs.sort(key=lambda r: r.created, reverse=True)
    return runs


def _run_info(folder: Path) -> RunInfo:
    record = read_run(folder)
    problems = list(record.problems)
    try:
        config = read_config(folder)
        if config.problem:
            problems.append(config.problem)
    except RunError as exc:
        config = RunConfig({}, None, str(exc))
        problems.append(str(exc))
    dataset = config.config.data.dataset if config.config else config.get("data", "dataset")
    epochs = config.config.train.epochs if config.config else config.get("train", "epochs")
    status, holder = record.status or "unknown", ""
    if status == "running":
        holder = lock_holder(folder)
        status = "running" if holder else "interrupted"
    return RunInfo(
        name=record.name or folder.name,
        path=str(folder),
        created=record.created if math.isfinite(record.created) else folder.stat().st_mtime,
        dataset=dataset if isinstance(dataset, str) else "?",
        status=status,
        best_acc=record.best_acc,
        selected_on=record.selected_on,
        test_acc=record.test_acc,
        epochs_done=record.epochs_done,
        epochs=epochs if _ok(_int, epochs) else 0,
        message=record.message,
        holder=holder,
        damaged="; ".join(problems),
    )


def rename_run(run_dir: Path, new_name: str) -> None:
    """Change the name shown for a run; the folder keeps its name so open files stay valid."""
    new_name = new_name.strip()
    if not new_name:
        raise RunError("A run needs a name that is not empty.")
    _require_run(run_dir)
    write_run(run_dir, name=new_name)


def delete_run(run_dir: Path) -> None:
    """Delete a run folder, and only a run folder, and never one that a process is training."""
    _require_run(run_dir)
    holder = lock_holder(run_dir)
    if holder:
        raise RunError(f"{run_dir} is being trained by {holder}; stop that run before deleting it.")
    shutil.rmtree(run_dir)


def _require_run(run_dir: Path) -> None:
    if not (Path(run_dir) / CONFIG_FILE).is_file():
        raise RunError(f"{run_dir} is not a run folder (it has no {CONFIG_FILE}).")
