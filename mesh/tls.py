"""Mutual TLS 1.3 between paired devices, verified by pinning (DESIGN.md, "Wire").

Each side presents its self-signed certificate; the trust store is exactly the pinned
peers' certificates (each is its own CA), so an unpaired device fails the handshake.
After it, the peer certificate's SHA-256 must be a pinned device id (a pinned device
cannot mint itself a second identity under its own certificate), and both sides swap a
short hello — a verdict, the mesh hash, and the members each knows — so that a refusal
reaches the other side as a reason rather than a bare reset, and so that members who
joined through another device become known (mesh/pairing.py).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import trio

from mesh.errors import NotPaired, PairingError, PeerIdentityMismatch, TransportError
from mesh.identity import Identity, device_id_of, short_id_of
from mesh.membership import Membership, PinnedPeer
from mesh.transport import Address, LinkStream, PinSource, Transport

log = logging.getLogger("cammesh.tls")

HANDSHAKE_TIMEOUT = 10.0  # TLS handshake plus hello, per connection
CLOSE_TIMEOUT = 2.0  # a polite close_notify; after it, the socket is just dropped
HELLO_VERSION = 1
MAX_HELLO = 512 * 1024  # 256 members' certificates fit comfortably
NOTSENT_LOWAT = 32 * 1024  # unsent bytes the kernel may hold beyond the frame being written
RECORD_SIZE = 16 * 1024  # the most plaintext one TLS record carries

Handler = Callable[["PeerStream"], Awaitable[object]]


def keep_connection(local_id: str, peer_id: str, *, initiated_locally: bool) -> bool:
    """Of two connections between one pair of devices, keep the one the smaller device id began.

    Both devices evaluate this on each connection and reach the same verdict, so when they
    dial each other at once exactly one connection survives.
    """
    initiator = local_id if initiated_locally else peer_id
    return initiator == min(local_id, peer_id)


@dataclass(frozen=True, slots=True)
class _Hello:
    ok: bool
    reason: str
    mesh_hash: str
    members: tuple[PinnedPeer, ...]


class PeerStream(LinkStream):
    """An authenticated TLS stream to one pinned peer; ``peer_id`` is its device id."""

    def __init__(
        self,
        ssl_stream: trio.SSLStream[trio.SocketStream],
        *,
        peer: PinnedPeer,
        peer_members: tuple[PinnedPeer, ...],
        initiated_locally: bool,
        address: str,
        pending: bytes,
    ) -> None:
        self._ssl = ssl_stream
        self.peer = peer
        self.peer_members = peer_members  # the members the peer knows (for learn_members)
        self.initiated_locally = initiated_locally
        self.address = address
        self._pending = pending

    @property
    def socket_stream(self) -> trio.SocketStream:
        """The TCP stream under the TLS, for socket options the runtime wants."""
        return self._ssl.transport_stream

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._ssl.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._ssl.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._pending:
            n = len(self._pending) if max_bytes is None else max_bytes
            data, self._pending = self._pending[:n], self._pending[n:]
            await trio.lowlevel.checkpoint()
            return data
        data = await self._ssl.receive_some(max_bytes)
        # OpenSSL hands out one record (16 KiB) per read: take the records that the same
        # socket read brought in now, not one trip through the event loop each.
        limit = max_bytes or RECORD_SIZE * 16
        parts = [data]
        size = len(data)
        ssl_object = getattr(self._ssl, "_ssl_object", None)
        while data and size < limit and isinstance(ssl_object, ssl.SSLObject):
            try:
                data = ssl_object.read(limit - size)
            except ssl.SSLError:  # no whole record left (or an alert): the next read says
                break
            parts.append(data)
            size += len(data)
        return b"".join(parts)

    async def aclose(self) -> None:
        """Send close_notify if the peer takes it within ``CLOSE_TIMEOUT``, then drop the socket."""
        with trio.move_on_after(CLOSE_TIMEOUT) as scope:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self._ssl.aclose()
        if scope.cancelled_caught:
            await trio.aclose_forcefully(self._ssl.transport_stream)


def _context(identity: Identity, pins: Membership, *, server_side: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False  # devices have no host names; the pins say who they are
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(identity.cert_path, identity.key_path)
    if pins.peers:
        ctx.load_verify_locations(cadata=pins.ca_bundle())
    return ctx


def _tune(stream: trio.SocketStream) -> None:
    """TCP keepalive, so a peer that vanished (Wi-Fi out of range) is noticed within ~25 s;
    and a small unsent backlog, so a thumbnail pulled now is not queued in the kernel
    behind seconds of an original on a slow link (DESIGN.md, "Thumbnails first")."""
    sock = stream.socket
    with contextlib.suppress(OSError):  # a socket already reset by the peer
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    options = (
        ("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3),
        ("TCP_NOTSENT_LOWAT", NOTSENT_LOWAT),
    )
    for name, value in options:
        if hasattr(socket, name):
            with contextlib.suppress(OSError):  # not every kernel has each option
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


def _address(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "?"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _explain(exc: BaseException, address: str) -> Exception:
    """Turn a TLS failure into a typed error whose message tells the user what to do."""
    cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) else exc
    reason = getattr(cause, "reason", None) or str(cause or exc)
    if isinstance(cause, ssl.SSLCertVerificationError):
        return NotPaired(
            f"the device at {address} presented a certificate that is not pinned here "
            f"({cause.verify_message}): it is not paired with this device — pair them first"
        )
    if reason in {"TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_BAD_CERTIFICATE",
                  "TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_CERTIFICATE_UNKNOWN"}:
        return NotPaired(
            f"the device at {address} refused our certificate ({reason}): "
            "it has not paired with this device — pair them first"
        )
    if reason in {"PEER_DID_NOT_RETURN_A_CERTIFICATE", "NO_CERTIFICATE_RETURNED"}:
        return NotPaired(f"the device at {address} presented no certificate: it is not a cammesh peer")
    return TransportError(f"TLS with {address} failed ({reason}); it will be retried")


async def _send_hello(stream: trio.SSLStream[trio.SocketStream], hello: _Hello) -> None:
    body = msgpack.packb(
        {
            "v": HELLO_VERSION,
            "ok": hello.ok,
            "reason": hello.reason,
            "mesh": hello.mesh_hash,
            "members": [m.to_wire() for m in hello.members],
        },
        use_bin_type=True,
    )
    await stream.send_all(struct.pack(">I", len(body)) + body)


async def _receive_hello(
    stream: trio.SSLStream[trio.SocketStream], address: str
) -> tuple[_Hello, bytes]:
    """Read the peer's hello; return it and whatever bytes followed it."""
    buf = bytearray()
    need = 4
    length: int | None = None
    while True:
        if length is None and len(buf) >= 4:
            (length,) = struct.unpack(">I", buf[:4])
            if length > MAX_HELLO:
                raise TransportError(f"{address} sent an oversized hello ({length} bytes)")
            need = 4 + length
        if len(buf) >= need and length is not None:
            break
        data = await stream.receive_some()
        if not data:
            raise TransportError(f"{address} closed the connection during the hello")
        buf += data
    try:
        raw: Any = msgpack.unpackb(bytes(buf[4:need]), raw=False)
        if not isinstance(raw, dict) or raw.get("v") != HELLO_VERSION:
            raise ValueError("not a version 1 hello")
        members = raw.get("members", [])
        if not isinstance(members, list):
            raise ValueError("members is not a list")
        hello = _Hello(
            ok=raw["ok"] is True,
            reason=str(raw.get("reason", ""))[:1024],
            mesh_hash=str(raw["mesh"]),
            members=tuple(PinnedPeer.from_wire(m) for m in members),
        )
    except (ValueError, KeyError, TypeError, PairingError, msgpack.UnpackException) as exc:
        raise TransportError(f"{address} sent a malformed hello ({exc})") from exc
    return hello, bytes(buf[need:])


async def _send_pending_alert(stream: trio.SSLStream[trio.SocketStream]) -> None:
    """Send the TLS alert OpenSSL wrote when it failed the handshake, so the peer learns why.

    trio marks the stream broken without flushing that alert (it sits in the private
    outgoing memory BIO); without it the peer sees a bare EOF instead of "unknown ca".
    """
    outgoing = getattr(stream, "_outgoing", None)
    if not isinstance(outgoing, ssl.MemoryBIO):
        return
    data = outgoing.read()
    if data:
        with trio.move_on_after(1.0), contextlib.suppress(trio.BrokenResourceError, OSError):
            await stream.transport_stream.send_all(data)


async def _linger(stream: trio.SSLStream[trio.SocketStream]) -> None:
    """After a refusal, wait briefly for the peer to read it and hang up.

    Closing with the peer's bytes unread makes the kernel send a reset, which can
    destroy our reason before the peer reads it.
    """
    with trio.move_on_after(1.0), contextlib.suppress(trio.BrokenResourceError, ssl.SSLError):
        while await stream.receive_some():
            pass


async def _establish(
    tcp: trio.SocketStream,
    identity: Identity,
    pins: Membership,
    *,
    server_side: bool,
    expect: str | None,
) -> PeerStream:
    address = _address(tcp)
    _tune(tcp)
    ssl_stream = trio.SSLStream(tcp, _context(identity, pins, server_side=server_side),
                                server_side=server_side)
    try:
        await ssl_stream.do_handshake()
        der = ssl_stream.getpeercert(binary_form=True)
        if der is None:
            raise NotPaired(f"the device at {address} presented no certificate")
        peer_id = device_id_of(der)
        peer = pins.pinned(peer_id)
        refusal = ""
        if peer is None:
            refusal = f"device {short_id_of(peer_id)} is not paired with {identity.name}"
        elif expect is not None and peer_id != expect:
            refusal = f"expected device {short_id_of(expect)}, got {short_id_of(peer_id)}"
        # The dialling side speaks first and the answering side reads before it writes,
        # so neither blocks on a full buffer while the other is not reading.
        hello = pending = None
        if server_side:
            hello, pending = await _receive_hello(ssl_stream, address)
            if not refusal and hello.ok and hello.mesh_hash != pins.mesh_hash:
                refusal = f"{identity.name} belongs to another mesh"
        mine = _Hello(not refusal, refusal, pins.mesh_hash, () if refusal else pins.peers)
        await _send_hello(ssl_stream, mine)
        if refusal:
            await _linger(ssl_stream)
            if peer is None:
                raise NotPaired(
                    f"refused the device at {address} ({short_id_of(peer_id)}): it is not "
                    "pinned here, though a pinned device signed its certificate"
                )
            if expect is not None and peer_id != expect:
                raise PeerIdentityMismatch(
                    f"the device at {address} is {peer.name} ({peer.short_id}), not the "
                    f"expected {short_id_of(expect)}: discovery or --peer points elsewhere"
                )
            raise NotPaired(f"refused {peer.name} ({peer.short_id}) at {address}: {refusal}")
        if hello is None or pending is None:
            hello, pending = await _receive_hello(ssl_stream, address)
        assert peer is not None
        if not hello.ok:
            raise NotPaired(f"{peer.name} ({peer.short_id}) at {address} refused us: {hello.reason}")
        if hello.mesh_hash != pins.mesh_hash:
            raise NotPaired(f"{peer.name} ({peer.short_id}) at {address} belongs to another mesh")
    except (trio.BrokenResourceError, ssl.SSLError) as exc:
        await _send_pending_alert(ssl_stream)
        await trio.aclose_forcefully(ssl_stream)
        raise _explain(exc, address) from exc
    except BaseException:
        await trio.aclose_forcefully(ssl_stream)
        raise
    return PeerStream(
        ssl_stream,
        peer=peer,
        peer_members=hello.members,
        initiated_locally=not server_side,
        address=address,
        pending=pending,
    )


def _current(pins: PinSource) -> Membership:
    return pins() if callable(pins) else pins


async def connect(
    identity: Identity,
    pins: PinSource,
    host: str,
    port: int,
    *,
    expect: str | None = None,
    timeout: float = HANDSHAKE_TIMEOUT,
) -> PeerStream:
    """Dial a paired device; raise ``NotPaired``, ``PeerIdentityMismatch`` or ``TransportError``.

    ``expect`` is the device id discovery announced at that address, if any.
    """
    where = f"{host}:{port}"
    try:
        with trio.fail_after(timeout):
            try:
                tcp = await trio.open_tcp_stream(host, port)
            except OSError as exc:
                raise TransportError(f"cannot reach {where} ({exc}); it will be retried") from exc
            return await _establish(
                tcp, identity, _current(pins), server_side=False, expect=expect
            )
    except trio.TooSlowError as exc:
        raise TransportError(f"{where} did not complete TLS within {timeout:g} s") from exc


async def serve(
    identity: Identity,
    pins: PinSource,
    handler: Handler,
    *,
    host: str | None,
    port: int,
    timeout: float = HANDSHAKE_TIMEOUT,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept paired devices and run ``handler(stream)`` for each; log and drop everyone else.

    ``pins`` may be a callable, read again for every connection, so devices paired while
    serving are accepted. ``task_status.started`` gets the listeners (see ``listening_port``).
    The stream is closed when the handler returns; exceptions from it propagate.
    """

    async def accept(tcp: trio.SocketStream) -> None:
        address = _address(tcp)
        try:
            with trio.fail_after(timeout):
                stream = await _establish(
                    tcp, identity, _current(pins), server_side=True, expect=None
                )
        except trio.TooSlowError:
            log.warning("dropped %s: no TLS handshake within %g s", address, timeout)
            await trio.aclose_forcefully(tcp)
            return
        except (NotPaired, PeerIdentityMismatch, TransportError) as exc:
            log.warning("refused connection from %s: %s", address, exc)
            return
        except Exception:
            # A bug met by one hostile connection must not stop the server for every peer.
            log.exception("dropped %s after an unexpected error in the TLS setup", address)
            await trio.aclose_forcefully(tcp)
            return
        log.info("accepted %s (%s) from %s", stream.peer.name, stream.peer.short_id, address)
        try:
            await handler(stream)
        finally:
            await stream.aclose()

    await trio.serve_tcp(accept, port, host=host, task_status=task_status)


class TlsTransport(Transport):
    """The real transport: mutual TLS 1.3 over TCP, pinned both ways (``connect``, ``serve``)."""

    def __init__(
        self, identity: Identity, pins: PinSource, *, host: str | None, port: int,
        timeout: float = HANDSHAKE_TIMEOUT,
    ) -> None:
        self.identity = identity
        self.pins = pins
        self.host = host
        self.port = port
        self.timeout = timeout

    async def connect(self, address: Address, *, expect: str | None = None) -> LinkStream:
        return await connect(self.identity, self.pins, address.host, address.port,
                             expect=expect, timeout=self.timeout)

    async def serve(
        self, handler: Callable[[LinkStream], Awaitable[object]], *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(functools.partial(
                serve, self.identity, self.pins, handler, host=self.host, port=self.port,
                timeout=self.timeout,
            ))
            task_status.started(listening_port(listeners))


def listening_port(listeners: list[trio.SocketListener]) -> int:
    """The TCP port ``serve`` is listening on (useful when asked for port 0)."""
    return int(listeners[0].socket.getsockname()[1])
