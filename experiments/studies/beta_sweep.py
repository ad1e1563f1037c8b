"""beta-VAE sweep: the conv VAE of default.py on Fashion-MNIST, beta in {0.25 ... 8}, 5 seeds.

The objective is recon + beta * KL. Small beta buys reconstruction with rate (KL); large beta
trades it away and switches latent units off. The report adds the rate-distortion plane (test
reconstruction against test KL, a point per beta) and the active units against beta.

No reference values: no published figure uses this protocol (greyscale pixels as Bernoulli
targets, this conv net, 10 epochs), so any would compare different things.

    jaxvae study run experiments/studies/beta_sweep.py --workdir studies/beta_sweep
    jaxvae study report studies/beta_sweep
"""

from jaxvae.config import load_config_file
from jaxvae.studies import Axis, Figure, Study


def get_study():
    config = load_config_file("default")
    # Finer learning curves than one point per epoch; logging does not change the training.
    config.train.log_every_steps = 25
    config.train.progress = False
    return Study(
        name="beta_sweep",
        base_config=config,
        axes=(Axis("beta", key="objective.beta", values=(0.25, 0.5, 1.0, 2.0, 4.0, 8.0)),),
        seeds=5,
        metrics=("test_nelbo", "test_recon", "test_kl", "test_active_units"),
        curves=("recon", "kl", "test_nelbo"),
        figures=(
            Figure(
                "rate_distortion",
                kind="metrics",
                x="test_kl",
                y="test_recon",
                title="rate-distortion, one point per beta",
                xlabel="rate: test KL(q(z|x) || p(z)) (nats)",
                ylabel="distortion: test reconstruction -log p(x|z) (nats)",
            ),
            Figure(
                "active_units",
                kind="axis",
                x="beta",
                y="test_active_units",
                title="active latent units against beta",
                ylabel="active units (of 16)",
                log_x=True,
                ylim=(0, 16.5),
            ),
        ),
        description=(
            "beta-VAE sweep of the conv VAE (`experiments/configs/default.py`, 16 latents, "
            "Bernoulli decoder) on Fashion-MNIST: the training objective is recon + beta * KL; "
            "test_nelbo is the plain negative ELBO (beta = 1) of the test set, test_recon and "
            "test_kl its two terms, test_active_units the latent units whose posterior mean varies "
            "over the test set (variance of the posterior mean above 0.01; Burda et al., 2016). "
            "No reference values: no published figure uses this protocol (greyscale pixels as "
            "Bernoulli targets, this network, 10 epochs)."
        ),
    )
