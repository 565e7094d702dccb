"""Keepalive: a silent link is pinged, a peer silent too long is reported (the runtime closes it).

Per link, for this machine:

  input                                   what follows
  --------------------------------------  --------------------------------------------------
  any bytes heard from the peer           it is alive: its silence is measured from now
  a ready link silent for ``keepalive_s``  Ping (once a period: our Ping restarts the count)
  silent for over ``peer_timeout_s``       PeerTimedOut, once, until the peer is heard again

One shared deadline serves every link (``next_deadline``), no timer per link; it may be
early, never late.  Ticks return effects (protocol.effects); nothing here calls the node.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from protocol import events as ev
from protocol.config import NodeConfig
from protocol.effects import Effect, Outbox
from protocol.messages import Ping
from protocol.peer import Link


@dataclass(slots=True)
class Watch:
    """What keepalive knows of one link."""

    last_heard: float  # any frame received refreshes it: a busy link needs no ping
    pinged_at: float = float("-inf")  # our last Ping: a silent link is pinged once a period
    nonce: int = 0
    timed_out: bool = False

    def ping_due(self, keepalive_s: float) -> float:
        """When a silent link wants a Ping: a period after the last frame heard or Ping sent."""
        return max(self.last_heard, self.pinged_at) + keepalive_s


class Keepalive:
    """Pings and peer time-outs of one node (see the module's table)."""

    def __init__(self, config: NodeConfig, links: Mapping[str, Link]) -> None:
        self.config = config
        self.links = links  # read only
        self._watch: dict[str, Watch] = {}
        self._out = Outbox()

    def connected(self, peer_id: str, now: float) -> None:
        self._watch[peer_id] = Watch(last_heard=now)

    def gone(self, peer_id: str) -> None:
        self._watch.pop(peer_id, None)

    def heard(self, peer_id: str, now: float) -> bool:
        """Bytes came from the peer; True if it had timed out (its silence is watched again)."""
        watch = self._watch[peer_id]
        watch.last_heard = now
        if watch.timed_out:
            watch.timed_out = False
            return True
        return False

    def last_heard(self, peer_id: str) -> float:
        return self._watch[peer_id].last_heard

    def tick(self, now: float) -> list[Effect]:
        keepalive = self.config.keepalive_s
        for peer_id, link in self.links.items():
            watch = self._watch[peer_id]
            # Only a link quiet for a whole period is pinged: any frame heard proves it alive.
            if link.ready and now >= watch.ping_due(keepalive):
                watch.nonce += 1
                self._out.send(peer_id, Ping(watch.nonce))
                watch.pinged_at = now
            silent = now - watch.last_heard
            if silent > self.config.peer_timeout_s and not watch.timed_out:
                watch.timed_out = True
                self._out.emit(ev.PeerTimedOut(peer_id, silent))
        return self._out.take()

    def next_deadline(self) -> float | None:
        """The earliest Ping or time-out due on any link (None: no link)."""
        best: float | None = None
        timeout = self.config.peer_timeout_s
        keepalive = self.config.keepalive_s
        for peer_id, link in self.links.items():
            watch = self._watch[peer_id]
            # last_heard only grows, so a kept answer stays early, never late.
            if link.ready and (best is None or watch.ping_due(keepalive) < best):
                best = watch.ping_due(keepalive)
            if not watch.timed_out and (best is None or watch.last_heard + timeout < best):
                best = watch.last_heard + timeout
        return best
