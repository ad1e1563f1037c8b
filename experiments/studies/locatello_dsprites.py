"""The unsupervised disentanglement study of Locatello et al. (ICML 2019, "Challenging common
assumptions in the unsupervised learning of disentangled representations") on dSprites.

Six models x six hyperparameters x seeds, disentanglement_lib's `unsupervised_study_v1` grid:
beta-VAE beta in {1, 2, 4, 6, 8, 16}; AnnealedVAE c_max in {5, 10, 25, 50, 75, 100} (gamma 1000,
capacity reached at step 100k); FactorVAE gamma in {10, 20, 30, 40, 50, 100}; DIP-VAE-I lambda_od
in {1, 2, 5, 10, 20, 50} (lambda_d = 10 lambda_od); DIP-VAE-II lambda_od in {1, 2, 5, 10, 20, 50}
(lambda_d = lambda_od); beta-TCVAE beta in {1, 2, 4, 6, 8, 10}. Every run starts from
`experiments/configs/dsprites.py` (the shared setting: 10 latents, Bernoulli decoder, batch 64,
Adam 1e-4, 29 epochs = 300,672 steps on the procedural dSprites, disentanglement_lib's
conv_encoder and deconv_decoder with Glorot uniform weights) and is scored at the end of training by every
metric with the study's protocol (`eval.disentanglement`, seed 0). The paper trains 50 seeds per
variant (12,600 models over 7 datasets); this file has 50 and `--seeds N` keeps the first N.

The full budget wants an accelerator; the seeds of a variant train as one vectorized program:

    jaxvae study run experiments/studies/locatello_dsprites.py \
        --workdir studies/locatello_dsprites --seeds 5 --seeds-at-once 5
    jaxvae study report studies/locatello_dsprites

A small budget on a CPU is the same command with the budget overridden (docs/disentanglement.md
states the one run there and its results): fewer images and epochs, the metrics' sample counts
reduced (`eval.disentanglement_points`), and `--shard 0/3` for every model's first and fourth
hyperparameter first (the variants are model-major; `--shard 1/3` and `2/3` add the rest).

The report shows every metric's distribution per model and hyperparameter (box plots), the
Spearman rank correlation between the metrics over all runs, and the paper's findings computed
from the runs: the total correlation of the sampled representation falls as regularisation
grows while that of the mean representation does not (the paper's Figure 1), and how much of
each metric's variance lies between seeds of one variant, between hyperparameters of one model
and between models (its Figures 6 and 7: the seed and the hyperparameters matter as much as the
model).
"""

import os

from jaxvae.config import load_config_file
from jaxvae.studies import Figure, Study, Variant

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = os.path.join(HERE, "..", "configs")

# model -> (config file, the hyperparameter's config key, its name, its six values)
GRID = {
    "beta_vae": ("dsprites.py", "objective.beta", "beta", (1.0, 2.0, 4.0, 6.0, 8.0, 16.0)),
    "annealedvae": (
        "annealedvae.py",
        "model.annealedvae.c_max",
        "c_max",
        (5.0, 10.0, 25.0, 50.0, 75.0, 100.0),
    ),
    "factorvae": (
        "factorvae.py",
        "model.factorvae.gamma",
        "gamma",
        (10.0, 20.0, 30.0, 40.0, 50.0, 100.0),
    ),
    "dipvae_i": (
        "dipvae_i.py",
        "model.dipvae_i.lambda_od",
        "lambda_od",
        (1.0, 2.0, 5.0, 10.0, 20.0, 50.0),
    ),
    "dipvae_ii": (
        "dipvae_ii.py",
        "model.dipvae_ii.lambda_od",
        "lambda_od",
        (1.0, 2.0, 5.0, 10.0, 20.0, 50.0),
    ),
    "btcvae": ("dsprites.py", "model.btcvae.beta", "beta", (1.0, 2.0, 4.0, 6.0, 8.0, 10.0)),
}
# Model keys each variant sets (beta-TCVAE: the beta-VAE's setting, its own family and terms).
FAMILY = {
    "btcvae": {
        "model.kind": "btcvae",
        "objective.beta": 1.0,
        "model.btcvae.alpha": 1.0,
        "model.btcvae.gamma": 1.0,
    }
}
WEAKER_WHEN_LARGER = ("annealedvae",)
METRICS = (
    "beta_vae_accuracy",
    "factor_vae_accuracy",
    "mig",
    "dci_disentanglement",
    "dci_completeness",
    "dci_informativeness_test",
    "sap",
    "modularity",
    "explicitness_test",
    "gaussian_total_correlation_sampled",
    "gaussian_total_correlation_mean",
    "test_recon",
    "test_kl",
)


def _variants() -> tuple[Variant, ...]:
    from jaxvae.config import flat

    base = flat(load_config_file(os.path.join(CONFIGS, "dsprites.py")))
    out = []
    for model, (file, key, name, values) in GRID.items():
        config = flat(load_config_file(os.path.join(CONFIGS, file)))
        family = {k: v for k, v in config.items() if base.get(k) != v} | FAMILY.get(model, {})
        for i, value in enumerate(values):
            # strength: the level's rank from the weakest regularisation (AnnealedVAE: the
            # largest capacity c_max is the weakest)
            strength = len(values) - 1 - i if model in WEAKER_WHEN_LARGER else i
            out.append(
                Variant(
                    f"{model}.{name}={value:g}",
                    family | {key: value},
                    {"model": model, "regularisation": value, "strength": strength},
                )
            )
    return tuple(out)


def get_study():
    config = load_config_file(os.path.join(CONFIGS, "dsprites.py"))
    config.train.progress = False
    config.train.eval_every_epochs = 0  # the test figures at the end only
    config.eval.disentanglement = True
    return Study(
        name="locatello_dsprites",
        base_config=config,
        variants=_variants(),
        seeds=50,
        metrics=METRICS,
        curves=("loss",),
        figures=(
            Figure(
                "metric_distributions",
                kind="distributions",
                x="model",
                y="regularisation",
                title="each metric per model and hyperparameter, over seeds",
            ),
            Figure(
                "metric_rank_correlation",
                kind="rank_correlation",
                x="metrics",
                y="metrics",
                title="Spearman rank correlation between the metrics, over all runs",
            ),
            Figure(
                "total_correlation",
                kind="findings",
                x="strength",
                y="model",
                title="total correlation against regularisation, and where the variance lies",
                exceptions=("dipvae_i",),  # the paper's: it penalises the mean's covariance
            ),
        ),
        description=(
            "Locatello et al. (2019)'s unsupervised study on dSprites (jaxvae's procedural "
            "rendering, `data.name=dsprites_procedural`): six models x six hyperparameters, "
            "every run scored by every disentanglement metric at the end of training "
            "(docs/disentanglement.md). gaussian_total_correlation_sampled / _mean: the "
            "Gaussian total correlation of one posterior sample / of the posterior mean per "
            "image (the paper's Figure 1); test_recon and test_kl: the test ELBO's terms."
        ),
    )
