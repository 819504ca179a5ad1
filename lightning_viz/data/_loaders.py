"""Loaders shared by the built-in datamodules."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["SeededDataModule"]


class SeededDataModule(pl.LightningDataModule):
    """A datamodule whose loaders draw only from a private, seeded generator.

    Subclasses set ``seed``, ``batch_size``, ``num_workers`` and build
    ``train_dataset``/``val_dataset`` in ``setup``. The generator drives the shuffle
    and the workers' base seed, so iterating the loaders never draws from the global
    RNG (a run with and without observers sees the same random numbers).
    """

    seed: int
    batch_size: int
    num_workers: int
    train_dataset: Dataset | None
    val_dataset: Dataset | None

    def _loader(self, dataset: Dataset | None, shuffle: bool) -> DataLoader:
        if dataset is None:
            self.setup()
            return self._loader(self.train_dataset if shuffle else self.val_dataset, shuffle)
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            generator=generator,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training loader (seeded private generator)."""
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Validation loader, fixed order."""
        return self._loader(self.val_dataset, shuffle=False)
