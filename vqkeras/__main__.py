"""``python -m vqkeras``: the ``vqkeras`` command (what `vqkeras sweep` starts in each Ray task)."""

import sys

from vqkeras.cli import main

sys.exit(main())
