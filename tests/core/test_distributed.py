"""Data-parallel training on the CPU with gloo: a 2-process run learns like a 1-process run, stops and resumes
bit-exactly, survives a killed rank resumably, and the launcher's mistakes each end with one sentence."""

import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from perceiver_gui.cli import main
from perceiver_gui.core import checkpoints, runs
from perceiver_gui.core.events import (
    CheckpointSaved,
    DownloadProgress,
    EpochEnd,
    Finished,
    Log,
    RunStarted,
    Step,
    from_json,
    to_json,
)
from perceiver_gui.core.training import resume, train
from tests.core.train_fixtures import tiny_digits

ROOT = Path(__file__).resolve().parents[2]
# The tiny digits config of tests/core/train_fixtures.py, as command-line settings.
TINY = [item for key, value in {
    "name": "tiny", "model.depth": 1, "model.num_latents": 8, "model.latent_dim": 16, "model.latent_heads": 1,
    "model.latent_dim_head": 8, "model.cross_dim_head": 8, "model.num_freq_bands": 2, "model.cross_heads": 1,
    "train.mixup": 0, "train.epochs": 2, "train.batch_size": 32, "train.threads": 1, "train.schedule": "constant",
    "train.lr": 0.01, "data.crop_padding": 0,
    "train.save_every_s": 0,  # a resume file at every epoch end, as the crash tests expect (like tiny_digits)
}.items() for item in ("--set", f"{key}={value}")]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "perceiver_gui", "train", "--events", "jsonl", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)


def _events(proc: subprocess.Popen, on_event=None) -> list:
    events = []
    for line in proc.stdout:
        event = from_json(line)
        events.append(event)
        if on_event is not None:
            on_event(event)
    proc.wait(timeout=120)
    return events


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return checkpoints.load_training_state(run_dir / runs.RESUME_FILE).model_state


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the event lines -----------------------------------------------------------------------------
EVERY_EVENT = [
    RunStarted(run_dir="/r", device="cpu", device_name="CPU (1 thread)", parameters=10, train_size=5, test_size=3,
               class_names=("a", "b"), steps_per_epoch=2, total_steps=4, start_step=0, start_epoch=0, val_size=2),
    Step(epoch=1, step=1, total_steps=4, loss=math.inf, lr=0.1, images_per_s=12.5, eta_s=math.nan),
    EpochEnd(epoch=1, step=2, train_loss=0.5, train_acc=0.25, val_loss=0.75, val_acc=0.5, per_class_acc=(1.0, math.nan),
             confusion=((1, 0), (2, 0)), elapsed_s=1.5, is_best=True),
    CheckpointSaved(path="/r/model.safetensors", epoch=1, step=2, reason="best"),
    DownloadProgress(name="CIFAR-10", done_bytes=10, total_bytes=0),
    Log(message="a \"quoted\"\nline", level="warning"),
    Finished(status="failed", message="It failed.", best_val_acc=math.nan, best_epoch=0, epochs_done=0, run_dir="",
             model_path="", test_acc=0.5, test_loss=math.inf),
]


@pytest.mark.parametrize("event", EVERY_EVENT, ids=lambda e: type(e).__name__)
def test_every_event_class_survives_its_json_line(event):
    line = to_json(event)
    assert "\n" not in line
    back = from_json(line)
    assert type(back) is type(event)
    assert repr(back) == repr(event)  # (repr, since nan != nan)


@pytest.mark.parametrize("line", ["not json", "[1, 2]", '{"event": "Nope"}', '{"event": "Log", "oops": 1}'])
def test_a_line_that_is_not_an_event_is_refused_with_a_sentence(line):
    with pytest.raises(ValueError, match="event line|wrong fields"):
        from_json(line)


# -- gradients ---------------------------------------------------------------------------------------
WORKER = textwrap.dedent("""
    import sys, torch
    from safetensors.torch import save_file
    from perceiver_gui.core.distributed import Dist
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    x, y = torch.randn(64, 6, dtype=torch.float64), torch.randint(0, 3, (64,))
    d = Dist.from_environment(torch.device("cpu"))
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    for step in range(8):
        batch = slice(step % 4 * 16, step % 4 * 16 + 16)  # a global batch of 16
        mine = d.my_slice(16)
        loss = torch.nn.functional.cross_entropy(model(x[batch][mine]), y[batch][mine])
        opt.zero_grad()
        loss.backward()
        d.average_gradients(model)
        opt.step()
    if d.main:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, sys.argv[1])
    d.close()
""")


@pytest.mark.slow
def test_two_processes_average_gradients_to_the_one_process_step_in_float64(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = str(_free_port())
    results = {}
    for world in (1, 2):
        out = tmp_path / f"w{world}.safetensors"
        procs = [subprocess.Popen([sys.executable, str(script), str(out)], env={
            **_env(), "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": str(world), "LOCAL_WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}) for r in range(world)]
        assert [p.wait(timeout=60) for p in procs] == [0] * world
        from safetensors.torch import load_file

        results[world] = load_file(out)
    diff = max((results[1][k] - results[2][k]).abs().max().item() for k in results[1])
    assert diff < 1e-14, diff  # measured: ~2e-16, the rounding of a sum in another order


# -- whole runs ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "run"
    proc = _start("--nproc-per-node", "2", "--preset", "digits", *TINY, "--out", str(out))
    events = _events(proc)
    assert proc.returncode == 0, proc.stderr.read()
    return out, events


@pytest.mark.slow
def test_a_two_process_run_learns_like_the_one_process_run(two_process_run, tmp_path):
    out, events = two_process_run
    single = tmp_path / "single"
    one = list(train(tiny_digits(), out_dir=single))
    assert one[-1].status == "completed"
    a, b = _weights(single), _weights(out)
    assert all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-5) for k in a)  # float32: sums in another order
    ends = [e for e in events if isinstance(e, EpochEnd)]
    one_ends = [e for e in one if isinstance(e, EpochEnd)]
    assert len(ends) == 2
    for two, ref in zip(ends, one_ends, strict=True):
        assert sum(map(sum, two.confusion)) == 90  # each validation image counted once, not once per process
        assert two.val_acc == pytest.approx(ref.val_acc, abs=2 / 90)
        assert two.train_loss == pytest.approx(ref.train_loss, rel=1e-4)
    assert events[-1].test_acc == pytest.approx(one[-1].test_acc, abs=2 / 899)  # the 899 test images, once
    steps = [e for e in events if isinstance(e, Step)]
    assert [s.step for s in steps] == list(range(1, 51))  # one rank speaks: each step once (808 images / 32)
    assert any(isinstance(e, Log) and "2 processes" in e.message for e in events)
    assert runs.read_run(out).status == "completed"
    assert len(runs.read_metrics(out).records) > 0


@pytest.mark.slow
def test_a_stopped_two_process_run_resumes_bit_identical_to_an_uninterrupted_one(two_process_run, tmp_path):
    out = tmp_path / "run"
    pause = tmp_path / "pause"
    proc = _start("--nproc-per-node", "2", "--preset", "digits", *TINY, "--out", str(out), "--pause-file", str(pause))

    def stop_mid_epoch_2(event):
        if isinstance(event, Step) and event.step == 38 and not pause.exists():
            pause.touch()  # pauses every rank at the next step, then SIGTERM (as the app's Stop) stops them
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)

    events = _events(proc, stop_mid_epoch_2)
    assert events[-1].status == "stopped", events[-1]
    stopped_at = max(e.step for e in events if isinstance(e, Step))
    assert 38 <= stopped_at < 50
    pause.unlink()
    proc = _start("--nproc-per-node", "2", "--resume", str(out))
    resumed = _events(proc)
    assert resumed[-1].status == "completed", resumed[-1]
    assert not any(isinstance(e, Log) and "bit-exact" in e.message for e in resumed)
    a, b = _weights(two_process_run[0]), _weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_ctrl_c_in_a_terminal_stops_every_process_at_one_step_and_saves(tmp_path):
    """The terminal sends SIGINT to the launcher and every process at once, and the launcher passes it on
    again: one stop, at one step, saved there; not an interruption that loses the epoch."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "perceiver_gui", "train", "--events", "jsonl", "--nproc-per-node",
                             "2", "--preset", "digits", *TINY, "--set", "train.epochs=20", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT,
                            start_new_session=True)

    def ctrl_c(event):
        if isinstance(event, Step) and event.step == 30:
            os.killpg(proc.pid, signal.SIGINT)

    events = _events(proc, ctrl_c)
    assert proc.returncode == 0, proc.stderr.read()
    finished = events[-1]
    assert finished.status == "stopped" and "Stopped at step" in finished.message
    stopped_at = max(e.step for e in events if isinstance(e, Step))
    saved = checkpoints.load_training_state(out / runs.RESUME_FILE)
    assert saved.progress["step"] == stopped_at > 25  # saved where it stopped, inside epoch 2
    assert proc.stderr.read() == ""  # nothing from the launcher


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _rank_of(pid: int) -> int | None:
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    ranks = [int(item[5:]) for item in env if item.startswith(b"RANK=")]
    return ranks[0] if ranks else None


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the rank's process in /proc")
def test_when_one_rank_is_killed_the_run_ends_with_a_sentence_and_resumes(tmp_path):
    out = tmp_path / "run"
    pause = tmp_path / "pause"
    proc = _start("--nproc-per-node", "2", "--preset", "digits", *TINY, "--out", str(out), "--pause-file", str(pause))

    def kill_rank_1_in_epoch_2(event):
        if isinstance(event, Step) and event.step == 32 and not pause.exists():
            pause.touch()
            rank1 = [pid for pid in _children(proc.pid) if _rank_of(pid) == 1]
            assert rank1
            os.kill(rank1[0], signal.SIGKILL)

    events = _events(proc, kill_rank_1_in_epoch_2)
    err = proc.stderr.read()
    assert proc.returncode == 1
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.status == "failed"
    assert "stopped answering" in finished.message and "--resume" in finished.message
    assert "Process 1 of the run was killed by SIGKILL" in err and "Traceback" not in err
    status = runs.read_run(out)
    assert status.status == "failed" and status.message == finished.message
    assert runs.lock_holder(out) == ""
    pause.unlink()
    again = list(resume(out))  # with one process, from the end of epoch 1
    assert again[-1].status == "completed", again[-1]
    assert any(isinstance(e, Log) and "no longer bit-exact" in e.message for e in again)
    assert [e.epoch for e in again if isinstance(e, EpochEnd)] == [2]


# -- the launcher's sentences ----------------------------------------------------------------------
def test_a_bad_process_count_is_one_sentence_and_exit_2(capsys):
    assert main(["train", "--preset", "digits", "--nproc-per-node", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--nproc-per-node must be 1 or more" in err


def test_a_batch_that_does_not_split_over_the_processes_is_refused_before_launching(capsys):
    assert main(["train", "--preset", "digits", "--set", "train.batch_size=32", "--nproc-per-node", "3"]) == 2
    assert "does not split evenly over 3 processes; choose a multiple of 3" in capsys.readouterr().err


def _launch_fails(tmp_path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "perceiver_gui", "train", "--preset", "digits", *TINY,
                           "--out", str(tmp_path / "run"), *args], capture_output=True, text=True, env=_env(),
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "run").exists()
    return proc.stderr


@pytest.mark.slow
def test_a_rendezvous_port_in_use_is_one_sentence(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        err = _launch_fails(tmp_path, "--nproc-per-node", "2", "--rdzv-endpoint", f"127.0.0.1:{port}")
    assert f"127.0.0.1:{port} is in use by another program; choose another port" in err


@pytest.mark.slow
def test_an_unreachable_rendezvous_is_one_sentence(tmp_path):
    port = _free_port()  # nobody listens there: machine 0 never came
    err = _launch_fails(tmp_path, "--nnodes", "2", "--node-rank", "1", "--rdzv-endpoint", f"127.0.0.1:{port}",
                        "--rdzv-timeout", "3")
    assert f"Could not meet the other machines at 127.0.0.1:{port} within 3 s" in err
