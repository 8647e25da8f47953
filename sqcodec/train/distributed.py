"""Multi-GPU / multi-node training through ``torchrun`` (DistributedDataParallel).

``torchrun --nproc_per_node N -m sqcodec.train --config X.yaml`` (add ``--nnodes``/``--rdzv-*`` for several
nodes) sets RANK / LOCAL_RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT; :func:`init_distributed` reads
them and joins the process group (NCCL on CUDA, gloo on CPU). Without them the run is one plain process.

Data sharding is done by :mod:`sqcodec.train.data`, not a DistributedSampler: step ``s`` uses the global
batch of ``batch_size * world_size`` stream positions ``[s*G, (s+1)*G)`` and rank ``r`` takes the ``r``-th
slice of ``batch_size``, so the union over ranks is exactly the batch a single process with batch size G
would see. Only rank 0 writes logs and checkpoints; every rank passes a barrier around checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 or (dist.is_available() and dist.is_initialized())

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from the torchrun environment (0, 0, 1 when absent)."""
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return rank, local_rank, world


def pick_device(pref: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> cuda:LOCAL_RANK if CUDA is available, else cpu; ``cuda`` without CUDA is an error."""
    pref = str(pref or "auto")
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError("train.device is 'cuda' but CUDA is not available")
        if pref == "cuda":
            return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
        return torch.device(pref)
    return torch.device("cpu")


def init_distributed(device_pref: str = "auto", timeout_s: float = 1800.0) -> DistInfo:
    """Join the torchrun process group if WORLD_SIZE > 1 (or reuse one already initialised)."""
    rank, local_rank, world = env_world()
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        device = pick_device(device_pref, local_rank)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return DistInfo(rank, local_rank, world, device, dist.get_backend())
    device = pick_device(device_pref, local_rank)
    if world <= 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return DistInfo(0, 0, 1, device, None)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    kwargs = {"timeout": timedelta(seconds=timeout_s)}
    if device.type == "cuda":
        kwargs["device_id"] = device
    dist.init_process_group(backend=backend, rank=rank, world_size=world, **kwargs)
    return DistInfo(rank, local_rank, world, device, backend)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        if info.backend == "nccl":
            dist.barrier(device_ids=[info.device.index])
        else:
            dist.barrier()


def all_gather_object(obj, info: DistInfo) -> list:
    """Gather a picklable object from every rank (a one-element list in a single process).

    Used only for this run's own RNG states between its own processes, never for loaded files.
    """
    if not (info.enabled and dist.is_initialized()):
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def any_flag(flag: bool, info: DistInfo) -> bool:
    """True on every rank if ``flag`` is true on any rank."""
    if not (info.enabled and dist.is_initialized()):
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def wrap_model(model: nn.Module, info: DistInfo, sync_batchnorm: bool | str = "auto") -> nn.Module:
    """Wrap in DistributedDataParallel when running distributed (optionally converting BatchNorm to
    SyncBatchNorm, which PyTorch supports on CUDA only)."""
    if not info.enabled:
        return model
    use_sync = sync_batchnorm is True or (sync_batchnorm == "auto" and info.device.type == "cuda")
    if use_sync:
        if info.device.type != "cuda":
            raise RuntimeError("train.sync_batchnorm=true needs CUDA (SyncBatchNorm is GPU-only in PyTorch)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, output_device=ids[0] if ids else None)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
