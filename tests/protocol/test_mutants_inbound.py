"""Kill-tests for protocol/inbound.py's mutants (issue 14), through Nodes on a harness mesh.

``abandon`` had no test in the fast suites at all: a card that fills while an
original streams in (the user captured meanwhile).  The receiver must refuse
the rest, say why when its user asked for it, and keep the link healthy: the
sender's frames still in flight for that stream are ignored, not taken for lies.
"""

from __future__ import annotations

import pytest

from protocol import events as ev
from protocol.config import Policy
from protocol.messages import Chunk, RefuseOriginal, Role, ThumbnailOffer
from tests.protocol.harness import MemoryMesh
from tests.protocol.test_conversations import CHUNK


def filled_mid_stream(*, urgent: bool) -> tuple[MemoryMesh, str]:
    mesh = MemoryMesh()
    mesh.add("cam", policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    desk = mesh.add(
        "desk", role=Role.DESK, policy=Policy.THUMBNAILS if urgent else Policy.ALL,
        capacity=8 * CHUNK,
    )
    mesh.connect("cam", "desk")
    mesh.pump()
    image_id = mesh.capture("cam", size=5 * CHUNK)
    if urgent:
        mesh.pump()
        mesh.call(desk, lambda: desk.node.request(image_id, mesh.now))
    mesh.pump(until=lambda d: isinstance(d.msg, Chunk))
    mesh.capture("desk", size=6 * CHUNK)  # the desk's own picture takes the room
    mesh.pump()
    return mesh, image_id


@pytest.mark.parametrize("urgent", [False, True])
def test_a_card_that_fills_mid_stream_refuses_the_rest_and_keeps_the_link(urgent: bool) -> None:
    mesh, image_id = filled_mid_stream(urgent=urgent)
    desk, cam = mesh.devices["desk"], mesh.devices["cam"]
    refusals = [m for m in mesh.between("desk", "cam") if isinstance(m, RefuseOriginal)]
    assert refusals == [RefuseOriginal(image_id)]
    assert desk.node.status()["peers_ready"] == 1 and cam.node.status()["peers_ready"] == 1
    assert not desk.of(ev.ProtocolViolation) and not cam.of(ev.ProtocolViolation)
    assert not desk.of(ev.PeerGone) and not cam.of(ev.PeerGone)
    record = desk.store.image(image_id)
    assert record is not None and record.where.value == "absent"
    assert not desk.of(ev.OriginalArrived)
    pending = [e for e in desk.of(ev.RequestPending) if e.image_id == image_id]  # type: ignore[attr-defined]
    if urgent:
        assert [e.reason for e in pending] == [  # type: ignore[attr-defined]
            f"the card has 0 bytes free and {CHUNK} more are needed (capacity {8 * CHUNK}); "
            "free an original or disperse some"
        ]
    else:
        assert pending == []
    # The link still carries what comes next.
    later = mesh.capture("cam", size=100)
    mesh.pump()
    assert ThumbnailOffer in {type(m) for m in mesh.between("cam", "desk") if getattr(m, "image_id", "") == later}
