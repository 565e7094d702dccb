"""Mutual TLS between paired devices on real loopback sockets: pins decide who gets in."""

from __future__ import annotations

import contextlib
import datetime
import functools
import logging
import secrets
from pathlib import Path

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from mesh import tls
from mesh.errors import NotPaired, PeerIdentityMismatch, TransportError
from mesh.identity import Identity, device_id_of, identity_dir
from mesh.pairing import Membership, PinnedPeer
from protocol.messages import Role

MESH = secrets.token_hex(16)


def pin(ident: Identity, role: Role = Role.CAMERA) -> PinnedPeer:
    return PinnedPeer.from_cert(ident.cert_pem, name=ident.name, role=role)


def pins(*idents: Identity, mesh: str = MESH) -> Membership:
    return Membership(mesh, tuple(pin(i) for i in idents))


@pytest.fixture
def devices(tmp_path: Path) -> dict[str, Identity]:
    return {n: Identity.create(tmp_path / n, name=f"cam {n}") for n in ("a", "b", "c")}


async def echo(stream: tls.PeerStream) -> None:
    while data := await stream.receive_some():
        await stream.send_all(data)


async def start_server(
    nursery: trio.Nursery, ident: Identity, membership: Membership, handler: tls.Handler = echo,
    **kw: float,
) -> int:
    listeners = await nursery.start(
        functools.partial(tls.serve, ident, membership, handler, host="127.0.0.1", port=0, **kw)
    )
    return tls.listening_port(listeners)


async def test_paired_devices_connect_and_exchange_bytes(devices: dict[str, Identity]) -> None:
    a, b = devices["a"], devices["b"]
    seen: list[str] = []

    async def handler(stream: tls.PeerStream) -> None:
        seen.append(stream.peer_id)
        assert not stream.initiated_locally
        await echo(stream)

    async with trio.open_nursery() as nursery:
        port = await start_server(nursery, a, pins(b), handler)
        stream = await tls.connect(b, pins(a), "127.0.0.1", port, expect=a.device_id)
        assert stream.peer_id == a.device_id
        assert stream.initiated_locally
        assert [p.device_id for p in stream.peer_members] == [b.device_id]
        payload = secrets.token_bytes(300_000)
        got = bytearray()
        async with trio.open_nursery() as inner:
            inner.start_soon(stream.send_all, payload)  # read while writing: no deadlock
            while len(got) < len(payload):
                got += await stream.receive_some()
        assert bytes(got) == payload
        await stream.aclose()
        nursery.cancel_scope.cancel()
    assert seen == [b.device_id]


async def test_unpaired_device_is_refused_with_a_reason_on_both_sides(
    devices: dict[str, Identity], caplog: pytest.LogCaptureFixture
) -> None:
    a, b, c = devices["a"], devices["b"], devices["c"]
    caplog.set_level(logging.WARNING, logger="cammesh.tls")
    async with trio.open_nursery() as nursery:
        port = await start_server(nursery, a, pins(b))
        # c pinned a, but a never paired with c
        with pytest.raises(NotPaired, match="refused our certificate"):
            await tls.connect(c, pins(a), "127.0.0.1", port)
        # c never paired with a: c refuses a's certificate itself
        with pytest.raises(NotPaired, match="not pinned here"):
            await tls.connect(c, pins(b), "127.0.0.1", port)
        with trio.fail_after(10):  # the server logs once it has read the alert
            while len(refusals := logged(caplog, "refused connection")) < 2:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert "not pinned here" in refusals[0]  # a's log: c's certificate is unknown
    assert "refused our certificate" in refusals[1]


def logged(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def _forge(folder: Path, cert: x509.Certificate, key: ed25519.Ed25519PrivateKey) -> Identity:
    """An identity on disk that bypasses Identity's own checks, as an attacker's would."""
    where = identity_dir(folder)
    where.mkdir(parents=True)
    (where / "device.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (where / "device.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    return Identity(folder=folder, name="forged", cert_pem=b"", cert_der=der,
                    device_id=device_id_of(der))


def _cert(subject: x509.Name, issuer: x509.Name, public: ed25519.Ed25519PublicKey,
          signer: ed25519.Ed25519PrivateKey, *, ca: bool) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(issuer).public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(2999, 1, 1, tzinfo=datetime.UTC))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(signer, None)
    )


async def test_a_certificate_claiming_another_device_is_refused(
    devices: dict[str, Identity], tmp_path: Path
) -> None:
    """An impostor copies b's name into a certificate of its own key: the pinned b does not match."""
    a, b = devices["a"], devices["b"]
    b_cert = x509.load_der_x509_certificate(b.cert_der)
    fake_key = ed25519.Ed25519PrivateKey.generate()
    fake = _forge(tmp_path / "fake", _cert(b_cert.subject, b_cert.issuer,
                                           fake_key.public_key(), fake_key, ca=True), fake_key)
    async with trio.open_nursery() as nursery:
        port = await start_server(nursery, a, pins(b))
        with pytest.raises(NotPaired):
            await tls.connect(fake, pins(a), "127.0.0.1", port)
        # and the genuine b still gets in
        stream = await tls.connect(b, pins(a), "127.0.0.1", port)
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_a_paired_device_cannot_mint_itself_a_second_identity(
    devices: dict[str, Identity], tmp_path: Path
) -> None:
    """b's certificate is a CA in a's trust store; a leaf signed by b's key still is not pinned."""
    a, b = devices["a"], devices["b"]
    b_key = serialization.load_pem_private_key(b.key_path.read_bytes(), password=None)
    assert isinstance(b_key, ed25519.Ed25519PrivateKey)
    b_cert = x509.load_der_x509_certificate(b.cert_der)
    leaf_key = ed25519.Ed25519PrivateKey.generate()
    leaf_name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "second")])
    leaf = _forge(tmp_path / "leaf", _cert(leaf_name, b_cert.subject, leaf_key.public_key(),
                                           b_key, ca=False), leaf_key)
    async with trio.open_nursery() as nursery:
        port = await start_server(nursery, a, pins(b))
        with pytest.raises(NotPaired, match="not paired"):
            await tls.connect(leaf, pins(a), "127.0.0.1", port)
        nursery.cancel_scope.cancel()


async def test_the_device_at_an_address_must_be_the_one_expected(
    devices: dict[str, Identity],
) -> None:
    a, b, c = devices["a"], devices["b"], devices["c"]
    async with trio.open_nursery() as nursery:
        port = await start_server(nursery, a, pins(b))
        with pytest.raises(PeerIdentityMismatch, match="expected"):
            await tls.connect(b, pins(a, c), "127.0.0.1", port, expect=c.device_id)
        nursery.cancel_scope.cancel()


async def test_a_device_of_another_mesh_is_refused(devices: dict[str, Identity]) -> None:
    a, b = devices["a"], devices["b"]
    async with trio.open_nursery() as nursery:
        port = await start_server(nursery, a, pins(b))
        with pytest.raises(NotPaired, match="another mesh"):
            await tls.connect(b, pins(a, mesh=secrets.token_hex(16)), "127.0.0.1", port)
        nursery.cancel_scope.cancel()


async def test_garbage_and_silence_do_not_disturb_the_server_or_its_peers(
    devices: dict[str, Identity],
) -> None:
    a, b = devices["a"], devices["b"]
    async with trio.open_nursery() as nursery:
        port = await start_server(nursery, a, pins(b), timeout=1.0)
        good = await tls.connect(b, pins(a), "127.0.0.1", port)
        await good.send_all(b"before")
        assert await good.receive_some() == b"before"

        silent = await trio.open_tcp_stream("127.0.0.1", port)
        for junk in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", secrets.token_bytes(5000),
                     b"\x16\x03\x01\xff\xff" + b"\0" * 100):
            plain = await trio.open_tcp_stream("127.0.0.1", port)
            try:
                await plain.send_all(junk)
                with trio.fail_after(10):
                    while await plain.receive_some():
                        pass  # whatever the server answers, it must then close
            except trio.BrokenResourceError:
                pass  # a reset is a close too
            await plain.aclose()
        # the silent connection is dropped once the handshake timeout passes
        with trio.fail_after(10), contextlib.suppress(trio.BrokenResourceError):
            assert await silent.receive_some() == b""
        await silent.aclose()

        await good.send_all(b"after")
        assert await good.receive_some() == b"after"
        another = await tls.connect(b, pins(a), "127.0.0.1", port)
        await another.send_all(b"new")
        assert await another.receive_some() == b"new"
        await another.aclose()
        await good.aclose()
        nursery.cancel_scope.cancel()


async def test_nobody_listening_is_a_transport_error(devices: dict[str, Identity]) -> None:
    a, b = devices["a"], devices["b"]
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # a port nobody listens on
    with pytest.raises(TransportError, match="cannot reach"):
        await tls.connect(b, pins(a), "127.0.0.1", port)


def test_tie_break_keeps_exactly_one_of_two_crossing_connections() -> None:
    small, big = "0" * 63 + "1", "f" * 64
    # the connection small -> big, seen from each end
    assert tls.keep_connection(small, big, initiated_locally=True)
    assert tls.keep_connection(big, small, initiated_locally=False)
    # the connection big -> small, seen from each end
    assert not tls.keep_connection(big, small, initiated_locally=True)
    assert not tls.keep_connection(small, big, initiated_locally=False)


async def test_bytes_right_after_the_hello_are_not_lost(devices: dict[str, Identity]) -> None:
    """The server speaks first after the hello; whatever arrived with the hello is delivered."""
    a, b = devices["a"], devices["b"]
    words = [secrets.token_bytes(n) for n in (1, 7, 70_000)]

    async def talker(stream: tls.PeerStream) -> None:
        for word in words:
            await stream.send_all(word)
        await stream.receive_some()

    async with trio.open_nursery() as nursery:
        port = await start_server(nursery, a, pins(b), talker)
        stream = await tls.connect(b, pins(a), "127.0.0.1", port)
        expected = b"".join(words)
        got = bytearray(await stream.receive_some(3))  # a short read may split what came early
        assert 0 < len(got) <= 3
        while len(got) < len(expected):
            got += await stream.receive_some()
        assert bytes(got) == expected
        await stream.aclose()
        nursery.cancel_scope.cancel()
