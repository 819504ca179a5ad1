"""Work split across DDP ranks, through the trainer's strategy (never raw ``torch.distributed``).

Sample ``g`` of ``n`` belongs to rank ``g % world`` as its local row ``g // world``:
the way a ``DistributedSampler`` (not shuffled) deals a dataset, and the way
:meth:`~lightning_viz._runtime.context.RunContext.share` splits a probe. So local row
``i`` of rank ``r`` is global sample ``i * world + r``, and :func:`interleave` puts the
rows of every rank back in global order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["all_gather", "gather_objects", "interleave", "rank_world"]


def rank_world(trainer: Any) -> tuple[int, int]:
    """``(global rank, world size)`` of the trainer (``(0, 1)`` without one)."""
    if trainer is None:
        return 0, 1
    return int(getattr(trainer, "global_rank", 0) or 0), int(getattr(trainer, "world_size", 1) or 1)


def interleave(parts: Sequence[Tensor], limit: int | None = None) -> Tensor:
    """The rows of every rank in global order (row ``i`` of ``parts[r]`` is ``i * world + r``).

    Args:
        parts: One tensor per rank, in rank order, rows on the first dimension.
        limit: Drop the rows at global positions ``>= limit`` (a sampler's padding, or
            the padding of a share), or ``None`` to keep every row.

    Returns:
        The rows in global order, ``(sum of kept rows, ...)``.

    Example:
        >>> interleave([torch.tensor([0, 2, 4]), torch.tensor([1, 3, 0])], limit=5).tolist()
        [0, 1, 2, 3, 4]
    """
    world = len(parts)
    gid = torch.cat([torch.arange(p.shape[0]) * world + r for r, p in enumerate(parts)])
    order = torch.argsort(gid)
    if limit is not None:
        order = order[gid[order] < limit]
    stacked = torch.cat([p.to(parts[0].device) for p in parts])
    return stacked[order.to(stacked.device)]


def all_gather(trainer: Any, local: Tensor, n: int) -> Tensor:
    """Every rank's share of ``n`` samples (rank ``r`` holds rows ``r, r + world, ...``),
    in sample order, on every rank; through ``trainer.strategy.all_gather``."""
    _, world = rank_world(trainer)
    if world == 1:
        return local
    dtype = local.dtype
    buf = local.to(torch.uint8) if dtype == torch.bool else local
    size = -(-n // world)  # the largest share
    pad = buf.new_zeros((size - buf.shape[0], *buf.shape[1:]))
    stacked = trainer.strategy.all_gather(torch.cat([buf, pad]).contiguous())  # (world, size, ...)
    return interleave(list(stacked.to(buf.device)), n).to(dtype)


def gather_objects(trainer: Any, obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order, on every rank (one strategy broadcast per rank)."""
    _, world = rank_world(trainer)
    if world == 1:
        return [obj]
    return [trainer.strategy.broadcast(obj, src=r) for r in range(world)]
