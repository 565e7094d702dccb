"""protocol/marks.py: an editor's marks reach every device, and agree after a partition heals.

Real Nodes on MemoryStores joined by the connection-pair harness (the machine's checks as
the node meets them), and the digest alone.
"""

from __future__ import annotations

import pytest

from protocol import events as ev
from protocol.config import Policy
from protocol.errors import RemoteProtocolError
from protocol.marks import BUCKET_HASH, BUCKETS, CAPABILITY, bucket_of, digest, marked_message
from protocol.messages import Limits, Marked, MarksDigest, Role
from protocol.store import Stamped
from sim.memstore import MemoryStore
from tests.protocol.harness import MemoryDevice, MemoryMesh


def mark(mesh: MemoryMesh, name: str, image_id: str, **fields: object) -> None:
    """``name``'s editor marks a picture: the card keeps it, the node is told."""
    dev = mesh.devices[name]
    dev.store.set_marks(image_id, now=mesh.now, **fields)
    mesh.call(dev, lambda: dev.node.marked(image_id, mesh.now))


def marks_on(dev: MemoryDevice, image_id: str) -> dict[str, object]:
    return {n: m.value for n, m in dev.store.stamped_marks(image_id).items()}


def three() -> tuple[MemoryMesh, str]:
    """A camera between two desks (desk-a - cam - desk-b), one picture everywhere."""
    mesh = MemoryMesh()
    mesh.add("cam", share_marks=True)
    mesh.add("desk-a", role=Role.DESK, share_marks=True)
    mesh.add("desk-b", role=Role.DESK, share_marks=True)
    mesh.connect("cam", "desk-a")
    mesh.connect("cam", "desk-b")
    image_id = mesh.capture("cam")
    mesh.pump()
    return mesh, image_id


def test_a_mark_made_on_one_desk_reaches_the_camera_and_the_other_desk() -> None:
    mesh, image_id = three()
    mark(mesh, "desk-a", image_id, rating=4, tagged=True, caption="Goal!")
    mesh.pump()
    want = {"rating": 4, "tagged": True, "caption": "Goal!"}
    for name in ("cam", "desk-a", "desk-b"):
        assert marks_on(mesh.devices[name], image_id) == want, name
    stamps = mesh.devices["desk-b"].store.stamped_marks(image_id)
    assert {s.device for s in stamps.values()} == {mesh.devices["desk-a"].id}  # kept as stamped
    arrived = mesh.devices["desk-b"].of(ev.MarksArrived)
    assert [(e.peer, e.fields) for e in arrived] == [  # type: ignore[attr-defined]
        (mesh.devices["cam"].id, ("rating", "tagged", "caption"))]
    # The camera relayed it to desk-b and to nobody else; desk-b sent nothing back.
    assert mesh.kinds("cam", "desk-b", image_id).count("marked") == 1
    assert "marked" not in mesh.kinds("desk-b", "cam", image_id)
    assert "marked" not in mesh.kinds("cam", "desk-a", image_id)
    hello = next(m for m in mesh.between("cam", "desk-a") if m.TAG == "hello")
    assert CAPABILITY in hello.capabilities  # type: ignore[attr-defined]


def test_two_desks_marking_one_picture_while_apart_agree_by_last_writer_wins() -> None:
    mesh, image_id = three()
    mesh.disconnect("cam", "desk-a")
    mesh.disconnect("cam", "desk-b")
    mark(mesh, "desk-a", image_id, rating=2, color=3, caption="early")
    mesh.advance(5)
    mark(mesh, "desk-b", image_id, rating=5, headline="later")
    mesh.advance(5)
    mark(mesh, "desk-a", image_id, caption="latest")
    mesh.pump()
    mesh.connect("cam", "desk-a")
    mesh.connect("cam", "desk-b")
    mesh.pump()
    want = {"rating": 5, "color": 3, "caption": "latest", "headline": "later"}
    stamped = [mesh.devices[n].store.stamped_marks(image_id) for n in ("cam", "desk-a", "desk-b")]
    assert stamped[0] == stamped[1] == stamped[2]
    assert marks_on(mesh.devices["cam"], image_id) == want


def test_a_desk_that_was_away_gets_the_marks_it_missed_by_the_digest_alone() -> None:
    mesh, image_id = three()
    mesh.disconnect("cam", "desk-b")
    mark(mesh, "desk-a", image_id, keywords=("sport", "final"))
    mesh.pump()
    assert marks_on(mesh.devices["desk-b"], image_id) == {}
    seen = len(mesh.log)
    mesh.connect("cam", "desk-b")
    mesh.pump()
    assert marks_on(mesh.devices["desk-b"], image_id) == {"keywords": ("sport", "final")}
    digests = [d.msg for d in mesh.log[seen:] if isinstance(d.msg, MarksDigest)]
    assert sorted(len(d.buckets) for d in digests) == [0, 2048]  # desk-b held none


def test_a_link_whose_sides_agree_carries_only_the_two_digests() -> None:
    mesh, image_id = three()
    mark(mesh, "desk-a", image_id, rating=1)
    mesh.pump()
    mesh.disconnect("cam", "desk-b")
    seen = len(mesh.log)
    mesh.connect("cam", "desk-b")
    mesh.pump()
    tags = [d.msg.TAG for d in mesh.log[seen:]]
    assert tags.count("marks") == 2 and "marked" not in tags, tags


def test_a_peer_naming_no_marks_capability_is_sent_no_marks() -> None:
    mesh = MemoryMesh()
    mesh.add("cam", share_marks=True)
    old = mesh.add("desk", role=Role.DESK)
    mesh.connect("cam", "desk")
    image_id = mesh.capture("cam")
    mesh.pump()
    mark(mesh, "cam", image_id, rating=3)
    mesh.pump()
    assert {m.TAG for m in mesh.between("cam", "desk")}.isdisjoint({"marks", "marked"})
    hello = next(m for m in mesh.between("desk", "cam") if m.TAG == "hello")
    assert hello.capabilities == ()  # type: ignore[attr-defined]
    assert marks_on(old, image_id) == {}


def _inject(mesh: MemoryMesh, src: str, dst: str, msg: object) -> None:
    """``src`` puts ``msg`` on the wire to ``dst`` (as a lying peer would)."""
    from protocol.codec import encode

    a, b = mesh.devices[src], mesh.devices[dst]
    b.node.receive_data(a.id, encode(msg), mesh.now)  # type: ignore[arg-type]


def _marked(image_id: str, device: str, **fields: object) -> Marked:
    stamped = {n: Stamped(v, 1.0, device) for n, v in fields.items()}  # type: ignore[arg-type]
    msg = marked_message(image_id, stamped)
    assert msg is not None
    return msg


def test_marks_to_a_device_that_named_no_marks_capability_are_refused() -> None:
    mesh = MemoryMesh()
    mesh.add("cam", share_marks=True)
    mesh.add("desk", role=Role.DESK)
    mesh.connect("cam", "desk")
    image_id = mesh.capture("cam")
    mesh.pump()
    with pytest.raises(RemoteProtocolError, match="capability") as info:
        _inject(mesh, "cam", "desk", _marked(image_id, mesh.devices["cam"].id, rating=2))
    assert info.value.code == "unexpected"


def test_a_second_marks_digest_on_one_link_is_refused() -> None:
    mesh, _ = three()
    with pytest.raises(RemoteProtocolError, match="second marks digest") as info:
        _inject(mesh, "cam", "desk-a", MarksDigest(b""))
    assert info.value.code == "unexpected"


def test_a_mark_the_card_cannot_keep_is_refused() -> None:
    mesh, image_id = three()
    bad = _marked(image_id, mesh.devices["cam"].id, caption="bell\x07")  # XMP cannot carry it
    with pytest.raises(RemoteProtocolError, match="no card keeps") as info:
        _inject(mesh, "cam", "desk-a", bad)
    assert info.value.code == "bad-marks"
    assert marks_on(mesh.devices["desk-a"], image_id) == {}


@pytest.mark.parametrize(
    ("fields", "values"),
    [
        (("rating",), (6,)),
        (("color",), (0,)),
        (("tagged",), (1,)),
        (("rating", "rating"), (1, 2)),
        (("stars",), (1,)),
        (("headline",), ("h" * (Limits.MAX_MARK_TEXT + 1),)),
        (("caption",), ("c" * (Limits.MAX_CAPTION + 1),)),
        (("keywords",), (("",),)),
        ((), ()),
    ],
)
def test_a_marked_message_checks_each_field_against_its_kind(
    fields: tuple[str, ...], values: tuple[object, ...]
) -> None:
    from protocol.errors import LocalProtocolError

    n = len(fields)
    with pytest.raises(LocalProtocolError):
        Marked("a" * 64, fields, values, (1.0,) * n, ("b" * 64,) * n)  # type: ignore[arg-type]


def test_the_digest_tells_buckets_apart_and_is_the_same_for_the_same_marks() -> None:
    one, two = "00" + "a" * 62, "ff" + "b" * 62
    dev = "c" * 64
    left = {one: {"rating": Stamped(3, 1.0, dev)}, two: {"tagged": Stamped(True, 2.0, dev)}}
    right = {two: {"tagged": Stamped(True, 2.0, dev)}, one: {"rating": Stamped(3, 1.0, dev)}}
    assert digest(left) == digest(right)
    assert len(digest(left)) == Limits.MARK_DIGEST
    assert digest({}) == digest({one: {}}) == b""
    changed = digest({**left, one: {"rating": Stamped(3, 1.5, dev)}})
    step = BUCKET_HASH
    differ = [n for n in range(BUCKETS)
              if changed[n * step:(n + 1) * step] != digest(left)[n * step:(n + 1) * step]]
    assert differ == [bucket_of(one)] == [0]


def test_marks_that_come_before_their_picture_are_kept_for_it() -> None:
    mesh, _ = three()
    unknown = "e" * 64
    _inject(mesh, "cam", "desk-a", _marked(unknown, mesh.devices["cam"].id, rating=1))
    store = mesh.devices["desk-a"].store
    assert isinstance(store, MemoryStore)
    assert store.stamped_marks(unknown)["rating"].value == 1


def test_without_the_once_a_link_check_a_repeated_digest_queues_every_mark_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check is needed: a peer replaying its digest would make us queue all our marks each time."""
    from tests.protocol.check_sites import remove_check

    mesh, image_id = three()
    mark(mesh, "cam", image_id, rating=2)
    mesh.pump()
    remove_check(monkeypatch, "unexpected@SharedMarks.on_digest")
    cam = mesh.devices["cam"]
    before = cam.node.links[mesh.devices["desk-a"].id].scheduler.waiting()
    _inject(mesh, "desk-a", "cam", MarksDigest(b""))
    _inject(mesh, "desk-a", "cam", MarksDigest(b""))
    assert cam.node.links[mesh.devices["desk-a"].id].scheduler.waiting() == before + 2


def _requests(mesh: MemoryMesh, src: str, dst: str) -> list[str]:
    return [m.image_id for m in mesh.between(src, dst) if m.TAG == "request"]  # type: ignore[attr-defined]


def test_a_desk_pulls_the_originals_its_editors_selected_first() -> None:
    """Tagged or rated pictures' originals come first (issue 19), whichever desk marked them."""
    mesh = MemoryMesh()
    mesh.add("cam", share_marks=True)
    mesh.add("desk", role=Role.DESK, share_marks=True, max_outstanding_requests=1)
    mesh.add("other", role=Role.DESK, share_marks=True, policy=Policy.REQUESTED)
    mesh.connect("cam", "other")
    ids = [mesh.capture("cam") for _ in range(5)]
    mesh.pump()
    mark(mesh, "other", ids[0], tagged=True)  # another desk's editor tags the oldest
    mark(mesh, "other", ids[1], rating=0)  # no star: not a select
    mesh.pump()
    mesh.connect("cam", "desk")
    # Thumbnails come newest first: the newest's original is asked for as it lands; the
    # oldest's thumbnail is the last (its marks came before it, with the digest).
    mesh.pump(until=lambda d: d.dst == "desk" and d.msg.TAG == "thumb"
              and d.msg.image_id == ids[0])  # type: ignore[attr-defined]
    mark(mesh, "desk", ids[2], rating=2)  # this desk rates one while the first is on its way
    mesh.pump()
    asked = [ids.index(i) for i in _requests(mesh, "desk", "cam")]
    assert asked == [4, 2, 0, 3, 1], asked


def test_marks_for_more_invented_pictures_than_the_card_keeps_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The review of issue 19: marks for ids no catalog knows were kept without end, so a
    peer inventing ids grew every card (and each was relayed to every marks peer)."""
    from protocol.marks import SharedMarks

    monkeypatch.setattr(SharedMarks, "max_unknown", 3)
    mesh, image_id = three()
    cam = mesh.devices["cam"].id
    for n in range(3):
        _inject(mesh, "cam", "desk-a", _marked(f"{n:x}" * 64, cam, rating=1))
    _inject(mesh, "cam", "desk-a", _marked("0" * 64, cam, rating=2))  # one it keeps already
    _inject(mesh, "cam", "desk-a", _marked(image_id, cam, rating=3))  # a picture it knows
    with pytest.raises(RemoteProtocolError, match="no catalog here knows") as info:
        _inject(mesh, "cam", "desk-a", _marked("d" * 64, cam, rating=1))
    assert info.value.code == "too-many-marks"
    store = mesh.devices["desk-a"].store
    assert store.stamped_marks("d" * 64) == {}
    assert marks_on(mesh.devices["desk-a"], image_id) == {"rating": 3}


def test_a_mark_stamped_far_in_the_future_is_refused() -> None:
    """A stamp of the largest float would win every merge, and our next edit's stamp after it
    would be infinity, which no Marked can carry: every later exchange of it would fail."""
    import sys

    mesh, image_id = three()
    cam = mesh.devices["cam"].id
    lie = marked_message(image_id, {"rating": Stamped(5, sys.float_info.max, cam)})
    assert lie is not None
    with pytest.raises(RemoteProtocolError, match="2242") as info:
        _inject(mesh, "cam", "desk-a", lie)
    assert info.value.code == "bad-marks"
    assert marks_on(mesh.devices["desk-a"], image_id) == {}
