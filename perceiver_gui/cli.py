"""The `perceiver-gui` command: no arguments opens the app; `train`, `predict`, `info` and `export` run headless.

Exit status: 0 success, 1 a run (or some of the images) failed, 2 bad input (usage, config, model file,
data). Errors print one sentence to stderr as `error: ...` (``--debug``, before or after the command,
shows the traceback). Every name printed goes through `printable`, so a file or class name cannot move
the cursor, forge an output line or crash the output with undecodable bytes. Heavy imports (torch)
happen inside the commands, so `perceiver-gui --help` and the app's first window are quick.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from perceiver_gui import __version__
from perceiver_gui.config import PRESETS, ConfigError, load_config, preset, presets_text

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
EXPORT_FORMATS = ("csv", "onnx")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perceiver-gui",
        description="Experiment with the Perceiver. Without a command, opens the desktop app.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    gui = sub.add_parser("gui", help="open the desktop app (the default; `perceiver-gui my.toml` opens a config in it)")
    gui.add_argument("config", nargs="?", type=Path, help="a .toml or .json config file to open in the form")
    gui.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    tr = sub.add_parser("train", help="train a model headless, printing progress", epilog=presets_text(),
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    tr.add_argument("--preset", choices=list(PRESETS), help="start from a named preset (default: digits, "
                    "bundled and offline, like the app's first form)")
    tr.add_argument("--config", type=Path, help="a .toml or .json config file")
    tr.add_argument("--set", dest="updates", action="append", default=[], metavar="KEY=VALUE",
                    help="override one setting, e.g. --set train.lr=0.01 (repeatable)")
    tr.add_argument("--out", type=Path, help="the run folder to create (default: a new folder in the runs folder)")
    tr.add_argument("--resume", type=Path, metavar="DIR", help="continue a stopped or crashed run from its folder")
    tr.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    pr = sub.add_parser("predict", help="classify images with a saved model")
    pr.add_argument("--model", type=Path, required=True, help="a model.safetensors written by training")
    pr.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image files or folders")
    pr.add_argument("--top-k", type=int, default=3, help="how many classes to show per image (default 3)")
    pr.add_argument("--json", action="store_true", help="one JSON object per input line")
    pr.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    inf = sub.add_parser("info", help="show a saved model's config, classes and training summary")
    inf.add_argument("file", type=Path)
    inf.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    ex = sub.add_parser("export", help="write a run's metrics as CSV, or a model as ONNX",
                        description="Write a run's metrics (every logged step and epoch) as CSV, or a saved model "
                                    "as ONNX with its class names and preprocessing in the file's metadata.")
    source = ex.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, metavar="DIR", help="a run folder (for csv; for onnx, its model)")
    source.add_argument("--model", type=Path, metavar="FILE", help="a model.safetensors written by training (onnx)")
    ex.add_argument("--format", choices=EXPORT_FORMATS, help="csv or onnx (default: from the --out suffix)")
    ex.add_argument("--out", type=Path, required=True, metavar="FILE", help="the file to write")
    ex.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    # A sub-command's --debug defaults to SUPPRESS, so `perceiver-gui --debug train` keeps the flag.
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and Path(argv[0]).suffix.lower() in (".toml", ".json"):  # `perceiver-gui my.toml`: the app, with it
        argv = ["gui", *argv]
    args = build_parser().parse_args(argv)
    command = args.command or "gui"
    try:
        if command == "gui":
            from perceiver_gui.ui.app import run_app

            config = getattr(args, "config", None)
            if config is not None:
                load_config(config)  # a bad file is one sentence here, not a window that starts without it
            return run_app(sys.argv[:1] + ([str(config)] if config is not None else []))
        return {"train": cmd_train, "predict": cmd_predict, "info": cmd_info, "export": cmd_export}[command](args)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `perceiver-gui info model.safetensors | head`: the reader has all it wants
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - the one place that turns any error into a sentence
        bad_input = _is_bad_input(exc)
        if args.debug:
            traceback.print_exc()
        else:
            _error(_sentence(exc, surprise=not bad_input and not isinstance(exc, ValueError)))
        return EXIT_BAD_INPUT if bad_input else EXIT_FAILED


_BAD_INPUT_ERRORS = (("perceiver_gui.core.checkpoints", "CheckpointError"), ("perceiver_gui.core.export", "ExportError"),
                     ("perceiver_gui.core.data", "DatasetError"), ("perceiver_gui.core.images", "ImageError"))


def _is_bad_input(exc: BaseException) -> bool:
    """Errors in what the user gave (settings, a model file, data), as opposed to a run that failed.

    An error class can only have been raised once its module is imported, so only those are looked at:
    a config error is classified without importing torch."""
    bad = [ConfigError] + [getattr(sys.modules[module], name) for module, name in _BAD_INPUT_ERRORS
                           if module in sys.modules]
    return isinstance(exc, tuple(bad))


def _sentence(exc: BaseException, *, surprise: bool) -> str:
    text = str(exc).strip() or type(exc).__name__
    if not text.endswith((".", "!", "?")):
        text += "."
    if surprise:  # not something the user gave wrongly: point at the details
        text += " (Run with --debug for details.)"
    return text


def _error(sentence: str) -> None:
    print(f"error: {printable(sentence)}", file=sys.stderr, flush=True)


def printable(text: object) -> str:
    """`text` safe for a terminal line: control characters (newlines, ANSI escapes, bidi overrides) and
    undecodable bytes of file names are shown as Python escapes such as \\n, \\x1b, \\u202e, \\xe9."""
    text = str(text)
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif 0xDC80 <= ord(ch) <= 0xDCFF:  # a byte that was not UTF-8, kept by os.fsdecode's surrogateescape
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        else:
            out.append(repr(ch)[1:-1])
    return "".join(out)


# -- train -------------------------------------------------------------------------------------
def training_config(args: argparse.Namespace):
    if args.config and args.preset:
        raise ConfigError("Use either --preset or --config, not both.")
    cfg = load_config(args.config) if args.config else preset(args.preset or "digits")
    updates = {}
    for item in args.updates:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set needs KEY=VALUE, e.g. --set train.lr=0.01 (got '{item}').")
        updates[key.strip()] = value.strip()
    cfg = cfg.with_updates(updates) if updates else cfg
    return cfg.check()  # refused here (exit 2) rather than as a failed run


def cmd_train(args: argparse.Namespace) -> int:
    from perceiver_gui.core.training import RunControl, resume, train

    if args.resume:
        if args.preset or args.config or args.updates or args.out:
            raise ConfigError("--resume continues a run with its own config; drop --preset/--config/--set/--out.")
    cfg = None if args.resume else training_config(args)
    control = RunControl()
    previous = _stop_on_signals(control)
    try:
        return _print_run(resume(args.resume, control=control) if cfg is None else
                          train(cfg, out_dir=args.out, control=control))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _print_run(events) -> int:
    from perceiver_gui.core.events import CheckpointSaved, DownloadProgress, EpochEnd, Finished, Log, RunStarted, Step

    bar = _ProgressBar(sys.stderr)
    finished = None
    for event in events:
        if isinstance(event, RunStarted):
            print(f"Run folder: {printable(event.run_dir)}")
            print(f"Device: {printable(event.device_name)} · {event.parameters:,} parameters · "
                  f"{event.train_size:,} train / {event.val_size:,} validation / {event.test_size:,} test images · "
                  f"{event.total_steps:,} steps")
        elif isinstance(event, Step):
            bar.update(event)
        elif isinstance(event, EpochEnd):
            bar.clear()
            best = " *best*" if event.is_best else ""
            val = (f"val loss {event.val_loss:.4f} acc {event.val_acc:6.1%}" if math.isfinite(event.val_acc)
                   else "no validation split")
            print(f"epoch {event.epoch:3d}  train loss {event.train_loss:.4f} acc {event.train_acc:6.1%}  "
                  f"{val}  {event.elapsed_s:7.1f}s{best}")
        elif isinstance(event, DownloadProgress):
            bar.download(event)
        elif isinstance(event, Log):
            bar.clear()
            print(("warning: " if event.level == "warning" else "") + printable(event.message), file=sys.stderr)
        elif isinstance(event, CheckpointSaved):
            pass
        elif isinstance(event, Finished):
            bar.clear()
            finished = event
    if finished is None:
        return EXIT_FAILED
    if finished.status not in ("completed", "stopped"):
        _error(finished.message)
        return EXIT_FAILED
    print(printable(finished.message))
    if finished.model_path:
        print(f"Model: {printable(finished.model_path)}")
    return EXIT_OK


def _stop_on_signals(control) -> dict:
    """Ctrl+C, SIGTERM (kill, a scheduler) and SIGHUP (the terminal closed, logging out) stop the run after
    the current step and save it, so it can be resumed. A second Ctrl+C interrupts at once (the run is then
    marked stopped, resumable from its last finished epoch); a second SIGTERM or SIGHUP ends the process
    (the run's lock is released by the OS). Only the main thread may set handlers: the GUI never does.
    Returns the handlers it replaced, to put back when the run is over."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    names = [n for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)]
    previous = {getattr(signal, name): signal.getsignal(getattr(signal, name)) for name in names}

    def stop(signum, frame) -> None:
        control.stop()
        for name in names:  # the next one acts at once
            sig = getattr(signal, name)
            signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)

    for name in names:
        signal.signal(getattr(signal, name), stop)
    return previous


class _ProgressBar:
    """One self-rewriting line on a terminal; a line every few seconds when output is a file."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last = 0.0
        self.shown = False

    def _show(self, text: str) -> None:
        now = time.monotonic()
        if self.tty:
            if now - self.last < 0.1:
                return
            self.stream.write("\r" + text[:118].ljust(118))
            self.shown = True
        else:
            if now - self.last < 5.0:
                return
            self.stream.write(text + "\n")
        self.stream.flush()
        self.last = now

    def update(self, s) -> None:
        frac = s.step / max(1, s.total_steps)
        filled = int(24 * frac)
        eta = _duration(s.eta_s) if math.isfinite(s.eta_s) else "?"
        self._show(f"[{'#' * filled}{'.' * (24 - filled)}] {frac:5.1%} epoch {s.epoch} step {s.step}/{s.total_steps}"
                   f"  loss {s.loss:.4f}  lr {s.lr:.2e}  {s.images_per_s:,.0f} img/s  ETA {eta}")

    def download(self, d) -> None:
        total = f"/{d.total_bytes / 1e6:.1f}" if d.total_bytes else ""
        self._show(f"Downloading {d.name}: {d.done_bytes / 1e6:.1f}{total} MB")

    def clear(self) -> None:
        if self.tty and self.shown:
            self.stream.write("\r" + " " * 118 + "\r")
            self.stream.flush()
            self.shown = False


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


# -- predict and info --------------------------------------------------------------------------
def cmd_predict(args: argparse.Namespace) -> int:
    from perceiver_gui.core.inference import Prediction, Predictor

    if args.top_k < 1:
        raise ConfigError("--top-k must be at least 1.")
    predictor = Predictor.from_checkpoint(args.model)  # a CheckpointError is bad input: exit 2
    failed = 0
    for path in args.paths:
        results = predictor.predict_folder(path, top_k=args.top_k) if path.is_dir() else \
            [predictor.predict([path], top_k=args.top_k)]
        count = 0
        for batch in results:
            for pred in batch:
                count += 1
                failed += bool(pred.error)
                _print_prediction(pred, args.json)
        if not count:  # an empty folder is an input that was not classified
            failed += 1
            _print_prediction(Prediction(str(path), error=f"{path} holds no image files."), args.json)
    return EXIT_FAILED if failed else EXIT_OK


def _print_prediction(pred, as_json: bool) -> None:
    if as_json:
        if pred.error:
            record = {"path": pred.path, "error": pred.error}
        else:
            record = {"path": pred.path, "top": [{"label": label, "prob": prob} for label, prob in pred.top]}
        print(json.dumps(record), flush=True)
    elif pred.error:
        print(f"{printable(pred.path)}: error: {printable(pred.error)}", flush=True)
    else:
        top = ", ".join(f"{printable(label)} {prob:.1%}" for label, prob in pred.top)
        print(f"{printable(pred.path)}: {top}", flush=True)


def cmd_info(args: argparse.Namespace) -> int:
    """What a file of the app is, and what it holds: a model, a resume file, an evaluation file, a run
    folder (or its run.json / metrics.jsonl) or a config file."""
    from perceiver_gui.core import runs
    from perceiver_gui.core.checkpoints import CheckpointError, accuracy_text, load_training_state, read_meta
    from perceiver_gui.core.evaluation import EVALUATION_FILE, EvaluationError, read_evaluation
    from perceiver_gui.core.reading import NotARegularFile, open_regular

    path: Path = args.file
    if path.exists() and not path.is_dir():
        try:
            open_regular(path).close()  # a FIFO would block whichever reader comes next
        except NotARegularFile as exc:
            raise ConfigError(f"{path} is not a file Perceiver GUI writes: {exc.strerror}.") from None
    if path.is_dir() or path.name in (runs.RUN_FILE, runs.METRICS_FILE):
        return _info_run(path if path.is_dir() else path.parent)
    if path.suffix.lower() in (".json", ".toml"):
        _info_config("Config file", path, load_config(path))
        return EXIT_OK
    if path.name == EVALUATION_FILE:
        try:
            ev = read_evaluation(path.parent)
        except EvaluationError as exc:
            raise ConfigError(str(exc)) from None
        print(f"Evaluation file: {printable(path)}")
        print(f"The {ev.split} predictions of epoch {ev.epoch} (step {ev.step:,}): {len(ev.labels):,} images, "
              f"{len(ev.class_names)} classes; the Mistakes tab shows them.")
        print(f"Classes: {printable(', '.join(ev.class_names))}")
        return EXIT_OK
    try:
        meta = read_meta(path)
    except CheckpointError as not_a_model:
        try:
            state = load_training_state(path)
        except CheckpointError:
            raise not_a_model from None
        print(f"Resume file: {printable(path)}")
        print("The training state (weights, optimizer, random generators) to continue the run "
              f"in {printable(path.parent)} with: perceiver-gui train --resume {shlex.quote(printable(path.parent))}")
        for key, label in (("step", "step"), ("epochs_done", "epochs_done"), ("best_acc", "best_val_acc"),
                           ("best_epoch", "best_epoch")):
            if key in state.progress:
                print(f"{label}: {printable(state.progress[key])}")
        return EXIT_OK
    h, w = meta.image_size
    print(f"Model: {printable(path)}")
    print(f"Input: {meta.channels} channel(s), {h}×{w} pixels")
    print(f"Classes ({len(meta.class_names)}): {printable(', '.join(meta.class_names))}")
    if accuracy := accuracy_text(meta.summary):
        print(f"Accuracy: {printable(accuracy)}")
    for key, value in meta.summary.items():
        print(f"{printable(key)}: {printable(value)}")
    print(f"App version: {printable(meta.app_version)}")
    _info_config("", path, meta.config)
    return EXIT_OK


def _info_run(run_dir: Path) -> int:
    from perceiver_gui.core import runs
    from perceiver_gui.core.evaluation import EVALUATION_FILE

    if not (run_dir / runs.CONFIG_FILE).is_file():
        raise ConfigError(f"{run_dir} is not a run folder (it has no {runs.CONFIG_FILE}); give a model file, a "
                          "run folder or a config file.")
    record = runs.read_run(run_dir)
    print(f"Run folder: {printable(run_dir)}")
    for key in ("name", "status", "message", "epochs_done"):
        if getattr(record, key) not in (None, ""):
            print(f"{key}: {printable(getattr(record, key))}")
    accuracy = runs.describe_accuracy(best_acc=record.best_acc, best_epoch=record.best_epoch,
                                      selected_on=record.selected_on, test_acc=record.test_acc)
    if accuracy:
        print(f"accuracy: {printable(accuracy)}")
    for problem in record.problems:
        print(f"damaged: {printable(problem)}")
    described = {runs.CONFIG_FILE: "its config", runs.RUN_FILE: "its status", runs.METRICS_FILE: "every logged step "
                 "and epoch", runs.MODEL_FILE: "the model chosen on validation", runs.RESUME_FILE: "the state to resume from",
                 EVALUATION_FILE: "the last epoch's validation predictions"}
    for name, what in described.items():
        if (run_dir / name).is_file():
            print(f"  {name}: {what}")
    _info_config("", run_dir / runs.CONFIG_FILE, load_config(run_dir / runs.CONFIG_FILE))
    return EXIT_OK


def _info_config(heading: str, path: Path, cfg) -> None:
    from perceiver_gui.config import to_toml

    if heading:
        print(f"{heading}: {printable(path)}")
    print("\n# config")
    for line in to_toml(cfg).splitlines():  # per line, so the TOML's own line breaks stay
        print(printable(line))


# -- export ------------------------------------------------------------------------------------
def cmd_export(args: argparse.Namespace) -> int:
    """Exit 0 when written; 2 when the run or model cannot be read or the file cannot be written."""
    fmt = args.format or args.out.suffix.lower().lstrip(".")
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"Say which format to write with --format csv or --format onnx ({args.out.name} has no "
                          "suffix that tells).")
    if fmt == "csv" and args.model:
        raise ConfigError("CSV export writes a run's metrics; give the run folder with --run DIR.")
    from perceiver_gui.core.export import export_onnx, metrics_csv
    from perceiver_gui.core.runs import MODEL_FILE

    # ExportError and CheckpointError reach main as bad input (exit 2).
    if fmt == "csv":
        rows = metrics_csv(args.run, args.out)
        print(f"Wrote {rows:,} rows of {printable(args.run)} to {printable(args.out)}")
    else:
        model = args.model or args.run / MODEL_FILE
        export_onnx(model, args.out)
        print(f"Wrote {printable(model)} as ONNX to {printable(args.out)}")
    return EXIT_OK
