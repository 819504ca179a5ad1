"""TextureShapeBias: does the network decide by shape or by texture?"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

import lightning_viz.functional as LF
from lightning_viz import render
from lightning_viz._guard import make_generator, preserve_state
from lightning_viz.callbacks._base import RunContext, VizCallback
from lightning_viz.callbacks._compat import rank_zero_warn
from lightning_viz.callbacks._probe import Probe
from lightning_viz.callbacks._regression import RegressionWatch, WatchesRegressions

__all__ = ["TextureShapeBias"]

_CACHE_VERSION = 2
_CHUNK = 256  # images per forward pass
_GRID_IMAGES = 16
_WATCHED = ("shape_bias", "shape_acc")  # metrics whose regression warns


def _check_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r}")
    return value


def _check_mapping(mapping: Any) -> list[int] | None:
    if mapping is None:
        return None
    if isinstance(mapping, str | bytes) or not isinstance(mapping, Sequence | Tensor):
        raise TypeError(
            f"`output_mapping` must be a list of ints (dataset class of each model class), "
            f"got {mapping!r}"
        )
    values = mapping.tolist() if isinstance(mapping, Tensor) else list(mapping)
    if any(isinstance(v, bool) or not isinstance(v, int) for v in values):
        raise TypeError(f"`output_mapping` must contain ints, got {mapping!r}")
    if not values or all(v < 0 for v in values):
        raise ValueError(
            f"`output_mapping` must map at least one model class to a dataset class, got {values}"
        )
    if any(v < -1 for v in values):
        raise ValueError(
            f"`output_mapping` entries must be dataset classes >= 0 or -1 (unused), got {values}"
        )
    return [int(v) for v in values]


class TextureShapeBias(WatchesRegressions, VizCallback):
    """Measures the texture-vs-shape bias on cue-conflict images every epoch.

    A cue-conflict image has the shape (content) of an image of class A and the
    texture (style) of an image of class B != A (Geirhos et al., "ImageNet-trained
    CNNs are biased towards texture; increasing shape bias improves accuracy and
    robustness", ICLR 2019). By default ``num_images`` of them are built **once**
    per run from the probe images (a class-balanced pick of ``num_samples``
    validation images) with :func:`lightning_viz.functional.cue_conflict` (Gatys
    style transfer with a random-filter network, class pairs balanced, the
    pairing drawn from a generator seeded with ``seed``), with a progress bar on
    global rank 0 (when the trainer shows progress bars). They are cached in
    ``<log_dir>/lightning_viz/cue_conflict_<hash>.pt`` (a ``torch.save`` of plain
    tensors, loaded with ``weights_only=True``); the hash covers the source images,
    their labels and every generation setting, so a resumed run (same log dir)
    reloads them instead of generating again. Or pass ``cue_conflict=`` a dataset.

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
    * figure ``bias/per_class``: per shape class, the shape bias and the fractions of
      shape and texture decisions;
    * image ``bias/cue_conflict``: up to 16 cue-conflict images captioned with their
      shape class, texture class and the prediction;
    * scalar ``bias/regression``: the largest drop of ``shape_bias`` or ``shape_acc``
      below its best value so far (0 when none), with a warning naming the metric,
      the epoch and the drop when a drop exceeds ``tolerance``. The best values are
      saved in ``state_dict``.

    Args:
        cue_conflict: A ``Dataset`` of ``(image, shape_label, texture_label)`` to use
            instead of generated images (e.g. Geirhos' stimuli); images ``(C, H, W)``
            in the same space as the validation data (normalized when ``mean``/``std``
            are given), labels dataset class indices. All its items are used. Images
            whose shape and texture labels agree are not counted. Default: ``None``
            (generate from the validation data).
        num_images: Number of cue-conflict images to generate (ignored with
            ``cue_conflict=``). Default: ``160``.
        tolerance: Drop below the best value that warns (``>= 0``). Default: ``0.05``.
        output_mapping: Maps model outputs to dataset classes, for a model whose
            classes differ from the scored ones (as Geirhos' 16-class stimuli for an
            ImageNet model need): a list whose ``i``-th entry is the dataset class of
            model class ``i`` (``-1``: none). The logit of dataset class ``d`` is the
            max over the model classes mapped to it. Validation labels (model classes)
            are mapped the same way; probe images of unmapped classes are skipped.
            ``class_names`` then name the dataset classes. Default: ``None``
            (identity).
        style_steps: Style-transfer steps per generated image. Default: ``50``.
        content_weight: Content weight of the style transfer: lower values transfer
            more texture and keep less shape detail. Default: ``0.5``.
        use_masks: When the validation data carries object masks, paste each
            stylized object onto its content image's own background, so the
            silhouette survives at small image sizes (see ``LF.cue_conflict``).
            Default: ``True``.
        num_samples: Probe (source) images, a class-balanced pick of the validation
            data. Default: ``num_images``.
        **kwargs: The options every callback shares (see ``VizCallback``).

    Raises:
        TypeError: An argument of the wrong type.
        ValueError: A bad value. At ``setup``, before training: a probe without
            labels, ``num_images`` larger than the (content, style) pairs of different
            classes the probe allows, a cue-conflict dataset whose items are not
            ``(image, shape_label, texture_label)``, whose images do not match the
            model's input or whose labels are out of range, an ``output_mapping``
            whose length is not the model's number of classes.

    Example:
        >>> bias = TextureShapeBias(num_images=160, tolerance=0.05)
        >>> bias.tag("shape_bias")
        'bias/shape_bias'
    """

    family = "bias"
    default_num_samples = 160

    def __init__(
        self,
        cue_conflict: Dataset | None = None,
        num_images: int = 160,
        tolerance: float = 0.05,
        output_mapping: Sequence[int] | None = None,
        style_steps: int = 50,
        content_weight: float = 0.5,
        use_masks: bool = True,
        num_samples: int | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(num_images, bool) or not isinstance(num_images, int):
            raise TypeError(f"`num_images` must be an int, got {num_images!r}")
        if num_images < 1:
            raise ValueError(f"`num_images` must be >= 1, got {num_images!r}")
        super().__init__(num_samples=num_images if num_samples is None else num_samples, **kwargs)
        if cue_conflict is not None and not isinstance(cue_conflict, Dataset):
            raise TypeError(
                "`cue_conflict` must be a Dataset of (image, shape_label, texture_label) or "
                f"None, got {type(cue_conflict).__name__}"
            )
        if isinstance(style_steps, bool) or not isinstance(style_steps, int):
            raise TypeError(f"`style_steps` must be an int, got {style_steps!r}")
        if style_steps < 0:
            raise ValueError(f"`style_steps` must be >= 0, got {style_steps!r}")
        self.cue_conflict = cue_conflict
        self.num_images = num_images
        self.tolerance = _check_number(tolerance, "tolerance")
        self.output_mapping = _check_mapping(output_mapping)
        self.style_steps = style_steps
        self.content_weight = _check_number(content_weight, "content_weight")
        if not isinstance(use_masks, bool):
            raise TypeError(f"`use_masks` must be a bool, got {use_masks!r}")
        self.use_masks = use_masks
        self._watch = RegressionWatch(self.tolerance)  # best values, reported drops
        self._user_set: tuple[Tensor, Tensor, Tensor] | None = None  # model-space images
        self._cc: tuple[Tensor, Tensor, Tensor] | None = None  # pixel images, shape, texture
        self._controls: tuple[Tensor, Tensor, Tensor] | None = None  # shape/texture-only, y
        self._source_key: str | None = None
        self.cache_path: str | None = None  # the cache file of this run (generated images)

    # ----------------------------------------------------------------- metadata
    def key_args(self) -> dict[str, Any]:
        source = None if self.cue_conflict is None else type(self.cue_conflict).__name__
        return {"cue_conflict": source, "num_images": self.num_images}

    # -------------------------------------------------------------------- setup
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage == "fit":  # the images are built once per run, from this run's data
            self._cc = None
            self._controls = None
            self._user_set = None
        super().setup(trainer, pl_module, stage)

    def _num_dataset_classes(self, num_outputs: int) -> int:
        if self.output_mapping is None:
            return num_outputs
        return max(self.output_mapping) + 1

    def _map_logits(self, logits: Tensor) -> Tensor:
        """Model logits ``(N, K)`` -> dataset-class logits ``(N, D)`` (max per class)."""
        if self.output_mapping is None:
            return logits
        mapping = torch.tensor(self.output_mapping, device=logits.device)
        out = logits.new_full((logits.shape[0], max(self.output_mapping) + 1), -math.inf)
        for d in range(out.shape[1]):
            cols = (mapping == d).nonzero().flatten()
            if cols.numel():
                out[:, d] = logits[:, cols].amax(dim=1)
        return out

    def _map_labels(self, labels: Tensor) -> Tensor:
        """Model-class labels -> dataset-class labels (``-1``: unmapped)."""
        if self.output_mapping is None:
            return labels
        mapping = torch.tensor(self.output_mapping, device=labels.device)
        return mapping[labels.clamp(0, len(self.output_mapping) - 1)]

    def check(self, module: nn.Module, probe: Probe) -> None:
        name = type(self).__name__
        if probe.labels is None:
            raise ValueError(
                f"{name} needs class labels of the validation images (shape_only/texture_only "
                "accuracy and cue-conflict generation), but the probe has none; give labels "
                "with `probe=(images, labels)` or a `batch_to_xy` that returns them"
            )
        device = next((p.device for p in module.parameters()), torch.device("cpu"))
        with preserve_state(module) as net, torch.no_grad():
            out = net(probe.images[:1].to(device))
            if self.output_to_logits is not None:
                out = self.output_to_logits(out)
        if not isinstance(out, Tensor) or out.dim() != 2:
            raise ValueError(
                f"{name} needs logits (N, K) from the model, got "
                f"{tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}; "
                "pass `output_to_logits`"
            )
        k = int(out.shape[1])
        if self.output_mapping is not None and len(self.output_mapping) != k:
            raise ValueError(
                f"`output_mapping` has {len(self.output_mapping)} entries but the model has {k} "
                "output classes; give the dataset class of every model class (-1: none)"
            )
        num_classes = self._num_dataset_classes(k)
        labels = probe.labels.long()
        if int(labels.min()) < 0 or int(labels.max()) >= k:
            raise ValueError(
                f"validation labels must lie in [0, {k}) for a model with {k} classes, got "
                f"values in [{int(labels.min())}, {int(labels.max())}]"
            )
        if self.cue_conflict is not None:
            self._user_set = self._load_user_set(probe, num_classes)
            return
        mapped = self._map_labels(labels)
        mapped = mapped[mapped >= 0]
        counts = torch.bincount(mapped, minlength=num_classes).tolist()
        classes = [c for c, n in enumerate(counts) if n > 0]
        available = sum(counts[a] * counts[b] for a in classes for b in classes if a != b)
        if len(classes) < 2 or self.num_images > available:
            raise ValueError(
                f"`num_images`={self.num_images} exceeds the {available} distinct cue-conflict "
                f"pairs (content of class A, style of class B != A) that the {len(mapped)} "
                f"probe images of classes {classes} allow; lower `num_images` or raise "
                "`num_samples`"
            )

    def _load_user_set(self, probe: Probe, num_classes: int) -> tuple[Tensor, Tensor, Tensor]:
        """Reads the whole cue-conflict dataset and validates it (at ``setup``)."""
        images, shapes, textures = [], [], []
        loader = DataLoader(self.cue_conflict, batch_size=256, shuffle=False)
        with torch.random.fork_rng(devices=[]), torch.inference_mode(False), torch.no_grad():
            for batch in loader:
                if not isinstance(batch, list | tuple) or len(batch) != 3:
                    raise ValueError(
                        "`cue_conflict` items must be (image, shape_label, texture_label), got "
                        f"a batch of type {type(batch).__name__}: {batch!r:.80}"
                    )
                x, s, t = batch
                if not isinstance(x, Tensor) or x.dim() != 4 or not x.is_floating_point():
                    shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
                    raise ValueError(
                        "`cue_conflict` images must be float tensors (C, H, W), got a batch of "
                        f"{shape}"
                    )
                images.append(x.detach().cpu().float().clone())
                shapes.append(torch.as_tensor(s).reshape(-1).long().cpu())
                textures.append(torch.as_tensor(t).reshape(-1).long().cpu())
        if not images:
            raise ValueError("`cue_conflict` is an empty dataset")
        x, s, t = torch.cat(images), torch.cat(shapes), torch.cat(textures)
        if x.shape[1:] != probe.images.shape[1:]:
            raise ValueError(
                f"`cue_conflict` images have shape {tuple(x.shape[1:])} but the validation "
                f"images {tuple(probe.images.shape[1:])}; they must fit the model's input"
            )
        for what, lab in (("shape", s), ("texture", t)):
            if int(lab.min()) < 0 or int(lab.max()) >= num_classes:
                raise ValueError(
                    f"`cue_conflict` {what} labels must lie in [0, {num_classes}) (the "
                    f"model's classes{' after output_mapping' if self.output_mapping else ''}), "
                    f"got values in [{int(lab.min())}, {int(lab.max())}]"
                )
        if not bool((s != t).any()):
            raise ValueError(
                "`cue_conflict` has no image whose shape and texture labels differ, so there "
                "is nothing to count"
            )
        return x, s, t

    # ------------------------------------------------------------- the images
    def _cache_key(self, pixels: Tensor, labels: Tensor, masks: Tensor | None) -> str:
        h = hashlib.sha256()
        settings = {
            "masks": masks is not None,
            "version": _CACHE_VERSION,
            "num_images": self.num_images,
            "style_steps": self.style_steps,
            "content_weight": self.content_weight,
            "seed": self.seed,
            "output_mapping": self.output_mapping,
            "shape": list(pixels.shape),
        }
        h.update(json.dumps(settings, sort_keys=True).encode())
        h.update(pixels.detach().float().cpu().contiguous().numpy().tobytes())
        h.update(labels.detach().long().cpu().contiguous().numpy().tobytes())
        if masks is not None:
            h.update(masks.detach().bool().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def _cache_file(self, key: str) -> str | None:
        log_dir = getattr(self._logger, "log_dir", None)
        if log_dir is None:
            return None
        return os.path.join(str(log_dir), "lightning_viz", f"cue_conflict_{key}.pt")

    @staticmethod
    def _read_cache(path: str, n: int, image_shape: tuple[int, ...]) -> tuple[Tensor, ...] | None:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, ValueError, EOFError) as err:
            rank_zero_warn(f"TextureShapeBias: ignoring unreadable cache {path}: {err}")
            return None
        keys = ("images", "shape_labels", "texture_labels")
        if not isinstance(data, dict) or not all(isinstance(data.get(k), Tensor) for k in keys):
            return None
        images, s, t = (data[k] for k in keys)
        if tuple(images.shape) != (n, *image_shape) or s.shape != (n,) or t.shape != (n,):
            return None
        return images.float(), s.long(), t.long()

    def _write_cache(self, path: str, images: Tensor, s: Tensor, t: Tensor) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        data = {
            "images": images.cpu().contiguous(),
            "shape_labels": s.cpu(),
            "texture_labels": t.cpu(),
        }
        torch.save(data, tmp)
        os.replace(tmp, path)

    def _generate(
        self, ctx: RunContext, pixels: Tensor, labels: Tensor, masks: Tensor | None
    ) -> tuple[Tensor, ...]:
        masks = masks if self.use_masks else None
        key = self._cache_key(pixels, labels, masks)
        path = self._cache_file(key)
        self.cache_path = path
        if path is not None and os.path.exists(path):
            cached = self._read_cache(path, self.num_images, tuple(pixels.shape[1:]))
            if cached is not None:
                return tuple(t.to(ctx.device) for t in cached)
        show = bool(ctx.trainer.is_global_zero) and (
            getattr(ctx.trainer, "progress_bar_callback", None) is not None
        )
        from tqdm.auto import tqdm

        with tqdm(
            total=self.num_images, desc="cue-conflict images", leave=False, disable=not show
        ) as bar:

            def progress(done: int, total: int) -> None:
                bar.update(done - bar.n)

            images, s, t = LF.cue_conflict(
                pixels,
                labels,
                self.num_images,
                steps=self.style_steps,
                content_weight=self.content_weight,
                generator=make_generator(self.seed, "cpu"),
                progress=progress,
                masks=masks,
            )
        if path is not None and ctx.trainer.is_global_zero:
            self._write_cache(path, images, s, t)
        return images, s, t

    def _prepare(self, ctx: RunContext) -> None:
        """Builds (or reloads) the cue-conflict images and the two control sets, once."""
        with torch.inference_mode(False):
            pixels = ctx.pixels.clone()
            labels = self._map_labels(ctx.probe.labels.to(ctx.device).long().clone())
            keep = labels >= 0
            pixels, labels = pixels[keep], labels[keep]
            masks = None if ctx.probe.masks is None else ctx.probe.masks.to(ctx.device)[keep]
            if self._cc is None:
                if self.cue_conflict is not None:
                    if self._user_set is None:
                        self.check(ctx.module, ctx.probe)
                    x, s, t = self._user_set  # type: ignore[misc]
                    x = ctx.view.to_pixels(x.to(ctx.device)).clamp(0, 1)
                    self._cc = (x, s.to(ctx.device), t.to(ctx.device))
                else:
                    self._cc = self._generate(ctx, pixels, labels, masks)  # type: ignore[assignment]
            if self._controls is None:
                patch = max(1, min(pixels.shape[-2:]) // 4)
                self._controls = (
                    LF.shape_only(pixels, masks),
                    LF.texture_only(pixels, patch, generator=make_generator(self.seed, "cpu")),
                    labels,
                )

    def _predict(self, ctx: RunContext, images: Tensor) -> Tensor:
        """Dataset-class logits ``(N, D)``, in chunks of forward passes."""
        out = []
        with preserve_state(ctx.view) as view, torch.no_grad():
            for start in range(0, images.shape[0], _CHUNK):
                out.append(self._map_logits(view(images[start : start + _CHUNK])))
        return torch.cat(out)

    # ---------------------------------------------------------------------- run
    def run(self, ctx: RunContext) -> None:
        self._prepare(ctx)
        images, s, t = self._cc  # type: ignore[misc]
        shape_img, texture_img, y = self._controls  # type: ignore[misc]
        logits = self._predict(ctx, images)
        pred = logits.argmax(dim=1)
        result = LF.shape_bias(pred, s, t)
        for name in ("shape_bias", "shape_acc", "texture_acc"):
            ctx.log.scalar(self.tag(name), result[name])
        for name, x in (("shape_only_acc", shape_img), ("texture_only_acc", texture_img)):
            acc = (self._predict(ctx, x).argmax(dim=1) == y).float().mean().item()
            ctx.log.scalar(self.tag(name), acc)
        epoch = int(ctx.trainer.current_epoch)
        ctx.log.scalar(self.tag("regression"), self._regression(result, epoch))
        num_classes = logits.shape[1]
        ctx.log.figure(self.tag("per_class"), self._per_class(pred, s, t, num_classes))
        ctx.log.image(self.tag("cue_conflict"), self._grid(images, s, t, pred))

    # -------------------------------------------------------------- regression
    def _regression(self, result: dict[str, float], epoch: int) -> float:
        """Updates the best values; warns about new drops; returns the largest drop."""
        largest, lines = self._watch.update({name: result[name] for name in _WATCHED}, self.tag)
        if lines:
            rank_zero_warn(
                f"TextureShapeBias: shape bias regressed at epoch {epoch}:\n" + "\n".join(lines)
            )
        return largest

    # --------------------------------------------------------------- rendering
    def _per_class(self, pred: Tensor, s: Tensor, t: Tensor, num_classes: int) -> Any:
        bias = LF.per_class_shape_bias(pred, s, t, num_classes).cpu()
        counted = s != t
        total = torch.bincount(s[counted], minlength=num_classes).float().cpu()
        shape_dec = torch.bincount(s[counted & (pred == s)], minlength=num_classes).float().cpu()
        tex_dec = torch.bincount(s[counted & (pred == t)], minlength=num_classes).float().cpu()
        frac = lambda v: torch.where(total > 0, v / total.clamp_min(1), math.nan)  # noqa: E731
        present = [k for k in range(num_classes) if total[k] > 0]
        return render.bar_figure(
            [self.class_name(k) for k in present],
            {
                "shape bias": bias[present].tolist(),
                "shape decisions": frac(shape_dec)[present].tolist(),
                "texture decisions": frac(tex_dec)[present].tolist(),
            },
            ylabel="fraction",
            title="cue-conflict decisions per shape class",
        )

    def _grid(self, images: Tensor, s: Tensor, t: Tensor, pred: Tensor) -> Tensor:
        n = min(_GRID_IMAGES, images.shape[0])
        caps = [
            f"shape {self.class_name(int(s[i]))}\ntexture {self.class_name(int(t[i]))}\n"
            f"-> {self.class_name(int(pred[i]))}"
            for i in range(n)
        ]
        scale = max(1, 96 // max(images.shape[-1], 1))
        return render.image_grid(images[:n].float().cpu(), nrow=8, captions=caps, scale=scale)
