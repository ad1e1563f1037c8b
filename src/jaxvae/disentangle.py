"""A trained run's representation scored by every disentanglement metric, and its pictures.

:func:`score` runs :func:`jaxvae.disentanglement.evaluate_all` on a model's encoder (the
posterior mean as the representation; the posterior itself for the total correlation) over the
ground-truth data of the run's dataset, and returns JSON-ready results: every flat score
(``mig``, ``dci_disentanglement``, ...) at the top level, so ``eval.json`` and ``summary.json``
carry them where studies read metrics, and under ``disentanglement`` the protocol, the factor
names and the matrices the pictures draw. :func:`draw` writes ``disentanglement_matrices.png``
(the MIG mutual information and the DCI importance, latents x factors) and
``factor_traversals.png`` (a traversal per latent, labelled with the factor it captures).
Both are used at the end of training (``eval.disentanglement=True``) and by
``jaxvae eval --disentanglement`` (:func:`evaluate_run`).

Every metric draws its points from ``np.random.default_rng(seed)`` and the encoder is a
deterministic function of the parameters, so a fixed seed gives the same numbers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae import data as data_lib
from jaxvae import disentanglement, io, layout, plots, storage
from jaxvae.models import capabilities as caps

# Each dataset with ground-truth factors, as the metrics' GroundTruthData (from the DataSpec).
GROUND_TRUTH: dict[str, Callable[[Any], disentanglement.GroundTruthData]] = {
    "dsprites_procedural": lambda spec: data_lib.ProceduralDSprites(),
    **{
        name: functools.partial(
            lambda name, spec: data_lib.ground_truth_from_tfds(name, spec.tfds_data_dir), name
        )
        for name in ("dsprites", "shapes3d")
    },
}


def ground_truth_data(data_spec) -> disentanglement.GroundTruthData:
    """The ground-truth data of a run's dataset (``data_spec``: its :class:`~jaxvae.specs.DataSpec`)."""
    if data_spec.name not in GROUND_TRUTH:
        raise ValueError(
            f"data.name={data_spec.name!r} has no ground-truth factors; the disentanglement "
            f"metrics need one of {sorted(GROUND_TRUTH)}"
        )
    return GROUND_TRUTH[data_spec.name](data_spec)


def reduced_protocol(points: int) -> dict[str, dict[str, int]]:
    """The metrics' sample counts scaled down to ``points`` (0: ``{}``, the study's protocol).

    Every metric's training (and variance-estimate) count becomes ``points`` and its test or
    evaluation count ``max(points // 2, 2)``; batch sizes, bins and classifiers stay the study's.
    For quick looks and tests only: say so when reporting numbers made with it.
    """
    if int(points) != points or points < 0:
        raise ValueError(f"disentanglement points={points!r}: expected an integer >= 0")
    if points == 0:
        return {}
    if points < 4:
        raise ValueError(f"disentanglement points={points!r}: expected 0 or at least 4")
    test = max(points // 2, 2)
    return {
        "beta_vae": {"num_train": points, "num_eval": test},
        "factor_vae": {"num_variance_estimate": points, "num_train": points, "num_eval": test},
        "mig": {"num_train": points},
        "dci": {"num_train": points, "num_test": test},
        "sap": {"num_train": points, "num_test": test},
        "modularity_explicitness": {"num_train": points, "num_test": test},
        "total_correlation": {"num_train": points},
    }


@functools.partial(jax.jit, static_argnums=0)
def _encode(model, params, state, x):
    return model.encode(params, state, {"image": x, "label": jnp.zeros(x.shape[:1], jnp.int32)})


@functools.partial(jax.jit, static_argnums=0)
def _mean_and_log_var(model, params, state, x):
    q = model.posterior(params, state, {"image": x, "label": jnp.zeros(x.shape[:1], jnp.int32)})
    return q.mean(), q.log_var


def representation_fns(model, params, state):
    """``(representation_fn, mean_and_logvar_fn or None)``: numpy in and out, for the metrics.
    The second is None for a family without a posterior distribution."""
    params, state = jax.device_put((params, state))

    # numpy straight into the compiled functions (jit's own transfer): the metrics call these
    # tens of thousands of times on batches of 64, where jnp.asarray cost 0.5 ms a call
    def representation(x):
        return np.asarray(_encode(model, params, state, np.asarray(x, np.float32)))

    def mean_and_log_var(x):
        mean, log_var = _mean_and_log_var(model, params, state, np.asarray(x, np.float32))
        return np.asarray(mean), np.asarray(log_var)

    return representation, (mean_and_log_var if caps.has(model, caps.Posterior) else None)


def score(
    model, params, state, ground_truth, *, seed: int = 0, points: int = 0, jobs: int = 1
) -> dict[str, Any]:
    """Every metric of ``model``'s representation on ``ground_truth``.

    Where the metrics draw more observations than the data have combinations (the study's
    protocol on dSprites or Shapes3D), every combination is encoded once and the metrics look
    their codes up (:func:`jaxvae.disentanglement.plan`): the same numbers.

    Args:
      model, params, state: the trained family.
      ground_truth: the dataset's :class:`~jaxvae.disentanglement.GroundTruthData`.
      seed: every metric's ``np.random.default_rng`` seed (the study: 0).
      points: 0 for the study's protocol, else :func:`reduced_protocol`.
      jobs: DCI's factors fitted in parallel processes (-1: one per core); the same numbers.

    Returns:
      The flat scores, and ``disentanglement``: ``{"seed", "points", "protocol",
      "factor_names", "matrices": {name: nested lists}}``.
    """
    if model.presentation.traversal_range is None:
        raise ValueError(f"model kind {model.name!r} has no continuous code to score")
    if int(jobs) != jobs or not (jobs == -1 or jobs >= 1):
        raise ValueError(f"disentanglement jobs={jobs!r}: expected -1 or an integer >= 1")
    protocol = reduced_protocol(points)
    protocol["dci"] = protocol.get("dci", {}) | {"n_jobs": int(jobs)}
    representation, posterior = representation_fns(model, params, state)
    found = disentanglement.evaluate_all(
        ground_truth, representation, posterior, int(seed), protocol=protocol
    )
    return found.scores | {
        "disentanglement": {
            "seed": int(seed),
            "points": int(points),
            "protocol": "the study's" if points == 0 else f"reduced to {points} points",
            "dci_classifier": disentanglement.protocol_of("dci", protocol["dci"])["boosting"],
            "factor_names": list(ground_truth.factor_names),
            "matrices": {k: np.asarray(v).tolist() for k, v in found.matrices.items()},
        }
    }


def captured_factors(found: Mapping[str, Any]) -> list[tuple[int, str, float, float]]:
    """Per latent ``(factor index, factor name, MIG MI / H(factor), DCI importance)``: the
    factor with the largest DCI importance for it (the largest normalised mutual information
    when DCI was not run)."""
    names, m, mi = found["factor_names"], found["matrices"], _normalised_mi(found)
    imp = np.asarray(m.get("dci_importance_matrix", np.zeros_like(mi)), np.float64)
    by = imp if imp.any() else mi
    return [
        (int(j), names[int(j)], float(mi[d, j]), float(imp[d, j]))
        for d, j in enumerate(np.argmax(by, axis=1))
    ]


def _normalised_mi(found: Mapping[str, Any]) -> np.ndarray:
    """MIG's mutual information of each latent and factor over the factor's entropy."""
    m = found["matrices"]
    mi = np.asarray(m["mig_mutual_information"], np.float64)
    return mi / np.maximum(np.asarray(m["mig_factor_entropy"], np.float64)[None, :], 1e-12)


def draw_matrices(path: str, found: Mapping[str, Any]) -> str:
    """Heat maps (latents x factors, labelled) of the MIG mutual information normalised by the
    factor's entropy and of the DCI importance matrix, each cell printed."""
    names, m, mi = found["factor_names"], found["matrices"], _normalised_mi(found)
    panels = [("MIG: I(z_d; v_k) / H(v_k)", mi)]
    if "dci_importance_matrix" in m:
        panels.append(("DCI importance R_dk", np.asarray(m["dci_importance_matrix"], np.float64)))
    d = mi.shape[0]
    fig = plots.figure(3.2 + 1.1 * len(names) * len(panels), 1 + 0.4 * d)
    axes = fig.subplots(1, len(panels))
    for ax, (title, mat) in zip(np.atleast_1d(axes), panels, strict=True):
        im = ax.imshow(
            mat, cmap="viridis", aspect="auto", vmin=0, vmax=max(float(mat.max()), 1e-12)
        )
        for (i, j), v in np.ndenumerate(mat):
            color = "black" if v > 0.6 * mat.max() else "white"
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color=color)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(d), [f"z{i}" for i in range(d)], fontsize=8)
        ax.set_xlabel("factor")
        ax.set_ylabel("latent")
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return io.write_figure(path, fig, dpi=110, bbox_inches="tight")


def draw_traversals(path: str, model, params, state, image, found: Mapping[str, Any]) -> str:
    """A row per latent: its coordinate swept over the prior's range from ``image``'s code,
    labelled with the factor it captures (:func:`captured_factors`)."""
    params, state = jax.device_put((params, state))
    z0 = _encode(model, params, state, jnp.asarray(image[None], jnp.float32))[0]
    dims = list(range(model.latent_dim))
    steps, r = 9, model.presentation.traversal_range
    labels = jnp.zeros((len(dims) * steps,), jnp.int32)
    decode = lambda z: model.decode(params, state, z, labels).mean()
    images = np.asarray(plots.traversal_grid(decode, z0, dims, np.linspace(-r, r, steps)))
    pic = plots.grid(images, steps)
    h = images.shape[1]
    row = (pic.shape[0] - 2 * 2) / len(dims)  # plots.grid: pad 2, scale 2
    fig = plots.figure(pic.shape[1] / 100 + 2.6, pic.shape[0] / 100 + 0.6)
    ax = fig.subplots()
    ax.imshow(pic[..., 0] if pic.shape[-1] == 1 else pic, cmap="gray", vmin=0, vmax=255)
    ticks = [2 * 2 + row * i + h for i in range(len(dims))]
    text = [
        f"z{d}: {name} (MI {mi:.2f}, R {imp:.2f})"
        for d, (_, name, mi, imp) in zip(dims, captured_factors(found), strict=True)
    ]
    ax.set_yticks(ticks, text, fontsize=8)
    ax.set_xticks([])
    ax.set_title(f"traversals over [-{r:g}, {r:g}], each latent's factor", fontsize=9)
    return io.write_figure(path, fig, dpi=100, bbox_inches="tight")


def draw(workdir: str, model, params, state, image, found: Mapping[str, Any]) -> list[str]:
    """Writes both pictures into ``workdir``; returns their paths."""
    traversals = layout.path(workdir, layout.FACTOR_TRAVERSALS)
    return [
        draw_matrices(layout.path(workdir, layout.DISENTANGLEMENT_MATRICES), found),
        draw_traversals(traversals, model, params, state, image, found),
    ]


def evaluate_run(
    workdir: str, run, *, seed: int = 0, points: int = 0, jobs: int = 1
) -> dict[str, Any]:
    """``jaxvae eval --disentanglement``: scores the loaded ``run`` (:func:`jaxvae.api.load_run`),
    merges the scores into ``eval.json`` and ``summary.json`` (where they exist) and draws the
    pictures; returns the scores with the checkpoint's step."""
    ground_truth = ground_truth_data(run.experiment.data)
    options = {"seed": seed, "points": points, "jobs": jobs}
    result = score(run.model, run.params, run.state, ground_truth, **options)
    result |= {"disentanglement_step": run.step, "checkpoint": run.checkpoint}
    for name in (layout.EVAL, layout.SUMMARY):
        where = layout.path(workdir, name)
        previous = io.read_json(where) if storage.exists(where) else {}
        if name == layout.EVAL or previous:
            io.write_json(where, previous | result)
    factors = ground_truth.sample_factors(1, np.random.default_rng(seed))
    image = ground_truth.sample_observations_from_factors(factors, np.random.default_rng(seed))[0]
    draw(workdir, run.model, run.params, run.state, image, result["disentanglement"])
    return result
