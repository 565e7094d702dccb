"""Planted bugs: one small subclass per bug, each breaking one rule of the real class.

tests/sim/test_planted_bugs.py proves the simulator's invariants catch each one and
shrink it; ``World(..., planted_bugs=names)`` builds its nodes from ``parts_for(names)``.
Production code (protocol/) never names them: a node with the default ``Parts`` has none.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from protocol.config import PLANTED_BUGS
from protocol.dispersal import Dispersal
from protocol.messages import DisperseRequest
from protocol.parts import Parts
from protocol.peer import Link
from protocol.scheduler import Outgoing, Scheduler, SendStrip, Transfer


class ChunkBeforeThumbnail(Scheduler):
    """"chunk-before-thumbnail": originals overtake thumbnails, and no header waits for one."""

    __slots__ = ()

    def _pop_lanes(self) -> Outgoing | SendStrip | None:
        step = self._pop_transfer()
        return step if step is not None else self._pop_thumbnail()

    def _may_start(self, t: Transfer) -> bool:
        return True


class AcceptPastCapacity(Dispersal):
    """"accept-past-capacity": a holder accepts every request, checking and reserving no room."""

    def _take_room(self, link: Link, msg: DisperseRequest) -> bool:
        return True


# bug name -> the part it replaces and the class it plants there
PLANTED: Mapping[str, tuple[str, type]] = {
    "chunk-before-thumbnail": ("scheduler", ChunkBeforeThumbnail),
    "accept-past-capacity": ("dispersal", AcceptPastCapacity),
}
# Still a switch inside protocol/ (NodeConfig.planted_bugs, config.bug) until it moves here.
SWITCHED = PLANTED_BUGS - set(PLANTED)


def parts_for(bugs: frozenset[str]) -> Parts:
    """The parts of a node with ``bugs`` planted (the names protocol.config.PLANTED_BUGS holds)."""
    unknown = bugs - PLANTED_BUGS
    if unknown:
        raise ValueError(f"unknown planted bugs {sorted(unknown)}; known: {sorted(PLANTED_BUGS)}")
    chosen: dict[str, type] = {}
    for bug in sorted(bugs & set(PLANTED)):
        part, cls = PLANTED[bug]
        if part in chosen:
            raise ValueError(f"{bug!r} and another planted bug both replace the {part}")
        chosen[part] = cls
    return dataclasses.replace(Parts(), **chosen)
