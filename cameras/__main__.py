"""``python -m cameras``: the same as the ``cameras`` console script (see :mod:`cameras.cli`)."""

import sys

from .cli import main

sys.exit(main())
