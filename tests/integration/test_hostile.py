"""Hostile paired peers against a real `cammesh node` (issue 7, "Must show" 2).

A paired device can be compromised: it holds a pinned identity, so TLS lets it in, and from
then on it can say anything the codec can carry.  Each test opens a real TLS connection with
such an identity (tests/integration/hostile_peer.py), misbehaves in one way, and checks that
the node cuts it off with a logged reason (a ProtocolViolation event in its JSON log), that
its card is not corrupted (catalog rows as expected, every original hash-correct, used bytes
equal to the bytes on disk), and that an honest peer keeps syncing through the attack.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import socket
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgpack
import pytest
import trio

from mesh.desk_demo import DeviceSpec
from mesh.identity import Identity
from protocol.messages import (
    Chunk,
    Collect,
    DisperseAccept,
    DisperseReject,
    DisperseRequest,
    Limits,
    Message,
    OriginalComplete,
    OriginalHeader,
    Ping,
    Pong,
    Purpose,
    RequestOriginal,
    Role,
    Stored,
    ThumbnailOffer,
    TransferFailed,
)
from tests.integration.devices import ProcessMesh
from tests.integration.hostile_peer import (
    CardState,
    PeerClosed,
    ScriptedPeer,
    card_state,
)
from tests.integration.nodes import wait_until, write_pictures

pytestmark = pytest.mark.integration

T = TypeVar("T")
SIDE = 400  # pictures of some 60-90 kB: one or two chunks each, quick to make and move
THUMBNAILS_ONLY = ["--policy", "*=thumbnails"]



async def blocking(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking wait (a poll of a node) off the trio loop, so the scripted peer's
    connection is not starved meanwhile."""
    return await trio.to_thread.run_sync(fn, *args)


@dataclass
class Scene:
    """A victim node and an honest peer (both real processes) and the card of a paired device
    whose identity the test drives by hand."""

    mesh: ProcessMesh
    evil_card: Path
    folder: Path
    pictures: list[str]
    made: int = 0

    @property
    def victim(self) -> Any:
        return self.mesh["victim"]

    @property
    def evil_id(self) -> str:
        return Identity.load(self.evil_card).device_id

    async def connect(self) -> ScriptedPeer:
        return await ScriptedPeer.connect(self.evil_card, self.victim.port)

    def import_pictures(self, count: int) -> list[str]:
        files = write_pictures(self.folder / f"batch{self.made}", count, side=SIDE,
                               seed=100 + self.made)
        self.made += 1
        answer = self.victim.running.ask({"op": "import", "paths": [str(f) for f in files]})
        summary = answer["summary"]
        assert not summary["rejected"], summary
        ids = [item["image_id"] for item in summary["imported"]]
        self.pictures.extend(ids)
        return ids

    def honest_syncs(self) -> None:
        """A new picture on the victim reaches the honest peer (its thumbnail, and its original
        when the honest peer pulls everything)."""
        (image_id,) = self.import_pictures(1)
        honest = self.mesh["honest"].running

        def arrived() -> bool:
            record = honest.images().get(image_id)
            return record is not None and (
                "--policy" in self.mesh["honest"].args or record["where"] == "local"
            )

        wait_until(f"the honest peer to get {image_id[:8]} from the victim", arrived)

    def violations(self) -> list[dict[str, Any]]:
        evil = self.evil_id
        return [e for e in self.victim.running.events()
                if e["event"] == "ProtocolViolation" and e.get("peer") == evil]

    def wait_violation(self) -> dict[str, Any]:
        found = wait_until("the victim to log why it cut the peer off", self.violations)
        return found[-1]


@pytest.fixture
def scene(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Scene]:
    """Victim camera + honest camera running; the paired "evil" device only as a card.

    ``@pytest.mark.parametrize("scene", [...], indirect=True)`` may pass a dict with
    ``capacity``, ``victim`` (extra victim args), ``honest`` (honest args), ``honest_capacity``.
    """
    options: dict[str, Any] = getattr(request, "param", {})
    specs = [
        DeviceSpec("victim", Role.CAMERA, options.get("capacity", 50_000_000)),
        DeviceSpec("honest", Role.CAMERA, options.get("honest_capacity", 50_000_000)),
        DeviceSpec("evil", Role.DESK),
    ]
    mesh = ProcessMesh.create(tmp_path, specs, {"victim": options.get("victim", []),
                                         "honest": options.get("honest", [])})
    evil = mesh.devices.pop("evil")  # paired with both, but no node runs on its card
    try:
        mesh.start_all()
        mesh.wait_connected()
        found = Scene(mesh, evil.card, tmp_path, [])
        if options.get("pictures", 3):
            found.import_pictures(options.get("pictures", 3))
        yield found
    finally:
        mesh.stop_all()


@pytest.fixture
async def evil(scene: Scene) -> AsyncIterator[ScriptedPeer]:
    peer = await scene.connect()
    try:
        yield peer
    finally:
        await peer.aclose()


def some_id(seed: int) -> str:
    return hashlib.sha256(f"not a picture {seed}".encode()).hexdigest()


async def assert_cut_off(scene: Scene, peer: ScriptedPeer, *codes: str) -> dict[str, Any]:
    """The node closed the link, said why in an Error frame, and logged the violation."""
    error = await peer.cut_off()
    violation = await blocking(scene.wait_violation)
    assert violation["code"] in codes, violation
    assert error is not None and error.code == violation["code"], (error, violation)
    return violation


async def still_serving(scene: Scene, before: CardState | None) -> CardState:
    """The honest peer syncs, and the victim's card is intact (and unchanged, given ``before``)."""
    await blocking(scene.honest_syncs)
    after = await blocking(card_state, scene.victim)
    if before is not None:
        new = {p for p in after.pictures - before.pictures if p[0] not in scene.pictures}
        gone = before.pictures - after.pictures
        assert not new and not gone, f"the card changed: new {new}, gone {gone}"
        assert after.held == before.held and after.dispersion == before.dispersion
    return after


# --- frames nobody asked for -----------------------------------------------------------------


def _unasked(image_id: str, me: str) -> list[Message]:
    return [
        Chunk(image_id, Purpose.SYNC, 0, b"\xff" * 1000),
        OriginalHeader(image_id, Purpose.DISPERSE, 1000, image_id, 0, me, me),
        OriginalComplete(image_id, Purpose.COLLECT, image_id),
    ]


@pytest.mark.parametrize("which", ["chunk", "header", "complete"])
async def test_a_stream_nobody_asked_for_is_cut_off(scene: Scene, evil: ScriptedPeer,
                                                    which: str) -> None:
    before = await blocking(card_state, scene.victim)
    await evil.handshake()
    # One of the victim's own pictures: a chunk for it must not overwrite or add anything.
    target = scene.pictures[0]
    msg = _unasked(target, scene.victim.device_id())[["chunk", "header", "complete"].index(which)]
    await evil.send(msg)
    await assert_cut_off(scene, evil, "unexpected-chunk", "unexpected-transfer",
                         "unexpected-complete")
    await still_serving(scene, before)


async def test_chunks_past_a_requested_stream_are_cut_off(scene: Scene, evil: ScriptedPeer) -> None:
    """The victim asked for an original; the peer sends more bytes than it announced."""
    before = await blocking(card_state, scene.victim)
    await evil.handshake()
    image_id, data = some_id(1), b"\x00" * 50_000
    offer = ThumbnailOffer(image_id, evil.device_id, 1, "x.jpg", len(data), "image/jpeg", None,
                           {}, b"", True)
    await evil.send(offer)
    # The victim pulls every original (its default policy), so it asks for this one.
    request = await evil.expect(RequestOriginal, lambda m: m.image_id == image_id)
    me = scene.victim.device_id()
    await evil.send(
        OriginalHeader(image_id, Purpose.SYNC, len(data), image_id, request.offset, me, evil.device_id),
        Chunk(image_id, Purpose.SYNC, 0, data),
        Chunk(image_id, Purpose.SYNC, len(data), b"more"),
    )
    await assert_cut_off(scene, evil, "bad-offset")
    after = await still_serving(scene, None)
    assert (image_id, "local") not in after.pictures  # the bytes never counted as an original
    new = {p for p in after.pictures - before.pictures if p[0] not in scene.pictures}
    assert new <= {(image_id, "absent")}


async def test_an_original_that_does_not_hash_to_its_id_is_refused(
    scene: Scene, evil: ScriptedPeer
) -> None:
    await evil.handshake()
    data = b"the peer lies about what these bytes are" * 100
    image_id = some_id(2)  # not sha256(data)
    await evil.send(ThumbnailOffer(image_id, evil.device_id, 1, "x.jpg", len(data), "image/jpeg",
                                   None, {}, b"", True))
    request = await evil.expect(RequestOriginal, lambda m: m.image_id == image_id)
    assert request.offset == 0
    me = scene.victim.device_id()
    await evil.send(
        OriginalHeader(image_id, Purpose.SYNC, len(data), image_id, 0, me, evil.device_id),
        Chunk(image_id, Purpose.SYNC, 0, data),
        OriginalComplete(image_id, Purpose.SYNC, image_id),
    )
    await assert_cut_off(scene, evil, "hash-mismatch")
    after = await still_serving(scene, None)
    assert (image_id, "local") not in after.pictures


# --- frames at and over the size limit, and garbage ----------------------------------------


async def test_a_frame_over_the_limit_is_cut_off_at_its_length_prefix(
    scene: Scene, evil: ScriptedPeer
) -> None:
    before = await blocking(card_state, scene.victim)
    await evil.handshake()
    # Only the prefix: the node must not wait for (or buffer) the promised body.
    await evil.send_raw(struct.pack(">I", Limits.MAX_FRAME + 1))
    await assert_cut_off(scene, evil, "frame-too-large")
    await still_serving(scene, before)


async def test_a_frame_at_the_limit_is_read_and_refused(scene: Scene, evil: ScriptedPeer) -> None:
    before = await blocking(card_state, scene.victim)
    await evil.handshake()
    # A chunk whose data fills the whole frame: legal framing, an illegal chunk size.
    head = {"t": "chunk", "v": 1, "image_id": some_id(3), "purpose": "sync", "offset": 0}
    packed_head = msgpack.packb(head)[1:]  # the map's entries, without its fixmap header
    overhead = 1 + len(packed_head) + len(msgpack.packb("data")) + 5  # bin32 header
    body = (bytes([0x80 | 5]) + packed_head + msgpack.packb("data")
            + b"\xc6" + struct.pack(">I", Limits.MAX_FRAME - overhead)
            + b"\x00" * (Limits.MAX_FRAME - overhead))
    assert len(body) == Limits.MAX_FRAME
    with contextlib.suppress(PeerClosed):  # it may hang up before the last byte arrives
        await evil.send_raw(struct.pack(">I", len(body)) + body)
    await assert_cut_off(scene, evil, "bad-msgpack", "bad-field", "frame-too-large")
    await still_serving(scene, before)


@pytest.mark.parametrize("when", ["before-hello", "after-handshake"])
async def test_garbage_is_cut_off(scene: Scene, evil: ScriptedPeer, when: str) -> None:
    before = await blocking(card_state, scene.victim)
    if when == "after-handshake":
        await evil.handshake()
    noise = random.Random(7).randbytes(4096)
    with contextlib.suppress(PeerClosed):
        await evil.send_raw(b"\x00\x00\x00\x10" + noise)
    violation = await assert_cut_off(scene, evil, "bad-msgpack", "unknown-type", "bad-field",
                                     "bad-version", "unexpected-message", "frame-too-large")
    assert violation["message"]
    await still_serving(scene, before)


async def test_a_reason_of_64_characters_is_logged_and_the_link_stays_up(
    scene: Scene, evil: ScriptedPeer
) -> None:
    """A peer's free text that happens to be 64 characters long is just text."""
    await evil.handshake()
    image_id = some_id(5)
    await evil.send(ThumbnailOffer(image_id, evil.device_id, 1, "x.jpg", 1000, "image/jpeg",
                                   None, {}, b"", True))
    await evil.expect(RequestOriginal, lambda m: m.image_id == image_id)
    reason = "z" * 64  # not hex, as long as a device id
    await evil.send(TransferFailed(image_id, Purpose.SYNC, reason), Ping(3))
    await evil.expect(Pong, timeout=30)
    await blocking(scene.honest_syncs)
    assert not evil.closed and not scene.violations()
    events = scene.victim.running.events()
    assert any(e["event"] == "TransferRefused" and e.get("reason") == reason for e in events)
    assert not any(e["event"] == "PeerGone" and e.get("peer") == evil.device_id for e in events)


# --- floods ----------------------------------------------------------------------------------


async def test_an_honest_peer_keeps_syncing_through_a_request_flood(
    scene: Scene, evil: ScriptedPeer
) -> None:
    """Thousands of requests and pings, read back as fast as they come: served, not harmful."""
    before = await blocking(card_state, scene.victim)
    await evil.handshake()
    pongs: list[int] = []

    async def flood() -> None:
        for batch in range(20):
            await evil.send(*[RequestOriginal(scene.pictures[i % len(scene.pictures)], False)
                              for i in range(50)],
                            *[Ping(batch * 100 + i) for i in range(50)])

    async def drain() -> None:
        while len(pongs) < 1000:
            msg = await evil.receive()
            if isinstance(msg, Pong):
                pongs.append(msg.nonce)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(flood)
        nursery.start_soon(drain)
        await still_serving(scene, before)
    assert sorted(pongs) == sorted(b * 100 + i for b in range(20) for i in range(50))
    assert not scene.violations()


async def test_a_peer_that_floods_requests_without_reading_is_cut_off(
    scene: Scene, evil: ScriptedPeer
) -> None:
    await evil.handshake()
    # A small receive window, so the answers pile up in the node rather than in our kernel.
    evil.stream.socket_stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        for batch in range(10):
            await evil.send(*[RequestOriginal(some_id(batch * 1000 + i), False)
                              for i in range(1000)])
        # Still connected: a Pong proves every request above was handled without a cut-off.
        await evil.send(Ping(9))
        await evil.expect(Pong)
    except PeerClosed:
        pass
    assert evil.closed, "the node answered 10,000 unread requests and kept the link"
    violation = await blocking(scene.wait_violation)
    assert violation["code"] == "too-many-requests"


# --- a lying holder ------------------------------------------------------------------------

# A victim whose card passes its high-water mark with three pictures and disperses to the
# scripted peer (a desk advertising room; desks are asked first).  The honest peer pulls only
# thumbnails and advertises too little room to be asked.
DISPERSING = {"capacity": 400_000, "victim": ["--high-water", "0.2"],
              "honest": THUMBNAILS_ONLY, "honest_capacity": 40_000, "pictures": 0}


async def take_dispersal(scene: Scene, evil: ScriptedPeer, *, accept: bool = True,
                         then: Callable[[str], list[Message]] | None = None) -> tuple[str, bytes]:
    """Handshake as a roomy desk, import pictures on the victim, and take its first
    dispersal request; ``then(image_id)`` goes out in the same write as the accept, before
    the stream.  Returns (image id, the sealed original as received, when it was read)."""
    await evil.handshake(capacity=10**9, free=10**9)
    await blocking(scene.import_pictures, 3)
    request = await evil.expect(DisperseRequest)
    if not accept:
        return request.image_id, b""
    extra = then(request.image_id) if then is not None else []
    await evil.send(DisperseAccept(request.image_id, request.size, 0), *extra)
    if then:
        return request.image_id, b""
    header = await evil.expect(OriginalHeader, lambda m: m.image_id == request.image_id)
    data = bytearray()
    while True:
        msg = await evil.receive()
        if isinstance(msg, Chunk) and msg.image_id == request.image_id:
            data += msg.data
        elif isinstance(msg, OriginalComplete) and msg.image_id == request.image_id:
            break
    # Holders get the original sealed with its own key: they verify the sealed digest.
    assert len(data) == header.size and hashlib.sha256(data).hexdigest() == header.digest
    assert header.digest != request.image_id
    return request.image_id, bytes(data)


@pytest.mark.parametrize("scene", [DISPERSING], indirect=True)
async def test_stored_for_a_different_digest_is_cut_off(scene: Scene, evil: ScriptedPeer) -> None:
    image_id, _ = await take_dispersal(scene, evil)
    await evil.send(Stored(image_id, some_id(4)))
    await assert_cut_off(scene, evil, "bad-digest")
    after = await still_serving(scene, None)
    assert (image_id, "local") in after.pictures  # the original was not freed on a lie


@pytest.mark.parametrize("scene", [DISPERSING], indirect=True)
async def test_a_holder_that_accepts_and_never_stores_frees_nothing(
    scene: Scene, evil: ScriptedPeer
) -> None:
    image_id, _ = await take_dispersal(scene, evil)
    # Silence: the original stays on the victim's card, its entry waits (asked again later).
    await evil.send(Ping(1))
    await evil.expect(Pong)
    after = await still_serving(scene, None)
    assert (image_id, "local") in after.pictures
    assert (image_id, evil.device_id, "accepted") in after.dispersion


@pytest.mark.parametrize("scene", [DISPERSING], indirect=True)
async def test_a_reject_after_advertising_room_frees_nothing(
    scene: Scene, evil: ScriptedPeer
) -> None:
    image_id, _ = await take_dispersal(scene, evil, accept=False)
    await evil.send(DisperseReject(image_id, "lied about my room", 0), Ping(1))
    await evil.expect(Pong)
    after = await still_serving(scene, None)
    assert (image_id, "local") in after.pictures
    assert not {e for e in after.dispersion if e[1] == evil.device_id and e[0] == image_id}


@pytest.mark.parametrize("scene", [DISPERSING], indirect=True)
async def test_stored_before_the_original_was_sent_frees_nothing(
    scene: Scene, evil: ScriptedPeer
) -> None:
    # The lie rides in the very write that accepts: the stream cannot have been sent yet.
    image_id, _ = await take_dispersal(scene, evil, then=lambda i: [Stored(i, i), Ping(2)])
    with contextlib.suppress(PeerClosed):  # cut off (or ignored): either way, nothing freed
        await evil.expect(Pong)
    if evil.closed:
        await blocking(scene.wait_violation)
    after = await still_serving(scene, None)
    assert (image_id, "local") in after.pictures, "the victim freed an original nobody holds"


def get(scene: Scene, image_id: str, target: Path) -> str | None:
    """`cammesh get` through the victim's node: None when it wrote the file, else its error."""
    try:
        scene.victim.running.ask({"op": "get", "id": image_id, "path": str(target),
                                  "timeout": 60}, timeout=90)
    except Exception as exc:  # the control API's refusal, whatever its type
        return str(exc)
    return None


async def serve_collect(peer: ScriptedPeer, me: str, image_id: str, data: bytes,
                        digest: str) -> None:
    """Answer the victim's Collect for ``image_id`` with ``data`` (honest or not), promising
    ``digest`` (the sealed digest the victim stored it under)."""
    collect = await peer.expect(Collect, lambda m: m.image_id == image_id)
    await peer.send(
        OriginalHeader(image_id, Purpose.COLLECT, len(data), digest, collect.offset, me, me),
        *[Chunk(image_id, Purpose.COLLECT, o, data[o:o + Limits.DEFAULT_CHUNK])
          for o in range(collect.offset, len(data), Limits.DEFAULT_CHUNK)],
        OriginalComplete(image_id, Purpose.COLLECT, digest),
    )


@pytest.mark.parametrize("scene", [DISPERSING], indirect=True)
async def test_different_bytes_on_collect_are_refused_and_an_honest_answer_reads_out(
    scene: Scene, evil: ScriptedPeer
) -> None:
    """A read-out of a dispersed picture collects it from its holder, which forges a byte."""
    image_id, data = await take_dispersal(scene, evil)
    digest = hashlib.sha256(data).hexdigest()
    await evil.send(Stored(image_id, digest))
    victim = scene.victim.running
    await blocking(lambda: wait_until(f"the victim to free {image_id[:8]}", lambda: (
        victim.images()[image_id]["where"] == "dispersed")))
    before = await blocking(card_state, scene.victim)
    me = scene.victim.device_id()
    target = scene.folder / "read-out.jpg"
    forged = bytearray(data)
    forged[len(forged) // 2] ^= 0xFF
    outcome: list[str | None] = []

    async def read_out() -> None:
        outcome.append(await blocking(get, scene, image_id, target))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_out)
        await serve_collect(evil, me, image_id, bytes(forged), digest)
        await assert_cut_off(scene, evil, "hash-mismatch")
    assert outcome[0] is not None and not target.exists(), "forged bytes were handed out"
    after = await still_serving(scene, None)
    assert (image_id, "dispersed") in after.pictures  # nothing about the picture changed
    assert before.pictures <= after.pictures and after.dispersion >= before.dispersion

    # Reconnected and honest again, the holder serves the read-out: byte-identical.
    await evil.aclose()
    honest_again = await scene.connect()
    try:
        await honest_again.handshake(capacity=10**9, free=10**9)
        outcome.clear()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_out)
            await serve_collect(honest_again, me, image_id, data, digest)
        plain = target.read_bytes()
        assert outcome == [None] and hashlib.sha256(plain).hexdigest() == image_id
        assert plain[len(plain) // 2:len(plain) // 2 + 64] not in data  # it held ciphertext
    finally:
        await honest_again.aclose()


# --- a peer that takes more than its share of the card -----------------------------------------


@pytest.mark.parametrize("scene", [{"capacity": 10_000_000, "pictures": 1}], indirect=True)
async def test_one_peer_cannot_reserve_more_than_its_share_of_the_card(
    scene: Scene, evil: ScriptedPeer
) -> None:
    await evil.handshake()
    size = 1_000_000
    await evil.send(*[DisperseRequest(some_id(100 + i), size, evil.device_id) for i in range(9)])
    answers: dict[str, Message] = {}
    while len(answers) < 9:
        msg = await evil.receive()
        if isinstance(msg, DisperseAccept | DisperseReject):
            answers[msg.image_id] = msg
    accepted = sum(isinstance(m, DisperseAccept) for m in answers.values())
    # Half the card is the most one peer may hold or reserve (the rest stays for the others).
    assert accepted * size <= 10_000_000 // 2, f"one peer reserved {accepted * size} bytes"
