"""The transport seam: how a runtime reaches its peers, and the byte stream of each link.

A ``Transport`` dials a peer (``connect``) or serves every peer that dials (``serve``); either
way it hands the runtime a ``LinkStream``, a trio byte stream to one authenticated, pinned
peer.  The real one is mesh/tls.py's ``TlsTransport`` (TLS 1.3 over TCP, DESIGN.md "Wire").
``MemoryNetwork`` is its in-memory twin (trio's lockstep stream pairs, no sockets, no TLS), so
runtime tests whose subject is not TLS run without it; tests/mesh/test_transport_contract.py
holds both to the same behaviour: the same bytes in order, the same peer ids, the same
refusals (``NotPaired``, ``PeerIdentityMismatch``, ``TransportError``), end of stream on close.
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from mesh.errors import NotPaired, PeerIdentityMismatch, TransportError
from mesh.identity import Identity, short_id_of
from mesh.membership import Membership, PinnedPeer

PinSource = Membership | Callable[[], Membership]


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, *, default_host: str = "127.0.0.1") -> Address:
        """``HOST:PORT``, ``:PORT`` or ``[v6]:PORT``; raises ValueError with a usable message."""
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"{text!r} is not HOST:PORT (for example 192.168.1.20:7447)")
        host = host.strip("[]") or default_host
        return cls(host, int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class LinkStream(trio.abc.Stream):
    """A byte stream to one authenticated peer: ``peer`` is its pin, ``peer_members`` the
    members it knows (for learn_members), ``initiated_locally`` whether we dialled."""

    peer: PinnedPeer
    peer_members: tuple[PinnedPeer, ...]
    initiated_locally: bool
    address: str

    @property
    def peer_id(self) -> str:
        return self.peer.device_id

    @abc.abstractmethod
    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """As trio's, always ``bytes`` (b"" at the end of the stream)."""


Handler = Callable[[LinkStream], Awaitable[object]]


class Transport(abc.ABC):
    """How one device reaches its peers (a seam, as trio's SocketFactory is one)."""

    @abc.abstractmethod
    async def connect(self, address: Address, *, expect: str | None = None) -> LinkStream:
        """Dial ``address``; ``expect`` the device id that should answer there, if known.

        Raises ``TransportError`` (unreachable: retry later), ``NotPaired`` (a device that is
        not pinned, either way) or ``PeerIdentityMismatch`` (another device than ``expect``).
        """

    @abc.abstractmethod
    async def serve(
        self, handler: Handler, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run ``handler(stream)`` for each paired device that dials, until cancelled; the
        stream is closed when the handler returns.  ``task_status.started`` gets the port."""


# --- the in-memory twin ----------------------------------------------------------------------


class MemoryNetwork:
    """Devices on one in-memory network: each ``transport`` serves on a port of its own."""

    def __init__(self) -> None:
        self._serving: dict[int, _Served] = {}
        self._ports = itertools.count(50_000)

    def transport(self, identity: Identity, pins: PinSource) -> MemoryTransport:
        """The transport of the device ``identity``, trusting the devices ``pins`` names."""
        return MemoryTransport(self, identity, pins)

    def _open(self, served: _Served) -> int:
        port = next(self._ports)
        self._serving[port] = served
        return port

    def _close(self, port: int) -> None:
        self._serving.pop(port, None)


@dataclass(slots=True)
class _Served:
    transport: MemoryTransport
    nursery: trio.Nursery
    handler: Handler


class MemoryTransport(Transport):
    """One device on a ``MemoryNetwork``: pinning is checked as TLS checks it, both ways."""

    def __init__(self, network: MemoryNetwork, identity: Identity, pins: PinSource) -> None:
        self.network = network
        self.identity = identity
        self._pins = pins

    def pins(self) -> Membership:
        return self._pins() if callable(self._pins) else self._pins

    async def connect(self, address: Address, *, expect: str | None = None) -> LinkStream:
        from trio.testing import lockstep_stream_pair  # tests' machinery, not the node's

        await trio.lowlevel.checkpoint()
        served = self.network._serving.get(address.port)
        if served is None:
            raise TransportError(f"cannot reach {address} (nothing serves there); it will be retried")
        ours, theirs = self.pins(), served.transport.pins()
        me, peer_id = self.identity.device_id, served.transport.identity.device_id
        peer, us = ours.pinned(peer_id), theirs.pinned(me)
        # The messages are TLS's own (mesh/tls.py), so a log reads the same either way.
        if peer is None:
            raise NotPaired(f"the device at {address} presented a certificate that is not pinned "
                            "here: it is not paired with this device — pair them first")
        if us is None:
            raise NotPaired(f"the device at {address} refused our certificate: it has not paired "
                            "with this device — pair them first")
        if expect is not None and peer_id != expect:
            raise PeerIdentityMismatch(
                f"the device at {address} is {peer.name} ({peer.short_id}), not the expected "
                f"{short_id_of(expect)}: discovery or --peer points elsewhere"
            )
        if ours.mesh_hash != theirs.mesh_hash:
            raise NotPaired(f"{peer.name} ({peer.short_id}) at {address} belongs to another mesh")
        near, far = lockstep_stream_pair()
        dialled = MemoryLinkStream(near, peer=peer, peer_members=theirs.peers,
                                   initiated_locally=True, address=str(address))
        accepted = MemoryLinkStream(far, peer=us, peer_members=ours.peers,
                                    initiated_locally=False, address=f"memory:{me[:12]}")
        served.nursery.start_soon(_handle, served.handler, accepted)
        return dialled

    async def serve(
        self, handler: Handler, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with trio.open_nursery() as nursery:
            port = self.network._open(_Served(self, nursery, handler))
            try:
                task_status.started(port)
                await trio.sleep_forever()
            finally:
                self.network._close(port)


async def _handle(handler: Handler, stream: LinkStream) -> None:
    try:
        await handler(stream)
    finally:
        await stream.aclose()


class MemoryLinkStream(LinkStream):
    """One end of an in-memory link: a lockstep stream (no buffer: a send waits for the
    peer's read, as a full socket would) with the peer's pin."""

    def __init__(
        self, stream: trio.abc.Stream, *, peer: PinnedPeer, peer_members: tuple[PinnedPeer, ...],
        initiated_locally: bool, address: str,
    ) -> None:
        self._stream = stream
        self.peer = peer
        self.peer_members = peer_members
        self.initiated_locally = initiated_locally
        self.address = address

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return bytes(await self._stream.receive_some(max_bytes))

    async def aclose(self) -> None:
        await self._stream.aclose()
