"""``python -m deepfer.cli``: the ``deepfer`` command, for an environment without its console script."""

import sys

from deepfer.cli import main

sys.exit(main())
