"""The model-parameter randomization test and the similarity measures it reports.

* :func:`randomization_similarity` (Adebayo et al., "Sanity Checks for Saliency
  Maps", NeurIPS 2018): how similar the map stays when the model's top layer (or
  cascading layers) is re-initialized; a map that explains the model changes, an edge
  detector does not.
* :func:`rank_correlation` (Spearman, ties averaged, as ``scipy.stats.spearmanr``) and
  :func:`ssim` (as ``skimage.metrics.structural_similarity``): the two similarities of
  a pair of maps, batched and in pure torch.
* :func:`randomizable_layers`: the layers the test re-initializes.

The names are re-exported by :mod:`lightning_viz.functional` and by
:mod:`lightning_viz.functional.faithfulness`::

    import lightning_viz.functional as LF

    sim = LF.randomization_similarity(
        lambda m, x, t: LF.grad_cam(m, x, t, layer="layer4"), view, images, labels
    )                                                                   # .spearman (N, 1)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from lightning_viz._checks import (
    check_callable,
    check_choice,
    check_float,
    check_images,
    check_int,
    check_model,
    fail,
)
from lightning_viz._guard import ModelView, make_eager, preserve_state, unwrap_model
from lightning_viz._hooks import record_order
from lightning_viz.functional._grad import (
    chunked_logits,
    fresh,
    recomputed_tensors,
    target_indices,
)

__all__ = [
    "RandomizationResult",
    "randomizable_layers",
    "randomization_similarity",
    "rank_correlation",
    "ssim",
]

LAYER_MODES = ("top", "cascade")


class RandomizationResult(NamedTuple):
    """Similarity between the maps of the model and of re-initialized copies.

    Attributes:
        spearman: ``(N, L)`` Spearman rank correlation of each sample's maps, one column
            per randomized copy (``L = 1`` for ``layers="top"``; cascading copies from the
            top down otherwise).
        ssim: ``(N, L)`` SSIM of the min-max normalized maps (7x7 uniform window, the
            largest odd one that fits smaller maps; NaN under 3 pixels a side).
        layers: The ``L`` names of the last layer re-initialized in each copy.
    """

    spearman: Tensor
    ssim: Tensor
    layers: tuple[str, ...]


# ----------------------------------------------------------------- similarities
def _check_pair(a: Any, b: Any, shape: str, maps: bool) -> None:
    """Two tensors of one shape: ``(N, ...)`` rows, or (``maps``) ``(N, [1,] H, W)``."""
    for name, t in (("a", a), ("b", b)):
        if not isinstance(t, Tensor) or not t.is_floating_point():
            got = f"<dtype {t.dtype}>" if isinstance(t, Tensor) else f"<{type(t).__name__}>"
            fail(name, f"a floating-point tensor {shape}", got, TypeError)
        if t.dim() < 2 or maps and not (t.dim() == 3 or t.dim() == 4 and t.shape[1] == 1):
            fail(name, f"a tensor {shape}", f"<shape {tuple(t.shape)}>")
    if a.shape != b.shape:
        fail("b", f"the shape of a, {tuple(a.shape)}", f"<shape {tuple(b.shape)}>")


def rank_correlation(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation of each pair of rows, ties given average ranks.

    Args:
        a: ``(N, ...)`` float tensor (flattened per sample).
        b: ``(N, ...)`` float tensor of the shape of ``a``.

    Returns:
        ``(N,)`` correlations in ``[-1, 1]``; NaN where a sample's values are constant
        (as ``scipy.stats.spearmanr``).

    Raises:
        TypeError: ``a`` or ``b`` is not a float tensor.
        ValueError: ``a`` and ``b`` differ in shape or have fewer than 2 dimensions.
    """
    _check_pair(a, b, "(N, ...)", maps=False)
    ra, rb = _average_ranks(a.flatten(1).double()), _average_ranks(b.flatten(1).double())
    ra = ra - ra.mean(dim=1, keepdim=True)
    rb = rb - rb.mean(dim=1, keepdim=True)
    den = ra.norm(dim=1) * rb.norm(dim=1)
    corr = (ra * rb).sum(dim=1) / den
    return torch.where(den > 0, corr, torch.full_like(corr, math.nan)).to(a.dtype)


def _average_ranks(v: Tensor) -> Tensor:
    """Ranks ``(N, P)`` (1-based) with ties averaged, as ``scipy.stats.rankdata``."""
    sorted_v, order = torch.sort(v, dim=1, stable=True)
    n, p = v.shape
    pos = torch.arange(p, device=v.device).expand(n, p)
    starts = torch.ones_like(sorted_v, dtype=torch.bool)
    starts[:, 1:] = sorted_v[:, 1:] != sorted_v[:, :-1]
    ends = torch.ones_like(starts)
    ends[:, :-1] = starts[:, 1:]
    first = torch.where(starts, pos, torch.zeros_like(pos)).cummax(dim=1).values
    last_rev = torch.where(ends, pos, torch.full_like(pos, p - 1)).flip(1).cummin(dim=1).values
    last = last_rev.flip(1)
    avg = (first + last).to(v.dtype) / 2 + 1
    ranks = torch.empty_like(avg)
    ranks.scatter_(1, order, avg)
    return ranks


def ssim(a: Tensor, b: Tensor, *, data_range: float = 1.0, window: int = 7) -> Tensor:
    """Mean structural similarity of each pair of maps (Wang et al. 2004).

    As ``skimage.metrics.structural_similarity`` with its defaults (a ``window`` x
    ``window`` uniform filter, sample covariances, ``K1 = 0.01``, ``K2 = 0.03``, the
    mean over the windows inside the image).

    Args:
        a: Maps ``(N, 1, H, W)`` or ``(N, H, W)``, ``H, W >= window``.
        b: Maps of the shape of ``a``.
        data_range: The range of the values. Default: 1 (normalized maps).
        window: Odd window size, ``>= 3``. Default: 7.

    Returns:
        ``(N,)`` SSIM values in ``[-1, 1]``.

    Raises:
        TypeError: Maps that are not float tensors.
        ValueError: Maps of other shapes, smaller than the window, an even or
            smaller window (its sample covariance needs at least two pixels), or a
            ``data_range`` that is not positive.
    """
    window = check_int(window, "window", minimum=3)
    if window % 2 == 0:
        fail("window", "an odd size >= 3", window)
    data_range = check_float(data_range, "data_range", positive=True)
    _check_pair(a, b, "(N, 1, H, W) or (N, H, W)", maps=True)
    x = a.reshape(a.shape[0], 1, *a.shape[-2:]).double()
    y = b.reshape(b.shape[0], 1, *b.shape[-2:]).double()
    if min(x.shape[-2:]) < window:
        fail("a", f"maps of at least {window}x{window} pixels", f"<shape {tuple(a.shape)}>")
    mean = lambda t: F.avg_pool2d(t, window, stride=1)  # noqa: E731 - the uniform filter
    np_ = window * window
    cov = np_ / (np_ - 1)
    ux, uy = mean(x), mean(y)
    vx = cov * (mean(x * x) - ux * ux)
    vy = cov * (mean(y * y) - uy * uy)
    vxy = cov * (mean(x * y) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(dim=1).to(a.dtype)


def _unit(maps: Tensor) -> Tensor:
    """Each map min-max normalized to ``[0, 1]`` (a constant map becomes 0)."""
    flat = maps.flatten(1)
    lo, hi = flat.min(dim=1, keepdim=True).values, flat.max(dim=1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(maps)


# ------------------------------------------------------------ model randomization
def randomizable_layers(model: nn.Module) -> list[str]:
    """Dotted names of the layers a randomization test re-initializes, bottom up.

    Every submodule with a ``reset_parameters`` method and parameters of its own (the
    modules Quantus' ``MPRT`` randomizes; a parametrized weight counts as its own, also
    without a bias), in definition order; for a
    :class:`ModelView` the names are those of the user's model.
    """
    inner = _user_module(model)
    return [
        name
        for name, m in inner.named_modules()
        if name
        and callable(getattr(m, "reset_parameters", None))
        and (next(m.parameters(recurse=False), None) is not None or parametrize.is_parametrized(m))
    ]


def _reset(module: nn.Module) -> None:
    """``module.reset_parameters()``, reaching the stored tensors of a parametrized
    weight (``torch.nn.utils.parametrizations.weight_norm``, ``spectral_norm``, ...) or
    of the legacy ``weight_norm``/``spectral_norm`` hooks and ``torch.nn.utils.prune``
    (whose mask stays): ``reset_parameters`` writes into the computed ``weight``, which
    would change nothing. The new weight is the one a plain layer of the same kind
    draws."""
    if parametrize.is_parametrized(module):
        plain = copy.deepcopy(module)
        # a copy keeps the parametrized class of the user's layer, and removing a
        # parametrization deletes its property from that class: the copy gets its own
        cls = type(plain)
        own = {k: v for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__")}
        plain.__class__ = type(cls.__name__, cls.__bases__, own)
        names = list(plain.parametrizations)  # type: ignore[arg-type]
        for name in names:
            parametrize.remove_parametrizations(plain, name, leave_parametrized=True)
        plain.reset_parameters()  # type: ignore[operator]
        for name in names:  # the parametrization's right inverse stores it
            setattr(module, name, getattr(plain, name).detach())
        for name, p in module.named_parameters(recurse=False):  # a bias, unparametrized
            p.copy_(getattr(plain, name))
        return
    recomputed = recomputed_tensors(module)
    kinds = {t.dtype for t in module.parameters(recurse=False) if t.is_floating_point()}
    if not recomputed and kinds and kinds != {torch.float32}:  # float64, bfloat16 layers
        plain = copy.deepcopy(module).float()  # float32 draws: the same layer in any dtype
        plain.reset_parameters()  # type: ignore[operator]
        for own, drawn in ((module.parameters, plain.parameters), (module.buffers, plain.buffers)):
            for t, u in zip(own(), drawn(), strict=True):  # what reset_parameters drew anew
                if t.is_floating_point() and not torch.equal(u, t.float()):
                    t.copy_(u)
        return
    module.reset_parameters()  # type: ignore[operator]
    for name, kind, hook in recomputed:  # it wrote into the computed one
        weight = getattr(module, name)
        if kind == "weight_norm":
            getattr(module, f"{name}_v").copy_(weight)
            getattr(module, f"{name}_g").copy_(torch.norm_except_dim(weight, 2, hook.dim))
        else:  # pruning keeps its mask
            getattr(module, f"{name}_orig").copy_(weight)


def _forward_order(names: list[str], calls: list[str]) -> list[str]:
    """``names`` in the order the forward completes them (the top layer last, wherever
    it is defined). A layer whose own forward does not run but whose weights its parent
    uses (an attention's ``out_proj``) takes its nearest called ancestor's place; one
    outside the forward (a teacher, an EMA copy) is left out."""
    done: dict[str, int] = {}
    for name in calls:
        done.setdefault(name, len(done))

    def place(name: str) -> int | None:
        parts = name.split(".")
        return next(
            (done[a] for k in range(len(parts), 0, -1) if (a := ".".join(parts[:k])) in done), None
        )

    ranked = [(p, i, n) for i, n in enumerate(names) if (p := place(n)) is not None]
    return [n for _, _, n in sorted(ranked)]


def _user_module(model: nn.Module) -> nn.Module:
    """The user's own module: a :class:`ModelView`'s model, or ``model`` unwrapped."""
    check_model(model)
    return model.model if isinstance(model, ModelView) else unwrap_model(model)


def _copy(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """A deep copy of the user's module, and ``model`` rebuilt around it (a ModelView
    keeps its adapters by reference: the precision context is not copied).

    The copy runs eagerly: a compiled forward (``torch.compile`` wrapper, or a
    LightningModule fit as ``torch.compile(module)``) is copied by reference and would
    still compute the original model's outputs."""
    inner = make_eager(copy.deepcopy(_user_module(model)))
    if not isinstance(model, ModelView):
        return inner, inner
    view = copy.copy(model)
    view._modules = dict(model._modules)  # noqa: SLF001 - the copy's own submodule table
    view._modules["model"] = inner  # noqa: SLF001
    return inner, view


def randomization_similarity(
    map_fn: Callable[[nn.Module, Tensor, Tensor], Tensor],
    model: nn.Module,
    inputs: Tensor,
    target: int | Tensor | None = None,
    *,
    layers: str = "top",
    maps: Tensor | None = None,
    seed: int = 0,
    chunk_size: int = 64,
) -> RandomizationResult:
    """Model-parameter randomization test (Adebayo et al., "Sanity Checks for Saliency
    Maps", NeurIPS 2018).

    The maps of the model are compared with those of a deep copy whose top layer
    (``"top"``), or whose layers from the top down cumulatively (``"cascade"``, one
    copy per layer, as Quantus' ``MPRT(layer_order="top_down")``), are re-initialized
    by their own ``reset_parameters``: the layers of :func:`randomizable_layers` that
    run in the model's forward, ordered as the forward completes them (the top layer is
    the last to finish, wherever it is defined; a teacher or an EMA copy the module
    holds is never the top layer). A map that explains the model changes (low
    similarity); one that shows the input's edges does not. The user's model is never
    touched; each layer's initialization draws from the RNG seeded with ``seed``
    inside ``torch.random.fork_rng``, so the caller's random streams are unchanged.

    Args:
        map_fn: ``map_fn(model, inputs, target) -> (N, 1, H, W)`` maps: any method of
            :mod:`lightning_viz.functional` or the user's own; it is called with the
            model (or the randomized copy, the same type: a ``ModelView`` stays one).
        model: The classifier (``ModelView`` for pixel space).
        inputs: Images ``(N, C, H, W)``.
        target: Class indices ``(N,)``, one int or ``None`` (the class the original
            model predicts); the copies explain the same classes.
        layers: ``"top"`` or ``"cascade"``. Default: ``"top"``.
        maps: The original model's maps, when already computed (saves one call).
        seed: Seed of the re-initialization. Default: 0.
        chunk_size: Images per forward pass when finding the predicted classes
            (``map_fn`` chooses its own). Default: 64.

    Returns:
        :class:`RandomizationResult` with ``spearman`` and ``ssim`` ``(N, L)``.

    Raises:
        TypeError: ``map_fn`` is not callable, ``model`` not a module, or bad ``inputs``.
        ValueError: A bad ``layers``, or a model without a layer to re-initialize.
    """
    fn = check_callable(map_fn, "map_fn")
    check_model(model)
    check_choice(layers, "layers", LAYER_MODES)
    seed = check_int(seed, "seed", minimum=0)
    chunk_size = check_int(chunk_size, "chunk_size", minimum=1)
    x = check_images(inputs, allow_nan=False)
    names = randomizable_layers(model)
    if not names:
        fail(
            "model",
            "a model with a layer that has reset_parameters() and parameters",
            type(model).__name__,
        )
    # under the caller's inference_mode the indices and the copy's parameters would be
    # inference tensors, which the maps' backward cannot save
    table = dict(_user_module(model).named_modules())
    with torch.inference_mode(False):
        with torch.no_grad(), preserve_state(model) as net:
            with record_order({n: m for n, m in table.items() if n}) as calls:
                logits = chunked_logits(net, fresh(x), chunk_size)
        names = _forward_order(names, calls) or names
        idx = target_indices(target, logits)
        original = fn(model, x, idx) if maps is None else maps  # type: ignore[misc]
        inner, copy_model = _copy(model)
    original = original.detach().to(x.device).reshape(x.shape[0], 1, *original.shape[-2:]).float()
    modules = dict(inner.named_modules())
    chosen = names[::-1] if layers == "cascade" else names[-1:]
    device = next((p.device for p in inner.parameters()), x.device)
    devices = [device.index or 0] if device.type == "cuda" else []
    side = min(original.shape[-2:])
    window = min(7, side if side % 2 else side - 1)  # skimage's default, or the largest odd fit
    corr, sims = [], []
    for name in chosen:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            with torch.inference_mode(False), torch.no_grad():
                _reset(modules[name])
        other = fn(copy_model, x, idx).detach().float().reshape_as(original)  # type: ignore[misc]
        corr.append(rank_correlation(original, other))
        if window >= 3:
            sims.append(ssim(_unit(original), _unit(other), window=window))
        else:  # maps under 3 px a side have no SSIM window
            sims.append(torch.full_like(corr[-1], math.nan))
    del inner, copy_model
    return RandomizationResult(torch.stack(corr, 1), torch.stack(sims, 1), tuple(chosen))
