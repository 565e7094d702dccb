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
from tests.protocol.harness import Mesh, held_plaintext
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


def count(mesh: Mesh, src: str, dst: str, kind: type, image_id: str | None = None) -> int:
    return sum(
        1
        for m in mesh.between(src, dst)
        if isinstance(m, kind) and (image_id is None or getattr(m, "image_id", None) == image_id)
    )


def violations(mesh: Mesh, name: str) -> list[str]:
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
    mesh = Mesh()
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
        mesh = Mesh()
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
        mesh = Mesh()
        cam = mesh.add("cam", policy=Policy.THUMBNAILS)
        mesh.add("h", capacity=1_000_000, max_share_per_peer=0.01, policy=Policy.THUMBNAILS)
        mesh.connect("cam", "h")
        mesh.pump()
        assert feed(mesh, "cam", "h", DisperseRequest(OTHER, size, cam.id)) is None
        mesh.pump()
        assert count(mesh, "h", "cam", DisperseAccept) == int(accepted), size


def test_a_peers_share_counts_what_it_already_holds_and_what_is_on_its_way() -> None:
    mesh = Mesh()
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
    mesh = Mesh()
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
    mesh = Mesh()
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
    mesh = Mesh()
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
    mesh = Mesh()
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
    mesh = Mesh()
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
    mesh = Mesh()
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


def many_dispersed(holders: int, replicas: int, pictures: int = 8) -> tuple[Mesh, list[str]]:
    """A camera that dispersed several originals (``replicas`` copies each) over ``holders``."""
    mesh = Mesh()
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
        mesh = Mesh()
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
    mesh = Mesh()
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
    mesh = Mesh()
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
    mesh = Mesh()
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
