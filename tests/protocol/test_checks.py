"""Every defence of the node against a lying peer, provoked through its public inputs.

Each ``provoke_*`` builds a small mesh (tests/protocol/harness.py), brings it to
the state the check guards, then feeds the victim frames a lying peer could send
(``Node.receive_data``) and returns the code it refused them with (None: it took
them).  ``test_each_check_refuses_its_lie`` wants the expected code;
``test_each_check_is_needed`` takes that one check out (tests/protocol/check_sites.py,
a monkeypatch of the function, the code untouched) and wants the same lie then
taken, so every test here fails without the check it names.  The table of every
check and refusal in protocol/ and the test that reaches it is tests/protocol/checks.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import msgpack
import pytest

from protocol import events as ev
from protocol.codec import FrameDecoder, decode_frame, encode
from protocol.config import Policy
from protocol.errors import RemoteProtocolError
from protocol.messages import (
    PROTOCOL_VERSION,
    Chunk,
    Collect,
    DisperseAccept,
    DisperseRequest,
    Hello,
    Limits,
    Message,
    OriginalComplete,
    OriginalHeader,
    Ping,
    Purpose,
    ReadOut,
    RequestOriginal,
    Role,
    Stored,
    ThumbnailOffer,
    TransferFailed,
)
from protocol.sealing import SEALED_RECORD
from tests.protocol.check_sites import remove_check, sites
from tests.protocol.harness import Delivered, MemoryMesh
from tests.protocol.test_conversations import CHUNK

OTHER = hashlib.sha256(b"a picture nobody sent").hexdigest()
STRANGER = hashlib.sha256(b"a device nobody paired").hexdigest()
SIZE = 3 * CHUNK + 100


def feed(mesh: MemoryMesh, src: str, dst: str, *msgs: Message) -> str | None:
    """Frames from ``src`` to ``dst`` as if ``src``'s node had sent them: the code ``dst``
    refused them with, or None when it took every one."""
    sender, victim = mesh.devices[src], mesh.devices[dst]
    try:
        for msg in msgs:
            victim.node.receive_data(sender.id, encode(msg), mesh.now)
    except RemoteProtocolError as exc:
        return exc.code
    finally:
        victim.events.extend(victim.node.events())
    return None


def until(kind: type[Message], purpose: Purpose | None = None) -> Callable[[Delivered], bool]:
    return lambda d: isinstance(d.msg, kind) and (
        purpose is None or getattr(d.msg, "purpose", None) is purpose
    )


def last(mesh: MemoryMesh, kind: type[Message]) -> Message:
    return next(d.msg for d in reversed(mesh.log) if isinstance(d.msg, kind))


# --- scenes ---------------------------------------------------------------------------------


def pulling(**desk_options: object) -> tuple[MemoryMesh, str]:
    """A desk that asked the camera for an original: it now waits for that stream's header."""
    mesh = MemoryMesh()
    mesh.add("cam", policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    mesh.add("desk", role=Role.DESK, policy=Policy.ALL, **desk_options)
    mesh.connect("cam", "desk")
    mesh.pump()
    image_id = mesh.capture("cam", size=SIZE)
    mesh.pump(until=until(RequestOriginal))
    return mesh, image_id


def header(image_id: str, purpose: Purpose, size: int, to: str, owner: str, **changes: object) -> OriginalHeader:
    fields: dict[str, object] = dict(
        image_id=image_id, purpose=purpose, size=size, digest=image_id, offset=0,
        destination=to, owner=owner,
    )
    fields.update(changes)
    return OriginalHeader(**fields)  # type: ignore[arg-type]


def sync_header(mesh: MemoryMesh, image_id: str, **changes: object) -> OriginalHeader:
    cam = mesh.devices["cam"]
    size = changes.pop("size", SIZE)
    return header(image_id, Purpose.SYNC, size, mesh.devices["desk"].id, cam.id, **changes)  # type: ignore[arg-type]


def dispersing() -> tuple[MemoryMesh, str]:
    """A camera over its mark that asked a holder to take its oldest original."""
    mesh = MemoryMesh()
    mesh.add("cam", capacity=1_000_000, high_water=0.5, chunk_size=CHUNK, policy=Policy.THUMBNAILS)
    mesh.add("big", capacity=64_000_000, policy=Policy.THUMBNAILS)
    mesh.connect("cam", "big")
    mesh.pump()
    for _ in range(4):
        mesh.capture("cam", size=150_000)
    mesh.pump(until=until(DisperseRequest))
    request = last(mesh, DisperseRequest)
    assert isinstance(request, DisperseRequest)
    return mesh, request.image_id


def streaming_to_holder() -> tuple[MemoryMesh, OriginalHeader]:
    """The camera's dispersal stream to its holder has begun: its header has landed."""
    mesh, _ = dispersing()
    mesh.pump(until=until(OriginalHeader, Purpose.DISPERSE))
    sent = last(mesh, OriginalHeader)
    assert isinstance(sent, OriginalHeader)
    return mesh, sent


def dispersed() -> tuple[MemoryMesh, str]:
    """The camera's oldest original is at its holder, and freed here."""
    mesh, image_id = dispersing()
    mesh.pump()
    record = mesh.devices["cam"].store.image(image_id)
    assert record is not None and record.where.value == "dispersed"
    return mesh, image_id


# --- the lies, one per check ------------------------------------------------------------------


def provoke_unexpected_transfer() -> str | None:
    mesh, _ = pulling()
    return feed(mesh, "cam", "desk", sync_header(mesh, OTHER))


def provoke_wrong_destination() -> str | None:
    mesh, image_id = pulling()
    return feed(mesh, "cam", "desk", sync_header(mesh, image_id, destination=STRANGER))


def provoke_bad_digest_header() -> str | None:
    mesh, image_id = pulling()
    return feed(mesh, "cam", "desk", sync_header(mesh, image_id, digest=OTHER))


def provoke_bad_size() -> str | None:
    mesh, image_id = pulling()
    return feed(mesh, "cam", "desk", sync_header(mesh, image_id, size=SIZE - 1))


def provoke_bad_offset_header() -> str | None:
    mesh, image_id = pulling()
    return feed(mesh, "cam", "desk", sync_header(mesh, image_id, offset=CHUNK))


def provoke_unexpected_chunk() -> str | None:
    mesh, image_id = pulling()
    return feed(mesh, "cam", "desk", Chunk(image_id, Purpose.SYNC, 0, b"x" * CHUNK))


def provoke_bad_offset_chunk() -> str | None:
    mesh, image_id = pulling()
    return feed(
        mesh, "cam", "desk", sync_header(mesh, image_id), Chunk(image_id, Purpose.SYNC, 7, b"x")
    )


def provoke_unexpected_complete() -> str | None:
    mesh, image_id = pulling()
    return feed(mesh, "cam", "desk", OriginalComplete(image_id, Purpose.SYNC, image_id))


def provoke_bad_complete() -> str | None:
    """A stale, partial copy: completed before its last bytes."""
    mesh, image_id = pulling()
    return feed(
        mesh, "cam", "desk",
        sync_header(mesh, image_id),
        Chunk(image_id, Purpose.SYNC, 0, b"x" * CHUNK),
        OriginalComplete(image_id, Purpose.SYNC, image_id),
    )


def provoke_hash_mismatch_stored() -> str | None:
    """Another picture's bytes (or any others) under this one's header."""
    mesh, image_id = pulling()
    return feed(
        mesh, "cam", "desk",
        sync_header(mesh, image_id),
        *(Chunk(image_id, Purpose.SYNC, at, b"y" * min(CHUNK, SIZE - at)) for at in range(0, SIZE, CHUNK)),
        OriginalComplete(image_id, Purpose.SYNC, image_id),
    )


def provoke_hash_mismatch_readout() -> str | None:
    """A read-out answered with bytes that are not the picture: refused, and the read-out fails."""
    mesh = MemoryMesh()
    mesh.add("cam", policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    mesh.add("desk", role=Role.DESK, policy=Policy.THUMBNAILS)
    mesh.connect("cam", "desk")
    mesh.pump()
    image_id = mesh.capture("cam", size=SIZE)
    mesh.pump()
    desk = mesh.devices["desk"]
    mesh.call(desk, lambda: desk.node.read_out(image_id, mesh.now))
    mesh.pump(until=until(ReadOut))
    code = feed(
        mesh, "cam", "desk",
        header(image_id, Purpose.READOUT, SIZE, desk.id, mesh.devices["cam"].id),
        *(Chunk(image_id, Purpose.READOUT, at, b"y" * min(CHUNK, SIZE - at)) for at in range(0, SIZE, CHUNK)),
        OriginalComplete(image_id, Purpose.READOUT, image_id),
    )
    if code is not None:
        assert desk.of(ev.ReadOutFailed) and not desk.of(ev.ReadOutDone)
    return code


def provoke_too_many_requests() -> str | None:
    mesh, _ = pulling()
    mesh.add("flood", max_peer_backlog=16)
    mesh.connect("cam", "flood")
    mesh.pump()
    return feed(mesh, "cam", "flood", *(Ping(n) for n in range(1, 40)))


def provoke_catalog_ours() -> str | None:
    """A thumbnail that claims to be one of the victim's own pictures, which it never had."""
    mesh, image_id = pulling()
    record = mesh.devices["cam"].store.image(image_id)
    assert record is not None
    offer = ThumbnailOffer(
        image_id=OTHER, origin=mesh.devices["desk"].id, seq=1, name="x.jpg", size=10,
        mime="image/jpeg", capture_time=None, metadata={}, thumbnail=b"t", has_original=True,
    )
    return feed(mesh, "cam", "desk", offer)


def provoke_catalog_contradicted() -> str | None:
    """A thumbnail claiming the camera's first sequence number for another picture."""
    mesh, _ = pulling()
    cam = mesh.devices["cam"]
    offer = ThumbnailOffer(
        image_id=OTHER, origin=cam.id, seq=1, name="x.jpg", size=10,
        mime="image/jpeg", capture_time=None, metadata={}, thumbnail=b"t", has_original=True,
    )
    return feed(mesh, "cam", "desk", offer)


def provoke_bad_offset_request() -> str | None:
    mesh, _ = pulling()
    image_id = mesh.capture("cam", size=SIZE)  # not yet asked for: no stream to move up
    return feed(mesh, "desk", "cam", RequestOriginal(image_id, True, SIZE + 1))


def provoke_bad_offset_readout() -> str | None:
    mesh, image_id = pulling()
    return feed(mesh, "desk", "cam", ReadOut(image_id, SIZE + 1))


def provoke_bad_offset_relay() -> str | None:
    """A read-out of a dispersed picture from past its end: refused before any collection."""
    mesh, image_id = dispersed()
    record = mesh.devices["cam"].store.image(image_id)
    assert record is not None
    return feed(mesh, "big", "cam", ReadOut(image_id, record.size + 1))


def provoke_bad_accept() -> str | None:
    """An accept reserving less than the sealed original needs: room it does not have."""
    mesh, image_id = dispersing()
    request = last(mesh, DisperseRequest)
    assert isinstance(request, DisperseRequest)
    return feed(mesh, "big", "cam", DisperseAccept(image_id, request.size - 1, 0))


def provoke_bad_accept_offset() -> str | None:
    """An accept asking the owner to resume past the end of what it would send."""
    mesh, image_id = dispersing()
    request = last(mesh, DisperseRequest)
    assert isinstance(request, DisperseRequest)
    return feed(mesh, "big", "cam", DisperseAccept(image_id, request.size + 10, request.size + 1))


def provoke_premature_stored() -> str | None:
    """STORED while the owner is still sending: believed, the picture would exist nowhere."""
    mesh, sent = streaming_to_holder()
    code = feed(mesh, "big", "cam", Stored(sent.image_id, sent.digest))
    record = mesh.devices["cam"].store.image(sent.image_id)
    if code is not None:
        assert record is not None and record.where.value == "local"
    return code


def provoke_bad_digest_stored() -> str | None:
    mesh, sent = streaming_to_holder()
    mesh.pump(until=until(OriginalComplete, Purpose.DISPERSE))
    return feed(mesh, "big", "cam", Stored(sent.image_id, OTHER))


def provoke_bad_owner_request() -> str | None:
    mesh, _ = dispersing()
    return feed(mesh, "cam", "big", DisperseRequest(OTHER, 1000, STRANGER))


def provoke_bad_owner_header() -> str | None:
    mesh, image_id = dispersing()
    request = last(mesh, DisperseRequest)
    assert isinstance(request, DisperseRequest)
    big = mesh.devices["big"]
    lie = header(image_id, Purpose.DISPERSE, request.size, big.id, STRANGER, digest=OTHER)
    return feed(mesh, "cam", "big", lie)


def provoke_hash_mismatch_relay() -> str | None:
    """A collection for a read-out answered with changed sealed bytes: cut off as they open."""
    mesh, image_id = dispersed()
    cam = mesh.devices["cam"]
    mesh.call(cam, lambda: cam.node.read_out(image_id, mesh.now))
    mesh.pump(until=until(Collect))
    form = cam.store.sealed_form(image_id)
    return feed(
        mesh, "big", "cam",
        header(image_id, Purpose.COLLECT, form.size, cam.id, cam.id, digest=form.digest),
        Chunk(image_id, Purpose.COLLECT, 0, b"z" * min(SEALED_RECORD, form.size)),
    )


# key (tests/protocol/checks.py) -> (the lie, the code that refuses it)
LIES: dict[str, tuple[Callable[[], str | None], str]] = {
    "unexpected-transfer@Inbound.on_header": (provoke_unexpected_transfer, "unexpected-transfer"),
    "wrong-destination@Inbound.on_header": (provoke_wrong_destination, "wrong-destination"),
    "bad-digest@Inbound.on_header": (provoke_bad_digest_header, "bad-digest"),
    "bad-size@Inbound.on_header": (provoke_bad_size, "bad-size"),
    "bad-offset@Inbound.on_header": (provoke_bad_offset_header, "bad-offset"),
    "bad-owner@Inbound.on_header": (provoke_bad_owner_header, "bad-owner"),
    "unexpected-chunk@Inbound.on_chunk": (provoke_unexpected_chunk, "unexpected-chunk"),
    "bad-offset@Inbound.on_chunk": (provoke_bad_offset_chunk, "bad-offset"),
    "unexpected-complete@Inbound.on_complete": (provoke_unexpected_complete, "unexpected-complete"),
    "bad-complete@Inbound.on_complete": (provoke_bad_complete, "bad-complete"),
    "hash-mismatch@Inbound.on_complete": (provoke_hash_mismatch_readout, "hash-mismatch"),
    "hash-mismatch@Inbound.on_complete#2": (provoke_hash_mismatch_stored, "hash-mismatch"),
    "too-many-requests@Node.receive_data": (provoke_too_many_requests, "too-many-requests"),
    "catalog@Sync.on_thumbnail": (provoke_catalog_ours, "catalog"),
    "bad-offset@Serving.on_request": (provoke_bad_offset_request, "bad-offset"),
    "bad-offset@Serving._serve": (provoke_bad_offset_readout, "bad-offset"),
    "bad-offset@Collections.relay": (provoke_bad_offset_relay, "bad-offset"),
    "hash-mismatch@Collections._open": (provoke_hash_mismatch_relay, "hash-mismatch"),
    "bad-accept@Dispersal.on_accept": (provoke_bad_accept, "bad-accept"),
    "bad-accept@Dispersal.on_accept (offset)": (provoke_bad_accept_offset, "bad-accept"),
    "catalog@Sync.on_thumbnail#2": (provoke_catalog_contradicted, "catalog"),
    "premature-stored@Dispersal.on_stored": (provoke_premature_stored, "premature-stored"),
    "bad-digest@Dispersal.on_stored": (provoke_bad_digest_stored, "bad-digest"),
    "bad-owner@Holding.on_request": (provoke_bad_owner_request, "bad-owner"),
}


@pytest.mark.parametrize("key", sorted(LIES))
def test_each_check_refuses_its_lie(key: str) -> None:
    provoke, code = LIES[key]
    assert provoke() == code


def site_of(key: str) -> str:
    """The site key of a LIES key (a second lie for one check says which, in brackets)."""
    return key.split(" (")[0]


GUARDED = sorted(k for k in LIES if sites()[site_of(k)].guarded)


@pytest.mark.parametrize("key", GUARDED)
def test_each_check_is_needed(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the check taken out, the same lie is believed: taken, refused only later for
    another reason, or it crashes the node (what the check was there to prevent)."""
    provoke, code = LIES[key]
    remove_check(monkeypatch, site_of(key))
    try:
        got = provoke()
    except RemoteProtocolError as exc:
        got = exc.code
    except Exception:  # the node crashed on the lie, or the scene saw the damage
        return
    assert got != code


def test_a_decoder_never_read_out_refuses_to_buffer_without_bound() -> None:
    decoder = FrameDecoder()
    frame = Limits.MAX_FRAME.to_bytes(4, "big") + bytes(Limits.MAX_FRAME)
    with pytest.raises(RemoteProtocolError) as caught:
        for _ in range(80):
            decoder.feed(frame)
    assert caught.value.code == "too-much-buffered"


def test_a_header_resuming_past_its_own_size_is_refused_by_the_codec() -> None:
    """Field relations are checked on frames off the wire too (check_relations, passed on)."""
    body = msgpack.packb({
        "t": "header", "v": PROTOCOL_VERSION, "image_id": OTHER, "purpose": "sync", "size": 10,
        "digest": OTHER, "offset": 11, "destination": STRANGER, "owner": STRANGER,
    })
    with pytest.raises(RemoteProtocolError) as caught:
        decode_frame(body)
    assert caught.value.code == "bad-field" and "offset" in str(caught.value)


def test_a_hello_naming_another_device_is_refused_by_the_connection_first() -> None:
    """Sync.on_hello's `identity` check stands behind the connection's `wrong-peer`: a Hello
    naming another device than the one TLS authenticated never reaches the node."""
    mesh = MemoryMesh()
    mesh.add("cam")
    mesh.add("desk", role=Role.DESK)
    mesh.connect("cam", "desk")
    lie = Hello(
        device_id=STRANGER, name="cam", role=Role.CAMERA, version=PROTOCOL_VERSION,
        capabilities=(), capacity=1, free=1,
    )
    assert feed(mesh, "cam", "desk", lie) == "wrong-peer"


def test_a_request_for_a_picture_never_had_is_refused_with_a_reason() -> None:
    mesh, _ = pulling()
    assert feed(mesh, "desk", "cam", RequestOriginal(OTHER, True, 0)) is None
    mesh.pump()
    failed = [m for m in mesh.between("cam", "desk") if isinstance(m, TransferFailed)]
    assert failed and failed[-1].image_id == OTHER and failed[-1].reason
