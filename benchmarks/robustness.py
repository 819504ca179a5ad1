"""Robust accuracy and t-SNE: lightning_viz vs torchattacks and scikit-learn.

Robustness. Trains ``lightning_viz.data.SmallCNN`` on the built-in
``ShapesTexturesDataModule`` (3x32x32, plain torch, a few hundred Adam steps; a
normally trained small CNN is far from robust at 8/255), then on one batch of
held-out images times

* PGD-10 Linf at eps 8/255 (and the other ``--eps``): ``robust_accuracy(attack="pgd")``
  (early exit + best iterate) against ``torchattacks.PGD`` followed by the accuracy
  on its output (same eps, alpha, steps, both with random start), and once without
  random start (both visit the same iterates, so ours <= theirs exactly);
* FGSM Linf: ``fgsm`` against ``torchattacks.FGSM`` (adversarial images only), and
  ``robust_accuracy(attack="fgsm")`` against ``torchattacks.FGSM`` + accuracy;
* APGD-CE and APGD-T (targeted DLR, 9 target classes) Linf at the first eps:
  ``apgd_mask`` against ``torchattacks.APGD`` / ``torchattacks.APGDT`` + accuracy (same
  eps, ``--apgd-steps``, one restart; different random starts).

The same rows follow for a CNN on scikit-learn's bundled digits (1x32x32), where the
model stays robust at 8/255 and early exit has little to skip (``--no-digits`` skips
them).

t-SNE. ``lightning_viz.functional.tsne`` (PCA to 50 dims first) against
``sklearn.manifold.TSNE(init="pca", random_state=0)`` on 2,000 x 512 features drawn
from 10 Gaussian clusters, with the leave-one-out 5-NN accuracy of both embeddings
(``--no-tsne`` skips it).

Prints markdown tables with the machine, wall-clock and process CPU time. Run::

    python benchmarks/robustness.py [--threads 1] [--repeats 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_viz.functional.apgd import apgd_mask
from lightning_viz.functional.attacks import fgsm, robust_accuracy


# ------------------------------------------------------------------------ setup
def machine_info(device: torch.device) -> str:
    """One line describing the machine the numbers come from."""
    cpu = platform.processor() or platform.machine()
    parts = [
        f"{platform.system()} {platform.release()}",
        f"{cpu}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}",
        f"Python {platform.python_version()}, torch {torch.__version__}",
    ]
    if device.type == "cuda":
        parts.append(torch.cuda.get_device_name(device))
    try:
        import torchattacks

        parts.append(f"torchattacks {torchattacks.__version__}")
    except (ImportError, AttributeError):
        pass
    return "; ".join(parts)


def load_digits_32(seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """sklearn digits as ``(N, 1, 32, 32)`` images in ``[0, 1]``; train/test split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=32, mode="bilinear", align_corners=False).clamp(0, 1)
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    x, y = x[perm], y[perm]
    return x[:-400], y[:-400], x[-400:], y[-400:]


def load_shapes(
    train_size: int = 4000, val_size: int = 512, seed: int = 0
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The built-in shapes data ``(N, 3, 32, 32)`` in ``[0, 1]``; train and val sets."""
    from lightning_viz.data import ShapesTexturesDataModule

    dm = ShapesTexturesDataModule(train_size=train_size, val_size=val_size, seed=seed)
    dm.setup("fit")
    tr, va = dm.train_dataset, dm.val_dataset
    return tr.images.float(), tr.labels.long(), va.images.float(), va.labels.long()


def small_cnn(channels: int = 1, classes: int = 10) -> nn.Module:
    """Three conv blocks and a linear head, for 32 px inputs."""
    return nn.Sequential(
        nn.Conv2d(channels, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 16
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 8
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 4
        nn.Flatten(),
        nn.Linear(64 * 4 * 4, classes),
    )


def train(model: nn.Module, x: Tensor, y: Tensor, steps: int = 300, seed: int = 0) -> float:
    """Adam, batch 64; returns the training seconds."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        i = torch.randint(0, len(y), (64,), device=x.device)
        loss = F.cross_entropy(model(x[i]), y[i])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    model.eval()
    return time.perf_counter() - start


# ----------------------------------------------------------------------- timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_pair(
    fn_a: Callable[[], object], fn_b: Callable[[], object], device: torch.device, repeats: int
) -> tuple[float, object, float, object]:
    """Median wall seconds of ``fn_a`` and ``fn_b``, alternated (fair under a noisy
    load), after one warm-up each; and their last results. The median process CPU
    seconds of each are kept in :data:`LAST_CPU`."""
    out_a, out_b = fn_a(), fn_b()
    times_a, times_b, cpu_a, cpu_b = [], [], [], []
    for _ in range(repeats):
        for fn, times, cpus in ((fn_a, times_a, cpu_a), (fn_b, times_b, cpu_b)):
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            out = fn()
            _sync(device)
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
            if fn is fn_a:
                out_a = out
            else:
                out_b = out
    LAST_CPU[:] = [statistics.median(cpu_a), statistics.median(cpu_b)]
    return statistics.median(times_a), out_a, statistics.median(times_b), out_b


LAST_CPU: list[float] = [float("nan"), float("nan")]


class Counting(nn.Module):
    """Counts sample-forwards through ``model``: total, and those building a graph."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.train(model.training)  # torchattacks restores the wrapper's mode on exit
        self.forwards = 0
        self.with_grad = 0

    def forward(self, x: Tensor) -> Tensor:
        self.forwards += x.shape[0]
        if torch.is_grad_enabled() and x.requires_grad:
            self.with_grad += x.shape[0]
        return self.model(x)


def count_passes(run: Callable[[nn.Module], object], model: nn.Module) -> str:
    """``"forwards (with backward)"`` sample counts of one untimed ``run(counting_model)``."""
    flags = [m.training for m in model.modules()]
    counting = Counting(model)
    run(counting)
    for m, flag in zip(model.modules(), flags, strict=True):  # never leave BN in train mode
        m.train(flag)
    return f"{counting.forwards} ({counting.with_grad})"


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    return (model(x).argmax(-1) == y).float().mean().item()


# -------------------------------------------------------------------- sections
def bench_pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    steps: int,
    repeats: int,
    random_start: bool = True,
) -> dict[str, object]:
    """PGD row: ``robust_accuracy`` vs torchattacks.PGD + accuracy on its output."""
    import torchattacks

    device = x.device
    alpha = 2.5 * eps / steps  # our default step size; 2/255 for eps 8/255, 10 steps

    def ours(m: nn.Module) -> float:
        gen = torch.Generator(device=device).manual_seed(0)
        return robust_accuracy(
            m, x, y, eps, steps=steps, step_size=alpha, random_start=random_start, generator=gen
        )

    def theirs(m: nn.Module) -> float:
        atk = torchattacks.PGD(m, eps=eps, alpha=alpha, steps=steps, random_start=random_start)
        return accuracy(m, atk(x, y), y)

    t_ours, acc_ours, t_ta, acc_ta = time_pair(
        lambda: ours(model), lambda: theirs(model), device, repeats
    )
    start = "random start" if random_start else "no random start"
    row = _row(
        f"PGD-{steps} Linf robust acc, eps {eps * 255:g}/255, {start}",
        t_ours,
        acc_ours,
        t_ta,
        acc_ta,
    )
    row["ours_passes"] = count_passes(ours, model)
    row["ta_passes"] = count_passes(theirs, model)
    return row


def pgd_over_starts(
    model: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int, starts: int
) -> None:
    """Robust accuracy of PGD with random start, over ``starts`` different random starts.

    One random start decides a few borderline samples either way, and the two
    libraries draw different starts; the mean over several is the fair comparison.
    """
    import torchattacks

    alpha = 2.5 * eps / steps
    ours, theirs = [], []
    for seed in range(starts):
        gen = torch.Generator(device=x.device).manual_seed(seed)
        ours.append(robust_accuracy(model, x, y, eps, steps=steps, step_size=alpha, generator=gen))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # torchattacks draws its start from the global RNG
            atk = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
            theirs.append(accuracy(model, atk(x, y), y))
    lower_or_same = sum(a <= b for a, b in zip(ours, theirs, strict=True))
    print(
        f"PGD-{steps} eps {eps * 255:g}/255 with random start, {starts} different starts: "
        f"robust accuracy ours mean {statistics.mean(ours):.4f} "
        f"(min {min(ours):.4f}, max {max(ours):.4f}), torchattacks mean "
        f"{statistics.mean(theirs):.4f} (min {min(theirs):.4f}, max {max(theirs):.4f}); "
        f"ours same or lower in {lower_or_same} of {starts}\n"
    )


def bench_fgsm(
    model: nn.Module, x: Tensor, y: Tensor, eps: float, repeats: int
) -> list[dict[str, object]]:
    """FGSM rows: images only, and robust accuracy (torchattacks + accuracy)."""
    import torchattacks

    device = x.device
    rows: list[dict[str, object]] = []

    t_ours, _, t_ta, _ = time_pair(
        lambda: fgsm(model, x, y, eps),
        lambda: torchattacks.FGSM(model, eps=eps)(x, y),
        device,
        repeats,
    )
    rows.append(_row(f"FGSM Linf images, eps {eps * 255:g}/255", t_ours, None, t_ta, None))

    def ours(m: nn.Module) -> float:
        return robust_accuracy(m, x, y, eps, attack="fgsm")

    def theirs(m: nn.Module) -> float:
        return accuracy(m, torchattacks.FGSM(m, eps=eps)(x, y), y)

    t_ours, acc_ours, t_ta, acc_ta = time_pair(
        lambda: ours(model), lambda: theirs(model), device, repeats
    )
    row = _row(f"FGSM Linf robust acc, eps {eps * 255:g}/255", t_ours, acc_ours, t_ta, acc_ta)
    row["ours_passes"] = count_passes(ours, model)
    row["ta_passes"] = count_passes(theirs, model)
    rows.append(row)
    return rows


def bench_apgd(
    model: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int, repeats: int, targeted: bool
) -> dict[str, object]:
    """APGD row: ``apgd_mask`` vs torchattacks.APGD / APGDT + accuracy on its output."""
    import torchattacks

    device = x.device
    classes = int(model(x[:1]).shape[1])
    loss = "dlr" if targeted else "ce"

    def ours(m: nn.Module) -> float:
        gen = torch.Generator(device=device).manual_seed(0)
        mask = apgd_mask(m, x, y, eps, loss=loss, targeted=targeted, steps=steps, generator=gen)
        return mask.float().mean().item()

    def theirs(m: nn.Module) -> float:
        if targeted:
            atk = torchattacks.APGDT(m, eps=eps, steps=steps, seed=0, n_classes=classes)
        else:
            atk = torchattacks.APGD(m, eps=eps, steps=steps, seed=0)
        return accuracy(m, atk(x, y), y)

    t_ours, acc_ours, t_ta, acc_ta = time_pair(
        lambda: ours(model), lambda: theirs(model), device, repeats
    )
    name = "APGD-T (DLR, targeted)" if targeted else "APGD-CE"
    row = _row(
        f"{name}-{steps} Linf robust acc, eps {eps * 255:g}/255", t_ours, acc_ours, t_ta, acc_ta
    )
    row["ours_passes"] = count_passes(ours, model)
    row["ta_passes"] = count_passes(theirs, model)
    return row


def _row(name: str, t_ours: float, acc_ours, t_ta: float, acc_ta) -> dict[str, object]:
    cpu_ours, cpu_ta = LAST_CPU
    return {
        "case": name,
        "ours_ms": 1e3 * t_ours,
        "ta_ms": 1e3 * t_ta,
        "speedup": t_ta / t_ours,
        "cpu_speedup": cpu_ta / cpu_ours if cpu_ours > 0 else float("nan"),
        "ours_acc": acc_ours,
        "ta_acc": acc_ta,
        "ours_passes": "-",
        "ta_passes": "-",
    }


def print_table(rows: list[dict[str, object]]) -> None:
    def fmt(v: object) -> str:
        return "-" if v is None else f"{v:.4f}"

    print(
        "| case | lightning_viz ms | torchattacks ms | speedup (ta / ours) | CPU-time speedup "
        "| robust acc ours | robust acc torchattacks "
        "| sample-forwards (with backward) ours | torchattacks |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['case']} | {r['ours_ms']:.1f} | {r['ta_ms']:.1f} | {r['speedup']:.2f}x "
            f"| {r['cpu_speedup']:.2f}x "
            f"| {fmt(r['ours_acc'])} | {fmt(r['ta_acc'])} "
            f"| {r['ours_passes']} | {r['ta_passes']} |"
        )


# ------------------------------------------------------------------------ t-SNE
def clustered_features(
    n: int = 2000, dim: int = 512, clusters: int = 10, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """``n`` points in ``dim`` dims around ``clusters`` Gaussian centres, and their labels."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, dim, generator=gen) * 1.0
    labels = torch.arange(n) % clusters
    feats = centres[labels] + torch.randn(n, dim, generator=gen) * 1.5
    return feats, labels


def bench_tsne(n: int = 2000, dim: int = 512, seed: int = 0) -> None:
    """Our t-SNE path (PCA to 50, then sklearn) vs sklearn on the raw features."""
    from sklearn.manifold import TSNE

    from lightning_viz.functional.embedding import knn_accuracy, tsne

    feats, labels = clustered_features(n, dim, seed=seed)
    results = {}
    for name, fn in (
        ("lightning_viz.functional.tsne (PCA 50 first)", lambda: tsne(feats, seed=seed)),
        (
            "sklearn.manifold.TSNE(init='pca') on raw features",
            lambda: torch.as_tensor(
                TSNE(n_components=2, init="pca", random_state=seed).fit_transform(feats.numpy())
            ).float(),
        ),
    ):
        t0, c0 = time.perf_counter(), time.process_time()
        emb = fn()
        results[name] = (
            time.perf_counter() - t0,
            time.process_time() - c0,
            knn_accuracy(emb, labels),
        )
    print(f"\n## t-SNE: {n} x {dim} features, 10 Gaussian clusters, perplexity 30\n")
    print("| path | wall s | CPU s | 5-NN accuracy of the embedding |")
    print("|---|---:|---:|---:|")
    for name, (wall, cpu, knn) in results.items():
        print(f"| {name} | {wall:.1f} | {cpu:.1f} | {knn:.4f} |")
    (w_ours, c_ours, _), (w_sk, c_sk, _) = results.values()
    print(f"\nspeedup (sklearn / ours): wall {w_sk / w_ours:.2f}x, CPU {c_sk / c_ours:.2f}x")


# ------------------------------------------------------------------------- main
def robustness_rows(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps_list: list[float],
    steps: int,
    repeats: int,
    apgd_steps: int = 100,
) -> list[dict[str, object]]:
    rows = [bench_pgd(model, x, y, e, steps, repeats) for e in eps_list]
    # without random start both attacks visit the same iterates: ours <= theirs exactly
    rows.append(bench_pgd(model, x, y, eps_list[0], steps, repeats, False))
    rows += bench_fgsm(model, x, y, eps_list[0], repeats)
    if apgd_steps > 0:
        rows.append(bench_apgd(model, x, y, eps_list[0], apgd_steps, repeats, False))
        rows.append(bench_apgd(model, x, y, eps_list[0], apgd_steps, repeats, True))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument(
        "--eps",
        type=float,
        nargs="+",
        default=[8.0],
        help="Linf radii in units of 1/255; FGSM and the no-random-start row use the first",
    )
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--train-steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--apgd-steps", type=int, default=100, help="APGD iterations (0 skips the APGD rows)"
    )
    parser.add_argument("--no-digits", action="store_true", help="skip the digits rows")
    parser.add_argument(
        "--starts", type=int, default=10, help="random starts for the mean PGD accuracy"
    )
    parser.add_argument("--no-tsne", action="store_true", help="skip the t-SNE section")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    eps_list = [e / 255 for e in args.eps]

    print("## Robustness benchmark: lightning_viz vs torchattacks\n")
    print(f"machine: {machine_info(device)}\n")
    print(
        f"PGD steps {args.steps}, alpha 2.5*eps/steps (2/255 at 8/255); median of "
        f"{args.repeats} alternated runs; speedup = torchattacks time / ours "
        "(wall clock, and process CPU time)\n"
    )
    from lightning_viz.data import SmallCNN

    cases = [("shapes", load_shapes, lambda: SmallCNN(num_classes=5))]
    if not args.no_digits:
        cases.append(("digits", load_digits_32, lambda: small_cnn()))
    for name, load, build in cases:
        x_tr, y_tr, x_te, y_te = load()
        x_tr, y_tr = x_tr.to(device), y_tr.to(device)
        x, y = x_te[: args.batch].to(device), y_te[: args.batch].to(device)
        torch.manual_seed(0)  # the benchmark's own run: seeded init and batches
        model = build().to(device)
        seconds = train(model, x_tr, y_tr, steps=args.train_steps)
        clean = accuracy(model, x, y)
        print(
            f"### {name}: {tuple(x.shape[1:])} images, batch {len(y)}; "
            f"{type(model).__name__} trained {args.train_steps} steps in {seconds:.1f} s; "
            f"clean accuracy {clean:.4f}\n"
        )
        print_table(
            robustness_rows(model, x, y, eps_list, args.steps, args.repeats, args.apgd_steps)
        )
        print()
        pgd_over_starts(model, x, y, eps_list[0], args.steps, args.starts)
    if not args.no_tsne:
        bench_tsne()


if __name__ == "__main__":
    main()
