"""Shipped configs and studies by name (jaxvae.shipped), and model families defined outside
jaxvae: found again through the config's ``imports`` or a ``jaxvae.models`` entry point."""

import glob
import importlib
import json
import os
import sys

import pytest

from jaxvae import cli, models, shipped
from jaxvae import config as config_lib
from jaxvae.studies import expand, load_study
from tests.conftest import REPO

EXPERIMENTS = os.path.join(REPO, "experiments")


def _stems(directory):
    return sorted(
        os.path.basename(p)[:-3] for p in glob.glob(os.path.join(EXPERIMENTS, directory, "*.py"))
    )


def test_every_shipped_config_loads_by_name_as_by_path():
    assert shipped.names("config") == _stems("configs")
    for name in shipped.names("config"):
        by_path = config_lib.load_config_file(os.path.join(EXPERIMENTS, "configs", f"{name}.py"))
        assert config_lib.flat(config_lib.load_config_file(name)) == config_lib.flat(by_path)
    vae = config_lib.flat(config_lib.load_config_file("vae"))
    assert vae == config_lib.flat(config_lib.load_config_file("default"))
    assert vae["model.kind"] == "vae" and vae["model.architecture"] == "conv"


def test_shipped_studies_load_by_name():
    assert shipped.names("study") == _stems("studies")
    by_name = [r.name for r in expand(load_study("beta_sweep"))]
    path = os.path.join(EXPERIMENTS, "studies", "beta_sweep.py")
    assert by_name == [r.name for r in expand(load_study(path))] and len(by_name) == 30


@pytest.mark.parametrize(
    "load, name, kind",
    [(config_lib.load_config_file, "vea", "config"), (load_study, "beta_swep", "study")],
)
def test_an_unknown_name_is_one_line_listing_the_known_names(load, name, kind):
    with pytest.raises(ValueError) as e:
        load(name)
    message = str(e.value)
    assert "\n" not in message and f"unknown {kind} {name!r}" in message
    for known in shipped.names(kind):
        assert known in message


def test_a_path_is_still_a_path(tmp_path):
    missing = str(tmp_path / "vae.py")
    with pytest.raises(ValueError, match="does not exist"):
        config_lib.load_config_file(missing)


def test_the_cli_lists_shipped_files_and_refuses_an_unknown_name(capsys, tmp_path):
    assert cli.main(["configs"]) == 0
    out = capsys.readouterr().out
    assert "configs (jaxvae train --config NAME):" in out
    assert "  exemplar_fmnist  " in out and "  vae, default  Default run:" in out
    code = cli.main(["train", "--config", "nosuch", "--workdir", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "unknown config 'nosuch'" in err
    assert not os.path.exists(tmp_path / "w")


FAMILY = """
import dataclasses

from jaxvae.models import register
from jaxvae.models.vae import VAE


@register("{name}")
@dataclasses.dataclass(frozen=True)
class Family(VAE):
    scale: float = 1.0
"""

UNREGISTERED = """
import dataclasses

from jaxvae.models.vae import VAE


@dataclasses.dataclass(frozen=True)
class Family(VAE):
    scale: float = 1.0
"""


@pytest.fixture
def registry(monkeypatch, tmp_path):
    """A copy of the family registry (families registered by a test leave with it) and a
    directory on ``sys.path`` for the test's packages."""
    monkeypatch.setattr(models, "_FAMILIES", dict(models.families()))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("ext_")]:
        del sys.modules[name]


def _saved(kind, **sections):
    config = json.loads(config_lib.to_json(config_lib.base_config()))
    config["model"]["kind"] = kind
    config["model"] |= sections
    return config


def test_a_saved_config_imports_its_modules_again(registry):
    (registry / "ext_imported.py").write_text(FAMILY.format(name="ext_imported"))
    saved = _saved("ext_imported", ext_imported={"scale": 0.5}) | {"imports": ["ext_imported"]}
    config = config_lib.from_json(json.dumps(saved))
    assert config.imports == ("ext_imported",) and config.model.ext_imported.scale == 0.5
    model = config_lib.make_model(config, models.DataInfo((28, 28, 1)), backend="cpu")
    assert type(model).__module__ == "ext_imported" and model.scale == 0.5
    # base_config(imports=...) gives a config file the family's options, and records the module
    fresh = config_lib.base_config(imports=("ext_imported",))
    assert fresh.imports == ("ext_imported",) and fresh.model.ext_imported.scale == 1.0


def test_an_unregistered_family_in_a_saved_config_says_how_to_register_it(registry):
    saved = _saved("vae", ext_nowhere={"scale": 0.5})
    with pytest.raises(ValueError) as e:
        config_lib.from_json(json.dumps(saved))
    message = str(e.value)
    assert "\n" not in message and "'model.ext_nowhere'" in message
    assert "imports" in message and "jaxvae.models entry point" in message
    with pytest.raises(ValueError, match=r"imports: module 'ext_absent' does not import"):
        config_lib.from_json(json.dumps(_saved("vae") | {"imports": ["ext_absent"]}))


def _entry_points(directory, lines):
    info = directory / "ext_dist-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ext_dist\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[jaxvae.models]\n" + "".join(f"{x}\n" for x in lines))
    importlib.invalidate_caches()


def test_entry_points_load_when_their_kind_is_asked_for(registry):
    (registry / "ext_module.py").write_text(FAMILY.format(name="ext_module"))
    (registry / "ext_class.py").write_text(UNREGISTERED)
    _entry_points(
        registry,
        [
            "ext_module = ext_module",  # a module that registers itself
            "ext_class = ext_class:Family",  # a class, registered under the entry point's name
            "ext_broken = ext_missing_module",
        ],
    )
    assert models.get("vae").name == "vae"  # no entry point loaded for a known kind
    assert "ext_module" not in sys.modules and "ext_broken" not in models.families()
    assert models.get("ext_module").__module__ == "ext_module"
    family = models.get("ext_class")
    assert family.name == "ext_class" and family.__module__ == "ext_class"
    saved = _saved("ext_class", ext_class={"scale": 2.0})
    config = config_lib.from_json(json.dumps(saved))
    assert config_lib.make_model(config, models.DataInfo((28, 28, 1)), backend="cpu").scale == 2.0
    with pytest.raises(ValueError) as e:
        models.get("ext_broken")
    assert "\n" not in str(e.value)
    assert "entry point 'ext_missing_module' does not import (ModuleNotFoundError" in str(e.value)
