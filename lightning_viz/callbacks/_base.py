"""The runtime every lightning-viz callback shares.

A callback subclasses :class:`VizCallback` and implements :meth:`VizCallback.run`
(and, for configuration checks, :meth:`VizCallback.check`). The base class does
the rest: argument checks, probe selection and the task (its own base
:class:`~lightning_viz.callbacks._probe_setup.ProbeSetup`), scheduling, the state
guard (every ``run`` is inside it), the precision context, error handling, timing and
logging.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from lightning_viz._checks import (
    check_callable,
    check_choice,
    check_class_names,
    check_float,
    check_folder,
    check_int,
    check_normalization_kinds,
    check_tag_prefix,
    check_task,
)
from lightning_viz._guard import (
    ModelView,
    has_lazy_parameters,
    make_generator,
    preserve_state,
    unwrap_model,
)
from lightning_viz._runtime.budget import device_clock
from lightning_viz._runtime.compat import CALLBACK_BASES, any_rank_warn, rank_zero_warn
from lightning_viz._runtime.config import describe_options
from lightning_viz._runtime.context import (
    _FALLBACK_BATCH,
    CAPTION_LABEL,
    NotApplicableError,
    RunContext,
    caption_names,
    named_after,
)
from lightning_viz._runtime.coordinator import Coordinator
from lightning_viz._runtime.distributed import PeerFailedError, agree, on_every_rank, tell_peers
from lightning_viz._runtime.log import RunLog
from lightning_viz._runtime.memory import release_heap
from lightning_viz._runtime.probe import Probe, check_probe_source, loader_batch_size
from lightning_viz._runtime.schedule import (
    before_weight_averaging,
    ended_before_last_batch,
    log_step,
    no_validation_batches,
    validates_every_epoch,
)
from lightning_viz._runtime.transfer import TransferHookError, batch_transfer
from lightning_viz.callbacks import _monitors as monitors
from lightning_viz.callbacks._probe_setup import ProbeSetup
from lightning_viz.callbacks._resume import measure_skipped_epoch, restart_at

__all__ = ["CAPTION_LABEL", "NotApplicableError", "RunContext", "VizCallback"]

_ON_ERROR = ("warn", "raise")
DEFAULT_ALLOWANCE = 3.0  # seconds per epoch the callbacks may always spend


class VizCallback(ProbeSetup, *CALLBACK_BASES):  # type: ignore[misc]
    """Base class of the lightning-viz callbacks (options shared by all of them).

    Args:
        every_n_epochs: Run at the end of every n-th epoch (after validation, or at
            the train-epoch end when no validation ran), never in the sanity check
            and only during ``fit``. Default: 1.
        num_samples: Number of probe images, a fixed, class-balanced pick from the
            validation data, the same every epoch. Default: callback-specific.
        probe: A tensor ``(N, C, H, W)``, ``(images, labels[, masks])`` or a
            ``Dataset`` to use instead of the validation data. Default: ``None``.
        batch_to_xy: Maps a batch to ``(images, labels[, masks])``. Default: tuples,
            lists and dicts with ``image``/``label``/``mask`` keys.
        output_to_logits: Maps the model output to logits ``(N, K)``.
        images_to_input: Maps the image tensor ``(N, C, H, W)`` (in the model's input
            space) to what ``forward`` takes, e.g. ``lambda x: {"image": x}``; a tuple
            is passed as positional arguments. Default: ``None`` (the tensor).
        mean: Per-channel input normalization mean, so images are shown (and attacked)
            in pixel space. Default: ``"auto"``: a torchvision ``Normalize`` in the probe
            data's transform (or the transfer hooks), said once at ``setup``; none found,
            the inputs are pixels (values outside ``[0, 1]`` are an error at ``setup``).
            ``None`` (with ``std=None``): the model's inputs are the pixels, any range.
        std: Per-channel input normalization std. Default: ``"auto"`` (see ``mean``).
        class_names: Captions for class indices, one per class of the model (checked
            at ``setup``). Default: ``None``: the probe data's ``classes``, or indices.
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``; ``None`` detects it
            from the logits and labels at ``setup``. Default: ``None``.
        on_error: ``"warn"``: a failure inside a run, or at ``setup`` something the
            data or model makes impossible, is reported once and the callback turns
            itself off (training goes on); ``"raise"``: re-raise. Bad arguments and
            configuration always raise.
        tag_prefix: Prefix of every tag it writes. Default: its family name.
        seed: Seed of the callback's private generator. Default: 0.
        max_overhead: The lightning-viz callbacks on a trainer together spend at most
            this fraction of the training time (runs, setup and background work; the
            smallest value among them counts): past it, the costliest are spaced out
            (``every_n_epochs`` stays the minimum; each one's first due run happens;
            one a monitor reads is never spaced out). ``None``: this callback runs
            whenever due. Default: ``0.10``.
        overhead_allowance: Seconds per epoch the callbacks together may always spend,
            besides ``max_overhead`` (the smallest value among them counts), so views
            that cost a fraction of a second run every due epoch on a short fit; the
            fraction governs once the probes cost real time. Default: ``3.0``.
        max_batch_size: The most images a run processes at once (forward and backward
            passes in chunks of at most this many rows: probe predictions, gradient
            maps including SmoothGrad's and Integrated Gradients' copies, Grad-CAM,
            activations, attacks, class-model images). Default: ``None``: the training
            batch size (of the train dataloader, found at ``setup``), so no run holds
            more activations at once than a training step.
        save_dir: Where to write PNG, TSV, CSV and Markdown files when the trainer
            has no logger (``logger=False``); ignored when it has one. With loggers,
            every ``TensorBoardLogger``, ``WandbLogger``, ``MLFlowLogger`` and
            ``CSVLogger`` gets everything (see the loggers page). Default: ``None``.

    The three callables (``batch_to_xy``, ``output_to_logits``, ``images_to_input``)
    may also be import paths ``"package.module.function"`` (for LightningCLI YAML).
    """

    family: ClassVar[str] = "viz"
    uses_probe: ClassVar[bool] = True  # False: no probe is picked, `check` gets None
    needs_gradient: ClassVar[bool] = False  # True: the class score must reach the input
    needs_labels: ClassVar[bool] = False  # True: the probe must carry labels

    def __init__(
        self,
        *,
        every_n_epochs: int = 1,
        num_samples: int = 8,
        probe: Any = None,
        batch_to_xy: Callable[[Any], Any] | str | None = None,
        output_to_logits: Callable[..., Any] | str | None = None,
        images_to_input: Callable[[Tensor], Any] | str | None = None,
        mean: Sequence[float] | float | str | None = "auto",
        std: Sequence[float] | float | str | None = "auto",
        class_names: Sequence[str] | None = None,
        task: Literal["binary", "multiclass", "multilabel"] | None = None,
        on_error: Literal["warn", "raise"] = "warn",
        tag_prefix: str | None = None,
        seed: int = 0,
        max_overhead: float | None = 0.10,
        overhead_allowance: float = DEFAULT_ALLOWANCE,
        max_batch_size: int | None = None,
        save_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.every_n_epochs = check_int(every_n_epochs, "every_n_epochs", minimum=1)
        self.num_samples = check_int(num_samples, "num_samples", minimum=1)
        self.on_error = check_choice(on_error, "on_error", _ON_ERROR)
        self.batch_to_xy = check_callable(batch_to_xy, "batch_to_xy")
        self.output_to_logits = check_callable(output_to_logits, "output_to_logits")
        self.images_to_input = check_callable(images_to_input, "images_to_input")
        check_tag_prefix(tag_prefix)
        self.class_names = check_class_names(class_names)
        self.mean, self.std, self._auto_normalization = check_normalization_kinds(mean, std)
        self._given_normalization = (self.mean, self.std)
        self.task = check_task(task)
        self.probe = check_probe_source(probe)
        self.tag_prefix = (tag_prefix or self.family).strip("/")
        self.seed = check_int(seed, "seed")
        self.max_overhead = (
            None
            if max_overhead is None
            else check_float(max_overhead, "max_overhead", positive=True)
        )
        self.overhead_allowance = check_float(overhead_allowance, "overhead_allowance", minimum=0.0)
        self.max_batch_size = (
            None
            if max_batch_size is None
            else check_int(max_batch_size, "max_batch_size", minimum=1)
        )
        self._max_batch = max_batch_size or _FALLBACK_BATCH  # found at setup
        self.save_dir = check_folder(save_dir, "save_dir")
        self._written: set[str] = set()  # tags of the latest run
        self._probe: Probe | None = None
        self._probe_indices: list[int] | None = None
        self._saved_probe: dict[str, Any] | None = None
        self._saved_summary: str | None = None  # the run summary from a checkpoint
        self._task: str = self.task or "multiclass"
        self._enabled = True
        self._last_epoch: int | None = None  # the last epoch it ran at
        self._after_validation = False  # the epoch-end hook it runs in (set at setup)
        self._validated_epoch: int | None = None  # the last epoch whose validation ended
        self._coordinator: Coordinator | None = None  # the trainer's, handed over at setup
        self._said: set[str] = set()
        self._set_up = False  # set up for a fit before (on this or another trainer)
        self._pending_setup = False  # set at ``setup``; the probe and checks still to do
        self._source: Any = None  # the probe data, when the probe was picked from it
        self._transfer: Any = None  # the fit's batch transfer hooks (see _runtime.transfer)
        self._probe_from = "probe"  # "validation", "training" or "probe"

    # ----------------------------------------------------------------- to override
    def run(self, ctx: RunContext) -> None:
        """Computes and logs this callback's views (one epoch end, inside the guard)."""
        raise NotImplementedError

    def check(self, ctx: RunContext) -> None:
        """Checks the options against the model and probe at ``setup``: ``ValueError``/
        ``TypeError``, or :class:`NotApplicableError` (what the data or model rules out)."""

    def extra_state(self) -> dict[str, Any]:
        """Extra entries for ``state_dict``."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restores what :meth:`extra_state` saved; ``{}`` gives the state of a new run."""

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
        """The caption for a class index: ``class_names``, else the data's ``classes``."""
        names = self._names_in_use()  # a long name cut: `caption_names`
        if names is not None and 0 <= index < len(names):
            return caption_names(names)[index]  # "true / pred" both fit a tile
        return str(index)

    def label_name(self, label: Tensor) -> str:
        """The caption for a label: a class, or the positive labels of a multilabel row."""
        if label.dim() == 0:
            return self.class_name(int(label))
        names = [self.class_name(int(i)) for i in (label > 0.5).nonzero().flatten()]
        return "+".join(names) if names else "-"

    def warn_once(self, key: str, message: str) -> None:
        """Warns ``message`` once per run of ``fit`` for ``key``."""
        if key not in self._said:
            self._said.add(key)
            rank_zero_warn(f"{type(self).__name__}: {message}")

    @property
    def state_key(self) -> str:
        return self._generate_state_key(tag_prefix=self.tag_prefix, **self.key_args())

    # ------------------------------------------------------------------ probe
    def on_probe_changed(self) -> None:
        """Called when a resumed run cannot rebuild the saved probe (forget paired history)."""

    def _view(self, trainer: Any, module: nn.Module) -> ModelView:
        plugin = getattr(trainer, "precision_plugin", None)
        context = getattr(plugin, "forward_context", None)
        return ModelView(
            module, self.mean, self.std, self.output_to_logits, context, self.images_to_input
        )

    def _context(self, trainer: Any, module: nn.Module, log: RunLog | None) -> RunContext:
        device = next((p.device for p in module.parameters()), torch.device("cpu"))
        probe = self._probe.to(device) if self._probe is not None else None
        generator = make_generator(self.seed, device)
        head = (trainer, module, self._view(trainer, module), probe, self._task, log, generator)
        return RunContext(*head, device, self._coordinator, max_batch=self._max_batch)

    def __getstate__(self) -> dict[str, Any]:
        # ddp_spawn pickles the callbacks: the worker thread, the probe loader (torch < 2.3 cannot
        # pickle its Generator) and Lightning's `log`/`log_dict` (bound to the model) stay behind
        state = {**self.__dict__, "_coordinator": None, "_source": None, "_transfer": None}
        return {k: v for k, v in state.items() if k not in ("log", "log_dict")}

    def _shared(self, trainer: Any) -> Coordinator:
        """The coordinator handed over at ``setup`` (a new one if not set up on ``trainer``)."""
        held = self._coordinator
        return held if held is not None and held.serves(trainer) else Coordinator.of(trainer)

    # ------------------------------------------------------------------ setup
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage != "fit":
            return
        coordinator = Coordinator.of(trainer)
        if self._set_up and all(cb is not self for cb in coordinator.callbacks):
            self._start_fresh()  # set up before, but not on this trainer
        self._set_up, self._pending_setup = True, False
        self._coordinator = coordinator
        self._after_validation = validates_every_epoch(trainer)
        self._validated_epoch = None
        coordinator.register(self)
        self._said = set()
        self._dry_run = self._writerless = False  # a new trainer: asked anew
        if coordinator.open_writers(trainer, self.save_dir) is None:
            self._enabled = False
            if getattr(trainer, "fast_dev_run", False):
                coordinator.warn_once(
                    "fast_dev_run",
                    "lightning-viz: Lightning replaced the logger for fast_dev_run, so the "
                    "lightning-viz callbacks write nothing in this dry run; their setup "
                    "checks run, so a configuration error shows here (and a metric a "
                    "strict ReduceLROnPlateau steps on is measured for it)",
                )
                coordinator.budget.begin()  # viz/overhead: the checks' share of the run
                self._enabled = self._pending_setup = self._dry_run = True  # checks only
            else:
                monitors.without_writers(self, trainer, coordinator)
            return
        self._enabled = True
        self._pending_setup = True  # the probe and the checks wait for the built model
        coordinator.budget.begin()
        moved = before_weight_averaging(trainer, self, VizCallback, self._after_validation)
        if moved is not None:
            coordinator.info_once("weight averaging", f"lightning-viz: {moved}")

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        # The model is complete only now (the LightningModule's setup, configure_model and
        # configure_optimizers come after the callbacks' setup; a resume gave their state).
        monitors.recheck_without_writers(self, trainer)  # a ReduceLROnPlateau is known now
        self._finish_setup(trainer, pl_module)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any, **kwargs: Any) -> None:
        if self._pending_setup:  # lazy modules: materialized by the first step's forward
            self._finish_setup(trainer, pl_module, lazy_ok=True)

    def _finish_setup(self, trainer: Any, pl_module: Any, *, lazy_ok: bool = False) -> None:
        """Probe, task and configuration checks, once per fit, before training starts.
        A model with lazy modules (``nn.LazyConv2d``) not materialized yet waits for the
        end of the first training batch: running it here would initialize the user's
        parameters at another point of the RNG stream than the run without callbacks.
        ``lazy_ok``: go on even if some stay lazy (one that the forward never uses)."""
        if not self._pending_setup or not self._enabled:
            return
        module = unwrap_model(pl_module)
        if not lazy_ok and has_lazy_parameters(module):
            return
        self._pending_setup = False
        monitors.check_monitored_schedule(self, trainer)
        coordinator = self._shared(trainer)
        start = device_clock(module)
        try:
            with preserve_state(module):
                self._setup(trainer, module)
        except Exception as err:  # noqa: BLE001 - on_error decides, but on a bad configuration
            cannot = isinstance(err, NotApplicableError | TransferHookError)  # the user's hooks
            if isinstance(err, ValueError | TypeError) and not cannot:  # names its callback
                if (named := named_after(self, err)) is err:
                    raise
                raise named from err
            if (stop := monitors.monitored_setup_error(self, trainer, err)) is not None:
                raise stop from err  # out of memory, a failing hook or layer: as at epoch ends
            why = "cannot run on this model or data" if cannot else "failed at setup"
            self.turn_off(why, err, "" if cannot else f"\n{traceback.format_exc()}")
        release_heap()  # the checks' forward and backward passes
        coordinator.budget.charge(self.state_key, device_clock(module) - start, once=True)
        if self._dry_run:  # fast_dev_run: checks only, unless a ReduceLROnPlateau steps on it
            self._enabled = monitors.stepped_in_dry_run(self, trainer)
        if self._enabled:
            self._set_up_done(trainer)

    def _set_up_done(self, trainer: Any) -> None:
        """Called once the probe and checks are ready (to override; default: nothing)."""

    def _start_fresh(self) -> None:
        """Forgets the previous trainer's fit: reused on a new ``Trainer``, a callback starts
        a new run (probe, schedule, references, previous weights). A resumed fit gets its
        state from the checkpoint (loaded after ``setup``); a fit again continues it."""
        self._probe = self._probe_indices = self._saved_probe = self._saved_summary = None
        self._last_epoch, self._written = None, set()
        self.load_extra_state({})  # an empty state is that of a new run

    def _setup(self, trainer: Any, module: nn.Module) -> None:
        """Probe, task and configuration checks (inside the guard)."""
        coordinator = Coordinator.of(trainer)
        self._max_batch = self.max_batch_size or coordinator.train_batch_size(
            trainer, lambda: loader_batch_size(coordinator.stage_loader(trainer, "train"))
        )
        self._max_batch = self._max_batch or _FALLBACK_BATCH
        if self.uses_probe:
            self._transfer = batch_transfer(trainer, module)
            self._probe = coordinator.picked_probe(trainer, self)
            self._probe_indices = self._probe.indices
            self._find_normalization(trainer, self._probe)
            self._check_normalization(self._probe)
        ctx = self._context(trainer, module, None)
        if self.uses_probe:
            self._inspect(ctx)
            ctx = self._context(trainer, module, None)  # labels in the form of the task
        self.check(ctx)

    # ------------------------------------------------------------------ hooks
    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._note_validation(trainer)
        if self._after_validation:
            self._maybe_run(trainer, pl_module)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if not self._after_validation or self._validation_cut_off(trainer):
            self._maybe_run(trainer, pl_module)
        self._epoch_end_once(trainer)

    def _note_validation(self, trainer: Any) -> None:
        """Remembers that a validation loop of this fit ended in the current epoch."""
        if not trainer.sanity_checking and getattr(trainer.state, "fn", None) == "fit":
            self._validated_epoch = trainer.current_epoch

    def _validation_cut_off(self, trainer: Any) -> bool:
        """At the train-epoch end: it runs after validation, but this epoch stopped
        before its last batch (``max_steps``, or ``on_train_batch_start`` returned -1) or
        the validation loader has no batches, so no validation ended it and none will:
        it runs here instead, unless a validation of this epoch ran (``should_stop``
        validates at once) or it ran in this epoch already. Every rank decides the same."""
        return (
            self._after_validation
            and self._validated_epoch != trainer.current_epoch
            and self._last_epoch != trainer.current_epoch
            and (ended_before_last_batch(trainer) or no_validation_batches(trainer))
        )

    def _epoch_end_once(self, trainer: Any) -> None:
        """``summary.json``, ``viz/overhead`` and the summary text, once per epoch end
        (after every callback ran: the last registered one writes them)."""
        if self._is_last(trainer):
            self._shared(trainer).write_epoch_end(trainer)

    def _is_last(self, trainer: Any) -> bool:
        """Whether this is the trainer's last registered lightning-viz callback."""
        return any(cb is self for cb in self._shared(trainer).callbacks[-1:])

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        monitors.check_step_validation(self, trainer)  # the epoch's batches are known now
        restart_at(self, trainer)  # the summary and schedule from the first epoch end to run
        coordinator = self._shared(trainer)
        coordinator.retune(trainer, self)  # a resumed run's tolerance for its old metrics
        coordinator.start_run(trainer, self)  # layout and configuration, once per run
        measure_skipped_epoch(self, trainer, pl_module)  # a resume skipped its end (_resume)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        coordinator = self._shared(trainer)
        for callback in coordinator.callbacks:  # before the first of them waits
            callback._fit_ends()  # noqa: SLF001 - the same class
        with coordinator.together(trainer):  # rank 0's writes: every rank hears a failure
            coordinator.shutdown(wait=True)  # pending background work is written
            if self._is_last(trainer):
                coordinator.write_summary(trainer)  # a run after the last epoch end (cut short)
                coordinator.log_overhead(trainer)  # the whole fit
                coordinator.print_summary(trainer)

    def _fit_ends(self) -> None:
        """The fit ends, trained or not: unstarted background work stays for the next run."""

    # ------------------------------------------------------------ TensorBoard view
    def layout(self) -> dict[str, dict[str, list[str]]]:
        """This callback's charts in the run's custom-scalars layout.

        Returns:
            ``{category: {chart title: [scalar tags]}}`` with category keys of
            :data:`~lightning_viz.monitoring.dashboard.CATEGORIES`; the coordinator adds
            the callback's ``viz/.../seconds``. Known after ``setup``.
        """
        return {}

    def config(self) -> dict[str, str]:
        """The options this callback was built with, as text (the run's configuration)."""
        return describe_options(self, [type(self).__init__, VizCallback.__init__])

    def on_load_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict) -> None:
        saved = checkpoint.get("callbacks") or {}
        ours = [k for k in saved if k.startswith(type(self).__qualname__ + "{")]
        if ours and self.state_key not in ours:  # Lightning only asks to "add" the callback
            self.warn_once(
                "state key",
                f"the checkpoint holds {', '.join(ours)}, not {self.state_key}: its state is "
                "not restored (probe, references, previous weights); this run starts anew",
            )

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        with contextlib.suppress(Exception):  # the runs before the failure (Ctrl-C too)
            self._shared(trainer).write_summary(trainer)
        self.teardown(trainer, pl_module, "fit")

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._transfer = None  # the hooks' closure holds the trainer and its model (H66)
        self._shared(trainer).shutdown(wait=False)
        self._shared(trainer).budget.pause(trainer.current_epoch)  # until the next fit

    # ----------------------------------------------------------------- failures
    def turn_off(self, reason: str, err: BaseException, details: str = "") -> None:
        """The one failure policy: re-raise (``on_error="raise"``), or warn once and turn off."""
        if self.on_error == "raise":
            raise err
        if not self._enabled:
            return
        self._enabled = False
        say = rank_zero_warn if isinstance(err, PeerFailedError) else any_rank_warn
        say(  # a failure on one rank alone is said there, the others' on rank 0
            f"{type(self).__name__} {reason} and turns itself off for the rest of this run "
            "(training goes on; pass on_error='raise' to stop instead): "
            f"{type(err).__name__}: {err}{details}"
        )

    def deferred_failed(self, err: BaseException) -> None:
        """A job this callback deferred to the background worker failed."""
        self.turn_off("could not finish its background work (a figure or projector files)", err)

    def state_dict(self) -> dict[str, Any]:
        held = self._coordinator  # the run summary travels in the first callback's state
        summary = held.summary_state(self) if held is not None else {}
        return {**self._probe_state(), **self.extra_state(), **summary}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._load_probe_state(state_dict)
        self.load_extra_state(state_dict)
        self._saved_summary = state_dict.get("run_summary")

    # --------------------------------------------------------------- scheduling
    def scheduled(self, trainer: Any) -> bool:
        """Due by its own schedule (``every_n_epochs``, once per epoch, only in ``fit``)."""
        if (
            not self._enabled
            or trainer.sanity_checking
            or self._last_epoch == trainer.current_epoch
        ):
            return False
        if getattr(trainer.state, "fn", None) != "fit":
            return False
        return (trainer.current_epoch + 1) % self.every_n_epochs == 0

    def _due(self, trainer: Any) -> bool:
        """On every rank, scheduled, the model's parameters finite, and within the budget
        (or outside it: :attr:`Budget.suspended`)."""
        shared = self._shared(trainer)
        self._enabled = on_every_rank(trainer, self._enabled, type(self).__name__)
        return (
            self.scheduled(trainer)
            and shared.model_finite(trainer)
            and (shared.budget.suspended or shared.allows(self, trainer))
        )

    def known_tags(self) -> set[str]:
        """The scalars this callback names: written in its latest run, or in its charts
        (what it writes besides: under its ``tag_prefix``, see ``Coordinator.writes``)."""
        try:
            charts = {
                t for by_title in self.layout().values() for ts in by_title.values() for t in ts
            }
        except Exception:  # noqa: BLE001 - charts that need the set-up callback: none known
            charts = set()
        return self._written | charts

    def _maybe_run(self, trainer: Any, pl_module: Any) -> None:
        self._shared(trainer).harvest_before_run(trainer)  # work done since the last epoch
        if self._pending_setup:  # no training batch ended yet (limit_train_batches=0)
            self._finish_setup(trainer, pl_module, lazy_ok=True)
        if not self._due(trainer):
            monitors.forget_unmeasured(self, trainer)
            return
        self._last_epoch = trainer.current_epoch
        module = unwrap_model(pl_module)
        start = device_clock(module)
        log: RunLog | None = None
        try:
            log = RunLog(trainer, log_step(trainer), self, self._coordinator)
            with preserve_state(module):
                if self._probe is None and self.uses_probe:  # restored from a checkpoint
                    self._setup(trainer, module)
                ctx = self._context(trainer, module, log)
                self.run(ctx)
            self._check_outputs(ctx)
            release_heap()  # what the run freed, before the next training step's peak
            seconds = device_clock(module) - start
            log.scalar(self._seconds_tag(), seconds)
            log.flush()
            self._written = set(log.scalars)
            coordinator = self._shared(trainer)
            coordinator.summary_changed = True  # written once, at the epoch's end
            agree(trainer)  # every rank ends the run here, or leaves it with the failed one
            coordinator.budget.charge(self.state_key, ctx.one_time, once=True)
            coordinator.budget.charge(self.state_key, seconds - ctx.one_time)
        except Exception as err:  # noqa: BLE001 - reported, or re-raised on request
            mine = tell_peers(trainer, err)  # a failure here, not another rank's
            details = f"\n{traceback.format_exc()}" if mine else ""
            with contextlib.suppress(Exception):  # what the run wrote before it failed
                log.flush()  # type: ignore[union-attr] - None: RunLog failed, nothing to flush
            self._shared(trainer).budget.charge(  # what it spent: counted, never a run's cost
                self.state_key, device_clock(module, strict=False) - start, once=True
            )
            note = monitors.frozen_note(self, trainer)  # what its monitors read from now on
            monitors.forget_unmeasured(self, trainer, set(log.scalars) if log else set())
            self.turn_off(f"failed at epoch {trainer.current_epoch}{note}", err, details)

    def _seconds_tag(self) -> str:
        prefix = "" if self.tag_prefix == self.family else f"/{self.tag_prefix}"
        return f"viz/{type(self).__name__}{prefix}/seconds"
