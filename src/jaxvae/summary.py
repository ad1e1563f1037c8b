"""A run's figures: test and validation figures, the final summary, the pictures drawn from a
state, and the facts recorded beside them (digest, memory)."""

from __future__ import annotations

import hashlib
from typing import Any

import jax
import numpy as np
import psutil

from jaxvae import evaluate, io, layout, likelihoods, pictures, plots, sharding, storage
from jaxvae.data.base import to_unit_float
from jaxvae.models import Params, num_params
from jaxvae.models import capabilities as caps


def params_digest(params: Params) -> str:
    """sha256 over every parameter's path, dtype, shape and bytes, in a fixed order."""
    h = hashlib.sha256()
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    for path, leaf in sorted(leaves, key=lambda kv: jax.tree_util.keystr(kv[0])):
        arr = sharding.host(leaf)
        h.update(jax.tree_util.keystr(path).encode())
        h.update(f"{arr.dtype}{arr.shape}".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def split_metrics(exp, state, split: str) -> dict[str, Any]:
    """The family's figures on a split, as ``test_<name>`` or ``val_<name>`` (the validation set
    without the per-dimension KL)."""
    args = (exp.model, state.params, state.model_state, exp.split(split), exp.keys["eval"])
    m = evaluate.evaluate_model(*args, batch_size=exp.eval.batch_size, mesh=exp.mesh)
    if split == "test":
        return {f"test_{k}": v for k, v in m.items()}
    return {f"val_{k}": v for k, v in m.items() if k != "kl_per_dim"}


def headline(model, m: dict[str, Any]) -> str:
    """The family's headline test figures of ``m`` as a short text."""
    names = [n for n in model.presentation.headline if f"test_{n}" in m]
    if not names:
        return ""
    more = ", ".join(f"{n} {m[f'test_{n}']:.4g}" for n in names[1:])
    return f"{names[0]} {m[f'test_{names[0]}']:.2f}" + (f" ({more})" if more else "")


def nats_in_bits(model, figures: dict[str, Any]) -> dict[str, float]:
    """Bits per dimension of the negative ELBO and NLL, for likelihoods over 8-bit values."""
    if not model.likelihood.discrete_8bit:
        return {}
    bits = lambda name: likelihoods.bits_per_dim(figures[name], model.image_shape)
    found = [name for name in ("test_nelbo", "test_nll") if name in figures]
    return {name.replace("test_", "test_bpd_"): bits(name) for name in found}


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB."""
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    except ImportError:  # not on POSIX
        return psutil.Process().memory_info().rss / 2**20


def final_summary(exp, state) -> dict[str, Any]:
    """The test figures, the NLL bound when asked for (``eval.iwae_k``), the data protocol and
    the run's facts."""
    model = exp.model
    summary: dict[str, Any] = split_metrics(exp, state, "test")
    if exp.eval.iwae_k and caps.has(model, caps.ImportanceWeighted):
        data = {k: v[: exp.eval.iwae_num_examples] for k, v in exp.split("test").items()}
        args = (model, state.params, state.model_state, data, exp.keys["eval"])
        iw = evaluate.evaluate_iwae(*args, k=exp.eval.iwae_k, mesh=exp.mesh)
        summary |= {"test_nll": iw["nll"], "test_nll_se": iw["nll_se"], "iwae_k": iw["iwae_k"]}
        summary["iwae_num_examples"] = iw["num_examples"]
    summary |= nats_in_bits(model, summary)
    if exp.eval.disentanglement:
        from jaxvae import disentangle  # scikit-learn: imported by the runs that score only

        options = {k: getattr(exp.eval, f"disentanglement_{k}") for k in ("seed", "points", "jobs")}
        trained = sharding.host((state.params, state.model_state))
        ground_truth = disentangle.ground_truth_data(exp.data)
        summary |= disentangle.score(model, *trained, ground_truth, **options)
    summary |= {
        "dataset": exp.dataset.name,
        "model": f"{model.name}/{model.architecture}",
        "likelihood": model.likelihood.name,
        "objective": exp.objective.name,
        "epochs": exp.train.epochs,
        "steps": int(state.step),
        "seed": exp.seed,
        "skipped_steps": int(state.skipped),
        "num_params": num_params(state.params),
        "params_digest": params_digest(state.params),
        "devices": exp.mesh.devices.size,
        "processes": jax.process_count(),
        "peak_host_memory_mb": peak_rss_mb(),
    }
    protocol = getattr(exp.dataset, "protocol", None)
    if protocol:
        summary["data_protocol"] = protocol
    return summary


def draw(exp, state, workdir: str, *, kl_per_dim=None, disentanglement=None) -> list[str]:
    """Every picture of the run from ``state``, and curves.png from metrics.jsonl (also what
    ``jaxvae plot`` redraws for a finished or running run); returns the paths.
    ``disentanglement``: the ``disentanglement`` entry of :func:`jaxvae.disentangle.score`,
    whose pictures are drawn too."""
    args = (exp.model, state.params, state.model_state, exp.split("test"), exp.keys["pictures"])
    names = exp.dataset.class_names
    written = pictures.write_pictures(
        workdir, *args, exp.eval.num_pictures, kl_per_dim=kl_per_dim, class_names=names
    )
    if disentanglement is not None:
        from jaxvae import disentangle

        image = to_unit_float(np.asarray(exp.split("test")["image"][0]))
        params, model_state = sharding.host((state.params, state.model_state))
        written += disentangle.draw(workdir, exp.model, params, model_state, image, disentanglement)
    metrics = layout.path(workdir, layout.METRICS)
    if storage.exists(metrics):
        written.append(plots.plot_curves(metrics, layout.path(workdir, layout.CURVES)))
    return written


def disentanglement_found(workdir: str) -> dict[str, Any] | None:
    """The ``disentanglement`` entry of the run's eval.json, else of its summary.json, if any."""
    for name in (layout.EVAL, layout.SUMMARY):
        where = layout.path(workdir, name)
        if storage.exists(where) and "disentanglement" in io.read_json(where):
            return io.read_json(where)["disentanglement"]
    return None


def png(path: str) -> np.ndarray:
    """A PNG file's pixels (grey or RGB), for TensorBoard."""
    import io as io_lib

    from PIL import Image

    with Image.open(io_lib.BytesIO(storage.read_bytes(path))) as im:
        return np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im)
