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

A family defined outside jaxvae registers the same way from its own module, which is found again
by every later command through either of (:func:`load`):

* an entry point of the group ``jaxvae.models`` named after the family (its value the module, or
  the class itself), loaded when that kind is first asked for;
* the config's ``imports``, module names imported before a saved config is read.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
from collections.abc import Sequence

from jaxvae.models import capabilities
from jaxvae.models.base import DataInfo, Model, Params, Presentation, num_params

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


def families() -> dict[str, type[Model]]:
    """Every registered family by name (this package's modules imported on the first call)."""
    global _LOADED
    if not _LOADED:
        _LOADED = True
        for info in pkgutil.iter_modules(__path__):
            if info.name not in ("base", "capabilities"):
                importlib.import_module(f"{__name__}.{info.name}")
    return dict(_FAMILIES)


def get(name: str) -> type[Model]:
    """The family registered as ``name`` (loading its entry point, see :func:`load`)."""
    load(kinds=(name,))
    known = families()
    if name not in known:
        raise ValueError(f"model kind must be one of {tuple(sorted(known))}, got {name!r}")
    return known[name]


ENTRY_POINTS = "jaxvae.models"  # the entry-point group of families defined outside jaxvae


def load(imports: Sequence[str] = (), kinds: Sequence[str] = ()) -> None:
    """Imports the modules ``imports`` and, for each of ``kinds`` not registered yet, the
    ``jaxvae.models`` entry point of that name; a class it names is registered under that name
    unless its module registered it.

    Raises:
      ValueError: a module or entry point that does not import (one line naming it).
    """
    if isinstance(imports, str):
        raise ValueError(f"imports must be a sequence of module names, got {imports!r}")
    for module in imports:
        _call(importlib.import_module, module, what=f"imports: module {module!r}")
    missing = set(kinds) - set(families())
    if not missing:
        return
    for point in importlib.metadata.entry_points(group=ENTRY_POINTS):
        if point.name in missing and point.name not in _FAMILIES:
            what = f"model kind {point.name!r}: entry point {point.value!r}"
            loaded = _call(lambda p: p.load(), point, what=what)
            if isinstance(loaded, type) and issubclass(loaded, Model):
                if loaded not in _FAMILIES.values():
                    register(point.name)(loaded)


def _call(function, arg, *, what: str):
    try:
        return function(arg)
    except Exception as e:  # noqa: BLE001 - a user's module may raise anything: one clear line
        message = str(e).splitlines()[0] if str(e) else ""
        raise ValueError(f"{what} does not import ({type(e).__name__}: {message})") from None


__all__ = [
    "ENTRY_POINTS",
    "DataInfo",
    "Model",
    "Params",
    "Presentation",
    "capabilities",
    "families",
    "get",
    "load",
    "num_params",
    "register",
]
