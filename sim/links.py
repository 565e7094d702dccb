"""Simulated links: one network link per pair of devices, two lanes with bandwidth and latency.

A lane is one direction of a connection.  The world pulls a frame from the
sender's node only when the lane is free; the frame occupies the lane for
``len / bandwidth`` seconds and lands ``latency`` later, in order.  The lane
is woken (a LANE_FREE event) when it frees only if the sender may have more.  Each
connection has an epoch: when it breaks, frames still in flight carry the old
epoch and are dropped on arrival, as a torn TCP stream would lose them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class LinkDirection:
    """One direction of a connection; ``thumbnails`` is what the world's wire tap saw cross it."""

    src: int
    dst: int
    bandwidth: float
    latency: float
    busy_until: float = 0.0  # virtual time the frame being serialised has left
    free_pending: bool = False  # a LANE_FREE event at busy_until is on the heap
    # Image ids whose thumbnail crossed this lane, in any epoch (the receiver keeps it).
    thumbnails: set[str] = field(default_factory=set)

    def reset(self) -> None:
        """The connection broke: frames on their way are gone with it."""
        self.busy_until = 0.0
        self.free_pending = False


@dataclass(slots=True)
class NetworkLink:
    """The simulated network between devices ``a < b``; ``up`` while both nodes believe the
    connection over it is open.  Not ``protocol.connection.Connection``, the per-peer
    protocol state inside a node: this is the wire the world carries frames over."""

    a: int
    b: int
    lanes: dict[int, LinkDirection]  # keyed by the sending device
    epoch: int = 0
    up: bool = False
    reconnect_pending: bool = False

    def lane_from(self, src: int) -> LinkDirection:
        return self.lanes[src]

    def other(self, dev: int) -> int:
        return self.b if dev == self.a else self.a


def make_link(a: int, b: int, bandwidth: float, latency: float) -> NetworkLink:
    """A link (its connection not yet up) with symmetric lanes."""
    lo, hi = min(a, b), max(a, b)
    return NetworkLink(
        lo,
        hi,
        {lo: LinkDirection(lo, hi, bandwidth, latency), hi: LinkDirection(hi, lo, bandwidth, latency)},
    )
