"""The model-families table of docs/models.md: every family's shipped config on Fashion-MNIST at
one budget, test negative ELBO, NLL and training speed.

Protocol: dynamically binarized training batches; the test set binarized once with the fixed seed
(`data.EVAL_BINARIZATION_SEED`); NLL = the IWAE bound with `eval.iwae_k` samples on the first
`eval.iwae_num_examples` test images (500 and 500). The discretized-logistic row is the exception: 8-bit
pixels (no binarization), reported in bits per dimension as well. Each variant is its config
file (`experiments/configs/<name>.py`) with the study's budget set on top.

    jaxvae study run experiments/studies/models_table.py --workdir studies/models_table
    jaxvae study report studies/models_table
"""

from jaxvae.config import base_config, changed_keys
from jaxvae.studies import Study

MODELS = ("peer_mlp", "iwae", "hvae", "vampprior", "cvae", "btcvae", "vqvae", "logistic")
EPOCHS = 5
BUDGET = {
    "train.epochs": EPOCHS,
    "train.progress": False,
    "eval.iwae_k": 500,
    "eval.iwae_num_examples": 500,
}


def _overrides(name: str) -> dict:
    """The keys where ``experiments/configs/<name>.py`` differs from the schema's defaults."""
    changed = changed_keys(name)
    if name != "logistic":
        changed["data.binarize"] = "dynamic"
    return changed | BUDGET


def get_study():
    return Study(
        name="models_table",
        base_config=base_config(),
        variants={name: _overrides(name) for name in MODELS},
        seeds=1,
        metrics=(
            "test_nelbo",
            "test_nll",
            "test_nll_se",
            "test_bpd_nll",
            "test_recon",
            "train_images_per_sec",
        ),
        curves=("loss", "test_nelbo"),
        description=(
            f"Every family's shipped config, {EPOCHS} epochs, seed 0, on Fashion-MNIST: "
            "dynamically binarized training batches, a test set binarized once with a fixed seed "
            "(logistic: 8-bit pixels). test_nll is the IWAE bound with k=500 on the first 500 "
            "test images, test_nll_se its standard error over images; train_images_per_sec is "
            "measured on this machine during the run (2 CPU cores, other jobs may share them)."
        ),
    )
