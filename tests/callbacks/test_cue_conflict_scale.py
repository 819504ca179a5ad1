"""TextureShapeBias at real sizes: coarse-to-fine generation, bounded memory, chunks
made in the background and resumed; Geirhos' stimuli with the imagenet16 mapping."""

from __future__ import annotations

import glob
import math
import os
import threading
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

import lightning_viz as lv
import lightning_viz.functional as LF
from lightning_viz.callbacks import shape_bias
from lightning_viz.data.geirhos import (
    IMAGENET16_CATEGORIES,
    IMAGENET16_INDICES,
    CueConflictFolder,
    imagenet16_mapping,
)
from lightning_viz.functional.bias import pyramid_sizes
from lightning_viz.functional.style import RandomFeatureExtractor, style_transfer
from lightning_viz.monitoring.store import load_summary
from tests.conftest import fit, lightning_info, read_events


# ------------------------------------------------------------- coarse to fine
def test_pyramid_halves_down_to_the_style_size():
    assert pyramid_sizes((224, 224), 64) == [(56, 56), (112, 112), (224, 224)]
    assert pyramid_sizes((32, 32), 64) == [(32, 32)]
    assert pyramid_sizes((65, 40), 64) == [(33, 20), (65, 40)]
    assert pyramid_sizes((224, 224), None) == [(224, 224)]


def test_stylize_is_style_transfer_coarse_then_refined_at_full_size():
    gen = torch.Generator().manual_seed(0)
    content, style = (
        torch.rand(2, 3, 32, 32, generator=gen),
        torch.rand(2, 3, 32, 32, generator=gen),
    )
    ext = RandomFeatureExtractor()
    out = LF.stylize(content, style, ext, steps=4, style_size=16, refine_steps=2)

    def down(x):
        return F.interpolate(x, size=(16, 16), mode="bilinear", antialias=True).clamp(0, 1)

    coarse = style_transfer(down(content), down(style), ext, steps=4)
    up = F.interpolate(coarse, size=(32, 32), mode="bilinear").clamp(0, 1)
    expected = style_transfer(content, style, ext, steps=2, init=up)
    torch.testing.assert_close(out, expected)
    # one level (images no larger than style_size): plain style transfer from the content
    same = LF.stylize(content, style, ext, steps=3, style_size=32, refine_steps=2)
    torch.testing.assert_close(same, style_transfer(content, style, ext, steps=3))


def test_style_transfer_rejects_an_init_of_another_shape():
    with pytest.raises(ValueError, match=r"`init` must be images of the content's shape"):
        style_transfer(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), init=torch.rand(1, 3, 4, 4))


# ------------------------------------------------------------- bounded memory
class _SavedBytes:
    """Bytes of the tensors autograd saves for backward, per forward of ``module``
    (each forward starts a new count; a storage saved twice counts once)."""

    def __init__(self, module: nn.Module) -> None:
        self.counts: list[dict[tuple[int, int], int]] = []
        module.register_forward_pre_hook(lambda *_: self.counts.append({}))

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        if self.counts:
            storage = t.untyped_storage()
            self.counts[-1][(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
        return t

    @property
    def peak(self) -> int:
        return max(sum(c.values()) for c in self.counts)


def test_a_224_px_chunk_holds_a_small_part_of_a_resnet50_training_step_of_16():
    from torchvision.models import resnet50

    CHUNK = shape_bias.generation_chunk(224, 224)  # noqa: N806
    assert CHUNK == 3 and shape_bias.generation_chunk(32, 32) == 160

    gen = torch.Generator().manual_seed(0)
    # resnet50 at 224 px: saved activations are linear in the batch, so 16 x one image
    net = resnet50(num_classes=1000)
    counter = _SavedBytes(net)
    with torch.autograd.graph.saved_tensors_hooks(counter.pack, lambda t: t):
        net(torch.rand(1, 3, 224, 224, generator=gen)).sum().backward()
    params = sum(p.numel() * p.element_size() for p in net.parameters())
    training_step = 16 * (counter.peak - params)
    del net
    # one chunk of the callback's generation at 224 px (every pyramid level is run)
    ext = RandomFeatureExtractor()
    counter = _SavedBytes(ext)
    images = torch.rand(CHUNK, 3, 224, 224, generator=gen)
    labels = torch.arange(CHUNK) % 4
    with torch.autograd.graph.saved_tensors_hooks(counter.pack, lambda t: t):
        LF.cue_conflict(
            images,
            labels,
            CHUNK,
            extractor=ext,
            steps=1,
            refine_steps=1,
            batch_size=CHUNK,
        )
    full_size_steps = [c for c in counter.counts if c]
    assert len(full_size_steps) == 3  # 56, 112 and 224 px, one step each
    print(f"chunk {counter.peak / 2**20:.0f} MiB, resnet50 step {training_step / 2**20:.0f} MiB")
    # it runs in the background beside training: at most an eighth of a step's activations
    assert counter.peak < training_step / 8
    # the old way (all 160 pairs at once at full size) held 53x a chunk
    assert 160 / CHUNK * counter.peak > training_step
    # the same pixel budget at other sizes
    assert shape_bias.generation_chunk(112, 112) == 13


# ------------------------------------------------- chunks, background, resume
def _positions_made(monkeypatch, fail_after: int | None = None):
    made: list[list[int]] = []
    threads: list[str] = []
    original = LF.cue_conflict

    def counting(*args, part=None, **kwargs):
        if fail_after is not None and len(made) >= fail_after:
            raise RuntimeError("killed")
        made.append(part.tolist())
        threads.append(threading.current_thread().name)
        return original(*args, part=part, **kwargs)

    monkeypatch.setattr(LF, "cue_conflict", counting)
    return made, threads


def _bias(**kwargs):
    args = {"num_images": 20, "num_samples": 10, "style_steps": 2, "on_error": "raise"}
    return lv.TextureShapeBias(**{**args, **kwargs})


def test_a_stopped_generation_resumes_from_its_finished_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(shape_bias, "GENERATION_PIXELS", 16 * 32 * 32)  # chunks of 16
    made, _ = _positions_made(monkeypatch, fail_after=1)
    cb = _bias(background=False, on_error="warn")
    with pytest.warns(UserWarning, match="killed"):
        fit(tmp_path, [cb], epochs=1)
    assert made == [list(range(16))]  # chunks of 16 pairs; the second one failed
    assert glob.glob(os.path.join(str(tmp_path), "**", "cue_conflict_*.pt"), recursive=True) == []
    chunks = glob.glob(os.path.join(str(tmp_path), "**", "*.partial", "*.pt"), recursive=True)
    assert len(chunks) == 1

    monkeypatch.undo()
    monkeypatch.setattr(shape_bias, "GENERATION_PIXELS", 16 * 32 * 32)
    made, _ = _positions_made(monkeypatch)
    cb = _bias(background=False)
    fit(tmp_path, [cb], epochs=1)
    assert made == [list(range(16, 20))]  # only the missing chunk
    files = glob.glob(os.path.join(str(tmp_path), "**", "cue_conflict_*.pt"), recursive=True)
    assert files == [cb.cache_path]
    assert not os.path.exists(f"{cb.cache_path}.partial")
    # the same images as one generation of the whole set
    monkeypatch.undo()
    pixels, labels, masks = cb._cc_source
    images, s, t = LF.cue_conflict(
        pixels,
        labels,
        20,
        steps=2,
        content_weight=0.5,
        generator=torch.Generator().manual_seed(cb.seed),
        masks=masks,
    )
    data = torch.load(cb.cache_path, weights_only=True)
    torch.testing.assert_close(data["images"], images, atol=1e-5, rtol=0)
    assert torch.equal(data["shape_labels"], s) and torch.equal(data["texture_labels"], t)


def test_background_generation_runs_on_the_worker_and_the_scalars_wait_for_it(
    tmp_path, monkeypatch
):
    import pytorch_lightning as pl

    from lightning_viz._runtime.coordinator import Coordinator

    monkeypatch.setattr(shape_bias, "GENERATION_PIXELS", 4 * 32 * 32)  # 3 chunks: "auto"
    made, threads = _positions_made(monkeypatch)
    cb = _bias(num_images=10)
    assert cb.background == "auto"
    completed: list[int] = []  # the global step when the set was complete
    trainers: list = []
    finish = cb._finish

    at_epoch_end = [False]

    def record_finish(*args, **kwargs):
        if at_epoch_end[0]:  # not the harvest at the end of fit
            completed.append(trainers[0].global_step)
        finish(*args, **kwargs)

    class Grab(pl.Callback):  # runs before `cb`: tells when its harvest is an epoch end's
        def setup(self, trainer, *_, **__):
            trainers.append(trainer)

        def on_train_epoch_end(self, *_):
            at_epoch_end[0] = True

        def on_validation_epoch_end(self, *_):  # where the runs happen with validation
            at_epoch_end[0] = True

        def on_train_batch_start(self, *_):
            at_epoch_end[0] = False

        def on_train_end(self, *_):
            at_epoch_end[0] = False

    cb._finish = record_finish
    trainer, _ = fit(tmp_path, [Grab(), cb], epochs=4)
    # generation ran on the background worker, whatever the machine's load allowed
    assert all(name.startswith("lightning-viz") for name in threads), threads
    steps = [s for s, _ in read_events(str(tmp_path))["scalars"].get("bias/shape_bias", [])]
    if completed:  # the scalars start at the epoch end where the set is complete
        assert steps == [s for s in (4, 8, 12, 16) if s >= completed[0]]
        assert Coordinator.of(trainer).background_seconds.get(id(cb), 0.0) > 0
    else:  # completed after training (or not at all): no scalars
        assert steps == []


def test_a_fit_that_ends_before_the_background_set_is_made_says_so(tmp_path, monkeypatch):
    """The fit ends after the worker made one chunk of three: no bias was measured,
    which the fit end says (it said nothing), with the chunks kept and how to go on."""
    monkeypatch.setattr(shape_bias, "GENERATION_PIXELS", 4 * 32 * 32)  # chunks of 4
    cb = _bias(num_images=10, background=True, on_error="warn")
    original = LF.cue_conflict

    def first_then_stop(*args, **kwargs):  # the fit ends while the worker is at chunk 1
        cb._stop = True
        return original(*args, **kwargs)

    monkeypatch.setattr(LF, "cue_conflict", first_then_stop)
    with pytest.warns(UserWarning) as caught:
        fit(tmp_path, [cb], epochs=1)
    said = [str(w.message) for w in caught if "cue-conflict set" in str(w.message)]
    assert said == [
        "TextureShapeBias: the fit ended before the background worker made the "
        "cue-conflict set (4 of 10 images), so no shape bias was measured; its finished "
        f"chunks are kept in {cb.cache_path}.partial; a fit resumed from this run's "
        "checkpoint (ckpt_path=) goes on from them. background=False makes the set at "
        "the first epoch end instead"
    ]
    assert len(glob.glob(f"{cb.cache_path}.partial/*.pt")) == 1
    assert "bias/shape_bias" not in read_events(str(tmp_path))["scalars"]
    monkeypatch.undo()  # a finished set: nothing said
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(tmp_path / "done", [_bias(num_images=10, background=False)], epochs=1)
    assert not [w for w in caught if "cue-conflict set" in str(w.message)]


def test_a_failed_fit_keeps_the_finished_chunks_and_stops_the_one_being_made(tmp_path, monkeypatch):
    """A crash (Ctrl-C, an exception) in the middle of an epoch: the chunks the worker
    had finished were dropped, and the chunk it was making ran to its end (the
    process waited for it at exit, ~30 s on 64-px images)."""
    import time

    import pytorch_lightning as pl

    monkeypatch.setattr(shape_bias, "GENERATION_PIXELS", 4 * 32 * 32)  # chunks of 4
    cb = _bias(num_images=10, background=True, on_error="warn")
    original, calls, making = LF.cue_conflict, [], threading.Event()

    def slow_second(*args, extractor=None, **kwargs):
        calls.append(kwargs["part"].tolist())
        if len(calls) == 2:  # runs for a minute unless the failure stops it
            making.set()
            end = time.monotonic() + 60
            while time.monotonic() < end:
                extractor(torch.zeros(1, 3, 8, 8))
                time.sleep(0.02)
        return original(*args, extractor=extractor, **kwargs)

    monkeypatch.setattr(LF, "cue_conflict", slow_second)

    class Crash(pl.Callback):
        def on_train_batch_end(self, trainer, *args):
            if not making.wait(60):  # chunk 0 done, chunk 1 being made
                raise AssertionError("the worker did not reach chunk 1")
            raise RuntimeError("crash mid-epoch")

    with pytest.raises(RuntimeError, match="crash mid-epoch"):
        fit(tmp_path, [cb, Crash()], epochs=1)
    failed = time.monotonic()
    for thread in threading.enumerate():
        if thread.name.startswith("lightning-viz"):
            thread.join(timeout=60)
    assert time.monotonic() - failed < 10  # stopped, not run to its end
    assert len(calls) == 2  # chunk 2 never started
    assert len(glob.glob(f"{cb.cache_path}.partial/*.pt")) == 1  # chunk 0 is kept


def test_a_failed_fit_raises_its_own_error_not_a_finished_jobs(tmp_path):
    """A background job of an on_error="raise" callback that had failed was harvested
    at the failed fit's on_exception and raised there: the user's error was replaced,
    and the later callbacks' on_exception and Lightning's teardown were skipped. Then
    the job's error dropped the finished jobs after it."""
    import time

    import pytorch_lightning as pl

    from lightning_viz._runtime.coordinator import Coordinator

    viz = lv.FilterLogger(on_error="raise")
    later: list[str] = []
    kept: list[int] = []

    def full_disk():
        raise OSError(28, "No space left on device")

    class Crash(pl.Callback):
        def on_train_batch_end(self, trainer, *args):
            coordinator = Coordinator.of(trainer)
            coordinator.defer(viz, "filters/figure", full_disk)
            coordinator.defer(viz, "filters/figure", int, then=kept.append)  # after it
            while not coordinator._jobs[-1].future.done():
                time.sleep(0.01)
            raise RuntimeError("the user's error")

    class Later(pl.Callback):
        def on_exception(self, trainer, pl_module, exception):
            later.append(type(exception).__name__)

    with pytest.raises(RuntimeError, match="the user's error"):
        fit(tmp_path, [viz, Crash(), Later()], epochs=1)
    assert later == ["RuntimeError"]
    assert kept == [0]  # the finished job after the failed one is still written


def test_the_style_extractor_is_made_on_the_images_device(monkeypatch):
    """The stoppable extractor was made on the CPU: on a GPU every chunk failed with
    conv2d's device mismatch ('meta' stands in for the GPU here)."""
    cb = lv.TextureShapeBias(num_images=4)
    labels = torch.tensor([0, 1, 2, 3] * 2, device="meta")
    cb._cc_source, cb._images_to_make = (torch.rand(8, 3, 32, 32).to("meta"), labels, None), 4
    seen = []

    def spy(images, *args, extractor=None, **kwargs):
        seen.append((images.device, next(extractor.parameters()).device))
        return images[:1], labels[:1], labels[:1]

    monkeypatch.setattr(LF, "cue_conflict", spy)
    cb._make_chunk(0, None)
    assert seen == [(torch.device("meta"), torch.device("meta"))]


def test_a_cache_that_cannot_be_written_leaves_the_bias_measured(tmp_path, monkeypatch):
    """A full disk: the cache only serves a resume, and its failed write turned the
    callback off for the run."""
    from lightning_viz._runtime import cue_cache

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cue_cache, "write_chunk", full)
    monkeypatch.setattr(cue_cache, "write_cache", full)
    cb = _bias(num_images=10, background=False, on_error="warn")
    with pytest.warns(UserWarning) as caught:
        fit(tmp_path, [cb], epochs=2)
    said = [str(w.message) for w in caught if "cue-conflict cache" in str(w.message)]
    assert len(said) == 1 and "No space left on device" in said[0], said
    assert cb._enabled
    steps = [s for s, _ in read_events(str(tmp_path))["scalars"].get("bias/shape_bias", [])]
    assert len(steps) == 2


def test_a_full_disk_at_the_whole_set_keeps_the_chunk_files(tmp_path, monkeypatch):
    """The chunk files fit, the whole-set file does not: the chunk files were deleted
    all the same, so a resume remade every chunk."""
    from lightning_viz._runtime import cue_cache

    original = cue_cache.write_cache

    def full_for_the_whole_set(path, *args):
        if ".partial" not in path:
            raise OSError(28, "No space left on device")
        return original(path, *args)

    monkeypatch.setattr(cue_cache, "write_cache", full_for_the_whole_set)
    monkeypatch.setattr(shape_bias, "GENERATION_PIXELS", 4 * 32 * 32)  # 3 chunks
    cb = _bias(num_images=10, background=False, on_error="warn")
    with pytest.warns(UserWarning, match="No space left on device"):
        fit(tmp_path, [cb], epochs=1)
    assert not os.path.exists(cb.cache_path)
    assert len(glob.glob(f"{cb.cache_path}.partial/*.pt")) == 3  # a resume goes on from them


def test_the_fit_end_counts_the_chunks_on_disk(tmp_path, monkeypatch):
    """Chunk writes that failed (said once) were announced at the fit end as "its
    finished chunks are kept in ...partial" for a resume."""
    from lightning_viz._runtime import cue_cache

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cue_cache, "write_chunk", full)
    monkeypatch.setattr(shape_bias, "GENERATION_PIXELS", 4 * 32 * 32)  # 3 chunks
    cb = _bias(num_images=10, background=True, on_error="warn")
    original = LF.cue_conflict

    def first_then_the_fit_ends(*args, **kwargs):
        cb._stop = True  # as at the fit end: the chunks not started stay
        return original(*args, **kwargs)

    monkeypatch.setattr(LF, "cue_conflict", first_then_the_fit_ends)
    with pytest.warns(UserWarning) as caught:
        fit(tmp_path, [cb], epochs=1)
    said = [str(w.message) for w in caught if "before the background worker" in str(w.message)]
    assert len(said) == 1 and "nothing of it is kept" in said[0], said
    assert glob.glob(f"{cb.cache_path}.partial/*.pt") == []


def test_a_fit_that_trains_no_epoch_does_not_wait_for_the_whole_set(tmp_path, monkeypatch):
    """Resumed at max_epochs, or limit_train_batches=0: the fit end waited until the
    worker had made every chunk (at 224 px, minutes each), because the chunks were
    stopped at on_train_end, which such a fit never reaches."""
    import time

    monkeypatch.setattr(shape_bias, "GENERATION_PIXELS", 4 * 32 * 32)  # 5 chunks
    made, threads = _positions_made(monkeypatch)
    original = LF.cue_conflict

    def slow(*args, **kwargs):
        time.sleep(1.0)
        return original(*args, **kwargs)

    monkeypatch.setattr(LF, "cue_conflict", slow)
    cb = _bias(num_images=20, background=True, on_error="warn")
    with pytest.warns(UserWarning, match="before the background worker"):
        fit(tmp_path, [cb], epochs=1, limit_train_batches=0)
    assert len(made) == 1 and threads == ["lightning-viz_0"]  # the one running at the end


def test_a_job_failing_in_the_fit_end_wait_leaves_the_finished_jobs_after_it():
    """on_error="raise": a job that failed while the fit's end waited cancelled the
    jobs after it, finished ones too, so the fit's on_exception had none to write."""
    import time

    from lightning_viz._runtime.coordinator import Coordinator

    class Strict:  # a callback with on_error="raise"
        state_key = "Strict"

        def deferred_failed(self, err):
            raise err

    def fails():
        raise RuntimeError("job A failed")

    written: list[str] = []
    coordinator = Coordinator()
    coordinator.defer(Strict(), "a/figure", fails)
    coordinator.defer(Strict(), "b/figure", str, "B", then=written.append)
    while not coordinator._jobs[-1].future.done():
        time.sleep(0.01)
    with pytest.raises(RuntimeError, match="job A failed"):
        coordinator.shutdown(wait=True)  # on_fit_end
    coordinator.shutdown(wait=False)  # on_exception of the failed fit
    assert written == ["B"]


def test_ctrl_c_while_waiting_for_background_work_does_not_join_the_worker():
    """Ctrl-C while a fit's end waited for a background job: the worker was joined all
    the same, so the process waited for the job to run to its end (a cue-conflict
    chunk: up to a minute) and only the fit's on_exception could stop it, later."""
    import signal
    import time

    from lightning_viz._runtime.coordinator import Coordinator

    coordinator, release = Coordinator(), threading.Event()
    coordinator.defer(lv.FilterLogger(), "filters/figure", release.wait, 30)

    def ctrl_c(*args):
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGALRM, ctrl_c)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    start = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            coordinator.shutdown(wait=True)
        waited = time.monotonic() - start
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)
        release.set()
    assert waited < 10
    assert coordinator._executor is None and coordinator._jobs == []


def test_auto_makes_a_one_chunk_set_at_the_first_run(tmp_path, monkeypatch):
    """Small images (one chunk): the first run makes the set, so the scalars start at
    the first epoch of even a short fit."""
    made, threads = _positions_made(monkeypatch)
    fit(tmp_path, [_bias(num_images=10)], epochs=2)
    assert made == [list(range(10))]
    assert threads == ["MainThread"]
    steps = [s for s, _ in read_events(str(tmp_path))["scalars"]["bias/shape_bias"]]
    assert steps == [4, 8]


def test_a_monitored_bias_makes_its_images_at_the_first_run(tmp_path, monkeypatch):
    """An EarlyStopping on bias/shape_bias: "auto" made a several-chunk set in the
    background, the bias was missing at the first check and Lightning stopped the fit
    after an epoch. Monitored, it is made at the first run (background=True too)."""
    from pytorch_lightning.callbacks import EarlyStopping

    monkeypatch.setattr(shape_bias, "GENERATION_PIXELS", 4 * 32 * 32)  # 3 chunks: "auto"
    made, threads = _positions_made(monkeypatch)
    stop = EarlyStopping(monitor="bias/shape_bias", mode="max", patience=5)
    fit(tmp_path / "auto", [_bias(num_images=10), stop], epochs=2)
    assert threads == ["MainThread"] * 3 and sorted(sum(made, [])) == list(range(10))
    steps = [s for s, _ in read_events(str(tmp_path / "auto"))["scalars"]["bias/shape_bias"]]
    assert steps == [4, 8]
    made, threads = _positions_made(monkeypatch)  # background=True: the same, said once
    with lightning_info() as said:
        fit(tmp_path / "on", [_bias(num_images=10, background=True), stop], epochs=1)
    assert threads == ["MainThread"] * 3 and any("not in the background" in m for m in said)


def test_background_takes_a_bool_or_auto():
    with pytest.raises(TypeError, match="background.*'yes'"):
        lv.TextureShapeBias(background="yes")


# ------------------------------------------------- Geirhos' stimuli, imagenet16
def test_imagenet16_mapping_is_model_vs_humans():
    mapping = imagenet16_mapping()
    assert len(mapping) == 1000 and sum(v >= 0 for v in mapping) == 207
    assert IMAGENET16_CATEGORIES == tuple(sorted(IMAGENET16_CATEGORIES))
    assert IMAGENET16_INDICES["knife"] == (499,) and IMAGENET16_INDICES["oven"] == (766,)
    assert IMAGENET16_INDICES["truck"] == (555, 569, 656, 675, 717, 734, 864, 867)
    assert len(IMAGENET16_INDICES["dog"]) == 109 and len(IMAGENET16_INDICES["bird"]) == 49
    assert mapping[404] == IMAGENET16_CATEGORIES.index("airplane")
    assert mapping[203] == IMAGENET16_CATEGORIES.index("dog") and mapping[204] == -1


# name, red value (the model's key), logits set on ImageNet classes
_FILES = {
    "airplane/airplane1-bear2.png": 10,
    "airplane/airplane2-cat1.png": 20,
    "airplane/airplane3-airplane1.png": 30,  # shape == texture: left out
    "bear/bear1-cat3.png": 40,
    "cat/cat1-airplane2.png": 50,
}


def _write_folder(root):
    from PIL import Image

    for name, red in _FILES.items():
        os.makedirs(os.path.join(root, os.path.dirname(name)), exist_ok=True)
        array = np.zeros((24, 24, 3), dtype=np.uint8)
        array[..., 0] = red
        Image.fromarray(array).save(os.path.join(root, name))


class _TableModel(nn.Module):
    """Logits looked up by the image's red value (0..255): a model we control."""

    def __init__(self) -> None:
        super().__init__()
        self.table = torch.zeros(256, 1000)
        self.bias = nn.Parameter(torch.zeros(1000))  # something to train; stays ~0

    def forward(self, x):
        key = (x[:, 0].mean(dim=(1, 2)) * 255).round().long().clamp(0, 255)
        return self.table[key] + 0 * self.bias


def test_geirhos_folder_with_imagenet16_decides_by_the_mean_probability(tmp_path):
    import pytorch_lightning as pl

    root = tmp_path / "cue-conflict"
    _write_folder(str(root))
    folder = CueConflictFolder(root)
    assert folder.excluded == 1 and len(folder) == 4
    airplane, bear, cat = (IMAGENET16_CATEGORIES.index(n) for n in ("airplane", "bear", "cat"))
    assert [(s, t) for _, s, t in folder.files] == [
        (airplane, bear),
        (airplane, cat),
        (bear, cat),
        (cat, airplane),
    ]

    net = _TableModel()
    # airplane1-bear2: airplane (1 class) 5.0; one bear class 5.5, three at -10. The max
    # logit says bear, the mean probability says airplane (e^5 > (e^5.5 + 3e^-10) / 4).
    net.table[10, 404] = 5.0
    net.table[10, [294, 295, 296, 297]] = torch.tensor([5.5, -10.0, -10.0, -10.0])
    # airplane2-cat1: cat classes all 4.0 -> texture decision
    net.table[20, list(IMAGENET16_INDICES["cat"])] = 4.0
    # the left-out image would be a shape decision
    net.table[30, 404] = 9.0
    # bear1-cat3: a dog class far ahead -> neither shape nor texture
    net.table[40, 152] = 12.0
    # cat1-airplane2: cats 3.0, airplane 3.0 + log(1.5): mean probabilities 1 : 1.5 -> texture
    net.table[50, list(IMAGENET16_INDICES["cat"])] = 3.0
    net.table[50, 404] = 3.0 + math.log(1.5)

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, _):
            x, y = batch
            return F.cross_entropy(self(x), y)

        def validation_step(self, batch, _):
            pass

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    x = torch.full((8, 3, 24, 24), 10 / 255)
    y = torch.tensor([404, 294, 281, 404, 294, 281, 5, 404])  # ImageNet classes
    data = pl.LightningDataModule.from_datasets(
        train_dataset=TensorDataset(x, y), val_dataset=TensorDataset(x, y), batch_size=4
    )
    cb = lv.TextureShapeBias(
        cue_conflict=str(root), output_mapping="imagenet16", probe=(x, y), on_error="raise"
    )
    trainer, _ = fit(tmp_path / "run", [cb], epochs=1, model=Module(), datamodule=data)
    ev = read_events(str(tmp_path / "run"))
    # decisions by hand: shape, texture, neither, texture -> bias 1 / 3
    assert ev["scalars"]["bias/shape_bias"][-1][1] == pytest.approx(1 / 3)
    assert ev["scalars"]["bias/shape_acc"][-1][1] == pytest.approx(1 / 4)
    assert ev["scalars"]["bias/texture_acc"][-1][1] == pytest.approx(2 / 4)
    record = load_summary(trainer.logger.log_dir)["bias/shape_bias"].latest()
    assert record.outcomes == "10-0"  # four images: the left-out one is not there
    assert cb.class_name(airplane) == "airplane"
    # the probe's ImageNet labels map too: 404 -> airplane, 294 -> bear, 281 -> cat, 5 none
    assert cb._controls[2].tolist() == [airplane, bear, cat, airplane, bear, cat, airplane]
    # no probe image in the 16 categories: the controls are left out, not the bias (the
    # empty control set failed the first run, which turned the callback off)
    outside = torch.full((8,), 5)
    cb = lv.TextureShapeBias(
        cue_conflict=str(root), output_mapping="imagenet16", probe=(x, outside), on_error="raise"
    )
    fit(tmp_path / "outside", [cb], epochs=1, model=Module(), datamodule=data)
    scalars = read_events(str(tmp_path / "outside"))["scalars"]
    assert scalars["bias/shape_bias"][-1][1] == pytest.approx(1 / 3)
    assert not {"bias/shape_only_acc", "bias/texture_only_acc"} & set(scalars)
    # nor named in its charts: a monitor of one is said before training, not after a
    # whole epoch by Lightning's "not available"
    assert not {"bias/shape_only_acc", "bias/texture_only_acc"} & cb.known_tags()
    assert "bias/shape_acc" in cb.known_tags()


@pytest.mark.parametrize(
    ("files", "match"),
    [
        ({"airplane/airplane1.png": 1}, r"<shape><i>-<texture><j>\.png"),
        ({"airplane/airplane1-zebra1.png": 1}, r"one of \['airplane'.*got 'zebra'"),
        ({"bear/airplane1-bear1.png": 1}, r"in the folder of its shape 'airplane'"),
    ],
)
def test_a_folder_of_another_layout_is_a_clear_error(tmp_path, files, match):
    from PIL import Image

    for name in files:
        os.makedirs(tmp_path / os.path.dirname(name), exist_ok=True)
        Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(tmp_path / name)
    with pytest.raises(ValueError, match=match):
        lv.TextureShapeBias(cue_conflict=tmp_path)


def test_a_folder_is_given_from_a_lightning_cli_config(tmp_path):
    """jsonargparse (LightningCLI) reads the annotation: a folder path must be allowed."""
    from jsonargparse import ArgumentParser
    from PIL import Image

    os.makedirs(tmp_path / "airplane")
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(
        tmp_path / "airplane" / "airplane1-bear1.png"
    )
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(lv.TextureShapeBias, "cb")
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
    config = parser.parse_string(f"cb: {{cue_conflict: '{tmp_path}', output_mapping: imagenet16}}")
    cb = instantiate(config)["cb"]
    assert len(cb.cue_conflict) == 1 and cb.mean_probability  # the imagenet16 mapping
