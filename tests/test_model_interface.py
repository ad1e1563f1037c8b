"""The model interface: the required methods, the optional capabilities (protocols) each family
has, a family of one's own with the required methods alone, and the public posterior."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxvae
from jaxvae import evaluate, likelihoods, models, pictures
from jaxvae.models import capabilities as caps

VAE_LIKE = {caps.ImportanceWeighted, caps.Prior, caps.Posterior, caps.DReG, caps.KLWeighted}
EXPECTED = {
    "ae": set(),
    "dae": set(),
    "vqvae": set(),
    "vae": VAE_LIKE,
    "cvae": VAE_LIKE,
    "hvae": VAE_LIKE,
    "btcvae": VAE_LIKE,
    "dipvae_i": VAE_LIKE,
    "dipvae_ii": VAE_LIKE,
    "annealedvae": VAE_LIKE,
    "vampprior": VAE_LIKE - {caps.DReG},  # its prior is built from q's encoder: no DReG split
    "factorvae": VAE_LIKE | {caps.ParameterGroups},
}
NO_TRAVERSALS = {"vqvae", "hvae"}


def test_every_family_has_exactly_its_capabilities():
    own = {n: f for n, f in models.families().items() if f.__module__.startswith("jaxvae.")}
    assert set(own) == set(EXPECTED)
    for name, family in own.items():
        model = family(architecture="mlp") if name == "hvae" else family()
        got = {c for c in caps.NEEDS if caps.has(model, c)}
        assert got == EXPECTED[name], name
        assert (model.presentation.traversal_range is None) == (name in NO_TRAVERSALS), name
        assert model.presentation.headline, name


@dataclasses.dataclass(frozen=True)
class Template(models.Model):
    """A family with the required methods only: one learned image ``t``; its loss is
    ``mean_n w_n ||x_n - t||^2`` with ``w`` an extra batch key."""

    name = "template"

    def init(self, key):
        return {"t": jnp.zeros(self.image_shape)}, {}

    def loss(self, params, state, batch, key, *, step=0):
        err = jnp.sum(jnp.square(batch["image"] - params["t"]), axis=(1, 2, 3))
        loss = jnp.mean(batch["weight"] * err)
        return loss, {"loss": loss}, state

    def eval_terms(self, params, state, batch, key):
        return {"recon": jnp.sum(jnp.square(batch["image"] - params["t"]), axis=(1, 2, 3))}

    def encode(self, params, state, batch):
        return jnp.reshape(batch["image"], (batch["image"].shape[0], -1))[:, : self.latent_dim]

    def decode(self, params, state, z, labels=None):
        t = jnp.broadcast_to(params["t"], (z.shape[0], *self.image_shape))
        return likelihoods.Gaussian(t, jnp.float32(0.0))


def test_a_family_with_the_required_methods_trains_and_is_refused_what_it_lacks():
    model = Template(image_shape=(4, 4, 1), latent_dim=2)
    assert not any(caps.has(model, c) for c in caps.NEEDS)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(5, 4, 4, 1)).astype(np.float32)
    w = rng.uniform(size=5).astype(np.float32)
    batch = {"image": jnp.asarray(x), "label": jnp.zeros(5, jnp.int32), "weight": jnp.asarray(w)}

    lr = 0.1
    tx = optax.sgd(lr)
    step = jax.jit(jaxvae.make_train_step(model, jaxvae.ObjectiveSpec(), tx))
    state, metrics = step(jaxvae.init_state(model, tx, jax.random.key(0)), batch, jax.random.key(1))
    # d/dt mean_n w_n ||x_n - t||^2 = -(2/N) sum_n w_n (x_n - t), at t = 0
    want = lr * 2.0 / 5 * np.einsum("n,nhwc->hwc", w, x)
    np.testing.assert_allclose(np.asarray(state.params["t"]), want, rtol=1e-5)
    loss0 = np.mean(w * np.sum(x.astype(np.float64) ** 2, axis=(1, 2, 3)))
    np.testing.assert_allclose(float(metrics["loss"]), loss0, rtol=1e-5)
    assert set(metrics) == {"loss", "skipped"}  # no KL weight: its loss takes none
    assert model.samples(state.params, {}, jax.random.key(2), 4, batch) is None
    assert pictures.prior_samples(model, state.params, {}, jax.random.key(2), 4) is None

    refusals = [
        lambda: jaxvae.make_train_step(model, jaxvae.ObjectiveSpec(name="iwae", k=2), tx),
        lambda: evaluate.evaluate_iwae(model, state.params, {}, batch, jax.random.key(0), k=2),
        lambda: jaxvae.posterior(model, state.params, {}, x),
    ]
    for refuse, what in zip(refusals, ("log_weights", "log_weights", "posterior"), strict=True):
        with pytest.raises(ValueError) as e:
            refuse()
        line = str(e.value)
        assert "\n" not in line and "'template' has none" in line and what in line, line


def test_posterior_of_a_vae_matches_numpy():
    model = models.get("vae")(image_shape=(4, 4, 1), architecture="mlp", hidden=(), latent_dim=3)
    params, state = model.init(jax.random.key(0))
    x = np.random.default_rng(1).uniform(size=(6, 4, 4, 1)).astype(np.float32)
    q = jaxvae.posterior(model, params, state, x)

    dense = jax.tree.map(np.asarray, params["encoder"]["MLP_0"]["Dense_0"])
    h = x.reshape(6, -1).astype(np.float64) @ dense["kernel"] + dense["bias"]
    mean, log_var = h[:, :3], h[:, 3:]
    std = np.exp(0.5 * log_var)
    np.testing.assert_allclose(q.mean(), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(q.stddev(), std, rtol=1e-5, atol=1e-6)
    z = np.asarray(q.sample(jax.random.key(2)), np.float64)
    log_prob = np.sum(
        -0.5 * math.log(2 * math.pi) - np.log(std) - 0.5 * ((z - mean) / std) ** 2, -1
    )
    np.testing.assert_allclose(q.log_prob(z), log_prob, rtol=1e-5, atol=1e-5)
    assert not np.allclose(z, mean)  # a draw, not the mean
