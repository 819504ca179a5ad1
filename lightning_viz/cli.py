"""The ``lightning-viz`` console script.

``lightning-viz demo`` trains a small CNN on the built-in data with every callback
and prints how to open TensorBoard on the result; ``lightning-viz compare BASELINE
CANDIDATE`` compares two runs' summaries (exit 1 when a watched metric regressed).
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from lightning_viz import __version__
from lightning_viz.monitoring.compare import add_compare_parser, run_compare

__all__ = ["build_callbacks", "main"]

_MIN_VAL = 10  # validation images the demo needs: two per class, for every probe
# (epochs, learning rate) when not given: the ViT learns slower, at a smaller step
DEMO_DEFAULTS = {"small": (12, 3e-3), "resnet18": (12, 3e-3), "vit": (15, 1e-3)}


def build_callbacks(class_names: list[str], args: argparse.Namespace) -> list[Any]:
    """Every lightning-viz callback, configured for the demo's small images.

    With ``args.fast`` (a smoke run) every callback looks at fewer images.
    """
    import lightning_viz as lv

    fast = bool(getattr(args, "fast", False))
    # every view every epoch: the demo shows all of them, so the shared budget is off
    common: dict[str, Any] = {"class_names": class_names, "max_overhead": None}
    settings: list[tuple[str, dict[str, Any]]] = [
        ("FilterLogger", {}),
        ("ActivationLogger", {}),
        (
            "SaliencyLogger",
            {"num_samples": 4 if fast else 8, "smoothgrad_samples": 4 if fast else 25},
        ),
        (
            "GradCAMLogger",
            {
                "methods": ("gradcam", "gradcam++", "guided_gradcam"),
                "num_samples": 4 if fast else 8,
            },
        ),
        ("EmbeddingProjector", {"num_samples": 40 if fast else 500}),
        (
            "AdversarialProbe",
            {"num_samples": 16 if fast else 128, "eps": (1 / 255, 2 / 255, 4 / 255, 8 / 255)},
        ),
        ("TextureShapeBias", {"num_images": 20 if fast else 80, "style_steps": 5 if fast else 50}),
        ("CorruptionProbe", {"num_samples": 16 if fast else 64}),
        (
            "ClassModelLogger",
            {"steps": 10 if fast else 200, "every_n_epochs": max(1, args.epochs // 2)},
        ),
    ]
    callbacks = []
    for name, kwargs in settings:
        callbacks.append(getattr(lv, name)(**kwargs, **common))
    return callbacks


def _seed_everything(pl: Any, seed: int) -> None:
    """``pl.seed_everything(seed)``, without its log line where Lightning allows that
    (``verbose=`` arrived in pytorch-lightning 2.4; older versions always log it)."""
    if "verbose" in inspect.signature(pl.seed_everything).parameters:
        pl.seed_everything(seed, verbose=False)
    else:  # pragma: no cover - pytorch-lightning < 2.4 (tested by the oldest-versions CI)
        pl.seed_everything(seed)


def _demo(args: argparse.Namespace) -> int:
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import TensorBoardLogger

    from lightning_viz.data import DigitsDataModule, LitClassifier, ShapesTexturesDataModule

    _seed_everything(pl, args.seed)
    if args.data == "shapes":
        datamodule: Any = ShapesTexturesDataModule(
            train_size=args.train_size,
            val_size=args.val_size,
            texture_correlation=args.texture_correlation,
            background_correlation=args.background_correlation,
            seed=args.seed,
        )
        in_channels, num_classes = 3, datamodule.num_classes
    else:
        datamodule = DigitsDataModule(seed=args.seed)
        in_channels, num_classes = 1, 10
    datamodule.setup("fit")
    class_names = list(datamodule.class_names)
    model = LitClassifier(
        num_classes=num_classes, in_channels=in_channels, model_name=args.model, lr=args.lr
    )
    # no hp_metric: Lightning's placeholder scalar (-1) would be a chart of nothing
    logger = TensorBoardLogger(
        args.output_dir, name=f"demo_{args.data}_{args.model}", default_hp_metric=False
    )
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        accelerator="auto",
        devices=1,
        logger=logger,
        callbacks=build_callbacks(class_names, args),
        enable_checkpointing=False,
        log_every_n_steps=10,
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    seconds = time.perf_counter() - start
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    print(f"\nTrained {args.epochs} epochs in {seconds:.0f} s. Final values:")
    for key in (
        "val_acc",
        "bias/saliency_in_mask",
        "bias/shape_bias",
        "robustness/clean_acc",
        "robustness/pgd_acc@8/255",
        "embedding/knn_acc",
    ):
        if key in metrics:
            print(f"  {key:28s} {metrics[key]:.3f}")
    print("\nOpen the result in TensorBoard:\n")
    print(f"  tensorboard --logdir {os.path.abspath(args.output_dir)}\n")
    return 0


def _parser() -> argparse.ArgumentParser:
    # allow_abbrev=False everywhere: `--epoch 2` is an error, not `--epochs 2`
    parser = argparse.ArgumentParser(
        prog="lightning-viz", description=(__doc__ or "").replace("``", ""), allow_abbrev=False
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="train a small model on the built-in data with every callback",
        description="Trains a small model on the built-in data with every lightning-viz "
        "callback and prints the command that opens the result in TensorBoard.",
        allow_abbrev=False,
    )
    demo.add_argument(
        "--epochs", type=int, default=None, help="training epochs (default 12; vit: 15)"
    )
    demo.add_argument(
        "--output-dir", default="lightning_logs", help="log dir (default ./lightning_logs)"
    )
    demo.add_argument(
        "--model",
        choices=tuple(DEMO_DEFAULTS),
        default="small",
        help="small CNN, torchvision ResNet-18 or a small Vision Transformer (default small)",
    )
    demo.add_argument(
        "--data",
        choices=("shapes", "digits"),
        default="shapes",
        help="built-in data: 5 shapes with textures and object masks (32 px RGB), or "
        "scikit-learn's 8x8 digits upscaled to 32 px gray (default shapes)",
    )
    demo.add_argument(
        "--texture-correlation",
        type=float,
        default=_SHAPES_ONLY["texture_correlation"],
        help="shapes data: how often the texture gives the class away, 0..1 (default 0)",
    )
    demo.add_argument(
        "--background-correlation",
        type=float,
        default=_SHAPES_ONLY["background_correlation"],
        help="shapes data: how often the background gives the class away, 0..1 (default 0)",
    )
    demo.add_argument(
        "--train-size",
        type=int,
        default=_SHAPES_ONLY["train_size"],
        help="shapes data: training images (default 2000; digits: its fixed split)",
    )
    demo.add_argument(
        "--val-size",
        type=int,
        default=_SHAPES_ONLY["val_size"],
        help=f"shapes data: validation images, at least {_MIN_VAL} (default 500; digits: "
        "its fixed split)",
    )
    demo.add_argument(
        "--lr", type=float, default=None, help="Adam learning rate (default 3e-3; vit: 1e-3)"
    )
    demo.add_argument(
        "--fast",
        action="store_true",
        help="smoke run: every callback looks at fewer images (default off)",
    )
    demo.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the data, the model's initialization and the training order (default 0)",
    )
    add_compare_parser(sub)
    return parser


_SHAPES_ONLY = {  # the shapes data's options, with their defaults
    "texture_correlation": 0.0,
    "background_correlation": 0.0,
    "train_size": 2000,
    "val_size": 500,
}


def _demo_error(args: argparse.Namespace) -> str | None:
    """The first demo option that cannot work, as a message, or ``None``.

    Fills in the model's default ``--epochs`` and ``--lr`` first.
    """
    if args.data == "digits":  # options of the shapes data would be ignored without a word
        for name, default in _SHAPES_ONLY.items():
            if getattr(args, name) != default:
                flag = f"--{name.replace('_', '-')}"
                return f"{flag} applies to --data shapes; digits has its own fixed images and split"
    epochs, lr = DEMO_DEFAULTS[args.model]
    args.epochs = epochs if args.epochs is None else args.epochs
    args.lr = lr if args.lr is None else args.lr
    checks = [
        (args.epochs >= 1, f"--epochs must be >= 1, got {args.epochs}"),
        (args.lr > 0 and math.isfinite(args.lr), f"--lr must be a positive number, got {args.lr}"),
        (0 <= args.seed < 2**32, f"--seed must be in [0, {2**32 - 1}], got {args.seed}"),
        (args.train_size >= 1, f"--train-size must be >= 1, got {args.train_size}"),
        (
            args.val_size >= _MIN_VAL,
            f"--val-size must be >= {_MIN_VAL} (two probe images per class), got {args.val_size}",
        ),
    ]
    for name in ("texture_correlation", "background_correlation"):
        value = getattr(args, name)
        checks.append(
            (0.0 <= value <= 1.0, f"--{name.replace('_', '-')} must lie in [0, 1], got {value}")
        )
    for ok, message in checks:
        if not ok:
            return message
    try:  # the log dir must be writable before a minute of training is spent
        os.makedirs(args.output_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=args.output_dir):
            pass
    except OSError as err:
        return (
            f"--output-dir {args.output_dir!r} is not a writable directory ({err.strerror or err})"
        )
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lightning-viz`` console script."""
    args = _parser().parse_args(argv)
    if args.command == "compare":
        return run_compare(args)
    if args.command == "demo":
        error = _demo_error(args)
        if error is not None:
            print(f"lightning-viz: {error}", file=sys.stderr)
            return 2
        return _demo(args)
    return 2  # pragma: no cover - argparse rejects other commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
