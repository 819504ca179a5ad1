"""EmbeddingProjector: how the feature space organizes itself, in TensorBoard's projector."""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Any, Literal

import torch
from torch import Tensor, nn

from lightning_viz._checks import check_choice, check_int, fail
from lightning_viz._guard import (
    ModelView,
    NotLogitsError,
    is_compiled,
    preserve_state,
    unwrap_model,
)
from lightning_viz._hooks import record_io
from lightning_viz._runtime.combined import first_part
from lightning_viz._runtime.coordinator import Coordinator
from lightning_viz._runtime.distributed import gather_objects
from lightning_viz._runtime.loaders import has_loader
from lightning_viz._runtime.normalization import find_classes
from lightning_viz._runtime.probe import first_batch, split_batch
from lightning_viz._runtime.projector import (
    sprite_thumb_size,
    square_thumbnails,
    stretched_outside_pixels,
)
from lightning_viz._runtime.schedule import max_steps_reached
from lightning_viz._runtime.transfer import batch_transfer
from lightning_viz.callbacks import _monitors as monitors
from lightning_viz.callbacks._base import NotApplicableError, RunContext, VizCallback
from lightning_viz.callbacks._embedding_parts import (
    embedding_with_metadata,
    first_tensor,
    merge_ranks,
    projection_figure,
)
from lightning_viz.callbacks._embedding_scores import log_scores
from lightning_viz.functional._grad import logit_head, named_layers, resolve_layer
from lightning_viz.functional._task import detect_task, normalize_labels, predict
from lightning_viz.render.maps import shown_channels

__all__ = ["EmbeddingProjector"]

PROJECTIONS = ("tsne", "pca")
MAX_PENDING_FIGURES = 2  # jobs of a tag waiting on the worker before a run's is skipped


class EmbeddingProjector(VizCallback):
    """Writes the penultimate features of validation samples to TensorBoard's projector.

    The features (the input of the last ``nn.Linear`` in module order, or the
    output of ``layer``, flattened to ``(N, D)``) are captured by a forward hook
    **during the normal validation loop**: no extra forward pass (at ``setup``, one
    forward of one validation image when ``class_names`` is given, to check it, or when
    the model has several ``nn.Linear``, to find the head). The first
    ``num_samples`` validation samples are kept: the same ones every epoch when the
    validation loader does not shuffle (one that does gives other samples, and
    another sprite, each epoch). Under DDP every rank gathers the samples of
    all ranks in the order the ``DistributedSampler`` dealt them (sample ``i`` of
    rank ``r`` is global sample ``i * world_size + r``) and global rank 0 writes.

    Writes, at the step of each run:

    - projector embedding ``embedding/<layer>`` with metadata columns ``label``,
      ``predicted``, ``correct`` (class names when given) and thumbnails sized so
      the sprite stays within TensorBoard's 8192 px limit;
    - figure ``embedding/<layer>/<projection>``: a 2-D t-SNE (van der Maaten &
      Hinton, 2008; openTSNE when installed, scikit-learn otherwise) or PCA scatter
      colored by label.

    The projector files and the projection are computed **off the training
    thread**, on the trainer's one low-priority background worker (shared by the
    lightning-viz callbacks, see ``RunLog.defer``), so the epoch end only captures,
    gathers and computes the scalars; the figure is written with the step it belongs
    to once it is done (checked at every epoch end; the end of ``fit`` waits for all
    pending work, an exception or ``teardown`` cancels it).

    Scalars:

    - ``embedding/knn_acc`` (leave-one-out ``k``-NN accuracy of the labels in
      feature space) and ``embedding/silhouette`` (mean silhouette of the labels),
      computed at the epoch end, also in ``trainer.callback_metrics`` on every rank,
      on the labelled samples (not a negative ``ignore_index`` such as -100), each
      counted once (a sampler with replacement repeats samples: said once).

    ``<layer>`` is the dotted name of the last ``Linear`` (whose *input* is shown)
    or of ``layer``. Predictions come from the ``LightningModule``'s output (mapped
    by ``output_to_logits``), or from the last ``Linear``'s output when the module's
    forward is not called in ``validation_step``; otherwise the column shows ``?``.

    Args:
        layer: Dotted name of the layer whose output is embedded. Default: ``None``
            (the input of the classifier head: the ``nn.Linear`` that outputs the
            logits, found in execution order on one validation image when the model
            has several; the last ``nn.Linear`` when none outputs their width).
        num_samples: How many validation samples to embed, ``>= 2``. Default: 1000.
        projection: ``"tsne"`` or ``"pca"``, the static 2-D figure. Default: ``"tsne"``.
        k: Neighbours of the k-NN accuracy, ``>= 1`` (clipped to ``N - 1``).
            Default: 5.
        **kwargs: The options every callback shares (see ``VizCallback``);
            ``probe`` is not used (the samples come from the validation loop).

    Raises:
        TypeError: ``layer`` is not a string, ``num_samples``/``k`` not ints.
        ValueError: ``num_samples < 2``, unknown ``projection``, ``k < 1``; at
            ``setup``: an unknown ``layer`` (with the available names and the closest
            match), no ``nn.Linear`` in the model and no ``layer``, validation data
            without images ``(N, C, H, W)``, ``mean``/``std`` not one value per channel
            of the validation images, ``class_names`` not one name per class.

    Examples:
        >>> from lightning_viz import EmbeddingProjector
        >>> cb = EmbeddingProjector(num_samples=500, projection="pca")
    """

    family = "embedding"
    uses_probe = False
    validated_epochs_only = True  # no features at an epoch without validation (monitors)

    def __init__(
        self,
        layer: str | None = None,
        num_samples: int = 1000,
        projection: Literal["tsne", "pca"] = "tsne",
        k: int = 5,
        **kwargs: Any,
    ) -> None:
        if layer is not None and not isinstance(layer, str):
            fail("layer", "a layer name (str) or None", layer, TypeError)
        check_int(num_samples, "num_samples", minimum=2)
        super().__init__(num_samples=num_samples, **kwargs)
        self.layer = layer
        self.projection = check_choice(projection, "projection", PROJECTIONS)
        self.k = check_int(k, "k", minimum=1)
        self._init_runtime()

    def _init_runtime(self) -> None:
        """Per-process runtime state: never pickled, rebuilt lazily."""
        self._layer_name: str | None = None
        self._capture: contextlib.ExitStack | None = None
        self._records: dict[str, list[tuple[Any, Any]]] | None = None
        self._chunks: list[dict[str, Tensor]] = []
        self._count = 0
        self._local_limit = 0
        self._thumb_side = 0
        self._captured_epoch: int | None = None  # epoch of the validation in _chunks

    def __getstate__(self) -> dict[str, Any]:
        # ddp_spawn pickles the callbacks: hooks, buffers and the executor stay behind.
        state = super().__getstate__()
        runtime = ("_capture", "_records", "_chunks", "_count", "_local_limit", "_thumb_side")
        for key in (*runtime, "_captured_epoch"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        layer_name = self.__dict__.get("_layer_name")
        self._init_runtime()
        self._layer_name = layer_name

    def layout(self) -> dict[str, dict[str, list[str]]]:
        chart = "k-NN accuracy and silhouette"
        return {"embeddings": {chart: [self.tag("knn_acc"), self.tag("silhouette")]}}

    def key_args(self) -> dict[str, Any]:
        return {"layer": self.layer, "projection": self.projection}

    # -------------------------------------------------------------------- setup
    def _feature_layer(
        self, module: nn.Module, view: nn.Module | None = None, images: Tensor | None = None
    ) -> tuple[str, nn.Module]:
        """The layer whose input is embedded: ``layer=``, else the classifier head.

        With ``view`` and ``images`` (one forward on a validation image) the head is found in
        execution order: of the ``nn.Linear`` layers that output the logits' width, the
        first of the last run of them (a distilled DeiT's ``head``, not ``head_dist``;
        a head defined before its backbone; not a projection head defined after it).
        Without, or when no ``Linear`` outputs that width: the last ``nn.Linear`` defined.
        """
        if self.layer is not None:
            return resolve_layer(module, self.layer)
        linears = [(n, m) for n, m in named_layers(module) if isinstance(m, nn.Linear)]
        if not linears:
            names = [n for n, _ in named_layers(module) if n]
            raise NotApplicableError(
                "EmbeddingProjector embeds the input of the last nn.Linear, but the model has "
                "no nn.Linear layer (a 1x1-conv classifier?); pass `layer=` with the dotted "
                "name of the layer whose output to embed, e.g. the pooling before the "
                f"classifier (the last layers: {', '.join(names[-12:])})"
            )
        if view is not None and images is not None:
            try:
                head = logit_head(dict(linears), view, images)
            except NotLogitsError as err:  # two heads, as a tuple or dict: which is which?
                raise NotLogitsError(
                    f"{err}; EmbeddingProjector embeds the input of the classifier head and "
                    f"cannot tell which of the nn.Linear layers ({', '.join(dict(linears))}) "
                    "it is (or pass `layer=`)"
                ) from err
            except Exception:  # noqa: BLE001 - the definition order is the fallback
                head = None
            if head is not None:
                return head, dict(linears)[head]
        return linears[-1]

    def _validation_images(self, ctx: RunContext) -> Tensor | None:
        """The first two images ``(n, C, H, W)`` of the first validation batch as
        ``validation_step`` gets them (after the transfer hooks), on the model's device;
        ``None`` without validation data, or when its first batch cannot be read here (the
        validation loop reports its own data's failures).

        Raises:
            ValueError, TypeError: the batch holds no images ``(N, C, H, W)`` (the
                message names ``batch_to_xy``), as the probe callbacks' data.
        """
        loader = Coordinator.of(ctx.trainer).stage_loader(ctx.trainer, "val")
        if loader is None:
            return None
        transfer = batch_transfer(ctx.trainer, ctx.module)
        try:
            batch = first_batch(loader)
            if batch is None:
                return None
            with torch.no_grad():
                batch = batch if transfer is None else transfer(batch)
        except Exception:  # noqa: BLE001 - not this callback's configuration
            return None
        return split_batch(batch, self.batch_to_xy)[0][:2].to(ctx.device)

    def _step_view(self, module: nn.Module) -> ModelView:
        """The model on images as ``validation_step`` gets them (no normalization applied)."""
        return ModelView(module, None, None, self.output_to_logits, None, self.images_to_input)

    def _check_validation_images(self, ctx: RunContext, images: Tensor, loader: Any) -> int | None:
        """Checks ``mean``/``std`` against the validation images and ``class_names`` (given,
        or the ``loader``'s dataset's ``classes``) against the model's logits (one forward
        of one image, without gradients; none without names: the embedding adds no
        forward pass), setting the task from them. Returns the number of logits, ``None``
        when not known."""
        self._check_channels(images, "validation")
        if self.class_names is None and find_classes(loader) is None:
            return None
        try:
            with torch.no_grad():
                out = self._step_view(ctx.module)(images[:1])
        except Exception:  # noqa: BLE001 - validation_step may call the model otherwise
            return None
        if not isinstance(out, Tensor) or out.dim() != 2:
            return None
        self._task = self.task or detect_task(int(out.shape[1]))
        self._check_class_names(int(out.shape[1]))
        return int(out.shape[1])

    def check(self, ctx: RunContext) -> None:
        self._probe_from = "validation"  # the features and labels are the validation data's
        loader = Coordinator.of(ctx.trainer).stage_loader(ctx.trainer, "val")
        if self._auto_normalization:  # the sprite shows pixels, as every other picture
            self._transfer = batch_transfer(ctx.trainer, ctx.module)
            self._data_normalization(ctx.trainer, loader)
        images = self._validation_images(ctx)
        outputs = None if images is None else self._check_validation_images(ctx, images, loader)
        self._found_names = self._dataset_class_names(ctx.trainer, loader, outputs)
        linears = [m for m in ctx.module.modules() if isinstance(m, nn.Linear)]
        several = self.layer is None and images is not None and len(linears) > 1
        view, first = (self._step_view(ctx.module), images[:1]) if several else (None, None)
        self._layer_name = self._feature_layer(ctx.module, view, first)[0]  # which one ran
        step = getattr(type(ctx.module), "validation_step", None)  # Lightning's: none
        why = (
            "this trainer runs none (limit_val_batches=0)"
            if getattr(ctx.trainer, "limit_val_batches", 1) == 0
            else "this fit has no validation data (no val_dataloader)"
            if not has_loader(ctx.trainer, "val")
            else "the LightningModule has no validation_step"
            if getattr(step, "__qualname__", "").startswith("LightningModule.")
            else None
        )
        if why is not None:
            said = f"it embeds the features seen during the validation loop, and {why}"
            if Coordinator.monitors_of(ctx.trainer, self):  # its metric would never come
                raise NotApplicableError(said)
            self.warn_once("no_val", f"{said}: nothing will be written")
        with contextlib.suppress(ImportError):  # imported now, not at the first epoch end
            import sklearn.metrics  # noqa: F401

    # -------------------------------------------------------------------- capture
    # Scheduled as every callback (once an epoch): it embeds what a validation loop of a
    # due epoch saw: the one at the epoch's end, or, when validation runs several times an
    # epoch (or not every epoch), the epoch's latest, written at its training epoch end.
    def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._stop_capture()
        if not self._due(trainer):
            return
        try:
            module = unwrap_model(pl_module)
            if self._layer_name is None:
                self._layer_name = self._feature_layer(module)[0]
            name, layer = resolve_layer(module, self._layer_name)
            world = max(1, int(getattr(trainer, "world_size", 1) or 1))
            self._local_limit = math.ceil(self.num_samples / world)
            self._chunks = []  # a later validation of the epoch replaces an earlier one
            self._count = 0
            self._thumb_side = 0
            self._captured_epoch = trainer.current_epoch
            stack = contextlib.ExitStack()
            watched = {"features": layer, "output": module}
            inputs_of = ("features",) if self.layer is None else ()
            self._records = stack.enter_context(record_io(watched, self._collecting, inputs_of))
            self._capture = stack
        except Exception as err:  # noqa: BLE001 - reported, or re-raised on request
            self._fail(trainer, err)

    def on_validation_batch_end(
        self,
        trainer: Any,
        pl_module: Any,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._capture is None or self._records is None:
            return
        calls = {name: list(c) for name, c in self._records.items()}
        for c in self._records.values():
            c.clear()
        if dataloader_idx != 0 or self._count >= self._local_limit:
            return
        try:
            self._collect(first_part(trainer, batch), calls, pl_module)
        except Exception as err:  # noqa: BLE001 - reported, or re-raised on request
            self._fail(trainer, err)

    def _collecting(self) -> bool:
        return self._count < self._local_limit

    def _logits(self, calls: list[tuple[Any, Any]], n: int, apply_map: bool) -> Tensor | None:
        """The latest recorded output that is ``(n, K)`` float logits, or ``None``."""
        for _, out in reversed(calls):
            try:
                if apply_map and self.output_to_logits is not None:
                    out = self.output_to_logits(out)
            except Exception:  # noqa: BLE001 - not the logits (e.g. the redirected step)
                continue
            out = out if isinstance(out, Tensor) else None
            if out is not None and out.dim() == 2 and out.shape[0] == n and out.is_floating_point():
                return out
        return None

    def _labels(self, labels: Tensor, width: int | None = None) -> Tensor:
        """Class indices ``(n,)`` (binary ``(n, 1)`` rows and ``(n, 1)`` class indices
        too), or multi-hot rows ``(n, K)`` for multilabel data; ``width``: the logits'
        ``K`` when known."""
        if labels.dim() == 2:
            k = int(labels.shape[1]) if width is None else width
            task = self.task or detect_task(k, labels)
            # binary (N, 1) rows become 0/1 indices, as the other callbacks read them
            return normalize_labels(
                labels, task if task in ("multilabel", "binary") else "multiclass", k
            )
        return labels.round().long() if labels.is_floating_point() else labels.long()

    def _thumbnails(self, images: Tensor) -> Tensor:
        """``(n, C, H, W)`` model-space images -> ``(n, 1|3, s, s)`` uint8 square thumbnails."""
        pixels = ModelView(nn.Identity(), self.mean, self.std).to_pixels(images.float())
        if self._auto_normalization and self.mean is None:  # 0-255, or normalized unknown
            pixels, outside = stretched_outside_pixels(pixels)
            if outside is not None:
                self.warn_once(
                    "sprite range",
                    f"the validation images have values in [{outside[0]:.3g}, "
                    f"{outside[1]:.3g}], outside the pixel range [0, 1], and no normalization "
                    "is known: the projector's thumbnails are each stretched to [0, 1]. Pass "
                    "mean=/std= (the normalization your data uses) to show their true colors",
                )
        pixels = shown_channels(pixels.clamp(0, 1))  # as every other picture
        if not self._thumb_side:
            self._thumb_side = max(sprite_thumb_size(self.num_samples, tuple(pixels.shape[-2:])))
        return square_thumbnails(pixels, self._thumb_side)

    def _eager_calls(self, pl_module: Any, images: Tensor) -> dict[str, list[tuple[Any, Any]]]:
        """What the capture hooks record in an eager forward of ``images``: a compiled
        submodule ran the validation step, and Dynamo does not call hooks registered
        after it compiled (``{}`` when no submodule is compiled)."""
        module = unwrap_model(pl_module)
        if not any(is_compiled(m) for m in module.modules()):
            return {}
        view = ModelView(module, None, None, None, None, self.images_to_input)
        with torch.inference_mode(False):
            x = images.clone()  # not an inference tensor
            with preserve_state(module), torch.no_grad():  # compiled modules run eager
                view(x)
        calls = {name: list(c) for name, c in self._records.items()}  # type: ignore[union-attr]
        for c in self._records.values():  # type: ignore[union-attr]
            c.clear()
        return calls

    def _collect(self, batch: Any, calls: dict[str, list[tuple[Any, Any]]], pl_module: Any) -> None:
        images, labels, _ = split_batch(batch, self.batch_to_xy)
        n = images.shape[0]
        if not calls["features"]:
            calls = self._eager_calls(pl_module, images) or calls
        if not calls["features"]:
            raise RuntimeError(
                f"layer {self._layer_name!r} did not run during validation_step, so there are "
                "no features to embed; pass `layer=` with a layer on the validation path"
            )
        arg, out = calls["features"][-1]
        feats = first_tensor(arg) if self.layer is None else first_tensor(out)
        if feats is None or feats.dim() < 1 or feats.shape[0] != n:
            shape = None if feats is None else tuple(feats.shape)
            raise ValueError(
                f"the features of layer {self._layer_name!r} (shape {shape}) do not have one "
                f"row per image of the batch ({n} images)"
            )
        logits = self._logits(calls["output"], n, apply_map=True)
        if logits is None and self.layer is None:
            logits = self._logits(calls["features"][-1:], n, apply_map=False)
        if logits is None:  # (N, T, K) per position, a dict without output_to_logits
            shapes = [tuple(o.shape) for _, o in calls["output"] if isinstance(o, Tensor)]
            self.warn_once(
                "no logits",
                f"the model's output ({f'shape {shapes[-1]}' if shapes else 'not a tensor'}) "
                f"is not logits (N, K) for the {n} images of a batch, so the projector shows no "
                "predictions; pass `output_to_logits` to read them",
            )
        take = min(n, self._local_limit - self._count)
        with torch.inference_mode(False), torch.no_grad():
            feats = feats[:take].detach().reshape(take, -1).float().cpu()
            x = images[:take].detach().cpu()
            finite = torch.isfinite(feats).all(dim=1) & torch.isfinite(x).flatten(1).all(dim=1)
            if not bool(finite.all()):
                self.warn_once(
                    "nonfinite",
                    "validation samples with non-finite images or features (NaN or inf) are "
                    "left out of the embedding",
                )
                if not bool(finite.any()):  # nothing of this batch to keep (a NaN model)
                    return
            chunk = {"features": feats[finite].clone(), "thumbs": self._thumbnails(x[finite])}
            if labels is not None:
                width = None if logits is None else int(logits.shape[1])
                chunk["labels"] = self._labels(labels[:take].detach().cpu(), width)[finite].clone()
            if logits is not None:
                chunk["predicted"] = predict(logits[:take].detach()).cpu()[finite].clone()
        self._chunks.append(chunk)
        self._count += take

    def _stop_capture(self) -> None:
        stack, self._capture, self._records = self._capture, None, None
        if stack is not None:
            stack.close()

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        try:
            self._stop_capture()
        finally:
            if self._after_validation:  # one validation ends every epoch: it runs now
                self._run_captured(trainer, pl_module)

    def _run_captured(self, trainer: Any, pl_module: Any) -> None:
        try:
            self._maybe_run(trainer, pl_module)
        finally:
            self._chunks = []
            self._count = 0
            self._captured_epoch = None

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        # The samples come from the validation loop: nothing to run without it.
        self._shared(trainer).harvest_before_run(trainer)
        if not self._after_validation and self._captured_epoch == trainer.current_epoch:
            self._run_captured(trainer, pl_module)  # the epoch's latest validation
        self._epoch_end_once(trainer)
        if "no_val" in self._said:  # said at setup: this trainer runs no validation at all
            return
        if self._due(trainer):  # not run this epoch: no validation ran
            monitors.forget_unmeasured(self, trainer)  # a monitor reads no stale value
            epoch, key = trainer.current_epoch, "no_val_epoch"
            if self._after_validation and max_steps_reached(trainer):
                key = "cut_epoch"  # Lightning skips the validation of an epoch cut short
                why = (
                    f"training stopped inside epoch {epoch} (max_steps={trainer.max_steps} "
                    "reached), before that epoch's validation"
                )
            elif self._after_validation:  # a hook ended the epoch, or no validation batches
                why = f"training epoch {epoch} ended without a validation loop"
            else:  # no validation_step, no validation at all: said at setup
                why = f"no validation ran at epoch {epoch} (see check_val_every_n_epoch)"
            self.warn_once(
                key,
                f"{why}; it embeds the features seen during the validation loop, so it has "
                "no embeddings to write for epochs without one",
            )

    # -------------------------------------------------------------------- gather
    def _local_samples(self) -> dict[str, Tensor | None]:
        def cat(key: str) -> Tensor | None:
            if not self._chunks or any(key not in c for c in self._chunks):
                return None
            return torch.cat([c[key] for c in self._chunks])

        return {key: cat(key) for key in ("features", "thumbs", "labels", "predicted")}

    def _gather(self, trainer: Any) -> dict[str, Tensor | None]:
        """The samples of every rank in global order, cut to ``num_samples`` (on every rank)."""
        gathered = gather_objects(trainer, self._local_samples())
        return merge_ranks(gathered, self._dataset_length(trainer), self.num_samples)

    @staticmethod
    def _dataset_length(trainer: Any) -> int | None:
        loaders = getattr(trainer, "val_dataloaders", None)
        if isinstance(loaders, list | tuple):
            loaders = loaders[0] if loaders else None
        try:
            return len(loaders.dataset)  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - an iterable dataset has no length
            return None

    # -------------------------------------------------------------------- run
    def run(self, ctx: RunContext) -> None:
        data = self._gather(ctx.trainer)  # a collective: every rank, before anything can fail
        feats = data["features"]
        if feats is None or feats.shape[0] < 2:
            self.warn_once(
                "no_data",
                "it captured fewer than 2 validation samples with finite images and "
                "features this epoch (it embeds features seen during the validation loop; "
                "NaN or inf ones are left out); nothing is written",
            )
            return
        labels, predicted = data["labels"], data["predicted"]
        log_scores(self, ctx, feats, labels)
        if not ctx.log.writes:
            return
        name = self._layer_name or "features"
        step = ctx.log.step
        # The projector files (tensors.tsv, sprite PNG) and the projection are made on the
        # trainer's background worker, in submission order: the epoch end does not wait.
        names = self._names_in_use()
        args = (feats, labels, predicted, names, data["thumbs"])
        make = functools.partial(embedding_with_metadata, *args)
        if not ctx.log.embedding(self.tag(name), make, max_pending=MAX_PENDING_FIGURES):
            busy = ctx.coordinator.busy_with()  # maybe another callback's (cue-conflict images)
            ours = busy.startswith(f"{type(self).__name__}'s")
            self.warn_once(  # back-pressure: each pending job holds its run's features
                "projector_backlog",
                f"the background worker, on {busy or 'earlier work'}, is slower than an epoch; "
                f"it skips a run's projector files while {MAX_PENDING_FIGURES} are still pending"
                + (" (use fewer num_samples)" if ours else ""),
            )
        colors = labels if labels is not None and labels.dim() == 1 else predicted
        if colors is None or feats.shape[1] < (2 if self.projection == "pca" else 1):
            return
        if names is not None and (int(colors.min()) < 0 or int(colors.max()) >= len(names)):
            names = None
        # the default embeds the head's input (named after the head), layer= its output
        what = f"the input of {name}" if self.layer is None else f"{name}'s output"
        title = f"{self.projection} of {what}, step {step}"
        figure = (feats, colors, self.projection, names, title, self.seed)
        tag = self.tag(f"{name}/{self.projection}")
        if not ctx.log.defer(tag, projection_figure, *figure, max_pending=MAX_PENDING_FIGURES):
            self.warn_once(  # back-pressure: never build an unbounded backlog
                "backlog",
                f"its {self.projection} projection is slower than an epoch; it skips the figure "
                f"of a run while {MAX_PENDING_FIGURES} are still pending ("
                + ("use projection='pca' or " if self.projection != "pca" else "use ")
                + "fewer num_samples)",
            )

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self._stop_capture()
        super().on_fit_end(trainer, pl_module)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._stop_capture()
        super().on_exception(trainer, pl_module, exception)

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._stop_capture()
        super().teardown(trainer, pl_module, stage)

    def _fail(self, trainer: Any, err: Exception) -> None:
        """A failure while capturing during validation (``on_error`` decides)."""
        self._stop_capture()
        self._chunks = []
        self.turn_off(f"failed at epoch {trainer.current_epoch}", err)
