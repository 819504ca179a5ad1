"""TextureShapeBias: does the network decide by shape or by texture?"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

import lightning_viz.functional as LF
from lightning_viz import render
from lightning_viz._checks import (
    check_bool,
    check_bool_or_auto,
    check_float,
    check_int,
    check_int_list,
    fail,
)
from lightning_viz._guard import make_generator
from lightning_viz._io import fingerprint
from lightning_viz._runtime.compat import rank_zero_info
from lightning_viz.callbacks._alerts import WatchesRegressions
from lightning_viz.callbacks._base import NotApplicableError, RunContext, VizCallback
from lightning_viz.callbacks._cue_generation import CueConflictGeneration
from lightning_viz.data.geirhos import IMAGENET16_CATEGORIES, CueConflictFolder, imagenet16_mapping
from lightning_viz.functional._task import predict
from lightning_viz.functional.bias import OTHER, SHAPE, TEXTURE, UNCOUNTED
from lightning_viz.monitoring.stats import wilson_interval

__all__ = ["TextureShapeBias"]

# cue-conflict pixels stylized at once: the 160 pairs of 32 px of the demo, 3 pairs at
# 224 px (about 0.4 GiB while it runs, beside the training it overlaps; 16 pairs took
# 1.3 GiB and were no faster)
GENERATION_PIXELS = 160 * 32 * 32
MAX_GENERATION_CHUNK = 160


def generation_chunk(height: int, width: int) -> int:
    """Pairs stylized at once for images of ``height x width`` pixels."""
    return max(1, min(MAX_GENERATION_CHUNK, GENERATION_PIXELS // (height * width)))


_GRID_IMAGES = 16
MAX_BARS = 20  # classes in `bias/per_class`: those with the most decisions beyond that
_WATCHED = ("shape_bias", "shape_acc")  # metrics whose regression warns


class TextureShapeBias(WatchesRegressions, CueConflictGeneration, VizCallback):
    """Measures the texture-vs-shape bias on cue-conflict images every epoch.

    A cue-conflict image has the shape (content) of an image of class A and the
    texture (style) of an image of class B != A (Geirhos et al., "ImageNet-trained
    CNNs are biased towards texture; increasing shape bias improves accuracy and
    robustness", ICLR 2019). By default ``num_images`` of them are built **once**
    per run from the probe images (a class-balanced pick of ``num_samples``
    validation images) with :func:`lightning_viz.functional.cue_conflict` (Gatys
    style transfer with a random-filter network, coarse to fine from at most
    ``style_size`` px, class pairs balanced, the pairing drawn from a generator
    seeded with ``seed``), in chunks (3 pairs at 224 px, at most 160 of small
    images). With ``background=True`` (or the default ``"auto"`` when there is more
    than one chunk) in one process, the chunks are made on the trainer's
    low-priority background worker from ``setup`` on, while training runs, their
    seconds charged to the overhead
    budget as background work; the bias scalars start at the first due run after
    the set is complete. Otherwise (``background=False``, or under DDP, where each
    rank makes its share of every chunk) the first run makes them, with a progress
    bar on global rank 0. They are cached in
    ``<log_dir>/lightning_viz/cue_conflict_<hash>.pt`` (a ``torch.save`` of plain
    tensors, loaded with ``weights_only=True``); the hash covers the source images,
    their labels and every generation setting, so a resumed run (same log dir)
    reloads them instead of generating again. While the set is being made each
    finished chunk is kept in ``cue_conflict_<hash>.pt.partial/``, so a run stopped
    half-way continues where it stopped. Or pass ``cue_conflict=`` a dataset, or the
    folder of Geirhos et al.'s 1,280 stimuli with ``output_mapping="imagenet16"``
    (see ``docs/shape-bias.md``).

    Every run costs only forward passes: over the cue-conflict images and twice over
    the probe images. It writes:

    * scalars ``bias/shape_bias`` (shape decisions / (shape + texture decisions),
      images whose prediction is neither are not decisions, images whose shape and
      texture class agree are not counted), ``bias/shape_acc``, ``bias/texture_acc``
      (:func:`lightning_viz.functional.shape_bias`);
    * scalar ``bias/shape_only_acc``: accuracy on the probe images with the texture
      removed (:func:`~lightning_viz.functional.shape_only`: black silhouettes on
      white when the probe has object masks, else edge maps);
    * scalar ``bias/texture_only_acc``: accuracy on the probe images with the shape
      destroyed (:func:`~lightning_viz.functional.texture_only`, 4x4 shuffled tiles);
    * figure ``bias/per_class``: per shape class, the shape bias (with its 95 % Wilson
      interval) and the fractions of shape and texture decisions (beyond 20 classes,
      the 20 with the most decisions);
    * image ``bias/cue_conflict``: up to 16 cue-conflict images captioned with their
      shape class, texture class and the prediction;
    * scalar ``bias/regression``: the largest drop of ``shape_bias`` or ``shape_acc``
      below its reference (its best run after ``warmup``; 0 when none). An alert is
      printed when a drop is larger than ``tolerance`` and significant under the exact
      paired sign test on the cue-conflict images that changed decision (for
      ``shape_bias`` only images that are a shape or texture decision in both runs;
      ``alpha``, Holm-corrected), for ``patience`` consecutive runs; once per episode.
      Every value, with its per-image outcomes, goes to
      ``<log_dir>/lightning_viz/summary.json``.

    Args:
        cue_conflict: A ``Dataset`` of ``(image, shape_label, texture_label)`` to use
            instead of generated images; images ``(C, H, W)`` in the same space as
            the validation data (normalized when ``mean``/``std`` are given), labels
            dataset class indices. All its items are used. Images whose shape and
            texture labels agree are not counted. Or a folder path (``str`` or
            ``os.PathLike``) of Geirhos et al.'s stimuli,
            ``<shape>/<shape><i>-<texture><j>.png`` (read by
            :class:`~lightning_viz.data.geirhos.CueConflictFolder`: pixel images,
            resized to the validation images' size, labels the indices of the 16
            categories, images whose shape and texture agree left out). Default:
            ``None`` (generate from the validation data).
        num_images: Number of cue-conflict images to generate (ignored with
            ``cue_conflict=``); fewer, with a warning, when the probe allows fewer
            distinct (content, style) pairs. Default: ``160``.
        tolerance: Drop below the reference that is large enough to alert (``>= 0``).
            Default: ``0.05``.
        output_mapping: Maps model outputs to dataset classes, for a model whose
            classes differ from the scored ones (as Geirhos' 16-class stimuli for an
            ImageNet model need): a list whose ``i``-th entry is the dataset class of
            model class ``i`` (``-1``: none). The logit of dataset class ``d`` is the
            max over the model classes mapped to it. Validation labels (model classes)
            are mapped the same way; probe images of unmapped classes are skipped.
            ``class_names`` then name the dataset classes. Or ``"imagenet16"``: a
            1000-class ImageNet model scored on the 16 categories of Geirhos et al.
            (:func:`~lightning_viz.data.geirhos.imagenet16_mapping`), each
            category's score the **mean softmax probability** of its ImageNet classes
            (as the paper does); ``class_names`` default to the category names.
            Default: ``None`` (identity).
        style_steps: Style-transfer steps per generated image (at the coarsest
            size). Default: ``50``.
        style_size: Generated images larger than this are stylized coarse to fine:
            ``style_steps`` at the largest halving of the image size that is at most
            ``style_size`` px, then ``refine_steps`` at each doubling up to the full
            size (224 px: 56, 112, 224). ``None``: all steps at full size.
            Default: ``64``.
        refine_steps: Steps at each finer size. Default: ``5``.
        background: Make the generated images on the background worker while
            training runs (one process only). ``"auto"``: only when the set takes
            more than one chunk (images larger than 32 px); a set of small
            images is made by the first run, so its scalars start at once.
            Default: ``"auto"``.
        content_weight: Content weight of the style transfer: lower values transfer
            more texture and keep less shape detail. Default: ``0.5``.
        use_masks: When the validation data carries object masks, paste each
            stylized object onto its content image's own background, so the
            silhouette survives at small image sizes (see ``LF.cue_conflict``).
            Default: ``True``.
        num_samples: Probe (source) images, a class-balanced pick of the validation
            data. Default: ``num_images``.
        alpha: Significance level of the alert rule, as for ``AdversarialProbe``.
            Default: 0.01.
        warmup: Epochs at the start of fit that are never a reference. Default: 0.
        patience: Consecutive flagged runs before an alert. Default: 2.
        baseline: An earlier run to compare with, as for ``AdversarialProbe``.
            Default: ``None``.
        **kwargs: The options every callback shares (see ``VizCallback``).

    Raises:
        TypeError: An argument of the wrong type.
        ValueError: A bad value. At ``setup``, before training: a cue-conflict dataset
            whose items are not ``(image, shape_label, texture_label)``, whose images
            do not match the model's input or whose labels are out of range, an
            ``output_mapping`` whose length is not the model's number of classes.
        NotApplicableError: At ``setup``, following ``on_error``: a probe without
            labels, fewer than 2 classes in it, a multilabel model.

    Examples:
        >>> bias = TextureShapeBias(num_images=160, tolerance=0.05)
        >>> bias.tag("shape_bias")
        'bias/shape_bias'
    """

    family = "bias"
    _reads_class_names = False  # its class names name the cue-conflict categories
    needs_labels = True

    def __init__(
        self,
        cue_conflict: Dataset | str | os.PathLike[str] | None = None,
        num_images: int = 160,
        tolerance: float = 0.05,
        output_mapping: Sequence[int] | str | None = None,
        style_steps: int = 50,
        content_weight: float = 0.5,
        use_masks: bool = True,
        style_size: int | None = 64,
        refine_steps: int = 5,
        background: bool | str = "auto",
        num_samples: int | None = None,
        alpha: float = 0.01,
        warmup: int = 0,
        patience: int = 2,
        baseline: str | None = None,
        **kwargs: Any,
    ) -> None:
        num_images = check_int(num_images, "num_images", minimum=1)
        super().__init__(num_samples=num_images if num_samples is None else num_samples, **kwargs)
        if isinstance(cue_conflict, str | os.PathLike):
            if not os.path.isdir(cue_conflict):
                fail("cue_conflict", "a Dataset, an existing folder or None", str(cue_conflict))
            cue_conflict = CueConflictFolder(cue_conflict)
        if cue_conflict is not None and not isinstance(cue_conflict, Dataset):
            fail(
                "cue_conflict",
                "a Dataset of (image, shape_label, texture_label), a folder path or None",
                cue_conflict,
                TypeError,
            )
        self.cue_conflict = cue_conflict
        self.num_images = num_images
        self.init_alerts(tolerance, alpha, warmup, patience, baseline)
        self.mean_probability = isinstance(output_mapping, str) and output_mapping == "imagenet16"
        if self.mean_probability:
            output_mapping = imagenet16_mapping()
            if self.class_names is None:
                self.class_names = list(IMAGENET16_CATEGORIES)
        elif isinstance(output_mapping, str):
            fail("output_mapping", "a list of ints, 'imagenet16' or None", output_mapping)
        self.output_mapping = check_int_list(output_mapping, "output_mapping", minimum=-1)
        if self.output_mapping is not None and all(v < 0 for v in self.output_mapping):
            fail(
                "output_mapping",
                "a list mapping at least one model class to a dataset class",
                self.output_mapping,
            )
        self.style_steps = check_int(style_steps, "style_steps", minimum=0)
        self.content_weight = check_float(content_weight, "content_weight", minimum=0.0)
        self.use_masks = check_bool(use_masks, "use_masks")
        self.style_size = (
            None if style_size is None else check_int(style_size, "style_size", minimum=8)
        )
        self.refine_steps = check_int(refine_steps, "refine_steps", minimum=0)
        self.background = check_bool_or_auto(background, "background")
        self._images_to_make = num_images
        self._user_set: tuple[Tensor, Tensor, Tensor] | None = None  # model-space images
        self._user_pixels = False  # the user set holds uint8 pixel images (a folder)
        self._cc_source: tuple[Tensor, Tensor, Tensor | None] | None = None  # pixels, labels, masks
        self._chunks: dict[int, tuple[Tensor, Tensor, Tensor]] = {}  # finished chunks
        self._in_background = self._looked = False  # chunks submitted to the worker; cache read
        self._stop = self._aborted = False  # the fit ends (or failed: the running chunk too)
        self._said_waiting = False
        self._cc: tuple[Tensor, Tensor, Tensor] | None = None  # pixel images, shape, texture
        self._controls: tuple[Tensor, Tensor, Tensor] | None = None  # shape/texture-only, y
        self.cache_path: str | None = None  # the cache file of this run (generated images)
        self._earlier_cache: str | None = None  # the checkpoint's run's (another log dir)

    # ----------------------------------------------------------------- metadata
    def layout(self) -> dict[str, dict[str, list[str]]]:
        names = ("shape_bias", "shape_acc", "texture_acc", "shape_only_acc", "texture_only_acc")
        names = names if getattr(self, "_controlled", True) else names[:3]  # none to control
        return {
            "bias": {
                "shape bias and cue accuracies": [self.tag(n) for n in names],
                "shape bias regression": [self.tag("regression")],
            }
        }

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "cue_cache": self.cache_path}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        self._earlier_cache = state.get("cue_cache")  # a resume in a new log dir reads it

    def key_args(self) -> dict[str, Any]:
        source = None if self.cue_conflict is None else type(self.cue_conflict).__name__
        return {"cue_conflict": source, "num_images": self.num_images}

    # -------------------------------------------------------------------- setup
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage == "fit":  # the images are built once per run, from this run's data
            self._cc = None
            self._controls = None
            self._user_set = None
            self._cc_source = None
            self._chunks = {}
            self._in_background = self._looked = False
            self._stop = self._aborted = False
            self._said_waiting = False
        super().setup(trainer, pl_module, stage)

    def _set_up_done(self, trainer: Any) -> None:
        if self._cc_source is not None:
            self._resume_or_start(trainer)

    def _fit_ends(self) -> None:
        self._stop = True  # the chunks not started stay for the next run (a fit that
        # trained no epoch, e.g. resumed at max_epochs, would wait for the whole set)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._stop = self._aborted = True  # the chunk being made stops too
        super().on_exception(trainer, pl_module, exception)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        super().on_fit_end(trainer, pl_module)  # the background work is finished
        self._say_unfinished()

    def _named_classes(self, outputs: int) -> int:
        return self._num_dataset_classes(outputs)  # names name the dataset classes

    def _num_dataset_classes(self, num_classes: int) -> int:
        return num_classes if self.output_mapping is None else max(self.output_mapping) + 1

    def _map_logits(self, logits: Tensor) -> Tensor:
        """Model logits ``(N, K)`` -> dataset-class logits ``(N, D)`` (max per class).

        One logit (binary) becomes the two columns ``(-logit, logit)``.
        """
        if logits.shape[1] == 1:
            logits = torch.cat([-logits, logits], dim=1)
        if self.output_mapping is None:
            return logits
        mapping = torch.tensor(self.output_mapping, device=logits.device)
        out = logits.new_full((logits.shape[0], max(self.output_mapping) + 1), -math.inf)
        if self.mean_probability:  # log of the mean probability of the category's classes
            logits = logits.float().softmax(dim=1)
        for d in range(out.shape[1]):
            cols = (mapping == d).nonzero().flatten()
            if cols.numel():
                if self.mean_probability:
                    out[:, d] = logits[:, cols].mean(dim=1).log()
                else:
                    out[:, d] = logits[:, cols].amax(dim=1)
        return out

    def _map_labels(self, labels: Tensor) -> Tensor:
        """Model-class labels -> dataset-class labels (``-1``: unmapped)."""
        if self.output_mapping is None:
            return labels
        mapping = torch.tensor(self.output_mapping, device=labels.device)
        return mapping[labels.clamp(0, len(self.output_mapping) - 1)]

    def check(self, ctx: RunContext) -> None:
        if ctx.task == "multilabel":
            raise NotApplicableError(
                "shape bias counts one decision per cue-conflict image, and a multilabel model "
                "makes one per label"
            )
        k = ctx.num_classes
        if self.output_mapping is not None and len(self.output_mapping) != k:
            given = "'imagenet16', for" if self.mean_probability else "a list of"  # not 1000 ints
            allowed = f"one dataset class for each of the model's {k} classes (-1: none)"
            fail("output_mapping", allowed, f"<{given} {len(self.output_mapping)} classes>")
        num_classes = self._num_dataset_classes(k)
        mapped = self._map_labels(ctx.probe.labels)  # type: ignore[arg-type]
        self._controlled = bool((mapped >= 0).any())  # control images: the scored classes'
        if self.cue_conflict is not None:
            self._user_set = self._load_user_set(ctx, num_classes)
            return
        with torch.inference_mode(False):
            labels = self._map_labels(ctx.probe.labels.long().clone())  # type: ignore[union-attr]
            keep = labels >= 0
            masks = ctx.probe.masks
            if masks is not None and self.use_masks:
                masks = masks.clone()[keep.to(masks.device)]
            else:
                masks = None
            self._cc_source = (ctx.pixels.clone()[keep.to(ctx.pixels.device)], labels[keep], masks)
        mapped = mapped[mapped >= 0]
        counts = torch.bincount(mapped, minlength=num_classes).tolist()
        classes = [c for c, n in enumerate(counts) if n > 0]
        available = sum(counts[a] * counts[b] for a in classes for b in classes if a != b)
        if len(classes) < 2:
            raise NotApplicableError(
                f"cue-conflict images need probe images of at least 2 classes; the "
                f"{len(mapped)} probe images have classes {classes}"
            )
        self._images_to_make = min(self.num_images, available)
        if available < self.num_images:
            self.warn_once(
                "few_pairs",
                f"the {len(mapped)} probe images of classes {classes} allow only {available} "
                f"distinct cue-conflict pairs (content of class A, style of class B != A); it "
                f"makes {available} images instead of num_images={self.num_images} (raise "
                "`num_samples` for more)",
            )

    def _load_user_set(self, ctx: RunContext, num_classes: int) -> tuple[Tensor, Tensor, Tensor]:
        """Reads the whole cue-conflict dataset and validates it (at ``setup``)."""
        if isinstance(self.cue_conflict, CueConflictFolder):  # uint8 pixels, resized
            folder = self.cue_conflict
            if ctx.probe.images.shape[1] != 3:
                fail(
                    "cue_conflict",
                    "a Dataset for a model of other than 3 input channels (the folder's "
                    "images are RGB)",
                    folder.root,
                )
            x, s, t = folder.load(tuple(ctx.probe.images.shape[-2:]))  # type: ignore[arg-type]
            self._user_pixels = True
            self._check_user_labels(s, t, num_classes)
            return x, s, t
        self._user_pixels = False
        images, shapes, textures = [], [], []
        loader = DataLoader(self.cue_conflict, batch_size=256, shuffle=False)
        with torch.random.fork_rng(devices=[]), torch.inference_mode(False), torch.no_grad():
            for batch in loader:
                if not isinstance(batch, list | tuple) or len(batch) != 3:
                    fail(
                        "cue_conflict",
                        "a Dataset of (image, shape_label, texture_label)",
                        f"<a batch of type {type(batch).__name__}: {batch!r:.80}>",
                    )
                x, s, t = batch
                if not isinstance(x, Tensor) or x.dim() != 4 or not x.is_floating_point():
                    shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
                    fail(
                        "cue_conflict",
                        "a Dataset of float images (C, H, W)",
                        f"<a batch of {shape}>",
                    )
                images.append(x.detach().cpu().float().clone())
                shapes.append(torch.as_tensor(s).reshape(-1).long().cpu())
                textures.append(torch.as_tensor(t).reshape(-1).long().cpu())
        if not images:
            fail("cue_conflict", "a non-empty Dataset", "<an empty dataset>")
        x, s, t = torch.cat(images), torch.cat(shapes), torch.cat(textures)
        probe_shape = tuple(ctx.probe.images.shape[1:])
        if tuple(x.shape[1:]) != probe_shape:
            fail(
                "cue_conflict",
                f"images of the validation images' shape {probe_shape}",
                f"<images of shape {tuple(x.shape[1:])}>",
            )
        self._check_user_labels(s, t, num_classes)
        return x, s, t

    def _check_user_labels(self, s: Tensor, t: Tensor, num_classes: int) -> None:
        for what, lab in (("shape", s), ("texture", t)):
            if int(lab.min()) < 0 or int(lab.max()) >= num_classes:
                fail(
                    f"cue_conflict {what} labels",
                    f"in [0, {num_classes}) (the model's "
                    f"classes{' after output_mapping' if self.output_mapping else ''})",
                    f"<values in [{int(lab.min())}, {int(lab.max())}]>",
                )
        if not bool((s != t).any()):
            fail(
                "cue_conflict",
                "a dataset with images whose shape and texture labels differ",
                "<no such image>",
            )

    # ------------------------------------------------------------- the images
    def _chunk(self) -> int:
        return generation_chunk(*self._cc_source[0].shape[-2:])  # type: ignore[index]

    def _prepare(self, ctx: RunContext) -> None:
        """Builds (or reloads) the user's cue-conflict set and the two control sets, once."""
        with torch.inference_mode(False):
            if self._cc is None and self._user_set is not None:
                x, s, t = self._user_set
                if not self._user_pixels:
                    x = ctx.view.to_pixels(x.to(ctx.device)).clamp(0, 1)
                self._cc = (x, s.to(ctx.device), t.to(ctx.device))
            if self._controls is None:
                labels = self._map_labels(ctx.probe.labels.long().clone())  # type: ignore[union-attr]
                keep = labels >= 0
                pixels, labels = ctx.pixels.clone()[keep], labels[keep]
                masks = None if ctx.probe.masks is None else ctx.probe.masks[keep]
                patch = max(1, min(pixels.shape[-2:]) // 4)
                gen, empty = make_generator(self.seed, "cpu"), not bool(keep.any())
                self._controls = (  # none in the mapped classes: no control scalars
                    pixels if empty else LF.shape_only(pixels, masks),
                    pixels if empty else LF.texture_only(pixels, patch, generator=gen),
                    labels,
                )

    def _predict(self, ctx: RunContext, images: Tensor) -> Tensor:
        """Predicted dataset classes ``(N,)``, in chunks of forward passes; under DDP each
        rank predicts its share and every rank gets all of them."""
        part = images[ctx.share(images.shape[0]).to(images.device)]
        if part.shape[0]:  # uint8 images (a folder's) become float a chunk at a time
            step = MAX_GENERATION_CHUNK
            logits = [
                ctx.forward(_as_pixels(part[i : i + step], ctx.device), self._map_logits)
                for i in range(0, len(part), step)
            ]
            joined = torch.cat(logits)  # NaN logits decide no class (not the argmax, 0)
            local = predict(joined).masked_fill(joined.isnan().any(dim=1), OTHER)
        else:
            local = torch.empty(0, dtype=torch.long, device=ctx.device)
        return ctx.gather(local, images.shape[0])

    # ---------------------------------------------------------------------- run
    def run(self, ctx: RunContext) -> None:
        if self._cc is None and self._user_set is None and self._in_background:
            if not self._said_waiting:  # the set is being made on the background worker
                self._said_waiting = True
                done = sum(c[0].shape[0] for c in self._chunks.values())
                rank_zero_info(
                    f"TextureShapeBias: {done} of {self._images_to_make} cue-conflict images "
                    "made so far, in the background; its bias scalars start at the first run "
                    "after the set is complete"
                )
            return
        start = time.perf_counter()
        built = self._cc is None or self._controls is None
        if self._cc is None and self._user_set is None:
            with torch.inference_mode(False):
                self._generate(ctx)
        self._prepare(ctx)
        if built:  # the images are made once per run of fit: not a recurring cost
            ctx.one_time += time.perf_counter() - start
        images, s, t = self._cc  # type: ignore[misc]
        shape_img, texture_img, y = self._controls  # type: ignore[misc]
        pred = self._predict(ctx, images)
        dec = LF.decisions(pred, s, t).tolist()
        fingerprint = self._fingerprint(ctx)
        outcomes = {  # per cue-conflict image: 1, 0, or None (not counted)
            "shape_bias": [{SHAPE: 1, TEXTURE: 0}.get(d) for d in dec],
            "shape_acc": [None if d == UNCOUNTED else int(d == SHAPE) for d in dec],
            "texture_acc": [None if d == UNCOUNTED else int(d == TEXTURE) for d in dec],
        }
        for name, x in (("shape_only_acc", shape_img), ("texture_only_acc", texture_img)):
            if y.numel():  # none when no probe image is of a scored class
                outcomes[name] = (self._predict(ctx, x) == y).long().tolist()
        records = {
            self.tag(name): ctx.log.scalar(
                self.tag(name),
                outcomes=values,
                fingerprint=fingerprint,
                watched=name in _WATCHED,
                tolerance=self.tolerance if name in _WATCHED else None,
            )
            for name, values in outcomes.items()
        }
        if all(d not in (SHAPE, TEXTURE) for d in dec):
            self.warn_once(
                "undecided",
                f"none of the {len(dec)} cue-conflict images was classified as its shape "
                f"or its texture class at epoch {ctx.trainer.current_epoch}, so "
                f"{self.tag('shape_bias')} is undefined there and not written (said once; "
                "the model predicts other classes, as an untrained or much wider head does)",
            )
        self.alert(ctx, {tag: records[tag] for tag in map(self.tag, _WATCHED)})
        num_classes = self._num_dataset_classes(ctx.num_classes)
        ctx.log.figure(self.tag("per_class"), self._per_class(pred, s, t, num_classes))
        ctx.log.image(self.tag("cue_conflict"), self._grid(images, s, t, pred))

    def _fingerprint(self, ctx: RunContext) -> str:
        """The probe and the cue-conflict set the outcomes belong to, hashed."""
        images, s, t = self._cc  # type: ignore[misc]
        return fingerprint(ctx.probe.fingerprint(), images, s.long(), t.long())

    # --------------------------------------------------------------- rendering
    def _per_class(self, pred: Tensor, s: Tensor, t: Tensor, num_classes: int) -> Any:
        counts = {k: v.cpu() for k, v in LF.per_class_shape_bias(pred, s, t, num_classes).items()}
        present = [k for k in range(num_classes) if counts["images"][k] > 0]
        title = "cue-conflict decisions per shape class"
        if not bool((counts["shape"] + counts["texture"]).any()):  # an empty chart, said so
            title += " (none by shape or texture yet: no shape bias)"
        if len(present) > MAX_BARS:  # the classes with the most decisions, in class order
            decided = counts["shape"] + counts["texture"]
            ranked = sorted(present, key=lambda k: (-float(decided[k]), k))
            title += f" ({MAX_BARS} of {len(present)}: the most decisions)"
            present = sorted(ranked[:MAX_BARS])
        frac = lambda v: (v / counts["images"].clamp_min(1))[present].tolist()  # noqa: E731
        shape, texture = counts["shape"].long().tolist(), counts["texture"].long().tolist()
        bands = [wilson_interval(shape[k], shape[k] + texture[k]) for k in present]
        return render.bar_figure(
            [self.class_name(k) for k in present],
            {
                "shape bias": counts["shape_bias"][present].tolist(),
                "shape decisions": frac(counts["shape"]),
                "texture decisions": frac(counts["texture"]),
            },
            ylabel="fraction (shape bias: 95 % Wilson interval)",
            title=title,
            intervals={"shape bias": bands},
        )

    def _grid(self, images: Tensor, s: Tensor, t: Tensor, pred: Tensor) -> Tensor:
        n = min(_GRID_IMAGES, images.shape[0])
        caps = [
            f"shape {self.class_name(int(s[i]))}\ntexture {self.class_name(int(t[i]))}\n"
            f"pred {self.class_name(int(pred[i]))}"
            for i in range(n)
        ]
        shown = _as_pixels(images[:n], torch.device("cpu"))
        return render.image_grid(shown, nrow=8, captions=caps, scale=render.display_scale(shown))


def _as_pixels(images: Tensor, device: torch.device) -> Tensor:
    """Float pixel images on ``device`` (uint8 images, as a folder's, divided by 255)."""
    images = images.to(device)
    return images.float() / 255 if images.dtype == torch.uint8 else images.float()
