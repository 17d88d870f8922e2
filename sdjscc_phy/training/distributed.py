"""Data-parallel training on ``torch.distributed``: one process per device, each holding a share of every batch.

``torchrun`` starts the processes (it sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous
address), or ``jsccflow train RECIPE --nproc N`` does on one machine (:func:`launch`, torch's elastic
launcher: the same environment as ``torchrun --standalone``). The recipe's ``batch_size`` is the global
batch: rank ``r`` runs a contiguous share of its items (:meth:`World.share`) through the flowgraph with
the item order, augmentation and noise those items get in one process (blocks draw per-item values
through ``BatchContext.own_rows``). Each rank weights its loss by its share of the batch and the
gradients are summed over the ranks, so the step is the one-process step up to floating-point
summation order. Rank 0 alone validates and writes checkpoints, ``log.csv`` and exports; the others
wait for it (:meth:`World.on_main`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
import torch.distributed as dist

from sdjscc_phy.errors import JsccflowError, TrainingError

BACKENDS = ("gloo", "nccl")
T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (``size`` 1: training in one process)."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, items: int) -> tuple[int, int]:
        """``(offset, rows)`` of this rank's rows in a batch of ``items``: contiguous, in rank order, the
        first ``items % size`` ranks one row more than the others."""
        base, extra = divmod(items, self.size)
        return self.rank * base + min(self.rank, extra), base + (self.rank < extra)

    def sum_gradients(self, parameters: Sequence[torch.nn.Parameter], loss: torch.Tensor) -> float:
        """Sum the gradients of ``parameters`` and the (share-weighted) ``loss`` over the ranks, in place;
        returns the summed loss, the loss of the whole batch.

        An explicit all-reduce rather than ``DistributedDataParallel``: the scheduler calls the trained
        modules from inside their blocks, some more than once per step and some not at all (a rank
        whose share is empty), and the shares need not be equal, which DDP's mean of the gradients
        would get wrong. One flat buffer makes it one collective per step.
        """
        if self.size == 1:
            return float(loss.detach())
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
        # a parameter no rank's loss reached keeps no gradient (optimisers skip it, as in one process)
        reached = torch.tensor([p.grad is not None for p in parameters], dtype=grads[0].dtype, device=grads[0].device)
        flat = torch.cat([*(g.reshape(-1) for g in grads), reached, loss.detach().reshape(1).to(grads[0].dtype)])
        dist.all_reduce(flat)
        count = len(parameters)
        summed = flat[:-1 - count].split([g.numel() for g in grads])
        for p, grad, any_rank in zip(parameters, summed, flat[-1 - count:-1].tolist()):
            p.grad = grad.view_as(p) if any_rank else None
        return float(flat[-1])

    def broadcast_modules(self, modules: dict[str, torch.nn.Module]) -> None:
        """Give every rank rank 0's parameters and buffers (as DDP does when it wraps a model)."""
        if self.size > 1:
            for module in modules.values():
                for tensor in module.state_dict().values():
                    dist.broadcast(tensor, src=0)

    def gather(self, value: T) -> list[T]:
        """Every rank's ``value``, in rank order (picklable objects)."""
        if self.size == 1:
            return [value]
        values: list = [None] * self.size
        dist.all_gather_object(values, value)
        return values

    def on_main(self, work: Callable[[], T]) -> T | None:
        """Run ``work`` on rank 0 only (None elsewhere); a :class:`JsccflowError` there is raised on every
        rank, so that no rank waits forever for one that failed."""
        if self.size == 1:
            return work()
        result, failure, message = None, None, [None]
        if self.is_main:
            try:
                result = work()
            except JsccflowError as exc:
                failure, message[0] = exc, str(exc)
        dist.broadcast_object_list(message, src=0)
        if failure is not None:
            raise failure
        if message[0] is not None:
            raise TrainingError(f"rank 0 failed: {message[0]}")
        return result

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value`` on every rank (a picklable object)."""
        if self.size == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def join(device: torch.device, backend: str | None) -> tuple[World, torch.device]:
    """This process's :class:`World` and training device. Under ``torchrun`` (``WORLD_SIZE`` > 1 in the
    environment) it joins the process group: ``backend`` (default NCCL on CUDA, gloo on the CPU), and
    on CUDA the GPU ``LOCAL_RANK``."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(), device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise TrainingError(f"rank {rank}: LOCAL_RANK {local_rank} but this machine has "
                                f"{torch.cuda.device_count()} CUDA device(s); start at most that many processes "
                                "per node")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = backend or ("nccl" if device.type == "cuda" else "gloo")
    if backend == "nccl" and device.type != "cuda":
        raise TrainingError("backend nccl needs the recipe to train on CUDA devices (device: cuda or auto on GPUs)")
    if not dist.is_initialized():
        dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    return World(rank, size), device


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def check_nproc(nproc: int) -> None:
    """One line for a ``--nproc`` that cannot start, before the recipe is even read."""
    if nproc < 1:
        raise JsccflowError(f"--nproc: must be at least 1; got {nproc}")
    if os.environ.get("WORLD_SIZE"):
        raise JsccflowError("--nproc: this process was itself started by torchrun (WORLD_SIZE is set); "
                            "let torchrun start the processes, without --nproc")


def check_devices(nproc: int, device: torch.device, backend: str | None) -> None:
    """One line for ``--nproc`` / ``--backend`` that the recipe's device cannot serve, before any process starts."""
    if backend == "nccl" and device.type != "cuda":
        raise JsccflowError(f"--backend nccl: needs CUDA devices; the recipe trains on '{device}'")
    if device.type == "cuda" and nproc > torch.cuda.device_count():
        raise JsccflowError(f"--nproc {nproc}: one process per GPU, but this machine has "
                            f"{torch.cuda.device_count()} CUDA device(s)")


def launch(nproc: int, entrypoint: Callable, *args) -> object:
    """Run ``entrypoint(*args)`` in ``nproc`` processes on this machine, as ``torchrun --standalone
    --nproc-per-node nproc`` would; returns rank 0's result. A :class:`JsccflowError` in a worker
    comes back as one :class:`TrainingError` with the first failing rank's message; any other failure
    (a crash, a killed worker) as the launcher's ``ChildFailedError``."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # Workers fork from a server process that imported torch and the trainer once: a spawned worker
    # imports them again (seconds per process, per launch). Forking this process itself could copy the
    # state of its threads.
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    multiprocessing.set_forkserver_preload(["sdjscc_phy.training.trainer"])
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.1,
                          start_method=method)
    # the launcher logs a failed worker's traceback; a user error is reported here in one line instead
    loggers = [logging.getLogger(name) for name in ("torch.distributed.elastic", "torch.multiprocessing")]
    levels = [logger.level for logger in loggers]
    with tempfile.TemporaryDirectory(prefix="jsccflow-errors-") as errors:
        try:
            for logger in loggers:
                logger.setLevel(logging.CRITICAL)
            return elastic_launch(config, _report_errors)(errors, entrypoint, *args)[0]
        except ChildFailedError:
            messages = sorted(Path(errors).glob("rank*.txt"), key=lambda p: int(p.stem[4:]))
            if messages:
                raise TrainingError(messages[0].read_text()) from None
            raise  # not a user error: the failure with its traceback
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def _report_errors(errors: str, entrypoint: Callable, *args) -> object:
    """A worker: run ``entrypoint``; a user error is written for :func:`launch` to report, exit code 2."""
    try:
        return entrypoint(*args)
    except JsccflowError as exc:
        (Path(errors) / f"rank{os.environ['RANK']}.txt").write_text(str(exc))
        raise SystemExit(2) from None
