"""The README's Python snippet runs as written and trains: the loss falls, and
``jaxvae.train(config, workdir)`` returns the run's summary."""

import json
import os
import re

import numpy as np

from tests.conftest import REPO


def _python_blocks():
    text = open(os.path.join(REPO, "README.md")).read()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_snippet_runs_and_trains(tmp_path, monkeypatch):
    blocks = _python_blocks()
    assert len(blocks) == 1, "the README should hold exactly one Python snippet"
    snippet = blocks[0]
    # record the loss of every step, without changing what the snippet does
    snippet = snippet.replace(
        "params, opt_state, loss = step(", "params, opt_state, loss = _record(*step(", 1
    ).replace("jax.random.fold_in(key, i))", "jax.random.fold_in(key, i)))", 1)
    assert "_record(*step(" in snippet
    # the run goes to a temporary workdir, not into the repository
    workdir = str(tmp_path / "smoke")
    assert snippet.count('"runs/smoke"') == 1
    snippet = snippet.replace('"runs/smoke"', repr(workdir))
    losses = []

    def _record(params, opt_state, loss):
        losses.append(float(loss))
        return params, opt_state, loss

    monkeypatch.chdir(REPO)
    namespace = {"_record": _record}
    exec(compile(snippet, "README.md", "exec"), namespace)
    assert len(losses) == 20 and np.all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < losses[0] - 50, losses  # 784 Bernoulli pixels: large early gains
    z, images = namespace["z"], namespace["images"]
    assert z.shape == (128, 20)
    assert images.shape == (128, 28, 28, 1)
    assert 0 <= float(np.min(images)) and float(np.max(images)) <= 1
    summary = namespace["summary"]
    assert summary == json.load(open(os.path.join(workdir, "summary.json")))
    assert summary["steps"] == 2 * (512 // 64) and np.isfinite(summary["test_nelbo"])
