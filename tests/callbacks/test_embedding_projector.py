"""EmbeddingProjector: features captured during validation, written to the projector."""

from __future__ import annotations

import contextlib
import glob
import os
import pickle
import threading

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

import lightning_viz.functional.embedding as E
from lightning_viz._hooks import has_hooks
from lightning_viz._runtime.coordinator import Coordinator
from lightning_viz.callbacks._embedding_parts import merge_ranks
from lightning_viz.callbacks.embedding import EmbeddingProjector
from lightning_viz.data import LitClassifier
from tests.conftest import (
    assert_observing_changes_nothing,
    decode_png,
    fit,
    make_trainer,
    read_events,
    small_datamodule,
)

STEPS = [4, 8]  # limit_train_batches=4, two epochs
CLASSES = ["circle", "square", "triangle", "star", "cross"]


# ----------------------------------------------------------------------------- helpers
def projector_dir(tmp_path, step: int, tag: str) -> str:
    quoted = tag.replace("/", "%2f")  # SummaryWriter._encode
    return os.path.join(str(tmp_path), "run", "version_0", f"{step:05d}", quoted)


def projector_entries(run_dir: str) -> list:
    """The embeddings of ``projector_config.pbtxt``, read back with TensorBoard's proto."""
    from google.protobuf import text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    config = ProjectorConfig()
    with open(os.path.join(run_dir, "projector_config.pbtxt")) as f:
        text_format.Merge(f.read(), config)
    return list(config.embeddings)


def read_tsv(path: str) -> list[list[str]]:
    with open(path) as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def val_data(datamodule, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    datamodule.setup("fit")
    items = [datamodule.val_dataset[i] for i in range(n)]
    return torch.stack([it[0] for it in items]), torch.stack([it[1] for it in items])


@torch.no_grad()
def penultimate(model: LitClassifier, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Input of ``model.fc`` and the logits, computed by hand in eval mode."""
    net = model.model
    was = net.training
    net.eval()
    x = net.block3(net.block2(net.block1(images)))
    feats = torch.flatten(net.pool(x), 1)
    logits = net.fc(feats)
    net.train(was)
    return feats, logits


# ----------------------------------------------------------------------------- runs
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One 2-epoch run on texture-correlated data (learns fast); shared by several tests."""
    tmp = tmp_path_factory.mktemp("emb")
    dm = small_datamodule(texture_correlation=1.0)
    cb = EmbeddingProjector(num_samples=40, projection="pca", class_names=CLASSES, on_error="raise")
    trainer, model = fit(tmp, [cb], epochs=2, datamodule=dm)
    rng_after = torch.rand(4)  # the global RNG stream right after fit
    return tmp, dm, cb, trainer, model, rng_after


def test_projector_files_hold_the_first_validation_features(trained):
    tmp, dm, cb, trainer, model, _ = trained
    images, labels = val_data(dm, 40)
    feats, logits = penultimate(model, images)
    pred = logits.argmax(1)
    last = projector_dir(tmp, STEPS[-1], "embedding/model.fc")
    for name in ("tensors.tsv", "metadata.tsv"):
        assert os.path.isfile(os.path.join(last, name)), name
    # features: the input of model.fc for the first 40 validation images, values not shapes
    rows = read_tsv(os.path.join(last, "tensors.tsv"))
    assert len(rows) == 40 and all(len(r) == 64 for r in rows)
    written = torch.tensor([[float(v) for v in r] for r in rows])
    torch.testing.assert_close(written, feats, atol=1e-3, rtol=5e-3)  # 3 significant digits
    # metadata: header + one row per sample, with class names, in validation order
    meta = read_tsv(os.path.join(last, "metadata.tsv"))
    assert meta[0] == ["label", "predicted", "correct"]
    assert len(meta) == 41
    assert [r[0] for r in meta[1:]] == [CLASSES[i] for i in labels.tolist()]
    assert [r[1] for r in meta[1:]] == [CLASSES[i] for i in pred.tolist()]
    correct = [str(a == b).lower() for a, b in zip(labels.tolist(), pred.tolist(), strict=True)]
    assert [r[2] for r in meta[1:]] == correct
    # the projector config lists one embedding per run step, each with its own tensors
    # and metadata and one shared sprite (the same images every epoch: written once)
    run_dir = os.path.join(tmp, "run", "version_0")
    *entries, latest = projector_entries(run_dir)
    assert [e.tensor_name for e in entries] == [f"embedding/model.fc:{s:05d}" for s in STEPS]
    # and an alias of the latest step, whose name sorts first: the projector opens it
    assert latest.tensor_name == f"embedding/model.fc (latest, step {STEPS[-1]})"
    assert min(e.tensor_name for e in [*entries, latest]) == latest.tensor_name
    assert (latest.tensor_path, latest.metadata_path) == (
        entries[-1].tensor_path,
        entries[-1].metadata_path,
    )
    for entry, step in zip(entries, STEPS, strict=True):
        folder = os.path.relpath(projector_dir(tmp, step, "embedding/model.fc"), run_dir)
        assert entry.tensor_path == os.path.join(folder, "tensors.tsv")
        assert entry.metadata_path == os.path.join(folder, "metadata.tsv")
        assert list(entry.sprite.single_image_dim) == [32, 32]
    assert len({e.sprite.image_path for e in entries}) == 1
    sprites = glob.glob(os.path.join(run_dir, "**", "*.png"), recursive=True)
    assert sprites == [os.path.join(run_dir, entries[0].sprite.image_path)]
    # sprite: ceil(sqrt(40)) = 7 thumbnails of 32 px per side, the images themselves
    with open(sprites[0], "rb") as f:
        sprite = decode_png(f.read())
    assert tuple(sprite.shape) == (224, 224, 3)
    first = (images[0].permute(1, 2, 0) * 255).round().to(torch.uint8)
    assert (sprite[:32, :32].int() - first.int()).abs().max() <= 1


def test_scalars_and_figure_are_written_at_the_run_steps(trained):
    tmp, dm, cb, trainer, model, _ = trained
    ev = read_events(os.path.join(tmp, "run"))
    for tag in ("embedding/knn_acc", "embedding/silhouette", "viz/EmbeddingProjector/seconds"):
        assert sorted(s for s, _ in ev["scalars"][tag]) == STEPS, tag
    assert sorted(s for s, *_ in ev["images"]["embedding/model.fc/pca"]) == STEPS
    # the scalars are the functional values on the written features and labels
    images, labels = val_data(dm, 40)
    feats, _ = penultimate(model, images)
    knn = dict(ev["scalars"]["embedding/knn_acc"])[STEPS[-1]]
    assert knn == pytest.approx(E.knn_accuracy(feats, labels, k=5), abs=1e-6)
    sil = dict(ev["scalars"]["embedding/silhouette"])[STEPS[-1]]
    assert sil == pytest.approx(E.silhouette(feats, labels), abs=1e-4)
    assert float(trainer.callback_metrics["embedding/knn_acc"]) == pytest.approx(knn)
    # k-NN accuracy well above chance (0.2 for 5 classes) after two epochs
    assert knn > 0.5


def test_hooks_are_gone_and_the_worker_is_shut_down(trained):
    _, _, cb, trainer, model, _ = trained
    assert not has_hooks(model)
    worker = Coordinator.of(trainer)
    assert cb._capture is None and worker._executor is None and worker._jobs == []
    assert cb._last_epoch == 1


def test_observing_does_not_change_the_experiment(tmp_path):
    cb = EmbeddingProjector(num_samples=40, projection="pca", on_error="raise")
    trainer, _ = assert_observing_changes_nothing(tmp_path, [cb], epochs=2)
    assert "embedding/knn_acc" in trainer.callback_metrics


class _CountingForwards(LitClassifier):
    def __init__(self):
        super().__init__(num_classes=5)
        self.forwards = 0

    def forward(self, x):
        self.forwards += 1
        return super().forward(x)


def test_no_extra_forward_pass(tmp_path):
    model = _CountingForwards()
    cb = EmbeddingProjector(num_samples=40, projection="pca", on_error="raise")
    trainer, _ = fit(tmp_path, [cb], epochs=1, model=model)
    assert model.forwards == 4 + 1 + 2  # train batches + sanity-check batch + val batches
    assert "embedding/knn_acc" in trainer.callback_metrics
    rows = read_tsv(os.path.join(projector_dir(tmp_path, 4, "embedding/model.fc"), "tensors.tsv"))
    assert len(rows) == 40


def test_slow_tsne_runs_off_the_training_thread(tmp_path, monkeypatch):
    """The t-SNE cannot finish before fit ends (it waits for that), yet training is not
    held up: the epoch ends did not wait for it."""
    release, threads, released_first = threading.Event(), [], []

    def blocked_tsne(features, **kwargs):
        threads.append(threading.current_thread())
        released_first.append(release.wait(timeout=60))
        return E.pca(features)

    monkeypatch.setattr(E, "tsne", blocked_tsne)
    cb = EmbeddingProjector(num_samples=16, on_error="raise")
    trainer, _ = fit(tmp_path, [_Release(release), cb], epochs=2)
    assert len(threads) == 2 and released_first == [True, True]
    assert all(t is not threading.main_thread() for t in threads)
    ev = read_events(os.path.join(tmp_path, "run"))
    # both figures written, each with the step it belongs to, at the end of fit
    assert sorted(s for s, *_ in ev["images"]["embedding/model.fc/tsne"]) == STEPS
    worker = Coordinator.of(trainer)
    assert worker._executor is None and worker._jobs == []


class _Release(pl.Callback):
    def __init__(self, event):
        self.event = event

    def on_fit_end(self, trainer, pl_module):
        self.event.set()


def _block_tsne(monkeypatch) -> threading.Event:
    """t-SNE waits on the worker until the returned event is set (a starved worker)."""
    release = threading.Event()

    def blocked_tsne(features, **kwargs):
        release.wait(timeout=60)
        return E.pca(features)

    monkeypatch.setattr(E, "tsne", blocked_tsne)
    return release


def test_a_projection_slower_than_epochs_does_not_pile_up(tmp_path, monkeypatch):
    release = _block_tsne(monkeypatch)
    cb = EmbeddingProjector(num_samples=16, on_error="raise")
    with pytest.warns(UserWarning, match="slower than an epoch") as record:
        fit(tmp_path, [_Release(release), cb], epochs=3)
    assert len([w for w in record if "slower than an epoch" in str(w.message)]) == 1
    ev = read_events(os.path.join(tmp_path, "run"))
    # steps 4 and 8 queued (2 pending at most), step 12's figure skipped; scalars every run
    assert sorted(s for s, *_ in ev["images"]["embedding/model.fc/tsne"]) == [4, 8]
    assert sorted(s for s, _ in ev["scalars"]["embedding/knn_acc"]) == [4, 8, 12]
    assert os.path.isfile(
        os.path.join(projector_dir(tmp_path, 12, "embedding/model.fc"), "tensors.tsv")
    )


def test_projector_files_slower_than_epochs_do_not_pile_up(tmp_path, monkeypatch):
    """H52: only the figure had back-pressure; the projector job (each holds its run's
    features and thumbnails, about 20 MB at 224 px) was queued every epoch behind a
    starved worker for the rest of the fit. At most 2 wait; the others are skipped."""
    release = _block_tsne(monkeypatch)
    cb = EmbeddingProjector(num_samples=16, on_error="raise")
    with pytest.warns(UserWarning) as record:
        fit(tmp_path, [_Release(release), cb], epochs=5)
    said = [str(w.message) for w in record if "projector files" in str(w.message)]
    assert len(said) == 1 and "while 2 are still pending" in said[0], said
    # named after what the worker is on (H57: it may be another callback's work)
    assert "on EmbeddingProjector's embedding/model.fc/" in said[0], said
    assert said[0].endswith("(use fewer num_samples)")
    # the worker hangs on step 4's figure: step 4's files are written, those of steps 8
    # and 12 wait (written at the end of fit), steps 16 and 20 are skipped
    for step, written in ((4, True), (8, True), (12, True), (16, False), (20, False)):
        path = os.path.join(projector_dir(tmp_path, step, "embedding/model.fc"), "tensors.tsv")
        assert os.path.isfile(path) == written, step
    ev = read_events(os.path.join(tmp_path, "run"))
    assert sorted(s for s, _ in ev["scalars"]["embedding/knn_acc"]) == [4, 8, 12, 16, 20]


def test_layer_argument_every_n_epochs_and_tag_prefix(tmp_path):
    cb = EmbeddingProjector(
        layer="model.pool",
        num_samples=10,
        projection="pca",
        every_n_epochs=2,
        tag_prefix="emb",
        on_error="raise",
    )
    dm = small_datamodule()
    _, model = fit(tmp_path, [cb], epochs=2, datamodule=dm)
    images, _ = val_data(dm, 10)
    feats, _ = penultimate(model, images)  # pool output (N, 64, 1, 1), flattened = fc input
    assert not os.path.exists(projector_dir(tmp_path, 4, "emb/model.pool"))  # epoch 0 skipped
    rows = read_tsv(os.path.join(projector_dir(tmp_path, 8, "emb/model.pool"), "tensors.tsv"))
    written = torch.tensor([[float(v) for v in r] for r in rows])
    torch.testing.assert_close(written, feats, atol=1e-3, rtol=5e-3)
    ev = read_events(os.path.join(tmp_path, "run"))
    assert [s for s, _ in ev["scalars"]["emb/knn_acc"]] == [8]
    assert [s for s, *_ in ev["images"]["emb/model.pool/pca"]] == [8]
    assert "embedding/knn_acc" not in ev["scalars"]


def test_a_layer_followed_by_an_inplace_relu_is_recorded_before_it(tmp_path):
    cb = EmbeddingProjector(layer="model.block3.bn", num_samples=4, projection="pca")
    dm = small_datamodule()
    _, model = fit(tmp_path, [cb], epochs=1, datamodule=dm)
    images, _ = val_data(dm, 4)
    net = model.model.eval()
    with torch.no_grad():
        expected = net.block3.bn(net.block3.conv(net.block2(net.block1(images)))).flatten(1)
    rows = read_tsv(
        os.path.join(projector_dir(tmp_path, 4, "embedding/model.block3.bn"), "tensors.tsv")
    )
    written = torch.tensor([[float(v) for v in r] for r in rows])
    assert written.shape == (4, 64 * 8 * 8) and bool((written < 0).any())  # not the ReLU output
    torch.testing.assert_close(written, expected, atol=1e-3, rtol=5e-3)


# ----------------------------------------------------------------------------- failures
class _BreaksInValidation(LitClassifier):
    """Raises inside the second epoch's validation forward (hooks are registered then)."""

    def validation_step(self, batch, batch_idx):
        if self.current_epoch == 1 and not self.trainer.sanity_checking:
            raise RuntimeError("boom in validation")
        return super().validation_step(batch, batch_idx)


def test_no_hook_or_worker_left_when_training_raises(tmp_path):
    model = _BreaksInValidation(num_classes=5)
    cb = EmbeddingProjector(num_samples=8, projection="pca", on_error="raise")
    with pytest.raises(RuntimeError, match="boom in validation"):
        fit(tmp_path, [cb], epochs=2, model=model)
    assert not has_hooks(model)
    assert cb._capture is None


def _bad_batch_to_xy(batch):
    raise KeyError("no images here")


def _fails_after_setup():
    """A batch_to_xy that reads the first validation batch (setup checks it) and fails
    on the batches of the validation loop: a capture failure, not a configuration error."""
    calls = []

    def split(batch):
        calls.append(batch)
        if len(calls) > 1:
            raise KeyError("no images here")
        return batch[0], batch[1]

    return split


def test_a_capture_failure_warns_once_and_training_goes_on(tmp_path):
    cb = EmbeddingProjector(num_samples=8, projection="pca", batch_to_xy=_fails_after_setup())
    with pytest.warns(UserWarning, match="no images here") as record:
        trainer, model = fit(tmp_path, [cb], epochs=2)
    assert trainer.current_epoch == 2
    assert len([w for w in record if "turns itself off" in str(w.message)]) == 1
    assert not has_hooks(model)
    assert "embedding/knn_acc" not in trainer.callback_metrics
    # one that fails on every batch fails at setup, naming it, whatever on_error
    cb = EmbeddingProjector(num_samples=8, projection="pca", batch_to_xy=_bad_batch_to_xy)
    with pytest.raises(ValueError, match=r"`batch_to_xy` raised KeyError: 'no images here'"):
        fit(tmp_path / "setup", [cb], epochs=1)


def test_a_capture_failure_is_raised_on_request(tmp_path):
    cb = EmbeddingProjector(num_samples=8, batch_to_xy=_fails_after_setup(), on_error="raise")
    model = LitClassifier(num_classes=5)
    with pytest.raises(ValueError, match=r"`batch_to_xy` raised KeyError: 'no images here'"):
        fit(tmp_path, [cb], epochs=1, model=model)
    assert not has_hooks(model)


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_samples": 1}, ValueError, r"num_samples.*>= 2.*1"),
        ({"num_samples": 2.5}, TypeError, r"num_samples.*int.*2\.5"),
        ({"projection": "umap"}, ValueError, r"projection.*'umap'"),
        ({"k": 0}, ValueError, r"`k` must be an int >= 1, got 0"),
        ({"k": 1.5}, TypeError, r"`k` must be an int >= 1, got 1\.5"),
        ({"layer": 3}, TypeError, r"layer.*3"),
        ({"every_n_epochs": 0}, ValueError, r"every_n_epochs"),
    ],
)
def test_bad_arguments_raise_at_construction(kwargs, error, match):
    with pytest.raises(error, match=match):
        EmbeddingProjector(**kwargs)


class _NoLinear(LitClassifier):
    def __init__(self):
        super().__init__(
            model=nn.Sequential(
                nn.Conv2d(3, 5, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(1)
            ),
            num_classes=5,
        )


def test_model_without_linear_fails_at_setup_before_training(tmp_path):
    model = _NoLinear()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=r"no nn\.Linear.*layer=") as err:
        fit(tmp_path, [EmbeddingProjector(num_samples=8, on_error="raise")], epochs=1, model=model)
    assert str(err.value).endswith("(the last layers: model, model.0, model.1, model.2)")
    # the last layers, not every module (a BiT's 1x1-conv head listed 260 names, 9 kB)
    deep = nn.Sequential(*[nn.Conv2d(3, 3, 1) for _ in range(30)])
    with pytest.raises(ValueError, match=r"the last layers: 18, 19, .*, 29\)$"):
        EmbeddingProjector()._feature_layer(deep)
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    # by default the model makes it impossible: it warns, turns off, training goes on
    with pytest.warns(UserWarning, match=r"EmbeddingProjector cannot run .*no nn\.Linear"):
        trainer, _ = fit(
            tmp_path / "warn", [EmbeddingProjector(num_samples=8)], epochs=1, model=_NoLinear()
        )
    assert trainer.current_epoch == 1 and "embedding/knn_acc" not in trainer.callback_metrics
    # with `layer=` the same model works (embeds the pooled conv features)
    cb = EmbeddingProjector(layer="model.2", num_samples=8, projection="pca", on_error="raise")
    fit(tmp_path / "ok", [cb], epochs=1, model=_NoLinear())
    assert os.path.isdir(projector_dir(tmp_path / "ok", 4, "embedding/model.2"))


class _FlatData(pl.LightningDataModule):
    """Tabular data (16 features, 3 classes): no images for the projector's sprite."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(32, 16, generator=g), torch.randint(0, 3, (32,), generator=g)
        self.data = torch.utils.data.TensorDataset(x, y)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.data, batch_size=8)

    val_dataloader = train_dataloader


@pytest.mark.parametrize(
    "case, match",
    [
        ("mean", r"`mean`/`std` have 2 values but the validation images have 3 channels"),
        ("class_names", r"`class_names` has 4 names but the model has 5 classes \(5 logits\)"),
        ("binary_names", r"`class_names` has 1 names but the model has 2 classes \(1 logits\)"),
        ("flat", r"need image inputs of shape \(N, C, H, W\); the data gives .*\(8, 16\)"),
    ],
)
def test_a_bad_configuration_fails_at_setup_before_training(tmp_path, case, match):
    """What the probe callbacks check at setup, checked on the first validation batch
    (the embedding's samples): not at the first epoch's end, and whatever ``on_error``."""
    from tests.callbacks.test_trust import RelabelledData, TaskModule

    model, dm, kwargs = None, None, {}
    if case == "mean":
        kwargs = {"mean": [0.5, 0.5], "std": [0.2, 0.2]}
    elif case == "class_names":
        kwargs = {"class_names": CLASSES[:4]}
    elif case == "binary_names":
        model, kwargs = TaskModule(1, "bce"), {"class_names": ["no"]}
        dm = RelabelledData(relabel=lambda y: torch.tensor([float(y == 0)]))
    else:
        model = LitClassifier(
            model=nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)), num_classes=3
        )
        dm = _FlatData()
    cb = EmbeddingProjector(num_samples=8, projection="pca", **kwargs)  # on_error="warn"
    trainer = make_trainer(tmp_path, [cb], epochs=1)
    with pytest.raises(ValueError, match=rf"^EmbeddingProjector: .*{match}"):
        trainer.fit(model or LitClassifier(), datamodule=dm or small_datamodule())
    assert trainer.global_step == 0  # before the first training step


class _TwoHeads(nn.Module):
    """The classifier ``fc`` and an auxiliary head ``aux`` defined after it: ``(fc, aux)``."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.fc = nn.Linear(8, 5)
        self.aux = nn.Linear(3 * 32 * 32, 3)

    def forward(self, x):
        return self.fc(self.features(x)), self.aux(x.flatten(1))


class _TwoHeadModule(LitClassifier):
    def _shared_step(self, batch, prefix):
        loss = nn.functional.cross_entropy(self(batch[0])[0], batch[1])
        self.log(f"{prefix}_loss", loss, batch_size=len(batch[1]))
        return loss


def test_a_model_of_two_heads_needs_output_to_logits(tmp_path):
    """H64: without ``output_to_logits`` (the other callbacks refuse such a model), it
    embedded the input of the last ``Linear`` defined, the auxiliary head, and filled the
    predictions from that head's classes, without a word."""
    cb = EmbeddingProjector(num_samples=8, projection="pca")
    trainer = make_trainer(tmp_path / "refused", [cb], epochs=1)
    with pytest.raises(
        TypeError,
        match=r"not a tensor of logits but tuple; pass `output_to_logits`.*cannot tell which "
        r"of the nn.Linear layers \(model.fc, model.aux\)",
    ):
        trainer.fit(_TwoHeadModule(model=_TwoHeads()), datamodule=small_datamodule())
    assert trainer.global_step == 0
    cb = EmbeddingProjector(num_samples=8, projection="pca", output_to_logits=lambda o: o[0])
    fit(tmp_path / "mapped", [cb], epochs=1, model=_TwoHeadModule(model=_TwoHeads()))
    assert cb._layer_name == "model.fc"
    (metadata,) = glob.glob(str(tmp_path / "mapped" / "**" / "metadata.tsv"), recursive=True)
    assert "?" not in open(metadata).read()


def test_class_names_of_a_binary_model_are_two(tmp_path):
    from tests.callbacks.test_trust import RelabelledData, TaskModule

    dm = RelabelledData(relabel=lambda y: torch.tensor([float(y == 0)]))
    cb = EmbeddingProjector(num_samples=8, projection="pca", class_names=["no", "yes"])
    fit(tmp_path, [cb], model=TaskModule(1, "bce"), datamodule=dm, epochs=1)
    assert cb._task == "binary" and cb._enabled
    rows = open(glob.glob(str(tmp_path / "**" / "metadata.tsv"), recursive=True)[-1]).read()
    assert {r.split("\t")[0] for r in rows.split("\n")[1:] if r} <= {"no", "yes"}


def test_unknown_layer_lists_the_closest_match():
    cb = EmbeddingProjector(layer="model.fcc")
    with pytest.raises(ValueError, match=r"model\.fc"):
        cb._feature_layer(LitClassifier(num_classes=5))
    cb = EmbeddingProjector()
    assert cb._feature_layer(LitClassifier(num_classes=5))[0] == "model.fc"


# ----------------------------------------------------------------------------- units
def test_thumbnails_are_square_pixels_within_the_sprite_limit():
    cb = EmbeddingProjector(num_samples=40_000, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    pixels = torch.rand(3, 3, 40, 80)
    thumbs = cb._thumbnails((pixels - 0.5) / 0.25)  # model space in, pixel thumbnails out
    side = 8192 // 200  # ceil(sqrt(40000)) = 200 thumbnails per sprite side
    assert thumbs.dtype == torch.uint8 and tuple(thumbs.shape) == (3, 3, side, side)
    # aspect kept (40x80 -> 20x40) and padded top/bottom with black
    assert thumbs[:, :, :10].max() == 0 and thumbs[:, :, -10:].max() == 0
    inner = thumbs[:, :, 10:30].float() / 255
    expected = torch.nn.functional.interpolate(
        pixels, size=(20, 40), mode="bilinear", align_corners=False, antialias=True
    )
    assert (inner - expected).abs().max() < 1 / 255 + 1e-4


def _rank_part(indices: list[int], with_labels: bool = True) -> dict:
    idx = torch.tensor(indices)
    return {
        "features": idx[:, None].float().repeat(1, 2),
        "thumbs": idx[:, None, None, None].to(torch.uint8).repeat(1, 1, 2, 2),
        "labels": idx * 10 if with_labels else None,
        "predicted": idx * 100,
    }


def test_interleave_restores_dataset_order_and_drops_sampler_padding():
    # DistributedSampler over 5 samples, 2 ranks: rank 0 gets 0, 2, 4; rank 1 gets 1, 3, 0 (pad)
    parts = [_rank_part([0, 2, 4]), _rank_part([1, 3, 0])]
    out = merge_ranks(parts, total=5, num_samples=1000)
    assert out["features"][:, 0].tolist() == [0, 1, 2, 3, 4]
    assert out["labels"].tolist() == [0, 10, 20, 30, 40]
    assert out["predicted"].tolist() == [0, 100, 200, 300, 400]
    assert out["thumbs"][:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4]
    assert merge_ranks(parts, total=5, num_samples=3)["labels"].tolist() == [0, 10, 20]
    # unknown length: nothing dropped, the padding row comes last
    assert merge_ranks(parts, total=None, num_samples=10)["labels"].tolist() == [
        0,
        10,
        20,
        30,
        40,
        0,
    ]
    # a key missing on one rank is missing in the result; a rank without samples is fine
    mixed = [_rank_part([0, 2]), _rank_part([1, 3], with_labels=False)]
    assert merge_ranks(mixed, total=4, num_samples=4)["labels"] is None
    empty = {"features": None, "thumbs": None, "labels": None, "predicted": None}
    out = merge_ranks([_rank_part([0, 1]), empty], total=None, num_samples=4)
    assert out["labels"].tolist() == [0, 10]


def test_pickles_without_runtime_state(tmp_path):
    cb = EmbeddingProjector(num_samples=8, projection="pca", k=3, layer="model.fc")
    cb._capture = contextlib.ExitStack()  # hooks in use would not pickle
    clone = pickle.loads(pickle.dumps(cb))
    assert clone._capture is None and clone._chunks == []
    assert (clone.num_samples, clone.projection, clone.k, clone.layer) == (8, "pca", 3, "model.fc")
    assert clone.state_key == cb.state_key


def test_state_dict_round_trip():
    cb = EmbeddingProjector(num_samples=8)
    state = cb.state_dict()
    other = EmbeddingProjector(num_samples=8)
    other.load_state_dict(state)
    assert other.state_dict() == state


def test_no_event_files_without_validation(tmp_path):
    cb = EmbeddingProjector(num_samples=8, projection="pca", on_error="raise")
    trainer, model = fit(tmp_path, [cb], epochs=1, limit_val_batches=0)
    assert trainer.current_epoch == 1
    assert not glob.glob(os.path.join(tmp_path, "run", "version_0", "0000*"))
    assert not has_hooks(model)


def test_projector_config_keeps_every_step_and_one_latest_alias_per_tag(tmp_path):
    from lightning_viz._runtime.projector import write_embedding

    thumbs = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)

    def write(tag: str, step: int) -> None:
        write_embedding(str(tmp_path), tag, step, torch.rand(2, 3), [["a"], ["b"]], ["x"], thumbs)

    for tag, step in (("emb/a", 0), ("emb/b", 0), ("emb/a", 8), ("emb/a", 4)):
        write(tag, step)  # step 4 after 8: a run resumed from an earlier checkpoint
    names = [e.tensor_name for e in projector_entries(str(tmp_path))]
    # the abandoned later step is gone, and "latest" is the resumed run's (it was step 8)
    assert "emb/a:00008" not in names and min(names) == "emb/a (latest, step 4)"
    write("emb/a", 8)  # the resumed run reaches step 8 again
    names = [e.tensor_name for e in projector_entries(str(tmp_path))]
    assert sorted(names) == sorted(
        [
            "emb/b:00000",
            "emb/b (latest, step 0)",
            "emb/a:00000",
            "emb/a:00004",
            "emb/a:00008",
            "emb/a (latest, step 8)",
        ]
    )
    assert min(names) == "emb/a (latest, step 8)"  # what the projector opens


@pytest.mark.parametrize("dtype", [torch.float32, torch.long])
def test_binary_labels_as_a_column_are_class_indices(tmp_path, dtype):
    """BCEWithLogits targets are often (N, 1): the projector reads them as 0/1 classes."""
    from tests.callbacks.test_trust import RelabelledData, TaskModule

    dm = RelabelledData(relabel=lambda y: torch.tensor([int(y == 0)], dtype=dtype))
    cb = EmbeddingProjector(num_samples=16, projection="pca", on_error="raise")
    fit(tmp_path, [cb], model=TaskModule(1, "bce"), datamodule=dm, epochs=1)
    scalars = read_events(str(tmp_path))["scalars"]
    assert 0.0 <= scalars["embedding/knn_acc"][-1][1] <= 1.0
    metadata = glob.glob(str(tmp_path / "**" / "metadata.tsv"), recursive=True)
    assert metadata, "no projector metadata written"
    rows = open(metadata[-1]).read().split("\n")[1:]
    assert {r.split("\t")[0] for r in rows if r} <= {"0", "1"}


def test_class_indices_as_a_column_are_class_indices_of_a_multiclass_model(tmp_path):
    """(N, 1) class indices (MedMNIST, a DataFrame's ``df[["label"]]``) on a 5-logit model
    were read as binary labels (the column's width taken for the logits'): the
    projector turned itself off with "must be 0/1 labels for a binary model"."""
    from tests.callbacks.test_trust import RelabelledData, TaskModule

    class ColumnLabels(TaskModule):
        def _loss(self, batch):
            return torch.nn.functional.cross_entropy(self(batch[0]), batch[1].view(-1))

    dm = RelabelledData(relabel=lambda y: torch.tensor([int(y)]))
    cb = EmbeddingProjector(num_samples=16, projection="pca", on_error="raise")
    fit(tmp_path, [cb], model=ColumnLabels(5, "ce"), datamodule=dm, epochs=1)
    scalars = read_events(str(tmp_path))["scalars"]
    assert 0.0 <= scalars["embedding/knn_acc"][-1][1] <= 1.0
    (metadata,) = glob.glob(str(tmp_path / "**" / "metadata.tsv"), recursive=True)
    rows = [r for r in open(metadata).read().split("\n")[1:] if r]
    labels = {r.split("\t")[0] for r in rows}
    assert len(rows) == 16 and len(labels) > 2 and labels <= {str(c) for c in range(5)}


@pytest.mark.parametrize(
    "schedule",
    [
        {"val_check_interval": 0.5},  # validations after batches 2 and 4 of each epoch
        {"val_check_interval": 3, "check_val_every_n_epoch": None},  # steps 3 and 6
    ],
    ids=["interval_0.5", "every_3_steps"],
)
def test_several_validations_an_epoch_embed_the_latest_at_the_epoch_end(tmp_path, schedule):
    """With several validation loops in an epoch (or validation by steps), it writes at
    the training epoch end with the other callbacks, embedding the epoch's latest
    validation; it wrote at the first validation, two steps before the others."""
    import lightning_viz as lv

    dm = small_datamodule()
    cb = EmbeddingProjector(num_samples=40, projection="pca", on_error="raise")
    other = lv.FilterLogger()
    trainer, model = fit(tmp_path, [cb, other], epochs=2, datamodule=dm, **schedule)
    scalars = read_events(str(tmp_path))["scalars"]
    steps = [s for s, _ in scalars["embedding/knn_acc"]]
    assert steps == [s for s, _ in scalars["viz/FilterLogger/seconds"]] == STEPS
    # the last validation (step 8 for 0.5; step 6 for every 3 steps: no training after it
    # for 0.5, two steps after it for every 3 steps) is what the last epoch embedded
    rows = read_tsv(os.path.join(projector_dir(tmp_path, 8, "embedding/model.fc"), "tensors.tsv"))
    written = torch.tensor([[float(v) for v in r] for r in rows])
    if "check_val_every_n_epoch" not in schedule:
        feats, _ = penultimate(model, val_data(dm, 40)[0])
        torch.testing.assert_close(written, feats, atol=1e-3, rtol=5e-3)
    assert not os.path.isdir(os.path.join(str(tmp_path), "run", "version_0", "00006"))
    assert not os.path.isdir(os.path.join(str(tmp_path), "run", "version_0", "00002"))


class _OneClassValidation(pl.LightningDataModule):
    """The small built-in training data; a validation set of class 2 only."""

    def __init__(self) -> None:
        super().__init__()
        self.base = small_datamodule()

    def setup(self, stage: str | None = None) -> None:
        self.base.setup(stage)

    def train_dataloader(self):
        return self.base.train_dataloader()

    def val_dataloader(self):
        from torch.utils.data import DataLoader, TensorDataset

        images = torch.stack([self.base.val_dataset[i][0] for i in range(32)])
        return DataLoader(TensorDataset(images, torch.full((32,), 2)), batch_size=16)


def test_a_one_class_validation_set_writes_no_knn_accuracy_and_says_why(tmp_path):
    """k-NN accuracy was 1.0 by construction (every neighbour has the one label) and the
    silhouette was left out without a word."""
    projector = EmbeddingProjector(num_samples=16, projection="pca", on_error="raise")
    with pytest.warns(UserWarning, match="all have label 2: k-NN accuracy and silhouette"):
        fit(tmp_path, [projector], epochs=1, datamodule=_OneClassValidation())
    events = read_events(str(tmp_path))
    assert "embedding/knn_acc" not in events["scalars"]
    assert "embedding/silhouette" not in events["scalars"]
    assert glob.glob(os.path.join(str(tmp_path), "**", "projector_config.pbtxt"), recursive=True)


@pytest.mark.parametrize(
    "case", ["vit_embed_dim_equals_classes", "mobilenet_hidden_equals_classes"]
)
def test_the_head_is_the_linear_whose_output_is_the_logits(case):
    """An inner Linear with as many outputs as classes came first in the last run of such
    Linears: a ViT block's MLP over tokens (embed_dim == num_classes) was embedded as
    2176 flattened numbers, MobileNetV3's hidden classifier layer instead of its head."""
    from lightning_viz._guard import ModelView

    torch.manual_seed(0)
    if case == "vit_embed_dim_equals_classes":
        timm_vit = pytest.importorskip("timm.models.vision_transformer")
        net = timm_vit.VisionTransformer(
            img_size=32, patch_size=8, num_classes=32, embed_dim=32, depth=2, num_heads=2
        )
        expected = "head"
    else:
        import torchvision

        net = torchvision.models.mobilenet_v3_small(weights=None, num_classes=1024)
        expected = "classifier.3"
    net.eval()
    name, _ = EmbeddingProjector()._feature_layer(net, ModelView(net), torch.rand(1, 3, 32, 32))
    assert name == expected


def test_samples_each_of_their_own_class_write_no_knn_accuracy(tmp_path):
    """k-NN accuracy was 0.0 by construction (no neighbour shares a label) and the
    silhouette NaN in callback_metrics."""
    dm = _OneClassValidation()
    dm.val_dataloader = lambda: _distinct_labels(dm)  # labels 0..3, one sample each
    projector = EmbeddingProjector(num_samples=4, projection="pca", on_error="raise")
    with pytest.warns(UserWarning, match="each have a class of their own"):
        trainer, _ = fit(tmp_path, [projector], epochs=1, datamodule=dm)
    assert "embedding/knn_acc" not in trainer.callback_metrics
    assert "embedding/silhouette" not in trainer.callback_metrics


def _distinct_labels(dm):
    from torch.utils.data import DataLoader, TensorDataset

    images = torch.stack([dm.base.val_dataset[i][0] for i in range(4)])
    return DataLoader(TensorDataset(images, torch.arange(4)), batch_size=4)


def test_a_tab_or_line_break_in_a_class_name_keeps_one_metadata_row_per_point(tmp_path):
    """``"tab\\there"`` wrote two cells and ``"new\\nline"`` two rows: every later point
    got the label of the one before, and the projector did not say so."""
    names = ["tab\there", "new\nline", "crlf\r\nname", "plain", "five"]
    cb = EmbeddingProjector(num_samples=40, projection="pca", class_names=names, on_error="raise")
    fit(tmp_path, [cb], epochs=1)
    (meta,) = glob.glob(os.path.join(tmp_path, "run", "version_0", "*", "*", "metadata.tsv"))
    (vectors,) = glob.glob(os.path.join(os.path.dirname(meta), "tensors.tsv"))
    with open(meta) as f:
        rows = f.read().splitlines()
    with open(vectors) as f:
        points = len(f.read().splitlines())
    assert len(rows) == points + 1 and all(len(r.split("\t")) == 3 for r in rows), rows[:3]
    shown = {r.split("\t")[0] for r in rows[1:]}
    assert shown <= {"tab here", "new line", "crlf name", "plain", "five"} and len(shown) == 5


class _PerPosition(LitClassifier):
    """Logits per column ``(N, W, K)`` (a sequence model), trained on their mean."""

    def forward(self, x):
        features = self.model.block1(x).mean(2).transpose(1, 2)  # (N, 16 columns, 16)
        return self.head(features)

    def __init__(self) -> None:
        super().__init__(num_classes=5)
        self.head = nn.Linear(16, 5)

    def training_step(self, batch, batch_idx):
        x, y = batch[0], batch[1]
        return nn.functional.cross_entropy(self(x).mean(1), y)

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", nn.functional.cross_entropy(self(batch[0]).mean(1), batch[1]))


def test_an_output_that_is_not_logits_is_said_when_predictions_are_left_out(tmp_path):
    """H60: the eight other callbacks refuse (N, T, K) outputs at setup; the projector
    embedded the features and wrote "?" as every prediction without a word."""
    cb = EmbeddingProjector(num_samples=16, layer="head", projection="pca", on_error="raise")
    with pytest.warns(UserWarning, match=r"output \(shape \(32, 16, 5\)\) is not logits"):
        fit(tmp_path, [cb], epochs=1, model=_PerPosition())
    (meta,) = glob.glob(os.path.join(tmp_path, "run", "version_0", "*", "*", "metadata.tsv"))
    with open(meta) as f:
        assert f.readline().rstrip("\n").split("\t") == ["label", "predicted", "correct"]
        assert {row.split("\t")[1] for row in f.read().splitlines()} == {"?"}


def test_two_classes_of_one_name_stay_apart_in_the_projector_and_the_legend():
    """ImageNet names two classes "crane": the projector's labels and the t-SNE legend
    showed one "crane" for both, so coloring by label merged the two classes."""
    from lightning_viz._runtime.context import caption_names
    from lightning_viz._runtime.projector import metadata_rows

    names = ["crane", "heron", "crane"]
    rows = metadata_rows(torch.tensor([0, 2, 1]), torch.tensor([2, 2, 1]), 3, names)
    assert rows == [
        ["crane #0", "crane #2", "false"],
        ["crane #2", "crane #2", "true"],
        ["heron", "heron", "true"],
    ]
    assert caption_names(names) == ["crane #0", "heron", "crane #2"]
    long = caption_names(["a long name of a class"] * 2)
    assert long == ["a long name o.. #0", "a long name o.. #1"] and len(long[0]) == 18
    shown = caption_names(["crane", "crane", "crane #1"])  # a name like a made one
    assert len(set(shown)) == 3 and shown[0] == "crane #0"


class _Transformed(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), self.labels[i]


class _TransformedData(pl.LightningDataModule):
    def __init__(self, transform) -> None:
        super().__init__()
        dm = small_datamodule(val_size=16)
        dm.setup("fit")
        self.pixels = torch.stack([dm.val_dataset[i][0] for i in range(16)])
        self.data = _Transformed(self.pixels, torch.arange(16) % 5, transform)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.data, batch_size=8)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(self.data, batch_size=8)


@pytest.mark.parametrize("data", ["normalized", "0_255"])
def test_the_sprite_shows_the_pixels_of_normalized_or_0_255_validation_data(tmp_path, data):
    """The projector has no probe, so ``mean``/``std`` "auto" stayed unknown: with a
    Normalize in the validation transform the sprite showed the normalized tensors
    clamped to [0, 1] (96% of its pixels saturated), and 0-255 data showed white."""
    import warnings

    from torchvision import transforms as T

    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    transform = T.Normalize(mean, std) if data == "normalized" else (lambda x: x * 255)
    dm = _TransformedData(transform)
    cb = EmbeddingProjector(num_samples=16, projection="pca", on_error="raise")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(tmp_path, [cb], epochs=1, datamodule=dm, model=LitClassifier(num_classes=5))
    stretched = [str(w.message) for w in caught if "stretched to [0, 1]" in str(w.message)]
    (sprite_file,) = glob.glob(str(tmp_path / "**" / "*.png"), recursive=True)
    with open(sprite_file, "rb") as f:
        sprite = decode_png(f.read())
    first = dm.pixels[0]
    if data == "normalized":
        assert (cb.mean, cb.std) == (mean, std) and not stretched
    else:  # no normalization to know: each thumbnail stretched from its own range, said once
        assert cb.mean is None and len(stretched) == 1 and "[0, 255]" in stretched[0]
        first = (first - first.min()) / (first.max() - first.min())
    expected = (first.permute(1, 2, 0) * 255).round().to(torch.uint8)
    assert (sprite[:32, :32].int() - expected.int()).abs().max() <= 1


def test_only_thumbnails_well_outside_the_pixel_range_are_stretched():
    """One image a little over 1 (a bicubic resize's overshoot) stretched every thumbnail
    of the batch: dim images showed at full contrast."""
    from lightning_viz._runtime.projector import stretched_outside_pixels

    images = torch.rand(3, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 0.4 + 0.3
    images[1, 0, 0, 0] = 1.02
    same, outside = stretched_outside_pixels(images)
    assert outside is None and torch.equal(same, images)
    images[2] *= 255  # 0-255 data
    out, outside = stretched_outside_pixels(images)
    assert torch.equal(out[:2], images[:2]) and outside == (
        float(images[2].min()),
        float(images[2].max()),
    )
    assert float(out[2].min()) == 0 and float(out[2].max()) == pytest.approx(1)


class _FirstOfCombined(LitClassifier):
    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        return super().validation_step(batch["main"], batch_idx)


@pytest.mark.parametrize(("mode", "seen"), [("max_size_cycle", 16), ("min_size", 8)])
def test_a_combined_validation_loader_embeds_its_first_loaders_samples(tmp_path, mode, seen):
    """A CombinedLoader yielding one batch of every loader at once ({"main": ..., "extra":
    ...}) turned EmbeddingProjector off ("cannot find images in a batch dict with keys
    ['main', 'extra']") while the other callbacks read its first loader."""
    from pytorch_lightning.utilities import CombinedLoader
    from torch.utils.data import DataLoader, Subset

    dm = small_datamodule(val_size=24)
    dm.setup("fit")
    loaders = {
        "main": DataLoader(dm.val_dataset, batch_size=8),
        "extra": DataLoader(Subset(dm.val_dataset, range(4)), batch_size=4),
    }
    model = (
        LitClassifier(num_classes=5) if mode == "sequential" else _FirstOfCombined(num_classes=5)
    )
    cb = EmbeddingProjector(num_samples=16, projection="pca", on_error="raise")
    trainer = make_trainer(tmp_path, [cb], epochs=1, num_sanity_val_steps=0, limit_train_batches=2)
    trainer.fit(model, dm.train_dataloader(), CombinedLoader(loaders, mode=mode))
    (meta,) = glob.glob(str(tmp_path / "run" / "version_0" / "*" / "embedding*" / "metadata.tsv"))
    with open(meta) as f:
        labels = [int(line.split("\t")[0]) for line in f.readlines()[1:]]
    # the main loader's samples (min_size: one batch, as long as the 4-sample loader)
    assert labels == [int(dm.val_dataset[i][1]) for i in range(seen)]


class _NoValidationStep(LitClassifier):
    validation_step = pl.LightningModule.validation_step


def test_a_module_without_validation_step_is_named_as_why_nothing_is_embedded(tmp_path):
    """Given validation data but no validation_step, it pointed at check_val_every_n_epoch
    and limit_val_batches, which were not the cause (now said at setup)."""
    cb = EmbeddingProjector(num_samples=8, projection="pca")
    with pytest.warns(UserWarning, match=r"the LightningModule has no validation_step: nothing"):
        fit(tmp_path, [cb], epochs=1, model=_NoValidationStep(num_classes=5))


def test_scores_leave_out_unlabelled_and_repeated_samples():
    """A sampler with replacement repeated samples (each its own nearest neighbour:
    k-NN accuracy 0.35 where 0.09 was right), and -100 (ignore_index) counted as a class.
    Equal rows from a sampler without replacement are distinct samples: all kept."""
    from types import SimpleNamespace

    from lightning_viz.callbacks._embedding_scores import log_scores
    from lightning_viz.functional import embedding as E

    g = torch.Generator().manual_seed(0)
    feats, labels = torch.randn(40, 8, generator=g), torch.arange(40) % 4
    labels[:6] = -100  # no class
    said, logged = [], {}
    callback = SimpleNamespace(
        k=5,
        tag=lambda name: f"embedding/{name}",
        warn_once=lambda key, message: said.append(message),
    )
    from torch.utils.data import DataLoader, WeightedRandomSampler

    loader = DataLoader(range(40), sampler=WeightedRandomSampler([1.0] * 40, 60))
    ctx = SimpleNamespace(
        log=SimpleNamespace(scalar=lambda tag, v: logged.__setitem__(tag, v)),
        trainer=SimpleNamespace(val_dataloaders=loader),
    )
    repeated = torch.cat([torch.arange(40), torch.arange(10, 30)])  # 20 samples twice
    log_scores(callback, ctx, feats[repeated], labels[repeated])
    kept, kept_labels = feats[6:], labels[6:]
    assert logged["embedding/knn_acc"] == E.knn_accuracy(kept, kept_labels, k=5)
    assert logged["embedding/silhouette"] == E.silhouette(kept, kept_labels)
    assert len(said) == 1 and "20 of the 54 embedded samples came again" in said[0]
    # a sampler without replacement: equal rows are distinct samples a model maps alike
    ctx.trainer.val_dataloaders = DataLoader(range(40))
    log_scores(callback, ctx, feats[repeated], labels[repeated])
    rows, row_labels = (
        feats[repeated][labels[repeated] >= 0],
        labels[repeated][labels[repeated] >= 0],
    )
    assert logged["embedding/knn_acc"] == E.knn_accuracy(rows, row_labels, k=5)
    assert len(said) == 1


def test_a_collapsed_embedding_writes_no_scores_and_says_why():
    """Every sample with the same features: k-NN accuracy was decided by tie order (0.175
    or 0.200 for the same data shuffled) and the silhouette 0/0 was written as 0."""
    import types

    from lightning_viz.callbacks._embedding_scores import log_scores

    written, said = [], []
    callback = types.SimpleNamespace(
        k=3, tag=lambda name: f"embedding/{name}", warn_once=lambda key, text: said.append(text)
    )
    log = types.SimpleNamespace(epoch=2, scalar=lambda tag, value: written.append(tag))
    ctx = types.SimpleNamespace(trainer=types.SimpleNamespace(val_dataloaders=None), log=log)
    labels = torch.tensor([0, 1] * 5)
    log_scores(callback, ctx, torch.zeros(10, 4), labels)
    assert written == [] and "all have the same features at epoch 2" in said[0]
    # under a sampler that draws with replacement it was said as "came again" (H45)
    from torch.utils.data import DataLoader, WeightedRandomSampler

    said.clear()
    ctx.trainer.val_dataloaders = DataLoader(
        range(10), sampler=WeightedRandomSampler([1.0] * 10, 10, replacement=True)
    )
    log_scores(callback, ctx, torch.zeros(10, 4), labels)
    assert written == [] and len(said) == 1 and "the 10 embedded" in said[0], said
    assert "a collapsed model" in said[0]
    log_scores(
        callback, ctx, torch.randn(10, 4, generator=torch.Generator().manual_seed(0)), labels
    )
    assert written == ["embedding/knn_acc", "embedding/silhouette"]


class _NaNInEval(LitClassifier):
    """Finite weights; every validation feature NaN (the input scaled by NaN in eval)."""

    def forward(self, x):
        return super().forward(x if self.training else x * float("nan"))


def test_all_features_nan_is_said_as_such_and_nothing_is_written(tmp_path):
    """The message said the projector "captured fewer than 2 validation samples", as if
    the validation loop had been too short."""
    projector = EmbeddingProjector(num_samples=16, projection="pca", on_error="raise")
    with pytest.warns(UserWarning) as caught:
        fit(tmp_path, [projector], epochs=1, model=_NaNInEval(num_classes=5))
    said = [str(w.message) for w in caught]
    assert sum("non-finite images or features" in m for m in said) == 1, said
    empty = [m for m in said if "fewer than 2 validation samples with finite" in m]
    assert len(empty) == 1, said
    events = read_events(str(tmp_path))
    assert not any(tag.startswith("embedding/") for tag in events["scalars"])
    assert not glob.glob(
        os.path.join(str(tmp_path), "**", "projector_config.pbtxt"), recursive=True
    )


@pytest.mark.parametrize(
    ("layer", "title"),
    [
        (None, "pca of the input of model.fc, step 4"),
        ("model.fc", "pca of model.fc's output, step 4"),
    ],
)
def test_the_figure_title_says_which_features_are_embedded(tmp_path, monkeypatch, layer, title):
    """H47: both read "pca of model.fc features": the head's input by default and the
    head's output (the logits) with layer="model.fc", under one name."""
    from lightning_viz.callbacks import embedding

    titles = []
    draw = embedding.projection_figure

    def keep(*args):
        titles.append(args[4])
        return draw(*args)

    monkeypatch.setattr(embedding, "projection_figure", keep)
    cb = EmbeddingProjector(num_samples=16, projection="pca", layer=layer, on_error="raise")
    fit(tmp_path, [cb], epochs=1)
    assert titles == [title]
