"""The codec: every message survives a round trip, in one frame or split anywhere; the wire format is pinned."""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.codec import FrameDecoder, decode_frame, encode
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.messages import (
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    Chunk,
    Hello,
    Limits,
    Message,
    Ping,
    Purpose,
    Role,
    ThumbnailOffer,
)
from tests.protocol.message_strategies import STRATEGIES, messages

A = "a" * 64
B = "b" * 64


def body_of(frame: bytes) -> Any:
    (length,) = struct.unpack(">I", frame[:4])
    assert length == len(frame) - 4
    return msgpack.unpackb(frame[4:])


def frame_of(obj: object) -> bytes:
    body = msgpack.packb(obj)
    return struct.pack(">I", len(body)) + body


def decode_one(frame: bytes) -> Message:
    decoder = FrameDecoder()
    decoder.feed(frame)
    msg = decoder.next_message()
    assert msg is not None
    assert decoder.next_message() is None
    return msg


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda c: c.__name__)
@given(data=st.data())
def test_every_message_round_trips(cls: type[Message], data: st.DataObject) -> None:
    msg = data.draw(STRATEGIES[cls])
    frame = encode(msg)
    assert decode_one(frame) == msg
    assert decode_frame(frame[4:]) == msg
    assert type(decode_frame(memoryview(frame)[4:])) is cls


@given(st.lists(messages, max_size=8), st.data())
def test_a_stream_split_anywhere_decodes_to_the_same_messages(
    sent: list[Message], data: st.DataObject
) -> None:
    stream = b"".join(encode(m) for m in sent)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    decoder = FrameDecoder()
    got: list[Message] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        decoder.feed(stream[start:cut])
        start = cut
        got.extend(decoder)  # drain as we go, as a pump would
    assert got == sent
    assert decoder.buffered == 0


@given(st.lists(messages, min_size=1, max_size=5))
def test_byte_at_a_time_feeding_yields_each_message_once_its_last_byte_arrives(
    sent: list[Message],
) -> None:
    decoder = FrameDecoder()
    got: list[Message] = []
    for frame in map(encode, sent):
        for i in range(len(frame)):
            assert decoder.next_message() is None
            decoder.feed(frame[i : i + 1])
        got.append(decoder.next_message())  # type: ignore[arg-type]
    assert got == sent


def test_the_frame_is_a_length_prefixed_map_with_tag_version_and_fields() -> None:
    hello = Hello(
        device_id=A,
        name="cam",
        role=Role.CAMERA,
        version=PROTOCOL_VERSION,
        capabilities=("encrypt",),
        capacity=10,
        free=5,
    )
    assert body_of(encode(hello)) == {
        "t": "hello",
        "v": PROTOCOL_VERSION,
        "device_id": A,
        "name": "cam",
        "role": "camera",
        "version": PROTOCOL_VERSION,
        "capabilities": ["encrypt"],
        "capacity": 10,
        "free": 5,
    }


def test_bytes_travel_as_msgpack_bin_and_enums_as_strings() -> None:
    chunk = Chunk(image_id=A, purpose=Purpose.DISPERSE, offset=7, data=b"\x00" * 300)
    body = body_of(encode(chunk))
    assert body == {
        "t": "chunk",
        "v": PROTOCOL_VERSION,
        "image_id": A,
        "purpose": "disperse",
        "offset": 7,
        "data": b"\x00" * 300,
    }
    raw = msgpack.unpackb(encode(chunk)[4:], raw=True)
    assert raw[b"purpose"] == b"disperse"  # str type, not bin
    assert isinstance(raw[b"data"], bytes)


def test_a_hand_built_frame_decodes_so_the_format_is_not_just_self_consistent() -> None:
    frame = frame_of({"t": "ping", "v": PROTOCOL_VERSION, "nonce": 42})
    assert decode_one(frame) == Ping(nonce=42)


@pytest.mark.parametrize("size", [1, 255, 256, 65535, 65536, Limits.MAX_CHUNK])
def test_chunks_of_every_bin_header_width_round_trip(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    chunk = Chunk(image_id=A, purpose=Purpose.SYNC, offset=0, data=data)
    assert decode_one(encode(chunk)) == chunk


def test_largest_thumbnail_offer_round_trips() -> None:
    offer = ThumbnailOffer(
        image_id=A,
        origin=B,
        seq=1,
        name="n" * Limits.MAX_NAME,
        size=1,
        mime="image/jpeg",
        capture_time=None,
        metadata={
            f"k{i}": "\U0001f4f7" * Limits.MAX_METADATA_VALUE
            for i in range(Limits.MAX_METADATA_KEYS)
        },
        thumbnail=b"\xff" * Limits.MAX_THUMBNAIL,
        has_original=False,
        wrapped_key=b"k" * Limits.MAX_WRAPPED_KEY,
    )
    frame = encode(offer)
    assert len(frame) - 4 <= Limits.MAX_FRAME
    assert decode_one(frame) == offer


def test_payload_given_as_memoryview_or_bytearray_encodes_like_bytes() -> None:
    data = b"payload" * 100
    as_bytes = encode(Chunk(image_id=A, purpose=Purpose.SYNC, offset=0, data=data))
    for view in (memoryview(data), bytearray(data)):
        chunk = Chunk(image_id=A, purpose=Purpose.SYNC, offset=0, data=view)  # type: ignore[arg-type]
        assert encode(chunk) == as_bytes


# --- typed errors ---------------------------------------------------------------------


def remote_code(frame: bytes) -> str:
    decoder = FrameDecoder()
    with pytest.raises(RemoteProtocolError) as info:
        decoder.feed(frame)
        decoder.next_message()
    return info.value.code


GOOD = {"t": "ping", "v": PROTOCOL_VERSION, "nonce": 1}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({**GOOD, "t": "selfie"}, "unknown-type"),
        ({**GOOD, "t": 7}, "unknown-type"),
        ({"v": PROTOCOL_VERSION, "nonce": 1}, "unknown-type"),
        ({**GOOD, "v": PROTOCOL_VERSION + 1}, "bad-version"),
        ({**GOOD, "v": "1"}, "bad-version"),
        ({"t": "ping", "nonce": 1}, "bad-version"),
        ({"t": "ping", "v": PROTOCOL_VERSION}, "bad-field"),
        ({**GOOD, "extra": 1}, "bad-field"),
        ({**GOOD, "nonce": -1}, "bad-field"),
        ({**GOOD, "nonce": 1.0}, "bad-field"),
        ({**GOOD, "nonce": True}, "bad-field"),
        ({**GOOD, "nonce": "1"}, "bad-field"),
        ([1, 2], "bad-msgpack"),
        ("ping", "bad-msgpack"),
    ],
)
def test_bad_frames_raise_typed_remote_errors(body: object, code: str) -> None:
    assert remote_code(frame_of(body)) == code


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("purpose", "nope"),
        ("purpose", ["sync"]),
        ("purpose", None),
        ("data", "text, not bin"),
        ("data", b""),
        ("image_id", A.upper()),
        ("image_id", A.encode()),
        ("offset", 2**63),
    ],
)
def test_wrong_field_values_raise_bad_field(field: str, value: object) -> None:
    body = {
        "t": "chunk",
        "v": PROTOCOL_VERSION,
        "image_id": A,
        "purpose": "sync",
        "offset": 0,
        "data": b"x",
    }
    assert remote_code(frame_of({**body, field: value})) == "bad-field"


def test_a_string_is_not_accepted_as_a_tuple_of_capabilities() -> None:
    body = {
        "t": "hello",
        "v": PROTOCOL_VERSION,
        "device_id": A,
        "name": "x",
        "role": "desk",
        "version": 1,
        "capabilities": "abc",
        "capacity": 1,
        "free": 1,
    }
    assert remote_code(frame_of(body)) == "bad-field"
    assert decode_one(frame_of({**body, "capabilities": ["abc"]})).capabilities == ("abc",)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xc1",  # never used in msgpack
        msgpack.packb(GOOD) + b"\x00",  # trailing bytes
        msgpack.packb(GOOD)[:-1],  # truncated inside the frame
        msgpack.packb({**GOOD, "x": msgpack.ExtType(5, b"ext")}),
        msgpack.packb({1: "int key"}),
    ],
    ids=["empty", "reserved-byte", "extra-data", "truncated", "ext-type", "int-key"],
)
def test_malformed_msgpack_raises_bad_msgpack(body: bytes) -> None:
    assert remote_code(struct.pack(">I", len(body)) + body) == "bad-msgpack"


def test_a_frame_whose_msgpack_runs_into_the_next_frame_is_refused() -> None:
    short = msgpack.packb(GOOD)[:-1]  # the map's last value continues in the next frame
    decoder = FrameDecoder()
    decoder.feed(struct.pack(">I", len(short)) + short + encode(Ping(nonce=3)))
    with pytest.raises(RemoteProtocolError) as info:
        decoder.next_message()
    assert info.value.code == "bad-msgpack"


def test_an_oversized_length_prefix_raises_at_feed_before_the_body_arrives() -> None:
    decoder = FrameDecoder()
    decoder.feed(encode(Ping(nonce=1)))
    with pytest.raises(RemoteProtocolError) as info:
        decoder.feed(struct.pack(">I", Limits.MAX_FRAME + 1)[:4])
    assert info.value.code == "frame-too-large"
    assert decoder.buffered == 0  # nothing of the stream is kept


def test_a_length_prefix_at_the_limit_waits_for_its_body() -> None:
    decoder = FrameDecoder()
    decoder.feed(struct.pack(">I", Limits.MAX_FRAME) + b"\x80")
    assert decoder.next_message() is None


def test_a_prefix_split_across_feeds_is_still_checked() -> None:
    decoder = FrameDecoder()
    prefix = struct.pack(">I", 2**32 - 1)
    decoder.feed(prefix[:2])
    with pytest.raises(RemoteProtocolError):
        decoder.feed(prefix[2:])


def test_after_an_error_the_decoder_stays_broken() -> None:
    decoder = FrameDecoder()
    decoder.feed(frame_of({**GOOD, "t": "selfie"}) + encode(Ping(nonce=2)))
    with pytest.raises(RemoteProtocolError):
        decoder.next_message()
    for call in (decoder.next_message, lambda: decoder.feed(encode(Ping(nonce=3)))):
        with pytest.raises(RemoteProtocolError) as info:
            call()
        assert info.value.code == "unknown-type"


def test_decode_frame_rejects_a_body_over_the_limit() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_frame(bytes(Limits.MAX_FRAME + 1))
    assert info.value.code == "frame-too-large"


def test_encoding_what_is_not_a_message_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError) as info:
        encode("ping")  # type: ignore[arg-type]
    assert info.value.code == "unknown-type"


def test_encoding_a_message_msgpack_cannot_carry_is_a_local_error() -> None:
    # An integer past 64 bits has no msgpack form: refused when built or when encoded.
    with pytest.raises(LocalProtocolError):
        encode(
            ThumbnailOffer(
                image_id=A,
                origin=B,
                seq=1,
                name="x",
                size=1,
                mime="image/jpeg",
                capture_time=None,
                metadata={"big": 2**70},
                thumbnail=b"",
                has_original=True,
            )
        )


def test_many_frames_in_one_feed_compact_the_buffer_without_losing_any() -> None:
    chunk = Chunk(image_id=A, purpose=Purpose.SYNC, offset=0, data=b"z" * Limits.MAX_CHUNK)
    frames = encode(chunk) * 9 + encode(Ping(nonce=5))[:3]
    decoder = FrameDecoder()
    decoder.feed(frames)
    assert list(decoder) == [chunk] * 9
    decoder.feed(encode(Ping(nonce=5))[3:])
    assert decoder.next_message() == Ping(nonce=5)
    assert decoder.buffered == 0
