"""``python -m sim``: the simulator's command line without the rest of cammesh."""

from __future__ import annotations

import sys

from sim.cli import main

sys.exit(main())
