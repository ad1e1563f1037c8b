"""Burda et al. 2016 (Importance Weighted Autoencoders), Table 1, MNIST: test NLL of VAE and IWAE
objectives with k in {1, 5, 50}, one and two stochastic layers.

Protocol from the paper (section 5): dynamically binarized MNIST (60k train, 10k test, the test set
binarized once here with `data.EVAL_BINARIZATION_SEED`); one layer 784-200-200-50 (tanh),
two layers 784-200-200-100 (z1) -100-100-50 (z2); Bernoulli decoder; Adam with beta1 0.9, beta2
0.999, epsilon 1e-4, batch 20; the stepped schedule: 3^i epochs at 1e-3 * 10^(-i/7), i = 0..7 (3280
epochs); NLL by the IWAE bound with k = 5000. "VAE, k" is the ELBO averaged over k samples
(`objective.name=elbo_k`), "IWAE, k" the k-sample bound. MNIST must be a prepared TFDS dataset
(`--config.data.tfds_data_dir`). The full budget needs an accelerator; a quick look:

    jaxvae study run experiments/studies/iwae_table1.py --workdir studies/iwae_table1 \
        --config.train.epochs=10 --config.train.lr_schedule=constant
"""

from jaxvae.config import flat, load_config_file
from jaxvae.studies import Axis, Reference, Study

SOURCE = "Burda, Grosse and Salakhutdinov 2016, Importance Weighted Autoencoders, Table 1 (MNIST)"
# Test NLL in nats (-log p(x)), (layers, objective, k) -> value.
PUBLISHED = {
    (1, "vae", 1): 86.76,
    (1, "vae", 5): 86.47,
    (1, "vae", 50): 86.35,
    (1, "iwae", 1): 86.76,
    (1, "iwae", 5): 85.54,
    (1, "iwae", 50): 84.78,
    (2, "vae", 1): 85.33,
    (2, "vae", 5): 85.01,
    (2, "vae", 50): 84.78,
    (2, "iwae", 1): 85.33,
    (2, "iwae", 5): 83.89,
    (2, "iwae", 50): 82.90,
}


def layers_axis():
    """One layer (iwae.py's network) or two (hvae.py's), as overrides on iwae.py's config."""
    one = flat(load_config_file("iwae"))
    two = flat(load_config_file("hvae"))
    diff = {
        k: v
        for k, v in two.items()
        if one.get(k) != v and not k.startswith(("train.", "objective."))
    }
    return Axis("layers", levels={"1": {"model.kind": "vae"}, "2": diff})


def base(dataset: str):
    config = load_config_file("iwae")
    config.data.name = dataset
    config.data.binarize = "dynamic"
    config.train.batch_size = 20
    config.train.adam_eps = 1e-4
    config.train.lr_schedule = "iwae"
    config.train.epochs = 3280
    config.train.progress = False
    config.eval.iwae_k = 5000
    config.eval.iwae_num_examples = 10_000
    return config


def grid():
    objective = Axis(
        "objective",
        levels={"vae": {"objective.name": "elbo_k"}, "iwae": {"objective.name": "iwae"}},
    )
    return (layers_axis(), objective, Axis("k", key="objective.k", values=(1, 5, 50)))


def get_study():
    references = tuple(
        Reference(f"layers={layers},objective={obj},k={k}", "test_nll", value, source=SOURCE)
        for (layers, obj, k), value in PUBLISHED.items()
    )
    return Study(
        name="iwae_table1",
        base_config=base("mnist"),
        axes=grid(),
        seeds=1,
        metrics=("test_nll", "test_nll_se", "test_nelbo", "test_active_units"),
        references=references,
        curves=("loss", "test_nelbo"),
        description=(
            "Burda et al. 2016, Table 1 on dynamically binarized MNIST: the paper's networks, "
            "Adam (epsilon 1e-4), batch 20, the stepped learning-rate schedule over 3280 epochs, "
            "test NLL by the k=5000 IWAE bound. VAE rows train the ELBO averaged over k samples."
        ),
    )
