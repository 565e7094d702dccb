"""Messages validate themselves: every well-formed value is accepted, every bad one refused."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given

from protocol.errors import LocalProtocolError, ProtocolError
from protocol.messages import (
    BY_TAG,
    MESSAGE_TYPES,
    Catalog,
    Chunk,
    Collect,
    DisperseAccept,
    DisperseReject,
    DisperseRequest,
    Error,
    Goodbye,
    Hello,
    Limits,
    Marked,
    MarksDigest,
    Message,
    OriginalComplete,
    OriginalHeader,
    Ping,
    Pong,
    Purpose,
    ReadOut,
    RefuseOriginal,
    Release,
    RequestOriginal,
    Role,
    Stored,
    Strip,
    ThumbnailOffer,
    TransferFailed,
    WantStrips,
    describe,
)
from tests.protocol.message_strategies import messages

A = "a" * 64
B = "b" * 64

# One valid instance of every message type; the bad cases below change one field.
VALID: dict[type[Message], dict[str, Any]] = {
    Hello: dict(
        device_id=A, name="cam", role=Role.CAMERA, version=1, capabilities=(), capacity=100, free=50
    ),
    Catalog: dict(seen={A: 3}),
    ThumbnailOffer: dict(
        image_id=A,
        origin=B,
        seq=1,
        name="IMG.JPG",
        size=10,
        mime="image/jpeg",
        capture_time=1.5e9,
        metadata={"ISO": 100},
        thumbnail=b"\xff\xd8",
        has_original=True,
        wrapped_key=None,
    ),
    RequestOriginal: dict(image_id=A, urgent=True, offset=0, max_side=None, quality=None),
    RefuseOriginal: dict(image_id=A),
    OriginalHeader: dict(
        image_id=A, purpose=Purpose.SYNC, size=10, digest=A, offset=0, destination=B, owner=A
    ),
    Chunk: dict(image_id=A, purpose=Purpose.SYNC, offset=0, data=b"x"),
    OriginalComplete: dict(image_id=A, purpose=Purpose.SYNC, digest=A),
    TransferFailed: dict(image_id=A, purpose=Purpose.READOUT, reason="gone"),
    DisperseRequest: dict(image_id=A, size=10, owner=B),
    DisperseAccept: dict(image_id=A, reservation=10, offset=0),
    DisperseReject: dict(image_id=A, reason="full", free=0),
    Stored: dict(image_id=A, digest=A),
    Collect: dict(image_id=A, offset=0),
    ReadOut: dict(image_id=A, offset=0),
    Release: dict(image_id=A),
    Ping: dict(nonce=0),
    Pong: dict(nonce=2**63 - 1),
    Goodbye: dict(reason=""),
    Error: dict(code="bad-field", message="x"),
    Strip: dict(
        image_id=A, times=(0.0, 10.0), offsets=(48, None), kinds=("interval", "scene"),
        jpegs=(b"\xff\xd8a", b"\xff\xd8b"),
    ),
    Marked: dict(
        image_id=A, fields=("rating", "keywords", "color"), values=(4, ("sport", "final"), None),
        times=(1.5, 2.0, 3.0), devices=(A, A, A),
    ),
    MarksDigest: dict(buckets=bytes(Limits.MARK_DIGEST)),
    WantStrips: dict(image_ids=(A,)),
}

BAD_IDS = ["", "a" * 63, "a" * 65, A.upper(), "g" * 64, A.encode(), None, 7]
TOO_LONG = "x" * (Limits.MAX_TEXT + 1)

BAD: list[tuple[type[Message], str, object]] = [
    *[(Hello, "device_id", v) for v in BAD_IDS],
    (Hello, "name", "n" * (Limits.MAX_NAME + 1)),
    (Hello, "name", b"cam"),
    (Hello, "role", "camera"),  # the enum, not its string
    (Hello, "role", "printer"),
    (Hello, "version", -1),
    (Hello, "version", 2**16 + 1),
    (Hello, "version", 1.0),
    (Hello, "version", True),
    (Hello, "capabilities", ["list"]),
    (Hello, "capabilities", ("c",) * (Limits.MAX_CAPABILITIES + 1)),
    (Hello, "capabilities", ("c" * 65,)),
    (Hello, "capabilities", (1,)),
    (Strip, "times", (0.0, float("nan"))),
    (Strip, "times", (-1.0, 0.0)),
    (Strip, "times", [0.0, 1.0]),
    (Strip, "offsets", (-1, 0)),
    (Strip, "offsets", (0, Limits.MAX_ORIGINAL + 1)),
    (Strip, "kinds", ("k" * 17, "scene")),
    (Strip, "jpegs", (b"", b"j")),
    (Strip, "jpegs", (b"j" * (Limits.MAX_STRIP_JPEG + 1), b"j")),
    (Strip, "jpegs", ("text", b"j")),
    (Marked, "fields", ("rating", "rating", "color")),
    (Marked, "fields", ("rating", "keywords")),
    (Marked, "fields", ("stars", "keywords", "color")),
    (Marked, "values", (6, ("sport",), None)),
    (Marked, "values", (True, ("sport",), None)),
    (Marked, "values", (4, ["sport"], None)),
    (Marked, "values", (4, ("",), None)),
    (Marked, "values", (4, ("k",) * (Limits.MAX_KEYWORDS + 1), None)),
    (Marked, "values", (4, ("sport",), 9)),
    (Marked, "times", (1.0, float("nan"), 2.0)),
    (Marked, "devices", (A, A, "x")),
    (MarksDigest, "buckets", b"short"),
    (MarksDigest, "buckets", bytes(Limits.MARK_DIGEST + 8)),
    (WantStrips, "image_ids", ()),
    (WantStrips, "image_ids", ("a" * 63,)),
    (WantStrips, "image_ids", (A,) * (Limits.MAX_WANTED_STRIPS + 1)),
    (Hello, "capacity", -1),
    (Hello, "free", 2**62 + 1),
    (Catalog, "seen", {"bad": 1}),
    (Catalog, "seen", {A: -1}),
    (Catalog, "seen", {A: "1"}),
    (Catalog, "seen", [(A, 1)]),
    (Catalog, "seen", {f"{i:064x}": 1 for i in range(Limits.MAX_ORIGINS + 1)}),
    *[(ThumbnailOffer, "image_id", v) for v in BAD_IDS],
    (ThumbnailOffer, "origin", "x"),
    (ThumbnailOffer, "seq", 0),
    (ThumbnailOffer, "size", Limits.MAX_ORIGINAL + 1),
    (ThumbnailOffer, "mime", "m" * 129),
    (ThumbnailOffer, "capture_time", float("nan")),
    (ThumbnailOffer, "capture_time", float("inf")),
    (ThumbnailOffer, "capture_time", 17),
    (ThumbnailOffer, "metadata", {"": 1}),
    (ThumbnailOffer, "metadata", {"k" * 65: 1}),
    (ThumbnailOffer, "metadata", {1: 1}),
    (ThumbnailOffer, "metadata", {"k": [1]}),
    (ThumbnailOffer, "metadata", {"k": {"nested": 1}}),
    (ThumbnailOffer, "metadata", {"k": b"bytes"}),
    (ThumbnailOffer, "metadata", {"k": float("nan")}),
    (ThumbnailOffer, "metadata", {"k": "v" * (Limits.MAX_METADATA_VALUE + 1)}),
    (ThumbnailOffer, "metadata", {f"k{i}": 1 for i in range(Limits.MAX_METADATA_KEYS + 1)}),
    (ThumbnailOffer, "metadata", [("k", 1)]),
    (ThumbnailOffer, "thumbnail", b"t" * (Limits.MAX_THUMBNAIL + 1)),
    (ThumbnailOffer, "thumbnail", "text"),
    (ThumbnailOffer, "has_original", 1),
    (ThumbnailOffer, "wrapped_key", b""),
    (ThumbnailOffer, "wrapped_key", b"k" * (Limits.MAX_WRAPPED_KEY + 1)),
    (RequestOriginal, "urgent", None),
    (RequestOriginal, "offset", -1),
    (RequestOriginal, "max_side", 15),
    (RequestOriginal, "max_side", Limits.MAX_SIDE + 1),
    (RequestOriginal, "quality", 0),
    (RequestOriginal, "quality", 101),
    (RefuseOriginal, "image_id", "nope"),
    (OriginalHeader, "purpose", "sync"),
    (OriginalHeader, "offset", 11),  # past the size
    (OriginalHeader, "digest", "d"),
    (OriginalHeader, "destination", None),
    (OriginalHeader, "owner", ""),
    (Chunk, "data", b""),
    (Chunk, "data", memoryview(b"abcdef")[::2]),  # strided: cannot be framed as it is
    (Chunk, "data", b"x" * (Limits.MAX_CHUNK + 1)),
    (Chunk, "offset", Limits.MAX_ORIGINAL + 1),
    (Chunk, "purpose", None),
    (OriginalComplete, "digest", A[:-1]),
    (TransferFailed, "reason", TOO_LONG),
    (DisperseRequest, "size", -1),
    (DisperseRequest, "owner", B.upper()),
    (DisperseAccept, "reservation", -1),
    (DisperseAccept, "offset", -1),
    (DisperseReject, "reason", TOO_LONG),
    (DisperseReject, "free", -1),
    (Stored, "digest", 5),
    (Collect, "offset", -1),
    (ReadOut, "offset", 1.5),
    (Release, "image_id", None),
    (Ping, "nonce", -1),
    (Ping, "nonce", 2**63),
    (Pong, "nonce", "1"),
    (Goodbye, "reason", TOO_LONG),
    (Goodbye, "reason", None),
    (Error, "code", "c" * 65),
    (Error, "message", TOO_LONG),
]


def test_every_message_type_has_a_valid_example_and_a_unique_tag() -> None:
    assert set(VALID) == set(MESSAGE_TYPES)
    assert len(BY_TAG) == len(MESSAGE_TYPES)
    for cls, fields in VALID.items():
        cls(**fields)


@pytest.mark.parametrize(
    ("cls", "field", "value"), BAD, ids=[f"{c.__name__}.{f}-{i}" for i, (c, f, _) in enumerate(BAD)]
)
def test_a_bad_field_value_is_refused_with_a_local_error_naming_the_field(
    cls: type[Message], field: str, value: object
) -> None:
    with pytest.raises(LocalProtocolError) as info:
        cls(**{**VALID[cls], field: value})
    assert field in str(info.value) or field.rstrip("s") in str(info.value)
    assert info.value.code == "bad-field"


@given(messages)
def test_generated_messages_are_frozen_and_valid(msg: Message) -> None:
    fields = {f.name: getattr(msg, f.name) for f in dataclasses.fields(msg)}
    assert type(msg)(**fields) == msg
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(msg, next(iter(fields)), None)


def test_limits_allow_the_largest_values() -> None:
    Chunk(
        image_id=A, purpose=Purpose.SYNC, offset=Limits.MAX_ORIGINAL, data=b"x" * Limits.MAX_CHUNK
    )
    OriginalHeader(
        image_id=A, purpose=Purpose.SMALLER, size=5, digest=B, offset=5, destination=A, owner=B
    )
    ThumbnailOffer(
        **{
            **VALID[ThumbnailOffer],
            "thumbnail": b"t" * Limits.MAX_THUMBNAIL,
            "metadata": {
                "k" * 64: "v" * Limits.MAX_METADATA_VALUE,
                "n": None,
                "f": -0.0,
                "b": True,
            },
        }
    )


def test_local_errors_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError):
        Ping(nonce=-5)


def test_describe_replaces_payload_bytes_by_their_length() -> None:
    view = describe(Chunk(image_id=A, purpose=Purpose.SYNC, offset=0, data=b"x" * 10))
    assert view["type"] == "chunk"
    assert view["data"] == "<10 bytes>"
