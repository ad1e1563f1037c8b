"""A config file that raises, in any way, is one line on stderr, exit code 2, nothing written."""

import os

import pytest

from jaxvae import cli

CASES = {
    "zero": "def get_config():\n    return 1 / 0\n",
    "import": "import no_such_module_here\n",
    "syntax": "def get_config(:\n",
    "not_a_config": "def get_config():\n    return {'seed': 0}\n",
    "no_get_config": "x = 1\n",
    "unknown_key": (
        "from jaxvae.config import base_config\n\ndef get_config():\n"
        "    c = base_config()\n    c.train.epocs = 3\n    return c\n"
    ),
}
EXPECTED = {
    "zero": "ZeroDivisionError: division by zero (line 2)",
    "import": "ModuleNotFoundError",
    "syntax": "SyntaxError",
    "not_a_config": "returned dict",
    "no_get_config": "has no get_config()",
    "unknown_key": "epocs",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_config_file_that_raises_is_one_line(case, tmp_path, capsys):
    path = tmp_path / f"{case}.py"
    path.write_text(CASES[case])
    workdir = tmp_path / "run"
    code = cli.main(["train", "--config", str(path), "--workdir", str(workdir)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("jaxvae train: error: config file") and EXPECTED[case] in err, err
    assert not os.path.exists(workdir)
