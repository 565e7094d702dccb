"""Per-picture keys in the node (issue 7, FIG. 20): holders get ciphertext, a desk the owner
trusts gets each key wrapped with the thumbnail, and can read what a lost camera dispersed.

The node logic runs over in-memory pipes (tests/protocol/harness.py) with the real
cryptography (storage.sealing.Sealing) as its Sealer.
"""

from __future__ import annotations

import hashlib
import random

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519

from protocol import events as ev
from protocol.config import Policy
from protocol.messages import OriginalHeader, Purpose, Role, ThumbnailOffer
from protocol.store import DispersalState, Incoming, Where
from storage.sealing import Sealing
from tests.protocol.harness import MemoryMesh, held_plaintext

SIZE = 150_000


def sealing() -> tuple[Sealing, bytes]:
    private = x25519.X25519PrivateKey.generate()
    public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return Sealing(private), public


def field_day(*, wrap_for_desk: bool) -> tuple[MemoryMesh, list[str], dict[str, bytes]]:
    """A camera over its mark disperses to its desk (desks are asked first)."""
    mesh = MemoryMesh()
    cam_sealer, _ = sealing()
    desk_sealer, desk_key = sealing()
    mesh.add("cam", capacity=1_000_000, high_water=0.5, policy=Policy.THUMBNAILS,
             sealer=cam_sealer)
    mesh.add("desk", role=Role.DESK, capacity=64_000_000, policy=Policy.THUMBNAILS,
             sealer=desk_sealer)
    mesh.connect("cam", "desk", wrap_for_b=desk_key if wrap_for_desk else None)
    mesh.pump()
    originals = {}
    for n in range(4):  # 600 kB > the 500 kB mark
        data = random.Random(f"picture {n}").randbytes(SIZE)
        originals[mesh.capture("cam", data)] = data
    mesh.pump()
    return mesh, list(originals), originals


def test_the_desk_gets_each_key_wrapped_with_the_thumbnail_before_any_original() -> None:
    mesh, ids, _ = field_day(wrap_for_desk=True)
    offers = [m for m in mesh.between("cam", "desk") if isinstance(m, ThumbnailOffer)]
    assert {m.image_id for m in offers} == set(ids)
    assert all(m.wrapped_key is not None for m in offers)
    desk = mesh.devices["desk"]
    for image_id in ids:
        record = desk.store.image(image_id)
        assert record is not None and record.wrapped_key is not None
        # Wrapped for the desk: its sealer opens it to the camera's key for that picture.
        key = desk.node.config.sealer.unwrap(record.wrapped_key, image_id)  # type: ignore[union-attr]
        assert key == mesh.devices["cam"].store.picture_key(image_id)
    first_header = next(i for i, m in enumerate(mesh.between("cam", "desk"))
                        if isinstance(m, OriginalHeader))
    first_offer = next(i for i, m in enumerate(mesh.between("cam", "desk"))
                       if isinstance(m, ThumbnailOffer))
    assert first_offer < first_header


def test_without_the_option_no_key_travels_and_the_holder_cannot_open_what_it_holds() -> None:
    mesh, ids, originals = field_day(wrap_for_desk=False)
    cam, desk = mesh.devices["cam"], mesh.devices["desk"]
    offers = [m for m in mesh.between("cam", "desk") if isinstance(m, ThumbnailOffer)]
    assert offers and all(m.wrapped_key is None for m in offers)
    dispersed = [i for i in ids if cam.store.image(i).where is Where.DISPERSED]  # type: ignore[union-attr]
    assert dispersed
    oldest = dispersed[0]
    sealed = desk.store.read_held(oldest, 0, desk.store.held(oldest).size)  # type: ignore[union-attr]
    assert originals[oldest][SIZE // 2 : SIZE // 2 + 64] not in sealed
    assert held_plaintext(cam.store, desk.store, oldest) == originals[oldest]  # the owner can
    mesh.disconnect("cam", "desk")  # the camera is lost
    mesh.call(desk, lambda: desk.node.read_out(oldest, mesh.now))
    failed = desk.of(ev.ReadOutFailed)
    assert len(failed) == 1 and "cam" in failed[0].reason  # type: ignore[attr-defined]
    assert desk.of(ev.ReadOutChunk) == []


def test_a_holder_without_the_key_says_it_holds_the_picture_sealed_not_that_it_lacks_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 17: the reason names what is here (a sealed copy, no key) and whom it needs."""
    mesh, ids, _ = field_day(wrap_for_desk=False)
    cam, desk = mesh.devices["cam"], mesh.devices["desk"]
    oldest = next(i for i in ids if cam.store.image(i).where is Where.DISPERSED)  # type: ignore[union-attr]
    assert desk.store.held(oldest) is not None
    mesh.disconnect("cam", "desk")
    mesh.call(desk, lambda: desk.node.read_out(oldest, mesh.now))
    assert desk.of(ev.ReadOutFailed) == [ev.ReadOutFailed(
        oldest, "this device holds it only sealed for its owner cam, with no key to open it; "
        "cam is not connected: try again when it is")]
    # Without the picture's thumbnail too, it still says what it holds rather than "unknown".
    monkeypatch.setattr(desk.store, "image", lambda image_id: None)
    mesh.call(desk, lambda: desk.node.read_out(oldest, mesh.now))
    assert desk.of(ev.ReadOutFailed)[-1].reason.startswith(  # type: ignore[attr-defined]
        "this device holds it only sealed for its owner cam")


def test_a_desk_with_the_wrapped_key_reads_what_a_lost_camera_dispersed() -> None:
    mesh, ids, originals = field_day(wrap_for_desk=True)
    cam, desk = mesh.devices["cam"], mesh.devices["desk"]
    dispersed = [i for i in ids if cam.store.image(i).where is Where.DISPERSED]  # type: ignore[union-attr]
    assert dispersed and all(desk.store.held(i) is not None for i in dispersed)
    mesh.disconnect("cam", "desk")  # the camera is lost, with the only copy of its keys
    for image_id in dispersed:
        mesh.call(desk, lambda i=image_id: desk.node.read_out(i, mesh.now))  # type: ignore[misc]
        data = b"".join(c.data for c in desk.of(ev.ReadOutChunk)  # type: ignore[attr-defined]
                        if c.image_id == image_id)  # type: ignore[attr-defined]
        assert data == originals[image_id]
        assert ev.ReadOutDone(image_id, image_id) in desk.events
    assert hashlib.sha256(originals[dispersed[0]]).hexdigest() == dispersed[0]


def test_a_collection_home_opens_the_sealed_copy_to_the_very_original() -> None:
    mesh, ids, originals = field_day(wrap_for_desk=False)
    cam = mesh.devices["cam"]
    oldest = next(i for i in ids if cam.store.image(i).where is Where.DISPERSED)  # type: ignore[union-attr]
    cam.store.resize(4_000_000)  # offloaded: a bigger card
    mesh.call(cam, lambda: cam.node.collect([oldest], mesh.now))
    mesh.pump()
    assert cam.of(ev.Collected) != []
    assert cam.store.original_bytes(oldest) == originals[oldest]
    back = [m for m in mesh.between("desk", "cam") if isinstance(m, OriginalHeader)]
    assert back[-1].purpose is Purpose.COLLECT and back[-1].digest == cam.store.sealed_form(oldest).digest


def test_an_original_dispersed_before_sealing_still_comes_home_and_reads_out() -> None:
    """A card from an older cammesh: its holder keeps the original as it is, and no key exists."""
    mesh = MemoryMesh()
    cam = mesh.add("cam", capacity=4_000_000, policy=Policy.THUMBNAILS)
    holder = mesh.add("holder", capacity=4_000_000, policy=Policy.THUMBNAILS)
    data = random.Random("old picture").randbytes(SIZE)
    image_id = mesh.capture("cam", data)
    holder.store.reserve(image_id, SIZE)
    holder.store.write_partial(image_id, Incoming.HELD, 0, data)
    holder.store.finish_partial(image_id, Incoming.HELD, image_id, 1.0, owner=cam.id)
    cam.store.set_dispersion(image_id, holder.id, DispersalState.STORED, 1.0)
    cam.store.free_original(image_id, 2.0)
    assert cam.store.picture_key(image_id) is None
    mesh.connect("cam", "holder")
    mesh.pump()
    mesh.call(cam, lambda: cam.node.read_out(image_id, mesh.now))
    mesh.pump()
    assert b"".join(c.data for c in cam.of(ev.ReadOutChunk)) == data  # type: ignore[attr-defined]
    mesh.call(cam, lambda: cam.node.collect([image_id], mesh.now))
    mesh.pump()
    assert cam.of(ev.Collected) == [ev.Collected(image_id, holder.id)]
    assert cam.store.original_bytes(image_id) == data
    assert holder.store.held(image_id) is None  # released once home


def test_a_holder_that_kept_only_its_own_plain_copy_says_so_and_the_link_stays() -> None:
    """The holder lost what it held but has the picture itself (it pulled it): it must not
    answer a collection with plain bytes the owner would refuse as the wrong digest."""
    mesh, ids, originals = field_day(wrap_for_desk=False)
    cam, desk = mesh.devices["cam"], mesh.devices["desk"]
    oldest = next(i for i in ids if cam.store.image(i).where is Where.DISPERSED)  # type: ignore[union-attr]
    desk.store.release_held(oldest)
    desk.store.write_partial(oldest, Incoming.ORIGINAL, 0, originals[oldest])
    desk.store.finish_partial(oldest, Incoming.ORIGINAL, oldest, mesh.now)
    cam.store.resize(4_000_000)  # offloaded: a bigger card
    mesh.call(cam, lambda: cam.node.collect([oldest], mesh.now))
    mesh.pump()
    assert cam.of(ev.ProtocolViolation) == [] and desk.of(ev.ProtocolViolation) == []
    assert cam.of(ev.Collected) == []
    pending = cam.of(ev.CollectPending)
    assert pending and "holds no copy" in pending[-1].reason  # type: ignore[attr-defined]
    assert ("cam", "desk") in mesh.links
