"""Work split across DDP ranks, through the trainer's strategy (never raw ``torch.distributed``).

Sample ``g`` of ``n`` belongs to rank ``g % world`` as its local row ``g // world``:
the way a ``DistributedSampler`` (not shuffled) deals a dataset, and the way
:meth:`~lightning_viz._runtime.context.RunContext.share` splits a probe. So local row
``i`` of rank ``r`` is global sample ``i * world + r``, and :func:`interleave` puts the
rows of every rank back in global order.

A callback's run on one rank can fail while the others go on (out of memory on one
device): the others would then wait in the run's next collective for a rank that has
left it. So every collective of a run is preceded by :func:`agree` and the run ends
with it; the failed rank says so there once (:func:`tell_peers`), and every rank
leaves the run at the same point (:class:`PeerFailedError` on the others). Work that
rank 0 does alone (its writes, and the background work it harvests) ends the same way
under :func:`together` when it may raise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from lightning_viz._runtime.compat import rank_zero_warn

__all__ = [
    "PeerFailedError",
    "agree",
    "all_gather",
    "gather_objects",
    "interleave",
    "largest",
    "on_every_rank",
    "one_probe",
    "rank_world",
    "ranks_without",
    "tell_peers",
    "together",
]


class PeerFailedError(RuntimeError):
    """This run failed on another rank (said there); this rank leaves it at the same point."""


def rank_world(trainer: Any) -> tuple[int, int]:
    """``(global rank, world size)`` of the trainer (``(0, 1)`` without one)."""
    if trainer is None:
        return 0, 1
    return int(getattr(trainer, "global_rank", 0) or 0), int(getattr(trainer, "world_size", 1) or 1)


def ranks_without(trainer: Any, flag: bool) -> list[int]:
    """The ranks whose ``flag`` is false, on every rank (one all-gather; ``[]`` or
    ``[0]`` without DDP)."""
    _, world = rank_world(trainer)
    if world == 1:
        return [] if flag else [0]
    mine = torch.tensor([int(flag)], device=trainer.strategy.root_device)
    flags = trainer.strategy.all_gather(mine).reshape(-1).tolist()
    return [r for r, f in enumerate(flags) if not f]


def agree(trainer: Any) -> None:
    """Every rank's word that its run is still going, before each collective of a run
    and at its end (a rank whose run failed says so once: :func:`tell_peers`).

    Raises:
        PeerFailedError: On a rank still going when another rank's run failed.
    """
    failed = ranks_without(trainer, True)
    if failed:
        raise PeerFailedError(
            f"its run failed on rank {', '.join(map(str, failed))} (said there), "
            "so every rank stops it"
        )


def tell_peers(trainer: Any, err: BaseException) -> bool:
    """After ``err`` ended this rank's run: unless another rank's failure ended it
    (:class:`PeerFailedError`), says to the others that it failed, once. Returns
    whether ``err`` is this rank's own."""
    if isinstance(err, PeerFailedError):
        return False
    try:
        ranks_without(trainer, False)
    except Exception:  # noqa: BLE001 - a broken process group: nothing more to tell
        pass
    return True


@contextlib.contextmanager
def together(trainer: Any, raises: bool) -> Iterator[None]:
    """A block that rank 0 may run alone (its writes, its harvest of background work),
    entered by every rank at the same point. When its failure is raised (``raises``: a
    callback asked for ``on_error="raise"``), every rank learns after the block whether
    it failed on some rank: that rank raises its error, the others
    :class:`PeerFailedError`, so none waits in a later collective for a rank that left."""
    if not raises or rank_world(trainer)[1] == 1:
        yield
        return
    try:
        yield
    except Exception as err:
        tell_peers(trainer, err)  # every rank's word, then this rank's own error
        raise
    agree(trainer)


def one_probe(trainer: Any, probe: Any, source: str, warn: Callable[[str, str], None]) -> Any:
    """Rank 0's ``probe`` (any object with ``fingerprint()``) on every rank.

    Each rank picks the probe from its own data; when that data differs across ranks
    (a validation set sharded or streamed per rank), the probes differ, and the values
    gathered would mix several probes (or the gathers of different sizes fail). Then
    every rank takes rank 0's, said once through ``warn(key, message)``."""
    if rank_world(trainer)[1] == 1:
        return probe
    mine = probe.fingerprint()
    differ = ranks_without(trainer, mine == trainer.strategy.broadcast(mine, src=0))
    if not differ:
        return probe
    warn(
        "probe across ranks",
        f"lightning-viz: the {source} data differs across ranks (the probe picked on rank "
        f"{', '.join(map(str, differ))} is not rank 0's): every rank uses rank 0's probe, "
        "so the values gathered are of one probe",
    )
    return trainer.strategy.broadcast(probe, src=0)


def on_every_rank(trainer: Any, enabled: bool, name: str) -> bool:
    """Whether a callback is on on every rank (one all-gather under DDP). One turned off
    on some ranks only (a failure there, or rank 0's background writes) turns off on
    every rank, said on rank 0, so no rank waits in a run that the others skip."""
    off = ranks_without(trainer, enabled) if rank_world(trainer)[1] > 1 else []
    if enabled and off:
        rank_zero_warn(
            f"{name} turns itself off on every rank: it is off on rank "
            f"{', '.join(map(str, off))} (said there), and the ranks run together"
        )
        return False
    return enabled


def interleave(parts: Sequence[Tensor], limit: int | None = None) -> Tensor:
    """The rows of every rank in global order (row ``i`` of ``parts[r]`` is ``i * world + r``).

    Args:
        parts: One tensor per rank, in rank order, rows on the first dimension.
        limit: Drop the rows at global positions ``>= limit`` (a sampler's padding, or
            the padding of a share), or ``None`` to keep every row.

    Returns:
        The rows in global order, ``(sum of kept rows, ...)``.

    Examples:
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
    agree(trainer)
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
    agree(trainer)
    return [trainer.strategy.broadcast(obj, src=r) for r in range(world)]


def largest(trainer: Any, value: float) -> float:
    """The largest of every rank's ``value``, on every rank."""
    _, world = rank_world(trainer)
    if world == 1:
        return value
    agree(trainer)
    mine = torch.tensor([float(value)], device=trainer.strategy.root_device)
    return float(trainer.strategy.all_gather(mine).max())
