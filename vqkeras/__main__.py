"""``python -m vqkeras``: the same as the ``vqkeras`` command."""

import sys

from vqkeras.cli import main

sys.exit(main())
