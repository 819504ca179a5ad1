"""Projections and quality scores for feature embeddings ``(N, D)``.

``pca`` is pure torch; ``tsne`` and ``silhouette`` call scikit-learn (or openTSNE
when it is installed) on a CPU numpy copy and return to the input's device.
``knn_accuracy`` is pure torch, batched with :func:`torch.cdist`.

Examples:
    >>> import torch
    >>> import lightning_viz.functional.embedding as E
    >>> feats = torch.randn(100, 16)
    >>> labels = torch.randint(0, 3, (100,))
    >>> E.pca(feats).shape
    torch.Size([100, 2])
    >>> 0.0 <= E.knn_accuracy(feats, labels, k=5) <= 1.0
    True
"""

from __future__ import annotations

import importlib
import random
import sys
import threading
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lightning_viz._checks import check_float, check_int, check_labels, check_tensor, fail

__all__ = ["knn_accuracy", "pca", "silhouette", "tsne"]

_CDIST_CHUNK = 1024  # query rows per torch.cdist call


def check_features(features: Any, name: str = "features", *, min_rows: int = 1) -> Tensor:
    """Finite floating-point features ``(N, D)`` with ``N >= min_rows`` and ``D >= 1``."""
    check_tensor(features, name, "(N, D)", dim=2, floating=True)
    if features.shape[0] < min_rows:
        fail(name, f"a tensor (N, D) with N >= {min_rows}", f"<shape {tuple(features.shape)}>")
    if not bool(torch.isfinite(features).all()):
        fail(name, "finite", f"<{int((~torch.isfinite(features)).sum())} NaN or infinite values>")
    return features


def pca(features: Tensor, dim: int = 2) -> Tensor:
    """Principal component projection of centered features.

    Computed with an SVD of the centered matrix (``X - mean = U S V^T``,
    projection ``U S`` restricted to the first ``dim`` components). The sign of
    each component is fixed so that its largest-magnitude loading (entry of
    ``V``) is positive, which makes the result deterministic; up to sign it equals
    ``sklearn.decomposition.PCA(dim).fit_transform``.

    Args:
        features: ``(N, D)`` float features, ``N >= 2``.
        dim: Number of components, ``1 <= dim <= min(N, D)``. Default: ``2``.

    Returns:
        ``(N, dim)`` projection, same dtype and device as ``features``.

    Raises:
        TypeError: ``features`` is not a float tensor or ``dim`` not an int.
        ValueError: Wrong shape, non-finite values, or ``dim`` out of range.
    """
    features = check_features(features, min_rows=2)
    n, d = features.shape
    dim = check_int(dim, "dim", minimum=1, maximum=min(n, d))
    x = features.detach()
    work = x.double() if x.dtype == torch.float64 else x.float()
    xc = work - work.mean(dim=0, keepdim=True)  # (N, D)
    _, _, vh = torch.linalg.svd(xc, full_matrices=False)  # vh: (min(N, D), D)
    comps = vh[:dim]  # (dim, D)
    pivot = comps.abs().argmax(dim=1)  # (dim,)
    signs = torch.sign(comps.gather(1, pivot[:, None]))  # (dim, 1)
    signs = torch.where(signs == 0, torch.ones_like(signs), signs)
    comps = comps * signs
    return (xc @ comps.T).to(features.dtype)  # (N, dim)


def tsne(
    features: Tensor,
    *,
    dim: int = 2,
    perplexity: float = 30.0,
    seed: int = 0,
    pca_dim: int = 50,
) -> Tensor:
    """t-SNE embedding (van der Maaten & Hinton, "Visualizing Data using t-SNE", 2008).

    The features are first reduced to ``pca_dim`` dimensions with :func:`pca` (if
    ``D > pca_dim``), then embedded with openTSNE when it is installed (for
    ``dim <= 2``), otherwise with ``sklearn.manifold.TSNE(init="pca",
    random_state=seed)`` (Barnes-Hut for ``dim < 4``, exact otherwise). The
    perplexity is clipped to ``(N - 1) / 3`` so small probe sets work. The result is
    deterministic for a given ``seed`` and never touches the global RNG.

    Args:
        features: ``(N, D)`` float features, ``N >= 2``.
        dim: Output dimensions. Default: ``2``.
        perplexity: Effective number of neighbours, ``> 0``. Default: ``30.0``.
        seed: Random state of the optimizer. Default: ``0``.
        pca_dim: Dimensions kept by the PCA pre-reduction. Default: ``50``.

    Returns:
        ``(N, dim)`` float32 embedding on the device of ``features``.

    Raises:
        TypeError: Wrong argument types.
        ValueError: Wrong shape, non-finite values, ``N < 2``, or
            non-positive ``dim``/``perplexity``/``pca_dim``.
    """
    features = check_features(features, min_rows=2)
    dim = check_int(dim, "dim", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    pca_dim = check_int(pca_dim, "pca_dim", minimum=1)
    perplexity = check_float(perplexity, "perplexity", positive=True)
    n, d = features.shape
    x = features.detach().float()
    if d > pca_dim:
        x = pca(x, dim=min(pca_dim, n))
    data = x.cpu().numpy().astype(np.float32)
    perp = float(min(perplexity, (n - 1) / 3.0))
    emb = _tsne_opentsne(data, dim, perp, seed) if dim <= 2 else None
    if emb is None:
        emb = _tsne_sklearn(data, dim, perp, seed)
    return torch.as_tensor(np.asarray(emb, dtype=np.float32), device=features.device)


def _first_import(name: str) -> Any:
    """``import name``; a first import on the main thread leaves Python's and NumPy's
    global random streams as they were (``scipy.stats``, which scikit-learn imports,
    draws from ``random`` when first imported). On another thread (the callbacks'
    worker, which finds it imported already) a restore would rewind the draws the
    main thread made meanwhile."""
    if name in sys.modules or threading.current_thread() is not threading.main_thread():
        return importlib.import_module(name)
    state, np_state = random.getstate(), np.random.get_state()
    try:
        return importlib.import_module(name)
    finally:
        random.setstate(state)
        np.random.set_state(np_state)


def _tsne_opentsne(data: np.ndarray, dim: int, perplexity: float, seed: int) -> np.ndarray | None:
    try:
        openTSNE = _first_import("openTSNE")  # optional, faster for large N  # noqa: N806
    except ImportError:
        return None
    model = openTSNE.TSNE(
        n_components=dim, perplexity=perplexity, random_state=seed, initialization="pca", n_jobs=1
    )
    return np.asarray(model.fit(data))


def _tsne_sklearn(data: np.ndarray, dim: int, perplexity: float, seed: int) -> np.ndarray:
    model = _first_import("sklearn.manifold").TSNE(
        n_components=dim,
        perplexity=perplexity,
        init="pca",
        random_state=seed,
        method="barnes_hut" if dim < 4 else "exact",
    )
    return model.fit_transform(data)


def knn_accuracy(features: Tensor, labels: Tensor, k: int = 5) -> float:
    """Leave-one-out k-nearest-neighbour accuracy of the labels in feature space.

    Each point is classified by a majority vote of its ``k`` nearest *other* points
    (Euclidean distance, the point itself excluded); a tied vote goes to the tied
    label whose closest member is nearest. Distances are computed in chunks with
    :func:`torch.cdist` on the features' device.

    Args:
        features: ``(N, D)`` float features, ``N >= 2``.
        labels: ``(N,)`` integer labels.
        k: Number of neighbours, ``1 <= k <= N - 1``. Default: ``5``.

    Returns:
        The fraction of points whose vote equals their label, in ``[0, 1]``.

    Raises:
        TypeError: Wrong argument types.
        ValueError: Wrong shapes, non-finite values, or ``k`` out of range.
    """
    features = check_features(features, min_rows=2)
    n = features.shape[0]
    labels = check_labels(labels, "labels", n, allow_negative=True)
    k = check_int(k, "k", minimum=1, maximum=n - 1)
    # centred, in float64: cdist's matrix-product form cancels the digits of an offset
    # far above the spread (common, or between clusters), and mis-ordered near neighbours
    x = features.detach().double()
    x = x - x.mean(dim=0)
    _, lab = torch.unique(labels.to(x.device), return_inverse=True)  # contiguous 0..L-1
    n_labels = int(lab.max()) + 1
    ranks = torch.arange(k, device=x.device)
    correct = 0
    for start in range(0, n, _CDIST_CHUNK):
        stop = min(start + _CDIST_CHUNK, n)
        dist = torch.cdist(x[start:stop], x)  # (B, N)
        rows = torch.arange(stop - start, device=x.device)
        dist[rows, rows + start] = float("inf")  # leave one out
        nn_idx = dist.topk(k, dim=1, largest=False, sorted=True).indices  # (B, k)
        onehot = torch.nn.functional.one_hot(lab[nn_idx], n_labels).bool()  # (B, k, L)
        counts = onehot.sum(dim=1)  # (B, L)
        first = torch.where(onehot, ranks[None, :, None], k).amin(dim=1)  # (B, L)
        score = counts * (k + 1) + (k - first)  # votes first, then nearest member
        pred = score.argmax(dim=1)
        correct += int((pred == lab[start:stop]).sum())
    return correct / n


def silhouette(features: Tensor, labels: Tensor, *, chunk_size: int = 2048) -> float:
    """Mean silhouette coefficient of the labels (Euclidean), in torch.

    Rousseeuw, "Silhouettes: a graphical aid to the interpretation and validation
    of cluster analysis", 1987. For each sample, ``a`` is its mean distance to the
    other members of its class and ``b`` the smallest mean distance to another
    class; its coefficient is ``(b - a) / max(a, b)``, 0 for a class of one. The
    same definition as ``sklearn.metrics.silhouette_score``, computed with
    ``torch.cdist`` in row chunks (no ``N x N`` matrix beyond ``chunk_size`` rows).

    Args:
        features: ``(N, D)`` float features.
        labels: ``(N,)`` integer labels.
        chunk_size: Rows of the distance matrix computed at once. Default: 2048.

    Returns:
        The mean coefficient in ``[-1, 1]``, or ``nan`` when it is undefined: fewer
        than 2 distinct labels, or every point its own label.

    Raises:
        TypeError: Wrong argument types.
        ValueError: Wrong shapes or non-finite values.
    """
    features = check_features(features)
    labels = check_labels(labels, "labels", features.shape[0], allow_negative=True)
    chunk_size = check_int(chunk_size, "chunk_size", minimum=1)
    n = features.shape[0]
    _, inverse = torch.unique(labels.detach(), return_inverse=True)
    n_labels = int(inverse.max()) + 1
    if n_labels < 2 or n_labels > n - 1:
        return float("nan")
    x = features.detach().double()
    onehot = torch.nn.functional.one_hot(inverse.to(x.device), n_labels).double()  # (N, L)
    counts = onehot.sum(dim=0)  # (L,)
    sums = torch.cat(
        [torch.cdist(x[i : i + chunk_size], x) @ onehot for i in range(0, n, chunk_size)]
    )  # (N, L): summed distance of each sample to each class
    rows = torch.arange(n, device=x.device)
    own = counts[inverse]  # (N,)
    a = sums[rows, inverse] / (own - 1).clamp(min=1)
    mean_to = sums / counts
    mean_to[rows, inverse] = float("inf")
    b = mean_to.min(dim=1).values
    coeff = (b - a) / torch.maximum(a, b).clamp(min=torch.finfo(torch.float64).tiny)
    coeff = torch.where(own > 1, coeff, torch.zeros_like(coeff))
    return float(coeff.mean())
