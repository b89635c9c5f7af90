"""Time series files: the one reader of the formats the "sequences" dataset and prediction accept.

- `.ts`, the UCR/UEA archive's format: `@` header lines (`@problemName`, `@timeStamps`, `@missing`,
  `@univariate`, `@dimensions`, `@equalLength`, `@seriesLength`, `@classLabel true <labels>`), then
  `@data` and one series a line: its channels separated by `:`, values by `,`, the class label last.
  `#` lines are comments; missing header lines are tolerated (the rows tell).
- `.csv` / `.tsv`: one univariate series a row, of equal length, with a label column: the one
  `label_column` names ("first", "last", or a header name), else the one named label, class or target
  in a header row, else the first (the UCR archive's own layout).
- `.npy` pairs: X (N, L) or (N, C, L) numbers, and the labels in the file named like it with X
  replaced by y (X.npy -> y.npy, X_train.npy -> y_train.npy). Trailing NaNs mark the end of a shorter
  series. Read with allow_pickle=False: nothing is ever unpickled.

A missing value (`?`, NaN or an infinity) inside a series is refused with its line: filling it in
would be a guess the model then learns from, so the user decides. Every refusal is one `SeriesError`
sentence naming the file and the line.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perceiver_gui.core.reading import SERIES_SUFFIXES

__all__ = ["SUFFIXES", "SeriesError", "SeriesSet", "class_order", "pad", "read_series"]

SUFFIXES = SERIES_SUFFIXES
LABEL_NAMES = ("label", "class", "target")  # a CSV header column with one of these names holds the labels
MAX_TS_HEADER_LINES = 1000  # a header longer than this is not a header: the file is not a .ts file


class SeriesError(ValueError):
    """A series file that cannot be used; the message is one sentence saying where and what to do."""


@dataclass(frozen=True, slots=True)
class SeriesSet:
    """The series of one file, as read: each its own length."""

    values: tuple[np.ndarray, ...]  # per series float32 (C, length), every value finite
    labels: tuple[str, ...] | None  # per series, as written; None when the file has none
    declared: tuple[str, ...] = ()  # the class labels the file's header lists (.ts @classLabel), in its order

    @property
    def channels(self) -> int:
        return int(self.values[0].shape[0])

    @property
    def longest(self) -> int:
        return max(int(v.shape[1]) for v in self.values)


def read_series(path: str | Path, *, label_column: str = "", labelled: bool = True) -> SeriesSet:
    """The series in `path` (.ts, .csv, .tsv or .npy). With labelled=False a file without labels is
    accepted too (prediction); with labelled=True every series needs one."""
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise SeriesError(f"{path.name} is not a series file; use a .ts, .csv, .tsv or .npy file.")
    if not path.is_file():
        raise SeriesError(f"The series file {path} does not exist; choose a .ts, .csv or .npy file.")
    if suffix == ".npy":
        found = _read_npy(path, labelled)
    else:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise SeriesError(f"{path.name} is not UTF-8 text; save it as UTF-8 (or use .npy files).") from None
        except OSError as exc:
            raise SeriesError(f"Can't read {path}: {exc.strerror or exc}.") from None
        found = _read_ts(path, text, labelled) if suffix == ".ts" else _read_csv(path, text, label_column)
    if not found.values:
        raise SeriesError(f"{path.name} holds no series; it needs one series a row.")
    if labelled and found.labels is None:
        raise SeriesError(f"{path.name} has no class labels; training needs a label with every series.")
    return found


def pad(values: tuple[np.ndarray, ...] | list[np.ndarray], length: int) -> np.ndarray:
    """float32 (N, C, length): each series from the start, NaN after its end (the padding mask's mark)."""
    out = np.full((len(values), values[0].shape[0], length), np.nan, dtype=np.float32)
    for i, v in enumerate(values):
        out[i, :, :v.shape[1]] = v
    return out


def class_order(labels: tuple[str, ...] | list[str]) -> list[str]:
    """The classes found, sorted as numbers when every one is a number (2 before 10), else as text."""
    found = set(labels)
    try:
        return sorted(found, key=float)
    except ValueError:
        return sorted(found)


# -- .ts -------------------------------------------------------------------------------------------
def _read_ts(path: Path, text: str, labelled: bool) -> SeriesSet:
    header: dict[str, str] = {}
    lines = text.splitlines()
    start = None
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("@"):
            raise SeriesError(f"Line {number} of {path.name} comes before @data; a .ts file's series follow an "
                              f"@data line.")
        key, _, rest = line[1:].partition(" ")
        if key.lower() == "data":
            start = number
            break
        header[key.lower()] = rest.strip()
        if len(header) > MAX_TS_HEADER_LINES:
            break
    if start is None:
        raise SeriesError(f"{path.name} has no @data line; it is not a .ts file (or it holds no series).")
    if _true(header.get("timestamps", "false")):
        raise SeriesError(f"{path.name} has time stamps (@timeStamps true), which Perceiver GUI does not read; "
                          f"export it with evenly spaced values and @timeStamps false.")
    class_words = header.get("classlabel", "").split()
    has_labels = not class_words or _true(class_words[0])
    declared = tuple(class_words[1:]) if class_words and has_labels else ()
    dimensions = None
    if "dimensions" in header:
        try:
            dimensions = int(header["dimensions"])
        except ValueError:
            raise SeriesError(f"{path.name} has @dimensions {header['dimensions']!r}, which is not a whole "
                              f"number; write the number of channels.") from None
    elif _true(header.get("univariate", "false")):
        dimensions = 1

    values: list[np.ndarray] = []
    labels: list[str] = []
    for number, raw in enumerate(lines[start:], start + 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if has_labels:
            if len(parts) < 2:
                raise SeriesError(f"Line {number} of {path.name} has no class label; each row ends with "
                                  f":<label>.")
            label = parts.pop().strip()
            if declared and label not in declared:
                raise SeriesError(f"Line {number} of {path.name} has the label {label!r}, which @classLabel does "
                                  f"not list ({' '.join(declared)}); fix the label or the header.")
            labels.append(label)
        channels = [_numbers(p.split(","), path, number, c + 1) for c, p in enumerate(parts)]
        if dimensions is not None and len(channels) != dimensions:
            raise SeriesError(f"Line {number} of {path.name} has {len(channels)} channel"
                              f"{'s' if len(channels) != 1 else ''} but @dimensions says {dimensions}; fix the "
                              f"header or the row.")
        if values and len(channels) != values[0].shape[0]:
            raise SeriesError(f"Line {number} of {path.name} has {len(channels)} channel"
                              f"{'s' if len(channels) != 1 else ''} where the first series has {values[0].shape[0]}; "
                              f"every series needs the same channels.")
        if len({len(c) for c in channels}) != 1:
            raise SeriesError(f"The channels of line {number} of {path.name} have different lengths "
                              f"({', '.join(str(len(c)) for c in channels)}); a series' channels must be "
                              f"equally long.")
        values.append(np.stack(channels).astype(np.float32))
    return SeriesSet(tuple(values), tuple(labels) if has_labels and labelled else None, declared)


def _true(word: str) -> bool:
    return word.strip().lower() == "true"


def _numbers(cells: list[str], path: Path, line: int, channel: int | None) -> np.ndarray:
    """The cells as float64, or one sentence naming the first cell that is not a finite number."""
    where = f"line {line} of {path.name}" + (f" (channel {channel})" if channel is not None else "")
    if cells == [""] or not cells:
        raise SeriesError(f"{where[0].upper()}{where[1:]} holds no values.")
    try:
        out = np.asarray([c.strip() for c in cells], dtype=np.float64)
    except ValueError:
        out = None
    if out is None or not np.isfinite(out).all():
        for position, cell in enumerate(cells, 1):
            try:
                ok = math.isfinite(float(cell))
            except ValueError:
                ok = False
            if not ok:
                what = ("a missing value" if cell.strip() in ("?", "", "nan", "NaN")
                        else f"{cell.strip()[:20]!r}, not a number")
                raise SeriesError(f"Value {position} of {where} is {what}; fill it in or remove the series "
                                  f"(Perceiver GUI does not guess missing values).")
    return out


# -- .csv / .tsv -----------------------------------------------------------------------------------
def _read_csv(path: Path, text: str, label_column: str) -> SeriesSet:
    delimiter = "\t" if path.suffix.lower() == ".tsv" or ("\t" in text[:4096] and "," not in text[:4096]) else ","
    rows = [(number, [c.strip() for c in row]) for number, row in enumerate(csv.reader(text.splitlines(),
                                                                                       delimiter=delimiter), 1)]
    rows = [(n, _trim(r)) for n, r in rows if any(r) and not r[0].startswith("#")]
    if not rows:
        raise SeriesError(f"{path.name} holds no series; it needs one series a row.")
    names: list[str] | None = None
    if sum(not _is_number(cell) for cell in rows[0][1]) > 1:  # a series row has one text cell at most: its label
        names = rows[0][1]
        rows = rows[1:]
    width = len(names) if names else len(rows[0][1]) if rows else 0
    column = _label_index(path, names, width, label_column)
    values: list[np.ndarray] = []
    labels: list[str] = []
    for number, row in rows:
        if len(row) != width:
            raise SeriesError(f"Line {number} of {path.name} has {len(row)} cells where line {rows[0][0]} has "
                              f"{width}; every row must be equally long (use a .ts file for series of different "
                              f"lengths).")
        cells = list(row)
        labels.append(cells.pop(column))
        values.append(_numbers(cells, path, number, None).astype(np.float32)[None])
    return SeriesSet(tuple(values), tuple(labels))


def _trim(row: list[str]) -> list[str]:
    while row and row[-1] == "":
        row = row[:-1]  # a trailing comma is not a value
    return row


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _label_index(path: Path, names: list[str] | None, width: int, label_column: str) -> int:
    choice = label_column.strip()
    if not choice and names:
        choice = next((n for n in names if n.lower() in LABEL_NAMES), "")
    if choice.lower() in ("", "first"):
        return 0
    if choice.lower() == "last":
        return width - 1
    if names and choice in names:
        return names.index(choice)
    raise SeriesError(f"{path.name} has no column named {choice!r}; set data.label_column to first, last or one of "
                      f"its header's names.")


# -- .npy ------------------------------------------------------------------------------------------
def _read_npy(path: Path, labelled: bool) -> SeriesSet:
    x = _load_array(path)
    if x.dtype.kind not in "fiu" or x.ndim not in (2, 3):
        raise SeriesError(f"{path.name} holds a {x.ndim}-d {x.dtype} array; it needs numbers shaped (series, "
                          f"length) or (series, channels, length).")
    x = x.astype(np.float32)
    if x.ndim == 2:
        x = x[:, None, :]
    values = []
    for i, series in enumerate(x):
        real = ~np.isnan(series).all(axis=0)  # trailing all-NaN steps end a shorter series
        length = int(real.nonzero()[0].max()) + 1 if real.any() else 0
        kept = series[:, :length]
        if length == 0 or not np.isfinite(kept).all():
            raise SeriesError(f"Series {i + 1} of {path.name} has a missing value (NaN or infinity) inside it; fill "
                              f"it in or remove the series (only trailing NaNs may end a shorter series).")
        values.append(np.ascontiguousarray(kept))
    labels = None
    y_path = path.with_name(re.sub(r"X", "y", path.name, count=1)) if "X" in path.name else None
    if y_path is not None and y_path.is_file():
        y = _load_array(y_path)
        if y.ndim != 1 or len(y) != len(values) or y.dtype.kind not in "iuUb":
            raise SeriesError(f"{y_path.name} must hold one whole-number or text label per series of "
                              f"{path.name} ({len(values)}); it holds a {y.dtype} array shaped {y.shape}.")
        labels = tuple(str(v) for v in y.tolist())
    elif labelled:
        raise SeriesError(f"The labels of {path.name} are not beside it; save them as "
                          f"{y_path.name if y_path else 'y.npy (with the series in X.npy)'}.")
    return SeriesSet(tuple(values), labels)


def _load_array(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except ValueError:
        raise SeriesError(f"{path.name} holds Python objects, which are never unpickled; save plain numbers "
                          f"(or text labels) with numpy.save.") from None
    except (OSError, EOFError) as exc:
        raise SeriesError(f"{path.name} is not a readable .npy file ({exc}); save it with numpy.save.") from None
