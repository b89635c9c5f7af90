"""File menu exports: a run's metrics as CSV and a model as ONNX, with the file dialogs answered by the test."""

import csv
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtWidgets import QFileDialog

from perceiver_gui.core.runs import read_metrics
from tests.ui.helpers import load_model


def answer_dialogs(monkeypatch, save="", open_=""):
    """QFileDialog answers: `save` for getSaveFileName, `open_` for getOpenFileName; records what was asked."""
    asked = []

    def save_name(parent, title, start, filter_):
        asked.append(("save", title, start))
        return str(save), filter_

    def open_name(parent, title, start, filter_):
        asked.append(("open", title, start))
        return str(open_), filter_

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(save_name))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(open_name))
    return asked


def file_menu_texts(window):
    menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&File")
    return [a.text() for a in menu.actions()]


def test_the_file_menu_offers_both_exports(make_window):
    texts = file_menu_texts(make_window())
    assert "Export run metrics as &CSV…" in texts and "Export a model as O&NNX…" in texts


def test_both_exports_act_on_the_run_selected_in_runs_and_name_it(make_window, trained_run, tmp_path, monkeypatch,
                                                                 qtbot):
    import shutil

    from perceiver_gui.core import export
    from perceiver_gui.core.runs import rename_run

    for name in ("first", "second"):
        shutil.copytree(trained_run, tmp_path / "runs" / name)
        rename_run(tmp_path / "runs" / name, f"{name} run")
    window = make_window(runs_root=tmp_path / "runs")
    load_model(qtbot, window.classifier, tmp_path / "runs" / "first" / "model.safetensors")
    window.runs.refresh()
    assert window.runs.select_runs([str(tmp_path / "runs" / "second")])
    texts = file_menu_texts(window)
    assert "Export the metrics of “second run” as &CSV…" in texts and "Export the model of “second run” as O&NNX…" in texts
    exported = []
    monkeypatch.setattr(export, "export_onnx", lambda model, out: exported.append(model) or out)
    monkeypatch.setattr(export, "metrics_csv", lambda run, out: exported.append(run) or 0)
    asked = answer_dialogs(monkeypatch, save=tmp_path / "out.onnx")
    window.export_actions.onnx_action.trigger()
    qtbot.waitUntil(lambda: not window.export_actions.working, timeout=30000)
    answer_dialogs(monkeypatch, save=tmp_path / "out.csv")
    window.export_actions.metrics_action.trigger()
    qtbot.waitUntil(lambda: not window.export_actions.working, timeout=30000)
    # The run picked in Runs, not the classifier's model; the save dialog says which run it exports.
    assert exported == [str(tmp_path / "runs" / "second" / "model.safetensors"), str(tmp_path / "runs" / "second")]
    assert [kind for kind, *_ in asked] == ["save"] and "second run" in asked[0][1]


def test_the_selected_run_exports_its_metrics_as_csv_in_the_background(make_window, trained_run, tmp_path,
                                                                        monkeypatch, qtbot):
    window = make_window(runs_root=trained_run.parent)
    window.runs.refresh()
    assert window.runs.select_runs([str(trained_run)])
    asked = answer_dialogs(monkeypatch, save=tmp_path / "tiny")  # typed without a suffix
    window.export_actions.metrics_action.trigger()
    assert window.export_actions.working and not window.export_actions.onnx_action.isEnabled()  # one at a time
    qtbot.waitUntil(lambda: not window.export_actions.working, timeout=30000)
    assert window.export_actions.metrics_action.isEnabled()
    assert asked[0][2].endswith("tiny-run.csv")  # the dialog suggests a name after the run
    with open(tmp_path / "tiny.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(read_metrics(trained_run).records)
    assert "tiny.csv" in window.statusBar().currentMessage()


def test_without_a_run_it_says_how_to_choose_one(make_window, monkeypatch):
    window = make_window()
    asked = answer_dialogs(monkeypatch)
    window.export_actions.metrics_action.trigger()
    assert asked == []
    assert "Select one run in the Runs tab" in window.statusBar().currentMessage()


def test_with_several_runs_selected_it_asks_for_one_rather_than_export_another(make_window, trained_run, tmp_path,
                                                                                monkeypatch):
    import shutil

    for name in ("copy", "second"):
        shutil.copytree(trained_run, tmp_path / "runs" / name)
    window = make_window(runs_root=tmp_path / "runs")
    window.lifecycle.current_run = str(trained_run)  # a run trained in this session, not among those selected
    window.runs.refresh()
    assert window.runs.select_runs([str(tmp_path / "runs" / "copy"), str(tmp_path / "runs" / "second")]) == 2
    asked = answer_dialogs(monkeypatch, save=tmp_path / "out.csv")
    window.export_actions.metrics_action.trigger()
    assert asked == [] and not (tmp_path / "out.csv").exists()
    assert "Select one run in the Runs tab" in window.statusBar().currentMessage()


def test_a_csv_that_cannot_be_written_shows_why(make_window, trained_run, tmp_path, monkeypatch, dialogs, qtbot):
    window = make_window(runs_root=trained_run.parent)
    window.runs.refresh()
    window.runs.select_runs([str(trained_run)])
    (tmp_path / "taken.csv").mkdir()
    answer_dialogs(monkeypatch, save=tmp_path / "taken.csv")
    window.export_actions.metrics_action.trigger()
    qtbot.waitUntil(lambda: not window.export_actions.working, timeout=30000)
    assert dialogs == [("warning", "Export failed", f"{tmp_path / 'taken.csv'} is a folder; choose a file name to "
                                                    "export to.")]


@pytest.mark.slow
def test_the_selected_runs_model_exports_as_onnx_in_the_background(make_window, trained_run, tmp_path, monkeypatch,
                                                                   qtbot, dialogs):
    import onnxruntime

    window = make_window(runs_root=trained_run.parent)
    window.runs.refresh()
    assert window.runs.select_runs([str(trained_run)])
    asked = answer_dialogs(monkeypatch, save=tmp_path / "digits.onnx")
    window.export_actions.onnx_action.trigger()
    assert [kind for kind, *_ in asked] == ["save"]  # the run's model is the one exported: no question
    assert not window.export_actions.onnx_action.isEnabled()  # one export at a time, while the window stays live
    qtbot.waitUntil(lambda: not window.export_actions.working, timeout=180000)
    assert dialogs == []
    assert window.export_actions.onnx_action.isEnabled()
    assert "Exported the model as ONNX" in window.statusBar().currentMessage()
    session = onnxruntime.InferenceSession(str(tmp_path / "digits.onnx"), providers=["CPUExecutionProvider"])
    (probs,) = session.run(["probabilities"], {"image": np.zeros((2, 8, 8, 1), np.float32)})
    assert probs.shape == (2, 10)


@pytest.mark.slow
def test_a_series_runs_model_exports_as_onnx_that_reads_series_and_their_mask(make_window, series_run, tmp_path,
                                                                              monkeypatch, qtbot, dialogs):
    import onnxruntime

    window = make_window(runs_root=series_run.parent)
    window.runs.refresh()
    assert window.runs.select_runs([str(series_run)])
    answer_dialogs(monkeypatch, save=tmp_path / "waves.onnx")
    window.export_actions.onnx_action.trigger()
    qtbot.waitUntil(lambda: not window.export_actions.working, timeout=180000)
    assert dialogs == []
    assert "Exported the model as ONNX" in window.statusBar().currentMessage()
    session = onnxruntime.InferenceSession(str(tmp_path / "waves.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["series", "mask"]
    length = session.get_inputs()[0].shape[1]
    mask = np.ones((2, length), bool)
    mask[1, length // 2:] = False
    (probs,) = session.run(["probabilities"], {"series": np.zeros((2, length, 2), np.float32), "mask": mask})
    assert probs.shape == (2, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_without_a_loaded_model_onnx_asks_for_one_and_says_what_is_wrong_with_it(make_window, tmp_path, monkeypatch,
                                                                                 qtbot, dialogs):
    window = make_window()
    not_a_model = tmp_path / "weights.safetensors"
    not_a_model.write_bytes(b"\x80\x04 a pickle")
    asked = answer_dialogs(monkeypatch, open_=not_a_model, save=tmp_path / "out.onnx")
    window.export_actions.onnx_action.trigger()
    assert [kind for kind, *_ in asked] == ["open", "save"]
    assert asked[1][2].endswith("weights.onnx")
    qtbot.waitUntil(lambda: not window.export_actions.working, timeout=60000)
    assert len(dialogs) == 1 and dialogs[0][1] == "Export failed" and "pickle" in dialogs[0][2]
    assert not (tmp_path / "out.onnx").exists()


def test_cancelling_the_model_choice_does_nothing(make_window, monkeypatch):
    window = make_window()
    asked = answer_dialogs(monkeypatch)  # both dialogs cancelled
    window.export_actions.onnx_action.trigger()
    assert [kind for kind, *_ in asked] == ["open"] and not window.export_actions.working


def test_closing_the_window_during_an_onnx_export_waits_for_the_file(make_window, tmp_path, monkeypatch, qtbot):
    import time

    from perceiver_gui.core import export

    def slow_export(model, out):
        time.sleep(1.0)
        Path(out).write_bytes(b"onnx")
        return out

    monkeypatch.setattr(export, "export_onnx", slow_export)
    window = make_window()
    window.show()
    answer_dialogs(monkeypatch, save=tmp_path / "model.onnx", open_=tmp_path / "model.safetensors")
    window.export_actions.onnx_action.trigger()
    assert window.export_actions.working
    window.close()
    assert window.isVisible() and "Closing once the export" in window.statusBar().currentMessage()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=30000)
    assert (tmp_path / "model.onnx").read_bytes() == b"onnx"


def test_the_status_bar_names_the_run_being_exported_as_the_menu_does(make_window, trained_run, tmp_path, monkeypatch,
                                                                      qtbot):
    import shutil

    from perceiver_gui.core import export
    from perceiver_gui.core.runs import rename_run

    run = tmp_path / "runs" / "20260101-120000-tiny"
    shutil.copytree(trained_run, run)
    rename_run(run, "my digits")
    window = make_window(runs_root=tmp_path / "runs")
    window.runs.refresh()
    assert window.runs.select_runs([str(run)])
    monkeypatch.setattr(export, "export_onnx", lambda model, out: out)
    monkeypatch.setattr(export, "metrics_csv", lambda run, out: 0)
    said = []
    window.export_actions.message.connect(said.append)
    for action, out in ((window.export_actions.metrics_action, "out.csv"),
                        (window.export_actions.onnx_action, "out.onnx")):
        answer_dialogs(monkeypatch, save=tmp_path / out)
        action.trigger()
        qtbot.waitUntil(lambda: not window.export_actions.working, timeout=30000)
    busy = [s for s in said if s.startswith("Exporting")]
    # The menu said “my digits”; the status bar said the folder's name and "model.safetensors".
    assert busy == ["Exporting the metrics of “my digits”…", "Exporting the model of “my digits” as ONNX…"]
