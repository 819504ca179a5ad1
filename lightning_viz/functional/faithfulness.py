"""Faithfulness and sanity of saliency maps: does the map tell the truth about the model?

* :func:`deletion_curve` / :func:`insertion_curve` (Petsiuk, Das & Saenko, "RISE",
  BMVC 2018): remove (or insert) pixels in the map's order and watch the explained
  class's probability; a faithful map makes it fall fast (low deletion AUC) and rise
  fast (high insertion AUC).
* :func:`road` (Rong et al., "A Consistent and Efficient Evaluation Strategy for
  Attribution Methods", ICML 2022): remove a percentage of pixels by noisy linear
  imputation, which leaks less of the removed shape than a constant fill.
* :func:`randomization_similarity` (Adebayo et al., "Sanity Checks for Saliency
  Maps", NeurIPS 2018): how similar the map stays when the model's top layer (or
  cascading layers) is re-initialized; a map that explains the model changes, an edge
  detector does not. It and its similarity measures live in
  :mod:`lightning_viz.functional.randomization` and are re-exported here.
* :func:`random_maps`: the chance level of every score (score a random map).

The probability of the explained class is the softmax for a multiclass model and the
sigmoid of the explained label's logit for binary (one logit) and multilabel models.
Everything is batched (all samples and all curve points in chunks), pure torch and on
the inputs' device; the model is left as it was found (:func:`preserve_state`), and
pixel-space removal is the caller's ``ModelView(model, mean, std)``::

    import lightning_viz.functional as LF

    view = LF.ModelView(model, mean=(0.5,) * 3, std=(0.25,) * 3)
    maps = LF.grad_cam(view, images, labels, layer="layer4")
    dele = LF.deletion_curve(view, images, maps, labels, steps=16)   # .auc (N,)
    chance = LF.deletion_curve(view, images, LF.random_maps(images), labels, steps=16)
    sim = LF.randomization_similarity(
        lambda m, x, t: LF.grad_cam(m, x, t, layer="layer4"), view, images, labels
    )                                                                   # .spearman (N, 1)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_viz._checks import (
    check_choice,
    check_choices,
    check_float,
    check_images,
    check_int,
    check_task,
    fail,
)
from lightning_viz._guard import preserve_state
from lightning_viz.functional._grad import (
    chunked_logits,
    chunked_rows,
    forward_logits,
    fresh,
    row_noise,
    target_indices,
)
from lightning_viz.functional.randomization import (
    RandomizationResult,
    randomizable_layers,
    randomization_similarity,
    rank_correlation,
    ssim,
)
from lightning_viz.functional.saliency import _generator

__all__ = [
    "PerturbationCurve",
    "RandomizationResult",
    "RoadResult",
    "deletion_curve",
    "insertion_curve",
    "linear_impute",
    "perturbation_curves",
    "randomizable_layers",
    "random_maps",
    "rank_correlation",
    "randomization_similarity",
    "road",
    "ssim",
]

BASELINES = ("blur", "mean")
ORDERS = ("morf", "lerf")
BLUR_SIZE, BLUR_SIGMA = 11, 5.0  # the substrate of Petsiuk et al.'s code (gkern(11, 5))
# noisy linear imputation: weights of the 8 neighbours (Rong et al. 2022), sum 1
_NEIGHBOURS = torch.tensor([[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0.0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]])


class PerturbationCurve(NamedTuple):
    """A deletion or insertion curve.

    Attributes:
        auc: ``(N,)`` area under each sample's curve, trapezoidal rule over the fraction
            of pixels changed, in ``[0, 1]``.
        curve: ``(N, steps + 1)`` probability of the explained class after each step;
            column 0 is the unmodified input (deletion) or the baseline (insertion).
        fractions: ``(steps + 1,)`` fraction of pixels changed at each point (0 to 1).
    """

    auc: Tensor
    curve: Tensor
    fractions: Tensor


class RoadResult(NamedTuple):
    """ROAD at several percentages of removed pixels.

    Attributes:
        score: ``(N,)`` mean of ``curve`` over the percentiles (the ROAD score; low is
            faithful for ``"morf"``, high for ``"lerf"``).
        curve: ``(N, P)`` probability of the explained class after imputing each
            percentile of pixels.
        clean: ``(N,)`` the probability on the unmodified inputs.
        percentiles: ``(P,)`` percent of pixels removed.
    """

    score: Tensor
    curve: Tensor
    clean: Tensor
    percentiles: Tensor


# ------------------------------------------------------------------- shared pieces
def _task(task: str | None, logits: Tensor) -> str:
    task = check_task(task)
    if task is None:
        return "binary" if logits.shape[1] == 1 else "multiclass"
    if task == "binary" and logits.shape[1] != 1:
        fail(
            "task", f"'multiclass' or 'multilabel' for a model with {logits.shape[1]} logits", task
        )
    if task != "binary" and logits.shape[1] == 1:
        fail("task", "'binary' for a model with one logit", task)
    return task


def target_probability(logits: Tensor, idx: Tensor, task: str) -> Tensor:
    """Probability ``(N,)`` of class ``idx[i]``: softmax (multiclass), else sigmoid.

    For one logit (binary) class 1 is ``sigmoid(logit)`` and class 0 its complement;
    for multilabel the explained label's own sigmoid.
    """
    if task == "multiclass":
        return logits.float().softmax(dim=1).gather(1, idx.view(-1, 1))[:, 0]
    if logits.shape[1] == 1:
        return torch.sigmoid(logits[:, 0].float() * (2 * idx.float() - 1))
    return torch.sigmoid(logits.float().gather(1, idx.view(-1, 1))[:, 0])


def _flat_maps(maps: object, x: Tensor) -> Tensor:
    """``maps`` checked against the inputs ``x``, as ``(N, H*W)`` on their device."""
    if not isinstance(maps, Tensor):
        fail(
            "maps",
            "a torch.Tensor (N, 1, H, W) or (N, H, W)",
            f"<{type(maps).__name__}>",
            TypeError,
        )
    if not maps.is_floating_point():
        fail("maps", "a floating-point tensor", f"<dtype {maps.dtype}>", TypeError)
    n, _, h, w = x.shape
    given = tuple(maps.shape)
    if maps.dim() == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if tuple(maps.shape) != (n, h, w):
        fail(
            "maps",
            f"one map per input of the inputs' size, (N, 1, H, W) = ({n}, 1, {h}, {w})",
            f"<shape {given}>",
        )
    if bool(torch.isnan(maps).any()):
        fail("maps", "maps without NaN", "<maps with NaN>")
    return maps.to(x.device).flatten(1)


def _prepare(
    model: nn.Module,
    inputs: object,
    maps: Sequence[object],
    target: object,
    task: object,
    chunk_size: int = 64,
) -> tuple[Tensor, list[Tensor], Tensor, str, Tensor]:
    """Checked inputs, each of ``maps`` as ``(N, H*W)`` on the inputs' device, class
    indices, task, and the explained class's probability ``(N,)`` on the inputs."""
    x = check_images(inputs, allow_nan=False)
    flats = [_flat_maps(m, x) for m in maps]
    with torch.no_grad(), preserve_state(model) as net:
        logits = chunked_logits(net, fresh(x), chunk_size)
    task_name = _task(task, logits)  # type: ignore[arg-type]
    idx = target_indices(target, logits)  # type: ignore[arg-type]
    return x, flats, idx, task_name, target_probability(logits, idx, task_name)


def _order(flat_maps: Tensor) -> Tensor:
    """Rank ``(N, P)`` of each pixel in descending map order (0 = most important);
    ties keep pixel order (a stable sort)."""
    order = torch.sort(flat_maps, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return rank


def _gaussian_blur(x: Tensor, size: int = BLUR_SIZE, sigma: float = BLUR_SIGMA) -> Tensor:
    """Separable Gaussian blur, per channel, borders replicated."""
    r = torch.arange(size, device=x.device, dtype=x.dtype) - (size - 1) / 2
    k = torch.exp(-(r**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    pad = size // 2
    out = F.conv2d(
        F.pad(x, (pad, pad, 0, 0), mode="replicate"),
        k.view(1, 1, 1, -1).repeat(c, 1, 1, 1),
        groups=c,
    )
    return F.conv2d(
        F.pad(out, (0, 0, pad, pad), mode="replicate"),
        k.view(1, 1, -1, 1).repeat(c, 1, 1, 1),
        groups=c,
    )


def _baseline(x: Tensor, baseline: object) -> Tensor:
    """The substrate ``(N, C, H, W)``: blurred input, per-image channel mean, or a tensor."""
    if isinstance(baseline, Tensor):
        try:
            return torch.broadcast_to(baseline.to(x.device, x.dtype), x.shape).clone()
        except RuntimeError:
            fail(
                "baseline",
                f"a tensor broadcastable to the inputs' shape {tuple(x.shape)}",
                f"<shape {tuple(baseline.shape)}>",
            )
    if not isinstance(baseline, str) or baseline not in BASELINES:
        fail("baseline", f"one of {list(BASELINES)} or a tensor", baseline)
    if baseline == "blur":
        return _gaussian_blur(x)
    return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()


def _probabilities(
    net: nn.Module,
    make_batch: Callable[[int, int], tuple[Tensor, Tensor]],
    total: int,
    idx_of: Tensor,
    task: str,
    chunk_size: int,
) -> Tensor:
    """Target probability of ``total`` perturbed images built chunk by chunk (no grad)."""
    out = []
    for start, end in chunked_rows(total, chunk_size):
        images, rows = make_batch(start, end)
        out.append(target_probability(forward_logits(net, images), idx_of[rows], task))
    return torch.cat(out)


def _curves(
    model: nn.Module,
    inputs: object,
    maps: Sequence[object],
    target: object,
    steps: object,
    baseline: object,
    task: object,
    chunk_size: object,
    kinds: Sequence[str],
) -> list[dict[str, PerturbationCurve]]:
    """Deletion and/or insertion curves of several maps of the same inputs.

    The two ends every curve shares, the unmodified input and the baseline, are
    classified once for all maps and kinds; each curve adds its ``steps - 1`` inner
    points.
    """
    steps = check_int(steps, "steps", minimum=1)
    chunk_size = check_int(chunk_size, "chunk_size", minimum=1)
    x, flats, idx, task_name, p_input = _prepare(model, inputs, maps, target, task, chunk_size)
    n, c, h, w = x.shape
    pixels = h * w
    if steps > pixels:
        fail("steps", f"at most the number of pixels ({pixels})", steps)
    base = _baseline(x, baseline)
    rank = torch.stack([_order(f).view(n, 1, h, w) for f in flats])  # (M, N, 1, H, W)
    counts = torch.arange(steps + 1, device=x.device) * pixels // steps  # pixels changed
    inner, k = counts[1:-1], steps - 1
    inserts = [kind == "insertion" for kind in kinds]
    insert_t = torch.tensor(inserts, device=x.device)
    per_map = len(kinds) * n * k

    def make_batch(a: int, b: int) -> tuple[Tensor, Tensor]:
        rows = torch.arange(a, b, device=x.device)
        q = (rows - n).clamp_min(0)  # rows below n: the baseline itself
        sample = torch.where(rows < n, rows, (q // k) % n if k else q)
        if not k:
            return base[sample], sample
        m, kind, point = q // per_map, (q // (n * k)) % len(kinds), q % k
        changed = rank[m, sample] < inner[point].view(-1, 1, 1, 1)  # (B, 1, H, W)
        to_base = (changed != insert_t[kind].view(-1, 1, 1, 1)) | (rows < n).view(-1, 1, 1, 1)
        return torch.where(to_base, base[sample], x[sample]), sample

    with torch.no_grad(), preserve_state(model) as net:
        probs = _probabilities(
            net, make_batch, n + len(flats) * per_map, idx, task_name, chunk_size
        )
    p_base = probs[:n].view(n, 1)
    middle = probs[n:].view(len(flats), len(kinds), n, k)
    fractions = counts.to(probs.dtype) / pixels
    out = []
    for m in range(len(flats)):
        curves = {}
        for j, kind in enumerate(kinds):
            ends = (p_base, p_input.view(n, 1)) if inserts[j] else (p_input.view(n, 1), p_base)
            curve = torch.cat([ends[0], middle[m, j], ends[1]], dim=1)
            curves[kind] = PerturbationCurve(
                torch.trapezoid(curve, fractions, dim=1), curve, fractions
            )
        out.append(curves)
    return out


def perturbation_curves(
    model: nn.Module,
    inputs: Tensor,
    maps: Sequence[Tensor],
    target: int | Tensor | None = None,
    *,
    steps: int = 16,
    baseline: str | Tensor = "blur",
    task: str | None = None,
    chunk_size: int = 64,
    kinds: Sequence[str] = ("deletion", "insertion"),
) -> list[dict[str, PerturbationCurve]]:
    """Deletion and insertion curves of several maps of the same inputs, at once.

    The same curves as :func:`deletion_curve` and :func:`insertion_curve` (up to
    floating-point batching), cheaper: the unmodified input and the baseline, the two
    ends of every curve, are classified once for all maps, so ``M`` maps cost
    ``1 + M * len(kinds) * (steps - 1)`` forward passes per image (plus one on the
    inputs) instead of ``M * len(kinds) * (steps + 2)``. A map and the random map of
    :func:`random_maps` scored together is the usual use.

    The arguments other than ``maps`` and ``kinds`` are those of :func:`deletion_curve`.

    Args:
        maps: A non-empty list of importance maps, each ``(N, 1, H, W)`` or
            ``(N, H, W)``.
        kinds: Which curves: ``"deletion"`` and/or ``"insertion"``.
            Default: both.

    Returns:
        Per map, in order, a dict from each of ``kinds`` to its
        :class:`PerturbationCurve`.

    Raises:
        TypeError, ValueError: As :func:`deletion_curve`; ``maps`` not a non-empty
            list of tensors; unknown ``kinds``.
    """
    if isinstance(maps, Tensor) or not isinstance(maps, Sequence) or not maps:
        fail("maps", "a non-empty list of map tensors", f"<{type(maps).__name__}>", TypeError)
    kinds = check_choices(kinds, "kinds", ("deletion", "insertion"))
    return _curves(model, inputs, maps, target, steps, baseline, task, chunk_size, kinds)


# --------------------------------------------------------------------- deletion/insertion
def deletion_curve(
    model: nn.Module,
    inputs: Tensor,
    maps: Tensor,
    target: int | Tensor | None = None,
    *,
    steps: int = 16,
    baseline: str | Tensor = "blur",
    task: str | None = None,
    chunk_size: int = 64,
) -> PerturbationCurve:
    """Deletion curve and AUC (Petsiuk, Das & Saenko, "RISE", BMVC 2018).

    Pixels are replaced by the ``baseline`` in the map's order (most important first),
    all channels of a pixel at once, in ``steps`` equal steps; the explained class's
    probability is read after each step. The curve has ``steps + 1`` points, the
    unmodified input first and the all-baseline image last; the AUC is the trapezoidal
    rule over the fraction of pixels removed, as in the authors' ``evaluation.py``
    (``auc``). A faithful map gives a low AUC. When ``steps`` does not divide the number
    of pixels, step ``i`` has removed ``floor(i * H * W / steps)`` pixels.

    Args:
        model: Classifier returning logits ``(N, K)``; ``ModelView(model, mean, std)``
            to remove pixels in pixel space.
        inputs: Images ``(N, C, H, W)``, float, what ``model`` takes.
        maps: Importance maps ``(N, 1, H, W)`` or ``(N, H, W)`` of the inputs' size;
            higher is more important (ties are taken in pixel order).
        target: Class indices ``(N,)``, one int, or ``None`` (the predicted class).
        steps: Number of equal steps, ``1 <= steps <= H * W``. Default: 16.
        baseline: ``"blur"`` (Gaussian blur, 11 taps, sigma 5, the paper's substrate;
            borders replicated where the paper's code pads with zeros), ``"mean"`` (each
            image's per-channel mean) or a tensor broadcastable to ``inputs``.
            Default: ``"blur"``.
        task: ``"multiclass"`` (softmax), ``"binary"`` or ``"multilabel"`` (sigmoid of
            the explained logit); ``None``: binary for one logit, else multiclass.
        chunk_size: Perturbed images per forward pass. Default: 64.

    Returns:
        :class:`PerturbationCurve` with ``auc`` ``(N,)``, ``curve`` ``(N, steps + 1)``
        and ``fractions`` ``(steps + 1,)``, on the inputs' device.

    Raises:
        TypeError: ``inputs``/``maps`` are not float tensors.
        ValueError: Shapes that do not match, NaN in the maps, a bad ``steps``,
            ``baseline`` or ``task``, or a class index out of range.
    """
    args = (model, inputs, [maps], target, steps, baseline, task, chunk_size)
    return _curves(*args, ["deletion"])[0]["deletion"]


def insertion_curve(
    model: nn.Module,
    inputs: Tensor,
    maps: Tensor,
    target: int | Tensor | None = None,
    *,
    steps: int = 16,
    baseline: str | Tensor = "blur",
    task: str | None = None,
    chunk_size: int = 64,
) -> PerturbationCurve:
    """Insertion curve and AUC (Petsiuk, Das & Saenko, "RISE", BMVC 2018).

    Starts from the ``baseline`` image and puts the input's pixels back in the map's
    order (most important first) in ``steps`` equal steps; the curve's first point is
    the baseline and its last the unmodified input. A faithful map gives a high AUC.
    Arguments and returns as :func:`deletion_curve`.
    """
    args = (model, inputs, [maps], target, steps, baseline, task, chunk_size)
    return _curves(*args, ["insertion"])[0]["insertion"]


def random_maps(inputs: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """Uniform random maps ``(N, 1, H, W)``: the chance level of every score here.

    Args:
        inputs: Images ``(N, C, H, W)`` (only the shape and device are used).
        generator: Private generator on the inputs' device. Default: seeded with 0.

    Returns:
        ``(N, 1, H, W)`` float maps in ``[0, 1)``, on the inputs' device.
    """
    x = check_images(inputs)
    gen = _generator(generator, x.device)
    n, _, h, w = x.shape
    return torch.rand((n, 1, h, w), generator=gen, device=x.device, dtype=torch.float32)


# --------------------------------------------------------------------------- ROAD
def _neighbour_sum(v: Tensor) -> Tensor:
    """Weighted sum of each pixel's in-image neighbours, per channel ``(B, C, H, W)``."""
    c = v.shape[1]
    kernel = _NEIGHBOURS.to(v.device, v.dtype).view(1, 1, 3, 3).repeat(c, 1, 1, 1)
    return F.conv2d(v, kernel, padding=1, groups=c)


def linear_impute(
    x: Tensor, removed: Tensor, *, tol: float = 1e-6, max_iter: int | None = None
) -> Tensor:
    """Linear imputation of ``removed`` pixels from their neighbours (Rong et al. 2022).

    Every removed pixel becomes the weighted mean of its in-image neighbours (weights
    1/6 for the four edge neighbours, 1/12 for the four corners), solved jointly for all
    removed pixels: a sparse symmetric positive definite system, here solved batched
    on the device by Jacobi-preconditioned conjugate gradients instead of a sparse
    direct solver.

    Args:
        x: Images ``(B, C, H, W)``.
        removed: ``(B, 1, H, W)`` bool, the pixels to impute (not all of an image).
        tol: Stop when every image's residual norm is below ``tol`` times its
            right-hand side's norm. Default: ``1e-6``.
        max_iter: At most this many iterations. Default: ``4 * (H + W) + 50``.

    Returns:
        ``(B, C, H, W)`` images in ``x``'s dtype (half precision is solved in float32),
        the kept pixels unchanged.
    """
    if x.dtype in (torch.float16, torch.bfloat16):  # the solver's guards underflow there
        solved = linear_impute(x.float(), removed, tol=tol, max_iter=max_iter).to(x.dtype)
        return torch.where(removed.expand_as(x).bool(), solved, x)
    m = removed.to(x.dtype).expand_as(x)  # (B, C, H, W): 1 where unknown
    diag = _neighbour_sum(torch.ones_like(x[:1]))  # sum of in-image neighbour weights

    def apply(u: Tensor) -> Tensor:
        return m * (diag * u - _neighbour_sum(m * u))

    b = m * _neighbour_sum((1 - m) * x)
    inv = m / diag
    u = torch.zeros_like(x)
    r = b.clone()
    z = inv * r
    p = z.clone()
    rz = (r * z).flatten(1).sum(1)
    bnorm = b.flatten(1).norm(dim=1).clamp_min(1e-30)
    iters = max_iter if max_iter is not None else 4 * (x.shape[2] + x.shape[3]) + 50
    for _ in range(iters):
        if bool((r.flatten(1).norm(dim=1) <= tol * bnorm).all()):
            break
        ap = apply(p)
        alpha = rz / (p * ap).flatten(1).sum(1).clamp_min(1e-30)
        u = u + alpha.view(-1, 1, 1, 1) * p
        r = r - alpha.view(-1, 1, 1, 1) * ap
        z = inv * r
        rz_new = (r * z).flatten(1).sum(1)
        p = z + (rz_new / rz.clamp_min(1e-30)).view(-1, 1, 1, 1) * p
        rz = rz_new
    return torch.where(m.bool(), u, x)


def road(
    model: nn.Module,
    inputs: Tensor,
    maps: Tensor,
    target: int | Tensor | None = None,
    *,
    percentiles: Sequence[float] = (10, 20, 30, 40, 50, 60, 70, 80, 90),
    order: str = "morf",
    noise: float = 0.01,
    task: str | None = None,
    chunk_size: int = 64,
    generator: torch.Generator | None = None,
) -> RoadResult:
    """ROAD: RemOve And Debias (Rong, Leemann, Borisov, Kasneci & Kasneci, ICML 2022).

    For each percentage ``q`` in ``percentiles``, ``round(q / 100 * H * W)`` pixels
    are removed: the most important first (``"morf"``) or the least important first
    (``"lerf"``), and filled by noisy linear imputation (:func:`linear_impute`, plus
    Gaussian noise of standard deviation ``noise``). The probability of the explained
    class is read on each imputed image. A faithful map: low MoRF, high LeRF.

    ``percentiles`` here are the percent *removed*; pytorch-grad-cam's
    ``ROADMostRelevantFirst(percentile=p)`` keeps the pixels below the ``p``-th
    percentile of the map, i.e. removes ``100 - p`` percent.

    Args:
        model: Classifier returning logits ``(N, K)``; ``ModelView`` for pixel space.
        inputs: Images ``(N, C, H, W)``.
        maps: Importance maps ``(N, 1, H, W)`` or ``(N, H, W)``.
        target: Class indices ``(N,)``, one int, or ``None`` (predicted).
        percentiles: Percent of pixels removed, each in ``(0, 100)``.
            Default: 10, 20, ..., 90.
        order: ``"morf"`` (most relevant first) or ``"lerf"``. Default: ``"morf"``.
        noise: Standard deviation of the noise added to imputed values (in the
            inputs' units), ``>= 0``. Default: ``0.01`` (the paper's).
        task: As in :func:`deletion_curve`.
        chunk_size: Images imputed and classified at once. Default: 64.
        generator: Private generator for the noise. Default: seeded with 0.

    Returns:
        :class:`RoadResult` (``score`` ``(N,)``, ``curve`` ``(N, P)``, ``clean``,
        ``percentiles``), on the inputs' device.

    Raises:
        TypeError, ValueError: As :func:`deletion_curve`; percentiles outside
            ``(0, 100)``, a bad ``order`` or ``noise``.
    """
    check_choice(order, "order", ORDERS)
    noise = check_float(noise, "noise", minimum=0.0)
    chunk_size = check_int(chunk_size, "chunk_size", minimum=1)
    if getattr(percentiles, "ndim", None) == 1:  # a numpy array or a tensor of them
        percentiles = [float(q) for q in percentiles]  # type: ignore[union-attr]
    bad = isinstance(percentiles, str | bytes) or not isinstance(percentiles, Sequence)
    if bad or not percentiles:
        fail(
            "percentiles", "a non-empty sequence of percentages in (0, 100)", percentiles, TypeError
        )
    qs = [check_float(q, "percentiles", positive=True) for q in percentiles]
    if any(q >= 100 for q in qs):
        fail("percentiles", "percentages in (0, 100)", list(percentiles))
    x, (flat,), idx, task_name, clean = _prepare(model, inputs, [maps], target, task, chunk_size)
    n, c, h, w = x.shape
    pixels = h * w
    gen = _generator(generator, x.device)
    rank = _order(flat if order == "morf" else -flat).view(n, 1, h, w)
    counts = torch.tensor([round(q / 100 * pixels) for q in qs], device=x.device)
    points = len(qs)

    def make_batch(a: int, b: int) -> tuple[Tensor, Tensor]:
        rows = torch.arange(a, b, device=x.device)
        sample, point = rows // points, rows % points
        removed = rank[sample] < counts[point].view(-1, 1, 1, 1)
        filled = linear_impute(x[sample], removed)
        noisy = row_noise(filled.shape, gen, x)  # the same noise whatever the chunk size
        return torch.where(removed, filled + noise * noisy, filled), sample

    with torch.no_grad(), preserve_state(model) as net:
        curve = _probabilities(net, make_batch, n * points, idx, task_name, chunk_size).view(
            n, points
        )
    pct = torch.tensor(qs, device=x.device)
    return RoadResult(curve.mean(dim=1), curve, clean, pct)
