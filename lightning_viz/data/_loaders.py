"""Loaders shared by the built-in datamodules."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from lightning_viz._checks import check_int

__all__ = ["SeededDataModule"]


class SeededDataModule(pl.LightningDataModule):
    """A datamodule whose loaders draw only from a private, seeded generator.

    Subclasses pass ``batch_size``, ``num_workers`` and ``seed`` (checked here) and
    build ``train_dataset``/``val_dataset`` in ``setup``. The generator drives the shuffle
    and the workers' base seed, so iterating the loaders never draws from the global
    RNG (a run with and without observers sees the same random numbers).
    """

    def __init__(self, batch_size: int, num_workers: int, seed: int) -> None:
        super().__init__()
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)
        self.num_workers = check_int(num_workers, "num_workers", minimum=0)
        self.seed = check_int(seed, "seed", minimum=0)
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None

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
