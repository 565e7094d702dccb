"""What to send a peer next: one outgoing priority scheduler per connection (DESIGN.md, "Wire").

Order of every pull: control messages; then thumbnails, newest capture first;
then originals by lane — requested (urgent) in request order, dispersal and
collection traffic, background.  An original goes out as a header, chunks of
at most ``chunk_size`` bytes and a completion, one frame per pull, so a new
thumbnail waits for at most the one chunk already on the wire.

The scheduler holds *what* to send, never payload bytes it would have to
read: the node reads each chunk from the card when the runtime pulls a frame.
While ``background_held`` (a camera uploads into this node, Node.hold_background) the
background lane waits; every other lane goes on.

Structural rule: an original's header never leaves before that picture's
thumbnail went out on this link (or the peer is known to hold it), whatever
the lane (FIG. 24: the thumbnail precedes the original), nor before a movie's
strip queued behind its thumbnail went out (FIG. 15A: the whole strip first).
"""

from __future__ import annotations

import enum
import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from protocol.errors import LocalProtocolError
from protocol.messages import Limits, Message, Purpose


class Lane(enum.IntEnum):
    """Priority of an original's stream; lower goes first (FIG. 10, S63)."""

    URGENT = 0  # the receiver's user asked for it, or a read-out
    DISPERSAL = 1  # dispersal to a holder, collection back to the owner
    BACKGROUND = 2  # the receiver's policy pulls everything


class Source(enum.StrEnum):
    """Where the node reads a stream's bytes from when a chunk is pulled."""

    ORIGINAL = "original"  # store.read_original
    HELD = "held"  # store.read_held (we hold it for its owner)
    SEALED = "sealed"  # store.read_sealed (our original, sealed on its way to a holder)
    PAYLOAD = "payload"  # bytes kept on the transfer (a smaller copy, a relayed read-out)


@dataclass(slots=True, eq=False)
class Transfer:
    """One original on its way to this peer; mutable, owned by the scheduler.

    ``available`` caps what may be sent so far (a relayed read-out grows as the
    holder's chunks arrive); ``may_complete`` says the completion may go out.
    """

    image_id: str
    purpose: Purpose
    lane: Lane
    size: int
    digest: str
    offset: int
    destination: str
    owner: str
    source: Source
    payload: bytearray | None = None
    available: int = -1  # -1: everything up to size
    may_complete: bool = True  # False: a relay's completion waits for the verified whole
    header_sent: bool = False

    @property
    def key(self) -> tuple[str, Purpose]:
        return (self.image_id, self.purpose)

    def sendable_to(self) -> int:
        return self.size if self.available < 0 else min(self.available, self.size)


@dataclass(frozen=True, slots=True)
class SendMessage:
    message: Message


@dataclass(frozen=True, slots=True)
class SendThumbnail:
    image_id: str


@dataclass(frozen=True, slots=True)
class SendStrip:
    image_id: str


@dataclass(frozen=True, slots=True)
class SendHeader:
    transfer: Transfer


@dataclass(frozen=True, slots=True)
class SendChunk:
    transfer: Transfer
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class SendComplete:
    transfer: Transfer


Outgoing = SendMessage | SendThumbnail | SendHeader | SendChunk | SendComplete  # what serving renders


@dataclass(frozen=True, slots=True)
class QueueLengths:
    """How much is waiting for one peer (for `cammesh status`)."""

    control: int
    thumbnails: int
    urgent: int
    dispersal: int
    background: int
    bytes_pending: int


@dataclass(slots=True)
class Scheduler:
    """Per-connection outgoing queue; ``pop()`` yields one frame's worth of work at a time."""

    chunk_size: int = Limits.DEFAULT_CHUNK
    on_work: Callable[[], None] | None = None  # told whenever work is queued (Node's busy set)
    _control: deque[Message] = field(default_factory=deque)
    # (-capture time, -order, image id, is a strip): thumbnails and movies' strips, one lane
    _thumb_heap: list[tuple[float, int, str, bool]] = field(default_factory=list)
    _thumb_queued: dict[str, int] = field(default_factory=dict)
    _strip_queued: dict[str, int] = field(default_factory=dict)
    _thumb_known: set[str] = field(default_factory=set)
    _lanes: dict[Lane, list[Transfer]] = field(
        default_factory=lambda: {lane: [] for lane in Lane}
    )
    _by_key: dict[tuple[str, Purpose], Transfer] = field(default_factory=dict)
    _counter: Iterator[int] = field(default_factory=itertools.count)
    # While True the background lane waits (a camera uploads into this node: Node.hold_background).
    background_held: bool = False

    def __post_init__(self) -> None:
        if not Limits.MIN_CHUNK <= self.chunk_size <= Limits.MAX_CHUNK:
            raise LocalProtocolError(
                f"chunk size {self.chunk_size} is outside "
                f"[{Limits.MIN_CHUNK}, {Limits.MAX_CHUNK}]; pick one in that range",
                code="config",
            )

    # --- queueing ---------------------------------------------------------------

    def send_control(self, message: Message) -> None:
        """Queue a control message; these go before anything else, in order."""
        self._control.append(message)
        if self.on_work is not None:
            self.on_work()

    def queue_thumbnail(self, image_id: str, capture_time: float | None) -> None:
        """Queue a thumbnail; newest capture goes first, then most recently queued.

        One the peer is known to hold (sent on this link, or it told us) is not queued.
        """
        if image_id in self._thumb_queued or image_id in self._thumb_known:
            return
        n = next(self._counter)
        self._thumb_queued[image_id] = n
        key = capture_time if capture_time is not None else float("-inf")
        heapq.heappush(self._thumb_heap, (-key, -n, image_id, False))
        if self.on_work is not None:
            self.on_work()

    def queue_strip(self, image_id: str, capture_time: float | None) -> None:
        """Queue a movie's strip on the thumbnail lane, as its thumbnail went: it goes next
        but for newer thumbnails, and the movie's original waits until it went (FIG. 15A)."""
        if image_id in self._strip_queued:
            return
        n = next(self._counter)
        self._strip_queued[image_id] = n
        key = capture_time if capture_time is not None else float("-inf")
        heapq.heappush(self._thumb_heap, (-key, -n, image_id, True))
        if self.on_work is not None:
            self.on_work()

    def thumbnail_known(self, image_id: str) -> bool:
        """True once the peer holds this picture's thumbnail (sent here, or it told us)."""
        return image_id in self._thumb_known

    def mark_thumbnail_known(self, image_id: str) -> None:
        """The peer already has this thumbnail (its catalog, its own offer, its own picture).

        A copy still queued for it is dropped: offering it back would only waste airtime.
        """
        self._thumb_known.add(image_id)
        self._thumb_queued.pop(image_id, None)  # its heap entry is skipped as stale

    def thumbnail_queued(self, image_id: str) -> bool:
        return image_id in self._thumb_queued

    def add_transfer(self, transfer: Transfer) -> Transfer:
        """Queue an original's stream; a repeat for the same (image, purpose) may promote it.

        A more urgent repeat moves the queued stream to the end of the more
        urgent lane, keeping its offset (a user request reorders the queue).
        """
        existing = self._by_key.get(transfer.key)
        if existing is not None:
            self.promote(transfer.image_id, transfer.purpose, transfer.lane)
            return existing
        self._by_key[transfer.key] = transfer
        self._lanes[transfer.lane].append(transfer)
        if self.on_work is not None:
            self.on_work()
        return transfer

    def promote(self, image_id: str, purpose: Purpose, lane: Lane) -> None:
        """Move a queued stream to a more urgent lane, at its end (request order), keeping its offset."""
        existing = self._by_key.get((image_id, purpose))
        if existing is not None and lane < existing.lane:
            self._lanes[existing.lane].remove(existing)
            existing.lane = lane
            self._lanes[lane].append(existing)

    def transfer(self, image_id: str, purpose: Purpose) -> Transfer | None:
        return self._by_key.get((image_id, purpose))

    def transfers(self) -> list[Transfer]:
        return [t for lane in Lane for t in self._lanes[lane]]

    def drop(self, image_id: str, purpose: Purpose) -> Transfer | None:
        """Remove one queued stream (refused, failed, or the peer went away)."""
        transfer = self._by_key.pop((image_id, purpose), None)
        if transfer is not None:
            self._lanes[transfer.lane].remove(transfer)
        return transfer

    def refuse(self, image_id: str) -> list[Transfer]:
        """The receiver said "not necessary" (FIG. 13B): its sync and smaller copies leave."""
        dropped = [self.drop(image_id, p) for p in (Purpose.SYNC, Purpose.SMALLER)]
        return [t for t in dropped if t is not None]

    # --- pulling ----------------------------------------------------------------

    def pop(self) -> Outgoing | SendStrip | None:
        """The next frame's worth of work, or None when nothing can go now."""
        if self._control:
            return SendMessage(self._control.popleft())
        return self._pop_lanes()

    def _pop_lanes(self) -> Outgoing | SendStrip | None:
        """Thumbnails (and movies' strips) before any original (DESIGN.md, "Thumbnails first")."""
        thumb = self._pop_thumbnail()
        return thumb if thumb is not None else self._pop_transfer()

    def _may_start(self, t: Transfer) -> bool:
        """Structural: an original's header waits for its thumbnail (and a movie's strip)."""
        return t.image_id in self._thumb_known and t.image_id not in self._strip_queued

    def _pop_thumbnail(self) -> SendThumbnail | SendStrip | None:
        while self._thumb_heap:
            _, neg_n, image_id, strip = heapq.heappop(self._thumb_heap)
            if strip:
                if self._strip_queued.get(image_id) == -neg_n:
                    del self._strip_queued[image_id]
                    return SendStrip(image_id)
                continue
            if self._thumb_queued.get(image_id) == -neg_n:
                del self._thumb_queued[image_id]
                self._thumb_known.add(image_id)
                return SendThumbnail(image_id)
        return None

    def _pop_transfer(self) -> SendHeader | SendChunk | SendComplete | None:
        for lane in Lane:
            if lane is Lane.BACKGROUND and self.background_held:
                continue
            for transfer in self._lanes[lane]:
                step = self._step(transfer)
                if step is not None:
                    return step
        return None

    def _step(self, t: Transfer) -> SendHeader | SendChunk | SendComplete | None:
        if not t.header_sent:
            if not self._may_start(t):
                return None  # the thumbnail (and a movie's strip) go first
            t.header_sent = True
            return SendHeader(t)
        if t.offset < t.size:
            limit = t.sendable_to()
            if t.offset >= limit:
                return None  # a relay waiting for more bytes from the holder
            length = min(self.chunk_size, limit - t.offset)
            step = SendChunk(t, t.offset, length)
            t.offset += length
            return step
        if not t.may_complete:
            return None  # all bytes sent, but the relayed digest is not verified yet
        self.drop(t.image_id, t.purpose)
        return SendComplete(t)

    def waiting(self) -> int:
        """Control messages and streams queued for this peer (thumbnails not counted)."""
        return len(self._control) + len(self._by_key)

    def has_work(self) -> bool:
        """True if ``pop()`` might return something now (cheap, may be optimistic)."""
        streams = len(self._by_key)
        if self.background_held:
            streams -= len(self._lanes[Lane.BACKGROUND])
        return bool(self._control or self._thumb_queued or self._strip_queued or streams)

    def lengths(self) -> QueueLengths:
        return QueueLengths(
            control=len(self._control),
            thumbnails=len(self._thumb_queued),
            urgent=len(self._lanes[Lane.URGENT]),
            dispersal=len(self._lanes[Lane.DISPERSAL]),
            background=len(self._lanes[Lane.BACKGROUND]),
            bytes_pending=sum(t.size - t.offset for t in self._by_key.values()),
        )
