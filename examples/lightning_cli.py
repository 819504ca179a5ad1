"""Configuring lightning-viz callbacks from a LightningCLI YAML file.

Run:  python examples/lightning_cli.py fit --config examples/lightning_cli.yaml
"""

from pytorch_lightning.cli import LightningCLI

from lightning_viz.data import LitClassifier, ShapesTexturesDataModule


def main(args=None, run: bool = True) -> LightningCLI:
    return LightningCLI(
        LitClassifier, ShapesTexturesDataModule, args=args, run=run, save_config_callback=None
    )


if __name__ == "__main__":
    main()
