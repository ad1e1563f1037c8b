"""Seeds in one compiled program (jaxvae.seeds): the vectorized runs equal sequential ones (within
1e-4 nats), write the same run directories, resume bit for bit after a stop request, and fall
back to one-by-one training where they cannot share a program."""

import io
import json
import os
import signal
import threading
import time

import numpy as np
import pytest

import jaxvae
from jaxvae import checkpoint, layout, preemption, seeds
from jaxvae import config as config_lib
from tests.conftest import CONFIGS, REPO

SEEDS = (0, 1)


def smoke(seed=0, **changes):
    config = config_lib.load_config_file(os.path.join(CONFIGS, "smoke.py"))
    config.seed = seed
    config.train.log_every_steps = 4
    config.train.eval_every_epochs = 1
    config.data.validation_size = 64  # validation figures and early stopping's bookkeeping too
    config.eval.num_pictures = 4
    for key, value in changes.items():
        node = config
        *path, last = key.split(".")
        for p in path:
            node = node[p]
        node[last] = value
    return config


def records(workdir):
    with open(layout.path(workdir, layout.METRICS)) as f:
        return [json.loads(line) for line in f]


def files(workdir):
    """The run directory's files, checkpoints as their steps (Orbax names its data files by hash),
    TensorBoard event files as one name (theirs carry the host and time)."""
    out = set()
    for name in os.listdir(workdir):
        path = os.path.join(workdir, name)
        if os.path.isdir(path):
            out |= {f"{name}/{step}" for step in os.listdir(path)}
        else:
            out.add("events" if ".tfevents." in name else name)
    return out


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """The smoke config's three seeds, trained one by one and as one vectorized group."""
    root = tmp_path_factory.mktemp("seeds")
    configs = [smoke(s) for s in SEEDS]
    stream = io.StringIO()
    sequential = [jaxvae.train(c, str(root / f"seq{c.seed}"), stream=stream) for c in configs]
    vec_dirs = [str(root / f"vec{c.seed}") for c in configs]
    vectorized = seeds.train_seeds(configs, vec_dirs, stream=stream)
    return root, sequential, vectorized, stream.getvalue()


def test_vectorized_seeds_equal_sequential_runs(both):
    root, sequential, vectorized, log = both
    assert "2 seeds in one program" in log
    figures = ("test_nelbo", "test_recon", "test_kl", "val_nelbo", "test_active_units")
    for seed, a, b in zip(SEEDS, sequential, vectorized, strict=True):
        assert a["seed"] == b["seed"] == seed and a["steps"] == b["steps"] == 16
        for k in figures:
            if k in a:
                assert abs(a[k] - b[k]) < 1e-4, (seed, k, a[k], b[k])
        ra, rb = records(root / f"seq{seed}"), records(root / f"vec{seed}")
        assert [sorted(r) for r in ra] == [sorted(r) for r in rb]  # the same records, in order
        for x, y in zip(ra, rb, strict=True):
            for k, v in x.items():
                if k != "images_per_sec":
                    assert abs(v - y[k]) < 1e-4, (seed, k, v, y[k])
    # The seeds differ from each other: each was trained from its own seed.
    assert len({round(s["test_nelbo"], 3) for s in vectorized}) == 2


def test_vectorized_runs_write_the_same_run_directories(both):
    root, _, _, _ = both
    for seed in SEEDS:
        a, b = str(root / f"seq{seed}"), str(root / f"vec{seed}")
        assert files(a) == files(b)
        assert checkpoint.steps(a) == checkpoint.steps(b)
        assert json.load(open(os.path.join(a, layout.CONFIG))) == json.load(
            open(os.path.join(b, layout.CONFIG))
        )
        sa = json.load(open(os.path.join(a, layout.SUMMARY)))
        sb = json.load(open(os.path.join(b, layout.SUMMARY)))
        timing = {"wall_s", "compile_s", "train_images_per_sec", "peak_host_memory_mb"}
        assert set(sa) == set(sb)
        exact = {k for k in sa if k not in timing and not isinstance(sa[k], float)}
        exact -= {"params_digest"}  # the bits of the parameters differ by rounding
        assert {k: sa[k] for k in exact} == {k: sb[k] for k in exact}


def test_a_vectorized_run_resumes_alone_as_an_ordinary_run(both, tmp_path):
    """A vectorized seed's checkpoint is an ordinary one: `jaxvae train` continues it alone."""
    root, _, vectorized, _ = both
    config = smoke(1, **{"train.epochs": 3})
    # The same run with one more epoch is a different config; copy the last checkpoint into a
    # fresh run directory of the longer config and let the runner resume it.
    import shutil

    src = str(root / "vec1")
    dst = str(tmp_path / "longer")
    shutil.copytree(os.path.join(src, layout.CHECKPOINTS), os.path.join(dst, "checkpoints"))
    shutil.copy(os.path.join(src, layout.RUN_INFO), os.path.join(dst, layout.RUN_INFO))
    with open(os.path.join(dst, layout.CONFIG), "w") as f:
        f.write(config_lib.to_json(config))
    summary = jaxvae.train(config, dst, stream=io.StringIO())
    assert summary["resumed_from_step"] == vectorized[1]["steps"] == 16
    assert summary["steps"] == 24


def test_a_stopped_group_resumes_bit_for_bit(both, tmp_path):
    """A stop request mid-group saves every seed; the same call again finishes them, equal to
    the uninterrupted group bit for bit (the parameters' digest)."""
    root, _, vectorized, _ = both
    configs = [smoke(s, **{"train.steps_per_dispatch": 1}) for s in SEEDS]
    dirs = [str(tmp_path / f"vec{s}") for s in SEEDS]

    def stop_after_first_record():
        deadline = time.time() + 120
        metrics = layout.path(dirs[0], layout.METRICS)
        # The first record is written inside the training loop, where SIGTERM is a stop request.
        while time.time() < deadline and not (os.path.exists(metrics) and os.path.getsize(metrics)):
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=stop_after_first_record)
    killer.start()
    with pytest.raises(preemption.Preempted) as stopped:
        seeds.train_seeds(configs, dirs, stream=io.StringIO())
    killer.join()
    assert 0 < stopped.value.step < 16
    assert all(checkpoint.steps(d)[-1] == stopped.value.step for d in dirs)
    assert not any(os.path.exists(os.path.join(d, layout.SUMMARY)) for d in dirs)
    resumed = seeds.train_seeds(configs, dirs, stream=io.StringIO())
    for a, b in zip(vectorized, resumed, strict=True):
        assert b["resumed_from_step"] == stopped.value.step
        assert b["params_digest"] == a["params_digest"]
        assert b["test_nelbo"] == a["test_nelbo"]


def test_runs_resuming_from_different_steps_are_trained_one_by_one(both, tmp_path, monkeypatch):
    root, _, _, _ = both
    import shutil

    dirs = [str(tmp_path / "a"), str(tmp_path / "b")]
    shutil.copytree(root / "seq0", dirs[0])
    (tmp_path / "a" / "summary.json").unlink()  # stopped at step 16 before its summary: resumes
    calls = []
    monkeypatch.setattr(jaxvae.api, "train", lambda c, w, **kw: calls.append((c.seed, w)) or {})
    stream = io.StringIO()
    seeds.train_seeds([smoke(0), smoke(1)], dirs, stream=stream)
    assert "seeds trained one by one: they resume from different steps [16, 0]" in stream.getvalue()
    assert calls == [(0, dirs[0]), (1, dirs[1])]


def test_why_not_and_groups():
    a, b, c = smoke(0), smoke(1), smoke(2)
    assert seeds.why_not([a, b, c]) is None
    assert seeds.why_not([a]) == "a single run"
    assert seeds.why_not([a, smoke(0)]) == "repeated seeds [0, 0]"
    other = smoke(1, **{"objective.beta": 2.0})
    assert seeds.why_not([a, other]) == (
        "the configs differ in more than the seed: ['objective.beta']"
    )
    static = [smoke(s, **{"data.binarize": "static"}) for s in (0, 1)]
    assert "static" in seeds.why_not(static)
    # Same config but the seed, in groups of at most 2, in order of their first member.
    d = smoke(3)
    assert seeds.groups([a, other, b, c, d], 2) == [[0, 2], [1], [3, 4]]
    assert seeds.groups([a, b, c], 1) == [[0], [1], [2]]
    assert seeds.groups(static, 4) == [[0], [1]]
    with pytest.raises(ValueError, match="seeds per program must be >= 1, got 0"):
        seeds.groups([a], 0)
    assert seeds.default_group_size("cpu") == 1
    # The GPU default is the measured group: 16 seeds of peer_mlp.py on one H200, at least 4x
    # as fast vectorized as one after another (benchmarks/results/gpu/vmap_seeds_mlp_16.json).
    with open(os.path.join(REPO, "benchmarks", "results", "gpu", "vmap_seeds_mlp_16.json")) as f:
        measured = json.load(f)
    assert measured["backend"] == "gpu" and measured["speedup"] >= 4
    assert seeds.default_group_size("gpu") == measured["seeds"] == 16


def test_train_seeds_refuses_mismatched_workdirs(tmp_path):
    with pytest.raises(ValueError, match="one distinct workdir per config"):
        seeds.train_seeds([smoke(0), smoke(1)], [str(tmp_path)] * 2)


def test_stacked_parts_round_trip():
    import jax.numpy as jnp

    trees = [{"w": jnp.full((2, 3), float(i)), "n": jnp.int32(i)} for i in range(4)]
    stacked = seeds.stack(trees)
    assert stacked["w"].shape == (4, 2, 3) and stacked["n"].shape == (4,)
    for i in range(4):
        np.testing.assert_array_equal(seeds.part(stacked, i)["w"], trees[i]["w"])


def test_early_stopping_seeds_in_a_group_equal_sequential_runs(tmp_path):
    """Each seed stops on its own validation figure (patience 1); a stopped seed is finished at
    once from its best checkpoint while the other trains on: both as when trained alone."""
    changes = {
        "train.epochs": 10,
        "train.early_stopping_patience": 1,
        "train.eval_every_epochs": 0,
        "train.learning_rate": 0.1,  # a noisy validation figure: the seeds stop early
    }
    configs = [smoke(s, **changes) for s in SEEDS]
    stream = io.StringIO()
    alone = [jaxvae.train(c, str(tmp_path / f"seq{c.seed}"), stream=stream) for c in configs]
    dirs = [str(tmp_path / f"vec{c.seed}") for c in configs]
    group = seeds.train_seeds(configs, dirs, stream=stream)
    assert all(s["stopped_early"] for s in alone), [s["trained_steps"] for s in alone]
    for a, b in zip(alone, group, strict=True):
        assert (a["best_step"], a["trained_steps"]) == (b["best_step"], b["trained_steps"])
        assert abs(a["test_nelbo"] - b["test_nelbo"]) < 1e-4
        assert abs(a["best_val_nelbo"] - b["best_val_nelbo"]) < 1e-4
