"""Dispersal when a card fills (claims 1-7, 11-17): the owner's choices and the holder's answers.

Owner: above the high-water mark, pick originals (oldest capture first, only
our own complete LOCAL ones) and holders (ready peers advertising room, desks
first, then a stable per-picture order), ask, stream on accept, and free the
original only once ``replicas`` holders answered STORED (the dispersion-list
entry is durable first).  Holder: accept by reserving room, or reject with a
reason and our free room; store, verify, answer STORED; release on request.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from protocol import events as ev
from protocol.errors import RemoteProtocolError
from protocol.messages import (
    DisperseAccept,
    DisperseReject,
    DisperseRequest,
    OriginalComplete,
    Purpose,
    Release,
    Stored,
)
from protocol.peer import Expected, Link, holder_rank
from protocol.scheduler import Lane, Source, Transfer
from protocol.store import (
    CardFull,
    DispersalState,
    DispersionEntry,
    ImageRecord,
    Incoming,
    StoreError,
    Where,
)

if TYPE_CHECKING:
    from protocol.node import Node

_OUTGOING = (DispersalState.REQUESTED, DispersalState.ACCEPTED)


class Dispersal:
    """Both sides of the dispersal negotiation for one node."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._rejected: dict[tuple[str, str], float] = {}  # (image, holder) -> skip until
        self._full_reported = False

    # --- the owner's side ---------------------------------------------------------------

    def _limit(self, capacity: int) -> int:
        return int(self.node.config.high_water * capacity)

    def maybe_disperse(self, now: float) -> None:
        """Above the high-water mark: ask holders for the oldest originals (claims 1, 11)."""
        store = self.node.store
        self._rejected = {k: until for k, until in self._rejected.items() if until > now}
        usage = store.usage()
        if usage.used <= self._limit(usage.capacity):
            self._full_reported = False
            self._rejected.clear()
            return
        excess = usage.used - self._limit(usage.capacity)
        by_image: dict[str, list[DispersionEntry]] = defaultdict(list)
        for entry in store.dispersion_list():
            by_image[entry.image_id].append(entry)
        candidates: list[ImageRecord] = []
        for record in store.images():
            if record.origin != self.node.device_id or record.where is not Where.LOCAL:
                continue
            entries = by_image.get(record.image_id, [])
            if any(e.state is DispersalState.COLLECTING for e in entries):
                continue  # came home; its holders are being released
            if entries:
                excess -= record.size  # already on its way out
            candidates.append(record)
        candidates.sort(key=lambda r: (r.capture_time is None, r.capture_time or 0.0, r.seq))
        short = False
        for record in candidates:
            entries = by_image.get(record.image_id, [])
            if entries:
                need = self.node.config.replicas - len(entries)
            elif excess > 0:
                need = self.node.config.replicas
                excess -= record.size
            else:
                continue
            if need <= 0:
                continue
            holders = self._pick_holders(record, {e.holder for e in entries}, need, now)
            for link in holders:
                self._ask(link, record, now)
            short = short or len(holders) < need
        waiting = any(e.state in _OUTGOING for e in store.dispersion_list())
        if (short or excess > 0) and not waiting and not self._full_reported:
            self._full_reported = True
            self.node.emit(
                ev.CardFull(
                    f"The card is full: {usage.used} of {usage.capacity} bytes used, past its "
                    f"{self.node.config.high_water:.0%} mark, and no connected peer will hold "
                    "more originals. Nothing was lost: every picture is still on this card. "
                    "Offload the card or bring a peer with room."
                )
            )

    def _pick_holders(
        self, record: ImageRecord, exclude: set[str], need: int, now: float
    ) -> list[Link]:
        """Ready peers with room, desks first, then a stable per-picture order."""
        links = [
            link
            for link in self.node.ready_links()
            if link.peer_id not in exclude
            and self._rejected.get((record.image_id, link.peer_id), -1.0) <= now
            and link.free >= record.size
        ]
        links.sort(key=lambda link: (not link.is_desk, holder_rank(record.image_id, link.peer_id)))
        return links[:need]

    def _ask(self, link: Link, record: ImageRecord, now: float) -> None:
        # The entry is durable before the request leaves: a crash then finds it and asks again.
        self.node.store.set_dispersion(
            record.image_id, link.peer_id, DispersalState.REQUESTED, now
        )
        link.free -= record.size
        link.scheduler.send_control(
            DisperseRequest(record.image_id, record.size, self.node.device_id)
        )

    def link_ready(self, link: Link, now: float) -> None:
        """A holder is back: ask again for what was asked or accepted but not yet stored."""
        store = self.node.store
        for entry in list(store.dispersion_list()):
            if entry.holder != link.peer_id or entry.state not in _OUTGOING:
                continue
            record = store.image(entry.image_id)
            if record is not None and record.where is Where.LOCAL:
                link.scheduler.send_control(
                    DisperseRequest(record.image_id, record.size, self.node.device_id)
                )
            else:
                link.scheduler.send_control(Release(entry.image_id))
        self.maybe_disperse(now)

    def link_gone(self, link: Link) -> None:
        """Entries stay in the list; the holder is asked again when it returns."""

    def next_retry(self) -> float | None:
        """When a rejected holder may be asked again (only while the card is over the mark)."""
        if not self._rejected:
            return None
        usage = self.node.store.usage()
        if usage.used <= self._limit(usage.capacity):
            self._rejected.clear()
            return None
        return min(self._rejected.values())

    def _entry(self, image_id: str, holder: str) -> DispersionEntry | None:
        for entry in self.node.store.dispersion(image_id):
            if entry.holder == holder:
                return entry
        return None

    def on_accept(self, link: Link, msg: DisperseAccept, now: float) -> None:
        store = self.node.store
        entry = self._entry(msg.image_id, link.peer_id)
        record = store.image(msg.image_id)
        if entry is None or entry.state not in _OUTGOING:
            link.scheduler.send_control(Release(msg.image_id))  # free what it reserved
            return
        if record is None or record.where is not Where.LOCAL:
            link.scheduler.send_control(Release(msg.image_id))
            return
        if msg.offset > record.size or msg.reservation < record.size:
            raise RemoteProtocolError(
                f"accept of {msg.image_id[:12]} at offset {msg.offset} reserving "
                f"{msg.reservation} bytes, for an original of {record.size}",
                code="bad-accept",
            )
        store.set_dispersion(msg.image_id, link.peer_id, DispersalState.ACCEPTED, now)
        self._full_reported = False
        self.node.ensure_thumbnail(link, record, msg.image_id)
        link.scheduler.add_transfer(
            Transfer(
                image_id=msg.image_id,
                purpose=Purpose.DISPERSE,
                lane=Lane.DISPERSAL,
                size=record.size,
                digest=msg.image_id,
                offset=msg.offset,
                destination=link.peer_id,  # claims 5, 15: the header names the destination
                owner=self.node.device_id,
                source=Source.ORIGINAL,
            )
        )
        self.node.emit(ev.DispersalAccepted(msg.image_id, link.peer_id, msg.reservation))

    def on_reject(self, link: Link, msg: DisperseReject, now: float) -> None:
        entry = self._entry(msg.image_id, link.peer_id)
        link.free = msg.free
        if entry is None or entry.state not in _OUTGOING:
            return
        self.node.store.remove_dispersion(msg.image_id, link.peer_id)
        self._rejected[(msg.image_id, link.peer_id)] = now + self.node.config.retry_s
        self.node.emit(ev.DispersalRejected(msg.image_id, link.peer_id, msg.reason))
        self.maybe_disperse(now)  # claims 7, 17: on to the next candidate

    def on_stored(self, link: Link, msg: Stored, now: float) -> None:
        store = self.node.store
        if msg.digest != msg.image_id:
            raise RemoteProtocolError(
                f"stored {msg.image_id[:12]} with digest {msg.digest[:12]}: not that original",
                code="bad-digest",
            )
        entry = self._entry(msg.image_id, link.peer_id)
        if entry is None or entry.state is DispersalState.COLLECTING:
            if entry is None:
                link.scheduler.send_control(Release(msg.image_id))  # no list names it
            return
        # The list entry is durable before the original may go (claims 3, 4, 13, 14).
        store.set_dispersion(msg.image_id, link.peer_id, DispersalState.STORED, now)
        self._free_if_enough(msg.image_id, now)

    def _free_if_enough(self, image_id: str, now: float) -> None:
        store = self.node.store
        record = store.image(image_id)
        holders = tuple(
            e.holder for e in store.dispersion(image_id) if e.state is DispersalState.STORED
        )
        if record is None or record.where is not Where.LOCAL:
            return
        if len(holders) >= self.node.config.replicas:
            store.free_original(image_id, now)
            self.node.emit(ev.Dispersed(image_id, holders))

    def planted_free_before_stored(self, link: Link, image_id: str, now: float) -> None:
        """PLANTED BUG "free-before-stored": free as soon as the stream is sent."""
        self.node.store.set_dispersion(image_id, link.peer_id, DispersalState.STORED, now)
        self._free_if_enough(image_id, now)

    def release_sent(self, link: Link, image_id: str) -> None:
        """Our Release is on the wire: the holder's entry leaves the list."""
        entry = self._entry(image_id, link.peer_id)
        if entry is not None and entry.state is not DispersalState.STORED:
            self.node.store.remove_dispersion(image_id, link.peer_id)

    # --- the holder's side ----------------------------------------------------------------

    def on_request(self, link: Link, msg: DisperseRequest, now: float) -> None:
        """Accept with a reservation, or reject with a reason and our free room (claims 6, 7)."""
        store = self.node.store
        if msg.owner != link.peer_id:
            raise RemoteProtocolError(
                f"dispersal request for {msg.image_id[:12]} names owner {msg.owner[:12]}, "
                "not the sender",
                code="bad-owner",
            )
        held = store.held(msg.image_id)
        if held is not None:
            link.scheduler.send_control(Stored(msg.image_id, msg.image_id))
            return
        if self.node.config.bug("accept-past-capacity"):
            # PLANTED BUG "accept-past-capacity": no room check, no reservation.
            pass
        else:
            usage = store.usage()
            already = store.partial_offset(msg.image_id, Incoming.HELD)
            if usage.used + usage.reserved + msg.size - already > self._limit(usage.capacity):
                self._reject(link, msg, "my card is above its high-water mark")
                return
            try:
                store.reserve(msg.image_id, msg.size)
            except CardFull:
                self._reject(link, msg, "my card has no room for it")
                return
        offset = store.partial_offset(msg.image_id, Incoming.HELD)
        self.node.expect(
            link,
            Expected(
                msg.image_id,
                Purpose.DISPERSE,
                Incoming.HELD,
                offset,
                size=msg.size,
                owner=link.peer_id,
            ),
        )
        link.scheduler.send_control(DisperseAccept(msg.image_id, msg.size, offset))

    def _reject(self, link: Link, msg: DisperseRequest, reason: str) -> None:
        free = self.node.store.usage().free
        link.scheduler.send_control(
            DisperseReject(msg.image_id, f"{reason} ({free} bytes free, {msg.size} asked)", free)
        )

    def held_complete(self, link: Link, msg: OriginalComplete, now: float) -> None:
        """Durable and verified (finish_partial did both): tell the owner."""
        link.scheduler.send_control(Stored(msg.image_id, msg.digest))
        self.node.emit(ev.HeldStored(msg.image_id, link.peer_id))

    def on_release(self, link: Link, msg: Release) -> None:
        store = self.node.store
        held = store.held(msg.image_id)
        if held is not None:
            if held.owner == link.peer_id:
                store.release_held(msg.image_id)
                self.node.emit(ev.Released(msg.image_id, link.peer_id))
            return
        # Released before it was stored: drop the reservation and what arrived.
        if self.node.cancel(link, msg.image_id, Purpose.DISPERSE) is not None:
            try:
                store.unreserve(msg.image_id)
                store.discard_partial(msg.image_id, Incoming.HELD)
            except StoreError:
                pass
