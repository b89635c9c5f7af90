"""Data-parallel training over torch.distributed: what one rank of a multi-process run needs to know and do.

A multi-process run is the same training loop on every rank (torchrun's launcher starts one
`perceiver-gui train` per GPU, or N on a CPU, and sets RANK, WORLD_SIZE, LOCAL_RANK and MASTER_ADDR).
The global batch `train.batch_size` is split evenly: each rank draws the same seeded permutation and the
same augmentation for the whole batch, and trains on its slice; gradients are summed over the ranks and
divided by their number, so the step is the one a single process takes on the whole batch.

Two process groups: the training one (NCCL on GPUs, gloo on CPUs) carries gradients and evaluation
counts; a gloo one carries the one-element stop/pause agreement and the random states, on the CPU, so
asking "stop?" every step never makes a GPU wait.

`Dist.single()` is the one-process run: every method is then a no-op, so the loop reads the same.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from perceiver_gui.core.control import RunControl

__all__ = ["Dist", "DistributedError", "PeerLost", "device_for_rank", "in_launched_worker", "launched_rank",
           "threads_per_process"]

TIMEOUT_S = float(os.environ.get("PERCEIVER_DIST_TIMEOUT", "600"))  # a peer silent this long has been lost
CLOSE_WAIT_S = 10.0  # at the end, how long the ranks wait for each other before leaving the process group
PAUSE_POLL_S = 1.0  # while paused, the ranks agree this often, well inside the timeout
_GO, _PAUSE, _STOP = 0, 1, 2


class DistributedError(Exception):
    """A multi-process run that cannot start; the message says what to change."""


class PeerLost(Exception):
    """Another rank of the run died or stopped answering; the message is the sentence to show."""


def in_launched_worker() -> bool:
    """True in a process that a torch launcher started as one rank of a run (torchrun, or `srun` with the
    variables set by hand)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


@dataclass(frozen=True, kw_only=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    control_group: Any = None  # the gloo group for stop/pause and random states (None in one process)

    @classmethod
    def single(cls) -> Dist:
        return cls()

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes the run folder and yields events."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    # -- start and end -----------------------------------------------------------------------------
    @classmethod
    def from_environment(cls, device: torch.device) -> Dist:
        """Join the run the launcher set up in the environment, with NCCL when `device` is a GPU and gloo
        otherwise; outside a launched worker, a one-process run."""
        if not in_launched_worker() or int(os.environ["WORLD_SIZE"]) <= 1:
            return cls.single()
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ["LOCAL_RANK"])
        backend = "nccl" if device.type == "cuda" else "gloo"
        try:
            if not dist.is_initialized():
                dist.init_process_group(backend=backend, rank=rank, world_size=world,
                                        timeout=timedelta(seconds=TIMEOUT_S),
                                        **({"device_id": device} if device.type == "cuda" else {}))
            control_group = dist.new_group(backend="gloo", timeout=timedelta(seconds=TIMEOUT_S))
        except (RuntimeError, ValueError) as exc:
            raise PeerLost(f"Rank {rank} could not join the other {world - 1} process(es) of the run "
                           f"({_first_line(exc)}); check that every node runs the same command and can "
                           f"reach {os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}.") from None
        return cls(rank=rank, world_size=world, local_rank=local_rank,
                   local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", world)), control_group=control_group)

    def close(self) -> None:
        """Leave the process group together: rank 0 hosts the rendezvous store, and when it quit while a peer was
        still leaving, it aborted at exit ("terminate called without an active exception", exit status -6, seen
        once in the two-process test). A peer that is gone is waited for CLOSE_WAIT_S at most."""
        if self.active and dist.is_initialized():
            try:
                dist.monitored_barrier(group=self.control_group, timeout=timedelta(seconds=CLOSE_WAIT_S))
            except RuntimeError:
                pass  # a lost peer: the run has already said so; leave anyway
            dist.destroy_process_group()

    # -- the batch -----------------------------------------------------------------------------------
    def check_batch(self, batch_size: int) -> str:
        """A sentence when the global batch does not split evenly over the ranks, else "". An uneven split
        would weigh the images of a smaller slice more, so the run would no longer learn like one process."""
        if batch_size % self.world_size:
            lower = max(self.world_size, batch_size // self.world_size * self.world_size)
            return (f"train.batch_size {batch_size} does not split evenly over {self.world_size} processes; "
                    f"choose a multiple of {self.world_size}, such as {lower} or {lower + self.world_size}.")
        return ""

    def my_slice(self, n: int) -> slice:
        """This rank's contiguous share of n items (the batch, or the test split): sizes differ by at most one."""
        lo = n * self.rank // self.world_size
        return slice(lo, n * (self.rank + 1) // self.world_size)

    # -- collectives -----------------------------------------------------------------------------------
    def average_gradients(self, model: torch.nn.Module) -> None:
        """Sum the gradients over the ranks in one flat all-reduce and divide by the number of ranks: each
        rank's loss is the mean over its equal slice, so the result is the gradient of the whole batch's mean."""
        if not self.active:
            return
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        self._all_reduce(flat)
        flat.div_(self.world_size)
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The tensor summed over the ranks (in place; returned for convenience)."""
        if self.active:
            self._all_reduce(tensor)
        return tensor

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """A copy of the tensor averaged over the ranks."""
        if not self.active:
            return tensor
        return self.sum(tensor.clone()).div_(self.world_size)

    def share_weights(self, model: torch.nn.Module, state: dict[str, torch.Tensor] | None) -> None:
        """Load rank 0's `state` (None on the other ranks) into every rank's model."""
        if state is not None:
            model.load_state_dict(state)
        if self.active:
            with torch.no_grad():
                for tensor in model.state_dict().values():  # views of the model's own tensors
                    self._call(dist.broadcast, tensor, 0)

    def gather_rows(self, tensor: torch.Tensor, n: int) -> torch.Tensor:
        """Concatenate every rank's `my_slice(n)` rows of a result, in rank order (all ranks get it)."""
        if not self.active:
            return tensor
        longest = -(-n // self.world_size)
        padded = tensor.new_zeros((longest, *tensor.shape[1:]))
        padded[:len(tensor)] = tensor
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        self._call(dist.all_gather, parts, padded)
        sizes = [len(range(n)[Dist(rank=r, world_size=self.world_size).my_slice(n)]) for r in range(self.world_size)]
        return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])

    def gather_states(self, state: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's random-number state (a CPU byte tensor of the same size on every rank), in rank order."""
        if not self.active:
            return [state]
        parts = [torch.empty_like(state) for _ in range(self.world_size)]
        self._call(dist.all_gather, parts, state.contiguous(), group=self.control_group)
        return parts

    def requests(self, control: RunControl) -> tuple[bool, bool]:
        """(stop, pause), agreed by all ranks with a one-element all-reduce, so every rank acts at the same
        step: a stop asked on any rank (the GUI, Ctrl+C or SIGTERM reach rank 0) stops them all."""
        if not self.active:
            return control.stopped, control.paused
        code = torch.tensor([_STOP if control.stopped else _PAUSE if control.paused else _GO], dtype=torch.int32)
        self._call(dist.all_reduce, code, op=dist.ReduceOp.MAX, group=self.control_group)
        return int(code) == _STOP, int(code) == _PAUSE

    def wait_while_paused(self, control: RunControl) -> bool:
        """Wait, all ranks together, until the pause ends; True when it ended with a stop. The ranks agree
        every PAUSE_POLL_S, so a long pause never reaches the process group's timeout."""
        if not self.active:
            control.wait_while_paused()
            return control.stopped
        while True:
            control.wait_while_paused(timeout=PAUSE_POLL_S)
            stop, pause = self.requests(control)
            if stop or not pause:
                return stop

    def wait_for_main(self) -> None:
        """Rank 0 and the others meet here, however long rank 0 took (a first download can take an hour);
        rank 0 calls it when done, the others before they start."""
        if self.active:
            self._call(dist.monitored_barrier, group=self.control_group, timeout=timedelta(hours=12))

    def _all_reduce(self, tensor: torch.Tensor) -> None:
        self._call(dist.all_reduce, tensor)

    def _call(self, fn, *args, **kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except RuntimeError as exc:  # gloo and NCCL report a dead or silent peer as RuntimeError subclasses
            raise PeerLost(f"Another process of the run stopped answering ({_first_line(exc)}), so rank "
                           f"{self.rank} stopped too.") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__).rstrip(".")[:200]


def launched_rank() -> int:
    """This process's rank in a launched run (0 outside one), known before the process group is joined."""
    return int(os.environ["RANK"]) if in_launched_worker() else 0


def device_for_rank(device: torch.device) -> torch.device:
    """On GPUs, each process of a launched run trains on its own: cuda:LOCAL_RANK."""
    if device.type == "cuda" and in_launched_worker() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    return device


def threads_per_process(threads: int) -> int:
    """CPU threads for one process: the config's, or (0) the cores but one shared by this node's processes."""
    if threads > 0:
        return threads
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if in_launched_worker() else 1
    return max(1, ((os.cpu_count() or 2) - 1) // max(1, local))
