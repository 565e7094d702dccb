"""What we serve a peer, and how queued work becomes messages: requests, smaller copies, refusals.

The scheduler decides *what* goes next; ``render`` reads the bytes from the card
at the moment the runtime pulls a frame, so nothing is read early and a picture
freed meanwhile turns into TransferFailed instead of stale bytes.  One (image,
purpose) stream to one peer is, for this machine, in one state at a time:

  state    input                                          next state
  -------  ---------------------------------------------  ---------------------------------
  NONE     request, the original (or a smaller copy) here QUEUED (its thumbnail first)
  NONE     urgent request for one of ours, dispersed      NONE (collections relay it)
  NONE     request for what we cannot serve               NONE (TransferFailed)
  NONE     ReadOut, Collect: a copy here for that peer    QUEUED (read-outs urgent)
  NONE     ReadOut, Collect: no copy to serve             NONE (TransferFailed, or relayed)
  QUEUED   the same request again                         QUEUED (moved up, if more urgent)
  QUEUED   refusal ("not necessary", FIG. 13B)            NONE
  QUEUED   a chunk pulled, the card cannot read it        NONE (TransferFailed, not bytes)
  QUEUED   its completion pulled                          NONE (OriginalSent)

``TRANSITIONS`` is that table, ``state_of`` reads it off a link.  A peer's ReadOut
(claims 8, 9) and a holder's Collect (claims 10, 20) are answered here too, from
the card or what we hold; one of our own dispersed originals is relayed by
protocol.collections (``Relay``).  Card reads and writes are direct;
everything for a link or another machine is returned as effects.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from typing import Final

from protocol import events as ev
from protocol.effects import (
    Drop,
    Effect,
    Machine,
    Promote,
    QueueOriginal,
    Relay,
    RelayRefused,
    ReleaseSent,
    ServeFromCard,
    Unqueue,
)
from protocol.errors import RemoteProtocolError
from protocol.messages import (
    Chunk,
    Collect,
    Limits,
    Message,
    OriginalComplete,
    OriginalHeader,
    Purpose,
    ReadOut,
    RefuseOriginal,
    Release,
    RequestOriginal,
    ThumbnailOffer,
    TransferFailed,
)
from protocol.peer import Link
from protocol.scheduler import (
    Lane,
    Outgoing,
    SendChunk,
    SendComplete,
    SendHeader,
    SendMessage,
    SendThumbnail,
    Source,
    Transfer,
)
from protocol.store import ImageRecord, StoreError, TransferState, Where


class ServeState(enum.StrEnum):
    """Where one stream of ours to one peer is."""

    NONE = "none"
    QUEUED = "queued"  # in the peer's scheduler: header, chunks, completion to go


NONE, QUEUED = ServeState.NONE, ServeState.QUEUED

TRANSITIONS: Final[Mapping[tuple[ServeState, str], frozenset[ServeState]]] = {
    (NONE, "request"): frozenset({QUEUED, NONE}),  # NONE: relayed, or refused
    (QUEUED, "request"): frozenset({QUEUED}),
    (NONE, "read-out"): frozenset({QUEUED, NONE}),
    (QUEUED, "read-out"): frozenset({QUEUED}),
    (NONE, "collect"): frozenset({QUEUED, NONE}),
    (QUEUED, "collect"): frozenset({QUEUED}),
    (NONE, "refuse"): frozenset({NONE}),
    (QUEUED, "refuse"): frozenset({NONE}),
    (QUEUED, "pull"): frozenset({QUEUED, NONE}),  # NONE: completed, or the card failed
}


def state_of(link: Link, image_id: str, purpose: Purpose) -> ServeState:
    return QUEUED if link.scheduler.transfer(image_id, purpose) is not None else NONE


def lane_for(purpose: Purpose) -> Lane:
    """Read-outs are urgent; dispersal and collection traffic have their own lane."""
    return Lane.DISPERSAL if purpose in (Purpose.COLLECT, Purpose.DISPERSE) else Lane.URGENT


class Serving(Machine):
    """Requests and refusals from peers, and the rendering of every frame we send them."""

    def on_request(self, link: Link, msg: RequestOriginal, now: float) -> list[Effect]:
        """Queue what the peer asked for (FIG. 10, S63-S65); a repeat only moves it up."""
        out, peer = self._out, link.peer_id
        smaller = msg.max_side is not None or msg.quality is not None
        purpose = Purpose.SMALLER if smaller else Purpose.SYNC
        lane = Lane.URGENT if msg.urgent else Lane.BACKGROUND
        existing = link.scheduler.transfer(msg.image_id, purpose)
        record = self.store.image(msg.image_id)
        if record is None:
            # Nothing to serve and nothing to remember: a peer's requests for pictures we
            # never had write no rows on our card.
            out.send(peer, TransferFailed(msg.image_id, purpose,
                                          "this device does not have that original"))
            return out.take()
        self.store.set_transfer_state(peer, msg.image_id, TransferState.REQUESTED,
                                      max_side=msg.max_side, quality=msg.quality)
        if existing is not None:
            out.add(Promote(peer, msg.image_id, purpose, lane))
        elif record.where is Where.LOCAL and smaller:
            self._serve_smaller(link, record, msg, lane)
        elif record.where is Where.LOCAL:
            if msg.offset > record.size:
                raise RemoteProtocolError(
                    f"request for {msg.image_id[:12]} at offset {msg.offset} past its "
                    f"{record.size} bytes",
                    code="bad-offset",
                )
            out.add(QueueOriginal(peer, Transfer(
                image_id=msg.image_id, purpose=purpose, lane=lane, size=record.size,
                digest=msg.image_id, offset=msg.offset, destination=peer, owner=record.origin,
                source=Source.ORIGINAL,
            ), record))
        elif (
            record.where is Where.DISPERSED
            and record.origin == self.store.device_id
            and not smaller
            and msg.urgent  # a background pull does not make us collect from the holder
        ):
            out.tell(Relay(peer, msg.image_id, purpose, msg.offset, now))
        else:
            out.send(peer, TransferFailed(msg.image_id, purpose,
                                          "this device does not have that original"))
        return out.take()

    def on_readout(self, link: Link, msg: ReadOut, now: float) -> list[Effect]:
        """Any device may ask for a picture wherever it is (claims 8, 9, 18, 19)."""
        record = self.store.image(msg.image_id)
        held = self.store.held(msg.image_id)
        if held is not None and held.digest != msg.image_id:
            held = None  # sealed for its owner: only the owner can open it
        if record is not None and record.where is Where.LOCAL:
            self._serve(link, record, msg.image_id, Purpose.READOUT, msg.offset, Source.ORIGINAL)
        elif held is not None:
            self._serve(link, record, msg.image_id, Purpose.READOUT, msg.offset, Source.HELD)
        elif (
            record is not None
            and record.where is Where.DISPERSED
            and record.origin == self.store.device_id
        ):
            self._out.tell(Relay(link.peer_id, msg.image_id, Purpose.READOUT, msg.offset, now))
        else:
            self._out.send(link.peer_id, TransferFailed(
                msg.image_id, Purpose.READOUT,
                "this device has no copy of that original; ask its owner",
            ))
        return self._out.take()

    def on_collect(self, link: Link, msg: Collect, now: float) -> list[Effect]:
        """Holder side (claims 10, 20): send a held original back to its owner, as held.

        Only the held copy answers: the owner waits for the sealed bytes it sent, so a
        plain copy this device has for itself would be refused as the wrong digest.
        """
        held = self.store.held(msg.image_id)
        record = self.store.image(msg.image_id)
        if held is not None and held.owner == link.peer_id:
            self._serve(link, record, msg.image_id, Purpose.COLLECT, msg.offset, Source.HELD)
        else:
            self._out.send(link.peer_id, TransferFailed(
                msg.image_id, Purpose.COLLECT, "this device holds no copy of it"))
        return self._out.take()

    def serve_from_card(self, notice: ServeFromCard) -> list[Effect]:
        """A reader that waited for a collection home: the original is on the card now."""
        record = self.store.image(notice.image_id)
        self._serve(self.links[notice.peer_id], record, notice.image_id, notice.purpose,
                    notice.offset, Source.ORIGINAL)
        return self._out.take()

    def _serve(
        self,
        link: Link,
        record: ImageRecord | None,
        image_id: str,
        purpose: Purpose,
        offset: int,
        source: Source,
    ) -> None:
        held = self.store.held(image_id) if source is Source.HELD else None
        size = held.size if held is not None else (record.size if record is not None else 0)
        owner = held.owner if held is not None else (record.origin if record else link.peer_id)
        if offset > size:
            raise RemoteProtocolError(
                f"asked for {image_id[:12]} from offset {offset}, past its {size} bytes",
                code="bad-offset",
            )
        self._out.add(QueueOriginal(link.peer_id, Transfer(
            image_id=image_id, purpose=purpose, lane=lane_for(purpose), size=size,
            digest=held.digest if held is not None else image_id, offset=offset,
            destination=link.peer_id, owner=owner, source=source,
        ), record))

    def _serve_smaller(
        self, link: Link, record: ImageRecord, msg: RequestOriginal, lane: Lane
    ) -> None:
        try:
            data = self.store.smaller_copy(record.image_id, msg.max_side, msg.quality)
        except StoreError as exc:
            self._out.send(link.peer_id, TransferFailed(
                record.image_id, Purpose.SMALLER, str(exc)[: Limits.MAX_TEXT]))
            return
        self._out.add(QueueOriginal(link.peer_id, Transfer(
            image_id=record.image_id, purpose=Purpose.SMALLER, lane=lane, size=len(data),
            digest=hashlib.sha256(data).hexdigest(),
            offset=msg.offset if msg.offset <= len(data) else 0, destination=link.peer_id,
            owner=record.origin, source=Source.PAYLOAD, payload=bytearray(data),
        ), record))

    def on_refuse(self, link: Link, msg: RefuseOriginal) -> list[Effect]:
        self._out.add(Unqueue(link.peer_id, msg.image_id))
        self._out.tell(RelayRefused(link.peer_id, msg.image_id, Purpose.SYNC))
        self.store.set_transfer_state(link.peer_id, msg.image_id, TransferState.REFUSED)
        return self._out.take()

    def render(self, link: Link, item: Outgoing, now: float) -> Message | None:
        """The message for one piece of scheduler work, reading payload bytes only now.

        What else it asks for (``take``) the node applies before the frame leaves.
        """
        if isinstance(item, SendMessage):
            if isinstance(item.message, Release):
                self._out.tell(ReleaseSent(link.peer_id, item.message.image_id))
            return item.message
        if isinstance(item, SendThumbnail):
            return self._thumbnail_offer(link, item.image_id)
        t = item.transfer
        if isinstance(item, SendHeader):
            return OriginalHeader(image_id=t.image_id, purpose=t.purpose, size=t.size,
                                  digest=t.digest, offset=t.offset, destination=t.destination,
                                  owner=t.owner)
        if isinstance(item, SendChunk):
            try:
                data = self._read(t, item.offset, item.length)
            except StoreError as exc:
                self._out.add(Drop(link.peer_id, t.image_id, t.purpose))
                return TransferFailed(t.image_id, t.purpose, str(exc)[: Limits.MAX_TEXT])
            return Chunk(t.image_id, t.purpose, item.offset, data)
        assert isinstance(item, SendComplete)
        self._sent(link, t, now)
        return OriginalComplete(t.image_id, t.purpose, t.digest)

    def _read(self, t: Transfer, offset: int, length: int) -> bytes:
        if t.source is Source.ORIGINAL:
            return self.store.read_original(t.image_id, offset, length)
        if t.source is Source.HELD:
            return self.store.read_held(t.image_id, offset, length)
        if t.source is Source.SEALED:
            return self.store.read_sealed(t.image_id, offset, length)
        assert t.payload is not None
        return bytes(t.payload[offset : offset + length])

    def _thumbnail_offer(self, link: Link, image_id: str) -> ThumbnailOffer | None:
        record = self.store.image(image_id)
        if record is None:
            return None
        if self.store.transfer_state(link.peer_id, image_id) is TransferState.UNTRANSMITTED:
            self.store.set_transfer_state(link.peer_id, image_id, TransferState.THUMBNAIL_SENT)
        return ThumbnailOffer(
            image_id=record.image_id,
            origin=record.origin,
            seq=record.seq,
            name=record.name,
            size=record.size,
            mime=record.mime,
            capture_time=record.capture_time,
            metadata=record.metadata,
            thumbnail=record.thumbnail,
            has_original=record.where is Where.LOCAL,
            wrapped_key=self._wrapped_key(link, record),
        )

    def _wrapped_key(self, link: Link, record: ImageRecord) -> bytes | None:
        """Our picture's key wrapped for a peer the runtime named (FIG. 20): ahead of any
        original."""
        sealer = self.config.sealer
        if (link.key_recipient is None or sealer is None
                or record.origin != self.store.device_id):
            return None
        key = self.store.picture_key(record.image_id, create=True)
        assert key is not None
        return sealer.wrap(key, record.image_id, link.key_recipient)

    def _sent(self, link: Link, t: Transfer, now: float) -> None:
        """An original's last frame is going out."""
        if t.purpose is Purpose.SYNC:
            self.store.set_transfer_state(link.peer_id, t.image_id, TransferState.ORIGINAL_SENT)
        self._out.emit(ev.OriginalSent(link.peer_id, t.image_id, t.purpose))
