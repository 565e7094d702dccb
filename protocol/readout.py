"""Read-out and collection (claims 8-10, 18-20): a picture is served wherever its original is.

A read-out of a LOCAL original streams from the card.  One of our DISPERSED
originals is collected from a holder and relayed, verified, to whoever asked
(a peer, or our own user as ReadOutChunk events) without landing on our card.
``collect`` brings originals home for good: the holder's copy streams back,
becomes LOCAL, and the holders are released.  A holder serves collections
from what it holds for the owner.

Holders keep originals sealed (see protocol.dispersal): a collection home
lands as an Incoming.SEALED partial that the store opens and verifies; a
relay opens the holder's bytes a record at a time as they arrive (each
record authenticated on its own), and passes plaintext to readers and the
sealed bytes themselves to a new holder being repaired.

Failures: a collection whose holder fails or leaves resumes, from the bytes
already here, from another holder that STORED it.  A collection home is our
user's durable decision (``Decision.REQUESTED`` on our own dispersed picture):
it waits for a holder to return and resumes after a restart.  A read-out given
``wait_s`` waits too (ReadOutPending), retried until its deadline.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from protocol import events as ev
from protocol import room
from protocol.errors import RemoteProtocolError
from protocol.messages import Collect, OriginalHeader, Purpose, ReadOut, Release, TransferFailed
from protocol.peer import Expected, Link, Stream, holder_rank
from protocol.scheduler import Lane, Source, Transfer
from protocol.sealing import SEALED_RECORD, SealingError
from protocol.store import (
    Decision,
    DispersalState,
    HashMismatch,
    ImageRecord,
    Incoming,
    NotFound,
    SealedForm,
    StoreError,
    Where,
)

if TYPE_CHECKING:
    from protocol.node import Node


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


@dataclass(slots=True, eq=False)
class Waiting:
    """A read-out of our user's that may wait for its holder (``read_out(wait_s=...)``)."""

    deadline: float
    retry_at: float
    active: bool = True  # an attempt is under way
    reason: str = ""


class ReadOuts:
    """Read-outs, relays and collections of one node."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._collections: dict[str, Collection] = {}
        self._waiting: dict[str, Waiting] = {}
        self._homing: set[str] = set()  # our dispersed pictures the user wants home (durable)

    # --- our own user's read-out --------------------------------------------------------

    def read_out(self, image_id: str, now: float, *, wait_s: float | None = None) -> None:
        if wait_s is not None:
            retry = now + self.node.config.readout_retry_s
            self._waiting[image_id] = Waiting(deadline=now + wait_s, retry_at=retry)
            self.node.deadline_changed()
        self._attempt(image_id, now)

    def failed(self, image_id: str, reason: str) -> None:
        """Our user's read-out could not go: it waits (ReadOutPending) or fails, naming why."""
        waiting = self._waiting.get(image_id)
        if waiting is None:
            self.node.emit(ev.ReadOutFailed(image_id, reason))
            return
        waiting.active, waiting.reason = False, reason
        self.node.deadline_changed()
        self.node.emit(ev.ReadOutPending(image_id, reason))

    def done(self, image_id: str, digest: str) -> None:
        self._waiting.pop(image_id, None)
        self.node.emit(ev.ReadOutDone(image_id, digest))

    def tick(self, now: float) -> None:
        """Retry waiting read-outs; give up on those past their deadline."""
        for image_id, waiting in list(self._waiting.items()):
            if waiting.active:
                continue
            if now >= waiting.deadline:
                del self._waiting[image_id]
                self.node.emit(
                    ev.ReadOutFailed(image_id, f"{waiting.reason} (gave up waiting for it)")
                )
            elif now >= waiting.retry_at:
                self._retry(image_id, waiting, now)

    def _retry(self, image_id: str, waiting: Waiting, now: float) -> None:
        waiting.active = True
        waiting.retry_at = now + self.node.config.readout_retry_s
        self._attempt(image_id, now)

    def next_deadline(self) -> float | None:
        times = [min(w.deadline, w.retry_at) for w in self._waiting.values() if not w.active]
        return min(times) if times else None

    def _attempt(self, image_id: str, now: float) -> None:
        node, store = self.node, self.node.store
        record = store.image(image_id)
        if record is not None and record.where is Where.LOCAL:
            self._emit_local(image_id, record.size, held=False)
            return
        held = store.held(image_id)
        if held is not None and held.digest == image_id:  # held as it is, not sealed
            self._emit_local(image_id, held.size, held=True)
            return
        wrapped = record.wrapped_key if record is not None else None
        if held is not None and record is not None and wrapped is not None \
                and self._open_held(record, held.size, wrapped):
            return
        sealed_here = held is not None and held.digest != image_id  # and it did not open
        if record is None:
            unknown = "no picture with that id is known here"
            self.failed(image_id, _sealed_without_key(node.name_of(held.owner))
                        if held is not None and sealed_here else unknown)
            return
        if record.origin == node.device_id and record.where is Where.DISPERSED:
            existing = self._collections.get(image_id)
            if existing is not None:
                existing.local_readout = True
                if not existing.home and existing.payload:
                    node.emit(ev.ReadOutChunk(image_id, 0, bytes(existing.payload)))
                return
            reason = self._start(record, home=False, local_readout=True)
            if reason is not None:
                self.failed(image_id, reason)
            return
        if any((image_id, Purpose.READOUT) in link.expected for link in node.links.values()):
            return  # already asked
        peers = [record.origin, *sorted(node.offerers(image_id))]
        for peer_id in peers:
            link = node.ready_link(peer_id)
            if link is not None:
                link.expect(
                    Expected(image_id, Purpose.READOUT, None, 0, size=record.size)
                )
                link.scheduler.send_control(ReadOut(image_id, 0))
                return
        owner = node.name_of(record.origin)
        self.failed(
            image_id,
            _sealed_without_key(owner) if sealed_here
            else f"its owner {owner} is not connected; try again when it is",
        )

    def _emit_local(self, image_id: str, size: int, *, held: bool) -> None:
        store, step = self.node.store, self.node.config.chunk_size
        read = store.read_held if held else store.read_original
        if self.node.config.bug("stale-readout"):
            size //= 2  # PLANTED BUG "stale-readout": hand out a truncated original
        digest = hashlib.sha256()
        for offset in range(0, size, step):
            data = read(image_id, offset, min(step, size - offset))
            digest.update(data)
            self.node.emit(ev.ReadOutChunk(image_id, offset, data))
        self.done(image_id, digest.hexdigest())

    def _open_held(self, record: ImageRecord, size: int, wrapped: bytes) -> bool:
        """A copy we hold sealed, of a picture whose key its owner wrapped for us (a desk
        trusted to read what a lost camera dispersed): opened and handed out.  False if
        the key or the copy does not open; the read-out then goes to the owner."""
        sealer, image_id = self.node.config.sealer, record.image_id
        if sealer is None:
            return False
        try:
            key = sealer.unwrap(wrapped, image_id)
            plain = sealer.open(key, image_id, self.node.store.read_held(image_id, 0, size))
        except (SealingError, StoreError):
            return False
        if hashlib.sha256(plain).hexdigest() != image_id:
            return False
        step = self.node.config.chunk_size
        for offset in range(0, len(plain), step):
            self.node.emit(ev.ReadOutChunk(image_id, offset, plain[offset : offset + step]))
        self.done(image_id, image_id)
        return True

    # --- a peer's read-out ----------------------------------------------------------------

    def on_readout(self, link: Link, msg: ReadOut, now: float) -> None:
        """Any device may ask for a picture wherever it is (claims 8, 9, 18, 19)."""
        store = self.node.store
        record = store.image(msg.image_id)
        held = store.held(msg.image_id)
        if held is not None and held.digest != msg.image_id:
            held = None  # sealed for its owner: only the owner can open it
        if record is not None and record.where is Where.LOCAL:
            self._serve(link, record, msg.image_id, Purpose.READOUT, msg.offset, Source.ORIGINAL)
        elif held is not None:
            self._serve(link, record, msg.image_id, Purpose.READOUT, msg.offset, Source.HELD)
        elif (
            record is not None
            and record.where is Where.DISPERSED
            and record.origin == self.node.device_id
        ):
            self.relay(link, record, Purpose.READOUT, msg.offset, now)
        else:
            link.scheduler.send_control(
                TransferFailed(
                    msg.image_id,
                    Purpose.READOUT,
                    "this device has no copy of that original; ask its owner",
                )
            )

    def _serve(
        self,
        link: Link,
        record: ImageRecord | None,
        image_id: str,
        purpose: Purpose,
        offset: int,
        source: Source,
    ) -> None:
        store = self.node.store
        held = store.held(image_id) if source is Source.HELD else None
        size = held.size if held is not None else (record.size if record is not None else 0)
        owner = held.owner if held is not None else (record.origin if record else link.peer_id)
        if offset > size:
            raise RemoteProtocolError(
                f"asked for {image_id[:12]} from offset {offset}, past its {size} bytes",
                code="bad-offset",
            )
        link.ensure_thumbnail(record, image_id)
        link.scheduler.add_transfer(
            Transfer(
                image_id=image_id,
                purpose=purpose,
                lane=_lane(purpose),
                size=size,
                digest=held.digest if held is not None else image_id,
                offset=offset,
                destination=link.peer_id,
                owner=owner,
                source=source,
            )
        )

    def relay(
        self, link: Link, record: ImageRecord, purpose: Purpose, offset: int, now: float
    ) -> None:
        """Serve one of our dispersed originals by collecting it and forwarding as it arrives.

        A reader gets the plaintext; a new holder (``Purpose.DISPERSE``, a repair) gets
        the sealed bytes as the old holder sent them.
        """
        sealed = purpose is Purpose.DISPERSE
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
                link.scheduler.send_control(TransferFailed(record.image_id, purpose, reason))
                return
            collection = self._collections[record.image_id]
        if collection.home:
            collection.waiting.append((link.peer_id, purpose, offset))
            return
        if sealed and offset > collection.form.size:
            raise RemoteProtocolError(
                f"asked for {record.image_id[:12]} from offset {offset}, past its "
                f"{collection.form.size} sealed bytes",
                code="bad-offset",
            )
        link.ensure_thumbnail(record, record.image_id)
        payload = collection.sealed if sealed else collection.payload
        transfer = Transfer(
            image_id=record.image_id,
            purpose=purpose,
            lane=_lane(purpose),
            size=collection.form.size if sealed else record.size,
            digest=collection.form.digest if sealed else record.image_id,
            offset=offset,
            destination=link.peer_id,
            owner=self.node.device_id,
            source=Source.PAYLOAD,
            payload=payload,  # shared: the holder's bytes are kept once
            available=len(payload),
            sealed=False,
        )
        if link.scheduler.add_transfer(transfer) is transfer:
            collection.relays.append((link.peer_id, transfer))

    def drop_relay(self, link: Link, image_id: str, purpose: Purpose) -> None:
        collection = self._collections.get(image_id)
        if collection is not None:
            collection.relays = [
                (p, t) for p, t in collection.relays if not (p == link.peer_id and t.purpose is purpose)
            ]

    # --- collecting from a holder --------------------------------------------------------

    def _start(
        self, record: ImageRecord, *, home: bool, local_readout: bool = False
    ) -> str | None:
        """Send Collect to a connected holder; a reason naming the holders if none is."""
        try:
            form = self.node.store.sealed_form(record.image_id)
        except NotFound:
            # Dispersed before originals were sealed (a card from an older cammesh): the
            # holder keeps the original itself, and it comes back as it is.
            form = SealedForm(record.size, record.image_id)
        collection = Collection(
            record.image_id, "", record.size, form, home, local_readout=local_readout
        )
        if self._ask_holder(collection):
            return None
        holders = self.stored_holders(record.image_id)
        if not holders:
            return "no holder is listed for this dispersed picture"
        names = ", ".join(self.node.name_of(h) for h in holders)
        return f"the original is held by {names}, not connected now; try again when it returns"

    def stored_holders(self, image_id: str) -> list[str]:
        """Holders that confirmed storing it, in the picture's stable holder order."""
        holders = [
            e.holder for e in self.node.store.dispersion(image_id) if e.state is DispersalState.STORED
        ]
        holders.sort(key=lambda h: holder_rank(image_id, h))
        return holders

    def _ask_holder(self, collection: Collection) -> bool:
        """Collect from the first connected holder not yet tried, from the bytes we have."""
        node, image_id = self.node, collection.image_id
        for holder in self.stored_holders(image_id):
            link = node.ready_link(holder)
            if link is None or holder in collection.tried:
                continue
            if collection.home:
                offset = node.store.partial_offset(image_id, Incoming.SEALED)
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
            link.expect(
                Expected(image_id, Purpose.COLLECT, kind, offset, size=form.size, digest=form.digest),
            )
            link.scheduler.send_control(Collect(image_id, offset))
            collection.holder = holder
            self._collections[image_id] = collection
            return True
        return False

    def resume_home(self, image_id: str) -> None:
        """At start: our user wants this dispersed original home; it goes when a holder is ready."""
        self._homing.add(image_id)

    def collect(self, image_ids: Iterable[str], now: float) -> None:
        node, store = self.node, self.node.store
        for image_id in image_ids:
            record = store.image(image_id)
            if record is None or record.origin != node.device_id:
                node.emit(ev.CollectFailed(image_id, "not a picture of this card"))
                continue
            if record.where is not Where.DISPERSED:
                continue  # already home
            if record.size > room.below_mark(store.usage(), node.config.high_water):
                node.emit(
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

    def _go_home(self, record: ImageRecord) -> None:
        existing = self._collections.get(record.image_id)
        if existing is not None:
            existing.then_home = existing.then_home or not existing.home
            return
        reason = self._start(record, home=True)
        if reason is not None:
            self.node.emit(
                ev.CollectPending(record.image_id, f"{reason}; it is collected when it does")
            )

    def on_collect(self, link: Link, msg: Collect) -> None:
        """Holder side (claims 10, 20): send a held original back to its owner, as held.

        Only the held copy answers: the owner waits for the sealed bytes it sent, so a
        plain copy this device has for itself would be refused as the wrong digest.
        """
        store = self.node.store
        held = store.held(msg.image_id)
        record = store.image(msg.image_id)
        if held is not None and held.owner == link.peer_id:
            self._serve(link, record, msg.image_id, Purpose.COLLECT, msg.offset, Source.HELD)
        else:
            link.scheduler.send_control(
                TransferFailed(msg.image_id, Purpose.COLLECT, "this device holds no copy of it")
            )

    def link_ready(self, link: Link, now: float) -> None:
        """A peer is back: release what came home, resume collections, retry read-outs."""
        store = self.node.store
        for entry in list(store.dispersion_list()):
            if entry.holder != link.peer_id or entry.state is not DispersalState.COLLECTING:
                continue
            record = store.image(entry.image_id)
            if record is not None and record.where is Where.LOCAL:
                link.scheduler.send_control(Release(entry.image_id))
        for image_id in sorted(self._homing):
            record = store.image(image_id)
            if record is None or record.where is not Where.DISPERSED:
                self._homing.discard(image_id)
                store.clear_decision(image_id)
            elif image_id not in self._collections and link.peer_id in self.stored_holders(
                image_id
            ):
                self._go_home(record)
        for image_id, waiting in list(self._waiting.items()):
            if not waiting.active:
                self._retry(image_id, waiting, now)

    # --- the COLLECT and READOUT streams we receive -------------------------------------------

    def stream_opened(self, link: Link, msg: OriginalHeader) -> None:
        """Nothing to do until bytes arrive; relays already sent their own headers."""

    def stream_chunk(self, link: Link, stream: Stream, offset: int, data: bytes) -> None:
        image_id, purpose = stream.expected.image_id, stream.expected.purpose
        if purpose is Purpose.READOUT:
            self.node.emit(ev.ReadOutChunk(image_id, offset, data))
            return
        collection = self._collections.get(image_id)
        if collection is None or collection.home or collection.holder != link.peer_id:
            return
        collection.sealed.extend(data)
        self._open(link, collection, last=False)

    def _open(self, link: Link, collection: Collection, *, last: bool) -> None:
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
                data = self.node.store.open_sealed(
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
                self.node.emit(ev.ReadOutChunk(collection.image_id, start, data))
        for peer_id, transfer in collection.relays:
            transfer.available = len(transfer.payload or b"")
            self.node.wake(peer_id)

    def stream_complete(self, link: Link, stream: Stream, now: float) -> None:
        node = self.node
        image_id, purpose = stream.expected.image_id, stream.expected.purpose
        if purpose is Purpose.READOUT:
            self.done(image_id, stream.digest)
            return
        collection = self._collections.get(image_id)
        if collection is None:
            return
        if not collection.home:
            self._open(link, collection, last=True)
        if (
            not collection.home
            and stream.expected.offset != 0  # resumed from a second holder: hash it all
            and hashlib.sha256(collection.payload).hexdigest() != image_id
        ):
            collection.tried.add(collection.holder)
            collection.payload.clear()
            collection.sealed.clear()
            collection.opened = 0
            self.collect_failed(link, image_id, "the bytes did not match the digest")
            return
        del self._collections[image_id]
        if not collection.home:
            for peer_id, transfer in collection.relays:
                transfer.available = transfer.size
                transfer.sealed = True  # verified: the relays may complete
                node.wake(peer_id)
            if collection.local_readout:
                self.done(image_id, image_id)
            record = node.store.image(image_id)
            if collection.then_home and record is not None:
                self._go_home(record)
            return
        # Home for good: LOCAL again.  COLLECTING now means "release pending"; each entry
        # leaves the list as its Release goes out (now, or when the holder returns).
        node.emit(ev.Collected(image_id, collection.holder))
        self._homing.discard(image_id)
        node.store.clear_decision(image_id)  # done: a later dispersal must not bring it back
        for entry in node.store.dispersion(image_id):
            node.store.set_dispersion(image_id, entry.holder, DispersalState.COLLECTING, now)
            holder_link = node.ready_link(entry.holder)
            if holder_link is not None:
                holder_link.scheduler.send_control(Release(image_id))
        record = node.store.image(image_id)
        for peer_id, purpose, offset in collection.waiting:
            peer = node.ready_link(peer_id)
            if peer is not None and record is not None:
                self._serve(peer, record, image_id, purpose, offset, Source.ORIGINAL)
        if collection.local_readout and record is not None:
            self._emit_local(image_id, record.size, held=False)

    def stream_failed(self, link: Link, stream: Stream, reason: str) -> None:
        image_id, purpose = stream.expected.image_id, stream.expected.purpose
        if purpose is Purpose.READOUT:
            self.failed(image_id, reason)
        else:
            self.collect_failed(link, image_id, reason)

    def collect_failed(self, link: Link, image_id: str, reason: str) -> None:
        """The holder could not (or did not) send it back: everyone waiting hears why."""
        node = self.node
        collection = self._collections.pop(image_id, None)
        if collection is None:
            return
        collection.tried.add(collection.holder)
        if self._ask_holder(collection):
            return  # another holder stored it: carry on from the bytes we have
        why = f"collecting from {node.name_of(collection.holder)} failed: {reason}"
        for peer_id, transfer in collection.relays:
            peer = node.links.get(peer_id)
            if peer is None:
                continue
            peer.scheduler.drop(image_id, transfer.purpose)
            if transfer.purpose is Purpose.DISPERSE:
                peer.scheduler.send_control(Release(image_id))  # a repair copy: drop its room
            else:
                peer.scheduler.send_control(TransferFailed(image_id, transfer.purpose, why[:1024]))
        for peer_id, purpose, _ in collection.waiting:
            peer = node.links.get(peer_id)
            if peer is not None:
                peer.scheduler.send_control(TransferFailed(image_id, purpose, why[:1024]))
        if collection.local_readout:
            self.failed(image_id, why)
        if image_id in self._homing:
            node.emit(ev.CollectPending(image_id, f"{why}; it is collected when a holder returns"))
        elif collection.home or collection.then_home:
            node.emit(ev.CollectFailed(image_id, why))

    def link_gone(self, link: Link, reason: str) -> None:
        for image_id, collection in list(self._collections.items()):
            if collection.holder == link.peer_id:
                self.collect_failed(link, image_id, f"it went away ({reason})")
            else:
                collection.relays = [(p, t) for p, t in collection.relays if p != link.peer_id]
                collection.waiting = [w for w in collection.waiting if w[0] != link.peer_id]


def _sealed_without_key(owner: str) -> str:
    """Why a copy held here does not read out: it is sealed for its owner, who is away."""
    return (f"this device holds it only sealed for its owner {owner}, with no key to open it; "
            f"{owner} is not connected: try again when it is")


def _lane(purpose: Purpose) -> Lane:
    """Read-outs are urgent; dispersal and collection traffic have their own lane."""
    return Lane.DISPERSAL if purpose in (Purpose.COLLECT, Purpose.DISPERSE) else Lane.URGENT
