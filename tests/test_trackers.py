"""Experiment trackers: a run sent to Weights & Biases (offline) and MLflow (a local file store),
stopped inside a log interval and resumed, read back with wandb's own run file and with
``MlflowClient``: one tracked run each, the config as params, each metrics.jsonl line once with its
values, the pictures; the lines past a killed run's checkpoint are not sent twice; a plain run
imports neither library."""

import glob
import json
import os
import struct
import subprocess
import sys

import pytest

import jaxvae
from jaxvae import config as config_lib
from jaxvae import io, layout, preemption, runner, storage, trackers
from jaxvae.specs import LoggingSpec
from tests.conftest import CONFIGS, REPO
from tests.test_gcs import BUCKET, gcs  # noqa: F401 - the GCS emulator fixture

STOP_AT = 5  # inside the log interval [3, 6): the line at 3 is sent, the sums of 4..5 carried


def _config(mlruns):
    config = config_lib.load_config_file(os.path.join(CONFIGS, "smoke.py"))  # 8 steps an epoch
    config.train.epochs = 1
    config.train.log_every_steps = 3
    config.logging.wandb = True
    config.logging.mlflow = f"file://{mlruns}"
    return config


def _offline(mp, wandb_dir):
    """wandb offline, writing under ``wandb_dir``; MLflow's file store allowed."""
    mp.setenv("WANDB_MODE", "offline")
    mp.setenv("WANDB_DIR", str(wandb_dir))
    mp.setenv("WANDB_SILENT", "true")
    mp.setenv("WANDB_CONSOLE", "off")
    mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for a database otherwise


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """A run stopped at step ``STOP_AT`` and resumed to its end (8 steps), tracked by both."""
    tmp = tmp_path_factory.mktemp("trackers")
    workdir, mlruns = str(tmp / "run"), str(tmp / "mlruns")
    with pytest.MonkeyPatch.context() as mp:
        _offline(mp, tmp)
        with pytest.MonkeyPatch.context() as stop:
            stop.setattr(runner.DispatchPacer, "steps", lambda self, remaining: 1)
            calls = {"n": 0}

            def due(self):
                calls["n"] += 1
                return calls["n"] == STOP_AT

            stop.setattr(preemption.StopRequest, "due", due)
            with pytest.raises(preemption.Preempted):
                jaxvae.train(_config(mlruns), workdir)
        assert os.path.exists(layout.path(workdir, layout.CARRIED_SUMS))
        first = io.read_json(layout.path(workdir, layout.TRACKERS))
        assert first["wandb"]["step"] == first["mlflow"]["step"] == 3  # the newest line sent
        summary = jaxvae.train(_config(mlruns), workdir)
    assert summary["resumed_from_step"] == STOP_AT
    return workdir, str(tmp), mlruns, first


def _lines(workdir):
    return io.read_jsonl(layout.path(workdir, layout.METRICS))


def _by_step(lines):
    """``{step: figures}`` of metrics lines: a step's lines (training, test) together."""
    out: dict[int, dict] = {}
    for r in lines:
        out.setdefault(r["step"], {}).update(trackers.numbers(r))
    return out


def _pngs(workdir):
    return sorted(f for f in os.listdir(workdir) if f.endswith(".png"))


def _expected_params(workdir):
    saved = io.flatten(io.read_json(layout.path(workdir, layout.CONFIG)))
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in saved.items()}


def test_the_lines_of_the_stopped_and_resumed_run(tracked):
    workdir, *_ = tracked
    steps = [(r["step"], "loss" in r) for r in _lines(workdir)]
    assert steps == [(3, 1), (6, 1), (8, 1), (8, 0)]  # (step, training line)


def test_mlflow_holds_one_run_with_params_metrics_and_pictures(tracked):
    from mlflow.tracking import MlflowClient

    workdir, _, mlruns, first = tracked
    client = MlflowClient(tracking_uri=f"file://{mlruns}")
    experiment = client.get_experiment_by_name("jaxvae")
    (run,) = client.search_runs([experiment.experiment_id])
    run_id = io.read_json(layout.path(workdir, layout.TRACKERS))["mlflow"]["run_id"]
    assert run.info.run_id == run_id == first["mlflow"]["run_id"]
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params == _expected_params(workdir)
    by_step = _by_step(_lines(workdir))
    keys = {k for figures in by_step.values() for k in figures}
    assert {"loss", "epoch", "images_per_sec", "test_nelbo"} <= keys == set(run.data.metrics)
    for key in keys:  # each step once (``epoch`` is in the training and the test line of 8)
        history = [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
        assert sorted(history) == [(s, f[key]) for s, f in by_step.items() if key in f], key
    assert sorted(a.path for a in client.list_artifacts(run_id)) == _pngs(workdir)


def _wandb_records(path):
    """The records of a ``.wandb`` run file (wandb's protobuf ``Record``s in LevelDB's log format:
    a 7-byte header, then 32 KiB blocks of chunks with a 7-byte header: CRC, length, type)."""
    from wandb.proto import wandb_internal_pb2

    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b":W&B"
    records, pos, block, buf = [], 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk  # FULL, FIRST | MIDDLE, LAST
        if kind in (1, 4):
            records.append(wandb_internal_pb2.Record.FromString(buf))
    return records


def _wandb_run(files, run_id):
    """The config and history rows of a wandb run's files, each checked to be run ``run_id``'s."""
    rows, config = [], {}
    for f in files:
        for record in _wandb_records(f):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                assert record.run.run_id == run_id
                config |= {u.key: json.loads(u.value_json) for u in record.run.config.update}
            elif kind == "config":
                config |= {u.key: json.loads(u.value_json) for u in record.config.update}
            elif kind == "history":
                items = {"/".join(i.nested_key) or i.key: i.value_json for i in record.history.item}
                rows.append({k: json.loads(v) for k, v in items.items()})
    return config, rows


def _wandb_files(wandb_dir):
    """The offline run files, oldest first."""
    return sorted(glob.glob(os.path.join(wandb_dir, "wandb", "offline-run-*", "run-*.wandb")))


def test_wandb_continues_one_run_with_config_lines_and_pictures(tracked):
    workdir, wandb_dir, _, first = tracked
    run_id = io.read_json(layout.path(workdir, layout.TRACKERS))["wandb"]["run_id"]
    assert run_id == first["wandb"]["run_id"]
    files = _wandb_files(wandb_dir)
    assert [os.path.basename(f) for f in files] == [f"run-{run_id}.wandb"] * 2  # stop, resume
    config, rows = _wandb_run(files, run_id)
    saved = io.flatten(io.read_json(layout.path(workdir, layout.CONFIG)))
    assert {k: v for k, v in config.items() if k != "_wandb"} == {
        k: list(v) if isinstance(v, tuple) else v for k, v in saved.items()
    }
    # one row per step, each step once, holding that step's lines
    assert [row["_step"] for row in rows] == [3, 6, 8]
    expected = _by_step(_lines(workdir))
    for row in rows:
        figures = {k: v for k, v in row.items() if not k.startswith("_") and "/" not in k}
        assert figures == expected[row["_step"]]
    pictures = {k.split("/")[0] for k, v in rows[-1].items() if v == "image-file"}
    assert sorted(f"{p}.png" for p in pictures) == _pngs(workdir)


def test_eval_sample_and_plot_report_to_the_tracked_runs(tracked, tmp_path, capfd):
    """``jaxvae eval``, ``sample`` and ``plot`` on the finished tracked run (after the tests above,
    which read the training's tracked runs): eval.json's figures as ``eval/`` metrics at the
    run's final step, the pictures as MLflow artifacts and wandb images, in the same tracked runs.
    ``sample`` runs as on a run wandb continued online (its first step past the final one), whose
    rows are charted against ``STEP_KEY`` instead."""
    from mlflow.tracking import MlflowClient
    from wandb.sdk import wandb_run

    from jaxvae import cli
    from jaxvae.trackers import wandb as wandb_tracker

    workdir, wandb_dir, mlruns, _ = tracked
    few = str(tmp_path / "few.png")
    with pytest.MonkeyPatch.context() as mp:
        _offline(mp, wandb_dir)
        assert cli.main(["eval", "--workdir", workdir, "--iwae-k", "2", "--num-examples", "8"]) == 0
        assert cli.main(["plot", "--workdir", workdir]) == 0
        mp.setattr(wandb_run.Run, "starting_step", property(lambda run: 9))
        assert cli.main(["sample", "--workdir", workdir, "--num", "4", "--out", few]) == 0
    assert "error" not in capfd.readouterr().err
    figures = io.read_json(layout.path(workdir, layout.EVAL))
    expected = {f"eval/{k}": v for k, v in trackers.numbers(figures).items()}
    assert {"eval/test_nll", "eval/test_nelbo", "eval/iwae_k"} <= expected.keys()
    sent = io.read_json(layout.path(workdir, layout.TRACKERS))
    assert sent["mlflow"]["step"] == sent["wandb"]["step"] == 8  # the run's final step

    client = MlflowClient(tracking_uri=f"file://{mlruns}")
    run_id = sent["mlflow"]["run_id"]
    for key, value in expected.items():
        assert [(m.step, m.value) for m in client.get_metric_history(run_id, key)] == [(8, value)]
    assert sorted(a.path for a in client.list_artifacts(run_id)) == sorted(
        [*_pngs(workdir), "few.png"]
    )
    local = client.download_artifacts(run_id, "few.png", str(tmp_path / "back"))
    with open(local, "rb") as a, open(few, "rb") as b:
        assert a.read() == b.read()

    files = _wandb_files(wandb_dir)
    assert len(files) == 5  # stop, resume, eval, plot, sample: one tracked run
    _, rows = _wandb_run(files[2:], sent["wandb"]["run_id"])
    assert len(rows) == 3
    # Told apart by what they hold: runs started within one second may sort in either order.
    (evaluated,) = [r for r in rows if any(k.startswith("eval/") for k in r)]
    (sampled,) = [r for r in rows if "few/_type" in r]
    (plotted,) = [r for r in rows if r is not evaluated and r is not sampled]
    assert evaluated["_step"] == plotted["_step"] == 8
    assert {k: v for k, v in evaluated.items() if not k.startswith("_")} == expected
    drawn = {k.split("/")[0] for k, v in plotted.items() if v == "image-file"}
    assert sorted(f"{p}.png" for p in drawn) == _pngs(workdir)
    assert sampled[wandb_tracker.STEP_KEY] == 8 and sampled["few/_type"] == "image-file"


def test_lines_past_a_killed_runs_checkpoint_are_not_sent_twice(tmp_path, monkeypatch):
    """A kill after the training line of step 8 was sent, before its test line: the resumed run
    (from the checkpoint at 5) computes the lines of 8 again; MLflow gets the test line, and
    nothing twice. A run started anew in the directory starts a new tracked run; a tracker first
    asked for when a run resumes starts with the lines so far."""
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri, workdir = f"file://{tmp_path}/mlruns", str(tmp_path)
    spec = LoggingSpec(mlflow=uri)
    train = lambda step, loss: {"step": step, "loss": loss, "epoch": step / 8}
    log = trackers.Trackers(spec, workdir, resume_step=None, config={"a": {"b": 1}})
    for record in (train(5, 3.0), train(8, 2.0)):
        log.metrics(record)
    log.close()  # killed: the test line of step 8 was never sent
    log = trackers.Trackers(spec, workdir, resume_step=5, config={"a": {"b": 1}})
    for record in (train(8, 2.5), {"step": 8, "test_nelbo": 9.0}, train(10, 1.0)):
        log.metrics(record)
    log.close()
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("jaxvae").experiment_id])
    history = lambda key: sorted(
        (m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)
    )
    assert history("loss") == [(5, 3.0), (8, 2.0), (10, 1.0)]  # the first values kept
    assert history("test_nelbo") == [(8, 9.0)]
    assert run.data.params == {"a.b": "1"}
    trackers.Trackers(spec, workdir, resume_step=None, config={"a": {"b": 1}}).close()
    assert len(client.search_runs([run.info.experiment_id])) == 2
    # MLflow first asked for when a run resumes: its new tracked run gets the lines so far
    other = str(tmp_path / "other")
    os.makedirs(other)
    io.write_jsonl(layout.path(other, layout.METRICS), [train(5, 3.0), train(8, 2.0)])
    trackers.Trackers(spec, other, resume_step=8, config={"a": {"b": 1}}).close()
    run_id = io.read_json(layout.path(other, layout.TRACKERS))["mlflow"]["run_id"]
    replayed = client.get_metric_history(run_id, "loss")
    assert sorted((m.step, m.value) for m in replayed) == [(5, 3.0), (8, 2.0)]


def _png(value: int) -> bytes:
    import io as io_lib

    from PIL import Image

    out = io_lib.BytesIO()
    Image.new("L", (4, 4), value).save(out, format="PNG")
    return out.getvalue()


def test_pictures_in_an_object_store_reach_the_trackers_as_local_copies(
    gcs,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    """A run directory on ``gs://`` (the GCS emulator): its training pictures and a command's
    (``report``) reach MLflow through temporary local copies under their own names, removed
    afterwards; a run not tracked, or with the tracker switched off in its config, sends nothing."""
    import tempfile

    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    os.makedirs(tmp_path / "tmp")
    uri, workdir = f"file://{tmp_path}/mlruns", f"gs://{BUCKET}/tracked"
    spec = LoggingSpec(mlflow=uri)
    drawn, sampled = layout.path(workdir, layout.SAMPLES), f"gs://{BUCKET}/elsewhere/few.png"
    storage.put(drawn, _png(10))
    storage.put(sampled, _png(200))
    log = trackers.Trackers(spec, workdir, resume_step=None, config={"a": 1})
    log.metrics({"step": 4, "loss": 2.0})
    log.pictures(4, [drawn])
    log.close()
    figures = {"test_nll": 3.5, "step": 4, "data_protocol": {"train": "..."}}
    assert trackers.report(workdir, spec, figures=figures, pictures=[sampled]) == ["mlflow"]
    assert trackers.report(workdir, LoggingSpec(), figures=figures) == []
    assert trackers.report(str(tmp_path), spec, figures=figures) == []  # no trackers.json
    assert os.listdir(tmp_path / "tmp") == []
    client = MlflowClient(tracking_uri=uri)
    run_id = io.read_json(layout.path(workdir, layout.TRACKERS))["mlflow"]["run_id"]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "eval/test_nll")] == [
        (4, 3.5)
    ]
    assert sorted(client.get_run(run_id).data.metrics) == ["eval/test_nll", "loss"]
    assert sorted(a.path for a in client.list_artifacts(run_id)) == ["few.png", "samples.png"]
    for name, value in (("samples.png", 10), ("few.png", 200)):
        with open(client.download_artifacts(run_id, name, str(tmp_path / name[:3])), "rb") as f:
            assert f.read() == _png(value)


def test_a_missing_tracker_package_is_named_in_one_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    with pytest.raises(
        ValueError, match=r"logging.wandb=True: needs the 'wandb' package.*jaxvae\[wandb\]"
    ):
        trackers.Trackers(LoggingSpec(wandb=True), str(tmp_path), resume_step=None, config={})


def test_a_run_without_trackers_imports_neither_library(tmp_path):
    """In a fresh interpreter: the whole package, and a run's logs (:class:`RunLog`, the one place
    trackers are opened, as the runner opens it with the default ``logging`` section) writing a
    line and a picture."""
    code = f"""
import sys
import jaxvae, jaxvae.runner
from jaxvae import config, experiment, specs, workdir
from PIL import Image
spec = config.validate(config.base_config()).logging
log = workdir.RunLog({str(tmp_path)!r}, resume_step=None, enabled=True, config={{}}, logging=spec)
log.write({{"step": 1, "loss": 2.0}})
Image.new("L", (4, 4)).save({str(tmp_path / "samples.png")!r})
log.pictures(1, [{str(tmp_path / "samples.png")!r}])
log.close()
print(sorted(m for m in sys.modules if m.split(".")[0] in ("wandb", "mlflow")))
"""
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "src"), JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert io.read_jsonl(layout.path(str(tmp_path), layout.METRICS)) == [{"step": 1, "loss": 2.0}]
    assert not os.path.exists(layout.path(str(tmp_path), layout.TRACKERS))
