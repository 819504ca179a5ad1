"""Where the results are stored: a log dir that cannot be written, a URL log dir, a
resumed MLflow run with other options, no logger but a monitored metric, W&B's upload
folder, and the paths `compare` reads."""

from __future__ import annotations

import json
import types
import warnings

import pytest
import pytorch_lightning as pl

import lightning_viz as lv
from lightning_viz._runtime.cue_cache import cache_file
from lightning_viz._runtime.writers import local_folder
from lightning_viz.monitoring import load_summary
from tests.conftest import fit, read_events

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _probe(**kwargs):
    return lv.AdversarialProbe(attacks=("fgsm",), eps=(8 / 255,), num_samples=16, **kwargs)


def _blocked(tmp_path) -> str:
    """A log dir where ``lightning_viz/`` is a file: no summary.json can be written."""
    log_dir = tmp_path / "run" / "version_0"
    log_dir.mkdir(parents=True)
    (log_dir / "lightning_viz").write_text("a file where lightning-viz wants a folder\n")
    return str(log_dir)


def test_a_summary_that_cannot_be_written_is_said_once_and_training_goes_on(tmp_path):
    _blocked(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer, _ = fit(tmp_path, [_probe()], epochs=2)
    assert trainer.current_epoch == 2  # both epochs ran
    said = [str(w.message) for w in caught if "could not write the run summary" in str(w.message)]
    assert len(said) == 1, said
    assert "FileExistsError" in said[0] or "NotADirectoryError" in said[0]
    # the probe itself ran and wrote its scalars every epoch
    events = read_events(str(tmp_path / "run" / "version_0"))
    assert len(events["scalars"]["robustness/clean_acc"]) == 2


def test_a_summary_that_cannot_be_written_raises_with_on_error_raise(tmp_path):
    _blocked(tmp_path)
    with pytest.raises(OSError, match="lightning_viz"):
        fit(tmp_path, [_probe(on_error="raise")], epochs=1)


def test_a_url_log_dir_keeps_the_files_in_a_local_stand_in(tmp_path, monkeypatch):
    from pytorch_lightning.loggers import TensorBoardLogger

    monkeypatch.chdir(tmp_path)
    logger = TensorBoardLogger("memory://lv-test-logs", name="run", version=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(tmp_path, [_probe(), lv.EmbeddingProjector(num_samples=16)], epochs=1, logger=logger)
    said = [str(w.message) for w in caught if "cannot write its own files" in str(w.message)]
    assert len(said) == 1 and "memory://lv-test-logs/run/version_0" in said[0], said
    stand_in = tmp_path / "lightning_viz_runs" / "memory-lv-test-logs" / "run" / "version_0"
    assert str(stand_in) in said[0]
    assert load_summary(str(stand_in)).metrics["robustness/clean_acc"].epochs
    assert (stand_in / "projector_config.pbtxt").is_file()
    assert not any(p.name.endswith(":") for p in tmp_path.iterdir())  # no "memory:" folder
    import fsspec

    memory = fsspec.filesystem("memory")
    assert any("events.out.tfevents" in p for p in memory.find("/lv-test-logs"))  # the logger's
    memory.rm("/lv-test-logs", recursive=True)


def test_a_file_url_log_dir_is_that_folder(tmp_path):
    from pytorch_lightning.loggers import TensorBoardLogger

    real = tmp_path / "real"
    logger = TensorBoardLogger(f"file://{real}", name="run", version=0)
    fit(tmp_path, [_probe()], epochs=1, logger=logger)
    assert load_summary(str(real)).metrics["robustness/clean_acc"].epochs


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/a/b", "/a/b"),
        ("relative/b", "relative/b"),
        ("file:///a/b%20c", "/a/b c"),
        ("s3://bucket/x/../v0", "/root/lightning_viz_runs/s3-bucket/x/v0"),
        ("GS://bucket", "/root/lightning_viz_runs/gs-bucket"),
    ],
)
def test_local_folder_of_a_log_dir(path, expected):
    assert local_folder(path, "/root") == expected


def test_a_resumed_mlflow_run_with_another_option_keeps_its_first_param(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.chdir(tmp_path)  # MLflow's local folders
    from pytorch_lightning.loggers import MLFlowLogger

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    first = MLFlowLogger(experiment_name="lv", tracking_uri=uri, save_dir=str(tmp_path))
    fit(tmp_path, [_probe()], epochs=1, logger=first)
    again = MLFlowLogger(experiment_name="lv", tracking_uri=uri, run_id=first.run_id)
    changed = lv.AdversarialProbe(attacks=("fgsm",), eps=(8 / 255,), num_samples=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer, _ = fit(tmp_path / "again", [changed], epochs=1, logger=again)
    assert trainer.current_epoch == 1
    said = [str(w.message) for w in caught if "keeps a param's first value" in str(w.message)]
    assert len(said) == 1 and "AdversarialProbe/num_samples" in said[0], said
    params = again.experiment.get_run(first.run_id).data.params
    assert params["lightning_viz/AdversarialProbe/num_samples"] == "16"


def test_no_logger_and_a_monitored_metric_stops_the_fit_at_setup(tmp_path):
    from pytorch_lightning.callbacks import EarlyStopping

    stop = EarlyStopping(monitor="robustness/clean_acc", mode="max")
    with pytest.raises(ValueError, match=r"need a logger.*EarlyStopping") as err:
        fit(tmp_path, [_probe(), stop], epochs=1, logger=False)
    assert "robustness/clean_acc" in str(err.value)


def test_no_logger_without_a_monitor_turns_the_callbacks_off(tmp_path):
    with pytest.warns(UserWarning, match="turn themselves off"):
        trainer, _ = fit(tmp_path, [_probe()], epochs=1, logger=False)
    assert trainer.current_epoch == 1


def test_a_lenient_monitor_without_a_logger_lets_the_fit_run(tmp_path):
    """EarlyStopping(strict=False) skips its checks without the metric: the fit can go
    on, and was stopped at setup as if it could not."""
    from pytorch_lightning.callbacks import EarlyStopping

    stop = EarlyStopping(monitor="robustness/clean_acc", mode="max", strict=False)
    with pytest.warns(UserWarning, match="turn themselves off"):
        trainer, _ = fit(tmp_path, [_probe(), stop], epochs=2, logger=False)
    assert trainer.current_epoch == 2


def test_a_callback_reused_after_a_fit_without_a_logger_writes_with_one(tmp_path):
    """The "nowhere to write" mark of a fit that failed after setup stayed: the next
    trainer, with a logger, was refused (with a monitor) or told it had none."""
    from pytorch_lightning.callbacks import EarlyStopping

    probe = _probe()

    class Broken(pl.Callback):
        def on_fit_start(self, trainer, pl_module):
            raise RuntimeError("a typo, fixed at once")

    with pytest.warns(UserWarning, match="turn themselves off"):
        with pytest.raises(RuntimeError, match="a typo"):
            fit(tmp_path / "a", [Broken(), probe], epochs=1, logger=False)
    stop = EarlyStopping(monitor="robustness/clean_acc", mode="max")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer, _ = fit(tmp_path / "b", [probe, stop], epochs=1)
    assert not [w for w in caught if "need a logger" in str(w.message)]
    assert "robustness/clean_acc" in trainer.callback_metrics


def test_wandb_caches_go_beside_the_runs_not_into_the_upload_folder(tmp_path):
    from lightning_viz._runtime.writers._wandb import WandbBackend

    files = tmp_path / "wandb" / "offline-run-1-abc" / "files"
    logger = types.SimpleNamespace(experiment=types.SimpleNamespace(dir=str(files)))
    backend = WandbBackend(logger)
    assert backend.log_dir == str(files)  # summary.json is uploaded with the run
    assert backend.cache_dir == str(tmp_path / "wandb")
    path = cache_file(backend.cache_dir, "k")
    assert not path.startswith(str(files)) and path.startswith(str(tmp_path / "wandb"))


def test_compare_reads_the_folder_holding_summary_json(tmp_path):
    fit(tmp_path, [_probe()], epochs=1)
    folder = tmp_path / "run" / "version_0" / "lightning_viz"
    assert load_summary(str(folder)).path == str(folder / "summary.json")
    copy = tmp_path / "copied run"
    copy.mkdir()
    (copy / "summary.json").write_text((folder / "summary.json").read_text())
    assert json.loads((copy / "summary.json").read_text())["metrics"]
    assert load_summary(str(copy)).metrics.keys() == load_summary(str(folder)).metrics.keys()


def test_a_tag_prefix_with_dot_parts_is_refused():
    for prefix in ("../../escaped", "a/./b", ".."):
        with pytest.raises(ValueError, match="tag_prefix"):
            lv.FilterLogger(tag_prefix=prefix)
    assert lv.FilterLogger(tag_prefix="a..b/c").tag_prefix == "a..b/c"


def test_control_characters_in_class_names_are_spaces():
    cb = lv.SaliencyLogger(class_names=["cat\tdog", "new\nline", "crlf\r\nname", "plain"])
    assert cb.class_names == ["cat dog", "new line", "crlf name", "plain"]


def test_a_failure_on_another_rank_is_said_there(monkeypatch):
    """turn_off warned through rank 0 only: a failure on rank 1 alone was silent."""
    from pytorch_lightning.utilities import rank_zero_only

    cb = lv.FilterLogger()
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    with pytest.warns(UserWarning, match=r"^\[rank 1\] FilterLogger broke and turns itself off"):
        cb.turn_off("broke", RuntimeError("out of memory on this device"))
    assert not cb._enabled
