"""Configuring lightning-viz callbacks from a LightningCLI YAML file.

From the repository root, after ``bash scripts/setup.sh`` (it creates ``.venv`` with
lightning-viz and its dependencies; ``source .venv/bin/activate`` lets you drop the
``.venv/bin/`` prefix)::

    .venv/bin/python examples/lightning_cli.py fit --config examples/lightning_cli.yaml
    .venv/bin/tensorboard --logdir lightning_logs

LightningCLI needs ``jsonargparse[signatures]`` (in ``.venv``; with lightning-viz
installed from its wheel, ``pip install 'jsonargparse[signatures]'``).
"""

from pytorch_lightning.cli import LightningCLI

import lightning_viz.callbacks  # noqa: F401 - the short names (--trainer.callbacks+=SaliencyLogger)
from lightning_viz.data import LitClassifier, ShapesTexturesDataModule


def main(args=None, run: bool = True) -> LightningCLI:
    return LightningCLI(
        LitClassifier, ShapesTexturesDataModule, args=args, run=run, save_config_callback=None
    )


if __name__ == "__main__":
    main()
