"""`python -m emrchain.sim` is `scripts/simulate`."""

import sys

from emrchain.sim.cli import main

sys.exit(main())
