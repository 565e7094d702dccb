"""The holder's side of dispersal (claims 6, 7, 13-17): room promised, originals kept for owners.

A peer's DisperseRequest is accepted with a reservation, or rejected with a reason and
our free room; the original then streams in (protocol/inbound.py lands it, verified,
as ``Incoming.HELD``) and we answer STORED; the owner's Release frees it again.  What
we hold is sealed (issue 7): we keep, verify and hand back bytes we cannot read.

One picture a peer asks us to hold is, for this machine, in one state at a time:

  state     input                                          next state  effects
  --------  ---------------------------------------------  ----------  ----------------------------
  NONE      DisperseRequest naming another owner           NONE        RemoteProtocolError bad-owner
  NONE      DisperseRequest, room below our mark and       RESERVED    reserve; Expect; DisperseAccept
            under the sender's share of our card
  NONE      DisperseRequest, no room or past its share     NONE        DisperseReject (why, free room)
  RESERVED  DisperseRequest again (its link came back)     RESERVED    as from NONE, from the bytes here
  RESERVED  the stream is complete and verified            HELD        Stored; HeldStored
  RESERVED  Release                                        NONE        Cancel; unreserve; discard bytes
  HELD      DisperseRequest (it asks again)                HELD        Stored
  HELD      Release from its owner                         NONE        release it; Released
  HELD      Release from another peer                      HELD        nothing
  NONE      Release                                        NONE        nothing

``TRANSITIONS`` is that table; ``state_of`` reads a picture's state off the card and
the links.  Card writes are direct (a reservation is durable before the accept
leaves); everything for a link or the user is returned as effects (protocol.effects).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

from protocol import events as ev
from protocol import room
from protocol.config import NodeConfig
from protocol.effects import Cancel, Effect, Expect, Outbox
from protocol.errors import RemoteProtocolError
from protocol.messages import (
    DisperseAccept,
    DisperseReject,
    DisperseRequest,
    Purpose,
    Release,
    Stored,
)
from protocol.peer import Expected, Link
from protocol.store import CardFullError, Incoming, Store, StoreError


class HoldState(enum.StrEnum):
    """Where one picture a peer asked us to hold is."""

    NONE = "none"
    RESERVED = "reserved"  # accepted: its room is reserved and its stream expected
    HELD = "held"  # stored and verified for its owner


NONE, RESERVED, HELD = HoldState.NONE, HoldState.RESERVED, HoldState.HELD

TRANSITIONS: Final[Mapping[tuple[HoldState, str], frozenset[HoldState]]] = {
    (NONE, "request"): frozenset({NONE, RESERVED}),  # NONE: rejected (or bad-owner)
    (RESERVED, "request"): frozenset({RESERVED, NONE}),
    (RESERVED, "complete"): frozenset({HELD}),
    (RESERVED, "release"): frozenset({NONE}),
    (HELD, "request"): frozenset({HELD}),
    (HELD, "release"): frozenset({NONE, HELD}),  # HELD: not its owner's Release
    (NONE, "release"): frozenset({NONE}),
}


class Holding:
    """Originals we hold, or promised to hold, for other owners (see the module's table)."""

    def __init__(self, store: Store, config: NodeConfig, links: Mapping[str, Link]) -> None:
        self.store = store
        self.config = config
        self.links = links  # read only: a link is written through effects
        self._out = Outbox()

    def state_of(self, peer_id: str, image_id: str) -> HoldState:
        if self.store.held(image_id) is not None:
            return HoldState.HELD
        link = self.links.get(peer_id)
        if link is not None and (image_id, Purpose.DISPERSE) in link.expected:
            return HoldState.RESERVED
        return HoldState.NONE

    # --- inputs -----------------------------------------------------------------------------

    def on_request(self, peer_id: str, msg: DisperseRequest) -> list[Effect]:
        """Accept with a reservation, or reject with a reason and our free room (claims 6, 7)."""
        store = self.store
        if msg.owner != peer_id:
            raise RemoteProtocolError(
                f"dispersal request for {msg.image_id[:12]} names owner {msg.owner[:12]}, "
                "not the sender",
                code="bad-owner",
            )
        held = store.held(msg.image_id)
        if held is not None:
            self._out.send(peer_id, Stored(msg.image_id, held.digest))
            return self._out.take()
        if self._take_room(self.links[peer_id], msg):
            offset = store.partial_offset(msg.image_id, Incoming.HELD)
            expected = Expected(
                msg.image_id, Purpose.DISPERSE, Incoming.HELD, offset, size=msg.size, owner=peer_id
            )
            self._out.add(Expect(peer_id, expected))
            self._out.send(peer_id, DisperseAccept(msg.image_id, msg.size, offset))
        return self._out.take()

    def held_complete(self, peer_id: str, image_id: str, digest: str) -> list[Effect]:
        """Durable and verified (``finish_partial`` did both): tell the owner."""
        self._out.send(peer_id, Stored(image_id, digest))
        self._out.emit(ev.HeldStored(image_id, peer_id))
        return self._out.take()

    def on_release(self, peer_id: str, msg: Release) -> list[Effect]:
        """The owner no longer needs our copy (or our promise of room)."""
        store = self.store
        held = store.held(msg.image_id)
        if held is not None:
            if held.owner == peer_id:
                store.release_held(msg.image_id)
                self._out.emit(ev.Released(msg.image_id, peer_id))
            return self._out.take()
        # Released before it was stored: drop the reservation and what arrived.
        if (msg.image_id, Purpose.DISPERSE) in self.links[peer_id].expected:
            self._out.add(Cancel(peer_id, msg.image_id, Purpose.DISPERSE))
            try:
                store.unreserve(msg.image_id)
                store.discard_partial(msg.image_id, Incoming.HELD)
            except StoreError:
                pass
        return self._out.take()

    # --- room -------------------------------------------------------------------------------

    def _take_room(self, link: Link, msg: DisperseRequest) -> bool:
        """Reserve the room ``msg`` asks for, or reject it saying why (claims 6, 7)."""
        store = self.store
        usage = store.usage()
        already = store.partial_offset(msg.image_id, Incoming.HELD)
        if msg.size - already > room.below_mark(usage, self.config.high_water):
            self._reject(link, msg, "my card is above its high-water mark")
            return False
        # One peer may not take every holder's room: its held and reserved bytes stay
        # under its share of the card (issue 7, per-peer limits).
        share = room.peer_share(usage.capacity, self.config.max_share_per_peer)
        taken = sum(h.size for h in store.held_originals() if h.owner == link.peer_id)
        taken += sum(
            e.size or 0 for (_, purpose), e in link.expected.items() if purpose is Purpose.DISPERSE
        )
        if taken + msg.size > share:
            self._reject(link, msg, f"you already hold {taken} bytes, your share of my card")
            return False
        try:
            store.reserve(msg.image_id, msg.size)
        except CardFullError:
            self._reject(link, msg, "my card has no room for it")
            return False
        return True

    def _reject(self, link: Link, msg: DisperseRequest, reason: str) -> None:
        free = self.store.usage().free
        self._out.send(
            link.peer_id,
            DisperseReject(msg.image_id, f"{reason} ({free} bytes free, {msg.size} asked)", free),
        )
