"""Tensors made under ``torch.inference_mode`` (Lightning's validation and predict batches,
predictions a user computes there): as targets, inside a ModelView, or as the caller's
mode when a default module is built. Autograd cannot save them, and the methods that
kept one in their graph raised "Inference tensors cannot be saved for backward"."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import lightning_viz.functional as LF


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(8, 5),
    ).eval()  # fmt: skip


_CALLS = {
    "saliency": lambda m, x, t: LF.saliency(m, x, t),
    "guided_backprop": lambda m, x, t: LF.guided_backprop(m, x, t),
    "deconvnet": lambda m, x, t: LF.deconvnet(m, x, t),
    "grad_cam": lambda m, x, t: LF.grad_cam(m, x, t, layer="0"),
    "grad_cam_pp": lambda m, x, t: LF.grad_cam_pp(m, x, t, layer="0"),
    "fgsm": lambda m, x, t: LF.fgsm(m, x, t, 4 / 255),
    "pgd": lambda m, x, t: LF.pgd(m, x, t, 4 / 255, steps=2),
    "randomization_similarity": lambda m, x, t: LF.randomization_similarity(
        lambda mm, xs, tt: LF.saliency(mm, xs, tt), m, x, t
    ),
}


def _values(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [v for v in out.values() if isinstance(v, torch.Tensor)]
    return [v for v in out if isinstance(v, torch.Tensor)]  # a named tuple


@pytest.mark.parametrize("name", list(_CALLS))
@pytest.mark.parametrize("inside", [False, True])
def test_an_inference_tensor_target_gives_what_a_plain_one_gives(name, inside):
    model, x = _model(), torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    plain = torch.tensor([0, 1, 2, 3])
    with torch.inference_mode():
        target = plain.clone()
    assert target.is_inference()
    expected = _values(_CALLS[name](model, x, plain))
    with torch.inference_mode(inside):
        got = _values(_CALLS[name](model, x, target))
    assert len(got) == len(expected) > 0
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, equal_nan=True)


def test_a_model_view_built_under_inference_mode_takes_input_gradients():
    model, x = _model(), torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    stats = {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}
    with torch.inference_mode():
        inside = LF.ModelView(model, **stats)
    torch.testing.assert_close(
        LF.saliency(inside, x, 1), LF.saliency(LF.ModelView(model, **stats), x, 1)
    )


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_style_transfer_with_its_default_extractor_under_either_no_grad_context(context):
    g = torch.Generator().manual_seed(0)
    content, style = torch.rand(2, 3, 16, 16, generator=g), torch.rand(2, 3, 16, 16, generator=g)
    expected = LF.style_transfer(content, style, steps=2)
    with context():
        got = LF.style_transfer(content, style, steps=2)
        LF.cue_conflict(content, torch.tensor([0, 1]), 2, steps=1, refine_steps=1)
    assert torch.equal(got, expected)
