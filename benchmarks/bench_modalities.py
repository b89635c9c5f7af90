"""Each modality's preset on generated data in its real file format, against a simple peer in the same run.

Sequences: three classes of noisy sine, square and sawtooth waves of random phase and period (60 a class,
length 96), written as UCR/UEA .ts train and test files; the `sequences` preset against 1-nearest-neighbour
(Euclidean) on the same split, the archive's standard baseline. With --vary the series are 64–128 long (the
Perceiver masks the padding; 1-NN compares them resampled to 128, as the archive's own variable-length
problems are compared). Prints a table; results in README.md.

Audio (--audio): the ten digits "zero" … "nine" spoken by espeak-ng (apt-get install espeak-ng) in random
English voices, pitch, speed, onset and level, over background noise at a random SNR, written as WAV and FLAC
files in one subfolder per digit; the `audio` preset against an SVC (RBF kernel, C and gamma chosen by 3-fold
cross-validation on the training split) on log-mel features (each band's mean and std over time), fitted in
the same run on the same clips and the same test split.

Points (--points): five classes of trimesh primitives (box, icosphere, cylinder, cone, capsule), each with random
proportions, a random stretch of every axis (0.75-1.3), a random turn about the up axis, a small random tilt
and noise on the vertices, written as real binary .ply, .off and .obj meshes (one subfolder per class,
60 a class); the `points` preset through `train()` on the folder against an SVC (RBF, C chosen by 5-fold
cross-validation) on the D2 shape distribution (Osada et al. 2002: a histogram of the distances between
random pairs of points) plus a histogram of the distances to the centroid, of the same clouds and split.

    PYTHONPATH=. python benchmarks/bench_modalities.py [--epochs N] [--seeds 0 1] [--vary]
    PYTHONPATH=. python benchmarks/bench_modalities.py --audio [--per-class 40] [--seeds 0 1] [--set KEY=VALUE]
    PYTHONPATH=. python benchmarks/bench_modalities.py --points [--seeds 0 1] [--set data.num_points=256]
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from perceiver_gui.config import PRESETS
from perceiver_gui.core import data
from perceiver_gui.core.events import Finished
from perceiver_gui.core.series import read_series
from perceiver_gui.core.training import train

LENGTH = 96
PER_CLASS = 60
TEST_PER_CLASS = 20


def waves(rng: np.random.Generator, n_per_class: int, vary: bool) -> tuple[list[np.ndarray], list[str]]:
    series, labels = [], []
    for k, name in enumerate(("sine", "square", "saw")):
        for _ in range(n_per_class):
            n = int(rng.integers(64, 129)) if vary else LENGTH
            t = np.arange(n) / rng.uniform(12, 24) + rng.uniform(0, 1)
            wave = (np.sin(2 * np.pi * t), np.sign(np.sin(2 * np.pi * t)), 2 * (t % 1) - 1)[k]
            series.append((wave + rng.normal(0, 0.3, n))[None])
            labels.append(name)
    return series, labels


def write_ts(path: Path, series: list[np.ndarray], labels: list[str]) -> Path:
    equal = len({s.shape[1] for s in series}) == 1
    header = ["@problemName Waves", "@timeStamps false", "@missing false", "@univariate true", "@dimensions 1",
              f"@equalLength {str(equal).lower()}", *([f"@seriesLength {series[0].shape[1]}"] if equal else []),
              "@classLabel true sine square saw", "@data"]
    rows = [",".join(f"{v:.4f}" for v in s[0]) + f":{label}" for s, label in zip(series, labels, strict=True)]
    path.write_text("\n".join(header + rows) + "\n", encoding="utf-8")
    return path


def one_nn(train_file: Path, test_file: Path) -> tuple[float, float]:
    start = time.perf_counter()
    tr, te = read_series(train_file), read_series(test_file)
    longest = max(tr.longest, te.longest)

    def resampled(v: np.ndarray) -> np.ndarray:
        return np.interp(np.linspace(0, len(v) - 1, longest), np.arange(len(v)), v)

    a, b = (np.stack([resampled(v[0]) for v in found.values]) for found in (tr, te))
    nearest = ((b[:, None, :] - a[None, :, :]) ** 2).sum(-1).argmin(1)
    acc = float(np.mean([tr.labels[i] == label for i, label in zip(nearest, te.labels, strict=True)]))
    return acc, time.perf_counter() - start


def perceiver(train_file: Path, test_file: Path, out: Path, epochs: int | None, seed: int,
              changes: dict[str, str]) -> tuple[float, float]:
    cfg = PRESETS["sequences"].with_updates(changes)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, train_file=str(train_file),
                                                            test_file=str(test_file)))
    return _train_on_cpu(cfg, out, seed, epochs)


def _train_on_cpu(cfg, out: Path, seed: int, epochs: int | None) -> tuple[float, float]:
    """Train `cfg` on the CPU with this seed (and epochs, when given) to the end: its test accuracy and seconds."""
    epochs = epochs or cfg.train.epochs
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, device="cpu", seed=seed, epochs=epochs, warmup_epochs=min(cfg.train.warmup_epochs, epochs)))
    start = time.perf_counter()
    done = None
    for event in train(cfg, out_dir=out):
        if isinstance(event, Finished):
            done = event
    assert done is not None and done.status == "completed", done
    return float(done.test_acc), time.perf_counter() - start


# -- audio -----------------------------------------------------------------------------------------
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
VARIANTS = ("", "+m1", "+m2", "+m3", "+m4", "+m5", "+f1", "+f2", "+f3", "+f4", "+klatt", "+croak", "+whisper")


def spoken_digits(folder: Path, per_class: int, rng: np.random.Generator) -> Path:
    """One subfolder per digit of espeak-ng speech: random voice, variant, pitch, speed, onset, level and
    background noise (SNR 10-30 dB); every other file FLAC, the rest 16-bit WAV at espeak's 22,050 Hz."""
    import soundfile

    for word in DIGITS:
        (folder / word).mkdir(parents=True)
        for i in range(per_class):
            voice = f"{rng.choice(VOICES)}{rng.choice(VARIANTS)}"
            raw = folder / word / f"{i}.raw.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-p", str(int(rng.integers(20, 80))),
                            "-s", str(int(rng.integers(140, 220))), "-w", str(raw), word], check=True)
            speech, rate = soundfile.read(raw, dtype="float32")
            raw.unlink()
            onset = np.zeros(int(rng.uniform(0, 0.15) * rate), dtype=np.float32)
            sound = np.concatenate([onset, speech / max(1e-6, np.abs(speech).max())])
            noise = rng.standard_normal(len(sound)).astype(np.float32) * np.sqrt(np.mean(sound**2))
            sound = (sound + noise * 10 ** (-rng.uniform(10, 30) / 20)) * rng.uniform(0.1, 0.9)
            soundfile.write(folder / word / f"{i}{'.flac' if i % 2 else '.wav'}", np.clip(sound, -1, 1), rate,
                            subtype="PCM_16")
    return folder


def svc_on_log_mel(cfg_data) -> tuple[float, float]:
    """The peer: an RBF SVC on each mel band's mean and std over time, on the dataset's own split (training
    and validation clips to fit, the test clips to score), its C and gamma cross-validated."""
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    start = time.perf_counter()
    ds = data.load_dataset(dataclasses.replace(cfg_data, audio_input="log_mel"))

    def features(x):
        x = x[:, 0].numpy()  # (N, n_mels, frames), dB
        return np.concatenate([x.mean(-1), x.std(-1)], axis=1)

    fit_x = np.concatenate([features(ds.train_x), features(ds.val_x)])
    fit_y = np.concatenate([ds.train_y.numpy(), ds.val_y.numpy()])
    search = GridSearchCV(make_pipeline(StandardScaler(), SVC()), {"svc__C": [1, 10, 100],
                                                                   "svc__gamma": ["scale", 0.003, 0.01]}, cv=3)
    search.fit(fit_x, fit_y)
    acc = float((search.predict(features(ds.test_x)) == ds.test_y.numpy()).mean())
    return acc, time.perf_counter() - start


def audio_preset(folder: Path, out: Path, epochs: int | None, seed: int, changes: dict[str, str]):
    cfg = PRESETS["audio"].with_updates({"data.folder": str(folder), "data.root": str(out.parent / "data"),
                                         **changes})
    return (*_train_on_cpu(cfg, out, seed, epochs), cfg.data)


def main_audio(args: argparse.Namespace) -> int:
    if shutil.which("espeak-ng") is None:
        print("The audio benchmark speaks its digits with espeak-ng; install it (apt-get install espeak-ng).")
        return 2
    changes = dict(item.split("=", 1) for item in args.set)
    print(f"{'data seed':>9} {'clips':>6} {'SVC acc':>8} {'SVC s':>6} {'preset acc':>11} {'preset s':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            folder = spoken_digits(Path(tmp) / f"digits{seed}", args.per_class, np.random.default_rng(seed))
            p_acc, p_s, cfg_data = audio_preset(folder, Path(tmp) / f"run{seed}", args.epochs, seed, changes)
            svc_acc, svc_s = svc_on_log_mel(cfg_data)
            print(f"{seed:>9} {10 * args.per_class:>6} {svc_acc:>8.1%} {svc_s:>6.1f} {p_acc:>11.1%} {p_s:>9.1f}",
                  flush=True)
    return 0


# -- point clouds -------------------------------------------------------------------------------
SHAPES = ("box", "sphere", "cylinder", "cone", "capsule")
MESHES_PER_CLASS = 60
MESH_FORMATS = (".ply", ".off", ".obj")


def random_mesh(rng: np.random.Generator, shape: str):
    import trimesh

    make = {
        "box": lambda: trimesh.creation.box(extents=rng.uniform(0.6, 1.4, 3)),
        "sphere": lambda: trimesh.creation.icosphere(subdivisions=2, radius=rng.uniform(0.5, 1.0)),
        "cylinder": lambda: trimesh.creation.cylinder(radius=rng.uniform(0.3, 0.6), height=rng.uniform(0.8, 1.6)),
        "cone": lambda: trimesh.creation.cone(radius=rng.uniform(0.4, 0.8), height=rng.uniform(0.8, 1.6)),
        "capsule": lambda: trimesh.creation.capsule(radius=rng.uniform(0.3, 0.5), height=rng.uniform(0.6, 1.2)),
    }[shape]
    mesh = make()
    mesh.vertices = mesh.vertices * rng.uniform(0.75, 1.3, 3)  # stretch every axis its own way
    mesh.vertices = mesh.vertices + rng.normal(0, 0.02, mesh.vertices.shape)  # a rough surface
    turn = trimesh.transformations.rotation_matrix(rng.uniform(0, 2 * np.pi), (0, 0, 1))
    tilt = trimesh.transformations.rotation_matrix(rng.normal(0, 0.15), (1, 0, 0))
    mesh.apply_transform(turn @ tilt)
    mesh.apply_scale(rng.uniform(0.5, 20.0))  # in any unit
    mesh.apply_translation(rng.normal(0, 5, 3))
    return mesh


def write_meshes(root: Path, rng: np.random.Generator) -> Path:
    for shape in SHAPES:
        (root / shape).mkdir(parents=True)
        for i in range(MESHES_PER_CLASS):
            random_mesh(rng, shape).export(root / shape / f"{shape}_{i:03d}{MESH_FORMATS[i % len(MESH_FORMATS)]}")
    return root


def distance_histograms(clouds: np.ndarray, rng: np.random.Generator, bins: int = 32) -> np.ndarray:
    """Per cloud (P, 3) in the unit sphere: the D2 histogram of 4 P random pairs' distances (0..2) and the
    histogram of the distances to the centroid (0..1), each normalised to sum 1."""
    features = []
    for cloud in clouds:
        a, b = rng.integers(0, len(cloud), (2, 4 * len(cloud)))
        d2 = np.histogram(np.linalg.norm(cloud[a] - cloud[b], axis=1), bins=bins, range=(0, 2))[0]
        radial = np.histogram(np.linalg.norm(cloud - cloud.mean(0), axis=1), bins=bins, range=(0, 1))[0]
        features.append(np.concatenate([d2 / d2.sum(), radial / radial.sum()]))
    return np.array(features)


def svc_on_histograms(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                      seed: int) -> float:
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    rng = np.random.default_rng(seed)
    a, b = distance_histograms(train_x, rng), distance_histograms(test_x, rng)
    search = GridSearchCV(make_pipeline(StandardScaler(), SVC()), {"svc__C": [0.3, 1, 3, 10, 30, 100]}, cv=5)
    search.fit(a, train_y)
    return float((search.predict(b) == test_y).mean())


def points_main(args: argparse.Namespace, changes: dict[str, str]) -> int:
    from perceiver_gui.core.data import load_dataset

    print(f"{'data seed':>9} {'write s':>8} {'SVC acc':>8} {'SVC s':>6} {'preset acc':>11} {'preset s':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            start = time.perf_counter()
            folder = write_meshes(Path(tmp) / f"seed{seed}" / "shapes", np.random.default_rng(seed))
            write_s = time.perf_counter() - start
            cfg = PRESETS["points"].with_updates({**changes, "data.folder": str(folder),
                                                  "data.root": str(folder.parent / "data")})
            # The peer reads the very clouds and split training does (the validation share it simply keeps).
            start = time.perf_counter()
            data = load_dataset(cfg.data)
            train_x = np.concatenate([data.train_x.numpy(), data.val_x.numpy()]).transpose(0, 2, 1)
            train_y = np.concatenate([data.train_y.numpy(), data.val_y.numpy()])
            svc_acc = svc_on_histograms(train_x, train_y, data.test_x.numpy().transpose(0, 2, 1),
                                        data.test_y.numpy(), seed)
            svc_s = time.perf_counter() - start
            p_acc, p_s = _train_on_cpu(cfg, folder.parent / "run", seed, args.epochs)
            print(f"{seed:>9} {write_s:>8.1f} {svc_acc:>8.1%} {svc_s:>6.1f} {p_acc:>11.1%} {p_s:>9.1f}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--vary", action="store_true", help="series 64-128 long instead of all 96")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="change the preset, to tune it")
    parser.add_argument("--audio", action="store_true", help="spoken digits: the audio preset against an SVC")
    parser.add_argument("--points", action="store_true", help="primitive meshes: the points preset against an SVC")
    parser.add_argument("--per-class", type=int, default=40, help="--audio: clips per digit")
    args = parser.parse_args(argv)
    if args.audio:
        return main_audio(args)
    if args.points:
        return points_main(args, dict(item.split("=", 1) for item in args.set))
    print(f"{'data seed':>9} {'1-NN acc':>9} {'1-NN s':>7} {'preset acc':>11} {'preset s':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            rng = np.random.default_rng(seed)
            folder = Path(tmp) / f"seed{seed}"
            folder.mkdir()
            train_file = write_ts(folder / "Waves_TRAIN.ts", *waves(rng, PER_CLASS - TEST_PER_CLASS, args.vary))
            test_file = write_ts(folder / "Waves_TEST.ts", *waves(rng, TEST_PER_CLASS, args.vary))
            nn_acc, nn_s = one_nn(train_file, test_file)
            p_acc, p_s = perceiver(train_file, test_file, folder / "run", args.epochs, seed,
                                   dict(item.split("=", 1) for item in args.set))
            print(f"{seed:>9} {nn_acc:>9.1%} {nn_s:>7.2f} {p_acc:>11.1%} {p_s:>9.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
