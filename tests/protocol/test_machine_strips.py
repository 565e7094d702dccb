"""protocol/strips.py: a movie's whole strip reaches the peer before any byte of the movie (FIG. 15A).

Two kinds of test: the machine alone (its checks, as effects), and real Nodes joined by the
connection-pair harness, on MemoryStores that also keep strips (the simulator's store does
not, so it names no ``strip`` capability and is sent none).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from protocol import events as ev
from protocol.config import Policy
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.messages import Limits, Purpose, Role, Strip, WantStrips
from protocol.node import Node
from protocol.scheduler import (
    Lane,
    Scheduler,
    SendHeader,
    SendStrip,
    SendThumbnail,
    Source,
    Transfer,
)
from protocol.store import NotFound, StripFrame
from protocol.strips import CAPABILITY, WANT, strip_message
from sim.memstore import MemoryStore
from tests.protocol.harness import MemoryDevice, MemoryMesh

FRAMES = [
    StripFrame(0.0, 48, "interval", b"\xff\xd8poster"),
    StripFrame(10.0, 90_000, "interval", b"\xff\xd8ten"),
    StripFrame(12.5, 120_000, "scene", b"\xff\xd8cut"),
]


class ShelfStore(MemoryStore):
    """A MemoryStore that also keeps strips, as the card does (protocol.store.StripShelf)."""

    def __init__(self, device_id: str, capacity: int) -> None:
        super().__init__(device_id, capacity)
        self.strips: dict[str, list[StripFrame]] = {}

    def strip(self, image_id: str) -> list[StripFrame]:
        return list(self.strips.get(image_id, []))

    def set_strip(self, image_id: str, strip: Sequence[StripFrame]) -> None:
        if self.image(image_id) is None:
            raise NotFound(f"no picture {image_id[:12]}")
        self.strips[image_id] = list(strip)

    def strips_missing(self) -> list[str]:
        return [r.image_id for r in self.images()
                if r.origin != self.device_id and r.mime.startswith("video/")
                and r.metadata.get("strip_frames") and r.image_id not in self.strips]


def shelved(mesh: MemoryMesh, name: str, **options: object) -> MemoryDevice:
    """A device of ``mesh`` whose card keeps strips."""
    dev = mesh.add(name, **options)  # type: ignore[arg-type]
    dev.store = ShelfStore(dev.id, 1 << 30)
    dev.node = Node(dev.store, dev.config, random.Random(name))
    return dev


def movie(mesh: MemoryMesh, name: str, *, size: int = 600_000, mime: str = "video/mp4") -> str:
    """A movie on ``name``'s card with its strip, announced to its node; its image id."""
    dev = mesh.devices[name]
    data = random.Random(name).randbytes(size)
    record = dev.store.add_local(
        data, name="C0001.MP4", now=mesh.now, capture_time=mesh.now, thumbnail=b"poster",
        mime=mime, metadata={"duration": 13.0, "strip_frames": len(FRAMES)},
    )
    if isinstance(dev.store, ShelfStore):
        dev.store.set_strip(record.image_id, FRAMES)
    mesh.call(dev, lambda: dev.node.captured(record.image_id, mesh.now))
    return record.image_id


def test_the_whole_strip_arrives_right_behind_the_offer_before_the_movie_s_first_byte() -> None:
    mesh = MemoryMesh()
    shelved(mesh, "cam")
    desk = shelved(mesh, "desk", role=Role.DESK, policy=Policy.ALL)
    mesh.connect("cam", "desk")
    image_id = movie(mesh, "cam")
    mesh.pump()
    kinds = mesh.kinds("cam", "desk", image_id)
    assert kinds[:3] == ["thumb", "strip", "header"], kinds
    assert kinds[-1] == "complete"
    assert desk.store.strip(image_id) == FRAMES  # type: ignore[attr-defined]
    assert [e.frames for e in desk.of(ev.StripArrived)] == [3]  # type: ignore[attr-defined]
    hello = next(m for m in mesh.between("cam", "desk") if m.TAG == "hello")
    assert hello.capabilities == (CAPABILITY, WANT)  # type: ignore[attr-defined]


def test_a_peer_that_keeps_no_strips_is_sent_none_and_its_hello_is_unchanged() -> None:
    mesh = MemoryMesh()
    shelved(mesh, "cam")
    mesh.add("desk", role=Role.DESK, policy=Policy.ALL)  # the simulator's store: no strips
    mesh.connect("cam", "desk")
    image_id = movie(mesh, "cam")
    mesh.pump()
    assert "strip" not in mesh.kinds("cam", "desk", image_id)
    assert mesh.kinds("cam", "desk", image_id)[:2] == ["thumb", "header"]
    hello = next(m for m in mesh.between("desk", "cam") if m.TAG == "hello")
    assert hello.capabilities == ()  # type: ignore[attr-defined]


def test_a_desk_relays_the_strip_with_the_offer_to_its_other_peers() -> None:
    """FIG. 21: a desk passes thumbnails on; a movie's strip goes on with its offer."""
    mesh = MemoryMesh()
    shelved(mesh, "cam")
    shelved(mesh, "desk", role=Role.DESK, policy=Policy.THUMBNAILS)
    viewer = shelved(mesh, "viewer", role=Role.DESK, policy=Policy.THUMBNAILS)
    mesh.connect("cam", "desk")
    mesh.connect("desk", "viewer")
    image_id = movie(mesh, "cam")
    mesh.pump()
    assert mesh.kinds("desk", "viewer", image_id) == ["thumb", "strip"]
    assert viewer.store.strip(image_id) == FRAMES  # type: ignore[attr-defined]


def test_a_newer_thumbnail_goes_ahead_of_a_queued_strip_and_the_movie_waits_for_its_strip() -> None:
    """FIG. 16: a new capture's thumbnail first; FIG. 15A: the movie's bytes after its strip."""
    sched = Scheduler()
    sched.queue_thumbnail("movie", 100.0)
    assert sched.pop() == SendThumbnail("movie")
    sched.queue_strip("movie", 100.0)
    sched.add_transfer(Transfer(
        image_id="movie", purpose=Purpose.SYNC, lane=Lane.URGENT, size=10, digest="d",
        offset=0, destination="x", owner="y", source=Source.ORIGINAL))
    sched.queue_thumbnail("still", 101.0)
    assert sched.pop() == SendThumbnail("still")
    assert sched.pop() == SendStrip("movie")
    assert isinstance(sched.pop(), SendHeader)


def test_the_strip_as_it_travels_keeps_to_the_limits() -> None:
    many = [StripFrame(float(n), n, "interval", b"j" * 20_000) for n in range(60)]
    msg = strip_message("a" * 64, many)
    assert msg is not None
    assert len(msg.jpegs) == Limits.MAX_STRIP_BYTES // 20_000  # the bytes bind before the count
    small = [StripFrame(float(n), None, "scene", b"j") for n in range(60)]
    assert len(strip_message("a" * 64, small).jpegs) == Limits.MAX_STRIP_FRAMES  # type: ignore[union-attr]
    assert strip_message("a" * 64, []) is None


@pytest.mark.parametrize(
    "fields, why",
    [
        ({"times": (0.0, 1.0)}, "as long"),
        ({"times": (2.0, 1.0, 3.0)}, "time order"),
        ({"kinds": ("interval", "gif", "scene")}, "kinds"),
        ({"jpegs": (b"j" * Limits.MAX_STRIP_JPEG,) * 11}, "at most"),
        ({"times": (), "offsets": (), "kinds": (), "jpegs": ()}, "at least 1"),
    ],
)
def test_a_strip_message_checks_its_fields_against_each_other(
    fields: dict[str, object], why: str
) -> None:
    base: dict[str, object] = {
        "image_id": "a" * 64, "times": (0.0, 1.0, 2.0), "offsets": (0, None, 5),
        "kinds": ("interval", "interval", "scene"), "jpegs": (b"a", b"b", b"c"),
    }
    if len(fields.get("jpegs", ())) == 11:  # type: ignore[arg-type]
        base.update(times=tuple(float(n) for n in range(11)), offsets=(None,) * 11,
                    kinds=("interval",) * 11)
    with pytest.raises(LocalProtocolError, match=why):
        Strip(**{**base, **fields})  # type: ignore[arg-type]


# --- the checks of a received strip (tests/protocol/checks.py names these) ----------------------


def _desk_with_offer(mime: str = "video/mp4", *, shelf: bool = True) -> tuple[MemoryMesh, MemoryDevice, str]:
    mesh = MemoryMesh()
    shelved(mesh, "cam")
    desk = (shelved(mesh, "desk", role=Role.DESK, policy=Policy.THUMBNAILS) if shelf
            else mesh.add("desk", role=Role.DESK, policy=Policy.THUMBNAILS))
    mesh.connect("cam", "desk")
    image_id = movie(mesh, "cam", size=200_000, mime=mime)
    mesh.pump()
    return mesh, desk, image_id


def _strip_for(image_id: str, offsets: tuple[int | None, ...] = (0, 10, 20)) -> Strip:
    return Strip(image_id=image_id, times=(0.0, 1.0, 2.0), offsets=offsets,
                 kinds=("interval",) * 3, jpegs=(b"a", b"b", b"c"))


def _receive(desk: MemoryDevice, mesh: MemoryMesh, msg: Strip) -> None:
    link = desk.node.links[mesh.devices["cam"].id]
    desk.node.apply(desk.node.strips.on_strip(link, msg))


@pytest.mark.parametrize(
    ("mime", "shelf", "offered", "match", "code"),
    [
        pytest.param("video/mp4", False, True, "capability", "unexpected", id="no-capability"),
        pytest.param("video/mp4", True, False, "offer never came", "catalog", id="before-offer"),
        pytest.param("image/jpeg", True, True, "not a movie", "catalog", id="a-still"),
    ],
)
def test_a_strip_the_desk_cannot_take_is_refused(
    mime: str, shelf: bool, offered: bool, match: str, code: str
) -> None:
    """To a device that named no strip capability, before its offer, or for a still."""
    mesh, desk, image_id = _desk_with_offer(mime, shelf=shelf)
    with pytest.raises(RemoteProtocolError, match=match) as info:
        _receive(desk, mesh, _strip_for(image_id if offered else "b" * 64))
    assert info.value.code == code


def test_a_strip_naming_an_offset_past_the_movie_s_end_is_refused() -> None:
    mesh, desk, image_id = _desk_with_offer()
    with pytest.raises(RemoteProtocolError, match="past its 200000 bytes") as info:
        _receive(desk, mesh, _strip_for(image_id, (0, 10, 200_000)))
    assert info.value.code == "bad-offset"
    _receive(desk, mesh, _strip_for(image_id, (0, None, 199_999)))  # the last byte is still in it


# --- a link that breaks between the offer and its strip ----------------------------------------


def _offer_then_break(mesh: MemoryMesh, image_id_of: list[str]) -> None:
    """The movie's offer reaches the desk; the link breaks before its strip goes."""
    image_id_of.append(movie(mesh, "cam"))
    mesh.pump(until=lambda d: d.msg.TAG == "thumb" and d.dst == "desk")
    mesh.disconnect("cam", "desk")


def test_a_strip_cut_off_after_its_offer_comes_when_the_link_is_back() -> None:
    """Before, a strip queued behind an offer died with the link: the desk's catalog said it
    had the offer, so nothing was ever sent again.  The desk now asks (WantStrips)."""
    mesh = MemoryMesh()
    shelved(mesh, "cam")
    desk = shelved(mesh, "desk", role=Role.DESK, policy=Policy.THUMBNAILS)
    mesh.connect("cam", "desk")
    ids: list[str] = []
    _offer_then_break(mesh, ids)
    image_id = ids[0]
    assert mesh.kinds("cam", "desk", image_id) == ["thumb"]
    assert desk.store.strips_missing() == [image_id]  # type: ignore[attr-defined]
    mesh.connect("cam", "desk")
    mesh.pump()
    wants = [m for m in mesh.between("desk", "cam") if m.TAG == "want-strips"]
    assert [w.image_ids for w in wants] == [(image_id,)]  # type: ignore[attr-defined]
    assert mesh.kinds("cam", "desk", image_id) == ["thumb", "strip"]  # the offer: not again
    assert desk.store.strip(image_id) == FRAMES  # type: ignore[attr-defined]
    assert desk.store.strips_missing() == []  # type: ignore[attr-defined]
    mesh.disconnect("cam", "desk")  # and a later link asks for nothing
    mesh.connect("cam", "desk")
    mesh.pump()
    assert len([m for m in mesh.between("desk", "cam") if m.TAG == "want-strips"]) == 1


def test_a_desk_restarted_after_the_break_still_asks_for_the_strip() -> None:
    """What is missing is read from the card, not remembered by the node."""
    mesh = MemoryMesh()
    shelved(mesh, "cam")
    desk = shelved(mesh, "desk", role=Role.DESK, policy=Policy.THUMBNAILS)
    mesh.connect("cam", "desk")
    ids: list[str] = []
    _offer_then_break(mesh, ids)
    mesh.restart("desk")
    mesh.connect("cam", "desk")
    mesh.pump()
    assert desk.store.strip(ids[0]) == FRAMES  # type: ignore[attr-defined]


def test_a_desk_asks_another_peer_that_keeps_the_strip() -> None:
    """The camera is away; a second desk that got the strip answers for it (FIG. 21)."""
    mesh = MemoryMesh()
    shelved(mesh, "cam")
    desk = shelved(mesh, "desk", role=Role.DESK, policy=Policy.THUMBNAILS)
    other = shelved(mesh, "other", role=Role.DESK, policy=Policy.THUMBNAILS)
    mesh.connect("cam", "desk")
    mesh.connect("cam", "other")
    ids: list[str] = []
    _offer_then_break(mesh, ids)
    mesh.pump()
    assert other.store.strip(ids[0]) == FRAMES  # type: ignore[attr-defined]
    mesh.disconnect("cam", "other")
    mesh.connect("desk", "other")
    mesh.pump()
    assert desk.store.strip(ids[0]) == FRAMES  # type: ignore[attr-defined]
    assert mesh.kinds("other", "desk", ids[0])[-1] == "strip"


def test_a_strip_is_relayed_once_round_a_ring_of_desks() -> None:
    """A strip new to a desk goes on to its peers; one it already had goes nowhere (before,
    every copy was relayed again, and three desks in a ring passed it round for ever)."""
    mesh = MemoryMesh()
    shelved(mesh, "cam")
    for name in ("d1", "d2", "d3"):
        shelved(mesh, name, role=Role.DESK, policy=Policy.THUMBNAILS)
    mesh.connect("d1", "d2")
    mesh.connect("d2", "d3")
    mesh.connect("d3", "d1")
    mesh.connect("cam", "d1")
    image_id = movie(mesh, "cam")
    mesh.pump(max_rounds=2_000)
    strips = [d for d in mesh.log if d.msg.TAG == "strip"]
    assert len(strips) <= 1 + 2 + 2  # cam -> d1; d1 -> d2, d3; d2 <-> d3 cross once
    for name in ("d1", "d2", "d3"):
        assert mesh.devices[name].store.strip(image_id) == FRAMES  # type: ignore[attr-defined]


def test_want_strips_to_a_device_that_named_no_want_strips_is_refused() -> None:
    mesh, desk, image_id = _desk_with_offer(shelf=False)
    cam = mesh.devices["cam"]
    link = cam.node.links[desk.id]
    with pytest.raises(RemoteProtocolError, match="want-strips") as info:
        cam.node.apply(cam.node.strips.on_want_strips(link, WantStrips(image_ids=(image_id,))))
    assert info.value.code == "unexpected"


def test_want_strips_for_unknown_pictures_or_stills_queues_nothing() -> None:
    mesh, desk, image_id = _desk_with_offer("image/jpeg")
    cam = mesh.devices["cam"]
    link = cam.node.links[desk.id]
    assert cam.node.strips.on_want_strips(link, WantStrips(image_ids=(image_id, "c" * 64))) == []
