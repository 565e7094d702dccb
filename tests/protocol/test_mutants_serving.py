"""Kill-tests for protocol/serving.py's mutants (issue 14): what a camera serves for a request.

A desk's requests are fed to the camera as frames (tests/protocol/test_checks.py's
``feed``), and what the camera answers is read off its outgoing frames.
"""

from __future__ import annotations

import hashlib
import io

from PIL import Image

from protocol.codec import FrameDecoder
from protocol.config import Policy
from protocol.messages import (
    Message,
    OriginalHeader,
    Purpose,
    RequestOriginal,
    Role,
    TransferFailed,
)
from protocol.store import StoreError, TransferState
from tests.protocol.harness import Mesh
from tests.protocol.test_checks import feed
from tests.protocol.test_conversations import CHUNK

NOBODY = hashlib.sha256(b"a picture nobody has").hexdigest()


def jpeg(seed: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (320, 200), (seed * 40 % 256, 90, 150)).save(out, "JPEG", quality=95)
    return out.getvalue()


def scene(*pictures: bytes) -> tuple[Mesh, list[str]]:
    mesh = Mesh()
    mesh.add("cam", policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    mesh.add("desk", role=Role.DESK, policy=Policy.THUMBNAILS)
    mesh.connect("cam", "desk")
    mesh.pump()
    ids = [mesh.capture("cam", data) for data in pictures]
    mesh.pump()  # every thumbnail is at the desk
    return mesh, ids


def answers(mesh: Mesh) -> list[Message]:
    """Every frame the camera has for the desk now, decoded."""
    cam, desk = mesh.devices["cam"], mesh.devices["desk"]
    decoder = FrameDecoder()
    out: list[Message] = []
    while (frame := cam.node.next_frame(desk.id, mesh.now)) is not None:
        decoder.feed(frame)
        while (msg := decoder.next_message()) is not None:
            out.append(msg)
    return out


def headers(msgs: list[Message]) -> list[OriginalHeader]:
    return [m for m in msgs if isinstance(m, OriginalHeader)]


def test_a_request_for_a_picture_never_had_fails_in_words_for_its_purpose() -> None:
    mesh, _ = scene()
    assert feed(mesh, "desk", "cam", RequestOriginal(NOBODY, max_side=64)) is None
    assert feed(mesh, "desk", "cam", RequestOriginal(NOBODY)) is None
    failed = [m for m in answers(mesh) if isinstance(m, TransferFailed)]
    assert failed == [
        TransferFailed(NOBODY, Purpose.SMALLER, "this device does not have that original"),
        TransferFailed(NOBODY, Purpose.SYNC, "this device does not have that original"),
    ]


def test_an_urgent_request_goes_ahead_of_background_ones() -> None:
    mesh, ids = scene(b"a" * 3000, b"b" * 3000, b"c" * 3000)
    for image_id, urgent in ((ids[0], False), (ids[1], False), (ids[2], True)):
        assert feed(mesh, "desk", "cam", RequestOriginal(image_id, urgent=urgent)) is None
    assert [h.image_id for h in headers(answers(mesh))] == [ids[2], ids[0], ids[1]]


def test_a_smaller_copy_is_made_as_asked_and_the_request_is_remembered() -> None:
    picture = jpeg(1)
    mesh, (image_id,) = scene(picture)
    cam, desk = mesh.devices["cam"], mesh.devices["desk"]
    small = cam.store.smaller_copy(image_id, 64, 20)
    assert len(small) != len(cam.store.smaller_copy(image_id, 64, None))
    assert feed(mesh, "desk", "cam", RequestOriginal(image_id, max_side=64, quality=20)) is None
    assert cam.store.transfer_state(desk.id, image_id) is TransferState.REQUESTED
    assert cam.store.transfer_request(desk.id, image_id) == (64, 20)
    (header,) = headers(answers(mesh))
    assert (header.purpose, header.size, header.digest, header.offset) == (
        Purpose.SMALLER, len(small), hashlib.sha256(small).hexdigest(), 0,
    )


def test_a_smaller_copy_resumes_where_asked_or_from_the_start_past_its_end() -> None:
    picture = jpeg(2)
    mesh, (image_id,) = scene(picture)
    size = len(mesh.devices["cam"].store.smaller_copy(image_id, 64, 30))
    got = []
    for offset in (5, size, size + 1):
        assert feed(mesh, "desk", "cam", RequestOriginal(image_id, offset=offset, max_side=64,
                                                         quality=30)) is None
        (header,) = headers(answers(mesh))
        got.append(header.offset)
    assert got == [5, size, 0]


def test_a_smaller_copy_of_what_is_not_a_picture_fails_with_the_cards_reason() -> None:
    mesh, (image_id,) = scene(b"not a picture at all" * 100)
    try:
        mesh.devices["cam"].store.smaller_copy(image_id, 64, None)
    except StoreError as exc:
        reason = str(exc)
    assert feed(mesh, "desk", "cam", RequestOriginal(image_id, max_side=64)) is None
    failed = [m for m in answers(mesh) if isinstance(m, TransferFailed)]
    assert failed == [TransferFailed(image_id, Purpose.SMALLER, reason)]
