"""A lying peer (issue 14): a device that runs the real node but lies on the wire.

The liar's node is untouched; the world hands every frame it pulls from the
liar to ``Liar.on_pull``, which may rewrite it, leave it out (the lane is used
as if it went), or slip extra frames in beside it (``World.slip``), the way a
compromised or buggy device could.  Every choice comes from the liar's own
random, seeded from the scenario, so a run without lies draws exactly what it
drew before lies existed, and a run with them replays byte for byte.

What the honest devices must still keep (sim/invariants.py): no picture lost,
read-outs exact or failed with a reason, cards within capacity, and a liar cut
off with a typed RemoteProtocolError for every lie an honest node can see
through at once (``Lie.must_cut``: STORED early, STORED naming the wrong
digest, an accept that reserves too little).  An honest node may cut the liar
off only after the liar lied to it; an honest node refusing an honest peer is
still the "protocol-error" violation.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from protocol.codec import PREFIX, decode_frame, encode
from protocol.errors import RemoteProtocolError
from protocol.messages import (
    Catalog,
    Chunk,
    DisperseAccept,
    DisperseReject,
    DisperseRequest,
    Hello,
    Message,
    OriginalComplete,
    OriginalHeader,
    Ping,
    Pong,
    Purpose,
    Stored,
    ThumbnailOffer,
    TransferFailed,
)
from protocol.store import DispersalState, Where

if TYPE_CHECKING:
    from sim.world import World

LIE_RATE = 0.3  # of the frames a lie could bend, the share it bends
LIE_BUDGET = 6  # lies of each kind per run: a liar that never stops keeps the mesh from quiet


@dataclass(frozen=True, slots=True)
class Lie:
    """One lie on its way to an honest device.

    ``valid``: whether it is still the lie it was meant to be when it lands (a STORED
    meant to come early is no longer early once the owner finished sending); a lie no
    longer valid is not delivered.  ``must_cut``: the receiver must refuse it with a
    RemoteProtocolError in the very delivery (checked as it lands).
    """

    kind: str
    what: str
    valid: Callable[[], bool] | None = None
    must_cut: Callable[[], bool] | None = None


class Liar:
    """The lies of one device; the world calls ``on_pull`` and ``heard`` only when there is one."""

    def __init__(self, world: World, index: int, lies: tuple[str, ...]) -> None:
        self.world = world
        self.index = index
        self.lies = frozenset(lies)
        self.rng = random.Random(f"liar:{world.scenario.seed}:{index}")
        self.budget = dict.fromkeys(self.lies, LIE_BUDGET)
        self.lied_to: set[int] = set()  # honest devices that heard a lie from us
        # (owner, image id, connection epoch) whose DISPERSE stream to us has ended (its
        # complete or failure pulled): a STORED from us is no longer early.
        self._ended: set[tuple[int, str, int]] = set()
        self._asked: dict[str, int] = {}  # image id -> size an owner asked us to hold
        self._pictures: list[str] = []  # image ids heard of, for STORED of the never sent
        self._sizes: dict[str, int] = {}  # image id -> size, from thumbnails heard

    # --- what the world tells the liar ------------------------------------------------------

    def on_pull(self, src: int, dst: int, frame: bytes) -> tuple[bytes | None, Lie | None]:
        """A frame pulled from ``src`` for ``dst``: the frame to deliver (None: left out), and
        the lie it now is (None: the truth)."""
        if dst == self.index:
            self._note_to_us(src, frame)
            return frame, None
        if src != self.index or not any(self.budget.values()):
            return frame, None
        msg = decode_frame(memoryview(frame)[PREFIX:])
        if isinstance(msg, Ping | Pong) or self.rng.random() >= LIE_RATE:
            return frame, None
        return self._bend(dst, msg, frame)

    def heard(self, src: int, frame: bytes) -> None:
        """A frame from honest ``src`` reached us: a dispersal header is a chance to lie early."""
        if not self._can("stored-early"):
            return
        msg = decode_frame(memoryview(frame)[PREFIX:])
        if not isinstance(msg, OriginalHeader) or msg.purpose is not Purpose.DISPERSE:
            return
        if self.rng.random() >= 0.5:
            return
        conn = self.world.conn_from[src][self.index]
        assert conn is not None
        key = (src, msg.image_id, conn.epoch)
        owner = self.world.devices[src]

        def early() -> bool:
            return key not in self._ended

        def must_cut() -> bool:
            return early() and self._owner_lists_us(owner, msg.image_id)

        self._slip(src, Stored(msg.image_id, msg.digest), Lie("stored-early", msg.image_id[:12],
                                                              early, must_cut))

    def excuses(self, src: int, dst: int, exc: RemoteProtocolError) -> bool:
        """A node refused a frame: fine if the liar sent it to a device it lied to, or if it is
        the liar's own node refusing what its lies led an honest peer to send."""
        liar_end = src if src == self.index else dst if dst == self.index else None
        other = dst if src == self.index else src
        if liar_end is None or other not in self.lied_to:
            return False
        side = "cut_off" if src == self.index else "confused"
        self.world.metrics.count(f"liar.{side}.{exc.code}")
        return True

    # --- the lies ---------------------------------------------------------------------------

    def _note_to_us(self, src: int, frame: bytes) -> None:
        msg = decode_frame(memoryview(frame)[PREFIX:])
        if isinstance(msg, OriginalComplete | TransferFailed) and msg.purpose is Purpose.DISPERSE:
            conn = self.world.conn_from[src][self.index]
            assert conn is not None
            self._ended.add((src, msg.image_id, conn.epoch))
        elif isinstance(msg, DisperseRequest):
            self._asked[msg.image_id] = msg.size
        elif isinstance(msg, ThumbnailOffer) and msg.image_id not in self._sizes:
            self._sizes[msg.image_id] = msg.size
            self._pictures.append(msg.image_id)

    def _owner_lists_us(self, owner_dev: object, image_id: str) -> bool:
        """The owner's list names us for it, and its original is still on its card: a STORED
        from us for it is believed unless a check refuses it."""
        from sim.devices import Device

        assert isinstance(owner_dev, Device)
        store = owner_dev.store
        me = self.world.devices[self.index].device_id
        record = store.image(image_id)
        return (
            record is not None
            and record.where is Where.LOCAL
            and any(
                e.holder == me and e.state is not DispersalState.COLLECTING
                for e in store.dispersion(image_id)
            )
        )

    def _can(self, kind: str) -> bool:
        return self.budget.get(kind, 0) > 0

    def _told(self, dst: int, lie: Lie) -> Lie:
        self.budget[lie.kind] -= 1
        self.lied_to.add(dst)
        self.world.metrics.count(f"liar.told.{lie.kind}")
        self.world.trace(f"{self.world.t!r} LIE {self.index} {dst} {lie.kind} {lie.what}\n")
        return lie

    def _slip(self, dst: int, msg: Message, lie: Lie) -> None:
        self.world.wire.slip(self.index, dst, encode(msg), self._told(dst, lie))

    def _other_digest(self, digest: str) -> str:
        return hashlib.sha256(f"not {digest} {self.rng.random()}".encode()).hexdigest()

    def _bend(self, dst: int, msg: Message, frame: bytes) -> tuple[bytes | None, Lie | None]:
        can, rng = self._can, self.rng
        owner = self.world.devices[dst]
        if isinstance(msg, Stored) and can("stored-wrong-digest"):
            lie = Lie(
                "stored-wrong-digest",
                msg.image_id[:12],
                must_cut=lambda: self._owner_lists_us(owner, msg.image_id),
            )
            bent = replace(msg, digest=self._other_digest(msg.digest))
            return encode(bent), self._told(dst, lie)
        if isinstance(msg, Chunk) and can("corrupt-chunk"):
            data = bytearray(msg.data)
            at = rng.randrange(len(data))
            data[at] ^= 0xFF
            return encode(replace(msg, data=bytes(data))), self._told(
                dst, Lie("corrupt-chunk", f"{msg.image_id[:12]}@{msg.offset + at}")
            )
        if isinstance(msg, Chunk) and can("partial"):
            sizes = self._sizes.get(msg.image_id)
            if msg.offset > 0 and (sizes is None or msg.offset + len(msg.data) >= sizes // 2):
                return None, self._told(dst, Lie("partial", f"{msg.image_id[:12]}@{msg.offset}"))
        if isinstance(msg, Hello | DisperseReject) and can("room"):
            usage = self.world.devices[self.index].store.usage()
            free = 0 if usage.free > 0 and rng.random() < 0.5 else usage.capacity * 4
            return encode(replace(msg, free=free)), self._told(dst, Lie("room", f"free={free}"))
        if isinstance(msg, DisperseAccept) and can("accept"):
            if rng.random() < 0.5 and msg.reservation > 0:
                lie = Lie(
                    "accept",
                    f"{msg.image_id[:12]} reserving {msg.reservation - 1}",
                    must_cut=lambda: self._owner_lists_us(owner, msg.image_id),
                )
                return encode(replace(msg, reservation=msg.reservation - 1)), self._told(dst, lie)
            bent_reject = DisperseReject(msg.image_id, "my card is full", 0)
            return encode(bent_reject), self._told(
                dst, Lie("accept", f"{msg.image_id[:12]} rejected after all")
            )
        if isinstance(msg, DisperseReject) and can("accept") and msg.image_id in self._asked:
            size = self._asked[msg.image_id]
            return encode(DisperseAccept(msg.image_id, size, 0)), self._told(
                dst, Lie("accept", f"{msg.image_id[:12]} accepted without room")
            )
        if isinstance(msg, OriginalHeader) and can("other-picture"):
            others = [
                p for p in self._pictures
                if p != msg.image_id and self._sizes[p] != msg.size and self._sizes[p] >= msg.offset
            ]
            if others:
                other = others[rng.randrange(len(others))]
                bent_header = replace(msg, size=self._sizes[other])
                return encode(bent_header), self._told(
                    dst, Lie("other-picture", f"{msg.image_id[:12]} sized as {other[:12]}")
                )
        if isinstance(msg, OriginalHeader) and can("out-of-order"):
            return None, self._told(dst, Lie("out-of-order", f"header of {msg.image_id[:12]} left out"))
        if isinstance(msg, Catalog) and can("out-of-order"):
            self._slip(dst, msg, Lie("out-of-order", "a second catalog"))
            return frame, None
        if can("stored-never-sent") and self._pictures and rng.random() < 0.3:
            image_id = self._pictures[rng.randrange(len(self._pictures))]
            self._slip(
                dst,
                Stored(image_id, self._other_digest(image_id)),
                Lie("stored-never-sent", image_id[:12]),
            )
            return frame, None
        if can("replay") and not isinstance(msg, Hello):
            self._slip(dst, msg, Lie("replay", msg.TAG))
            return frame, None
        return frame, None
