"""A lying holder's bytes never get an honest holder accused (found by the lying simulator).

A collection that fails at one holder resumes from another, from the bytes
already here.  When the first holder lied in them, resuming from them would
make the honest second holder's answer fail its check, and the owner would cut
the honest holder off and fail the read-out although an intact copy exists.
Bytes that failed authentication are dropped before the next holder is asked;
a resumed collection home that does not verify starts over instead of
accusing the holder that finished it.
"""

from __future__ import annotations

import dataclasses
import hashlib

from protocol import events as ev
from protocol.config import Policy
from protocol.messages import Chunk, Collect, OriginalHeader, Purpose, Role
from protocol.sealing import SEALED_RECORD
from protocol.store import Where
from tests.protocol.harness import MemoryMesh
from tests.protocol.test_checks import CHUNK, feed
from tests.protocol.test_failures import readout_bytes, replicated_mesh


def asked_holder(mesh: MemoryMesh) -> str:
    return next(d.dst for d in reversed(mesh.log) if isinstance(d.msg, Collect))


def lying_header(mesh: MemoryMesh, holder: str, image_id: str) -> OriginalHeader:
    cam = mesh.devices["cam"]
    form = cam.store.sealed_form(image_id)
    return OriginalHeader(
        image_id=image_id, purpose=Purpose.COLLECT, size=form.size, digest=form.digest,
        offset=0, destination=cam.id, owner=cam.id,
    )


def accused(mesh: MemoryMesh) -> set[str]:
    names = {d.id: name for name, d in mesh.devices.items()}
    return {names[e.peer] for e in mesh.devices["cam"].of(ev.ProtocolViolation)}  # type: ignore[attr-defined]


def test_a_read_out_resumed_after_a_lying_holder_reads_the_honest_copy() -> None:
    mesh, image_id = replicated_mesh(holders=2, replicas=2)
    cam = mesh.devices["cam"]
    mesh.call(cam, lambda: cam.node.read_out(image_id, mesh.now))
    mesh.pump(until=lambda d: isinstance(d.msg, Collect))
    liar = asked_holder(mesh)
    changed = Chunk(image_id, Purpose.COLLECT, 0, b"z" * SEALED_RECORD)
    assert feed(mesh, liar, "cam", lying_header(mesh, liar, image_id), changed) == "hash-mismatch"
    mesh.disconnect("cam", liar, "protocol error: hash-mismatch")
    mesh.pump()
    assert accused(mesh) == {liar}
    data = readout_bytes(cam, image_id)
    assert hashlib.sha256(data).hexdigest() == image_id
    assert [e.image_id for e in cam.of(ev.ReadOutDone)] == [image_id]  # type: ignore[attr-defined]


def test_a_read_out_resumed_after_a_holder_went_mid_record_reads_the_honest_copy() -> None:
    """The first holder's last bytes did not make a whole record (they could not be checked)
    when it went: the next holder is asked from the last record that opened."""
    mesh, image_id = replicated_mesh(holders=2, replicas=2)
    cam = mesh.devices["cam"]
    mesh.call(cam, lambda: cam.node.read_out(image_id, mesh.now))
    mesh.pump(until=lambda d: isinstance(d.msg, Collect))
    liar = asked_holder(mesh)
    changed = Chunk(image_id, Purpose.COLLECT, 0, b"z" * (SEALED_RECORD // 2))
    assert feed(mesh, liar, "cam", lying_header(mesh, liar, image_id), changed) is None
    mesh.disconnect("cam", liar, "out of range")
    mesh.pump()
    assert accused(mesh) == set()
    assert hashlib.sha256(readout_bytes(cam, image_id)).hexdigest() == image_id
    assert [e.image_id for e in cam.of(ev.ReadOutDone)] == [image_id]  # type: ignore[attr-defined]


def test_a_collection_home_resumed_after_a_lying_holder_starts_over_and_comes_home() -> None:
    mesh, image_id = replicated_mesh(holders=2, replicas=2)
    cam = mesh.devices["cam"]
    # The camera restarts with its mark raised, so there is room to bring the picture home.
    cam.config = dataclasses.replace(cam.config, high_water=0.9)
    mesh.restart("cam")
    for holder in ("h1", "h2"):
        mesh.connect("cam", holder)
    mesh.pump()
    mesh.call(cam, lambda: cam.node.collect([image_id], mesh.now))
    mesh.pump(until=lambda d: isinstance(d.msg, Collect))
    liar = asked_holder(mesh)
    changed = Chunk(image_id, Purpose.COLLECT, 0, b"z" * 1000)
    assert feed(mesh, liar, "cam", lying_header(mesh, liar, image_id), changed) is None
    mesh.disconnect("cam", liar, "out of range")  # gone before anything could be checked
    mesh.pump()  # the other holder finishes it: the whole does not verify, nobody is accused
    assert accused(mesh) == set()
    mesh.connect("cam", liar)
    mesh.pump()
    record = cam.store.image(image_id)
    assert record is not None and record.where is Where.LOCAL
    assert hashlib.sha256(cam.store.original_bytes(image_id) or b"").hexdigest() == image_id
    assert cam.of(ev.Collected)


def test_an_urgent_repeat_crossing_the_end_of_a_pull_is_not_taken_for_a_lie() -> None:
    """Found by the long property run: the user asks for an original whose background pull
    is just ending; the camera, done with it, serves the urgent request again, and the desk
    cut the honest camera off for a stream "nobody asked for".  The second stream is ignored."""
    mesh = MemoryMesh()
    mesh.add("cam", policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    mesh.add("desk", role=Role.DESK, policy=Policy.ALL)
    mesh.connect("cam", "desk")
    mesh.pump()
    image_id = mesh.capture("cam", size=2 * CHUNK)
    mesh.pump(until=lambda d: isinstance(d.msg, Chunk) and d.msg.offset == CHUNK)
    desk = mesh.devices["desk"]
    mesh.call(desk, lambda: desk.node.request(image_id, mesh.now))  # crosses the complete
    mesh.pump()
    assert desk.of(ev.ProtocolViolation) == []
    record = desk.store.image(image_id)
    assert record is not None and record.where is Where.LOCAL
    assert len([m for m in mesh.between("cam", "desk") if isinstance(m, OriginalHeader)]) == 2
