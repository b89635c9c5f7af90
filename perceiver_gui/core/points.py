"""Point cloud files: the one reader of the formats the "points_folder" dataset and prediction accept.

- Meshes, `.ply` (ASCII or binary), `.off`, `.obj` and `.stl`, read with trimesh and sampled to
  `num_points` points on their surface (uniform by area, seeded: the same file always gives the same
  points). A `.ply` of vertices alone is a scan's point cloud and is read as a point list; any other
  mesh without faces has no surface to sample and is refused.
- Point lists, `.xyz` / `.txt` (one point a line, x y z and then anything, e.g. normals or colours,
  separated by spaces or commas; `#` lines are comments) and `.npy` (an (N, 3+) array, read with
  allow_pickle=False). A list with more points than `num_points` is subsampled, one with fewer is padded
  by repeating some of its points (a set does not change by repeating a member), both seeded.

Every cloud is then normalised as the model expects it: centred on its centroid and scaled into the unit
sphere, so that its coordinates are in [-1, 1], the range of the Fourier position encoding. A user's
file in millimetres or metres gives the same input. Every refusal is one `PointsError` sentence naming
the file.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from perceiver_gui.core.images import image_files
from perceiver_gui.core.reading import MESH_SUFFIXES, POINT_LIST_SUFFIXES, POINT_SUFFIXES, check_regular

__all__ = ["LIST_SUFFIXES", "MESH_SUFFIXES", "SUFFIXES", "PointsError", "normalize_cloud", "point_files",
           "read_points"]

LIST_SUFFIXES = POINT_LIST_SUFFIXES
SUFFIXES = POINT_SUFFIXES
_SEPARATORS = re.compile(r"[,\s;]+")


class PointsError(ValueError):
    """A point or mesh file that cannot be used; the message is one sentence saying which and what to do."""


def read_points(path: str | Path, num_points: int, *, seed: int = 0) -> np.ndarray:
    """float32 (num_points, 3): the points of the mesh or point list in `path`, normalised (`normalize_cloud`)."""
    path = Path(path).expanduser()
    if num_points < 1:
        raise ValueError(f"num_points must be at least 1, not {num_points}")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise PointsError(f"{path.name} is not a mesh or point file; use {', '.join(SUFFIXES)}.")
    try:
        check_regular(path)  # before trimesh or numpy open it: a FIFO would block them forever
    except FileNotFoundError:
        raise PointsError(f"{path.name} does not exist; check its name and folder.") from None
    except IsADirectoryError:
        raise PointsError(f"{path.name} is a folder, not a mesh or point file.") from None
    except OSError as exc:
        raise PointsError(f"{path.name} can't be read: {exc.strerror or exc}.") from None
    rng = np.random.default_rng(seed)
    if suffix in MESH_SUFFIXES:
        points = _sample_mesh(path, num_points, rng)
    else:
        points = _resize(_read_list(path), num_points, rng)
    return normalize_cloud(points, path.name)


def normalize_cloud(points: np.ndarray, name: str = "the cloud") -> np.ndarray:
    """float32 (P, 3) centred on their mean and scaled so the farthest point is at distance 1."""
    points = np.asarray(points, dtype=np.float64)
    centred = points - points.mean(axis=0)
    radius = float(np.sqrt((centred**2).sum(axis=1)).max())
    if not radius > 0:
        raise PointsError(f"All points of {name} are at one place, so it has no shape to learn; check the file.")
    return (centred / radius).astype(np.float32)


def point_files(folder: str | Path) -> list[Path]:
    """Mesh and point files under `folder`, sorted, by images.image_files' rule (nothing hidden on the way)."""
    return image_files(Path(folder), suffixes=SUFFIXES)


# -- meshes ----------------------------------------------------------------------------------
def _sample_mesh(path: Path, num_points: int, rng: np.random.Generator) -> np.ndarray:
    import trimesh  # ~0.3 s to import: only when a mesh is read, not when the app starts

    try:
        # process=False: trimesh would otherwise drop NaN vertices (and their faces) without a word.
        loaded = trimesh.load(str(path), process=False)
    except Exception as exc:  # trimesh raises ValueError, KeyError, IndexError … for a damaged file
        raise PointsError(f"{path.name} can't be read as a mesh ({_clause(exc)}); check the file or export it "
                          f"again.") from None
    if isinstance(loaded, trimesh.Scene):
        meshes = [g for g in loaded.geometry.values() if isinstance(g, trimesh.Trimesh)]
        loaded = trimesh.util.concatenate(meshes) if meshes else trimesh.PointCloud(np.zeros((0, 3)))
    vertices = np.asarray(loaded.vertices, dtype=np.float64)
    if len(vertices) == 0:
        raise PointsError(f"{path.name} holds no vertices; check the file or export it again.")
    if not np.isfinite(vertices).all():
        raise PointsError(f"{path.name} has vertices that are NaN or infinite; repair the mesh or export it again.")
    faces = np.asarray(getattr(loaded, "faces", np.zeros((0, 3))))
    if len(faces) == 0:
        if path.suffix.lower() == ".ply":  # a scanner's point cloud: vertices are the points
            return _resize(vertices, num_points, rng)
        raise PointsError(f"{path.name} is a mesh with no faces, so it has no surface to sample; export it "
                          f"with its faces, or save its points as a .xyz list.")
    if not float(loaded.area) > 0:
        raise PointsError(f"{path.name} has faces of no area, so it has no surface to sample; repair the mesh.")
    points, _ = trimesh.sample.sample_surface(loaded, num_points, seed=rng)
    return np.asarray(points)


# -- point lists -----------------------------------------------------------------------------
def _read_list(path: Path) -> np.ndarray:
    """float64 (N, 3): the x, y, z columns of a .xyz/.txt/.npy point list, every value finite."""
    if path.suffix.lower() == ".npy":
        points = _load_npy(path)
    else:
        points = _parse_text(path)
    if len(points) == 0:
        raise PointsError(f"{path.name} holds no points; a point list needs one point (x y z) a line.")
    if not np.isfinite(points).all():
        row = int(np.nonzero(~np.isfinite(points).all(axis=1))[0][0]) + 1
        raise PointsError(f"{path.name} has a NaN or infinite value in point {row}; remove or repair that point.")
    return points


def _load_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise PointsError(f"{path.name} can't be read as a NumPy array ({_clause(exc)}).") from None
    if array.ndim != 2 or array.shape[1] < 3 or not np.issubdtype(array.dtype, np.number):
        raise PointsError(f"{path.name} holds an array of shape {array.shape} ({array.dtype}); a point list is "
                          f"numbers of shape (points, 3), x y z in the first three columns.")
    return array[:, :3].astype(np.float64)


def _parse_text(path: Path) -> np.ndarray:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PointsError(f"{path.name} is not a text file of points; a .xyz or .txt list is x y z numbers, "
                          f"one point a line.") from None
    except OSError as exc:
        raise PointsError(f"{path.name} can't be read: {exc.strerror or exc}.") from None
    rows: list[list[float]] = []
    width = None
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        cells = _SEPARATORS.split(line)
        if width is None:
            width = len(cells)
            if width < 3:
                raise PointsError(f"Line {number} of {path.name} has {width} value(s); each point needs x, y and z.")
        elif len(cells) != width:
            raise PointsError(f"Line {number} of {path.name} has {len(cells)} values and the lines before it "
                              f"{width}; give every point the same columns.")
        try:
            rows.append([float(cell) for cell in cells[:3]])
        except ValueError:
            raise PointsError(f"Line {number} of {path.name} holds something other than numbers "
                              f"({line[:40]!r}); a point is x y z numbers.") from None
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def _resize(points: np.ndarray, num_points: int, rng: np.random.Generator) -> np.ndarray:
    """Exactly num_points of them: a random subset, or all of them and random repeats."""
    n = len(points)
    if n >= num_points:
        return points[np.sort(rng.choice(n, num_points, replace=False))]
    return np.concatenate([points, points[rng.integers(0, n, num_points - n)]])


def _clause(exc: BaseException) -> str:
    text = str(exc).strip().rstrip(".") or type(exc).__name__
    return text[:120]
