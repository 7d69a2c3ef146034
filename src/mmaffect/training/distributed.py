"""Data parallelism under ``torchrun``: process group, sharding, gradient and prediction exchange.

The trainer works unchanged in one process; under ``torchrun`` (``mmaffect train --devices N``)
each rank takes a contiguous shard of every batch, the gradients are summed across ranks before
each optimizer step (each rank weights its loss by its share of the batch's rows, so the sum is
the single-process gradient), and evaluation rows are sharded, predicted and gathered so every
rank computes the same metrics as a single process would. Only rank 0 writes files.

Backend: gloo on CPU, NCCL when CUDA is available. Workers end with barrier, destroy and
``os._exit`` (see STACK.md pitfall 6: gloo can abort during interpreter finalisation).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from typing import NoReturn

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True in the process that writes files (rank 0, or the only process)."""
    return rank() == 0


def device() -> torch.device:
    """This rank's device: its GPU (``LOCAL_RANK``) when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(threads: int | None = None) -> None:
    """Join the process group torchrun described in the environment (no-op outside torchrun)."""
    if not launched_by_torchrun() or dist.is_initialized():
        return
    torch.set_num_threads(threads or 1)  # N ranks on a shared CPU: one thread each unless told
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(device())
    dist.init_process_group(backend)


def finish(code: int = 0) -> NoReturn:
    """End a torchrun worker: wait for all ranks, leave the group and exit without interpreter
    finalisation (where gloo occasionally aborts after all work is done)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def shard(units: Tensor) -> Tensor:
    """This rank's contiguous part of ``units`` (all of them in a single process)."""
    if not is_distributed():
        return units
    return units.tensor_split(world_size())[rank()]


def all_reduce_sum(values: Tensor) -> Tensor:
    """Element-wise sum over ranks (returns ``values`` itself in a single process)."""
    if is_distributed():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def all_reduce_gradients(parameters: Sequence[torch.nn.Parameter]) -> None:
    """Sum the gradients of ``parameters`` over ranks in one flat exchange (missing gradients count
    as zero, so a rank whose shard was empty still takes part)."""
    if not is_distributed():
        return
    params = [p for p in parameters if p.requires_grad]
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def all_gather_objects(obj) -> list:
    """Every rank's ``obj``, in rank order (``[obj]`` in a single process)."""
    if not is_distributed():
        return [obj]
    out: list = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def launch(devices: int, argv: Sequence[str]) -> int:
    """Run ``mmaffect <argv>`` in ``devices`` processes with torchrun on this machine; returns its exit code."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={devices}",
               "-m", "mmaffect.cli", *argv]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.run(command, env=env, check=False).returncode
