"""TensorBoard projector files, written so that a run's log does not grow more than needed.

``SummaryWriter.add_embedding`` writes the tensors, the metadata and the thumbnail
sprite again at every step. The sprite shows the same images every epoch (the first
validation samples), so here it is written once per run, under
``<log_dir>/lightning_viz/projector/``, and every epoch's entry of
``projector_config.pbtxt`` refers to it. The tensors are written with 3 significant
digits (the projector's PCA and t-SNE need no more); the metadata (labels,
predictions, correctness: they change) every epoch.
"""

from __future__ import annotations

import hashlib
import os

from google.protobuf import text_format
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig
from torch import Tensor

from lightning_viz import render
from lightning_viz._runtime.writers._base import atomic_write

__all__ = ["write_embedding"]

_CONFIG = "projector_config.pbtxt"


def _encode(tag: str) -> str:
    """The folder name of a tag, as ``SummaryWriter.add_embedding`` writes it."""
    return tag.replace("%", "%25").replace("/", "%2f").replace("\\", "%5c")


def write_embedding(
    log_dir: str,
    tag: str,
    step: int,
    features: Tensor,
    metadata: list[list[str]],
    header: list[str],
    thumbs: Tensor,
) -> str:
    """Writes one epoch's embedding for TensorBoard's projector.

    Args:
        log_dir: The run's log directory (the one holding the event file).
        tag: The embedding's name, e.g. ``"embedding/model.fc"``.
        step: The step it belongs to.
        features: ``(N, D)`` float features.
        metadata: One row of strings per sample.
        header: The metadata columns.
        thumbs: ``(N, C, s, s)`` uint8 square thumbnails (the same images every epoch:
            their sprite is written once and shared).

    Returns:
        The folder of this step's tensors and metadata.
    """
    folder = os.path.join(log_dir, f"{int(step):05d}", _encode(tag))
    rows = ("\t".join(f"{v:.3g}" for v in row) for row in features.float().tolist())
    atomic_write(os.path.join(folder, "tensors.tsv"), ("\n".join(rows) + "\n").encode())
    lines = ["\t".join(header), *("\t".join(r) for r in metadata)]
    atomic_write(os.path.join(folder, "metadata.tsv"), ("\n".join(lines) + "\n").encode())
    thumbs = thumbs.contiguous().cpu()
    digest = hashlib.sha256(thumbs.numpy().tobytes()).hexdigest()[:12]
    sprite = os.path.join("lightning_viz", "projector", _encode(tag), f"{digest}.png")
    if not os.path.exists(os.path.join(log_dir, sprite)):  # written once per run
        atomic_write(os.path.join(log_dir, sprite), render.sprite_png(thumbs))
    config_path = os.path.join(log_dir, _CONFIG)
    config = ProjectorConfig()
    if os.path.exists(config_path):
        with open(config_path) as f:
            text_format.Merge(f.read(), config)
    name = f"{tag}:{int(step):05d}"
    entry = ProjectorConfig().embeddings.add()
    entry.tensor_name = name
    entry.tensor_path = os.path.relpath(os.path.join(folder, "tensors.tsv"), log_dir)
    entry.metadata_path = os.path.relpath(os.path.join(folder, "metadata.tsv"), log_dir)
    entry.sprite.image_path = sprite
    entry.sprite.single_image_dim.extend([int(thumbs.shape[-1]), int(thumbs.shape[-2])])
    steps = {e.tensor_name: _step_of(e.tensor_name, tag) for e in config.embeddings}
    steps[name] = int(step)
    others = [e for e in config.embeddings if steps[e.tensor_name] is None]
    mine = [  # this tag's other steps (not its alias, -1), then this one
        e
        for e in config.embeddings
        if steps[e.tensor_name] not in (None, -1) and e.tensor_name != name
    ] + [entry]
    # the projector opens the first name in sorted order: an alias of the latest step
    # sorts before "<tag>:00000", so a run opens on its trained features
    latest = max(mine, key=lambda e: steps[e.tensor_name])
    alias = type(entry)()
    alias.CopyFrom(latest)
    alias.tensor_name = f"{tag} (latest, step {steps[latest.tensor_name]})"
    del config.embeddings[:]
    config.embeddings.extend([*others, *mine, alias])
    atomic_write(config_path, text_format.MessageToString(config).encode())
    return folder


def _step_of(name: str, tag: str) -> int | None:
    """The step of ``tag``'s entry ``"<tag>:<step>"``; ``-1`` for its latest-step alias
    ``"<tag> (latest, step <step>)"``; ``None`` for another tag's entry."""
    if name.startswith(f"{tag}:") and name[len(tag) + 1 :].isdigit():
        return int(name[len(tag) + 1 :])
    if name.startswith(f"{tag} (latest, step "):
        return -1
    return None
