"""Incoming original streams: header, chunks, completion, checked against what we asked for.

A stream is legal only if we asked for it (request, collect, read-out) or
agreed to it (dispersal accept); its header must name us, an original's
digest must be its image id, its offset must be where we asked it to start,
and every chunk must land exactly at the next offset.  Anything else is a
RemoteProtocolError: the peer lied or is broken, and the link closes.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from protocol import events as ev
from protocol.errors import RemoteProtocolError
from protocol.messages import Chunk, OriginalComplete, OriginalHeader, Purpose, RefuseOriginal
from protocol.peer import Link, Stream
from protocol.store import CardFullError, HashMismatch, Incoming

if TYPE_CHECKING:
    from protocol.node import Node


def on_header(node: Node, link: Link, msg: OriginalHeader) -> None:
    key = (msg.image_id, msg.purpose)
    expected = link.expected.get(key)
    if expected is None:
        if key in link.cancelled:
            return
        raise RemoteProtocolError(
            f"header for {msg.image_id[:12]} ({msg.purpose}), which nobody asked for",
            code="unexpected-transfer",
        )
    if msg.destination != node.device_id:
        raise RemoteProtocolError(
            f"header for {msg.image_id[:12]} is addressed to {msg.destination[:12]}, not us",
            code="wrong-destination",
        )
    # An original's digest is its image id; sealed bytes (to a holder, and back) have the
    # digest of the sealed form: the holder checks what it is sent against the header's,
    # and a collection must promise the digest our own sealed form has.
    if msg.purpose is Purpose.DISPERSE or msg.purpose is Purpose.SMALLER:
        promised = msg.digest
    else:
        promised = expected.digest or msg.image_id
    if msg.digest != promised:
        raise RemoteProtocolError(
            f"header for {msg.image_id[:12]} promises digest {msg.digest[:12]}, not "
            f"{promised[:12]}",
            code="bad-digest",
        )
    if expected.size is not None and msg.size != expected.size:
        raise RemoteProtocolError(
            f"header for {msg.image_id[:12]} says {msg.size} bytes; we know it has {expected.size}",
            code="bad-size",
        )
    if msg.purpose is Purpose.DISPERSE and msg.owner != link.peer_id:
        raise RemoteProtocolError(
            f"dispersal of {msg.image_id[:12]} names owner {msg.owner[:12]}, not the sender",
            code="bad-owner",
        )
    if msg.offset != expected.offset:
        raise RemoteProtocolError(
            f"stream of {msg.image_id[:12]} starts at {msg.offset}; we asked for {expected.offset}",
            code="bad-offset",
        )
    hasher = hashlib.sha256() if expected.kind is None else None
    link.streams[key] = Stream(expected, msg.size, msg.digest, msg.offset, hasher)
    node.readouts.stream_opened(link, msg)


def on_chunk(node: Node, link: Link, msg: Chunk, now: float) -> None:
    key = (msg.image_id, msg.purpose)
    stream = link.streams.get(key)
    if stream is None:
        if key in link.cancelled:
            return
        raise RemoteProtocolError(
            f"chunk of {msg.image_id[:12]} ({msg.purpose}) with no stream open for it",
            code="unexpected-chunk",
        )
    if msg.offset != stream.next_offset or msg.offset + len(msg.data) > stream.size:
        raise RemoteProtocolError(
            f"chunk of {msg.image_id[:12]} at offset {msg.offset} (+{len(msg.data)}); "
            f"expected {stream.next_offset} of {stream.size}",
            code="bad-offset",
        )
    data = bytes(msg.data)
    kind = stream.expected.kind
    if kind is None:
        assert stream.hasher is not None
        stream.hasher.update(data)
        node.readouts.stream_chunk(link, stream, msg.offset, data)
    else:
        try:
            node.store.write_partial(msg.image_id, kind, msg.offset, data)
        except CardFullError as exc:
            abandon(node, link, stream, str(exc))
            return
    stream.next_offset += len(data)
    node.emit(
        ev.TransferProgress(
            link.peer_id, msg.image_id, msg.purpose, stream.next_offset, stream.size
        )
    )


def abandon(node: Node, link: Link, stream: Stream, reason: str) -> None:
    """Our card cannot take the rest: stop the stream, keep what is durable."""
    expected = stream.expected
    link.cancel(expected.image_id, expected.purpose)
    node.pulls.finished(link.peer_id, expected.image_id)
    if expected.purpose in (Purpose.SYNC, Purpose.SMALLER):
        link.scheduler.send_control(RefuseOriginal(expected.image_id))
        if expected.urgent:
            node.emit(ev.RequestPending(expected.image_id, reason))
    elif expected.purpose is Purpose.COLLECT:
        node.readouts.collect_failed(link, expected.image_id, reason)


def on_complete(node: Node, link: Link, msg: OriginalComplete, now: float) -> None:
    key = (msg.image_id, msg.purpose)
    stream = link.streams.get(key)
    if stream is None:
        if key in link.cancelled:
            link.cancelled.discard(key)
            return
        raise RemoteProtocolError(
            f"completion of {msg.image_id[:12]} ({msg.purpose}) with no stream open",
            code="unexpected-complete",
        )
    if stream.next_offset != stream.size or msg.digest != stream.digest:
        raise RemoteProtocolError(
            f"completion of {msg.image_id[:12]} after {stream.next_offset} of "
            f"{stream.size} bytes, digest {msg.digest[:12]} (header said {stream.digest[:12]})",
            code="bad-complete",
        )
    del link.streams[key]
    del link.expected[key]
    expected = stream.expected
    if expected.urgent and msg.purpose in (Purpose.SYNC, Purpose.SMALLER):
        # Our urgent request may have crossed this completion (a repeat that moved a
        # background pull up): the sender, done with it, streams it again.  That stream is
        # ignored as a cancelled one, not taken for one nobody asked for.
        link.cancelled.add(key)
    kind = expected.kind
    if kind is None:
        assert stream.hasher is not None
        if stream.expected.offset == 0 and stream.hasher.hexdigest() != msg.digest:
            node.readouts.stream_failed(link, stream, "the bytes did not match the digest")
            raise RemoteProtocolError(
                f"{msg.image_id[:12]} ({msg.purpose}) does not hash to its digest",
                code="hash-mismatch",
            )
    else:
        try:
            node.store.finish_partial(msg.image_id, kind, msg.digest, now, owner=expected.owner)
        except HashMismatch as exc:
            if msg.purpose is Purpose.COLLECT and expected.offset != 0:
                # Resumed on bytes that came before this stream (another holder, an earlier
                # link): whoever changed them, it need not be this holder.  The store dropped
                # the partial; the collection starts over rather than accuse it.
                node.readouts.collect_failed(link, msg.image_id, "the bytes did not match the digest")
                return
            raise RemoteProtocolError(str(exc), code="hash-mismatch") from exc
        if kind is Incoming.ORIGINAL or kind is Incoming.SEALED:
            record = node.store.image(msg.image_id)
            if record is not None and record.origin == node.device_id:
                node.dispersal.note_local(record)  # one of ours, home again
    if msg.purpose in (Purpose.SYNC, Purpose.SMALLER):
        node.pulls.finished(link.peer_id, msg.image_id)
        node.emit(ev.OriginalArrived(link.peer_id, msg.image_id, msg.purpose))
        node.pump_requests(now)
    elif msg.purpose is Purpose.DISPERSE:
        node.dispersal.held_complete(link, msg, now)
    else:
        node.readouts.stream_complete(link, stream, now)
