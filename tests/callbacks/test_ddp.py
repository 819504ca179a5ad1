"""Callbacks under DDP on CPU (ddp_spawn, 2 processes, gloo): gathered once, written once."""

from __future__ import annotations

import glob
import json
import os
import shutil

import pytest
import pytorch_lightning as pl
import torch

from lightning_viz.callbacks.embedding import EmbeddingProjector
from lightning_viz.callbacks.robustness import AdversarialProbe
from lightning_viz.callbacks.saliency import SaliencyLogger
from lightning_viz.data import LitClassifier
from tests.conftest import fit as _fit
from tests.conftest import read_events, small_datamodule

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="needs torch.distributed with gloo",
)


def fit(tmp_path, callbacks, **kwargs):
    """``tests.conftest.fit`` under ddp_spawn on 2 CPU processes (gloo, not
    deterministic), started again once, in an emptied ``tmp_path``, when a rank was
    killed by SIGABRT.

    On a loaded 2-core machine a gloo rank has died, rarely, inside the DDP training
    step (before any callback hook of the epoch) with ``terminate called without an
    active exception``: torch's, not ours. A second crash fails the test; an assertion
    is never retried.
    """
    from torch.multiprocessing.spawn import ProcessExitedException

    ddp = {"strategy": "ddp_spawn", "devices": 2, "accelerator": "cpu", "deterministic": False}
    kwargs = {**ddp, **kwargs}
    try:
        return _fit(tmp_path, callbacks, **kwargs)
    except ProcessExitedException as err:
        if err.signal_name != "SIGABRT":
            raise
        for entry in os.listdir(tmp_path):
            path = os.path.join(tmp_path, entry)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        return _fit(tmp_path, callbacks, **kwargs)


VAL_SIZE = 50  # odd per-rank split: the DistributedSampler pads rank 1 with sample 0


def _rows(path: str) -> list[list[str]]:
    with open(path) as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


@torch.no_grad()
def _features(model, images: torch.Tensor) -> torch.Tensor:
    net = model.model.eval()
    return torch.flatten(net.pool(net.block3(net.block2(net.block1(images)))), 1)


def test_embedding_projector_gathers_every_rank_once_and_only_rank_zero_writes(tmp_path):
    dm = small_datamodule(val_size=VAL_SIZE, train_size=128)
    cb = EmbeddingProjector(projection="pca", on_error="raise")  # num_samples=1000 > VAL_SIZE
    trainer, model = fit(
        tmp_path,
        [cb],
        epochs=1,
        datamodule=dm,
        limit_train_batches=2,
        limit_val_batches=1.0,
    )
    step = 2  # limit_train_batches (the main process's trainer keeps its own counters)
    logdir = os.path.join(tmp_path, "run", "version_0")
    # only global rank 0 wrote: one event file, one projector entry, one embedding dir
    assert len(glob.glob(os.path.join(logdir, "**", "events.out.tfevents.*"), recursive=True)) == 1
    with open(os.path.join(logdir, "projector_config.pbtxt")) as f:
        assert f.read().count("tensor_name") == 2  # the step and its latest-step alias
    emb = os.path.join(logdir, f"{step:05d}", "embedding%2fmodel.fc")
    assert glob.glob(os.path.join(logdir, "0*")) == [os.path.join(logdir, f"{step:05d}")]
    # every validation sample exactly once, in dataset order (interleaved ranks, padding dropped)
    dm.setup("fit")
    images = torch.stack([dm.val_dataset[i][0] for i in range(VAL_SIZE)])
    labels = [int(dm.val_dataset[i][1]) for i in range(VAL_SIZE)]
    meta = _rows(os.path.join(emb, "metadata.tsv"))
    assert meta[0] == ["label", "predicted", "correct"]
    assert [int(r[0]) for r in meta[1:]] == labels
    written = torch.tensor([[float(v) for v in r] for r in _rows(os.path.join(emb, "tensors.tsv"))])
    assert written.shape == (VAL_SIZE, 64)
    # the main process got rank 0's trained weights back: the rows are these images' features
    torch.testing.assert_close(written, _features(model, images), atol=1e-3, rtol=5e-3)
    assert len({tuple(r.tolist()) for r in written}) == VAL_SIZE  # no duplicated row
    ev = read_events(os.path.join(tmp_path, "run"))
    assert [s for s, _ in ev["scalars"]["embedding/knn_acc"]] == [step]
    assert [s for s, *_ in ev["images"]["embedding/model.fc/pca"]] == [step]


def test_every_rank_computes_the_probe_and_only_rank_zero_writes(tmp_path):
    import lightning_viz as lv

    callbacks = [
        lv.SaliencyLogger(methods=("vanilla",), num_samples=4, on_error="raise"),
        lv.GradCAMLogger(num_samples=4, on_error="raise"),
        lv.AdversarialProbe(eps=(8 / 255,), steps=2, num_samples=8, on_error="raise"),
    ]
    fit(
        tmp_path,
        callbacks,
        epochs=1,
        datamodule=small_datamodule(val_size=32, train_size=64),
        limit_train_batches=1,
        limit_val_batches=1,
    )
    files = glob.glob(os.path.join(tmp_path, "**", "events.out.tfevents.*"), recursive=True)
    assert len(files) == 1  # only global rank 0 wrote
    ev = read_events(str(tmp_path))
    for tag in ("saliency/vanilla", "gradcam/gradcam", "robustness/examples"):
        assert len(ev["images"][tag]) == 1, tag  # once, not once per rank
    assert len(ev["scalars"]["robustness/pgd_acc@8/255"]) == 1


class _CountingAttacks(LitClassifier):
    """Counts the samples this process runs through the model with gradients in eval mode:
    the attacks' forward-backward passes (the callbacks' other forwards need no gradient)."""

    attacked = 0

    def forward(self, x):
        if torch.is_grad_enabled() and not self.training:
            type(self).attacked += x.shape[0]
        return super().forward(x)


class _Report(pl.Callback):
    """Each rank writes what it attacked and its lightning-viz metrics to a file."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_fit_end(self, trainer, pl_module):
        metrics = {
            k: float(v)
            for k, v in trainer.callback_metrics.items()
            if k.startswith(("robustness/", "bias/", "corruption/"))
        }
        out = {"attacked": _CountingAttacks.attacked, "metrics": metrics}
        path = os.path.join(self.folder, f"rank{trainer.global_rank}.json")
        with open(path, "w") as f:
            json.dump(out, f)


def test_probe_work_is_split_across_ranks_and_every_rank_holds_the_same_metrics(tmp_path):
    import lightning_viz as lv

    callbacks = [
        _Report(str(tmp_path)),
        lv.AdversarialProbe(eps=(2 / 255, 8 / 255), steps=3, num_samples=64, on_error="raise"),
        lv.TextureShapeBias(num_images=20, num_samples=10, style_steps=2, on_error="raise"),
        lv.CorruptionProbe(corruptions=("fog", "pixelate"), num_samples=24, on_error="raise"),
    ]
    fit(
        tmp_path,
        callbacks,
        epochs=1,
        model=_CountingAttacks(num_classes=5),
        datamodule=small_datamodule(val_size=64, train_size=64),
        limit_train_batches=1,
        limit_val_batches=1,
    )
    reports = []
    for rank in (0, 1):
        with open(os.path.join(tmp_path, f"rank{rank}.json")) as f:
            reports.append(json.load(f))
    counts = [r["attacked"] for r in reports]
    assert all(c > 0 for c in counts)
    assert all(0.3 < c / sum(counts) < 0.7 for c in counts), counts  # about half each
    first, second = (r["metrics"] for r in reports)
    assert "robustness/pgd_acc@8/255" in first and "bias/shape_bias" in first
    assert "corruption/mean_acc" in first and "corruption/fog_acc" in first
    assert first == second  # EarlyStopping sees the same values on every rank


def test_a_probe_smaller_than_the_world_runs_on_every_rank(tmp_path):
    """One probe sample, two ranks: rank 1 has no sample of its own. It computes sample 0
    again (dropped by the gather) instead of failing on an empty batch (Saliency,
    Grad-CAM and their scores, the attacks, the corruptions all did; with
    ``on_error="warn"`` the other rank then waited in the gather for ever)."""
    import lightning_viz as lv

    kw = {"num_samples": 1, "on_error": "raise", "max_overhead": None}
    callbacks = [
        lv.SaliencyLogger(methods=("vanilla",), quality_cost=None, **kw),
        lv.GradCAMLogger(methods=("gradcam",), quality_cost=None, **kw),
        lv.AdversarialProbe(eps=(8 / 255,), steps=2, **kw),
        lv.CorruptionProbe(corruptions=("fog",), **kw),
    ]
    fit(
        tmp_path,
        callbacks,
        epochs=1,
        datamodule=small_datamodule(val_size=8, train_size=16),
        limit_train_batches=1,
        limit_val_batches=1,
    )
    scalars = read_events(str(tmp_path))["scalars"]
    for tag in (
        "explain/vanilla/deletion_auc",
        "explain/gradcam/insertion_auc",
        "robustness/pgd_acc@8/255",
        "corruption/fog_acc",
    ):
        ((step, value),) = scalars[tag]  # one run, one value, from one sample
        assert 0.0 <= value <= 1.0, (tag, value)
    for tag in ("robustness/clean_acc", "robustness/pgd_acc@8/255", "corruption/fog_acc"):
        assert scalars[tag][0][1] in (0.0, 1.0)  # an accuracy of one sample, not two


class _FailsOnOneRank(AdversarialProbe):
    """An AdversarialProbe whose run fails on one rank only (out of memory on one
    device): ``where="before"``: before the run's first collective (a gather of the
    attacks' results); ``"after"``: after its last."""

    def __init__(self, rank: int, where: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.failing_rank, self.where = rank, where

    def run(self, ctx):
        if self.where == "before" and ctx.trainer.global_rank == self.failing_rank:
            raise RuntimeError("out of memory on this device")
        super().run(ctx)
        if self.where == "after" and ctx.trainer.global_rank == self.failing_rank:
            raise RuntimeError("out of memory on this device")


class _OffOnRankOne(AdversarialProbe):
    """Turned off on rank 1 alone between runs (as rank 0's failed background write
    turns a callback off on rank 0 alone)."""

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.global_rank == 1 and trainer.current_epoch == 1:
            self.turn_off("could not write", RuntimeError("disk full"))


@pytest.mark.parametrize(
    ("rank", "where"), [(1, "before"), (0, "after"), (1, "after"), (None, "off")]
)
def test_a_callback_failing_on_one_rank_turns_off_on_every_rank_and_training_goes_on(
    tmp_path, rank, where
):
    """Each rank leaves the failed run at the same point. Before, the other rank waited
    in the run's next gather for ever or, when the failure came after the last gather,
    ran the callback alone at the next epoch and waited there. The process group's
    timeout (20 s) turns such a wait into a failed fit here."""
    from datetime import timedelta

    from pytorch_lightning.strategies import DDPStrategy

    kw = {"eps": (8 / 255,), "steps": 1, "num_samples": 4, "on_error": "warn"}
    if where == "off":
        failing = _OffOnRankOne(**kw)
    else:
        failing = _FailsOnOneRank(rank, where, **kw)
    healthy = SaliencyLogger(methods=("vanilla",), num_samples=4, quality=())
    strategy = DDPStrategy(start_method="spawn", timeout=timedelta(seconds=20))
    fit(
        tmp_path,
        [failing, healthy, _Report(str(tmp_path))],
        epochs=3,
        strategy=strategy,
        datamodule=small_datamodule(val_size=16, train_size=32),
        limit_train_batches=1,
        limit_val_batches=1,
    )
    scalars = read_events(str(tmp_path))["scalars"]
    assert [s for s, _ in scalars["viz/SaliencyLogger/seconds"]] == [1, 2, 3]  # every epoch
    ran = [s for s, _ in scalars.get(f"viz/{type(failing).__name__}/seconds", [])]
    # rank 0 finished a run only at epoch 0, where rank 1 failed after it, or nowhere
    assert ran == ([1] if (rank, where) in ((1, "after"), (None, "off")) else []), ran
    for r in (0, 1):  # both ranks got to the end of the fit
        assert os.path.exists(os.path.join(tmp_path, f"rank{r}.json"))
