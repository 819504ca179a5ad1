"""The runtime every lightning-viz callback shares.

A callback subclasses :class:`VizCallback` and implements :meth:`VizCallback.run`
(and, for configuration checks, :meth:`VizCallback.check`). The base class does
the rest: argument checks, probe selection, scheduling, the state guard, the
precision context, error handling, timing and logging.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from lightning_viz._guard import ModelView, make_generator, unwrap_model
from lightning_viz.callbacks._compat import CALLBACK_BASES, rank_zero_warn
from lightning_viz.callbacks._log import RunLog, find_tensorboard
from lightning_viz.callbacks._probe import Probe, load_probe

__all__ = ["RunContext", "VizCallback"]

_ON_ERROR = ("warn", "raise")


def _defines(obj: Any, name: str) -> bool:
    """True when ``obj``'s class implements ``name`` itself (not Lightning's default)."""
    fn = getattr(type(obj), name, None)
    qualname = getattr(fn, "__qualname__", "")
    return fn is not None and not qualname.startswith(("DataHooks.", "LightningDataModule."))


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value!r}")
    return value


class RunContext:
    """What a callback's :meth:`VizCallback.run` works with at one epoch end.

    Attributes:
        trainer: The trainer.
        module: The unwrapped ``LightningModule`` (never the DDP wrapper).
        view: The model as the methods see it: pixel-space images in, float
            logits out, forward under the trainer's precision context.
        probe: The probe on the model's device, images in the model's input space
            (``None`` for a callback with ``uses_probe = False``).
        pixels: The probe images in pixel space ``(N, C, H, W)``, ``[0, 1]`` when
            ``mean``/``std`` describe the normalization.
        device: The model's device.
        log: Where to write (see :class:`RunLog`).
        generator: A private generator on the model's device, seeded the same way
            every epoch, so random draws are comparable across epochs.
    """

    def __init__(
        self,
        trainer: Any,
        module: nn.Module,
        view: ModelView,
        probe: Probe | None,
        log: RunLog,
        generator: torch.Generator,
        device: torch.device,
    ) -> None:
        self.trainer = trainer
        self.module = module
        self.view = view
        self.probe: Probe = probe  # type: ignore[assignment] - None only when uses_probe=False
        self.pixels = None if probe is None else view.to_pixels(probe.images).clamp(0, 1)
        self.log = log
        self.generator = generator
        self.device = device


class VizCallback(*CALLBACK_BASES):  # type: ignore[misc]
    """Base class of the lightning-viz callbacks (options shared by all of them).

    Args:
        every_n_epochs: Run at the end of every n-th epoch (after validation, or at
            the train-epoch end when no validation ran), never in the sanity check
            and only during ``fit``. Default: 1.
        num_samples: Number of probe images, a fixed, class-balanced pick from the
            validation data, the same every epoch. Default: callback-specific.
        probe: A tensor ``(N, C, H, W)``, ``(images, labels[, masks])`` or a
            ``Dataset`` to use instead of the validation data. Default: ``None``.
        batch_to_xy: Maps a batch to ``(images, labels)`` or
            ``(images, labels, masks)``. Default: tuples/lists and dicts with
            ``image``/``label``/``mask`` keys.
        output_to_logits: Maps the model output to logits ``(N, K)``.
        mean: Per-channel input normalization mean, so images are shown (and
            attacked) in pixel space. Default: ``None`` (inputs are pixels).
        std: Per-channel input normalization std. Default: ``None``.
        class_names: Captions for class indices. Default: ``None`` (indices).
        on_error: ``"warn"``: a failure inside a run is reported once with its
            traceback and the callback turns itself off; ``"raise"``: re-raise.
        tag_prefix: Prefix of every tag it writes. Default: its family name.
        seed: Seed of the callback's private generator. Default: 0.
    """

    family: ClassVar[str] = "viz"
    default_num_samples: ClassVar[int] = 8
    uses_probe: ClassVar[bool] = True  # False: no probe is picked, `check` gets None

    def __init__(
        self,
        *,
        every_n_epochs: int = 1,
        num_samples: int | None = None,
        probe: Any = None,
        batch_to_xy: Callable[[Any], Any] | None = None,
        output_to_logits: Callable[[Any], Tensor] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        class_names: Sequence[str] | None = None,
        on_error: str = "warn",
        tag_prefix: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.every_n_epochs = _check_int("every_n_epochs", every_n_epochs, 1)
        if num_samples is None:
            num_samples = self.default_num_samples
        self.num_samples = _check_int("num_samples", num_samples, 1)
        if on_error not in _ON_ERROR:
            raise ValueError(f"`on_error` must be one of {_ON_ERROR}, got {on_error!r}")
        for name, fn in (("batch_to_xy", batch_to_xy), ("output_to_logits", output_to_logits)):
            if fn is not None and not callable(fn):
                raise TypeError(f"`{name}` must be callable, got {fn!r}")
        if tag_prefix is not None and (
            not isinstance(tag_prefix, str) or not tag_prefix.strip("/")
        ):
            raise ValueError(f"`tag_prefix` must be a non-empty string, got {tag_prefix!r}")
        if class_names is not None:
            if isinstance(class_names, str) or not all(isinstance(c, str) for c in class_names):
                raise TypeError(f"`class_names` must be a list of strings, got {class_names!r}")
            class_names = list(class_names)
        ModelView(nn.Identity(), mean, std)  # validates mean/std now, not at the first epoch
        self.probe = probe
        self.batch_to_xy = batch_to_xy
        self.output_to_logits = output_to_logits
        self.mean = None if mean is None else [float(v) for v in mean]
        self.std = None if std is None else [float(v) for v in std]
        self.class_names = class_names
        self.on_error = on_error
        self.tag_prefix = (tag_prefix or self.family).strip("/")
        self.seed = int(seed)
        self._probe: Probe | None = None
        self._probe_indices: list[int] | None = None
        self._logger: Any = None
        self._enabled = True
        self._last_epoch: int | None = None

    # ----------------------------------------------------------------- to override
    def run(self, ctx: RunContext) -> None:
        """Computes and logs this callback's views (one epoch end)."""
        raise NotImplementedError

    def check(self, module: nn.Module, probe: Probe | None) -> None:
        """Validates the configuration against the model and probe (at ``setup``)."""

    def extra_state(self) -> dict[str, Any]:
        """Extra entries for ``state_dict``."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restores what :meth:`extra_state` saved."""

    def key_args(self) -> dict[str, Any]:
        """The arguments that tell two instances of this callback apart."""
        return {}

    # -------------------------------------------------------------------- helpers
    def tag(self, name: str, family: str | None = None) -> str:
        """The tag ``<prefix>/<name>``; a foreign ``family`` is kept, under a custom prefix."""
        if family is None or family == self.family:
            return f"{self.tag_prefix}/{name}"
        if self.tag_prefix == self.family:
            return f"{family}/{name}"
        return f"{self.tag_prefix}/{family}/{name}"

    def class_name(self, index: int) -> str:
        """The caption for a class index."""
        if self.class_names is not None and 0 <= index < len(self.class_names):
            return self.class_names[index]
        return str(index)

    @property
    def state_key(self) -> str:
        return self._generate_state_key(tag_prefix=self.tag_prefix, **self.key_args())

    # ------------------------------------------------------------------ probe
    def _probe_source(self, trainer: Any) -> Any:
        if self.probe is not None:
            return self.probe
        datamodule = getattr(trainer, "datamodule", None)
        for stage in ("val", "train"):
            if datamodule is not None and _defines(datamodule, f"{stage}_dataloader"):
                loader = getattr(datamodule, f"{stage}_dataloader")()
                if loader is not None:
                    return loader[0] if isinstance(loader, list | tuple) else loader
            loop = trainer.fit_loop.epoch_loop.val_loop if stage == "val" else trainer.fit_loop
            source = getattr(loop, "_data_source", None)
            if source is not None and source.is_defined():
                try:
                    loader = source.dataloader()
                except (NotImplementedError, AttributeError, TypeError):
                    continue
                if loader is not None:
                    return loader[0] if isinstance(loader, list | tuple) else loader
        raise ValueError(
            f"{type(self).__name__} found no validation or training data to pick probe "
            "images from; pass `probe=` a tensor, (images, labels) or a Dataset"
        )

    def _get_probe(self, trainer: Any) -> Probe:
        if self._probe is None:
            source = self._probe_source(trainer)
            # A DataLoader iterator draws its base seed from the global RNG: fork it, so
            # picking the probe leaves the run's random streams untouched.
            with torch.random.fork_rng(devices=[]):
                probe = load_probe(source, self.num_samples, self.batch_to_xy, self._probe_indices)
            self._probe = probe
            self._probe_indices = probe.indices
        return self._probe

    def _view(self, trainer: Any, module: nn.Module) -> ModelView:
        plugin = getattr(trainer, "precision_plugin", None)
        context = getattr(plugin, "forward_context", None)
        return ModelView(module, self.mean, self.std, self.output_to_logits, context)

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage != "fit":
            return
        self._logger = find_tensorboard(trainer)
        if self._logger is None:
            rank_zero_warn(
                f"{type(self).__name__} needs a TensorBoardLogger among the trainer's loggers and "
                "found none; it turns itself off for this run"
            )
            self._enabled = False
            return
        self._enabled = True
        probe = self._get_probe(trainer) if self.uses_probe else None
        self.check(unwrap_model(pl_module), probe)

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._maybe_run(trainer, pl_module)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._maybe_run(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"probe_indices": self._probe_indices, **self.extra_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        indices = state_dict.get("probe_indices")
        if indices is not None and indices != self._probe_indices:
            self._probe_indices = [int(i) for i in indices]
            self._probe = None  # rebuilt from the saved positions at the next run
        self.load_extra_state(state_dict)

    # --------------------------------------------------------------- scheduling
    def _due(self, trainer: Any) -> bool:
        if not self._enabled or trainer.sanity_checking:
            return False
        if getattr(trainer.state, "fn", None) != "fit":
            return False
        epoch = trainer.current_epoch
        return self._last_epoch != epoch and (epoch + 1) % self.every_n_epochs == 0

    def _maybe_run(self, trainer: Any, pl_module: Any) -> None:
        if not self._due(trainer):
            return
        self._last_epoch = trainer.current_epoch
        start = time.perf_counter()
        module = unwrap_model(pl_module)
        try:
            device = next((p.device for p in module.parameters()), torch.device("cpu"))
            probe = self._get_probe(trainer).to(device) if self.uses_probe else None
            log = RunLog(trainer, self._logger, trainer.global_step)
            ctx = RunContext(
                trainer,
                module,
                self._view(trainer, module),
                probe,
                log,
                make_generator(self.seed, device),
                device,
            )
            self.run(ctx)
            log.scalar(self._seconds_tag(), time.perf_counter() - start)
            log.flush()
        except Exception as err:  # noqa: BLE001 - reported, or re-raised on request
            if self.on_error == "raise":
                raise
            self._enabled = False
            rank_zero_warn(
                f"{type(self).__name__} failed at epoch {trainer.current_epoch} and turns itself "
                f"off for the rest of this run (training goes on; pass on_error='raise' to stop "
                f"instead): {type(err).__name__}: {err}\n{traceback.format_exc()}"
            )

    def _seconds_tag(self) -> str:
        name = type(self).__name__
        if self.tag_prefix == self.family:
            return f"viz/{name}/seconds"
        return f"viz/{name}/{self.tag_prefix}/seconds"
