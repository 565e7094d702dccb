"""The node's view of one connected peer: its link state, what we expect from it, what it holds."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from protocol.connection import Connection
from protocol.messages import Error, Hello, Purpose, Role
from protocol.scheduler import QueueLengths, Scheduler
from protocol.store import Incoming


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
    last_heard: float  # any frame received refreshes it: a busy link needs no ping
    hello: Hello | None = None
    catalog: Mapping[str, int] | None = None
    ready: bool = False  # catalogs exchanged: anything may be queued now
    free: int = 0  # the room the peer last advertised (Hello, DisperseReject), minus our asks
    timed_out: bool = False
    closing: bool = False  # the peer said Goodbye or Error, or broke the protocol
    last_word: Error | None = None  # our Error to flush once after a protocol violation
    ping_nonce: int = 0
    pinged_at: float = float("-inf")  # our last Ping: a silent link is pinged once a period
    expected: dict[tuple[str, Purpose], Expected] = field(default_factory=dict)
    streams: dict[tuple[str, Purpose], Stream] = field(default_factory=dict)
    cancelled: set[tuple[str, Purpose]] = field(default_factory=set)
    bytes_in: int = 0
    bytes_out: int = 0
    # The peer's X25519 key when our pictures' keys go to it wrapped (a desk we trust to
    # open what we disperse, should this device be lost); None for every other peer.
    key_recipient: bytes | None = None

    @property
    def is_desk(self) -> bool:
        return self.hello is not None and self.hello.role is Role.DESK

    def has_seen(self, origin: str, seq: int) -> bool:
        """True when the peer's catalog says it holds this thumbnail already."""
        return self.catalog is not None and self.catalog.get(origin, 0) >= seq

    def ping_due(self, keepalive_s: float) -> float:
        """When a silent link wants a Ping: a period after the last frame heard or Ping sent."""
        return max(self.last_heard, self.pinged_at) + keepalive_s


def holder_rank(image_id: str, peer_id: str) -> str:
    """A stable per-picture order of holders, so a picture's holders can be found again."""
    return hashlib.sha256((image_id + peer_id).encode()).hexdigest()


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


def view_of(link: Link) -> PeerView:
    return PeerView(
        peer_id=link.peer_id,
        name=link.hello.name if link.hello else None,
        role=link.hello.role if link.hello else None,
        ready=link.ready,
        our_state=link.conn.our_state.value,
        their_state=link.conn.their_state.value,
        connected_at=link.connected_at,
        last_heard=link.last_heard,
        advertised_free=link.free,
        queues=link.scheduler.lengths(),
        streams_in=len(link.streams),
        bytes_in=link.bytes_in,
        bytes_out=link.bytes_out,
    )
