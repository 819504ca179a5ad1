"""Attention rollout and gradient rollout against hand computations; the attention capture."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import lightning_viz.functional as LF
from lightning_viz._hooks import capture_attention, has_hooks
from lightning_viz.functional.rollout import supports_rollout
from tests.functional.vit_models import (
    HFLogits,
    Holder,
    mha_weights,
    nontrivial,
    tiny_hf,
    tiny_swin,
    tiny_timm_vit,
    tiny_vit,
    vit_tokens,
)

ATTN = [f"encoder.layers.encoder_layer_{i}.self_attention" for i in (0, 1)]


def _close(a, b, tol=1e-5):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.fixture
def x() -> Tensor:
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(5))


@pytest.fixture
def vit(fx):
    return fx.make(lambda: nontrivial(tiny_vit()), seed=2)


# ----------------------------------------------------------------------------- by hand
def _hand_attention(vit, x) -> list[Tensor]:
    """Each block's (N, heads, T, T) attention from its ln_1 and in_proj weights."""
    tokens = vit_tokens(vit, x)
    return [
        mha_weights(block.self_attention, block.ln_1(t))
        for block, t in zip(vit.encoder.layers, tokens[:-1], strict=False)
    ]


def _hand_rollout(attentions: list[Tensor], fuse=lambda a: a.mean(dim=1)) -> Tensor:
    """Average heads, add I, renormalize rows, multiply through the layers; class row -> map."""
    joint = None
    for a in attentions:
        a = fuse(a)
        a = a + torch.eye(a.shape[-1])
        a = a / a.sum(dim=-1, keepdim=True)
        joint = a if joint is None else a @ joint
    row = joint[:, 0, 1:].reshape(-1, 1, 4, 4)  # class token over the 4x4 patches
    return F.interpolate(row, size=(32, 32), mode="bilinear", align_corners=False)


def test_attention_rollout_equals_the_hand_computation(vit, x):
    with torch.no_grad():
        expected = _hand_rollout(_hand_attention(vit, x))
    got = LF.attention_rollout(vit, x)
    assert got.shape == (3, 1, 32, 32)
    _close(got, expected)
    assert float(got.std()) > 0
    # the patch mass of the class row is below 1 (the class token keeps some)
    assert bool((got.flatten(1).amax(1) < 1).all())


@pytest.mark.parametrize(
    ("fusion", "fuse"), [("max", lambda a: a.amax(1)), ("min", lambda a: a.amin(1))]
)
def test_head_fusions_by_hand(vit, x, fusion, fuse):
    with torch.no_grad():
        expected = _hand_rollout(_hand_attention(vit, x), fuse)
    _close(LF.attention_rollout(vit, x, head_fusion=fusion), expected)


def test_discard_ratio_zeroes_the_smallest_fused_entries(vit, x):
    ratio = 0.5

    def fuse(a):
        a = a.mean(dim=1)  # (N, T, T)
        flat = a.flatten(1)
        k = int(flat.shape[1] * ratio)
        thresh = flat.sort(dim=1).values[:, k - 1 : k]  # k-th smallest (no ties in floats)
        out = torch.where(flat <= thresh, torch.zeros_like(flat), flat)
        out[:, 0] = flat[:, 0]  # the class token's attention to itself is kept
        return out.view_as(a)

    with torch.no_grad():
        expected = _hand_rollout(_hand_attention(vit, x), fuse)
    got = LF.attention_rollout(vit, x, discard_ratio=ratio)
    _close(got, expected)
    assert not torch.allclose(got, LF.attention_rollout(vit, x))


def _hand_vit_logits(vit, x):
    """torchvision's ViT forward with explicit attention; returns logits and the attentions."""
    tokens = vit_tokens(vit, x)[0]
    made = []
    for block in vit.encoder.layers:
        mha = block.self_attention
        h = block.ln_1(tokens)
        n, t, d = h.shape
        heads = mha.num_heads
        a = mha_weights(mha, h)  # (N, heads, T, T), on the graph
        made.append(a)
        v = F.linear(h, mha.in_proj_weight, mha.in_proj_bias).chunk(3, -1)[2]
        v = v.view(n, t, heads, d // heads).transpose(1, 2)
        o = (a @ v).transpose(1, 2).reshape(n, t, d)
        x1 = F.linear(o, mha.out_proj.weight, mha.out_proj.bias) + tokens
        tokens = x1 + block.mlp(block.ln_2(x1))
    return vit.heads(vit.encoder.ln(tokens)[:, 0]), made


def test_hand_forward_reproduces_the_model(vit, x):
    with torch.no_grad():
        _close(_hand_vit_logits(vit, x)[0], vit(x), tol=1e-5)


def _hand_grad_rollout(vit, x, score_fn):
    """dS/dA_l of each block's attention (all paths from A_l to S, as a backward hook on the
    attention sees it), relu(dS/dA * A) averaged over heads, rolled out by hand."""
    with torch.enable_grad():
        logits, attentions = _hand_vit_logits(vit, x.clone().requires_grad_(True))
        grads = torch.autograd.grad(score_fn(logits), attentions)
    weighted = [F.relu(g * a.detach()) for g, a in zip(grads, attentions, strict=True)]
    return _hand_rollout(weighted)


def test_grad_rollout_equals_the_hand_computation(vit, x):
    target = torch.tensor([0, 2, 1])
    ref = copy.deepcopy(vit)
    expected = _hand_grad_rollout(ref, x, lambda z: z.gather(1, target.view(-1, 1)).sum())
    got = LF.grad_rollout(vit, x, target)
    _close(got, expected)
    assert float(got.std()) > 0
    # another class gives another map; None is the predicted class
    assert not torch.allclose(got, LF.grad_rollout(vit, x, torch.tensor([1, 0, 2])))
    with torch.no_grad():
        pred = vit(x).argmax(1)
    _close(LF.grad_rollout(vit, x), LF.grad_rollout(vit, x, pred))


def test_grad_rollout_binary_single_logit(fx, x):
    model = fx.make(lambda: nontrivial(tiny_vit(num_classes=1)), seed=2)
    ref = copy.deepcopy(model)
    # class 0 of a one-logit model is scored by -z, class 1 by z
    expected0 = _hand_grad_rollout(ref, x, lambda z: (-z[:, 0]).sum())
    expected1 = _hand_grad_rollout(ref, x, lambda z: z[:, 0].sum())
    _close(LF.grad_rollout(model, x, 0), expected0)
    _close(LF.grad_rollout(model, x, 1), expected1)
    with torch.no_grad():
        pred = (model(x)[:, 0] > 0).long()
    _close(LF.grad_rollout(model, x), LF.grad_rollout(model, x, pred))
    with pytest.raises(
        ValueError, match=r"`target` must be class indices in \[0, 2\), got \[2, 2, 2\]"
    ):
        LF.grad_rollout(model, x, 2)


def test_rollout_inside_a_wrapper(vit, x):
    _close(LF.attention_rollout(Holder(vit), x), LF.attention_rollout(vit, x))
    _close(LF.grad_rollout(Holder(vit), x, 1), LF.grad_rollout(vit, x, 1))


# ----------------------------------------------------------------------------- timm
def _timm_attention(model, x) -> list[Tensor]:
    """timm's blocks written out: q, k from the qkv weights, softmax(q k^T * scale)."""
    t = model.patch_embed(x)
    t = model._pos_embed(t)
    t = model.norm_pre(model.patch_drop(t))
    out = []
    for block in model.blocks:
        attn = block.attn
        h = block.norm1(t)
        n, tt, d = h.shape
        qkv = attn.qkv(h).reshape(n, tt, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        q, k = qkv[0], qkv[1]
        out.append(torch.softmax(q @ k.transpose(-2, -1) * attn.scale, dim=-1))
        t = block(t)
    return out


@pytest.mark.parametrize("distilled", [False, True])
def test_timm_rollout_by_hand_and_fused_attention_restored(fx, x, distilled):
    pytest.importorskip("timm")
    model = fx.make(lambda: nontrivial(tiny_timm_vit(distilled=distilled)), seed=2)
    prefix = 2 if distilled else 1
    with torch.no_grad():
        attentions = _timm_attention(model, x)
    joint = None
    for a in attentions:
        a = a.mean(1) + torch.eye(a.shape[-1])
        a = a / a.sum(-1, keepdim=True)
        joint = a if joint is None else a @ joint
    expected = F.interpolate(
        joint[:, 0, prefix:].reshape(-1, 1, 4, 4),
        size=(32, 32),
        mode="bilinear",
        align_corners=False,
    )
    fused_before = [(b.attn.fused_attn, "fused_attn" in vars(b.attn)) for b in model.blocks]
    _close(LF.attention_rollout(model, x), expected)
    grad_map = LF.grad_rollout(model, x, 1)
    assert grad_map.shape == (3, 1, 32, 32) and float(grad_map.std()) > 0
    assert [(b.attn.fused_attn, "fused_attn" in vars(b.attn)) for b in model.blocks] == fused_before
    assert not has_hooks(model)


# ----------------------------------------------------------------------------- capture
def test_capture_keeps_outputs_and_leaves_nothing_behind(vit, x):
    modules = {n: vit.get_submodule(n) for n in ATTN}
    with torch.no_grad():
        plain = vit(x)
        with capture_attention(modules) as store:
            captured = vit(x)
            # the block's own call asked need_weights=False: it still gets None back
            out, weights = vit.encoder.layers.encoder_layer_0.self_attention(
                *(torch.rand(3, 17, 16),) * 3, need_weights=False
            )
        assert weights is None
    # weights come from the explicit softmax path instead of SDPA: equal up to float rounding
    torch.testing.assert_close(captured, plain, rtol=0, atol=1e-6)
    assert set(store) == set(ATTN)
    with torch.no_grad():
        expected = _hand_attention(vit, x)
    _close(store[ATTN[1]].weights, expected[1])
    _close(store[ATTN[1]].weights.sum(-1), torch.ones(3, 2, 17))  # rows are distributions
    assert not has_hooks(vit)


def test_capture_returns_averaged_weights_when_the_caller_asks_for_them(vit):
    mha = vit.encoder.layers.encoder_layer_0.self_attention
    t = torch.rand(2, 17, 16)
    with torch.no_grad():
        _, plain = mha(t, t, t)  # default: averaged over heads
        with capture_attention({"a": mha}) as store:
            _, seen = mha(t, t, t)
    _close(seen, plain, tol=1e-6)
    _close(store["a"].weights.mean(1), plain, tol=1e-6)
    assert store["a"].weights.shape == (2, 2, 17, 17)
    assert not has_hooks(vit)


def test_capture_cleans_up_when_the_block_raises(vit, x):
    modules = {n: vit.get_submodule(n) for n in ATTN}
    with pytest.raises(RuntimeError, match="boom"), capture_attention(modules):
        vit(x)
        raise RuntimeError("boom")
    assert not has_hooks(vit)


def test_capture_refuses_other_modules(vit):
    with pytest.raises(TypeError, match="cannot read attention weights of 'x' \\(Linear\\)"):
        with capture_attention({"x": nn.Linear(2, 2)}):
            pass


def test_timm_capture_cleans_up_when_the_block_raises(fx, x):
    pytest.importorskip("timm")
    model = fx.make(lambda: tiny_timm_vit())
    modules = {f"blocks.{i}.attn": b.attn for i, b in enumerate(model.blocks)}
    with torch.no_grad():
        plain = model(x)
        with capture_attention(modules) as store:
            captured = model(x)
            assert all(b.attn.fused_attn is False for b in model.blocks)
    torch.testing.assert_close(captured, plain, rtol=0, atol=1e-6)
    assert store["blocks.0.attn"].weights.shape == (3, 2, 17, 17)
    fused = [b.attn.fused_attn for b in model.blocks]
    with pytest.raises(RuntimeError, match="boom"), capture_attention(modules):
        raise RuntimeError("boom")
    assert [b.attn.fused_attn for b in model.blocks] == fused
    assert not has_hooks(model)


# ----------------------------------------------------------------------------- state, validation
@pytest.mark.parametrize("method", ["rollout", "grad_rollout"])
@pytest.mark.parametrize("context", ["plain", "no_grad", "inference_mode"])
def test_rollouts_leave_the_model_unchanged(fx, x, method, context):
    model = fx.messy_state(fx.make(lambda: nontrivial(tiny_vit())))
    before = fx.snapshot(model)
    ctx = {
        "plain": torch.enable_grad,
        "no_grad": torch.no_grad,
        "inference_mode": torch.inference_mode,
    }
    with ctx[context]():
        xi = x.clone()
        out = LF.attention_rollout(model, xi) if method == "rollout" else LF.grad_rollout(model, xi)
    fx.assert_unchanged(model, before)
    assert out.shape == (3, 1, 32, 32) and torch.isfinite(out).all() and bool((out >= 0).all())


def test_rollout_validation(fx, vit, x):
    with pytest.raises(ValueError, match="`model` must be a Vision Transformer with a class token"):
        LF.attention_rollout(fx.make(fx.SmallCNN), x)
    with pytest.raises(ValueError, match=r"Vision Transformer with a class token.*SwinTransformer"):
        LF.grad_rollout(fx.make(tiny_swin), x)
    with pytest.raises(ValueError, match="`head_fusion` must be one of"):
        LF.attention_rollout(vit, x, head_fusion="median")
    with pytest.raises(ValueError, match=r"`discard_ratio` must be a number in \[0, 1\), got 1.0"):
        LF.attention_rollout(vit, x, discard_ratio=1.0)
    with pytest.raises(TypeError, match="`inputs` must be a torch.Tensor"):
        LF.attention_rollout(vit, x.tolist())
    with pytest.raises(
        ValueError, match=r"`target` must be class indices in \[0, 3\), got \[3, 3, 3\]"
    ):
        LF.grad_rollout(vit, x, 3)
    with pytest.raises(TypeError, match="`target` must be an int, a tensor"):
        LF.grad_rollout(vit, x, "cat")
    assert not has_hooks(vit)


# ------------------------------------------------------------------ Hugging Face transformers
def _roll_by_hand(attentions: list[Tensor], prefix: int) -> Tensor:
    joint = None
    for a in attentions:
        a = a + torch.eye(a.shape[-1])
        a = a / a.sum(-1, keepdim=True)
        joint = a if joint is None else a @ joint
    row = joint[:, 0, prefix:].reshape(-1, 1, 4, 4)
    return F.interpolate(row, size=(32, 32), mode="bilinear", align_corners=False)


@pytest.mark.parametrize(("kind", "prefix"), [("vit", 1), ("deit_distilled", 2), ("dinov2", 1)])
def test_transformers_rollouts_equal_the_attentions_transformers_returns(fx, x, kind, prefix):
    """The oracle is transformers' own ``output_attentions=True`` on an eager copy: the
    rollout of its attentions, and the gradient-weighted rollout with the gradients of
    the target score w.r.t. them. The model's attention implementation is put back."""
    model = fx.make(lambda: HFLogits(tiny_hf(kind, initializer_range=0.5)), seed=1)
    implementation = model.hf.config._attn_implementation
    target = torch.tensor([0, 1, 2])
    reference = copy.deepcopy(model).eval()
    reference.hf.config._attn_implementation = "eager"
    xg = x.clone().requires_grad_(True)
    out = reference.hf(pixel_values=xg, output_attentions=True)
    attentions = list(out.attentions)
    score = out.logits.gather(1, target[:, None]).sum()
    grads = torch.autograd.grad(score, attentions)
    expected = _roll_by_hand([a.detach().mean(1) for a in attentions], prefix)
    expected_grad = _roll_by_hand(
        [F.relu(g * a.detach()).mean(1) for a, g in zip(attentions, grads, strict=True)], prefix
    )
    assert float(expected.std()) > 1e-4 and float(expected_grad.std()) > 1e-6  # not flat
    assert supports_rollout(model)
    _close(LF.attention_rollout(model, x), expected)
    _close(LF.grad_rollout(model, x, target), expected_grad)
    assert model.hf.config._attn_implementation == implementation
    assert not has_hooks(model)
    # a caller that did not ask for the weights does not get them (transformers 4 asks
    # each block through output_attentions)
    with (
        torch.no_grad(),
        capture_attention(
            {n: m for n, m in model.named_modules() if n.endswith("0.attention")}
        ) as store,
    ):
        plain = model(x)
    assert len(store) == 1
    with torch.no_grad():
        _close(plain, model(x), tol=1e-5)


def test_a_timm_vit_pooling_its_patches_has_no_rollout():
    """``global_pool="avg"`` keeps a class token the head never reads (its gradient is
    exactly 0): the rollout of that token explains nothing, so it does not apply."""
    vt = pytest.importorskip("timm.models.vision_transformer")
    kwargs = dict(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=3)
    token = vt.VisionTransformer(**kwargs)
    pooled = vt.VisionTransformer(global_pool="avg", **kwargs)
    assert pooled.cls_token is not None
    assert supports_rollout(token) and not supports_rollout(pooled)
    # the functions refuse it too (they returned maps of the unread token)
    x = torch.rand(1, 3, 32, 32)
    for fn in (LF.attention_rollout, lambda m, x: LF.grad_rollout(m, x, 0)):
        with pytest.raises(ValueError, match="global_pool='avg'"):
            fn(pooled, x)
    assert LF.attention_rollout(token, x).shape == (1, 1, 32, 32)


@pytest.mark.parametrize("mean_pooling", [True, False])
def test_a_transformers_beit_pooling_its_patches_has_no_rollout(mean_pooling):
    """BEiT's default ``use_mean_pooling=True`` averages the patch tokens: the class token's
    gradient is exactly 0, and its rollout was written as the map. With the class token
    pooled (``use_mean_pooling=False``) rollout applies."""
    transformers = pytest.importorskip("transformers")
    config = transformers.BeitConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, num_labels=3, use_mean_pooling=mean_pooling,
    )  # fmt: skip
    model = HFLogits(transformers.BeitForImageClassification(config)).eval()
    x = torch.rand(1, 3, 32, 32)
    assert supports_rollout(model) is not mean_pooling
    if mean_pooling:
        with pytest.raises(ValueError, match="use_mean_pooling=True"):
            LF.attention_rollout(model, x)
    else:
        assert LF.attention_rollout(model, x).shape == (1, 1, 32, 32)


def test_discard_keeps_the_class_tokens_self_attention_even_when_it_is_among_the_smallest():
    from lightning_viz.functional.rollout import _discard

    a = torch.tensor([[[0.1, 0.4], [0.2, 0.3]]])  # [0, 0] is the smallest entry
    expected = torch.tensor([[[0.1, 0.4], [0.0, 0.3]]])  # 0.2 zeroed, 0.1 kept
    assert torch.equal(_discard(a, 0.5), expected)
