"""Whole conversations between Nodes over in-memory pipes (tests/protocol/harness.py)."""

from __future__ import annotations

import hashlib
import io
import random

import pytest
from PIL import Image

from protocol import events as ev
from protocol.config import NodeConfig, Policy
from protocol.connection import Connection
from protocol.errors import RemoteProtocolError
from protocol.messages import (
    PROTOCOL_VERSION,
    Catalog,
    Chunk,
    Collect,
    DisperseAccept,
    DisperseReject,
    Hello,
    Limits,
    OriginalComplete,
    OriginalHeader,
    Ping,
    Pong,
    Purpose,
    ReadOut,
    RequestOriginal,
    Role,
    Stored,
    ThumbnailOffer,
)
from protocol.node import Node
from protocol.store import DispersalState, Incoming, TransferState, Where
from sim import planted
from sim.memstore import MemoryStore
from tests.protocol.harness import Delivered, MemoryMesh, device_id, thumbnail_first

CHUNK = Limits.MIN_CHUNK
SIZE = 4 * CHUNK + 100  # five chunks


def is_msg(kind: type, image_id: str | None = None, src: str | None = None):  # type: ignore[no-untyped-def]
    def check(d: Delivered) -> bool:
        return (
            isinstance(d.msg, kind)
            and (image_id is None or getattr(d.msg, "image_id", None) == image_id)
            and (src is None or d.src == src)
        )

    return check


def jpeg(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 80, 20)).save(out, "JPEG", quality=90)
    return out.getvalue()


# --- thumbnails first ----------------------------------------------------------------------


def test_thumbnails_go_before_any_original_and_originals_arrive_verified() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam", chunk_size=CHUNK)
    desk = mesh.add("desk", role=Role.DESK, chunk_size=CHUNK)
    ids = [mesh.capture("cam", size=SIZE) for _ in range(3)]
    mesh.connect("cam", "desk")
    mesh.pump()
    story = [m.TAG for m in mesh.between("cam", "desk")]
    assert story[:2] == ["hello", "catalog"]
    assert story[2:5] == ["thumb"] * 3  # every thumbnail before the first header
    assert thumbnail_first(mesh.log)
    for image_id in ids:
        assert desk.store.original_bytes(image_id) == cam.store.original_bytes(image_id)
    arrived = desk.of(ev.ThumbnailArrived)
    assert {e.image_id for e in arrived} == set(ids)  # type: ignore[attr-defined]


def test_a_new_capture_overtakes_an_original_after_at_most_one_chunk() -> None:
    mesh = MemoryMesh()
    mesh.add("cam", chunk_size=CHUNK)
    mesh.add("desk", role=Role.DESK, chunk_size=CHUNK)
    old = mesh.capture("cam", size=SIZE)
    mesh.connect("cam", "desk")
    mesh.pump(until=is_msg(Chunk, old))
    new = mesh.capture("cam", size=SIZE)
    mesh.pump(until=is_msg(ThumbnailOffer, new))
    after = mesh.between("cam", "desk")
    last_old_chunk = max(i for i, m in enumerate(after) if isinstance(m, Chunk))
    assert isinstance(after[-1], ThumbnailOffer) and after[-1].image_id == new
    assert len(after) - 1 - last_old_chunk <= 1  # at most the chunk already on the wire
    mesh.pump()
    assert thumbnail_first(mesh.log)


# --- requests, refusals, smaller copies ------------------------------------------------------


def test_a_request_reorders_the_queue() -> None:
    mesh = MemoryMesh()
    mesh.add("cam", chunk_size=CHUNK)
    desk = mesh.add("desk", role=Role.DESK, chunk_size=CHUNK)
    ids = [mesh.capture("cam", size=SIZE) for _ in range(4)]
    mesh.connect("cam", "desk")
    mesh.pump(until=is_msg(Chunk, src="cam"))
    first = next(m.image_id for m in mesh.between("cam", "desk") if isinstance(m, Chunk))
    wanted = [i for i in ids if i != first][-1]
    mesh.call(desk, lambda: desk.node.request(wanted, mesh.now))
    mesh.pump()
    sent = [m for m in mesh.between("desk", "cam") if isinstance(m, RequestOriginal)]
    assert sent[-1].image_id == wanted and sent[-1].urgent
    completes = [m.image_id for m in mesh.between("cam", "desk") if isinstance(m, OriginalComplete)]
    # The one already streaming may finish its chunk, but the requested one comes next.
    assert completes.index(wanted) <= 1
    assert completes.index(wanted) < min(completes.index(i) for i in ids if i not in (first, wanted))
    assert all(desk.store.image(i).where is Where.LOCAL for i in ids)  # type: ignore[union-attr]


def test_a_refused_original_leaves_the_queue_and_stays_refused() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam", chunk_size=CHUNK)
    desk = mesh.add("desk", role=Role.DESK, chunk_size=CHUNK)
    image_id = mesh.capture("cam", size=SIZE)
    mesh.connect("cam", "desk")
    mesh.pump(until=is_msg(Chunk, image_id))
    mesh.call(desk, lambda: desk.node.refuse(image_id, mesh.now))
    mesh.pump()
    chunks = [m for m in mesh.between("cam", "desk") if isinstance(m, Chunk)]
    assert len(chunks) < 5  # the stream stopped
    assert not any(isinstance(m, OriginalComplete) for m in mesh.between("cam", "desk"))
    assert desk.store.image(image_id).where is Where.ABSENT  # type: ignore[union-attr]
    assert desk.store.partial_offset(image_id, Incoming.ORIGINAL) == 0
    assert cam.store.transfer_state(desk.id, image_id) is TransferState.REFUSED
    # A reconnect does not pull it again.
    mesh.disconnect("cam", "desk")
    mesh.connect("cam", "desk")
    mesh.pump()
    assert desk.store.image(image_id).where is Where.ABSENT  # type: ignore[union-attr]


def test_a_smaller_copy_is_recompressed_on_request() -> None:
    mesh = MemoryMesh()
    mesh.add("cam", chunk_size=CHUNK)
    desk = mesh.add("desk", role=Role.DESK, chunk_size=CHUNK, policy=Policy.THUMBNAILS)
    image_id = mesh.capture("cam", jpeg(640, 480))
    mesh.connect("cam", "desk")
    mesh.pump()
    assert not any(isinstance(m, RequestOriginal) for m in mesh.between("desk", "cam"))
    mesh.call(desk, lambda: desk.node.request(image_id, mesh.now, max_side=100, quality=60))
    mesh.pump()
    smaller = desk.store.smaller_bytes(image_id)
    assert smaller is not None
    with Image.open(io.BytesIO(smaller)) as picture:
        assert max(picture.size) <= 100
    assert desk.store.image(image_id).where is Where.ABSENT  # type: ignore[union-attr]
    arrived = desk.of(ev.OriginalArrived)
    assert [(e.image_id, e.purpose) for e in arrived] == [(image_id, Purpose.SMALLER)]  # type: ignore[attr-defined]


# --- dispersal ------------------------------------------------------------------------------


def full_camera_mesh(**cam_options: object) -> tuple[MemoryMesh, list[str]]:
    """A camera over its high-water mark, a desk that must reject and a camera with room."""
    mesh = MemoryMesh()
    mesh.add(
        "cam", capacity=1_000_000, high_water=0.5, chunk_size=CHUNK,
        policy=Policy.THUMBNAILS, **cam_options,
    )
    # Desks are asked first; this one has free room but would pass its high-water mark.
    mesh.add("small", role=Role.DESK, capacity=1_000_000, high_water=0.5, policy=Policy.THUMBNAILS)
    mesh.add("big", capacity=64_000_000, policy=Policy.THUMBNAILS)
    mesh.capture("small", size=400_000)
    mesh.connect("cam", "small")
    mesh.connect("cam", "big")
    mesh.pump()
    ids = [mesh.capture("cam", size=150_000) for _ in range(4)]  # 600 kB > 500 kB mark
    mesh.pump()
    return mesh, ids


def test_one_dispersal_rejected_then_one_accepted_and_freed_only_after_stored() -> None:
    mesh, ids = full_camera_mesh()
    cam, small, big = (mesh.devices[n] for n in ("cam", "small", "big"))
    oldest = ids[0]
    rejected = cam.of(ev.DispersalRejected)
    assert [(e.image_id, e.holder) for e in rejected] == [(oldest, small.id)]  # type: ignore[attr-defined]
    assert any(isinstance(m, DisperseReject) for m in mesh.between("small", "cam"))
    assert any(isinstance(m, DisperseAccept) for m in mesh.between("big", "cam"))
    assert cam.of(ev.Dispersed) == [ev.Dispersed(oldest, (big.id,))]
    # The owner freed its original only after the holder's STORED reached it.
    headers = [m for m in mesh.between("cam", "big") if isinstance(m, OriginalHeader)]
    assert headers[0].purpose is Purpose.DISPERSE and headers[0].destination == big.id
    assert any(isinstance(m, Stored) for m in mesh.between("big", "cam"))
    record = cam.store.image(oldest)
    assert record is not None and record.where is Where.DISPERSED and record.thumbnail
    assert [(e.holder, e.state) for e in cam.store.dispersion(oldest)] == [
        (big.id, DispersalState.STORED)
    ]
    held = big.store.held(oldest)
    assert held is not None and held.owner == cam.id
    assert cam.store.usage().used <= 500_000
    for dev in mesh.devices.values():
        assert dev.store.usage().used + dev.store.usage().reserved <= dev.store.usage().capacity
    assert thumbnail_first(mesh.log)


def test_card_full_is_said_plainly_when_nobody_will_hold() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam", capacity=1_000_000, high_water=0.5, policy=Policy.THUMBNAILS)
    mesh.add("small", capacity=1_000_000, high_water=0.5, policy=Policy.THUMBNAILS)
    mesh.capture("small", size=400_000)
    mesh.connect("cam", "small")
    mesh.pump()
    ids = [mesh.capture("cam", size=150_000) for _ in range(4)]
    mesh.pump()
    full = cam.of(ev.CardFull)
    assert len(full) == 1 and "nothing was lost" in full[0].message.lower()  # type: ignore[attr-defined]
    assert all(cam.store.image(i).where is Where.LOCAL for i in ids)  # type: ignore[union-attr]


def test_a_dispersed_picture_reads_out_from_a_third_device_via_its_holder() -> None:
    mesh, ids = full_camera_mesh()
    cam, small = mesh.devices["cam"], mesh.devices["small"]
    oldest = ids[0]
    original = random.Random("cam:2").randbytes(150_000)  # the harness's first capture on cam
    assert hashlib.sha256(original).hexdigest() == oldest
    held = mesh.devices["big"].store.held(oldest)
    assert held is not None and held.digest != oldest  # the holder keeps it sealed
    sealed = mesh.devices["big"].store.read_held(oldest, 0, held.size)
    assert original[:1000] not in sealed and original[-1000:] not in sealed
    mesh.call(small, lambda: small.node.read_out(oldest, mesh.now))
    mesh.pump()
    assert any(isinstance(m, ReadOut) for m in mesh.between("small", "cam"))
    assert any(isinstance(m, Collect) for m in mesh.between("cam", "big"))
    chunks = small.of(ev.ReadOutChunk)
    data = b"".join(c.data for c in chunks)  # type: ignore[attr-defined]
    assert data == original and hashlib.sha256(data).hexdigest() == oldest
    assert small.of(ev.ReadOutDone) == [ev.ReadOutDone(oldest, oldest)]
    # A read-out relays; the picture stays dispersed and the holder keeps it.
    assert cam.store.image(oldest).where is Where.DISPERSED  # type: ignore[union-attr]
    # The owner's own user reads it out too.
    mesh.call(cam, lambda: cam.node.read_out(oldest, mesh.now))
    mesh.pump()
    data = b"".join(c.data for c in cam.of(ev.ReadOutChunk))  # type: ignore[attr-defined]
    assert data == original


def test_a_read_out_names_the_holder_when_it_is_offline() -> None:
    mesh, ids = full_camera_mesh()
    small = mesh.devices["small"]
    mesh.disconnect("cam", "big")
    mesh.call(small, lambda: small.node.read_out(ids[0], mesh.now))
    mesh.pump()
    failed = small.of(ev.ReadOutFailed)
    assert len(failed) == 1 and "big" in failed[0].reason  # type: ignore[attr-defined]


def test_collect_brings_an_original_home_and_the_holder_releases_it() -> None:
    mesh, ids = full_camera_mesh()
    cam, big = mesh.devices["cam"], mesh.devices["big"]
    oldest = ids[0]
    mesh.call(cam, lambda: cam.node.collect([oldest], mesh.now))
    assert [e.image_id for e in cam.of(ev.CollectFailed)] == [oldest]  # type: ignore[attr-defined]
    # The card was offloaded: now there is room below the mark.
    cam.config = NodeConfig(
        name="cam", role=Role.CAMERA, high_water=0.95, chunk_size=CHUNK,
        default_policy=Policy.THUMBNAILS,
    )
    mesh.restart("cam")
    mesh.connect("cam", "small")
    mesh.connect("cam", "big")
    mesh.pump()
    mesh.call(cam, lambda: cam.node.collect([oldest], mesh.now))
    mesh.pump()
    assert cam.of(ev.Collected) == [ev.Collected(oldest, big.id)]
    original = cam.store.original_bytes(oldest)
    assert original is not None and hashlib.sha256(original).hexdigest() == oldest
    assert cam.store.image(oldest).where is Where.LOCAL  # type: ignore[union-attr]
    back = [m for m in mesh.between("big", "cam") if isinstance(m, OriginalHeader)]
    assert back[-1].purpose is Purpose.COLLECT and back[-1].digest != oldest  # it came back sealed
    assert cam.store.dispersion(oldest) == []
    assert big.store.held(oldest) is None
    assert big.of(ev.Released) == [ev.Released(oldest, cam.id)]


# --- reconnects -------------------------------------------------------------------------------


def test_a_reconnect_resumes_a_half_sent_original_and_sends_only_the_catalog_delta() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam", chunk_size=CHUNK)
    desk = mesh.add("desk", role=Role.DESK, chunk_size=CHUNK)
    old = mesh.capture("cam", size=SIZE)
    mesh.connect("cam", "desk")
    mesh.pump(until=lambda d: isinstance(d.msg, Chunk) and d.msg.offset == CHUNK)
    mesh.disconnect("cam", "desk")
    assert desk.store.partial_offset(old, Incoming.ORIGINAL) == 2 * CHUNK
    new = mesh.capture("cam", size=1000)
    before = len(mesh.log)
    mesh.connect("cam", "desk")
    mesh.pump()
    again = [d.msg for d in mesh.log[before:] if (d.src, d.dst) == ("cam", "desk")]
    assert [m.image_id for m in again if isinstance(m, ThumbnailOffer)] == [new]
    requests = [d.msg for d in mesh.log[before:] if isinstance(d.msg, RequestOriginal)]
    assert {(r.image_id, r.offset) for r in requests} == {(old, 2 * CHUNK), (new, 0)}
    resumed = [m for m in again if isinstance(m, OriginalHeader) and m.image_id == old]
    assert resumed[0].offset == 2 * CHUNK
    sent = sum(len(m.data) for m in again if isinstance(m, Chunk) and m.image_id == old)
    assert sent == SIZE - 2 * CHUNK
    assert desk.store.original_bytes(old) == cam.store.original_bytes(old)
    assert thumbnail_first(mesh.log)


def test_thumbnails_relay_through_a_desk_to_another_camera() -> None:
    mesh = MemoryMesh()
    mesh.add("cam1", chunk_size=CHUNK, policy=Policy.THUMBNAILS)
    mesh.add("desk", role=Role.DESK, chunk_size=CHUNK)
    cam2 = mesh.add("cam2", chunk_size=CHUNK, policy=Policy.THUMBNAILS)
    mesh.connect("cam1", "desk")
    mesh.connect("desk", "cam2")
    image_id = mesh.capture("cam1", size=1000)
    mesh.pump()
    assert cam2.store.image(image_id) is not None
    assert thumbnail_first(mesh.log)


# --- keepalive ---------------------------------------------------------------------------------


def test_keepalive_pings_and_a_silent_peer_is_reported() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam")
    desk = mesh.add("desk", role=Role.DESK)
    mesh.connect("cam", "desk")
    mesh.pump()
    assert cam.node.next_deadline() == pytest.approx(mesh.now + 10.0)
    mesh.advance(10.5)
    mesh.pump()
    assert any(isinstance(m, Ping) for m in mesh.between("cam", "desk"))
    assert any(isinstance(m, Pong) for m in mesh.between("desk", "cam"))
    mesh.links.clear()  # the pipe goes silent, both ways
    mesh.advance(31.0)
    assert [e.peer for e in cam.of(ev.PeerTimedOut)] == [desk.id]  # type: ignore[attr-defined]


# --- hostile peers -------------------------------------------------------------------------------


class FakePeer:
    """A hand-driven peer: we write its messages ourselves."""

    def __init__(self, node: Node, name: str = "mallory") -> None:
        self.id = device_id(name)
        self.node = node
        self.conn = Connection(self.id, expected_peer=node.device_id)
        node.connected(self.id, 0.0)
        hello = Hello(self.id, name, Role.DESK, PROTOCOL_VERSION, (), 10**9, 10**9)
        self.send(hello, Catalog(seen={}))

    def send(self, *messages: object) -> None:
        data = b"".join(self.conn.send(m) for m in messages)  # type: ignore[arg-type]
        self.node.receive_data(self.id, data, 0.0)

    def read(self) -> list[object]:
        out = []
        while (frame := self.node.next_frame(self.id, 0.0)) is not None:
            self.conn.receive_data(frame)
            while (msg := self.conn.next_event()) is not None:
                out.append(msg)
        return out


def camera_with_picture(**options: object) -> tuple[Node, MemoryStore, str]:
    store = MemoryStore(device_id("cam"), 10_000_000)
    data = random.Random(1).randbytes(SIZE)
    record = store.add_local(data, name="a.jpg", now=0.0, capture_time=0.0)
    bugs: frozenset[str] = options.pop("planted_bugs", frozenset())  # type: ignore[assignment]
    config = NodeConfig(name="cam", role=Role.CAMERA, **options)  # type: ignore[arg-type]
    node = Node(store, config, random.Random(1), parts=planted.parts_for(bugs))
    return node, store, record.image_id


def test_a_chunk_nobody_asked_for_is_a_protocol_error() -> None:
    node, _, image_id = camera_with_picture()
    peer = FakePeer(node)
    with pytest.raises(RemoteProtocolError):
        peer.send(Chunk(image_id, Purpose.SYNC, 0, b"x"))
    assert [type(e) for e in node.events()][-1] is ev.ProtocolViolation


def test_a_header_whose_digest_is_not_the_image_id_is_a_protocol_error() -> None:
    store = MemoryStore(device_id("desk"), 10_000_000)
    node = Node(store, NodeConfig(name="desk", role=Role.DESK), random.Random(1))
    peer = FakePeer(node, "cam")
    image_id = hashlib.sha256(b"picture").hexdigest()
    offer = ThumbnailOffer(
        image_id, peer.id, 1, "p.jpg", 7, "image/jpeg", None, {}, b"", has_original=True
    )
    peer.send(offer)
    asked = [m for m in peer.read() if isinstance(m, RequestOriginal)]
    assert asked and asked[0].image_id == image_id
    with pytest.raises(RemoteProtocolError):
        peer.send(OriginalHeader(image_id, Purpose.SYNC, 7, "0" * 64, 0, node.device_id, peer.id))


def test_a_chunk_at_the_wrong_offset_and_a_lying_digest_are_protocol_errors() -> None:
    store = MemoryStore(device_id("desk"), 10_000_000)
    node = Node(store, NodeConfig(name="desk", role=Role.DESK), random.Random(1))
    peer = FakePeer(node, "cam")
    image_id = hashlib.sha256(b"picture").hexdigest()
    offer = ThumbnailOffer(
        image_id, peer.id, 1, "p.jpg", 7, "image/jpeg", None, {}, b"", has_original=True
    )
    peer.send(offer)
    peer.read()
    peer.send(OriginalHeader(image_id, Purpose.SYNC, 7, image_id, 0, node.device_id, peer.id))
    with pytest.raises(RemoteProtocolError):
        peer.send(Chunk(image_id, Purpose.SYNC, 3, b"ture"))
    node.disconnected(peer.id, 0.0, "closed")
    peer = FakePeer(node, "cam")
    peer.read()
    peer.send(OriginalHeader(image_id, Purpose.SYNC, 7, image_id, 0, node.device_id, peer.id))
    peer.send(Chunk(image_id, Purpose.SYNC, 0, b"PICTURE"))
    with pytest.raises(RemoteProtocolError):
        peer.send(OriginalComplete(image_id, Purpose.SYNC, image_id))
    assert store.partial_offset(image_id, Incoming.ORIGINAL) == 0  # discarded
    assert store.image(image_id).where is Where.ABSENT  # type: ignore[union-attr]


def test_a_read_out_from_a_peer_without_the_thumbnail_gets_the_thumbnail_first() -> None:
    node, _, image_id = camera_with_picture()
    peer = FakePeer(node)  # its catalog is empty: it has no thumbnail yet
    peer.send(ReadOut(image_id))
    kinds = [type(m) for m in peer.read() if getattr(m, "image_id", None) == image_id]
    assert kinds[0] is ThumbnailOffer


# --- planted bugs: each switch changes exactly the behaviour it names -----------------------


def test_planted_chunk_before_thumbnail() -> None:
    node, _, image_id = camera_with_picture(planted_bugs=frozenset({"chunk-before-thumbnail"}))
    peer = FakePeer(node)  # empty catalog: its thumbnail is queued, not sent
    peer.send(ReadOut(image_id))
    kinds = [type(m) for m in peer.read() if getattr(m, "image_id", None) == image_id]
    assert kinds[0] is OriginalHeader


def test_planted_free_before_stored() -> None:
    mesh = MemoryMesh()
    cam = mesh.add(
        "cam", capacity=1_000_000, high_water=0.5, chunk_size=CHUNK, policy=Policy.THUMBNAILS,
        planted_bugs=frozenset({"free-before-stored"}),
    )
    mesh.add("big", capacity=64_000_000, policy=Policy.THUMBNAILS)
    mesh.connect("cam", "big")
    mesh.pump()
    oldest = mesh.capture("cam", size=150_000)
    for _ in range(3):
        mesh.capture("cam", size=150_000)
    mesh.pump(until=is_msg(OriginalComplete, oldest, src="cam"))
    # Freed as soon as the stream was sent, before the holder's STORED came back.
    assert cam.store.image(oldest).where is Where.DISPERSED  # type: ignore[union-attr]
    assert not any(isinstance(m, Stored) for m in mesh.between("big", "cam"))


def test_planted_accept_past_capacity() -> None:
    mesh = MemoryMesh()
    mesh.add("cam", capacity=1_000_000, high_water=0.5, policy=Policy.THUMBNAILS)
    mesh.add("small", capacity=1_000_000, high_water=0.5, policy=Policy.THUMBNAILS,
             planted_bugs=frozenset({"accept-past-capacity"}))
    mesh.capture("small", size=400_000)
    mesh.connect("cam", "small")
    mesh.pump()
    for _ in range(4):
        mesh.capture("cam", size=150_000)
    mesh.pump()
    assert not mesh.devices["cam"].of(ev.DispersalRejected)
    assert any(isinstance(m, DisperseAccept) for m in mesh.between("small", "cam"))


def test_planted_stale_readout() -> None:
    node, store, image_id = camera_with_picture(planted_bugs=frozenset({"stale-readout"}))
    node.read_out(image_id, 0.0)
    data = b"".join(e.data for e in node.events() if isinstance(e, ev.ReadOutChunk))
    assert data != store.original_bytes(image_id) and len(data) < SIZE
    node, store, image_id = camera_with_picture()
    node.read_out(image_id, 0.0)
    data = b"".join(e.data for e in node.events() if isinstance(e, ev.ReadOutChunk))
    assert data == store.original_bytes(image_id)


def test_two_replicas_free_the_original_only_when_both_holders_stored_it() -> None:
    mesh = MemoryMesh()
    cam = mesh.add(
        "cam", capacity=1_000_000, high_water=0.5, chunk_size=CHUNK, policy=Policy.THUMBNAILS,
        replicas=2,
    )
    h1 = mesh.add("h1", capacity=64_000_000, policy=Policy.THUMBNAILS)
    h2 = mesh.add("h2", capacity=64_000_000, policy=Policy.THUMBNAILS)
    mesh.connect("cam", "h1")
    mesh.connect("cam", "h2")
    mesh.pump()
    oldest = mesh.capture("cam", size=150_000)
    for _ in range(3):
        mesh.capture("cam", size=150_000)
    mesh.pump(until=is_msg(Stored, oldest))
    assert cam.store.image(oldest).where is Where.LOCAL  # type: ignore[union-attr]
    mesh.pump()
    assert cam.store.image(oldest).where is Where.DISPERSED  # type: ignore[union-attr]
    assert {e.holder for e in cam.store.dispersion(oldest)} == {h1.id, h2.id}
    assert h1.store.held(oldest) is not None and h2.store.held(oldest) is not None


def test_peers_and_status_describe_the_links_and_the_card() -> None:
    mesh = MemoryMesh()
    cam = mesh.add("cam", chunk_size=CHUNK)
    desk = mesh.add("desk", role=Role.DESK, chunk_size=CHUNK)
    mesh.capture("cam", size=SIZE)
    mesh.connect("cam", "desk")
    mesh.pump(until=is_msg(Chunk))
    view = cam.node.peers()[desk.id]
    assert view.name == "desk" and view.role is Role.DESK and view.ready
    assert view.our_state == "running" and view.queues.background == 1
    assert 0 < view.queues.bytes_pending < SIZE
    status = cam.node.status()
    assert status["images_local"] == 1 and status["peers_ready"] == 1


def test_a_card_that_filled_before_its_pictures_were_announced_still_disperses() -> None:
    """An import writes every file, then tells the node about each: a tick in between sees
    the card over its mark with no candidate yet, and must not be the last look."""
    mesh = MemoryMesh()
    cam = mesh.add("cam", capacity=1_000_000, high_water=0.5, policy=Policy.THUMBNAILS)
    mesh.add("big", capacity=64_000_000, policy=Policy.THUMBNAILS)
    mesh.connect("cam", "big")
    mesh.pump()
    records = [cam.store.add_local(random.Random(n).randbytes(150_000), name=f"I{n}.JPG",
                                   now=mesh.now, capture_time=mesh.now + n) for n in range(4)]
    mesh.call(cam, lambda: cam.node.tick(mesh.now))  # over the mark, nothing announced yet
    for record in records:
        mesh.call(cam, lambda r=record: cam.node.captured(r.image_id, mesh.now))  # type: ignore[misc]
    mesh.pump()
    assert cam.of(ev.Dispersed) != []
    assert cam.store.usage().used <= 500_000
