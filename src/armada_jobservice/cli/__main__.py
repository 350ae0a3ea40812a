"""``python -m armada_jobservice.cli``: the same as the ``armada-jobservice`` command."""

import sys

from armada_jobservice.cli import main

sys.exit(main())
