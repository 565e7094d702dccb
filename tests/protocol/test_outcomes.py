"""Node inputs return their outcomes (protocol/outcomes.py, issue 15): each outcome says what the
call's events said, and the events still come out of ``events()`` unchanged."""

from __future__ import annotations

import dataclasses
import hashlib

from protocol import events as ev
from protocol import outcomes
from protocol.config import Policy
from protocol.effects import Expect, QueueThumbnail, Send
from protocol.messages import Purpose, RefuseOriginal, RequestOriginal, Role
from protocol.outcomes import (
    AlreadyHere,
    Announced,
    Collecting,
    Failed,
    HandedOut,
    NotNeeded,
    Pending,
    ReadingOut,
    Repairing,
    Requested,
)
from protocol.peer import Expected
from protocol.store import DispersalState, Incoming, Where
from sim.memstore import MemoryStore
from tests.protocol.harness import MemoryMesh, device_id
from tests.protocol.test_conversations import full_camera_mesh
from tests.protocol.test_failures import offloaded_camera_mesh, replicated_mesh, stored_holders

UNKNOWN = "ab" * 32


def camera_and_desk(*, connect: bool = True) -> MemoryMesh:
    """A camera and a desk that pulls only what its user asks for."""
    mesh = MemoryMesh()
    mesh.add("cam", policy=Policy.THUMBNAILS)
    mesh.add("desk", role=Role.DESK, policy=Policy.THUMBNAILS)
    if connect:
        mesh.connect("cam", "desk")
        mesh.pump()
    return mesh


# --- captured -------------------------------------------------------------------------------


def test_captured_names_the_links_its_thumbnail_was_queued_to() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam")
    alone = cam.store.add_local(b"alone" * 100, name="a.jpg", now=mesh.now, capture_time=mesh.now)
    assert mesh.call(cam, lambda: cam.node.captured(alone.image_id, mesh.now)) == Announced(
        alone.image_id, ()
    )
    mesh.add("desk", role=Role.DESK)
    mesh.add("other")
    mesh.connect("cam", "desk")
    mesh.connect("cam", "other")
    mesh.pump()
    record = cam.store.add_local(b"new" * 100, name="b.jpg", now=mesh.now, capture_time=mesh.now)
    announced = mesh.call(cam, lambda: cam.node.captured(record.image_id, mesh.now))
    peers = tuple(sorted([mesh.devices["desk"].id, mesh.devices["other"].id]))
    assert announced == Announced(record.image_id, peers)


# --- request and refuse ---------------------------------------------------------------------


def test_a_request_is_asked_of_the_peer_that_offered_it() -> None:
    mesh = camera_and_desk()
    cam, desk = mesh.devices["cam"], mesh.devices["desk"]
    image_id = mesh.capture("cam")
    mesh.pump()
    before = len(desk.events)
    outcome = mesh.call(desk, lambda: desk.node.request(image_id, mesh.now))
    assert outcome == Requested(image_id, cam.id)
    # The events are as they were: the decision, and no RequestPending.
    assert desk.events[before:] == [ev.Decided(image_id, "requested")]  # type: ignore[arg-type]
    # Asked again while it is on its way: still from that peer, nothing new on the wire.
    again = mesh.call(desk, lambda: desk.node.request(image_id, mesh.now))
    assert again == Requested(image_id, cam.id)
    mesh.pump()
    assert mesh.call(desk, lambda: desk.node.request(image_id, mesh.now)) == AlreadyHere(image_id)


def test_a_request_nobody_connected_can_serve_is_pending_with_the_events_reason() -> None:
    mesh = camera_and_desk()
    desk = mesh.devices["desk"]
    image_id = mesh.capture("cam")
    mesh.pump()
    mesh.disconnect("cam", "desk")
    outcome = mesh.call(desk, lambda: desk.node.request(image_id, mesh.now))
    (pending,) = desk.of(ev.RequestPending)
    assert outcome == Pending(image_id, pending.reason)  # type: ignore[attr-defined]
    # It stays our user's request: the camera's return brings the original.
    mesh.connect("cam", "desk")
    mesh.pump()
    assert desk.store.image(image_id).where is Where.LOCAL  # type: ignore[union-attr]


def test_a_request_for_a_smaller_copy_is_asked_even_when_the_original_is_here() -> None:
    mesh = camera_and_desk()
    cam, desk = mesh.devices["cam"], mesh.devices["desk"]
    image_id = mesh.capture("cam")
    mesh.pump()
    smaller = mesh.call(desk, lambda: desk.node.request(image_id, mesh.now, max_side=64))
    assert smaller == Requested(image_id, cam.id)


def test_refuse_names_the_peers_it_told() -> None:
    mesh = camera_and_desk()
    cam, desk = mesh.devices["cam"], mesh.devices["desk"]
    image_id = mesh.capture("cam")
    mesh.pump()
    assert mesh.call(desk, lambda: desk.node.refuse(image_id, mesh.now)) == NotNeeded(
        image_id, (cam.id,)
    )
    mesh.disconnect("cam", "desk")
    assert mesh.call(desk, lambda: desk.node.refuse(image_id, mesh.now)) == NotNeeded(image_id, ())


# --- read-out -------------------------------------------------------------------------------


def test_a_read_out_of_a_picture_here_is_handed_out_in_the_call() -> None:
    mesh = camera_and_desk()
    cam = mesh.devices["cam"]
    image_id = mesh.capture("cam")
    outcome = mesh.call(cam, lambda: cam.node.read_out(image_id, mesh.now))
    assert outcome == HandedOut(image_id, image_id)
    assert cam.of(ev.ReadOutDone) == [ev.ReadOutDone(image_id, image_id)]


def test_a_read_out_that_cannot_go_fails_or_waits_with_the_events_reason() -> None:
    mesh, ids = full_camera_mesh()
    cam, small = mesh.devices["cam"], mesh.devices["small"]
    unknown = mesh.call(cam, lambda: cam.node.read_out(UNKNOWN, mesh.now))
    (failed,) = cam.of(ev.ReadOutFailed)
    assert unknown == Failed(UNKNOWN, failed.reason)  # type: ignore[attr-defined]
    # From a third device, through the owner: the bytes follow as events.
    assert mesh.call(small, lambda: small.node.read_out(ids[0], mesh.now)) == ReadingOut(ids[0])
    mesh.pump()
    assert small.of(ev.ReadOutDone) == [ev.ReadOutDone(ids[0], ids[0])]
    # The holder away: with wait_s it waits, saying for what.
    mesh.disconnect("cam", "big")
    waiting = mesh.call(cam, lambda: cam.node.read_out(ids[0], mesh.now, wait_s=30))
    (pending,) = cam.of(ev.ReadOutPending)
    assert waiting == Pending(ids[0], pending.reason)  # type: ignore[attr-defined]


# --- collect --------------------------------------------------------------------------------


def test_collect_says_per_picture_what_happened_in_order() -> None:
    mesh, ids = offloaded_camera_mesh()
    cam = mesh.devices["cam"]
    theirs = mesh.capture("small")
    mesh.pump()
    asked = [ids[0], ids[-1], UNKNOWN, theirs]
    got = mesh.call(cam, lambda: cam.node.collect(asked, mesh.now))
    refusals = {e.image_id: e.reason for e in cam.of(ev.CollectFailed)}  # type: ignore[attr-defined]
    assert got == [
        Collecting(ids[0]),
        AlreadyHere(ids[-1]),
        Failed(UNKNOWN, refusals[UNKNOWN]),
        Failed(theirs, refusals[theirs]),
    ]
    mesh.pump()
    assert cam.store.image(ids[0]).where is Where.LOCAL  # type: ignore[union-attr]


def test_collect_without_room_or_holder_fails_or_waits() -> None:
    mesh, ids = full_camera_mesh()
    cam = mesh.devices["cam"]
    (no_room,) = mesh.call(cam, lambda: cam.node.collect([ids[0]], mesh.now))
    assert isinstance(no_room, Failed) and "no room" in no_room.reason
    cam.store.resize(4_000_000)
    mesh.disconnect("cam", "big")
    (waiting,) = mesh.call(cam, lambda: cam.node.collect([ids[0]], mesh.now))
    (pending,) = cam.of(ev.CollectPending)
    assert waiting == Pending(ids[0], pending.reason)  # type: ignore[attr-defined]


def test_a_raised_mark_reaches_the_collections() -> None:
    """Node.config's setter hands the new config to every machine: a collection refused for
    room under the old mark goes under the raised one (cammesh demo's "room made" step)."""
    mesh, ids = full_camera_mesh()
    cam = mesh.devices["cam"]
    (refused,) = mesh.call(cam, lambda: cam.node.collect([ids[0]], mesh.now))
    assert isinstance(refused, Failed) and "no room" in refused.reason
    cam.node.config = dataclasses.replace(cam.node.config, high_water=0.95)
    assert mesh.call(cam, lambda: cam.node.collect([ids[0]], mesh.now)) == [Collecting(ids[0])]
    mesh.pump()
    assert cam.store.image(ids[0]).where is Where.LOCAL  # type: ignore[union-attr]


def test_requesting_our_own_dispersed_picture_collects_it() -> None:
    mesh, ids = offloaded_camera_mesh()
    cam = mesh.devices["cam"]
    assert mesh.call(cam, lambda: cam.node.request(ids[0], mesh.now)) == Collecting(ids[0])
    mesh.pump()
    assert cam.store.image(ids[0]).where is Where.LOCAL  # type: ignore[union-attr]


# --- repair ---------------------------------------------------------------------------------


def test_repair_says_what_is_copying_and_what_failed() -> None:
    mesh, oldest = replicated_mesh()
    cam = mesh.devices["cam"]
    lost = stored_holders(mesh, "cam", oldest)[0]
    lost_id = mesh.devices[lost].id
    listed = sorted({e.image_id for e in cam.store.dispersion_list() if e.holder == lost_id})
    mesh.disconnect("cam", lost)
    outcome = mesh.call(cam, lambda: cam.node.repair(lost_id, mesh.now))
    assert outcome == Repairing(lost_id, tuple(listed), (), ())
    mesh.pump()
    assert [e.image_id for e in cam.of(ev.Repaired)] == listed

    only, ids = full_camera_mesh()
    cam, big = only.devices["cam"], only.devices["big"]
    only.disconnect("cam", "big")
    outcome = only.call(cam, lambda: cam.node.repair(big.id, only.now))
    said = [Failed(e.image_id, e.reason) for e in cam.of(ev.RepairFailed)]  # type: ignore[attr-defined]
    assert outcome == Repairing(big.id, (), (), tuple(said)) and ids[0] in {f.image_id for f in said}


# --- the outcome functions, without a node ----------------------------------------------------


def _store_with(where: Where) -> tuple[MemoryStore, str]:
    store = MemoryStore(device_id("alone"), 10_000_000)
    record = store.add_local(b"x" * 1000, name="x.jpg", now=1.0)
    if where is Where.DISPERSED:
        store.set_dispersion(record.image_id, device_id("h"), DispersalState.STORED, 1.0)
        store.free_original(record.image_id, 1.0)
    return store, record.image_id


def test_repairing_tells_an_original_here_from_one_still_dispersed() -> None:
    store, here = _store_with(Where.LOCAL)
    away_store, away = _store_with(Where.DISPERSED)
    gone = ev.RepairFailed("cd" * 32, "the only holder")
    assert outcomes.repairing("h", [here], [], store) == Repairing("h", (), (here,), ())
    assert outcomes.repairing("h", [away, gone.image_id], [gone], away_store) == Repairing(
        "h", (away,), (), (Failed(gone.image_id, gone.reason),)
    )


def test_requested_reads_the_effects_then_the_events_then_the_links() -> None:
    image_id, peer = "ef" * 32, device_id("peer")
    ask = Send(peer, RequestOriginal(image_id, True, 0))
    assert outcomes.requested(image_id, [ask], [], {}) == Requested(image_id, peer)
    expect = Expect(peer, Expected(image_id, Purpose.SYNC, Incoming.ORIGINAL, 0, size=10))
    assert outcomes.requested(image_id, [expect], [], {}) == Requested(image_id, peer)
    other = Send(peer, RequestOriginal("01" * 32, True, 0))
    pending = ev.RequestPending(image_id, "why")
    assert outcomes.requested(image_id, [other], [pending], {}) == Pending(image_id, "why")
    assert isinstance(outcomes.requested(image_id, [], [], {}), Pending)


def test_announced_and_not_needed_count_only_their_picture() -> None:
    image_id, peer, other = "ef" * 32, device_id("a"), device_id("b")
    effects = [QueueThumbnail(other, image_id, None), QueueThumbnail(peer, "01" * 32, None)]
    assert outcomes.announced(image_id, effects) == Announced(image_id, (other,))
    refusals = [Send(peer, RefuseOriginal(image_id)), Send(other, RefuseOriginal("01" * 32))]
    assert outcomes.not_needed(image_id, refusals) == NotNeeded(image_id, (peer,))


def test_read_out_takes_the_last_word_of_the_call() -> None:
    image_id = hashlib.sha256(b"x").hexdigest()
    assert outcomes.read_out(image_id, []) == ReadingOut(image_id)
    words = [ev.ReadOutPending(image_id, "away"), ev.ReadOutFailed("01" * 32, "other"),
             ev.ReadOutChunk(image_id, 0, b"x"), ev.ReadOutDone(image_id, image_id)]
    assert outcomes.read_out(image_id, words) == HandedOut(image_id, image_id)
    assert outcomes.read_out(image_id, words[:2]) == Pending(image_id, "away")


def test_outcomes_are_frozen_values() -> None:
    outcome = Requested("ef" * 32, device_id("a"))
    assert outcome == Requested("ef" * 32, device_id("a"))
    try:
        outcome.peer = "x"  # type: ignore[misc]
    except dataclasses.FrozenInstanceError:
        pass
    else:  # pragma: no cover
        raise AssertionError("an outcome must not change after it is returned")
