"""protocol/sync.py alone, without a Node: Hello, Catalog and thumbnails as effects."""

from __future__ import annotations

import hashlib

import pytest

from protocol import events as ev
from protocol.config import NodeConfig
from protocol.connection import Connection
from protocol.effects import (
    Emit,
    Greeted,
    LinkReady,
    Offered,
    QueueThumbnail,
    Ready,
    Send,
    Tell,
    ThumbnailKnown,
    ThumbnailSeen,
)
from protocol.errors import RemoteProtocolError
from protocol.messages import PROTOCOL_VERSION, Catalog, Hello, Role, ThumbnailOffer
from protocol.peer import Link
from protocol.scheduler import Scheduler
from protocol.store import TransferState
from protocol.sync import Sync
from sim.memstore import MemoryStore

US = hashlib.sha256(b"camera").hexdigest()
DESK = hashlib.sha256(b"desk").hexdigest()
OTHER = hashlib.sha256(b"other camera").hexdigest()
NOW = 1_700_000_000.0


def hello(device_id: str, name: str = "desk") -> Hello:
    return Hello(device_id=device_id, name=name, role=Role.DESK, version=PROTOCOL_VERSION,
                 capabilities=(), capacity=10, free=10)


def link(peer_id: str, *, ready: bool = True, seen: dict[str, int] | None = None) -> Link:
    return Link(peer_id=peer_id, conn=Connection(US, expected_peer=peer_id), scheduler=Scheduler(),
                connected_at=NOW, ready=ready, hello=hello(peer_id),
                catalog=seen if seen is not None else {})


def rig(capacity: int = 1_000_000) -> tuple[MemoryStore, dict[str, Link], Sync]:
    store = MemoryStore(US, capacity)
    links: dict[str, Link] = {}
    return store, links, Sync(store, NodeConfig(name="cam", role=Role.CAMERA), links)


def offer(n: int, origin: str = OTHER, *, has_original: bool = True) -> ThumbnailOffer:
    return ThumbnailOffer(
        image_id=hashlib.sha256(f"picture {n}".encode()).hexdigest(), origin=origin, seq=n + 1,
        name=f"p{n}.jpg", size=1000, mime="image/jpeg", capture_time=NOW + n, metadata={},
        thumbnail=b"t", has_original=has_original,
    )


def test_a_new_link_opens_with_our_hello_then_our_catalog() -> None:
    store, _, sync = rig()
    store.add_local(b"x" * 100, name="a.jpg", now=NOW)
    out = sync.connected(DESK)
    assert [type(e.message) for e in out if isinstance(e, Send)] == [Hello, Catalog]
    first, second = (e.message for e in out if isinstance(e, Send))
    assert isinstance(first, Hello) and first.device_id == US and first.free == store.usage().free
    assert isinstance(second, Catalog) and second.seen == {US: 1}


def test_a_hello_naming_another_device_is_refused_and_a_true_one_is_kept() -> None:
    _, links, sync = rig()
    links[DESK] = link(DESK, ready=False)
    with pytest.raises(RemoteProtocolError) as caught:
        sync.on_hello(links[DESK], hello(OTHER))
    assert caught.value.code == "identity"
    assert sync.on_hello(links[DESK], hello(DESK, "the desk")) == [Greeted(DESK, hello(DESK, "the desk"))]
    assert sync.name_of(DESK) == "the desk" and sync.name_of(OTHER) == OTHER[:12]


def test_a_catalog_makes_the_link_ready_and_queues_only_the_thumbnails_the_peer_lacks() -> None:
    store, links, sync = rig()
    records = [store.add_local(bytes([n]) * 100, name=f"{n}.jpg", now=NOW, capture_time=NOW + n)
               for n in range(3)]
    # The peer saw the first; it asked for the second's original on an earlier link.
    store.set_transfer_state(DESK, records[1].image_id, TransferState.REQUESTED)
    links[DESK] = link(DESK, ready=False)
    out = sync.on_catalog(links[DESK], Catalog(seen={US: 1}))
    assert out == [
        Ready(DESK, {US: 1}),
        Emit(ev.PeerReady(DESK, hello(DESK))),
        Tell(LinkReady(DESK)),
        ThumbnailKnown(DESK, records[1].image_id),
        QueueThumbnail(DESK, records[2].image_id, NOW + 2),
    ]


def test_a_new_thumbnail_is_stored_told_and_relayed_to_other_ready_peers_that_lack_it() -> None:
    store, links, sync = rig()
    links[DESK] = link(DESK)
    links[OTHER] = link(OTHER)  # the origin: never relayed back to it
    third = hashlib.sha256(b"third").hexdigest()
    links[third] = link(third)
    msg = offer(0)
    out = sync.on_thumbnail(links[DESK], msg, NOW)
    assert out == [
        ThumbnailKnown(DESK, msg.image_id),
        Tell(Offered(DESK, msg.image_id)),
        Emit(ev.ThumbnailArrived(DESK, msg.image_id)),
        QueueThumbnail(third, msg.image_id, msg.capture_time),
        Tell(ThumbnailSeen(msg.image_id, NOW)),
    ]
    assert store.image(msg.image_id) is not None
    # The same offer again is no news: nothing arrives, nothing is relayed.
    again = sync.on_thumbnail(links[DESK], msg, NOW)
    assert not any(isinstance(e, Emit | QueueThumbnail) for e in again)


def test_a_thumbnail_claiming_to_be_ours_that_we_never_had_is_refused() -> None:
    _, links, sync = rig()
    links[DESK] = link(DESK)
    msg = offer(0, origin=US)
    with pytest.raises(RemoteProtocolError) as caught:
        sync.on_thumbnail(links[DESK], msg, NOW)
    assert caught.value.code == "catalog"
    assert sync.take() == [ThumbnailKnown(DESK, msg.image_id)]  # asked for before the refusal


def test_a_capture_queues_its_thumbnail_on_ready_links_that_have_not_seen_it() -> None:
    store, links, sync = rig()
    record = store.add_local(b"y" * 100, name="y.jpg", now=NOW, capture_time=NOW)
    links[DESK] = link(DESK)
    links[OTHER] = link(OTHER, seen={US: 1})  # already has it (from a relay)
    third = hashlib.sha256(b"third").hexdigest()
    links[third] = link(third, ready=False)
    assert sync.captured(record) == [QueueThumbnail(DESK, record.image_id, NOW)]
