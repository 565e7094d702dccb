"""Find the mesh's devices on the local network with mDNS/DNS-SD, bridged into trio.

Each device advertises ``_cammesh._tcp.local.`` with TXT records: ``id`` (device id),
``mesh`` (``Membership.mesh_hash`` — a hash of the mesh id, never the id or the code),
``role``, ``v`` (protocol version) and ``port``. The sync ``Zeroconf`` runs its own
threads; its browser's callbacks only hand the service name to trio
(``TrioToken.run_sync_soon``), and names are resolved with the blocking
``get_service_info`` in trio worker threads, never on zeroconf's own threads. Our own
advertisement and other meshes' devices are ignored. Discovery only says where a device
claims to be: mesh/tls.py decides whether it is who it claims.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import re
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import ifaddr
import trio
from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

from protocol.messages import PROTOCOL_VERSION, Role

log = logging.getLogger("cammesh.discovery")

SERVICE_TYPE = "_cammesh._tcp.local."
RESOLVE_TIMEOUT_MS = 3000
REGISTER_TIMEOUT = 10.0  # zeroconf's own thread taking our records; never reached when well
SHUTDOWN_TIMEOUT = 15.0
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")


@dataclass(frozen=True, slots=True)
class PeerFound:
    """A device of our mesh advertises itself at ``host:port`` (not yet authenticated)."""

    device_id: str
    host: str
    port: int
    role: Role


@dataclass(frozen=True, slots=True)
class PeerLost:
    """A device we reported withdrew its advertisement (or it expired)."""

    device_id: str


DiscoveryEvent = PeerFound | PeerLost


def _local_addresses() -> list[str]:
    """IPv4 addresses of this machine's non-loopback interfaces (loopback if there is none)."""
    found = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not ipaddress.ip_address(ip.ip).is_loopback:
                found.append(ip.ip)
    return found or ["127.0.0.1"]


def _service_info(
    device_id: str, mesh_hash: str, role: Role | str, port: int, addresses: list[str]
) -> ServiceInfo:
    return ServiceInfo(
        SERVICE_TYPE,
        f"cammesh-{device_id[:24]}.{SERVICE_TYPE}",
        port=port,
        properties={
            "id": device_id,
            "mesh": mesh_hash,
            "role": Role(role).value,
            "v": str(PROTOCOL_VERSION),
            "port": str(port),
        },
        server=f"cammesh-{device_id[:12]}.local.",
        parsed_addresses=addresses,
    )


def _advertise(zc: Zeroconf, info: ServiceInfo) -> asyncio.Future[None]:
    """Blocking: answer for ``info`` and send its first announcement now; returns the task
    sending the announcements that follow (zeroconf's own loop runs it).

    No probing (RFC 6762 section 8.1): our instance and host names embed the device id, the
    SHA-256 of a key only this device holds, so no other responder can hold them, and a
    responder that knows that skips the probe.  Zeroconf's ``register_service`` would also
    wait out the repeated announcements (about 0.5 s) before returning; the first one is
    what a browser needs, and the rest go on in the background (docs/ARCHITECTURE.md,
    "Start-up").
    """
    assert zc.loop is not None
    registering = asyncio.run_coroutine_threadsafe(
        zc.async_register_service(info, cooperating_responders=True), zc.loop
    )
    announcing: asyncio.Future[None] = registering.result(REGISTER_TIMEOUT)
    return announcing


def _stop_announcing(zc: Zeroconf, announcing: asyncio.Future[None]) -> None:
    """Cancel the repeated announcements on zeroconf's loop, ahead of anything sent after."""
    assert zc.loop is not None
    with contextlib.suppress(RuntimeError):  # its loop is closed: nothing is sent any more
        zc.loop.call_soon_threadsafe(announcing.cancel)


def _txt(info: ServiceInfo, key: str) -> str:
    value = info.properties.get(key.encode("ascii"))
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else ""


class Discovery:
    """Events about the mesh's devices; obtain one with ``open_discovery``."""

    def __init__(
        self, zc: Zeroconf, device_id: str, mesh_hash: str, nursery: trio.Nursery
    ) -> None:
        self._zc = zc
        self._device_id = device_id
        self._mesh_hash = mesh_hash
        self._nursery = nursery
        self._token = trio.lowlevel.current_trio_token()
        self._names: trio.MemorySendChannel[tuple[str, ServiceStateChange]]
        self._names, names_out = trio.open_memory_channel(math.inf)
        self._send, self._receive = trio.open_memory_channel[DiscoveryEvent](math.inf)
        self._found: dict[str, str] = {}  # service name -> device id reported
        self._generation: dict[str, int] = {}  # service name -> changes seen, to drop stale resolves
        nursery.start_soon(self._dispatch, names_out)

    def on_service_state_change(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        """Called on zeroconf's browser thread: only hand the name to trio, never block here."""
        with contextlib.suppress(trio.RunFinishedError):  # trio is gone: nobody to tell
            self._token.run_sync_soon(self._deliver, name, state_change)

    def _deliver(self, name: str, state_change: ServiceStateChange) -> None:
        # Runs on the trio thread; an exception here would crash the whole run.
        with contextlib.suppress(trio.ClosedResourceError):  # discovery is closing
            self._names.send_nowait((name, state_change))

    def events(self) -> trio.MemoryReceiveChannel[DiscoveryEvent]:
        """Peers of our mesh appearing and vanishing, in order; the stream ends when discovery closes."""
        return self._receive

    def _emit(self, event: DiscoveryEvent) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            self._send.send_nowait(event)  # nobody may listen any more

    async def _dispatch(
        self, names: trio.MemoryReceiveChannel[tuple[str, ServiceStateChange]]
    ) -> None:
        async for name, change in names:
            self._generation[name] = self._generation.get(name, 0) + 1
            if change is ServiceStateChange.Removed:
                device_id = self._found.pop(name, None)
                if device_id is not None:
                    log.info("device %s withdrew from discovery", device_id[:8])
                    self._emit(PeerLost(device_id))
            else:
                self._nursery.start_soon(self._resolve, name, self._generation[name])

    async def _resolve(self, name: str, generation: int) -> None:
        info = await trio.to_thread.run_sync(
            self._zc.get_service_info, SERVICE_TYPE, name, RESOLVE_TIMEOUT_MS
        )
        if self._generation.get(name) != generation:
            return  # removed or changed while we were asking; a newer event rules
        if info is None:
            log.debug("could not resolve %s within %d ms", name, RESOLVE_TIMEOUT_MS)
            return
        found = self._peer(info)
        if found is None:
            return
        previous = self._found.get(name)
        if previous is not None and previous != found.device_id:
            self._emit(PeerLost(previous))
        self._found[name] = found.device_id
        self._emit(found)

    def _peer(self, info: ServiceInfo) -> PeerFound | None:
        device_id, mesh = _txt(info, "id"), _txt(info, "mesh")
        if device_id == self._device_id:
            return None  # our own advertisement
        if mesh != self._mesh_hash:
            log.debug("ignoring %s: another mesh", info.name)
            return None
        try:
            role = Role(_txt(info, "role"))
        except ValueError:
            role = None
        addresses = info.parsed_addresses(IPVersion.V4Only) or info.parsed_addresses()
        if not _HEX64.match(device_id) or role is None or not addresses or not info.port:
            log.warning("ignoring malformed cammesh advertisement %s", info.name)
            return None
        return PeerFound(device_id=device_id, host=addresses[0], port=info.port, role=role)


@asynccontextmanager
async def open_discovery(
    device_id: str,
    mesh_hash: str,
    role: Role | str,
    port: int,
    *,
    interfaces: list[str] | None = None,
) -> AsyncIterator[Discovery]:
    """Advertise this device on ``interfaces`` (IP addresses; all when None) and browse for peers.

    On exit the advertisement is withdrawn and zeroconf's threads are stopped.
    """
    addresses = [ip for ip in interfaces if ip not in {"0.0.0.0", "::"}] if interfaces else []
    zc = await trio.to_thread.run_sync(
        lambda: Zeroconf(interfaces=interfaces) if interfaces else Zeroconf()
    )
    browser: ServiceBrowser | None = None
    announcing: asyncio.Future[None] | None = None
    try:
        info = _service_info(device_id, mesh_hash, role, port, addresses or _local_addresses())
        announcing = await trio.to_thread.run_sync(_advertise, zc, info)
        log.info("advertised %s on port %d", info.name, port,
                 extra={"event": "Advertised", "fields": {"name": info.name, "port": port}})
        async with trio.open_nursery() as nursery:
            discovery = Discovery(zc, device_id, mesh_hash, nursery)
            browser = await trio.to_thread.run_sync(
                lambda: ServiceBrowser(
                    zc, SERVICE_TYPE, handlers=[discovery.on_service_state_change]
                )
            )
            try:
                yield discovery
            finally:
                nursery.cancel_scope.cancel()
                discovery._names.close()
                discovery._send.close()
    finally:
        with trio.move_on_after(SHUTDOWN_TIMEOUT) as scope:
            scope.shield = True
            if announcing is not None:  # no repeat of it may follow the goodbye
                _stop_announcing(zc, announcing)
            if browser is not None:
                await trio.to_thread.run_sync(browser.cancel)
            await trio.to_thread.run_sync(zc.close)  # withdraws our records, joins its threads


# --- pairing windows ---------------------------------------------------------------
#
# A device with an open pairing window advertises ``_cammesh-pair._tcp.local.`` so that
# `cammesh mesh join` needs no address. The joiner belongs to no mesh yet, so there is no
# mesh hash to filter on: the advertisement carries only the device's name, role and id,
# nothing about the mesh or the code (SPAKE2 keeps the code off the wire).

PAIRING_SERVICE_TYPE = "_cammesh-pair._tcp.local."
PAIRING_SETTLE = 1.0  # after the first window is seen, listen this long for others


@dataclass(frozen=True, slots=True)
class PairingWindow:
    """A device that says it is admitting devices at ``host:port`` (unauthenticated)."""

    device_id: str
    name: str
    role: Role
    host: str
    port: int


@asynccontextmanager
async def advertise_pairing(
    device_id: str, name: str, role: Role | str, port: int, *, interfaces: list[str] | None = None
) -> AsyncIterator[None]:
    """Advertise a pairing window at ``port`` for as long as the block runs."""
    addresses = [ip for ip in interfaces if ip not in {"0.0.0.0", "::"}] if interfaces else []
    info = ServiceInfo(
        PAIRING_SERVICE_TYPE,
        f"cammesh-pair-{device_id[:24]}.{PAIRING_SERVICE_TYPE}",
        port=port,
        properties={"id": device_id, "name": name, "role": Role(role).value,
                    "v": str(PROTOCOL_VERSION)},
        server=f"cammesh-pair-{device_id[:12]}.local.",
        parsed_addresses=addresses or _local_addresses(),
    )
    zc = await trio.to_thread.run_sync(
        lambda: Zeroconf(interfaces=interfaces) if interfaces else Zeroconf()
    )
    announcing: asyncio.Future[None] | None = None
    try:
        announcing = await trio.to_thread.run_sync(_advertise, zc, info)
        yield
    finally:
        with trio.move_on_after(SHUTDOWN_TIMEOUT) as scope:
            scope.shield = True
            if announcing is not None:
                _stop_announcing(zc, announcing)
            await trio.to_thread.run_sync(zc.close)  # withdraws the advertisement


def _pairing_window(info: ServiceInfo) -> PairingWindow | None:
    device_id, name = _txt(info, "id"), _txt(info, "name")
    try:
        role = Role(_txt(info, "role"))
    except ValueError:
        return None
    addresses = info.parsed_addresses(IPVersion.V4Only) or info.parsed_addresses()
    if not _HEX64.match(device_id) or not name or not addresses or not info.port:
        log.warning("ignoring malformed pairing advertisement %s", info.name)
        return None
    return PairingWindow(device_id, name, role, addresses[0], info.port)


def _browse_pairing(timeout: float, interfaces: list[str] | None) -> list[PairingWindow]:
    """Blocking: browse up to ``timeout`` s, or ``PAIRING_SETTLE`` s past the first window."""
    names: list[str] = []
    seen = threading.Event()

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is not ServiceStateChange.Removed and name not in names:
            names.append(name)
            seen.set()

    zc = Zeroconf(interfaces=interfaces) if interfaces else Zeroconf()
    try:
        browser = ServiceBrowser(zc, PAIRING_SERVICE_TYPE, handlers=[on_change])
        try:
            started = time.monotonic()
            if seen.wait(timeout):
                time.sleep(min(PAIRING_SETTLE, max(0.0, timeout - (time.monotonic() - started))))
        finally:
            browser.cancel()
        windows = []
        for name in list(names):
            info = zc.get_service_info(PAIRING_SERVICE_TYPE, name, RESOLVE_TIMEOUT_MS)
            window = _pairing_window(info) if info is not None else None
            if window is not None and window not in windows:
                windows.append(window)
        return windows
    finally:
        zc.close()


async def find_pairing_windows(
    *, timeout: float = 5.0, interfaces: list[str] | None = None
) -> list[PairingWindow]:
    """The pairing windows advertised on the local network (empty when none is seen in time)."""
    return await trio.to_thread.run_sync(_browse_pairing, timeout, interfaces)
