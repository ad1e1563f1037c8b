"""The Fashion-MNIST density-estimation table of Norouzi et al. 2020 (Exemplar VAE, NeurIPS),
Gaussian-prior VAE, VampPrior and two-layer HVAE rows.

Protocol (the paper's code): the 60k training images split 50k train / 10k validation (the last
10k); dynamic binarization for training, the validation and test sets binarized once
(`data.EVAL_BINARIZATION_SEED`); two gated dense layers of 300 units, 40 latents, every
Gaussian head's log-variance clipped to [-6, 2] (the reference code's hardtanh), Bernoulli decoder; batch 100, Adam lr 5e-4; KL warm-up over 100 epochs; up to 2000 epochs with early stopping
on the validation negative ELBO (patience 50), the best epoch evaluated; test NLL by the IWAE bound
with 5000 importance samples on the 10k test images. The HVAE here is jaxvae's `hvae` family
(z1 = 40, z2 = 40, gated 300-unit layers on both levels), whose exact wiring may differ from the
reference code's. Runs resume, so the full budget may span sessions (on a CPU machine in the
background, stopped and continued: docs/studies.md, "Long studies in pieces"; on one GPU:
experiments/gpu_studies.sh):

    jaxvae study run experiments/studies/exemplar_fmnist.py --workdir studies/exemplar_fmnist
    jaxvae study report studies/exemplar_fmnist

The budget run so far (docs/studies.md, its report in docs/studies/exemplar_fmnist/): one seed,
60 epochs, the KL warm-up over the first 10 epochs:

    jaxvae study run experiments/studies/exemplar_fmnist.py --workdir studies/exemplar_fmnist \
        --seeds 1 --config.train.epochs=60 --config.objective.warmup_steps=5000
"""

from jaxvae.config import load_config_file
from jaxvae.studies import Reference, Study

SOURCE = "Norouzi et al. 2020, Exemplar VAE (NeurIPS), Table 1, Fashion-MNIST test log-likelihood"


def base():
    """The study's base config: the shipped config ``exemplar`` (its protocol is written there)."""
    return load_config_file("exemplar")


def get_study():
    config = base()
    return Study(
        name="exemplar_fmnist",
        base_config=config,
        variants={
            "vae_gaussian": {"model.kind": "vae"},
            "vampprior": {"model.kind": "vampprior"},
            "hvae_gaussian": {
                "model.kind": "hvae",
                "model.hvae.z2_dim": 40,
                "model.hvae.hidden2": (300, 300),
            },
        },
        seeds=3,
        metrics=("test_nll", "test_nll_se", "test_nelbo", "best_step", "test_active_units"),
        references=(
            Reference("vae_gaussian", "test_nll", 228.70, std=0.15, source=SOURCE),
            Reference("vampprior", "test_nll", 227.35, std=0.05, source=SOURCE),
            Reference("hvae_gaussian", "test_nll", 227.37, std=0.1, source=SOURCE),
        ),
        curves=("loss", "test_nelbo"),
        description=(
            "Norouzi et al. 2020's Fashion-MNIST protocol (50k/10k split, dynamic binarization, "
            "gated MLP 300-300, 40 latents, batch 100, lr 5e-4, KL warm-up over 100 epochs, up to "
            "2000 epochs with early stopping on the validation negative ELBO, patience 50, k=5000 "
            "NLL). Published values are test log-likelihoods; shown here as NLL = -log p(x)."
        ),
    )
