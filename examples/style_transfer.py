"""Style transfer with lightning-viz, no downloaded weights.

Paints the content of scikit-learn's bundled ``china.jpg`` with the style of
``flower.jpg`` (Gatys et al. 2016) using the default random-filter feature extractor
(:class:`lightning_viz.functional.RandomFeatureExtractor`), and writes a
``content | style | result`` PNG.

From the repository root, after ``bash scripts/setup.sh`` (it creates ``.venv`` with
lightning-viz and its dependencies; ``source .venv/bin/activate`` lets you drop the
``.venv/bin/`` prefix)::

    .venv/bin/python examples/style_transfer.py --out style_transfer.png --size 128 --steps 150

To use a real network instead, pass any ``nn.Module`` and its layer names, e.g. a
torchvision VGG whose weights you have locally (wrapped so it takes ``[0, 1]`` pixels)::

    style_transfer(content, style, vgg_features, content_layer="22",
                   style_layers=["3", "8", "15", "22"])
"""

from __future__ import annotations

import argparse
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from sklearn.datasets import load_sample_images  # noqa: E402

from lightning_viz.functional import style_transfer  # noqa: E402


def load(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The two bundled photos as ``(1, 3, size, size)`` float images in ``[0, 1]``."""
    china, flower = load_sample_images().images  # (427, 640, 3) uint8 each
    out = []
    for img in (china, flower):
        t = torch.tensor(img).permute(2, 0, 1).float().div(255)[None]  # (1, 3, H, W)
        h, w = t.shape[-2:]
        s = min(h, w)  # center square crop, then resize
        t = t[..., (h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
        out.append(F.interpolate(t, size=(size, size), mode="bilinear", antialias=True).clamp(0, 1))
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument(
        "--out", default="style_transfer.png", help="output PNG path (default style_transfer.png)"
    )
    parser.add_argument("--size", type=int, default=128, help="image side in px (default 128)")
    parser.add_argument("--steps", type=int, default=150, help="optimization steps (default 150)")
    parser.add_argument(
        "--style-weight", type=float, default=1.0, help="weight of the Gram loss (default 1.0)"
    )
    parser.add_argument(
        "--content-weight", type=float, default=5.0, help="weight of the content loss (default 5.0)"
    )
    parser.add_argument(
        "--tv-weight", type=float, default=3.0, help="weight of total variation (default 3.0)"
    )
    args = parser.parse_args()

    content, style = load(args.size)
    start = time.perf_counter()
    result, losses = style_transfer(
        content,
        style,
        steps=args.steps,
        style_weight=args.style_weight,
        content_weight=args.content_weight,
        tv_weight=args.tv_weight,
        return_losses=True,
    )
    seconds = time.perf_counter() - start
    ls = losses["style"][:, 0]
    print(
        f"{args.steps} steps at {args.size}px in {seconds:.1f} s; "
        f"style loss {float(ls[0]):.3f} -> {float(ls[-1]):.3f}, "
        f"content loss {float(losses['content'][-1, 0]):.3f}"
    )

    fig, axes = plt.subplots(1, 3, figsize=(9, 3.3))
    for ax, img, title in zip(
        axes, (content, style, result), ("content", "style", "result"), strict=True
    ):
        ax.imshow(img[0].permute(1, 2, 0).numpy())
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    plt.close(fig)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
