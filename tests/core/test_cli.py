import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from perceiver_gui.cli import main

TINY = ["--set", "model.depth=1", "--set", "model.num_latents=8", "--set", "model.latent_dim=16",
        "--set", "model.latent_heads=1", "--set", "train.epochs=1", "--set", "train.batch_size=64",
        "--set", "train.threads=1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--preset", "digits", *TINY, "--out", str(out)]) == 0
    return out


def test_train_prints_epochs_and_a_summary(trained, capsys):
    assert (trained / "model.safetensors").is_file()
    assert (trained / "metrics.jsonl").stat().st_size > 0


def test_predict_json_gives_one_object_per_input_and_exit_1_when_some_fail(trained, tmp_path, capsys):
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i in range(3):
        img = (digits.images[900 + i] * 255 / 16).astype(np.uint8)
        Image.fromarray(img, mode="L").save(tmp_path / f"digit{i}.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    capsys.readouterr()
    code = main(["predict", "--model", str(trained / "model.safetensors"), str(tmp_path), "--json", "--top-k", "3"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1
    assert len(lines) == 4
    ok = [r for r in lines if "top" in r]
    bad = [r for r in lines if "error" in r]
    assert len(ok) == 3 and len(bad) == 1 and bad[0]["path"].endswith("broken.png")
    for r in ok:
        probs = [t["prob"] for t in r["top"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True)
        assert r["top"][0]["label"] in [str(i) for i in range(10)]


def test_predict_with_only_good_images_exits_0(trained, tmp_path, capsys):
    Image.new("L", (8, 8), 128).save(tmp_path / "grey.png")
    assert main(["predict", "--model", str(trained / "model.safetensors"), str(tmp_path / "grey.png")]) == 0
    assert "grey.png:" in capsys.readouterr().out


def test_a_model_that_cannot_load_exits_2_with_one_sentence(tmp_path, capsys):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"not a model at all")
    assert main(["predict", "--model", str(bad), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert main(["info", str(bad)]) == 2


def test_info_shows_classes_and_config(trained, capsys):
    assert main(["info", str(trained / "model.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "Classes (10): 0, 1, 2" in out and "[model]" in out


def test_config_errors_are_one_sentence(capsys):
    assert main(["train", "--preset", "digits", "--set", "train.nope=1"]) == 2
    err = capsys.readouterr().err
    assert "Unknown setting 'train.nope'" in err and "Traceback" not in err


def test_stopped_run_resumes_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "digits", *TINY, "--set", "train.epochs=2", "--out", str(out)]) == 0
    # A finished run still resumes: it has nothing left to do and says so.
    assert main(["train", "--resume", str(out)]) == 0
    assert "Finished 2 epochs" in capsys.readouterr().out


def test_an_empty_folder_is_reported_not_silently_skipped(trained, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["predict", "--model", str(trained / "model.safetensors"), str(tmp_path / "empty"), "--json"]) == 1
    assert "no image files" in json.loads(capsys.readouterr().out)["error"]


def test_info_into_a_closed_pipe_is_quiet(trained):
    import subprocess
    import sys

    reader = subprocess.Popen(["head", "-n", "1"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    proc = subprocess.run([sys.executable, "-m", "perceiver_gui", "info", str(trained / "model.safetensors")],
                          stdout=reader.stdin, stderr=subprocess.PIPE, text=True)
    reader.stdin.close()
    reader.wait()
    assert proc.returncode == 0 and "Broken pipe" not in proc.stderr


def test_export_csv_writes_a_row_per_logged_step_and_epoch(trained, tmp_path, capsys):
    from perceiver_gui.core.runs import read_metrics

    out = tmp_path / "metrics.csv"
    assert main(["export", "--run", str(trained), "--format", "csv", "--out", str(out)]) == 0
    records = read_metrics(trained).records
    assert f"Wrote {len(records)} rows" in capsys.readouterr().out
    lines = out.read_text().splitlines()
    assert lines[0].startswith("type,epoch,step,") and len(lines) == 1 + len(records)
    assert main(["export", "--run", str(trained), "--out", str(tmp_path / "again.csv")]) == 0  # format from suffix


def test_export_problems_are_one_sentence_and_exit_2(trained, tmp_path, capsys):
    for argv in (["--run", str(tmp_path / "missing"), "--out", str(tmp_path / "m.csv")],
                 ["--model", str(trained / "model.safetensors"), "--format", "csv", "--out", str(tmp_path / "m.csv")],
                 ["--model", str(trained / "config.json"), "--out", str(tmp_path / "m.onnx")],
                 ["--run", str(trained), "--out", str(tmp_path / "m")]):
        assert main(["export", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_export_onnx_writes_a_model_onnxruntime_runs(trained, tmp_path, capsys):
    import onnx
    import onnxruntime

    out = tmp_path / "digits.onnx"
    assert main(["export", "--model", str(trained / "model.safetensors"), "--format", "onnx", "--out", str(out)]) == 0
    assert "as ONNX to" in capsys.readouterr().out
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props["class_names"]) == [str(i) for i in range(10)]
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (probs,) = session.run(["probabilities"], {"image": np.zeros((4, 8, 8, 1), np.float32)})
    assert probs.shape == (4, 10) and np.allclose(probs.sum(1), 1.0, atol=1e-5)


# -- signals, the lock, a vanished run folder -----------------------------------------------------------
def _cli_train(*argv):
    """`perceiver-gui train ...` as its own process, on one thread, printing as it goes."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "perceiver_gui", "train", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def _wait_for_epoch(proc, epoch: int) -> list[str]:
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(f"epoch {epoch:3d}"):
            return lines
    raise AssertionError("".join(lines))


@pytest.mark.slow
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_save_the_run_like_ctrl_c_and_it_resumes(tmp_path, signame, capsys):
    import signal

    from perceiver_gui.core import runs

    out = tmp_path / "run"
    proc = _cli_train("--preset", "digits", *TINY, "--set", "train.epochs=6", "--out", str(out))
    _wait_for_epoch(proc, 1)
    proc.send_signal(getattr(signal, signame))
    rest = proc.stdout.read()
    assert proc.wait(60) == 0, rest
    assert "Stopped at step" in rest and f"perceiver-gui train --resume {out}" in rest
    record = runs.read_run(out)
    assert record.status == "stopped" and record.epochs_done >= 1
    assert main(["train", "--resume", str(out)]) == 0
    assert runs.read_run(out).status == "completed" and runs.read_run(out).epochs_done == 6
    assert "Finished 6 epochs" in capsys.readouterr().out


@pytest.mark.slow
def test_a_run_folder_deleted_mid_run_stops_training_says_so_and_exits_non_zero(tmp_path):
    import shutil

    out = tmp_path / "run"
    proc = _cli_train("--preset", "digits", *TINY, "--set", "train.epochs=200", "--out", str(out))
    _wait_for_epoch(proc, 1)
    # Renamed away in one step, then deleted: rmtree alone races the trainer's next write into the folder.
    gone = tmp_path / "gone"
    out.rename(gone)
    shutil.rmtree(gone)
    rest = proc.stdout.read()
    assert proc.wait(60) == 1, rest
    assert "deleted or renamed" in rest and "Finished" not in rest
    assert not out.exists()


def test_a_second_trainer_of_a_run_is_refused_naming_the_process_and_exits_2(trained, capsys):
    from tests.core.test_runs import hold_lock

    proc = hold_lock(trained)
    try:
        assert main(["train", "--resume", str(trained)]) == 2  # nothing ran: the run given cannot be used now
    finally:
        proc.kill()
        proc.wait()
    assert f"is being trained by process {proc.pid}" in capsys.readouterr().err


# -- exit codes, stderr and --debug --------------------------------------------------------------
def _cli(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """The command as a user runs it, in its own process, with a timeout so a hang fails the test."""
    return subprocess.run([sys.executable, "-m", "perceiver_gui", *argv], capture_output=True, text=True,
                          timeout=timeout)


def test_a_config_error_exits_2_on_stderr_and_creates_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "digits", "--set", "model.depth=10000", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: model.depth must be between 1 and 64")
    assert captured.err.count("\n") == 1 and captured.out == ""
    assert not out.exists()


def test_unknown_settings_and_usage_errors_exit_2(capsys):
    assert main(["train", "--preset", "digits", "--set", "train.nope=1"]) == 2
    assert capsys.readouterr().err.startswith("error: Unknown setting 'train.nope'")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--no-such-option"])
    assert exit_info.value.code == 2


def test_data_that_cannot_be_used_exits_2_with_its_sentence_on_stderr(tmp_path, capsys):
    missing = tmp_path / "no-such-folder"
    assert main(["train", "--preset", "digits", *TINY, "--set", "data.dataset=folder",
                 "--set", f"data.folder={missing}", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(missing) in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # a failed start leaves no folder behind


def test_a_run_that_fails_while_training_exits_1(tmp_path, capsys, monkeypatch):
    import errno

    from perceiver_gui.core import checkpoints

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoints, "save_training_state", disk_full)
    assert main(["train", "--preset", "digits", *TINY, "--out", str(tmp_path / "run")]) == 1
    assert "No space left on device" in capsys.readouterr().err


def test_a_missing_model_file_exits_2(tmp_path, capsys):
    assert main(["predict", "--model", str(tmp_path / "nope.safetensors"), str(tmp_path)]) == 2
    assert main(["info", str(tmp_path / "nope.safetensors")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


@pytest.mark.parametrize("argv", [["--debug", "train", "--set", "model.depth=x"],
                                  ["train", "--debug", "--set", "model.depth=x"]], ids=["before", "after"])
def test_debug_shows_the_traceback_in_either_position(argv, capsys):
    assert main(argv) == 2
    assert "Traceback" in capsys.readouterr().err


# -- names reach the terminal escaped ------------------------------------------------------------
def _odd_model(path: Path, class_names: tuple[str, ...]) -> Path:
    import torch

    from perceiver_gui.config import preset
    from perceiver_gui.core.checkpoints import ModelMeta, save_model
    from perceiver_gui.core.model import build_model

    cfg = preset("digits").with_updates({"model.num_classes": len(class_names), "name": "odd\x1b]0;pwned\x07"})
    torch.manual_seed(0)
    meta = ModelMeta(config=cfg, class_names=class_names, mean=(0.5,), std=(0.25,), image_size=(8, 8), channels=1,
                     summary={"best_acc": 0.5, "note\x1b[2J": "x\ny"})
    return save_model(path, build_model(cfg.model).state_dict(), meta)


def _raw_control(text: str) -> list[str]:
    return [ch for ch in text if not ch.isprintable() and ch != "\n"]


def test_file_and_class_names_cannot_forge_lines_or_send_escapes(tmp_path, capsys):
    model = _odd_model(tmp_path / "model.safetensors", ("\x1b[31mred", "two\nlines: 1 100.0%", "\u202eevil", "ok"))
    images = tmp_path / "images"
    images.mkdir()
    forged = images / "x.png: 9 99.9%\ny.png"
    Image.new("L", (8, 8), 100).save(forged, format="PNG")
    (images / "bell\x07.png").write_bytes(b"not an image")
    capsys.readouterr()
    assert main(["predict", "--model", str(model), str(images), "--top-k", "4"]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) == 2, out  # one line per file, whatever the names hold
    assert not _raw_control(out), out
    assert not any(line.startswith("y.png") for line in lines)
    assert "\\n" in out and "\\x1b" in out

    assert main(["info", str(model)]) == 0
    out = capsys.readouterr().out
    assert not _raw_control(out), out
    assert "two\\nlines" in out


@pytest.mark.slow
def test_undecodable_file_names_are_shown_not_crashed_on(trained, tmp_path):
    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9.png")
    Image.new("L", (8, 8), 100).save(open(raw, "wb"), format="PNG")
    proc = _cli("predict", "--model", str(trained / "model.safetensors"), str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "caf\\xe9.png:" in proc.stdout


# -- non-regular files ---------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_among_the_images_is_refused_not_waited_on(trained, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("L", (8, 8), 100).save(images / "good.png")
    os.mkfifo(images / "pipe.png")
    # The FIFO given by name and found in a folder; a subprocess, so that a hang fails by timeout.
    proc = _cli("predict", "--model", str(trained / "model.safetensors"), str(images / "pipe.png"), str(images),
                timeout=30)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3 and sum(line.startswith(f"{images / 'good.png'}: ") for line in lines) == 1
    bad = [line for line in lines if "pipe.png" in line]
    assert len(bad) == 2 and all("named pipe (FIFO), not a regular file" in line for line in bad)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_as_the_model_is_refused_not_waited_on(tmp_path, capsys):
    import threading

    os.mkfifo(tmp_path / "model.safetensors")
    os.mkfifo(tmp_path / "evaluation.safetensors")
    for argv in (["predict", "--model", str(tmp_path / "model.safetensors"), str(tmp_path)],
                 ["info", str(tmp_path / "model.safetensors")], ["info", str(tmp_path / "evaluation.safetensors")]):
        codes = []
        worker = threading.Thread(target=lambda argv=argv, codes=codes: codes.append(main(argv)), daemon=True)
        worker.start()
        worker.join(20)
        assert codes == [2], f"{argv} is still waiting on the FIFO" if not codes else codes
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "regular file" in err, err


# -- info says what each of the app's files is ---------------------------------------------------
def test_info_describes_each_file_of_a_run(trained, capsys):
    expected = {
        "model.safetensors": "Model:",
        "resume.safetensors": "Resume file:",
        "evaluation.safetensors": "Evaluation file:",
        "config.json": "Config file:",
        "run.json": "Run folder:",
        "metrics.jsonl": "Run folder:",
        ".": "Run folder:",
    }
    for name, heading in expected.items():
        path = trained / name if name != "." else trained
        assert path.exists(), name
        assert main(["info", str(path)]) == 0, (name, capsys.readouterr().err)
        out = capsys.readouterr().out
        assert out.startswith(heading), (name, out)
        assert "damaged" not in out
    assert main(["info", str(trained / "evaluation.safetensors")]) == 0
    assert "10 classes" in capsys.readouterr().out


@pytest.mark.slow
def test_a_name_that_is_not_utf8_is_refused_with_a_sentence(tmp_path):
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    argv = [sys.executable.encode(), b"-m", b"perceiver_gui", b"train", b"--preset", b"digits",
            b"--set", b"name=caf\xe9", b"--out", os.fsencode(tmp_path / "run")]
    proc = subprocess.run(argv, capture_output=True, timeout=60, env=env)
    err = proc.stderr.decode("utf-8")  # whatever the name held, what is printed is UTF-8
    assert proc.returncode == 2 and err.startswith("error: name holds bytes that are not UTF-8"), err
    assert not (tmp_path / "run").exists()
