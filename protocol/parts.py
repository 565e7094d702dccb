"""The classes a Node is built from: the real ones by default, another one only in a test.

``Node(store, config, rng, parts=Parts(...))`` builds its scheduler (one per link) and its
sub-machines from these.  Production code never names a planted bug: the simulator's suite
plants one by handing the node a subclass that breaks one rule (sim/planted.py), so the bug
lives beside the suite that proves it is caught, and the real classes hold no switch.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.dispersal import Dispersal
from protocol.holding import Holding
from protocol.readout import ReadOuts
from protocol.scheduler import Scheduler
from protocol.serving import Serving


@dataclass(frozen=True, slots=True)
class Parts:
    """One class per replaceable part of a Node; each default is the real one."""

    scheduler: type[Scheduler] = Scheduler
    dispersal: type[Dispersal] = Dispersal
    holding: type[Holding] = Holding
    serving: type[Serving] = Serving
    readouts: type[ReadOuts] = ReadOuts
