"""Kill-tests for protocol/serving.py's mutants (issue 14): what a camera serves for a request.

A desk's requests are fed to the camera as frames (tests/protocol/test_checks.py's
``feed``), and what the camera answers is read off its outgoing frames.
"""

from __future__ import annotations

import hashlib
import io

from PIL import Image

from protocol.codec import FrameDecoder, encode
from protocol.config import Policy
from protocol.errors import RemoteProtocolError
from protocol.messages import (
    Message,
    OriginalHeader,
    Purpose,
    RequestOriginal,
    Role,
    TransferFailed,
)
from protocol.store import TransferState
from tests.protocol.harness import MemoryMesh
from tests.protocol.test_checks import feed
from tests.protocol.test_conversations import CHUNK

NOBODY = hashlib.sha256(b"a picture nobody has").hexdigest()


def jpeg(seed: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (320, 200), (seed * 40 % 256, 90, 150)).save(out, "JPEG", quality=95)
    return out.getvalue()


def scene(*pictures: bytes) -> tuple[MemoryMesh, list[str]]:
    mesh = MemoryMesh()
    mesh.add("cam", policy=Policy.THUMBNAILS, chunk_size=CHUNK)
    mesh.add("desk", role=Role.DESK, policy=Policy.THUMBNAILS)
    mesh.connect("cam", "desk")
    mesh.pump()
    ids = [mesh.capture("cam", data) for data in pictures]
    mesh.pump()  # every thumbnail is at the desk
    return mesh, ids


def answers(mesh: MemoryMesh) -> list[Message]:
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
    assert feed(mesh, "desk", "cam", RequestOriginal(image_id, max_side=64)) is None
    (failed,) = [m for m in answers(mesh) if isinstance(m, TransferFailed)]
    assert (failed.image_id, failed.purpose) == (image_id, Purpose.SMALLER)
    # The card's own reason (it names a Python object, so only its words are compared).
    assert failed.reason.startswith(
        f"cannot make a smaller copy of {image_id[:12]}: it is not a picture Pillow can read"
    )
    assert failed.reason.endswith("; send the original instead")


def test_a_repeat_request_only_moves_the_queued_stream_up() -> None:
    mesh, ids = scene(b"a" * 3000, b"b" * 3000)
    size = len(b"b" * 3000)
    for image_id in ids:
        assert feed(mesh, "desk", "cam", RequestOriginal(image_id, urgent=False)) is None
    # The repeat is urgent, and its offset is not looked at again: the stream is queued.
    assert feed(mesh, "desk", "cam", RequestOriginal(ids[1], urgent=True, offset=size + 1)) is None
    sent = headers(answers(mesh))
    assert [(h.image_id, h.offset) for h in sent] == [(ids[1], 0), (ids[0], 0)]


def test_a_request_past_the_end_of_the_original_is_refused_in_words() -> None:
    mesh, (image_id,) = scene(b"x" * 3000)
    cam, desk = mesh.devices["cam"], mesh.devices["desk"]
    try:
        cam.node.receive_data(desk.id, encode(RequestOriginal(image_id, offset=3001)), mesh.now)
    except RemoteProtocolError as exc:
        assert exc.code == "bad-offset"
        assert str(exc) == f"request for {image_id[:12]} at offset 3001 past its 3000 bytes"
    else:
        raise AssertionError("a request past the end was taken")

