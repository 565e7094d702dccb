"""Dispersal failures (issue 5): holders away or gone for good, and crashes at every step.

Crashes drop a Node and build a new one on the same MemoryStore (volatile state
lost, durable state kept, the last partial write possibly torn), the way a
device restarts after losing power.
"""

from __future__ import annotations

import hashlib
import random

import pytest

from protocol import events as ev
from protocol.config import Policy
from protocol.messages import (
    Chunk,
    Collect,
    DisperseAccept,
    DisperseRequest,
    Message,
    OriginalComplete,
    OriginalHeader,
    Purpose,
    Release,
    Role,
    Stored,
)
from protocol.store import Decision, DispersalState, Incoming, Where
from tests.protocol.harness import (
    Delivered,
    MemoryDevice,
    MemoryMesh,
    held_plaintext,
    thumbnail_first,
)
from tests.protocol.test_conversations import CHUNK, full_camera_mesh

SIZE = 150_000


def replicated_mesh(holders: int = 3, replicas: int = 2) -> tuple[MemoryMesh, str]:
    """A camera over its mark that keeps ``replicas`` copies; returns the oldest, dispersed."""
    mesh = MemoryMesh()
    mesh.add(
        "cam", capacity=1_000_000, high_water=0.5, chunk_size=CHUNK,
        policy=Policy.THUMBNAILS, replicas=replicas,
    )
    for n in range(1, holders + 1):
        mesh.add(f"h{n}", capacity=64_000_000, policy=Policy.THUMBNAILS, chunk_size=CHUNK)
        mesh.connect("cam", f"h{n}")
    mesh.pump()
    ids = [mesh.capture("cam", size=SIZE) for _ in range(4)]
    mesh.pump()
    assert mesh.devices["cam"].store.image(ids[0]).where is Where.DISPERSED  # type: ignore[union-attr]
    return mesh, ids[0]


def stored_holders(mesh: MemoryMesh, owner: str, image_id: str) -> list[str]:
    dev = mesh.devices[owner]
    ids = {e.holder for e in dev.store.dispersion(image_id) if e.state is DispersalState.STORED}
    return sorted(name for name, d in mesh.devices.items() if d.id in ids)


def readout_bytes(dev: MemoryDevice, image_id: str) -> bytes:
    chunks = [e for e in dev.of(ev.ReadOutChunk) if e.image_id == image_id]  # type: ignore[attr-defined]
    out = bytearray()
    for chunk in chunks:
        del out[chunk.offset :]  # type: ignore[attr-defined]  # a retry starts again
        out.extend(chunk.data)  # type: ignore[attr-defined]
    return bytes(out)


# --- the holder away at read-out ---------------------------------------------------------------


def test_a_waiting_read_out_names_the_holder_and_resumes_when_it_returns() -> None:
    mesh, ids = full_camera_mesh()
    cam = mesh.devices["cam"]
    mesh.disconnect("cam", "big")
    mesh.call(cam, lambda: cam.node.read_out(ids[0], mesh.now, wait_s=120.0))
    mesh.pump()
    pending = cam.of(ev.ReadOutPending)
    assert len(pending) == 1 and "big" in pending[0].reason  # type: ignore[attr-defined]
    assert cam.of(ev.ReadOutFailed) == []
    mesh.advance(30.0)  # retried meanwhile: still away, still waiting
    assert cam.of(ev.ReadOutFailed) == []
    mesh.connect("cam", "big")
    mesh.pump()
    assert cam.of(ev.ReadOutDone) == [ev.ReadOutDone(ids[0], ids[0])]
    assert hashlib.sha256(readout_bytes(cam, ids[0])).hexdigest() == ids[0]


def test_a_waiting_read_out_fails_at_its_deadline_naming_the_holder() -> None:
    mesh, ids = full_camera_mesh()
    cam = mesh.devices["cam"]
    mesh.disconnect("cam", "big")
    mesh.call(cam, lambda: cam.node.read_out(ids[0], mesh.now, wait_s=20.0))
    deadline = cam.node.next_deadline()
    assert deadline is not None and deadline <= mesh.now + 20.0
    for _ in range(5):
        mesh.advance(5.0)
    failed = cam.of(ev.ReadOutFailed)
    assert len(failed) == 1 and "big" in failed[0].reason  # type: ignore[attr-defined]
    mesh.connect("cam", "big")
    mesh.pump()
    assert cam.of(ev.ReadOutDone) == []  # given up: nothing arrives later


def test_a_read_out_without_waiting_fails_at_once_naming_the_holder() -> None:
    mesh, ids = full_camera_mesh()
    cam = mesh.devices["cam"]
    mesh.disconnect("cam", "big")
    mesh.call(cam, lambda: cam.node.read_out(ids[0], mesh.now))
    failed = cam.of(ev.ReadOutFailed)
    assert len(failed) == 1 and "big" in failed[0].reason  # type: ignore[attr-defined]
    assert cam.of(ev.ReadOutPending) == []


# --- a second replica --------------------------------------------------------------------------


def test_a_read_out_uses_the_second_holder_when_the_first_is_away() -> None:
    mesh, oldest = replicated_mesh()
    cam = mesh.devices["cam"]
    first, second = stored_holders(mesh, "cam", oldest)
    mesh.disconnect("cam", first)
    mesh.call(cam, lambda: cam.node.read_out(oldest, mesh.now))
    mesh.pump()
    assert cam.of(ev.ReadOutDone) == [ev.ReadOutDone(oldest, oldest)]
    assert any(isinstance(m, Collect) for m in mesh.between("cam", second))


def test_a_collection_carries_on_from_the_second_holder_when_the_first_leaves_midway() -> None:
    mesh, oldest = replicated_mesh()
    cam = mesh.devices["cam"]
    # Offloaded: room below the mark again, so it may come home.
    mesh.devices["cam"].store.resize(4_000_000)  # offloaded: a bigger card
    mesh.call(cam, lambda: cam.node.collect([oldest], mesh.now))
    mesh.pump(until=lambda d: isinstance(d.msg, Chunk) and d.msg.purpose is Purpose.COLLECT)
    source = next(n for n in ("h1", "h2", "h3") if is_from(mesh, n, oldest))
    mesh.disconnect("cam", source)
    got = cam.store.partial_offset(oldest, Incoming.SEALED)
    assert 0 < got < SIZE
    mesh.pump()
    assert cam.of(ev.Collected) != [] and cam.of(ev.CollectFailed) == []
    assert hashlib.sha256(cam.store.original_bytes(oldest) or b"").hexdigest() == oldest
    other = [m for m in mesh.log if isinstance(m.msg, Collect) and m.src == "cam"][-1]
    assert other.dst != source and other.msg.offset == got  # type: ignore[attr-defined]


def is_from(mesh: MemoryMesh, name: str, image_id: str) -> bool:
    return any(
        isinstance(m, Chunk) and m.image_id == image_id for m in mesh.between(name, "cam")
    )


def test_a_holder_gone_for_good_is_replaced_from_the_second_copy() -> None:
    mesh, oldest = replicated_mesh()
    cam = mesh.devices["cam"]
    lost, kept = stored_holders(mesh, "cam", oldest)
    spare = next(n for n in ("h1", "h2", "h3") if n not in (lost, kept))
    mesh.disconnect("cam", lost)
    mesh.call(cam, lambda: cam.node.repair(mesh.devices[lost].id, mesh.now))
    mesh.pump()
    assert ev.Repaired(oldest, mesh.devices[spare].id) in cam.events
    assert stored_holders(mesh, "cam", oldest) == sorted([kept, spare])
    held = mesh.devices[spare].store.held(oldest)
    assert held is not None and held.owner == cam.id
    data = held_plaintext(cam.store, mesh.devices[spare].store, oldest)
    assert data is not None and hashlib.sha256(data).hexdigest() == oldest
    assert cam.store.image(oldest).where is Where.DISPERSED  # type: ignore[union-attr]
    assert thumbnail_first(mesh.log)


def test_a_lost_only_holder_cannot_be_repaired_and_says_so() -> None:
    mesh, ids = full_camera_mesh()
    cam, big = mesh.devices["cam"], mesh.devices["big"]
    mesh.disconnect("cam", "big")
    mesh.call(cam, lambda: cam.node.repair(big.id, mesh.now))
    failed = [e for e in cam.of(ev.RepairFailed) if e.image_id == ids[0]]  # type: ignore[attr-defined]
    assert len(failed) == 1 and "only holder" in failed[0].reason  # type: ignore[attr-defined]
    assert stored_holders(mesh, "cam", ids[0]) == ["big"]  # kept, in case it comes back


# --- collection home survives the owner -----------------------------------------------------


def offloaded_camera_mesh() -> tuple[MemoryMesh, list[str]]:
    mesh, ids = full_camera_mesh()
    mesh.devices["cam"].store.resize(4_000_000)  # offloaded: room again
    return mesh, ids


def crash(mesh: MemoryMesh, name: str, seed: int) -> MemoryDevice:
    """Power loss on ``name``: links drop, the last write may tear, a new Node starts."""
    for a, b in sorted(mesh.links):
        if a == name:
            mesh.disconnect(a, b, "crashed")
    dev = mesh.devices[name]
    dev.store.crash(random.Random(seed))
    mesh.restart(name)
    dev.events.extend(dev.node.events())
    return dev


def reconnect_all(mesh: MemoryMesh, name: str) -> None:
    for other in sorted(mesh.devices):
        if other != name and (name, other) not in mesh.links:
            mesh.connect(name, other)


def test_a_collection_home_resumes_after_the_owner_crashes() -> None:
    mesh, ids = offloaded_camera_mesh()
    cam, big = mesh.devices["cam"], mesh.devices["big"]
    mesh.call(cam, lambda: cam.node.collect([ids[0]], mesh.now))
    mesh.pump(until=lambda d: isinstance(d.msg, Chunk) and d.msg.purpose is Purpose.COLLECT)
    assert isinstance(mesh.log[-1].msg, Chunk)
    crash(mesh, "cam", seed=1)
    assert cam.store.decision(ids[0]) is not None  # the collection outlived the process
    reconnect_all(mesh, "cam")
    mesh.pump()
    assert [e.image_id for e in cam.of(ev.Collected)] == [ids[0]]  # type: ignore[attr-defined]
    assert cam.store.original_bytes(ids[0]) is not None
    assert cam.store.dispersion(ids[0]) == [] and big.store.held(ids[0]) is None
    assert cam.store.decision(ids[0]) is None  # done with


def test_a_collection_while_the_holder_is_away_waits_for_it() -> None:
    mesh, ids = offloaded_camera_mesh()
    cam = mesh.devices["cam"]
    mesh.disconnect("cam", "big")
    mesh.call(cam, lambda: cam.node.collect([ids[0]], mesh.now))
    pending = cam.of(ev.CollectPending)
    assert len(pending) == 1 and "big" in pending[0].reason  # type: ignore[attr-defined]
    crash(mesh, "cam", seed=2)  # and even a restart in between
    reconnect_all(mesh, "cam")
    mesh.pump()
    assert [e.image_id for e in cam.of(ev.Collected)] == [ids[0]]  # type: ignore[attr-defined]
    assert cam.store.image(ids[0]).where is Where.LOCAL  # type: ignore[union-attr]


# --- our user's decisions --------------------------------------------------------------------


def test_request_and_refuse_are_decided_events_and_durable() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam", chunk_size=CHUNK)
    desk = mesh.add("desk", role=Role.DESK, chunk_size=CHUNK, policy=Policy.THUMBNAILS)
    wanted, unwanted = mesh.capture("cam", size=3000), mesh.capture("cam", size=3000)
    mesh.connect("cam", "desk")
    mesh.pump()
    mesh.call(desk, lambda: desk.node.refuse(unwanted, mesh.now))
    assert desk.of(ev.Decided) == [ev.Decided(unwanted, Decision.REFUSED)]
    assert desk.of(ev.Decided)[0] == ev.Decided(unwanted, "refused")  # type: ignore[arg-type]
    mesh.disconnect("cam", "desk")
    mesh.call(desk, lambda: desk.node.request(wanted, mesh.now))
    assert ev.Decided(wanted, Decision.REQUESTED) in desk.events
    assert desk.store.decision(wanted).decision is Decision.REQUESTED  # type: ignore[union-attr]
    crash(mesh, "desk", seed=3)
    mesh.connect("cam", "desk")
    mesh.pump()
    # The request outlived the restart; the refusal still holds.
    assert desk.store.original_bytes(wanted) == cam.store.original_bytes(wanted)
    assert desk.store.original_bytes(unwanted) is None


# --- a crash at every step of the negotiation ------------------------------------------------

DISPERSAL_STEPS: list[tuple[str, type[Message]]] = [
    ("disperse-request", DisperseRequest),
    ("disperse-accept", DisperseAccept),
    ("header", OriginalHeader),
    ("chunk", Chunk),
    ("complete", OriginalComplete),
    ("stored", Stored),
]
COLLECT_STEPS: list[tuple[str, type[Message]]] = [
    ("collect", Collect),
    ("header", OriginalHeader),
    ("chunk", Chunk),
    ("complete", OriginalComplete),
    ("release", Release),
]


def every_picture_has_a_complete_copy(mesh: MemoryMesh, owner: str, ids: list[str]) -> None:
    cam = mesh.devices[owner]
    for image_id in ids:
        copies = []
        local = cam.store.original_bytes(image_id)
        if local is not None and hashlib.sha256(local).hexdigest() == image_id:
            copies.append(owner)
        for name, dev in mesh.devices.items():
            if held_plaintext(cam.store, dev.store, image_id) is not None:
                copies.append(name)
        assert copies, f"no complete copy of {image_id[:12]} anywhere"
        record = cam.store.image(image_id)
        assert record is not None
        if record.where is Where.DISPERSED:
            assert set(stored_holders(mesh, owner, image_id)) <= set(copies)


def lists_and_holdings_agree(mesh: MemoryMesh, owner: str) -> None:
    cam = mesh.devices[owner]
    by_id = {dev.id: name for name, dev in mesh.devices.items()}
    listed = {
        (e.image_id, by_id[e.holder])
        for e in cam.store.dispersion_list()
        if e.state is DispersalState.STORED
    }
    held = {
        (h.image_id, name)
        for name, dev in mesh.devices.items()
        for h in dev.store.held_originals()
        if h.owner == cam.id
    }
    assert listed == held
    assert all(e.state is DispersalState.STORED for e in cam.store.dispersion_list())
    for name, dev in mesh.devices.items():
        assert dev.store.usage().reserved == 0, f"{name} still reserves room"
        assert dev.store.usage().used <= dev.store.usage().capacity


def settle(mesh: MemoryMesh) -> None:
    for _ in range(3):
        mesh.pump()
        mesh.advance(31.0)  # past retry_s: rejected holders may be asked again
    mesh.pump()


@pytest.mark.parametrize("who", ["owner", "holder"])
@pytest.mark.parametrize("step", [s for s, _ in DISPERSAL_STEPS])
def test_a_crash_at_any_step_of_dispersal_loses_no_picture(who: str, step: str) -> None:
    kind = dict(DISPERSAL_STEPS)[step]
    mesh = MemoryMesh()
    mesh.add("cam", capacity=1_000_000, high_water=0.5, chunk_size=CHUNK, policy=Policy.THUMBNAILS)
    mesh.add("big", capacity=64_000_000, policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    mesh.connect("cam", "big")
    mesh.pump()
    ids = [mesh.capture("cam", size=SIZE) for _ in range(4)]
    def at_step(d: Delivered) -> bool:
        purpose = getattr(d.msg, "purpose", Purpose.DISPERSE)
        return isinstance(d.msg, kind) and purpose is Purpose.DISPERSE

    mesh.pump(until=at_step)
    assert isinstance(mesh.log[-1].msg, kind)  # stopped at that step, not at quiet
    every_picture_has_a_complete_copy(mesh, "cam", ids)
    name = "cam" if who == "owner" else "big"
    crash(mesh, name, seed=len(step))
    every_picture_has_a_complete_copy(mesh, "cam", ids)
    reconnect_all(mesh, name)
    settle(mesh)
    every_picture_has_a_complete_copy(mesh, "cam", ids)
    lists_and_holdings_agree(mesh, "cam")
    assert mesh.devices["cam"].store.image(ids[0]).where is Where.DISPERSED  # type: ignore[union-attr]


@pytest.mark.parametrize("who", ["owner", "holder"])
@pytest.mark.parametrize("step", [s for s, _ in COLLECT_STEPS])
def test_a_crash_at_any_step_of_collection_loses_no_picture(who: str, step: str) -> None:
    kind = dict(COLLECT_STEPS)[step]
    mesh, ids = offloaded_camera_mesh()
    cam = mesh.devices["cam"]
    mesh.disconnect("cam", "small")  # two devices are enough here
    oldest = ids[0]

    def at_step(d: Delivered) -> bool:
        purpose = getattr(d.msg, "purpose", Purpose.COLLECT)
        return isinstance(d.msg, kind) and purpose is Purpose.COLLECT and (
            getattr(d.msg, "image_id", None) == oldest
        )

    mesh.call(cam, lambda: cam.node.collect([oldest], mesh.now))
    mesh.pump(until=at_step)
    assert at_step(mesh.log[-1])  # stopped at that step, not at quiet
    every_picture_has_a_complete_copy(mesh, "cam", ids)
    name = "cam" if who == "owner" else "big"
    crash(mesh, name, seed=len(step) + 7)
    every_picture_has_a_complete_copy(mesh, "cam", ids)
    for other in ("big",) if name == "cam" else ("cam",):
        if ("cam", "big") not in mesh.links:
            mesh.connect(name, other)
    settle(mesh)
    every_picture_has_a_complete_copy(mesh, "cam", ids)
    lists_and_holdings_agree(mesh, "cam")
    assert cam.store.image(oldest).where is Where.LOCAL  # type: ignore[union-attr]
    assert mesh.devices["big"].store.held(oldest) is None


def test_an_empty_original_travels_and_reads_out() -> None:
    mesh = MemoryMesh()
    mesh.add("cam", chunk_size=CHUNK)
    desk = mesh.add("desk", role=Role.DESK, chunk_size=CHUNK)
    empty = mesh.capture("cam", b"")
    mesh.connect("cam", "desk")
    mesh.pump()
    assert desk.store.image(empty).where is Where.LOCAL  # type: ignore[union-attr]
    assert desk.store.original_bytes(empty) == b""
    mesh.call(desk, lambda: desk.node.read_out(empty, mesh.now))
    assert desk.of(ev.ReadOutDone) == [ev.ReadOutDone(empty, empty)]


def test_requesting_our_own_dispersed_original_brings_it_home() -> None:
    mesh, ids = offloaded_camera_mesh()
    cam = mesh.devices["cam"]
    mesh.call(cam, lambda: cam.node.request(ids[0], mesh.now))
    mesh.pump()
    assert ev.Decided(ids[0], Decision.REQUESTED) in cam.events
    assert [e.image_id for e in cam.of(ev.Collected)] == [ids[0]]  # type: ignore[attr-defined]
    assert cam.store.image(ids[0]).where is Where.LOCAL  # type: ignore[union-attr]
