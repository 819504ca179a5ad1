"""How a callback gets its probe and checks it against the model, at ``setup``.

:class:`ProbeSetup` is a base of :class:`~lightning_viz.callbacks.VizCallback`: where
the probe comes from (the ``probe`` argument, else the validation or training data),
loading it (or rebuilding it from a checkpoint), the input normalization (given, or
read from a ``Normalize`` in the data's transform), and the first look at the model's
outputs: the task, the labels in the form of the task and the class names.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from lightning_viz._checks import check_class_names
from lightning_viz._guard import ModelView
from lightning_viz._runtime.context import NotApplicableError, RunContext
from lightning_viz._runtime.coordinator import Coordinator
from lightning_viz._runtime.loaders import opaque_sampler
from lightning_viz._runtime.normalization import (
    affine_normalization,
    compose,
    find_classes,
    find_normalize,
    value_range,
)
from lightning_viz._runtime.probe import (
    Probe,
    first_batch,
    is_tensor_tuple,
    load_probe,
    scan,
    scan_limit,
    split_batch,
)
from lightning_viz.functional._task import check_task_fits, detect_task, normalize_labels

__all__ = ["ProbeSetup"]

_STORE_PROBE_BYTES = 4 * 2**20  # probes up to this size are saved in the checkpoint

_RANGE_SLACK = 1e-3  # probe values this far outside [0, 1] still count as pixels
_GIVEN_SLACK = 0.1  # with mean/std: a resize's overshoot, not a wrong normalization
_FORWARD_IS_THE_CLASSIFIER = (
    "The callbacks observe the LightningModule's forward: it must take images and return "
    "class scores (a GAN whose forward is its generator, or an autoencoder, needs a forward "
    "that runs the classifier or discriminator; call the generator by name in training_step)"
)
_PROBABILITY_EVIDENCE = 8  # output values in [0, 1] needed to call them probabilities


def pixel_scale_hint(low: float, high: float) -> str:
    """The ``mean``/``std`` that make inputs in ``[low, high]`` pixels in ``[0, 1]``
    (``pixels = inputs * std + mean``), as a phrase for a message: 0-255 data,
    ``[-1, 1]`` data, or the probe's own range.

    Examples:
        >>> pixel_scale_hint(0.0, 228.0)
        'mean=[0.0], std=[1 / 255] (0-255 data)'
        >>> pixel_scale_hint(-0.98, 1.0)
        'mean=[0.5], std=[0.5] (data in [-1, 1])'
    """
    if low >= -_GIVEN_SLACK and 1 + _GIVEN_SLACK < high <= 255 * (1 + _GIVEN_SLACK):
        return "mean=[0.0], std=[1 / 255] (0-255 data)"
    if -1 - _GIVEN_SLACK <= low < 0 and high <= 1 + _GIVEN_SLACK:
        return "mean=[0.5], std=[0.5] (data in [-1, 1])"
    span = max(high - low, 1e-12)
    return (
        f"mean=[{-low / span:.4g}], std=[{1 / span:.4g}] (maps the probe's range onto [0, 1]; "
        "use your data's full range if it is wider)"
    )


def _is_identity(normalization: tuple[list[float], list[float]]) -> bool:
    """Whether ``(mean, std)`` leaves the values as they are (up to float rounding)."""
    mean, std = normalization
    return all(abs(m) < 1e-4 for m in mean) and all(abs(s - 1) < 1e-4 for s in std)


def _short(values: Sequence[float]) -> str:
    """``(0.485, 0.456, 0.406)``: per-channel values, 4 significant digits (one value
    bare: ``0.5``)."""
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def _example(labels: Tensor) -> str:
    """``1.0 -> class 1``: the largest whole-number float label, as a class index."""
    top = int(labels.max()) if labels.numel() else 0
    return f"{top}.0 -> class {top}"


def _label_error(name: str, err: Exception, labels: Tensor, source: str) -> str:
    """The message for probe labels the model cannot take: the callback, where the
    labels came from, and what to do about negative ones (an ``ignore_index``)."""
    where = f"the labels of the {labels.shape[0]} probe images picked from the {source} data"
    text = f"{name}: {err} ({where}; the rest of the data may hold others)"
    if labels.numel() and float(labels.min()) < 0:
        text += (
            ". A negative label (an ignore_index such as -100) names no class: pass "
            "`probe=` images with class labels, or a `batch_to_xy` that gives them"
        )
    return text


def _no_batches(loader: Any) -> bool:
    """Whether a dataloader has a length, and it is 0."""
    try:
        return len(loader) == 0
    except TypeError:  # an iterable dataset: its length is unknown
        return False


class ProbeSetup:
    """The probe steps of ``VizCallback.setup`` (a base class, no state of its own)."""

    _found_names: list[str] | None = None  # the data's ``classes``, set at each setup
    _reads_class_names: ClassVar[bool] = True  # False: the data's classes are not captions

    def _probe_state(self) -> dict[str, Any]:
        """The probe's part of ``state_dict``: its positions, fingerprint and (up to
        :data:`_STORE_PROBE_BYTES`) the probe itself."""
        state: dict[str, Any] = {"probe_indices": self._probe_indices}
        probe = self._probe
        if probe is not None:
            state["probe_fingerprint"] = probe.fingerprint()
            state["probe_num_samples"] = self.num_samples
            if probe.images.numel() * probe.images.element_size() <= _STORE_PROBE_BYTES:
                state["probe"] = {
                    "images": probe.images.detach().cpu().clone(),
                    "labels": None if probe.labels is None else probe.labels.cpu().clone(),
                    "masks": None if probe.masks is None else probe.masks.cpu().clone(),
                    "seen": probe.seen,
                }
        return state

    def _load_probe_state(self, state: dict[str, Any]) -> None:
        """Takes back what :meth:`_probe_state` saved; the probe is rebuilt from it when
        the callback is next set up."""
        indices = state.get("probe_indices")
        self._probe_indices = None if indices is None else [int(i) for i in indices]
        saved = dict(state.get("probe") or {})
        saved["fingerprint"] = state.get("probe_fingerprint")
        saved["num_samples"] = state.get("probe_num_samples")
        self._saved_probe = saved
        self._probe = None

    def _probe_source(self, trainer: Any) -> Any:
        """The probe data (``self._probe_from`` says where it came from)."""
        if self.probe is not None:
            self._probe_from = "probe"
            return self.probe
        coordinator = Coordinator.of(trainer)
        loader = coordinator.stage_loader(trainer, "val")
        if loader is not None and not _no_batches(loader):
            self._probe_from = "validation"
            if (kind := opaque_sampler(loader)) is not None:
                coordinator.warn_once(
                    "opaque sampler",
                    f"lightning-viz: the validation loader's sampler ({kind}) does not name "
                    "the samples it draws (an `indices` list), so the probe is picked from "
                    "its whole dataset, which may hold training samples. Pass `probe=` "
                    "the held-out data, or split with a Subset or SubsetRandomSampler",
                )
            return loader
        why = (
            "the fit has no validation data"
            if loader is None
            else "the validation dataloader yields no batches (a dataset of length 0, or "
            "drop_last=True with a batch larger than the dataset)"
        )
        coordinator.info_once(
            "probe from training",
            f"lightning-viz: {why}: the callbacks pick their probe images from the "
            "training data. Pass `probe=` for held-out images",
        )
        loader = coordinator.stage_loader(trainer, "train")
        if loader is not None:
            self._probe_from = "training"
            return loader
        raise NotApplicableError(
            f"{type(self).__name__} found no validation or training data to pick probe "
            "images from; pass `probe=` a tensor, (images, labels) or a Dataset"
        )

    def _load_probe(self, trainer: Any) -> Probe:
        """The probe: saved in the checkpoint, rebuilt from saved positions, or picked."""
        saved = self._saved_probe
        self._source = None
        given = self.probe is not None and saved is not None  # picked as in a new run
        if given:
            self._probe_indices = None
        asked = None if saved is None else saved.get("num_samples")
        if asked is not None and asked != self.num_samples and not given:
            self.warn_once(
                "probe size",
                f"it keeps the checkpoint's probe (num_samples={asked}), so that its values "
                f"stay comparable sample by sample; num_samples={self.num_samples} applies "
                "to a new run (without ckpt_path)",
            )
        if saved is not None and saved.get("images") is not None and not given:
            return Probe(
                saved["images"],
                saved.get("labels"),
                saved.get("masks"),
                self._probe_indices,
                saved.get("seen"),
            )
        source = self._source = self._probe_source(trainer)
        # A DataLoader iterator draws its base seed from the global RNG: fork it, so
        # picking the probe leaves the run's random streams untouched.
        lost = None
        with torch.random.fork_rng(devices=[]):
            try:
                probe = self._shared_pick(trainer, source)
            except IndexError as err:  # the checkpoint's positions: the data shrank since
                if self._probe_indices is None:
                    raise
                self._probe_indices, lost = None, err
                probe = self._shared_pick(trainer, source)
        finite = torch.isfinite(probe.images).flatten(1).all(dim=1)
        if not bool(finite.all()):
            bad = (~finite).nonzero().flatten().tolist()
            where = bad if probe.indices is None else [probe.indices[i] for i in bad]
            Coordinator.of(trainer).warn_once(  # once for every callback of the trainer
                f"nonfinite {self._probe_from}",
                f"lightning-viz: probe images at positions {where} of the {self._probe_from} "
                "data have non-finite values (NaN or inf); they are left out of the probes "
                "(the positions are this callback's pick: another may find others)",
            )
            probe = probe.select(finite)
            if not len(probe):
                raise NotApplicableError("every probe image has non-finite values (NaN or inf)")
        expected = None if saved is None else saved.get("fingerprint")
        if lost is not None or (expected is not None and expected != probe.fingerprint()):
            what, why = (
                "the probe rebuilt from the checkpoint's positions",
                "the data's order or content ",
            )
            if given:
                what, why = "the probe= given", "the probe= data, or num_samples, "
            said = f"is not the one saved (fingerprint {probe.fingerprint()} != {expected})"
            if lost is not None:
                what, said = "the checkpoint's probe", f"does not fit the data ({lost})"
            self.warn_once(
                "probe_changed",
                f"{what} {said}: {why}changed since the checkpoint. This run uses a new probe; "
                "its values are not comparable sample by sample with those before the resume",
            )
            self.on_probe_changed()
        return probe

    def _shared_pick(self, trainer: Any, source: Any) -> Probe:
        """This callback's pick from one scan of ``source`` shared by every callback of
        the trainer that reads the same data (kept images: the largest pick among them).
        A checkpoint's positions that scan did not keep are read on their own."""
        indices = self._probe_indices
        if isinstance(source, Tensor) or is_tensor_tuple(source):
            return load_probe(source, self.num_samples, self.batch_to_xy, indices)
        cbs = [] if self.probe is not None else getattr(trainer, "callbacks", None) or []
        sharing = [c for c in cbs if isinstance(c, ProbeSetup) and c.uses_probe and c.probe is None]
        need = max([self.num_samples] + [c.num_samples for c in sharing])
        transfer = self._data_transfer()
        key = (
            getattr(source, "dataset", source),
            getattr(source, "collate_fn", None),
            self.batch_to_xy,
            scan_limit(need),
            transfer is not None,  # the same trainer: the same hooks
        )
        shared = Coordinator.of(trainer).shared_scan(
            key, need, lambda: scan(source, need, self.batch_to_xy, transfer=transfer)
        )
        ordered = shared.sorted_by_class()  # said in _inspect, if the model has more
        self._ordered_scan = None if ordered is None else (len(shared.labels), *ordered)
        try:
            return shared.probe(self.num_samples, indices)
        except LookupError:  # positions saved by a run that picked differently
            return load_probe(
                source, self.num_samples, self.batch_to_xy, indices, transfer=transfer
            )

    def _data_transfer(self) -> Any:
        """The fit's batch transfer hooks when the probe comes from the fit's data (a
        ``probe=`` argument is taken as given), else ``None``."""
        return None if self._probe_from == "probe" else self._transfer

    def _hook_normalization(self, source: Any, data_normalized: bool) -> Any:
        """``(mean, std)`` of a normalization done in the batch transfer hooks: each
        channel of the first batch as the hooks leave it, an exact affine function of
        the batch as the dataloader gives it; else ``None``. The dataloader's batch must
        be pixels in ``[0, 1]``, whole numbers in ``[0, 255]`` (``uint8`` data made
        floats and normalized on the device: ``(x / 255 - mean) / std``) or
        (``data_normalized``) normalized by the ``Normalize`` found in its transform; a
        hook that only makes ``uint8`` data ``[0, 1]`` floats is no normalization."""
        transfer = self._data_transfer()
        if transfer is None or not isinstance(source, DataLoader):
            return None
        batch = first_batch(source)
        if batch is None:
            return None
        with torch.no_grad():
            seen = split_batch(transfer(batch), self.batch_to_xy)[0]
            try:  # the hooks may make it images (channels-last uint8 permuted on the device)
                raw = split_batch(batch, self.batch_to_xy)[0]
            except (TypeError, ValueError):
                return None
        low, high = value_range(raw)
        pixels = raw.float()
        if not data_normalized and (low < -_RANGE_SLACK or high > 1 + _RANGE_SLACK):
            if not (0 <= low <= high <= 255 and bool((pixels == pixels.round()).all())):
                return None  # the data is not pixels itself: nothing to read
            pixels = pixels / 255  # uint8 values (GPU preprocessing): the pixels are raw / 255
        return affine_normalization(pixels, seen.detach().float().cpu())

    def _find_normalization(self, trainer: Any, probe: Probe) -> None:
        """``mean``/``std`` when not given: from a ``Normalize`` in the probe data's
        transform (said once per trainer); none found, the probe must be pixels.

        Raises:
            ValueError: No normalization is known and the probe's values fall outside
                ``[0, 1]``.
        """
        if not self._auto_normalization:
            return
        source = self._source
        if source is None and self.probe is None:  # a probe restored from a checkpoint
            with contextlib.suppress(NotApplicableError):
                source = self._probe_source(trainer)
        if self._data_normalization(trainer, source):
            return
        where = self._transform_named()
        low, high = value_range(probe.images)
        if low < -_RANGE_SLACK or high > 1 + _RANGE_SLACK:
            raise ValueError(
                f"{type(self).__name__}: the probe images have values in [{low:.3g}, {high:.3g}], "
                f"outside the pixel range [0, 1], and no torchvision Normalize was found in "
                f"{where}, so the callbacks cannot tell how to show them or what size an "
                "attack's eps is. Pass the normalization your data uses as mean=[...], "
                f"std=[...] (per channel; for these values {pixel_scale_hint(low, high)})"
                f"{self._hooks_said()}"
            )

    def _transform_named(self) -> str:
        """Where the probe data's transform is, for a message."""
        if self._probe_from == "probe":
            return "the `probe` dataset's transform"
        return f"the {self._probe_from} transform"

    def _data_normalization(self, trainer: Any, source: Any) -> bool:
        """Sets ``mean``/``std`` "auto" to the normalization of ``source`` (the probe's
        data): a ``Normalize`` in its transform, composed with one the batch transfer
        hooks do (said once per trainer). ``False`` when none is found."""
        self.mean, self.std = self._given_normalization
        found = find_normalize(source if source is not None else self.probe)
        where = self._transform_named()
        how = f"{where} (a Normalize)"
        in_hooks = self._hook_normalization(source, data_normalized=found is not None)
        if in_hooks is not None and not _is_identity(in_hooks):
            found = compose(found, in_hooks)
            how = (
                f"the {self._probe_from} batches before and after the batch transfer hooks "
                "(an exact per-channel normalization)"
            )
        if found is None:
            return False
        self.mean, self.std = found
        Coordinator.of(trainer).info_once(
            f"normalization {found}",
            f"lightning-viz: using mean={_short(found[0])}, std={_short(found[1])} from "
            f"{how}; the callbacks show and attack images in pixel space. "
            "Pass mean=/std= to override",
        )
        return True

    def _hooks_said(self) -> str:
        """A note on the batch transfer hooks for a message, when the fit has some."""
        if self._data_transfer() is None:
            return ""
        return (
            ". The probe images are the batches as validation_step gets them, after "
            "the transfer hooks (on_before_batch_transfer, transfer_batch_to_device, "
            "on_after_batch_transfer)"
        )

    def _check_channels(self, images: Tensor, what: str = "probe") -> None:
        """Raises unless ``mean``/``std`` have one value per channel of the ``what``
        ``images`` (or one)."""
        channels = int(images.shape[1])
        for stats in (self.mean, self.std):
            if stats is not None and len(stats) not in (1, channels):
                raise ValueError(
                    f"{type(self).__name__}: `mean`/`std` have {len(stats)} values but the "
                    f"{what} images have {channels} channels (shape "
                    f"{tuple(images.shape[1:])}); give one value per input channel"
                )

    def _check_normalization(self, probe: Probe) -> None:
        """Raises unless ``mean``/``std`` have one value per channel of the probe (or one)
        and turn the probe into pixels: within ``[0, 1]`` up to ``_GIVEN_SLACK``."""
        self._check_channels(probe.images)
        view = ModelView(nn.Identity(), self.mean, self.std)
        low, high = value_range(view.to_pixels(probe.images.float()))
        if self.mean is None and self.std is None:
            if low < -_GIVEN_SLACK or high > 1 + _GIVEN_SLACK:
                raise ValueError(
                    f"{type(self).__name__}: with mean=None, std=None the model's inputs are "
                    f"taken as the pixels, but the probe images have values in [{low:.3g}, "
                    f"{high:.3g}], not [0, 1]: they would be clipped to [0, 1] before the "
                    "model sees them, so every probe would measure other images than "
                    "validation does, and attacked at the wrong eps. Pass the normalization "
                    f"that maps them to [0, 1]: {pixel_scale_hint(low, high)}"
                )
            return
        if low < -_GIVEN_SLACK or high > 1 + _GIVEN_SLACK:
            mean, std = (None if v is None else _short(v) for v in (self.mean, self.std))
            raise ValueError(
                f"{type(self).__name__}: with mean={mean}, std={std} "
                f"the probe images become pixels in [{low:.3g}, {high:.3g}], not [0, 1], so "
                "they would be drawn clipped and attacked at the wrong eps. Pass the "
                "normalization your data uses, on the [0, 1] scale (ImageNet's is "
                "mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]), or mean=None, "
                "std=None when the model's inputs are pixels in [0, 1]"
            )

    def _inspect(self, ctx: RunContext) -> None:
        """Checks the probe against the model; detects the task; normalizes the labels."""
        name = type(self).__name__
        probe = ctx.probe
        try:
            with torch.no_grad():
                out = ctx.view(ctx.pixels[:2])
        except torch.cuda.OutOfMemoryError:
            raise  # not the configuration: on_error decides
        except (RuntimeError, TypeError, ValueError, LookupError, AttributeError) as err:
            if isinstance(err, AttributeError) and "'Tensor' object" not in str(err):
                raise  # the model's own (an attribute set later): on_error decides
            raise ValueError(
                f"{name}: running the model on the probe images of shape "
                f"{tuple(probe.images.shape[1:])} failed ({type(err).__name__}: {err}). Check "
                "that the probe has the model's input channels and size; pass `images_to_input` "
                "when forward takes something other than an image tensor (a dict, several "
                "inputs), `output_to_logits` when it returns more than logits, `batch_to_xy` to "
                f"pick the images out of a batch. {_FORWARD_IS_THE_CLASSIFIER}"
            ) from err
        if out.dim() != 2:
            given = self.output_to_logits is not None  # the user's map returned it
            raise ValueError(
                f"{name} needs logits (N, K) from the model, got shape {tuple(out.shape)}"
                + (" from `output_to_logits`" if given else "; pass `output_to_logits`")
                + f". {_FORWARD_IS_THE_CLASSIFIER}"
            )
        check_task_fits(self.task, int(out.shape[1]), name)
        labels = probe.labels
        if labels is not None and labels.dim() == 2 and labels.shape[1] == 1 < out.shape[1]:
            labels = labels[:, 0]  # a dataset's tensor([c]): class indices, not label rows
        if labels is not None and labels.dim() == 1 and labels.is_floating_point():
            labels = self._float_labels(ctx.trainer, labels)
        self._task = self.task or detect_task(int(out.shape[1]), labels)
        self._check_class_names(int(out.shape[1]))
        self._found_names = self._dataset_class_names(ctx.trainer, self._source, out.shape[1])
        ordered = getattr(self, "_ordered_scan", None)  # (samples read, first, last class)
        if ordered is not None and self._task == "multiclass" and ordered[2] < out.shape[1] - 1:
            Coordinator.of(ctx.trainer).warn_once(
                f"sorted {self._probe_from}",
                f"lightning-viz: the probe images are picked from the first {ordered[0]} "
                f"samples of the {self._probe_from} data, which is ordered by class: they "
                f"hold classes {ordered[1]} to {ordered[2]} of the model's {out.shape[1]} "
                "only, so the probe leaves the later classes out. Pass `probe=` a "
                "class-balanced set (e.g. a Subset of the data at spread positions)",
            )
        if labels is not None:
            try:
                labels = normalize_labels(
                    labels.cpu(), self._task, int(out.shape[1]), "probe labels"
                )
            except ValueError as err:
                raise ValueError(_label_error(name, err, labels, self._probe_from)) from err
            self._probe.labels = labels  # type: ignore[union-attr]
        elif self.needs_labels:
            raise NotApplicableError(
                f"{name} needs labels, but the probe has none; give labels with "
                "`probe=(images, labels)` or a `batch_to_xy` that returns them"
            )
        if self.needs_gradient:
            x = ctx.pixels[:1].clone().requires_grad_(True)
            if not ctx.view(x).requires_grad:
                raise NotApplicableError(
                    "the class scores have no gradient path to the input images: the model "
                    "computes them without autograd (torch.no_grad()/inference_mode() in "
                    "forward, .detach(), or a non-differentiable op), so its gradient maps "
                    "and attacks would be empty"
                )

    def _check_outputs(self, ctx: RunContext) -> None:
        """Warns once per trainer when a binary or multilabel model's outputs on the probe
        (if this run computed them) all lie in [0, 1], some at 0.5 or above: probabilities
        from a sigmoid inside the model, which the callbacks would read as logits
        (positive when > 0). Logits all just above 0 (a new or collapsed model's, 0.01-0.05)
        are not: a sigmoid's outputs start around 0.5 and spread from there."""
        logits = ctx.__dict__.get("logits")  # the cached probe logits, never a new forward
        if logits is None:
            return
        nan = int(torch.isnan(logits).flatten(1).any(dim=1).sum())
        if nan:
            ctx.coordinator.warn_once(  # type: ignore[union-attr] - set for every run
                "nan outputs",
                f"lightning-viz: the model's outputs hold NaN for {nan} of {logits.shape[0]} "
                f"probe samples ({type(self).__name__}, epoch {ctx.trainer.current_epoch}); "
                "they count as wrong in every accuracy (an overflow in a low-precision forward?)",
            )
        if ctx.task not in ("binary", "multilabel"):
            return
        if logits.numel() < _PROBABILITY_EVIDENCE or not bool(
            ((logits >= 0) & (logits <= 1)).all() and (logits >= 0.5).any()
        ):
            return
        ctx.coordinator.warn_once(  # type: ignore[union-attr] - set for every run
            "sigmoid outputs",
            f"lightning-viz: the {ctx.task} model's outputs lie in [0, 1] on all "
            f"{logits.shape[0]} probe samples: they look like probabilities (a sigmoid "
            "inside the model), while the callbacks read them as logits (a label is "
            "positive when its logit is > 0), so every probe label counts as predicted "
            "positive and the accuracies, attacks and maps are wrong. Return the logits "
            "from forward (and train with BCEWithLogitsLoss), or pass "
            "`output_to_logits=lambda p: torch.logit(p, eps=1e-6)` to each callback",
        )

    def _float_labels(self, trainer: Any, labels: Tensor) -> Tensor:
        """Float class labels ``(N,)``: whole numbers are class indices (said once);
        others are a configuration error (``TypeError``) naming ``batch_to_xy``."""
        if self.task in ("binary", "multilabel"):
            return labels  # 0/1 probabilities: thresholded at 0.5 by the task
        whole = torch.isfinite(labels).all() and bool((labels == labels.round()).all())
        if not whole:
            odd = labels[labels != labels.round()][:3].tolist()
            raise TypeError(
                f"{type(self).__name__}: the probe labels are floats ({labels.dtype}) that are "
                f"not whole numbers (e.g. {odd}); the callbacks need class indices (N,) or "
                "label rows (N, K). Pass `batch_to_xy` mapping a batch to (images, labels) with "
                "integer class indices (or task='binary' for 0/1 probabilities)"
            )
        Coordinator.of(trainer).info_once(
            "float labels",
            f"lightning-viz: the probe labels are floats ({labels.dtype}) with whole values; "
            f"they are read as class indices ({_example(labels)})",
        )
        return labels.long()

    def _named_classes(self, outputs: int) -> int:
        """How many names ``class_names`` must hold for a model with ``outputs`` logits."""
        return outputs

    def _names_in_use(self) -> list[str] | None:
        """``class_names``, else the probe data's ``classes`` found at ``setup``."""
        return self.class_names or self._found_names

    def _dataset_class_names(
        self, trainer: Any, source: Any, outputs: int | None
    ) -> list[str] | None:
        """The class names of the probe data (its dataset's ``classes``) when
        ``class_names`` is not given and, for ``outputs`` logits, there is one per class."""
        if self.class_names is not None or not self._reads_class_names:
            return None
        source = self.probe if source is None else source
        if source is None and self.uses_probe:  # a probe restored from a checkpoint
            with contextlib.suppress(NotApplicableError):
                source = self._probe_source(trainer)
        names = find_classes(source)
        if outputs == 1 and self._task == "binary":
            outputs = 2  # one logit, two classes
        if names is None or outputs is not None and len(names) != outputs:
            return None
        names = check_class_names(names)  # one line each, as given ones (a folder's tab)
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        Coordinator.of(trainer).info_once(
            f"class names {names}",
            f"lightning-viz: the class names are the {self._probe_from} dataset's `classes` "
            f"({shown}); pass class_names= to override",
        )
        return names

    def _check_class_names(self, outputs: int) -> None:
        """Raises unless ``class_names`` has one name per class of the model."""
        if self.class_names is None:
            return
        classes = 2 if outputs == 1 and self._task == "binary" else self._named_classes(outputs)
        if len(self.class_names) != classes:
            raise ValueError(
                f"{type(self).__name__}: `class_names` has {len(self.class_names)} names but "
                f"the model has {classes} classes ({outputs} logits); give one name per class"
            )
