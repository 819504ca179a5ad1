"""Gradient attributions and Grad-CAM: lightning-viz against captum and pytorch-grad-cam.

Runs every method on the same model and inputs -- torchvision ``resnet18``
(``num_classes=10``, ``weights=None``, eval mode, parameters requiring grad as in
training), 64 px RGB, batch 32, CPU -- with one warm-up call and the median of a few
repeats, interleaving ours and the reference so machine load hits both alike. Prints
a markdown table and the machine.

Where our speed comes from: Grad-CAM makes the layer's output a graph leaf
(``gradient_leaf``) and freezes parameters, so the forward below the layer builds no
graph and backward stops at the layer; pytorch-grad-cam runs ``.backward()`` through
the whole network into every parameter's ``.grad`` (and converts to numpy).

Usage::

    python benchmarks/gradients.py [--repeats 5] [--batch 32] [--size 64] [--samples 10]
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable

import torch
import torchvision

import lightning_viz.functional as S  # the package: `saliency` names a function there
import lightning_viz.functional.cam as C


def _once(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall ms, process CPU ms) of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - w0) * 1000, (time.process_time() - c0) * 1000


def _bench(ours: Callable[[], object], ref: Callable[[], object], repeats: int):
    """Median wall and CPU times of ours and ref, interleaved, after one warm-up each."""
    ours()
    ref()
    t_ours, t_ref = [], []
    for _ in range(repeats):
        t_ours.append(_once(ours))
        t_ref.append(_once(ref))
    med = statistics.median
    return (
        med(t[0] for t in t_ours),
        med(t[0] for t in t_ref),
        med(t[1] for t in t_ours),
        med(t[1] for t in t_ref),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--samples", type=int, default=10)
    args = parser.parse_args()

    from captum.attr import GuidedBackprop, LayerAttribution, LayerGradCam, NoiseTunnel, Saliency
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    warnings.filterwarnings("ignore", category=UserWarning)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, args.size, args.size, generator=g)
    y = torch.randint(0, 10, (args.batch,), generator=g)
    layer = model.layer4[1].conv2

    saliency_ref = Saliency(model)
    nt_ref = NoiseTunnel(Saliency(model))
    gbp_ref = GuidedBackprop(model)
    gc_ref = LayerGradCam(model, layer)
    pgc_model = copy.deepcopy(model)  # it writes .grad and keeps hooks until released
    pgc = GradCAM(model=pgc_model, target_layers=[pgc_model.layer4[1].conv2])
    targets = [ClassifierOutputTarget(int(t)) for t in y]

    def captum_gradcam():
        low = gc_ref.attribute(x, target=y, relu_attributions=True)
        return LayerAttribution.interpolate(low, (args.size, args.size), "bilinear")

    rows = [
        (
            "saliency",
            lambda: S.saliency(model, x, y),
            lambda: saliency_ref.attribute(x, target=y, abs=True),
            "captum Saliency",
        ),
        (
            f"smoothgrad ({args.samples} samples)",
            lambda: S.smoothgrad(model, x, y, samples=args.samples, noise=0.15),
            lambda: nt_ref.attribute(
                x, nt_type="smoothgrad", nt_samples=args.samples, stdevs=0.15, target=y
            ),
            "captum NoiseTunnel(Saliency)",
        ),
        (
            "guided_backprop",
            lambda: S.guided_backprop(model, x, y),
            lambda: gbp_ref.attribute(x, target=y),
            "captum GuidedBackprop",
        ),
        (
            "grad_cam",
            lambda: C.grad_cam(model, x, y, layer="layer4.1.conv2"),
            captum_gradcam,
            "captum LayerGradCam + interpolate",
        ),
        (
            "grad_cam",
            lambda: C.grad_cam(model, x, y, layer="layer4.1.conv2"),
            lambda: pgc(x, targets),
            "pytorch-grad-cam GradCAM",
        ),
    ]
    print(
        f"resnet18 (10 classes), batch {args.batch}, {args.size} px, CPU, "
        f"median of {args.repeats} after a warm-up\n"
    )
    print(
        "| method | reference | ours (ms) | reference (ms) | ratio | "
        "ours CPU (ms) | reference CPU (ms) | CPU ratio |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, ours, ref, ref_name in rows:
        w_ours, w_ref, c_ours, c_ref = _bench(ours, ref, args.repeats)
        print(
            f"| {name} | {ref_name} | {w_ours:.1f} | {w_ref:.1f} | {w_ours / w_ref:.2f} | "
            f"{c_ours:.1f} | {c_ref:.1f} | {c_ours / c_ref:.2f} |",
            flush=True,
        )
    pgc.activations_and_grads.release()
    print(
        f"\nmachine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), python {platform.python_version()}"
    )


if __name__ == "__main__":
    main()
