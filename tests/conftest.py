"""Shared test helpers: a tiny training run and reading TensorBoard event files back."""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def read_events(logdir: str) -> dict[str, dict[str, list[Any]]]:
    """All scalars, images and tensors under ``logdir``: {"scalars": {tag: [(step,
    value)]}, "images": {tag: [(step, width, height, png_bytes)]}, "tensors": {tag:
    [(step, [bytes, ...])]}} (text summaries and plugin data are tensors of strings)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, dict[str, list[Any]]] = {"scalars": {}, "images": {}, "tensors": {}}
    files = sorted(glob.glob(os.path.join(logdir, "**", "events.out.tfevents.*"), recursive=True))
    for path in files:
        acc = EventAccumulator(path, size_guidance={"images": 0, "scalars": 0, "tensors": 0})
        acc.Reload()
        tags = acc.Tags()
        for tag in tags.get("scalars", []):
            out["scalars"].setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
        for tag in tags.get("images", []):
            out["images"].setdefault(tag, []).extend(
                (e.step, e.width, e.height, e.encoded_image_string) for e in acc.Images(tag)
            )
        for tag in tags.get("tensors", []):  # text and plugin data (custom-scalars layout)
            out["tensors"].setdefault(tag, []).extend(
                (e.step, e.tensor_proto.string_val) for e in acc.Tensors(tag)
            )
    return out


@contextlib.contextmanager
def lightning_info() -> Iterator[list[str]]:
    """Collects the messages of Lightning's rank-zero logging (``rank_zero_info``).

    Lightning's loggers do not propagate to the root logger (so ``caplog`` misses them)
    and the logger used depends on which flavour was imported last: both are watched.
    """
    messages: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = _Collect(level=logging.INFO)
    loggers = [logging.getLogger(n) for n in ("pytorch_lightning", "lightning.pytorch")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
    try:
        yield messages
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)


def decode_png(data: bytes) -> torch.Tensor:
    """PNG bytes -> (H, W, C) uint8 tensor."""
    import io

    import numpy as np
    from PIL import Image

    return torch.from_numpy(np.array(Image.open(io.BytesIO(data)).convert("RGB")))


USER_SCALARS = ("train_", "val_", "epoch", "hp_metric")  # the LightningModule's own, not ours


def layout_and_scalars(events: dict[str, dict[str, list[Any]]]) -> tuple[list[str], set[str]]:
    """The tags the run's one custom-scalars layout lists (in order, repeats kept) and
    the lightning-viz scalar tags the run wrote."""
    import re

    from tensorboard.plugins.custom_scalar import layout_pb2

    ((_, values),) = events["tensors"]["custom_scalars__config__"]  # once per run
    listed = [
        re.sub(r"\\(.)", r"\1", tag[1:-1])
        for category in layout_pb2.Layout.FromString(values[0]).category
        for chart in category.chart
        for tag in chart.multiline.tag
    ]
    return listed, {t for t in events["scalars"] if not t.startswith(USER_SCALARS)}


def small_datamodule(**kwargs: Any):
    from lightning_viz.data import ShapesTexturesDataModule

    args = {"train_size": 192, "val_size": 64, "batch_size": 32, "seed": 0}
    args.update(kwargs)
    return ShapesTexturesDataModule(**args)


def make_trainer(
    tmp_path: Any,
    callbacks: list[Any],
    *,
    epochs: int = 2,
    flavour: str = "pytorch_lightning",
    **trainer_kwargs: Any,
):
    """The tests' short CPU trainer, logging to ``<tmp_path>/run/version_0``."""
    if flavour == "lightning":
        import lightning.pytorch as pl
        from lightning.pytorch.loggers import TensorBoardLogger
    else:
        import pytorch_lightning as pl
        from pytorch_lightning.loggers import TensorBoardLogger
    args = dict(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=TensorBoardLogger(str(tmp_path), name="run", version=0),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=1,
        deterministic=True,
        limit_train_batches=4,
        limit_val_batches=2,
    )
    args.update(trainer_kwargs)
    return pl.Trainer(callbacks=callbacks, **args)


def fit(
    tmp_path: Any,
    callbacks: list[Any],
    *,
    epochs: int = 2,
    model: Any = None,
    datamodule: Any = None,
    seed: int = 0,
    flavour: str = "pytorch_lightning",
    ckpt_path: str | None = None,
    keep_budget: bool = False,
    **trainer_kwargs: Any,
):
    """A short seeded CPU fit (:func:`make_trainer`); returns (trainer, module).

    Tests look at what the callbacks write every due epoch, so the shared overhead
    budget is turned off (``max_overhead=None``) unless ``keep_budget``.
    """
    if not keep_budget:
        for cb in callbacks:
            if hasattr(cb, "max_overhead"):
                cb.max_overhead = None
    if flavour == "lightning":
        import lightning.pytorch as pl
    else:
        import pytorch_lightning as pl
    from lightning_viz.data import LitClassifier

    pl.seed_everything(seed)
    datamodule = datamodule if datamodule is not None else small_datamodule()
    model = model if model is not None else LitClassifier(num_classes=5, lr=1e-2)
    trainer = make_trainer(tmp_path, callbacks, epochs=epochs, flavour=flavour, **trainer_kwargs)
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    return trainer, model


@pytest.fixture
def events():
    return read_events


# ------------------------------------------------------------------ callback sets
def gradient_callbacks(
    num_samples: int = 4, neuron: tuple[str, int] = ("model.block2.conv", 1), **kwargs: Any
) -> list[Any]:
    """The gradient-view callbacks, cheap settings, every method."""
    import lightning_viz as lv

    return [
        lv.FilterLogger(**kwargs),
        lv.ActivationLogger(num_samples=2, max_channels=8, **kwargs),
        lv.SaliencyLogger(
            methods=(
                "vanilla",
                "smoothgrad",
                "integrated_gradients",
                "guided_backprop",
                "deconvnet",
            ),
            num_samples=num_samples,
            smoothgrad_samples=4,
            ig_steps=8,
            neuron=neuron,
            quality_steps=4,
            quality_cost=None,  # scored every epoch, as every other view
            **kwargs,
        ),
        lv.GradCAMLogger(
            methods=("gradcam", "gradcam++", "guided_gradcam"),
            num_samples=num_samples,
            quality_steps=4,
            quality_cost=None,
            **kwargs,
        ),
    ]


def all_callbacks(neuron: tuple[str, int] = ("model.block2.conv", 1), **kwargs: Any) -> list[Any]:
    """Every callback, cheap settings (``neuron``: SaliencyLogger's, for other models)."""
    import lightning_viz as lv

    return [
        *gradient_callbacks(neuron=neuron, **kwargs),
        lv.EmbeddingProjector(num_samples=16, projection="pca", **kwargs),
        lv.AdversarialProbe(eps=(2 / 255, 8 / 255), steps=3, num_samples=16, **kwargs),
        lv.TextureShapeBias(num_images=10, num_samples=10, style_steps=3, **kwargs),
        lv.ClassModelLogger(steps=5, every_n_epochs=1, **kwargs),
        lv.CorruptionProbe(corruptions=("fog", "jpeg_compression"), num_samples=8, **kwargs),
    ]


# ------------------------------------------------------------ observing changes nothing
def final_state(trainer: Any, model: Any) -> dict[str, Any]:
    """Everything a run ends with that observing must not change (and the next RNG draws)."""
    import random

    import numpy as np

    return {
        "weights": {k: v.clone() for k, v in model.state_dict().items()},
        "optimizer": trainer.optimizers[0].state_dict(),
        "torch": torch.rand(8),
        "numpy": np.random.rand(8),
        "python": [random.random() for _ in range(8)],
        "flags": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
    }


def assert_same_final_state(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Weights, BatchNorm buffers, optimizer state, flags, grads and RNG draws, bitwise."""
    import numpy as np

    assert a["weights"].keys() == b["weights"].keys()
    for key in a["weights"]:
        assert torch.equal(a["weights"][key], b["weights"][key]), key
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys() and len(sa) > 0
    for idx in sa:
        for name, value in sa[idx].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(sb[idx][name])), (idx, name)
    assert torch.equal(a["torch"], b["torch"])
    assert np.array_equal(a["numpy"], b["numpy"])
    assert a["python"] == b["python"]
    assert a["flags"] == b["flags"]
    assert a["requires_grad"] == b["requires_grad"]
    for ga, gb in zip(a["grads"], b["grads"], strict=True):
        assert (ga is None) == (gb is None)
        if ga is not None:
            assert torch.equal(ga, gb)


def assert_observing_changes_nothing(
    tmp_path: Any, callbacks: list[Any], *, model_factory: Any = None, **fit_kwargs: Any
):
    """The shared non-interference harness: the same seeded fit without and with
    ``callbacks`` ends bitwise identical, and no hook or function mode is left behind.

    Returns the observed ``(trainer, model)``.
    """
    from torch.overrides import _get_current_function_mode_stack

    from lightning_viz import _guard
    from lightning_viz._hooks import has_hooks

    def make() -> Any:  # the same initial weights for both runs
        torch.manual_seed(fit_kwargs.get("seed", 0))
        return None if model_factory is None else model_factory()

    trainer_a, model_a = fit(tmp_path / "plain", [], model=make(), **fit_kwargs)
    plain = final_state(trainer_a, model_a)
    trainer_b, model_b = fit(tmp_path / "observed", callbacks, model=make(), **fit_kwargs)
    assert_same_final_state(plain, final_state(trainer_b, model_b))
    if has_hooks(model_a):  # the model's own (quantization observers, pruning): as many
        assert _hook_counts(model_b) == _hook_counts(model_a)
    else:
        assert not has_hooks(model_b)
    assert len(_get_current_function_mode_stack()) == 0
    assert _guard._plain_depth == 0  # torch.utils.checkpoint is torch's again
    return trainer_b, model_b


def _hook_counts(model: Any) -> list[int]:
    """How many hooks of each kind every submodule holds."""
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return [len(getattr(m, kind, {})) for m in model.modules() for kind in kinds]


def inject_failure(monkeypatch: Any, message: str = "injected failure inside a method"):
    """Makes every ``ModelView`` forward raise *after* the model ran (hooks are active),
    once training has started (setup, which runs the model to check it, is left alone).

    Returns ``(calls, arm)``: ``calls["n"]`` counts the raised failures; ``arm`` is a
    callback to add to the trainer.
    """
    import pytorch_lightning as pl

    from lightning_viz._guard import ModelView

    original = ModelView.forward
    calls = {"n": 0, "armed": False}

    def broken(self, x):
        out = original(self, x)
        if calls["armed"]:
            calls["n"] += 1
            raise RuntimeError(message)
        return out

    class Arm(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            calls["armed"] = True

    monkeypatch.setattr(ModelView, "forward", broken)
    return calls, Arm()


def run_python(code: str) -> str:
    """Runs ``code`` in a fresh Python process (this one's path); returns its stdout.

    Raises:
        AssertionError: The process failed (its stderr is the message).
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


def record_captions(monkeypatch: Any, owner: Any, name: str) -> list[Any]:
    """Replaces the render function ``owner.name`` by one that records the ``captions``
    of every call (then draws as before); returns the list it fills."""
    seen: list[Any] = []
    real = getattr(owner, name)

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("captions"))
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, spy)
    return seen


class UnknownTokenNet(torch.nn.Module):
    """A token model lightning-viz does not know: 8-px patches of 32-px images -> 16
    tokens of 8 features ``(N, 16, 8)``, ``block`` (per token), mean -> 3 logits."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.embed = torch.nn.Conv2d(3, 8, 8, stride=8)
        self.block = torch.nn.Linear(8, 8)
        self.head = torch.nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        return self.head(self.block(tokens).relu().mean(1))


def tokens_to_grid(tokens: torch.Tensor) -> torch.Tensor:
    """``UnknownTokenNet``'s tokens ``(N, 16, 8)`` as the grid ``(N, 8, 4, 4)``."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], 4, 4)
