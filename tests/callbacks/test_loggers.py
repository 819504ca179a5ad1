"""Every logger gets every artifact: W&B (offline), MLflow (a real tracking server), CSV
and files, each read back and checked against the TensorBoard run of the same seed."""

from __future__ import annotations

import csv
import glob
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.tensorboard import SummaryWriter

import lightning_viz as lv
from lightning_viz._runtime.writers import mlflow_name, tag_of
from lightning_viz._runtime.writers._images import image_pixels
from tests.conftest import USER_SCALARS, all_callbacks, decode_png, fit, read_events

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

MLFLOW = os.path.join(os.path.dirname(sys.executable), "mlflow")


# ----------------------------------------------------------------------- names
def test_mlflow_names_are_valid_and_reversible():
    import re

    tags = [
        "robustness/pgd_acc@8/255",
        "robustness/worst_acc@0.5",
        "saliency/neuron/model.block2.conv/1",
        "explain/gradcam++/deletion_auc",
        "a:b (c)",
    ]
    names = [mlflow_name(t) for t in tags]
    assert names[0] == "robustness/pgd_acc_at_8/255"
    assert names[2] == tags[2]  # nothing to spell
    for tag, name in zip(tags, names, strict=True):
        assert re.fullmatch(r"[A-Za-z0-9_\-./ ]+", name), name  # MLflow's and Lightning's set
        assert tag_of(name) == tag


# ----------------------------------------------------------------- the runs
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_mlflow(folder: str) -> tuple[subprocess.Popen, str]:
    """``mlflow server`` on 127.0.0.1 with a SQLite store and a local artifact root
    (MLflow's background job runner off: it is not used, and costs seconds of CPU)."""
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    args = [
        MLFLOW,
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{folder}/mlflow.db",
        "--artifacts-destination",
        f"{folder}/artifacts",
    ]
    log = open(os.path.join(folder, "server.log"), "wb")  # noqa: SIM115 - closed with the server
    proc = subprocess.Popen(args, stdout=log, stderr=log, env=env, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


def _wait_healthy(proc: subprocess.Popen, uri: str, timeout: float = 180.0) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                if r.status == 200:
                    return time.perf_counter() - start
        except OSError:
            time.sleep(0.25)
    raise TimeoutError(f"mlflow server at {uri} not healthy after {timeout} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The TensorBoard reference run, then the same seeded run with MLflow (a real
    server, started before the reference so its start-up overlaps it), W&B (offline)
    and CSV loggers together. The server is stopped at teardown."""
    pytest.importorskip("mlflow")  # the `oracles` extra (not in the oldest-versions venv)
    pytest.importorskip("wandb")
    from pytorch_lightning.loggers import CSVLogger, MLFlowLogger, WandbLogger

    root = tmp_path_factory.mktemp("loggers")
    proc, uri = _start_mlflow(str(root))
    try:
        started = time.perf_counter()
        fit(root / "tb", all_callbacks(on_error="raise"))
        waited = _wait_healthy(proc, uri)
        print(
            f"mlflow server: {time.perf_counter() - started:.1f} s to healthy, "
            f"{waited:.1f} s waited after the reference run"
        )
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("WANDB_MODE", "offline")
            for name in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
                mp.setenv(name, str(root / "wandb"))
            mp.setenv("WANDB_SILENT", "true")
            mp.setenv("WANDB_DISABLE_CODE", "true")
            mp.setenv("WANDB_DISABLE_GIT", "true")
            os.makedirs(root / "wandb", exist_ok=True)
            mlflow = MLFlowLogger(experiment_name="lightning-viz", tracking_uri=uri)
            wandb = WandbLogger(project="lightning-viz", save_dir=str(root / "wandb"))
            csvlog = CSVLogger(str(root / "csv"), name="run", version=0)
            fit(root / "others", all_callbacks(on_error="raise"), logger=[mlflow, wandb, csvlog])
            wandb_dir = os.path.dirname(wandb.experiment.dir)
            wandb.experiment.finish()
        yield {
            "tb": read_events(str(root / "tb")),
            "tb_dir": str(root / "tb" / "run" / "version_0"),
            "uri": uri,
            "run_id": mlflow.run_id,
            "wandb": wandb_dir,
            "csv": csvlog.log_dir,
            "root": root,
        }
    finally:
        _stop(proc)


def _reference_scalars(events: dict) -> dict[str, dict[int, float]]:
    return {
        tag: dict(values)
        for tag, values in events["scalars"].items()
        if not tag.startswith(USER_SCALARS)
    }


def _assert_same_scalars(reference: dict, found: dict[str, dict[int, float]]) -> None:
    """Every lightning-viz scalar of the reference at the same steps, with the same value
    (TensorBoard keeps float32); ``viz/`` timings at the same steps (their values are
    times, different in every run)."""
    assert reference, "the reference run wrote no scalar"
    for tag, by_step in reference.items():
        assert tag in found, f"{tag} missing (found {sorted(found)})"
        assert sorted(found[tag]) == sorted(by_step), tag
        if tag.startswith("viz/"):
            continue
        for step, value in by_step.items():
            got = float(np.float32(found[tag][step]))
            assert got == pytest.approx(value, rel=1e-6, abs=1e-7, nan_ok=True), (tag, step)


def _reference_images(events: dict) -> dict[tuple[str, int], torch.Tensor]:
    return {
        (tag, step): decode_png(png)
        for tag, items in events["images"].items()
        for step, _w, _h, png in items
    }


def _read_tsv(path: str) -> list[list[str]]:
    with open(path) as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def _reference_embedding(tb_dir: str, step: int) -> tuple[list[list[str]], list[list[str]]]:
    """(metadata rows without the header, feature rows) of the TensorBoard projector."""
    folder = os.path.join(tb_dir, f"{step:05d}", "embedding%2fmodel.fc")
    meta = _read_tsv(os.path.join(folder, "metadata.tsv"))
    return meta[1:], _read_tsv(os.path.join(folder, "tensors.tsv"))


# ------------------------------------------------------------------------ MLflow
def test_mlflow_holds_every_scalar_image_and_text_of_the_tensorboard_run(runs, tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=runs["uri"])
    run_id, events = runs["run_id"], runs["tb"]
    reference = _reference_scalars(events)
    metrics = {
        tag_of(key): {m.step: m.value for m in client.get_metric_history(run_id, key)}
        for key in client.get_run(run_id).data.metrics
    }
    assert "robustness/pgd_acc_at_8/255" in client.get_run(run_id).data.metrics
    _assert_same_scalars(reference, metrics)

    # images (log_image with key and step) and figures (PNG artifacts): the same pixels
    local = client.download_artifacts(run_id, "", str(tmp_path))
    found = {}
    for path in glob.glob(os.path.join(local, "images", "*.png")):
        key, _, step, *_ = os.path.basename(path)[: -len(".png")].split("+")
        found[(tag_of(key.replace("~", "/")), int(step))] = path
    figures = os.path.join(local, "lightning_viz", "figures")
    for path in glob.glob(os.path.join(figures, "**", "*.png"), recursive=True):
        tag = os.path.relpath(os.path.dirname(path), figures)
        found[(tag, int(os.path.basename(path)[:-4]))] = path
    images = _reference_images(events)
    assert images and set(found) == set(images)
    for key, pixels in images.items():
        with open(found[key], "rb") as f:
            assert torch.equal(decode_png(f.read()), pixels), key

    # texts: the epoch summaries and the configuration, as TensorBoard shows them
    texts = {
        step: values[0].decode()
        for step, values in events["tensors"]["lightning_viz/summary/text_summary"]
    }
    assert texts
    for step, text in texts.items():
        with open(os.path.join(local, "lightning_viz", "summary", f"{step}.md")) as f:
            assert f.read() == text
    ((_, config),) = events["tensors"]["lightning_viz/config/text_summary"]
    with open(os.path.join(local, "lightning_viz", "config.md")) as f:
        assert f.read() == config[0].decode()
    params = client.get_run(run_id).data.params
    assert params["lightning_viz/AdversarialProbe/steps"] == "3"

    # embeddings: a TSV per epoch with the projector's metadata and features
    for step in (4, 8):
        meta, feats = _reference_embedding(runs["tb_dir"], step)
        rows = _read_tsv(
            os.path.join(
                local, "lightning_viz", "embeddings", "embedding", "model.fc", f"{step}.tsv"
            )
        )
        assert rows[0][:3] == ["label", "predicted", "correct"]
        assert [r[:3] for r in rows[1:]] == meta
        assert [r[3:] for r in rows[1:]] == feats

    # summary.json: the run record, as in the TensorBoard log dir
    with open(os.path.join(local, "lightning_viz", "summary.json")) as f:
        stored = json.load(f)
    with open(os.path.join(runs["tb_dir"], "lightning_viz", "summary.json")) as f:
        assert stored["metrics"] == json.load(f)["metrics"]


# ---------------------------------------------------------------- W&B (offline)
def _wandb_records(path: str) -> list[bytes]:
    """The records of a ``.wandb`` file (W&B's LevelDB-style log: a 7-byte file header,
    32 KiB blocks, each record a 7-byte header ``crc, length, type`` and its bytes;
    types 1 full, 2 first, 3 middle, 4 last)."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b":W&B"
    pos, out, buf = 7, [], b""
    while pos + 7 <= len(data):
        space = 32768 - pos % 32768
        if space < 7:  # the block's tail is padding
            pos += space
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 1:
            out.append(chunk)
        elif kind == 2:
            buf = chunk
        elif kind == 3:
            buf += chunk
        elif kind == 4:
            out.append(buf + chunk)
        else:
            break
    return out


def _wandb_run(run_dir: str) -> tuple[list[dict[tuple[str, ...], Any]], dict[str, Any], list]:
    """The history rows (``{key path: value}``), the config and the artifact records
    of an offline run."""
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = glob.glob(os.path.join(run_dir, "*.wandb"))
    rows, config, artifacts = [], {}, []
    for data in _wandb_records(path):
        record = pb.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            rows.append(
                {
                    (i.key,) if i.key else tuple(i.nested_key): json.loads(i.value_json)
                    for i in record.history.item
                }
            )
        elif kind == "config":
            config.update({u.key: json.loads(u.value_json) for u in record.config.update})
        elif kind == "artifact":
            artifacts.append(record.artifact)
    return rows, config, artifacts


def test_wandb_offline_run_holds_every_scalar_image_and_the_embedding_table(runs):
    rows, config, artifacts = _wandb_run(runs["wandb"])
    files = os.path.join(runs["wandb"], "files")
    scalars: dict[str, dict[int, float]] = {}
    media: dict[tuple[str, int], dict[str, Any]] = {}
    for row in rows:
        step = row.get(("trainer/global_step",))
        for key, value in row.items():
            if len(key) == 1 and not key[0].startswith(("_", "trainer/")):
                scalars.setdefault(key[0], {})[step] = value
            elif len(key) == 2:
                media.setdefault((key[0], step), {})[key[1]] = value
    events = runs["tb"]
    _assert_same_scalars(_reference_scalars(events), scalars)

    images = _reference_images(events)
    logged = {k: v for k, v in media.items() if v["_type"] == "image-file"}
    assert images and set(logged) == set(images)
    for (tag, step), pixels in images.items():
        item = logged[(tag, step)]
        assert item["caption"] == f"{tag} (epoch {step // 4 - 1}, step {step})"
        with open(os.path.join(files, item["path"]), "rb") as f:
            assert torch.equal(decode_png(f.read()), pixels), (tag, step)

    for step in (4, 8):  # each epoch's embedding as a table W&B's projector reads
        table = media[("embedding/model.fc", step)]
        assert table["_type"] == "table-file"
        with open(os.path.join(files, table["path"])) as f:
            data = json.load(f)
        assert data["columns"] == ["features", "label", "predicted", "correct", "thumbnail"]
        meta, feats = _reference_embedding(runs["tb_dir"], step)
        assert [r[1:4] for r in data["data"]] == meta
        assert [[f"{v:.3g}" for v in r[0]] for r in data["data"]] == feats
    # the tables W&B uploads (run artifacts) hold the thumbnails: one PNG per sample
    tables = [a for a in artifacts if a.type == "run_table" and "embeddingmodel.fc" in a.name]
    assert len(tables) == 2
    for artifact in tables:
        local = {c.path: c.local_path for c in artifact.manifest.contents}
        with open(local["embedding/model.fc.table.json"]) as f:
            data = json.load(f)
        thumbs = [row[4] for row in data["data"]]
        assert len(thumbs) == 16 and all(t["_type"] == "image-file" for t in thumbs)
        for thumb in thumbs:
            with open(local[thumb["path"]], "rb") as f:
                assert decode_png(f.read()).shape[:2] == (thumb["height"], thumb["width"])
    summary = media[("lightning_viz/summary", 8)]
    with open(os.path.join(files, summary["path"])) as f:
        table = json.load(f)
    assert table["columns"][:2] == ["metric", "value"]
    tb8 = _reference_scalars(events)
    assert {r[0]: r[1] for r in table["data"]} == pytest.approx(
        {r[0]: tb8[r[0]][8] for r in table["data"]}, rel=1e-6
    )
    assert config["lightning_viz"]["AdversarialProbe"]["steps"] == "3"
    assert os.path.exists(os.path.join(files, "lightning_viz", "summary.json"))


# ------------------------------------------------------------------ CSV and files
def _csv_scalars(log_dir: str) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    with open(os.path.join(log_dir, "metrics.csv")) as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if key != "step" and value not in ("", None):
                    out.setdefault(key, {})[int(row["step"])] = float(value)
    return out


def test_csv_logger_holds_every_scalar_and_every_image_as_png(runs):
    events, log_dir = runs["tb"], runs["csv"]
    _assert_same_scalars(_reference_scalars(events), _csv_scalars(log_dir))
    images = _reference_images(events)
    pngs = glob.glob(
        os.path.join(log_dir, "lightning_viz", "images", "**", "*.png"), recursive=True
    )
    assert len(pngs) == len(images)
    for (tag, step), pixels in images.items():
        with open(os.path.join(log_dir, "lightning_viz", "images", tag, f"{step}.png"), "rb") as f:
            assert torch.equal(decode_png(f.read()), pixels), (tag, step)
    meta, feats = _reference_embedding(runs["tb_dir"], 8)
    rows = _read_tsv(
        os.path.join(log_dir, "lightning_viz", "embeddings", "embedding", "model.fc", "8.tsv")
    )
    assert [r[:3] for r in rows[1:]] == meta and [r[3:] for r in rows[1:]] == feats
    assert os.path.exists(os.path.join(log_dir, "lightning_viz", "text", "summary", "8.md"))
    assert os.path.exists(os.path.join(log_dir, "lightning_viz", "summary.json"))


_NO_TENSORBOARD = """
import json, sys
from pytorch_lightning.loggers import CSVLogger
import lightning_viz as lv
from tests.conftest import fit
callbacks = [lv.FilterLogger(), lv.EmbeddingProjector(num_samples=16, projection="pca")]
fit(sys.argv[1], callbacks, epochs=1, logger=CSVLogger(sys.argv[1], name="run", version=0))
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "tensorboard"
                        or m.startswith("torch.utils.tensorboard"))))
"""


def test_csv_path_never_imports_tensorboard(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    out = subprocess.run(
        [sys.executable, "-c", _NO_TENSORBOARD, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
    folder = tmp_path / "run" / "version_0" / "lightning_viz"
    assert (folder / "images" / "filters" / "model.block1.conv" / "4.png").exists()
    assert (folder / "images" / "embedding" / "model.fc" / "pca" / "4.png").exists()
    assert (folder / "embeddings" / "embedding" / "model.fc" / "4.tsv").exists()


def test_no_logger_with_save_dir_writes_files(tmp_path):
    cb = lv.FilterLogger(on_error="raise", save_dir=str(tmp_path / "viz"))
    fit(tmp_path, [cb], epochs=1, logger=False)
    scalars = _csv_scalars(str(tmp_path / "viz"))
    assert set(scalars["filters/model.block1.conv/norm"]) == {4}
    assert (
        tmp_path / "viz" / "lightning_viz" / "images" / "filters" / "model.block1.conv" / "4.png"
    ).exists()
    assert (tmp_path / "viz" / "lightning_viz" / "summary.json").exists()


def test_save_dir_must_be_a_path():
    with pytest.raises(TypeError, match=r"`save_dir` must be a folder path.*got 3"):
        lv.FilterLogger(save_dir=3)


def test_tensorboard_and_csv_both_written_images_made_once(tmp_path, monkeypatch):
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    import lightning_viz._runtime.writers as writers
    from lightning_viz._runtime import log as _log

    counts = {"image": 0, "figure": 0}

    def counting(name, fn):
        def wrapped(*args, **kwargs):
            counts[name] += 1
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(writers, "image_pixels", counting("image", writers.image_pixels))
    monkeypatch.setattr(_log, "figure_pixels", counting("figure", _log.figure_pixels))
    callbacks = [
        lv.FilterLogger(on_error="raise"),
        lv.EmbeddingProjector(num_samples=16, projection="pca", on_error="raise"),
        lv.AdversarialProbe(eps=(8 / 255,), steps=2, num_samples=8, on_error="raise"),
    ]
    loggers = [
        TensorBoardLogger(str(tmp_path), name="run", version=0),
        CSVLogger(str(tmp_path), name="csv", version=0),
    ]
    fit(tmp_path, callbacks, epochs=2, logger=loggers)
    images = _reference_images(read_events(str(tmp_path / "run")))
    figures = {k for k in images if k[0] in ("robustness/curve", "embedding/model.fc/pca")}
    assert len(figures) == 4 and len(images) == 8
    assert counts == {"image": len(images) - len(figures), "figure": len(figures)}  # once each
    csv_dir = str(tmp_path / "csv" / "version_0")
    for (tag, step), pixels in images.items():
        with open(os.path.join(csv_dir, "lightning_viz", "images", tag, f"{step}.png"), "rb") as f:
            assert torch.equal(decode_png(f.read()), pixels), (tag, step)
    assert set(_csv_scalars(csv_dir)) >= set(_reference_scalars(read_events(str(tmp_path))))


def _failing_csv_images(monkeypatch):
    from lightning_viz._runtime.writers._files import FilesBackend

    def full_disk(self, tag, pixels, step, caption):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(FilesBackend, "image", full_disk)


def _two_loggers(tmp_path):
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    return [
        TensorBoardLogger(str(tmp_path), name="run", version=0),
        CSVLogger(str(tmp_path), name="csv", version=0),
    ]


def test_a_backend_that_fails_is_dropped_and_the_others_go_on(tmp_path, monkeypatch):
    _failing_csv_images(monkeypatch)
    callbacks = [lv.FilterLogger(), lv.SaliencyLogger(methods=("vanilla",), num_samples=4)]
    with pytest.warns(UserWarning) as said:
        trainer, _ = fit(tmp_path, callbacks, epochs=2, logger=_two_loggers(tmp_path))
    dropped = [str(w.message) for w in said if "could not write to" in str(w.message)]
    assert len(dropped) == 1  # said once, for the backend, not once per callback or image
    assert "CSV and files" in dropped[0] and "No space left on device" in dropped[0]
    assert "goes on writing to TensorBoard" in dropped[0]
    assert not any("turns itself off" in str(w.message) for w in said)
    assert all(cb._enabled for cb in callbacks)
    images = read_events(str(tmp_path / "run"))["images"]
    steps = {tag: [e[0] for e in evs] for tag, evs in images.items()}
    assert steps["filters/model.block1.conv"] == [4, 8]
    assert any(tag.startswith("saliency/") and s == [4, 8] for tag, s in steps.items())
    # nothing more goes to the failed backend (the step's buffered scalars neither);
    # TensorBoard has them all, and the user's own CSV metrics are untouched
    scalars = _csv_scalars(str(tmp_path / "csv" / "version_0"))
    assert not any(tag.startswith(("filters/", "saliency/", "viz/")) for tag in scalars)
    assert set(scalars["val_acc"]) == {3, 7}
    tb = read_events(str(tmp_path / "run"))["scalars"]
    assert [s for s, _ in tb["filters/model.block1.conv/norm"]] == [4, 8]
    assert not glob.glob(str(tmp_path / "csv" / "version_0" / "lightning_viz" / "images" / "*"))
    assert [b.name for b in callbacks[0]._coordinator.writers.backends] == ["TensorBoard"]


@pytest.mark.parametrize("writer_raises", [False, True])
def test_a_failing_backend_is_the_writing_callbacks_on_error_alone(
    tmp_path, monkeypatch, writer_raises
):
    """H65: with on_error="raise" on another callback, the CSV backend refusing the
    projector's files turned EmbeddingProjector (on_error="warn") off for every logger
    (TensorBoard lost its later embeddings) and kept the failing backend; nothing raised."""
    from lightning_viz._runtime.writers._files import FilesBackend

    def refused(self, *args, **kwargs):
        raise ConnectionError("embedding refused")

    monkeypatch.setattr(FilesBackend, "embedding", refused)
    projector = lv.EmbeddingProjector(
        num_samples=16, projection="pca", on_error="raise" if writer_raises else "warn"
    )
    callbacks = [lv.FilterLogger(on_error="raise"), projector]
    if writer_raises:
        with pytest.raises(ConnectionError, match="embedding refused"):
            fit(tmp_path, callbacks, epochs=2, logger=_two_loggers(tmp_path))
        return
    with pytest.warns(UserWarning) as said:
        fit(tmp_path, callbacks, epochs=2, logger=_two_loggers(tmp_path))
    dropped = [str(w.message) for w in said if "could not write to" in str(w.message)]
    assert len(dropped) == 1 and "CSV and files (ConnectionError" in dropped[0]
    assert projector._enabled
    assert [b.name for b in projector._coordinator.writers.backends] == ["TensorBoard"]
    folders = sorted(d for d in os.listdir(tmp_path / "run" / "version_0") if d.isdigit())
    assert folders == ["00004", "00008"]  # the projector's files of both epochs


def test_the_summary_follows_the_first_logger_still_written_to(tmp_path):
    """H65: the run's folder is the first TensorBoard/CSV logger's; when lightning-viz
    cannot write there (its backend dropped), summary.json failed every epoch and the
    logger still written to never got it (`compare` on it failed)."""
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    os.makedirs(tmp_path / "csv" / "version_0")
    (tmp_path / "csv" / "version_0" / "lightning_viz").write_text("a file in the way")
    loggers = [
        CSVLogger(str(tmp_path), name="csv", version=0),
        TensorBoardLogger(str(tmp_path), name="run", version=0),
    ]
    cb = lv.AdversarialProbe(eps=(8 / 255,), steps=2, num_samples=8)
    with pytest.warns(UserWarning) as said:
        fit(tmp_path, [cb], epochs=2, logger=loggers)
    assert not [w for w in said if "could not write the run summary" in str(w.message)]
    summary = json.loads(
        (tmp_path / "run" / "version_0" / "lightning_viz" / "summary.json").read_text()
    )
    epochs = summary["metrics"]["robustness/clean_acc"]["epochs"]
    assert [e["epoch"] for e in epochs] == [0, 1]


def test_a_backend_dropped_in_one_fit_is_tried_again_in_the_next(tmp_path, monkeypatch):
    """H67: the only logger dropped for an outage in one fit stayed dropped, silently, in
    every later ``fit`` of the trainer (the warning says "in this fit")."""
    from lightning_viz._runtime.writers._tensorboard import TensorBoardBackend
    from lightning_viz.data import LitClassifier
    from tests.conftest import make_trainer, small_datamodule

    image, outage = TensorBoardBackend.image, {"on": True}

    def unreachable(self, *args, **kwargs):
        if outage["on"]:
            raise ConnectionError("artifact store unreachable")
        return image(self, *args, **kwargs)

    monkeypatch.setattr(TensorBoardBackend, "image", unreachable)
    cb = lv.FilterLogger()
    trainer = make_trainer(tmp_path, [cb], epochs=1)
    model, dm = LitClassifier(num_classes=5), small_datamodule()
    with pytest.warns(UserWarning, match="could not write to TensorBoard"):
        trainer.fit(model, datamodule=dm)
    outage["on"] = False
    trainer.fit_loop.max_epochs = 2
    trainer.fit(model, datamodule=dm)
    images = read_events(str(tmp_path / "run"))["images"]
    assert [e[0] for e in images["filters/model.block1.conv"]] == [trainer.global_step]


def test_a_backend_dropped_at_the_configuration_is_said_once(tmp_path, monkeypatch):
    """Review: each callback's training start tried the dropped backends again, so a
    backend refusing the configuration (written at the first callback's start) was
    taken back by the second callback and said a second time at its next write."""
    from lightning_viz._runtime.writers._files import FilesBackend

    def refused(self, *args, **kwargs):
        raise ConnectionError("store refused")

    for name in ("config", "image", "scalars", "flush"):
        monkeypatch.setattr(FilesBackend, name, refused)
    callbacks = [lv.FilterLogger(), lv.ActivationLogger(num_samples=2)]
    with pytest.warns(UserWarning) as said:
        fit(tmp_path, callbacks, epochs=1, logger=_two_loggers(tmp_path))
    dropped = [str(w.message) for w in said if "could not write to" in str(w.message)]
    assert len(dropped) == 1 and "CSV and files (ConnectionError: store refused" in dropped[0]
    assert [b.name for b in callbacks[0]._coordinator.writers.backends] == ["TensorBoard"]


def test_a_failing_backend_raises_with_on_error_raise(tmp_path, monkeypatch):
    _failing_csv_images(monkeypatch)
    with pytest.raises(OSError, match="No space left on device"):
        fit(tmp_path, [lv.FilterLogger(on_error="raise")], epochs=1, logger=_two_loggers(tmp_path))


def test_the_last_backend_failing_to_write_is_said_once_and_measuring_goes_on(
    tmp_path, monkeypatch
):
    """H59: with one backend (CSVLogger), one image that could not be written (a full
    disk, a read-only folder) turned the callback off for the run: its scalars, alerts
    and the monitors' values stopped. An OSError there is said once; the rest goes on."""
    from pytorch_lightning.loggers import CSVLogger

    _failing_csv_images(monkeypatch)
    cb = lv.FilterLogger()
    with pytest.warns(UserWarning) as said:
        fit(tmp_path, [cb], epochs=2, logger=CSVLogger(str(tmp_path), name="csv", version=0))
    failed = [str(w.message) for w in said if "could not write to" in str(w.message)]
    assert len(failed) == 1 and "No space left on device" in failed[0]
    assert "go on measuring" in failed[0]
    assert not any("turns itself off" in str(w.message) for w in said)
    assert cb._enabled
    scalars = _csv_scalars(str(tmp_path / "csv" / "version_0"))
    assert sorted(scalars["filters/model.block1.conv/norm"]) == [4, 8]  # both epochs


def test_the_last_backend_failing_otherwise_turns_the_callback_off(tmp_path, monkeypatch):
    """Not a disk's error (a backend's own bug): the failure goes to ``on_error``."""
    from pytorch_lightning.loggers import CSVLogger

    from lightning_viz._runtime.writers._files import FilesBackend

    def broken(self, tag, pixels, step, caption):
        raise TypeError("a bug of the backend")

    monkeypatch.setattr(FilesBackend, "image", broken)
    cb = lv.FilterLogger()
    with pytest.warns(UserWarning, match="turns itself off.*a bug of the backend"):
        fit(tmp_path, [cb], epochs=2, logger=CSVLogger(str(tmp_path), name="csv", version=0))
    assert not cb._enabled


@pytest.mark.parametrize("mode", ["online", "offline"])
def test_wandb_alerts_only_when_online(mode):
    import types

    wandb = pytest.importorskip("wandb")

    from lightning_viz._runtime.writers._wandb import WandbBackend

    sent = []
    run = types.SimpleNamespace(
        dir="/nonexistent",
        settings=types.SimpleNamespace(mode=mode),
        alert=lambda **kwargs: sent.append(kwargs),
    )
    backend = WandbBackend(types.SimpleNamespace(experiment=run))
    backend.alert("lightning-viz: robustness/pgd_acc@8/255 regressed", "dropped by 0.2")
    assert sent == (
        [
            {
                "title": "lightning-viz: robustness/pgd_acc@8/255 regressed",
                "text": "dropped by 0.2",
                "level": wandb.AlertLevel.WARN,
            }
        ]
        if mode == "online"
        else []
    )


# ------------------------------------------------------------------ compare
def test_compare_reads_an_mlflow_run_a_wandb_folder_and_a_log_dir(
    runs, capsys, tmp_path, monkeypatch
):
    from lightning_viz.cli import main

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the downloads land here

    sources = {
        "mlflow": f"mlflow:{runs['run_id']}",
        "wandb": runs["wandb"],
        "tensorboard": runs["tb_dir"],
        "csv": runs["csv"],
    }
    for baseline, candidate in (("tensorboard", "mlflow"), ("mlflow", "wandb"), ("csv", "wandb")):
        code = main(
            ["compare", sources[baseline], sources[candidate], "--format", "json"]
            + ["--tracking-uri", runs["uri"]]
        )
        result = json.loads(capsys.readouterr().out)
        assert code == 0 and not result["regressed"], (baseline, candidate)
        if baseline == "mlflow":  # named by the run, not by the removed download
            assert result["baseline"] == sources["mlflow"]
        rows = {(r["metric"], r["at"]): r for r in result["rows"]}
        row = next(r for (m, _), r in rows.items() if m == "robustness/pgd_acc@8/255")
        assert row["baseline"]["value"] == row["candidate"]["value"]  # the same seeded run
        assert row["test"] == "paired" and row["delta"] == 0
    assert os.listdir(tmp_path) == []  # every downloaded summary is removed once read


def test_compare_says_why_an_mlflow_run_cannot_be_read(runs, capsys, tmp_path, monkeypatch):
    from lightning_viz.cli import main
    from lightning_viz.monitoring.record import SummaryError
    from lightning_viz.monitoring.sources import resolve_source

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code = main(["compare", "mlflow:no-such-run", runs["tb_dir"], "--tracking-uri", runs["uri"]])
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot read the baseline: mlflow:no-such-run: cannot read the artifact" in err
    assert runs["uri"] in err
    with pytest.raises(SummaryError, match="no-such-run"):  # its own temporary folder
        resolve_source("mlflow:no-such-run", runs["uri"])
    assert os.listdir(tmp_path) == []  # no folder left behind by a failed download


def test_resolve_source_keeps_paths_and_needs_a_run_id():
    from lightning_viz.monitoring.record import SummaryError
    from lightning_viz.monitoring.sources import resolve_source

    assert resolve_source("runs/version_0") == "runs/version_0"
    with pytest.raises(SummaryError, match="give the run id after 'mlflow:'"):
        resolve_source("mlflow:")


def test_only_a_disks_error_on_the_only_backend_is_said_and_tried_again():
    """H62: ConnectionError and TimeoutError are OSErrors too: an unreachable server (the
    only backend) took the full-disk path and was tried again at every write."""
    import errno
    import warnings

    from lightning_viz._runtime.writers import Writers
    from lightning_viz._runtime.writers._base import Backend

    class Only(Backend):
        def __init__(self) -> None:
            super().__init__(None, None)
            self.name, self.threadsafe = "only", False

    def failing(err):
        def write(backend):
            raise err

        return write

    writers = Writers([Only()])
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        for _ in range(3):  # said once, tried every time
            writers.each(failing(OSError(errno.ENOSPC, "No space left on device")))
        writers.each(failing(NotADirectoryError(errno.ENOTDIR, "a file in the way")))
    assert [str(w.message) for w in said if "could not write to only" in str(w.message)] == [
        "lightning-viz could not write to only (OSError: [Errno 28] No space left on device); "
        "the callbacks go on measuring, and later writes try again (said once; pass "
        "on_error='raise' to a callback to stop instead)"
    ]
    assert writers.backends  # tried again
    with pytest.raises(ValueError):
        writers.each(failing(ValueError("a bug of the backend")))  # for the callback's on_error
    assert writers.backends
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        writers.each(failing(ConnectionError("refused")))  # a server: dropped, said once
        writers.each(failing(TimeoutError("slow")))  # nothing left to try
    assert writers.backends == []
    assert [str(w.message) for w in said] == [
        "lightning-viz could not write to only (ConnectionError: refused) and writes "
        "nothing more there in this fit; the callbacks go on measuring (their scalars reach "
        "EarlyStopping and the alerts) (pass on_error='raise' to a callback to stop instead)"
    ]
    strict = Writers([Only()], strict=lambda: True)
    for err in (ConnectionError("refused"), OSError(errno.ENOSPC, "full"), ValueError("x")):
        with pytest.raises(type(err)):
            strict.each(failing(err))  # for the writing callback's on_error
    assert len(strict.backends) == 1


def test_an_only_logger_that_refuses_the_writes_is_said_once_and_the_callbacks_measure(
    tmp_path,
):
    """H65: a tracking server refusing lightning-viz's writes (ConnectionError), on the
    trainer's only logger, was said once per callback and once per shared write, naming
    no logger, and turned every callback off (their scalars left the monitors)."""
    import warnings

    from pytorch_lightning.loggers import CSVLogger

    class Refusing(CSVLogger):  # the user's metrics go through, lightning-viz's do not
        def log_metrics(self, metrics, step=None):
            if any("/" in key for key in metrics):
                raise ConnectionError("refused")
            return super().log_metrics(metrics, step)

    callbacks = [
        lv.FilterLogger(),
        lv.ActivationLogger(num_samples=2, max_channels=4),
        lv.AdversarialProbe(eps=(8 / 255,), steps=2, num_samples=8),
    ]
    logger = Refusing(str(tmp_path), name="run", version=0)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        trainer, _ = fit(tmp_path, callbacks, epochs=2, logger=logger)
    refused = [str(w.message) for w in said if "refused" in str(w.message)]
    assert len(refused) == 1 and "could not write to CSV" in refused[0], refused
    assert all(cb._enabled for cb in callbacks)
    assert "robustness/pgd_acc@8/255" in trainer.callback_metrics
    rows = open(tmp_path / "run" / "version_0" / "metrics.csv").read()
    assert "val_acc" in rows and "robustness/" not in rows


def test_two_threads_dropping_backends_at_once_keep_both_dropped():
    """The training thread and the background worker (embeddings) write at once, and
    each drops a failing backend: a list written from a stale copy brought one back."""
    import threading
    import time
    import warnings

    from lightning_viz._runtime.writers import Writers
    from lightning_viz._runtime.writers._base import Backend

    class Named(Backend):
        def __init__(self, name: str, threadsafe: bool) -> None:
            super().__init__(None, None)
            self.name, self.threadsafe = name, threadsafe

    main, worker, healthy = Named("main", False), Named("worker", True), Named("ok", True)
    slow = lambda: time.sleep(0.05) or False  # noqa: E731 - widens the window between both
    writers = Writers([main, worker, healthy], strict=slow)

    def failing(bad):
        def write(backend):
            if backend is bad:
                raise OSError(f"{backend.name} is full")

        return write

    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        thread = threading.Thread(
            target=writers.each, args=(failing(worker),), kwargs={"threadsafe": True}
        )
        thread.start()
        writers.each(failing(main), threadsafe=False)
        thread.join()
    assert writers.backends == [healthy]
    assert sum("could not write to" in str(w.message) for w in said) == 2


def test_a_float_image_gets_the_bytes_tensorboard_writes(tmp_path):
    """Floats are scaled as add_image scales them (x * 255, clipped, truncated): 0.5 is
    127, not 128, so W&B, MLflow and the PNG files show what TensorBoard shows."""
    image = torch.tensor([0.0, 0.2, 0.5, 0.999, 1.0]).view(1, 1, 5).expand(3, 1, 5)
    ours = image_pixels(image)
    writer = SummaryWriter(str(tmp_path))
    writer.add_image("x", image, 0)
    writer.close()
    ((_, _, _, png),) = read_events(str(tmp_path))["images"]["x"]
    theirs = decode_png(png).numpy().astype(np.uint8)
    assert ours.tolist() == theirs.tolist()
    assert ours[0, :, 0].tolist() == [0, 51, 127, 254, 255]
