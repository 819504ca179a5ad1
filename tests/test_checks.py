"""Tests for the checks in lightning_viz._checks: TypeError for a type, ValueError for a value,
and one message form, "`name` must be <allowed>, got <value>"."""

from __future__ import annotations

from collections import UserList

import pytest
import torch

from lightning_viz._checks import (
    check_float,
    check_images,
    check_labels,
    check_maps,
    check_neuron,
    check_tensor,
    check_unit_range,
)
from lightning_viz.functional.embedding import check_features
from lightning_viz.render.figures import check_numbers, check_series

NAN = float("nan")


# --------------------------------------------------------------------------- check_tensor
def test_check_tensor_accepts_and_returns_the_tensor():
    x = torch.rand(2, 3, 4, 4)
    assert check_tensor(x, "x", "(N, C, H, W)", dim=4, channels=(1, 3), floating=True) is x
    assert check_tensor(torch.ones(3, dtype=torch.long), "y", "(N,)", dim=1) is not None
    inf = torch.tensor([[float("inf"), 0.0]])
    assert check_tensor(inf, "p", "(N, 2)", dim=2, allow_nan=False) is inf  # NaN only


@pytest.mark.parametrize(
    ("value", "kwargs", "err", "match"),
    [
        ([1.0], {}, TypeError, r"`x` must be a torch.Tensor \(N, C\), got <list>"),
        (
            torch.rand(3),
            {},
            ValueError,
            r"`x` must be a non-empty tensor \(N, C\), got <shape \(3,\)>",
        ),
        (
            torch.rand(0, 2),
            {},
            ValueError,
            r"`x` must be a non-empty tensor \(N, C\), got <shape \(0, 2\)>",
        ),
        (
            torch.rand(2, 2),
            {"channels": (1, 3)},
            ValueError,
            r"`x` must be a non-empty tensor \(N, C\) with dim 1 of size 1 or 3, "
            r"got <shape \(2, 2\)>",
        ),
        (
            torch.ones(2, 3, dtype=torch.int32),
            {"floating": True},
            TypeError,
            "`x` must be a floating-point tensor, got <dtype torch.int32>",
        ),
        (
            torch.tensor([[NAN, NAN], [0.0, 1.0]]),
            {"allow_nan": False},
            ValueError,
            "`x` must be free of NaN, got <2 NaN values>",
        ),
    ],
)
def test_check_tensor_rejects(value, kwargs, err, match):
    with pytest.raises(err, match=match):
        check_tensor(value, "x", "(N, C)", dim=2, **kwargs)


# --------------------------------------------------------------------------- check_unit_range
def test_check_unit_range():
    x = torch.tensor([0.0, 1.00005])
    assert check_unit_range(x, "x") is x  # within the tolerance
    assert check_unit_range(torch.empty(0), "x").numel() == 0
    with pytest.raises(ValueError, match=r"`x` must be in \[0, 1\], got <values in \[-0.5, 1\]>"):
        check_unit_range(torch.tensor([-0.5, 1.0]), "x")
    with pytest.raises(ValueError, match=r"`x` must be in \[0, 1\], got <values in \[0, 2\]>"):
        check_unit_range(torch.tensor([0.0, 2.0]), "x", tol=0.5)


# --------------------------------------------------------------------------- check_images keywords
def test_check_images_defaults_unchanged():
    # without the keywords: any C, no value checks, uint8 rejected
    odd = torch.full((1, 5, 2, 2), 7.0)
    assert check_images(odd) is odd
    assert check_images(torch.rand(2, 3, 0, 4)).shape == (2, 3, 0, 4)
    with pytest.raises(TypeError, match="`inputs` must be a floating-point tensor, got <dtype"):
        check_images(torch.zeros(1, 3, 2, 2, dtype=torch.uint8))


def test_check_images_picture_keywords():
    picture = {"channels": (1, 3), "unit_range": True, "allow_nan": False}
    u8 = torch.full((1, 3, 2, 2), 200, dtype=torch.uint8)
    assert check_images(u8, "images", allow_uint8=True, **picture) is u8  # uint8 as it is
    with pytest.raises(ValueError, match=r"`images` .* size 1 or 3, got <shape \(1, 2, 2, 2\)>"):
        check_images(torch.rand(1, 2, 2, 2), "images", **picture)
    with pytest.raises(ValueError, match=r"`images` must be a non-empty .*<shape \(1, 3, 0, 2\)>"):
        check_images(torch.rand(1, 3, 0, 2), "images", **picture)
    with pytest.raises(TypeError, match="`images` must be a floating-point or uint8 tensor"):
        check_images(torch.zeros(1, 3, 2, 2, dtype=torch.int64), "images", allow_uint8=True)
    with pytest.raises(ValueError, match="`images` must be free of NaN, got <1 NaN values>"):
        check_images(torch.tensor([NAN, 0, 0]).view(1, 3, 1, 1), "images", **picture)
    with pytest.raises(ValueError, match=r"`images` must be in \[0, 1\], got <values in \[0, 3\]>"):
        check_images(torch.tensor([0.0, 3.0, 0.0]).view(1, 3, 1, 1), "images", **picture)
    with pytest.raises(TypeError, match="`images` must be a floating-point tensor"):
        check_images(u8, "images", **picture)  # uint8 only with allow_uint8


# --------------------------------------------------------------------------- check_maps keyword
def test_check_maps_allow_nan():
    nan_maps = torch.full((1, 1, 2, 2), NAN)
    assert check_maps(nan_maps) is nan_maps  # the default keeps NaN
    with pytest.raises(ValueError, match="`maps` must be free of NaN, got <4 NaN values>"):
        check_maps(nan_maps, allow_nan=False)
    with pytest.raises(ValueError, match=r"`m` must be a non-empty .*got <shape \(1, 1, 0, 2\)>"):
        check_maps(torch.rand(1, 1, 0, 2), "m", allow_nan=False)


# --------------------------------------------------------------------------- check_labels keyword
def test_check_labels_allow_negative():
    labels = torch.tensor([-1, 2], dtype=torch.int32)
    with pytest.raises(ValueError, match=r"`y` must be class indices >= 0, got \[-1, 2\]"):
        check_labels(labels, "y")
    out = check_labels(labels, "y", 2, allow_negative=True)
    assert out.dtype == torch.long and out.tolist() == [-1, 2]


# --------------------------------------------------------------------------- check_float keyword
def test_check_float_strict_max():
    assert check_float(0.5, "f", maximum=1, positive=True, strict_max=True) == 0.5
    assert check_float(1, "f", maximum=1) == 1.0  # the default keeps <=
    with pytest.raises(ValueError, match="`f` must be a finite number > 0 and < 1, got 1"):
        check_float(1, "f", maximum=1, positive=True, strict_max=True)
    with pytest.raises(ValueError, match="`f` must be a finite number >= 0 and < 1, got 1.0"):
        check_float(1.0, "f", minimum=0, maximum=1, strict_max=True)
    with pytest.raises(TypeError, match="`f` must be a finite number >= 0 and < 1, got '0.5'"):
        check_float("0.5", "f", minimum=0, maximum=1, strict_max=True)


# --------------------------------------------------------------------------- check_features
def test_check_features():
    x = torch.randn(3, 2, dtype=torch.float64)
    assert check_features(x, min_rows=3) is x
    with pytest.raises(TypeError, match=r"`features` must be a torch.Tensor \(N, D\), got <list>"):
        check_features([[1.0]])
    with pytest.raises(TypeError, match="`features` must be a floating-point tensor"):
        check_features(torch.ones(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"`z` must be a non-empty tensor \(N, D\), got <shape"):
        check_features(torch.ones(3, 2, 1), "z")
    with pytest.raises(ValueError, match=r"`features` .* N >= 4, got <shape \(3, 2\)>"):
        check_features(x, min_rows=4)
    bad = torch.tensor([[NAN, 1.0], [float("-inf"), 0.0]])
    with pytest.raises(ValueError, match="`features` must be finite, got <2 NaN or infinite"):
        check_features(bad)


# --------------------------------------------------------------------------- check_numbers / series
def test_check_numbers():
    assert check_numbers((1, 2.5, torch.tensor(3)), "x") == [1.0, 2.5, 3.0]
    assert check_numbers([1, 2], "x", length=2) == [1.0, 2.0]
    with pytest.raises(TypeError, match=r"`x` must be a non-empty list of numbers, got \['a'\]"):
        check_numbers(["a"], "x")
    with pytest.raises(TypeError, match="`x` must be a non-empty list of numbers, got 3"):
        check_numbers(3, "x")
    with pytest.raises(ValueError, match=r"`x` must be a non-empty list of numbers, got \[\]"):
        check_numbers([], "x")
    with pytest.raises(ValueError, match=r"`x` .* numbers \(3 of them\), got \[1, 2\]"):
        check_numbers([1, 2], "x", length=3)


def test_check_series():
    assert check_series({"a": [1, 2], "b": (3, 4)}, "s", 2) == {"a": [1.0, 2.0], "b": [3.0, 4.0]}
    with pytest.raises(
        TypeError, match=r"`s` must be a dict of name -> list of numbers, got \[1\]"
    ):
        check_series([1], "s", 1)
    with pytest.raises(TypeError, match=r"`s` must be a dict .* got {1: \[1\]}"):
        check_series({1: [1]}, "s", 1)
    with pytest.raises(ValueError, match="`s` must be a non-empty dict .* got {}"):
        check_series({}, "s", 1)
    with pytest.raises(ValueError, match=r"`s\['b'\]` .* \(2 of them\), got \[1\]"):
        check_series({"a": [1, 2], "b": [1]}, "s", 2)
    with pytest.raises(TypeError, match=r"`s\['a'\]` must be a non-empty list of numbers"):
        check_series({"a": None}, "s", 2)


def test_check_neuron_takes_any_sequence_but_a_string():
    """Hydra hands a YAML list as a ``ListConfig`` (a Sequence, not a list): refused as
    "must be (layer_name, channel), got ['model.block2.conv', 1]" (H58)."""
    assert check_neuron(UserList(["model.block2.conv", 1])) == ("model.block2.conv", 1)
    assert check_neuron(["a", 0]) == ("a", 0) and check_neuron(None) is None
    for bad in ("ab", b"ab", {"a": 1}, ("a", 1.0), ("a", True), (1, 1), ("a", 1, 2)):
        with pytest.raises(TypeError, match=r"`neuron` must be \(layer_name, channel\)"):
            check_neuron(bad)
    with pytest.raises(ValueError, match=r"channel >= 0\), got \('a', -1\)"):
        check_neuron(("a", -1))


def test_check_folder_reads_a_tilde_as_the_home_folder(monkeypatch, tmp_path):
    """H62: ``save_dir="~/viz"`` wrote to a folder named "~" in the working directory,
    while ``compare`` and ``baseline=`` read "~" as the home folder."""
    from lightning_viz._checks import check_folder

    monkeypatch.setenv("HOME", str(tmp_path))
    assert check_folder("~/viz", "save_dir") == str(tmp_path / "viz")
    assert check_folder("runs/~x", "save_dir") == "runs/~x"


# ------------------------------------------------------------------- check_normalization
def test_a_callbacks_bad_mean_names_auto_and_a_model_views_does_not():
    """A callback takes ``mean="auto"``, so its refusal lists it; ``ModelView`` (and the
    functions) take only values or None, so theirs does not offer it."""
    from lightning_viz import FilterLogger
    from lightning_viz._guard import ModelView

    with pytest.raises(TypeError, match=r"`mean` must be None, 'auto' or a non-empty list"):
        FilterLogger(mean="imagenet", std="imagenet")
    with pytest.raises(TypeError, match=r"`std` must be None or a non-empty list") as info:
        ModelView(torch.nn.Linear(2, 2), mean=None, std="auto")
    assert "None, 'auto' or" not in str(info.value)  # it says got 'auto'


def test_class_names_may_be_an_ordered_view_but_not_a_mapping_or_a_set():
    """H64: a dict gave its keys as names, a set its names in no order; H67: a dict's
    ``keys()`` (ImageFolder's ``class_to_idx.keys()``) is ordered, and taken."""
    from lightning_viz._checks import check_class_names

    index = {"cat": 0, "dog": 1}
    assert check_class_names(index.keys()) == ["cat", "dog"]
    assert check_class_names(("cat", "dog")) == ["cat", "dog"]
    for bad in (index, {"cat", "dog"}, frozenset({"cat"})):
        with pytest.raises(TypeError, match="`class_names` must be a list of strings"):
            check_class_names(bad)
