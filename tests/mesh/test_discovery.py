"""Discovery with real zeroconf on loopback multicast: our mesh found, others ignored, no leaks."""

from __future__ import annotations

import secrets
import socket

import pytest
import trio

from mesh.discovery import Discovery, DiscoveryEvent, PeerFound, PeerLost, open_discovery
from protocol.messages import Role

LOOPBACK = ["127.0.0.1"]


def _multicast_on_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
            s.sendto(b"", ("224.0.0.251", 5353))
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(
    not _multicast_on_loopback(), reason="multicast on loopback is not available here"
)


def new_id() -> str:
    return secrets.token_hex(32)


async def next_event(stream: trio.MemoryReceiveChannel[DiscoveryEvent], timeout: float = 30.0
                     ) -> DiscoveryEvent:
    # generous: the bound only keeps a broken test from hanging
    with trio.fail_after(timeout):
        return await stream.__anext__()


async def test_two_devices_find_each_other_and_a_vanish_is_reported() -> None:
    mesh = secrets.token_hex(32)
    a_id, b_id = new_id(), new_id()
    async with open_discovery(a_id, mesh, Role.CAMERA, 4001, interfaces=LOOPBACK) as a:
        a_events = a.events()
        async with open_discovery(b_id, mesh, Role.DESK, 4002, interfaces=LOOPBACK) as b:
            b_events = b.events()
            assert await next_event(a_events) == PeerFound(b_id, "127.0.0.1", 4002, Role.DESK)
            assert await next_event(b_events) == PeerFound(a_id, "127.0.0.1", 4001, Role.CAMERA)
        # b closed: its goodbye reaches a
        assert await next_event(a_events) == PeerLost(b_id)
        await a_events.aclose()


async def test_devices_of_another_mesh_are_ignored() -> None:
    mesh, other_mesh = secrets.token_hex(32), secrets.token_hex(32)
    a_id, stranger_id, b_id = new_id(), new_id(), new_id()
    async with open_discovery(a_id, mesh, Role.CAMERA, 4001, interfaces=LOOPBACK) as a:
        events = a.events()
        # the stranger advertises first; then a member of our mesh appears
        async with (
            open_discovery(stranger_id, other_mesh, Role.CAMERA, 4003, interfaces=LOOPBACK),
            open_discovery(b_id, mesh, Role.CAMERA, 4002, interfaces=LOOPBACK),
        ):
            first = await next_event(events)
        # only b was ever reported (and then its departure); never the stranger
        assert first == PeerFound(b_id, "127.0.0.1", 4002, Role.CAMERA)
        assert await next_event(events) == PeerLost(b_id)
        await events.aclose()


async def test_closing_discovery_ends_the_event_stream() -> None:
    async with open_discovery(new_id(), secrets.token_hex(32), Role.CAMERA, 4001,
                              interfaces=LOOPBACK) as disc:
        assert isinstance(disc, Discovery)
        events = disc.events()
    # after close the stream ends instead of hanging
    with trio.fail_after(5), pytest.raises(StopAsyncIteration):
        await events.__anext__()
