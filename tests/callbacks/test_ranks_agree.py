"""Decisions and failures that are one rank's own are heard by every rank (H71).

Each test plays one rank of a two-rank run: the strategy's collectives answer with
what the other rank says, so a rank that would go on alone (and wait in its next
collective for a rank that left) is seen here without starting processes.
"""

from __future__ import annotations

import errno
import warnings
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import lightning_viz as lv
from lightning_viz._runtime import cue_cache
from lightning_viz._runtime.coordinator import Coordinator
from lightning_viz._runtime.distributed import PeerFailedError, one_probe, together
from lightning_viz._runtime.probe import Probe


class _Strategy:
    """Collectives of a two-rank run seen from ``rank``: the other rank's flag and
    rank 0's broadcast value are given."""

    def __init__(self, rank: int, other_flag: int = 1, zeros: list | None = None) -> None:
        self.rank, self.other_flag, self.zeros = rank, other_flag, list(zeros or [])
        self.root_device = torch.device("cpu")
        self.gathered: list[int] = []

    def all_gather(self, mine: torch.Tensor) -> torch.Tensor:
        self.gathered.append(int(mine.item()))
        other = torch.tensor([self.other_flag])
        return torch.stack([mine, other] if self.rank == 0 else [other, mine])

    def broadcast(self, obj, src=0):
        return obj if self.rank == 0 else self.zeros.pop(0)


class _Trainer:
    """A trainer of a two-rank run (weak-referenceable, as the coordinator keeps it)."""

    def __init__(self, strategy: _Strategy, module: nn.Module | None = None) -> None:
        self.strategy, self.world_size = strategy, 2
        self.global_rank, self.is_global_zero = strategy.rank, strategy.rank == 0
        self.lightning_module, self.global_step, self.current_epoch = module, 1, 0
        self.callbacks: list = []
        self.callback_metrics: dict = {}


def test_together_tells_every_rank_of_a_failure_when_it_is_raised():
    # the failing rank tells the others (its flag 0 is gathered), then raises its error
    failing = _Strategy(rank=0)
    with pytest.raises(OSError, match="disk full"):
        with together(_Trainer(failing), raises=True):
            raise OSError(errno.ENOSPC, "disk full")
    assert failing.gathered == [0]
    # a rank whose block went fine leaves with the other rank's failure
    healthy = _Strategy(rank=1, other_flag=0)
    with pytest.raises(PeerFailedError, match="failed on rank 0"):
        with together(_Trainer(healthy), raises=True):
            pass
    assert healthy.gathered == [1]
    # all fine: one collective, no error; nothing raised on request: no collective
    fine = _Strategy(rank=1)
    with together(_Trainer(fine), raises=True):
        pass
    quiet = _Strategy(rank=1, other_flag=0)
    with together(_Trainer(quiet), raises=False):
        pass
    assert fine.gathered == [1] and quiet.gathered == []


def _coordinator(trainer: _Trainer) -> Coordinator:
    coordinator = Coordinator(trainer)
    coordinator.callbacks = [SimpleNamespace(on_error="raise")]
    return coordinator


def test_rank_zeros_failed_writes_and_harvest_are_heard_on_the_other_ranks():
    """With on_error="raise" a shared write (summary.json, the configuration) or a
    harvested background job that failed on rank 0, the only rank that writes, raised
    there alone: rank 1 went on into the next training step and waited there for rank 0
    until the process group's timeout (30 min by default)."""
    for step in ("write_epoch_end", "harvest_before_run"):
        trainer = _Trainer(_Strategy(rank=1, other_flag=0))
        with pytest.raises(PeerFailedError):
            getattr(_coordinator(trainer), step)(trainer)
    trainer = _Trainer(_Strategy(rank=1, other_flag=0))
    with pytest.raises(PeerFailedError):
        _coordinator(trainer).start_run(trainer, None)


def test_a_model_not_finite_on_one_rank_skips_the_runs_on_every_rank():
    """BatchNorm's running statistics are each rank's own under DDP: inf on rank 1 only
    made rank 1 skip the run while rank 0 waited in the run's gathers."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    rank0 = _Strategy(rank=0, other_flag=0)  # rank 1's statistics are not finite
    with pytest.warns(UserWarning, match=r"\(step 1, on rank 1\): the training diverged"):
        assert Coordinator(None).model_finite(_Trainer(rank0, model)) is False
    assert rank0.gathered == [1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Coordinator(None).model_finite(_Trainer(_Strategy(rank=0), model)) is True


def _probe(seed: int) -> Probe:
    generator = torch.Generator().manual_seed(seed)
    return Probe(torch.rand(4, 3, 8, 8, generator=generator), torch.arange(4), None, [0, 1])


def test_every_rank_takes_rank_zeros_probe_when_their_data_differ():
    """A validation set sharded per rank gave each rank its own probe: the gathers mixed
    two probes without a word, or failed when their sizes differed."""
    mine, zeros = _probe(1), _probe(0)
    said: list[str] = []
    strategy = _Strategy(rank=1, zeros=[zeros.fingerprint(), zeros])
    got = one_probe(_Trainer(strategy), mine, "validation", lambda key, text: said.append(text))
    assert got is zeros and strategy.gathered == [0]
    assert len(said) == 1 and "the validation data differs across ranks" in said[0]
    assert "the probe picked on rank 1 is not rank 0's" in said[0]
    # the same probe everywhere: kept, nothing said
    same = _Strategy(rank=1, zeros=[mine.fingerprint()])
    assert one_probe(_Trainer(same), mine, "validation", lambda *a: said.append("x")) is mine
    assert len(said) == 1


def test_a_cue_conflict_cache_one_rank_cannot_read_is_made_again_on_every_rank(tmp_path):
    """Rank 0 found the set's cache file, rank 1 did not (another node's log dir): rank 0
    loaded it while rank 1 made it with collectives, and the ranks' gathers mismatched."""
    trainer = _Trainer(_Strategy(rank=0, other_flag=0))
    cb = lv.TextureShapeBias(num_images=4)
    coordinator = Coordinator(trainer)
    coordinator.cache_dir = str(tmp_path)
    cb._coordinator = coordinator
    pixels, labels = torch.rand(4, 3, 8, 8), torch.arange(4)
    cb._cc_source, cb._images_to_make = (pixels, labels, None), 4
    key = cue_cache.cache_key(pixels, labels, None, cb._settings())
    path = cue_cache.cache_file(str(tmp_path), key)
    cue_cache.write_cache(path, pixels, labels, labels)
    assert cb._locate(trainer) is False  # not one process
    assert cb._cc is None and trainer.strategy.gathered == [1]  # found here, made again
    alone = _Trainer(_Strategy(rank=0))  # every rank found it: loaded
    cb._coordinator = Coordinator(alone)
    cb._coordinator.cache_dir = str(tmp_path)
    cb._locate(alone)
    assert cb._cc is not None and torch.equal(cb._cc[0], pixels)


def test_a_rank_whose_probe_pick_failed_tells_the_others_before_the_probe_is_shared():
    """H72: a pick failing on one rank only (every probe image of its validation data
    NaN) left that rank before the collective that shares rank 0's probe; rank 0
    waited there for ever."""

    class Picking:
        _probe_from = "validation"

        def __init__(self, fails: bool) -> None:
            self.fails = fails

        def _load_probe(self, trainer):
            if self.fails:
                raise RuntimeError("every probe image has non-finite values (NaN or inf)")
            return _probe(0)

    failing = _Strategy(rank=1)
    with pytest.raises(RuntimeError, match="non-finite"):
        Coordinator(None).picked_probe(_Trainer(failing), Picking(fails=True))
    assert failing.gathered == [0]  # said, then left; no broadcast
    healthy = _Strategy(rank=0, other_flag=0)
    with pytest.raises(PeerFailedError):
        Coordinator(None).picked_probe(_Trainer(healthy), Picking(fails=False))
    assert healthy.gathered == [1]  # the same one collective, then left with the other
