"""Run folders: where they live, their status, their metrics, and the list of past runs.

A run folder holds config.json (the full config), run.json (name, status, summary),
metrics.jsonl (every logged step and epoch, appended as it goes), model.safetensors (the best
or final model) and resume.safetensors (everything needed to continue).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perceiver_gui.core.files import atomic_write_json

__all__ = [
    "CONFIG_FILE",
    "METRICS_FILE",
    "MODEL_FILE",
    "RESUME_FILE",
    "RUN_FILE",
    "CompareRow",
    "MetricsSummary",
    "RunError",
    "RunInfo",
    "app_home",
    "compare_configs",
    "default_runs_root",
    "delete_run",
    "flatten_config",
    "list_runs",
    "new_run_dir",
    "read_config",
    "read_metrics",
    "read_run",
    "rename_run",
    "summarize_metrics",
    "write_run",
]

CONFIG_FILE = "config.json"
RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
MODEL_FILE = "model.safetensors"
RESUME_FILE = "resume.safetensors"


class RunError(RuntimeError):
    """A run folder that cannot be used as asked."""


@dataclass(frozen=True, slots=True)
class RunInfo:
    name: str
    path: str
    created: float  # seconds since the epoch
    dataset: str
    status: str  # running, completed, stopped, failed
    best_acc: float  # nan until an epoch finished
    epochs_done: int
    epochs: int
    message: str


def app_home() -> Path:
    """The app's data folder; PERCEIVER_GUI_HOME overrides it (tests and portable installs)."""
    override = os.environ.get("PERCEIVER_GUI_HOME")
    if override:
        return Path(override)
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


def write_run(run_dir: Path, **fields: Any) -> None:
    """Update run.json with these fields (atomically)."""
    record = read_run(run_dir)
    record.update(fields)
    record["updated"] = time.time()
    atomic_write_json(Path(run_dir) / RUN_FILE, _finite(record))


def read_run(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((Path(run_dir) / RUN_FILE).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Every record of metrics.jsonl; a torn last line (the process was killed mid-write) is skipped."""
    records = []
    try:
        with open(Path(run_dir) / METRICS_FILE, encoding="utf-8") as fh:
            for line in fh:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    records.append(record)
    except OSError:
        pass
    return records


def read_config(run_dir: Path) -> dict[str, Any]:
    """A run's config.json as plain data (not validated: an older run may hold settings this version lacks)."""
    path = Path(run_dir) / CONFIG_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RunError(f"Could not read the settings of this run ({path}): {exc.strerror or exc}.") from exc
    except ValueError as exc:
        raise RunError(f"The settings file of this run is damaged ({path} is not valid JSON).") from exc
    if not isinstance(data, dict):
        raise RunError(f"The settings file of this run is damaged ({path} does not hold a table of settings).")
    return data


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
    best_acc: float  # the highest finite test accuracy; nan until an epoch has one
    best_epoch: int  # the first epoch that reached it; 0 until then
    epochs_done: int  # epochs with a logged result


def summarize_metrics(records: Iterable[Mapping[str, Any]]) -> MetricsSummary:
    """Best test accuracy, its epoch and the epochs done, from metrics.jsonl records. Non-finite and
    missing accuracies (JSON null) are skipped; records of another shape are ignored."""
    best_acc, best_epoch, epochs = math.nan, 0, set()
    for r in records:
        if r.get("type") != "epoch" or not isinstance(r.get("epoch"), int) or isinstance(r.get("epoch"), bool):
            continue
        epochs.add(r["epoch"])
        acc = r.get("test_acc")
        if isinstance(acc, int | float) and not isinstance(acc, bool) and math.isfinite(acc):
            if not acc <= best_acc:  # also true while best_acc is nan
                best_acc, best_epoch = float(acc), r["epoch"]
    return MetricsSummary(best_acc=best_acc, best_epoch=best_epoch, epochs_done=len(epochs))


def list_runs(root: Path | None = None) -> list[RunInfo]:
    """Past runs under root, newest first. Folders without a config are not runs and are ignored."""
    root = Path(root) if root is not None else default_runs_root()
    runs = []
    try:
        folders = [p for p in root.iterdir() if (p / CONFIG_FILE).is_file()]
    except OSError:
        return []
    for folder in folders:
        record = read_run(folder)
        try:
            config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            config = {}
        best = record.get("best_acc")
        runs.append(
            RunInfo(
                name=str(record.get("name") or folder.name),
                path=str(folder),
                created=float(record.get("created") or folder.stat().st_mtime),
                dataset=str(config.get("data", {}).get("dataset", "?")),
                status=str(record.get("status", "unknown")),
                best_acc=float(best) if isinstance(best, int | float) else math.nan,
                epochs_done=int(record.get("epochs_done") or 0),
                epochs=int(config.get("train", {}).get("epochs") or 0),
                message=str(record.get("message", "")),
            )
        )
    runs.sort(key=lambda r: r.created, reverse=True)
    return runs


def rename_run(run_dir: Path, new_name: str) -> None:
    """Change the name shown for a run; the folder keeps its name so open files stay valid."""
    new_name = new_name.strip()
    if not new_name:
        raise RunError("A run needs a name that is not empty.")
    _require_run(run_dir)
    write_run(run_dir, name=new_name)


def delete_run(run_dir: Path) -> None:
    """Delete a run folder, and only a run folder."""
    _require_run(run_dir)
    shutil.rmtree(run_dir)


def _require_run(run_dir: Path) -> None:
    if not (Path(run_dir) / CONFIG_FILE).is_file():
        raise RunError(f"{run_dir} is not a run folder (it has no {CONFIG_FILE}).")


def _finite(record: dict[str, Any]) -> dict[str, Any]:
    # JSON has no NaN; an unknown accuracy is stored as null.
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
