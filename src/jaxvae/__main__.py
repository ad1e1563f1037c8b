"""``python -m jaxvae``: the ``jaxvae`` command, for environments without the console script."""

import sys

from jaxvae.cli import main

sys.exit(main())
