"""Seeds: runs of one recipe that differ only by their seed, and the statistics over them.

A *group* is derived, not recorded: runs whose settings are the same except `train.seed` (and the run's
`name`, a label) belong together. That holds for every run ever made, old ones included, for runs made by
`train --seeds K`, by the queue, or by hand with `--set train.seed=...`, with no field to keep in step.

Per epoch the held-out split is validation (test in a run of an older version, which had no validation);
the chosen model's test accuracy, measured once at the end, is summarised beside it.

The statistics are plain Python (`statistics`), Qt-free, over what metrics.jsonl holds: per epoch, the mean
and the *sample* standard deviation (n - 1 in the denominator) of the runs that reached that epoch. The
band is only defined where at least two runs have a value; epochs only one run reached are left out of the
mean curve too, so a longer run does not make the mean jump.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from perceiver_gui.config import Config
from perceiver_gui.core.runs import EpochRecord, MetricsRecord, TestRecord, flatten_config

__all__ = [
    "GROUP_IGNORES",
    "Band",
    "MeanStd",
    "RunCurve",
    "band",
    "group_key",
    "group_runs",
    "mean_std",
    "run_curve",
    "seed_configs",
    "seed_summary",
]

GROUP_IGNORES = ("train.seed", "name")  # what runs of one group may differ in


def seed_configs(cfg: Config, k: int) -> list[Config]:
    """`cfg` with seeds seed, seed + 1, ..., seed + k - 1: the runs of one group, in order."""
    if k < 1:
        raise ValueError("The number of seeds must be at least 1.")
    return [dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=cfg.train.seed + i)).check()
            for i in range(k)]


def group_key(config: Mapping[str, Any] | None) -> tuple | None:
    """What runs of one group share: every setting but the seed and the name, as a hashable value. None
    for a run whose settings could not be read (it is a group of its own)."""
    if config is None:
        return None
    flat = flatten_config(config)
    return tuple(sorted((k, _hashable(v)) for k, v in flat.items() if k not in GROUP_IGNORES))


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, float) and math.isnan(value):
        return "nan"  # NaN != NaN, and two runs with the same NaN setting are alike
    return value  # 10 and 10.0 compare and hash alike, as an older writer's 10.0 should


def group_runs(configs: Sequence[Mapping[str, Any] | None]) -> list[list[int]]:
    """The indices of `configs` in groups of alike settings, in the order each group first appears; a
    config that is None is alone in its group."""
    groups: dict[Any, list[int]] = {}
    for i, config in enumerate(configs):
        key = group_key(config)
        groups.setdefault(("alone", i) if key is None else key, []).append(i)
    return list(groups.values())


@dataclass(frozen=True, slots=True)
class MeanStd:
    mean: float  # nan when n == 0
    std: float  # sample standard deviation (ddof=1); nan when n < 2
    n: int  # finite values it is over

    def text(self, fmt: str = "{:.2%}") -> str:
        """"95.12% ± 0.43% (n=3)"; the std is left out when there is only one value."""
        if self.n == 0:
            return "—"
        if self.n == 1:
            return f"{fmt.format(self.mean)} (n=1)"
        return f"{fmt.format(self.mean)} ± {fmt.format(self.std)} (n={self.n})"


def mean_std(values: Iterable[float]) -> MeanStd:
    """Mean and sample standard deviation of the finite values (a NaN, a diverged run's, is left out)."""
    finite = [float(v) for v in values if math.isfinite(v)]
    if not finite:
        return MeanStd(math.nan, math.nan, 0)
    std = statistics.stdev(finite) if len(finite) >= 2 else math.nan
    return MeanStd(statistics.fmean(finite), std, len(finite))


@dataclass(frozen=True, slots=True)
class RunCurve:
    """One run's held-out metric per epoch, as metrics.jsonl has it."""

    split: str  # the split its accuracy and loss are on: "validation", "test" (an older run); "" when none
    epochs: tuple[int, ...]
    acc: tuple[float, ...]  # nan where an epoch had none
    loss: tuple[float, ...]
    test_acc: float = math.nan  # the chosen model on the test split, measured once when the run ended

    @property
    def final_acc(self) -> float:
        return self.acc[-1] if self.acc else math.nan

    @property
    def final_loss(self) -> float:
        return self.loss[-1] if self.loss else math.nan

    @property
    def best_acc(self) -> float:
        return max((a for a in self.acc if math.isfinite(a)), default=math.nan)

    @property
    def best_loss(self) -> float:
        return min((v for v in self.loss if math.isfinite(v)), default=math.nan)


def run_curve(records: Iterable[MetricsRecord]) -> RunCurve:
    """The held-out accuracy and loss per epoch of a run's metrics records (validation; test in an older
    run), and its chosen model's test accuracy; a resumed run's repeated epoch counts once, as its last
    record has it, and so does a repeated test result."""
    by_epoch: dict[int, EpochRecord] = {}
    test_acc = math.nan
    for r in records:
        if isinstance(r, EpochRecord):
            by_epoch[r.epoch] = r
        elif isinstance(r, TestRecord):
            test_acc = r.test_acc
    epochs = sorted(by_epoch)
    split = next((by_epoch[e].held_out for e in epochs if by_epoch[e].held_out), "")
    return RunCurve(split, tuple(epochs), tuple(by_epoch[e].held_out_acc for e in epochs),
                    tuple(by_epoch[e].held_out_loss for e in epochs), test_acc)


@dataclass(frozen=True, slots=True)
class Band:
    """Mean ± sample std per epoch over a group's runs, at the epochs where at least two runs have a value."""

    epochs: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    n: tuple[int, ...]  # runs with a value at that epoch (>= 2)


def band(series: Sequence[Sequence[tuple[int, float]]]) -> Band:
    """Align runs' (epoch, value) pairs by epoch. Non-finite values are left out; an epoch that fewer than
    two runs reached has no band and no mean."""
    at: dict[int, list[float]] = {}
    for run in series:
        for epoch, value in run:
            if math.isfinite(value):
                at.setdefault(int(epoch), []).append(float(value))
    rows = [(e, mean_std(v)) for e, v in sorted(at.items()) if len(v) >= 2]
    return Band(tuple(e for e, _ in rows), tuple(s.mean for _, s in rows), tuple(s.std for _, s in rows),
                tuple(s.n for _, s in rows))


def seed_summary(curves: Sequence[RunCurve]) -> dict[str, MeanStd]:
    """Mean ± std over a group's runs of the final and best held-out accuracy and loss, and of the chosen
    models' test accuracy."""
    return {
        "final_acc": mean_std(c.final_acc for c in curves),
        "best_acc": mean_std(c.best_acc for c in curves),
        "final_loss": mean_std(c.final_loss for c in curves),
        "best_loss": mean_std(c.best_loss for c in curves),
        "test_acc": mean_std(c.test_acc for c in curves),
    }
