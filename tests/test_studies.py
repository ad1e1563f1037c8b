"""Studies end to end with real (tiny) runs: grid expansion and names, shards, resume after SIGKILL,
failures, refused mismatches, two shards at once, and the report's numbers against numpy."""

import csv
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxvae import cli, io
from jaxvae import config as config_lib
from jaxvae.studies import (
    Axis,
    Figure,
    Reference,
    Study,
    Variant,
    expand,
    load_study,
    progress,
    report,
    shard,
    state,
)
from jaxvae.studies import runs as runs_lib
from tests.conftest import CONFIGS, REPO

SMOKE = os.path.join(CONFIGS, "smoke.py")
ENV = dict(os.environ, XLA_FLAGS="", PYTHONUNBUFFERED="1")
METRICS = ("test_nelbo", "test_recon", "test_kl", "test_active_units")

# The tiny study: 2 betas x 2 seeds, each run 2 epochs of 2 steps (a checkpoint after each epoch).
STUDY_FILE = """
from jaxvae.config import load_config_file
from jaxvae.studies import Axis, Figure, Reference, Study


def get_study():
    config = load_config_file({smoke!r})
    config.train.epochs = 2
    config.train.log_every_steps = 1
    config.train.eval_every_epochs = 0
    config.data.limit_train = 128
    config.data.limit_test = 64
    config.eval.num_pictures = 4
    return Study(name={name!r}, base_config=config, {grid})
"""
TINY_GRID = """
        axes=(Axis("beta", key="objective.beta", values={betas}),),
        seeds=2,
        metrics={metrics!r},
        references=(Reference("beta=1", "test_nelbo", 550.0, source={source!r}, std=2.0),),
        figures=(
            Figure("rate_distortion", kind="metrics", x="test_kl", y="test_recon"),
            Figure("active_units", kind="axis", x="beta", y="test_active_units", log_x=True),
        ),
"""
RUN_NAMES = ["beta=1-seed0", "beta=4-seed0", "beta=1-seed1", "beta=4-seed1"]


def write_study(
    path, betas=(1.0, 4.0), source="a value made up for the test", *, name="tiny", grid=None
):
    grid = grid or TINY_GRID.format(betas=betas, metrics=METRICS, source=source)
    path.write_text(STUDY_FILE.format(smoke=SMOKE, name=name, grid=grid))
    return str(path)


def study_run(study_file, workdir, *extra, log=None):
    """`jaxvae study run` as a subprocess; with ``log``, as a background job (docs/studies.md):
    in a session of its own, no input, its output appended to the file ``log`` (the docs' `nice`
    is left out: it changes only how the job is scheduled, and would starve the job beside other
    test workers)."""
    command = [sys.executable, "-m", "jaxvae", "study", "run", study_file, "--workdir", workdir]
    command += list(extra)
    if log is None:
        return subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
            cwd=REPO,
        )
    with open(log, "a") as out:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=ENV,
            cwd=REPO,
        )


def finish(proc):
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def results_csv(workdir, tmp_path):
    """The study's results.csv, written as `study report` writes it (without the figures)."""
    path = tmp_path / f"results-{os.path.basename(workdir)}.csv"
    report.write_results_csv(str(path), report.collect(workdir))
    return path.read_text().splitlines()


def snapshot(directory):
    """Every file under ``directory`` with its size and mtime."""
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            st = os.stat(path)
            out[os.path.relpath(path, directory)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny study run in one uninterrupted process: (study file, study directory)."""
    root = tmp_path_factory.mktemp("study")
    # The study processes share compiled programs (the same bits; less compile time).
    ENV["JAX_COMPILATION_CACHE_DIR"] = str(root / "xla-cache")
    ENV["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    study_file = write_study(root / "tiny.py")
    workdir = str(root / "uninterrupted")
    rc, _, err = finish(study_run(study_file, workdir))
    assert rc == 0, err
    assert "4 trained, 0 done before" in err
    return study_file, workdir


def smoke_config():
    return config_lib.load_config_file(SMOKE)


# --- the definition ----------------------------------------------------------------------------


def test_grid_expands_seed_major_with_readable_names():
    study = Study(
        name="grid",
        base_config=smoke_config(),
        axes=(
            Axis("beta", key="objective.beta", values=(0.5, 2)),
            Axis(
                "size", levels={"small": {"model.hidden": (16,)}, "big": {"model.hidden": [64, 64]}}
            ),
        ),
        seeds=(3, 7),
    )
    runs = expand(study)
    assert [r.name for r in runs] == [
        f"beta={b},size={s}-seed{seed}"
        for seed in (3, 7)
        for b in ("0.5", "2")
        for s in ("small", "big")
    ]
    assert [r.index for r in runs] == list(range(8))
    r = runs[5]  # seed 7, beta 0.5, big
    assert (r.seed, r.config.seed, r.variant.name) == (7, 7, "beta=0.5,size=big")
    assert r.config.objective.beta == 0.5 and r.config.model.hidden == (64, 64)
    assert r.variant.coords == {"beta": 0.5, "size": "big"}
    assert isinstance(runs[2].config.objective.beta, float)  # the int 2 took the key's type
    # --seeds and command-line overrides
    quick = expand(study, seeds=1, overrides=["train.epochs=1", "data.limit_train=128"])
    assert [r.name for r in quick] == [r.name for r in runs[:4]]
    assert all(r.config.train.epochs == 1 and r.config.data.limit_train == 128 for r in quick)
    assert runs[0].config.train.epochs == 2  # the study's own runs are untouched
    # explicit variants, and none at all
    named = Study("named", smoke_config(), variants={"mlp16": {"model.hidden": (16,)}, "plain": {}})
    assert [r.name for r in expand(named)] == ["mlp16-seed0", "plain-seed0"]
    as_objects = Study(
        "named",
        smoke_config(),
        variants=(Variant("mlp16", {"model.hidden": (16,)}), Variant("plain")),
    )
    assert as_objects.grid() == named.grid()
    assert [r.name for r in expand(Study("one", smoke_config(), seeds=2))] == [
        "base-seed0",
        "base-seed1",
    ]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (lambda: {"name": "bad name"}, "study name 'bad name'"),
        (
            lambda: {"axes": (Axis("beta", key="objective.betta", values=(1.0,)),)},
            "unknown config key 'objective.betta'",
        ),
        (
            lambda: {"axes": (Axis("beta", key="objective.beta", values=("x",)),)},
            r"objective.beta='x': expected a value of type float",
        ),
        (
            lambda: {"axes": (Axis("b", key="objective.beta", values=(1.0, 1.0)),)},
            "level '1' appears twice",
        ),
        (
            lambda: {"axes": (Axis("lr", key="train.learning_rate", values=(-1.0,)),)},
            "train.learning_rate=-1.0",
        ),
        (lambda: {"variants": {"a": {"seed": 3}}}, "use seeds="),
        (
            lambda: {
                "variants": {"a": {}},
                "axes": (Axis("b", key="objective.beta", values=(1.0,)),),
            },
            "not both",
        ),
        (lambda: {"seeds": (0, 0)}, "seed 0 appears twice"),
        (lambda: {"seeds": ()}, "seeds is empty"),
        (lambda: {"metrics": ()}, "metrics is empty"),
        (
            lambda: {"references": (Reference("base", "test_nll", 1.0, source="x"),)},
            "'test_nll', which is not in metrics",
        ),
        (
            lambda: {"references": (Reference("nope", "test_nelbo", 1.0, source="x"),)},
            "unknown variant 'nope'",
        ),
        (
            lambda: {"figures": (Figure("rd", kind="metrics", x="test_kl", y="test_recon"),)},
            "x='test_kl' is not one of",
        ),
        (
            lambda: {"figures": (Figure("au", kind="axis", x="beta", y="test_nelbo"),)},
            "x='beta' is not an axis",
        ),
    ],
)
def test_bad_studies_name_the_bad_value(kwargs, match):
    """``kwargs`` is a function: some bad parts raise as soon as they are made."""
    with pytest.raises(ValueError, match=match):
        expand(Study(**{"name": "s", "base_config": smoke_config(), **kwargs()}))


def test_bad_parts_name_the_bad_value():
    with pytest.raises(ValueError, match="std=-1"):
        Reference("a", "m", 1.0, source="x", std=-1)
    with pytest.raises(ValueError, match="source"):
        Reference("a", "m", 1.0, source=" ")
    with pytest.raises(ValueError, match="kind 'pie'"):
        Figure("f", kind="pie", x="a", y="b")
    with pytest.raises(ValueError, match=r"ylim=\(1, 0\), expected \(low, high\)"):
        Figure("f", kind="metrics", x="a", y="b", ylim=(1, 0))
    with pytest.raises(ValueError, match="taken by a standard figure"):
        Figure("comparison", kind="metrics", x="a", y="b")
    with pytest.raises(ValueError, match="either key= and values=, or levels="):
        Axis("a")
    study = Study(
        "s", smoke_config(), axes=(Axis("beta", key="objective.beta", values=(1.0, 2.0)),), seeds=3
    )
    with pytest.raises(ValueError, match="--seeds 4: expected 1..3"):
        expand(study, seeds=4)
    with pytest.raises(ValueError, match="the study varies 'objective.beta'"):
        expand(study, overrides=["objective.beta=1"])
    with pytest.raises(ValueError, match="--config.seed"):
        expand(study, overrides=["seed=1"])
    with pytest.raises(ValueError, match="unknown config key 'train.epoch'"):
        expand(study, overrides=["train.epoch=1"])


def beta_grid(betas, seeds):
    """A study of the smoke config over ``betas`` x ``seeds`` (never run here)."""
    axes = (Axis("beta", key="objective.beta", values=betas),)
    return Study("s", smoke_config(), axes=axes, seeds=seeds)


def test_shards_are_disjoint_cover_all_and_are_deterministic():
    study = beta_grid((1.0, 2.0, 4.0), seeds=5)
    runs = expand(study)
    for n in (1, 2, 4, 7, 20):
        parts = [[r.name for r in shard(runs, i, n)] for i in range(n)]
        names = [name for part in parts for name in part]
        assert sorted(names) == sorted(r.name for r in runs) and len(set(names)) == len(runs)
        assert parts == [[r.name for r in shard(expand(study), i, n)] for i in range(n)]
    assert [r.name for r in shard(runs, 1, 4)] == [runs[i].name for i in (1, 5, 9, 13)]
    assert runs_lib.parse_shard("3/8") == (3, 8)
    for bad in ("8/8", "1", "-1/2", "a/b", "0/0"):
        with pytest.raises(ValueError, match="--shard"):
            runs_lib.parse_shard(bad)


def test_run_patterns_select_by_name_and_refuse_a_pattern_that_matches_nothing():
    runs = expand(beta_grid((1.0, 2.0, 10.0), seeds=2))
    names = lambda patterns: [r.name for r in runs_lib.select(runs, patterns)]
    assert names(None) == [r.name for r in runs]
    assert names("beta=1-*") == ["beta=1-seed0", "beta=1-seed1"]  # not beta=10
    expected = ["beta=2-seed0", "beta=1-seed1", "beta=2-seed1", "beta=10-seed1"]
    assert names("*-seed1, beta=2-seed0") == expected  # in the study's order
    for bad, match in (("beta=3-*", "'beta=3-\\*' matches no run"), ("beta=1-*,", "empty")):
        with pytest.raises(ValueError, match=match):
            runs_lib.select(runs, bad)


# --- running -----------------------------------------------------------------------------------


def test_a_study_directory_holds_ordinary_runs(tiny, capsys):
    study_file, workdir = tiny
    assert sorted(os.listdir(workdir)) == ["runs", "state", "study.json"]
    assert sorted(os.listdir(os.path.join(workdir, "runs"))) == sorted(RUN_NAMES)
    assert os.listdir(os.path.join(workdir, "state")) == []  # no locks left, nothing failed
    study_json = json.load(open(os.path.join(workdir, "study.json")))
    runs = expand(load_study(study_file))
    assert study_json == json.loads(json.dumps(runs_lib.canonical(load_study(study_file), runs)))
    for run in runs:
        run_dir = os.path.join(workdir, "runs", run.name)
        saved = json.load(open(os.path.join(run_dir, "config.json")))
        assert saved == json.loads(config_lib.to_json(run.config))
        summary = json.load(open(os.path.join(run_dir, "summary.json")))
        assert summary["seed"] == run.seed and summary["steps"] == 4
    assert cli.main(["study", "status", workdir]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "4 runs: 4 done, 0 running, 0 failed, 0 pending"
    assert all(re.search(rf"^{re.escape(n)}\s+done\s+4/4$", out, re.M) for n in RUN_NAMES)


def test_report_numbers_against_numpy(tiny, capsys):
    _, workdir = tiny
    assert cli.main(["study", "report", workdir]) == 0
    printed = capsys.readouterr().out
    out = os.path.join(workdir, "report")
    for name in ("learning_curves", "comparison", "rate_distortion", "active_units"):
        with open(os.path.join(out, f"{name}.png"), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", name
    summaries = {
        n: json.load(open(os.path.join(workdir, "runs", n, "summary.json"))) for n in RUN_NAMES
    }
    results = json.load(open(os.path.join(out, "results.json")))
    rows = {(r["variant"], r["metric"]): r for r in results["rows"]}
    md = open(os.path.join(out, "report.md")).read()
    table = {
        line.split(" | ")[0].strip("| "): line
        for line in md.split("## Against references")[0].splitlines()
        if line.startswith("| beta=")
    }
    for variant in ("beta=1", "beta=4"):
        for j, metric in enumerate(METRICS):
            x = np.array([summaries[f"{variant}-seed{s}"][metric] for s in (0, 1)], np.float64)
            mean, std = x.mean(), x.std(ddof=1)
            row = rows[(variant, metric)]
            assert row["n"] == 2
            np.testing.assert_allclose(
                [row["mean"], row["std"]], [mean, std], rtol=1e-12, atol=1e-12
            )
            # report.md: "mean ± std", rounded to the shown decimals
            cell = table[variant].strip("| ").split(" | ")[2 + j]
            shown = [float(v) for v in cell.split(" ± ")]
            tol = 0.5 * 10.0 ** -len(cell.split(" ± ")[0].partition(".")[2]) + 1e-9
            assert abs(shown[0] - mean) <= tol and abs(shown[1] - std) <= tol, (cell, mean, std)
            assert cell in printed  # `study report` prints the table
    ref = rows[("beta=1", "test_nelbo")]
    assert ref["reference"] == {
        "value": 550.0,
        "std": 2.0,
        "source": "a value made up for the test",
    }
    nelbo = [summaries[f"beta=1-seed{s}"]["test_nelbo"] for s in (0, 1)]
    assert ref["difference"] == pytest.approx(np.mean(nelbo) - 550.0, abs=1e-12)
    assert "a value made up for the test" in md and "550.0" in md
    # results.csv: a row per run with every seed's exact values
    with open(os.path.join(out, "results.csv")) as f:
        lines = list(csv.DictReader(f))
    assert [r["run"] for r in lines] == RUN_NAMES
    for r in lines:
        assert r["state"] == "done" and float(r["beta"]) in (1.0, 4.0)
        for metric in METRICS:
            assert float(r[metric]) == summaries[r["run"]][metric]


def test_a_torn_last_metrics_line_keeps_the_runs_curves(tiny, tmp_path):
    """A run killed while it appended to metrics.jsonl still has every curve in the report."""
    import shutil

    _, workdir = tiny
    torn = str(tmp_path / "torn")
    shutil.copytree(workdir, torn)
    path = os.path.join(torn, "runs", RUN_NAMES[0], "metrics.jsonl")
    with open(path, "a") as f:
        f.write('{"epoch": 2.5, "loss": 12')  # no newline: the kill came mid-line
    before, after = report.collect(workdir).curves, report.collect(torn).curves
    variant = RUN_NAMES[0].rsplit("-seed", 1)[0]
    assert len(before["loss"][variant][0]) == 4  # 2 epochs of 2 steps, a line per step
    assert after == before


def _final(workdir, name):
    """What an uninterrupted run and a resumed one must share: the final parameters, the
    figures, and the training lines (without their timing)."""
    run = os.path.join(workdir, "runs", name)
    summary = json.load(open(os.path.join(run, "summary.json")))
    lines = [
        {k: v for k, v in r.items() if k != "images_per_sec"}
        for r in io.read_jsonl(os.path.join(run, "metrics.jsonl"))
    ]
    return {k: summary[k] for k in ("params_digest", "steps", *METRICS)}, lines


def test_a_background_study_killed_mid_run_continues_bit_identically(tiny, tmp_path, capsys):
    """Seed 0 only (2 runs of 4 steps), to keep it short: the study started as a background job,
    SIGKILLed while a run is between its first checkpoint and its end; `status` and `report`
    on the partial study; the same command again, to the end: every run as the uninterrupted
    study's, the finished one not redone."""
    study_file, reference = tiny
    workdir, log = str(tmp_path / "background"), str(tmp_path / "background.log")
    names = RUN_NAMES[:2]
    proc = study_run(study_file, workdir, "--seeds", "1", log=log)
    killed, deadline = None, time.time() + 240
    while killed is None and proc.poll() is None and time.time() < deadline:
        for name in names:
            run = os.path.join(workdir, "runs", name)
            if os.path.isdir(os.path.join(run, "checkpoints", "2")) and not os.path.exists(
                os.path.join(run, "summary.json")
            ):
                proc.send_signal(signal.SIGKILL)
                killed = name
                break
        time.sleep(0.01)
    proc.wait()
    assert killed and proc.returncode == -signal.SIGKILL, open(log).read()
    assert not os.path.exists(os.path.join(workdir, "runs", killed, "summary.json"))
    before = names[: names.index(killed)]  # finished before the kill
    # Where it stands: the killed run pending from its checkpoint, its lock stale.
    assert cli.main(["study", "status", workdir]) == 0
    out = capsys.readouterr().out
    assert re.search(
        rf"^{re.escape(killed)}\s+pending\s+2/4\s+\S+ steps/s\s+\S+ s\s+resumes from step 2$",
        out,
        re.M,
    )
    assert f"total: {2 + 4 * len(before)} of 8 steps" in out
    assert out.splitlines()[-1] == f"2 runs: {len(before)} done, 0 running, 0 failed, " + (
        f"{2 - len(before)} pending"
    )
    # The report of the partial study: what has finished.
    assert cli.main(["study", "report", workdir]) == 0
    assert "**Incomplete**" in open(os.path.join(workdir, "report", "report.md")).read()
    rows = list(csv.DictReader(open(os.path.join(workdir, "report", "results.csv"))))
    assert [r["state"] for r in rows] == ["done"] * len(before) + ["pending"] * (2 - len(before))
    mtimes = {
        n: os.stat(os.path.join(workdir, "runs", n, "summary.json")).st_mtime_ns for n in before
    }
    # The same command again, to the end.
    proc = study_run(study_file, workdir, "--seeds", "1", log=log)
    assert proc.wait(timeout=300) == 0, open(log).read()
    assert f"{2 - len(before)} trained, {len(before)} done before" in open(log).read()
    for n, mtime in mtimes.items():  # not redone
        assert os.stat(os.path.join(workdir, "runs", n, "summary.json")).st_mtime_ns == mtime
    resumed = json.load(open(os.path.join(workdir, "runs", killed, "summary.json")))
    assert resumed["resumed_from_step"] == 2  # through the runner's own resume
    for name in names:  # bit-identical to the uninterrupted study; no line lost or doubled
        assert _final(workdir, name) == _final(reference, name), name
    assert cli.main(["study", "status", workdir]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2:] == [
        "total: 8 of 8 steps (100.0 %), every run done",
        "2 runs: 2 done, 0 running, 0 failed, 0 pending",
    ]


def test_two_shards_at_once_equal_one_process(tiny, tmp_path):
    """Seed 0 only (the first half of the canonical order, a run per shard), to keep it short."""
    study_file, reference = tiny
    workdir = str(tmp_path / "sharded")
    procs = [study_run(study_file, workdir, "--seeds", "1", "--shard", f"{i}/2") for i in range(2)]
    results = [finish(p) for p in procs]
    for (rc, _, err), name in zip(results, RUN_NAMES[:2], strict=True):
        assert rc == 0, err
        assert "1 of 2 runs" in err and "1 trained" in err and name in err
    json.load(open(os.path.join(workdir, "study.json")))  # whole, not torn
    assert [n for n in os.listdir(workdir) if n.endswith(".tmp")] == []
    assert results_csv(workdir, tmp_path) == results_csv(reference, tmp_path)[:3]


def test_selected_runs_are_split_by_the_shards_and_equal_the_whole_studys(tiny, tmp_path):
    """`--runs 'beta=4-*'` with two shards: one of the two beta=4 runs each, the same results as
    in the whole study; the other runs stay pending."""
    study_file, reference = tiny
    workdir = str(tmp_path / "selected")
    procs = [
        study_run(study_file, workdir, "--runs", "beta=4-*", "--shard", f"{i}/2") for i in range(2)
    ]
    for (rc, _, err), name in zip(
        map(finish, procs), ("beta=4-seed0", "beta=4-seed1"), strict=True
    ):
        assert rc == 0, err
        assert "1 of 4 runs" in err and "1 trained" in err and name in err, err
    rows = list(csv.DictReader(results_csv(workdir, tmp_path)))
    expected = list(csv.DictReader(results_csv(reference, tmp_path)))
    for row, ref in zip(rows, expected, strict=True):
        if row["run"].startswith("beta=4-"):
            assert row == ref
        else:
            assert row["state"] == "pending" and row["test_nelbo"] == ""


def test_an_export_is_the_study_without_its_weights(tiny, tmp_path, capsys):
    """`study export`: the done runs' record only; reported as the study itself, and `study run`
    on it trains only what was not done; exporting again adds the runs done since."""
    from jaxvae.studies import execute, export

    study_file, workdir = tiny
    partial = tmp_path / "partial"
    shutil.copytree(workdir, partial)
    os.remove(partial / "runs" / "beta=4-seed1" / "summary.json")  # as if still training
    dest = str(tmp_path / "export")
    assert cli.main(["study", "export", str(partial), dest]) == 0
    assert capsys.readouterr().out.strip() == f"3 done runs exported to {dest}"
    assert sorted(os.listdir(os.path.join(dest, "runs"))) == sorted(RUN_NAMES[:2] + RUN_NAMES[2:3])
    for name in RUN_NAMES[:3]:
        files = sorted(os.listdir(os.path.join(dest, "runs", name)))
        assert files == sorted(
            n for n in export.RECORD if os.path.exists(partial / "runs" / name / n)
        )
        assert "metrics.jsonl" in files and "summary.json" in files
    size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(dest) for f in fs)
    assert size < 0.1 * sum(
        os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(partial) for f in fs
    )
    assert results_csv(dest, tmp_path) == results_csv(str(partial), tmp_path)
    ours, theirs = report.collect(dest), report.collect(str(partial))
    assert ours.curves == theirs.curves and ours.values == theirs.values

    trained = []
    fake_train = lambda config, run_dir: trained.append(os.path.basename(run_dir)) or {}
    outcome = execute.run_study(load_study(study_file), dest, train=fake_train, log=lambda m: None)
    assert sorted(outcome.done_before) == sorted(RUN_NAMES[:3]) and trained == ["beta=4-seed1"]

    assert cli.main(["study", "export", workdir, dest]) == 0  # the same study: adds the 4th
    assert capsys.readouterr().out.startswith("4 done runs")
    assert results_csv(dest, tmp_path) == results_csv(workdir, tmp_path)

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    for target in (str(other), workdir):
        assert cli.main(["study", "export", workdir, target]) == 2
        assert "Traceback" not in capsys.readouterr().err
    assert os.listdir(other) == ["notes.txt"]


def test_seeds_at_once_equal_one_run_at_a_time(tiny, tmp_path):
    """`--seeds-at-once 2` trains each beta's two seeds in one vectorized program: the same runs
    (within 1e-4 nats) as one run at a time."""
    study_file, reference = tiny
    workdir = str(tmp_path / "vectorized")
    rc, _, err = finish(study_run(study_file, workdir, "--seeds-at-once", "2"))
    assert rc == 0, err
    assert "4 trained, 0 done before" in err and err.count("2 seeds in one program") == 2
    rows = list(csv.DictReader(results_csv(workdir, tmp_path)))
    expected = list(csv.DictReader(results_csv(reference, tmp_path)))
    assert [r["run"] for r in rows] == [r["run"] for r in expected]
    for row, ref in zip(rows, expected, strict=True):
        for metric in METRICS:
            assert abs(float(row[metric]) - float(ref[metric])) < 1e-4, (row["run"], metric)


def test_a_failed_run_is_recorded_and_the_others_go_on(tiny, tmp_path, capsys):
    grid = 'variants={"huge_batch": {"train.batch_size": 4096}, "ok": {}}, metrics=("test_nelbo",)'
    study_file = write_study(tmp_path / "failing.py", name="failing", grid=grid)
    workdir = str(tmp_path / "study")
    rc, _, err = finish(study_run(study_file, workdir))
    assert rc == 1, err
    assert "1 trained, 0 done before, 0 running elsewhere, 1 failed" in err
    assert "Traceback" not in err
    failure = json.load(open(os.path.join(workdir, "state", "huge_batch-seed0.failed.json")))
    assert failure["error"].startswith("ValueError: train.batch_size=4096 is larger than the 128")
    assert "Traceback" in failure["traceback"]
    assert cli.main(["study", "status", workdir]) == 0
    out = capsys.readouterr().out
    # its rate (marked *) is its model family's: the other run's, a VAE too; it has no plan
    failed = r"^huge_batch-seed0\s+failed\s+0/\?\s+[\d.]+ steps/s\*\s+-\s+ValueError: train.batch_size=4096"
    assert re.search(failed, out, re.M)
    assert re.search(r"^ok-seed0\s+done\s+4/4$", out, re.M)
    assert out.splitlines()[-1] == "2 runs: 1 done, 0 running, 1 failed, 0 pending"
    assert cli.main(["study", "report", workdir]) == 0
    md = open(os.path.join(workdir, "report", "report.md")).read()
    assert "## Failed runs" in md and "huge_batch-seed0 | ValueError: train.batch_size=4096" in md
    assert "**Incomplete**" in md


def test_a_stop_request_stops_the_study_and_is_no_failure(tmp_path, monkeypatch, capsys):
    """A preempted run (its checkpoint written) ends `study run` with exit code 75, unrecorded
    as a failure, its lock released, the later runs not started."""
    import jaxvae
    from jaxvae import preemption

    study_file = write_study(tmp_path / "tiny.py")
    workdir = str(tmp_path / "study")
    started = []

    def preempted(config, run_dir):
        started.append(os.path.basename(run_dir))
        raise preemption.Preempted(3, "SIGTERM")

    monkeypatch.setattr(jaxvae, "train", preempted)
    assert (
        cli.main(["study", "run", study_file, "--workdir", workdir, "--seeds-at-once", "1"]) == 75
    )
    assert started == [RUN_NAMES[0]]
    assert "jaxvae study: stopped by SIGTERM at step 3" in capsys.readouterr().err
    assert os.listdir(os.path.join(workdir, "state")) == []  # no failure, no lock left


def test_a_different_study_is_refused_and_nothing_changes(tiny, tmp_path, capsys):
    study_file, workdir = tiny
    before = snapshot(workdir)
    other = write_study(tmp_path / "other.py", betas=(1.0, 8.0))
    for args in (
        [other],
        [study_file, "--config.train.epochs=2"],
        [study_file, "--seeds", "1"],
    ):
        assert cli.main(["study", "run", *args, "--workdir", workdir]) == 2, args
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert err.startswith("jaxvae study: error: ") and "holds a different study" in err, err
    assert snapshot(workdir) == before
    # Report settings (here a reference's source) may change: nothing is retrained.
    fixed = write_study(tmp_path / "fixed.py", source="a corrected source")
    assert cli.main(["study", "run", fixed, "--workdir", workdir]) == 0
    assert "0 trained, 4 done before" in capsys.readouterr().err
    assert (
        json.load(open(os.path.join(workdir, "study.json")))["report"]["references"][0]["source"]
        == "a corrected source"
    )
    assert {k: v for k, v in snapshot(workdir).items() if k.startswith("runs")} == {
        k: v for k, v in before.items() if k.startswith("runs")
    }
    assert cli.main(["study", "run", study_file, "--workdir", workdir]) == 0  # and back
    capsys.readouterr()


def test_a_config_key_added_since_keeps_the_study_and_its_runs(tiny, tmp_path, capsys):
    """A study directory written before a config key existed (here: train.adam_eps stripped from
    study.json and the runs' config.json) is still this study at the key's default, its runs
    done; at another value it is a different study."""
    import shutil

    study_file, workdir = tiny
    old = str(tmp_path / "old")
    shutil.copytree(workdir, old)

    def strip(config):
        del config["train"]["adam_eps"]

    study_json = json.load(open(os.path.join(old, "study.json")))
    for run in study_json["identity"]["runs"]:
        strip(run["config"])
    io.write_json(os.path.join(old, "study.json"), study_json)
    for name in RUN_NAMES:
        path = os.path.join(old, "runs", name, "config.json")
        config = json.load(open(path))
        strip(config)
        io.write_json(path, config)
    assert cli.main(["study", "run", study_file, "--workdir", old]) == 0
    assert "0 trained, 4 done before" in capsys.readouterr().err
    assert (
        cli.main(["study", "run", study_file, "--workdir", old, "--config.train.adam_eps=1e-4"])
        == 2
    )
    err = capsys.readouterr().err
    assert "holds a different study" in err and "adam_eps" in err, err


def test_config_differences_treat_a_key_added_at_its_default_as_none():
    base = json.loads(config_lib.to_json(smoke_config()))
    assert config_lib.config_differences(base, base) == []
    older = json.loads(json.dumps(base))
    del older["train"]["adam_eps"]  # written before the key existed
    assert config_lib.config_differences(older, base) == []
    changed = json.loads(json.dumps(base))
    changed["train"]["adam_eps"] = 1e-4
    assert config_lib.config_differences(older, changed) == ["train.adam_eps"]
    assert config_lib.config_differences(base, changed) == ["train.adam_eps"]
    assert config_lib.config_differences(base, older) == ["train.adam_eps"]  # a key removed
    tupled = json.loads(json.dumps(base))
    tupled["model"]["hidden"] = tuple(base["model"]["hidden"])
    assert config_lib.config_differences(base, tupled) == []


def test_mismatch_message_says_what_differs(tiny, tmp_path, capsys):
    _, workdir = tiny
    other = write_study(tmp_path / "other.py", betas=(1.0, 8.0))
    assert cli.main(["study", "run", other, "--workdir", workdir]) == 2
    err = capsys.readouterr().err
    assert "new runs ['beta=8-seed0', 'beta=8-seed1']" in err and "no runs ['beta=4-seed0'" in err


def test_locks_tell_running_from_a_killed_process(tmp_path):
    study = Study("locks", smoke_config(), seeds=2)
    runs = expand(study)
    workdir = str(tmp_path / "study")
    assert state.init_study_dir(workdir, runs_lib.canonical(study, runs)) is False
    assert state.init_study_dir(workdir, runs_lib.canonical(study, runs)) is True
    path = state.lock_path(workdir, "base-seed0")
    lock = state.RunLock(path)
    assert lock.acquire()
    assert not state.RunLock(path).acquire()  # held by a live process
    states = progress.progress(workdir)
    assert [s.state for s in states] == ["running", "pending"]
    assert states[0].detail.startswith(f"{os.uname().nodename} pid {os.getpid()}")
    lock.release()
    assert [s.state for s in progress.progress(workdir)] == ["pending", "pending"]
    # A lock left by a process that is gone is stale: pending, and taken over.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with open(path, "w") as f:
        json.dump({"host": os.uname().nodename, "pid": dead.pid, "process_start": 0.0}, f)
    assert [s.state for s in progress.progress(workdir)] == ["pending", "pending"]
    again = state.RunLock(path)
    assert again.acquire()
    again.release()
    # Another host's lock counts while its heartbeat is fresh.
    with open(path, "w") as f:
        json.dump({"host": "elsewhere", "pid": 1}, f)
    assert progress.progress(workdir)[0].state == "running"
    old = time.time() - state.STALE_S - 1
    os.utime(path, (old, old))
    assert progress.progress(workdir)[0].state == "pending"


def test_a_live_lock_survives_a_clock_step_and_release_removes_only_its_own(tmp_path):
    """The wall clock moved since a lock was taken (its recorded start seconds off): the holder
    is still live, by the start counted since boot. A lock taken over from its holder is not
    removed when the old holder releases."""
    path = str(tmp_path / "run.lock")
    lock = state.RunLock(path)
    assert lock.acquire()
    info = json.load(open(path))
    assert info["process_since_boot"] is not None and info["pid"] == os.getpid()
    info["process_start"] -= 5.0  # what a 5 s clock step makes of the recorded start
    with open(path, "w") as f:
        json.dump(info, f)
    assert state.lock_holder(path)["pid"] == os.getpid()
    assert not state.RunLock(path).acquire()
    info["process_since_boot"] -= 5.0  # a later process that reused the pid
    with open(path, "w") as f:
        json.dump(info, f)
    assert state.lock_holder(path) is None
    second = state.RunLock(path)
    assert second.acquire()  # taken over
    lock.release()  # the first holder ends: the second's lock stays
    assert json.load(open(path))["token"] == json.loads(second._text)["token"]
    assert state.lock_holder(path) is not None
    second.release()
    assert not os.path.exists(path)


def test_mean_std_is_numpys(tmp_path):
    rng = np.random.default_rng(0)
    for n in (2, 3, 7):
        x = rng.normal(size=n) * 10
        mean, std, count = report.mean_std(list(x))
        assert (mean, std, count) == pytest.approx((np.mean(x), np.std(x, ddof=1), n), rel=1e-12)
    mean, std, count = report.mean_std([3.5, math.nan])
    assert (mean, count) == (3.5, 1) and math.isnan(std)
    assert report.fmt_mean_std(240.5312, 0.4123) == "240.53 ± 0.41"
    assert report.fmt_mean_std(12.0, 0.0) == "12 ± 0"
    assert report.fmt_mean_std(3.5, math.nan) == "3.500"
    assert report.fmt_mean_std(16.0, math.nan) == "16"


@pytest.mark.parametrize(
    "args, match",
    [
        (
            ["study", "run", "nope.py", "--workdir", "{tmp}/w"],
            "study file 'nope.py' does not exist",
        ),
        (["study", "run", "{study}", "--workdir", "{tmp}/w", "--shard", "2/2"], "--shard '2/2'"),
        (["study", "run", "{study}", "--workdir", "{tmp}/w", "--seeds", "0"], "--seeds 0"),
        (
            ["study", "run", "{study}", "--workdir", "{tmp}/w", "--config.train.epoch=1"],
            "unknown config key",
        ),
        (["study", "run", "{study}", "--workdir", "{tmp}"], "is not empty and holds no study.json"),
        (["study", "status", "{tmp}/missing"], "does not exist"),
        (["study", "report", "{tmp}"], "holds no study"),
        (["study", "status", "{tmp}", "--config.train.epochs=1"], "apply to `study run` only"),
        (["study", "run", "{study}"], "--workdir"),
        (["study"], "run,status,report,export"),
        (
            ["study", "run", "{study}", "--workdir", "{tmp}/w", "--runs", "beta=9*"],
            "--runs: 'beta=9*' matches no run",
        ),
        (["study", "run", "{tmp}/syntax.py", "--workdir", "{tmp}/w"], "syntax.py': SyntaxError"),
        (
            ["study", "run", "{tmp}/bad.py", "--workdir", "{tmp}/w"],
            "bad.py': study name 'bad name'",
        ),
    ],
)
def test_cli_errors_are_one_line_and_exit_2(args, match, tmp_path, capsys):
    study_file = write_study(tmp_path / "tiny.py")
    (tmp_path / "syntax.py").write_text("def get_study(:\n")
    write_study(tmp_path / "bad.py", name="bad name")
    args = [a.format(tmp=tmp_path, study=study_file) for a in args]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert match in err, err
    assert not os.path.exists(tmp_path / "w")


def test_train_terms_sit_at_the_middle_of_their_window(tmp_path):
    path = tmp_path / "metrics.jsonl"
    records = [
        {"step": 25, "epoch": 0.25, "loss": 9.0},
        {"step": 100, "epoch": 1.0, "loss": 7.0},
        {"step": 100, "epoch": 1.0, "test_nelbo": 8.0},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    curves = report._read_curves(str(path), ["loss", "test_nelbo", "kl"])
    assert curves == {
        "loss": [(25, 0.125, 9.0), (100, 0.625, 7.0)],
        "test_nelbo": [(100, 1.0, 8.0)],
        "kl": [],
    }
