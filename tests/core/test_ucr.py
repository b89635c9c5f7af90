"""A UCR/UEA archive problem by name (data.ucr_problem): downloaded once as the archive's <Name>.zip, with
progress, opened and checked to hold <Name>_TRAIN.ts and <Name>_TEST.ts. Nothing here touches the network:
the archive's answers are zips written in tmp_path."""

from __future__ import annotations

import io
import urllib.error
import urllib.request
import zipfile

import pytest

from perceiver_gui.config import DataConfig, preset
from perceiver_gui.core import data
from perceiver_gui.core.data import DatasetError, load_dataset, open_dataset
from perceiver_gui.core.events import DownloadProgress
from tests.core.test_data import FakeResponse
from tests.core.test_series import shapes, write_ts


def _zip(tmp_path, name: str, members: dict[str, str | bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, text in members.items():
            archive.writestr(member, text)
    return buffer.getvalue()


def _problem(tmp_path, name: str = "Waves") -> dict[str, str]:
    """The .ts texts of a small problem, as the archive's zips hold them."""
    (tmp_path / "staging").mkdir(exist_ok=True)
    train = write_ts(tmp_path / "staging" / f"{name}_TRAIN.ts", *shapes(6, 20, level=1.0))
    test = write_ts(tmp_path / "staging" / f"{name}_TEST.ts", *shapes(2, 20, level=1.0, seed=3))
    return {f"{name}_TRAIN.ts": train.read_text(), f"{name}_TEST.ts": test.read_text()}


def _serve(monkeypatch, payloads: dict[str, bytes]) -> list[str]:
    """urlopen answers the URLs in `payloads` with their bytes, any other with 404; returns the URLs asked."""
    asked = []

    def urlopen(url, timeout):
        asked.append(url)
        if url not in payloads:
            raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
        return FakeResponse(payloads[url])

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return asked


def _events(cfg: DataConfig):
    events, gen = [], open_dataset(cfg)
    try:
        while True:
            events.append(next(gen))
    except StopIteration as done:
        return events, done.value


def test_a_problem_is_downloaded_once_with_progress_and_trains_from_its_own_split(tmp_path, monkeypatch):
    monkeypatch.delenv("PERCEIVER_GUI_OFFLINE", raising=False)
    texts = _problem(tmp_path)
    url = data.UCR_URL + "Waves.zip"
    asked = _serve(monkeypatch, {url: _zip(tmp_path, "Waves", {f"Waves/{k}": v for k, v in texts.items()})})
    cfg = DataConfig(dataset="sequences", ucr_problem="Waves", root=str(tmp_path / "data"), val_fraction=0)
    events, ds = _events(cfg)
    assert asked == [url]
    progress = [e for e in events if isinstance(e, DownloadProgress)]
    assert progress and progress[-1].done_bytes == progress[-1].total_bytes > 0 and progress[-1].name == "Waves (UCR/UEA)"
    folder = tmp_path / "data" / "UCR" / "Waves"
    assert (folder / "Waves_TRAIN.ts").read_text() == texts["Waves_TRAIN.ts"]
    assert ds.info.name == "Waves" and ds.info.kind == "series" and (ds.info.train_size, ds.info.test_size) == (18, 6)
    assert ds.test_files[0] == f"{folder / 'Waves_TEST.ts'}#1"  # the archive's own test split
    events, _ = _events(cfg)  # on disk now: nothing is asked again
    assert asked == [url] and not any(isinstance(e, DownloadProgress) for e in events)


def test_an_archive_without_the_problems_files_is_refused_and_removed(tmp_path, monkeypatch):
    monkeypatch.delenv("PERCEIVER_GUI_OFFLINE", raising=False)
    _serve(monkeypatch, {data.UCR_URL + "Waves.zip": _zip(tmp_path, "Waves", {"Waves_TRAIN.arff": "@relation"})})
    cfg = DataConfig(dataset="sequences", ucr_problem="Waves", root=str(tmp_path / "data"))
    with pytest.raises(DatasetError, match=r"Waves\.zip holds no Waves_TRAIN\.ts and Waves_TEST\.ts"):
        load_dataset(cfg)
    assert list((tmp_path / "data" / "UCR" / "Waves").iterdir()) == []  # the next Start downloads it again


def test_a_download_that_is_not_a_zip_says_so(tmp_path, monkeypatch):
    monkeypatch.delenv("PERCEIVER_GUI_OFFLINE", raising=False)
    _serve(monkeypatch, {data.UCR_URL + "Waves.zip": b"<html>a page, not an archive</html>"})
    with pytest.raises(DatasetError, match=r"Waves\.zip is not a zip archive"):
        load_dataset(DataConfig(dataset="sequences", ucr_problem="Waves", root=str(tmp_path / "data")))


def test_a_name_the_archive_lacks_names_the_servers_answer_and_the_manual_way(tmp_path, monkeypatch):
    monkeypatch.delenv("PERCEIVER_GUI_OFFLINE", raising=False)
    _serve(monkeypatch, {})
    with pytest.raises(DatasetError) as info:
        load_dataset(DataConfig(dataset="sequences", ucr_problem="GunPonit", root=str(tmp_path / "data")))
    message = str(info.value)
    assert "404 Not Found" in message and "GunPonit_TRAIN.ts and GunPonit_TEST.ts" in message
    assert str(tmp_path / "data" / "UCR" / "GunPonit") in message


def test_files_put_there_by_hand_are_used_without_asking(tmp_path, monkeypatch):
    asked = _serve(monkeypatch, {})
    folder = tmp_path / "data" / "UCR" / "Waves"
    folder.mkdir(parents=True)
    for name, text in _problem(tmp_path).items():
        (folder / name).write_text(text)
    ds = load_dataset(DataConfig(dataset="sequences", ucr_problem="Waves", root=str(tmp_path / "data")))
    assert asked == [] and ds.info.name == "Waves"


def test_the_config_takes_a_problem_name_instead_of_a_file_and_refuses_a_path():
    cfg = preset("sequences").with_updates({"data.ucr_problem": "GunPoint"})
    assert cfg.validate() == []
    bad = cfg.with_updates({"data.ucr_problem": "../etc"})
    assert [key for key, _ in bad.validate()] == ["data.ucr_problem"]
    assert [key for key, _ in preset("sequences").validate()] == ["data.train_file"]


def test_a_downloaded_problem_sizes_the_model_before_start(tmp_path):
    from perceiver_gui.core.datasets import expected_input

    cfg = DataConfig(dataset="sequences", ucr_problem="Waves", root=str(tmp_path / "data"))
    assert expected_input(cfg).channels is None  # not there yet: the files will tell
    folder = tmp_path / "data" / "UCR" / "Waves"
    folder.mkdir(parents=True)
    for name, text in _problem(tmp_path).items():
        (folder / name).write_text(text)
    shape = expected_input(cfg)
    assert (shape.kind, shape.sides, shape.channels, shape.classes) == ("series", (20,), 1, 3)


def test_a_member_too_large_for_a_series_file_is_not_extracted(tmp_path, monkeypatch):
    monkeypatch.delenv("PERCEIVER_GUI_OFFLINE", raising=False)
    monkeypatch.setattr(data, "UCR_MAX_BYTES", 100)  # a zip bomb's claim, scaled down
    _serve(monkeypatch, {data.UCR_URL + "Waves.zip": _zip(tmp_path, "Waves", _problem(tmp_path))})
    with pytest.raises(DatasetError, match=r"too many for a series file"):
        load_dataset(DataConfig(dataset="sequences", ucr_problem="Waves", root=str(tmp_path / "data")))
    assert list((tmp_path / "data" / "UCR" / "Waves").iterdir()) == []
