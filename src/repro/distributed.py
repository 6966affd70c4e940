"""Thin helpers over ``torch.distributed`` for the full-scale entry points (CONTRACT §8).

Not a distributed engine: the training scripts call torch's own DDP; these helpers only read
what ``torchrun`` puts in the environment, pick the backend (NCCL on CUDA, gloo on CPU) and
the device, and make the same script run unchanged as one plain process::

    info = init_from_env()                 # no-op without torchrun's variables
    model = wrap_ddp(model, info)          # DDP when world_size > 1, else the model itself
    ...
    loss = all_reduce_mean(loss.detach())  # the same number on every rank
    if is_main():
        save(...)
    barrier()
    shutdown()

``torchrun --nproc-per-node N SCRIPT`` sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT; when none of the first three is set, :func:`init_from_env` returns a
single-process :class:`DistInfo` and starts no process group.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from .errors import ReproError

__all__ = [
    "DistInfo",
    "read_env",
    "init_from_env",
    "is_main",
    "barrier",
    "all_reduce_mean",
    "all_reduce_sum",
    "wrap_ddp",
    "unwrap",
    "shutdown",
]

_RANK_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
_LAUNCH_HINT = ("launch with torchrun (`torchrun --nproc-per-node N ...`), which sets RANK, "
                "WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT, or unset them all to run "
                "as one process")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: its global rank, the number of processes, its rank on this
    node (the GPU it drives) and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def read_env(environ: Mapping[str, str] | None = None) -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` from torchrun's variables, or None when none is set.

    Raises :class:`ReproError` when only some are set or their values make no sense.
    """
    env = os.environ if environ is None else environ
    present = [k for k in _RANK_VARS if k in env]
    if not present:
        return None
    missing = [k for k in _RANK_VARS if k not in env]
    if missing:
        raise ReproError(f"{', '.join(present)} set but {', '.join(missing)} missing: "
                         + _LAUNCH_HINT)
    try:
        rank, world_size, local_rank = (int(env[k]) for k in _RANK_VARS)
    except ValueError as err:
        values = ", ".join(f"{k}={env[k]!r}" for k in _RANK_VARS)
        raise ReproError(f"torchrun variables must be integers, got {values}") from err
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise ReproError(f"inconsistent torchrun variables RANK={rank}, WORLD_SIZE={world_size}"
                         f", LOCAL_RANK={local_rank}: need 0 <= RANK < WORLD_SIZE and "
                         "LOCAL_RANK >= 0; " + _LAUNCH_HINT)
    return rank, world_size, local_rank


def _pick_device(device: str | torch.device, local_rank: int) -> torch.device:
    """``"auto"``: this process's GPU (cuda:LOCAL_RANK) when CUDA is there, else the CPU."""
    if str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ReproError(f"unknown device {str(device)!r}: use auto, cpu or cuda") from err
    if dev.type != "cuda":
        return dev
    if not torch.cuda.is_available():
        raise ReproError(f"device {str(device)!r} requested but CUDA is not available; use "
                         "--device cpu (gloo) or auto")
    index = local_rank if dev.index is None else dev.index
    if index >= torch.cuda.device_count():
        raise ReproError(f"this process needs GPU {index} (LOCAL_RANK {local_rank}) but this "
                         f"node shows {torch.cuda.device_count()} GPU(s): start at most one "
                         "process per GPU (torchrun --nproc-per-node) or check "
                         "CUDA_VISIBLE_DEVICES")
    return torch.device("cuda", index)


def init_from_env(backend: str | None = None, *, device: str | torch.device = "auto",
                  init_method: str | None = None,
                  timeout: timedelta | None = None) -> DistInfo:
    """Join the process group that torchrun describes and return this process's place in it.

    Without torchrun's variables this is a no-op that returns ``DistInfo(0, 1, 0, device)``.
    ``backend`` defaults to NCCL on CUDA and gloo on CPU; ``init_method`` defaults to
    ``env://`` (MASTER_ADDR/MASTER_PORT), tests pass ``file://...``. Calling it again in an
    initialised process returns the same information.
    """
    ranks = read_env()
    if ranks is None:
        return DistInfo(device=_pick_device(device, 0))
    rank, world_size, local_rank = ranks
    dev = _pick_device(device, local_rank)
    backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
    if backend == "nccl" and dev.type != "cuda":
        raise ReproError(f"the NCCL backend needs CUDA devices, got {dev}; use gloo on CPU")
    if init_method is None:
        absent = [k for k in ("MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if absent:
            raise ReproError(f"{', '.join(absent)} not set: " + _LAUNCH_HINT)
        init_method = "env://"
    info = DistInfo(rank, world_size, local_rank, dev)
    if dist.is_initialized():
        if (dist.get_rank(), dist.get_world_size()) != (rank, world_size):
            raise ReproError(f"a process group of rank {dist.get_rank()}/"
                             f"{dist.get_world_size()} exists, but the environment says "
                             f"{rank}/{world_size}")
        return info
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    kwargs = {"timeout": timeout} if timeout is not None else {}
    dist.init_process_group(backend, init_method=init_method, rank=rank,
                            world_size=world_size,
                            device_id=dev if dev.type == "cuda" else None, **kwargs)
    return info


def _initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def is_main() -> bool:
    """True on rank 0, and in a process that is not part of a group."""
    return not _initialized() or dist.get_rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if not _initialized():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """A new tensor holding the sum of ``tensor`` over all ranks (a copy in one process).

    With NCCL the tensor must be on this rank's GPU."""
    out = tensor.detach().clone()
    if _initialized():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """A new tensor holding the mean of ``tensor`` over all ranks (a copy in one process)."""
    out = all_reduce_sum(tensor)
    if _initialized():
        out = out / dist.get_world_size()
    return out


def wrap_ddp(model: torch.nn.Module, info: DistInfo, **ddp_kwargs) -> torch.nn.Module:
    """Move ``model`` to ``info.device`` and wrap it in DistributedDataParallel when there is
    more than one process; otherwise return it (moved) as it is. See :func:`unwrap`."""
    model = model.to(info.device)
    if not (info.distributed and _initialized()):
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, **ddp_kwargs)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DDP wrapper (for checkpoints and EMA), or ``model`` itself."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


def shutdown() -> None:
    """Leave the process group (no-op when there is none)."""
    if _initialized():
        dist.destroy_process_group()
