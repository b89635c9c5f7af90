"""Atomic file writes: a temporary file in the same folder, flushed, fsynced, then renamed.

Killing the process at any instant leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["append_jsonl", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "remove_stale_temp_files"]


def atomic_write_bytes(path: str | Path, data: bytes, *, shared: bool = False) -> Path:
    """Write `data` to `path` atomically. The file is readable by its owner only (the temporary file's
    mode), or with `shared` (a file the user exports to hand on) as open() would make it: 0o666 less the umask."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if shared and os.name == "posix":
                os.fchmod(fh.fileno(), 0o666 & ~_umask())
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str, *, shared: bool = False) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), shared=shared)


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def remove_stale_temp_files(folder: str | Path) -> int:
    """Delete temporary files that a killed writer left behind in `folder` (call only while no one writes there)."""
    removed = 0
    for tmp in Path(folder).glob(".*.tmp"):
        try:
            tmp.unlink()
            removed += 1
        except OSError:
            pass
    return removed


def append_jsonl(fh, record: dict[str, Any]) -> None:
    """Append one JSON line to an open text file and flush it, so a crash loses at most this line."""
    fh.write(json.dumps(record, allow_nan=True) + "\n")
    fh.flush()


def _umask() -> int:
    """The process's umask, read without setting it (os.umask would change it for every thread meanwhile)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022  # the usual one, where /proc is not there to ask (macOS)


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable on POSIX; Windows has no directory handles to sync.
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
