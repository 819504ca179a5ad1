"""Small demo models for 32 px images and a plain LightningModule classifier."""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torchvision.models.vision_transformer import ConvStemConfig

from lightning_viz._checks import check_bool, check_choice, check_float, check_int, fail

__all__ = ["MODEL_NAMES", "LitClassifier", "SmallCNN", "build_model", "resnet18_small", "vit_small"]

MODEL_NAMES: tuple[str, ...] = ("small", "resnet18", "vit")
OPTIMIZERS: tuple[str, ...] = ("adam", "sgd")


def _stage(in_channels: int, out_channels: int, pool: bool) -> nn.Sequential:
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        conv=nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        bn=nn.BatchNorm2d(out_channels),
        relu=nn.ReLU(inplace=True),
    )
    if pool:
        layers["pool"] = nn.MaxPool2d(2)
    return nn.Sequential(layers)


class SmallCNN(nn.Module):
    """Three conv3x3-BN-ReLU stages, global average pooling and a linear classifier.

    For 32 px inputs the stages see 32, 16 and 8 px; ``block1`` and ``block2`` end
    with 2x2 max pooling, ``block3`` keeps its 8x8 spatial output (the Grad-CAM
    layer). Module names are stable: ``block1.conv``, ``block1.bn``, ``block1.relu``
    (``inplace=True``), ``block1.pool``, ..., ``block3.conv``, ``pool`` (global
    average), ``flatten``, ``fc`` (its input is the penultimate feature vector).

    Args:
        num_classes: Number of output logits. Default: ``5``.
        in_channels: Input channels (3 for RGB, 1 for gray). Default: ``3``.
        width: Channels of the first stage; the others have ``2*width`` and
            ``4*width``. Default: ``16``.

    Shape:
        ``(N, in_channels, H, W) -> (N, num_classes)`` logits.
    """

    def __init__(self, num_classes: int = 5, in_channels: int = 3, width: int = 16) -> None:
        super().__init__()
        check_int(num_classes, "num_classes", minimum=1)
        check_int(in_channels, "in_channels", minimum=1)
        check_int(width, "width", minimum=1)
        self.block1 = _stage(in_channels, width, pool=True)
        self.block2 = _stage(width, 2 * width, pool=True)
        self.block3 = _stage(2 * width, 4 * width, pool=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.block1(x)  # (N, w, H/2, W/2)
        x = self.block2(x)  # (N, 2w, H/4, W/4)
        x = self.block3(x)  # (N, 4w, H/4, W/4)
        x = self.flatten(self.pool(x))  # (N, 4w)
        return self.fc(x)  # (N, num_classes)


def resnet18_small(num_classes: int, in_channels: int = 3) -> nn.Module:
    """A torchvision ResNet-18 (random init, no download) adapted to 32 px images.

    ``conv1`` becomes a 3x3 stride-1 convolution and the stem max pooling is removed,
    so a 32 px input reaches ``layer4`` at 4x4 (He et al., 2016, CIFAR variant).

    Args:
        num_classes: Number of output logits.
        in_channels: Input channels. Default: ``3``.

    Returns:
        The model; the classifier is ``fc`` and the last conv stage ``layer4``.
    """
    check_int(num_classes, "num_classes", minimum=1)
    check_int(in_channels, "in_channels", minimum=1)
    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


def vit_small(
    num_classes: int,
    in_channels: int = 3,
    image_size: int = 32,
    *,
    patch_size: int = 4,
    num_layers: int = 4,
    num_heads: int = 4,
    hidden_dim: int = 64,
    mlp_dim: int = 128,
    conv_stem: bool = True,
) -> nn.Module:
    """A small torchvision ``VisionTransformer`` (random init, no download) for 32 px images.

    Dosovitskiy et al., "An Image is Worth 16x16 Words", 2021, at demo size: 4x4
    patches (an 8x8 token grid plus the class token at 32 px), 4 encoder blocks of
    width 64 with 4 heads. By default the patch embedding is a convolutional stem
    (Xiao et al., "Early Convolutions Help Transformers See Better", 2021, as
    torchvision's ``conv_stem_configs``): ``log2(patch_size)`` stride-2 3x3
    conv-BN-ReLU layers (32, then ``hidden_dim`` channels) and a 1x1 conv to
    ``hidden_dim``. On the 2000 training images of the shapes data a plain
    patchify ViT overfits (validation accuracy about 0.4 after 40 epochs, see
    ``tests/data/test_vit.py``); with the stem it passes 0.6 within about 10 epochs.
    The encoder is a standard ViT either way.

    Two changes to torchvision's initialisation: the classifier ``heads.head`` gets
    ``nn.Linear``'s default init instead of zeros (a zero head makes every gradient,
    hence every Grad-CAM map, exactly zero before training), and for
    ``in_channels != 3`` the first conv of the patch embedding takes
    ``in_channels`` (torchvision hard-codes 3).

    Module names are torchvision's: ``conv_proj`` (patch embedding; with the stem
    ``conv_proj.conv_bn_relu_{i}`` and ``conv_proj.conv_last``),
    ``encoder.layers.encoder_layer_{i}`` (blocks, each with ``ln_1``,
    ``self_attention``, ``ln_2``, ``mlp``), ``encoder.ln`` and ``heads.head``.

    Args:
        num_classes: Number of output logits.
        in_channels: Input channels. Default: ``3``.
        image_size: Input side in pixels, a multiple of ``patch_size`` (the model
            only takes this size). Default: ``32``.
        patch_size: Patch side in pixels (a power of 2 with ``conv_stem``).
            Default: ``4``.
        num_layers: Encoder blocks. Default: ``4``.
        num_heads: Attention heads, dividing ``hidden_dim``. Default: ``4``.
        hidden_dim: Token width. Default: ``64``.
        mlp_dim: Hidden width of each block's MLP. Default: ``128``.
        conv_stem: Convolutional stem (``True``) or torchvision's single
            ``patch_size``-strided conv. Default: ``True``.

    Returns:
        The model, ``(N, in_channels, image_size, image_size) -> (N, num_classes)``.

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: An argument is below 1, ``image_size`` is not a multiple of
            ``patch_size``, ``hidden_dim`` not a multiple of ``num_heads``, or
            ``patch_size`` is not a power of 2 (``>= 2``) with ``conv_stem``.
    """
    for value, name in (
        (num_classes, "num_classes"),
        (in_channels, "in_channels"),
        (image_size, "image_size"),
        (patch_size, "patch_size"),
        (num_layers, "num_layers"),
        (num_heads, "num_heads"),
        (hidden_dim, "hidden_dim"),
        (mlp_dim, "mlp_dim"),
    ):
        check_int(value, name, minimum=1)
    check_bool(conv_stem, "conv_stem")
    if image_size % patch_size:
        fail("image_size", f"a multiple of `patch_size` ({patch_size})", image_size)
    if hidden_dim % num_heads:
        fail("hidden_dim", f"a multiple of `num_heads` ({num_heads})", hidden_dim)
    stem = None
    if conv_stem:
        if patch_size < 2 or patch_size & (patch_size - 1):
            fail("patch_size", "a power of 2 >= 2 with `conv_stem`", patch_size)
        steps = patch_size.bit_length() - 1  # log2(patch_size) stride-2 convs
        widths = [32] + [hidden_dim] * (steps - 1)
        stem = [ConvStemConfig(out_channels=c, kernel_size=3, stride=2) for c in widths]
    model = torchvision.models.VisionTransformer(
        image_size=image_size,
        patch_size=patch_size,
        num_layers=num_layers,
        num_heads=num_heads,
        hidden_dim=hidden_dim,
        mlp_dim=mlp_dim,
        num_classes=num_classes,
        conv_stem_configs=stem,
    )
    if in_channels != 3:
        if conv_stem:
            old = model.conv_proj.conv_bn_relu_0[0]
            conv = nn.Conv2d(in_channels, old.out_channels, 3, stride=2, padding=1, bias=False)
            nn.init.kaiming_uniform_(conv.weight, a=math.sqrt(5))  # nn.Conv2d's own init
            model.conv_proj.conv_bn_relu_0[0] = conv
        else:
            conv = nn.Conv2d(in_channels, hidden_dim, kernel_size=patch_size, stride=patch_size)
            fan_in = in_channels * patch_size * patch_size
            nn.init.trunc_normal_(conv.weight, std=math.sqrt(1 / fan_in))  # as torchvision
            nn.init.zeros_(conv.bias)
            model.conv_proj = conv
    model.heads.head.reset_parameters()  # torchvision starts the head at zero
    return model


def build_model(name: str, num_classes: int = 5, in_channels: int = 3) -> nn.Module:
    """Builds a demo model by name.

    Args:
        name: ``"small"`` (:class:`SmallCNN`), ``"resnet18"`` (:func:`resnet18_small`)
            or ``"vit"`` (:func:`vit_small`, 32 px inputs only).
        num_classes: Number of output logits. Default: ``5``.
        in_channels: Input channels. Default: ``3``.

    Returns:
        A freshly initialized model (initialization draws from the global RNG, as
        any ``nn.Module`` constructor; seed it with ``pl.seed_everything``).

    Raises:
        ValueError: If ``name`` is unknown; the message lists the valid names.
    """
    if check_choice(name, "name", MODEL_NAMES) == "small":
        return SmallCNN(num_classes=num_classes, in_channels=in_channels)
    if name == "vit":
        return vit_small(num_classes=num_classes, in_channels=in_channels)
    return resnet18_small(num_classes=num_classes, in_channels=in_channels)


def _split_batch(batch: Any) -> tuple[Tensor, Tensor]:
    """``(x, y)``, ``(x, y, mask)`` or a dict with ``image``/``label`` keys -> ``(x, y)``."""
    if isinstance(batch, dict):
        return batch["image"], batch["label"]
    if isinstance(batch, list | tuple) and len(batch) >= 2:
        return batch[0], batch[1]
    what = "(images, labels[, masks]) or a dict with 'image' and 'label'"
    fail("batch", what, f"<{type(batch).__name__}>", TypeError)


class LitClassifier(pl.LightningModule):
    """A plain image classifier: cross entropy, accuracy, Adam or SGD with momentum.

    Batches are ``(images, labels)``, ``(images, labels, masks)`` or dicts with
    ``image``/``label`` keys. Logs ``train_loss`` (step and epoch), ``train_acc``,
    ``val_loss`` and ``val_acc`` (epoch; ``val_acc`` in the progress bar), and
    ``test_loss``/``test_acc`` in ``test``. Deterministic on CPU after
    ``pl.seed_everything``.

    Args:
        model: The network; when ``None`` it is built by :func:`build_model` from
            ``model_name``, ``num_classes`` and ``in_channels``. Default: ``None``.
        num_classes: Number of classes. Default: ``5``.
        in_channels: Input channels. Default: ``3``.
        lr: Learning rate, > 0. Default: ``1e-2``.
        model_name: ``"small"``, ``"resnet18"`` or ``"vit"``. Default: ``"small"``.
        optimizer: ``"adam"`` or ``"sgd"`` (momentum 0.9). Default: ``"adam"``.

    Raises:
        TypeError: If ``model`` is not an ``nn.Module`` or ``None``, or ``lr`` not a number.
        ValueError: If ``lr``, ``model_name`` or ``optimizer`` are invalid.
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        num_classes: int = 5,
        in_channels: int = 3,
        lr: float = 1e-2,
        model_name: str = "small",
        optimizer: str = "adam",
    ) -> None:
        super().__init__()
        if model is not None and not isinstance(model, nn.Module):
            fail("model", "an nn.Module or None", f"<{type(model).__name__}>", TypeError)
        check_float(lr, "lr", positive=True)
        check_choice(optimizer, "optimizer", OPTIMIZERS)
        self.save_hyperparameters(ignore=["model"])
        if model is None:
            model_name = check_choice(model_name, "model_name", MODEL_NAMES)
            model = build_model(model_name, num_classes, in_channels)
        self.model = model
        self.lr = float(lr)
        self.optimizer_name = optimizer

    def forward(self, x: Tensor) -> Tensor:
        """Returns logits ``(N, num_classes)``."""
        return self.model(x)

    def _shared_step(self, batch: Any, prefix: str) -> Tensor:
        x, y = _split_batch(batch)
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        acc = (logits.argmax(dim=1) == y).float().mean()
        on_step = prefix == "train"
        self.log(f"{prefix}_loss", loss, on_step=on_step, on_epoch=True, batch_size=len(y))
        self.log(
            f"{prefix}_acc",
            acc,
            on_step=False,
            on_epoch=True,
            prog_bar=prefix == "val",
            batch_size=len(y),
        )
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        x = batch if isinstance(batch, Tensor) else _split_batch(batch)[0]
        return self(x)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.optimizer_name == "sgd":
            return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)
        return torch.optim.Adam(self.parameters(), lr=self.lr)
