"""A connection-pair harness: Nodes on MemoryStores joined by in-memory byte pipes, a fake clock.

No sockets, no threads: ``pump`` pulls one frame at a time from every live
direction, round-robin, and hands it to the other side, until the mesh is
quiet (or a stop condition holds).  Every delivered message is logged per
direction so tests can check orderings on the wire.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from protocol import events as ev
from protocol.codec import FrameDecoder
from protocol.config import NodeConfig, Policy
from protocol.messages import Chunk, Message, OriginalHeader, Role, ThumbnailOffer
from protocol.node import Node
from protocol.parts import Parts
from protocol.store import StoreError
from sim import planted
from sim.memstore import MemoryStore

EPOCH = 1_700_000_000.0
T = TypeVar("T")


def device_id(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


@dataclass
class MemoryDevice:
    name: str
    store: MemoryStore
    node: Node
    config: NodeConfig
    parts: Parts
    events: list[ev.NodeEvent] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.store.device_id

    def of(self, kind: type[ev.NodeEvent]) -> list[ev.NodeEvent]:
        return [e for e in self.events if isinstance(e, kind)]


@dataclass(frozen=True)
class Delivered:
    src: str
    dst: str
    msg: Message


class MemoryMesh:
    """A few devices, their links, a clock you advance, and a log of every message delivered."""

    def __init__(self) -> None:
        self.now = EPOCH
        self.devices: dict[str, MemoryDevice] = {}
        self.links: set[tuple[str, str]] = set()  # directed: (src name, dst name)
        self.log: list[Delivered] = []
        self._taps: dict[tuple[str, str], FrameDecoder] = {}
        self._captures = 0

    # --- building ----------------------------------------------------------------

    def add(
        self,
        name: str,
        *,
        role: Role = Role.CAMERA,
        capacity: int = 64 * 1024 * 1024,
        policy: Policy = Policy.ALL,
        **options: object,
    ) -> MemoryDevice:
        store = MemoryStore(device_id(name), capacity)
        bugs: frozenset[str] = options.pop("planted_bugs", frozenset())  # type: ignore[assignment]
        parts = planted.parts_for(bugs)
        config = NodeConfig(name=name, role=role, default_policy=policy, **options)  # type: ignore[arg-type]
        node = Node(store, config, random.Random(name), parts=parts)
        dev = MemoryDevice(name, store, node, config, parts)
        self.devices[name] = dev
        return dev

    def restart(self, name: str) -> MemoryDevice:
        """A fresh Node on the same card (volatile state lost); links must be reconnected."""
        dev = self.devices[name]
        for a, b in list(self.links):
            if name in (a, b):
                self.links.discard((a, b))
        dev.node = Node(dev.store, dev.config, random.Random(name + "again"), parts=dev.parts)
        return dev

    def call(self, dev: MemoryDevice, fn: Callable[[], T]) -> T:
        """Run one node input and keep its events; returns what the input returned."""
        result = fn()
        dev.events.extend(dev.node.events())
        return result

    def connect(self, a: str, b: str, *, wrap_for_b: bytes | None = None) -> None:
        """Join ``a`` and ``b``; ``wrap_for_b``: b's X25519 key, to which a wraps its keys."""
        da, db = self.devices[a], self.devices[b]
        self.links |= {(a, b), (b, a)}
        self._taps[(a, b)] = FrameDecoder()
        self._taps[(b, a)] = FrameDecoder()
        self.call(da, lambda: da.node.connected(db.id, self.now, key_recipient=wrap_for_b))
        self.call(db, lambda: db.node.connected(da.id, self.now))

    def disconnect(self, a: str, b: str, reason: str = "link broke") -> None:
        da, db = self.devices[a], self.devices[b]
        self.links -= {(a, b), (b, a)}
        self.call(da, lambda: da.node.disconnected(db.id, self.now, reason))
        self.call(db, lambda: db.node.disconnected(da.id, self.now, reason))

    # --- local inputs --------------------------------------------------------------

    def capture(self, name: str, data: bytes | None = None, *, size: int = 3000) -> str:
        """Store a new picture on ``name``'s card and tell its node; returns the image id."""
        dev = self.devices[name]
        self._captures += 1
        if data is None:
            data = random.Random(f"{name}:{self._captures}").randbytes(size)
        record = dev.store.add_local(
            data,
            name=f"{name}-{self._captures:04d}.jpg",
            now=self.now,
            capture_time=self.now,
            thumbnail=b"thumb-" + data[:16],
        )
        self.call(dev, lambda: dev.node.captured(record.image_id, self.now))
        return record.image_id

    def advance(self, seconds: float) -> None:
        """Move the clock and tick every node."""
        self.now += seconds
        for dev in self.devices.values():
            self.call(dev, lambda dev=dev: dev.node.tick(self.now))  # type: ignore[misc]

    # --- moving bytes ------------------------------------------------------------------

    def step(self, until: Callable[[Delivered], bool] | None = None) -> int:
        """One round: at most one frame per live direction; stops early once ``until`` holds.

        Returns frames moved, or -1 when it stopped for ``until``.
        """
        moved = 0
        for a, b in sorted(self.links):
            if (a, b) not in self.links:
                continue
            src, dst = self.devices[a], self.devices[b]
            busy = src.node.sending_peers()
            frame = src.node.next_frame(dst.id, self.now)
            src.events.extend(src.node.events())
            if frame is None:
                continue
            # A runtime may poll only the peers sending_peers names: none may be missed.
            assert dst.id in busy, f"{a} had a frame for {b} but sending_peers missed it"
            moved += 1
            tap = self._taps[(a, b)]
            tap.feed(frame)
            seen = len(self.log)
            while (msg := tap.next_message()) is not None:
                self.log.append(Delivered(a, b, msg))
            # Deliver in two slices: the node must accept any split of the stream.
            cut = len(frame) // 2
            for part in (frame[:cut], frame[cut:]):
                dst.node.receive_data(src.id, part, self.now)
                dst.events.extend(dst.node.events())
            if until is not None and any(until(d) for d in self.log[seen:]):
                return -1
        return moved

    def pump(
        self, *, until: Callable[[Delivered], bool] | None = None, max_rounds: int = 100_000
    ) -> None:
        """Move frames until quiet, or until a delivered message satisfies ``until``."""
        for _ in range(max_rounds):
            if self.step(until) <= 0:
                return
        raise AssertionError("the mesh never went quiet")

    # --- reading the log -----------------------------------------------------------------

    def between(self, a: str, b: str) -> list[Message]:
        return [d.msg for d in self.log if (d.src, d.dst) == (a, b)]

    def kinds(self, a: str, b: str, image_id: str) -> list[str]:
        """The wire story of one picture on one direction: thumb, header, chunk, complete..."""
        out = []
        for msg in self.between(a, b):
            if getattr(msg, "image_id", None) == image_id:
                out.append(msg.TAG)
        return out


def thumbnail_first(log: Iterable[Delivered]) -> bool:
    """No original's header or chunk reaches a device before that device had its thumbnail.

    A device "has" a thumbnail it received on any link, or of a picture it owns.
    """
    knows: set[tuple[str, str]] = set()  # (device name, image id)
    opened: set[tuple[str, str, str]] = set()  # headers that passed the check
    for d in log:
        msg = d.msg
        if isinstance(msg, ThumbnailOffer):
            knows.add((d.dst, msg.image_id))
        elif isinstance(msg, OriginalHeader):
            if (d.dst, msg.image_id) not in knows and device_id(d.dst) != msg.owner:
                return False
            opened.add((d.src, d.dst, msg.image_id))
        elif isinstance(msg, Chunk) and (d.src, d.dst, msg.image_id) not in opened:
            return False
    return True


def held_plaintext(owner: MemoryStore, holder: MemoryStore, image_id: str) -> bytes | None:
    """What ``holder`` holds of ``owner``'s picture, opened with the owner's key (None: nothing
    held, or it does not open to that picture).  The holder itself cannot do this."""
    held = holder.held(image_id)
    if held is None:
        return None
    sealed = holder.read_held(image_id, 0, held.size)
    try:
        plain = owner.open_sealed(image_id, 0, sealed)
    except StoreError:
        return None
    return plain if hashlib.sha256(plain).hexdigest() == image_id else None
