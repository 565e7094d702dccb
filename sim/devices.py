"""One simulated device: a Node on a MemoryStore, its own random, and a clock that is a bit wrong.

The store survives a crash; the Node is volatile and rebuilt on restart.
``AuditedStore`` notes which pictures lost a copy in a step (an original freed,
a held original released) and which cards changed, so the per-step invariants
cost what the step changed, not a rescan of every card.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any

from protocol.config import NodeConfig, Policy
from protocol.messages import Role
from protocol.node import Node
from protocol.parts import Parts
from protocol.sealing import Sealer
from protocol.store import ImageRecord, Incoming
from sim.memstore import MemoryStore

EPOCH = 1_700_000_000.0  # virtual time 0 on the devices' clocks (a plausible wall time)


class AuditedStore(MemoryStore):
    """A MemoryStore that tells the world which cards changed and which image ids lost a copy."""

    def __init__(
        self, device_id: str, capacity: int, *, index: int = 0, dirty: set[int] | None = None
    ) -> None:
        super().__init__(device_id, capacity)
        self.lost_copy: list[str] = []
        # Bytes promised to incoming held originals, mirrored for the accept invariant.
        self.promised: dict[str, int] = {}
        # The world's set of cards to look at after this step: this card's index goes in
        # when it takes more room or loses a copy, so a step's checks cost what it changed.
        self.index = index
        self.dirty: set[int] = {index} if dirty is None else dirty
        self.dirty.add(index)

    def add_local(self, data: bytes, **kwargs: Any) -> ImageRecord:
        self.dirty.add(self.index)
        return super().add_local(data, **kwargs)

    def write_partial(self, image_id: str, kind: Incoming, offset: int, data: bytes) -> None:
        self.dirty.add(self.index)
        super().write_partial(image_id, kind, offset, data)

    def reserve(self, image_id: str, size: int) -> None:
        self.dirty.add(self.index)
        super().reserve(image_id, size)
        self.promised[image_id] = size

    def unreserve(self, image_id: str) -> None:
        super().unreserve(image_id)
        self.promised.pop(image_id, None)

    def finish_partial(
        self, image_id: str, kind: Incoming, digest: str, now: float, *, owner: str | None = None
    ) -> None:
        self.dirty.add(self.index)
        super().finish_partial(image_id, kind, digest, now, owner=owner)
        if kind is Incoming.HELD:
            self.promised.pop(image_id, None)

    def free_original(self, image_id: str, now: float) -> None:
        super().free_original(image_id, now)
        self.lost_copy.append(image_id)
        self.dirty.add(self.index)

    def release_held(self, image_id: str) -> None:
        super().release_held(image_id)
        self.lost_copy.append(image_id)
        self.dirty.add(self.index)

    def crash(self, rng: random.Random) -> int:
        self.dirty.add(self.index)  # a torn write moves bytes from used to still-to-come
        return super().crash(rng)


def device_id_for(seed: int, index: int) -> str:
    """A stable 64-hex device id (a real one is the SHA-256 of its certificate)."""
    return hashlib.sha256(f"cammesh-sim:{seed}:{index}".encode()).hexdigest()


@dataclass(slots=True)
class Device:
    """A device of the world; ``node`` is None while it is down (crashed)."""

    index: int
    name: str
    device_id: str
    role: Role
    store: AuditedStore
    config: NodeConfig
    rng: random.Random
    skew: float
    drift: float
    parts: Parts = field(default_factory=Parts)  # the planted bugs' classes (sim/planted.py)
    node: Node | None = None
    up: bool = True
    discoverable: bool = True
    incarnation: int = 0
    tick_at: float | None = None
    spins: int = 0  # ticks in a row after which the node's deadline was still past
    # Read-outs under way: image id -> bytes gathered so far.
    readouts: dict[str, bytearray] = field(default_factory=dict)

    def clock(self, t: float) -> float:
        """This device's idea of the time at virtual time ``t`` (fixed skew, small drift)."""
        return EPOCH + self.skew + t * (1.0 + self.drift)

    def virtual(self, local: float) -> float:
        """Virtual time at which this device's clock reads ``local``."""
        return (local - EPOCH - self.skew) / (1.0 + self.drift)

    def boot(self) -> None:
        """Build a fresh Node on the card: volatile state starts empty."""
        self.incarnation += 1
        self.tick_at = None
        self.spins = 0
        self.readouts = {}
        self.node = Node(
            self.store,
            self.config,
            rng=random.Random(f"{self.device_id}:{self.incarnation}:{self.rng.random()}"),
            parts=self.parts,
        )
        self.up = True


def make_config(
    name: str,
    role: Role,
    *,
    chunk_size: int,
    high_water: float,
    policy: str,
    replicas: int = 1,
    sealer: Sealer | None = None,
    share_marks: bool = False,
) -> NodeConfig:
    """A node's settings in the simulator; ``policy`` is what it pulls from every peer."""
    return NodeConfig(
        name=name,
        role=role,
        high_water=high_water,
        replicas=replicas,
        default_policy=Policy(policy),
        chunk_size=chunk_size,
        sealer=sealer,
        share_marks=share_marks,
    )
