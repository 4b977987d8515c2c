"""`python -m emrchain.cli`: the `emrchain` command (what the console script runs)."""

import sys

from emrchain.cli.main import main

sys.exit(main())
