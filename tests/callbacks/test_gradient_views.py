"""FilterLogger, ActivationLogger, SaliencyLogger and GradCAMLogger, trained for real."""

from __future__ import annotations

import pytest
import torch

import lightning_viz as lv
import lightning_viz.functional as LF
from lightning_viz import render
from lightning_viz._guard import ModelView
from lightning_viz.data import LitClassifier
from tests.conftest import (
    decode_png,
    fit,
    gradient_callbacks,
    read_events,
    record_captions,
    small_datamodule,
)

STEPS = [4, 8]  # global_step after epoch 0 and 1 (4 train batches per epoch)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One 2-epoch run with the four gradient-view callbacks (shared by the tests here)."""
    tmp = tmp_path_factory.mktemp("views")
    names = ["circle", "square", "triangle", "star", "cross"]
    callbacks = gradient_callbacks(
        num_samples=5, neuron=("model.block3.conv", 2), class_names=names, on_error="raise"
    )
    trainer, model = fit(tmp, callbacks, epochs=2)
    from tests.conftest import read_events

    return trainer, model, callbacks, read_events(str(tmp))


def test_tags_and_steps_of_every_callback(run):
    _, _, _, ev = run
    images, scalars = ev["images"], ev["scalars"]
    expected_images = [
        "filters/model.block1.conv",
        "activations/model.block1.conv",
        "activations/model.block2.conv",
        "activations/model.block3.conv",
        *(f"saliency/{m}" for m in ("vanilla", "smoothgrad", "integrated_gradients")),
        "saliency/guided_backprop",
        "saliency/deconvnet",
        "saliency/segmentation",
        "saliency/neuron/model.block3.conv/2",
        "gradcam/gradcam",
        "gradcam/gradcam++",
        "gradcam/guided_gradcam",
    ]
    for tag in expected_images:
        assert [e[0] for e in images[tag]] == STEPS, tag  # once per epoch, never in sanity check
    for name in ("FilterLogger", "ActivationLogger", "SaliencyLogger", "GradCAMLogger"):
        steps = [s for s, _ in scalars[f"viz/{name}/seconds"]]
        assert steps == STEPS
        assert all(v > 0 for _, v in scalars[f"viz/{name}/seconds"])
    assert [s for s, _ in scalars["filters/model.block1.conv/norm"]] == STEPS
    assert [s for s, _ in scalars["filters/model.block1.conv/change"]] == STEPS
    assert [s for s, _ in scalars["bias/saliency_in_mask"]] == STEPS


def test_filter_norm_and_change_values(run):
    trainer, model, callbacks, ev = run
    weight = model.model.block1.conv.weight.detach()
    (_, last_norm) = ev["scalars"]["filters/model.block1.conv/norm"][-1]
    assert last_norm == pytest.approx(weight.norm().item(), rel=1e-5)
    (_, first_norm) = ev["scalars"]["filters/model.block1.conv/norm"][0]
    assert first_norm != pytest.approx(last_norm, rel=1e-4)  # the weights moved
    previous = callbacks[0]._previous["model.block1.conv"]
    assert torch.equal(previous, weight.float().cpu())
    (_, change) = ev["scalars"]["filters/model.block1.conv/change"][0]
    assert 0 < change < 1


def test_the_first_filter_change_is_since_the_start_of_the_fit(tmp_path):
    """It was not written at the first run, so an EarlyStopping on it stopped the fit
    after one epoch ("not available"); now every run has it."""
    import pytorch_lightning as pl

    from lightning_viz.data import LitClassifier

    pl.seed_everything(0)  # the weights fit() starts from
    small_datamodule()
    start = LitClassifier(num_classes=5, lr=1e-2).model.block1.conv.weight.detach().clone()
    from pytorch_lightning.callbacks import EarlyStopping

    stop = EarlyStopping(monitor="filters/model.block1.conv/change", mode="min", patience=3)
    _, model = fit(tmp_path, [lv.FilterLogger(on_error="raise"), stop], epochs=1)
    end = model.model.block1.conv.weight.detach()
    ((step, change),) = read_events(str(tmp_path))["scalars"]["filters/model.block1.conv/change"]
    expected = torch.linalg.vector_norm(end - start) / torch.linalg.vector_norm(start)
    assert step == 4 and change == pytest.approx(expected.item(), rel=1e-5) and change > 0


def test_filter_image_shows_the_tiles(run):
    _, _, _, ev = run
    (_, width, height, png) = ev["images"]["filters/model.block1.conv"][-1]
    img = decode_png(png)
    assert img.shape == (height, width, 3)
    # 16 filters of 3x3 in rows of 8, each tile scaled to 48 px: two rows of tiles
    assert width >= 8 * 48 and height >= 2 * 48
    assert img.float().std() > 10  # not a blank picture


def test_filter_image_of_a_deeper_conv_is_one_row_per_filter(tmp_path):
    callbacks = [lv.FilterLogger(layers=["model.block2.conv"], on_error="raise")]
    _, model = fit(tmp_path, callbacks, epochs=1)
    from tests.conftest import read_events

    (_, width, height, png) = read_events(str(tmp_path))["images"]["filters/model.block2.conv"][-1]
    # (32, 16, 3, 3): 64 tiles hold 4 whole filters of 16 input channels; 3x3 shown 16x
    weight = model.model.block2.conv.weight.detach().float()
    tiles = render.filter_tiles(weight, max_filters=64).view(4, 16, 1, 3, 3)
    expected = render.rows_grid(
        list(tiles),
        captions=[f"in {i}" for i in range(16)],
        row_labels=[f"filter {o} of 32" for o in range(4)],  # 28 left out: said
        scale=16,
    )
    assert torch.equal(decode_png(png).permute(2, 0, 1), expected)
    label_w = width - (2 + 16 * 50)
    assert 0 < label_w <= 120 and width <= 1000  # one block: 16 tiles of 48 px and the labels
    assert height > 4 * 50


def test_saliency_in_mask_matches_the_functional_method(run):
    trainer, model, callbacks, ev = run
    saliency_cb = callbacks[2]
    probe = saliency_cb._probe
    view = ModelView(model.eval())
    with torch.no_grad():
        predicted = view(probe.images).argmax(1)
    maps = LF.saliency(view, probe.images, predicted)
    expected = LF.saliency_in_mask(maps, probe.masks).mean().item()
    (_, logged) = ev["scalars"]["bias/saliency_in_mask"][-1]
    assert logged == pytest.approx(expected, rel=1e-4)
    assert trainer.callback_metrics["bias/saliency_in_mask"].item() == pytest.approx(logged)


def test_probe_is_class_balanced_and_fixed(run):
    _, _, callbacks, _ = run
    probe = callbacks[2]._probe
    assert sorted(probe.labels.tolist()) == [0, 1, 2, 3, 4]
    assert probe.masks is not None and probe.masks.dtype == torch.bool
    dm = small_datamodule()
    dm.setup("fit")
    for pos, idx in enumerate(probe.indices):
        image, label, mask = dm.val_dataset[idx]
        assert torch.equal(probe.images[pos], image)
        assert int(probe.labels[pos]) == int(label)


def test_gradcam_image_rows_show_the_probe(run):
    _, _, callbacks, ev = run
    (_, width, height, png) = ev["images"]["gradcam/gradcam"][-1]
    img = decode_png(png)
    assert img.shape == (height, width, 3)
    # 5 columns of 64-px tiles (32 px scaled by 2) and two rows (image, overlay)
    assert width >= 5 * 64 and height >= 2 * 64
    # the overlay row differs from the image row (the CAM is drawn on it)
    top = img[2 : 2 + 64].float()
    bottom = img[height // 2 : height // 2 + 64].float()
    assert (top - bottom).abs().mean() > 5


def test_default_cam_layer_is_the_last_spatial_conv(run):
    _, _, callbacks, _ = run
    assert callbacks[3]._layer_name == "model.block3.conv"


def test_bias_signal_background_shortcut_lowers_saliency_in_mask(tmp_path):
    """A model that can read the class off the background looks less at the object."""
    values = {}
    for corr in (0.0, 1.0):
        dm = small_datamodule(train_size=640, val_size=64, background_correlation=corr)
        cb = lv.SaliencyLogger(methods=("vanilla",), num_samples=32, on_error="raise")
        trainer, _ = fit(
            tmp_path / str(corr), [cb], epochs=2, datamodule=dm, limit_train_batches=20
        )
        values[corr] = trainer.callback_metrics["bias/saliency_in_mask"].item()
    assert values[1.0] < values[0.0] - 0.2, values


class _SqueezeExcite(torch.nn.Module):
    """Channel gates from a 1x1 conv on the pooled features (its output is 1x1)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.gate = torch.nn.Conv2d(c, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.gate(x.mean((2, 3), keepdim=True)))


class _WithGatesAndA1x1Stage(torch.nn.Module):
    """Convs in registration order: stem (32x32), down (16x16), se.gate (1x1), last (1x1)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.down = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.se = _SqueezeExcite(6)
        self.last = torch.nn.Conv2d(6, 8, 16)  # the whole 16x16 map -> 1x1
        self.fc = torch.nn.Linear(8, 5)

    def forward(self, x):
        x = self.se(torch.relu(self.down(torch.relu(self.stem(x)))))
        return self.fc(torch.flatten(torch.relu(self.last(x)), 1))


def test_default_feature_map_layers_skip_convs_with_1x1_output(tmp_path):
    from lightning_viz.data import LitClassifier

    cb = lv.ActivationLogger(num_samples=2, max_channels=4, on_error="raise")
    fit(tmp_path, [cb], epochs=1, model=LitClassifier(_WithGatesAndA1x1Stage(), lr=1e-3))
    assert cb._chosen == ["model.stem", "model.down"]  # not model.se.gate, not model.last
    images = read_events(str(tmp_path))["images"]
    assert sorted(t for t in images if t.startswith("activations/")) == [
        "activations/model.down",
        "activations/model.stem",
    ]


def test_long_class_names_are_cut_in_captions_so_both_classes_show():
    """ImageNet-style names ("n01440764 tench, Tinca tinca") wrapped the true class over
    a 64-px tile's caption lines and clipped the predicted class away."""
    import torch

    import lightning_viz as lv
    from lightning_viz._runtime.context import CAPTION_NAME

    names = ["n01440764 tench, Tinca tinca", "n01443537 goldfish, Carassius auratus", "cat"]
    cb = lv.SaliencyLogger(class_names=names)
    # without the WordNet id (H49: it took a caption line, and the name was cut away)
    assert cb.class_name(0) == "tench, Tinca tinca" and cb.class_name(1) == "goldfish, Carass.."
    assert len(cb.class_name(1)) == CAPTION_NAME
    assert cb.class_name(2) == "cat" and cb.class_name(7) == "7"
    assert cb.label_name(torch.tensor([1.0, 0.0, 1.0])) == "tench, Tinca tinca+cat"
    same = lv.SaliencyLogger(class_names=["n02012849 crane", "n03126707 crane", "n01440764"])
    assert [same.class_name(i) for i in range(3)] == ["crane #0", "crane #1", "n01440764"]
    # names whose cuts would read the same keep their start and end (were both "Common l..")
    alike = lv.SaliencyLogger(class_names=["Common long prefix alpha", "Common long prefix beta"])
    assert [alike.class_name(i) for i in (0, 1)] == ["Common l..ix alpha", "Common l..fix beta"]
    middle = lv.SaliencyLogger(
        class_names=["x", "Common long prefix A, and tail", "Common long prefix B, and tail"]
    )
    assert [middle.class_name(i) for i in (1, 2)] == ["Common long p.. #1", "Common long p.. #2"]


def test_filter_image_of_a_conv_with_many_inputs_shows_eight_filters_and_says_so():
    """A conv with 512 inputs showed one filter's first 64 inputs, wrapped into four
    blocks all labelled "filter 0": it read as four filters, and nothing said what was left out."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(512, 32, 3)
    image = lv.FilterLogger(layers=["conv"])._image(conv, conv.weight, (3, 32, 32))
    tiles = render.filter_tiles(conv.weight[:8, :8].detach(), per_input_channel=True)
    expected = render.rows_grid(
        list(tiles.view(8, 8, 1, 3, 3)),
        captions=[f"in {i}" for i in range(8)],
        row_labels=[f"filter {o} of 32 (in 0-7 of 512)" for o in range(8)],
        scale=16,
    )
    assert torch.equal(image, expected)


def test_activation_captions_say_how_many_channels_are_left_out(tmp_path, monkeypatch):
    """A 512-channel layer showed channels 0-31 with no word that 480 were left out."""
    seen = record_captions(monkeypatch, render, "feature_map_grid")
    cb = lv.ActivationLogger(
        layers=["model.block1.conv", "model.block2.conv"], max_channels=8, on_error="raise"
    )
    fit(tmp_path, [cb], epochs=1)
    notes = [{c.split("\n")[1] for c in caps} for caps in seen]  # per image: one note
    assert notes == [{"ch 0-7 of 16"}, {"ch 0-7 of 32"}]  # block1, block2 (16 and 32 channels)


def test_filter_norm_and_change_are_charts_of_their_own():
    """On one axis a norm of 2.3 made a change of 0.05 a flat line at the bottom."""
    cb = lv.FilterLogger()
    cb._chosen = ["model.block1.conv"]
    assert cb.layout() == {
        "filters": {
            "model.block1.conv: weight norm": ["filters/model.block1.conv/norm"],
            "model.block1.conv: relative change": ["filters/model.block1.conv/change"],
        }
    }


def test_nan_activations_of_one_probe_image_are_drawn_blank(tmp_path):
    """H45: the other map views draw such images blank since eec0f34, but the feature-map
    view failed its render and turned itself off for the rest of the fit."""
    import warnings

    from lightning_viz.data import LitClassifier

    torch.manual_seed(0)
    model = LitClassifier(num_classes=5)

    def overflow_first(module, inputs, out):  # an overflow on the first probe image
        if module.training:
            return out
        out = out.clone()
        out[:1] = float("nan")
        return out

    model.model.block3.conv.register_forward_hook(overflow_first)
    cb = lv.ActivationLogger(layers=["model.block1.conv", "model.block3.conv"], num_samples=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(tmp_path, [cb], model=model, epochs=2)
    said = [str(w.message) for w in caught]
    assert cb._enabled, [m for m in said if "turns itself off" in m]
    blank = [m for m in said if "give NaN or inf in 'model.block3.conv'" in m]
    assert len(blank) == 1 and "1 of 2 probe images" in blank[0], said
    images = read_events(str(tmp_path))["images"]
    assert len(images["activations/model.block3.conv"]) == 2  # both epochs


class HalfBlind(LitClassifier):
    """The class score reaches the input only for the images brighter than the batch's
    median: the others get an all-zero saliency map."""

    def forward(self, x):
        brightness = x.flatten(1).mean(1)
        keep = (brightness > brightness.median()).to(x.dtype)
        return self.model(x) * keep[:, None]


def test_saliency_in_mask_leaves_out_the_all_zero_maps(tmp_path):
    """An image whose map is all zero looks nowhere: it is not counted as "0 % on the
    object" in bias/saliency_in_mask (the mean is over the images whose map looks)."""
    cb = lv.SaliencyLogger(methods=("vanilla",), num_samples=5, quality=(), on_error="raise")
    trainer, model = fit(tmp_path, [cb], epochs=1, model=HalfBlind(num_classes=5, lr=1e-2))
    probe = cb._probe
    view = ModelView(model.eval())
    with torch.no_grad():
        predicted = view(probe.images).argmax(1)
    maps = LF.saliency(view, probe.images, predicted)
    looks = maps.flatten(1).amax(1) > 0
    assert 0 < int(looks.sum()) < len(looks)  # some maps are all zero, some are not
    expected = LF.saliency_in_mask(maps, probe.masks)[looks].mean().item()
    (_, logged) = read_events(str(tmp_path))["scalars"]["bias/saliency_in_mask"][-1]
    assert logged == pytest.approx(expected, rel=1e-4)


def test_the_segmentation_row_shows_the_pixels_above_mask_quantile(tmp_path):
    """mask_quantile=0.9 shows the top 10 % of each map white, 0.2 the top 80 %: the
    second picture is the brighter one (the rows are the same but for that)."""
    cbs = [
        lv.SaliencyLogger(
            methods=("vanilla",), num_samples=5, quality=(), mask_quantile=q, tag_prefix=p
        )
        for q, p in ((0.9, "top10"), (0.2, "top80"))
    ]
    fit(tmp_path, cbs, epochs=1)
    images = read_events(str(tmp_path))["images"]
    top10 = decode_png(images["top10/segmentation"][-1][3]).float()
    top80 = decode_png(images["top80/segmentation"][-1][3]).float()
    assert top10.shape == top80.shape
    white10 = (top10.min(dim=-1).values > 250).float().mean()
    white80 = (top80.min(dim=-1).values > 250).float().mean()
    assert white80 > white10 + 0.1


def test_reduce_and_smoothgrad_samples_reach_every_method(tmp_path):
    """``reduce="sum"`` changes the maps of every gradient method (not only some), and
    ``smoothgrad_samples`` the SmoothGrad maps: two callbacks differing only there
    write different pictures."""
    methods = ("vanilla", "smoothgrad", "integrated_gradients", "guided_backprop")
    common = dict(methods=methods, num_samples=3, quality=(), ig_steps=4)
    cbs = [
        lv.SaliencyLogger(reduce="max", smoothgrad_samples=4, tag_prefix="a", **common),
        lv.SaliencyLogger(reduce="sum", smoothgrad_samples=4, tag_prefix="b", **common),
        lv.SaliencyLogger(reduce="max", smoothgrad_samples=1, tag_prefix="c", **common),
    ]
    fit(tmp_path, cbs, epochs=1)
    images = read_events(str(tmp_path))["images"]
    for method in methods:
        assert images[f"a/{method}"][-1][3] != images[f"b/{method}"][-1][3], method
    assert images["a/smoothgrad"][-1][3] != images["c/smoothgrad"][-1][3]
    assert images["a/vanilla"][-1][3] == images["c/vanilla"][-1][3]  # same settings there


def _gradcam_grid(model, cb, method):
    """The picture GradCAMLogger should write for ``method``, built from the functional
    API: the probe row and the map row (overlaid for Grad-CAM, colorized for guided)."""
    from lightning_viz import render
    from lightning_viz._runtime.context import CAPTION_LABEL
    from lightning_viz.callbacks.gradcam import METHODS
    from lightning_viz.functional._grad import resolve_layer

    probe = cb._probe
    view = ModelView(model.eval())
    with torch.no_grad():
        predicted = view(probe.images).argmax(1)
    _, layer = resolve_layer(model, cb._layer_name)
    maps = METHODS[method](view, probe.images, predicted, layer=layer)
    norm = render.normalize_maps(maps.float())
    images = probe.images.float()
    second = render.colorize(norm) if method == "guided_gradcam" else render.overlay(images, norm)
    caps = [f"{int(t)} / {int(p)}" for t, p in zip(probe.labels, predicted, strict=True)]
    return render.rows_grid(
        [images, second],
        captions=caps,
        row_labels=[CAPTION_LABEL, f"{method} @ {cb._layer_name}"],
        scale=render.display_scale(images),
    )


def test_gradcam_pictures_are_the_overlay_and_guided_gradcam_the_colorized_map(tmp_path):
    cb = lv.GradCAMLogger(methods=("gradcam", "guided_gradcam"), num_samples=3, quality=())
    _, model = fit(tmp_path, [cb], epochs=1)
    images = read_events(str(tmp_path))["images"]
    for method in ("gradcam", "guided_gradcam"):
        logged = decode_png(images[f"gradcam/{method}"][-1][3]).float()
        expected = _gradcam_grid(model, cb, method).permute(1, 2, 0).float()
        assert logged.shape == expected.shape, method
        assert (logged - expected).abs().mean() < 1.0, method


def test_gradcam_target_names_the_class_explained(tmp_path):
    """``target=<index>`` explains that class for every image: two callbacks with
    different class indices draw different maps (neither is the predicted class's)."""
    cbs = [
        lv.GradCAMLogger(
            methods=("gradcam",), num_samples=3, quality=(), target=k, tag_prefix=f"k{k}"
        )
        for k in (0, 1)
    ]
    fit(tmp_path, cbs, epochs=1)
    images = read_events(str(tmp_path))["images"]
    assert images["k0/gradcam"][-1][3] != images["k1/gradcam"][-1][3]


def test_activation_captions_say_nothing_when_every_channel_is_shown(tmp_path, monkeypatch):
    """max_channels equal to the layer's channels: nothing is left out, no "ch 0-15 of 16"."""
    seen = record_captions(monkeypatch, render, "feature_map_grid")
    cb = lv.ActivationLogger(layers=["model.block1.conv"], max_channels=16, on_error="raise")
    fit(tmp_path, [cb], epochs=1)
    assert seen and all("\n" not in c for caps in seen for c in caps), seen


def test_captions_are_true_then_predicted_class(tmp_path, monkeypatch):
    """The probe row's captions read "<true> / <predicted>" (CAPTION_LABEL), in that order."""
    names = ["circle", "square", "triangle", "star", "cross"]
    seen = record_captions(monkeypatch, render, "rows_grid")
    cb = lv.SaliencyLogger(methods=("vanilla",), num_samples=5, quality=(), class_names=names)
    _, model = fit(tmp_path, [cb], epochs=1)
    with torch.no_grad():
        predicted = ModelView(model.eval())(cb._probe.images).argmax(1)
    expected = [
        f"{names[int(t)]} / {names[int(p)]}"
        for t, p in zip(cb._probe.labels, predicted, strict=True)
    ]
    assert seen and seen[-1] == expected
    assert any(t != p for t, p in zip(cb._probe.labels, predicted, strict=True))  # order shows
