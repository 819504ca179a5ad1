"""Geirhos et al.'s cue-conflict stimuli and the 16-class ImageNet mapping.

* :class:`CueConflictFolder` reads the 1,280 cue-conflict images of Geirhos et al.,
  "ImageNet-trained CNNs are biased towards texture; increasing shape bias improves
  accuracy and robustness" (ICLR 2019), in the layout they are distributed in
  (``<root>/<shape>/<shape><i>-<texture><j>.png``). The user downloads them;
  nothing here downloads anything.
* :data:`IMAGENET16_INDICES` and :func:`imagenet16_mapping`: the 16 categories and the
  ImageNet class indices of each, as in model-vs-human
  (``modelvshuman/helper/human_categories.py``, Geirhos et al., NeurIPS 2021).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from lightning_viz._checks import check_int, fail

__all__ = [
    "IMAGENET16_CATEGORIES",
    "IMAGENET16_INDICES",
    "CueConflictFolder",
    "imagenet16_mapping",
]

#: The 16 entry-level categories, sorted (their dataset class indices 0..15).
IMAGENET16_CATEGORIES: tuple[str, ...] = (
    "airplane",
    "bear",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "car",
    "cat",
    "chair",
    "clock",
    "dog",
    "elephant",
    "keyboard",
    "knife",
    "oven",
    "truck",
)

#: ImageNet class indices of each category (model-vs-human's ``<category>_indices``).
IMAGENET16_INDICES: dict[str, tuple[int, ...]] = {
    "airplane": (404,),
    "bear": (294, 295, 296, 297),
    "bicycle": (444, 671),
    "bird": (
        *(8, 10, 11, 12, 13, 14, 15, 16, 18, 19, 20, 22, 23, 24),
        *(80, 81, 82, 83, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96, 98, 99, 100),
        *(127, 128, 129, 130, 131, 132, 133, 135, 136, 137, 138, 139, 140, 141, 142, 143),
        *(144, 145),
    ),
    "boat": (472, 554, 625, 814, 914),
    "bottle": (440, 720, 737, 898, 899, 901, 907),
    "car": (436, 511, 817),
    "cat": (281, 282, 283, 284, 285, 286),
    "chair": (423, 559, 765, 857),
    "clock": (409, 530, 892),
    "dog": (
        *range(152, 192),  # 152 .. 191
        *range(193, 204),  # 193 .. 203
        *range(205, 227),  # 205 .. 226
        *range(228, 242),  # 228 .. 241
        *range(243, 251),  # 243 .. 250
        *range(252, 258),  # 252 .. 257
        259,
        *range(261, 264),  # 261 .. 263
        *range(265, 269),  # 265 .. 268
    ),
    "elephant": (385, 386),
    "keyboard": (508, 878),
    "knife": (499,),
    "oven": (766,),
    "truck": (555, 569, 656, 675, 717, 734, 864, 867),
}

_NAME = re.compile(r"^([a-z]+)(\d+)-([a-z]+)(\d+)\.png$", re.IGNORECASE)


def imagenet16_mapping(num_classes: int = 1000) -> list[int]:
    """The ``output_mapping`` of a 1000-class ImageNet model to the 16 categories.

    Returns:
        A list of ``num_classes`` entries: entry ``i`` is the index (in
        :data:`IMAGENET16_CATEGORIES`) of the category ImageNet class ``i`` belongs
        to, ``-1`` for the 793 classes of none (207 ImageNet classes are mapped).
    """
    num_classes = check_int(num_classes, "num_classes", minimum=1000)
    mapping = [-1] * num_classes
    for d, name in enumerate(IMAGENET16_CATEGORIES):
        for i in IMAGENET16_INDICES[name]:
            mapping[i] = d
    return mapping


class CueConflictFolder(Dataset):
    """Geirhos et al.'s cue-conflict images from a folder, as
    ``(image, shape_label, texture_label)``.

    Layout: ``<root>/<shape>/<shape><i>-<texture><j>.png`` (the folder
    ``stimuli/style-transfer-preprocessed-512`` of ``rgeirhos/texture-vs-shape``,
    1,280 images, model-vs-human's ``cue-conflict`` dataset). Labels are indices into
    ``categories``. Images whose shape and texture category agree (e.g.
    ``knife10-knife1.png``) are left out, as in the paper's analysis.

    Args:
        root: The ``cue-conflict`` folder.
        categories: The category names, the index of each being its label.
            Default: :data:`IMAGENET16_CATEGORIES`.
        exclude_same: Leave out images whose shape and texture agree. Default: ``True``.

    Attributes:
        files: ``(path, shape_label, texture_label)`` of every image kept, sorted.
        excluded: How many images were left out (shape == texture).

    Raises:
        ValueError: ``root`` is not a folder, holds no PNG, a file name that does not
            read ``<shape><i>-<texture><j>.png``, a category outside ``categories``,
            or a file in the folder of another shape.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        categories: Sequence[str] = IMAGENET16_CATEGORIES,
        exclude_same: bool = True,
    ) -> None:
        root = os.fspath(root) if isinstance(root, os.PathLike) else root
        if not isinstance(root, str):
            fail("root", "a folder path (str or os.PathLike)", root, TypeError)
        if not os.path.isdir(root):
            fail("root", "an existing folder of <shape>/<shape><i>-<texture><j>.png", root)
        self.root = root
        self.categories = tuple(categories)
        index = {name: i for i, name in enumerate(self.categories)}
        self.files: list[tuple[str, int, int]] = []
        self.excluded = 0
        for folder in sorted(os.listdir(root)):
            path = os.path.join(root, folder)
            if not os.path.isdir(path):
                continue
            for name in sorted(os.listdir(path)):
                if not name.lower().endswith(".png"):
                    continue
                match = _NAME.match(name)
                if match is None:
                    fail(
                        f"file {os.path.join(folder, name)!r}", "<shape><i>-<texture><j>.png", name
                    )
                shape, texture = match.group(1).lower(), match.group(3).lower()
                for cat in (shape, texture):
                    if cat not in index:
                        fail(
                            f"the category of {os.path.join(folder, name)!r}",
                            f"one of {list(self.categories)}",
                            cat,
                        )
                if shape != folder.lower():
                    fail(
                        f"file {name!r}",
                        f"in the folder of its shape {shape!r}",
                        f"<in folder {folder!r}>",
                    )
                if exclude_same and shape == texture:
                    self.excluded += 1
                    continue
                self.files.append((os.path.join(path, name), index[shape], index[texture]))
        if not self.files:
            fail("root", "a folder with <shape>/<shape><i>-<texture><j>.png images", root)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Tensor, int, int]:
        """``(image, shape, texture)``: the image ``(3, H, W)`` uint8, RGB."""
        return self.read(i), self.files[i][1], self.files[i][2]

    def read(self, i: int, size: tuple[int, int] | None = None) -> Tensor:
        """Image ``i`` as ``(3, H, W)`` uint8 RGB, resized (bilinear) to ``size``."""
        from PIL import Image

        with Image.open(self.files[i][0]) as img:
            img = img.convert("RGB")
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.BILINEAR)
            array = np.asarray(img, dtype=np.uint8).copy()
        return torch.from_numpy(array).permute(2, 0, 1).contiguous()

    def load(self, size: tuple[int, int] | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """All images ``(N, 3, H, W)`` uint8 (resized to ``size``) and the two label
        tensors ``(N,)`` long."""
        size = None if size is None else (check_int(size[0], "size"), check_int(size[1], "size"))
        images = torch.stack([self.read(i, size) for i in range(len(self.files))])
        labels = torch.tensor([(s, t) for _, s, t in self.files], dtype=torch.long)
        return images, labels[:, 0].clone(), labels[:, 1].clone()
