"""The conditional VAE (Sohn et al. 2015; Kingma et al. 2014's M2 with observed labels): the
one-hot label ``y`` enters the encoder, ``q(z | x, y)``, and the decoder, ``p(x | z, y)``, with
the prior ``p(z) = N(0, I)`` independent of ``y``.

Its ELBO and importance-weighted bound are bounds on the *conditional* likelihood
``log p(x | y)``: the NLL that ``jaxvae eval`` reports for this family is ``-log p(x | y)`` with
the test set's true labels, not the ``-log p(x)`` of an unconditional model.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxvae.models import register
from jaxvae.models.base import set_numbers
from jaxvae.models.vae import VAE


@register("cvae")
@dataclasses.dataclass(frozen=True)
class CVAE(VAE):
    """Label-conditional VAE: ``q(z | x, y)``, ``p(x | z, y)``, ``p(z) = N(0, I)``.

    ``num_classes`` (from the data) is the size of the one-hot label. ``samples.png`` has one row
    per class: row ``r`` decodes prior draws with label ``r``.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        set_numbers(self, "a positive integer", lambda v: v > 0, "num_classes", cast=int)

    def condition(self, labels):
        """The one-hot label ``[N, num_classes]``."""
        if labels is None:
            raise ValueError(
                "model kind 'cvae' is conditional: encode and decode need labels, got None"
            )
        return jax.nn.one_hot(jnp.asarray(labels), self.num_classes, dtype=jnp.float32)

    def samples(self, params, state, key, num, batch):
        """``8 * num_classes`` images from the prior, row ``r`` (8 columns) decoded with label
        ``r`` (``num`` is not used: the layout is one row per class)."""
        del num, batch
        from jaxvae import pictures  # the picture layout's owner; imported late (cycle)

        labels = jnp.repeat(jnp.arange(self.num_classes, dtype=jnp.int32), pictures.NCOLS)
        z = self.sample_latents(params, state, key, labels.shape[0], labels)
        return self.decode(params, state, z, labels).mean()
