"""Every refusal path of protocol/ reached through a node's public inputs: it answers, with a reason.

A refusal is not a lie detected but a request the node cannot or will not serve
(no copy, no room, a holder away): the node says so (TransferFailed,
DisperseReject) and keeps the link.  The table is tests/protocol/checks.py.
"""

from __future__ import annotations

from protocol.config import Policy
from protocol.messages import (
    Collect,
    DisperseReject,
    DisperseRequest,
    Message,
    Purpose,
    ReadOut,
    RequestOriginal,
    Role,
    TransferFailed,
)
from tests.protocol.harness import MemoryMesh
from tests.protocol.test_checks import CHUNK, OTHER, dispersed, dispersing, feed, until


def pair(**holder_options: object) -> MemoryMesh:
    mesh = MemoryMesh()
    mesh.add("cam", policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    mesh.add("h", policy=Policy.THUMBNAILS, **holder_options)
    mesh.connect("cam", "h")
    mesh.pump()
    return mesh


def answers(mesh: MemoryMesh, src: str, dst: str, kind: type[Message]) -> list[Message]:
    mesh.pump()
    return [m for m in mesh.between(src, dst) if isinstance(m, kind)]


def test_a_holder_above_its_mark_rejects_with_its_room() -> None:
    mesh = pair(capacity=100_000, high_water=0.5)
    cam = mesh.devices["cam"]
    assert feed(mesh, "cam", "h", DisperseRequest(OTHER, 60_000, cam.id)) is None
    (reject,) = answers(mesh, "h", "cam", DisperseReject)
    assert isinstance(reject, DisperseReject)
    assert "high-water" in reject.reason and reject.free == 100_000


def test_a_holder_rejects_a_peer_past_its_share_of_the_card() -> None:
    mesh = pair(capacity=1_000_000, max_share_per_peer=0.01)
    cam = mesh.devices["cam"]
    assert feed(mesh, "cam", "h", DisperseRequest(OTHER, 20_000, cam.id)) is None
    (reject,) = answers(mesh, "h", "cam", DisperseReject)
    assert isinstance(reject, DisperseReject) and "share" in reject.reason


def test_a_read_out_of_a_picture_without_a_copy_here_is_refused() -> None:
    mesh = pair()
    assert feed(mesh, "cam", "h", ReadOut(OTHER, 0)) is None
    (failed,) = answers(mesh, "h", "cam", TransferFailed)
    assert isinstance(failed, TransferFailed) and failed.purpose is Purpose.READOUT
    assert "no copy" in failed.reason


def test_a_collection_of_what_is_not_held_is_refused() -> None:
    mesh = pair()
    assert feed(mesh, "cam", "h", Collect(OTHER, 0)) is None
    (failed,) = answers(mesh, "h", "cam", TransferFailed)
    assert isinstance(failed, TransferFailed) and failed.purpose is Purpose.COLLECT


def test_a_request_for_a_picture_never_had_is_refused() -> None:
    mesh = pair()
    assert feed(mesh, "h", "cam", RequestOriginal(OTHER, True, 0)) is None
    (failed,) = answers(mesh, "cam", "h", TransferFailed)
    assert isinstance(failed, TransferFailed) and failed.image_id == OTHER


def test_a_background_pull_of_a_dispersed_original_is_refused_not_collected() -> None:
    mesh, image_id = dispersed()
    mesh.add("desk", role=Role.DESK, policy=Policy.THUMBNAILS)
    mesh.connect("cam", "desk")
    mesh.pump()
    collects = len([m for m in mesh.between("cam", "big") if isinstance(m, Collect)])
    assert feed(mesh, "desk", "cam", RequestOriginal(image_id, False, 0)) is None
    failed = answers(mesh, "cam", "desk", TransferFailed)
    assert failed and failed[-1].image_id == image_id  # type: ignore[attr-defined]
    assert len([m for m in mesh.between("cam", "big") if isinstance(m, Collect)]) == collects


def test_a_read_out_of_a_dispersed_original_whose_holder_is_away_is_refused_naming_it() -> None:
    mesh, image_id = dispersed()
    mesh.add("desk", role=Role.DESK, policy=Policy.THUMBNAILS)
    mesh.connect("cam", "desk")
    mesh.pump()
    mesh.disconnect("cam", "big")
    assert feed(mesh, "desk", "cam", ReadOut(image_id, 0)) is None
    (failed,) = answers(mesh, "cam", "desk", TransferFailed)
    assert isinstance(failed, TransferFailed) and "big" in failed.reason


def test_readers_of_a_relay_hear_why_when_its_holder_goes() -> None:
    mesh, image_id = dispersed()
    mesh.add("desk", role=Role.DESK, policy=Policy.THUMBNAILS)
    mesh.connect("cam", "desk")
    mesh.pump()
    assert feed(mesh, "desk", "cam", ReadOut(image_id, 0)) is None
    mesh.pump(until=until(Collect))
    mesh.disconnect("cam", "big", "out of range")
    failed = answers(mesh, "cam", "desk", TransferFailed)
    assert failed and "out of range" in failed[-1].reason  # type: ignore[attr-defined]


def test_an_owner_reading_out_collects_then_serves_waiting_readers_or_tells_them() -> None:
    """A peer's read-out arriving while the original comes home waits, and is refused with
    the reason when that collection fails."""
    mesh, image_id = dispersed()
    mesh.add("desk", role=Role.DESK, policy=Policy.THUMBNAILS)
    mesh.connect("cam", "desk")
    mesh.pump()
    cam = mesh.devices["cam"]
    mesh.call(cam, lambda: cam.node.collect([image_id], mesh.now))
    mesh.pump(until=until(Collect))
    assert feed(mesh, "desk", "cam", ReadOut(image_id, 0)) is None
    mesh.disconnect("cam", "big", "holder switched off")
    failed = answers(mesh, "cam", "desk", TransferFailed)
    assert failed and "holder switched off" in failed[-1].reason  # type: ignore[attr-defined]


def test_a_smaller_copy_that_cannot_be_made_is_refused_with_the_reason() -> None:
    mesh = pair()
    image_id = mesh.capture("cam", size=3000)  # random bytes: no JPEG to recompress
    mesh.pump()
    assert feed(mesh, "h", "cam", RequestOriginal(image_id, True, 0, max_side=100)) is None
    (failed,) = answers(mesh, "cam", "h", TransferFailed)
    assert isinstance(failed, TransferFailed) and failed.purpose is Purpose.SMALLER
    assert failed.reason


def test_an_original_freed_while_queued_turns_into_a_refusal_not_stale_bytes() -> None:
    """A desk's request waits in the camera's queue while the original disperses and is freed:
    the frame pulled then is TransferFailed, read from the card at that moment."""
    mesh, image_id = dispersing()
    mesh.add("desk", role=Role.DESK, policy=Policy.THUMBNAILS)
    mesh.connect("cam", "desk")
    mesh.pump()
    assert feed(mesh, "desk", "cam", RequestOriginal(image_id, False, 0)) is None
    mesh.links.discard(("cam", "desk"))  # the desk's lane stalls (a slow link)
    mesh.pump()
    record = mesh.devices["cam"].store.image(image_id)
    assert record is not None and record.where.value == "dispersed"
    mesh.links.add(("cam", "desk"))
    failed = answers(mesh, "cam", "desk", TransferFailed)
    assert failed and failed[-1].image_id == image_id  # type: ignore[attr-defined]
