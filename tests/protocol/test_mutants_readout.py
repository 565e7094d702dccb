"""protocol/readout.py's paths that no other test reached, and the mutants that survived it.

Behaviour tests through Node's public inputs and the conversation harness
(tests/protocol/harness.py): read-outs that wait and retry, relays joined by a
second reader, collections home that serve the readers who waited, legacy
(unsealed) holders, and the failures of each.  The mutation triage is
tests/mutation/triage_readout.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random

from protocol import events as ev
from protocol.config import Policy
from protocol.messages import (
    Chunk,
    Collect,
    Message,
    OriginalComplete,
    OriginalHeader,
    Purpose,
    ReadOut,
    RefuseOriginal,
    Release,
    RequestOriginal,
    Role,
    TransferFailed,
)
from protocol.store import DispersalState, Incoming, Where
from tests.protocol.harness import MemoryMesh
from tests.protocol.test_checks import CHUNK, OTHER, dispersed, feed, until
from tests.protocol.test_conversations import FakePeer
from tests.protocol.test_failures import readout_bytes, replicated_mesh, stored_holders

SIZE = 150_000


def count(mesh: MemoryMesh, src: str, dst: str, kind: type, image_id: str | None = None) -> int:
    return sum(
        1
        for m in mesh.between(src, dst)
        if isinstance(m, kind) and (image_id is None or getattr(m, "image_id", None) == image_id)
    )


def original(mesh: MemoryMesh, image_id: str) -> bytes:
    """The bytes of the harness's capture ``image_id`` (its random seed is in the name)."""
    for n in range(1, 50):
        data = random.Random(f"cam:{n}").randbytes(SIZE)
        if hashlib.sha256(data).hexdigest() == image_id:
            return data
    raise AssertionError("not a capture of cam")


def with_desk(mesh: MemoryMesh) -> MemoryMesh:
    mesh.add("desk", role=Role.DESK, policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    mesh.connect("cam", "desk")
    mesh.pump()
    return mesh


def read_by_desk(mesh: MemoryMesh, image_id: str) -> bytes:
    return readout_bytes(mesh.devices["desk"], image_id)


# --- our own user's read-out ---------------------------------------------------------------------


def test_a_read_out_of_an_unknown_picture_fails_saying_so() -> None:
    mesh, _ = dispersed()
    cam = mesh.devices["cam"]
    mesh.call(cam, lambda: cam.node.read_out(OTHER, mesh.now))
    failed = cam.of(ev.ReadOutFailed)
    assert [e.image_id for e in failed] == [OTHER]  # type: ignore[attr-defined]
    assert "no picture with that id" in failed[0].reason  # type: ignore[attr-defined]


def test_a_waiting_read_out_is_retried_every_readout_retry_s_not_sooner() -> None:
    mesh, image_id = dispersed()
    cam = mesh.devices["cam"]
    mesh.disconnect("cam", "big")
    mesh.call(cam, lambda: cam.node.read_out(image_id, mesh.now, wait_s=60.0))
    assert len(cam.of(ev.ReadOutPending)) == 1
    assert cam.node.next_deadline() == mesh.now + 5.0
    mesh.advance(4.0)  # before retry_at: not tried again
    assert len(cam.of(ev.ReadOutPending)) == 1
    mesh.advance(1.0)  # at retry_at: tried, still away, pending again
    assert len(cam.of(ev.ReadOutPending)) == 2
    assert cam.node.next_deadline() == mesh.now + 5.0
    assert cam.of(ev.ReadOutFailed) == []


def test_a_read_out_under_way_is_not_given_up_at_its_deadline() -> None:
    """Only a waiting read-out times out; one whose collection is running finishes."""
    mesh, image_id = dispersed()
    cam = mesh.devices["cam"]
    mesh.call(cam, lambda: cam.node.read_out(image_id, mesh.now, wait_s=1.0))
    mesh.pump(until=until(Collect))
    mesh.advance(10.0)
    mesh.pump()
    assert cam.of(ev.ReadOutFailed) == []
    assert cam.of(ev.ReadOutDone) == [ev.ReadOutDone(image_id, image_id)]
    assert readout_bytes(cam, image_id) == original(mesh, image_id)
    mesh.advance(10.0)  # done: nothing left to retry or fail
    assert cam.of(ev.ReadOutFailed) == [] and cam.of(ev.ReadOutPending) == []


def test_a_waiting_read_out_fails_at_exactly_its_deadline_with_the_last_reason() -> None:
    mesh, image_id = dispersed()
    cam = mesh.devices["cam"]
    mesh.disconnect("cam", "big")
    mesh.call(cam, lambda: cam.node.read_out(image_id, mesh.now, wait_s=12.0))
    mesh.advance(5.0)
    mesh.advance(5.0)
    assert cam.of(ev.ReadOutFailed) == []
    mesh.advance(2.0)  # now == deadline
    failed = cam.of(ev.ReadOutFailed)
    assert len(failed) == 1 and "big" in failed[0].reason  # type: ignore[attr-defined]
    assert "gave up waiting" in failed[0].reason  # type: ignore[attr-defined]
    assert cam.node.next_deadline() != mesh.now  # nothing more to do for it


def test_a_waiting_read_out_is_retried_at_once_when_a_peer_comes_back() -> None:
    mesh, image_id = dispersed()
    cam = mesh.devices["cam"]
    mesh.disconnect("cam", "big")
    mesh.call(cam, lambda: cam.node.read_out(image_id, mesh.now, wait_s=600.0))
    mesh.connect("cam", "big")
    mesh.pump()  # no tick: the peer's return retries it
    assert cam.of(ev.ReadOutDone) == [ev.ReadOutDone(image_id, image_id)]
    assert readout_bytes(cam, image_id) == original(mesh, image_id)


def test_our_user_joining_a_relay_under_way_gets_every_byte_once_done() -> None:
    mesh, image_id = dispersed()
    with_desk(mesh)
    cam, desk = mesh.devices["cam"], mesh.devices["desk"]
    mesh.call(desk, lambda: desk.node.read_out(image_id, mesh.now))
    mesh.pump(until=lambda d: isinstance(d.msg, Chunk) and d.dst == "cam" and d.msg.offset > 0)
    collects = count(mesh, "cam", "big", Collect, image_id)
    mesh.call(cam, lambda: cam.node.read_out(image_id, mesh.now))
    chunks = cam.of(ev.ReadOutChunk)
    assert chunks and chunks[0].offset == 0  # type: ignore[attr-defined]  # what arrived so far
    mesh.pump()
    assert count(mesh, "cam", "big", Collect, image_id) == collects  # one collection for both
    assert readout_bytes(cam, image_id) == original(mesh, image_id)
    assert cam.of(ev.ReadOutDone) == [ev.ReadOutDone(image_id, image_id)]
    assert read_by_desk(mesh, image_id) == original(mesh, image_id)


def test_our_user_reading_during_a_collection_home_gets_it_from_the_card() -> None:
    mesh, image_id = dispersed()
    cam = mesh.devices["cam"]
    cam.store.resize(4_000_000)
    mesh.call(cam, lambda: cam.node.collect([image_id], mesh.now))
    mesh.pump(until=lambda d: isinstance(d.msg, Chunk) and d.dst == "cam")
    mesh.call(cam, lambda: cam.node.read_out(image_id, mesh.now))
    assert cam.of(ev.ReadOutChunk) == []  # nothing handed out before it is verified
    mesh.pump()
    assert cam.of(ev.Collected) == [ev.Collected(image_id, mesh.devices["big"].id)]
    assert readout_bytes(cam, image_id) == original(mesh, image_id)
    assert cam.of(ev.ReadOutDone) == [ev.ReadOutDone(image_id, image_id)]
    assert count(mesh, "cam", "big", Collect, image_id) == 1


def test_our_user_reading_during_a_collection_that_fails_hears_why() -> None:
    mesh, image_id = dispersed()
    cam = mesh.devices["cam"]
    cam.store.resize(4_000_000)
    mesh.call(cam, lambda: cam.node.collect([image_id], mesh.now))
    mesh.pump(until=lambda d: isinstance(d.msg, Chunk) and d.dst == "cam")
    mesh.call(cam, lambda: cam.node.read_out(image_id, mesh.now))
    mesh.disconnect("cam", "big", "out of range")
    failed = cam.of(ev.ReadOutFailed)
    assert len(failed) == 1 and "out of range" in failed[0].reason  # type: ignore[attr-defined]
    pending = cam.of(ev.CollectPending)
    assert pending and "out of range" in pending[-1].reason  # type: ignore[attr-defined]
    assert cam.of(ev.CollectFailed) == []


def test_a_read_out_of_a_peers_picture_asked_twice_is_sent_once() -> None:
    mesh = MemoryMesh()
    mesh.add("cam", policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    desk = mesh.add("desk", role=Role.DESK, policy=Policy.THUMBNAILS)
    mesh.connect("cam", "desk")
    mesh.pump()
    image_id = mesh.capture("cam", size=SIZE)
    mesh.pump()
    mesh.call(desk, lambda: desk.node.read_out(image_id, mesh.now))
    mesh.call(desk, lambda: desk.node.read_out(image_id, mesh.now))
    mesh.pump()
    assert count(mesh, "desk", "cam", ReadOut, image_id) == 1
    assert desk.of(ev.ReadOutDone) == [ev.ReadOutDone(image_id, image_id)]
    assert readout_bytes(desk, image_id) == mesh.devices["cam"].store.original_bytes(image_id)


def test_a_read_out_of_a_peers_picture_goes_to_an_offerer_when_its_owner_is_away() -> None:
    mesh = MemoryMesh()
    mesh.add("cam", policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    mesh.add("desk", role=Role.DESK, policy=Policy.ALL, chunk_size=CHUNK)
    cam2 = mesh.add("cam2", policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    mesh.connect("cam", "desk")
    mesh.pump()
    image_id = mesh.capture("cam", size=SIZE)
    mesh.pump()  # the desk pulls it
    mesh.connect("desk", "cam2")
    mesh.pump()
    mesh.connect("cam", "cam2")
    mesh.pump()
    mesh.disconnect("cam", "cam2")
    mesh.call(cam2, lambda: cam2.node.read_out(image_id, mesh.now))
    mesh.pump()
    assert count(mesh, "cam2", "desk", ReadOut, image_id) == 1
    assert cam2.of(ev.ReadOutDone) == [ev.ReadOutDone(image_id, image_id)]


# --- a peer's read-out -------------------------------------------------------------------------


def test_a_holder_refuses_a_read_out_of_what_it_holds_sealed() -> None:
    mesh, image_id = dispersed()
    with_desk(mesh)
    mesh.connect("desk", "big")
    mesh.pump()
    assert feed(mesh, "desk", "big", ReadOut(image_id, 0)) is None
    mesh.pump()
    failed = [m for m in mesh.between("big", "desk") if isinstance(m, TransferFailed)]
    assert failed and failed[-1].image_id == image_id and "ask its owner" in failed[-1].reason
    assert count(mesh, "big", "desk", OriginalHeader, image_id) == 0


def test_a_readers_read_out_waits_for_a_collection_home_and_is_served_from_the_card() -> None:
    mesh, image_id = dispersed()
    with_desk(mesh)
    cam, desk = mesh.devices["cam"], mesh.devices["desk"]
    cam.store.resize(4_000_000)
    mesh.call(cam, lambda: cam.node.collect([image_id], mesh.now))
    mesh.pump(until=until(Collect))
    mesh.call(desk, lambda: desk.node.read_out(image_id, mesh.now))
    mesh.pump()
    assert cam.of(ev.Collected) != []
    assert count(mesh, "cam", "big", Collect, image_id) == 1  # no second collection for it
    assert read_by_desk(mesh, image_id) == original(mesh, image_id)
    assert desk.of(ev.ReadOutDone) == [ev.ReadOutDone(image_id, image_id)]


def test_a_readers_read_out_waiting_for_a_collection_home_hears_why_it_failed() -> None:
    mesh, image_id = dispersed()
    with_desk(mesh)
    cam, desk = mesh.devices["cam"], mesh.devices["desk"]
    cam.store.resize(4_000_000)
    mesh.call(cam, lambda: cam.node.collect([image_id], mesh.now))
    mesh.pump(until=until(Collect))
    mesh.call(desk, lambda: desk.node.read_out(image_id, mesh.now))
    mesh.pump(until=lambda d: isinstance(d.msg, ReadOut) and d.dst == "cam")
    mesh.disconnect("cam", "big", "holder switched off")
    mesh.pump()
    failed = desk.of(ev.ReadOutFailed)
    assert len(failed) == 1 and "holder switched off" in failed[0].reason  # type: ignore[attr-defined]
    assert desk.of(ev.ReadOutDone) == []


def test_a_reader_asking_twice_during_a_relay_gets_one_stream() -> None:
    mesh, image_id = dispersed()
    with_desk(mesh)
    mesh.pump()
    assert feed(mesh, "desk", "cam", ReadOut(image_id, 0)) is None
    assert feed(mesh, "desk", "cam", ReadOut(image_id, 0)) is None
    # The desk's node never asked: the stream is read off the wire, not delivered to it.
    mesh.links.discard(("cam", "desk"))
    mesh.pump()
    cam = mesh.devices["cam"]
    frames = []
    while (frame := cam.node.next_frame(mesh.devices["desk"].id, mesh.now)) is not None:
        frames.append(frame)
    from protocol.codec import FrameDecoder

    tap = FrameDecoder()
    for frame in frames:
        tap.feed(frame)
    msgs = []
    while (msg := tap.next_message()) is not None:
        msgs.append(msg)
    headers = [m for m in msgs if isinstance(m, OriginalHeader) and m.image_id == image_id]
    assert len(headers) == 1 and headers[0].purpose is Purpose.READOUT
    data = b"".join(m.data for m in msgs if isinstance(m, Chunk) and m.image_id == image_id)
    assert data == original(mesh, image_id)
    assert count(mesh, "cam", "big", Collect, image_id) == 1


def test_a_refused_relay_stops_and_the_collection_still_serves_the_others() -> None:
    mesh, image_id = dispersed()
    with_desk(mesh)
    cam, desk = mesh.devices["cam"], mesh.devices["desk"]
    mesh.call(desk, lambda: desk.node.request(image_id, mesh.now))
    mesh.pump(until=lambda d: isinstance(d.msg, RequestOriginal) and d.dst == "cam")
    mesh.call(cam, lambda: cam.node.read_out(image_id, mesh.now))
    mesh.pump(until=lambda d: isinstance(d.msg, Chunk) and d.dst == "cam")
    mesh.call(desk, lambda: desk.node.refuse(image_id, mesh.now))
    mesh.pump()
    assert count(mesh, "desk", "cam", RefuseOriginal, image_id) == 1
    assert count(mesh, "cam", "desk", OriginalComplete, image_id) == 0
    assert desk.store.image(image_id).where is Where.ABSENT  # type: ignore[union-attr]
    assert readout_bytes(cam, image_id) == original(mesh, image_id)


# --- collections home ----------------------------------------------------------------------------


def test_collecting_a_picture_of_another_card_fails_and_one_already_here_does_nothing() -> None:
    mesh, image_id = dispersed()
    with_desk(mesh)
    cam, desk = mesh.devices["cam"], mesh.devices["desk"]
    local = next(r.image_id for r in cam.store.images() if r.where is Where.LOCAL)
    mesh.call(desk, lambda: desk.node.collect([image_id], mesh.now))
    failed = desk.of(ev.CollectFailed)
    assert [e.image_id for e in failed] == [image_id]  # type: ignore[attr-defined]
    assert "not a picture of this card" in failed[0].reason  # type: ignore[attr-defined]
    mesh.call(cam, lambda: cam.node.collect([local, OTHER], mesh.now))
    assert [e.image_id for e in cam.of(ev.CollectFailed)] == [OTHER]  # type: ignore[attr-defined]
    assert cam.store.decision(local) is None
    mesh.pump()
    assert count(mesh, "cam", "big", Collect) == 0


def test_a_collection_home_fits_exactly_up_to_the_mark_and_not_one_byte_more() -> None:
    for spare, ok in ((0, True), (-1, False)):
        assert collected_with_room(spare) is ok, spare


def collected_with_room(spare: int) -> bool:
    mesh, image_id = dispersed()
    cam = mesh.devices["cam"]
    usage = cam.store.usage()
    # A card whose mark leaves exactly room for it (high_water 0.5 of the capacity).
    cam.store.resize(2 * (usage.used + usage.reserved + SIZE + spare))
    mesh.call(cam, lambda: cam.node.collect([image_id], mesh.now))
    failed = bool(cam.of(ev.CollectFailed))
    mesh.pump()
    assert failed is not bool(cam.of(ev.Collected))
    return bool(cam.of(ev.Collected))


def test_collect_during_a_relay_brings_it_home_once_the_relay_is_done() -> None:
    mesh, image_id = dispersed()
    with_desk(mesh)
    cam, desk = mesh.devices["cam"], mesh.devices["desk"]
    cam.store.resize(4_000_000)
    mesh.call(desk, lambda: desk.node.read_out(image_id, mesh.now))
    mesh.pump(until=lambda d: isinstance(d.msg, Chunk) and d.dst == "cam")
    mesh.call(cam, lambda: cam.node.collect([image_id], mesh.now))
    mesh.pump()
    assert read_by_desk(mesh, image_id) == original(mesh, image_id)
    assert cam.of(ev.Collected) == [ev.Collected(image_id, mesh.devices["big"].id)]
    assert cam.store.original_bytes(image_id) == original(mesh, image_id)
    assert count(mesh, "cam", "big", Collect, image_id) == 2  # the relay's, then home
    assert cam.store.dispersion(image_id) == []


def test_a_collection_pending_for_an_away_holder_goes_when_that_holder_is_back() -> None:
    mesh, image_id = dispersed()
    with_desk(mesh)
    cam = mesh.devices["cam"]
    cam.store.resize(4_000_000)
    mesh.disconnect("cam", "big")
    mesh.call(cam, lambda: cam.node.collect([image_id], mesh.now))
    assert len(cam.of(ev.CollectPending)) == 1
    mesh.disconnect("cam", "desk")
    mesh.connect("cam", "desk")  # not a holder: nothing to collect from it
    mesh.pump()
    assert count(mesh, "cam", "desk", Collect) == 0 and cam.of(ev.Collected) == []
    mesh.connect("cam", "big")
    mesh.pump()
    assert cam.of(ev.Collected) == [ev.Collected(image_id, mesh.devices["big"].id)]
    assert cam.store.decision(image_id) is None


def test_a_collection_home_releases_an_away_holder_when_it_returns() -> None:
    mesh, oldest = replicated_mesh(holders=2, replicas=2)
    cam = mesh.devices["cam"]
    cam.store.resize(4_000_000)
    first, second = stored_holders(mesh, "cam", oldest)
    mesh.disconnect("cam", second)
    mesh.call(cam, lambda: cam.node.collect([oldest], mesh.now))
    mesh.pump()
    assert cam.of(ev.Collected) == [ev.Collected(oldest, mesh.devices[first].id)]
    assert [e.holder for e in cam.store.dispersion(oldest)] == [mesh.devices[second].id]
    assert cam.store.dispersion(oldest)[0].state is DispersalState.COLLECTING
    assert mesh.devices[second].store.held(oldest) is not None
    mesh.connect("cam", second)
    mesh.pump()
    assert count(mesh, "cam", second, Release, oldest) == 1
    assert mesh.devices[second].store.held(oldest) is None
    assert cam.store.dispersion(oldest) == []


# --- a repair relayed from a holder ---------------------------------------------------------------


def test_a_repair_whose_source_fails_midway_releases_the_new_holders_room() -> None:
    mesh, oldest = replicated_mesh()
    cam = mesh.devices["cam"]
    lost, kept = stored_holders(mesh, "cam", oldest)
    spare = next(n for n in ("h1", "h2", "h3") if n not in (lost, kept))
    mesh.disconnect("cam", lost)
    mesh.call(cam, lambda: cam.node.repair(mesh.devices[lost].id, mesh.now))
    mesh.pump(until=lambda d: isinstance(d.msg, Chunk) and d.dst == spare)
    mesh.disconnect("cam", kept, "out of range")
    mesh.pump()
    assert count(mesh, "cam", spare, Release, oldest) == 1
    assert mesh.devices[spare].store.held(oldest) is None
    assert mesh.devices[spare].store.usage().reserved == 0
    assert mesh.devices[spare].store.partial_offset(oldest, Incoming.HELD) == 0
    assert not any(isinstance(e, ev.Repaired) for e in cam.events)
    mesh.connect("cam", kept)  # back: the repair goes again, from the start of a record
    mesh.pump()
    mesh.advance(1.0)
    mesh.pump()
    assert ev.Repaired(oldest, mesh.devices[spare].id) in cam.events


def test_a_repair_relay_resumes_from_a_second_source_when_the_first_goes() -> None:
    mesh, oldest = replicated_mesh(holders=4, replicas=3)
    cam = mesh.devices["cam"]
    holders = stored_holders(mesh, "cam", oldest)
    assert len(holders) == 3
    spare = next(n for n in ("h1", "h2", "h3", "h4") if n not in holders)
    lost = holders[0]
    mesh.disconnect("cam", lost)
    mesh.call(cam, lambda: cam.node.repair(mesh.devices[lost].id, mesh.now))
    mesh.pump(until=lambda d: isinstance(d.msg, Chunk) and d.dst == spare)
    source = next(d.src for d in reversed(mesh.log)
                  if isinstance(d.msg, Chunk) and d.dst == "cam")
    mesh.disconnect("cam", source, "out of range")
    mesh.pump()
    assert ev.Repaired(oldest, mesh.devices[spare].id) in cam.events
    from tests.protocol.harness import held_plaintext

    data = held_plaintext(cam.store, mesh.devices[spare].store, oldest)
    assert data is not None and hashlib.sha256(data).hexdigest() == oldest


# --- a card from an older cammesh: holders keep the original as it is ------------------------------


def legacy(holders: tuple[str, ...] = ("big",)) -> tuple[MemoryMesh, str, bytes]:
    """``cam``'s picture dispersed before sealing: each holder keeps its plain bytes."""
    mesh = MemoryMesh()
    cam = mesh.add("cam", capacity=4_000_000, policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    for name in holders:
        mesh.add(name, capacity=4_000_000, policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    data = random.Random("old picture").randbytes(SIZE)
    image_id = mesh.capture("cam", data)
    for name in holders:
        store = mesh.devices[name].store
        store.reserve(image_id, SIZE)
        store.write_partial(image_id, Incoming.HELD, 0, data)
        store.finish_partial(image_id, Incoming.HELD, image_id, 1.0, owner=cam.id)
        cam.store.set_dispersion(image_id, mesh.devices[name].id, DispersalState.STORED, 1.0)
    cam.store.free_original(image_id, 2.0)
    mesh.restart("cam")
    for name in holders:
        mesh.connect("cam", name)
    mesh.pump()
    return mesh, image_id, data


def test_a_holder_reads_out_its_plain_legacy_copy_itself() -> None:
    mesh, image_id, data = legacy()
    big = mesh.devices["big"]
    mesh.call(big, lambda: big.node.read_out(image_id, mesh.now))
    assert readout_bytes(big, image_id) == data
    assert big.of(ev.ReadOutDone) == [ev.ReadOutDone(image_id, image_id)]


def test_a_holder_serves_a_peers_read_out_from_its_plain_legacy_copy() -> None:
    mesh, image_id, data = legacy()
    big = mesh.devices["big"]
    peer = FakePeer(big.node, "reader")
    peer.read()
    peer.send(ReadOut(image_id, CHUNK))
    got = peer.read()
    headers = [m for m in got if isinstance(m, OriginalHeader) and m.image_id == image_id]
    assert len(headers) == 1 and headers[0].digest == image_id and headers[0].offset == CHUNK
    assert headers[0].owner == mesh.devices["cam"].id
    assert b"".join(m.data for m in got if isinstance(m, Chunk)) == data[CHUNK:]  # type: ignore[attr-defined]


def test_a_legacy_relay_resumed_on_a_second_holder_that_lies_is_not_handed_out() -> None:
    """Plain bytes cannot be checked record by record: a relay resumed from a second holder
    hashes the whole picture before it counts as read out."""
    mesh, image_id, data = legacy(("h1", "h2"))
    cam = mesh.devices["cam"]
    mesh.call(cam, lambda: cam.node.read_out(image_id, mesh.now))
    mesh.pump(until=lambda d: isinstance(d.msg, Chunk) and d.dst == "cam")
    first = next(d.src for d in reversed(mesh.log) if isinstance(d.msg, Chunk) and d.dst == "cam")
    second = "h2" if first == "h1" else "h1"
    got = len(readout_bytes(cam, image_id))
    assert 0 < got < SIZE
    # The second holder answers with changed bytes after the first part (its real answer
    # is held back; the lie is fed in its name).
    mesh.links.discard((second, "cam"))
    mesh.disconnect("cam", first, "out of range")
    mesh.pump()
    (ask,) = [m for m in mesh.between("cam", second) if isinstance(m, Collect)]
    assert ask.offset == got
    changed = bytes(b ^ 1 for b in data[got:])
    lie: list[Message] = [
        OriginalHeader(image_id, Purpose.COLLECT, SIZE, image_id, got, cam.id, cam.id)
    ]
    lie += [Chunk(image_id, Purpose.COLLECT, got + at, changed[at : at + CHUNK])
            for at in range(0, len(changed), CHUNK)]
    lie.append(OriginalComplete(image_id, Purpose.COLLECT, image_id))
    assert feed(mesh, second, "cam", *lie) is None  # not accused: the first may have lied
    assert cam.of(ev.ReadOutDone) == []
    failed = cam.of(ev.ReadOutFailed)
    assert len(failed) == 1 and "did not match" in failed[0].reason  # type: ignore[attr-defined]


def test_a_legacy_collection_comes_home_as_it_is() -> None:
    mesh, image_id, data = legacy()
    cam = mesh.devices["cam"]
    mesh.call(cam, lambda: cam.node.collect([image_id], mesh.now))
    mesh.pump()
    back = [m for m in mesh.between("big", "cam") if isinstance(m, OriginalHeader)]
    assert back[-1].digest == image_id
    assert cam.store.original_bytes(image_id) == data
    assert cam.of(ev.Collected) == [ev.Collected(image_id, mesh.devices["big"].id)]


def test_a_desk_without_a_sealer_cannot_open_a_held_copy_and_asks_the_owner() -> None:
    from tests.protocol.test_picture_keys import field_day

    mesh, ids, originals = field_day(wrap_for_desk=True)
    cam, desk = mesh.devices["cam"], mesh.devices["desk"]
    oldest = next(i for i in ids if cam.store.image(i).where is Where.DISPERSED)  # type: ignore[union-attr]
    desk.config = dataclasses.replace(desk.config, sealer=None)
    mesh.restart("desk")
    mesh.connect("cam", "desk")
    mesh.pump()
    mesh.call(desk, lambda: desk.node.read_out(oldest, mesh.now))
    mesh.pump()
    assert count(mesh, "desk", "cam", ReadOut, oldest) == 1  # asked the owner instead
    assert readout_bytes(desk, oldest) == originals[oldest]


# --- more of the paths above, pinned ----------------------------------------------------------------


def test_a_read_out_retried_when_its_holder_returns_is_not_given_up_while_it_runs() -> None:
    mesh, image_id = dispersed()
    cam = mesh.devices["cam"]
    mesh.disconnect("cam", "big")
    mesh.call(cam, lambda: cam.node.read_out(image_id, mesh.now, wait_s=20.0))
    mesh.advance(10.0)
    mesh.connect("cam", "big")
    mesh.pump(until=lambda d: isinstance(d.msg, Chunk) and d.dst == "cam")
    mesh.advance(15.0)  # past the deadline, the retried collection still under way
    mesh.pump()
    assert cam.of(ev.ReadOutFailed) == []
    assert cam.of(ev.ReadOutDone) == [ev.ReadOutDone(image_id, image_id)]


def test_a_desk_reading_a_held_copy_itself_asks_nobody_and_hands_it_out_in_order() -> None:
    from tests.protocol.test_picture_keys import field_day

    mesh, ids, originals = field_day(wrap_for_desk=True)
    cam, desk = mesh.devices["cam"], mesh.devices["desk"]
    oldest = next(i for i in ids if cam.store.image(i).where is Where.DISPERSED)  # type: ignore[union-attr]
    mesh.call(desk, lambda: desk.node.read_out(oldest, mesh.now))
    mesh.pump()
    assert count(mesh, "desk", "cam", ReadOut, oldest) == 0  # the owner is there, not needed
    assert desk.of(ev.ReadOutFailed) == []
    assert desk.of(ev.ReadOutDone) == [ev.ReadOutDone(oldest, oldest)]
    chunks = desk.of(ev.ReadOutChunk)
    step = desk.config.chunk_size
    assert [c.offset for c in chunks] == list(range(0, len(originals[oldest]), step))  # type: ignore[attr-defined]
    assert b"".join(c.data for c in chunks) == originals[oldest]  # type: ignore[attr-defined]


def test_a_desk_whose_key_does_not_open_the_held_copy_asks_the_owner() -> None:
    from tests.protocol.test_picture_keys import field_day, sealing

    mesh, ids, originals = field_day(wrap_for_desk=True)
    cam, desk = mesh.devices["cam"], mesh.devices["desk"]
    oldest = next(i for i in ids if cam.store.image(i).where is Where.DISPERSED)  # type: ignore[union-attr]
    desk.config = dataclasses.replace(desk.config, sealer=sealing()[0])  # a new key pair
    mesh.restart("desk")
    mesh.connect("cam", "desk")
    mesh.pump()
    mesh.call(desk, lambda: desk.node.read_out(oldest, mesh.now))
    mesh.pump()
    assert count(mesh, "desk", "cam", ReadOut, oldest) == 1
    assert readout_bytes(desk, oldest) == originals[oldest]


def two_relays() -> tuple[MemoryMesh, str]:
    """``desk`` (a request) and ``desk2`` (a read-out) both relayed from the holder."""
    mesh, image_id = dispersed()
    with_desk(mesh)
    mesh.add("desk2", role=Role.DESK, policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    mesh.connect("cam", "desk2")
    mesh.pump()
    desk, desk2 = mesh.devices["desk"], mesh.devices["desk2"]
    mesh.call(desk, lambda: desk.node.request(image_id, mesh.now))
    mesh.call(desk2, lambda: desk2.node.read_out(image_id, mesh.now))
    mesh.pump(until=lambda d: isinstance(d.msg, Chunk) and d.dst == "desk2")
    mesh.call(desk, lambda: desk.node.refuse(image_id, mesh.now))
    return mesh, image_id


def test_a_refused_relay_leaves_the_other_readers_relay_running() -> None:
    mesh, image_id = two_relays()
    mesh.pump()
    desk2 = mesh.devices["desk2"]
    assert desk2.of(ev.ReadOutDone) == [ev.ReadOutDone(image_id, image_id)]
    assert readout_bytes(desk2, image_id) == original(mesh, image_id)
    assert count(mesh, "cam", "desk", OriginalComplete, image_id) == 0


def test_a_refused_relay_hears_nothing_when_the_collection_then_fails() -> None:
    mesh, image_id = two_relays()
    mesh.pump(until=lambda d: isinstance(d.msg, RefuseOriginal))
    mesh.disconnect("cam", "big", "out of range")
    mesh.pump()
    assert count(mesh, "cam", "desk", TransferFailed, image_id) == 0
    assert [m.purpose for m in mesh.between("cam", "desk2") if isinstance(m, TransferFailed)] == [
        Purpose.READOUT
    ]


def test_a_legacy_holder_answering_other_bytes_is_cut_off_and_the_read_out_fails() -> None:
    mesh, image_id, data = legacy()
    cam = mesh.devices["cam"]
    mesh.call(cam, lambda: cam.node.read_out(image_id, mesh.now))
    mesh.pump(until=until(Collect))
    mesh.links.discard(("big", "cam"))  # its real answer is held back; the lie is fed
    changed = bytes(b ^ 1 for b in data)
    lie: list[Message] = [
        OriginalHeader(image_id, Purpose.COLLECT, SIZE, image_id, 0, cam.id, cam.id)
    ]
    lie += [Chunk(image_id, Purpose.COLLECT, at, changed[at : at + CHUNK])
            for at in range(0, SIZE, CHUNK)]
    lie.append(OriginalComplete(image_id, Purpose.COLLECT, image_id))
    assert feed(mesh, "big", "cam", *lie) == "hash-mismatch"
    assert cam.of(ev.ReadOutFailed) == [
        ev.ReadOutFailed(image_id, "collecting from big failed: the bytes did not match the digest")
    ]
    assert cam.of(ev.ReadOutDone) == []


def test_a_peers_read_out_answered_with_other_bytes_fails_naming_why() -> None:
    from tests.protocol.test_checks import provoke_hash_mismatch_readout

    assert provoke_hash_mismatch_readout() == "hash-mismatch"
    mesh = MemoryMesh()
    mesh.add("cam", policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    desk = mesh.add("desk", role=Role.DESK, policy=Policy.THUMBNAILS)
    mesh.connect("cam", "desk")
    mesh.pump()
    image_id = mesh.capture("cam", size=3000)
    mesh.pump()
    mesh.call(desk, lambda: desk.node.read_out(image_id, mesh.now))
    mesh.pump(until=until(ReadOut))
    cam = mesh.devices["cam"]
    code = feed(
        mesh, "cam", "desk",
        OriginalHeader(image_id, Purpose.READOUT, 3000, image_id, 0, desk.id, cam.id),
        Chunk(image_id, Purpose.READOUT, 0, b"y" * 3000),
        OriginalComplete(image_id, Purpose.READOUT, image_id),
    )
    assert code == "hash-mismatch"
    assert desk.of(ev.ReadOutFailed) == [
        ev.ReadOutFailed(image_id, "the bytes did not match the digest")
    ]
