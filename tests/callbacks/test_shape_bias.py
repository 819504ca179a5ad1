"""TextureShapeBias: the controlled texture-vs-shape experiment, cache, checks, guarantees."""

from __future__ import annotations

import glob
import os

import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

import lightning_viz as lv
import lightning_viz.functional as LF
from lightning_viz._hooks import has_hooks
from lightning_viz.data import LitClassifier
from lightning_viz.data.shapes import draw_shapes
from lightning_viz.monitoring.store import load_summary
from tests.conftest import (
    assert_observing_changes_nothing,
    fit,
    inject_failure,
    read_events,
    small_datamodule,
)

K = 5
EPOCHS = 10  # the runs happen at epochs 4 and 9 (every_n_epochs=5)


def drawn_cue_conflict(n: int = 60) -> TensorDataset:
    """Directly drawn cue-conflict shapes: shape a with the texture (and background) of b != a."""
    i = torch.arange(n)
    shapes = i % K
    textures = (shapes + 1 + (i // K) % (K - 1)) % K  # every ordered pair (a, b != a)
    images, _ = draw_shapes(shapes, textures, textures, seed=7)
    assert bool((shapes != textures).all())
    return TensorDataset(images, shapes, textures)


def _bias_callbacks():
    return [
        lv.TextureShapeBias(  # made at the first run: the runs are at epochs 4 and 9
            num_images=80,
            style_steps=40,
            every_n_epochs=5,
            background=False,
            on_error="raise",
            seed=0,
        ),
        lv.TextureShapeBias(
            cue_conflict=drawn_cue_conflict(),
            every_n_epochs=5,
            num_samples=40,
            tag_prefix="bias_drawn",
            on_error="raise",
        ),
    ]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """A small CNN trained with a texture shortcut (correlation 1) and without (0)."""
    out = {}
    for tc in (1.0, 0.0):
        tmp = tmp_path_factory.mktemp(f"tc{tc}")
        callbacks = _bias_callbacks()
        dm = small_datamodule(train_size=1000, val_size=200, batch_size=32, texture_correlation=tc)
        torch.manual_seed(0)  # the same initial weights whatever ran before
        trainer, model = fit(
            tmp,
            callbacks,
            epochs=EPOCHS,
            datamodule=dm,
            model=LitClassifier(num_classes=K, lr=3e-3),
            limit_train_batches=None,
            limit_val_batches=None,
        )
        out[tc] = (trainer, model, callbacks, read_events(str(tmp)), tmp)
    return out


def _last(ev, tag):
    return ev["scalars"][tag][-1][1]


def test_texture_shortcut_gives_a_clearly_lower_shape_bias(experiment):
    for prefix in ("bias", "bias_drawn"):  # generated and directly drawn cue conflicts
        texture_model = _last(experiment[1.0][3], f"{prefix}/shape_bias")
        shape_model = _last(experiment[0.0][3], f"{prefix}/shape_bias")
        print(f"{prefix}: texture-trained {texture_model:.3f}, shape-trained {shape_model:.3f}")
        assert shape_model - texture_model >= 0.3, (prefix, texture_model, shape_model)
    # the texture-trained model decides by texture on the drawn stimuli
    assert _last(experiment[1.0][3], "bias_drawn/texture_acc") > 0.7
    assert _last(experiment[0.0][3], "bias_drawn/shape_acc") > 0.5


def test_tags_steps_and_images(experiment):
    trainer, _, _, ev, _ = experiment[1.0]
    steps = [s for s, _ in ev["scalars"]["bias/shape_bias"]]
    assert len(steps) == 2 and steps[1] == trainer.global_step  # epochs 4 and 9 only
    for prefix in ("bias", "bias_drawn"):
        for name in (
            "shape_bias",
            "shape_acc",
            "texture_acc",
            "shape_only_acc",
            "texture_only_acc",
            "regression",
        ):
            assert [s for s, _ in ev["scalars"][f"{prefix}/{name}"]] == steps, (prefix, name)
            assert f"{prefix}/{name}" in trainer.callback_metrics
        for name in ("per_class", "cue_conflict"):
            assert [e[0] for e in ev["images"][f"{prefix}/{name}"]] == steps
    assert len(ev["scalars"]["viz/TextureShapeBias/seconds"]) == 2
    assert len(ev["scalars"]["viz/TextureShapeBias/bias_drawn/seconds"]) == 2


def test_logged_values_equal_the_functional_method_on_the_cached_images(experiment):
    trainer, model, callbacks, ev, tmp = experiment[1.0]
    cb = callbacks[0]
    files = glob.glob(os.path.join(str(tmp), "**", "cue_conflict_*.pt"), recursive=True)
    assert files == [cb.cache_path]  # written once, in the log dir
    data = torch.load(cb.cache_path, weights_only=True)
    images, s, t = data["images"], data["shape_labels"], data["texture_labels"]
    assert images.shape == (80, 3, 32, 32) and bool((s != t).all())
    # class pairs balanced: 80 images over the 20 ordered pairs, 4 each
    pairs = torch.bincount(s * K + t, minlength=K * K)
    assert sorted(set(pairs.tolist())) == [0, 4]
    model.eval()
    with torch.no_grad():
        pred = pred_cc = model(images).argmax(1)
    expected = LF.shape_bias(pred, s, t)
    for name in ("shape_bias", "shape_acc", "texture_acc"):
        assert _last(ev, f"bias/{name}") == pytest.approx(expected[name], abs=1e-6)
    # drawn stimuli, by hand: counts of shape / texture decisions
    ds = drawn_cue_conflict()
    with torch.no_grad():
        pred = model(ds.tensors[0]).argmax(1)
    shape_dec = int((pred == ds.tensors[1]).sum())
    tex_dec = int((pred == ds.tensors[2]).sum())
    assert _last(ev, "bias_drawn/shape_bias") == pytest.approx(
        shape_dec / (shape_dec + tex_dec), abs=1e-6
    )
    # the control accuracies: silhouettes and shuffled tiles of the probe images
    shape_img, tex_img, y = cb._controls
    assert bool((shape_img[:, 0] == 1 - cb._probe.masks[:, 0].float()).all())
    with torch.no_grad():
        acc_s = (model(shape_img).argmax(1) == y).float().mean().item()
        acc_t = (model(tex_img).argmax(1) == y).float().mean().item()
    assert _last(ev, "bias/shape_only_acc") == pytest.approx(acc_s, abs=1e-6)
    assert _last(ev, "bias/texture_only_acc") == pytest.approx(acc_t, abs=1e-6)
    assert set(cb.references) == {"bias/shape_bias", "bias/shape_acc"}
    # the summary keeps each image's decision: 1 shape, 0 texture, "-" neither
    record = load_summary(trainer.logger.log_dir)["bias/shape_bias"].latest()
    expected_outcomes = "".join(
        "1" if p == a else "0" if p == b else "-" for p, a, b in zip(pred_cc, s, t, strict=True)
    )
    assert record.outcomes == expected_outcomes and len(expected_outcomes) == 80


def test_cache_is_reused_on_resume(tmp_path, monkeypatch):
    def make():
        return lv.TextureShapeBias(
            num_images=10, num_samples=10, style_steps=2, background=False, on_error="raise"
        )

    fit(tmp_path, [make()], epochs=1)
    files = glob.glob(os.path.join(str(tmp_path), "**", "cue_conflict_*.pt"), recursive=True)
    assert len(files) == 1
    mtime = os.path.getmtime(files[0])
    first = read_events(str(tmp_path))["scalars"]["bias/shape_bias"]

    def no_generation(*args, **kwargs):
        raise AssertionError("cue-conflict images generated again")

    monkeypatch.setattr(LF, "cue_conflict", no_generation)
    cb = make()
    fit(tmp_path, [cb], epochs=1)  # same log dir: the cache is loaded
    assert cb.cache_path == files[0] and os.path.getmtime(files[0]) == mtime
    again = read_events(str(tmp_path))["scalars"]["bias/shape_bias"]
    assert len(again) == 2 and again[1][1] == pytest.approx(first[0][1])
    # other settings -> another cache key -> generation is needed (and fails here)
    with pytest.raises(AssertionError, match="generated again"):
        fit(
            tmp_path,
            [lv.TextureShapeBias(num_images=10, num_samples=10, style_steps=3, on_error="raise")],
            epochs=1,
        )


def test_a_resume_into_a_new_log_version_reads_the_set_its_checkpoint_made(tmp_path, monkeypatch):
    """Lightning's default resume opens a new log version, where the cache was not: the
    set was made again (minutes at 224 px) and the bias values came late again."""
    from pytorch_lightning.loggers import TensorBoardLogger

    def make():
        return lv.TextureShapeBias(
            num_images=10, num_samples=10, style_steps=2, background=False, on_error="raise"
        )

    fit(tmp_path, [make()], epochs=1, enable_checkpointing=True)
    (ckpt,) = glob.glob(str(tmp_path / "run" / "version_0" / "**" / "*.ckpt"), recursive=True)
    (made,) = glob.glob(
        str(tmp_path / "run" / "version_0" / "**" / "cue_conflict_*.pt"), recursive=True
    )

    def no_generation(*args, **kwargs):
        raise AssertionError("cue-conflict images generated again")

    monkeypatch.setattr(LF, "cue_conflict", no_generation)
    cb = make()
    logger = TensorBoardLogger(str(tmp_path), name="run", version=1)
    fit(tmp_path, [cb], epochs=2, ckpt_path=ckpt, logger=logger)
    assert cb._earlier_cache == made and "version_1" in cb.cache_path
    assert os.path.isfile(cb.cache_path)  # kept where this run's checkpoint points (a 3rd run)
    scalars = read_events(str(tmp_path / "run" / "version_1"))["scalars"]
    assert len(scalars["bias/shape_bias"]) == 1  # epoch 1, from the set of version_0


def test_observing_does_not_change_the_experiment(tmp_path):
    cbs = [  # generated in the background (while training runs) and at the first run
        lv.TextureShapeBias(num_images=10, num_samples=10, style_steps=3, on_error="raise"),
        lv.TextureShapeBias(
            num_images=10,
            num_samples=10,
            style_steps=3,
            background=False,
            tag_prefix="fg",
            on_error="raise",
        ),
        lv.TextureShapeBias(
            cue_conflict=drawn_cue_conflict(10), num_samples=10, tag_prefix="d", on_error="raise"
        ),
    ]
    trainer, _ = assert_observing_changes_nothing(tmp_path, cbs, epochs=2)
    assert "fg/shape_bias" in trainer.callback_metrics
    assert "d/shape_bias" in trainer.callback_metrics


def test_failure_inside_a_run_warns_and_leaves_the_model_clean(tmp_path, monkeypatch):
    _, arm = inject_failure(monkeypatch, "injected failure")
    cb = lv.TextureShapeBias(cue_conflict=drawn_cue_conflict(10), num_samples=10, on_error="warn")
    with pytest.warns(UserWarning, match="TextureShapeBias failed at epoch 0.*injected failure"):
        _, model = fit(tmp_path, [arm, cb], epochs=2)
    assert cb._enabled is False
    assert not has_hooks(model)
    assert all(m.training for m in model.modules())
    assert all(p.requires_grad for p in model.parameters())


# ------------------------------------------------------------------ pure logic
@pytest.mark.parametrize(
    ("mapping", "said"), [("imagenet16", "'imagenet16', for 1000"), ([0, 1, 2], "a list of 3")]
)
def test_an_output_mapping_for_another_number_of_classes_is_said_in_a_line(tmp_path, mapping, said):
    """H64: "imagenet16" on a model that is not 1000-way printed the 1000 mapped values
    (4,000 characters) and never the name given."""
    cb = lv.TextureShapeBias(num_images=4, output_mapping=mapping)
    with pytest.raises(ValueError) as caught:
        fit(tmp_path, [cb], epochs=1)
    assert str(caught.value) == (
        "TextureShapeBias: `output_mapping` must be one dataset class for each of the model's "
        f"5 classes (-1: none), got <{said} classes>"
    )


def test_output_mapping_takes_the_max_logit_per_dataset_class():
    cb = lv.TextureShapeBias(output_mapping=[1, 0, 1, -1])
    logits = torch.tensor([[1.0, 5.0, 2.0, 9.0], [3.0, -1.0, 0.5, 0.0]])
    assert torch.equal(cb._map_logits(logits), torch.tensor([[5.0, 2.0], [-1.0, 3.0]]))
    assert cb._map_labels(torch.tensor([0, 1, 2, 3])).tolist() == [1, 0, 1, -1]


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_images": 0}, ValueError, "num_images.*got 0"),
        ({"num_images": 2.5}, TypeError, "num_images.*2.5"),
        ({"tolerance": -1}, ValueError, "tolerance.*-1"),
        ({"tolerance": "x"}, TypeError, "tolerance.*'x'"),
        ({"style_steps": -1}, ValueError, "style_steps.*-1"),
        ({"style_steps": 1.0}, TypeError, "style_steps.*1.0"),
        ({"content_weight": -0.5}, ValueError, "content_weight.*-0.5"),
        ({"cue_conflict": [1, 2]}, TypeError, r"cue_conflict.*\[1, 2\]"),
        ({"output_mapping": "abc"}, ValueError, "output_mapping.*'imagenet16'.*'abc'"),
        ({"style_size": 4}, ValueError, "style_size.*4"),
        ({"refine_steps": -1}, ValueError, "refine_steps.*-1"),
        ({"background": 1}, TypeError, "background.*1"),
        (
            {"cue_conflict": "/no/such/folder"},
            ValueError,
            "`cue_conflict` must be .*/no/such/folder",
        ),
        ({"output_mapping": [0, 1.5]}, TypeError, "output_mapping.*1.5"),
        ({"output_mapping": [-1, -1]}, ValueError, "at least one"),
        ({"output_mapping": [0, -2]}, ValueError, r"ints >= -1, got \[0, -2\]"),
    ],
)
def test_bad_arguments_raise_at_construction(kwargs, error, match):
    with pytest.raises(error, match=match):
        lv.TextureShapeBias(**kwargs)


class _Pairs(Dataset):
    def __getitem__(self, i):
        return torch.rand(3, 32, 32), 0

    def __len__(self):
        return 4


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {
                "cue_conflict": TensorDataset(
                    torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 9]), torch.tensor([1, 0, 0, 0])
                )
            },
            r"`cue_conflict shape labels` must be in \[0, 5\).*\[0, 9\]",
        ),
        (
            {
                "cue_conflict": TensorDataset(
                    torch.rand(2, 3, 32, 32), torch.tensor([0, 1]), torch.tensor([1, 5])
                )
            },
            r"`cue_conflict texture labels` must be in \[0, 5\)",
        ),
        (
            {
                "cue_conflict": TensorDataset(
                    torch.rand(2, 3, 16, 16), torch.tensor([0, 1]), torch.tensor([1, 0])
                )
            },
            r"validation images' shape \(3, 32, 32\), got <images of shape \(3, 16, 16\)>",
        ),
        (
            {
                "cue_conflict": TensorDataset(
                    torch.rand(2, 3, 32, 32), torch.tensor([1, 1]), torch.tensor([1, 1])
                )
            },
            "images whose shape and texture labels differ, got <no such image>",
        ),
        ({"cue_conflict": _Pairs()}, r"a Dataset of \(image, shape_label, texture_label\)"),
        (
            {"output_mapping": [0, 1, 2]},
            r"each of the model's 5 classes.*got <a list of 3 classes>",
        ),
        (
            {
                "cue_conflict": TensorDataset(
                    torch.rand(2, 3, 32, 32), torch.tensor([0, 1]), torch.tensor([1, 2])
                ),
                "output_mapping": [0, 1, 1, 0, 0],
            },
            r"texture labels` must be in \[0, 2\).*after output_mapping",
        ),
        ({"probe": torch.rand(4, 3, 32, 32), "on_error": "raise"}, "needs labels"),
    ],
)
def test_configuration_errors_raise_at_setup_before_training(tmp_path, kwargs, match):
    model = LitClassifier(num_classes=K)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        fit(tmp_path, [lv.TextureShapeBias(**kwargs)], model=model, epochs=1)
    for k, v in model.state_dict().items():  # no training step happened
        assert torch.equal(v, before[k]), k


def test_fewer_pairs_than_num_images_makes_fewer_images_with_a_warning(tmp_path):
    cb = lv.TextureShapeBias(
        num_images=500, num_samples=10, style_steps=1, background=False, on_error="raise"
    )
    with pytest.warns(UserWarning, match=r"allow only 80 distinct cue-conflict pairs.*makes 80"):
        fit(tmp_path, [cb], epochs=1)
    assert cb._cc[0].shape[0] == 80  # 10 probe images of 5 classes: 2 * 2 * 20 ordered pairs


def test_one_class_in_the_validation_data_turns_it_off_and_training_goes_on(tmp_path):
    from torch.utils.data import DataLoader

    dm = small_datamodule()
    dm.setup("fit")
    one_class = [i for i in range(len(dm.val_dataset)) if int(dm.val_dataset[i][1]) == 0]
    val = torch.utils.data.Subset(dm.val_dataset, one_class)
    dm.val_dataloader = lambda: DataLoader(val, batch_size=32)
    bias = lv.TextureShapeBias(num_images=10, num_samples=10, style_steps=1)
    saliency = lv.SaliencyLogger(methods=("vanilla",), num_samples=2, on_error="raise")
    with pytest.warns(UserWarning, match=r"TextureShapeBias cannot run .*at least 2 classes"):
        trainer, _ = fit(tmp_path, [bias, saliency], epochs=2, datamodule=dm)
    assert trainer.current_epoch == 2 and bias._enabled is False
    events = read_events(str(tmp_path))
    assert [s for s, _ in events["scalars"]["viz/SaliencyLogger/seconds"]] == [4, 8]
    assert "bias/shape_bias" not in events["scalars"]
    with pytest.raises(ValueError, match="at least 2 classes"):
        fit(
            tmp_path / "raise",
            [lv.TextureShapeBias(num_images=10, on_error="raise")],
            epochs=1,
            datamodule=dm,
        )


def test_the_generation_progress_bar_ends_its_line_in_a_log_file(tmp_path, capfd):
    """Outside a terminal (CI logs, nohup) the bar was cleared with a carriage return
    and no line break, so Lightning's next line landed on the bar's line."""
    cb = lv.TextureShapeBias(
        num_images=4, num_samples=4, style_steps=1, background=False, on_error="raise"
    )
    capfd.readouterr()
    fit(tmp_path, [cb], epochs=1, enable_progress_bar=True)
    err = capfd.readouterr().err
    assert "cue-conflict images" in err
    tail = err[err.rindex("cue-conflict images") :]
    assert "100%" in tail.split("\n")[0] and "\n" in tail


def test_the_per_class_chart_says_when_no_decision_was_by_shape_or_texture():
    """Before any such decision the chart was empty axes, read as "all zero"."""
    cb = lv.TextureShapeBias(class_names=["a", "b", "c"])
    s, t = torch.tensor([0, 1, 2, 0]), torch.tensor([1, 2, 0, 2])
    other = torch.tensor([2, 0, 1, 1])  # every prediction is neither shape nor texture
    title = cb._per_class(other, s, t, 3).axes[0].get_title().replace("\n", " ")  # wrapped
    assert title.endswith("(none by shape or texture yet: no shape bias)")
    assert "yet" not in cb._per_class(s, s, t, 3).axes[0].get_title()  # all by shape


def test_no_generation_progress_bar_when_the_trainers_bar_is_off(tmp_path, capfd):
    """H55: with ``TQDMProgressBar(refresh_rate=0)`` (Lightning's way to silence its bar)
    the cue-conflict bar still printed; only ``enable_progress_bar=False`` hid it."""
    from pytorch_lightning.callbacks import TQDMProgressBar

    cb = lv.TextureShapeBias(
        num_images=4, num_samples=4, style_steps=1, background=False, on_error="raise"
    )
    capfd.readouterr()
    fit(tmp_path, [cb, TQDMProgressBar(refresh_rate=0)], epochs=1, enable_progress_bar=True)
    assert "cue-conflict images" not in capfd.readouterr().err
