"""Incoming original streams: header, chunks, completion, checked against what we asked for.

A stream is legal only if we asked for it (request, collect, read-out) or agreed
to it (dispersal accept); its header must name us, an original's digest must be
its image id, its offset must be where we asked it to start, and every chunk
must land exactly at the next offset.  Anything else is a RemoteProtocolError:
the peer lied or is broken, and the link closes.  One (image, purpose) stream on
one link is, for this machine, in one state at a time:

  state      input                                           next state
  ---------  ----------------------------------------------  ----------------------------
  EXPECTED   header passing every check                      OPEN
  CANCELLED  header, chunk                                   CANCELLED (it crossed our cancel)
  CANCELLED  completion                                      NONE (nothing more is coming)
  OPEN       chunk at the next offset, within the size       OPEN (written, or passed on)
  OPEN       chunk, our card full                            CANCELLED (refused, or collected
                                                             elsewhere)
  OPEN       completion, whole, the digest the header said   NONE (verified: stored, handed on)
  OPEN       completion after our urgent ask crossed it      CANCELLED (its repeat is ignored)
  NONE / EXPECTED  any other header, chunk or completion     the link is cut

``TRANSITIONS`` is that table and ``state_of`` reads a stream's state off a link.
What the bytes are for is told to the machine that asked for them (protocol.effects:
``ReadOutIn``, ``CollectedBytes``, ``CollectionIn``, ``PullOver``, ``HeldIn`` ...);
a link is written only through effects.  The ``Stream`` record is this machine's: the
link holds it, and each chunk advances it in place.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from typing import Final

from protocol import events as ev
from protocol.effects import (
    Cancel,
    Closed,
    CollectedBytes,
    CollectionIn,
    CollectionLost,
    Effect,
    HeldIn,
    Machine,
    Opened,
    OursAgain,
    PullOver,
    PullsMayGo,
    ReadOutIn,
    ReadOutLost,
    Settled,
)
from protocol.errors import RemoteProtocolError
from protocol.messages import Chunk, OriginalComplete, OriginalHeader, Purpose, RefuseOriginal
from protocol.peer import Link, Stream
from protocol.store import CardFullError, HashMismatch, Incoming


class StreamState(enum.StrEnum):
    """Where one (image, purpose) stream from one peer is."""

    NONE = "none"
    EXPECTED = "expected"  # asked for (or agreed to); no header yet
    OPEN = "open"  # header checked; chunks land at next_offset
    CANCELLED = "cancelled"  # we no longer want it: what is on its way is ignored


NONE, EXP, OPEN, CAN = StreamState.NONE, StreamState.EXPECTED, StreamState.OPEN, StreamState.CANCELLED

TRANSITIONS: Final[Mapping[tuple[StreamState, str], frozenset[StreamState]]] = {
    (EXP, "header"): frozenset({OPEN}),
    (CAN, "header"): frozenset({CAN}),
    (CAN, "chunk"): frozenset({CAN}),
    (CAN, "complete"): frozenset({NONE}),
    (OPEN, "chunk"): frozenset({OPEN, CAN}),  # CAN: our card is full
    (OPEN, "complete"): frozenset({NONE, CAN}),  # CAN: a repeat may follow
}


def state_of(link: Link, image_id: str, purpose: Purpose) -> StreamState:
    key = (image_id, purpose)
    if key in link.streams:
        return StreamState.OPEN
    if key in link.expected:
        return StreamState.EXPECTED
    return StreamState.CANCELLED if key in link.cancelled else StreamState.NONE


class Inbound(Machine):
    """The incoming original streams of one node (see the module's table)."""

    def on_header(self, link: Link, msg: OriginalHeader, now: float) -> list[Effect]:
        key = (msg.image_id, msg.purpose)
        expected = link.expected.get(key)
        if expected is None:
            if key in link.cancelled:
                return []
            raise RemoteProtocolError(
                f"header for {msg.image_id[:12]} ({msg.purpose}), which nobody asked for",
                code="unexpected-transfer",
            )
        if msg.destination != self.store.device_id:
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
                f"header for {msg.image_id[:12]} says {msg.size} bytes; we know it has "
                f"{expected.size}",
                code="bad-size",
            )
        if msg.purpose is Purpose.DISPERSE and msg.owner != link.peer_id:
            raise RemoteProtocolError(
                f"dispersal of {msg.image_id[:12]} names owner {msg.owner[:12]}, not the sender",
                code="bad-owner",
            )
        if msg.offset != expected.offset:
            raise RemoteProtocolError(
                f"stream of {msg.image_id[:12]} starts at {msg.offset}; we asked for "
                f"{expected.offset}",
                code="bad-offset",
            )
        hasher = hashlib.sha256() if expected.kind is None else None
        return [Opened(link.peer_id, Stream(expected, msg.size, msg.digest, msg.offset, hasher))]

    def on_chunk(self, link: Link, msg: Chunk, now: float) -> list[Effect]:
        key = (msg.image_id, msg.purpose)
        stream = link.streams.get(key)
        if stream is None:
            if key in link.cancelled:
                return []
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
        out, data = self._out, bytes(msg.data)
        kind = stream.expected.kind
        if kind is None:  # not for our card: hashed as it passes, handed on
            assert stream.hasher is not None
            stream.hasher.update(data)
            if msg.purpose is Purpose.READOUT:
                out.emit(ev.ReadOutChunk(msg.image_id, msg.offset, data))
            else:
                out.tell(CollectedBytes(link.peer_id, msg.image_id, data))
        else:
            try:
                self.store.write_partial(msg.image_id, kind, msg.offset, data)
            except CardFullError as exc:
                self._abandon(link, stream, str(exc))
                return out.take()
        stream.next_offset += len(data)
        out.emit(
            ev.TransferProgress(
                link.peer_id, msg.image_id, msg.purpose, stream.next_offset, stream.size
            )
        )
        return out.take()

    def _abandon(self, link: Link, stream: Stream, reason: str) -> None:
        """Our card cannot take the rest: stop the stream, keep what is durable."""
        expected, out = stream.expected, self._out
        out.add(Cancel(link.peer_id, expected.image_id, expected.purpose))
        out.tell(PullOver(link.peer_id, expected.image_id))
        if expected.purpose in (Purpose.SYNC, Purpose.SMALLER):
            out.send(link.peer_id, RefuseOriginal(expected.image_id))
            if expected.urgent:
                out.emit(ev.RequestPending(expected.image_id, reason))
        elif expected.purpose is Purpose.COLLECT:
            out.tell(CollectionLost(link.peer_id, expected.image_id, reason))

    def on_complete(self, link: Link, msg: OriginalComplete, now: float) -> list[Effect]:
        key, out = (msg.image_id, msg.purpose), self._out
        stream = link.streams.get(key)
        if stream is None:
            if key in link.cancelled:
                return [Settled(link.peer_id, msg.image_id, msg.purpose)]
            raise RemoteProtocolError(
                f"completion of {msg.image_id[:12]} ({msg.purpose}) with no stream open",
                code="unexpected-complete",
            )
        if stream.next_offset != stream.size or msg.digest != stream.digest:
            raise RemoteProtocolError(
                f"completion of {msg.image_id[:12]} after {stream.next_offset} of "
                f"{stream.size} bytes, digest {msg.digest[:12]} (header said "
                f"{stream.digest[:12]})",
                code="bad-complete",
            )
        expected = stream.expected
        # Our urgent request may have crossed this completion (a repeat that moved a
        # background pull up): the sender, done with it, streams it again.  That stream is
        # ignored as a cancelled one, not taken for one nobody asked for.
        crossed = expected.urgent and msg.purpose in (Purpose.SYNC, Purpose.SMALLER)
        out.add(Closed(link.peer_id, msg.image_id, msg.purpose, crossed=crossed))
        kind = expected.kind
        if kind is None:
            assert stream.hasher is not None
            if expected.offset == 0 and stream.hasher.hexdigest() != msg.digest:
                reason = "the bytes did not match the digest"
                if msg.purpose is Purpose.READOUT:
                    out.tell(ReadOutLost(msg.image_id, reason))
                else:
                    out.tell(CollectionLost(link.peer_id, msg.image_id, reason))
                raise RemoteProtocolError(
                    f"{msg.image_id[:12]} ({msg.purpose}) does not hash to its digest",
                    code="hash-mismatch",
                )
        else:
            try:
                self.store.finish_partial(
                    msg.image_id, kind, msg.digest, now, owner=expected.owner
                )
            except HashMismatch as exc:
                if msg.purpose is Purpose.COLLECT and expected.offset != 0:
                    # Resumed on bytes that came before this stream (another holder, an
                    # earlier link): whoever changed them, it need not be this holder.  The
                    # store dropped the partial; the collection starts over rather than
                    # accuse it.
                    reason = "the bytes did not match the digest"
                    out.tell(CollectionLost(link.peer_id, msg.image_id, reason))
                    return out.take()
                raise RemoteProtocolError(str(exc), code="hash-mismatch") from exc
            if kind is Incoming.ORIGINAL or kind is Incoming.SEALED:
                record = self.store.image(msg.image_id)
                if record is not None and record.origin == self.store.device_id:
                    out.tell(OursAgain(record))  # one of ours, home again
        if msg.purpose in (Purpose.SYNC, Purpose.SMALLER):
            out.tell(PullOver(link.peer_id, msg.image_id))
            out.emit(ev.OriginalArrived(link.peer_id, msg.image_id, msg.purpose))
            out.tell(PullsMayGo(now))
        elif msg.purpose is Purpose.DISPERSE:
            out.tell(HeldIn(link.peer_id, msg.image_id, msg.digest, now))
        elif msg.purpose is Purpose.READOUT:
            out.tell(ReadOutIn(msg.image_id, stream.digest))
        else:
            out.tell(CollectionIn(link.peer_id, msg.image_id, expected.offset, now))
        return out.take()
