"""The node's view of one connected peer: its link state, what we expect from it, what it holds."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from protocol.connection import Connection
from protocol.messages import Error, Hello, Purpose, Role
from protocol.scheduler import QueueLengths, Scheduler
from protocol.store import DispersalState, ImageRecord, Incoming, Store


@dataclass(slots=True, eq=False)
class Expected:
    """A stream we asked for (request, collect, read-out) or agreed to (dispersal accept).

    ``kind`` None means the bytes are not written to our card: they are
    forwarded or handed out as read-out events, and hashed as they pass.
    """

    image_id: str
    purpose: Purpose
    kind: Incoming | None
    offset: int  # where the stream must start
    size: int | None = None  # known size the header must match, when we know it
    owner: str | None = None  # for held originals
    urgent: bool = True
    digest: str | None = None  # what the header must promise, if not the image id (sealed)


@dataclass(slots=True, eq=False)
class Stream:
    """An incoming stream after its header: where the next chunk must land."""

    expected: Expected
    size: int
    digest: str
    next_offset: int
    hasher: hashlib._Hash | None = None  # only for streams we do not store


@dataclass(slots=True, eq=False)
class Link:
    """Volatile per-connection state; it dies with the connection."""

    peer_id: str
    conn: Connection
    scheduler: Scheduler
    connected_at: float
    hello: Hello | None = None
    catalog: Mapping[str, int] | None = None
    ready: bool = False  # catalogs exchanged: anything may be queued now
    free: int = 0  # the room the peer last advertised (Hello, DisperseReject), minus our asks
    closing: bool = False  # the peer said Goodbye or Error, or broke the protocol
    last_word: Error | None = None  # our Error to flush once after a protocol violation
    expected: dict[tuple[str, Purpose], Expected] = field(default_factory=dict)
    streams: dict[tuple[str, Purpose], Stream] = field(default_factory=dict)
    cancelled: set[tuple[str, Purpose]] = field(default_factory=set)
    bytes_in: int = 0
    bytes_out: int = 0
    # The peer's X25519 key when our pictures' keys go to it wrapped (a desk we trust to
    # open what we disperse, should this device be lost); None for every other peer.
    key_recipient: bytes | None = None

    def expect(self, expected: Expected) -> None:
        """We asked for (or agreed to) this stream: its header may now come."""
        key = (expected.image_id, expected.purpose)
        self.expected[key] = expected
        self.streams.pop(key, None)
        self.cancelled.discard(key)

    def cancel(self, image_id: str, purpose: Purpose) -> Expected | None:
        """Forget a stream we asked for; chunks already on their way are then ignored."""
        key = (image_id, purpose)
        self.streams.pop(key, None)
        expected = self.expected.pop(key, None)
        if expected is not None:
            self.cancelled.add(key)
        return expected

    def ensure_thumbnail(self, record: ImageRecord | None, image_id: str) -> None:
        """Make sure the peer has (or is about to get) the thumbnail before any original bytes."""
        sched = self.scheduler
        if sched.thumbnail_known(image_id) or sched.thumbnail_queued(image_id):
            return
        if record is None:
            # We hold bytes without a catalog row (a held original): the peer named the
            # picture itself, so it knows it; we have no thumbnail to send first.
            sched.mark_thumbnail_known(image_id)
        elif record.origin == self.peer_id or self.has_seen(record.origin, record.seq):
            sched.mark_thumbnail_known(image_id)
        else:
            sched.queue_thumbnail(image_id, record.capture_time)

    @property
    def is_desk(self) -> bool:
        return self.hello is not None and self.hello.role is Role.DESK

    def has_seen(self, origin: str, seq: int) -> bool:
        """True when the peer's catalog says it holds this thumbnail already."""
        return self.catalog is not None and self.catalog.get(origin, 0) >= seq


def holder_rank(image_id: str, peer_id: str) -> str:
    """A stable per-picture order of holders, so a picture's holders can be found again."""
    return hashlib.sha256((image_id + peer_id).encode()).hexdigest()


def stored_holders(store: Store, image_id: str) -> list[str]:
    """Holders that confirmed storing one of our originals, in its stable holder order."""
    holders = [e.holder for e in store.dispersion(image_id) if e.state is DispersalState.STORED]
    holders.sort(key=lambda h: holder_rank(image_id, h))
    return holders


def name_in(names: Mapping[str, str], peer_id: str) -> str:
    """A device's name from its Hello, or the start of its id when none was heard."""
    return names.get(peer_id, peer_id[:12])


@dataclass(frozen=True, slots=True)
class PeerView:
    """What `cammesh status` shows of one peer."""

    peer_id: str
    name: str | None
    role: Role | None
    ready: bool
    our_state: str
    their_state: str
    connected_at: float
    last_heard: float
    advertised_free: int
    queues: QueueLengths
    streams_in: int
    bytes_in: int
    bytes_out: int


def view_of(link: Link, last_heard: float, *, free: int) -> PeerView:
    """``free``: the room the peer has for us as dispersal reckons it (its word, less our asks)."""
    return PeerView(
        peer_id=link.peer_id,
        name=link.hello.name if link.hello else None,
        role=link.hello.role if link.hello else None,
        ready=link.ready,
        our_state=link.conn.our_state.value,
        their_state=link.conn.their_state.value,
        connected_at=link.connected_at,
        last_heard=last_heard,
        advertised_free=free,
        queues=link.scheduler.lengths(),
        streams_in=len(link.streams),
        bytes_in=link.bytes_in,
        bytes_out=link.bytes_out,
    )
