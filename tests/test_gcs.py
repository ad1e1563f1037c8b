"""Workdirs on Google Cloud Storage (``gs://``), against a real local GCS emulator
(gcp-storage-emulator on a loopback port): train, SIGKILL, resume bit-identically beside a local
run, eval, sample and plot; a study of two shards at once, its status and report.

The test reads the bucket through the emulator's JSON API with urllib, not through jaxvae's
storage layer, so what it finds is what a GCS client would find.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import portpicker
import pytest
from tensorboardX.proto.event_pb2 import Event

import jaxvae as jaxvae_lib
from jaxvae import cli, storage, tensorboard
from jaxvae import config as config_lib
from jaxvae.studies import state
from tests.conftest import CONFIGS, REPO

BUCKET = "jaxvae-test"
EMULATOR = os.path.join(REPO, "tests", "gcs_emulator.py")
EXE = os.path.join(os.path.dirname(sys.executable), "jaxvae")
SMOKE = os.path.join(CONFIGS, "smoke.py")
# 50 steps per epoch, a checkpoint every 35: each one before the last is inside an epoch. The
# test set is evaluated at each epoch's end, so the killed run's logs hold test lines too.
PER_EPOCH, EVERY = 3200 // 64, 35
ARGS = [
    "--config",
    SMOKE,
    "--config.data.limit_train=3200",
    "--config.train.epochs=3",
    f"--config.train.checkpoint_every_steps={EVERY}",
    "--config.train.keep_checkpoints=10",
]
PICTURES = ("samples.png", "reconstructions.png", "interpolations.png", "latent_map.png")


@pytest.fixture(scope="module")
def gcs():
    """The emulator (tests/gcs_emulator.py) on a loopback port, its URL; the clients' documented
    settings point at it for this module: the
    Python clients (gcsfs, under jaxvae.storage and etils.epath) by STORAGE_EMULATOR_HOST,
    TensorStore (Orbax's array writer) by TENSORSTORE_GCS_HTTP_URL. No credentials: gcsfs
    anonymous (FSSPEC_GCS_TOKEN=anon), TensorStore finds none and sends none (its metadata
    server lookup is pointed at a closed loopback port); gcsfs's bucket-type probe, a gRPC API the
    emulator lacks, is off (GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false)."""
    port = portpicker.pick_unused_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, EMULATOR, "start", "--host", "127.0.0.1"]
        + ["--port", str(port), "--in-memory", "--default-bucket", BUCKET, "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/", timeout=1) as r:
                assert r.read() == b"OK"
            break
        except OSError:
            assert proc.poll() is None and time.time() < deadline, "the emulator did not start"
            time.sleep(0.1)
    env = {
        "STORAGE_EMULATOR_HOST": url,
        "TENSORSTORE_GCS_HTTP_URL": url,
        "GCE_METADATA_ROOT": "127.0.0.1:1",
        "FSSPEC_GCS_TOKEN": "anon",
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
    }
    patch = pytest.MonkeyPatch()
    for k, v in env.items():
        patch.setenv(k, v)
    import fsspec  # read its environment at import: this process is told directly

    patch.setitem(fsspec.config.conf, "gcs", {"token": "anon"})
    try:
        yield url
    finally:
        patch.undo()
        proc.terminate()
        proc.wait()


def objects(url, prefix):
    """The names of the objects under ``prefix`` in the bucket."""
    query = urllib.parse.urlencode({"prefix": prefix})
    with urllib.request.urlopen(f"{url}/storage/v1/b/{BUCKET}/o?{query}") as r:
        return sorted(item["name"] for item in json.load(r).get("items", []))


def get(url, name):
    """The content of the object ``name``."""
    quoted = urllib.parse.quote(name, safe="")
    with urllib.request.urlopen(f"{url}/download/storage/v1/b/{BUCKET}/o/{quoted}?alt=media") as r:
        return r.read()


def put(url, name, data):
    """Writes the object ``name``."""
    query = urllib.parse.urlencode({"uploadType": "media", "name": name})
    request = urllib.request.Request(f"{url}/upload/storage/v1/b/{BUCKET}/o?{query}", data=data)
    urllib.request.urlopen(request).close()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def records(text):
    """metrics.jsonl's records without the one timing figure, which differs from run to run."""
    lines = [json.loads(line) for line in text.splitlines()]
    return [{k: v for k, v in r.items() if k != "images_per_sec"} for r in lines]


def scalars(files):
    """``(tag, step, value)`` of every scalar in event files' bytes, but the timing one."""
    out = []
    for data in files:
        for record in tensorboard._records(data):
            event = Event.FromString(record[12:-4])
            for v in event.summary.value:
                if v.HasField("simple_value") and v.tag != "train/images_per_sec":
                    out.append((v.tag, event.step, v.simple_value))
    return sorted(out)


def jaxvae(*args, env):
    """``jaxvae ARGS`` in a fresh process (not waited for)."""
    return subprocess.Popen(
        [EXE, *args], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def kill_after_first_checkpoint(gcs, proc, prefix, seen):
    """SIGKILL ``proc`` once its first checkpoint is complete in the bucket (Orbax marks a
    finished checkpoint on GCS by its commit_success.txt)."""
    deadline = time.time() + 300
    while f"{prefix}/checkpoints/{EVERY}/commit_success.txt" not in objects(gcs, f"{prefix}/"):
        if proc.poll() is not None or time.time() > deadline:
            return
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    seen.append(objects(gcs, f"{prefix}/"))


def test_train_kill_resume_eval_sample_plot_on_gcs(gcs, tmp_path, capsys, one_device_mesh):
    env = dict(os.environ, XLA_FLAGS="", PYTHONUNBUFFERED="1")
    local, remote = str(tmp_path / "run"), f"gs://{BUCKET}/runs/run"
    # the run to kill (on GCS, another process) and the uninterrupted one (local, here)
    killed, seen = jaxvae("train", *ARGS, "--workdir", remote, env=env), []
    killer = threading.Thread(
        target=kill_after_first_checkpoint, args=(gcs, killed, "runs/run", seen)
    )
    killer.start()
    config = config_lib.load_config_file(SMOKE)
    config_lib.apply_overrides(config, [a.removeprefix("--config.") for a in ARGS[2:]])
    expected = jaxvae_lib.train(config, local, mesh=one_device_mesh)
    killer.join()
    _, err = killed.communicate()
    assert killed.returncode == -signal.SIGKILL and seen, err
    assert "runs/run/summary.json" not in seen[0], "the run ended before the kill"

    # a step directory without commit_success.txt, as a save cut short leaves it: no checkpoint
    put(gcs, "runs/run/checkpoints/149/default/manifest.ocdbt", b"cut short")
    summary = jaxvae_lib.train(config, remote, mesh=one_device_mesh)
    assert f"resuming {remote} from step" in capsys.readouterr().err
    assert json.loads(get(gcs, "runs/run/summary.json"))["wall_s"] == summary["wall_s"]
    assert summary["resumed_from_step"] >= EVERY
    assert summary["resumed_from_step"] % PER_EPOCH != 0, "the resume was not inside an epoch"
    assert summary["params_digest"] == expected["params_digest"]
    assert summary["test_nelbo"] == expected["test_nelbo"]
    # the same lines as the run never stopped: none twice from the killed attempt, none lost
    metrics = get(gcs, "runs/run/metrics.jsonl").decode()
    assert records(metrics) == records(read(os.path.join(local, "metrics.jsonl")).decode())
    for name in ("config.json", "run.json", *PICTURES, "curves.png"):
        assert get(gcs, f"runs/run/{name}") == read(os.path.join(local, name)), name
    # every step directory is a finished checkpoint: the unfinished ones were removed
    listed = objects(gcs, "runs/run/checkpoints/")
    steps = {n.split("/")[3] for n in listed}
    assert all(f"runs/run/checkpoints/{k}/commit_success.txt" in listed for k in steps), steps
    assert "149" not in steps and not objects(gcs, "runs/run/checkpoints-corrupt/")
    # TensorBoard: the killed attempt's events past the checkpoint are gone, as locally
    events = objects(gcs, "runs/run/events.out.tfevents.")
    assert len(events) == 2  # the killed attempt's, rewritten, and the resumed one's
    local_events = [read(p) for p in tensorboard.event_files(local)]
    assert scalars(get(gcs, n) for n in events) == scalars(local_events)

    # eval, sample, plot on the GCS run: what they give for the local run
    iwae = ["--iwae-k", "8", "--num-examples", "16"]
    for workdir in (local, remote):
        assert cli.main(["eval", "--workdir", workdir, *iwae]) == 0
    assert get(gcs, "runs/run/eval.json") == read(os.path.join(local, "eval.json"))
    assert cli.main(["sample", "--workdir", local, "--num", "8"]) == 0
    out = f"gs://{BUCKET}/elsewhere/samples.png"  # --out on GCS too
    assert cli.main(["sample", "--workdir", remote, "--num", "8", "--out", out]) == 0
    assert get(gcs, "elsewhere/samples.png") == read(os.path.join(local, "samples.png"))
    capsys.readouterr()
    assert cli.main(["plot", "--workdir", remote]) == 0
    shown = capsys.readouterr().out.split()
    assert f"{remote}/curves.png" in shown and f"{remote}/reconstructions.png" in shown
    for name in ("reconstructions.png", "interpolations.png", "curves.png"):  # the same bits
        assert get(gcs, f"runs/run/{name}") == read(os.path.join(local, name)), name
    # a mistake is one line, as for a local workdir
    assert cli.main(["eval", "--workdir", f"gs://{BUCKET}/runs/none"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"jaxvae eval: error: workdir 'gs://{BUCKET}/runs/none' does not exist"


STUDY = """
from jaxvae.config import load_config_file
from jaxvae.studies import Axis, Study


def get_study():
    config = load_config_file({smoke!r})
    config.data.limit_train = 128
    config.data.limit_test = 64
    config.eval.num_pictures = 4
    return Study(
        name="gcs",
        base_config=config,
        axes=(Axis("beta", key="objective.beta", values=(1.0, 4.0)),),
        seeds=1,
        metrics=("test_nelbo", "test_kl"),
    )
"""


def test_a_study_of_two_shards_on_gcs_and_its_report(gcs, tmp_path, capsys):
    study_file = tmp_path / "gcs_study.py"
    study_file.write_text(STUDY.format(smoke=SMOKE))
    env = dict(os.environ, XLA_FLAGS="", PYTHONUNBUFFERED="1")
    workdir = f"gs://{BUCKET}/studies/s"
    run = ["study", "run", str(study_file), "--workdir", workdir, "--shard"]
    other = jaxvae(*run, "0/2", env=env)  # the two shards at once: one there, one here
    assert cli.main([*run, "1/2"]) == 0
    _, err = other.communicate(timeout=300)
    assert other.returncode == 0, err
    for log in (err, capsys.readouterr().err):
        assert "1 runs: 1 trained, 0 done before" in log, log
    names = objects(gcs, "studies/s/")
    assert not [n for n in names if n.endswith(".lock")], names  # released
    assert "studies/s/study.json" in names
    assert cli.main(["study", "status", workdir]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == "2 runs: 2 done, 0 running, 0 failed, 0 pending"
    assert cli.main(["study", "report", workdir]) == 0
    written = objects(gcs, "studies/s/report/")
    for name in ("report.md", "results.csv", "results.json", "learning_curves.png"):
        assert f"studies/s/report/{name}" in written, name
    rows = get(gcs, "studies/s/report/results.csv").decode().splitlines()
    assert rows[0] == "run,variant,beta,seed,state,test_nelbo,test_kl"
    assert len(rows) == 3
    for row in rows[1:]:
        run_name, _, _, _, done, nelbo, kl = row.split(",")
        summary = json.loads(get(gcs, f"studies/s/runs/{run_name}/summary.json"))
        assert done == "done"
        assert (float(nelbo), float(kl)) == (summary["test_nelbo"], summary["test_kl"])
    # a run's lock on GCS: its holder, its heartbeat (the object written again), its release
    path = f"{workdir}/state/{run_name}.lock"
    lock = state.RunLock(path)
    assert lock.acquire()
    assert state.lock_holder(path)["pid"] == os.getpid()
    written = storage.mtime(path)
    time.sleep(0.01)
    storage.touch(path)
    assert storage.mtime(path) > written
    lock.release()
    assert state.lock_holder(path) is None
    assert not objects(gcs, "studies/s/state/")
    # its record exported from GCS to a local directory, and from there to GCS again: no
    # weights, the same summaries, the same report
    local = str(tmp_path / "kept")
    assert cli.main(["study", "export", workdir, local]) == 0
    assert cli.main(["study", "export", local, f"gs://{BUCKET}/kept/s"]) == 0
    assert capsys.readouterr().out.splitlines()[-2:] == [
        f"2 done runs exported to {local}",
        f"2 done runs exported to gs://{BUCKET}/kept/s",
    ]
    kept = objects(gcs, "kept/s/")
    assert kept and not [n for n in kept if "checkpoints" in n or "events" in n], kept
    for run_name in (row.split(",")[0] for row in rows[1:]):
        summary = f"runs/{run_name}/summary.json"
        assert get(gcs, f"kept/s/{summary}") == get(gcs, f"studies/s/{summary}")
    assert cli.main(["study", "report", f"gs://{BUCKET}/kept/s"]) == 0
    assert get(gcs, "kept/s/report/results.csv").decode().splitlines() == rows
