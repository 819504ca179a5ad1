"""How ``TextureShapeBias`` makes its cue-conflict set: in chunks, cached on disk.

:class:`CueConflictGeneration` is a base of
:class:`~lightning_viz.callbacks.shape_bias.TextureShapeBias`. The set is stylized in
chunks of at most ``_chunk()`` pairs (the callback's own method: the chunk size is a
setting of its module). Each finished chunk is written to the run's cache
(:mod:`lightning_viz._runtime.cue_cache`), so a stopped fit resumes from the finished
chunks; with ``background=True`` (or ``"auto"`` and more than one chunk) in one process
the chunks are made on the coordinator's background worker, otherwise at the first run
(each rank stylizing its share of every chunk under DDP).
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

import torch
from torch import Tensor, nn

import lightning_viz.functional as LF
from lightning_viz._guard import make_generator
from lightning_viz._runtime import cue_cache
from lightning_viz._runtime.context import RunContext
from lightning_viz._runtime.coordinator import Coordinator
from lightning_viz._runtime.distributed import ranks_without
from lightning_viz._runtime.progress import shown_bar
from lightning_viz.functional.style import default_extractor

__all__ = ["CueConflictGeneration"]


class _AbortedError(Exception):
    """The fit failed (Ctrl-C, an exception) while a chunk was being made."""


class CueConflictGeneration:
    """The cue-conflict set's generation steps (a base class; the state is the callback's)."""

    def _settings(self) -> dict[str, Any]:
        return {
            "num_images": self._images_to_make,
            "style_steps": self.style_steps,
            "content_weight": self.content_weight,
            "style_size": self.style_size,
            "refine_steps": self.refine_steps,
            "seed": self.seed,
            "output_mapping": self.output_mapping,
        }

    def _chunk_sizes(self) -> list[int]:
        n, chunk = self._images_to_make, self._chunk()
        return [min(chunk, n - i) for i in range(0, n, chunk)]

    def _locate(self, trainer: Any) -> bool:
        """Finds this set's cache file and reloads the whole set or (in one process) its
        finished chunks. Returns whether this is one process."""
        pixels, labels, masks = self._cc_source  # type: ignore[misc]
        key = cue_cache.cache_key(pixels, labels, masks, self._settings())
        self.cache_path = cue_cache.cache_file(self._shared(trainer).cache_dir, key)
        path, image_shape = self.cache_path, tuple(pixels.shape[1:])
        torch_dist = torch.distributed
        distributed = torch_dist.is_available() and torch_dist.is_initialized()
        one_process = not distributed and getattr(trainer, "world_size", 1) == 1
        # a resumed run in a new log dir: the set its checkpoint's run made (the same key)
        earlier = getattr(self, "_earlier_cache", None)
        same = path is not None and earlier is not None
        places = [p for p in (path, earlier if same else None) if p is not None]
        if same and os.path.basename(earlier) != os.path.basename(path):  # type: ignore[arg-type]
            places = places[:1]
        whole = False
        for place in places:
            cached = cue_cache.read_cache(place, self._images_to_make, image_shape)
            if cached is not None:
                self._cc = tuple(t.to(pixels.device) for t in cached)  # type: ignore[assignment]
                whole = True
                if place != path and getattr(trainer, "is_global_zero", True):
                    with contextlib.suppress(OSError):  # this run's checkpoint names its own
                        cue_cache.write_cache(path, *cached)  # type: ignore[arg-type]
                break
        self._looked = True  # (every rank: its cache path may be None on some ranks only)
        if not one_process and ranks_without(trainer, whole):  # a rank that has no file
            self._cc = None  # (another node's log dir): every rank makes the set together
        if whole:
            return one_process
        if one_process:  # under DDP the ranks must agree on what is missing
            self._chunks = {}
            for place in places:  # this log dir's chunks first: they are the newest
                found = cue_cache.read_chunks(place, self._chunk_sizes(), image_shape)
                for i, chunk in found.items():
                    if i in self._chunks:
                        continue
                    self._chunks[i] = chunk
                    if place != path:  # kept where the checkpoint points
                        with contextlib.suppress(OSError):
                            cue_cache.write_chunk(path, i, *chunk)  # type: ignore[arg-type]
        return one_process

    def _resume_or_start(self, trainer: Any) -> None:
        """Once set up (``on_fit_start``): reloads the set or its finished chunks and, with
        ``background=True`` in one process, queues the missing chunks on the
        background worker."""
        one_process = self._locate(trainer)
        if self._cc is not None or not (self._in_the_background(trainer) and one_process):
            return  # loaded, or made by the first run
        missing = [i for i in range(len(self._chunk_sizes())) if i not in self._chunks]
        coordinator = Coordinator.of(trainer)
        for i in missing:
            coordinator.defer(  # made once per fit: never a run's cost
                self,
                self.tag("cue_conflict_images"),
                self._background_chunk,
                i,
                then=self._add,
                once=True,
            )
        self._in_background = bool(missing)
        if not missing:
            self._finish()

    def _in_the_background(self, trainer: Any) -> bool:
        """``background="auto"``: only a set of more than one chunk (larger images). Never
        when a monitor reads the bias: it must be there at the first check."""
        if Coordinator.monitors_of(trainer, self):
            if self.background is True:
                Coordinator.of(trainer).info_once(
                    f"monitored cue conflict {self.tag_prefix}",
                    "lightning-viz: TextureShapeBias makes its cue-conflict images at its first "
                    "run, not in the background: a monitor reads its bias from the first check",
                )
            return False
        if self.background == "auto":
            return len(self._chunk_sizes()) > 1
        return bool(self.background)

    def _background_chunk(self, i: int) -> tuple[int, tuple[Tensor, ...]] | None:
        """Runs on the background worker: chunk ``i`` (``None`` once the fit ends)."""
        if self._stop or not self._enabled:
            return None
        try:
            with torch.inference_mode(False), torch.enable_grad():
                return i, self._make_chunk(i, None)
        except _AbortedError:  # the process need not wait for it to exit
            return None

    def _extractor(self, channels: int, device: torch.device) -> nn.Module:
        """The default style extractor, which stops its chunk once the fit failed
        (``_aborted``, set at ``on_exception``): a chunk takes up to a minute."""
        extractor = default_extractor(channels, device)

        def check(*_: Any) -> None:
            if self._aborted:
                raise _AbortedError

        extractor.register_forward_pre_hook(check)
        return extractor

    def _make_chunk(self, i: int, share: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Chunk ``i`` of the set: its images in pixel space, shape and texture labels
        (only the positions ``share`` of the chunk's positions, under DDP)."""
        pixels, labels, masks = self._cc_source  # type: ignore[misc]
        first = i * self._chunk()
        positions = torch.arange(first, first + self._chunk_sizes()[i])
        return LF.cue_conflict(
            pixels,
            labels,
            self._images_to_make,
            steps=self.style_steps,
            content_weight=self.content_weight,
            generator=make_generator(self.seed, "cpu"),
            masks=masks,
            extractor=self._extractor(pixels.shape[1], pixels.device),
            part=positions if share is None else positions[share],
            batch_size=self._chunk(),
            style_size=self.style_size,
            refine_steps=self.refine_steps,
        )

    def _add(self, result: tuple[int, tuple[Tensor, ...]] | None, write: bool = True) -> None:
        """A finished chunk (on the main thread): kept, written, and the set finished
        when it was the last."""
        if result is None or self._cc is not None:
            return
        i, (images, s, t) = result
        self._chunks[i] = (images, s, t)
        if write and self.cache_path is not None:
            self._keep(cue_cache.write_chunk, self.cache_path, i, images, s, t)
        if len(self._chunks) == len(self._chunk_sizes()):
            self._finish(write)

    def _keep(self, write: Any, *args: Any) -> bool:
        """A write to the cache, which only serves a resume: a failure (a full disk) is
        said once, and the bias is measured from the images in memory. Whether it was
        written."""
        try:
            write(*args)
            return True
        except OSError as err:
            self.warn_once(  # type: ignore[attr-defined]
                "cue cache write",
                f"could not write its cue-conflict cache ({err}); the bias is measured from "
                "the images in memory, and a resumed fit makes them again",
            )
            return False

    def _finish(self, write: bool = True) -> None:
        parts = [self._chunks[i] for i in range(len(self._chunk_sizes()))]
        images, s, t = (torch.cat([p[j] for p in parts]) for j in range(3))
        self._cc = (images, s, t)
        self._chunks = {}
        if write and self.cache_path is not None:
            if self._keep(cue_cache.write_cache, self.cache_path, images, s, t):
                cue_cache.remove_chunks(self.cache_path)  # a resume goes on from them else

    def _generate(self, ctx: RunContext) -> None:
        """Makes the missing chunks now (``background=False`` or DDP): each rank
        stylizes its share of every chunk."""
        if not self._looked and not self._chunks:  # setup did not look (a restore)
            self._locate(ctx.trainer)
            if self._cc is not None:
                return
        sizes = self._chunk_sizes()
        missing = [i for i in range(len(sizes)) if i not in self._chunks]
        show = shown_bar(ctx.trainer) is not None  # the trainer's bar is on here
        from tqdm.auto import tqdm

        with tqdm(
            total=sum(sizes[i] for i in missing),
            desc="cue-conflict images",
            leave=not sys.stderr.isatty(),  # a log file keeps its line break after the bar
            disable=not show,
        ) as bar:
            for i in missing:
                local = self._make_chunk(i, ctx.share(sizes[i]).cpu())
                chunk = tuple(ctx.gather(v.to(ctx.device), sizes[i]) for v in local)
                self._add((i, chunk), write=bool(ctx.trainer.is_global_zero))
                bar.update(sizes[i])

    def _say_unfinished(self) -> None:
        """At the fit end: a set left unfinished by the background worker is said, with
        where its finished chunks are and how to go on."""
        if self._cc is not None or not self._in_background or not self._enabled:
            return
        sizes = self._chunk_sizes()
        made = sum(sizes[i] for i in self._chunks)
        written = (
            0
            if self.cache_path is None
            else cue_cache.chunks_written(self.cache_path, self._chunks)
        )
        kept = (
            f"{'its' if written == len(self._chunks) else f'{written} of its'} finished "
            f"chunks are kept in {self.cache_path}.partial; a fit resumed from this run's "
            "checkpoint (ckpt_path=) goes on from them"
            if written
            else "nothing of it is kept"
        )
        self.warn_once(  # type: ignore[attr-defined]
            "unfinished cue conflict",
            f"the fit ended before the background worker made the cue-conflict set "
            f"({made} of {sum(sizes)} images), so no shape bias was measured; {kept}. "
            "background=False makes the set at the first epoch end instead",
        )
