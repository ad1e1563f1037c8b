"""``jaxvae train``: from a config to a finished run directory.

Validates everything before touching the workdir, resumes from the newest readable checkpoint, runs
the device-resident engine of :mod:`jaxvae.train`, and writes metrics, checkpoints, a summary and
pictures (process 0 writes files; every process takes part in the computation and in checkpoints).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import psutil
from tqdm import tqdm

from jaxvae import api, checkpoint, evaluate, plots, sharding
from jaxvae import config as config_lib
from jaxvae import data as data_lib
from jaxvae import train as train_lib
from jaxvae import workdir as workdir_lib
from jaxvae.models import Model, Params, make_model, num_params

# Independent streams of the run's randomness, each derived from the seed.
KEY_INIT, KEY_TRAIN, KEY_DATA, KEY_EVAL, KEY_PICTURES = range(5)


def run_keys(seed: int) -> dict[str, jax.Array]:
    root = jax.random.key(seed)
    names = ("init", "train", "data", "eval", "pictures")
    return {name: jax.random.fold_in(root, i) for i, name in enumerate(names)}


def params_digest(params: Params) -> str:
    """sha256 over every parameter's path, dtype, shape and bytes, in a fixed order."""
    h = hashlib.sha256()
    for path, leaf in sorted(
        jax.tree_util.tree_flatten_with_path(params)[0], key=lambda kv: jax.tree_util.keystr(kv[0])
    ):
        arr = np.asarray(leaf.addressable_data(0) if isinstance(leaf, jax.Array) else leaf)
        h.update(jax.tree_util.keystr(path).encode())
        h.update(f"{arr.dtype}{arr.shape}".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def host_params(params: Params) -> Params:
    """Parameters as host numpy arrays (each process's copy of the replicated values)."""
    return jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), params)


def test_metrics(
    model: Model, params: Params, dataset: data_lib.Dataset, config, key, mesh
) -> dict[str, Any]:
    """Test-set figures: negative ELBO and its terms for a VAE, reconstruction error for an AE."""
    images = dataset.test_images
    if model.spec.stochastic:
        m = evaluate.evaluate_elbo(
            model, params, images, key, batch_size=config.eval.batch_size, mesh=mesh
        )
        return {
            "test_nelbo": m["nelbo"],
            "test_recon": m["recon"],
            "test_kl": m["kl"],
            "test_active_units": m["active_units"],
        }
    m = evaluate.evaluate_ae(model, params, images, batch_size=config.eval.batch_size, mesh=mesh)
    return {f"test_{k}": v for k, v in m.items()} | {"test_recon": m["recon_l2"]}


def write_pictures(
    workdir: str, model: Model, params: Params, dataset: data_lib.Dataset, key, num: int
) -> list[str]:
    """samples.png, reconstructions.png, interpolations.png and, for 2 latents, latent_map.png."""
    params = jax.device_put(host_params(params))
    x = jnp.asarray(dataset.test_images[: max(num, 32)])
    codes = None if model.spec.stochastic else np.asarray(plots.encode(model, params, x)[0])
    ncols = 8
    written = []

    def save(name, images, cols):
        path = os.path.join(workdir, name)
        plots.save_grid(path, np.asarray(images), cols)
        written.append(path)

    save("samples.png", plots.prior_samples(model, params, key, num, codes=codes), ncols)
    save("reconstructions.png", plots.reconstructions(model, params, x[:32], ncols), ncols)
    steps = 10
    save("interpolations.png", plots.interpolations(model, params, x[:8], x[8:16], steps), steps)
    if model.spec.latent_dim == 2:
        save("latent_map.png", plots.latent_map(model, params), 20)
    return written


def train(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    mesh=None,
    stream=sys.stderr,
) -> dict[str, Any]:
    """Trains (or resumes) the run of ``config`` in ``workdir``; returns its summary.

    Raises:
      ValueError: a bad config, missing data, images that do not fit the model, an unwritable
        workdir, or a workdir that holds a different run. Nothing in the workdir is changed then.
    """
    wall_start = time.time()
    config_lib.validate(config)
    dataset = data_lib.load_from_config(config.data, config.seed)
    spec = config_lib.model_spec(config, dataset.image_shape)
    model = make_model(spec)
    objective = config_lib.objective_spec(config)
    mesh = mesh or sharding.make_mesh()
    sharding.check_batch_size(config.train.batch_size, mesh)
    per_epoch = train_lib.steps_per_epoch(dataset.train_images.shape[0], config.train.batch_size)
    if per_epoch < 1:
        raise ValueError(
            f"train.batch_size={config.train.batch_size} is larger than the "
            f"{dataset.train_images.shape[0]} training images"
        )
    main = jax.process_index() == 0
    if main:
        workdir_lib.ensure_writable(workdir)
    existing = workdir_lib.check_compatible(workdir, config)
    if not existing and checkpoint.steps(workdir):
        raise ValueError(
            f"workdir {workdir!r} has checkpoints but no {workdir_lib.CONFIG}; use a new --workdir"
        )

    def say(msg: str) -> None:
        if main:
            tqdm.write(msg, file=stream)

    tx = train_lib.make_optimizer(config.train)
    keys = run_keys(config.seed)
    replicated = sharding.replicated(mesh)
    restored = None
    if existing:
        abstract = train_lib.abstract_state(model, tx, mesh)
        restored = checkpoint.restore_newest(workdir, abstract, warn=lambda m: say(f"warning: {m}"))
    if restored is not None:
        state, start_step = restored
        say(f"resuming {workdir} from step {start_step}")
    else:
        init = jax.jit(lambda k: train_lib.init_state(model, tx, k), out_shardings=replicated)
        state, start_step = init(keys["init"]), 0
    if main and not existing:
        workdir_lib.write_json(os.path.join(workdir, workdir_lib.CONFIG), config.to_dict())
        api.write_run_info(workdir, dataset.image_shape, dataset.name)
    metrics_log = workdir_lib.MetricsLog(
        workdir, resume_step=start_step if existing else None, enabled=main
    )

    images = sharding.put_replicated(dataset.train_images, mesh)
    engine = train_lib.make_engine(
        train_lib.make_train_step(model, objective, tx),
        num_examples=dataset.train_images.shape[0],
        batch_size=config.train.batch_size,
        mesh=mesh,
    )
    t = time.time()
    compiled = engine.lower(state, images, keys["train"], keys["data"], jnp.int32(1)).compile()
    compile_s = time.time() - t

    total = config.train.epochs * per_epoch
    t_cfg = config.train
    ckpt_every = t_cfg.checkpoint_every_steps or per_epoch
    intervals = (ckpt_every, t_cfg.log_every_steps, t_cfg.steps_per_dispatch)
    manager = checkpoint.make_manager(workdir, keep=t_cfg.keep_checkpoints)
    wait_for_saves = jax.default_backend() == "cpu"  # see checkpoint.save
    step, train_seconds, images_seen = start_step, 0.0, 0
    last_save = time.time() if restored is not None else None  # the checkpoint resumed from
    bar = tqdm(
        total=total,
        initial=step,
        unit="step",
        file=stream,
        # A bar is for a terminal; in a log file the per-epoch lines say the same.
        disable=not (main and t_cfg.progress and getattr(stream, "isatty", lambda: False)()),
        dynamic_ncols=True,
    )
    try:
        while step < total:
            boundary = train_lib.next_boundary(
                step, per_epoch=per_epoch, total=total, intervals=intervals
            )
            n = boundary - step
            t = time.time()
            state, sums = compiled(state, images, keys["train"], keys["data"], jnp.int32(n))
            sums = jax.device_get(sums)  # host sync: once per dispatch
            dt = time.time() - t
            train_seconds += dt
            images_seen += n * t_cfg.batch_size
            step = boundary
            epoch_done = step % per_epoch == 0
            record = {k: float(v) / n for k, v in sums.items() if k != "skipped"}
            record |= {
                "step": step,
                "epoch": step / per_epoch,
                "skipped": int(sums["skipped"]),
                "images_per_sec": n * t_cfg.batch_size / dt,
            }
            if record["skipped"]:
                say(f"warning: {record['skipped']} update(s) skipped (non-finite loss/gradient)")
            metrics_log.write(record)
            bar.update(n)
            bar.set_postfix(loss=f"{record['loss']:.2f}")
            if epoch_done or step == total:
                epoch = step // per_epoch
                every = t_cfg.eval_every_epochs
                if step == total or (every and epoch % every == 0):
                    m = test_metrics(model, state.params, dataset, config, keys["eval"], mesh)
                    metrics_log.write({"step": step, "epoch": step / per_epoch} | m)
                    say(
                        f"epoch {epoch}/{t_cfg.epochs}  step {step}  train loss "
                        f"{record['loss']:.3f}  test {_headline(m)}"
                    )
            since = None if last_save is None else time.time() - last_save
            if since is not None and epoch_done:
                since = sharding.from_process_0(since)  # a clock reading: the same everywhere
            due = checkpoint.save_due(
                step,
                total=total,
                per_epoch=per_epoch,
                every_steps=t_cfg.checkpoint_every_steps,
                min_interval_s=t_cfg.checkpoint_min_interval_s,
                seconds_since_save=since,
            )
            if due:
                checkpoint.save(manager, step, state, wait=wait_for_saves)
                last_save = time.time()
    finally:
        bar.close()
        manager.wait_until_finished()
        manager.close()

    final = test_metrics(model, state.params, dataset, config, keys["eval"], mesh)
    summary: dict[str, Any] = dict(final)
    if config.eval.iwae_k and spec.stochastic:
        n_iwae = min(config.eval.iwae_num_examples, dataset.test_images.shape[0])
        iw = evaluate.evaluate_iwae(
            model,
            state.params,
            dataset.test_images[:n_iwae],
            keys["eval"],
            k=config.eval.iwae_k,
            mesh=mesh,
        )
        summary |= {
            "test_nll": iw["nll"],
            "test_nll_se": iw["nll_se"],
            "iwae_k": iw["iwae_k"],
            "iwae_num_examples": iw["num_examples"],
        }
    summary |= {
        "dataset": dataset.name,
        "model": f"{spec.kind}/{spec.architecture}",
        "epochs": config.train.epochs,
        "steps": int(state.step),
        "seed": config.seed,
        "skipped_steps": int(state.skipped),
        "num_params": num_params(state.params),
        "params_digest": params_digest(state.params),
        "resumed_from_step": start_step,
        "compile_s": compile_s,
        "train_images_per_sec": images_seen / train_seconds if train_seconds else None,
        "devices": mesh.devices.size,
        "processes": jax.process_count(),
        "peak_host_memory_mb": _peak_rss_mb(),
        "wall_s": time.time() - wall_start,
    }
    if main:
        write_pictures(
            workdir, model, state.params, dataset, keys["pictures"], config.eval.num_pictures
        )
        workdir_lib.write_json(os.path.join(workdir, workdir_lib.SUMMARY), summary)
        say(f"done: {_headline(final)}  summary in {os.path.join(workdir, workdir_lib.SUMMARY)}")
    return summary


def _headline(m: dict[str, Any]) -> str:
    if "test_nelbo" in m:
        return f"nelbo {m['test_nelbo']:.2f} (recon {m['test_recon']:.2f}, kl {m['test_kl']:.2f})"
    return f"recon_l2 {m['test_recon_l2']:.3f} (mse/pixel {m['test_mse_per_pixel']:.5f})"


def _peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB."""
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    except ImportError:  # not on POSIX
        return psutil.Process().memory_info().rss / 2**20
