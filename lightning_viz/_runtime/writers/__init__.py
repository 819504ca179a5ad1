"""Where the lightning-viz callbacks write: one backend per logger of the trainer.

At ``setup`` the coordinator builds :class:`Writers` from ``trainer.loggers`` with
:func:`open_writers`: a backend for every ``TensorBoardLogger``, ``WandbLogger``,
``MLFlowLogger`` and ``CSVLogger`` (either Lightning flavour), or plain files in
``save_dir`` when the trainer has no logger. Every artifact goes to every backend;
an image or figure is made into pixels once and written to each.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import numpy as np
from torch import Tensor

from lightning_viz._runtime.compat import rank_zero_warn
from lightning_viz._runtime.writers._base import Backend, Embedding
from lightning_viz._runtime.writers._images import figure_pixels, image_pixels
from lightning_viz._runtime.writers._names import mlflow_name, tag_of

__all__ = [
    "SUPPORTED",
    "Backend",
    "Embedding",
    "Writers",
    "figure_pixels",
    "image_pixels",
    "local_dir",
    "local_folder",
    "logger_kind",
    "mlflow_name",
    "open_writers",
    "remote_log_dirs",
    "tag_of",
    "written_by",
]

# the Lightning logger classes with a backend (matched by name along the class's MRO,
# in either flavour, so wandb and mlflow are never imported to check)
SUPPORTED = {
    "TensorBoardLogger": "tensorboard",
    "WandbLogger": "wandb",
    "MLFlowLogger": "mlflow",
    "CSVLogger": "csv",
}
_FLAVOURS = ("pytorch_lightning.", "lightning.pytorch.", "lightning_fabric.", "lightning.fabric.")


def logger_kind(logger: Any) -> str | None:
    """``"tensorboard"``, ``"wandb"``, ``"mlflow"``, ``"csv"``, or ``None`` (no backend)."""
    for cls in type(logger).__mro__:
        if cls.__name__ in SUPPORTED and cls.__module__.startswith(_FLAVOURS):
            return SUPPORTED[cls.__name__]
    return None


_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def _root(trainer: Any) -> str:
    """The local folder of the trainer's own files (``default_root_dir`` or the cwd)."""
    root = str(getattr(trainer, "default_root_dir", None) or os.getcwd())
    return os.getcwd() if _URL.match(root) else root


def local_folder(path: Any, root: str) -> str:
    """``path`` as a local folder: itself, a ``file://`` URL's path, or for another URL
    (``s3://``, ``gs://``, ``memory://``: the os cannot write there) a local stand-in,
    ``<root>/lightning_viz_runs/<scheme>-<the URL's path>``."""
    text = str(path)
    found = _URL.match(text)
    if found is None:
        return text
    scheme, rest = found.group(1).lower(), text[found.end() :]
    if scheme == "file":
        return url2pathname(urlsplit(text).path)
    parts = [p for p in rest.split("/") if p not in ("", ".", "..")]
    return os.path.join(
        root, "lightning_viz_runs", f"{scheme}-{parts[0] if parts else ''}", *parts[1:]
    )


def remote_log_dirs(trainer: Any) -> list[tuple[str, str]]:
    """``(URL, local stand-in)`` of each TensorBoard or CSV logger whose ``log_dir`` is a
    URL the os cannot write (see :func:`local_folder`)."""
    out = []
    for logger in getattr(trainer, "loggers", []) or []:
        if logger_kind(logger) in ("tensorboard", "csv"):
            url = str(logger.log_dir)
            local = local_folder(url, _root(trainer))
            if _URL.match(url) and not url.lower().startswith("file://"):
                out.append((url, local))
    return out


def _backend(kind: str, logger: Any, root: str) -> Backend:
    if kind == "tensorboard":
        from lightning_viz._runtime.writers._tensorboard import TensorBoardBackend

        return TensorBoardBackend(logger, local_folder(logger.log_dir, root))
    if kind == "wandb":
        from lightning_viz._runtime.writers._wandb import WandbBackend

        return WandbBackend(logger)
    if kind == "mlflow":
        from lightning_viz._runtime.writers._mlflow import MLflowBackend

        local = os.path.join(root, "lightning_viz_runs", f"mlflow-{logger.run_id}")
        return MLflowBackend(logger, local)
    from lightning_viz._runtime.writers._files import FilesBackend

    return FilesBackend(logger, local_folder(logger.log_dir, root))


def local_dir(trainer: Any, save_dir: str | None) -> str | None:
    """The folder of the run's own files (``summary.json``, caches), on every rank:
    the first TensorBoard or CSV logger's ``log_dir``, else ``save_dir`` when no logger
    has a backend;
    ``None`` when only W&B or MLflow are known (rank 0 then uses its backend's)."""
    loggers = list(getattr(trainer, "loggers", []) or [])
    for logger in loggers:
        if logger_kind(logger) in ("tensorboard", "csv"):
            return local_folder(logger.log_dir, _root(trainer))
    if save_dir is None or any(logger_kind(lg) is not None for lg in loggers):
        return None
    return str(save_dir)


def open_writers(trainer: Any, save_dir: str | None = None) -> tuple[Writers | None, list[str]]:
    """The writers of ``trainer`` and the names of its loggers without a backend.

    Returns ``(None, unsupported)`` when nothing can be written (no logger with a
    backend, and no ``save_dir``; or ``fast_dev_run``). ``save_dir`` is used when no
    logger has a backend. On ranks other than global rank
    0 the writers have no backend (only rank 0 writes) but exist, so every rank runs.
    """
    loggers = list(getattr(trainer, "loggers", []) or [])
    kinds = [(logger_kind(lg), lg) for lg in loggers]
    unsupported = [type(lg).__name__ for kind, lg in kinds if kind is None]
    known = [(kind, lg) for kind, lg in kinds if kind is not None]
    if not known and (save_dir is None or getattr(trainer, "fast_dev_run", False)):
        return None, unsupported  # fast_dev_run: Lightning's dry run writes nothing
    backends: list[Backend] = []
    if trainer.is_global_zero:
        root = _root(trainer)
        backends = [_backend(kind, lg, root) for kind, lg in known]
        if not known:
            from lightning_viz._runtime.writers._files import FilesBackend

            backends = [FilesBackend(None, str(save_dir))]
    return Writers(backends), unsupported


# a local folder that cannot take the file now (full, read-only, a file in the way), not
# a server that cannot be reached (ConnectionError, a DNS failure: OSErrors too)
_DISK_ERRORS = {
    getattr(errno, name)
    for name in ("ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "EIO", "ENOTDIR", "EISDIR")
    + ("EEXIST", "ENOENT", "EFBIG")
    if hasattr(errno, name)
}


def _disk_error(err: BaseException) -> bool:
    """An ``OSError`` of the local file system (:data:`_DISK_ERRORS`)."""
    network = isinstance(err, ConnectionError | TimeoutError)
    return isinstance(err, OSError) and not network and err.errno in _DISK_ERRORS


# whether the writes under way are a callback's with on_error="raise" (None: shared ones)
_STRICT_WRITER: ContextVar[bool | None] = ContextVar("lightning_viz_strict_writer", default=None)


@contextlib.contextmanager
def written_by(strict: bool) -> Iterator[None]:
    """Marks the writes of the block as one callback's: a backend that fails them raises,
    for that callback's ``on_error``, only when ``strict`` (its ``on_error="raise"``),
    whatever the trainer's other callbacks ask (writes shared by every callback, outside
    such a block, raise when one of them asks)."""
    token = _STRICT_WRITER.set(strict)
    try:
        yield
    finally:
        _STRICT_WRITER.reset(token)


def _outage(err: BaseException) -> bool:
    """A failure of the place a backend writes to, not of what is written: an ``OSError``
    (a full disk, a server that refuses or times out; ``requests``' errors are ones) or
    an error of the tracking library (``MlflowException``, W&B's ``CommError``)."""
    package = type(err).__module__.partition(".")[0]
    return isinstance(err, OSError) or package in ("mlflow", "wandb", "requests", "urllib3")


class Writers:
    """Every backend of one trainer (none on ranks other than global rank 0).

    Scalars are buffered per step and written at :meth:`flush`. A backend that fails
    to write (a full disk, W&B or MLflow unreachable) is dropped with one warning naming
    it and the others go on. The last one is dropped so only for an outage
    (:func:`_outage`; the callbacks go on measuring: their scalars reach
    ``trainer.callback_metrics``), and a disk's error there (an ``OSError`` of a full
    disk, a read-only folder) is said once with the writes tried again. The failure is
    raised, for the writing callback's ``on_error``, when that callback has
    ``on_error="raise"`` (:func:`written_by`; for a write shared by every callback,
    ``strict()``: one of them has) or when the last backend fails otherwise (a bug).
    """

    def __init__(
        self, backends: Sequence[Backend], strict: Callable[[], bool] | None = None
    ) -> None:
        self.backends = list(backends)
        self._all = list(backends)  # those a new fit starts with (see reopen)
        self.strict = strict if strict is not None else (lambda: False)
        self._dropping = threading.Lock()
        self._said: set[str] = set()  # backends said to fail to write (the last one)
        self.dropped_dirs: list[str | None] = []  # the local folders of dropped backends
        self._scalars: dict[int, dict[str, float]] = {}

    def __bool__(self) -> bool:
        return bool(self.backends)

    def reopen(self) -> None:
        """A new ``fit`` of the trainer: the backends dropped in an earlier one are tried
        again (a failure is said again)."""
        with self._dropping:
            self.backends = list(self._all)
            self._said.clear()
            self.dropped_dirs.clear()

    @property
    def log_dir(self) -> str | None:
        """The first backend's local folder."""
        return next((b.log_dir for b in self.backends if b.log_dir is not None), None)

    @property
    def cache_dir(self) -> str | None:
        """The first backend's folder for caches kept between runs."""
        return next((b.cache_dir for b in self.backends if b.log_dir is not None), None)

    def each(self, fn: Callable[[Backend], Any], *, threadsafe: bool | None = None) -> None:
        """``fn(backend)`` for every backend (or those with this ``threadsafe``)."""
        for backend in list(self.backends):  # a snapshot: a failed one leaves the list
            if threadsafe is None or backend.threadsafe == threadsafe:
                try:
                    fn(backend)
                except Exception as err:
                    with self._dropping:  # the worker thread writes too
                        others = [b for b in self.backends if b is not backend]
                        strict = _STRICT_WRITER.get()
                        strict = self.strict() if strict is None else strict
                        if strict or not (others or _outage(err)):
                            raise  # for the writing callback's on_error (a bug: that one's)
                        if not others and _disk_error(err):  # full, read-only: tried again
                            self._unwritable(backend, err)
                            continue
                        dropped, self.backends = backend in self.backends, others
                        if dropped:
                            self.dropped_dirs.append(backend.log_dir)
                    if dropped:  # said once, whichever callback's write found it
                        rank_zero_warn(
                            f"lightning-viz could not write to {backend.name} "
                            f"({type(err).__name__}: {err}) and writes nothing more there "
                            "in this fit; "
                            + (
                                f"it goes on writing to {', '.join(b.name for b in others)}"
                                if others
                                else "the callbacks go on measuring (their scalars reach "
                                "EarlyStopping and the alerts)"
                            )
                            + " (pass on_error='raise' to a callback to stop instead)"
                        )

    def _unwritable(self, backend: Backend, err: OSError) -> None:
        """The last backend could not write (said once): the callbacks go on measuring
        (their scalars reach the monitors) and later writes try again."""
        if backend.name not in self._said:
            self._said.add(backend.name)
            rank_zero_warn(
                f"lightning-viz could not write to {backend.name} ({type(err).__name__}: "
                f"{err}); the callbacks go on measuring, and later writes try again (said "
                "once; pass on_error='raise' to a callback to stop instead)"
            )

    def scalar(self, tag: str, value: float, step: int) -> None:
        """Buffers a finite scalar (written at :meth:`flush`)."""
        if self.backends:
            self._scalars.setdefault(int(step), {})[tag] = float(value)

    def image(self, tag: str, image: Tensor | np.ndarray, step: int, caption: str = "") -> None:
        """A ``(C, H, W)`` image (uint8, or float in ``[0, 1]``), made into pixels once."""
        if self.backends:
            pixels = image_pixels(image)
            self.each(lambda b: b.image(tag, pixels, step, caption or tag))

    def figure_pixels(self, tag: str, pixels: np.ndarray, step: int, caption: str = "") -> None:
        """A drawn figure (see :func:`figure_pixels`)."""
        self.each(lambda b: b.figure(tag, pixels, step, caption or tag))

    def config(self, options: Mapping[str, Mapping[str, str]], markdown: str, step: int) -> None:
        self.each(lambda b: b.config(options, markdown, step))

    def layout(self, layout: Mapping[str, Any]) -> None:
        self.each(lambda b: b.layout(layout))

    def epoch_summary(self, markdown: str, rows: Sequence[Any], step: int) -> None:
        self.each(lambda b: b.epoch_summary(markdown, rows, step))

    def summary_file(self, path: str) -> None:
        self.each(lambda b: b.summary_file(path))

    def alert(self, title: str, text: str) -> None:
        self.each(lambda b: b.alert(title, text))

    def flush(self) -> None:
        """Writes the buffered scalars, in step order, then flushes every backend."""
        pending, self._scalars = self._scalars, {}
        for step in sorted(pending):
            self.each(lambda b, s=step: b.scalars(pending[s], s))
        self.each(lambda b: b.flush())
