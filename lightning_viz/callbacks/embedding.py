"""EmbeddingProjector: how the feature space organizes itself, in TensorBoard's projector."""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_viz import render
from lightning_viz._guard import ModelView, unwrap_model
from lightning_viz.callbacks._base import RunContext, VizCallback
from lightning_viz.callbacks._compat import rank_zero_warn
from lightning_viz.callbacks._probe import Probe, _split, check_probe_images
from lightning_viz.functional import embedding as E
from lightning_viz.functional._utils import resolve_layer

__all__ = ["EmbeddingProjector"]

PROJECTIONS = ("tsne", "pca")
METADATA_HEADER = ["label", "predicted", "correct"]


# ----------------------------------------------------------------------------- hooks
@contextlib.contextmanager
def _record_calls(modules: Mapping[str, nn.Module]) -> Iterator[dict[str, list[tuple[Any, Any]]]]:
    """Records ``(first input, output)`` of every forward call of each module.

    Private to this file (``_hooks.capture_outputs`` keeps only the output of the
    latest call); the forward hook is removed in ``finally``.

    Yields:
        ``{name: [(input0, output), ...]}``, appended to in call order; the caller
        empties the lists when it has read them.
    """
    store: dict[str, list[tuple[Any, Any]]] = {name: [] for name in modules}
    handles = []
    try:
        for name, module in modules.items():

            def hook(_m: nn.Module, args: tuple[Any, ...], out: Any, name: str = name) -> None:
                first = args[0] if args else None
                store[name].append((first, out))

            handles.append(module.register_forward_hook(hook))
        yield store
    finally:
        for handle in handles:
            handle.remove()
        handles.clear()
        for calls in store.values():
            calls.clear()


# ----------------------------------------------------------------------- off-thread
def _projection_figure(
    features: Tensor,
    labels: Tensor,
    projection: str,
    class_names: list[str] | None,
    title: str,
    seed: int,
) -> Any:
    """Projects ``(N, D)`` features to 2-D and draws the scatter figure (worker thread)."""
    if projection == "tsne":
        points = E.tsne(features, seed=seed)
    else:
        points = E.pca(features, dim=2)
    return render.scatter_figure(points, labels, class_names=class_names, title=title)


def _first_tensor(value: Any) -> Tensor | None:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, tuple | list) and value and isinstance(value[0], Tensor):
        return value[0]
    return None


class EmbeddingProjector(VizCallback):
    """Writes the penultimate features of validation samples to TensorBoard's projector.

    The features (the input of the last ``nn.Linear`` in module order, or the
    output of ``layer``, flattened to ``(N, D)``) are captured by a forward hook
    **during the normal validation loop**: no extra forward pass. The first
    ``num_samples`` validation samples are kept, the same ones every epoch (the
    validation loader is not shuffled). Under DDP every rank gathers the samples of
    all ranks in the order the ``DistributedSampler`` dealt them (sample ``i`` of
    rank ``r`` is global sample ``i * world_size + r``) and global rank 0 writes.

    Writes, at the step of each run:

    - projector embedding ``embedding/<layer>`` with metadata columns ``label``,
      ``predicted``, ``correct`` (class names when given) and thumbnails sized so
      the sprite stays within TensorBoard's 8192 px limit;
    - figure ``embedding/<layer>/<projection>``: a 2-D t-SNE (van der Maaten &
      Hinton, 2008) or PCA scatter colored by label, computed **off the training
      thread** (one worker thread owned by the callback) and written with the step
      it belongs to as soon as it is done (checked at every epoch end; the end of
      ``fit`` waits for pending work);
    - scalars ``embedding/knn_acc`` (leave-one-out ``k``-NN accuracy of the labels
      in feature space) and ``embedding/silhouette`` (mean silhouette of the
      labels), also in ``trainer.callback_metrics`` on every rank.

    ``<layer>`` is the dotted name of the last ``Linear`` (whose *input* is shown)
    or of ``layer``. Predictions come from the ``LightningModule``'s output (mapped
    by ``output_to_logits``), or from the last ``Linear``'s output when the module's
    forward is not called in ``validation_step``; otherwise the column shows ``?``.

    Args:
        layer: Dotted name of the layer whose output is embedded. Default: ``None``
            (the input of the last ``nn.Linear``).
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
            match), or no ``nn.Linear`` in the model and no ``layer``.

    Example:
        >>> from lightning_viz import EmbeddingProjector
        >>> cb = EmbeddingProjector(num_samples=500, projection="pca")
    """

    family = "embedding"
    default_num_samples = 1000
    uses_probe = False

    def __init__(
        self,
        layer: str | None = None,
        num_samples: int = 1000,
        projection: str = "tsne",
        k: int = 5,
        **kwargs: Any,
    ) -> None:
        if layer is not None and not isinstance(layer, str):
            raise TypeError(f"`layer` must be a layer name (str) or None, got {layer!r}")
        if isinstance(num_samples, bool) or not isinstance(num_samples, int):
            raise TypeError(f"`num_samples` must be an int, got {num_samples!r}")
        if num_samples < 2:
            raise ValueError(f"`num_samples` must be >= 2 to embed anything, got {num_samples!r}")
        if projection not in PROJECTIONS:
            raise ValueError(f"`projection` must be one of {PROJECTIONS}, got {projection!r}")
        if isinstance(k, bool) or not isinstance(k, int):
            raise TypeError(f"`k` must be an int, got {k!r}")
        if k < 1:
            raise ValueError(f"`k` must be >= 1, got {k!r}")
        super().__init__(num_samples=num_samples, **kwargs)
        self.layer = layer
        self.projection = projection
        self.k = k
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
        self._executor: ThreadPoolExecutor | None = None
        self._pending: list[tuple[int, str, Future]] = []
        self._warned_no_data = False

    def __getstate__(self) -> dict[str, Any]:
        # ddp_spawn pickles the callbacks: hooks, buffers and the executor stay behind.
        state = self.__dict__.copy()
        for key in (
            "_capture",
            "_records",
            "_chunks",
            "_count",
            "_local_limit",
            "_thumb_side",
            "_executor",
            "_pending",
            "_warned_no_data",
        ):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        layer_name = self.__dict__.get("_layer_name")
        self._init_runtime()
        self._layer_name = layer_name

    def key_args(self) -> dict[str, Any]:
        return {"layer": self.layer, "projection": self.projection}

    # -------------------------------------------------------------------- setup
    def _feature_layer(self, module: nn.Module) -> tuple[str, nn.Module]:
        if self.layer is not None:
            return resolve_layer(module, self.layer)
        linears = [(n, m) for n, m in module.named_modules() if isinstance(m, nn.Linear)]
        if not linears:
            names = [n for n, _ in module.named_modules() if n]
            raise ValueError(
                "EmbeddingProjector embeds the input of the last nn.Linear, but the model has "
                "no nn.Linear layer; pass `layer=` with the dotted name of the layer whose "
                f"output to embed (available: {names})"
            )
        return linears[-1]

    def check(self, module: nn.Module, probe: Probe | None) -> None:
        self._layer_name = self._feature_layer(module)[0]

    # -------------------------------------------------------------------- capture
    def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._stop_capture()
        self._harvest(wait=False)
        if not self._due(trainer):
            return
        try:
            module = unwrap_model(pl_module)
            if self._layer_name is None:
                self.check(module, None)
            name, layer = resolve_layer(module, self._layer_name)
            world = max(1, int(getattr(trainer, "world_size", 1) or 1))
            self._local_limit = math.ceil(self.num_samples / world)
            self._chunks = []
            self._count = 0
            self._thumb_side = 0
            stack = contextlib.ExitStack()
            watched = {"features": layer, "output": module}
            self._records = stack.enter_context(_record_calls(watched))
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
            self._collect(batch, calls)
        except Exception as err:  # noqa: BLE001 - reported, or re-raised on request
            self._fail(trainer, err)

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

    def _thumbnails(self, images: Tensor) -> Tensor:
        """``(n, C, H, W)`` model-space images -> ``(n, 1|3, s, s)`` uint8 square thumbnails."""
        pixels = ModelView(nn.Identity(), self.mean, self.std).to_pixels(images.float())
        pixels = pixels.clamp(0, 1)
        if pixels.shape[1] not in (1, 3):
            pixels = pixels.mean(dim=1, keepdim=True)
        if not self._thumb_side:
            h, w = render.sprite_thumb_size(self.num_samples, tuple(pixels.shape[-2:]))
            self._thumb_side = max(h, w)
        thumbs = render.sprite_images(pixels, max_thumb=self._thumb_side)
        h, w = thumbs.shape[-2:]
        side = self._thumb_side
        if (h, w) != (side, side):  # the projector's sprite assumes square thumbnails
            top, left = (side - h) // 2, (side - w) // 2
            thumbs = F.pad(thumbs, (left, side - w - left, top, side - h - top))
        return (thumbs * 255).round().to(torch.uint8)

    def _collect(self, batch: Any, calls: dict[str, list[tuple[Any, Any]]]) -> None:
        images, labels, _ = _split(batch, self.batch_to_xy)
        images = check_probe_images(images)
        n = images.shape[0]
        if not calls["features"]:
            raise RuntimeError(
                f"layer {self._layer_name!r} did not run during validation_step, so there are "
                "no features to embed; pass `layer=` with a layer on the validation path"
            )
        arg, out = calls["features"][-1]
        feats = _first_tensor(arg) if self.layer is None else _first_tensor(out)
        if feats is None or feats.dim() < 1 or feats.shape[0] != n:
            shape = None if feats is None else tuple(feats.shape)
            raise ValueError(
                f"the features of layer {self._layer_name!r} (shape {shape}) do not have one "
                f"row per image of the batch ({n} images)"
            )
        logits = self._logits(calls["output"], n, apply_map=True)
        if logits is None and self.layer is None:
            logits = self._logits(calls["features"][-1:], n, apply_map=False)
        take = min(n, self._local_limit - self._count)
        with torch.inference_mode(False), torch.no_grad():
            chunk = {
                "features": feats[:take].detach().reshape(take, -1).float().cpu().clone(),
                "thumbs": self._thumbnails(images[:take].detach().cpu().clone()),
            }
            if labels is not None:
                lab = torch.as_tensor(labels).reshape(-1)
                if lab.numel() != n:
                    raise ValueError(
                        f"labels of shape {tuple(torch.as_tensor(labels).shape)} do not match "
                        f"{n} images; labels must be class indices (N,)"
                    )
                chunk["labels"] = lab[:take].detach().cpu().long().clone()
            if logits is not None:
                chunk["predicted"] = logits[:take].detach().argmax(dim=1).cpu().long().clone()
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
            self._maybe_run(trainer, pl_module)
            self._chunks = []
            self._count = 0

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        # The samples come from the validation loop: nothing to run without it.
        self._harvest(wait=False)

    # -------------------------------------------------------------------- gather
    def _local_samples(self) -> dict[str, Tensor | None]:
        def cat(key: str) -> Tensor | None:
            if not self._chunks or any(key not in c for c in self._chunks):
                return None
            return torch.cat([c[key] for c in self._chunks])

        return {key: cat(key) for key in ("features", "thumbs", "labels", "predicted")}

    def _gather(self, trainer: Any) -> dict[str, Tensor | None]:
        """The samples of every rank in global order, cut to ``num_samples`` (on every rank)."""
        local = self._local_samples()
        world = int(getattr(trainer, "world_size", 1) or 1)
        dist = torch.distributed
        if world > 1 and dist.is_available() and dist.is_initialized():
            gathered: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, local)
        else:
            gathered = [local]
        world = len(gathered)
        total = self._dataset_length(trainer)
        order: list[tuple[int, int, int]] = []  # (global index, rank, local index)
        for rank, part in enumerate(gathered):
            feats = part["features"]
            count = 0 if feats is None else int(feats.shape[0])
            for i in range(count):
                g = i * world + rank
                if total is None or g < total:  # drops the sampler's padding repeats
                    order.append((g, rank, i))
        order.sort()
        order = order[: self.num_samples]
        out: dict[str, Tensor | None] = {}
        for key in ("features", "thumbs", "labels", "predicted"):
            if not order or any(gathered[r][key] is None for _, r, _ in order):
                out[key] = None
                continue
            out[key] = torch.stack([gathered[r][key][i] for _, r, i in order])
        return out

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
        self._harvest(wait=False)
        feats = data["features"]
        if feats is None or feats.shape[0] < 2:
            if not self._warned_no_data:
                self._warned_no_data = True
                rank_zero_warn(
                    "EmbeddingProjector captured fewer than 2 validation samples this epoch "
                    "(it embeds features seen during the validation loop); nothing is written"
                )
            return
        labels, predicted = data["labels"], data["predicted"]
        n = feats.shape[0]
        if labels is not None:
            ctx.log.scalar(self.tag("knn_acc"), E.knn_accuracy(feats, labels, k=min(self.k, n - 1)))
            ctx.log.scalar(self.tag("silhouette"), E.silhouette(feats, labels))
        writer = ctx.log.writer
        if writer is None:
            return
        name = self._layer_name or "features"
        rows = self._metadata(labels, predicted, n)
        thumbs = render.sprite_images(data["thumbs"].float() / 255.0)  # checks the 8192 px limit
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            writer.add_embedding(
                feats,
                metadata=rows,
                label_img=thumbs,
                global_step=ctx.log.step,
                tag=self.tag(name),
                metadata_header=list(METADATA_HEADER),
            )
        colors = labels if labels is not None else predicted
        if colors is not None and feats.shape[1] >= (2 if self.projection == "pca" else 1):
            names = self.class_names
            if names is not None and (int(colors.min()) < 0 or int(colors.max()) >= len(names)):
                names = None
            title = f"{self.projection} of {name} features, step {ctx.log.step}"
            future = self._pool().submit(
                _projection_figure,
                feats.clone(),
                colors.clone(),
                self.projection,
                names,
                title,
                self.seed,
            )
            self._pending.append((ctx.log.step, self.tag(f"{name}/{self.projection}"), future))

    def _metadata(self, labels: Tensor | None, predicted: Tensor | None, n: int) -> list[list[str]]:
        rows = []
        for i in range(n):
            lab = None if labels is None else int(labels[i])
            pred = None if predicted is None else int(predicted[i])
            correct = "?" if lab is None or pred is None else str(lab == pred).lower()
            rows.append(
                [
                    "?" if lab is None else self.class_name(lab),
                    "?" if pred is None else self.class_name(pred),
                    correct,
                ]
            )
        return rows

    # -------------------------------------------------------------------- worker
    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lv-embedding")
        return self._executor

    def _harvest(self, wait: bool) -> None:
        """Writes the figures whose projection is done (all of them when ``wait``)."""
        still: list[tuple[int, str, Future]] = []
        pending, self._pending = self._pending, []
        errors: list[BaseException] = []
        for step, tag, future in pending:
            if not (wait or future.done()):
                still.append((step, tag, future))
                continue
            try:
                fig = future.result()
            except Exception as err:  # noqa: BLE001 - reported, or re-raised on request
                errors.append(err)
                continue
            writer = getattr(self._logger, "experiment", None) if self._logger else None
            if writer is not None:
                writer.add_figure(tag, fig, step, close=True)
                writer.flush()
        self._pending = still
        if errors:
            err = errors[0]
            if self.on_error == "raise":
                raise err
            rank_zero_warn(
                f"EmbeddingProjector could not draw its {self.projection} figure "
                f"({type(err).__name__}: {err}); the other views are still written"
            )

    def _shutdown(self, wait: bool) -> None:
        executor, self._executor = self._executor, None
        if not wait:
            for _, _, future in self._pending:
                future.cancel()
            self._pending = []
        if executor is not None:
            executor.shutdown(wait=wait, cancel_futures=not wait)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        try:
            self._stop_capture()
            self._harvest(wait=True)
        finally:
            self._shutdown(wait=True)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._stop_capture()
        self._shutdown(wait=False)

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._stop_capture()
        self._shutdown(wait=False)

    # -------------------------------------------------------------------- errors
    def _fail(self, trainer: Any, err: Exception) -> None:
        """A failure while capturing: re-raise, or warn once and turn off (``on_error``)."""
        self._stop_capture()
        self._chunks = []
        if self.on_error == "raise":
            raise err
        self._enabled = False
        rank_zero_warn(
            f"EmbeddingProjector failed at epoch {trainer.current_epoch} and turns itself off "
            f"for the rest of this run (training goes on; pass on_error='raise' to stop "
            f"instead): {type(err).__name__}: {err}"
        )
