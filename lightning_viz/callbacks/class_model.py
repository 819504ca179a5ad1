"""ClassModelLogger: the image each class (or one channel) responds to most."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

import lightning_viz.functional as LF
from lightning_viz import render
from lightning_viz._guard import preserve_state
from lightning_viz._hooks import capture_outputs
from lightning_viz.callbacks._base import RunContext, VizCallback
from lightning_viz.callbacks._probe import Probe
from lightning_viz.callbacks._targets import check_neuron
from lightning_viz.functional._utils import resolve_layer

__all__ = ["ClassModelLogger"]


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

    The probe is used only at ``setup``, to learn the image shape and the number of
    classes (one forward pass), hence ``num_samples=1``.

    Args:
        classes: Class indices to visualize. Default: ``None`` (all classes).
        steps: Gradient-ascent steps. Default: ``200``.
        every_n_epochs: Run every that many epochs. Default: ``5``.
        neuron: ``(layer_name, channel)`` to maximize one channel instead of class
            scores (``classes`` must then be ``None``). Default: ``None``.
        image_shape: ``(C, H, W)`` of the optimized images. Default: the shape of the
            validation (probe) images.
        num_samples: Probe images. Default: 1.
        **kwargs: The options every callback shares (see ``VizCallback``); the
            regularizers keep the defaults of
            :func:`~lightning_viz.functional.class_model`.

    Raises:
        TypeError: An argument of the wrong type.
        ValueError: A bad value; ``classes`` together with ``neuron``. At ``setup``:
            class indices outside the model's classes, an unknown layer (the message
            lists the available ones), a channel outside the layer's channels.

    Example:
        >>> cb = ClassModelLogger(classes=[0, 2], steps=100, every_n_epochs=2)
        >>> cb.tag("grid")
        'class_model/grid'
    """

    family = "class_model"
    default_num_samples = 1

    def __init__(
        self,
        classes: Sequence[int] | None = None,
        steps: int = 200,
        every_n_epochs: int = 5,
        neuron: tuple[str, int] | None = None,
        image_shape: Sequence[int] | None = None,
        num_samples: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(every_n_epochs=every_n_epochs, num_samples=num_samples, **kwargs)
        if classes is not None:
            if isinstance(classes, int) and not isinstance(classes, bool):
                classes = [classes]
            if isinstance(classes, str) or not isinstance(classes, Sequence):
                raise TypeError(
                    f"`classes` must be a list of class indices or None, got {classes!r}"
                )
            if any(isinstance(k, bool) or not isinstance(k, int) for k in classes):
                raise TypeError(f"`classes` must contain ints, got {classes!r}")
            if not classes or any(k < 0 for k in classes):
                raise ValueError(f"`classes` must be non-empty indices >= 0, got {list(classes)}")
            classes = [int(k) for k in classes]
        if isinstance(steps, bool) or not isinstance(steps, int):
            raise TypeError(f"`steps` must be an int, got {steps!r}")
        if steps < 1:
            raise ValueError(f"`steps` must be >= 1, got {steps!r}")
        neuron = check_neuron(neuron)
        if neuron is not None:
            if classes is not None:
                raise ValueError(
                    f"`classes` must be None when `neuron` is given, got classes={classes!r}"
                )
        if image_shape is not None:
            if isinstance(image_shape, str) or not isinstance(image_shape, Sequence):
                raise TypeError(f"`image_shape` must be (C, H, W) or None, got {image_shape!r}")
            if len(image_shape) != 3 or any(
                isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in image_shape
            ):
                raise ValueError(
                    f"`image_shape` must be 3 positive ints (C, H, W), got {image_shape!r}"
                )
            image_shape = [int(v) for v in image_shape]
        self.classes = classes
        self.steps = steps
        self.neuron = neuron
        self.image_shape = image_shape
        self._shape: list[int] | None = None

    def key_args(self) -> dict[str, Any]:
        return {"classes": self.classes, "neuron": self.neuron}

    def check(self, module: nn.Module, probe: Probe) -> None:
        shape = self.image_shape or [int(v) for v in probe.images.shape[1:]]
        device = next((p.device for p in module.parameters()), torch.device("cpu"))
        x = probe.images[:1].to(device)
        if self.image_shape is not None:
            x = torch.zeros(1, *shape, device=device)
        watched = {}
        if self.neuron is not None:
            watched["layer"] = resolve_layer(module, self.neuron[0])[1]
        with preserve_state(module) as net, torch.no_grad(), capture_outputs(watched) as feats:
            out = net(x)
            if self.output_to_logits is not None:
                out = self.output_to_logits(out)
        if self.neuron is not None:
            act = feats.get("layer")
            channels = int(act.shape[1]) if act is not None and act.dim() >= 2 else 0
            if self.neuron[1] >= channels:
                raise ValueError(
                    f"`neuron` channel {self.neuron[1]} is out of range for layer "
                    f"{self.neuron[0]!r} with {channels} channels"
                )
        elif self.classes is not None:
            if not isinstance(out, torch.Tensor) or out.dim() != 2:
                raise ValueError(
                    "ClassModelLogger needs logits (N, K) from the model; pass `output_to_logits`"
                )
            k = int(out.shape[1])
            bad = [c for c in self.classes if c >= k]
            if bad:
                raise ValueError(
                    f"`classes` {bad} are out of range for a model with {k} classes "
                    f"(valid: 0..{k - 1})"
                )
        self._shape = shape

    def run(self, ctx: RunContext) -> None:
        if self._shape is None:
            self.check(ctx.module, ctx.probe)
        shape = self._shape
        assert shape is not None  # set by check()
        if self.neuron is not None:
            layer, channel = self.neuron
            _, module = resolve_layer(ctx.module, layer)
            images = LF.class_model(
                ctx.view,
                None,
                shape,
                steps=self.steps,
                neuron=(module, channel),
                generator=ctx.generator,
            )
            ctx.log.image(
                self.tag(f"neuron/{layer}/{channel}"),
                render.image_grid(images.float().cpu(), scale=self._scale(shape)),
            )
            return
        images = LF.class_model(
            ctx.view, self.classes, shape, steps=self.steps, generator=ctx.generator
        )
        classes = self.classes if self.classes is not None else list(range(images.shape[0]))
        with preserve_state(ctx.view) as view, torch.no_grad():
            probs = view(images).softmax(dim=1)
        conf, pred = probs.max(dim=1)
        caps = [
            f"{self.class_name(k)}\n{self.class_name(int(p))} {float(c):.2f}"
            for k, p, c in zip(classes, pred.tolist(), conf.tolist(), strict=True)
        ]
        ctx.log.image(
            self.tag("grid"),
            render.image_grid(
                images.float().cpu(),
                nrow=min(len(classes), 10),
                captions=caps,
                scale=self._scale(shape),
            ),
        )

    @staticmethod
    def _scale(shape: Sequence[int]) -> int:
        return max(1, 96 // max(int(shape[-1]), 1))
