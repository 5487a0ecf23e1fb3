"""Data-parallel training under ``torchrun``: the process group, rank helpers and the DDP wrapper.

A job started by ``torchrun --nproc_per_node N`` finds ``WORLD_SIZE`` / ``RANK`` / ``LOCAL_RANK`` / ``MASTER_ADDR``
in its environment; :func:`process_group` joins the group (``nccl`` on CUDA, ``gloo`` on CPU) for the job's
duration. Every rank trains on its share of each batch and DDP all-reduces the gradients; only rank 0 evaluates,
decides early stopping (:func:`from_main`) and writes the run directory. Without ``torchrun`` every helper is a
no-op for a world of one.
"""
from __future__ import annotations

import contextlib
import os
from typing import Callable, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (or another launcher that sets ``WORLD_SIZE``) with more
    than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[None]:
    """Join the ``torchrun`` process group for the block (nothing to do for a single process)."""
    if not launched() or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                            device_id=device if device.type == "cuda" else None)
    try:
        yield
    finally:
        dist.destroy_process_group()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. filling a cache), the other ranks after it, from what it left."""
    if not is_main():
        dist.barrier()
    yield
    if is_main() and dist.is_initialized():
        dist.barrier()


def from_main(flag: bool, device: torch.device) -> bool:
    """Rank 0's ``flag`` on every rank (e.g. its early-stopping decision)."""
    if not dist.is_initialized():
        return flag
    value = torch.tensor([float(flag)], device=device)
    dist.broadcast(value, src=0)
    return bool(value.item())


def all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    """The sum of ``value`` over the ranks (``value`` itself in a single process)."""
    if dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
    return value


def shard(n: int) -> slice:
    """This rank's share of ``n`` items of a batch every rank drew alike: every ``world_size``-th from ``rank``."""
    return slice(rank(), n, world_size())


class _Step(nn.Module):
    """A training step's loss as the forward pass of a module holding ``module``'s parameters: DDP all-reduces the
    gradients of what its wrapped module's forward computes."""

    def __init__(self, module: nn.Module, step: Callable[..., torch.Tensor]):
        super().__init__()
        self.module, self.step = module, step

    def forward(self, *args) -> torch.Tensor:
        return self.step(*args)


def data_parallel(module: nn.Module, step: Callable[..., torch.Tensor],
                  find_unused_parameters: bool = False) -> Callable[..., torch.Tensor]:
    """``step`` (a loss over ``module``'s parameters), wrapped in DDP when a process group is up: calling it then
    all-reduces the gradients of the next ``backward``. Buffers are data every rank loads itself (features, graph
    adjacency), so they are neither broadcast nor checked."""
    if not dist.is_initialized():
        return step
    wrapper = _Step(module, step)
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(wrapper, [n for n, _ in wrapper.named_buffers()])
    device = next(module.parameters()).device
    return DistributedDataParallel(wrapper, device_ids=[device] if device.type == "cuda" else None,
                                   find_unused_parameters=find_unused_parameters)
