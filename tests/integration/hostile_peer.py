"""A scripted, paired peer for the hostile-peer and live-fuzz tests, and the card checks they share.

``ScriptedPeer`` opens a real mutual-TLS connection to a running `cammesh node` with a
paired identity (tests/integration/devices.py makes the cards), then speaks the real codec
frame by frame -- or sends whatever bytes a test wants.  ``card_state`` reads a card a node
is running on and checks it: every original and held copy hashes to its id, and the room
the node counts equals the bytes on disk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import trio

from mesh import tls
from mesh.card_commands import read_listing
from mesh.identity import Identity
from mesh.pairing import load_membership
from protocol.codec import FrameDecoder, encode
from protocol.errors import RemoteProtocolError
from protocol.messages import (
    PROTOCOL_VERSION,
    Catalog,
    Error,
    Hello,
    Message,
    Role,
)
from protocol.store import Where
from tests.integration.devices import NodeCard
from tests.integration.nodes import WAIT_S

M = TypeVar("M", bound=Message)


class PeerClosed(AssertionError):
    """The node closed the connection; ``error`` is the Error frame it sent first, if any."""

    def __init__(self, error: Error | None) -> None:
        super().__init__(f"the node closed the connection ({error})")
        self.error = error


@dataclass
class ScriptedPeer:
    """One paired connection a test drives by hand; ``received`` keeps every message read."""

    stream: tls.PeerStream
    identity: Identity
    decoder: FrameDecoder = field(default_factory=FrameDecoder)
    received: list[Message] = field(default_factory=list)
    error: Error | None = None
    closed: bool = False

    @classmethod
    async def connect(cls, card: Path, port: int, *, host: str = "127.0.0.1") -> ScriptedPeer:
        identity = Identity.load(card)
        stream = await tls.connect(identity, load_membership(card), host, port)
        return cls(stream, identity)

    @property
    def device_id(self) -> str:
        return self.identity.device_id

    async def send(self, *messages: Message) -> None:
        await self.send_raw(b"".join(encode(m) for m in messages))

    async def send_raw(self, data: bytes) -> None:
        """Send bytes; a node that already hung up makes this raise ``PeerClosed``."""
        try:
            with trio.fail_after(WAIT_S):
                await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.closed = True
            raise PeerClosed(self.error) from exc

    async def receive(self, *, timeout: float = WAIT_S) -> Message | None:
        """The node's next message; None when nothing came within ``timeout``.

        Raises ``PeerClosed`` once the node has closed the connection.  Pings are not
        answered (a concurrent send would race the test's own); liveness is any byte heard.
        """
        with trio.move_on_after(timeout):
            while True:
                msg = self.decoder.next_message()
                if msg is not None:
                    self.received.append(msg)
                    if isinstance(msg, Error):
                        self.error = msg
                    return msg
                if self.closed:
                    raise PeerClosed(self.error)
                try:
                    data = await self.stream.receive_some(1 << 16)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                if not data:
                    self.closed = True
                    continue
                self.decoder.feed(data)
        return None

    async def expect(self, kind: type[M], where: Callable[[M], bool] = lambda m: True, *,
                     timeout: float = WAIT_S) -> M:
        """Read until a message of ``kind`` that satisfies ``where``; fail if none comes."""
        with trio.fail_after(timeout):
            while True:
                msg = await self.receive(timeout=timeout)
                if isinstance(msg, kind) and where(msg):
                    return msg

    async def handshake(self, *, role: Role = Role.DESK, capacity: int = 0, free: int = 0,
                        seen: dict[str, int] | None = None) -> Hello:
        """Hello and Catalog both ways; returns the node's Hello."""
        await self.send(
            Hello(self.device_id, "scripted", role, PROTOCOL_VERSION, (), capacity, free),
            Catalog(seen or {}),
        )
        hello = next((m for m in self.received if isinstance(m, Hello)), None)
        if hello is None:
            hello = await self.expect(Hello)
        if not any(isinstance(m, Catalog) for m in self.received):
            await self.expect(Catalog)
        return hello

    async def cut_off(self, *, timeout: float = WAIT_S) -> Error | None:
        """Read until the node closes the connection; returns its Error frame, if it sent one."""
        try:
            with trio.fail_after(timeout):
                while True:
                    await self.receive(timeout=timeout)
        except PeerClosed as closed:
            return closed.error
        except RemoteProtocolError:  # the node's bytes are not ours to doubt here
            raise

    async def aclose(self) -> None:
        await self.stream.aclose()


# --- what a card holds ----------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def bytes_on_disk(card: Path) -> int:
    return sum(p.stat().st_size for folder in ("originals", "held", "smaller", "partial")
               for p in (card / folder).rglob("*") if p.is_file())


@dataclass(frozen=True, slots=True)
class CardState:
    """The parts of a card that matter for not losing a picture, for before/after comparison."""

    pictures: frozenset[tuple[str, str]]  # (image id, where)
    held: frozenset[tuple[str, str]]  # (image id, owner)
    dispersion: frozenset[tuple[str, str, str]]  # (image id, holder, state)


def card_state(device: NodeCard) -> CardState:
    """Read the card of a running node and check it: every LOCAL original and every held copy
    is on disk and hashes to its id, and the node's count of used bytes is the bytes on disk."""
    listing = read_listing(device.card)
    for record in listing.records:
        if record.where is Where.LOCAL:
            path = device.card / "originals" / record.image_id[:2] / record.image_id
            assert _sha256(path) == record.image_id, f"{device.name}: {record.image_id[:8]} corrupt"
    for held in listing.held:
        path = device.card / "held" / held.image_id
        assert _sha256(path) == held.digest, f"{device.name}: held {held.image_id[:8]} corrupt"
    used = device.running.ask({"op": "status"})["used"]
    assert used == bytes_on_disk(device.card), (
        f"{device.name} counts {used} bytes used, but its card folders hold "
        f"{bytes_on_disk(device.card)}"
    )
    return CardState(
        frozenset((r.image_id, r.where.value) for r in listing.records),
        frozenset((h.image_id, h.owner) for h in listing.held),
        frozenset((e.image_id, e.holder, e.state.value) for e in listing.dispersion),
    )
