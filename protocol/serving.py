"""What we serve and how queued work becomes messages: requests, smaller copies, refusals.

The scheduler decides *what* goes next; ``render`` reads the bytes from the
card at the moment the runtime pulls a frame, so nothing is read early and a
picture freed meanwhile turns into TransferFailed instead of stale bytes.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from protocol import events as ev
from protocol.errors import RemoteProtocolError
from protocol.messages import (
    Chunk,
    Limits,
    Message,
    OriginalComplete,
    OriginalHeader,
    Purpose,
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

if TYPE_CHECKING:
    from protocol.node import Node


def on_request(node: Node, link: Link, msg: RequestOriginal, now: float) -> None:
    """Queue what the peer asked for (FIG. 10, S63-S65); a repeat only moves it up."""
    smaller = msg.max_side is not None or msg.quality is not None
    purpose = Purpose.SMALLER if smaller else Purpose.SYNC
    lane = Lane.URGENT if msg.urgent else Lane.BACKGROUND
    existing = link.scheduler.transfer(msg.image_id, purpose)
    record = node.store.image(msg.image_id)
    if record is None:
        # Nothing to serve and nothing to remember: a peer's requests for pictures we never
        # had write no rows on our card.
        link.scheduler.send_control(
            TransferFailed(msg.image_id, purpose, "this device does not have that original")
        )
        return
    node.store.set_transfer_state(
        link.peer_id,
        msg.image_id,
        TransferState.REQUESTED,
        max_side=msg.max_side,
        quality=msg.quality,
    )
    if existing is not None:
        link.scheduler.promote(msg.image_id, purpose, lane)
        return
    if record is not None and record.where is Where.LOCAL:
        if smaller:
            serve_smaller(node, link, record, msg, lane)
            return
        if msg.offset > record.size:
            raise RemoteProtocolError(
                f"request for {msg.image_id[:12]} at offset {msg.offset} past its "
                f"{record.size} bytes",
                code="bad-offset",
            )
        link.ensure_thumbnail(record, msg.image_id)
        link.scheduler.add_transfer(
            Transfer(
                image_id=msg.image_id,
                purpose=purpose,
                lane=lane,
                size=record.size,
                digest=msg.image_id,
                offset=msg.offset,
                destination=link.peer_id,
                owner=record.origin,
                source=Source.ORIGINAL,
            )
        )
    elif (
        record is not None
        and record.where is Where.DISPERSED
        and record.origin == node.device_id
        and not smaller
        and msg.urgent  # a background pull does not make us collect from the holder
    ):
        node.readouts.relay(link, record, purpose, msg.offset, now)
    else:
        link.scheduler.send_control(
            TransferFailed(msg.image_id, purpose, "this device does not have that original")
        )


def serve_smaller(
    node: Node, link: Link, record: ImageRecord, msg: RequestOriginal, lane: Lane
) -> None:
    try:
        data = node.store.smaller_copy(record.image_id, msg.max_side, msg.quality)
    except StoreError as exc:
        link.scheduler.send_control(
            TransferFailed(record.image_id, Purpose.SMALLER, str(exc)[: Limits.MAX_TEXT])
        )
        return
    link.ensure_thumbnail(record, record.image_id)
    link.scheduler.add_transfer(
        Transfer(
            image_id=record.image_id,
            purpose=Purpose.SMALLER,
            lane=lane,
            size=len(data),
            digest=hashlib.sha256(data).hexdigest(),
            offset=msg.offset if msg.offset <= len(data) else 0,
            destination=link.peer_id,
            owner=record.origin,
            source=Source.PAYLOAD,
            payload=bytearray(data),
        )
    )


def on_refuse(node: Node, link: Link, msg: RefuseOriginal) -> None:
    link.scheduler.refuse(msg.image_id)
    node.readouts.drop_relay(link, msg.image_id, Purpose.SYNC)
    node.store.set_transfer_state(link.peer_id, msg.image_id, TransferState.REFUSED)


def render(node: Node, link: Link, item: Outgoing, now: float) -> Message | None:
    """The message for one piece of scheduler work, reading payload bytes only now."""
    if isinstance(item, SendMessage):
        if isinstance(item.message, Release):
            node.dispersal.release_sent(link.peer_id, item.message.image_id)
        return item.message
    if isinstance(item, SendThumbnail):
        return thumbnail_offer(node, link, item.image_id)
    t = item.transfer
    if isinstance(item, SendHeader):
        return OriginalHeader(
            image_id=t.image_id,
            purpose=t.purpose,
            size=t.size,
            digest=t.digest,
            offset=t.offset,
            destination=t.destination,
            owner=t.owner,
        )
    if isinstance(item, SendChunk):
        try:
            data = read(node, t, item.offset, item.length)
        except StoreError as exc:
            link.scheduler.drop(t.image_id, t.purpose)
            return TransferFailed(t.image_id, t.purpose, str(exc)[: Limits.MAX_TEXT])
        return Chunk(t.image_id, t.purpose, item.offset, data)
    assert isinstance(item, SendComplete)
    sent(node, link, t, now)
    return OriginalComplete(t.image_id, t.purpose, t.digest)


def read(node: Node, t: Transfer, offset: int, length: int) -> bytes:
    if t.source is Source.ORIGINAL:
        return node.store.read_original(t.image_id, offset, length)
    if t.source is Source.HELD:
        return node.store.read_held(t.image_id, offset, length)
    if t.source is Source.SEALED:
        return node.store.read_sealed(t.image_id, offset, length)
    assert t.payload is not None
    return bytes(t.payload[offset : offset + length])


def thumbnail_offer(node: Node, link: Link, image_id: str) -> ThumbnailOffer | None:
    record = node.store.image(image_id)
    if record is None:
        return None
    if node.store.transfer_state(link.peer_id, image_id) is TransferState.UNTRANSMITTED:
        node.store.set_transfer_state(link.peer_id, image_id, TransferState.THUMBNAIL_SENT)
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
        wrapped_key=_wrapped_key(node, link, record),
    )


def _wrapped_key(node: Node, link: Link, record: ImageRecord) -> bytes | None:
    """Our picture's key wrapped for a peer the runtime named (FIG. 20): ahead of any original."""
    sealer = node.config.sealer
    if link.key_recipient is None or sealer is None or record.origin != node.device_id:
        return None
    key = node.store.picture_key(record.image_id, create=True)
    assert key is not None
    return sealer.wrap(key, record.image_id, link.key_recipient)


def sent(node: Node, link: Link, t: Transfer, now: float) -> None:
    """An original's last frame is going out."""
    if t.purpose is Purpose.SYNC:
        node.store.set_transfer_state(link.peer_id, t.image_id, TransferState.ORIGINAL_SENT)
    node.emit(ev.OriginalSent(link.peer_id, t.image_id, t.purpose))
    if t.purpose is Purpose.DISPERSE and node.config.bug("free-before-stored"):
        node.apply(node.dispersal.planted_free_before_stored(link.peer_id, t.image_id, now))
