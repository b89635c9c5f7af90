"""Opening a user's file for reading, only when it is a regular file; which files are images, sounds, series
and point clouds.

A named pipe (FIFO) makes `open` wait until some other program writes to it, a device such as /dev/zero
never ends, and a socket cannot be read at all, so none of them is ever opened: the path is checked with
`stat` first, and the opened file again with `fstat`.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

__all__ = ["IMAGE_SUFFIXES", "MESH_SUFFIXES", "POINT_LIST_SUFFIXES", "POINT_SUFFIXES", "SERIES_SUFFIXES",
           "SOUND_SUFFIXES", "NotARegularFile", "check_regular", "open_regular"]

# The files read as images (by core/images.py, which Pillow decodes), wherever a file is chosen or found.
# Here, with nothing but the standard library, so the window offers them at launch without loading numpy.
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".dib", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm",
     ".pbm", ".pnm", ".tga", ".ico", ".jp2", ".j2k", ".pcx", ".sgi", ".im", ".dds", ".psd"}
)
# The other kinds' files, read by core/audio.py (soundfile), core/series.py and core/points.py (trimesh).
SOUND_SUFFIXES = (".wav", ".flac", ".ogg")
SERIES_SUFFIXES = (".ts", ".csv", ".tsv", ".npy")
MESH_SUFFIXES = (".ply", ".off", ".obj", ".stl")
POINT_LIST_SUFFIXES = (".xyz", ".txt", ".npy")
POINT_SUFFIXES = MESH_SUFFIXES + POINT_LIST_SUFFIXES


class NotARegularFile(OSError):
    """A path that is a FIFO, device or socket; `strerror` says which ("it is a named pipe (FIFO), ...")."""


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"


def _refuse(mode: int, path: str | Path) -> NotARegularFile:
    return NotARegularFile(errno.EINVAL, f"it is {_kind(mode)}, not a regular file", str(path))


def check_regular(path: str | Path) -> None:
    """NotARegularFile unless `path` is a regular file, by `stat` alone, for a library that opens the path
    itself (Pillow). IsADirectoryError for a folder; other OSErrors (missing, no permission) pass through."""
    mode = os.stat(path).st_mode
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "Is a directory", str(path))
    if not stat.S_ISREG(mode):
        raise _refuse(mode, path)


def open_regular(path: str | Path) -> BinaryIO:
    """`open(path, "rb")` for a regular file; NotARegularFile (an OSError) for anything else but a folder,
    which raises IsADirectoryError as `open` does. Other OSErrors (missing, no permission) pass through.

    A path swapped for a FIFO between the check and the open would still block: that needs someone racing
    their own file, and a plain blocking descriptor is what every reader here expects."""
    check_regular(path)
    fh = open(path, "rb")  # noqa: SIM115 - handed to the caller, who closes it
    try:
        mode = os.fstat(fh.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise _refuse(mode, path)
    except BaseException:
        fh.close()
        raise
    return fh
