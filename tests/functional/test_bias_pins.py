"""Pins for functional behaviour the callbacks rely on (mutation round five): each test
fails with the one-line mutation its comment names (H63)."""

from __future__ import annotations

import torch

import lightning_viz.functional as LF
from lightning_viz.functional.bias import SHAPE, TEXTURE


def test_one_logit_of_exactly_zero_is_class_0():
    # A06: `logit > 0` became `logit >= 0` (the docs: class 1 above 0)
    dec = LF.decisions(torch.tensor([[0.0], [0.0]]), torch.tensor([0, 1]), torch.tensor([1, 0]))
    assert dec.tolist() == [SHAPE, TEXTURE]


def test_the_corruption_table_follows_the_shorter_side():
    # A12: min -> max: a 64x256 image got the ImageNet-C parameters (docs: below 128 px CIFAR)
    from lightning_viz.functional.corruptions import table_for

    assert table_for(64, 256) == "cifar"
    assert table_for(256, 64) == "cifar"
    assert table_for(128, 300) == "imagenet"
