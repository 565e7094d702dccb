"""The world's agenda: its timed events on one heap, in time order.

An event is ``(at, seq, kind, a, b, payload)``; ties in time are broken by ``seq``, the
order the events were added in, so a run never depends on comparing payloads and the
same seed gives the same order in any process.  What ``a``, ``b`` and the payload mean
depends on the kind (sim/world.py and sim/wire.py handle them).
"""

from __future__ import annotations

import heapq
from typing import Any

# The kinds of event (LIE: a frame of a lying peer's, sim/lying.py).
CAPTURE, DELIVER, LANE_FREE, TICK, CONNECT, STEP, RESTART, HEAL, REAPPEAR, LIE = range(10)
KIND_NAMES = (
    "capture", "deliver", "lane_free", "tick", "connect", "step", "restart", "heal", "reappear",
    "lie",
)

Event = tuple[float, int, int, int, int, Any]


class Agenda:
    """A heap of timed events; ``heap`` is public so that the world's loop can read it fast."""

    __slots__ = ("_seq", "heap")

    def __init__(self) -> None:
        self.heap: list[Event] = []
        self._seq = 0

    def push(self, at: float, kind: int, a: int, b: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self.heap, (at, self._seq, kind, a, b, payload))
