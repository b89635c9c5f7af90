"""The `perceiver-gui` command: no arguments opens the app; `train`, `predict`, `info`, `export` and `sweep` run
headless.

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
from perceiver_gui.config import CONFIG_SUFFIXES, PRESETS, ConfigError, load_config, preset, presets_text

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
    tr.add_argument("--events", choices=("text", "jsonl"), default="text",
                    help="jsonl: print each event as one JSON line on stdout, for a program to read (default: text)")
    tr.add_argument("--pause-file", type=Path, metavar="FILE",
                    help="pause the run while FILE exists, go on when it is removed (the app pauses this way)")
    dp = tr.add_argument_group("several processes or machines (torch.distributed, through torchrun's launcher)")
    dp.add_argument("--nproc-per-node", type=int, metavar="N",
                    help="processes on this machine: one per GPU, or a few on a CPU (default: the config's "
                         "train.processes, 1 unless set)")
    dp.add_argument("--nnodes", type=int, default=1, metavar="M", help="machines taking part (default 1)")
    dp.add_argument("--node-rank", type=int, default=0, metavar="R", help="this machine's number, 0 to M-1 (default 0)")
    dp.add_argument("--rdzv-endpoint", metavar="HOST:PORT",
                    help="where the machines meet: node 0's address and a free port (needed with --nnodes > 1)")
    dp.add_argument("--rdzv-timeout", type=int, default=300, metavar="S",
                    help="seconds to wait for all machines to join (default 300)")
    tr.add_argument("--seeds", type=int, default=1, metavar="K",
                    help="train K runs of the config one after another, with seeds seed, seed+1, ..., and print "
                         "the mean ± sample std of their accuracy and loss (with --out, DIR holds them as seed-N)")
    tr.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    pr = sub.add_parser("predict", help="classify images (or series, with a series model) with a saved model")
    pr.add_argument("--model", type=Path, required=True, help="a model.safetensors written by training")
    pr.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                    help="image files or folders; a series model's .ts, .csv or .npy files")
    pr.add_argument("--top-k", type=int, default=3, help="how many classes to show per input (default 3)")
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

    sw = sub.add_parser("sweep", help="search hyperparameters with Optuna (trials are ordinary runs)",
                        description="Run a hyperparameter sweep described by a sweep.toml, or continue the one in "
                                    "--out; several sweep processes (on other machines too) can share one study.")
    sw.add_argument("--config", type=Path, metavar="SWEEP.TOML", help="the sweep file (not needed to continue)")
    sw.add_argument("--out", type=Path, metavar="DIR", help="the sweep folder: created, or continued")
    sw.add_argument("--trials", type=int, metavar="N", help="trials to finish (overrides [sweep] trials)")
    sw.add_argument("--workers", type=int, default=1, metavar="K", help="trials at once, each in its own process")
    sw.add_argument("--storage", metavar="URL", help="an RDB URL (postgresql://…, mysql://…) instead of the journal "
                                                     "file in DIR")
    sw.add_argument("--status", type=Path, metavar="DIR", help="show the trials of a sweep folder and the best one")
    sw.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    # A sub-command's --debug defaults to SUPPRESS, so `perceiver-gui --debug train` keeps the flag.
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and Path(argv[0]).suffix.lower() in CONFIG_SUFFIXES:  # `perceiver-gui my.toml`: the app, with it
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
        return {"train": cmd_train, "predict": cmd_predict, "info": cmd_info, "export": cmd_export,
                "sweep": cmd_sweep}[command](args)
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
    if args.resume:
        if args.preset or args.config or args.updates or args.out:
            raise ConfigError("--resume continues a run with its own config; drop --preset/--config/--set/--out.")
        if args.seeds != 1:
            raise ConfigError("--resume continues one run; drop --seeds.")
    if args.seeds < 1:
        raise ConfigError(f"--seeds needs a count of at least 1 (got {args.seeds}).")
    cfg = None if args.resume else training_config(args)
    if args.nproc_per_node is None:
        args.nproc_per_node = _saved_processes(args.resume) if cfg is None else cfg.train.processes
    if args.seeds != 1 and (args.nproc_per_node != 1 or args.nnodes != 1 or args.events == "jsonl"):
        raise ConfigError("--seeds trains its runs in this one process, with text output; drop --seeds, or "
                          "--nproc-per-node/--nnodes/--events.")
    if args.nproc_per_node != 1 or args.nnodes != 1:  # (the processes it starts get --nproc-per-node 1)
        return _launch(args, cfg)
    from perceiver_gui.core.distributed import in_launched_worker, launched_rank
    from perceiver_gui.core.training import RunControl, resume, train

    control = RunControl()
    previous = _stop_on_signals(control, launched=in_launched_worker())
    watcher = _PauseFile(args.pause_file, control) if args.pause_file else None
    try:
        if args.seeds != 1:
            return _train_seeds(cfg, args.seeds, args.out, control)
        events = resume(args.resume, control=control) if cfg is None else train(cfg, out_dir=args.out, control=control)
        if launched_rank() != 0:  # another rank of a launched run: rank 0 speaks for the run
            return _quiet_run(events)
        return _print_json_run(events) if args.events == "jsonl" else _print_run(events)
    finally:
        if watcher is not None:
            watcher.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _quiet_run(events) -> int:
    """A rank other than 0 prints only a failure of its own (rank 0 tells the rest)."""
    finished = None
    for event in events:
        finished = event
    if finished is None or finished.status == "failed":
        _error(f"rank {os.environ.get('RANK')}: " + (finished.message if finished else "no result."))
        return EXIT_FAILED
    return 0


def _print_json_run(events) -> int:
    from perceiver_gui.core.events import Finished, to_json

    finished = None
    for event in events:
        print(to_json(event), flush=True)
        if isinstance(event, Finished):
            finished = event
    return 0 if finished is not None and finished.status in ("completed", "stopped") else 1


class _PauseFile:
    """Pauses the run while a file exists: how the app pauses a run that another process trains (a file
    works the same through torchrun's launcher, on every platform, and needs no pipe to rank 0)."""

    def __init__(self, path: Path, control) -> None:
        self.path = path
        self.control = control
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="pause-file", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.wait(0.2):
            if self.path.exists():
                self.control.pause()
            else:
                self.control.continue_()

    def close(self) -> None:
        self._done.set()


# -- launching several processes -----------------------------------------------------------------
def _launch(args: argparse.Namespace, cfg) -> int:
    """Start this command once per process through torchrun's launcher (torch.distributed.run), with the
    same arguments; each process joins the run from the variables the launcher sets. Exit 2 for settings
    that can't work, 1 when the run failed."""
    import logging

    # torch's C++ side logs every failed connection attempt with a stack: this process says one sentence
    # instead (set before torch loads, and put back so the training processes keep their messages).
    level = os.environ.get("TORCH_CPP_LOG_LEVEL")
    os.environ["TORCH_CPP_LOG_LEVEL"] = "FATAL"
    try:
        problem = _launch_problem(args, cfg)
        if problem:
            _error(problem)
            return EXIT_BAD_INPUT
        from torch.distributed import run as torchrun
        from torch.distributed.elastic.multiprocessing.api import SignalException
        from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    finally:
        if level is None:
            del os.environ["TORCH_CPP_LOG_LEVEL"]
        else:
            os.environ["TORCH_CPP_LOG_LEVEL"] = level
    from perceiver_gui.core.distributed import in_launched_worker

    if in_launched_worker():
        raise ConfigError("This process was itself started by a launcher; drop --nproc-per-node and --nnodes.")
    for name in list(logging.root.manager.loggerDict):  # the launcher's notes are not for our users: we say a sentence
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    launch = ["--nnodes", str(args.nnodes), "--nproc-per-node", str(args.nproc_per_node), "--max-restarts", "0",
              "--monitor-interval", "0.5"]
    if args.rdzv_endpoint:
        # The static rendezvous: machine R's processes are ranks R*N to R*N+N-1, so rank 0, which writes the run
        # folder, is on machine 0, the host of the endpoint.
        host, _, port = args.rdzv_endpoint.rpartition(":")
        launch += ["--node-rank", str(args.node_rank), "--rdzv-backend", "static", "--master-addr", host,
                   "--master-port", port, "--rdzv-conf", f"timeout={args.rdzv_timeout}"]
    else:
        launch += ["--standalone"]
    launch += ["-m", "perceiver_gui", *worker_arguments(args)]
    torch_args = torchrun.get_args_parser().parse_args(launch)
    try:
        torchrun.run(torch_args)
    except ChildFailedError as exc:
        _error(_failure_sentence(exc))
        return EXIT_FAILED
    except SignalException:
        return 0  # Ctrl+C or SIGTERM: the launcher passed it on, and rank 0 stopped and saved the run
    except Exception as exc:  # noqa: BLE001 - the launcher's own errors: rendezvous, ports
        _error(_launcher_sentence(exc, args))
        return EXIT_FAILED
    return 0


def node_commands(config_file: str, *, nnodes: int, nproc_per_node: int, endpoint: str, out: str) -> list[str]:
    """The command to run on each machine of a multi-machine run, machine 0 first (the app shows these)."""
    return [shlex.join(["perceiver-gui", "train", "--config", config_file, "--out", out,
                        "--nnodes", str(nnodes), "--node-rank", str(rank), "--nproc-per-node", str(nproc_per_node),
                        "--rdzv-endpoint", endpoint]) for rank in range(nnodes)]


def _saved_processes(run_dir: Path) -> int:
    """The processes a run was configured with (1 when its config can't be read: resuming then says why)."""
    from perceiver_gui.core import runs

    try:
        saved = runs.read_config(run_dir).config
    except runs.RunError:
        return 1
    return saved.train.processes if saved is not None else 1


def worker_arguments(args: argparse.Namespace) -> list[str]:
    """The `train` arguments each process gets: this command's, without those of the launch."""
    out = ["train", "--events", args.events, "--nproc-per-node", "1"]
    if args.resume:
        out += ["--resume", str(args.resume)]
    for flag, value in (("--preset", args.preset), ("--config", args.config), ("--out", args.out),
                        ("--pause-file", args.pause_file)):
        if value:
            out += [flag, str(value)]
    for item in args.updates:
        out += ["--set", item]
    return out + (["--debug"] if args.debug else [])


def _launch_problem(args: argparse.Namespace, cfg) -> str:
    if args.nproc_per_node < 1:
        return (f"--nproc-per-node must be 1 or more (one process per GPU, or a few on a CPU), "
                f"not {args.nproc_per_node}.")
    if args.nnodes < 1 or not 0 <= args.node_rank < args.nnodes:
        return f"--node-rank must be between 0 and --nnodes - 1 ({args.nnodes - 1}), not {args.node_rank}."
    if args.nnodes > 1 and not args.rdzv_endpoint:
        return ("Several machines need a meeting point: add --rdzv-endpoint HOST:PORT with node 0's address and "
                "a free port, the same on every machine.")
    if args.rdzv_endpoint:
        host, _, port = args.rdzv_endpoint.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            return f"--rdzv-endpoint must be HOST:PORT, e.g. 10.0.0.1:29500, not '{args.rdzv_endpoint}'."
    if cfg is None:
        from perceiver_gui.core import runs

        saved = runs.read_config(args.resume)
        cfg = saved.config
    if cfg is not None:
        world = args.nproc_per_node * args.nnodes
        if cfg.train.batch_size % world:
            lower = max(world, cfg.train.batch_size // world * world)
            return (f"train.batch_size {cfg.train.batch_size} does not split evenly over {world} processes; "
                    f"choose a multiple of {world}, such as {lower} or {lower + world}.")
        if cfg.train.device.startswith("cuda"):
            import torch

            if torch.cuda.device_count() < args.nproc_per_node:
                return (f"--nproc-per-node {args.nproc_per_node} needs {args.nproc_per_node} GPUs, and this machine "
                        f"has {torch.cuda.device_count()}; use at most that many, or train.device=cpu.")
    return ""


def _failure_sentence(exc) -> str:
    import signal as signals

    # The first to fail, not one the launcher then ended itself with SIGTERM.
    rank, failure = min(exc.failures.items(),
                        key=lambda item: (item[1].exitcode == -signals.SIGTERM, item[1].timestamp, item[0]))
    code = failure.exitcode
    how = f"was killed by {signals.Signals(-code).name}" if code < 0 and -code in signals.valid_signals() else \
        f"ended with exit code {code}"
    return f"Process {rank} of the run {how}, so the run ended; it can be resumed from its last save."


def _launcher_sentence(exc: Exception, args: argparse.Namespace) -> str:
    text = str(exc)
    where = args.rdzv_endpoint or "this machine"
    if "address already in use" in text.lower() or "EADDRINUSE" in text:
        return f"The port of --rdzv-endpoint {where} is in use by another program; choose another port."
    if type(exc).__name__.startswith("Rendezvous") or "rendezvous" in text.lower() or "connect" in text.lower():
        return (f"Could not meet the other machines at {where} within {args.rdzv_timeout} s; check that node 0 "
                f"runs the same command, that the address is right and that the port is open.")
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"The launcher failed ({type(exc).__name__}: {first.rstrip('.')}); run with --debug for details."


def _train_seeds(cfg, k: int, out: Path | None, control) -> int:
    """K runs of `cfg`, seeds seed..seed+k-1, one after another as ordinary run folders; then the mean ± std
    over them. A run that fails while training does not stop the others (exit 1 at the end); a stop (Ctrl+C)
    or a run that cannot start from what it was given (exit 2) ends the series."""
    from perceiver_gui.core import runs
    from perceiver_gui.core.stats import run_curve, seed_configs, seed_summary
    from perceiver_gui.core.training import train

    code, done = EXIT_OK, []
    for i, seeded in enumerate(seed_configs(cfg, k)):
        print(f"\n== Seed {seeded.train.seed} ({i + 1} of {k}) ==", flush=True)
        finished: list = []
        result = _print_run(_tap(train(seeded, out_dir=out / f"seed-{seeded.train.seed}" if out else None,
                                       control=control), finished))
        code = max(code, result)
        if finished and finished[-1].run_dir:
            done.append(Path(finished[-1].run_dir))
        if control.stopped:
            print(f"Stopped: {k - i - 1} seed(s) not run.")
            break
        if result == EXIT_BAD_INPUT:  # the data, device or folder: every other seed would be refused the same way
            break
    curves = [run_curve(runs.read_metrics(d).records) for d in done]
    curves = [c for c in curves if c.split]
    if curves:
        summary = seed_summary(curves)
        split = curves[0].split
        print(f"\nOver {len(curves)} seed(s), mean ± sample std (n-1), on the {split} split:")
        for key, label, fmt in (("final_acc", "final accuracy", "{:.2%}"), ("best_acc", "best accuracy", "{:.2%}"),
                                ("final_loss", "final loss", "{:.4f}"), ("best_loss", "best loss", "{:.4f}")):
            print(f"  {label:15s} {summary[key].text(fmt)}")
        if summary["test_acc"].n:
            print(f"  test accuracy of the chosen model  {summary['test_acc'].text()}")
        print("Runs: " + ", ".join(printable(d) for d in done))
    return code


def _tap(events, finished: list):
    """The events, unchanged; the Finished one is also kept in `finished`."""
    from perceiver_gui.core.events import Finished

    for event in events:
        if isinstance(event, Finished):
            finished.append(event)
        yield event


def _print_run(events) -> int:
    from perceiver_gui.core.datasets import KINDS
    from perceiver_gui.core.events import CheckpointSaved, DownloadProgress, EpochEnd, Finished, Log, RunStarted, Step

    bar = _ProgressBar(sys.stderr)
    finished = None
    for event in events:
        if isinstance(event, RunStarted):
            kind = KINDS.get(event.kind, KINDS["image"])
            bar.per_s = "img/s" if event.kind == "image" else f"{kind.plural}/s"
            print(f"Run folder: {printable(event.run_dir)}")
            print(f"Device: {printable(event.device_name)} · {event.parameters:,} parameters · "
                  f"{event.train_size:,} train / {event.val_size:,} validation / {event.test_size:,} test "
                  f"{kind.plural} · {event.total_steps:,} steps")
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
        return EXIT_BAD_INPUT if finished.bad_input else EXIT_FAILED
    print(printable(finished.message))
    if finished.model_path:
        print(f"Model: {printable(finished.model_path)}")
    return EXIT_OK


def _stop_on_signals(control, *, launched: bool = False) -> dict:
    """Ctrl+C, SIGTERM (kill, a scheduler) and SIGHUP (the terminal closed, logging out) stop the run after
    the current step and save it, so it can be resumed. A second Ctrl+C interrupts at once (the run is then
    marked stopped, resumable from its last finished epoch); a second SIGTERM or SIGHUP ends the process
    (the run's lock is released by the OS). Only the main thread may set handlers: the GUI never does.
    Returns the handlers it replaced, to put back when the run is over.

    A process started by the launcher (`launched`) acts on the first signal only: Ctrl+C reaches it from the
    terminal and again from the launcher, which passes signals on, and which kills a process that does not end
    within 30 s."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    names = [n for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)]
    previous = {getattr(signal, name): signal.getsignal(getattr(signal, name)) for name in names}

    def stop(signum, frame) -> None:
        control.stop()
        for name in names:  # the next one acts at once
            sig = getattr(signal, name)
            signal.signal(sig, signal.SIG_IGN if launched else
                          signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)

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
        self.per_s = "img/s"  # the speed's unit, "series/s" once the run says its samples are series

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
                   f"  loss {s.loss:.4f}  lr {s.lr:.2e}  {s.images_per_s:,.0f} {self.per_s}  ETA {eta}")

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
        if predictor.takes_series:
            results = [_predict_series(predictor, path, args.top_k)]
        elif predictor.takes_points:
            results = [_predict_points(predictor, path, args.top_k)]
        else:
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
            files = ("mesh or point files" if predictor.takes_points else "sound files" if predictor.takes_audio
                     else "image files")
            _print_prediction(Prediction(str(path), error=f"{path} holds no {files}."), args.json)
    return EXIT_FAILED if failed else EXIT_OK


def _predict_series(predictor, path: Path, top_k: int) -> list:
    from perceiver_gui.core.inference import Prediction
    from perceiver_gui.core.series import SeriesError

    try:
        return predictor.predict_series_file(path, top_k=top_k)
    except SeriesError as exc:
        return [Prediction(str(path), error=str(exc))]


def _predict_points(predictor, path: Path, top_k: int) -> list:
    """The mesh or point file, or every one under the folder."""
    from perceiver_gui.core.points import point_files

    return predictor.predict_points(point_files(path) if path.is_dir() else [path], top_k=top_k)


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
    from perceiver_gui.core.datasets import KINDS, kind_of
    from perceiver_gui.core.evaluation import EVALUATION_FILE, EvaluationError, read_evaluation, run_kind
    from perceiver_gui.core.reading import NotARegularFile, open_regular

    path: Path = args.file
    if path.exists() and not path.is_dir():
        try:
            open_regular(path).close()  # a FIFO would block whichever reader comes next
        except NotARegularFile as exc:
            raise ConfigError(f"{path} is not a file Perceiver GUI writes: {exc.strerror}.") from None
    if path.is_dir() or path.name in (runs.RUN_FILE, runs.METRICS_FILE):
        return _info_run(path if path.is_dir() else path.parent)
    if path.suffix.lower() in CONFIG_SUFFIXES:
        _info_config("Config file", path, load_config(path))
        return EXIT_OK
    if path.name == EVALUATION_FILE:
        try:
            ev = read_evaluation(path.parent)
        except EvaluationError as exc:
            raise ConfigError(str(exc)) from None
        print(f"Evaluation file: {printable(path)}")
        nouns = KINDS[run_kind(path.parent)].plural
        print(f"The {ev.split} predictions of epoch {ev.epoch} (step {ev.step:,}): {len(ev.labels):,} {nouns}, "
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
    print(f"Model: {printable(path)}")
    if meta.config.model.positions == "points":
        d = meta.config.data
        augmented = " and ".join(([] if not d.rotate else ["turned about the up (z) axis"])
                                 + ([] if not d.jitter else [f"jittered by σ {d.jitter:g}"]))
        print(f"Input: point clouds of {meta.image_size[0]:,} points (x, y, z), sampled on each mesh's surface or "
              f"taken from each point list, centred and scaled into the unit sphere"
              + (f"; {augmented} in training" if augmented else ""))
    elif kind_of(meta.config.data.dataset) is KINDS["audio"]:
        print(f"Input: {_sound_input(meta)}")
    elif len(meta.image_size) == 1:
        print(f"Input: time series of {meta.channels} channel(s), up to {meta.image_size[0]:,} steps (shorter ones "
              f"masked), normalised per channel with mean {_numbers(meta.mean)} and std {_numbers(meta.std)}")
    else:
        h, w = meta.image_size
        print(f"Input: {meta.channels} channel(s), {h}×{w} pixels")
    print(f"Classes ({len(meta.class_names)}): {printable(', '.join(meta.class_names))}")
    if accuracy := accuracy_text(meta.summary):
        print(f"Accuracy: {printable(accuracy)}")
    for key, value in meta.summary.items():
        print(f"{printable(key)}: {printable(value)}")
    print(f"App version: {printable(meta.app_version)}")
    _info_config("", path, meta.config)
    return EXIT_OK


def _sound_input(meta) -> str:
    """How the model hears a sound file, from the preprocessing its checkpoint records."""
    d = meta.config.data
    clip = f"sounds as {d.clip_seconds:g} s mono clips at {d.sample_rate:,} Hz"
    if d.audio_input == "log_mel":
        mels, frames = meta.image_size
        return f"{clip}, as {mels}-band log-mel spectrograms of {frames} frames (25 ms windows every 10 ms)"
    if d.audio_input == "mel_frames":
        return (f"{clip}, as {meta.image_size[0]} frames of {meta.channels} log-mel bands (25 ms windows every "
                f"10 ms)")
    return f"{clip}, as the raw waveform of {meta.image_size[0]:,} samples"


def _numbers(values) -> str:
    return ", ".join(f"{v:.4g}" for v in values)


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


# -- sweep -------------------------------------------------------------------------------------
def cmd_sweep(args: argparse.Namespace) -> int:
    """Exit 0 when the sweep has its trials (or was stopped), 2 for a bad sweep file or folder."""
    if args.status:
        if args.config or args.out or args.trials or args.workers != 1:
            raise ConfigError("--status only reads a sweep folder; drop the other options.")
        return _sweep_status(args.status, args.storage)
    if not args.out:
        raise ConfigError("Say where the sweep goes with --out DIR (an existing sweep folder continues).")
    if args.workers < 1:
        raise ConfigError("--workers must be at least 1.")
    from perceiver_gui.core import sweep
    from perceiver_gui.core.control import RunControl

    if args.config:
        folder = sweep.create_sweep(sweep.load_sweep(args.config), args.out, storage=args.storage, trials=args.trials)
    else:
        spec, storage = sweep.read_sweep(args.out)
        folder = sweep.create_sweep(spec, args.out, storage=args.storage or storage, trials=args.trials)
    print(f"Sweep folder: {printable(folder)}")
    control = RunControl()
    previous = _stop_on_signals(control)
    try:
        for event in sweep.run_sweep(folder, workers=args.workers, control=control, storage=args.storage):
            print(printable(sweep.describe(event)), flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_OK


def _sweep_status(folder: Path, storage: str | None) -> int:
    from perceiver_gui.core import sweep

    spec, saved_storage = sweep.read_sweep(folder)
    study = sweep.open_study(folder, spec, storage or saved_storage)
    rows = sweep.trial_rows(study, spec)
    keys = [key for key, _ in spec.search]
    print(f"Sweep {printable(folder)}: {spec.sampler} sampler, {spec.pruner} pruner, {spec.metric} ({spec.direction}), "
          f"{sweep.target_trials(spec)} trials")
    header = ["trial", "state", spec.metric, "epoch", *keys, "run"]
    table = [[str(r.number), r.state + (" *" if r.is_best else ""), sweep.format_value(r.value), str(r.epoch),
              *[printable(sweep.format_value(dict(r.params).get(k, ""))) for k in keys], printable(r.run_dir)] for r in rows]
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    for row in [header, *table]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    best = next((r for r in rows if r.is_best), None)
    if best is None:
        print("No trial has completed yet.")
    else:
        params = ", ".join(f"{k}={sweep.format_value(v)}" for k, v in best.params)
        print(printable(f"Best: trial {best.number}, {spec.metric} {sweep.format_value(best.value)} ({params}); "
                        f"run {best.run_dir}"))
    return EXIT_OK
