"""Dispersal when a card fills (claims 1-7, 11-17): the owner's choices and the holder's answers.

Owner: above the high-water mark, pick originals (oldest capture first, only
our own complete LOCAL ones) and holders (ready peers advertising room, desks
first, then a stable per-picture order), ask, stream on accept, and free the
original only once ``replicas`` holders answered STORED (the dispersion-list
entry is durable first).  Holder: accept by reserving room, or reject with a
reason and our free room; store, verify, answer STORED; release on request.

Holders are blind (issue 7): an original leaves sealed with its own key
(``Store.sealed_form``), which stays with the owner beside its dispersion
list.  Sizes, offsets and digests on the wire are the sealed form's; the
holder verifies the SHA-256 it was promised and answers STORED with it, and
the owner frees its copy only for that digest.

Repair: a holder declared gone for good (``Node.repair``) leaves the list where
another copy exists, and each dispersed original that is then short of
``replicas`` holders is copied to a new holder, relayed from one that STORED it.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from typing import TYPE_CHECKING

from protocol import events as ev
from protocol import room
from protocol.effects import Relay, Tell
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
from protocol.peer import Expected, Link, holder_rank, stored_holders
from protocol.scheduler import Lane, Source, Transfer
from protocol.sealing import sealed_size
from protocol.store import (
    CardFullError,
    DispersalState,
    DispersionEntry,
    ImageRecord,
    Incoming,
    NotFound,
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
        self._repairs: set[str] = set()  # our dispersed originals short of holders
        # Our own LOCAL originals, oldest capture first: the candidates, kept in memory so
        # that a card over its mark is not rescanned on every tick (rebuilt on start).
        self._local: list[tuple[bool, float, int, str]] = []
        self._local_ids: set[str] = set()
        self._version = 0  # bumped when the list changes in a way usage does not show
        self._memo: tuple[object, ...] | None = None  # what the last full look saw
        self._memo_excess = 0  # the excess it covered (asks are never withdrawn)
        self._memo_short = False  # it found no holder for some: more excess changes nothing

    def note_local(self, record: ImageRecord) -> None:
        """One of our originals is (again) on the card: a candidate for dispersal."""
        if record.origin == self.node.device_id and record.image_id not in self._local_ids:
            self._local_ids.add(record.image_id)
            key = (record.capture_time is None, record.capture_time or 0.0, record.seq)
            bisect.insort(self._local, (*key, record.image_id))
            # A new candidate is news the memo must see: a look that found nothing to ask
            # for (the card filled before its pictures were announced) must look again.
            self._version += 1

    def resume(self) -> None:
        """At start: index our local originals; find dispersed ones short of ``replicas``."""
        store = self.node.store
        for own in store.images_after(self.node.device_id, 0):
            if own.where is Where.LOCAL:
                self.note_local(own)
        short: dict[str, int] = {}
        for entry in store.dispersion_list():
            if entry.state is DispersalState.STORED:
                short[entry.image_id] = short.get(entry.image_id, 0) + 1
        for image_id, count in short.items():
            if count < self.node.config.replicas:
                record = store.image(image_id)
                if record is not None and record.where is Where.DISPERSED:
                    self._repairs.add(image_id)

    def repair(self, holder_id: str, now: float) -> None:
        """``holder_id`` is gone for good: drop it where another copy exists, then re-replicate."""
        store, node = self.node.store, self.node
        name = node.name_of(holder_id)
        for entry in list(store.dispersion_list()):
            if entry.holder != holder_id:
                continue
            record = store.image(entry.image_id)
            others = [
                e
                for e in store.dispersion(entry.image_id)
                if e.holder != holder_id and e.state is DispersalState.STORED
            ]
            local = record is not None and record.where is Where.LOCAL
            if not local and not others:
                node.emit(
                    ev.RepairFailed(
                        entry.image_id,
                        f"{name} was the only holder of this original and no other copy "
                        f"exists; it stays listed in case {name} comes back",
                    )
                )
                continue
            store.remove_dispersion(entry.image_id, holder_id)
            self._version += 1
            if not local:
                self._repairs.add(entry.image_id)
        self.maybe_disperse(now)

    def _repair(self, now: float) -> None:
        """Ask new holders for dispersed originals short of ``replicas`` (copied by relay)."""
        store = self.node.store
        for image_id in sorted(self._repairs):
            record = store.image(image_id)
            entries = store.dispersion(image_id)
            stored = [e.holder for e in entries if e.state is DispersalState.STORED]
            if record is None or record.where is not Where.DISPERSED or not stored:
                self._repairs.discard(image_id)
                continue
            need = self.node.config.replicas - len(entries)
            if need <= 0:
                if len(stored) >= self.node.config.replicas:
                    self._repairs.discard(image_id)
                continue  # an ask is on its way
            if not any(self.node.ready_link(h) is not None for h in stored):
                continue  # no copy to relay from now; tried again when a holder is back
            for link in self._pick_holders(record, {e.holder for e in entries}, need, now):
                self._ask(link, record, now)

    # --- the owner's side ---------------------------------------------------------------

    def maybe_disperse(self, now: float) -> None:
        """Above the high-water mark: ask holders for the oldest originals (claims 1, 11)."""
        store = self.node.store
        if self._repairs:
            self._repair(now)
        if self._rejected and min(self._rejected.values()) <= now:
            self._rejected = {k: until for k, until in self._rejected.items() if until > now}
            self._version += 1
        usage = store.usage()
        high_water = self.node.config.high_water
        if not room.over_mark(usage, high_water):
            self._full_reported = False
            self._forget_rejections()
            self._memo = None
            return
        # Nothing that decides what to ask changed since the last look: nothing to do.  A
        # smaller excess asks for nothing new; a larger one only if holders were found.
        excess = usage.used - room.mark(usage.capacity, high_water)
        # _version covers the links too: it moves when one comes or goes, or its room changes.
        memo = (self._version,)
        if memo == self._memo and (excess <= self._memo_excess or self._memo_short):
            return
        self._memo, self._memo_excess = memo, excess
        by_image: dict[str, list[DispersionEntry]] = defaultdict(list)
        for entry in store.dispersion_list():
            by_image[entry.image_id].append(entry)
        candidates: list[ImageRecord] = []
        kept: list[tuple[bool, float, int, str]] = []
        for key in self._local:
            record = store.image(key[3])
            if record is None or record.where is not Where.LOCAL:
                self._local_ids.discard(key[3])
                continue  # freed (or gone): no longer a candidate
            kept.append(key)
            entries = by_image.get(record.image_id, [])
            if any(e.state is DispersalState.COLLECTING for e in entries):
                continue  # came home; its holders are being released
            if entries:
                excess -= record.size  # already on its way out
            candidates.append(record)
        self._local = kept
        short = asked = False
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
                asked = True
            short = short or len(holders) < need
        self._memo_short = short
        waiting = asked or any(e.state in _OUTGOING for es in by_image.values() for e in es)
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
            and link.free >= sealed_size(record.size)
        ]
        links.sort(key=lambda link: (not link.is_desk, holder_rank(record.image_id, link.peer_id)))
        return links[:need]

    def _ask(self, link: Link, record: ImageRecord, now: float) -> None:
        # The entry is durable before the request leaves: a crash then finds it and asks again.
        self._version += 1
        self.node.store.set_dispersion(
            record.image_id, link.peer_id, DispersalState.REQUESTED, now
        )
        link.free -= sealed_size(record.size)
        link.scheduler.send_control(
            DisperseRequest(record.image_id, sealed_size(record.size), self.node.device_id)
        )

    def link_ready(self, link: Link, now: float) -> None:
        """A holder is back: ask again for what was asked or accepted but not yet stored."""
        self._version += 1
        store = self.node.store
        for entry in list(store.dispersion_list()):
            if entry.holder != link.peer_id or entry.state not in _OUTGOING:
                continue
            record = store.image(entry.image_id)
            if record is not None and record.where is Where.LOCAL:
                link.scheduler.send_control(
                    DisperseRequest(record.image_id, sealed_size(record.size), self.node.device_id)
                )
            else:
                link.scheduler.send_control(Release(entry.image_id))
        self.maybe_disperse(now)

    def link_gone(self, link: Link) -> None:
        """Entries stay in the list; the holder is asked again when it returns."""
        self._version += 1

    def next_retry(self) -> float | None:
        """When a rejected holder may be asked again (while the card is over the mark, or for
        a repair)."""
        if not self._rejected:
            return None
        if not room.over_mark(self.node.store.usage(), self.node.config.high_water):
            self._forget_rejections()
            if not self._rejected:
                return None
        return min(self._rejected.values())

    def _forget_rejections(self) -> None:
        """Below the mark, dispersal's rejections are moot; a repair's still stand, or it would
        ask the holder that just said no again at once, and again, for as long as it says no."""
        self._rejected = {k: until for k, until in self._rejected.items() if k[0] in self._repairs}

    def _entry(self, image_id: str, holder: str) -> DispersionEntry | None:
        for entry in self.node.store.dispersion(image_id):
            if entry.holder == holder:
                return entry
        return None

    def on_accept(self, link: Link, msg: DisperseAccept, now: float) -> None:
        store = self.node.store
        entry = self._entry(msg.image_id, link.peer_id)
        record = store.image(msg.image_id)
        if entry is not None and entry.state is DispersalState.STORED:
            # A replayed accept for what it holds already: a Release would delete the copy
            # our list counts on (our original may be freed), and the picture exist nowhere.
            return
        if entry is None or entry.state not in _OUTGOING:
            link.scheduler.send_control(Release(msg.image_id))  # free what it reserved
            return
        repair = (
            record is not None
            and record.where is Where.DISPERSED
            and msg.image_id in self._repairs
            and any(self.node.ready_link(h) for h in stored_holders(self.node.store, msg.image_id))
        )
        if record is None or (record.where is not Where.LOCAL and not repair):
            link.scheduler.send_control(Release(msg.image_id))
            return
        size = sealed_size(record.size)
        if msg.offset > size or msg.reservation < size:
            raise RemoteProtocolError(
                f"accept of {msg.image_id[:12]} at offset {msg.offset} reserving "
                f"{msg.reservation} bytes, for a sealed original of {size}",
                code="bad-accept",
            )
        store.set_dispersion(msg.image_id, link.peer_id, DispersalState.ACCEPTED, now)
        self._version += 1
        self._full_reported = False
        self.node.emit(ev.DispersalAccepted(msg.image_id, link.peer_id, msg.reservation))
        if repair:
            # Our card has no copy: relay one holder's bytes to the new one as they come.
            relay = Relay(link.peer_id, msg.image_id, Purpose.DISPERSE, msg.offset, now)
            self.node.apply([Tell(relay)])
            return
        link.ensure_thumbnail(record, msg.image_id)
        form = store.sealed_form(msg.image_id)  # the key is durable before a sealed byte goes
        link.scheduler.add_transfer(
            Transfer(
                image_id=msg.image_id,
                purpose=Purpose.DISPERSE,
                lane=Lane.DISPERSAL,
                size=form.size,
                digest=form.digest,
                offset=msg.offset,
                destination=link.peer_id,  # claims 5, 15: the header names the destination
                owner=self.node.device_id,
                source=Source.SEALED,
            )
        )

    def on_reject(self, link: Link, msg: DisperseReject, now: float) -> None:
        entry = self._entry(msg.image_id, link.peer_id)
        link.free = msg.free
        self._version += 1  # its room is news
        if entry is None or entry.state not in _OUTGOING:
            return
        self.node.store.remove_dispersion(msg.image_id, link.peer_id)
        self._version += 1
        self._rejected[(msg.image_id, link.peer_id)] = now + self.node.config.retry_s
        self.node.deadline_changed()
        self.node.emit(ev.DispersalRejected(msg.image_id, link.peer_id, msg.reason))
        self.maybe_disperse(now)  # claims 7, 17: on to the next candidate

    def on_stored(self, link: Link, msg: Stored, now: float) -> None:
        store = self.node.store
        entry = self._entry(msg.image_id, link.peer_id)
        try:
            form = store.sealed_form(msg.image_id) if entry is not None else None
        except NotFound:
            form = None  # neither our original nor its key: nothing this answer could free
        if form is not None and msg.digest != form.digest:
            raise RemoteProtocolError(
                f"stored {msg.image_id[:12]} with digest {msg.digest[:12]}: not the sealed "
                f"original we sent ({form.digest[:12]})",
                code="bad-digest",
            )
        if entry is None or entry.state is DispersalState.COLLECTING:
            if entry is None:
                link.scheduler.send_control(Release(msg.image_id))  # no list names it
            return
        if link.scheduler.transfer(msg.image_id, Purpose.DISPERSE) is not None:
            # Our stream to it is still queued or going: it cannot have stored and verified
            # what we have not finished sending.  Believing it would free a picture nobody holds.
            raise RemoteProtocolError(
                f"holder says it stored {msg.image_id[:12]} before we finished sending it",
                code="premature-stored",
            )
        # The list entry is durable before the original may go (claims 3, 4, 13, 14).
        store.set_dispersion(msg.image_id, link.peer_id, DispersalState.STORED, now)
        self._version += 1
        if msg.image_id in self._repairs:
            record = store.image(msg.image_id)
            if record is not None and record.where is Where.DISPERSED:
                self.node.emit(ev.Repaired(msg.image_id, link.peer_id))
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

    def release_sent(self, link: Link, image_id: str) -> None:
        """Our Release is on the wire: the holder's entry leaves the list."""
        entry = self._entry(image_id, link.peer_id)
        if entry is not None and entry.state is not DispersalState.STORED:
            self.node.store.remove_dispersion(image_id, link.peer_id)
            self._version += 1

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
            link.scheduler.send_control(Stored(msg.image_id, held.digest))
            return
        if not self._take_room(link, msg):
            return
        offset = store.partial_offset(msg.image_id, Incoming.HELD)
        link.expect(
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

    def _take_room(self, link: Link, msg: DisperseRequest) -> bool:
        """Reserve the room ``msg`` asks for, or reject it saying why (claims 6, 7)."""
        store = self.node.store
        usage = store.usage()
        already = store.partial_offset(msg.image_id, Incoming.HELD)
        if msg.size - already > room.below_mark(usage, self.node.config.high_water):
            self._reject(link, msg, "my card is above its high-water mark")
            return False
        # One peer may not take every holder's room: its held and reserved bytes stay
        # under its share of the card (issue 7, per-peer limits).
        share = room.peer_share(usage.capacity, self.node.config.max_share_per_peer)
        taken = sum(h.size for h in store.held_originals() if h.owner == link.peer_id)
        taken += sum(
            e.size or 0 for (_, purpose), e in link.expected.items()
            if purpose is Purpose.DISPERSE
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
        if link.cancel(msg.image_id, Purpose.DISPERSE) is not None:
            try:
                store.unreserve(msg.image_id)
                store.discard_partial(msg.image_id, Incoming.HELD)
            except StoreError:
                pass
