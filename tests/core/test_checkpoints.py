"""Checkpoints: round trips, tied weights, resume that continues bit for bit, and hostile files."""

from __future__ import annotations

import json
import math
import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save as st_save
from safetensors.torch import save_file

import perceiver_gui.core.files as files
from perceiver_gui.config import Config, ModelConfig
from perceiver_gui.core.checkpoints import (
    CheckpointError,
    ModelMeta,
    check_state_dict,
    load_model,
    load_training_state,
    read_meta,
    save_model,
    save_training_state,
)


def tiny_meta(**summary) -> ModelMeta:
    cfg = Config(name="tiny", model=ModelConfig(input_channels=1, num_classes=3, depth=1, latent_dim=8))
    return ModelMeta(config=cfg, class_names=("cat", "dog", "emu"), mean=(0.5,), std=(0.25,), image_size=(8, 6),
                     channels=1, summary={"best_acc": 0.75, "best_epoch": 3, "dataset": "Digits", **summary})


def tiny_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {
        "encoder.weight": torch.randn(4, 3),
        "encoder.bias": torch.randn(4),
        "half": torch.randn(2, 2).to(torch.bfloat16),
        "counter": torch.tensor(7, dtype=torch.int64),
    }


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    return save_model(tmp_path / "model.safetensors", tiny_state(), tiny_meta())


def refuse(path: Path, loader=load_model) -> str:
    """The one sentence a loader refuses `path` with."""
    with pytest.raises(CheckpointError) as info:
        loader(path)
    message = str(info.value)
    assert "\n" not in message and message.endswith(".") and message.count(". ") == 0, message
    return message


# -- model files -----------------------------------------------------------------------------
def test_model_round_trip_keeps_weights_dtypes_and_meta(model_file: Path):
    state, meta = load_model(model_file)
    assert meta == tiny_meta() and read_meta(model_file) == meta
    assert meta.format == "perceiver-gui/1" and meta.config.model.num_classes == 3
    expected = tiny_state()
    assert state.keys() == expected.keys()
    for name, tensor in expected.items():
        assert state[name].dtype == tensor.dtype and torch.equal(state[name], tensor), name


def test_model_file_is_plain_safetensors_with_json_metadata(model_file: Path):
    from safetensors import safe_open

    with safe_open(model_file, framework="pt") as fh:  # another tool can read it without us
        assert set(fh.keys()) == set(tiny_state())
        raw = json.loads(fh.metadata()["perceiver_gui"])
    assert raw["class_names"] == ["cat", "dog", "emu"] and raw["config"]["name"] == "tiny"


def test_non_finite_summary_values_are_stored_as_missing(tmp_path: Path):
    path = save_model(tmp_path / "m.safetensors", tiny_state(), tiny_meta(test_acc=math.nan))
    assert read_meta(path).summary["test_acc"] is None


def test_tied_weights_are_stored_once_and_come_back_tied(tmp_path: Path):
    shared = torch.nn.Linear(64, 64)
    model = torch.nn.ModuleList([shared, shared, torch.nn.Linear(64, 3)])  # as weight_tie_layers does
    path = save_model(tmp_path / "tied.safetensors", model.state_dict(), tiny_meta())
    assert path.stat().st_size < 2 * 64 * 64 * 4  # one copy of the 64×64 weight, not two
    state, _ = load_model(path)
    assert state["0.weight"] is state["1.weight"]
    fresh = torch.nn.ModuleList([torch.nn.Linear(64, 64)] * 2 + [torch.nn.Linear(64, 3)])
    check_state_dict(state, fresh)
    fresh.load_state_dict(state)
    assert torch.equal(fresh[1].weight, shared.weight)


def test_views_of_one_storage_are_saved_as_separate_tensors(tmp_path: Path):
    base = torch.arange(12.0)
    state = {"a": base[:6].view(2, 3), "b": base[6:], "c": base.view(3, 4).t()}
    loaded, _ = load_model(save_model(tmp_path / "v.safetensors", state, tiny_meta()))
    for name, tensor in state.items():
        assert torch.equal(loaded[name], tensor)


def test_saving_inconsistent_meta_is_a_programming_error(tmp_path: Path):
    meta = tiny_meta()
    bad = ModelMeta(config=meta.config, class_names=("only", "two"), mean=meta.mean, std=meta.std,
                    image_size=meta.image_size, channels=1)
    with pytest.raises(ValueError, match="class names"):
        save_model(tmp_path / "m.safetensors", tiny_state(), bad)
    assert not (tmp_path / "m.safetensors").exists()


def test_check_state_dict_names_what_does_not_fit():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    state = dict(model.state_dict())
    check_state_dict(state, model)
    del state["1.bias"]
    state["2.weight"] = torch.zeros(1)
    state["0.weight"] = torch.zeros(5, 4)
    with pytest.raises(CheckpointError) as info:
        check_state_dict(state, model)
    message = str(info.value)
    assert "1 weight missing (such as '1.bias')" in message
    assert "1 unknown weight (such as '2.weight')" in message
    assert "'0.weight' is (5, 4) where the model has (3, 4)" in message


# -- hostile and broken files ----------------------------------------------------------------
class RunsCode:
    """Unpickling this runs a shell command; loading a checkpoint must never do that."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def write_safetensors(path: Path, metadata: dict[str, str] | None) -> Path:
    save_file({"w": torch.zeros(2)}, path, metadata=metadata)
    return path


def with_our_metadata(path: Path, **changes) -> Path:
    raw = tiny_meta().to_json() | {"aliases": {}} | changes
    return write_safetensors(path, {"perceiver_gui": json.dumps(raw)})


def hostile(tmp_path: Path, kind: str) -> tuple[Path, tuple[str, ...]]:
    """A file of the given kind and the words its refusal must contain."""
    p = tmp_path / f"{kind}.safetensors"
    marker = tmp_path / "marker"
    if kind == "pickle":
        p.write_bytes(pickle.dumps({"weights": RunsCode(marker)}, protocol=4))
        return p, ("is a Python pickle", "never loads pickles", "run code")
    if kind == "pickle_protocol0":
        p.write_bytes(pickle.dumps(RunsCode(marker), protocol=0))
        return p, ("not a Perceiver GUI checkpoint",)
    if kind == "torch_zip":
        p = tmp_path / "model.pt"
        torch.save({"weights": torch.zeros(3), "evil": RunsCode(marker)}, p)
        return p, ("PyTorch zip checkpoint", "export it to safetensors")
    if kind == "torch_legacy":
        p = tmp_path / "model.pth"
        torch.save({"evil": RunsCode(marker)}, p, _use_new_zipfile_serialization=False)
        return p, ("is a Python pickle",)
    if kind == "zip":
        with zipfile.ZipFile(p, "w") as z:
            z.writestr("readme.txt", "hello")
        return p, ("zip archive", "not a Perceiver GUI checkpoint")
    if kind == "numpy":
        np.save(tmp_path / "a.npy", np.zeros(3))
        return tmp_path / "a.npy", ("NumPy array file",)
    if kind == "random":
        p.write_bytes(np.random.default_rng(0).bytes(4096))
        return p, ("not a Perceiver GUI checkpoint", "not a safetensors file")
    if kind == "text":
        p.write_text("this is not a model\n")
        return p, ("not a safetensors file",)
    if kind == "empty":
        p.write_bytes(b"")
        return p, ("is empty",)
    if kind == "tiny":
        p.write_bytes(b"\x01\x02")
        return p, ("too short",)
    if kind == "absurd_header_length":
        p.write_bytes(struct.pack("<Q", 2**63) + b'{"__metadata__":{}}')
        return p, ("not a safetensors file",)
    if kind == "header_longer_than_file":
        p.write_bytes(struct.pack("<Q", 10_000) + b'{"__metadata__":{}}')
        return p, ("cut short", "interrupted")
    if kind == "nested_header":
        body = b"[" * 200_000
        p.write_bytes(struct.pack("<Q", len(body)) + body)
        return p, ("not a safetensors header",)
    if kind == "bad_offsets":
        body = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, -8]}}).encode()
        p.write_bytes(struct.pack("<Q", len(body)) + body + bytes(8))
        return p, ("damaged", "'w'")
    if kind == "foreign_safetensors":
        return write_safetensors(p, {"format": "pt"}), ("safetensors file but not a Perceiver GUI checkpoint",
                                                         "another program")
    if kind == "no_metadata":
        return write_safetensors(p, None), ("no perceiver_gui metadata",)
    if kind == "metadata_not_json":
        return write_safetensors(p, {"perceiver_gui": "{not json"}), ("damaged", "not valid JSON")
    if kind == "future_format":
        return with_our_metadata(p, format="perceiver-gui/2"), ("newer Perceiver GUI", "perceiver-gui/2", "update")
    if kind == "no_format":
        return with_our_metadata(p, format="something-else/1"), ("damaged", "format")
    if kind == "unknown_config_key":
        raw_cfg = tiny_meta().config.to_dict()
        raw_cfg["model"]["warp_drive"] = 9
        return with_our_metadata(p, config=raw_cfg), ("config this version", "warp_drive")
    if kind == "unbuildable_config":
        raw_cfg = tiny_meta().config.to_dict()
        raw_cfg["model"]["depth"] = 0
        return with_our_metadata(p, config=raw_cfg), ("cannot be built", "depth")
    if kind == "class_count_mismatch":
        return with_our_metadata(p, class_names=["a", "b"]), ("damaged", "class names")
    if kind == "no_kind":
        return with_our_metadata(p, kind=None), ("damaged", "what kind")
    if kind == "folder":
        folder = tmp_path / "run"
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"")
        return folder, ("is a folder", "model.safetensors file inside it")
    if kind == "missing":
        return tmp_path / "nope.safetensors", ("There is no checkpoint file",)
    raise AssertionError(kind)


HOSTILE = [
    "pickle", "pickle_protocol0", "torch_zip", "torch_legacy", "zip", "numpy", "random", "text", "empty", "tiny",
    "absurd_header_length", "header_longer_than_file", "nested_header", "bad_offsets", "foreign_safetensors",
    "no_metadata", "metadata_not_json", "future_format", "no_format", "unknown_config_key", "unbuildable_config",
    "class_count_mismatch", "no_kind", "folder", "missing",
]


@pytest.mark.parametrize("kind", HOSTILE)
@pytest.mark.parametrize("loader", [read_meta, load_model, load_training_state], ids=lambda f: f.__name__)
def test_anything_but_our_checkpoint_is_refused_with_one_sentence(tmp_path: Path, kind: str, loader):
    path, words = hostile(tmp_path, kind)
    if loader is load_training_state and kind in ("unknown_config_key", "unbuildable_config", "class_count_mismatch"):
        words = ("is a model file, not a training-resume file",)  # its model meta is never looked at
    message = refuse(path, loader)
    for word in words:
        assert word in message, message
    assert str(path) in message
    assert not (tmp_path / "marker").exists()  # nothing in the file ran


def test_pickled_code_is_never_run_whatever_the_file_is_called(tmp_path: Path):
    marker = tmp_path / "marker"
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        path = tmp_path / f"model{protocol}.safetensors"
        path.write_bytes(pickle.dumps(RunsCode(marker), protocol=protocol))
        for loader in (read_meta, load_model, load_training_state):
            refuse(path, loader)
    assert not marker.exists()
    # The control: these bytes really do run code when unpickled.
    pickle.loads((tmp_path / "model0.safetensors").read_bytes())
    assert marker.exists()


def test_a_file_cut_at_any_byte_is_refused(model_file: Path, tmp_path: Path):
    data = model_file.read_bytes()
    cut = tmp_path / "cut.safetensors"
    for n in range(len(data)):
        cut.write_bytes(data[:n])
        for loader in (read_meta, load_model):
            with pytest.raises(CheckpointError):
                loader(cut)
    cut.write_bytes(data[: len(data) - 5])
    assert "cut short" in refuse(cut)
    cut.write_bytes(data + b"junk")
    assert "unexpected bytes" in refuse(cut)


def test_flipped_bytes_either_load_or_are_refused_never_crash(model_file: Path, tmp_path: Path):
    data = model_file.read_bytes()
    header_end = 8 + int.from_bytes(data[:8], "little")
    rng = np.random.default_rng(0)
    damaged = tmp_path / "damaged.safetensors"
    refused = 0
    for _ in range(600):
        mutated = bytearray(data)
        for pos in rng.integers(0, header_end, rng.integers(1, 4)):  # the header is where parsing happens
            mutated[pos] = int(rng.integers(0, 256))
        damaged.write_bytes(bytes(mutated))
        for loader in (read_meta, load_model):
            try:
                loader(damaged)
            except CheckpointError:
                refused += 1
    assert refused > 1000  # nearly all damage is noticed; the rest (a changed digit in a summary) is harmless


def test_resume_file_and_model_file_are_not_mixed_up(tmp_path: Path, model_file: Path):
    resume = save_training_state(tmp_path / "resume.safetensors", model_state=tiny_state(), optimizer_state={
        "state": {}, "param_groups": []}, scheduler_state={}, scaler_state=None, progress={"step": 1})
    assert "training-resume file, not a model" in refuse(resume, read_meta)
    assert "use the model.safetensors file next to it" in refuse(resume, load_model)
    assert "model file, not a training-resume file" in refuse(model_file, load_training_state)


# -- atomic writes ---------------------------------------------------------------------------
def test_a_failed_save_leaves_the_previous_model_loadable(tmp_path: Path, monkeypatch):
    path = save_model(tmp_path / "model.safetensors", tiny_state(), tiny_meta())

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", crash)
    bigger = {"encoder.weight": torch.ones(100, 100)}
    with pytest.raises(OSError):
        save_model(path, bigger, tiny_meta(best_acc=0.99))
    monkeypatch.undo()
    state, meta = load_model(path)
    assert meta.summary["best_acc"] == 0.75 and state.keys() == tiny_state().keys()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]  # no temp file left behind


WRITER = textwrap.dedent("""
    import sys, torch
    from tests.core.test_checkpoints import tiny_meta
    from perceiver_gui.core.checkpoints import save_model
    path = sys.argv[1]
    i = 0
    while True:
        i += 1
        save_model(path, {"w": torch.full((512, 1024), float(i))}, tiny_meta(best_epoch=i))
        print(i, flush=True)
""")


@pytest.mark.slow
def test_killing_the_process_while_it_saves_never_leaves_a_broken_file(tmp_path: Path):
    path = tmp_path / "model.safetensors"
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=repo, stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(3):  # let it overwrite the file a few times
            assert proc.stdout.readline(), "the writer died"
        deadline = time.monotonic() + 10
        while not list(tmp_path.glob(".model.safetensors.*.tmp")) and time.monotonic() < deadline:
            pass  # a temporary file exists: it is in the middle of writing the next one
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    state, meta = load_model(path)
    assert meta.summary["best_epoch"] >= 3
    assert torch.all(state["w"] == meta.summary["best_epoch"])  # weights and meta from the same save


# -- training state --------------------------------------------------------------------------
def make_run(seed: int, optimizer: str, schedule: str):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 3))
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    elif optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.99))
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.05, amsgrad=True)
    if schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=20)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.9**step)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    return model, opt, sched, scaler


def train_steps(model, opt, sched, scaler, steps: int) -> None:
    for _ in range(steps):
        x, y = torch.randn(6, 5), torch.randint(0, 3, (6,))  # the global RNG must be restored too
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("schedule", ["onecycle", "lambda"])
def test_resume_continues_bit_for_bit(tmp_path: Path, optimizer: str, schedule: str):
    straight = make_run(0, optimizer, schedule)
    train_steps(*straight, 10)

    first = make_run(0, optimizer, schedule)
    train_steps(*first, 5)
    model, opt, sched, scaler = first
    save_training_state(tmp_path / "resume.safetensors", model_state=model.state_dict(),
                        optimizer_state=opt.state_dict(), scheduler_state=sched.state_dict(),
                        scaler_state=scaler.state_dict(), progress={"step": 5},
                        rng={"rng.cpu": torch.get_rng_state()})
    del first, model, opt, sched, scaler

    torch.manual_seed(1234)  # a fresh process: other weights, other random state
    state = load_training_state(tmp_path / "resume.safetensors")
    model, opt, sched, scaler = make_run(99, optimizer, schedule)
    model.load_state_dict(state.model_state)
    opt.load_state_dict(state.optimizer_state)
    sched.load_state_dict(state.scheduler_state)
    scaler.load_state_dict(state.scaler_state)
    torch.set_rng_state(state.rng["rng.cpu"])
    assert state.progress["step"] == 5
    train_steps(model, opt, sched, scaler, 5)

    for a, b in zip(straight[0].parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert sched.get_last_lr() == straight[2].get_last_lr()
    assert opt.param_groups[0]["lr"] == straight[1].param_groups[0]["lr"]


def test_resume_without_the_optimizer_state_would_differ(tmp_path: Path):
    """The control for the test above: the comparison does notice a state that was not restored."""
    straight = make_run(0, "adam", "onecycle")
    train_steps(*straight, 10)
    model, opt, sched, scaler = make_run(0, "adam", "onecycle")
    train_steps(model, opt, sched, scaler, 5)
    rng = torch.get_rng_state()
    fresh_model, fresh_opt, _, _ = make_run(99, "adam", "onecycle")
    fresh_model.load_state_dict(model.state_dict())
    torch.set_rng_state(rng)
    train_steps(fresh_model, fresh_opt, sched, scaler, 5)
    assert not all(torch.equal(a, b) for a, b in zip(straight[0].parameters(), fresh_model.parameters(), strict=True))


def test_optimizer_state_comes_back_in_the_structure_torch_expects(tmp_path: Path):
    model, opt, sched, scaler = make_run(0, "adamw", "onecycle")
    train_steps(model, opt, sched, scaler, 2)
    save_training_state(tmp_path / "r.safetensors", model_state=model.state_dict(), optimizer_state=opt.state_dict(),
                        scheduler_state=sched.state_dict(), scaler_state=None, progress={})
    loaded = load_training_state(tmp_path / "r.safetensors")
    original = opt.state_dict()
    assert list(loaded.optimizer_state["state"]) == [0, 1, 2, 3]  # int parameter indices, not strings
    assert loaded.optimizer_state["param_groups"] == original["param_groups"]
    assert isinstance(loaded.optimizer_state["param_groups"][0]["betas"], tuple)
    for index, entry in original["state"].items():
        for key, value in entry.items():
            assert torch.equal(loaded.optimizer_state["state"][index][key], value)
    assert loaded.scheduler_state == sched.state_dict() and loaded.scaler_state is None


def test_progress_values_keep_their_types(tmp_path: Path):
    progress = {
        "step": 12, "epoch": np.int64(3), "best_acc": 0.5, "elapsed": 1.25, "loss": math.nan, "lr": math.inf,
        "done": False, "note": "ok", "none": None, "curve": [0.1, -math.inf, 0.3], "pair": (1, (2.0, "x")),
        "per_class": {0: 0.5, 7: 1.0}, "$odd": 1, "gen": torch.Generator().manual_seed(3).get_state(),
        "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 3), "half": torch.ones(2, dtype=torch.bfloat16),
    }
    save_training_state(tmp_path / "r.safetensors", model_state={}, optimizer_state={"state": {}, "param_groups": []},
                        scheduler_state={}, scaler_state={}, progress=progress)
    back = load_training_state(tmp_path / "r.safetensors").progress
    assert back.keys() == progress.keys()
    for key in ("step", "best_acc", "elapsed", "lr", "done", "note", "none", "pair", "per_class", "$odd"):
        assert back[key] == progress[key] and type(back[key]) is type(progress[key]), key
    assert back["epoch"] == 3 and type(back["epoch"]) is int
    assert math.isnan(back["loss"]) and back["curve"][:2] == [0.1, -math.inf]
    for key in ("gen", "scalar", "empty", "half"):
        assert back[key].dtype == progress[key].dtype and torch.equal(back[key], progress[key]), key


def test_random_states_come_back_under_their_names(tmp_path: Path):
    gen = torch.Generator().manual_seed(5)
    rng = {"rng.cpu": torch.get_rng_state(), "rng.gen": gen.get_state(), "rng.cuda": [torch.zeros(16, dtype=torch.uint8)]}
    path = save_training_state(tmp_path / "r.safetensors", model_state={}, optimizer_state={"state": {},
                               "param_groups": []}, scheduler_state={}, scaler_state=None, progress={}, rng=rng)
    from safetensors import safe_open

    with safe_open(path, framework="pt") as fh:
        assert {"rng.cpu", "rng.gen", "rng.cuda.0"} <= set(fh.keys())
    back = load_training_state(path).rng
    expected = torch.rand(3, generator=gen)
    gen.set_state(back["rng.gen"])
    assert torch.equal(torch.rand(3, generator=gen), expected)
    assert torch.equal(back["rng.cpu"], rng["rng.cpu"]) and torch.equal(back["rng.cuda"][0], rng["rng.cuda"][0])


def test_unstorable_values_are_a_programming_error(tmp_path: Path):
    with pytest.raises(TypeError, match="progress.bad"):
        save_training_state(tmp_path / "r.safetensors", model_state={}, optimizer_state={}, scheduler_state={},
                            scaler_state=None, progress={"bad": {1, 2}})
    assert not (tmp_path / "r.safetensors").exists()


def test_training_state_with_tied_weights_round_trips(tmp_path: Path):
    shared = torch.nn.Linear(3, 3)
    model = torch.nn.ModuleList([shared, shared])
    save_training_state(tmp_path / "r.safetensors", model_state=model.state_dict(),
                        optimizer_state={"state": {}, "param_groups": []}, scheduler_state={}, scaler_state=None,
                        progress={})
    state = load_training_state(tmp_path / "r.safetensors").model_state
    assert state["0.weight"] is state["1.weight"] and torch.equal(state["1.bias"], shared.bias)


def test_damaged_training_tree_is_refused(tmp_path: Path):
    path = tmp_path / "r.safetensors"
    raw = {"format": "perceiver-gui/1", "kind": "training_state", "model": {"w": {"$tensor": "missing"}},
           "optimizer": {}, "scheduler": {}, "scaler": None, "progress": {}}
    path.write_bytes(st_save({"w": torch.zeros(1)}, metadata={"perceiver_gui": json.dumps(raw)}))
    assert "incomplete or malformed" in refuse(path, load_training_state)


@pytest.mark.parametrize("length", [0x10280, 0x10580, 0x20480])
def test_a_header_length_that_starts_like_a_pickle_still_loads(tmp_path: Path, length: int):
    # A header length of 0x10480 is stored as 80 04 01 ..., the opening bytes of a protocol-4 pickle.
    path = tmp_path / "model.safetensors"

    def header_length(pad: int) -> int:
        save_model(path, {"w": torch.zeros(2)}, tiny_meta(note="x" * pad))
        return int.from_bytes(path.read_bytes()[:8], "little")

    base = header_length(0)  # each padding character adds one byte; safetensors aligns to 8
    assert any(header_length(pad) == length for pad in range(length - base - 8, length - base + 8))
    assert path.read_bytes()[0] == 0x80 and 2 <= path.read_bytes()[1] <= 5
    state, meta = load_model(path)
    assert meta.summary["note"].startswith("x") and torch.equal(state["w"], torch.zeros(2))
