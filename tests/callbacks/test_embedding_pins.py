"""Pins for EmbeddingProjector behaviour no existing test pins (mutation round five).

Each test fails with the one-line mutation its comment names (H63).
"""

from __future__ import annotations

import warnings

import torch

from lightning_viz.callbacks import embedding
from lightning_viz.callbacks.embedding import EmbeddingProjector
from tests.conftest import fit, small_datamodule


def test_the_projection_is_colored_by_label_not_by_prediction(tmp_path, monkeypatch):
    # C04: colors taken from the predictions although labels are there (docs: "colored by label")
    seen = []
    draw = embedding.projection_figure

    def keep(*args):
        seen.append(args)
        return draw(*args)

    monkeypatch.setattr(embedding, "projection_figure", keep)
    dm = small_datamodule()
    cb = EmbeddingProjector(num_samples=16, projection="pca", on_error="raise")
    fit(tmp_path, [cb], epochs=1, datamodule=dm)
    dm.setup("fit")
    labels = torch.stack([torch.as_tensor(dm.val_dataloader().dataset[i][1]) for i in range(16)])
    assert len(seen) == 1
    assert seen[0][1].tolist() == labels.long().tolist()


def test_no_validation_is_said_once_not_again_every_epoch(tmp_path):
    # C06: the per-epoch "no validation ran" warning repeated what setup said
    cb = EmbeddingProjector(num_samples=16, projection="pca")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(tmp_path, [cb], epochs=2, limit_val_batches=0)
    said = [str(w.message) for w in caught if str(w.message).startswith("EmbeddingProjector")]
    assert len(said) == 1 and "limit_val_batches=0" in said[0], said


def test_knn_accuracy_of_few_samples_uses_every_other_sample_as_neighbour():
    # C03: k clipped to N - 2 instead of N - 1 (the docs: "clipped to N - 1")
    from types import SimpleNamespace

    from lightning_viz.callbacks._embedding_scores import log_scores
    from lightning_viz.functional import embedding as E

    # 5 samples, k=5: every other sample votes (k=4); k=3 gives another accuracy here
    feats = torch.randn(5, 2, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 0, 1, 1, 1])
    logged = {}
    callback = SimpleNamespace(k=5, tag=lambda n: f"embedding/{n}", warn_once=lambda *a: None)
    ctx = SimpleNamespace(
        log=SimpleNamespace(scalar=lambda tag, v: logged.__setitem__(tag, v)),
        trainer=SimpleNamespace(val_dataloaders=None),
    )
    log_scores(callback, ctx, feats, labels)
    assert E.knn_accuracy(feats, labels, k=4) != E.knn_accuracy(feats, labels, k=3)
    assert logged["embedding/knn_acc"] == E.knn_accuracy(feats, labels, k=4)


def test_one_dimensional_features_draw_no_pca_figure_and_raise_nothing(tmp_path):
    # C09: the `< 2 features for pca` guard dropped -> a 2-D PCA of 1-D features is
    # attempted on the worker
    import pytorch_lightning as pl
    import torch.nn.functional as F
    from torch import nn

    from tests.conftest import read_events

    class OneFeature(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 1), nn.Linear(1, 5))

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, i):
            return F.cross_entropy(self(batch[0]), batch[1])

        def validation_step(self, batch, i):
            return F.cross_entropy(self(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    cb = EmbeddingProjector(layer="net.1", num_samples=16, projection="pca", on_error="raise")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(tmp_path, [cb], model=OneFeature(), epochs=1)
    said = [str(w.message) for w in caught if "EmbeddingProjector" in str(w.message)]
    assert not said, said
    assert not any("pca" in t for t in read_events(str(tmp_path))["images"])
