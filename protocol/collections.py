"""Collecting our dispersed originals back from their holders (claims 8-10, 18-20).

A collection brings one original from a holder that STORED it.  **Home** (our
user's ``collect``, or a request for our own dispersed picture) it lands as an
Incoming.SEALED partial that the store opens and verifies, becomes LOCAL, and the
holders are released.  **Relay** (a peer's read-out or urgent request, our own
user's read-out, a repair) it never lands on our card: the holder's sealed bytes
are opened a record at a time as they arrive (each record authenticated on its
own) and passed on -- plaintext to readers, the sealed bytes themselves to a new
holder being repaired -- and every relay may complete only once the whole is
verified.  One picture is, for this machine, in one state at a time:

  state   input                                        next state
  ------  -------------------------------------------  ----------------------------------
  NONE    collect(), or a holder back while homing     HOME (Collect sent), or NONE
                                                       (CollectPending: no holder here)
  NONE    a reader (a peer, our user, a repair)        RELAY (Collect sent), or NONE
                                                       (refused, naming the holders)
  RELAY   another reader                               RELAY (it shares the same bytes)
  RELAY   collect()                                    RELAY (home once it is complete)
  HOME    a reader                                     HOME (served from the card once home)
  either  bytes from the holder                        the same (opened and relayed)
  either  the holder fails, lies or goes               the same (the next holder, from the
                                                       bytes here), or NONE (all told why)
  RELAY   complete and verified                        NONE, or HOME (collect() came)
  RELAY   complete, resumed, not hashing               RELAY (the next holder), or NONE
  HOME    complete (the store verified it)             NONE (LOCAL; holders released)

``TRANSITIONS`` is that table and ``state_of`` reads it off the machine.  A
collection home is our user's durable decision (``Decision.REQUESTED`` on our own
dispersed picture): it waits for a holder to return, and resumes after a restart.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from protocol import events as ev
from protocol import room
from protocol.config import NodeConfig
from protocol.effects import (
    CollectedBytes,
    CollectionIn,
    Drop,
    Effect,
    Expect,
    Machine,
    QueueOriginal,
    ReadOutLost,
    ReadOutServed,
    Relay,
    ServeFromCard,
    Wake,
)
from protocol.errors import RemoteProtocolError
from protocol.messages import Collect, Purpose, Release, TransferFailed
from protocol.peer import Expected, Link, name_in, stored_holders
from protocol.scheduler import Lane, Source, Transfer
from protocol.sealing import SEALED_RECORD
from protocol.store import (
    Decision,
    DispersalState,
    HashMismatch,
    ImageRecord,
    Incoming,
    NotFound,
    SealedForm,
    Store,
    Where,
)


class CollectState(enum.StrEnum):
    """Where the collection of one of our dispersed originals is."""

    NONE = "none"
    RELAY = "relay"  # the holder's bytes pass through to readers, never onto our card
    HOME = "home"  # the original lands on our card and becomes LOCAL


NONE, RELAY, HOME = CollectState.NONE, CollectState.RELAY, CollectState.HOME

TRANSITIONS: Final[Mapping[tuple[CollectState, str], frozenset[CollectState]]] = {
    (NONE, "collect"): frozenset({HOME, NONE}),
    (NONE, "holder-back"): frozenset({HOME, NONE}),
    (HOME, "holder-back"): frozenset({HOME}),
    (RELAY, "holder-back"): frozenset({RELAY}),
    (NONE, "reader"): frozenset({RELAY, NONE}),
    (RELAY, "reader"): frozenset({RELAY}),
    (RELAY, "collect"): frozenset({RELAY}),
    (HOME, "collect"): frozenset({HOME}),
    (HOME, "reader"): frozenset({HOME}),
    (RELAY, "bytes"): frozenset({RELAY}),
    (HOME, "bytes"): frozenset({HOME}),
    (RELAY, "lost"): frozenset({RELAY, NONE}),
    (HOME, "lost"): frozenset({HOME, NONE}),
    (NONE, "lost"): frozenset({NONE}),
    (RELAY, "complete"): frozenset({NONE, HOME, RELAY}),
    (HOME, "complete"): frozenset({NONE}),
}


@dataclass(slots=True, eq=False)
class Collection:
    """One COLLECT stream from a holder, and everyone waiting on it."""

    image_id: str
    holder: str
    size: int  # of the original
    form: SealedForm  # what the holder sends: our original, sealed
    home: bool  # lands on our card and becomes LOCAL
    local_readout: bool = False  # our own user asked (ReadOutChunk events)
    then_home: bool = False  # a collect() arrived during a relay-only collection
    # Relay-only: the holder's sealed bytes, and their plaintext opened a record at a time;
    # both shared by the relays (a repair takes the sealed bytes, a reader the plaintext).
    sealed: bytearray = field(default_factory=bytearray)
    payload: bytearray = field(default_factory=bytearray)
    opened: int = 0  # sealed bytes opened into ``payload`` so far
    relays: list[tuple[str, Transfer]] = field(default_factory=list)
    waiting: list[tuple[str, Purpose, int]] = field(default_factory=list)  # served once home
    tried: set[str] = field(default_factory=set)  # holders that failed this collection


class Collections(Machine):
    """The collections of one node's dispersed originals, home or relayed (see the table).

    A relay's ``Transfer`` is its collection's: the machine grows it in place as the
    holder's bytes open (``available``, ``may_complete``) and asks the node to ``Wake``.
    """

    def __init__(
        self, store: Store, config: NodeConfig, links: Mapping[str, Link],
        names: Mapping[str, str],
    ) -> None:
        super().__init__(store, config, links)
        self.names = names  # device id -> name (read only, protocol.sync keeps it)
        self._collections: dict[str, Collection] = {}
        self._homing: set[str] = set()  # our dispersed pictures the user wants home (durable)

    def state_of(self, image_id: str) -> CollectState:
        collection = self._collections.get(image_id)
        if collection is None:
            return CollectState.NONE
        return CollectState.HOME if collection.home else CollectState.RELAY

    def _ready(self, peer_id: str) -> Link | None:
        link = self.links.get(peer_id)
        return link if link is not None and link.ready else None

    # --- readers: peers, our own user, a repair ------------------------------------------------

    def relay(
        self, link: Link, record: ImageRecord, purpose: Purpose, offset: int, now: float
    ) -> list[Effect]:
        """Serve one of our dispersed originals by collecting it and forwarding as it arrives.

        A reader gets the plaintext; a new holder (``Purpose.DISPERSE``, a repair) gets
        the sealed bytes as the old holder sent them.
        """
        out, sealed = self._out, purpose is Purpose.DISPERSE
        if not sealed and offset > record.size:
            raise RemoteProtocolError(
                f"asked for {record.image_id[:12]} from offset {offset}, past its "
                f"{record.size} bytes",
                code="bad-offset",
            )
        collection = self._collections.get(record.image_id)
        if collection is None:
            reason = self._start(record, home=False)
            if reason is not None:
                out.send(link.peer_id, TransferFailed(record.image_id, purpose, reason))
                return out.take()
            collection = self._collections[record.image_id]
        if collection.home:
            collection.waiting.append((link.peer_id, purpose, offset))
            return out.take()
        if sealed and offset > collection.form.size:
            raise RemoteProtocolError(
                f"asked for {record.image_id[:12]} from offset {offset}, past its "
                f"{collection.form.size} sealed bytes",
                code="bad-offset",
            )
        payload = collection.sealed if sealed else collection.payload
        transfer = Transfer(
            image_id=record.image_id,
            purpose=purpose,
            lane=Lane.DISPERSAL if sealed else Lane.URGENT,
            size=collection.form.size if sealed else record.size,
            digest=collection.form.digest if sealed else record.image_id,
            offset=offset,
            destination=link.peer_id,
            owner=self.store.device_id,
            source=Source.PAYLOAD,
            payload=payload,  # shared: the holder's bytes are kept once
            available=len(payload),
            may_complete=False,
        )
        if link.scheduler.transfer(record.image_id, purpose) is None:  # else only moved up
            collection.relays.append((link.peer_id, transfer))
        out.add(QueueOriginal(link.peer_id, transfer, record))
        return out.take()

    def relay_for(self, relay: Relay) -> list[Effect]:
        """``relay`` told by serving or dispersal (a repair)."""
        record = self.store.image(relay.image_id)
        assert record is not None  # its teller saw it a moment ago
        link = self.links[relay.peer_id]
        return self.relay(link, record, relay.purpose, relay.offset, relay.now)

    def read_for_user(self, image_id: str) -> list[Effect]:
        """Our own user reads out one of our dispersed originals: collect it (relayed)."""
        out = self._out
        existing = self._collections.get(image_id)
        if existing is not None:
            existing.local_readout = True
            if not existing.home and existing.payload:
                out.emit(ev.ReadOutChunk(image_id, 0, bytes(existing.payload)))
            return out.take()
        record = self.store.image(image_id)
        assert record is not None  # the read-outs saw it a moment ago
        reason = self._start(record, home=False, local_readout=True)
        if reason is not None:
            out.tell(ReadOutLost(image_id, reason))
        return out.take()

    def drop_relay(self, peer_id: str, image_id: str, purpose: Purpose) -> None:
        """The peer refused what we relay to it: it leaves the relay."""
        collection = self._collections.get(image_id)
        if collection is not None:
            collection.relays = [
                (p, t) for p, t in collection.relays if not (p == peer_id and t.purpose is purpose)
            ]

    # --- asking holders ----------------------------------------------------------------------

    def _start(
        self, record: ImageRecord, *, home: bool, local_readout: bool = False
    ) -> str | None:
        """Send Collect to a connected holder; a reason naming the holders if none is."""
        try:
            form = self.store.sealed_form(record.image_id)
        except NotFound:
            # Dispersed before originals were sealed (a card from an older cammesh): the
            # holder keeps the original itself, and it comes back as it is.
            form = SealedForm(record.size, record.image_id)
        collection = Collection(
            record.image_id, "", record.size, form, home, local_readout=local_readout
        )
        if self._ask_holder(collection):
            return None
        holders = stored_holders(self.store, record.image_id)
        if not holders:
            return "no holder is listed for this dispersed picture"
        names = ", ".join(name_in(self.names, h) for h in holders)
        return f"the original is held by {names}, not connected now; try again when it returns"

    def _ask_holder(self, collection: Collection) -> bool:
        """Collect from the first connected holder not yet tried, from the bytes we have."""
        image_id = collection.image_id
        for holder in stored_holders(self.store, image_id):
            if self._ready(holder) is None or holder in collection.tried:
                continue
            if collection.home:
                offset = self.store.partial_offset(image_id, Incoming.SEALED)
            else:
                # A relay resumes from another holder after the last record that opened:
                # bytes past it were never authenticated, and may be the last holder's lie.
                del collection.sealed[collection.opened :]
                for _, transfer in collection.relays:
                    if transfer.payload is collection.sealed:
                        transfer.available = min(transfer.available, len(collection.sealed))
                offset = len(collection.sealed)
            legacy = collection.form.digest == image_id  # held as it is, not sealed
            kind = (Incoming.ORIGINAL if legacy else Incoming.SEALED) if collection.home else None
            form = collection.form
            self._out.add(Expect(holder, Expected(
                image_id, Purpose.COLLECT, kind, offset, size=form.size, digest=form.digest)))
            self._out.send(holder, Collect(image_id, offset))
            collection.holder = holder
            self._collections[image_id] = collection
            return True
        return False

    # --- bringing originals home ---------------------------------------------------------------

    def resume_home(self, image_id: str) -> None:
        """At start: our user wants this dispersed original home; it goes when a holder is ready."""
        self._homing.add(image_id)

    def collect(self, image_ids: Iterable[str], now: float) -> list[Effect]:
        out, store = self._out, self.store
        for image_id in image_ids:
            record = store.image(image_id)
            if record is None or record.origin != store.device_id:
                out.emit(ev.CollectFailed(image_id, "not a picture of this card"))
                continue
            if record.where is not Where.DISPERSED:
                continue  # already home
            if record.size > room.below_mark(store.usage(), self.config.high_water):
                out.emit(
                    ev.CollectFailed(
                        image_id,
                        f"no room: {record.size} bytes would pass the card's high-water mark; "
                        "offload pictures first",
                    )
                )
                continue
            # Entries stay STORED until the original is home and verified: until then the
            # holders' copies are the only ones.  The decision and the partial survive a
            # restart, and the collection resumes (see resume_home).
            store.set_decision(image_id, Decision.REQUESTED, now)
            self._homing.add(image_id)
            self._go_home(record)
        return out.take()

    def _go_home(self, record: ImageRecord) -> None:
        existing = self._collections.get(record.image_id)
        if existing is not None:
            existing.then_home = existing.then_home or not existing.home
            return
        reason = self._start(record, home=True)
        if reason is not None:
            self._out.emit(
                ev.CollectPending(record.image_id, f"{reason}; it is collected when it does")
            )

    def link_ready(self, link: Link, now: float) -> list[Effect]:
        """A peer is back: release what came home, resume the collections it can serve."""
        out, store = self._out, self.store
        for entry in list(store.dispersion_list()):
            if entry.holder != link.peer_id or entry.state is not DispersalState.COLLECTING:
                continue
            record = store.image(entry.image_id)
            if record is not None and record.where is Where.LOCAL:
                out.send(link.peer_id, Release(entry.image_id))
        for image_id in sorted(self._homing):
            record = store.image(image_id)
            if record is None or record.where is not Where.DISPERSED:
                self._homing.discard(image_id)
                store.clear_decision(image_id)
            elif image_id not in self._collections and link.peer_id in stored_holders(
                store, image_id
            ):
                self._go_home(record)
        return out.take()

    # --- the holder's stream ---------------------------------------------------------------------

    def stream_chunk(self, bytes_in: CollectedBytes) -> list[Effect]:
        collection = self._collections.get(bytes_in.image_id)
        if collection is None or collection.home or collection.holder != bytes_in.peer_id:
            return []
        collection.sealed.extend(bytes_in.data)
        self._open(collection, last=False)
        return self._out.take()

    def _open(self, collection: Collection, *, last: bool) -> None:
        """Open the whole records (``last``: and the final short one) that arrived; relay them.

        A record that fails authentication means the holder changed what it holds: the
        link is cut, and the collection goes on from another holder.
        """
        sealed, plain, opened = collection.sealed, collection.payload, collection.opened
        if collection.form.digest == collection.image_id:  # held as it is (older cammesh)
            end = len(sealed)
            data = bytes(sealed[opened:])
        else:
            end = len(sealed) if last else len(sealed) - len(sealed) % SEALED_RECORD
            try:
                data = self.store.open_sealed(
                    collection.image_id, opened, bytes(sealed[opened:end])
                )
            except HashMismatch as exc:
                # Unauthenticated bytes are this holder's lie: dropped, so that the next
                # holder is asked from the last record that opened, not judged by them.
                del sealed[opened:]
                raise RemoteProtocolError(
                    f"holder sent {collection.image_id[:12]} back changed: {exc}",
                    code="hash-mismatch",
                ) from exc
        if data:
            start = len(plain)
            plain.extend(data)
            collection.opened = end
            if collection.local_readout:
                self._out.emit(ev.ReadOutChunk(collection.image_id, start, data))
        for peer_id, transfer in collection.relays:
            transfer.available = len(transfer.payload or b"")
            self._out.add(Wake(peer_id))

    def stream_complete(self, complete: CollectionIn) -> list[Effect]:
        """The holder's stream completed (``offset``: where it started)."""
        out, store = self._out, self.store
        image_id, offset, now = complete.image_id, complete.offset, complete.now
        collection = self._collections.get(image_id)
        if collection is None:
            return []
        if not collection.home:
            self._open(collection, last=True)
            if (
                offset != 0  # resumed from a second holder: hash it all
                and hashlib.sha256(collection.payload).hexdigest() != image_id
            ):
                collection.tried.add(collection.holder)
                collection.payload.clear()
                collection.sealed.clear()
                collection.opened = 0
                self._lost(image_id, "the bytes did not match the digest")
                return out.take()
        del self._collections[image_id]
        if not collection.home:
            for relay_peer, transfer in collection.relays:
                transfer.available = transfer.size
                transfer.may_complete = True  # verified: the relays may complete
                out.add(Wake(relay_peer))
            if collection.local_readout:
                out.tell(ReadOutServed(image_id, home=False))
            record = store.image(image_id)
            if collection.then_home and record is not None:
                self._go_home(record)
            return out.take()
        # Home for good: LOCAL again.  COLLECTING now means "release pending"; each entry
        # leaves the list as its Release goes out (now, or when the holder returns).
        out.emit(ev.Collected(image_id, collection.holder))
        self._homing.discard(image_id)
        store.clear_decision(image_id)  # done: a later dispersal must not bring it back
        for entry in store.dispersion(image_id):
            store.set_dispersion(image_id, entry.holder, DispersalState.COLLECTING, now)
            if self._ready(entry.holder) is not None:
                out.send(entry.holder, Release(image_id))
        record = store.image(image_id)
        for reader, purpose, at in collection.waiting:
            if self._ready(reader) is not None and record is not None:
                out.tell(ServeFromCard(reader, image_id, purpose, at))
        if collection.local_readout and record is not None:
            out.tell(ReadOutServed(image_id, home=True))
        return out.take()

    def collect_failed(self, image_id: str, reason: str) -> list[Effect]:
        """The holder could not (or did not) send it back: the next one, or all hear why."""
        self._lost(image_id, reason)
        return self._out.take()

    def _lost(self, image_id: str, reason: str) -> None:
        out = self._out
        collection = self._collections.pop(image_id, None)
        if collection is None:
            return
        collection.tried.add(collection.holder)
        if self._ask_holder(collection):
            return  # another holder stored it: carry on from the bytes we have
        why = f"collecting from {name_in(self.names, collection.holder)} failed: {reason}"
        for peer_id, transfer in collection.relays:
            if peer_id not in self.links:
                continue
            out.add(Drop(peer_id, image_id, transfer.purpose))
            if transfer.purpose is Purpose.DISPERSE:
                out.send(peer_id, Release(image_id))  # a repair copy: drop its room
            else:
                out.send(peer_id, TransferFailed(image_id, transfer.purpose, why[:1024]))
        for peer_id, purpose, _ in collection.waiting:
            if peer_id in self.links:
                out.send(peer_id, TransferFailed(image_id, purpose, why[:1024]))
        if collection.local_readout:
            out.tell(ReadOutLost(image_id, why))
        if image_id in self._homing:
            out.emit(ev.CollectPending(image_id, f"{why}; it is collected when a holder returns"))
        elif collection.home or collection.then_home:
            out.emit(ev.CollectFailed(image_id, why))

    def link_gone(self, peer_id: str, reason: str) -> list[Effect]:
        for image_id, collection in list(self._collections.items()):
            if collection.holder == peer_id:
                self._lost(image_id, f"it went away ({reason})")
            else:
                collection.relays = [(p, t) for p, t in collection.relays if p != peer_id]
                collection.waiting = [w for w in collection.waiting if w[0] != peer_id]
        return self._out.take()
