"""Planted bugs: one small subclass per bug, each breaking one rule of the real class.

tests/sim/test_planted_bugs.py proves the simulator's invariants catch each one and
shrink it; ``World(..., planted_bugs=names)`` builds its nodes from ``parts_for(names)``.
Production code (protocol/) never names them: a node with the default ``Parts`` has none.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from protocol import events as ev
from protocol.config import PLANTED_BUGS
from protocol.holding import Holding
from protocol.messages import DisperseRequest, Purpose
from protocol.parts import Parts
from protocol.peer import Link
from protocol.readout import ReadOuts
from protocol.scheduler import Outgoing, Scheduler, SendStrip, Transfer
from protocol.serving import Serving
from protocol.store import DispersalState, Where


class ChunkBeforeThumbnail(Scheduler):
    """"chunk-before-thumbnail": originals overtake thumbnails, and no header waits for one."""

    __slots__ = ()

    def _pop_lanes(self) -> Outgoing | SendStrip | None:
        step = self._pop_transfer()
        return step if step is not None else self._pop_thumbnail()

    def _may_start(self, t: Transfer) -> bool:
        return True


class AcceptPastCapacity(Holding):
    """"accept-past-capacity": a holder accepts every request, checking and reserving no room."""

    def _take_room(self, link: Link, msg: DisperseRequest) -> bool:
        return True


class StaleReadOut(ReadOuts):
    """"stale-readout": a read-out from the card hands out only the first half of the original."""

    def _extent(self, size: int) -> int:
        return size // 2


class FreeBeforeStored(Serving):
    """"free-before-stored": the owner counts a holder as STORED, and may free its own copy,
    as soon as the last frame of the dispersal stream leaves, before the holder said so."""

    def _sent(self, link: Link, t: Transfer, now: float) -> None:
        super()._sent(link, t, now)
        if t.purpose is not Purpose.DISPERSE:
            return
        store = self.store
        store.set_dispersion(t.image_id, link.peer_id, DispersalState.STORED, now)
        record = store.image(t.image_id)
        holders = tuple(
            e.holder for e in store.dispersion(t.image_id) if e.state is DispersalState.STORED
        )
        if record is not None and record.where is Where.LOCAL \
                and len(holders) >= self.config.replicas:
            store.free_original(t.image_id, now)
            self._out.emit(ev.Dispersed(t.image_id, holders))


# bug name -> the part it replaces and the class it plants there
PLANTED: Mapping[str, tuple[str, type]] = {
    "chunk-before-thumbnail": ("scheduler", ChunkBeforeThumbnail),
    "accept-past-capacity": ("holding", AcceptPastCapacity),
    "stale-readout": ("readouts", StaleReadOut),
    "free-before-stored": ("serving", FreeBeforeStored),
}


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
