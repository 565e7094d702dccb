"""While a camera uploads into a node, peers' background mirrors wait (Node.hold_background).

The FTP door holds the background lane during an upload (mesh/ftp.py): a desk whose policy
is ``all`` would otherwise take the processor the upload and its import need (the desk's
TLS receive and the camera's send ran on the same two cores: bench/ftp_ingest.py).  Only
that lane waits: thumbnails, the desk user's requests and control go on, and the mirror
resumes where it stopped once the hold ends.
"""

from __future__ import annotations

from protocol.config import Policy
from protocol.messages import Chunk, Limits, OriginalHeader, Role, ThumbnailOffer
from protocol.scheduler import Lane, Scheduler, SendChunk, SendHeader
from protocol.store import Where
from tests.protocol.harness import MemoryMesh
from tests.protocol.test_scheduler import IDS, transfer

CHUNK = Limits.MIN_CHUNK


def where_on(mesh: MemoryMesh, name: str, ids: list[str]) -> list[Where]:
    store = mesh.devices[name].store
    return [record.where for i in ids if (record := store.image(i)) is not None]


def test_a_held_background_lane_waits_and_every_other_lane_goes_on() -> None:
    sched = Scheduler(chunk_size=CHUNK, background_held=True)
    for i in (0, 1):
        sched.mark_thumbnail_known(IDS[i])
    sched.add_transfer(transfer(0, Lane.BACKGROUND))
    assert not sched.has_work()  # no pull, no wake-up, for work that must wait
    assert sched.pop() is None
    sched.add_transfer(transfer(1, Lane.URGENT))
    assert sched.has_work()
    step = sched.pop()
    assert isinstance(step, SendHeader) and step.transfer.image_id == IDS[1]
    sched.background_held = False
    steps = [sched.pop() for _ in range(4)]
    assert any(isinstance(s, SendHeader) and s.transfer.image_id == IDS[0] for s in steps)


def test_the_mirror_waits_while_held_requests_do_not_and_it_resumes_where_it_was() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam", chunk_size=CHUNK)
    desk = mesh.add("desk", role=Role.DESK, policy=Policy.ALL, chunk_size=CHUNK)
    ids = [mesh.capture("cam", size=3 * CHUNK) for _ in range(3)]
    mesh.connect("cam", "desk")
    # One chunk of the first original goes before the camera starts uploading.
    mesh.pump(until=lambda d: isinstance(d.msg, Chunk))
    mesh.call(cam, lambda: cam.node.hold_background(True))
    mesh.pump()
    assert where_on(mesh, "desk", ids) == [Where.ABSENT] * 3  # thumbnails only
    assert not mesh.devices["cam"].node.sending_peers()  # nothing to pull while held
    # A picture captured while held still sends its thumbnail; the desk's user still gets
    # the original asked for.
    late = mesh.capture("cam", size=3 * CHUNK)
    mesh.call(desk, lambda: desk.node.request(ids[2], mesh.now))
    mesh.pump()
    offers = [m.image_id for m in mesh.between("cam", "desk") if isinstance(m, ThumbnailOffer)]
    assert late in offers
    assert where_on(mesh, "desk", [*ids, late]) == [Where.ABSENT, Where.ABSENT, Where.LOCAL,
                                                    Where.ABSENT]

    mesh.call(cam, lambda: cam.node.hold_background(False))
    mesh.pump()
    assert where_on(mesh, "desk", [*ids, late]) == [Where.LOCAL] * 4
    headers = [m.image_id for m in mesh.between("cam", "desk") if isinstance(m, OriginalHeader)]
    assert headers.count(ids[0]) == 1  # resumed, not sent again


def test_a_link_made_while_held_is_held_too() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam", chunk_size=CHUNK)
    mesh.add("desk", role=Role.DESK, policy=Policy.ALL, chunk_size=CHUNK)
    ids = [mesh.capture("cam", size=2 * CHUNK) for _ in range(2)]
    mesh.call(cam, lambda: cam.node.hold_background(True))
    mesh.connect("cam", "desk")
    mesh.pump()
    assert where_on(mesh, "desk", ids) == [Where.ABSENT] * 2
    assert not any(isinstance(m, (OriginalHeader, Chunk)) for m in mesh.between("cam", "desk"))
    mesh.call(cam, lambda: cam.node.hold_background(False))
    mesh.pump()
    assert where_on(mesh, "desk", ids) == [Where.LOCAL] * 2


def test_chunks_of_a_held_stream_are_not_popped() -> None:
    sched = Scheduler(chunk_size=CHUNK)
    sched.mark_thumbnail_known(IDS[3])
    sched.add_transfer(transfer(3, Lane.BACKGROUND))
    assert isinstance(sched.pop(), SendHeader)
    assert isinstance(sched.pop(), SendChunk)
    sched.background_held = True
    assert sched.pop() is None and not sched.has_work()
    sched.background_held = False
    step = sched.pop()
    assert isinstance(step, SendChunk) and step.offset == CHUNK
