"""The batch transfer hooks of a LightningModule or DataModule, applied to probe data.

Lightning hands ``validation_step`` a batch that went through
``on_before_batch_transfer``, ``transfer_batch_to_device`` and
``on_after_batch_transfer`` (of the DataModule when it defines them, else of the
LightningModule). A model that normalizes there (or converts ``uint8`` to float, or
moves the batch in its own way) sees inputs the dataloader never yields, so the
probe picked from the dataloader goes through the same hooks: the probe is what
``validation_step`` receives. Augmentations written as ``if self.trainer.training:``
are left out: the hooks are called as in a validation loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

from lightning_viz._runtime.combined import combined_form

__all__ = ["TransferHookError", "batch_transfer", "overridden_transfer_hooks"]

_HOOKS = ("on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer")


def _overrides(obj: Any, hook: str) -> bool:
    """Whether ``obj``'s class defines ``hook`` itself (not Lightning's ``DataHooks``)."""
    method = getattr(type(obj), hook, None)
    return method is not None and getattr(method, "__qualname__", "").split(".")[0] != "DataHooks"


def overridden_transfer_hooks(trainer: Any, module: Any) -> list[str]:
    """The transfer hooks the fit's LightningModule or DataModule defines, in call order."""
    datamodule = getattr(trainer, "datamodule", None)
    return [h for h in _HOOKS if _overrides(module, h) or _overrides(datamodule, h)]


@contextlib.contextmanager
def _as_validation(trainer: Any) -> Iterator[None]:
    """``trainer.validating`` (not ``training``) while the hooks run, as Lightning's
    validation loop has it; the stage is put back after."""
    state = getattr(trainer, "state", None)
    stage = getattr(state, "stage", None)
    if stage is None:
        yield
        return
    try:
        state.stage = type(stage)("validate")
        yield
    finally:
        state.stage = stage


def batch_transfer(trainer: Any, module: Any) -> Callable[[Any], Any] | None:
    """The fit's batch transfer hooks as one function of a dataloader batch.

    Args:
        trainer: The ``Trainer`` (the hooks are called through it, as Lightning does).
        module: The LightningModule (unwrapped), attached to ``trainer``.

    Returns:
        ``batch -> batch`` as ``validation_step`` receives it (on the module's device,
        dataloader index 0), or ``None`` when neither the module nor the DataModule
        defines a transfer hook (the dataloader's batches are what the model sees).
    """
    if not overridden_transfer_hooks(trainer, module):
        return None
    before = getattr(module, "_on_before_batch_transfer", None)
    handler = getattr(module, "_apply_batch_transfer_handler", None)
    if before is None or handler is None:  # pragma: no cover - another Lightning
        return None

    def hooks(batch: Any) -> Any:
        device = next((p.device for p in module.parameters()), torch.device("cpu"))
        with _as_validation(trainer), torch.no_grad():
            batch = before(batch, dataloader_idx=0)
            return handler(batch, device=device, dataloader_idx=0)

    forms: list[Callable[[Any], Any]] | None = None  # found at the first failure, kept
    taken: Callable[[Any], Any] | None = None  # the form the hooks took: tried first

    def transfer(batch: Any) -> Any:
        nonlocal forms, taken
        try:
            return hooks(batch) if taken is None else _part(hooks(taken(batch)))
        except Exception as err:
            if forms is None:  # hooks written for a CombinedLoader's batches of every loader
                found = (combined_form(trainer, stage) for stage in ("val", "train"))
                forms = [form for form in found if form is not None]
            also = ""
            for form in forms:
                try:
                    out = _part(hooks(form(batch)))
                except Exception as again:  # noqa: BLE001 - said with the first error
                    also = f"; given the loaders' batches together: {type(again).__name__}: {again}"
                    continue
                taken = form
                return out
            names = ", ".join(overridden_transfer_hooks(trainer, module))
            raise TransferHookError(
                f"the batch transfer hooks ({names}) failed on a batch of the probe data "
                f"({type(err).__name__}: {err}{also}); the probe is picked from one dataloader's "
                "batches, which go through these hooks as in a validation loop. Make the "
                "hooks take such a batch, or pass `probe=`"
            ) from err

    return transfer


def _part(combined: Any) -> Any:
    """The first loader's part of a batch made by a :func:`combined_form`, after the hooks."""
    if isinstance(combined, Mapping):
        return next(iter(combined.values()))
    return combined[0] if isinstance(combined, list | tuple) else combined


class TransferHookError(ValueError):
    """The fit's batch transfer hooks failed on a probe batch (see :func:`batch_transfer`)."""
