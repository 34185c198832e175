"""One process, or one of several under ``torchrun`` (DDP): which rank this is, setting up
and tearing down the process group, and checking that the replicas stayed identical.

``torchrun`` tells each process its place through ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK``; without them the run is rank 0 of 1 and nothing here talks to other processes.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from vimss_cli.checkpoint import weights_sha256


@dataclass(frozen=True)
class Distributed:
    """This process's place in a ``torchrun`` job (rank 0 of 1 without one)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def is_main_process() -> bool:
    """Whether this process is rank 0 of a ``torchrun`` job, or runs alone (from the
    environment: no process group needed)."""
    return int(os.environ.get("WORLD_SIZE", "1")) == 1 or os.environ.get("RANK", "0") == "0"


def finish_together() -> None:
    """Under ``torchrun``, wait until every rank is done, then leave at once: the run's files
    are written (atomically) and its summary printed, so this process flushes its streams and
    exits with status 0 without tearing down the process group. Its teardown at interpreter
    exit (gloo's threads) aborted one rank now and then under a busy CPU, even after the
    barrier ("terminate called without an active exception": once in a CI simulation on
    2026-12-05, after this barrier was added). Nothing to do in one process."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def set_up(device: str) -> Distributed:
    """This process's place from ``torchrun``'s environment; under ``torchrun``, the
    process group too (NCCL when CUDA is used, else gloo) unless the caller made one.

    The group lives until the process exits. Destroying it at the end of the run (tried
    during the training split) aborted rank 0 once in about 15 two-process runs on a busy
    CPU ("terminate called without an active exception": gloo's teardown racing the other
    rank's exit).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Distributed()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and device != "cpu" else "gloo"
        dist.init_process_group(backend)
    return Distributed(
        rank=int(os.environ["RANK"]),
        world=world,
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def rank_device(device: torch.device, info: Distributed) -> torch.device:
    """Under DDP on CUDA each rank takes the GPU of its local rank."""
    if device.type == "cuda" and info.world > 1:
        return torch.device(f"cuda:{info.local_rank}")
    return device


def wrap(model: torch.nn.Module, device: torch.device, info: Distributed) -> torch.nn.Module:
    """``model`` itself in one process, else its DDP wrapper (gradients averaged over ranks)."""
    if info.world == 1:
        return model
    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def barrier(info: Distributed) -> None:
    """Wait for every rank (nothing to wait for in one process)."""
    if info.world > 1:
        dist.barrier()


def replica_digests(model: torch.nn.Module, info: Distributed) -> list[str]:
    """sha256 of every rank's weights (one entry per rank; all equal when DDP is in sync)."""
    digest = weights_sha256(model.state_dict())
    if info.world == 1:
        return [digest]
    gathered: list[Any] = [None] * info.world
    dist.all_gather_object(gathered, digest)
    return [str(d) for d in gathered]
