"""The exact words the node says to its user and its peers (refusals, events, its last Error).

A photographer reads these: "nothing was lost", which holder is away, why a
collection cannot go.  Other tests look for a word in them; these pin each
whole sentence of protocol/dispersal.py, protocol/readout.py and protocol/node.py,
so a changed or garbled one is seen (the mutation run's string mutants).
"""

from __future__ import annotations

from protocol import events as ev
from protocol.config import Policy
from protocol.messages import (
    Collect,
    DisperseReject,
    DisperseRequest,
    Ping,
    ReadOut,
    Role,
    TransferFailed,
)
from tests.protocol.harness import MemoryMesh
from tests.protocol.test_checks import OTHER, STRANGER, dispersed, feed
from tests.protocol.test_conversations import CHUNK


def pair(**holder: object) -> MemoryMesh:
    mesh = MemoryMesh()
    mesh.add("cam", policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    mesh.add("h", policy=Policy.THUMBNAILS, **holder)  # type: ignore[arg-type]
    mesh.connect("cam", "h")
    mesh.pump()
    return mesh


def rejects(mesh: MemoryMesh) -> list[str]:
    mesh.pump()
    return [m.reason for m in mesh.between("h", "cam") if isinstance(m, DisperseReject)]


def refusals(mesh: MemoryMesh, src: str, dst: str) -> list[str]:
    mesh.pump()
    return [m.reason for m in mesh.between(src, dst) if isinstance(m, TransferFailed)]


def test_the_card_full_message() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam", capacity=1_000_000, high_water=0.5, policy=Policy.THUMBNAILS)
    for _ in range(4):
        mesh.capture("cam", size=150_000)
    (full,) = cam.of(ev.CardFull)
    assert full.message == (  # type: ignore[attr-defined]
        "The card is full: 600000 of 1000000 bytes used, past its 50% mark, and no connected "
        "peer will hold more originals. Nothing was lost: every picture is still on this card. "
        "Offload the card or bring a peer with room."
    )


def test_the_holders_reasons_for_rejecting() -> None:
    mesh = pair(capacity=100_000, high_water=0.5)
    cam = mesh.devices["cam"]
    assert feed(mesh, "cam", "h", DisperseRequest(OTHER, 60_000, cam.id)) is None
    assert rejects(mesh) == [
        "my card is above its high-water mark (100000 bytes free, 60000 asked)"
    ]
    mesh = pair(capacity=1_000_000, max_share_per_peer=0.01)
    assert feed(mesh, "cam", "h", DisperseRequest(OTHER, 20_000, cam.id)) is None
    assert rejects(mesh) == [
        "you already hold 0 bytes, your share of my card (1000000 bytes free, 20000 asked)"
    ]


def test_the_owner_names_the_holder_it_tried_in_a_bad_owner_error() -> None:
    mesh = pair()
    code = feed(mesh, "cam", "h", DisperseRequest(OTHER, 1000, STRANGER))
    assert code == "bad-owner"
    (violation,) = mesh.devices["h"].of(ev.ProtocolViolation)
    assert violation.message == (  # type: ignore[attr-defined]
        f"dispersal request for {OTHER[:12]} names owner {STRANGER[:12]}, not the sender"
    )


def test_the_read_out_refusals() -> None:
    mesh = pair()
    assert feed(mesh, "cam", "h", ReadOut(OTHER, 0)) is None
    assert refusals(mesh, "h", "cam") == [
        "this device has no copy of that original; ask its owner"
    ]
    assert feed(mesh, "cam", "h", Collect(OTHER, 0)) is None
    assert refusals(mesh, "h", "cam")[-1] == "this device holds no copy of it"


def test_the_users_read_out_and_collect_failures() -> None:
    mesh, image_id = dispersed()
    cam = mesh.devices["cam"]
    mesh.call(cam, lambda: cam.node.read_out(OTHER, mesh.now))
    assert cam.of(ev.ReadOutFailed) == [
        ev.ReadOutFailed(OTHER, "no picture with that id is known here")
    ]
    mesh.call(cam, lambda: cam.node.collect([OTHER], mesh.now))
    assert cam.of(ev.CollectFailed) == [ev.CollectFailed(OTHER, "not a picture of this card")]
    mesh.call(cam, lambda: cam.node.collect([image_id], mesh.now))
    assert cam.of(ev.CollectFailed)[-1] == ev.CollectFailed(
        image_id,
        "no room: 150000 bytes would pass the card's high-water mark; offload pictures first",
    )
    mesh.disconnect("cam", "big")
    mesh.call(cam, lambda: cam.node.read_out(image_id, mesh.now))
    assert cam.of(ev.ReadOutFailed)[-1] == ev.ReadOutFailed(
        image_id, "the original is held by big, not connected now; try again when it returns"
    )
    cam.store.resize(4_000_000)
    mesh.call(cam, lambda: cam.node.collect([image_id], mesh.now))
    assert cam.of(ev.CollectPending) == [
        ev.CollectPending(
            image_id,
            "the original is held by big, not connected now; try again when it returns; "
            "it is collected when it does",
        )
    ]


def test_a_waiting_read_out_gives_up_saying_so() -> None:
    mesh, image_id = dispersed()
    cam = mesh.devices["cam"]
    mesh.disconnect("cam", "big")
    mesh.call(cam, lambda: cam.node.read_out(image_id, mesh.now, wait_s=1.0))
    mesh.advance(1.0)
    assert cam.of(ev.ReadOutFailed) == [
        ev.ReadOutFailed(
            image_id,
            "the original is held by big, not connected now; try again when it returns "
            "(gave up waiting for it)",
        )
    ]


def test_a_read_out_of_a_peers_picture_whose_owner_is_away() -> None:
    mesh = MemoryMesh()
    mesh.add("cam", policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    desk = mesh.add("desk", role=Role.DESK, policy=Policy.THUMBNAILS)
    mesh.connect("cam", "desk")
    mesh.pump()
    image_id = mesh.capture("cam", size=1000)
    mesh.pump()
    mesh.disconnect("cam", "desk")
    mesh.call(desk, lambda: desk.node.read_out(image_id, mesh.now))
    assert desk.of(ev.ReadOutFailed) == [
        ev.ReadOutFailed(image_id, "its owner cam is not connected; try again when it is")
    ]
    mesh.call(desk, lambda: desk.node.request(image_id, mesh.now))
    assert desk.of(ev.RequestPending) == [
        ev.RequestPending(image_id, "no connected peer has this original yet")
    ]


def test_a_peer_flooding_requests_is_told_why() -> None:
    mesh = pair(max_peer_backlog=16)
    code = feed(mesh, "cam", "h", *(Ping(n) for n in range(1, 40)))
    assert code == "too-many-requests"
    (violation,) = mesh.devices["h"].of(ev.ProtocolViolation)
    assert violation.message == (  # type: ignore[attr-defined]
        "17 answers wait for a peer that keeps asking without reading them; it floods us"
    )


def test_a_repair_of_the_only_holder_says_it_stays_listed() -> None:
    mesh, image_id = dispersed()
    cam, big = mesh.devices["cam"], mesh.devices["big"]
    mesh.call(cam, lambda: cam.node.repair(big.id, mesh.now))
    assert cam.of(ev.RepairFailed) == [
        ev.RepairFailed(
            image_id,
            "big was the only holder of this original and no other copy exists; it stays "
            "listed in case big comes back",
        )
    ]
