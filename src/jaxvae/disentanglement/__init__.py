"""Disentanglement metrics of Locatello et al. (ICML 2019), with disentanglement_lib's protocol.

Each metric has a pure core on given arrays (``mig_from_codes(codes, factors)``, ...) and a
``compute_<name>(ground_truth_data, representation_fn, rng, **protocol)`` that samples the points
its protocol asks for; :func:`evaluate_all` runs them all, encoding each factor combination once
where that saves work (:func:`plan` counts it; :mod:`~jaxvae.disentanglement.table`). See
docs/disentanglement.md.
"""

from jaxvae.disentanglement.beta_vae import beta_vae_from_features, compute_beta_vae
from jaxvae.disentanglement.dci import compute_dci, dci_from_codes, dci_from_importance
from jaxvae.disentanglement.factor_vae import compute_factor_vae, factor_vae_from_votes
from jaxvae.disentanglement.ground_truth import GroundTruthData, sample_codes_and_factors
from jaxvae.disentanglement.information import (
    discrete_entropy,
    discrete_mutual_information,
    histogram_discretize,
)
from jaxvae.disentanglement.mig import compute_mig, mig_from_codes
from jaxvae.disentanglement.modularity import (
    compute_modularity_explicitness,
    modularity_explicitness_from_codes,
    modularity_from_mutual_information,
)
from jaxvae.disentanglement.sap import compute_sap, sap_from_codes
from jaxvae.disentanglement.suite import METRICS, Evaluation, Plan, evaluate_all, plan, protocol_of
from jaxvae.disentanglement.table import CodeTable, fixed_batches
from jaxvae.disentanglement.total_correlation import (
    aggregate_posterior_covariance,
    compute_total_correlation,
    gaussian_total_correlation,
    total_correlation_from_posteriors,
)

__all__ = [
    "METRICS",
    "CodeTable",
    "Evaluation",
    "GroundTruthData",
    "Plan",
    "aggregate_posterior_covariance",
    "beta_vae_from_features",
    "compute_beta_vae",
    "compute_dci",
    "compute_factor_vae",
    "compute_mig",
    "compute_modularity_explicitness",
    "compute_sap",
    "compute_total_correlation",
    "dci_from_codes",
    "dci_from_importance",
    "discrete_entropy",
    "discrete_mutual_information",
    "evaluate_all",
    "factor_vae_from_votes",
    "fixed_batches",
    "gaussian_total_correlation",
    "histogram_discretize",
    "mig_from_codes",
    "modularity_explicitness_from_codes",
    "modularity_from_mutual_information",
    "plan",
    "protocol_of",
    "sample_codes_and_factors",
    "sap_from_codes",
    "total_correlation_from_posteriors",
]
