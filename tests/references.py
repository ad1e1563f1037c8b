"""Independent references for tests: figures recomputed in float64 numpy from a trained run."""

import jax
import numpy as np


def numpy_nelbo_and_iwae(run, x, *, samples, k, seed):
    """Monte Carlo figures of a Bernoulli VAE from load_run's encoder and decoder, with numpy's
    random numbers, in float64.

    Returns:
      ``nelbo``: ``[samples, n]`` single-sample negative ELBOs of each image, and ``iwae``: ``[n]``
      the k-sample importance-weighted bound on ``-log p(x)`` of each image.
    """
    rng = np.random.default_rng(seed)
    n = x.shape[0]
    flat = x.reshape(n, -1).astype(np.float64)
    batch = {"image": np.asarray(x, np.float32), "label": np.zeros(n, np.int32)}
    params = jax.device_put(run.params)
    posterior = jax.jit(lambda p, b: run.model.q_params(p, b))
    mean, log_var = (np.asarray(a, np.float64) for a in posterior(params, batch))
    std = np.exp(0.5 * log_var)
    logits_of = jax.jit(lambda p, z: run.model.decode(p, {}, z).logits)

    def log_lik(z):
        logits = np.asarray(logits_of(params, z.astype(np.float32)), np.float64).reshape(n, -1)
        return np.sum(flat * logits - np.logaddexp(0, logits), axis=-1)

    kl = 0.5 * np.sum(mean**2 + np.exp(log_var) - 1 - log_var, axis=-1)
    nelbo = np.stack(
        [-log_lik(mean + std * rng.standard_normal(mean.shape)) + kl for _ in range(samples)]
    )  # [samples, n]
    log_w = []
    for _ in range(k):
        eps = rng.standard_normal(mean.shape)
        z = mean + std * eps
        log_q = np.sum(-0.5 * (np.log(2 * np.pi) + log_var + eps**2), -1)
        log_p = np.sum(-0.5 * (np.log(2 * np.pi) + z**2), -1)
        log_w.append(log_lik(z) + log_p - log_q)
    log_w = np.stack(log_w)  # [k, n]
    m = log_w.max(0)
    iwae = -(m + np.log(np.mean(np.exp(log_w - m), axis=0)))
    return nelbo, iwae
