"""The transport contract (mesh/transport.py): the same tests over real TLS on loopback and over
the in-memory twin, so a runtime test that uses the twin tests what TLS would do."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio

from mesh import tls
from mesh.errors import NotPaired, PeerIdentityMismatch, TransportError
from mesh.identity import Identity
from mesh.membership import Membership, PinnedPeer
from mesh.transport import Address, LinkStream, MemoryNetwork, Transport
from protocol.messages import Role

MESH = secrets.token_hex(16)

Make = Callable[[Identity, Membership], Transport]


def pins(*idents: Identity, mesh: str = MESH) -> Membership:
    return Membership(mesh, tuple(
        PinnedPeer.from_cert(i.cert_pem, name=i.name, role=Role.CAMERA) for i in idents
    ))


@pytest.fixture(scope="module")
def devices(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Identity]:
    folder = tmp_path_factory.mktemp("identities")
    return {n: Identity.create(folder / n, name=f"cam {n}") for n in ("a", "b", "c")}


@pytest.fixture(params=["tls", "memory"])
def make(request: pytest.FixtureRequest) -> Iterator[Make]:
    """A transport of each kind for a device and the pins it trusts."""
    if request.param == "tls":
        yield lambda ident, trusted: tls.TlsTransport(ident, trusted, host="127.0.0.1", port=0)
    else:
        network = MemoryNetwork()
        yield network.transport


def address_of(transport: Transport, port: int) -> Address:
    return Address("127.0.0.1" if isinstance(transport, tls.TlsTransport) else "memory", port)


async def echo(stream: LinkStream) -> None:
    while data := await stream.receive_some():
        await stream.send_all(data)


async def serving(nursery: trio.Nursery, transport: Transport, handler: object = echo) -> Address:
    port: int = await nursery.start(transport.serve, handler)
    return address_of(transport, port)


async def test_bytes_go_both_ways_in_order_and_each_end_knows_the_other(
    devices: dict[str, Identity], make: Make
) -> None:
    a, b = devices["a"], devices["b"]
    accepted: list[LinkStream] = []

    async def handler(stream: LinkStream) -> None:
        accepted.append(stream)
        await echo(stream)

    async with trio.open_nursery() as nursery:
        address = await serving(nursery, make(a, pins(b)), handler)
        with trio.fail_after(20):
            stream = await make(b, pins(a)).connect(address, expect=a.device_id)
            assert (stream.peer_id, stream.initiated_locally) == (a.device_id, True)
            assert [p.device_id for p in stream.peer_members] == [b.device_id]
            payload = secrets.token_bytes(300_000)
            got = bytearray()
            async with trio.open_nursery() as inner:
                inner.start_soon(stream.send_all, payload)  # read while writing: no deadlock
                while len(got) < len(payload):
                    data = await stream.receive_some(64 * 1024)
                    assert isinstance(data, bytes) and data
                    got += data
            assert bytes(got) == payload
            await stream.aclose()
        nursery.cancel_scope.cancel()
    (theirs,) = accepted
    assert (theirs.peer_id, theirs.initiated_locally) == (b.device_id, False)
    assert [p.device_id for p in theirs.peer_members] == [a.device_id]


async def test_a_close_is_the_end_of_the_stream_at_the_other_end(
    devices: dict[str, Identity], make: Make
) -> None:
    a, b = devices["a"], devices["b"]
    heard: list[bytes] = []
    ended = trio.Event()

    async def reader(stream: LinkStream) -> None:
        while data := await stream.receive_some():
            heard.append(data)
        ended.set()

    async def closer(stream: LinkStream) -> None:
        return  # the transport closes a stream its handler is done with

    async with trio.open_nursery() as nursery:
        address = await serving(nursery, make(a, pins(b)), reader)
        with trio.fail_after(20):
            stream = await make(b, pins(a)).connect(address)
            await stream.send_all(b"last words")
            await stream.aclose()
            await ended.wait()
            with pytest.raises(trio.ClosedResourceError):
                await stream.send_all(b"after our own close")
        assert b"".join(heard) == b"last words"

        closing = make(a, pins(b))
        other = await serving(nursery, closing, closer)
        with trio.fail_after(20):
            stream = await make(b, pins(a)).connect(other)
            assert await stream.receive_some() == b""  # the peer's end closed
            await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_nobody_serving_there_is_a_transport_error(
    devices: dict[str, Identity], make: Make
) -> None:
    a, b = devices["a"], devices["b"]
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # a port nobody listens on
    dialler = make(b, pins(a))
    with pytest.raises(TransportError, match="cannot reach"):
        await dialler.connect(address_of(dialler, port))


async def test_an_unpaired_device_is_refused_whichever_side_did_not_pair(
    devices: dict[str, Identity], make: Make
) -> None:
    a, b, c = devices["a"], devices["b"], devices["c"]
    called: list[str] = []

    async def handler(stream: LinkStream) -> None:
        called.append(stream.peer_id)

    async with trio.open_nursery() as nursery:
        address = await serving(nursery, make(a, pins(b)), handler)
        with trio.fail_after(20):
            with pytest.raises(NotPaired, match="refused our certificate"):
                await make(c, pins(a)).connect(address)  # a never paired with c
            with pytest.raises(NotPaired, match="not pinned here"):
                await make(c, pins(b)).connect(address)  # c never paired with a
            with pytest.raises(NotPaired, match="another mesh"):
                await make(b, pins(a, mesh=secrets.token_hex(16))).connect(address)
        nursery.cancel_scope.cancel()
    assert called == []


async def test_the_device_at_an_address_must_be_the_one_expected(
    devices: dict[str, Identity], make: Make
) -> None:
    a, b, c = devices["a"], devices["b"], devices["c"]
    async with trio.open_nursery() as nursery:
        address = await serving(nursery, make(a, pins(b)))
        with trio.fail_after(20), pytest.raises(PeerIdentityMismatch, match="expected"):
            await make(b, pins(a, c)).connect(address, expect=c.device_id)
        nursery.cancel_scope.cancel()


async def test_pins_read_per_connection_let_in_a_device_paired_while_serving(
    devices: dict[str, Identity], make: Make
) -> None:
    a, b = devices["a"], devices["b"]
    current = [pins()]
    async with trio.open_nursery() as nursery:
        transport = make(a, lambda: current[0])  # type: ignore[arg-type]
        address = await serving(nursery, transport)
        with trio.fail_after(20):
            with pytest.raises(NotPaired):
                await make(b, pins(a)).connect(address)
            current[0] = pins(b)  # paired now
            stream = await make(b, pins(a)).connect(address)
            await stream.send_all(b"in")
            assert await stream.receive_some() == b"in"
            await stream.aclose()
        nursery.cancel_scope.cancel()


def test_the_twin_is_a_transport_with_no_sockets(tmp_path: Path) -> None:
    ident = Identity.create(tmp_path / "x", name="x")
    transport = MemoryNetwork().transport(ident, pins())
    assert isinstance(transport, Transport) and not isinstance(transport, tls.TlsTransport)
