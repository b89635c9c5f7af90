"""Datasets from real on-disk formats written in tmp_path, downloads without a network, and batch ops."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from perceiver_gui.config import DataConfig
from perceiver_gui.core import data
from perceiver_gui.core.data import (
    Dataset,
    DatasetError,
    augment,
    default_data_root,
    load_dataset,
    normalize,
    open_dataset,
)
from perceiver_gui.core.events import DownloadProgress, Log
from perceiver_gui.core.images import open_image, to_uint8_tensor
from tests.core.data_fixtures import (
    CIFAR10_CLASSES,
    make_image_folder,
    make_mnist,
    make_tiny_cifar10,
    make_tiny_cifar100,
    write_hostile_pickle,
)


def run(cfg: DataConfig) -> tuple[list, Dataset]:
    """Drive open_dataset the way the training loop does (`yield from`), keeping the events."""
    events: list = []

    def loop():
        dataset = yield from open_dataset(cfg)
        return dataset

    gen = loop()
    while True:
        try:
            events.append(next(gen))
        except StopIteration as done:
            return events, done.value


@pytest.fixture
def no_network(monkeypatch):
    """Fails the test if anything tries to open a URL."""
    calls = []

    def refuse(url, *args, **kwargs):
        calls.append(url)
        raise AssertionError(f"tried to download {url}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return calls


def numpy_mean_std(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scaled = x.astype(np.float64) / 255.0
    return scaled.mean(axis=(0, 2, 3)), scaled.std(axis=(0, 2, 3))


# -- CIFAR -----------------------------------------------------------------------------------
def test_tiny_cifar10_in_its_pickle_format_loads_exactly(tmp_path, no_network):
    written = make_tiny_cifar10(tmp_path, n_train=50, n_test=10)
    events, ds = run(DataConfig(val_fraction=0.0, dataset="cifar10", root=str(tmp_path)))
    assert ds.info.name == "CIFAR-10" and ds.info.class_names == CIFAR10_CLASSES
    assert (ds.info.channels, ds.info.image_size, ds.info.train_size, ds.info.test_size) == (3, (32, 32), 50, 10)
    assert ds.train_x.dtype == torch.uint8 and ds.train_y.dtype == torch.int64
    np.testing.assert_array_equal(ds.train_x.numpy(), written.train_x)
    np.testing.assert_array_equal(ds.train_y.numpy(), written.train_y)
    np.testing.assert_array_equal(ds.test_x.numpy(), written.test_x)
    np.testing.assert_array_equal(ds.test_y.numpy(), written.test_y)
    mean, std = numpy_mean_std(written.train_x)
    np.testing.assert_allclose(ds.info.mean, mean, rtol=1e-9)
    np.testing.assert_allclose(ds.info.std, std, rtol=1e-9)
    assert not any(isinstance(e, DownloadProgress) for e in events) and no_network == []


def test_tiny_cifar100_uses_fine_labels_and_names(tmp_path, no_network):
    written = make_tiny_cifar100(tmp_path, n_train=40, n_test=10)
    ds = load_dataset(DataConfig(val_fraction=0.0, dataset="cifar100", root=str(tmp_path)))
    assert ds.info.name == "CIFAR-100" and len(ds.info.class_names) == 100
    assert ds.info.class_names[7] == "class_007"
    np.testing.assert_array_equal(ds.train_y.numpy(), written.train_y)
    np.testing.assert_array_equal(ds.test_x.numpy(), written.test_x)


@pytest.mark.parametrize("batch", ["data_batch_3", "batches.meta", "test_batch"])
def test_hostile_cifar_pickle_is_refused_without_running_code(tmp_path, batch):
    written = make_tiny_cifar10(tmp_path, n_train=10, n_test=5)
    marker = tmp_path / "pwned"
    write_hostile_pickle(written.folder / batch, marker)
    with pytest.raises(DatasetError, match=rf"{batch} is not a valid CIFAR batch \(refused to load posix\.system"):
        load_dataset(DataConfig(val_fraction=0.0, dataset="cifar10", root=str(tmp_path)))
    assert not marker.exists()


def test_cifar_batches_that_are_damaged_or_wrong_are_refused_with_their_name(tmp_path):
    written = make_tiny_cifar10(tmp_path, n_train=10, n_test=5)
    cfg = DataConfig(val_fraction=0.0, dataset="cifar10", root=str(tmp_path))
    good = (written.folder / "data_batch_2").read_bytes()
    (written.folder / "data_batch_2").write_bytes(good[: len(good) // 2])
    with pytest.raises(DatasetError, match=r"data_batch_2 is not a valid CIFAR batch.*delete it"):
        load_dataset(cfg)
    import pickle

    (written.folder / "data_batch_2").write_bytes(pickle.dumps({"data": np.zeros((2, 100), np.uint8),
                                                                "labels": [0, 1]}, protocol=2))
    with pytest.raises(DatasetError, match=r"data_batch_2 .*N×3072 bytes"):
        load_dataset(cfg)
    (written.folder / "data_batch_2").write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.uint8),
                                                                "labels": [0, 10]}, protocol=2))
    with pytest.raises(DatasetError, match=r"data_batch_2 .*labels do not match"):
        load_dataset(cfg)


def test_batches_written_with_newer_pickle_protocols_and_bytes_keys_also_load(tmp_path):
    import pickle

    written = make_tiny_cifar10(tmp_path, n_train=10, n_test=5)
    batch = written.folder / "test_batch"
    x = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    batch.write_bytes(pickle.dumps({b"data": x, b"labels": [np.int64(3), 4]}, protocol=5))
    ds = load_dataset(DataConfig(val_fraction=0.0, dataset="cifar10", root=str(tmp_path)))
    assert ds.test_y.tolist() == [3, 4]
    np.testing.assert_array_equal(ds.test_x.reshape(2, -1).numpy(), x)


def test_missing_cifar_offline_names_the_folder_and_file_and_offers_digits(tmp_path, no_network):
    root = tmp_path / "data"
    with pytest.raises(DatasetError) as info:
        load_dataset(DataConfig(val_fraction=0.0, dataset="cifar10", root=str(root), download=True))
    message = str(info.value)
    assert str(root) in message and "cifar-10-python.tar.gz" in message and "Digits" in message
    assert "offline" in message and "\n" not in message
    assert root.is_dir()  # the folder the message names is there to drop the file into
    assert no_network == []  # PERCEIVER_GUI_OFFLINE (set by conftest) means no attempt at all
    with pytest.raises(DatasetError, match=r"downloading is switched off.*cifar-10-python\.tar\.gz"):
        load_dataset(DataConfig(val_fraction=0.0, dataset="cifar10", root=str(root), download=False))


def test_missing_mnist_offline_lists_the_idx_files_and_their_folder(tmp_path, no_network):
    with pytest.raises(DatasetError) as info:
        load_dataset(DataConfig(val_fraction=0.0, dataset="fashion_mnist", root=str(tmp_path)))
    message = str(info.value)
    assert str(tmp_path / "FashionMNIST" / "raw") in message
    assert "train-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert "Digits" in message and no_network == []


def _tar_gz(folder: Path, archive: Path, *, extra: dict[str, bytes] | None = None) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
        for name, payload in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return archive


def _with_md5(monkeypatch, archive: Path) -> None:
    spec = data._CIFAR["cifar10"]
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(data._CIFAR, "cifar10", dataclasses.replace(spec, archive_md5=md5))


def test_archive_dropped_in_by_hand_is_checked_and_extracted(tmp_path, monkeypatch, no_network):
    staging, root = tmp_path / "staging", tmp_path / "data"
    root.mkdir()
    written = make_tiny_cifar10(staging, n_train=10, n_test=5)
    archive = _tar_gz(written.folder, root / "cifar-10-python.tar.gz")
    cfg = DataConfig(val_fraction=0.0, dataset="cifar10", root=str(root))
    with pytest.raises(DatasetError, match=r"not the official CIFAR-10 archive \(its checksum does not match\)"):
        load_dataset(cfg)  # our archive is not the real one, and a hand-placed file is checked too
    _with_md5(monkeypatch, archive)
    ds = load_dataset(cfg)
    np.testing.assert_array_equal(ds.train_x.numpy(), written.train_x)
    assert (root / "cifar-10-batches-py" / "data_batch_5").is_file()
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []  # no extraction leftovers


def test_archive_that_writes_outside_its_folder_is_refused(tmp_path, monkeypatch):
    staging, root = tmp_path / "staging", tmp_path / "data"
    root.mkdir()
    written = make_tiny_cifar10(staging, n_train=10, n_test=5)
    archive = _tar_gz(written.folder, root / "cifar-10-python.tar.gz",
                      extra={"cifar-10-batches-py/../../escaped.txt": b"gotcha"})
    _with_md5(monkeypatch, archive)
    with pytest.raises(DatasetError, match=r"unexpected path .*escaped\.txt.*not the official archive"):
        load_dataset(DataConfig(val_fraction=0.0, dataset="cifar10", root=str(root)))
    assert not (tmp_path / "escaped.txt").exists() and not (root / "cifar-10-batches-py").exists()


class FakeResponse(io.BytesIO):
    def __init__(self, payload: bytes) -> None:
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))}


def test_download_reports_progress_checks_md5_and_extracts(tmp_path, monkeypatch):
    monkeypatch.delenv("PERCEIVER_GUI_OFFLINE")
    staging, root = tmp_path / "staging", tmp_path / "data"
    written = make_tiny_cifar10(staging, n_train=400, n_test=5)  # > 1 MiB, so several chunks
    archive = _tar_gz(written.folder, tmp_path / "served.tar.gz")
    _with_md5(monkeypatch, archive)
    urls = []

    def serve(url, timeout):
        urls.append(url)
        return FakeResponse(archive.read_bytes())

    monkeypatch.setattr(urllib.request, "urlopen", serve)
    events, ds = run(DataConfig(val_fraction=0.0, dataset="cifar10", root=str(root)))
    assert urls == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    progress = [e for e in events if isinstance(e, DownloadProgress)]
    size = archive.stat().st_size
    assert len(progress) >= 3 and progress[-1] == DownloadProgress(name="CIFAR-10", done_bytes=size, total_bytes=size)
    assert [p.done_bytes for p in progress] == sorted(p.done_bytes for p in progress)
    np.testing.assert_array_equal(ds.train_x.numpy(), written.train_x)
    events, _ = run(DataConfig(val_fraction=0.0, dataset="cifar10", root=str(root)))  # now on disk: no second download
    assert len(urls) == 1 and not any(isinstance(e, DownloadProgress) for e in events)


def test_download_with_a_wrong_checksum_is_refused_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("PERCEIVER_GUI_OFFLINE")
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: FakeResponse(b"not the archive"))
    with pytest.raises(DatasetError, match=r"downloaded cifar-10-python\.tar\.gz is damaged"):
        load_dataset(DataConfig(val_fraction=0.0, dataset="cifar10", root=str(tmp_path)))
    assert list(tmp_path.iterdir()) == []


def test_unreachable_network_gives_the_manual_copy_sentence(tmp_path, monkeypatch):
    monkeypatch.delenv("PERCEIVER_GUI_OFFLINE")

    def unreachable(url, timeout):
        raise urllib.error.URLError(OSError(-2, "Name or service not known"))

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    events = []
    with pytest.raises(DatasetError) as info:
        gen = open_dataset(DataConfig(val_fraction=0.0, dataset="mnist", root=str(tmp_path)))
        for event in gen:
            events.append(event)
    message = str(info.value)
    assert "(no network)" in message and str(tmp_path / "MNIST" / "raw") in message and "Digits" in message
    # Both mirrors were tried and each failure is in the log.
    assert sum(isinstance(e, Log) and e.level == "warning" for e in events) == 2


# -- MNIST, digits ---------------------------------------------------------------------------
@pytest.mark.parametrize(("dataset", "folder", "gz"), [("mnist", "MNIST", True), ("mnist", "MNIST", False),
                                                        ("fashion_mnist", "FashionMNIST", True)])
def test_mnist_idx_files_load_gzipped_or_not(tmp_path, no_network, dataset, folder, gz):
    written = make_mnist(tmp_path, n_train=30, n_test=10, folder=folder, gz=gz)
    ds = load_dataset(DataConfig(val_fraction=0.0, dataset=dataset, root=str(tmp_path)))
    assert (ds.info.channels, ds.info.image_size, ds.info.train_size, ds.info.test_size) == (1, (28, 28), 30, 10)
    np.testing.assert_array_equal(ds.train_x.numpy(), written.train_x)
    np.testing.assert_array_equal(ds.test_y.numpy(), written.test_y)
    assert ds.info.class_names[0] == ("0" if dataset == "mnist" else "T-shirt/top")


def test_truncated_idx_file_is_refused_with_its_name(tmp_path):
    written = make_mnist(tmp_path, gz=False)
    path = written.folder / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte is truncated or damaged"):
        load_dataset(DataConfig(val_fraction=0.0, dataset="mnist", root=str(tmp_path)))


def test_digits_are_bundled_8x8_gray_split_898_899(tmp_path, no_network):
    ds = load_dataset(DataConfig(val_fraction=0.0, dataset="digits", root=str(tmp_path)))
    assert (ds.info.train_size, ds.info.test_size) == (898, 899)
    assert (ds.info.channels, ds.info.image_size, ds.info.class_names) == (1, (8, 8), tuple("0123456789"))
    assert ds.train_x.dtype == torch.uint8 and int(ds.train_x.max()) == 255 and int(ds.train_x.min()) == 0
    assert ds.train_y[:10].tolist() == list(range(10))  # the file's own order, not shuffled
    assert torch.bincount(ds.test_y).min() > 80  # every digit is well represented in the held-out half
    assert list(tmp_path.iterdir()) == []  # bundled: nothing written, nothing fetched


@pytest.mark.slow  # importing scikit-learn alone takes seconds
def test_digits_split_is_the_one_of_scikit_learns_example(tmp_path):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    ds = load_dataset(DataConfig(val_fraction=0.0, dataset="digits", root=str(tmp_path)))
    bunch = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(bunch.images, bunch.target, test_size=0.5, shuffle=False)
    np.testing.assert_array_equal(ds.train_y.numpy(), y_train)
    np.testing.assert_array_equal(ds.test_y.numpy(), y_test)
    np.testing.assert_array_equal(ds.train_x[:, 0].numpy(), np.rint(x_train * 255 / 16).astype(np.uint8))
    np.testing.assert_array_equal(ds.test_x[:, 0].numpy(), np.rint(x_test * 255 / 16).astype(np.uint8))


# -- image folders ---------------------------------------------------------------------------
def folder_cfg(folder: Path, root: Path, **kw) -> DataConfig:
    """The loader's own train/test split: no validation carved from it (tests/core/test_validation.py)."""
    return DataConfig(**{"val_fraction": 0.0, **kw}, dataset="folder", folder=str(folder), root=str(root))


def test_image_folder_of_png_and_jpeg_with_a_corrupt_file(tmp_path):
    folder = make_image_folder(tmp_path / "pets", {"cats": 6, "dogs": 5})
    (folder / "dogs" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "cats" / "notes.txt").write_text("not an image suffix, ignored silently")
    events, ds = run(folder_cfg(folder, tmp_path / "data", image_size=12, test_fraction=0.2))
    assert ds.info.name == "pets" and ds.info.class_names == ("cats", "dogs")
    assert (ds.info.channels, ds.info.image_size) == (3, (12, 12))
    assert ds.info.train_size + ds.info.test_size == 11
    assert ds.test_y.tolist() == [0, 1]  # round(0.2 × 6) = 1 cat and round(0.2 × 5) = 1 dog held out
    assert len(ds.skipped) == 1 and ds.skipped[0].startswith("dogs/broken.jpg: ")
    warnings = [e for e in events if isinstance(e, Log) and e.level == "warning"]
    assert len(warnings) == 1 and "Skipped 1 unreadable file" in warnings[0].message
    assert "dogs/broken.jpg" in warnings[0].message
    # Class k is drawn in CLASS_COLOURS[k]: red cats, green dogs.
    cats = ds.train_x[ds.train_y == 0].float().mean(dim=(0, 2, 3))
    assert cats[0] > 120 and cats[1] < 60


def test_folder_pixels_match_the_predictor_path_exactly(tmp_path):
    folder = make_image_folder(tmp_path / "f", {"a": 3, "b": 3}, size=(37, 23))
    ds = load_dataset(folder_cfg(folder, tmp_path / "data", image_size=16, test_fraction=0.34))
    every = torch.cat([ds.train_x, ds.test_x])
    expected = [to_uint8_tensor(open_image(p, channels=3), (16, 16))
                for p in sorted(folder.rglob("*.*"))]
    assert len(expected) == len(every)
    for tensor in expected:  # each file's tensor is in the dataset, byte for byte
        assert any(torch.equal(tensor, row) for row in every)


def test_empty_class_is_an_error_that_names_it(tmp_path):
    folder = make_image_folder(tmp_path / "f", {"apples": 3, "pears": 3})
    (folder / "plums").mkdir()
    (folder / "plums" / "readme.txt").write_text("no pictures yet")
    with pytest.raises(DatasetError, match=r"class folder 'plums' in .* has no images"):
        load_dataset(folder_cfg(folder, tmp_path / "data"))


def test_class_whose_images_are_all_unreadable_is_an_error_that_names_it(tmp_path):
    folder = make_image_folder(tmp_path / "f", {"apples": 3, "pears": 3})
    (folder / "plums").mkdir()
    (folder / "plums" / "p.png").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"None of the images in the class folder 'plums'"):
        load_dataset(folder_cfg(folder, tmp_path / "data"))


def test_missing_folder_and_single_class_are_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(folder_cfg(tmp_path / "nowhere", tmp_path / "data"))
    folder = make_image_folder(tmp_path / "one", {"only": 3})
    with pytest.raises(DatasetError, match="at least two subfolders"):
        load_dataset(folder_cfg(folder, tmp_path / "data"))


def test_grayscale_folder_gives_one_channel_and_a_colour_image_makes_it_three(tmp_path):
    folder = make_image_folder(tmp_path / "g", {"a": 4, "b": 4}, gray=True)
    Image.new("RGB", (10, 10), (90, 90, 90)).save(folder / "a" / "gray_but_rgb.png")
    Image.new("I;16", (10, 10), 30000).save(folder / "b" / "deep.png")
    ds = load_dataset(folder_cfg(folder, tmp_path / "data", image_size=8))
    assert ds.info.channels == 1 and ds.train_x.shape[1:] == (1, 8, 8) and len(ds.info.mean) == 1
    expected = to_uint8_tensor(open_image(folder / "a" / "a_001.jpg", channels=1), (8, 8))
    assert any(torch.equal(expected, row) for row in torch.cat([ds.train_x, ds.test_x]))
    Image.new("RGB", (10, 10), (200, 10, 10)).save(folder / "b" / "red.png")
    ds = load_dataset(folder_cfg(folder, tmp_path / "data", image_size=8))
    assert ds.info.channels == 3 and len(ds.info.std) == 3


def test_folder_of_odd_modes_and_formats_reads_them_all(tmp_path):
    folder = tmp_path / "odd"
    (folder / "x").mkdir(parents=True)
    (folder / "y").mkdir()
    Image.new("RGBA", (9, 9), (255, 0, 0, 100)).save(folder / "x" / "rgba.png")
    Image.new("RGB", (9, 9), (0, 0, 255)).convert("P").save(folder / "x" / "pal.gif", transparency=0)
    Image.new("1", (9, 9), 1).save(folder / "x" / "bits.bmp")
    Image.new("CMYK", (9, 9), (0, 255, 0, 0)).save(folder / "y" / "cmyk.jpg")
    Image.new("I;16", (9, 9), 1000).save(folder / "y" / "deep.tif")
    Image.new("LA", (9, 9), (50, 200)).save(folder / "y" / "la.PNG")  # upper-case suffix too
    Image.new("RGB", (9, 9), (0, 90, 0)).save(folder / "y" / "photo.webp")
    ds = load_dataset(folder_cfg(folder, tmp_path / "data", image_size=4, test_fraction=0.3))
    assert ds.skipped == () and ds.info.train_size + ds.info.test_size == 7 and ds.info.channels == 3


def test_split_is_stratified_repeatable_and_follows_test_fraction(tmp_path):
    folder = make_image_folder(tmp_path / "f", {"a": 10, "b": 20, "c": 1}, size=(8, 8), formats=("png",))
    cfg = folder_cfg(folder, tmp_path / "data", image_size=8, test_fraction=0.3)
    events, first = run(cfg)
    second = load_dataset(cfg)
    assert torch.bincount(first.test_y, minlength=3).tolist() == [3, 6, 0]
    assert torch.bincount(first.train_y, minlength=3).tolist() == [7, 14, 1]
    assert torch.equal(first.test_x, second.test_x) and torch.equal(first.train_y, second.train_y)
    assert any(isinstance(e, Log) and e.level == "warning" and "single image" in e.message and "c" in e.message
               for e in events)
    other = load_dataset(dataclasses.replace(cfg, test_fraction=0.5))
    assert torch.bincount(other.test_y, minlength=3).tolist() == [5, 10, 0]


def test_decoded_folder_is_cached_as_safetensors_and_reused(tmp_path, monkeypatch):
    folder = make_image_folder(tmp_path / "f", {"a": 4, "b": 4})
    root = tmp_path / "data"
    cfg = folder_cfg(folder, root, image_size=10)
    first = load_dataset(cfg)
    caches = list((root / "folder-cache").glob("*.safetensors"))
    assert len(caches) == 1
    header_len = int.from_bytes(caches[0].read_bytes()[:8], "little")
    assert caches[0].read_bytes()[8:9] == b"{" and header_len < caches[0].stat().st_size  # safetensors, not pickle

    def must_not_decode(*args, **kwargs):
        raise AssertionError("decoded again although nothing changed")

    monkeypatch.setattr(data, "open_image", must_not_decode)
    events, second = run(cfg)
    assert any(isinstance(e, Log) and "cached" in e.message for e in events)
    assert torch.equal(first.train_x, second.train_x) and torch.equal(first.test_y, second.test_y)


def test_cache_is_rebuilt_when_a_file_changes_is_added_or_the_size_changes(tmp_path):
    folder = make_image_folder(tmp_path / "f", {"a": 4, "b": 4}, formats=("png",))
    root = tmp_path / "data"
    cfg = folder_cfg(folder, root, image_size=6, test_fraction=0.25)
    before = load_dataset(cfg)
    target = folder / "a" / "a_000.png"
    stat = target.stat()
    Image.new("RGB", (20, 16), (0, 0, 0)).save(target)  # same name, now black
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    after = load_dataset(cfg)
    all_before, all_after = torch.cat([before.train_x, before.test_x]), torch.cat([after.train_x, after.test_x])
    assert int(all_after.sum()) < int(all_before.sum())  # the black image is in; the old one is gone
    Image.new("RGB", (20, 16), (9, 9, 9)).save(folder / "b" / "new.png")
    assert load_dataset(cfg).info.train_size + load_dataset(cfg).info.test_size == 9
    assert load_dataset(dataclasses.replace(cfg, image_size=5)).info.image_size == (5, 5)
    assert len(list((root / "folder-cache").glob("*.safetensors"))) == 2  # one per image size, overwritten


def test_damaged_cache_is_rebuilt_not_fatal(tmp_path):
    folder = make_image_folder(tmp_path / "f", {"a": 3, "b": 3})
    root = tmp_path / "data"
    cfg = folder_cfg(folder, root, image_size=6)
    first = load_dataset(cfg)
    (cache,) = (root / "folder-cache").glob("*.safetensors")
    cache.write_bytes(b"\x00" * 20)
    events, again = run(cfg)
    assert torch.equal(first.train_x, again.train_x)
    assert any(isinstance(e, Log) and e.message.startswith("Decoding") for e in events)


# -- data root -------------------------------------------------------------------------------
def test_default_data_root_follows_perceiver_gui_home(tmp_path, monkeypatch):
    monkeypatch.setenv("PERCEIVER_GUI_HOME", str(tmp_path))
    assert default_data_root() == tmp_path / "data"
    monkeypatch.delenv("PERCEIVER_GUI_HOME")
    assert default_data_root().name == "data" and "perceiver-gui" in str(default_data_root())


def test_empty_root_means_the_default_data_root(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("PERCEIVER_GUI_HOME", str(tmp_path))
    make_mnist(tmp_path / "data")
    assert load_dataset(DataConfig(val_fraction=0.0, dataset="mnist", root="")).info.train_size == 30


# -- normalize and augment -------------------------------------------------------------------
def test_normalize_gives_float32_standardised_values_on_the_same_device():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8).reshape(1, 1, 1, 3).repeat(2, 2, 1, 1)
    out = normalize(x, (0.2, 0.5), (0.5, 0.25))
    assert out.dtype == torch.float32 and out.shape == (2, 2, 1, 3) and out.device == x.device
    assert torch.allclose(out[0, 0, 0], torch.tensor([-0.4, 0.0, 1.6]), atol=1e-6)
    assert torch.allclose(out[1, 1, 0], torch.tensor([-2.0, -1.2, 2.0]), atol=1e-6)
    with pytest.raises(ValueError, match="one mean and std per channel"):
        normalize(x, (0.5,) * 3, (0.5,) * 3)


def batch(b=32, c=3, h=6, w=7) -> torch.Tensor:
    return torch.randint(1, 256, (b, c, h, w), generator=torch.Generator().manual_seed(5), dtype=torch.uint8)


def test_augment_off_returns_the_batch_untouched():
    x = batch()
    assert augment(x, crop_padding=0, hflip=False, generator=torch.Generator().manual_seed(0)) is x


def test_augment_is_repeatable_with_a_seed_and_varies_between_seeds():
    x = batch()

    def aug(seed):
        return augment(x, crop_padding=2, hflip=True, generator=torch.Generator().manual_seed(seed))

    a, b, c = aug(1), aug(1), aug(2)
    assert a.dtype == torch.uint8 and a.shape == x.shape
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_hflip_flips_some_samples_exactly_and_leaves_the_rest():
    x = batch(b=64)
    out = augment(x, crop_padding=0, hflip=True, generator=torch.Generator().manual_seed(3))
    flipped = [torch.equal(o, s.flip(-1)) for o, s in zip(out, x, strict=True)]
    kept = [torch.equal(o, s) for o, s in zip(out, x, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 10 < sum(flipped) < 54  # about half


def test_crop_takes_a_window_of_the_edge_padded_image_per_sample():
    x = batch(b=40)
    p = 2
    out = augment(x, crop_padding=p, hflip=False, generator=torch.Generator().manual_seed(4))
    # The gap left by the shift repeats the border pixels (no black bars on light backgrounds).
    padded = torch.nn.functional.pad(x.float(), (p, p, p, p), mode="replicate").to(torch.uint8)
    h, w = x.shape[2:]
    offsets = set()
    for o, s in zip(out, padded, strict=True):
        matches = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
                   if torch.equal(o, s[:, dy:dy + h, dx:dx + w])]
        assert matches, "every sample is a window of its edge-padded image"
        offsets.add(matches[0])
    assert len(offsets) > 5  # offsets differ between samples


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_among_the_images_is_skipped_by_name_not_waited_on(tmp_path):
    folder = make_image_folder(tmp_path / "f", {"apples": 3, "pears": 3})
    os.mkfifo(folder / "apples" / "pipe.png")
    events, ds = run(folder_cfg(folder, tmp_path / "data"))  # would wait forever if the FIFO were opened
    assert ds.info.train_size + ds.info.test_size == 6
    assert any("pipe.png" in str(e.message) and "Skipped 1" in str(e.message) for e in events if hasattr(e, "message"))
    assert any("named pipe (FIFO), not a regular file" in s for s in ds.skipped)


def test_a_shifted_white_image_stays_white():
    x = torch.full((16, 3, 8, 8), 255, dtype=torch.uint8)
    out = augment(x, crop_padding=4, hflip=True, generator=torch.Generator().manual_seed(0))
    assert bool((out == 255).all())


@pytest.mark.skipif(os.name != "posix", reason="POSIX file names are bytes")
def test_a_class_folder_whose_name_is_not_utf8_is_refused_by_name(tmp_path):
    folder = make_image_folder(tmp_path / "f", {"apples": 3, "pears": 3})
    os.rename(folder / "pears", os.path.join(os.fsencode(folder), b"caf\xe9"))
    with pytest.raises(DatasetError, match=r"b'caf\\xe9'.*not valid UTF-8; rename it"):
        run(folder_cfg(folder, tmp_path / "data"))


def test_folder_cropped_to_content_matches_the_predictor_path_and_has_its_own_cache(tmp_path):
    from perceiver_gui.core.images import crop_to_content

    folder = make_image_folder(tmp_path / "f", {"a": 3, "b": 3}, size=(37, 23))
    from PIL import Image

    for path in sorted(folder.rglob("*.png"))[:3]:  # some objects on white paper, to be cut out
        img = Image.new("RGB", (40, 30), "white")
        img.paste((20, 20, 160), (3, 4, 15, 12))
        img.save(path)
    plain = load_dataset(folder_cfg(folder, tmp_path / "data", image_size=16, test_fraction=0.34))
    cut = load_dataset(folder_cfg(folder, tmp_path / "data", image_size=16, test_fraction=0.34, crop_to_content=True))
    every = torch.cat([cut.train_x, cut.test_x])
    expected = [to_uint8_tensor(crop_to_content(open_image(p, channels=3)), (16, 16)) for p in sorted(folder.rglob("*.*"))]
    for tensor in expected:
        assert any(torch.equal(tensor, row) for row in every)
    assert not torch.equal(torch.cat([plain.train_x, plain.test_x]), every)
    assert sorted(p.name for p in (tmp_path / "data" / "folder-cache").iterdir())[0].endswith("-16px-content.safetensors")
