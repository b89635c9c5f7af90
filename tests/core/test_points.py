"""Point cloud files (core/points.py): meshes and point lists in their real formats, and one sentence per bad file."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from perceiver_gui.core.points import PointsError, point_files, read_points


def _box(tmp_path, name: str, **export) -> str:
    mesh = trimesh.creation.box(extents=(4.0, 2.0, 1.0))
    mesh.apply_translation((10.0, -5.0, 3.0))  # far off the origin and not unit-sized: normalising must fix both
    path = tmp_path / name
    mesh.export(path, **export)
    return path


@pytest.mark.parametrize(("name", "export"), [
    ("box.ply", {}), ("box_ascii.ply", {"encoding": "ascii"}), ("box.off", {}), ("box.obj", {}), ("box.stl", {}),
])
def test_each_mesh_format_is_sampled_on_its_surface_and_normalised(tmp_path, name, export):
    path = _box(tmp_path, name, **export)
    if name == "box_ascii.ply":
        assert path.read_bytes().startswith(b"ply\nformat ascii")
    if name == "box.ply":
        assert b"binary_little_endian" in path.read_bytes()[:200]
    points = read_points(path, 500)
    assert points.shape == (500, 3) and points.dtype == np.float32
    assert np.allclose(points.mean(0), 0.0, atol=1e-5)
    assert np.isclose(np.linalg.norm(points, axis=1).max(), 1.0)
    # On the surface of a 4 × 2 × 1 box: every point has one coordinate at the box's half-extent (after
    # scaling by the farthest point), so the cloud is the box's skin and not its inside.
    raw = (points - points.min(0)) / (points.max(0) - points.min(0))  # each axis 0..1
    on_a_face = (np.isclose(raw, 0.0, atol=1e-4) | np.isclose(raw, 1.0, atol=1e-4)).any(axis=1)
    assert on_a_face.all()


def test_the_same_file_gives_the_same_points_every_time(tmp_path):
    path = _box(tmp_path, "box.off")
    assert np.array_equal(read_points(path, 256), read_points(path, 256))
    assert not np.array_equal(read_points(path, 256), read_points(path, 256, seed=1))


def test_point_lists_are_subsampled_or_padded_to_num_points(tmp_path):
    rng = np.random.default_rng(0)
    cloud = rng.normal(size=(300, 3)) * 50.0 + 7.0
    xyz = tmp_path / "scan.xyz"
    xyz.write_text("# x y z nx ny nz\n" + "\n".join(" ".join(f"{v:.6f}" for v in (*p, 0, 0, 1)) for p in cloud))
    many = read_points(xyz, 100)
    assert many.shape == (100, 3)
    assert np.isclose(np.linalg.norm(many, axis=1).max(), 1.0)
    few = read_points(xyz, 1000)
    assert few.shape == (1000, 3)
    assert len(np.unique(few, axis=0)) == 300  # every point kept, some repeated: no invented points
    csv = tmp_path / "scan.txt"
    csv.write_text("\n".join(",".join(f"{v:.6f}" for v in p) for p in cloud))
    assert np.allclose(read_points(csv, 1000), few, atol=1e-5)  # commas read as spaces, same points
    npy = tmp_path / "scan.npy"
    np.save(npy, cloud.astype(np.float32))
    assert read_points(npy, 300).shape == (300, 3)


def test_a_ply_of_vertices_alone_is_read_as_a_point_cloud(tmp_path):
    path = tmp_path / "scan.ply"
    trimesh.PointCloud(np.random.default_rng(1).normal(size=(50, 3))).export(path)
    assert read_points(path, 64).shape == (64, 3)


@pytest.mark.parametrize(("name", "content", "words"), [
    ("flat.off", "OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n", "is a mesh with no faces"),
    ("flat.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\n", "is a mesh with no faces"),
    ("empty.xyz", "# nothing\n\n", "holds no points"),
    ("ragged.xyz", "0 0 0\n1 2 3\n4 5\n", "Line 3 of ragged.xyz has 2 values and the lines before it 3"),
    ("nan.xyz", "0 0 0\n1 nan 3\n4 5 6\n", "NaN or infinite value in point 2"),
    ("nan.obj", "v 0 0 nan\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "has vertices that are NaN or infinite"),
    ("words.txt", "0 0 0\nup down left\n", "Line 2 of words.txt holds something other than numbers"),
    ("broken.ply", "this is no ply at all", "broken.ply can't be read as a mesh"),
    ("broken.off", "OFF\n3 1\n0 0\n", "broken.off can't be read as a mesh"),
    ("dot.xyz", "1 1 1\n1 1 1\n", "are at one place"),
])
def test_bad_files_get_one_sentence_naming_them(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(PointsError) as caught:
        read_points(path, 32)
    message = str(caught.value)
    assert words in message
    assert name in message and message.count(". ") == 0 and "\n" not in message


def test_an_npy_that_is_not_a_point_list_and_a_folder_are_refused(tmp_path):
    flat = tmp_path / "flat.npy"
    np.save(flat, np.zeros(10))
    with pytest.raises(PointsError, match=r"flat\.npy holds an array of shape \(10,\)"):
        read_points(flat, 8)
    (tmp_path / "folder.xyz").mkdir()
    with pytest.raises(PointsError, match="not a regular file"):
        read_points(tmp_path / "folder.xyz", 8)
    with pytest.raises(PointsError, match="not a mesh or point file"):
        read_points(tmp_path / "photo.png", 8)


def test_point_files_lists_every_supported_file_and_skips_hidden_ones(tmp_path):
    for name in ("a/x.ply", "a/y.XYZ", "b/c/z.npy", "a/.hidden.off", ".git/w.obj", "a/notes.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    assert [p.relative_to(tmp_path).as_posix() for p in point_files(tmp_path)] == ["a/x.ply", "a/y.XYZ", "b/c/z.npy"]
