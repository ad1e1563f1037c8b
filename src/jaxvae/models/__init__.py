"""Model families: each a module in this package that registers itself by name.

A family is a frozen dataclass subclass of :class:`~jaxvae.models.base.Model` decorated with
:func:`register`; it owns its parameters, training terms, importance log-weights, encoder,
decoder, prior and pictures. Every module in this package is imported on first use, so adding a
family is adding one file: ``src/jaxvae/models/<name>.py``. The config chooses a family with
``model.kind`` and gives its own options in ``model.<kind>``::

    model = models.get("vae")(image_shape=(28, 28, 1), latent_dim=8)
    params, state = model.init(jax.random.key(0))

(:func:`jaxvae.config.make_model` builds the family of a config, with ``model.<kind>``'s keys,
the family's own dataclass fields, as its arguments.)
"""

from __future__ import annotations

import importlib
import pkgutil

from jaxvae.models.base import DataInfo, Model, Params, num_params

_FAMILIES: dict[str, type[Model]] = {}
_LOADED = False


def register(name: str):
    """Class decorator: makes a :class:`Model` subclass the family ``name``."""

    def deco(cls: type[Model]) -> type[Model]:
        if name in _FAMILIES and _FAMILIES[name] is not cls:
            raise ValueError(f"model family {name!r} is registered twice")
        cls.name = name
        _FAMILIES[name] = cls
        return cls

    return deco


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")


def families() -> dict[str, type[Model]]:
    """Every registered family, by name."""
    _load_all()
    return dict(_FAMILIES)


def get(name: str) -> type[Model]:
    """The family registered as ``name``."""
    known = families()
    if name not in known:
        raise ValueError(f"model kind must be one of {tuple(sorted(known))}, got {name!r}")
    return known[name]


__all__ = [
    "DataInfo",
    "Model",
    "Params",
    "families",
    "get",
    "num_params",
    "register",
]
