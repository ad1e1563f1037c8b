"""`jaxvae study status` on a study directory made by hand: steps done of planned per run and in
total, and the time left, against the arithmetic done here from the values written."""

import os
import re

import pytest

from jaxvae import cli, io
from jaxvae import config as config_lib
from jaxvae.studies import Study, expand, progress, state
from jaxvae.studies import runs as runs_lib
from tests.conftest import CONFIGS

BATCH, EPOCHS, NUM_TRAIN = 64, 20, 1000  # 1000 // 64 = 15 steps an epoch, 300 planned


def _study():
    config = config_lib.load_config_file(os.path.join(CONFIGS, "smoke.py"))
    config.train.batch_size, config.train.epochs = BATCH, EPOCHS
    variants = {"a": {}, "b": {"objective.beta": 2.0}, "c": {"data.limit_train": 256}}
    return Study("made", config, variants=variants, seeds=3)


def _run_dir(workdir, run, *, lines=(), checkpoints=(), summary=None):
    """A run directory: config.json, run.json, training lines (step, images/s), checkpoints."""
    directory = state.run_dir(workdir, run["name"])
    os.makedirs(directory)
    io.write_json(os.path.join(directory, "config.json"), run["config"])
    io.write_json(os.path.join(directory, "run.json"), {"format": 2, "num_train": NUM_TRAIN})
    records = [{"step": s, "epoch": s / 15, "loss": 1.0, "images_per_sec": v} for s, v in lines]
    records.insert(1, {"step": 15, "val_nelbo": 1.0})  # other lines carry no rate
    io.write_jsonl(os.path.join(directory, "metrics.jsonl"), records)
    for step in checkpoints:
        os.makedirs(os.path.join(directory, "checkpoints", str(step)))
        open(os.path.join(directory, "checkpoints", str(step), "_CHECKPOINT_METADATA"), "w").write(
            "{}"
        )
    if summary is not None:
        io.write_json(os.path.join(directory, "summary.json"), summary)


@pytest.fixture
def made(tmp_path):
    study = _study()
    workdir = str(tmp_path / "study")
    state.init_study_dir(workdir, runs_lib.canonical(study, expand(study)))
    runs = {r["name"]: r for r in state.read_study(workdir)["identity"]["runs"]}
    assert list(runs) == [f"{v}-seed{s}" for s in range(3) for v in "abc"]
    # a-seed0: done, stopped early after 120 steps; its last rate 1600 images/s = 25 steps/s.
    _run_dir(
        workdir,
        runs["a-seed0"],
        lines=[(15, 800.0), (120, 1600.0)],
        checkpoints=[120],
        summary={"epochs": EPOCHS, "steps": 75, "trained_steps": 120, "test_nelbo": 1.0},
    )
    # b-seed0: running (this process holds its lock): lines to step 45, a checkpoint at 30.
    _run_dir(workdir, runs["b-seed0"], lines=[(15, 640.0), (45, 1280.0)], checkpoints=[30])
    lock = state.RunLock(state.lock_path(workdir, "b-seed0"))
    assert lock.acquire()
    # a-seed1: killed: lines to step 75, but its newest checkpoint (what a resume keeps) is 60.
    _run_dir(workdir, runs["a-seed1"], lines=[(15, 900.0), (75, 960.0)], checkpoints=[15, 60])
    # b-seed1: failed after its checkpoint at 15.
    _run_dir(workdir, runs["b-seed1"], lines=[(15, 1920.0)], checkpoints=[15])
    io.write_json(state.failed_path(workdir, "b-seed1"), {"error": "ValueError: made up"})
    # a-seed2, b-seed2 and every c run have not started; c's data settings are its own.
    yield workdir
    lock.release()


def test_steps_and_time_left_against_the_arithmetic(made, capsys):
    runs = {r.name: r for r in progress.progress(made)}
    rate = {"a0": 1600 / BATCH, "b0": 1280 / BATCH, "a1": 960 / BATCH, "b1": 1920 / BATCH}
    assert rate == {"a0": 25.0, "b0": 20.0, "a1": 15.0, "b1": 30.0}
    # c has no measured run: its runs take the mean of its model family's (a and b are VAEs too).
    family = sum(rate.values()) / 4
    planned = EPOCHS * (NUM_TRAIN // BATCH)
    expected = {  # name: (state, done, planned, rate, its own rate?)
        "a-seed0": ("done", 120, 120, rate["a0"], True),
        "b-seed0": ("running", 45, planned, rate["b0"], True),
        "c-seed0": ("pending", 0, None, family, False),
        "a-seed1": ("pending", 60, planned, rate["a1"], True),
        "b-seed1": ("failed", 15, planned, rate["b1"], True),
        "c-seed1": ("pending", 0, None, family, False),
        "a-seed2": ("pending", 0, planned, (rate["a0"] + rate["a1"]) / 2, False),
        "b-seed2": ("pending", 0, planned, (rate["b0"] + rate["b1"]) / 2, False),
        "c-seed2": ("pending", 0, None, family, False),
    }
    got = {n: (r.state, r.done, r.planned, r.rate, r.measured) for n, r in runs.items()}
    assert got == expected
    left = {
        "a-seed0": 0.0,
        "b-seed0": (300 - 45) / 20,
        "a-seed1": (300 - 60) / 15,
        "b-seed1": (300 - 15) / 30,
        "a-seed2": 300 / 20,
        "b-seed2": 300 / 25,
    }
    assert {n: r.left_s for n, r in runs.items() if r.left_s is not None} == pytest.approx(left)
    totals = progress.totals(list(runs.values()))
    assert totals == {
        "done": 120 + 45 + 60 + 15,
        "planned": 120 + 5 * 300,
        "left_s": pytest.approx(12.75 + 16 + 9.5 + 15 + 12),
        "unplanned": 3,
        "unestimated": 0,
    }
    assert cli.main(["study", "status", made]) == 0
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"run\s+state\s+steps\s+rate\s+left", out[0])
    lines = dict(zip(expected, out[1:10], strict=True))
    assert re.fullmatch(r"a-seed0\s+done\s+120/120", lines["a-seed0"])
    pid = rf"\S+ pid {os.getpid()} since .*"
    assert re.fullmatch(
        rf"b-seed0\s+running\s+45/300\s+20 steps/s\s+13 s\s+{pid}", lines["b-seed0"]
    )
    assert re.fullmatch(r"c-seed0\s+pending\s+0/\?\s+22.5 steps/s\*\s+-", lines["c-seed0"])
    resumes = r"resumes from step 60"
    assert re.fullmatch(
        rf"a-seed1\s+pending\s+60/300\s+15 steps/s\s+16 s\s+{resumes}", lines["a-seed1"]
    )
    error = "ValueError: made up"
    assert re.fullmatch(
        rf"b-seed1\s+failed\s+15/300\s+30 steps/s\s+10 s\s+{error}", lines["b-seed1"]
    )
    assert re.fullmatch(r"b-seed2\s+pending\s+0/300\s+25 steps/s\*\s+12 s", lines["b-seed2"])
    assert out[-3] == (
        "total: 240 of 1620 steps (14.8 %) (3 run(s) not planned yet: none of their data "
        "started), about 1 min 5 s of training left at the measured rates"
    )
    assert out[-2] == "* the mean rate of the variant's measured runs (else its model family's)"
    assert out[-1] == "9 runs: 1 done, 1 running, 1 failed, 6 pending"


def test_durations_read_as_a_person_would():
    cases = {0: "0 s", 40.4: "40 s", 65.25: "1 min 5 s", 3600 * 3 + 25 * 60 + 10: "3 h 25 min"}
    cases |= {86400 * 2 + 3 * 3600 + 59: "2 d 3 h"}
    assert {s: progress.format_duration(s) for s in cases} == cases
