"""ClassModelLogger: class-model images of a trained model, schedule, neuron mode, errors."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import pytest
import torch

import lightning_viz as lv
import lightning_viz.functional as LF
from lightning_viz._guard import make_generator
from lightning_viz._hooks import has_hooks
from lightning_viz.data import LitClassifier, SmallCNN
from lightning_viz.functional.class_model import class_model_run
from tests.conftest import (
    UnknownTokenNet,
    assert_observing_changes_nothing,
    decode_png,
    fit,
    read_events,
    record_captions,
    small_datamodule,
)

K = 5
STEPS = 60
NAMES = ["circle", "square", "triangle", "star", "cross"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A SmallCNN trained with the texture shortcut (confident), 4 epochs, every 2nd logged."""
    tmp = tmp_path_factory.mktemp("class_model")
    cbs = [
        lv.ClassModelLogger(
            steps=STEPS, every_n_epochs=2, class_names=NAMES, on_error="raise", seed=3
        ),
        lv.ClassModelLogger(  # a second one needs its own prefix (else: the same tags)
            steps=10,
            every_n_epochs=4,
            neuron=("model.block2.conv", 1),
            on_error="raise",
            tag_prefix="class_model_neuron",
        ),
    ]
    dm = small_datamodule(train_size=320, batch_size=32, texture_correlation=1.0)
    torch.manual_seed(0)  # the model's initial weights do not depend on the tests before
    trainer, model = fit(
        tmp,
        cbs,
        epochs=4,
        datamodule=dm,
        model=LitClassifier(num_classes=K, lr=1e-2),
        limit_train_batches=None,
    )
    return trainer, model, cbs, read_events(str(tmp))


def test_every_n_epochs_and_tags(run):
    trainer, model, _, ev = run
    per_epoch = trainer.global_step // 4
    assert [e[0] for e in ev["images"]["class_model/grid"]] == [2 * per_epoch, 4 * per_epoch]
    neuron = ev["images"]["class_model_neuron/neuron/model.block2.conv/1"]
    assert [e[0] for e in neuron] == [4 * per_epoch]
    assert len(ev["scalars"]["viz/ClassModelLogger/seconds"]) == 2  # the grid's 2 runs
    assert len(ev["scalars"]["viz/ClassModelLogger/class_model_neuron/seconds"]) == 1
    assert not has_hooks(model)
    assert all(m.training for m in model.modules())


def test_class_models_are_classified_as_their_class_far_above_the_start_noise(run):
    _, model, _, ev = run
    # recompute with the callback's generator: same seed, same images as the last run
    images = LF.class_model(model, None, (3, 32, 32), steps=STEPS, generator=make_generator(3))
    start = LF.class_model(model, None, (3, 32, 32), steps=0, generator=make_generator(3))
    model.eval()
    with torch.no_grad():
        logits, logits0 = model(images), model(start)
    rows = torch.arange(K)
    assert int((logits.argmax(1) == rows).sum()) >= 4
    gain = logits[rows, rows] - logits0[rows, rows]
    assert bool((gain > 5.0).all()), gain
    # the logged grid shows exactly these images (tile i at x = 2 + i * (64 + 2), y = 2)
    grid = decode_png(ev["images"]["class_model/grid"][-1][3])
    tiles = (images * 255).round().to(torch.uint8).repeat_interleave(2, 2).repeat_interleave(2, 3)
    for i in range(K):
        tile = grid[2 : 2 + 64, 2 + i * 66 : 2 + i * 66 + 64].permute(2, 0, 1)
        assert (tile.int() - tiles[i].int()).abs().max() <= 1, i


def test_observing_does_not_change_the_experiment(tmp_path):
    cb = lv.ClassModelLogger(steps=5, every_n_epochs=1, on_error="raise")
    trainer, _ = assert_observing_changes_nothing(tmp_path, [cb], epochs=2)
    assert "viz/ClassModelLogger/seconds" in trainer.callback_metrics


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"classes": "ab"}, TypeError, "classes.*'ab'"),
        ({"classes": [0, 1.5]}, TypeError, "classes.*1.5"),
        ({"classes": []}, ValueError, "non-empty"),
        ({"classes": [-1]}, ValueError, r"classes.*\[-1\]"),
        ({"steps": 0}, ValueError, "steps.*0"),
        ({"steps": 2.0}, TypeError, "steps.*2.0"),
        ({"every_n_epochs": 0}, ValueError, "every_n_epochs.*0"),
        ({"neuron": ("a", -1)}, ValueError, "neuron.*-1"),
        ({"neuron": "a"}, TypeError, "neuron.*'a'"),
        ({"neuron": ("a", 1), "classes": [0]}, ValueError, "classes` must be None"),
        ({"reshape": len}, ValueError, "`reshape` must be None when no `neuron` is given"),
        ({"neuron": ("a", 1), "reshape": 3}, TypeError, "reshape.*got 3"),
        ({"image_shape": "abc"}, TypeError, "image_shape.*'abc'"),
        ({"image_shape": [3, 32]}, ValueError, r"image_shape.*\[3, 32\]"),
    ],
)
def test_bad_arguments_raise_at_construction(kwargs, error, match):
    with pytest.raises(error, match=match):
        lv.ClassModelLogger(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"classes": [0, 7]}, r"`classes` must be class indices in \[0, 5\) .*got \[7\]"),
        ({"neuron": ("model.block9", 0)}, "block9"),
        (
            {"neuron": ("model.block1.conv", 99)},
            r"channel in \[0, 16\) .*got \('model.block1.conv', 99\)",
        ),
    ],
)
def test_configuration_errors_raise_at_setup(tmp_path, kwargs, match):
    model = LitClassifier(num_classes=K)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        fit(tmp_path, [lv.ClassModelLogger(**kwargs)], model=model, epochs=1)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_a_model_with_more_classes_than_the_data_draws_the_classes_the_data_has(tmp_path):
    from tests.conftest import lightning_info

    cb = lv.ClassModelLogger(steps=2, every_n_epochs=1, on_error="raise")
    explicit = lv.ClassModelLogger(classes=[1, 29], steps=2, every_n_epochs=1, tag_prefix="cm2")
    with lightning_info() as messages:
        model = LitClassifier(SmallCNN(num_classes=30), lr=1e-3)  # the data has 5 of them
        fit(tmp_path, [cb, explicit], epochs=1, model=model)
    assert cb._classes == [0, 1, 2, 3, 4]  # never a class the data does not have
    assert explicit._classes == [1, 29]  # an explicit list is kept
    said = [m for m in messages if m.startswith("ClassModelLogger: the model has 30 classes")]
    assert len(said) == 1 and "5 of the 5 classes its probe data has (0, 1, 2, ...)" in said[0]
    images = read_events(str(tmp_path))["images"]
    ((_, width, _, _),) = images["class_model/grid"]
    tile = 64 + 2  # 32-px images shown at 2x, and the padding
    assert width == 2 + 5 * tile  # the 5 classes in a row


def test_at_most_20_classes_evenly_spaced_among_those_the_data_has(tmp_path):
    images = torch.rand(60, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(60) % 30  # 30 of the model's 40 classes
    cb = lv.ClassModelLogger(steps=1, every_n_epochs=1, probe=(images, labels), on_error="raise")
    unlabelled = lv.ClassModelLogger(steps=1, probe=images, tag_prefix="cm2", on_error="raise")
    model = LitClassifier(SmallCNN(num_classes=40), lr=1e-3)
    fit(tmp_path, [cb, unlabelled], epochs=1, model=model)
    expected = [0, 2, 3, 4, 6, 8, 9, 10, 12, 14, 15, 16, 18, 20, 21, 22, 24, 26, 27, 28]
    assert cb._classes == expected == sorted({round(i * 30 / 20) for i in range(20)})
    # without labels nothing tells which classes the data has: 20 of the model's 40
    assert unlabelled._classes == list(range(0, 40, 2))


def test_per_class_figure_keeps_the_20_classes_with_the_most_decisions():
    cb = lv.TextureShapeBias()
    k = 30
    shape = torch.arange(k).repeat_interleave(2)  # 2 cue-conflict images per class
    texture = (shape + 1) % k
    # shape decisions for classes 10-29; classes 0-9 get a third class: no decision
    pred = torch.where(shape < 10, (shape + 2) % k, shape)
    fig = cb._per_class(pred, shape, texture, k)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == [str(c) for c in range(10, 30)]
    assert ax.get_title() == "cue-conflict decisions per shape class (20 of 30: the most decisions)"


def test_scores_with_a_zero_gradient_throughout_are_flagged_flat():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 3))
    with torch.no_grad():
        model[1].weight[1] = 0  # class 1's logit is its bias alone: no gradient to the image
    made = class_model_run(model, None, (3, 8, 8), steps=20)
    assert made["flat"].tolist() == [False, True, False]
    moved = (made["images"] - 0.5).flatten(1).abs().amax(1)
    assert float(moved[1]) < 0.02 < float(moved[0]) and float(moved[2]) > 0.02  # grey start
    images = LF.class_model(model, None, (3, 8, 8), steps=20)
    assert torch.equal(images, made["images"])  # the public function returns the same images
    start = class_model_run(model, None, (3, 8, 8), steps=0)
    assert not bool(start["flat"].any())  # no step taken: nothing to say


class _DeadClass(LitClassifier):
    """Class 2's logit is multiplied by 0: its score never depends on the image."""

    def forward(self, x):
        mask = torch.ones(K, device=x.device)
        mask[2] = 0
        return super().forward(x) * mask


def test_a_class_whose_score_has_no_gradient_is_said_once_by_name(tmp_path):
    """Its class-model image stayed the grey start with no word (a dead unit, a
    saturated head): the user read grey as "the model looks for nothing"."""
    cb = lv.ClassModelLogger(steps=5, every_n_epochs=1, class_names=NAMES, on_error="raise")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(tmp_path, [cb], model=_DeadClass(num_classes=K, lr=1e-2), epochs=2)
    said = [str(w.message) for w in caught if "was zero at every step" in str(w.message)]
    assert len(said) == 1, said  # once in the fit, not at every epoch
    assert "1 of 5 scores (triangle)" in said[0] and "epoch 0" in said[0], said
    assert read_events(str(tmp_path))["images"]["class_model/grid"]  # the grid still written


class _AlwaysPositive(LitClassifier):
    """A binary model (one logit) that calls every image positive: logit 20."""

    def __init__(self):
        super().__init__(SmallCNN(num_classes=1), lr=1e-6)
        with torch.no_grad():
            self.model.fc.weight.zero_()
            self.model.fc.bias.fill_(20.0)

    def training_step(self, batch, batch_idx):
        x, y = batch[0], batch[1]  # the shapes data also carries object masks
        return torch.nn.functional.binary_cross_entropy_with_logits(self(x)[:, 0], (y > 0).float())

    def validation_step(self, batch, batch_idx):
        pass


def test_a_binary_models_captions_show_its_decision_and_probability(tmp_path, monkeypatch):
    """The second line repeated the optimized class ("negative 0.00" under the class-0
    image of a model that calls it positive)."""
    from lightning_viz.callbacks import class_model

    seen = record_captions(monkeypatch, class_model.render, "image_grid")
    cb = lv.ClassModelLogger(
        steps=2, every_n_epochs=1, class_names=["negative", "positive"], on_error="raise"
    )
    fit(tmp_path, [cb], model=_AlwaysPositive(), epochs=1)
    assert seen[-1] == ["negative\npositive 1.00", "positive\npositive 1.00"]


class _NaNOnFirst(LitClassifier):
    """NaN outputs (and gradients) for the first image of an eval-mode batch."""

    def forward(self, x):
        out = super().forward(x)
        if self.training:
            return out
        scale = torch.ones_like(out)
        scale[:1] = float("nan")
        return out * scale


def test_a_blank_tile_is_captioned_nan_not_with_the_prediction_for_grey(tmp_path, monkeypatch):
    """H45: the mid-grey tile of a NaN image was captioned with the model's prediction
    for the grey, as if it were the class's image."""
    from lightning_viz.callbacks import class_model

    seen = record_captions(monkeypatch, class_model.render, "image_grid")
    cb = lv.ClassModelLogger(classes=[0, 1, 2], steps=2, every_n_epochs=1, class_names=NAMES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(tmp_path, [cb], model=_NaNOnFirst(num_classes=K), epochs=1)
    first, *others = seen[-1]
    assert first == "circle\nNaN"
    assert all(c.split("\n")[1] != "NaN" for c in others), others


def test_a_non_finite_class_model_image_is_drawn_mid_grey_and_said_once():
    cb = lv.ClassModelLogger()
    ctx = SimpleNamespace(log=SimpleNamespace(epoch=3))
    images = torch.rand(3, 3, 8, 8)
    images[1, 0, 0, 0] = float("nan")
    with pytest.warns(UserWarning, match="1 of 3 class-model images hold NaN or inf at epoch 3"):
        out, blank = cb._finite(ctx, images)
    assert torch.equal(out[1], torch.full((3, 8, 8), 0.5))
    assert torch.equal(out[[0, 2]], images[[0, 2]])
    assert blank.tolist() == [False, True, False]


def test_multilabel_captions_show_the_sigmoid_of_the_optimized_class(tmp_path, monkeypatch):
    """For a multilabel (or binary) model the caption's number is the probability
    sigmoid(logit) of the class optimized, in [0, 1], not the raw logit."""
    from lightning_viz import render
    from lightning_viz._guard import ModelView
    from tests.conftest import fit, small_datamodule

    seen = []
    real = render.image_grid

    def spy(images, *args, **kwargs):
        seen.append((images.clone(), kwargs.get("captions")))
        return real(images, *args, **kwargs)

    monkeypatch.setattr(render, "image_grid", spy)
    dm = small_datamodule()
    dm.setup("fit")
    x = torch.stack([dm.val_dataset[i][0] for i in range(10)])
    y = torch.nn.functional.one_hot(
        torch.tensor([dm.val_dataset[i][1] for i in range(10)]), 5
    ).float()
    cb = lv.ClassModelLogger(
        steps=3, every_n_epochs=1, task="multilabel", probe=(x, y), on_error="raise"
    )
    _, model = fit(tmp_path, [cb], epochs=1)
    images, caps = seen[-1]
    with torch.no_grad():
        logits = ModelView(model.eval())(images)
    for row, (k, cap) in enumerate(zip(cb._classes, caps, strict=True)):
        shown = float(cap.split("\n")[1].split()[-1])
        assert 0.0 <= shown <= 1.0
        assert shown == pytest.approx(torch.sigmoid(logits[row, k]).item(), abs=0.006)


def test_reshape_reads_the_neuron_layer_of_an_unknown_token_model(tmp_path):
    """``reshape=`` (an import path, as in a YAML config) reaches the setup check and the
    run: channel 12 of 8 token features is refused at setup; feature 5 is drawn."""
    path = "tests.conftest.tokens_to_grid"
    with pytest.raises(ValueError, match=r"channel in \[0, 8\) .*got \('model.block', 12\)"):
        fit(
            tmp_path / "bad",
            [lv.ClassModelLogger(neuron=("model.block", 12), reshape=path, on_error="raise")],
            model=LitClassifier(model=UnknownTokenNet(K)),
            epochs=1,
        )
    cb = lv.ClassModelLogger(
        neuron=("model.block", 5), reshape=path, steps=5, every_n_epochs=1, on_error="raise"
    )
    trainer, model = fit(
        tmp_path / "ok", [cb], model=LitClassifier(model=UnknownTokenNet(K)), epochs=1
    )
    (image,) = read_events(str(tmp_path / "ok"))["images"]["class_model/neuron/model.block/5"]
    assert image[0] == trainer.global_step
    assert decode_png(image[3]).float().std() > 20  # the grey start's is about 2.5 of 255
    assert not has_hooks(model)
