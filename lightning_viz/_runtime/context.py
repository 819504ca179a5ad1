"""What a callback's ``run`` (and ``check``) works with: :class:`RunContext`."""

from __future__ import annotations

import collections
import functools
import re
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from lightning_viz._checks import fail
from lightning_viz._guard import ModelView
from lightning_viz._hooks import capture_outputs
from lightning_viz._runtime.coordinator import Coordinator
from lightning_viz._runtime.distributed import all_gather, rank_world
from lightning_viz._runtime.log import RunLog
from lightning_viz._runtime.probe import Probe
from lightning_viz.functional._grad import resolve_layer
from lightning_viz.functional._task import num_classes, predict
from lightning_viz.functional.tokens import Reshape, grid_reader

if TYPE_CHECKING:
    from lightning_viz.callbacks._base import VizCallback

__all__ = [
    "CAPTION_LABEL",
    "CAPTION_NAME",
    "NotApplicableError",
    "RunContext",
    "caption_name",
    "caption_names",
    "distinct_names",
    "named_after",
]

CAPTION_LABEL = "true / pred"  # the label of the image row whose captions are ctx.captions()
CAPTION_NAME = 18  # characters of a class name in a caption


def caption_name(name: str) -> str:
    """``name`` cut to :data:`CAPTION_NAME` characters (``"goldfish, Carass.."``), so
    that ``"true / pred"`` captions show both classes in a tile: a long true class
    wrapped over the caption's lines and clipped the prediction away."""
    return name if len(name) <= CAPTION_NAME else name[: CAPTION_NAME - 2].rstrip(" ,;:-") + ".."


def caption_names(names: Sequence[str]) -> list[str]:
    """Each name without a leading WordNet id (``"n01440764 tench, Tinca tinca"`` reads
    ``"tench, Tinca tinca"``; two classes of one name then end in their index) and cut
    as :func:`caption_name`; names whose cuts would read the same
    (``"Common long prefix alpha"``, ``"...beta"``) keep their start and their end
    instead (``"Common l..ix alpha"``), and names that differ in the middle only end in
    their class index (``"Common long .. #12"``), so the classes stay apart."""
    return list(_caption_names(tuple(names)))


_WORDNET_ID = re.compile(r"^n\d{8}[\s_,:;-]+(?=\S)")  # "n01440764 tench, ..." (ImageNet)


@functools.lru_cache(maxsize=8)
def _caption_names(names: tuple[str, ...]) -> tuple[str, ...]:
    # a WordNet id before the name is not read in a caption and took a line of it
    names = tuple(_WORDNET_ID.sub("", n) for n in names)
    half = (CAPTION_NAME - 2) // 2
    cut = [caption_name(n) for n in names]
    ways = (
        lambda i, n: f"{n[:half]}..{n[-half:]}",
        lambda i, n: f"{n[: CAPTION_NAME - 4 - len(str(i))]}.. #{i}",
    )
    for way in ways:
        readers: dict[str, set[str]] = {}  # a cut -> the different names that read so
        for n, c in zip(names, cut, strict=True):
            readers.setdefault(c, set()).add(n)
        cut = [
            way(i, n) if len(readers[c]) > 1 and len(n) > CAPTION_NAME else c
            for i, (n, c) in enumerate(zip(names, cut, strict=True))
        ]
    return tuple(distinct_names(cut, width=CAPTION_NAME))


def distinct_names(names: Sequence[str], *, width: int | None = None) -> list[str]:
    """``names`` with each name that more than one class has ending in its class index.

    ImageNet names two classes "crane" (the bird, the machine) and two "maillot": in a
    caption, a legend or the projector's labels they read as one class. They become
    ``"crane #134"`` and ``"crane #517"``, cut to ``width`` characters when given.
    """
    out = list(names)
    while len(set(out)) < len(out):  # "crane", "crane", "crane #1": a second round
        count = collections.Counter(out)
        for i, name in enumerate(out):
            if count[name] > 1:
                tag = f" #{i}"
                if width is not None and len(name) + len(tag) > width:
                    name = name[: max(0, width - len(tag) - 2)] + ".."
                out[i] = name + tag
    return out


_FALLBACK_BATCH = 32  # max_batch_size when no train dataloader tells the batch size


def named_after(callback: Any, err: Exception) -> Exception:
    """A setup error of ``callback`` with its class name in front (``"GradCAMLogger:
    unknown layer ..."``: several callbacks share a trainer); ``err`` itself when it
    names the callback already or is not a plain ``ValueError``/``TypeError``."""
    name, text = type(callback).__name__, str(err)
    if type(err) not in (ValueError, TypeError) or name in text.split(":", 1)[0]:
        return err
    return type(err)(f"{name}: {text}")


class NotApplicableError(ValueError):
    """What the data or the model makes impossible for a callback (not a bad argument).

    Raised at ``setup``: with ``on_error="warn"`` the callback warns once, naming
    itself and the reason, and turns itself off while training goes on; with
    ``on_error="raise"`` it is raised before the first training step.
    """


class RunContext:
    """What a callback's :meth:`VizCallback.run` (and ``check``) works with.

    Built inside the state guard: the model is in eval mode with frozen parameters,
    so everything computed from it here (``logits``, ``predicted``) leaves the run
    untouched.

    Attributes:
        trainer: The trainer.
        module: The unwrapped ``LightningModule`` (never the DDP wrapper).
        view: The model as the methods see it: pixel-space images in, float
            logits out, forward under the trainer's precision context.
        probe: The probe on the model's device, images in the model's input space,
            labels in the form of the task (``None`` when ``uses_probe = False``).
        pixels: The probe images in pixel space ``(N, C, H, W)``, ``[0, 1]`` when
            ``mean``/``std`` describe the normalization.
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        device: The model's device.
        log: Where to write (see :class:`RunLog`); ``None`` at ``setup``.
        generator: A private generator on the model's device, seeded the same way
            every epoch, so random draws are comparable across epochs.
        coordinator: What the lightning-viz callbacks of this trainer share (summary,
            budget, messages said once).
        max_batch: The most images a forward (and backward) pass of the run takes
            (the callback's ``max_batch_size``, by default the training batch size).
    """

    def __init__(
        self,
        trainer: Any,
        module: nn.Module,
        view: ModelView,
        probe: Probe | None,
        task: str,
        log: RunLog | None,
        generator: torch.Generator,
        device: torch.device,
        coordinator: Coordinator | None = None,
        max_batch: int = _FALLBACK_BATCH,
    ) -> None:
        self.trainer = trainer
        self.max_batch = max(1, int(max_batch))
        self.module = module
        self.view = view
        self.probe: Probe = probe  # type: ignore[assignment] - None only when uses_probe=False
        self.pixels = None if probe is None else view.to_pixels(probe.images).clamp(0, 1)
        self.task = task
        self.log: RunLog = log  # type: ignore[assignment] - None only at setup
        self.generator = generator
        self.device = device
        self.coordinator = coordinator
        self.one_time = 0.0  # seconds of this run spent on one-time work (a cache built once)

    @cached_property
    def logits(self) -> Tensor:
        """Float logits ``(N, K)`` of the probe, computed once (no gradients)."""
        return self.forward(self.pixels)

    def forward(self, images: Tensor, then: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """``then(view(images))`` (or the logits) without gradients, in chunks of images.

        Args:
            images: Pixel-space images ``(N, C, H, W)``.
            then: Applied to each chunk's logits (e.g. a mapping to other classes).

        Returns:
            The chunks' results, concatenated on the first dimension.
        """
        with torch.no_grad():
            return self.chunked(
                lambda x: self.view(x) if then is None else then(self.view(x)), images
            )

    def chunked(self, fn: Callable[..., Any], *rows: Any, **kwargs: Any) -> Any:
        """``fn`` applied to chunks of at most :attr:`max_batch` rows, results joined.

        Args:
            fn: Takes the chunks of ``rows`` (and ``kwargs``) and returns a tensor
                ``(n, ...)`` or a dict of them (one row per input row).
            *rows: Tensors ``(N, ...)`` split along the first dimension together
                (``None`` passes through).
            **kwargs: Passed to every call unchanged.

        Returns:
            The results of the chunks concatenated along the first dimension (a dict:
            each entry), as one call on all ``N`` rows would return them.
        """
        n = int(rows[0].shape[0])
        step = self.max_batch
        parts = [
            fn(*(None if r is None else r[i : i + step] for r in rows), **kwargs)
            for i in range(0, n, step)
        ]
        if len(parts) == 1:
            return parts[0]
        if isinstance(parts[0], dict):
            return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}
        return torch.cat(parts)

    @property
    def predicted(self) -> Tensor:
        """Predicted class ``(N,)`` (the top label for multilabel)."""
        return predict(self.logits)

    @property
    def num_classes(self) -> int:
        """Classes a target may name (2 for a binary model with one logit)."""
        return num_classes(self.logits[:1])

    def target(self, option: str | int) -> Tensor:
        """Class indices ``(N,)`` to explain: ``"predicted"``, ``"true"`` or an index."""
        if option == "predicted":
            return self.predicted
        if option == "true":
            labels = self.probe.labels
            return labels.float().argmax(dim=1) if self.task == "multilabel" else labels  # type: ignore[union-attr]
        return torch.full_like(self.predicted, int(option))

    def layer_outputs(
        self, layers: dict[str, nn.Module], reshape: Reshape | None = None
    ) -> dict[str, tuple[int, ...]]:
        """Output shape of each layer for the first probe image (one forward).

        Token layers of known transformers (or every layer, with ``reshape``) are read
        as grids ``(1, D, h, w)`` first, as the methods read them.
        """
        with torch.no_grad(), capture_outputs(layers) as store:
            self.view(self.pixels[:1])
        size = tuple(self.pixels.shape[-2:])
        shapes = {}
        for name in layers:
            if name in store:
                read = grid_reader(self.module, name, size, reshape)
                shapes[name] = tuple((store[name] if read is None else read(store[name])).shape)
        return shapes

    # ------------------------------------------------ probe work split across ranks
    @property
    def rank_world(self) -> tuple[int, int]:
        """``(rank, world size)`` of the trainer (``(0, 1)`` without DDP)."""
        return rank_world(self.trainer)

    def share(self, n: int) -> Tensor:
        """The positions among ``n`` samples this rank computes: every ``world``-th.

        A rank past the last sample (fewer samples than ranks) computes sample 0 again,
        so that no rank runs on an empty batch; :meth:`gather` drops that row (its
        global position, the rank, is ``>= n``).
        """
        rank, world = self.rank_world
        rows = torch.arange(rank, n, world, device=self.device)
        if rows.numel() == 0 and n > 0:
            rows = torch.zeros(1, dtype=torch.long, device=self.device)
        return rows

    def gather(self, local: Tensor, n: int) -> Tensor:
        """Every rank's :meth:`share` results, in sample order, on every rank."""
        return all_gather(self.trainer, local, n)

    def captions(self, owner: VizCallback) -> list[str]:
        """``"X / Y"`` (true / predicted, see :data:`CAPTION_LABEL`) per probe image."""
        labels = self.probe.labels
        return [
            f"{'?' if labels is None else owner.label_name(labels[i])} / {owner.class_name(p)}"
            for i, p in enumerate(self.predicted.tolist())
        ]

    # ----------------------------------------------- configuration checks at setup
    def check_target(self, owner: str, target: str | int) -> None:
        """Raises for a class-index ``target`` the model does not have; ``target="true"``
        without labels is :class:`NotApplicableError`."""
        if target == "true" and self.probe.labels is None:
            raise NotApplicableError(
                f"{owner}(target='true') needs labels, but the probe has none; use "
                "target='predicted' or give labels with `probe=(images, labels)`"
            )
        if isinstance(target, int) and target >= self.num_classes:
            fail(
                "target",
                f"'predicted', 'true' or a class index in [0, {self.num_classes}) for this model",
                target,
            )

    def check_neuron(self, neuron: tuple[str, int] | None, reshape: Reshape | None = None) -> None:
        """Raises for an unknown neuron layer or a channel the layer does not have."""
        if neuron is None:
            return
        name, module = resolve_layer(self.module, neuron[0])
        shape = self.layer_outputs({name: module}, reshape).get(name)
        if shape is None:
            allowed = "(layer, channel) with a layer the model's forward runs"
            said = f" ({name!r} does not run on the probe images, or returns no tensor)"
            fail("neuron", allowed + said, neuron)
        channels = shape[1] if len(shape) >= 2 else 0
        if neuron[1] >= channels:
            allowed = f"(layer, channel) with a channel in [0, {channels}) for layer {name!r}"
            fail("neuron", allowed, neuron)

    def check_layer_maps(
        self,
        owner: str,
        names: Sequence[str],
        what: str,
        reshape: Reshape | None = None,
        default: bool = False,
    ) -> None:
        """Raises unless each named layer outputs feature maps ``(N, C, h, w)`` (token
        layers of known transformers, or any layer through ``reshape``, count).

        A ``ValueError`` for layers the user named; :class:`NotApplicableError` for the
        callback's own ``default`` picks (the user configured nothing wrong)."""
        try:
            layers = {n: resolve_layer(self.module, n)[1] for n in names}
            shapes = self.layer_outputs(layers, reshape)
            for name in names:
                shape = shapes.get(name)
                if shape is None or len(shape) != 4:
                    raise ValueError(
                        f"{owner}: layer {name!r} outputs "
                        f"{'nothing' if shape is None else f'shape {shape}'}, not feature maps "
                        f"(N, C, h, w); {what} needs a convolutional layer, a transformer's "
                        "token layer, or `reshape=` mapping the output to (N, C, h, w)"
                    )
        except ValueError as err:
            if not default:
                raise
            raise NotApplicableError(
                f"its default layers {list(names)} cannot be read as feature maps ({err}); "
                "pass the layers to show (and `reshape=`)"
            ) from err
