"""Studies: a grid of configs x seeds, trained as ordinary runs, resumable and shardable, and a
report of means and stds over seeds beside published references.

A study file ``experiments/studies/<name>.py`` defines ``get_study()`` returning a :class:`Study`;
``jaxvae study run FILE --workdir DIR`` trains it, ``jaxvae study status DIR`` and
``jaxvae study report DIR`` tell where it stands and what it found (``docs/studies.md``).
"""

from jaxvae.studies import metric_figures  # noqa: F401 (registers its figure kinds)
from jaxvae.studies.definition import Axis, Figure, Reference, Study, Variant, load_study
from jaxvae.studies.runs import expand, shard

__all__ = ["Axis", "Figure", "Reference", "Study", "Variant", "expand", "load_study", "shard"]
