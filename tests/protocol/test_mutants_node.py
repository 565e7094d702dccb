"""protocol/node.py's paths that no other test reached, and the mutants that survived it.

Behaviour tests through Node's public inputs and the conversation harness
(tests/protocol/harness.py): the links' life, the user's requests and refusals,
background pulls within the card's room, keepalive and deadlines.  The mutation
triage is tests/mutation/triage_node.md.
"""

from __future__ import annotations

import random

import pytest

from protocol import events as ev
from protocol.config import NodeConfig, Policy
from protocol.errors import LocalProtocolError
from protocol.messages import (
    Chunk,
    Goodbye,
    OriginalComplete,
    OriginalHeader,
    Ping,
    Purpose,
    ReadOut,
    RefuseOriginal,
    RequestOriginal,
    Role,
    ThumbnailOffer,
)
from protocol.node import Node
from protocol.store import Decision, Incoming, Where
from sim.memstore import MemoryStore
from tests.protocol.harness import MemoryMesh, device_id
from tests.protocol.test_checks import OTHER, STRANGER, feed, until
from tests.protocol.test_conversations import CHUNK
from tests.protocol.test_failures import crash, readout_bytes

SIZE = 3 * CHUNK + 100


def count(mesh: MemoryMesh, src: str, dst: str, kind: type, image_id: str | None = None) -> int:
    return sum(
        1
        for m in mesh.between(src, dst)
        if isinstance(m, kind) and (image_id is None or getattr(m, "image_id", None) == image_id)
    )


def pair(**desk_options: object) -> MemoryMesh:
    mesh = MemoryMesh()
    mesh.add("cam", policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    options: dict[str, object] = {"policy": Policy.THUMBNAILS, "chunk_size": CHUNK}
    options.update(desk_options)
    mesh.add("desk", role=Role.DESK, **options)  # type: ignore[arg-type]
    mesh.connect("cam", "desk")
    mesh.pump()
    return mesh


# --- local inputs on what is not there ---------------------------------------------------------


def test_inputs_about_an_unknown_peer_or_picture_are_refused_or_ignored() -> None:
    store = MemoryStore(device_id("cam"), 1_000_000)
    node = Node(store, NodeConfig(name="cam", role=Role.CAMERA), random.Random(1))
    with pytest.raises(LocalProtocolError):
        node.receive_data(STRANGER, b"\x00", 0.0)
    with pytest.raises(LocalProtocolError):
        node.captured(OTHER, 0.0)
    assert node.next_frame(STRANGER, 0.0) is None
    node.disconnected(STRANGER, 0.0, "never there")
    node.wake(STRANGER)
    assert node.sending_peers() == []
    assert node.events() == []
    assert node.may_send(STRANGER) is False


def test_a_request_before_the_thumbnail_is_pending_and_goes_when_the_picture_is_offered() -> None:
    mesh = MemoryMesh()
    mesh.add("cam", policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    desk = mesh.add("desk", role=Role.DESK, policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    image_id = mesh.capture("cam", size=SIZE)
    mesh.call(desk, lambda: desk.node.request(image_id, mesh.now))
    assert [e.image_id for e in desk.of(ev.RequestPending)] == [image_id]  # type: ignore[attr-defined]
    mesh.connect("cam", "desk")
    mesh.pump()
    requests = [m for m in mesh.between("desk", "cam") if isinstance(m, RequestOriginal)]
    assert [(r.image_id, r.urgent) for r in requests] == [(image_id, True)]
    assert desk.store.image(image_id).where is Where.LOCAL  # type: ignore[union-attr]


def test_a_request_for_what_is_already_here_sends_nothing() -> None:
    mesh = pair(policy=Policy.ALL)
    cam, desk = mesh.devices["cam"], mesh.devices["desk"]
    image_id = mesh.capture("cam", size=SIZE)
    mesh.pump()
    assert desk.store.image(image_id).where is Where.LOCAL  # type: ignore[union-attr]
    before = count(mesh, "desk", "cam", RequestOriginal)
    mesh.call(desk, lambda: desk.node.request(image_id, mesh.now))
    mesh.pump()
    assert count(mesh, "desk", "cam", RequestOriginal) == before
    assert desk.of(ev.Decided) == [] and desk.store.decision(image_id) is None
    assert cam.of(ev.ProtocolViolation) == []


def test_a_smaller_request_is_not_resumed_after_a_restart_but_an_original_one_is() -> None:
    mesh = MemoryMesh()
    mesh.add("cam", policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    desk = mesh.add("desk", role=Role.DESK, policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    mesh.connect("cam", "desk")
    mesh.pump()
    small, whole = mesh.capture("cam", size=SIZE), mesh.capture("cam", size=SIZE)
    mesh.pump()
    mesh.disconnect("cam", "desk")
    mesh.call(desk, lambda: desk.node.request(small, mesh.now, max_side=100))
    mesh.call(desk, lambda: desk.node.request(whole, mesh.now))
    mesh.call(desk, lambda: desk.node.request(OTHER, mesh.now))  # never offered
    crash(mesh, "desk", seed=4)
    mesh.connect("cam", "desk")
    mesh.pump()
    requests = [m for m in mesh.between("desk", "cam") if isinstance(m, RequestOriginal)]
    assert [r.image_id for r in requests] == [whole]
    assert desk.store.image(whole).where is Where.LOCAL  # type: ignore[union-attr]
    assert desk.store.image(small).where is Where.ABSENT  # type: ignore[union-attr]


def test_a_refusal_of_a_pull_under_way_stops_it_and_drops_what_arrived() -> None:
    mesh = pair(policy=Policy.ALL)
    cam, desk = mesh.devices["cam"], mesh.devices["desk"]
    image_id = mesh.capture("cam", size=SIZE)
    mesh.pump(until=lambda d: isinstance(d.msg, Chunk) and d.dst == "desk")
    assert desk.store.partial_offset(image_id, Incoming.ORIGINAL) > 0
    mesh.call(desk, lambda: desk.node.refuse(image_id, mesh.now))
    assert desk.store.partial_offset(image_id, Incoming.ORIGINAL) == 0
    assert desk.of(ev.Decided) == [ev.Decided(image_id, Decision.REFUSED)]
    mesh.pump()
    assert count(mesh, "desk", "cam", RefuseOriginal, image_id) == 1
    assert desk.store.image(image_id).where is Where.ABSENT  # type: ignore[union-attr]
    assert desk.of(ev.ProtocolViolation) == [] and cam.of(ev.ProtocolViolation) == []


def test_a_refusal_of_a_picture_nobody_offered_sends_nothing() -> None:
    mesh = pair(policy=Policy.THUMBNAILS)
    desk = mesh.devices["desk"]
    mesh.call(desk, lambda: desk.node.refuse(OTHER, mesh.now))
    mesh.pump()
    assert count(mesh, "desk", "cam", RefuseOriginal) == 0
    assert desk.store.decision(OTHER).decision is Decision.REFUSED  # type: ignore[union-attr]


def test_a_refused_picture_is_not_pulled_when_it_is_offered_again() -> None:
    mesh = pair(policy=Policy.ALL)
    desk = mesh.devices["desk"]
    mesh.disconnect("cam", "desk")
    image_id = mesh.capture("cam", size=SIZE)
    mesh.call(desk, lambda: desk.node.refuse(image_id, mesh.now))
    mesh.connect("cam", "desk")
    mesh.pump()
    assert count(mesh, "desk", "cam", RequestOriginal, image_id) == 0
    assert desk.store.image(image_id).where is Where.ABSENT  # type: ignore[union-attr]


def test_an_urgent_request_during_a_background_pull_moves_it_up_from_where_it_got() -> None:
    mesh = pair(policy=Policy.ALL)
    desk = mesh.devices["desk"]
    image_id = mesh.capture("cam", size=SIZE)
    mesh.pump(until=lambda d: isinstance(d.msg, Chunk) and d.dst == "desk")
    got = desk.store.partial_offset(image_id, Incoming.ORIGINAL)
    mesh.call(desk, lambda: desk.node.request(image_id, mesh.now))
    mesh.pump()
    requests = [m for m in mesh.between("desk", "cam") if isinstance(m, RequestOriginal)]
    assert [(r.urgent, r.offset) for r in requests] == [(False, 0), (True, got)]
    assert desk.store.image(image_id).where is Where.LOCAL  # type: ignore[union-attr]
    assert desk.of(ev.ProtocolViolation) == []


def test_a_second_urgent_request_for_a_stream_under_way_sends_nothing_more() -> None:
    mesh = pair(policy=Policy.THUMBNAILS)
    desk = mesh.devices["desk"]
    image_id = mesh.capture("cam", size=SIZE)
    mesh.pump()
    mesh.call(desk, lambda: desk.node.request(image_id, mesh.now))
    mesh.pump(until=until(OriginalHeader))
    mesh.call(desk, lambda: desk.node.request(image_id, mesh.now))
    mesh.pump()
    assert count(mesh, "desk", "cam", RequestOriginal, image_id) == 1
    assert desk.store.image(image_id).where is Where.LOCAL  # type: ignore[union-attr]


# --- links coming and going ----------------------------------------------------------------------


def test_a_read_out_whose_source_goes_away_fails_naming_it() -> None:
    mesh = pair()
    desk = mesh.devices["desk"]
    image_id = mesh.capture("cam", size=SIZE)
    mesh.pump()
    mesh.call(desk, lambda: desk.node.read_out(image_id, mesh.now))
    mesh.pump(until=lambda d: isinstance(d.msg, Chunk) and d.dst == "desk")
    mesh.disconnect("cam", "desk", "out of range")
    failed = desk.of(ev.ReadOutFailed)
    assert len(failed) == 1 and "cam went away" in failed[0].reason  # type: ignore[attr-defined]
    assert "out of range" in failed[0].reason  # type: ignore[attr-defined]
    assert desk.of(ev.PeerGone) == [ev.PeerGone(mesh.devices["cam"].id, "out of range")]


def test_an_interrupted_user_request_is_asked_again_urgently_on_reconnect() -> None:
    mesh = pair()
    desk = mesh.devices["desk"]
    image_id = mesh.capture("cam", size=SIZE)
    mesh.pump()
    mesh.call(desk, lambda: desk.node.request(image_id, mesh.now))
    mesh.pump(until=lambda d: isinstance(d.msg, Chunk) and d.dst == "desk")
    got = desk.store.partial_offset(image_id, Incoming.ORIGINAL)
    mesh.disconnect("cam", "desk")
    mesh.connect("cam", "desk")
    mesh.pump()
    requests = [m for m in mesh.between("desk", "cam") if isinstance(m, RequestOriginal)]
    assert [(r.urgent, r.offset) for r in requests] == [(True, 0), (True, got)]
    assert desk.store.image(image_id).where is Where.LOCAL  # type: ignore[union-attr]


def test_an_interrupted_background_pull_is_pulled_again_on_reconnect() -> None:
    mesh = pair(policy=Policy.ALL)
    desk = mesh.devices["desk"]
    image_id = mesh.capture("cam", size=SIZE)
    mesh.pump(until=lambda d: isinstance(d.msg, Chunk) and d.dst == "desk")
    got = desk.store.partial_offset(image_id, Incoming.ORIGINAL)
    mesh.disconnect("cam", "desk")
    mesh.connect("cam", "desk")
    mesh.pump()
    requests = [m for m in mesh.between("desk", "cam") if isinstance(m, RequestOriginal)]
    assert [(r.urgent, r.offset) for r in requests] == [(False, 0), (False, got)]
    assert desk.store.image(image_id).where is Where.LOCAL  # type: ignore[union-attr]


def test_a_peer_saying_goodbye_gets_nothing_more() -> None:
    mesh = pair(policy=Policy.THUMBNAILS)
    cam, desk = mesh.devices["cam"], mesh.devices["desk"]
    assert feed(mesh, "desk", "cam", Goodbye("closing")) is None
    mesh.capture("cam", size=SIZE)  # a new thumbnail would go to every ready peer
    assert cam.node.next_frame(desk.id, mesh.now) is None
    assert cam.node.may_send(desk.id) is True  # closing: the runtime polls to close it


def test_a_reconnect_replaces_the_old_link() -> None:
    mesh = pair()
    cam, desk = mesh.devices["cam"], mesh.devices["desk"]
    mesh.call(cam, lambda: cam.node.connected(desk.id, mesh.now))
    assert cam.of(ev.PeerGone) == [ev.PeerGone(desk.id, "replaced by a new connection")]
    assert list(cam.node.peers()) == [desk.id]
    assert cam.node.peers()[desk.id].ready is False


def test_thumbnails_are_relayed_to_other_peers_but_not_back_to_their_origin() -> None:
    mesh = MemoryMesh()
    mesh.add("cam1", policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    mesh.add("desk", role=Role.DESK, policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    mesh.add("cam2", policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    mesh.connect("cam1", "desk")
    mesh.connect("desk", "cam2")
    mesh.connect("cam1", "cam2")
    mesh.pump()
    image_id = mesh.capture("cam1", size=1000)
    mesh.pump()
    assert count(mesh, "desk", "cam1", ThumbnailOffer, image_id) == 0
    assert count(mesh, "cam1", "desk", ThumbnailOffer, image_id) == 1
    assert count(mesh, "cam1", "cam2", ThumbnailOffer, image_id) == 1
    # cam2 had it from cam1 already: the desk does not send it again.
    assert count(mesh, "desk", "cam2", ThumbnailOffer, image_id) + count(
        mesh, "cam2", "desk", ThumbnailOffer, image_id
    ) <= 1


def test_a_capture_goes_to_every_ready_peer_once() -> None:
    mesh = pair()
    mesh.add("cam2", policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    mesh.connect("cam", "cam2")
    mesh.pump()
    image_id = mesh.capture("cam", size=1000)
    mesh.pump()
    assert count(mesh, "cam", "desk", ThumbnailOffer, image_id) == 1
    assert count(mesh, "cam", "cam2", ThumbnailOffer, image_id) == 1
    mesh.disconnect("cam", "desk")
    mesh.connect("cam", "desk")
    mesh.pump()
    assert count(mesh, "cam", "desk", ThumbnailOffer, image_id) == 1  # it had it


def test_a_thumbnail_received_twice_is_announced_once() -> None:
    mesh = pair()
    desk = mesh.devices["desk"]
    image_id = mesh.capture("cam", size=1000)
    mesh.pump()
    offer = next(m for m in mesh.between("cam", "desk") if isinstance(m, ThumbnailOffer))
    assert feed(mesh, "cam", "desk", offer) is None
    arrived = [e for e in desk.of(ev.ThumbnailArrived) if e.image_id == image_id]  # type: ignore[attr-defined]
    assert len(arrived) == 1


# --- background pulls within the card's room --------------------------------------------------------


def test_background_pulls_stop_at_the_high_water_mark() -> None:
    mesh = MemoryMesh()
    mesh.add("cam", policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    desk = mesh.add("desk", role=Role.DESK, capacity=100_000, high_water=0.5, policy=Policy.ALL,
                    chunk_size=CHUNK)
    ids = [mesh.capture("cam", size=20_000) for _ in range(4)]
    mesh.connect("cam", "desk")
    mesh.pump()
    here = [i for i in ids if desk.store.image(i).where is Where.LOCAL]  # type: ignore[union-attr]
    assert len(here) == 2  # 40 kB of a 50 kB mark; a third would pass it
    assert desk.store.usage().used <= 50_000
    assert count(mesh, "desk", "cam", RequestOriginal) == 2
    desk.store.resize(1_000_000)  # more room: the rest are pulled at the next look
    mesh.advance(1.0)
    mesh.pump()
    assert all(desk.store.image(i).where is Where.LOCAL for i in ids)  # type: ignore[union-attr]


def test_background_pulls_fill_exactly_up_to_the_mark() -> None:
    mesh = MemoryMesh()
    mesh.add("cam", policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    desk = mesh.add("desk", role=Role.DESK, capacity=100_000, high_water=0.5, policy=Policy.ALL,
                    chunk_size=CHUNK)
    ids = [mesh.capture("cam", size=25_000) for _ in range(3)]
    mesh.connect("cam", "desk")
    mesh.pump()
    here = [i for i in ids if desk.store.image(i).where is Where.LOCAL]  # type: ignore[union-attr]
    assert len(here) == 2 and desk.store.usage().used == 50_000


def test_background_pulls_in_flight_per_peer_are_capped() -> None:
    mesh = MemoryMesh()
    mesh.add("cam", policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    desk = mesh.add("desk", role=Role.DESK, policy=Policy.ALL, chunk_size=CHUNK,
                    max_outstanding_requests=2)
    ids = [mesh.capture("cam", size=SIZE) for _ in range(5)]
    mesh.connect("cam", "desk")
    in_flight = 0
    most = 0
    for _ in range(10_000):
        if mesh.step() <= 0:
            break
        asked = count(mesh, "desk", "cam", RequestOriginal)
        done = count(mesh, "cam", "desk", OriginalComplete)
        in_flight = asked - done
        most = max(most, in_flight)
    assert most == 2
    assert all(desk.store.image(i).where is Where.LOCAL for i in ids)  # type: ignore[union-attr]


def test_a_pull_another_peer_served_is_not_asked_of_the_next() -> None:
    mesh = MemoryMesh()
    mesh.add("cam", policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    mesh.add("relay", role=Role.DESK, policy=Policy.ALL, chunk_size=CHUNK)
    desk = mesh.add("desk", role=Role.DESK, policy=Policy.ALL, chunk_size=CHUNK)
    mesh.connect("cam", "relay")
    mesh.pump()
    image_id = mesh.capture("cam", size=SIZE)
    mesh.pump()  # the relay pulls it and can offer it
    mesh.connect("relay", "desk")
    mesh.connect("cam", "desk")
    mesh.pump()
    asked = count(mesh, "desk", "cam", RequestOriginal, image_id) + count(
        mesh, "desk", "relay", RequestOriginal, image_id
    )
    assert asked == 1
    assert desk.store.image(image_id).where is Where.LOCAL  # type: ignore[union-attr]


def test_a_peer_that_cannot_serve_a_pull_is_not_asked_again_but_another_is() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam", policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    mesh.add("relay", role=Role.DESK, policy=Policy.ALL, chunk_size=CHUNK)
    desk = mesh.add("desk", role=Role.DESK, policy=Policy.ALL, chunk_size=CHUNK)
    mesh.connect("cam", "relay")
    mesh.pump()
    image_id = mesh.capture("cam", size=SIZE)
    mesh.pump()
    mesh.disconnect("cam", "relay")
    relay = mesh.devices["relay"]
    # The relay lost its copy but still offers it.
    relay.store._originals.pop(image_id)  # type: ignore[attr-defined]
    mesh.connect("relay", "desk")
    mesh.pump()
    assert desk.of(ev.TransferRefused)
    assert count(mesh, "desk", "relay", RequestOriginal, image_id) == 1
    mesh.advance(1.0)
    mesh.pump()
    assert count(mesh, "desk", "relay", RequestOriginal, image_id) == 1  # not asked again
    mesh.connect("cam", "desk")
    mesh.pump()
    assert desk.store.image(image_id).where is Where.LOCAL  # type: ignore[union-attr]
    assert cam.of(ev.ProtocolViolation) == []


# --- keepalive and deadlines -----------------------------------------------------------------


def test_a_busy_link_is_not_pinged_and_a_quiet_one_exactly_once_a_period() -> None:
    mesh = pair()
    cam, desk = mesh.devices["cam"], mesh.devices["desk"]
    mesh.advance(9.9)
    mesh.pump()
    assert count(mesh, "cam", "desk", Ping) == 0
    mesh.advance(0.1)  # exactly one period of silence
    mesh.pump()
    assert count(mesh, "cam", "desk", Ping) == 1
    mesh.advance(5.0)
    mesh.pump()
    assert count(mesh, "cam", "desk", Ping) == 1
    assert cam.of(ev.PeerTimedOut) == [] and desk.of(ev.PeerTimedOut) == []


def test_a_silent_peer_is_reported_once_and_watched_again_when_heard() -> None:
    mesh = pair()
    cam, desk = mesh.devices["cam"], mesh.devices["desk"]
    mesh.links.clear()
    mesh.advance(30.0)
    assert cam.of(ev.PeerTimedOut) == []  # not past the timeout yet
    mesh.advance(0.5)
    assert [e.peer for e in cam.of(ev.PeerTimedOut)] == [desk.id]  # type: ignore[attr-defined]
    mesh.advance(10.0)
    assert len(cam.of(ev.PeerTimedOut)) == 1
    mesh.links |= {("cam", "desk"), ("desk", "cam")}
    mesh.pump()  # the pings queued meanwhile go: each side hears the other
    mesh.links.clear()
    mesh.advance(31.0)
    assert len(cam.of(ev.PeerTimedOut)) == 2


def test_next_deadline_is_the_earliest_of_ping_timeout_and_retries() -> None:
    mesh = pair()
    cam = mesh.devices["cam"]
    assert cam.node.next_deadline() == mesh.now + 10.0  # the keepalive
    mesh.links.clear()
    mesh.advance(10.0)  # pinged; no answer can come
    assert cam.node.next_deadline() == mesh.now + 10.0
    mesh.advance(20.5)  # timed out: only its ping is due
    assert cam.of(ev.PeerTimedOut)
    deadline = cam.node.next_deadline()
    assert deadline is not None and deadline > mesh.now


def test_a_node_with_no_links_and_nothing_waiting_has_no_deadline() -> None:
    store = MemoryStore(device_id("cam"), 1_000_000)
    node = Node(store, NodeConfig(name="cam", role=Role.CAMERA), random.Random(1))
    assert node.next_deadline() is None


def test_status_counts_pictures_held_and_waiting() -> None:
    from tests.protocol.test_checks import dispersed

    mesh, image_id = dispersed()
    cam, big = mesh.devices["cam"], mesh.devices["big"]
    status = cam.node.status()
    assert status["images_dispersed"] == 1 and status["images_local"] == 3
    assert status["dispersion_entries"] == 1 and status["peers"] == 1
    held = big.node.status()
    assert held["held"] == 1 and held["held_bytes"] == big.store.held(image_id).size  # type: ignore[union-attr]
    assert held["images_absent"] == 4
    mesh.call(big, lambda: big.node.request(OTHER, mesh.now))
    assert big.node.status()["requests_waiting"] == 1


def test_a_read_out_of_a_peers_picture_is_handed_out_in_order() -> None:
    mesh = pair()
    desk = mesh.devices["desk"]
    image_id = mesh.capture("cam", size=SIZE)
    mesh.pump()
    mesh.call(desk, lambda: desk.node.read_out(image_id, mesh.now))
    mesh.pump()
    assert count(mesh, "desk", "cam", ReadOut, image_id) == 1
    offsets = [e.offset for e in desk.of(ev.ReadOutChunk)]  # type: ignore[attr-defined]
    assert offsets == list(range(0, SIZE, CHUNK))
    assert readout_bytes(desk, image_id) == mesh.devices["cam"].store.original_bytes(image_id)
    assert desk.store.image(image_id).where is Where.ABSENT  # type: ignore[union-attr]
    assert Purpose.READOUT not in {e.purpose for e in desk.of(ev.OriginalArrived)}  # type: ignore[attr-defined]


# --- where the user's request goes -------------------------------------------------------------


def offered_by_a_relay() -> tuple[MemoryMesh, str]:
    """``cam``'s picture, pulled by ``relay`` (which offers it), seen by ``desk`` from both."""
    mesh = MemoryMesh()
    mesh.add("cam", policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    mesh.add("relay", role=Role.DESK, policy=Policy.ALL, chunk_size=CHUNK)
    mesh.add("desk", role=Role.DESK, policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    mesh.connect("cam", "relay")
    mesh.pump()
    image_id = mesh.capture("cam", size=SIZE)
    mesh.pump()
    assert mesh.devices["relay"].store.image(image_id).where is Where.LOCAL  # type: ignore[union-attr]
    mesh.connect("relay", "desk")
    mesh.connect("cam", "desk")
    mesh.pump()
    return mesh, image_id


def test_a_users_request_goes_to_the_pictures_origin_before_an_offerer() -> None:
    mesh, image_id = offered_by_a_relay()
    desk = mesh.devices["desk"]
    assert mesh.devices["relay"].id < mesh.devices["cam"].id  # not merely the first by id
    mesh.call(desk, lambda: desk.node.request(image_id, mesh.now))
    mesh.pump()
    assert count(mesh, "desk", "cam", RequestOriginal, image_id) == 1
    assert count(mesh, "desk", "relay", RequestOriginal, image_id) == 0
    assert desk.store.image(image_id).where is Where.LOCAL  # type: ignore[union-attr]


def test_a_users_request_goes_to_an_offerer_when_the_origin_is_away() -> None:
    mesh, image_id = offered_by_a_relay()
    desk = mesh.devices["desk"]
    mesh.disconnect("cam", "desk")
    mesh.call(desk, lambda: desk.node.request(image_id, mesh.now))
    assert desk.of(ev.RequestPending) == []
    mesh.pump()
    assert count(mesh, "desk", "relay", RequestOriginal, image_id) == 1
    assert desk.store.image(image_id).where is Where.LOCAL  # type: ignore[union-attr]
