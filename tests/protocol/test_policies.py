"""Each policy word, as a whole conversation (issue 17): what the receiver's choice pulls.

A camera and a desk on the in-memory harness (tests/protocol/harness.py).  ``all`` mirrors
every original in the background; ``requested`` (the patent's "requested only") lets only
thumbnails travel until the desk's user asks; ``thumbnails``, the old word, is an alias of
``requested`` and gives the very same wire, byte for byte.
"""

from __future__ import annotations

import pytest

from protocol.config import OLD_POLICY_WORDS, Policy
from protocol.messages import (
    Chunk,
    Limits,
    OriginalHeader,
    Purpose,
    RequestOriginal,
    Role,
    ThumbnailOffer,
)
from protocol.store import Where
from tests.protocol.harness import MemoryMesh, device_id

CHUNK = Limits.MIN_CHUNK
PICTURES = 4


def shoot(desk_policy: Policy | str, *, camera_policy: Policy = Policy.ALL) -> tuple[MemoryMesh, list[str]]:
    """A camera with four pictures, joined to a desk of that policy, until quiet."""
    mesh = MemoryMesh()
    mesh.add("cam", policy=camera_policy, chunk_size=CHUNK)
    mesh.add("desk", role=Role.DESK, policy=Policy(desk_policy), chunk_size=CHUNK)
    ids = [mesh.capture("cam", size=3 * CHUNK) for _ in range(PICTURES)]
    mesh.connect("cam", "desk")
    mesh.pump()
    return mesh, ids


def where_on(mesh: MemoryMesh, name: str, ids: list[str]) -> list[Where]:
    store = mesh.devices[name].store
    out = []
    for image_id in ids:
        record = store.image(image_id)
        assert record is not None, "every thumbnail reaches the desk under every policy"
        out.append(record.where)
    return out


def originals_sent(mesh: MemoryMesh, src: str, dst: str) -> set[str]:
    return {m.image_id for m in mesh.between(src, dst) if isinstance(m, OriginalHeader)}


def test_policy_all_mirrors_every_original_in_the_background() -> None:
    mesh, ids = shoot("all")
    assert where_on(mesh, "desk", ids) == [Where.LOCAL] * PICTURES
    asks = [m for m in mesh.between("desk", "cam") if isinstance(m, RequestOriginal)]
    assert {m.image_id for m in asks} == set(ids)
    assert not any(m.urgent for m in asks)  # background pulls, not the user's
    assert mesh.devices["desk"].node.status()["pulls_waiting"] == 0


def test_policy_requested_lets_only_thumbnails_travel_until_the_user_asks() -> None:
    mesh, ids = shoot("requested")
    desk = mesh.devices["desk"]
    assert where_on(mesh, "desk", ids) == [Where.ABSENT] * PICTURES
    offers = [m.image_id for m in mesh.between("cam", "desk") if isinstance(m, ThumbnailOffer)]
    assert sorted(offers) == sorted(ids)
    assert not any(isinstance(m, (RequestOriginal, OriginalHeader, Chunk))
                   for d in mesh.log for m in [d.msg])
    # Nothing waits in the background either: status does not promise pulls that never go.
    status = desk.node.status()
    assert (status["pulls_waiting"], status["requests_waiting"]) == (0, 0)

    mesh.call(desk, lambda: desk.node.request(ids[2], mesh.now))
    mesh.pump()
    assert where_on(mesh, "desk", ids) == [Where.ABSENT, Where.ABSENT, Where.LOCAL, Where.ABSENT]
    asks = [m for m in mesh.between("desk", "cam") if isinstance(m, RequestOriginal)]
    assert [(m.image_id, m.urgent) for m in asks] == [(ids[2], True)]
    assert originals_sent(mesh, "cam", "desk") == {ids[2]}


def test_policy_requested_survives_a_reconnect_and_a_restart_without_pulling() -> None:
    mesh, ids = shoot("requested")
    mesh.disconnect("cam", "desk")
    mesh.restart("desk")
    mesh.connect("cam", "desk")
    mesh.pump()
    assert where_on(mesh, "desk", ids) == [Where.ABSENT] * PICTURES
    assert originals_sent(mesh, "cam", "desk") == set()


def test_policy_requested_still_gives_a_smaller_copy_when_asked() -> None:
    from io import BytesIO

    from PIL import Image

    out = BytesIO()
    Image.new("RGB", (800, 600), (10, 120, 200)).save(out, "JPEG")
    mesh = MemoryMesh()
    mesh.add("cam", chunk_size=CHUNK)
    desk = mesh.add("desk", role=Role.DESK, policy=Policy.REQUESTED, chunk_size=CHUNK)
    image_id = mesh.capture("cam", out.getvalue())
    mesh.connect("cam", "desk")
    mesh.pump()
    mesh.call(desk, lambda: desk.node.request(image_id, mesh.now, max_side=200))
    mesh.pump()
    copy = desk.store.smaller_bytes(image_id)
    assert copy is not None and max(Image.open(BytesIO(copy)).size) == 200
    headers = [m for m in mesh.between("cam", "desk") if isinstance(m, OriginalHeader)]
    assert [h.purpose for h in headers] == [Purpose.SMALLER]


def test_the_old_word_thumbnails_is_requested_and_gives_the_same_wire() -> None:
    assert Policy("thumbnails") is Policy.REQUESTED
    assert Policy.THUMBNAILS is Policy.REQUESTED
    assert OLD_POLICY_WORDS == {"thumbnails": Policy.REQUESTED}
    assert [p.value for p in Policy] == ["requested", "all"]  # one word per meaning
    old, _ = shoot("thumbnails")
    new, _ = shoot("requested")
    assert [(d.src, d.dst, d.msg) for d in old.log] == [(d.src, d.dst, d.msg) for d in new.log]


def test_an_unknown_policy_word_is_refused() -> None:
    with pytest.raises(ValueError):
        Policy("everything")


def test_a_per_peer_all_pulls_from_that_peer_only() -> None:
    """Default ``requested``, ``all`` for one camera: only its originals are mirrored."""
    mesh = MemoryMesh()
    mesh.add("cam1", chunk_size=CHUNK)
    mesh.add("cam2", chunk_size=CHUNK)
    desk = mesh.add("desk", role=Role.DESK, policy=Policy.REQUESTED, chunk_size=CHUNK,
                    policies={device_id("cam2"): Policy.ALL})
    first = [mesh.capture("cam1", size=2 * CHUNK) for _ in range(2)]
    second = [mesh.capture("cam2", size=2 * CHUNK) for _ in range(2)]
    mesh.connect("cam1", "desk")
    mesh.connect("cam2", "desk")
    mesh.pump()
    assert where_on(mesh, "desk", first) == [Where.ABSENT] * 2
    assert where_on(mesh, "desk", second) == [Where.LOCAL] * 2
    assert desk.node.status()["pulls_waiting"] == 0
