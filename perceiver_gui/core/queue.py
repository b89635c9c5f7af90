"""The run queue: configs waiting to be trained one after another, kept in queue.json so it survives a
restart of the app. This module is the file's one owner: its records, its reader and its writer.

An entry is one run to come (K seeds of a config are K entries). It becomes an ordinary run folder when it
starts; the entry then keeps that folder and how the run ended. The file is rewritten atomically after
every change. The reader is tolerant: an entry that cannot be read (damaged, or settings this version
refuses) is named in `problems` and skipped, and a file that is not JSON at all is set aside, not lost.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perceiver_gui.config import Config, ConfigError
from perceiver_gui.core.files import atomic_write_json

__all__ = ["QUEUE_FILE", "STATES", "QueueEntry", "RunQueue", "queue_file", "read_queue", "write_queue"]

QUEUE_FILE = "queue.json"
FORMAT = 1
# waiting: to be run; running: started (the app quit or crashed while it ran when read back: "interrupted");
# completed, stopped, failed: how its run ended.
STATES = ("waiting", "running", "completed", "stopped", "failed", "interrupted")


def queue_file(runs_root: Path) -> Path:
    """Where the queue of this runs folder is kept: beside the runs it makes (in the app's data folder by
    default), so a portable or test runs folder has its own queue."""
    return Path(runs_root) / QUEUE_FILE


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueEntry:
    id: str  # unique in the queue
    config: Config
    added: float  # seconds since 1970
    state: str = "waiting"
    run_dir: str = ""  # its run folder once started
    message: str = ""  # how its run ended

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "config": self.config.to_dict(), "added": self.added, "state": self.state,
                "run_dir": self.run_dir, "message": self.message}


def _entry(raw: Any, where: str) -> QueueEntry:
    """An entry of the file, or ValueError with the sentence that says what is wrong with it."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where} is not a table of fields")
    for key, kind in (("id", str), ("state", str), ("run_dir", str), ("message", str)):
        if key in raw and not isinstance(raw[key], kind):
            raise ValueError(f"{where}: {key} is not text")
    if not raw.get("id"):
        raise ValueError(f"{where} has no id")
    state = raw.get("state", "waiting")
    if state not in STATES:
        raise ValueError(f"{where}: state {state!r} is not one of {', '.join(STATES)}")
    added = raw.get("added", math.nan)
    if isinstance(added, bool) or not isinstance(added, int | float):
        raise ValueError(f"{where}: added is not a time")
    if not isinstance(raw.get("config"), dict):
        raise ValueError(f"{where} has no settings")
    try:
        config = Config.from_dict(raw["config"]).check()
    except (ConfigError, TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"{where}: its settings can't be used ({str(exc).rstrip('.')})") from None
    return QueueEntry(id=raw["id"], config=config, added=float(added),
                      state="interrupted" if state == "running" else state,  # nothing runs it after a restart
                      run_dir=raw.get("run_dir", ""), message=raw.get("message", ""))


def read_queue(path: Path) -> tuple[list[QueueEntry], bool, list[str]]:
    """The entries of a queue file, whether the queue was paused, and a sentence for each entry that was
    skipped. No file is an empty queue. A file that is not a queue at all is renamed aside (…-damaged-TIME)
    so the next write does not destroy what someone may want to look at."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [], False, []
    except OSError as exc:
        return [], True, [f"The run queue {path} could not be read ({exc.strerror or exc}); it starts empty."]
    except (ValueError, RecursionError):
        raw = None
    if not isinstance(raw, dict) or not isinstance(raw.get("entries"), list):
        aside = path.with_name(f"{path.stem}-damaged-{time.strftime('%Y%m%d-%H%M%S')}{path.suffix}")
        try:
            os.replace(path, aside)
        except OSError:
            aside = path
        return [], True, [f"The run queue {path} is damaged (not a queue file); it starts empty, and the damaged "
                          f"file is kept as {aside.name}."]
    entries, problems, ids = [], [], set()
    for number, item in enumerate(raw["entries"], 1):
        try:
            entry = _entry(item, f"entry {number}")
        except ValueError as exc:
            problems.append(f"The run queue's {exc}; it was skipped.")
            continue
        if entry.id in ids:
            problems.append(f"The run queue's entry {number} repeats an earlier id; it was skipped.")
            continue
        ids.add(entry.id)
        entries.append(entry)
    paused = raw.get("paused", False)
    return entries, paused if isinstance(paused, bool) else True, problems


def write_queue(path: Path, entries: list[QueueEntry], paused: bool) -> None:
    """Write the queue atomically (its folder is made if need be)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"format": FORMAT, "paused": paused, "entries": [e.to_json() for e in entries]})


class RunQueue:
    """The queue of one runs folder, read when made and written after every change."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        entries, self.paused, self.problems = read_queue(self.path)
        self.entries: list[QueueEntry] = entries

    # -- what it holds ----------------------------------------------------------------------------
    def waiting(self) -> list[QueueEntry]:
        return [e for e in self.entries if e.state == "waiting"]

    def next_waiting(self) -> QueueEntry | None:
        return next(iter(self.waiting()), None)

    def get(self, entry_id: str) -> QueueEntry | None:
        return next((e for e in self.entries if e.id == entry_id), None)

    # -- changes, each saved ----------------------------------------------------------------------
    def add(self, configs: list[Config]) -> list[QueueEntry]:
        now = time.time()
        new = [QueueEntry(id=uuid.uuid4().hex, config=c, added=now) for c in configs]
        self.entries.extend(new)
        self.save()
        return new

    def remove(self, entry_id: str) -> None:
        self.entries = [e for e in self.entries if e.id != entry_id]
        self.save()

    def clear_finished(self) -> None:
        """Drop the entries whose run has ended (they stay in the Runs tab)."""
        self.entries = [e for e in self.entries if e.state in ("waiting", "running")]
        self.save()

    def move(self, entry_id: str, by: int) -> None:
        """Move an entry `by` places (negative: earlier), within the queue's ends."""
        index = next((i for i, e in enumerate(self.entries) if e.id == entry_id), None)
        if index is None:
            return
        to = max(0, min(len(self.entries) - 1, index + by))
        self.entries.insert(to, self.entries.pop(index))
        self.save()

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        self.save()

    def update(self, entry_id: str, **fields: Any) -> None:
        """Change an entry's state, run folder or message."""
        if fields.get("state", "waiting") not in STATES:
            raise ValueError(f"Unknown queue state {fields['state']!r}.")
        self.entries = [dataclasses.replace(e, **fields) if e.id == entry_id else e for e in self.entries]
        self.save()

    def save(self) -> None:
        write_queue(self.path, self.entries, self.paused)
