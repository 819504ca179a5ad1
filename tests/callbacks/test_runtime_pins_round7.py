"""Mutation round seven: what one-line changes of ``_runtime/distributed.py``,
``run_output.py``, the coordinator's run steps, ``_cue_generation._locate`` and
``functional/_ball.py`` let through the suite, pinned by a test each (the mutation it
catches is named in each docstring).

Each DDP test plays one rank of a run: the strategy's collectives answer with what the
other ranks say, without starting processes."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import torch

import lightning_viz as lv
from lightning_viz._runtime import cue_cache
from lightning_viz._runtime.coordinator import Coordinator
from lightning_viz._runtime.distributed import PeerFailedError, one_probe, tell_peers
from lightning_viz._runtime.probe import Probe
from lightning_viz.functional._ball import _into_ball
from lightning_viz.monitoring.record import RunSummary, summary_path


class _Ranks:
    """Collectives of a run of ``len(probes)`` ranks seen from ``rank``: a broadcast
    from ``src`` gives rank ``src``'s object (a probe or its fingerprint), and an
    all-gather gives the other ranks' flags ``flags`` (this rank's is its own)."""

    def __init__(self, rank: int, probes: list[Probe], flags: list[int]) -> None:
        self.rank, self.probes, self.flags = rank, probes, flags
        self.root_device = torch.device("cpu")
        self.gathered: list[int] = []

    def all_gather(self, mine: torch.Tensor) -> torch.Tensor:
        self.gathered.append(int(mine.item()))
        flags = [torch.tensor([f]) for f in self.flags]
        flags[self.rank] = mine
        return torch.stack(flags)

    def broadcast(self, obj, src=0):
        probe = self.probes[src]
        return probe.fingerprint() if isinstance(obj, str) else probe


class _Trainer:
    def __init__(self, strategy, world: int) -> None:
        self.strategy, self.world_size = strategy, world
        self.global_rank, self.is_global_zero = strategy.rank, strategy.rank == 0
        self.global_step, self.current_epoch = 1, 0
        self.callbacks: list = []
        self.callback_metrics: dict = {}


def _probe(seed: int) -> Probe:
    generator = torch.Generator().manual_seed(seed)
    return Probe(torch.rand(4, 3, 8, 8, generator=generator), torch.arange(4), None, [0, 1])


def test_one_probe_compares_with_rank_zeros_probe_and_names_every_rank_that_differs():
    """Mutations: ``broadcast(mine, src=1)`` (each rank compared its probe with rank 1's),
    ``broadcast(probe, src=1)`` (every rank took rank 1's probe), and only the first
    differing rank named in the warning."""
    zero, other = _probe(0), _probe(1)
    assert zero.fingerprint() != other.fingerprint()
    # three ranks, rank 1 and rank 2 picked another probe; seen from rank 2
    strategy = _Ranks(rank=2, probes=[zero, other, other], flags=[1, 0, 0])
    said: list[str] = []
    got = one_probe(_Trainer(strategy, 3), other, "validation", lambda k, m: said.append(m))
    assert strategy.gathered == [0]  # rank 2's probe is not rank 0's
    assert got is zero  # rank 0's, not rank 1's
    assert len(said) == 1 and "the probe picked on rank 1, 2 is not rank 0's" in said[0]
    # rank 2 has rank 0's probe and rank 1 another: rank 2 says it has the same
    same = _Ranks(rank=2, probes=[zero, other, zero], flags=[1, 0, 1])
    got = one_probe(_Trainer(same, 3), zero, "validation", lambda k, m: said.append(m))
    assert same.gathered == [1] and got is zero
    assert "the probe picked on rank 1 is not rank 0's" in said[1]


def test_picked_probe_gives_rank_zeros_probe_and_says_where_the_probe_came_from():
    """Mutations: ``picked_probe`` returning this rank's own pick (no ``one_probe``), and
    its warning naming the validation data whatever the probe's source."""
    zero, mine = _probe(0), _probe(1)

    class Picking:
        _probe_from = "training"

        def _load_probe(self, trainer):
            return mine

    strategy = _Ranks(rank=1, probes=[zero, mine], flags=[1, 1])
    with pytest.warns(UserWarning, match="the training data differs across ranks"):
        got = Coordinator(None).picked_probe(_Trainer(strategy, 2), Picking())
    assert got is zero
    assert strategy.gathered == [1, 0]  # the pick went fine here; then: not rank 0's


def test_tell_peers_says_a_failure_once_and_only_when_it_is_this_ranks_own():
    """Mutations: ``tell_peers`` returning ``True`` for a :class:`PeerFailedError` (the
    failure warning then carries a traceback of another rank's failure) or ``False``
    for its own error (the traceback of a real failure is left out of the warning)."""
    own = _Ranks(rank=1, probes=[], flags=[1, 1])
    assert tell_peers(_Trainer(own, 2), RuntimeError("out of memory")) is True
    assert own.gathered == [0]  # said once: this rank's run failed
    peer = _Ranks(rank=1, probes=[], flags=[0, 1])
    assert tell_peers(_Trainer(peer, 2), PeerFailedError("failed on rank 0")) is False
    assert peer.gathered == []  # rank 0 said it; nothing more to say
    assert tell_peers(None, ValueError("one process")) is True


@pytest.mark.parametrize("step", ["write_epoch_end", "harvest_before_run"])
def test_rank_zeros_writes_and_harvest_take_no_collective_without_on_error_raise(step):
    """Mutations: ``RunOutput.together`` and ``harvest_before_run`` entering
    ``together(trainer, True)`` whatever the callbacks' ``on_error``: an all-gather at
    every epoch end and before every run for nothing (a failure there is only said)."""
    strategy = _Ranks(rank=1, probes=[], flags=[0, 1])  # rank 0 would say it failed
    trainer = _Trainer(strategy, 2)
    coordinator = Coordinator(trainer)
    coordinator.callbacks = [SimpleNamespace(on_error="warn")]
    getattr(coordinator, step)(trainer)  # no PeerFailedError: nothing was asked
    assert strategy.gathered == []


def test_a_half_precision_step_keeps_the_largest_value_inside_the_ball():
    """Mutations of ``_into_ball``: ``d.abs() >= eps`` and ``_flat_norm(d) >= eps`` (a
    step of exactly eps, which bfloat16 holds, moved one value towards x), and
    ``nextafter(x, adv)`` (a pixel rounded past eps moved next to x instead of one
    value back)."""
    x = torch.full((1, 1, 2, 2), 0.5, dtype=torch.bfloat16)
    exact = _into_ball(x - 0.125, x, 0.125, "linf")
    assert torch.equal(exact, torch.full_like(x, 0.375))
    exact = _into_ball(x - 0.125, x, 0.25, "l2")  # L2 norm of the step: exactly 0.25
    assert torch.equal(exact, torch.full_like(x, 0.375))
    torch.manual_seed(0)
    x = torch.rand(64, 3, 4, 4).to(torch.bfloat16)
    eps = 0.01
    for sign in (1.0, -1.0):
        adv = _into_ball((x.double() + sign * eps).to(torch.bfloat16), x, eps, "linf")
        d = adv.double() - x.double()
        assert float(d.abs().max()) <= eps
        # one representable value further from x would be outside the ball
        beyond = torch.nextafter(adv, torch.full_like(adv, sign * 4.0)).double() - x.double()
        assert bool((beyond.abs() > eps).all())
        assert bool((d * sign > 0).all())


class _One:
    """The collectives of a one-process run (a strategy is never asked)."""

    rank = 0


def _bias(trainer, log_dir: str, earlier: str | None = None) -> lv.TextureShapeBias:
    """A ``TextureShapeBias`` set up on four 8x8 images (one chunk), its cache in
    ``log_dir`` and, from a checkpoint, the cache file ``earlier``."""
    cb = lv.TextureShapeBias(num_images=4)
    coordinator = Coordinator(trainer)
    coordinator.cache_dir = log_dir
    cb._coordinator = coordinator
    generator = torch.Generator().manual_seed(0)
    pixels, labels = torch.rand(4, 3, 8, 8, generator=generator), torch.arange(4)
    cb._cc_source, cb._images_to_make, cb._chunks = (pixels, labels, None), 4, {}
    cb._earlier_cache = earlier
    return cb


def _path(cb, log_dir: str, **settings) -> str:
    pixels, labels, masks = cb._cc_source
    return cue_cache.cache_file(
        log_dir, cue_cache.cache_key(pixels, labels, masks, {**cb._settings(), **settings})
    )


def test_a_resumed_run_reads_only_its_own_sets_cache_from_the_checkpoints_log_dir(tmp_path):
    """Mutations of ``_locate``: the basename check flipped or dropped (a cache of other
    settings, named in the checkpoint, was loaded as this set), and ``place == path``
    for the copy (the set found in the checkpoint's log dir was not copied into this
    run's, so a later resume from this run's checkpoint made it again)."""
    here, there = str(tmp_path / "new"), str(tmp_path / "old")
    trainer = _Trainer(_One(), 1)
    cb = _bias(trainer, here)
    other = _path(cb, there, style_steps=cb.style_steps + 1)  # another set's file
    images = torch.rand(4, 3, 8, 8)
    cue_cache.write_cache(other, images, torch.arange(4), torch.arange(4))
    cb._earlier_cache = other
    assert cb._locate(trainer) is True
    assert cb._cc is None and not os.path.exists(_path(cb, here))
    same = _path(cb, there)  # this set's file, in the checkpoint's log dir
    cue_cache.write_cache(same, images, torch.arange(4), torch.arange(4))
    cb = _bias(trainer, here, earlier=same)
    cb._locate(trainer)
    assert cb._cc is not None and torch.equal(cb._cc[0], images)
    copied = cue_cache.read_cache(_path(cb, here), 4, (3, 8, 8))
    assert copied is not None and torch.equal(copied[0], images)


def test_finished_chunks_are_read_and_kept_in_one_process_only(tmp_path):
    """Mutations of ``_locate``: ``if True`` for ``if one_process`` (each DDP rank read
    the chunks its own disk holds, and the ranks disagreed on the chunks to make),
    ``pass`` for ``self._chunks.update(found)``, and ``place == path`` for the chunks'
    copy (not kept in this log dir, so a resume from this run's checkpoint lost them)."""
    here, there = str(tmp_path / "new"), str(tmp_path / "old")
    trainer = _Trainer(_One(), 1)
    cb = _bias(trainer, here)
    old = torch.full((4, 3, 8, 8), 0.75)
    labels = torch.arange(4)
    cue_cache.write_chunk(_path(cb, there), 0, old, labels, labels)
    cb = _bias(trainer, here, earlier=_path(cb, there))
    assert cb._locate(trainer) is True and cb._cc is None
    assert torch.equal(cb._chunks[0][0], old)
    assert cue_cache.chunks_written(_path(cb, here), [0]) == 1  # kept here too
    ddp = _Ranks(rank=0, probes=[], flags=[0, 0])  # no rank holds the whole set
    ddp_trainer = _Trainer(ddp, 2)
    cb = _bias(ddp_trainer, here, earlier=_path(cb, there))
    assert cb._locate(ddp_trainer) is False
    assert cb._chunks == {} and cb._cc is None and ddp.gathered == [0]


def test_this_log_dirs_chunk_wins_over_the_checkpoints(tmp_path):
    """H75: the checkpoint's log dir was read first and its chunks copied into this log
    dir before this log dir's own (newer) chunk files were read, so the older chunk
    replaced the newer one on disk and was the one used."""
    here, there = str(tmp_path / "new"), str(tmp_path / "old")
    trainer = _Trainer(_One(), 1)
    cb = _bias(trainer, here)
    labels = torch.arange(4)
    new, old = torch.full((4, 3, 8, 8), 0.25), torch.full((4, 3, 8, 8), 0.75)
    cue_cache.write_chunk(_path(cb, there), 0, old, labels, labels)
    cue_cache.write_chunk(_path(cb, here), 0, new, labels, labels)
    cb = _bias(trainer, here, earlier=_path(cb, there))
    assert cb._locate(trainer) is True
    assert torch.equal(cb._chunks[0][0], new)
    kept = cue_cache.read_chunks(_path(cb, here), [4], (3, 8, 8))[0][0]
    assert torch.equal(kept, new)


def test_a_resume_without_a_log_dir_looks_for_no_cache(tmp_path):
    """Mutations of ``_locate``: ``same = earlier is not None`` (without ``path is not
    None``) and ``earlier`` for ``earlier if same else None``: a fit resumed from a
    checkpoint that names a cache, with no local log dir (``logger=False``, a remote
    logger), raised in ``_locate`` (``os.path.basename(None)``, a write to ``None``)."""
    trainer = _Trainer(_One(), 1)
    cb = _bias(trainer, str(tmp_path))
    earlier = _path(cb, str(tmp_path / "old"))
    cue_cache.write_cache(earlier, torch.rand(4, 3, 8, 8), torch.arange(4), torch.arange(4))
    cb = _bias(trainer, None, earlier=earlier)  # no cache dir in this run
    assert cb._locate(trainer) is True
    assert cb.cache_path is None and cb._chunks == {}


def test_the_epoch_end_writes_the_summary_file_and_the_overhead(tmp_path):
    """Mutations of ``write_epoch_end``: ``write_summary`` or ``log_overhead`` left out
    (no ``summary.json`` for `compare`, no ``viz/overhead`` for a monitor)."""
    trainer = _Trainer(_One(), 1)
    coordinator = Coordinator(trainer)
    coordinator.callbacks = [SimpleNamespace(on_error="warn")]
    coordinator.summary, coordinator.log_dir = RunSummary(), str(tmp_path)
    coordinator.summary_changed = True
    coordinator.write_epoch_end(trainer)
    assert os.path.isfile(summary_path(str(tmp_path)))
    assert "viz/overhead" in trainer.callback_metrics
