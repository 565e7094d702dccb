"""protocol/dispersal.py's paths that no other test reached, and the mutants that survived it.

Behaviour tests through Node's public inputs and the conversation harness
(tests/protocol/harness.py): each one drives a mesh to the state a branch of the
owner's or the holder's side decides, and asserts what the devices then do on the
wire and on their cards.  The mutation triage is tests/mutation/triage_dispersal.md.
"""

from __future__ import annotations

import dataclasses
import hashlib

from protocol import events as ev
from protocol.config import Policy
from protocol.messages import (
    Chunk,
    DisperseAccept,
    DisperseReject,
    DisperseRequest,
    OriginalComplete,
    OriginalHeader,
    Release,
    Role,
    Stored,
)
from protocol.store import DispersalState, Incoming, Where
from tests.protocol.harness import MemoryMesh, held_plaintext
from tests.protocol.test_checks import (
    CHUNK,
    OTHER,
    dispersed,
    dispersing,
    feed,
    last,
    streaming_to_holder,
    until,
)
from tests.protocol.test_failures import SIZE, replicated_mesh, stored_holders


def count(mesh: MemoryMesh, src: str, dst: str, kind: type, image_id: str | None = None) -> int:
    return sum(
        1
        for m in mesh.between(src, dst)
        if isinstance(m, kind) and (image_id is None or getattr(m, "image_id", None) == image_id)
    )


def violations(mesh: MemoryMesh, name: str) -> list[str]:
    return [e.code for e in mesh.devices[name].of(ev.ProtocolViolation)]  # type: ignore[attr-defined]


# --- the owner's answers to a holder's messages ------------------------------------------------


def test_an_accept_for_a_picture_never_offered_is_answered_with_a_release() -> None:
    mesh, _ = dispersing()
    cam = mesh.devices["cam"]
    assert feed(mesh, "big", "cam", DisperseAccept(OTHER, 1000, 0)) is None
    mesh.pump()
    assert count(mesh, "cam", "big", Release, OTHER) == 1  # frees the room it reserved
    assert not any(e.image_id == OTHER for e in cam.of(ev.DispersalAccepted))  # type: ignore[attr-defined]
    assert cam.store.dispersion(OTHER) == []
    assert count(mesh, "cam", "big", OriginalHeader, OTHER) == 0


def test_a_replayed_accept_after_stored_neither_resends_nor_releases_the_held_copy() -> None:
    """Found writing these tests: the owner answered a second accept for a STORED entry with
    a Release, the holder deleted the only copy, and the owner still listed it as STORED."""
    mesh, image_id = dispersed()
    cam, big = mesh.devices["cam"], mesh.devices["big"]
    size = cam.store.sealed_form(image_id).size
    headers = count(mesh, "cam", "big", OriginalHeader, image_id)
    assert feed(mesh, "big", "cam", DisperseAccept(image_id, size, 0)) is None
    mesh.pump()
    assert count(mesh, "cam", "big", Release, image_id) == 0
    assert count(mesh, "cam", "big", OriginalHeader, image_id) == headers  # nothing sent again
    assert [e.state for e in cam.store.dispersion(image_id)] == [DispersalState.STORED]
    data = held_plaintext(cam.store, big.store, image_id)
    assert data is not None and hashlib.sha256(data).hexdigest() == image_id


def test_a_reject_from_a_holder_never_asked_only_updates_its_room() -> None:
    mesh, image_id = dispersing()
    cam = mesh.devices["cam"]
    big = mesh.devices["big"]
    assert feed(mesh, "big", "cam", DisperseReject(OTHER, "no", 12345)) is None
    assert cam.node.peers()[big.id].advertised_free == 12345
    assert cam.of(ev.DispersalRejected) == []
    # The real ask stands: the holder's accept still streams it.
    mesh.pump()
    assert cam.store.image(image_id).where is Where.DISPERSED  # type: ignore[union-attr]


def test_a_reject_skips_that_holder_for_that_picture_until_retry_s_then_asks_again() -> None:
    mesh = MemoryMesh()
    cam = mesh.add(
        "cam", capacity=1_000_000, high_water=0.5, chunk_size=CHUNK, policy=Policy.THUMBNAILS,
        retry_s=30.0,
    )
    mesh.add("big", capacity=64_000_000, policy=Policy.THUMBNAILS)
    mesh.connect("cam", "big")
    mesh.pump()
    for _ in range(4):
        mesh.capture("cam", size=SIZE)
    mesh.pump(until=until(DisperseRequest))
    request = last(mesh, DisperseRequest)
    assert isinstance(request, DisperseRequest)
    # The holder's node is bypassed: its "reject" is fed, and its real answer is dropped.
    mesh.links.discard(("big", "cam"))
    assert feed(mesh, "big", "cam", DisperseReject(request.image_id, "busy", 64_000_000)) is None
    assert [e.image_id for e in cam.of(ev.DispersalRejected)] == [request.image_id]  # type: ignore[attr-defined]
    deadline = cam.node.next_deadline()
    assert deadline is not None and deadline <= mesh.now + 30.0
    asked = count(mesh, "cam", "big", DisperseRequest, request.image_id)
    mesh.advance(10.0)
    mesh.links.add(("big", "cam"))
    mesh.pump()
    # Skipped while it waits out retry_s: not asked for that one again yet.
    assert count(mesh, "cam", "big", DisperseRequest, request.image_id) == asked
    mesh.advance(25.0)  # past retry_s
    mesh.pump()
    assert count(mesh, "cam", "big", DisperseRequest, request.image_id) == asked + 1
    assert cam.store.image(request.image_id).where is Where.DISPERSED  # type: ignore[union-attr]


def test_stored_arriving_while_the_picture_comes_home_is_ignored() -> None:
    """Home and verified: the entries are COLLECTING (release pending).  A late STORED from
    the holder neither frees the picture again nor re-lists the holder nor gets a Release."""
    mesh, image_id = dispersed()
    cam = mesh.devices["cam"]
    cam.store.resize(4_000_000)  # offloaded: room to bring it home
    mesh.call(cam, lambda: cam.node.collect([image_id], mesh.now))
    mesh.pump(until=lambda d: isinstance(d.msg, OriginalComplete) and d.dst == "cam")
    assert cam.store.image(image_id).where is Where.LOCAL  # type: ignore[union-attr]
    assert [e.state for e in cam.store.dispersion(image_id)] == [DispersalState.COLLECTING]
    releases = count(mesh, "cam", "big", Release, image_id)
    digest = cam.store.sealed_form(image_id).digest
    assert feed(mesh, "big", "cam", Stored(image_id, digest)) is None
    assert [e.state for e in cam.store.dispersion(image_id)] == [DispersalState.COLLECTING]
    assert cam.store.image(image_id).where is Where.LOCAL  # type: ignore[union-attr]
    mesh.pump()
    assert count(mesh, "cam", "big", Release, image_id) == releases + 1  # the collection's own
    assert cam.store.dispersion(image_id) == []
    assert mesh.devices["big"].store.held(image_id) is None


def test_stored_for_a_picture_never_offered_is_answered_with_a_release() -> None:
    mesh, _ = dispersing()
    cam = mesh.devices["cam"]
    assert feed(mesh, "big", "cam", Stored(OTHER, "0" * 64)) is None
    mesh.pump()
    assert count(mesh, "cam", "big", Release, OTHER) == 1
    assert cam.store.dispersion(OTHER) == []


def test_stored_after_the_stream_frees_the_original_with_its_holder_listed() -> None:
    mesh, sent = streaming_to_holder()
    cam, big = mesh.devices["cam"], mesh.devices["big"]
    mesh.pump(until=until(Stored))
    assert cam.of(ev.Dispersed) == [ev.Dispersed(sent.image_id, (big.id,))]
    assert cam.store.image(sent.image_id).where is Where.DISPERSED  # type: ignore[union-attr]
    assert cam.store.original_bytes(sent.image_id) is None
    data = held_plaintext(cam.store, big.store, sent.image_id)
    assert data is not None and hashlib.sha256(data).hexdigest() == sent.image_id


# --- the holder's side ---------------------------------------------------------------------------


def test_a_release_from_a_peer_that_is_not_the_owner_keeps_the_held_copy() -> None:
    mesh, image_id = dispersed()
    big = mesh.devices["big"]
    mesh.add("desk", role=Role.DESK, policy=Policy.THUMBNAILS)
    mesh.connect("desk", "big")
    mesh.pump()
    assert feed(mesh, "desk", "big", Release(image_id)) is None
    assert big.store.held(image_id) is not None
    assert big.of(ev.Released) == []
    assert violations(mesh, "big") == []


def test_a_release_before_the_original_is_stored_drops_the_reservation_and_the_bytes() -> None:
    mesh, sent = streaming_to_holder()
    big = mesh.devices["big"]
    mesh.pump(until=lambda d: isinstance(d.msg, Chunk) and d.dst == "big")
    assert big.store.partial_offset(sent.image_id, Incoming.HELD) > 0
    assert big.store.usage().reserved > 0
    used_before = big.store.usage().used
    assert feed(mesh, "cam", "big", Release(sent.image_id)) is None
    assert big.store.usage().reserved == 0
    assert big.store.partial_offset(sent.image_id, Incoming.HELD) == 0
    assert big.store.usage().used < used_before
    mesh.pump()  # the rest of the owner's stream is ignored, not taken for a lie
    assert violations(mesh, "big") == []
    assert big.store.held(sent.image_id) is None
    assert not any(isinstance(m, Stored) for m in mesh.between("big", "cam"))
    assert big.of(ev.Released) == []


def test_a_repeated_request_for_what_is_held_is_answered_stored_at_once() -> None:
    mesh, image_id = dispersed()
    cam, big = mesh.devices["cam"], mesh.devices["big"]
    form = cam.store.sealed_form(image_id)
    reserved = big.store.usage().reserved
    assert feed(mesh, "cam", "big", DisperseRequest(image_id, form.size, cam.id)) is None
    mesh.pump()
    stored = [m for m in mesh.between("big", "cam") if isinstance(m, Stored)]
    assert len(stored) == 2 and stored[-1].digest == form.digest
    assert big.store.usage().reserved == reserved
    assert count(mesh, "big", "cam", DisperseAccept, image_id) == 1  # only the first time


def test_a_holder_accepts_exactly_up_to_its_mark_and_rejects_one_byte_more() -> None:
    for size, accepted in ((50_000, True), (50_001, False)):
        mesh = MemoryMesh()
        cam = mesh.add("cam", policy=Policy.THUMBNAILS)
        h = mesh.add("h", capacity=100_000, high_water=0.5, max_share_per_peer=1.0,
                     policy=Policy.THUMBNAILS)
        mesh.connect("cam", "h")
        mesh.pump()
        assert feed(mesh, "cam", "h", DisperseRequest(OTHER, size, cam.id)) is None
        assert h.store.usage().reserved == (size if accepted else 0)
        mesh.pump()  # (the camera never asked: it releases what was reserved)
        assert count(mesh, "h", "cam", DisperseAccept) == int(accepted), size
        assert count(mesh, "h", "cam", DisperseReject) == int(not accepted), size


def test_a_holder_accepts_exactly_its_share_per_peer_and_rejects_one_byte_more() -> None:
    for size, accepted in ((10_000, True), (10_001, False)):
        mesh = MemoryMesh()
        cam = mesh.add("cam", policy=Policy.THUMBNAILS)
        mesh.add("h", capacity=1_000_000, max_share_per_peer=0.01, policy=Policy.THUMBNAILS)
        mesh.connect("cam", "h")
        mesh.pump()
        assert feed(mesh, "cam", "h", DisperseRequest(OTHER, size, cam.id)) is None
        mesh.pump()
        assert count(mesh, "h", "cam", DisperseAccept) == int(accepted), size


def test_a_peers_share_counts_what_it_already_holds_and_what_is_on_its_way() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam", policy=Policy.THUMBNAILS)
    mesh.add("h", capacity=1_000_000, max_share_per_peer=0.01, policy=Policy.THUMBNAILS)
    mesh.connect("cam", "h")
    mesh.pump()
    first = hashlib.sha256(b"first").hexdigest()
    second = hashlib.sha256(b"second").hexdigest()
    assert feed(mesh, "cam", "h", DisperseRequest(first, 6_000, cam.id)) is None
    assert feed(mesh, "cam", "h", DisperseRequest(second, 6_000, cam.id)) is None  # on its way: 6k
    mesh.pump()
    assert count(mesh, "h", "cam", DisperseAccept, first) == 1
    rejects = [m for m in mesh.between("h", "cam") if isinstance(m, DisperseReject)]
    assert [r.image_id for r in rejects] == [second]
    assert "hold 6000 bytes" in rejects[0].reason
    assert rejects[0].free == 1_000_000 - 6_000  # the first one's reservation is taken


def test_a_reject_names_the_free_room_and_the_size_asked() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam", policy=Policy.THUMBNAILS)
    mesh.add("h", capacity=100_000, high_water=0.5, policy=Policy.THUMBNAILS)
    mesh.connect("cam", "h")
    mesh.pump()
    assert feed(mesh, "cam", "h", DisperseRequest(OTHER, 60_000, cam.id)) is None
    mesh.pump()
    (reject,) = [m for m in mesh.between("h", "cam") if isinstance(m, DisperseReject)]
    assert "100000 bytes free" in reject.reason and "60000 asked" in reject.reason


def test_a_holder_resumes_an_interrupted_dispersal_from_the_bytes_it_has() -> None:
    mesh, sent = streaming_to_holder()
    cam, big = mesh.devices["cam"], mesh.devices["big"]
    mesh.pump(until=lambda d: isinstance(d.msg, Chunk) and d.dst == "big" and d.msg.offset >= CHUNK)
    got = big.store.partial_offset(sent.image_id, Incoming.HELD)
    assert got >= 2 * CHUNK
    mesh.disconnect("cam", "big")
    mesh.connect("cam", "big")
    mesh.pump()
    accepts = [m for m in mesh.between("big", "cam") if isinstance(m, DisperseAccept)]
    assert accepts[-1].offset == got
    headers = [m for m in mesh.between("cam", "big") if isinstance(m, OriginalHeader)]
    assert headers[-1].offset == got
    assert cam.store.image(sent.image_id).where is Where.DISPERSED  # type: ignore[union-attr]
    data = held_plaintext(cam.store, big.store, sent.image_id)
    assert data is not None and hashlib.sha256(data).hexdigest() == sent.image_id
    assert big.store.usage().reserved == 0


# --- the owner's choices -----------------------------------------------------------------------


def test_the_oldest_capture_goes_first_and_only_as_much_as_the_excess_needs() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam", capacity=1_000_000, high_water=0.5, policy=Policy.THUMBNAILS)
    mesh.add("big", capacity=64_000_000, policy=Policy.THUMBNAILS)
    mesh.connect("cam", "big")
    mesh.pump()
    ids = []
    for _ in range(4):
        ids.append(mesh.capture("cam", size=SIZE))
        mesh.advance(1.0)
    mesh.capture("cam", size=60_000)  # 660 kB: 160 kB over the 500 kB mark
    mesh.pump()
    dispersed_ids = [e.image_id for e in cam.of(ev.Dispersed)]  # type: ignore[attr-defined]
    assert dispersed_ids == ids[:2]  # two of 150 kB cover 160 kB; not one more
    assert cam.store.usage().used <= 500_000
    assert cam.of(ev.CardFull) == []


def test_a_desk_is_asked_before_a_camera_with_more_room() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam", capacity=1_000_000, high_water=0.5, policy=Policy.THUMBNAILS)
    mesh.add("cam2", capacity=64_000_000, policy=Policy.THUMBNAILS)
    desk = mesh.add("desk", role=Role.DESK, capacity=8_000_000, policy=Policy.THUMBNAILS)
    mesh.connect("cam", "cam2")
    mesh.connect("cam", "desk")
    mesh.pump()
    for _ in range(4):
        mesh.capture("cam", size=SIZE)
    mesh.pump()
    assert cam.of(ev.Dispersed) and all(
        e.holders == (desk.id,) for e in cam.of(ev.Dispersed)  # type: ignore[attr-defined]
    )
    assert count(mesh, "cam", "cam2", DisperseRequest) == 0


def test_a_peer_without_room_for_the_sealed_original_is_not_asked() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam", capacity=1_000_000, high_water=0.5, policy=Policy.THUMBNAILS)
    mesh.add("tiny", capacity=100_000, policy=Policy.THUMBNAILS)
    mesh.connect("cam", "tiny")
    mesh.pump()
    for _ in range(4):
        mesh.capture("cam", size=SIZE)
    mesh.pump()
    assert count(mesh, "cam", "tiny", DisperseRequest) == 0
    assert len(cam.of(ev.CardFull)) == 1


def test_a_card_back_under_its_mark_stops_dispersing_and_forgets_its_rejections() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam", capacity=1_000_000, high_water=0.5, policy=Policy.THUMBNAILS)
    mesh.add("small", capacity=1_000_000, high_water=0.5, policy=Policy.THUMBNAILS)
    mesh.capture("small", size=400_000)
    mesh.connect("cam", "small")
    mesh.pump()
    for _ in range(4):
        mesh.capture("cam", size=SIZE)
    mesh.pump()
    assert cam.of(ev.DispersalRejected) and len(cam.of(ev.CardFull)) == 1
    assert cam.node.next_deadline() is not None
    cam.store.resize(4_000_000)  # offloaded: far below its mark now
    mesh.advance(1.0)
    mesh.pump()
    assert count(mesh, "cam", "small", DisperseRequest) == 1  # no more asks
    # Full again later: said again (the first CardFull was for the earlier fill).
    cam.store.resize(1_000_000)
    mesh.advance(31.0)
    mesh.pump()
    assert len(cam.of(ev.CardFull)) == 2


def test_a_rejected_ask_moves_on_to_the_next_holder_at_once() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam", capacity=1_000_000, high_water=0.5, policy=Policy.THUMBNAILS)
    mesh.add("small", role=Role.DESK, capacity=1_000_000, high_water=0.5,
             policy=Policy.THUMBNAILS)
    big = mesh.add("big", capacity=64_000_000, policy=Policy.THUMBNAILS)
    mesh.capture("small", size=400_000)
    mesh.connect("cam", "small")
    mesh.connect("cam", "big")
    mesh.pump()
    ids = [mesh.capture("cam", size=SIZE) for _ in range(4)]
    mesh.pump()  # no tick: the reject itself moves it on
    assert cam.of(ev.Dispersed)[0] == ev.Dispersed(ids[0], (big.id,))


def test_two_replicas_ask_two_holders_and_a_third_is_never_asked() -> None:
    mesh, oldest = replicated_mesh(holders=3, replicas=2)
    asked = [n for n in ("h1", "h2", "h3") if count(mesh, "cam", n, DisperseRequest, oldest)]
    assert len(asked) == 2
    assert stored_holders(mesh, "cam", oldest) == sorted(asked)


# --- repair ------------------------------------------------------------------------------------


def test_a_camera_restarted_with_more_replicas_copies_its_dispersed_originals_again() -> None:
    mesh, oldest = replicated_mesh(holders=2, replicas=1)
    cam = mesh.devices["cam"]
    (first,) = stored_holders(mesh, "cam", oldest)
    cam.config = dataclasses.replace(cam.config, replicas=2)
    mesh.restart("cam")
    for holder in ("h1", "h2"):
        mesh.connect("cam", holder)
    mesh.pump()
    other = "h2" if first == "h1" else "h1"
    assert ev.Repaired(oldest, mesh.devices[other].id) in cam.events
    assert stored_holders(mesh, "cam", oldest) == ["h1", "h2"]


def test_repairing_a_holder_of_a_picture_still_here_only_drops_its_entry() -> None:
    mesh, image_id = dispersing()
    cam, big = mesh.devices["cam"], mesh.devices["big"]
    mesh.disconnect("cam", "big")
    assert [e.state for e in cam.store.dispersion(image_id)] == [DispersalState.REQUESTED]
    mesh.call(cam, lambda: cam.node.repair(big.id, mesh.now))
    assert cam.of(ev.RepairFailed) == []
    assert cam.store.dispersion(image_id) == []
    assert cam.store.image(image_id).where is Where.LOCAL  # type: ignore[union-attr]
    assert not any(isinstance(e, ev.Repaired) for e in cam.events)


def test_a_repair_waits_for_a_holder_to_copy_from_and_goes_when_one_is_back() -> None:
    mesh, oldest = replicated_mesh()
    cam = mesh.devices["cam"]
    lost, kept = stored_holders(mesh, "cam", oldest)
    spare = next(n for n in ("h1", "h2", "h3") if n not in (lost, kept))
    mesh.disconnect("cam", lost)
    mesh.disconnect("cam", kept)
    mesh.call(cam, lambda: cam.node.repair(mesh.devices[lost].id, mesh.now))
    mesh.pump()
    mesh.advance(5.0)
    mesh.pump()
    assert count(mesh, "cam", spare, DisperseRequest, oldest) == 0  # nothing to copy from
    assert cam.of(ev.RepairFailed) == []
    assert stored_holders(mesh, "cam", oldest) == [kept]
    mesh.connect("cam", kept)
    mesh.pump()
    assert ev.Repaired(oldest, mesh.devices[spare].id) in cam.events
    assert stored_holders(mesh, "cam", oldest) == sorted([kept, spare])
    data = held_plaintext(cam.store, mesh.devices[spare].store, oldest)
    assert data is not None and hashlib.sha256(data).hexdigest() == oldest


def test_a_repair_under_way_asks_its_new_holder_once() -> None:
    mesh, oldest = replicated_mesh()
    cam = mesh.devices["cam"]
    lost, kept = stored_holders(mesh, "cam", oldest)
    spare = next(n for n in ("h1", "h2", "h3") if n not in (lost, kept))
    mesh.disconnect("cam", lost)
    mesh.call(cam, lambda: cam.node.repair(mesh.devices[lost].id, mesh.now))
    mesh.pump(until=until(DisperseRequest))
    for _ in range(3):
        mesh.advance(1.0)  # ticks while the ask is on its way: not asked again
    mesh.pump()
    assert count(mesh, "cam", spare, DisperseRequest, oldest) == 1
    assert stored_holders(mesh, "cam", oldest) == sorted([kept, spare])
    mesh.advance(1.0)
    mesh.pump()
    assert count(mesh, "cam", spare, DisperseRequest, oldest) == 1  # done: nothing more


def test_a_repair_whose_source_left_before_the_accept_releases_the_new_holder() -> None:
    mesh, oldest = replicated_mesh()
    cam = mesh.devices["cam"]
    lost, kept = stored_holders(mesh, "cam", oldest)
    spare = next(n for n in ("h1", "h2", "h3") if n not in (lost, kept))
    mesh.disconnect("cam", lost)
    mesh.call(cam, lambda: cam.node.repair(mesh.devices[lost].id, mesh.now))
    mesh.pump(until=lambda d: isinstance(d.msg, DisperseRequest) and d.dst == spare)
    mesh.disconnect("cam", kept)  # the only copy to relay from goes
    mesh.pump()
    assert count(mesh, "cam", spare, Release, oldest) == 1
    assert mesh.devices[spare].store.usage().reserved == 0
    assert not any(
        e.holder == mesh.devices[spare].id for e in cam.of(ev.DispersalAccepted)  # type: ignore[attr-defined]
    )
    assert count(mesh, "cam", spare, OriginalHeader, oldest) == 0


def test_a_new_holder_that_went_before_answering_a_repair_is_released_when_back() -> None:
    mesh, oldest = replicated_mesh()
    cam = mesh.devices["cam"]
    lost, kept = stored_holders(mesh, "cam", oldest)
    spare = next(n for n in ("h1", "h2", "h3") if n not in (lost, kept))
    mesh.disconnect("cam", lost)
    mesh.call(cam, lambda: cam.node.repair(mesh.devices[lost].id, mesh.now))
    mesh.pump(until=lambda d: isinstance(d.msg, DisperseRequest) and d.dst == spare)
    mesh.disconnect("cam", spare)
    mesh.connect("cam", spare)
    mesh.pump()
    # Not ours to resend (the original is not on our card): its reservation is released.
    assert count(mesh, "cam", spare, Release, oldest) == 1
    assert count(mesh, "cam", spare, DisperseRequest, oldest) == 1
    mesh.advance(1.0)  # and the repair asks again
    mesh.pump()
    assert ev.Repaired(oldest, mesh.devices[spare].id) in cam.events
    assert stored_holders(mesh, "cam", oldest) == sorted([kept, spare])


# --- more of the paths above, pinned -----------------------------------------------------------


def many_dispersed(holders: int, replicas: int, pictures: int = 8) -> tuple[MemoryMesh, list[str]]:
    """A camera that dispersed several originals (``replicas`` copies each) over ``holders``."""
    mesh = MemoryMesh()
    mesh.add("cam", capacity=1_000_000, high_water=0.5, chunk_size=CHUNK,
             policy=Policy.THUMBNAILS, replicas=replicas)
    for n in range(1, holders + 1):
        mesh.add(f"h{n}", capacity=64_000_000, policy=Policy.THUMBNAILS, chunk_size=CHUNK)
        mesh.connect("cam", f"h{n}")
    mesh.pump()
    ids = []
    for _ in range(pictures):  # 1.2 MB in all: 5 must go
        ids.append(mesh.capture("cam", size=SIZE))
        mesh.pump()
    cam = mesh.devices["cam"]
    out = [i for i in ids if cam.store.image(i).where is Where.DISPERSED]  # type: ignore[union-attr]
    assert len(out) >= 5
    return mesh, out


def test_repairing_a_lost_only_holder_names_every_picture_it_held() -> None:
    mesh, _ = many_dispersed(holders=2, replicas=1)
    cam = mesh.devices["cam"]
    lost = mesh.devices["h1"].id
    held = {e.image_id for e in cam.store.dispersion_list() if e.holder == lost}
    order = [e.holder == lost for e in cam.store.dispersion_list()]
    assert len(held) >= 2 and False in order[: max(i for i, x in enumerate(order) if x)]
    mesh.disconnect("cam", "h1")
    mesh.call(cam, lambda: cam.node.repair(lost, mesh.now))
    assert {e.image_id for e in cam.of(ev.RepairFailed)} == held  # type: ignore[attr-defined]
    assert {e.image_id for e in cam.store.dispersion_list() if e.holder == lost} == held


def test_repairing_a_lost_holder_copies_every_picture_it_held() -> None:
    mesh, ids = many_dispersed(holders=4, replicas=2)
    cam = mesh.devices["cam"]
    lost = mesh.devices["h1"].id
    held = {e.image_id for e in cam.store.dispersion_list() if e.holder == lost}
    order = [e.holder == lost for e in cam.store.dispersion_list()]
    assert len(held) >= 2 and False in order[: max(i for i, x in enumerate(order) if x)]
    mesh.disconnect("cam", "h1")
    mesh.call(cam, lambda: cam.node.repair(lost, mesh.now))
    mesh.pump()
    assert {e.image_id for e in cam.events if isinstance(e, ev.Repaired)} == held
    for image_id in ids:
        stored = [e for e in cam.store.dispersion(image_id) if e.state is DispersalState.STORED]
        assert len(stored) == 2 and lost not in {e.holder for e in stored}


def test_a_repair_asks_exactly_as_many_new_holders_as_copies_are_missing() -> None:
    mesh, oldest = replicated_mesh(holders=4, replicas=2)
    cam = mesh.devices["cam"]
    lost, kept = stored_holders(mesh, "cam", oldest)
    mesh.disconnect("cam", lost)
    mesh.call(cam, lambda: cam.node.repair(mesh.devices[lost].id, mesh.now))
    mesh.pump()
    spares = [n for n in ("h1", "h2", "h3", "h4") if n not in (lost, kept)]
    assert sum(count(mesh, "cam", n, DisperseRequest, oldest) for n in spares) == 1
    assert len(stored_holders(mesh, "cam", oldest)) == 2


def test_a_repaired_picture_is_not_announced_repaired_again() -> None:
    mesh, oldest = replicated_mesh()
    cam = mesh.devices["cam"]
    lost, kept = stored_holders(mesh, "cam", oldest)
    spare = next(n for n in ("h1", "h2", "h3") if n not in (lost, kept))
    mesh.disconnect("cam", lost)
    mesh.call(cam, lambda: cam.node.repair(mesh.devices[lost].id, mesh.now))
    mesh.pump()
    mesh.advance(1.0)  # a look after the repair: it is done
    digest = cam.store.sealed_form(oldest).digest if cam.store.picture_key(oldest) else ""
    held = mesh.devices[spare].store.held(oldest)
    assert held is not None
    assert feed(mesh, spare, "cam", Stored(oldest, held.digest)) is None  # a repeated answer
    assert digest is not None
    assert [e for e in cam.events if isinstance(e, ev.Repaired)] == [
        ev.Repaired(oldest, mesh.devices[spare].id)
    ]


def test_a_dropped_ask_for_a_picture_still_here_goes_to_another_holder() -> None:
    mesh, image_id = dispersing()
    cam, big = mesh.devices["cam"], mesh.devices["big"]
    mesh.add("other", capacity=64_000_000, policy=Policy.THUMBNAILS)
    mesh.links.discard(("big", "cam"))  # big's answer never comes
    mesh.connect("cam", "other")
    mesh.pump()
    assert count(mesh, "cam", "other", DisperseRequest, image_id) == 0  # asked of big already
    mesh.disconnect("cam", "big")
    mesh.call(cam, lambda: cam.node.repair(big.id, mesh.now))
    mesh.pump()
    assert count(mesh, "cam", "other", DisperseRequest, image_id) == 1
    assert cam.store.image(image_id).where is Where.DISPERSED  # type: ignore[union-attr]
    assert [e.holder for e in cam.store.dispersion(image_id)] == [mesh.devices["other"].id]


def test_a_card_exactly_at_its_mark_disperses_nothing_and_one_byte_over_does() -> None:
    for extra, asks in ((0, 0), (1, 1)):
        mesh = MemoryMesh()
        cam = mesh.add("cam", capacity=1_000_000, high_water=0.5, policy=Policy.THUMBNAILS)
        mesh.add("big", capacity=64_000_000, policy=Policy.THUMBNAILS)
        mesh.connect("cam", "big")
        mesh.pump()
        mesh.capture("cam", size=200_000)
        mesh.capture("cam", size=150_000)
        mesh.capture("cam", size=150_000 + extra)
        assert cam.store.usage().used == 500_000 + extra
        mesh.pump()
        assert count(mesh, "cam", "big", DisperseRequest) == asks, extra


def test_an_excess_covered_exactly_disperses_no_more() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam", capacity=1_000_000, high_water=0.5, policy=Policy.THUMBNAILS)
    mesh.add("big", capacity=64_000_000, policy=Policy.THUMBNAILS)
    mesh.connect("cam", "big")
    mesh.pump()
    for size in (150_000, 150_000, 250_000, 250_000):  # 800 kB: 300 kB over
        mesh.capture("cam", size=size)
        mesh.advance(1.0)
    mesh.pump()
    assert len(cam.of(ev.Dispersed)) == 2
    assert cam.store.usage().used == 500_000


def test_a_rejected_holder_is_asked_again_exactly_retry_s_later() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam", capacity=1_000_000, high_water=0.5, chunk_size=CHUNK,
                   policy=Policy.THUMBNAILS, retry_s=30.0)
    mesh.add("big", capacity=64_000_000, policy=Policy.THUMBNAILS)
    mesh.connect("cam", "big")
    mesh.pump()
    for _ in range(4):
        mesh.capture("cam", size=SIZE)
    mesh.pump(until=until(DisperseRequest))
    request = last(mesh, DisperseRequest)
    assert isinstance(request, DisperseRequest)
    mesh.links.discard(("big", "cam"))
    assert feed(mesh, "big", "cam", DisperseReject(request.image_id, "busy", 64_000_000)) is None
    assert cam.node.next_deadline() == mesh.now + 10.0  # the keepalive comes first
    mesh.links.add(("big", "cam"))
    mesh.advance(29.0)
    asked = count(mesh, "cam", "big", DisperseRequest, request.image_id)
    mesh.advance(1.0)  # exactly retry_s after the reject
    mesh.pump()
    assert count(mesh, "cam", "big", DisperseRequest, request.image_id) == asked + 1


def test_the_dispersion_list_records_when_each_step_happened() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam", capacity=1_000_000, high_water=0.5, chunk_size=CHUNK,
                   policy=Policy.THUMBNAILS)
    mesh.add("big", capacity=64_000_000, policy=Policy.THUMBNAILS)
    mesh.connect("cam", "big")
    mesh.pump()
    for _ in range(4):
        mesh.capture("cam", size=SIZE)
    mesh.pump(until=until(DisperseRequest))
    request = last(mesh, DisperseRequest)
    assert isinstance(request, DisperseRequest)
    (entry,) = cam.store.dispersion(request.image_id)
    assert entry.state is DispersalState.REQUESTED and entry.updated_at == mesh.now
    mesh.now += 5.0
    mesh.pump(until=until(DisperseAccept))
    (entry,) = cam.store.dispersion(request.image_id)
    assert entry.state is DispersalState.ACCEPTED and entry.updated_at == mesh.now
    mesh.now += 5.0
    mesh.pump()
    (entry,) = cam.store.dispersion(request.image_id)
    assert entry.state is DispersalState.STORED and entry.updated_at == mesh.now
    assert mesh.devices["big"].store.held(request.image_id).stored_at == mesh.now  # type: ignore[union-attr]


def test_a_rejection_is_retried_at_its_own_deadline_and_forgotten_at_the_mark() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam", capacity=1_000_000, high_water=0.5, chunk_size=CHUNK,
                   policy=Policy.THUMBNAILS, keepalive_s=100.0, peer_timeout_s=200.0)
    mesh.add("small", role=Role.DESK, capacity=1_000_000, high_water=0.5,
             policy=Policy.THUMBNAILS, keepalive_s=100.0, peer_timeout_s=200.0)
    mesh.add("big", capacity=64_000_000, policy=Policy.THUMBNAILS, keepalive_s=100.0,
             peer_timeout_s=200.0)
    mesh.capture("small", size=400_000)
    mesh.connect("cam", "small")
    mesh.pump()
    for size in (150_000, 200_000, 150_000, 150_000):  # 650 kB: one 150 kB must go
        mesh.capture("cam", size=size)
        mesh.advance(0.0)
    mesh.pump()
    rejected_at = mesh.now
    assert cam.of(ev.DispersalRejected)
    assert cam.node.next_deadline() == rejected_at + 30.0  # the retry, before any keepalive
    mesh.connect("cam", "big")
    mesh.pump()
    assert cam.store.usage().used == 500_000  # exactly at the mark now
    assert cam.node.next_deadline() == mesh.now + 100.0  # the retry is forgotten


def two_under_repair(first_source_away: bool) -> tuple[MemoryMesh, str, str, str]:
    """Two pictures h1 held (ids a < b), each with its other copy on a different holder; h1 is
    lost.  Returns the mesh, a, b and the holder of b's other copy."""
    mesh, ids = many_dispersed(holders=4, replicas=2)
    cam = mesh.devices["cam"]
    lost = mesh.devices["h1"].id
    names = {mesh.devices[n].id: n for n in ("h1", "h2", "h3", "h4")}
    other = {}
    for image_id in sorted(ids):
        holders = {e.holder for e in cam.store.dispersion(image_id)}
        if lost in holders:
            other[image_id] = names[(holders - {lost}).pop()]
    pairs = [(a, b) for a in sorted(other) for b in sorted(other) if a < b and other[a] != other[b]]
    assert pairs, other
    a, b = pairs[0]
    mesh.disconnect("cam", "h1")
    if first_source_away:
        mesh.disconnect("cam", other[a])
    return mesh, a, b, other[b]


def test_a_repair_waiting_for_one_pictures_source_goes_on_with_the_next() -> None:
    mesh, a, b, _ = two_under_repair(first_source_away=True)
    cam = mesh.devices["cam"]
    mesh.call(cam, lambda: cam.node.repair(mesh.devices["h1"].id, mesh.now))
    mesh.pump()
    repaired = {e.image_id for e in cam.events if isinstance(e, ev.Repaired)}
    assert b in repaired and a not in repaired


def test_a_repair_under_way_for_one_picture_does_not_hold_up_the_next() -> None:
    mesh, a, b, source_b = two_under_repair(first_source_away=False)
    cam = mesh.devices["cam"]
    mesh.disconnect("cam", source_b)  # b's copy is away at first
    mesh.call(cam, lambda: cam.node.repair(mesh.devices["h1"].id, mesh.now))
    mesh.pump(until=lambda d: isinstance(d.msg, DisperseRequest) and d.msg.image_id == a)
    asked = next(e for e in cam.store.dispersion(a) if e.state is DispersalState.REQUESTED)
    assert asked.updated_at == mesh.now
    mesh.connect("cam", source_b)  # back while a's repair is on its way
    mesh.pump()
    repaired = {e.image_id for e in cam.events if isinstance(e, ev.Repaired)}
    assert {a, b} <= repaired


def test_new_room_told_in_a_reject_is_looked_at_again() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam", capacity=1_000_000, high_water=0.5, chunk_size=CHUNK,
                   policy=Policy.THUMBNAILS)
    mesh.add("h", capacity=200_000, high_water=1.0, max_share_per_peer=1.0,
             policy=Policy.THUMBNAILS)
    ids = [mesh.capture("cam", size=SIZE) for _ in range(5)]  # 750 kB: two must go
    mesh.connect("cam", "h")  # room for one: asked for the oldest, none for the next
    mesh.pump(until=lambda d: isinstance(d.msg, DisperseRequest) and d.dst == "h")
    mesh.links.discard(("h", "cam"))  # its answers are held back
    assert feed(mesh, "h", "cam", DisperseReject(OTHER, "not that one", 10_000_000)) is None
    mesh.call(cam, lambda: cam.node.tick(mesh.now))
    mesh.pump()
    assert count(mesh, "cam", "h", DisperseRequest, ids[0]) == 1
    assert count(mesh, "cam", "h", DisperseRequest, ids[1]) == 1  # the room it told of


def test_the_owners_words_when_a_holder_lies_about_storing() -> None:
    mesh, sent = streaming_to_holder()
    cam, big = mesh.devices["cam"], mesh.devices["big"]
    assert feed(mesh, "big", "cam", Stored(sent.image_id, sent.digest)) == "premature-stored"
    (violation,) = cam.of(ev.ProtocolViolation)
    assert violation == ev.ProtocolViolation(
        big.id, "premature-stored",
        f"holder says it stored {sent.image_id[:12]} before we finished sending it",
    )
    mesh, sent = streaming_to_holder()
    cam, big = mesh.devices["cam"], mesh.devices["big"]
    mesh.pump(until=until(OriginalComplete))
    assert feed(mesh, "big", "cam", Stored(sent.image_id, OTHER)) == "bad-digest"
    (violation,) = cam.of(ev.ProtocolViolation)
    assert violation.message == (  # type: ignore[attr-defined]
        f"stored {sent.image_id[:12]} with digest {OTHER[:12]}: not the sealed original we "
        f"sent ({sent.digest[:12]})"
    )


def test_a_reject_is_told_to_the_user_with_the_holders_reason() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam", capacity=1_000_000, high_water=0.5, policy=Policy.THUMBNAILS)
    small = mesh.add("small", capacity=1_000_000, high_water=0.5, policy=Policy.THUMBNAILS)
    mesh.capture("small", size=400_000)
    mesh.connect("cam", "small")
    mesh.pump()
    ids = [mesh.capture("cam", size=SIZE) for _ in range(4)]
    mesh.pump()
    (reject,) = [m for m in mesh.between("small", "cam") if isinstance(m, DisperseReject)]
    assert cam.of(ev.DispersalRejected) == [ev.DispersalRejected(ids[0], small.id, reject.reason)]


def test_stored_for_our_own_picture_never_offered_to_that_holder_is_released_not_judged() -> None:
    mesh, _ = dispersing()
    cam = mesh.devices["cam"]
    mesh.add("other", capacity=64_000_000, policy=Policy.THUMBNAILS)
    mesh.connect("cam", "other")
    mesh.pump(until=lambda d: d.src == "other" and type(d.msg).__name__ == "Catalog")
    local = next(r.image_id for r in cam.store.images()
                 if r.where is Where.LOCAL and not cam.store.dispersion(r.image_id))
    assert feed(mesh, "other", "cam", Stored(local, OTHER)) is None
    mesh.pump()
    assert count(mesh, "cam", "other", Release, local) == 1
    assert cam.of(ev.ProtocolViolation) == []


def test_a_repeated_stored_for_a_picture_dispersed_before_sealing_is_taken_quietly() -> None:
    from tests.protocol.test_mutants_readout import legacy

    mesh, image_id, _ = legacy()
    cam = mesh.devices["cam"]
    assert feed(mesh, "big", "cam", Stored(image_id, image_id)) is None
    assert [e.state for e in cam.store.dispersion(image_id)] == [DispersalState.STORED]
    assert cam.of(ev.ProtocolViolation) == []


def test_card_full_is_said_once_the_last_holder_stored_and_none_has_room_for_the_rest() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam", capacity=1_000_000, high_water=0.5, chunk_size=CHUNK,
                   policy=Policy.THUMBNAILS)
    mesh.add("h", capacity=200_000, high_water=1.0, max_share_per_peer=1.0,
             policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    mesh.connect("cam", "h")
    mesh.pump()
    for _ in range(5):  # 750 kB: two must go, and h has room for one
        mesh.capture("cam", size=SIZE)
    mesh.pump(until=lambda d: isinstance(d.msg, DisperseRequest) and d.dst == "h")
    mesh.advance(0.5)  # a look while the ask is out: waiting, nothing to say yet
    assert cam.of(ev.CardFull) == []
    mesh.pump()
    assert len(cam.of(ev.Dispersed)) == 1 and cam.of(ev.CardFull) == []
    mesh.advance(0.5)
    assert len(cam.of(ev.CardFull)) == 1


def test_the_holder_tells_its_user_what_it_stored_for_whom() -> None:
    mesh, image_id = dispersed()
    cam, big = mesh.devices["cam"], mesh.devices["big"]
    assert big.of(ev.HeldStored) == [ev.HeldStored(image_id, cam.id)]


# --- the last survivors of the dispersal run -------------------------------------------------------


def test_a_camera_restarted_over_its_mark_disperses_its_oldest_first() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam", capacity=1_000_000, high_water=0.5, policy=Policy.THUMBNAILS)
    mesh.add("big", capacity=64_000_000, policy=Policy.THUMBNAILS)
    ids = [mesh.capture("cam", size=SIZE) for _ in range(4)]
    assert len(cam.of(ev.CardFull)) == 1
    mesh.restart("cam")
    mesh.call(cam, lambda: cam.node.tick(mesh.now))
    assert len(cam.of(ev.CardFull)) == 2  # said again after the restart
    mesh.connect("cam", "big")
    mesh.pump()
    assert [e.image_id for e in cam.of(ev.Dispersed)] == [ids[0]]  # type: ignore[attr-defined]


def test_pictures_go_in_capture_order_and_those_without_a_time_last() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam", capacity=1_000_000, high_water=0.5, policy=Policy.THUMBNAILS)
    mesh.add("big", capacity=64_000_000, policy=Policy.THUMBNAILS)
    import random as _random

    untimed = cam.store.add_local(_random.Random(9).randbytes(SIZE), name="u.jpg", now=mesh.now,
                                  capture_time=None)
    mesh.call(cam, lambda: cam.node.captured(untimed.image_id, mesh.now))
    ids = []
    for n in range(4):  # imported in the reverse of their capture order
        record = cam.store.add_local(_random.Random(n).randbytes(SIZE), name=f"{n}.jpg",
                                     now=mesh.now, capture_time=mesh.now - 100.0 * n)
        ids.append(record.image_id)
        mesh.call(cam, lambda r=record: cam.node.captured(r.image_id, mesh.now))  # type: ignore[misc]
    mesh.connect("cam", "big")  # a holder comes: it sees every candidate at once
    mesh.pump()
    # 750 kB: two go, the earliest captures (imported last), never the one with no time.
    assert [e.image_id for e in cam.of(ev.Dispersed)] == [ids[3], ids[2]]  # type: ignore[attr-defined]


def test_a_picture_announced_twice_is_one_candidate() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam", capacity=1_000_000, high_water=0.5, policy=Policy.THUMBNAILS)
    mesh.add("big", capacity=64_000_000, policy=Policy.THUMBNAILS)
    mesh.connect("cam", "big")
    mesh.pump()
    first = mesh.capture("cam", size=SIZE)
    mesh.call(cam, lambda: cam.node.captured(first, mesh.now))  # announced again
    for _ in range(4):  # 750 kB: two must go
        mesh.capture("cam", size=SIZE)
    mesh.pump()
    assert len(cam.of(ev.Dispersed)) == 2
    assert cam.store.usage().used <= 500_000


def test_an_owner_counts_the_room_it_asked_for_and_asks_a_holder_with_exactly_enough() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam", capacity=1_000_000, high_water=0.5, policy=Policy.THUMBNAILS)
    ids = [mesh.capture("cam", size=SIZE) for _ in range(5)]  # two must go
    sealed = cam.store.sealed_form(ids[0]).size
    mesh.add("h", capacity=sealed, high_water=1.0, max_share_per_peer=1.0,
             policy=Policy.THUMBNAILS)
    mesh.connect("cam", "h")
    mesh.links.discard(("cam", "h"))  # nothing reaches h: only what the owner asks is seen
    mesh.links.discard(("h", "cam"))
    mesh.links.add(("h", "cam"))
    mesh.pump()
    mesh.links.add(("cam", "h"))
    mesh.pump(until=lambda d: isinstance(d.msg, DisperseRequest))
    mesh.links.discard(("h", "cam"))
    mesh.pump()
    assert count(mesh, "cam", "h", DisperseRequest) == 1  # room for one exactly, asked once


def test_an_accept_resuming_at_the_very_end_is_taken() -> None:
    mesh, image_id = dispersing()
    request = last(mesh, DisperseRequest)
    assert isinstance(request, DisperseRequest)
    assert feed(mesh, "big", "cam", DisperseAccept(image_id, request.size, request.size)) is None
    cam, big = mesh.devices["cam"], mesh.devices["big"]
    assert cam.of(ev.DispersalAccepted)[-1] == ev.DispersalAccepted(image_id, big.id, request.size)
    code = feed(mesh, "big", "cam", DisperseAccept(image_id, request.size - 1, 0))
    assert code == "bad-accept"
    assert cam.of(ev.ProtocolViolation)[-1].message == (  # type: ignore[attr-defined]
        f"accept of {image_id[:12]} at offset 0 reserving {request.size - 1} bytes, for a "
        f"sealed original of {request.size}"
    )


def test_card_full_is_said_again_after_an_accept_and_only_once_a_fill() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam", capacity=1_000_000, high_water=0.5, chunk_size=CHUNK,
                   policy=Policy.THUMBNAILS)
    for _ in range(5):
        mesh.capture("cam", size=SIZE)
    assert len(cam.of(ev.CardFull)) == 1
    mesh.advance(1.0)
    mesh.capture("cam", size=10)
    mesh.advance(1.0)
    assert len(cam.of(ev.CardFull)) == 1  # once a fill, however often it looks
    mesh.add("h", capacity=200_000, high_water=1.0, max_share_per_peer=1.0,
             policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    mesh.connect("cam", "h")
    mesh.pump()
    assert len(cam.of(ev.Dispersed)) == 1
    mesh.advance(1.0)
    assert len(cam.of(ev.CardFull)) == 2  # the accept was news; full again, said again


def test_card_full_one_byte_over_and_again_after_the_mark_was_reached() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam", capacity=1_000_000, high_water=0.5, policy=Policy.THUMBNAILS)
    mesh.capture("cam", size=250_000)
    mesh.capture("cam", size=250_001)
    assert len(cam.of(ev.CardFull)) == 1
    cam.store.resize(1_000_002)  # exactly at the mark
    mesh.advance(1.0)
    cam.store.resize(1_000_000)
    mesh.advance(1.0)
    assert len(cam.of(ev.CardFull)) == 2


def test_a_holder_counts_its_reservations_against_its_mark() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam", policy=Policy.THUMBNAILS)
    mesh.add("h", capacity=100_000, high_water=0.5, max_share_per_peer=1.0,
             policy=Policy.THUMBNAILS)
    mesh.connect("cam", "h")
    mesh.pump()
    first, second = (hashlib.sha256(n).hexdigest() for n in (b"1", b"2"))
    assert feed(mesh, "cam", "h", DisperseRequest(first, 30_000, cam.id)) is None
    assert feed(mesh, "cam", "h", DisperseRequest(second, 30_000, cam.id)) is None
    mesh.pump()
    assert [m.image_id for m in mesh.between("h", "cam") if isinstance(m, DisperseReject)] == [
        second
    ]


def test_a_peers_share_counts_only_what_that_peer_has_held_here() -> None:
    mesh, image_id = dispersed()
    cam, big = mesh.devices["cam"], mesh.devices["big"]
    held = big.store.held(image_id)
    assert held is not None
    big.config = dataclasses.replace(big.config, max_share_per_peer=0.25)
    big.store.resize(4 * held.size + 4 * 50_000)
    mesh.restart("big")
    mesh.add("desk", role=Role.DESK, policy=Policy.THUMBNAILS)
    mesh.connect("cam", "big")
    mesh.connect("desk", "big")
    mesh.pump()
    # The camera's share holds its one original: one more of that size passes the share.
    assert feed(mesh, "cam", "big", DisperseRequest(OTHER, held.size, cam.id)) is None
    desk = mesh.devices["desk"]
    assert feed(mesh, "desk", "big", DisperseRequest(OTHER, 50_000, desk.id)) is None
    mesh.pump()
    to_cam = [m for m in mesh.between("big", "cam") if isinstance(m, DisperseReject)]
    assert to_cam and f"you already hold {held.size} bytes" in to_cam[-1].reason
    assert [m for m in mesh.between("big", "desk") if isinstance(m, DisperseAccept)]
