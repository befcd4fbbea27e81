"""``python -m popgate.cli``: what the host runs for each service."""

import sys

from popgate.cli import main

sys.exit(main())
