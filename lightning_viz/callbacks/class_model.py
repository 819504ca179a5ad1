"""ClassModelLogger: the image each class (or one channel) responds to most."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from lightning_viz import render
from lightning_viz._checks import check_int, check_int_list, check_neuron, check_reshape, fail
from lightning_viz._runtime.compat import rank_zero_info
from lightning_viz._runtime.rows import blank_nonfinite
from lightning_viz.callbacks._base import RunContext, VizCallback
from lightning_viz.functional._grad import resolve_layer
from lightning_viz.functional._task import class_scores
from lightning_viz.functional.class_model import class_model_run

__all__ = ["ClassModelLogger"]


MAX_DEFAULT_CLASSES = 20  # classes=None draws all classes up to this many


class ClassModelLogger(VizCallback):
    """Logs class-model images: gradient ascent on class scores from noise.

    Every due epoch, :func:`lightning_viz.functional.class_model` (Simonyan, Vedaldi
    and Zisserman, "Deep Inside Convolutional Networks", ICLR 2014 workshop, with the
    regularizers of Yosinski et al., ICML 2015 DL workshop: L2 decay, jitter, periodic
    Gaussian blur, gradient and small-pixel clipping) optimizes one image per chosen
    class, all classes in one batch, in pixel space (``mean``/``std`` applied inside
    the model view), from the callback's private generator (the same start noise and
    jitter every epoch, so epochs are comparable). Image ``class_model/grid`` shows
    them captioned with the class name and, under it, the model's predicted class and
    its softmax probability for that image.

    With ``neuron=(layer, channel)`` the mean activation of that channel is maximized
    instead, written to image ``class_model/neuron/<layer>/<channel>``.

    An image whose score's gradient w.r.t. the image was zero at every step (dead or
    saturated units on the way) stays the grey start: a warning names its classes once
    per fit, so grey is not read as "the model looks for nothing". Images holding NaN
    (NaN outputs) are drawn mid-grey, also said once.

    The probe is used only at ``setup``, to learn the image shape and the number of
    classes (one forward pass), hence ``num_samples=1``.

    Args:
        classes: Class indices to visualize. Default: ``None``: the classes that occur
            in the probe data's labels (those scanned when the probe is picked), at
            most 20, evenly spaced among them (said once at ``setup``); a class the data
            never has (a 1000-way head on 6 classes of data) is drawn only when asked.
            Without labels: all classes of a model with at most 20, else 20 evenly
            spaced ones. Every class image costs ``steps`` forward and backward passes,
            in chunks of at most ``max_batch_size`` images.
        steps: Gradient-ascent steps. Default: ``200``.
        every_n_epochs: Run every that many epochs. Default: ``5``.
        neuron: ``(layer_name, channel)`` to maximize one channel instead of class
            scores (``classes`` must then be ``None``). Default: ``None``.
        image_shape: ``(C, H, W)`` of the optimized images. Default: the shape of the
            validation (probe) images.
        num_samples: Probe images. Default: 1.
        reshape: Maps the ``neuron`` layer's output to ``(N, D, h, w)`` for a model
            whose token layout is not detected (only with ``neuron``). Default: ``None``.
        **kwargs: The options every callback shares (see ``VizCallback``); the
            regularizers keep the defaults of
            :func:`~lightning_viz.functional.class_model`.

    Raises:
        TypeError: An argument of the wrong type.
        ValueError: A bad value; ``classes`` together with ``neuron``, ``reshape``
            without it. At ``setup``:
            class indices outside the model's classes, an unknown layer (the message
            lists the available ones), a channel outside the layer's channels.

    Examples:
        >>> cb = ClassModelLogger(classes=[0, 2], steps=100, every_n_epochs=2)
        >>> cb.tag("grid")
        'class_model/grid'
    """

    family = "class_model"
    needs_gradient = True

    def __init__(
        self,
        classes: Sequence[int] | None = None,
        steps: int = 200,
        every_n_epochs: int = 5,
        neuron: tuple[str, int] | None = None,
        image_shape: Sequence[int] | None = None,
        num_samples: int = 1,
        reshape: Callable[..., Any] | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(every_n_epochs=every_n_epochs, num_samples=num_samples, **kwargs)
        self.classes = check_int_list(classes, "classes", minimum=0)
        self.steps = check_int(steps, "steps", minimum=1)
        self.neuron = check_neuron(neuron)
        if self.neuron is not None and self.classes is not None:
            fail("classes", "None when `neuron` is given", self.classes)
        self.reshape = check_reshape(reshape, paths=True)
        if self.reshape is not None and self.neuron is None:
            fail("reshape", "None when no `neuron` is given", reshape)
        if image_shape is not None:
            if isinstance(image_shape, str) or not isinstance(image_shape, Sequence):
                fail("image_shape", "(C, H, W) or None", image_shape, TypeError)
            try:
                sizes = [check_int(v, "image_shape", minimum=1) for v in image_shape]
            except (TypeError, ValueError):  # its message would name one size, not the shape
                sizes = []
            if len(sizes) != 3:
                fail("image_shape", "3 positive ints (C, H, W)", image_shape)
            image_shape = sizes
        self.image_shape = image_shape
        self._shape: list[int] = []
        self._classes: list[int] | None = self.classes  # what is drawn (set at setup)

    def key_args(self) -> dict[str, Any]:
        return {"classes": self.classes, "neuron": self.neuron}

    def check(self, ctx: RunContext) -> None:
        shape = self.image_shape or [int(v) for v in ctx.probe.images.shape[1:]]
        if self.image_shape is not None and list(ctx.probe.images.shape[1:]) != shape:
            try:
                with torch.no_grad():
                    ctx.view(torch.zeros(1, *shape, device=ctx.device))
            except torch.cuda.OutOfMemoryError:
                raise  # not the configuration: on_error decides
            except (RuntimeError, ValueError) as err:
                raise ValueError(
                    f"`image_shape` must be a shape the model takes, got {self.image_shape!r} "
                    f"({type(err).__name__}: {err})"
                ) from err
        ctx.check_neuron(self.neuron, self.reshape)
        if self.classes is not None:
            bad = [c for c in self.classes if c >= ctx.num_classes]
            if bad:
                fail("classes", f"class indices in [0, {ctx.num_classes}) for this model", bad)
        self._shape = shape
        self._classes = self.classes
        if self.classes is None and self.neuron is None:
            self._classes = self._default_classes(ctx)

    def _default_classes(self, ctx: RunContext) -> list[int] | None:
        """``classes=None``: the classes the probe data has (all of the model's when the
        probe has no labels), at most 20 evenly spaced among them (said once)."""
        k = ctx.num_classes
        seen = [c for c in (ctx.probe.seen or []) if 0 <= c < k]
        pool = seen if seen else list(range(k))
        picked = pool
        if len(pool) > MAX_DEFAULT_CLASSES:
            most = MAX_DEFAULT_CLASSES
            picked = sorted({pool[round(i * len(pool) / most)] for i in range(most)})
        if picked == list(range(k)):
            return None  # every class of the model
        if "classes" not in self._said:
            self._said.add("classes")
            where = (
                f"the {len(seen)} classes its probe data has"
                if seen and len(seen) < k
                else f"its {k} classes"
            )
            shown = ", ".join(str(c) for c in picked[:3]) + (", ..." if len(picked) > 3 else "")
            rank_zero_info(
                f"ClassModelLogger: the model has {k} classes; class-model images are made for "
                f"{len(picked)} of {where} ({shown}); pass `classes=` to choose"
            )
        return picked

    def _finite(self, ctx: RunContext, images: Tensor) -> tuple[Tensor, Tensor]:
        """``images`` with those holding NaN or inf (a non-finite gradient: NaN outputs
        on the way) set to mid-grey, said once, instead of failing the grid; and which."""
        return blank_nonfinite(
            self,
            "nonfinite_images",
            images,
            0.5,
            f"class-model images hold NaN or inf at epoch {ctx.log.epoch} (the model's "
            "outputs or gradients on them are not finite): they are drawn mid-grey",
        )

    def _flat(self, ctx: RunContext, made: dict[str, Tensor], what: list[str]) -> Tensor:
        """``made``'s images; those no step moved (a zero gradient throughout: a dead or
        saturated model) are said once, since they are grey for want of a signal."""
        flat = made["flat"].cpu()
        if bool(flat.any()):
            names = [w for w, f in zip(what, flat.tolist(), strict=True) if f]
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            self.warn_once(
                "flat_images",
                f"the gradient of {len(names)} of {len(flat)} scores ({shown}) w.r.t. the "
                f"image was zero at every step at epoch {ctx.log.epoch} (dead or saturated "
                "units on the way): their class-model images are the grey start, not "
                "what the model looks for",
            )
        return made["images"]

    def run(self, ctx: RunContext) -> None:
        shape = self._shape
        scale = render.display_scale(shape[-1])
        if self.neuron is not None:
            layer, channel = self.neuron
            _, module = resolve_layer(ctx.module, layer)
            made = class_model_run(
                ctx.view,
                None,
                shape,
                steps=self.steps,
                neuron=(module, channel),
                reshape=self.reshape,
                generator=ctx.generator,
            )
            images = self._flat(ctx, made, [f"{layer} channel {channel}"])
            ctx.log.image(
                self.tag(f"neuron/{layer}/{channel}"),
                render.image_grid(self._finite(ctx, images.float().cpu())[0], scale=scale),
            )
            return
        classes = self._classes if self._classes is not None else list(range(ctx.num_classes))
        made = ctx.chunked(  # at most ctx.max_batch images optimized at once
            lambda ks: class_model_run(
                ctx.view, ks.tolist(), shape, steps=self.steps, generator=ctx.generator
            ),
            torch.tensor(classes, device=ctx.device),
        )
        images = self._flat(ctx, made, [self.class_name(k) for k in classes])
        images, blank = self._finite(ctx, images)  # blank: drawn mid-grey
        with torch.no_grad():
            logits = ctx.chunked(ctx.view, images)
        if ctx.task == "multiclass":
            conf, pred = logits.softmax(dim=1).max(dim=1)
        elif ctx.task == "binary":  # the model's decision and its probability
            positive = logits[:, 0].float().sigmoid()
            pred = (logits[:, 0] > 0).long()  # as the library decides (a tiny logit: 0.50)
            conf = torch.where(pred == 1, positive, 1 - positive)
        else:  # multilabel: the sigmoid of the optimized label's own logit
            pred = torch.tensor(classes, device=logits.device)
            conf = class_scores(logits, pred).sigmoid()
        caps = [  # a blank tile's prediction would be of the grey, not of an image
            f"{self.class_name(k)}\n"
            + ("NaN" if b else f"{self.class_name(int(p))} {float(c):.2f}")
            for k, p, c, b in zip(
                classes, pred.tolist(), conf.tolist(), blank.cpu().tolist(), strict=True
            )
        ]
        ctx.log.image(
            self.tag("grid"),
            render.image_grid(
                images.float().cpu(), nrow=min(len(classes), 10), captions=caps, scale=scale
            ),
        )
