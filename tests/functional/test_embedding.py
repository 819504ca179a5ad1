"""Tests for lightning_viz.functional.embedding, with scikit-learn as the oracle."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_score
from sklearn.neighbors import NearestNeighbors

from lightning_viz.functional import embedding as E


def _planted(n=200, d=10, seed=0):
    """Points on a known 2-D plane in R^d (+ tiny noise), with their plane coordinates."""
    g = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(d, 2, generator=g, dtype=torch.float64))  # (d, 2)
    # exactly uncorrelated, zero-mean plane coordinates with variances 50^2 : 10^2
    c = torch.randn(n, 2, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(c - c.mean(0))
    coords = q * torch.tensor([50.0, 10.0], dtype=torch.float64)
    x = coords @ basis.T + 3.0 + 1e-4 * torch.randn(n, d, generator=g, dtype=torch.float64)
    return x, coords


def _clusters(n_per=30, d=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(3, d, generator=g) * 20
    x = torch.cat([c + torch.randn(n_per, d, generator=g) for c in centers])
    y = torch.arange(3).repeat_interleave(n_per)
    return x, y


# --------------------------------------------------------------------------- pca


def test_pca_recovers_planted_plane():
    x, coords = _planted()
    out = E.pca(x, dim=2)
    assert out.shape == (200, 2) and out.dtype == torch.float64
    # the first component is the high-variance plane axis, the second the other one
    c = coords - coords.mean(0)
    for j in range(2):
        corr = torch.corrcoef(torch.stack([out[:, j], c[:, j]]))[0, 1]
        assert abs(float(corr)) > 0.9999
    # distances within the plane are preserved
    torch.testing.assert_close(torch.cdist(out, out), torch.cdist(c, c), atol=1e-3, rtol=0)


def test_pca_matches_sklearn_up_to_sign():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(50, 8, generator=g) @ torch.randn(8, 8, generator=g)
    ours = E.pca(x, dim=3).double().numpy()
    ref = PCA(n_components=3).fit_transform(x.double().numpy())
    signs = np.sign((ours * ref).sum(0))
    np.testing.assert_allclose(ours, ref * signs, atol=1e-3)


def test_pca_sign_convention_is_deterministic():
    x, _ = _planted(seed=2)
    out = E.pca(x)
    torch.testing.assert_close(E.pca(-x), -out)  # flipping the data flips the projection
    assert torch.equal(E.pca(x), out)
    # largest-|loading| entry of each component is positive: recover loadings by regression
    xc = x - x.mean(0)
    loadings = torch.linalg.lstsq(out, xc).solution  # (2, D)
    for row in loadings:
        assert row[row.abs().argmax()] > 0


def test_pca_float32_keeps_dtype_and_does_not_mutate():
    x = torch.randn(20, 5)
    before = x.clone()
    out = E.pca(x, dim=1)
    assert out.dtype == torch.float32 and out.shape == (20, 1)
    assert torch.equal(x, before)


@pytest.mark.parametrize(
    ("features", "kwargs", "err", "match"),
    [
        ([[1.0, 2.0]], {}, TypeError, "torch.Tensor.*list"),
        (torch.ones(4, 3, dtype=torch.long), {}, TypeError, "torch.int64"),
        (torch.ones(4), {}, ValueError, r"\(N, D\).*\(4,\)"),
        (torch.ones(1, 3), {}, ValueError, r"`features` .* N >= 2, got <shape \(1, 3\)>"),
        (torch.ones(4, 0), {}, ValueError, r"`features` .*non-empty.* got <shape \(4, 0\)>"),
        (
            torch.tensor([[0.0, float("nan")], [1.0, 2.0]]),
            {},
            ValueError,
            "`features` must be finite, got <1 NaN or infinite values>",
        ),
        (torch.tensor([[0.0, float("inf")], [1.0, 2.0]]), {}, ValueError, "`features` .* infinite"),
        (torch.randn(10, 3), {"dim": 0}, ValueError, "`dim` must be an int >= 1 and <= 3, got 0"),
        (torch.randn(10, 3), {"dim": 4}, ValueError, "`dim` must be an int >= 1 and <= 3, got 4"),
        (torch.randn(10, 3), {"dim": 2.0}, TypeError, "dim.*2.0"),
    ],
)
def test_pca_validation(features, kwargs, err, match):
    with pytest.raises(err, match=match):
        E.pca(features, **kwargs)


# --------------------------------------------------------------------------- tsne


def test_tsne_separates_clusters_and_is_deterministic():
    x, y = _clusters()
    rng = torch.get_rng_state()
    np_state = np.random.get_state()[1].copy()
    emb = E.tsne(x, seed=3)
    assert torch.equal(torch.get_rng_state(), rng)
    assert np.array_equal(np.random.get_state()[1], np_state)
    assert emb.shape == (90, 2) and emb.dtype == torch.float32
    assert E.knn_accuracy(emb, y, k=5) == 1.0
    assert torch.equal(E.tsne(x, seed=3), emb)


def test_tsne_small_n_and_pca_reduction():
    # perplexity 30 > (N - 1) / 3 is clipped (sklearn would reject perplexity >= N)
    x, y = _clusters(n_per=4, d=80)
    emb = E.tsne(x, perplexity=30.0, pca_dim=5)
    assert emb.shape == (12, 2)
    assert bool(torch.isfinite(emb).all())
    assert E.tsne(x[:2]).shape == (2, 2)


def test_tsne_uses_opentsne_when_importable(monkeypatch):
    calls = {}

    class FakeTSNE:
        def __init__(self, **kwargs):
            calls.update(kwargs)

        def fit(self, data):
            calls["data_shape"] = data.shape
            return np.arange(data.shape[0] * 2, dtype=np.float64).reshape(-1, 2)

    monkeypatch.setitem(sys.modules, "openTSNE", types.SimpleNamespace(TSNE=FakeTSNE))
    x = torch.randn(10, 60)
    out = E.tsne(x, perplexity=30.0, seed=7, pca_dim=4)
    torch.testing.assert_close(out, torch.arange(20, dtype=torch.float32).reshape(10, 2))
    assert calls["random_state"] == 7 and calls["n_components"] == 2
    assert calls["perplexity"] == pytest.approx(3.0)  # clipped to (10 - 1) / 3
    assert calls["data_shape"] == (10, 4)  # PCA pre-reduction to pca_dim


def test_tsne_leaves_the_global_random_streams_as_they_were(tmp_path, monkeypatch, request):
    """The first LF.tsne of a process moved Python's `random` stream: its lazy import of
    scikit-learn imports scipy.stats, which draws from `random` (here a stand-in module
    draws from both global streams when imported)."""
    import random

    (tmp_path / "openTSNE.py").write_text(
        "import random\nimport numpy as np\nrandom.random()\nnp.random.rand()\n"
        "class TSNE:\n    def __init__(self, **kwargs):\n"
        "        self.dim = kwargs['n_components']\n"
        "    def fit(self, data):\n        return np.zeros((len(data), self.dim))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "openTSNE", raising=False)
    request.addfinalizer(lambda: sys.modules.pop("openTSNE", None))  # the stand-in goes
    random.seed(0)
    np.random.seed(0)
    E.tsne(torch.randn(10, 4))
    assert "openTSNE" in sys.modules  # imported now, by tsne
    assert random.random() == random.Random(0).random()
    assert np.random.rand() == np.random.RandomState(0).rand()


def test_a_first_import_on_another_thread_rewinds_nothing(tmp_path, monkeypatch, request):
    """On the callbacks' worker, a restore of the global random state after the import
    rewound the draws the main thread made meanwhile (repeated augmentations)."""
    import random
    import threading

    (tmp_path / "lv_draws_on_import.py").write_text("import random\nrandom.random()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    request.addfinalizer(lambda: sys.modules.pop("lv_draws_on_import", None))
    random.seed(0)
    worker = threading.Thread(target=E._first_import, args=("lv_draws_on_import",))
    worker.start()
    worker.join()
    assert "lv_draws_on_import" in sys.modules
    expected = random.Random(0)
    expected.random()  # the import's draw stands: nothing is put back from the worker
    assert random.random() == expected.random()


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"perplexity": 0.0}, ValueError, "`perplexity` must be a finite number > 0, got 0.0"),
        ({"perplexity": float("inf")}, ValueError, "`perplexity` .* got inf"),
        ({"perplexity": "5"}, TypeError, "perplexity.*'5'"),
        ({"dim": 0}, ValueError, "dim.*>= 1, got 0"),
        ({"seed": -1}, ValueError, "seed.*-1"),
        ({"pca_dim": None}, TypeError, "pca_dim.*None"),
    ],
)
def test_tsne_validation(kwargs, err, match):
    with pytest.raises(err, match=match):
        E.tsne(torch.randn(10, 4), **kwargs)


def test_tsne_validation_features():
    with pytest.raises(ValueError, match=r"`features` .* N >= 2, got <shape \(1, 4\)>"):
        E.tsne(torch.randn(1, 4))


# --------------------------------------------------------------------------- knn_accuracy

# 1-D points 0, 1, 3, 10, 12 with labels a a b b b (no distance ties)
_X = torch.tensor([[0.0], [1.0], [3.0], [10.0], [12.0]])
_Y = torch.tensor([0, 0, 1, 1, 1])


@pytest.mark.parametrize(
    ("k", "expected"),
    [
        # k=1: 3's nearest other point is 1 (label a) -> wrong; others right (self excluded;
        # with self included it would be 1.0)
        (1, 4 / 5),
        # k=2: 0 -> {1, 3} tie, nearest is 1 (a) right; 1 -> {0, 3} tie -> 0 (a) right;
        # 3 -> {1, 0} a a wrong; 10, 12 right
        (2, 4 / 5),
        # k=3: 0 -> a b b wrong; 1 -> a b b wrong; 3 -> a a b wrong; 10, 12 right
        (3, 2 / 5),
        # k=4: 3 -> tie a a b b, nearest 1 (a) wrong; 10 -> tie, nearest 12 (b) right;
        # 12 -> tie, nearest 10 (b) right (a smallest-label tie break would give 0 / 5)
        (4, 2 / 5),
    ],
)
def test_knn_accuracy_hand_computed(k, expected):
    assert E.knn_accuracy(_X, _Y, k=k) == pytest.approx(expected)
    # labels need not be contiguous
    assert E.knn_accuracy(_X, _Y * 5 + 3, k=k) == pytest.approx(expected)


def test_knn_accuracy_chunked_equals_unchunked(monkeypatch):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(37, 4, generator=g)
    y = torch.randint(0, 3, (37,), generator=g)
    full = E.knn_accuracy(x, y, k=3)
    monkeypatch.setattr(E, "_CDIST_CHUNK", 5)
    assert E.knn_accuracy(x, y, k=3) == full


def test_knn_accuracy_matches_sklearn_neighbors():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(60, 3, generator=g, dtype=torch.float64)
    y = (x[:, 0] + 0.5 * torch.randn(60, generator=g, dtype=torch.float64) > 0).long()
    k = 5  # two classes, odd k: no vote ties
    idx = NearestNeighbors(n_neighbors=k + 1).fit(x.numpy()).kneighbors(return_distance=False)
    # kneighbors() without X excludes each point itself
    idx = NearestNeighbors(n_neighbors=k).fit(x.numpy()).kneighbors(return_distance=False)
    votes = y.numpy()[idx].mean(1) > 0.5
    expected = float((votes.astype(int) == y.numpy()).mean())
    assert E.knn_accuracy(x, y, k=k) == pytest.approx(expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_knn_accuracy_does_not_move_with_a_common_offset(dtype):
    """Features far from the origin relative to their spread (un-centred activations):
    cdist's matrix-product form in float32 mis-ordered near neighbours (0.870 for the
    exact 0.865)."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (200,), generator=g)
    centers = torch.randn(4, 16, generator=g, dtype=torch.float64)
    base = (centers[y] * 0.7 + torch.randn(200, 16, generator=g, dtype=torch.float64)) * 0.05
    idx = NearestNeighbors(n_neighbors=1).fit(base.numpy()).kneighbors(return_distance=False)
    exact = float((y.numpy()[idx[:, 0]] == y.numpy()).mean())  # k=1: the nearest other point
    assert E.knn_accuracy(base.to(dtype), y, k=1) == pytest.approx(exact)
    assert E.knn_accuracy((base + 50.0).to(dtype), y, k=1) == pytest.approx(exact)
    if dtype == torch.float64:  # float32 cannot hold 1e6 + 0.05-spread features
        assert E.knn_accuracy(base + 1e6, y, k=1) == pytest.approx(exact)  # needs the centring


def test_knn_accuracy_of_clusters_far_apart_in_float32():
    """Two clusters 10,000 spreads apart whose labels vary inside each: centring leaves
    the offset between them, and float32 matrix-product distances gave 0.440 for 0.563."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 16, generator=g)
    x[:, 0] += torch.randint(0, 2, (600,), generator=g) * 1e4
    y = (x[:, 1] > 0).long() + 2 * (x[:, 2] > 0).long()
    idx = NearestNeighbors(n_neighbors=1).fit(x.double().numpy()).kneighbors(return_distance=False)
    exact = float((y.numpy()[idx[:, 0]] == y.numpy()).mean())
    assert E.knn_accuracy(x, y, k=1) == pytest.approx(exact)


@pytest.mark.parametrize(
    ("labels", "k", "err", "match"),
    [
        (torch.tensor([0.0, 1, 1, 0, 1]), 1, TypeError, "integer tensor.*float32"),
        ([0, 0, 1, 1, 1], 1, TypeError, "`labels` must be a tensor .* got <list>"),
        (torch.tensor([0, 1, 1]), 1, ValueError, r"`labels` .* \(5,\), got <shape \(3,\)>"),
        (_Y, 0, ValueError, "`k` must be an int >= 1 and <= 4, got 0"),
        (_Y, 5, ValueError, "`k` must be an int >= 1 and <= 4, got 5"),
        (_Y, 2.5, TypeError, "k.*2.5"),
    ],
)
def test_knn_accuracy_validation(labels, k, err, match):
    with pytest.raises(err, match=match):
        E.knn_accuracy(_X, labels, k=k)


def test_negative_labels_are_labels_too():
    x, y = _clusters(n_per=6, d=3, seed=2)
    assert E.knn_accuracy(x, y - 5, k=3) == E.knn_accuracy(x, y, k=3)
    assert E.silhouette(x, y - 5) == pytest.approx(E.silhouette(x, y))


# --------------------------------------------------------------------------- silhouette


def test_silhouette_equals_sklearn():
    x, y = _clusters(n_per=10, d=5, seed=5)
    x = x + torch.randn(30, 5, generator=torch.Generator().manual_seed(0)) * 10
    ref = silhouette_score(x.double().numpy(), y.numpy(), metric="euclidean")
    assert E.silhouette(x, y) == pytest.approx(ref, rel=1e-6)


def test_silhouette_equals_sklearn_with_singletons_uneven_classes_and_chunks():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(41, 4, generator=gen)
    y = torch.tensor([7] * 20 + [2] * 15 + [9] * 5 + [4])  # a class of one, unsorted labels
    ref = silhouette_score(x.double().numpy(), y.numpy(), metric="euclidean")
    assert E.silhouette(x, y) == pytest.approx(ref, rel=1e-9)
    assert E.silhouette(x, y, chunk_size=7) == pytest.approx(ref, rel=1e-9)


def test_silhouette_undefined_is_nan():
    x = torch.randn(6, 3)
    assert np.isnan(E.silhouette(x, torch.zeros(6, dtype=torch.long)))
    assert np.isnan(E.silhouette(x, torch.arange(6)))


def test_silhouette_validation():
    with pytest.raises(ValueError, match=r"`labels` .* \(6,\), got <shape \(2, 3\)>"):
        E.silhouette(torch.randn(6, 3), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="floating-point.*int64"):
        E.silhouette(torch.ones(6, 3, dtype=torch.long), torch.zeros(6, dtype=torch.long))
