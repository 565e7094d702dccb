"""protocol/keepalive.py alone, without a Node: pings for silent links, time-outs for silent peers."""

from __future__ import annotations

import hashlib

from protocol import events as ev
from protocol.config import NodeConfig
from protocol.connection import Connection
from protocol.effects import Emit, Send
from protocol.keepalive import Keepalive
from protocol.messages import Ping, Role
from protocol.peer import Link
from protocol.scheduler import Scheduler

US = hashlib.sha256(b"camera").hexdigest()
DESK = hashlib.sha256(b"desk").hexdigest()
NOW = 1_700_000_000.0


def rig(*, ready: bool = True) -> tuple[dict[str, Link], Keepalive]:
    links = {DESK: Link(peer_id=DESK, conn=Connection(US, expected_peer=DESK),
                        scheduler=Scheduler(), connected_at=NOW, ready=ready)}
    keepalive = Keepalive(NodeConfig(name="cam", role=Role.CAMERA, keepalive_s=10.0,
                                     peer_timeout_s=30.0), links)
    keepalive.connected(DESK, NOW)
    return links, keepalive


def test_a_ready_link_silent_for_a_period_is_pinged_once_per_period() -> None:
    _, keepalive = rig()
    assert keepalive.next_deadline() == NOW + 10.0
    assert keepalive.tick(NOW + 9.9) == []
    assert keepalive.tick(NOW + 10.0) == [Send(DESK, Ping(1))]
    assert keepalive.tick(NOW + 15.0) == []  # our Ping restarts the count
    assert keepalive.next_deadline() == NOW + 20.0
    assert keepalive.tick(NOW + 20.0) == [Send(DESK, Ping(2))]


def test_any_bytes_heard_put_the_ping_off() -> None:
    _, keepalive = rig()
    assert keepalive.heard(DESK, NOW + 8.0) is False
    assert keepalive.tick(NOW + 10.0) == []
    assert keepalive.next_deadline() == NOW + 18.0


def test_a_link_not_yet_ready_is_never_pinged_but_may_time_out() -> None:
    _, keepalive = rig(ready=False)
    assert keepalive.next_deadline() == NOW + 30.0
    assert keepalive.tick(NOW + 29.0) == []
    out = keepalive.tick(NOW + 31.0)
    assert out == [Emit(ev.PeerTimedOut(DESK, 31.0))]


def test_a_time_out_is_reported_once_until_the_peer_is_heard_again() -> None:
    _, keepalive = rig()
    timed_out = [e for t in range(10, 70, 10) for e in keepalive.tick(NOW + t) if isinstance(e, Emit)]
    assert timed_out == [Emit(ev.PeerTimedOut(DESK, 40.0))]
    assert keepalive.heard(DESK, NOW + 70.0) is True  # watched again: the deadline moves
    assert keepalive.last_heard(DESK) == NOW + 70.0


def test_a_link_gone_is_no_longer_watched() -> None:
    links, keepalive = rig()
    del links[DESK]
    keepalive.gone(DESK)
    assert keepalive.next_deadline() is None
    assert keepalive.tick(NOW + 100.0) == []
