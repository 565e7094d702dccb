"""Frames a node need not send: pings on a busy link, thumbnails the peer already holds."""

from __future__ import annotations

from protocol.config import Policy
from protocol.messages import Limits, Ping, Role, ThumbnailOffer
from protocol.scheduler import Scheduler, SendThumbnail
from tests.protocol.harness import MemoryMesh, thumbnail_first

CHUNK = Limits.MIN_CHUNK


def test_a_thumbnail_the_peer_offered_meanwhile_is_not_offered_back() -> None:
    sched = Scheduler(chunk_size=CHUNK)
    sched.queue_thumbnail("a" * 64, 1.0)
    sched.queue_thumbnail("b" * 64, 2.0)
    sched.mark_thumbnail_known("b" * 64)  # its offer crossed ours
    assert sched.pop() == SendThumbnail("a" * 64)
    assert sched.pop() is None
    sched.queue_thumbnail("a" * 64, 1.0)  # already sent on this link
    assert sched.pop() is None and not sched.has_work()


def test_a_link_that_hears_frames_is_not_pinged_and_a_silent_one_is() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam")
    mesh.add("desk", role=Role.DESK)
    mesh.connect("cam", "desk")
    mesh.pump()
    start = mesh.now
    for _ in range(4):  # the desk hears a thumbnail every 6 s: never 10 s of silence
        mesh.advance(6.0)
        mesh.capture("cam", size=1000)
        mesh.pump()
    pings_from_desk = [m for m in mesh.between("desk", "cam") if isinstance(m, Ping)]
    assert pings_from_desk == []
    # Both links went quiet after the last frame: the shared deadline is a period after it.
    deadline = cam.node.next_deadline()
    assert deadline is not None and start + 24.0 <= deadline <= mesh.now + 10.0
    mesh.advance(10.5)
    mesh.pump()
    pings = [m for m in mesh.between("cam", "desk") + mesh.between("desk", "cam")
             if isinstance(m, Ping)]
    assert 1 <= len(pings) <= 2  # a quiet link is still pinged, once a period


def test_a_full_mesh_relays_no_thumbnail_back_and_the_desk_still_relays() -> None:
    mesh = MemoryMesh()
    names = ("cam1", "cam2", "cam3")
    for name in names:
        mesh.add(name, chunk_size=CHUNK, policy=Policy.THUMBNAILS)
    mesh.add("desk", role=Role.DESK, chunk_size=CHUNK, policy=Policy.THUMBNAILS)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            mesh.connect(a, b)
    mesh.connect("cam1", "desk")
    mesh.pump()
    image_id = mesh.capture("cam1", size=1000)
    mesh.pump()
    offers = [d for d in mesh.log if isinstance(d.msg, ThumbnailOffer)]
    # Each device receives it at most once from every peer, and no device gets it back
    # from a peer it sent it to.
    pairs = {(d.src, d.dst) for d in offers}
    assert all((dst, src) not in pairs for src, dst in pairs)
    for name in ("cam2", "cam3", "desk"):
        assert mesh.devices[name].store.image(image_id) is not None
    # A camera reached only through the desk still gets it (FIG. 21).
    cam4 = mesh.add("cam4", chunk_size=CHUNK, policy=Policy.THUMBNAILS)
    mesh.connect("desk", "cam4")
    mesh.pump()
    assert cam4.store.image(image_id) is not None
    assert thumbnail_first(mesh.log)
