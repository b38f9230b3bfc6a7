"""``python3 -m probe [--config PATH] VERB ARG...``: the node command, run locally."""

import sys

from probe.node import main

sys.exit(main())
