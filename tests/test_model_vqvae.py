"""The VQ-VAE family against independent numpy computations: nearest-code quantization, the
straight-through gradient, the commitment loss, the EMA codebook update and the usage perplexity;
and its model state through a train step and a checkpoint."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvae import checkpoint, engine, models, sharding
from jaxvae.models import capabilities as caps
from jaxvae.models import vqvae
from jaxvae.objectives import ObjectiveSpec

IMAGE = (8, 8, 1)


def _model(**kw):
    # lax convolutions: the formulation is not under test here, and they compile faster.
    kw = dict(image_shape=IMAGE, channels=(4, 8), codebook_size=6, code_dim=3, conv_impl="lax") | kw
    return models.get("vqvae")(**kw)


def _batch(n=5, seed=0):
    x = np.random.default_rng(seed).random((n, *IMAGE)).astype(np.float32)
    return {"image": jnp.asarray(x), "label": jnp.zeros((n,), jnp.int32)}


def _spread_state(model, seed=1):
    """A state whose codebook is spread like the encoder's outputs, so several codes are used."""
    params, state = model.init(jax.random.key(0))
    z = np.asarray(model.encoder_output(params, _batch(4, seed)["image"])).reshape(-1, 3)
    rng = np.random.default_rng(seed)
    codebook = z[rng.choice(len(z), model.codebook_size, replace=False)] + 0.01 * rng.normal(
        size=(model.codebook_size, model.code_dim)
    )
    codebook = jnp.asarray(codebook, jnp.float32)
    sizes = jnp.asarray(rng.uniform(0.5, 3.0, model.codebook_size), jnp.float32)
    return params, {
        "cluster_size": sizes,
        "embed_sum": codebook * sizes[:, None],
        "codebook": codebook,
    }


def test_latent_dim_is_the_flattened_grid_and_others_are_refused():
    model = _model()
    assert model.grid_shape == (2, 2, 3) and model.latent_dim == 12
    assert not caps.has(model, caps.ImportanceWeighted) and not caps.has(model, caps.Prior)
    with pytest.raises(ValueError, match="latent_dim"):
        _model(latent_dim=16)
    with pytest.raises(ValueError, match="conv"):
        _model(architecture="mlp")
    with pytest.raises(ValueError, match="ema_decay"):
        _model(ema_decay=1.0)


def test_quantization_picks_the_nearest_code():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 3)).astype(np.float32)
    codebook = rng.normal(size=(7, 3)).astype(np.float32)
    want = np.argmin(np.sum((z[:, None, :] - codebook[None]) ** 2, axis=-1), axis=1)
    np.testing.assert_array_equal(np.asarray(vqvae.nearest_code(jnp.asarray(z), codebook)), want)
    model = _model(codebook_size=7)
    z_q, codes = model.quantize(
        {"codebook": jnp.asarray(codebook)}, jnp.asarray(z).reshape(50, 2, 2, 3)
    )
    np.testing.assert_array_equal(np.asarray(codes).ravel(), want)
    np.testing.assert_array_equal(np.asarray(z_q).reshape(200, 3), codebook[want])


def test_straight_through_gradient_is_the_gradient_at_the_quantized_value():
    model = _model()
    params, state = _spread_state(model)
    x = _batch()["image"]
    z_e = model.encoder_output(params, x)
    z_q, _ = model.quantize(state, z_e)
    f = lambda z: jnp.sum(model.decode_grid(params, z).log_prob(x))
    grad_e = jax.jit(jax.grad(lambda z: f(vqvae.straight_through(z, model.quantize(state, z)[0]))))(
        z_e
    )
    grad_q = jax.jit(jax.grad(f))(z_q)
    assert float(jnp.max(jnp.abs(z_q - z_e))) > 1e-3  # the two points differ
    np.testing.assert_array_equal(np.asarray(grad_e), np.asarray(grad_q))
    assert float(jnp.max(jnp.abs(grad_q))) > 0


def test_loss_is_recon_plus_commitment_against_numpy():
    model = _model(commitment_cost=0.3)
    params, state = _spread_state(model)
    batch = _batch()
    loss, terms, _ = model.loss(params, state, batch, jax.random.key(0))
    z_e = np.asarray(model.encoder_output(params, batch["image"]), np.float64).reshape(5, 4, 3)
    cb = np.asarray(state["codebook"], np.float64)
    codes = np.argmin(np.sum((z_e[..., None, :] - cb) ** 2, axis=-1), axis=-1)
    commit = np.sum((z_e - cb[codes]) ** 2, axis=(1, 2))
    np.testing.assert_allclose(float(terms["commitment"]), commit.mean(), rtol=1e-5)
    logits = np.asarray(
        model.decode_grid(params, jnp.asarray(cb[codes].reshape(5, 2, 2, 3), jnp.float32)).logits,
        np.float64,
    )
    x = np.asarray(batch["image"], np.float64)
    recon = -np.sum(x * logits - np.logaddexp(0.0, logits), axis=(1, 2, 3))
    np.testing.assert_allclose(float(terms["recon"]), recon.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(loss), recon.mean() + 0.3 * commit.mean(), rtol=1e-5)
    # The commitment loss trains the encoder only: its gradient w.r.t. the encoder output is
    # 2 * cost * (z_e - z_q) / N.
    g = jax.grad(
        lambda z: (
            0.3
            * jnp.mean(
                jnp.sum(
                    jnp.square(z - jax.lax.stop_gradient(jnp.asarray(cb[codes], jnp.float32))),
                    (1, 2),
                )
            )
        )
    )(jnp.asarray(z_e, jnp.float32))
    np.testing.assert_allclose(np.asarray(g), 2 * 0.3 * (z_e - cb[codes]) / 5, rtol=1e-4, atol=1e-7)


def test_ema_update_against_numpy():
    rng = np.random.default_rng(3)
    k, d, m, decay, eps = 5, 3, 40, 0.9, 1e-3
    z = rng.normal(size=(m, d))
    codes = rng.integers(0, k - 1, size=m)  # code k-1 unused
    sizes = rng.uniform(0.5, 2.0, size=k)
    sums = rng.normal(size=(k, d))
    state = {
        "cluster_size": jnp.asarray(sizes, jnp.float32),
        "embed_sum": jnp.asarray(sums, jnp.float32),
        "codebook": jnp.zeros((k, d), jnp.float32),
    }
    got = vqvae.ema_update(
        state, jnp.asarray(z, jnp.float32), jnp.asarray(codes), decay=decay, epsilon=eps
    )
    counts = np.array([np.sum(codes == j) for j in range(k)], np.float64)
    summed = np.stack([z[codes == j].sum(axis=0) for j in range(k)])
    n_k = decay * sizes + (1 - decay) * counts
    m_k = decay * sums + (1 - decay) * summed
    n = n_k.sum()
    e_k = m_k / ((n_k + eps) / (n + k * eps) * n)[:, None]
    np.testing.assert_allclose(np.asarray(got["cluster_size"]), n_k, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(got["embed_sum"]), m_k, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(got["codebook"]), e_k, rtol=1e-5, atol=1e-6)
    # Through the loss: the returned state is the EMA update at the batch's encodings and codes.
    model = _model()
    params, state = _spread_state(model)
    batch = _batch()
    _, _, new_state = model.loss(params, state, batch, jax.random.key(0))
    z_e = model.encoder_output(params, batch["image"]).reshape(-1, 3)
    want = vqvae.ema_update(
        state, z_e, vqvae.nearest_code(z_e, state["codebook"]), decay=0.99, epsilon=1e-5
    )
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), new_state, want)


def test_initial_state_is_a_consistent_ema():
    """N_k = 1 and m_k = e_k: an unused code keeps its value under the update (up to the smoothing)."""
    model = _model()
    _, state = model.init(jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(state["embed_sum"]), np.asarray(state["codebook"]))
    z = jnp.asarray(state["codebook"][:1])  # all assignments to code 0
    new = vqvae.ema_update(state, z, jnp.zeros((1,), jnp.int32), decay=0.99, epsilon=1e-5)
    np.testing.assert_allclose(
        np.asarray(new["codebook"][1:]), np.asarray(state["codebook"][1:]), rtol=1e-4
    )


def test_perplexity_and_codes_used_against_numpy():
    rng = np.random.default_rng(4)
    codes = rng.choice(8, size=300, p=[0.4, 0.2, 0.2, 0.1, 0.1, 0.0, 0.0, 0.0])
    p = np.bincount(codes, minlength=8) / 300.0
    want = np.exp(-np.sum(p[p > 0] * np.log(p[p > 0])))
    counts = vqvae.code_counts(jnp.asarray(codes), 8)
    np.testing.assert_allclose(float(vqvae.perplexity(counts)), want, rtol=1e-5)
    assert float(vqvae.perplexity(vqvae.code_counts(jnp.zeros(10, jnp.int32), 8))) == pytest.approx(
        1.0
    )
    # In the training terms and the eval terms: the batch's assignments.
    model = _model()
    params, state = _spread_state(model)
    batch = _batch()
    z_e = model.encoder_output(params, batch["image"]).reshape(-1, 3)
    used = np.asarray(vqvae.nearest_code(z_e, state["codebook"]))
    q = np.bincount(used, minlength=6) / used.size
    want = np.exp(-np.sum(q[q > 0] * np.log(q[q > 0])))
    assert want > 1.5  # several codes in use
    _, terms, _ = model.loss(params, state, batch, jax.random.key(0))
    np.testing.assert_allclose(float(terms["perplexity"]), want, rtol=1e-5)
    np.testing.assert_allclose(float(terms["codes_used"]), np.mean(q > 0), rtol=1e-6)
    ev = model.eval_terms(params, state, batch, jax.random.key(0))
    np.testing.assert_allclose(np.asarray(ev["perplexity"]), np.full(5, want), rtol=1e-5)
    assert ev["posterior_mean"].shape == (5, model.latent_dim)


def test_encode_decode_round_trip_and_pictures():
    """decode(encode(x)) is the decoder at z_q; decode snaps off-codebook points to codes."""
    model = _model()
    params, state = _spread_state(model)
    batch = _batch()
    z = model.encode(params, state, batch)
    z_q, _ = model.quantize(state, model.encoder_output(params, batch["image"]))
    np.testing.assert_array_equal(np.asarray(z), np.asarray(z_q).reshape(5, -1))
    direct = model.decode_grid(params, z_q).mean()
    np.testing.assert_array_equal(
        np.asarray(model.decode(params, state, z).mean()), np.asarray(direct)
    )
    nudged = z + 1e-3
    np.testing.assert_array_equal(
        np.asarray(model.decode(params, state, nudged).mean()), np.asarray(direct)
    )
    assert model.samples(params, state, jax.random.key(0), 4, batch) is None
    images, cols = model.extra_pictures(params, state, batch, jax.random.key(0))["codebook.png"]
    assert images.shape == (6, *IMAGE) and cols == 8
    # Most used first: the first picture is the code with the largest cluster size, as a uniform grid.
    top = int(np.argmax(np.asarray(state["cluster_size"])))
    grid = jnp.broadcast_to(state["codebook"][top], (1, *model.grid_shape))
    np.testing.assert_allclose(
        np.asarray(images[:1]), np.asarray(model.decode_grid(params, grid).mean()), rtol=1e-6
    )


def test_train_step_changes_the_state_and_a_checkpoint_restores_it_bit_for_bit(tmp_path):
    model = _model()
    tx = optax.adam(1e-3)
    step = jax.jit(engine.make_train_step(model, ObjectiveSpec(), tx))
    state = engine.init_state(model, tx, jax.random.key(0))
    for i in range(3):
        new, metrics = step(state, _batch(8, seed=i), jax.random.key(1))
        if i == 0:
            for name in ("cluster_size", "embed_sum", "codebook"):
                assert not np.array_equal(
                    np.asarray(new.model_state[name]), np.asarray(state.model_state[name])
                ), name
            assert float(metrics["skipped"]) == 0
        state = new
    manager = checkpoint.make_manager(str(tmp_path), keep=1)
    checkpoint.save(manager, 3, state, wait=True)
    manager.close()
    abstract = engine.abstract_state(model, tx, sharding.make_mesh())
    restored, at = checkpoint.restore_newest(str(tmp_path), abstract)
    assert at == 3
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert set(restored.model_state) == {"cluster_size", "embed_sum", "codebook"}
