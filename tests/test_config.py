"""Config files, overrides and validation."""

import os
import subprocess
import sys

import pytest

from jaxvae import config as config_lib
from jaxvae import models
from tests.conftest import CONFIGS, REPO

ALL_CONFIGS = sorted(f for f in os.listdir(CONFIGS) if f.endswith(".py"))


@pytest.mark.parametrize("name", ALL_CONFIGS)
def test_shipped_configs_validate(name):
    config = config_lib.load_config_file(os.path.join(CONFIGS, name))
    config_lib.validate(config)


def test_peer_mlp_is_the_pytorch_protocol():
    c = config_lib.load_config_file(os.path.join(CONFIGS, "peer_mlp.py"))
    assert (c.model.architecture, tuple(c.model.hidden), c.model.latent_dim) == ("mlp", (400,), 20)
    assert (c.train.optimizer, c.train.learning_rate, c.train.batch_size) == ("adam", 1e-3, 128)
    assert c.train.epochs == 10 and c.data.binarize == "none"
    assert c.data.validation_size == 0  # the pytorch/examples protocol has no validation set


def test_overrides_parse_by_type():
    c = config_lib.base_config()
    config_lib.apply_overrides(
        c,
        [
            "train.epochs=3",
            "train.learning_rate=2e-4",
            "train.progress=false",
            "model.channels=16,32,64",
            "model.hidden=(100, 50)",
            "data.name=mnist",
        ],
    )
    assert c.train.epochs == 3 and c.train.learning_rate == 2e-4 and c.train.progress is False
    assert c.model.channels == (16, 32, 64) and c.model.hidden == (100, 50)
    assert c.data.name == "mnist"


def test_set_value_one_rule_for_texts_and_values():
    """A study's values and the command line's texts go through one setter: a text is parsed as
    the key's type, any other value must have that type (an int is a float, a list a tuple)."""
    for value, expected in [("2", 2.0), (2, 2.0), (0.5, 0.5)]:
        c = config_lib.base_config()
        config_lib.set_value(c, "objective.beta", value)
        assert c.objective.beta == expected and isinstance(c.objective.beta, float)
    for value in ("16", "(16,)", [16], (16,)):
        c = config_lib.base_config()
        config_lib.set_value(c, "model.hidden", value)
        assert c.model.hidden == (16,)
    c = config_lib.base_config()
    config_lib.set_value(c, "train.progress", "no")
    assert c.train.progress is False
    for key, value in [("train.progress", 1), ("train.epochs", True), ("train.epochs", 2.0)]:
        with pytest.raises(ValueError, match=f"{key}={value!r}: expected a value of type"):
            config_lib.set_value(config_lib.base_config(), key, value)
    with pytest.raises(
        ValueError, match=r"--config.train.epochs='x': expected a value of type int"
    ):
        config_lib.apply_overrides(config_lib.base_config(), ["train.epochs=x"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epoch=3", "unknown config key 'train.epoch'"),
        ("nope.x=1", "unknown config key 'nope.x'"),
        ("train=1", "unknown config key 'train'"),
        ("train.epochs=three", "expected a value of type int"),
        ("train.learning_rate=fast", "expected a value of type float"),
        ("train.progress=maybe", "expected a value of type bool"),
        ("train.epochs", "needs a value"),
    ],
)
def test_bad_overrides(override, message):
    with pytest.raises(ValueError, match=message):
        config_lib.apply_overrides(config_lib.base_config(), [override])


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("train.batch_size", 0, "train.batch_size=0: expected a positive integer"),
        ("train.epochs", -1, "train.epochs=-1"),
        ("train.learning_rate", 0.0, "train.learning_rate"),
        ("model.latent_dim", 0, "latent_dim must be a positive integer"),
        ("model.channels", (32, 0), "channels must be a sequence of positive integers"),
        ("model.kind", "gan", r"model.kind='gan': expected one of \(.*'vae'"),
        ("data.name", "imagenet", "data.name='imagenet'"),
        ("data.binarize", "yes", "data.binarize"),
        ("data.validation_size", -1, "data.validation_size=-1: expected >= 0"),
        ("objective.beta", -1.0, "beta must be >= 0"),
        ("eval.iwae_k", -5, "eval.iwae_k"),
    ],
)
def test_validate_refuses_bad_values(key, value, message):
    c = config_lib.base_config()
    section, leaf = key.split(".")
    c[section][leaf] = value
    with pytest.raises(ValueError, match=message):
        config_lib.validate(c)


def test_json_round_trip():
    c = config_lib.load_config_file(os.path.join(CONFIGS, "dae.py"))
    again = config_lib.from_json(config_lib.to_json(c))
    assert config_lib.to_json(again) == config_lib.to_json(c)
    assert again.model.channels == (32, 64)


def test_config_file_with_unknown_key(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text(
        "from jaxvae.config import base_config\n"
        "def get_config():\n    c = base_config()\n    c.train.epohcs = 2\n    return c\n"
    )
    with pytest.raises(ValueError, match="epohcs"):
        config_lib.load_config_file(str(path))


def test_conv_impl_auto_is_fast_on_cpu_and_lax_elsewhere():
    assert config_lib.resolve_conv_impl("auto", "cpu") == "fast"
    assert config_lib.resolve_conv_impl("auto", "gpu") == "fast"
    assert config_lib.resolve_conv_impl("auto", "tpu") == "lax"
    assert config_lib.resolve_conv_impl("lax", "cpu") == "lax"
    c = config_lib.load_config_file(os.path.join(CONFIGS, "default.py"))
    assert c.model.conv_impl == "auto"
    info = models.DataInfo(image_shape=(28, 28, 1))
    assert config_lib.make_model(c, info).conv_impl == "fast"  # the tests run on CPU
    c.model.conv_impl = "cudnn"
    with pytest.raises(ValueError, match="conv_impl"):
        config_lib.validate(c)


def test_validate_does_not_start_the_jax_backend():
    """jax.distributed.initialize() must come first in multi-process runs, after validation."""
    code = (
        "import jax._src.xla_bridge as xb; from jaxvae import config as c; "
        "cfg = c.load_config_file('experiments/configs/default.py'); c.validate(cfg); "
        "assert not xb._backends, 'validate started a backend'"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_a_run_written_before_a_key_existed_resumes_at_its_default(tmp_path):
    """check_compatible: a config.json without a key the config now has at its default is the
    same run (it resumes); at another value it is refused, naming the key."""
    import json

    from jaxvae import workdir as workdir_lib

    config = config_lib.base_config()
    saved = json.loads(config_lib.to_json(config))
    del saved["train"]["adam_eps"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert workdir_lib.check_compatible(str(tmp_path), config) is True
    config.train.adam_eps = 1e-4
    with pytest.raises(ValueError, match=r"train.adam_eps: None -> 0.0001"):
        workdir_lib.check_compatible(str(tmp_path), config)
